//! Passwords: argon2id hashing with OWASP parameters.
//!
//! Hashing is deliberately slow (tens of milliseconds) and synchronous; async
//! callers run it on a blocking thread.

use std::fmt;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::model::PasswordHash;

/// A password as typed. Zeroized on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

/// A password that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Longer than [`Password::MAX_LEN`] bytes.
    #[error("the password is longer than 1024 bytes")]
    TooLong,
    /// Shorter than [`Password::MIN_CHARS`] characters (only checked for new passwords).
    #[error("the password must have at least 8 characters")]
    TooShort,
}

impl Password {
    /// Longest accepted password, in bytes (bounds the hashing work per request).
    pub const MAX_LEN: usize = 1024;
    /// Shortest password accepted when one is set (NIST SP 800-63B: at least 8).
    pub const MIN_CHARS: usize = 8;

    /// Wraps a password presented for verification. Only the length bound applies:
    /// a login attempt with a short password is simply wrong, not a different error.
    pub fn new(s: String) -> Result<Self, PasswordError> {
        // Wrapped first, so a refused password is zeroized too.
        let s = Zeroizing::new(s);
        if s.len() > Self::MAX_LEN {
            return Err(PasswordError::TooLong);
        }
        Ok(Password(s))
    }

    /// Wraps a password that is about to be set, enforcing the minimum length too.
    pub fn new_for_setting(s: String) -> Result<Self, PasswordError> {
        let p = Self::new(s)?;
        if p.0.chars().count() < Self::MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        Ok(p)
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Hashes and verifies passwords with argon2id.
///
/// `verify` against a missing user still runs a full hash against a dummy, so an
/// unknown username and a wrong password take the same time.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    dummy: PasswordHash,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", self.argon.params())
            .finish_non_exhaustive()
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::owasp()
    }
}

impl PasswordHasher {
    /// argon2id, m = 19 MiB, t = 2, p = 1: the OWASP Password Storage Cheat Sheet's
    /// first recommended configuration.
    pub fn owasp() -> Self {
        let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2 parameters are valid");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = PasswordHasher {
            argon,
            dummy: PasswordHash::from_phc(String::new()),
        };
        let dummy_pw = Password(Zeroizing::new(String::from("sessionguard-dummy-password")));
        hasher.dummy = hasher.hash(&dummy_pw);
        hasher
    }

    /// Hashes `password` with a fresh random salt.
    pub fn hash(&self, password: &Password) -> PasswordHash {
        let mut salt_bytes = [0u8; 16];
        getrandom::fill(&mut salt_bytes).expect("the operating system's CSPRNG is unavailable");
        let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
        let phc = self
            .argon
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 hashing cannot fail with valid parameters and bounded input");
        PasswordHash::from_phc(phc.to_string())
    }

    /// Whether `password` matches `hash`. With `hash = None` (unknown user) it
    /// verifies against a dummy hash and returns `false`, taking the same time.
    pub fn verify(&self, password: &Password, hash: Option<&PasswordHash>) -> bool {
        let target = hash.unwrap_or(&self.dummy);
        let ok = match argon2::PasswordHash::new(target.as_phc()) {
            Ok(parsed) => self
                .argon
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
        ok && hash.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = PasswordHasher::owasp();
        let pw = Password::new_for_setting("correct horse battery".into()).unwrap();
        let hash = h.hash(&pw);
        assert!(hash.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(&pw, Some(&hash)));
        let wrong = Password::new("correct horse battery!".into()).unwrap();
        assert!(!h.verify(&wrong, Some(&hash)));
    }

    #[test]
    fn unknown_user_never_verifies_even_with_the_dummy_password() {
        let h = PasswordHasher::owasp();
        let pw = Password::new("sessionguard-dummy-password".into()).unwrap();
        assert!(!h.verify(&pw, None));
    }

    #[test]
    fn length_rules() {
        assert_eq!(
            Password::new_for_setting("short".into()).unwrap_err(),
            PasswordError::TooShort
        );
        assert!(Password::new("short".into()).is_ok());
        assert_eq!(
            Password::new("x".repeat(1025)).unwrap_err(),
            PasswordError::TooLong
        );
        assert_eq!(
            format!("{:?}", Password::new("hunter22".into()).unwrap()),
            "Password(<redacted>)"
        );
    }
}
