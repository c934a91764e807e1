//! `fuse workflows …` against a real daemon.

use predicates::prelude::*;
use serde_json::{Value, json};

use crate::daemon::start;
use crate::helper::{TestHome, stdout_of};

#[test]
fn the_workflows_cli_manages_what_the_daemon_holds() {
    let home = TestHome::initialized();
    // Without a daemon: says how to start one.
    home.cmd()
        .args(["workflows", "list"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("fuse start"));
    let d = start(&home);
    let file = home.write(
        "double.json",
        &json!({"name": "Double It", "params": [{"name": "n", "type": "integer", "required": true}],
            "nodes": [{"id": "d", "type": "transform.set", "data": {"inputs": {"values": {"twice": "{{ trigger.n * 2 }}"}}}}],
            "edges": []}),
    );
    let out = stdout_of(home.cmd().args(["workflows", "deploy"]).arg(&file));
    assert!(out.contains("deployed double-it version 1"), "{out}");
    let out = stdout_of(
        home.cmd()
            .args(["workflows", "deploy"])
            .arg(&file)
            .arg("--json"),
    );
    let deployed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deployed[0]["unchanged"], true);
    // A change is version 2.
    let mut changed: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    changed["description"] = json!("doubles n");
    std::fs::write(&file, changed.to_string()).unwrap();
    stdout_of(home.cmd().args(["workflows", "deploy"]).arg(&file));

    let listed: Value =
        serde_json::from_str(&stdout_of(home.cmd().args(["workflows", "list", "--json"]))).unwrap();
    assert_eq!(
        (listed[0]["name"].as_str(), listed[0]["version"].as_i64()),
        (Some("double-it"), Some(2))
    );
    let versions: Value = serde_json::from_str(&stdout_of(home.cmd().args([
        "workflows",
        "versions",
        "double-it",
        "--json",
    ])))
    .unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    stdout_of(home.cmd().args(["workflows", "rollback", "double-it", "1"]));
    let shown: Value = serde_json::from_str(&stdout_of(home.cmd().args([
        "workflows",
        "show",
        "double-it",
        "--json",
    ])))
    .unwrap();
    assert_eq!(shown["version"], 1);
    assert!(shown["definition"]["description"].is_null());

    // Run: the id at once, or followed to its result.
    let id = stdout_of(
        home.cmd()
            .args(["workflows", "run", "double-it", "--input", "n=4"]),
    );
    assert!(d.wait_run(id.trim())["status"] == "succeeded");
    let out = stdout_of(home.cmd().args([
        "workflows",
        "run",
        "double-it",
        "--input",
        "n=21",
        "--follow",
    ]));
    let output: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(output, json!({"twice": 42}));
    // A refused input is the daemon's words and exit 2.
    home.cmd()
        .args(["workflows", "run", "double-it", "--input", "m=1"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("unknown input `m`"));

    stdout_of(home.cmd().args(["workflows", "disable", "double-it"]));
    home.cmd()
        .args(["workflows", "run", "double-it", "--input", "n=1"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("disabled"));
    stdout_of(home.cmd().args(["workflows", "enable", "double-it"]));
    stdout_of(home.cmd().args(["workflows", "rm", "double-it"]));
    let listed: Value =
        serde_json::from_str(&stdout_of(home.cmd().args(["workflows", "list", "--json"]))).unwrap();
    assert_eq!(listed, json!([]));
}

#[test]
fn status_lists_workflows_with_their_triggers_and_the_queue() {
    let home = TestHome::initialized();
    let d = start(&home);
    for wf in [
        json!({"name": "hooked", "nodes": [{"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "in"}}}], "edges": []}),
        json!({"name": "nightly", "nodes": [{"id": "t", "type": "trigger.cron", "data": {"inputs": {"cron": "0 3 * * *"}}}], "edges": []}),
        json!({"name": "by-hand", "nodes": [{"id": "a", "type": "log", "data": {"inputs": {"message": "x"}}}], "edges": []}),
    ] {
        assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    }
    let status: Value =
        serde_json::from_str(&stdout_of(home.cmd().args(["status", "--json"]))).unwrap();
    assert_eq!(status["health"]["queued"], 0);
    let workflows = status["workflows"].as_array().unwrap();
    let find = |name: &str| {
        workflows
            .iter()
            .find(|w| w["name"] == name)
            .unwrap()
            .clone()
    };
    let hook = &find("hooked")["triggers"][0];
    assert_eq!(hook["kind"], "webhook");
    assert_eq!(hook["url"], format!("{}/webhook/in", d.url));
    let cron = &find("nightly")["triggers"][0];
    assert_eq!(
        (cron["kind"].as_str(), cron["spec"].as_str()),
        (Some("cron"), Some("0 3 * * *"))
    );
    assert!(cron["next_fire_at"].is_string(), "{cron}");
    assert_eq!(find("by-hand")["triggers"], json!([]));
    let text = stdout_of(home.cmd().arg("status"));
    assert!(
        text.contains(&format!("POST {}/webhook/in", d.url)),
        "{text}"
    );
    assert!(text.contains("0 queued"), "{text}");
}

#[test]
fn diff_shows_what_changed_between_versions() {
    let home = TestHome::initialized();
    let _d = start(&home);
    let wf = |greeting: &str| {
        json!({"name": "greet", "nodes": [{"id": "s", "type": "transform.set",
            "data": {"inputs": {"values": {"greeting": greeting, "who": "{{ trigger.who }}"}}}}], "edges": []})
    };
    let file = home.write("greet.json", &wf("hello"));
    stdout_of(home.cmd().args(["workflows", "deploy"]).arg(&file));
    std::fs::write(&file, wf("bonjour").to_string()).unwrap();
    stdout_of(home.cmd().args(["workflows", "deploy"]).arg(&file));
    let out = stdout_of(home.cmd().args(["workflows", "diff", "greet", "1", "2"]));
    assert!(
        out.contains("--- greet version 1") && out.contains("+++ greet version 2"),
        "{out}"
    );
    assert!(
        out.contains("-") && out.contains("\"greeting\": \"hello\""),
        "{out}"
    );
    let changed: Vec<&str> = out
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .collect();
    assert_eq!(changed.len(), 2, "{out}");
    assert!(
        changed[0].starts_with('-') && changed[0].contains("hello"),
        "{out}"
    );
    assert!(
        changed[1].starts_with('+') && changed[1].contains("bonjour"),
        "{out}"
    );
    // B defaults to the current version; --json has the same lines.
    let diff: Value = serde_json::from_str(&stdout_of(home.cmd().args([
        "workflows",
        "diff",
        "greet",
        "1",
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        (diff["from"].as_i64(), diff["to"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(diff["same"], false);
    let ops: Vec<&str> = diff["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["op"].as_str())
        .filter(|op| *op != " ")
        .collect();
    assert_eq!(ops, ["-", "+"]);
    // A version that is not there: the daemon's words, exit 2.
    home.cmd()
        .args(["workflows", "diff", "greet", "1", "9"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("has no version 9"));
}

#[test]
fn runs_list_show_and_logs_are_the_same_from_the_daemon_and_the_database() {
    let home = TestHome::initialized();
    let d = start(&home);
    let file = home.write(
        "count.json",
        &json!({"name": "count", "nodes": [{"id": "c", "type": "transform.set",
            "data": {"inputs": {"values": {"n": "{{ trigger.n }}"}}}}], "edges": []}),
    );
    stdout_of(home.cmd().args(["workflows", "deploy"]).arg(&file));
    for n in 0..3 {
        let id =
            stdout_of(
                home.cmd()
                    .args(["workflows", "run", "count", "--input", &format!("n={n}")]),
            );
        d.wait_run(id.trim());
    }
    let ask = |args: &[&str]| stdout_of(home.cmd().args(args));
    let queries: [&[&str]; 6] = [
        &["runs", "list", "--json"],
        &["runs", "list"],
        &[
            "runs",
            "list",
            "--workflow",
            "count",
            "--limit",
            "2",
            "--json",
        ],
        &["runs", "show", "last", "--json"],
        &["runs", "show", "last", "--workflow", "count"],
        &["runs", "logs", "last", "--json"],
    ];
    home.cmd()
        .args(["-v", "runs", "list"])
        .assert()
        .success()
        .stderr(predicates::str::contains("reading runs from the daemon"));
    let from_daemon: Vec<String> = queries.iter().map(|q| ask(q)).collect();
    let listed: Value = serde_json::from_str(&from_daemon[0]).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(
        serde_json::from_str::<Value>(&from_daemon[2])
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    home.cmd().arg("stop").assert().success();
    home.cmd()
        .args(["-v", "runs", "list"])
        .assert()
        .success()
        .stderr(
            predicates::str::contains("reading runs from")
                .and(predicates::str::contains("fuse.db")),
        );
    let from_db: Vec<String> = queries.iter().map(|q| ask(q)).collect();
    for ((q, a), b) in queries.iter().zip(&from_daemon).zip(&from_db) {
        assert_eq!(a, b, "fuse {} differs", q.join(" "));
    }
    // Not found is exit 2 both ways.
    home.cmd()
        .args(["runs", "show", "ffffffff"])
        .assert()
        .code(2);
}
