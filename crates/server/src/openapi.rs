//! The OpenAPI 3.1 document of the JSON API, served at `GET /v1/openapi.json`.
//!
//! It is built here, from the code: every body schema is derived
//! (`utoipa::ToSchema`) from the very types the handlers read and write, and
//! each operation is declared next to the others below, with its security,
//! parameters, bodies (JSON, and form where the endpoint accepts one) and
//! every answer it can give — for problem documents, the `code` values of
//! each status, as an `enum` a client (or a schema checker) can hold the server
//! to. A test keeps the document's paths equal to the router's JSON routes
//! ([`crate::api_routes`]), and the test command runs schemathesis against a
//! real server with it.
//!
//! The HTML pages (`/login`, `/account`, their forms, `/logout`, `/static/…`)
//! are for browsers and are not described here.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sessionguard_core::Reason;
use utoipa::ToSchema;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response as DocResponse, ResponseBuilder};
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ComponentsBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Content, Header, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required, Schema, Tag,
};

use crate::FORWARD_AUTH_PATH;
use crate::access::TokenPair;
use crate::routes::admin::{
    CreatedSession, CreatedUser, NewSession, NewUser, RevokeBody, Revoked, UserUpdate, UserView,
};
use crate::routes::api_tokens::{ApiTokenList, CreatedApiToken, NewApiToken};
use crate::routes::events::EventPage;
use crate::routes::oauth::{Introspection, TokenParam, TokenRequest};
use crate::routes::session::{
    CurrentSession, ElevateBody, ElevatedAccess, LoginBody, LogoutBody, PasswordBody,
    RotatedSession,
};
use crate::routes::{SessionList, SessionView};

/// Where the document is served.
pub const PATH: &str = "/v1/openapi.json";

/// An RFC 9457 problem document, the body of every error but the OAuth
/// endpoints' (see [`OAuthError`]). `code` is stable: each operation lists the
/// codes of each status.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Problem {
    /// `urn:sessionguard:problem:<code>`.
    #[schema(rename = "type")]
    kind: String,
    /// A short summary of the problem type.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What happened, for people; never a submitted value.
    detail: String,
    /// The stable snake_case code clients branch on.
    code: String,
    /// For an ended session: when it ended.
    #[schema(format = DateTime)]
    ended_at: Option<String>,
    /// For `displaced`: the client whose sign-in displaced the session.
    displaced_by: Option<ClientView>,
}

/// A client as sessions record it.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ClientView {
    user_agent: Option<String>,
    ip: Option<String>,
}

/// An RFC 6749 §5.2 error (the token endpoint, and RFC 7009 revocation's
/// request errors), with the stable `code` of problem documents.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OAuthError {
    /// `invalid_request`, `invalid_grant` or `unsupported_grant_type`.
    error: String,
    error_description: String,
    /// The stable snake_case code.
    code: String,
    #[schema(format = DateTime)]
    ended_at: Option<String>,
    displaced_by: Option<ClientView>,
}

/// `{"status"}` of the health endpoints.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Health {
    /// `ok` (liveness) or `ready` (readiness).
    status: String,
}

/// The JSON Web Key Set of the access tokens' public keys (RFC 7517).
#[derive(ToSchema)]
#[allow(dead_code)]
struct Jwks {
    /// One JWK per published key (public parts only).
    #[schema(value_type = Vec<Object>)]
    keys: Vec<()>,
}

/// The codes of a refused session credential: `invalid_token`, and each reason
/// a session or token ends with.
fn session_codes() -> Vec<&'static str> {
    let mut codes = vec![Reason::InvalidToken.code()];
    codes.extend(
        Reason::ALL
            .into_iter()
            .filter(|r| *r != Reason::InvalidToken)
            .map(Reason::code),
    );
    codes
}

/// How an operation is authenticated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    /// The session cookie (with the anti-CSRF header when `unsafe_method`) or
    /// a bearer token.
    Session {
        unsafe_method: bool,
    },
    Admin,
    Introspection,
    /// Forward-auth: a session cookie, a bearer token, or nothing (answered 401).
    Optional,
}

/// The media types of a request body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    JsonOrForm,
}

/// The body of an operation's request.
struct Body {
    schema: RefOr<Schema>,
    media: Media,
    required: bool,
}

/// The document under construction.
struct Doc {
    paths: Paths,
    components: ComponentsBuilder,
    schemas: Vec<(String, RefOr<Schema>)>,
}

/// One operation under construction.
struct Op {
    builder: OperationBuilder,
    responses: Vec<(u16, DocResponse)>,
    auth: Auth,
    oauth: bool,
}

impl Doc {
    /// A reference to `T`'s schema, registering it (and what it refers to).
    fn schema<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let name = T::name().into_owned();
        if !self.schemas.iter().any(|(n, _)| *n == name) {
            self.schemas.push((name.clone(), T::schema()));
            T::schemas(&mut self.schemas);
        }
        RefOr::Ref(Ref::from_schema_name(name))
    }

    fn add(&mut self, path: &str, method: HttpMethod, op: Op) {
        let mut builder = op.builder.response(
            "431",
            problem_response(self, 431, &["headers_too_large"], false),
        );
        for (status, response) in op.responses {
            builder = builder.response(status.to_string(), response);
        }
        builder = match op.auth {
            Auth::None => builder,
            Auth::Session { unsafe_method } => {
                let cookie = if unsafe_method {
                    SecurityRequirement::new("session_cookie", Vec::<String>::new())
                        .add("csrf_token", Vec::<String>::new())
                } else {
                    SecurityRequirement::new("session_cookie", Vec::<String>::new())
                };
                builder
                    .security(cookie)
                    .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            }
            Auth::Admin => {
                builder.security(SecurityRequirement::new("admin", Vec::<String>::new()))
            }
            Auth::Introspection => builder
                .security(SecurityRequirement::new(
                    "introspection",
                    Vec::<String>::new(),
                ))
                .security(SecurityRequirement::new("admin", Vec::<String>::new())),
            Auth::Optional => builder
                .security(SecurityRequirement::default())
                .security(SecurityRequirement::new(
                    "session_cookie",
                    Vec::<String>::new(),
                ))
                .security(SecurityRequirement::new("bearer", Vec::<String>::new())),
        };
        let _ = op.oauth;
        self.paths
            .add_path_operation(path, vec![method], builder.build());
    }
}

impl Op {
    fn new(id: &str, tag: &str, summary: &str, auth: Auth) -> Self {
        Op {
            builder: OperationBuilder::new()
                .operation_id(Some(id))
                .tag(tag)
                .summary(Some(summary)),
            responses: Vec::new(),
            auth,
            oauth: false,
        }
    }

    fn describe(mut self, text: &str) -> Self {
        self.builder = self.builder.description(Some(text));
        self
    }

    /// Errors of this operation are in the OAuth form ([`OAuthError`]).
    fn oauth(mut self) -> Self {
        self.oauth = true;
        self
    }

    fn body(mut self, body: Body) -> Self {
        let mut request = RequestBodyBuilder::new().required(Some(if body.required {
            Required::True
        } else {
            Required::False
        }));
        request = request.content("application/json", Content::new(Some(body.schema.clone())));
        if body.media == Media::JsonOrForm {
            request = request.content(
                "application/x-www-form-urlencoded",
                Content::new(Some(body.schema)),
            );
        }
        self.builder = self.builder.request_body(Some(request.build()));
        self
    }

    /// A parameter `name` in `place`, of `schema`.
    fn param(mut self, place: ParameterIn, name: &str, what: &str, schema: Schema) -> Self {
        let required = if place == ParameterIn::Path {
            Required::True
        } else {
            Required::False
        };
        self.builder = self.builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(place)
                .required(required)
                .description(Some(what))
                .schema(Some(schema)),
        );
        self
    }

    fn path_id(self, what: &str) -> Self {
        self.param(ParameterIn::Path, "id", what, string())
    }

    fn query(self, name: &str, what: &str) -> Self {
        self.param(ParameterIn::Query, name, what, string())
    }

    /// An optional query parameter that takes one of `values`.
    fn query_one_of(self, name: &str, what: &str, values: &[&str]) -> Self {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .build()
            .into();
        self.param(ParameterIn::Query, name, what, schema)
    }

    fn header(self, name: &str, what: &str) -> Self {
        self.param(ParameterIn::Header, name, what, string())
    }

    fn ok(mut self, status: u16, response: DocResponse) -> Self {
        self.responses.push((status, response));
        self
    }

    /// Problem documents (or OAuth errors) with `status` and `codes`.
    fn fails(mut self, doc: &mut Doc, status: u16, codes: &[&str]) -> Self {
        let response = if self.oauth && ![503, 431].contains(&status) {
            oauth_response(doc, status, codes)
        } else {
            let challenge = status == 401;
            problem_response(doc, status, codes, challenge)
        };
        self.responses.push((status, response));
        self
    }

    /// 401 for a refused session credential, with `extra` codes.
    fn session_refused(self, doc: &mut Doc, extra: &[&str]) -> Self {
        let mut codes = session_codes();
        codes.extend_from_slice(extra);
        self.fails(doc, 401, &codes)
    }

    /// The refusals of a body: 400 (syntax), 413, 415, 422 (shape).
    fn body_refusals(self, doc: &mut Doc, extra_422: &[&str]) -> Self {
        let mut unprocessable = vec!["malformed_request"];
        unprocessable.extend_from_slice(extra_422);
        self.fails(doc, 413, &["payload_too_large"])
            .fails(doc, 415, &["unsupported_media_type"])
            .fails(doc, 422, &unprocessable)
    }
}

fn string() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .build()
        .into()
}

/// A JSON success answer of `T`.
fn json_ok(doc: &mut Doc, schema: RefOr<Schema>, what: &str) -> DocResponse {
    let _ = doc;
    ResponseBuilder::new()
        .description(what)
        .content("application/json", Content::new(Some(schema)))
        .build()
}

fn empty_ok(what: &str) -> DocResponse {
    ResponseBuilder::new().description(what).build()
}

/// A header that the answer may carry.
fn with_header(response: DocResponse, name: &str, what: &str) -> DocResponse {
    let mut response = response;
    let mut h = Header::new(string());
    h.description = Some(what.to_owned());
    response.headers.insert(name.to_owned(), RefOr::T(h));
    response
}

/// The `code` property restricted to `codes`.
fn codes_schema(codes: &[&str]) -> Schema {
    ObjectBuilder::new()
        .property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes.iter().copied())),
        )
        .required("code")
        .build()
        .into()
}

fn code_list(codes: &[&str]) -> String {
    codes
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn problem_response(doc: &mut Doc, status: u16, codes: &[&str], challenge: bool) -> DocResponse {
    let problem = doc.schema::<Problem>();
    let schema: Schema = AllOfBuilder::new()
        .item(problem)
        .item(codes_schema(codes))
        .build()
        .into();
    let mut response = ResponseBuilder::new()
        .description(format!("A problem document; `code`: {}.", code_list(codes)))
        .content("application/problem+json", Content::new(Some(schema)))
        .build();
    if challenge {
        response = with_header(
            response,
            "WWW-Authenticate",
            "`Bearer realm=\"sessionguard\"`, with `error=\"invalid_token\"` for a bearer \
             credential (RFC 6750).",
        );
    }
    if [429, 503].contains(&status) {
        response = with_header(
            response,
            "Retry-After",
            "Seconds to wait (`too_many_attempts`, `server_busy`).",
        );
    }
    response
}

fn oauth_response(doc: &mut Doc, status: u16, codes: &[&str]) -> DocResponse {
    let error = doc.schema::<OAuthError>();
    let schema: Schema = AllOfBuilder::new()
        .item(error)
        .item(codes_schema(codes))
        .build()
        .into();
    let mut response = ResponseBuilder::new()
        .description(format!(
            "An RFC 6749 §5.2 error (`application/json`); `code`: {}.",
            code_list(codes)
        ))
        .content("application/json", Content::new(Some(schema)))
        .build();
    if status == 429 {
        response = with_header(response, "Retry-After", "Seconds to wait.");
    }
    response
}

fn json_body<T: ToSchema>(doc: &mut Doc, media: Media, required: bool) -> Body {
    Body {
        schema: doc.schema::<T>(),
        media,
        required,
    }
}

/// The document, built once.
pub fn document() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(build)
}

/// `GET /v1/openapi.json`: the document (cacheable for five minutes: it
/// changes only with the server's version).
pub async fn serve() -> Response {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    let body = JSON
        .get_or_init(|| serde_json::to_vec(document()).unwrap_or_else(|_| b"{}".to_vec()))
        .clone();
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

#[allow(clippy::too_many_lines)]
fn build() -> OpenApi {
    let mut doc = Doc {
        paths: Paths::new(),
        components: ComponentsBuilder::new(),
        schemas: Vec::new(),
    };
    let d = &mut doc;
    let unsafe_session = Auth::Session {
        unsafe_method: true,
    };
    let safe_session = Auth::Session {
        unsafe_method: false,
    };
    let csrf = ["cross_origin_request", "csrf_token_invalid"];
    let store = ["store_unavailable"];
    let busy = ["server_busy", "store_unavailable"];

    // Health and operations.
    let health = d.schema::<Health>();
    let op = Op::new("healthz", "operations", "Liveness", Auth::None)
        .describe("The process serves HTTP; the store is not asked.")
        .ok(200, json_ok(d, health.clone(), "`{\"status\":\"ok\"}`"));
    d.add("/healthz", HttpMethod::Get, op);
    let op = Op::new("readyz", "operations", "Readiness", Auth::None)
        .describe("The store answers and, on Redis, no master may evict keys.")
        .ok(200, json_ok(d, health, "`{\"status\":\"ready\"}`"))
        .fails(d, 503, &store);
    d.add("/readyz", HttpMethod::Get, op);
    let op = Op::new("metrics", "operations", "Prometheus metrics", Auth::Admin)
        .describe(
            "Every series in the Prometheus text format. Without authentication on the \
             `metrics_listen` address, when configured.",
        )
        .ok(
            200,
            ResponseBuilder::new()
                .description("The Prometheus text format, version 0.0.4.")
                .content("text/plain", Content::new(Some(string())))
                .build(),
        )
        .fails(d, 401, &["admin_unauthorized"]);
    d.add("/metrics", HttpMethod::Get, op);
    let op = Op::new("openapi", "operations", "This document", Auth::None).ok(
        200,
        json_ok(
            d,
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .build()
                .into(),
            "The OpenAPI 3.1 document of the JSON API.",
        ),
    );
    d.add(PATH, HttpMethod::Get, op);
    let jwks = d.schema::<Jwks>();
    let op = Op::new(
        "jwks",
        "tokens",
        "Access-token verification keys",
        Auth::None,
    )
    .ok(
        200,
        json_ok(d, jwks, "The public keys (cacheable five minutes)."),
    );
    d.add("/.well-known/jwks.json", HttpMethod::Get, op);

    // Sessions.
    let view = d.schema::<SessionView>();
    let body = json_body::<LoginBody>(d, Media::JsonOrForm, true);
    let op = Op::new("login", "sessions", "Log in (cookie flow)", Auth::None)
        .describe(
            "Checks the password (throttled) and starts a new session in the \
             `__Host-sg_session` cookie; revokes any session token sent with the request.",
        )
        .body(body)
        .ok(
            200,
            with_header(
                json_ok(
                    d,
                    view.clone(),
                    "The new session; its token is only in the cookie.",
                ),
                "Set-Cookie",
                "`__Host-sg_session` (and `__Host-sg_device`).",
            ),
        )
        .fails(d, 400, &["malformed_request"])
        .fails(d, 401, &["invalid_credentials"])
        .fails(d, 403, &["cross_origin_request"])
        .fails(d, 409, &["session_limit_reached", "conflict"])
        .body_refusals(d, &[])
        .fails(d, 429, &["too_many_attempts"])
        .fails(d, 503, &busy);
    d.add("/v1/login", HttpMethod::Post, op);

    let current = d.schema::<CurrentSession>();
    let op = Op::new(
        "current_session",
        "sessions",
        "The current session",
        safe_session,
    )
    .describe(
        "Counts as activity. `?require=step_up` answers 403 unless the session was \
             authenticated within `step_up_ttl`.",
    )
    .query("require", "`step_up`")
    .ok(
        200,
        json_ok(d, current, "The session and the user's roles."),
    )
    .fails(d, 400, &["invalid_query", "malformed_request"])
    .session_refused(d, &[])
    .fails(d, 403, &["step_up_required"])
    .fails(d, 503, &store);
    d.add("/v1/session", HttpMethod::Get, op);
    let op = Op::new(
        "session_status",
        "sessions",
        "The session, without activity",
        safe_session,
    )
    .ok(
        200,
        json_ok(
            d,
            view.clone(),
            "The session; its idle deadline does not move.",
        ),
    )
    .session_refused(d, &[])
    .fails(d, 503, &store);
    d.add("/v1/session/status", HttpMethod::Get, op);

    let rotated = d.schema::<RotatedSession>();
    let elevated = d.schema::<ElevatedAccess>();
    let body = json_body::<ElevateBody>(d, Media::Json, true);
    let either: Schema = AnyOfBuilder::new()
        .item(rotated.clone())
        .item(elevated)
        .build()
        .into();
    let op = Op::new("elevate", "sessions", "Step up", unsafe_session)
        .describe(
            "Re-authentication: the session gets a new token (the old one ends) and counts \
             as recently authenticated. Cookie clients get it as a cookie, bearer \
             session-token clients as `session_token`, access-token clients a new \
             `access_token`.",
        )
        .body(body)
        .ok(200, json_ok(d, either.into(), "The stepped-up session."))
        .fails(d, 400, &["malformed_request"])
        .session_refused(d, &["invalid_credentials"])
        .fails(d, 403, &csrf)
        .body_refusals(d, &[])
        .fails(d, 429, &["too_many_attempts"])
        .fails(d, 503, &busy);
    d.add("/v1/session/elevate", HttpMethod::Post, op);

    let pair = d.schema::<TokenPair>();
    let body = json_body::<PasswordBody>(d, Media::Json, true);
    let either: Schema = AnyOfBuilder::new()
        .item(rotated)
        .item(pair.clone())
        .build()
        .into();
    let op = Op::new(
        "change_password",
        "sessions",
        "Change the password",
        unsafe_session,
    )
    .describe(
        "Needs a recent authentication. Every session of the user ends \
             (`password_changed`), and API tokens by policy; this device gets a new session \
             (a cookie, a `session_token`, or a new token pair for access-token clients).",
    )
    .body(body)
    .ok(
        200,
        json_ok(d, either.into(), "The new session of this device."),
    )
    .fails(d, 400, &["malformed_request"])
    .session_refused(d, &["invalid_credentials"])
    .fails(
        d,
        403,
        &[
            "cross_origin_request",
            "csrf_token_invalid",
            "step_up_required",
        ],
    )
    .fails(d, 409, &["conflict", "session_limit_reached"])
    .body_refusals(d, &["weak_password"])
    .fails(d, 429, &["too_many_attempts"])
    .fails(d, 503, &busy);
    d.add("/v1/password", HttpMethod::Post, op);

    let body = json_body::<LogoutBody>(d, Media::JsonOrForm, false);
    let op = Op::new("logout", "sessions", "Log out", unsafe_session)
        .describe(
            "Revokes the session (`logged_out`) before answering. The credential: a bearer \
             refresh, session or access token; else a `refresh_token` in the body; else the \
             cookie (then cleared).",
        )
        .body(body)
        .ok(204, empty_ok("The session is ended."))
        .fails(d, 400, &["malformed_request"])
        .session_refused(d, &[])
        .fails(d, 403, &csrf)
        .fails(d, 413, &["payload_too_large"])
        .fails(d, 422, &["malformed_request"])
        .fails(d, 503, &store);
    d.add("/v1/logout", HttpMethod::Post, op);

    let list = d.schema::<SessionList>();
    let op = Op::new(
        "list_sessions",
        "sessions",
        "My live sessions",
        safe_session,
    )
    .ok(
        200,
        json_ok(d, list.clone(), "The caller's is marked `current`."),
    )
    .session_refused(d, &[])
    .fails(d, 503, &store);
    d.add("/v1/sessions", HttpMethod::Get, op);
    let op = Op::new(
        "revoke_others",
        "sessions",
        "End my other sessions",
        unsafe_session,
    )
    .ok(
        204,
        empty_ok("Every other session ended (`signed_out_everywhere`)."),
    )
    .session_refused(d, &[])
    .fails(d, 403, &csrf)
    .fails(d, 503, &store);
    d.add("/v1/sessions/revoke-others", HttpMethod::Post, op);
    let op = Op::new(
        "revoke_session",
        "sessions",
        "End one of my sessions",
        unsafe_session,
    )
    .path_id("The session id.")
    .ok(204, empty_ok("The session ended (`revoked_by_user`)."))
    .fails(d, 400, &["invalid_session_id", "malformed_request"])
    .session_refused(d, &[])
    .fails(d, 403, &csrf)
    .fails(d, 404, &["not_found"])
    .fails(d, 503, &store);
    d.add("/v1/sessions/{id}", HttpMethod::Delete, op);

    let events = d.schema::<EventPage>();
    let op = Op::new("own_events", "sessions", "My security events", safe_session)
        .query("cursor", "The previous page's `next_cursor`.")
        .ok(200, json_ok(d, events.clone(), "Newest first, 50 a page."))
        .fails(d, 400, &["invalid_query", "malformed_request"])
        .session_refused(d, &[])
        .fails(d, 503, &store);
    d.add("/v1/events", HttpMethod::Get, op);

    // Forward-auth.
    let mut forward_refusal = vec!["missing_credentials"];
    forward_refusal.extend(session_codes());
    for method in [
        HttpMethod::Get,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
    ] {
        let ok = [
            ("X-Auth-User-Id", "The user's id."),
            ("X-Auth-Username", "The username, if the user has one."),
            (
                "X-Auth-Session-Id",
                "The session's id (not for an API token).",
            ),
            ("X-Auth-Roles", "The roles, comma-separated."),
            (
                "X-Auth-Step-Up-Until",
                "Until when the session counts as recently authenticated.",
            ),
            ("X-Auth-Csrf-Token", "The session's anti-CSRF token."),
            ("Set-Cookie", "A renewed session cookie, when one is due."),
        ]
        .into_iter()
        .fold(
            empty_ok("The credential is alive; no body."),
            |r, (h, what)| with_header(r, h, what),
        );
        let refused = with_header(
            problem_response(d, 401, &forward_refusal, true),
            "X-Auth-Reason",
            "The reason code.",
        );
        let mut op = Op::new(
            &format!("forward_auth_{}", method_name(&method)),
            "forward-auth",
            "Forward authentication for reverse proxies",
            Auth::Optional,
        )
        .describe(
            "Any method: the proxy's subrequest. One session check of the credential (the \
             session cookie, or a bearer session, access or API token); the cross-site rule on \
             the original method for cookies. `?redirect=login` answers a refusal with a 302 \
             to the login page (absolute, on the public origin).",
        )
        .query_one_of(
            "redirect",
            "Answer a refusal with a redirect to the login page.",
            &["login"],
        )
        .header("X-Forwarded-Method", "The original request's method.")
        .header("X-Forwarded-Uri", "The original request's path and query.")
        .header("X-Forwarded-Host", "The original request's host.")
        .ok(200, ok)
        .ok(
            302,
            with_header(
                with_header(
                    empty_ok("Refused, with `?redirect=login`: to the login page."),
                    "Location",
                    "`/login?return_to=…`",
                ),
                "X-Auth-Reason",
                "The reason code.",
            ),
        )
        .fails(d, 400, &["invalid_query", "malformed_request"]);
        op.responses.push((401, refused));
        let op = op
            .fails(d, 403, &["cross_origin_request"])
            .fails(d, 503, &store);
        d.add(FORWARD_AUTH_PATH, method, op);
    }

    // Tokens.
    let body = json_body::<TokenRequest>(d, Media::JsonOrForm, true);
    let mut grant_errors = vec![
        "malformed_request",
        "unsupported_media_type",
        "invalid_credentials",
        "client_mismatch",
        "conflict",
        "session_limit_reached",
        "unsupported_grant_type",
    ];
    grant_errors.extend(session_codes());
    let op = Op::new("token", "tokens", "OAuth 2.0 token endpoint", Auth::None)
        .oauth()
        .describe(
            "`grant_type=password` (`username`, `password`) or `refresh_token` \
             (`refresh_token`), each with an optional `client_id` (default `first-party`). \
             Errors in the RFC 6749 §5.2 form.",
        )
        .body(body)
        .ok(
            200,
            json_ok(
                d,
                pair.clone(),
                "An access token and the next refresh token.",
            ),
        )
        .fails(d, 400, &grant_errors)
        .fails(d, 403, &["cross_origin_request"])
        .fails(d, 413, &["payload_too_large"])
        .fails(d, 429, &["too_many_attempts"])
        .fails(d, 503, &busy);
    d.add("/v1/token", HttpMethod::Post, op);

    let introspection = d.schema::<Introspection>();
    let body = json_body::<TokenParam>(d, Media::JsonOrForm, true);
    let op = Op::new(
        "introspect",
        "tokens",
        "Token introspection (RFC 7662)",
        Auth::Introspection,
    )
    .body(body)
    .ok(
        200,
        json_ok(
            d,
            introspection,
            "`{\"active\":false}` or the token's claims.",
        ),
    )
    .fails(d, 400, &["malformed_request"])
    .fails(d, 401, &["introspection_unauthorized"])
    .body_refusals(d, &[])
    .fails(d, 503, &store);
    d.add("/v1/introspect", HttpMethod::Post, op);

    let body = json_body::<TokenParam>(d, Media::JsonOrForm, true);
    let op = Op::new(
        "revoke",
        "tokens",
        "Token revocation (RFC 7009)",
        Auth::None,
    )
    .oauth()
    .describe("Ends whatever the token is; always `{}` for a token, valid or not.")
    .body(body)
    .ok(
        200,
        json_ok(
            d,
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .max_properties(Some(0))
                .build()
                .into(),
            "`{}`",
        ),
    )
    .fails(d, 400, &["malformed_request", "unsupported_media_type"])
    .fails(d, 413, &["payload_too_large"])
    .fails(d, 503, &store);
    d.add("/v1/revoke", HttpMethod::Post, op);

    // API tokens.
    let created = d.schema::<CreatedApiToken>();
    let body = json_body::<NewApiToken>(d, Media::Json, true);
    let op = Op::new(
        "create_api_token",
        "api-tokens",
        "Create an API token",
        unsafe_session,
    )
    .describe("Needs a recent authentication. The token is in this answer only.")
    .body(body)
    .ok(201, json_ok(d, created, "The new token, shown once."))
    .fails(d, 400, &["malformed_request"])
    .session_refused(d, &[])
    .fails(
        d,
        403,
        &[
            "cross_origin_request",
            "csrf_token_invalid",
            "step_up_required",
        ],
    )
    .body_refusals(d, &["invalid_name", "invalid_expiry"])
    .fails(d, 503, &store);
    d.add("/v1/api-tokens", HttpMethod::Post, op);
    let tokens = d.schema::<ApiTokenList>();
    let op = Op::new(
        "list_api_tokens",
        "api-tokens",
        "My API tokens",
        safe_session,
    )
    .ok(200, json_ok(d, tokens, "Newest first, never the secret."))
    .session_refused(d, &[])
    .fails(d, 503, &store);
    d.add("/v1/api-tokens", HttpMethod::Get, op);
    let op = Op::new(
        "revoke_api_token",
        "api-tokens",
        "Revoke an API token",
        unsafe_session,
    )
    .path_id("The API token's id.")
    .ok(204, empty_ok("Revoked (`revoked_by_user`)."))
    .fails(d, 400, &["malformed_request"])
    .session_refused(d, &[])
    .fails(d, 403, &csrf)
    .fails(d, 404, &["not_found"])
    .fails(d, 503, &store);
    d.add("/v1/api-tokens/{id}", HttpMethod::Delete, op);

    // Admin.
    let admin = ["admin_unauthorized"];
    let created = d.schema::<CreatedUser>();
    let body = json_body::<NewUser>(d, Media::Json, true);
    let op = Op::new("create_user", "admin", "Create a user", Auth::Admin)
        .body(body)
        .ok(201, json_ok(d, created, "`{\"id\"}`"))
        .fails(d, 400, &["invalid_username", "malformed_request"])
        .fails(d, 401, &admin)
        .fails(d, 409, &["username_taken"])
        .body_refusals(d, &["weak_password"])
        .fails(d, 503, &busy);
    d.add("/v1/admin/users", HttpMethod::Post, op);
    let user = d.schema::<UserView>();
    let op = Op::new(
        "get_user",
        "admin",
        "A user's profile and roles",
        Auth::Admin,
    )
    .path_id("The user id.")
    .ok(200, json_ok(d, user.clone(), "The user."))
    .fails(d, 400, &["invalid_user_id", "malformed_request"])
    .fails(d, 401, &admin)
    .fails(d, 404, &["not_found"])
    .fails(d, 503, &store);
    d.add("/v1/admin/users/{id}", HttpMethod::Get, op);
    let body = json_body::<UserUpdate>(d, Media::Json, true);
    let op = Op::new(
        "update_user",
        "admin",
        "Change a user's profile and roles",
        Auth::Admin,
    )
    .describe("The user's sessions rotate at their next use (`privilege_changed`).")
    .path_id("The user id.")
    .body(body)
    .ok(200, json_ok(d, user, "The user, changed."))
    .fails(d, 400, &["invalid_user_id", "malformed_request"])
    .fails(d, 401, &admin)
    .fails(d, 404, &["not_found"])
    .body_refusals(d, &["invalid_profile", "invalid_roles"])
    .fails(d, 503, &store);
    d.add("/v1/admin/users/{id}", HttpMethod::Post, op);
    let body = json_body::<RevokeBody>(d, Media::Json, true);
    let revoked = d.schema::<Revoked>();
    let op = Op::new(
        "revoke_user",
        "admin",
        "End every session of a user",
        Auth::Admin,
    )
    .path_id("The user id.")
    .body(body)
    .ok(200, json_ok(d, revoked, "Every session of the user ended."))
    .fails(
        d,
        400,
        &["invalid_user_id", "invalid_reason", "malformed_request"],
    )
    .fails(d, 401, &admin)
    .fails(d, 404, &["not_found"])
    .body_refusals(d, &[])
    .fails(d, 503, &store);
    d.add("/v1/admin/users/{id}/revoke", HttpMethod::Post, op);
    let op = Op::new(
        "user_sessions",
        "admin",
        "A user's live sessions",
        Auth::Admin,
    )
    .path_id("The user id.")
    .ok(200, json_ok(d, list, "The sessions."))
    .fails(d, 400, &["invalid_user_id", "malformed_request"])
    .fails(d, 401, &admin)
    .fails(d, 404, &["not_found"])
    .fails(d, 503, &store);
    d.add("/v1/admin/users/{id}/sessions", HttpMethod::Get, op);
    let op = Op::new("admin_events", "admin", "The audit log", Auth::Admin)
        .query("user_id", "Only this user's events.")
        .query("since", "Only events at or after this RFC 3339 time.")
        .query("cursor", "The previous page's `next_cursor`.")
        .query("limit", "1 to 1000 (default 100).")
        .ok(200, json_ok(d, events, "Oldest first, paged."))
        .fails(
            d,
            400,
            &["invalid_user_id", "invalid_query", "malformed_request"],
        )
        .fails(d, 401, &admin)
        .fails(d, 503, &store);
    d.add("/v1/admin/events", HttpMethod::Get, op);
    let created = d.schema::<CreatedSession>();
    let body = json_body::<NewSession>(d, Media::Json, true);
    let op = Op::new(
        "sidecar_session",
        "admin",
        "A session for an app's user",
        Auth::Admin,
    )
    .describe("Sidecar mode: the only answer with a session token in its body.")
    .body(body)
    .ok(201, json_ok(d, created, "The session and its token."))
    .fails(d, 400, &["invalid_user_id", "malformed_request"])
    .fails(d, 401, &admin)
    .fails(d, 409, &["conflict", "session_limit_reached"])
    .body_refusals(d, &[])
    .fails(d, 503, &store);
    d.add("/v1/admin/sessions", HttpMethod::Post, op);

    let Doc {
        paths,
        components,
        schemas,
    } = doc;
    let components = schemas
        .into_iter()
        .fold(components, |c, (name, schema)| c.schema(name, schema))
        .security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-sg_session",
                "The session cookie of the browser flow.",
            ))),
        )
        .security_scheme(
            "csrf_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "The session's `csrf_token`, with the cookie on state-changing requests.",
            ))),
        )
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token (`sgs_…`), an access token (a JWT from /v1/token) or, \
                         for forward-auth and logout, a personal API token (`sga_…`) or a \
                         refresh token (`sgr_…`).",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The configured `admin_token`."))
                    .build(),
            ),
        )
        .security_scheme(
            "introspection",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("One of the configured `introspection_tokens`."))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("sessionguard")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The JSON API of sessionguard, a session authority. Every error is an RFC \
                     9457 problem document with a stable `code` (the token endpoint and RFC \
                     7009 revocation answer RFC 6749 §5.2 errors, with the same `code`). The \
                     HTML pages (`/login`, `/account`, `/logout`, `/static/…`) are for \
                     browsers and are not described here.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .tags(Some(
            [
                ("sessions", "Sessions of the cookie and bearer flows."),
                (
                    "tokens",
                    "OAuth-style endpoints: token grants, introspection, revocation, keys.",
                ),
                ("api-tokens", "Personal API tokens."),
                ("forward-auth", "The endpoint reverse proxies ask."),
                ("admin", "The admin API (admin token)."),
                (
                    "operations",
                    "Health, readiness, metrics and this document.",
                ),
            ]
            .map(|(name, what)| {
                let mut tag = Tag::new(name);
                tag.description = Some(what.to_owned());
                tag
            }),
        ))
        .build()
}

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Put => "put",
        HttpMethod::Patch => "patch",
        HttpMethod::Delete => "delete",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_document_is_openapi_3_1_and_refers_only_to_known_schemas() {
        let v = serde_json::to_value(document()).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        let text = v.to_string();
        let schemas = v["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
        assert_eq!(
            v["paths"]["/v1/login"]["post"]["responses"]["401"]["content"]["application/problem+json"]
                ["schema"]["allOf"][1]["properties"]["code"]["enum"],
            json!(["invalid_credentials"])
        );
    }

    #[test]
    fn session_refusals_list_every_reason() {
        let codes = session_codes();
        assert_eq!(codes.len(), Reason::ALL.len());
        assert_eq!(codes[0], "invalid_token");
        assert!(codes.contains(&"displaced"));
    }
}
