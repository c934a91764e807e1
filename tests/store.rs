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

use crate::helper::TestHome;
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
        assert_eq!(
            db.store_version("w", v1, None).unwrap(),
            (1, true),
            "{name}"
        );
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

        assert_eq!(
            db.rollback_workflow("w", 1).unwrap(),
            Rollback::Done,
            "{name}"
        );
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
        assert!(db.set_workflow_enabled("w", false).unwrap(), "{name}");
        assert!(
            db.enabled_workflows().unwrap().is_empty(),
            "{name}: disabled"
        );
        assert!(!db.list_workflows().unwrap()[0].enabled, "{name}");
        assert!(!db.set_workflow_enabled("nope", true).unwrap(), "{name}");

        assert!(db.delete_workflow("w").unwrap(), "{name}");
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
