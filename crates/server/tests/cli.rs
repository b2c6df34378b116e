//! The built binary on a real socket: the stdout contract (`sessionguard listening
//! on http://ADDR`, demo credentials), `--listen 127.0.0.1:0`, `--data-dir`, peer
//! addresses, a clean exit on SIGTERM, and `sessionguard keys rotate`.

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
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

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
