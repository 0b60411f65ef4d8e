//! The TLS client-certificate verifier for mutual TLS (`mqtts`, ALPN `x-amzn-mqtt-ca`):
//! a certificate is accepted exactly when the registry accepts it (registered and ACTIVE,
//! or vouched for by a registered CA with `auto_register`).
//!
//! rustls calls it inside the handshake, on a runtime worker, so it reads the registry from
//! memory only: the file is reloaded when it changes (`Registry::watch`) and an
//! auto-registration is saved on a thread of its own.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use tracing::warn;

use super::PolicyStore;
use crate::registry::{Registry, Verified};

/// Accepts exactly the client certificates the registry accepts; the handshake signature
/// (proof of the private key) is checked as rustls's own verifier does.
pub(crate) struct RegistryVerifier {
    registry: Arc<Registry>,
    policies: Arc<PolicyStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl RegistryVerifier {
    pub(crate) fn new(
        registry: Arc<Registry>,
        policies: Arc<PolicyStore>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> RegistryVerifier {
        RegistryVerifier {
            registry,
            policies,
            algorithms,
        }
    }
}

impl std::fmt::Debug for RegistryVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryVerifier")
    }
}

impl ClientCertVerifier for RegistryVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.registry.verify_client(end_entity, intermediates, now) {
            Ok(Verified::Registered) => Ok(ClientCertVerified::assertion()),
            Ok(Verified::AutoRegistered {
                certificate_id,
                policies,
            }) => {
                // The registry changed in memory; the file is written off the handshake
                // path (a write and two fsyncs must not stall a runtime worker).
                self.policies.attach(&certificate_id, &policies);
                self.registry.save_soon();
                Ok(ClientCertVerified::assertion())
            }
            Err(refusal) => {
                self.policies
                    .metrics
                    .auth_refused("certificate", refusal.kind);
                warn!(certificate_id = %refusal.certificate_id, reason = %refusal.reason, "client certificate refused (TLS alert)");
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
