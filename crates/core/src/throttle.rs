//! The password-guessing throttle: how many wrong passwords may be tried for an
//! account before every further try must wait, and the state each store keeps
//! for it.
//!
//! Every password check (login, the password grant, step-up, password change)
//! counts against **keys** ([`ThrottleKey`]), each a SHA-256 digest so that no
//! store holds a username or an address in clear:
//!
//! - *account and client*: the account named and the client's address (IPv4, or
//!   the /64 of an IPv6 address). Limit: [`ThrottleRule::failures`].
//! - *client*: the client's address, across accounts (password spraying).
//!   Limit: [`ThrottleRule::client_failures`] (0 turns this key off).
//! - *known device*: the account and a [`DeviceSecret`] the client presented — a
//!   browser that signed in to this account before holds one in a cookie. A
//!   check from a known device counts against this key **only**, so failures
//!   from any other client (even one at the same address) never lock the real
//!   user's usual browser out.
//!
//! Each key holds a [`ThrottleState`]: a count of failures and the time of the
//! last. Once a key has `free` failures, the next check waits
//! `delay × 2^(failures − free)` after the last one, at most `max_delay`
//! ([`ThrottleLimit::wait`]): growing delays, never a permanent lockout. A count
//! is forgotten `window` after its last failure.
//!
//! Attempts are counted **before** the password is checked
//! ([`crate::Store::throttle_attempt`], atomic in every store), so simultaneous
//! attempts cannot all slip under a limit; a success then takes its count back
//! ([`Settle`]).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::clock::Timestamp;

/// The throttle's settings (the `throttle_*` keys of `[policy]` in the server's
/// configuration). One rule for the whole deployment: it applies before the
/// account, let alone its profile, is known.
///
/// ```
/// use std::time::Duration;
/// use sessionguard_core::ThrottleRule;
///
/// let rule = ThrottleRule::default();
/// assert_eq!(rule.failures, 5);
/// assert_eq!(rule.client_failures, 50);
/// assert_eq!(rule.delay, Duration::from_secs(1));
/// assert_eq!(rule.max_delay, Duration::from_secs(15 * 60));
/// assert_eq!(rule.window(), Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRule {
    /// Failed checks allowed per account and client (or known device) before
    /// every further one must wait. Default 5; at least 1.
    pub failures: u32,
    /// Failed checks allowed per client address across accounts before every
    /// further one must wait. Default 50; 0 turns the per-client count off.
    pub client_failures: u32,
    /// The first wait; it doubles with every further failure. Default 1 s.
    pub delay: Duration,
    /// The longest wait. Default 15 min.
    pub max_delay: Duration,
    /// How long a device that signed in is remembered as known for its account
    /// after its last successful check. Default 30 days.
    pub known_device_ttl: Duration,
}

impl Default for ThrottleRule {
    fn default() -> Self {
        ThrottleRule {
            failures: 5,
            client_failures: 50,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            known_device_ttl: Duration::from_secs(30 * 86_400),
        }
    }
}

/// A [`ThrottleRule`] that cannot work as intended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
#[non_exhaustive]
pub struct ThrottleRuleError {
    /// The field: `failures`, `delay` or `max_delay`.
    pub key: &'static str,
    /// What is wrong.
    pub problem: &'static str,
}

impl ThrottleRule {
    /// The longest accepted `max_delay`: a day.
    pub const MAX_DELAY: Duration = Duration::from_secs(86_400);

    /// How long a key's count is kept after its last failure: four times
    /// `max_delay` (an hour by default), so a key that reached the longest wait
    /// keeps it while failures go on, and is forgotten once they stop.
    pub fn window(&self) -> Duration {
        self.max_delay.saturating_mul(4)
    }

    /// Checks that the rule throttles at all: `failures` at least 1,
    /// `delay` at least 1 ms and at most `max_delay`, `max_delay` at most
    /// [`ThrottleRule::MAX_DELAY`].
    pub fn validate(&self) -> Result<(), ThrottleRuleError> {
        let bad = |key, problem| Err(ThrottleRuleError { key, problem });
        if self.failures == 0 {
            return bad("failures", "must be at least 1");
        }
        if self.delay > Self::MAX_DELAY {
            return bad("delay", "must be at most 1 day");
        }
        if self.max_delay > Self::MAX_DELAY {
            return bad("max_delay", "must be at most 1 day");
        }
        if self.delay < Duration::from_millis(1) {
            return bad("delay", "must be at least 1ms");
        }
        if self.delay > self.max_delay {
            return bad("delay", "must not exceed max_delay");
        }
        Ok(())
    }

    /// The limit of account-and-client and known-device keys.
    pub fn account_limit(&self) -> ThrottleLimit {
        self.limit(self.failures)
    }

    /// The limit of client keys, `None` when they are off.
    pub fn client_limit(&self) -> Option<ThrottleLimit> {
        (self.client_failures > 0).then(|| self.limit(self.client_failures))
    }

    fn limit(&self, free: u32) -> ThrottleLimit {
        ThrottleLimit {
            free,
            delay: self.delay,
            max_delay: self.max_delay,
            window: self.window(),
        }
    }
}

/// What a store needs to decide one key's attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottleLimit {
    /// Failures allowed before attempts must wait.
    pub free: u32,
    /// The first wait.
    pub delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// How long a record is kept after an attempt counted on it (at least).
    pub window: Duration,
}

impl ThrottleLimit {
    /// How long after the last failure the next attempt must wait when the key
    /// holds `failures`: nothing below `free`, then `delay × 2^(failures − free)`,
    /// at most `max_delay`. In whole milliseconds, saturating (the Redis store's
    /// script computes the same).
    pub fn wait(&self, failures: u32) -> Option<Duration> {
        let over = failures.checked_sub(self.free)?;
        let delay = u64::try_from(self.delay.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.max_delay.as_millis()).unwrap_or(u64::MAX);
        let factor = 1u64.checked_shl(over).unwrap_or(u64::MAX);
        Some(Duration::from_millis(delay.saturating_mul(factor).min(max)))
    }
}

/// One key's state: failures counted, and when the last was counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThrottleState {
    /// Attempts counted and not taken back.
    pub failures: u32,
    /// When the last attempt was counted.
    pub last: Timestamp,
}

impl ThrottleState {
    /// Until when a new attempt must wait under `limit`; `None` if it need not.
    pub fn retry_at(&self, limit: &ThrottleLimit) -> Option<Timestamp> {
        limit
            .wait(self.failures)
            .map(|w| self.last.saturating_add(w))
    }

    /// The state after one more attempt counted at `now`.
    #[must_use]
    pub fn counted(self, now: Timestamp) -> Self {
        ThrottleState {
            failures: self.failures.saturating_add(1),
            last: now,
        }
    }
}

/// The answer of [`crate::Store::throttle_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt was counted; the key now holds this many failures.
    Counted {
        /// The new count.
        failures: u32,
    },
    /// The key must wait: nothing was counted.
    Throttled {
        /// When an attempt may be made again.
        retry_at: Timestamp,
    },
    /// The key has no record and the caller asked not to create one (a device
    /// not known for the account).
    Unknown,
}

/// What [`crate::Store::throttle_settle`] does to a key after its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Deletes the record (the right password from this account and client).
    Forget,
    /// Takes back one counted attempt, if any; nothing else changes — the time of
    /// the last attempt stays, so a key already past its free failures waits
    /// from the released attempt (the right password on a key shared with other
    /// accounts; or a check that never ran).
    Release,
    /// Sets the failures to 0 and keeps the record until `until`, creating it if
    /// needed (a known device).
    Trust {
        /// When the record may be forgotten.
        until: Timestamp,
    },
}

/// What a throttle key counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThrottleKind {
    /// An account and a client address.
    AccountClient,
    /// A client address.
    Client,
    /// An account and a known device.
    KnownDevice,
}

impl ThrottleKind {
    /// A one-byte tag, stable across versions.
    pub const fn tag(self) -> u8 {
        match self {
            ThrottleKind::AccountClient => 1,
            ThrottleKind::Client => 2,
            ThrottleKind::KnownDevice => 3,
        }
    }
}

/// The name of one throttle record: its kind and a SHA-256 digest of what it
/// counts, so a store holds no username, address or device secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThrottleKey {
    kind: ThrottleKind,
    digest: [u8; 32],
}

impl fmt::Debug for ThrottleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThrottleKey({:?}, {})", self.kind, &self.hex()[..12])
    }
}

const KEY_LABEL: &[u8] = b"sessionguard/throttle/v1";

impl ThrottleKey {
    fn digest(kind: ThrottleKind, parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        h.update(KEY_LABEL);
        h.update([kind.tag()]);
        for part in parts {
            // Length-prefixed, so no two part lists hash alike.
            h.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            h.update(part);
        }
        ThrottleKey {
            kind,
            digest: h.finalize().into(),
        }
    }

    /// The key of `account` (as named: exact text) from `client`.
    pub fn account_client(account: &str, client: Option<IpAddr>) -> Self {
        let client = client_bytes(client);
        Self::digest(
            ThrottleKind::AccountClient,
            &[account.as_bytes(), &client[..]],
        )
    }

    /// The key of `client` across accounts.
    pub fn client(client: Option<IpAddr>) -> Self {
        Self::digest(ThrottleKind::Client, &[&client_bytes(client)[..]])
    }

    /// The key of `account` from the device that holds `device`.
    pub fn known_device(account: &str, device: &DeviceSecret) -> Self {
        Self::digest(
            ThrottleKind::KnownDevice,
            &[account.as_bytes(), &device.0[..]],
        )
    }

    /// What it counts.
    pub fn kind(&self) -> ThrottleKind {
        self.kind
    }

    /// The digest.
    pub fn digest_bytes(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The kind's tag and the digest in lower-case hex (66 characters): a
    /// store's key text.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(66);
        for b in std::iter::once(self.kind.tag()).chain(self.digest) {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }
}

/// A client address as a throttle counts it: IPv4 whole, IPv6 by its /64 (one
/// subscriber's usual allocation), an IPv4-mapped IPv6 address as IPv4, and
/// "unknown" (no connection, as in tests) as one client.
fn client_bytes(ip: Option<IpAddr>) -> [u8; 9] {
    let mut out = [0u8; 9];
    match ip.map(|ip| ip.to_canonical()) {
        None => {}
        Some(IpAddr::V4(v4)) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            out[0] = 6;
            out[1..9].copy_from_slice(&v6.octets()[..8]);
        }
    }
    out
}

/// The secret a browser keeps in its device cookie once it signed in: 256 bits
/// from the OS CSPRNG, written `sgd_` followed by 43 base64url characters. It is
/// not a session token and grants nothing; it only lets its holder's password
/// checks for an account it signed in to count apart from everyone else's.
/// Zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceSecret(Zeroizing<[u8; 32]>);

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSecret(<redacted>)")
    }
}

impl DeviceSecret {
    /// The prefix of the text form.
    pub const PREFIX: &'static str = "sgd_";
    /// The length of the text form.
    pub const TEXT_LEN: usize = 4 + 43;

    /// A fresh secret.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut bytes[..]).expect("the operating system's CSPRNG is unavailable");
        DeviceSecret(bytes)
    }

    /// Parses the text form; `None` for anything else (which the caller ignores:
    /// the client is then simply not a known device).
    pub fn parse(text: &str) -> Option<Self> {
        let body = text.strip_prefix(Self::PREFIX)?;
        if text.len() != Self::TEXT_LEN {
            return None;
        }
        let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(body).ok()?);
        let bytes: [u8; 32] = decoded.as_slice().try_into().ok()?;
        Some(DeviceSecret(Zeroizing::new(bytes)))
    }

    /// The text form, to send once in a cookie.
    pub fn reveal(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(Self::TEXT_LEN));
        out.push_str(Self::PREFIX);
        URL_SAFE_NO_PAD.encode_string(&self.0[..], &mut out);
        out
    }
}

/// Throttle records in memory, for the stores that keep them there (the memory
/// store and the embedded store: a restart forgets them, which only gives
/// clients their free attempts back). One lock; every operation is atomic.
#[derive(Debug, Default)]
pub struct ThrottleTable {
    records: Mutex<HashMap<ThrottleKey, Record>>,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    state: ThrottleState,
    /// The record counts as absent from this time on.
    expires_at: Timestamp,
}

impl ThrottleTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<ThrottleKey, Record>> {
        // Every change is one insert or remove: a poisoned map is still whole.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`crate::Store::throttle_attempt`].
    pub fn attempt(
        &self,
        key: &ThrottleKey,
        limit: &ThrottleLimit,
        now: Timestamp,
        create: bool,
    ) -> Attempt {
        let mut records = self.records();
        let live = records.get(key).copied().filter(|r| r.expires_at > now);
        let Some(record) = live.or_else(|| {
            create.then_some(Record {
                state: ThrottleState::default(),
                expires_at: now,
            })
        }) else {
            return Attempt::Unknown;
        };
        if let Some(retry_at) = record.state.retry_at(limit).filter(|&t| t > now) {
            return Attempt::Throttled { retry_at };
        }
        let state = record.state.counted(now);
        records.insert(
            *key,
            Record {
                state,
                expires_at: record.expires_at.max(now.saturating_add(limit.window)),
            },
        );
        Attempt::Counted {
            failures: state.failures,
        }
    }

    /// See [`crate::Store::throttle_settle`].
    pub fn settle(&self, key: &ThrottleKey, settle: Settle, now: Timestamp) {
        let mut records = self.records();
        match settle {
            Settle::Forget => {
                records.remove(key);
            }
            Settle::Release => {
                if let Some(r) = records.get_mut(key).filter(|r| r.expires_at > now) {
                    r.state.failures = r.state.failures.saturating_sub(1);
                }
            }
            Settle::Trust { until } => {
                records.insert(
                    *key,
                    Record {
                        state: ThrottleState {
                            failures: 0,
                            last: now,
                        },
                        expires_at: until,
                    },
                );
            }
        }
    }

    /// Deletes the records that expired at or before `cutoff`; returns how many.
    pub fn purge(&self, cutoff: Timestamp) -> u64 {
        let mut records = self.records();
        let before = records.len();
        records.retain(|_, r| r.expires_at > cutoff);
        (before - records.len()) as u64
    }

    /// How many records the table holds, expired ones included until purged.
    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// Whether the table holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn limit() -> ThrottleLimit {
        ThrottleRule::default().account_limit()
    }

    #[test]
    fn waits_start_after_the_free_failures_and_double_up_to_the_cap() {
        let l = limit();
        assert_eq!(l.wait(0), None);
        assert_eq!(l.wait(4), None);
        assert_eq!(l.wait(5), Some(Duration::from_secs(1)));
        assert_eq!(l.wait(6), Some(Duration::from_secs(2)));
        assert_eq!(l.wait(9), Some(Duration::from_secs(16)));
        assert_eq!(l.wait(20), Some(Duration::from_secs(900)));
        assert_eq!(l.wait(u32::MAX), Some(Duration::from_secs(900)));
    }

    #[test]
    fn keys_differ_by_kind_account_and_client_but_not_within_a_v6_64() {
        let a: IpAddr = Ipv4Addr::new(192, 0, 2, 1).into();
        let b: IpAddr = Ipv4Addr::new(192, 0, 2, 2).into();
        assert_ne!(
            ThrottleKey::account_client("alice", Some(a)),
            ThrottleKey::account_client("alice", Some(b))
        );
        assert_ne!(
            ThrottleKey::account_client("alice", Some(a)),
            ThrottleKey::account_client("bob", Some(a))
        );
        assert_ne!(
            ThrottleKey::account_client("alice", Some(a)),
            ThrottleKey::client(Some(a))
        );
        let v6a: IpAddr = "2001:db8:1:2::1".parse::<Ipv6Addr>().unwrap().into();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse::<Ipv6Addr>().unwrap().into();
        let v6c: IpAddr = "2001:db8:1:3::1".parse::<Ipv6Addr>().unwrap().into();
        assert_eq!(
            ThrottleKey::client(Some(v6a)),
            ThrottleKey::client(Some(v6b))
        );
        assert_ne!(
            ThrottleKey::client(Some(v6a)),
            ThrottleKey::client(Some(v6c))
        );
        let mapped: IpAddr = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().into();
        assert_eq!(
            ThrottleKey::client(Some(a)),
            ThrottleKey::client(Some(mapped))
        );
        let d = DeviceSecret::generate();
        assert_ne!(
            ThrottleKey::known_device("alice", &d),
            ThrottleKey::known_device("bob", &d)
        );
        assert_eq!(ThrottleKey::client(None).hex().len(), 66);
    }

    #[test]
    fn device_secrets_round_trip_and_refuse_anything_else() {
        let d = DeviceSecret::generate();
        let text = d.reveal();
        assert_eq!(text.len(), DeviceSecret::TEXT_LEN);
        assert_eq!(DeviceSecret::parse(&text), Some(d.clone()));
        assert_eq!(format!("{d:?}"), "DeviceSecret(<redacted>)");
        for bad in [
            "",
            "sgd_",
            &text[..text.len() - 1],
            &format!("{}A", text.as_str()),
            &text.replace("sgd_", "sgs_"),
            "sgd_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert_eq!(DeviceSecret::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_table_counts_throttles_releases_and_forgets() {
        let t = ThrottleTable::new();
        let key = ThrottleKey::client(None);
        let l = ThrottleLimit { free: 2, ..limit() };
        let now = Timestamp::from_millis(1_000_000);
        assert_eq!(t.attempt(&key, &l, now, false), Attempt::Unknown);
        assert!(t.is_empty(), "an unknown key is not created");
        assert_eq!(
            t.attempt(&key, &l, now, true),
            Attempt::Counted { failures: 1 }
        );
        assert_eq!(
            t.attempt(&key, &l, now, true),
            Attempt::Counted { failures: 2 }
        );
        let retry_at = now.saturating_add(Duration::from_secs(1));
        assert_eq!(
            t.attempt(&key, &l, now, true),
            Attempt::Throttled { retry_at }
        );
        t.settle(&key, Settle::Release, now);
        assert_eq!(
            t.attempt(&key, &l, now, true),
            Attempt::Counted { failures: 2 }
        );
        assert_eq!(
            t.attempt(&key, &l, retry_at, false),
            Attempt::Counted { failures: 3 }
        );
        t.settle(&key, Settle::Forget, retry_at);
        assert!(t.is_empty());
        // A record is gone once its window has passed without attempts.
        assert_eq!(
            t.attempt(&key, &l, now, true),
            Attempt::Counted { failures: 1 }
        );
        let later = now.saturating_add(l.window);
        assert_eq!(t.attempt(&key, &l, later, false), Attempt::Unknown);
        assert_eq!(t.purge(later), 1);
    }
}
