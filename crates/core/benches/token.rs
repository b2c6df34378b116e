//! Micro-benchmarks of the session token and of the engine's session check.
//!
//! - `token/parse/*`: [`Token::parse`] of a genuine session token (length, prefix,
//!   base64url, CRC-32) and its rejections: wrong length, another kind's prefix, a
//!   bad checksum (one character changed: the whole body is decoded first);
//! - `token/verify/*`: [`Token::verify`], SHA-256 of the verifier compared in
//!   constant time with the stored [`VerifierHash`], matching and not;
//! - `engine/*`: [`Engine::status`] and [`Engine::validate_renewing`] (the cookie
//!   check) on a [`MemoryStore`] holding 100 000 live sessions, one user each,
//!   one picked at random per call. The manual clock does not move, so no touch
//!   and no rotation is ever due: this is the read path alone.
//!   `validate_renewing_observed` is the same check through an engine with an
//!   observer (`sessionguard_core::observe`) counting each check atomically.
//!
//! `cargo bench -p sessionguard-core --bench token`; figures in docs/BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sessionguard_core::observe::{Observation, Observer};
use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    ClientInfo, Engine, ManualClock, MemoryStore, Policy, Store as _, Timestamp, Token, TokenError,
    TokenKind, UserId,
};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
/// Live sessions in the engine benchmark, as in the HTTP scenarios.
const SESSIONS: usize = 100_000;

fn token(c: &mut Criterion) {
    let genuine = Token::generate(TokenKind::Session);
    let text = genuine.reveal().to_string();
    let refresh = Token::generate(TokenKind::Refresh).reveal().to_string();
    let bad_checksum = change_one_char(&text);
    assert_eq!(
        Token::parse(&bad_checksum, TokenKind::Session).err(),
        Some(TokenError::BadChecksum)
    );
    let stored = genuine.verifier_hash();
    let other: VerifierHash = Token::generate(TokenKind::Session).verifier_hash();

    let mut g = c.benchmark_group("token");
    g.bench_function("parse/valid", |b| {
        b.iter(|| Token::parse(black_box(&text), TokenKind::Session))
    });
    g.bench_function("parse/reject_wrong_length", |b| {
        b.iter(|| Token::parse(black_box("not-a-session-token"), TokenKind::Session))
    });
    g.bench_function("parse/reject_refresh_prefix", |b| {
        b.iter(|| Token::parse(black_box(&refresh), TokenKind::Session))
    });
    g.bench_function("parse/reject_bad_checksum", |b| {
        b.iter(|| Token::parse(black_box(&bad_checksum), TokenKind::Session))
    });
    g.bench_function("verify/match", |b| {
        b.iter(|| black_box(&genuine).verify(black_box(&stored)))
    });
    g.bench_function("verify/mismatch", |b| {
        b.iter(|| black_box(&genuine).verify(black_box(&other)))
    });
    g.finish();
}

/// The same token with one character of its id replaced by another base64url
/// character: still well-formed, but the CRC no longer matches. (Not the last
/// character: its two low bits are padding, and changing them is `Malformed`.)
fn change_one_char(text: &str) -> String {
    let at = TokenKind::Session.prefix().len() + 10;
    let replacement = if &text[at..=at] == "A" { "B" } else { "A" };
    format!("{}{replacement}{}", &text[..at], &text[at + 1..])
}

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let clock = ManualClock::new(T0);
    let engine = Engine::with_clock(MemoryStore::new(), clock.clone(), Policy::default())
        .expect("the default policy is valid");
    let tokens: Vec<String> = rt.block_on(async {
        let mut tokens = Vec::with_capacity(SESSIONS);
        for i in 0..SESSIONS {
            let user = UserId::new(&format!("app-user-{i:06}")).expect("a valid user id");
            let epoch = engine.store().user_epoch(&user).await.expect("epoch").epoch;
            let issued = engine
                .create_session(&user, epoch, ClientInfo::default())
                .await
                .expect("no session limit on the default profile");
            tokens.push(issued.token.reveal().to_string());
        }
        tokens
    });
    assert!(rt.block_on(engine.status(&tokens[0])).is_ok());

    let mut g = c.benchmark_group("engine");
    let mut pick = Picker::new(tokens.len());
    g.bench_function("status/100k_sessions_random", |b| {
        b.to_async(&rt).iter(|| {
            let token = tokens[pick.next()].as_str();
            let engine = &engine;
            async move { engine.status(black_box(token)).await.is_ok() }
        })
    });
    g.bench_function("validate_renewing/100k_sessions_random", |b| {
        b.to_async(&rt).iter(|| {
            let token = tokens[pick.next()].as_str();
            let engine = &engine;
            async move { engine.validate_renewing(black_box(token)).await.is_ok() }
        })
    });
    // The same sessions (one shared store) through an engine that tells an
    // observer of each check, as the server's metrics do.
    let observed = Engine::with_clock(engine.store().clone(), clock, Policy::default())
        .expect("the default policy is valid")
        .with_observer(Arc::new(Counting::default()));
    g.bench_function("validate_renewing_observed/100k_sessions_random", |b| {
        b.to_async(&rt).iter(|| {
            let token = tokens[pick.next()].as_str();
            let engine = &observed;
            async move { engine.validate_renewing(black_box(token)).await.is_ok() }
        })
    });
    g.finish();
}

/// An observer that counts each observation with one atomic increment per
/// kind, as a metrics registry's counter does.
#[derive(Debug, Default)]
struct Counting([AtomicU64; 2]);

impl Observer for Counting {
    fn observe(&self, event: Observation) {
        let at = usize::from(!matches!(
            event,
            Observation::Check {
                outcome: Ok(()),
                ..
            }
        ));
        self.0[at].fetch_add(1, Ordering::Relaxed);
    }
}

/// A cheap pseudo-random index (xorshift64*): no dependency, and the same
/// sequence on every run.
#[derive(Debug)]
struct Picker {
    state: u64,
    len: u64,
}

impl Picker {
    fn new(len: usize) -> Self {
        Picker {
            state: 0x9E37_79B9_7F4A_7C15,
            len: len as u64,
        }
    }

    fn next(&mut self) -> usize {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % self.len) as usize
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = token, engine
}
criterion_main!(benches);
