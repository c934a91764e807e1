//! Issue 17: operations: probes for monitors.

use serde_json::Value;

use crate::daemon::{http, start};
use crate::helper::TestHome;

#[test]
fn the_probes_answer_without_a_token_and_readiness_follows_the_database() {
    let home = TestHome::initialized();
    let d = start(&home);
    let get = |path: &str| http("GET", &format!("{}{path}", d.url), None, &[], None);
    let (code, body) = get("/healthz");
    assert_eq!((code, body), (200, serde_json::json!({"status": "ok"})));
    let ready = crate::daemon::wait_for("the daemon to be ready", || {
        let (code, body) = get("/readyz");
        (code == 200).then_some(body)
    });
    assert_eq!(ready["status"], "ready");
    for check in ["database", "history", "scheduler"] {
        assert_eq!(ready["checks"][check], "ok", "{ready}");
    }
    // Another program holding the write lock: the daemon could not record a
    // run, so it is not ready; it is still alive.
    let outside = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    outside.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let (code, body) = get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["failing"], "database");
    let why = body["checks"]["database"].as_str().unwrap();
    assert!(
        why.contains("locked") || why.contains("did not answer"),
        "{why}"
    );
    assert_eq!(get("/healthz").0, 200);
    outside.execute_batch("COMMIT;").unwrap();
    let body: Value = crate::daemon::wait_for("readiness to come back", || {
        let (code, body) = get("/readyz");
        (code == 200).then_some(body)
    });
    assert_eq!(body["status"], "ready");
    // Probes only answer GET (and HEAD); the details stay behind the token.
    assert_eq!(
        http("POST", &format!("{}/healthz", d.url), None, &[], None).0,
        404
    );
    assert_eq!(get("/api/v1/health").0, 401);
    // The doctor finds the running daemon healthy through its probe.
    let (code, report) = doctor(&home);
    assert_eq!(code, 0, "{report}");
    let daemon = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "daemon")
        .unwrap()
        .clone();
    assert!(
        daemon["detail"]
            .as_str()
            .unwrap()
            .contains("answers /healthz"),
        "{daemon}"
    );
}

#[test]
fn a_backup_taken_under_load_opens_and_passes_quick_check() {
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = serde_json::json!({"name": "busy", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "busy"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"n": "{{ trigger.body.n }}"}}}}
    ], "edges": [{"source": "t", "target": "s"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    // Webhook runs keep arriving while the copies are taken.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = format!("{}/webhook/busy", d.url);
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (code, _) = http(
                    "POST",
                    &url,
                    None,
                    &[],
                    Some(&serde_json::json!({"n": sent})),
                );
                assert_eq!(code, 202);
                sent += 1;
            }
            sent
        })
    };
    crate::daemon::wait_for("runs under way", || {
        let (_, runs) = d.call("GET", "/api/v1/executions?limit=20", None);
        (runs["executions"].as_array().map_or(0, Vec::len) >= 20).then_some(())
    });
    let mut copies = Vec::new();
    for i in 0..3 {
        let file = home.tmp().join(format!("copy-{i}.db"));
        let out = crate::helper::stdout_of(home.cmd().arg("backup").arg(&file).arg("--json"));
        let answer: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(answer["quick_check"], "ok", "{answer}");
        copies.push(file);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = load.join().unwrap();
    assert!(sent > 0);
    let mut counts = Vec::new();
    for file in &copies {
        let copy = rusqlite::Connection::open(file).unwrap();
        let check: String = copy
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let runs: i64 = copy
            .query_row("SELECT COUNT(*) FROM executions", [], |r| r.get(0))
            .unwrap();
        counts.push(runs);
    }
    assert!(
        counts[0] >= 20 && counts.windows(2).all(|w| w[0] <= w[1]),
        "{counts:?}"
    );
    // An existing file is not replaced without --force.
    home.cmd()
        .arg("backup")
        .arg(&copies[0])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "exists; pick another file or add --force",
        ));
    home.cmd()
        .arg("backup")
        .arg(&copies[0])
        .arg("--force")
        .assert()
        .success();
    // The default place is backups/ in the home.
    let out = crate::helper::stdout_of(home.cmd().args(["backup", "-q"]));
    assert!(
        out.trim()
            .starts_with(home.path().join("backups").to_str().unwrap()),
        "{out}"
    );
}

/// A port nothing listens on (the doctor's port check must not depend on
/// what else runs on this machine).
fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port().to_string()
}

fn doctor(home: &TestHome) -> (i32, Value) {
    let out = home
        .cmd()
        .args(["doctor", "--json"])
        .env("FUSE_DAEMON_PORT", free_port())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), report)
}

/// The failing checks of a report: name → (detail, fix).
fn failing(report: &Value) -> std::collections::BTreeMap<String, (String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                (
                    c["detail"].as_str().unwrap().to_string(),
                    c["fix"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn doctor_passes_a_fresh_home_and_finds_each_planted_problem() {
    use std::os::unix::fs::PermissionsExt;
    let home = TestHome::initialized();
    home.cmd()
        .args(["creds", "set", "gh", "--type", "bearer", "--stdin"])
        .write_stdin(r#"{"token": "t0k"}"#)
        .assert()
        .success();
    let (code, report) = doctor(&home);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "home",
            "config",
            "schema",
            "database",
            "credentials",
            "files",
            "daemon",
            "packages",
            "disk",
            "clock"
        ]
    );
    let text = crate::helper::stdout_of(
        home.cmd()
            .arg("doctor")
            .env("FUSE_DAEMON_PORT", free_port()),
    );
    assert!(
        text.contains("✓ credentials") && text.contains("opens all 1 credential(s)"),
        "{text}"
    );

    // A token others may read, a missing key, a broken package.
    let token = home.path().join("api-token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::remove_file(home.path().join("keys/master.key")).unwrap();
    let broken = home.path().join("node_packages/broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("manifest.json"), "{ not json").unwrap();
    let (code, report) = doctor(&home);
    assert_eq!(code, 1, "{report}");
    let bad = failing(&report);
    assert_eq!(
        bad.keys().map(String::as_str).collect::<Vec<_>>(),
        ["files", "key", "packages"],
        "{report}"
    );
    assert_eq!(bad["files"].1, format!("chmod 600 {}", token.display()));
    assert!(
        bad["key"].1.contains("restore the master key"),
        "{:?}",
        bad["key"]
    );
    assert!(
        bad["packages"].0.contains("broken"),
        "{:?}",
        bad["packages"]
    );
    let text =
        String::from_utf8_lossy(&home.cmd().arg("doctor").output().unwrap().stdout).to_string();
    assert!(
        text.contains("✗ files") && text.contains("fix: chmod 600"),
        "{text}"
    );
    assert!(text.contains("3 problem(s)"), "{text}");

    // A corrupt database, in another home.
    let other = TestHome::initialized();
    let db = other.path().join("fuse.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    for b in &mut bytes[4096..len.min(4096 * 8)] {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    let (code, report) = doctor(&other);
    assert_eq!(code, 1, "{report}");
    let bad = failing(&report);
    assert!(bad.contains_key("database"), "{report}");
    assert!(
        bad["database"].1.contains("restore the newest backup"),
        "{report}"
    );
}

#[test]
fn an_alert_workflow_runs_after_a_failure_and_after_failures_in_a_row() {
    use crate::helper::http::{Reply, TestServer};
    let home = TestHome::initialized();
    let hook = TestServer::start(|_, _| Reply::json(200, serde_json::json!({"ok": true})));
    let d = crate::daemon::start_with(
        &home,
        &[
            ("FUSE_ALERTS_WORKFLOW", "alert-webhook"),
            ("FUSE_ALERTS_FAILURES_IN_A_ROW", "2"),
        ],
    );
    // The template, pointed at the test's chat webhook.
    let mut alert: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/alert-webhook.json"),
        )
        .unwrap(),
    )
    .unwrap();
    alert["settings"]["vars"]["url"] = serde_json::json!(hook.url("/chat"));
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(alert)).0, 201);
    let flaky = serde_json::json!({"name": "flaky", "nodes": [
        {"id": "read", "type": "file.read", "data": {"inputs": {"path": "/nonexistent/fuse-alert-test"}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(flaky)).0, 201);
    let run = || {
        let (_, started) = d.call(
            "POST",
            "/api/v1/workflows/flaky/run",
            Some(serde_json::json!({})),
        );
        let id = started["run_id"].as_str().unwrap().to_string();
        d.wait_status(&id, "failed");
        id
    };
    let posted = |n: usize| -> Vec<Value> {
        crate::daemon::wait_for(&format!("{n} alert post(s)"), || {
            let got: Vec<Value> = hook.requests().iter().map(|r| r.json()).collect();
            (got.len() >= n).then_some(got)
        })
    };
    let first = run();
    let got = posted(1);
    let text = got[0]["text"].as_str().unwrap();
    assert!(text.starts_with("fuse: flaky failed (run "), "{text}");
    assert!(
        text.contains(&first) && text.contains("/nonexistent/fuse-alert-test"),
        "{text}"
    );
    assert_eq!(got[0]["content"], got[0]["text"]);
    // The alert run is recorded, started by the "alert" trigger, with the summary.
    let (_, runs) = d.call("GET", "/api/v1/executions?workflow=alert-webhook", None);
    let alert_run = &runs["executions"][0];
    assert_eq!(alert_run["trigger"], "alert");
    let (_, detail) = d.call(
        "GET",
        &format!("/api/v1/executions/{}", alert_run["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(detail["input"]["rule"], "failure");
    assert_eq!(detail["input"]["workflow"], "flaky");
    assert_eq!(detail["input"]["failed_node"], "read");
    assert_eq!(detail["input"]["run_id"], first.as_str());
    // The second failure in a row: its own alert, and the threshold's.
    run();
    let got = posted(3);
    let texts: Vec<&str> = got.iter().map(|v| v["text"].as_str().unwrap()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("flaky has failed 2 times in a row")),
        "{texts:?}"
    );
    // A workflow naming its own on_failure uses that one; a failing alert
    // workflow raises no alert about itself.
    let bad_alert = serde_json::json!({"name": "bad-alert", "nodes": [
        {"id": "boom", "type": "file.read", "data": {"inputs": {"path": "/nonexistent/alert"}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(bad_alert)).0, 201);
    let own = serde_json::json!({"name": "own", "settings": {"on_failure": "bad-alert"}, "nodes": [
        {"id": "read", "type": "file.read", "data": {"inputs": {"path": "/nonexistent/own"}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(own)).0, 201);
    let (_, started) = d.call(
        "POST",
        "/api/v1/workflows/own/run",
        Some(serde_json::json!({})),
    );
    d.wait_status(started["run_id"].as_str().unwrap(), "failed");
    let bad_run = crate::daemon::wait_for("the own alert run", || {
        let (_, runs) = d.call("GET", "/api/v1/executions?workflow=bad-alert", None);
        let first = runs["executions"][0].clone();
        (first["status"] == "failed").then_some(first)
    });
    assert_eq!(bad_run["trigger"], "alert");
    // Four alert runs in all, and nothing more reached the chat hook: not for
    // "own" (it has its own alert workflow), not for bad-alert failing.
    let (_, all) = d.call("GET", "/api/v1/executions?trigger=alert", None);
    assert_eq!(all["executions"].as_array().unwrap().len(), 4, "{all}");
    assert_eq!(hook.requests().len(), 3);
}

fn daemon_log(home: &TestHome) -> String {
    std::fs::read_to_string(home.path().join("logs/daemon.log")).unwrap_or_default()
}

#[test]
fn daemon_log_lines_carry_times_and_ids_without_escape_codes_and_rotate() {
    let home = TestHome::initialized();
    let d = crate::daemon::start_with(
        &home,
        &[("FUSE_LOG_MAX_SIZE", "4096"), ("FUSE_LOG_KEEP", "2")],
    );
    let wf = serde_json::json!({"name": "ticker", "nodes": [
        {"id": "every", "type": "trigger.interval", "data": {"inputs": {"every": "1s"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}
    ], "edges": [{"source": "every", "target": "s"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let fired = crate::daemon::wait_for("a schedule fire in the log", || {
        let log = daemon_log(&home);
        log.lines()
            .find(|l| l.contains("schedule fired"))
            .map(str::to_string)
    });
    // RFC 3339 in UTC to the millisecond, the level, the ids as fields.
    let stamp = &fired[..24];
    assert!(
        stamp.parse::<jiff::Timestamp>().is_ok()
            && stamp.ends_with('Z')
            && stamp.as_bytes()[19] == b'.',
        "{fired}"
    );
    assert!(
        fired.contains("workflow=ticker") && fired.contains("run_id="),
        "{fired}"
    );
    assert_eq!(
        d.call("POST", "/api/v1/workflows/ticker/disable", None).0,
        200
    );
    let log = daemon_log(&home);
    assert!(
        log.contains("deployed version 1") && log.contains("workflow=ticker"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("disabled") && l.contains("workflow=ticker")),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "escape codes in the log: {log:?}");
    // Refused webhooks are logged; enough of them rotate the log, keeping two
    // old files. The log is checked for size once a second, so refusals go on
    // until it has rotated twice (however fast this machine sends them).
    let logs = home.path().join("logs");
    let mut sent = 0;
    crate::daemon::wait_for_within(
        "two rotated files",
        std::time::Duration::from_secs(30),
        || {
            for _ in 0..10 {
                let (code, _) = http(
                    "POST",
                    &format!("{}/webhook/nowhere-{sent}", d.url),
                    None,
                    &[],
                    None,
                );
                assert_eq!(code, 404);
                sent += 1;
            }
            (logs.join("daemon.log.2").exists() && daemon_log(&home).contains("webhook refused"))
                .then_some(())
        },
    );
    assert!(!logs.join("daemon.log.3").exists());
    let rotated = std::fs::read_to_string(logs.join("daemon.log.1")).unwrap();
    assert!(
        rotated.contains("webhook refused (404 Not Found)") && rotated.contains("webhook=nowhere-"),
        "{rotated}"
    );
    // `fuse logs` reads the rotated files, then the current one.
    let all = crate::helper::stdout_of(home.cmd().arg("logs"));
    let last_refusal = all
        .rfind(&format!("webhook=nowhere-{} ", sent - 1))
        .expect("the last refusal");
    let first_seen = all.find("webhook=nowhere-").unwrap();
    assert!(first_seen < last_refusal);
    assert!(all.len() > std::fs::metadata(logs.join("daemon.log")).unwrap().len() as usize);
}

#[test]
fn the_daemon_log_can_be_json_lines() {
    let home = TestHome::initialized();
    let d = crate::daemon::start_with(&home, &[("FUSE_LOG_FORMAT", "json")]);
    let wf = serde_json::json!({"name": "j", "nodes": [
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let line: Value = crate::daemon::wait_for("the deploy line", || {
        daemon_log(&home)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "deployed version 1")
    });
    assert_eq!(line["workflow"], "j");
    assert_eq!(line["level"], "INFO");
    assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
    // Every line of the log is JSON (the start-up line too).
    for l in daemon_log(&home).lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

/// GET `url` (with a token): the status and the body as text.
pub(crate) fn get_text(url: &str, token: Option<&str>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .get(url)
            .timeout(std::time::Duration::from_secs(10));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

/// A sample's value by metric name and labels (counters, gauges, untyped).
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, want: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{metric} is not a plain value: {other:?}"),
        })
        .unwrap_or_else(|| panic!("no {metric} {want:?} in the scrape"))
}

#[test]
fn metrics_count_a_known_mix_of_runs_exactly() {
    let home = TestHome::initialized();
    let d = crate::daemon::start_with(&home, &[("FUSE_HTTP_BREAKER_THRESHOLD", "1")]);
    let deploy = |wf: Value| assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    deploy(serde_json::json!({"name": "good", "nodes": [
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}]}));
    deploy(serde_json::json!({"name": "bad", "nodes": [
        {"id": "read", "type": "file.read", "retry": {"attempts": 2, "initial": "10ms", "on": {"kinds": ["any"]}},
         "data": {"inputs": {"path": "/nonexistent/metrics"}}}]}));
    // Nothing listens on port 1: one refused call opens its circuit.
    deploy(serde_json::json!({"name": "unreachable", "nodes": [
        {"id": "get", "type": "http.request", "data": {"inputs": {"url": "http://127.0.0.1:1/"}}}]}));
    let (_, started) = d.call(
        "POST",
        "/api/v1/workflows/unreachable/run",
        Some(serde_json::json!({})),
    );
    d.wait_status(started["run_id"].as_str().unwrap(), "failed");
    deploy(serde_json::json!({"name": "hooked", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "m"}}}]}));
    let mut ids = Vec::new();
    for (name, n) in [("good", 3), ("bad", 2)] {
        for _ in 0..n {
            let (code, started) = d.call(
                "POST",
                &format!("/api/v1/workflows/{name}/run"),
                Some(serde_json::json!({})),
            );
            assert_eq!(code, 202);
            ids.push(started["run_id"].as_str().unwrap().to_string());
        }
    }
    for _ in 0..2 {
        let (code, body) = http(
            "POST",
            &format!("{}/webhook/m", d.url),
            None,
            &[],
            Some(&serde_json::json!({})),
        );
        assert_eq!(code, 202, "{body}");
        ids.push(body["run_id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        http("POST", &format!("{}/webhook/none", d.url), None, &[], None).0,
        404
    );
    for id in &ids {
        let run = d.wait_run(id);
        assert!(
            run["status"] == "succeeded" || run["status"] == "failed",
            "{run}"
        );
    }
    // Behind the token by default.
    let url = format!("{}/metrics", d.url);
    assert_eq!(http("GET", &url, None, &[], None).0, 401);
    let text = crate::wait::wait_for_within(
        "the last run to be counted",
        std::time::Duration::from_secs(10),
        || {
            let (code, text) = get_text(&url, Some(&d.token));
            assert_eq!(code, 200);
            text.contains("fuse_runs_finished_total{workflow=\"hooked\",status=\"succeeded\"} 2")
                .then_some(text)
        },
    );
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert_eq!(
        sample(&scrape, "fuse_runs_started_total", &[("workflow", "good")]),
        3.0
    );
    assert_eq!(
        sample(&scrape, "fuse_runs_started_total", &[("workflow", "bad")]),
        2.0
    );
    assert_eq!(
        sample(
            &scrape,
            "fuse_runs_finished_total",
            &[("workflow", "good"), ("status", "succeeded")]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &scrape,
            "fuse_runs_finished_total",
            &[("workflow", "bad"), ("status", "failed")]
        ),
        2.0
    );
    // Two failed runs of two attempts each: two retries.
    assert_eq!(
        sample(
            &scrape,
            "fuse_node_retries_total",
            &[("node_type", "file.read")]
        ),
        2.0
    );
    assert_eq!(
        sample(&scrape, "fuse_webhook_requests_total", &[("status", "202")]),
        2.0
    );
    assert_eq!(
        sample(&scrape, "fuse_webhook_requests_total", &[("status", "404")]),
        1.0
    );
    assert_eq!(
        sample(
            &scrape,
            "fuse_api_requests_total",
            &[("operation", "RunWorkflow"), ("status", "202")]
        ),
        6.0
    );
    let circuits: Vec<&str> = text.lines().filter(|l| l.contains("circuit")).collect();
    assert!(
        circuits.contains(&"fuse_circuit_state{target=\"http://127.0.0.1:1\"} 2"),
        "{circuits:?}"
    );
    let batches = sample(&scrape, "fuse_history_batches_total", &[]);
    let written = sample(&scrape, "fuse_history_events_written_total", &[]);
    assert!(batches >= 1.0 && written >= batches, "{batches} {written}");
    assert_eq!(sample(&scrape, "fuse_active_runs", &[]), 0.0);
    assert!(sample(&scrape, "fuse_process_open_fds", &[]) > 0.0);
    assert!(sample(&scrape, "fuse_process_resident_memory_bytes", &[]) > 1e6);
    assert!(sample(&scrape, "fuse_database_bytes", &[]) > 0.0);
    // Run durations are histograms by workflow; no label is a run id.
    assert!(
        text.contains("fuse_run_duration_seconds_count{workflow=\"good\"} 3"),
        "{text}"
    );
    for id in &ids {
        assert!(!text.contains(id.as_str()));
    }
}

#[test]
fn metrics_can_be_opened_for_a_local_scraper() {
    let home = TestHome::initialized();
    let d = crate::daemon::start_with(&home, &[("FUSE_DAEMON_METRICS_PUBLIC", "true")]);
    let (code, text) = get_text(&format!("{}/metrics", d.url), None);
    assert_eq!(code, 200);
    assert!(text.contains("# TYPE fuse_active_runs gauge"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

#[test]
fn export_then_import_moves_workflows_credentials_packages_and_history() {
    use crate::helper::http::{Reply, TestServer};
    let server = TestServer::start(|req, _| {
        Reply::json(
            200,
            serde_json::json!({"auth": req.header("authorization").unwrap_or("")}),
        )
    });
    let old = TestHome::initialized();
    old.cmd()
        .args(["creds", "set", "api", "--type", "bearer", "--stdin"])
        .write_stdin(r#"{"token": "s3cret-token"}"#)
        .assert()
        .success();
    old.cmd()
        .args(["nodes", "new", "carried", "--lang", "sh"])
        .assert()
        .success();
    // A workflow with two versions, the first current again, and disabled.
    let d = start(&old);
    let wf = |n: i64| {
        serde_json::json!({"name": "moved", "nodes": [
        {"id": "get", "type": "http.request", "data": {"inputs": {"url": server.url("/"), "credential": "api"}}},
        {"id": "n", "type": "transform.set", "data": {"inputs": {"values": {"n": n}}}}
    ], "edges": [{"source": "get", "target": "n"}]})
    };
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf(1))).0, 201);
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf(2))).0, 201);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, started) = d.call(
            "POST",
            "/api/v1/workflows/moved/run",
            Some(serde_json::json!({})),
        );
        let id = started["run_id"].as_str().unwrap().to_string();
        d.wait_status(&id, "succeeded");
        ids.push(id);
    }
    assert_eq!(
        d.call(
            "POST",
            "/api/v1/workflows/moved/rollback",
            Some(serde_json::json!({"version": 1}))
        )
        .0,
        200
    );
    assert_eq!(
        d.call("POST", "/api/v1/workflows/moved/disable", None).0,
        200
    );
    let shown = |home: &TestHome, id: &str| -> Value {
        serde_json::from_str(&crate::helper::stdout_of(
            home.cmd().args(["runs", "show", id, "--json"]),
        ))
        .unwrap()
    };
    let before: Vec<Value> = ids.iter().map(|id| shown(&old, id)).collect();
    old.cmd().arg("stop").assert().success();

    let pass = old.tmp().join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let archive = old.tmp().join("home.tar.zst");
    old.cmd()
        .args(["export", "--runs", "-o"])
        .arg(&archive)
        .arg("--passphrase-file")
        .arg(&pass)
        .assert()
        .success();
    // The passphrase protects the credential: its value is not in the archive.
    let raw = zstd::decode_all(std::fs::File::open(&archive).unwrap()).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("s3cret-token"));

    let new = TestHome::initialized();
    let wrong = new.tmp().join("wrong.txt");
    std::fs::write(&wrong, "not it").unwrap();
    new.cmd()
        .arg("import")
        .arg(&archive)
        .arg("--passphrase-file")
        .arg(&wrong)
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "the passphrase does not open the archive's credentials",
        ));
    new.cmd()
        .arg("import")
        .arg(&archive)
        .arg("--passphrase-file")
        .arg(&pass)
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "imported 1 workflow(s), 1 credential(s) and 3 run(s)",
        ));
    // The same run history.
    for (id, was) in ids.iter().zip(&before) {
        let now = shown(&new, id);
        for key in [
            "id",
            "workflow",
            "status",
            "trigger",
            "input",
            "output",
            "nodes",
            "created_at",
            "duration_ms",
        ] {
            assert_eq!(now[key], was[key], "{key} of run {id}");
        }
    }
    // The same workflow: both versions, version 1 current, disabled.
    let db = rusqlite::Connection::open(new.path().join("fuse.db")).unwrap();
    let (current, enabled): (i64, bool) = db
        .query_row(
            "SELECT current_version, enabled FROM workflows WHERE name = 'moved'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((current, enabled), (1, false));
    let versions: i64 = db
        .query_row("SELECT COUNT(*) FROM workflow_versions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, 2);
    // The credential opens with the new home's key and works.
    new.cmd().args(["creds", "check"]).assert().success();
    let run_file = new.write("use.json", &wf(3));
    let out = crate::helper::stdout_of(new.cmd().arg("run").arg(&run_file).arg("--json"));
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["status"], "succeeded");
    assert_eq!(
        server.requests().last().unwrap().header("authorization"),
        Some("Bearer s3cret-token")
    );
    // The node package came along and loads.
    let nodes = crate::helper::stdout_of(new.cmd().args(["nodes", "list"]));
    assert!(nodes.contains("carried"), "{nodes}");
    // A second import into a home with workflows is refused without --force.
    new.cmd()
        .arg("import")
        .arg(&archive)
        .arg("--passphrase-file")
        .arg(&pass)
        .assert()
        .failure()
        .stderr(predicates::str::contains("add --force to merge"));
}

/// Deploys an alert workflow that records what it is told in `alerts.jsonl`
/// (as the template would post it); its lines, parsed.
fn recording_alert(d: &crate::daemon::Daemon<'_>, home: &TestHome) -> std::path::PathBuf {
    let out = home.tmp().join("alerts.jsonl");
    let wf = serde_json::json!({"name": "record-alert", "nodes": [
        {"id": "w", "type": "file.write", "data": {"inputs": {"path": out.display().to_string(),
            "content": "{{ trigger | tojson }}\n", "append": true}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    out
}

fn alerts_with(file: &std::path::Path, rule: &str) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["rule"] == rule)
        .collect()
}

#[test]
fn alerts_for_a_deep_queue_and_for_missed_fires() {
    let home = TestHome::initialized();
    let env = [
        ("FUSE_ALERTS_WORKFLOW", "record-alert"),
        ("FUSE_ALERTS_QUEUE_DEPTH", "1"),
        ("FUSE_ALERTS_QUEUE_FOR", "0s"),
        ("FUSE_DAEMON_MAX_RUNS", "1"),
    ];
    let d = crate::daemon::start_with(&home, &env);
    let file = recording_alert(&d, &home);
    // One slot and a slow workflow: three runs leave two waiting.
    let slow = serde_json::json!({"name": "slow", "nodes": [
        {"id": "w", "type": "flow.wait", "data": {"inputs": {"duration": "1500ms"}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(slow)).0, 201);
    for _ in 0..3 {
        assert_eq!(
            d.call(
                "POST",
                "/api/v1/workflows/slow/run",
                Some(serde_json::json!({}))
            )
            .0,
            202
        );
    }
    let queue = crate::daemon::wait_for("the queue alert", || {
        alerts_with(&file, "queue_depth").into_iter().next()
    });
    assert!(queue["queued"].as_u64().unwrap() >= 2, "{queue}");
    assert!(
        queue["message"]
            .as_str()
            .unwrap()
            .contains("waited for a run slot"),
        "{queue}"
    );

    // A schedule whose fire passed while the daemon was down.
    let ticker = serde_json::json!({"name": "nightly", "nodes": [
        {"id": "cron", "type": "trigger.cron", "data": {"inputs": {"cron": "0 3 * * *"}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(ticker)).0, 201);
    home.cmd().arg("stop").assert().success();
    let db = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    db.execute(
        "UPDATE schedules SET next_fire_at = 1000 WHERE node_id = 'cron'",
        [],
    )
    .unwrap();
    drop(db);
    let d = crate::daemon::start_with(&home, &env);
    let missed = crate::daemon::wait_for("the missed-fire alert", || {
        alerts_with(&file, "missed_fire").into_iter().next()
    });
    assert_eq!(missed["workflow"], "nightly");
    assert_eq!(missed["node"], "cron");
    assert_eq!(missed["policy"], "skip");
    drop(d);
}
