//! The key layout. Everything one atomic operation touches shares one hash slot.
//!
//! A user's records live under the hash tag of the user's [`Shard`]
//! (`{xxxx}`, its four hex digits); every token id starts with its user's shard,
//! so the key of a session, refresh token or API token names the slot of its
//! user's epoch, version, sets and credentials too:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{T}:s:<id>` | string | one session, packed (`codec::encode_session`) |
//! | `P:{T}:us:<user>` | set | the user's session ids |
//! | `P:{T}:ua:<user>` | set | the user's API-token ids |
//! | `P:{T}:epoch` | hash | user → encoded [`sessionguard_core::UserEpoch`] and its anchor (`"n|…|anchor|privileges"`, starting with the epoch number) |
//! | `P:{T}:ver` | hash | user → version, bumped by every insert, revocation, rotation and epoch change |
//! | `P:{T}:access` | hash | user → profile and roles |
//! | `P:{T}:cred` | hash | user → username and PHC hash |
//! | `P:{T}:r:<id>` | hash | one refresh token |
//! | `P:{T}:a:<id>` | hash | one API token |
//! | `P:{n<H>}:name:<username>` | string | user id (`H`: 4 hex digits of SHA-256 of the name) |
//! | `P:{events}:seq`, `:data`, `:ids`, `:at`, `:u:<user>` | string, hash, zsets | the audit log |
//! | `P:{keys}:signing` | string | the servers' shared signing keys (JSON) |
//! | `P:{t<H>}:th:<key>` | string | one password-throttle record (`H`: the key digest's first 4 hex digits; `<key>`: [`ThrottleKey::hex`]) |

use sessionguard_core::{Shard, ThrottleKey, TokenId, UserId};
use sha2::{Digest, Sha256};

/// Builds every key from the configured prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// `P:{T}:` written into `out`, without `format!`.
    fn push_slot(&self, out: &mut String, shard: Shard) {
        out.push_str(&self.prefix);
        out.push_str(":{");
        for shift in [12, 8, 4, 0] {
            out.push(char::from(HEX[usize::from((shard.0 >> shift) & 0xf)]));
        }
        out.push_str("}:");
    }

    /// The session's key and its shard's epoch hash: what a check reads, built
    /// with one allocation each (the hot path).
    pub(crate) fn session_and_epochs(&self, id: &TokenId) -> (String, String) {
        use std::fmt::Write as _;
        let len = self.prefix.len() + 8;
        let mut session = String::with_capacity(len + 2 + TokenId::TEXT_LEN);
        self.push_slot(&mut session, id.shard());
        let mut epochs = String::with_capacity(len + 5);
        epochs.push_str(&session);
        epochs.push_str("epoch");
        session.push_str("s:");
        write!(session, "{id}").expect("writing to a String cannot fail");
        (session, epochs)
    }

    /// `P:{T}:` for a shard: the start of every key of its users.
    pub(crate) fn slot(&self, shard: Shard) -> String {
        format!("{}:{{{:04x}}}:", self.prefix, shard.0)
    }

    /// `P:{T}:s:`, the prefix of the shard's session keys (scripts append ids).
    pub(crate) fn sessions_in(&self, shard: Shard) -> String {
        format!("{}s:", self.slot(shard))
    }

    /// `P:{T}:a:`, the prefix of the shard's API-token keys.
    pub(crate) fn api_tokens_in(&self, shard: Shard) -> String {
        format!("{}a:", self.slot(shard))
    }

    pub(crate) fn session(&self, id: &TokenId) -> String {
        format!("{}{id}", self.sessions_in(id.shard()))
    }

    pub(crate) fn refresh(&self, id: &TokenId) -> String {
        format!("{}r:{id}", self.slot(id.shard()))
    }

    pub(crate) fn api_token(&self, id: &TokenId) -> String {
        format!("{}{id}", self.api_tokens_in(id.shard()))
    }

    pub(crate) fn user_sessions(&self, user: &UserId) -> String {
        format!("{}us:{user}", self.slot(user.shard()))
    }

    pub(crate) fn user_api_tokens(&self, user: &UserId) -> String {
        format!("{}ua:{user}", self.slot(user.shard()))
    }

    pub(crate) fn epochs(&self, shard: Shard) -> String {
        format!("{}epoch", self.slot(shard))
    }

    pub(crate) fn versions(&self, shard: Shard) -> String {
        format!("{}ver", self.slot(shard))
    }

    pub(crate) fn access(&self, shard: Shard) -> String {
        format!("{}access", self.slot(shard))
    }

    pub(crate) fn credentials(&self, shard: Shard) -> String {
        format!("{}cred", self.slot(shard))
    }

    /// The username index: its own slot, chosen by a hash of the name.
    pub(crate) fn username(&self, name: &str) -> String {
        let h = Sha256::digest(name.as_bytes());
        format!("{}:{{n{:02x}{:02x}}}:name:{name}", self.prefix, h[0], h[1])
    }

    fn events(&self, what: &str) -> String {
        format!("{}:{{events}}:{what}", self.prefix)
    }

    pub(crate) fn events_seq(&self) -> String {
        self.events("seq")
    }

    pub(crate) fn events_data(&self) -> String {
        self.events("data")
    }

    pub(crate) fn events_ids(&self) -> String {
        self.events("ids")
    }

    pub(crate) fn events_at(&self) -> String {
        self.events("at")
    }

    /// `P:{events}:u:`, the prefix of the per-user event indexes.
    pub(crate) fn events_users(&self) -> String {
        self.events("u:")
    }

    pub(crate) fn events_user(&self, user: &UserId) -> String {
        format!("{}{user}", self.events_users())
    }

    /// A password-throttle record: its own slot, chosen by the key's digest.
    pub(crate) fn throttle(&self, key: &ThrottleKey) -> String {
        let d = key.digest_bytes();
        format!(
            "{}:{{t{:02x}{:02x}}}:th:{}",
            self.prefix,
            d[0],
            d[1],
            key.hex()
        )
    }

    pub(crate) fn signing_keys(&self) -> String {
        format!("{}:{{keys}}:signing", self.prefix)
    }

    /// A `SCAN … MATCH` pattern for the records of one kind (`s`, `r` or `a`) in
    /// every shard: the prefix with its glob characters escaped, then exactly
    /// four characters of tag, so no user-set or index key can match.
    pub(crate) fn scan_pattern(&self, kind: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 16);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str(":{????}:");
        out.push_str(kind);
        out.push_str(":*");
        out
    }

    /// The shard and id of a record key found by [`Keys::scan_pattern`], or `None`
    /// for a key that only looks like one.
    pub(crate) fn parse_record_key(&self, key: &str, kind: &str) -> Option<(Shard, TokenId)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        let (tag, rest) = rest.split_at_checked(4)?;
        let shard = Shard(u16::from_str_radix(tag, 16).ok()?);
        let id = rest
            .strip_prefix("}:")?
            .strip_prefix(kind)?
            .strip_prefix(':')?;
        let id = TokenId::parse(id).ok()?;
        (id.shard() == shard).then_some((shard, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_records_share_one_hash_tag() {
        let keys = Keys::new("sg");
        let user = UserId::new("alice").unwrap();
        let id = TokenId::random_in(user.shard());
        let tag = format!("{{{:04x}}}", user.shard().0);
        for key in [
            keys.session(&id),
            keys.refresh(&id),
            keys.api_token(&id),
            keys.user_sessions(&user),
            keys.user_api_tokens(&user),
            keys.epochs(user.shard()),
            keys.versions(user.shard()),
            keys.access(user.shard()),
            keys.credentials(user.shard()),
        ] {
            assert!(key.starts_with(&format!("sg:{tag}:")), "{key}");
        }
        assert_eq!(keys.session(&id), format!("sg:{tag}:s:{id}"));
        for shard in [0, 0x0a0f, 0xffff] {
            let id = TokenId::random_in(Shard(shard));
            let (session, epochs) = keys.session_and_epochs(&id);
            assert_eq!(session, keys.session(&id));
            assert_eq!(epochs, keys.epochs(Shard(shard)));
        }
    }

    #[test]
    fn record_keys_parse_back_and_nothing_else_does() {
        let keys = Keys::new("a*b");
        let user = UserId::new("bob").unwrap();
        let id = TokenId::random_in(user.shard());
        assert_eq!(
            keys.parse_record_key(&keys.session(&id), "s"),
            Some((user.shard(), id))
        );
        assert_eq!(keys.parse_record_key(&keys.session(&id), "r"), None);
        assert_eq!(keys.parse_record_key(&keys.user_sessions(&user), "s"), None);
        assert_eq!(keys.scan_pattern("s"), "a\\*b:{????}:s:*");
        let name = keys.username("alice");
        assert!(
            name.starts_with("a*b:{n") && name.ends_with("}:name:alice"),
            "{name}"
        );
    }
}
