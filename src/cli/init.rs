//! `fuse init`: create (or finish) a fuse home, asking with dialoguer on a TTY.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::Globals;
use crate::config::Config;
use crate::home::{self, Home, InitOptions, Outcome};
use crate::secrets::keystore::{self, KeyStoreKind};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Take the defaults without asking (also the case when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,

    /// Port for the daemon, written to fuse.toml.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,

    /// Keep the master key in a file in the home (or FUSE_MASTER_KEY) even if an OS keyring works.
    #[arg(long)]
    pub no_keyring: bool,

    /// Put the store in PostgreSQL (postgres://USER:PASSWORD@HOST/DB): sets
    /// store.url in fuse.toml and moves this home's workflows, tokens,
    /// credentials, conversation memory and vector collections there
    /// (docs/scale-out.md).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

pub fn run(globals: &Globals, args: InitArgs) -> anyhow::Result<ExitCode> {
    let default_home = Home::resolve(globals.home.clone())?;
    let default_port = args.port.unwrap_or(Config::default().daemon.port);
    let keyring = keystore::keyring_status();
    let interactive = !args.yes && super::stdin_is_tty();

    let (home, port, want_keyring) = if interactive {
        ask(&default_home, default_port, &keyring, args.no_keyring)?
    } else {
        (default_home.clone(), default_port, !args.no_keyring)
    };

    let options = InitOptions { port, want_keyring };
    let report = home::init(&home, &options).with_context(|| {
        format!(
            "could not initialize the fuse home at {} (choose a writable folder with --home or FUSE_HOME)",
            home.root().display()
        )
    })?;

    let moved = match &args.store {
        Some(url) => Some(to_postgres(&home, url)?),
        None => None,
    };
    if globals.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    if report.unchanged() {
        if let Some(moved) = &moved {
            print_moved(&home, moved)?;
        } else {
            outln!(
                "{} is already a fuse home; nothing was changed.",
                home.root().display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let root = home.root().display();
    if report.finished_partial() {
        outln!(
            "Finished setting up the fuse home at {root} (an earlier init was incomplete or older):"
        );
    } else {
        outln!("Created a fuse home at {root}:");
    }
    for step in &report.steps {
        match &step.outcome {
            Outcome::Created => outln!("  created  {}", step.what),
            Outcome::Updated(how) => outln!("  updated  {} ({how})", step.what),
            Outcome::Kept => {}
        }
    }
    if let Some(reason) = &report.keyring_failure {
        outln!(
            "  note: the OS keyring is unavailable ({reason}); the master key is in a 0600 key file instead."
        );
    }
    match report.key_store {
        Some(KeyStoreKind::File) => outln!(
            "  master key: {} (back it up: without it stored credentials cannot be decrypted)",
            keystore::key_file(home.root()).display()
        ),
        Some(KeyStoreKind::Env) => outln!(
            "  master key: taken from {} (keep setting it)",
            keystore::ENV_VAR
        ),
        Some(KeyStoreKind::Keyring) => outln!("  master key: in the OS keyring"),
        None => {}
    }
    // The home chosen here must be named again unless it is the default.
    let home_flag = if globals.home.is_some() || home.root() != default_home.root() {
        format!(" --home {}", shell_quote(home.root()))
    } else {
        String::new()
    };
    if let Some(moved) = &moved {
        print_moved(&home, moved)?;
    }
    outln!(
        "Next: fuse{home_flag} run {}",
        shell_quote(&home.templates_dir().join("hello.json"))
    );
    Ok(ExitCode::SUCCESS)
}

fn ask(
    default_home: &Home,
    default_port: u16,
    keyring: &keystore::KeyringStatus,
    no_keyring: bool,
) -> anyhow::Result<(Home, u16, bool)> {
    use dialoguer::{Confirm, Input};
    let path: String = Input::new()
        .with_prompt("Home folder")
        .default(default_home.root().display().to_string())
        .interact_text()?;
    let port: String = Input::new()
        .with_prompt("Daemon port")
        .default(default_port.to_string())
        .validate_with(|text: &String| parse_port(text).map(|_| ()))
        .interact_text()?;
    let port = parse_port(&port).map_err(anyhow::Error::msg)?;
    let want_keyring = match keyring {
        _ if no_keyring => false,
        keystore::KeyringStatus::Available => Confirm::new()
            .with_prompt("Keep the master key in the OS keyring?")
            .default(true)
            .interact()?,
        keystore::KeyringStatus::Unavailable(reason) => {
            eprintln!(
                "The OS keyring is unavailable ({reason}); the master key will be kept in a 0600 file in the home."
            );
            false
        }
    };
    Ok((Home::at(PathBuf::from(path)), port, want_keyring))
}

/// A port typed at the prompt, or what to type instead.
fn parse_port(text: &str) -> Result<u16, String> {
    let text = text.trim();
    match text.parse::<u32>() {
        Ok(n) if n <= u32::from(u16::MAX) => Ok(n as u16),
        Ok(_) => Err(format!(
            "{text} is too large for a port; enter a number from 1 to 65535 (0 picks a free one at each start)"
        )),
        Err(_) => Err(format!(
            "{text:?} is not a port number; enter a number from 1 to 65535 (0 picks a free one at each start)"
        )),
    }
}

fn shell_quote(path: &std::path::Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What `--store` did.
fn print_moved(
    home: &Home,
    (url, moved): &(String, crate::store::pg::moving::Moved),
) -> std::io::Result<()> {
    outln!(
        "The store of {} is now on PostgreSQL at {url}:",
        home.root().display()
    );
    outln!(
        "  moved    {} workflow(s) with {} version(s), {} token(s), {} credential(s), {} memory session(s), {} vector collection(s)",
        moved.workflows,
        moved.versions,
        moved.tokens,
        moved.credentials,
        moved.memory_sessions,
        moved.collections
    );
    for kept in &moved.kept {
        outln!("  kept     {kept} (the store had it already)");
    }
    outln!(
        "  store.url is set in {}; earlier run history stays in fuse.db (`fuse runs` reads both)",
        home.config_path().display()
    );
    Ok(())
}

/// Moves the home's store to PostgreSQL and points the home at it: the
/// URL shown (without its password) and what was moved.
fn to_postgres(
    home: &Home,
    url: &str,
) -> anyhow::Result<(String, crate::store::pg::moving::Moved)> {
    crate::store::pg::check_url(url).map_err(crate::Error::Setting)?;
    let shown = crate::store::pg::redact(url);
    let db = crate::store::pg::db::PgDb::open(url)?;
    let moved = crate::store::pg::moving::move_home(home, &db)?;
    let token = std::fs::read_to_string(home.token_path())
        .with_context(|| format!("cannot read the API token {}", home.token_path().display()))?;
    if !crate::store::pg::moving::join(home, &db, token.trim())? {
        eprintln!("note: {}", crate::store::pg::moving::OTHER_KEY);
    }
    set_store_url(&home.config_path(), url)?;
    Ok((shown, moved))
}

/// Sets `url` under `[store]` in the config file, keeping the rest of it
/// (comments too); the file stays readable by its owner only, as the URL
/// may hold a password.
fn set_store_url(path: &std::path::Path, url: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = format!("url = {}", toml::Value::String(url.to_string()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = lines.iter().position(|l| l.trim() == "[store]");
    match header {
        Some(at) => {
            let end = lines[at + 1..]
                .iter()
                .position(|l| l.trim_start().starts_with('['))
                .map_or(lines.len(), |i| at + 1 + i);
            match (at + 1..end).find(|&i| {
                let l = lines[i].trim_start();
                l.starts_with("url ") || l.starts_with("url=")
            }) {
                Some(i) => lines[i] = line,
                None => lines.insert(at + 1, line),
            }
        }
        None => {
            lines.push(String::new());
            lines.push("[store]".into());
            lines.push(line);
        }
    }
    let mut updated = lines.join("\n");
    updated.push('\n');
    // The new file must load, or the old one stays.
    crate::config::Config::parse(path, &updated)
        .with_context(|| format!("{} would not be valid with store.url set", path.display()))?;
    crate::files::write_atomic(path, updated.as_bytes(), Some(0o600))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
