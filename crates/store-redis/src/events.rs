//! The audit log, in its own slot (`P:{events}:…`): a counter for ids, a hash of
//! encoded events, a sorted set of all ids, one per user, and one by time.

use sessionguard_core::{AuditEvent, EventQuery, StoreError, StoreResult, Timestamp};

use crate::codec::{self, ms};
use crate::conn::{array, bytes, int, unexpected};
use crate::scripts::SCRIPTS;
use crate::{Args, RedisStore};

/// How many ids one `list_events` script call looks at before it returns, so a
/// sparse filter never blocks Redis for long; the store calls again from there.
const LIST_BUDGET: usize = 2000;

/// How many events one `purge_events` script call deletes.
const PURGE_BATCH: usize = 1000;

impl RedisStore {
    pub(crate) async fn append_event_impl(&self, event: AuditEvent) -> StoreResult<u64> {
        let k = self.keys();
        let mut keys = vec![
            k.events_seq(),
            k.events_data(),
            k.events_ids(),
            k.events_at(),
        ];
        if let Some(u) = &event.user {
            keys.push(k.events_user(u));
        }
        let mut args = Args::new();
        args.push(ms(event.at)).push(codec::encode_event(&event));
        let reply = self.durable(&SCRIPTS.append_event, &keys, &args.0).await?;
        u64::try_from(int(&reply, "append_event")?)
            .map_err(|_| unexpected("append_event", "a negative id"))
    }

    pub(crate) async fn list_events_impl(&self, q: &EventQuery) -> StoreResult<Vec<AuditEvent>> {
        let k = self.keys();
        let index = match &q.user {
            Some(u) => k.events_user(u),
            None => k.events_ids(),
        };
        let keys = [index, k.events_data()];
        let page = q.page_size();
        let mut out = Vec::with_capacity(page.min(64));
        let mut bound = q.cursor.map(|c| c.to_string()).unwrap_or_default();
        while out.len() < page {
            let mut args = Args::new();
            args.push(if q.newest_first { "1" } else { "0" })
                .push(bound.clone())
                .push(q.since.map(ms).unwrap_or_default())
                .num(page - out.len())
                .num(LIST_BUDGET);
            let reply = self.read(&SCRIPTS.list_events, &keys, &args.0).await?;
            let mut items = array(reply, "list_events")?.into_iter();
            let (Some(done), Some(last), Some(found)) = (items.next(), items.next(), items.next())
            else {
                return Err(unexpected("list_events", "not three items"));
            };
            let mut found = array(found, "list_events")?.into_iter();
            while let (Some(id), Some(raw)) = (found.next(), found.next()) {
                let id = bytes(id, "list_events")?;
                let id: u64 = std::str::from_utf8(&id)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt("an audit event id is malformed".into()))?;
                out.push(codec::decode_event(id, &bytes(raw, "list_events")?)?);
            }
            if int(&done, "list_events")? == 1 {
                break;
            }
            bound = String::from_utf8(bytes(last, "list_events")?)
                .map_err(|_| unexpected("list_events", "a malformed bound"))?;
        }
        Ok(out)
    }

    pub(crate) async fn purge_events_impl(&self, cutoff: Timestamp) -> StoreResult<u64> {
        let k = self.keys();
        let keys = [k.events_at(), k.events_data(), k.events_ids()];
        let mut args = Args::new();
        args.push(ms(cutoff))
            .push(k.events_users())
            .num(PURGE_BATCH);
        let mut total = 0;
        loop {
            let reply = self.durable(&SCRIPTS.purge_events, &keys, &args.0).await?;
            let n = int(&reply, "purge_events")?;
            total += u64::try_from(n).unwrap_or(0);
            if usize::try_from(n).unwrap_or(0) < PURGE_BATCH {
                return Ok(total);
            }
        }
    }
}
