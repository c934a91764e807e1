//! Issue 16: llm.agent, the Anthropic provider and conversation memory,
//! through the real binary against scripted model servers on 127.0.0.1.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helper::TestHome;
use crate::helper::http::{Reply, TestServer};

/// An OpenAI chat completion that calls tools: (id, name, arguments).
fn calls(list: &[(&str, &str, Value)]) -> Value {
    let tool_calls: Vec<Value> = list
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
        .collect();
    json!({"id": "x", "model": "agent-model", "choices": [{"index": 0, "finish_reason": "tool_calls",
           "message": {"role": "assistant", "content": null, "tool_calls": tool_calls}}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
}

/// An OpenAI chat completion that answers.
fn answer(text: &str) -> Value {
    json!({"id": "x", "model": "agent-model", "choices": [{"index": 0, "finish_reason": "stop",
           "message": {"role": "assistant", "content": text}}],
           "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}})
}

/// A model server giving `script[n]` to its n-th request (the last one after that).
fn scripted(script: Vec<Value>) -> TestServer {
    TestServer::start(move |_, n| Reply::json(200, script[n.min(script.len() - 1)].clone()))
}

/// The messages of the n-th request a model server received.
fn sent(server: &TestServer, n: usize) -> Vec<Value> {
    server.requests()[n].json()["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn agent(server: &TestServer, inputs: Value) -> Value {
    let mut inputs = inputs;
    inputs["base_url"] = json!(server.url("/v1"));
    inputs["model"] = json!("agent-model");
    json!({"name": "agent", "nodes": [{"id": "agent", "type": "llm.agent", "data": {"inputs": inputs}}]})
}

fn run_json(home: &TestHome, file: &std::path::Path) -> (bool, Value) {
    let out = home
        .cmd()
        .arg("run")
        .arg(file)
        .arg("--json")
        .output()
        .unwrap();
    let record: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), record)
}

fn last_run(home: &TestHome) -> Value {
    let out = crate::helper::stdout_of(home.cmd().args(["runs", "show", "last", "--json"]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn an_agent_calls_a_node_and_a_workflow_and_its_trace_is_recorded() {
    let home = TestHome::initialized();
    let data = TestServer::start(|_, _| Reply::json(200, json!({"temperature": 21})));
    let double = home.write(
        "double.json",
        &json!({"name": "double", "description": "doubles a number",
                "params": [{"name": "n", "type": "integer", "required": true, "description": "the number"}],
                "nodes": [{"id": "d", "type": "transform.set",
                           "data": {"inputs": {"values": {"doubled": "{{ trigger.n * 2 }}"}}}}]}),
    );
    let model = scripted(vec![
        calls(&[("c1", "fetch", json!({"url": data.url("/weather")}))]),
        calls(&[("c2", "double", json!({"n": 21}))]),
        answer("It is 21 degrees; doubled that is 42."),
    ]);
    let wf = home.write(
        "agent.json",
        &agent(
            &model,
            json!({"prompt": "What is the temperature, doubled?", "system": "Use the tools.",
                   "tools": [{"node": "http.request", "name": "fetch", "description": "GET a URL",
                              "inputs": {"method": "GET"}},
                             {"workflow": double.file_name().unwrap().to_str().unwrap()}]}),
        ),
    );
    let (ok, record) = run_json(&home, &wf);
    assert!(ok, "{record}");
    let out = &record["nodes"]["agent"]["output"];
    assert_eq!(out["text"], "It is 21 degrees; doubled that is 42.");
    assert_eq!(out["turns"], 3);
    assert_eq!(out["tool_calls"], 2);
    assert_eq!(out["usage"]["total_tokens"], 15 + 15 + 27);

    // The first request offers both tools with the JSON Schema of their arguments.
    let first = model.requests()[0].json();
    let tools = first["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["function"]["name"], "fetch");
    assert_eq!(tools[0]["function"]["description"], "GET a URL");
    let fetch_props = &tools[0]["function"]["parameters"]["properties"];
    assert!(fetch_props.get("url").is_some(), "{fetch_props}");
    assert!(
        fetch_props.get("method").is_none(),
        "a fixed input is not offered: {fetch_props}"
    );
    assert_eq!(tools[1]["function"]["name"], "double");
    assert_eq!(tools[1]["function"]["description"], "doubles a number");
    assert_eq!(
        tools[1]["function"]["parameters"]["properties"]["n"]["type"],
        "integer"
    );
    assert_eq!(tools[1]["function"]["parameters"]["required"], json!(["n"]));
    assert_eq!(first["messages"][0]["role"], "system");

    // The tool results go back as tool messages.
    let second = sent(&model, 1);
    let result = second.last().unwrap();
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_call_id"], "c1");
    assert!(
        result["content"]
            .as_str()
            .unwrap()
            .contains("\"temperature\":21"),
        "{result}"
    );
    let third = sent(&model, 2);
    let result = third.last().unwrap();
    assert_eq!(result["tool_call_id"], "c2");
    assert!(
        result["content"].as_str().unwrap().contains("42"),
        "{result}"
    );
    assert_eq!(data.requests()[0].path, "/weather");

    // History has every model turn and tool call as a step of the node.
    let run = last_run(&home);
    let steps = run["steps"].as_array().unwrap();
    let kinds: Vec<(String, String)> = steps
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("model".into(), "agent-model".into()),
            ("tool".into(), "fetch".into()),
            ("model".into(), "agent-model".into()),
            ("tool".into(), "double".into()),
            ("model".into(), "agent-model".into()),
        ]
    );
    assert_eq!(steps[0]["tokens"], 15);
    assert_eq!(steps[1]["input"]["url"], json!(data.url("/weather")));
    assert_eq!(steps[1]["output"]["body"]["temperature"], 21);
    assert!(steps.iter().all(|s| s["status"] == "succeeded"));
    // The workflow tool ran as a child run of the agent's run.
    let children = crate::helper::stdout_of(home.cmd().args(["runs", "list", "--json"]));
    let children: Value = serde_json::from_str(&children).unwrap();
    assert!(
        children
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["workflow"] == "double" && r["parent_id"] == run["id"]),
        "{children}"
    );
    // `fuse runs show` prints the steps.
    let shown = crate::helper::stdout_of(home.cmd().args(["runs", "show", "last"]));
    assert!(shown.contains("agent #2 tool fetch: succeeded"), "{shown}");
}

#[test]
fn tool_errors_and_unknown_tools_go_back_to_the_model_as_observations() {
    let home = TestHome::initialized();
    let model = scripted(vec![
        calls(&[
            ("c1", "nope", json!({})),
            ("c2", "upper", json!({"txt": "hi"})),
            ("c3", "upper", json!({"data": "hi", "all": "yes"})),
        ]),
        calls(&[("c4", "upper", json!({"data": "hi"}))]),
        answer("HI"),
    ]);
    let wf = home.write(
        "agent.json",
        &agent(
            &model,
            json!({"prompt": "shout hi", "parallel_tools": false,
                   "tools": [{"node": "transform.jq", "name": "upper", "inputs": {"filter": "ascii_upcase"}}]}),
        ),
    );
    let (ok, record) = run_json(&home, &wf);
    assert!(ok, "{record}");
    assert_eq!(record["nodes"]["agent"]["output"]["text"], "HI");
    let second = sent(&model, 1);
    let tool_msgs: Vec<&Value> = second.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_msgs.len(), 3);
    let text = |i: usize| tool_msgs[i]["content"].as_str().unwrap().to_string();
    assert!(
        text(0).contains("there is no tool \\\"nope\\\"") && text(0).contains("upper"),
        "{}",
        text(0)
    );
    assert!(
        text(1).contains("has no argument \\\"txt\\\""),
        "{}",
        text(1)
    );
    assert!(
        text(2).contains("the argument \\\"all\\\" of upper must be of type boolean"),
        "{}",
        text(2)
    );
    let steps = last_run(&home)["steps"].as_array().unwrap().clone();
    let failed = steps.iter().filter(|s| s["status"] == "failed").count();
    assert_eq!(failed, 3, "{steps:?}");
}

#[test]
fn an_agent_that_never_answers_stops_at_max_steps_with_a_clear_error() {
    let home = TestHome::initialized();
    let model = scripted(vec![calls(&[("c", "upper", json!({"data": "again"}))])]);
    let wf = home.write(
        "agent.json",
        &agent(
            &model,
            json!({"prompt": "loop", "max_steps": 3,
                   "tools": [{"node": "transform.jq", "name": "upper", "inputs": {"filter": "ascii_upcase"}}]}),
        ),
    );
    let out = home.cmd().arg("run").arg(&wf).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did not answer within max_steps (3 model turns"),
        "{stderr}"
    );
    assert_eq!(model.requests().len(), 3);
    let run = last_run(&home);
    assert_eq!(run["steps"].as_array().unwrap().len(), 6, "{run}");
}

#[test]
fn tool_calls_of_one_turn_run_in_parallel() {
    let home = TestHome::initialized();
    // Answers only when both calls are in: calls made one after the other
    // would wait out the deadline and fail.
    let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
    let server_gate = gate.clone();
    let tools = TestServer::start(move |_, _| {
        let (count, cv) = &*server_gate;
        let mut n = count.lock().unwrap();
        *n += 1;
        cv.notify_all();
        let deadline = Instant::now() + Duration::from_secs(20);
        while *n < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Reply::json(500, json!({"error": "only one call arrived"}));
            }
            n = cv.wait_timeout(n, left).unwrap().0;
        }
        Reply::json(200, json!({"ok": true}))
    });
    let model = scripted(vec![
        calls(&[
            ("a", "fetch", json!({"url": tools.url("/a")})),
            ("b", "fetch", json!({"url": tools.url("/b")})),
        ]),
        answer("both"),
    ]);
    let wf = home.write(
        "agent.json",
        &agent(
            &model,
            json!({"prompt": "fetch both",
                   "tools": [{"node": "http.request", "name": "fetch", "inputs": {"method": "GET", "timeout": "30s"}}]}),
        ),
    );
    let (ok, record) = run_json(&home, &wf);
    assert!(ok, "{record}");
    let second = sent(&model, 1);
    let results: Vec<&Value> = second.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(results.len(), 2);
    for r in results {
        assert!(
            r["content"].as_str().unwrap().contains("\"ok\":true"),
            "{r}"
        );
    }
}

#[test]
fn a_malformed_model_reply_is_a_clear_node_error() {
    let home = TestHome::initialized();
    let model = scripted(vec![json!({"choices": [{"message": {"role": "assistant",
        "tool_calls": [{"id": "x", "function": {"arguments": "{}"}}]}}]})]);
    let wf = home.write("agent.json", &agent(&model, json!({"prompt": "hi"})));
    let out = home.cmd().arg("run").arg(&wf).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not an OpenAI-style chat completion: tool_calls[0] has no function.name"),
        "{stderr}"
    );
}

/// A model server that answers with how many messages it received and the
/// last user message, so memory shows in the answers.
pub(crate) fn echo_model() -> TestServer {
    TestServer::start(|req, _| {
        let body = req.json();
        let msgs = body["messages"].as_array().cloned().unwrap_or_default();
        let last = msgs
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .map(|m| m["content"].as_str().unwrap_or("").to_string())
            .unwrap_or_default();
        Reply::json(
            200,
            answer(&format!("{} messages; you said {last}", msgs.len())),
        )
    })
}

#[test]
fn memory_carries_a_conversation_across_runs_of_one_session_only() {
    let home = TestHome::initialized();
    let model = echo_model();
    let wf = home.write(
        "chat.json",
        &json!({"name": "chat", "params": [{"name": "user", "type": "string"}, {"name": "message", "type": "string"}],
                "nodes": [{"id": "chat", "type": "llm.chat", "data": {"inputs": {
                    "base_url": model.url("/v1"), "model": "m", "system": "be kind",
                    "prompt": "{{ trigger.message }}",
                    "memory": {"session": "{{ trigger.user }}", "window": 4}}}}]}),
    );
    let say = |user: &str, message: &str| -> String {
        let out = crate::helper::stdout_of(home.cmd().arg("run").arg(&wf).args([
            "--input",
            &format!("user={user}"),
            "--input",
            &format!("message={message}"),
        ]));
        serde_json::from_str::<Value>(&out).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(say("alice", "one"), "2 messages; you said one");
    assert_eq!(say("alice", "two"), "4 messages; you said two");
    // Bob's session starts empty.
    assert_eq!(say("bob", "hello"), "2 messages; you said hello");
    // Alice's third call sees the window of 4: her last two exchanges.
    assert_eq!(say("alice", "three"), "6 messages; you said three");
    let third = sent(&model, 3);
    assert_eq!(third[0], json!({"role": "system", "content": "be kind"}));
    assert_eq!(third[1], json!({"role": "user", "content": "one"}));
    assert_eq!(third[2]["role"], "assistant");
    assert_eq!(
        third[4],
        json!({"role": "assistant", "content": "4 messages; you said two"})
    );
    // A fourth call: the window keeps only the newest 4 remembered messages.
    say("alice", "four");
    let fourth = sent(&model, 4);
    assert_eq!(fourth.len(), 6);
    assert_eq!(fourth[1], json!({"role": "user", "content": "two"}));

    // The CLI lists, shows and clears sessions.
    let list: Value = serde_json::from_str(&crate::helper::stdout_of(
        home.cmd().args(["memory", "list", "--json"]),
    ))
    .unwrap();
    let sessions: Vec<(&str, i64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["session"].as_str().unwrap(),
                s["messages"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(sessions, vec![("alice", 8), ("bob", 2)]);
    let shown = crate::helper::stdout_of(home.cmd().args(["memory", "show", "bob"]));
    assert!(shown.contains("user:\n  hello"), "{shown}");
    home.cmd()
        .args(["memory", "clear", "alice"])
        .assert()
        .success();
    home.cmd()
        .args(["memory", "show", "alice"])
        .assert()
        .failure()
        .stderr(predicates::str::contains("no memory session \"alice\""));
    assert_eq!(say("alice", "again"), "2 messages; you said again");
}

#[test]
fn memory_refuses_a_bad_session_clearly() {
    let home = TestHome::initialized();
    let model = echo_model();
    let wf = home.write(
        "chat.json",
        &json!({"nodes": [{"id": "chat", "type": "llm.chat", "data": {"inputs": {
            "base_url": model.url("/v1"), "model": "m", "prompt": "hi",
            "memory": {"sesion": "x"}}}}]}),
    );
    let out = home.cmd().arg("run").arg(&wf).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("memory has an unknown key \"sesion\""),
        "{stderr}"
    );
    assert!(model.requests().is_empty());
}

/// An Anthropic Messages API server: a tool_use first, then text; streams
/// when asked.
fn anthropic_server() -> TestServer {
    TestServer::start(|req, _| {
        let body = req.json();
        let last = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .cloned()
            .unwrap_or_default();
        let has_result = last["content"]
            .as_array()
            .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"));
        let wants_tools = body.get("tools").is_some() && !has_result;
        if body["stream"] == json!(true) {
            let events = [
                json!({"type": "message_start", "message": {"model": "claude-test", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "ping"}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello,\nstream"}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ed world"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
                json!({"type": "message_stop"}),
            ];
            let text: String = events
                .iter()
                .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
                .collect();
            return Reply::text(200, "text/event-stream", &text);
        }
        if wants_tools {
            return Reply::json(
                200,
                json!({"id": "msg", "type": "message", "role": "assistant", "model": "claude-test",
                "content": [{"type": "text", "text": "Let me look."},
                            {"type": "tool_use", "id": "toolu_1", "name": "upper", "input": {"data": "quiet"}}],
                "stop_reason": "tool_use", "usage": {"input_tokens": 30, "output_tokens": 10}}),
            );
        }
        let said = if has_result {
            last["content"][0]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        } else {
            "plain".into()
        };
        Reply::json(
            200,
            json!({"id": "msg", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": format!("answer: {said}")}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 40, "output_tokens": 5}}),
        )
    })
}

#[test]
fn llm_chat_speaks_the_anthropic_messages_api_with_a_stored_credential() {
    let home = TestHome::initialized();
    let server = anthropic_server();
    home.cmd()
        .args(["creds", "set", "claude", "--type", "anthropic", "--stdin"])
        .write_stdin(json!({"api_key": "sk-ant-secret", "base_url": server.url("/v1")}).to_string())
        .assert()
        .success();
    let wf = home.write(
        "chat.json",
        &json!({"nodes": [{"id": "chat", "type": "llm.chat", "data": {"inputs": {
            "provider": "anthropic", "credential": "claude", "model": "claude-test",
            "system": "be brief", "prompt": "hi", "max_tokens": 50}}}]}),
    );
    let out = crate::helper::stdout_of(home.cmd().arg("run").arg(&wf));
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["text"], "answer: plain");
    assert_eq!(result["usage"]["total_tokens"], 45);
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some("sk-ant-secret"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    let body = req.json();
    assert_eq!(body["system"], "be brief");
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
    // The key never reaches the history.
    let run = serde_json::to_string(&last_run(&home)).unwrap();
    assert!(!run.contains("sk-ant-secret"));
}

#[test]
fn anthropic_streaming_is_assembled_and_logged() {
    let home = TestHome::initialized();
    let server = anthropic_server();
    let wf = home.write(
        "chat.json",
        &json!({"nodes": [{"id": "chat", "type": "llm.chat", "data": {"inputs": {
            "provider": "anthropic", "base_url": server.url("/v1"), "api_key": "k",
            "model": "claude-test", "prompt": "hi", "stream": true}}}]}),
    );
    let out = crate::helper::stdout_of(home.cmd().arg("run").arg(&wf));
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["text"], "Hello,\nstreamed world");
    assert_eq!(result["usage"]["prompt_tokens"], 12);
    assert_eq!(result["usage"]["completion_tokens"], 9);
    assert_eq!(server.requests()[0].json()["stream"], true);
    let logs = crate::helper::stdout_of(home.cmd().args(["runs", "logs", "last"]));
    assert!(logs.contains("[chat] Hello,"), "{logs}");
    assert!(logs.contains("[chat] streamed world"), "{logs}");
}

#[test]
fn an_anthropic_agent_uses_tool_use_and_tool_result_blocks() {
    let home = TestHome::initialized();
    let server = anthropic_server();
    let wf = home.write(
        "agent.json",
        &json!({"nodes": [{"id": "agent", "type": "llm.agent", "data": {"inputs": {
            "provider": "anthropic", "base_url": server.url("/v1"), "api_key": "k",
            "model": "claude-test", "prompt": "shout quiet",
            "tools": [{"node": "transform.jq", "name": "upper", "inputs": {"filter": "ascii_upcase"}}]}}}]}),
    );
    let (ok, record) = run_json(&home, &wf);
    assert!(ok, "{record}");
    assert_eq!(record["nodes"]["agent"]["output"]["text"], "answer: QUIET");
    let second = server.requests()[1].json();
    let msgs = second["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(
        msgs[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "QUIET", "is_error": false})
    );
    assert_eq!(second["tools"][0]["name"], "upper");
    assert!(
        second["tools"][0]["input_schema"]["properties"]
            .get("data")
            .is_some()
    );
}

#[test]
fn the_daemon_runs_an_agent_and_serves_its_steps_and_memory() {
    let home = TestHome::initialized();
    let model = scripted(vec![
        calls(&[("c1", "upper", json!({"data": "hey"}))]),
        answer("HEY"),
    ]);
    let mut wf = agent(
        &model,
        json!({"prompt": "{{ trigger.message }}", "memory": {"session": "{{ trigger.user }}"},
               "tools": [{"node": "transform.jq", "name": "upper", "inputs": {"filter": "ascii_upcase"}}]}),
    );
    wf["name"] = json!("helper");
    let daemon = crate::daemon::start(&home);
    let (status, body) = daemon.call("POST", "/api/v1/workflows", Some(wf));
    assert_eq!(status, 201, "{body}");
    let (status, started) = daemon.call(
        "POST",
        "/api/v1/workflows/helper/run",
        Some(json!({"user": "carol", "message": "say hey loudly"})),
    );
    assert_eq!(status, 202, "{started}");
    let id = started["run_id"].as_str().unwrap();
    let run = daemon.wait_run(id);
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{run}");
    assert_eq!(steps[1]["kind"], "tool");
    assert_eq!(steps[1]["output"], "HEY");
    // The steps were live events too (replayed here from the run's buffer).
    let out = crate::helper::stdout_of(home.cmd().args(["logs", "-f", id, "--json"]));
    let live: Vec<(String, String)> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "node_step")
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        live,
        vec![
            ("model".to_string(), "agent-model".to_string()),
            ("tool".to_string(), "upper".to_string()),
            ("model".to_string(), "agent-model".to_string())
        ]
    );

    // Token usage by model reaches /metrics.
    let (code, metrics) =
        crate::ops::get_text(&format!("{}/metrics", daemon.url), Some(&daemon.token));
    assert_eq!(code, 200);
    assert!(
        metrics.contains("fuse_llm_tokens_total{model=\"agent-model\",kind=\"prompt\"} 30")
            && metrics
                .contains("fuse_llm_tokens_total{model=\"agent-model\",kind=\"completion\"} 12"),
        "{metrics}"
    );
    let (status, list) = daemon.call("GET", "/api/v1/memory", None);
    assert_eq!(status, 200);
    assert_eq!(list["sessions"][0]["session"], "carol");
    assert_eq!(list["sessions"][0]["messages"], 2);
    let (status, transcript) = daemon.call("GET", "/api/v1/memory/carol", None);
    assert_eq!(status, 200);
    assert_eq!(transcript["messages"][0]["content"], "say hey loudly");
    assert_eq!(transcript["messages"][1]["content"], "HEY");
    let (status, cleared) = daemon.call("DELETE", "/api/v1/memory/carol", None);
    assert_eq!((status, cleared["removed"].clone()), (200, json!(2)));
    let (status, missing) = daemon.call("GET", "/api/v1/memory/carol", None);
    assert_eq!(status, 404);
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no memory session \"carol\""),
        "{missing}"
    );
}

/// Lower-case words of a text.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
        .collect()
}

/// A deterministic embedding: words hashed into 64 dimensions.
fn bag_of_words(text: &str) -> Vec<f64> {
    let mut v = vec![0.01; 64];
    for w in words(text) {
        let h = w
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        v[(h % 64) as usize] += 1.0;
    }
    v
}

fn overlap(query: &str, text: &str) -> usize {
    let q = words(query);
    words(text).iter().filter(|w| q.contains(w)).count()
}

/// A local model server: embeddings, rerank, and chat that answers from
/// the first source of its prompt (or scores documents when asked to rank).
fn knowledge_server() -> TestServer {
    TestServer::start(|req, _| {
        let body = req.json();
        match req.path.as_str() {
            "/v1/embeddings" => {
                let input = body["input"].as_array().cloned().unwrap_or_default();
                let data: Vec<Value> = input
                    .iter()
                    .enumerate()
                    .map(|(i, t)| json!({"index": i, "object": "embedding", "embedding": bag_of_words(t.as_str().unwrap_or(""))}))
                    .collect();
                Reply::json(
                    200,
                    json!({"object": "list", "data": data, "model": body["model"],
                                        "usage": {"prompt_tokens": input.len() * 3, "total_tokens": input.len() * 3}}),
                )
            }
            "/v1/rerank" => {
                let query = body["query"].as_str().unwrap_or("");
                let results: Vec<Value> = body["documents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .map(|(i, d)| json!({"index": i, "relevance_score": overlap(query, d.as_str().unwrap()) as f64}))
                    .collect();
                Reply::json(200, json!({"results": results}))
            }
            _ => {
                let msgs = body["messages"].as_array().cloned().unwrap_or_default();
                let system = msgs[0]["content"].as_str().unwrap_or("").to_string();
                let prompt = msgs.last().unwrap()["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let text = if system.contains("rank documents") {
                    let query = prompt.lines().next().unwrap_or("");
                    let scores: Vec<usize> = prompt
                        .lines()
                        .filter(|l| l.starts_with('['))
                        .map(|l| overlap(query, l).min(10))
                        .collect();
                    json!(scores).to_string()
                } else {
                    let first = prompt
                        .lines()
                        .find(|l| l.starts_with("[1]"))
                        .unwrap_or("no sources")
                        .to_string();
                    format!("According to {first}")
                };
                Reply::json(200, answer(&text))
            }
        }
    })
}

fn template(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("templates")
        .join(name)
}

#[test]
fn the_rag_templates_index_a_folder_with_a_pdf_and_answer_with_sources() {
    let home = TestHome::initialized();
    let server = knowledge_server();
    // The templates next to a copy of the test documents, as a user has them.
    let dir = home.tmp().join("kb");
    std::fs::create_dir_all(dir.join("docs/sub")).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ai/docs");
    for f in [
        "guide.md",
        "page.html",
        "report.pdf",
        "sub/notes.txt",
        ".hidden.txt",
    ] {
        std::fs::copy(src.join(f), dir.join("docs").join(f)).unwrap();
    }
    for t in ["rag-index.json", "rag-ask.json"] {
        std::fs::copy(template(t), dir.join(t)).unwrap();
    }
    let base = format!("base_url={}", server.url("/v1"));
    let index = || -> Value {
        let out = crate::helper::stdout_of(
            home.cmd()
                .arg("run")
                .arg(dir.join("rag-index.json"))
                .args(["--input", &base]),
        );
        serde_json::from_str(&out).unwrap()
    };
    let first = index();
    // guide.md, page.html, two PDF pages, sub/notes.txt; not the hidden file.
    assert_eq!(first["documents"], 5, "{first}");
    let chunks = first["chunks"].as_i64().unwrap();
    assert!(chunks >= 5, "{first}");
    assert_eq!(first["stored"], chunks);
    let embedded = |s: &TestServer| {
        s.requests()
            .iter()
            .filter(|r| r.path == "/v1/embeddings")
            .map(|r| r.json()["input"].as_array().unwrap().len())
            .sum::<usize>()
    };
    assert_eq!(embedded(&server), chunks as usize);
    // Indexing again re-embeds nothing (the cache) and adds nothing (upsert by id).
    let again = index();
    assert_eq!(again["stored"], chunks);
    assert_eq!(embedded(&server), chunks as usize);

    let ask = |question: &str, mode: &str| -> Value {
        let out = crate::helper::stdout_of(
            home.cmd()
                .arg("run")
                .arg(dir.join("rag-ask.json"))
                .args(["--input", &base, "--input", &format!("question={question}")])
                .args(["--input", &format!("rerank_mode={mode}")]),
        );
        serde_json::from_str(&out).unwrap()
    };
    let result = ask("How many animals are in the llama herd?", "llm");
    let answer = result["answer"].as_str().unwrap();
    assert!(answer.contains("forty animals"), "{result}");
    assert!(answer.contains("report.pdf, page 2"), "{result}");
    assert_eq!(result["sources"][0]["path"], "report.pdf");
    assert_eq!(result["sources"][0]["page"], 2);
    let result = ask("At what degrees does green tea brew?", "endpoint");
    assert!(
        result["answer"]
            .as_str()
            .unwrap()
            .starts_with("According to [1] (page.html) Brewing green tea"),
        "{result}"
    );
    assert_eq!(result["sources"][0]["title"], "Tea brewing");
    assert!(server.requests().iter().any(|r| r.path == "/v1/rerank"));
}

#[test]
fn collections_upsert_by_id_filter_by_metadata_and_delete() {
    collections_behave(&TestHome::initialized(), None);
}

/// What `vector.*` do to a collection, run on a home whose store is its
/// SQLite file, or PostgreSQL at `store_url` (tests/store.rs).
pub(crate) fn collections_behave(home: &TestHome, store_url: Option<&str>) {
    let wf = |nodes: Value| json!({"nodes": nodes});
    let run = |name: &str, workflow: Value| -> (bool, Value, String) {
        let file = home.write(name, &workflow);
        let mut cmd = home.cmd();
        if let Some(url) = store_url {
            cmd.env("FUSE_STORE_URL", url);
        }
        let out = cmd.arg("run").arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (
            out.status.success(),
            serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stderr,
        )
    };
    let upsert = |docs: Value| {
        wf(
            json!([{"id": "up", "type": "vector.upsert", "data": {"inputs": {"collection": "notes", "documents": docs}}}]),
        )
    };
    let (ok, out, err) = run(
        "up.json",
        upsert(json!([
            {"id": "a", "text": "alpha", "metadata": {"lang": "en", "year": 2024}, "embedding": [1.0, 0.0, 0.0]},
            {"id": "b", "text": "beta", "metadata": {"lang": "de", "year": 2025}, "embedding": [0.9, 0.1, 0.0]},
            {"id": "c", "text": "gamma", "metadata": {"lang": "en", "year": 2025}, "embedding": [0.0, 1.0, 0.0]}
        ])),
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        json!({"collection": "notes", "upserted": 3, "count": 3})
    );
    let query = |filter: Value| {
        wf(
            json!([{"id": "q", "type": "vector.query", "data": {"inputs": {"collection": "notes",
            "embedding": [1.0, 0.0, 0.0], "top_k": 2, "filter": filter}}}]),
        )
    };
    let ids = |out: &Value| -> Vec<String> {
        out["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, out, _) = run("q.json", query(Value::Null));
    assert_eq!(ids(&out), vec!["a", "b"]);
    assert!((out["matches"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    let (_, out, _) = run("q.json", query(json!({"lang": "en"})));
    assert_eq!(ids(&out), vec!["a", "c"]);
    let (_, out, _) = run("q.json", query(json!({"year": [2025]})));
    assert_eq!(ids(&out), vec!["b", "c"]);
    // An upsert by an existing id replaces it.
    let (ok, out, _) = run(
        "up.json",
        upsert(
            json!([{"id": "a", "text": "alpha two", "metadata": {"lang": "fr"}, "embedding": [1.0, 0.0, 0.0]}]),
        ),
    );
    assert!(ok);
    assert_eq!(out["count"], 3);
    let (_, out, _) = run("q.json", query(json!({"lang": "fr"})));
    assert_eq!(out["matches"][0]["text"], "alpha two");
    // Vectors of another length are refused with what to do.
    let (ok, _, err) = run(
        "up.json",
        upsert(json!([{"id": "z", "text": "z", "embedding": [1.0, 0.0]}])),
    );
    assert!(!ok);
    assert!(
        err.contains("holds vectors of 3 dimensions, these have 2"),
        "{err}"
    );
    let delete = |inputs: Value| {
        let mut inputs = inputs;
        inputs["collection"] = json!("notes");
        wf(json!([{"id": "d", "type": "vector.delete", "data": {"inputs": inputs}}]))
    };
    let (_, out, _) = run("d.json", delete(json!({"filter": {"lang": "de"}})));
    assert_eq!(out["deleted"], 1);
    let (_, out, _) = run("d.json", delete(json!({"ids": ["c", "nope"]})));
    assert_eq!(out["deleted"], 1);
    let (_, out, _) = run("q.json", query(Value::Null));
    assert_eq!(ids(&out), vec!["a"]);
    let (ok, _, err) = run("d.json", delete(json!({})));
    assert!(!ok);
    assert!(
        err.contains("exactly one of `ids`, `filter` or `all: true`"),
        "{err}"
    );
    let (_, out, _) = run("d.json", delete(json!({"all": true})));
    assert_eq!(out["deleted"], 1);
    let (ok, _, err) = run("q.json", query(Value::Null));
    assert!(!ok);
    assert!(err.contains("there is no collection \"notes\""), "{err}");
    // Documents without embeddings get a pointer to llm.embed.
    let (ok, _, err) = run("up.json", upsert(json!([{"text": "no vector"}])));
    assert!(!ok);
    assert!(
        err.contains("documents[0] has no embedding; run llm.embed"),
        "{err}"
    );
}

#[test]
fn html_extract_reads_selectors_attributes_and_the_main_text() {
    let home = TestHome::initialized();
    let html = r#"<html><head><title>Shop</title><script>var x = "no";</script></head><body>
        <nav>Menu</nav><main><h1 class="name">Blue  kettle</h1><p>Boils <b>fast</b>.</p>
        <a class="more" href="/k/1">one</a><a class="more" href="/k/2">two</a></main><footer>(c)</footer></body></html>"#;
    let wf = home.write(
        "x.json",
        &json!({"nodes": [{"id": "x", "type": "html.extract", "data": {"inputs": {"html": html, "main_text": true,
            "selectors": {"name": "h1.name", "links": {"selector": "a.more", "attribute": "href", "all": true},
                          "first": {"selector": "a.more", "html": true}, "missing": ".nothing"}}}}]}),
    );
    let out: Value =
        serde_json::from_str(&crate::helper::stdout_of(home.cmd().arg("run").arg(&wf))).unwrap();
    assert_eq!(out["name"], "Blue kettle");
    assert_eq!(out["links"], json!(["/k/1", "/k/2"]));
    assert_eq!(out["first"], r#"<a class="more" href="/k/1">one</a>"#);
    assert_eq!(out["missing"], Value::Null);
    assert_eq!(out["title"], "Shop");
    let text = out["text"].as_str().unwrap();
    assert!(
        text.contains("Blue kettle") && text.contains("Boils fast."),
        "{text}"
    );
    assert!(
        !text.contains("Menu") && !text.contains("var x") && !text.contains("(c)"),
        "{text}"
    );
    // A bad selector is a clear input error.
    let bad = home.write(
        "bad.json",
        &json!({"nodes": [{"id": "x", "type": "html.extract", "data": {"inputs": {"html": html, "selectors": {"n": "h1[["}}}}]}),
    );
    home.cmd()
        .arg("run")
        .arg(&bad)
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "selectors.n: \"h1[[\" is not a valid CSS selector",
        ));
}

#[test]
fn the_agent_template_fetches_and_writes_a_file() {
    let home = TestHome::initialized();
    let site = TestServer::start(|_, _| Reply::text(200, "text/plain", "the page says hello"));
    let dir = home.tmp().join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(template("agent-files.json"), dir.join("agent-files.json")).unwrap();
    let model = scripted(vec![
        calls(&[("c1", "fetch", json!({"url": site.url("/")}))]),
        calls(&[(
            "c2",
            "write_file",
            json!({"path": "summary.txt", "content": "hello"}),
        )]),
        answer("Saved the summary to summary.txt."),
    ]);
    let out = crate::helper::stdout_of(
        home.cmd()
            .arg("run")
            .arg(dir.join("agent-files.json"))
            .args(["--input", &format!("base_url={}", model.url("/v1"))])
            .args(["--input", "task=Summarise the page into summary.txt"]),
    );
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["answer"], "Saved the summary to summary.txt.");
    assert_eq!(out["tool_calls"], 2);
    assert_eq!(
        std::fs::read_to_string(dir.join("summary.txt")).unwrap(),
        "hello"
    );
    let names: Vec<String> = model.requests()[0].json()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["fetch", "read_file", "write_file"]);
    assert!(
        sent(&model, 1).last().unwrap()["content"]
            .as_str()
            .unwrap()
            .contains("the page says hello")
    );
}

#[test]
fn the_chat_webhook_template_answers_each_user_with_their_own_memory() {
    let home = TestHome::initialized();
    let model = echo_model();
    let base = model.url("/v1");
    let daemon = crate::daemon::start_with(
        &home,
        &[
            ("FUSE_LLM_BASE_URL", base.as_str()),
            ("FUSE_LLM_MODEL", "chat-model"),
        ],
    );
    let wf: Value =
        serde_json::from_str(&std::fs::read_to_string(template("chat-webhook.json")).unwrap())
            .unwrap();
    let (status, body) = daemon.call("POST", "/api/v1/workflows", Some(wf));
    assert_eq!(status, 201, "{body}");
    let say = |user: &str, message: &str| -> Value {
        let (code, body) = crate::daemon::http(
            "POST",
            &format!("{}/webhook/chat", daemon.url),
            None,
            &[],
            Some(&json!({"user": user, "message": message})),
        );
        assert_eq!(code, 200, "{body}");
        body
    };
    assert_eq!(
        say("ann", "hi"),
        json!({"reply": "2 messages; you said hi"})
    );
    assert_eq!(
        say("ann", "again"),
        json!({"reply": "4 messages; you said again"})
    );
    assert_eq!(
        say("ben", "hello"),
        json!({"reply": "2 messages; you said hello"})
    );
    assert_eq!(model.requests()[0].json()["model"], "chat-model");
}

#[test]
fn memory_summarises_turns_that_leave_the_window() {
    let home = TestHome::initialized();
    let model = TestServer::start(|req, _| {
        let body = req.json();
        let msgs = body["messages"].as_array().cloned().unwrap_or_default();
        let last = msgs.last().unwrap()["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if last.starts_with("Summarise this conversation") {
            // Folds the summary so far and the user turns, as a model would.
            let said: Vec<&str> = last
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("Summary so far: the user said ")
                        .or_else(|| l.strip_prefix("user: "))
                })
                .collect();
            return Reply::json(
                200,
                answer(&format!("the user said {}", said.join(" and "))),
            );
        }
        let summary = msgs
            .iter()
            .filter_map(|m| m["content"].as_str())
            .find(|c| c.starts_with("Summary of the earlier conversation"))
            .unwrap_or("none");
        Reply::json(200, answer(&format!("{} messages; {summary}", msgs.len())))
    });
    let wf = home.write(
        "chat.json",
        &json!({"name": "chat", "params": [{"name": "message", "type": "string"}],
                "nodes": [{"id": "chat", "type": "llm.chat", "data": {"inputs": {
                    "base_url": model.url("/v1"), "model": "m", "prompt": "{{ trigger.message }}",
                    "memory": {"session": "s1", "window": 2, "summarize": true}}}}]}),
    );
    let say = |message: &str| -> String {
        let out = crate::helper::stdout_of(
            home.cmd()
                .arg("run")
                .arg(&wf)
                .args(["--input", &format!("message={message}")]),
        );
        serde_json::from_str::<Value>(&out).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(say("red"), "1 messages; none");
    // The second exchange pushes the first out of the window of 2: it is summarised.
    assert_eq!(say("green"), "3 messages; none");
    assert_eq!(
        say("blue"),
        "4 messages; Summary of the earlier conversation: the user said red"
    );
    let shown: Value = serde_json::from_str(&crate::helper::stdout_of(
        home.cmd().args(["memory", "show", "s1", "--json"]),
    ))
    .unwrap();
    assert_eq!(shown["summary"], "the user said red and green");
    assert_eq!(shown["messages"].as_array().unwrap().len(), 2);
    assert_eq!(shown["messages"][0]["content"], "blue");
}

#[test]
fn a_cached_agent_replays_its_turns_without_the_model() {
    let home = TestHome::initialized();
    let model = scripted(vec![
        calls(&[("c1", "upper", json!({"data": "once"}))]),
        answer("ONCE"),
    ]);
    let wf = home.write(
        "agent.json",
        &agent(
            &model,
            json!({"prompt": "shout once", "cache": true,
                   "tools": [{"node": "transform.jq", "name": "upper", "inputs": {"filter": "ascii_upcase"}}]}),
        ),
    );
    let (ok, first) = run_json(&home, &wf);
    assert!(ok, "{first}");
    assert_eq!(model.requests().len(), 2);
    let (ok, second) = run_json(&home, &wf);
    assert!(ok, "{second}");
    // Both turns came from the cache; the tool still ran.
    assert_eq!(model.requests().len(), 2);
    assert_eq!(second["nodes"]["agent"]["output"]["text"], "ONCE");
    assert_eq!(second["nodes"]["agent"]["output"]["tool_calls"], 1);
    let steps = last_run(&home)["steps"].as_array().unwrap().clone();
    assert_eq!(steps[1]["output"], "ONCE");
}

#[test]
fn in_chromium_the_run_page_shows_an_agents_steps() {
    use crate::browser::Browser;
    let home = TestHome::initialized();
    let model = scripted(vec![
        calls(&[("c1", "upper", json!({"data": "page"}))]),
        answer("PAGE"),
    ]);
    let mut wf = agent(
        &model,
        json!({"prompt": "shout page",
               "tools": [{"node": "transform.jq", "name": "upper", "inputs": {"filter": "ascii_upcase"}}]}),
    );
    wf["name"] = json!("shouter");
    let daemon = crate::daemon::start(&home);
    assert_eq!(daemon.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let (_, started) = daemon.call("POST", "/api/v1/workflows/shouter/run", Some(json!({})));
    let id = started["run_id"].as_str().unwrap().to_string();
    daemon.wait_status(&id, "succeeded");

    let browser = Browser::start();
    browser.goto(&crate::dashboard::link(&daemon));
    browser.goto(&format!("{}/runs/{id}", daemon.url));
    let rows = browser.run(
        "return [...document.querySelectorAll('#steps tbody tr')].map(r => [...r.cells].slice(0, 5).map(c => c.textContent.trim()));",
        json!([]),
    );
    assert_eq!(
        rows,
        json!([
            ["agent", "1", "model", "agent-model", "succeeded"],
            ["agent", "2", "tool", "upper", "succeeded"],
            ["agent", "3", "model", "agent-model", "succeeded"]
        ])
    );
    // A step's data opens in place.
    let output = browser.run(
        "const d = document.querySelectorAll('#steps tbody tr')[1].querySelectorAll('details')[1];
         d.open = true; return d.querySelector('pre').textContent;",
        json!([]),
    );
    assert_eq!(output, json!("\"PAGE\""));
}
