//! Cognito user pools' cryptography, shared by the broker (the server side) and the SDK (the
//! client side) so both run one implementation.
//!
//! - [`srp`]: SRP-6a as `USER_SRP_AUTH` runs it (SRP_A, PASSWORD_VERIFIER, the claim).
//! - [`jwt`]: RS256 ID and access tokens and the pool's JWKS.
//!
//! Pure: no I/O, no clock, no randomness of its own (times and random bytes are arguments),
//! so every result can be reproduced in a test.

pub mod jwt;
pub mod srp;

/// The part of a user pool id after `_` (`"AbCdEf123"` of `"us-east-1_AbCdEf123"`), which
/// SRP hashes as the pool's name; the whole id when it has no `_`.
pub fn pool_name(user_pool_id: &str) -> &str {
    user_pool_id
        .split_once('_')
        .map_or(user_pool_id, |(_, name)| name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pool_name_is_after_the_underscore() {
        assert_eq!(super::pool_name("us-east-1_AbCdEf123"), "AbCdEf123");
        assert_eq!(super::pool_name("AbCdEf123"), "AbCdEf123");
    }
}
