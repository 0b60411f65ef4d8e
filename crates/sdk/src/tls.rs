//! rustls client configurations (ring provider; aws-lc-rs stays out of the build).

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::Error;
use crate::identity::Identity;

/// Build a TLS client configuration: trust the CA certificates of `ca_file` (PEM), or the
/// webpki roots when `None`; authenticate with `identity` when given; offer `alpn`.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    identity: Option<&Identity>,
    alpn: &[&str],
) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::InvalidPem(format!("CA file {}: {e}", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::InvalidPem(format!(
                    "no CA certificate in {}",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => {
            builder.with_client_auth_cert(id.certificates.clone(), id.private_key.clone_key())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// The SDK's HTTP client (Cognito, iot-data): `tls`'s roots, the time limits (the connect
/// limit at most the request's), the SDK's user agent.
pub(crate) fn http_client(
    tls: &ClientConfig,
    timeout: std::time::Duration,
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .timeout(timeout)
        .connect_timeout(connect_timeout.min(timeout))
        .user_agent(concat!("PubSubRust/", env!("CARGO_PKG_VERSION")))
        .build()
}
