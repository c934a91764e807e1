//! The daemon as a library (`fuse::daemon::serve`) started inside the test
//! process on an ephemeral port, with a channel as its shutdown signal.

use serde_json::json;

use crate::daemon::{http, wait_run};
use crate::helper::TestHome;

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
    // The listener is bound before serve starts: requests wait in its backlog
    // until the daemon accepts them, so no wait is needed.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(fuse::daemon::serve(
        fuse::home::Home::at(home.path().to_path_buf()),
        listener,
        fuse::daemon::Options::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let api = |method: &str, path: &str, body: Option<serde_json::Value>| {
        http(
            method,
            &format!("{base}{path}"),
            Some(&token),
            &[],
            body.as_ref(),
        )
    };
    let (code, health) = api("GET", "/api/v1/health", None);
    assert_eq!((code, &health["status"]), (200, &json!("ok")), "{health}");
    let wf = json!({"name": "double", "params": [{"name": "n", "type": "integer", "required": true}],
        "nodes": [{"id": "d", "type": "transform.set", "data": {"inputs": {"values": {"twice": "{{ trigger.n * 2 }}"}}}}],
        "edges": []});
    let (code, r) = api("POST", "/api/v1/workflows", Some(wf));
    assert_eq!(code, 201, "{r}");
    let (code, r) = api(
        "POST",
        "/api/v1/workflows/double/run",
        Some(json!({"n": "21"})),
    );
    assert_eq!(code, 202, "{r}");
    let run = wait_run(&base, &token, r["run_id"].as_str().unwrap());
    assert_eq!(run["output"], json!({"twice": 42}), "{run}");
    // The shutdown signal ends serve, which cleans up after itself.
    stop.send(()).unwrap();
    rt.block_on(server).unwrap().unwrap();
    assert!(!home.path().join("daemon.json").exists());
    assert!(
        std::net::TcpStream::connect(base.trim_start_matches("http://")).is_err(),
        "the listener is closed"
    );
}
