//! The web pages through the router (no sockets, no browser), over an
//! in-memory store and a manual clock: the rules each page follows, each with a
//! passing and a failing case. The same pages in a real browser: `browser.rs`.

mod common;

use axum::http::StatusCode;
use common::{ADMIN_TOKEN, Login, ORIGIN, PASSWORD, Req, Resp, TestApp};
use serde_json::json;

const FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SIGN_IN: &str = "/login?return_to=/account";

/// Every `Set-Cookie` of a response.
fn set_cookies(res: &Resp) -> Vec<String> {
    res.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value a response sets for cookie `name` (empty when it clears it).
fn cookie_set(res: &Resp, name: &str) -> Option<String> {
    set_cookies(res).iter().find_map(|c| {
        let rest = c.strip_prefix(name)?.strip_prefix('=')?;
        Some(rest.split(';').next().unwrap_or_default().to_owned())
    })
}

/// A form posted by a same-origin page of the browser holding `token`, with
/// `csrf` in the form's `csrf_token` field when given.
fn form(path: &str, token: &str, csrf: Option<&str>, fields: &[(&str, &str)]) -> Req {
    let mut pairs: Vec<(&str, &str)> = fields.to_vec();
    if let Some(csrf) = csrf {
        pairs.push(("csrf_token", csrf));
    }
    Req::post(path)
        .cookie(token)
        .header("origin", ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .form(&pairs)
}

/// `form` for `login`'s own session and anti-CSRF token.
fn page_form(path: &str, login: &Login, fields: &[(&str, &str)]) -> Req {
    form(path, &login.token, Some(&login.csrf()), fields)
}

/// The sign-in form posted from this origin.
fn sign_in(username: &str, password: &str, return_to: Option<&str>) -> Req {
    let mut pairs = vec![("username", username), ("password", password)];
    if let Some(r) = return_to {
        pairs.push(("return_to", r));
    }
    Req::post("/login").header("origin", ORIGIN).form(&pairs)
}

/// `GET /v1/session/status` for a session token: its JSON, or the refusal's code.
async fn status(app: &TestApp, token: &str) -> Result<serde_json::Value, String> {
    let res = Req::get("/v1/session/status").cookie(token).send(app).await;
    match res.status {
        StatusCode::OK => Ok(res.json()),
        _ => Err(res.json()["code"].as_str().unwrap().to_owned()),
    }
}

#[track_caller]
fn assert_see_other(res: &Resp, location: &str) {
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert_eq!(res.header("location"), Some(location));
}

#[track_caller]
fn assert_html(res: &Resp, status: StatusCode) {
    assert_eq!(res.status, status, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
}

// ------------------------------------------------------------- who may see

#[tokio::test]
async fn the_account_page_sends_a_browser_without_a_live_session_to_sign_in() {
    let app = TestApp::new();
    let alice = app.alice().await;

    let res = Req::get("/account").cookie(&alice.token).send(&app).await;
    assert_html(&res, StatusCode::OK);
    assert!(res.text().contains("<h1>Your account</h1>"));

    assert_see_other(&Req::get("/account").send(&app).await, SIGN_IN);
    let forged = Req::get("/account").cookie("sgs_forged").send(&app).await;
    assert_see_other(&forged, SIGN_IN);
    // Pages are for browsers: a bearer credential is not theirs.
    let bearer = Req::get("/account").bearer(&alice.token).send(&app).await;
    assert_see_other(&bearer, SIGN_IN);
    app.advance(31);
    let idle = Req::get("/account").cookie(&alice.token).send(&app).await;
    assert_see_other(&idle, SIGN_IN);
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_static_files_their_types() {
    let app = TestApp::new();
    let alice = app.alice().await;
    for res in [
        Req::get("/login").send(&app).await,
        Req::get("/account").cookie(&alice.token).send(&app).await,
    ] {
        let csp = res.header("content-security-policy").unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(res.header("referrer-policy"), Some("same-origin"));
        assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(res.header("x-frame-options"), Some("DENY"));
        assert_eq!(res.header("cache-control"), Some("no-store"));
        // No inline script or style to allow.
        let html = res.text();
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "{html}"
        );
    }

    let js = Req::get("/static/idle-warning.js").send(&app).await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.text().contains("/v1/session/status"));
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    let css = Req::get("/static/pages.css").send(&app).await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let icon = Req::get("/favicon.ico").send(&app).await;
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    Req::get("/static/missing.js")
        .send(&app)
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    Req::get("/static/..%2Fmain.rs")
        .send(&app)
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn viewing_a_page_is_activity_and_carries_a_renewed_cookie() {
    let app = TestApp::with_extra("[policy]\nrenewal_interval = \"10m\"\n");
    let alice = app.alice().await;
    let other = app.login("alice", PASSWORD).await;

    app.advance(11);
    let res = Req::get("/account").cookie(&alice.token).send(&app).await;
    assert_html(&res, StatusCode::OK);
    let renewed = cookie_set(&res, "__Host-sg_session").expect("a renewed cookie");
    assert_ne!(renewed, alice.token);

    // 40 minutes from login: the viewed session lives on, the other idled out.
    app.advance(29);
    assert!(status(&app, &renewed).await.is_ok());
    assert_eq!(
        status(&app, &other.token).await.unwrap_err(),
        "idle_timeout"
    );
}

#[tokio::test]
async fn the_account_page_shows_sessions_by_device_tokens_and_recent_events() {
    let app = TestApp::new();
    let alice = app.alice().await;
    Req::post("/v1/login")
        .header("user-agent", FIREFOX)
        .peer("10.0.0.7:5555")
        .json(json!({ "username": "alice", "password": PASSWORD }))
        .send(&app)
        .await;
    let res = Req::post("/v1/api-tokens")
        .browser(&alice)
        .json(json!({ "name": "deploy <script>" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let token = res.json()["token"].as_str().unwrap().to_owned();

    let page = Req::get("/account").cookie(&alice.token).send(&app).await;
    let html = page.text();
    assert!(
        html.contains("Signed in as <strong>alice</strong>"),
        "{html}"
    );
    assert_eq!(html.matches(">This device<").count(), 1);
    assert!(html.contains("Firefox on Windows 10"), "{html}");
    assert!(html.contains("10.0.0.7"), "{html}");
    assert!(html.contains("Sign out all other sessions"), "{html}");
    assert!(html.contains(&format!("name=\"csrf_token\" value=\"{}\"", alice.csrf())));
    // Names are escaped, and a token is never listed.
    assert!(html.contains("deploy &#60;script&#62;"), "{html}");
    assert!(!html.contains(&token));
    assert!(html.contains("New sign-in from Firefox on Windows 10 (10.0.0.7)."));
    assert!(html.contains("API token created"));
}

// ------------------------------------------------------------------ sign in

#[tokio::test]
async fn signing_in_goes_to_a_same_origin_return_to_and_never_elsewhere() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;

    let res = sign_in("alice", PASSWORD, Some("/app/orders?page=2"))
        .send(&app)
        .await;
    assert_see_other(&res, "/app/orders?page=2");
    let token = cookie_set(&res, "__Host-sg_session").unwrap();
    assert!(status(&app, &token).await.is_ok());
    assert!(set_cookies(&res)[0].ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"));

    let absolute = format!("{ORIGIN}/app");
    let res = sign_in("alice", PASSWORD, Some(&absolute)).send(&app).await;
    assert_see_other(&res, "/app");
    for elsewhere in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "https://app.example.evil.example/",
        "javascript:alert(1)",
    ] {
        let res = sign_in("alice", PASSWORD, Some(elsewhere)).send(&app).await;
        assert_see_other(&res, "/account");
    }
    let res = sign_in("alice", PASSWORD, None).send(&app).await;
    assert_see_other(&res, "/account");

    // The form keeps only a safe return_to.
    let page = Req::get("/login?return_to=%2Faccount%23tokens")
        .send(&app)
        .await;
    assert!(
        page.text()
            .contains("name=\"return_to\" value=\"/account#tokens\"")
    );
    let page = Req::get("/login?return_to=https%3A%2F%2Fevil.example%2F")
        .send(&app)
        .await;
    assert!(!page.text().contains("return_to"), "{}", page.text());
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_form_and_401() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let wrong = sign_in("alice", "not the password", None).send(&app).await;
    let unknown = sign_in("mallory", "not the password", None)
        .send(&app)
        .await;
    for res in [&wrong, &unknown] {
        assert_html(res, StatusCode::UNAUTHORIZED);
        assert!(res.text().contains("Wrong username or password"));
        assert!(set_cookies(res).is_empty());
    }
    assert_eq!(
        wrong.text().replace("value=\"alice\"", ""),
        unknown.text().replace("value=\"mallory\"", "")
    );
    // The name typed stays in the form, escaped.
    let res = sign_in("<b>x</b>", "nope", None).send(&app).await;
    assert!(res.text().contains("value=\"&#60;b&#62;x&#60;/b&#62;\""));
}

#[tokio::test]
async fn signing_in_from_another_origin_is_refused() {
    let app = TestApp::new();
    app.create_user("alice", PASSWORD).await;
    let pairs = [("username", "alice"), ("password", PASSWORD)];
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let res = Req::post("/login")
            .header(name, value)
            .form(&pairs)
            .send(&app)
            .await;
        assert_html(&res, StatusCode::FORBIDDEN);
        assert!(res.text().contains("sent from another website"));
        assert!(set_cookies(&res).is_empty());
    }
}

#[tokio::test]
async fn signing_in_ends_the_session_the_browser_presents() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = sign_in("alice", PASSWORD, None)
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert_see_other(&res, "/account");
    assert_eq!(status(&app, &alice.token).await.unwrap_err(), "superseded");
}

#[tokio::test]
async fn the_login_page_says_why_a_dead_cookie_ended_and_clears_it() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let other = app.login("alice", PASSWORD).await;
    let res = Req::post("/v1/password")
        .browser(&other)
        .json(json!({ "current_password": PASSWORD, "new_password": "a new password" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());

    let res = Req::get(SIGN_IN).cookie(&alice.token).send(&app).await;
    assert_html(&res, StatusCode::OK);
    assert!(
        res.text()
            .contains("You were signed out because your password was changed.")
    );
    assert_eq!(cookie_set(&res, "__Host-sg_session").as_deref(), Some(""));

    // A browser with no cookie, and one with a live session, are told nothing.
    let res = Req::get(SIGN_IN).send(&app).await;
    assert!(!res.text().contains("signed out"), "{}", res.text());
    let fresh = app.login("alice", "a new password").await;
    let res = Req::get("/login?reason=idle_timeout")
        .cookie(&fresh.token)
        .send(&app)
        .await;
    assert!(!res.text().contains("signed out"), "{}", res.text());
    assert!(res.text().contains("You are already signed in."));
    assert!(status(&app, &fresh.token).await.is_ok());
}

#[tokio::test]
async fn the_login_page_shows_known_reason_codes_and_echoes_nothing() {
    let app = TestApp::new();
    let cases = [
        ("idle_timeout", "because you were inactive for too long."),
        (
            "absolute_timeout",
            "because your session reached its maximum length.",
        ),
        ("logged_out", "You signed out."),
        (
            "revoked_by_admin",
            "because an administrator ended your session.",
        ),
        ("displaced", "because you signed in on another device."),
        ("password_changed", "because your password was changed."),
    ];
    for (code, sentence) in cases {
        let res = Req::get(&format!("/login?reason={code}")).send(&app).await;
        assert!(res.text().contains(sentence), "{code}: {}", res.text());
    }
    for junk in [
        "not_a_reason",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "Idle_Timeout",
    ] {
        let res = Req::get(&format!("/login?reason={junk}")).send(&app).await;
        assert_html(&res, StatusCode::OK);
        let html = res.text();
        assert!(!html.contains("signed out"), "{junk}");
        assert!(!html.contains("script>alert") && !html.contains("Idle_Timeout"));
    }
    // A query that does not even parse is ignored.
    let res = Req::get("/login?reason=%ZZ&&==").send(&app).await;
    assert_html(&res, StatusCode::OK);
}

#[tokio::test]
async fn a_displaced_browser_is_told_where_the_new_sign_in_came_from() {
    let app = TestApp::new();
    let id = app.create_user("alice", PASSWORD).await;
    let res = Req::post(&format!("/v1/admin/users/{id}"))
        .bearer(ADMIN_TOKEN)
        .json(json!({ "profile": "admin" }))
        .send(&app)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let first = app.login("alice", PASSWORD).await;
    let res = sign_in("alice", PASSWORD, None)
        .header("user-agent", FIREFOX)
        .peer("10.0.0.7:5555")
        .send(&app)
        .await;
    assert_see_other(&res, "/account");

    let res = Req::get(SIGN_IN).cookie(&first.token).send(&app).await;
    let html = res.text();
    assert!(
        html.contains("because you signed in on another device."),
        "{html}"
    );
    assert!(html.contains("The new sign-in came from Firefox on Windows 10 (10.0.0.7)."));
}

// ------------------------------------------------------------------- forms

#[tokio::test]
async fn a_form_needs_this_origin_and_the_session_anti_csrf_token() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let other = app.login("alice", PASSWORD).await;
    let path = "/account/sessions/revoke-others";
    let before = status(&app, &alice.token).await.unwrap()["last_seen_at"].clone();
    app.advance(10);

    let cross = [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "same-site"),
    ];
    for (name, value) in cross {
        let res = Req::post(path)
            .cookie(&alice.token)
            .header(name, value)
            .form(&[("csrf_token", &alice.csrf())])
            .send(&app)
            .await;
        assert_html(&res, StatusCode::FORBIDDEN);
        assert!(res.text().contains("sent from another website"));
    }
    // A refused cross-site request is not activity.
    let now = status(&app, &alice.token).await.unwrap();
    assert_eq!(now["last_seen_at"], before);

    let missing = form(path, &alice.token, None, &[]).send(&app).await;
    assert_html(&missing, StatusCode::FORBIDDEN);
    assert!(missing.text().contains("This form is out of date"));
    let wrong = form(path, &alice.token, Some(&other.csrf()), &[])
        .send(&app)
        .await;
    assert_html(&wrong, StatusCode::FORBIDDEN);
    assert!(status(&app, &other.token).await.is_ok(), "nothing was done");

    // A JSON body is not a form.
    let json = Req::post(path)
        .cookie(&alice.token)
        .header("sec-fetch-site", "same-origin")
        .json(json!({ "csrf_token": alice.csrf() }))
        .send(&app)
        .await;
    assert_html(&json, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let res = page_form(path, &alice, &[]).send(&app).await;
    assert_see_other(&res, "/account?notice=others_signed_out#sessions");
    assert_eq!(
        status(&app, &other.token).await.unwrap_err(),
        "signed_out_everywhere"
    );
    assert!(status(&app, &alice.token).await.is_ok());
}

#[tokio::test]
async fn a_form_without_a_live_session_sends_the_browser_to_sign_in() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let csrf = alice.csrf();
    Req::post("/v1/logout").browser(&alice).send(&app).await;
    let res = form(
        "/account/sessions/revoke-others",
        &alice.token,
        Some(&csrf),
        &[],
    )
    .send(&app)
    .await;
    assert_see_other(&res, SIGN_IN);
}

#[tokio::test]
async fn sign_out_ends_this_session_and_the_login_page_says_so() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = page_form("/logout", &alice, &[]).send(&app).await;
    assert_see_other(&res, "/login?reason=logged_out");
    assert_eq!(cookie_set(&res, "__Host-sg_session").as_deref(), Some(""));
    assert_eq!(status(&app, &alice.token).await.unwrap_err(), "logged_out");
    let page = Req::get("/login?reason=logged_out").send(&app).await;
    assert!(page.text().contains("You signed out."));
}

#[tokio::test]
async fn sign_out_of_one_other_session_and_never_of_someone_elses() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let laptop = app.login("alice", PASSWORD).await;
    app.create_user("bob", PASSWORD).await;
    let bob = app.login("bob", PASSWORD).await;

    let path = format!("/account/sessions/{}/revoke", bob.session_id());
    let res = page_form(&path, &alice, &[]).send(&app).await;
    assert_html(&res, StatusCode::NOT_FOUND);
    assert!(status(&app, &bob.token).await.is_ok());
    let res = page_form("/account/sessions/not-an-id/revoke", &alice, &[])
        .send(&app)
        .await;
    assert_html(&res, StatusCode::NOT_FOUND);

    let path = format!("/account/sessions/{}/revoke", laptop.session_id());
    let res = page_form(&path, &alice, &[]).send(&app).await;
    assert_see_other(&res, "/account?notice=session_ended#sessions");
    assert_eq!(
        status(&app, &laptop.token).await.unwrap_err(),
        "revoked_by_user"
    );
    let page = Req::get("/account?notice=session_ended")
        .cookie(&alice.token)
        .send(&app)
        .await;
    assert!(page.text().contains("The session was signed out."));
}

// ---------------------------------------------------------------- password

#[tokio::test]
async fn the_password_form_ends_every_other_session_and_api_token() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let laptop = app.login("alice", PASSWORD).await;
    let res = Req::post("/v1/api-tokens")
        .browser(&alice)
        .json(json!({ "name": "ci" }))
        .send(&app)
        .await;
    let api_token = res.json()["token"].as_str().unwrap().to_owned();

    let page = Req::get("/account").cookie(&alice.token).send(&app).await;
    assert!(page.text().contains(
        "Changing your password signs you out of every other session and ends every API token."
    ));

    let fields = [
        ("current_password", PASSWORD),
        ("new_password", "a brand new password"),
    ];
    let res = page_form("/account/password", &alice, &fields)
        .send(&app)
        .await;
    assert_see_other(&res, "/account?notice=password_changed#password");
    let fresh = cookie_set(&res, "__Host-sg_session").unwrap();
    assert!(status(&app, &fresh).await.is_ok());
    for old in [&alice.token, &laptop.token] {
        assert_eq!(status(&app, old).await.unwrap_err(), "password_changed");
    }
    assert_eq!(app.introspect(&api_token).await, json!({ "active": false }));
    let page = Req::get("/account?notice=password_changed")
        .cookie(&fresh)
        .send(&app)
        .await;
    assert!(
        page.text().contains(
            "Your password was changed. Every other session and every API token has ended."
        )
    );
    let res = sign_in("alice", "a brand new password", None)
        .send(&app)
        .await;
    assert_see_other(&res, "/account");
}

#[tokio::test]
async fn a_wrong_current_password_or_a_short_new_one_changes_nothing() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let laptop = app.login("alice", PASSWORD).await;

    let wrong = [
        ("current_password", "not the password"),
        ("new_password", "a brand new password"),
    ];
    let res = page_form("/account/password", &alice, &wrong)
        .send(&app)
        .await;
    assert_html(&res, StatusCode::UNAUTHORIZED);
    assert!(res.text().contains("Your current password is wrong"));

    let short = [("current_password", PASSWORD), ("new_password", "short")];
    let res = page_form("/account/password", &alice, &short)
        .send(&app)
        .await;
    assert_html(&res, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.text().contains("at least 8 characters"),
        "{}",
        res.text()
    );

    assert!(status(&app, &laptop.token).await.is_ok());
    assert_see_other(
        &sign_in("alice", PASSWORD, None).send(&app).await,
        "/account",
    );
}

#[tokio::test]
async fn past_the_step_up_window_the_current_password_re_authenticates() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.advance(10);
    let fields = [
        ("current_password", PASSWORD),
        ("new_password", "a brand new password"),
    ];
    // The JSON API asks for a step-up first...
    let res = Req::post("/v1/password")
        .browser(&alice)
        .json(json!({ "current_password": PASSWORD, "new_password": "a brand new password" }))
        .send(&app)
        .await;
    res.problem(StatusCode::FORBIDDEN, "step_up_required");
    // ...which the page's current password gives: the same rule, met.
    let res = page_form("/account/password", &alice, &fields)
        .send(&app)
        .await;
    assert_see_other(&res, "/account?notice=password_changed#password");
    let fresh = cookie_set(&res, "__Host-sg_session").unwrap();
    let events = Req::get("/v1/events")
        .cookie(&fresh)
        .send(&app)
        .await
        .json();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        &kinds[..3],
        ["login_succeeded", "password_changed", "elevated"],
        "{kinds:?}"
    );

    // A wrong one past the window: no step-up, no change, the cookie still works.
    app.advance(10);
    let wrong = [
        ("current_password", "not the password"),
        ("new_password", "another new password"),
    ];
    let res = form(
        "/account/password",
        &fresh,
        Some(&csrf_of(&app, &fresh).await),
        &wrong,
    )
    .send(&app)
    .await;
    assert_html(&res, StatusCode::UNAUTHORIZED);
    assert!(set_cookies(&res).is_empty());
    assert!(status(&app, &fresh).await.is_ok());
}

/// The anti-CSRF token of the session behind `token`.
async fn csrf_of(app: &TestApp, token: &str) -> String {
    status(app, token).await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

// -------------------------------------------------------------- API tokens

#[tokio::test]
async fn a_new_api_token_is_shown_once_then_listed_without_its_secret() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let res = page_form("/account/api-tokens", &alice, &[("name", "deploy")])
        .send(&app)
        .await;
    assert_see_other(&res, "/account?notice=token_created#api-tokens");
    let token = cookie_set(&res, "__Host-sg_new_api_token").unwrap();
    assert!(token.starts_with("sga_"));
    let attrs = set_cookies(&res).concat();
    assert!(attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict"));
    assert!(attrs.contains("Max-Age=60"));
    assert_eq!(app.introspect(&token).await["active"], true);

    let flash = format!(
        "__Host-sg_session={}; __Host-sg_new_api_token={token}",
        alice.token
    );
    let page = Req::get("/account?notice=token_created")
        .header("cookie", &flash)
        .send(&app)
        .await;
    let html = page.text();
    assert!(html.contains("Your API token was created."));
    assert!(html.contains(&format!("value=\"{token}\"")), "{html}");
    assert_eq!(
        cookie_set(&page, "__Host-sg_new_api_token").as_deref(),
        Some("")
    );
    // Without the cookie (cleared by that page), never again.
    let again = Req::get("/account").cookie(&alice.token).send(&app).await;
    assert!(!again.text().contains(&token));
    assert!(again.text().contains("deploy"));

    let res = page_form("/account/api-tokens", &alice, &[("name", "")])
        .send(&app)
        .await;
    assert_html(&res, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().contains("Give the token a name"));
}

#[tokio::test]
async fn a_new_token_cookie_is_shown_only_to_its_owner() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.create_user("bob", PASSWORD).await;
    let bob = app.login("bob", PASSWORD).await;
    let res = page_form("/account/api-tokens", &bob, &[("name", "bob's")])
        .send(&app)
        .await;
    let token = cookie_set(&res, "__Host-sg_new_api_token").unwrap();
    let planted = format!(
        "__Host-sg_session={}; __Host-sg_new_api_token={token}",
        alice.token
    );
    let page = Req::get("/account")
        .header("cookie", &planted)
        .send(&app)
        .await;
    assert!(!page.text().contains(&token));
    assert_eq!(
        cookie_set(&page, "__Host-sg_new_api_token").as_deref(),
        Some("")
    );
}

#[tokio::test]
async fn past_the_step_up_window_creating_a_token_asks_for_the_password() {
    let app = TestApp::new();
    let alice = app.alice().await;
    let page = Req::get("/account").cookie(&alice.token).send(&app).await;
    assert!(!page.text().contains("Confirm your password"));
    app.advance(10);
    let page = Req::get("/account").cookie(&alice.token).send(&app).await;
    assert!(page.text().contains("Confirm your password"));

    let res = page_form("/account/api-tokens", &alice, &[("name", "ci")])
        .send(&app)
        .await;
    assert_html(&res, StatusCode::FORBIDDEN);
    assert!(res.text().contains("enter your password again"));
    let wrong = [("name", "ci"), ("password", "not the password")];
    let res = page_form("/account/api-tokens", &alice, &wrong)
        .send(&app)
        .await;
    assert_html(&res, StatusCode::UNAUTHORIZED);
    assert!(cookie_set(&res, "__Host-sg_new_api_token").is_none());

    let right = [("name", "ci"), ("password", PASSWORD)];
    let res = page_form("/account/api-tokens", &alice, &right)
        .send(&app)
        .await;
    assert_see_other(&res, "/account?notice=token_created#api-tokens");
    assert!(cookie_set(&res, "__Host-sg_new_api_token").is_some());
    // The step-up replaced the session's token: the old one ended.
    let stepped = cookie_set(&res, "__Host-sg_session").unwrap();
    assert!(status(&app, &stepped).await.is_ok());
    assert_eq!(
        status(&app, &alice.token).await.unwrap_err(),
        "privilege_changed"
    );
}

#[tokio::test]
async fn revoking_a_token_from_the_page_ends_it_and_no_one_elses() {
    let app = TestApp::new();
    let alice = app.alice().await;
    app.create_user("bob", PASSWORD).await;
    let bob = app.login("bob", PASSWORD).await;
    let created = |login: &Login| {
        Req::post("/v1/api-tokens")
            .browser(login)
            .json(json!({ "name": "ci" }))
    };
    let mine = created(&alice).send(&app).await.json();
    let bobs = created(&bob).send(&app).await.json();

    let path = format!(
        "/account/api-tokens/{}/revoke",
        bobs["id"].as_str().unwrap()
    );
    let res = page_form(&path, &alice, &[]).send(&app).await;
    assert_html(&res, StatusCode::NOT_FOUND);
    let bobs_token = bobs["token"].as_str().unwrap();
    assert_eq!(app.introspect(bobs_token).await["active"], true);

    let path = format!(
        "/account/api-tokens/{}/revoke",
        mine["id"].as_str().unwrap()
    );
    let res = page_form(&path, &alice, &[]).send(&app).await;
    assert_see_other(&res, "/account?notice=token_revoked#api-tokens");
    let my_token = mine["token"].as_str().unwrap();
    assert_eq!(app.introspect(my_token).await, json!({ "active": false }));
}
