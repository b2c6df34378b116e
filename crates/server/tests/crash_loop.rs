//! Reliability of the real `sessionguard` binary under crashes and races.
//!
//! 1. **Crash loop** (invariant 4): a few client threads drive a mixed load —
//!    cookie, token and sidecar logins, status checks, logouts, password
//!    changes, refresh rotations, replays of rotated refresh tokens, admin
//!    revoke-alls — and the server is killed with SIGKILL after a random number
//!    of operations, restarted on the same data folder, and every acknowledged
//!    effect so far is checked against a model of what was acknowledged. Twenty
//!    rounds accumulate on one data folder. The seed is printed; set
//!    `SESSIONGUARD_TEST_SEED` to replay one.
//! 2. **Logout racing validation**: after a logout's 204 is received, every
//!    status check that starts afterwards is `401 logged_out`.
//! 3. **Password change racing login** (invariant 6): after a password change's
//!    200, a login with the old password has either failed or produced a session
//!    that is already dead (`password_changed`).
//!
//! `Instant` only orders events here: nothing sleeps and nothing asserts a
//! duration. Every request is bounded by [`process::REQUEST_TIMEOUT`].

#![cfg(unix)]

mod process;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use process::{Running, cookie_of, json_field, start_with, try_http};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Randomness: a seeded xorshift, so that a failure can be replayed.

/// xorshift64* (Vigna), seeded through splitmix64 so that any seed (0 included)
/// gives a well-mixed, non-zero state.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n")
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// `SESSIONGUARD_TEST_SEED` if set, else the clock's nanoseconds.
fn seed() -> u64 {
    match std::env::var("SESSIONGUARD_TEST_SEED") {
        Ok(s) => s.trim().parse().expect("SESSIONGUARD_TEST_SEED is a u64"),
        Err(_) => {
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            t.as_secs().wrapping_mul(1_000_000_007) ^ u64::from(t.subsec_nanos())
        }
    }
}

// ---------------------------------------------------------------------------
// The server's home.

/// A data folder and a configuration that outlive the server processes started
/// on them. The issuer and audience of access tokens are fixed: by default they
/// follow the bound address, which changes at every start on port 0, and access
/// tokens would then not survive a restart for that reason alone.
struct Home {
    _dir: tempfile::TempDir,
    data: String,
    config: String,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sessionguard.toml");
        std::fs::write(
            &config,
            // Unlimited sessions: the model of what each user holds knows no
            // displacement (the limit is tested on its own).
            "issuer = \"https://sessionguard.test\"\naudience = \"https://api.sessionguard.test\"\n\
             [policy]\nmax_sessions = 0\n",
        )
        .unwrap();
        Home {
            data: dir.path().join("data").to_str().unwrap().to_owned(),
            config: config.to_str().unwrap().to_owned(),
            _dir: dir,
        }
    }

    fn start(&self) -> Running {
        start_with(&self.data, &["--config", &self.config])
    }
}

// ---------------------------------------------------------------------------
// The HTTP client.

/// How a test talks to one running server.
#[derive(Debug, Clone)]
struct Api {
    addr: String,
    admin: String,
}

/// A complete response.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} with a body that is not JSON ({e}): {}",
                self.status, self.body
            )
        })
    }

    fn field(&self, name: &str) -> String {
        json_field(&self.body, name)
    }

    /// The stable `code` of an error body.
    fn code(&self) -> String {
        self.field("code")
    }

    /// `status code` for messages: the code when the body has one.
    fn outcome(&self) -> String {
        let code = serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned));
        match code {
            Some(c) => format!("{} {c}", self.status),
            None => self.status.to_string(),
        }
    }
}

impl Api {
    fn of(running: &Running) -> Api {
        Api {
            addr: running.addr.clone(),
            admin: running.admin.clone(),
        }
    }

    /// One exchange; `Err` when no complete answer came back.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&'static str, String)],
        body: &str,
    ) -> io::Result<Resp> {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, head, body) = try_http(&self.addr, method, path, &headers, body)?;
        Ok(Resp { status, head, body })
    }

    /// A POST with a JSON body.
    fn post(
        &self,
        path: &str,
        headers: &[(&'static str, String)],
        body: &Value,
    ) -> io::Result<Resp> {
        let mut all = headers.to_vec();
        all.push(("content-type", "application/json".to_owned()));
        self.send("POST", path, &all, &body.to_string())
    }

    fn admin_header(&self) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Bearer {}", self.admin))]
    }

    fn status(&self, cred: &Cred) -> io::Result<Resp> {
        self.send("GET", "/v1/session/status", &cred.read_headers(), "")
    }

    fn cookie_login(&self, name: &str, password: &str) -> io::Result<Resp> {
        self.post(
            "/v1/login",
            &[],
            &json!({ "username": name, "password": password }),
        )
    }

    fn token_login(&self, name: &str, password: &str) -> io::Result<Resp> {
        self.post(
            "/v1/token",
            &[],
            &json!({
                "grant_type": "password",
                "username": name,
                "password": password,
                "client_id": "crash-loop",
            }),
        )
    }

    fn refresh(&self, refresh_token: &str) -> io::Result<Resp> {
        self.post(
            "/v1/token",
            &[],
            &json!({
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": "crash-loop",
            }),
        )
    }

    /// `POST /v1/admin/sessions`: a sidecar session, no password hashing.
    fn sidecar(&self, user_id: &str) -> io::Result<Resp> {
        self.post(
            "/v1/admin/sessions",
            &self.admin_header(),
            &json!({ "user_id": user_id }),
        )
    }

    fn introspect(&self, token: &str) -> io::Result<Resp> {
        self.post(
            "/v1/introspect",
            &self.admin_header(),
            &json!({ "token": token }),
        )
    }

    fn revoke_all(&self, user_id: &str, reason: &str) -> io::Result<Resp> {
        self.post(
            &format!("/v1/admin/users/{user_id}/revoke"),
            &self.admin_header(),
            &json!({ "reason": reason }),
        )
    }

    fn change_password(&self, cred: &Cred, current: &str, new: &str) -> io::Result<Resp> {
        self.post(
            "/v1/password",
            &cred.write_headers(),
            &json!({ "current_password": current, "new_password": new }),
        )
    }
}

/// Panics with the request that could not be completed on a server that is up.
fn must<T>(what: &str, r: io::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: no complete answer from a running server: {e}"))
}

// ---------------------------------------------------------------------------
// The model of what was acknowledged.

/// A client's credential for one session.
#[derive(Debug, Clone)]
enum Cred {
    /// Browser flow: the cookie's session token and its anti-CSRF token.
    Cookie { token: String, csrf: String },
    /// A session token (`sgs_`) sent as a bearer token.
    Bearer { token: String },
    /// Token client: the latest access token, the live refresh token (`None` once
    /// an unknown rotation lost it), and every refresh token it replaced.
    Access {
        access: String,
        refresh: Option<String>,
        retired: Vec<String>,
    },
}

impl Cred {
    /// Headers that authenticate a safe request.
    fn read_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Cred::Cookie { token, .. } => vec![("cookie", format!("__Host-sg_session={token}"))],
            Cred::Bearer { token } => vec![("authorization", format!("Bearer {token}"))],
            Cred::Access { access, .. } => vec![("authorization", format!("Bearer {access}"))],
        }
    }

    /// Headers that authenticate an unsafe request (cookies need the CSRF token).
    fn write_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = self.read_headers();
        if let Cred::Cookie { csrf, .. } = self {
            h.push(("x-csrf-token", csrf.clone()));
        }
        h
    }

    fn kind(&self) -> &'static str {
        match self {
            Cred::Cookie { .. } => "cookie",
            Cred::Bearer { .. } => "bearer",
            Cred::Access { .. } => "access",
        }
    }
}

/// A session whose creation was acknowledged.
#[derive(Debug, Clone)]
struct Sess {
    cred: Cred,
    /// The user's (model) credential epoch when it was created.
    epoch: u64,
    /// Its own acknowledged revocation, if any.
    revoked: Option<&'static str>,
}

/// A user and every acknowledged fact about it.
#[derive(Debug, Clone)]
struct User {
    name: String,
    id: String,
    password: String,
    old_passwords: Vec<String>,
    /// Counts acknowledged credential-epoch bumps (password changes, revoke-alls).
    epoch: u64,
    /// The reason of every bump, oldest first (bump number `k` at `k - 1`). A
    /// session ended by the epoch reports the bump that ended it while that bump is
    /// among the last `1 + EARLIER_BUMPS` remembered, else the oldest remembered
    /// (`UserEpoch::bump_ending`).
    bumps: Vec<&'static str>,
    sessions: Vec<Sess>,
}

impl User {
    /// What a status check of session `i` must say: live, or the reason it ended.
    fn verdict(&self, i: usize) -> Result<(), &'static str> {
        let s = &self.sessions[i];
        if let Some(r) = s.revoked {
            return Err(r);
        }
        if s.epoch < self.epoch {
            let remembered = 1 + sessionguard_core::EARLIER_BUMPS as u64;
            let ending = (s.epoch + 1).max(self.epoch.saturating_sub(remembered - 1));
            return Err(self.bumps[usize::try_from(ending - 1).expect("small")]);
        }
        Ok(())
    }

    fn live(&self) -> Vec<usize> {
        (0..self.sessions.len())
            .filter(|&i| self.verdict(i).is_ok())
            .collect()
    }

    fn dead(&self) -> Vec<usize> {
        (0..self.sessions.len())
            .filter(|&i| self.verdict(i).is_err())
            .collect()
    }

    fn add(&mut self, cred: Cred) {
        self.sessions.push(Sess {
            cred,
            epoch: self.epoch,
            revoked: None,
        });
    }

    fn bump(&mut self, reason: &'static str) {
        self.epoch += 1;
        self.bumps.push(reason);
    }

    fn password_changed(&mut self, new: &str) {
        self.bump("password_changed");
        let old = std::mem::replace(&mut self.password, new.to_owned());
        self.old_passwords.push(old);
    }

    /// Applies an operation whose answer was lost, as if it had taken effect.
    fn apply(&mut self, op: &Unknown) {
        match op {
            Unknown::Logout(i) => self.sessions[*i].revoked = Some("logged_out"),
            Unknown::Replay(i) => self.sessions[*i].revoked = Some("refresh_reuse_detected"),
            Unknown::PasswordChange { new } => self.password_changed(new),
            Unknown::RevokeAll(reason) => self.bump(reason),
            Unknown::Refresh(i) => {
                if let Cred::Access {
                    refresh, retired, ..
                } = &mut self.sessions[*i].cred
                {
                    retired.extend(refresh.take());
                }
            }
        }
    }
}

/// An operation whose request was sent but whose answer never came: it may or
/// may not have taken effect. Logins are not listed: a session nobody knows the
/// token of changes no observation.
#[derive(Debug, Clone)]
enum Unknown {
    Logout(usize),
    PasswordChange { new: String },
    RevokeAll(&'static str),
    Refresh(usize),
    Replay(usize),
}

/// What one probe of the server showed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Status check: 200 for this user.
    Live,
    /// Status check: 401 with this code.
    Ended(String),
    /// Introspection of a refresh token.
    Active(bool),
}

/// One observation to make after a restart.
#[derive(Debug, Clone)]
enum Probe {
    /// `GET /v1/session/status` with session `i`'s credential (of this kind).
    Status(usize, &'static str),
    /// `POST /v1/introspect` of a refresh token of session `i`.
    Refresh(usize, String),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Status(i, kind) => write!(f, "status of {kind} session #{i}"),
            Probe::Refresh(i, t) => write!(f, "refresh token …{} of session #{i}", tail(t)),
        }
    }
}

/// The last characters of a token, to tell tokens apart in messages.
fn tail(t: &str) -> &str {
    &t[t.len().saturating_sub(6)..]
}

/// Every probe of `user`'s model: each session's status, and each refresh token
/// (live and replaced) of token clients.
fn probes(user: &User) -> Vec<Probe> {
    let mut out = Vec::new();
    for (i, s) in user.sessions.iter().enumerate() {
        out.push(Probe::Status(i, s.cred.kind()));
        if let Cred::Access {
            refresh, retired, ..
        } = &s.cred
        {
            for t in refresh.iter().chain(retired) {
                out.push(Probe::Refresh(i, t.clone()));
            }
        }
    }
    out
}

/// What `user`'s model says each probe must show.
fn predict(user: &User, probes: &[Probe]) -> Vec<Seen> {
    probes
        .iter()
        .map(|p| match p {
            Probe::Status(i, _) => match user.verdict(*i) {
                Ok(()) => Seen::Live,
                Err(r) => Seen::Ended(r.to_owned()),
            },
            Probe::Refresh(i, t) => {
                let current = matches!(
                    &user.sessions[*i].cred,
                    Cred::Access { refresh: Some(r), .. } if r == t
                );
                Seen::Active(current && user.verdict(*i).is_ok())
            }
        })
        .collect()
}

/// Makes the probes against the server.
fn observe(api: &Api, user: &User, probes: &[Probe]) -> Vec<Seen> {
    probes
        .iter()
        .map(|p| match p {
            Probe::Status(i, _) => {
                let r = must("status", api.status(&user.sessions[*i].cred));
                match r.status {
                    200 => {
                        assert_eq!(r.field("user_id"), user.id, "{p} of {}", user.name);
                        Seen::Live
                    }
                    401 => Seen::Ended(r.code()),
                    _ => panic!("{p} of {}: unexpected {}: {}", user.name, r.status, r.body),
                }
            }
            Probe::Refresh(_, t) => {
                let r = must("introspect", api.introspect(t));
                assert_eq!(r.status, 200, "{p} of {}: {}", user.name, r.body);
                let v = r.json();
                let active = v["active"].as_bool().expect("introspection has `active`");
                if active {
                    assert_eq!(v["sub"].as_str(), Some(user.id.as_str()), "{p}");
                }
                Seen::Active(active)
            }
        })
        .collect()
}

/// The differences between a prediction and an observation, for messages.
fn mismatches(probes: &[Probe], want: &[Seen], seen: &[Seen]) -> String {
    probes
        .iter()
        .zip(want.iter().zip(seen))
        .filter(|(_, (w, s))| w != s)
        .map(|(p, (w, s))| format!("\n    {p}: expected {w:?}, server says {s:?}"))
        .collect()
}

// ---------------------------------------------------------------------------
// The crash loop.

const THREADS: usize = 3;
const USERS_PER_THREAD: usize = 2;
const ROUNDS: usize = 20;
/// The most operations a round issues; the kill comes at a random one of them.
const MAX_OPS: usize = 60;

/// Counters for the final report.
#[derive(Debug, Default, Clone)]
struct Stats {
    acked: usize,
    lost: usize,
    lost_applied: usize,
    lost_not_applied: usize,
    lost_indistinct: usize,
    probes: usize,
    grace_repeats: usize,
    reuse_detected: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.acked += o.acked;
        self.lost += o.lost;
        self.lost_applied += o.lost_applied;
        self.lost_not_applied += o.lost_not_applied;
        self.lost_indistinct += o.lost_indistinct;
        self.probes += o.probes;
        self.grace_repeats += o.grace_repeats;
        self.reuse_detected += o.reuse_detected;
    }
}

/// The users one client thread owns: only that thread acts on them, so their
/// model is sequential and at most one of their operations is unknown per round.
#[derive(Debug)]
struct Group {
    users: Vec<User>,
    unknown: Option<(usize, Unknown)>,
    rng: Rng,
    stats: Stats,
}

/// What the client threads of a round share: the operation count and the server
/// to kill when it reaches `kill_at`.
struct Control {
    ops: AtomicUsize,
    kill_at: usize,
    killed: AtomicBool,
    server: Mutex<Option<Running>>,
}

/// An operation that got no complete answer: the error, and what it may have done.
#[derive(Debug)]
struct Lost {
    op: &'static str,
    error: io::Error,
    unknown: Option<Unknown>,
}

/// Runs `user`'s probes after a restart and updates the model: without an
/// unknown operation the server must match the model exactly; with one, it must
/// match the model with or without that operation — nothing else.
fn verify(api: &Api, g: &mut Group, round: usize) {
    let unknown = g.unknown.take();
    for (k, user) in g.users.iter_mut().enumerate() {
        let probes = probes(user);
        let seen = observe(api, user, &probes);
        g.stats.probes += probes.len();
        let without = predict(user, &probes);
        let pending = unknown
            .as_ref()
            .filter(|(uk, _)| *uk == k)
            .map(|(_, op)| op);
        let Some(op) = pending else {
            assert!(
                seen == without,
                "round {round}: {} lost or changed acknowledged effects:{}",
                user.name,
                mismatches(&probes, &without, &seen)
            );
            continue;
        };
        let mut applied = user.clone();
        applied.apply(op);
        let with = predict(&applied, &probes);
        match (seen == without, seen == with) {
            (true, true) => g.stats.lost_indistinct += 1,
            (true, false) => g.stats.lost_not_applied += 1,
            (false, true) => {
                g.stats.lost_applied += 1;
                *user = applied;
            }
            (false, false) => panic!(
                "round {round}: {} matches neither the model without the unanswered {op:?} \
                 (differences:{}) nor with it (differences:{})",
                user.name,
                mismatches(&probes, &without, &seen),
                mismatches(&probes, &with, &seen)
            ),
        }
        if matches!(op, Unknown::PasswordChange { .. }) {
            // Which password is now in force was deduced from the sessions; a login
            // with it confirms that hash and epoch were kept together.
            let r = must("login", api.cookie_login(&user.name, &user.password));
            assert_eq!(
                r.status, 200,
                "round {round}: {} cannot log in with the password the sessions imply: {}",
                user.name, r.body
            );
            let cred = Cred::Cookie {
                token: cookie_of(&r.head),
                csrf: r.field("csrf_token"),
            };
            user.add(cred);
        }
    }
}

/// One client thread's share of a round: operations until the kill.
fn load(api: &Api, g: &mut Group, ctl: &Control) {
    loop {
        if ctl.killed.load(Ordering::SeqCst) {
            return;
        }
        let n = ctl.ops.fetch_add(1, Ordering::SeqCst);
        if n >= ctl.kill_at {
            if n == ctl.kill_at {
                ctl.killed.store(true, Ordering::SeqCst);
                let running = ctl.server.lock().unwrap().take();
                running.expect("the server is killed once").kill9();
            }
            return;
        }
        let k = g.rng.below(g.users.len());
        match step(api, &mut g.users[k], &mut g.rng, &mut g.stats) {
            Ok(()) => g.stats.acked += 1,
            Err(lost) => {
                // Only the kill may cut an answer off.
                assert!(
                    ctl.killed.load(Ordering::SeqCst),
                    "{} of {} got no complete answer while the server was up: {}",
                    lost.op,
                    g.users[k].name,
                    lost.error
                );
                g.stats.lost += 1;
                g.unknown = lost.unknown.map(|op| (k, op));
                return;
            }
        }
    }
}

/// `r` as the answer of `op`, or the loss of `op` (which may have done `unknown`).
fn answer(op: &'static str, unknown: Option<Unknown>, r: io::Result<Resp>) -> Result<Resp, Lost> {
    r.map_err(|error| Lost { op, error, unknown })
}

const ADMIN_REASONS: [&str; 3] = [
    "revoked_by_admin",
    "signed_out_everywhere",
    "password_changed",
];

/// One random operation on `user`, checked against the model, which it updates.
fn step(api: &Api, user: &mut User, rng: &mut Rng, stats: &mut Stats) -> Result<(), Lost> {
    let live = user.live();
    let roll = rng.below(100);
    match roll {
        // Status checks of live and of ended sessions: cheap, and checked exactly.
        0..36 => {
            let pool = if roll < 30 || user.dead().is_empty() {
                live
            } else {
                user.dead()
            };
            if pool.is_empty() {
                return sidecar_login(api, user);
            }
            let i = *rng.pick(&pool);
            let r = answer("status", None, api.status(&user.sessions[i].cred))?;
            match user.verdict(i) {
                Ok(()) => {
                    assert_eq!(
                        r.status, 200,
                        "status of live session #{i} of {}: {}",
                        user.name, r.body
                    );
                    assert_eq!(r.field("user_id"), user.id);
                }
                Err(reason) => {
                    assert_eq!(
                        r.outcome(),
                        format!("401 {reason}"),
                        "status of ended session #{i} of {}",
                        user.name
                    );
                }
            }
            Ok(())
        }
        36..42 => cookie_login(api, user),
        42..49 => token_login(api, user),
        49..56 => sidecar_login(api, user),
        56..66 => {
            let Some(&i) = (!live.is_empty()).then(|| rng.pick(&live)) else {
                return sidecar_login(api, user);
            };
            logout(api, user, i, rng)
        }
        66..80 => {
            let refreshable: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| {
                    matches!(
                        user.sessions[i].cred,
                        Cred::Access {
                            refresh: Some(_),
                            ..
                        }
                    )
                })
                .collect();
            if refreshable.is_empty() {
                return sidecar_login(api, user);
            }
            refresh(api, user, *rng.pick(&refreshable))
        }
        80..83 => {
            if live.is_empty() {
                return sidecar_login(api, user);
            }
            change_password(api, user, *rng.pick(&live), rng)
        }
        83..87 => {
            let reason = *rng.pick(&ADMIN_REASONS);
            let r = answer(
                "revoke-all",
                Some(Unknown::RevokeAll(reason)),
                api.revoke_all(&user.id, reason),
            )?;
            assert_eq!(r.status, 200, "revoke-all of {}: {}", user.name, r.body);
            assert_eq!(r.field("reason"), reason);
            user.bump(reason);
            Ok(())
        }
        87..95 => {
            let replayable: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| {
                    matches!(&user.sessions[i].cred,
                        Cred::Access { refresh: Some(_), retired, .. } if !retired.is_empty())
                })
                .collect();
            if replayable.is_empty() {
                return sidecar_login(api, user);
            }
            replay(api, user, *rng.pick(&replayable), rng, stats)
        }
        _ => {
            if user.old_passwords.is_empty() {
                return sidecar_login(api, user);
            }
            let old = rng.pick(&user.old_passwords).clone();
            let r = answer(
                "login with an old password",
                None,
                api.cookie_login(&user.name, &old),
            )?;
            assert_eq!(
                r.outcome(),
                "401 invalid_credentials",
                "{} logged in with a replaced password",
                user.name
            );
            Ok(())
        }
    }
}

fn cookie_login(api: &Api, user: &mut User) -> Result<(), Lost> {
    let r = answer(
        "cookie login",
        None,
        api.cookie_login(&user.name, &user.password),
    )?;
    assert_eq!(r.status, 200, "cookie login of {}: {}", user.name, r.body);
    assert_eq!(r.field("user_id"), user.id);
    user.add(Cred::Cookie {
        token: cookie_of(&r.head),
        csrf: r.field("csrf_token"),
    });
    Ok(())
}

fn token_login(api: &Api, user: &mut User) -> Result<(), Lost> {
    let r = answer(
        "token login",
        None,
        api.token_login(&user.name, &user.password),
    )?;
    assert_eq!(r.status, 200, "token login of {}: {}", user.name, r.body);
    user.add(Cred::Access {
        access: r.field("access_token"),
        refresh: Some(r.field("refresh_token")),
        retired: Vec::new(),
    });
    Ok(())
}

fn sidecar_login(api: &Api, user: &mut User) -> Result<(), Lost> {
    let r = answer("sidecar session", None, api.sidecar(&user.id))?;
    assert_eq!(
        r.status, 201,
        "sidecar session of {}: {}",
        user.name, r.body
    );
    user.add(Cred::Bearer {
        token: r.field("session_token"),
    });
    Ok(())
}

fn logout(api: &Api, user: &mut User, i: usize, rng: &mut Rng) -> Result<(), Lost> {
    let cred = &user.sessions[i].cred;
    let lost = Some(Unknown::Logout(i));
    let r = match cred {
        Cred::Access {
            refresh: Some(refresh),
            ..
        } if rng.below(3) > 0 => {
            if rng.below(2) == 0 {
                let auth = [("authorization", format!("Bearer {refresh}"))];
                answer(
                    "logout (refresh bearer)",
                    lost,
                    api.send("POST", "/v1/logout", &auth, ""),
                )?
            } else {
                let body = json!({ "refresh_token": refresh });
                answer(
                    "logout (refresh body)",
                    lost,
                    api.post("/v1/logout", &[], &body),
                )?
            }
        }
        _ => answer(
            "logout",
            lost,
            api.send("POST", "/v1/logout", &cred.write_headers(), ""),
        )?,
    };
    assert_eq!(
        r.status,
        204,
        "logout of live {} session #{i} of {}: {}",
        cred.kind(),
        user.name,
        r.body
    );
    user.sessions[i].revoked = Some("logged_out");
    Ok(())
}

fn refresh(api: &Api, user: &mut User, i: usize) -> Result<(), Lost> {
    let Cred::Access {
        access,
        refresh: Some(current),
        retired,
    } = &mut user.sessions[i].cred
    else {
        unreachable!("only token sessions with a refresh token are refreshed")
    };
    let r = answer("refresh", Some(Unknown::Refresh(i)), api.refresh(current))?;
    assert_eq!(
        r.status, 200,
        "refresh of live session #{i} of {}: {}",
        user.name, r.body
    );
    let next = r.field("refresh_token");
    assert_ne!(&next, current, "a refresh rotates the token");
    retired.push(std::mem::replace(current, next));
    *access = r.field("access_token");
    Ok(())
}

/// Presents a replaced refresh token again: either the grace window repeats the
/// current successor (only for the token it just replaced), or the session ends
/// with `refresh_reuse_detected`. Both are policy; a different successor is not.
fn replay(
    api: &Api,
    user: &mut User,
    i: usize,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<(), Lost> {
    let Cred::Access {
        access,
        refresh: Some(current),
        retired,
    } = &mut user.sessions[i].cred
    else {
        unreachable!("only token sessions with replaced refresh tokens are replayed")
    };
    let j = rng.below(retired.len());
    let immediate = j + 1 == retired.len();
    let r = answer("replay", Some(Unknown::Replay(i)), api.refresh(&retired[j]))?;
    match r.status {
        200 => {
            assert!(
                immediate,
                "session #{i} of {}: a refresh token two rotations old was accepted",
                user.name
            );
            assert_eq!(
                &r.field("refresh_token"),
                current,
                "session #{i} of {}: a repeat within the grace window must return the same successor",
                user.name
            );
            *access = r.field("access_token");
            stats.grace_repeats += 1;
        }
        _ => {
            assert_eq!(
                r.outcome(),
                "400 refresh_reuse_detected",
                "replay of a replaced refresh token of session #{i} of {}",
                user.name
            );
            user.sessions[i].revoked = Some("refresh_reuse_detected");
            stats.reuse_detected += 1;
        }
    }
    Ok(())
}

fn change_password(api: &Api, user: &mut User, i: usize, rng: &mut Rng) -> Result<(), Lost> {
    let new = format!(
        "{}-pw-{}-{:08x}",
        user.name,
        user.old_passwords.len() + 1,
        rng.next() as u32
    );
    let cred = user.sessions[i].cred.clone();
    let r = answer(
        "password change",
        Some(Unknown::PasswordChange { new: new.clone() }),
        api.change_password(&cred, &user.password, &new),
    )?;
    assert_eq!(
        r.status,
        200,
        "password change from {} session #{i} of {}: {}",
        cred.kind(),
        user.name,
        r.body
    );
    let fresh = match cred {
        Cred::Cookie { .. } => Cred::Cookie {
            token: cookie_of(&r.head),
            csrf: r.field("csrf_token"),
        },
        Cred::Bearer { .. } => Cred::Bearer {
            token: r.field("session_token"),
        },
        Cred::Access { .. } => Cred::Access {
            access: r.field("access_token"),
            refresh: Some(r.field("refresh_token")),
            retired: Vec::new(),
        },
    };
    user.password_changed(&new);
    user.add(fresh);
    Ok(())
}

#[test]
fn every_acknowledged_effect_survives_sigkill_at_random_moments() {
    let seed = seed();
    eprintln!("crash loop seed: {seed} (replay with SESSIONGUARD_TEST_SEED={seed})");
    let began = Instant::now();
    let mut rng = Rng::new(seed);
    let home = Home::new();
    let first = home.start();
    let mut groups: Vec<Group> = (0..THREADS)
        .map(|t| Group {
            users: (0..USERS_PER_THREAD)
                .map(|u| {
                    let name = format!("user{t}{u}");
                    let password = format!("{name}-pw-0-initial");
                    User {
                        id: first.create_user(&name, &password),
                        name,
                        password,
                        old_passwords: Vec::new(),
                        epoch: 0,
                        bumps: Vec::new(),
                        sessions: Vec::new(),
                    }
                })
                .collect(),
            unknown: None,
            rng: Rng::new(rng.next()),
            stats: Stats::default(),
        })
        .collect();

    let mut next = Some(first);
    let mut kills = Vec::new();
    for round in 0..ROUNDS {
        let running = next.take().unwrap_or_else(|| home.start());
        let api = Api::of(&running);
        if round > 0 {
            thread::scope(|s| {
                for g in &mut groups {
                    let api = &api;
                    s.spawn(move || verify(api, g, round));
                }
            });
        }
        let kill_at = 1 + rng.below(MAX_OPS);
        kills.push(kill_at);
        let ctl = Control {
            ops: AtomicUsize::new(0),
            kill_at,
            killed: AtomicBool::new(false),
            server: Mutex::new(Some(running)),
        };
        thread::scope(|s| {
            for g in &mut groups {
                let (api, ctl) = (&api, &ctl);
                s.spawn(move || load(api, g, ctl));
            }
        });
        assert!(
            ctl.killed.load(Ordering::SeqCst),
            "round {round} ended without the kill"
        );
    }
    let last = home.start();
    let api = Api::of(&last);
    thread::scope(|s| {
        for g in &mut groups {
            let api = &api;
            s.spawn(move || verify(api, g, ROUNDS));
        }
    });
    last.kill9();

    let mut total = Stats::default();
    for g in &groups {
        total.add(&g.stats);
    }
    let sessions: usize = groups
        .iter()
        .flat_map(|g| &g.users)
        .map(|u| u.sessions.len())
        .sum();
    let live: usize = groups
        .iter()
        .flat_map(|g| &g.users)
        .map(|u| u.live().len())
        .sum();
    eprintln!(
        "crash loop: {ROUNDS} SIGKILLs after {kills:?} operations; {} operations acknowledged, \
         {} cut off by the kill ({} of them took effect, {} did not, {} could not be told apart); \
         {sessions} sessions known ({live} live); {} probes after restarts; \
         {} grace repeats, {} reuses detected; {:?}",
        total.acked,
        total.lost,
        total.lost_applied,
        total.lost_not_applied,
        total.lost_indistinct,
        total.probes,
        total.grace_repeats,
        total.reuse_detected,
        began.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Races.

const RACE_TRIALS: usize = 120;
const VALIDATORS: usize = 3;

/// One status check: when it started and ended, and what it said.
#[derive(Debug)]
struct Check {
    started: Instant,
    ended: Instant,
    outcome: String,
}

#[test]
fn a_status_check_started_after_the_logout_answered_is_logged_out() {
    let home = Home::new();
    let running = home.start();
    let user = running.create_user("racer", "racer-password-0");
    let api = Api::of(&running);
    let (mut before, mut after) = (0, 0);
    for trial in 0..RACE_TRIALS {
        // A sidecar session (no password hashing); its token works as a cookie too.
        let r = must("sidecar", api.sidecar(&user));
        assert_eq!(r.status, 201, "{}", r.body);
        let token = r.field("session_token");
        let cookie = Cred::Cookie {
            csrf: must(
                "status",
                api.status(&Cred::Bearer {
                    token: token.clone(),
                }),
            )
            .field("csrf_token"),
            token: token.clone(),
        };
        let bearer = Cred::Bearer { token };
        let logout_cred = if trial % 2 == 0 { &cookie } else { &bearer };

        let start_line = Barrier::new(VALIDATORS + 1);
        let done = AtomicBool::new(false);
        let (acked, checks) = thread::scope(|s| {
            let validators: Vec<_> = (0..VALIDATORS)
                .map(|v| {
                    let cred = if (trial + v) % 2 == 0 {
                        &cookie
                    } else {
                        &bearer
                    };
                    let (api, start_line, done) = (&api, &start_line, &done);
                    s.spawn(move || {
                        let mut checks = Vec::new();
                        let mut late = 0;
                        start_line.wait();
                        // Until two checks have started after the logout answered.
                        while late < 2 {
                            if done.load(Ordering::SeqCst) {
                                late += 1;
                            }
                            let started = Instant::now();
                            let r = must("status", api.status(cred));
                            checks.push(Check {
                                started,
                                ended: Instant::now(),
                                outcome: r.outcome(),
                            });
                        }
                        checks
                    })
                })
                .collect();
            start_line.wait();
            let r = must(
                "logout",
                api.send("POST", "/v1/logout", &logout_cred.write_headers(), ""),
            );
            let acked = Instant::now();
            done.store(true, Ordering::SeqCst);
            assert_eq!(r.status, 204, "trial {trial}: logout: {}", r.body);
            let checks: Vec<Check> = validators
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            (acked, checks)
        });
        for c in &checks {
            assert!(
                c.outcome == "200" || c.outcome == "401 logged_out",
                "trial {trial}: a status check racing a logout said {}",
                c.outcome
            );
            if c.started > acked {
                assert_eq!(
                    c.outcome, "401 logged_out",
                    "trial {trial}: a status check that started after the logout's 204 was received"
                );
            }
            if c.outcome == "200" {
                before += 1;
            }
        }
        // No resurrection: once a check has seen the session ended, every check
        // started afterwards sees it ended.
        for ended in checks.iter().filter(|c| c.outcome != "200") {
            for later in checks.iter().filter(|c| c.started > ended.ended) {
                assert_eq!(
                    later.outcome, "401 logged_out",
                    "trial {trial}: the session came back after a check saw it logged out"
                );
            }
        }
        after += checks.iter().filter(|c| c.started > acked).count();
    }
    eprintln!(
        "logout race: {RACE_TRIALS} trials, {VALIDATORS} validators; {before} checks saw the \
         session live, {after} started after the 204 and all were refused"
    );
}

const PASSWORD_TRIALS: usize = 30;

/// The outcome of a login racing a password change.
#[derive(Debug)]
enum Racer {
    /// Refused: the answer's status and code.
    Refused(String),
    /// A session was created: its credential.
    Won(Cred),
}

#[test]
fn a_login_with_the_old_password_racing_a_change_never_yields_a_live_session() {
    let home = Home::new();
    let running = home.start();
    let mut password = "changer-password-0".to_owned();
    let user = running.create_user("changer", &password);
    let api = Api::of(&running);
    let (mut won, mut refused) = (0, 0);
    for trial in 0..PASSWORD_TRIALS {
        let new = format!("changer-password-{}", trial + 1);
        let r = must("sidecar", api.sidecar(&user));
        assert_eq!(r.status, 201, "{}", r.body);
        let changer = Cred::Bearer {
            token: r.field("session_token"),
        };

        let start_line = Barrier::new(3);
        let (change, racers) = thread::scope(|s| {
            let (api, start_line, old) = (&api, &start_line, password.as_str());
            let cookie = s.spawn(move || {
                start_line.wait();
                let r = must("cookie login", api.cookie_login("changer", old));
                if r.status == 200 {
                    Racer::Won(Cred::Cookie {
                        token: cookie_of(&r.head),
                        csrf: r.field("csrf_token"),
                    })
                } else {
                    Racer::Refused(r.outcome())
                }
            });
            let token = s.spawn(move || {
                start_line.wait();
                let r = must("token login", api.token_login("changer", old));
                if r.status == 200 {
                    Racer::Won(Cred::Access {
                        access: r.field("access_token"),
                        refresh: Some(r.field("refresh_token")),
                        retired: Vec::new(),
                    })
                } else {
                    Racer::Refused(r.outcome())
                }
            });
            start_line.wait();
            let change = must("password change", api.change_password(&changer, old, &new));
            (change, [cookie.join().unwrap(), token.join().unwrap()])
        });
        assert_eq!(change.status, 200, "trial {trial}: change: {}", change.body);
        password = new;
        // Every check below starts after the change's 200 was received.
        let fresh = Cred::Bearer {
            token: change.field("session_token"),
        };
        assert_eq!(
            must("status", api.status(&fresh)).outcome(),
            "200",
            "trial {trial}: the changing device's new session"
        );
        assert_eq!(
            must("status", api.status(&changer)).outcome(),
            "401 password_changed",
            "trial {trial}: the session that changed the password"
        );
        for racer in racers {
            match racer {
                Racer::Won(cred) => {
                    won += 1;
                    assert_eq!(
                        must("status", api.status(&cred)).outcome(),
                        "401 password_changed",
                        "trial {trial}: a {} login with the old password racing the change \
                         produced a session that is live after the change returned",
                        cred.kind()
                    );
                    if let Cred::Access {
                        refresh: Some(t), ..
                    } = &cred
                    {
                        assert_eq!(
                            must("refresh", api.refresh(t)).outcome(),
                            "400 password_changed",
                            "trial {trial}: its refresh token"
                        );
                    }
                }
                Racer::Refused(outcome) => {
                    refused += 1;
                    assert!(
                        [
                            "401 invalid_credentials",
                            "409 conflict",
                            "400 invalid_credentials",
                            "400 conflict"
                        ]
                        .contains(&outcome.as_str()),
                        "trial {trial}: a racing login was refused with {outcome}"
                    );
                }
            }
        }
        if trial % 10 == 9 {
            let old = format!("changer-password-{trial}");
            assert_eq!(
                must("login", api.cookie_login("changer", &old)).outcome(),
                "401 invalid_credentials",
                "trial {trial}: the old password after the change"
            );
        }
    }
    eprintln!(
        "password race: {PASSWORD_TRIALS} trials; {won} racing logins got a session (each \
         already password_changed), {refused} were refused"
    );
}
