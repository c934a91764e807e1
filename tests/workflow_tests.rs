//! Issue 18: `fuse test`, `fuse run --pin/--trigger` and `fuse runs pin`,
//! through the real binary.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::helper::TestHome;
use crate::helper::http::{Reply, TestServer};

/// A workflow that fetches an order (retried three times, with an error path
/// to a fallback), totals it, and warns about big ones.
fn orders(url: &str) -> Value {
    json!({
        "name": "orders",
        "params": [{"name": "id", "type": "integer", "default": 1}],
        "nodes": [
            {"id": "start", "type": "trigger.manual"},
            {"id": "fetch", "type": "http.request",
             "retry": {"attempts": 3, "initial": "5s"},
             "data": {"inputs": {"url": format!("{url}/orders/{{{{ trigger.id }}}}")}}},
            {"id": "total", "type": "transform.jq",
             "data": {"inputs": {"data": "{{ nodes.fetch.output.body }}",
                                 "filter": "{total: (.items | map(.price) | add), n: (.items | length)}"}}},
            {"id": "big", "type": "flow.if",
             "data": {"inputs": {"condition": "{{ nodes.total.output.total > 100 }}"}}},
            {"id": "note", "type": "log",
             "data": {"inputs": {"level": "warn", "message": "big order: {{ nodes.total.output.total }}"}}},
            {"id": "fallback", "type": "transform.set",
             "data": {"inputs": {"values": {"total": 0, "n": 0, "error": "{{ input.error.message }}"}}}},
            {"id": "done", "type": "end", "data": {"inputs": {"value": "{{ input }}"}}}
        ],
        "edges": [
            {"source": "start", "target": "fetch"},
            {"source": "fetch", "target": "total"},
            {"source": "fetch", "sourceHandle": "error", "target": "fallback"},
            {"source": "total", "target": "big"},
            {"source": "big", "sourceHandle": "true", "target": "note"},
            {"source": "total", "target": "done"},
            {"source": "fallback", "target": "done"}
        ]
    })
}

fn order_body(prices: &[u32]) -> Value {
    json!({"status": 200, "headers": {}, "body": {"items": prices.iter().map(|p| json!({"price": p})).collect::<Vec<_>>()}})
}

/// A folder holding `orders.json` (calling `server`) and `orders.test.json`.
fn suite(home: &TestHome, server: &TestServer, cases: Value) -> PathBuf {
    let dir = home.tmp().join("flows");
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir.join("orders.json"), &orders(&server.url("")));
    write(&dir.join("orders.test.json"), &json!({"cases": cases}));
    dir
}

fn write(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// `fuse test ARGS --json`: the exit code and the report.
fn test_json(home: &TestHome, args: &[&str]) -> (i32, Value) {
    let out = home
        .cmd()
        .arg("test")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn case<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == name)
        .unwrap_or_else(|| panic!("no case {name} in {report:#}"))
}

/// The paths of what differed in a case.
fn paths(case: &Value) -> Vec<String> {
    case["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect()
}

/// The command exits 2 (invalid input) saying `want` on stderr.
fn refused(cmd: &mut assert_cmd::Command, want: &str) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(want), "wanted {want:?} in: {err}");
}

fn server() -> TestServer {
    TestServer::start(|_, _| Reply::json(200, json!({"items": [{"price": 1}]})))
}

#[test]
fn every_expectation_kind_passes_when_it_holds_and_fails_naming_what_differed() {
    let home = TestHome::new();
    let server = server();
    let big = order_body(&[60, 70]);
    let dir = suite(
        &home,
        &server,
        json!([
            {"name": "holds",
             "input": {"id": 7},
             "pins": {"fetch": {"output": big}},
             "expect": {
                "status": "succeeded",
                "output": {"equals": {"total": 130, "n": 2}},
                "nodes": {
                    "fetch": {"status": "succeeded", "attempts": 1,
                              "input": {"subset": {"id": 7}}},
                    "total": {"output": {"subset": {"total": 130}}},
                    "big": {"output": {"expr": "value is not none"}},
                    "note": {"output": {"jq": ". != false"}}
                },
                "ran": ["start", "fetch", "total", "big", "note", "done"],
                "skipped": ["fallback"],
                "failed": [],
                "logs": [{"node": "note", "level": "warn", "contains": "big order: 130"}]
             }},
            {"name": "differs",
             "input": {"id": 7},
             "pins": {"fetch": {"output": big}},
             "expect": {
                "status": "failed",
                "output": {"equals": {"total": 131, "n": 2}},
                "error": {"contains": "boom"},
                "nodes": {
                    "fetch": {"status": "failed", "attempts": 2, "input": {"subset": {"id": 8}}},
                    "total": {"output": {"subset": {"total": 1}}},
                    "big": {"output": {"expr": "value == 42"}},
                    "note": {"output": {"jq": ". == 42"}},
                    "done": {"output": {"contains": "nope"}}
                },
                "ran": ["start"],
                "skipped": [],
                "failed": ["fetch"],
                "logs": [{"contains": "small order"}]
             }}
        ]),
    );
    let (code, report) = test_json(&home, &[dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["passed"], 1);
    assert_eq!(report["failed"], 1);
    let holds = case(&report, "holds");
    assert_eq!(holds["verdict"], "passed", "{holds:#}");
    let differs = case(&report, "differs");
    assert_eq!(differs["verdict"], "failed");
    let got = paths(differs);
    for want in [
        "status",
        "output.total",
        "error",
        "nodes.fetch.status",
        "nodes.fetch.attempts",
        "nodes.fetch.input.id",
        "nodes.total.output.total",
        "nodes.big.output",
        "nodes.note.output",
        "nodes.done.output",
        "ran",
        "skipped",
        "failed",
        "logs[0]",
    ] {
        assert!(got.contains(&want.to_string()), "no {want} in {got:?}");
    }
    let messages: Vec<&str> = differs["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"expected 131, got 130"), "{messages:?}");
    // Pinned: the HTTP server was never called.
    assert!(
        server.requests().is_empty(),
        "{:?}",
        server.requests().len()
    );

    // The human report shows each case with what differed.
    let out = home.cmd().arg("test").arg(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("✓") && text.contains("holds"), "{text}");
    assert!(text.contains("✗") && text.contains("differs"), "{text}");
    assert!(
        text.contains("output.total: expected 131, got 130"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn pins_follow_retries_and_error_paths_without_waiting_for_backoff() {
    let home = TestHome::new();
    let server = server();
    let dir = suite(
        &home,
        &server,
        json!([
            {"name": "third time lucky",
             "pins": {"fetch": {"sequence": [
                {"error": {"kind": "network", "message": "connection refused"}},
                {"error": {"kind": "http", "status": 503, "message": "HTTP 503"}},
                {"output": order_body(&[5])}
             ]}},
             "expect": {
                "output": {"equals": {"total": 5, "n": 1}},
                "nodes": {"fetch": {"status": "succeeded", "attempts": 3}},
                "skipped": ["fallback", "note"],
                "logs": [{"node": "fetch", "level": "warn", "contains": "attempt 2/3 failed: HTTP 503"}]
             }},
            {"name": "error path",
             "pins": {"fetch": {"error": {"kind": "network", "message": "connection refused"}}},
             "expect": {
                "status": "succeeded",
                "output": {"equals": {"total": 0, "n": 0, "error": "connection refused"}},
                "nodes": {"fetch": {"status": "failed", "attempts": 3,
                                    "error": {"equals": {"kind": "network", "message": "connection refused", "retryable": true}}}},
                "failed": ["fetch"],
                "ran": ["start", "fetch", "fallback", "done"]
             }},
            {"name": "not retried",
             "pins": {"fetch": {"error": {"kind": "input", "message": "bad url"}}},
             "expect": {"nodes": {"fetch": {"attempts": 1}}, "ran": ["start", "fetch", "fallback", "done"]}}
        ]),
    );
    let started = std::time::Instant::now();
    let (code, report) = test_json(&home, &[dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["passed"], 3);
    // Six failed attempts with a 5s backoff would take 15s or more: pinned
    // failures are retried at once (not a timing assertion on speed; a
    // backoff slept would make this run take minutes).
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert!(server.requests().is_empty());
}

#[test]
fn update_rewrites_expected_outputs_after_showing_the_difference() {
    let home = TestHome::new();
    let server = server();
    let dir = suite(
        &home,
        &server,
        json!([
            {"name": "snapshot",
             "pins": {"fetch": {"output": order_body(&[10, 20])}},
             "expect": {"output": {"equals": {"total": 99, "n": 2}},
                        "nodes": {"total": {"output": {"equals": null}}, "big": {"status": "succeeded"}}}},
            {"name": "new", "pins": {"fetch": {"output": order_body(&[1])}}},
            {"name": "predicate kept",
             "pins": {"fetch": {"output": order_body(&[2])}},
             "expect": {"output": {"expr": "value.total == 3"}}}
        ]),
    );
    let file = dir.join("orders.test.json");
    let out = home
        .cmd()
        .args(["test", "--update"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("output.total: expected 99, got 30"), "{err}");
    assert!(err.contains("rewrote 1 test file"), "{err}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        written["cases"][0]["expect"]["output"],
        json!({"equals": {"total": 30, "n": 2}})
    );
    assert_eq!(
        written["cases"][0]["expect"]["nodes"]["total"]["output"],
        json!({"equals": {"total": 30, "n": 2}})
    );
    assert_eq!(
        written["cases"][1]["expect"]["output"],
        json!({"equals": {"total": 1, "n": 1}})
    );
    // A predicate is a rule, not a snapshot: left as written (and still failing).
    assert_eq!(
        written["cases"][2]["expect"]["output"],
        json!({"expr": "value.total == 3"})
    );
    let (code, report) = test_json(&home, &[file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(report["passed"], 2, "{report:#}");
    assert_eq!(case(&report, "predicate kept")["verdict"], "failed");
}

#[test]
fn junit_output_is_accepted_by_a_junit_parser() {
    let home = TestHome::new();
    let server = server();
    let dir = suite(
        &home,
        &server,
        json!([
            {"name": "passes <&>", "pins": {"fetch": {"output": order_body(&[1])}}},
            {"name": "fails", "pins": {"fetch": {"output": order_body(&[1])}},
             "expect": {"output": {"equals": "\"quoted\" & <tagged>"}}}
        ]),
    );
    // A second file that cannot be read as a test file is an error entry.
    std::fs::write(dir.join("broken.test.json"), "{\"cases\": [{\"nme\": 1}]}").unwrap();
    let xml = home.tmp().join("report.xml");
    let out = home
        .cmd()
        .arg("test")
        .arg(&dir)
        .arg("--junit")
        .arg(&xml)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a broken file makes it exit 2");
    let report =
        junit_parser::from_reader(std::io::BufReader::new(std::fs::File::open(&xml).unwrap()))
            .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(&xml).unwrap()));
    assert_eq!(report.tests, 3);
    assert_eq!(report.failures, 1);
    assert_eq!(report.errors, 1);
    let cases: Vec<_> = report.suites.iter().flat_map(|s| &s.cases).collect();
    let names: Vec<&str> = cases.iter().map(|c| c.original_name.as_str()).collect();
    let passed = cases
        .iter()
        .find(|c| c.original_name == "passes <&>")
        .unwrap_or_else(|| panic!("{names:?}"));
    assert!(passed.status.is_success());
    let failed = cases.iter().find(|c| c.original_name == "fails").unwrap();
    assert!(failed.status.is_failure());
    let broken = report
        .suites
        .iter()
        .find(|s| s.name.ends_with("broken.test.json"))
        .unwrap();
    assert!(broken.cases[0].status.is_error());
}

#[test]
fn bad_test_files_say_where_and_what_is_wrong() {
    let home = TestHome::new();
    let server = server();
    let dir = suite(&home, &server, json!([{"name": "ok"}]));
    for (body, want) in [
        (
            json!({"cases": [{"name": "a", "pins": {"fetch": {"outptu": 1}}}]}),
            "$.cases[0].pins.fetch.outptu: unknown field `outptu`",
        ),
        (
            json!({"cases": [{"name": "a", "expect": {"output": {"equal": 1}}}]}),
            "$.cases[0].expect.output: unknown variant `equal`",
        ),
        (
            json!({"cases": [{"name": "a", "expect": {"status": "ok"}}]}),
            "$.cases[0].expect.status: \"ok\" is not a status",
        ),
        (
            json!({"cases": [{"name": "a"}, {"name": "b", "pins": {"fetch": {"error": {"kind": "http"}}}}]}),
            "$.cases[1].pins.fetch.error: an `http` error needs `status`",
        ),
        (
            json!({"cases": [{"name": "a", "pins": {"fetch": {"sequence": []}}}]}),
            "$.cases[0].pins.fetch.sequence: it is empty",
        ),
        (
            json!({"cases": [{"name": "a", "expect": {"nodes": {"total": {"output": {"expr": "value.("}}}}}]}),
            "$.cases[0].expect.nodes.total.output: expression",
        ),
        (
            json!({"cases": [{"name": "a", "input": {}, "trigger": {"webhook": {}}}]}),
            "$.cases[0]: give `input`",
        ),
        (
            json!({"cases": [{"name": "a"}, {"name": "a"}]}),
            "$.cases[1].name: another case is also named",
        ),
        (json!({"cases": []}), "$.cases: no cases"),
        (
            json!({"cases": [{"name": "a", "pins": {"fecth": {"output": 1}}}]}),
            "$.cases[0].pins.fecth: orders has no node \"fecth\" (its nodes: start, fetch,",
        ),
        (
            json!({"cases": [{"name": "a", "expect": {"ran": ["start", "nope"]}}]}),
            "$.cases[0].expect.ran[1]: orders has no node \"nope\"",
        ),
        (
            json!({"cases": [{"name": "a", "input": {"id": "seven"}}]}),
            "$.cases[0]: the input does not fit the params of orders",
        ),
        (
            json!({"cases": [{"name": "a", "trigger": {"webhook": {"body": {}}}}]}),
            "$.cases[0].trigger.webhook: orders has no webhook trigger node",
        ),
    ] {
        write(&dir.join("orders.test.json"), &body);
        let out = home.cmd().arg("test").arg(&dir).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{body}: {text}");
        assert!(text.contains(want), "{body}: wanted {want:?} in:\n{text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    std::fs::write(dir.join("orders.test.json"), "{\"cases\": [").unwrap();
    let out = home.cmd().arg("test").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
    // Nothing to run is an error too, with a hint.
    let empty = home.tmp().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = home.cmd().arg("test").arg(&empty).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no test files"));
}

/// A webhook workflow answering its caller, and a scheduled one.
fn hook_and_schedule(dir: &Path) {
    write(
        &dir.join("hook.json"),
        &json!({
            "name": "hook",
            "nodes": [
                {"id": "in", "type": "trigger.webhook", "data": {"inputs": {"path": "orders/new"}}},
                {"id": "reply", "type": "webhook.respond",
                 "data": {"inputs": {"status": 201,
                                     "body": {"got": "{{ trigger.body.id }}", "via": "{{ trigger.headers['x-source'] }}",
                                              "page": "{{ trigger.query.page }}", "method": "{{ trigger.method }}"}}}}
            ],
            "edges": [{"source": "in", "target": "reply"}]
        }),
    );
    write(
        &dir.join("nightly.json"),
        &json!({
            "name": "nightly",
            "nodes": [
                {"id": "tick", "type": "trigger.cron", "data": {"inputs": {"cron": "0 3 * * *", "timezone": "UTC"}}},
                {"id": "stamp", "type": "transform.set",
                 "data": {"inputs": {"values": {"fired": "{{ trigger.fired_at }}", "spec": "{{ trigger.schedule }}", "run": "{{ run.id }}", "started": "{{ run.started_at }}"}}}}
            ],
            "edges": [{"source": "tick", "target": "stamp"}]
        }),
    );
}

#[test]
fn simulated_webhooks_and_schedules_with_fixed_time_and_ids() {
    let home = TestHome::new();
    let dir = home.tmp().join("flows");
    std::fs::create_dir_all(&dir).unwrap();
    hook_and_schedule(&dir);
    write(
        &dir.join("hook.test.json"),
        &json!({"cases": [{
            "name": "answers 201",
            "trigger": {"webhook": {"body": {"id": 42}, "headers": {"X-Source": "shop"}, "query": {"page": "2"}}},
            "expect": {
                "response": {"equals": {"status": 201, "headers": {},
                                        "body": {"got": 42, "via": "shop", "page": "2", "method": "POST"}}},
                "nodes": {"in": {"output": {"subset": {"path": "orders/new"}}}}
            }
        }]}),
    );
    write(
        &dir.join("nightly.test.json"),
        &json!({"cases": [{
            "name": "fires at three",
            "now": "2026-03-01T03:00:00.5Z",
            "run_id": "run-1",
            "trigger": {"schedule": {"at": "2026-03-01T03:00:00Z"}},
            "expect": {"output": {"equals": {"fired": "2026-03-01T03:00:00Z", "spec": "0 3 * * *",
                                             "run": "run-1", "started": "2026-03-01T03:00:00.5Z"}}}
        }]}),
    );
    let (code, report) = test_json(&home, &[dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["passed"], 2);
    // --filter picks cases by "FILE › CASE".
    let (code, report) = test_json(&home, &[dir.to_str().unwrap(), "--filter", "three"]);
    assert_eq!(code, 0);
    assert_eq!(report["cases"].as_array().unwrap().len(), 1);
}

#[test]
fn a_hanging_pinned_node_meets_its_timeout() {
    let home = TestHome::new();
    let dir = home.tmp().join("flows");
    std::fs::create_dir_all(&dir).unwrap();
    let call = |timeout: Option<&str>| {
        let mut node = json!({"id": "call", "type": "http.request",
                              "data": {"inputs": {"url": "http://127.0.0.1:9/never"}}});
        if let Some(t) = timeout {
            node["timeout"] = json!(t);
        }
        node
    };
    write(
        &dir.join("slow.json"),
        &json!({"name": "slow", "nodes": [call(Some("200ms"))]}),
    );
    write(
        &dir.join("slow.test.json"),
        &json!({"cases": [
            {"name": "times out", "pins": {"call": {"wait": true}},
             "expect": {"status": "failed", "nodes": {"call": {"error": {"subset": {"kind": "timeout"}}}}}}
        ]}),
    );
    // Without a node timeout, the case's own timeout stops the run.
    write(
        &dir.join("hang.json"),
        &json!({"name": "hang", "nodes": [call(None)]}),
    );
    write(
        &dir.join("hang.test.json"),
        &json!({"cases": [
            {"name": "hangs", "timeout": "300ms", "pins": {"call": {"sequence": [{"wait": true}]}}}
        ]}),
    );
    let (code, report) = test_json(&home, &[dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(case(&report, "times out")["verdict"], "passed");
    let hangs = case(&report, "hangs");
    assert_eq!(hangs["verdict"], "failed");
    let text = hangs["differences"].to_string();
    assert!(text.contains("longer than its timeout (300ms)"), "{text}");
    assert!(text.contains("expected succeeded, got cancelled"), "{text}");
}

#[test]
fn the_templates_pass_their_tests() {
    let home = TestHome::new();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let (code, report) = test_json(&home, &[templates.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}");
    // Every template has a test file.
    for entry in std::fs::read_dir(&templates).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".json")
            && !stem.ends_with(".test")
        {
            assert!(
                templates.join(format!("{stem}.test.json")).is_file(),
                "template {name} has no test file"
            );
        }
    }
}

#[test]
fn run_with_pins_and_a_simulated_webhook() {
    let home = TestHome::new();
    let server = server();
    let dir = suite(&home, &server, json!([{"name": "x"}]));
    let pin = home.tmp().join("fetch.json");
    write(&pin, &order_body(&[200]));
    let record = crate::helper::json_of(
        home.cmd()
            .args(["run", "--no-history", "--pin"])
            .arg(format!("fetch={}", pin.display()))
            .arg(dir.join("orders.json"))
            .arg("--json"),
    );
    assert_eq!(record["output"], json!({"total": 200, "n": 1}));
    assert!(server.requests().is_empty());

    refused(
        home.cmd()
            .args(["run", "--no-history", "--pin"])
            .arg("fecth=x.json")
            .arg(dir.join("orders.json")),
        "has no node \"fecth\"",
    );

    hook_and_schedule(&dir);
    let body = home.tmp().join("body.json");
    write(&body, &json!({"id": 9}));
    let answer = crate::helper::json_of(
        home.cmd()
            .args(["run", "--no-history", "--trigger", "webhook", "--body"])
            .arg(&body)
            .args(["--header", "x-source=cli", "--query", "page=3"])
            .arg(dir.join("hook.json")),
    );
    assert_eq!(answer["status"], 201);
    assert_eq!(answer["body"]["got"], 9);
    assert_eq!(answer["body"]["via"], "cli");
    assert_eq!(answer["body"]["page"], "3");

    let output = crate::helper::json_of(
        home.cmd()
            .args(["run", "--no-history", "--trigger", "schedule"])
            .args(["--at", "2026-01-02T03:00:00Z"])
            .arg(dir.join("nightly.json")),
    );
    assert_eq!(output["fired"], "2026-01-02T03:00:00Z");

    refused(
        home.cmd()
            .args(["run", "--no-history", "--trigger", "webhook"])
            .arg(dir.join("nightly.json")),
        "nightly has no webhook trigger node",
    );
}

#[test]
fn a_recorded_run_becomes_a_case_that_passes_offline() {
    let home = TestHome::initialized();
    // The API fails once, then answers: the recorded run has two attempts.
    let server = TestServer::start(|_, n| {
        if n == 0 {
            Reply::json(503, json!({"error": "busy"}))
        } else {
            Reply::json(200, json!({"items": [{"price": 80}, {"price": 40}]}))
        }
    });
    let dir = home.tmp().join("flows");
    std::fs::create_dir_all(&dir).unwrap();
    let mut wf = orders(&server.url(""));
    wf["nodes"][1]["retry"] = json!({"attempts": 3, "initial": "10ms"});
    write(&dir.join("orders.json"), &wf);
    let out = home
        .cmd()
        .arg("run")
        .arg(dir.join("orders.json"))
        .args(["--input", "id=3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.requests().len(), 2);

    let file = dir.join("orders.test.json");
    let out = home
        .cmd()
        .args(["runs", "pin", "last", "--into"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pinned: fetch"), "{stdout}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let case0 = &written["cases"][0];
    assert_eq!(case0["input"], json!({"id": 3}));
    assert_eq!(
        case0["pins"]["fetch"]["sequence"].as_array().unwrap().len(),
        2
    );
    assert_eq!(case0["expect"]["nodes"]["fetch"]["attempts"], 2);
    assert!(case0["pins"].get("total").is_none(), "pure nodes run again");

    // A second pin of the same run is added beside the first, named apart.
    home.cmd()
        .args(["runs", "pin", "last", "--all", "--into"])
        .arg(&file)
        .assert()
        .success();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["cases"].as_array().unwrap().len(), 2);
    assert!(written["cases"][1]["pins"].get("total").is_some());
    assert_ne!(written["cases"][0]["name"], written["cases"][1]["name"]);

    drop(server);
    let (code, report) = test_json(&home, &[file.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["passed"], 2);

    // A file that is not a test file is refused, and so is a bad name.
    refused(
        home.cmd()
            .args(["runs", "pin", "last", "--into"])
            .arg(dir.join("orders.json")),
        "is not a test file",
    );
    refused(
        home.cmd()
            .args(["runs", "pin", "last", "--into"])
            .arg(dir.join("cases.json")),
        "is not named NAME.test.json",
    );
}

#[test]
fn the_test_file_schema_accepts_the_templates_tests_and_refuses_typos() {
    let home = TestHome::new();
    let schema = crate::helper::stdout_of(home.cmd().args(["schema", "test"]));
    let schema_file = home.tmp().join("test-schema.json");
    std::fs::write(&schema_file, &schema).unwrap();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut checked = 0;
    for entry in std::fs::read_dir(&templates).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".test.json") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                crate::trust::schema_errors(&schema_file, &text),
                0,
                "{}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
    for typo in [
        json!({"cases": [{"name": "a", "pins": {"x": {"outptu": 1}}}]}),
        json!({"cases": [{"name": "a", "expect": {"output": {"equal": 1}}}]}),
        json!({"case": []}),
    ] {
        assert!(
            crate::trust::schema_errors(&schema_file, &typo.to_string()) > 0,
            "{typo}"
        );
    }
}
