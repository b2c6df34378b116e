//! Durability under SIGKILL: every login, logout, password change and admin
//! revocation that got a 2xx is still in force after the server is killed with
//! SIGKILL right after answering and restarted on the same data folder.

#![cfg(unix)]

mod process;

use process::{Browser, Running, cookie_of, http, json_field, start};

impl Running {
    fn login(&self, name: &str, password: &str) -> Result<Browser, u16> {
        process::login(&self.addr, name, password)
    }

    fn status(&self, b: &Browser) -> Result<String, String> {
        process::status(&self.addr, b)
    }

    fn post_as(&self, b: &Browser, path: &str, json: &str) -> (u16, String, String) {
        process::post_as(&self.addr, b, path, json)
    }
}

const ALICE_PW: &str = "correct horse battery";
const ALICE_NEW_PW: &str = "a brand new secret";
const BOB_PW: &str = "tr0ub4dor and more";

#[test]
fn acknowledged_changes_survive_sigkill_right_after_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();

    // Users and logins acknowledged, then SIGKILL.
    let s = start(data);
    let alice = s.create_user("alice", ALICE_PW);
    let bob = s.create_user("bob", BOB_PW);
    let a1 = s.login("alice", ALICE_PW).unwrap();
    let a2 = s.login("alice", ALICE_PW).unwrap();
    let a3 = s.login("alice", ALICE_PW).unwrap();
    let b1 = s.login("bob", BOB_PW).unwrap();
    s.kill9();

    // Logout acknowledged, then SIGKILL.
    let s = start(data);
    assert_eq!(
        s.status(&a1),
        Ok(alice.clone()),
        "an acknowledged login survives"
    );
    assert_eq!(s.status(&b1), Ok(bob.clone()));
    let (status, _, body) = s.post_as(&a1, "/v1/logout", "");
    assert_eq!(status, 204, "{body}");
    s.kill9();

    // Password change acknowledged, then SIGKILL.
    let s = start(data);
    assert_eq!(s.status(&a1), Err("logged_out".into()));
    assert_eq!(s.status(&a2), Ok(alice.clone()));
    let change = format!(r#"{{"current_password":"{ALICE_PW}","new_password":"{ALICE_NEW_PW}"}}"#);
    let (status, head, body) = s.post_as(&a2, "/v1/password", &change);
    assert_eq!(status, 200, "{body}");
    let fresh = Browser {
        cookie: cookie_of(&head),
        csrf: json_field(&body, "csrf_token"),
    };
    s.kill9();

    // Admin revoke-all acknowledged, then SIGKILL.
    let s = start(data);
    assert_eq!(s.status(&a2), Err("password_changed".into()));
    assert_eq!(s.status(&a3), Err("password_changed".into()));
    assert_eq!(
        s.status(&fresh),
        Ok(alice.clone()),
        "the changing device keeps a session"
    );
    assert_eq!(
        s.login("alice", ALICE_PW).err(),
        Some(401),
        "the old password is dead"
    );
    assert!(s.login("alice", ALICE_NEW_PW).is_ok());
    let bearer = format!("Bearer {}", s.admin);
    let (status, _, body) = http(
        &s.addr,
        "POST",
        &format!("/v1/admin/users/{bob}/revoke"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        r#"{"reason":"revoked_by_admin"}"#,
    );
    assert_eq!(status, 200, "{body}");
    s.kill9();

    let s = start(data);
    assert_eq!(s.status(&b1), Err("revoked_by_admin".into()));
    assert_eq!(
        s.status(&fresh),
        Ok(alice),
        "other users' revocations touch nobody else"
    );
    assert_eq!(
        s.status(&a1),
        Err("logged_out".into()),
        "still logged out two crashes later"
    );
    s.kill9();
}
