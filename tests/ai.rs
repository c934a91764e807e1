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
fn echo_model() -> TestServer {
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
