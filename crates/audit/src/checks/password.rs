//! `password_change` and `api_token_after_password_change`, from one password
//! change — after which the password is changed back, and the account is left
//! usable even when a step fails.

use crate::agent::{Agent, Fail, Pw};
use crate::model::{CheckId, CheckReport, Evidence, Severity};

use super::{live_session, relabel};

/// Runs both checks around a single change of the password.
pub(super) async fn password_change(
    agent: &Agent,
    check_sessions: bool,
    check_api: bool,
) -> Result<Vec<CheckReport>, Fail> {
    let ep = agent
        .recipe
        .password_change
        .clone()
        .ok_or_else(|| Fail::Step("the recipe has no [password_change]".into()))?;
    let mut out = Vec::new();
    let mut sessions_reason: Option<String> = None;
    let mut api_reason: Option<String> = None;
    let fail_both = |reason: String, out: &mut Vec<CheckReport>| {
        if check_sessions {
            out.push(CheckReport::not_tested(
                CheckId::PasswordChange,
                reason.clone(),
            ));
        }
        if check_api {
            out.push(CheckReport::not_tested(
                CheckId::ApiTokenAfterPasswordChange,
                reason,
            ));
        }
    };

    let victim = match live_session(agent, Pw::Original).await {
        Ok(v) => v,
        Err(Fail::Step(r)) => {
            fail_both(r, &mut out);
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    let mut changer = match live_session(agent, Pw::Original).await {
        Ok(c) => c,
        Err(Fail::Step(r)) => {
            fail_both(r, &mut out);
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    let mut ev_api: Vec<Evidence> = Vec::new();
    let mut api_token = None;
    if check_api {
        match agent.create_api_token(&mut changer).await {
            Ok((ex, token)) => {
                ev_api.push(agent.evidence("before: an API token created", &ex));
                let (ok, p) = agent.probe(&crate::agent::Cred::bearer(&token)).await?;
                ev_api.push(agent.evidence("before: the API token on the probe", &p));
                if ok {
                    api_token = Some(token);
                } else {
                    api_reason = Some(format!(
                        "the new API token does not pass the probe ({}) as a bearer token",
                        p.status
                    ));
                }
            }
            Err(Fail::Step(r)) => api_reason = Some(r),
            Err(e) => return Err(e),
        }
    }
    let victim_cred = victim.cred();
    let (victim_alive, vp) = agent.probe(&victim_cred).await?;
    let mut ev_sessions = vec![agent.evidence("before: the second session on the probe", &vp)];
    if !victim_alive {
        sessions_reason = Some(
            "the app keeps one session per user (the second login ended the first), so no other \
             session exists to outlive a password change"
                .into(),
        );
    }
    if (sessions_reason.is_some() || !check_sessions) && (api_token.is_none() || !check_api) {
        if check_sessions {
            out.push(CheckReport::not_tested(
                CheckId::PasswordChange,
                sessions_reason.unwrap_or_default(),
            ));
        }
        if check_api {
            out.push(CheckReport::not_tested(
                CheckId::ApiTokenAfterPasswordChange,
                api_reason.unwrap_or_default(),
            ));
        }
        return Ok(out);
    }

    let change = agent.call(&ep, &mut changer, Pw::Original).await;
    let change = match change {
        Ok(ex) => ex,
        Err(e) => {
            restore(agent).await?;
            return Err(e);
        }
    };
    let change_ev = agent.evidence("the password changed from the first session", &change);
    if change.status >= 400 {
        // Make sure nothing changed after all.
        restore(agent).await?;
        fail_both(
            format!(
                "the password change answered {} (check [password_change], the new password's \
                 strength, and whether the app wants a recent login or an anti-CSRF header)",
                change.status
            ),
            &mut out,
        );
        return Ok(out);
    }
    ev_sessions.push(change_ev.clone());
    ev_api.push(change_ev);

    // The measurements, then the way back whatever they gave.
    let measured = async {
        let mut reports = Vec::new();
        if check_sessions {
            if let Some(reason) = &sessions_reason {
                reports.push(CheckReport::not_tested(
                    CheckId::PasswordChange,
                    reason.clone(),
                ));
            } else {
                let (alive, p) = agent.probe(&victim_cred).await?;
                ev_sessions.push(agent.evidence("after: the second session replayed", &p));
                reports.push(
                    if alive {
                        CheckReport::vulnerable(
                            CheckId::PasswordChange,
                            Severity::High,
                            "A session created before the password change still works after it.",
                        )
                    } else {
                        CheckReport::ok(
                            CheckId::PasswordChange,
                            format!(
                                "The other session is refused after the password change ({}).",
                                p.status
                            ),
                        )
                    }
                    .with_evidence(std::mem::take(&mut ev_sessions))
                    .note(
                        "The session that made the change may legitimately get a new identifier \
                         or keep its own; only the other session is judged.",
                    ),
                );
            }
        }
        if check_api {
            match &api_token {
                None => reports.push(CheckReport::not_tested(
                    CheckId::ApiTokenAfterPasswordChange,
                    api_reason.clone().unwrap_or_default(),
                )),
                Some(token) => {
                    let (alive, p) = agent.probe(&crate::agent::Cred::bearer(token)).await?;
                    ev_api.push(agent.evidence("after: the API token on the probe", &p));
                    reports.push(
                        if alive {
                            CheckReport::vulnerable(
                                CheckId::ApiTokenAfterPasswordChange,
                                Severity::High,
                                "An API token created before the password change still works \
                                 after it.",
                            )
                        } else {
                            CheckReport::ok(
                                CheckId::ApiTokenAfterPasswordChange,
                                format!(
                                    "The API token is refused after the password change ({}).",
                                    p.status
                                ),
                            )
                        }
                        .with_evidence(std::mem::take(&mut ev_api)),
                    );
                }
            }
        }
        Ok::<_, Fail>(reports)
    }
    .await;
    let restored = restore(agent).await;
    let reports = measured?;
    match restored? {
        Restored::AlreadyOriginal => Ok(reports
            .into_iter()
            .map(|r| {
                CheckReport::not_tested(
                    r.id,
                    "the password change answered success, but the new password does not log in \
                     and the old one still does",
                )
            })
            .collect()),
        Restored::ChangedBack => Ok(reports),
    }
}

/// How the account was left.
enum Restored {
    /// The original password already worked.
    AlreadyOriginal,
    /// The password was changed back.
    ChangedBack,
}

/// Leaves the account with its original password: if the new one logs in, the
/// password is changed back from that fresh session and the original one is
/// checked to log in again.
async fn restore(agent: &Agent) -> Result<Restored, Fail> {
    let ep = agent
        .recipe
        .password_change
        .clone()
        .ok_or_else(|| Fail::Step("the recipe has no [password_change]".into()))?;
    let restore_fail = |what: String| {
        Fail::Restore(format!(
            "{what}. The account's password may now be the recipe's new_password: log in with \
             it and change it back by hand"
        ))
    };
    let mut fresh = match agent.login(Pw::Changed).await {
        Ok(s) => s,
        Err(Fail::Step(_)) => {
            return match agent.login(Pw::Original).await {
                Ok(_) => Ok(Restored::AlreadyOriginal),
                Err(Fail::Step(r)) => Err(restore_fail(format!(
                    "neither the new nor the original password logs in ({r})"
                ))),
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let mut last = String::new();
    // Two tries: a transient refusal (throttling, a slow store) should not leave
    // the account changed.
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            fresh = agent
                .login(Pw::Changed)
                .await
                .map_err(|e| relabel(e, "logging in with the new password"))?;
        }
        let back = agent.call(&ep, &mut fresh, Pw::Changed).await;
        match back {
            Ok(ex) if ex.status < 400 => {
                return match agent.login(Pw::Original).await {
                    Ok(_) => Ok(Restored::ChangedBack),
                    Err(Fail::Step(r)) => Err(restore_fail(format!(
                        "the password was changed back ({}), but the original one does not log in ({r})",
                        ex.status
                    ))),
                    Err(e) => Err(e),
                };
            }
            Ok(ex) => last = format!("changing the password back answered {}", ex.status),
            Err(Fail::Step(r)) => last = r,
            Err(e) => return Err(e),
        }
    }
    Err(restore_fail(last))
}
