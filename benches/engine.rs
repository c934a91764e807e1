//! Engine benchmark (a plain binary, not criterion: it prints the figures the
//! issue asks for). Run with `cargo bench --bench engine`.
//!
//! - a 10,000-node linear chain of transform.set, without and with history;
//! - a 10,000-way fan-out into one flow.merge, without and with history;
//! - `fuse run` of a one-node workflow as a whole process (cold start).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use fuse::config::HistoryConfig;
use fuse::engine::{Fanout, NullObserver, Observer, Status};
use fuse::nodes::Registry;
use fuse::store::{Recorder, Store};
use fuse::{Engine, RunRequest};
use serde_json::{Value, json};

const NODES: usize = 10_000;
const REPEAT: usize = 5;

fn chain() -> Value {
    let nodes: Vec<Value> = (0..NODES)
        .map(|i| json!({"id": format!("n{i}"), "type": "transform.set", "data": {"inputs": {"values": {"i": i}}}}))
        .collect();
    let edges: Vec<Value> = (1..NODES)
        .map(|i| json!({"source": format!("n{}", i - 1), "target": format!("n{i}")}))
        .collect();
    json!({"name": "chain", "settings": {"keep_runs": 0}, "nodes": nodes, "edges": edges})
}

fn fan_out() -> Value {
    let mut nodes = vec![json!({"id": "root", "type": "trigger.manual"})];
    let mut edges = Vec::new();
    for i in 0..NODES {
        nodes.push(json!({"id": format!("b{i}"), "type": "transform.set", "data": {"inputs": {"values": {"i": i}}}}));
        edges.push(json!({"source": "root", "target": format!("b{i}")}));
        edges.push(json!({"source": format!("b{i}"), "target": "merge"}));
    }
    nodes.push(json!({"id": "merge", "type": "flow.merge"}));
    json!({"name": "fan-out", "settings": {"max_parallel": 64, "keep_runs": 0}, "nodes": nodes, "edges": edges})
}

/// Best of REPEAT runs, in µs per node (planning excluded, recording included).
fn measure(name: &str, wf: &Value, history: bool, rt: &tokio::runtime::Runtime) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let recorder = history.then(|| {
        let store = Store::open(&dir.path().join("fuse.db")).expect("store");
        Arc::new(
            Recorder::start(
                store,
                dir.path().join("blobs"),
                HistoryConfig::default(),
                fuse::store::recorder::Mode::Daemon,
            )
            .expect("recorder"),
        )
    });
    let observer: Arc<dyn Observer> = match &recorder {
        Some(r) => Arc::new(Fanout(vec![r.clone() as Arc<dyn Observer>])),
        None => Arc::new(NullObserver),
    };
    let engine = Engine::new(Registry::builtin(), observer, 16);
    let text = wf.to_string();
    let plan_started = Instant::now();
    let plan = Arc::new(engine.load_str(&text, None).expect("valid workflow"));
    let plan_time = plan_started.elapsed();
    let nodes = plan.nodes.len();
    let mut best = Duration::MAX;
    for _ in 0..REPEAT {
        let started = Instant::now();
        let record = rt.block_on(engine.run(plan.clone(), RunRequest::new(json!({}), "bench")));
        if let Some(r) = &recorder {
            r.flush();
        }
        let took = started.elapsed();
        assert_eq!(record.status, Status::Succeeded, "{:?}", record.error);
        best = best.min(took);
    }
    let per_node = best.as_secs_f64() * 1e6 / nodes as f64;
    println!(
        "{name:<28} history={:<5} {nodes:>6} nodes  run {:>8.1} ms  {per_node:>6.2} µs/node  (parse+validate {:.1} ms)",
        history,
        best.as_secs_f64() * 1e3,
        plan_time.as_secs_f64() * 1e3
    );
    per_node
}

fn cold_start() -> Option<f64> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_fuse"));
    let dir = tempfile::tempdir().ok()?;
    let wf = dir.path().join("one.json");
    std::fs::write(&wf, r#"{"nodes": [{"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}]}"#).ok()?;
    let run = || {
        std::process::Command::new(bin)
            .env("FUSE_HOME", dir.path().join("no-home"))
            .args(["-q", "run", "--no-history"])
            .arg(&wf)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    run();
    let n = 50;
    let started = Instant::now();
    for _ in 0..n {
        if !run() {
            return None;
        }
    }
    let spawn_started = Instant::now();
    for _ in 0..n {
        std::process::Command::new("true").output().ok()?;
    }
    let bare = spawn_started.elapsed().as_secs_f64() * 1e3 / n as f64;
    let ms = started.elapsed().as_secs_f64() * 1e3 / n as f64;
    println!(
        "{:<28} {ms:>6.2} ms per `fuse run` of a one-node workflow ({bare:.2} ms for a bare `true` spawn)",
        "cold start"
    );
    Some(ms)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "fuse engine benchmark ({} build, best of {REPEAT})",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let chain = chain();
    let fan = fan_out();
    let c0 = measure("10k chain of transform.set", &chain, false, &rt);
    let c1 = measure("10k chain of transform.set", &chain, true, &rt);
    let f0 = measure("10k fan-out + merge", &fan, false, &rt);
    let f1 = measure("10k fan-out + merge", &fan, true, &rt);
    let cold = cold_start();
    println!();
    println!(
        "target ≤ 20 µs/node with history: chain {c1:.2} ({}), fan-out {f1:.2} ({})",
        verdict(c1 <= 20.0),
        verdict(f1 <= 20.0)
    );
    println!(
        "history overhead: chain {:.2}×, fan-out {:.2}×",
        c1 / c0,
        f1 / f0
    );
    if let Some(ms) = cold {
        println!(
            "target cold start ≤ 10 ms: {ms:.2} ms ({})",
            verdict(ms <= 10.0)
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}
