//! Micro-benchmarks of the middleware's hot path, in-process and without a
//! network: one request through an axum router, end to end (`oneshot`).
//!
//! - `layer/bare`: the hello handler alone (the ceiling);
//! - `layer/session_memory`: the same handler, taking a [`Session`], behind
//!   [`SessionLayer`](sessionguard_axum::SessionLayer) over a
//!   [`MemoryStore`] holding 100 000 live sessions, one user each; each call
//!   presents another session's cookie (no touch or rotation is due: the
//!   manual clock does not move), so this is the read path a request pays;
//! - `layer/anonymous`: a request without a credential through the layer to a
//!   handler taking `Option<Session>`.
//!
//! `cargo bench -p sessionguard-axum --bench layer`; under callgrind for
//! instruction counts: see docs/BENCHMARKS.md.

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use sessionguard_axum::{InProcess, Session};
use sessionguard_core::{ClientInfo, Engine, ManualClock, MemoryStore, Policy, Timestamp, UserId};
use tower::ServiceExt as _;

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);
/// Live sessions, as in the HTTP scenarios.
const SESSIONS: usize = 100_000;

async fn hello() -> &'static str {
    "hello"
}

async fn hello_session(s: Session) -> String {
    s.user_id().as_str().to_owned()
}

async fn hello_maybe(s: Option<Session>) -> &'static str {
    if s.is_some() { "hello you" } else { "hello" }
}

fn request(cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().uri("/");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Body::empty()).expect("a valid request")
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let engine = Engine::with_clock(MemoryStore::new(), ManualClock::new(T0), Policy::default())
        .expect("the default policy is valid");
    let cookies: Vec<String> = rt.block_on(async {
        let mut out = Vec::with_capacity(SESSIONS);
        for i in 0..SESSIONS {
            let user = UserId::new(&format!("app-user-{i:06}")).expect("a valid id");
            let issued = engine
                .create_session(&user, 0, ClientInfo::default())
                .await
                .expect("a session");
            out.push(format!(
                "__Host-sg_session={}",
                issued.token.reveal().as_str()
            ));
        }
        out
    });
    let sessions = InProcess::new(engine, "https://app.example");
    let bare = Router::new().route("/", get(hello));
    let guarded = Router::new()
        .route("/", get(hello_session))
        .layer(sessions.layer());
    let maybe = Router::new()
        .route("/", get(hello_maybe))
        .layer(sessions.layer());

    let mut g = c.benchmark_group("layer");
    g.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.clone().oneshot(request(Some(&cookies[0]))).await) })
    });
    let mut i = 0usize;
    g.bench_function("session_memory", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7919) % SESSIONS;
            let req = request(Some(&cookies[i]));
            let router = guarded.clone();
            async move {
                let res = router.oneshot(req).await.expect("infallible");
                assert_eq!(res.status(), 200);
                black_box(res)
            }
        })
    });
    g.bench_function("anonymous", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(maybe.clone().oneshot(request(None)).await) })
    });
    g.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
