//! Daemon webhook benchmark, with the **default configuration** (history on,
//! default retention). A `fuse start` daemon in a fresh home is driven over
//! loopback by a lean in-process load generator (keep-alive HTTP/1.1
//! connections, one request in flight each), in two scenarios:
//!
//! - `respond`: webhook → `webhook.respond` (the caller waits for the run's
//!   answer; the shape of the Node-RED comparison: http in → http response);
//! - `accept`: webhook → 2 nodes, answered `202` once the run is committed.
//!
//! For 16 and 50 connections it prints answered runs/s (every one committed to
//! the database before its answer), latency p50/p99, and checks every
//! answered run is recorded. Then the daemon's RSS: idle, right after 40,000
//! accepted runs, and 30 s later; the database's size, and its size before and
//! after `fuse runs prune` of every run.
//!
//! `cargo bench --bench daemon`; `FUSE_BENCH_SECONDS` (default 5) per point,
//! `FUSE_BENCH_CONNECTIONS` (default "16,50"), `FUSE_BENCH_BURST` (default
//! 40000), `FUSE_BENCH_SETTLE` (default 30 s). `FUSE_BENCH_COMPARE=host:port/path`
//! first drives another server (e.g. Node-RED's `http in` → `http response`)
//! with the same load generator, expecting `200`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{env_or, fuse, init, start};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// One keep-alive HTTP/1.1 connection that posts a body and reads the status.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    /// POSTs and returns the status (0 on a broken connection).
    async fn post(&mut self, host: &str, path: &str, body: &str) -> u16 {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if self.stream.write_all(request.as_bytes()).await.is_err() {
            return 0;
        }
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 4096];
            let n = match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return 0,
                Ok(n) => n,
            };
            self.buf.extend_from_slice(&chunk[..n]);
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if self.buf.len() >= end + 4 + length {
                return head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            }
        }
    }
}

struct Point {
    answered: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// `connections` loops posting to `path` for `seconds` (or until `total`
/// requests were answered); counts answers with status `want`.
fn load(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    path: &str,
    want: u16,
    connections: usize,
    seconds: u64,
    total: Option<usize>,
) -> Point {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut latencies: Vec<Duration> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..connections {
            let (stop, done) = (stop.clone(), done.clone());
            let (addr, path) = (addr.to_string(), path.to_string());
            tasks.spawn(async move {
                let mut conn = Conn::open(&addr).await;
                let mut lat = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if total.is_some_and(|t| done.load(Ordering::Relaxed) as usize >= t) {
                        break;
                    }
                    let body = format!(r#"{{"id":"{c}-{i}","n":{i}}}"#);
                    let t = Instant::now();
                    let status = conn.post(&addr, &path, &body).await;
                    if status == want {
                        lat.push(t.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    } else if status == 0 {
                        conn = Conn::open(&addr).await;
                    }
                    i += 1;
                }
                lat
            });
        }
        if total.is_none() {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
        }
        let mut all = Vec::new();
        while let Some(Ok(l)) = tasks.join_next().await {
            all.extend(l);
        }
        all
    });
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Point {
        answered: latencies.len(),
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

/// Runs ever recorded: the highest rowid (retention deletes the oldest runs,
/// never the newest, so it only grows).
fn recorded(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| {
            c.query_row("SELECT coalesce(max(rowid), 0) FROM executions", [], |r| {
                r.get(0)
            })
        })
        .unwrap_or(-1)
}

fn main() {
    let seconds: u64 = env_or("FUSE_BENCH_SECONDS", 5);
    let connections: Vec<usize> = std::env::var("FUSE_BENCH_CONNECTIONS")
        .unwrap_or_else(|_| "16,50".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let burst: usize = env_or("FUSE_BENCH_BURST", 40_000);
    let settle: u64 = env_or("FUSE_BENCH_SETTLE", 30);
    if let Ok(other) = std::env::var("FUSE_BENCH_COMPARE") {
        let (addr, path) = other
            .split_once('/')
            .map(|(a, p)| (a.to_string(), format!("/{p}")))
            .unwrap_or((other.clone(), "/".into()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        println!("comparison: POST http://{addr}{path}, same load generator, {seconds}s per point");
        for &c in &connections {
            let point = load(&rt, &addr, &path, 200, c, seconds, None);
            println!(
                "compare  {c:>5}  {:>9.0}  {:>9.2}  {:>9.2}  {} answered",
                point.rate,
                point.p50.as_secs_f64() * 1e3,
                point.p99.as_secs_f64() * 1e3,
                point.answered
            );
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    init(&home);
    // The default configuration: nothing in fuse.toml is changed.
    let (pid, addr) = start(&home);
    let token = std::fs::read_to_string(home.join("api-token"))
        .unwrap()
        .trim()
        .to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let deploy = |wf: Value| {
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!("http://{addr}/api/v1/workflows"))
                .bearer_auth(&token)
                .json(&wf)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        })
    };
    deploy(json!({"name": "respond", "nodes": [
        {"id": "hook", "type": "trigger.webhook", "data": {"inputs": {"path": "respond"}}},
        {"id": "answer", "type": "webhook.respond", "data": {"inputs": {"body": {"ok": true, "id": "{{ trigger.body.id }}"}}}}
    ], "edges": [{"source": "hook", "target": "answer"}]}));
    deploy(json!({"name": "accept", "nodes": [
        {"id": "hook", "type": "trigger.webhook", "data": {"inputs": {"path": "accept"}}},
        {"id": "shape", "type": "transform.set", "data": {"inputs": {"values": {"id": "{{ trigger.body.id }}", "n": "{{ trigger.body.n * 2 }}"}}}}
    ], "edges": [{"source": "hook", "target": "shape"}]}));
    let idle = rss_kib(pid);
    let db = home.join("fuse.db");
    let keep_runs = {
        let text = std::fs::read_to_string(home.join("fuse.toml")).unwrap_or_default();
        text.lines()
            .find(|l| l.trim_start().starts_with("keep_runs"))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| "keep_runs (default)".into())
    };
    println!(
        "fuse daemon webhook benchmark ({} build, default configuration: {keep_runs}), {seconds}s per point, load generator in this process",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "{:<8} {:>5}  {:>9}  {:>9}  {:>9}  recorded",
        "scenario", "conns", "runs/s", "p50 ms", "p99 ms"
    );
    for (scenario, want) in [("respond", 200u16), ("accept", 202u16)] {
        for &c in &connections {
            let before = recorded(&db);
            let point = load(
                &rt,
                &addr,
                &format!("/webhook/{scenario}"),
                want,
                c,
                seconds,
                None,
            );
            // Every answered run was committed before its answer.
            let inserted = recorded(&db) - before;
            println!(
                "{scenario:<8} {c:>5}  {:>9.0}  {:>9.2}  {:>9.2}  {} answered, {inserted} recorded{}",
                point.rate,
                point.p50.as_secs_f64() * 1e3,
                point.p99.as_secs_f64() * 1e3,
                point.answered,
                if inserted >= point.answered as i64 {
                    ""
                } else {
                    "  <- RUNS MISSING"
                }
            );
        }
    }
    // Memory after a burst: 40,000 accepted runs, then quiet.
    let before = rss_kib(pid);
    let point = load(&rt, &addr, "/webhook/accept", 202, 50, 0, Some(burst));
    let after = rss_kib(pid);
    std::thread::sleep(Duration::from_secs(settle));
    let settled = rss_kib(pid);
    println!(
        "burst             {} accepted runs at {:.0}/s",
        point.answered, point.rate
    );
    println!(
        "daemon RSS        idle {:.1} MB; before the burst {:.1} MB; right after {:.1} MB; {settle}s later {:.1} MB",
        idle as f64 / 1024.0,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        settled as f64 / 1024.0
    );
    let db_size = || {
        ["fuse.db", "fuse.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(home.join(f)).ok())
            .map(|m| m.len())
            .sum::<u64>() as f64
            / 1e6
    };
    println!(
        "database          {:.1} MB on disk (fuse.db + WAL)",
        db_size()
    );
    let _ = fuse(&home).arg("stop").output();
    // Then every recorded run pruned: the file gives the space back.
    let before = db_size();
    let pruned = fuse(&home)
        .args(["runs", "prune", "--older-than", "0s"])
        .output()
        .unwrap();
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    println!(
        "prune             {before:.1} MB before `fuse runs prune --older-than 0s`, {:.2} MB after ({})",
        db_size(),
        String::from_utf8_lossy(&pruned.stdout).trim()
    );
}
