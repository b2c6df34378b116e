//! Verification of access tokens, in the order given in
//! [the crate docs](crate#verification-order).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sessionguard_core::{SessionId, Timestamp};

use crate::JwtError;
use crate::claims::AccessClaims;
use crate::keys::{KeySet, is_valid_kid};
use crate::memo::SignatureMemo;

/// Longest token accepted, in bytes (4 KiB). Longer input is refused before any
/// decoding. Our own tokens are well under 1 KiB.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Whether a bearer value has the shape of a JWT: at most [`MAX_TOKEN_LEN`]
/// bytes of base64url in exactly three dot-separated segments. Only a shape:
/// whether it is one of ours is for [`Verifier::verify`] to say. sessionguard's
/// opaque tokens (`sgs_`, `sgr_`, `sga_`) never have this shape.
///
/// ```
/// assert!(sessionguard_jwt::looks_like_jwt("eyJhbGciOiJFZERTQSJ9.e30.c2ln"));
/// assert!(!sessionguard_jwt::looks_like_jwt("sgs_AAAA"));
/// ```
pub fn looks_like_jwt(s: &str) -> bool {
    s.len() <= MAX_TOKEN_LEN
        && s.split('.').count() == 3
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks access tokens against a [`KeySet`], an expected issuer and an expected
/// audience.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | issuer | (required) | `iss` must equal it exactly |
/// | audience | (required) | `aud` must be it, or an array containing it |
/// | leeway | 0 s | tolerated clock skew for `exp`, `nbf` and `iat` |
///
/// The leeway defaults to zero because the issuer and this verifier normally
/// share one clock (sessionguard verifies its own tokens). A resource server on
/// another machine may allow a few seconds with [`Verifier::with_leeway`]; every
/// second of leeway is a second more of life for an expired token.
///
/// There is no setting for the algorithm: it is the key's (see
/// [algorithm pinning](crate#algorithm-pinning)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    issuer: String,
    audience: String,
    leeway: Duration,
}

/// The header fields that are read, as they are sent; nothing in it is trusted.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// The payload as sent: every claim optional, so that a missing one is reported
/// by name; a claim of the wrong JSON type makes the payload malformed.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    sid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Verifier {
    /// A verifier for tokens issued by `issuer` to `audience`, with no leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Verifier {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Duration::ZERO,
        }
    }

    /// Tolerates `leeway` of clock skew when checking `exp`, `nbf` and `iat`.
    /// Keep it to seconds.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The expected issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The expected audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The tolerated clock skew.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies `token` against `keys` at `now` and returns its claims.
    ///
    /// The checks run in the [documented order](crate#verification-order); the
    /// first that fails decides the error. Nothing of the header is trusted before
    /// the key it names has been found and its algorithm compared, and nothing of
    /// the payload is read before the signature has been verified.
    pub fn verify(
        &self,
        keys: &KeySet,
        token: &str,
        now: Timestamp,
    ) -> Result<AccessClaims, JwtError> {
        self.verify_with(keys, token, now, None)
    }

    /// Like [`Verifier::verify`], but the signature computation is skipped when
    /// `memo` says this exact token was verified before with this exact key, and a
    /// signature that verifies is remembered there. Every other check still runs,
    /// in the same order, on every call: see [`SignatureMemo`].
    pub fn verify_memoized(
        &self,
        keys: &KeySet,
        token: &str,
        now: Timestamp,
        memo: &SignatureMemo,
    ) -> Result<AccessClaims, JwtError> {
        self.verify_with(keys, token, now, Some(memo))
    }

    fn verify_with(
        &self,
        keys: &KeySet,
        token: &str,
        now: Timestamp,
        memo: Option<&SignatureMemo>,
    ) -> Result<AccessClaims, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: RawHeader = decode_json(header_b64)?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: critical extensions we do not understand.
            return Err(JwtError::Malformed);
        }
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err(JwtError::WrongType);
        }
        let kid = header
            .kid
            .as_deref()
            .filter(|kid| is_valid_kid(kid))
            .ok_or(JwtError::InvalidKeyId)?;
        let key = keys.get(kid).ok_or(JwtError::UnknownKey)?;
        // The key pins the algorithm; the header's `alg` may only agree with it.
        if header.alg != key.alg().as_str() {
            return Err(JwtError::UnsupportedAlgorithm);
        }
        let memo = memo.map(|memo| (memo, SignatureMemo::key(key, token)));
        let remembered = memo.is_some_and(|(memo, k)| memo.contains(k));
        if !remembered {
            let signature = URL_SAFE_NO_PAD
                .decode(signature_b64)
                .map_err(|_| JwtError::Malformed)?;
            let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
            if !key.verify_message(signing_input.as_bytes(), &signature) {
                return Err(JwtError::BadSignature);
            }
        }
        let claims: RawClaims = decode_json(payload_b64)?;
        let claims = self.check_claims(claims, now)?;
        if let Some((memo, k)) = memo.filter(|_| !remembered) {
            memo.insert(k, claims.exp(), now);
        }
        Ok(claims)
    }

    fn check_claims(&self, c: RawClaims, now: Timestamp) -> Result<AccessClaims, JwtError> {
        let now_ms = now.as_millis();
        let leeway_ms = i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX);
        let ms = |secs: i64| secs.saturating_mul(1000);

        let exp = c.exp.ok_or(JwtError::MissingClaim("exp"))?;
        if now_ms >= ms(exp).saturating_add(leeway_ms) {
            return Err(JwtError::Expired);
        }
        let iat = c.iat.ok_or(JwtError::MissingClaim("iat"))?;
        for not_before in std::iter::once(iat).chain(c.nbf) {
            if ms(not_before) > now_ms.saturating_add(leeway_ms) {
                return Err(JwtError::NotYetValid);
            }
        }

        let iss = c.iss.ok_or(JwtError::MissingClaim("iss"))?;
        if iss != self.issuer {
            return Err(JwtError::WrongIssuer);
        }
        let aud = match c.aud.ok_or(JwtError::MissingClaim("aud"))? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        };
        if !aud.contains(&self.audience) {
            return Err(JwtError::WrongAudience);
        }

        let sub = c
            .sub
            .filter(|s| !s.is_empty())
            .ok_or(JwtError::MissingClaim("sub"))?;
        let sid = c.sid.ok_or(JwtError::MissingClaim("sid"))?;
        let sid = SessionId::parse(&sid).map_err(|_| JwtError::Malformed)?;
        let jti = c
            .jti
            .filter(|j| !j.is_empty())
            .ok_or(JwtError::MissingClaim("jti"))?;

        Ok(AccessClaims::from_verified(
            iss,
            sub,
            aud,
            exp,
            iat,
            c.nbf,
            jti,
            c.client_id,
            sid,
        ))
    }
}

/// `at+jwt` or `application/at+jwt`, compared without regard to ASCII case
/// (media types are case-insensitive; RFC 7515 §4.1.9, RFC 8725 §3.11).
fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// Decodes one base64url segment holding a JSON object of shape `T`.
fn decode_json<T: for<'de> Deserialize<'de>>(segment: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)?;
    if bytes.first() != Some(&b'{') {
        return Err(JwtError::Malformed);
    }
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.e30."));
        assert!(!looks_like_jwt("sgs_abc"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a.b.c d"));
        assert!(!looks_like_jwt("a.b.c/"));
        assert!(!looks_like_jwt(&format!(
            "a.b.{}",
            "c".repeat(MAX_TOKEN_LEN)
        )));
    }
    use crate::keys::{Algorithm, SigningKey, sign_compact};
    use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    use serde_json::{Value, json};

    const ISS: &str = "https://auth.example";
    const AUD: &str = "https://api.example";
    const T0: i64 = 1_800_000_000;
    const TTL: u64 = 300;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    fn verifier() -> Verifier {
        Verifier::new(ISS, AUD)
    }

    fn claims() -> AccessClaims {
        claims_at(T0)
    }

    /// Claims issued at `secs`, living `TTL`.
    fn claims_at(secs: i64) -> AccessClaims {
        AccessClaims::new(
            ISS,
            "u_alice",
            AUD,
            SessionId::random(),
            at(secs),
            Duration::from_secs(TTL),
        )
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn header_for(key: &SigningKey) -> Value {
        json!({"alg": key.alg().as_str(), "typ": "at+jwt", "kid": key.kid().as_str()})
    }

    fn payload() -> Value {
        serde_json::to_value(claims()).unwrap()
    }

    /// A token with this header and payload, validly signed by `key`.
    fn signed(key: &SigningKey, header: &Value, payload: &Value) -> String {
        sign_compact(
            key,
            &serde_json::to_vec(header).unwrap(),
            &serde_json::to_vec(payload).unwrap(),
        )
        .unwrap()
    }

    /// A token with this header and payload, signed by `key`'s default header
    /// (so that only the claims differ from a good token).
    fn with_payload(keys: &KeySet, payload: &Value) -> String {
        signed(keys.active(), &header_for(keys.active()), payload)
    }

    /// `header.payload` with an arbitrary signature segment.
    fn unsigned(header: &Value, payload: &Value, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            b64(serde_json::to_vec(header).unwrap()),
            b64(serde_json::to_vec(payload).unwrap())
        )
    }

    fn hmac_token(
        header: &Value,
        payload: &Value,
        alg: jsonwebtoken::Algorithm,
        secret: &[u8],
    ) -> String {
        let input = format!(
            "{}.{}",
            b64(serde_json::to_vec(header).unwrap()),
            b64(serde_json::to_vec(payload).unwrap())
        );
        let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
        let signer = (DEFAULT_PROVIDER.signer_factory)(&alg, &key).unwrap();
        format!(
            "{input}.{}",
            b64(signer.try_sign(input.as_bytes()).unwrap())
        )
    }

    #[track_caller]
    fn assert_rejected(keys: &KeySet, token: &str, now: Timestamp, expected: JwtError) {
        match verifier().verify(keys, token, now) {
            Err(e) => assert_eq!(
                std::mem::discriminant(&e),
                std::mem::discriminant(&expected),
                "token {token:?}: got {e:?}, expected {expected:?}"
            ),
            Ok(c) => panic!("token {token:?} was accepted: {c:?}"),
        }
        if let (Err(JwtError::MissingClaim(got)), JwtError::MissingClaim(want)) =
            (verifier().verify(keys, token, now), expected)
        {
            assert_eq!(got, want);
        }
    }

    /// A foreign key set whose (different) key has the kid of `keys`' active key.
    fn impostor_of(keys: &KeySet) -> KeySet {
        let alg = keys.active().alg();
        let other = KeySet::generate(alg, at(T0));
        let mut doc: Value = serde_json::from_str(&other.to_json_secret()).unwrap();
        doc["keys"][0]["kid"] = json!(keys.active().kid().as_str());
        KeySet::from_json_secret(&doc.to_string()).unwrap()
    }

    fn both() -> [KeySet; 2] {
        [
            KeySet::generate(Algorithm::EdDSA, at(T0)),
            KeySet::generate(Algorithm::ES256, at(T0)),
        ]
    }

    // --- round trip ---------------------------------------------------------

    #[test]
    fn signed_tokens_verify_and_claims_survive() {
        for keys in both() {
            let c = claims()
                .with_client_id("app")
                .with_not_before(at(T0))
                .with_audience("other");
            let token = keys.sign(&c).unwrap();
            assert_eq!(verifier().verify(&keys, &token, at(T0)).unwrap(), c);
            assert_eq!(
                verifier()
                    .verify(&keys, &token, at(T0 + TTL as i64 - 1))
                    .unwrap(),
                c
            );
        }
    }

    #[test]
    fn type_is_compared_case_insensitively_with_optional_media_prefix() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        for typ in [
            "at+jwt",
            "AT+JWT",
            "At+Jwt",
            "application/at+jwt",
            "Application/AT+JWT",
        ] {
            let mut h = header_for(keys.active());
            h["typ"] = json!(typ);
            let token = signed(keys.active(), &h, &payload());
            assert!(verifier().verify(&keys, &token, at(T0)).is_ok(), "{typ}");
        }
    }

    #[test]
    fn unknown_header_parameters_are_ignored_not_followed() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let mut h = header_for(keys.active());
        h["jku"] = json!("https://evil.example/jwks.json");
        h["x5u"] = json!("https://evil.example/cert");
        h["jwk"] = json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"});
        let token = signed(keys.active(), &h, &payload());
        assert!(verifier().verify(&keys, &token, at(T0)).is_ok());
    }

    // --- algorithm confusion ----------------------------------------------------

    #[test]
    fn alg_none_in_every_spelling_is_rejected() {
        for keys in both() {
            for none in ["none", "None", "NONE", "nOnE"] {
                let mut h = header_for(keys.active());
                h["alg"] = json!(none);
                for sig in ["", "AAAA"] {
                    let token = unsigned(&h, &payload(), sig);
                    assert_rejected(&keys, &token, at(T0), JwtError::UnsupportedAlgorithm);
                }
                // The genuine signature does not help either.
                let good = keys.sign(&claims()).unwrap();
                let sig = good.rsplit('.').next().unwrap();
                let token = unsigned(&h, &payload(), sig);
                assert_rejected(&keys, &token, at(T0), JwtError::UnsupportedAlgorithm);
            }
        }
    }

    #[test]
    fn hmac_with_the_public_key_as_secret_is_rejected() {
        use jsonwebtoken::Algorithm as J;
        for keys in both() {
            let jwk = keys.active().jwk();
            let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
            let secrets: Vec<Vec<u8>> = vec![
                x.clone(),
                jwk["x"].as_str().unwrap().as_bytes().to_vec(),
                jwk.to_string().into_bytes(),
                keys.jwks().to_string().into_bytes(),
            ];
            for (alg, name) in [
                (J::HS256, "HS256"),
                (J::HS384, "HS384"),
                (J::HS512, "HS512"),
            ] {
                let mut h = header_for(keys.active());
                h["alg"] = json!(name);
                for secret in &secrets {
                    let token = hmac_token(&h, &payload(), alg, secret);
                    assert_rejected(&keys, &token, at(T0), JwtError::UnsupportedAlgorithm);
                }
            }
        }
    }

    #[test]
    fn rs256_header_is_rejected() {
        for keys in both() {
            let mut h = header_for(keys.active());
            h["alg"] = json!("RS256");
            let token = unsigned(&h, &payload(), &b64([7u8; 256]));
            assert_rejected(&keys, &token, at(T0), JwtError::UnsupportedAlgorithm);
        }
    }

    #[test]
    fn the_other_algorithm_on_a_pinned_key_is_rejected() {
        let [ed, ec] = both();
        // An ES256 header on an Ed25519 kid, validly signed by a P-256 key.
        let mut h = header_for(ed.active());
        h["alg"] = json!("ES256");
        let token = signed(ec.active(), &h, &payload());
        assert_rejected(&ed, &token, at(T0), JwtError::UnsupportedAlgorithm);
        // An EdDSA header on a P-256 kid, validly signed by an Ed25519 key.
        let mut h = header_for(ec.active());
        h["alg"] = json!("EdDSA");
        let token = signed(ed.active(), &h, &payload());
        assert_rejected(&ec, &token, at(T0), JwtError::UnsupportedAlgorithm);
        // Other spellings and relatives of our own algorithms.
        for alg in [
            "eddsa", "EDDSA", "Ed25519", "es256", "ES384", "ES256K", "PS256", "",
        ] {
            for keys in [&ed, &ec] {
                let mut h = header_for(keys.active());
                h["alg"] = json!(alg);
                let token = signed(keys.active(), &h, &payload());
                assert_rejected(keys, &token, at(T0), JwtError::UnsupportedAlgorithm);
            }
        }
    }

    #[test]
    fn alg_of_the_wrong_json_type_or_missing_is_malformed() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        for alg in [json!(null), json!(1), json!(["EdDSA"])] {
            let mut h = header_for(keys.active());
            h["alg"] = alg;
            let token = signed(keys.active(), &h, &payload());
            assert_rejected(&keys, &token, at(T0), JwtError::Malformed);
        }
        let mut h = header_for(keys.active());
        h.as_object_mut().unwrap().remove("alg");
        let token = signed(keys.active(), &h, &payload());
        assert_rejected(&keys, &token, at(T0), JwtError::Malformed);
    }

    // --- key ids ------------------------------------------------------------

    #[test]
    fn unknown_kid_is_rejected() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let mut h = header_for(keys.active());
        h["kid"] = json!("AAAAAAAAAAAAAAAAAAAAAA");
        let token = signed(keys.active(), &h, &payload());
        assert_rejected(&keys, &token, at(T0), JwtError::UnknownKey);
    }

    #[test]
    fn missing_or_non_string_kid_is_rejected() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let mut h = header_for(keys.active());
        h.as_object_mut().unwrap().remove("kid");
        let token = signed(keys.active(), &h, &payload());
        assert_rejected(&keys, &token, at(T0), JwtError::InvalidKeyId);
        h["kid"] = json!(null);
        let token = signed(keys.active(), &h, &payload());
        assert_rejected(&keys, &token, at(T0), JwtError::InvalidKeyId);
        h["kid"] = json!(42);
        let token = signed(keys.active(), &h, &payload());
        assert_rejected(&keys, &token, at(T0), JwtError::Malformed);
    }

    #[test]
    fn path_like_and_oversized_kids_are_rejected_before_lookup() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let real = keys.active().kid().as_str().to_owned();
        for kid in [
            "../keys".to_owned(),
            "/etc/passwd".to_owned(),
            "../../etc/passwd".to_owned(),
            "a/b".to_owned(),
            "..\\x".to_owned(),
            "C:\\keys\\k".to_owned(),
            "https://evil.example/jwks.json".to_owned(),
            "file:///etc/passwd".to_owned(),
            "%2e%2e%2f".to_owned(),
            format!("{real}/../{real}"),
            format!("{real}\0"),
            format!(" {real}"),
            "a".repeat(65),
            String::new(),
        ] {
            let mut h = header_for(keys.active());
            h["kid"] = json!(kid);
            let token = signed(keys.active(), &h, &payload());
            assert_rejected(&keys, &token, at(T0), JwtError::InvalidKeyId);
        }
    }

    #[test]
    fn signature_by_another_key_with_the_same_kid_is_rejected() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            let keys = KeySet::generate(alg, at(T0));
            let impostor = impostor_of(&keys);
            assert_eq!(impostor.active().kid(), keys.active().kid());
            let token = impostor.sign(&claims()).unwrap();
            assert_rejected(&keys, &token, at(T0), JwtError::BadSignature);
            assert!(verifier().verify(&impostor, &token, at(T0)).is_ok());
        }
    }

    // --- type -----------------------------------------------------------------

    #[test]
    fn wrong_or_missing_type_is_rejected() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        for typ in [
            json!("JWT"),
            json!("jwt"),
            json!("at+jwt "),
            json!("dpop+jwt"),
            json!(""),
            json!(null),
        ] {
            let mut h = header_for(keys.active());
            h["typ"] = typ;
            let token = signed(keys.active(), &h, &payload());
            assert_rejected(&keys, &token, at(T0), JwtError::WrongType);
        }
        let mut h = header_for(keys.active());
        h.as_object_mut().unwrap().remove("typ");
        let token = signed(keys.active(), &h, &payload());
        assert_rejected(&keys, &token, at(T0), JwtError::WrongType);
    }

    #[test]
    fn critical_header_extensions_are_rejected() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let mut h = header_for(keys.active());
        h["crit"] = json!(["b64"]);
        h["b64"] = json!(false);
        let token = signed(keys.active(), &h, &payload());
        assert_rejected(&keys, &token, at(T0), JwtError::Malformed);
    }

    // --- tampering ----------------------------------------------------------

    #[test]
    fn tampered_payload_is_rejected() {
        for keys in both() {
            let good = keys.sign(&claims()).unwrap();
            let parts: Vec<&str> = good.split('.').collect();
            let mut p: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
            for (claim, value) in [
                ("sub", json!("u_admin")),
                ("sid", json!(SessionId::random().to_string())),
                ("exp", json!(T0 + 1_000_000)),
            ] {
                let original = p[claim].clone();
                p[claim] = value;
                let forged = format!(
                    "{}.{}.{}",
                    parts[0],
                    b64(serde_json::to_vec(&p).unwrap()),
                    parts[2]
                );
                assert_rejected(&keys, &forged, at(T0), JwtError::BadSignature);
                p[claim] = original;
            }
        }
    }

    #[test]
    fn tampered_header_is_rejected() {
        for keys in both() {
            let good = keys.sign(&claims()).unwrap();
            let (_, rest) = good.split_once('.').unwrap();
            // Same meaning, different bytes: the signature covers the bytes.
            let mut h = header_for(keys.active());
            h["extra"] = json!(1);
            let forged = format!("{}.{rest}", b64(serde_json::to_vec(&h).unwrap()));
            assert_rejected(&keys, &forged, at(T0), JwtError::BadSignature);
            let mut h = header_for(keys.active());
            h["typ"] = json!("AT+JWT");
            let forged = format!("{}.{rest}", b64(serde_json::to_vec(&h).unwrap()));
            assert_rejected(&keys, &forged, at(T0), JwtError::BadSignature);
        }
    }

    #[test]
    fn tampered_or_truncated_signature_is_rejected() {
        for keys in both() {
            let good = keys.sign(&claims()).unwrap();
            let (input, sig) = good.rsplit_once('.').unwrap();
            let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
            raw[5] ^= 1;
            assert_rejected(
                &keys,
                &format!("{input}.{}", b64(&raw)),
                at(T0),
                JwtError::BadSignature,
            );
            assert_rejected(
                &keys,
                &format!("{input}.{}", b64(&raw[..32])),
                at(T0),
                JwtError::BadSignature,
            );
            assert_rejected(&keys, &format!("{input}."), at(T0), JwtError::BadSignature);
        }
    }

    // --- time -----------------------------------------------------------------

    #[test]
    fn token_is_valid_until_just_before_exp() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let token = keys.sign(&claims()).unwrap();
        let exp = at(T0 + TTL as i64);
        assert!(
            verifier()
                .verify(&keys, &token, exp.saturating_sub(Duration::from_millis(1)))
                .is_ok()
        );
    }

    #[test]
    fn token_is_expired_at_exp_and_after() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let token = keys.sign(&claims()).unwrap();
        assert_rejected(&keys, &token, at(T0 + TTL as i64), JwtError::Expired);
        assert_rejected(&keys, &token, at(T0 + 10 * TTL as i64), JwtError::Expired);
    }

    #[test]
    fn leeway_extends_exp_and_tolerates_early_tokens() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let token = keys.sign(&claims()).unwrap();
        let lenient = verifier().with_leeway(Duration::from_secs(5));
        assert_eq!(lenient.leeway(), Duration::from_secs(5));
        assert!(
            lenient
                .verify(&keys, &token, at(T0 + TTL as i64 + 4))
                .is_ok()
        );
        assert!(matches!(
            lenient.verify(&keys, &token, at(T0 + TTL as i64 + 5)),
            Err(JwtError::Expired)
        ));
        assert!(lenient.verify(&keys, &token, at(T0 - 5)).is_ok());
        assert!(matches!(
            lenient.verify(&keys, &token, at(T0 - 6)),
            Err(JwtError::NotYetValid)
        ));
    }

    #[test]
    fn nbf_or_iat_in_the_future_is_rejected() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let token = keys.sign(&claims()).unwrap();
        // Issued at T0: not valid a second earlier.
        assert_rejected(&keys, &token, at(T0 - 1), JwtError::NotYetValid);
        // nbf later than iat.
        let mut p = payload();
        p["nbf"] = json!(T0 + 60);
        let token = with_payload(&keys, &p);
        assert_rejected(&keys, &token, at(T0 + 59), JwtError::NotYetValid);
        assert!(verifier().verify(&keys, &token, at(T0 + 60)).is_ok());
    }

    #[test]
    fn missing_exp_sub_sid_iss_aud_iat_jti_are_rejected_by_name() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        for claim in ["exp", "sub", "sid", "iss", "aud", "iat", "jti"] {
            let mut p = payload();
            p.as_object_mut().unwrap().remove(claim);
            let token = with_payload(&keys, &p);
            assert_rejected(&keys, &token, at(T0), JwtError::MissingClaim(claim));
            p[claim] = json!(null);
            let token = with_payload(&keys, &p);
            assert_rejected(&keys, &token, at(T0), JwtError::MissingClaim(claim));
        }
        for claim in ["sub", "jti"] {
            let mut p = payload();
            p[claim] = json!("");
            let token = with_payload(&keys, &p);
            assert_rejected(&keys, &token, at(T0), JwtError::MissingClaim(claim));
        }
    }

    #[test]
    fn claims_of_the_wrong_type_or_shape_are_malformed() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        for (claim, value) in [
            ("exp", json!("1800000300")),
            ("exp", json!(1.8e9)),
            ("iat", json!(true)),
            ("sub", json!(7)),
            ("aud", json!({"aud": AUD})),
            ("aud", json!([AUD, 1])),
            ("sid", json!("short")),
            ("sid", json!("!".repeat(22))),
            ("client_id", json!(["app"])),
        ] {
            let mut p = payload();
            p[claim] = value;
            let token = with_payload(&keys, &p);
            assert_rejected(&keys, &token, at(T0), JwtError::Malformed);
        }
        for body in [json!([1, 2]), json!("claims"), json!(null)] {
            let token = with_payload(&keys, &body);
            assert_rejected(&keys, &token, at(T0), JwtError::Malformed);
        }
    }

    // --- issuer and audience ------------------------------------------------------

    #[test]
    fn wrong_issuer_is_rejected() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        for iss in [
            "https://evil.example",
            "https://AUTH.example",
            "https://auth.example/",
            "",
        ] {
            let mut p = payload();
            p["iss"] = json!(iss);
            let token = with_payload(&keys, &p);
            assert_rejected(&keys, &token, at(T0), JwtError::WrongIssuer);
        }
    }

    #[test]
    fn audience_may_be_a_string_or_an_array_containing_it() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        for aud in [json!(AUD), json!([AUD]), json!(["other", AUD])] {
            let mut p = payload();
            p["aud"] = aud;
            let token = with_payload(&keys, &p);
            let c = verifier().verify(&keys, &token, at(T0)).unwrap();
            assert!(c.aud().iter().any(|a| a == AUD));
        }
    }

    #[test]
    fn wrong_audience_is_rejected_as_string_and_as_array() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        for aud in [
            json!("https://other.example"),
            json!(["https://other.example"]),
            json!(["https://other.example", "x"]),
            json!([]),
            json!(""),
        ] {
            let mut p = payload();
            p["aud"] = aud;
            let token = with_payload(&keys, &p);
            assert_rejected(&keys, &token, at(T0), JwtError::WrongAudience);
        }
    }

    // --- shape ------------------------------------------------------------------

    #[test]
    fn too_long_token_is_rejected_before_decoding() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let token = keys.sign(&claims()).unwrap();
        let padded = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
        assert_rejected(&keys, &padded, at(T0), JwtError::TooLong);
        assert_rejected(
            &keys,
            &"!".repeat(MAX_TOKEN_LEN + 1),
            at(T0),
            JwtError::TooLong,
        );
        // A big but bounded claim is fine up to the limit.
        let mut p = payload();
        p["pad"] = json!("x".repeat(2000));
        assert!(
            verifier()
                .verify(&keys, &with_payload(&keys, &p), at(T0))
                .is_ok()
        );
    }

    #[test]
    fn wrong_segment_counts_are_malformed() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let token = keys.sign(&claims()).unwrap();
        let (h, rest) = token.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        for bad in [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            h.to_owned(),
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}.{s}"),
            format!("{h}.{p}.{s}."),
            format!("{token}.."),
        ] {
            assert_rejected(&keys, &bad, at(T0), JwtError::Malformed);
        }
    }

    #[test]
    fn non_base64url_segments_are_malformed() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let token = keys.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let standard = base64::engine::general_purpose::STANDARD;
        for bad in [
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("!{}.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}+.{}.{}", parts[0], parts[1], parts[2]),
            format!("/{}.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", standard.encode(b"{}"), parts[1], parts[2]),
            format!("{} .{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}*", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", "é".repeat(4), parts[1], parts[2]),
        ] {
            assert_rejected(&keys, &bad, at(T0), JwtError::Malformed);
        }
        // The payload is only decoded after the signature: a broken payload segment
        // fails the signature first.
        let bad = format!("{}.{}*.{}", parts[0], parts[1], parts[2]);
        assert_rejected(&keys, &bad, at(T0), JwtError::BadSignature);
    }

    #[test]
    fn invalid_utf8_or_json_in_the_header_is_malformed() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let good = keys.sign(&claims()).unwrap();
        let (_, rest) = good.split_once('.').unwrap();
        let kid = keys.active().kid().as_str();
        for header in [
            b"\xff\xfe{}".to_vec(),
            [
                br#"{"alg":"EdDSA","typ":"at+jwt","kid":""#.as_slice(),
                b"\xc3\x28",
                b"\"}",
            ]
            .concat(),
            b"not json".to_vec(),
            b"{".to_vec(),
            b"[]".to_vec(),
            b"null".to_vec(),
            b"".to_vec(),
            format!(r#"{{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"{kid}"}}"#).into_bytes(),
            format!(r#" {{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}"#).into_bytes(),
        ] {
            let token = format!("{}.{rest}", b64(&header));
            assert_rejected(&keys, &token, at(T0), JwtError::Malformed);
        }
    }

    #[test]
    fn duplicate_claims_are_malformed() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let p = serde_json::to_string(&payload()).unwrap();
        let dup = format!(r#"{{"sub":"u_admin",{}"#, &p[1..]);
        let token = sign_compact(
            keys.active(),
            &serde_json::to_vec(&header_for(keys.active())).unwrap(),
            dup.as_bytes(),
        )
        .unwrap();
        assert_rejected(&keys, &token, at(T0), JwtError::Malformed);
    }

    // --- rotation -----------------------------------------------------------------

    #[test]
    fn tokens_of_a_retired_key_verify_until_pruned() {
        let max_ttl = Duration::from_secs(TTL);
        let mut keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let old_token = keys.sign(&claims()).unwrap();
        let old_kid = keys.active().kid().as_str().to_owned();

        keys.rotate(Algorithm::EdDSA, at(T0 + 10));
        let jwks = keys.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [keys.active().kid().as_str(), old_kid.as_str()]);
        assert!(verifier().verify(&keys, &old_token, at(T0 + 10)).is_ok());
        assert!(
            verifier()
                .verify(&keys, &old_token, at(T0 + TTL as i64 - 1))
                .is_ok()
        );

        let new_claims =
            AccessClaims::new(ISS, "u_bob", AUD, SessionId::random(), at(T0 + 10), max_ttl);
        let new_token = keys.sign(&new_claims).unwrap();
        assert_ne!(new_token.split('.').next(), old_token.split('.').next());

        let retention_end = at(T0 + 10 + TTL as i64);
        assert_eq!(
            keys.prune(
                retention_end.saturating_sub(Duration::from_millis(1)),
                max_ttl
            ),
            0
        );
        assert_eq!(keys.prune(retention_end, max_ttl), 1);
        assert_rejected(&keys, &old_token, at(T0), JwtError::UnknownKey);
        assert!(!keys.jwks().to_string().contains(&old_kid));
        assert_eq!(
            verifier().verify(&keys, &new_token, at(T0 + 10)).unwrap(),
            new_claims
        );
    }

    // --- the signature memo ----------------------------------------------------

    /// `token` with its payload replaced, keeping the original signature.
    fn with_forged_sub(token: &str) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let mut p: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        p["sub"] = json!("u_admin");
        format!(
            "{}.{}.{}",
            parts[0],
            b64(serde_json::to_vec(&p).unwrap()),
            parts[2]
        )
    }

    #[test]
    fn memoized_verification_remembers_good_signatures_only() {
        for keys in both() {
            let memo = SignatureMemo::new(10);
            let c = claims();
            let token = keys.sign(&c).unwrap();
            let v = verifier();
            assert_eq!(v.verify_memoized(&keys, &token, at(T0), &memo).unwrap(), c);
            assert_eq!(memo.len(), 1);
            assert!(memo.contains(SignatureMemo::key(keys.active(), &token)));
            // Remembered: the same claims again, nothing added.
            assert_eq!(v.verify_memoized(&keys, &token, at(T0), &memo).unwrap(), c);
            assert_eq!(memo.len(), 1);

            // The remembered signature does not vouch for other bytes.
            let forged = with_forged_sub(&token);
            assert!(matches!(
                v.verify_memoized(&keys, &forged, at(T0), &memo),
                Err(JwtError::BadSignature)
            ));
            // A token whose signature fails takes no room.
            let (input, _) = token.rsplit_once('.').unwrap();
            let unsigned = format!("{input}.{}", b64([7u8; 64]));
            assert!(matches!(
                v.verify_memoized(&keys, &unsigned, at(T0), &memo),
                Err(JwtError::BadSignature)
            ));
            assert_eq!(memo.len(), 1);
            assert!(!memo.contains(SignatureMemo::key(keys.active(), &forged)));
        }
    }

    #[test]
    fn a_remembered_signature_is_what_the_memo_skips() {
        // The mechanism itself: an entry (which only a verified signature ever
        // creates) stands in for the signature computation, and for nothing else.
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let memo = SignatureMemo::new(10);
        let token = keys.sign(&claims()).unwrap();
        let forged = with_forged_sub(&token);
        let key = SignatureMemo::key(keys.active(), &forged);
        memo.insert(key, at(T0 + 60), at(T0));
        let c = verifier()
            .verify_memoized(&keys, &forged, at(T0), &memo)
            .unwrap();
        assert_eq!(c.sub(), "u_admin");
        // Without the memo, the same bytes fail.
        assert!(matches!(
            verifier().verify(&keys, &forged, at(T0)),
            Err(JwtError::BadSignature)
        ));
    }

    #[test]
    fn a_remembered_token_is_still_checked_for_time_issuer_and_audience() {
        for keys in both() {
            let memo = SignatureMemo::new(10);
            let token = keys.sign(&claims()).unwrap();
            verifier()
                .verify_memoized(&keys, &token, at(T0), &memo)
                .unwrap();
            assert!(
                verifier()
                    .verify_memoized(&keys, &token, at(T0 + TTL as i64 - 1), &memo)
                    .is_ok()
            );
            assert!(matches!(
                verifier().verify_memoized(&keys, &token, at(T0 + TTL as i64), &memo),
                Err(JwtError::Expired)
            ));
            assert!(matches!(
                verifier().verify_memoized(&keys, &token, at(T0 - 10), &memo),
                Err(JwtError::NotYetValid)
            ));
            assert!(matches!(
                Verifier::new("https://other.example", AUD).verify_memoized(
                    &keys,
                    &token,
                    at(T0),
                    &memo
                ),
                Err(JwtError::WrongIssuer)
            ));
            assert!(matches!(
                Verifier::new(ISS, "https://other.example").verify_memoized(
                    &keys,
                    &token,
                    at(T0),
                    &memo
                ),
                Err(JwtError::WrongAudience)
            ));
        }
    }

    #[test]
    fn a_remembered_token_of_a_pruned_key_is_refused() {
        let mut keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let memo = SignatureMemo::new(10);
        let token = keys.sign(&claims()).unwrap();
        verifier()
            .verify_memoized(&keys, &token, at(T0), &memo)
            .unwrap();
        keys.rotate(Algorithm::EdDSA, at(T0 + 1));
        assert!(
            verifier()
                .verify_memoized(&keys, &token, at(T0 + 2), &memo)
                .is_ok(),
            "a retired key still verifies its tokens"
        );
        assert_eq!(keys.prune(at(T0 + 1 + 3600), Duration::from_secs(3600)), 1);
        assert!(matches!(
            verifier().verify_memoized(&keys, &token, at(T0 + 2), &memo),
            Err(JwtError::UnknownKey)
        ));
    }

    #[test]
    fn another_key_under_the_same_kid_does_not_inherit_remembered_signatures() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256] {
            let keys = KeySet::generate(alg, at(T0));
            let impostor = impostor_of(&keys);
            let memo = SignatureMemo::new(10);
            let token = impostor.sign(&claims()).unwrap();
            verifier()
                .verify_memoized(&impostor, &token, at(T0), &memo)
                .unwrap();
            assert_eq!(memo.len(), 1);
            assert!(matches!(
                verifier().verify_memoized(&keys, &token, at(T0), &memo),
                Err(JwtError::BadSignature)
            ));
        }
    }

    #[test]
    fn the_memo_is_bounded_and_expired_entries_make_room() {
        let keys = KeySet::generate(Algorithm::EdDSA, at(T0));
        let v = verifier();
        let memo = SignatureMemo::new(2);
        let tokens: Vec<String> = (0..3).map(|_| keys.sign(&claims()).unwrap()).collect();
        for t in &tokens {
            v.verify_memoized(&keys, t, at(T0), &memo).unwrap();
        }
        // Full: the third is verified (and accepted) but not remembered.
        assert_eq!(memo.len(), 2);
        assert!(!memo.contains(SignatureMemo::key(keys.active(), &tokens[2])));
        assert!(v.verify_memoized(&keys, &tokens[2], at(T0), &memo).is_ok());
        assert_eq!(memo.len(), 2);

        // Once the remembered tokens have expired, a new one sweeps them out.
        let later = T0 + TTL as i64;
        let fresh = keys.sign(&claims_at(later)).unwrap();
        v.verify_memoized(&keys, &fresh, at(later), &memo).unwrap();
        assert_eq!(memo.len(), 1);
        assert!(memo.contains(SignatureMemo::key(keys.active(), &fresh)));

        // A memo of capacity 0 remembers nothing but still verifies.
        let none = SignatureMemo::new(0);
        assert!(v.verify_memoized(&keys, &tokens[0], at(T0), &none).is_ok());
        assert!(none.is_empty());
    }
}
