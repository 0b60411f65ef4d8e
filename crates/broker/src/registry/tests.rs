//! The registry against real certificates (rcgen) on a temporary directory.

use super::x509::*;
use super::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::CertificateDer;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate (DER), self-signed or issued by `ca`, valid `days_from..days_to`
/// around now.
fn leaf(ca: Option<&Ca>, days_from: i64, days_to: i64) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dev-42");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(days_from);
    params.not_after = now + time::Duration::days(days_to);
    let certificate = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    certificate.der().clone()
}

fn registry() -> (tempfile::TempDir, Registry, ()) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    (dir, registry, ())
}

fn add_ca(registry: &Registry, ca: &Ca, status: CertificateStatus, auto_register: bool) {
    let id = certificate_id_of_pem(&ca.pem).unwrap();
    let mut guard = registry.state.lock();
    guard.0.ca_certificates.insert(
        id.clone(),
        CaRecord {
            certificate_id: id,
            certificate_pem: ca.pem.clone(),
            status,
            auto_register,
            policies: vec!["dev-allow-all".into()],
        },
    );
}

fn verify(
    registry: &Registry,
    _store: &(),
    der: &CertificateDer<'_>,
) -> Result<CertificateIdentity, CertificateRefusal> {
    registry.verify_client(der, &[], UnixTime::now())?;
    Ok(identity_of_der(der).expect("parses"))
}

#[test]
fn registered_active_certificate_is_accepted_with_its_subject() {
    let (_dir, registry, store) = registry();
    let der = leaf(None, -1, 30);
    registry
        .register(&pem_of(&der), CertificateStatus::Active)
        .unwrap();
    let identity = verify(&registry, &store, &der).unwrap();
    assert_eq!(identity.certificate_id, certificate_id(&der));
    assert_eq!(identity.subject["CommonName"], "dev-42");
}

#[test]
fn each_refusal_names_the_certificate_and_the_reason() {
    let (_dir, registry, store) = registry();
    let unknown = leaf(None, -1, 30);
    let refusal = verify(&registry, &store, &unknown).unwrap_err();
    assert_eq!(refusal.certificate_id, certificate_id(&unknown));
    assert!(refusal.reason.contains("unknown"), "{}", refusal.reason);

    for (status, word) in [
        (CertificateStatus::Inactive, "INACTIVE"),
        (CertificateStatus::Revoked, "REVOKED"),
    ] {
        let der = leaf(None, -1, 30);
        registry.register(&pem_of(&der), status).unwrap();
        let reason = verify(&registry, &store, &der).unwrap_err().reason;
        assert!(reason.contains(word), "{reason}");
    }
    for (from, to, word) in [(-30, -1, "expired"), (1, 30, "not yet valid")] {
        let der = leaf(None, from, to);
        registry
            .register(&pem_of(&der), CertificateStatus::Active)
            .unwrap();
        let reason = verify(&registry, &store, &der).unwrap_err().reason;
        assert!(reason.contains(word), "{reason}");
    }
}

#[test]
fn ca_rules() {
    let (_dir, registry, store) = registry();
    let inactive = ca("inactive CA");
    add_ca(&registry, &inactive, CertificateStatus::Inactive, true);
    let reason = verify(&registry, &store, &leaf(Some(&inactive), -1, 30))
        .unwrap_err()
        .reason;
    assert!(reason.contains("INACTIVE"), "{reason}");

    let manual = ca("manual CA");
    add_ca(&registry, &manual, CertificateStatus::Active, false);
    let reason = verify(&registry, &store, &leaf(Some(&manual), -1, 30))
        .unwrap_err()
        .reason;
    assert!(reason.contains("auto_register"), "{reason}");

    let automatic = ca("auto CA");
    add_ca(&registry, &automatic, CertificateStatus::Active, true);
    let der = leaf(Some(&automatic), -1, 30);
    assert_eq!(
        registry.verify_client(&der, &[], UnixTime::now()),
        Ok(Verified::AutoRegistered {
            certificate_id: certificate_id(&der),
            policies: vec!["dev-allow-all".into()]
        })
    );
    let identity = identity_of_der(&der).unwrap();
    let record = registry.describe(&identity.certificate_id).unwrap();
    assert_eq!(record.status, CertificateStatus::Active);
    assert_eq!(
        registry.attached(&identity.certificate_id),
        ["dev-allow-all"]
    );
    // A second look finds it registered.
    assert_eq!(
        registry.verify_client(&der, &[], UnixTime::now()),
        Ok(Verified::Registered)
    );
}

#[test]
fn changes_by_another_process_are_seen() {
    let (dir, registry, store) = registry();
    let der = leaf(None, -1, 30);
    registry
        .register(&pem_of(&der), CertificateStatus::Active)
        .unwrap();
    assert!(verify(&registry, &store, &der).is_ok());
    // Another process (the CLI) revokes it; mtime granularity needs a moment.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let other = Registry::open(dir.path()).unwrap();
    other
        .update_status(&certificate_id(&der), CertificateStatus::Revoked)
        .unwrap();
    // The broker's watcher reloads on change; the verifier itself reads memory only.
    assert!(verify(&registry, &store, &der).is_ok());
    assert!(registry.reload_if_changed().unwrap());
    assert!(verify(&registry, &store, &der).is_err());
}

#[test]
fn a_certificate_registered_on_first_use_is_saved_without_losing_another_process_change() {
    let (dir, registry, store) = registry();
    let automatic = ca("auto CA");
    add_ca(&registry, &automatic, CertificateStatus::Active, true);
    let other = leaf(None, -1, 30);
    registry
        .register(&pem_of(&other), CertificateStatus::Active)
        .unwrap();
    let der = leaf(Some(&automatic), -1, 30);
    assert!(verify(&registry, &store, &der).is_ok());
    // Before the saver runs, another process (the CLI) revokes the other certificate.
    std::thread::sleep(std::time::Duration::from_millis(20));
    Registry::open(dir.path())
        .unwrap()
        .update_status(&certificate_id(&other), CertificateStatus::Revoked)
        .unwrap();
    registry.flush();
    let reopened = Registry::open(dir.path()).unwrap();
    assert_eq!(
        reopened.describe(&certificate_id(&der)).unwrap().status,
        CertificateStatus::Active,
        "the auto-registered certificate was saved"
    );
    assert_eq!(
        reopened.describe(&certificate_id(&other)).unwrap().status,
        CertificateStatus::Revoked,
        "the other process's change was kept"
    );
    assert_eq!(reopened.attached(&certificate_id(&der)), ["dev-allow-all"]);
    // The broker's copy is told to reload, so its policy store sees the change too.
    assert!(registry.reload_if_changed().unwrap());
}
