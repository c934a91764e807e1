//! Scale-out on PostgreSQL (issue 19, preview): `fuse worker` processes
//! sharing the run queue, with the default configuration.
//!
//! - throughput: N light runs queued, then 1, 2 and 4 workers started; runs/s
//!   from the first claim to the last finish, and the scaling efficiency
//!   (runs/s with k workers ÷ k × runs/s with one);
//! - claim-to-start latency: runs queued one at a time to idle workers
//!   (woken by NOTIFY); p50 and p99 of start − queue time, on the server's clock;
//! - the shape of Windmill's published benchmark: 40 sequential light tasks
//!   (here a chain of 40 `transform.set` nodes in one run), end to end: with
//!   SQLite (`fuse run`, history on) and with PostgreSQL (`fuse run --queue`
//!   to a waiting worker).
//!
//! Needs a PostgreSQL server: `FUSE_TEST_PG_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres, which scripts/setup-test-deps.sh
//! provides). `cargo bench --bench workers`; `FUSE_BENCH_RUNS` (default 2000).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{env_or, fuse, init};

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn admin_url() -> String {
    std::env::var("FUSE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn sql(url: &str, text: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL at {url} ({e})"));
    tokio::spawn(conn);
    client.query(text, &[]).await.unwrap()
}

/// A fresh database; its URL.
async fn database(name: &str) -> String {
    let admin = admin_url();
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL at {admin} ({e})"));
    tokio::spawn(conn);
    // One statement each: CREATE DATABASE cannot share a transaction.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&statement).await.unwrap();
    }
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(name);
    url.to_string()
}

fn worker(home: &std::path::Path, url: &str) -> Child {
    fuse(home)
        .env("FUSE_STORE_URL", url)
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A run of `definition` to queue.
fn queued(definition: &str) -> fuse::store::pg::NewRun {
    fuse::store::pg::NewRun {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: "light".into(),
        definition: definition.to_string(),
        input: json!({}),
        trigger_kind: "bench".into(),
        entry: None,
        needs: fuse::worker::needs_of(definition),
        tags: Vec::new(),
    }
}

fn light() -> String {
    json!({"name": "light", "nodes": [
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}
    ]})
    .to_string()
}

fn chain(n: usize) -> serde_json::Value {
    let nodes: Vec<_> = (0..n)
        .map(|i| json!({"id": format!("t{i}"), "type": "transform.set", "data": {"inputs": {"values": {"step": i}}}}))
        .collect();
    let edges: Vec<_> = (1..n)
        .map(|i| json!({"source": format!("t{}", i - 1), "target": format!("t{i}")}))
        .collect();
    json!({"name": format!("chain-{n}"), "nodes": nodes, "edges": edges})
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let runs: usize = env_or("FUSE_BENCH_RUNS", 2000);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    init(&home);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "scale-out on PostgreSQL ({cpus} CPUs; workers run with the default concurrency = CPUs)"
    );

    // Throughput with 1, 2, 4 workers.
    let definition = light();
    let mut one = 0.0;
    for workers in [1usize, 2, 4] {
        let url = rt.block_on(database(&format!("fuse_bench_w{workers}")));
        let pg = rt.block_on(fuse::store::pg::Pg::connect(&url)).unwrap();
        rt.block_on(async {
            for _ in 0..runs {
                pg.enqueue(&queued(&definition)).await.unwrap();
            }
        });
        let mut children: Vec<Child> = (0..workers).map(|_| worker(&home, &url)).collect();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let done: i64 = rt.block_on(sql(
                &url,
                "SELECT COUNT(*) FROM queue_runs WHERE status = 'succeeded'",
            ))[0]
                .get(0);
            if done as usize == runs || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let span: f64 = rt.block_on(sql(
            &url,
            "SELECT EXTRACT(EPOCH FROM MAX(finished_at) - MIN(started_at))::float8 FROM queue_runs",
        ))[0]
            .get(0);
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let rate = runs as f64 / span;
        if workers == 1 {
            one = rate;
        }
        println!(
            "  {workers} worker(s): {runs} light runs in {:.2} s = {:.0} runs/s; scaling efficiency {:.0}%",
            span,
            rate,
            100.0 * rate / (one * workers as f64)
        );
    }

    // Claim-to-start latency with idle workers.
    let url = rt.block_on(database("fuse_bench_latency"));
    let pg = rt.block_on(fuse::store::pg::Pg::connect(&url)).unwrap();
    let mut children: Vec<Child> = (0..2).map(|_| worker(&home, &url)).collect();
    // Wait until both are registered and idle.
    while rt.block_on(sql(&url, "SELECT 1 FROM queue_workers")).len() < 2 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let samples = 200;
    rt.block_on(async {
        for _ in 0..samples {
            let run = queued(&definition);
            let id = run.id.clone();
            pg.enqueue(&run).await.unwrap();
            // One at a time: the next is queued once this one has finished.
            loop {
                let state = pg.queued_run(&id).await.unwrap().unwrap();
                if state.status == "succeeded" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let mut latencies: Vec<f64> = rt
        .block_on(sql(
            &url,
            "SELECT (EXTRACT(EPOCH FROM started_at - created_at) * 1000)::float8 FROM queue_runs",
        ))
        .iter()
        .map(|r| r.get::<_, f64>(0))
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  claim-to-start latency ({samples} runs queued one at a time to 2 idle workers): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // 40 sequential light tasks, end to end.
    let wf = tmp.path().join("chain-40.json");
    std::fs::write(&wf, chain(40).to_string()).unwrap();
    let best = |cmd: &mut dyn FnMut() -> std::process::Command| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let out = cmd().output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let sqlite = best(&mut || {
        let mut cmd = fuse(&home);
        cmd.arg("run").arg(&wf);
        cmd
    });
    let postgres = best(&mut || {
        let mut cmd = fuse(&home);
        cmd.env("FUSE_STORE_URL", &url)
            .args(["run", "--queue", "-q"])
            .arg(&wf);
        cmd
    });
    println!(
        "  40 sequential light tasks (one run of a 40-node chain, whole command, best of 5): SQLite `fuse run` {:.1} ms; PostgreSQL `fuse run --queue` to a waiting worker {:.1} ms",
        sqlite.as_secs_f64() * 1000.0,
        postgres.as_secs_f64() * 1000.0
    );
    println!(
        "  (Windmill's published figures for 40 sequential jobs on their hardware: Hatchet 1.22 s, Windmill 2.09 s, Temporal 2.97 s, Prefect 4.87 s)"
    );
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    rt.block_on(async {
        for name in [
            "fuse_bench_w1",
            "fuse_bench_w2",
            "fuse_bench_w4",
            "fuse_bench_latency",
        ] {
            sql(
                &admin_url(),
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
    });
}
