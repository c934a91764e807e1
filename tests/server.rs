//! The daemon as a library (`fuse::daemon::serve`) started inside the test
//! process on an ephemeral port, with a channel as its shutdown signal.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helper::TestHome;

async fn call(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[test]
fn serve_runs_in_process_and_stops_on_its_shutdown_signal() {
    let home = TestHome::initialized();
    let token = std::fs::read_to_string(home.path().join("api-token"))
        .unwrap()
        .trim()
        .to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(fuse::daemon::serve(
            fuse::home::Home::at(home.path().to_path_buf()),
            listener,
            fuse::daemon::Options::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let client = reqwest::Client::new();
        // The listener is bound before serve starts: requests wait in its
        // backlog until the daemon accepts them, so no wait is needed here.
        let (code, health) =
            call(&client, &base, &token, reqwest::Method::GET, "/api/v1/health", None).await;
        assert_eq!((code, &health["status"]), (200, &json!("ok")), "{health}");
        let wf = json!({"name": "double", "params": [{"name": "n", "type": "integer", "required": true}],
            "nodes": [{"id": "d", "type": "transform.set", "data": {"inputs": {"values": {"twice": "{{ trigger.n * 2 }}"}}}}],
            "edges": []});
        let (code, r) =
            call(&client, &base, &token, reqwest::Method::POST, "/api/v1/workflows", Some(wf)).await;
        assert_eq!(code, 201, "{r}");
        let (code, r) = call(
            &client,
            &base,
            &token,
            reqwest::Method::POST,
            "/api/v1/workflows/double/run",
            Some(json!({"n": "21"})),
        )
        .await;
        assert_eq!(code, 202, "{r}");
        let id = r["run_id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        let run = loop {
            let (_, run) = call(
                &client,
                &base,
                &token,
                reqwest::Method::GET,
                &format!("/api/v1/executions/{id}"),
                None,
            )
            .await;
            if !matches!(run["status"].as_str(), Some("running" | "queued")) {
                break run;
            }
            assert!(Instant::now() < deadline, "the run did not finish: {run}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(run["output"], json!({"twice": 42}), "{run}");
        // The shutdown signal ends serve, which cleans up after itself.
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        assert!(!home.path().join("daemon.json").exists());
        assert!(reqwest::get(format!("{base}/api/v1/health")).await.is_err());
    });
}
