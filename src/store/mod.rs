//! The SQLite store: one file (`fuse.db`) in WAL mode with foreign keys on, its
//! schema kept by refinery migrations embedded in the binary.
//!
//! Opening checks that the file really is SQLite and that its schema is not newer
//! than this binary knows, then runs pending migrations, so every command that
//! opens the store sees the current schema.
//!
//! Only SQLite opens `fuse.db` (and its `-wal`/`-shm`): on POSIX, closing any
//! descriptor of a file drops every lock the process holds on it, so a plain
//! `File::open` next to live connections lets an outside reader believe it is
//! the last connection, checkpoint and delete the WAL the daemon still writes
//! into. Whether a file is a database is asked of SQLite itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};

pub mod credentials;
pub mod db;
pub mod history;
pub mod memory;
pub mod pg;
pub mod queued;
pub mod recorder;
pub mod schedules;
pub mod tokens;
pub mod transfer;
pub mod vectors;
pub mod workflows;

pub use db::{Db, Sqlite};
pub use recorder::Recorder;

mod embedded {
    refinery::embed_migrations!("src/store/migrations");
}

/// The version of the last migration in `src/store/migrations`.
const LATEST_SCHEMA: i64 = 10;

/// How long a writer waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An open, migrated database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Whether the write-ahead log was there before this connection opened
    /// (else opening created it, and its folder entry is not on disk yet).
    log_existed: bool,
}

impl Store {
    /// Opens (creating if missing) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let log_existed = log_path(path).exists();
        let mut conn = Connection::open(path).map_err(|source| Error::Database {
            action: "opening",
            path: path.to_path_buf(),
            cause: source,
        })?;
        configure(&conn, path)?;
        let store_err = |source| Error::Database {
            action: "reading the schema version",
            path: path.to_path_buf(),
            cause: source,
        };
        let found = schema_version(&conn).map_err(store_err)?;
        let known = Self::latest_schema_version();
        if found > known {
            return Err(Error::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                known,
            });
        }
        // An up-to-date database has nothing to migrate: the runner (which
        // parses every migration's name with a regular expression, about 2 MB
        // of memory for a one-shot `fuse run`) runs only when it is behind.
        if found < known {
            embedded::migrations::runner()
                .set_abort_divergent(true)
                .run(&mut conn)
                .map_err(|source| Error::Migration {
                    path: path.to_path_buf(),
                    source,
                })?;
            // A migration that copies a table (V6, V10) leaves the old
            // one's pages free: the file gives them back now, once.
            if let Err(e) = recorder::vacuum_free_pages(&conn) {
                tracing::warn!(
                    "{} keeps the space a migration freed ({e}); `fuse runs prune` gives it back",
                    path.display()
                );
            }
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            log_existed,
        })
    }

    /// Another connection to a database [`Store::open`] has opened (and
    /// migrated): for reading beside the writer.
    pub fn open_reader(path: &Path) -> Result<Store> {
        let log_existed = log_path(path).exists();
        let conn = Connection::open(path).map_err(|source| Error::Database {
            action: "opening",
            path: path.to_path_buf(),
            cause: source,
        })?;
        configure(&conn, path)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
            log_existed,
        })
    }

    /// The write-ahead log beside the database, and whether it was there
    /// before this connection opened.
    pub fn log(&self) -> (PathBuf, bool) {
        (log_path(&self.path), self.log_existed)
    }

    /// The schema version of an existing database, read without migrating it;
    /// `None` when it has none or cannot be read.
    pub fn existing_schema_version(path: &Path) -> Option<i64> {
        let conn =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        schema_version(&conn).ok().filter(|v| *v > 0)
    }

    /// The newest schema version this binary carries (its last migration,
    /// `src/store/migrations/V{N}__*.sql`; a test holds the two together).
    pub fn latest_schema_version() -> i64 {
        LATEST_SCHEMA
    }

    /// Whether this connection could write now: takes the write lock and lets
    /// it go, waiting at most 1.5 s for it (another program holding the lock
    /// longer keeps every write of the daemon waiting too).
    pub fn ping(&self) -> Result<()> {
        let set = |d| {
            self.conn
                .busy_timeout(d)
                .map_err(|e| self.db_err("checking", e))
        };
        set(Duration::from_millis(1500))?;
        let tried = self.conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;");
        set(BUSY_TIMEOUT)?;
        tried.map_err(|e| self.db_err("taking the write lock of", e))
    }

    /// Writes a consistent copy of the database to `target` (one read
    /// snapshot, so writers may go on meanwhile) and answers the copy's
    /// `PRAGMA quick_check` (`ok` when sound). The copy holds no secret the
    /// database does not: credentials stay encrypted.
    pub fn backup_to(&self, target: &Path) -> Result<String> {
        let name = target
            .to_str()
            .ok_or_else(|| Error::Setting(format!("{} is not a UTF-8 path", target.display())))?;
        self.conn
            .execute("VACUUM INTO ?1", [name])
            .map_err(|e| self.db_err("backing up", e))?;
        let copy = Connection::open_with_flags(target, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| self.db_err("opening the backup of", e))?;
        copy.query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| self.db_err("checking the backup of", e))
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        schema_version(&self.conn)
            .map_err(|source| self.db_err("reading the schema version", source))
    }

    /// The underlying connection (for the modules that own table groups).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives up the store for its connection (the recorder's writer thread owns one).
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    /// A value from the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|source| self.db_err("reading meta", source))
    }

    /// Sets a value in the `meta` table.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(|source| self.db_err("writing meta", source))
    }

    /// A write transaction that takes the write lock at once (so a read
    /// inside it never meets SQLITE_BUSY_SNAPSHOT beside another writer), and
    /// what turns its errors into [`Error::Database`] for `action`.
    pub(crate) fn write_tx(
        &mut self,
        action: &'static str,
    ) -> Result<(rusqlite::Transaction<'_>, DbErr)> {
        let err = DbErr {
            action,
            path: self.path.clone(),
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| err.of(e))?;
        Ok((tx, err))
    }

    pub(crate) fn db_err(&self, action: &'static str, source: rusqlite::Error) -> Error {
        Error::Database {
            action,
            path: self.path.clone(),
            cause: source,
        }
    }
}

/// Turns SQLite errors of one action into [`Error::Database`].
pub(crate) struct DbErr {
    action: &'static str,
    path: PathBuf,
}

impl DbErr {
    pub(crate) fn of(&self, cause: rusqlite::Error) -> Error {
        Error::Database {
            action: self.action,
            path: self.path.clone(),
            cause,
        }
    }
}

/// A write error as a user reads it: what happened and what to do.
pub fn explain(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DiskFull) => {
            "the disk is full: free some space (or prune old runs with `fuse runs prune`)"
                .to_string()
        }
        Some(SystemIoFailure) => format!(
            "the disk refused the write ({e}); it may be full or failing: free some space and check it"
        ),
        Some(DatabaseBusy | DatabaseLocked) => format!(
            "the database stayed locked by another program ({e}); close programs that write to fuse.db"
        ),
        Some(ReadOnly) => format!(
            "the database is read-only ({e}); check the permissions of fuse.db and its folder"
        ),
        _ => e.to_string(),
    }
}

/// The version SQLite reports for the bundled library.
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

fn configure(conn: &Connection, path: &Path) -> Result<()> {
    let err = |source| match source {
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::NotADatabase => {
            Error::NotADatabase {
                path: path.to_path_buf(),
            }
        }
        source => Error::Database {
            action: "configuring",
            path: path.to_path_buf(),
            cause: source,
        },
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(err)?;
    if pages == 0 {
        // Only takes effect before the first table exists: lets the file shrink later.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(err)?;
    }
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )
    .map_err(err)?;
    Ok(())
}

/// SQLite's write-ahead log of the database at `path` (`fuse.db-wal`).
fn log_path(path: &Path) -> PathBuf {
    beside(path, "-wal")
}

/// Bytes of the database at `path` and its write-ahead log on disk (read
/// with `stat`).
pub(crate) fn files_size(path: &Path) -> u64 {
    [path.to_path_buf(), log_path(path)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The index of the write-ahead log of the database at `path` (`fuse.db-shm`).
pub(crate) fn log_index_path(path: &Path) -> PathBuf {
    beside(path, "-shm")
}

fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The highest applied refinery migration, 0 for a new database.
fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    let has_history: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history')",
        [],
        |r| r.get(0),
    )?;
    if !has_history {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM refinery_schema_history",
        [],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_schema_is_the_last_migration() {
        let last = embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| i64::from(m.version()))
            .max();
        assert_eq!(
            last,
            Some(LATEST_SCHEMA),
            "a migration was added: set LATEST_SCHEMA to its version"
        );
    }

    #[test]
    fn open_migrates_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuse.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            Store::latest_schema_version()
        );
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let av: i64 = store
            .conn()
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(av, 2, "incremental auto_vacuum");
        store.set_meta("k", "v").unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.meta("k").unwrap().as_deref(), Some("v"));
    }

    /// Issue 20: V10 rebuilds node_runs so that an insert builds no
    /// temporary b-tree for its status check and lands at the end of its
    /// run's part of the index; a database at V9 keeps every row of every
    /// run it has.
    #[test]
    fn v10_keeps_node_rows_and_inserts_without_a_temporary_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuse.db");
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn, &path).unwrap();
        embedded::migrations::runner()
            .set_target(refinery::Target::Version(9))
            .run(&mut conn)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO executions (id, workflow_name, status, trigger_kind, created_at)
                 VALUES ('r1', 'w', 'succeeded', 'manual', 1);
             INSERT INTO node_runs (execution_id, node_id, node_type, attempt, item_index, status,
                     input, output, error, started_at, finished_at, duration_ms)
                 VALUES ('r1', 'a', 'transform.set', 1, NULL, 'succeeded', '{}', '{\"x\":1}', NULL, 5, 7, 2),
                        ('r1', 'b', 'http.request', 2, 3, 'failed', '{}', NULL, '{\"message\":\"no\"}', 8, 9, 1),
                        ('r1', 'c', 'transform.set', 0, NULL, 'skipped', NULL, NULL, NULL, NULL, NULL, NULL);
             PRAGMA foreign_keys = OFF;
             INSERT INTO node_runs (execution_id, node_id, node_type, attempt, status)
                 VALUES ('gone', 'a', 'transform.set', 1, 'succeeded');
             PRAGMA foreign_keys = ON;",
        )
        .unwrap();
        let rows = |conn: &Connection, run: &str| -> Vec<String> {
            conn.prepare(
                "SELECT id, node_id, node_type, attempt, item_index, status, input, output, error,
                        started_at, finished_at, duration_ms
                 FROM node_runs WHERE execution_id = ?1 ORDER BY id",
            )
            .unwrap()
            .query_map([run], |r| {
                let cells: Vec<String> = (0..12)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                Ok(cells.join("|"))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
        };
        let before = rows(&conn, "r1");
        assert_eq!(before.len(), 3);
        drop(conn);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), 10);
        let free: i64 = store
            .conn()
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        assert_eq!(free, 0, "the copied table's old pages are given back");
        assert_eq!(rows(store.conn(), "r1"), before, "every row, every column");
        assert!(
            rows(store.conn(), "gone").is_empty(),
            "a row whose run is gone is left out"
        );
        let insert = "INSERT INTO node_runs (execution_id, node_id, node_type, attempt, item_index,
                 status, input, output, error, started_at, finished_at, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
        let ops: Vec<String> = store
            .conn()
            .prepare(&format!("EXPLAIN {insert}"))
            .unwrap()
            .query_map(
                rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Null, 12)),
                |r| r.get::<_, String>(1),
            )
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(ops.iter().any(|op| op == "IdxInsert"), "{ops:?}");
        assert!(
            !ops.iter().any(|op| op == "OpenEphemeral"),
            "an insert builds a temporary table: {ops:?}"
        );
        let index: String = store
            .conn()
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'node_runs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(index.ends_with("node_runs (execution_id)"), "{index}");
        // The check still refuses a status that is not one, and deleting a
        // run still takes its rows.
        let bad = store.conn().execute(
            "INSERT INTO node_runs (execution_id, node_id, node_type, attempt, status)
             VALUES ('r1', 'd', 't', 1, 'done')",
            [],
        );
        assert!(
            bad.unwrap_err().to_string().contains("CHECK constraint"),
            "a status outside the five"
        );
        store
            .conn()
            .execute("DELETE FROM executions WHERE id = 'r1'", [])
            .unwrap();
        assert!(rows(store.conn(), "r1").is_empty());
    }

    #[test]
    fn refuses_non_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuse.db");
        std::fs::write(&path, "this is not a database at all").unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(Error::NotADatabase { .. })
        ));
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuse.db");
        let store = Store::open(&path).unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
                 VALUES (99, 'future', '2030-01-01', '0')",
                [],
            )
            .unwrap();
        drop(store);
        match Store::open(&path) {
            Err(Error::SchemaTooNew { found: 99, .. }) => {}
            other => panic!("expected SchemaTooNew, got {:?}", other.err()),
        }
    }
}
