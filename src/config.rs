//! Configuration: `fuse.toml` in the home, overridden by `FUSE_*` environment
//! variables, overridden by command-line flags.
//!
//! Unknown keys and wrong types are errors that name the file, the key and the line
//! (or the environment variable), so a typo never silently falls back to a default.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole configuration. Every section has defaults, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub engine: EngineConfig,
    pub history: HistoryConfig,
    pub http: HttpConfig,
    pub llm: LlmConfig,
    pub log: LogConfig,
    pub alerts: AlertsConfig,
    pub store: StoreConfig,
}

/// `[store]`: where the store lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty: the home's SQLite file. `postgres://…`: workflows, schedules,
    /// tokens and credentials in PostgreSQL, and runs on its queue for any
    /// number of daemons and `fuse worker`s (docs/scale-out.md).
    pub url: String,
}

impl StoreConfig {
    /// The PostgreSQL URL, when the store is there.
    pub fn postgres(&self) -> Option<&str> {
        let url = self.url.trim();
        (!url.is_empty()).then_some(url)
    }
}

/// `[alerts]`: which workflow is run when something goes wrong, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// The deployed alert workflow the rules below start; also the
    /// `on_failure` of workflows that name none. Empty: no alerts.
    pub workflow: String,
    /// Start it for every failed run (of a workflow without its own
    /// `settings.on_failure`, which is started instead).
    pub every_failure: bool,
    /// Also when a workflow has failed this many times in a row (0: off).
    pub failures_in_a_row: u32,
    /// When more than this many runs wait for a run slot (0: off) …
    pub queue_depth: usize,
    /// … for this long.
    pub queue_for: String,
    /// When a schedule missed fires while the daemon was down.
    pub missed_fires: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            workflow: String::new(),
            every_failure: true,
            failures_in_a_row: 0,
            queue_depth: 0,
            queue_for: "1m".into(),
            missed_fires: true,
        }
    }
}

/// `[daemon]`: where the local daemon listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address to bind. Loopback by default: the API is for this machine only.
    pub host: String,
    pub port: u16,
    /// Runs executing at once; more wait in the (persisted) queue.
    pub max_runs: usize,
    /// Browser origins (`http://localhost:3000`) whose pages may call the API
    /// (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// API requests per second each token may make (bursts up to as many);
    /// beyond that `429` with `Retry-After`. 0 means no limit.
    pub api_rate_limit: f64,
    /// Seconds a dashboard sign-in link (`fuse dashboard`) can be used.
    pub login_link_seconds: u64,
    /// `/metrics` answers without a token (for a local Prometheus scraper).
    pub metrics_public: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5678,
            max_runs: 64,
            cors_origins: Vec::new(),
            api_rate_limit: 0.0,
            login_link_seconds: 60,
            metrics_public: false,
        }
    }
}

/// `[engine]`: how workflows run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Nodes of one run that may execute at once, unless a workflow sets its own.
    pub max_parallel: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { max_parallel: 16 }
    }
}

/// `[history]`: what is recorded and for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Runs kept per workflow (0 = unlimited).
    pub keep_runs: u64,
    /// Days a run is kept (0 = forever).
    pub keep_days: u64,
    /// Node payloads larger than this many bytes are stored as files beside the database.
    pub blob_threshold: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            keep_runs: 1000,
            keep_days: 30,
            blob_threshold: 256 * 1024,
        }
    }
}

/// `[http]`: defaults of `http.request` (and of `llm.chat`'s connections).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Per-request time limit, e.g. "30s".
    pub timeout: String,
    /// Responses larger than this many bytes are refused.
    pub max_response_bytes: u64,
    /// Redirects followed at most (0: do not follow).
    pub max_redirects: usize,
    /// Consecutive failures (network errors, timeouts, 5xx) that open a target's circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit fails fast before a probe is let through.
    pub breaker_cooldown: String,
    /// Requests per second to any one target (scheme://host:port); 0 = no limit.
    pub rate_limit: f64,
    /// Per-target limits, e.g. `"https://api.example.com:443" = 5`.
    pub rate_limits: std::collections::BTreeMap<String, f64>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            timeout: "30s".into(),
            max_response_bytes: 16 * 1024 * 1024,
            max_redirects: 10,
            breaker_threshold: 5,
            breaker_cooldown: "30s".into(),
            rate_limit: 0.0,
            rate_limits: Default::default(),
        }
    }
}

/// `[llm]`: defaults of `llm.chat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// An OpenAI-compatible API base, e.g. http://127.0.0.1:11434/v1 (Ollama).
    pub base_url: String,
    /// Model used when a node names none.
    pub model: String,
    /// Embedding model of llm.embed and vector.query when a node names none.
    pub embed_model: String,
    /// Environment variable holding the API key (never put the key itself here).
    pub api_key_env: String,
    /// Cache responses by a hash of the request (in the home's cache/llm/).
    pub cache: bool,
    /// Per-request time limit.
    pub timeout: String,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:11434/v1".into(),
            model: String::new(),
            embed_model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            cache: false,
            timeout: "120s".into(),
        }
    }
}

/// `[log]`: verbosity of fuse's own diagnostics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// One of error, warn, info, debug, trace.
    pub level: String,
    /// `text` (one line per event: time, level, fields, message) or `json`
    /// (one object per line).
    pub format: String,
    /// The daemon log is rotated when it passes this many bytes …
    pub max_size: u64,
    /// … keeping this many rotated files (`daemon.log.1` is the newest).
    pub keep: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
            max_size: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// Environment variables starting with `FUSE_` that are not config keys.
const NON_CONFIG_VARS: &[&str] = &[
    "FUSE_HOME",
    "FUSE_MASTER_KEY",
    "FUSE_NEW_MASTER_KEY",
    "FUSE_LOG",
    "FUSE_ROLES",
];

/// Values given on the command line; they win over the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub port: Option<u16>,
}

impl Config {
    /// Reads `path` (a missing file means defaults), then applies `FUSE_*` variables
    /// from `env` and finally `overrides`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config> {
        let mut config = match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(Error::io("read config", path, e)),
        };
        config.apply_env(env)?;
        if let Some(port) = overrides.port {
            config.daemon.port = port;
        }
        config.check()?;
        Ok(config)
    }

    /// Parses the text of a config file; errors carry the file, line, column and key.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let located = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            Error::Config {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            located(
                e.span(),
                format!("{} (fix the TOML syntax)", e.message().trim()),
            )
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            located(
                inner.span(),
                format!(
                    "key `{key}`: {} (see the comments in a fresh `fuse init` config for valid keys)",
                    inner.message().trim()
                ),
            )
        })
    }

    /// Applies `FUSE_<SECTION>_<KEY>` variables, e.g. `FUSE_DAEMON_PORT=9000`.
    fn apply_env(&mut self, env: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        let known = Self::keys();
        let mut table = toml::Table::try_from(&*self)
            .map_err(|e| Error::Setting(format!("config cannot be represented: {e}")))?;
        let mut changed = false;
        for (var, value) in env {
            if !var.starts_with("FUSE_") || NON_CONFIG_VARS.contains(&var.as_str()) {
                continue;
            }
            let Some((section, key)) = known
                .iter()
                .find(|(s, k)| format!("FUSE_{}_{}", s, k).to_uppercase() == var)
            else {
                tracing::warn!("ignoring {var}: it is not a fuse setting");
                continue;
            };
            let parsed = parse_env_value(&value);
            // Check this one variable on its own so the error names it.
            let mut single = toml::Table::new();
            let mut inner = toml::Table::new();
            inner.insert(key.clone(), parsed.clone());
            single.insert(section.clone(), toml::Value::Table(inner));
            if let Err(e) = Config::deserialize(toml::Value::Table(single)) {
                return Err(Error::ConfigEnv {
                    var,
                    value,
                    message: e.message().trim().to_string(),
                });
            }
            if let Some(toml::Value::Table(t)) = table.get_mut(section.as_str()) {
                t.insert(key.clone(), parsed);
                changed = true;
            }
        }
        if changed {
            *self = Config::deserialize(toml::Value::Table(table))
                .map_err(|e| Error::Setting(e.message().to_string()))?;
        }
        Ok(())
    }

    /// Every `(section, key)` pair the config knows.
    pub fn keys() -> Vec<(String, String)> {
        let mut keys = Vec::new();
        if let Ok(table) = toml::Table::try_from(Config::default()) {
            for (section, value) in table {
                if let toml::Value::Table(t) = value {
                    keys.extend(t.keys().map(|k| (section.clone(), k.clone())));
                }
            }
        }
        keys
    }

    /// Checks values whose type is right but whose value is not.
    fn check(&self) -> Result<()> {
        if self.engine.max_parallel == 0 {
            return Err(Error::Setting(
                "engine.max_parallel must be at least 1".into(),
            ));
        }
        for (key, value) in [
            ("http.timeout", &self.http.timeout),
            ("http.breaker_cooldown", &self.http.breaker_cooldown),
            ("llm.timeout", &self.llm.timeout),
            ("alerts.queue_for", &self.alerts.queue_for),
        ] {
            crate::engine::duration::parse(value)
                .map_err(|e| Error::Setting(format!("{key}: {e}")))?;
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(Error::Setting(format!(
                "log.format must be \"text\" or \"json\", not {:?}",
                self.log.format
            )));
        }
        if self.log.max_size < 4096 {
            return Err(Error::Setting(
                "log.max_size must be at least 4096 bytes".into(),
            ));
        }
        if let Some(url) = self.store.postgres() {
            crate::store::pg::check_url(url)
                .map_err(|e| Error::Setting(format!("store.url: {e}")))?;
        }
        if self.http.breaker_threshold == 0 {
            return Err(Error::Setting(
                "http.breaker_threshold must be at least 1".into(),
            ));
        }
        const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
        if !LEVELS.contains(&self.log.level.as_str()) {
            return Err(Error::Setting(format!(
                "log.level is {:?}; use one of {}",
                self.log.level,
                LEVELS.join(", ")
            )));
        }
        Ok(())
    }
}

/// An environment value is read as a TOML value when it is one (`9000`, `true`),
/// otherwise as a string.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// The commented `fuse.toml` written by `fuse init`; `port` is the chosen port.
pub fn default_file(port: u16) -> String {
    let d = Config::default();
    format!(
        r#"# fuse configuration. Every key is optional; the values shown are the defaults.
# Environment variables override this file: FUSE_<SECTION>_<KEY>, e.g. FUSE_DAEMON_PORT=9000.
# Command-line flags override both.

[daemon]
# Address the daemon binds to. Keep it on loopback unless you put a proxy in front.
host = "{host}"
port = {port}
# Runs executing at once; accepted runs beyond that wait, recorded as queued.
max_runs = {max_runs}
# Browser origins whose pages may call the API (CORS), e.g. ["http://localhost:3000"].
cors_origins = []
# API requests per second per token (429 with Retry-After beyond); 0 = no limit.
api_rate_limit = 0
# Seconds a one-time dashboard sign-in link (from `fuse start` / `fuse dashboard`) stays valid.
login_link_seconds = {login_link_seconds}
# /metrics answers without a token (a local Prometheus scraper); off: it needs one.
metrics_public = false

[engine]
# How many nodes of one run may execute at the same time (a workflow's
# settings.max_parallel takes precedence).
max_parallel = {max_parallel}

[history]
# Runs kept per workflow; older ones are pruned automatically (0 = keep all).
keep_runs = {keep_runs}
# Days a run is kept (0 = forever).
keep_days = {keep_days}
# Node inputs/outputs larger than this many bytes are stored as files in blobs/.
blob_threshold = {blob_threshold}

[http]
# Per-request time limit of http.request (a node's `timeout` input overrides it).
timeout = "{http_timeout}"
# Larger responses are refused.
max_response_bytes = {max_response_bytes}
# Redirects followed at most (0: do not follow).
max_redirects = {max_redirects}
# After this many consecutive failures (network errors, timeouts, 5xx) calls to
# that scheme://host:port fail fast for breaker_cooldown, then one probe is let through.
breaker_threshold = {breaker_threshold}
breaker_cooldown = "{breaker_cooldown}"
# Requests per second to any one target; 0 = no limit.
rate_limit = 0
# Per-target limits:
# [http.rate_limits]
# "https://api.example.com:443" = 5

[llm]
# Any OpenAI-compatible endpoint: Ollama, llama.cpp's server, OpenAI, …
base_url = "{llm_base}"
# Model used when a node names none.
model = ""
# Embedding model of llm.embed and vector.query when a node names none
# (e.g. "nomic-embed-text" on Ollama).
embed_model = ""
# Environment variable that holds the API key (the key itself never goes here).
api_key_env = "{api_key_env}"
# Cache responses by a hash of the request, so re-runs are free and deterministic.
cache = false
timeout = "{llm_timeout}"

[log]
# error, warn, info, debug or trace (-v / -q on the command line adjust it).
level = "{level}"
# text or json (one object per line).
format = "text"
# logs/daemon.log is rotated past max_size bytes, keeping `keep` old files.
max_size = 10485760
keep = 5

[alerts]
# A deployed workflow to run when something goes wrong (e.g. from
# templates/alert-webhook.json); it gets {{rule, message, workflow, run_id, …}}.
# Empty: no alerts. A workflow's settings.on_failure names its own.
workflow = ""
# Run it for every failed run.
every_failure = true
# Also when a workflow has failed this many times in a row (0: off).
failures_in_a_row = 0
# When more than queue_depth runs wait for a slot for queue_for (0: off).
queue_depth = 0
queue_for = "1m"
# When a schedule missed fires while the daemon was down.
missed_fires = true

[store]
# Empty: this home's SQLite file (fuse.db). A PostgreSQL URL
# (postgres://user:password@host/db, or FUSE_STORE_URL) puts workflows,
# schedules, tokens and credentials there and runs go through its queue, so
# daemons and `fuse worker`s on other machines share them (docs/scale-out.md).
# `fuse init --store URL` sets it and moves this home's store there.
url = ""
"#,
        host = d.daemon.host,
        max_runs = d.daemon.max_runs,
        login_link_seconds = d.daemon.login_link_seconds,
        max_parallel = d.engine.max_parallel,
        keep_runs = d.history.keep_runs,
        keep_days = d.history.keep_days,
        blob_threshold = d.history.blob_threshold,
        level = d.log.level,
        http_timeout = d.http.timeout,
        max_response_bytes = d.http.max_response_bytes,
        max_redirects = d.http.max_redirects,
        breaker_threshold = d.http.breaker_threshold,
        breaker_cooldown = d.http.breaker_cooldown,
        llm_base = d.llm.base_url,
        api_key_env = d.llm.api_key_env,
        llm_timeout = d.llm.timeout,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("fuse.toml"), text)
    }

    #[test]
    fn default_file_parses_to_defaults() {
        let mut expected = Config::default();
        expected.daemon.port = 6000;
        assert_eq!(parse(&default_file(6000)).unwrap(), expected);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("[daemon]\nhost = \"127.0.0.1\"\nprot = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("fuse.toml:3:"), "{msg}");
        assert!(msg.contains("prot"), "{msg}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let msg = parse("\n[daemon]\nport = \"high\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("fuse.toml:3:"), "{msg}");
        assert!(msg.contains("daemon.port"), "{msg}");
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuse.toml");
        std::fs::write(&path, "[daemon]\nport = 1000\n[engine]\nmax_parallel = 2\n").unwrap();
        let env = vec![
            ("FUSE_DAEMON_PORT".to_string(), "2000".to_string()),
            ("FUSE_HOME".to_string(), "/x".to_string()),
        ];
        let c = Config::load(&path, env.clone(), &Overrides::default()).unwrap();
        assert_eq!((c.daemon.port, c.engine.max_parallel), (2000, 2));
        let c = Config::load(&path, env, &Overrides { port: Some(3000) }).unwrap();
        assert_eq!(c.daemon.port, 3000);
    }

    #[test]
    fn bad_env_value_names_variable() {
        let env = vec![("FUSE_DAEMON_PORT".to_string(), "lots".to_string())];
        let msg = Config::load(
            Path::new("/nonexistent/fuse.toml"),
            env,
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("FUSE_DAEMON_PORT"), "{msg}");
    }
}
