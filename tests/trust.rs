//! Issue 12, trust: nothing fails silently and nothing recorded is lost, each
//! rule checked through the real binary or the real daemon.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::daemon::{http, start};
use crate::helper::TestHome;

/// Opens, reads and closes `fuse.db` over and over from another process, as
/// `sqlite3 fuse.db .tables`, Datasette or DB Browser would, until `stop`.
/// Python's SQLite is the one such tools bring (an older SQLite that deletes
/// the WAL when it believes it is the last connection).
fn outside_reader(
    db: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    const READ: &str = "import sqlite3, sys\n\
        c = sqlite3.connect(sys.argv[1])\n\
        c.execute('SELECT count(*) FROM executions').fetchall()\n\
        c.close()\n";
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let status = std::process::Command::new("python3")
                .args(["-c", READ])
                .arg(&db)
                .status()
                .expect("python3 runs");
            assert!(status.success(), "the outside reader failed: {status}");
            reads.fetch_add(1, Ordering::SeqCst);
        }
    })
}

fn recorded_runs(home: &TestHome) -> Vec<String> {
    let conn = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT id FROM executions WHERE parent_id IS NULL")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn accepted_under_an_outside_reader(home: &TestHome, kill: bool) {
    let d = start(home);
    let wf = json!({"name": "hook", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "in"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"n": "{{ trigger.body.n }}"}}}}
    ], "edges": [{"source": "t", "target": "s"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = outside_reader(home.path().join("fuse.db"), stop.clone(), reads.clone());
    let mut accepted = Vec::new();
    for round in 0..5 {
        for n in 0..40 {
            let (code, body) = http(
                "POST",
                &format!("{}/webhook/in", d.url),
                None,
                &[],
                Some(&json!({ "n": round * 100 + n })),
            );
            assert_eq!(code, 202, "{body}");
            accepted.push(body["run_id"].as_str().unwrap().to_string());
        }
        // Once the daemon is idle, a reader that closes last is the one that
        // would checkpoint and delete the WAL the daemon still writes into.
        for id in &accepted[accepted.len() - 40..] {
            d.wait_run(id);
        }
        let seen = reads.load(Ordering::SeqCst);
        while reads.load(Ordering::SeqCst) < seen + 3 {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    if kill {
        // SAFETY: kills the daemon this test started.
        unsafe {
            libc::kill(d.pid as i32, libc::SIGKILL);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while home.path().join("daemon.json").exists()
            && std::process::Command::new("kill")
                .args(["-0", &d.pid.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        home.cmd().arg("stop").assert().success();
    }
    let recorded: std::collections::HashSet<String> = recorded_runs(home).into_iter().collect();
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} accepted runs lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let conn = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(d);
}

#[test]
fn an_outside_reader_loses_no_run_across_a_stop() {
    let home = TestHome::initialized();
    accepted_under_an_outside_reader(&home, false);
}

#[test]
fn an_outside_reader_loses_no_run_across_a_kill() {
    let home = TestHome::initialized();
    accepted_under_an_outside_reader(&home, true);
}
