//! `fuse doctor`: one check of the whole home, each line ✓ or ✗ with the fix.
//! Exit 1 when anything fails; `--json` for scripts.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::Globals;
use crate::home::Home;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[arg(long)]
    pub json: bool,
}

/// One check's outcome.
#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    ok: bool,
    detail: String,
    /// What to do when it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Check {
    Check {
        check,
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Free space below which the disk check fails.
const MIN_FREE: u64 = 100 * 1024 * 1024;

pub fn run(globals: &Globals, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let mut checks = Vec::new();
    if !home.probe()? {
        checks.push(bad(
            "home",
            format!("there is no fuse home at {}", home.root().display()),
            "run `fuse init` (or point --home / FUSE_HOME at your home)",
        ));
        return report(&checks, args.json);
    }
    checks.push(ok("home", home.root().display().to_string()));

    let config = match home.config(&Default::default()) {
        Ok(c) => {
            checks.push(ok(
                "config",
                format!("{} parses", home.config_path().display()),
            ));
            Some(c)
        }
        Err(e) => {
            checks.push(bad(
                "config",
                e.to_string(),
                "fix the line named, or move fuse.toml aside and run `fuse init` for a fresh one",
            ));
            None
        }
    };

    let db = home.db_path();
    let mut database_ok = false;
    match crate::store::Store::existing_schema_version(&db) {
        None => checks.push(bad(
            "schema",
            format!("{} has no fuse schema (or cannot be read)", db.display()),
            "move it aside and run `fuse init`, or restore a backup (`fuse backup` makes them)",
        )),
        Some(v) if v > crate::store::Store::latest_schema_version() => checks.push(bad(
            "schema",
            format!(
                "schema version {v} is newer than this fuse knows ({})",
                crate::store::Store::latest_schema_version()
            ),
            "upgrade fuse (`./install.sh` or `cargo install`)",
        )),
        Some(v) => checks.push(ok(
            "schema",
            if v < crate::store::Store::latest_schema_version() {
                format!(
                    "version {v}; the next command that opens it migrates it to {}",
                    crate::store::Store::latest_schema_version()
                )
            } else {
                format!("version {v}")
            },
        )),
    }
    match quick_check(&db) {
        Ok(()) => {
            database_ok = true;
            checks.push(ok("database", "PRAGMA quick_check: ok"));
        }
        Err(why) => checks.push(bad(
            "database",
            why,
            "restore the newest backup over fuse.db with the daemon stopped, or move fuse.db aside and run `fuse init`",
        )),
    }

    // The store on PostgreSQL (store.url): reachable, schema current.
    match home.store_url() {
        Ok(Some(url)) => match crate::store::pg::db::PgDb::open(&url) {
            Ok(_) => checks.push(ok(
                "postgres",
                format!(
                    "the store at {} answers; its schema is current",
                    crate::store::pg::redact(&url)
                ),
            )),
            Err(e) => {
                database_ok = false;
                checks.push(bad(
                    "postgres",
                    e.to_string(),
                    "start the server or fix store.url / FUSE_STORE_URL (user, password, host, database); see docs/scale-out.md",
                ));
            }
        },
        Ok(None) => {}
        Err(e) => checks.push(bad("postgres", e.to_string(), "fix store.url in fuse.toml")),
    }

    if database_ok {
        match crate::secrets::vault::Vault::open(&home) {
            Ok(vault) => {
                let kind = vault.key_store();
                match vault.check() {
                    Ok(results) => {
                        let failed: Vec<String> = results
                            .iter()
                            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
                            .collect();
                        if failed.is_empty() {
                            checks.push(ok(
                                "credentials",
                                format!(
                                    "the master key ({} key store) opens all {} credential(s)",
                                    kind.as_str(),
                                    results.len()
                                ),
                            ));
                        } else {
                            checks.push(bad(
                                "credentials",
                                failed.join("; "),
                                "set them again with `fuse creds set NAME --type T`, or restore the master key they were sealed with",
                            ));
                        }
                    }
                    Err(e) => checks.push(bad(
                        "credentials",
                        e.to_string(),
                        "see `fuse creds check`",
                    )),
                }
            }
            Err(e) => checks.push(bad(
                "key",
                e.to_string(),
                "restore the master key (the key file or keyring entry) from where you keep it; without it no credential opens",
            )),
        }
    }

    checks.push(file_modes(&home));

    let port = config.as_ref().map_or(5678, |c| c.daemon.port);
    checks.push(match crate::daemon::running(&home) {
        Some(info) => match probe(&info.host, info.port) {
            Ok(()) => ok(
                "daemon",
                format!(
                    "running (pid {}), {} answers /healthz",
                    info.pid,
                    info.url()
                ),
            ),
            Err(why) => bad(
                "daemon",
                format!(
                    "pid {} runs but {} does not answer: {why}",
                    info.pid,
                    info.url()
                ),
                "restart it: `fuse stop && fuse start`",
            ),
        },
        None => match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => ok("daemon", format!("not running; port {port} is free for it")),
            Err(e) => bad(
                "daemon",
                format!("not running, and port {port} is taken by another program ({e})"),
                "stop that program, or set daemon.port in fuse.toml to a free port",
            ),
        },
    });

    let settings = config
        .as_ref()
        .map(|c| crate::nodes::Settings::of_home(&home, c))
        .unwrap_or_default();
    let (_, catalog) = crate::packages::registry_of_home(&settings, &home);
    if catalog.problems.is_empty() {
        checks.push(ok(
            "packages",
            format!("{} node package(s) load", catalog.nodes.len()),
        ));
    } else {
        checks.push(bad(
            "packages",
            catalog
                .problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            "`fuse nodes doctor` says more; fix or remove the package folder",
        ));
    }

    checks.push(match free_space(home.root()) {
        Some(free) if free < MIN_FREE => bad(
            "disk",
            format!("{} MB free where the home is", free / (1024 * 1024)),
            "free some space, or prune old runs with `fuse runs prune --older-than 30d`",
        ),
        Some(free) => ok("disk", format!("{} MB free", free / (1024 * 1024))),
        None => bad(
            "disk",
            "the free space could not be read",
            "check the file system the home is on",
        ),
    });

    if database_ok {
        checks.push(clock(&db));
    }
    report(&checks, args.json)
}

fn report(checks: &[Check], json: bool) -> anyhow::Result<ExitCode> {
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"ok": failed == 0, "checks": checks})
            )?
        );
    } else {
        for c in checks {
            if c.ok {
                outln!("✓ {:<12} {}", c.check, c.detail);
            } else {
                outln!("✗ {:<12} {}", c.check, c.detail);
                if let Some(fix) = &c.fix {
                    outln!("  {:<12} fix: {fix}", "");
                }
            }
        }
        if failed > 0 {
            outln!("{failed} problem(s)");
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `PRAGMA quick_check` on a read-only connection.
fn quick_check(db: &Path) -> Result<(), String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| format!("{} is not a readable SQLite database: {e}", db.display()))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|r| r.collect())
        .map_err(|e| format!("quick_check could not run: {e}"))?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(format!(
            "quick_check found: {}",
            rows.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ))
    }
}

/// The home folder (which guards everything in it) and the files holding
/// secrets (API token, key file) are private to their owner.
fn file_modes(home: &Home) -> Check {
    use std::os::unix::fs::PermissionsExt;
    let wanted = [
        (home.root().to_path_buf(), 0o700),
        (home.token_path(), 0o600),
        (crate::secrets::keystore::key_file(home.root()), 0o600),
    ];
    let mut loose = Vec::new();
    let mut fixes = Vec::new();
    for (path, mode) in &wanted {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let actual = meta.permissions().mode() & 0o777;
        if actual & 0o077 != 0 {
            loose.push(format!(
                "{} is {actual:o} (others may read it)",
                path.display()
            ));
            fixes.push(format!("chmod {mode:o} {}", path.display()));
        }
    }
    if loose.is_empty() {
        ok(
            "files",
            "the home folder, API token and key file are private to their owner",
        )
    } else {
        bad("files", loose.join("; "), fixes.join(" && "))
    }
}

fn probe(host: &str, port: u16) -> Result<(), String> {
    use std::io::{Read, Write};
    let addr = format!("{host}:{port}");
    let mut stream = std::net::TcpStream::connect(&addr).map_err(|e| e.to_string())?;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(3)));
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    if answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(answer.lines().next().unwrap_or("no answer").to_string())
    }
}

fn free_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `stat` a writable struct.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// The clock is not behind the newest run recorded (a clock that went back
/// makes schedules fire late and history out of order).
fn clock(db: &Path) -> Check {
    let newest: Option<i64> =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()
            .and_then(|c| {
                c.query_row("SELECT MAX(created_at) FROM executions", [], |r| r.get(0))
                    .ok()
                    .flatten()
            });
    let now = crate::engine::events::now_ms();
    match newest {
        Some(t) if t > now + 5 * 60 * 1000 => bad(
            "clock",
            format!(
                "the clock is {} s behind the newest recorded run",
                (t - now) / 1000
            ),
            "set the system time (e.g. enable NTP: `timedatectl set-ntp true`)",
        ),
        _ => ok("clock", jiff::Timestamp::now().to_string()),
    }
}
