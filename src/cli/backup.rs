//! `fuse backup [FILE]`: a consistent copy of the home's database, taken
//! while the daemon runs (SQLite's `VACUUM INTO` reads one snapshot), then
//! checked with `PRAGMA quick_check`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Globals;
use crate::home::Home;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy (default: backups/fuse-<time>.db in the home).
    pub file: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(globals: &Globals, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    home.require()?;
    let target = match args.file {
        Some(f) => f,
        None => {
            let stamp = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            home.root().join("backups").join(format!("fuse-{stamp}.db"))
        }
    };
    if target.exists() {
        if !args.force {
            anyhow::bail!(crate::Error::Setting(format!(
                "{} exists; pick another file or add --force to replace it",
                target.display()
            )));
        }
        std::fs::remove_file(&target).map_err(|e| crate::Error::io("replace", &target, e))?;
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io("create", dir, e))?;
    }
    let started = std::time::Instant::now();
    let store = crate::store::Store::open_reader(&home.db_path())?;
    let check = store.backup_to(&target)?;
    let bytes = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    if check != "ok" {
        anyhow::bail!(crate::Error::Setting(format!(
            "the copy at {} does not pass quick_check ({check}); the database itself may be damaged: run `fuse doctor`",
            target.display()
        )));
    }
    if args.json {
        outln!(
            "{}",
            serde_json::json!({"file": target, "bytes": bytes, "quick_check": check,
                               "ms": started.elapsed().as_millis() as u64})
        );
    } else {
        outln!("{}", target.display());
        if !globals.quiet {
            eprintln!(
                "backed up {} to {} ({bytes} bytes, quick_check ok); restore by stopping the daemon and copying it over {}",
                home.db_path().display(),
                target.display(),
                home.db_path().display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
