//! Issue 19: the store's behaviour is one suite, run against both backends:
//! SQLite (a real `fuse.db` file) and PostgreSQL (a real server, a database
//! of its own). Each check below runs on both and must give the same answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use fuse::store::Db;
use fuse::store::credentials::{CredentialStore, Sealed};
use fuse::store::pg::db::PgDb;
use fuse::store::schedules::StoredSchedule;
use fuse::store::tokens::Scope;
use fuse::store::workflows::{Rollback, definition_hash};

use crate::helper::{TestHome, json_of};
use crate::scale_out::TestDb;

/// Both stores on one home: SQLite in its `fuse.db`, and PostgreSQL in a
/// database of its own that got the home's key-store records (as moving a
/// home there copies them), so a vault opens on either.
struct Both {
    home: TestHome,
    sqlite: fuse::store::Sqlite,
    pg: PgDb,
    test_db: TestDb,
}

fn both() -> Both {
    let home = TestHome::initialized();
    let store = fuse::store::Store::open(&home.path().join("fuse.db")).unwrap();
    let meta: Vec<(String, String)> = store
        .conn()
        .prepare("SELECT key, value FROM meta")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let sqlite = fuse::store::Sqlite::new(store, home.path().join("blobs")).unwrap();
    let test_db = TestDb::new();
    let pg = PgDb::new(test_db.pg(), test_db.rt.handle().clone());
    std::thread::scope(|s| {
        s.spawn(|| {
            for (key, value) in &meta {
                pg.set_meta(key, value).unwrap();
            }
        });
    });
    Both {
        home,
        sqlite,
        pg,
        test_db,
    }
}

/// Runs `check` on each backend, on a thread of its own (the store blocks,
/// so not on a runtime).
fn on_both(check: impl Fn(&str, &dyn Db) + Send + Sync) {
    let both = both();
    let backends: [(&str, &dyn Db); 2] = [("sqlite", &both.sqlite), ("postgres", &both.pg)];
    for (name, db) in backends {
        std::thread::scope(|s| {
            s.spawn(|| check(name, db));
        });
    }
}

#[test]
fn workflows_and_versions_behave_the_same() {
    on_both(|name, db| {
        let v1 = r#"{"name":"w","nodes":[{"id":"a","type":"log"}]}"#;
        let v2 = r#"{"name":"w","nodes":[{"id":"b","type":"log"}]}"#;
        // Where daemons share the store, every change is counted for the others.
        let counted = |before: Option<i64>| {
            let now = db.workflows_version().unwrap();
            match name {
                "postgres" => assert!(now > before, "{name}: {before:?} then {now:?}"),
                _ => assert_eq!(now, None, "{name}: one daemon owns it"),
            }
            now
        };
        let seen = db.workflows_version().unwrap();
        assert_eq!(
            db.store_version("w", v1, None).unwrap(),
            (1, true),
            "{name}"
        );
        counted(seen);
        assert_eq!(
            db.store_version("w", v1, None).unwrap(),
            (1, false),
            "{name}: same content"
        );
        let file = std::path::Path::new("/srv/flows/w.json");
        assert_eq!(
            db.store_version("w", v2, Some(file)).unwrap(),
            (2, true),
            "{name}"
        );

        let list = db.list_workflows().unwrap();
        assert_eq!(list.len(), 1, "{name}");
        assert_eq!(
            (list[0].name.as_str(), list[0].enabled, list[0].version),
            ("w", true, Some(2))
        );
        let current = db.current_workflow("w").unwrap().unwrap();
        assert_eq!(
            (current.definition.as_str(), current.version),
            (v2, 2),
            "{name}"
        );
        assert_eq!(
            current.source.as_deref(),
            Some("/srv/flows/w.json"),
            "{name}"
        );
        assert_eq!(
            db.workflows_from_files().unwrap(),
            vec![("w".to_string(), "/srv/flows/w.json".to_string())],
            "{name}"
        );

        let versions = db.workflow_versions("w").unwrap().unwrap();
        let numbers: Vec<(i64, bool)> = versions.iter().map(|v| (v.version, v.current)).collect();
        assert_eq!(numbers, vec![(2, true), (1, false)], "{name}: newest first");
        assert_eq!(versions[1].hash, definition_hash(v1), "{name}");
        let (row, text) = db.workflow_version("w", 1).unwrap().unwrap();
        assert_eq!((row.version, text.as_str()), (1, v1), "{name}");
        assert!(db.workflow_version("w", 7).unwrap().is_none(), "{name}");
        assert_eq!(
            db.definition(&definition_hash(v1)).unwrap().as_deref(),
            Some(v1)
        );
        assert!(db.definition("0000").unwrap().is_none(), "{name}");

        let seen = db.workflows_version().unwrap();
        assert_eq!(
            db.rollback_workflow("w", 1).unwrap(),
            Rollback::Done,
            "{name}"
        );
        counted(seen);
        assert_eq!(
            db.current_workflow("w").unwrap().unwrap().definition,
            v1,
            "{name}"
        );
        assert_eq!(
            db.rollback_workflow("w", 9).unwrap(),
            Rollback::NoVersion,
            "{name}"
        );
        assert_eq!(
            db.rollback_workflow("nope", 1).unwrap(),
            Rollback::NoWorkflow,
            "{name}"
        );
        // Deploying v2 again after the rollback makes a version of it again.
        assert_eq!(
            db.store_version("w", v2, None).unwrap(),
            (3, true),
            "{name}"
        );

        assert_eq!(db.enabled_workflows().unwrap().len(), 1, "{name}");
        let seen = db.workflows_version().unwrap();
        assert!(db.set_workflow_enabled("w", false).unwrap(), "{name}");
        counted(seen);
        assert!(
            db.enabled_workflows().unwrap().is_empty(),
            "{name}: disabled"
        );
        assert!(!db.list_workflows().unwrap()[0].enabled, "{name}");
        assert!(!db.set_workflow_enabled("nope", true).unwrap(), "{name}");

        let seen = db.workflows_version().unwrap();
        assert!(db.delete_workflow("w").unwrap(), "{name}");
        counted(seen);
        assert!(!db.delete_workflow("w").unwrap(), "{name}: already gone");
        assert!(db.workflow_versions("w").unwrap().is_none(), "{name}");
        assert!(db.current_workflow("w").unwrap().is_none(), "{name}");
    });
}

fn cron(workflow: &str, spec: &str, next: i64) -> StoredSchedule {
    StoredSchedule {
        workflow: workflow.into(),
        node_id: "tick".into(),
        kind: "cron".into(),
        spec: spec.into(),
        timezone: None,
        missed: "skip".into(),
        overlap: "allow".into(),
        next_fire_at: Some(next),
        max_fires: None,
        fired: 0,
        retries: 0,
    }
}

#[test]
fn schedules_keep_their_state_the_same_way() {
    on_both(|name, db| {
        db.store_version("w", r#"{"nodes":[]}"#, None).unwrap();
        db.store_version("other", r#"{"nodes":[]}"#, None).unwrap();
        db.sync_schedules(&[cron("w", "* * * * *", 1_000)]).unwrap();
        assert_eq!(db.due_schedules(Some(2_000)).unwrap().len(), 1, "{name}");
        assert!(
            db.due_schedules(Some(500)).unwrap().is_empty(),
            "{name}: not due yet"
        );

        db.set_schedule_next("w", "tick", Some(5_000), Some(1_500))
            .unwrap();
        let due = db.due_schedules(None).unwrap();
        assert_eq!(
            (due[0].next_fire_at, due[0].fired),
            (Some(5_000), 1),
            "{name}"
        );
        db.set_schedule_next("w", "tick", Some(6_000), None)
            .unwrap();
        assert_eq!(
            db.due_schedules(None).unwrap()[0].fired,
            1,
            "{name}: not a fire"
        );

        // Unchanged: keeps its fire time and count, takes new policies.
        let mut same = cron("w", "* * * * *", 99_000);
        same.overlap = "skip".into();
        db.sync_schedules(&[same]).unwrap();
        let due = db.due_schedules(None).unwrap();
        assert_eq!(
            (due[0].next_fire_at, due[0].fired),
            (Some(6_000), 1),
            "{name}"
        );
        assert_eq!(due[0].overlap, "skip", "{name}");
        let rows = db.schedules().unwrap();
        assert_eq!(rows.len(), 1, "{name}");
        assert_eq!(
            rows[0].next_fire_at.as_deref(),
            Some("1970-01-01T00:00:06Z"),
            "{name}"
        );
        assert_eq!(
            rows[0].last_fired_at.as_deref(),
            Some("1970-01-01T00:00:01.5Z"),
            "{name}"
        );

        // Changed: starts over from the new fire time.
        db.sync_schedules(&[cron("w", "0 * * * *", 42_000)])
            .unwrap();
        let due = db.due_schedules(None).unwrap();
        assert_eq!(
            (due[0].next_fire_at, due[0].fired),
            (Some(42_000), 0),
            "{name}"
        );

        // A disabled workflow's schedules are not due; removed triggers go.
        db.set_workflow_enabled("w", false).unwrap();
        assert!(db.due_schedules(None).unwrap().is_empty(), "{name}");
        assert!(db.schedules().unwrap().is_empty(), "{name}");
        db.set_workflow_enabled("w", true).unwrap();
        db.sync_schedules(&[]).unwrap();
        assert!(
            db.due_schedules(None).unwrap().is_empty(),
            "{name}: removed"
        );
    });
}

#[test]
fn tokens_are_kept_as_hashes_the_same_way() {
    on_both(|name, db| {
        let before = db.tokens_version().unwrap();
        db.add_token("ci", "secret-ci-token", Scope::Run).unwrap();
        let after = db.tokens_version().unwrap();
        assert_ne!(before, after, "{name}: adding changes the version");
        let hashes = db.token_hashes().unwrap();
        let ci = hashes.iter().find(|(_, n, _)| n == "ci").unwrap();
        assert_eq!(ci.0, fuse::store::tokens::hash("secret-ci-token"), "{name}");
        assert_eq!(ci.2, Scope::Run, "{name}");

        let taken = db
            .add_token("ci", "another", Scope::Read)
            .unwrap_err()
            .to_string();
        assert!(taken.contains("exists"), "{name}: {taken}");
        let bad = db
            .add_token("no spaces", "x", Scope::Read)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not a valid token name"), "{name}: {bad}");

        db.touch_tokens(&[("ci".into(), 2_000), ("ci".into(), 1_000)])
            .unwrap();
        let listed = db.list_tokens().unwrap();
        let ci = listed.iter().find(|t| t.name == "ci").unwrap();
        assert_eq!(ci.last_used_at, Some(2_000), "{name}: the latest use stays");

        assert!(db.revoke_token("ci").unwrap(), "{name}");
        assert_ne!(
            db.tokens_version().unwrap(),
            after,
            "{name}: revoking changes it"
        );
        assert!(!db.revoke_token("ci").unwrap(), "{name}: already gone");
        assert!(
            db.token_hashes().unwrap().iter().all(|(_, n, _)| n != "ci"),
            "{name}"
        );
    });
}

#[test]
fn conversation_memory_behaves_the_same() {
    on_both(|name, db| {
        db.memory_append("alice", &[("user", "hi"), ("assistant", "hello!")])
            .unwrap();
        db.memory_append("bob", &[("user", "yo")]).unwrap();
        let sessions = db.memory_sessions().unwrap();
        let order: Vec<&str> = sessions.iter().map(|s| s.session.as_str()).collect();
        assert_eq!(order, ["bob", "alice"], "{name}: most recent first");
        assert_eq!(sessions[1].messages, 2, "{name}");
        assert!(sessions[1].tokens > 0, "{name}");
        let messages = db.memory_messages("alice").unwrap().unwrap();
        let roles: Vec<(&str, &str)> = messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect();
        assert_eq!(roles, [("user", "hi"), ("assistant", "hello!")], "{name}");
        assert!(db.memory_summary("alice").unwrap().is_none(), "{name}");
        assert_eq!(db.memory_clear("alice").unwrap(), 2, "{name}");
        assert!(db.memory_messages("alice").unwrap().is_none(), "{name}");
        assert_eq!(db.memory_clear("alice").unwrap(), 0, "{name}");
    });
}

#[test]
fn credential_rows_behave_the_same() {
    let both = both();
    let backends: [(&str, &dyn CredentialStore); 2] =
        [("sqlite", &both.sqlite), ("postgres", &both.pg)];
    for (name, store) in backends {
        std::thread::scope(|s| {
            s.spawn(|| {
                let sealed = Sealed {
                    name: "gh".into(),
                    kind: "bearer".into(),
                    nonce: vec![1, 2, 3],
                    ciphertext: vec![0, 255, 7, 9],
                };
                assert!(store.any_sealed_credential().unwrap().is_none(), "{name}");
                store
                    .put_credential(&sealed, r#"["token"]"#, 1_000)
                    .unwrap();
                let back = store.sealed_credential("gh").unwrap().unwrap();
                assert_eq!(
                    (back.kind.as_str(), back.nonce, back.ciphertext),
                    ("bearer", vec![1, 2, 3], vec![0, 255, 7, 9])
                );
                store.touch_credential("gh", 3_000).unwrap();
                let listed = store.list_credentials().unwrap();
                assert_eq!(listed.len(), 1, "{name}");
                assert_eq!(listed[0].fields, vec!["token".to_string()], "{name}");
                assert_eq!(
                    (listed[0].created_at, listed[0].last_used_at),
                    (1_000, Some(3_000))
                );

                // Re-sealing is all or nothing, with the key record in the same commit.
                let mut fail = |_: &Sealed| -> fuse::Result<(Vec<u8>, Vec<u8>)> {
                    Err(fuse::Error::Credential("refused".into()))
                };
                assert!(
                    store
                        .reseal_credentials(&mut fail, ("test_key", "new"))
                        .is_err()
                );
                assert_eq!(store.meta("test_key").unwrap(), None, "{name}: rolled back");
                let mut reseal = |s: &Sealed| -> fuse::Result<(Vec<u8>, Vec<u8>)> {
                    Ok((vec![9], s.ciphertext.iter().rev().copied().collect()))
                };
                assert_eq!(
                    store
                        .reseal_credentials(&mut reseal, ("test_key", "new"))
                        .unwrap(),
                    1
                );
                assert_eq!(
                    store.meta("test_key").unwrap().as_deref(),
                    Some("new"),
                    "{name}"
                );
                let back = store.sealed_credential("gh").unwrap().unwrap();
                assert_eq!(
                    (back.nonce, back.ciphertext),
                    (vec![9], vec![9, 7, 255, 0]),
                    "{name}"
                );

                assert!(store.remove_credential("gh").unwrap(), "{name}");
                assert!(!store.remove_credential("gh").unwrap(), "{name}");
                assert!(store.sealed_credential("gh").unwrap().is_none(), "{name}");
            });
        });
    }
}

#[test]
fn the_vault_keeps_credentials_encrypted_in_postgres() {
    let Both {
        home, pg, test_db, ..
    } = both();
    let home = fuse::home::Home::at(home.path().to_path_buf());
    let store: Arc<dyn CredentialStore> = Arc::new(pg);
    std::thread::scope(|s| {
        s.spawn(|| {
            let vault = fuse::secrets::Vault::open_on(&home, store.clone()).unwrap();
            let mut fields = BTreeMap::new();
            fields.insert(
                "token".to_string(),
                zeroize::Zeroizing::new("ghp-very-secret".to_string()),
            );
            vault.set("gh", "bearer", &fields).unwrap();
            assert_eq!(
                vault.get("gh").unwrap().field("token"),
                Some("ghp-very-secret")
            );
            assert_eq!(vault.list().unwrap()[0].name, "gh");
        });
    });
    // What PostgreSQL holds is the sealed form only.
    let rows =
        test_db.query("SELECT name, encode(ciphertext, 'escape') AS c, fields FROM credentials");
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].to_string().contains("ghp-very-secret"), "{rows:?}");
    assert_eq!(rows[0]["fields"], r#"["token"]"#);
}

/// Issue 19's "done when": a home moves to PostgreSQL (`fuse init --store`),
/// its commands and daemon use it there, and a second machine's daemon on
/// the same store serves the same workflows, takes the same tokens, opens
/// the same credentials, and follows what the other deploys.
#[test]
fn a_home_moves_to_postgres_and_another_machine_shares_its_store() {
    use crate::daemon::{http, start_with};
    use crate::helper::stdout_of;
    use serde_json::{Value, json};
    let db = TestDb::new();
    let a = TestHome::initialized();
    // Home A, on SQLite: a deployed workflow, a token and a credential.
    {
        let d = start_with(&a, &[]);
        assert_eq!(
            d.call(
                "POST",
                "/api/v1/workflows",
                Some(crate::scale_out::hooked())
            )
            .0,
            201
        );
    }
    let made: Value = json_of(
        a.cmd()
            .args(["tokens", "new", "ci", "--scope", "read", "--json"]),
    );
    let ci_token = made["token"].as_str().unwrap().to_string();
    stdout_of(
        a.cmd()
            .args(["creds", "set", "gh", "--type", "bearer", "--stdin"])
            .write_stdin(r#"{"token": "ghp-moved-secret"}"#),
    );

    // The move.
    let moved = stdout_of(a.cmd().args(["init", "--store", &db.url]));
    assert!(moved.contains("now on PostgreSQL"), "{moved}");
    assert!(
        moved.contains("1 workflow(s) with 1 version(s), 2 token(s), 1 credential(s)"),
        "{moved}"
    );
    let config = std::fs::read_to_string(a.path().join("fuse.toml")).unwrap();
    assert!(
        config.contains(&format!("url = \"{}\"", db.url)),
        "{config}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.path().join("fuse.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "fuse.toml holds the URL: owner only");
    assert_eq!(db.count("SELECT 1 FROM workflows WHERE name = 'hooked'"), 1);
    assert_eq!(
        db.count("SELECT 1 FROM api_tokens WHERE name IN ('ci', 'init')"),
        2
    );
    let sealed =
        db.query("SELECT encode(ciphertext, 'escape') AS c FROM credentials WHERE name = 'gh'");
    assert_eq!(sealed.len(), 1);
    assert!(!sealed[0].to_string().contains("ghp-moved-secret"));
    // Moving again copies nothing twice.
    let again = stdout_of(a.cmd().args(["init", "--store", &db.url]));
    assert!(
        again.contains("0 workflow(s)") && again.contains("kept     workflow hooked"),
        "{again}"
    );

    let doctor = stdout_of(a.cmd().args(["doctor"]));
    assert!(
        doctor.contains("answers; its schema is current"),
        "{doctor}"
    );
    let broken = a
        .cmd()
        .env("FUSE_STORE_URL", "postgres://nobody@127.0.0.1:1/nowhere")
        .args(["doctor"])
        .output()
        .unwrap();
    assert!(!broken.status.success());
    let said = String::from_utf8_lossy(&broken.stdout).to_string()
        + &String::from_utf8_lossy(&broken.stderr);
    assert!(
        said.contains("cannot connect") && said.contains("store.url"),
        "{said}"
    );
    let version: Value = json_of(a.cmd().args(["version", "--json"]));
    assert!(
        version["store"]
            .as_str()
            .unwrap()
            .starts_with("postgres://"),
        "{version}"
    );
    // A's commands now use PostgreSQL: a token made here is there.
    stdout_of(a.cmd().args(["tokens", "new", "ops", "--scope", "admin"]));
    assert_eq!(db.count("SELECT 1 FROM api_tokens WHERE name = 'ops'"), 1);
    let check = stdout_of(a.cmd().args(["creds", "check"]));
    assert!(check.contains("gh"), "{check}");

    // A's daemon, started from its config alone, serves the moved workflow
    // and runs its webhooks through the queue.
    let da = start_with(&a, &[]);
    let (status, accepted) = http(
        "POST",
        &format!("{}/webhook/orders", da.url),
        None,
        &[],
        Some(&json!({"n": 1})),
    );
    assert_eq!(status, 202, "{accepted}");
    crate::wait::wait_for_within(
        "A's run on the queue",
        std::time::Duration::from_secs(30),
        || {
            (db.count(
                "SELECT 1 FROM queue_runs WHERE workflow = 'hooked' AND status = 'succeeded'",
            ) == 1)
                .then_some(())
        },
    );

    // Machine B: its own home pointed at the store, told it needs A's
    // master key, and given it.
    let b = TestHome::initialized();
    let joined = b.cmd().args(["init", "--store", &db.url]).output().unwrap();
    assert!(joined.status.success());
    let note = String::from_utf8_lossy(&joined.stderr);
    assert!(
        note.contains("master key is not the key the store's credentials are sealed with"),
        "{note}"
    );
    std::fs::copy(
        a.path().join("keys/master.key"),
        b.path().join("keys/master.key"),
    )
    .unwrap();
    let db_b = start_with(&b, &[("FUSE_STORE_URL", db.url.as_str())]);
    // The workflow deployed on A is served by B, and A's token works on B.
    let (status, listed) = http(
        "GET",
        &format!("{}/api/v1/workflows", db_b.url),
        Some(&ci_token),
        &[],
        None,
    );
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["workflows"][0]["name"], "hooked", "{listed}");
    let (status, _) = http(
        "POST",
        &format!("{}/webhook/orders", db_b.url),
        None,
        &[],
        Some(&json!({"n": 2})),
    );
    assert_eq!(status, 202);
    crate::wait::wait_for_within(
        "B's run on the queue",
        std::time::Duration::from_secs(30),
        || {
            (db.count(
                "SELECT 1 FROM queue_runs WHERE workflow = 'hooked' AND status = 'succeeded'",
            ) == 2)
                .then_some(())
        },
    );
    // B's own token became one of the store's (A's commands go on working).
    assert_eq!(
        db.count("SELECT 1 FROM api_tokens WHERE name LIKE 'init-%' AND scope = 'admin'"),
        1
    );
    // B opens A's credential with the shared key.
    let check = stdout_of(
        b.cmd()
            .env("FUSE_STORE_URL", &db.url)
            .args(["creds", "check"]),
    );
    assert!(check.contains("gh"), "{check}");

    // A workflow deployed through B is served by A without a restart.
    let second = json!({"name": "second", "nodes": [
        {"id": "in", "type": "trigger.webhook", "data": {"inputs": {"path": "second"}}},
        {"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"ok": true}}}}
    ], "edges": [{"source": "in", "target": "s"}]});
    assert_eq!(db_b.call("POST", "/api/v1/workflows", Some(second)).0, 201);
    // The status a daemon answers a call of the `second` webhook with.
    let hook = |daemon: &str| {
        http(
            "POST",
            &format!("{daemon}/webhook/second"),
            None,
            &[],
            Some(&json!({})),
        )
        .0
    };
    crate::wait::wait_for_within(
        "A to serve B's deploy",
        std::time::Duration::from_secs(10),
        || (hook(&da.url) == 202).then_some(()),
    );
    // Disabled through A: B stops serving it.
    assert_eq!(
        da.call("POST", "/api/v1/workflows/second/disable", None).0,
        200
    );
    crate::wait::wait_for_within(
        "B to stop serving it",
        std::time::Duration::from_secs(10),
        || (hook(&db_b.url) == 404).then_some(()),
    );
    // `fuse export` of a home on PostgreSQL takes the store's workflows and
    // credentials, which `fuse import` puts into a home on SQLite.
    let pass = a.tmp().join("pass.txt");
    std::fs::write(&pass, "a passphrase").unwrap();
    let archive = a.tmp().join("home.tar.zst");
    let exported = a
        .cmd()
        .args(["export", "-o"])
        .arg(&archive)
        .arg("--passphrase-file")
        .arg(&pass)
        .output()
        .unwrap();
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let c = TestHome::initialized();
    let imported = c
        .cmd()
        .arg("import")
        .arg(&archive)
        .arg("--passphrase-file")
        .arg(&pass)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&imported.stderr);
    assert!(
        said.contains("imported 2 workflow(s), 1 credential(s)"),
        "{said}"
    );

    // A one-off `fuse run` on a home on PostgreSQL is kept there too: listed
    // once by the home itself, and found by another home on the store.
    let oneoff = a.write(
        "oneoff.json",
        &json!({"name": "oneoff", "nodes": [{"id": "s", "type": "transform.set",
            "data": {"inputs": {"values": {"ok": true}}}}]}),
    );
    stdout_of(a.cmd().arg("run").arg(&oneoff));
    assert_eq!(
        db.count("SELECT 1 FROM queue_runs WHERE workflow = 'oneoff' AND status = 'succeeded' AND worker LIKE 'fuse run %'"),
        1
    );
    let mine: Value = json_of(
        a.cmd()
            .args(["runs", "list", "--workflow", "oneoff", "--json"]),
    );
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    let theirs: Value = json_of(b.cmd().env("FUSE_STORE_URL", &db.url).args([
        "runs",
        "list",
        "--workflow",
        "oneoff",
        "--json",
    ]));
    assert_eq!(theirs.as_array().map(Vec::len), Some(1), "{theirs}");

    // With no daemon running, A's commands read the queue's runs too.
    drop((da, db_b));
    let listed: Value = json_of(a.cmd().args(["runs", "list", "--json"]));
    let runs = listed
        .as_array()
        .or_else(|| listed["runs"].as_array())
        .cloned()
        .unwrap_or_default();
    let hooked = runs.iter().filter(|r| r["workflow"] == "hooked").count();
    assert_eq!(hooked, 2, "{listed}");
    let shown: Value =
        json_of(
            a.cmd()
                .args(["runs", "show", runs[0]["id"].as_str().unwrap(), "--json"]),
        );
    assert_eq!(shown["status"], "succeeded", "{shown}");
}

/// Conversation memory and vector collections move with the home and are
/// the store's: a chat on a second home on the same store goes on where the
/// first home left off, and a query there finds what the first home indexed.
#[test]
fn memory_and_collections_move_and_are_shared_on_postgres() {
    use crate::helper::stdout_of;
    use serde_json::{Value, json};
    let db = TestDb::new();
    let model = crate::ai::echo_model();
    let chat = json!({"name": "chat", "params": [{"name": "message", "type": "string"}],
        "nodes": [{"id": "chat", "type": "llm.chat", "data": {"inputs": {
            "base_url": model.url("/v1"), "model": "m",
            "prompt": "{{ trigger.message }}", "memory": {"session": "alice"}}}}]});
    let say = |home: &TestHome, env: &[(&str, &str)], message: &str| -> String {
        let file = home.write("chat.json", &chat);
        let mut cmd = home.cmd();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = stdout_of(
            cmd.arg("run")
                .arg(&file)
                .args(["--input", &format!("message={message}")]),
        );
        serde_json::from_str::<Value>(&out).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = TestHome::initialized();
    assert_eq!(say(&a, &[], "one"), "1 messages; you said one");
    assert_eq!(say(&a, &[], "two"), "3 messages; you said two");
    let index = a.write(
        "index.json",
        &json!({"nodes": [{"id": "up", "type": "vector.upsert", "data": {"inputs": {
            "collection": "docs", "documents": [
                {"id": "red", "text": "red", "embedding": [1.0, 0.0]},
                {"id": "blue", "text": "blue", "embedding": [0.0, 1.0]}]}}}]}),
    );
    stdout_of(a.cmd().arg("run").arg(&index));
    let moved = stdout_of(a.cmd().args(["init", "--store", &db.url]));
    assert!(
        moved.contains("1 memory session(s), 1 vector collection(s)"),
        "{moved}"
    );
    assert_eq!(
        db.count("SELECT 1 FROM vectors WHERE collection = 'docs'"),
        2
    );
    assert_eq!(
        db.count("SELECT 1 FROM memory_messages WHERE session = 'alice'"),
        4
    );

    let b = TestHome::initialized();
    std::fs::copy(
        a.path().join("keys/master.key"),
        b.path().join("keys/master.key"),
    )
    .unwrap();
    assert_eq!(
        say(&b, &[("FUSE_STORE_URL", &db.url)], "three"),
        "5 messages; you said three",
        "B's chat sees what was said on A"
    );
    assert_eq!(
        db.count("SELECT 1 FROM memory_messages WHERE session = 'alice'"),
        6
    );
    let query = b.write(
        "query.json",
        &json!({"nodes": [{"id": "q", "type": "vector.query", "data": {"inputs": {
            "collection": "docs", "embedding": [0.1, 0.9], "top_k": 1}}}]}),
    );
    let found: Value = json_of(
        b.cmd()
            .env("FUSE_STORE_URL", &db.url)
            .arg("run")
            .arg(&query),
    );
    assert_eq!(found["matches"][0]["id"], "blue", "{found}");
    // B's own file holds none of it; A's commands see all of it.
    let local = fuse::store::Store::open(&b.path().join("fuse.db")).unwrap();
    assert!(local.memory_sessions().unwrap().is_empty());
    let list: Value = json_of(a.cmd().args(["memory", "list", "--json"]));
    assert_eq!(list[0]["session"], "alice", "{list}");
    assert_eq!(list[0]["messages"], 6, "{list}");
}

/// `vector.upsert`, `vector.query` and `vector.delete` behave the same with
/// the collections in PostgreSQL (the same checks as on SQLite, in
/// tests/ai.rs), and keep them there.
#[test]
fn vector_collections_behave_the_same_on_postgres() {
    let db = TestDb::new();
    let home = TestHome::initialized();
    crate::ai::collections_behave(&home, Some(&db.url));
    let file = home.write(
        "keep.json",
        &serde_json::json!({"nodes": [{"id": "up", "type": "vector.upsert", "data": {"inputs": {
            "collection": "kept", "documents": [{"id": "x", "text": "x", "embedding": [0.0, 1.0]}]}}}]}),
    );
    crate::helper::stdout_of(
        home.cmd()
            .env("FUSE_STORE_URL", &db.url)
            .arg("run")
            .arg(&file),
    );
    assert_eq!(
        db.count("SELECT 1 FROM vectors WHERE collection = 'kept'"),
        1
    );
    let local = fuse::store::Store::open(&home.path().join("fuse.db")).unwrap();
    assert!(
        local.vector_collections().unwrap().is_empty(),
        "nothing in the home's file"
    );
}

/// A run reads the same from either history: run once in process (SQLite
/// history) and once through the queue by a worker (PostgreSQL), its page
/// has the same nodes, attempts, foreach items, inputs, outputs and log
/// lines, and the same result.
#[test]
fn a_run_reads_the_same_from_sqlite_history_and_from_the_queue() {
    use crate::helper::stdout_of;
    use serde_json::{Value, json};
    let db = TestDb::new();
    let home = TestHome::initialized();
    let _worker = crate::scale_out::Worker::start(home.path(), &db, &home.tmp().join("w.log"), &[]);
    let wf = home.write(
        "same.json",
        &json!({"name": "same", "params": [{"name": "n", "type": "number"}], "nodes": [
            {"id": "start", "type": "trigger.manual"},
            {"id": "double", "type": "transform.set", "data": {"inputs": {"values": {"n": "{{ trigger.n * 2 }}"}}}},
            {"id": "each", "type": "transform.set", "foreach": "{{ [1, 2] }}",
             "data": {"inputs": {"values": {"item": "{{ item }}"}}}},
            {"id": "say", "type": "log", "data": {"inputs": {"message": "n was {{ trigger.n }}"}}}
        ], "edges": [
            {"source": "start", "target": "double"},
            {"source": "double", "target": "each"},
            {"source": "each", "target": "say"}
        ]}),
    );
    stdout_of(home.cmd().arg("run").arg(&wf).args(["--input", "n=3"]));
    stdout_of(
        home.cmd()
            .env("FUSE_STORE_URL", &db.url)
            .arg("run")
            .arg(&wf)
            .args(["--queue", "--input", "n=3"]),
    );
    // Both, newest (the queued one) first, through the store's view.
    let listed: Value = json_of(
        home.cmd()
            .env("FUSE_STORE_URL", &db.url)
            .args(["runs", "list", "--json"]),
    );
    let runs = listed
        .as_array()
        .or_else(|| listed["runs"].as_array())
        .cloned()
        .unwrap();
    assert_eq!(runs.len(), 2, "{listed}");
    let page = |id: &str| -> (Value, Vec<Value>, Vec<String>) {
        let shown: Value = json_of(
            home.cmd()
                .env("FUSE_STORE_URL", &db.url)
                .args(["runs", "show", id, "--json"]),
        );
        let mut nodes: Vec<Value> = shown["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                json!([
                    n["node_id"],
                    n["node_type"],
                    n["attempt"],
                    n["item"],
                    n["status"],
                    n["input"],
                    n["output"],
                    n["error"]
                ])
            })
            .collect();
        nodes.sort_by_key(|n| n.to_string());
        let logs: Value = json_of(
            home.cmd()
                .env("FUSE_STORE_URL", &db.url)
                .args(["runs", "logs", id, "--json"]),
        );
        let lines = logs
            .as_array()
            .or_else(|| logs["logs"].as_array())
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|l| format!("{} {} {}", l["node_id"], l["level"], l["message"]))
            .collect();
        (
            json!([shown["status"], shown["output"], shown["input"]]),
            nodes,
            lines,
        )
    };
    let queued = page(runs[0]["id"].as_str().unwrap());
    let local = page(runs[1]["id"].as_str().unwrap());
    assert_eq!(queued.0, local.0, "the run");
    assert_eq!(queued.1, local.1, "its nodes");
    assert_eq!(queued.2, local.2, "its log lines");
    assert!(local.1.len() >= 5, "{:?}", local.1);
}

/// Retention reaches the runs on the queue: `fuse runs prune` deletes the
/// finished ones older than asked, with their nodes, attempts, steps and log
/// lines; `history.keep_runs` keeps the newest of each workflow; runs still
/// queued or running are never touched.
#[test]
fn retention_prunes_finished_runs_on_the_queue() {
    let db = TestDb::new();
    let pg = db.pg();
    let home = TestHome::initialized();
    let insert = |id: &str, workflow: &str, status: &str, age: &str| {
        let sql = format!(
            "INSERT INTO queue_runs (id, workflow, definition, input, trigger_kind, status, created_at, finished_at)
             VALUES ('{id}', '{workflow}', '{{}}', '{{}}', 'manual', '{status}', now() - interval '{age}',
                     CASE WHEN '{status}' IN ('queued', 'running') THEN NULL ELSE now() - interval '{age}' END);
             INSERT INTO queue_logs (run_id, ts, level, message) VALUES ('{id}', 0, 'info', 'hi');
             INSERT INTO queue_attempts (run_id, node_id, item, attempt, node_type, status, started_ms, finished_ms)
             VALUES ('{id}', 'n', -1, 1, 'log', 'succeeded', 0, 1);
             INSERT INTO queue_steps (run_id, node_id, seq, kind, name, status, started_ms, duration_ms)
             VALUES ('{id}', 'n', 1, 'model', 'm', 'succeeded', 0, 1);"
        );
        db.rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client.batch_execute(&sql).await.unwrap();
        });
    };
    insert("old-done", "a", "succeeded", "3 hours");
    insert("old-failed", "a", "failed", "2 hours");
    insert("old-running", "a", "running", "3 hours");
    insert("new-done", "a", "succeeded", "1 minute");
    insert("b-1", "b", "succeeded", "3 minutes");
    insert("b-2", "b", "succeeded", "2 minutes");
    let out = crate::helper::stdout_of(home.cmd().env("FUSE_STORE_URL", &db.url).args([
        "runs",
        "prune",
        "--older-than",
        "1h",
    ]));
    assert!(
        out.contains("deleted 2 queued run(s) older than 1h"),
        "{out}"
    );
    let left = |table: &str, column: &str| -> Vec<String> {
        db.query(&format!(
            "SELECT DISTINCT {column} AS id FROM {table} ORDER BY 1"
        ))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
    };
    let expected = ["b-1", "b-2", "new-done", "old-running"];
    assert_eq!(left("queue_runs", "id"), expected);
    for table in ["queue_logs", "queue_attempts", "queue_steps"] {
        assert_eq!(left(table, "run_id"), expected, "{table}");
    }
    // The daemon's pass: workflow b keeps its newest finished run (its own
    // settings.keep_runs), a is within the home-wide 1,000.
    let b_definition = r#"{"name": "b", "settings": {"keep_runs": 1}, "nodes": []}"#;
    db.rt
        .block_on(pg.store_version("b", b_definition, None))
        .unwrap();
    let history = fuse::config::HistoryConfig::default();
    let n = db
        .rt
        .block_on(fuse::daemon::prune_queue_once(&pg, &history))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(left("queue_runs", "id"), ["b-2", "new-done", "old-running"]);
    // Run again, there is nothing more to delete.
    assert_eq!(
        db.rt
            .block_on(fuse::daemon::prune_queue_once(&pg, &history))
            .unwrap(),
        0
    );
}

/// A run a daemon on PostgreSQL runs itself (a webhook whose workflow
/// answers its caller) is kept on the store too: another daemon lists and
/// shows it with its nodes; the daemon that ran it lists it once.
#[test]
fn runs_a_daemon_runs_itself_are_kept_on_postgres() {
    use crate::daemon::{http, start_with};
    use serde_json::json;
    let db = TestDb::new();
    let (a, b) = (TestHome::initialized(), TestHome::initialized());
    std::fs::copy(
        a.path().join("keys/master.key"),
        b.path().join("keys/master.key"),
    )
    .unwrap();
    let env = [("FUSE_STORE_URL", db.url.as_str())];
    let da = start_with(&a, &env);
    let answering = json!({"name": "answering", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "ask"}}},
        {"id": "say", "type": "log", "data": {"inputs": {"message": "asked {{ trigger.body.q }}"}}},
        {"id": "ok", "type": "webhook.respond", "data": {"inputs": {"status": 200, "body": {"a": "{{ trigger.body.q }}"}}}}
    ], "edges": [{"source": "t", "target": "say"}, {"source": "say", "target": "ok"}]});
    assert_eq!(da.call("POST", "/api/v1/workflows", Some(answering)).0, 201);
    let (status, body) = http(
        "POST",
        &format!("{}/webhook/ask", da.url),
        None,
        &[],
        Some(&json!({"q": 7})),
    );
    assert_eq!((status, body), (200, json!({"a": 7})));
    crate::wait::wait_for_within(
        "the run kept on the store",
        std::time::Duration::from_secs(10),
        || {
            (db.count(
                "SELECT 1 FROM queue_runs WHERE workflow = 'answering' AND status = 'succeeded'",
            ) == 1)
                .then_some(())
        },
    );
    let db_b = start_with(&b, &env);
    let (_, listed) = db_b.call("GET", "/api/v1/executions?workflow=answering", None);
    let runs = listed["executions"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1, "{listed}");
    let id = runs[0]["id"].as_str().unwrap();
    let (status, shown) = db_b.call("GET", &format!("/api/v1/executions/{id}"), None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["status"], "succeeded", "{shown}");
    let nodes: Vec<&str> = shown["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert!(nodes.contains(&"say") && nodes.contains(&"ok"), "{shown}");
    let (_, logs) = db_b.call("GET", &format!("/api/v1/executions/{id}/logs"), None);
    assert!(logs.to_string().contains("asked 7"), "{logs}");
    // The daemon that ran it lists it once (its own history and the store's copy).
    let (_, mine) = da.call("GET", "/api/v1/executions?workflow=answering", None);
    assert_eq!(
        mine["executions"].as_array().map(Vec::len),
        Some(1),
        "{mine}"
    );

    // Killed in the middle of such a run, the daemon marks it interrupted on
    // the store when it starts again (no worker would ever take it).
    let slow = json!({"name": "slow", "nodes": [
        {"id": "t", "type": "trigger.webhook", "data": {"inputs": {"path": "slow"}}},
        {"id": "wait", "type": "exec.command", "data": {"inputs": {"argv": ["sleep", "60"]}}},
        {"id": "ok", "type": "webhook.respond", "data": {"inputs": {"body": {}}}}
    ], "edges": [{"source": "t", "target": "wait"}, {"source": "wait", "target": "ok"}]});
    assert_eq!(da.call("POST", "/api/v1/workflows", Some(slow)).0, 201);
    let url = format!("{}/webhook/slow", da.url);
    let caller = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Cut off when the daemon dies.
        let _ = rt.block_on(reqwest::Client::new().post(url).json(&json!({})).send());
    });
    crate::wait::wait_for_within(
        "the slow run on the store",
        std::time::Duration::from_secs(10),
        || {
            (db.count("SELECT 1 FROM queue_runs WHERE workflow = 'slow' AND status = 'running'")
                == 1)
                .then_some(())
        },
    );
    da.kill();
    caller.join().unwrap();
    let _again = start_with(&a, &env);
    assert_eq!(
        db.count("SELECT 1 FROM queue_runs WHERE workflow = 'slow' AND status = 'interrupted'"),
        1,
        "marked when the daemon started again"
    );
}
