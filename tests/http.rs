//! http.request and llm.chat against a real HTTP server on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fuse::config::{HttpConfig, LlmConfig};
use fuse::engine::{Event, Status};
use fuse::nodes::{Registry, Settings};
use fuse::{Engine, RunRecord, RunRequest};
use serde_json::{Value, json};

use crate::engine::Events;
use crate::helper::http::{Reply, TestServer};

struct Harness {
    engine: Engine,
    events: Arc<Events>,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Harness {
    fn new(settings: Settings) -> Harness {
        let events = Arc::new(Events::default());
        Harness {
            engine: Engine::new(Registry::with_settings(&settings), events.clone(), 16),
            events,
            rt: tokio::runtime::Runtime::new().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn default() -> Harness {
        Harness::new(Settings::default())
    }

    fn run(&self, wf: Value) -> RunRecord {
        let path = self.dir.path().join("wf.json");
        std::fs::write(&path, wf.to_string()).unwrap();
        let plan = self.engine.load(&path).unwrap_or_else(|e| panic!("{e}"));
        self.rt.block_on(
            self.engine
                .run(Arc::new(plan), RunRequest::new(json!({}), "test")),
        )
    }

    fn logs(&self) -> Vec<String> {
        self.events
            .all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Log { message, .. } => Some(message),
                _ => None,
            })
            .collect()
    }
}

fn one(node: Value) -> Value {
    json!({"nodes": [node]})
}

fn request(inputs: Value) -> Value {
    one(json!({"id": "req", "type": "http.request", "data": {"inputs": inputs}}))
}

fn echo() -> TestServer {
    TestServer::start(|req, _| {
        Reply::json(
            200,
            json!({"method": req.method, "path": req.path, "query": req.query, "body": req.text()}),
        )
    })
}

#[test]
fn every_body_type_reaches_the_server() {
    let server = echo();
    let h = Harness::default();
    let cases = [
        (
            json!({"method": "POST", "json": {"a": [1, 2]}}),
            "application/json",
        ),
        (json!({"method": "PUT", "body": "raw text"}), ""),
        (
            json!({"method": "PATCH", "form": {"name": "Ada Lovelace", "n": 3}}),
            "application/x-www-form-urlencoded",
        ),
        (
            json!({"method": "POST", "multipart": {"note": "hi", "upload": {"content": "file body", "filename": "a.txt", "content_type": "text/plain"}}}),
            "multipart/form-data",
        ),
    ];
    for (inputs, content_type) in cases {
        let mut inputs = inputs;
        inputs["url"] = json!(server.url("/echo"));
        let r = h.run(request(inputs.clone()));
        assert_eq!(r.status, Status::Succeeded, "{inputs}: {:?}", r.error);
        let seen = server.requests().pop().unwrap();
        assert_eq!(seen.method, inputs["method"]);
        assert!(
            seen.header("content-type")
                .unwrap_or("")
                .starts_with(content_type),
            "{:?}",
            seen.headers
        );
        let body = seen.text();
        match inputs["method"].as_str().unwrap() {
            "PUT" => assert_eq!(body, "raw text"),
            "PATCH" => assert_eq!(body, "name=Ada+Lovelace&n=3"),
            _ if content_type == "application/json" => {
                assert_eq!(seen.json(), json!({"a": [1, 2]}))
            }
            _ => assert!(
                body.contains("name=\"upload\"; filename=\"a.txt\"")
                    && body.contains("file body")
                    && body.contains("hi"),
                "{body}"
            ),
        }
    }
    // Query parameters (arrays repeat) and headers.
    let r = h.run(request(json!({"url": server.url("/q"), "query": {"tag": ["a", "b"], "n": 1}, "headers": {"X-Trace": "t-1"}})));
    assert_eq!(r.output["body"]["query"], "tag=a&tag=b&n=1");
    assert_eq!(
        server.requests().pop().unwrap().header("x-trace"),
        Some("t-1")
    );
    assert_eq!(r.output["status"], 200);
    assert_eq!(r.output["headers"]["content-type"], "application/json");
}

#[test]
fn responses_are_parsed_by_content_type() {
    let server = TestServer::start(|req, _| match req.path.as_str() {
        "/json" => Reply::json(200, json!({"ok": true})),
        "/text" => Reply::text(200, "text/plain; charset=utf-8", "hello"),
        _ => Reply::text(200, "image/png", "\u{1}\u{2}PNG"),
    });
    let h = Harness::default();
    assert_eq!(
        h.run(request(json!({"url": server.url("/json")}))).output["body"],
        json!({"ok": true})
    );
    assert_eq!(
        h.run(request(json!({"url": server.url("/text")}))).output["body"],
        "hello"
    );
    assert_eq!(
        h.run(request(json!({"url": server.url("/bin")}))).output["body"],
        "AQJQTkc=",
        "bytes come back as base64"
    );
    assert_eq!(
        h.run(request(
            json!({"url": server.url("/text"), "response": "bytes"})
        ))
        .output["body"],
        "aGVsbG8="
    );
}

#[test]
fn every_auth_kind_is_sent() {
    let server = echo();
    let h = Harness::default();
    let cases = [
        (
            json!({"type": "bearer", "token": "tok-123"}),
            "authorization",
            "Bearer tok-123",
        ),
        (
            json!({"type": "basic", "username": "ada", "password": "s3cret"}),
            "authorization",
            "Basic YWRhOnMzY3JldA==",
        ),
        (
            json!({"type": "header", "name": "X-Api-Key", "value": "k-9"}),
            "x-api-key",
            "k-9",
        ),
    ];
    for (auth, header, value) in cases {
        let r = h.run(request(json!({"url": server.url("/a"), "auth": auth})));
        assert_eq!(r.status, Status::Succeeded);
        assert_eq!(server.requests().pop().unwrap().header(header), Some(value));
    }
    h.run(request(json!({"url": server.url("/a"), "auth": {"type": "query", "name": "api_key", "value": "q 1"}})));
    assert_eq!(server.requests().pop().unwrap().query, "api_key=q+1");
    let r = h.run(request(
        json!({"url": server.url("/a"), "auth": {"type": "magic"}}),
    ));
    assert!(
        r.error
            .unwrap()
            .contains("not one of bearer, basic, header, query")
    );
}

#[test]
fn retries_cover_every_failure_and_on_narrows_them() {
    let server = TestServer::start(|req, n| match req.path.as_str() {
        "/flaky" if n < 2 => Reply::json(503, json!({"error": "busy"})),
        "/flaky" => Reply::json(200, json!({"ok": true})),
        _ => Reply::json(404, json!({"error": "nope"})),
    });
    let h = Harness::default();
    let r = h.run(one(
        json!({"id": "req", "type": "http.request", "retry": {"attempts": 4, "initial": "20ms"},
        "data": {"inputs": {"url": server.url("/flaky")}}}),
    ));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(r.nodes["req"].attempts, 3);
    // A retry without `on` retries every failure, a 404 too (as n8n does)…
    let r = h.run(one(
        json!({"id": "req", "type": "http.request", "retry": {"attempts": 3, "initial": "1ms"},
        "data": {"inputs": {"url": server.url("/missing")}}}),
    ));
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.nodes["req"].attempts, 3, "retry means retry");
    // …and `on` narrows it to what is worth another attempt.
    let r = h.run(one(json!({"id": "req", "type": "http.request",
        "retry": {"attempts": 4, "initial": "20ms", "on": {"statuses": [429, 503]}},
        "data": {"inputs": {"url": server.url("/missing")}}})));
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.nodes["req"].attempts, 1, "404 is not in `on`");
    let err = r.nodes["req"].error.clone().unwrap();
    assert_eq!(
        (err["kind"].as_str(), err["status"].as_u64()),
        (Some("http"), Some(404))
    );
    assert_eq!(
        err["details"]["body"]["error"], "nope",
        "the response is kept with the error"
    );
    // fail_on_status: false hands the response on instead.
    let r = h.run(request(
        json!({"url": server.url("/missing"), "fail_on_status": false}),
    ));
    assert_eq!(r.output["status"], 404);
}

#[test]
fn retry_after_is_honoured() {
    let server = TestServer::start(|_, n| {
        if n == 0 {
            Reply::json(429, json!({"error": "slow down"})).with_header("Retry-After", "1")
        } else {
            Reply::json(200, json!({"ok": true}))
        }
    });
    let h = Harness::default();
    let r = h.run(one(
        json!({"id": "req", "type": "http.request", "retry": {"attempts": 2, "initial": "10ms"},
        "data": {"inputs": {"url": server.url("/limited")}}}),
    ));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    let seen = server.requests();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(950),
        "waited {:?}",
        seen[1].at.duration_since(seen[0].at)
    );
}

#[test]
fn the_circuit_breaker_opens_fails_fast_and_closes() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let server = TestServer::start(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            Reply::json(200, json!({"ok": true}))
        } else {
            Reply::json(500, json!({"error": "down"}))
        }
    });
    let settings = Settings {
        http: HttpConfig {
            breaker_threshold: 3,
            breaker_cooldown: "400ms".into(),
            ..HttpConfig::default()
        },
        ..Settings::default()
    };
    let h = Harness::new(settings);
    let wf = request(json!({"url": server.url("/svc")}));
    for _ in 0..3 {
        assert_eq!(h.run(wf.clone()).status, Status::Failed);
    }
    assert_eq!(server.requests().len(), 3);
    assert!(
        h.logs()
            .iter()
            .any(|l| l.contains("opened after 3 consecutive failures")),
        "{:?}",
        h.logs()
    );
    // Open: fails fast without reaching the server, and says so.
    let r = h.run(wf.clone());
    let err = r.nodes["req"].error.clone().unwrap();
    assert!(
        err["message"].as_str().unwrap().contains("circuit open"),
        "{err}"
    );
    assert_eq!(err["details"]["circuit"]["state"], "open");
    assert_eq!(server.requests().len(), 3, "no request while open");
    // After the cool-down a probe goes through; success closes the circuit.
    healthy.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(h.run(wf.clone()).status, Status::Succeeded);
    assert!(h.logs().iter().any(|l| l.contains("closed")));
    assert_eq!(h.run(wf).status, Status::Succeeded);
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn rate_limiting_spaces_requests_to_a_target() {
    let server = echo();
    let h = Harness::default();
    let started = Instant::now();
    let r = h.run(one(json!({"id": "req", "type": "http.request", "foreach": "{{ range(10) | list }}", "concurrency": 10,
        "data": {"inputs": {"url": server.url("/r"), "rate_limit": 20}}})));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    let elapsed = started.elapsed();
    // 10 requests at 20/s: the last may start no sooner than 9 × 50 ms.
    assert!(
        elapsed >= Duration::from_millis(440),
        "10 requests took only {elapsed:?}"
    );
    let seen = server.requests();
    let span = seen.last().unwrap().at.duration_since(seen[0].at);
    assert!(
        span >= Duration::from_millis(430),
        "requests spread over only {span:?}"
    );
}

#[test]
fn waiting_for_a_rate_limit_slot_does_not_count_against_the_timeout() {
    let server = echo();
    let h = Harness::default();
    // 4 requests at 4/s: the last waits ~750 ms for its slot, well past the
    // 300 ms request timeout, and must still succeed.
    let r = h.run(one(json!({"id": "req", "type": "http.request", "foreach": "{{ range(4) | list }}", "concurrency": 4,
        "data": {"inputs": {"url": server.url("/r"), "rate_limit": 4, "timeout": "300ms"}}})));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn timeouts_slow_loris_and_huge_responses_are_refused() {
    let server = TestServer::start(|req, _| match req.path.as_str() {
        "/late" => Reply::Delay(
            Duration::from_secs(3),
            Box::new(Reply::json(200, json!({}))),
        ),
        "/drip" => Reply::Slow {
            length: 100,
            every: Duration::from_millis(200),
        },
        "/huge" => Reply::Huge {
            bytes: 100 * 1024 * 1024,
            declare_length: true,
        },
        _ => Reply::Huge {
            bytes: 100 * 1024 * 1024,
            declare_length: false,
        },
    });
    let h = Harness::default();
    let started = Instant::now();
    let r = h.run(request(
        json!({"url": server.url("/late"), "timeout": "300ms"}),
    ));
    assert_eq!(r.nodes["req"].error.clone().unwrap()["kind"], "timeout");
    let r = h.run(request(
        json!({"url": server.url("/drip"), "timeout": "700ms"}),
    ));
    let err = r.nodes["req"].error.clone().unwrap();
    assert_eq!(
        err["kind"], "timeout",
        "a body trickling in must hit the timeout: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeouts took {:?}",
        started.elapsed()
    );
    let r = h.run(request(json!({"url": server.url("/huge")})));
    assert!(
        r.error.unwrap().contains("larger than 16777216 bytes"),
        "refused by Content-Length"
    );
    let r = h.run(request(
        json!({"url": server.url("/stream"), "max_response_bytes": 1048576}),
    ));
    assert!(
        r.error.unwrap().contains("larger than 1048576 bytes"),
        "refused while streaming"
    );
}

#[test]
fn connection_errors_are_network_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = Harness::default();
    let r = h.run(request(json!({"url": format!("http://127.0.0.1:{port}/")})));
    let err = r.nodes["req"].error.clone().unwrap();
    assert_eq!(err["kind"], "network");
    assert_eq!(err["retryable"], true);
    assert!(
        err["message"].as_str().unwrap().contains("cannot connect"),
        "{err}"
    );
}

fn llm_server() -> TestServer {
    TestServer::start(|req, _| {
        let body = req.json();
        let prompt = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string();
        match req.path.as_str() {
            "/v1/chat/completions" if body["stream"] == true => {
                let mut chunks: Vec<(Duration, Vec<u8>)> = ["Hel", "lo,\nwor", "ld"]
                    .iter()
                    .map(|t| {
                        (
                            Duration::from_millis(20),
                            format!(
                                "data: {}\n\n",
                                json!({"model": "m1", "choices": [{"delta": {"content": t}}]})
                            )
                            .into_bytes(),
                        )
                    })
                    .collect();
                chunks.push((Duration::ZERO, format!("data: {}\n\n", json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})).into_bytes()));
                chunks.push((Duration::ZERO, b"data: [DONE]\n\n".to_vec()));
                Reply::Chunks {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/event-stream".into())],
                    chunks,
                }
            }
            "/v1/chat/completions" => Reply::json(
                200,
                json!({
                    "model": body["model"], "choices": [{"message": {"role": "assistant", "content": format!("echo: {prompt}")}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
                }),
            ),
            "/bad/chat/completions" => Reply::json(200, json!({"unexpected": "shape"})),
            _ => Reply::json(
                200,
                json!({"model": "m", "choices": [{"message": {"content": "{\"answer\": 42}"}}], "usage": {}}),
            ),
        }
    })
}

fn chat(server: &TestServer, inputs: Value) -> Value {
    let mut inputs = inputs;
    if inputs.get("base_url").is_none() {
        inputs["base_url"] = json!(server.url("/v1"));
    }
    one(json!({"id": "ask", "type": "llm.chat", "data": {"inputs": inputs}}))
}

#[test]
fn llm_chat_sends_a_chat_completion_and_sums_usage() {
    let server = llm_server();
    let h = Harness::default();
    let r = h.run(chat(&server, json!({"model": "m1", "prompt": "hi", "system": "be brief", "temperature": 0.2, "max_tokens": 20, "api_key": "sk-test"})));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(r.output["text"], "echo: hi");
    assert_eq!(
        r.usage,
        Some(json!({"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}))
    );
    let seen = server.requests().pop().unwrap();
    let body = seen.json();
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(
        (body["temperature"].as_f64(), body["max_tokens"].as_u64()),
        (Some(0.2), Some(20))
    );
    assert_eq!(seen.header("authorization"), Some("Bearer sk-test"));
    // Usage is summed over every LLM node of a run (here a foreach of three).
    let r = h.run(one(json!({"id": "ask", "type": "llm.chat", "foreach": "{{ ['a', 'b', 'c'] }}",
        "data": {"inputs": {"model": "m1", "prompt": "{{ item }}", "base_url": server.url("/v1")}}})));
    assert_eq!(r.usage.unwrap()["total_tokens"], 27);
}

#[test]
fn llm_streaming_is_assembled_and_logged_live() {
    let server = llm_server();
    let h = Harness::default();
    let r = h.run(chat(
        &server,
        json!({"model": "m1", "prompt": "hi", "stream": true}),
    ));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(r.output["text"], "Hello,\nworld");
    assert_eq!(r.output["usage"]["total_tokens"], 8);
    let logs = h.logs();
    assert!(
        logs.contains(&"Hello,".to_string()) && logs.contains(&"world".to_string()),
        "{logs:?}"
    );
}

#[test]
fn json_mode_and_the_seed_alias() {
    let server = llm_server();
    let h = Harness::default();
    let r = h.run(chat(
        &server,
        json!({"model": "m", "prompt": "q", "json": true, "base_url": server.url("/json")}),
    ));
    assert_eq!(r.output["json"], json!({"answer": 42}));
    assert_eq!(
        server.requests().pop().unwrap().json()["response_format"],
        json!({"type": "json_object"})
    );
    // OpenAINode with the seed format's input names.
    let r = h.run(one(json!({"id": "ai", "type": "OpenAINode", "data": {"inputs": {
        "model": "gpt-x", "system_message": "sys", "prompt": "yo", "temperature": 0.5, "max_tokens": 5, "base_url": server.url("/v1")}}})));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    let body = server.requests().pop().unwrap().json();
    assert_eq!(body["model"], "gpt-x");
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "sys"})
    );
    assert_eq!(
        (body["temperature"].as_f64(), body["max_tokens"].as_u64()),
        (Some(0.5), Some(5))
    );
    // HttpRequest with a seed-style object body.
    let r = h.run(one(json!({"id": "h", "type": "HttpRequest", "data": {"inputs": {"url": server.url("/json"), "method": "post", "body": {"k": 1}}}})));
    assert_eq!(r.status, Status::Succeeded, "{:?}", r.error);
    assert_eq!(server.requests().pop().unwrap().json(), json!({"k": 1}));
}

#[test]
fn a_malformed_llm_reply_is_a_clear_error() {
    let server = llm_server();
    let h = Harness::default();
    let r = h.run(chat(
        &server,
        json!({"model": "m", "prompt": "q", "base_url": server.url("/bad")}),
    ));
    assert_eq!(r.status, Status::Failed);
    let msg = r.error.unwrap();
    assert!(
        msg.contains("not an OpenAI-style chat completion") && msg.contains("unexpected"),
        "{msg}"
    );
    let r = h.run(chat(&server, json!({"prompt": "no model"})));
    assert!(r.error.unwrap().contains("no model"));
}

#[test]
fn the_llm_cache_makes_reruns_free() {
    let server = llm_server();
    let cache = tempfile::tempdir().unwrap();
    let h = Harness::new(Settings {
        cache_dir: Some(cache.path().to_path_buf()),
        llm: LlmConfig::default(),
        ..Settings::default()
    });
    let wf = chat(
        &server,
        json!({"model": "m1", "prompt": "same", "cache": true}),
    );
    let first = h.run(wf.clone());
    assert_eq!(first.output["cached"], false);
    let second = h.run(wf);
    assert_eq!(second.output["cached"], true);
    assert_eq!(second.output["text"], first.output["text"]);
    assert_eq!(
        server.requests().len(),
        1,
        "the second run did not call the server"
    );
}
