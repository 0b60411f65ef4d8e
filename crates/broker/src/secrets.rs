//! Random identifiers and secrets the broker hands out, and how private files are written.

use std::path::Path;

use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;

/// Random letters and digits.
pub fn random_alphanumeric(length: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), length)
}

/// An AWS-shaped access key pair: `<prefix>` + 16 upper-case characters, a 40-character
/// secret (`AKIA` for long-lived keys, `ASIA` for temporary ones, as AWS does).
pub fn access_key_pair(prefix: &str) -> (String, String) {
    let id = format!("{prefix}{}", random_alphanumeric(16).to_ascii_uppercase());
    (id, random_alphanumeric(40))
}

/// A random identifier in UUID layout (`8-4-4-4-12` hex digits).
pub fn uuid_shaped() -> String {
    uuid_text(rand::rng().random())
}

/// A 128-bit value in UUID layout: kept as a number, written out only when needed.
pub fn uuid_text(value: u128) -> String {
    let hex = format!("{value:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Writes a file only its owner may read (keys, credentials), creating its folder.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_uuid_shaped_and_distinct() {
        let a = uuid_shaped();
        assert_eq!(a.len(), 36);
        assert_ne!(a, uuid_shaped());
    }

    #[test]
    fn access_keys_look_like_aws_keys() {
        let (id, secret) = access_key_pair("ASIA");
        assert!(id.starts_with("ASIA") && id.len() == 20, "{id}");
        assert_eq!(id, id.to_ascii_uppercase());
        assert_eq!(secret.len(), 40);
    }
}
