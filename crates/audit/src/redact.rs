//! Redaction: no credential, cookie value or token reaches a report.
//!
//! Every secret the auditor sends or receives is registered here under a stable
//! label (`[session 3]`, `[refresh token 1]`, `[password]`), so that evidence
//! still shows *that* an identifier stayed the same across login, or came back
//! after logout, without showing the identifier. On top of the known values,
//! three patterns catch what was never registered: anything shaped like a JWT,
//! the value of any JSON member or form field whose name speaks of a token,
//! password, secret, key, session or CSRF, and any long run of letters and
//! digits.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

/// What a secret is, for its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The username (replaced as a whole word).
    Username,
    /// The current password.
    Password,
    /// The password the auditor changes to.
    NewPassword,
    /// A session identifier (cookie value or bearer token).
    Session,
    /// A refresh token.
    Refresh,
    /// A personal API token.
    ApiToken,
    /// Another cookie's value, or an anti-CSRF token.
    Other,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Username => "username",
            Kind::Password => "password",
            Kind::NewPassword => "new password",
            Kind::Session => "session",
            Kind::Refresh => "refresh token",
            Kind::ApiToken => "API token",
            Kind::Other => "secret",
        }
    }
}

/// Known secrets and their labels.
#[derive(Default)]
pub struct Redactor {
    labels: HashMap<String, String>,
    counts: HashMap<Kind, usize>,
    // Longest first, so a secret containing another is replaced whole.
    ordered: Vec<(String, String)>,
    username: Option<(Regex, String)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("known", &self.labels.len())
            .finish()
    }
}

static JWT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*").expect("valid regex")
});
static NAMED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)("[\w.-]*(?:token|passw|secret|key|session|csrf|sid|auth|jwt|cookie)[\w.-]*"\s*:\s*")([^"]*)(")|([\w.-]*(?:token|passw|secret|key|session|csrf|sid|auth|jwt)[\w.-]*=)([^&\s;"'<>]+)|((?:name|id)="[\w.-]*(?:token|csrf|passw|secret|key)[\w.-]*"[^>]*?value=")([^"]*)(")"#,
    )
    .expect("valid regex")
});
static LONG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9_+%=-]{20,}").expect("valid regex"));

impl Redactor {
    /// A redactor that knows nothing yet.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Registers the account's username: replaced as a whole word.
    pub fn username(&mut self, name: &str) {
        if name.is_empty() {
            return;
        }
        let re = Regex::new(&format!(r"\b{}\b", regex::escape(name))).expect("escaped");
        self.username = Some((re, "[username]".to_owned()));
    }

    /// Registers a secret; returns its label (the same label for the same value).
    pub fn register(&mut self, value: &str, kind: Kind) -> String {
        if let Some(l) = self.labels.get(value) {
            return l.clone();
        }
        let label = match kind {
            Kind::Password => "[password]".to_owned(),
            Kind::NewPassword => "[new password]".to_owned(),
            Kind::Username => "[username]".to_owned(),
            k => {
                let n = self.counts.entry(k).or_insert(0);
                *n += 1;
                format!("[{} {}]", k.word(), n)
            }
        };
        if value.len() < 3 {
            return label;
        }
        self.labels.insert(value.to_owned(), label.clone());
        let mut forms = vec![value.to_owned()];
        let encoded = percent_encode(value);
        if encoded != value {
            forms.push(encoded);
        }
        for f in forms {
            let at = self.ordered.partition_point(|(v, _)| v.len() >= f.len());
            self.ordered.insert(at, (f, label.clone()));
        }
        label
    }

    /// The label of a known value, registering it as `kind` if new.
    pub fn label(&mut self, value: &str, kind: Kind) -> String {
        self.register(value, kind)
    }

    /// `text` with every known secret replaced by its label and every
    /// secret-shaped value replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (v, label) in &self.ordered {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), label);
            }
        }
        if let Some((re, label)) = &self.username {
            out = re.replace_all(&out, label.as_str()).into_owned();
        }
        out = JWT.replace_all(&out, "[jwt]").into_owned();
        out = NAMED
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let keep = |i: usize| c.get(i).map_or("", |m| m.as_str());
                let value = |i: usize| c.get(i).map_or("", |m| m.as_str());
                let hide = |v: &str| {
                    // A label already put in place ("[session 2]") stays.
                    if v.is_empty() || v.starts_with('[') {
                        v.to_owned()
                    } else {
                        "[redacted]".to_owned()
                    }
                };
                if c.get(1).is_some() {
                    format!("{}{}{}", keep(1), hide(value(2)), keep(3))
                } else if c.get(4).is_some() {
                    format!("{}{}", keep(4), hide(value(5)))
                } else {
                    format!("{}{}{}", keep(6), hide(value(7)), keep(8))
                }
            })
            .into_owned();
        LONG.replace_all(&out, |c: &regex::Captures<'_>| {
            let s = &c[0];
            let digits = s.bytes().any(|b| b.is_ascii_digit());
            let letters = s.bytes().any(|b| b.is_ascii_alphabetic());
            if digits && letters {
                "[redacted]".to_owned()
            } else {
                s.to_owned()
            }
        })
        .into_owned()
    }
}

/// Percent-encodes everything but unreserved characters (as a form body would,
/// space as `+`).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_get_stable_labels() {
        let mut r = Redactor::new();
        let a = r.register("abcdef123456", Kind::Session);
        let b = r.register("zzzzzz999999", Kind::Session);
        assert_eq!(a, "[session 1]");
        assert_eq!(b, "[session 2]");
        assert_eq!(r.register("abcdef123456", Kind::Session), a);
        let t = r.redact("Cookie: sid=abcdef123456; other=zzzzzz999999");
        assert!(
            !t.contains("abcdef123456") && !t.contains("zzzzzz999999"),
            "{t}"
        );
        assert!(t.contains("sid=[session 1]"), "{t}");
        assert!(t.contains("[session 2]"), "{t}");
    }

    #[test]
    fn passwords_are_hidden_in_plain_and_encoded_form() {
        let mut r = Redactor::new();
        r.register("p@ss word!", Kind::Password);
        r.username("alice");
        let t = r.redact("username=alice&password=p%40ss+word%21 and p@ss word! alicexyz");
        assert!(!t.contains("p%40ss") && !t.contains("p@ss"), "{t}");
        assert!(t.contains("[username]") && t.contains("alicexyz"), "{t}");
    }

    #[test]
    fn unregistered_secret_shapes_are_hidden() {
        let r = Redactor::new();
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let t = r.redact(&format!(
            r#"{{"access_token":"opaque","note":"{jwt}","n":1}} csrf=abc123 x=k9f8s7d6f5g4h3j2k1l0aa <input name="csrfmiddlewaretoken" value="Zx9">"#
        ));
        assert!(!t.contains("opaque"), "{t}");
        assert!(!t.contains(jwt), "{t}");
        assert!(!t.contains("abc123"), "{t}");
        assert!(!t.contains("k9f8s7d6f5g4h3j2k1l0aa"), "{t}");
        assert!(!t.contains("Zx9"), "{t}");
        assert!(t.contains(r#""n":1"#), "{t}");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let r = Redactor::new();
        let s = "GET /v1/session/status -> 401 logged_out: The session was ended";
        assert_eq!(r.redact(s), s);
    }
}
