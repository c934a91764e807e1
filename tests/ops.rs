//! Issue 17: operations: probes for monitors.

use serde_json::Value;

use crate::daemon::{http, start};
use crate::helper::TestHome;

#[test]
fn the_probes_answer_without_a_token_and_readiness_follows_the_database() {
    let home = TestHome::initialized();
    let d = start(&home);
    let get = |path: &str| http("GET", &format!("{}{path}", d.url), None, &[], None);
    let (code, body) = get("/healthz");
    assert_eq!((code, body), (200, serde_json::json!({"status": "ok"})));
    let ready = crate::daemon::wait_for("the daemon to be ready", || {
        let (code, body) = get("/readyz");
        (code == 200).then_some(body)
    });
    assert_eq!(ready["status"], "ready");
    for check in ["database", "history", "scheduler"] {
        assert_eq!(ready["checks"][check], "ok", "{ready}");
    }
    // Another program holding the write lock: the daemon could not record a
    // run, so it is not ready; it is still alive.
    let outside = rusqlite::Connection::open(home.path().join("fuse.db")).unwrap();
    outside.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let (code, body) = get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["failing"], "database");
    let why = body["checks"]["database"].as_str().unwrap();
    assert!(
        why.contains("locked") || why.contains("did not answer"),
        "{why}"
    );
    assert_eq!(get("/healthz").0, 200);
    outside.execute_batch("COMMIT;").unwrap();
    let body: Value = crate::daemon::wait_for("readiness to come back", || {
        let (code, body) = get("/readyz");
        (code == 200).then_some(body)
    });
    assert_eq!(body["status"], "ready");
    // Probes only answer GET (and HEAD); the details stay behind the token.
    assert_eq!(
        http("POST", &format!("{}/healthz", d.url), None, &[], None).0,
        404
    );
    assert_eq!(get("/api/v1/health").0, 401);
}
