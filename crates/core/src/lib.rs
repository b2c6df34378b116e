//! # sessionguard-core
//!
//! The session engine of sessionguard, with no HTTP and no storage backend in it:
//!
//! - [`token`]: the opaque token format (typed prefix, checksum, public id, secret
//!   verifier of which only a hash is stored);
//! - [`Policy`]: idle and absolute timeouts, both always on;
//! - [`Engine`]: create, validate (and touch), status, revoke one, revoke all of a
//!   user (credential epoch, O(1)), revoke others, change password, list, purge;
//!   rotating refresh tokens with reuse detection; personal API tokens;
//! - [`Store`]: the storage contract, atomic and durable per method, implemented by
//!   [`MemoryStore`] here and by durable backends in their own crates;
//! - [`Clock`]: injectable time; [`ManualClock`] drives tests without sleeping;
//! - [`password`]: argon2id hashing with OWASP parameters;
//! - [`throttle`]: the password-guessing throttle's rule, keys and state;
//! - [`observe`]: the engine's decisions, for an [`observe::Observer`] to count.
//!
//! Every ended session carries a [`Reason`], kept as a tombstone so that a client
//! can be told why it was signed out.

// Library code states its invariants with `expect`; tests may unwrap.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod audit;
pub mod clock;
pub mod engine;
pub mod guidance;
pub mod memory;
pub mod model;
pub mod observe;
pub mod password;
pub mod policy;
pub mod profile;
pub mod reason;
pub mod store;
pub mod throttle;
pub mod token;

pub use audit::{AuditEvent, EventKind, EventQuery};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use engine::{
    AuditMirror, Engine, Error, IDENTITY_MEMO_CAPACITY, Identity, Issued, Refreshed, Rejection,
    ValidApiToken, ValidSession, Validated, access_token_verdict, api_token_verdict, verdict,
};
pub use memory::{MemoryIndex, MemoryStore, Purgeable};
pub use model::{
    ApiTokenRecord, ClientId, ClientInfo, EARLIER_BUMPS, EpochBump, InvalidClientId, InvalidRoles,
    InvalidUserId, PasswordHash, RefreshState, ReplacedToken, Rotation, SealedSecret, SessionId,
    SessionRecord, SessionState, TokenRotation, UserAccess, UserEpoch, UserId, UserRecord,
};
pub use password::{Password, PasswordError, PasswordHasher};
pub use policy::{OnLimit, Policy, PolicyError, SessionLimit};
pub use profile::{ProfileError, ProfileName, Profiles};
pub use reason::{Reason, Revocation};
pub use store::{Purged, Store, StoreError, StoreResult};
pub use throttle::{
    Attempt, DeviceSecret, Settle, ThrottleKey, ThrottleLimit, ThrottleRule, ThrottleState,
    ThrottleTable,
};
pub use token::{Shard, Token, TokenError, TokenId, TokenKind};
