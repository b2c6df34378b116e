//! Cookies as the auditor keeps them.
//!
//! The auditor does not behave like a browser: it must send `Secure` and
//! `__Host-` cookies to an `http://127.0.0.1` target, plant identifiers the
//! server never issued, and replay old ones after the server cleared them. So it
//! keeps its own [`Jar`] per simulated browser, sends every cookie it holds to
//! the one target it audits, and records each `Set-Cookie` with its attributes
//! for the `cookie_attributes` check.

use std::collections::BTreeMap;
use std::fmt;

/// One `Set-Cookie` header, parsed (RFC 6265 §5.2, leniently).
#[derive(Clone, PartialEq, Eq)]
pub struct SetCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie value (a secret: never printed by `Debug`).
    pub value: String,
    /// `Secure` present.
    pub secure: bool,
    /// `HttpOnly` present.
    pub http_only: bool,
    /// `SameSite` value as written, if present.
    pub same_site: Option<String>,
    /// `Domain` value, if present.
    pub domain: Option<String>,
    /// `Path` value, if present.
    pub path: Option<String>,
    /// `Max-Age` in seconds, if present and numeric.
    pub max_age: Option<i64>,
    /// `Expires` as written, if present.
    pub expires: Option<String>,
}

impl fmt::Debug for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetCookie")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("attributes", &self.attributes())
            .finish()
    }
}

impl SetCookie {
    /// Parses a `Set-Cookie` header value; `None` without a `name=`.
    pub fn parse(header: &str) -> Option<SetCookie> {
        let mut parts = header.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let mut c = SetCookie {
            name: name.to_owned(),
            value: value.trim().trim_matches('"').to_owned(),
            secure: false,
            http_only: false,
            same_site: None,
            domain: None,
            path: None,
            max_age: None,
            expires: None,
        };
        for attr in parts {
            let (k, v) = match attr.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (attr.trim(), None),
            };
            match k.to_ascii_lowercase().as_str() {
                "secure" => c.secure = true,
                "httponly" => c.http_only = true,
                "samesite" => c.same_site = v.map(str::to_owned),
                "domain" => c.domain = v.filter(|d| !d.is_empty()).map(str::to_owned),
                "path" => c.path = v.map(str::to_owned),
                "max-age" => c.max_age = v.and_then(|v| v.parse().ok()),
                "expires" => c.expires = v.map(str::to_owned),
                _ => {}
            }
        }
        Some(c)
    }

    /// Whether this header deletes the cookie (empty value, `Max-Age` ≤ 0, or an
    /// `Expires` in the past).
    pub fn deletes(&self) -> bool {
        if self.max_age.is_some_and(|a| a <= 0) {
            return true;
        }
        if self.max_age.is_none()
            && let Some(exp) = self.expires.as_deref().and_then(parse_http_date)
            && exp < std::time::SystemTime::now()
        {
            return true;
        }
        self.value.is_empty()
    }

    /// Whether the cookie outlives the browser session (`Max-Age` or `Expires`).
    pub fn persistent(&self) -> bool {
        self.max_age.is_some() || self.expires.is_some()
    }

    /// The attributes as written, without the value: `Path=/; Secure; HttpOnly`.
    pub fn attributes(&self) -> String {
        let mut a = Vec::new();
        if let Some(p) = &self.path {
            a.push(format!("Path={p}"));
        }
        if let Some(d) = &self.domain {
            a.push(format!("Domain={d}"));
        }
        if let Some(m) = self.max_age {
            a.push(format!("Max-Age={m}"));
        }
        if let Some(e) = &self.expires {
            a.push(format!("Expires={e}"));
        }
        if self.secure {
            a.push("Secure".into());
        }
        if self.http_only {
            a.push("HttpOnly".into());
        }
        if let Some(s) = &self.same_site {
            a.push(format!("SameSite={s}"));
        }
        a.join("; ")
    }
}

/// An HTTP date (RFC 9110 IMF-fixdate, and the RFC 850 / asctime forms browsers
/// also accept, leniently), as a time.
pub fn parse_http_date(s: &str) -> Option<std::time::SystemTime> {
    // "Wed, 21 Oct 2015 07:28:00 GMT" and "Wednesday, 21-Oct-15 07:28:00 GMT".
    let s = s.trim();
    let rest = s.split_once(',').map(|(_, r)| r.trim()).unwrap_or(s);
    let mut it = rest.split([' ', '-']).filter(|p| !p.is_empty());
    let day: u32 = it.next()?.parse().ok()?;
    let month_name = it.next()?.to_ascii_lowercase();
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|x| month_name.starts_with(x))? as u32
        + 1;
    let mut year: i64 = it.next()?.parse().ok()?;
    if year < 70 {
        year += 2000;
    } else if year < 100 {
        year += 1900;
    }
    let mut hms = it.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    let days = days_from_civil(year, month, day)?;
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + sec;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The cookies of one simulated browser, by name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Jar {
    cookies: BTreeMap<String, String>,
}

impl fmt::Debug for Jar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.cookies.keys()).finish()
    }
}

impl Jar {
    /// An empty jar.
    pub fn new() -> Jar {
        Jar::default()
    }

    /// A jar holding only `name=value`.
    pub fn with(name: &str, value: &str) -> Jar {
        let mut j = Jar::new();
        j.set(name, value);
        j
    }

    /// Applies the `Set-Cookie` headers of a response.
    pub fn apply(&mut self, set: &[SetCookie]) {
        for c in set {
            if c.deletes() {
                self.cookies.remove(&c.name);
            } else {
                self.cookies.insert(c.name.clone(), c.value.clone());
            }
        }
    }

    /// Sets a cookie (to plant or replay one).
    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// A cookie's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Every (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.cookies.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The `Cookie` header for these cookies, if any.
    pub fn header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        Some(
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_case_insensitively() {
        let c = SetCookie::parse(
            "__Host-sg=abc; Path=/; secure; HTTPONLY; SameSite=Lax; Max-Age=60; Domain=.x.org",
        )
        .unwrap();
        assert_eq!(c.name, "__Host-sg");
        assert_eq!(c.value, "abc");
        assert!(c.secure && c.http_only);
        assert_eq!(c.same_site.as_deref(), Some("Lax"));
        assert_eq!(c.domain.as_deref(), Some(".x.org"));
        assert_eq!(c.max_age, Some(60));
        assert!(c.persistent());
        assert!(!c.deletes());
        assert!(!format!("{c:?}").contains("abc"));
    }

    #[test]
    fn clearing_headers_delete_and_others_replace() {
        let mut jar = Jar::with("sid", "one");
        jar.apply(&[SetCookie::parse("sid=two; Path=/").unwrap()]);
        assert_eq!(jar.get("sid"), Some("two"));
        jar.apply(&[SetCookie::parse("sid=; Max-Age=0").unwrap()]);
        assert_eq!(jar.get("sid"), None);
        jar.set("sid", "three");
        jar.apply(&[SetCookie::parse("sid=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT").unwrap()]);
        assert_eq!(jar.get("sid"), None);
        jar.apply(&[SetCookie::parse("sid=y; Expires=Fri, 01 Jan 2100 00:00:00 GMT").unwrap()]);
        assert_eq!(jar.get("sid"), Some("y"));
        assert_eq!(jar.header().as_deref(), Some("sid=y"));
    }

    #[test]
    fn http_dates_parse_in_both_common_forms() {
        let a = parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let b = parse_http_date("Wednesday, 21-Oct-15 07:28:00 GMT").unwrap();
        assert_eq!(a, b);
        let secs = a.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_445_412_480);
        assert!(parse_http_date("yesterday").is_none());
    }

    #[test]
    fn a_header_without_a_name_is_ignored() {
        assert!(SetCookie::parse("=x").is_none());
        assert!(SetCookie::parse("novalue").is_none());
    }
}
