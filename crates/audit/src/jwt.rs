//! Reading JWTs and forging the hostile variants the `jwt` check sends.
//!
//! The auditor never holds the app's key. Its forgeries are the classic ones:
//! `alg: none`, a stripped signature, HMAC keyed with the app's *public* key
//! (algorithm confusion), a key of its own embedded in the header (`jwk`) or
//! served at a URL it names (`jku`), a `kid` that points at an empty file, and
//! HMAC secrets from a bundled list of weak ones.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

/// The bundled weak HMAC secrets (one per line, `#` comments).
pub const WEAK_SECRETS: &str = include_str!("weak-secrets.txt");

/// The weak secrets, the empty one first.
pub fn weak_secrets() -> impl Iterator<Item = &'static str> {
    std::iter::once("").chain(
        WEAK_SECRETS
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty() && !l.starts_with('#')),
    )
}

/// A decoded JWT (signature not verified).
#[derive(Clone)]
pub struct Jwt {
    /// The header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `header.payload` as sent.
    pub signing_input: String,
    /// The signature, base64url as sent.
    pub signature: String,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

impl Jwt {
    /// Decodes a compact JWS; `None` if `token` is not one.
    pub fn parse(token: &str) -> Option<Jwt> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |x: &str| -> Option<Map<String, Value>> {
            let bytes = URL_SAFE_NO_PAD.decode(x.trim_end_matches('=')).ok()?;
            match serde_json::from_slice(&bytes).ok()? {
                Value::Object(m) => Some(m),
                _ => None,
            }
        };
        let header = decode(h)?;
        header.get("alg")?.as_str()?;
        Some(Jwt {
            header,
            claims: decode(p)?,
            signing_input: format!("{h}.{p}"),
            signature: s.to_owned(),
        })
    }

    /// The `alg` header.
    pub fn alg(&self) -> &str {
        self.header.get("alg").and_then(Value::as_str).unwrap_or("")
    }

    /// A numeric claim.
    pub fn time_claim(&self, name: &str) -> Option<i64> {
        self.claims
            .get(name)
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    }
}

/// `base64url(header).base64url(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// The HMAC algorithm of that name.
pub fn hmac_alg(alg: &str) -> Option<Algorithm> {
    match alg {
        "HS256" => Some(Algorithm::HS256),
        "HS384" => Some(Algorithm::HS384),
        "HS512" => Some(Algorithm::HS512),
        _ => None,
    }
}

/// The HMAC signature (base64url) of `input` under `key` (which may be empty,
/// as the `kid` path-traversal forgery needs).
pub fn hmac(alg: Algorithm, key: &[u8], input: &str) -> String {
    fn mac<D: hmac::EagerHash>(key: &[u8], input: &str) -> Vec<u8>
    where
        hmac::Hmac<D>: hmac::KeyInit + hmac::Mac,
    {
        let mut m = <hmac::Hmac<D> as hmac::KeyInit>::new_from_slice(key)
            .expect("HMAC takes keys of any length");
        hmac::Mac::update(&mut m, input.as_bytes());
        hmac::Mac::finalize(m).into_bytes().to_vec()
    }
    let sig = match alg {
        Algorithm::HS384 => mac::<sha2_next::Sha384>(key, input),
        Algorithm::HS512 => mac::<sha2_next::Sha512>(key, input),
        _ => mac::<sha2_next::Sha256>(key, input),
    };
    URL_SAFE_NO_PAD.encode(sig)
}

/// A complete token signed with HMAC.
pub fn sign_hmac(alg: Algorithm, key: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let sig = hmac(alg, key, &input);
    format!("{input}.{sig}")
}

/// A key the auditor made, for the `jwk` and `jku` forgeries.
pub struct AttackerKey {
    /// The JWS algorithm.
    pub alg: Algorithm,
    /// Its name as in the header.
    pub alg_name: &'static str,
    /// The `kid` it is published under.
    pub kid: String,
    /// The public JWK (for HMAC, the symmetric one).
    pub jwk: Value,
    key: EncodingKey,
}

impl std::fmt::Debug for AttackerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttackerKey")
            .field("alg", &self.alg_name)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the operating system's CSPRNG is unavailable");
    b
}

impl AttackerKey {
    /// A fresh key for the token's algorithm family (EdDSA, ES256, HS256/384/512);
    /// `None` for others.
    pub fn for_alg(alg: &str) -> Option<AttackerKey> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let kid = format!("audit-{}", URL_SAFE_NO_PAD.encode(random(6)));
        match alg {
            "EdDSA" => {
                let seed: [u8; 32] = random(32).try_into().expect("32 bytes");
                let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
                let x = sk.verifying_key().to_bytes();
                let der = sk.to_pkcs8_der().ok()?;
                Some(AttackerKey {
                    alg: Algorithm::EdDSA,
                    alg_name: "EdDSA",
                    jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(x), "kid": kid, "alg": "EdDSA", "use": "sig"}),
                    kid,
                    key: EncodingKey::from_ed_der(der.as_bytes()),
                })
            }
            "ES256" => {
                use p256::pkcs8::EncodePrivateKey as _;
                let secret = loop {
                    if let Ok(s) = p256::SecretKey::from_slice(&random(32)) {
                        break s;
                    }
                };
                let point = secret.public_key().to_sec1_bytes();
                let (x, y) = (&point[1..33], &point[33..65]);
                let der = secret.to_pkcs8_der().ok()?;
                Some(AttackerKey {
                    alg: Algorithm::ES256,
                    alg_name: "ES256",
                    jwk: json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y), "kid": kid, "alg": "ES256", "use": "sig"}),
                    kid,
                    key: EncodingKey::from_ec_der(der.as_bytes()),
                })
            }
            a => {
                let alg = hmac_alg(a)?;
                let secret = random(32);
                Some(AttackerKey {
                    alg,
                    alg_name: match alg {
                        Algorithm::HS384 => "HS384",
                        Algorithm::HS512 => "HS512",
                        _ => "HS256",
                    },
                    jwk: json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(&secret), "kid": kid, "alg": a}),
                    kid,
                    key: EncodingKey::from_secret(&secret).expect("32 bytes"),
                })
            }
        }
    }

    /// A token with `header` (its `alg` set to this key's) and `claims`, signed.
    pub fn sign(&self, mut header: Map<String, Value>, claims: &Value) -> String {
        header.insert("alg".into(), Value::String(self.alg_name.into()));
        let input = signing_input(&Value::Object(header), claims);
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.alg)
            .expect("a generated key signs");
        format!("{input}.{sig}")
    }

    /// The JWKS publishing this key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }
}

/// The byte strings an app's public key may be confused with as an HMAC secret:
/// PEM (SubjectPublicKeyInfo, with and without the final newline; PKCS#1 for RSA),
/// DER, the raw key, and the JWK's JSON text.
pub fn public_key_forms(jwk: &Value) -> Vec<(&'static str, Vec<u8>)> {
    let b64 = |k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
    };
    let mut forms: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let (spki, raw, pkcs1) = match jwk.get("kty").and_then(Value::as_str) {
        Some("OKP") => {
            let Some(x) = b64("x") else { return forms };
            let mut der = hex_bytes("302a300506032b6570032100");
            der.extend_from_slice(&x);
            (der, x, None)
        }
        Some("EC") => {
            let (Some(x), Some(y)) = (b64("x"), b64("y")) else {
                return forms;
            };
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let mut der = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
            der.extend_from_slice(&point);
            (der, point, None)
        }
        Some("RSA") => {
            let (Some(n), Some(e)) = (b64("n"), b64("e")) else {
                return forms;
            };
            let rsa_key = der_seq(&[der_uint(&n), der_uint(&e)]);
            let mut bits = vec![0u8];
            bits.extend_from_slice(&rsa_key);
            let alg = hex_bytes("300d06092a864886f70d0101010500");
            let spki = der_seq(&[alg, der_tlv(0x03, &bits)]);
            (spki, n, Some(rsa_key))
        }
        _ => return forms,
    };
    let pem = pem("PUBLIC KEY", &spki);
    forms.push(("PEM", pem.clone().into_bytes()));
    forms.push((
        "PEM without final newline",
        pem.trim_end().as_bytes().to_vec(),
    ));
    if let Some(p1) = pkcs1 {
        forms.push(("PKCS#1 PEM", self::pem("RSA PUBLIC KEY", &p1).into_bytes()));
    }
    forms.push(("DER", spki));
    forms.push(("raw key", raw));
    forms.push(("JWK JSON", jwk.to_string().into_bytes()));
    forms
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex literal"))
        .collect()
}

fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

fn der_seq(items: &[Vec<u8>]) -> Vec<u8> {
    der_tlv(0x30, &items.concat())
}

fn der_uint(be: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    let mut c = Vec::new();
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        c.push(0);
    }
    c.extend(trimmed);
    der_tlv(0x02, &c)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compact_tokens_only() {
        let t = sign_hmac(
            Algorithm::HS256,
            b"k",
            &json!({"alg": "HS256", "typ": "JWT"}),
            &json!({"sub": "1", "exp": 5}),
        );
        let j = Jwt::parse(&t).unwrap();
        assert_eq!(j.alg(), "HS256");
        assert_eq!(j.time_claim("exp"), Some(5));
        assert!(Jwt::parse("abc.def").is_none());
        assert!(Jwt::parse("sgs_abcdef").is_none());
        assert!(Jwt::parse("e30.e30.x").is_none(), "a header without alg");
    }

    #[test]
    fn the_weak_list_starts_with_the_empty_secret_and_skips_comments() {
        let list: Vec<_> = weak_secrets().collect();
        assert_eq!(list[0], "");
        assert!(list.contains(&"secret") && list.contains(&"your-256-bit-secret"));
        assert!(list.iter().all(|s| !s.starts_with('#')));
        assert!(list.len() > 200);
    }

    #[test]
    fn attacker_keys_sign_tokens_that_verify_with_their_jwk() {
        for alg in ["EdDSA", "ES256", "HS256"] {
            let k = AttackerKey::for_alg(alg).unwrap();
            let t = k.sign(Map::new(), &json!({"sub": "x"}));
            let j = Jwt::parse(&t).unwrap();
            assert_eq!(j.alg(), alg);
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.jwk.clone()).unwrap();
            let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut v = jsonwebtoken::Validation::new(k.alg);
            v.required_spec_claims.clear();
            v.validate_exp = false;
            jsonwebtoken::decode::<Value>(&t, &key, &v).unwrap();
        }
        assert!(AttackerKey::for_alg("PS512").is_none());
    }

    #[test]
    fn public_key_forms_encode_spki() {
        let k = AttackerKey::for_alg("EdDSA").unwrap();
        let forms = public_key_forms(&k.jwk);
        let pem = String::from_utf8(forms[0].1.clone()).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"),
            "{pem}"
        );
        let rsa = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc1u8; 256]), "e": "AQAB"});
        let forms = public_key_forms(&rsa);
        assert_eq!(forms.len(), 6);
        let der = &forms.iter().find(|f| f.0 == "DER").unwrap().1;
        // SEQUENCE, long length of 2 bytes, then the rsaEncryption identifier.
        assert_eq!(&der[..2], &[0x30, 0x82]);
        assert_eq!(der.len(), 294);
    }
}
