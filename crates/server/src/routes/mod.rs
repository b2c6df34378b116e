//! The HTTP handlers, by audience, and the response bodies they share.

pub mod admin;
pub mod api_tokens;
pub mod events;
pub mod health;
pub mod oauth;
pub mod session;

use serde::Serialize;
use sessionguard_core::{SessionId, SessionRecord, ValidSession};

/// A session's public information: never its token.
#[derive(Debug, Serialize)]
pub struct SessionView {
    user_id: String,
    session_id: String,
    created_at: String,
    last_seen_at: String,
    idle_expires_at: String,
    absolute_expires_at: String,
    /// Until when the session counts as recently authenticated (step-up).
    step_up_expires_at: String,
    /// The profile whose rules the session follows; absent for the default one.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    csrf_token: String,
}

impl From<&ValidSession> for SessionView {
    fn from(s: &ValidSession) -> Self {
        SessionView {
            user_id: s.user_id().to_string(),
            session_id: s.id().to_string(),
            created_at: s.created_at().to_rfc3339(),
            last_seen_at: s.last_seen_at().to_rfc3339(),
            idle_expires_at: s.idle_deadline().to_rfc3339(),
            absolute_expires_at: s.absolute_deadline().to_rfc3339(),
            step_up_expires_at: s.step_up_until().to_rfc3339(),
            profile: s.profile().map(ToString::to_string),
            csrf_token: s.csrf_token(),
        }
    }
}

/// One entry of a list of sessions.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
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
