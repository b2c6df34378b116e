//! What the engine decided, for whoever counts it: an [`Observer`] installed
//! with [`Engine::with_observer`](crate::Engine::with_observer) is told of every
//! credential check, refresh, revocation and throttled or settled password
//! check, once each, as the engine decides it.
//!
//! The core knows nothing of metrics systems: the server implements
//! [`Observer`] over Prometheus counters (`sessionguard_server::metrics`), and
//! an app using the engine in-process may install its own. The check path runs
//! on every request, so an [`Observation`] is a small `Copy` value made of
//! enums (no allocation, no text), and an engine without an observer pays one
//! branch per event.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use sessionguard_core::observe::{Credential, Observation, Observer};
//! use sessionguard_core::{Engine, MemoryStore, Policy};
//!
//! #[derive(Default)]
//! struct Refused(AtomicU64);
//!
//! impl Observer for Refused {
//!     fn observe(&self, event: Observation) {
//!         if let Observation::Check { credential: Credential::SessionToken, outcome: Err(_) } = event {
//!             self.0.fetch_add(1, Ordering::Relaxed);
//!         }
//!     }
//! }
//!
//! let refused = Arc::new(Refused::default());
//! let engine = Engine::new(MemoryStore::new(), Policy::default())
//!     .unwrap()
//!     .with_observer(refused.clone());
//! assert!(engine.validate("sgs_not-a-token").await.is_err());
//! assert_eq!(refused.0.load(Ordering::Relaxed), 1);
//! # });
//! ```

use std::fmt;

use crate::reason::Reason;

/// Told of the engine's decisions ([`Observation`]), synchronously, on the task
/// that made them: keep it to a few atomic operations.
pub trait Observer: Send + Sync + 'static {
    /// One decision of the engine.
    fn observe(&self, event: Observation);
}

/// One decision of the engine. Each is reported once, where it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observation {
    /// A presented credential was judged: `Ok` if it is live, else the reason
    /// it is not (`invalid_token` for anything that is not a token of ours).
    /// Session tokens are judged by `validate`, `validate_renewing`,
    /// `validate_rotating` and `status`; access tokens (whose signature the
    /// caller verified) by `validate_access`; API tokens by
    /// `validate_api_token` and `api_token_status`. A caller that refuses a
    /// credential before the engine sees it (an access token with a bad
    /// signature) reports that itself, so each check is counted once.
    Check {
        /// What was presented.
        credential: Credential,
        /// Live, or why not.
        outcome: Result<(), Reason>,
    },
    /// A refresh token was used ([`Engine::refresh`](crate::Engine::refresh)).
    Refresh(RefreshOutcome),
    /// A revocation took effect (only when this call made it: a second
    /// revocation of an ended session is not one).
    Revoked {
        /// What ended.
        scope: RevocationScope,
        /// Why.
        reason: Reason,
    },
    /// A password check was refused by the throttle before any password work
    /// (the caller answers 429).
    Throttled(ThrottledBy),
    /// A password check that the throttle let through was settled.
    PasswordChecked {
        /// Whether the password was right.
        verified: bool,
    },
}

/// The kind of credential a [`Observation::Check`] judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Credential {
    /// A session token (`sgs_`), as a cookie or a bearer token.
    SessionToken,
    /// An access token (JWT) naming its session.
    AccessToken,
    /// A personal API token (`sga_`).
    ApiToken,
}

impl Credential {
    /// Every kind, in the order of [`Credential::index`].
    pub const ALL: [Credential; 3] = [
        Credential::SessionToken,
        Credential::AccessToken,
        Credential::ApiToken,
    ];

    /// A stable snake_case code (a metrics label).
    pub const fn code(self) -> &'static str {
        match self {
            Credential::SessionToken => "session_token",
            Credential::AccessToken => "access_token",
            Credential::ApiToken => "api_token",
        }
    }

    /// The position in [`Credential::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// How a use of a refresh token ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// Rotated: a successor was issued.
    Rotated,
    /// A repeat within the grace window got the same successor again.
    Repeated,
    /// A replaced token was used again: the session is revoked.
    ReuseDetected,
    /// Presented by another client than it was issued to; nothing changed.
    ClientMismatch,
    /// Refused: not a live token of ours, or its session ended (the reason).
    Rejected(Reason),
}

/// What a [`Observation::Revoked`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationScope {
    /// One session.
    Session,
    /// Every session of a user (or every other one): a credential-epoch bump.
    User,
    /// One personal API token.
    ApiToken,
}

impl RevocationScope {
    /// Every scope, in the order of [`RevocationScope::index`].
    pub const ALL: [RevocationScope; 3] = [
        RevocationScope::Session,
        RevocationScope::User,
        RevocationScope::ApiToken,
    ];

    /// A stable snake_case code (a metrics label).
    pub const fn code(self) -> &'static str {
        match self {
            RevocationScope::Session => "session",
            RevocationScope::User => "user",
            RevocationScope::ApiToken => "api_token",
        }
    }

    /// The position in [`RevocationScope::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Which throttle key held a password check back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThrottledBy {
    /// The key of a device known for the account.
    KnownDevice,
    /// The account named, from this client.
    AccountClient,
    /// This client, across accounts.
    Client,
}

impl ThrottledBy {
    /// Every key, in the order of [`ThrottledBy::index`].
    pub const ALL: [ThrottledBy; 3] = [
        ThrottledBy::KnownDevice,
        ThrottledBy::AccountClient,
        ThrottledBy::Client,
    ];

    /// A stable snake_case code (a metrics label).
    pub const fn code(self) -> &'static str {
        match self {
            ThrottledBy::KnownDevice => "known_device",
            ThrottledBy::AccountClient => "account_client",
            ThrottledBy::Client => "client",
        }
    }

    /// The position in [`ThrottledBy::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The engine's observer slot: nothing, or one shared [`Observer`].
#[derive(Clone, Default)]
pub(crate) struct Slot(Option<std::sync::Arc<dyn Observer>>);

impl Slot {
    pub(crate) fn new(observer: std::sync::Arc<dyn Observer>) -> Self {
        Slot(Some(observer))
    }

    /// Reports `event` to the observer, if there is one.
    #[inline]
    pub(crate) fn tell(&self, event: Observation) {
        if let Some(o) = &self.0 {
            o.observe(event);
        }
    }

    /// Reports the outcome of a check of `credential` that produced `result`: a
    /// rejection with its reason, a pass; a store failure decides nothing and is
    /// not reported.
    #[inline]
    pub(crate) fn check<T>(&self, credential: Credential, result: &crate::engine::Result<T>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err(crate::Error::Rejected(r)) => Err(r.reason),
            Err(_) => return,
        };
        self.tell(Observation::Check {
            credential,
            outcome,
        });
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_lists() {
        for (i, c) in Credential::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for (i, s) in RevocationScope::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        for (i, t) in ThrottledBy::ALL.into_iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }
}
