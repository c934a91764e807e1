//! Package runtime benchmark: per-call cost of a `oneshot` sh node, a `oneshot`
//! python node and a `persistent` python worker, next to a bare fork+exec of
//! the same command (spawn, write the request, read the reply, wait).
//! Run with `cargo bench --bench packages`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuse::engine::{NullObserver, Status};
use fuse::{Engine, RunRequest};
use serde_json::json;

const SH: &str = "cat >/dev/null; echo '{\"output\": 1}'";
const PY: &str =
    "import json, sys\nreq = json.load(sys.stdin)\njson.dump({'output': 1}, sys.stdout)\n";
const WORKER: &str = "import json, sys\nfor line in sys.stdin:\n    req = json.loads(line)\n    sys.stdout.write(json.dumps({'id': req['id'], 'output': 1}) + '\\n')\n    sys.stdout.flush()\n";

fn package(root: &Path, name: &str, command: &[&str], mode: &str, file: (&str, &str)) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        json!({"name": name, "kind": "node", "runtime": {"command": command, "mode": mode}})
            .to_string(),
    )
    .unwrap();
    std::fs::write(dir.join(file.0), file.1).unwrap();
}

/// Bare fork+exec: the same program, the same request, sequentially.
fn bare(dir: &Path, argv: &[&str], calls: usize) -> Duration {
    let request =
        json!({"params": {}, "input": null, "context": {}, "credentials": {}}).to_string();
    let started = Instant::now();
    for _ in 0..calls {
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.as_bytes())
            .unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child.wait().unwrap();
        assert!(out.contains("output"));
    }
    started.elapsed()
}

fn through_fuse(
    engine: &Engine,
    rt: &tokio::runtime::Runtime,
    node: &str,
    calls: usize,
    concurrency: usize,
) -> Duration {
    let wf = json!({"nodes": [{"id": "n", "type": node, "foreach": format!("{{{{ range({calls}) | list }}}}"),
        "concurrency": concurrency}], "edges": []});
    let plan = Arc::new(engine.load_str(wf.to_string(), None).unwrap());
    let started = Instant::now();
    let record = rt.block_on(engine.run(plan, RunRequest::new(json!({}), "bench")));
    assert_eq!(record.status, Status::Succeeded, "{:?}", record.error);
    started.elapsed()
}

fn main() {
    let calls: usize = std::env::var("FUSE_BENCH_CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000);
    let py_calls = (calls / 10).max(10);
    let tmp = tempfile::tempdir().unwrap();
    let nodes = tmp.path().join("node_packages");
    package(
        &nodes,
        "sh-node",
        &["sh", "main.sh"],
        "oneshot",
        ("main.sh", SH),
    );
    package(
        &nodes,
        "py-node",
        &["python3", "main.py"],
        "oneshot",
        ("main.py", PY),
    );
    package(
        &nodes,
        "py-worker",
        &["python3", "-u", "worker.py"],
        "persistent",
        ("worker.py", WORKER),
    );
    let (registry, catalog) = fuse::packages::registry_with_packages(
        &Default::default(),
        &nodes,
        &tmp.path().join("plugins"),
    );
    assert!(catalog.problems.is_empty(), "{:?}", catalog.problems);
    let engine = Engine::new(registry, Arc::new(NullObserver), 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Warm up (page cache, the worker process).
    bare(&nodes.join("sh-node"), &["sh", "main.sh"], 20);
    through_fuse(&engine, &rt, "sh-node", 20, 1);
    through_fuse(&engine, &rt, "py-worker", 20, 1);

    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "fuse package benchmark ({} build), sequential calls unless noted",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let best = |f: &dyn Fn() -> Duration| (0..3).map(|_| f()).min().unwrap();
    let sh_bare = best(&|| bare(&nodes.join("sh-node"), &["sh", "main.sh"], calls));
    let sh_fuse = best(&|| through_fuse(&engine, &rt, "sh-node", calls, 1));
    println!(
        "oneshot sh      {calls:>5} calls: bare fork+exec {:>7.0} µs/call, fuse {:>7.0} µs/call, ratio {:.2}x (target ≤ 1.2x)",
        per(sh_bare, calls),
        per(sh_fuse, calls),
        sh_fuse.as_secs_f64() / sh_bare.as_secs_f64()
    );
    let py_bare = best(&|| bare(&nodes.join("py-node"), &["python3", "main.py"], py_calls));
    let py_fuse = best(&|| through_fuse(&engine, &rt, "py-node", py_calls, 1));
    println!(
        "oneshot python  {py_calls:>5} calls: bare fork+exec {:>7.0} µs/call, fuse {:>7.0} µs/call, ratio {:.2}x (target ≤ 1.2x)",
        per(py_bare, py_calls),
        per(py_fuse, py_calls),
        py_fuse.as_secs_f64() / py_bare.as_secs_f64()
    );
    let w_seq = best(&|| through_fuse(&engine, &rt, "py-worker", calls, 1));
    let w_par = best(&|| through_fuse(&engine, &rt, "py-worker", calls, 32));
    println!(
        "persistent py   {calls:>5} calls: {:>7.1} µs/call one at a time, {:>7.1} µs/call with 32 in flight (target ≤ 50 µs)",
        per(w_seq, calls),
        per(w_par, calls)
    );
}
