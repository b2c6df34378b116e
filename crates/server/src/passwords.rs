//! Every password check of the server — login (`POST /v1/login` and whatever
//! else calls [`crate::routes::session::password_login`]), the password grant,
//! step-up and password change — goes through [`check_password`]:
//!
//! 1. the throttle ([`sessionguard_core::engine::PasswordAttempt`]) counts the
//!    attempt against its account and client (or known device), or refuses it
//!    with 429 `too_many_attempts` and `Retry-After` before any work;
//! 2. the password work joins the bounded hash queue
//!    ([`AppState::with_hasher`]): a full queue answers 503 `server_busy`, and
//!    the attempt is given back;
//! 3. the outcome settles the attempt: the right password clears the count and
//!    makes the device known for the account ([`DEVICE_COOKIE`]); a wrong one
//!    stays counted and is audited, coalesced.
//!
//! The device cookie holds a [`DeviceSecret`]: a browser that signed in to an
//! account keeps it, and its later checks for that account count apart from
//! everyone else's, so no one can lock a user out of their usual browser by
//! failing on purpose (`docs/SECURITY.md`).

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};
use sessionguard_core::engine::PasswordAttempt;
use sessionguard_core::{Clock, DeviceSecret, PasswordHasher, SessionId, Store, UserId};
use sessionguard_http::cookie;

use crate::error::ApiError;
use crate::state::AppState;

/// The device cookie's name. `__Host-`: `Secure`, `Path=/`, no `Domain`.
pub const DEVICE_COOKIE: &str = "__Host-sg_device";

/// Who checks a password, for the throttle and the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Checker<'a> {
    /// The account named (the username as typed, or the signed-in user's).
    pub account: &'a str,
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The device secret of the request's device cookie, if any.
    pub device: Option<&'a DeviceSecret>,
    /// The account's user, if it exists (for the audit log).
    pub user: Option<&'a UserId>,
    /// The session of a step-up or password change (for the audit log).
    pub session: Option<SessionId>,
    /// Whether the answer can carry the device cookie (a browser login): the
    /// device is then remembered for the account and its secret returned.
    pub remember: bool,
}

/// A password check that passed: the job's result, and the device secret to
/// set as the device cookie (with [`Checker::remember`]).
#[derive(Debug)]
pub struct Passed<T> {
    /// What the job returned.
    pub value: T,
    /// The device secret for [`device_cookie`], if the device is to be kept.
    pub device: Option<DeviceSecret>,
}

/// Checks a password through the throttle and the bounded hash queue. `job`
/// runs on a hashing worker and returns `Some` when the password is right (it
/// may then do more password work, such as hashing a new password); `None` is
/// a wrong password, answered 401 `invalid_credentials` like an unknown user.
pub async fn check_password<S, C, T, F>(
    state: &AppState<S, C>,
    who: Checker<'_>,
    job: F,
) -> Result<Passed<T>, ApiError>
where
    S: Store,
    C: Clock,
    T: Send + 'static,
    F: FnOnce(&PasswordHasher) -> Option<T> + Send + 'static,
{
    let engine = state.engine();
    let attempt = PasswordAttempt {
        account: who.account,
        client: who.client,
        device: who.device,
    };
    let check = engine
        .begin_password_check(attempt)
        .await
        .map_err(|e| match e {
            sessionguard_core::Error::Throttled { retry_at } => {
                ApiError::throttled(retry_at, engine.clock().now())
            }
            other => other.into(),
        })?;
    let outcome = match state.with_hasher(job).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // The password was never compared: not a failure of the client's.
            if let Err(release) = engine.password_unchecked(check).await {
                crate::error::log_background("password throttle", &release);
            }
            return Err(e);
        }
    };
    match outcome {
        Some(value) => {
            let device = engine.password_verified(check, who.remember).await?;
            Ok(Passed { value, device })
        }
        None => {
            engine
                .password_failed(check, who.user, who.session.as_ref())
                .await;
            Err(ApiError::InvalidCredentials)
        }
    }
}

/// The device secret of the request's device cookie, if there is one and it is
/// well-formed (anything else is ignored: the client is then not a known
/// device).
pub fn device_of(headers: &HeaderMap) -> Option<DeviceSecret> {
    let value = cookie::find_named(headers, DEVICE_COOKIE)?.ok()?;
    DeviceSecret::parse(value)
}

/// The `Set-Cookie` value keeping `device` for `max_age`: `HttpOnly`,
/// `SameSite=Strict` (it is only ever needed by a same-origin login), and a
/// `Max-Age`, unlike the session cookie: it outlives sessions on purpose.
pub fn device_cookie(device: &DeviceSecret, max_age: std::time::Duration) -> HeaderValue {
    let value = format!(
        "{DEVICE_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        device.reveal().as_str(),
        max_age.as_secs()
    );
    // `sgd_` and base64url: always a valid header value.
    HeaderValue::try_from(value).expect("a device cookie is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    #[test]
    fn the_device_cookie_is_read_back_and_anything_else_is_ignored() {
        let d = DeviceSecret::generate();
        let set = device_cookie(&d, std::time::Duration::from_secs(60));
        let set = set.to_str().unwrap();
        assert!(set.starts_with("__Host-sg_device=sgd_"), "{set}");
        assert!(set.contains("; Secure; HttpOnly; SameSite=Strict; Max-Age=60"));
        let sent = set.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::try_from(format!("a=b; {sent}; c=d")).unwrap(),
        );
        assert_eq!(device_of(&headers), Some(d));
        for bad in ["__Host-sg_device=sgs_nope", "sg_device=x", ""] {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(bad).unwrap());
            assert_eq!(device_of(&headers), None, "{bad}");
        }
    }
}
