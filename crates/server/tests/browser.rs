//! The web pages in a real browser: the built binary on port 0, and the
//! scenarios of `tests/browser/pages.test.mjs` run by Node's test runner, which
//! drives Debian's Chromium with playwright-core (sign in, return_to, two
//! browsers of one user, password change, the concurrent-session limit, API
//! tokens, the idle-timeout warning in real time, cross-origin forms, no console
//! errors or CSP violations).
//!
//! Needs `node`, `/usr/bin/chromium` (or `SG_CHROMIUM`) and the npm packages of
//! `tests/browser` (`npm ci`); `scripts/test` installs all three. Missing, the
//! test fails and says what to install: it never skips.
//!
//! Screenshots of the login and account pages go to the target folder, or, with
//! `SESSIONGUARD_UPDATE_SCREENSHOTS=1`, to `docs/screenshots/` (the ones the
//! README shows).

#![cfg(unix)]

mod process;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bound on the whole browser run (its scenarios take about two minutes,
/// the idle-timeout one 90 seconds of it): a hung browser fails the test instead of
/// hanging it. Not a timing assertion.
const RUN_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The server's configuration: a profile with a short idle timeout for the
/// idle-warning scenario (its users are assigned to it); the rest is default.
const CONFIG: &str = r#"
[profiles.brief]
idle_timeout = "45s"
absolute_timeout = "1h"
"#;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What the run needs, or the reason it cannot run.
fn prerequisites() -> Result<PathBuf, String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("node is not installed (Debian package nodejs)".into());
    }
    let chromium = std::env::var_os("SG_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.is_file() {
        return Err(format!(
            "{} is missing (Debian package chromium)",
            chromium.display()
        ));
    }
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    if !playwright.is_file() {
        return Err(format!(
            "playwright-core is not installed: run `npm ci` in {}",
            browser_dir().display()
        ));
    }
    Ok(chromium)
}

#[test]
fn the_pages_work_in_a_real_browser() {
    let chromium = prerequisites().unwrap_or_else(|why| {
        panic!("the browser tests cannot run: {why}; ./scripts/test installs what they need")
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sessionguard.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let server = process::start_with(
        data.to_str().unwrap(),
        &["--config", config.to_str().unwrap()],
    );

    let shots = if std::env::var_os("SESSIONGUARD_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots")
    };
    for name in ["login.png", "account.png"] {
        let _ = std::fs::remove_file(shots.join(name));
    }

    let mut node = Command::new("node")
        .args(["--test", "--test-reporter=spec", "pages.test.mjs"])
        .current_dir(browser_dir())
        .env("SG_URL", format!("http://{}", server.addr))
        .env("SG_ADMIN_TOKEN", &server.admin)
        .env("SG_SCREENSHOTS", &shots)
        .env("SG_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    // Both pipes are drained while waiting, so a chatty run cannot block.
    let mut stdout = node.stdout.take().unwrap();
    let mut stderr = node.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    println!("{out}");
    eprintln!("{err}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("browser scenarios failed ({s}):\n{out}\n{err}"),
        None => panic!("browser scenarios did not finish within {RUN_LIMIT:?}:\n{out}\n{err}"),
    }

    for name in ["login.png", "account.png"] {
        let png = std::fs::read(shots.join(name))
            .unwrap_or_else(|e| panic!("no screenshot {name} in {}: {e}", shots.display()));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is not a PNG");
    }
    server.server.terminate();
}
