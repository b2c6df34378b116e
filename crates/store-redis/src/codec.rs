//! How records are written in Redis and read back.
//!
//! Refresh and API tokens are hashes with short field names; numbers are decimal
//! strings (so the Lua scripts can compare them), hashes of verifiers are their 32
//! raw bytes, and optional fields are absent when `None`.
//!
//! A session is not a hash but one packed string ([`encode_session`]): a check
//! reads it whole with one `GET`, and the scripts rewrite its fixed-offset fields
//! in place.
//!
//! Refresh tokens: `u`, `vh`, `s` (session id), `c`, `ci` (the client it was
//! issued to; absent for tokens stored before refresh tokens were bound to a
//! client), and once rotated `rt` (at),
//! `rs` (successor id), `rx` (sealed successor). API tokens: `u`, `vh`, `n`
//! (name), `e`, `c`, `x` (expires), `lu` (last used), `rr`, `ra`, and `g` when
//! inserted together with its user's epoch record ([`GUARDED`]).
//!
//! A [`UserEpoch`] is one string, `epoch|api_token_floor|api_token_bump|last_bump|
//! earlier…|anchor|privileges`, each bump `reason_tag:ms` or empty: it starts with
//! the epoch number and ends with the privilege count, so scripts can read the one
//! and increment the other. The [`Anchor`] (ms, or `*` while pending) says which
//! records the epoch record may judge; a record written before anchors existed has
//! no such field and judges every record.

use std::net::IpAddr;

use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    ApiTokenRecord, AuditEvent, ClientId, ClientInfo, EARLIER_BUMPS, EventKind, PasswordHash,
    ProfileName, Reason, RefreshState, ReplacedToken, Revocation, Rotation, SealedSecret,
    SessionRecord, SessionState, StoreError, StoreResult, Timestamp, TokenId, TokenRotation,
    UserAccess, UserEpoch, UserId,
};

/// Field-value pairs to write.
pub(crate) type Pairs = Vec<(&'static str, Vec<u8>)>;

pub(crate) fn ms(t: Timestamp) -> String {
    t.as_millis().to_string()
}

fn put(out: &mut Pairs, field: &'static str, value: impl Into<Vec<u8>>) {
    out.push((field, value.into()));
}

/// Offsets (from 0) in the fixed head of a packed session record (see
/// [`encode_session`]); the scripts are built with the same numbers.
pub(crate) mod session {
    /// The layout's version, the first byte of every record.
    pub(crate) const FORMAT: u8 = 1;
    /// The verifier hash (32 bytes).
    pub(crate) const VH: usize = 1;
    /// The epoch (u64).
    pub(crate) const E: usize = 33;
    /// Created at (i64 ms).
    pub(crate) const C: usize = 41;
    /// Last seen at.
    pub(crate) const LS: usize = 49;
    /// Idle deadline; `ABS`, `TI` and `PG` follow it, in that order.
    pub(crate) const IDL: usize = 57;
    /// Absolute deadline.
    pub(crate) const ABS: usize = 65;
    /// Token issued at.
    pub(crate) const TI: usize = 73;
    /// The privilege count (u64).
    pub(crate) const PG: usize = 81;
    /// Revocation: 0 while live, else 1 + the reason's tag; its time (i64 ms)
    /// follows, 0 while live.
    pub(crate) const RR: usize = 89;
    /// The user id's length (one byte), then the user id.
    pub(crate) const USER: usize = 98;
}

fn put_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_time(out: &mut Vec<u8>, t: Timestamp) {
    put_i64(out, t.as_millis());
}

/// A time as the session record holds it (8 bytes, big-endian).
pub(crate) fn time_bytes(t: Timestamp) -> [u8; 8] {
    t.as_millis().to_be_bytes()
}

/// An epoch as the session record holds it.
pub(crate) fn epoch_bytes(epoch: u64) -> [u8; 8] {
    epoch.to_be_bytes()
}

/// A revocation as the session record holds it (reason, then time).
pub(crate) fn revocation_bytes(r: Revocation) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(r.reason.tag() + 1);
    put_time(&mut out, r.at);
    out
}

/// Appends a group: its length (u16, big-endian), then what `body` writes.
fn put_group(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    body(out);
    let len = u16::try_from(out.len() - at - 2).expect("a session group is under 64 KiB");
    out[at..at + 2].copy_from_slice(&len.to_be_bytes());
}

const HAS_ELEVATED: u8 = 1;
const HAS_PREVIOUS: u8 = 2;
const HAS_CSRF: u8 = 4;
const HAS_PROFILE: u8 = 8;

/// The policy group (elevation, replaced token, anti-CSRF basis, profile):
/// everything a token rotation rewrites; empty when all are `None`.
fn put_policy(
    out: &mut Vec<u8>,
    elevated_until: Option<Timestamp>,
    previous: Option<&ReplacedToken>,
    csrf_basis: Option<&VerifierHash>,
    profile: Option<&ProfileName>,
) {
    put_group(out, |out| {
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let flags = flag(elevated_until.is_some(), HAS_ELEVATED)
            | flag(previous.is_some(), HAS_PREVIOUS)
            | flag(csrf_basis.is_some(), HAS_CSRF)
            | flag(profile.is_some(), HAS_PROFILE);
        if flags == 0 {
            return;
        }
        out.push(flags);
        if let Some(t) = elevated_until {
            put_time(out, t);
        }
        if let Some(p) = previous {
            out.extend_from_slice(p.verifier_hash.as_bytes());
            put_time(out, p.valid_until);
            out.push(p.reason.tag());
        }
        if let Some(h) = csrf_basis {
            out.extend_from_slice(h.as_bytes());
        }
        if let Some(p) = profile {
            // At most `ProfileName::MAX_LEN` bytes.
            out.push(u8::try_from(p.as_str().len()).expect("a profile name is short"));
            out.extend_from_slice(p.as_str().as_bytes());
        }
    });
}

/// The policy group a rotation writes, with its length.
pub(crate) fn policy_group(rotation: &TokenRotation) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    put_policy(
        &mut out,
        rotation.elevated_until,
        Some(&rotation.previous),
        Some(&rotation.csrf_basis),
        rotation.profile.as_ref(),
    );
    out
}

/// A client: the IP (a kind byte, 0, 4 or 6, then its bytes), then the user agent
/// (0 for none, or 1 followed by its bytes up to the group's end).
fn put_client(out: &mut Vec<u8>, c: &ClientInfo) {
    match c.ip() {
        None => out.push(0),
        Some(IpAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    match c.user_agent() {
        None => out.push(0),
        Some(ua) => {
            out.push(1);
            out.extend_from_slice(ua.as_bytes());
        }
    }
}

/// The "displaced by" group, with its length: empty for `None`.
pub(crate) fn displaced_group(client: Option<&ClientInfo>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 18 + ClientInfo::MAX_USER_AGENT);
    put_group(&mut out, |out| {
        if let Some(c) = client {
            put_client(out, c);
        }
    });
    out
}

/// A session as one string:
///
/// | bytes | holds |
/// |---|---|
/// | 1 | format (1) |
/// | 32 | verifier hash |
/// | 8 each | epoch, created, last seen, idle deadline, absolute deadline, token issued, privileges |
/// | 1 + 8 | revocation: 0 while live, else 1 + reason tag; its time |
/// | 1 + n | the user id |
/// | 2 + n | policy group: flags, then elevated until, replaced token (hash, valid until, reason), anti-CSRF basis, profile (1 + n), those the flags name |
/// | 2 + n | displaced by: empty for none, else a client |
/// | 2 + n | the client (empty for none known): IP kind (0, 4, 6) and bytes, then 0, or 1 and the user agent |
///
/// Numbers are big-endian. The fields a check reads come first, so one `GET`
/// returns the state a validation needs; the scripts rewrite fixed-offset fields
/// in place (`SETRANGE`) and whole groups by their length.
pub(crate) fn encode_session(rec: &SessionRecord) -> Vec<u8> {
    let s = &rec.state;
    let mut out = Vec::with_capacity(160);
    out.push(session::FORMAT);
    out.extend_from_slice(s.verifier_hash.as_bytes());
    out.extend_from_slice(&s.epoch.to_be_bytes());
    debug_assert_eq!(out.len(), session::C);
    for t in [
        s.created_at,
        s.last_seen_at,
        s.idle_deadline,
        s.absolute_deadline,
        s.token_issued_at,
    ] {
        put_time(&mut out, t);
    }
    debug_assert_eq!((out.len(), session::TI + 8), (session::PG, session::PG));
    out.extend_from_slice(&s.privileges.to_be_bytes());
    match s.revoked {
        Some(r) => out.extend_from_slice(&revocation_bytes(r)),
        None => out.extend_from_slice(&[0; 9]),
    }
    debug_assert_eq!(out.len(), session::USER);
    let user = s.user_id.as_str();
    out.push(u8::try_from(user.len()).expect("a user id is at most 128 bytes"));
    out.extend_from_slice(user.as_bytes());
    put_policy(
        &mut out,
        s.elevated_until,
        s.previous.as_ref(),
        s.csrf_basis.as_ref(),
        s.profile.as_ref(),
    );
    out.extend_from_slice(&displaced_group(s.displaced_by.as_deref()));
    put_group(&mut out, |out| {
        if rec.client != ClientInfo::default() {
            put_client(out, &rec.client);
        }
    });
    out
}

/// Reads a packed session record front to back.
struct Reader<'a> {
    id: TokenId,
    raw: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!("session {}: {what}", self.id))
    }

    fn take(&mut self, n: usize, what: &str) -> StoreResult<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.raw.len());
        let Some(end) = end else {
            return Err(self.corrupt(&format!("cut short in {what}")));
        };
        let out = &self.raw[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self, what: &str) -> StoreResult<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn array<const N: usize>(&mut self, what: &str) -> StoreResult<[u8; N]> {
        Ok(self
            .take(N, what)?
            .try_into()
            .expect("take returns N bytes"))
    }

    fn u64(&mut self, what: &str) -> StoreResult<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn time(&mut self, what: &str) -> StoreResult<Timestamp> {
        Ok(Timestamp::from_millis(i64::from_be_bytes(
            self.array(what)?,
        )))
    }

    fn hash(&mut self, what: &str) -> StoreResult<VerifierHash> {
        Ok(VerifierHash::from_bytes(self.array(what)?))
    }

    fn reason(&mut self, tag: u8, what: &str) -> StoreResult<Reason> {
        Reason::from_tag(tag).ok_or_else(|| self.corrupt(&format!("unknown reason in {what}")))
    }

    fn text(&mut self, n: usize, what: &str) -> StoreResult<&'a str> {
        let raw = self.take(n, what)?;
        std::str::from_utf8(raw).map_err(|_| self.corrupt(&format!("{what} is not UTF-8")))
    }

    /// A group: a reader over its bytes only.
    fn group(&mut self, what: &str) -> StoreResult<Reader<'a>> {
        let len = u16::from_be_bytes(self.array(what)?);
        let raw = self.take(usize::from(len), what)?;
        Ok(Reader {
            id: self.id,
            raw,
            at: 0,
        })
    }

    fn is_empty(&self) -> bool {
        self.at == self.raw.len()
    }

    fn end(&self, what: &str) -> StoreResult<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(&format!("trailing bytes in {what}")))
        }
    }

    fn client(&mut self, what: &str) -> StoreResult<ClientInfo> {
        let ip = match self.byte(what)? {
            0 => None,
            4 => Some(IpAddr::from(self.array::<4>(what)?)),
            6 => Some(IpAddr::from(self.array::<16>(what)?)),
            _ => return Err(self.corrupt(&format!("bad IP kind in {what}"))),
        };
        let ua = match self.byte(what)? {
            0 => None,
            1 => Some(self.text(self.raw.len() - self.at, what)?),
            _ => return Err(self.corrupt(&format!("bad user agent flag in {what}"))),
        };
        self.end(what)?;
        Ok(ClientInfo::new(ua, ip))
    }
}

/// A session's state from its packed record; also returns the rest of `raw`
/// after the state (the client group and anything after it) for the caller.
fn decode_state(id: TokenId, raw: &[u8]) -> StoreResult<(SessionState, Reader<'_>)> {
    let mut r = Reader { id, raw, at: 0 };
    if r.byte("format")? != session::FORMAT {
        return Err(r.corrupt("unknown record format"));
    }
    let verifier_hash = r.hash("verifier hash")?;
    let epoch = r.u64("epoch")?;
    let created_at = r.time("created")?;
    let last_seen_at = r.time("last seen")?;
    let idle_deadline = r.time("idle deadline")?;
    let absolute_deadline = r.time("absolute deadline")?;
    let token_issued_at = r.time("token issued")?;
    let privileges = r.u64("privileges")?;
    let revoked = match r.byte("revocation")? {
        0 => {
            r.take(8, "revocation")?;
            None
        }
        tag => Some(Revocation {
            reason: r.reason(tag - 1, "revocation")?,
            at: r.time("revocation")?,
        }),
    };
    let len = r.byte("user")?;
    let user = r.text(usize::from(len), "user")?;
    let user_id = UserId::new(user).map_err(|_| r.corrupt("malformed user id"))?;

    let mut p = r.group("policy")?;
    let flags = if p.is_empty() { 0 } else { p.byte("policy")? };
    let elevated_until = (flags & HAS_ELEVATED != 0)
        .then(|| p.time("elevated until"))
        .transpose()?;
    let previous = if flags & HAS_PREVIOUS != 0 {
        let verifier_hash = p.hash("replaced token")?;
        let valid_until = p.time("replaced token")?;
        let tag = p.byte("replaced token")?;
        Some(ReplacedToken {
            verifier_hash,
            valid_until,
            reason: p.reason(tag, "replaced token")?,
        })
    } else {
        None
    };
    let csrf_basis = (flags & HAS_CSRF != 0)
        .then(|| p.hash("anti-CSRF basis"))
        .transpose()?;
    let profile = if flags & HAS_PROFILE != 0 {
        let len = p.byte("profile")?;
        let name = p.text(usize::from(len), "profile")?;
        Some(ProfileName::new(name).map_err(|_| p.corrupt("malformed profile"))?)
    } else {
        None
    };
    p.end("policy")?;

    let mut d = r.group("displaced by")?;
    let displaced_by = if d.is_empty() {
        None
    } else {
        Some(Box::new(d.client("displaced by")?))
    };
    let state = SessionState {
        id,
        verifier_hash,
        user_id,
        epoch,
        created_at,
        last_seen_at,
        idle_deadline,
        absolute_deadline,
        revoked,
        profile,
        privileges,
        token_issued_at,
        elevated_until,
        previous,
        displaced_by,
        csrf_basis,
    };
    Ok((state, r))
}

/// A whole session (its client included) from its packed record.
pub(crate) fn decode_session(id: TokenId, raw: &[u8]) -> StoreResult<SessionRecord> {
    let (state, mut r) = decode_state(id, raw)?;
    let mut c = r.group("client")?;
    let client = if c.is_empty() {
        ClientInfo::default()
    } else {
        c.client("client")?
    };
    r.end("the record")?;
    Ok(SessionRecord { state, client })
}

/// A session's state and the bytes after the record (the load script appends
/// the user's epoch record there), without decoding the client.
pub(crate) fn decode_state_and_rest(id: TokenId, raw: &[u8]) -> StoreResult<(SessionState, &[u8])> {
    let (state, mut r) = decode_state(id, raw)?;
    r.group("client")?;
    Ok((state, &raw[r.at..]))
}

/// The owner and idle deadline of a packed session record, for the purge sweep;
/// `None` if it does not read as one.
pub(crate) fn session_owner_and_idle(raw: &[u8]) -> Option<(&str, Timestamp)> {
    if raw.first() != Some(&session::FORMAT) {
        return None;
    }
    let idle = raw.get(session::IDL..session::IDL + 8)?;
    let len = usize::from(*raw.get(session::USER)?);
    let user = raw.get(session::USER + 1..session::USER + 1 + len)?;
    Some((
        std::str::from_utf8(user).ok()?,
        Timestamp::from_millis(i64::from_be_bytes(idle.try_into().ok()?)),
    ))
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
}

/// The fields of a refresh token (its rotation, if any, included).
pub(crate) fn refresh_fields(r: &RefreshState) -> Pairs {
    let mut out = Vec::with_capacity(7);
    put(&mut out, "u", r.user_id.as_str());
    put(&mut out, "vh", r.verifier_hash.as_bytes().as_slice());
    put(&mut out, "s", r.session_id.to_string());
    put(&mut out, "c", ms(r.created_at));
    if let Some(client) = &r.client_id {
        put(&mut out, "ci", client.as_str());
    }
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
        client_id: h
            .text("ci")?
            .map(|c| ClientId::new(c).map_err(|e| h.corrupt("ci", e)))
            .transpose()?,
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

/// The field of an API token inserted together with its user's epoch record, so
/// that a missing record is a lost one and the token is refused (see [`Anchor`]).
/// Tokens written before this field existed are judged as they were.
pub(crate) const GUARDED: &str = "g";

/// Whether an API token was inserted together with its user's epoch record.
pub(crate) fn is_guarded(h: &Hash) -> bool {
    h.get(GUARDED).is_some()
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

/// Which sessions and API tokens a user's epoch record may judge: those created
/// at or after the moment the record was (re)created.
///
/// Every session, and every API token written by this version, is inserted
/// together with its user's epoch record (created if missing), so a missing
/// record means a lost one (evicted, or deleted by hand) and those records are
/// refused. A record lost and then created again by a later login says epoch 0:
/// judged by it, the sessions a password change or a revoke-all had ended would
/// pass again. The anchor prevents that: a record created again is anchored at
/// the time of the record it is created for, and everything older is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// It judges records created at or after this instant. A record written
    /// before anchors existed reads as anchored at the Unix epoch.
    Since(Timestamp),
    /// Created by an epoch bump or an access change while the user had no
    /// record: it judges nothing until the next session or API token inserted
    /// for the user anchors it at its creation time.
    Pending,
}

impl Anchor {
    /// Whether a session or API token created at `created_at` may be judged by
    /// the record.
    pub(crate) fn judges(self, created_at: Timestamp) -> bool {
        matches!(self, Anchor::Since(since) if created_at >= since)
    }
}

/// How much earlier than the record it is created for an epoch record is
/// anchored: nodes' clocks differ a little, and a session another node created
/// a moment before (by its clock) must not be refused. Sessions created this
/// long before a lost record is created again are judged by the new record.
pub(crate) const ANCHOR_SLACK: std::time::Duration = std::time::Duration::from_secs(60);

/// The anchor of an epoch record created (or anchored) for a session or API
/// token created at `created_at`.
pub(crate) fn anchor_for(created_at: Timestamp) -> Timestamp {
    created_at.saturating_sub(ANCHOR_SLACK)
}

/// The epoch record created by an insert for a user who has none: epoch 0,
/// anchored just before the new record's creation ([`anchor_for`]).
pub(crate) fn fresh_epoch(created_at: Timestamp) -> String {
    encode_epoch(&UserEpoch::default(), Anchor::Since(anchor_for(created_at)))
}

/// A user's epoch as one string (see the module docs).
pub(crate) fn encode_epoch(e: &UserEpoch, anchor: Anchor) -> String {
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
    match anchor {
        Anchor::Since(t) => out.push_str(&ms(t)),
        Anchor::Pending => out.push('*'),
    }
    out.push('|');
    out.push_str(&e.privileges.to_string());
    out
}

/// A user's epoch read back; `None` (never written) is the default epoch.
pub(crate) fn decode_epoch(user: &UserId, raw: Option<&[u8]>) -> StoreResult<UserEpoch> {
    Ok(decode_epoch_record(user, raw)?.map_or_else(UserEpoch::default, |(e, _)| e))
}

/// A user's epoch record read back, for a change of it: `None` (never written,
/// or lost) is the default epoch with its anchor pending.
pub(crate) fn decode_epoch_for_change(
    user: &UserId,
    raw: Option<&[u8]>,
) -> StoreResult<(UserEpoch, Anchor)> {
    Ok(decode_epoch_record(user, raw)?.unwrap_or((UserEpoch::default(), Anchor::Pending)))
}

/// A user's epoch record read back with its anchor; `None` if there is none.
pub(crate) fn decode_epoch_record(
    user: &UserId,
    raw: Option<&[u8]>,
) -> StoreResult<Option<(UserEpoch, Anchor)>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let corrupt = || {
        StoreError::Corrupt(format!(
            "the epoch record of user {user:?} is malformed: {:?}",
            String::from_utf8_lossy(raw)
        ))
    };
    let text = std::str::from_utf8(raw).map_err(|_| corrupt())?;
    let parts: Vec<&str> = text.split('|').collect();
    // Written before anchors existed: one field fewer, and it judges everything.
    let legacy = parts.len() == 5 + EARLIER_BUMPS;
    if !legacy && parts.len() != 6 + EARLIER_BUMPS {
        return Err(corrupt());
    }
    let mut earlier_bumps = [None; EARLIER_BUMPS];
    for (slot, part) in earlier_bumps.iter_mut().zip(&parts[4..4 + EARLIER_BUMPS]) {
        *slot = decode_revocation(part).ok_or_else(corrupt)?;
    }
    let anchor = match parts[4 + EARLIER_BUMPS] {
        _ if legacy => Anchor::Since(Timestamp::EPOCH),
        "*" => Anchor::Pending,
        at => Anchor::Since(Timestamp::from_millis(at.parse().map_err(|_| corrupt())?)),
    };
    let epoch = UserEpoch {
        epoch: parts[0].parse().map_err(|_| corrupt())?,
        api_token_floor: parts[1].parse().map_err(|_| corrupt())?,
        api_token_bump: decode_revocation(parts[2]).ok_or_else(corrupt)?,
        last_bump: decode_revocation(parts[3]).ok_or_else(corrupt)?,
        earlier_bumps,
        privileges: parts[parts.len() - 1].parse().map_err(|_| corrupt())?,
    };
    Ok(Some((epoch, anchor)))
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
        let anchors = [
            Anchor::Since(Timestamp::from_millis(1_800_000_000_000)),
            Anchor::Pending,
        ];
        for (e, anchor) in [UserEpoch::default(), full].into_iter().zip(anchors) {
            let s = encode_epoch(&e, anchor);
            assert!(s.starts_with(&format!("{}|", e.epoch)), "{s}");
            assert!(s.ends_with(&format!("|{}", e.privileges)), "{s}");
            assert_eq!(decode_epoch(&user, Some(s.as_bytes())).unwrap(), e);
            assert_eq!(
                decode_epoch_record(&user, Some(s.as_bytes())).unwrap(),
                Some((e, anchor))
            );
        }
        assert_eq!(decode_epoch(&user, None).unwrap(), UserEpoch::default());
        assert_eq!(decode_epoch_record(&user, None).unwrap(), None);
        assert_eq!(
            decode_epoch_for_change(&user, None).unwrap(),
            (UserEpoch::default(), Anchor::Pending)
        );
        assert!(decode_epoch(&user, Some(b"1|2")).is_err());
        assert!(decode_epoch(&user, Some(b"3|0||||||x|0")).is_err());
        // A record written before anchors existed judges every record.
        let (old, anchor) = decode_epoch_record(&user, Some(b"3|1|||||2:5|7"))
            .unwrap()
            .unwrap();
        assert_eq!((old.epoch, old.privileges), (3, 7));
        assert_eq!(anchor, Anchor::Since(Timestamp::EPOCH));
    }

    #[test]
    fn an_anchor_judges_records_created_from_it_on() {
        let t = Timestamp::from_millis(5_000);
        let anchor = Anchor::Since(t);
        assert!(anchor.judges(t));
        assert!(anchor.judges(Timestamp::from_millis(5_001)));
        assert!(!anchor.judges(Timestamp::from_millis(4_999)));
        assert!(!Anchor::Pending.judges(t));
    }

    #[test]
    fn sessions_round_trip_packed() {
        let user = UserId::new("alice").unwrap();
        let bare = {
            let mut rec = sample_session(&user);
            rec.state.revoked = None;
            rec.state.profile = None;
            rec.state.elevated_until = None;
            rec.state.previous = None;
            rec.state.csrf_basis = None;
            rec
        };
        let mut cases = vec![bare.clone(), sample_session(&user)];
        for ua in ["", "short", &"é".repeat(128), &"a€𝄞".repeat(40)] {
            for ip in ["192.0.2.1", "2001:db8::1"] {
                let mut rec = sample_session(&user);
                rec.client = ClientInfo::new(Some(ua), Some(ip.parse().unwrap()));
                rec.state.displaced_by = Some(Box::new(rec.client.clone()));
                cases.push(rec);
            }
        }
        let mut no_ua = bare.clone();
        no_ua.state.displaced_by = Some(Box::new(ClientInfo::default()));
        no_ua.client = ClientInfo::new(None, Some("192.0.2.9".parse().unwrap()));
        cases.push(no_ua);
        for rec in cases {
            let raw = encode_session(&rec);
            assert_eq!(raw[session::USER], 5);
            assert_eq!(decode_session(rec.state.id, &raw).unwrap(), rec);
            let mut with_epoch = raw.clone();
            with_epoch.extend_from_slice(b"3|0||||||0");
            let (state, rest) = decode_state_and_rest(rec.state.id, &with_epoch).unwrap();
            assert_eq!(state, rec.state);
            assert_eq!(rest, b"3|0||||||0");
            assert_eq!(
                session_owner_and_idle(&raw),
                Some(("alice", rec.state.idle_deadline))
            );
            // Cut anywhere, or with bytes after it, it is refused, not misread.
            for cut in 0..raw.len() {
                assert!(decode_session(rec.state.id, &raw[..cut]).is_err(), "{cut}");
            }
            assert!(decode_session(rec.state.id, &with_epoch).is_err());
        }
        // The offsets the scripts use.
        let rec = sample_session(&user);
        let raw = encode_session(&rec);
        let at = |off: usize| i64::from_be_bytes(raw[off..off + 8].try_into().unwrap());
        assert_eq!(&raw[session::VH..session::VH + 32], &[1; 32]);
        assert_eq!(at(session::E), 3);
        assert_eq!(at(session::C), 1_000);
        assert_eq!(at(session::LS), 1_001);
        assert_eq!(at(session::IDL), 1_002);
        assert_eq!(at(session::ABS), 1_003);
        assert_eq!(at(session::TI), 1_004);
        assert_eq!(at(session::PG), 4);
        assert_eq!(
            raw[session::RR..session::RR + 9],
            revocation_bytes(rev(Reason::Displaced, 2))[..]
        );
    }

    fn sample_session(user: &UserId) -> SessionRecord {
        let t = Timestamp::from_millis(1_000);
        let t1 = |n: i64| Timestamp::from_millis(1_000 + n);
        SessionRecord {
            state: SessionState {
                id: TokenId::random_in(user.shard()),
                verifier_hash: VerifierHash::from_bytes([1; 32]),
                user_id: user.clone(),
                epoch: 3,
                created_at: t,
                last_seen_at: t1(1),
                idle_deadline: t1(2),
                absolute_deadline: t1(3),
                revoked: Some(rev(Reason::Displaced, 2)),
                profile: Some(ProfileName::new("admin").unwrap()),
                privileges: 4,
                token_issued_at: t1(4),
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
