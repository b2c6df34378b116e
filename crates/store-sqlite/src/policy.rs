//! Writes of session policies: token rotation, user access (profile and roles),
//! and the audit log. Same pattern as every write: decide from the index under the
//! writer lock, commit, then apply to the index.
//!
//! The audit log is the one thing not mirrored in memory: it only grows, and is
//! read rarely (by administrators and by users looking at their own history), so
//! it is read from the file.

use std::net::IpAddr;

use rusqlite::types::Value;
use rusqlite::{Row, params, params_from_iter};
use sessionguard_core::token::VerifierHash;
use sessionguard_core::{
    AuditEvent, ClientInfo, EventKind, EventQuery, ProfileName, Reason, SessionId, StoreError,
    StoreResult, Timestamp, TokenRotation, UserAccess, UserEpoch, UserId,
};

use crate::{Inner, write_tx};

impl Inner {
    pub(crate) fn rotate_session_token(
        &self,
        id: SessionId,
        expected: VerifierHash,
        rotation: TokenRotation,
    ) -> StoreResult<bool> {
        let mut conn = self.writer();
        // The compare of the compare-and-set: exact under the writer lock.
        if !self.index.can_rotate(&id, expected) {
            return Ok(false);
        }
        let privileges = crate::epoch_sql(rotation.privileges)?;
        let last_seen_at = self
            .index
            .load_session(&id)
            .map_or(rotation.issued_at, |(s, _)| {
                s.last_seen_at.max(rotation.issued_at)
            });
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "UPDATE sessions SET verifier_hash = ?2, token_issued_at = ?3,
                     prev_verifier_hash = ?4, prev_valid_until = ?5, prev_reason = ?6,
                     elevated_until = ?7, profile = ?8, idle_deadline = ?9,
                     absolute_deadline = ?10, last_seen_at = ?11, csrf_basis = ?12,
                     privileges = ?13
                 WHERE id = ?1",
            )?
            .execute(params![
                id.as_bytes(),
                rotation.verifier_hash.as_bytes(),
                rotation.issued_at.as_millis(),
                rotation.previous.verifier_hash.as_bytes(),
                rotation.previous.valid_until.as_millis(),
                rotation.previous.reason.tag(),
                rotation.elevated_until.map(Timestamp::as_millis),
                rotation.profile.as_ref().map(ProfileName::as_str),
                rotation.idle_deadline.as_millis(),
                rotation.absolute_deadline.as_millis(),
                last_seen_at.as_millis(),
                rotation.csrf_basis.as_bytes(),
                privileges,
            ])?;
            Ok(())
        })?;
        let rotated = self.index.rotate_session_token(&id, expected, rotation);
        debug_assert!(rotated, "checked under the writer lock");
        // A buffered touch from before the rotation must not overwrite the
        // deadlines it set (a stricter profile may have shortened them).
        self.touches().sessions.remove(&id);
        Ok(true)
    }

    pub(crate) fn set_user_access(
        &self,
        user: UserId,
        access: UserAccess,
    ) -> StoreResult<UserEpoch> {
        let mut conn = self.writer();
        let roles = encode_roles(&access.roles);
        // Exact under the writer lock.
        let privileges = crate::epoch_sql(self.index.user_epoch(&user).privileges + 1)?;
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "INSERT INTO users (id, epoch, privileges, profile, roles)
                 VALUES (?1, 0, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET privileges = excluded.privileges,
                     profile = excluded.profile, roles = excluded.roles",
            )?
            .execute(params![
                user.as_str(),
                privileges,
                access.profile.as_ref().map(ProfileName::as_str),
                roles,
            ])?;
            Ok(())
        })?;
        Ok(self.index.set_user_access(&user, access))
    }

    pub(crate) fn append_event(&self, e: &AuditEvent) -> StoreResult<u64> {
        let mut conn = self.writer();
        let mut id = 0;
        write_tx(&mut conn, |tx| {
            tx.prepare_cached(
                "INSERT INTO events (at, kind, user_id, session_id, user_agent, ip, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                e.at.as_millis(),
                e.kind.tag(),
                e.user.as_ref().map(UserId::as_str),
                e.session.map(|s| *s.as_bytes()),
                e.client.user_agent(),
                e.client.ip().map(|ip| ip.to_string()),
                e.reason.map(Reason::tag),
            ])?;
            id = tx.last_insert_rowid();
            Ok(())
        })?;
        u64::try_from(id).map_err(|_| StoreError::Corrupt(format!("events.id {id} is negative")))
    }

    pub(crate) fn list_events(&self, q: &EventQuery) -> StoreResult<Vec<AuditEvent>> {
        let conn = self.writer();
        let mut sql = String::from(
            "SELECT id, at, kind, user_id, session_id, user_agent, ip, reason FROM events WHERE 1",
        );
        let mut args: Vec<Value> = Vec::new();
        if let Some(u) = &q.user {
            sql.push_str(" AND user_id = ?");
            args.push(Value::Text(u.as_str().to_owned()));
        }
        if let Some(since) = q.since {
            sql.push_str(" AND at >= ?");
            args.push(Value::Integer(since.as_millis()));
        }
        if let Some(c) = q.cursor {
            sql.push_str(if q.newest_first {
                " AND id < ?"
            } else {
                " AND id > ?"
            });
            args.push(Value::Integer(i64::try_from(c).unwrap_or(i64::MAX)));
        }
        sql.push_str(if q.newest_first {
            " ORDER BY id DESC LIMIT ?"
        } else {
            " ORDER BY id ASC LIMIT ?"
        });
        args.push(Value::Integer(
            i64::try_from(q.page_size()).unwrap_or(i64::MAX),
        ));
        let mut stmt = conn.prepare_cached(&sql).map_err(StoreError::backend)?;
        let mut rows = stmt
            .query(params_from_iter(args))
            .map_err(StoreError::backend)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(StoreError::backend)? {
            out.push(decode_event(row)?);
        }
        Ok(out)
    }

    pub(crate) fn purge_events(&self, cutoff: Timestamp) -> StoreResult<u64> {
        let mut conn = self.writer();
        let mut n = 0;
        write_tx(&mut conn, |tx| {
            n = tx
                .prepare_cached("DELETE FROM events WHERE at < ?1")?
                .execute([cutoff.as_millis()])?;
            Ok(())
        })?;
        Ok(n as u64)
    }
}

/// Roles as stored: one line each (a role never holds a line break).
pub(crate) fn encode_roles(roles: &[String]) -> Option<String> {
    (!roles.is_empty()).then(|| roles.join("\n"))
}

/// Roles read back.
pub(crate) fn decode_roles(s: Option<&str>) -> Vec<String> {
    s.map(|s| s.split('\n').map(str::to_owned).collect())
        .unwrap_or_default()
}

fn decode_event(row: &Row<'_>) -> StoreResult<AuditEvent> {
    let corrupt = |col: &str, what: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!("events.{col}: {what}"))
    };
    let get_err = |e: rusqlite::Error| StoreError::Corrupt(format!("events: {e}"));
    let id: i64 = row.get(0).map_err(get_err)?;
    let kind: u8 = row.get(2).map_err(get_err)?;
    let user: Option<String> = row.get(3).map_err(get_err)?;
    let session: Option<[u8; 16]> = row.get(4).map_err(get_err)?;
    let ua: Option<String> = row.get(5).map_err(get_err)?;
    let ip: Option<String> = row.get(6).map_err(get_err)?;
    let reason: Option<u8> = row.get(7).map_err(get_err)?;
    Ok(AuditEvent {
        id: u64::try_from(id).map_err(|e| corrupt("id", &e))?,
        at: Timestamp::from_millis(row.get(1).map_err(get_err)?),
        kind: EventKind::from_tag(kind).ok_or_else(|| corrupt("kind", &kind))?,
        user: user
            .map(|u| UserId::new(&u))
            .transpose()
            .map_err(|e| corrupt("user_id", &e))?,
        session: session.map(SessionId::from_bytes),
        client: ClientInfo::new(
            ua.as_deref(),
            ip.map(|s| s.parse::<IpAddr>())
                .transpose()
                .map_err(|e| corrupt("ip", &e))?,
        ),
        reason: reason
            .map(|r| Reason::from_tag(r).ok_or_else(|| corrupt("reason", &r)))
            .transpose()?,
    })
}
