//! Node and plugin packages through the real binary, with real child processes:
//! the shipped packages, scaffolding, the oneshot and persistent runtimes and
//! their failure modes, manifest problems, clashes and declared credentials.

use serde_json::{Value, json};

use crate::helper::TestHome;
use crate::helper::http::{Reply, TestServer};

pub fn package(home: &TestHome, name: &str, manifest: Value, files: &[(&str, &str)]) {
    let dir = home.path().join("node_packages").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn oneshot(name: &str, script: &str) -> Value {
    json!({"name": name, "kind": "node", "description": "test node",
           "runtime": {"command": ["sh", script], "timeout": "3s"}})
}

/// Runs a workflow through `fuse run --json`; returns (exit code, record, stderr).
fn run(home: &TestHome, wf: &Value) -> (i32, Value, String) {
    let path = home.write(&format!("wf-{}.json", rand_suffix()), wf);
    let out = home
        .cmd()
        .arg("run")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    let record = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        record,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn one(node: Value) -> Value {
    json!({"nodes": [node], "edges": []})
}

fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(marker))
        .count()
}

#[test]
fn shipped_packages_and_plugin_nodes_run_and_pass_doctor() {
    let home = TestHome::initialized();
    let wf = json!({"nodes": [
        {"id": "csv", "type": "csv-parse", "data": {"inputs": {"text": "name,age\nada,36\nalan,41\n"}}},
        {"id": "stats", "type": "text-stats", "data": {"inputs": {"text": "one two\nthree\n"}}},
        {"id": "slug", "type": "text-tools.slugify", "data": {"inputs": {"text": "Hello, World 42!"}}},
        {"id": "loud", "type": "text-tools.shout", "data": {"inputs": {"text": "{{ nodes.slug.output.slug }}"}}}
    ], "edges": [{"source": "slug", "target": "loud"}]});
    let (code, record, stderr) = run(&home, &wf);
    assert_eq!(code, 0, "{stderr}");
    let nodes = &record["nodes"];
    assert_eq!(
        nodes["csv"]["output"]["rows"],
        json!([{"name": "ada", "age": "36"}, {"name": "alan", "age": "41"}])
    );
    assert_eq!(
        nodes["stats"]["output"],
        json!({"lines": 2, "words": 3, "bytes": 14})
    );
    assert_eq!(nodes["loud"]["output"]["text"], "HELLO-WORLD-42");

    let doctor = home
        .cmd()
        .args(["nodes", "doctor", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert!(doctor.status.success(), "{report:#}");
    assert_eq!(report["failed"], 0);
    assert_eq!(report["packages"].as_array().unwrap().len(), 4);
    assert!(report["confinement"].as_str().unwrap().contains("enforced"));

    let plugins: Value = serde_json::from_slice(
        &home
            .cmd()
            .args(["plugins", "list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(plugins[0]["name"], "text-tools");
    assert_eq!(plugins[0]["state"], "loaded");
    assert_eq!(
        plugins[0]["nodes"],
        json!(["text-tools.slugify", "text-tools.shout"])
    );
    assert_eq!(plugins[0]["credential_types"][0]["name"], "text-tools-api");

    let show = home
        .cmd()
        .args(["nodes", "show", "csv-parse"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("oneshot `python3 main.py`") && text.contains("delimiter"),
        "{text}"
    );
    home.cmd()
        .args(["schema", "manifest"])
        .assert()
        .success()
        .stdout(predicates::str::contains("\"runtime\""));
}

#[test]
fn scaffolded_packages_work_without_edits() {
    let home = TestHome::initialized();
    for lang in ["python", "sh"] {
        let name = format!("my-{lang}-node");
        home.cmd()
            .args(["nodes", "new", &name, "--lang", lang])
            .assert()
            .success();
        let (code, record, stderr) = run(
            &home,
            &one(json!({"id": "n", "type": name, "data": {"inputs": {"text": "hi there"}}})),
        );
        assert_eq!(code, 0, "{lang}: {stderr}");
        assert_eq!(record["output"]["text"], "hi there", "{lang}: {record:#}");
    }
    // The Rust scaffold builds itself with cargo on first use (std only, offline).
    home.cmd()
        .args(["nodes", "new", "my-rust-node", "--lang", "rust"])
        .assert()
        .success();
    let (code, record, stderr) = run(
        &home,
        &one(json!({"id": "n", "type": "my-rust-node", "data": {"inputs": {"text": "hi there"}}})),
    );
    assert_eq!(code, 0, "rust: {stderr}");
    assert_eq!(record["output"]["chars"], 8, "{record:#}");
    home.cmd()
        .args(["nodes", "new", "my-sh-node", "--lang", "sh"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("already exists"));
    home.cmd()
        .args(["nodes", "new", "../escape", "--lang", "sh"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("not a valid package name"));
    home.cmd()
        .args(["nodes", "new", "x", "--lang", "cobol"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("python, sh or rust"));
    home.cmd().args(["nodes", "doctor"]).assert().success();
}

#[test]
fn oneshot_requests_carry_params_input_and_context_in_a_clean_environment() {
    let home = TestHome::initialized();
    package(
        &home,
        "echo",
        json!({"name": "echo", "kind": "node",
               "inputs": [{"name": "greeting", "type": "string", "default": "hi"}],
               "permissions": {"env": ["DECLARED_VAR"]},
               "runtime": {"command": ["python3", "main.py"]}}),
        &[(
            "main.py",
            "import json, os, sys\nreq = json.load(sys.stdin)\nprint('working', file=sys.stderr)\n\
             json.dump({'output': {'req': req, 'cwd': os.getcwd(), 'env': sorted(os.environ)}}, sys.stdout)\n",
        )],
    );
    let wf = json!({"nodes": [
        {"id": "src", "type": "transform.set", "data": {"inputs": {"values": {"n": 7}}}},
        {"id": "e", "type": "echo"}
    ], "edges": [{"source": "src", "target": "e"}]});
    let path = home.write("echo.json", &wf);
    let out = home
        .cmd()
        .env("SECRET_OF_FUSE", "x")
        .env("DECLARED_VAR", "y")
        .arg("run")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = &record["output"];
    assert_eq!(got["req"]["params"], json!({"greeting": "hi"}));
    assert_eq!(got["req"]["input"], json!({"n": 7}));
    assert_eq!(got["req"]["context"]["node_id"], "e");
    assert_eq!(got["req"]["context"]["run_id"], record["run_id"]);
    assert!(got["cwd"].as_str().unwrap().ends_with("node_packages/echo"));
    let env: Vec<&str> = got["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"DECLARED_VAR") && env.contains(&"PATH"),
        "{env:?}"
    );
    assert!(
        !env.contains(&"SECRET_OF_FUSE") && !env.contains(&"FUSE_HOME"),
        "{env:?}"
    );
    let id = record["run_id"].as_str().unwrap();
    home.cmd()
        .args(["runs", "logs", id])
        .assert()
        .stdout(predicates::str::contains("[e] working"));
}

#[test]
fn oneshot_failures_are_clear_node_errors_and_leave_no_process() {
    let home = TestHome::initialized();
    let scripts: &[(&str, &str)] = &[
        ("crash", "echo 'about to fail: disk on fire' >&2; exit 3"),
        ("notjson", "cat >/dev/null; echo 'hello, not json'"),
        (
            "huge",
            "cat >/dev/null; head -c 3000000 /dev/zero | tr '\\0' 'a'",
        ),
        (
            "hang",
            "cat >/dev/null; sleep 1000 fuse-hang-marker-&; sleep 1000",
        ),
        ("noreply", "cat >/dev/null; exit 0"),
        (
            "err",
            "cat >/dev/null; echo '{\"error\": {\"message\": \"quota exceeded\", \"retryable\": true}}'",
        ),
    ];
    for (name, body) in scripts {
        let mut manifest = oneshot(name, "main.sh");
        if *name == "huge" {
            manifest["runtime"]["max_reply_bytes"] = json!(1_000_000);
        }
        package(&home, name, manifest, &[("main.sh", body)]);
    }
    // The hang marker: a grandchild whose command line we can find.
    std::fs::write(
        home.path().join("node_packages/hang/main.sh"),
        "cat >/dev/null; sleep 987654 & echo $! > grandchild.pid; sleep 1000",
    )
    .unwrap();
    let expect = [
        (
            "crash",
            "exited with code 3 without a reply (last stderr line: about to fail: disk on fire)",
        ),
        ("notjson", "replied with something that is not JSON"),
        ("huge", "replied with more than 1000000 bytes"),
        ("hang", "gave no reply within 3"),
        ("noreply", "exited with code 0 without a reply"),
        ("err", "package err: quota exceeded"),
    ];
    for (name, message) in expect {
        let mut node = json!({"id": "n", "type": name});
        if name == "err" {
            node["retry"] = json!({"attempts": 2, "initial": "10ms"});
        }
        let (code, record, stderr) = run(&home, &one(node));
        assert_eq!(code, 1, "{name}: {stderr}");
        let error = record["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{name}: {error}");
        if name == "err" {
            assert_eq!(
                record["nodes"]["n"]["attempts"], 2,
                "retryable errors are retried"
            );
        }
    }
    // The package's background child (its grandchild) went with the group.
    let pid =
        std::fs::read_to_string(home.path().join("node_packages/hang/grandchild.pid")).unwrap();
    let alive = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    for _ in 0..50 {
        if !alive(&pid) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !alive(&pid),
        "the hung package's grandchild {pid} is still running"
    );
    assert_eq!(processes_with("987654"), 0);
}

/// A package process dies with the fuse process that started it, even one
/// killed with -9 (which cannot clean up): one-shot and persistent alike, so
/// a killed worker leaves nothing behind to repeat a side effect.
#[test]
fn package_processes_die_with_a_fuse_killed_with_sigkill() {
    use crate::wait::wait_for_within;
    use std::time::Duration;
    let home = TestHome::initialized();
    for (name, mode) in [("lone", "oneshot"), ("kept", "persistent")] {
        let mut manifest = oneshot(name, "main.sh");
        manifest["runtime"]["timeout"] = json!("60s");
        manifest["runtime"]["mode"] = json!(mode);
        package(
            &home,
            name,
            manifest,
            &[(
                "main.sh",
                "echo $$ > pid.tmp; mv pid.tmp pid; exec sleep 600",
            )],
        );
    }
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    for name in ["lone", "kept"] {
        let path = home.write(
            &format!("wf-{name}.json"),
            &one(json!({"id": "n", "type": name})),
        );
        let mut fuse = std::process::Command::new(assert_cmd::cargo::cargo_bin("fuse"))
            .env("FUSE_HOME", home.path())
            .arg("run")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pidfile = home.path().join(format!("node_packages/{name}/pid"));
        let pid: u32 = wait_for_within(
            "the package process to start",
            Duration::from_secs(30),
            || std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok(),
        );
        assert!(alive(pid), "{name}: {pid} is not running");
        fuse.kill().unwrap();
        fuse.wait().unwrap();
        wait_for_within(
            &format!("{name}'s process {pid} to die with fuse"),
            Duration::from_secs(10),
            || (!alive(pid)).then_some(()),
        );
    }
}

#[test]
fn a_persistent_worker_serves_concurrent_calls_and_recovers_from_being_killed() {
    let home = TestHome::initialized();
    let worker = r#"
import json, os, sys
with open(os.environ["FUSE_PACKAGE_DIR"] + "/starts", "a") as f:
    f.write(str(os.getpid()) + "\n")
for line in sys.stdin:
    req = json.loads(line)
    p = req["params"]
    if p.get("die"):
        os._exit(1)
    if p.get("log"):
        print(json.dumps({"id": req["id"], "log": "note " + str(p["n"])}), flush=True)
    print(json.dumps({"id": req["id"], "output": {"double": p["n"] * 2, "pid": os.getpid()}}), flush=True)
"#;
    package(
        &home,
        "doubler",
        json!({"name": "doubler", "kind": "node",
               "inputs": [{"name": "n", "type": "integer", "required": true}, {"name": "die"}, {"name": "log"}],
               "runtime": {"command": ["python3", "-u", "worker.py"], "mode": "persistent", "timeout": "10s"}}),
        &[("worker.py", worker)],
    );
    let wf = json!({"nodes": [{"id": "d", "type": "doubler", "foreach": "{{ range(1000) | list }}",
        "concurrency": 64, "data": {"inputs": {"n": "{{ item }}", "log": "{{ item == 5 }}"}}}], "edges": []});
    let (code, record, stderr) = run(&home, &wf);
    assert_eq!(code, 0, "{stderr}");
    let out = record["output"].as_array().unwrap();
    assert_eq!(out.len(), 1000);
    for (i, o) in out.iter().enumerate() {
        assert_eq!(o["double"], json!(i * 2), "item {i}");
    }
    let pids: std::collections::HashSet<&Value> = out.iter().map(|o| &o["pid"]).collect();
    assert_eq!(pids.len(), 1, "one worker process served every call");
    let id = record["run_id"].as_str().unwrap();
    home.cmd()
        .args(["runs", "logs", id])
        .assert()
        .stdout(predicates::str::contains("note 5"));

    // The worker dies mid-run: the call in flight fails (retryable), the retry
    // starts a new worker, and the run succeeds.
    let wf = json!({"nodes": [
        {"id": "ok1", "type": "doubler", "data": {"inputs": {"n": 1}}},
        {"id": "boom", "type": "doubler", "on_error": "continue", "data": {"inputs": {"n": 2, "die": true}}},
        {"id": "ok2", "type": "doubler", "retry": {"attempts": 3, "initial": "50ms"}, "data": {"inputs": {"n": 3}}}
    ], "edges": [{"source": "ok1", "target": "boom"}, {"source": "boom", "target": "ok2"}]});
    let (code, record, stderr) = run(&home, &wf);
    assert_eq!(code, 0, "{stderr}\n{record:#}");
    let boom = &record["nodes"]["boom"];
    assert!(
        boom["error"].to_string().contains("worker process exited"),
        "{boom:#}"
    );
    assert_eq!(record["nodes"]["ok2"]["output"]["double"], 6);
    assert_ne!(
        record["nodes"]["ok1"]["output"]["pid"], record["nodes"]["ok2"]["output"]["pid"],
        "a new worker after the crash"
    );
    let starts = std::fs::read_to_string(home.path().join("node_packages/doubler/starts")).unwrap();
    assert_eq!(
        starts.lines().count(),
        3,
        "one start per run, plus one restart: {starts}"
    );
}

#[test]
fn a_malformed_manifest_is_reported_and_the_others_keep_working() {
    let home = TestHome::initialized();
    package(
        &home,
        "good",
        oneshot("good", "main.sh"),
        &[("main.sh", "cat >/dev/null; echo '{\"output\": 1}'")],
    );
    let bad = home.path().join("node_packages/broken");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("manifest.json"),
        r#"{"name": "broken", "kind": "node", "runtime": {"comand": ["x"]}}"#,
    )
    .unwrap();
    let bad2 = home.path().join("node_packages/notjson");
    std::fs::create_dir_all(&bad2).unwrap();
    std::fs::write(bad2.join("manifest.json"), "{ nope").unwrap();
    package(
        &home,
        "clash",
        json!({"name": "clash", "type": "http.request", "kind": "node",
        "runtime": {"command": ["true"]}}),
        &[],
    );
    package(
        &home,
        "evil",
        json!({"name": "other-name", "kind": "node", "runtime": {"command": ["true"]}}),
        &[],
    );

    let (code, record, stderr) = run(&home, &one(json!({"id": "g", "type": "good"})));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(record["output"], 1);
    for says in [
        "package broken: `runtime.comand`",
        "package notjson:",
        "package clash: `type`: \"http.request\" is a built-in node type",
        "package evil: `name`: \"other-name\" must match the folder name",
    ] {
        assert!(stderr.contains(says), "missing {says:?} in:\n{stderr}");
    }
    // With "overrides" a package may replace a built-in on purpose.
    package(
        &home,
        "my-log",
        json!({"name": "my-log", "type": "log", "overrides": true, "kind": "node",
        "inputs": [{"name": "message", "type": "string"}],
        "runtime": {"command": ["sh", "main.sh"]}}),
        &[("main.sh", "cat >/dev/null; echo '{\"output\": \"mine\"}'")],
    );
    let (code, record, _) = run(
        &home,
        &one(json!({"id": "l", "type": "log", "data": {"inputs": {"message": "x"}}})),
    );
    assert_eq!((code, &record["output"]), (0, &json!("mine")));
    // http.request is still the built-in.
    let out = home
        .cmd()
        .args(["nodes", "show", "http.request", "--json"])
        .output()
        .unwrap();
    let spec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spec["source"], "built-in");
    let doctor = home.cmd().args(["nodes", "doctor"]).output().unwrap();
    assert_eq!(doctor.status.code(), Some(1));
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains("FAILED package broken") && text.contains("ok     good"),
        "{text}"
    );
}

#[test]
fn packages_receive_only_declared_credentials() {
    let home = TestHome::initialized();
    for (name, kind, fields) in [
        ("tok", "bearer", json!({"token": "pkg-secret-token-1"})),
        (
            "pw",
            "basic",
            json!({"username": "u", "password": "pkg-secret-pass-2"}),
        ),
    ] {
        home.cmd()
            .args(["creds", "set", name, "--type", kind, "--stdin"])
            .write_stdin(fields.to_string())
            .assert()
            .success();
    }
    let script = "import json, sys\nreq = json.load(sys.stdin)\nc = req['credentials']\n\
                  json.dump({'output': {'names': sorted(c), 'len': len(c['tok']['token']) if 'tok' in c else 0}}, sys.stdout)\n";
    package(
        &home,
        "wants-bearer",
        json!({"name": "wants-bearer", "kind": "node", "credentials": ["bearer"],
               "runtime": {"command": ["python3", "main.py"]}}),
        &[("main.py", script)],
    );
    package(
        &home,
        "wants-none",
        json!({"name": "wants-none", "kind": "node", "runtime": {"command": ["python3", "main.py"]}}),
        &[("main.py", script)],
    );
    let (code, record, stderr) = run(
        &home,
        &one(json!({"id": "n", "type": "wants-bearer", "data": {"inputs": {"credential": "tok"}}})),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(record["output"], json!({"names": ["tok"], "len": 18}));
    let (code, record, _) = run(
        &home,
        &one(json!({"id": "n", "type": "wants-bearer", "data": {"inputs": {"credential": "pw"}}})),
    );
    assert_eq!(code, 1);
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("is of type basic; package wants-bearer accepts bearer")
    );
    // A package that declares no credentials takes no `credential` input:
    // refused before anything runs.
    let (code, _, stderr) = run(
        &home,
        &one(json!({"id": "n", "type": "wants-none", "data": {"inputs": {"credential": "tok"}}})),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown input `credential`"), "{stderr}");
}

#[test]
fn composite_and_declarative_http_packages() {
    let home = TestHome::initialized();
    package(
        &home,
        "greet",
        json!({"name": "greet", "kind": "node", "workflow": "body.json",
               "inputs": [{"name": "who", "type": "string", "required": true}]}),
        &[(
            "body.json",
            &json!({"nodes": [{"id": "g", "type": "transform.set",
                "data": {"inputs": {"values": {"greeting": "hello {{ trigger.who }}"}}}}], "edges": []})
            .to_string(),
        )],
    );
    let server =
        TestServer::start(|r, _| Reply::json(200, json!({"path": r.path, "query": r.query})));
    package(
        &home,
        "lookup",
        json!({"name": "lookup", "kind": "node",
               "inputs": [{"name": "id", "type": "string", "required": true}],
               "http": {"url": server.url("/items/{{ params.id }}"), "query": {"full": "1"}}}),
        &[],
    );
    let wf = json!({"nodes": [
        {"id": "c", "type": "greet", "data": {"inputs": {"who": "ada"}}},
        {"id": "h", "type": "lookup", "data": {"inputs": {"id": "42"}}}
    ], "edges": []});
    let (code, record, stderr) = run(&home, &wf);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(record["nodes"]["c"]["output"]["greeting"], "hello ada");
    assert_eq!(
        record["nodes"]["h"]["output"]["body"],
        json!({"path": "/items/42", "query": "full=1"})
    );
    // `fuse validate` knows package types, and their declared inputs.
    let path = home.write("pk.json", &one(json!({"id": "g", "type": "greet"})));
    home.cmd()
        .arg("validate")
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("missing required input `who`"));
}

#[test]
fn hot_reload_picks_up_changes_and_started_plans_keep_their_version() {
    use fuse::engine::{NullObserver, Status};
    use fuse::{Engine, RunRequest};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    let tmp = tempfile::tempdir().unwrap();
    let nodes = tmp.path().join("node_packages");
    let plugins = tmp.path().join("plugin_packages");
    let write = |name: &str, answer: u32| {
        let dir = nodes.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("main.sh"),
            format!("cat >/dev/null; echo '{{\"output\": {answer}}}'"),
        )
        .unwrap();
        std::fs::write(
            dir.join("manifest.json"),
            oneshot(name, "main.sh").to_string(),
        )
        .unwrap();
    };
    write("hr", 1);
    let (registry, _) =
        fuse::packages::registry_with_packages(&Default::default(), &nodes, &plugins);
    let engine = Engine::new(registry, Arc::new(NullObserver), 4);
    let reloads = Arc::new(AtomicUsize::new(0));
    let counter = reloads.clone();
    let _watcher = fuse::packages::watch::PackageWatcher::start(
        engine.clone(),
        Default::default(),
        nodes.clone(),
        plugins.clone(),
        move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        },
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wf = |t: &str| json!({"nodes": [{"id": "n", "type": t}], "edges": []}).to_string();
    let old_plan = Arc::new(engine.load_str(wf("hr"), None).unwrap());
    let run = |plan: Arc<fuse::Plan>| {
        let r = rt.block_on(engine.run(plan, RunRequest::new(json!({}), "test")));
        assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
        (*r.output).clone()
    };
    assert_eq!(run(old_plan.clone()), json!(1));

    // Edit the package's command (a new version) and add another package.
    let old_manifest = std::fs::read_to_string(nodes.join("hr/manifest.json")).unwrap();
    std::fs::write(
        nodes.join("hr/v2.sh"),
        "cat >/dev/null; echo '{\"output\": 2}'",
    )
    .unwrap();
    std::fs::write(
        nodes.join("hr/manifest.json"),
        old_manifest.replace("main.sh", "v2.sh"),
    )
    .unwrap();
    write("hr-new", 3);
    let deadline = Instant::now() + Duration::from_secs(15);
    // The registry is swapped first, then the callback is told: wait for both.
    while engine.registry().get("hr-new").is_none() || reloads.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the new package was not picked up (reloads seen: {})",
            reloads.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let new_plan = Arc::new(engine.load_str(wf("hr"), None).unwrap());
    assert_eq!(run(new_plan), json!(2), "new plans get the edited manifest");
    assert_eq!(
        run(old_plan.clone()),
        json!(1),
        "a plan loaded before keeps its version"
    );
    assert_eq!(
        run(Arc::new(engine.load_str(wf("hr-new"), None).unwrap())),
        json!(3)
    );

    // A removed package disappears; a broken edit leaves the others working.
    std::fs::remove_dir_all(nodes.join("hr-new")).unwrap();
    std::fs::write(nodes.join("hr/manifest.json"), "{ broken").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while engine.registry().get("hr-new").is_some() || engine.registry().get("hr").is_some() {
        assert!(Instant::now() < deadline, "the removal was not picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(engine.registry().get("transform.set").is_some());
}

#[test]
fn package_processes_cannot_touch_the_home_where_landlock_works() {
    let home = TestHome::initialized();
    let script = r#"cat >/dev/null
probe() { if sh -c "$1" >/dev/null 2>&1; then echo yes; else echo no; fi; }
printf '{"output": {"read_home": "%s", "read_key": "%s", "write_home": "%s", "own": "%s", "tmp": "%s", "system": "%s"}}\n' \
  "$(probe 'cat ../../fuse.db')" "$(probe 'cat ../../keys/master.key')" "$(probe 'echo x > ../../pwned')" \
  "$(probe 'echo x > own.txt')" "$(probe 'echo x > "$TMPDIR/t"')" "$(probe 'cat /etc/passwd')"
"#;
    package(
        &home,
        "probe",
        oneshot("probe", "main.sh"),
        &[("main.sh", script)],
    );
    let (code, record, stderr) = run(&home, &one(json!({"id": "p", "type": "probe"})));
    assert_eq!(code, 0, "{stderr}");
    let got = &record["output"];
    let doctor: Value = serde_json::from_slice(
        &home
            .cmd()
            .args(["nodes", "doctor", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let status = doctor["confinement"].as_str().unwrap();
    // What works either way.
    assert_eq!(got["own"], "yes", "{got}");
    assert_eq!(got["tmp"], "yes", "{got}");
    assert_eq!(got["system"], "yes", "{got}");
    if status.starts_with("enforced") {
        assert_eq!(got["read_home"], "no", "{got}");
        assert_eq!(got["read_key"], "no", "{got}");
        assert_eq!(got["write_home"], "no", "{got}");
        assert!(!home.path().join("pwned").exists());
    } else {
        // Without Landlock the doctor must say so (and the probe can reach the home).
        assert!(status.starts_with("not enforced"), "{status}");
        assert_eq!(got["read_home"], "yes", "{got}");
    }
}

#[test]
fn plugin_credential_types_can_be_stored_and_used() {
    let home = TestHome::initialized();
    home.cmd()
        .args(["creds", "types"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "text-tools-api: token of a (hypothetical) text API (plugin text-tools)",
        ));
    home.cmd()
        .args(["creds", "set", "tt", "--type", "text-tools-api", "--stdin"])
        .write_stdin(r#"{"token": "plugin-typed-secret-99", "region": "eu"}"#)
        .assert()
        .success();
    home.cmd()
        .args(["creds", "set", "bad", "--type", "text-tools-api", "--stdin"])
        .write_stdin(r#"{"region": "eu"}"#)
        .assert()
        .failure()
        .stderr(predicates::str::contains("needs `token`"));
    let wf = one(
        json!({"id": "s", "type": "transform.set", "data": {"inputs": {"values": {
        "t": "{{ creds.tt.token }}", "len": "{{ creds.tt.token | length }}"}}}}),
    );
    let (code, record, stderr) = run(&home, &wf);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(record["output"], json!({"t": "***", "len": 22}));
}
