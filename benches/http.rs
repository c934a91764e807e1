//! HTTP benchmark: 1,000 `http.request` calls through a `foreach` with
//! concurrency 32, next to a bare reqwest loop with the same concurrency, both
//! against the same local server. Run with `cargo bench --bench http`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "../tests/helper/http.rs"]
mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fuse::engine::{NullObserver, Status};
use fuse::nodes::Registry;
use fuse::{Engine, RunRequest};
use futures_util::StreamExt;
use serde_json::json;

const DEFAULT_CALLS: usize = 1000;
const CONCURRENCY: usize = 32;
const REPEAT: usize = 31;

fn main() {
    let calls: usize = std::env::var("FUSE_BENCH_CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(DEFAULT_CALLS);
    let server = server::TestServer::start(|_, _| {
        server::Reply::json(200, json!({"ok": true, "items": [1, 2, 3]}))
    });
    let url = server.url("/item");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let engine = Engine::new(Registry::builtin(), Arc::new(NullObserver), CONCURRENCY);
    let wf = json!({"nodes": [{"id": "get", "type": "http.request", "foreach": format!("{{{{ range({calls}) | list }}}}"),
        "concurrency": CONCURRENCY, "data": {"inputs": {"url": url, "query": {"i": "{{ item }}"}}}}]});
    let plan = Arc::new(engine.load_str(wf.to_string(), None).expect("valid"));

    let client = reqwest::Client::new();
    // The hand-written equivalent of the workflow: the same GETs with the same
    // concurrency, keeping every parsed body in item order (the node's output is
    // that list too). It is the fastest such loop we know: one task polls the
    // requests (`buffered`), like fuse's foreach; a task per request
    // (`JoinSet`) is slower. What fuse adds on top (status, headers and URL per
    // item, rendering the inputs, breaker, events, the run record) counts as
    // engine overhead.
    let bare = |client: reqwest::Client, url: String| async move {
        futures_util::stream::iter(0..calls)
            .map(|i| {
                let (client, url) = (&client, &url);
                async move {
                    let r = client
                        .get(url)
                        .query(&[("i", i)])
                        .send()
                        .await
                        .expect("send");
                    r.json::<serde_json::Value>().await.expect("json")
                }
            })
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
    };

    // FUSE_BENCH_ONLY=bare|fuse runs one side once (for instruction counts under
    // `valgrind --tool=callgrind`, which are repeatable where wall time is not).
    if let Ok(only) = std::env::var("FUSE_BENCH_ONLY") {
        if only == "bare" {
            rt.block_on(bare(client.clone(), url.clone()));
        } else {
            let record = rt.block_on(engine.run(plan.clone(), RunRequest::new(json!({}), "bench")));
            assert_eq!(record.status, Status::Succeeded, "{:?}", record.error);
        }
        return;
    }

    // Warm both up (connections, allocator).
    rt.block_on(bare(client.clone(), url.clone()));
    rt.block_on(engine.run(plan.clone(), RunRequest::new(json!({}), "bench")));

    // Pairs run back to back; the median of the per-pair overheads is robust to
    // the machine speeding up or slowing down between pairs.
    let mut best_bare = Duration::MAX;
    let mut best_fuse = Duration::MAX;
    let mut overheads = Vec::with_capacity(REPEAT);
    for _ in 0..REPEAT {
        let t = Instant::now();
        rt.block_on(bare(client.clone(), url.clone()));
        let b = t.elapsed();
        let t = Instant::now();
        let record = rt.block_on(engine.run(plan.clone(), RunRequest::new(json!({}), "bench")));
        let f = t.elapsed();
        assert_eq!(record.status, Status::Succeeded, "{:?}", record.error);
        best_bare = best_bare.min(b);
        best_fuse = best_fuse.min(f);
        overheads.push((f.as_secs_f64() - b.as_secs_f64()) / b.as_secs_f64() * 100.0);
    }
    overheads.sort_by(f64::total_cmp);
    let median = overheads[overheads.len() / 2];
    let rps = |d: Duration| calls as f64 / d.as_secs_f64();
    let best =
        (best_fuse.as_secs_f64() - best_bare.as_secs_f64()) / best_bare.as_secs_f64() * 100.0;
    println!(
        "fuse http benchmark ({} build, {calls} GETs, concurrency {CONCURRENCY}, {REPEAT} interleaved pairs)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "bare reqwest loop          best {:>7.1} ms  {:>8.0} req/s",
        best_bare.as_secs_f64() * 1e3,
        rps(best_bare)
    );
    println!(
        "fuse foreach http.request  best {:>7.1} ms  {:>8.0} req/s",
        best_fuse.as_secs_f64() * 1e3,
        rps(best_fuse)
    );
    println!(
        "engine overhead over the bare client: median {median:+.1}% (pairs ranged {:+.1}% to {:+.1}%), best vs best {best:+.1}%; target ≤ 10%: {}",
        overheads[0],
        overheads[overheads.len() - 1],
        if median <= 10.0 { "met" } else { "NOT met" }
    );
}
