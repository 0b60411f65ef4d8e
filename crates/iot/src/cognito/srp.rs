//! SRP-6a as Cognito user pools run it for `USER_SRP_AUTH`, both sides.
//!
//! The arithmetic follows what Cognito's own SDKs compute (amazon-cognito-identity-js
//! `AuthenticationHelper`, pycognito `aws_srp`), since those are the clients the broker must
//! accept and the servers the SDK must satisfy:
//!
//! - group: the 3072-bit MODP group of RFC 5054 / RFC 3526, `g = 2`;
//! - every number hashed is first written as Cognito's "padded hex": big-endian, minimal,
//!   with one leading zero byte when the high bit is set (a two's-complement positive);
//! - `k = H(PAD(N) | PAD(g))`, `x = H(PAD(salt) | H(pool_name | user | ":" | password))`,
//!   `u = H(PAD(A) | PAD(B))`;
//! - key = HKDF-SHA256(ikm = PAD(S), salt = PAD(u), info = "Caldera Derived Key"), 16 bytes;
//! - PASSWORD_CLAIM_SIGNATURE = base64(HMAC-SHA256(key, pool_name | user_id_for_srp |
//!   secret_block | timestamp)).
//!
//! Pure: random values and times come from the caller, so every result is reproducible.
//! The server keeps no SRP state besides `b`: [`verify_claim`] recomputes `B` from it.
//!
//! `num-bigint`'s `modpow` is not constant-time; this is an emulator's password check, where
//! a timing side channel on the loopback is not the threat the broker guards against.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use num_bigint::BigUint;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// RFC 5054's 3072-bit prime, the `N` of Cognito's SDKs.
const N_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64",
    "ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6B",
    "F12FFA06D98A0864D87602733EC86A64521F2B18177B200C",
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB31",
    "43DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
);

/// HKDF `info` of Cognito's derived key.
const INFO: &[u8] = b"Caldera Derived Key";

/// Why an SRP step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrpError {
    /// A hex or base64 input could not be decoded; names which.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The client's public value is a multiple of N (it would force the shared secret to 0).
    #[error("SRP_A mod N is 0")]
    PublicAZero,
    /// The server's public value is a multiple of N.
    #[error("SRP_B mod N is 0")]
    PublicBZero,
    /// `u = H(A | B)` came out 0 (negligible for honest peers).
    #[error("u = H(A | B) is 0")]
    ScramblerZero,
    /// PASSWORD_CLAIM_SIGNATURE does not match: wrong password (or tampered claim).
    #[error("password claim signature does not match")]
    BadSignature,
}

/// What a user pool stores for a user instead of the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// Sent as the challenge's `SALT`: Cognito's padded hex, so that every SDK (some re-pad
    /// the string, some the number) hashes the same bytes.
    pub salt_hex: String,
    /// `g^x mod N`, padded hex.
    pub verifier_hex: String,
}

struct Group {
    n: BigUint,
    g: BigUint,
    k: BigUint,
}

fn group() -> &'static Group {
    static GROUP: OnceLock<Group> = OnceLock::new();
    GROUP.get_or_init(|| {
        let n = BigUint::parse_bytes(N_HEX.as_bytes(), 16).expect("N_HEX is hex");
        let g = BigUint::from(2u8);
        let k = hash_numbers(&[&n, &g]);
        Group { n, g, k }
    })
}

/// Cognito's padded form of a number, as bytes: minimal big-endian, plus a leading 0 byte
/// when the high bit is set (the SDKs hash the hex of a two's-complement positive).
fn pad(n: &BigUint) -> Vec<u8> {
    let mut bytes = n.to_bytes_be();
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    bytes
}

fn pad_hex(n: &BigUint) -> String {
    hex::encode(pad(n))
}

/// `H(PAD(a) | PAD(b) | ...)` as a number.
fn hash_numbers(numbers: &[&BigUint]) -> BigUint {
    let mut h = Sha256::new();
    for n in numbers {
        h.update(pad(n));
    }
    BigUint::from_bytes_be(&h.finalize())
}

/// A hex number as the SDKs read one (any case, no sign, no separators).
fn parse_hex(s: &str, what: &'static str) -> Result<BigUint, SrpError> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(SrpError::Malformed(what));
    }
    BigUint::parse_bytes(s.as_bytes(), 16).ok_or(SrpError::Malformed(what))
}

/// `x = H(PAD(salt) | H(pool_name | user | ":" | password))`.
fn private_x(pool_name: &str, user: &str, password: &str, salt: &BigUint) -> BigUint {
    let inner = Sha256::new()
        .chain_update(pool_name.as_bytes())
        .chain_update(user.as_bytes())
        .chain_update(b":")
        .chain_update(password.as_bytes())
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(salt))
        .chain_update(inner)
        .finalize();
    BigUint::from_bytes_be(&outer)
}

/// The 16-byte key both sides derive from the shared secret `S` and the scrambler `u`.
fn derive_key(s: &BigUint, u: &BigUint) -> [u8; 16] {
    let mut key = [0u8; 16];
    Hkdf::<Sha256>::new(Some(&pad(u)), &pad(s))
        .expand(INFO, &mut key)
        .expect("16 bytes is a valid HKDF-SHA256 length");
    key
}

/// The HMAC over the claim, ready for `finalize` or `verify_slice`.
fn claim_mac(
    key: &[u8; 16],
    pool_name: &str,
    user_id_for_srp: &str,
    secret_block_b64: &str,
    timestamp: &str,
) -> Result<Hmac<Sha256>, SrpError> {
    let secret_block = STANDARD
        .decode(secret_block_b64)
        .map_err(|_| SrpError::Malformed("secret block"))?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(pool_name.as_bytes());
    mac.update(user_id_for_srp.as_bytes());
    mac.update(&secret_block);
    mac.update(timestamp.as_bytes());
    Ok(mac)
}

/// The user pool's record for a new password: salt and `v = g^x mod N`.
/// `username` is what the challenge will name as USER_ID_FOR_SRP.
pub fn make_verifier(pool_name: &str, username: &str, password: &str, salt: &[u8; 16]) -> Verifier {
    let grp = group();
    let salt = BigUint::from_bytes_be(salt);
    let x = private_x(pool_name, username, password, &salt);
    Verifier {
        salt_hex: pad_hex(&salt),
        verifier_hex: pad_hex(&grp.g.modpow(&x, &grp.n)),
    }
}

/// `B = (k·v + g^b) mod N` from the verifier and the server's random `b`.
fn server_b(v: &BigUint, b: &BigUint) -> BigUint {
    let grp = group();
    (&grp.k * v + grp.g.modpow(b, &grp.n)) % &grp.n
}

/// Server: the public `B` (hex) to send as SRP_B. A verifier that is not hex counts as 0;
/// [`verify_claim`] then refuses the claim as malformed.
pub fn server_public(verifier_hex: &str, b_random: &[u8; 32]) -> String {
    let v = parse_hex(verifier_hex, "verifier").unwrap_or_default();
    server_b(&v, &BigUint::from_bytes_be(b_random)).to_str_radix(16)
}

/// Server: checks PASSWORD_CLAIM_SIGNATURE. `a_public_hex` is the client's SRP_A from
/// InitiateAuth, `b_random` the value [`server_public`] was given. The timestamp is only
/// signed here: how old it may be is the caller's rule.
#[allow(clippy::too_many_arguments)]
pub fn verify_claim(
    pool_name: &str,
    user_id_for_srp: &str,
    verifier_hex: &str,
    a_public_hex: &str,
    b_random: &[u8; 32],
    secret_block_b64: &str,
    timestamp: &str,
    signature_b64: &str,
) -> Result<(), SrpError> {
    let grp = group();
    let a_pub = parse_hex(a_public_hex, "SRP_A")?;
    if (&a_pub % &grp.n) == BigUint::ZERO {
        return Err(SrpError::PublicAZero);
    }
    let v = parse_hex(verifier_hex, "verifier")?;
    let b = BigUint::from_bytes_be(b_random);
    let b_pub = server_b(&v, &b);
    let u = hash_numbers(&[&a_pub, &b_pub]);
    if u == BigUint::ZERO {
        return Err(SrpError::ScramblerZero);
    }
    // S = (A · v^u)^b mod N
    let s = ((&a_pub * v.modpow(&u, &grp.n)) % &grp.n).modpow(&b, &grp.n);
    let key = derive_key(&s, &u);
    let signature = STANDARD
        .decode(signature_b64)
        .map_err(|_| SrpError::Malformed("signature"))?;
    claim_mac(
        &key,
        pool_name,
        user_id_for_srp,
        secret_block_b64,
        timestamp,
    )?
    .verify_slice(&signature)
    .map_err(|_| SrpError::BadSignature)
}

/// Client: the public `A = g^a mod N` (hex, unpadded as the SDKs send it) for SRP_A.
pub fn client_public(a_random: &[u8; 32]) -> String {
    let grp = group();
    grp.g
        .modpow(&BigUint::from_bytes_be(a_random), &grp.n)
        .to_str_radix(16)
}

/// Client: the PASSWORD_CLAIM_SIGNATURE answering a PASSWORD_VERIFIER challenge, from the
/// challenge's SALT, SRP_B and SECRET_BLOCK, the same `a` as [`client_public`], and the
/// TIMESTAMP the answer will carry ([`timestamp`]).
#[allow(clippy::too_many_arguments)]
pub fn client_claim(
    pool_name: &str,
    user_id_for_srp: &str,
    password: &str,
    a_random: &[u8; 32],
    salt_hex: &str,
    srp_b_hex: &str,
    secret_block_b64: &str,
    timestamp: &str,
) -> Result<String, SrpError> {
    let grp = group();
    let b_pub = parse_hex(srp_b_hex, "SRP_B")?;
    if (&b_pub % &grp.n) == BigUint::ZERO {
        return Err(SrpError::PublicBZero);
    }
    let salt = parse_hex(salt_hex, "salt")?;
    let a = BigUint::from_bytes_be(a_random);
    let a_pub = grp.g.modpow(&a, &grp.n);
    let u = hash_numbers(&[&a_pub, &b_pub]);
    if u == BigUint::ZERO {
        return Err(SrpError::ScramblerZero);
    }
    let x = private_x(pool_name, user_id_for_srp, password, &salt);
    // S = (B - k·g^x)^(a + u·x) mod N, the base taken in [0, N).
    let kgx = (&grp.k * grp.g.modpow(&x, &grp.n)) % &grp.n;
    let base = ((&b_pub % &grp.n) + &grp.n - kgx) % &grp.n;
    let s = base.modpow(&(a + u.clone() * x), &grp.n);
    let key = derive_key(&s, &u);
    let mac = claim_mac(
        &key,
        pool_name,
        user_id_for_srp,
        secret_block_b64,
        timestamp,
    )?;
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// Cognito's TIMESTAMP: `"Tue Dec 1 20:42:07 UTC 2026"`, UTC, the day of the month not
/// padded (Cognito refuses "Dec 01"). Times past year 9999 are written as its last second.
pub fn timestamp(unix_secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = i64::try_from(unix_secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc());
    format!(
        "{} {} {} {:02}:{:02}:{:02} UTC {}",
        WEEKDAYS[usize::from(t.weekday().number_days_from_monday())],
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "AbCdEf123";
    const USER: &str = "alice";
    const PASSWORD: &str = "Correct-Horse-1";
    const SALT: [u8; 16] = *b"0123456789abcdef";
    const A: [u8; 32] = [7u8; 32];
    const B: [u8; 32] = [9u8; 32];
    const TS: &str = "Tue Dec 1 20:42:07 UTC 2026";

    fn secret_block() -> String {
        STANDARD.encode(b"an opaque block the server hands out and gets back")
    }

    fn claim(password: &str, verifier: &Verifier) -> String {
        let b_pub = server_public(&verifier.verifier_hex, &B);
        client_claim(
            POOL,
            USER,
            password,
            &A,
            &verifier.salt_hex,
            &b_pub,
            &secret_block(),
            TS,
        )
        .unwrap()
    }

    fn verify(verifier: &Verifier, a_pub: &str, signature: &str) -> Result<(), SrpError> {
        verify_claim(
            POOL,
            USER,
            &verifier.verifier_hex,
            a_pub,
            &B,
            &secret_block(),
            TS,
            signature,
        )
    }

    #[test]
    fn client_and_server_agree() {
        let verifier = make_verifier(POOL, USER, PASSWORD, &SALT);
        let signature = claim(PASSWORD, &verifier);
        assert_eq!(verify(&verifier, &client_public(&A), &signature), Ok(()));
    }

    #[test]
    fn wrong_password_fails() {
        let verifier = make_verifier(POOL, USER, PASSWORD, &SALT);
        let signature = claim("correct-horse-1", &verifier);
        assert_eq!(
            verify(&verifier, &client_public(&A), &signature),
            Err(SrpError::BadSignature)
        );
    }

    #[test]
    fn claim_is_bound_to_user_timestamp_and_block() {
        let verifier = make_verifier(POOL, USER, PASSWORD, &SALT);
        let signature = claim(PASSWORD, &verifier);
        let a_pub = client_public(&A);
        let check = |user: &str, block: &str, ts: &str| {
            verify_claim(
                POOL,
                user,
                &verifier.verifier_hex,
                &a_pub,
                &B,
                block,
                ts,
                &signature,
            )
        };
        assert_eq!(
            check("bob", &secret_block(), TS),
            Err(SrpError::BadSignature)
        );
        assert_eq!(
            check(USER, &STANDARD.encode(b"other"), TS),
            Err(SrpError::BadSignature)
        );
        assert_eq!(
            check(USER, &secret_block(), "Tue Dec 1 20:42:08 UTC 2026"),
            Err(SrpError::BadSignature)
        );
    }

    #[test]
    fn a_multiple_of_n_is_refused() {
        let verifier = make_verifier(POOL, USER, PASSWORD, &SALT);
        let n = &group().n;
        for a_pub in [
            "0".to_string(),
            n.to_str_radix(16),
            (n * 3u8).to_str_radix(16),
        ] {
            assert_eq!(
                verify(&verifier, &a_pub, "AAAA"),
                Err(SrpError::PublicAZero)
            );
        }
    }

    #[test]
    fn b_multiple_of_n_is_refused() {
        let verifier = make_verifier(POOL, USER, PASSWORD, &SALT);
        let n_hex = group().n.to_str_radix(16);
        let r = client_claim(
            POOL,
            USER,
            PASSWORD,
            &A,
            &verifier.salt_hex,
            &n_hex,
            &secret_block(),
            TS,
        );
        assert_eq!(r, Err(SrpError::PublicBZero));
    }

    #[test]
    fn malformed_inputs_name_what() {
        let verifier = make_verifier(POOL, USER, PASSWORD, &SALT);
        let a_pub = client_public(&A);
        assert_eq!(
            verify(&verifier, "xyz", "AAAA"),
            Err(SrpError::Malformed("SRP_A"))
        );
        assert_eq!(
            verify(&verifier, "", "AAAA"),
            Err(SrpError::Malformed("SRP_A"))
        );
        assert_eq!(
            verify(&verifier, &a_pub, "not base64!"),
            Err(SrpError::Malformed("signature"))
        );
        let bad_verifier = Verifier {
            salt_hex: verifier.salt_hex.clone(),
            verifier_hex: "g".into(),
        };
        assert_eq!(
            verify(&bad_verifier, &a_pub, "AAAA"),
            Err(SrpError::Malformed("verifier"))
        );
        let b_pub = server_public(&verifier.verifier_hex, &B);
        assert_eq!(
            client_claim(POOL, USER, PASSWORD, &A, "+1", &b_pub, "AAAA", TS),
            Err(SrpError::Malformed("salt"))
        );
        assert_eq!(
            client_claim(
                POOL,
                USER,
                PASSWORD,
                &A,
                &verifier.salt_hex,
                &b_pub,
                "%%",
                TS
            ),
            Err(SrpError::Malformed("secret block"))
        );
    }

    #[test]
    fn padding_adds_a_zero_byte_only_for_a_high_bit() {
        assert_eq!(pad_hex(&BigUint::from(0x7fu8)), "7f");
        assert_eq!(pad_hex(&BigUint::from(0x80u8)), "0080");
        assert_eq!(pad_hex(&BigUint::from(0x0812u16)), "0812");
        assert_eq!(pad_hex(&BigUint::ZERO), "00");
        assert!(pad_hex(&group().n).starts_with("00ffff"));
    }

    #[test]
    fn salt_is_sent_padded() {
        let mut salt = [0u8; 16];
        salt[0] = 0xc3;
        let v = make_verifier(POOL, USER, PASSWORD, &salt);
        assert_eq!(v.salt_hex, format!("00c3{}", "00".repeat(15)));
        // A salt with leading zero bytes is the number without them, as the SDKs parse it.
        salt[0] = 0;
        salt[1] = 0x05;
        let v = make_verifier(POOL, USER, PASSWORD, &salt);
        assert_eq!(v.salt_hex, format!("05{}", "00".repeat(14)));
    }

    #[test]
    fn timestamp_format() {
        // 2026-12-01T20:42:07Z, a Tuesday.
        assert_eq!(timestamp(1_796_157_727), "Tue Dec 1 20:42:07 UTC 2026");
        assert_eq!(timestamp(0), "Thu Jan 1 00:00:00 UTC 1970");
        // Two-digit days and zero-padded clock fields.
        assert_eq!(timestamp(1_704_931_509), "Thu Jan 11 00:05:09 UTC 2024");
        assert_eq!(timestamp(u64::MAX), "Fri Dec 31 23:59:59 UTC 9999");
    }
}
