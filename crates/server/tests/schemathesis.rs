//! Schemathesis against the real binary: `sessionguard serve` on a loopback
//! port, its own `GET /v1/openapi.json` as the schema, every operation
//! exercised with generated requests (valid and invalid ones, and stateful
//! sequences following the links it infers) under the admin, introspection and
//! bearer credentials the document declares. Zero failures: no 5xx, every
//! status, content type, header and body as documented, invalid input refused,
//! deleted resources gone.
//!
//! Schemathesis is the pinned one of `target/schemathesis-venv`, which
//! `scripts/test` installs; a missing one fails this test. The run is bounded
//! by `--max-examples` (`SESSIONGUARD_SCHEMATHESIS_EXAMPLES`, default 25) and
//! repeatable by its seed (`SESSIONGUARD_SCHEMATHESIS_SEED`, default fixed).

mod process;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use process::{Server, http, startup};

const ADMIN_TOKEN: &str = "admin-token-for-schemathesis-0123456789";
const INTROSPECTION_TOKEN: &str = "introspection-token-for-schemathesis-01";
const USER: &str = "fuzz";
const PASSWORD: &str = "a password for the generated requests";

/// The checks: every answer as documented, and nothing accepted that the
/// document says is invalid.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance,\
                      negative_data_rejection,use_after_free,ensure_resource_availability";

fn schemathesis() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/schemathesis-venv/bin/schemathesis");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test, which installs the pinned schemathesis into it",
        p.display()
    );
    p
}

fn setting(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

#[test]
fn the_server_answers_as_its_openapi_document_says() {
    let schemathesis = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sessionguard.toml");
    // Every generated request comes from 127.0.0.1, and many carry wrong
    // passwords for the user whose grants authenticate the run: the password
    // throttle (tested on its own) would hold those grants back, so it is
    // relaxed here.
    std::fs::write(
        &config,
        format!(
            "admin_token = \"{ADMIN_TOKEN}\"\n\
             introspection_tokens = [\"{INTROSPECTION_TOKEN}\"]\n\
             [policy]\nthrottle_failures = 1000000\nthrottle_client_failures = 0\n"
        ),
    )
    .unwrap();
    let logs = dir.path().join("server.log");
    let data = dir.path().join("data");
    let server = Server::start_logging(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[("RUST_LOG", "error")],
        Stdio::from(File::create(&logs).unwrap()),
    );
    let (_, addr) = startup(&server);
    let (status, _, body) = http(
        &addr,
        "POST",
        "/v1/admin/users",
        &[
            ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ("content-type", "application/json"),
        ],
        &format!(r#"{{"username":"{USER}","password":"{PASSWORD}"}}"#),
    );
    assert_eq!(status, 201, "{body}");

    // The credential of each security scheme: the admin and introspection
    // tokens, and an access token fetched by a password grant (again whenever
    // a request is refused 401: the run logs out, changes passwords, ...).
    let auth = dir.path().join("schemathesis.toml");
    std::fs::write(
        &auth,
        format!(
            "[auth.openapi.admin]\nbearer = \"{ADMIN_TOKEN}\"\n\
             [auth.openapi.introspection]\nbearer = \"{INTROSPECTION_TOKEN}\"\n\
             [auth.dynamic.openapi.bearer]\npath = \"/v1/token\"\n\
             payload = {{ grant_type = \"password\", username = \"{USER}\", password = \"{PASSWORD}\" }}\n\
             extract_selector = \"/access_token\"\n"
        ),
    )
    .unwrap();
    let output = Command::new(&schemathesis)
        .current_dir(dir.path())
        .args(["--config-file", auth.to_str().unwrap(), "run"])
        .arg(format!("http://{addr}/v1/openapi.json"))
        .args(["--checks", CHECKS])
        .args([
            "--max-examples",
            &setting("SESSIONGUARD_SCHEMATHESIS_EXAMPLES", "25"),
            "--seed",
            &setting("SESSIONGUARD_SCHEMATHESIS_SEED", "20261205"),
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert_eq!(server.terminate(), Some(0));
    let server_errors = std::fs::read_to_string(&logs).unwrap();
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{errors}\nserver errors:\n{server_errors}"
    );
    let selected = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Operations:"))
        .unwrap_or_else(|| panic!("no operation count:\n{report}"))
        .split_whitespace()
        .filter_map(|w| w.parse::<usize>().ok())
        .collect::<Vec<_>>();
    assert!(
        matches!(selected[..], [n, total] if n == total && n >= 30),
        "every operation was tested: {selected:?}\n{report}"
    );
    assert!(
        !report.contains("Authentication Error"),
        "the run stayed authenticated:\n{report}"
    );
    assert!(
        server_errors.trim().is_empty(),
        "the server logged errors:\n{server_errors}"
    );
}
