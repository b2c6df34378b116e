//! The audit log over HTTP: every event for administrators, and each user's own
//! security history ("new sign-in from …", "signed out by a password change").

use std::borrow::Cow;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sessionguard_core::{AuditEvent, Clock, EventKind, EventQuery, Store, Timestamp, UserId};

use crate::error::ApiError;
use crate::extract::{Admin, LiveSession, QueryParams};
use crate::state::AppState;

/// The default page size.
const DEFAULT_LIMIT: usize = 100;

/// The page size of a user's own history.
pub(crate) const OWN_LIMIT: usize = 50;

/// One event as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    id: u64,
    at: String,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    user_agent: Option<String>,
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// A sentence for people.
    description: String,
}

impl From<&AuditEvent> for EventView {
    fn from(e: &AuditEvent) -> Self {
        EventView {
            id: e.id,
            at: e.at.to_rfc3339(),
            event: e.kind.code(),
            user_id: e.user.as_ref().map(ToString::to_string),
            session_id: e.session.map(|s| s.to_string()),
            user_agent: e.client.user_agent().map(str::to_owned),
            ip: e.client.ip().map(|ip| ip.to_string()),
            reason: e.reason.map(|r| r.code()),
            description: describe(e, |ua| ua.into()),
        }
    }
}

/// What happened, in a sentence safe to show to the user it concerns; `device`
/// says how to name the client's user agent (as it is in the API, as a browser
/// and OS on the account page).
pub(crate) fn describe(e: &AuditEvent, device: impl Fn(&str) -> Cow<'_, str>) -> String {
    let from = match (e.client.user_agent().map(device), e.client.ip()) {
        (Some(ua), Some(ip)) => format!(" from {ua} ({ip})"),
        (Some(ua), None) => format!(" from {ua}"),
        (None, Some(ip)) => format!(" from {ip}"),
        (None, None) => String::new(),
    };
    let why = e
        .reason
        .map(|r| format!(" {}", r.describe()))
        .unwrap_or_default();
    match e.kind {
        EventKind::LoginSucceeded => format!("New sign-in{from}."),
        EventKind::LoginFailed => format!("Failed sign-in attempt{from}."),
        EventKind::LoginRefused => {
            format!("Sign-in{from} refused: too many active sessions.")
        }
        EventKind::Refreshed => format!("Access renewed{from}."),
        EventKind::TokenRenewed => format!("Session token renewed{from}."),
        EventKind::TokenRotated => {
            format!("Session token replaced after a privilege change{from}.")
        }
        EventKind::Elevated => format!("Password confirmed for a sensitive action{from}."),
        EventKind::StepUpRequired => {
            format!("A sensitive action{from} asked for the password again.")
        }
        EventKind::LoggedOut => format!("Signed out{from}."),
        EventKind::SessionRevoked => format!("A session was ended{from}.{why}"),
        EventKind::UserSessionsRevoked => format!("All sessions were ended{from}.{why}"),
        EventKind::Displaced => {
            format!("A session was signed out by a newer sign-in{from}.")
        }
        EventKind::RefreshReuseDetected => {
            format!("A session was ended because an old refresh token was used again{from}.")
        }
        EventKind::PasswordChanged => format!("Password changed{from}."),
        EventKind::ApiTokenCreated => format!("API token created{from}."),
        EventKind::ApiTokenRevoked => format!("API token revoked{from}.{why}"),
        EventKind::UserUpdated => "Account profile or roles changed by an administrator.".into(),
        EventKind::LoginThrottled => {
            format!("Repeated wrong passwords{from}: further attempts from there must wait.")
        }
        _ => format!("{}{from}.", e.kind.code()),
    }
}

/// A page of events and the cursor of the next one (absent on the last page).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    events: Vec<EventView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

impl EventPage {
    fn new(events: &[AuditEvent], limit: usize) -> Self {
        let next_cursor = (events.len() == limit)
            .then(|| events.last().map(|e| e.id.to_string()))
            .flatten();
        EventPage {
            events: events.iter().map(EventView::from).collect(),
            next_cursor,
        }
    }
}

/// `?user_id=&since=&cursor=&limit=` of the admin listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminEventsQuery {
    user_id: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/admin/events`: the audit log, oldest first, paged. Filters:
/// `user_id`, `since` (RFC 3339); `cursor` is the previous page's `next_cursor`;
/// `limit` is 1 to 1000 (default 100).
pub async fn admin_list<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    _: Admin,
    QueryParams(q): QueryParams<AdminEventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let user = q
        .user_id
        .as_deref()
        .map(UserId::new)
        .transpose()
        .map_err(|_| ApiError::InvalidUserId)?;
    let since = q
        .since
        .as_deref()
        .map(parse_time)
        .transpose()
        .map_err(|()| ApiError::InvalidQuery("since"))?;
    let limit = parse_number(q.limit.as_deref(), DEFAULT_LIMIT, "limit")?;
    if !(1..=EventQuery::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery("limit"));
    }
    let cursor = parse_cursor(q.cursor.as_deref())?;
    let events = state
        .engine()
        .events(&EventQuery {
            user,
            since,
            cursor,
            newest_first: false,
            limit,
        })
        .await?;
    Ok(Json(EventPage::new(&events, limit)))
}

/// `?cursor=` of a user's own history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnEventsQuery {
    cursor: Option<String>,
}

/// `GET /v1/events`: the caller's own recent security events, newest first (50 a
/// page; `cursor` is the previous page's `next_cursor`). Routine events (access
/// renewals) are left out.
pub async fn own_list<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    auth: LiveSession,
    QueryParams(q): QueryParams<OwnEventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let cursor = parse_cursor(q.cursor.as_deref())?;
    let shown = own_events(&state, auth.session.user_id(), cursor).await?;
    Ok(Json(EventPage::new(&shown, OWN_LIMIT)))
}

/// A page of `user`'s own security history, newest first, after `cursor`: the
/// events [`EventKind::shown_to_user`], at most [`OWN_LIMIT`]. Shared by
/// `GET /v1/events` and the account page.
pub(crate) async fn own_events<S: Store, C: Clock>(
    state: &AppState<S, C>,
    user: &UserId,
    mut cursor: Option<u64>,
) -> Result<Vec<AuditEvent>, ApiError> {
    // Filled up to a page with shown events, reading past the routine ones.
    let mut shown = Vec::with_capacity(OWN_LIMIT);
    loop {
        let batch = state
            .engine()
            .events(&EventQuery {
                user: Some(user.clone()),
                since: None,
                cursor,
                newest_first: true,
                limit: OWN_LIMIT,
            })
            .await?;
        let exhausted = batch.len() < OWN_LIMIT;
        cursor = batch.last().map(|e| e.id);
        shown.extend(batch.into_iter().filter(|e| e.kind.shown_to_user()));
        if exhausted || shown.len() >= OWN_LIMIT {
            break;
        }
    }
    shown.truncate(OWN_LIMIT);
    Ok(shown)
}

/// A page cursor: the `next_cursor` of the previous page.
fn parse_cursor(s: Option<&str>) -> Result<Option<u64>, ApiError> {
    s.map(|c| {
        c.parse::<u64>()
            .map_err(|_| ApiError::InvalidQuery("cursor"))
    })
    .transpose()
}

fn parse_time(s: &str) -> Result<Timestamp, ()> {
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| ())?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ())?
        .as_millis();
    Ok(Timestamp::from_millis(i64::try_from(ms).map_err(|_| ())?))
}

fn parse_number(s: Option<&str>, default: usize, name: &'static str) -> Result<usize, ApiError> {
    s.map_or(Ok(default), |s| {
        s.parse().map_err(|_| ApiError::InvalidQuery(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_only() {
        assert_eq!(
            parse_time("2026-01-02T03:04:05Z"),
            Ok(Timestamp::from_millis(1_767_323_045_000))
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
    }
}
