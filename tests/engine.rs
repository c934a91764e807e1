//! Each execution rule of DESIGN §4, through the engine API with real nodes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuse::engine::{Event, Observer, Status};
use fuse::nodes::Registry;
use fuse::{Engine, RunRecord, RunRequest};
use serde_json::{Value, json};

/// Collects every event in the order the engine emitted them.
#[derive(Default)]
pub struct Events(pub Mutex<Vec<Event>>);

impl Observer for Events {
    fn on_event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Events {
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// (node id, "start" | "end") in order, top-level run only.
    pub fn timeline(&self) -> Vec<(String, &'static str)> {
        let events = self.all();
        let top = events.iter().find_map(|e| match e {
            Event::RunStarted {
                run_id,
                parent_id: None,
                ..
            } => Some(run_id.clone()),
            _ => None,
        });
        events
            .iter()
            .filter_map(|e| match e {
                Event::NodeStarted {
                    run_id, node_id, ..
                } if Some(&**run_id) == top.as_deref() => Some((node_id.to_string(), "start")),
                Event::NodeFinished {
                    run_id,
                    node_id,
                    status,
                    ..
                } if Some(run_id) == top.as_ref()
                    && *status != Status::Skipped
                    && *status != Status::Cancelled =>
                {
                    Some((node_id.clone(), "end"))
                }
                _ => None,
            })
            .collect()
    }

    /// Most nodes (or foreach items) running at once.
    pub fn max_concurrency(&self, only: Option<&str>) -> usize {
        let mut running = 0usize;
        let mut max = 0;
        for e in self.all() {
            match e {
                Event::NodeStarted { node_id, .. } if only.is_none_or(|o| o == &*node_id) => {
                    running += 1;
                    max = max.max(running);
                }
                Event::NodeAttempt(a) if only.is_none_or(|o| o == &*a.node_id) => {
                    running = running.saturating_sub(1)
                }
                _ => {}
            }
        }
        max
    }
}

pub fn engine(events: Arc<Events>, max_parallel: usize) -> Engine {
    Engine::new(Registry::builtin(), events, max_parallel)
}

pub fn run_with(
    wf: Value,
    input: Value,
    dir: Option<&std::path::Path>,
) -> (RunRecord, Arc<Events>) {
    let events = Arc::new(Events::default());
    let engine = engine(events.clone(), 16);
    let text = wf.to_string();
    let path = dir.map(|d| d.join("wf.json"));
    if let Some(p) = &path {
        std::fs::write(p, &text).unwrap();
    }
    let plan = engine
        .load_str(&text, path.as_deref())
        .unwrap_or_else(|e| panic!("invalid: {e}"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let record = rt.block_on(engine.run(Arc::new(plan), RunRequest::new(input, "test")));
    (record, events)
}

pub fn run(wf: Value) -> (RunRecord, Arc<Events>) {
    run_with(wf, json!({}), None)
}

fn status(r: &RunRecord, node: &str) -> Status {
    r.nodes[node].status
}

fn chain(nodes: Value) -> Value {
    let list = nodes.as_array().unwrap();
    let edges: Vec<Value> = list
        .windows(2)
        .map(|w| json!({"source": w[0]["id"], "target": w[1]["id"]}))
        .collect();
    json!({"nodes": nodes, "edges": edges})
}

#[test]
fn a_node_runs_after_all_its_upstream_nodes() {
    let (r, ev) = run(json!({
        "nodes": [
            {"id": "a", "type": "flow.wait", "data": {"inputs": {"duration": "50ms"}}},
            {"id": "b", "type": "flow.noop"},
            {"id": "c", "type": "flow.noop"}
        ],
        "edges": [{"source": "a", "target": "c"}, {"source": "b", "target": "c"}]
    }));
    assert_eq!(r.status, Status::Succeeded);
    let t = ev.timeline();
    let pos = |n: &str, k: &str| t.iter().position(|(a, b)| a == n && *b == k).unwrap();
    assert!(pos("c", "start") > pos("a", "end"));
    assert!(pos("c", "start") > pos("b", "end"));
    // Several upstream nodes: the input is keyed by upstream id.
    assert_eq!(
        r.nodes["c"].output.as_deref(),
        Some(&json!({"a": {}, "b": {}}))
    );
}

#[test]
fn dead_branches_are_skipped_and_skips_propagate() {
    let (r, _) = run_with(
        json!({
            "nodes": [
                {"id": "start", "type": "trigger.manual"},
                {"id": "check", "type": "flow.if", "data": {"inputs": {"condition": "{{ trigger.n > 5 }}"}}},
                {"id": "big", "type": "flow.noop"},
                {"id": "big2", "type": "flow.noop"},
                {"id": "small", "type": "transform.set", "data": {"inputs": {"values": {"size": "small"}}}},
                {"id": "join", "type": "flow.noop"}
            ],
            "edges": [
                {"source": "start", "target": "check"},
                {"source": "check", "sourceHandle": "true", "target": "big"},
                {"source": "big", "target": "big2"},
                {"source": "check", "sourceHandle": "false", "target": "small"},
                {"source": "big2", "target": "join"},
                {"source": "small", "target": "join"}
            ]
        }),
        json!({"n": 1}),
        None,
    );
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(status(&r, "big"), Status::Skipped);
    assert_eq!(status(&r, "big2"), Status::Skipped, "skip propagates");
    assert_eq!(status(&r, "small"), Status::Succeeded);
    // join has one live input: it receives that value, not an object.
    assert_eq!(
        r.nodes["join"].output.as_deref(),
        Some(&json!({"size": "small"}))
    );
}

#[test]
fn a_node_whose_inputs_are_all_dead_is_skipped() {
    let (r, _) = run(json!({
        "nodes": [
            {"id": "c", "type": "flow.if", "data": {"inputs": {"condition": false}}},
            {"id": "x", "type": "flow.noop"},
            {"id": "y", "type": "flow.noop"},
            {"id": "both", "type": "flow.noop"}
        ],
        "edges": [
            {"source": "c", "sourceHandle": "true", "target": "x"},
            {"source": "c", "sourceHandle": "true", "target": "y"},
            {"source": "x", "target": "both"},
            {"source": "y", "target": "both"}
        ]
    }));
    assert_eq!(status(&r, "both"), Status::Skipped);
    assert_eq!(r.status, Status::Succeeded);
}

#[test]
fn concurrency_is_bounded_by_max_parallel() {
    let nodes: Vec<Value> = (0..8)
        .map(|i| json!({"id": format!("w{i}"), "type": "flow.wait", "data": {"inputs": {"duration": "30ms"}}}))
        .collect();
    let (r, ev) = run(json!({"settings": {"max_parallel": 3}, "nodes": nodes}));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        ev.max_concurrency(None),
        3,
        "independent nodes run concurrently, at most 3"
    );
    // Eight sinks: the result is keyed by sink id.
    assert_eq!(r.output.as_object().unwrap().len(), 8);
}

#[test]
fn switch_activates_only_the_chosen_handle() {
    let wf = |v: &str| {
        json!({
            "nodes": [
                {"id": "s", "type": "flow.switch", "data": {"inputs": {"value": v, "cases": ["red", "green"]}}},
                {"id": "red", "type": "flow.noop"},
                {"id": "green", "type": "flow.noop"},
                {"id": "other", "type": "flow.noop"}
            ],
            "edges": [
                {"source": "s", "sourceHandle": "red", "target": "red"},
                {"source": "s", "sourceHandle": "green", "target": "green"},
                {"source": "s", "sourceHandle": "default", "target": "other"}
            ]
        })
    };
    let (r, _) = run(wf("green"));
    assert_eq!(
        (status(&r, "red"), status(&r, "green"), status(&r, "other")),
        (Status::Skipped, Status::Succeeded, Status::Skipped)
    );
    let (r, _) = run(wf("blue"));
    assert_eq!(
        (status(&r, "red"), status(&r, "green"), status(&r, "other")),
        (Status::Skipped, Status::Skipped, Status::Succeeded)
    );
}

#[test]
fn merge_all_keys_by_upstream_or_target_handle_and_first_takes_the_first() {
    let (r, _) = run(json!({
        "nodes": [
            {"id": "fast", "type": "transform.set", "data": {"inputs": {"values": 1}}},
            {"id": "slow", "type": "flow.wait", "data": {"inputs": {"duration": "200ms"}}},
            {"id": "all", "type": "flow.merge"},
            {"id": "handles", "type": "flow.merge"},
            {"id": "first", "type": "flow.merge", "data": {"inputs": {"mode": "first"}}}
        ],
        "edges": [
            {"source": "fast", "target": "all"}, {"source": "slow", "target": "all"},
            {"source": "fast", "target": "handles", "targetHandle": "left"},
            {"source": "slow", "target": "handles", "targetHandle": "right"},
            {"source": "fast", "target": "first"}, {"source": "slow", "target": "first"}
        ]
    }));
    assert_eq!(
        r.nodes["all"].output.as_deref(),
        Some(&json!({"fast": 1, "slow": {}}))
    );
    assert_eq!(
        r.nodes["handles"].output.as_deref(),
        Some(&json!({"left": 1, "right": {}}))
    );
    assert_eq!(r.nodes["first"].output.as_deref(), Some(&json!(1)));
}

#[test]
fn foreach_runs_per_item_with_bounded_concurrency_in_order() {
    let (r, ev) = run(json!({
        "nodes": [
            {"id": "each", "type": "flow.wait", "foreach": "{{ [5, 4, 3, 2, 1, 0] }}", "concurrency": 2,
             "data": {"inputs": {"duration": "{{ item * 10 }}ms"}}},
            {"id": "sq", "type": "transform.set", "foreach": "{{ [1, 2, 3] }}",
             "data": {"inputs": {"values": {"i": "{{ index }}", "sq": "{{ item * item }}"}}}}
        ]
    }));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(ev.max_concurrency(Some("each")), 2);
    assert_eq!(
        r.nodes["each"]
            .output
            .as_ref()
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        r.nodes["sq"].output.as_deref(),
        Some(&json!([{"i": 0, "sq": 1}, {"i": 1, "sq": 4}, {"i": 2, "sq": 9}])),
        "results keep item order"
    );
}

#[test]
fn foreach_over_a_non_array_is_a_clear_error() {
    let (r, _) = run(json!({"nodes": [{"id": "e", "type": "flow.noop", "foreach": "{{ 5 }}"}]}));
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.error.as_deref().unwrap().contains("not an array"),
        "{:?}",
        r.error
    );
}

#[test]
fn retry_with_backoff_until_success() {
    let dir = tempfile::tempdir().unwrap();
    // Fails twice, then succeeds: a counter file on disk.
    let script = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ] && echo done || exit 7";
    let (r, ev) = run_with(
        json!({"nodes": [{"id": "flaky", "type": "exec.command",
            "retry": {"attempts": 5, "initial": "10ms", "max": "40ms", "on": {"exit_codes": [7]}},
            "data": {"inputs": {"argv": ["sh", "-c", script]}}}]}),
        json!({}),
        Some(dir.path()),
    );
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(r.nodes["flaky"].attempts, 3);
    assert_eq!(r.output["stdout"], "done\n");
    let retries = ev
        .all()
        .iter()
        .filter(|e| matches!(e, Event::Log { message, .. } if message.contains("retrying in")))
        .count();
    assert_eq!(retries, 2);
}

#[test]
fn retry_on_limits_what_is_retried() {
    let (r, _) = run(json!({"nodes": [{"id": "x", "type": "exec.command",
        "retry": {"attempts": 4, "initial": "1ms", "on": {"exit_codes": [7]}},
        "data": {"inputs": {"argv": ["sh", "-c", "exit 4"]}}}]}));
    assert_eq!(r.status, Status::Failed);
    assert_eq!(
        r.nodes["x"].attempts, 1,
        "exit 4 is not in retry.on.exit_codes"
    );
    assert_eq!(r.nodes["x"].error.as_ref().unwrap()["exit_code"], 4);
}

#[test]
fn timeout_fails_an_attempt_and_is_retryable() {
    let (r, _) = run(
        json!({"nodes": [{"id": "slow", "type": "flow.wait", "timeout": "50ms",
        "retry": {"attempts": 2, "initial": "1ms", "on": {"kinds": ["timeout"]}},
        "data": {"inputs": {"duration": "10s"}}}]}),
    );
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.nodes["slow"].attempts, 2);
    assert_eq!(r.nodes["slow"].error.as_ref().unwrap()["kind"], "timeout");
    assert!(r.duration_ms < 5000);
}

#[test]
fn on_error_continue_keeps_the_run_going() {
    let (r, _) = run(json!({
        "nodes": [
            {"id": "bad", "type": "exec.command", "on_error": "continue", "data": {"inputs": {"argv": ["sh", "-c", "echo oops >&2; exit 3"]}}},
            {"id": "after", "type": "transform.set", "data": {"inputs": {"values": {"saw": "{{ input.error.message }}"}}}}
        ],
        "edges": [{"source": "bad", "target": "after"}]
    }));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(status(&r, "bad"), Status::Failed);
    assert!(
        r.output["saw"]
            .as_str()
            .unwrap()
            .contains("exited with code 3: oops"),
        "{}",
        r.output
    );
}

#[test]
fn error_edges_take_the_fallback_path() {
    let (r, _) = run(json!({
        "nodes": [
            {"id": "bad", "type": "file.read", "data": {"inputs": {"path": "/nonexistent/file"}}},
            {"id": "ok", "type": "flow.noop"},
            {"id": "fallback", "type": "transform.set", "data": {"inputs": {"values": {"kind": "{{ input.error.kind }}"}}}}
        ],
        "edges": [{"source": "bad", "target": "ok"}, {"source": "bad", "sourceHandle": "error", "target": "fallback"}]
    }));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(status(&r, "ok"), Status::Skipped);
    assert_eq!(
        r.nodes["fallback"].output.as_deref(),
        Some(&json!({"kind": "io"}))
    );
}

#[test]
fn an_unhandled_failure_fails_the_run_and_stops_the_rest() {
    let (r, _) = run(json!({
        "nodes": [
            {"id": "bad", "type": "exec.command", "data": {"inputs": {"argv": ["false"]}}},
            {"id": "slow", "type": "flow.wait", "data": {"inputs": {"duration": "10s"}}},
            {"id": "next", "type": "flow.noop"}
        ],
        "edges": [{"source": "bad", "target": "next"}]
    }));
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.error.as_deref().unwrap().contains("\"bad\""),
        "{:?}",
        r.error
    );
    assert_eq!(status(&r, "slow"), Status::Cancelled);
    assert!(r.duration_ms < 5000);
}

#[test]
fn workflow_timeout_fails_the_run() {
    let (r, _) = run(json!({"settings": {"timeout": "100ms"},
        "nodes": [{"id": "w", "type": "flow.wait", "data": {"inputs": {"duration": "10s"}}}]}));
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.error.as_deref().unwrap().contains("timed out after"),
        "{:?}",
        r.error
    );
    assert_eq!(status(&r, "w"), Status::Cancelled);
}

#[test]
fn cancellation_kills_child_processes_and_records_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let events = Arc::new(Events::default());
    let engine = engine(events, 4);
    let wf = json!({"nodes": [{"id": "sleep", "type": "exec.command",
        "data": {"inputs": {"argv": ["sh", "-c", format!("sleep 30 & echo $! > {}; wait", pidfile.display())]}}}]});
    let plan = engine.load_str(wf.to_string(), None).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let request = RunRequest::new(json!({}), "test");
    let cancel = request.cancel.clone();
    let record = rt.block_on(async {
        let run = tokio::spawn({
            let engine = engine.clone();
            async move { engine.run(Arc::new(plan), request).await }
        });
        for _ in 0..200 {
            if pidfile.exists() && !std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        run.await.unwrap()
    });
    assert_eq!(record.status, Status::Cancelled);
    assert_eq!(record.nodes["sleep"].status, Status::Cancelled);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The grandchild `sleep` is in the command's process group: it must be gone.
    let mut gone = false;
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone, "process {pid} survived cancellation");
}

#[test]
fn expressions_keep_types_and_see_the_whole_context() {
    let (r, _) = run_with(
        json!({
            "settings": {"vars": {"greeting": "hi"}},
            "nodes": [
                {"id": "t", "type": "trigger.manual"},
                {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"n": "{{ trigger.n + 1 }}", "list": "{{ [1, 2] }}"}}}},
                {"id": "b", "type": "transform.set", "data": {"inputs": {"values": {
                    "n": "{{ nodes.a.output.n }}", "text": "{{ vars.greeting }} #{{ input.n }}",
                    "run": "{{ run.workflow }}", "home": "{{ env.HOME is defined }}", "typed": "{{ nodes.a.output.list }}"
                }}}}
            ],
            "edges": [{"source": "t", "target": "a"}, {"source": "a", "target": "b"}]
        }),
        json!({"n": 41}),
        None,
    );
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(
        *r.output,
        json!({"n": 42, "text": "hi #42", "run": "workflow", "home": true, "typed": [1, 2]})
    );
}

#[test]
fn foreach_items_render_nested_inputs_and_missing_fields_fail_clearly() {
    // Plain paths (item, index, input, nodes.X.output) are read straight from the
    // JSON; the others go through minijinja. Both must agree, at any depth.
    let wf = || {
        json!({"nodes": [
            {"id": "t", "type": "trigger.manual"},
            {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"n": 7, "deep": {"k": [1]}}}}},
            {"id": "each", "type": "transform.set", "foreach": "{{ trigger.items }}", "concurrency": 2,
             "data": {"inputs": {"values": {
                "name": "{{ item.name }}", "pos": "{{ index }}", "n": "{{ nodes.a.output.n }}",
                "deep": "{{ nodes.a.output.deep.k }}", "from": "{{ input.n }}", "loud": "{{ item.name | upper }}",
                "list": ["static", "{{ item.name }}-{{ index }}", {"nested": "{{ item.tags }}"}]
             }}}}
        ], "edges": [{"source": "t", "target": "a"}, {"source": "a", "target": "each"}]})
    };
    let (r, _) = run_with(
        wf(),
        json!({"items": [{"name": "x", "tags": ["p"]}, {"name": "y", "tags": []}]}),
        None,
    );
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(
        *r.output,
        json!([
            {"name": "x", "pos": 0, "n": 7, "deep": [1], "from": 7, "loud": "X", "list": ["static", "x-0", {"nested": ["p"]}]},
            {"name": "y", "pos": 1, "n": 7, "deep": [1], "from": 7, "loud": "Y", "list": ["static", "y-1", {"nested": []}]}
        ])
    );

    // The second item lacks `tags`: the node fails naming the item, the input
    // and the expression, and says why.
    let (r, _) = run_with(
        wf(),
        json!({"items": [{"name": "x", "tags": []}, {"name": "y"}]}),
        None,
    );
    assert_eq!(r.status, Status::Failed);
    let err = r.nodes["each"].error.clone().unwrap().to_string();
    assert!(
        err.contains("item 1")
            && err.contains("item.tags")
            && err.contains("`item` has no field `tags` (it has: name)"),
        "{err}"
    );
}

#[test]
fn a_failing_expression_names_the_node_and_expression() {
    let (r, _) = run(json!({"nodes": [{"id": "t", "type": "trigger.manual"},
        {"id": "x", "type": "transform.set", "data": {"inputs": {"values": {"v": "{{ trigger.missing.deeper }}"}}}}],
        "edges": [{"source": "t", "target": "x"}]}));
    assert_eq!(r.status, Status::Failed);
    let err = r.error.unwrap();
    assert!(
        err.contains("\"x\"") && err.contains("trigger.missing.deeper"),
        "{err}"
    );
}

#[test]
fn files_are_written_and_read_relative_to_the_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = run_with(
        json!({"nodes": [
            {"id": "w", "type": "file.write", "data": {"inputs": {"path": "out/data.json", "content": {"a": [1, 2]}}}},
            {"id": "r", "type": "file.read", "data": {"inputs": {"path": "out/data.json", "format": "json"}}},
            {"id": "l", "type": "file.read", "data": {"inputs": {"path": "out/data.json", "format": "lines"}}}
        ], "edges": [{"source": "w", "target": "r"}, {"source": "w", "target": "l"}]}),
        json!({}),
        Some(dir.path()),
    );
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(r.nodes["r"].output.as_deref(), Some(&json!({"a": [1, 2]})));
    assert!(dir.path().join("out/data.json").is_file());
    assert!(
        r.nodes["l"]
            .output
            .as_ref()
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            > 1
    );
}

#[test]
fn workflow_call_runs_a_sub_workflow_and_stops_runaway_recursion() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("child.json"),
        json!({"nodes": [{"id": "t", "type": "trigger.manual"},
            {"id": "double", "type": "transform.set", "data": {"inputs": {"values": {"x": "{{ trigger.x * 2 }}"}}}}],
            "edges": [{"source": "t", "target": "double"}]})
        .to_string(),
    )
    .unwrap();
    let (r, ev) = run_with(
        json!({"nodes": [{"id": "call", "type": "workflow.call", "data": {"inputs": {"workflow": "child.json", "input": {"x": 21}}}}]}),
        json!({}),
        Some(dir.path()),
    );
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(*r.output, json!({"x": 42}));
    let children = ev
        .all()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::RunStarted {
                    parent_id: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(children, 1);

    std::fs::write(
        dir.path().join("self.json"),
        json!({"nodes": [{"id": "again", "type": "workflow.call", "data": {"inputs": {"workflow": "self.json"}}}]}).to_string(),
    )
    .unwrap();
    let (r, _) = run_with(
        json!({"nodes": [{"id": "call", "type": "workflow.call", "data": {"inputs": {"workflow": "self.json"}}}]}),
        json!({}),
        Some(dir.path()),
    );
    assert_eq!(r.status, Status::Failed);
    assert!(r.error.unwrap().contains("nested more than"));
}

#[test]
fn the_result_is_the_end_node_else_the_single_sink() {
    let (r, _) = run(chain(json!([
        {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"v": 1}}}},
        {"id": "z", "type": "end", "data": {"inputs": {"value": "{{ input.v + 1 }}"}}}
    ])));
    assert_eq!(*r.output, json!(2));
    let (r, _) = run(chain(json!([
        {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"v": 1}}}},
        {"id": "b", "type": "transform.jq", "data": {"inputs": {"filter": ".v * 10"}}}
    ])));
    assert_eq!(*r.output, json!(10));
}

#[test]
fn a_long_chain_runs_without_deep_recursion() {
    let nodes: Vec<Value> = (0..2000)
        .map(|i| json!({"id": format!("n{i}"), "type": "transform.set", "data": {"inputs": {"values": {"i": i}}}}))
        .collect();
    let (r, _) = run(chain(Value::Array(nodes)));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(*r.output, json!({"i": 1999}));
}

/// A run that does not keep every output (`fuse run` without `--json`) lets
/// each output go once no edge or expression needs it: its result, the
/// outputs expressions read (by name, by subscript, or through `nodes` as a
/// whole), and values waiting on edges are all still there.
#[test]
fn a_run_that_keeps_only_its_result_still_gives_expressions_and_edges_their_values() {
    let wf = json!({
        "nodes": [
            {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"x": 1}}}},
            {"id": "b", "type": "transform.set", "data": {"inputs": {"values": {"y": "{{ nodes.a.output.x + 1 }}"}}}},
            {"id": "c", "type": "transform.set", "data": {"inputs": {"values": {"z": "{{ nodes[\"b\"].output.y + 1 }}"}}}},
            {"id": "d", "type": "transform.set", "data": {"inputs": {"values": {"w": "{{ input.z + 1 }}"}}}},
            {"id": "e", "type": "flow.merge"},
            {"id": "f", "type": "transform.set", "data": {"inputs": {"values": {"again": "{{ nodes[input.which.which].output }}"}}}},
            {"id": "g", "type": "transform.set", "data": {"inputs": {"values": {"which": "d"}}}}
        ],
        "edges": [
            {"source": "a", "target": "b"}, {"source": "b", "target": "c"},
            {"source": "c", "target": "d"}, {"source": "a", "target": "e"},
            {"source": "d", "target": "e"}, {"source": "g", "target": "e", "targetHandle": "which"},
            {"source": "e", "target": "f"}
        ]
    });
    let events = Arc::new(Events::default());
    let engine = engine(events, 1);
    let plan = Arc::new(engine.load_str(wf.to_string(), None).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut records = Vec::new();
    for keep in [true, false] {
        let mut request = RunRequest::new(json!({}), "test");
        request.keep_outputs = keep;
        let record = rt.block_on(engine.run(plan.clone(), request));
        assert_eq!(record.status, Status::Succeeded, "{:?}", record.error);
        records.push(record);
    }
    // `d` is read only through `nodes[…]` with a name known at run time.
    let expected = json!({"again": {"w": 4}});
    for record in &records {
        assert_eq!(*record.output, expected);
        assert!(record.nodes.values().all(|n| n.status == Status::Succeeded));
    }
    // Kept: every node and its output. Not kept: only the result's node
    // (history has every node).
    let (kept, lean) = (&records[0], &records[1]);
    assert_eq!(kept.nodes.len(), 7);
    assert_eq!(lean.nodes.keys().collect::<Vec<_>>(), ["f"]);
    assert_eq!(
        kept.nodes["e"].output.as_deref(),
        Some(&json!({"a": {"x": 1}, "d": {"w": 4}, "which": {"which": "d"}}))
    );
    assert_eq!(kept.nodes["a"].output.as_deref(), Some(&json!({"x": 1})));
    assert_eq!(lean.nodes["f"].output.as_deref(), Some(&expected));
}

#[test]
fn a_file_with_its_edges_before_its_nodes_is_checked_and_runs_the_same() {
    let events = Arc::new(Events::default());
    let engine = engine(events, 4);
    // Nodes and edges are checked as they are read; edges read first wait
    // for the nodes.
    let text = r#"{"edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c", "targetHandle": "left"}],
        "name": "edges-first",
        "nodes": [
            {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"x": 1}}}},
            {"id": "b", "type": "transform.set", "data": {"inputs": {"values": {"y": "{{ input.x + 1 }}"}}}},
            {"id": "c", "type": "transform.set", "data": {"inputs": {"values": {"z": "{{ input.left.y + nodes.a.output.x }}"}}}}
        ]}"#;
    let plan = engine.load_str(text, None).unwrap();
    assert_eq!(plan.incoming(1).iter().collect::<Vec<_>>(), [0]);
    assert_eq!(plan.outgoing(1).iter().collect::<Vec<_>>(), [1]);
    assert_eq!(plan.edges.target_handle(1), Some("left"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let record = rt.block_on(engine.run(Arc::new(plan), RunRequest::new(json!({}), "test")));
    assert_eq!(record.status, Status::Succeeded, "{:?}", record.error);
    assert_eq!(*record.output, json!({"z": 3}));

    // The same problems, in the same order, wherever the edges are.
    let problems = |text: &str| match engine.load_str(text, None) {
        Err(fuse::engine::LoadError::Invalid { problems, .. }) => problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect::<Vec<_>>(),
        other => panic!("not invalid: {:?}", other.map(|p| p.name)),
    };
    let nodes = r#"[{"id": "a", "type": "transform.sett"}, {"id": "b", "type": "log", "data": {"inputs": {"message": "{{ nodes.c.output }}"}}}, {"id": "a", "type": "log"}]"#;
    let edges = r#"[{"source": "a", "target": "b"}, {"source": "b", "target": "zz"}, {"source": "b", "target": "a"}]"#;
    let first = problems(&format!(r#"{{"nodes": {nodes}, "edges": {edges}}}"#));
    let last = problems(&format!(r#"{{"edges": {edges}, "nodes": {nodes}}}"#));
    assert_eq!(first, last);
    assert_eq!(
        first
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect::<Vec<_>>(),
        [
            "nodes[2].id",
            "nodes[0].type",
            "edges[1].target",
            "edges",
            "nodes[1].data.inputs.message",
            "nodes[2].data.inputs.message"
        ],
        "{first:#?}"
    );
}

/// An observer that keeps a node's attempt (history does) gets the output
/// the engine passes on, not a copy: the next node's input is the same value.
#[test]
fn a_kept_output_is_the_next_nodes_input_not_a_copy() {
    let (r, ev) = run(chain(json!([
        {"id": "a", "type": "transform.set", "data": {"inputs": {"values": {"x": 1}}}},
        {"id": "b", "type": "transform.set", "data": {"inputs": {"values": {"y": 2}}}},
        {"id": "c", "type": "flow.noop"}
    ])));
    assert_eq!(r.status, Status::Succeeded);
    let attempts: std::collections::HashMap<String, _> = ev
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::NodeAttempt(a) => Some((a.node_id.to_string(), a)),
            _ => None,
        })
        .collect();
    for (from, to) in [("a", "b"), ("b", "c")] {
        let output = attempts[from].output.as_ref().expect("an output");
        assert!(
            Arc::ptr_eq(output, &attempts[to].input),
            "{to}'s input is {from}'s output, shared"
        );
    }
    assert_eq!(*attempts["c"].input, json!({"y": 2}));
    assert_eq!(r.nodes["c"].output.as_deref(), Some(&json!({"y": 2})));
}
