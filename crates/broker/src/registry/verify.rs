//! The client-certificate decision, as IoT Core makes it: registered and ACTIVE (with an
//! ACTIVE CA, if it has one), or signed by a registered ACTIVE CA with `auto_register`.
//! Reads the registry from memory only: it runs inside a TLS handshake.

use rustls_pki_types::{CertificateDer, UnixTime};

use super::x509::{certificate_id, check_validity, der_of_pem, identity_of, pem_of};
use super::{
    attach_names, status_name, unix_now, CaRecord, CertificateRecord, CertificateRefusal, Registry,
    RegistryState, Verified,
};
use crate::config::CertificateStatus;

impl Registry {
    /// Decides whether a client certificate may connect, as IoT Core does. Registers it
    /// on first use when it comes from an ACTIVE CA with `auto_register`.
    pub fn verify_client(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Verified, CertificateRefusal> {
        let id = certificate_id(end_entity);
        let refuse = |kind: &'static str, reason: String| CertificateRefusal {
            certificate_id: id.clone(),
            kind,
            reason,
        };
        identity_of(end_entity, &id).map_err(|reason| refuse("malformed", reason))?;
        check_validity(end_entity, now).map_err(|reason| refuse("validity", reason))?;
        let mut guard = self.state.lock();
        let state = &mut guard.0;
        if let Some(record) = state.certificates.get(&id) {
            if record.status != CertificateStatus::Active {
                return Err(refuse(
                    status_label(record.status),
                    format!("status is {}", status_name(record.status)),
                ));
            }
            if let Some(ca) = record
                .ca_certificate_id
                .as_ref()
                .and_then(|ca| state.ca_certificates.get(ca))
            {
                if ca.status != CertificateStatus::Active {
                    return Err(refuse(
                        "ca_not_active",
                        format!("its CA {} is {}", ca.certificate_id, status_name(ca.status)),
                    ));
                }
            }
            return Ok(Verified::Registered);
        }
        // Not registered itself: only a registered CA can vouch for it.
        let Some(ca) = verifying_ca(state, end_entity, intermediates, now) else {
            return Err(refuse(
                "unknown",
                "unknown: not registered, and not signed by a registered CA".into(),
            ));
        };
        if ca.status != CertificateStatus::Active {
            return Err(refuse(
                "ca_not_active",
                format!("its CA {} is {}", ca.certificate_id, status_name(ca.status)),
            ));
        }
        if !ca.auto_register {
            return Err(refuse(
                "not_registered",
                format!(
                    "not registered (its CA {} has auto_register = false)",
                    ca.certificate_id
                ),
            ));
        }
        let (ca_id, policies) = (ca.certificate_id.clone(), ca.policies.clone());
        let record = CertificateRecord {
            certificate_id: id.clone(),
            certificate_pem: pem_of(end_entity),
            status: CertificateStatus::Active,
            ca_certificate_id: Some(ca_id.clone()),
            creation_date: unix_now(),
        };
        state.certificates.insert(id.clone(), record.clone());
        attach_names(state, &id, &policies);
        // Saved by `save_soon`, off the handshake.
        self.auto_registered.lock().push((record, policies.clone()));
        tracing::info!(certificate_id = %id, ca = %ca_id, "certificate registered ACTIVE on first use (auto_register)");
        Ok(Verified::AutoRegistered {
            certificate_id: id,
            policies,
        })
    }
}

/// A certificate status as a metrics label.
fn status_label(status: CertificateStatus) -> &'static str {
    match status {
        CertificateStatus::Active => "active",
        CertificateStatus::Inactive => "inactive",
        CertificateStatus::Revoked => "revoked",
        CertificateStatus::PendingActivation => "pending_activation",
    }
}

/// The registered CA (any status) whose signature the chain verifies against.
pub(super) fn verifying_ca<'s>(
    state: &'s RegistryState,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Option<&'s CaRecord> {
    let leaf = webpki::EndEntityCert::try_from(end_entity).ok()?;
    state.ca_certificates.values().find(|ca| {
        let Ok(ca_der) = der_of_pem(&ca.certificate_pem) else {
            return false;
        };
        let Ok(anchor) = webpki::anchor_from_trusted_cert(&ca_der) else {
            return false;
        };
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .is_ok()
    })
}
