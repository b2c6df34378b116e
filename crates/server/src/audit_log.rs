//! The audit log's optional mirror: each stored event, as one JSON object per
//! line, on standard output or appended to a file (for a log shipper).
//!
//! ```json
//! {"id":7,"at":"2026-11-28T19:20:00.000Z","event":"logged_out","user_id":"u_…","session_id":"…","user_agent":"Mozilla/5.0 …","ip":"192.0.2.7","reason":"logged_out"}
//! ```
//!
//! Lines hold public ids, reason codes and client metadata, never a token or a
//! password. A line that cannot be written is reported in the server log; the
//! event itself is already stored.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use sessionguard_core::{AuditEvent, AuditMirror};

use crate::config::AuditMirror as MirrorTarget;

/// One event as a JSON line.
#[derive(Serialize)]
struct Line<'a> {
    id: u64,
    at: String,
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// `e` as one line of JSON, with its newline.
pub fn json_line(e: &AuditEvent) -> Vec<u8> {
    let line = Line {
        id: e.id,
        at: e.at.to_rfc3339(),
        event: e.kind.code(),
        user_id: e.user.as_ref().map(|u| u.as_str()),
        session_id: e.session.map(|s| s.to_string()),
        user_agent: e.client.user_agent(),
        ip: e.client.ip().map(|ip| ip.to_string()),
        reason: e.reason.map(|r| r.code()),
    };
    let mut out = serde_json::to_vec(&line).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The mirror for `target`, or `None` when it is off. A file is opened (created
/// with mode 0600) now, so a bad path stops the server at start.
pub fn open_mirror(target: &MirrorTarget) -> io::Result<Option<AuditMirror>> {
    match target {
        MirrorTarget::Off => Ok(None),
        MirrorTarget::Stdout => Ok(Some(Arc::new(|e: &AuditEvent| {
            let mut out = io::stdout().lock();
            if let Err(err) = out.write_all(&json_line(e)).and_then(|()| out.flush()) {
                tracing::error!(error = %err, "could not mirror an audit event to stdout");
            }
        }))),
        MirrorTarget::File(path) => {
            let file = Mutex::new(open_append(path)?);
            Ok(Some(Arc::new(move |e: &AuditEvent| {
                let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(err) = f.write_all(&json_line(e)) {
                    tracing::error!(error = %err, "could not mirror an audit event to its file");
                }
            })))
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionguard_core::{ClientInfo, EventKind, Reason, Timestamp, TokenId, UserId};

    #[test]
    fn a_line_is_one_json_object() {
        let e = AuditEvent {
            id: 7,
            at: Timestamp::from_millis(0),
            kind: EventKind::LoggedOut,
            user: Some(UserId::new("alice").unwrap()),
            session: Some(TokenId::random()),
            client: ClientInfo::new(Some("agent\nwith newline"), None),
            reason: Some(Reason::LoggedOut),
        };
        let line = json_line(&e);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["event"], "logged_out");
        assert_eq!(v["reason"], "logged_out");
        assert_eq!(v["user_id"], "alice");
        assert!(v.get("ip").is_none());
    }

    #[test]
    fn a_file_mirror_appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mirror = open_mirror(&MirrorTarget::File(path.clone()))
            .unwrap()
            .unwrap();
        let e = AuditEvent {
            id: 1,
            at: Timestamp::from_millis(0),
            kind: EventKind::LoginSucceeded,
            user: None,
            session: None,
            client: ClientInfo::default(),
            reason: None,
        };
        mirror(&e);
        mirror(&AuditEvent { id: 2, ..e });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.starts_with("{\"id\":")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(open_mirror(&MirrorTarget::File(dir.path().join("missing/dir/x"))).is_err());
    }
}
