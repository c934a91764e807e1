//! The seed documents' flows and API shapes (issue 13), exercised against a
//! real daemon. Each fixture cites the seed file it is copied from, under
//! `../shared/seeds/`.

use serde_json::{Value, json};

use crate::daemon::{http, start};
use crate::helper::TestHome;

/// The `WebhookTrigger` node of the "JSON Workflow Format" example in
/// `003_2d81d427987fdcda.txt` (KAI-Fusion), its inputs copied as written,
/// feeding one node.
fn seed_webhook_flow() -> Value {
    json!({"name": "seed-webhook", "nodes": [
        {"id": "webhook_trigger_1", "type": "WebhookTrigger", "position": {"x": 100, "y": 200},
         "data": {"name": "External API Trigger", "inputs": {
             "authentication_required": true,
             "allowed_event_types": "api.request,data.process",
             "max_payload_size": 2048,
             "rate_limit_per_minute": 100}}},
        {"id": "seen", "type": "transform.set",
         "data": {"inputs": {"values": {"got": "{{ trigger.body }}"}}}}
    ], "edges": [{"source": "webhook_trigger_1", "target": "seen", "sourceHandle": "webhook_data"}]})
}

#[test]
fn the_seed_webhook_options_are_enforced() {
    let home = TestHome::initialized();
    let d = start(&home);
    let mut wf = seed_webhook_flow();
    // The seed's handle name is issue 13's other half; here the plain edge.
    wf["edges"][0]
        .as_object_mut()
        .unwrap()
        .remove("sourceHandle");
    let (code, answer) = d.call("POST", "/api/v1/workflows", Some(wf));
    assert_eq!(code, 201, "{answer}");
    // Without a path, the hook listens on the workflow's id.
    let url = format!("{}/webhook/seed-webhook", d.url);
    let event = json!({"event_type": "api.request", "n": 1});
    let began = std::time::Instant::now();

    // authentication_required: no token, a wrong one → 401; the API token → 202.
    assert_eq!(http("POST", &url, None, &[], Some(&event)).0, 401);
    assert_eq!(http("POST", &url, Some("nope"), &[], Some(&event)).0, 401);
    let (code, started) = http("POST", &url, Some(&d.token), &[], Some(&event));
    assert_eq!(code, 202, "{started}");
    let run = d.wait_status(started["run_id"].as_str().unwrap(), "succeeded");
    assert_eq!(run["output"]["got"]["n"], json!(1), "{run}");

    // allowed_event_types: from the body's event_type or the X-Event-Type header.
    let other = json!({"event_type": "user.login"});
    let (code, refused) = http("POST", &url, Some(&d.token), &[], Some(&other));
    assert_eq!(code, 422, "{refused}");
    assert!(
        refused.to_string().contains("api.request, data.process"),
        "{refused}"
    );
    let plain = json!({"n": 2});
    assert_eq!(http("POST", &url, Some(&d.token), &[], Some(&plain)).0, 422);
    let (code, _) = http(
        "POST",
        &url,
        Some(&d.token),
        &[("X-Event-Type", "data.process")],
        Some(&plain),
    );
    assert_eq!(code, 202);

    // max_payload_size: 2048 KB.
    let big = json!({"event_type": "api.request", "blob": "x".repeat(2048 * 1024)});
    let (code, refused) = http("POST", &url, Some(&d.token), &[], Some(&big));
    assert_eq!(code, 413, "{refused}");
    let fits = json!({"event_type": "api.request", "blob": "x".repeat(2000 * 1024)});
    assert_eq!(http("POST", &url, Some(&d.token), &[], Some(&fits)).0, 202);

    // rate_limit_per_minute: bursts of 100, refilled at 100 a minute; the 5
    // accepted or 422 requests above used 5 (401 and 413 use none).
    // Until the first 429 (at most 400 requests): at least the 95 left, and
    // no more than those plus what refilled meanwhile.
    let mut accepted = 0;
    let mut limited = false;
    for _ in 0..400 {
        match http("POST", &url, Some(&d.token), &[], Some(&event)).0 {
            202 => accepted += 1,
            429 => {
                limited = true;
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refilled = (began.elapsed().as_secs_f64() * 100.0 / 60.0).ceil() as usize;
    assert!(limited, "beyond the limit: 429");
    assert!(
        (95..=95 + refilled).contains(&accepted),
        "{accepted} accepted, {refilled} refilled"
    );
}

#[test]
fn a_webhook_of_its_own_token_takes_that_token_and_fuse_names_work_too() {
    let home = TestHome::initialized();
    let d = start(&home);
    let wf = json!({"name": "own-token", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {
            "path": "mine", "authentication_required": true, "token": "per-hook-secret",
            "allowed_event_types": ["ping"], "max_payload_size": 1}}}]});
    assert_eq!(d.call("POST", "/api/v1/workflows", Some(wf)).0, 201);
    let url = format!("{}/webhook/mine", d.url);
    let ping = json!({"event_type": "ping"});
    assert_eq!(
        http("POST", &url, Some("per-hook-secret"), &[], Some(&ping)).0,
        202
    );
    assert_eq!(
        http("POST", &url, Some("per-hook-secre"), &[], Some(&ping)).0,
        401
    );
    // A read-only API token may not start runs.
    let read = crate::helper::stdout_of(
        home.cmd()
            .args(["tokens", "new", "reader", "--scope", "read", "--json"]),
    );
    let read: Value = serde_json::from_str(&read).unwrap();
    let read = read["token"].as_str().unwrap();
    assert_eq!(http("POST", &url, Some(read), &[], Some(&ping)).0, 401);
    // 1 KB at most.
    let big = json!({"event_type": "ping", "pad": "y".repeat(2000)});
    assert_eq!(
        http("POST", &url, Some("per-hook-secret"), &[], Some(&big)).0,
        413
    );
}

/// An OpenAI-compatible server that answers `echo: <last user message>`
/// (streamed when asked) and keeps what it was sent.
fn openai_server() -> crate::helper::http::TestServer {
    use crate::helper::http::{Reply, TestServer};
    TestServer::start(|req, _| {
        let body = req.json();
        let said = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string();
        if body["stream"] == true {
            let chunk = |text: &str| {
                (
                    std::time::Duration::ZERO,
                    format!(
                        "data: {}\n\n",
                        json!({"model": body["model"], "choices": [{"delta": {"content": text}}]})
                    )
                    .into_bytes(),
                )
            };
            return Reply::Chunks {
                status: 200,
                headers: vec![("Content-Type".into(), "text/event-stream".into())],
                chunks: vec![
                    chunk("echo: "),
                    chunk(&said),
                    (std::time::Duration::ZERO, b"data: [DONE]\n\n".to_vec()),
                ],
            };
        }
        Reply::json(
            200,
            json!({"model": body["model"], "choices": [{"message": {"role": "assistant", "content": format!("echo: {said}")}}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
        )
    })
}

/// The request the seed's "Workflow Management" example sends
/// (`003_2d81d427987fdcda.txt`, `POST /api/workflows/`): its `flow_data`
/// (Start → OpenAINode → End) runs unmodified with the seed's execute input.
#[test]
fn the_seed_api_example_flow_runs_with_the_message_from_its_input() {
    let home = TestHome::initialized();
    let server = openai_server();
    let request: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/data/seeds/003_create_workflow_request.json").unwrap(),
    )
    .unwrap();
    let flow = home.path().join("seed-api.json");
    std::fs::write(&flow, request["flow_data"].to_string()).unwrap();
    home.cmd().arg("validate").arg(&flow).assert().success();
    let out = crate::helper::stdout_of(
        home.cmd()
            .env("FUSE_LLM_BASE_URL", server.url("/v1"))
            .arg("run")
            .arg(&flow)
            .args(["--input", "message=Analyze this business proposal"]),
    );
    let result: Value = serde_json::from_str(&out).unwrap();
    // End returns what reaches it: the OpenAI node's reply, not wrapped.
    assert_eq!(
        result["text"],
        json!("echo: Analyze this business proposal"),
        "{result}"
    );
    let sent = server.requests()[0].json();
    assert_eq!(sent["model"], json!("gpt-4-turbo-preview"));
    assert_eq!(sent["temperature"], json!(0.7));
    assert_eq!(sent["max_tokens"], json!(1000));
    assert_eq!(sent["stream"], json!(false));
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "Analyze this business proposal"}])
    );
}

/// The OpenAI node of the "JSON Workflow Format" example
/// (`003_2d81d427987fdcda.txt`): its system message and streaming reach the
/// server, and the upstream message is the user's.
#[test]
fn the_seed_openai_node_sends_its_system_message_and_streams() {
    let home = TestHome::initialized();
    let server = openai_server();
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/data/seeds/003_json_workflow_format.json").unwrap(),
    )
    .unwrap();
    let node = seed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "openai_1")
        .unwrap()
        .clone();
    let flow = json!({"nodes": [
        {"id": "start_1", "type": "Start", "data": {"name": "Workflow Start"}},
        node,
        {"id": "end_1", "type": "End", "data": {"name": "Workflow End"}}],
        "edges": [
            {"source": "start_1", "target": "openai_1", "sourceHandle": "output", "targetHandle": "input"},
            {"source": "openai_1", "target": "end_1", "sourceHandle": "output", "targetHandle": "input"}]});
    let file = home.path().join("seed-openai.json");
    std::fs::write(&file, flow.to_string()).unwrap();
    let out = crate::helper::stdout_of(
        home.cmd()
            .env("FUSE_LLM_BASE_URL", server.url("/v1"))
            .arg("run")
            .arg(&file)
            .args(["--input", "message=Quarterly numbers"]),
    );
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["text"], json!("echo: Quarterly numbers"), "{result}");
    let sent = server.requests()[0].json();
    assert_eq!(sent["stream"], json!(true), "enable_streaming: true");
    assert_eq!(sent["max_tokens"], json!(2000));
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "You are an expert data analyst."},
               {"role": "user", "content": "Quarterly numbers"}])
    );
}

/// A session on the seed WebSocket of workflow `id`: sends `first`, then
/// collects events until `workflow_complete` or `error` (15 s at most);
/// `answer` may reply to an event with a message.
fn ws_session(
    d: &crate::daemon::Daemon<'_>,
    id: &str,
    first: String,
    mut answer: impl FnMut(&Value) -> Option<String>,
) -> Vec<Value> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!(
            "{}/api/workflows/{id}/stream?token={}",
            d.url.replace("http://", "ws://"),
            d.token
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Message::text(first)).await.unwrap();
        let mut events = Vec::new();
        while let Some(Ok(message)) =
            tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
                .await
                .unwrap()
        {
            let Message::Text(text) = message else {
                continue;
            };
            let event: Value = serde_json::from_str(&text).unwrap();
            if let Some(reply) = answer(&event) {
                ws.send(Message::text(reply)).await.unwrap();
            }
            let end = event["type"] == "workflow_complete" || event["type"] == "error";
            events.push(event);
            if end {
                break;
            }
        }
        events
    })
}

/// The "JSON Workflow Format" example with `api_token` stored and its
/// `HttpRequest` sent to a local server: (the OpenAI server, the results
/// server, the flow).
fn seed_format(
    home: &TestHome,
) -> (
    crate::helper::http::TestServer,
    crate::helper::http::TestServer,
    Value,
) {
    use crate::helper::http::{Reply, TestServer};
    home.cmd()
        .args(["creds", "set", "api_token", "--type", "bearer", "--stdin"])
        .write_stdin(json!({"token": "t0k3n"}).to_string())
        .assert()
        .success();
    let openai = openai_server();
    let results = TestServer::start(|_, _| Reply::json(200, json!({"stored": true})));
    let mut flow: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/data/seeds/003_json_workflow_format.json").unwrap(),
    )
    .unwrap();
    flow["nodes"][4]["data"]["inputs"]["url"] = json!(results.url("/results"));
    (openai, results, flow)
}

/// Runs of `workflow`, oldest first.
fn runs_of(d: &crate::daemon::Daemon<'_>, workflow: &str) -> Vec<Value> {
    let (_, listed) = d.call(
        "GET",
        &format!("/api/v1/executions?workflow={workflow}&limit=0"),
        None,
    );
    let mut runs = listed["executions"].as_array().cloned().unwrap_or_default();
    runs.reverse();
    runs
}

/// The `TimerStartNode` of the "JSON Workflow Format" example
/// (`003_2d81d427987fdcda.txt`) with each `schedule_type`, in the daemon.
#[test]
fn seed_timer_nodes_fire_as_their_fields_say() {
    use crate::daemon::wait_for;
    let home = TestHome::initialized();
    let d = start(&home);
    let timer = |name: &str, inputs: Value, then: Value| {
        json!({"name": name, "nodes": [
            {"id": "timer_1", "type": "TimerStartNode", "data": {"name": "Timer", "inputs": inputs}},
            {"id": "work", "type": "transform.set", "data": {"inputs": {"values": then}}}],
            "edges": [{"source": "timer_1", "target": "work", "sourceHandle": "timer_data", "targetHandle": "input"}]})
    };
    let deploy = |wf: Value| {
        let (code, answer) = d.call("POST", "/api/v1/workflows", Some(wf));
        assert_eq!(code, 201, "{answer}");
    };
    // The seed's own node as written (cron, New York time, retry on failure).
    let seed: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/data/seeds/003_json_workflow_format.json").unwrap(),
    )
    .unwrap();
    let seed_timer = seed["nodes"][3]["data"]["inputs"].clone();
    assert_eq!(seed_timer["schedule_type"], "cron");
    deploy(timer("daily-report", seed_timer, json!({"ok": true})));
    // Every second, twice at most.
    deploy(timer(
        "twice",
        json!({"schedule_type": "interval", "interval_seconds": 1, "max_executions": 2}),
        json!({"ok": true}),
    ));
    // Once, a second from now; and one that fails, retried once.
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1)).to_string();
    deploy(timer(
        "once",
        json!({"schedule_type": "once", "scheduled_time": soon}),
        json!({"ok": true}),
    ));
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1)).to_string();
    deploy(timer(
        "flaky",
        json!({"schedule_type": "once", "scheduled_time": soon, "retry_on_failure": true, "retry_count": 1}),
        json!({"x": "{{ trigger.missing.deep }}"}),
    ));
    // Manual, and a timer switched off: never by themselves.
    deploy(timer(
        "by-hand",
        json!({"schedule_type": "manual"}),
        json!({"ok": true}),
    ));
    deploy(timer(
        "off",
        json!({"schedule_type": "interval", "interval_seconds": 1, "auto_trigger_workflow": false}),
        json!({"ok": true}),
    ));

    let (_, schedules) = d.call("GET", "/api/v1/schedules", None);
    let find = |workflow: &str| {
        schedules["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["workflow"] == workflow)
            .cloned()
    };
    let daily = find("daily-report").expect("the seed's cron timer is scheduled");
    assert_eq!(daily["kind"], "cron");
    assert_eq!(daily["spec"], "0 9 * * 1-5");
    assert_eq!(daily["timezone"], "America/New_York");
    assert!(daily["next_fire_at"].is_string(), "{daily}");
    assert!(find("by-hand").is_none() && find("off").is_none());

    // twice: two runs, then no next fire.
    wait_for("two fires of `twice`", || {
        (runs_of(&d, "twice").len() >= 2).then_some(())
    });
    wait_for("`twice` to have no next fire", || {
        let (_, s) = d.call("GET", "/api/v1/schedules", None);
        s["schedules"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["workflow"] == "twice").cloned())
            .filter(|s| s["next_fire_at"].is_null())
            .map(|_| ())
    });
    // once: one run.
    wait_for("the `once` fire", || {
        (!runs_of(&d, "once").is_empty()).then_some(())
    });
    // flaky: the failed run, then its one retry (failing too), no more.
    let flaky = wait_for("the scheduled run and its retry", || {
        let runs = runs_of(&d, "flaky");
        (runs.len() >= 2 && runs.iter().all(|r| r["status"] == "failed")).then_some(runs)
    });
    assert_eq!(flaky[0]["trigger"], "cron");
    assert_eq!(flaky[1]["trigger"], "retry");
    assert_eq!(flaky[1]["retry_of"], flaky[0]["id"]);

    // Nothing more fires for twice, once, flaky, by-hand or off: a fresh
    // interval timer fires twice meanwhile, as a clock for this check.
    deploy(timer(
        "clock",
        json!({"schedule_type": "interval", "interval_seconds": 1, "max_executions": 2}),
        json!({"ok": true}),
    ));
    wait_for("two clock fires", || {
        (runs_of(&d, "clock").len() >= 2).then_some(())
    });
    assert_eq!(runs_of(&d, "twice").len(), 2);
    assert_eq!(runs_of(&d, "once").len(), 1);
    assert_eq!(runs_of(&d, "flaky").len(), 2);
    assert!(runs_of(&d, "by-hand").is_empty() && runs_of(&d, "off").is_empty());
}

#[test]
fn timer_fields_that_cannot_be_honoured_are_refused_by_validate() {
    let home = TestHome::initialized();
    for (inputs, says) in [
        (
            json!({"schedule_type": "weekly"}),
            "must be interval, cron, once or manual",
        ),
        (json!({"schedule_type": "cron"}), "needs cron_expression"),
        (
            json!({"schedule_type": "cron", "cron_expression": "99 * * * *"}),
            "is not valid",
        ),
        (
            json!({"schedule_type": "once", "scheduled_time": "tomorrow"}),
            "is not a time",
        ),
        (json!({"interval_seconds": 0}), "at least 1"),
        (json!({"timezone": "Mars/Olympus"}), "unknown time zone"),
        (json!({"max_executions": -1}), "at least 0"),
    ] {
        let file = home.path().join("timer.json");
        std::fs::write(
            &file,
            json!({"nodes": [{"id": "t", "type": "TimerStartNode", "data": {"inputs": inputs}}]})
                .to_string(),
        )
        .unwrap();
        home.cmd()
            .arg("validate")
            .arg(&file)
            .assert()
            .failure()
            .stderr(predicates::str::contains(says));
    }
}

/// The whole "JSON Workflow Format" example (`003_2d81d427987fdcda.txt`):
/// `fuse validate` accepts it as written once `api_token` is a stored
/// credential, and deployed through the daemon a webhook call runs it end to
/// end. The one change for the run: its `HttpRequest` goes to a local server
/// instead of api.example.com (tests never need the internet).
#[test]
fn the_seed_json_workflow_format_validates_and_runs_from_its_webhook() {
    let home = TestHome::initialized();
    let fixture = "tests/data/seeds/003_json_workflow_format.json";
    let refused = home.cmd().args(["validate", fixture]).assert().failure();
    let said = String::from_utf8_lossy(&refused.get_output().stderr).to_string();
    assert!(
        said.contains("`api_token` is none of them") && said.contains("fuse creds set api_token"),
        "validate says where it looked: {said}"
    );
    let (openai, results, mut flow) = seed_format(&home);
    home.cmd().args(["validate", fixture]).assert().success();
    flow["name"] = json!("seed-format");
    let d = crate::daemon::start_with(&home, &[("FUSE_LLM_BASE_URL", &openai.url("/v1"))]);
    let (code, answer) = d.call("POST", "/api/v1/workflows", Some(flow));
    assert_eq!(code, 201, "{answer}");

    let (code, started) = http(
        "POST",
        &format!("{}/webhook/seed-format", d.url),
        Some(&d.token),
        &[("X-Event-Type", "api.request")],
        Some(&json!({"message": "Summarise the week"})),
    );
    assert_eq!(code, 202, "{started}");
    let run = d.wait_run(started["run_id"].as_str().unwrap());
    assert_eq!(run["status"], "succeeded", "{run}");
    // End returns what reached it: the HTTP node's answer.
    assert_eq!(run["output"]["body"], json!({"stored": true}), "{run}");
    // The webhook started this run, so the timer trigger beside it is
    // skipped and the OpenAI node gets the one input that fired.
    let timer = run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "timer_1")
        .cloned()
        .unwrap_or_default();
    assert_eq!(timer["status"], "skipped", "{timer}");
    let sent = openai.requests()[0].json();
    assert_eq!(sent["model"], json!("gpt-4-turbo-preview"));
    assert_eq!(sent["stream"], json!(true));
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "You are an expert data analyst."},
               {"role": "user", "content": "Summarise the week"}])
    );
    let posted = &results.requests()[0];
    assert_eq!(posted.method, "POST");
    assert_eq!(
        posted.headers.get("authorization").map(String::as_str),
        Some("Bearer t0k3n"),
        "{{{{api_token}}}} is the stored credential"
    );
    // Its timer is scheduled as the seed says.
    let (_, schedules) = d.call("GET", "/api/v1/schedules", None);
    assert_eq!(
        schedules["schedules"][0]["spec"], "0 9 * * 1-5",
        "{schedules}"
    );
}

/// The seed's API integration test (`003_2d81d427987fdcda.txt`, "Testing"):
/// create with `flow_data`, execute with `{"inputs": …}`, read the execution
/// — the same calls, paths and status codes, against the daemon.
#[test]
fn the_seed_rest_calls_create_execute_read_update_and_delete() {
    let home = TestHome::initialized();
    let openai = openai_server();
    let d = crate::daemon::start_with(&home, &[("FUSE_LLM_BASE_URL", &openai.url("/v1"))]);
    let read = |path: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let url = |path: &str| format!("{}{path}", d.url);

    let (code, workflow) = d.call(
        "POST",
        "/api/workflows/",
        Some(read("tests/data/seeds/003_integration_test_workflow.json")),
    );
    assert_eq!(code, 201, "{workflow}");
    assert_eq!(workflow["id"], "integration-test-workflow");
    assert_eq!(workflow["name"], "Integration Test Workflow");
    assert_eq!(workflow["description"], "Test workflow for API integration");
    assert_eq!(workflow["flow_data"]["nodes"][0]["id"], "start_1");
    let id = workflow["id"].as_str().unwrap().to_string();
    // The same name again: it exists.
    let (code, _) = d.call(
        "POST",
        "/api/workflows/",
        Some(read("tests/data/seeds/003_integration_test_workflow.json")),
    );
    assert_eq!(code, 409);

    let (code, execution) = d.call(
        "POST",
        &format!("/api/workflows/{id}/execute"),
        Some(json!({"inputs": {"message": "Test"}})),
    );
    assert_eq!(code, 201, "{execution}");
    assert_eq!(execution["status"], "running");
    assert_eq!(execution["workflow_id"], json!(id));
    assert_eq!(execution["inputs"], json!({"message": "Test"}));
    assert!(execution["started_at"].is_string());
    let run = execution["id"].as_str().unwrap().to_string();
    assert_eq!(execution["execution_id"], json!(run));
    let done = crate::daemon::wait_for("the execution to complete", || {
        let (code, e) = d.call("GET", &format!("/api/executions/{run}"), None);
        (code == 200 && e["status"] == "completed").then_some(e)
    });
    assert_eq!(
        done["outputs"],
        json!({"message": "Test"}),
        "End returns its input"
    );
    assert!(done["completed_at"].is_string());

    // The "Workflow Management" request: Start → OpenAINode → End.
    let (code, managed) = d.call(
        "POST",
        "/api/workflows/",
        Some(read("tests/data/seeds/003_create_workflow_request.json")),
    );
    assert_eq!(code, 201, "{managed}");
    let (_, execution) = http(
        "POST",
        &url(&format!(
            "/api/workflows/{}/execute",
            managed["id"].as_str().unwrap()
        )),
        Some(&d.token),
        &[],
        Some(&read("tests/data/seeds/003_execute_request.json")),
    );
    let run = execution["execution_id"].as_str().unwrap().to_string();
    let done = crate::daemon::wait_for("the AI execution", || {
        let (_, e) = d.call("GET", &format!("/api/executions/{run}"), None);
        (e["status"] != "running" && e["status"] != "pending").then_some(e)
    });
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["outputs"]["text"],
        "echo: Analyze this business proposal and provide recommendations"
    );

    // Update: a new description and flow; the id stays; a rename is refused.
    let (code, updated) = d.call(
        "PUT",
        &format!("/api/workflows/{id}"),
        Some(json!({"description": "changed"})),
    );
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["description"], "changed");
    assert_eq!(updated["version"], 2);
    let (code, _) = d.call(
        "PUT",
        &format!("/api/workflows/{id}"),
        Some(json!({"name": "Something Else"})),
    );
    assert_eq!(code, 409);
    let (code, got) = d.call("GET", &format!("/api/workflows/{id}"), None);
    assert_eq!(code, 200);
    assert_eq!(got["description"], "changed");
    // The native API sees the same workflow.
    assert_eq!(
        d.call("GET", &format!("/api/v1/workflows/{id}"), None).0,
        200
    );

    // Refusals in the seed's paths: no token, unknown fields, is_public.
    assert_eq!(
        http(
            "GET",
            &url(&format!("/api/workflows/{id}")),
            None,
            &[],
            None
        )
        .0,
        401
    );
    let (code, answer) = d.call(
        "POST",
        "/api/workflows/",
        Some(json!({"name": "x", "flow_data": {"nodes": []}, "is_public": true})),
    );
    assert_eq!(code, 400, "{answer}");
    assert_eq!(
        d.call(
            "POST",
            "/api/workflows/",
            Some(json!({"name": "x", "flow": {}}))
        )
        .0,
        400
    );

    let (code, deleted) = d.call("DELETE", &format!("/api/workflows/{id}"), None);
    assert_eq!(code, 200, "{deleted}");
    assert_eq!(d.call("GET", &format!("/api/workflows/{id}"), None).0, 404);
}

/// The seed's streaming client (`003_2d81d427987fdcda.txt`, "Streaming
/// Execution"): a WebSocket to `/api/workflows/{id}/stream` sends
/// `{"action": "execute", "inputs": …}` and receives `node_start`,
/// `node_end` (with output) and `workflow_complete` (with the result), in
/// order; `GET /api/executions/{id}/stream` gives the same as server-sent
/// events.
#[test]
fn the_seed_websocket_executes_and_streams_events_in_order() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let home = TestHome::initialized();
    let openai = openai_server();
    let d = crate::daemon::start_with(&home, &[("FUSE_LLM_BASE_URL", &openai.url("/v1"))]);
    let request: Value = serde_json::from_str(
        &std::fs::read_to_string("tests/data/seeds/003_create_workflow_request.json").unwrap(),
    )
    .unwrap();
    let (code, workflow) = d.call("POST", "/api/workflows/", Some(request.clone()));
    assert_eq!(code, 201, "{workflow}");
    let id = workflow["id"].as_str().unwrap().to_string();

    let message =
        std::fs::read_to_string("tests/data/seeds/003_stream_execute_message.json").unwrap();
    let events = ws_session(&d, &id, message, |_| None);
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or(""),
                e["node_id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "execution_started ",
            "node_start start_1",
            "node_end start_1",
            "node_start openai_1",
            "node_end openai_1",
            "node_start end_1",
            "node_end end_1",
            "workflow_complete ",
        ],
        "{events:?}"
    );
    assert_eq!(events[4]["output"]["text"], "echo: Process this data");
    assert_eq!(events[7]["result"]["text"], "echo: Process this data");
    let run = events[0]["execution_id"].as_str().unwrap().to_string();

    // The same run as server-sent events (it has ended: the stream is whole).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (kind, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{}/api/executions/{run}/stream", d.url))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap();
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        (kind, r.text().await.unwrap())
    });
    assert_eq!(kind, "text/event-stream");
    let sse: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sse.last().unwrap()["type"], "workflow_complete", "{body}");
    assert_eq!(
        sse.last().unwrap()["result"]["text"],
        "echo: Process this data"
    );
    let openai_end = sse
        .iter()
        .find(|e| e["type"] == "node_end" && e["node_id"] == "openai_1")
        .unwrap();
    assert_eq!(openai_end["output"]["text"], "echo: Process this data");

    // A bad request on the socket is answered, not dropped.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer: Value = rt.block_on(async {
        let url = format!(
            "{}/api/workflows/{id}/stream?token={}",
            d.url.replace("http://", "ws://"),
            d.token
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Message::text(r#"{"action": "fly"}"#))
            .await
            .unwrap();
        loop {
            if let Some(Ok(Message::Text(text))) = ws.next().await {
                return serde_json::from_str(&text).unwrap();
            }
        }
    });
    assert_eq!(answer["type"], "error");
    // No token: refused before the upgrade.
    assert_eq!(
        http(
            "GET",
            &format!("{}/api/workflows/{id}/stream", d.url),
            None,
            &[],
            None
        )
        .0,
        401
    );
}

/// `fuse run` of the "JSON Workflow Format" example: no trigger fired, so
/// the run enters by its first trigger (the webhook) and the timer beside it
/// is skipped; the OpenAI node gets the run's message. (Its `HttpRequest`
/// goes to a local server instead of api.example.com.)
#[test]
fn fuse_run_runs_the_seed_json_workflow_format() {
    let home = TestHome::initialized();
    let (openai, results, flow) = seed_format(&home);
    let file = home.path().join("seed-format.json");
    std::fs::write(&file, flow.to_string()).unwrap();
    let out = crate::helper::stdout_of(
        home.cmd()
            .env("FUSE_LLM_BASE_URL", openai.url("/v1"))
            .arg("run")
            .arg(&file)
            .args(["--input", "message=Weekly numbers"]),
    );
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["body"], json!({"stored": true}), "{result}");
    let sent = openai.requests()[0].json();
    assert_eq!(sent["messages"][1]["content"], "Weekly numbers");
    assert_eq!(
        results.requests()[0]
            .headers
            .get("authorization")
            .map(String::as_str),
        Some("Bearer t0k3n")
    );
}

#[test]
fn the_seed_websocket_cancels_what_it_started() {
    let home = TestHome::initialized();
    let d = start(&home);
    let slow = json!({"name": "Slow One", "flow_data": {"nodes": [
        {"id": "start_1", "type": "Start", "data": {"name": "Start"}},
        {"id": "nap", "type": "flow.wait", "data": {"inputs": {"duration": "60s"}}}],
        "edges": [{"source": "start_1", "target": "nap", "sourceHandle": "output", "targetHandle": "input"}]}});
    let (code, _) = d.call("POST", "/api/workflows/", Some(slow.clone()));
    assert_eq!(code, 201);
    // Once the wait runs, cancel it.
    let events = ws_session(&d, "slow-one", r#"{"action": "execute"}"#.into(), |event| {
        (event["type"] == "node_start" && event["node_id"] == "nap")
            .then(|| r#"{"action": "cancel"}"#.to_string())
    });
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{events:?}");
    assert_eq!(last["status"], "cancelled");
}

/// `GET /api/executions/{id}/stream` follows a run that is still going, and
/// ends when the run does.
#[test]
fn the_seed_event_stream_follows_a_running_execution() {
    let home = TestHome::initialized();
    let d = start(&home);
    let slow = json!({"name": "slowish", "flow_data": {"nodes": [
        {"id": "start_1", "type": "Start", "data": {"name": "Start"}},
        {"id": "nap", "type": "flow.wait", "data": {"inputs": {"duration": "1500ms"}}},
        {"id": "end_1", "type": "End", "data": {"name": "End"}}],
        "edges": [{"source": "start_1", "target": "nap"}, {"source": "nap", "target": "end_1"}]}});
    let (code, _) = d.call("POST", "/api/workflows/", Some(slow.clone()));
    assert_eq!(code, 201);
    let (code, execution) = d.call(
        "POST",
        "/api/workflows/slowish/execute",
        Some(json!({"inputs": {"n": 1}})),
    );
    assert_eq!(code, 201, "{execution}");
    let run = execution["execution_id"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        reqwest::Client::new()
            .get(format!(
                "{}/api/executions/{run}/stream?token={}",
                d.url, d.token
            ))
            .send()
            .await
            .unwrap()
    });
    let (_, now) = d.call("GET", &format!("/api/v1/executions/{run}"), None);
    let status_at_connect = now["status"].clone();
    let body = rt.block_on(stream.text()).unwrap();
    assert_eq!(status_at_connect, "running", "connected while it ran");
    let events: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or(""),
                e["node_id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            "node_start start_1",
            "node_end start_1",
            "node_start nap",
            "node_end nap",
            "node_start end_1",
            "node_end end_1",
            "workflow_complete ",
        ],
        "{body}"
    );
}
