//! `Config::from_toml` on arbitrary text, with an empty environment and no flags.
//!
//! Invariants:
//! - nothing panics;
//! - every error message is one line (no `\n` or `\r`);
//! - neither an error message nor a loaded configuration's `Debug` contains the
//!   configured admin token (or an introspection token) when one was given and
//!   that string appears nowhere else in the file.
//!
//! The first byte picks a mode: `0` inserts a line `admin_token = "<SECRET>"`
//! (a valid token) at the first `\0` of the rest, or at its start, so that the
//! secret meets every kind of error around it; anything else uses the rest as
//! the whole file. Invalid UTF-8 is replaced lossily.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionguard_server::{Config, Overrides};
use toml::{Table, Value};

/// A valid admin token (at least 32 visible ASCII characters) that no key name
/// or message could contain by chance.
const SECRET: &str = "Zq7SECRETadmintoken-4f0c2b1e9a8d7c6b5a43";

fuzz_target!(|data: &[u8]| {
    let (inserted, rest) = match data.split_first() {
        Some((0, rest)) => (true, rest),
        Some((_, rest)) => (false, rest),
        None => (false, data),
    };
    let rest = String::from_utf8_lossy(rest);
    let text = if inserted {
        let (before, after) = rest.split_once('\0').unwrap_or(("", &rest));
        format!("{before}\nadmin_token = \"{SECRET}\"\n{after}")
    } else {
        rest.into_owned()
    };

    let result = Config::from_toml(&text, |_| None, &Overrides::default());
    let secrets = secrets(&text, inserted);
    match result {
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.contains(['\n', '\r']),
                "an error message of more than one line: {message:?}"
            );
            for secret in &secrets {
                assert!(
                    !message.contains(secret.as_str()),
                    "an error message quotes a secret token: {message:?}"
                );
            }
        }
        Ok(config) => {
            let debug = format!("{config:?}");
            for secret in &secrets {
                assert!(
                    !debug.contains(secret.as_str()),
                    "Debug shows a secret token"
                );
            }
        }
    }
});

/// The secret tokens of this file that must never be shown: the admin token and
/// the introspection tokens, each only if it is at least 16 characters and no
/// other key or string of the file contains it (else a message may quote that
/// other string). For a file that is not TOML, only the inserted secret, if it
/// appears once.
fn secrets(text: &str, inserted: bool) -> Vec<String> {
    let Ok(table) = text.parse::<Table>() else {
        return if inserted && text.matches(SECRET).count() == 1 {
            vec![SECRET.to_owned()]
        } else {
            Vec::new()
        };
    };
    let mut candidates = Vec::new();
    if let Some(Value::String(admin)) = table.get("admin_token") {
        candidates.push(admin.clone());
    }
    if let Some(Value::Array(tokens)) = table.get("introspection_tokens") {
        candidates.extend(tokens.iter().filter_map(|t| t.as_str().map(str::to_owned)));
    }
    let mut strings = Vec::new();
    collect_strings(&table, &mut strings);
    candidates
        .into_iter()
        .filter(|c| c.len() >= 16)
        .filter(|c| strings.iter().filter(|s| s.contains(c.as_str())).count() == 1)
        .collect()
}

/// Every key and value of the table as text, nested ones included.
fn collect_strings(table: &Table, out: &mut Vec<String>) {
    for (key, value) in table {
        out.push(key.clone());
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => {
                for item in items {
                    let mut wrapper = Table::new();
                    wrapper.insert(String::new(), item.clone());
                    collect_strings(&wrapper, out);
                }
            }
            Value::Table(t) => collect_strings(t, out),
            other => out.push(other.to_string()),
        }
    }
}
