//! The password throttle's records: one string per key, `failures:last:keep`
//! (milliseconds of the engine's clock), in a slot of its own chosen by the
//! key's digest. Each operation is one script; the records are shared by every
//! node (so a client's failures on one count on all) and are not waited for
//! (`WAIT`): the contract does not call them durable.

use sessionguard_core::{Attempt, Settle, StoreResult, ThrottleKey, ThrottleLimit, Timestamp};

use crate::codec::ms;
use crate::conn::{array, int, unexpected};
use crate::scripts::SCRIPTS;
use crate::{Args, RedisStore};

/// A duration in whole milliseconds, as the scripts take it.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisStore {
    pub(crate) async fn throttle_attempt_impl(
        &self,
        key: &ThrottleKey,
        limit: ThrottleLimit,
        now: Timestamp,
        create: bool,
    ) -> StoreResult<Attempt> {
        let keys = [self.keys().throttle(key)];
        let mut args = Args::new();
        args.push(ms(now))
            .push(if create { "1" } else { "0" })
            .num(limit.free)
            .num(millis(limit.delay))
            .num(millis(limit.max_delay))
            .num(millis(limit.window));
        let reply = self
            .writer()
            .eval(&SCRIPTS.throttle_attempt, &keys, &args.0)
            .await?;
        let items = array(reply, "throttle_attempt")?;
        let [status, value] = items.as_slice() else {
            return Err(unexpected("throttle_attempt", "not two items"));
        };
        let value = int(value, "throttle_attempt")?;
        match int(status, "throttle_attempt")? {
            0 => Ok(Attempt::Counted {
                failures: u32::try_from(value)
                    .map_err(|_| unexpected("throttle_attempt", "a count out of range"))?,
            }),
            1 => Ok(Attempt::Throttled {
                retry_at: Timestamp::from_millis(value),
            }),
            2 => Ok(Attempt::Unknown),
            other => Err(unexpected("throttle_attempt", &format!("status {other}"))),
        }
    }

    pub(crate) async fn throttle_settle_impl(
        &self,
        key: &ThrottleKey,
        settle: Settle,
        now: Timestamp,
    ) -> StoreResult<()> {
        let keys = [self.keys().throttle(key)];
        let mut args = Args::new();
        match settle {
            Settle::Forget => args.push("f").push(ms(now)).push("0"),
            Settle::Release => args.push("r").push(ms(now)).push("0"),
            Settle::Trust { until } => args.push("t").push(ms(now)).push(ms(until)),
        };
        let reply = self
            .writer()
            .eval(&SCRIPTS.throttle_settle, &keys, &args.0)
            .await?;
        int(&reply, "throttle_settle").map(|_| ())
    }
}
