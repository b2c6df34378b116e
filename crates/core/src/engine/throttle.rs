//! Throttling password checks ([`crate::throttle`] has the rule and the keys).
//!
//! Every password check goes through three steps, whoever makes it (login, the
//! password grant, step-up, password change):
//!
//! 1. [`Engine::begin_password_check`] counts the attempt against its keys, or
//!    refuses it with [`Error::Throttled`] before any password work;
//! 2. the caller verifies the password (argon2id, off the async workers);
//! 3. [`Engine::password_verified`], [`Engine::password_failed`] or, when the
//!    check could not run, [`Engine::password_unchecked`] settles it.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use sessionguard_core::engine::PasswordAttempt;
//! use sessionguard_core::{Engine, Error, ManualClock, MemoryStore, Policy, Timestamp};
//!
//! let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
//! let engine = Engine::with_clock(MemoryStore::new(), clock.clone(), Policy::default()).unwrap();
//! let attempt = PasswordAttempt { account: "alice", client: None, device: None };
//! for _ in 0..5 {
//!     let check = engine.begin_password_check(attempt).await.unwrap();
//!     engine.password_failed(check, None, None).await; // a wrong password
//! }
//! // The sixth waits a second after the fifth failure.
//! let Err(Error::Throttled { retry_at }) = engine.begin_password_check(attempt).await else {
//!     panic!("throttled");
//! };
//! assert_eq!(retry_at, Timestamp::from_millis(1_001_000));
//! clock.advance(Duration::from_secs(1));
//! let check = engine.begin_password_check(attempt).await.unwrap();
//! engine.password_verified(check, false).await.unwrap(); // the right one
//! # });
//! ```

use std::fmt;
use std::net::IpAddr;

use crate::audit::EventKind;
use crate::clock::Clock;
use crate::model::{SessionId, UserId};
use crate::observe::{Observation, ThrottledBy};
use crate::store::Store;
use crate::throttle::{Attempt, DeviceSecret, Settle, ThrottleKey, ThrottleRule};

use super::{Engine, Error, LIFECYCLE, Result};

/// Who checks a password, as the throttle sees it.
#[derive(Debug, Clone, Copy)]
pub struct PasswordAttempt<'a> {
    /// The account named: the username typed at login, or the signed-in user's
    /// username for a step-up or password change. Exact text.
    pub account: &'a str,
    /// The client's address (the TCP peer), if known.
    pub client: Option<IpAddr>,
    /// The device secret the client presented (its device cookie), if any.
    pub device: Option<&'a DeviceSecret>,
}

/// A password check the throttle let through. Settle it with
/// [`Engine::password_verified`], [`Engine::password_failed`] or
/// [`Engine::password_unchecked`]; dropped unsettled, its attempt stays counted
/// as a failure (the safe direction).
#[must_use = "settle the check once the password was verified (or not)"]
pub struct PasswordCheck {
    account: String,
    via: Via,
    /// The device secret presented, if any (known for the account or not).
    device: Option<DeviceSecret>,
}

enum Via {
    /// A device known for the account: its key only.
    Known { key: ThrottleKey, failures: u32 },
    /// Anyone else: the account-and-client key, and the client key if on.
    Address {
        account_client: ThrottleKey,
        failures: u32,
        client: Option<(ThrottleKey, u32)>,
    },
}

impl fmt::Debug for PasswordCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (via, failures) = match &self.via {
            Via::Known { failures, .. } => ("known device", *failures),
            Via::Address { failures, .. } => ("address", *failures),
        };
        f.debug_struct("PasswordCheck")
            .field("via", &via)
            .field("failures", &failures)
            .finish_non_exhaustive()
    }
}

impl PasswordCheck {
    /// Whether the check counts against a device known for the account.
    pub fn from_known_device(&self) -> bool {
        matches!(self.via, Via::Known { .. })
    }

    /// The failures counted on the account's key, this attempt included.
    pub fn failures(&self) -> u32 {
        match self.via {
            Via::Known { failures, .. } | Via::Address { failures, .. } => failures,
        }
    }
}

impl<S: Store, C: Clock> Engine<S, C> {
    /// The password throttle's rule.
    pub fn throttle_rule(&self) -> &ThrottleRule {
        &self.throttle
    }

    /// Counts a password attempt, or refuses it with [`Error::Throttled`] (and
    /// the time it may be made again) without counting anything.
    ///
    /// A device known for the account counts against its own key only; anyone
    /// else against the account-and-client key, then the client key. An attempt
    /// refused by the client key takes its account-and-client count back.
    pub async fn begin_password_check(
        &self,
        attempt: PasswordAttempt<'_>,
    ) -> Result<PasswordCheck> {
        let now = self.clock.now();
        let rule = self.throttle;
        let account = attempt.account.to_owned();
        let device = attempt.device.cloned();
        if let Some(secret) = attempt.device {
            let key = ThrottleKey::known_device(attempt.account, secret);
            match self
                .store
                .throttle_attempt(&key, rule.account_limit(), now, false)
                .await?
            {
                Attempt::Counted { failures } => {
                    return Ok(PasswordCheck {
                        account,
                        via: Via::Known { key, failures },
                        device,
                    });
                }
                Attempt::Throttled { retry_at } => {
                    self.observer
                        .tell(Observation::Throttled(ThrottledBy::KnownDevice));
                    return Err(Error::Throttled { retry_at });
                }
                Attempt::Unknown => {}
            }
        }
        let account_client = ThrottleKey::account_client(attempt.account, attempt.client);
        let failures = match self
            .store
            .throttle_attempt(&account_client, rule.account_limit(), now, true)
            .await?
        {
            Attempt::Counted { failures } => failures,
            Attempt::Throttled { retry_at } => {
                self.observer
                    .tell(Observation::Throttled(ThrottledBy::AccountClient));
                return Err(Error::Throttled { retry_at });
            }
            Attempt::Unknown => return Err(unknown_answer()),
        };
        let client = match rule.client_limit() {
            None => None,
            Some(limit) => {
                let key = ThrottleKey::client(attempt.client);
                match self.store.throttle_attempt(&key, limit, now, true).await {
                    Ok(Attempt::Counted { failures }) => Some((key, failures)),
                    refused => {
                        self.store
                            .throttle_settle(&account_client, Settle::Release, now)
                            .await?;
                        return Err(match refused? {
                            Attempt::Throttled { retry_at } => {
                                self.observer
                                    .tell(Observation::Throttled(ThrottledBy::Client));
                                Error::Throttled { retry_at }
                            }
                            _ => unknown_answer(),
                        });
                    }
                }
            }
        };
        Ok(PasswordCheck {
            account,
            via: Via::Address {
                account_client,
                failures,
                client,
            },
            device,
        })
    }

    /// Settles a check whose password was right: the account's failures are
    /// forgotten (a known device's reset), the client key takes its attempt back,
    /// and the device is (again) known for the account for
    /// [`ThrottleRule::known_device_ttl`].
    ///
    /// With `remember`, returns the device secret for the client to keep (the one
    /// it presented, or a new one): the caller sets it as the device cookie.
    /// Without, only a device already known is kept known.
    pub async fn password_verified(
        &self,
        check: PasswordCheck,
        remember: bool,
    ) -> Result<Option<DeviceSecret>> {
        self.observer
            .tell(Observation::PasswordChecked { verified: true });
        let now = self.clock.now();
        let trust = Settle::Trust {
            until: now.saturating_add(self.throttle.known_device_ttl),
        };
        match check.via {
            Via::Known { key, .. } => {
                self.store.throttle_settle(&key, trust, now).await?;
                Ok(check.device.filter(|_| remember))
            }
            Via::Address {
                account_client,
                client,
                ..
            } => {
                self.store
                    .throttle_settle(&account_client, Settle::Forget, now)
                    .await?;
                if let Some((key, _)) = client {
                    self.store
                        .throttle_settle(&key, Settle::Release, now)
                        .await?;
                }
                if !remember {
                    return Ok(None);
                }
                let secret = check.device.unwrap_or_else(DeviceSecret::generate);
                let key = ThrottleKey::known_device(&check.account, &secret);
                self.store.throttle_settle(&key, trust, now).await?;
                Ok(Some(secret))
            }
        }
    }

    /// Settles a check whose password was wrong: the attempt stays counted.
    ///
    /// The audit log gets the first failure of a streak (`login_failed`) and the
    /// failure that starts the waits (`login_throttled`) for each account and
    /// client, and `login_throttled` (without a user) when a client starts
    /// waiting across accounts; the failures in between are only traced. So a
    /// guessing client adds two events to the named user's history, not one per
    /// guess. `user` is the account's user if it exists; `session`, the session
    /// of a step-up or password change.
    pub async fn password_failed(
        &self,
        check: PasswordCheck,
        user: Option<&UserId>,
        session: Option<&SessionId>,
    ) {
        self.observer
            .tell(Observation::PasswordChecked { verified: false });
        let free = self.throttle.failures;
        let failures = check.failures();
        tracing::debug!(target: LIFECYCLE, failures, "wrong password");
        if failures == 1 {
            self.record(EventKind::LoginFailed, user, session, None)
                .await;
        }
        if failures == free {
            self.record(EventKind::LoginThrottled, user, session, None)
                .await;
        }
        if let Via::Address {
            client: Some((_, client_failures)),
            ..
        } = check.via
            && client_failures == self.throttle.client_failures
        {
            self.record(EventKind::LoginThrottled, None, None, None)
                .await;
        }
    }

    /// Settles a check that never compared the password (the server had no
    /// capacity for it, or the request failed first): its attempts are taken
    /// back, so a refusal to check is never held against the client.
    pub async fn password_unchecked(&self, check: PasswordCheck) -> Result<()> {
        let now = self.clock.now();
        match check.via {
            Via::Known { key, .. } => {
                self.store
                    .throttle_settle(&key, Settle::Release, now)
                    .await?
            }
            Via::Address {
                account_client,
                client,
                ..
            } => {
                self.store
                    .throttle_settle(&account_client, Settle::Release, now)
                    .await?;
                if let Some((key, _)) = client {
                    self.store
                        .throttle_settle(&key, Settle::Release, now)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// A store answered `Unknown` to an attempt that asked it to create the record:
/// a broken store contract, refused rather than let through.
fn unknown_answer() -> Error {
    Error::Store(crate::StoreError::Corrupt(
        "the throttle answered `unknown` for a record it was asked to create".into(),
    ))
}
