//! Cognito SRP and JWT against vectors made by the clients' own code
//! (`tests/fixtures/make_cognito_vectors.py`: pycognito for SRP, PyJWT for RS256).

use iot::cognito::jwt::{self, SigningKey};
use iot::cognito::{pool_name, srp};
use proptest::prelude::*;
use serde_json::{json, Value};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/cognito.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors file")).unwrap()
}

fn bytes<const L: usize>(v: &Value, key: &str) -> [u8; L] {
    hex::decode(v[key].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap()
}

#[test]
fn srp_matches_pycognito() {
    let all = vectors();
    let cases = all["srp"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for v in cases {
        let pool = pool_name(s(v, "pool_id"));
        let user = s(v, "user_id_for_srp");
        let password = s(v, "password");
        let (a, b) = (bytes::<32>(v, "a"), bytes::<32>(v, "b"));

        let verifier = srp::make_verifier(pool, user, password, &bytes::<16>(v, "salt"));
        assert_eq!(verifier.salt_hex, s(v, "salt_hex"));
        assert_eq!(verifier.verifier_hex, s(v, "verifier_hex"));
        assert_eq!(srp::client_public(&a), s(v, "srp_a"));
        assert_eq!(
            srp::server_public(&verifier.verifier_hex, &b),
            s(v, "srp_b")
        );

        let signature = srp::client_claim(
            pool,
            user,
            password,
            &a,
            s(v, "salt_hex"),
            s(v, "srp_b"),
            s(v, "secret_block"),
            s(v, "timestamp"),
        )
        .unwrap();
        assert_eq!(signature, s(v, "signature"), "{user}");

        // The server side accepts pycognito's answer, and only with the right password.
        let check = |password: &str| {
            let verifier = srp::make_verifier(pool, user, password, &bytes::<16>(v, "salt"));
            srp::verify_claim(
                pool,
                user,
                &verifier.verifier_hex,
                s(v, "srp_a"),
                &b,
                s(v, "secret_block"),
                s(v, "timestamp"),
                s(v, "signature"),
            )
        };
        assert_eq!(check(password), Ok(()));
        assert_eq!(check("not the password"), Err(srp::SrpError::BadSignature));
    }
}

#[test]
fn timestamps_match_pycognito() {
    let all = vectors();
    // The instants the vectors' clock was fixed at.
    let instants = [1_796_157_727u64, 1_704_931_509];
    for (v, secs) in all["srp"].as_array().unwrap().iter().zip(instants) {
        assert_eq!(srp::timestamp(secs), s(v, "timestamp"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    #[test]
    fn client_and_server_agree_on_random_inputs(
        a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), salt in any::<[u8; 16]>(),
        user in "[a-z0-9@.]{1,20}", password in "\\PC{1,30}", block in any::<Vec<u8>>(),
    ) {
        use base64::Engine as _;
        let block = base64::engine::general_purpose::STANDARD.encode(block);
        let verifier = srp::make_verifier("Pool1", &user, &password, &salt);
        let b_pub = srp::server_public(&verifier.verifier_hex, &b);
        let ts = srp::timestamp(1_796_157_727);
        let signature = srp::client_claim(
            "Pool1", &user, &password, &a, &verifier.salt_hex, &b_pub, &block, &ts,
        ).unwrap();
        prop_assert_eq!(
            srp::verify_claim("Pool1", &user, &verifier.verifier_hex, &srp::client_public(&a),
                              &b, &block, &ts, &signature),
            Ok(())
        );
    }
}

fn fixture_key(kid: &str) -> SigningKey {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/token-signing-2048.key.pem"
    );
    SigningKey::from_pkcs8_pem(kid, &std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn pyjwt_token_verifies() {
    let all = vectors();
    let v = &all["jwt"];
    let (iat, exp) = (
        v["claims"]["iat"].as_u64().unwrap(),
        v["claims"]["exp"].as_u64().unwrap(),
    );
    assert_eq!(
        jwt::verify(s(v, "token"), &v["jwks"], iat),
        Ok(v["claims"].clone())
    );
    assert_eq!(
        jwt::verify(s(v, "token"), &v["jwks"], exp),
        Err(jwt::JwtError::Expired { expired_at: exp })
    );
    // Our JWK of the same key is PyJWT's (n, e), so the token verifies against it too.
    let ours = fixture_key("pyjwt-kid").jwk();
    assert_eq!(ours["n"], v["jwks"]["keys"][0]["n"]);
    assert_eq!(ours["e"], v["jwks"]["keys"][0]["e"]);
    assert!(jwt::verify(s(v, "token"), &json!({"keys": [ours]}), iat).is_ok());
}

#[test]
fn generated_key_signs_verifiable_tokens() {
    let key = SigningKey::generate("fresh", &mut jwt::OsRng);
    let again = SigningKey::from_pkcs8_pem("fresh", &key.to_pkcs8_pem()).unwrap();
    let claims = json!({"sub": "x", "exp": 2_000_000_000u64});
    let token = key.sign(&claims);
    assert_eq!(
        jwt::verify(&token, &json!({"keys": [again.jwk()]}), 1_900_000_000),
        Ok(claims)
    );
    // A different generated key does not verify it.
    let other = SigningKey::generate("fresh", &mut jwt::OsRng);
    assert_eq!(
        jwt::verify(&token, &json!({"keys": [other.jwk()]}), 1_900_000_000),
        Err(jwt::JwtError::BadSignature)
    );
}
