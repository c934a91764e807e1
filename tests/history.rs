//! The store stays bounded: thousands of runs with large outputs under a
//! retention of 100 leave a database and blob folder of bounded size.

use std::sync::Arc;

use fuse::config::HistoryConfig;
use fuse::engine::{Fanout, Observer};
use fuse::nodes::Registry;
use fuse::store::{Recorder, Store};
use fuse::{Engine, RunRequest};
use serde_json::json;

fn dir_size(path: &std::path::Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(path).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            let (b, f) = dir_size(&p);
            bytes += b;
            files += f;
        } else {
            bytes += entry.metadata().unwrap().len();
            files += 1;
        }
    }
    (bytes, files)
}

#[test]
fn retention_keeps_the_database_and_blobs_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fuse.db");
    let blobs = dir.path().join("blobs");
    let history = HistoryConfig {
        keep_runs: 100,
        keep_days: 0,
        blob_threshold: 4096,
    };
    let recorder = Arc::new(
        Recorder::start(
            Store::open(&db).unwrap(),
            blobs.clone(),
            history,
            fuse::store::recorder::Mode::Daemon,
        )
        .unwrap(),
    );
    let observers: Vec<Arc<dyn Observer>> = vec![recorder.clone()];
    let engine = Engine::new(Registry::builtin(), Arc::new(Fanout(observers)), 4);
    // Each run outputs ~40 KB, unique per run (so blobs cannot be shared).
    let wf = json!({"name": "big", "nodes": [
        {"id": "t", "type": "trigger.manual"},
        {"id": "big", "type": "transform.set", "data": {"inputs": {"values": {"n": "{{ trigger.n }}", "pad": "{{ 'abcdefgh' * 5000 }}"}}}}
    ], "edges": [{"source": "t", "target": "big"}]});
    let plan = Arc::new(engine.load_str(wf.to_string(), None).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let runs = 2000;
    let mut peak_db = 0;
    for n in 0..runs {
        let record =
            rt.block_on(engine.run(plan.clone(), RunRequest::new(json!({"n": n}), "test")));
        assert_eq!(record.status, fuse::engine::Status::Succeeded);
        if n % 250 == 249 {
            recorder.flush();
            let size = std::fs::metadata(&db).unwrap().len()
                + std::fs::metadata(dir.path().join("fuse.db-wal"))
                    .map(|m| m.len())
                    .unwrap_or(0);
            peak_db = peak_db.max(size);
        }
    }
    recorder.close();
    let store = Store::open(&db).unwrap();
    let kept: i64 = store
        .conn()
        .query_row("SELECT COUNT(*) FROM executions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 100);
    let (blob_bytes, blob_files) = dir_size(&blobs);
    // Per kept run: the node output and the run output are the same content (one
    // blob); nothing else crosses the threshold.
    assert!(
        blob_files <= 100,
        "{blob_files} blob files for 100 kept runs"
    );
    assert!(blob_bytes <= 100 * 45_000, "blobs use {blob_bytes} bytes");
    let db_size = std::fs::metadata(&db).unwrap().len();
    // 2,000 runs wrote ~80 MB of payloads; what stays is bounded by retention.
    assert!(db_size < 4 * 1024 * 1024, "database is {db_size} bytes");
    assert!(
        peak_db < 16 * 1024 * 1024,
        "database + WAL peaked at {peak_db} bytes"
    );
    let orphans: i64 = store
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM blobs WHERE hash NOT IN (SELECT hash FROM blob_refs)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
}

/// `fuse.db` and its write-ahead log, in bytes.
fn db_size(home: &crate::helper::TestHome) -> u64 {
    ["fuse.db", "fuse.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(home.path().join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn prune_gives_the_space_back() {
    let home = crate::helper::TestHome::initialized();
    let empty = db_size(&home);
    // 3,000 recorded attempts of about 1 KB each.
    let wf = home.write(
        "fill.json",
        &serde_json::json!({"settings": {"keep_runs": 0}, "nodes": [{"id": "pad", "type": "transform.set",
            "foreach": "{{ range(3000) | list }}", "concurrency": 64,
            "data": {"inputs": {"values": {"pad": "{{ 'x' * 1000 }}", "i": "{{ item }}"}}}}], "edges": []}),
    );
    home.cmd().arg("run").arg(&wf).assert().success();
    let full = db_size(&home);
    assert!(
        full > empty + 2_000_000,
        "the fill wrote {} bytes",
        full - empty
    );
    let out = crate::helper::stdout_of(home.cmd().args(["runs", "prune", "--older-than", "0s"]));
    assert!(
        out.contains("deleted 1 run(s)") && out.contains("gave back"),
        "{out}"
    );
    let after = db_size(&home);
    assert!(
        after <= empty + 64 * 1024,
        "after pruning everything the database is {after} bytes (empty: {empty}, full: {full})"
    );
}

#[test]
fn the_daemon_applies_retention_in_the_background_and_gives_the_space_back() {
    let home = crate::helper::TestHome::initialized();
    let empty = db_size(&home);
    // Filled with retention off (so the fill surely grows the file, however
    // fast the writer keeps up), then a daemon with keep_runs = 20 takes over.
    let filler = crate::daemon::start_with(&home, &[("FUSE_HISTORY_KEEP_RUNS", "0")]);
    let wf = serde_json::json!({"name": "pad", "nodes": [
        {"id": "hook", "type": "trigger.webhook", "data": {"inputs": {"path": "pad"}}},
        {"id": "p", "type": "transform.set", "data": {"inputs": {"values": {"pad": "{{ 'x' * 20000 }}", "n": "{{ trigger.body.n }}"}}}}
    ], "edges": [{"source": "hook", "target": "p"}]});
    assert_eq!(filler.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let post = |d: &crate::daemon::Daemon<'_>, n: u32| {
        let (code, body) = crate::daemon::http(
            "POST",
            &format!("{}/webhook/pad", d.url),
            None,
            &[],
            Some(&serde_json::json!({"n": n})),
        );
        assert_eq!(code, 202, "{body}");
        body["run_id"].as_str().unwrap().to_string()
    };
    let mut last = String::new();
    for n in 0..300 {
        last = post(&filler, n);
    }
    filler.wait_run(&last);
    let full = db_size(&home);
    assert!(
        full > empty + 3_000_000,
        "300 runs wrote {} bytes",
        full - empty
    );
    filler.kill();
    drop(filler);
    let d = crate::daemon::start_with(&home, &[("FUSE_HISTORY_KEEP_RUNS", "20")]);
    let last = post(&d, 300);
    d.wait_run(&last);
    // Kept: the newest 20 (retention runs off the request path, so wait for it).
    let kept = crate::daemon::wait_for("retention to keep 20 runs", || {
        let (_, list) = d.call("GET", "/api/v1/executions?workflow=pad&limit=0", None);
        let n = list["executions"].as_array().map_or(0, Vec::len);
        (n == 20).then_some(list)
    });
    assert_eq!(kept["executions"][0]["id"], last.as_str());
    // Once the writer is idle, the pages the deleted runs used go back to the
    // file system.
    // What stays is the 20 kept runs (about 40 KB each) and little more.
    crate::daemon::wait_for("the database to shrink", || {
        (db_size(&home) <= empty + 20 * 40_000 + 512 * 1024).then_some(())
    });
}

/// The history writer inserts node rows 32 to a statement (issue 20). A run
/// of 75 nodes reads back whole and in order: two full statements, a large
/// output kept as a blob inside one of them, a skipped node (a row of its
/// own, between attempts), the rest one row per statement.
#[test]
fn every_node_row_reads_back_in_order() {
    let home = crate::helper::TestHome::initialized();
    let mut nodes = vec![
        json!({"id": "n0", "type": "transform.set", "data": {"inputs": {"values": {"i": 0}}}}),
    ];
    let mut edges = Vec::new();
    for i in 1..70 {
        let mut values = json!({"i": i});
        if i == 40 {
            // Over the default blob threshold (256 KiB).
            values["pad"] = json!("{{ 'x' * 300000 }}");
        }
        nodes.push(json!({"id": format!("n{i}"), "type": "transform.set", "data": {"inputs": {"values": values}}}));
        edges.push(json!({"source": format!("n{}", i - 1), "target": format!("n{i}")}));
    }
    nodes.push(json!({"id": "check", "type": "flow.if", "data": {"inputs": {"condition": "{{ input.i > 100 }}"}}}));
    nodes.push(
        json!({"id": "never", "type": "transform.set", "data": {"inputs": {"values": {"i": -1}}}}),
    );
    nodes.push(
        json!({"id": "after", "type": "transform.set", "data": {"inputs": {"values": {"i": 70}}}}),
    );
    edges.push(json!({"source": "n69", "target": "check"}));
    edges.push(json!({"source": "check", "sourceHandle": "true", "target": "never"}));
    edges.push(json!({"source": "check", "sourceHandle": "false", "target": "after"}));
    for i in 71..73 {
        nodes.push(json!({"id": format!("n{i}"), "type": "transform.set", "data": {"inputs": {"values": {"i": i}}}}));
        let from = if i == 71 {
            "after".to_string()
        } else {
            format!("n{}", i - 1)
        };
        edges.push(json!({"source": from, "target": format!("n{i}")}));
    }
    let wf = home.write(
        "order.json",
        &json!({"name": "order", "nodes": nodes, "edges": edges}),
    );
    home.cmd().args(["-q", "run"]).arg(&wf).assert().success();
    let runs = crate::helper::json_of(home.cmd().args(["runs", "list", "--json"]));
    let id = runs[0]["id"].as_str().expect("a run id").to_string();
    let run = crate::helper::json_of(home.cmd().args(["runs", "show", &id, "--json"]));
    let rows = run["nodes"].as_array().expect("the run's nodes");
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["node_id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<String> = (0..70).map(|i| format!("n{i}")).collect();
    expected.extend(["check", "after", "n71", "n72", "never"].map(String::from));
    assert_eq!(
        ids, expected,
        "every row, in the order the nodes ran (the skipped one last)"
    );
    for (i, row) in rows.iter().take(70).enumerate() {
        assert_eq!(row["status"], "succeeded", "{row}");
        assert_eq!(row["output"]["i"], i, "n{i}'s output");
        if i > 0 {
            assert_eq!(
                row["input"],
                rows[i - 1]["output"],
                "n{i}'s input is n{}'s output",
                i - 1
            );
        }
    }
    assert_eq!(
        rows[40]["output"]["pad"].as_str().map(str::len),
        Some(300_000),
        "the blob reads back"
    );
    assert_eq!(rows[71]["output"]["i"], 70);
    assert_eq!(rows[74]["status"], "skipped");
    assert!(rows[74]["output"].is_null(), "{}", rows[74]);
}
