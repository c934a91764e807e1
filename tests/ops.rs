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
