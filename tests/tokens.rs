//! Named API tokens with scopes, through the real binary and daemon.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::daemon::{http, start};
use crate::helper::{TestHome, stdout_of};

fn new_token(home: &TestHome, name: &str, scope: &str) -> String {
    let out = stdout_of(
        home.cmd()
            .args(["tokens", "new", name, "--scope", scope, "--json"]),
    );
    let made: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(made["scope"], scope);
    made["token"].as_str().unwrap().to_string()
}

#[test]
fn tokens_have_scopes_are_listed_without_secrets_and_can_be_revoked() {
    let home = TestHome::initialized();
    let reader = new_token(&home, "grafana", "read");
    let runner = new_token(&home, "ci", "run");
    home.cmd()
        .args(["tokens", "new", "ci", "--scope", "read"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("a token named \"ci\" exists"));
    let d = start(&home);
    let wf = json!({"name": "w", "nodes": [{"id": "a", "type": "log", "data": {"inputs": {"message": "x"}}}], "edges": []});
    let url = |p: &str| format!("{}{p}", d.url);
    // read: reads only.
    assert_eq!(
        http("GET", &url("/api/v1/workflows"), Some(&reader), &[], None).0,
        200
    );
    let (code, err) = http(
        "POST",
        &url("/api/v1/workflows"),
        Some(&reader),
        &[],
        Some(&wf),
    );
    assert_eq!(code, 403, "{err}");
    assert_eq!(err["error"]["code"], "forbidden");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has scope read"),
        "{err}"
    );
    // admin (the init token) deploys; run starts runs but does not deploy.
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf.clone())).0, 201);
    assert_eq!(
        http(
            "POST",
            &url("/api/v1/workflows"),
            Some(&runner),
            &[],
            Some(&wf)
        )
        .0,
        403
    );
    let (code, r) = http(
        "POST",
        &url("/api/v1/workflows/w/run"),
        Some(&runner),
        &[],
        Some(&json!({})),
    );
    assert_eq!(code, 202, "{r}");
    assert_eq!(
        http(
            "POST",
            &url("/api/v1/workflows/w/run"),
            Some(&reader),
            &[],
            Some(&json!({}))
        )
        .0,
        403
    );

    // Listed with scope and last use, never the token.
    let listed = stdout_of(home.cmd().args(["tokens", "list", "--json"]));
    assert!(!listed.contains(&reader) && !listed.contains(&runner));
    let all: Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["init", "grafana", "ci"]);
    assert_eq!(all[0]["scope"], "admin");
    assert!(all[2]["last_used_at"].is_i64(), "{all}");
    // Stored hashed.
    let db = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    let stored: String = db
        .query_row("SELECT hash FROM api_tokens WHERE name = 'ci'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_ne!(stored, runner);

    // Revoked: refused by the running daemon within a second or so.
    home.cmd()
        .args(["tokens", "revoke", "ci"])
        .assert()
        .success();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http("GET", &url("/api/v1/health"), Some(&runner), &[], None).0 != 401 {
        assert!(Instant::now() < deadline, "the revoked token still works");
        std::thread::sleep(Duration::from_millis(50));
    }
    home.cmd()
        .args(["tokens", "revoke", "init"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cannot be revoked"));
}

#[test]
fn every_route_refuses_an_under_scoped_token() {
    let home = TestHome::initialized();
    let reader = new_token(&home, "reader", "read");
    let d = start(&home);
    let (_, doc) = d.call("GET", "/api/v1/openapi.json", None);
    let mut checked = 0;
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{name}", "x").replace("{id}", "x");
        for method in methods.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            if method == "GET" {
                continue;
            }
            let (code, body) = http(
                &method,
                &format!("{}{concrete}", d.url),
                Some(&reader),
                &[],
                Some(&json!({})),
            );
            assert_eq!(code, 403, "{method} {path} with a read token: {body}");
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked}");
}
