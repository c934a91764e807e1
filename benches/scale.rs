//! How cost grows with the size of a workflow (issue 20), with the **default
//! configuration** (history on, in a fresh home per size).
//!
//! - parse + validate + plan of a 10,000-node chain, in process with the
//!   binary's allocator (best of 30), beside the same text read into a
//!   `serde_json::Value`: a reference for how fast the machine is that day
//!   (timings on a shared machine move by half between runs of the bench,
//!   together);
//! - `fuse run` of linear chains of 100, 1k, 10k and 100k `transform.set`
//!   nodes as a whole process: wall time, µs per node, peak RSS (from
//!   `wait4`), with history and with `--no-history`; and the workflow file's
//!   size, so memory per node can be read against the data;
//! - the disk syncs of consecutive `fuse run`s (counted with strace, when it
//!   is installed).
//!
//! `cargo bench --bench scale`; `FUSE_BENCH_SIZES` (default
//! "100,1000,10000,100000"), `FUSE_BENCH_REPEAT` (default 5, best of).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

/// The `fuse` binary's allocator (src/main.rs), so that the in-process
/// figures (parse + validate) are the binary's, not glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::{env_or, fuse, init};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn chain(n: usize) -> Value {
    let nodes: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("n{i}"), "type": "transform.set", "data": {"inputs": {"values": {"i": i}}}}))
        .collect();
    let edges: Vec<Value> = (1..n)
        .map(|i| json!({"source": format!("n{}", i - 1), "target": format!("n{i}")}))
        .collect();
    json!({"name": format!("chain-{n}"), "nodes": nodes, "edges": edges})
}

/// Runs `cmd` to the end; its wall time and peak RSS in KiB.
///
/// Linux keeps a process's peak RSS across `exec`, so a child spawned by this
/// (large) process would report at least this process's size. Children are
/// therefore spawned by a small runner process (this binary with `--runner`,
/// started before anything large is built), which waits for them with `wait4`.
struct Runner {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Runner {
    fn start() -> Runner {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--runner")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        use std::io::BufRead;
        Runner {
            child,
            lines: std::io::BufReader::new(stdout).lines(),
        }
    }

    /// Runs the fuse binary with `args` in `home`; wall time and peak KiB.
    fn run(&mut self, home: &Path, args: &[&str]) -> (Duration, u64) {
        use std::io::Write;
        let request = json!({"home": home, "args": args}).to_string();
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        let line = self.lines.next().unwrap().unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert!(answer["ok"] == true, "fuse {args:?} failed: {answer}");
        (
            Duration::from_secs_f64(answer["secs"].as_f64().unwrap()),
            answer["maxrss_kib"].as_u64().unwrap(),
        )
    }
}

/// The runner: one JSON request per line in, one answer per line out.
fn runner() {
    use std::io::{BufRead, Write};
    for line in std::io::stdin().lock().lines() {
        let request: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let mut cmd = fuse(Path::new(request["home"].as_str().unwrap()));
        for a in request["args"].as_array().unwrap() {
            cmd.arg(a.as_str().unwrap());
        }
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let started = Instant::now();
        let child = cmd.spawn().expect("spawn fuse");
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child, with valid pointers to locals.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let secs = started.elapsed().as_secs_f64();
        std::mem::forget(child);
        let ok = waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        let answer =
            json!({"ok": ok, "status": status, "secs": secs, "maxrss_kib": usage.ru_maxrss});
        let mut out = std::io::stdout().lock();
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--runner") {
        return runner();
    }
    let mut runner = Runner::start();
    let sizes: Vec<usize> = std::env::var("FUSE_BENCH_SIZES")
        .unwrap_or_else(|_| "100,1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let repeat: usize = env_or("FUSE_BENCH_REPEAT", 5);
    let tmp = tempfile::tempdir().unwrap();

    // Parse + validate + plan, in process, the way `fuse run` and the daemon do.
    let engine = fuse::Engine::new(
        fuse::nodes::Registry::builtin(),
        std::sync::Arc::new(fuse::engine::NullObserver),
        16,
    );
    let text = chain(10_000).to_string();
    let best_of = |f: &dyn Fn()| {
        (0..30)
            .map(|_| {
                let started = Instant::now();
                f();
                started.elapsed()
            })
            .min()
            .unwrap()
    };
    let best = best_of(&|| drop(engine.load_str(&text, None).expect("valid")));
    println!(
        "fuse scale benchmark ({} build, default configuration, best of {repeat})",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let parse = best_of(&|| drop(fuse::Workflow::from_json(&text).expect("parses")));
    let reference = best_of(&|| drop(serde_json::from_str::<Value>(&text).expect("JSON")));
    println!(
        "parse + validate + plan of a 10,000-node chain ({} KB): {:.1} ms, of which parsing {:.1} ms (target ≤ 20 ms: {})",
        text.len() / 1024,
        best.as_secs_f64() * 1e3,
        parse.as_secs_f64() * 1e3,
        verdict(best <= Duration::from_millis(20))
    );
    println!(
        "reference, the machine's speed today: the same text read into a serde_json::Value: {:.1} ms",
        reference.as_secs_f64() * 1e3
    );
    println!();
    println!(
        "{:>7} {:>9}  {:>10} {:>8} {:>9}  {:>10} {:>8} {:>9}",
        "nodes", "file KB", "history ms", "µs/node", "peak MB", "none ms", "µs/node", "peak MB"
    );
    let mut at_10k = None;
    let mut at_100k = None;
    for &n in &sizes {
        let home = tmp.path().join(format!("home-{n}"));
        init(&home);
        let file = tmp.path().join(format!("chain-{n}.json"));
        std::fs::write(&file, chain(n).to_string()).unwrap();
        let size = std::fs::metadata(&file).unwrap().len();
        let mut figures = Vec::new();
        for history in [true, false] {
            let (mut best, mut peak) = (Duration::MAX, 0);
            for _ in 0..repeat {
                let file = file.to_str().unwrap();
                let args: &[&str] = if history {
                    &["-q", "run", file]
                } else {
                    &["-q", "run", "--no-history", file]
                };
                let (took, rss) = runner.run(&home, args);
                best = best.min(took);
                peak = peak.max(rss);
            }
            figures.push((best, peak));
        }
        let per_node = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        let (h, none) = (figures[0], figures[1]);
        println!(
            "{n:>7} {:>9.0}  {:>10.1} {:>8.2} {:>9.1}  {:>10.1} {:>8.2} {:>9.1}",
            size as f64 / 1024.0,
            h.0.as_secs_f64() * 1e3,
            per_node(h.0),
            h.1 as f64 / 1024.0,
            none.0.as_secs_f64() * 1e3,
            per_node(none.0),
            none.1 as f64 / 1024.0,
        );
        if n == 10_000 {
            at_10k = Some(per_node(h.0));
        }
        if n == 100_000 {
            at_100k = Some((h.1, none.1));
        }
    }
    println!();
    if let Some(us) = at_10k {
        println!(
            "target `fuse run` of 10k nodes ≤ 10 µs/node with history: {us:.2} ({})",
            verdict(us <= 10.0)
        );
    }
    for n in [100, 10_000] {
        match syncs(tmp.path(), n, 6) {
            Some(counts) => println!(
                "disk syncs of 6 `fuse run`s of a {n}-node chain in a new home: {counts:?} \
                 (the first creates the log; later ones sync it once, plus a checkpoint per ~4 MB of history)"
            ),
            None => println!("disk syncs: not counted (strace is not installed)"),
        }
    }
    if let Some((h, none)) = at_100k {
        println!(
            "target ≤ 40 MB peak for 100k nodes: {:.1} MB with history, {:.1} MB without ({})",
            h as f64 / 1024.0,
            none as f64 / 1024.0,
            verdict(h <= 40 * 1024)
        );
    }
}

/// Disk syncs (`fsync`, `fdatasync`) of `runs` consecutive `fuse run`s of a
/// chain of `n` nodes in a fresh home, counted with strace: each run's count.
fn syncs(dir: &Path, n: usize, runs: usize) -> Option<Vec<usize>> {
    let home = dir.join(format!("syncs-{n}"));
    init(&home);
    let file = dir.join(format!("syncs-chain-{n}.json"));
    std::fs::write(&file, chain(n).to_string()).unwrap();
    let trace = dir.join("syncs.trace");
    let mut counts = Vec::new();
    for _ in 0..runs {
        let status = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=fsync,fdatasync", "-o"])
            .arg(&trace)
            .arg(env!("CARGO_BIN_EXE_fuse"))
            .args(["-q", "run"])
            .arg(&file)
            .env("FUSE_HOME", &home)
            .envs(std::env::vars().filter(|(k, _)| !k.starts_with("FUSE_")))
            .stdout(std::process::Stdio::null())
            .status()
            .ok()?;
        assert!(status.success(), "fuse run under strace failed");
        let text = std::fs::read_to_string(&trace).unwrap();
        counts.push(text.lines().filter(|l| l.contains("sync(")).count());
    }
    Some(counts)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}
