//! The recipe's self-test and the quick checks: cookie attributes, fixation,
//! logout (with the refresh token after logout), refresh-token reuse and
//! concurrent sessions.

use crate::agent::{Agent, Cred, Fail, Pw, Session};
use crate::cookie::Jar;
use crate::http::{Exchange, Request};
use crate::model::{CheckId, CheckReport, Evidence, Severity};

use super::{Stop, live_session, relabel};

/// `recipe`: the probe fails without a session and succeeds with a fresh one.
pub(super) async fn self_test(agent: &Agent) -> Result<(CheckReport, Session), Stop> {
    let stop = |e: Fail, step: &str| match e {
        Fail::Target(e) => Stop::Target(e.to_string()),
        Fail::Step(s) | Fail::Restore(s) => Stop::Recipe(format!("{step}: {s}")),
    };
    let (anon_ok, anon) = agent
        .probe(&Cred::anonymous())
        .await
        .map_err(|e| stop(e, "probe without a session"))?;
    if anon_ok {
        return Err(Stop::Recipe(format!(
            "probe without a session: it answered {} and the recipe counts that as logged in; \
             tighten [probe] logged_in (status, body_regex) so that a logged-out answer differs",
            anon.status
        )));
    }
    let mut session = agent
        .login(Pw::Original)
        .await
        .map_err(|e| stop(e, "login"))?;
    let (ok, ex) = agent
        .probe(&session.cred())
        .await
        .map_err(|e| stop(e, "probe after login"))?;
    if !ok {
        let r = agent.redactor.lock().expect("not poisoned");
        return Err(Stop::Recipe(format!(
            "probe after login: expected status {}{}, got:\n{}",
            agent.recipe.probe.status,
            if agent.recipe.probe.body_regex.is_some() {
                " and a body matching body_regex"
            } else {
                ""
            },
            ex.describe_response(&r)
        )));
    }
    session.jar.apply(&ex.set_cookies);
    let mut evidence = vec![agent.evidence("probe without a session: logged out", &anon)];
    for b in &session.before {
        evidence.push(agent.evidence("the page with the login's anti-CSRF token", b));
    }
    evidence.push(agent.evidence("login", &session.login));
    evidence.push(agent.evidence("probe with the new session: logged in", &ex));
    let report = CheckReport::ok(
        CheckId::Recipe,
        "The probe refuses an anonymous request and accepts a freshly logged-in session.",
    )
    .with_evidence(evidence);
    Ok((report, session))
}

/// One problem with the session cookie.
struct Issue {
    severity: Severity,
    cwe: u32,
    text: String,
}

/// `cookie_attributes`, from the self-test's login.
pub(super) fn cookie_attributes(agent: &Agent, s: &Session) -> CheckReport {
    let id = CheckId::CookieAttributes;
    let Some(name) = agent.recipe.session_cookie() else {
        return CheckReport::not_tested(id, "the session is a bearer token, not a cookie");
    };
    let all: Vec<&Exchange> = s.before.iter().chain(std::iter::once(&s.login)).collect();
    let Some((ex, c)) = all
        .iter()
        .rev()
        .find_map(|ex| ex.set_cookie(name).map(|c| (*ex, c)))
    else {
        return CheckReport::not_tested(
            id,
            format!("no response of the login set the {name} cookie"),
        );
    };
    let mut issues = Vec::new();
    let mut add = |severity, cwe, text: String| {
        issues.push(Issue {
            severity,
            cwe,
            text,
        })
    };
    if !c.secure {
        add(
            Severity::Medium,
            614,
            "no Secure attribute: the browser also sends the cookie over plain HTTP".into(),
        );
    }
    if !c.http_only {
        add(
            Severity::Medium,
            1004,
            "no HttpOnly attribute: scripts (and so XSS) can read the session cookie".into(),
        );
    }
    match c
        .same_site
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => add(
            Severity::Low,
            1275,
            "no SameSite attribute: browsers other than Chromium send it on cross-site requests"
                .into(),
        ),
        Some("none") => add(
            Severity::Low,
            1275,
            "SameSite=None: sent on every cross-site request".into(),
        ),
        Some("lax") | Some("strict") => {}
        Some(other) => add(
            Severity::Low,
            1275,
            format!("SameSite={other} is not a value browsers know (they treat it as absent)"),
        ),
    }
    if let Some(d) = &c.domain {
        add(
            Severity::Low,
            1275,
            format!("Domain={d}: the cookie is also sent to every subdomain"),
        );
    }
    if c.persistent() {
        add(
            Severity::Low,
            613,
            format!(
                "persistent cookie ({}): it survives closing the browser",
                [
                    c.max_age.map(|m| format!("Max-Age={m}")),
                    c.expires.as_ref().map(|e| format!("Expires={e}")),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
            ),
        );
    }
    if name.starts_with("__Host-") {
        if !c.secure || c.domain.is_some() || c.path.as_deref() != Some("/") {
            add(
                Severity::Medium,
                614,
                "the __Host- prefix requires Secure, Path=/ and no Domain; browsers refuse \
                 this cookie"
                    .into(),
            );
        }
    } else {
        add(
            Severity::Info,
            1275,
            "no __Host- prefix: a sibling subdomain or a plain-HTTP response could set or \
             shadow this cookie"
                .into(),
        );
    }
    // The identifier in a URL: a Location header or a link of the login and probe answers.
    let value = &c.value;
    let mut in_url = None;
    for e in &all {
        if e.header("location")
            .is_some_and(|l| l.contains(value.as_str()))
        {
            in_url = Some("a Location header");
        } else if url_in_body(&e.body, value) {
            in_url = Some("a link in the page");
        }
    }
    if let Some(place) = in_url {
        add(
            Severity::High,
            598,
            format!(
                "the session identifier appears in a URL ({place}): it leaks through logs, history and Referer"
            ),
        );
    }
    let mut evidence = vec![agent.evidence("the response that set the session cookie", ex)];
    if issues.is_empty() {
        return CheckReport::ok(
            id,
            format!("{name}: {}; the identifier is in no URL.", c.attributes()),
        )
        .with_evidence(evidence);
    }
    let severity = issues.iter().map(|i| i.severity).max().expect("not empty");
    evidence.extend(issues.iter().map(|i| {
        agent.fact(format!(
            "[{}] CWE-{}: {}",
            i.severity.as_str(),
            i.cwe,
            i.text
        ))
    }));
    let worst: Vec<&str> = issues
        .iter()
        .filter(|i| i.severity == severity)
        .map(|i| i.text.split(':').next().unwrap_or(""))
        .collect();
    CheckReport::vulnerable(
        id,
        severity,
        format!(
            "{name}: {} (and {} issue(s) in all).",
            worst.join("; "),
            issues.len()
        ),
    )
    .with_evidence(evidence)
}

fn url_in_body(body: &str, value: &str) -> bool {
    if value.len() < 8 {
        return false;
    }
    body.match_indices(value).any(|(i, _)| {
        let before = &body[i.saturating_sub(200)..i];
        let lower = before.to_ascii_lowercase();
        let attr = ["href=", "src=", "action=", "url("]
            .iter()
            .filter_map(|a| lower.rfind(a))
            .max();
        let quote_closed = attr.is_some_and(|p| {
            let rest = &before[p..];
            let q = rest.find(['"', '\'']);
            q.is_some_and(|q| !rest[q + 1..].contains(['"', '\'', '>']))
        });
        quote_closed || before.ends_with('=') && before.rfind(['?', '&', ';']).is_some()
    })
}

/// A random identifier shaped like `real`: the same length, each letter or digit
/// replaced by a random one of its class (hex stays hex), a prefix up to a
/// separator kept.
fn planted_like(real: &str) -> String {
    let mut rnd = vec![0u8; real.len()];
    getrandom::fill(&mut rnd).expect("the operating system's CSPRNG is unavailable");
    let hex = real.bytes().all(|b| b.is_ascii_hexdigit());
    let keep = real
        .find(['_', '-', '.', ':', '|'])
        .filter(|p| *p <= 8)
        .map_or(0, |p| p + 1);
    real.bytes()
        .zip(rnd)
        .enumerate()
        .map(|(i, (b, r))| {
            let r = usize::from(r);
            let c = if i < keep {
                b
            } else if hex {
                b"0123456789abcdef"[r % 16]
            } else if b.is_ascii_digit() {
                b'0' + (r % 10) as u8
            } else if b.is_ascii_lowercase() {
                b'a' + (r % 26) as u8
            } else if b.is_ascii_uppercase() {
                b'A' + (r % 26) as u8
            } else {
                b
            };
            char::from(c)
        })
        .collect()
}

/// `fixation`: (a) an identifier issued before login, (b) a planted one.
pub(super) async fn fixation(agent: &Agent) -> Result<CheckReport, Fail> {
    let id = CheckId::Fixation;
    let name = agent
        .recipe
        .session_cookie()
        .ok_or_else(|| Fail::Step("the session is not a cookie".into()))?
        .to_owned();
    let mut evidence = Vec::new();
    let mut found: Vec<String> = Vec::new();
    let mut notes = Vec::new();

    // (a) The server's own pre-login identifier.
    let mut jar = Jar::new();
    let page = agent
        .recipe
        .login
        .csrf
        .as_ref()
        .map(|c| c.page.clone())
        .unwrap_or_else(|| {
            // The login path without placeholders, fetched with GET.
            agent
                .expand(
                    &agent.recipe.login.path,
                    crate::agent::Vars {
                        pw: Pw::Original,
                        session: None,
                        refresh: None,
                    },
                )
                .unwrap_or_else(|_| "/".into())
        });
    let ex = agent.send(Request::new("GET", &page)).await?;
    jar.apply(&ex.set_cookies);
    match jar.get(&name).map(str::to_owned) {
        None => notes.push(format!(
            "(a) GET {page} set no {name} cookie: the server issues no identifier before login"
        )),
        Some(pre) => {
            evidence.push(agent.evidence("(a) before login: the server issues an identifier", &ex));
            let (before_ok, _) = agent.probe(&agent.replay(&pre)).await?;
            let s = agent
                .login_with(jar, Pw::Original)
                .await
                .map_err(|e| relabel(e, "(a) login with the server's pre-login identifier"))?;
            let pre = s.pre_login.get(&name).map_or(pre, str::to_owned);
            let post = agent.token_of(&s).unwrap_or_default();
            evidence.push(agent.evidence("(a) login presenting it", &s.login));
            let (after_ok, after) = agent.probe(&agent.replay(&pre)).await?;
            evidence
                .push(agent.evidence("(a) after login: the pre-login identifier alone", &after));
            if before_ok {
                notes.push(
                    "(a) the pre-login identifier already passed the probe before login \
                     (not judged)"
                        .into(),
                );
            } else if after_ok && pre == post {
                // Same identifier: adopted, or the generator gave the same value
                // again (identifiers derived from the time). A control login tells.
                let control = agent.login(Pw::Original).await?;
                let again = agent.token_of(&control).unwrap_or_default();
                if again == post {
                    notes.push(
                        "(a) the identifier stayed the same across login, but a separate login \
                         at the same moment got the same identifier too: the generator repeats \
                         itself (see token_entropy), which is not fixation"
                            .into(),
                    );
                } else {
                    found.push(
                        "(a) the identifier the server issued before login is kept at login and \
                         identifies the user afterwards"
                            .into(),
                    );
                }
            } else if after_ok {
                found.push(
                    "(a) the identifier the server issued before login is still accepted for \
                     the user after login (a new one was issued too)"
                        .into(),
                );
            } else {
                notes.push(format!(
                    "(a) the pre-login identifier is refused after login ({})",
                    if pre == post {
                        "kept, but not authenticated"
                    } else {
                        "a new one was issued"
                    }
                ));
            }
        }
    }

    // (b) An identifier the attacker chose.
    let sample = agent.login(Pw::Original).await?;
    let real = agent.token_of(&sample).unwrap_or_default();
    let planted = planted_like(&real);
    let label = agent.secret(&planted, crate::redact::Kind::Session);
    let s = agent
        .login_with(Jar::with(&name, &planted), Pw::Original)
        .await
        .map_err(|e| relabel(e, "(b) login with a planted identifier"))?;
    evidence.push(agent.evidence(
        format!("(b) login presenting a planted identifier {label}"),
        &s.login,
    ));
    let (after_ok, after) = agent.probe(&agent.replay(&planted)).await?;
    evidence.push(agent.evidence("(b) after login: the planted identifier alone", &after));
    if after_ok {
        found.push(
            "(b) an identifier the client chose before login identifies the user after login"
                .into(),
        );
    } else {
        notes.push("(b) the planted identifier is refused after login".into());
    }

    let report = if found.is_empty() {
        CheckReport::ok(
            id,
            "Neither a server-issued pre-login identifier nor a planted one identifies the user \
             after login.",
        )
    } else {
        CheckReport::vulnerable(id, Severity::High, found.join("; "))
    };
    let mut report = report.with_evidence(evidence);
    for n in notes {
        report = report.note(n);
    }
    Ok(report)
}

/// `logout` and `refresh_after_logout`, from one logout.
pub(super) async fn logout(
    agent: &Agent,
    check_logout: bool,
    check_refresh: bool,
) -> Result<Vec<CheckReport>, Fail> {
    let not_tested = |reason: String| {
        let mut v = Vec::new();
        if check_logout {
            v.push(CheckReport::not_tested(CheckId::Logout, reason.clone()));
        }
        if check_refresh {
            v.push(CheckReport::not_tested(CheckId::RefreshAfterLogout, reason));
        }
        v
    };
    let ep = agent
        .recipe
        .logout
        .clone()
        .ok_or_else(|| Fail::Step("the recipe has no [logout]".into()))?;
    let mut s = match live_session(agent, Pw::Original).await {
        Ok(s) => s,
        Err(Fail::Step(r)) => return Ok(not_tested(r)),
        Err(e) => return Err(e),
    };
    let before = s.cred();
    let refresh = s.refresh.clone();
    let ex = agent.call(&ep, &mut s, Pw::Original).await?;
    if ex.status >= 400 {
        return Ok(not_tested(format!(
            "the logout request answered {} (check [logout] and [session] headers)",
            ex.status
        )));
    }
    let mut out = Vec::new();
    let logout_ev = agent.evidence("logout", &ex);
    let cleared = agent
        .recipe
        .session_cookie()
        .and_then(|n| ex.set_cookie(n))
        .is_some_and(|c| c.deletes());
    if check_logout {
        let (alive, replay) = agent.probe(&before).await?;
        let ev = vec![
            logout_ev.clone(),
            agent.evidence("after logout: the pre-logout session replayed", &replay),
        ];
        let hint = if agent.recipe.session_cookie().is_some() {
            if cleared {
                "The logout answer cleared the cookie (a courtesy; the replay is the test)."
            } else {
                "The logout answer did not clear the cookie; only the replay counts."
            }
        } else {
            "The bearer token was replayed as it was before logout."
        };
        let r = if alive {
            CheckReport::vulnerable(
                CheckId::Logout,
                Severity::High,
                "The session still works after logout: logout does not end it on the server.",
            )
        } else {
            CheckReport::ok(
                CheckId::Logout,
                format!(
                    "The pre-logout session is refused after logout ({}).",
                    replay.status
                ),
            )
        };
        out.push(r.with_evidence(ev).note(hint));
    }
    if check_refresh {
        let r = match refresh {
            None => CheckReport::not_tested(
                CheckId::RefreshAfterLogout,
                "the login answer carries no refresh token at [refresh] token_field",
            ),
            Some(token) => {
                let (ex, got) = agent.refresh(&token).await?;
                let mut ev = vec![
                    logout_ev,
                    agent.evidence("after logout: the refresh token used", &ex),
                ];
                match got {
                    Some(new) => {
                        let works = match &new.bearer {
                            Some(b) => {
                                let (ok, p) = agent.probe(&agent.replay(b)).await?;
                                ev.push(agent.evidence("the token it issued, on the probe", &p));
                                ok
                            }
                            None => false,
                        };
                        CheckReport::vulnerable(
                            CheckId::RefreshAfterLogout,
                            Severity::High,
                            if works {
                                "The refresh token still issues working tokens after logout."
                            } else {
                                "The refresh token is still accepted after logout (it issued new tokens)."
                            },
                        )
                        .with_evidence(ev)
                    }
                    None => CheckReport::ok(
                        CheckId::RefreshAfterLogout,
                        format!("The refresh token is refused after logout ({}).", ex.status),
                    )
                    .with_evidence(ev),
                }
            }
        };
        out.push(r);
    }
    Ok(out)
}

/// `refresh_reuse`: rotate twice, replay the first token, then try the newest.
pub(super) async fn refresh_reuse(agent: &Agent) -> Result<CheckReport, Fail> {
    let id = CheckId::RefreshReuse;
    let s = live_session(agent, Pw::Original).await?;
    let r1 = s.refresh.clone().ok_or_else(|| {
        Fail::Step("the login answer carries no refresh token at [refresh] token_field".into())
    })?;
    let mut ev: Vec<Evidence> = Vec::new();
    let (ex1, got) = agent.refresh(&r1).await?;
    ev.push(agent.evidence("refresh with the first token", &ex1));
    let got = got.ok_or_else(|| {
        Fail::Step(format!(
            "the first refresh answered {} without tokens",
            ex1.status
        ))
    })?;
    let r2 = match got.refresh {
        Some(r2) if r2 != r1 => r2,
        _ => {
            let (ex, again) = agent.refresh(&r1).await?;
            ev.push(agent.evidence("the same refresh token used again", &ex));
            return Ok(if again.is_some() {
                CheckReport::vulnerable(
                    id,
                    Severity::Medium,
                    "Refresh tokens are not rotated: the same token keeps working (RFC 9700 \
                     §4.14.2 asks for rotation or sender-constrained tokens).",
                )
            } else {
                CheckReport::ok(id, "A refresh token works once and no new one is issued.")
            }
            .with_evidence(ev));
        }
    };
    let (ex2, got2) = agent.refresh(&r2).await?;
    ev.push(agent.evidence("refresh with the second token", &ex2));
    let r3 = got2
        .and_then(|g| g.refresh)
        .ok_or_else(|| Fail::Step(format!("the second refresh answered {}", ex2.status)))?;
    let (ex_re, reused) = agent.refresh(&r1).await?;
    ev.push(agent.evidence("the first (rotated) token replayed", &ex_re));
    if reused.is_some() {
        return Ok(CheckReport::vulnerable(
            id,
            Severity::High,
            "A rotated refresh token still works: a stolen old token keeps issuing sessions.",
        )
        .with_evidence(ev));
    }
    let (ex_fam, family) = agent.refresh(&r3).await?;
    ev.push(agent.evidence("after the replay: the newest token", &ex_fam));
    Ok(if family.is_some() {
        CheckReport::vulnerable(
            id,
            Severity::Low,
            "The rotated token is refused, but its reuse goes unnoticed: the newest token of the \
             family still works (RFC 9700 §4.14.2: revoke the family on reuse).",
        )
    } else {
        CheckReport::ok(
            id,
            "A rotated refresh token is refused and its reuse revokes the whole family.",
        )
    }
    .with_evidence(ev))
}

/// Words that tell a displaced session why it ended.
const REASON_WORDS: [&str; 12] = [
    "displaced",
    "elsewhere",
    "another",
    "concurrent",
    "limit",
    "superseded",
    "replaced",
    "new login",
    "signed in",
    "logged in from",
    "too many",
    "other device",
];

fn tells_why(ex: &Exchange) -> bool {
    let text = format!(
        "{} {} {}",
        ex.body,
        ex.header("location").unwrap_or(""),
        ex.header("www-authenticate").unwrap_or("")
    )
    .to_ascii_lowercase();
    REASON_WORDS.iter().any(|w| text.contains(w))
}

/// The most logins `concurrent_sessions` makes.
const MAX_CONCURRENT_TESTED: u32 = 100;

/// `concurrent_sessions`: one login more than the claimed limit.
pub(super) async fn concurrent(agent: &Agent) -> Result<CheckReport, Fail> {
    let id = CheckId::ConcurrentSessions;
    let limit = agent.recipe.claims.max_sessions;
    if limit == 0 {
        return Ok(CheckReport::not_tested(
            id,
            "the recipe claims no limit ([claims] max_sessions = 0)",
        ));
    }
    if limit >= MAX_CONCURRENT_TESTED {
        return Ok(CheckReport::not_tested(
            id,
            format!(
                "a claimed limit of {limit} is above the {MAX_CONCURRENT_TESTED} logins this check makes"
            ),
        ));
    }
    let mut sessions = Vec::new();
    let mut refused = None;
    for _ in 0..=limit {
        match agent.login(Pw::Original).await {
            Ok(s) => sessions.push(s),
            Err(Fail::Step(reason)) if !sessions.is_empty() => {
                refused = Some(reason);
                break;
            }
            Err(e) => return Err(relabel(e, "a login")),
        }
    }
    let mut live = 0;
    let mut ended = Vec::new();
    for s in &sessions {
        let (ok, ex) = agent.probe(&s.cred()).await?;
        if ok {
            live += 1;
        } else {
            ended.push(ex);
        }
    }
    let mut ev = vec![agent.fact(format!(
        "{} logins (the claimed limit is {limit}); {live} sessions pass the probe afterwards",
        sessions.len()
    ))];
    if let Some(r) = &refused {
        ev.push(agent.fact(format!("login {} was refused: {r}", sessions.len() + 1)));
    }
    if live > limit as usize {
        return Ok(CheckReport::vulnerable(
            id,
            Severity::Medium,
            format!("{live} sessions of one user are live at once; the claimed limit is {limit}."),
        )
        .with_evidence(ev));
    }
    if let Some(r) = refused {
        let told = REASON_WORDS
            .iter()
            .any(|w| r.to_ascii_lowercase().contains(w));
        return Ok(if told {
            CheckReport::ok(
                id,
                format!("The limit of {limit} holds: the extra login is refused, saying why."),
            )
        } else {
            CheckReport::vulnerable(
                id,
                Severity::Info,
                format!("The limit of {limit} holds, but the refused login is not told why."),
            )
        }
        .with_evidence(ev));
    }
    for e in ended.iter().take(2) {
        ev.push(agent.evidence("an ended session's next request", e));
    }
    if ended.iter().any(tells_why) {
        Ok(CheckReport::ok(
            id,
            format!("The limit of {limit} holds and the displaced session is told why."),
        )
        .with_evidence(ev))
    } else {
        Ok(CheckReport::vulnerable(
            id,
            Severity::Info,
            format!(
                "The limit of {limit} holds, but the displaced session's answer does not say why \
                 (no reason such as \"displaced\" or \"signed in elsewhere\")."
            ),
        )
        .with_evidence(ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_identifiers_keep_shape_and_prefix() {
        let p = planted_like("sgs_AbC9-xyz");
        assert!(p.starts_with("sgs_"));
        assert_eq!(p.len(), 12);
        assert_eq!(&p[8..9], "-");
        let h = planted_like("0123456789abcdef0123456789abcdef");
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(h, "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn identifiers_in_links_are_found_and_others_not() {
        let v = "abcdef0123456789";
        assert!(url_in_body(
            &format!(r#"<a href="/next;jsessionid={v}">"#),
            v
        ));
        assert!(url_in_body(&format!("see /page?sid={v}"), v));
        assert!(!url_in_body(&format!(r#"<p>your id: {v}</p>"#), v));
        assert!(!url_in_body(&format!(r#"<a href="/x">y</a> {v}"#), v));
    }
}
