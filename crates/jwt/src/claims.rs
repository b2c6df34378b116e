//! The claims of an access token: the RFC 9068 profile plus sessionguard's `sid`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, Serializer};
use sessionguard_core::{SessionId, Timestamp};

/// The claims of a sessionguard access token (RFC 9068 §2.2).
///
/// Times are whole seconds on the wire (`NumericDate`); [`AccessClaims::new`]
/// rounds `iat` down to a whole second so that claims survive a round trip
/// unchanged. A value of this type is either built by the issuer or returned by
/// [`Verifier::verify`](crate::Verifier::verify) after every check passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessClaims {
    iss: String,
    sub: String,
    #[serde(serialize_with = "one_or_many")]
    aud: Vec<String>,
    #[serde(serialize_with = "numeric_date")]
    exp: Timestamp,
    #[serde(serialize_with = "numeric_date")]
    iat: Timestamp,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_numeric_date"
    )]
    nbf: Option<Timestamp>,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(serialize_with = "session_id")]
    sid: SessionId,
}

impl AccessClaims {
    /// Claims for a token issued by `iss` to `sub` for `aud`, bound to session
    /// `sid`, issued at `now` (rounded down to the second) and expiring `ttl`
    /// (whole seconds) later, with a random `jti`. Keep `ttl` short: minutes.
    pub fn new(
        iss: impl Into<String>,
        sub: impl Into<String>,
        aud: impl Into<String>,
        sid: SessionId,
        now: Timestamp,
        ttl: Duration,
    ) -> Self {
        let iat = whole_seconds(now);
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        AccessClaims {
            iss: iss.into(),
            sub: sub.into(),
            aud: vec![aud.into()],
            exp: from_secs(iat.as_secs().saturating_add(ttl_secs)),
            iat,
            nbf: None,
            jti: random_jti(),
            client_id: None,
            sid,
        }
    }

    /// Sets `client_id`: the OAuth client the token was issued to.
    #[must_use]
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sets `nbf` (rounded down to the second): the token is not valid before it.
    #[must_use]
    pub fn with_not_before(mut self, nbf: Timestamp) -> Self {
        self.nbf = Some(whole_seconds(nbf));
        self
    }

    /// Adds an audience; a token with several audiences carries `aud` as an array.
    #[must_use]
    pub fn with_audience(mut self, aud: impl Into<String>) -> Self {
        self.aud.push(aud.into());
        self
    }

    /// Assembles checked claims; for the verifier only.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_verified(
        iss: String,
        sub: String,
        aud: Vec<String>,
        exp_secs: i64,
        iat_secs: i64,
        nbf_secs: Option<i64>,
        jti: String,
        client_id: Option<String>,
        sid: SessionId,
    ) -> Self {
        AccessClaims {
            iss,
            sub,
            aud,
            exp: from_secs(exp_secs),
            iat: from_secs(iat_secs),
            nbf: nbf_secs.map(from_secs),
            jti,
            client_id,
            sid,
        }
    }

    /// The issuer (`iss`).
    pub fn iss(&self) -> &str {
        &self.iss
    }

    /// The subject (`sub`): the user id.
    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// The audiences (`aud`); at least one.
    pub fn aud(&self) -> &[String] {
        &self.aud
    }

    /// The expiry (`exp`): the token is invalid from this instant on.
    pub fn exp(&self) -> Timestamp {
        self.exp
    }

    /// When the token was issued (`iat`).
    pub fn iat(&self) -> Timestamp {
        self.iat
    }

    /// The start of validity (`nbf`), if set.
    pub fn nbf(&self) -> Option<Timestamp> {
        self.nbf
    }

    /// The token's unique id (`jti`).
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The OAuth client the token was issued to (`client_id`), if any.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The sessionguard session the token belongs to (`sid`). A server that must
    /// honour logout at once checks that this session is still alive.
    pub fn sid(&self) -> SessionId {
        self.sid
    }
}

/// A `Timestamp` of whole seconds.
fn from_secs(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs.saturating_mul(1000))
}

fn whole_seconds(t: Timestamp) -> Timestamp {
    from_secs(t.as_secs())
}

/// 16 bytes from the OS CSPRNG as 22 characters of base64url.
fn random_jti() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the operating system's CSPRNG is unavailable");
    URL_SAFE_NO_PAD.encode(b)
}

fn numeric_date<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(t.as_secs())
}

// serde's `serialize_with` hands over a reference to the field, here `&Option<_>`.
#[allow(clippy::ref_option)]
fn opt_numeric_date<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_i64(t.as_secs()),
        None => s.serialize_none(),
    }
}

/// One audience as a string, several as an array (RFC 7519 §4.1.3).
fn one_or_many<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

fn session_id<S: Serializer>(sid: &SessionId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(sid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_serialise_as_rfc_9068() {
        let sid = SessionId::random();
        let claims = AccessClaims::new(
            "https://auth.example",
            "u_1",
            "https://api.example",
            sid,
            Timestamp::from_millis(1_000_999),
            Duration::from_secs(300),
        )
        .with_client_id("app");
        let v = serde_json::to_value(&claims).unwrap();
        assert_eq!(v["iss"], "https://auth.example");
        assert_eq!(v["sub"], "u_1");
        assert_eq!(v["aud"], "https://api.example");
        assert_eq!(v["iat"], 1000);
        assert_eq!(v["exp"], 1300);
        assert_eq!(v["client_id"], "app");
        assert_eq!(v["sid"], sid.to_string());
        assert_eq!(v["jti"].as_str().unwrap().len(), 22);
        assert!(v.get("nbf").is_none());
        assert_eq!(claims.iat(), Timestamp::from_millis(1_000_000));
    }

    #[test]
    fn several_audiences_serialise_as_an_array() {
        let claims = AccessClaims::new(
            "i",
            "s",
            "a",
            SessionId::random(),
            Timestamp::EPOCH,
            Duration::from_secs(1),
        )
        .with_audience("b")
        .with_not_before(Timestamp::from_millis(1_500));
        let v = serde_json::to_value(&claims).unwrap();
        assert_eq!(v["aud"], json!(["a", "b"]));
        assert_eq!(v["nbf"], 1);
    }

    #[test]
    fn each_token_gets_its_own_jti() {
        let make = || {
            AccessClaims::new(
                "i",
                "s",
                "a",
                SessionId::random(),
                Timestamp::EPOCH,
                Duration::from_secs(1),
            )
        };
        assert_ne!(make().jti(), make().jti());
    }
}
