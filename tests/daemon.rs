//! The daemon as a real process on an ephemeral port: auth on every route,
//! workflow deploy/run round trips, webhooks, start/stop/status, and runs left
//! behind by a killed daemon.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helper::TestHome;

pub struct Daemon<'a> {
    pub home: &'a TestHome,
    pub url: String,
    pub token: String,
    pub pid: u32,
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        // SAFETY: kills the daemon this test started.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
    }
}

pub fn start(home: &TestHome) -> Daemon<'_> {
    start_with(home, &[])
}

pub fn start_with<'a>(home: &'a TestHome, env: &[(&str, &str)]) -> Daemon<'a> {
    let mut cmd = home.cmd();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(["start", "--port", "0"])
        .assert()
        .success()
        .stdout(predicates::str::contains("fuse daemon started"));
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("daemon.json")).unwrap())
            .unwrap();
    let token = std::fs::read_to_string(home.path().join("api-token"))
        .unwrap()
        .trim()
        .to_string();
    Daemon {
        url: format!("http://{}:{}", info["host"].as_str().unwrap(), info["port"]),
        pid: info["pid"].as_u64().unwrap() as u32,
        token,
        home,
    }
}

/// One HTTP request: (status, JSON body or null).
pub fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), url)
            .timeout(Duration::from_secs(10));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    })
}

impl Daemon<'_> {
    /// Kills the daemon (SIGKILL) and returns once the process is gone.
    pub fn kill(&self) {
        // SAFETY: a pidfd of the daemon this test started, then SIGKILL to it.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid as libc::c_int, 0) };
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
        }
        if fd < 0 {
            // Already gone (or reaped).
            return;
        }
        // The pidfd becomes readable when the process has exited.
        let mut poll = libc::pollfd {
            fd: fd as libc::c_int,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the fd is closed right after.
        let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
        unsafe {
            libc::close(fd as libc::c_int);
        }
        assert_eq!(
            ready, 1,
            "the daemon {} did not exit within 10 s of SIGKILL",
            self.pid
        );
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http(
            method,
            &format!("{}{path}", self.url),
            Some(&self.token),
            &[],
            body.as_ref(),
        )
    }

    pub fn wait_run(&self, id: &str) -> Value {
        wait_run(&self.url, &self.token, id)
    }

    /// Polls until run `id` has `status` (10 s at most); returns its record.
    pub fn wait_status(&self, id: &str, status: &str) -> Value {
        wait_for(&format!("run {id} to be {status}"), || {
            let (code, run) = self.call("GET", &format!("/api/v1/executions/{id}"), None);
            (code == 200 && run["status"] == status).then_some(run)
        })
    }
}

/// Polls `check` until it gives a value (10 s at most, then fails naming `what`).
pub fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_for_within(what, Duration::from_secs(10), check)
}

pub use crate::wait::wait_for_within;

/// Polls the daemon at `url` until run `id` is recorded as finished (20 s at most).
pub fn wait_run(url: &str, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, run) = http(
            "GET",
            &format!("{url}/api/v1/executions/{id}"),
            Some(token),
            &[],
            None,
        );
        if code == 200 && !matches!(run["status"].as_str(), Some("running") | Some("queued")) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} did not finish: {run}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const HOOK: &str = r#"{"name": "hook", "nodes": [
  {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "orders/new", "method": "POST"}}},
  {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"id": "{{ trigger.body.id }}", "src": "{{ trigger.query.src }}"}}}}
], "edges": [{"source": "t", "target": "s"}]}"#;

/// Every `$ref` in `value` points at something in `doc`.
fn refs_resolve(doc: &Value, value: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let pointer = r.trim_start_matches('#');
                assert!(doc.pointer(pointer).is_some(), "{at}: dangling $ref {r}");
            }
            for (k, v) in map {
                refs_resolve(doc, v, &format!("{at}/{k}"));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs_resolve(doc, v, at)),
        _ => {}
    }
}

#[test]
fn every_route_of_the_table_is_documented_with_schemas_and_needs_the_token() {
    let home = TestHome::initialized();
    let d = start(&home);
    let (code, doc) = d.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    // The real address, not a default port.
    assert_eq!(doc["servers"][0]["url"], d.url.as_str());
    refs_resolve(&doc, &doc, "");
    let paths = doc["paths"].as_object().unwrap();
    // The table and the document are the same list.
    let documented: usize = paths.values().map(|m| m.as_object().unwrap().len()).sum();
    assert_eq!(documented, fuse::api::Op::ALL.len());
    let mut checked = 0;
    for op in fuse::api::Op::ALL {
        let route = op.route();
        let path = format!("{}{}", fuse::api::PREFIX, route.path);
        let entry = &doc["paths"][&path][route.method.to_lowercase()];
        assert!(
            entry.is_object(),
            "{op:?} ({} {path}) is not documented",
            route.method
        );
        let responses = entry["responses"].as_object().unwrap();
        let ok = route.ok_status().to_string();
        let media = match route.answer {
            fuse::api::Answer::EventStream => "text/event-stream",
            _ => "application/json",
        };
        if ok != "101" {
            assert!(
                responses[&ok]["content"][media]["schema"].is_object(),
                "{op:?}: no schema for {ok}"
            );
        }
        for status in ["401", "403", "429", "500"] {
            assert_eq!(
                responses[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{op:?} {status}"
            );
        }
        for status in route.errors {
            assert!(
                responses.contains_key(&status.to_string()),
                "{op:?} lacks {status}"
            );
        }
        // PUT creates what it names.
        if route.params().next().is_some() && route.method != "PUT" {
            assert!(
                responses.contains_key("404"),
                "{op:?} takes a name or id but has no 404"
            );
        }
        assert_eq!(
            entry["requestBody"]["content"]["application/json"]["schema"].is_object(),
            route.body.is_some(),
            "{op:?} request body"
        );
        let concrete = path
            .replace("{name}", "x")
            .replace("{id}", "x")
            .replace("{version}", "1");
        for token in [None, Some("wrong-token")] {
            let (code, body) = http(
                route.method,
                &format!("{}{concrete}", d.url),
                token,
                &[],
                Some(&json!({})),
            );
            assert_eq!(code, 401, "{op:?} with {token:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        checked += 1;
    }
    assert!(checked >= 25, "{checked} routes checked");
    let (code, health) = d.call("GET", "/api/v1/health", None);
    assert_eq!(code, 200);
    assert_eq!(health["status"], "ok");
    let (code, _) = d.call("DELETE", "/api/v1/health", None);
    assert_eq!(code, 405);
    let (code, _) = d.call("GET", "/api/v1/nope", None);
    assert_eq!(code, 404);
}

#[test]
fn versions_rollback_enable_disable_delete_cancel_retry_and_credentials() {
    let home = TestHome::initialized();
    let d = start(&home);
    let version = |n: i64| {
        json!({"name": "v", "nodes": [{"id": "s", "type": "transform.set",
            "data": {"inputs": {"values": {"version": n, "got": "{{ trigger.x }}"}}}}], "edges": []})
    };
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(version(1))).0, 201);
    let (code, v2) = d.call("PUT", "/api/v1/workflows/v", Some(version(2)));
    assert_eq!((code, v2["version"].clone()), (201, json!(2)));
    let (_, versions) = d.call("GET", "/api/v1/workflows/v/versions", None);
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    assert_eq!(versions["versions"][0]["current"], true);
    let run_output = |d: &Daemon<'_>| {
        let (code, started) = d.call("POST", "/api/v1/workflows/v/run", Some(json!({"x": "in"})));
        assert_eq!(code, 202, "{started}");
        let id = started["run_id"].as_str().unwrap().to_string();
        (id.clone(), d.wait_run(&id)["output"].clone())
    };
    assert_eq!(run_output(&d).1["version"], 2);
    assert_eq!(
        d.call(
            "POST",
            "/api/v1/workflows/v/rollback",
            Some(json!({"version": 1}))
        )
        .0,
        200
    );
    let (first_id, out) = run_output(&d);
    assert_eq!(out, json!({"version": 1, "got": "in"}));
    assert_eq!(
        d.call(
            "POST",
            "/api/v1/workflows/v/rollback",
            Some(json!({"version": 9}))
        )
        .0,
        404
    );

    // Retry runs the recorded definition and input again.
    let (code, retried) = d.call(
        "POST",
        &format!("/api/v1/executions/{first_id}/retry"),
        None,
    );
    assert_eq!(code, 202, "{retried}");
    let run = d.wait_run(retried["run_id"].as_str().unwrap());
    assert_eq!(
        (run["trigger"].clone(), run["output"].clone()),
        (json!("retry"), json!({"version": 1, "got": "in"}))
    );
    let (code, logs) = d.call("GET", &format!("/api/v1/executions/{first_id}/logs"), None);
    assert_eq!(code, 200, "{logs}");

    assert_eq!(d.call("POST", "/api/v1/workflows/v/disable", None).0, 200);
    assert_eq!(
        d.call("POST", "/api/v1/workflows/v/run", Some(json!({}))).0,
        409
    );
    assert_eq!(d.call("POST", "/api/v1/workflows/v/enable", None).0, 200);
    assert_eq!(d.call("DELETE", "/api/v1/workflows/v", None).0, 200);
    assert_eq!(d.call("GET", "/api/v1/workflows/v", None).0, 404);

    // Cancel a run in flight.
    let wf = json!({"name": "long", "nodes": [{"id": "w", "type": "flow.wait", "data": {"inputs": {"duration": "30s"}}}], "edges": []});
    d.call("POST", "/api/v1/workflows", Some(wf));
    let (_, started) = d.call("POST", "/api/v1/workflows/long/run", Some(json!({})));
    let id = started["run_id"].as_str().unwrap().to_string();
    d.wait_status(&id, "running");
    assert_eq!(
        d.call("POST", &format!("/api/v1/executions/{id}/cancel"), None)
            .0,
        202
    );
    assert_eq!(d.wait_run(&id)["status"], "cancelled");
    assert_eq!(
        d.call("POST", &format!("/api/v1/executions/{id}/cancel"), None)
            .0,
        409
    );

    // Credentials: names and types only, never values.
    let (code, _) = d.call(
        "POST",
        "/api/v1/credentials",
        Some(json!({"name": "api", "type": "bearer", "fields": {"token": "api-created-secret-1"}})),
    );
    assert_eq!(code, 201);
    let (_, creds) = d.call("GET", "/api/v1/credentials", None);
    assert_eq!(creds["credentials"][0]["name"], "api");
    assert!(!creds.to_string().contains("api-created-secret-1"));
    assert_eq!(d.call("DELETE", "/api/v1/credentials/api", None).0, 200);
    let (_, nodes) = d.call("GET", "/api/v1/nodes", None);
    assert!(
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "http.request")
    );
}

#[test]
fn deploy_run_and_read_back_through_the_api() {
    let home = TestHome::initialized();
    let d = start(&home);
    let (code, bad) = d.call(
        "POST",
        "/api/v1/workflows",
        Some(json!({"name": "bad", "nodes": [{"id": "a", "type": "nope.nope"}], "edges": []})),
    );
    assert_eq!(code, 422, "{bad}");
    assert!(
        bad["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown node type")
    );

    let wf = json!({"name": "double", "nodes": [{"id": "d", "type": "transform.set",
        "data": {"inputs": {"values": {"twice": "{{ trigger.n * 2 }}"}}}}], "edges": []});
    let (code, v1) = d.call("POST", "/api/v1/workflows", Some(wf.clone()));
    assert_eq!((code, v1["version"].clone()), (201, json!(1)));
    // Identical content is the same version; a change is a new one.
    let (code, same) = d.call("POST", "/api/v1/workflows", Some(wf.clone()));
    assert_eq!((code, same["version"].clone()), (200, json!(1)));
    let mut changed = wf;
    changed["description"] = json!("doubles n");
    let (_, v2) = d.call("POST", "/api/v1/workflows", Some(changed));
    assert_eq!(v2["version"], 2);
    let (_, list) = d.call("GET", "/api/v1/workflows", None);
    assert_eq!(list["workflows"][0]["name"], "double");
    assert_eq!(list["workflows"][0]["version"], 2);
    // Paging through executions.
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, r) = d.call(
            "POST",
            "/api/v1/workflows/double/run",
            Some(json!({"n": n})),
        );
        ids.push(r["run_id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        d.wait_run(id);
    }
    let (_, page1) = d.call("GET", "/api/v1/executions?workflow=double&limit=2", None);
    let (_, page2) = d.call(
        "GET",
        "/api/v1/executions?workflow=double&limit=2&offset=2",
        None,
    );
    assert_eq!(page1["executions"].as_array().unwrap().len(), 2);
    assert_eq!(page2["executions"].as_array().unwrap().len(), 1);
    assert_eq!(page2["executions"][0]["id"], json!(ids[0]), "newest first");

    let (code, started) = d.call(
        "POST",
        "/api/v1/workflows/double/run",
        Some(json!({"n": 21})),
    );
    assert_eq!(code, 202, "{started}");
    let run = d.wait_run(started["run_id"].as_str().unwrap());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], json!({"twice": 42}));
    assert_eq!(run["trigger"], "manual");
    let (code, _) = d.call("POST", "/api/v1/workflows/missing/run", Some(json!({})));
    assert_eq!(code, 404);
    // The same run is in the CLI's history.
    d.home
        .cmd()
        .args(["runs", "list"])
        .assert()
        .success()
        .stdout(predicates::str::contains("double"));
}

#[test]
fn webhooks_start_runs_with_the_request_as_trigger() {
    let home = TestHome::initialized();
    let d = start(&home);
    let (code, _) = d.call(
        "POST",
        "/api/v1/workflows",
        Some(serde_json::from_str(HOOK).unwrap()),
    );
    assert_eq!(code, 201);
    let (code, accepted) = http(
        "POST",
        &format!("{}/webhook/orders/new?src=shop", d.url),
        None,
        &[("X-Trace", "abc")],
        Some(&json!({"id": 7})),
    );
    assert_eq!(code, 202);
    let id = accepted["run_id"].as_str().unwrap().to_string();
    let run = d.wait_run(&id);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "webhook");
    assert_eq!(run["output"], json!({"id": 7, "src": "shop"}));
    assert_eq!(run["input"]["headers"]["x-trace"], "abc");
    assert_eq!(run["input"]["method"], "POST");

    let (code, _) = http(
        "GET",
        &format!("{}/webhook/orders/new", d.url),
        None,
        &[],
        None,
    );
    assert_eq!(code, 405);
    let (code, _) = http(
        "POST",
        &format!("{}/webhook/unknown", d.url),
        None,
        &[],
        None,
    );
    assert_eq!(code, 404);
}

#[test]
fn a_large_webhook_body_is_kept_as_a_blob_and_read_back_whole() {
    let home = TestHome::initialized();
    let d = start_with(&home, &[("FUSE_HISTORY_BLOB_THRESHOLD", "1024")]);
    let (code, _) = d.call(
        "POST",
        "/api/v1/workflows",
        Some(serde_json::from_str(HOOK).unwrap()),
    );
    assert_eq!(code, 201);
    let big = "x".repeat(8_000);
    let (code, accepted) = http(
        "POST",
        &format!("{}/webhook/orders/new?src=big", d.url),
        None,
        &[],
        Some(&json!({"id": 8, "note": big})),
    );
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["run_id"].as_str().unwrap().to_string();
    let run = d.wait_run(&id);
    assert_eq!(run["status"], "succeeded", "{}", run["error"]);
    assert!(
        run["input"]["body"]["note"] == json!(big),
        "the input is read back whole"
    );
    // The accepted row points at a blob file instead of holding 8 KB inline.
    let blobs: Vec<_> = walk(&home.path().join("blobs"));
    assert!(
        blobs
            .iter()
            .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&big))),
        "no blob holds the body: {blobs:?}"
    );
    let conn = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    let (input, hash): (String, Option<String>) = conn
        .query_row(
            "SELECT input, workflow_hash FROM executions WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(input.contains("$blob") && input.len() < 200, "{input}");
    // Started by the daemon: the row names the definition it ran.
    let hash = hash.expect("the run names its definition");
    let stored: i64 = conn
        .query_row(
            "SELECT count(*) FROM definitions WHERE hash = ?1",
            [&hash],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn start_stop_status_and_a_second_start_is_refused() {
    let home = TestHome::initialized();
    // A stale file from a daemon that died is cleaned up, not obeyed.
    std::fs::write(
        home.path().join("daemon.json"),
        r#"{"pid": 999999, "host": "127.0.0.1", "port": 1, "started_at": "x"}"#,
    )
    .unwrap();
    home.cmd().arg("status").assert().code(3);
    let d = start(&home);
    d.home
        .cmd()
        .args(["start", "--port", "0"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("already running"));
    let out = d.home.cmd().args(["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["health"]["status"], "ok");

    // A run in flight when `stop` comes is allowed to finish.
    let wf = json!({"name": "slow", "nodes": [{"id": "w", "type": "flow.wait", "data": {"inputs": {"duration": "1s"}}}], "edges": []});
    d.call("POST", "/api/v1/workflows", Some(wf));
    let (_, started) = d.call("POST", "/api/v1/workflows/slow/run", Some(json!({})));
    let id = started["run_id"].as_str().unwrap().to_string();
    d.wait_status(&id, "running");
    d.home.cmd().arg("stop").assert().success();
    assert!(!d.home.path().join("daemon.json").exists());
    let shown = d
        .home
        .cmd()
        .args(["runs", "show", &id, "--json"])
        .output()
        .unwrap();
    let run: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    d.home.cmd().arg("stop").assert().code(1);
}

#[test]
fn runs_of_a_killed_daemon_are_marked_interrupted_at_the_next_start() {
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "long", "nodes": [{"id": "w", "type": "flow.wait", "data": {"inputs": {"duration": "60s"}}}], "edges": []});
    d.call("POST", "/api/v1/workflows", Some(wf));
    let (_, started) = d.call("POST", "/api/v1/workflows/long/run", Some(json!({})));
    let id = started["run_id"].as_str().unwrap().to_string();
    // Wait until the run is recorded as running, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, run) = d.call("GET", &format!("/api/v1/executions/{id}"), None);
        if code == 200 && run["status"] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run was never recorded as running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.kill();
    let d2 = start(&home);
    let (_, run) = d2.call("GET", &format!("/api/v1/executions/{id}"), None);
    assert_eq!(run["status"], "interrupted", "{run}");
}

#[test]
fn no_accepted_webhook_run_is_lost_when_the_daemon_is_killed() {
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "slowhook", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "slow"}}},
        {"id": "w", "type": "flow.wait", "data": {"inputs": {"duration": "{{ trigger.body.wait }}"}}}
    ], "edges": [{"source": "t", "target": "w"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let mut accepted = Vec::new();
    for i in 0..50 {
        // Some finish at once, most are still waiting when the daemon dies.
        let wait = if i % 5 == 0 { "1ms" } else { "30s" };
        let (code, body) = http(
            "POST",
            &format!("{}/webhook/slow", d.url),
            None,
            &[],
            Some(&json!({"wait": wait})),
        );
        assert_eq!(code, 202, "{body}");
        accepted.push(body["run_id"].as_str().unwrap().to_string());
    }
    // The last (long) one has started: the runs are in flight.
    d.wait_status(&accepted[49], "running");
    d.kill();
    let d2 = start(&home);
    let mut counts = std::collections::BTreeMap::new();
    for id in &accepted {
        let (code, run) = d2.call("GET", &format!("/api/v1/executions/{id}"), None);
        assert_eq!(code, 200, "accepted run {id} is missing: {run}");
        let status = run["status"].as_str().unwrap().to_string();
        assert!(
            status == "succeeded" || status == "interrupted",
            "{id}: {status}"
        );
        *counts.entry(status).or_insert(0) += 1;
    }
    // The 40 long runs were certainly cut short; the quick ones may have been
    // recorded as finished before the kill, or not.
    assert!(
        counts.get("interrupted").copied().unwrap_or(0) >= 40,
        "{counts:?}"
    );
}

#[test]
fn fuse_cron_prints_fire_times_across_dst() {
    let home = TestHome::new();
    let out = home
        .cmd()
        .args([
            "cron",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--from",
            "2026-03-27T00:00:00Z",
            "--count",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let utc: Vec<&str> = v["fires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["utc"].as_str().unwrap())
        .collect();
    // 02:30 does not exist on 2026-03-29 (clocks jump to 03:00): it fires at 03:00 CEST.
    assert_eq!(
        utc,
        [
            "2026-03-27T01:30:00Z",
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z"
        ]
    );
    // On 2026-10-25 02:30 happens twice (clocks go back): it fires once.
    let out = home
        .cmd()
        .args([
            "cron",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--from",
            "2026-10-24T12:00:00Z",
            "--count",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fires"][0]["utc"], "2026-10-25T00:30:00Z");
    assert_eq!(v["fires"][1]["utc"], "2026-10-26T01:30:00Z");
    home.cmd()
        .args(["cron", "61 * * * *"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("is not valid"));
    home.cmd()
        .args(["cron", "* * * * *", "--tz", "Mars/Base"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("unknown time zone"));
}

fn runs_of(d: &Daemon<'_>, workflow: &str) -> Vec<Value> {
    let (_, list) = d.call(
        "GET",
        &format!("/api/v1/executions?workflow={workflow}&limit=0"),
        None,
    );
    list["executions"].as_array().cloned().unwrap_or_default()
}

#[test]
fn cron_fires_every_second_and_bad_schedules_are_refused() {
    let home = TestHome::initialized();
    let d = start(&home);
    let (code, bad) = d.call(
        "POST",
        "/api/v1/workflows",
        Some(json!({"name": "bad", "nodes": [{"id": "c", "type": "trigger.cron", "data": {"inputs": {"cron": "99 * * * *"}}}], "edges": []})),
    );
    assert_eq!(code, 422, "{bad}");
    let wf = json!({"name": "ticker", "nodes": [
        {"id": "c", "type": "trigger.cron", "data": {"inputs": {"cron": "* * * * * *"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"at": "{{ trigger.fired_at }}"}}}}
    ], "edges": [{"source": "c", "target": "s"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    std::thread::sleep(Duration::from_millis(3500));
    let runs = runs_of(&d, "ticker");
    assert!(
        (2..=5).contains(&runs.len()),
        "{} runs in 3.5 s: {runs:?}",
        runs.len()
    );
    assert!(runs.iter().all(|r| r["trigger"] == "cron"));
    let status = home.cmd().args(["status", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["schedules"][0]["workflow"], "ticker");
    assert!(status["schedules"][0]["next_fire_at"].is_string());
}

#[test]
fn missed_fires_follow_the_policy_across_a_restart() {
    let home = TestHome::initialized();
    {
        let d = start(&home);
        for (name, missed) in [("once", "run_once"), ("skipper", "skip")] {
            let wf = json!({"name": name, "nodes": [{"id": "c", "type": "trigger.cron",
                "data": {"inputs": {"cron": "0 0 1 1 *", "missed": missed}}}], "edges": []});
            assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
        }
        home.cmd().arg("stop").assert().success();
    }
    // While the daemon was down, the next fire time passed.
    let conn = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    conn.execute("UPDATE schedules SET next_fire_at = 1000", [])
        .unwrap();
    drop(conn);
    let d = start(&home);
    // Missed fires are handled before the daemon listens.
    let once = runs_of(&d, "once");
    assert_eq!(once.len(), 1, "run_once runs one missed fire: {once:?}");
    assert_eq!(runs_of(&d, "skipper").len(), 0, "skip runs none");
    // Both now wait for their next real fire (next 1 January), not the past one.
    let conn = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    let min: i64 = conn
        .query_row("SELECT min(next_fire_at) FROM schedules", [], |r| r.get(0))
        .unwrap();
    assert!(min > jiff::Timestamp::now().as_millisecond());
}

#[test]
fn overlap_skip_never_runs_two_at_once_and_queue_catches_up() {
    let home = TestHome::initialized();
    let d = start(&home);
    for (name, overlap) in [("skipping", "skip"), ("queueing", "queue")] {
        let wf = json!({"name": name, "nodes": [
            {"id": "c", "type": "trigger.cron", "data": {"inputs": {"cron": "* * * * * *", "overlap": overlap}}},
            {"id": "w", "type": "flow.wait", "data": {"inputs": {"duration": "2500ms"}}}
        ], "edges": [{"source": "c", "target": "w"}]});
        assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    }
    std::thread::sleep(Duration::from_millis(5500));
    // No run starts before the previous one of the same workflow has finished.
    let assert_serial = |runs: &[Value]| {
        let mut spans: Vec<(i64, Option<i64>)> = runs
            .iter()
            .map(|r| (r["created_at"].as_i64().unwrap(), r["duration_ms"].as_i64()))
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            let (start, duration) = pair[0];
            let Some(duration) = duration else {
                panic!("a run started while an earlier one was still running: {runs:?}");
            };
            assert!(
                start + duration <= pair[1].0 + 50,
                "overlapping runs: {runs:?}"
            );
        }
    };
    // skip: fires while a 2.5 s run is going are dropped, so at most 2-3 started.
    let skipping = runs_of(&d, "skipping");
    assert!((1..=3).contains(&skipping.len()), "{}", skipping.len());
    assert_serial(&skipping);
    // queue: runs never overlap either, but fires wait instead of being dropped.
    let queueing = runs_of(&d, "queueing");
    assert_serial(&queueing);
    assert!(
        queueing.len() >= skipping.len(),
        "queued fires run later instead of being dropped: {} vs {}",
        queueing.len(),
        skipping.len()
    );
}

#[test]
fn webhook_signatures_and_rate_limits() {
    use hmac::{Hmac, Mac};
    let home = TestHome::initialized();
    home.cmd()
        .args(["creds", "set", "hooksecret", "--type", "header", "--stdin"])
        .write_stdin(r#"{"name": "x", "value": "cred-hmac-secret"}"#)
        .assert()
        .success();
    let d = start(&home);
    let wf = |name: &str, inputs: Value| json!({"name": name, "nodes": [{"id": "t", "type": "trigger.webhook", "data": {"inputs": inputs}}], "edges": []});
    d.call(
        "POST",
        "/api/v1/workflows",
        Some(wf("signed", json!({"path": "signed", "secret": "s3cret"}))),
    );
    d.call("POST", "/api/v1/workflows", Some(wf("viacred", json!({"path": "viacred", "credential": "hooksecret", "signature_header": "X-Hub-Signature-256"}))));
    d.call(
        "POST",
        "/api/v1/workflows",
        Some(wf("limited", json!({"path": "limited", "rate_limit": 2}))),
    );
    let body = json!({"n": 1});
    let sign = |secret: &str| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.to_string().as_bytes());
        format!(
            "sha256={}",
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    };
    let post = |path: &str, headers: &[(&str, &str)]| {
        http(
            "POST",
            &format!("{}/webhook/{path}", d.url),
            None,
            headers,
            Some(&body),
        )
    };
    let good = sign("s3cret");
    assert_eq!(post("signed", &[("X-Fuse-Signature", &good)]).0, 202);
    let (code, err) = post("signed", &[("X-Fuse-Signature", &sign("wrong"))]);
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (401, Some("bad_signature"))
    );
    let (code, err) = post("signed", &[]);
    assert_eq!(code, 401);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a signature")
    );
    assert_eq!(
        post(
            "viacred",
            &[("X-Hub-Signature-256", &sign("cred-hmac-secret"))]
        )
        .0,
        202
    );
    assert_eq!(post("viacred", &[("X-Hub-Signature-256", &good)]).0, 401);

    // 2 per second: a burst of 6 gets 2 through, then 429s.
    let codes: Vec<u16> = (0..6).map(|_| post("limited", &[]).0).collect();
    assert_eq!(codes.iter().filter(|c| **c == 202).count(), 2, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 202 || *c == 429), "{codes:?}");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(post("limited", &[]).0, 202, "the bucket refills");
}

#[test]
fn webhook_respond_answers_the_caller() {
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "order", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "order"}}},
        {"id": "check", "type": "flow.if", "data": {"inputs": {"condition": "{{ trigger.body.id > 0 }}"}}},
        {"id": "ok", "type": "webhook.respond", "data": {"inputs": {"status": 201,
            "headers": {"X-Order": "{{ trigger.body.id }}"}, "body": {"accepted": "{{ trigger.body.id }}"}}}}
    ], "edges": [{"source": "t", "target": "check"}, {"source": "check", "sourceHandle": "true", "target": "ok"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, header, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}/webhook/order", d.url))
            .json(&json!({"id": 42}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let header = r
            .headers()
            .get("x-order")
            .map(|v| v.to_str().unwrap().to_string());
        (status, header, r.json::<Value>().await.unwrap())
    });
    assert_eq!(status, 201);
    assert_eq!(header.as_deref(), Some("42"));
    assert_eq!(body, json!({"accepted": 42}));
    // The branch with webhook.respond is skipped: the caller gets the plain 202.
    let (code, body) = http(
        "POST",
        &format!("{}/webhook/order", d.url),
        None,
        &[],
        Some(&json!({"id": -1})),
    );
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["responded"], false);
}

#[test]
fn the_workflows_folder_deploys_redeploys_and_disables() {
    let home = TestHome::initialized();
    let dir = home.path().join("workflows");
    // A file present before the start is deployed at start.
    let wf = |n: i64| {
        json!({"name": "folder-wf", "nodes": [{"id": "s", "type": "transform.set",
            "data": {"inputs": {"values": {"n": n}}}}], "edges": []})
    };
    std::fs::write(dir.join("folder-wf.json"), wf(1).to_string()).unwrap();
    let d = start(&home);
    let wait_for = |what: &str, check: &dyn Fn(&Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, v) = d.call("GET", "/api/v1/workflows", None);
            if check(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let version = |v: &Value| v["workflows"][0]["version"].as_i64().unwrap_or(0);
    wait_for("deployed at start", &|v| version(v) == 1);
    std::fs::write(dir.join("folder-wf.json"), wf(2).to_string()).unwrap();
    wait_for("a changed file is a new version", &|v| version(v) == 2);
    let (_, started) = d.call("POST", "/api/v1/workflows/folder-wf/run", Some(json!({})));
    assert_eq!(
        d.wait_run(started["run_id"].as_str().unwrap())["output"],
        json!({"n": 2})
    );

    // An invalid edit is logged; version 2 keeps running.
    std::fs::write(
        dir.join("folder-wf.json"),
        r#"{"name": "folder-wf", "nodes": [{"id": "x", "type": "nope"}]}"#,
    )
    .unwrap();
    super::daemon::wait_for("the invalid edit to be logged", || {
        let log = std::fs::read_to_string(home.path().join("logs/daemon.log")).unwrap();
        (log.contains("folder-wf.json: not deployed") && log.contains("unknown node type"))
            .then_some(())
    });
    let (_, v) = d.call("GET", "/api/v1/workflows", None);
    assert_eq!(version(&v), 2);

    std::fs::remove_file(dir.join("folder-wf.json")).unwrap();
    wait_for("a removed file disables the workflow", &|v| {
        v["workflows"][0]["enabled"] == false
    });
}

#[test]
fn max_runs_queues_and_queued_runs_survive_a_crash_and_resume_continues() {
    let home = TestHome::initialized();
    let marker = home.tmp().join("go");
    let counter = home.tmp().join("count");
    let d = start_with(&home, &[("FUSE_DAEMON_MAX_RUNS", "1")]);
    let wf = json!({"name": "slow", "settings": {"resume": true}, "nodes": [
        {"id": "count", "type": "exec.command", "data": {"inputs": {"argv": ["sh", "-c", format!("echo x >> {}", counter.display())]}}},
        {"id": "gate", "type": "exec.command", "data": {"inputs": {"argv": ["sh", "-c",
            format!("[ -n \"$FAST\" ] || test -f {} || sleep 20", marker.display())], "env": {"FAST": "{{ trigger.fast }}"}}}}
    ], "edges": [{"source": "count", "target": "gate"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (_, first) = d.call(
        "POST",
        "/api/v1/workflows/slow/run",
        Some(json!({"fast": ""})),
    );
    let first = first["run_id"].as_str().unwrap().to_string();
    let mut queued = Vec::new();
    for _ in 0..2 {
        let (_, r) = d.call(
            "POST",
            "/api/v1/workflows/slow/run",
            Some(json!({"fast": "yes"})),
        );
        queued.push(r["run_id"].as_str().unwrap().to_string());
    }
    // One slot: the first runs (blocked at the gate), the others wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&counter)
        .map(|c| c.lines().count())
        .unwrap_or(0)
        < 1
    {
        assert!(Instant::now() < deadline, "the first run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    for id in &queued {
        let (_, run) = d.call("GET", &format!("/api/v1/executions/{id}"), None);
        assert_eq!(run["status"], "queued", "{run}");
    }
    let (_, health) = d.call("GET", "/api/v1/health", None);
    assert_eq!(health["active_runs"], 3);

    // Crash. At the next start the queued runs run under their own ids, and the
    // interrupted one resumes after its finished node (count is not run again).
    d.kill();
    std::fs::write(&marker, "").unwrap();
    let d2 = start(&home);
    for id in &queued {
        assert_eq!(d2.wait_run(id)["status"], "succeeded");
    }
    assert_eq!(d2.wait_run(&first)["status"], "interrupted");
    let (_, list) = d2.call("GET", "/api/v1/executions?workflow=slow&limit=0", None);
    let resumed = list["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["retry_of"] == json!(first))
        .cloned()
        .expect("a resumed run");
    let resumed = d2.wait_run(resumed["id"].as_str().unwrap());
    assert_eq!(
        (resumed["status"].as_str(), resumed["trigger"].as_str()),
        (Some("succeeded"), Some("resume"))
    );
    // count ran for the first run and the two queued ones, not again for the resume.
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().lines().count(),
        3
    );
}

#[test]
fn a_run_can_be_followed_live_from_the_middle() {
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "steps", "nodes": [
        {"id": "first", "type": "log", "data": {"inputs": {"message": "step one"}}},
        {"id": "pause", "type": "flow.wait", "data": {"inputs": {"duration": "800ms"}}},
        {"id": "last", "type": "log", "data": {"inputs": {"message": "step two"}}}
    ], "edges": [{"source": "first", "target": "pause"}, {"source": "pause", "target": "last"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (_, started) = d.call("POST", "/api/v1/workflows/steps/run", Some(json!({})));
    let id = started["run_id"].as_str().unwrap().to_string();
    // Connect while the run waits: what happened before comes first, then the rest.
    wait_for("the first step to be recorded", || {
        let (_, run) = d.call("GET", &format!("/api/v1/executions/{id}"), None);
        run["nodes"]
            .as_array()
            .is_some_and(|n| {
                n.iter()
                    .any(|n| n["node_id"] == "first" && n["status"] == "succeeded")
            })
            .then_some(())
    });
    let out = home
        .cmd()
        .args(["logs", "-f", &id, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["type"].as_str().unwrap(),
                e["node"].as_str().unwrap_or("")
            )
        })
        .collect();
    let pos = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k} missing from {kinds:?}"))
    };
    assert_eq!(pos("run_started:"), 0, "{kinds:?}");
    assert!(pos("node_finished:first") < pos("node_started:pause"));
    assert!(pos("node_started:pause") < pos("node_finished:last"));
    assert_eq!(kinds.last().unwrap(), "run_finished:", "{kinds:?}");
    assert!(events.iter().any(|e| e["message"] == "step two"));
    // A finished run: its final state, and the human form.
    let out = home.cmd().args(["logs", "-f", &id]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("succeeded after"), "{text}");
    // Without a WebSocket the events route says how to use it.
    let (code, body) = d.call("GET", "/api/v1/events", None);
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (400, Some("websocket_required"))
    );
    // The daemon log.
    home.cmd()
        .arg("logs")
        .assert()
        .success()
        .stdout(predicates::str::contains("fuse daemon listening"));
}

#[test]
fn file_triggers_run_once_per_settled_matching_file() {
    let home = TestHome::initialized();
    let d = start(&home);
    let inbox = home.tmp().join("inbox");
    let wf = json!({"name": "inbox", "nodes": [
        {"id": "f", "type": "trigger.file", "data": {"inputs": {"path": inbox.display().to_string(),
            "glob": "*.csv", "events": ["create"], "debounce": "200ms"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"file": "{{ trigger.name }}"}}}}
    ], "edges": [{"source": "f", "target": "s"}]});
    // The folder is watched before the deploy is answered.
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    // Written in several steps: one run, when it is quiet.
    let csv = inbox.join("orders.csv");
    std::fs::write(&csv, "a,b\n").unwrap();
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(50));
        let mut text = std::fs::read_to_string(&csv).unwrap();
        text.push_str(&format!("{i},{i}\n"));
        std::fs::write(&csv, text).unwrap();
    }
    std::fs::write(inbox.join("notes.txt"), "not a csv").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs = runs_of(&d, "inbox");
        if !runs.is_empty() || Instant::now() > deadline {
            break runs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(800));
    let runs_after = runs_of(&d, "inbox");
    assert_eq!(runs_after.len(), 1, "{runs_after:?}");
    let run = d.wait_run(runs[0]["id"].as_str().unwrap());
    assert_eq!(run["trigger"], "file");
    assert_eq!(run["output"], json!({"file": "orders.csv"}));
}

#[test]
fn fuse_run_remote_runs_on_the_daemon() {
    let home = TestHome::initialized();
    let wf = home.write(
        "greet.json",
        &json!({"nodes": [{"id": "g", "type": "transform.set", "data": {"inputs": {"values": {"hi": "{{ trigger.who }}"}}}}], "edges": []}),
    );
    home.cmd()
        .args(["run", "--remote"])
        .arg(&wf)
        .assert()
        .failure()
        .stderr(predicates::str::contains("fuse start"));
    let d = start(&home);
    let out = home
        .cmd()
        .args(["run", "--remote", "--input", "who=ada"])
        .arg(&wf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!({"hi": "ada"}));
    assert!(String::from_utf8_lossy(&out.stderr).contains("succeeded after"));
    let (_, list) = d.call("GET", "/api/v1/workflows", None);
    assert_eq!(list["workflows"][0]["name"], "greet");
}

#[test]
fn plugin_routes_and_event_triggers() {
    let home = TestHome::initialized();
    let dir = home.path().join("plugin_packages/testplug");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        json!({"name": "testplug", "kind": "plugin",
               "runtime": {"command": ["python3", "-u", "serve.py"], "mode": "persistent"},
               "routes": [{"path": "/echo", "methods": ["GET"]}, {"path": "/open", "methods": ["POST"], "public": true}],
               "triggers": [{"name": "ticks", "command": ["sh", "ticks.sh"]}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("serve.py"),
        "import json, sys\nfor line in sys.stdin:\n    req = json.loads(line)\n    p = req['params']\n    \
         out = {'status': 200, 'headers': {'x-plugin': 'yes'}, 'body': {'method': p['method'], 'path': p['path'], 'q': p['query'].get('q')}}\n    \
         print(json.dumps({'id': req['id'], 'output': out}), flush=True)\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ticks.sh"),
        "for n in 1 2 3; do echo \"{\\\"n\\\": $n}\"; done; sleep 30",
    )
    .unwrap();
    let d = start(&home);
    let wf = json!({"name": "on-tick", "nodes": [
        {"id": "e", "type": "trigger.event", "data": {"inputs": {"plugin": "testplug", "trigger": "ticks"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"n": "{{ trigger.event.n }}"}}}}
    ], "edges": [{"source": "e", "target": "s"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);

    let (code, body) = d.call("GET", "/plugins/testplug/echo?q=hi", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, json!({"method": "GET", "path": "/echo", "q": "hi"}));
    assert_eq!(
        http(
            "GET",
            &format!("{}/plugins/testplug/echo", d.url),
            None,
            &[],
            None
        )
        .0,
        401
    );
    assert_eq!(
        http(
            "POST",
            &format!("{}/plugins/testplug/open", d.url),
            None,
            &[],
            Some(&json!({}))
        )
        .0,
        200
    );
    assert_eq!(d.call("POST", "/plugins/testplug/echo", None).0, 405);
    assert_eq!(d.call("GET", "/plugins/testplug/nope", None).0, 404);
    assert_eq!(d.call("GET", "/plugins/other/echo", None).0, 404);
    // The API reports it with its parts.
    let (_, listed) = d.call("GET", "/api/v1/plugins", None);
    let plugin = &listed["plugins"][0];
    assert_eq!(plugin["name"], "testplug", "{listed}");
    assert_eq!(plugin["state"], "loaded");
    assert_eq!(plugin["routes"][1]["path"], "/open");
    assert_eq!(plugin["triggers"][0]["name"], "ticks");

    let deadline = Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs = runs_of(&d, "on-tick");
        if runs.len() >= 3 || Instant::now() > deadline {
            break runs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(runs.len(), 3, "{runs:?}");
    let mut ns: Vec<i64> = runs
        .iter()
        .map(|r| {
            d.wait_run(r["id"].as_str().unwrap())["output"]["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ns.sort();
    assert_eq!(ns, vec![1, 2, 3]);
    assert!(runs.iter().all(|r| r["trigger"] == "event"));
}
