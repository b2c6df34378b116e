//! `GET /login` and `POST /login`: the sign-in form, and why the browser was
//! signed out, in words.

use std::fmt;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sessionguard_core::{ClientInfo, Clock, Reason, Rejection, Store};
use sessionguard_http::cookie;

use crate::csrf;
use crate::error::ApiError;
use crate::extract::{Client, Credential, form_bytes, parse_form};
use crate::routes::session::{password_login, with_login_cookies};
use crate::state::AppState;

use super::auth::PageError;
use super::{device, html};

/// Where a successful sign-in goes when no `return_to` is given.
const DEFAULT_RETURN: &str = "/account";

/// The longest `return_to` kept, in bytes.
const MAX_RETURN_TO: usize = 2048;

/// The sentence shown after a failed sign-in, the same for unknown users.
const WRONG_CREDENTIALS: &str = "Wrong username or password";

/// `return_to` as a path on this origin, or `None` when it could lead elsewhere.
///
/// Accepted: an absolute path (`/app?x=1`) of visible ASCII, without
/// backslashes, not starting with `//` (a browser reads that as another host);
/// or an absolute URL of `public_origin` itself, reduced to its path. Anything
/// else — other origins, schemes, relative paths, control characters — is
/// refused, so a sign-in is never an open redirect.
///
/// ```
/// use sessionguard_server::pages::same_origin_path;
///
/// let origin = "https://sg.example";
/// assert_eq!(same_origin_path("/app?tab=2", origin).as_deref(), Some("/app?tab=2"));
/// assert_eq!(same_origin_path("https://sg.example/app", origin).as_deref(), Some("/app"));
/// assert_eq!(same_origin_path("//evil.example/", origin), None);
/// assert_eq!(same_origin_path("https://evil.example/", origin), None);
/// ```
pub fn same_origin_path(raw: &str, public_origin: &str) -> Option<String> {
    let path = match raw.get(..public_origin.len()) {
        Some(head) if head.eq_ignore_ascii_case(public_origin) => {
            match &raw[public_origin.len()..] {
                "" => "/",
                rest => rest,
            }
        }
        _ => raw,
    };
    let safe = path.len() <= MAX_RETURN_TO
        && path.starts_with('/')
        && !path.starts_with("//")
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    safe.then(|| path.to_owned())
}

/// Why a browser's session ended, in one sentence for its user.
pub(super) fn signed_out_sentence(reason: Reason) -> Option<&'static str> {
    Some(match reason {
        Reason::LoggedOut => "You signed out.",
        Reason::PasswordChanged => "You were signed out because your password was changed.",
        Reason::SignedOutEverywhere => {
            "You were signed out because you signed out of all your other sessions."
        }
        Reason::RevokedByUser => {
            "You were signed out because this session was ended from your account page."
        }
        Reason::RevokedByAdmin => {
            "You were signed out because an administrator ended your session."
        }
        Reason::Displaced => "You were signed out because you signed in on another device.",
        Reason::RefreshReuseDetected => {
            "You were signed out because an old sign-in token was used again, which can mean \
             it was stolen."
        }
        Reason::PrivilegeChanged => "You were signed out because your account's access changed.",
        Reason::Superseded => "You were signed out because you signed in again.",
        Reason::IdleTimeout => "You were signed out because you were inactive for too long.",
        Reason::AbsoluteTimeout => {
            "You were signed out because your session reached its maximum length."
        }
        Reason::Renewed => "You were signed out because your session was renewed elsewhere.",
        Reason::InvalidToken => "Your session is no longer valid. Please sign in again.",
        _ => return None,
    })
}

/// Why the browser was signed out, as the page shows it.
#[derive(Debug)]
struct SignedOut {
    sentence: &'static str,
    /// For `displaced`: the device and address of the sign-in that displaced it.
    from: Option<String>,
}

impl SignedOut {
    fn new(rejection: &Rejection) -> Option<Self> {
        Some(SignedOut {
            sentence: signed_out_sentence(rejection.reason)?,
            from: rejection.displaced_by.as_deref().map(describe_client),
        })
    }
}

fn describe_client(c: &ClientInfo) -> String {
    let device = device::name(c.user_agent());
    match c.ip() {
        Some(ip) => format!("{device} ({ip})"),
        None => device.into_owned(),
    }
}

/// The sign-in page.
#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    return_to: Option<&'a str>,
    signed_out: Option<SignedOut>,
    signed_in: bool,
    error: Option<&'static str>,
    username: &'a str,
}

/// `?return_to=&reason=` of the sign-in page.
#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
    reason: Option<String>,
}

/// `GET /login`: the form. A browser whose session cookie is dead is told why
/// (and the dead cookie is cleared); else a known `?reason=` code is shown. A
/// live session is only looked at (not activity), and then no reason is shown,
/// since none applies.
pub(super) async fn show<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // A query that does not parse is ignored: this page shows nothing from it.
    let query: LoginQuery =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let return_to = query
        .return_to
        .as_deref()
        .and_then(|r| same_origin_path(r, state.public_origin()));
    let mut signed_in = false;
    let mut from_cookie = None;
    let mut clear_cookie = false;
    match Credential::from_cookie(&headers) {
        Ok(None) => {}
        Ok(Some(credential)) => match state.engine().status(credential.token()).await {
            Ok(_) => signed_in = true,
            Err(sessionguard_core::Error::Rejected(r)) => {
                from_cookie = SignedOut::new(&r);
                clear_cookie = true;
            }
            // The store cannot say now; the form works all the same.
            Err(e) => ApiError::from(e).log(),
        },
        Err(_) => {
            from_cookie = SignedOut::new(&Rejection::INVALID);
            clear_cookie = true;
        }
    }
    let from_query = || {
        let reason = Reason::from_code(query.reason.as_deref()?)?;
        Some(SignedOut {
            sentence: signed_out_sentence(reason)?,
            from: None,
        })
    };
    let signed_out = if signed_in {
        None
    } else {
        from_cookie.or_else(from_query)
    };
    let page = LoginPage {
        return_to: return_to.as_deref(),
        signed_out,
        signed_in,
        error: None,
        username: "",
    };
    let mut res = html(StatusCode::OK, &page);
    if clear_cookie {
        res.headers_mut()
            .append(header::SET_COOKIE, cookie::clear_cookie());
    }
    res
}

/// The sign-in form's fields.
#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    return_to: Option<String>,
}

impl fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("return_to", &self.return_to)
            .finish()
    }
}

/// `POST /login`: the origin rule, then the login path of `POST /v1/login`
/// (which also revokes a session token the browser presents). Success: `303` to
/// the form's `return_to` when it is a path on this origin, else `/account`,
/// with the new session cookie. A wrong password or an unknown user: the form
/// again, status 401, with [`WRONG_CREDENTIALS`].
pub(super) async fn submit<S: Store, C: Clock>(
    State(state): State<AppState<S, C>>,
    Client(client): Client,
    request: axum::extract::Request,
) -> Result<Response, PageError> {
    let headers = request.headers().clone();
    csrf::check_origin(&headers, state.public_origin())?;
    let bytes = form_bytes(request, &state).await?;
    let form: LoginForm = parse_form(&bytes)?;
    let return_to = form
        .return_to
        .as_deref()
        .and_then(|r| same_origin_path(r, state.public_origin()));
    let username = form.username;
    match password_login(&state, &headers, client, &username, form.password, true).await {
        Ok(login) => {
            let location = return_to.as_deref().unwrap_or(DEFAULT_RETURN);
            let location =
                HeaderValue::try_from(location).unwrap_or(HeaderValue::from_static(DEFAULT_RETURN));
            Ok(with_login_cookies(
                &state,
                StatusCode::SEE_OTHER,
                &login,
                [(header::LOCATION, location)],
            ))
        }
        Err(e) => {
            let Some(error) = sign_in_refusal(&e) else {
                return Err(e.into());
            };
            e.log();
            let page = LoginPage {
                return_to: return_to.as_deref(),
                signed_out: None,
                signed_in: false,
                error: Some(error),
                username: &username,
            };
            Ok(html(e.status(), &page).into_response())
        }
    }
}

/// What the form says when the sign-in was refused for a reason its user can act
/// on; `None` for the others, shown as a refusal page.
fn sign_in_refusal(e: &ApiError) -> Option<&'static str> {
    match e {
        ApiError::InvalidCredentials => Some(WRONG_CREDENTIALS),
        ApiError::SessionLimitReached => Some(
            "Your account already has as many active sessions as it may have. Sign out on \
             another device first.",
        ),
        ApiError::Conflict(_) => Some("Your account changed at this moment. Please try again."),
        e if e.status() == StatusCode::TOO_MANY_REQUESTS => {
            Some("Too many sign-in attempts. Please wait a little and try again.")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "http://127.0.0.1:8080";

    #[test]
    fn paths_on_this_origin_are_kept() {
        for ok in [
            "/",
            "/account",
            "/app/x?y=1&z=%2F%2F#top",
            "/%2F%2Fevil.example",
        ] {
            assert_eq!(same_origin_path(ok, ORIGIN).as_deref(), Some(ok), "{ok}");
        }
        assert_eq!(
            same_origin_path("http://127.0.0.1:8080/app?x=1", ORIGIN).as_deref(),
            Some("/app?x=1")
        );
        assert_eq!(
            same_origin_path("HTTP://127.0.0.1:8080", ORIGIN).as_deref(),
            Some("/")
        );
    }

    #[test]
    fn anything_that_could_leave_the_origin_is_refused() {
        for bad in [
            "",
            "account",
            "//evil.example",
            "//evil.example/account",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "http://127.0.0.1:8080.evil.example/",
            "http://127.0.0.1:80801/",
            "http://127.0.0.1:8080@evil.example/",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/ space",
            "/caf\u{e9}",
            " /account",
        ] {
            assert_eq!(same_origin_path(bad, ORIGIN), None, "{bad:?}");
        }
        assert_eq!(
            same_origin_path(&format!("/{}", "a".repeat(3000)), ORIGIN),
            None
        );
    }

    #[test]
    fn every_reason_has_a_sentence() {
        for r in Reason::ALL {
            let sentence = signed_out_sentence(r).unwrap();
            assert!(sentence.ends_with('.'), "{r}");
        }
        assert_eq!(
            signed_out_sentence(Reason::PasswordChanged),
            Some("You were signed out because your password was changed.")
        );
        assert_eq!(
            signed_out_sentence(Reason::Displaced),
            Some("You were signed out because you signed in on another device.")
        );
    }
}
