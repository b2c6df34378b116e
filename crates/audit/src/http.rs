//! The auditor's HTTP client: one target, no redirects followed, no cookie
//! store (see [`crate::cookie`]), every request paced by `--rate`, every
//! exchange kept for the evidence.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cookie::SetCookie;
use crate::redact::Redactor;

/// How long one request may take before the target counts as unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a response body kept (and searched).
pub const BODY_LIMIT: usize = 256 * 1024;

/// A request body (its values may be secrets: `Debug` shows the kind only).
#[derive(Clone)]
pub enum Body {
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, String)>),
    /// `application/json`.
    Json(serde_json::Value),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Body::Form(_) => "Body::Form(..)",
            Body::Json(_) => "Body::Json(..)",
        })
    }
}

/// A request to send.
#[derive(Clone)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path and query, starting with '/'.
    pub path: String,
    /// Headers (Cookie and Authorization included when the caller sets them).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Body>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Request({} {})", self.method, self.path)
    }
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A request and its response.
#[derive(Clone)]
pub struct Exchange {
    /// The request sent.
    pub request: Request,
    /// Response status.
    pub status: u16,
    /// Response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The parsed `Set-Cookie` headers.
    pub set_cookies: Vec<SetCookie>,
    /// Response body (lossy UTF-8, at most [`BODY_LIMIT`] bytes).
    pub body: String,
    /// When the response arrived.
    pub at: Instant,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Exchange({} {} -> {})",
            self.request.method, self.request.path, self.status
        )
    }
}

impl Exchange {
    /// The first header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.body.trim()).ok()
    }

    /// The `Set-Cookie` of cookie `name`, if the response set one.
    pub fn set_cookie(&self, name: &str) -> Option<&SetCookie> {
        self.set_cookies.iter().rev().find(|c| c.name == name)
    }

    /// The request line and headers the auditor sent, redacted.
    pub fn describe_request(&self, r: &Redactor) -> String {
        let req = &self.request;
        let mut s = format!("{} {}", req.method, req.path);
        for (k, v) in &req.headers {
            let k_lower = k.to_ascii_lowercase();
            if k_lower == "user-agent" || k_lower == "accept" {
                continue;
            }
            s.push_str(&format!("\n  {k}: {}", r.redact(v)));
        }
        match &req.body {
            Some(Body::Form(fields)) => {
                let body = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&");
                s.push_str(&format!("\n  (form) {}", r.redact(&body)));
            }
            Some(Body::Json(v)) => s.push_str(&format!("\n  (json) {}", r.redact(&v.to_string()))),
            None => {}
        }
        s
    }

    /// The status, the headers that matter for sessions and the start of the
    /// body, redacted.
    pub fn describe_response(&self, r: &Redactor) -> String {
        let mut s = format!("{}", self.status);
        for (k, v) in &self.headers {
            let shown = matches!(
                k.as_str(),
                "location" | "www-authenticate" | "content-type" | "cache-control"
            );
            if shown {
                s.push_str(&format!("\n  {k}: {}", r.redact(v)));
            }
        }
        for c in &self.set_cookies {
            let value = if c.value.is_empty() {
                String::new()
            } else {
                r.redact(&c.value)
            };
            let value = if value == c.value && !value.is_empty() {
                "[redacted]".to_owned()
            } else {
                value
            };
            s.push_str(&format!(
                "\n  set-cookie: {}={}; {}",
                c.name,
                value,
                c.attributes()
            ));
        }
        let body: String = self.body.split_whitespace().collect::<Vec<_>>().join(" ");
        if !body.is_empty() {
            let red = r.redact(&body);
            let cut: String = red.chars().take(300).collect();
            let more = if red.chars().count() > 300 {
                " …"
            } else {
                ""
            };
            s.push_str(&format!("\n  body: {cut}{more}"));
        }
        s
    }
}

/// Sending failed: the target did not answer.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: {message}")]
pub struct SendError {
    method: String,
    path: String,
    message: String,
}

/// The HTTP client of one audit.
#[derive(Debug)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    interval: Option<Duration>,
    next: Mutex<Option<Instant>>,
    sent: Mutex<u64>,
}

impl Http {
    /// A client for `base` (scheme, host, port), sending at most `rate`
    /// requests per second when given.
    pub fn new(base: &str, rate: Option<f64>) -> Result<Http, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("sessionguard-audit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Http {
            client,
            base: base.to_owned(),
            interval: rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next: Mutex::new(None),
            sent: Mutex::new(0),
        })
    }

    /// How many requests were sent.
    pub fn sent(&self) -> u64 {
        *self.sent.lock().expect("not poisoned")
    }

    /// The minimum time between two requests (`--rate`).
    pub fn interval(&self) -> Duration {
        self.interval.unwrap_or(Duration::ZERO)
    }

    async fn pace(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let wait = {
            let mut next = self.next.lock().expect("not poisoned");
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + interval);
            at.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends `req` to the target (an absolute `http(s)://` path goes there
    /// instead, for pages another origin serves).
    pub async fn send(&self, req: Request) -> Result<Exchange, SendError> {
        self.pace().await;
        *self.sent.lock().expect("not poisoned") += 1;
        let url = if req.path.starts_with("http://") || req.path.starts_with("https://") {
            req.path.clone()
        } else {
            format!("{}{}", self.base, req.path)
        };
        let fail = |message: String| SendError {
            method: req.method.clone(),
            path: req.path.clone(),
            message,
        };
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| fail("not an HTTP method".into()))?;
        let mut b = self.client.request(method, &url);
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        match &req.body {
            Some(Body::Form(fields)) => {
                let body = fields
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}={}",
                            crate::redact::percent_encode(k),
                            crate::redact::percent_encode(v)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("&");
                b = b
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body);
            }
            Some(Body::Json(v)) => {
                b = b
                    .header("content-type", "application/json")
                    .body(v.to_string());
            }
            None => {}
        }
        let res = b.send().await.map_err(|e| fail(describe(&e)))?;
        let status = res.status().as_u16();
        let mut headers = Vec::new();
        let mut set_cookies = Vec::new();
        for (k, v) in res.headers() {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            if k == reqwest::header::SET_COOKIE {
                set_cookies.extend(SetCookie::parse(&v));
            }
            headers.push((k.as_str().to_owned(), v));
        }
        let mut body = Vec::new();
        let mut res = res;
        while let Some(chunk) = res.chunk().await.map_err(|e| fail(describe(&e)))? {
            let room = BODY_LIMIT.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok(Exchange {
            request: req,
            status,
            headers,
            set_cookies,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        })
    }
}

/// The cause of a transport error, without the URL's query.
fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the exchange failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}
