//! `fuse version`: the engine and its environment, as text or `--json`.

use std::process::ExitCode;

use serde::Serialize;

use super::Globals;
use crate::home::{self, Home};
use crate::secrets::keystore;
use crate::store::{self, Store};

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct VersionInfo {
    version: &'static str,
    commit: &'static str,
    target: &'static str,
    rustc: &'static str,
    sqlite: &'static str,
    /// Schema of the home's database; null when there is no home yet.
    schema_version: Option<i64>,
    schema_version_supported: i64,
    home: String,
    home_initialized: bool,
    /// Where the store is: `sqlite`, or the PostgreSQL URL without its password.
    store: String,
    keyring: String,
    key_store: Option<&'static str>,
    node_packages: PackageCounts,
    plugin_packages: PackageCounts,
}

#[derive(Debug, Serialize)]
struct PackageCounts {
    home: usize,
    bundled: usize,
}

pub fn run(globals: &Globals, args: VersionArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let initialized = home.is_initialized();
    if initialized {
        // A broken config is reported here too, naming the file, key and line.
        home.config(&Default::default())?;
    }
    let (schema_version, key_store) = if initialized {
        let store = home.open_store()?;
        let kind = Home::key_store(|k| store.meta(k))?;
        (Some(store.schema_version()?), kind.map(|k| k.as_str()))
    } else {
        (None, None)
    };
    let keyring = match keystore::keyring_status() {
        keystore::KeyringStatus::Available => "available".to_string(),
        keystore::KeyringStatus::Unavailable(reason) => format!("unavailable ({reason})"),
    };
    let (bundled_nodes, bundled_plugins) = home::bundled_counts();
    let info = VersionInfo {
        version: crate::VERSION,
        commit: env!("FUSE_GIT_COMMIT"),
        target: env!("FUSE_TARGET"),
        rustc: env!("FUSE_RUSTC_VERSION"),
        sqlite: store::sqlite_version(),
        schema_version,
        schema_version_supported: Store::latest_schema_version(),
        home: home.root().display().to_string(),
        home_initialized: initialized,
        store: match home.store_url()? {
            Some(url) => crate::store::pg::redact(&url),
            None => "sqlite".into(),
        },
        keyring,
        key_store,
        node_packages: PackageCounts {
            home: Home::count_packages(&home.node_packages_dir()),
            bundled: bundled_nodes,
        },
        plugin_packages: PackageCounts {
            home: Home::count_packages(&home.plugin_packages_dir()),
            bundled: bundled_plugins,
        },
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("fuse {} ({})", info.version, info.commit);
    outln!("target:          {}", info.target);
    outln!("rustc:           {}", info.rustc);
    outln!("sqlite:          {}", info.sqlite);
    match info.schema_version {
        Some(v) => outln!(
            "schema:          {v} (this binary supports up to {})",
            info.schema_version_supported
        ),
        None => outln!(
            "schema:          no database yet (this binary supports up to {})",
            info.schema_version_supported
        ),
    }
    if initialized {
        outln!("home:            {}", info.home);
    } else {
        outln!(
            "home:            {} (not initialized: run `fuse init`)",
            info.home
        );
    }
    outln!("store:           {}", info.store);
    outln!("keyring:         {}", info.keyring);
    outln!("master key:      {}", info.key_store.unwrap_or("none yet"));
    outln!(
        "node packages:   {} in home, {} bundled",
        info.node_packages.home,
        info.node_packages.bundled
    );
    outln!(
        "plugin packages: {} in home, {} bundled",
        info.plugin_packages.home,
        info.plugin_packages.bundled
    );
    Ok(ExitCode::SUCCESS)
}
