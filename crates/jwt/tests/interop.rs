//! Interoperability: tokens from this crate verify with an independent JOSE
//! implementation (`jwt-simple`, whose Ed25519 is `ed25519-compact`), given only
//! the public JWKS document: the key is chosen by the token's `kid`, built from
//! the JWK's `x` (and `y`), and nothing private crosses over.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{
    ECDSAP256PublicKeyLike as _, ES256PublicKey, Ed25519PublicKey, EdDSAPublicKeyLike as _,
    JWTClaims, Token, UnixTimeStamp, VerificationOptions,
};
use serde::Deserialize;
use serde_json::Value;
use sessionguard_core::{SessionId, Timestamp};
use sessionguard_jwt::{AccessClaims, Algorithm, KeySet};

const ISS: &str = "https://auth.example";
const AUD: &str = "https://api.example";
const T0: u64 = 1_800_000_000;
const TTL: u64 = 300;

#[derive(Debug, Deserialize)]
struct Extra {
    sid: String,
    client_id: Option<String>,
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_millis(i64::try_from(secs).unwrap() * 1000)
}

/// jwt-simple's options for RFC 9068 tokens at `now`, without clock tolerance.
fn options(now: u64) -> VerificationOptions {
    VerificationOptions {
        required_signature_type: Some("at+jwt".into()),
        allowed_issuers: Some(HashSet::from([ISS.to_owned()])),
        allowed_audiences: Some(HashSet::from([AUD.to_owned()])),
        time_tolerance: Some(UnixTimeStamp::from_secs(0)),
        artificial_time: Some(UnixTimeStamp::from_secs(now)),
        ..VerificationOptions::default()
    }
}

fn b64(s: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.as_str().expect("a base64url string"))
        .expect("valid base64url")
}

/// Verifies `token` with jwt-simple, using only the JWKS: the JWK whose `kid`
/// the token names, and the algorithm that JWK declares.
fn verify_with_jwks(
    jwks: &Value,
    token: &str,
    now: u64,
) -> Result<JWTClaims<Extra>, jwt_simple::Error> {
    let meta = Token::decode_metadata(token)?;
    let kid = meta.key_id().expect("our tokens carry a kid");
    let jwk = jwks["keys"]
        .as_array()
        .expect("a JWKS has a keys array")
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| jwt_simple::Error::msg("no such kid in the JWKS"))?;
    assert_eq!(jwk["use"], "sig");
    match (
        jwk["kty"].as_str(),
        jwk["crv"].as_str(),
        jwk["alg"].as_str(),
    ) {
        (Some("OKP"), Some("Ed25519"), Some("EdDSA")) => {
            let key = Ed25519PublicKey::from_bytes(&b64(&jwk["x"]))?;
            key.verify_token::<Extra>(token, Some(options(now)))
        }
        (Some("EC"), Some("P-256"), Some("ES256")) => {
            let mut sec1 = vec![0x04];
            sec1.extend(b64(&jwk["x"]));
            sec1.extend(b64(&jwk["y"]));
            let key = ES256PublicKey::from_bytes(&sec1)?;
            key.verify_token::<Extra>(token, Some(options(now)))
        }
        other => panic!("unexpected JWK type {other:?}"),
    }
}

fn claims() -> AccessClaims {
    AccessClaims::new(
        ISS,
        "u_alice",
        AUD,
        SessionId::random(),
        at(T0),
        Duration::from_secs(TTL),
    )
    .with_client_id("app")
}

#[test]
fn tokens_of_both_algorithms_verify_with_jwt_simple_from_the_jwks() {
    for alg in [Algorithm::EdDSA, Algorithm::ES256] {
        let keys = KeySet::generate(alg, at(T0));
        let c = claims();
        let token = keys.sign(&c).unwrap();

        let got = verify_with_jwks(&keys.jwks(), &token, T0 + 1).unwrap();
        assert_eq!(got.issuer.as_deref(), Some(ISS));
        assert_eq!(got.subject.as_deref(), Some("u_alice"));
        assert_eq!(got.jwt_id.as_deref(), Some(c.jti()));
        assert_eq!(got.issued_at.unwrap().as_secs(), T0);
        assert_eq!(got.expires_at.unwrap().as_secs(), T0 + TTL);
        assert_eq!(got.custom.sid, c.sid().to_string());
        assert_eq!(got.custom.client_id.as_deref(), Some("app"));
        let meta = Token::decode_metadata(&token).unwrap();
        assert_eq!(meta.algorithm(), alg.as_str());
        assert_eq!(meta.signature_type(), Some("at+jwt"));
    }
}

#[test]
fn jwt_simple_rejects_what_it_should() {
    for alg in [Algorithm::EdDSA, Algorithm::ES256] {
        let keys = KeySet::generate(alg, at(T0));
        let token = keys.sign(&claims()).unwrap();

        // A flipped bit in the signature.
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 1;
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert!(verify_with_jwks(&keys.jwks(), &forged, T0 + 1).is_err());

        // Another key set's JWKS does not know the kid, and a JWK with the right
        // kid but another key does not verify.
        let other = KeySet::generate(alg, at(T0));
        assert!(verify_with_jwks(&other.jwks(), &token, T0 + 1).is_err());
        let mut swapped = other.jwks();
        swapped["keys"][0]["kid"] = keys.jwks()["keys"][0]["kid"].clone();
        assert!(verify_with_jwks(&swapped, &token, T0 + 1).is_err());

        // Well past expiry.
        assert!(verify_with_jwks(&keys.jwks(), &token, T0 + TTL + 1).is_err());
    }
}

#[test]
fn a_retired_key_still_verifies_through_the_jwks_until_pruned() {
    let max_ttl = Duration::from_secs(TTL);
    let mut keys = KeySet::generate(Algorithm::EdDSA, at(T0));
    let old = keys.sign(&claims()).unwrap();
    keys.rotate(Algorithm::ES256, at(T0 + 10));
    let new = keys.sign(&claims()).unwrap();

    let jwks = keys.jwks();
    assert!(verify_with_jwks(&jwks, &old, T0 + 11).is_ok());
    assert!(verify_with_jwks(&jwks, &new, T0 + 11).is_ok());

    keys.prune(at(T0 + 10 + TTL), max_ttl);
    let jwks = keys.jwks();
    assert!(verify_with_jwks(&jwks, &old, T0 + 11).is_err());
    assert!(verify_with_jwks(&jwks, &new, T0 + 11).is_ok());
}
