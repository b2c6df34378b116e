//! A memo of signatures already verified, so that a client presenting the same
//! access token on every request pays for the public-key operation once.
//!
//! An Ed25519 or ECDSA verification costs tens of microseconds: more than the rest
//! of a request. A signature check is a pure function of the key and the exact
//! bytes of the token, so its result can be remembered. [`SignatureMemo`] does
//! exactly that and nothing more: [`Verifier::verify_memoized`] still parses the
//! header, requires a known `kid` and the key's algorithm, parses the payload and
//! checks every claim against `now` on every call; only the signature computation
//! is skipped when this exact token was verified before with this exact key.
//!
//! - **What is remembered.** A SHA-256 digest of the key's public bytes, its
//!   algorithm and the whole token, with the token's `exp`. A token whose
//!   signature failed is never remembered, so only tokens this key really signed
//!   can take room. The digest cannot be turned back into a token: a memory dump
//!   of the memo yields nothing usable.
//! - **Keys.** The digest binds the key material, not only the `kid`, so a key
//!   replaced under the same `kid` does not inherit the old key's results; a
//!   pruned key fails at the `kid` lookup before the memo is consulted.
//! - **Bounded.** At most `capacity` entries. When it is full, entries whose `exp`
//!   has passed are swept out (at most once a second); if it is still full, new
//!   results are simply not remembered until tokens expire. Nothing is evicted
//!   early, so a flood of valid tokens cannot push the memo into a sweep per call.
//!
//! [`Verifier::verify_memoized`]: crate::Verifier::verify_memoized

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError, RwLock};

use sessionguard_core::Timestamp;
use sha2::{Digest, Sha256};

use crate::keys::SigningKey;

/// How long a full memo waits between two sweeps of expired entries, in ms.
const SWEEP_EVERY_MS: i64 = 1_000;

/// Remembered signature checks (see the [module documentation](self)).
pub struct SignatureMemo {
    capacity: usize,
    /// Digest of (key, token) → the token's `exp`.
    entries: RwLock<HashMap<[u8; 32], Timestamp>>,
    /// When a full memo was last swept.
    last_sweep: Mutex<Option<Timestamp>>,
}

/// The memo's name for one (key, token) pair.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoKey([u8; 32]);

impl SignatureMemo {
    /// An empty memo holding at most `capacity` results (0 remembers nothing).
    pub fn new(capacity: usize) -> Self {
        SignatureMemo {
            capacity,
            entries: RwLock::new(HashMap::new()),
            last_sweep: Mutex::new(None),
        }
    }

    /// The most results it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many results it holds now.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether it holds no result.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn key(signing_key: &SigningKey, token: &str) -> MemoKey {
        let mut h = Sha256::new();
        h.update(b"sessionguard/jwt-signature-memo/v1\0");
        h.update(signing_key.alg().as_str().as_bytes());
        h.update([0]);
        signing_key.digest_public(&mut h);
        h.update([0]);
        h.update(token.as_bytes());
        MemoKey(h.finalize().into())
    }

    /// Whether the signature named by `key` was verified before.
    pub(crate) fn contains(&self, key: MemoKey) -> bool {
        self.capacity > 0
            && self
                .entries
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(&key.0)
    }

    /// Remembers that the signature named by `key` verified, for a token that
    /// expires at `exp`.
    pub(crate) fn insert(&self, key: MemoKey, exp: Timestamp, now: Timestamp) {
        if self.capacity == 0 || exp <= now {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            let mut last = self
                .last_sweep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = last.is_none_or(|at| now.as_millis() - at.as_millis() >= SWEEP_EVERY_MS);
            if !due {
                return;
            }
            *last = Some(now);
            entries.retain(|_, exp| *exp > now);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(key.0, exp);
    }
}

impl fmt::Debug for SignatureMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureMemo")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}
