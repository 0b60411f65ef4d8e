//! TLS material the broker makes for itself: a local root CA and a server certificate
//! (when `[tls]` is absent), and a device CA that issues `create-keys-and-certificate`
//! certificates. Generated once into `data_dir` and reused on later starts.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsMaterialError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The server's certificate chain and key, ready for rustls.
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The CA file clients should trust, when the broker generated it.
    pub generated_ca: Option<PathBuf>,
}

/// `[tls] cert/key` when configured, else the generated local CA and server certificate
/// in `<data_dir>/tls/` (made on first start).
pub fn server_identity(config: &Config) -> Result<ServerIdentity, TlsMaterialError> {
    if let Some(files) = &config.tls {
        return Ok(ServerIdentity {
            chain: read_certificates(&files.cert)?,
            key: read_key(&files.key)?,
            generated_ca: None,
        });
    }
    let dir = config.data_dir.join("tls");
    let (ca_pem, ca_key) = load_or_create_ca(&dir, "PubSub local root CA")?;
    let server_pem = dir.join("server.pem");
    let server_key = dir.join("server.key");
    if !server_pem.is_file() || !server_key.is_file() {
        let issuer = issuer_from(&ca_pem, &ca_key)?;
        let key = KeyPair::generate()?;
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if !names.contains(&config.endpoint) {
            names.push(config.endpoint.clone());
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.distinguished_name = common_name("PubSub broker");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, 825);
        let certificate = params.signed_by(&key, &issuer)?;
        write_private(&server_key, &key.serialize_pem())?;
        write(&server_pem, &certificate.pem())?;
    }
    Ok(ServerIdentity {
        chain: read_certificates(&server_pem)?,
        key: read_key(&server_key)?,
        generated_ca: Some(dir.join("ca.pem")),
    })
}

/// A certificate issued to a device, in the shapes `create-keys-and-certificate` prints.
pub struct IssuedCertificate {
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub public_key_pem: String,
}

/// The CA in `<data_dir>/devices/` that issues device certificates. Each issued certificate
/// is registered on its own; the CA itself is not an auto-registering CA.
pub fn issue_device_certificate(
    data_dir: &Path,
    common_name_text: &str,
) -> Result<IssuedCertificate, TlsMaterialError> {
    let dir = data_dir.join("devices");
    let (ca_pem, ca_key) = load_or_create_ca(&dir, "PubSub device CA")?;
    let issuer = issuer_from(&ca_pem, &ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = common_name(common_name_text);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    set_validity(&mut params, 365 * 30);
    let certificate = params.signed_by(&key, &issuer)?;
    Ok(IssuedCertificate {
        certificate_pem: certificate.pem(),
        private_key_pem: key.serialize_pem(),
        public_key_pem: key.public_key_pem(),
    })
}

/// Signs a certificate signing request with the device CA (CreateCertificateFromCsr).
pub fn issue_from_csr(data_dir: &Path, csr_pem: &str) -> Result<String, TlsMaterialError> {
    let dir = data_dir.join("devices");
    let (ca_pem, ca_key) = load_or_create_ca(&dir, "PubSub device CA")?;
    let issuer = issuer_from(&ca_pem, &ca_key)?;
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    set_validity(&mut csr.params, 365 * 30);
    Ok(csr.signed_by(&issuer)?.pem())
}

/// `(ca.pem, ca.key)` paths in `dir`, creating a self-signed CA there if missing.
fn load_or_create_ca(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), TlsMaterialError> {
    let ca_pem = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    if ca_pem.is_file() && ca_key.is_file() {
        return Ok((ca_pem, ca_key));
    }
    std::fs::create_dir_all(dir).map_err(|source| TlsMaterialError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = common_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, 365 * 30);
    let certificate = params.self_signed(&key)?;
    write_private(&ca_key, &key.serialize_pem())?;
    write(&ca_pem, &certificate.pem())?;
    Ok((ca_pem, ca_key))
}

fn issuer_from(ca_pem: &Path, ca_key: &Path) -> Result<Issuer<'static, KeyPair>, TlsMaterialError> {
    let key =
        KeyPair::from_pem(&read_text(ca_key)?).map_err(|error| TlsMaterialError::Invalid {
            path: ca_key.to_path_buf(),
            message: error.to_string(),
        })?;
    Issuer::from_ca_cert_pem(&read_text(ca_pem)?, key).map_err(|error| TlsMaterialError::Invalid {
        path: ca_pem.to_path_buf(),
        message: error.to_string(),
    })
}

fn common_name(name: &str) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    distinguished_name
}

/// Valid from a day ago (tolerates clock skew) for `days`.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
}

pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsMaterialError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsMaterialError::Invalid {
            path: path.to_path_buf(),
            message: format!("not a PEM certificate file: {error}"),
        })?;
    if chain.is_empty() {
        return Err(TlsMaterialError::Invalid {
            path: path.to_path_buf(),
            message: "no certificate in file".into(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsMaterialError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsMaterialError::Invalid {
        path: path.to_path_buf(),
        message: format!("not a PEM private key: {error}"),
    })
}

fn read_text(path: &Path) -> Result<String, TlsMaterialError> {
    std::fs::read_to_string(path).map_err(|source| TlsMaterialError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), TlsMaterialError> {
    std::fs::write(path, text).map_err(|source| TlsMaterialError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Private keys are readable by their owner only.
fn write_private(path: &Path, text: &str) -> Result<(), TlsMaterialError> {
    crate::secrets::write_private(path, text).map_err(|source| TlsMaterialError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_is_reused_and_names_localhost() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            endpoint: "broker.example".into(),
            ..Config::default()
        };
        let first = server_identity(&config).unwrap();
        let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
        let second = server_identity(&config).unwrap();
        assert_eq!(first.chain, second.chain);
        assert_eq!(ca, std::fs::read(dir.path().join("tls/ca.pem")).unwrap());
        let (_, parsed) = x509_parser::parse_x509_certificate(&first.chain[0]).unwrap();
        let names = format!(
            "{:?}",
            parsed.subject_alternative_name().unwrap().unwrap().value
        );
        for name in ["localhost", "broker.example", "127.0.0.1"] {
            assert!(names.contains(name) || names.contains("127"), "{names}");
        }
    }

    #[test]
    fn device_certificates_come_from_one_device_ca() {
        let dir = tempfile::tempdir().unwrap();
        let a = issue_device_certificate(dir.path(), "dev-a").unwrap();
        let b = issue_device_certificate(dir.path(), "dev-b").unwrap();
        assert_ne!(a.certificate_pem, b.certificate_pem);
        assert!(a.private_key_pem.contains("PRIVATE KEY"));
        assert!(a.public_key_pem.contains("PUBLIC KEY"));
        let der = CertificateDer::from_pem_slice(a.certificate_pem.as_bytes()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(parsed.issuer().to_string().contains("PubSub device CA"));
    }
}
