//! The fuse home: where config, database, keys, packages and logs live, and the
//! `init` that creates it.
//!
//! Every step of `init` checks what already exists and only creates what is
//! missing, and files are written to a temporary name and renamed into place, so
//! running it again changes nothing, and running it over a home whose first `init`
//! was interrupted finishes it.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use crate::config::{self, Config};
use crate::error::{Error, IoContext, Result};
pub use crate::files::write_atomic;
use crate::files::{TMP_PREFIX, set_mode};
use crate::secrets::keystore::{self, KeyStoreKind};
use crate::store::Store;

static BUNDLED_NODE_PACKAGES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/node_packages");
static BUNDLED_PLUGIN_PACKAGES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/plugin_packages");
static BUNDLED_TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Meta key recording which store holds the master key.
pub const META_KEY_STORE: &str = "key_store";

/// A fuse home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home` (or `FUSE_HOME`, merged by the CLI) when given, else the platform's
    /// data directory.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Home> {
        if let Some(root) = explicit {
            return Ok(Home::at(root));
        }
        let dirs = directories::ProjectDirs::from("dev", "fuse", "fuse").ok_or_else(|| {
            Error::Setting(
                "no home directory could be determined for this user; pass --home DIR or set FUSE_HOME".into(),
            )
        })?;
        Ok(Home::at(dirs.data_dir().to_path_buf()))
    }

    /// A home at `root` (made absolute so messages and keyring entries are stable).
    pub fn at(root: PathBuf) -> Home {
        let root = std::path::absolute(&root).unwrap_or(root);
        Home { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("fuse.toml")
    }
    pub fn db_path(&self) -> PathBuf {
        self.root.join("fuse.db")
    }
    pub fn token_path(&self) -> PathBuf {
        self.root.join("api-token")
    }
    pub fn workflows_dir(&self) -> PathBuf {
        self.root.join("workflows")
    }
    pub fn node_packages_dir(&self) -> PathBuf {
        self.root.join("node_packages")
    }
    pub fn plugin_packages_dir(&self) -> PathBuf {
        self.root.join("plugin_packages")
    }
    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// True when `init` has at least started here (a config or a database
    /// exists); false also when the home cannot be read ([`Home::probe`] says why).
    pub fn is_initialized(&self) -> bool {
        self.probe().unwrap_or(false)
    }

    /// Whether `init` has at least started here; an error when the home (or
    /// what is in it) cannot be read, so that a permission problem is not
    /// taken for a missing home.
    pub fn probe(&self) -> Result<bool> {
        for path in [self.config_path(), self.db_path()] {
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        "read the fuse home (check the owner and permissions of the folder and its files)",
                        path,
                        e,
                    ));
                }
            }
        }
        Ok(false)
    }

    /// Fails with a "run fuse init" error unless the home exists (or with
    /// what is wrong when it cannot be read).
    pub fn require(&self) -> Result<()> {
        if self.probe()? {
            Ok(())
        } else {
            Err(Error::NoHome {
                path: self.root.clone(),
            })
        }
    }

    /// Loads the configuration of this home.
    pub fn config(&self, overrides: &config::Overrides) -> Result<Config> {
        Config::load(&self.config_path(), std::env::vars(), overrides)
    }

    /// The store's workflows, schedules, tokens and credentials: in
    /// PostgreSQL when `store.url` says so, else in the home's SQLite file.
    pub fn open_db(&self) -> Result<Box<dyn crate::store::Db>> {
        Ok(match self.store_url()? {
            Some(url) => Box::new(crate::store::pg::db::PgDb::open(&url)?),
            None => Box::new(crate::store::Sqlite::new(
                self.open_store()?,
                self.blobs_dir(),
            )?),
        })
    }

    /// The PostgreSQL URL of the store (`store.url`, or `FUSE_STORE_URL`),
    /// when the store is there; `None` for the home's SQLite file.
    pub fn store_url(&self) -> Result<Option<String>> {
        if !self.probe()? {
            return Ok(std::env::var("FUSE_STORE_URL")
                .ok()
                .filter(|u| !u.trim().is_empty()));
        }
        Ok(self
            .config(&Default::default())?
            .store
            .postgres()
            .map(str::to_string))
    }

    /// Opens (and migrates) the database of this home.
    pub fn open_store(&self) -> Result<Store> {
        self.require()?;
        Store::open(&self.db_path())
    }

    /// The store holding this home's master key, as recorded at `init`.
    /// `meta` reads a `meta` value of the database (`|k| store.meta(k)`).
    pub fn key_store(
        meta: impl FnOnce(&str) -> Result<Option<String>>,
    ) -> Result<Option<KeyStoreKind>> {
        Ok(meta(META_KEY_STORE)?
            .as_deref()
            .and_then(KeyStoreKind::parse))
    }

    /// Package directories (holding a manifest.json) under `dir`.
    pub fn count_packages(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("manifest.json").is_file())
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Choices for `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub port: u16,
    /// Try the OS keyring for the master key before falling back to a key file.
    pub want_keyring: bool,
}

/// What `init` did with one part of the home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Kept,
    Updated(String),
}

/// One line of the `init` report.
#[derive(Debug, Clone)]
pub struct Step {
    pub what: String,
    pub outcome: Outcome,
}

/// The result of `init`.
#[derive(Debug, Clone, Default)]
pub struct InitReport {
    pub steps: Vec<Step>,
    /// Set when the keyring was wanted but could not be used, with the reason.
    pub keyring_failure: Option<String>,
    pub key_store: Option<KeyStoreKind>,
}

impl InitReport {
    fn push(&mut self, what: impl Into<String>, outcome: Outcome) {
        self.steps.push(Step {
            what: what.into(),
            outcome,
        });
    }

    /// True when nothing had to be created or changed.
    pub fn unchanged(&self) -> bool {
        self.steps.iter().all(|s| s.outcome == Outcome::Kept)
    }

    /// True when some parts existed and others had to be created: an earlier
    /// `init` was interrupted and this one finished it.
    pub fn finished_partial(&self) -> bool {
        !self.unchanged() && self.steps.iter().any(|s| s.outcome == Outcome::Kept)
    }
}

/// Creates the home, or completes it; never overwrites what exists.
pub fn init(home: &Home, options: &InitOptions) -> Result<InitReport> {
    let mut report = InitReport::default();
    let root = home.root();
    let existed = root.is_dir();
    std::fs::create_dir_all(root).io_context("create home", root)?;
    if !existed {
        // The home holds the database and possibly the key file: this user only.
        set_mode(root, 0o700)?;
    }
    report.push(
        format!("home {}", root.display()),
        if existed {
            Outcome::Kept
        } else {
            Outcome::Created
        },
    );
    remove_leftovers(root)?;

    for dir in [
        home.workflows_dir(),
        home.node_packages_dir(),
        home.plugin_packages_dir(),
        home.templates_dir(),
        home.logs_dir(),
        home.blobs_dir(),
    ] {
        let name = dir_name(&dir);
        if dir.is_dir() {
            report.push(format!("{name}/"), Outcome::Kept);
        } else {
            std::fs::create_dir_all(&dir).io_context("create folder", &dir)?;
            report.push(format!("{name}/"), Outcome::Created);
        }
    }

    let config_path = home.config_path();
    if config_path.is_file() {
        // A broken existing config is the user's to fix; never overwrite it.
        Config::load(
            &config_path,
            std::env::vars(),
            &config::Overrides::default(),
        )?;
        report.push("fuse.toml", Outcome::Kept);
    } else {
        write_atomic(
            &config_path,
            config::default_file(options.port).as_bytes(),
            None,
        )?;
        report.push("fuse.toml", Outcome::Created);
    }

    let db_path = home.db_path();
    let db_existed = db_path.is_file();
    let before = if db_existed {
        Store::existing_schema_version(&db_path)
    } else {
        None
    };
    let store = Store::open(&db_path)?;
    let after = store.schema_version()?;
    report.push(
        "fuse.db",
        match (db_existed, before) {
            (false, _) => Outcome::Created,
            (true, Some(v)) if v == after => Outcome::Kept,
            (true, v) => Outcome::Updated(format!(
                "migrated from schema {} to {after}",
                v.unwrap_or(0)
            )),
        },
    );

    let token_path = home.token_path();
    let token = if token_path.is_file() {
        report.push("api-token", Outcome::Kept);
        std::fs::read_to_string(&token_path).io_context("read", &token_path)?
    } else {
        let token = random_hex(32)?;
        write_atomic(&token_path, format!("{token}\n").as_bytes(), Some(0o600))?;
        report.push("api-token", Outcome::Created);
        token
    };
    // The file's token is the first admin API token (`init`).
    store.ensure_init_token(token.trim())?;

    match Home::key_store(|k| store.meta(k))? {
        Some(kind) => {
            // Prove it still opens, so a broken key store shows up now, not at first use.
            keystore::load(root, kind)?;
            report.key_store = Some(kind);
            report.push(format!("master key ({})", kind.as_str()), Outcome::Kept);
        }
        None => {
            let (kind, failure) = keystore::create(root, options.want_keyring)?;
            crate::secrets::vault::record_key_id(&store, &keystore::load(root, kind)?)?;
            store.set_meta(META_KEY_STORE, kind.as_str())?;
            report.key_store = Some(kind);
            report.keyring_failure = failure;
            report.push(format!("master key ({})", kind.as_str()), Outcome::Created);
        }
    }

    for (bundle, target, label) in [
        (
            &BUNDLED_NODE_PACKAGES,
            home.node_packages_dir(),
            "node_packages",
        ),
        (
            &BUNDLED_PLUGIN_PACKAGES,
            home.plugin_packages_dir(),
            "plugin_packages",
        ),
        (&BUNDLED_TEMPLATES, home.templates_dir(), "templates"),
    ] {
        copy_bundle(bundle, &target, label, &mut report)?;
    }
    Ok(report)
}

/// Copies every top-level entry of `bundle` that `target` lacks. Folders are copied
/// under a temporary name and renamed, so a package is either whole or absent.
fn copy_bundle(
    bundle: &Dir<'_>,
    target: &Path,
    label: &str,
    report: &mut InitReport,
) -> Result<()> {
    for entry in bundle.entries() {
        let Some(name) = entry.path().file_name() else {
            continue;
        };
        let dest = target.join(name);
        let what = format!("{label}/{}", name.to_string_lossy());
        if dest.exists() {
            report.push(what, Outcome::Kept);
            continue;
        }
        match entry {
            include_dir::DirEntry::File(f) => {
                write_atomic(&dest, f.contents(), mode_for(f.path()))?;
            }
            include_dir::DirEntry::Dir(d) => {
                let tmp = target.join(format!("{TMP_PREFIX}{}", name.to_string_lossy()));
                if tmp.exists() {
                    std::fs::remove_dir_all(&tmp).io_context("remove", &tmp)?;
                }
                extract(d, d.path(), &tmp)?;
                std::fs::rename(&tmp, &dest).io_context("move into place", &dest)?;
            }
        }
        report.push(what, Outcome::Created);
    }
    Ok(())
}

fn extract(dir: &Dir<'_>, base: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).io_context("create folder", dest)?;
    for entry in dir.entries() {
        let rel = entry.path().strip_prefix(base).unwrap_or(entry.path());
        let out = dest.join(rel);
        match entry {
            include_dir::DirEntry::Dir(d) => {
                std::fs::create_dir_all(&out).io_context("create folder", &out)?;
                extract(d, base, dest)?;
            }
            include_dir::DirEntry::File(f) => {
                std::fs::write(&out, f.contents()).io_context("write", &out)?;
                if let Some(mode) = mode_for(f.path()) {
                    set_mode(&out, mode)?;
                }
            }
        }
    }
    Ok(())
}

/// Bundled scripts lose their executable bit in include_dir; give it back by name.
fn mode_for(path: &Path) -> Option<u32> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    matches!(ext, "sh" | "py").then_some(0o755)
}

/// Removes `.tmp-*` files and folders an interrupted `init` left behind.
fn remove_leftovers(root: &Path) -> Result<()> {
    for dir in [
        root.to_path_buf(),
        root.join("node_packages"),
        root.join("plugin_packages"),
        root.join("templates"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            if !entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).io_context("remove", &path)?;
            } else {
                std::fs::remove_file(&path).io_context("remove", &path)?;
            }
        }
    }
    Ok(())
}

fn dir_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::KeyStore(format!("the OS random generator failed: {e}")))?;
    Ok(crate::digest::hex(&bytes))
}

/// A template manifest with its top-level `description` (the line indented
/// by two spaces; inputs keep theirs) set to `description`, JSON-escaped.
fn with_description(manifest: &str, description: &str) -> String {
    let escaped = serde_json::to_string(description).unwrap_or_else(|_| "\"\"".into());
    manifest
        .lines()
        .map(|line| {
            if line.starts_with("  \"description\": ") {
                format!("  \"description\": {escaped},")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Names of the bundled node and plugin packages and templates (for `fuse version`).
pub fn bundled_counts() -> (usize, usize) {
    let count = |d: &Dir<'_>| {
        d.dirs()
            .filter(|p| p.get_file(p.path().join("manifest.json")).is_some())
            .count()
    };
    (
        count(&BUNDLED_NODE_PACKAGES),
        count(&BUNDLED_PLUGIN_PACKAGES),
    )
}

/// Writes the bundled package scaffold for `lang` (`templates/packages/<lang>`)
/// into `dest`, with `__NAME__` replaced by `name` and, given one, the
/// manifest's description replaced by `description`. Returns the files written.
pub fn scaffold_package(
    lang: &str,
    name: &str,
    description: Option<&str>,
    dest: &Path,
) -> Result<Vec<PathBuf>> {
    let base = Path::new("packages").join(lang);
    let Some(dir) = BUNDLED_TEMPLATES.get_dir(&base) else {
        return Err(Error::Setting(format!(
            "there is no {lang} package template; use python, sh or rust"
        )));
    };
    let mut written = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        stack.extend(d.dirs());
        for file in d.files() {
            let rel = file.path().strip_prefix(&base).unwrap_or(file.path());
            let target = dest.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).io_context("create folder", parent)?;
            }
            let mut text = String::from_utf8_lossy(file.contents()).replace("__NAME__", name);
            if let (Some(description), true) = (description, rel == Path::new("manifest.json")) {
                text = with_description(&text, description);
            }
            write_atomic(&target, text.as_bytes(), mode_for(&target))?;
            written.push(target);
        }
    }
    written.sort();
    Ok(written)
}
