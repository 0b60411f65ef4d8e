//! The identity store: client certificates and their private keys in a directory,
//! addressed by certificate id (IoT Core's: lowercase hex SHA-256 of the certificate's DER).
//!
//! Layout: `<dir>/<certificate id>/certificate.pem` (leaf first, then any chain) and
//! `<dir>/<certificate id>/private.key` (PKCS#8/PKCS#1/SEC1 PEM, mode 0600 on Unix).
//! Private keys are never logged nor shown in `Debug` output.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::error::Error;

const CERT_FILE: &str = "certificate.pem";
const KEY_FILE: &str = "private.key";

/// A directory of client identities (certificate + private key) keyed by certificate id:
/// `<dir>/<certificate id>/certificate.pem` and `private.key` (mode 0600 on Unix), the
/// store [`DataManager::connect`](crate::DataManager::connect) loads from.
///
/// ```
/// use pubsub::{Error, IdentityStore};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("pubsub-doc-store-{}", std::process::id()));
/// let store = IdentityStore::open(&dir)?;
/// // A device certificate and key, e.g. from `aws iot create-keys-and-certificate`.
/// let device = rcgen::generate_simple_self_signed(vec!["device-1".to_string()])?;
/// let id = store.import_pem(device.cert.pem().as_bytes(), device.signing_key.serialize_pem().as_bytes())?;
/// assert_eq!(store.list()?, vec![id.clone()]);
/// assert!(store.is_valid_certificate(&id));
/// assert_eq!(store.load(&id)?.certificates().len(), 1);
/// assert!(store.delete(&id)?);
/// assert!(matches!(store.load(&id), Err(Error::CertificateNotFound(_))));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityStore {
    dir: PathBuf,
}

/// A certificate chain and its private key, loaded from the store.
pub struct Identity {
    /// The certificate chain, leaf first.
    pub(crate) certificates: Vec<CertificateDer<'static>>,
    /// The private key: never public, so it is not copied or logged by accident.
    pub(crate) private_key: PrivateKeyDer<'static>,
}

impl Identity {
    /// The certificate chain, leaf first.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.certificates.len())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// The IoT Core certificate id of a DER certificate: lowercase hex SHA-256.
pub fn certificate_id(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidCertificateId(id.to_owned()))
    }
}

fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidPem(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::InvalidPem("no certificate found".into()));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    // The error never includes key material.
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| Error::InvalidPem("no usable private key found".into()))
}

/// Check that `key` is a supported key type and belongs to the leaf certificate.
fn check_pair(
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<(), Error> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|_| Error::Key("unsupported private key type".into()))?;
    rustls::sign::CertifiedKey::new(certs.to_vec(), signing)
        .keys_match()
        .map_err(|_| Error::Key("the private key does not match the certificate".into()))
}

fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.as_ref().to_vec())))
        .collect()
}

impl IdentityStore {
    /// Open (creating it if needed) the store in `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when `dir` or a parent cannot be created (permissions, a file in the
    /// way).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), pubsub::Error> {
    /// let store = pubsub::IdentityStore::open(pubsub::IdentityStore::default_location())?;
    /// # Ok(()) }
    /// ```
    pub fn open(dir: impl Into<PathBuf>) -> Result<IdentityStore, Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(IdentityStore { dir })
    }

    /// `$PUBSUB_IDENTITY_DIR`, else `$HOME/.pubsub/identities`, else `.pubsub/identities`.
    pub fn default_location() -> PathBuf {
        if let Some(d) = std::env::var_os("PUBSUB_IDENTITY_DIR") {
            return PathBuf::from(d);
        }
        match std::env::var_os("HOME") {
            Some(h) => Path::new(&h).join(".pubsub").join("identities"),
            None => PathBuf::from(".pubsub").join("identities"),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Import a PEM certificate (leaf first, optionally followed by its chain) and its PEM
    /// private key. Returns the certificate id (SHA-256 of the leaf's DER). Fails when the
    /// key does not belong to the certificate. An identity already stored under the same
    /// id is replaced. See the type's example.
    ///
    /// # Errors
    /// [`Error::InvalidPem`] when `certificate_pem` holds no parsable certificate or
    /// `private_key_pem` no PKCS#1, SEC1 or PKCS#8 key; [`Error::Key`] when the key type
    /// is not supported or the key does not belong to the leaf certificate;
    /// [`Error::Io`] when writing the files fails. Nothing is stored on error (except
    /// after a failed write, which may leave a partial directory).
    pub fn import_pem(
        &self,
        certificate_pem: &[u8],
        private_key_pem: &[u8],
    ) -> Result<String, Error> {
        let certs = parse_certs(certificate_pem)?;
        let key = parse_key(private_key_pem)?;
        check_pair(&certs, &key)?;
        let id = certificate_id(certs[0].as_ref());
        self.write(&id, &certs, &key)?;
        Ok(id)
    }

    /// Import an identity from PKCS#12 data (as iOS `importIdentityFromPKCS12Data`),
    /// storing it under `certificate_id`, or under the computed certificate id when
    /// `certificate_id` is empty. Returns the id used.
    ///
    /// # Errors
    /// [`Error::Pkcs12`] when the data cannot be read (not PKCS#12, wrong passphrase), has
    /// no private key with a certificate, or a key encoding that is not supported;
    /// [`Error::Key`] when the key type is not supported or does not belong to the
    /// certificate; [`Error::InvalidCertificateId`] when `certificate_id` is not empty
    /// and has characters other than letters, digits, `-`, `_`, `.` (or is `.`, `..`,
    /// longer than 128); [`Error::Io`] when writing fails.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = pubsub::IdentityStore::open(pubsub::IdentityStore::default_location())?;
    /// let id = store.import_identity_from_pkcs12(&std::fs::read("device.p12")?, "passphrase", "")?;
    /// println!("stored as {id}"); // the certificate's SHA-256, as IoT Core's certificate id
    /// # Ok(()) }
    /// ```
    pub fn import_identity_from_pkcs12(
        &self,
        data: &[u8],
        passphrase: &str,
        certificate_id: &str,
    ) -> Result<String, Error> {
        let store = p12_keystore::KeyStore::from_pkcs12(
            data,
            passphrase,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|e| Error::Pkcs12(e.to_string()))?;
        let (_, chain) = store.private_key_chain().ok_or_else(|| {
            Error::Pkcs12("no private key with certificate in the archive".into())
        })?;
        let certs: Vec<CertificateDer<'static>> = chain
            .certs()
            .iter()
            .map(|c| CertificateDer::from(c.as_der().to_vec()))
            .collect();
        if certs.is_empty() {
            return Err(Error::Pkcs12("the private key has no certificate".into()));
        }
        let key = PrivateKeyDer::try_from(chain.key().as_der().to_vec())
            .map_err(|_| Error::Pkcs12("unsupported private key encoding".into()))?;
        check_pair(&certs, &key)?;
        let id = if certificate_id.is_empty() {
            self::certificate_id(certs[0].as_ref())
        } else {
            certificate_id.to_owned()
        };
        self.write(&id, &certs, &key)?;
        Ok(id)
    }

    fn write(
        &self,
        id: &str,
        certs: &[CertificateDer<'static>],
        key: &PrivateKeyDer<'static>,
    ) -> Result<(), Error> {
        check_id(id)?;
        let dir = self.dir.join(id);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(CERT_FILE), certs_to_pem(certs))?;
        let label = match key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let key_pem = pem::encode(&pem::Pem::new(label, key.secret_der().to_vec()));
        let key_path = dir.join(KEY_FILE);
        let tmp = dir.join(format!("{KEY_FILE}.tmp"));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(key_pem.as_bytes())?;
        f.sync_all()?;
        fs::rename(tmp, key_path)?;
        tracing::debug!(certificate_id = id, "identity stored");
        Ok(())
    }

    /// The certificate ids in the store, sorted. Entries that are not identities (no
    /// `certificate.pem`, a name that is no valid certificate id) are skipped.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be read (e.g. it was removed).
    pub fn list(&self) -> Result<Vec<String>, Error> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_id(&name).is_ok() && entry.path().join(CERT_FILE).is_file() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Delete an identity; `Ok(false)` when it was not there.
    ///
    /// # Errors
    /// [`Error::InvalidCertificateId`] when `certificate_id` is not a valid id (so that
    /// `../x` cannot reach outside the store); [`Error::Io`] when removing fails.
    pub fn delete(&self, certificate_id: &str) -> Result<bool, Error> {
        check_id(certificate_id)?;
        let dir = self.dir.join(certificate_id);
        if !dir.exists() {
            return Ok(false);
        }
        fs::remove_dir_all(dir)?;
        Ok(true)
    }

    /// The stored certificate chain as PEM.
    ///
    /// # Errors
    /// [`Error::InvalidCertificateId`]; [`Error::CertificateNotFound`] when nothing is
    /// stored under the id; [`Error::Io`] for other read failures.
    pub fn certificate_pem(&self, certificate_id: &str) -> Result<String, Error> {
        check_id(certificate_id)?;
        fs::read_to_string(self.dir.join(certificate_id).join(CERT_FILE)).map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::CertificateNotFound(certificate_id.to_owned())
                }
                _ => Error::Io(e),
            }
        })
    }

    /// Load a stored identity (what `connect` does with its certificate id). It is not
    /// checked further: use [`IdentityStore::is_valid_certificate`] for the key match and
    /// validity period.
    ///
    /// # Errors
    /// As [`IdentityStore::certificate_pem`] (also [`Error::CertificateNotFound`] when
    /// the key file is missing), plus [`Error::InvalidPem`] when a stored file no longer
    /// parses.
    pub fn load(&self, certificate_id: &str) -> Result<Identity, Error> {
        let certs = parse_certs(self.certificate_pem(certificate_id)?.as_bytes())?;
        let key_pem =
            fs::read(self.dir.join(certificate_id).join(KEY_FILE)).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::CertificateNotFound(certificate_id.to_owned())
                }
                _ => Error::Io(e),
            })?;
        let private_key = parse_key(&key_pem)?;
        Ok(Identity {
            certificates: certs,
            private_key,
        })
    }

    /// True when the identity exists, its key matches its certificate, and the certificate
    /// is within its validity period now (as iOS `isValidCertificate`).
    pub fn is_valid_certificate(&self, certificate_id: &str) -> bool {
        self.is_valid_at(certificate_id, SystemTime::now())
    }

    /// [`IdentityStore::is_valid_certificate`] at a given time.
    pub fn is_valid_at(&self, certificate_id: &str, at: SystemTime) -> bool {
        let Ok(id) = self.load(certificate_id) else {
            return false;
        };
        if check_pair(&id.certificates, &id.private_key).is_err() {
            return false;
        }
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(id.certificates[0].as_ref()) else {
            return false;
        };
        let Ok(now) = at.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let now = now.as_secs() as i64;
        let v = cert.validity();
        v.not_before.timestamp() <= now && now <= v.not_after.timestamp()
    }
}
