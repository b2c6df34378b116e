//! The built binary on a real socket: the stdout contract (`sessionguard listening
//! on http://ADDR`, demo credentials), `--listen 127.0.0.1:0`, `--data-dir`, peer
//! addresses, a clean exit on SIGTERM, `sessionguard keys rotate`, and `sessionguard
//! policy check` with the matching start-up warnings.

#![cfg(unix)]

mod process;

use std::process::Command;

use process::{Server, http, startup};

#[test]
fn serves_on_port_0_prints_the_address_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--demo",
    ]);

    let admin_line = server.line();
    let admin = admin_line.strip_prefix("admin token: ").unwrap().to_owned();
    assert!(admin.len() >= 32);
    let demo_line = server.line();
    let password = demo_line
        .strip_prefix("demo user: demo / ")
        .unwrap()
        .to_owned();
    let listening = server.line();
    let addr = listening
        .strip_prefix("sessionguard listening on http://")
        .unwrap()
        .to_owned();
    assert!(!addr.ends_with(":0"), "{addr}");
    assert!(data.is_dir());
    // The data folder holds the store and the signing keys: the owner's only.
    assert_eq!(mode(&data), 0o700);

    let (status, _, body) = http(&addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"status":"ok"}"#);

    let login = format!(r#"{{"username":"demo","password":"{password}"}}"#);
    let json = ("content-type", "application/json");
    let (status, head, _) = http(
        &addr,
        "POST",
        "/v1/login",
        &[json, ("user-agent", "cli-test")],
        &login,
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: __host-sg_session=sgs_")
    );

    // The session records the socket's peer address.
    let token = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: __Host-sg_session="))
        .and_then(|v| v.split(';').next())
        .unwrap();
    let bearer = format!("Bearer {token}");
    let (status, _, body) = http(
        &addr,
        "GET",
        "/v1/sessions",
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""ip":"127.0.0.1""#), "{body}");
    assert!(body.contains(r#""user_agent":"cli-test""#), "{body}");

    // The generated admin token works.
    let admin = format!("Bearer {admin}");
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/admin/users",
        &[json, ("authorization", &admin)],
        r#"{"username":"carol","password":"a long enough password"}"#,
    );
    assert_eq!(status, 201, "{body}");

    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn users_sessions_and_revocations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let args = ["serve", "--listen", "127.0.0.1:0", "--data-dir", &data];
    let demo_args = [&args[..], &["--demo"]].concat();

    let server = Server::start(&demo_args);
    let (lines, addr) = startup(&server);
    let password = lines
        .iter()
        .find_map(|l| l.strip_prefix("demo user: demo / "))
        .unwrap()
        .to_owned();
    let login = format!(r#"{{"username":"demo","password":"{password}"}}"#);
    let (status, head, _) = http(
        &addr,
        "POST",
        "/v1/login",
        &[("content-type", "application/json")],
        &login,
    );
    assert_eq!(status, 200);
    let token = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: __Host-sg_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    assert_eq!(server.terminate(), Some(0));
    assert!(dir.path().join("sessionguard.db").is_file());

    // The demo user exists: its password is not printed again.
    let server = Server::start(&demo_args);
    let (lines, addr) = startup(&server);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("demo user: demo (exists")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains(&password)), "{lines:?}");
    let bearer = format!("Bearer {token}");
    let (status, _, body) = http(
        &addr,
        "GET",
        "/v1/session",
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = http(
        &addr,
        "POST",
        "/v1/logout",
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(status, 204);
    assert_eq!(server.terminate(), Some(0));

    let server = Server::start(&args);
    let (_, addr) = startup(&server);
    let (status, _, body) = http(
        &addr,
        "GET",
        "/v1/session",
        &[("authorization", &bearer)],
        "",
    );
    assert_eq!(status, 401);
    assert!(body.contains(r#""code":"logged_out""#), "{body}");
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_1_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Server::start(&["serve", "--listen", "127.0.0.1:0", "--data-dir", data]);
    startup(&server);
    let out = Command::new(env!("CARGO_BIN_EXE_sessionguard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("in use"),
        "the whole chain is printed: {stderr}"
    );
    assert_eq!(server.terminate(), Some(0));
}

/// `sessionguard keys rotate` with the process environment cleared of settings.
/// The permission bits of a file or folder.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_data_folder_and_its_missing_parents_are_created_for_the_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a").join("b").join("data");
    let server = Server::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let (_, addr) = startup(&server);
    let (status, _, _) = http(&addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200);
    for created in [dir.path().join("a"), dir.path().join("a/b"), data.clone()] {
        assert_eq!(mode(&created), 0o700, "{}", created.display());
    }
    assert_eq!(server.terminate(), Some(0));

    // A folder that already exists keeps the mode its owner gave it.
    let own = dir.path().join("own");
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let out = keys_rotate(&["--data-dir", own.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(mode(&own), 0o750);

    // A data folder that cannot be created stops the server with exit code 1.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sessionguard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(file.join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot create the data folder"), "{stderr}");
}

fn keys_rotate(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessionguard"));
    for var in ["SESSIONGUARD_DATA_DIR", "SESSIONGUARD_ADMIN_TOKEN"] {
        cmd.env_remove(var);
    }
    cmd.args(["keys", "rotate"])
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

/// The key ids in a key file, active first.
fn kids_in(file: &std::path::Path) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn keys_rotate_changes_the_active_key_and_the_server_signs_with_it() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let file = dir.path().join("data").join(sessionguard_server::KEY_FILE);

    let out = keys_rotate(&["--data-dir", data]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let first = stdout
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix("rotated: new key "))
        .unwrap_or_else(|| panic!("{stdout:?}"))
        .to_owned();
    assert_eq!(kids_in(&file)[0], first);
    let mode_of_file = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode_of_file & 0o777, 0o600);
    assert_eq!(mode(&dir.path().join("data")), 0o700);

    let out = keys_rotate(&["--data-dir", data]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let second = stdout
        .trim_end()
        .strip_prefix("rotated: new key ")
        .unwrap()
        .to_owned();
    assert_ne!(second, first);
    let kids = kids_in(&file);
    assert_eq!(kids[0], second, "the new key is active");
    assert!(kids[1..].contains(&first), "the old one is kept: {kids:?}");

    // A server on this data folder publishes both and signs with the new one.
    let server = Server::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--demo",
    ]);
    let (lines, addr) = startup(&server);
    let password = lines
        .iter()
        .find_map(|l| l.strip_prefix("demo user: demo / "))
        .unwrap()
        .to_owned();
    let (status, head, body) = http(&addr, "GET", "/.well-known/jwks.json", &[], "");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: public, max-age=300"),
        "{head}"
    );
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let published: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(published[0], second);
    assert!(published.contains(&first));
    assert!(!body.contains("pkcs8") && !body.contains("\"d\""), "{body}");

    let form = format!("grant_type=password&username=demo&password={password}");
    let (status, head, body) = http(
        &addr,
        "POST",
        "/v1/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("pragma: no-cache"),
        "{head}"
    );
    let grant: serde_json::Value = serde_json::from_str(&body).unwrap();
    let access = grant["access_token"].as_str().unwrap();
    let header = access.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], second.as_str());
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn keys_rotate_exits_2_on_a_bad_config_and_1_on_an_unusable_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sg.toml");
    std::fs::write(&config, "[keys]\nalgorithm = \"HS256\"\n").unwrap();
    let out = keys_rotate(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config error: keys.algorithm"), "{stderr}");
    assert!(out.stdout.is_empty());

    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join(sessionguard_server::KEY_FILE), "not keys").unwrap();
    let out = keys_rotate(&["--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot rotate the signing keys"),
        "{stderr}"
    );
    assert!(stderr.contains("invalid key file"), "{stderr}");
    assert!(out.stdout.is_empty());
}

// ------------------------------------------------------------- policy check

/// `sessionguard policy check` with `config` (if any) written to a file, the
/// process environment cleared of settings and `env` added.
fn policy_check(config: Option<&str>, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessionguard"));
    for var in ["SESSIONGUARD_IDLE_TIMEOUT", "SESSIONGUARD_ABSOLUTE_TIMEOUT"] {
        cmd.env_remove(var);
    }
    cmd.args(["policy", "check"])
        .env("RUST_LOG", "off")
        .envs(env.iter().copied());
    if let Some(text) = config {
        let file = dir.path().join("sessionguard.toml");
        std::fs::write(&file, text).unwrap();
        cmd.arg("--config").arg(file);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The table row of `setting` under the heading of `profile`.
fn row<'a>(stdout: &'a str, profile: &str, setting: &str) -> &'a str {
    let heading = format!("Profile {profile}");
    stdout
        .split("\n\n")
        .find(|block| block.starts_with(&heading))
        .unwrap_or_else(|| panic!("no table for {profile}: {stdout}"))
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{setting} ")))
        .unwrap_or_else(|| panic!("no row {setting} for {profile}: {stdout}"))
}

#[test]
fn policy_check_passes_the_defaults_and_prints_every_profile_against_its_guidance() {
    let (code, stdout, stderr) = policy_check(None, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    for heading in [
        "Profile standard (default): measured against NIST SP 800-63B-4 (2025) AAL2 + OWASP",
        "Profile sensitive: measured against NIST SP 800-63B-4 (2025) AAL2",
        "Profile admin: measured against NIST SP 800-63B-4 (2025) AAL3",
    ] {
        assert!(stdout.contains(heading), "{stdout}");
    }
    let idle: Vec<_> = row(&stdout, "admin", "idle_timeout")
        .split_whitespace()
        .collect();
    assert_eq!(&idle[..5], ["idle_timeout", "10m", "<=", "15m", "ok"]);
    assert!(idle.join(" ").ends_with("NIST SP 800-63B-4 §2.3.3 (AAL3)"));
    let absolute = row(&stdout, "standard", "absolute_timeout");
    assert!(
        absolute.contains("12h") && absolute.contains("<= 24h"),
        "{absolute}"
    );
    assert!(
        absolute.ends_with("NIST SP 800-63B-4 §2.2.3 (AAL2)"),
        "{absolute}"
    );
    let limit: Vec<_> = row(&stdout, "standard", "max_sessions")
        .split_whitespace()
        .collect();
    assert_eq!(
        &limit[..5],
        ["max_sessions", "10", "limited", "ok", "OWASP"]
    );
    assert_eq!(
        stdout.lines().last(),
        Some(
            "policy check passed: 24 settings in 3 profiles: 24 ok, 0 advisory, \
             0 exceeding the guidance"
        )
    );

    // The same with an explicit, valid file that stays within the guidance.
    let good = "[policy]\nprofile = \"sensitive\"\nidle_timeout = \"10m\"\n\
                [profiles.admin]\nidle_timeout = \"5m\"\n";
    let (code, stdout, _) = policy_check(Some(good), &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("Profile sensitive (default)"), "{stdout}");
    assert!(row(&stdout, "admin", "idle_timeout").contains(" 5m "));
}

#[test]
fn policy_check_exits_1_naming_each_profile_and_key_beyond_the_guidance() {
    let bad = r#"
[policy]
idle_timeout = "24h"
absolute_timeout = "30d"
[profiles.admin]
max_sessions = 0
[profiles.partners]
access_token_ttl = "15m"
[profiles.unlimited]
max_sessions = 0
"#;
    let (code, stdout, stderr) = policy_check(Some(bad), &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    for line in [
        "EXCEEDS standard.idle_timeout = 24h (guidance: <= 30m; source: OWASP",
        "EXCEEDS standard.absolute_timeout = 30d (guidance: <= 24h; source: NIST SP 800-63B-4 §2.2.3 (AAL2))",
        "EXCEEDS admin.max_sessions = unlimited (guidance: limited; source: NIST SP 800-53r5 AC-10)",
        // A profile of its own is measured against the `standard` guidance.
        "EXCEEDS partners.access_token_ttl = 15m (guidance: < 10m; source: OpenID FAPI",
        // Unlimited sessions are an explicit choice, and flagged on every profile.
        "EXCEEDS unlimited.max_sessions = unlimited (guidance: limited; source: OWASP Session Mgmt CS: simultaneous logons)",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(line)),
            "{line}\n{stdout}"
        );
    }
    assert!(row(&stdout, "standard", "idle_timeout").contains("EXCEEDS"));
    assert!(row(&stdout, "admin", "max_sessions").contains("EXCEEDS"));
    assert!(row(&stdout, "admin", "idle_timeout").contains(" ok "));
    assert!(stdout.contains("Profile partners: measured against NIST SP 800-63B-4 (2025) AAL2"));
    assert_eq!(
        stdout.lines().last(),
        Some(
            "policy check FAILED: 40 settings in 5 profiles: 35 ok, 0 advisory, \
             5 exceeding the guidance"
        )
    );

    // The timeout variables count too: they change the default profile.
    let (code, stdout, _) = policy_check(None, &[("SESSIONGUARD_IDLE_TIMEOUT", "2h")]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("EXCEEDS standard.idle_timeout = 2h"),
        "{stdout}"
    );
}

#[test]
fn policy_check_notes_advisories_without_failing() {
    let (code, stdout, _) = policy_check(
        Some("[profiles.sensitive]\nrenewal_interval = \"0s\"\n"),
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("advisory sensitive.renewal_interval = off (guidance: on, <= 1h;"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("23 ok, 1 advisory, 0 exceeding the guidance\n"),
        "{stdout}"
    );
}

#[test]
fn policy_check_exits_2_on_an_invalid_config() {
    for (config, error) in [
        (
            "[profiles.admin]\nidle_timeout = \"9h\"\nabsolute_timeout = \"8h\"\n",
            "config error: profiles.admin.idle_timeout: must not be longer than absolute_timeout",
        ),
        (
            "[policy]\nprofile = \"nope\"\n",
            "config error: policy.profile: unknown profile \"nope\"",
        ),
        (
            "[profiles.admin]\nidle_timout = \"5m\"\n",
            "profiles.admin.idle_timout: unknown field",
        ),
    ] {
        let (code, stdout, stderr) = policy_check(Some(config), &[]);
        assert_eq!(code, Some(2), "{config}: {stdout}{stderr}");
        assert!(stderr.contains(error), "{config}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sessionguard"))
        .args(["policy", "check", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_server_warns_at_start_about_settings_beyond_the_guidance() {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sessionguard.toml");
    std::fs::write(&config, "[profiles.admin]\nmax_sessions = 0\n").unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionguard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env_remove("SESSIONGUARD_ADMIN_TOKEN")
        .env_remove("SESSIONGUARD_IDLE_TIMEOUT")
        .env_remove("SESSIONGUARD_ABSOLUTE_TIMEOUT")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    // A thread reads stdout so that a silent server fails the test instead of
    // hanging it.
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let listening = lines
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the server printed nothing");
    assert!(
        listening.starts_with("sessionguard listening on "),
        "{listening}"
    );
    // The warnings come before the listening line: the server can go now.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let warnings: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("exceeds the guidance"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    let warning = warnings[0];
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("profile=admin"), "{warning}");
    assert!(warning.contains("max_sessions"), "{warning}");
    assert!(warning.contains("value=unlimited"), "{warning}");
}
