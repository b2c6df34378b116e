//! The OpenAPI document at `GET /v1/openapi.json`: OpenAPI 3.1, describing
//! exactly the router's JSON routes (and not the HTML pages), with the security
//! schemes its operations use. Schemathesis holds the server to it
//! (`tests/schemathesis.rs`).

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::*;
use sessionguard_core::{ManualClock, MemoryStore};

async fn document(app: &TestApp) -> serde_json::Value {
    let res = Req::get("/v1/openapi.json").send(app).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("application/json"));
    res.json()
}

#[tokio::test]
async fn the_document_describes_every_json_route_and_no_page() {
    let app = TestApp::new();
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed: BTreeSet<String> = sessionguard_server::api_routes::<TestStore, ManualClock>()
        .into_iter()
        .map(|(path, _)| path.to_owned())
        .collect();
    assert_eq!(documented, routed);
    for page in sessionguard_server::pages::routes::<MemoryStore, ManualClock>() {
        assert!(!documented.contains(page.0), "{} is a page", page.0);
    }
}

#[tokio::test]
async fn every_operation_documents_its_answers_and_security() {
    let app = TestApp::new();
    let doc = document(&app).await;
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for scheme in [
        "session_cookie",
        "csrf_token",
        "bearer",
        "admin",
        "introspection",
    ] {
        assert!(schemes.contains_key(scheme), "{scheme}");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success"
            );
            assert!(responses.contains_key("431"), "{method} {path}");
            for requirement in op["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(name), "{method} {path}: {name}");
                }
            }
        }
    }
    let admin = &doc["paths"]["/v1/admin/users"]["post"];
    assert_eq!(admin["security"], serde_json::json!([{ "admin": [] }]));
    let login = &doc["paths"]["/v1/login"]["post"]["requestBody"]["content"];
    assert!(
        login["application/x-www-form-urlencoded"].is_object(),
        "login takes forms"
    );
    let token_error = &doc["paths"]["/v1/token"]["post"]["responses"]["400"]["content"];
    assert!(
        token_error["application/json"].is_object(),
        "the token endpoint answers RFC 6749 errors"
    );
    let codes = &doc["paths"]["/v1/auth"]["get"]["responses"]["401"]["content"]["application/problem+json"]
        ["schema"]["allOf"][1]["properties"]["code"]["enum"];
    for code in [
        "missing_credentials",
        "invalid_token",
        "logged_out",
        "idle_timeout",
    ] {
        assert!(
            codes.as_array().unwrap().iter().any(|c| c == code),
            "{code} in {codes}"
        );
    }
}
