//! The credentials vault through the real binary, with the key-file fallback
//! (this machine has no OS keyring): round trips, use in workflows, masking,
//! tampering, wrong keys and interrupted key rotation.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::{Value, json};

use crate::helper::TestHome;
use crate::helper::http::{Reply, TestServer};

/// Stores a credential through `fuse creds set --stdin`.
fn set(home: &TestHome, name: &str, kind: &str, fields: Value) {
    home.cmd()
        .args(["creds", "set", name, "--type", kind, "--stdin"])
        .write_stdin(fields.to_string())
        .assert()
        .success();
}

/// Every byte of every file under `dir` (database, WAL, logs, blobs, cache).
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

fn db(home: &TestHome) -> Connection {
    Connection::open(home.path().join("fuse.db")).unwrap()
}

#[test]
fn set_list_check_rm_round_trip_without_values_on_screen() {
    let home = TestHome::initialized();
    set(
        &home,
        "github",
        "bearer",
        json!({"token": "ghp-round-trip-51a7"}),
    );
    set(
        &home,
        "db",
        "basic",
        json!({"username": "ada", "password": "pw-round-trip-c3d9"}),
    );

    let out = home.cmd().args(["creds", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("key file"), "says which key store: {text}");
    assert!(text.contains("github") && text.contains("bearer") && text.contains("token"));
    assert!(
        text.contains("db") && text.contains("username,password"),
        "{text}"
    );
    assert!(!text.contains("round-trip"), "no value is listed: {text}");

    let list: Value = serde_json::from_slice(
        &home
            .cmd()
            .args(["creds", "list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(list["key_store"], "file");
    assert_eq!(list["credentials"].as_array().unwrap().len(), 2);

    home.cmd()
        .args(["creds", "check"])
        .assert()
        .success()
        .stdout(predicates::str::contains("ok      github"));

    // Replacing keeps one row; removing twice says there is nothing left.
    set(
        &home,
        "github",
        "bearer",
        json!({"token": "ghp-replaced-0001"}),
    );
    let count: i64 = db(&home)
        .query_row("SELECT count(*) FROM credentials", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 2);
    home.cmd()
        .args(["creds", "rm", "github"])
        .assert()
        .success();
    home.cmd()
        .args(["creds", "rm", "github"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no credential \"github\""));

    // The database holds ciphertext only.
    assert!(files_containing(home.path(), b"pw-round-trip-c3d9").is_empty());
}

#[test]
fn values_never_come_from_arguments_and_bad_input_is_explained() {
    let home = TestHome::initialized();
    // No terminal and no --stdin: says how to pipe the value.
    home.cmd()
        .args(["creds", "set", "x", "--type", "bearer"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("--stdin"));
    // There is no flag that takes a value.
    home.cmd()
        .args(["creds", "set", "x", "--type", "bearer", "--token", "abc"])
        .assert()
        .code(2);
    for (args, stdin, says) in [
        (vec!["x", "--type", "nope"], "{}", "unknown credential type"),
        (
            vec!["../x", "--type", "bearer"],
            r#"{"token":"t"}"#,
            "not a valid credential name",
        ),
        (
            vec!["x", "--type", "basic"],
            r#"{"username":"u"}"#,
            "needs `password`",
        ),
        (
            vec!["x", "--type", "bearer"],
            r#"{"tokn":"t"}"#,
            "no field `tokn`",
        ),
        (
            vec!["x", "--type", "bearer"],
            "not json",
            "not a JSON object",
        ),
        (vec!["x"], r#"{"token":"t"}"#, "--type"),
    ] {
        let mut cmd = home.cmd();
        cmd.args(["creds", "set"])
            .args(&args)
            .arg("--stdin")
            .write_stdin(stdin);
        cmd.assert()
            .failure()
            .stderr(predicates::str::contains(says));
    }
    home.cmd()
        .args(["creds", "types"])
        .assert()
        .success()
        .stdout(predicates::str::contains("api_key").and(predicates::str::contains("(secret)")));
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn a_secret_used_every_way_never_reaches_disk_logs_or_output() {
    const SECRET: &str = "zq-DISTINCTIVE-s3cret-7741";
    let home = TestHome::initialized();
    set(
        &home,
        "api",
        "header",
        json!({"name": "X-Api-Token", "value": SECRET}),
    );
    set(&home, "tok", "bearer", json!({"token": SECRET}));
    // The server echoes what it received, so the secret comes back in the response.
    let server = TestServer::start(|r, _| {
        Reply::json(
            200,
            json!({"you_sent": r.header("x-api-token"), "auth": r.header("authorization"), "query": r.query}),
        )
    });
    let wf = json!({"nodes": [
        {"id": "call", "type": "http.request", "data": {"inputs": {
            "url": server.url("/echo"), "credential": "api", "query": {"q": "{{ creds.tok.token }}"}}}},
        {"id": "shell", "type": "exec.command", "data": {"inputs": {
            "argv": ["sh", "-c", "echo stdout:$0; echo stderr:$0 >&2", "{{ creds.tok.token }}"]}}},
        {"id": "concat", "type": "transform.set", "data": {"inputs": {"values": {
            "joined": "prefix-{{ creds.tok.token }}-suffix",
            "echoed": "{{ nodes.call.output.body.you_sent }}",
            "stdout": "{{ nodes.shell.output.stdout }}"}}}},
        {"id": "say", "type": "log", "data": {"inputs": {"message": "token is {{ creds.tok.token }}"}}},
        {"id": "fail", "type": "exec.command", "on_error": "continue", "data": {"inputs": {
            "argv": ["sh", "-c", "echo failing with $0 >&2; exit 3", "{{ creds.tok.token }}"]}}}
    ], "edges": [
        {"source": "call", "target": "concat"}, {"source": "shell", "target": "concat"},
        {"source": "concat", "target": "say"}, {"source": "say", "target": "fail"}
    ]});
    let path = home.write("leak.json", &wf);

    let out = home
        .cmd()
        .arg("run")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // The secret really was used: the server got it as the header and in the query.
    let got = server.requests();
    assert_eq!(got[0].header("x-api-token"), Some(SECRET));
    assert!(got[0].query.contains(SECRET), "{}", got[0].query);
    // And everything that came back is masked, also inside longer strings.
    let record: Value = serde_json::from_str(&stdout).unwrap();
    let concat = &record["nodes"]["concat"]["output"];
    assert_eq!(concat["joined"], "prefix-***-suffix");
    assert_eq!(concat["echoed"], "***");
    assert_eq!(concat["stdout"], "stdout:***\n");

    // Human output, history commands, the database, its WAL, logs and blobs.
    let plain = home.cmd().arg("run").arg(&path).output().unwrap();
    let run_id = record["run_id"].as_str().unwrap();
    let show = home
        .cmd()
        .args(["runs", "show", run_id, "--json"])
        .output()
        .unwrap();
    let logs = home.cmd().args(["runs", "logs", run_id]).output().unwrap();
    let logs_text = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(logs_text.contains("token is ***"), "{logs_text}");
    assert!(logs_text.contains("stderr:***"), "{logs_text}");
    for (what, bytes) in [
        ("run --json stdout", out.stdout.clone()),
        ("run --json stderr", out.stderr.clone()),
        ("run stdout", plain.stdout),
        ("run stderr", plain.stderr),
        ("runs show", show.stdout),
        ("runs logs", logs.stdout),
    ] {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET), "{what} leaks the secret:\n{text}");
        assert!(!text.contains("s3cret"), "{what} leaks part of the secret");
    }
    let wal = home.path().join("fuse.db-wal");
    assert!(wal.exists() || home.path().join("fuse.db").exists());
    assert_eq!(
        files_containing(home.path(), SECRET.as_bytes()),
        Vec::<String>::new(),
        "files in the home hold the plaintext"
    );
}

#[test]
fn credentials_authenticate_http_requests_by_type() {
    let home = TestHome::initialized();
    set(&home, "b", "bearer", json!({"token": "bearer-token-1"}));
    set(
        &home,
        "u",
        "basic",
        json!({"username": "ada", "password": "basic-pass-2"}),
    );
    set(
        &home,
        "h",
        "header",
        json!({"name": "X-Key", "value": "header-val-3"}),
    );
    set(&home, "k", "api_key", json!({"key": "apikey-4444"}));
    set(
        &home,
        "q",
        "api_key",
        json!({"key": "querykey-5555", "in": "query", "name": "key"}),
    );
    let server = TestServer::start(|_, _| Reply::json(200, json!({"ok": true})));
    let node = |id: &str, cred: &str| json!({"id": id, "type": "http.request", "data": {"inputs": {"url": server.url(&format!("/{id}")), "credential": cred}}});
    let wf = json!({"nodes": [node("b", "b"), node("u", "u"), node("h", "h"), node("k", "k"), node("q", "q")], "edges": []});
    let path = home.write("auth.json", &wf);
    home.cmd().arg("run").arg(&path).assert().success();

    let by_path = |p: &str| {
        server
            .requests()
            .into_iter()
            .find(|r| r.path == p)
            .unwrap_or_else(|| panic!("no request to {p}"))
    };
    assert_eq!(
        by_path("/b").header("authorization"),
        Some("Bearer bearer-token-1")
    );
    // base64("ada:basic-pass-2")
    assert_eq!(
        by_path("/u").header("authorization"),
        Some("Basic YWRhOmJhc2ljLXBhc3MtMg==")
    );
    assert_eq!(by_path("/h").header("x-key"), Some("header-val-3"));
    assert_eq!(by_path("/k").header("x-api-key"), Some("apikey-4444"));
    assert_eq!(by_path("/q").query, "key=querykey-5555");
}

#[test]
fn llm_chat_takes_key_and_base_url_from_an_openai_credential() {
    let home = TestHome::initialized();
    let server = TestServer::start(|_, _| {
        Reply::json(
            200,
            json!({"choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}),
        )
    });
    set(
        &home,
        "local-llm",
        "openai",
        json!({"api_key": "sk-local-7788", "base_url": server.url("/v1")}),
    );
    let wf = json!({"nodes": [{"id": "chat", "type": "llm.chat", "data": {"inputs": {
        "credential": "local-llm", "model": "m", "prompt": "hello", "cache": false}}}], "edges": []});
    let path = home.write("llm.json", &wf);
    home.cmd().arg("run").arg(&path).assert().success();
    let got = server.requests();
    assert_eq!(got[0].path, "/v1/chat/completions");
    assert_eq!(got[0].header("authorization"), Some("Bearer sk-local-7788"));
}

#[test]
fn a_missing_credential_fails_the_node_with_a_fix() {
    let home = TestHome::initialized();
    let wf = json!({"nodes": [{"id": "s", "type": "transform.set", "data": {"inputs": {
        "values": {"t": "{{ creds.nothere.token }}"}}}}], "edges": []});
    let path = home.write("missing.json", &wf);
    home.cmd().arg("run").arg(&path).assert().code(1).stderr(
        predicates::str::contains("credential \"nothere\" does not exist")
            .and(predicates::str::contains("fuse creds set nothere")),
    );
    // Before `fuse init` there is no vault: the error says so.
    let bare = TestHome::new();
    let path = bare.write("wf.json", &wf);
    bare.cmd()
        .arg("run")
        .arg(&path)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("fuse init"));
}

#[test]
fn tampered_rows_and_wrong_keys_are_refused_without_plaintext() {
    let home = TestHome::initialized();
    set(
        &home,
        "one",
        "bearer",
        json!({"token": "tamper-one-secret"}),
    );
    set(
        &home,
        "two",
        "bearer",
        json!({"token": "tamper-two-secret"}),
    );
    set(
        &home,
        "three",
        "bearer",
        json!({"token": "tamper-three-secret"}),
    );
    home.cmd().args(["creds", "check"]).assert().success();
    let conn = db(&home);

    // A flipped ciphertext byte.
    let mut ct: Vec<u8> = conn
        .query_row(
            "SELECT ciphertext FROM credentials WHERE name = 'one'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    ct[3] ^= 0x01;
    conn.execute(
        "UPDATE credentials SET ciphertext = ?1 WHERE name = 'one'",
        [&ct],
    )
    .unwrap();
    // Two rows swapped (same type: only the associated data tells them apart).
    conn.execute_batch(
        "UPDATE credentials SET name = 'tmp' WHERE name = 'two';
         UPDATE credentials SET name = 'two' WHERE name = 'three';
         UPDATE credentials SET name = 'three' WHERE name = 'tmp';",
    )
    .unwrap();
    drop(conn);

    let out = home.cmd().args(["creds", "check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for name in ["one", "two", "three"] {
        assert!(
            text.contains(&format!(
                "FAILED  {name}: credential \"{name}\" cannot be decrypted"
            )),
            "{name}: {text}"
        );
    }
    assert!(
        !text.contains("tamper-"),
        "no plaintext, not even partial: {text}"
    );

    // A workflow using a tampered credential fails with the same clear error.
    let wf = json!({"nodes": [{"id": "s", "type": "transform.set", "data": {"inputs": {
        "values": {"t": "{{ creds.two.token }}"}}}}], "edges": []});
    let path = home.write("tampered.json", &wf);
    let out = home.cmd().arg("run").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("credential \"two\" cannot be decrypted"),
        "{err}"
    );
    assert!(!err.contains("tamper-"), "{err}");

    // A different (valid) key in the key file: refused up front, nothing decrypted.
    let key_file = home.path().join("keys/master.key");
    let other = TestHome::initialized();
    std::fs::copy(other.path().join("keys/master.key"), &key_file).unwrap();
    home.cmd()
        .args(["creds", "list"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("different master key"));
    // A wrong key in FUSE_MASTER_KEY for a home whose key is kept there.
    let env_home = TestHome::new();
    let key = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="; // base64 of 32 bytes
    env_home
        .cmd()
        .env("FUSE_MASTER_KEY", key)
        .args(["init", "--yes"])
        .assert()
        .success();
    env_home
        .cmd()
        .env("FUSE_MASTER_KEY", key)
        .args(["creds", "set", "e", "--type", "bearer", "--stdin"])
        .write_stdin(r#"{"token": "env-key-secret"}"#)
        .assert()
        .success();
    env_home
        .cmd()
        .env(
            "FUSE_MASTER_KEY",
            "WllYV1ZVVFNSUVBPTk1MS0pJSEdGRURDQkE5ODc2NTQ=",
        )
        .args(["creds", "check"])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "FUSE_MASTER_KEY holds a different master key",
        ));
}

#[test]
fn rotate_key_re_encrypts_and_survives_being_killed_midway() {
    let home = TestHome::initialized();
    let key_file = home.path().join("keys/master.key");
    // Enough rows that a rotation takes a while, so kills land at different stages.
    let conn_fill = |home: &TestHome, n: usize| {
        for i in 0..n {
            set(
                home,
                &format!("c{i}"),
                "bearer",
                json!({"token": format!("rotate-secret-{i}")}),
            );
        }
    };
    conn_fill(&home, 40);
    let before = std::fs::read(&key_file).unwrap();
    home.cmd()
        .args(["creds", "rotate-key"])
        .assert()
        .success()
        .stdout(predicates::str::contains("re-encrypted 40 credential(s)"));
    assert_ne!(
        std::fs::read(&key_file).unwrap(),
        before,
        "the key file holds the new key"
    );
    home.cmd().args(["creds", "check"]).assert().success();

    // Kill -9 at different moments; each time every credential must still open
    // (with the old key or the new one) and a later rotation must work.
    let bin = assert_cmd::cargo::cargo_bin("fuse");
    let mut changed = 0;
    for delay_ms in [0u64, 2, 5, 10, 20, 40, 80] {
        let key_before = std::fs::read(&key_file).unwrap();
        let mut child = std::process::Command::new(&bin)
            .env("FUSE_HOME", home.path())
            .args(["creds", "rotate-key"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let out = home
            .cmd()
            .args(["creds", "check", "--json"])
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(
            report["failed"],
            0,
            "after a kill at {delay_ms} ms: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(report["credentials"].as_array().map(Vec::len), Some(40));
        assert!(!home.path().join("keys/master.key.next").exists());
        if std::fs::read(&key_file).unwrap() != key_before {
            changed += 1;
        }
    }
    eprintln!("{changed} of 7 killed rotations had committed");
    home.cmd().args(["creds", "rotate-key"]).assert().success();
    home.cmd().args(["creds", "check"]).assert().success();
    assert!(files_containing(home.path(), b"rotate-secret-1").is_empty());
}
