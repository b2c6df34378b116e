//! `Verifier::verify` over a fixed key set (an active ES256 key and a retired
//! EdDSA key, from fixed seeds) at a fixed time.
//!
//! Every token, whatever its origin, is also judged by [`judge`], a model of the
//! documented verification order written without the verifier's code: JSON read
//! as `serde_json::Value`s, and signatures that the target did not make itself
//! checked with ed25519-dalek and p256 directly (the verifier goes through
//! `jsonwebtoken`). Invariants:
//! - nothing panics;
//! - `Ok` only for a token the model finds valid, and then the returned claims
//!   are the token's;
//! - for structured inputs (built field by field, so the model's reading is
//!   exact), the verifier's answer is exactly the model's, error variant
//!   included: the checks run in the documented order;
//! - error messages are one line.
//!
//! Inputs ([`Input`], built by `arbitrary`): an arbitrary token string; a header
//! and a claims set, each an object of fields that are absent, the right value,
//! a near miss, `null`, or arbitrary JSON, base64url-encoded and signed by either
//! key, or given a corrupted or arbitrary signature; or arbitrary header and
//! payload bytes, base64url-encoded, with the same choice of signatures.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use serde_json::{Map, Value, json};
use sessionguard_core::{Timestamp, TokenId};
use sessionguard_jwt::{JwtError, KeySet, MAX_TOKEN_LEN, Verifier};

const ISS: &str = "https://auth.example";
const AUD: &str = "https://api.example";
/// The verifier's clock, in seconds.
const NOW: i64 = 1_800_000_000;
const ES_KID: &str = "fuzz-es256";
const ED_KID: &str = "fuzz-ed25519";
/// A valid `sid`.
const SID: &str = "AAECAwQFBgcICQoLDA0ODw";
/// Deepest JSON the structured inputs build (serde_json refuses beyond 128).
const MAX_DEPTH: usize = 16;

struct Keys {
    set: KeySet,
    ed: ed25519_dalek::SigningKey,
    es: p256::ecdsa::SigningKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let ed = ed25519_dalek::SigningKey::from_bytes(&[0x11; 32]);
    let es_secret = p256::SecretKey::from_slice(&[0x22; 32]).expect("a valid P-256 scalar");
    let ed_der = ed.to_pkcs8_der().expect("Ed25519 PKCS#8");
    let es_der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&es_secret).expect("P-256 PKCS#8");
    let file = json!({
        "version": 1,
        "keys": [
            {"kid": ES_KID, "alg": "ES256", "created_at": 0, "retired_at": null,
             "pkcs8": URL_SAFE_NO_PAD.encode(es_der.as_bytes())},
            {"kid": ED_KID, "alg": "EdDSA", "created_at": 0, "retired_at": 1,
             "pkcs8": URL_SAFE_NO_PAD.encode(ed_der.as_bytes())},
        ]
    });
    let set = KeySet::from_json_secret(&file.to_string()).expect("the fixed key set loads");
    Keys {
        set,
        ed,
        es: p256::ecdsa::SigningKey::from(&es_secret),
    }
});

#[derive(Arbitrary, Debug)]
enum Input {
    Text(String),
    Fields {
        header: HeaderFields,
        claims: ClaimFields,
        signature: Signature,
    },
    Bytes {
        header: Vec<u8>,
        payload: Vec<u8>,
        signature: Signature,
    },
}

#[derive(Arbitrary, Debug)]
struct HeaderFields {
    alg: Field,
    typ: Field,
    kid: Field,
    crit: Option<Json>,
    extra: Vec<(String, Json)>,
}

#[derive(Arbitrary, Debug)]
struct ClaimFields {
    iss: Field,
    sub: Field,
    aud: Field,
    exp: Field,
    iat: Field,
    nbf: Field,
    jti: Field,
    client_id: Field,
    sid: Field,
    extra: Vec<(String, Json)>,
}

/// One field: absent, the value a good token has, a small variation, `null`, or
/// anything.
#[derive(Arbitrary, Debug)]
enum Field {
    Absent,
    Good,
    Near(i8),
    Null,
    Any(Json),
}

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

#[derive(Arbitrary, Debug)]
enum Signature {
    /// Signed by the ES256 key.
    Es,
    /// Signed by the EdDSA key.
    Ed,
    /// Signed by one of them, then one bit flipped.
    Flipped { ed: bool, bit: u16 },
    /// These bytes, base64url-encoded.
    Bytes(Vec<u8>),
    /// This text as the segment.
    Text(String),
}

fuzz_target!(|input: Input| {
    let keys = &*KEYS;
    let (token, exact, signed_by) = match input {
        Input::Text(token) => (token, false, SignedBy::Unknown),
        Input::Fields {
            header,
            claims,
            signature,
        } => {
            let header = serde_json::to_vec(&header.build()).expect("JSON");
            let payload = serde_json::to_vec(&claims.build()).expect("JSON");
            let (token, signed_by) = assemble(keys, &header, &payload, &signature);
            (token, true, signed_by)
        }
        Input::Bytes {
            header,
            payload,
            signature,
        } => {
            let (token, signed_by) = assemble(keys, &header, &payload, &signature);
            (token, false, signed_by)
        }
    };

    let verifier = Verifier::new(ISS, AUD);
    let got = verifier.verify(&keys.set, &token, Timestamp::from_millis(NOW * 1000));
    let want = judge(keys, &token, signed_by);
    if let Err(e) = &got {
        assert!(!e.to_string().contains(['\n', '\r']), "{e:?}");
    }
    match (&got, &want) {
        (Ok(claims), Ok(payload)) => {
            assert_eq!(claims.iss(), ISS);
            assert_eq!(Some(claims.sub()), payload["sub"].as_str());
            assert_eq!(Some(claims.jti()), payload["jti"].as_str());
            assert_eq!(
                Some(claims.sid().to_string().as_str()),
                payload["sid"].as_str()
            );
            assert_eq!(claims.client_id(), payload["client_id"].as_str());
            assert!(claims.aud().iter().any(|a| a == AUD));
            let exp = payload["exp"].as_i64().expect("checked");
            assert_eq!(
                claims.exp(),
                Timestamp::from_millis(exp.saturating_mul(1000))
            );
        }
        (Ok(_), Err(why)) => panic!("accepted a token the model refuses ({why:?}): {token:?}"),
        (Err(e), Ok(_)) if exact => panic!("refused a valid token ({e:?}): {token:?}"),
        (Err(e), Err(why)) if exact => assert_eq!(
            format!("{e:?}"),
            format!("{why:?}"),
            "a different error than the documented order gives: {token:?}"
        ),
        (Err(_), _) => {}
    }
});

/// Who made a token's signature segment, when the target made it: then the
/// model need not check it again (signing and verifying P-256 dominate the cost
/// of an execution).
#[derive(Clone, Copy)]
enum SignedBy {
    /// The EdDSA key (`true`) or the ES256 key (`false`), untouched.
    Key { ed: bool },
    /// A genuine signature with one bit flipped: no longer valid.
    Corrupted,
    /// Not known: the model verifies it.
    Unknown,
}

fn assemble(
    keys: &Keys,
    header: &[u8],
    payload: &[u8],
    signature: &Signature,
) -> (String, SignedBy) {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    // A signature is only looked at when the header passes and the token is not
    // too long; skip the (costly) signing otherwise: the model then expects the
    // earlier error, so a verifier that looked anyway would still be caught.
    let header_b64 = token.split('.').next().unwrap_or_default();
    let looked_at = judge_header(header_b64).is_ok() && token.len() + 87 <= MAX_TOKEN_LEN;
    let sign = |ed: bool| -> Vec<u8> {
        if !looked_at {
            vec![0; 64]
        } else if ed {
            keys.ed.sign(token.as_bytes()).to_bytes().to_vec()
        } else {
            let sig: p256::ecdsa::Signature = keys.es.sign(token.as_bytes());
            sig.to_bytes().to_vec()
        }
    };
    let (segment, signed_by) = match signature {
        Signature::Es | Signature::Ed if !looked_at => {
            (URL_SAFE_NO_PAD.encode(sign(false)), SignedBy::Corrupted)
        }
        Signature::Es => (
            URL_SAFE_NO_PAD.encode(sign(false)),
            SignedBy::Key { ed: false },
        ),
        Signature::Ed => (
            URL_SAFE_NO_PAD.encode(sign(true)),
            SignedBy::Key { ed: true },
        ),
        Signature::Flipped { ed, bit } => {
            let mut sig = sign(*ed);
            let bit = usize::from(*bit) % (sig.len() * 8);
            sig[bit / 8] ^= 1 << (bit % 8);
            (URL_SAFE_NO_PAD.encode(sig), SignedBy::Corrupted)
        }
        Signature::Bytes(bytes) => (URL_SAFE_NO_PAD.encode(bytes), SignedBy::Unknown),
        Signature::Text(text) => (text.clone(), SignedBy::Unknown),
    };
    token.push('.');
    token.push_str(&segment);
    (token, signed_by)
}

impl HeaderFields {
    fn build(&self) -> Value {
        let mut map = extra(&self.extra);
        set(&mut map, "alg", &self.alg, json!("ES256"), |n| {
            json!(if n % 2 == 0 { "EdDSA" } else { "none" })
        });
        set(&mut map, "typ", &self.typ, json!("at+jwt"), |n| {
            json!(["AT+JWT", "application/at+jwt", "JWT", "at+jwt "][n.unsigned_abs() as usize % 4])
        });
        set(&mut map, "kid", &self.kid, json!(ES_KID), |n| {
            json!([ED_KID, "fuzz-es256x", "../fuzz-es256", ""][n.unsigned_abs() as usize % 4])
        });
        if let Some(crit) = &self.crit {
            map.insert("crit".into(), crit.to_value(0));
        }
        Value::Object(map)
    }
}

impl ClaimFields {
    fn build(&self) -> Value {
        let mut map = extra(&self.extra);
        let near_time = |base: i64| move |n: i8| json!(base + i64::from(n));
        set(&mut map, "iss", &self.iss, json!(ISS), |_| {
            json!(format!("{ISS}/"))
        });
        set(&mut map, "sub", &self.sub, json!("u_alice"), |_| json!(""));
        set(&mut map, "aud", &self.aud, json!(AUD), |n| match n % 3 {
            0 => json!([AUD]),
            1 => json!(["other", AUD]),
            _ => json!(["other"]),
        });
        set(&mut map, "exp", &self.exp, json!(NOW + 300), near_time(NOW));
        set(&mut map, "iat", &self.iat, json!(NOW), near_time(NOW));
        set(&mut map, "nbf", &self.nbf, json!(NOW), near_time(NOW));
        set(&mut map, "jti", &self.jti, json!("j1"), |_| json!(""));
        set(&mut map, "client_id", &self.client_id, json!("app"), |n| {
            json!([n])
        });
        set(&mut map, "sid", &self.sid, json!(SID), |n| {
            json!(
                [
                    "short",
                    "AAECAwQFBgcICQoLDA0OD",
                    "AAECAwQFBgcICQoLDA0ODx",
                    "!!ECAwQFBgcICQoLDA0ODw"
                ][n.unsigned_abs() as usize % 4]
            )
        });
        Value::Object(map)
    }
}

fn extra(fields: &[(String, Json)]) -> Map<String, Value> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), v.to_value(1)))
        .collect()
}

/// Sets (or removes) `key` as `field` says; a field left absent keeps whatever
/// `extra` put there, so the model reads the final object, not the choices.
fn set(
    map: &mut Map<String, Value>,
    key: &str,
    field: &Field,
    good: Value,
    near: impl Fn(i8) -> Value,
) {
    let value = match field {
        Field::Absent => return,
        Field::Good => good,
        Field::Near(n) => near(*n),
        Field::Null => Value::Null,
        Field::Any(json) => json.to_value(1),
    };
    map.insert(key.to_owned(), value);
}

impl Json {
    fn to_value(&self, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::Int(i) => json!(i),
            Json::UInt(u) => json!(u),
            Json::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => json!(s),
            Json::Array(items) => items.iter().map(|v| v.to_value(depth + 1)).collect(),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value(depth + 1)))
                    .collect(),
            ),
        }
    }
}

/// The model: what the crate docs say `verify` answers, written without its code
/// (JSON read as `Value`s, signatures checked with ed25519-dalek and p256).
/// `Ok` carries the payload.
fn judge(keys: &Keys, token: &str, signed_by: SignedBy) -> Result<Value, JwtError> {
    use JwtError as E;
    if token.len() > MAX_TOKEN_LEN {
        return Err(E::TooLong);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Err(E::Malformed);
    };
    let ed = judge_header(h)?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| E::Malformed)?;
    let input = format!("{h}.{p}");
    let genuine = match signed_by {
        SignedBy::Key { ed: signer } => signer == ed,
        SignedBy::Corrupted => false,
        SignedBy::Unknown if ed => ed25519_dalek::Signature::from_slice(&sig).is_ok_and(|sig| {
            keys.ed
                .verifying_key()
                .verify(input.as_bytes(), &sig)
                .is_ok()
        }),
        SignedBy::Unknown => p256::ecdsa::Signature::from_slice(&sig).is_ok_and(|sig| {
            keys.es
                .verifying_key()
                .verify(input.as_bytes(), &sig)
                .is_ok()
        }),
    };
    if !genuine {
        return Err(E::BadSignature);
    }
    judge_claims(p)
}

/// The header checks, up to the signature: `Ok(true)` when it names the EdDSA
/// key, `Ok(false)` the ES256 key.
fn judge_header(h: &str) -> Result<bool, JwtError> {
    use JwtError as E;
    let header = object(h, &["alg", "typ", "kid", "crit"])?;
    let Some(Value::String(alg)) = header.get("alg") else {
        return Err(E::Malformed);
    };
    let typ = string_or_null(header.get("typ"))?;
    let kid = string_or_null(header.get("kid"))?;
    if header.get("crit").is_some_and(|c| !c.is_null()) {
        return Err(E::Malformed);
    }
    let typ_ok = typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == "at+jwt" || t == "application/at+jwt"
    });
    if !typ_ok {
        return Err(E::WrongType);
    }
    let kid = kid
        .filter(|k| {
            (1..=64).contains(&k.len())
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or(E::InvalidKeyId)?;
    let ed = match kid.as_str() {
        ES_KID => false,
        ED_KID => true,
        _ => return Err(E::UnknownKey),
    };
    if alg != if ed { "EdDSA" } else { "ES256" } {
        return Err(E::UnsupportedAlgorithm);
    }
    Ok(ed)
}

/// The payload checks, after a genuine signature; `Ok` carries the claims.
fn judge_claims(p: &str) -> Result<Value, JwtError> {
    use JwtError as E;
    let claims = object(
        p,
        &[
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "client_id",
            "sid",
        ],
    )?;
    let string = |k: &str| string_or_null(claims.get(k));
    let int = |k: &str| match claims.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(E::Malformed),
    };
    let aud = match claims.get("aud") {
        None | Some(Value::Null) => None,
        Some(Value::String(a)) => Some(vec![a.clone()]),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(E::Malformed))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(E::Malformed),
    };
    let (iss, sub, jti, sid) = (
        string("iss")?,
        string("sub")?,
        string("jti")?,
        string("sid")?,
    );
    let (exp, iat, nbf) = (int("exp")?, int("iat")?, int("nbf")?);
    string("client_id")?;

    let now_ms = NOW * 1000;
    let exp = exp.ok_or(E::MissingClaim("exp"))?;
    if now_ms >= exp.saturating_mul(1000) {
        return Err(E::Expired);
    }
    let iat = iat.ok_or(E::MissingClaim("iat"))?;
    if std::iter::once(iat)
        .chain(nbf)
        .any(|t| t.saturating_mul(1000) > now_ms)
    {
        return Err(E::NotYetValid);
    }
    if iss.ok_or(E::MissingClaim("iss"))? != ISS {
        return Err(E::WrongIssuer);
    }
    if !aud.ok_or(E::MissingClaim("aud"))?.iter().any(|a| a == AUD) {
        return Err(E::WrongAudience);
    }
    sub.filter(|s| !s.is_empty())
        .ok_or(E::MissingClaim("sub"))?;
    let sid = sid.ok_or(E::MissingClaim("sid"))?;
    TokenId::parse(&sid).map_err(|_| E::Malformed)?;
    jti.filter(|j| !j.is_empty())
        .ok_or(E::MissingClaim("jti"))?;
    Ok(Value::Object(claims))
}

/// An optional string field: absent and `null` are `None`, another type is
/// malformed.
fn string_or_null(v: Option<&Value>) -> Result<Option<String>, JwtError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::Malformed),
    }
}

/// A base64url segment holding a JSON object: the members named in `known`,
/// each at most once, as JSON values.
///
/// Read the way serde's derived `Deserialize` reads a struct, since that is
/// what the crate promises ("a JSON object of the expected shape"): a repeated
/// known member is an error, a repeated unknown one is not, and the value of an
/// unknown member is skipped without decoding its strings, so invalid UTF-8 or
/// a lone surrogate escape (`"\ud800"`) there is accepted (see docs/FUZZING.md,
/// "Findings").
fn object(segment: &str, known: &[&str]) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)?;
    if bytes.first() != Some(&b'{') {
        return Err(JwtError::Malformed);
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let members = serde::Deserializer::deserialize_map(&mut de, Members(known))
        .map_err(|_| JwtError::Malformed)?;
    de.end().map_err(|_| JwtError::Malformed)?;
    Ok(members)
}

/// Visits an object, keeping the members named in `.0` and refusing them twice.
struct Members<'k>(&'k [&'k str]);

impl<'de> serde::de::Visitor<'de> for Members<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = a.next_key::<String>()? {
            if !self.0.contains(&key.as_str()) {
                a.next_value::<serde::de::IgnoredAny>()?;
            } else if members.contains_key(&key) {
                return Err(serde::de::Error::custom("duplicate member"));
            } else {
                let value = a.next_value::<Value>()?;
                members.insert(key, value);
            }
        }
        Ok(members)
    }
}
