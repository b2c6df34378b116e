//! Micro-benchmarks of access tokens.
//!
//! - `verify/{eddsa,es256}`: [`Verifier::verify`] of a valid token, every step of
//!   the [verification order](sessionguard_jwt#verification-order): length,
//!   header, `typ`, `kid`, pinned algorithm, signature, claims;
//! - `reject/*`: tokens refused before any signature is computed: `alg: none`
//!   (refused once the named key's algorithm is compared), an unknown `kid`, and
//!   a token over [`MAX_TOKEN_LEN`] (refused before any decoding);
//! - `sign/{eddsa,es256}`: [`KeySet::sign`] of one token's claims (header and
//!   payload to JSON, base64url, signature).
//!
//! `cargo bench -p sessionguard-jwt --bench verify`; figures in docs/BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use sessionguard_core::{SessionId, Timestamp};
use sessionguard_jwt::{AccessClaims, Algorithm, JwtError, KeySet, MAX_TOKEN_LEN, Verifier};

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const ISS: &str = "https://auth.example";
const AUD: &str = "https://api.example";

/// Claims as the server issues them: a 5-minute token bound to a session.
fn claims() -> AccessClaims {
    AccessClaims::new(
        ISS,
        "app-user-000042",
        AUD,
        SessionId::random(),
        NOW,
        Duration::from_secs(300),
    )
}

/// A compact JWS with the given header and a real payload, signed with nothing.
fn unsigned(header: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).expect("claims serialize"));
    format!("{header}.{payload}.")
}

fn verify(c: &mut Criterion) {
    let verifier = Verifier::new(ISS, AUD);
    let eddsa = KeySet::generate(Algorithm::EdDSA, NOW);
    let es256 = KeySet::generate(Algorithm::ES256, NOW);
    let eddsa_token = eddsa.sign(&claims()).expect("sign EdDSA");
    let es256_token = es256.sign(&claims()).expect("sign ES256");
    assert!(verifier.verify(&eddsa, &eddsa_token, NOW).is_ok());
    assert!(verifier.verify(&es256, &es256_token, NOW).is_ok());

    let kid = eddsa.active().kid().as_str();
    let alg_none = unsigned(&serde_json::json!({ "alg": "none", "typ": "at+jwt", "kid": kid }));
    let unknown_kid =
        unsigned(&serde_json::json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": "no-such-key" }));
    let too_long = "a".repeat(MAX_TOKEN_LEN + 1);
    for (token, expected) in [
        (&alg_none, "UnsupportedAlgorithm"),
        (&unknown_kid, "UnknownKey"),
        (&too_long, "TooLong"),
    ] {
        let err = verifier.verify(&eddsa, token, NOW).expect_err("refused");
        let got = match err {
            JwtError::UnsupportedAlgorithm => "UnsupportedAlgorithm",
            JwtError::UnknownKey => "UnknownKey",
            JwtError::TooLong => "TooLong",
            _ => "another error",
        };
        assert_eq!(got, expected);
    }

    let mut g = c.benchmark_group("verify");
    g.bench_function("eddsa", |b| {
        b.iter(|| verifier.verify(&eddsa, black_box(&eddsa_token), NOW))
    });
    g.bench_function("es256", |b| {
        b.iter(|| verifier.verify(&es256, black_box(&es256_token), NOW))
    });
    g.finish();

    let mut g = c.benchmark_group("reject");
    g.bench_function("alg_none", |b| {
        b.iter(|| verifier.verify(&eddsa, black_box(&alg_none), NOW))
    });
    g.bench_function("unknown_kid", |b| {
        b.iter(|| verifier.verify(&eddsa, black_box(&unknown_kid), NOW))
    });
    g.bench_function("too_long", |b| {
        b.iter(|| verifier.verify(&eddsa, black_box(&too_long), NOW))
    });
    g.finish();
}

fn sign(c: &mut Criterion) {
    let eddsa = KeySet::generate(Algorithm::EdDSA, NOW);
    let es256 = KeySet::generate(Algorithm::ES256, NOW);
    let claims = claims();

    let mut g = c.benchmark_group("sign");
    g.bench_function("eddsa", |b| b.iter(|| eddsa.sign(black_box(&claims))));
    g.bench_function("es256", |b| b.iter(|| es256.sign(black_box(&claims))));
    g.finish();
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
    targets = verify, sign
}
criterion_main!(benches);
