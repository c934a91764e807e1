//! Issue 19 (preview): `fuse worker` processes sharing a queue on a real
//! PostgreSQL server. Each test has its own database.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helper::TestHome;
use crate::wait::wait_for_within;
use fuse::store::pg::{NewRun, Pg};

/// The server the tests use: `FUSE_TEST_PG_URL`, else the local one that
/// `scripts/setup-test-deps.sh` makes sure of.
fn admin_url() -> String {
    std::env::var("FUSE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A database of its own, dropped at the end.
pub(crate) struct TestDb {
    pub(crate) url: String,
    name: String,
    pub(crate) rt: tokio::runtime::Runtime,
}

impl TestDb {
    pub(crate) fn new() -> TestDb {
        let rt = runtime();
        let name = format!("fuse_test_{}", uuid::Uuid::now_v7().simple());
        // The tests are about workers and daemons dying, not the database
        // server: commits need not wait for the disk (on this kind of VM a
        // flush takes ~4 ms and would make the 10,000-run test minutes long).
        rt.block_on(admin(&format!("CREATE DATABASE {name}")));
        rt.block_on(admin(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        )));
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&name);
        TestDb {
            url: url.to_string(),
            name,
            rt,
        }
    }

    pub(crate) fn pg(&self) -> Pg {
        self.rt.block_on(Pg::connect(&self.url)).unwrap()
    }

    /// Rows of a query on this database, each as JSON.
    pub(crate) fn query(&self, sql: &str) -> Vec<Value> {
        let url = self.url.clone();
        let sql = format!("SELECT row_to_json(q)::text FROM ({sql}) q");
        self.rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .query(&sql, &[])
                .await
                .unwrap()
                .into_iter()
                .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
                .collect()
        })
    }

    pub(crate) fn count(&self, sql: &str) -> i64 {
        self.query(&format!("SELECT COUNT(*) AS n FROM ({sql}) c"))[0]["n"]
            .as_i64()
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        self.rt.block_on(admin(&format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )));
    }
}

async fn admin(sql: &str) {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no PostgreSQL at {} ({e}); scripts/setup-test-deps.sh starts one",
                admin_url()
            )
        });
    tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
}

/// A `fuse worker` process, killed (SIGKILL) when dropped.
pub(crate) struct Worker {
    child: Child,
    log: std::path::PathBuf,
}

impl Worker {
    pub(crate) fn start(home: &Path, db: &TestDb, log: &Path, args: &[&str]) -> Worker {
        let out = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("fuse"));
        for (key, _) in std::env::vars() {
            if key.starts_with("FUSE_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .env("FUSE_HOME", home)
            .env("FUSE_STORE_URL", &db.url)
            .env("NO_COLOR", "1")
            .arg("worker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        Worker {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Step `a` appends `a RUN_ID` to `file` (a side effect the tests count);
/// step `b` waits until `release` exists, then appends `b RUN_ID`.
fn two_steps(file: &Path, release: &Path) -> String {
    let (f, r) = (file.display(), release.display());
    json!({
        "name": "steps",
        "nodes": [
            {"id": "a", "type": "exec.command",
             "data": {"inputs": {"argv": ["sh", "-c", format!("echo \"a {{{{ run.id }}}}\" >> {f}")]}}},
            {"id": "b", "type": "exec.command",
             "data": {"inputs": {"argv": ["sh", "-c", format!("while [ ! -e {r} ]; do sleep 0.05; done; echo \"b {{{{ run.id }}}}\" >> {f}")]}}},
            {"id": "done", "type": "end", "data": {"inputs": {"value": {"ok": true}}}}
        ],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "done"}]
    })
    .to_string()
}

/// Queues a run of `definition` for a worker of its own (a lease of 1s),
/// which is killed with -9 once the run's `node` is checkpointed.
fn killed_after(db: &TestDb, home: &TestHome, definition: &str, node: &str) -> NewRun {
    killed_once(
        db,
        home,
        definition,
        &format!("{node}'s checkpoint"),
        |run| format!("SELECT 1 FROM queue_nodes WHERE run_id = '{run}' AND node_id = '{node}'"),
    )
}

/// Like [`killed_after`], once the query `rows(run id)` gives a row.
fn killed_once(
    db: &TestDb,
    home: &TestHome,
    definition: &str,
    what: &str,
    rows: impl Fn(&str) -> String,
) -> NewRun {
    let mut victim = Worker::start(
        home.path(),
        db,
        &home.tmp().join("victim.log"),
        &["--concurrency", "1", "--lease", "1s"],
    );
    let run = new_run(definition, json!({}));
    db.rt.block_on(db.pg().enqueue(&run)).unwrap();
    wait_for_within(what, Duration::from_secs(30), || {
        (db.count(&rows(&run.id)) >= 1).then_some(())
    });
    victim.kill();
    run
}

/// A daemon on the queue that takes calls and fires schedules but runs no
/// run itself (`--role api,scheduler`).
fn api_process<'a>(db: &TestDb, home: &'a TestHome) -> crate::daemon::Daemon<'a> {
    crate::daemon::start_with(
        home,
        &[
            ("FUSE_STORE_URL", db.url.as_str()),
            ("FUSE_ROLES", "api,scheduler"),
        ],
    )
}

/// Another worker takes a killed worker's run over: the run's claims and
/// output once it has succeeded, and that worker.
fn resumed_elsewhere(db: &TestDb, home: &TestHome, run: &NewRun) -> (Value, Worker) {
    let other = Worker::start(
        home.path(),
        db,
        &home.tmp().join("other.log"),
        &["--concurrency", "2", "--lease", "1s"],
    );
    wait_for_within("the run to finish", Duration::from_secs(60), || {
        (db.count(&format!(
            "SELECT 1 FROM queue_runs WHERE id = '{}' AND status = 'succeeded'",
            run.id
        )) == 1)
            .then_some(())
    });
    let row = db.query(&format!(
        "SELECT claims, output FROM queue_runs WHERE id = '{}'",
        run.id
    ));
    (row[0].clone(), other)
}

fn new_run(definition: &str, input: Value) -> NewRun {
    NewRun {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: "steps".into(),
        definition: definition.to_string(),
        input,
        trigger_kind: "test".into(),
        entry: None,
        needs: fuse::worker::needs_of(definition),
        tags: Vec::new(),
    }
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn three_workers_run_every_queued_run_exactly_once() {
    let db = TestDb::new();
    let home = TestHome::new();
    let effects = home.tmp().join("effects.txt");
    let release = home.tmp().join("release");
    std::fs::write(&release, "").unwrap();
    let definition = two_steps(&effects, &release);
    let pg = db.pg();
    let workers: Vec<Worker> = (0..3)
        .map(|i| {
            Worker::start(
                home.path(),
                &db,
                &home.tmp().join(format!("worker{i}.log")),
                &["--concurrency", "4", "--lease", "3s"],
            )
        })
        .collect();
    const RUNS: usize = 300;
    let ids: Vec<String> = db.rt.block_on(async {
        let mut ids = Vec::new();
        for _ in 0..RUNS {
            let run = new_run(&definition, json!({}));
            pg.enqueue(&run).await.unwrap();
            ids.push(run.id);
        }
        ids
    });
    wait_for_within("every run to finish", Duration::from_secs(120), || {
        (db.count("SELECT 1 FROM queue_runs WHERE status = 'succeeded'") == RUNS as i64)
            .then_some(())
    });
    // Each run was claimed once and did each side effect once.
    assert_eq!(db.count("SELECT 1 FROM queue_runs WHERE claims <> 1"), 0);
    let effects = lines(&effects);
    assert_eq!(effects.len(), 2 * RUNS, "each step once per run");
    for id in &ids {
        for step in ["a", "b"] {
            let line = format!("{step} {id}");
            assert_eq!(effects.iter().filter(|l| **l == line).count(), 1, "{line}");
        }
    }
    // The work was shared, and each worker says who it is.
    let used = db.count("SELECT DISTINCT worker FROM queue_runs");
    assert!(used >= 2, "only {used} worker(s) took runs");
    assert_eq!(db.count("SELECT 1 FROM queue_workers"), 3);
    drop(workers);
}

#[test]
fn a_killed_worker_s_run_finishes_elsewhere_without_rerunning_its_finished_node() {
    let db = TestDb::new();
    let home = TestHome::new();
    let effects = home.tmp().join("effects.txt");
    let release = home.tmp().join("release");
    let definition = two_steps(&effects, &release);
    let pg = db.pg();
    // The victim is killed while its run waits in step b (step a is done).
    let slow = killed_after(&db, &home, &definition, "a");
    // Its command died with it: releasing step b now cannot make the killed
    // run write its line.
    std::fs::write(&release, "").unwrap();
    let others: Vec<NewRun> = (0..20).map(|_| new_run(&definition, json!({}))).collect();
    db.rt.block_on(async {
        for r in &others {
            pg.enqueue(r).await.unwrap();
        }
    });
    // Two workers that were never told about the kill: one of them takes the
    // run over once its lease (1s) has run out.
    let a = Worker::start(
        home.path(),
        &db,
        &home.tmp().join("a.log"),
        &["--concurrency", "4", "--lease", "1s"],
    );
    let b = Worker::start(
        home.path(),
        &db,
        &home.tmp().join("b.log"),
        &["--concurrency", "4", "--lease", "1s"],
    );
    wait_for_within("every run to finish", Duration::from_secs(90), || {
        (db.count("SELECT 1 FROM queue_runs WHERE status = 'succeeded'") == 21).then_some(())
    });
    let resumed = &db.query(&format!(
        "SELECT claims, worker FROM queue_runs WHERE id = '{}'",
        slow.id
    ))[0];
    assert_eq!(resumed["claims"], 2, "{resumed}");
    let effects = lines(&effects);
    assert_eq!(
        effects
            .iter()
            .filter(|l| **l == format!("a {}", slow.id))
            .count(),
        1,
        "the finished first step did not run again: {effects:?}"
    );
    assert_eq!(
        effects
            .iter()
            .filter(|l| **l == format!("b {}", slow.id))
            .count(),
        1
    );
    for r in &others {
        assert_eq!(
            effects.iter().filter(|l| l.ends_with(&r.id)).count(),
            2,
            "{}",
            r.id
        );
    }
    let log = format!("{}{}", a.log(), b.log());
    assert!(
        log.contains("resuming a run another worker left") && log.contains(&slow.id),
        "{log}"
    );
}

/// A resumed run repeats neither a finished `foreach` node's items nor a
/// node that failed and took its error path (nor that path's own node).
#[test]
fn a_resumed_run_reruns_no_finished_foreach_item_and_no_handled_failure() {
    let db = TestDb::new();
    let home = TestHome::new();
    let effects = home.tmp().join("effects.txt");
    let release = home.tmp().join("release");
    let (f, r) = (effects.display(), release.display());
    let definition = json!({
        "name": "steps",
        "nodes": [
            {"id": "each", "type": "exec.command", "foreach": "{{ ['x', 'y', 'z'] }}",
             "data": {"inputs": {"argv": ["sh", "-c", format!("echo \"each {{{{ item }}}} {{{{ run.id }}}}\" >> {f}")]}}},
            {"id": "bad", "type": "exec.command",
             "data": {"inputs": {"argv": ["sh", "-c", format!("echo \"bad {{{{ run.id }}}}\" >> {f}; exit 3")]}}},
            {"id": "handler", "type": "exec.command",
             "data": {"inputs": {"argv": ["sh", "-c", format!("echo \"handler {{{{ run.id }}}}\" >> {f}")]}}},
            {"id": "wait", "type": "exec.command",
             "data": {"inputs": {"argv": ["sh", "-c", format!("while [ ! -e {r} ]; do sleep 0.05; done; echo \"wait {{{{ run.id }}}}\" >> {f}")]}}},
            {"id": "done", "type": "end", "data": {"inputs": {"value": {"ok": true}}}}
        ],
        "edges": [
            {"source": "each", "target": "bad"},
            {"source": "bad", "target": "handler", "sourceHandle": "error"},
            {"source": "handler", "target": "wait"},
            {"source": "wait", "target": "done"}
        ]
    })
    .to_string();
    let run = killed_after(&db, &home, &definition, "handler");
    std::fs::write(&release, "").unwrap();
    // The failure is checkpointed as an error, the foreach node as a whole.
    let rows = db.query(&format!(
        "SELECT node_id, output, error FROM queue_nodes WHERE run_id = '{}' ORDER BY node_id",
        run.id
    ));
    let row = |id: &str| rows.iter().find(|r| r["node_id"] == id).cloned().unwrap();
    assert_eq!(row("each")["error"], Value::Null, "{rows:?}");
    assert_eq!(
        row("each")["output"].as_array().map(Vec::len),
        Some(3),
        "{rows:?}"
    );
    assert_eq!(row("bad")["error"]["kind"], "exit", "{rows:?}");
    let (resumed, other) = resumed_elsewhere(&db, &home, &run);
    assert_eq!(resumed["claims"], 2, "{resumed}");
    assert_eq!(resumed["output"], json!({"ok": true}), "{resumed}");
    let mut effects = lines(&effects);
    effects.sort();
    let id = &run.id;
    assert_eq!(
        effects,
        [
            format!("bad {id}"),
            format!("each x {id}"),
            format!("each y {id}"),
            format!("each z {id}"),
            format!("handler {id}"),
            format!("wait {id}"),
        ],
        "every side effect exactly once"
    );
    assert!(other.log().contains("resuming a run"), "{}", other.log());
}

/// A worker killed in the middle of a `foreach` node: the run resumed
/// elsewhere runs only the items that had not finished.
#[test]
fn a_resumed_run_runs_only_the_unfinished_items_of_a_foreach() {
    let db = TestDb::new();
    let home = TestHome::new();
    let effects = home.tmp().join("effects.txt");
    let release = home.tmp().join("release");
    let (f, r) = (effects.display(), release.display());
    // One item at a time; the last waits for the release before its effect.
    let definition = json!({
        "name": "steps",
        "nodes": [
            {"id": "each", "type": "exec.command", "foreach": "{{ ['x', 'y', 'z'] }}", "concurrency": 1,
             "data": {"inputs": {"argv": ["sh", "-c", format!(
                 "if [ {{{{ item }}}} = z ]; then while [ ! -e {r} ]; do sleep 0.05; done; fi; echo \"each {{{{ item }}}} {{{{ run.id }}}}\" >> {f}")]}}}
        ],
        "edges": []
    })
    .to_string();
    let run = killed_once(&db, &home, &definition, "two items' checkpoints", |run| {
        format!("SELECT 1 FROM queue_items WHERE run_id = '{run}' HAVING COUNT(*) = 2")
    });
    std::fs::write(&release, "").unwrap();
    let (finished, other) = resumed_elsewhere(&db, &home, &run);
    assert_eq!(finished["claims"], 2, "{finished}");
    assert_eq!(
        finished["output"].as_array().map(Vec::len),
        Some(3),
        "{finished}"
    );
    let mut effects = lines(&effects);
    effects.sort();
    let id = &run.id;
    assert_eq!(
        effects,
        [
            format!("each x {id}"),
            format!("each y {id}"),
            format!("each z {id}")
        ],
        "each item's side effect exactly once"
    );
    assert!(other.log().contains("resuming a run"), "{}", other.log());
}

#[test]
fn a_worker_without_a_package_never_claims_runs_that_need_it_and_says_so() {
    let db = TestDb::new();
    let plain = TestHome::initialized();
    let with_package = TestHome::initialized();
    crate::packages::package(
        &with_package,
        "shout",
        json!({"name": "shout", "kind": "node", "description": "upper-cases text",
               "inputs": [{"name": "text", "type": "string", "required": true}],
               "runtime": {"command": ["sh", "main.sh"]}}),
        &[("main.sh", "read -r line; echo '{\"output\": \"LOUD\"}'")],
    );
    let shouting = json!({"name": "shouting", "nodes": [
        {"id": "s", "type": "shout", "data": {"inputs": {"text": "hi"}}}
    ]})
    .to_string();
    let quiet = json!({"name": "quiet", "nodes": [
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}
    ]})
    .to_string();
    let pg = db.pg();
    let plain_worker = Worker::start(
        plain.path(),
        &db,
        &plain.tmp().join("plain.log"),
        &["--lease", "1s"],
    );
    let (mut loud, mut calm) = (Vec::new(), Vec::new());
    db.rt.block_on(async {
        for _ in 0..3 {
            let r = new_run(&shouting, json!({}));
            pg.enqueue(&r).await.unwrap();
            loud.push(r.id);
            let r = new_run(&quiet, json!({}));
            pg.enqueue(&r).await.unwrap();
            calm.push(r.id);
        }
    });
    wait_for_within("the plain runs", Duration::from_secs(30), || {
        (db.count("SELECT 1 FROM queue_runs WHERE status = 'succeeded'") == 3).then_some(())
    });
    // The runs that need `shout` wait, and the worker says why.
    wait_for_within(
        "the report of runs nobody can take",
        Duration::from_secs(30),
        || {
            let log = plain_worker.log();
            loud.iter()
                .all(|id| log.contains(id.as_str()))
                .then_some(())
        },
    );
    assert!(
        plain_worker
            .log()
            .contains("no worker can take this run: none has the node types shout"),
        "{}",
        plain_worker.log()
    );
    assert_eq!(
        db.count("SELECT 1 FROM queue_runs WHERE status = 'queued' AND 'shout' = ANY(needs)"),
        3
    );
    // `fuse status` shows the pool: the worker, the queue, the stuck runs.
    let out = plain
        .cmd()
        .env("FUSE_STORE_URL", &db.url)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "no daemon runs here");
    let text = String::from_utf8_lossy(&out.stdout);
    let pool: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(pool["queue"]["depth"], 3, "{pool}");
    assert_eq!(pool["queue"]["workers"].as_array().unwrap().len(), 1);
    assert!(
        pool["queue"]["workers"][0]["heartbeat_age_ms"]
            .as_i64()
            .unwrap()
            < 10_000
    );
    assert_eq!(pool["queue"]["stuck"].as_array().unwrap().len(), 3);
    assert_eq!(pool["queue"]["stuck"][0]["missing_types"], json!(["shout"]));
    let human = plain
        .cmd()
        .env("FUSE_STORE_URL", &db.url)
        .arg("status")
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("3 run(s) waiting"), "{human}");
    assert!(
        human.contains("stuck: run") && human.contains("needs shout"),
        "{human}"
    );
    // A worker with the package takes them.
    let _loud_worker = Worker::start(
        with_package.path(),
        &db,
        &with_package.tmp().join("loud.log"),
        &["--lease", "1s"],
    );
    wait_for_within("the shout runs", Duration::from_secs(30), || {
        (db.count("SELECT 1 FROM queue_runs WHERE status = 'succeeded'") == 6).then_some(())
    });
    let takers = db.query(
        "SELECT DISTINCT 'shout' = ANY(w.types) AS has_shout FROM queue_runs r
           JOIN queue_workers w ON w.id = r.worker WHERE 'shout' = ANY(r.needs)",
    );
    assert_eq!(takers, vec![json!({"has_shout": true})]);
    let outputs = db.query("SELECT output FROM queue_runs WHERE 'shout' = ANY(needs)");
    assert!(outputs.iter().all(|o| o["output"] == "LOUD"), "{outputs:?}");
}

#[test]
fn of_many_schedulers_exactly_one_takes_each_fire() {
    let db = TestDb::new();
    let rt = runtime();
    let url = db.url.clone();
    let taken: Vec<(i64, bool)> = rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for scheduler in 0..8 {
            let url = url.clone();
            tasks.spawn(async move {
                // Each scheduler has its own connections, as separate processes would.
                let pg = Pg::connect(&url).await.unwrap();
                let mut out = Vec::new();
                for fire in 0..50i64 {
                    let at = 1_800_000_000_000 + fire * 60_000;
                    let won = pg
                        .take_fire("nightly/tick", at, &format!("scheduler-{scheduler}"))
                        .await
                        .unwrap();
                    out.push((at, won));
                }
                out
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            all.extend(r.unwrap());
        }
        all
    });
    assert_eq!(taken.len(), 400);
    for fire in 0..50i64 {
        let at = 1_800_000_000_000 + fire * 60_000;
        let winners = taken.iter().filter(|(t, won)| *t == at && *won).count();
        assert_eq!(winners, 1, "fire {at}");
    }
    assert_eq!(db.count("SELECT 1 FROM schedule_fires"), 50);
}

#[test]
fn run_queue_hands_a_run_to_a_worker_and_prints_its_result() {
    let db = TestDb::new();
    let home = TestHome::new();
    let _worker = Worker::start(home.path(), &db, &home.tmp().join("w.log"), &[]);
    let wf = home.write(
        "hello.json",
        &json!({"name": "hello", "params": [{"name": "name", "type": "string", "default": "world"}],
                "nodes": [{"id": "g", "type": "transform.set",
                           "data": {"inputs": {"values": {"greeting": "Hello, {{ trigger.name }}!"}}}}]}),
    );
    let out = home
        .cmd()
        .env("FUSE_STORE_URL", &db.url)
        .args(["run", "--no-history", "--queue", "--input", "name=Ada"])
        .arg(&wf)
        .output()
        .unwrap();
    // --queue and --no-history do not go together: the queue keeps the run.
    assert_eq!(out.status.code(), Some(2));
    let out = home
        .cmd()
        .env("FUSE_STORE_URL", &db.url)
        .args(["run", "--queue", "--input", "name=Ada"])
        .arg(&wf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!({"greeting": "Hello, Ada!"}));
    assert!(err.contains("succeeded on worker"), "{err}");
    // A bad URL is a clear error, without the password.
    let out = home
        .cmd()
        .env(
            "FUSE_STORE_URL",
            "postgres://fuse:s3cret@127.0.0.1:1/nowhere",
        )
        .args(["run", "--queue"])
        .arg(&wf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

pub(crate) fn hooked() -> Value {
    json!({"name": "hooked", "nodes": [
        {"id": "in", "type": "trigger.webhook", "data": {"inputs": {"path": "orders"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"n": "{{ trigger.body.n }}"}}}}
    ], "edges": [{"source": "in", "target": "s"}]})
}

/// Posts `count` webhooks, eight at a time over kept-alive connections; the
/// run ids the daemon gave.
fn post_webhooks(url: &str, from: usize, count: usize) -> Vec<String> {
    let rt = runtime();
    let client = reqwest::Client::new();
    let hook = format!("{url}/webhook/orders");
    rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..8 {
            let (client, hook) = (client.clone(), hook.clone());
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for n in (from + lane..from + count).step_by(8) {
                    let reply = client
                        .post(&hook)
                        .json(&json!({"n": n}))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await
                        .unwrap();
                    let status = reply.status().as_u16();
                    let body: Value = reply.json().await.unwrap_or(Value::Null);
                    assert_eq!(status, 202, "{body}");
                    ids.push(body["run_id"].as_str().unwrap().to_string());
                }
                ids
            });
        }
        let mut ids = Vec::new();
        while let Some(lane) = tasks.join_next().await {
            ids.extend(lane.unwrap());
        }
        ids
    })
}

#[test]
fn an_api_process_queues_webhook_runs_that_three_workers_run_exactly_once() {
    let db = TestDb::new();
    let home = TestHome::initialized();
    // The API process does not run runs itself: the three workers do.
    // Retention is off, so every run stays to be counted (it would keep the
    // newest 1,000 of the workflow).
    let d = crate::daemon::start_with(
        &home,
        &[
            ("FUSE_STORE_URL", db.url.as_str()),
            ("FUSE_ROLES", "api,scheduler"),
            ("FUSE_HISTORY_KEEP_RUNS", "0"),
        ],
    );
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(hooked())).0, 201);
    let workers_home = TestHome::new();
    let _workers: Vec<Worker> = (0..3)
        .map(|i| {
            Worker::start(
                workers_home.path(),
                &db,
                &workers_home.tmp().join(format!("w{i}.log")),
                &["--lease", "3s"],
            )
        })
        .collect();
    const RUNS: usize = 10_000;
    let ids = post_webhooks(&d.url, 0, RUNS);
    assert_eq!(ids.len(), RUNS);
    wait_for_within(
        "every accepted run to finish",
        Duration::from_secs(300),
        || {
            (db.count("SELECT 1 FROM queue_runs WHERE status = 'succeeded'") == RUNS as i64)
                .then_some(())
        },
    );
    // Every accepted run is in the queue, finished once, with its own input.
    assert_eq!(db.count("SELECT 1 FROM queue_runs"), RUNS as i64);
    assert_eq!(db.count("SELECT 1 FROM queue_runs WHERE claims <> 1"), 0);
    let accepted: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(accepted.len(), RUNS);
    let stored: Vec<Value> = db.query("SELECT id FROM queue_runs");
    assert!(
        stored
            .iter()
            .all(|r| accepted.contains(&r["id"].as_str().unwrap().to_string()))
    );
    assert_eq!(
        db.count("SELECT DISTINCT (output->>'n') FROM queue_runs"),
        RUNS as i64,
        "each run had its own body"
    );
    assert_eq!(
        db.count("SELECT 1 FROM queue_runs WHERE trigger_kind = 'webhook' AND entry = 'in'"),
        RUNS as i64
    );
    // The API process shows a queued run by its id, and so does `fuse runs show`.
    let (code, run) = d.call("GET", &format!("/api/v1/executions/{}", ids[7]), None);
    assert_eq!(code, 200, "{run}");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["trigger"], "webhook");
    assert_eq!(run["input"]["body"]["n"], run["output"]["n"]);
    let shown = crate::helper::stdout_of(home.cmd().args(["runs", "show", &ids[7]]));
    assert!(
        shown.contains("succeeded") && shown.contains("hooked"),
        "{shown}"
    );
    assert_eq!(d.call("GET", "/api/v1/executions/no-such-run", None).0, 404);
    // /metrics of the API process shows the pool.
    let (code, text) = crate::ops::get_text(&format!("{}/metrics", d.url), Some(&d.token));
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let gauges = |name: &str| -> Vec<f64> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
            .collect()
    };
    assert_eq!(gauges("fuse_queue_depth"), vec![0.0], "{text}");
    assert_eq!(gauges("fuse_queue_stuck_runs"), vec![0.0]);
    let concurrency = gauges("fuse_worker_concurrency");
    assert_eq!(concurrency.len(), 3, "{text}");
    assert!(concurrency.iter().all(|c| *c >= 1.0));
    assert!(
        gauges("fuse_worker_heartbeat_age_seconds")
            .iter()
            .all(|age| *age < 30.0)
    );
}

#[test]
fn queued_runs_finish_after_the_api_process_is_killed() {
    let db = TestDb::new();
    let home = TestHome::initialized();
    let d = crate::daemon::start_with(
        &home,
        &[("FUSE_STORE_URL", db.url.as_str()), ("FUSE_ROLES", "api")],
    );
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(hooked())).0, 201);
    // Without the scheduler role the daemon is still ready.
    assert_eq!(
        crate::ops::get_text(&format!("{}/readyz", d.url), None).0,
        200
    );
    let ids = post_webhooks(&d.url, 0, 200);
    d.kill();
    assert_eq!(
        db.count("SELECT 1 FROM queue_runs WHERE status = 'queued'"),
        200
    );
    let workers_home = TestHome::new();
    let _a = Worker::start(
        workers_home.path(),
        &db,
        &workers_home.tmp().join("a.log"),
        &[],
    );
    let _b = Worker::start(
        workers_home.path(),
        &db,
        &workers_home.tmp().join("b.log"),
        &[],
    );
    wait_for_within("the queued runs", Duration::from_secs(60), || {
        (db.count("SELECT 1 FROM queue_runs WHERE status = 'succeeded'") == 200).then_some(())
    });
    assert_eq!(ids.len(), 200);
}

#[test]
fn two_schedulers_fire_each_cron_time_once() {
    let db = TestDb::new();
    let (one, two) = (TestHome::initialized(), TestHome::initialized());
    let every_second = json!({"name": "ticking", "nodes": [
        {"id": "tick", "type": "trigger.cron", "data": {"inputs": {"cron": "* * * * * *"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"at": "{{ trigger.fired_at }}"}}}}
    ], "edges": [{"source": "tick", "target": "s"}]});
    let every_two_seconds = json!({"name": "pacing", "nodes": [
        {"id": "every", "type": "trigger.interval", "data": {"inputs": {"every": "2s"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}
    ], "edges": [{"source": "every", "target": "s"}]});
    // The store is shared: deployed through one daemon, both serve them.
    let daemons: Vec<_> = [&one, &two]
        .into_iter()
        .map(|home| crate::daemon::start_with(home, &[("FUSE_STORE_URL", db.url.as_str())]))
        .collect();
    for wf in [&every_second, &every_two_seconds] {
        assert_eq!(
            daemons[0]
                .call("POST", "/api/v1/workflows", Some(wf.clone()))
                .0,
            201
        );
    }
    let (_, listed) = daemons[1].call("GET", "/api/v1/workflows", None);
    assert_eq!(
        listed["workflows"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    wait_for_within("six cron fires", Duration::from_secs(30), || {
        (db.count("SELECT DISTINCT input->>'fired_at' FROM queue_runs WHERE workflow = 'ticking'")
            >= 6)
            .then_some(())
    });
    drop(daemons);
    let doubled = db.query(
        "SELECT input->>'fired_at' AS at, COUNT(*) AS n FROM queue_runs
          WHERE workflow = 'ticking' GROUP BY 1 HAVING COUNT(*) > 1",
    );
    assert!(doubled.is_empty(), "fired twice: {doubled:?}");
    // The interval's fires: one per 2-second slot, whichever scheduler got there first.
    let slots = db.query(
        "SELECT fire_at, COUNT(*) AS n FROM schedule_fires WHERE schedule = 'pacing/every' GROUP BY 1 HAVING COUNT(*) > 1",
    );
    assert!(slots.is_empty(), "{slots:?}");
    assert_eq!(
        db.count("SELECT 1 FROM schedule_fires WHERE schedule = 'pacing/every'"),
        db.count("SELECT 1 FROM queue_runs WHERE workflow = 'pacing'")
    );
}

/// `overlap: skip` counts the runs on the queue, not only the daemon's own:
/// while a fire's run waits for a worker, later fires are skipped; once a
/// worker has run it, fires start runs again.
#[test]
fn overlap_skip_sees_runs_waiting_on_the_queue() {
    let db = TestDb::new();
    let home = TestHome::initialized();
    let d = api_process(&db, &home);
    let wf = json!({"name": "single", "nodes": [
        {"id": "tick", "type": "trigger.cron", "data": {"inputs": {"cron": "* * * * * *", "overlap": "skip"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}
    ], "edges": [{"source": "tick", "target": "s"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    // No worker: the first fire's run stays queued. Fires are handled one
    // after another, so once a third is taken the second was decided.
    wait_for_within("three fires", Duration::from_secs(30), || {
        (db.count("SELECT 1 FROM schedule_fires WHERE schedule = 'single/tick'") >= 3).then_some(())
    });
    assert_eq!(
        db.count("SELECT 1 FROM queue_runs WHERE workflow = 'single'"),
        1,
        "fires while the first run waited were not skipped"
    );
    let workers_home = TestHome::new();
    let _worker = Worker::start(
        workers_home.path(),
        &db,
        &workers_home.tmp().join("w.log"),
        &[],
    );
    wait_for_within("fires to start runs again", Duration::from_secs(30), || {
        (db.count("SELECT 1 FROM queue_runs WHERE workflow = 'single' AND status = 'succeeded'")
            >= 2)
            .then_some(())
    });
    drop(d);
}

#[test]
fn a_queued_run_s_events_reach_the_daemon_s_websocket_clients() {
    use futures_util::StreamExt;
    let db = TestDb::new();
    let home = TestHome::initialized();
    let release = home.tmp().join("release");
    let d = crate::daemon::start_with(&home, &[("FUSE_STORE_URL", db.url.as_str())]);
    let wf = json!({"name": "held", "nodes": [
        {"id": "in", "type": "trigger.webhook", "data": {"inputs": {"path": "held"}}},
        {"id": "wait", "type": "exec.command",
         "data": {"inputs": {"argv": ["sh", "-c", format!("while [ ! -e {} ]; do sleep 0.05; done; echo done", release.display())]}}},
        {"id": "end", "type": "end", "data": {"inputs": {"value": {"said": "{{ nodes.wait.output.stdout | trim }}"}}}}
    ], "edges": [{"source": "in", "target": "wait"}, {"source": "wait", "target": "end"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let workers_home = TestHome::new();
    let _worker = Worker::start(
        workers_home.path(),
        &db,
        &workers_home.tmp().join("w.log"),
        &[],
    );
    let (code, body) = crate::daemon::http(
        "POST",
        &format!("{}/webhook/held", d.url),
        None,
        &[],
        Some(&json!({})),
    );
    assert_eq!(code, 202, "{body}");
    let id = body["run_id"].as_str().unwrap().to_string();
    // The run waits in `wait` until released: follow it live meanwhile.
    let rt = runtime();
    let events: Vec<Value> = rt.block_on(async {
        let url = format!(
            "{}/api/v1/executions/{id}/events?token={}",
            d.url.replace("http://", "ws://"),
            d.token
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut events = Vec::new();
        let mut released = false;
        while let Some(Ok(message)) = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("an event within 30 s")
        {
            let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
                continue;
            };
            let event: Value = serde_json::from_str(&text).unwrap();
            // Once the worker has started the command, let it finish.
            if !released && event["type"] == "node_started" && event["node"] == "wait" {
                std::fs::write(&release, "").unwrap();
                released = true;
            }
            let done = event["type"] == "run_finished";
            events.push(event);
            if done {
                break;
            }
        }
        events
    });
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or(""),
                e["node"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        kinds.contains(&"node_started wait".to_string()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"node_finished wait".to_string()),
        "{kinds:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["type"], "run_finished", "{kinds:?}");
    assert_eq!(last["status"], "succeeded");
    assert!(events.iter().all(|e| e["run_id"] == id.as_str()));
    // A finished queued run: its final state at once.
    let finished: Value = rt.block_on(async {
        let url = format!(
            "{}/api/v1/executions/{id}/events?token={}",
            d.url.replace("http://", "ws://"),
            d.token
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event["type"] == "run_finished" {
                    return event;
                }
            }
        }
    });
    assert_eq!(finished["status"], "succeeded");
}

/// A daemon on the queue lists, pages, finds and shows the runs workers keep
/// there beside the ones it ran itself, through the API and `fuse runs`.
#[test]
fn queued_runs_are_listed_paged_found_and_shown_beside_the_daemon_s_own() {
    let db = TestDb::new();
    let home = TestHome::initialized();
    let d = crate::daemon::start_with(&home, &[("FUSE_STORE_URL", db.url.as_str())]);
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(hooked())).0, 201);
    // A workflow that answers its caller runs in the daemon (recorded locally).
    let answering = json!({"name": "answering", "nodes": [
        {"id": "in", "type": "trigger.webhook", "data": {"inputs": {"path": "answering"}}},
        {"id": "reply", "type": "webhook.respond", "data": {"inputs": {"body": {"ok": true}}}}
    ], "edges": [{"source": "in", "target": "reply"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(answering)).0, 201);
    let first = post_webhooks(&d.url, 0, 3);
    let (code, _) = crate::daemon::http(
        "POST",
        &format!("{}/webhook/answering", d.url),
        None,
        &[],
        Some(&json!({})),
    );
    assert_eq!(code, 200);
    let later = post_webhooks(&d.url, 3, 3);
    wait_for_within("the queued runs to finish", Duration::from_secs(30), || {
        (db.count("SELECT 1 FROM queue_runs WHERE status = 'succeeded' AND workflow = 'hooked'")
            == 6)
            .then_some(())
    });
    let local = wait_for_within("the local run's record", Duration::from_secs(30), || {
        let (_, body) = d.call("GET", "/api/v1/executions?workflow=answering", None);
        body["executions"][0]["id"].as_str().map(str::to_string)
    });
    let ids = |body: &Value| -> Vec<String> {
        body["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (code, all) = d.call("GET", "/api/v1/executions?limit=50", None);
    assert_eq!(code, 200, "{all}");
    let listed = ids(&all);
    assert_eq!(listed.len(), 7, "{all}");
    for id in first.iter().chain(&later).chain([&local]) {
        assert!(listed.contains(id), "{id} is not listed: {all}");
    }
    let times: Vec<i64> = all["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["created_at"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    // Pages of two, each starting after the last run of the one before
    // (queued and local runs alike), give the same list.
    let mut paged = Vec::new();
    let mut path = "/api/v1/executions?limit=2".to_string();
    loop {
        let (code, page) = d.call("GET", &path, None);
        assert_eq!(code, 200, "{path}: {page}");
        let page = ids(&page);
        let Some(last) = page.last().cloned() else {
            break;
        };
        paged.extend(page);
        path = format!("/api/v1/executions?limit=2&before={last}");
    }
    assert_eq!(paged, listed);
    // The page just newer than a run (the dashboard's "newer" link).
    let (_, newer) = d.call(
        "GET",
        &format!("/api/v1/executions?limit=2&after={}", listed[4]),
        None,
    );
    assert_eq!(ids(&newer), listed[2..4]);
    let (_, offset) = d.call("GET", "/api/v1/executions?limit=3&offset=2", None);
    assert_eq!(ids(&offset), listed[2..5]);
    let (_, hooked_only) = d.call("GET", "/api/v1/executions?workflow=hooked", None);
    assert_eq!(ids(&hooked_only).len(), 6);
    // A queued run by the end of its id, through the API and the CLI.
    let wanted = &first[0];
    let (code, shown) = d.call(
        "GET",
        &format!("/api/v1/executions/{}", &wanted[wanted.len() - 10..]),
        None,
    );
    assert_eq!(code, 200, "{shown}");
    assert_eq!(shown["id"], json!(wanted));
    assert_eq!(shown["status"], "succeeded");
    let cli = crate::helper::json_of(home.cmd().args(["runs", "list", "--json", "--limit", "50"]));
    let cli_ids: Vec<&str> = cli
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(cli_ids, listed);
    let last = crate::helper::json_of(home.cmd().args(["runs", "show", "last", "--json"]));
    assert_eq!(last["id"], json!(listed[0]));
}

/// The log lines of a queued run and how each of its nodes finished are
/// kept on the queue: its logs and page show them through any daemon on it.
#[test]
fn a_queued_run_s_log_lines_and_nodes_are_kept_on_the_queue() {
    let db = TestDb::new();
    let home = TestHome::initialized();
    let d = crate::daemon::start_with(&home, &[("FUSE_STORE_URL", db.url.as_str())]);
    let wf = json!({"name": "noted", "nodes": [
        {"id": "in", "type": "trigger.webhook", "data": {"inputs": {"path": "noted"}}},
        {"id": "note", "type": "log", "data": {"inputs": {"message": "order {{ trigger.body.n }} arrived"}}}
    ], "edges": [{"source": "in", "target": "note"}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (code, accepted) = crate::daemon::http(
        "POST",
        &format!("{}/webhook/noted", d.url),
        None,
        &[],
        Some(&json!({"n": 41})),
    );
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["run_id"].as_str().unwrap().to_string();
    let logs = wait_for_within("the run's log line", Duration::from_secs(30), || {
        let (code, body) = d.call("GET", &format!("/api/v1/executions/{id}/logs"), None);
        assert_eq!(code, 200, "{body}");
        let lines = body["logs"].as_array().cloned().unwrap_or_default();
        (!lines.is_empty()).then_some(lines)
    });
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["message"], "order 41 arrived");
    assert_eq!(logs[0]["node_id"], "note");
    assert_eq!(logs[0]["level"], "info");
    // The run's page lists every node, the pure trigger included (only
    // side-effecting nodes are checkpointed), with its type and status.
    let nodes = wait_for_within(
        "both nodes on the run's page",
        Duration::from_secs(30),
        || {
            let (_, run) = d.call("GET", &format!("/api/v1/executions/{id}"), None);
            let nodes = run["nodes"].as_array().cloned().unwrap_or_default();
            (nodes.len() == 2).then_some(nodes)
        },
    );
    for (node, kind) in [("in", "trigger.webhook"), ("note", "log")] {
        let row = nodes.iter().find(|n| n["node_id"] == node).unwrap();
        assert_eq!(row["node_type"], kind, "{nodes:?}");
        assert_eq!(row["status"], "succeeded", "{nodes:?}");
        assert_eq!(row["attempt"], 1, "{nodes:?}");
    }
    // Another daemon on the same queue reads it too.
    let other_home = TestHome::initialized();
    let other = api_process(&db, &other_home);
    let (code, body) = other.call("GET", &format!("/api/v1/executions/{id}/logs"), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["logs"][0]["message"], "order 41 arrived");
}

#[test]
fn one_daemon_on_the_queue_still_runs_its_runs_and_roles_split_the_work() {
    let db = TestDb::new();
    let home = TestHome::initialized();
    // Default roles: api, scheduler and an in-process worker.
    let d = crate::daemon::start_with(&home, &[("FUSE_STORE_URL", db.url.as_str())]);
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(hooked())).0, 201);
    let ids = post_webhooks(&d.url, 0, 20);
    wait_for_within(
        "the daemon's own worker to run them",
        Duration::from_secs(30),
        || (db.count("SELECT 1 FROM queue_runs WHERE status = 'succeeded'") == 20).then_some(()),
    );
    assert_eq!(db.count("SELECT 1 FROM queue_workers"), 1);
    assert_eq!(ids.len(), 20);
    drop(d);
    // Roles are checked: api is required, and roles need the queue.
    let out = home
        .cmd()
        .env("FUSE_STORE_URL", &db.url)
        .args(["start", "--port", "0", "--role", "scheduler"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role must include api"));
    let out = home
        .cmd()
        .args(["start", "--port", "0", "--role", "api,scheduler"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs the store on PostgreSQL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
