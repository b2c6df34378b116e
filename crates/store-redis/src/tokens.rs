//! Refresh tokens and personal API tokens.

use sessionguard_core::{
    ApiTokenRecord, RefreshState, Revocation, Rotation, StoreError, StoreResult, Timestamp,
    TokenId, UserEpoch, UserId,
};

use crate::codec::{self, Hash, ms};
use crate::conn::{array, bytes, int, pairs, unexpected};
use crate::scripts::SCRIPTS;
use crate::sessions::{lost_epoch, record_with_epoch, stored_id};
use crate::{Args, RedisStore, same_shard, wall_clock_ms};

impl RedisStore {
    /// Refuses a record outside its user's shard, reporting a conflict first if
    /// its id is taken (a record is never overwritten).
    async fn check_shard(
        &self,
        kind: &'static str,
        key: &str,
        id: &TokenId,
        user: &UserId,
    ) -> StoreResult<()> {
        let Err(mismatch) = same_shard(kind, id, user) else {
            return Ok(());
        };
        let exists = self
            .inner
            .reader
            .cmd(redis::cmd("EXISTS").arg(key))
            .await
            .map_err(StoreError::backend)?;
        Err(if int(&exists, "EXISTS")? == 1 {
            StoreError::Conflict(kind)
        } else {
            mismatch
        })
    }

    /// The expiry arguments of a refresh token: without a session, when it
    /// expires; the retention; the earliest expiry allowed.
    fn refresh_expiry_args(&self, args: &mut Args, created_at: Timestamp) {
        let retention = self.retention_ms();
        args.num(self.expiry(created_at))
            .num(retention)
            .num(wall_clock_ms().saturating_add(retention));
    }

    pub(crate) async fn insert_refresh_impl(&self, record: RefreshState) -> StoreResult<()> {
        let key = self.keys().refresh(&record.id);
        self.check_shard("refresh_token", &key, &record.id, &record.user_id)
            .await?;
        same_shard("session", &record.session_id, &record.user_id)?;
        let keys = [key, self.keys().session(&record.session_id)];
        let mut args = Args::new();
        self.refresh_expiry_args(&mut args, record.created_at);
        args.pairs(codec::refresh_fields(&record));
        let reply = self
            .durable(&SCRIPTS.insert_refresh, &keys, &args.0)
            .await?;
        match int(&reply, "insert_refresh")? {
            0 => Ok(()),
            _ => Err(StoreError::Conflict("refresh_token")),
        }
    }

    pub(crate) async fn load_refresh_impl(
        &self,
        id: &TokenId,
    ) -> StoreResult<Option<RefreshState>> {
        let reply = self
            .inner
            .reader
            .cmd(redis::cmd("HGETALL").arg(self.keys().refresh(id)))
            .await
            .map_err(StoreError::backend)?;
        let fields = pairs(reply, "HGETALL refresh token")?;
        if fields.is_empty() {
            return Ok(None);
        }
        codec::decode_refresh(*id, &Hash::new(format!("refresh token {id}"), fields)).map(Some)
    }

    pub(crate) async fn rotate_refresh_impl(
        &self,
        id: &TokenId,
        rotation: Rotation,
        successor: RefreshState,
    ) -> StoreResult<Option<Rotation>> {
        // The token, its successor and the successor's session are one user's:
        // one slot.
        same_shard("refresh_token", &successor.id, &successor.user_id)?;
        same_shard("refresh_token", id, &successor.user_id)?;
        same_shard("session", &successor.session_id, &successor.user_id)?;
        let keys = [
            self.keys().refresh(id),
            self.keys().refresh(&successor.id),
            self.keys().session(&successor.session_id),
        ];
        let mut args = Args::new();
        args.push(ms(rotation.at))
            .push(rotation.successor.to_string())
            .push(rotation.sealed_successor.0.to_vec());
        self.refresh_expiry_args(&mut args, successor.created_at);
        args.pairs(codec::refresh_fields(&successor));
        let reply = self
            .durable(&SCRIPTS.rotate_refresh, &keys, &args.0)
            .await?;
        let mut items = array(reply, "rotate_refresh")?.into_iter();
        let status = items
            .next()
            .ok_or_else(|| unexpected("rotate_refresh", "empty"))?;
        match int(&status, "rotate_refresh")? {
            0 => Ok(None),
            1 => Err(StoreError::Conflict("refresh_token")),
            2 => Err(StoreError::NotFound("refresh_token")),
            _ => {
                let (Some(at), Some(succ), Some(sealed)) =
                    (items.next(), items.next(), items.next())
                else {
                    return Err(unexpected(
                        "rotate_refresh",
                        "a rotation without its fields",
                    ));
                };
                Ok(Some(codec::decode_rotation(
                    &bytes(at, "rotate_refresh")?,
                    &bytes(succ, "rotate_refresh")?,
                    &bytes(sealed, "rotate_refresh")?,
                )?))
            }
        }
    }

    pub(crate) async fn insert_api_token_impl(&self, record: ApiTokenRecord) -> StoreResult<()> {
        let key = self.keys().api_token(&record.id);
        self.check_shard("api_token", &key, &record.id, &record.user_id)
            .await?;
        let keys = [
            key,
            self.keys().epochs(record.user_id.shard()),
            self.keys().user_api_tokens(&record.user_id),
        ];
        let mut args = Args::new();
        args.push(record.user_id.as_str())
            .num(record.epoch)
            .push(record.id.to_string())
            .num(self.expiry(record.expires_at))
            .push(codec::fresh_epoch(record.created_at))
            .push(ms(codec::anchor_for(record.created_at)))
            .pairs(codec::api_token_fields(&record))
            .pairs(vec![(codec::GUARDED, b"1".to_vec())]);
        let reply = self
            .durable(&SCRIPTS.insert_api_token, &keys, &args.0)
            .await?;
        match int(&reply, "insert_api_token")? {
            0 => Ok(()),
            1 => Err(StoreError::Conflict("api_token")),
            _ => Err(StoreError::EpochMoved),
        }
    }

    pub(crate) async fn load_api_token_impl(
        &self,
        id: &TokenId,
    ) -> StoreResult<Option<(ApiTokenRecord, UserEpoch)>> {
        let keys = [self.keys().api_token(id), self.keys().epochs(id.shard())];
        let reply = self.read(&SCRIPTS.load_with_epoch, &keys, &[]).await?;
        let Some((fields, epoch)) = record_with_epoch(reply)? else {
            return Ok(None);
        };
        let hash = Hash::new(format!("API token {id}"), fields);
        let token = codec::decode_api_token(*id, &hash)?;
        let record = codec::decode_epoch_record(&token.user_id, epoch.as_deref())?;
        match record {
            Some((epoch, anchor)) if anchor.judges(token.created_at) => Ok(Some((token, epoch))),
            // Written before tokens were inserted with their user's record: judged
            // as then, a missing record reading as epoch 0.
            _ if !codec::is_guarded(&hash) => {
                Ok(Some((token, record.map(|(e, _)| e).unwrap_or_default())))
            }
            _ => {
                lost_epoch(&token.user_id, "API token", id);
                Ok(None)
            }
        }
    }

    pub(crate) async fn touch_api_token_impl(
        &self,
        id: &TokenId,
        used_at: Timestamp,
    ) -> StoreResult<()> {
        let keys = [self.keys().api_token(id)];
        // Not waited for: losing a use only shows an older last use.
        self.read(&SCRIPTS.touch_api_token, &keys, &[ms(used_at).into_bytes()])
            .await?;
        Ok(())
    }

    pub(crate) async fn revoke_api_token_impl(
        &self,
        id: &TokenId,
        revocation: Revocation,
    ) -> StoreResult<bool> {
        let keys = [self.keys().api_token(id)];
        let mut args = Args::new();
        args.num(revocation.reason.tag()).push(ms(revocation.at));
        let reply = self
            .durable(&SCRIPTS.revoke_api_token, &keys, &args.0)
            .await?;
        Ok(int(&reply, "revoke_api_token")? == 1)
    }

    pub(crate) async fn list_user_api_tokens_impl(
        &self,
        user: &UserId,
    ) -> StoreResult<Vec<ApiTokenRecord>> {
        let keys = [self.keys().user_api_tokens(user)];
        let args = [self.keys().api_tokens_in(user.shard()).into_bytes()];
        let reply = self.read(&SCRIPTS.list_records, &keys, &args).await?;
        let mut items = array(reply, "list_records")?.into_iter();
        let mut out = Vec::new();
        while let (Some(id), Some(fields)) = (items.next(), items.next()) {
            let id = stored_id(&bytes(id, "list_records")?)?;
            let h = Hash::new(format!("API token {id}"), pairs(fields, "list_records")?);
            out.push(codec::decode_api_token(id, &h)?);
        }
        Ok(out)
    }
}
