//! `idle_timeout`, `absolute_timeout` and `refresh_lifetime`: real waits,
//! bounded by `--max-wait`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::agent::{Agent, Fail, Pw, Session};
use crate::jwt::Jwt;
use crate::model::{CheckId, CheckReport, Severity};

use super::{human, keepalive, live_session, margin, wait_until};

/// What the cookie and the token say about their own lifetime: hints only.
fn hints(agent: &Agent, s: &Session) -> Vec<String> {
    let mut h = Vec::new();
    if let Some(name) = agent.recipe.session_cookie() {
        let set = s
            .before
            .iter()
            .chain(std::iter::once(&s.login))
            .rev()
            .find_map(|e| e.set_cookie(name));
        if let Some(c) = set {
            h.push(match (c.max_age, &c.expires) {
                (Some(m), _) => format!(
                    "hint: the cookie says Max-Age={m} ({})",
                    human(Duration::from_secs(m.max(0) as u64))
                ),
                (None, Some(e)) => format!("hint: the cookie says Expires={e}"),
                (None, None) => {
                    "hint: the cookie has no Max-Age or Expires (a browser-session cookie)".into()
                }
            });
        }
    }
    if let Some(j) = agent.token_of(s).as_deref().and_then(Jwt::parse) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        h.push(match j.time_claim("exp") {
            Some(exp) => format!(
                "hint: the token's exp is {} from its login",
                human(Duration::from_secs(
                    (exp - j.time_claim("iat").unwrap_or(now)).max(0) as u64
                ))
            ),
            None => "hint: the token has no exp claim".into(),
        });
    }
    h.push("Hints are what the client is told; the verdict is what the server accepts.".into());
    h
}

fn too_long(
    what: &str,
    claim: Duration,
    margin: Duration,
    max_wait: Duration,
    claimed: bool,
) -> String {
    format!(
        "the {} {what} of {} plus a margin of {} is longer than --max-wait {} (raise --max-wait \
         to measure it)",
        if claimed {
            "claimed"
        } else {
            "NIST SP 800-63B-4 AAL2"
        },
        human(claim),
        human(margin),
        human(max_wait)
    )
}

/// `idle_timeout`: log in, stay idle past the claim, replay.
pub(super) async fn idle(agent: &Agent) -> Result<CheckReport, Fail> {
    let id = CheckId::IdleTimeout;
    let claims = &agent.recipe.claims;
    let claim = claims.idle_timeout;
    let m = margin(claim);
    if claim + m > agent.options.max_wait {
        return Ok(CheckReport::not_tested(
            id,
            too_long(
                "idle timeout",
                claim,
                m,
                agent.options.max_wait,
                claims.idle_claimed,
            ),
        ));
    }
    let mut s = live_session(agent, Pw::Original).await?;
    let (_, last) = agent.probe(&s.cred()).await?;
    s.jar.apply(&last.set_cookies);
    let cred = s.cred();
    let until = last.at + claim + m;
    wait_until(
        agent,
        &format!("idle_timeout: idle for {}", human(claim + m)),
        until,
    )
    .await;
    let (alive, replay) = agent.probe(&cred).await?;
    let idle_for = replay.at.saturating_duration_since(last.at);
    let ev = vec![
        agent.evidence("the last use of the session", &last),
        agent.evidence(
            format!("after {} idle: the session replayed", human(idle_for)),
            &replay,
        ),
    ];
    let mut r = if alive {
        CheckReport::vulnerable(
            id,
            Severity::Medium,
            format!(
                "The session was still accepted after {} idle; the {} idle timeout is {}.",
                human(idle_for),
                if claims.idle_claimed {
                    "claimed"
                } else {
                    "AAL2"
                },
                human(claim)
            ),
        )
    } else {
        CheckReport::ok(
            id,
            format!(
                "The session was refused after {} idle ({}).",
                human(idle_for),
                replay.status
            ),
        )
    }
    .with_evidence(ev);
    for h in hints(agent, &s) {
        r = r.note(h);
    }
    Ok(r)
}

/// `absolute_timeout` and `refresh_lifetime`: one session kept active (and its
/// refresh chain kept rotating) past the claimed absolute timeout.
pub(super) async fn absolute(
    agent: &Agent,
    check_absolute: bool,
    check_refresh: bool,
) -> Result<Vec<CheckReport>, Fail> {
    let claims = &agent.recipe.claims;
    let claim = claims.absolute_timeout;
    let m = margin(claim);
    let both = |reason: String| {
        let mut v = Vec::new();
        if check_absolute {
            v.push(CheckReport::not_tested(
                CheckId::AbsoluteTimeout,
                reason.clone(),
            ));
        }
        if check_refresh {
            v.push(CheckReport::not_tested(CheckId::RefreshLifetime, reason));
        }
        v
    };
    if claim + m > agent.options.max_wait {
        return Ok(both(too_long(
            "absolute timeout",
            claim,
            m,
            agent.options.max_wait,
            claims.absolute_claimed,
        )));
    }
    let mut s = match live_session(agent, Pw::Original).await {
        Ok(s) => s,
        Err(Fail::Step(r)) => return Ok(both(r)),
        Err(e) => return Err(e),
    };
    let start = s.login.at;
    let until = start + claim + m;
    let every = keepalive(agent);
    let mut session_end: Option<(Duration, crate::http::Exchange)> = None;
    let mut refresh_end: Option<(Duration, crate::http::Exchange)> = None;
    let mut refresh = if check_refresh {
        s.refresh.clone()
    } else {
        None
    };
    let refresh_missing = check_refresh && refresh.is_none();
    let what = format!(
        "absolute_timeout: keeping a session active for {}",
        human(claim + m)
    );
    loop {
        let next = (Instant::now() + every).min(until);
        wait_until(agent, &what, next).await;
        if Instant::now() >= until {
            break;
        }
        if let Some(token) = refresh.clone() {
            let (ex, got) = agent.refresh(&token).await?;
            match got {
                Some(g) => {
                    if let Some(r) = g.refresh {
                        refresh = Some(r);
                    }
                    if let Some(b) = g.bearer {
                        match agent.recipe.session_cookie() {
                            Some(name) => s.jar.set(name, &b),
                            None => s.bearer = Some(b),
                        }
                    }
                }
                None => {
                    refresh_end = Some((ex.at.saturating_duration_since(start), ex));
                    refresh = None;
                }
            }
        }
        if session_end.is_none() {
            let (ok, ex) = agent.probe(&s.cred()).await?;
            s.jar.apply(&ex.set_cookies);
            if !ok {
                session_end = Some((ex.at.saturating_duration_since(start), ex));
            }
        }
        if session_end.is_some() && (refresh.is_none() || !check_refresh) {
            break;
        }
    }
    let mut out = Vec::new();
    if check_absolute {
        let r = match session_end {
            Some((after, ex)) => CheckReport::ok(
                CheckId::AbsoluteTimeout,
                format!(
                    "The session, kept active, was refused {} after login ({}); the absolute timeout is {}.",
                    human(after),
                    ex.status,
                    human(claim)
                ),
            )
            .with_evidence(vec![agent.evidence("the first refused request", &ex)]),
            None => {
                let (alive, ex) = agent.probe(&s.cred()).await?;
                let age = ex.at.saturating_duration_since(start);
                let ev = vec![agent.evidence(format!("{} after login", human(age)), &ex)];
                if alive {
                    CheckReport::vulnerable(
                        CheckId::AbsoluteTimeout,
                        Severity::Medium,
                        format!(
                            "The session, kept active, was still accepted {} after login; the {} \
                             absolute timeout is {}.",
                            human(age),
                            if claims.absolute_claimed { "claimed" } else { "AAL2" },
                            human(claim)
                        ),
                    )
                } else {
                    CheckReport::ok(
                        CheckId::AbsoluteTimeout,
                        format!("The session was refused {} after login ({}).", human(age), ex.status),
                    )
                }
                .with_evidence(ev)
            }
        };
        let mut r = r;
        for h in hints(agent, &s) {
            r = r.note(h);
        }
        out.push(r);
    }
    if check_refresh {
        let r = if refresh_missing {
            CheckReport::not_tested(
                CheckId::RefreshLifetime,
                "the login answer carries no refresh token at [refresh] token_field",
            )
        } else {
            match (refresh_end, refresh) {
                (Some((after, ex)), _) => CheckReport::ok(
                    CheckId::RefreshLifetime,
                    format!(
                        "The refresh token stopped working after {} ({}).",
                        human(after),
                        ex.status
                    ),
                )
                .with_evidence(vec![agent.evidence("the first refused refresh", &ex)]),
                (None, Some(token)) => {
                    let (ex, got) = agent.refresh(&token).await?;
                    let age = ex.at.saturating_duration_since(start);
                    let ev =
                        vec![agent.evidence(format!("{} after login: a refresh", human(age)), &ex)];
                    if got.is_some() {
                        CheckReport::vulnerable(
                            CheckId::RefreshLifetime,
                            Severity::Medium,
                            format!(
                                "The refresh token still worked {} after login, past the absolute \
                                 timeout of {}: refreshing extends the session for ever.",
                                human(age),
                                human(claim)
                            ),
                        )
                    } else {
                        CheckReport::ok(
                            CheckId::RefreshLifetime,
                            format!(
                                "The refresh token was refused {} after login ({}).",
                                human(age),
                                ex.status
                            ),
                        )
                    }
                    .with_evidence(ev)
                }
                (None, None) => CheckReport::not_tested(
                    CheckId::RefreshLifetime,
                    "the refresh chain was not followed",
                ),
            }
        };
        out.push(r);
    }
    Ok(out)
}
