//! Named API tokens with scopes, through the real binary and daemon.

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

    // Revoked: refused by the running daemon from the next request on.
    home.cmd()
        .args(["tokens", "revoke", "ci"])
        .assert()
        .success();
    assert_eq!(
        http("GET", &url("/api/v1/health"), Some(&runner), &[], None).0,
        401,
        "the revoked token still works"
    );
    home.cmd()
        .args(["tokens", "revoke", "init"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cannot be revoked"));
}

#[test]
fn every_route_refuses_an_under_scoped_token() {
    use fuse::store::tokens::Scope;
    let home = TestHome::initialized();
    let reader = new_token(&home, "reader", "read");
    let runner = new_token(&home, "runner", "run");
    let d = start(&home);
    let mut checked = 0;
    for op in fuse::api::Op::ALL {
        let route = op.route();
        let url = format!(
            "{}{}{}",
            d.url,
            fuse::api::PREFIX,
            route
                .path
                .replace("{name}", "x")
                .replace("{id}", "x")
                .replace("{version}", "1")
        );
        for (token, scope) in [(&reader, Scope::Read), (&runner, Scope::Run)] {
            let (code, body) = http(route.method, &url, Some(token), &[], Some(&json!({})));
            if scope < route.scope {
                assert_eq!(code, 403, "{op:?} with a {scope:?} token: {body}");
                assert_eq!(body["error"]["details"]["needed"], route.scope.as_str());
                checked += 1;
            } else {
                assert!(
                    code != 403 && code != 401,
                    "{op:?} with a {scope:?} token: {code} {body}"
                );
            }
        }
    }
    assert!(checked >= 15, "{checked}");
}

/// (status, headers) of one request with extra headers.
fn raw(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.headers().clone())
    })
}

#[test]
fn cors_is_off_by_default_and_allows_listed_origins() {
    let home = TestHome::initialized();
    let d = start(&home);
    let health = format!("{}/api/v1/health", d.url);
    let (code, headers) = raw(
        "GET",
        &health,
        Some(&d.token),
        &[("Origin", "http://app.local")],
    );
    assert_eq!(code, 200);
    assert!(headers.get("access-control-allow-origin").is_none());
    let (code, _) = raw("OPTIONS", &health, None, &[("Origin", "http://app.local")]);
    assert_eq!(code, 403);
    home.cmd().arg("stop").assert().success();
    drop(d);

    let d = crate::daemon::start_with(
        &home,
        &[("FUSE_DAEMON_CORS_ORIGINS", r#"["http://app.local"]"#)],
    );
    let health = format!("{}/api/v1/health", d.url);
    let (code, headers) = raw(
        "OPTIONS",
        &health,
        None,
        &[
            ("Origin", "http://app.local"),
            ("Access-Control-Request-Method", "GET"),
        ],
    );
    assert_eq!(code, 204);
    assert_eq!(headers["access-control-allow-origin"], "http://app.local");
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let (code, headers) = raw(
        "GET",
        &health,
        Some(&d.token),
        &[("Origin", "http://app.local")],
    );
    assert_eq!(
        (code, &headers["access-control-allow-origin"]),
        (200, &"http://app.local".parse().unwrap())
    );
    // Another origin gets nothing: the browser refuses it.
    let (code, headers) = raw(
        "GET",
        &health,
        Some(&d.token),
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(code, 200);
    assert!(headers.get("access-control-allow-origin").is_none());
    // A preflight does not replace the token.
    assert_eq!(
        raw("GET", &health, None, &[("Origin", "http://app.local")]).0,
        401
    );
}

#[test]
fn the_api_rate_limit_is_per_token() {
    let home = TestHome::initialized();
    let first = new_token(&home, "first", "read");
    let other = new_token(&home, "other", "read");
    // One request every 5 s, bursts of one: of 6 quick requests the first
    // gets through (and a second only if the six took over 5 s). (The home's
    // own token is not used: `fuse start` spends a request of it on the
    // dashboard's sign-in link.)
    let d = crate::daemon::start_with(&home, &[("FUSE_DAEMON_API_RATE_LIMIT", "0.2")]);
    let health = format!("{}/api/v1/health", d.url);
    let answers: Vec<(u16, reqwest::header::HeaderMap)> = (0..6)
        .map(|_| raw("GET", &health, Some(&first), &[]))
        .collect();
    let ok = answers.iter().filter(|(c, _)| *c == 200).count();
    assert!((1..=2).contains(&ok), "{ok} of 6 got through");
    assert_eq!(answers[0].0, 200, "the first of a burst");
    let (_, limited) = answers.iter().find(|(c, _)| *c == 429).expect("a 429");
    assert!(limited.get("retry-after").is_some());
    // Another token has its own bucket.
    assert_eq!(raw("GET", &health, Some(&other), &[]).0, 200);
}

#[test]
fn a_wrong_method_is_405_with_allow_on_every_route() {
    let home = TestHome::initialized();
    let reader = new_token(&home, "reader2", "read");
    let d = start(&home);
    let (_, doc) = d.call("GET", "/api/v1/openapi.json", None);
    let mut checked = 0;
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{name}", "x")
            .replace("{id}", "x")
            .replace("{version}", "1");
        let has: Vec<String> = methods
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        let wrong = ["GET", "POST", "PUT", "DELETE"]
            .into_iter()
            .find(|m| !has.iter().any(|h| h == m))
            .unwrap();
        // Even a read token gets 405, not 403: the method is wrong whatever the scope.
        let (code, headers) = raw(wrong, &format!("{}{concrete}", d.url), Some(&reader), &[]);
        assert_eq!(code, 405, "{wrong} {path}");
        let allow = headers["allow"].to_str().unwrap().to_string();
        for m in &has {
            assert!(
                allow.contains(m.as_str()),
                "{path}: Allow {allow} lacks {m}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "{checked}");
}
