use std::os::unix::fs::PermissionsExt;

use predicates::prelude::*;

use crate::helper::{TestHome, fuse, stdout_of};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_yes_creates_the_whole_home() {
    let t = TestHome::new();
    let out = stdout_of(t.cmd().args(["init", "--yes"]));
    assert!(out.contains("Created a fuse home"), "{out}");
    let h = t.path();
    for dir in [
        "workflows",
        "node_packages",
        "plugin_packages",
        "templates",
        "logs",
        "blobs",
    ] {
        assert!(h.join(dir).is_dir(), "{dir} missing");
    }
    assert_eq!(mode(h), 0o700);
    assert_eq!(mode(&h.join("api-token")), 0o600);
    assert_eq!(mode(&h.join("keys/master.key")), 0o600);
    assert_eq!(mode(&h.join("keys")), 0o700);
    let token = std::fs::read_to_string(h.join("api-token")).unwrap();
    assert_eq!(token.trim().len(), 64);
    assert!(token.trim().chars().all(|c| c.is_ascii_hexdigit()));
    // Bundled files are copied out of the binary.
    assert!(h.join("node_packages/README.md").is_file());
    // The database is real SQLite with the schema and the recorded key store.
    let conn = rusqlite::Connection::open(h.join("fuse.db")).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for table in [
        "credentials",
        "executions",
        "logs",
        "node_runs",
        "schedules",
        "workflow_versions",
        "workflows",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "table {table} missing: {tables:?}"
        );
    }
    let store: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'key_store'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(store, "file");
    // The written config is commented and holds the default port.
    let config = std::fs::read_to_string(h.join("fuse.toml")).unwrap();
    assert!(config.contains("port = 5678"), "{config}");
    assert!(config.lines().any(|l| l.starts_with('#')));
}

#[test]
fn init_without_tty_takes_defaults_and_says_keyring_is_unavailable() {
    let t = TestHome::new();
    // No --yes: stdin is not a terminal under the test harness, so no prompt.
    let out = stdout_of(t.cmd().arg("init").write_stdin(""));
    assert!(out.contains("Created a fuse home"), "{out}");
    // These machines have no D-Bus session: the fallback and its reason are reported.
    assert!(out.contains("OS keyring is unavailable"), "{out}");
    assert!(out.contains("master.key"), "{out}");
}

#[test]
fn init_again_changes_nothing_and_says_so() {
    let t = TestHome::initialized();
    let h = t.path();
    let snapshot = |p: &str| std::fs::read(h.join(p)).unwrap();
    let before: Vec<_> = ["fuse.toml", "api-token", "keys/master.key"]
        .iter()
        .map(|p| snapshot(p))
        .collect();
    // A user edit must survive re-init.
    let edited = format!(
        "{}\n# my note\n",
        String::from_utf8(before[0].clone()).unwrap()
    );
    std::fs::write(h.join("fuse.toml"), &edited).unwrap();
    let out = stdout_of(t.cmd().args(["init", "--yes"]));
    assert!(
        out.contains("already a fuse home; nothing was changed"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(h.join("fuse.toml")).unwrap(),
        edited
    );
    assert_eq!(snapshot("api-token"), before[1]);
    assert_eq!(snapshot("keys/master.key"), before[2]);
}

#[test]
fn init_finishes_an_interrupted_home() {
    let t = TestHome::initialized();
    let h = t.path();
    let key = std::fs::read(h.join("keys/master.key")).unwrap();
    // Simulate an init killed halfway: no database or token yet, a half-copied
    // package folder and a half-written file left under temporary names.
    std::fs::remove_file(h.join("fuse.db")).unwrap();
    let _ = std::fs::remove_file(h.join("fuse.db-wal"));
    let _ = std::fs::remove_file(h.join("fuse.db-shm"));
    std::fs::remove_file(h.join("api-token")).unwrap();
    std::fs::remove_file(h.join("node_packages/README.md")).unwrap();
    std::fs::remove_dir(h.join("logs")).unwrap();
    std::fs::create_dir_all(h.join("node_packages/.tmp-half")).unwrap();
    std::fs::write(h.join(".tmp-fuse.toml"), "[dae").unwrap();

    let out = stdout_of(t.cmd().args(["init", "--yes"]));
    assert!(out.contains("Finished setting up"), "{out}");
    assert!(out.contains("created  fuse.db"), "{out}");
    assert!(out.contains("created  api-token"), "{out}");
    assert!(
        h.join("fuse.db").is_file() && h.join("api-token").is_file() && h.join("logs").is_dir()
    );
    assert!(h.join("node_packages/README.md").is_file());
    assert!(!h.join("node_packages/.tmp-half").exists());
    assert!(!h.join(".tmp-fuse.toml").exists());
    // The key file that existed is adopted, never replaced.
    assert_eq!(std::fs::read(h.join("keys/master.key")).unwrap(), key);
    stdout_of(t.cmd().arg("version"));
}

#[test]
fn init_port_flag_and_fuse_home_env() {
    let t = TestHome::new();
    t.cmd()
        .args(["init", "--yes", "--port", "9123"])
        .assert()
        .success();
    let config = std::fs::read_to_string(t.path().join("fuse.toml")).unwrap();
    assert!(config.contains("port = 9123"), "{config}");
}

#[test]
fn home_flag_wins_over_env() {
    let t = TestHome::new();
    let other = t.tmp().join("other");
    t.cmd()
        .arg("--home")
        .arg(&other)
        .args(["init", "--yes"])
        .assert()
        .success();
    assert!(other.join("fuse.db").is_file());
    assert!(!t.path().exists());
}

#[test]
fn quiet_init_prints_nothing() {
    let t = TestHome::new();
    t.cmd()
        .args(["-q", "init", "--yes"])
        .assert()
        .success()
        .stdout("");
}

#[test]
fn unwritable_home_is_a_clear_error() {
    let t = TestHome::new();
    let file = t.tmp().join("a-file");
    std::fs::write(&file, "x").unwrap();
    fuse()
        .arg("--home")
        .arg(file.join("home"))
        .args(["init", "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "could not initialize the fuse home",
        ))
        .stderr(predicate::str::contains("choose a writable folder"))
        .stderr(predicate::str::contains("panicked").not());
}

#[test]
fn config_with_unknown_key_names_file_key_and_line() {
    let t = TestHome::initialized();
    std::fs::write(
        t.path().join("fuse.toml"),
        "[daemon]\nport = 5678\nprot = 1\n",
    )
    .unwrap();
    t.cmd()
        .arg("version")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("fuse.toml:3:"))
        .stderr(predicate::str::contains("prot"));
    // init never overwrites it, and reports the same problem.
    t.cmd()
        .args(["init", "--yes"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("fuse.toml:3:"));
}

#[test]
fn config_with_wrong_type_or_bad_syntax_is_an_error() {
    let t = TestHome::initialized();
    std::fs::write(
        t.path().join("fuse.toml"),
        "[engine]\nmax_parallel = \"many\"\n",
    )
    .unwrap();
    t.cmd()
        .arg("version")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("fuse.toml:2:"))
        .stderr(predicate::str::contains("engine.max_parallel"));
    std::fs::write(t.path().join("fuse.toml"), "[engine\nmax_parallel = 2\n").unwrap();
    t.cmd()
        .arg("version")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("fuse.toml:1:"))
        .stderr(predicate::str::contains("panicked").not());
}

#[test]
fn env_var_with_wrong_type_names_the_variable() {
    let t = TestHome::initialized();
    t.cmd()
        .env("FUSE_DAEMON_PORT", "not-a-port")
        .arg("version")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("FUSE_DAEMON_PORT"));
}

#[test]
fn database_that_is_not_sqlite_is_refused_untouched() {
    let t = TestHome::initialized();
    let db = t.path().join("fuse.db");
    let _ = std::fs::remove_file(t.path().join("fuse.db-wal"));
    let _ = std::fs::remove_file(t.path().join("fuse.db-shm"));
    std::fs::write(
        &db,
        "definitely not sqlite, just some text that is long enough",
    )
    .unwrap();
    for args in [&["version"][..], &["init", "--yes"][..]] {
        t.cmd()
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("is not a SQLite database"))
            .stderr(predicate::str::contains("panicked").not());
    }
    assert_eq!(
        std::fs::read_to_string(&db).unwrap(),
        "definitely not sqlite, just some text that is long enough"
    );
}

#[test]
fn schema_newer_than_binary_is_refused_with_versions() {
    let t = TestHome::initialized();
    {
        let conn = rusqlite::Connection::open(t.path().join("fuse.db")).unwrap();
        conn.execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (42, 'future', '2030-01-01T00:00:00Z', '0')",
            [],
        )
        .unwrap();
    }
    t.cmd()
        .arg("version")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("schema version 42"))
        .stderr(predicate::str::contains("upgrade fuse"));
}

#[test]
fn group_readable_key_file_is_refused_with_the_fix() {
    let t = TestHome::initialized();
    let key = t.path().join("keys/master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    t.cmd()
        .args(["init", "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("chmod 600"));
}

#[test]
fn master_key_from_env_is_recorded_and_required() {
    let t = TestHome::new();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    t.cmd()
        .env("FUSE_MASTER_KEY", key)
        .args(["init", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("FUSE_MASTER_KEY"));
    assert!(!t.path().join("keys/master.key").exists());
    let out = stdout_of(t.cmd().args(["version", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["key_store"], "env");
    // Re-init without the variable: the recorded store is missing, which is an error.
    t.cmd()
        .args(["init", "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "FUSE_MASTER_KEY, which is not set",
        ));
    // A malformed key is rejected at init.
    let t2 = TestHome::new();
    t2.cmd()
        .env("FUSE_MASTER_KEY", "short")
        .args(["init", "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("base64 of 32 bytes"));
}
