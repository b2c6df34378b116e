//! How records are written in Redis and read back.
//!
//! Records are hashes with short field names; numbers are decimal strings (so the
//! Lua scripts can compare them), hashes of verifiers are their 32 raw bytes, and
//! optional fields are absent when `None`.
//!
//! | session field | meaning |
//! |---|---|
//! | `u` | user id |
//! | `vh` | verifier hash |
//! | `e` | epoch |
//! | `c`, `ls`, `ti` | created, last seen, token issued (ms) |
//! | `idl`, `abs` | idle and absolute deadlines (ms) |
//! | `rr`, `ra` | revocation reason tag and time |
//! | `p` | profile |
//! | `pg` | the user's privilege count the token was issued under |
//! | `el` | elevated until |
//! | `pv`, `pu`, `pr` | the replaced token: verifier hash, valid until, reason tag |
//! | `d`, `dua`…, `dip` | displaced by (flag, user agent, IP) |
//! | `cb` | anti-CSRF basis |
//! | `ua`, `ua1`…, `ip` | the client (the user agent in pieces of at most 64 bytes, so the hash stays compact) |
//!
//! Refresh tokens: `u`, `vh`, `s` (session id), `c`, and once rotated `rt` (at),
//! `rs` (successor id), `rx` (sealed successor). API tokens: `u`, `vh`, `n`
//! (name), `e`, `c`, `x` (expires), `lu` (last used), `rr`, `ra`.
//!
//! A [`UserEpoch`] is one string, `epoch|api_token_floor|api_token_bump|last_bump|
//! earlier…|privileges`, each bump `reason_tag:ms` or empty: it starts with the
//! epoch number and ends with the privilege count, so scripts can read the one and
//! increment the other.

use std::net::IpAddr;

use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    ApiTokenRecord, AuditEvent, ClientInfo, EARLIER_BUMPS, EventKind, PasswordHash, ProfileName,
    Reason, RefreshState, ReplacedToken, Revocation, Rotation, SealedSecret, SessionRecord,
    SessionState, StoreError, StoreResult, Timestamp, TokenId, UserAccess, UserEpoch, UserId,
};

/// Field-value pairs to write.
pub(crate) type Pairs = Vec<(&'static str, Vec<u8>)>;

pub(crate) fn ms(t: Timestamp) -> String {
    t.as_millis().to_string()
}

fn put(out: &mut Pairs, field: &'static str, value: impl Into<Vec<u8>>) {
    out.push((field, value.into()));
}

/// The fields of a stored session (its id is in its key).
pub(crate) fn session_fields(rec: &SessionRecord) -> Pairs {
    let s = &rec.state;
    let mut out = Vec::with_capacity(24);
    put(&mut out, "u", s.user_id.as_str());
    put(&mut out, "vh", s.verifier_hash.as_bytes().as_slice());
    put(&mut out, "e", s.epoch.to_string());
    put(&mut out, "c", ms(s.created_at));
    put(&mut out, "ls", ms(s.last_seen_at));
    put(&mut out, "idl", ms(s.idle_deadline));
    put(&mut out, "abs", ms(s.absolute_deadline));
    put(&mut out, "ti", ms(s.token_issued_at));
    if let Some(r) = s.revoked {
        put(&mut out, "rr", r.reason.tag().to_string());
        put(&mut out, "ra", ms(r.at));
    }
    if let Some(p) = &s.profile {
        put(&mut out, "p", p.as_str());
    }
    put(&mut out, "pg", s.privileges.to_string());
    if let Some(t) = s.elevated_until {
        put(&mut out, "el", ms(t));
    }
    if let Some(p) = &s.previous {
        put(&mut out, "pv", p.verifier_hash.as_bytes().as_slice());
        put(&mut out, "pu", ms(p.valid_until));
        put(&mut out, "pr", p.reason.tag().to_string());
    }
    if let Some(d) = &s.displaced_by {
        out.extend(displaced_by_fields(d));
    }
    if let Some(h) = &s.csrf_basis {
        put(&mut out, "cb", h.as_bytes().as_slice());
    }
    client_fields(&mut out, &rec.client, &UA_FIELDS, "ip");
    out
}

/// The fields that mark a session displaced by `client`.
pub(crate) fn displaced_by_fields(client: &ClientInfo) -> Pairs {
    let mut out = vec![("d", b"1".to_vec())];
    client_fields(&mut out, client, &DISPLACED_UA_FIELDS, "dip");
    out
}

/// The fields a user agent is split over: Redis keeps a hash compact (a
/// listpack, less than half the memory) only while every value is at most 64
/// bytes, and a user agent may be 256.
const UA_FIELDS: [&str; 6] = ["ua", "ua1", "ua2", "ua3", "ua4", "ua5"];
const DISPLACED_UA_FIELDS: [&str; 6] = ["dua", "dua1", "dua2", "dua3", "dua4", "dua5"];

/// The longest value of a compact hash.
const CHUNK: usize = 64;

fn client_fields(out: &mut Pairs, c: &ClientInfo, ua: &[&'static str; 6], ip: &'static str) {
    if let Some(mut rest) = c.user_agent() {
        for (i, field) in ua.iter().enumerate() {
            let mut end = rest.len().min(CHUNK);
            if i == ua.len() - 1 {
                end = rest.len();
            }
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            put(out, field, &rest[..end]);
            rest = &rest[end..];
            if rest.is_empty() {
                break;
            }
        }
    }
    if let Some(addr) = c.ip() {
        put(out, ip, addr.to_string());
    }
}

/// A hash read back: its field-value pairs and what it is, for error messages.
#[derive(Debug)]
pub(crate) struct Hash {
    what: String,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Hash {
    pub(crate) fn new(what: String, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        Hash { what, pairs }
    }

    fn corrupt(&self, field: &str, problem: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt(format!("{} field {field}: {problem}", self.what))
    }

    fn get(&self, field: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == field.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    fn text(&self, field: &str) -> StoreResult<Option<&str>> {
        self.get(field)
            .map(|v| std::str::from_utf8(v).map_err(|e| self.corrupt(field, e)))
            .transpose()
    }

    fn required_text(&self, field: &str) -> StoreResult<&str> {
        self.text(field)?
            .ok_or_else(|| self.corrupt(field, "missing"))
    }

    fn number<T: std::str::FromStr>(&self, field: &str) -> StoreResult<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.text(field)?
            .map(|s| s.parse::<T>().map_err(|e| self.corrupt(field, e)))
            .transpose()
    }

    fn time(&self, field: &str) -> StoreResult<Option<Timestamp>> {
        Ok(self.number::<i64>(field)?.map(Timestamp::from_millis))
    }

    fn required_time(&self, field: &str) -> StoreResult<Timestamp> {
        self.time(field)?
            .ok_or_else(|| self.corrupt(field, "missing"))
    }

    fn reason(&self, field: &str) -> StoreResult<Option<Reason>> {
        self.number::<u8>(field)?
            .map(|t| Reason::from_tag(t).ok_or_else(|| self.corrupt(field, "unknown reason")))
            .transpose()
    }

    fn revocation(&self, reason: &str, at: &str) -> StoreResult<Option<Revocation>> {
        match (self.reason(reason)?, self.time(at)?) {
            (Some(reason), Some(at)) => Ok(Some(Revocation { reason, at })),
            (None, None) => Ok(None),
            _ => Err(self.corrupt(reason, "half a revocation")),
        }
    }

    fn hash32(&self, field: &str) -> StoreResult<Option<VerifierHash>> {
        self.bytes32(field).map(|b| b.map(VerifierHash::from_bytes))
    }

    fn bytes32(&self, field: &str) -> StoreResult<Option<[u8; 32]>> {
        self.get(field)
            .map(|v| <[u8; 32]>::try_from(v).map_err(|_| self.corrupt(field, "not 32 bytes")))
            .transpose()
    }

    fn user(&self) -> StoreResult<UserId> {
        UserId::new(self.required_text("u")?).map_err(|e| self.corrupt("u", e))
    }

    fn token_id(&self, field: &str) -> StoreResult<Option<TokenId>> {
        self.text(field)?
            .map(|s| TokenId::parse(s).map_err(|e| self.corrupt(field, e)))
            .transpose()
    }

    fn client(&self, ua: &[&'static str; 6], ip: &str) -> StoreResult<ClientInfo> {
        let addr = self
            .text(ip)?
            .map(|s| s.parse::<IpAddr>().map_err(|e| self.corrupt(ip, e)))
            .transpose()?;
        let agent = match self.get(ua[0]) {
            None => None,
            Some(first) => {
                let mut bytes = first.to_vec();
                for field in &ua[1..] {
                    match self.get(field) {
                        Some(more) => bytes.extend_from_slice(more),
                        None => break,
                    }
                }
                Some(String::from_utf8(bytes).map_err(|e| self.corrupt(ua[0], e))?)
            }
        };
        Ok(ClientInfo::new(agent.as_deref(), addr))
    }
}

/// A session read back from its hash.
pub(crate) fn decode_session(id: TokenId, h: &Hash) -> StoreResult<SessionRecord> {
    let previous = match h.hash32("pv")? {
        Some(verifier_hash) => Some(ReplacedToken {
            verifier_hash,
            valid_until: h.required_time("pu")?,
            reason: h.reason("pr")?.ok_or_else(|| h.corrupt("pr", "missing"))?,
        }),
        None => None,
    };
    let profile = h
        .text("p")?
        .map(|p| ProfileName::new(p).map_err(|e| h.corrupt("p", e)))
        .transpose()?;
    let displaced_by = match h.get("d") {
        Some(_) => Some(Box::new(h.client(&DISPLACED_UA_FIELDS, "dip")?)),
        None => None,
    };
    let state = SessionState {
        id,
        verifier_hash: h.hash32("vh")?.ok_or_else(|| h.corrupt("vh", "missing"))?,
        user_id: h.user()?,
        epoch: h.number("e")?.ok_or_else(|| h.corrupt("e", "missing"))?,
        created_at: h.required_time("c")?,
        last_seen_at: h.required_time("ls")?,
        idle_deadline: h.required_time("idl")?,
        absolute_deadline: h.required_time("abs")?,
        revoked: h.revocation("rr", "ra")?,
        profile,
        privileges: h.number("pg")?.ok_or_else(|| h.corrupt("pg", "missing"))?,
        token_issued_at: h.required_time("ti")?,
        elevated_until: h.time("el")?,
        previous,
        displaced_by,
        csrf_basis: h.hash32("cb")?,
    };
    Ok(SessionRecord {
        state,
        client: h.client(&UA_FIELDS, "ip")?,
    })
}

/// The fields of a refresh token (its rotation, if any, included).
pub(crate) fn refresh_fields(r: &RefreshState) -> Pairs {
    let mut out = Vec::with_capacity(7);
    put(&mut out, "u", r.user_id.as_str());
    put(&mut out, "vh", r.verifier_hash.as_bytes().as_slice());
    put(&mut out, "s", r.session_id.to_string());
    put(&mut out, "c", ms(r.created_at));
    if let Some(rot) = &r.rotated {
        out.extend(rotation_fields(rot));
    }
    out
}

/// The fields a rotation sets on the rotated refresh token.
pub(crate) fn rotation_fields(rot: &Rotation) -> Pairs {
    vec![
        ("rt", ms(rot.at).into_bytes()),
        ("rs", rot.successor.to_string().into_bytes()),
        ("rx", rot.sealed_successor.0.to_vec()),
    ]
}

pub(crate) fn decode_refresh(id: TokenId, h: &Hash) -> StoreResult<RefreshState> {
    let rotated = match h.time("rt")? {
        Some(at) => Some(Rotation {
            at,
            successor: h
                .token_id("rs")?
                .ok_or_else(|| h.corrupt("rs", "missing"))?,
            sealed_successor: SealedSecret(
                h.bytes32("rx")?.ok_or_else(|| h.corrupt("rx", "missing"))?,
            ),
        }),
        None => None,
    };
    Ok(RefreshState {
        id,
        verifier_hash: h.hash32("vh")?.ok_or_else(|| h.corrupt("vh", "missing"))?,
        session_id: h.token_id("s")?.ok_or_else(|| h.corrupt("s", "missing"))?,
        user_id: h.user()?,
        created_at: h.required_time("c")?,
        rotated,
    })
}

/// A rotation as the rotate script returns it: at, successor id, sealed successor.
pub(crate) fn decode_rotation(at: &[u8], successor: &[u8], sealed: &[u8]) -> StoreResult<Rotation> {
    let h = Hash::new(
        "refresh token".into(),
        vec![
            (b"rt".to_vec(), at.to_vec()),
            (b"rs".to_vec(), successor.to_vec()),
            (b"rx".to_vec(), sealed.to_vec()),
        ],
    );
    Ok(Rotation {
        at: h.required_time("rt")?,
        successor: h
            .token_id("rs")?
            .ok_or_else(|| h.corrupt("rs", "missing"))?,
        sealed_successor: SealedSecret(h.bytes32("rx")?.ok_or_else(|| h.corrupt("rx", "missing"))?),
    })
}

pub(crate) fn api_token_fields(t: &ApiTokenRecord) -> Pairs {
    let mut out = Vec::with_capacity(9);
    put(&mut out, "u", t.user_id.as_str());
    put(&mut out, "vh", t.verifier_hash.as_bytes().as_slice());
    put(&mut out, "n", t.name.as_str());
    put(&mut out, "e", t.epoch.to_string());
    put(&mut out, "c", ms(t.created_at));
    put(&mut out, "x", ms(t.expires_at));
    if let Some(lu) = t.last_used_at {
        put(&mut out, "lu", ms(lu));
    }
    if let Some(r) = t.revoked {
        put(&mut out, "rr", r.reason.tag().to_string());
        put(&mut out, "ra", ms(r.at));
    }
    out
}

pub(crate) fn decode_api_token(id: TokenId, h: &Hash) -> StoreResult<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id,
        verifier_hash: h.hash32("vh")?.ok_or_else(|| h.corrupt("vh", "missing"))?,
        user_id: h.user()?,
        name: h.required_text("n")?.to_owned(),
        epoch: h.number("e")?.ok_or_else(|| h.corrupt("e", "missing"))?,
        created_at: h.required_time("c")?,
        expires_at: h.required_time("x")?,
        last_used_at: h.time("lu")?,
        revoked: h.revocation("rr", "ra")?,
    })
}

fn encode_revocation(r: Option<Revocation>) -> String {
    r.map(|r| format!("{}:{}", r.reason.tag(), r.at.as_millis()))
        .unwrap_or_default()
}

fn decode_revocation(s: &str) -> Option<Option<Revocation>> {
    if s.is_empty() {
        return Some(None);
    }
    let (tag, at) = s.split_once(':')?;
    Some(Some(Revocation {
        reason: Reason::from_tag(tag.parse().ok()?)?,
        at: Timestamp::from_millis(at.parse().ok()?),
    }))
}

/// A user's epoch as one string (see the module docs).
pub(crate) fn encode_epoch(e: &UserEpoch) -> String {
    let mut out = format!(
        "{}|{}|{}|{}",
        e.epoch,
        e.api_token_floor,
        encode_revocation(e.api_token_bump),
        encode_revocation(e.last_bump)
    );
    for b in e.earlier_bumps {
        out.push('|');
        out.push_str(&encode_revocation(b));
    }
    out.push('|');
    out.push_str(&e.privileges.to_string());
    out
}

/// A user's epoch read back; `None` (never written) is the default epoch.
pub(crate) fn decode_epoch(user: &UserId, raw: Option<&[u8]>) -> StoreResult<UserEpoch> {
    let Some(raw) = raw else {
        return Ok(UserEpoch::default());
    };
    let corrupt = || {
        StoreError::Corrupt(format!(
            "the epoch record of user {user:?} is malformed: {:?}",
            String::from_utf8_lossy(raw)
        ))
    };
    let text = std::str::from_utf8(raw).map_err(|_| corrupt())?;
    let parts: Vec<&str> = text.split('|').collect();
    if parts.len() != 5 + EARLIER_BUMPS {
        return Err(corrupt());
    }
    let mut earlier_bumps = [None; EARLIER_BUMPS];
    for (slot, part) in earlier_bumps.iter_mut().zip(&parts[4..4 + EARLIER_BUMPS]) {
        *slot = decode_revocation(part).ok_or_else(corrupt)?;
    }
    Ok(UserEpoch {
        epoch: parts[0].parse().map_err(|_| corrupt())?,
        api_token_floor: parts[1].parse().map_err(|_| corrupt())?,
        api_token_bump: decode_revocation(parts[2]).ok_or_else(corrupt)?,
        last_bump: decode_revocation(parts[3]).ok_or_else(corrupt)?,
        earlier_bumps,
        privileges: parts[4 + EARLIER_BUMPS].parse().map_err(|_| corrupt())?,
    })
}

/// Profile and roles: `profile|role,role` (neither may hold `|` or `,`).
pub(crate) fn encode_access(a: &UserAccess) -> String {
    format!(
        "{}|{}",
        a.profile.as_ref().map_or("", ProfileName::as_str),
        a.roles.join(",")
    )
}

pub(crate) fn decode_access(user: &UserId, raw: Option<&[u8]>) -> StoreResult<UserAccess> {
    let Some(raw) = raw else {
        return Ok(UserAccess::default());
    };
    let corrupt =
        || StoreError::Corrupt(format!("the access record of user {user:?} is malformed"));
    let text = std::str::from_utf8(raw).map_err(|_| corrupt())?;
    let (profile, roles) = text.split_once('|').ok_or_else(corrupt)?;
    let profile = (!profile.is_empty())
        .then(|| ProfileName::new(profile))
        .transpose()
        .map_err(|_| corrupt())?;
    let roles = if roles.is_empty() {
        Vec::new()
    } else {
        roles.split(',').map(str::to_owned).collect()
    };
    UserAccess::new(profile, roles).map_err(|_| corrupt())
}

/// Credentials: `<username length>:<username><PHC hash>`.
pub(crate) fn encode_credentials(username: &str, hash: &PasswordHash) -> String {
    format!("{}:{username}{}", username.len(), hash.as_phc())
}

pub(crate) fn decode_credentials(user: &UserId, raw: &[u8]) -> StoreResult<(String, PasswordHash)> {
    let corrupt = || StoreError::Corrupt(format!("the credentials of user {user:?} are malformed"));
    let text = std::str::from_utf8(raw).map_err(|_| corrupt())?;
    let (len, rest) = text.split_once(':').ok_or_else(corrupt)?;
    let len: usize = len.parse().map_err(|_| corrupt())?;
    if !rest.is_char_boundary(len.min(rest.len())) || len > rest.len() {
        return Err(corrupt());
    }
    let (name, phc) = rest.split_at(len);
    Ok((name.to_owned(), PasswordHash::from_phc(phc.to_owned())))
}

fn opt(s: Option<&str>) -> String {
    s.map(|s| format!("={s}")).unwrap_or_default()
}

/// An audit event as one string, one field a line (no field holds a control
/// character): `at`, user, kind tag, reason tag, session, IP, user agent; absent
/// optional text is an empty line, present text starts with `=`. `at` is first
/// and the user second, for the scripts.
pub(crate) fn encode_event(e: &AuditEvent) -> String {
    let user = e.user.as_ref().map(UserId::as_str);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}",
        e.at.as_millis(),
        opt(user),
        e.kind.tag(),
        e.reason.map(|r| r.tag().to_string()).unwrap_or_default(),
        e.session.map(|s| s.to_string()).unwrap_or_default(),
        e.client.ip().map(|ip| ip.to_string()).unwrap_or_default(),
        opt(e.client.user_agent()),
    )
}

pub(crate) fn decode_event(id: u64, raw: &[u8]) -> StoreResult<AuditEvent> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("audit event {id}: {what}"));
    let text = std::str::from_utf8(raw).map_err(|_| corrupt("not UTF-8"))?;
    let f: Vec<&str> = text.split('\n').collect();
    let [at, user, kind, reason, session, ip, ua] = f[..] else {
        return Err(corrupt("wrong number of fields"));
    };
    let optional = |s: &str| -> StoreResult<Option<String>> {
        match s.strip_prefix('=') {
            Some(v) => Ok(Some(v.to_owned())),
            None if s.is_empty() => Ok(None),
            None => Err(corrupt("malformed optional field")),
        }
    };
    let tag = |s: &str, what: &str| -> StoreResult<u8> { s.parse().map_err(|_| corrupt(what)) };
    Ok(AuditEvent {
        id,
        at: Timestamp::from_millis(at.parse().map_err(|_| corrupt("at"))?),
        kind: EventKind::from_tag(tag(kind, "kind")?).ok_or_else(|| corrupt("kind"))?,
        user: optional(user)?
            .map(|u| UserId::new(&u))
            .transpose()
            .map_err(|_| corrupt("user"))?,
        session: (!session.is_empty())
            .then(|| TokenId::parse(session))
            .transpose()
            .map_err(|_| corrupt("session"))?,
        client: ClientInfo::new(
            optional(ua)?.as_deref(),
            (!ip.is_empty())
                .then(|| ip.parse::<IpAddr>())
                .transpose()
                .map_err(|_| corrupt("ip"))?,
        ),
        reason: (!reason.is_empty())
            .then(|| tag(reason, "reason"))
            .transpose()?
            .map(|t| Reason::from_tag(t).ok_or_else(|| corrupt("reason")))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(reason: Reason, ms: i64) -> Revocation {
        Revocation {
            reason,
            at: Timestamp::from_millis(ms),
        }
    }

    #[test]
    fn epochs_round_trip_and_start_with_their_number() {
        let user = UserId::new("alice").unwrap();
        let full = UserEpoch {
            epoch: 12,
            last_bump: Some(rev(Reason::PasswordChanged, 5)),
            earlier_bumps: [
                Some(rev(Reason::Displaced, 4)),
                None,
                Some(rev(Reason::LoggedOut, -1)),
            ],
            api_token_floor: 7,
            api_token_bump: Some(rev(Reason::RevokedByAdmin, 3)),
            privileges: 99,
        };
        for e in [UserEpoch::default(), full] {
            let s = encode_epoch(&e);
            assert!(s.starts_with(&format!("{}|", e.epoch)), "{s}");
            assert_eq!(decode_epoch(&user, Some(s.as_bytes())).unwrap(), e);
        }
        assert_eq!(decode_epoch(&user, None).unwrap(), UserEpoch::default());
        assert!(decode_epoch(&user, Some(b"1|2")).is_err());
    }

    #[test]
    fn sessions_round_trip_with_long_user_agents_in_small_pieces() {
        let user = UserId::new("alice").unwrap();
        for ua in ["", "short", &"é".repeat(200), &"a€𝄞".repeat(40)] {
            let mut rec = sample_session(&user);
            rec.client = ClientInfo::new(Some(ua), Some("192.0.2.1".parse().unwrap()));
            rec.state.displaced_by = Some(Box::new(rec.client.clone()));
            let fields = session_fields(&rec);
            assert!(fields.iter().all(|(_, v)| v.len() <= CHUNK), "{ua}");
            let pairs = fields
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect();
            let back = decode_session(rec.state.id, &Hash::new("s".into(), pairs)).unwrap();
            assert_eq!(back, rec);
        }
    }

    fn sample_session(user: &UserId) -> SessionRecord {
        let t = Timestamp::from_millis(1_000);
        SessionRecord {
            state: SessionState {
                id: TokenId::random_in(user.shard()),
                verifier_hash: VerifierHash::from_bytes([1; 32]),
                user_id: user.clone(),
                epoch: 3,
                created_at: t,
                last_seen_at: t,
                idle_deadline: t,
                absolute_deadline: t,
                revoked: Some(rev(Reason::Displaced, 2)),
                profile: Some(ProfileName::new("admin").unwrap()),
                privileges: 4,
                token_issued_at: t,
                elevated_until: Some(t),
                previous: Some(ReplacedToken {
                    verifier_hash: VerifierHash::from_bytes([2; 32]),
                    valid_until: t,
                    reason: Reason::Renewed,
                }),
                displaced_by: None,
                csrf_basis: Some(VerifierHash::from_bytes([3; 32])),
            },
            client: ClientInfo::default(),
        }
    }

    #[test]
    fn access_credentials_and_events_round_trip() {
        let user = UserId::new("alice").unwrap();
        let a = UserAccess::new(
            Some(ProfileName::new("admin").unwrap()),
            vec!["ops".into(), "billing:read".into()],
        )
        .unwrap();
        for a in [a, UserAccess::default()] {
            assert_eq!(
                decode_access(&user, Some(encode_access(&a).as_bytes())).unwrap(),
                a
            );
        }
        let hash = PasswordHash::from_phc("$argon2id$v=19$x".into());
        let c = encode_credentials("a:b|é", &hash);
        assert_eq!(
            decode_credentials(&user, c.as_bytes()).unwrap(),
            ("a:b|é".to_owned(), hash)
        );
        let e = AuditEvent {
            id: 0,
            at: Timestamp::from_millis(42),
            kind: EventKind::LoggedOut,
            user: Some(UserId::new("u|=1").unwrap()),
            session: Some(TokenId::random()),
            client: ClientInfo::new(Some(""), Some("::1".parse().unwrap())),
            reason: Some(Reason::LoggedOut),
        };
        let bare = AuditEvent {
            user: None,
            session: None,
            client: ClientInfo::default(),
            reason: None,
            ..e.clone()
        };
        for e in [e, bare] {
            let back = decode_event(7, encode_event(&e).as_bytes()).unwrap();
            assert_eq!(back, AuditEvent { id: 7, ..e });
        }
    }
}
