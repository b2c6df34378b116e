//! Configuration: file, environment and flags, each refusal naming its key; and
//! the binary's exit code for a bad configuration.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sessionguard_core::profile::built_in;
use sessionguard_core::{OnLimit, Policy, Profiles};
use sessionguard_jwt::Algorithm;
use sessionguard_server::config::{AuditMirror, LogFormat, StoreConfig};
use sessionguard_server::{Config, ConfigError, Overrides};

const ADMIN: &str = "0123456789abcdef0123456789abcdef-admin";

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn parse(toml: &str) -> Result<Config, ConfigError> {
    Config::from_toml(toml, no_env, &Overrides::default())
}

#[track_caller]
fn refused(toml: &str) -> String {
    match parse(toml) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "one line: {msg}");
            msg
        }
    }
}

const FULL: &str = r#"
listen = "0.0.0.0:9000"
data_dir = "/var/lib/sessionguard"
public_origin = "https://login.example.com"
admin_token = "0123456789abcdef0123456789abcdef-admin"
[policy]
idle_timeout = "15m"
absolute_timeout = "8h"
tombstone_retention = "2h"
"#;

#[test]
fn a_valid_file_parses() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/sessionguard"));
    assert_eq!(c.public_origin, "https://login.example.com");
    assert!(c.admin_token.as_ref().unwrap().matches(ADMIN.as_bytes()));
    assert_eq!(c.policy.idle_timeout, Duration::from_secs(15 * 60));
    assert_eq!(c.policy.absolute_timeout, Duration::from_secs(8 * 3600));
    assert_eq!(c.policy.tombstone_retention, Duration::from_secs(2 * 3600));
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.data_dir, PathBuf::from("sessionguard-data"));
    assert_eq!(c.public_origin, "http://127.0.0.1:8080");
    assert!(c.admin_token.is_none());
    assert_eq!(c.policy.idle_timeout, Duration::from_secs(30 * 60));
    assert_eq!(c.policy.absolute_timeout, Duration::from_secs(12 * 3600));
    // Tokens.
    assert_eq!(c.policy.access_token_ttl, Duration::from_secs(5 * 60));
    assert_eq!(c.policy.refresh_reuse_grace, Duration::from_secs(5));
    assert_eq!(c.policy.api_token_max_ttl, Duration::from_secs(90 * 86_400));
    assert!(c.policy.revoke_api_tokens_on_password_change);
    assert_eq!(c.issuer, "http://127.0.0.1:8080");
    assert_eq!(c.audience, "http://127.0.0.1:8080");
    assert_eq!(c.keys.algorithm, Algorithm::EdDSA);
    assert_eq!(c.keys.rotation_period, Duration::from_secs(30 * 86_400));
    assert!(c.introspection_tokens.is_empty());
}

const TOKENS: &str = r#"
public_origin = "https://login.example.com"
issuer = "https://login.example.com/auth"
audience = "urn:example:api"
introspection_tokens = ["rs-one-0123456789abcdef0123456789abcdef", "rs-two-0123456789abcdef0123456789abcdef"]
[policy]
access_token_ttl = "2m"
refresh_reuse_grace = "0s"
api_token_max_ttl = "30d"
revoke_api_tokens_on_password_change = false
[keys]
algorithm = "ES256"
rotation_period = "7d"
"#;

#[test]
fn token_settings_parse() {
    let c = parse(TOKENS).unwrap();
    assert_eq!(c.issuer, "https://login.example.com/auth");
    assert_eq!(c.audience, "urn:example:api");
    assert_eq!(c.policy.access_token_ttl, Duration::from_secs(120));
    assert_eq!(c.policy.refresh_reuse_grace, Duration::ZERO);
    assert_eq!(c.policy.api_token_max_ttl, Duration::from_secs(30 * 86_400));
    assert!(!c.policy.revoke_api_tokens_on_password_change);
    assert_eq!(c.keys.algorithm, Algorithm::ES256);
    assert_eq!(c.keys.rotation_period, Duration::from_secs(7 * 86_400));
    assert_eq!(c.introspection_tokens.len(), 2);
    assert!(c.introspection_tokens[1].matches(b"rs-two-0123456789abcdef0123456789abcdef"));
    assert!(!c.introspection_tokens[0].matches(b"rs-two-0123456789abcdef0123456789abcdef"));
}

#[test]
fn issuer_and_audience_follow_the_effective_public_origin() {
    let c = parse("public_origin = \"https://Login.Example.com:443\"").unwrap();
    assert_eq!(c.issuer, "https://login.example.com");
    assert_eq!(c.audience, "https://login.example.com");
    let env = env_of(&[("SESSIONGUARD_PUBLIC_ORIGIN", "https://env.example")]);
    let c = Config::from_toml("audience = \"api\"", env, &Overrides::default()).unwrap();
    assert_eq!(c.issuer, "https://env.example");
    assert_eq!(c.audience, "api");
}

#[test]
fn bad_token_settings_are_refused_by_key() {
    for (toml, key) in [
        (
            "[policy]\naccess_token_ttl = \"0s\"\n",
            "policy.access_token_ttl: ",
        ),
        (
            "[policy]\naccess_token_ttl = \"2d\"\n",
            "policy.access_token_ttl: ",
        ),
        (
            "[policy]\naccess_token_ttl = \"soon\"\n",
            "policy.access_token_ttl: ",
        ),
        (
            "[policy]\nrefresh_reuse_grace = \"2m\"\n",
            "policy.refresh_reuse_grace: ",
        ),
        (
            "[policy]\nrefresh_reuse_grace = \"-1s\"\n",
            "policy.refresh_reuse_grace: ",
        ),
        (
            "[policy]\napi_token_max_ttl = \"10s\"\n",
            "policy.api_token_max_ttl: ",
        ),
        (
            "[policy]\napi_token_max_ttl = \"20y\"\n",
            "policy.api_token_max_ttl: ",
        ),
        ("[keys]\nalgorithm = \"HS256\"\n", "keys.algorithm: "),
        ("[keys]\nalgorithm = \"none\"\n", "keys.algorithm: "),
        ("[keys]\nalgorithm = \"eddsa\"\n", "keys.algorithm: "),
        (
            "[keys]\nrotation_period = \"59m\"\n",
            "keys.rotation_period: ",
        ),
        (
            "[keys]\nrotation_period = \"monthly\"\n",
            "keys.rotation_period: ",
        ),
        ("issuer = \"\"", "issuer: "),
        ("issuer = \"not a url\"", "issuer: "),
        ("issuer = \"auth.example\"", "issuer: "),
        ("audience = \"\"", "audience: "),
        ("audience = \"my api\"", "audience: "),
    ] {
        let msg = refused(toml);
        assert!(msg.starts_with(key), "{toml}: {msg}");
    }
    let msg = refused(&format!("issuer = \"https://{}\"", "a".repeat(250)));
    assert!(msg.starts_with("issuer: "), "{msg}");
    // Wrong TOML types name the line and the key.
    let msg = refused("[policy]\nrevoke_api_tokens_on_password_change = \"yes\"\n");
    assert!(msg.contains("line 2"), "{msg}");
    assert!(
        msg.contains("policy.revoke_api_tokens_on_password_change"),
        "{msg}"
    );
    let msg = refused("introspection_tokens = \"just-one-0123456789abcdef0123456789\"\n");
    assert!(msg.contains("introspection_tokens"), "{msg}");
    let msg = refused("[keys]\nalgoritm = \"ES256\"\n");
    assert!(msg.contains("algoritm"), "{msg}");
}

#[test]
fn bad_introspection_tokens_are_refused_without_echoing_them() {
    let msg = refused(
        "introspection_tokens = [\"ok-0123456789abcdef0123456789abcdef\", \"short-secret\"]\n",
    );
    assert!(msg.starts_with("introspection_tokens: entry 2: "), "{msg}");
    assert!(!msg.contains("short-secret"), "{msg}");
    let msg = refused("introspection_tokens = [\"has space 0123456789abcdef0123456789\"]\n");
    assert!(msg.starts_with("introspection_tokens: entry 1: "), "{msg}");
}

#[test]
fn env_overrides_the_file_and_flags_override_env() {
    let env = env_of(&[
        ("SESSIONGUARD_LISTEN", "127.0.0.1:7000"),
        ("SESSIONGUARD_DATA_DIR", "/tmp/from-env"),
        ("SESSIONGUARD_PUBLIC_ORIGIN", "https://env.example"),
        (
            "SESSIONGUARD_ADMIN_TOKEN",
            "env-admin-token-0123456789abcdef0123",
        ),
        ("SESSIONGUARD_IDLE_TIMEOUT", "5m"),
        ("SESSIONGUARD_ABSOLUTE_TIMEOUT", "1h"),
    ]);
    let c = Config::from_toml(FULL, &env, &Overrides::default()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
    assert_eq!(c.data_dir, PathBuf::from("/tmp/from-env"));
    assert_eq!(c.public_origin, "https://env.example");
    assert!(
        c.admin_token
            .as_ref()
            .unwrap()
            .matches(b"env-admin-token-0123456789abcdef0123")
    );
    assert_eq!(c.policy.idle_timeout, Duration::from_secs(5 * 60));
    assert_eq!(c.policy.absolute_timeout, Duration::from_secs(3600));

    let flags = Overrides::new(Some("127.0.0.1:0".into()), Some("/tmp/from-flag".into()));
    let c = Config::from_toml(FULL, &env, &flags).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:0");
    assert_eq!(c.data_dir, PathBuf::from("/tmp/from-flag"));
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let msg = refused("listen = \"127.0.0.1:1\"\nlisten_port = 8080\n");
    assert!(msg.contains("listen_port"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
    let msg = refused("[policy]\nidle_timout = \"5m\"\n");
    assert!(msg.contains("idle_timout"), "{msg}");
}

#[test]
fn bad_durations_are_refused_by_key() {
    let msg = refused("[policy]\nidle_timeout = \"abc\"\n");
    assert_eq!(msg, r#"policy.idle_timeout: invalid duration "abc""#);
    let msg = refused("[policy]\nabsolute_timeout = \"12 parsecs\"\n");
    assert!(msg.starts_with("policy.absolute_timeout: "), "{msg}");
    let msg = refused("[policy]\ntombstone_retention = \"-1h\"\n");
    assert!(msg.starts_with("policy.tombstone_retention: "), "{msg}");
    // A wrong TOML type is refused too, naming the line.
    let msg = refused("[policy]\nidle_timeout = 30\n");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn zero_timeouts_are_refused_by_key() {
    let msg = refused("[policy]\nidle_timeout = \"0s\"\n");
    assert!(msg.starts_with("policy.idle_timeout: "), "{msg}");
    let msg = refused("[policy]\nidle_timeout = \"0s\"\nabsolute_timeout = \"0s\"\n");
    assert!(msg.starts_with("policy.idle_timeout: "), "{msg}");
    let msg = refused("[policy]\nidle_timeout = \"1s\"\nabsolute_timeout = \"0s\"\n");
    assert!(msg.starts_with("policy.absolute_timeout: "), "{msg}");
}

#[test]
fn idle_longer_than_absolute_is_refused() {
    let msg = refused("[policy]\nidle_timeout = \"2h\"\nabsolute_timeout = \"1h\"\n");
    assert!(msg.starts_with("policy.idle_timeout: "), "{msg}");
    assert!(msg.contains("absolute_timeout"), "{msg}");
    // Equal is fine.
    parse("[policy]\nidle_timeout = \"1h\"\nabsolute_timeout = \"1h\"\n").unwrap();
}

#[test]
fn bad_listen_origin_and_admin_token_are_refused_by_key() {
    let msg = refused("listen = \"localhost\"");
    assert!(msg.starts_with("listen: "), "{msg}");
    let msg = refused("public_origin = \"https://app.example/login\"");
    assert!(msg.starts_with("public_origin: "), "{msg}");
    let msg = refused("admin_token = \"too-short-secret\"");
    assert!(msg.starts_with("admin_token: "), "{msg}");
    assert!(
        !msg.contains("too-short-secret"),
        "the secret is never echoed: {msg}"
    );
}

#[test]
fn errors_from_the_environment_name_the_variable() {
    let env = env_of(&[("SESSIONGUARD_IDLE_TIMEOUT", "soon")]);
    let err = Config::from_toml("", env, &Overrides::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"policy.idle_timeout (from SESSIONGUARD_IDLE_TIMEOUT): invalid duration "soon""#
    );
}

#[test]
fn debug_redacts_the_admin_and_introspection_tokens() {
    let c = parse(FULL).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains(ADMIN), "{dbg}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
    let c = parse(TOKENS).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("rs-one-"), "{dbg}");
    assert!(dbg.contains("IntrospectionToken(<redacted>)"), "{dbg}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let err = Config::load(
        Some(std::path::Path::new("/nonexistent/sg.toml")),
        no_env,
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/sg.toml"), "{err}");
}

// ------------------------------------------------------------- policy profiles

/// The policy of profile `name` in `c`.
#[track_caller]
#[test]
fn the_audit_table_parses_and_is_checked() {
    let c = parse("").unwrap();
    assert_eq!(c.audit.mirror, AuditMirror::Off);
    assert_eq!(c.audit.retention, Duration::from_secs(90 * 86_400));
    let c = parse("[audit]\nmirror = \"stdout\"\nretention = \"7d\"").unwrap();
    assert_eq!(c.audit.mirror, AuditMirror::Stdout);
    assert_eq!(c.audit.retention, Duration::from_secs(7 * 86_400));
    let c = parse("[audit]\nmirror = \"/var/log/sg.jsonl\"").unwrap();
    assert_eq!(
        c.audit.mirror,
        AuditMirror::File(PathBuf::from("/var/log/sg.jsonl"))
    );
    assert!(refused("[audit]\nmirror = \"\"").starts_with("audit.mirror"));
    assert!(refused("[audit]\nretention = \"1h\"").starts_with("audit.retention"));
    assert!(refused("[audit]\nretention = \"soon\"").starts_with("audit.retention"));
    assert!(refused("[audit]\nkeep = 1").contains("audit"));
}

#[test]
fn the_store_table_parses_and_is_checked() {
    // Redis deployments name their one public origin (nodes share it).
    assert!(
        refused("[store]\nkind = \"redis\"\nurls = [\"redis://x\"]").starts_with("public_origin")
    );
    let with_origin = |toml: &str| format!("public_origin = \"https://login.example\"\n{toml}");
    let parse = |toml: &str| parse(&with_origin(toml));
    let refused = |toml: &str| refused(&with_origin(toml));
    assert_eq!(parse("").unwrap().store, StoreConfig::Embedded);
    assert_eq!(
        parse("[store]\nkind = \"embedded\"").unwrap().store,
        StoreConfig::Embedded
    );
    let c = parse(
        "[store]\nkind = \"redis\"\nurls = [\"redis://:s3cret@10.0.0.1:6379\", \"redis://10.0.0.2:6379\"]\n\
         prefix = \"prod-sg\"\nwait_replicas = 1\nwait_timeout = \"500ms\"",
    )
    .unwrap();
    let StoreConfig::Redis(r) = &c.store else {
        panic!("{:?}", c.store)
    };
    assert_eq!(r.urls.len(), 2);
    assert_eq!(r.prefix, "prod-sg");
    assert_eq!(r.wait_replicas, Some(1));
    assert_eq!(r.wait_timeout, Duration::from_millis(500));
    let debug = format!("{c:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(!debug.contains("10.0.0.1"), "{debug}");
    let auto = parse(
        "[store]\nkind = \"redis\"\nurls = [\"redis://127.0.0.1\"]\nwait_replicas = \"auto\"",
    )
    .unwrap();
    let StoreConfig::Redis(r) = auto.store else {
        panic!()
    };
    assert_eq!((r.wait_replicas, r.prefix.as_str()), (None, "sg"));

    for (toml, key) in [
        ("[store]\nkind = \"memcached\"", "store.kind"),
        ("[store]\nkind = \"redis\"", "store.urls"),
        ("[store]\nkind = \"redis\"\nurls = []", "store.urls"),
        ("[store]\nurls = [\"redis://x\"]", "store.urls"),
        (
            "[store]\nkind = \"redis\"\nurls = [\"http://x\"]",
            "store.urls",
        ),
        (
            "[store]\nkind = \"redis\"\nurls = [\"redis://x\"]\nprefix = \"a b\"",
            "store.prefix",
        ),
        (
            "[store]\nkind = \"redis\"\nurls = [\"redis://x\"]\nwait_replicas = 99",
            "store.wait_replicas",
        ),
        (
            "[store]\nkind = \"redis\"\nurls = [\"redis://x\"]\nwait_replicas = \"all\"",
            "store.wait_replicas",
        ),
        (
            "[store]\nkind = \"redis\"\nurls = [\"redis://x\"]\nwait_timeout = \"5m\"",
            "store.wait_timeout",
        ),
    ] {
        let msg = refused(toml);
        assert!(msg.starts_with(key), "{toml:?}: {msg}");
    }
    // A URL with a password is never echoed in an error.
    let msg = refused("[store]\nkind = \"redis\"\nurls = [\"http://:hunter2@x\"]");
    assert!(!msg.contains("hunter2"), "{msg}");
}

fn profile(c: &Config, name: &str) -> Policy {
    c.profiles.get(name).expect("defined").1.clone()
}

#[test]
fn without_profile_settings_the_built_ins_apply_and_standard_is_the_default() {
    let c = parse("").unwrap();
    assert_eq!(c.profiles, Profiles::default());
    assert_eq!(c.profiles.default_name().as_str(), "standard");
    assert_eq!(c.policy, built_in("standard").unwrap());
    // No finding out of the box: a generous limit, the oldest session displaced.
    assert_eq!(c.policy.max_sessions, 10);
    assert_eq!(c.policy.on_limit, sessionguard_core::OnLimit::EvictOldest);
    assert_eq!(c.policy.step_up_ttl, Duration::from_secs(300));
    assert_eq!(c.policy.renewal_interval, Duration::ZERO);
}

#[test]
fn policy_profile_picks_the_default_and_policy_fields_override_it() {
    let c = parse("[policy]\nprofile = \"admin\"\nidle_timeout = \"5m\"\n").unwrap();
    assert_eq!(c.profiles.default_name().as_str(), "admin");
    let mut admin = built_in("admin").unwrap();
    admin.idle_timeout = Duration::from_secs(300);
    assert_eq!(c.policy, admin);
    assert_eq!(profile(&c, "admin"), admin);
    // The other profiles keep their values.
    assert_eq!(profile(&c, "standard"), built_in("standard").unwrap());
    assert_eq!(profile(&c, "sensitive"), built_in("sensitive").unwrap());

    // Without `profile`, [policy] changes `standard` only.
    let c = parse("[policy]\nidle_timeout = \"20m\"\n").unwrap();
    assert_eq!(
        profile(&c, "standard").idle_timeout,
        Duration::from_secs(1200)
    );
    assert_eq!(profile(&c, "admin").idle_timeout, Duration::from_secs(600));
}

#[test]
fn the_session_limit_step_up_and_renewal_keys_parse() {
    let c = parse(
        r#"
[policy]
max_sessions = 4
on_limit = "reject_new"
step_up_ttl = "2m"
renewal_interval = "45m"
renewal_overlap = "10s"
"#,
    )
    .unwrap();
    assert_eq!(c.policy.max_sessions, 4);
    assert_eq!(c.policy.on_limit, OnLimit::RejectNew);
    assert_eq!(c.policy.step_up_ttl, Duration::from_secs(120));
    assert_eq!(c.policy.renewal_interval, Duration::from_secs(45 * 60));
    assert_eq!(c.policy.renewal_overlap, Duration::from_secs(10));
    assert_eq!(c.policy, *c.profiles.default_policy());

    // "0s" turns renewal off, also where the built-in profile has it on.
    let c = parse("[policy]\nprofile = \"sensitive\"\nrenewal_interval = \"0s\"\n").unwrap();
    assert_eq!(c.policy.renewal_interval, Duration::ZERO);
}

#[test]
fn profile_tables_override_built_ins_and_define_new_profiles_from_standard() {
    let c = parse(
        r#"
[profiles.admin]
idle_timeout = "5m"
[profiles.partners]
max_sessions = 2
on_limit = "reject_new"
absolute_timeout = "4h"
"#,
    )
    .unwrap();
    let mut admin = built_in("admin").unwrap();
    admin.idle_timeout = Duration::from_secs(300);
    assert_eq!(profile(&c, "admin"), admin);
    let mut partners = built_in("standard").unwrap();
    partners.max_sessions = 2;
    partners.on_limit = OnLimit::RejectNew;
    partners.absolute_timeout = Duration::from_secs(4 * 3600);
    assert_eq!(profile(&c, "partners"), partners);
    assert_eq!(c.profiles.iter().count(), 4);
    assert_eq!(c.policy, built_in("standard").unwrap());

    // A defined profile can be the default.
    let c =
        parse("[policy]\nprofile = \"partners\"\n[profiles.partners]\nmax_sessions = 2\n").unwrap();
    assert_eq!(c.profiles.default_name().as_str(), "partners");
    assert_eq!(c.policy.max_sessions, 2);
}

#[test]
fn policy_fields_win_over_the_default_profiles_own_table() {
    let c = parse(
        r#"
[policy]
profile = "sensitive"
idle_timeout = "10m"
[profiles.sensitive]
idle_timeout = "12m"
max_sessions = 5
"#,
    )
    .unwrap();
    assert_eq!(c.policy.idle_timeout, Duration::from_secs(600));
    assert_eq!(c.policy.max_sessions, 5);
    assert_eq!(c.policy.absolute_timeout, Duration::from_secs(12 * 3600));
}

#[test]
fn timeout_variables_apply_to_the_default_profile_only() {
    let env = env_of(&[
        ("SESSIONGUARD_IDLE_TIMEOUT", "5m"),
        ("SESSIONGUARD_ABSOLUTE_TIMEOUT", "2h"),
    ]);
    let toml = "[policy]\nprofile = \"sensitive\"\nidle_timeout = \"10m\"\n";
    let c = Config::from_toml(toml, env, &Overrides::default()).unwrap();
    assert_eq!(c.policy.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.policy.absolute_timeout, Duration::from_secs(7200));
    assert_eq!(profile(&c, "sensitive"), c.policy);
    assert_eq!(profile(&c, "standard"), built_in("standard").unwrap());
}

#[test]
fn bad_profile_settings_are_refused_by_dotted_key() {
    for (toml, key) in [
        (
            "[profiles.admin]\nidle_timeout = \"soon\"\n",
            "profiles.admin.idle_timeout: invalid duration \"soon\"",
        ),
        (
            "[profiles.admin]\nidle_timeout = \"9h\"\nabsolute_timeout = \"8h\"\n",
            "profiles.admin.idle_timeout: must not be longer than absolute_timeout",
        ),
        (
            "[profiles.partners]\non_limit = \"random\"\n",
            "profiles.partners.on_limit: must be \"evict_oldest\" or \"reject_new\"",
        ),
        (
            "[profiles.partners]\nmax_sessions = 20000\n",
            "profiles.partners.max_sessions: ",
        ),
        (
            "[profiles.Admin]\nidle_timeout = \"5m\"\n",
            "profiles: invalid profile name \"Admin\"",
        ),
        (
            "[policy]\nprofile = \"nope\"\n",
            "policy.profile: unknown profile \"nope\"",
        ),
        (
            "[policy]\nprofile = \"Admin\"\n",
            "policy.profile: unknown profile \"Admin\"",
        ),
        (
            "[policy]\non_limit = \"random\"\n",
            "policy.on_limit: must be \"evict_oldest\" or \"reject_new\" (got \"random\")",
        ),
        ("[policy]\nmax_sessions = 20000\n", "policy.max_sessions: "),
        ("[policy]\nstep_up_ttl = \"0s\"\n", "policy.step_up_ttl: "),
        (
            "[policy]\nrenewal_interval = \"10s\"\n",
            "policy.renewal_interval: must be 0s (off) or at least 1m",
        ),
        (
            "[policy]\nrenewal_overlap = \"1h\"\n",
            "policy.renewal_overlap: ",
        ),
        // The default profile's fields are [policy] keys...
        (
            "[policy]\nprofile = \"admin\"\nidle_timeout = \"9h\"\nabsolute_timeout = \"8h\"\n",
            "policy.idle_timeout: must not be longer than absolute_timeout",
        ),
        // ...unless the value came from its own table only.
        (
            "[profiles.standard]\nidle_timeout = \"0s\"\n",
            "profiles.standard.idle_timeout: ",
        ),
    ] {
        let msg = refused(toml);
        assert!(msg.starts_with(key), "{toml}: {msg}");
    }
    // Unknown keys and wrong types in a profile table name the dotted key and line.
    let msg = refused("[profiles.admin]\nidle_timout = \"5m\"\n");
    assert!(msg.contains("profiles.admin.idle_timout"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
    let msg = refused("[profiles.admin]\nprofile = \"standard\"\n");
    assert!(
        msg.contains("profiles.admin.profile: unknown field"),
        "{msg}"
    );
    let msg = refused("[policy]\nmax_sessions = -1\n");
    assert!(msg.contains("policy.max_sessions"), "{msg}");
    let msg = refused("[profiles.admin]\nmax_sessions = \"one\"\n");
    assert!(msg.contains("profiles.admin.max_sessions"), "{msg}");
}

#[test]
fn defaults_nobody_set_follow_the_values_that_were_set() {
    // A short absolute timeout takes the idle timeout and step-up window with it
    // (the defaults 30m and 5m would otherwise contradict it).
    let c = parse("[policy]\nabsolute_timeout = \"6s\"\n").unwrap();
    assert_eq!(c.policy.absolute_timeout, Duration::from_secs(6));
    assert_eq!(c.policy.idle_timeout, Duration::from_secs(6));
    assert_eq!(c.policy.step_up_ttl, Duration::from_secs(6));
    // The same from the environment, and in a profile's own table.
    let env = env_of(&[("SESSIONGUARD_ABSOLUTE_TIMEOUT", "6s")]);
    let c = Config::from_toml("", env, &Overrides::default()).unwrap();
    assert_eq!(c.policy.step_up_ttl, Duration::from_secs(6));
    let c = parse("[profiles.admin]\nabsolute_timeout = \"2m\"\n").unwrap();
    let admin = profile(&c, "admin");
    assert_eq!(
        (admin.idle_timeout, admin.step_up_ttl),
        (Duration::from_secs(120), Duration::from_secs(120))
    );
    // A long idle timeout takes the unset absolute timeout with it.
    let c = parse("[profiles.admin]\nidle_timeout = \"9h\"\n").unwrap();
    assert_eq!(
        profile(&c, "admin").absolute_timeout,
        Duration::from_secs(9 * 3600)
    );
    // Values that were set win over what another table derived.
    let c = parse(
        "[profiles.standard]\nabsolute_timeout = \"6s\"\n[policy]\nabsolute_timeout = \"1h\"\n",
    )
    .unwrap();
    assert_eq!(c.policy.idle_timeout, Duration::from_secs(30 * 60));
    // Other profiles keep their own values.
    assert_eq!(profile(&c, "sensitive"), built_in("sensitive").unwrap());
}

#[test]
fn explicit_contradictions_are_still_refused() {
    let msg = refused("[policy]\nabsolute_timeout = \"6s\"\nstep_up_ttl = \"5m\"\n");
    assert!(msg.starts_with("policy.step_up_ttl: "), "{msg}");
    let msg = refused("[policy]\nabsolute_timeout = \"6s\"\nidle_timeout = \"1m\"\n");
    assert!(msg.starts_with("policy.idle_timeout: "), "{msg}");
    // A value set in the environment contradicts one set in the file.
    let env = env_of(&[("SESSIONGUARD_IDLE_TIMEOUT", "2h")]);
    let err = Config::from_toml(
        "[policy]\nabsolute_timeout = \"1h\"\n",
        env,
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("policy.idle_timeout (from SESSIONGUARD_IDLE_TIMEOUT): "),
        "{err}"
    );
}

#[test]
fn a_timeout_variable_that_breaks_the_default_profile_is_named() {
    let env = env_of(&[
        ("SESSIONGUARD_IDLE_TIMEOUT", "13h"),
        ("SESSIONGUARD_ABSOLUTE_TIMEOUT", "12h"),
    ]);
    let err = Config::from_toml("", env, &Overrides::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "policy.idle_timeout (from SESSIONGUARD_IDLE_TIMEOUT): must not be longer than absolute_timeout"
    );
}

// ------------------------------------------------------------------ the binary

fn sessionguard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessionguard"));
    for var in [
        "SESSIONGUARD_LISTEN",
        "SESSIONGUARD_DATA_DIR",
        "SESSIONGUARD_PUBLIC_ORIGIN",
        "SESSIONGUARD_ADMIN_TOKEN",
        "SESSIONGUARD_IDLE_TIMEOUT",
        "SESSIONGUARD_ABSOLUTE_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn the_binary_exits_2_on_a_bad_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessionguard.toml");
    std::fs::write(&file, "[policy]\nidle_timeout = \"abc\"\n").unwrap();
    let out = sessionguard()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"config error: policy.idle_timeout: invalid duration "abc""#),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_binary_exits_2_on_a_bad_env_value_or_flag() {
    let out = sessionguard()
        .args(["serve", "--listen", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));

    let out = sessionguard()
        .args(["serve"])
        .env("SESSIONGUARD_ABSOLUTE_TIMEOUT", "0s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy.absolute_timeout"));

    let out = sessionguard()
        .args(["serve", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_binary_exits_2_on_a_bad_token_setting_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessionguard.toml");
    std::fs::write(&file, "[keys]\nrotation_period = \"10m\"\n").unwrap();
    let out = sessionguard()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config error: keys.rotation_period: must be between 1h and 10 years"),
        "{stderr}"
    );
}

#[test]
fn the_binary_exits_2_on_a_bad_profile_naming_the_dotted_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessionguard.toml");
    std::fs::write(
        &file,
        "[profiles.admin]\nidle_timeout = \"9h\"\nabsolute_timeout = \"8h\"\n",
    )
    .unwrap();
    let out = sessionguard()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config error: profiles.admin.idle_timeout: must not be longer"),
        "{stderr}"
    );
}

#[test]
fn the_server_table_has_safe_defaults_and_takes_its_keys() {
    let d = parse("").unwrap().server;
    assert_eq!(d.header_read_timeout, Duration::from_secs(10));
    assert_eq!(d.request_timeout, Duration::from_secs(30));
    assert_eq!(d.keep_alive_timeout, Duration::from_secs(75));
    assert_eq!(d.max_connections, 1000);
    assert_eq!(d.shutdown_grace, Duration::from_secs(10));
    assert_eq!(d.password_hash_queue, 32);

    let s = parse(
        "[server]\nheader_read_timeout = \"2s\"\nrequest_timeout = \"5s\"\n\
         keep_alive_timeout = \"1m\"\nmax_connections = 50\nshutdown_grace = \"0s\"\n\
         password_hash_queue = 0\n",
    )
    .unwrap()
    .server;
    assert_eq!(s.header_read_timeout, Duration::from_secs(2));
    assert_eq!(s.request_timeout, Duration::from_secs(5));
    assert_eq!(s.keep_alive_timeout, Duration::from_secs(60));
    assert_eq!(s.max_connections, 50);
    assert_eq!(s.shutdown_grace, Duration::ZERO);
    assert_eq!(s.password_hash_queue, 0);
}

#[test]
fn bad_server_settings_are_refused_by_key() {
    for (toml, key) in [
        ("[server]\nmax_connections = 0", "server.max_connections"),
        (
            "[server]\nmax_connections = 2000000",
            "server.max_connections",
        ),
        (
            "[server]\nrequest_timeout = \"1ms\"",
            "server.request_timeout",
        ),
        (
            "[server]\nheader_read_timeout = \"2h\"",
            "server.header_read_timeout",
        ),
        (
            "[server]\nkeep_alive_timeout = \"soon\"",
            "server.keep_alive_timeout",
        ),
        ("[server]\nshutdown_grace = \"3h\"", "server.shutdown_grace"),
        (
            "[server]\npassword_hash_queue = 100001",
            "server.password_hash_queue",
        ),
    ] {
        let msg = refused(toml);
        assert!(msg.starts_with(key), "{toml}: {msg}");
    }
    assert!(refused("[server]\nlisten = \"127.0.0.1:1\"").contains("unknown field"));
}

#[test]
fn the_throttle_is_set_in_policy_and_its_defaults_follow_the_values_set() {
    let d = parse("").unwrap().throttle;
    assert_eq!(d, sessionguard_core::ThrottleRule::default());

    let t = parse(
        "[policy]\nthrottle_failures = 3\nthrottle_client_failures = 0\n\
         throttle_delay = \"2s\"\nthrottle_max_delay = \"1h\"\n",
    )
    .unwrap()
    .throttle;
    assert_eq!(t.failures, 3);
    assert_eq!(t.client_failures, 0);
    assert_eq!(t.delay, Duration::from_secs(2));
    assert_eq!(t.max_delay, Duration::from_secs(3600));

    // One value set, the other's default follows it instead of contradicting it.
    let short = parse("[policy]\nthrottle_max_delay = \"500ms\"")
        .unwrap()
        .throttle;
    assert_eq!(short.delay, Duration::from_millis(500));
    let long = parse("[policy]\nthrottle_delay = \"1h\"").unwrap().throttle;
    assert_eq!(long.max_delay, Duration::from_secs(3600));
}

#[test]
fn bad_throttle_settings_are_refused_by_key() {
    for (toml, key) in [
        (
            "[policy]\nthrottle_failures = 0",
            "policy.throttle_failures",
        ),
        (
            "[policy]\nthrottle_delay = \"2m\"\nthrottle_max_delay = \"1m\"",
            "policy.throttle_delay",
        ),
        (
            "[policy]\nthrottle_max_delay = \"2d\"",
            "policy.throttle_max_delay",
        ),
        ("[policy]\nthrottle_delay = \"0s\"", "policy.throttle_delay"),
        ("[policy]\nthrottle_delay = \"x\"", "policy.throttle_delay"),
    ] {
        let msg = refused(toml);
        assert!(msg.starts_with(key), "{toml}: {msg}");
    }
    // One rule for every profile: not a profile field.
    let msg = refused("[profiles.admin]\nthrottle_failures = 3");
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn metrics_listen_and_log_format_parse_from_the_file_and_the_environment() {
    let c = parse("").unwrap();
    assert_eq!(c.metrics_listen, None);
    assert_eq!(c.log_format, LogFormat::Text);
    let c = parse("metrics_listen = \"127.0.0.1:9090\"\nlog_format = \"json\"\n").unwrap();
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.log_format, LogFormat::Json);
    let env = env_of(&[
        ("SESSIONGUARD_METRICS_LISTEN", "127.0.0.1:9191"),
        ("SESSIONGUARD_LOG_FORMAT", "text"),
    ]);
    let c = Config::from_toml(
        "metrics_listen = \"127.0.0.1:9090\"\nlog_format = \"json\"\n",
        env,
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9191".parse().unwrap()));
    assert_eq!(c.log_format, LogFormat::Text);
}

#[test]
fn bad_metrics_listen_and_log_format_are_refused_by_key() {
    let msg = refused("metrics_listen = \"localhost\"\n");
    assert!(msg.starts_with("metrics_listen:"), "{msg}");
    let msg = refused("log_format = \"yaml\"\n");
    assert!(msg.starts_with("log_format:"), "{msg}");
    let env = env_of(&[("SESSIONGUARD_LOG_FORMAT", "JSON")]);
    let msg = Config::from_toml("", env, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("log_format (from SESSIONGUARD_LOG_FORMAT):"),
        "{msg}"
    );
}
