//! Daemon load benchmark: webhook → 3-node workflow with history, driven by an
//! in-process load generator over loopback (keep-alive connections). Reports
//! accepted runs/s, accept latency p50/p99, completed runs/s, and the daemon's
//! RSS idle and under load. Run with `cargo bench --bench daemon`.
//! `FUSE_BENCH_SECONDS` (default 5) and `FUSE_BENCH_CONNECTIONS` (default 16).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn fuse(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fuse"));
    cmd.env("FUSE_HOME", home);
    for (k, _) in std::env::vars() {
        if k.starts_with("FUSE_") && k != "FUSE_HOME" {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let seconds: u64 = std::env::var("FUSE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let connections: usize = std::env::var("FUSE_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    assert!(
        fuse(&home)
            .args(["init", "--yes"])
            .output()
            .unwrap()
            .status
            .success()
    );
    // Keep every run of the bench (the default keeps 1,000 per workflow).
    std::fs::write(
        home.join("fuse.toml"),
        std::fs::read_to_string(home.join("fuse.toml"))
            .unwrap()
            .replace("keep_runs = 1000", "keep_runs = 0"),
    )
    .unwrap();
    let out = fuse(&home).args(["start", "--port", "0"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("daemon.json")).unwrap()).unwrap();
    let pid = info["pid"].as_u64().unwrap() as u32;
    let base = format!("http://{}:{}", info["host"].as_str().unwrap(), info["port"]);
    let token = std::fs::read_to_string(home.join("api-token"))
        .unwrap()
        .trim()
        .to_string();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let wf = json!({"name": "bench", "nodes": [
        {"id": "hook", "type": "trigger.webhook", "data": {"inputs": {"path": "bench"}}},
        {"id": "shape", "type": "transform.set", "data": {"inputs": {"values": {"id": "{{ trigger.body.id }}", "n": "{{ trigger.body.n * 2 }}"}}}},
        {"id": "sum", "type": "transform.jq", "data": {"inputs": {"filter": "{id, total: (.n + 1)}"}}}
    ], "edges": [{"source": "hook", "target": "shape"}, {"source": "shape", "target": "sum"}]});
    rt.block_on(async {
        let r = client
            .post(format!("{base}/api/v1/workflows"))
            .bearer_auth(&token)
            .json(&wf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    });
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pid);

    // Load: `connections` loops posting webhooks for `seconds`.
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{base}/webhook/bench");
    let started = Instant::now();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut latencies: Vec<Duration> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..connections {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tasks.spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .json(&json!({"id": format!("{c}-{i}"), "n": i}))
                        .send()
                        .await;
                    if let Ok(r) = r
                        && r.status().as_u16() == 202
                    {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    i += 1;
                }
                lat
            });
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        while let Some(Ok(l)) = tasks.join_next().await {
            all.extend(l);
        }
        all
    });
    let load_time = started.elapsed();
    sampler.join().unwrap();
    let accepted = latencies.len();

    // Wait for every accepted run to finish.
    let db = home.join("fuse.db");
    let finished = || -> i64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT count(*) FROM executions WHERE workflow_name = 'bench' AND status NOT IN ('queued', 'running')",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while finished() < accepted as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let all_done = started.elapsed();
    let succeeded: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM executions WHERE workflow_name = 'bench' AND status = 'succeeded'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let _ = fuse(&home).arg("stop").output();

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let accepted_rate = accepted as f64 / load_time.as_secs_f64();
    println!(
        "fuse daemon benchmark ({} build): {connections} connections for {seconds}s, webhook -> 3-node workflow, history on",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("accepted          {accepted} runs, {accepted_rate:.0}/s (target ≥ 2,000/s)");
    println!(
        "accept latency    p50 {:.2} ms, p99 {:.2} ms (target p99 ≤ 20 ms)",
        ms(pct(0.50)),
        ms(pct(0.99))
    );
    println!(
        "completed         {succeeded} succeeded of {accepted}; all finished after {:.1}s: {:.0} runs/s",
        all_done.as_secs_f64(),
        accepted as f64 / all_done.as_secs_f64()
    );
    println!(
        "daemon RSS        idle {:.1} MB, peak under load {:.1} MB (target idle ≤ 30 MB)",
        idle as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
}
