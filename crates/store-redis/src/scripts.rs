//! The server-side scripts: every operation that a race could break runs as one
//! Lua script, which Redis executes atomically.
//!
//! Each script's keys are in one hash slot (see `keys.rs`). A few scripts also
//! reach keys that they build from a prefix argument (the records named by a
//! user's set, the per-user event indexes): those keys are always in the slot of
//! the script's first key, which Redis Cluster allows.
//!
//! Numbers travel as decimal strings; scripts compare them with `tonumber` and
//! format computed ones with `%.0f` (never in exponent notation). Expiry times are
//! absolute (`PEXPIREAT`), chosen by the caller.

use std::sync::LazyLock;

/// A script with its SHA-1, loaded once per node and invoked by `EVALSHA`.
#[derive(Debug)]
pub(crate) struct Lua {
    pub(crate) name: &'static str,
    /// The source sent with `SCRIPT LOAD` and, after `NOSCRIPT`, with `EVAL`.
    pub(crate) body: String,
    /// Its SHA-1, for `EVALSHA`.
    pub(crate) script: redis::Script,
}

impl Lua {
    fn new(name: &'static str, body: &str) -> Lua {
        let body = format!("{PRELUDE}\n{}\n{body}", *SESSION_PRELUDE);
        Lua {
            name,
            script: redis::Script::new(&body),
            body,
        }
    }

    /// A script without the helpers: defining them costs every call (the script
    /// body runs whole each time), which only the check's path is worth saving.
    fn bare(name: &'static str, body: String) -> Lua {
        Lua {
            name,
            script: redis::Script::new(&body),
            body,
        }
    }
}

/// Helpers every script may use.
const PRELUDE: &str = r#"
local function int(n) return string.format('%.0f', n) end
-- Sets `key` to expire at `at` (ms) unless it already lives longer.
local function extend(key, at)
  local cur = redis.call('PEXPIRETIME', key)
  if cur < 0 or cur < at then redis.call('PEXPIREAT', key, int(at)) end
end
-- The epoch number of an encoded epoch record ('0' for none).
local function epoch_of(rec)
  if rec then return string.match(rec, '^(%d+)|') end
  return '0'
end
-- Gives `user` an epoch record in the hash `h` that judges a record created at
-- `at` (ms): creates it as `fresh` (epoch 0, anchored at `at`) if there is none
-- (`rec` is what HGET returned), or anchors one whose anchor is pending ('*').
local function ensure_epoch(h, user, rec, fresh, at)
  if not rec then
    redis.call('HSET', h, user, fresh)
    return
  end
  local head, tail = string.match(rec, '^(.*|)%*(|%d+)$')
  if head then redis.call('HSET', h, user, head .. at .. tail) end
end
-- ARGV[from..] as a table.
local function rest(from)
  local t = {}
  for i = from, #ARGV do t[#t + 1] = ARGV[i] end
  return t
end
-- Appends id, record to `out` for each member of the set `set` whose record
-- (string key `prefix .. id`) still exists.
local function append_records(out, set, prefix)
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    local s = redis.call('GET', prefix .. id)
    if s then
      out[#out + 1] = id
      out[#out + 1] = s
    end
  end
  return out
end
"#;

/// Helpers for packed session records (`codec::encode_session`), with the
/// offsets of its fixed head as `codec` defines them.
static SESSION_PRELUDE: LazyLock<String> = LazyLock::new(|| {
    use crate::codec::session::{ABS, E, IDL, LS, RR, USER, VH};
    format!(
        r#"
-- Offsets (from 0) in a session record; SETRANGE takes them as they are.
local S_VH, S_E, S_LS, S_IDL, S_ABS, S_RR, S_USER = {VH}, {E}, {LS}, {IDL}, {ABS}, {RR}, {USER}
-- The i64 at offset `off` of `s` (a number, as `tonumber` gives).
local function s_time(s, off) return (struct.unpack('>i8', s, off + 1)) end
local function s_live(s) return string.byte(s, S_RR + 1) == 0 end
local function s_user(s)
  return string.sub(s, S_USER + 2, S_USER + 1 + string.byte(s, S_USER + 1))
end
-- `s` with its group `i` (1 policy, 2 displaced by, 3 client) replaced by `g`
-- (a group with its 2-byte length).
local function s_with_group(s, i, g)
  local at = S_USER + 2 + string.byte(s, S_USER + 1)
  for _ = 2, i do at = at + 2 + struct.unpack('>I2', s, at) end
  return string.sub(s, 1, at - 1) .. g .. string.sub(s, at + 2 + struct.unpack('>I2', s, at))
end
"#
    )
});

/// The throttle scripts' helpers: reading a live record (`nil` when absent or
/// past its keep time) and writing one that Redis expires at its keep time.
const THROTTLE_PRELUDE: &str = r#"
local function read(now)
  local rec = redis.call('GET', KEYS[1])
  if not rec then return nil end
  local n, last, keep = string.match(rec, '^(%d+):(%-?%d+):(%-?%d+)$')
  if not n then error('corrupt throttle record') end
  if tonumber(keep) <= now then return nil end
  return tonumber(n), tonumber(last), tonumber(keep)
end
local function write(n, last, keep, now)
  redis.call('SET', KEYS[1], string.format('%.0f:%.0f:%.0f', n, last, keep),
    'PX', string.format('%.0f', keep - now))
end
"#;

/// Every script, built (and hashed) once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) load_session: Lua,
    pub(crate) load_with_epoch: Lua,
    pub(crate) insert_snapshot: Lua,
    pub(crate) insert_session: Lua,
    pub(crate) rotate_session: Lua,
    pub(crate) touch_session: Lua,
    pub(crate) revoke_session: Lua,
    pub(crate) bump_epoch: Lua,
    pub(crate) get_user: Lua,
    pub(crate) set_password: Lua,
    pub(crate) add_credentials: Lua,
    pub(crate) claim_name: Lua,
    pub(crate) release_name: Lua,
    pub(crate) release_credentials: Lua,
    pub(crate) insert_refresh: Lua,
    pub(crate) rotate_refresh: Lua,
    pub(crate) insert_api_token: Lua,
    pub(crate) touch_api_token: Lua,
    pub(crate) revoke_api_token: Lua,
    pub(crate) list_records: Lua,
    pub(crate) list_sessions: Lua,
    pub(crate) set_access: Lua,
    pub(crate) append_event: Lua,
    pub(crate) list_events: Lua,
    pub(crate) purge_events: Lua,
    pub(crate) purge_session: Lua,
    pub(crate) purge_refresh: Lua,
    pub(crate) purge_api_token: Lua,
    pub(crate) swap_signing_keys: Lua,
    pub(crate) throttle_attempt: Lua,
    pub(crate) throttle_settle: Lua,
}

impl Scripts {
    pub(crate) fn all(&self) -> [&Lua; 31] {
        [
            &self.load_session,
            &self.load_with_epoch,
            &self.insert_snapshot,
            &self.insert_session,
            &self.rotate_session,
            &self.touch_session,
            &self.revoke_session,
            &self.bump_epoch,
            &self.get_user,
            &self.set_password,
            &self.add_credentials,
            &self.claim_name,
            &self.release_name,
            &self.release_credentials,
            &self.insert_refresh,
            &self.rotate_refresh,
            &self.insert_api_token,
            &self.touch_api_token,
            &self.revoke_api_token,
            &self.list_records,
            &self.list_sessions,
            &self.set_access,
            &self.append_event,
            &self.list_events,
            &self.purge_events,
            &self.purge_session,
            &self.purge_refresh,
            &self.purge_api_token,
            &self.swap_signing_keys,
            &self.throttle_attempt,
            &self.throttle_settle,
        ]
    }
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    // KEYS: session, the shard's epoch hash.
    // Returns false, or the session record followed by its user's epoch record
    // (nothing if none): one string, the fewest bytes to send and parse.
    load_session: Lua::bare("load_session", {
        // 1-based: the user id's length byte, and its first byte.
        let len = crate::codec::session::USER + 1;
        let first = len + 1;
        format!(
            r#"
local s = redis.call('GET', KEYS[1])
if not s then return false end
local e = redis.call('HGET', KEYS[2], string.sub(s, {first}, {len} + string.byte(s, {len})))
if e then return s .. e end
return s
"#
        )
    }),

    // KEYS: API token, the shard's epoch hash.
    // Returns false, or {record fields, the owner's epoch record or false}.
    load_with_epoch: Lua::new(
        "load_with_epoch",
        r#"
local r = redis.call('HGETALL', KEYS[1])
if #r == 0 then return false end
local u = false
for i = 1, #r, 2 do
  if r[i] == 'u' then u = r[i + 1] break end
end
if not u then return {r, false} end
return {r, redis.call('HGET', KEYS[2], u)}
"#,
    ),

    // KEYS: new session, epochs, versions, user's session set.
    // ARGV: user, session key prefix.
    // Returns {new id exists, epoch record, version, id, fields, id, fields...}.
    insert_snapshot: Lua::new(
        "insert_snapshot",
        r#"
local out = {
  redis.call('EXISTS', KEYS[1]),
  redis.call('HGET', KEYS[2], ARGV[1]),
  redis.call('HGET', KEYS[3], ARGV[1]),
}
return append_records(out, KEYS[4], ARGV[2])
"#,
    ),

    // KEYS: new session, epochs, versions, user's session set, displaced sessions...
    // ARGV: user, expected epoch, expected version ('' = unchecked), new id,
    //       session key prefix, session expiry, set expiry, the displaced
    //       sessions' revocation and "displaced by" group, the new session, the
    //       user's epoch record if it has none, the anchor for its creation (ms).
    // Returns 0 stored, 1 the id exists, 2 the epoch moved, 3 the version moved.
    // The session is stored with its user's epoch record (`ensure_epoch`).
    insert_session: Lua::new(
        "insert_session",
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if epoch_of(rec) ~= ARGV[2] then return 2 end
if ARGV[3] ~= '' and (redis.call('HGET', KEYS[3], ARGV[1]) or '0') ~= ARGV[3] then
  return 3
end
for i = 5, #KEYS do
  local s = redis.call('GET', KEYS[i])
  if s and s_user(s) == ARGV[1] and s_live(s) then
    s = string.sub(s, 1, S_RR) .. ARGV[8] .. string.sub(s, S_RR + 10)
    redis.call('SET', KEYS[i], s_with_group(s, 2, ARGV[9]), 'KEEPTTL')
  end
end
ensure_epoch(KEYS[2], ARGV[1], rec, ARGV[11], ARGV[12])
redis.call('SET', KEYS[1], ARGV[10], 'PXAT', ARGV[6])
redis.call('SADD', KEYS[4], ARGV[4])
extend(KEYS[4], tonumber(ARGV[7]))
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
-- Members whose session expired are dropped a few at a time.
for _, id in ipairs(redis.call('SRANDMEMBER', KEYS[4], 3)) do
  if redis.call('EXISTS', ARGV[5] .. id) == 0 then redis.call('SREM', KEYS[4], id) end
end
return 0
"#,
    ),

    // KEYS: session, versions.
    // ARGV: expected verifier hash, issued at (8 bytes), expiry, new verifier
    //       hash, idle deadline + absolute deadline + issued at + privileges
    //       (32 bytes), the policy group.
    // Returns 1 rotated, 0 not (unknown, revoked, or another verifier).
    rotate_session: Lua::new(
        "rotate_session",
        r#"
local s = redis.call('GET', KEYS[1])
if not s or not s_live(s) or string.sub(s, S_VH + 1, S_VH + 32) ~= ARGV[1] then return 0 end
local ls = string.sub(s, S_LS + 1, S_LS + 8)
if s_time(ARGV[2], 0) > s_time(s, S_LS) then ls = ARGV[2] end
s = string.sub(s, 1, S_VH) .. ARGV[4] .. string.sub(s, S_E + 1, S_LS) .. ls .. ARGV[5]
  .. string.sub(s, S_RR + 1)
redis.call('SET', KEYS[1], s_with_group(s, 1, ARGV[6]), 'PXAT', ARGV[3])
redis.call('HINCRBY', KEYS[2], s_user(s), 1)
return 1
"#,
    ),

    // KEYS: session. ARGV: seen at, idle deadline (8 bytes each), expiry.
    touch_session: Lua::new(
        "touch_session",
        r#"
local s = redis.call('GET', KEYS[1])
if not s or not s_live(s) then return 0 end
if s_time(ARGV[2], 0) <= s_time(s, S_IDL) then return 0 end
local ls = string.sub(s, S_LS + 1, S_LS + 8)
if s_time(ARGV[1], 0) > s_time(s, S_LS) then ls = ARGV[1] end
redis.call('SETRANGE', KEYS[1], S_LS, ls .. ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
"#,
    ),

    // KEYS: session, versions. ARGV: the revocation (9 bytes).
    // Returns 1 if this call revoked it. The key's expiry is left alone: the
    // idle deadline is frozen, and so is the tombstone's end.
    revoke_session: Lua::new(
        "revoke_session",
        r#"
local s = redis.call('GET', KEYS[1])
if not s or not s_live(s) then return 0 end
redis.call('SETRANGE', KEYS[1], S_RR, ARGV[1])
redis.call('HINCRBY', KEYS[2], s_user(s), 1)
return 1
"#,
    ),

    // KEYS: epochs, versions[, session to keep].
    // ARGV: user, expected epoch record ('' = none), new record, old epoch, new
    //       epoch (8 bytes each, as the session holds them).
    // Returns 1 bumped, 0 the record changed since it was read (retry).
    bump_epoch: Lua::new(
        "bump_epoch",
        r#"
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if KEYS[3] then
  local s = redis.call('GET', KEYS[3])
  if s and s_user(s) == ARGV[1] and s_live(s) and string.sub(s, S_E + 1, S_E + 8) == ARGV[4] then
    redis.call('SETRANGE', KEYS[3], S_E, ARGV[5])
  end
end
return 1
"#,
    ),

    // KEYS: credentials, epochs. ARGV: user. Returns {credentials, epoch record}.
    get_user: Lua::new(
        "get_user",
        r#"
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"#,
    ),

    // KEYS: credentials, epochs, versions.
    // ARGV: user, expected epoch record, new epoch record, new credentials.
    // Returns 1 done, 0 the epoch changed (retry), 2 no such user.
    set_password: Lua::new(
        "set_password",
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 2 end
if (redis.call('HGET', KEYS[2], ARGV[1]) or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
return 1
"#,
    ),

    // KEYS: credentials. ARGV: user, credentials. Returns 1 if added.
    add_credentials: Lua::new(
        "add_credentials",
        r#"
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
"#,
    ),

    // KEYS: username. ARGV: user. Makes the reservation permanent if still ours.
    claim_name: Lua::new(
        "claim_name",
        r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PERSIST', KEYS[1])
return 1
"#,
    ),

    // KEYS: username. ARGV: user. Drops the reservation if it is ours.
    release_name: Lua::new(
        "release_name",
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    ),

    // KEYS: credentials. ARGV: user, credentials. Drops them if they are ours.
    release_credentials: Lua::new(
        "release_credentials",
        r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#,
    ),

    // KEYS: refresh token, its session.
    // ARGV: expiry without a session, retention, earliest expiry, pairs...
    // Returns 0 stored, 1 the id exists. It expires with its session's absolute
    // deadline plus retention.
    insert_refresh: Lua::new(
        "insert_refresh",
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
redis.call('HSET', KEYS[1], unpack(rest(4)))
local s = redis.call('GET', KEYS[2])
local at = tonumber(ARGV[1])
if s then at = s_time(s, S_ABS) + tonumber(ARGV[2]) end
if at < tonumber(ARGV[3]) then at = tonumber(ARGV[3]) end
redis.call('PEXPIREAT', KEYS[1], int(at))
return 0
"#,
    ),

    // KEYS: refresh token, successor, successor's session.
    // ARGV: rotated at, successor id, sealed successor, expiry without a session,
    //       retention, earliest expiry, successor's pairs...
    // Returns {0} rotated, {1} the successor exists, {2} unknown token,
    // {3, at, successor, sealed} already rotated.
    rotate_refresh: Lua::new(
        "rotate_refresh",
        r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return {1} end
local cur = redis.call('HMGET', KEYS[1], 'vh', 'rt', 'rs', 'rx')
if not cur[1] then return {2} end
if cur[2] then return {3, cur[2], cur[3], cur[4]} end
redis.call('HSET', KEYS[1], 'rt', ARGV[1], 'rs', ARGV[2], 'rx', ARGV[3])
redis.call('HSET', KEYS[2], unpack(rest(7)))
local s = redis.call('GET', KEYS[3])
local at = tonumber(ARGV[4])
if s then at = s_time(s, S_ABS) + tonumber(ARGV[5]) end
if at < tonumber(ARGV[6]) then at = tonumber(ARGV[6]) end
redis.call('PEXPIREAT', KEYS[2], int(at))
return {0}
"#,
    ),

    // KEYS: API token, epochs, user's API-token set.
    // ARGV: user, expected epoch, id, expiry, the user's epoch record if it has
    //       none, the anchor for its creation (ms), pairs...
    // Returns 0 stored, 1 the id exists, 2 the epoch moved. The token is stored
    // with its user's epoch record (`ensure_epoch`).
    insert_api_token: Lua::new(
        "insert_api_token",
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if epoch_of(rec) ~= ARGV[2] then return 2 end
ensure_epoch(KEYS[2], ARGV[1], rec, ARGV[5], ARGV[6])
redis.call('HSET', KEYS[1], unpack(rest(7)))
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
extend(KEYS[3], tonumber(ARGV[4]))
return 0
"#,
    ),

    // KEYS: API token. ARGV: used at.
    touch_api_token: Lua::new(
        "touch_api_token",
        r#"
local t = redis.call('HMGET', KEYS[1], 'u', 'rr', 'lu')
if not t[1] or t[2] then return 0 end
if t[3] and tonumber(t[3]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'lu', ARGV[1])
return 1
"#,
    ),

    // KEYS: API token. ARGV: reason tag, at. Returns 1 if this call revoked it.
    revoke_api_token: Lua::new(
        "revoke_api_token",
        r#"
local t = redis.call('HMGET', KEYS[1], 'u', 'rr')
if not t[1] or t[2] then return 0 end
redis.call('HSET', KEYS[1], 'rr', ARGV[1], 'ra', ARGV[2])
return 1
"#,
    ),

    // KEYS: a user's set of API-token ids. ARGV: the records' key prefix.
    // Returns {id, fields, id, fields...} for the records that still exist.
    list_records: Lua::new(
        "list_records",
        r#"
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local r = redis.call('HGETALL', ARGV[1] .. id)
  if #r > 0 then
    out[#out + 1] = id
    out[#out + 1] = r
  end
end
return out
"#,
    ),

    // KEYS: a user's set of session ids. ARGV: the sessions' key prefix.
    // Returns {id, record, id, record...} for the sessions that still exist.
    list_sessions: Lua::new(
        "list_sessions",
        r#"
return append_records({}, KEYS[1], ARGV[1])
"#,
    ),

    // KEYS: access, epochs. ARGV: user, access, the epoch record to create.
    // Increments the privilege count (the record's last field); returns the
    // user's epoch record after the change.
    set_access: Lua::new(
        "set_access",
        r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if rec then
  local head, n = string.match(rec, '^(.*|)(%d+)$')
  rec = head .. int(tonumber(n) + 1)
else
  rec = ARGV[3]
end
redis.call('HSET', KEYS[2], ARGV[1], rec)
return rec
"#,
    ),

    // KEYS: sequence, data, ids, by time[, the user's index]. ARGV: at, event.
    // Returns the event's id.
    append_event: Lua::new(
        "append_event",
        r#"
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, ARGV[2])
redis.call('ZADD', KEYS[3], id, id)
redis.call('ZADD', KEYS[4], ARGV[1], id)
if KEYS[5] then redis.call('ZADD', KEYS[5], id, id) end
return id
"#,
    ),

    // KEYS: an index of ids (all, or a user's), data.
    // ARGV: newest first ('1'/'0'), exclusive bound ('' = none), since ('' = none),
    //       how many to find, how many to look at.
    // Returns {exhausted, last id looked at, {id, event, id, event...}}.
    list_events: Lua::new(
        "list_events",
        r#"
local desc = ARGV[1] == '1'
local bound = ARGV[2]
local since = nil
if ARGV[3] ~= '' then since = tonumber(ARGV[3]) end
local want = tonumber(ARGV[4])
local budget = tonumber(ARGV[5])
local out = {}
local found, looked, done = 0, 0, 0
while found < want and looked < budget do
  local ids
  if desc then
    local hi = '+inf'
    if bound ~= '' then hi = '(' .. bound end
    ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], hi, '-inf', 'LIMIT', 0, 100)
  else
    local lo = '-inf'
    if bound ~= '' then lo = '(' .. bound end
    ids = redis.call('ZRANGEBYSCORE', KEYS[1], lo, '+inf', 'LIMIT', 0, 100)
  end
  if #ids == 0 then done = 1 break end
  for _, id in ipairs(ids) do
    looked = looked + 1
    bound = id
    local e = redis.call('HGET', KEYS[2], id)
    if e and (since == nil or tonumber(string.match(e, '^(-?%d+)')) >= since) then
      out[#out + 1] = id
      out[#out + 1] = e
      found = found + 1
      if found >= want then break end
    end
  end
end
return {done, bound, out}
"#,
    ),

    // KEYS: by time, data, ids. ARGV: cutoff, per-user index prefix, batch size.
    // Deletes up to a batch of events recorded before the cutoff; returns how many.
    purge_events: Lua::new(
        "purge_events",
        r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local e = redis.call('HGET', KEYS[2], id)
  if e then
    local user = string.match(e, '^[^\n]*\n=([^\n]*)\n')
    if user then redis.call('ZREM', ARGV[2] .. user, id) end
  end
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"#,
    ),

    // KEYS: session, its user's set. ARGV: cutoff, user, id.
    // Deletes the session if its idle deadline is at or before the cutoff.
    purge_session: Lua::new(
        "purge_session",
        r#"
local s = redis.call('GET', KEYS[1])
if not s or s_user(s) ~= ARGV[2] or s_time(s, S_IDL) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[3])
return 1
"#,
    ),

    // KEYS: refresh token, its session. ARGV: cutoff, session id.
    // Deletes the token if its session is gone or ended by the cutoff.
    purge_refresh: Lua::new(
        "purge_refresh",
        r#"
if redis.call('HGET', KEYS[1], 's') ~= ARGV[2] then return 0 end
local s = redis.call('GET', KEYS[2])
if s and s_time(s, S_IDL) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
"#,
    ),

    // KEYS: API token, epochs, its user's set. ARGV: cutoff, user, id.
    // Deletes the token if it ended by the cutoff: revoked, expired, or below the
    // user's API-token floor (ended when the floor was raised).
    purge_api_token: Lua::new(
        "purge_api_token",
        r#"
local t = redis.call('HMGET', KEYS[1], 'u', 'e', 'x', 'ra')
if t[1] ~= ARGV[2] then return 0 end
local ends = tonumber(t[3])
if t[4] and tonumber(t[4]) < ends then ends = tonumber(t[4]) end
local rec = redis.call('HGET', KEYS[2], ARGV[2])
if rec then
  local floor, bump = string.match(rec, '^%d+|(%d+)|([^|]*)|')
  if tonumber(t[2]) < tonumber(floor) then
    local at = tonumber(string.match(bump, ':(-?%d+)$') or '0')
    if at < ends then ends = at end
  end
end
if ends > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[3])
return 1
"#,
    ),

    // KEYS: the signing-keys document. ARGV: '1' if a current value is expected,
    // the expected value, the new value. Returns 1 if swapped.
    swap_signing_keys: Lua::new(
        "swap_signing_keys",
        r#"
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"#,
    ),
    // KEYS: a throttle record (`failures:last:keep`, ms of the engine's clock).
    // ARGV: now, create ('1' or '0'), free, delay, max delay, window.
    // Returns {0, failures} counted, {1, retry at} throttled, {2, 0} unknown.
    // The wait is `ThrottleLimit::wait`: delay * 2^(failures - free), at most
    // the max delay (exact in doubles: both stay far below 2^53 ms).
    throttle_attempt: Lua::bare(
        "throttle_attempt",
        format!(
            r#"{THROTTLE_PRELUDE}
local now = tonumber(ARGV[1])
local n, last, keep = read(now)
if not n then
  if ARGV[2] == '0' then return {{2, 0}} end
  n, last, keep = 0, 0, 0
end
local free = tonumber(ARGV[3])
if n >= free then
  local wait = tonumber(ARGV[4]) * 2 ^ (n - free)
  local max = tonumber(ARGV[5])
  if wait > max then wait = max end
  if last + wait > now then return {{1, last + wait}} end
end
n = n + 1
local until_ = now + tonumber(ARGV[6])
if keep > until_ then until_ = keep end
write(n, now, until_, now)
return {{0, n}}
"#
        ),
    ),

    // KEYS: a throttle record. ARGV: 'f' (forget), 'r' (release one failure) or
    // 't' (trust: no failures, kept until ARGV[3]); now; until.
    throttle_settle: Lua::bare(
        "throttle_settle",
        format!(
            r#"{THROTTLE_PRELUDE}
if ARGV[1] == 'f' then
  redis.call('DEL', KEYS[1])
  return 0
end
local now = tonumber(ARGV[2])
if ARGV[1] == 't' then
  local until_ = tonumber(ARGV[3])
  if until_ <= now then
    redis.call('DEL', KEYS[1])
  else
    write(0, now, until_, now)
  end
  return 0
end
local n, last, keep = read(now)
if n and n > 0 then write(n - 1, last, keep, now) end
return 0
"#
        ),
    ),
});
