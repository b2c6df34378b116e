//! A small site with a page behind login, with sessionguard in-process.
//!
//! ```sh
//! cargo run -p sessionguard-axum --example site
//! ```
//!
//! then open <http://localhost:3000> (browsers keep `Secure` cookies on
//! `localhost` over plain HTTP; elsewhere serve it over HTTPS) and sign in
//! with the printed user and password. The site keeps its own users (one,
//! here) and checks their passwords itself; sessionguard owns the sessions:
//! idle and absolute timeouts, logout that ends the session on the server, the
//! `__Host-` cookie, the cross-site rule and the anti-CSRF token of the
//! logout form. `SITE_LISTEN` sets the address (default 127.0.0.1:3000).

#![allow(clippy::print_stdout)] // an example talks to its user

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use sessionguard_axum::{InProcess, Session, SessionRejection};
use sessionguard_core::{
    Engine, MemoryStore, Password, PasswordHash, PasswordHasher, Policy, TokenId, UserId,
};

/// The site: its sessions and its own user database (one user).
#[derive(Clone)]
struct Site {
    sessions: InProcess<MemoryStore>,
    users: Arc<Users>,
}

struct Users {
    hasher: PasswordHasher,
    name: String,
    id: UserId,
    hash: PasswordHash,
}

impl Users {
    /// The site's name for a user.
    fn name_of<'a>(&'a self, id: &'a UserId) -> &'a str {
        if *id == self.id {
            &self.name
        } else {
            id.as_str()
        }
    }
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::var("SITE_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let origin = format!("http://localhost:{}", listen.port());

    let hasher = PasswordHasher::owasp();
    let secret = TokenId::random().to_string();
    let hash = hasher.hash(&Password::new_for_setting(secret.clone())?);
    let users = Users {
        hasher,
        name: "demo".to_owned(),
        id: UserId::new("user-1")?,
        hash,
    };

    let engine = Engine::new(MemoryStore::new(), Policy::default())?;
    let sessions = InProcess::new(engine, origin.clone());
    let site = Site {
        sessions: sessions.clone(),
        users: Arc::new(users),
    };
    let app = Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/private", get(private))
        .route("/logout", axum::routing::post(logout))
        .layer(sessions.layer())
        .with_state(site);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("site on {origin} (listening on {listen})");
    println!("sign in as demo / {secret}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// Public: says who is signed in, if anyone.
async fn home(State(site): State<Site>, session: Option<Session>) -> Html<String> {
    let who = match &session {
        Some(s) => format!(
            "Signed in as {}. <a href=\"/private\">Your page</a>.",
            escape(site.users.name_of(s.user_id()))
        ),
        None => "Not signed in. <a href=\"/login\">Sign in</a>.".to_owned(),
    };
    page("Home", &who)
}

async fn login_page() -> Html<String> {
    page(
        "Sign in",
        "<form method=\"post\" action=\"/login\">\
         <label>Username <input name=\"username\" autocomplete=\"username\"></label> \
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label> \
         <button>Sign in</button></form>",
    )
}

/// The site checks the password against its own user database, then lets
/// sessionguard start the session (revoking any session token the browser
/// presented: no fixation).
async fn login(
    State(site): State<Site>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, SessionRejection> {
    let users = Arc::clone(&site.users);
    let known = form.username == users.name;
    let verified = tokio::task::spawn_blocking(move || {
        let password = Password::new(form.password).ok()?;
        // Unknown users are checked against a dummy hash: same time, same answer.
        let hash = known.then_some(&users.hash);
        users.hasher.verify(&password, hash).then_some(())
    })
    .await
    .ok()
    .flatten();
    if verified.is_none() {
        return Ok(page(
            "Sign in",
            "Wrong username or password. <a href=\"/login\">Again</a>.",
        )
        .into_response());
    }
    let logged_in = site
        .sessions
        .log_in(&site.users.id, &headers, Some(peer.ip()))
        .await?;
    Ok((logged_in, Redirect::to("/private")).into_response())
}

/// Behind login: without a live session, to the login page.
async fn private(State(site): State<Site>, session: Result<Session, SessionRejection>) -> Response {
    let Ok(session) = session else {
        return Redirect::to("/login").into_response();
    };
    let csrf = session.csrf_token().unwrap_or_default();
    page(
        "Your page",
        &format!(
            "Hello {}. This page is behind login.\
             <form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
             <button>Sign out</button></form>",
            escape(site.users.name_of(session.user_id())),
            escape(&csrf),
        ),
    )
    .into_response()
}

/// The session ends on the server before the answer; the cookie is cleared.
/// The layer checked the form's anti-CSRF token and the request's origin.
async fn logout(State(site): State<Site>, session: Session) -> Result<Response, SessionRejection> {
    let logged_out = site.sessions.log_out(&session).await?;
    Ok((logged_out, Redirect::to("/")).into_response())
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{body}</p></body></html>"
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
