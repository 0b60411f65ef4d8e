//! Who is signed in to the web console: a random token per sign-in, sent back by the
//! browser in an `HttpOnly` cookie, good for [`SIGN_IN_LIFETIME`] or until signed out.
//! Tokens live in memory only (a restart signs everyone out) and only a token's SHA-256
//! is kept, so the table holds nothing a browser could present.
//!
//! A utility: any layer may use it; it uses none of them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use sha2::{Digest, Sha256};

/// How long a sign-in lasts (as the AWS console's default session).
pub const SIGN_IN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// At most this many sign-ins are kept; past it the one closest to expiry goes, so a
/// script signing in in a loop cannot grow the table without bound.
const MAX_SIGN_INS: usize = 1024;

#[derive(Debug, Default)]
pub struct SignIns {
    /// sha256(token) → when it expires.
    tokens: Mutex<HashMap<[u8; 32], Instant>>,
}

impl SignIns {
    /// A new sign-in: the token for the cookie (64 hex digits, 256 random bits).
    pub fn begin(&self, now: Instant) -> String {
        let token = hex::encode(rand::rng().random::<[u8; 32]>());
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, expires| *expires > now);
        if tokens.len() >= MAX_SIGN_INS {
            if let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(key, _)| *key)
            {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(digest(&token), now + SIGN_IN_LIFETIME);
        token
    }

    /// Whether `token` is a sign-in that has not expired or ended.
    pub fn is_valid(&self, token: &str, now: Instant) -> bool {
        self.tokens
            .lock()
            .get(&digest(token))
            .is_some_and(|expires| *expires > now)
    }

    /// Signs out: the token is no longer valid.
    pub fn end(&self, token: &str) {
        self.tokens.lock().remove(&digest(token));
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_valid_until_it_expires_or_is_ended() {
        let sign_ins = SignIns::default();
        let now = Instant::now();
        let token = sign_ins.begin(now);
        assert_eq!(token.len(), 64);
        assert!(sign_ins.is_valid(&token, now));
        assert!(!sign_ins.is_valid("not-a-token", now));
        assert!(!sign_ins.is_valid(&token, now + SIGN_IN_LIFETIME));
        let other = sign_ins.begin(now);
        assert_ne!(token, other);
        sign_ins.end(&other);
        assert!(!sign_ins.is_valid(&other, now));
        assert!(sign_ins.is_valid(&token, now));
    }

    #[test]
    fn the_table_is_bounded() {
        let sign_ins = SignIns::default();
        let now = Instant::now();
        let first = sign_ins.begin(now);
        for n in 1..=MAX_SIGN_INS as u64 {
            sign_ins.begin(now + Duration::from_millis(n));
        }
        assert_eq!(sign_ins.tokens.lock().len(), MAX_SIGN_INS);
        assert!(
            !sign_ins.is_valid(&first, now),
            "the oldest sign-in made room"
        );
    }
}
