//! Issue 12, trust: nothing fails silently and nothing recorded is lost, each
//! rule checked through the real binary or the real daemon.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
        d.kill();
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

/// A small tmpfs mounted in a temp folder (unmounted on drop), to fill up.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Needs root (CI and the development machines run as root).
    fn mount(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs failed ({status}): the full-disk tests need root"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fills the disk until `leave` bytes are free.
    fn fill(&self, leave: u64) {
        use std::io::Write;
        let avail = self.available();
        let mut file = std::fs::File::create(self.path().join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        let mut left = avail.saturating_sub(leave) / 4096;
        while left > 0 && file.write_all(&chunk).is_ok() {
            left -= 1;
        }
        let _ = file.sync_all();
    }

    fn unfill(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }

    fn available(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A home on a small disk (`home.path()` is inside the tmpfs).
fn home_on(disk: &SmallDisk) -> TestHome {
    let home = TestHome::at(disk.path().join("home"));
    home.cmd().args(["init", "--yes"]).assert().success();
    home
}

#[test]
fn a_run_whose_history_cannot_be_written_says_so_and_exits_4() {
    let disk = SmallDisk::mount(4);
    let home = home_on(&disk);
    let wf = home.write(
        "wf.json",
        &json!({"name": "w", "nodes": [
            {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"x": "{{ trigger.s }}"}}}}
        ], "edges": []}),
    );
    let big = format!("s={}", "a".repeat(3000));
    disk.fill(40 * 1024);
    let mut codes = Vec::new();
    for _ in 0..5 {
        let out = home
            .cmd()
            .args(["run"])
            .arg(&wf)
            .args(["--input", &big])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let code = out.status.code().unwrap();
        if code != 0 {
            assert_eq!(code, 4, "{stderr}");
            assert!(stderr.contains("could not be recorded"), "{stderr}");
            assert!(stderr.contains("disk"), "{stderr}");
        }
        codes.push(code);
    }
    assert!(
        codes.contains(&4),
        "no run noticed the full disk: {codes:?}"
    );
    // Every run that exited 0 is recorded.
    let recorded = recorded_runs(&home).len();
    assert_eq!(recorded, codes.iter().filter(|c| **c == 0).count());
    // Space back: runs are recorded again.
    disk.unfill();
    home.cmd()
        .args(["run"])
        .arg(&wf)
        .args(["--input", &big])
        .assert()
        .success();
    assert_eq!(recorded_runs(&home).len(), recorded + 1);
}

#[test]
fn the_daemon_answers_503_on_a_full_disk_and_recovers() {
    let disk = SmallDisk::mount(4);
    let home = home_on(&disk);
    let d = start(&home);
    let wf = json!({"name": "hook", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "in"}}}
    ], "edges": []});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    disk.fill(0);
    let body = json!({"pad": "x".repeat(20_000)});
    let mut accepted = Vec::new();
    let mut refused = None;
    for _ in 0..200 {
        let (code, answer) = http(
            "POST",
            &format!("{}/webhook/in", d.url),
            None,
            &[],
            Some(&body),
        );
        match code {
            202 => accepted.push(answer["run_id"].as_str().unwrap().to_string()),
            503 => {
                refused = Some(answer);
                break;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    let refused = refused.expect("the daemon never noticed the full disk");
    assert_eq!(refused["error"]["code"], "storage_unavailable", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk"),
        "{refused}"
    );
    // Space back: the daemon accepts and records again by itself.
    disk.unfill();
    let (code, answer) = http(
        "POST",
        &format!("{}/webhook/in", d.url),
        None,
        &[],
        Some(&json!({})),
    );
    assert_eq!(code, 202, "{answer}");
    let id = answer["run_id"].as_str().unwrap().to_string();
    assert_eq!(d.wait_run(&id)["status"], "succeeded");
    accepted.push(id);
    home.cmd().arg("stop").assert().success();
    let recorded: std::collections::HashSet<String> = recorded_runs(&home).into_iter().collect();
    for id in &accepted {
        assert!(recorded.contains(id), "accepted run {id} is not recorded");
    }
    drop(d);
}

#[test]
fn fuse_start_shows_why_the_daemon_could_not_start() {
    // The port is taken: the daemon's own words, not only "see daemon.log".
    let home = TestHome::initialized();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    home.cmd()
        .args(["start", "--port", &port])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "the daemon could not start: cannot listen on",
        ));
    let log = std::fs::read_to_string(home.path().join("logs/daemon.log")).unwrap();
    assert!(log.contains("cannot listen on"), "{log}");

    // A full disk: a clear error, no panic (exit 101) and no empty log.
    let disk = SmallDisk::mount(4);
    let home = home_on(&disk);
    disk.fill(0);
    let out = home.cmd().args(["start", "--port", "0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the daemon could not start"), "{stderr}");
    assert!(stderr.contains("disk"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    disk.unfill();
    let d = start(&home);
    assert_eq!(d.call("GET", "/api/v1/health", None).0, 200);
    home.cmd().arg("stop").assert().success();
}

#[test]
fn a_cancelled_queued_run_stays_cancelled_across_a_crash() {
    let home = TestHome::initialized();
    let d = crate::daemon::start_with(&home, &[("FUSE_DAEMON_MAX_RUNS", "1")]);
    let wf = json!({"name": "slow", "nodes": [
        {"id": "w", "type": "flow.wait", "data": {"inputs": {"duration": "{{ trigger.wait }}"}}}
    ], "edges": []});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let run = |wait: &str| {
        let (code, r) = d.call(
            "POST",
            "/api/v1/workflows/slow/run",
            Some(json!({"wait": wait})),
        );
        assert_eq!(code, 202, "{r}");
        r["run_id"].as_str().unwrap().to_string()
    };
    let blocker = run("30s");
    let queued = run("1ms");
    let (_, r) = d.call("GET", &format!("/api/v1/executions/{queued}"), None);
    assert_eq!(r["status"], "queued", "{r}");
    let (code, r) = d.call("POST", &format!("/api/v1/executions/{queued}/cancel"), None);
    assert_eq!(code, 202, "{r}");
    // Recorded before the answer.
    let (_, r) = d.call("GET", &format!("/api/v1/executions/{queued}"), None);
    assert_eq!(r["status"], "cancelled", "{r}");
    d.kill();
    let d2 = start(&home);
    assert_eq!(d2.wait_run(&blocker)["status"], "interrupted");
    let (_, r) = d2.call("GET", &format!("/api/v1/executions/{queued}"), None);
    assert_eq!(
        r["status"], "cancelled",
        "recovery started a cancelled run: {r}"
    );
    assert!(r["nodes"].as_array().is_none_or(|n| n.is_empty()), "{r}");
}

#[test]
fn a_database_error_is_a_500_not_a_404_or_an_empty_list() {
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "hook", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "in"}}}
    ], "edges": []});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (_, r) = http(
        "POST",
        &format!("{}/webhook/in", d.url),
        None,
        &[],
        Some(&json!({})),
    );
    let id = r["run_id"].as_str().unwrap().to_string();
    d.wait_run(&id);
    // Another program breaks the schema under the daemon.
    let db = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    db.execute_batch(
        "ALTER TABLE executions RENAME TO executions_aside;
         ALTER TABLE workflow_versions RENAME TO versions_aside;",
    )
    .unwrap();
    for path in [
        format!("/api/v1/executions/{id}"),
        "/api/v1/executions".to_string(),
    ] {
        let (code, body) = d.call("GET", &path, None);
        assert_eq!(code, 500, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("database"),
            "{path}: {body}"
        );
    }
    // A reload that cannot read the workflows keeps the webhooks it had.
    d.call("POST", "/api/v1/workflows/hook/enable", None);
    db.execute_batch("ALTER TABLE executions_aside RENAME TO executions;")
        .unwrap();
    let (code, r) = http(
        "POST",
        &format!("{}/webhook/in", d.url),
        None,
        &[],
        Some(&json!({})),
    );
    assert_eq!(code, 202, "the webhook table was emptied: {r}");
    db.execute_batch("ALTER TABLE versions_aside RENAME TO workflow_versions;")
        .unwrap();
}

/// `fuse validate FILE --json` on `workflow`: (exit code, problems as "path: message").
fn validate(home: &TestHome, workflow: &serde_json::Value) -> (i32, Vec<String>) {
    let file = home.write("check.json", workflow);
    let out = home
        .cmd()
        .arg("validate")
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let problems = report["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    format!(
                        "{}: {}",
                        p["path"].as_str().unwrap(),
                        p["message"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (out.status.code().unwrap(), problems)
}

fn has(problems: &[String], want: &str) -> bool {
    problems.iter().any(|p| p.contains(want))
}

#[test]
fn unknown_keys_are_errors_with_the_nearest_known_key() {
    let home = TestHome::initialized();
    // A misspelt sourceHandle made both branches of flow.if run.
    let wf = json!({"name": "typos", "settings": {"max_paralel": 2},
    "nodes": [
        {"id": "t", "type": "trigger.manual", "position": {"x": 0, "y": 0}, "selected": true, "width": 80},
        {"id": "if", "type": "flow.if", "data": {"inputs": {"condition": "{{ trigger.n > 1 }}"}}},
        {"id": "yes", "type": "exec.command", "retyr": {"attempts": 3}, "timout": "5s", "on_eror": "continue",
         "data": {"inputs": {"argv": ["true"]}, "label": "Yes"}},
        {"id": "no", "type": "log", "data": {"inputs": {"message": "no"}}}
    ],
    "edges": [
        {"source": "t", "target": "if", "animated": true},
        {"source": "if", "target": "yes", "source_handle": "true"},
        {"source": "if", "target": "no", "sourceHandle": "false"}
    ]});
    let (code, problems) = validate(&home, &wf);
    assert_eq!(code, 2, "{problems:#?}");
    for want in [
        "settings.max_paralel: unknown key `max_paralel`; did you mean `max_parallel`?",
        "nodes[2].retyr: unknown key `retyr`; did you mean `retry`?",
        "nodes[2].timout: unknown key `timout`; did you mean `timeout`?",
        "nodes[2].on_eror: unknown key `on_eror`; did you mean `on_error`?",
        "edges[1].source_handle: unknown key `source_handle`; did you mean `sourceHandle`?",
    ] {
        assert!(has(&problems, want), "missing {want:?} in {problems:#?}");
    }
    // Editor keys (position, selected, width, label, animated) are not problems.
    assert_eq!(problems.len(), 5, "{problems:#?}");
    // And `fuse run` refuses it before anything runs.
    let file = home.write("typos.json", &wf);
    home.cmd().arg("run").arg(&file).assert().code(2);
}

#[test]
fn unknown_node_inputs_are_errors_with_did_you_mean() {
    let home = TestHome::initialized();
    let wf = json!({"nodes": [
        {"id": "post", "type": "http.request", "data": {"inputs": {"uri": "http://127.0.0.1:1/", "methd": "POST"}}},
        {"id": "w", "type": "file.write", "data": {"inputs": {"path": "out.txt", "content": "x", "apend": true}}}
    ], "edges": []});
    let (code, problems) = validate(&home, &wf);
    assert_eq!(code, 2);
    for want in [
        "nodes[0].data.inputs.methd: unknown input `methd`; did you mean `method`?",
        "nodes[0].data.inputs.uri: unknown input `uri`; did you mean `url`?",
        "nodes[0].data.inputs.url: missing required input `url`",
        "nodes[1].data.inputs.apend: unknown input `apend`; did you mean `append`?",
    ] {
        assert!(has(&problems, want), "missing {want:?} in {problems:#?}");
    }
    // Seed spellings of llm.chat inputs are declared aliases, not typos.
    let wf = json!({"nodes": [{"id": "ai", "type": "OpenAINode", "data": {"inputs": {
        "system_message": "be brief", "prompt": "hi", "maxTokens": 5}}}], "edges": []});
    let (code, problems) = validate(&home, &wf);
    assert_eq!((code, problems.len()), (0, 0), "{problems:#?}");
}

#[test]
fn a_huge_unknown_type_name_is_refused_without_a_slow_suggestion() {
    let home = TestHome::initialized();
    let name = "x".repeat(1 << 20);
    let wf = json!({"nodes": [{"id": "a", "type": name}], "edges": []});
    let (code, problems) = validate(&home, &wf);
    assert_eq!(code, 2);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains("unknown node type"),
        "{}",
        &problems[0][..200]
    );
    assert!(!problems[0].contains("did you mean"));
}

#[test]
fn retry_means_retry() {
    let home = TestHome::initialized();
    let wf = home.write(
        "flaky.json",
        &json!({"nodes": [{"id": "cmd", "type": "exec.command", "retry": {"attempts": 3, "initial": "1ms"},
            "data": {"inputs": {"argv": ["sh", "-c", "echo try >> tries; exit 3"], "cwd": "."}}}], "edges": []}),
    );
    let out = home
        .cmd()
        .current_dir(home.tmp())
        .arg("run")
        .arg(&wf)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["nodes"]["cmd"]["attempts"], 3, "{record}");
    let tries = std::fs::read_to_string(home.tmp().join("tries")).unwrap();
    assert_eq!(tries.lines().count(), 3);

    // A kind that does not exist is an error; a retry that can never apply is a warning.
    let (code, problems) = validate(
        &home,
        &json!({"nodes": [{"id": "a", "type": "log", "data": {"inputs": {"message": "x"}},
            "retry": {"attempts": 2, "on": {"kinds": ["timout"]}}}], "edges": []}),
    );
    assert_eq!(code, 2);
    assert!(
        has(
            &problems,
            "unknown error kind `timout`; did you mean `timeout`?"
        ),
        "{problems:#?}"
    );
    let file = home.write(
        "never.json",
        &json!({"nodes": [
            {"id": "a", "type": "log", "data": {"inputs": {"message": "x"}}, "retry": {"attempts": 1}},
            {"id": "b", "type": "log", "data": {"inputs": {"message": "x"}}, "retry": {"attempts": 3, "on": {"kinds": ["input"]}}}
        ], "edges": []}),
    );
    let out = home.cmd().arg("validate").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("attempts is 1, so this retry never retries"),
        "{stderr}"
    );
    assert!(stderr.contains("this retry can never apply"), "{stderr}");
}

#[test]
fn a_template_keeps_its_trailing_newline() {
    let home = TestHome::initialized();
    let wf = home.write(
        "lines.json",
        &json!({"nodes": [
            {"id": "a", "type": "file.write", "data": {"inputs": {"path": "out.txt", "content": "{{ trigger.x }}\n", "append": true}}},
            {"id": "b", "type": "file.write", "data": {"inputs": {"path": "out.txt", "content": "{{ trigger.x }} {{ trigger.x }}\n", "append": true}}}
        ], "edges": [{"source": "a", "target": "b"}]}),
    );
    home.cmd()
        .current_dir(home.tmp())
        .arg("run")
        .arg(&wf)
        .args(["--input", "x=line"])
        .assert()
        .success();
    let text = std::fs::read_to_string(home.tmp().join("out.txt")).unwrap();
    assert_eq!(text, "line\nline line\n");
}

#[test]
fn listings_into_a_closed_pipe_exit_quietly() {
    let home = TestHome::initialized();
    let wf = home.write(
        "logs.json",
        &json!({"nodes": [{"id": "l", "type": "log", "data": {"inputs": {"message": "hello"}}}], "edges": []}),
    );
    let out = home
        .cmd()
        .arg("run")
        .arg(&wf)
        .arg("--json")
        .output()
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = record["run_id"].as_str().unwrap().to_string();
    let wf = wf.to_string_lossy().into_owned();
    let commands: Vec<Vec<&str>> = vec![
        vec!["runs", "list"],
        vec!["runs", "list", "--json"],
        vec!["runs", "show", &id],
        vec!["runs", "show", &id, "--json"],
        vec!["runs", "logs", &id, "--json"],
        vec!["nodes", "list"],
        vec!["nodes", "show", "http.request"],
        vec!["schema", "workflow"],
        vec!["cron", "* * * * *", "--count", "10000"],
        vec!["completions", "bash"],
        vec!["version"],
        vec!["version", "--json"],
        vec!["creds", "types"],
        vec!["validate", &wf, "--json"],
        vec!["run", &wf, "--json"],
    ];
    for args in commands {
        // The reading end is closed before fuse writes a byte.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("fuse"))
            .env("FUSE_HOME", home.path())
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "fuse {args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "fuse {args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "fuse {args:?}: {stderr}");
    }
}

#[test]
fn run_ids_by_unique_part_or_last_and_one_node_shown_in_full() {
    let home = TestHome::initialized();
    let ok = home.write(
        "ok.json",
        &json!({"name": "ok", "nodes": [{"id": "say", "type": "transform.set", "data": {"inputs": {"values": {"n": "{{ trigger.n }}"}}}}], "edges": []}),
    );
    let bad = home.write(
        "bad.json",
        &json!({"name": "bad", "nodes": [
            {"id": "prep", "type": "transform.set", "data": {"inputs": {"values": {"cmd": "exit 7"}}}},
            {"id": "boom", "type": "exec.command", "data": {"inputs": {"argv": ["sh", "-c", "{{ input.cmd }}"]}}}
        ], "edges": [{"source": "prep", "target": "boom"}]}),
    );
    let mut ids = Vec::new();
    for n in 0..3 {
        let out = home
            .cmd()
            .arg("run")
            .arg(&ok)
            .args(["--input", &format!("n={n}"), "--json"])
            .output()
            .unwrap();
        let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(record["run_id"].as_str().unwrap().to_string());
    }
    let out = home.cmd().arg("run").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed_id = stderr
        .split("error: run ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(
        stderr.contains(&format!("fuse runs show {failed_id} --node boom")),
        "{stderr}"
    );

    // The start of ids made in the same minute is shared: the error lists them.
    let shared = ids[0]
        .chars()
        .zip(ids[1].chars())
        .take_while(|(a, b)| a == b)
        .count()
        .min(8);
    let prefix = &ids[0][..shared];
    home.cmd()
        .args(["runs", "show", prefix])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("matches several runs"))
        .stderr(predicates::str::contains(ids[1].as_str()));
    // The end is random, so a short suffix is enough.
    let suffix = &ids[1][ids[1].len() - 8..];
    let shown = crate::helper::stdout_of(home.cmd().args(["runs", "show", suffix, "--json"]));
    let run: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(run["id"], ids[1].as_str());
    // `last`, and `last --workflow`.
    let shown = crate::helper::stdout_of(home.cmd().args(["runs", "show", "last", "--json"]));
    let run: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(run["id"], failed_id.as_str());
    let shown = crate::helper::stdout_of(home.cmd().args([
        "runs",
        "show",
        "last",
        "--workflow",
        "ok",
        "--json",
    ]));
    let run: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(run["id"], ids[2].as_str());

    // One node: its input, output and error.
    let shown =
        crate::helper::stdout_of(home.cmd().args(["runs", "show", "last", "--node", "boom"]));
    assert!(shown.contains("\"cmd\": \"exit 7\""), "{shown}");
    assert!(shown.contains("exit_code"), "{shown}");
    home.cmd()
        .args(["runs", "show", "last", "--node", "bom"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("did you mean \"boom\"?"));
}

#[test]
fn a_home_that_cannot_be_read_is_named_not_taken_for_missing() {
    use std::os::unix::process::CommandExt;
    let home = TestHome::initialized();
    let wf = home.write(
        "wf.json",
        &json!({"nodes": [{"id": "a", "type": "log", "data": {"inputs": {"message": "x"}}}], "edges": []}),
    );
    // Readable by anyone but the home (0700, owned by root): run as `nobody`.
    let mut perms = std::fs::metadata(home.tmp()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(home.tmp(), perms.clone()).unwrap();
    std::fs::set_permissions(&wf, perms).unwrap();
    let mut home_perms = std::fs::metadata(home.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut home_perms, 0o700);
    std::fs::set_permissions(home.path(), home_perms).unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("fuse"))
        .env("FUSE_HOME", home.path())
        .arg("run")
        .arg(&wf)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains("cannot read the fuse home"), "{stderr}");
    assert!(!stderr.contains("fuse init"), "{stderr}");
}

#[test]
fn files_that_are_not_json_workflows_say_what_they_are() {
    let home = TestHome::initialized();
    let dir = home.tmp();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "latin1.json",
            b"{\"name\": \"caf\xe9\", \"nodes\": []}".to_vec(),
            "not UTF-8",
        ),
        (
            "flow.yaml",
            b"name: hello\nnodes:\n  - id: a\n    type: log\n".to_vec(),
            "looks like YAML",
        ),
        (
            "commented.json",
            b"{\n  // the greeting\n  \"nodes\": [{\"id\": \"a\", \"type\": \"log\"}]\n}\n"
                .to_vec(),
            "JSON does not allow comments",
        ),
        (
            // Two workflows pasted into one file: the second is not ignored.
            "twice.json",
            b"{\"nodes\": [{\"id\": \"a\", \"type\": \"log\"}]}\n{\"nodes\": []}\n".to_vec(),
            "line 2, column 1: trailing characters",
        ),
    ];
    for (name, bytes, says) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        for cmd in ["run", "validate"] {
            let out = home.cmd().arg(cmd).arg(&path).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(2), "{cmd} {name}: {stderr}");
            assert!(
                stderr.contains(says) || stdout.contains(says),
                "{cmd} {name}: {stderr}{stdout}"
            );
        }
    }
}

#[test]
fn devices_and_pipes_are_refused_as_workflows_and_manifests() {
    let home = TestHome::initialized();
    // A workflow path that is a FIFO would block a plain read forever.
    let fifo = home.tmp().join("wf.json");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    home.cmd()
        .arg("run")
        .arg(&fifo)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("not a regular file"));
    std::os::unix::fs::symlink("/dev/zero", home.tmp().join("zero.json")).unwrap();
    home.cmd()
        .arg("validate")
        .arg(home.tmp().join("zero.json"))
        .assert()
        .code(1)
        .stderr(predicates::str::contains("not a regular file"));
    // A manifest that links to /dev/zero is one bad package; the others work.
    let pkg = home.path().join("node_packages/zero");
    std::fs::create_dir_all(&pkg).unwrap();
    std::os::unix::fs::symlink("/dev/zero", pkg.join("manifest.json")).unwrap();
    let out = home.cmd().args(["nodes", "list"]).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("not a regular file"), "{all}");
    assert!(all.contains("http.request"), "{all}");
}

#[test]
fn unsigned_requests_do_not_use_up_a_signed_webhooks_rate_limit() {
    use hmac::{Hmac, Mac};
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "signed", "nodes": [{"id": "t", "type": "trigger.webhook",
        "data": {"inputs": {"path": "signed", "secret": "s3cret", "rate_limit": 1}}}], "edges": []});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let body = json!({"n": 1});
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body.to_string().as_bytes());
    let good: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let good = format!("sha256={good}");
    let url = format!("{}/webhook/signed", d.url);
    // An attacker floods the path without the secret…
    for _ in 0..20 {
        let (code, _) = http(
            "POST",
            &url,
            None,
            &[("X-Fuse-Signature", "sha256=00")],
            Some(&body),
        );
        assert_eq!(code, 401);
    }
    // …and the real sender still gets through.
    let (code, r) = http(
        "POST",
        &url,
        None,
        &[("X-Fuse-Signature", &good)],
        Some(&body),
    );
    assert_eq!(code, 202, "{r}");
}

#[test]
fn display_names_with_spaces_get_an_id_everywhere_and_identical_deploys_are_one_version() {
    let home = TestHome::initialized();
    let wf = json!({"name": "Integration Test Workflow", "nodes": [
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}
    ], "edges": []});
    let file = home.write("it.json", &wf);
    home.cmd().arg("validate").arg(&file).assert().success();
    home.cmd().arg("run").arg(&file).assert().success();
    let listed = crate::helper::stdout_of(home.cmd().args(["runs", "list", "--json"]));
    let runs: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(runs[0]["workflow"], "integration-test-workflow");
    // A name with nothing to make an id from is refused by validate, not only by the daemon.
    let (code, problems) = validate(
        &home,
        &json!({"name": "!!!", "nodes": [{"id": "a", "type": "log", "data": {"inputs": {"message": "x"}}}], "edges": []}),
    );
    assert_eq!(code, 2);
    assert!(
        has(
            &problems,
            "name: the workflow name \"!!!\" has no letter or digit"
        ),
        "{problems:#?}"
    );

    let d = start(&home);
    let (code, r) = d.call("POST", "/api/v1/workflows", Some(wf.clone()));
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["name"], "integration-test-workflow");
    assert_eq!(r["display_name"], "Integration Test Workflow");
    let (code, r) = d.call("POST", "/api/v1/workflows", Some(wf));
    assert_eq!(
        (code, &r["unchanged"], &r["version"]),
        (200, &json!(true), &json!(1)),
        "{r}"
    );
    let (code, r) = d.call(
        "POST",
        "/api/v1/workflows/integration-test-workflow/run",
        Some(json!({})),
    );
    assert_eq!(code, 202, "{r}");
    let (_, versions) = d.call(
        "GET",
        "/api/v1/workflows/integration-test-workflow/versions",
        None,
    );
    assert_eq!(
        versions["versions"].as_array().map(Vec::len),
        Some(1),
        "{versions}"
    );
}

#[test]
fn relative_paths_resolve_against_the_workflows_folder_under_run_and_run_remote() {
    let home = TestHome::initialized();
    let project = home.tmp().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let wf = json!({"name": "writer", "nodes": [
        {"id": "w", "type": "file.write", "data": {"inputs": {"path": "out/{{ trigger.where }}.txt", "content": "x"}}}
    ], "edges": []});
    let file = project.join("writer.json");
    std::fs::write(&file, wf.to_string()).unwrap();
    std::fs::create_dir_all(project.join("out")).unwrap();
    home.cmd()
        .arg("run")
        .arg(&file)
        .args(["--input", "where=local"])
        .assert()
        .success();
    assert!(project.join("out/local.txt").is_file());
    let d = start(&home);
    home.cmd()
        .arg("run")
        .arg(&file)
        .args(["--remote", "--input", "where=remote"])
        .assert()
        .success();
    assert!(
        project.join("out/remote.txt").is_file(),
        "--remote wrote somewhere else than the workflow's folder"
    );
    // Posted as JSON (no file): relative to <home>/workflows/ (the same content
    // is no new version, but it no longer comes from the file).
    std::fs::create_dir_all(home.path().join("workflows/out")).unwrap();
    let (code, r) = d.call("POST", "/api/v1/workflows", Some(wf));
    assert_eq!((code, &r["unchanged"]), (200, &json!(true)), "{r}");
    let (_, r) = d.call(
        "POST",
        "/api/v1/workflows/writer/run",
        Some(json!({"where": "api"})),
    );
    d.wait_run(r["run_id"].as_str().unwrap());
    assert!(home.path().join("workflows/out/api.txt").is_file());

    // A failed remote run prints its error with -q, not `null`.
    let failing = project.join("fails.json");
    std::fs::write(
        &failing,
        json!({"name": "fails", "nodes": [{"id": "x", "type": "exec.command", "data": {"inputs": {"argv": ["sh", "-c", "exit 5"]}}}], "edges": []})
            .to_string(),
    )
    .unwrap();
    let out = home
        .cmd()
        .arg("-q")
        .arg("run")
        .arg(&failing)
        .arg("--remote")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("null"), "{stdout}");
    assert!(
        stderr.contains("failed") && stderr.contains("exit"),
        "{stderr}"
    );
}

#[test]
fn interactive_init_re_asks_a_bad_port_and_names_the_chosen_home() {
    let t = TestHome::new();
    let chosen = t.tmp().join("my home");
    let default = t.tmp().join("default-home");
    let screen = crate::helper::in_terminal(
        &["init"],
        &[("FUSE_HOME", default.as_os_str())],
        &[
            ("Home folder", &format!("{}\r", chosen.display())),
            ("Daemon port", "abc\r"),
            ("not a port number", "70000\r"),
            ("too large for a port", "8123\r"),
            ("Created a fuse home", ""),
        ],
    );
    assert!(!screen.contains("invalid digit"), "{screen}");
    let config = std::fs::read_to_string(chosen.join("fuse.toml")).unwrap();
    assert!(config.contains("8123"), "{config}");
    // The chosen home is not the default: the next step names it.
    assert!(screen.contains("--home '"), "{screen}");
    assert!(screen.contains("my home"), "{screen}");
}

#[test]
fn params_are_declared_checked_and_converted_everywhere() {
    let home = TestHome::initialized();
    let wf = json!({"name": "sizes", "params": [
            {"name": "count", "type": "integer", "required": true, "description": "how many"},
            {"name": "label", "type": "string", "default": "items"}
        ],
        "nodes": [{"id": "s", "type": "transform.set", "data": {"inputs": {"values": {
            "double": "{{ trigger.count * 2 }}", "label": "{{ trigger.label }}"}}}}],
        "edges": []});
    let file = home.write("sizes.json", &wf);
    // "5" becomes 5, defaults fill in.
    let out = crate::helper::stdout_of(
        home.cmd()
            .arg("run")
            .arg(&file)
            .args(["--input", "count=5"]),
    );
    let output: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(output, json!({"double": 10, "label": "items"}));
    // Unknown names, bad values and missing required params are refused before anything runs.
    for (args, says) in [
        (
            vec!["--input", "count=5", "--input", "lable=x"],
            "unknown input `lable`; did you mean `label`?",
        ),
        (
            vec!["--input", "count=five"],
            "input `count`: expected an integer, got string \"five\"",
        ),
        (vec![], "input `count` is required (integer: how many)"),
    ] {
        home.cmd()
            .arg("run")
            .arg(&file)
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicates::str::contains(says));
    }
    assert!(
        recorded_runs(&home).len() == 1,
        "a refused input must not start a run"
    );
    // validate lists them; an expression naming an undeclared param is an error.
    let listed = crate::helper::stdout_of(home.cmd().arg("validate").arg(&file));
    assert!(
        listed.contains("count (integer, required): how many"),
        "{listed}"
    );
    let mut typo = wf.clone();
    typo["nodes"][0]["data"]["inputs"]["values"]["label"] = json!("{{ trigger.lable }}");
    let (code, problems) = validate(&home, &typo);
    assert_eq!(code, 2);
    assert!(
        has(
            &problems,
            "`trigger.lable` is not a declared param; did you mean `label`?"
        ),
        "{problems:#?}"
    );

    // The daemon checks the API and webhooks the same way.
    let d = start(&home);
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (code, r) = d.call(
        "POST",
        "/api/v1/workflows/sizes/run",
        Some(json!({"count": "x"})),
    );
    assert_eq!(code, 422, "{r}");
    assert_eq!(r["error"]["code"], "invalid_input");
    let (code, r) = d.call(
        "POST",
        "/api/v1/workflows/sizes/run",
        Some(json!({"count": "4"})),
    );
    assert_eq!(code, 202, "{r}");
    let run = d.wait_run(r["run_id"].as_str().unwrap());
    assert_eq!(run["output"], json!({"double": 8, "label": "items"}));
    let hook = json!({"name": "hooked", "params": [{"name": "id", "type": "integer", "required": true}],
        "nodes": [{"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "hooked"}}},
                  {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"id": "{{ trigger.body.id }}"}}}}],
        "edges": [{"source": "t", "target": "s"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(hook)).0, 201);
    let (code, r) = http(
        "POST",
        &format!("{}/webhook/hooked", d.url),
        None,
        &[],
        Some(&json!({"idd": 1})),
    );
    assert_eq!(code, 422, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `id`?"),
        "{r}"
    );
    let (code, r) = http(
        "POST",
        &format!("{}/webhook/hooked", d.url),
        None,
        &[],
        Some(&json!({"id": "12"})),
    );
    assert_eq!(code, 202, "{r}");
    assert_eq!(
        d.wait_run(r["run_id"].as_str().unwrap())["output"],
        json!({"id": 12})
    );
}

#[test]
fn comparing_values_of_different_types_is_an_error() {
    let home = TestHome::initialized();
    let wf = home.write(
        "cmp.json",
        &json!({"nodes": [
            {"id": "if", "type": "flow.if", "data": {"inputs": {"condition": "{{ trigger.v > 10 }}"}}},
            {"id": "yes", "type": "transform.set", "data": {"inputs": {"values": {"branch": "true"}}}},
            {"id": "no", "type": "transform.set", "data": {"inputs": {"values": {"branch": "false"}}}}
        ], "edges": [
            {"source": "if", "target": "yes", "sourceHandle": "true"},
            {"source": "if", "target": "no", "sourceHandle": "false"}
        ]}),
    );
    for (value, says) in [
        (
            r#"{"v": "5"}"#,
            "cannot compare string \"5\" with number 10 using `>`",
        ),
        (
            r#"{"v": "abc"}"#,
            "cannot compare string \"abc\" with number 10",
        ),
        (r#"{"v": [1]}"#, "cannot compare list [1] with number 10"),
    ] {
        let out = home
            .cmd()
            .arg("run")
            .arg(&wf)
            .args(["--input-file", "-"])
            .write_stdin(value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{value}: {stderr}");
        assert!(stderr.contains(says), "{value}: {stderr}");
        assert!(
            stderr.contains("trigger.v > 10"),
            "the expression is named: {stderr}"
        );
    }
    // Numbers still compare.
    let out = home
        .cmd()
        .arg("run")
        .arg(&wf)
        .args(["--input-file", "-"])
        .write_stdin(r#"{"v": 11}"#)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"true\""));
}

#[test]
fn a_missing_field_at_run_time_is_named_with_what_is_there() {
    let home = TestHome::initialized();
    let wf = home.write(
        "greet.json",
        &json!({"nodes": [
            {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {
                "text": "Hello {{ trigger.nmae }}, from {{ trigger.name }}"}}}}
        ], "edges": []}),
    );
    home.cmd()
        .arg("run")
        .arg(&wf)
        .args(["--input", "name=Ada"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "`trigger` has no field `nmae` (it has: name)",
        ));
    let wf = home.write(
        "deep.json",
        &json!({"nodes": [
            {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"n": "{{ trigger.user.age + 1 }}"}}}}
        ], "edges": []}),
    );
    home.cmd()
        .arg("run")
        .arg(&wf)
        .args(["--input", r#"user={"name": "Ada"}"#])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "`trigger.user` has no field `age` (it has: name)",
        ));
}

#[test]
fn unknown_filters_tests_and_bad_durations_are_caught_by_validate() {
    let home = TestHome::initialized();
    let (code, problems) = validate(
        &home,
        &json!({"settings": {"timeout": "1 hour"}, "nodes": [
            {"id": "w", "type": "flow.wait", "timeout": "2 mins", "data": {"inputs": {"duration": "5 seconds"}}},
            {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {
                "n": "{{ trigger.x | lenght }}",
                "t": "a {{ trigger.y is defind }} {{ trigger.z | upper }}"}}}}
        ], "edges": []}),
    );
    assert_eq!(code, 2);
    for want in [
        "settings.timeout: \"1 hour\" is not a duration; did you mean \"1h\"?",
        "nodes[0].timeout: \"2 mins\" is not a duration; did you mean \"2m\"?",
        "nodes[0].data.inputs.duration: \"5 seconds\" is not a duration; did you mean \"5s\"?",
        "unknown filter `lenght`; did you mean `length`?",
        "unknown test `defind`; did you mean `defined`?",
    ] {
        assert!(has(&problems, want), "missing {want:?} in {problems:#?}");
    }
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

/// How many errors a real JSON Schema validator (Python's jsonschema) finds
/// in `document` against the schema in `schema_file`.
pub(crate) fn schema_errors(schema_file: &std::path::Path, document: &str) -> usize {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             s = json.load(open(sys.argv[1])); d = json.loads(sys.argv[2])\n\
             print(len(list(jsonschema.Draft202012Validator(s).iter_errors(d))))",
        ])
        .arg(schema_file)
        .arg(document)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn the_workflow_schema_accepts_what_validate_accepts() {
    let home = TestHome::initialized();
    // A package node type of the home is in the schema too.
    crate::packages::package(
        &home,
        "shout",
        json!({"name": "shout", "kind": "node", "inputs": [{"name": "text", "type": "string", "required": true}],
               "runtime": {"command": ["sh", "main.sh"]}}),
        &[("main.sh", "cat >/dev/null; echo '{\"output\": 1}'")],
    );
    let schema = crate::helper::stdout_of(home.cmd().args(["schema", "workflow"]));
    let schema_file = home.tmp().join("schema.json");
    std::fs::write(&schema_file, &schema).unwrap();
    let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut cases: Vec<(String, serde_json::Value)> = std::fs::read_dir(&templates)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| !p.to_string_lossy().ends_with(".test.json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    let node = |n: serde_json::Value| json!({"nodes": [n], "edges": []});
    for (name, wf) in [
        (
            "package type",
            node(json!({"id": "a", "type": "shout", "data": {"inputs": {"text": "hi"}}})),
        ),
        (
            "package input typo",
            node(json!({"id": "a", "type": "shout", "data": {"inputs": {"txt": "hi"}}})),
        ),
        (
            "missing required",
            node(json!({"id": "a", "type": "http.request"})),
        ),
        (
            "input typo",
            node(
                json!({"id": "a", "type": "http.request", "data": {"inputs": {"url": "x", "methd": "GET"}}}),
            ),
        ),
        (
            "seed alias input",
            node(
                json!({"id": "a", "type": "OpenAINode", "data": {"inputs": {"system_message": "x"}}}),
            ),
        ),
        (
            "node key typo",
            node(
                json!({"id": "a", "type": "log", "retyr": {"attempts": 2}, "data": {"inputs": {"message": "x"}}}),
            ),
        ),
        (
            "editor keys",
            node(
                json!({"id": "a", "type": "log", "position": {"x": 1}, "selected": true, "data": {"label": "A", "inputs": {"message": "x"}}}),
            ),
        ),
        (
            "unknown type",
            node(json!({"id": "a", "type": "nope.nope"})),
        ),
        (
            "settings typo",
            json!({"settings": {"max_paralel": 2}, "nodes": [{"id": "a", "type": "log", "data": {"inputs": {"message": "x"}}}], "edges": []}),
        ),
        (
            "edge typo",
            json!({"nodes": [{"id": "a", "type": "log", "data": {"inputs": {"message": "x"}}}, {"id": "b", "type": "log", "data": {"inputs": {"message": "y"}}}],
                             "edges": [{"source": "a", "target": "b", "source_handle": "x"}]}),
        ),
        (
            "params",
            json!({"params": [{"name": "n", "type": "integer", "default": 1}], "nodes": [{"id": "a", "type": "log", "data": {"inputs": {"message": "{{ trigger.n }}"}}}], "edges": []}),
        ),
    ] {
        cases.push((name.to_string(), wf));
    }
    for (name, wf) in cases {
        let (code, problems) = validate(&home, &wf);
        let schema_errors = schema_errors(&schema_file, &wf.to_string());
        assert_eq!(
            code == 0,
            schema_errors == 0,
            "{name}: validate says {problems:?}, the schema found {schema_errors} error(s)"
        );
    }
}

#[test]
fn the_manifest_schema_is_generated_and_accepts_the_bundled_packages() {
    let home = TestHome::initialized();
    let schema = crate::helper::stdout_of(home.cmd().args(["schema", "manifest"]));
    let schema_file = home.tmp().join("manifest-schema.json");
    std::fs::write(&schema_file, &schema).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut manifests = Vec::new();
    for dir in ["node_packages", "plugin_packages", "templates/packages"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let m = entry.path().join("manifest.json");
            if m.is_file() {
                manifests.push((std::fs::read_to_string(&m).unwrap(), true));
            }
        }
    }
    assert!(manifests.len() >= 3);
    manifests.push((
        json!({"name": "x", "kind": "node", "runtime": {"comand": ["sh"]}}).to_string(),
        false,
    ));
    for (text, valid) in manifests {
        assert_eq!(schema_errors(&schema_file, &text) == 0, valid, "{text}");
    }
}

/// Found by `scripts/fuzz.sh`: a character the tokenizer refuses made the
/// unknown-filter check loop forever.
#[test]
fn fuzz_regression_an_untokenizable_expression_is_a_parse_error_not_a_hang() {
    let home = TestHome::initialized();
    let (code, problems) = validate(
        &home,
        &json!({"nodes": [{"id": "c", "type": "transform.set",
            "data": {"inputs": {"values": {"items": "{{ trigger.x$| length }}"}}}}], "edges": []}),
    );
    assert_eq!(code, 2);
    assert!(has(&problems, "expression does not parse"), "{problems:#?}");
}

#[test]
fn fuse_stop_never_signals_a_process_that_is_not_the_daemon() {
    let home = TestHome::initialized();
    // daemon.json names a pid that now belongs to another program.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(
        home.path().join("daemon.json"),
        json!({"pid": other.id(), "host": "127.0.0.1", "port": 1, "started_at": "x"}).to_string(),
    )
    .unwrap();
    home.cmd()
        .arg("stop")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no fuse daemon is running"));
    assert!(
        other.try_wait().unwrap().is_none(),
        "fuse stop signalled another program"
    );
    home.cmd().arg("status").assert().code(3);
    // And a daemon can start for the home.
    let d = start(&home);
    assert_eq!(d.call("GET", "/api/v1/health", None).0, 200);
    home.cmd().arg("stop").assert().success();
    other.kill().unwrap();
    other.wait().unwrap();
}
