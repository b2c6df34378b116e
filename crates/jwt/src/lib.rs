//! # sessionguard-jwt
//!
//! sessionguard's access tokens (invariant 8): short-lived JWTs in the RFC 9068
//! profile, signed with a key whose algorithm is pinned, published as a JWKS
//! (RFC 7517), and rotated without breaking tokens already issued.
//!
//! - [`KeySet`]: the active [`SigningKey`] plus retired keys; generate, rotate,
//!   prune, publish ([`KeySet::jwks`]), persist ([`KeySet::save`],
//!   [`KeySet::load_or_create`]) and sign ([`KeySet::sign`]);
//! - [`AccessClaims`]: `iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`,
//!   `client_id` and sessionguard's `sid`;
//! - [`Verifier`]: checks a token against a key set, an issuer and an audience at
//!   a time the caller passes in;
//! - [`JwtError`]: every way a token or a key file can be refused.
//!
//! There is no HTTP, storage backend, async or clock in this crate: time comes in
//! as a [`Timestamp`](sessionguard_core::Timestamp) on every call.
//!
//! ## Algorithm pinning
//!
//! Only two algorithms exist here, [`Algorithm::EdDSA`] (Ed25519, the default)
//! and [`Algorithm::ES256`] (ECDSA P-256 with SHA-256). Each key is created for
//! exactly one of them and the algorithm used to verify a token is *the key's*.
//! The header's `alg` is only compared with it: a header that says anything else,
//! whether `none` in any spelling, `HS256` (the classic "public key as HMAC
//! secret" confusion), `RS256`, or the other one of our two algorithms, is refused
//! with [`JwtError::UnsupportedAlgorithm`] before any signature is computed.
//!
//! ## Verification order
//!
//! [`Verifier::verify`] trusts nothing it has not checked, and checks the cheap
//! things first:
//!
//! 1. the token is at most [`MAX_TOKEN_LEN`] bytes ([`JwtError::TooLong`]);
//! 2. it has exactly three base64url segments, and its header is a JSON object
//!    ([`JwtError::Malformed`]); the header is read, not trusted, and a `crit`
//!    header is refused because no extension is understood here;
//! 3. `typ` is `at+jwt` or `application/at+jwt`, in any case ([`JwtError::WrongType`]);
//! 4. `kid` is present and 1 to 64 characters of `[A-Za-z0-9_-]`, so no path or
//!    URL ever reaches a lookup ([`JwtError::InvalidKeyId`]), and names a key in the
//!    set ([`JwtError::UnknownKey`]);
//! 5. `alg` equals that key's algorithm ([`JwtError::UnsupportedAlgorithm`]);
//! 6. the signature verifies with that key ([`JwtError::BadSignature`]);
//! 7. only then is the payload parsed, and its claims checked: `exp` (required;
//!    a token is expired *at* `exp`), `nbf` and `iat` (not in the future), `iss`,
//!    `aud` (a string, or an array that contains the expected audience), `sub` and
//!    `sid` ([`JwtError::Expired`], [`JwtError::NotYetValid`],
//!    [`JwtError::WrongIssuer`], [`JwtError::WrongAudience`],
//!    [`JwtError::MissingClaim`]).
//!
//! [`Verifier::verify_memoized`] runs the same checks in the same order, but skips
//! step 6's computation for a token whose signature this key already verified,
//! as remembered by a bounded [`SignatureMemo`]; every other step runs on every
//! call.
//!
//! ## Rotation and the retention of retired keys
//!
//! [`KeySet::rotate`] makes a fresh key the active one and marks the previous one
//! retired at `now`. A retired key no longer signs, but it stays in the set, so
//! tokens it signed still verify, and in the JWKS, so resource servers that cache
//! the JWKS can verify them too. No token outlives `retired_at + max_token_ttl`,
//! so [`KeySet::prune`] drops a retired key once that moment has come; its tokens
//! then fail with [`JwtError::UnknownKey`].
//!
//! ## Offline verification and logout
//!
//! A resource server that verifies access tokens offline, with nothing but the
//! JWKS, accepts a token until its `exp`, even after the session it came from has
//! been logged out or revoked: the signature and the claims cannot tell. That is
//! the price of offline verification, and the reason access tokens live minutes,
//! not hours. sessionguard's own server does not rely on the JWT alone: it also
//! checks that the `sid` session is still alive (invariant 2). A resource server
//! that must know about a logout at once uses token introspection (RFC 7662)
//! instead of, or in addition to, the JWKS.
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use sessionguard_core::{SessionId, Timestamp};
//! use sessionguard_jwt::{AccessClaims, Algorithm, KeySet, Verifier};
//!
//! let now = Timestamp::from_millis(1_800_000_000_000);
//! let keys = KeySet::generate(Algorithm::EdDSA, now);
//! let claims = AccessClaims::new(
//!     "https://auth.example",
//!     "u_alice",
//!     "https://api.example",
//!     SessionId::random(),
//!     now,
//!     Duration::from_secs(300),
//! );
//! let token = keys.sign(&claims)?;
//!
//! let verifier = Verifier::new("https://auth.example", "https://api.example");
//! let checked = verifier.verify(&keys, &token, now)?;
//! assert_eq!(checked.sub(), "u_alice");
//! # Ok::<(), sessionguard_jwt::JwtError>(())
//! ```

// Library code states its invariants with `expect`; tests may unwrap.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod claims;
pub mod keys;
pub mod memo;
pub mod verify;

pub use claims::AccessClaims;
pub use keys::{Algorithm, KeyId, KeySet, SigningKey};
pub use memo::SignatureMemo;
pub use verify::{MAX_TOKEN_LEN, Verifier, looks_like_jwt};

/// Why a token was refused, or a key file could not be used.
///
/// Messages name the rule that failed and never contain a token, a claim value or
/// key material, so they are safe to log. Callers answering a client should map
/// every token variant to the same `invalid_token` answer; the variants exist for
/// logs, metrics and tests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is longer than [`MAX_TOKEN_LEN`] bytes; nothing of it was decoded.
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not three base64url segments, a header or payload that is not a JSON object
    /// of the expected shape, a claim of the wrong JSON type, or a `crit` header.
    #[error("token is malformed")]
    Malformed,
    /// The header's `typ` is missing or is not `at+jwt`.
    #[error("token type is not at+jwt")]
    WrongType,
    /// The header has no `kid`, or one that is not 1 to 64 characters of `[A-Za-z0-9_-]`.
    #[error("token key id is missing or malformed")]
    InvalidKeyId,
    /// The `kid` names no key in the key set (never created, or pruned).
    #[error("token names an unknown key")]
    UnknownKey,
    /// The header's `alg` is not the algorithm of the key that `kid` names, or a
    /// string that is not one of the supported algorithms was parsed.
    #[error("token algorithm is not the algorithm of its key")]
    UnsupportedAlgorithm,
    /// The signature does not verify with the key that `kid` names.
    #[error("token signature does not verify")]
    BadSignature,
    /// `now` is at or after `exp` (plus leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` or `iat` is after `now` (plus leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("token issuer is not the expected one")]
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    #[error("token audience is not the expected one")]
    WrongAudience,
    /// A required claim is absent (or empty); the name of the claim is given.
    #[error("token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    /// Reading or writing a key file failed.
    #[error("key file i/o failed")]
    Io(#[from] std::io::Error),
    /// A key file (or [`KeySet::from_json_secret`] input) is not a key set this
    /// crate wrote; the reason is given, never the content.
    #[error("invalid key file: {0}")]
    InvalidKeyFile(&'static str),
    /// The cryptographic backend refused an operation on one of our own keys.
    /// Not expected to happen; reported rather than panicking.
    #[error("signing failed")]
    Signing,
}
