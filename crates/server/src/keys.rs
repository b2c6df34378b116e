//! The signing keys and their upkeep: the key file ([`KEY_FILE`] in the data
//! folder) with the embedded store, or a document in Redis shared by every node
//! ([`crate::shared_keys`]) — a [`KeySource`].
//!
//! `serve` loads the set, or creates it (a file with mode 0600), at start. Then a
//! [`KeyKeeper`] checks every [`KEY_CHECK_INTERVAL`]:
//!
//! 1. if the set changed (the file on disk, or the shared document), it is
//!    reloaded, so that `sessionguard keys rotate`, run beside a live server, and
//!    another node's rotation take effect within a minute;
//! 2. if the active key is older than `keys.rotation_period`, a new key becomes
//!    active; the old one stays in the set and in the JWKS until every token it
//!    signed has expired (`policy.access_token_ttl` after its retirement);
//! 3. retired keys whose tokens have all expired are pruned;
//!
//! and writes the set back whenever it changed it (the file atomically, mode
//! 0600; the shared document by compare-and-set, so that of nodes rotating at
//! once one wins and the others adopt its set). Time is the engine's clock.
//! Private keys never leave the file (or the shared store) and the process: the
//! JWKS holds public keys only.
//!
//! There is no lock between the server and `keys rotate`: each writes the whole
//! file atomically, and the server rereads a changed file before it rotates. If
//! both write within the same few milliseconds (once per rotation period at most),
//! the last write wins: either the CLI's new key is lost (nothing was signed with
//! it yet), or the server's is, and tokens it signed since its last check fail
//! with `invalid_token` after the reload, so their clients refresh. Rotate with
//! the CLI or the schedule, not both at the same minute.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sessionguard_core::{Clock, Store, StoreError, Timestamp};
use sessionguard_jwt::{Algorithm, JwtError, KeyId, KeySet};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::error;
use crate::shared_keys::SharedKeys;
use crate::state::AppState;

/// Where a deployment's signing keys live.
#[derive(Clone)]
pub enum KeySource {
    /// The key file of a single server.
    File(PathBuf),
    /// A document in the store, shared by every node.
    Shared(Arc<dyn SharedKeys>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => f.debug_tuple("File").field(p).finish(),
            KeySource::Shared(_) => f.write_str("Shared"),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "{}", p.display()),
            KeySource::Shared(_) => f.write_str("the shared key set in the store"),
        }
    }
}

/// Why the signing keys could not be loaded, created or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading, parsing or writing the key set failed.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// The shared store failed.
    #[error("the shared key set could not be read or written")]
    Store(#[source] StoreError),
}

/// The key file's name in the data folder.
pub const KEY_FILE: &str = "signing-keys.json";

/// How often a running server checks its key file and the active key's age.
pub const KEY_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// What the key file looked like when last read or written: enough to notice
/// that another process replaced it (saves rename a new file into place, so on
/// Unix the inode changes too, whatever the timestamp granularity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// What one [`KeyKeeper::check`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct KeyCheck {
    /// The file had changed on disk and was reloaded.
    pub reloaded: bool,
    /// The active key was rotated; this is the new one.
    pub rotated: Option<KeyId>,
    /// How many retired keys were dropped.
    pub pruned: usize,
}

/// Keeps a server's signing keys in step with their source and the rotation
/// policy (see the module docs).
#[derive(Debug)]
pub struct KeyKeeper {
    source: KeySource,
    seen: Seen,
}

/// What the source looked like when last read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    File(Option<Stamp>),
    /// SHA-256 of the shared document.
    Shared(Option<[u8; 32]>),
}

fn digest(json: &str) -> [u8; 32] {
    Sha256::digest(json.as_bytes()).into()
}

/// Loads the key set from `source`, or creates it with one fresh key for `alg`
/// (a file with mode 0600; a shared document by compare-and-set, so nodes
/// starting together end up with the same set). Returns the keys and the keeper
/// that watches the source.
pub async fn load_or_create(
    source: KeySource,
    alg: Algorithm,
    now: Timestamp,
) -> Result<(KeySet, KeyKeeper), KeyError> {
    match source {
        KeySource::File(path) => {
            // File I/O (and key parsing): off the async workers.
            tokio::task::spawn_blocking(move || {
                let keys = KeySet::load_or_create(&path, alg, now)?;
                let seen = Seen::File(stamp(&path).ok());
                let source = KeySource::File(path);
                Ok((keys, KeyKeeper { source, seen }))
            })
            .await
            .map_err(|e| {
                JwtError::Io(io::Error::other(format!(
                    "loading the key file panicked: {e}"
                )))
            })?
        }
        KeySource::Shared(shared) => {
            // A handful of rounds at most: each lost round means another node
            // created the set, which the next round loads.
            for _ in 0..8 {
                if let Some(json) = shared.load().await.map_err(KeyError::Store)? {
                    let keys = KeySet::from_json_secret(&json)?;
                    let seen = Seen::Shared(Some(digest(&json)));
                    return Ok((
                        keys,
                        KeyKeeper {
                            source: KeySource::Shared(shared),
                            seen,
                        },
                    ));
                }
                let keys = KeySet::generate(alg, now);
                let json = keys.to_json_secret();
                if shared.swap(None, &json).await.map_err(KeyError::Store)? {
                    let seen = Seen::Shared(Some(digest(&json)));
                    return Ok((
                        keys,
                        KeyKeeper {
                            source: KeySource::Shared(shared),
                            seen,
                        },
                    ));
                }
            }
            Err(KeyError::Store(StoreError::Conflict("signing_keys")))
        }
    }
}

/// The longest access-token lifetime of any profile: how long a retired key must
/// stay published.
fn longest_token_ttl<S: Store, C: Clock>(state: &AppState<S, C>) -> Duration {
    state
        .engine()
        .profiles()
        .iter()
        .map(|(_, p)| p.access_token_ttl)
        .max()
        .unwrap_or(state.engine().policy().access_token_ttl)
}

impl KeyKeeper {
    /// A keeper for the key file at `path`, whose current content is treated as
    /// already loaded.
    pub fn new(path: PathBuf) -> Self {
        let seen = Seen::File(stamp(&path).ok());
        KeyKeeper {
            source: KeySource::File(path),
            seen,
        }
    }

    /// Where the keys live.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// One round of upkeep (see the module docs). On failure the server keeps
    /// its current keys, and the next check tries again.
    pub async fn check<S: Store, C: Clock>(
        &mut self,
        state: &AppState<S, C>,
    ) -> Result<KeyCheck, KeyError> {
        let outcome = match (&self.source, self.seen) {
            (KeySource::File(path), Seen::File(seen)) => {
                let (outcome, seen) = check_file(path.clone(), seen, state).await?;
                self.seen = Seen::File(seen);
                outcome
            }
            (KeySource::Shared(shared), Seen::Shared(seen)) => {
                let shared = Arc::clone(shared);
                let (outcome, seen) = check_shared(&*shared, seen, state).await?;
                self.seen = Seen::Shared(seen);
                outcome
            }
            _ => unreachable!("a keeper's record matches its source"),
        };
        if outcome.reloaded || outcome.rotated.is_some() || outcome.pruned > 0 {
            tracing::info!(
                reloaded = outcome.reloaded,
                rotated_to = outcome.rotated.as_ref().map(KeyId::as_str),
                pruned = outcome.pruned,
                "signing keys updated"
            );
        }
        Ok(outcome)
    }
}

/// One round of upkeep of the shared key set.
async fn check_shared<S: Store, C: Clock>(
    shared: &dyn SharedKeys,
    seen: Option<[u8; 32]>,
    state: &AppState<S, C>,
) -> Result<(KeyCheck, Option<[u8; 32]>), KeyError> {
    let now = state.engine().clock().now();
    let loaded = shared.load().await.map_err(KeyError::Store)?;
    let loaded_digest = loaded.as_deref().map(|j| digest(j));
    let mut outcome = KeyCheck::default();
    let mut keys = match &loaded {
        Some(json) if loaded_digest != seen => {
            outcome.reloaded = true;
            KeySet::from_json_secret(json)?
        }
        _ => KeySet::from_json_secret(&state.keys().to_json_secret())?,
    };
    if keys
        .active()
        .created_at()
        .saturating_add(state.rotation_period())
        <= now
    {
        keys.rotate(state.key_algorithm(), now);
        outcome.rotated = Some(keys.active().kid().clone());
    }
    outcome.pruned = keys.prune(now, longest_token_ttl(state));
    let dirty = loaded.is_none() || outcome.rotated.is_some() || outcome.pruned > 0;
    if !dirty {
        if outcome.reloaded {
            state.set_keys(keys);
        }
        return Ok((outcome, loaded_digest));
    }
    let json = keys.to_json_secret();
    if shared
        .swap(loaded.as_deref().map(|j| j.as_str()), &json)
        .await
        .map_err(KeyError::Store)?
    {
        state.set_keys(keys);
        return Ok((outcome, Some(digest(&json))));
    }
    // Another node changed the set meanwhile: adopt its set at the next check.
    Ok((KeyCheck::default(), None))
}

/// One round of upkeep of the key file.
async fn check_file<S: Store, C: Clock>(
    path: PathBuf,
    seen: Option<Stamp>,
    state: &AppState<S, C>,
) -> Result<(KeyCheck, Option<Stamp>), KeyError> {
    let current = state.keys();
    let now = state.engine().clock().now();
    let alg = state.key_algorithm();
    let period = state.rotation_period();
    let ttl = longest_token_ttl(state);
    // File I/O: off the async workers.
    let done = tokio::task::spawn_blocking(move || {
        let on_disk = match stamp(&path) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(JwtError::Io(e)),
        };
        let changed = on_disk != seen;
        let overdue = current.active().created_at().saturating_add(period) <= now;
        let prunable = current
            .keys()
            .any(|k| k.retired_at().is_some_and(|r| r.saturating_add(ttl) <= now));
        if !changed && !overdue && !prunable {
            return Ok((None, seen, KeyCheck::default()));
        }
        let mut outcome = KeyCheck::default();
        let mut dirty = false;
        let mut keys = match (changed, on_disk) {
            (true, Some(_)) => {
                outcome.reloaded = true;
                read(&path)?
            }
            // Deleted behind our back: write back what we have.
            (_, None) => {
                dirty = true;
                KeySet::from_json_secret(&current.to_json_secret())?
            }
            (false, Some(_)) => KeySet::from_json_secret(&current.to_json_secret())?,
        };
        if keys.active().created_at().saturating_add(period) <= now {
            keys.rotate(alg, now);
            outcome.rotated = Some(keys.active().kid().clone());
        }
        outcome.pruned = keys.prune(now, ttl);
        if dirty || outcome.rotated.is_some() || outcome.pruned > 0 {
            keys.save(&path)?;
        }
        Ok((Some(keys), stamp(&path).ok(), outcome))
    })
    .await
    .map_err(|e| JwtError::Io(io::Error::other(format!("key upkeep panicked: {e}"))))??;
    let (keys, seen, outcome) = done;
    if let Some(keys) = keys {
        state.set_keys(keys);
    }
    Ok((outcome, seen))
}

/// Spawns the task that runs `keeper` every `every`, until aborted.
pub fn spawn_key_keeper<S: Store, C: Clock>(
    state: AppState<S, C>,
    mut keeper: KeyKeeper,
    every: Duration,
) -> JoinHandle<()> {
    // A task of its own: key upkeep never delays a request (requests keep using
    // the previous key set until the new one is swapped in), and a slow check only
    // delays the next one.
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The first tick is immediate: a key that fell due while the server was
            // down is rotated at start.
            ticks.tick().await;
            if let Err(e) = keeper.check(&state).await {
                error::log_background("signing keys", &e);
            }
        }
    })
}

/// `sessionguard keys rotate` on a shared key set: like [`rotate_key_file`], by
/// compare-and-set (retried if a node changed the set meanwhile). Every node picks
/// the new key up at its next check, or at once when it meets a token signed
/// with it.
pub async fn rotate_shared(
    shared: &dyn SharedKeys,
    alg: Algorithm,
    max_token_ttl: Duration,
    now: Timestamp,
) -> Result<KeyId, KeyError> {
    for _ in 0..8 {
        let loaded = shared.load().await.map_err(KeyError::Store)?;
        let mut keys = match &loaded {
            Some(json) => KeySet::from_json_secret(json)?,
            None => KeySet::generate(alg, now),
        };
        keys.rotate(alg, now);
        keys.prune(now, max_token_ttl);
        let json = keys.to_json_secret();
        if shared
            .swap(loaded.as_deref().map(|j| j.as_str()), &json)
            .await
            .map_err(KeyError::Store)?
        {
            return Ok(keys.active().kid().clone());
        }
    }
    Err(KeyError::Store(StoreError::Conflict("signing_keys")))
}

/// `sessionguard keys rotate`: loads the key file at `path` (creating it if there
/// is none), makes a fresh key for `alg` active, prunes retired keys whose tokens
/// have all expired after `max_token_ttl`, and saves it. Returns the new key's id.
/// Blocking. A running server picks the change up at its next check.
pub fn rotate_key_file(
    path: &Path,
    alg: Algorithm,
    max_token_ttl: Duration,
    now: Timestamp,
) -> Result<KeyId, JwtError> {
    let mut keys = KeySet::load_or_create(path, alg, now)?;
    keys.rotate(alg, now);
    keys.prune(now, max_token_ttl);
    keys.save(path)?;
    Ok(keys.active().kid().clone())
}

fn read(path: &Path) -> Result<KeySet, JwtError> {
    let json = Zeroizing::new(std::fs::read_to_string(path)?);
    KeySet::from_json_secret(&json)
}
