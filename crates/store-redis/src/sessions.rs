//! Sessions and credential epochs.

use redis::Value;
use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    EpochBump, MemoryIndex, Reason, Revocation, SessionId, SessionLimit, SessionRecord,
    SessionState, StoreError, StoreResult, Timestamp, TokenId, TokenRotation, UserEpoch, UserId,
};

use crate::codec::{self, Hash, ms};
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
        let fields = codec::session_fields(&record);
        let displacement = {
            let mut d = vec![
                ("rr", Reason::Displaced.tag().to_string().into_bytes()),
                ("ra", ms(s.created_at).into_bytes()),
            ];
            d.extend(codec::displaced_by_fields(&record.client));
            d
        };
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
                .num(displacement.len())
                .pairs(displacement.clone())
                .pairs(fields.clone());
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

    /// One `id, fields` entry of a script's list of sessions.
    fn decode_session_entry(&self, id: Value, fields: Value) -> StoreResult<SessionRecord> {
        let id = stored_id(&bytes(id, "session list")?)?;
        let h = Hash::new(format!("session {id}"), pairs(fields, "session list")?);
        codec::decode_session(id, &h)
    }

    pub(crate) async fn rotate_session_token_impl(
        &self,
        id: &SessionId,
        expected: VerifierHash,
        rotation: TokenRotation,
    ) -> StoreResult<bool> {
        let keys = [self.keys().session(id), self.keys().versions(id.shard())];
        let mut set: codec::Pairs = vec![
            ("vh", rotation.verifier_hash.as_bytes().to_vec()),
            ("ti", ms(rotation.issued_at).into_bytes()),
            ("pv", rotation.previous.verifier_hash.as_bytes().to_vec()),
            ("pu", ms(rotation.previous.valid_until).into_bytes()),
            (
                "pr",
                rotation.previous.reason.tag().to_string().into_bytes(),
            ),
            ("idl", ms(rotation.idle_deadline).into_bytes()),
            ("abs", ms(rotation.absolute_deadline).into_bytes()),
            ("cb", rotation.csrf_basis.as_bytes().to_vec()),
            ("pg", rotation.privileges.to_string().into_bytes()),
        ];
        let mut delete: Vec<&str> = Vec::new();
        match rotation.elevated_until {
            Some(t) => set.push(("el", ms(t).into_bytes())),
            None => delete.push("el"),
        }
        match &rotation.profile {
            Some(p) => set.push(("p", p.as_str().as_bytes().to_vec())),
            None => delete.push("p"),
        }
        let mut args = Args::new();
        args.push(expected.as_bytes().to_vec())
            .push(ms(rotation.issued_at))
            .num(self.expiry(rotation.idle_deadline))
            .num(delete.len());
        for d in delete {
            args.push(d);
        }
        args.pairs(set);
        let reply = self
            .durable(&SCRIPTS.rotate_session, &keys, &args.0)
            .await?;
        Ok(int(&reply, "rotate_session")? == 1)
    }

    pub(crate) async fn load_session_impl(
        &self,
        id: &SessionId,
    ) -> StoreResult<Option<(SessionState, UserEpoch)>> {
        let keys = [self.keys().session(id), self.keys().epochs(id.shard())];
        let reply = self.read(&SCRIPTS.load_with_epoch, &keys, &[]).await?;
        let Some((fields, epoch)) = record_with_epoch(reply)? else {
            return Ok(None);
        };
        let rec = codec::decode_session(*id, &Hash::new(format!("session {id}"), fields))?;
        let epoch = codec::decode_epoch(&rec.state.user_id, epoch.as_deref())?;
        Ok(Some((rec.state, epoch)))
    }

    pub(crate) async fn touch_session_impl(
        &self,
        id: &SessionId,
        seen_at: Timestamp,
        idle_deadline: Timestamp,
    ) -> StoreResult<()> {
        let keys = [self.keys().session(id)];
        let mut args = Args::new();
        args.push(ms(seen_at))
            .push(ms(idle_deadline))
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
        args.num(revocation.reason.tag()).push(ms(revocation.at));
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
            let (raw, old) = self.read_epoch(user).await?;
            let new = old.bumped(bump);
            let mut args = Args::new();
            args.push(user.as_str())
                .push(raw)
                .push(codec::encode_epoch(&new))
                .num(old.epoch)
                .num(new.epoch);
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

    /// The user's epoch record as stored (empty if none) and decoded.
    pub(crate) async fn read_epoch(&self, user: &UserId) -> StoreResult<(Vec<u8>, UserEpoch)> {
        let key = self.keys().epochs(user.shard());
        let reply = self
            .inner
            .reader
            .cmd(redis::cmd("HGET").arg(&key).arg(user.as_str()))
            .await
            .map_err(StoreError::backend)?;
        let raw = opt_bytes(reply, "HGET epoch")?;
        let epoch = codec::decode_epoch(user, raw.as_deref())?;
        Ok((raw.unwrap_or_default(), epoch))
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
        let reply = self.read(&SCRIPTS.list_records, &keys, &args).await?;
        let mut items = array(reply, "list_records")?.into_iter();
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
