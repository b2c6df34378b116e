//! The HTTP handlers, by audience, and the response bodies they share.

pub mod admin;
pub mod api_tokens;
pub mod events;
pub mod forward;
pub mod health;
pub mod oauth;
pub mod session;

use std::fmt;

use serde::{Serialize, Serializer};
use sessionguard_core::{ProfileName, SessionId, SessionRecord, Timestamp, UserId, ValidSession};

/// A session's public information: never its token. Values are written straight
/// into the JSON (ids and times through `Display`), without intermediate strings:
/// this is the body of every validation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    #[serde(serialize_with = "display")]
    #[schema(value_type = String)]
    user_id: UserId,
    #[serde(serialize_with = "display")]
    #[schema(value_type = String)]
    session_id: SessionId,
    #[serde(serialize_with = "display")]
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[serde(serialize_with = "display")]
    #[schema(value_type = String, format = DateTime)]
    last_seen_at: Timestamp,
    #[serde(serialize_with = "display")]
    #[schema(value_type = String, format = DateTime)]
    idle_expires_at: Timestamp,
    #[serde(serialize_with = "display")]
    #[schema(value_type = String, format = DateTime)]
    absolute_expires_at: Timestamp,
    /// Until when the session counts as recently authenticated (step-up).
    #[serde(serialize_with = "display")]
    #[schema(value_type = String, format = DateTime)]
    step_up_expires_at: Timestamp,
    /// The profile whose rules the session follows; absent for the default one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "display_some"
    )]
    #[schema(value_type = Option<String>)]
    profile: Option<ProfileName>,
    csrf_token: String,
}

/// Serialises a value as the JSON string of its `Display`.
fn display<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// [`display`] for an optional value that is skipped when absent.
fn display_some<T: fmt::Display, S: Serializer>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

impl From<&ValidSession> for SessionView {
    fn from(s: &ValidSession) -> Self {
        SessionView {
            user_id: s.user_id().clone(),
            session_id: s.id(),
            created_at: s.created_at(),
            last_seen_at: s.last_seen_at(),
            idle_expires_at: s.idle_deadline(),
            absolute_expires_at: s.absolute_deadline(),
            step_up_expires_at: s.step_up_until(),
            profile: s.profile().cloned(),
            csrf_token: s.csrf_token(),
        }
    }
}

/// One entry of a list of sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionItem {
    id: String,
    created_at: String,
    last_seen_at: String,
    idle_expires_at: String,
    absolute_expires_at: String,
    user_agent: Option<String>,
    ip: Option<String>,
    /// Whether this is the session making the request (absent in admin listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<bool>,
}

impl SessionItem {
    /// The entry for `r`; `current` names the caller's session, if any.
    pub fn new(r: &SessionRecord, current: Option<&SessionId>) -> Self {
        let s = &r.state;
        SessionItem {
            id: s.id.to_string(),
            created_at: s.created_at.to_rfc3339(),
            last_seen_at: s.last_seen_at.to_rfc3339(),
            idle_expires_at: s.idle_deadline.to_rfc3339(),
            absolute_expires_at: s.absolute_deadline.to_rfc3339(),
            user_agent: r.client.user_agent().map(str::to_owned),
            ip: r.client.ip().map(|ip| ip.to_string()),
            current: current.map(|c| *c == s.id),
        }
    }
}

/// `{"sessions": [...]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionItem>,
}

impl SessionList {
    /// The list for `records`, marking `current` if given.
    pub fn new(records: &[SessionRecord], current: Option<&SessionId>) -> Self {
        SessionList {
            sessions: records
                .iter()
                .map(|r| SessionItem::new(r, current))
                .collect(),
        }
    }
}
