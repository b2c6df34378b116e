//! Small builders shared by the cases.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionguard_core::{
    ApiTokenRecord, ClientId, ClientInfo, EpochBump, PasswordHash, Reason, RefreshState,
    Revocation, SessionRecord, SessionState, Timestamp, Token, TokenId, TokenKind, UserId,
};

/// A fixed instant the cases count from.
pub const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

/// `T0 + secs`.
pub fn at(secs: u64) -> Timestamp {
    T0.saturating_add(Duration::from_secs(secs))
}

/// A user id.
pub fn user(name: &str) -> UserId {
    UserId::new(name).expect("fixture user ids are valid")
}

/// A revocation.
pub fn rev(reason: Reason, secs: u64) -> Revocation {
    Revocation {
        reason,
        at: at(secs),
    }
}

/// An epoch bump that leaves API tokens alone.
pub fn bump(reason: Reason, secs: u64) -> EpochBump {
    EpochBump {
        revocation: rev(reason, secs),
        end_api_tokens: false,
    }
}

/// An epoch bump that also ends API tokens.
pub fn bump_all(reason: Reason, secs: u64) -> EpochBump {
    EpochBump {
        revocation: rev(reason, secs),
        end_api_tokens: true,
    }
}

/// A fresh session record for `user` at epoch `epoch`, created at `T0 + created`,
/// with a 30-minute idle and 12-hour absolute deadline.
pub fn session(user: &UserId, epoch: u64, created: u64) -> (Token, SessionRecord) {
    let token = Token::generate_in(TokenKind::Session, user.shard());
    let created_at = at(created);
    let state = SessionState {
        id: token.id(),
        verifier_hash: token.verifier_hash(),
        user_id: user.clone(),
        epoch,
        created_at,
        last_seen_at: created_at,
        idle_deadline: at(created + 1800),
        absolute_deadline: at(created + 12 * 3600),
        revoked: None,
        profile: None,
        privileges: 0,
        token_issued_at: created_at,
        elevated_until: None,
        previous: None,
        displaced_by: None,
        csrf_basis: None,
    };
    let client = ClientInfo::new(
        Some("Mozilla/5.0 (conformance)"),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
    );
    (token, SessionRecord { state, client })
}

/// A password hash (the store never interprets it).
pub fn hash(tag: &str) -> PasswordHash {
    PasswordHash::from_phc(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${tag}"))
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new() -> Self {
        let p =
            std::env::temp_dir().join(format!("sessionguard-conformance-{}", TokenId::random()));
        std::fs::create_dir_all(&p).expect("the temp dir is writable");
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The client the fixtures' refresh tokens are issued to.
pub fn client() -> ClientId {
    ClientId::new("fixture-app 1.0").expect("a valid client id")
}

/// A refresh token of session `session`, created at `T0 + created`, issued to
/// [`client`].
pub fn refresh(session: &SessionRecord, created: u64) -> (Token, RefreshState) {
    let token = Token::generate_in(TokenKind::Refresh, session.state.user_id.shard());
    let state = RefreshState {
        id: token.id(),
        verifier_hash: token.verifier_hash(),
        session_id: session.state.id,
        user_id: session.state.user_id.clone(),
        created_at: at(created),
        client_id: Some(client()),
        rotated: None,
    };
    (token, state)
}

/// An API token for `user` at `epoch`, created at `T0 + created`, expiring a day later.
pub fn api_token(user: &UserId, epoch: u64, created: u64) -> (Token, ApiTokenRecord) {
    let token = Token::generate_in(TokenKind::ApiToken, user.shard());
    let record = ApiTokenRecord {
        id: token.id(),
        verifier_hash: token.verifier_hash(),
        user_id: user.clone(),
        name: "ci deploy".into(),
        epoch,
        created_at: at(created),
        expires_at: at(created + 86_400),
        last_used_at: None,
        revoked: None,
    };
    (token, record)
}
