//! The identity store: PEM and PKCS#12 import, list, delete, validity.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{Pki, TempDir};
use pubsub::identity::certificate_id;
use pubsub::{Error, IdentityStore};

#[test]
fn import_pem_list_validate_delete() {
    let pki = Pki::new();
    let dir = TempDir::new("ids");
    let store = IdentityStore::open(dir.path()).unwrap();
    assert!(store.list().unwrap().is_empty());
    let id = store
        .import_pem(pki.client_pem.as_bytes(), pki.client_key_pem.as_bytes())
        .unwrap();
    assert_eq!(id, certificate_id(&pki.client_der));
    assert_eq!(id.len(), 64);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(store.list().unwrap(), vec![id.clone()]);
    assert!(store.is_valid_certificate(&id));
    assert!(
        !store.is_valid_at(&id, UNIX_EPOCH + Duration::from_secs(10)),
        "before notBefore"
    );
    assert!(store
        .certificate_pem(&id)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(&id).join("private.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others");
    }
    // Debug output never shows the key.
    let loaded = store.load(&id).unwrap();
    assert!(!format!("{loaded:?}").contains("PRIVATE"));

    assert!(store.delete(&id).unwrap());
    assert!(!store.delete(&id).unwrap());
    assert!(!store.is_valid_certificate(&id));
    assert!(matches!(
        store.load(&id),
        Err(Error::CertificateNotFound(_))
    ));
    assert!(matches!(
        store.delete("../etc"),
        Err(Error::InvalidCertificateId(_))
    ));
}

#[test]
fn mismatched_key_is_refused() {
    let a = Pki::new();
    let b = Pki::new();
    let dir = TempDir::new("ids-mismatch");
    let store = IdentityStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.import_pem(a.client_pem.as_bytes(), b.client_key_pem.as_bytes()),
        Err(Error::Key(_))
    ));
    assert!(matches!(
        store.import_pem(b"junk", a.client_key_pem.as_bytes()),
        Err(Error::InvalidPem(_))
    ));
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn import_pkcs12() {
    let pki = Pki::new();
    let chain = p12_keystore::PrivateKeyChain::new(
        [1u8, 2, 3, 4].to_vec(),
        p12_keystore::PrivateKey::from_der(&pki.client_key_der).unwrap(),
        [p12_keystore::Certificate::from_der(&pki.client_der).unwrap()],
    );
    let mut ks = p12_keystore::KeyStore::new();
    ks.add_entry("thing", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    let data = ks.writer("s3cret").write().unwrap();

    let dir = TempDir::new("ids-p12");
    let store = IdentityStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.import_identity_from_pkcs12(&data, "wrong", ""),
        Err(Error::Pkcs12(_))
    ));
    let id = store
        .import_identity_from_pkcs12(&data, "s3cret", "")
        .unwrap();
    assert_eq!(id, certificate_id(&pki.client_der));
    let named = store
        .import_identity_from_pkcs12(&data, "s3cret", "my-device")
        .unwrap();
    assert_eq!(named, "my-device");
    assert!(store.is_valid_certificate(&id));
    assert!(store.is_valid_certificate("my-device"));
    assert_eq!(store.list().unwrap().len(), 2);
}
