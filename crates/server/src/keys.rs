//! The signing-key file ([`KEY_FILE`] in the data folder) and its upkeep.
//!
//! `serve` loads the file, or creates it (mode 0600), at start. Then a
//! [`KeyKeeper`] checks every [`KEY_CHECK_INTERVAL`]:
//!
//! 1. if the file changed on disk (modification time or size), it is reloaded,
//!    so that `sessionguard keys rotate`, run beside a live server, takes effect
//!    within a minute;
//! 2. if the active key is older than `keys.rotation_period`, a new key becomes
//!    active; the old one stays in the set and in the JWKS until every token it
//!    signed has expired (`policy.access_token_ttl` after its retirement);
//! 3. retired keys whose tokens have all expired are pruned;
//!
//! and writes the file back (atomically, mode 0600) whenever it changed the set.
//! Time is the engine's clock. Private keys never leave the file and the
//! process: the JWKS holds public keys only.
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
use std::time::{Duration, SystemTime};

use sessionguard_core::{Clock, Store, Timestamp};
use sessionguard_jwt::{Algorithm, JwtError, KeyId, KeySet};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::error;
use crate::state::AppState;

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

/// Keeps a server's signing keys in step with the key file and the rotation
/// policy (see the module docs).
#[derive(Debug)]
pub struct KeyKeeper {
    path: PathBuf,
    seen: Option<Stamp>,
}

/// Loads the key file at `path`, or creates it with one fresh key for `alg`
/// (mode 0600). Returns the keys and the keeper that watches the file.
pub async fn load_or_create(
    path: PathBuf,
    alg: Algorithm,
    now: Timestamp,
) -> Result<(KeySet, KeyKeeper), JwtError> {
    // File I/O (and key parsing): off the async workers.
    tokio::task::spawn_blocking(move || {
        let keys = KeySet::load_or_create(&path, alg, now)?;
        let seen = stamp(&path).ok();
        Ok((keys, KeyKeeper { path, seen }))
    })
    .await
    .map_err(|e| {
        JwtError::Io(io::Error::other(format!(
            "loading the key file panicked: {e}"
        )))
    })?
}

impl KeyKeeper {
    /// A keeper for the key file at `path`, whose current content is treated as
    /// already loaded.
    pub fn new(path: PathBuf) -> Self {
        let seen = stamp(&path).ok();
        KeyKeeper { path, seen }
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One round of upkeep (see the module docs). On failure the server keeps
    /// its current keys, and the next check tries again.
    pub async fn check<S: Store, C: Clock>(
        &mut self,
        state: &AppState<S, C>,
    ) -> Result<KeyCheck, JwtError> {
        let current = state.keys();
        let now = state.engine().clock().now();
        let alg = state.key_algorithm();
        let period = state.rotation_period();
        let ttl = state.engine().policy().access_token_ttl;
        let path = self.path.clone();
        let seen = self.seen;
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
        self.seen = seen;
        if let Some(keys) = keys {
            state.set_keys(keys);
        }
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
