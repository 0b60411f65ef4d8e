//! What the broker reads out of an X.509 certificate: its id (IoT Core's: lowercase hex
//! SHA-256 of the DER), its validity period, and the subject and issuer fields that policy
//! variables (`${iot:Certificate.Subject.CommonName}`…) name. Pure functions.

use std::collections::BTreeMap;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

use super::RegistryError;

/// IoT Core's certificate id: lowercase hex SHA-256 of the DER.
pub fn certificate_id(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

pub fn certificate_id_of_pem(pem: &str) -> Result<String, RegistryError> {
    Ok(certificate_id(&der_of_pem(pem)?))
}

/// The DER of a PEM certificate, which must parse as X.509 (not just as base64).
pub(super) fn der_of_pem(pem: &str) -> Result<CertificateDer<'static>, RegistryError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|error| RegistryError::BadCertificate(error.to_string()))?;
    x509_parser::parse_x509_certificate(&der).map_err(|error| {
        RegistryError::BadCertificate(format!("not an X.509 certificate: {error}"))
    })?;
    Ok(der)
}

pub(super) fn pem_of(der: &CertificateDer<'_>) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

pub(super) fn check_validity(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| format!("unparsable certificate: {error}"))?;
    let validity = parsed.validity();
    let now = now.as_secs() as i64;
    if now < validity.not_before.timestamp() {
        return Err(format!(
            "not yet valid (valid from {})",
            validity.not_before
        ));
    }
    if now > validity.not_after.timestamp() {
        return Err(format!("expired (valid until {})", validity.not_after));
    }
    Ok(())
}

/// Subject and issuer fields under the names IoT policy variables use
/// (`${iot:Certificate.Subject.CommonName}` …).
/// The identity a certificate carries (its id, subject and issuer fields).
pub fn identity_of_der(der: &CertificateDer<'_>) -> Result<CertificateIdentity, String> {
    identity_of(der, &certificate_id(der))
}

pub(super) fn identity_of(
    der: &CertificateDer<'_>,
    id: &str,
) -> Result<CertificateIdentity, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| format!("unparsable certificate: {error}"))?;
    Ok(CertificateIdentity {
        certificate_id: id.to_owned(),
        subject: name_fields(parsed.subject()),
        issuer: name_fields(parsed.issuer()),
    })
}

fn name_fields(name: &x509_parser::x509::X509Name<'_>) -> BTreeMap<String, String> {
    use x509_parser::oid_registry as oids;
    let known = [
        (oids::OID_X509_COMMON_NAME, "CommonName"),
        (oids::OID_X509_ORGANIZATION_NAME, "Organization"),
        (oids::OID_X509_ORGANIZATIONAL_UNIT, "OrganizationalUnit"),
        (oids::OID_X509_COUNTRY_NAME, "Country"),
        (oids::OID_X509_LOCALITY_NAME, "Locality"),
        (oids::OID_X509_STATE_OR_PROVINCE_NAME, "State"),
        (oids::OID_X509_SERIALNUMBER, "SerialNumber"),
        (oids::OID_X509_TITLE, "Title"),
        (oids::OID_X509_SURNAME, "Surname"),
        (oids::OID_X509_GIVEN_NAME, "GivenName"),
        (oids::OID_X509_INITIALS, "Initials"),
        (oids::OID_X509_GENERATION_QUALIFIER, "GenerationQualifier"),
        (oids::OID_X509_DN_QUALIFIER, "DistinguishedNameQualifier"),
    ];
    let mut fields = BTreeMap::new();
    for attribute in name.iter_attributes() {
        if let Some((_, field)) = known.iter().find(|(oid, _)| oid == attribute.attr_type()) {
            if let Ok(value) = attribute.as_str() {
                fields
                    .entry((*field).to_owned())
                    .or_insert_with(|| value.to_owned());
            }
        }
    }
    fields
}

/// What a verified client certificate tells the broker about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateIdentity {
    pub certificate_id: String,
    pub subject: BTreeMap<String, String>,
    pub issuer: BTreeMap<String, String>,
}

impl CertificateIdentity {
    /// What a policy may read of the certificate (`${iot:Certificate.Subject.…}`,
    /// `${iot:Certificate.Issuer.…}`), whatever carried the request (MQTT, HTTPS).
    pub fn add_facts(&self, context: &mut iot::RequestContext) {
        let fields = |names: &BTreeMap<String, String>| {
            names.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let facts = context.facts_mut();
        facts.certificate_subject = fields(&self.subject);
        facts.certificate_issuer = fields(&self.issuer);
    }
}
