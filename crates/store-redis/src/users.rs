//! Users: credentials, usernames, profiles and roles.

use std::time::Duration;

use redis::Value;
use sessionguard_core::{
    EpochBump, PasswordHash, StoreError, StoreResult, UserAccess, UserEpoch, UserId, UserRecord,
};

use crate::codec;
use crate::conn::{array, int, opt_bytes, unexpected};
use crate::scripts::SCRIPTS;
use crate::{Args, BackendError, MAX_ATTEMPTS, RedisStore, backoff};

/// How long a username stays reserved by a sign-up that has not completed: a
/// sign-up interrupted between its steps frees the name after this.
const NAME_RESERVATION: Duration = Duration::from_secs(60);

impl RedisStore {
    /// A username and its user live in different slots, so creation takes steps:
    /// reserve the name (`SET NX`, expiring), add the credentials in the user's
    /// slot (undoing the reservation if the user exists), then make the
    /// reservation permanent (undoing the credentials if it was lost meanwhile).
    pub(crate) async fn create_user_impl(
        &self,
        id: &UserId,
        username: &str,
        hash: PasswordHash,
    ) -> StoreResult<()> {
        let name_key = self.keys().username(username);
        let cred_key = self.keys().credentials(id.shard());
        let reserved = self
            .writer()
            .cmd(
                redis::cmd("SET")
                    .arg(&name_key)
                    .arg(id.as_str())
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(NAME_RESERVATION.as_millis()).unwrap_or(u64::MAX)),
            )
            .await
            .map_err(StoreError::backend)?;
        if reserved == Value::Nil {
            return Err(StoreError::Conflict("username"));
        }
        let credentials = codec::encode_credentials(username, &hash);
        let user_args = [id.as_str().as_bytes().to_vec()];
        let cred_args = [
            id.as_str().as_bytes().to_vec(),
            credentials.clone().into_bytes(),
        ];
        let added = self
            .durable(
                &SCRIPTS.add_credentials,
                std::slice::from_ref(&cred_key),
                &cred_args,
            )
            .await?;
        if int(&added, "add_credentials")? != 1 {
            self.durable(&SCRIPTS.release_name, &[name_key], &user_args)
                .await?;
            return Err(StoreError::Conflict("user"));
        }
        let claimed = self
            .durable(&SCRIPTS.claim_name, &[name_key], &user_args)
            .await?;
        if int(&claimed, "claim_name")? != 1 {
            self.durable(&SCRIPTS.release_credentials, &[cred_key], &cred_args)
                .await?;
            return Err(StoreError::Conflict("username"));
        }
        Ok(())
    }

    pub(crate) async fn find_user_by_username_impl(
        &self,
        username: &str,
    ) -> StoreResult<Option<UserRecord>> {
        let reply = self
            .inner
            .reader
            .cmd(redis::cmd("GET").arg(self.keys().username(username)))
            .await
            .map_err(StoreError::backend)?;
        let Some(raw) = opt_bytes(reply, "GET username")? else {
            return Ok(None);
        };
        let id = std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| UserId::new(s).ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!("the user id of {username:?} is malformed"))
            })?;
        // A name reserved by a sign-up still in progress has no credentials yet.
        Ok(self
            .get_user_impl(&id)
            .await?
            .filter(|u| u.username == username))
    }

    pub(crate) async fn get_user_impl(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        Ok(self.read_user(id).await?.map(|(user, _, _, _)| user))
    }

    /// The user's credentials and epoch, read together: the user, its epoch
    /// record as stored (empty if none), decoded, and its anchor.
    #[allow(clippy::type_complexity)]
    async fn read_user(
        &self,
        id: &UserId,
    ) -> StoreResult<Option<(UserRecord, Vec<u8>, UserEpoch, codec::Anchor)>> {
        let keys = [
            self.keys().credentials(id.shard()),
            self.keys().epochs(id.shard()),
        ];
        let reply = self
            .read(&SCRIPTS.get_user, &keys, &[id.as_str().as_bytes().to_vec()])
            .await?;
        let mut items = array(reply, "get_user")?.into_iter();
        let (Some(cred), Some(epoch)) = (items.next(), items.next()) else {
            return Err(unexpected("get_user", "not two items"));
        };
        let Some(cred) = opt_bytes(cred, "get_user")? else {
            return Ok(None);
        };
        let (username, password_hash) = codec::decode_credentials(id, &cred)?;
        let raw = opt_bytes(epoch, "get_user")?;
        let (epoch, anchor) = codec::decode_epoch_for_change(id, raw.as_deref())?;
        Ok(Some((
            UserRecord {
                id: id.clone(),
                username,
                password_hash,
                epoch: epoch.epoch,
            },
            raw.unwrap_or_default(),
            epoch,
            anchor,
        )))
    }

    pub(crate) async fn set_password_impl(
        &self,
        id: &UserId,
        hash: PasswordHash,
        bump: EpochBump,
    ) -> StoreResult<UserEpoch> {
        let shard = id.shard();
        let keys = [
            self.keys().credentials(shard),
            self.keys().epochs(shard),
            self.keys().versions(shard),
        ];
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some((user, raw, old, anchor)) = self.read_user(id).await? else {
                return Err(StoreError::NotFound("user"));
            };
            let new = old.bumped(bump);
            let mut args = Args::new();
            args.push(id.as_str())
                .push(raw)
                .push(codec::encode_epoch(&new, anchor))
                .push(codec::encode_credentials(&user.username, &hash));
            let reply = self.durable(&SCRIPTS.set_password, &keys, &args.0).await?;
            match int(&reply, "set_password")? {
                1 => return Ok(new),
                2 => return Err(StoreError::NotFound("user")),
                _ => {} // the epoch moved meanwhile: bump the new one
            }
        }
        Err(StoreError::backend(BackendError::Contention {
            operation: "set_password",
            attempts: MAX_ATTEMPTS,
        }))
    }

    pub(crate) async fn user_access_impl(&self, user: &UserId) -> StoreResult<UserAccess> {
        let reply = self
            .inner
            .reader
            .cmd(
                redis::cmd("HGET")
                    .arg(self.keys().access(user.shard()))
                    .arg(user.as_str()),
            )
            .await
            .map_err(StoreError::backend)?;
        codec::decode_access(user, opt_bytes(reply, "HGET access")?.as_deref())
    }

    pub(crate) async fn set_user_access_impl(
        &self,
        user: &UserId,
        access: UserAccess,
    ) -> StoreResult<UserEpoch> {
        let keys = [
            self.keys().access(user.shard()),
            self.keys().epochs(user.shard()),
        ];
        // Created here only if the user has no record: anchored by the next
        // session or API token (see `codec::Anchor`).
        let fresh = UserEpoch {
            privileges: 1,
            ..UserEpoch::default()
        };
        let mut args = Args::new();
        args.push(user.as_str())
            .push(codec::encode_access(&access))
            .push(codec::encode_epoch(&fresh, codec::Anchor::Pending));
        let reply = self.durable(&SCRIPTS.set_access, &keys, &args.0).await?;
        let raw = opt_bytes(reply, "set_access")?;
        codec::decode_epoch(user, raw.as_deref())
    }
}
