//! A bounded soak of the real `sessionguard serve` binary on its embedded store:
//! a steady load with sessions expiring all the time, across one reaper pass.
//! Issue 6: "memory stays flat and expired records are purged".
//!
//! **The run.** The policy ends every session within seconds (`idle_timeout`
//! 2s, `absolute_timeout` 6s, `tombstone_retention` 1s). A few client threads
//! each create one sidecar session per [`TICK`] and follow it to its end: an
//! *idle* session is checked once and abandoned (it ends with `idle_timeout`), a
//! *kept-alive* one is validated every [`KEEPALIVE`] until it ends with
//! `absolute_timeout`, a *logged-out* one is logged out and then says
//! `logged_out`. Every answer is judged against what the client can know for
//! sure (below); every answer must be complete and not 5xx. Meanwhile the
//! server's RSS (`/proc/<pid>/status`) and the database and WAL file sizes are
//! sampled, and the live sessions of the users are listed through the admin
//! API.
//!
//! **The reaper.** It runs every [`REAP_INTERVAL`] (60 s, not configurable), and
//! its first pass comes one interval after start. The run is built around that
//! one pass: load until the pass, then [`AFTER_PASS`] more. A *canary* session,
//! expired long before, is polled around the expected moment: it says
//! `idle_timeout` until the pass and `invalid_token` (its record is gone)
//! after. Then every sampled session is checked again: those whose record the
//! pass had to delete answer `invalid_token`, those it had to keep still answer
//! their ending code. After a clean shutdown the database is opened again and
//! its stored sessions counted against the same bounds.
//!
//! **What is asserted.** (1) Every answer is one the server may give: 200 only
//! while the session may be live, its ending code once it may have ended, and
//! `invalid_token` only once a reaper pass may have deleted its record.
//! (2) After the pass, the sampled sessions and the reopened store show exactly
//! the records purged that had to be, and kept that had to be. (3) RSS in the
//! window after the pass stays within [`RSS_SLACK_KIB`] of its peak in the same
//! length of time before it. (4) The files stay bounded: see
//! [`check_files`]. (5) The admin listing of a user's live sessions never
//! counts a session the client has seen ended. No latency or throughput is
//! asserted.
//!
//! **Judging answers without timing assumptions.** The client cannot see the
//! server's clock, only when each of its requests started and when the answer
//! arrived; the server acted somewhere in between. So a session created by a
//! request that started at `s0` and was answered at `r0` has
//! `created_at ∈ [s0, r0]`, its idle deadline is at least `s0 + 2s`, and so on.
//! A request is *required* to find the session live only if even its latest
//! possible handling precedes the earliest possible deadline; *required* to find
//! it ended only if its earliest possible handling follows the latest possible
//! deadline; in between, either answer is accepted. A slow or stalled machine
//! therefore moves answers into the "either" band instead of failing the test.
//! [`MARGIN`] covers the drift between the client's monotonic clock and the
//! server's wall clock.
//!
//! **Why this test uses wall time.** The rule that tests never sleep is for rule
//! tests, which inject a clock. This one runs the shipped binary, whose clock is
//! the system's and whose reaper period is fixed: sessions expire and records
//! are purged only as real time passes. Sleeps here only pace the load (a fixed
//! number of requests per thread per [`TICK`]) and the canary's polling; nothing
//! sleeps "long enough" for an outcome, and no outcome depends on how long
//! anything took.

#![cfg(target_os = "linux")]

mod process;

use std::io;
use std::panic;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use process::{json_field, start_with, try_http};
use serde_json::{Value, json};
use sessionguard_core::{Store as _, UserId};
use sessionguard_server::{DB_FILE, REAP_INTERVAL};
use sessionguard_store_sqlite::SqliteStore;

// ---------------------------------------------------------------------------
// The plan.

/// `idle_timeout` of the soak's policy.
const IDLE: Duration = Duration::from_secs(2);
/// `absolute_timeout` of the soak's policy.
const ABSOLUTE: Duration = Duration::from_secs(6);
/// `tombstone_retention` of the soak's policy (of every profile).
const RETENTION: Duration = Duration::from_secs(1);
/// How much earlier than `now + idle_timeout` a validation may leave the idle
/// deadline: the engine coalesces touches closer than `idle_timeout / 20`.
const TOUCH_SLACK: Duration = Duration::from_millis(100);

/// The configuration file: the timeouts above.
const CONFIG: &str = r#"
[policy]
idle_timeout = "2s"
absolute_timeout = "6s"
tombstone_retention = "1s"
# Must not exceed absolute_timeout.
step_up_ttl = "6s"

# The reaper keeps records for the longest retention of any profile, the
# built-in ones included: theirs must be short too, or nothing is purged here.
[profiles.sensitive]
tombstone_retention = "1s"

[profiles.admin]
tombstone_retention = "1s"
"#;

/// Client threads.
const THREADS: usize = 3;
/// Users per client thread, served round-robin: a bounded set of users, as in a
/// steady state (users themselves are never purged).
const USERS_PER_THREAD: usize = 4;
/// Each thread creates one session per tick and makes at most
/// [`FOLLOW_UPS_PER_TICK`] other requests in it (plus one admin listing every
/// [`LIST_EVERY`] ticks): 8 sessions and about 55 requests per second per
/// thread, about 1 500 sessions stored when the reaper first runs.
const TICK: Duration = Duration::from_millis(125);
/// The bound on follow-up requests (checks, validations, logouts) per thread
/// per tick; about 6 are due per tick when the server keeps up.
const FOLLOW_UPS_PER_TICK: usize = 10;
/// A kept-alive session is validated this often: well inside `idle_timeout`.
const KEEPALIVE: Duration = Duration::from_millis(500);
/// A logged-out session is logged out, then checked, this long after its
/// previous step.
const STEP: Duration = Duration::from_millis(500);
/// One admin listing of a user's live sessions per this many ticks.
const LIST_EVERY: u64 = 10;
/// Every this-many-th session is checked again after the reaper pass.
const PROBE_EVERY: usize = 4;

/// How long the load goes on after the reaper pass was seen; also the length
/// of the window before the pass that RSS is compared with.
const AFTER_PASS: Duration = Duration::from_secs(25);
/// The canary is polled from this long before the earliest possible pass.
const CANARY_LEAD: Duration = Duration::from_secs(2);
/// Canary polling period.
const CANARY_POLL: Duration = Duration::from_millis(200);
/// How late after its earliest possible moment the pass may be seen before the
/// test gives up: far beyond any scheduling delay of a working reaper.
const PASS_GUARD: Duration = Duration::from_secs(45);

/// Clock drift allowance between the client's `Instant` and the server's wall
/// clock over a run (NTP slews at most 0.05%, i.e. 50 ms in 100 s).
const MARGIN: Duration = Duration::from_millis(500);
/// Memory sampling period.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// How much the RSS peak after the pass may exceed the peak in the
/// [`AFTER_PASS`] before it.
///
/// Before the pass, memory grows by design: the index holds every record
/// created since start, ended ones included, until the reaper deletes them
/// (measured: about 50 KiB/s here, records plus SQLite's page cache following
/// the file). After the pass it holds at most the records of the last
/// `AFTER_PASS + ABSOLUTE + RETENTION` seconds, fewer than before it, and the
/// allocator reuses the freed memory: a server without a leak stays at or below
/// the earlier peak (measured: within 100 KiB). The slack absorbs allocator
/// and thread noise (a new blocking-pool thread's stack and arena, one growth
/// step of a table) while still failing a leak of about 0.5 KiB per request
/// (some 4 000 requests follow the pass) or any steady growth of 80 KiB/s.
/// Records kept in memory after a purge are caught more precisely by the
/// record checks than by RSS.
const RSS_SLACK_KIB: u64 = 2 * 1024;

// ---------------------------------------------------------------------------
// The server's home.

/// A data folder and the configuration file.
struct Home {
    _dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sessionguard.toml");
        std::fs::write(&config, CONFIG).unwrap();
        Home {
            data: dir.path().join("data"),
            config,
            _dir: dir,
        }
    }

    fn db(&self) -> PathBuf {
        self.data.join(DB_FILE)
    }

    fn wal(&self) -> PathBuf {
        self.data.join(format!("{DB_FILE}-wal"))
    }
}

// ---------------------------------------------------------------------------
// The HTTP client.

/// A complete response.
#[derive(Debug)]
struct Resp {
    status: u16,
    body: String,
    /// When the request was started and when its answer was complete.
    sent: Instant,
    answered: Instant,
}

impl Resp {
    /// The stable `code` of an error body.
    fn code(&self) -> String {
        json_field(&self.body, "code")
    }

    /// `status code` for messages.
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

/// How the test talks to the running server; counts every exchange.
#[derive(Debug)]
struct Api {
    addr: String,
    admin: String,
    requests: AtomicU64,
}

impl Api {
    /// One exchange. Panics unless a complete, non-5xx answer came back.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let sent = Instant::now();
        let answer: io::Result<_> = try_http(&self.addr, method, path, headers, body);
        let answered = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (status, _, body) =
            answer.unwrap_or_else(|e| panic!("{method} {path}: no complete answer: {e}"));
        assert!(status < 500, "{method} {path}: {status} {body}");
        Resp {
            status,
            body,
            sent,
            answered,
        }
    }

    /// `POST /v1/admin/sessions`: a sidecar session (no password hashing).
    fn sidecar(&self, user: &str, user_agent: &str, ip: &str) -> Resp {
        let body = json!({ "user_id": user, "user_agent": user_agent, "ip": ip }).to_string();
        let bearer = format!("Bearer {}", self.admin);
        self.send(
            "POST",
            "/v1/admin/sessions",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            &body,
        )
    }

    /// `GET /v1/session/status`: checks without recording activity.
    fn status(&self, token: &str) -> Resp {
        let bearer = format!("Bearer {token}");
        self.send(
            "GET",
            "/v1/session/status",
            &[("authorization", &bearer)],
            "",
        )
    }

    /// `GET /v1/session`: validates and records activity (extends the idle
    /// deadline).
    fn validate(&self, token: &str) -> Resp {
        let bearer = format!("Bearer {token}");
        self.send("GET", "/v1/session", &[("authorization", &bearer)], "")
    }

    /// `POST /v1/logout` with the session token as bearer.
    fn logout(&self, token: &str) -> Resp {
        let bearer = format!("Bearer {token}");
        self.send("POST", "/v1/logout", &[("authorization", &bearer)], "")
    }

    /// `GET /v1/admin/users/{id}/sessions`: the number of live sessions.
    fn live_sessions(&self, user: &str) -> usize {
        let bearer = format!("Bearer {}", self.admin);
        let r = self.send(
            "GET",
            &format!("/v1/admin/users/{user}/sessions"),
            &[("authorization", &bearer)],
            "",
        );
        assert_eq!(r.status, 200, "listing the sessions of {user}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["sessions"]
            .as_array()
            .unwrap_or_else(|| panic!("no sessions array: {}", r.body))
            .len()
    }
}

// ---------------------------------------------------------------------------
// What the client knows about each session.

/// How a session is used and how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Checked once without recording activity, then abandoned: `idle_timeout`.
    Idle,
    /// Validated every [`KEEPALIVE`] until it ends: `absolute_timeout`.
    KeptAlive,
    /// Validated, logged out, checked: `logged_out`.
    LoggedOut,
}

/// A session and the bounds the client knows on its server-side deadlines.
#[derive(Debug)]
struct Sess {
    /// Which thread and which of its sessions, for messages.
    name: String,
    fate: Fate,
    /// Which of the thread's users it belongs to.
    user: usize,
    token: String,
    /// When the creating request started: `created_at` is no earlier, so the
    /// idle deadline is at least `born + IDLE` and the absolute one `born +
    /// ABSOLUTE`.
    born: Instant,
    /// The start of the last request that recorded activity and found the session
    /// live (the creation first): the idle deadline is at least
    /// `last_touch + IDLE - TOUCH_SLACK`, unless capped by the absolute one.
    last_touch: Instant,
    /// The latest the idle deadline (which is what the reaper compares) can be:
    /// the answer of the last live activity plus `IDLE`, capped by `answer of
    /// the creation + ABSOLUTE`.
    deadline_hi: Instant,
    /// The latest `deadline_hi` may grow to: the absolute deadline's bound.
    absolute_hi: Instant,
    /// Steps done, and when the next one is due.
    step: u32,
    due: Instant,
    /// The code it answers since it ended, once seen.
    end: Option<String>,
    /// Whether a logout of it was acknowledged.
    logged_out: bool,
    /// Whether it is checked again after the reaper pass.
    probe: bool,
}

impl Sess {
    /// The earliest its idle deadline can be. A logout freezes it, a validation
    /// only moves it later.
    fn deadline_lo(&self) -> Instant {
        self.born + IDLE
    }
}

/// The reaper pass, as seen by the canary.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// When the first answer saying the canary's record was gone arrived: the
    /// pass took its `now` before this, so its cutoff is at most `gone_by -
    /// RETENTION`.
    gone_by: Instant,
}

/// Shared by the client threads and the main thread.
#[derive(Debug)]
struct Ctx {
    api: Api,
    /// Taken before the server was spawned: the reaper's timer starts later, so
    /// its first pass takes `now` no earlier than `began + REAP_INTERVAL`, and
    /// its second no earlier than `began + 2 * REAP_INTERVAL`.
    began: Instant,
    stop: AtomicBool,
    pass: OnceLock<Pass>,
    /// Sessions created so far by the client threads.
    created: AtomicU64,
}

impl Ctx {
    /// Whether a reaper pass may have deleted the record of `sess` before an
    /// answer that arrived at `answered`: a pass must have run (not before
    /// `began + REAP_INTERVAL`) with a cutoff (`now - RETENTION`, before
    /// `answered`) past the session's idle deadline.
    fn may_be_purged(&self, sess: &Sess, answered: Instant) -> bool {
        answered + MARGIN >= self.began + REAP_INTERVAL
            && sess.deadline_lo() + RETENTION <= answered + MARGIN
    }

    /// Checks an answer about `sess` to a request (recording activity if
    /// `touching`) against what the client knows, and learns from it.
    fn judge(&self, sess: &mut Sess, what: &str, touching: bool, r: &Resp) {
        let ctx = || format!("{} ({:?}), {what}", sess.name, sess.fate);
        match r.status {
            200 | 204 => {
                assert!(
                    sess.end.is_none() && !sess.logged_out,
                    "{}: answered {} after it had answered {:?} (logged out: {})",
                    ctx(),
                    r.status,
                    sess.end,
                    sess.logged_out
                );
                // Handled no earlier than `sent`: the idle deadline must not have
                // surely passed by then.
                assert!(
                    r.sent < sess.deadline_hi + MARGIN,
                    "{}: live {:?} after the latest possible idle deadline",
                    ctx(),
                    r.sent - sess.deadline_hi
                );
                if touching {
                    sess.last_touch = r.sent;
                    sess.deadline_hi = (r.answered + IDLE)
                        .min(sess.absolute_hi)
                        .max(sess.deadline_hi);
                }
            }
            401 => {
                let code = r.code();
                if code == "invalid_token" {
                    assert!(
                        self.may_be_purged(sess, r.answered),
                        "{}: invalid_token (record gone) before any reaper pass could have \
                         deleted it ({:?} after start)",
                        ctx(),
                        r.answered - self.began
                    );
                } else if let Some(end) = &sess.end {
                    assert_eq!(&code, end, "{}: its ending code changed", ctx());
                } else {
                    // The first sign of its end: it may only be a deadline that
                    // could have passed.
                    let idle_possible = r.answered + MARGIN + TOUCH_SLACK >= sess.last_touch + IDLE;
                    let absolute_possible = r.answered + MARGIN >= sess.born + ABSOLUTE;
                    match code.as_str() {
                        "idle_timeout" => assert!(
                            idle_possible,
                            "{}: idle_timeout although validated {:?} before",
                            ctx(),
                            r.answered - sess.last_touch
                        ),
                        "absolute_timeout" => assert!(
                            absolute_possible,
                            "{}: absolute_timeout {:?} after creation",
                            ctx(),
                            r.answered - sess.born
                        ),
                        "logged_out" => assert!(sess.logged_out, "{}: logged_out", ctx()),
                        other => panic!("{}: ended with {other}: {}", ctx(), r.body),
                    }
                }
                if sess.end.is_none() {
                    sess.end = Some(code);
                }
            }
            _ => panic!("{}: {}", ctx(), r.outcome()),
        }
    }
}

/// Sets the stop flag if the thread panics, so that the others wind down.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------
// One client thread.

/// What one client thread saw.
#[derive(Debug, Default)]
struct Report {
    created: usize,
    /// Ending codes first seen, by code.
    endings: Vec<(String, usize)>,
    /// Sessions ended before their end was seen (record already purged).
    gone_before_end: usize,
    live_max: usize,
    /// Probes after the pass: required purged, required kept, either.
    purged: usize,
    /// Of the probes required purged, those whose ending code (the tombstone)
    /// had been seen before the pass.
    tombstone_then_purged: usize,
    kept: usize,
    either: usize,
    /// Over all sessions: how many the pass must have deleted, and how many it
    /// must have kept (for the reopened store).
    must_purge: usize,
    must_keep: usize,
}

impl Report {
    fn count_ending(&mut self, code: &str) {
        match self.endings.iter_mut().find(|(c, _)| c == code) {
            Some((_, n)) => *n += 1,
            None => self.endings.push((code.to_owned(), 1)),
        }
    }
}

fn user_name(t: usize, u: usize) -> String {
    format!("soak-{t}-{u}")
}

/// A realistic user agent of the longest length the server keeps (256 bytes),
/// so that each record weighs what a browser's does.
fn user_agent(t: usize) -> String {
    let mut ua = format!("Mozilla/5.0 (X11; Linux x86_64) soak-client/{t} ");
    while ua.len() < 256 {
        ua.push('x');
    }
    ua
}

/// Creates one session per tick and follows the sessions to their end until
/// told to stop, then checks its probes again once the reaper pass was seen.
fn client(ctx: &Ctx, t: usize) -> Report {
    let _stop_on_panic = StopOnPanic(&ctx.stop);
    let api = &ctx.api;
    let ua = user_agent(t);
    let ip = format!("198.51.100.{}", t + 1);
    let mut report = Report::default();
    let mut active: Vec<Sess> = Vec::new();
    let mut ended: Vec<Sess> = Vec::new();
    let mut next = Instant::now();
    let mut tick: u64 = 0;
    loop {
        let stopping = ctx.stop.load(Ordering::SeqCst);
        if stopping && active.is_empty() {
            break;
        }
        if !stopping {
            let n = report.created;
            let fate = [Fate::Idle, Fate::KeptAlive, Fate::LoggedOut][n % 3];
            let user = user_name(t, n % USERS_PER_THREAD);
            let r = api.sidecar(&user, &ua, &ip);
            assert_eq!(r.status, 201, "sidecar session for {user}: {}", r.body);
            active.push(Sess {
                name: format!("session {t}/{n}"),
                fate,
                user: n % USERS_PER_THREAD,
                token: json_field(&r.body, "session_token"),
                born: r.sent,
                last_touch: r.sent,
                deadline_hi: r.answered + IDLE,
                absolute_hi: r.answered + ABSOLUTE,
                step: 0,
                due: r.answered,
                end: None,
                logged_out: false,
                probe: n.is_multiple_of(PROBE_EVERY),
            });
            report.created += 1;
            ctx.created.fetch_add(1, Ordering::Relaxed);
        }

        // Follow-ups, the most overdue first, at most a fixed number per tick.
        active.sort_by_key(|s| s.due);
        let now = Instant::now();
        let due = active.iter().take_while(|s| s.due <= now).count();
        for sess in active.iter_mut().take(due.min(FOLLOW_UPS_PER_TICK)) {
            follow_up(ctx, sess);
        }
        let (done, rest): (Vec<Sess>, Vec<Sess>) = active.into_iter().partition(is_done);
        active = rest;
        for s in &done {
            match &s.end {
                Some(code) if code == "invalid_token" => report.gone_before_end += 1,
                Some(code) => report.count_ending(code),
                None => unreachable!("done means ended"),
            }
        }
        ended.extend(done);

        if !stopping && tick.is_multiple_of(LIST_EVERY) {
            // A session the server lists is live; one whose end this thread has
            // seen is not, and only this thread creates this user's sessions.
            let u = usize::try_from(tick / LIST_EVERY).unwrap() % USERS_PER_THREAD;
            let open = active
                .iter()
                .filter(|s| s.user == u && s.end.is_none())
                .count();
            let live = api.live_sessions(&user_name(t, u));
            assert!(
                live <= open,
                "the admin listing shows {live} live sessions of {}, but all but {open} \
                 of them were seen ended",
                user_name(t, u)
            );
            report.live_max = report.live_max.max(live);
        }
        tick += 1;

        // Pacing: a fixed rate, and no burst to catch up after a slow tick.
        next += TICK;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }

    // Only a normal stop (after the pass was seen) checks the probes again.
    let Some(pass) = ctx.pass.get().copied() else {
        return report;
    };
    for sess in &ended {
        let purged_by_first = sess.deadline_hi + RETENTION + MARGIN <= ctx.began + REAP_INTERVAL;
        let kept_by_first = sess.deadline_lo() > pass.gone_by - RETENTION + MARGIN;
        report.must_purge += usize::from(purged_by_first);
        report.must_keep += usize::from(kept_by_first);
        if !sess.probe {
            continue;
        }
        let r = api.status(&sess.token);
        let end = sess.end.as_deref().expect("ended");
        let said = r.outcome();
        // No second pass can have run before `began + 2 * REAP_INTERVAL`.
        let before_second = r.answered + MARGIN < ctx.began + 2 * REAP_INTERVAL;
        if purged_by_first {
            report.purged += 1;
            report.tombstone_then_purged += usize::from(end != "invalid_token");
            assert_eq!(
                said, "401 invalid_token",
                "{} ended ({end}) long before the reaper pass, yet its record is still there",
                sess.name
            );
        } else if kept_by_first && before_second {
            report.kept += 1;
            assert_eq!(
                said,
                format!("401 {end}"),
                "{}: its record must outlive the pass (deadline after its cutoff)",
                sess.name
            );
        } else {
            report.either += 1;
            assert!(
                said == format!("401 {end}") || said == "401 invalid_token",
                "{}: ended with {end}, now says {said}",
                sess.name
            );
        }
    }
    report
}

/// Whether a session has had all its steps. A session found ended before its
/// last step (a late check on a slow machine) has none left, except that a
/// logout is always checked afterwards.
fn is_done(s: &Sess) -> bool {
    let ended = s.end.is_some();
    match s.fate {
        Fate::Idle => s.step >= 2 || (s.step == 1 && ended),
        Fate::KeptAlive => ended,
        Fate::LoggedOut => s.step >= 3 || (s.step == 1 && ended),
    }
}

/// The next step of one session.
fn follow_up(ctx: &Ctx, sess: &mut Sess) {
    let api = &ctx.api;
    match (sess.fate, sess.step) {
        (Fate::Idle, 0) => {
            let r = api.status(&sess.token);
            ctx.judge(sess, "first check", false, &r);
            // Due once the idle deadline has surely passed.
            sess.due = sess.deadline_hi + MARGIN;
        }
        (Fate::Idle, _) => {
            let r = api.status(&sess.token);
            assert!(
                r.sent >= sess.deadline_hi,
                "scheduled after the idle deadline"
            );
            ctx.judge(sess, "check after its idle deadline", false, &r);
            assert!(sess.end.is_some(), "{}: still live", sess.name);
        }
        (Fate::KeptAlive, n) => {
            assert!(n < 100, "{}: still live after {n} validations", sess.name);
            let r = api.validate(&sess.token);
            ctx.judge(sess, &format!("validation {n}"), true, &r);
            sess.due = r.answered + KEEPALIVE;
        }
        (Fate::LoggedOut, 0) => {
            let r = api.validate(&sess.token);
            ctx.judge(sess, "validation", true, &r);
            sess.due = r.answered + STEP;
        }
        (Fate::LoggedOut, 1) => {
            let r = api.logout(&sess.token);
            ctx.judge(sess, "logout", false, &r);
            if r.status == 204 {
                sess.logged_out = true;
                // A session reports the first way it ended. The logout checks the
                // session, then revokes it: only if its deadlines surely had not
                // passed by the answer must it say `logged_out` from now on;
                // otherwise the next check tells which came first.
                let before_idle = r.answered + MARGIN + TOUCH_SLACK < sess.last_touch + IDLE;
                let before_absolute = r.answered + MARGIN < sess.born + ABSOLUTE;
                if before_idle && before_absolute {
                    sess.end = Some("logged_out".to_owned());
                }
            }
            sess.due = r.answered + STEP;
        }
        (Fate::LoggedOut, _) => {
            let r = api.status(&sess.token);
            ctx.judge(sess, "check after logout", false, &r);
        }
    }
    sess.step += 1;
}

// ---------------------------------------------------------------------------
// Sampling the process and its files.

/// One sample of the server's memory and files.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Since `Ctx::began`.
    at: Duration,
    rss_kib: u64,
    db: u64,
    wal: u64,
    /// Sessions created so far.
    created: u64,
}

/// `VmRSS` of the process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn sample_until(done: &AtomicBool, ctx: &Ctx, pid: u32, home: &Home) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut next = Instant::now();
    while !done.load(Ordering::SeqCst) {
        samples.push(Sample {
            at: ctx.began.elapsed(),
            rss_kib: rss_kib(pid),
            db: file_len(&home.db()),
            wal: file_len(&home.wal()),
            created: ctx.created.load(Ordering::Relaxed),
        });
        next += SAMPLE_EVERY;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    samples
}

// ---------------------------------------------------------------------------
// The canary.

/// Polls the canary (an idle session created before the load, ended two
/// seconds later) from shortly before the earliest possible pass until its
/// record is gone. Every answer before that must say `idle_timeout`.
fn watch_canary(ctx: &Ctx, canary: &mut Sess) -> Result<Pass, String> {
    let first = ctx.began + REAP_INTERVAL;
    loop {
        if ctx.stop.load(Ordering::SeqCst) {
            return Err("a client thread failed".to_owned());
        }
        let now = Instant::now();
        if now + CANARY_LEAD < first {
            thread::sleep(CANARY_POLL.min(first - CANARY_LEAD - now));
            continue;
        }
        if now > first + PASS_GUARD {
            return Err(format!(
                "no reaper pass seen {:?} after start (the first is due after {REAP_INTERVAL:?})",
                now - ctx.began
            ));
        }
        let r = ctx.api.status(&canary.token);
        ctx.judge(canary, "canary", false, &r);
        match r.outcome().as_str() {
            "401 idle_timeout" => {}
            "401 invalid_token" => {
                return Ok(Pass {
                    gone_by: r.answered,
                });
            }
            other => return Err(format!("the canary said {other}")),
        }
        thread::sleep(CANARY_POLL);
    }
}

// ---------------------------------------------------------------------------
// The files.

/// The largest WAL file allowed. SQLite checkpoints the WAL into the database
/// file once it holds 1000 pages (4 MiB at the default page size) and then
/// rewrites it from the start, so its size stays near that high-water mark; a
/// WAL that kept growing would mean checkpoints stopped.
const WAL_MAX: u64 = 16 * 1024 * 1024;

/// The database file after the pass grows, per session created, by at most
/// this fraction of what it grew per session in as long before the pass.
///
/// Before the pass, each session adds its record (a row and three index
/// entries) and its audit events (one or two rows, two index entries each) to
/// the file, and nothing is deleted. The pass deletes the records of roughly
/// the first `REAP_INTERVAL - ABSOLUTE - RETENTION` seconds, about twice as
/// many as are created in [`AFTER_PASS`], and SQLite reuses their pages: after
/// the pass the file should barely grow. Audit events are kept for at least a
/// day (`audit.retention`), so over a long run they, and only they, grow the
/// file; here they mostly fit in the freed pages too. A half leaves room for
/// a checkpoint landing on either side of the pass (the file only grows when the
/// WAL is checkpointed into it) and still fails a pass that deleted nothing from
/// the file, which grows after it as fast as before.
const DB_GROWTH_AFTER_PASS: (u64, u64) = (1, 2);

/// The database and WAL files stay bounded across the pass.
fn check_files(samples: &[Sample], pass_at: Duration) -> String {
    let wal_max = samples.iter().map(|s| s.wal).max().unwrap_or(0);
    assert!(
        wal_max <= WAL_MAX,
        "the WAL grew to {wal_max} bytes: checkpoints are not keeping up"
    );
    let start = samples
        .iter()
        .find(|s| s.at + AFTER_PASS >= pass_at)
        .expect("samples before the pass");
    let at_pass = samples
        .iter()
        .take_while(|s| s.at < pass_at)
        .last()
        .expect("samples before the pass");
    let end = samples.last().expect("samples");
    let grew = |a: &Sample, b: &Sample| (b.db.saturating_sub(a.db), b.created - a.created);
    let (grew_before, made_before) = grew(start, at_pass);
    let (grew_after, made_after) = grew(at_pass, end);
    assert!(
        made_before > 0 && made_after > 0,
        "sessions were created on both sides of the pass"
    );
    let (num, den) = DB_GROWTH_AFTER_PASS;
    assert!(
        grew_after * made_before * den <= grew_before * made_after * num,
        "the database file grew by {grew_after} bytes for {made_after} sessions after the \
         reaper pass, against {grew_before} bytes for {made_before} sessions before it"
    );
    format!(
        "database file +{grew_before} B for {made_before} sessions in the {AFTER_PASS:?} before \
         the pass, +{grew_after} B for {made_after} sessions after it; largest WAL {wal_max} B"
    )
}

// ---------------------------------------------------------------------------
// The test.

#[test]
fn a_steady_load_with_expiring_sessions_keeps_memory_flat_and_purges_expired_records() {
    let home = Home::new();
    let began = Instant::now();
    let running = start_with(
        home.data.to_str().unwrap(),
        &["--config", home.config.to_str().unwrap()],
    );
    let pid = running.server.pid();
    let ctx = Ctx {
        api: Api {
            addr: running.addr.clone(),
            admin: running.admin.clone(),
            requests: AtomicU64::new(0),
        },
        began,
        stop: AtomicBool::new(false),
        pass: OnceLock::new(),
        created: AtomicU64::new(0),
    };

    // The canary: an idle session that ends two seconds into the run.
    let r = ctx.api.sidecar("soak-canary", "canary", "192.0.2.1");
    assert_eq!(r.status, 201, "{}", r.body);
    let mut canary = Sess {
        name: "canary".to_owned(),
        fate: Fate::Idle,
        user: 0,
        token: json_field(&r.body, "session_token"),
        born: r.sent,
        last_touch: r.sent,
        deadline_hi: r.answered + IDLE,
        absolute_hi: r.answered + ABSOLUTE,
        step: 0,
        due: r.answered,
        end: None,
        logged_out: false,
        probe: false,
    };
    let r = ctx.api.status(&canary.token);
    ctx.judge(&mut canary, "canary first check", false, &r);

    let sampled = AtomicBool::new(false);
    let (reports, samples, watched) = thread::scope(|s| {
        let sampler = s.spawn(|| sample_until(&sampled, &ctx, pid, &home));
        let clients: Vec<_> = (0..THREADS)
            .map(|t| {
                let ctx = &ctx;
                s.spawn(move || client(ctx, t))
            })
            .collect();
        let watched =
            panic::catch_unwind(panic::AssertUnwindSafe(|| watch_canary(&ctx, &mut canary)));
        if let Ok(Ok(pass)) = &watched {
            ctx.pass.set(*pass).expect("set once");
            // Keep the load going for a while after the pass.
            let until = pass.gone_by + AFTER_PASS;
            while !ctx.stop.load(Ordering::SeqCst) && Instant::now() < until {
                thread::sleep(CANARY_POLL);
            }
        }
        ctx.stop.store(true, Ordering::SeqCst);
        let reports: Vec<_> = clients.into_iter().map(|h| h.join()).collect();
        sampled.store(true, Ordering::SeqCst);
        (reports, sampler.join(), watched)
    });
    // The first failure is the cause: a client's, then the sampler's, then the
    // canary's (which also stops when a client fails).
    let reports: Vec<Report> = reports
        .into_iter()
        .map(|r| r.unwrap_or_else(|p| panic::resume_unwind(p)))
        .collect();
    let samples = samples.unwrap_or_else(|p| panic::resume_unwind(p));
    let pass = match watched {
        Ok(Ok(pass)) => pass,
        Ok(Err(e)) => panic!("{e}"),
        Err(p) => panic::resume_unwind(p),
    };
    let elapsed = began.elapsed();

    // A clean stop, then the stored records, read back from the file.
    assert_eq!(running.server.terminate(), Some(0), "exit code of serve");
    let stopped = Instant::now();
    let stored = stored_sessions(&home.db());

    let total = |f: fn(&Report) -> usize| reports.iter().map(f).sum::<usize>();
    let (must_purge, must_keep) = (total(|r| r.must_purge), total(|r| r.must_keep));
    let created = total(|r| r.created);
    assert!(
        stored <= created - must_purge,
        "{stored} session records stored after the run, but {must_purge} of the {created} \
         created had to be purged by the pass"
    );
    if stopped + MARGIN < began + 2 * REAP_INTERVAL {
        assert!(
            stored >= must_keep,
            "{stored} session records stored after the run, but {must_keep} had to outlive \
             the pass"
        );
    }

    // Memory: the peak after the pass against the peak in as long before it.
    let pass_at = pass.gone_by - began;
    let before: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at + AFTER_PASS >= pass_at && s.at < pass_at)
        .collect();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= pass_at).collect();
    let peak = |v: &[&Sample]| v.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let (peak_before, peak_after) = (peak(&before), peak(&after));

    let endings = reports.iter().flat_map(|r| &r.endings).fold(
        Vec::<(String, usize)>::new(),
        |mut acc, (c, n)| {
            match acc.iter_mut().find(|(k, _)| k == c) {
                Some((_, m)) => *m += n,
                None => acc.push((c.clone(), *n)),
            }
            acc
        },
    );
    let curve: Vec<String> = samples
        .iter()
        .filter(|s| s.at.as_millis() % 5000 < SAMPLE_EVERY.as_millis())
        .map(|s| {
            format!(
                "{:>3}s {:>6} KiB db {:>7} wal {:>7}",
                s.at.as_secs(),
                s.rss_kib,
                s.db,
                s.wal
            )
        })
        .collect();
    eprintln!(
        "soak: {} requests in {elapsed:?}; {created} sessions created ({:?} ended as such, {} \
         already purged when their end was first seen); live sessions of a user at most {}; \
         reaper pass seen {pass_at:?} after start; probes after it: {} purged ({} of them seen \
         ended before), {} kept, {} either; stored after the run: {stored} (at least {must_keep}, at most {}); RSS peak \
         {peak_before} KiB in the {AFTER_PASS:?} before the pass, {peak_after} KiB after; \
         samples:\n  {}",
        ctx.api.requests.load(Ordering::Relaxed),
        endings,
        total(|r| r.gone_before_end),
        reports.iter().map(|r| r.live_max).max().unwrap_or(0),
        total(|r| r.purged),
        total(|r| r.tombstone_then_purged),
        total(|r| r.kept),
        total(|r| r.either),
        created - must_purge,
        curve.join("\n  ")
    );

    assert!(
        total(|r| r.tombstone_then_purged) > 0 && total(|r| r.kept) > 0,
        "the probes must include sessions on both sides of the pass"
    );
    assert!(
        before.len() >= 10 && after.len() >= 10,
        "too few memory samples around the pass"
    );
    assert!(
        peak_after <= peak_before + RSS_SLACK_KIB,
        "RSS grew from a peak of {peak_before} KiB before the reaper pass to {peak_after} KiB \
         after it"
    );
    let files = check_files(&samples, pass_at);
    eprintln!("soak: {files}");
}

/// The number of session records in the database file, read by opening it
/// (after the server has released it) and listing every soak user's records,
/// ended ones included.
fn stored_sessions(db: &Path) -> usize {
    let store = SqliteStore::open(db).expect("the database opens after a clean stop");
    let users: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..USERS_PER_THREAD).map(move |u| user_name(t, u)))
        .chain(["soak-canary".to_owned()])
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut n = 0;
        for u in &users {
            let id = UserId::new(u).unwrap();
            n += store.list_user_sessions(&id).await.unwrap().len();
        }
        n
    })
}
