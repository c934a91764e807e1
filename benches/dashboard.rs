//! Dashboard pages with a large history (issue 15): a home with 100,000
//! recorded runs (written straight into its database, 5 workflows, a tenth of
//! them failed), a release daemon with the default configuration, a session
//! from a one-time link, then the server time (request to last byte, over
//! loopback, median of 20) of:
//!
//! - the overview, the runs list (first page, page 1,000 both ways, filtered
//!   by workflow, status, trigger and time), a run page.
//!
//! Then, in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, as the tests use them), a workflow page drawing a
//! 1,000-node graph: navigation to the load event, and to two animation
//! frames later (laid out and painted), median of 5 loads.
//!
//! `cargo bench --bench dashboard`; `FUSE_BENCH_RUNS` (default 100000),
//! `FUSE_BENCH_GRAPH_NODES` (default 1000).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;
// Real headless Chromium (as the dashboard tests drive it) for the graph figure.
#[allow(dead_code)]
#[path = "../tests/browser.rs"]
mod browser;
#[allow(dead_code)]
#[path = "../tests/wait.rs"]
mod wait;

use common::{env_or, fuse, init, start};

use std::time::{Duration, Instant};

use serde_json::Value;

fn main() {
    let runs: usize = env_or("FUSE_BENCH_RUNS", 100_000);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    init(&home);
    // The history, written directly (the schema is the store's own).
    let started = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(home.join("fuse.db")).unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO executions (id, workflow_name, status, trigger_kind, input, output,
                         error, created_at, started_at, finished_at, duration_ms)
                     VALUES (?1, ?2, ?3, 'webhook', '{}', '{}', ?4, ?5, ?5, ?6, 3)",
                )
                .unwrap();
            let base = 1_790_000_000_000i64;
            for i in 0..runs {
                let failed = i % 10 == 0;
                let at = base + i as i64 * 1000;
                insert
                    .execute(rusqlite::params![
                        format!("01a00000-0000-7000-8000-{i:012}"),
                        format!("flow-{}", i % 5),
                        if failed { "failed" } else { "succeeded" },
                        failed.then_some("node \"x\" failed: something went wrong"),
                        at,
                        at + 3
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    println!(
        "fuse dashboard benchmark ({} build): {runs} runs written in {:.1} s",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        started.elapsed().as_secs_f64()
    );
    let (_, addr) = start(&home);
    let base = format!("http://{addr}");
    let link: Value = serde_json::from_slice(
        &fuse(&home)
            .args(["dashboard", "--json", "--skip-browser"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let signed = client
            .get(link["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let cookie = signed
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split(';').next())
            .unwrap()
            .to_string();
        let id = |i: usize| format!("01a00000-0000-7000-8000-{i:012}");
        let last = id(runs - 1);
        // The cursor of the 1,000th page (50 a page), and of the 20th page of
        // failed runs of flow-0 (every 10th run failed, every 5th is flow-0's;
        // every 10th is both).
        let deep = id(runs.saturating_sub(50_000));
        let deep_failed = id(runs.saturating_sub(10 * 50 * 19 + 10).max(10) / 10 * 10);
        println!("{:<40} {:>9} {:>9}", "page", "median ms", "max ms");
        for (name, path) in [
            ("overview", "/".to_string()),
            ("runs, first page", "/runs".to_string()),
            ("runs, page 1,000 (before=)", format!("/runs?before={deep}")),
            (
                "runs, newer than page 1,000 (after=)",
                format!("/runs?after={deep}"),
            ),
            (
                "runs started by cron (none)",
                "/runs?trigger=cron".to_string(),
            ),
            (
                "runs of the last hour (none)",
                "/runs?within=1h".to_string(),
            ),
            ("runs of one workflow", "/runs?workflow=flow-3".to_string()),
            ("failed runs", "/runs?status=failed".to_string()),
            (
                "failed runs of one workflow, page 20",
                format!("/runs?workflow=flow-0&status=failed&before={deep_failed}"),
            ),
            ("a run page", format!("/runs/{last}")),
        ] {
            let mut times = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let r = client
                    .get(format!("{base}{path}"))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200, "{path}");
                let _ = r.bytes().await.unwrap();
                times.push(t.elapsed());
            }
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "{name:<40} {:>9.1} {:>9.1}",
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1])
            );
        }
    });
    graph(&home, &base, link_for(&home));
    let _ = fuse(&home).arg("stop").output();
}

/// A new one-time sign-in link.
fn link_for(home: &std::path::Path) -> String {
    let out = fuse(home)
        .args(["dashboard", "--json", "--skip-browser"])
        .output()
        .unwrap();
    let link: Value = serde_json::from_slice(&out.stdout).unwrap();
    link["url"].as_str().unwrap().to_string()
}

/// A workflow of `FUSE_BENCH_GRAPH_NODES` nodes in layers of 10, each node
/// fed by two of the layer before, drawn on its page in Chromium.
fn graph(home: &std::path::Path, base: &str, link: String) {
    let count: usize = env_or("FUSE_BENCH_GRAPH_NODES", 1000);
    let nodes: Vec<Value> = (0..count)
        .map(|i| serde_json::json!({"id": format!("n{i}"), "type": "flow.noop"}))
        .collect();
    let edges: Vec<Value> = (10..count)
        .flat_map(|i| {
            let layer = i / 10 * 10;
            [i - 10, layer - 10 + (i + 3) % 10]
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(move |from| serde_json::json!({"source": format!("n{from}"), "target": format!("n{i}")}))
        })
        .collect();
    let wf = serde_json::json!({"name": "big-graph", "nodes": nodes, "edges": edges});
    let token = std::fs::read_to_string(home.join("api-token")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deployed = reqwest::Client::new()
            .post(format!("{base}/api/v1/workflows"))
            .bearer_auth(token.trim())
            .json(&wf)
            .send()
            .await
            .unwrap();
        let status = deployed.status();
        assert!(
            status.is_success(),
            "{}",
            deployed.text().await.unwrap_or_default()
        );
    });
    let browser = browser::Browser::start();
    browser.goto(&link);
    let page = format!("{base}/workflows/big-graph");
    let (mut load, mut paint) = (Vec::new(), Vec::new());
    let mut drawn = 0;
    for _ in 0..5 {
        browser.goto(&page);
        // Two animation frames after load: the graph laid out and painted
        // (an upper bound: it includes this script's own round trip).
        let timing = browser.run(
            "const n = performance.getEntriesByType('navigation')[0];
             const framed = await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now()))));
             return [n.loadEventEnd - n.startTime, framed, document.querySelectorAll('[data-node]').length];",
            serde_json::json!([]),
        );
        load.push(timing[0].as_f64().unwrap_or(-1.0));
        paint.push(timing[1].as_f64().unwrap_or(-1.0));
        drawn = timing[2].as_u64().unwrap_or(0);
    }
    assert_eq!(drawn as usize, count, "every node drawn");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{count}-node workflow graph in Chromium: load event {:.0} ms, painted by {:.0} ms (median of 5)",
        median(&mut load),
        median(&mut paint)
    );
}
