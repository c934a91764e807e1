//! AI nodes benchmark (issue 16), a plain binary printing figures and ratios.
//! Run with `cargo bench --bench ai`.
//!
//! - `vector.query` top-10 over 100,000 vectors of 384 dimensions (exact
//!   cosine search): the search alone, and the whole node through the engine
//!   with a warm in-memory index (version check, search, rows of the matches);
//! - `vector.upsert` of 10,000 vectors of 384 dimensions (one node, one run);
//! - `llm.agent` overhead per tool call, the model excluded: a turn asking for
//!   200 tool calls against one asking for 1, from a local model server that
//!   answers at once.
//!
//! Settings: `FUSE_BENCH_VECTORS` (default 100000), `FUSE_BENCH_DIMS` (384),
//! `FUSE_BENCH_REPEAT` (default 5, best of).

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../tests/helper/http.rs"]
mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fuse::engine::NullObserver;
use fuse::nodes::{Registry, Settings};
use fuse::store::Store;
use fuse::store::vectors::VectorItem;
use fuse::{Engine, RunRequest};
use serde_json::{Value, json};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A deterministic pseudo-random unit vector.
fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

fn best<F: FnMut() -> Duration>(repeat: usize, mut f: F) -> Duration {
    (0..repeat).map(|_| f()).min().unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run(engine: &Engine, rt: &tokio::runtime::Runtime, wf: &Value) -> (Duration, Value) {
    let plan = Arc::new(engine.load_str(wf.to_string(), None).expect("valid"));
    let started = Instant::now();
    let record = rt.block_on(engine.run(plan, RunRequest::new(json!({}), "bench")));
    let took = started.elapsed();
    assert_eq!(
        record.status,
        fuse::engine::Status::Succeeded,
        "{:?}",
        record.error
    );
    (took, (*record.output).clone())
}

fn main() {
    let count: usize = env_or("FUSE_BENCH_VECTORS", 100_000);
    let dims: usize = env_or("FUSE_BENCH_DIMS", 384);
    let repeat: usize = env_or("FUSE_BENCH_REPEAT", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("fuse.db");
    drop(Store::open(&db).expect("store"));
    let settings = Settings {
        db_path: Some(db.clone()),
        ..Settings::default()
    };
    let engine = Engine::new(
        Registry::with_settings(&settings),
        Arc::new(NullObserver),
        16,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // Upsert: 10,000 vectors through the node, one run each time (ids repeat,
    // so every round replaces the same rows).
    let docs: Vec<Value> = (0..10_000u64)
        .map(|i| json!({"id": format!("u{i}"), "text": format!("document {i}"), "metadata": {"n": i % 10}, "embedding": vector(i, dims)}))
        .collect();
    let wf = json!({"nodes": [{"id": "up", "type": "vector.upsert", "data": {"inputs": {"collection": "up", "documents": docs}}}]});
    let upsert = best(repeat, || run(&engine, &rt, &wf).0);
    let per_s = 10_000.0 / upsert.as_secs_f64();
    println!(
        "vector.upsert of 10,000 × {dims}: {:.0} ms per run, {per_s:.0} vectors/s (target ≥ 10,000/s: {})",
        ms(upsert),
        if per_s >= 10_000.0 { "met" } else { "NOT met" }
    );

    // Query: fill a collection of `count` straight through the store (fast),
    // then search it.
    let fill = Instant::now();
    let mut store = Store::open(&db).expect("store");
    for start in (0..count as u64).step_by(10_000) {
        let items: Vec<VectorItem> = (start..(start + 10_000).min(count as u64))
            .map(|i| VectorItem {
                id: format!("v{i}"),
                text: format!("text of vector {i}"),
                metadata: json!({"group": i % 4}),
                embedding: vector(i, dims),
            })
            .collect();
        store.vector_upsert("big", &items).expect("upsert");
    }
    println!(
        "filled {count} × {dims} in {:.1} s (store, batches of 10,000)",
        fill.elapsed().as_secs_f64()
    );
    let query = vector(7, dims);
    let wf = json!({"nodes": [{"id": "q", "type": "vector.query", "data": {"inputs": {
        "collection": "big", "embedding": query, "top_k": 10}}}]});
    let (cold, out) = run(&engine, &rt, &wf);
    assert_eq!(
        out["matches"][0]["id"], "v7",
        "the query vector finds itself"
    );
    let warm = best(repeat, || run(&engine, &rt, &wf).0);
    let filtered_wf = json!({"nodes": [{"id": "q", "type": "vector.query", "data": {"inputs": {
        "collection": "big", "embedding": query, "top_k": 10, "filter": {"group": 3}}}}]});
    let filtered = best(repeat, || run(&engine, &rt, &filtered_wf).0);
    println!(
        "vector.query top-10 over {count} × {dims}: {:.1} ms warm (target ≤ 20 ms: {}), {:.1} ms with a metadata filter, first query (loads the index) {:.0} ms",
        ms(warm),
        if ms(warm) <= 20.0 { "met" } else { "NOT met" },
        ms(filtered),
        ms(cold)
    );

    // Agent overhead per tool call: a local model server that answers at once.
    let calls_in = |n: usize| -> Value {
        let calls: Vec<Value> = (0..n)
            .map(|i| json!({"id": format!("c{i}"), "type": "function", "function": {"name": "noop", "arguments": "{}"}}))
            .collect();
        json!({"model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls",
               "message": {"role": "assistant", "content": null, "tool_calls": calls}}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    };
    let done = json!({"model": "m", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "done"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
    let agent_time = |n: usize| -> Duration {
        let (first, last) = (calls_in(n), done.clone());
        let server = server::TestServer::start(move |req, _| {
            // The second turn carries the tool results.
            if req.text().contains("\"role\":\"tool\"") {
                server::Reply::json(200, last.clone())
            } else {
                server::Reply::json(200, first.clone())
            }
        });
        let wf = json!({"nodes": [{"id": "a", "type": "llm.agent", "data": {"inputs": {
            "base_url": server.url("/v1"), "model": "m", "prompt": "go", "parallel_tools": false,
            "tools": [{"node": "transform.set", "name": "noop", "inputs": {"values": {"ok": true}}}]}}}]});
        best(repeat, || {
            let (took, out) = run(&engine, &rt, &wf);
            assert_eq!(out["tool_calls"], n);
            took
        })
    };
    let one = agent_time(1);
    let many = agent_time(201);
    let per_call = (many.saturating_sub(one)).as_secs_f64() * 1000.0 / 200.0;
    println!(
        "llm.agent: 1 tool call {:.2} ms, 201 tool calls {:.2} ms per run → {per_call:.3} ms per tool call, model excluded (target ≤ 1 ms: {})",
        ms(one),
        ms(many),
        if per_call <= 1.0 { "met" } else { "NOT met" }
    );
}
