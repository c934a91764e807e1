//! `fuse run` and `fuse runs` through the real binary.

use std::path::{Path, PathBuf};

use predicates::prelude::*;
use serde_json::{Value, json};

use crate::helper::{TestHome, stdout_of};

fn template(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("templates")
        .join(name)
}

fn write(dir: &Path, name: &str, wf: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(wf).unwrap()).unwrap();
    path
}

fn runs(t: &TestHome) -> Vec<Value> {
    serde_json::from_str(&stdout_of(t.cmd().args(["runs", "list", "--json"]))).unwrap()
}

#[test]
fn run_works_before_init_and_says_how_to_keep_history() {
    let t = TestHome::new();
    let out = t
        .cmd()
        .arg("run")
        .arg(template("hello.json"))
        .assert()
        .success();
    let stdout: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        stdout,
        json!({"greeting": "Hello, world!", "loud": "HELLO, WORLD!"})
    );
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.contains("not recorded") && stderr.contains("fuse init"),
        "{stderr}"
    );
    assert!(!t.path().exists(), "fuse run must not create a home");
}

#[test]
fn inputs_come_from_flags_files_and_stdin() {
    let t = TestHome::new();
    let input = t.tmp().join("in.json");
    std::fs::write(&input, r#"{"name": "Bob"}"#).unwrap();
    let out = stdout_of(
        t.cmd()
            .arg("run")
            .arg(template("hello.json"))
            .arg("--input-file")
            .arg(&input),
    );
    assert!(out.contains("Hello, Bob!"), "{out}");
    let out = stdout_of(
        t.cmd()
            .arg("run")
            .arg(template("hello.json"))
            .arg("--input-file")
            .arg(&input)
            .args(["--input", "name=Ada"]),
    );
    assert!(
        out.contains("Hello, Ada!"),
        "--input overrides the file: {out}"
    );
    let out = stdout_of(
        t.cmd()
            .arg("run")
            .arg(template("hello.json"))
            .args(["--input-file", "-"])
            .write_stdin(r#"{"name": "Cy"}"#),
    );
    assert!(out.contains("Hello, Cy!"), "{out}");
    t.cmd()
        .arg("run")
        .arg(template("hello.json"))
        .args(["--input", "no-equals-sign"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("KEY=VALUE"));
}

#[test]
fn json_prints_the_run_record() {
    let t = TestHome::new();
    let out = stdout_of(
        t.cmd()
            .arg("run")
            .arg(template("fan-out.json"))
            .args(["--json", "-q"]),
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    for key in [
        "run_id",
        "status",
        "output",
        "error",
        "duration_ms",
        "nodes",
    ] {
        assert!(r.get(key).is_some(), "missing {key}: {r}");
    }
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["output"], json!({"sum_of_squares": 55, "items": 5}));
    assert_eq!(r["nodes"]["square"]["status"], "succeeded");
    assert_eq!(r["nodes"]["square"]["attempts"], 1);
}

#[test]
fn every_template_runs() {
    let t = TestHome::initialized();
    let report = t.tmp().join("report.json");
    t.cmd()
        .arg("run")
        .arg(template("disk-report.json"))
        .arg("--input")
        .arg(format!("out={}", report.display()))
        .assert()
        .success();
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(
        saved
            .as_array()
            .is_some_and(|a| !a.is_empty() && a[0]["mount"].is_string()),
        "{saved}"
    );
    for name in ["hello.json", "fan-out.json"] {
        t.cmd().arg("run").arg(template(name)).assert().success();
    }
}

#[test]
fn exit_codes_say_failed_or_invalid() {
    let t = TestHome::new();
    let failing = write(
        t.tmp(),
        "fail.json",
        &json!({"nodes": [{"id": "boom", "type": "exec.command", "data": {"inputs": {"argv": ["sh", "-c", "echo broken >&2; exit 3"]}}}]}),
    );
    t.cmd()
        .arg("run")
        .arg(&failing)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("failed"))
        .stderr(predicate::str::contains("exited with code 3: broken"));
    let invalid = write(
        t.tmp(),
        "bad.json",
        &json!({"nodes": [{"id": "x", "type": "nope.nothing"}]}),
    );
    t.cmd()
        .arg("run")
        .arg(&invalid)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown node type"));
    t.cmd()
        .arg("run")
        .arg(t.tmp().join("missing.json"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot read workflow"));
}

#[test]
fn runs_are_recorded_and_shown() {
    let t = TestHome::initialized();
    let wf = write(
        t.tmp(),
        "logs.json",
        &json!({"name": "logger", "nodes": [
            {"id": "say", "type": "log", "data": {"inputs": {"message": "hello from {{ run.workflow }}", "level": "warn"}}},
            {"id": "cmd", "type": "exec.command", "data": {"inputs": {"argv": ["sh", "-c", "echo to-stderr >&2; echo out"]}}}
        ], "edges": [{"source": "say", "target": "cmd"}]}),
    );
    t.cmd().arg("run").arg(&wf).assert().success();
    t.cmd()
        .arg("run")
        .arg(&wf)
        .arg("--no-history")
        .assert()
        .success();
    let list = runs(&t);
    assert_eq!(
        list.len(),
        1,
        "--no-history runs are not recorded: {list:?}"
    );
    assert_eq!(list[0]["workflow"], "logger");
    assert_eq!(list[0]["status"], "succeeded");
    let id = list[0]["id"].as_str().unwrap();
    let show = stdout_of(t.cmd().args(["runs", "show", id]));
    assert!(
        show.contains("say") && show.contains("exec.command") && show.contains("succeeded"),
        "{show}"
    );
    // The end of an id is enough (ids of runs started together share their start).
    let short = &id[id.len() - 8..];
    let detail: Value =
        serde_json::from_str(&stdout_of(t.cmd().args(["runs", "show", short, "--json"]))).unwrap();
    assert_eq!(detail["id"], id);
    let cmd = detail["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "cmd")
        .unwrap()
        .clone();
    assert_eq!(cmd["output"]["stdout"], "out\n");
    assert!(cmd["input"].is_object());
    let logs = stdout_of(t.cmd().args(["runs", "logs", id]));
    assert!(logs.contains("hello from logger"), "{logs}");
    assert!(
        logs.contains("to-stderr"),
        "stderr lines of commands are logged: {logs}"
    );
    t.cmd()
        .args(["runs", "show", "zzzzzzzz"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no run with id"));
    // Filters.
    let failed: Vec<Value> = serde_json::from_str(&stdout_of(
        t.cmd()
            .args(["runs", "list", "--status", "failed", "--json"]),
    ))
    .unwrap();
    assert!(failed.is_empty());
}

#[test]
fn retry_from_failed_reuses_succeeded_outputs() {
    let t = TestHome::initialized();
    let dir = t.tmp();
    let wf = write(
        dir,
        "twostep.json",
        &json!({"name": "twostep", "nodes": [
            {"id": "count", "type": "exec.command", "data": {"inputs": {"argv": ["sh", "-c", "echo x >> calls; wc -l < calls"]}}},
            {"id": "gate", "type": "exec.command", "data": {"inputs": {"argv": ["sh", "-c", "test -f ok && echo passed"]}}}
        ], "edges": [{"source": "count", "target": "gate"}]}),
    );
    t.cmd().arg("run").arg(&wf).assert().code(1);
    let id = runs(&t)[0]["id"].as_str().unwrap().to_string();
    std::fs::write(dir.join("ok"), "").unwrap();
    let out = stdout_of(
        t.cmd()
            .args(["runs", "retry", &id, "--from-failed", "--json"])
            .current_dir("/"),
    );
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["output"]["stdout"], "passed\n");
    assert_eq!(
        r["nodes"]["count"]["attempts"], 0,
        "count was reused, not rerun"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("calls"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    // A plain retry runs everything again.
    stdout_of(t.cmd().args(["runs", "retry", &id]));
    assert_eq!(
        std::fs::read_to_string(dir.join("calls"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    let list = runs(&t);
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["retry_of"], id.as_str());
}

#[test]
fn prune_deletes_old_runs() {
    let t = TestHome::initialized();
    for _ in 0..3 {
        t.cmd()
            .arg("run")
            .arg(template("hello.json"))
            .assert()
            .success();
    }
    assert_eq!(runs(&t).len(), 3);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = stdout_of(t.cmd().args(["runs", "prune", "--older-than", "10ms"]));
    assert!(out.contains("deleted 3 run(s)"), "{out}");
    assert!(runs(&t).is_empty());
    t.cmd()
        .args(["runs", "prune", "--older-than", "soon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a duration"));
}

#[test]
fn ctrl_c_cancels_the_run_and_records_it() {
    let t = TestHome::initialized();
    let wf = write(
        t.tmp(),
        "slow.json",
        &json!({"name": "slow", "nodes": [{"id": "wait", "type": "exec.command", "data": {"inputs": {"argv": ["sleep", "30"]}}}]}),
    );
    let bin = assert_cmd::cargo::cargo_bin("fuse");
    let mut child = std::process::Command::new(bin)
        .env("FUSE_HOME", t.path())
        .arg("run")
        .arg(&wf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run is recorded as running, then interrupt it.
    let db = t.path().join("fuse.db");
    for _ in 0..200 {
        let running = rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM executions WHERE status = 'running'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .unwrap_or(0);
        if running > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "cancellation must not wait for the command"
    );
    assert_eq!(status.code(), Some(1));
    let list = runs(&t);
    assert_eq!(list[0]["status"], "cancelled", "{list:?}");
}

#[test]
fn bad_input_gives_clear_errors_not_panics() {
    let t = TestHome::new();
    let dir = t.tmp();
    // Malformed JSON: line and column.
    std::fs::write(
        dir.join("broken.json"),
        "{\"nodes\": [\n  {\"id\": \"a\",, }\n]}",
    )
    .unwrap();
    t.cmd()
        .arg("run")
        .arg(dir.join("broken.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 2"))
        .stderr(predicate::str::contains("panicked").not());
    // Wrong types: the JSON path.
    std::fs::write(
        dir.join("types.json"),
        r#"{"nodes": [{"id": "a", "type": "log", "retry": {"attempts": "many"}}]}"#,
    )
    .unwrap();
    t.cmd()
        .arg("run")
        .arg(dir.join("types.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nodes[0].retry.attempts"));
    // Deep nesting: a parse error, not a stack overflow.
    let deep = format!(
        "{{\"nodes\": [{{\"id\": \"a\", \"type\": \"flow.noop\", \"data\": {{\"inputs\": {{\"x\": {}{}}}}}}}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    std::fs::write(dir.join("deep.json"), deep).unwrap();
    t.cmd()
        .arg("run")
        .arg(dir.join("deep.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("recursion limit"));
    // An expression that loops is stopped.
    let looping = json!({"nodes": [{"id": "spin", "type": "transform.set", "data": {"inputs": {"values":
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"}}}]});
    t.cmd()
        .arg("run")
        .arg(write(dir, "loop.json", &looping))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("spin"))
        .stderr(predicate::str::contains("panicked").not());
    // A 50 MB run input is handled (and recorded) without trouble.
    let big = format!("{{\"data\": \"{}\"}}", "x".repeat(50 * 1024 * 1024));
    std::fs::write(dir.join("big.json"), big).unwrap();
    let wf = json!({"nodes": [{"id": "t", "type": "trigger.manual"},
        {"id": "len", "type": "transform.set", "data": {"inputs": {"values": {"bytes": "{{ trigger.data | length }}"}}}}],
        "edges": [{"source": "t", "target": "len"}]});
    let out = stdout_of(
        t.cmd()
            .arg("run")
            .arg(write(dir, "len.json", &wf))
            .arg("--input-file")
            .arg(dir.join("big.json")),
    );
    assert!(out.contains(&(50 * 1024 * 1024).to_string()), "{out}");
}

#[test]
fn the_http_and_llm_templates_run_against_local_servers() {
    use crate::helper::http::{Reply, TestServer};
    let server = TestServer::start(|req, _| {
        match req.path.as_str() {
        "/issues" => Reply::json(200, json!([
            {"title": "a", "state": "open"}, {"title": "b", "state": "open"}, {"title": "c", "state": "closed"}
        ])),
        _ => Reply::Chunks {
            status: 200,
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            chunks: vec![
                (std::time::Duration::ZERO, format!("data: {}\n\n", json!({"choices": [{"delta": {"content": "- short"}}]})).into_bytes()),
                (std::time::Duration::ZERO, format!("data: {}\n\n", json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})).into_bytes()),
                (std::time::Duration::ZERO, b"data: [DONE]\n\n".to_vec()),
            ],
        },
    }
    });
    let t = TestHome::initialized();
    let out = t.tmp().join("report.json");
    let report = stdout_of(
        t.cmd()
            .arg("run")
            .arg(template("api-report.json"))
            .arg("--input")
            .arg(format!("url={}", server.url("/issues")))
            .arg("--input")
            .arg(format!("out={}", out.display()))
            .args(["--input", "alert_above=1"]),
    );
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["count"], 3);
    assert_eq!(report["by_state"], json!({"open": 2, "closed": 1}));
    assert!(out.is_file());
    let fetched = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/issues")
        .unwrap();
    assert!(fetched.query.contains("per_page=30"), "{}", fetched.query);

    let summary = stdout_of(
        t.cmd()
            .arg("run")
            .arg(template("llm-summarise.json"))
            .arg("--input")
            .arg(format!("base_url={}", server.url("/v1")))
            .args(["--input", "model=tiny"]),
    );
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary, json!({"summary": "- short", "tokens": 12}));
    let sent = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/chat/completions")
        .unwrap()
        .json();
    assert!(
        sent["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("\"name\": \"hello\""),
        "the file was read: {sent}"
    );
    // The run records its token usage; the cache (in the home) makes a re-run free.
    let id = runs(&t)[0]["id"].as_str().unwrap().to_string();
    let show = stdout_of(t.cmd().args(["runs", "show", &id]));
    assert!(
        show.contains("tokens    12 (10 prompt, 2 completion)"),
        "{show}"
    );
    let calls = server.requests().len();
    t.cmd()
        .arg("run")
        .arg(template("llm-summarise.json"))
        .arg("--input")
        .arg(format!("base_url={}", server.url("/v1")))
        .args(["--input", "model=tiny"])
        .assert()
        .success();
    assert_eq!(
        server.requests().len(),
        calls,
        "served from the llm cache in the home"
    );
    assert!(
        t.path()
            .join("cache/llm")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
}

#[test]
fn a_workflow_file_of_4_mb_or_more_is_read_as_a_stream_and_stored_whole() {
    // From 4 MB a file is parsed as a stream and its text is not held; history
    // reads it back from the file, byte for byte (multi-byte characters
    // across the reader's pieces included).
    let t = TestHome::initialized();
    let dir = t.tmp();
    let description = "é ✓ ".repeat(700_000);
    let wf = write(
        dir,
        "big.json",
        &json!({"name": "big", "description": description, "nodes": [
            {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"x": 1}}}},
            {"id": "b", "type": "transform.set", "data": {"inputs": {"values": {"y": "{{ nodes.a.output.x }}"}}}}
        ], "edges": [{"source": "a", "target": "b"}]}),
    );
    let bytes = std::fs::read(&wf).unwrap();
    assert!(bytes.len() as u64 >= 4 * 1024 * 1024);
    t.cmd()
        .arg("validate")
        .arg(&wf)
        .assert()
        .success()
        .stdout(predicate::str::contains("is valid: 2 nodes, 1 edges"));
    stdout_of(t.cmd().arg("run").arg(&wf));
    let id = runs(&t)[0]["id"].as_str().unwrap().to_string();
    let db = rusqlite::Connection::open(t.path().join("fuse.db")).unwrap();
    let (hash, stored): (String, Vec<u8>) = db
        .query_row(
            "SELECT e.workflow_hash, CAST(d.definition AS BLOB) FROM executions e
             JOIN definitions d ON d.hash = e.workflow_hash WHERE e.id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        stored == bytes,
        "the stored definition differs from the file"
    );
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, expected);
    // The file gone, the run is retried from history.
    std::fs::remove_file(&wf).unwrap();
    let r: Value =
        serde_json::from_str(&stdout_of(t.cmd().args(["runs", "retry", &id, "--json"]))).unwrap();
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["output"], json!({"y": 1}));
}

#[test]
fn a_large_file_streamed_is_checked_as_a_small_one_is() {
    let t = TestHome::initialized();
    let dir = t.tmp();
    let padding = "x".repeat(4 * 1024 * 1024);
    // An unknown type with a suggestion, an edge to a missing node.
    let wf = write(
        dir,
        "bad.json",
        &json!({"name": "bad", "description": padding, "nodes": [
            {"id": "a", "type": "transform.sett", "data": {"inputs": {}}}
        ], "edges": [{"source": "a", "target": "zz"}]}),
    );
    t.cmd()
        .arg("validate")
        .arg(&wf)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean \"transform.set\""))
        .stderr(predicate::str::contains("edge to unknown node \"zz\""));
    // Text after the workflow: refused, at its line and column.
    let mut text = std::fs::read_to_string(&wf).unwrap();
    text.push_str("\n  }");
    let last = text.lines().count();
    std::fs::write(&wf, text).unwrap();
    t.cmd()
        .arg("run")
        .arg(&wf)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("line {last}, column 3")))
        .stderr(predicate::str::contains("trailing characters"));
    // A value of the wrong shape: named by its JSON path (found by reading
    // the file a second time, with tracking).
    let wf = write(
        dir,
        "shape.json",
        &json!({"name": "shape", "description": padding, "nodes": [
            {"id": "a", "type": "transform.set"},
            {"id": "b", "type": "transform.set", "retry": {"attempts": "3"}}
        ], "edges": []}),
    );
    t.cmd()
        .arg("validate")
        .arg(&wf)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "- nodes[1].retry.attempts: line 13",
        ))
        .stderr(predicate::str::contains("expected u32"));
}

#[test]
fn a_long_workflow_is_stored_whole_and_retried_from_history() {
    // Over 64 KB, a definition is written into its row in place rather than
    // bound as a value; it must read back byte for byte.
    let t = TestHome::initialized();
    let dir = t.tmp();
    let n = 1000;
    let nodes: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("n{i}"), "type": "transform.set", "data": {"inputs": {"values": {"i": i, "note": "é ✓"}}}}))
        .collect();
    let edges: Vec<Value> = (1..n)
        .map(|i| json!({"source": format!("n{}", i - 1), "target": format!("n{i}")}))
        .collect();
    let wf = write(
        dir,
        "long.json",
        &json!({"name": "long", "nodes": nodes, "edges": edges}),
    );
    assert!(std::fs::metadata(&wf).unwrap().len() > 64 * 1024);
    stdout_of(t.cmd().arg("run").arg(&wf));
    // Run again: the definition is already stored.
    stdout_of(t.cmd().arg("run").arg(&wf));
    std::fs::remove_file(&wf).unwrap();
    let id = runs(&t)[0]["id"].as_str().unwrap().to_string();
    let r: Value =
        serde_json::from_str(&stdout_of(t.cmd().args(["runs", "retry", &id, "--json"]))).unwrap();
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["output"], json!({"i": n - 1, "note": "é ✓"}));
}
