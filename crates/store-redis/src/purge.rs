//! The purge sweep: `SCAN` every master for records of the prefix, and delete
//! each one that has ended by the cutoff with one atomic script per record.
//!
//! In production the TTLs delete records (see the crate docs); this sweep catches
//! what ended before its TTL (revocations, a raised API-token floor) and is what
//! makes [`sessionguard_core::Store::purge`] exact whatever the clock.

use sessionguard_core::{Purged, Shard, StoreError, StoreResult, Timestamp, TokenId, UserId};
use tokio::task::JoinSet;

use crate::codec::{self, ms};
use crate::conn::{array, bytes, int, opt_bytes, unexpected};
use crate::scripts::SCRIPTS;
use crate::sessions::stored_id;
use crate::{Args, RedisStore};

/// Keys asked for per `SCAN` call; the records of one batch are checked
/// concurrently (pipelined on the multiplexed connection).
const SCAN_COUNT: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Session,
    Refresh,
    ApiToken,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Session => "s",
            Kind::Refresh => "r",
            Kind::ApiToken => "a",
        }
    }
}

impl RedisStore {
    pub(crate) async fn purge_impl(&self, cutoff: Timestamp) -> StoreResult<Purged> {
        // Sessions first: a refresh token whose session is gone goes too.
        Ok(Purged {
            sessions: self.sweep(Kind::Session, cutoff).await?,
            refresh_tokens: self.sweep(Kind::Refresh, cutoff).await?,
            api_tokens: self.sweep(Kind::ApiToken, cutoff).await?,
        })
    }

    async fn sweep(&self, kind: Kind, cutoff: Timestamp) -> StoreResult<u64> {
        let pattern = self.keys().scan_pattern(kind.tag());
        let conn = &self.inner.reader;
        let mut purged = 0;
        for node in conn.masters().await? {
            let mut cursor = "0".to_owned();
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(&cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let reply = conn
                    .cmd_on_node(&node, scan)
                    .await
                    .map_err(StoreError::backend)?;
                let mut items = array(reply, "SCAN")?.into_iter();
                let (Some(next), Some(found)) = (items.next(), items.next()) else {
                    return Err(unexpected("SCAN", "not two items"));
                };
                let mut checks = JoinSet::new();
                for key in array(found, "SCAN")? {
                    let key = String::from_utf8(bytes(key, "SCAN")?)
                        .map_err(|_| unexpected("SCAN", "a key that is not UTF-8"))?;
                    let Some((shard, id)) = self.keys().parse_record_key(&key, kind.tag()) else {
                        continue;
                    };
                    let store = self.clone();
                    checks
                        .spawn(async move { store.purge_one(kind, key, shard, id, cutoff).await });
                }
                while let Some(done) = checks.join_next().await {
                    purged += u64::from(done.map_err(StoreError::backend)??);
                }
                cursor = String::from_utf8(bytes(next, "SCAN")?)
                    .map_err(|_| unexpected("SCAN", "a malformed cursor"))?;
                if cursor == "0" {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// Deletes one record if it ended by `cutoff`; whether it did.
    async fn purge_one(
        &self,
        kind: Kind,
        key: String,
        shard: Shard,
        id: TokenId,
        cutoff: Timestamp,
    ) -> StoreResult<bool> {
        let k = self.keys();
        let conn = &self.inner.reader;
        let field = |name: &'static str| {
            let key = key.clone();
            async move {
                let reply = conn
                    .cmd(redis::cmd("HGET").arg(&key).arg(name))
                    .await
                    .map_err(StoreError::backend)?;
                opt_bytes(reply, "HGET")
            }
        };
        let user_of = |raw: Vec<u8>| {
            std::str::from_utf8(&raw)
                .ok()
                .and_then(|u| UserId::new(u).ok())
                .filter(|u| u.shard() == shard)
        };
        let mut args = Args::new();
        args.push(ms(cutoff));
        let (lua, keys) = match kind {
            Kind::Session => {
                // Only candidates pay for the script.
                let reply = conn
                    .cmd(redis::cmd("GET").arg(&key))
                    .await
                    .map_err(StoreError::backend)?;
                let Some(raw) = opt_bytes(reply, "GET")? else {
                    return Ok(false);
                };
                let Some(user) = codec::session_owner_and_idle(&raw)
                    .filter(|(_, idle)| *idle <= cutoff)
                    .and_then(|(user, _)| user_of(user.as_bytes().to_vec()))
                else {
                    return Ok(false);
                };
                args.push(user.as_str()).push(id.to_string());
                (&SCRIPTS.purge_session, vec![key, k.user_sessions(&user)])
            }
            Kind::Refresh => {
                let Some(session) = field("s").await? else {
                    return Ok(false);
                };
                let session = stored_id(&session)?;
                if session.shard() != shard {
                    return Ok(false);
                }
                args.push(session.to_string());
                (&SCRIPTS.purge_refresh, vec![key, k.session(&session)])
            }
            Kind::ApiToken => {
                let Some(user) = field("u").await?.and_then(user_of) else {
                    return Ok(false);
                };
                args.push(user.as_str()).push(id.to_string());
                (
                    &SCRIPTS.purge_api_token,
                    vec![key, k.epochs(shard), k.user_api_tokens(&user)],
                )
            }
        };
        let reply = conn.eval(lua, &keys, &args.0).await?;
        Ok(int(&reply, lua.name)? == 1)
    }
}
