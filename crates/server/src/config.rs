//! Configuration: a TOML file, overridden by environment variables, overridden by
//! command-line flags, turned into a validated [`Config`].
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "sessionguard-data"
//! public_origin = "http://127.0.0.1:8080"  # the trusted Origin for browser requests
//! admin_token = "..."                      # or SESSIONGUARD_ADMIN_TOKEN
//! issuer = "http://127.0.0.1:8080"         # `iss` of access tokens; default public_origin
//! audience = "http://127.0.0.1:8080"       # `aud` of access tokens; default public_origin
//! introspection_tokens = ["..."]           # resource servers allowed to call /v1/introspect
//! [policy]
//! idle_timeout = "30m"
//! absolute_timeout = "12h"
//! tombstone_retention = "1h"
//! access_token_ttl = "5m"
//! refresh_reuse_grace = "5s"               # "0s" turns the grace window off
//! api_token_max_ttl = "90d"
//! revoke_api_tokens_on_password_change = true
//! [keys]
//! algorithm = "EdDSA"                      # or "ES256"
//! rotation_period = "30d"                  # at least 1h
//! ```
//!
//! Environment: `SESSIONGUARD_LISTEN`, `SESSIONGUARD_DATA_DIR`,
//! `SESSIONGUARD_PUBLIC_ORIGIN`, `SESSIONGUARD_ADMIN_TOKEN`,
//! `SESSIONGUARD_IDLE_TIMEOUT`, `SESSIONGUARD_ABSOLUTE_TIMEOUT`. Durations are
//! human-readable (`90s`, `15m`, `12h`). Unknown keys are errors, and every error
//! names the key it is about.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sessionguard_core::policy::MAX_TIMEOUT;
use sessionguard_core::{Policy, PolicyError, TokenId};
use sessionguard_jwt::Algorithm;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A validated configuration.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The folder of the embedded store. Default `sessionguard-data`.
    pub data_dir: PathBuf,
    /// The origin browsers use to reach the service (`scheme://host[:port]`,
    /// normalised: lower case, default port omitted). Requests whose `Origin` is
    /// anything else are refused as cross-site. Default `http://<listen>`.
    pub public_origin: String,
    /// The admin API's bearer token. `None` disables the admin API.
    pub admin_token: Option<AdminToken>,
    /// The `iss` of access tokens, and the only issuer accepted when verifying
    /// them. Default: `public_origin`.
    pub issuer: String,
    /// The `aud` of access tokens, and the only audience accepted when verifying
    /// them. Default: `public_origin`.
    pub audience: String,
    /// The access tokens' signing keys.
    pub keys: KeysConfig,
    /// Bearer tokens of resource servers allowed to call `POST /v1/introspect`
    /// (the admin token may too). Empty by default.
    pub introspection_tokens: Vec<IntrospectionToken>,
    /// Session timeouts and token lifetimes.
    pub policy: Policy,
}

/// The `[keys]` table: how access tokens are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeysConfig {
    /// The algorithm of new keys: `EdDSA` (default) or `ES256`. A key keeps the
    /// algorithm it was made with.
    pub algorithm: Algorithm,
    /// The active key is replaced by a new one once it is this old (the old one
    /// stays published until its tokens have expired). Default 30 days; at
    /// least 1 hour.
    pub rotation_period: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            algorithm: Algorithm::EdDSA,
            rotation_period: Duration::from_secs(30 * 86_400),
        }
    }
}

/// The shortest accepted `keys.rotation_period`.
pub const MIN_ROTATION_PERIOD: Duration = Duration::from_secs(3600);

/// The longest accepted `issuer` or `audience`, in bytes.
pub const MAX_IDENTIFIER_LEN: usize = 255;

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("public_origin", &self.public_origin)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys)
            .field("introspection_tokens", &self.introspection_tokens)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The admin API's bearer token: a secret. Zeroized on drop, redacted in `Debug`,
/// compared in constant time.
#[derive(Clone)]
pub struct AdminToken(Zeroizing<String>);

impl AdminToken {
    /// Shortest accepted token, in characters.
    pub const MIN_LEN: usize = 32;

    /// Validates a configured token: at least [`AdminToken::MIN_LEN`] characters of
    /// visible ASCII (it travels in an HTTP header).
    pub fn new(token: String) -> Result<Self, &'static str> {
        let token = Zeroizing::new(token);
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII characters without spaces");
        }
        if token.len() < Self::MIN_LEN {
            return Err("must be at least 32 characters");
        }
        Ok(AdminToken(token))
    }

    /// A fresh random token (44 characters, 256 bits from the OS CSPRNG).
    pub fn generate() -> Self {
        AdminToken(Zeroizing::new(format!(
            "{}{}",
            TokenId::random(),
            TokenId::random()
        )))
    }

    /// Whether `presented` is this token, in time independent of where they differ
    /// (the length of the configured token is not treated as secret).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// The token's text, to show its owner once (demo mode).
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// A resource server's credential for `POST /v1/introspect`: a secret, with the
/// same rules and protections as [`AdminToken`] (at least 32 visible ASCII
/// characters, zeroized on drop, redacted in `Debug`, compared in constant time).
#[derive(Clone)]
pub struct IntrospectionToken(AdminToken);

impl IntrospectionToken {
    /// Validates a configured token like [`AdminToken::new`].
    pub fn new(token: String) -> Result<Self, &'static str> {
        AdminToken::new(token).map(IntrospectionToken)
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.matches(presented)
    }
}

impl fmt::Debug for IntrospectionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IntrospectionToken(<redacted>)")
    }
}

/// Values given on the command line; they override everything else.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl Overrides {
    /// Overrides from the two flags.
    pub fn new(listen: Option<String>, data_dir: Option<PathBuf>) -> Self {
        Overrides { listen, data_dir }
    }
}

/// Why a configuration was refused. Each message is one line and names the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{}line {line}: {message}", .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Syntax {
        /// The file, if the text came from one.
        path: Option<PathBuf>,
        /// 1-based line of the problem.
        line: usize,
        /// The parser's message (without the quoted source line, which could hold a
        /// secret).
        message: String,
    },
    /// A value is present but unusable.
    #[error("{key}{}: {problem}", .origin.suffix())]
    Invalid {
        /// The configuration key, e.g. `policy.idle_timeout`.
        key: &'static str,
        /// What is wrong.
        problem: String,
        /// Where the value came from.
        origin: Origin,
    },
}

/// Where a configuration value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The default or the TOML file.
    File,
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl Origin {
    fn suffix(self) -> String {
        match self {
            Origin::File => String::new(),
            Origin::Env(var) => format!(" (from {var})"),
            Origin::Flag(flag) => format!(" (from {flag})"),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    public_origin: Option<String>,
    admin_token: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    introspection_tokens: Option<Vec<String>>,
    #[serde(default)]
    policy: FilePolicy,
    #[serde(default)]
    keys: FileKeys,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    idle_timeout: Option<String>,
    absolute_timeout: Option<String>,
    tombstone_retention: Option<String>,
    access_token_ttl: Option<String>,
    refresh_reuse_grace: Option<String>,
    api_token_max_ttl: Option<String>,
    revoke_api_tokens_on_password_change: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    algorithm: Option<String>,
    rotation_period: Option<String>,
}

/// A raw value and where it came from.
type Sourced<T> = Option<(T, Origin)>;

/// Reads an environment variable for the configuration. Non-UTF-8 values are
/// replaced lossily, so that validation refuses them naming the variable.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
}

impl Config {
    /// Loads the configuration from an optional TOML file, the environment (looked
    /// up through `env`, usually [`process_env`]) and the flags.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Some((text, path))
            }
            None => None,
        };
        let parsed = match &text {
            Some((text, path)) => parse_toml(text, Some(path))?,
            None => FileConfig::default(),
        };
        Self::build(parsed, env, flags)
    }

    /// Like [`Config::load`] with the file's text given directly.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        Self::build(parse_toml(text, None)?, env, flags)
    }

    fn build(
        file: FileConfig,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let layer = |file_value: Option<String>, var: &'static str| -> Sourced<String> {
            match env(var) {
                Some(v) => Some((v, Origin::Env(var))),
                None => file_value.map(|v| (v, Origin::File)),
            }
        };

        let listen_raw = match &flags.listen {
            Some(v) => Some((v.clone(), Origin::Flag("--listen"))),
            None => layer(file.listen, "SESSIONGUARD_LISTEN"),
        };
        let listen = match listen_raw {
            Some((v, origin)) => v.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                key: "listen",
                problem: format!("invalid socket address {v:?} (expected IP:PORT)"),
                origin,
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };

        let data_dir = match &flags.data_dir {
            Some(d) => d.clone(),
            None => env("SESSIONGUARD_DATA_DIR")
                .map(PathBuf::from)
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("sessionguard-data")),
        };

        let public_origin = match layer(file.public_origin, "SESSIONGUARD_PUBLIC_ORIGIN") {
            Some((v, origin)) => normalise_origin(&v).map_err(|problem| ConfigError::Invalid {
                key: "public_origin",
                problem: format!("{problem} (got {v:?})"),
                origin,
            })?,
            None => format!("http://{listen}"),
        };

        let admin_token = match layer(file.admin_token, "SESSIONGUARD_ADMIN_TOKEN") {
            // The value is a secret: it is never echoed in the error.
            Some((v, origin)) => {
                Some(AdminToken::new(v).map_err(|problem| ConfigError::Invalid {
                    key: "admin_token",
                    problem: problem.to_owned(),
                    origin,
                })?)
            }
            None => None,
        };

        let file_only = |v: Option<String>| v.map(|v| (v, Origin::File));
        let issuer = match file.issuer {
            Some(v) => identifier("issuer", v, true)?,
            None => public_origin.clone(),
        };
        let audience = match file.audience {
            Some(v) => identifier("audience", v, false)?,
            None => public_origin.clone(),
        };
        let introspection_tokens = file
            .introspection_tokens
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            // The values are secrets: an error names the position, never the value.
            .map(|(i, v)| {
                IntrospectionToken::new(v).map_err(|problem| ConfigError::Invalid {
                    key: "introspection_tokens",
                    problem: format!("entry {}: {problem}", i + 1),
                    origin: Origin::File,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut keys = KeysConfig::default();
        if let Some(v) = file.keys.algorithm {
            keys.algorithm = v.parse().map_err(|_| ConfigError::Invalid {
                key: "keys.algorithm",
                problem: format!("must be \"EdDSA\" or \"ES256\" (got {v:?})"),
                origin: Origin::File,
            })?;
        }
        if let Some(v) = file.keys.rotation_period {
            let period = parse_duration("keys.rotation_period", &v, Origin::File)?;
            if !(MIN_ROTATION_PERIOD..=MAX_TIMEOUT).contains(&period) {
                return Err(ConfigError::Invalid {
                    key: "keys.rotation_period",
                    problem: "must be between 1h and 10 years".to_owned(),
                    origin: Origin::File,
                });
            }
            keys.rotation_period = period;
        }

        let mut policy = Policy::default();
        let durations = [
            (
                "policy.idle_timeout",
                layer(file.policy.idle_timeout, "SESSIONGUARD_IDLE_TIMEOUT"),
                &mut policy.idle_timeout,
            ),
            (
                "policy.absolute_timeout",
                layer(
                    file.policy.absolute_timeout,
                    "SESSIONGUARD_ABSOLUTE_TIMEOUT",
                ),
                &mut policy.absolute_timeout,
            ),
            (
                "policy.tombstone_retention",
                file_only(file.policy.tombstone_retention),
                &mut policy.tombstone_retention,
            ),
            (
                "policy.access_token_ttl",
                file_only(file.policy.access_token_ttl),
                &mut policy.access_token_ttl,
            ),
            (
                "policy.refresh_reuse_grace",
                file_only(file.policy.refresh_reuse_grace),
                &mut policy.refresh_reuse_grace,
            ),
            (
                "policy.api_token_max_ttl",
                file_only(file.policy.api_token_max_ttl),
                &mut policy.api_token_max_ttl,
            ),
        ];
        for (key, raw, slot) in durations {
            if let Some((v, origin)) = raw {
                *slot = parse_duration(key, &v, origin)?;
            }
        }
        if let Some(v) = file.policy.revoke_api_tokens_on_password_change {
            policy.revoke_api_tokens_on_password_change = v;
        }
        policy.validate().map_err(policy_error)?;

        Ok(Config {
            listen,
            data_dir,
            public_origin,
            admin_token,
            issuer,
            audience,
            keys,
            introspection_tokens,
            policy,
        })
    }
}

fn parse_toml(text: &str, path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start.min(text.len()));
        let line = text[..start].matches('\n').count() + 1;
        // One line, and only the parser's message: its default rendering quotes the
        // source line, which could hold the admin token.
        let message = e.message().trim().replace('\n', "; ");
        let message = match key_at(text, line) {
            Some(key) => format!("{key}: {message}"),
            None => message,
        };
        ConfigError::Syntax {
            path: path.map(Path::to_owned),
            line,
            message,
        }
    })
}

/// The dotted key assigned on 1-based `line` (`policy.idle_timeout`), if the line
/// is a simple `key = value` (best effort, for error messages).
fn key_at(text: &str, line: usize) -> Option<String> {
    let mut table = None;
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if i + 1 == line {
            let (key, _) = l.split_once('=')?;
            let key = key.trim();
            let simple = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            return simple.then(|| match table {
                Some(t) => format!("{t}.{key}"),
                None => key.to_owned(),
            });
        }
        if let Some(header) = l.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            table = Some(header.trim());
        }
    }
    None
}

fn parse_duration(key: &'static str, v: &str, origin: Origin) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v.trim()).map_err(|_| ConfigError::Invalid {
        key,
        problem: format!("invalid duration {v:?}"),
        origin,
    })
}

/// Validates an `issuer` (`url`: an absolute URL, `scheme://...`) or `audience`:
/// 1 to [`MAX_IDENTIFIER_LEN`] bytes of visible ASCII. Tokens carry it verbatim
/// and verifiers compare it exactly, so nothing is normalised.
fn identifier(key: &'static str, v: String, url: bool) -> Result<String, ConfigError> {
    let problem = if v.is_empty() || v.len() > MAX_IDENTIFIER_LEN {
        Some("must be 1 to 255 characters")
    } else if !v.bytes().all(|b| b.is_ascii_graphic()) {
        Some("must be visible ASCII characters without spaces")
    } else if url
        && !v
            .split_once("://")
            .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty())
    {
        Some("must be an absolute URL (scheme://host...)")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::Invalid {
            key,
            problem: format!("{problem} (got {v:?})"),
            origin: Origin::File,
        }),
        None => Ok(v),
    }
}

fn policy_error(e: PolicyError) -> ConfigError {
    let key = match e.key {
        "idle_timeout" => "policy.idle_timeout",
        "absolute_timeout" => "policy.absolute_timeout",
        "tombstone_retention" => "policy.tombstone_retention",
        "access_token_ttl" => "policy.access_token_ttl",
        "refresh_reuse_grace" => "policy.refresh_reuse_grace",
        "api_token_max_ttl" => "policy.api_token_max_ttl",
        _ => "policy",
    };
    ConfigError::Invalid {
        key,
        problem: e.problem.to_owned(),
        origin: Origin::File,
    }
}

/// Checks that `s` is `scheme://host[:port]` (http or https, nothing after) and
/// returns it the way browsers serialise an `Origin`: lower case, default port
/// omitted.
fn normalise_origin(s: &str) -> Result<String, &'static str> {
    const SHAPE: &str = "must be scheme://host[:port] with scheme http or https and no path";
    let (scheme, rest) = s.split_once("://").ok_or(SHAPE)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(SHAPE),
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\']) {
        return Err(SHAPE);
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or(SHAPE)?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(SHAPE);
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(SHAPE)?),
        };
        (format!("[{addr}]"), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    let host = host.to_ascii_lowercase();
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return Err(SHAPE);
    }
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(p) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(SHAPE)?;
            if port == default_port {
                Ok(format!("{scheme}://{host}"))
            } else {
                Ok(format!("{scheme}://{host}:{port}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_like_browsers_send_them() {
        for (given, want) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("HTTPS://App.Example", "https://app.example"),
            ("https://app.example:443", "https://app.example"),
            ("http://app.example:80", "http://app.example"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[::1]", "http://[::1]"),
        ] {
            assert_eq!(normalise_origin(given).unwrap(), want, "{given}");
        }
    }

    #[test]
    fn anything_but_scheme_host_port_is_refused() {
        for bad in [
            "app.example",
            "ftp://app.example",
            "https://",
            "https://app.example/",
            "https://app.example/path",
            "https://user@app.example",
            "https://app.example:0",
            "https://app.example:99999",
            "https://app.example:+80",
            "https://app.example:",
            "https://app_example",
            "http://[::1",
            "http://[nope]:80",
            "http://[::1]x",
            "null",
        ] {
            assert!(normalise_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_tokens_are_long_visible_ascii_and_compared_exactly() {
        assert!(AdminToken::new("a".repeat(31)).is_err());
        assert!(AdminToken::new(format!("{} ", "a".repeat(32))).is_err());
        assert!(AdminToken::new("é".repeat(20)).is_err());
        let t = AdminToken::new("a".repeat(32)).unwrap();
        assert!(t.matches("a".repeat(32).as_bytes()));
        assert!(!t.matches("a".repeat(33).as_bytes()));
        assert!(!t.matches(b""));
        let g = AdminToken::generate();
        assert!(g.reveal().len() >= AdminToken::MIN_LEN);
        assert!(AdminToken::new(g.reveal().to_owned()).is_ok());
        assert_eq!(format!("{g:?}"), "AdminToken(<redacted>)");
    }
}
