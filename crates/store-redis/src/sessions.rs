//! Sessions and credential epochs.

use redis::Value;
use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    EpochBump, MemoryIndex, Reason, Revocation, SessionId, SessionLimit, SessionRecord,
    SessionState, StoreError, StoreResult, Timestamp, TokenId, TokenRotation, UserEpoch, UserId,
};

use crate::codec;
use crate::conn::{array, bytes, int, opt_bytes, pairs, unexpected};
use crate::scripts::SCRIPTS;
use crate::{Args, BackendError, MAX_ATTEMPTS, RedisStore, backoff, same_shard};

impl RedisStore {
    pub(crate) async fn insert_session_impl(
        &self,
        record: SessionRecord,
        limit: SessionLimit,
    ) -> StoreResult<Vec<SessionId>> {
        let s = &record.state;
        let keys = self.keys();
        let session_key = keys.session(&s.id);
        if let Err(mismatch) = same_shard("session", &s.id, &s.user_id) {
            // A record is never overwritten: an existing id is a conflict first.
            let exists = self
                .inner
                .reader
                .cmd(redis::cmd("EXISTS").arg(&session_key))
                .await
                .map_err(StoreError::backend)?;
            return Err(if int(&exists, "EXISTS")? == 1 {
                StoreError::Conflict("session")
            } else {
                mismatch
            });
        }
        let shard = s.user_id.shard();
        let base_keys = [
            session_key,
            keys.epochs(shard),
            keys.versions(shard),
            keys.user_sessions(&s.user_id),
        ];
        let packed = codec::encode_session(&record);
        let displaced_revocation = codec::revocation_bytes(Revocation {
            reason: Reason::Displaced,
            at: s.created_at,
        });
        let displaced_by = codec::displaced_group(Some(&record.client));
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (version, displaced) = if limit.max == 0 {
                (String::new(), Vec::new())
            } else {
                let snapshot = self.insert_snapshot(&base_keys, &record).await?;
                if snapshot.exists {
                    return Err(StoreError::Conflict("session"));
                }
                if snapshot.epoch.epoch != s.epoch {
                    return Err(StoreError::EpochMoved);
                }
                // The memory store's own planning, on the snapshot: the same
                // liveness (`verdict` at `created_at`) and least-recently-seen order.
                let index = MemoryIndex::new();
                index.restore_epoch(&s.user_id, snapshot.epoch);
                for r in snapshot.sessions {
                    index.restore_session(r);
                }
                let displaced = index.plan_insert(&record, limit)?;
                (snapshot.version, displaced)
            };
            let mut all_keys = base_keys.to_vec();
            all_keys.extend(displaced.iter().map(|id| keys.session(id)));
            let mut args = Args::new();
            args.push(s.user_id.as_str())
                .num(s.epoch)
                .push(version)
                .push(s.id.to_string())
                .push(keys.sessions_in(shard))
                .num(self.expiry(s.idle_deadline))
                .num(self.expiry(s.absolute_deadline))
                .push(displaced_revocation.clone())
                .push(displaced_by.clone())
                .push(packed.clone())
                .push(codec::fresh_epoch(s.created_at))
                .push(codec::ms(codec::anchor_for(s.created_at)));
            let reply = self
                .durable(&SCRIPTS.insert_session, &all_keys, &args.0)
                .await?;
            match int(&reply, "insert_session")? {
                0 => return Ok(displaced),
                1 => return Err(StoreError::Conflict("session")),
                2 => return Err(StoreError::EpochMoved),
                _ => {} // another login of the user won: plan again
            }
        }
        Err(StoreError::backend(BackendError::Contention {
            operation: "insert_session",
            attempts: MAX_ATTEMPTS,
        }))
    }

    async fn insert_snapshot(
        &self,
        keys: &[String; 4],
        record: &SessionRecord,
    ) -> StoreResult<Snapshot> {
        let user = &record.state.user_id;
        let mut args = Args::new();
        args.push(user.as_str())
            .push(self.keys().sessions_in(user.shard()));
        let reply = self.read(&SCRIPTS.insert_snapshot, keys, &args.0).await?;
        let mut items = array(reply, "insert_snapshot")?.into_iter();
        let (Some(exists), Some(epoch), Some(version)) = (items.next(), items.next(), items.next())
        else {
            return Err(unexpected("insert_snapshot", "fewer than three items"));
        };
        let epoch = codec::decode_epoch(user, opt_bytes(epoch, "insert_snapshot")?.as_deref())?;
        let version = match opt_bytes(version, "insert_snapshot")? {
            Some(v) => {
                String::from_utf8(v).map_err(|_| unexpected("insert_snapshot", "version"))?
            }
            None => "0".to_owned(),
        };
        let mut sessions = Vec::new();
        while let (Some(id), Some(fields)) = (items.next(), items.next()) {
            sessions.push(self.decode_session_entry(id, fields)?);
        }
        Ok(Snapshot {
            exists: int(&exists, "insert_snapshot")? == 1,
            epoch,
            version,
            sessions,
        })
    }

    /// One `id, record` entry of a script's list of sessions.
    fn decode_session_entry(&self, id: Value, record: Value) -> StoreResult<SessionRecord> {
        let id = stored_id(&bytes(id, "session list")?)?;
        codec::decode_session(id, &bytes(record, "session list")?)
    }

    pub(crate) async fn rotate_session_token_impl(
        &self,
        id: &SessionId,
        expected: VerifierHash,
        rotation: TokenRotation,
    ) -> StoreResult<bool> {
        let keys = [self.keys().session(id), self.keys().versions(id.shard())];
        let mut fixed = Vec::with_capacity(32);
        for t in [
            rotation.idle_deadline,
            rotation.absolute_deadline,
            rotation.issued_at,
        ] {
            fixed.extend_from_slice(&codec::time_bytes(t));
        }
        fixed.extend_from_slice(&rotation.privileges.to_be_bytes());
        let mut args = Args::new();
        args.push(expected.as_bytes().as_slice())
            .push(codec::time_bytes(rotation.issued_at).as_slice())
            .num(self.expiry(rotation.idle_deadline))
            .push(rotation.verifier_hash.as_bytes().as_slice())
            .push(fixed)
            .push(codec::policy_group(&rotation));
        let reply = self
            .durable(&SCRIPTS.rotate_session, &keys, &args.0)
            .await?;
        Ok(int(&reply, "rotate_session")? == 1)
    }

    pub(crate) async fn load_session_impl(
        &self,
        id: &SessionId,
    ) -> StoreResult<Option<(SessionState, UserEpoch)>> {
        let (session, epochs) = self.keys().session_and_epochs(id);
        let reply = self
            .inner
            .reader
            .eval_keys(&SCRIPTS.load_session, &[&session, &epochs])
            .await?;
        // One string: the session record, then its user's epoch record (if any).
        let raw = match reply {
            // Lua's `false`: nil in RESP2, a boolean in RESP3.
            Value::Nil | Value::Boolean(false) => return Ok(None),
            Value::BulkString(raw) => raw,
            other => return Err(unexpected("load_session", &format!("{other:?}"))),
        };
        let (state, epoch) = codec::decode_state_and_rest(*id, &raw)?;
        let record =
            codec::decode_epoch_record(&state.user_id, (!epoch.is_empty()).then_some(epoch))?;
        match record {
            Some((epoch, anchor)) if anchor.judges(state.created_at) => Ok(Some((state, epoch))),
            _ => {
                lost_epoch(&state.user_id, "session", id);
                Ok(None)
            }
        }
    }

    pub(crate) async fn touch_session_impl(
        &self,
        id: &SessionId,
        seen_at: Timestamp,
        idle_deadline: Timestamp,
    ) -> StoreResult<()> {
        let keys = [self.keys().session(id)];
        let mut args = Args::new();
        args.push(codec::time_bytes(seen_at).as_slice())
            .push(codec::time_bytes(idle_deadline).as_slice())
            .num(self.expiry(idle_deadline));
        // Not waited for: losing a touch only ends a session earlier.
        self.read(&SCRIPTS.touch_session, &keys, &args.0).await?;
        Ok(())
    }

    pub(crate) async fn revoke_session_impl(
        &self,
        id: &SessionId,
        revocation: Revocation,
    ) -> StoreResult<bool> {
        let keys = [self.keys().session(id), self.keys().versions(id.shard())];
        let mut args = Args::new();
        args.push(codec::revocation_bytes(revocation));
        let reply = self
            .durable(&SCRIPTS.revoke_session, &keys, &args.0)
            .await?;
        Ok(int(&reply, "revoke_session")? == 1)
    }

    pub(crate) async fn revoke_user_sessions_impl(
        &self,
        user: &UserId,
        bump: EpochBump,
        keep: Option<&SessionId>,
    ) -> StoreResult<UserEpoch> {
        let shard = user.shard();
        let mut keys = vec![self.keys().epochs(shard), self.keys().versions(shard)];
        // A session in another shard is not this user's: it is never carried.
        if let Some(k) = keep.filter(|k| k.shard() == shard) {
            keys.push(self.keys().session(k));
        }
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (raw, old, anchor) = self.read_epoch(user).await?;
            let new = old.bumped(bump);
            let mut args = Args::new();
            args.push(user.as_str())
                .push(raw)
                .push(codec::encode_epoch(&new, anchor))
                .push(codec::epoch_bytes(old.epoch).as_slice())
                .push(codec::epoch_bytes(new.epoch).as_slice());
            let reply = self.durable(&SCRIPTS.bump_epoch, &keys, &args.0).await?;
            if int(&reply, "bump_epoch")? == 1 {
                return Ok(new);
            }
        }
        Err(StoreError::backend(BackendError::Contention {
            operation: "revoke_user_sessions",
            attempts: MAX_ATTEMPTS,
        }))
    }

    /// The user's epoch record as stored (empty if none) and decoded, with its
    /// anchor (pending if there is none).
    pub(crate) async fn read_epoch(
        &self,
        user: &UserId,
    ) -> StoreResult<(Vec<u8>, UserEpoch, codec::Anchor)> {
        let key = self.keys().epochs(user.shard());
        let reply = self
            .inner
            .reader
            .cmd(redis::cmd("HGET").arg(&key).arg(user.as_str()))
            .await
            .map_err(StoreError::backend)?;
        let raw = opt_bytes(reply, "HGET epoch")?;
        let (epoch, anchor) = codec::decode_epoch_for_change(user, raw.as_deref())?;
        Ok((raw.unwrap_or_default(), epoch, anchor))
    }

    pub(crate) async fn user_epoch_impl(&self, user: &UserId) -> StoreResult<UserEpoch> {
        Ok(self.read_epoch(user).await?.1)
    }

    pub(crate) async fn list_user_sessions_impl(
        &self,
        user: &UserId,
    ) -> StoreResult<Vec<SessionRecord>> {
        let keys = [self.keys().user_sessions(user)];
        let args = [self.keys().sessions_in(user.shard()).into_bytes()];
        let reply = self.read(&SCRIPTS.list_sessions, &keys, &args).await?;
        let mut items = array(reply, "list_sessions")?.into_iter();
        let mut out = Vec::new();
        while let (Some(id), Some(fields)) = (items.next(), items.next()) {
            out.push(self.decode_session_entry(id, fields)?);
        }
        Ok(out)
    }
}

/// What `insert_session` plans from.
struct Snapshot {
    exists: bool,
    epoch: UserEpoch,
    version: String,
    sessions: Vec<SessionRecord>,
}

/// Reports a session or API token refused because its user's epoch record is
/// missing, or was created again after it: the record was lost (evicted, or
/// deleted by hand), and with it the bumps that may have ended this one.
pub(crate) fn lost_epoch(user: &UserId, kind: &str, id: &TokenId) {
    tracing::warn!(
        user = %user,
        kind,
        id = %id,
        "refused: the user's credential-epoch record was lost (is Redis evicting keys?)"
    );
}

/// A session or token id read back from Redis.
pub(crate) fn stored_id(raw: &[u8]) -> StoreResult<TokenId> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| TokenId::parse(s).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a stored id is malformed: {:?}",
                String::from_utf8_lossy(raw)
            ))
        })
}

/// The reply of `load_with_epoch`: `None`, or the record's fields and its user's
/// epoch record.
#[allow(clippy::type_complexity)]
pub(crate) fn record_with_epoch(
    reply: Value,
) -> StoreResult<Option<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>)>> {
    if reply == Value::Nil {
        return Ok(None);
    }
    let mut items = array(reply, "load_with_epoch")?.into_iter();
    let (Some(fields), Some(epoch)) = (items.next(), items.next()) else {
        return Err(unexpected("load_with_epoch", "not two items"));
    };
    Ok(Some((
        pairs(fields, "load_with_epoch")?,
        opt_bytes(epoch, "load_with_epoch")?,
    )))
}
