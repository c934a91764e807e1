//! The daemon (`fuse start`): one process that serves the HTTP API and
//! webhooks on loopback and runs workflows through the same [`Engine`] as
//! `fuse run`: start/stop/status, the token-protected API, webhooks,
//! schedules, file and plugin triggers, live events, the persisted queue,
//! package hot reload and crash recovery. [`serve`] is the server as a library
//! function (a listener and a shutdown future in, as mini-redis's
//! `server::run`); [`run_foreground`] binds the configured address and passes
//! SIGTERM/Ctrl-C.

mod alerts;
mod api;
mod compat;
mod dashboard;
mod events;
/// The JSON form of run events, as WebSocket clients get them (workers relay it).
pub use events::to_json as event_json;
pub(crate) mod files;
mod folder;
mod hooks;
pub mod logfile;
mod manage;
mod metrics;
mod plugins;
mod probes;
mod recovery;
mod routes;
pub mod scheduler;
mod sessions;
mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, Fanout, Observer};
use crate::home::Home;
use crate::store::{Db, Recorder, Store};

/// Largest request body the API accepts.
pub const MAX_BODY: usize = 10 * 1024 * 1024;
/// How long `stop` lets running runs finish before they are marked interrupted.
pub const GRACE: Duration = Duration::from_secs(10);

/// What a running daemon writes to `daemon.json` in the home.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub host: String,
    pub port: u16,
    pub started_at: String,
}

impl DaemonInfo {
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// The file a running daemon describes itself in.
pub fn info_path(home: &Home) -> PathBuf {
    home.root().join("daemon.json")
}

/// The running daemon of a home, if its process is alive and is a fuse
/// daemon (a stale file, or one whose pid now belongs to another program, is
/// removed: that program is never signalled).
pub fn running(home: &Home) -> Option<DaemonInfo> {
    let path = info_path(home);
    let text = std::fs::read_to_string(&path).ok()?;
    let info: DaemonInfo = serde_json::from_str(&text).ok()?;
    if process_alive(info.pid) && is_fuse_daemon(info.pid) {
        Some(info)
    } else {
        let _ = std::fs::remove_file(&path);
        None
    }
}

/// Whether process `pid` runs `fuse … start --foreground` (what `fuse start`
/// detaches, and what service managers run). Where `/proc` cannot say, it is
/// taken to be one.
fn is_fuse_daemon(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return !std::path::Path::new("/proc/self/cmdline").exists();
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let program_is_fuse = args.first().is_some_and(|a| {
        std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(a))
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("fuse"))
    });
    program_is_fuse
        && args.iter().any(|a| *a == b"start")
        && args.iter().any(|a| *a == b"--foreground")
}

pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    // A zombie is not a running daemon.
    alive
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(true)
}

/// Shared by every request.
pub(crate) struct State {
    pub home: Home,
    pub engine: Engine,
    /// The database (reads from a pool; call it off the async workers,
    /// through [`State::db`] or a blocking task).
    pub db: Arc<dyn Db>,
    /// The API tokens (hashes and scopes) requests are checked against.
    pub tokens: tokens::Tokens,
    /// Dashboard sign-in links and sessions.
    pub sessions: sessions::Sessions,
    pub started: Instant,
    pub started_at: String,
    pub active: AtomicUsize,
    /// Runs in flight per workflow (overlap policies).
    pub per_workflow: Mutex<std::collections::HashMap<String, usize>>,
    /// Plugin route handlers, by plugin (loaded at start).
    pub plugin_routes:
        std::sync::OnceLock<std::collections::HashMap<String, plugins::PluginRoutes>>,
    /// Supervisors of the plugin event triggers workflows listen to.
    pub trigger_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Watchers of `trigger.file` folders (replaced when workflows change).
    pub file_watchers: Mutex<Vec<notify::RecommendedWatcher>>,
    /// The daemon's runtime, for tasks started from other threads.
    pub rt: std::sync::OnceLock<tokio::runtime::Handle>,
    /// A handle on this state, for work started from `&State`.
    pub me: std::sync::OnceLock<std::sync::Weak<State>>,
    /// Live events for WebSocket clients.
    pub bus: Arc<events::EventBus>,
    /// The history writer (durable writes share its commits).
    pub recorder: Arc<Recorder>,
    /// Plans and webhook paths of the enabled workflows.
    pub routes: std::sync::RwLock<Arc<routes::Routes>>,
    /// Run slots (`daemon.max_runs`).
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Webhook rate-limit buckets by path: (tokens, last refill).
    pub hook_buckets: hooks::Buckets,
    /// API rate-limit buckets by token name.
    pub api_buckets: hooks::Buckets,
    /// The address the daemon listens on (webhook URLs are shown with it).
    pub addr: std::sync::OnceLock<SocketAddr>,
    /// `[daemon]` settings the request path reads (CORS, API rate limit).
    pub daemon_config: crate::config::DaemonConfig,
    /// Cancel handles of the runs in flight, by run id.
    pub cancels: Mutex<std::collections::HashMap<String, CancellationToken>>,
    /// Workflows with a fire waiting for the previous run (overlap: queue).
    pub queued: Mutex<std::collections::HashSet<String>>,
    /// Cancels every run when the grace period of a stop is over.
    pub runs_cancel: CancellationToken,
    /// When the scheduler last ticked (Unix ms; 0 before its first tick).
    pub scheduler_tick: std::sync::atomic::AtomicI64,
    /// `[alerts]` settings.
    pub alerts: crate::config::AlertsConfig,
    /// Failed runs in a row, by workflow (alerts.failures_in_a_row).
    pub streaks: Mutex<std::collections::HashMap<String, u32>>,
    /// Alert runs to start ([`alerts::deliver`]).
    pub alert_tx: tokio::sync::mpsc::UnboundedSender<alerts::Alert>,
    /// What `/metrics` exports.
    pub metrics: Arc<metrics::Metrics>,
    /// The PostgreSQL run queue runs go to, if any ([`Options::queue`]).
    pub queue: Option<crate::store::pg::Pg>,
    /// Who this daemon is when it takes schedule fires from the queue.
    pub instance: String,
    pub roles: Roles,
}

impl State {
    /// The credentials vault on the daemon's database (blocking: call it off
    /// the async workers). Opened per use, so a key rotated by `fuse creds
    /// rotate-key` meanwhile is picked up.
    pub fn vault(&self) -> crate::Result<crate::secrets::Vault> {
        crate::secrets::Vault::open_on(&self.home, self.db.clone())
    }

    /// Runs `f` with the database on a blocking thread (never on an async
    /// worker).
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Db) -> crate::Result<T> + Send + 'static,
    ) -> crate::Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&*db))
            .await
            .map_err(|e| crate::Error::Setting(format!("a database task failed: {e}")))?
    }

    fn workflow_started(&self, name: &str) {
        if let Ok(mut m) = self.per_workflow.lock() {
            *m.entry(name.to_string()).or_insert(0) += 1;
        }
    }

    fn workflow_finished(&self, name: &str) {
        if let Ok(mut m) = self.per_workflow.lock()
            && let Some(n) = m.get_mut(name)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Runs of `name` in flight.
    pub fn running_of(&self, name: &str) -> usize {
        self.per_workflow
            .lock()
            .map(|m| m.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// A daemon may start: the home exists and no daemon serves it yet.
fn ready_for_a_daemon(home: &Home) -> anyhow::Result<()> {
    home.require()?;
    if let Some(other) = running(home) {
        anyhow::bail!(
            "a fuse daemon is already running for this home (pid {}, {}); `fuse stop` stops it",
            other.pid,
            other.url()
        );
    }
    Ok(())
}

/// Runs the daemon in this process until SIGTERM or Ctrl-C.
///
/// With `log_file`, standard output and error move to that file once the
/// daemon listens: until then a failure reaches whoever started it.
pub fn run_foreground(
    home: &Home,
    port: Option<u16>,
    log_file: Option<&std::path::Path>,
    roles: Roles,
) -> anyhow::Result<()> {
    ready_for_a_daemon(home)?;
    let config = home.config(&Default::default())?;
    let host = config.daemon.host.clone();
    let port = port.unwrap_or(config.daemon.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("cannot listen on {host}:{port} (is another program using the port? set daemon.port or --port)"))?;
        serve(
            home.clone(),
            listener,
            Options {
                log_file: log_file.map(std::path::Path::to_path_buf),
                queue: config.store.postgres().map(str::to_string),
                roles,
            },
            shutdown_signal(),
        )
        .await
    });
    // Blocking tasks (a jq program that never ends) must not hold up exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    // Runs still going after the grace period are interrupted; accepted runs that
    // never got a slot stay queued and run at the next start.
    if let Ok(store) = home.open_store()
        && let Err(e) = mark_interrupted(&store, false)
    {
        tracing::error!("{e:#}");
    }
    result
}

/// How often a daemon on PostgreSQL looks for workflows other daemons deployed.
const DEPLOYS_EVERY: Duration = Duration::from_secs(1);

/// Rebuilds the routes (webhooks, schedules, triggers) whenever the shared
/// store's workflows change, whoever changed them: a workflow deployed,
/// rolled back, enabled, disabled or deleted through another daemon is
/// served here within [`DEPLOYS_EVERY`].
async fn follow_deploys(state: Arc<State>) {
    let mut seen: Option<i64> = None;
    let mut interval = tokio::time::interval(DEPLOYS_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = match state.db(|db| db.workflows_version()).await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!("cannot see whether other daemons deployed workflows: {e}");
                continue;
            }
        };
        if seen.is_some() && now != seen {
            let state = state.clone();
            let _ = tokio::task::spawn_blocking(move || routes::changed(&state)).await;
        }
        seen = now;
    }
}

/// How often a daemon on PostgreSQL applies retention to the queue's runs.
const QUEUE_RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Applies `history.keep_runs` and `history.keep_days` (or a workflow's own
/// `settings.keep_runs`/`keep_days`) to the finished runs on the queue, in
/// batches, off the path of runs. Every daemon on the store does; deleting
/// what another already deleted is no work.
async fn prune_queue(pg: crate::store::pg::Pg, history: crate::config::HistoryConfig) {
    let mut interval = tokio::time::interval(QUEUE_RETENTION_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match prune_queue_once(&pg, &history).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("retention: deleted {n} finished run(s) from the queue"),
            Err(e) => {
                tracing::warn!("retention of the queue's runs failed ({e}); it is tried again")
            }
        }
    }
}

/// One pass of [`prune_queue`]: the runs deleted.
pub async fn prune_queue_once(
    pg: &crate::store::pg::Pg,
    history: &crate::config::HistoryConfig,
) -> Result<u64, crate::store::pg::PgError> {
    use crate::store::pg::Scope;
    let now = crate::engine::events::now_ms();
    let rules = |keep_runs: u64, keep_days: u64| {
        (
            (keep_days > 0).then(|| now - keep_days as i64 * 86_400_000),
            (keep_runs > 0).then_some(keep_runs),
        )
    };
    // Workflows with retention of their own.
    let own: Vec<(String, u64, u64)> = pg
        .enabled_workflows()
        .await?
        .into_iter()
        .filter_map(|(name, definition, _)| {
            let settings = crate::Workflow::from_json(&definition).ok()?.settings;
            (settings.keep_runs.is_some() || settings.keep_days.is_some()).then(|| {
                (
                    name,
                    settings.keep_runs.unwrap_or(history.keep_runs),
                    settings.keep_days.unwrap_or(history.keep_days),
                )
            })
        })
        .collect();
    let mut deleted = 0;
    for (name, keep_runs, keep_days) in &own {
        let (before, keep) = rules(*keep_runs, *keep_days);
        if before.is_some() || keep.is_some() {
            deleted += pg.prune_runs(before, keep, 500, &Scope::Only(name)).await?;
        }
    }
    let others: Vec<String> = own.into_iter().map(|(name, ..)| name).collect();
    let (before, keep) = rules(history.keep_runs, history.keep_days);
    if before.is_some() || keep.is_some() {
        deleted += pg
            .prune_runs(before, keep, 500, &Scope::Except(&others))
            .await?;
    }
    Ok(deleted)
}

/// How [`serve`] runs beyond its home and listener.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Move standard output and error to this file once listening (the
    /// detached daemon of `fuse start`).
    pub log_file: Option<PathBuf>,
    /// A PostgreSQL run queue (`FUSE_STORE_URL`, preview): runs that
    /// webhooks, schedules and the API start are queued there for
    /// `fuse worker` processes instead of run here (docs/scale-out.md).
    pub queue: Option<String>,
    /// What this daemon does besides its API (`fuse start --role`; with a
    /// queue only): fire schedules, and run queued runs in process.
    pub roles: Roles,
}

/// The parts of a daemon (`fuse start --role api,scheduler,worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub scheduler: bool,
    /// With a queue: an in-process worker claims queued runs too, so one
    /// `fuse start` still does everything.
    pub worker: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Roles {
            scheduler: true,
            worker: true,
        }
    }
}

impl Roles {
    /// `api,scheduler,worker` (any order; `api` is required: a process
    /// without the API is `fuse worker`).
    pub fn parse(list: &[String]) -> Result<Roles, String> {
        if list.is_empty() {
            return Ok(Roles::default());
        }
        let mut roles = Roles {
            scheduler: false,
            worker: false,
        };
        let mut api = false;
        for role in list {
            match role.trim() {
                "api" => api = true,
                "scheduler" => roles.scheduler = true,
                "worker" => roles.worker = true,
                other => {
                    return Err(format!(
                        "--role {other:?} is not a role (api, scheduler, worker)"
                    ));
                }
            }
        }
        if !api {
            return Err(
                "--role must include api (a process that only runs queued runs is `fuse worker`)"
                    .into(),
            );
        }
        Ok(roles)
    }

    /// The `--role` value that gives these roles.
    pub fn arg(self) -> String {
        let mut parts = vec!["api"];
        if self.scheduler {
            parts.push("scheduler");
        }
        if self.worker {
            parts.push("worker");
        }
        parts.join(",")
    }
}

/// The daemon as a library: serves `home` on `listener` (the API, webhooks,
/// schedules, triggers, live events) until `shutdown` resolves, then gives
/// running runs [`GRACE`] to finish and interrupts the rest. `fuse start`
/// binds the configured address and passes SIGTERM/Ctrl-C; tests bind
/// `127.0.0.1:0` and pass a channel.
pub async fn serve(
    home: Home,
    listener: tokio::net::TcpListener,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let home = &home;
    let config = home.config(&Default::default())?;
    let token = std::fs::read_to_string(home.token_path())
        .with_context(|| format!("cannot read the API token {}", home.token_path().display()))?
        .trim()
        .to_string();
    let store = home.open_store()?;
    // Homes made before named tokens: the file's token becomes `init` (admin).
    store.ensure_init_token(&token)?;
    // Runs an earlier daemon left: accepted-but-not-started ones run now; the
    // ones it was running are interrupted (and resumed where the workflow says so).
    let leftovers = recovery::leftovers(&store)?;
    let interrupted = mark_interrupted(&store, false)?;
    if interrupted > 0 {
        tracing::warn!(
            "{interrupted} run(s) left running by an earlier daemon are marked interrupted"
        );
    }
    let recorder = Arc::new(Recorder::start(
        home.open_store()?,
        home.blobs_dir(),
        config.history.clone(),
        crate::store::recorder::Mode::Daemon,
    )?);
    let settings = crate::nodes::Settings::of_home(home, &config);
    let (registry, catalog) = crate::packages::registry_of_home(&settings, home);
    for p in &catalog.problems {
        tracing::warn!("{p}");
    }
    let bus = Arc::new(events::EventBus::default());
    let metrics = Arc::new(metrics::Metrics::default());
    let mut observers: Vec<Arc<dyn Observer>> =
        vec![recorder.clone(), bus.clone(), metrics.clone()];
    if options.roles != Roles::default() && options.queue.is_none() {
        anyhow::bail!(crate::Error::Setting(format!(
            "--role {} needs the store on PostgreSQL (store.url or FUSE_STORE_URL): a daemon on SQLite alone does everything itself",
            options.roles.arg()
        )));
    }
    // On PostgreSQL: the shared store (workflows, schedules, tokens,
    // credentials), and the queue runs go through.
    let shared = match &options.queue {
        Some(url) => {
            let pg = crate::store::pg::Pg::connect(url).await?;
            let shared = Arc::new(crate::store::pg::db::PgDb::new(
                pg,
                tokio::runtime::Handle::current(),
            ));
            let joining = shared.clone();
            let (local_home, local_token) = (home.clone(), token.clone());
            tokio::task::spawn_blocking(move || {
                crate::store::pg::moving::join(&local_home, &joining, &local_token)
            })
            .await
            .context("joining the PostgreSQL store crashed")??;
            tracing::info!(
                store = %crate::store::pg::redact(url),
                "the store is on PostgreSQL; runs go through its queue"
            );
            Some(shared)
        }
        None => None,
    };
    let queue = shared.as_ref().map(|s| s.pg().clone());
    // Runs this daemon runs itself are kept on the store too, for every
    // daemon to list; ones an earlier run of it left are interrupted there.
    if let Some(pg) = &queue {
        // As the home's history marks them: its runs (the daemon's, and
        // `fuse run`'s) left running are interrupted.
        for by in crate::worker::keeper_names(home) {
            match pg
                .interrupt_runs_of(&by, "the process running it stopped")
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!("{n} run(s) left running here ({by}) are marked interrupted")
                }
                Err(e) => tracing::warn!("cannot mark the runs left running here: {e}"),
            }
        }
        observers.push(Arc::new(crate::worker::Keeper::start(
            pg.clone(),
            crate::worker::keeper_name(home),
            &tokio::runtime::Handle::current(),
        )));
    }
    let engine = Engine::new(
        registry,
        Arc::new(Fanout(observers)),
        config.engine.max_parallel,
    )
    // The vault is the store's: PostgreSQL's with store.url (see `Vault::open`).
    .with_credentials(Arc::new(crate::secrets::vault::HomeCredentials::new(
        home.clone(),
    )));
    let (alert_tx, alert_rx) = tokio::sync::mpsc::unbounded_channel();
    let local: Arc<dyn Db> = Arc::new(crate::store::Sqlite::new(store, home.blobs_dir())?);
    // On PostgreSQL, the runs workers keep on the queue are listed and shown
    // beside the daemon's own.
    let db: Arc<dyn Db> = match &shared {
        Some(shared) => Arc::new(crate::store::queued::WithQueue::new(
            local,
            shared.clone(),
            tokio::runtime::Handle::current(),
            crate::worker::keeper_names(home),
        )),
        None => local,
    };
    let state = Arc::new(State {
        home: home.clone(),
        engine: engine.clone(),
        db,
        tokens: tokens::Tokens::default(),
        sessions: sessions::Sessions::new(Duration::from_secs(config.daemon.login_link_seconds)),
        started: Instant::now(),
        started_at: jiff::Timestamp::now().to_string(),
        active: AtomicUsize::new(0),
        per_workflow: Mutex::new(Default::default()),
        queued: Mutex::new(Default::default()),
        cancels: Mutex::new(Default::default()),
        hook_buckets: Mutex::new(Default::default()),
        api_buckets: Mutex::new(Default::default()),
        daemon_config: config.daemon.clone(),
        addr: std::sync::OnceLock::new(),
        recorder: recorder.clone(),
        bus,
        file_watchers: Mutex::new(Vec::new()),
        plugin_routes: std::sync::OnceLock::new(),
        trigger_tasks: Mutex::new(Vec::new()),
        me: std::sync::OnceLock::new(),
        rt: std::sync::OnceLock::new(),
        routes: std::sync::RwLock::new(Arc::new(routes::Routes::default())),
        slots: Arc::new(tokio::sync::Semaphore::new(config.daemon.max_runs.max(1))),
        runs_cancel: CancellationToken::new(),
        scheduler_tick: Default::default(),
        alerts: config.alerts.clone(),
        streaks: Mutex::new(Default::default()),
        alert_tx,
        metrics,
        queue,
        instance: format!("{}/{}", crate::worker::host_name(), std::process::id()),
        roles: options.roles,
    });
    // Events of the runs workers run reach this daemon's WebSocket clients.
    let _relayed = match &state.queue {
        Some(pg) => {
            let bus = state.bus.clone();
            match pg
                .subscribe(crate::store::pg::EVENTS, move |payload| {
                    if let Ok(value) = serde_json::from_str(&payload) {
                        bus.publish(value);
                    }
                })
                .await
            {
                Ok(subscription) => Some(subscription),
                Err(e) => {
                    tracing::warn!(
                        "cannot follow the workers' run events ({e}); live views show only this daemon's runs"
                    );
                    None
                }
            }
        }
        None => None,
    };
    let _ = state.me.set(Arc::downgrade(&state));
    let _ = state.rt.set(tokio::runtime::Handle::current());
    let _ = state.plugin_routes.set(plugins::load(&state));
    let _watcher = crate::packages::watch::PackageWatcher::start(
        engine.clone(),
        settings,
        home.node_packages_dir(),
        home.plugin_packages_dir(),
        {
            let state = state.clone();
            move |_| routes::changed(&state)
        },
    )
    .map_err(|e| tracing::warn!("package hot reload is off: {e}"))
    .ok();
    folder::scan(&state);
    recovery::resubmit(&state, leftovers).await;
    let _folder_watcher = folder::watch(state.clone())
        .map_err(|e| tracing::warn!("watching workflows/ is off: {e}"))
        .ok();
    routes::changed(&state);
    // On PostgreSQL, other daemons deploy too: follow their changes.
    let deploys = state
        .queue
        .is_some()
        .then(|| tokio::spawn(follow_deploys(state.clone())));
    // Retention of the runs on the queue (the daemon's own history has its
    // recorder's).
    let queue_retention = state
        .queue
        .clone()
        .map(|pg| tokio::spawn(prune_queue(pg, config.history.clone())));
    let alert_deliverer = tokio::spawn(alerts::deliver(state.clone(), alert_rx));
    let queue_watcher = tokio::spawn(alerts::watch_queue(state.clone()));
    if let Some(alerts) = alerts::describe(&state) {
        tracing::info!("{alerts}");
    }
    let ticker = if state.roles.scheduler {
        scheduler::catch_up(&state).await;
        Some(tokio::spawn(scheduler::run(state.clone())))
    } else {
        tracing::info!("schedules are fired by other daemons (--role without scheduler)");
        None
    };
    // With a queue, one `fuse start` still runs runs: an in-process worker.
    let in_process_worker = match (&state.queue, state.roles.worker) {
        (Some(pg), true) => {
            let stop = CancellationToken::new();
            let options = crate::worker::Options {
                concurrency: config.daemon.max_runs.max(1),
                tags: Vec::new(),
                lease: Duration::from_secs(30),
                poll: Duration::from_secs(1),
                max_parallel: config.engine.max_parallel,
            };
            let credentials: Arc<dyn crate::engine::CredentialSource> =
                Arc::new(crate::secrets::vault::HomeCredentials::new(home.clone()));
            let task = tokio::spawn(crate::worker::run(
                pg.clone(),
                (*engine.registry()).clone(),
                Some(credentials),
                options,
                stop.clone(),
            ));
            Some((stop, task))
        }
        _ => None,
    };
    let rotator = options.log_file.clone().map(|log| {
        tokio::spawn(logfile::rotate_loop(
            log,
            config.log.max_size,
            config.log.keep,
        ))
    });
    let served = accept(
        state.clone(),
        listener,
        options.log_file.as_deref(),
        shutdown,
    )
    .await;
    if let Some(t) = &ticker {
        t.abort();
    }
    if let Some(t) = &deploys {
        t.abort();
    }
    if let Some(t) = &queue_retention {
        t.abort();
    }
    queue_watcher.abort();
    // The in-process worker stops claiming and gets the grace period; runs
    // it still has are resumed by a worker after their lease.
    if let Some((stop, task)) = in_process_worker {
        stop.cancel();
        match tokio::time::timeout(GRACE, task).await {
            Ok(Ok(Err(e))) => tracing::error!("the in-process worker failed: {e:#}"),
            Ok(_) => {}
            Err(_) => tracing::warn!(
                "the in-process worker's runs did not finish within the grace period; workers resume them after their lease"
            ),
        }
    }
    if let Some(r) = &rotator {
        r.abort();
    }
    // Alerts of runs that end during the grace period are not started.
    alert_deliverer.abort();
    // Give running runs the grace period, then interrupt the rest.
    let deadline = Instant::now() + GRACE;
    while state.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if state.active.load(Ordering::SeqCst) > 0 {
        state.runs_cancel.cancel();
        let deadline = Instant::now() + Duration::from_secs(5);
        while state.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Ok(mut tasks) = state.trigger_tasks.lock() {
        for t in tasks.drain(..) {
            t.abort();
        }
    }
    let flushed = recorder.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || flushed.flush()).await {
        tracing::error!("flushing the history failed: {e}");
    }
    if let Err(e) = std::fs::remove_file(info_path(home))
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", info_path(home).display());
    }
    served
}

/// Top-level runs still `running` (and `queued` ones when `queued` is true)
/// belong to a daemon that stopped: they become `interrupted`, with their
/// sub-runs.
pub fn mark_interrupted(store: &Store, queued: bool) -> anyhow::Result<usize> {
    store
        .mark_interrupted(queued)
        .context("cannot mark interrupted runs")
}

/// Accepts connections until `shutdown`, after announcing the daemon in
/// `daemon.json`.
async fn accept(
    state: Arc<State>,
    listener: tokio::net::TcpListener,
    log_file: Option<&std::path::Path>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    let _ = state.addr.set(addr);
    // Opened before the daemon announces itself, so that once it has, moving
    // its output there cannot fail.
    let log = match log_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the daemon log {}", path.display()))?,
        ),
        None => None,
    };
    let info = DaemonInfo {
        pid: std::process::id(),
        host: addr.ip().to_string(),
        port: addr.port(),
        started_at: state.started_at.clone(),
    };
    crate::files::write_atomic(
        &info_path(&state.home),
        serde_json::to_string_pretty(&info)?.as_bytes(),
        Some(0o600),
    )?;
    if let Some(log) = &log {
        redirect_output(log)?;
    }
    tracing::info!("fuse daemon listening on {}", info.url());
    {
        // A log on a full disk must not stop the daemon: the line is lost, not the run.
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout(),
            "fuse daemon listening on {} (pid {})",
            info.url(),
            info.pid
        );
    }

    let stop = shutdown;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| api::handle(state.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .with_upgrades()
                        .await
                    {
                        tracing::debug!("connection: {e}");
                    }
                });
            }
            _ = &mut stop => {
                tracing::info!("stopping: no new requests; running runs get {}s", GRACE.as_secs());
                break;
            }
        }
    }
    Ok(())
}

/// Points standard output and error at the daemon log.
fn redirect_output(log: &std::fs::File) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    for fd in [1, 2] {
        // SAFETY: dup2 onto the standard descriptors of this process; `log`
        // stays open for the call and the duplicates outlive it.
        if unsafe { libc::dup2(log.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot send the daemon's output to its log");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Starts the daemon in the background: `fuse start --foreground` detached,
/// its output in `logs/daemon.log`; returns once it answers. Until it listens
/// its output comes to this process, so a failure at start is shown as the
/// daemon said it (and appended to the log).
pub fn start_detached(home: &Home, port: Option<u16>, roles: Roles) -> anyhow::Result<DaemonInfo> {
    use std::io::{Read, Write};
    ready_for_a_daemon(home)?;
    let logs = home.logs_dir();
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let log_path = logs.join("daemon.log");
    let exe = std::env::current_exe().context("cannot find the fuse executable")?;
    let (mut reader, writer) = std::io::pipe().context("cannot create a pipe")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home")
        .arg(home.root())
        .arg("start")
        .arg("--foreground")
        .arg("--log-file")
        .arg(&log_path)
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    if let Some(p) = port {
        cmd.arg("--port").arg(p.to_string());
    }
    if roles != Roles::default() {
        cmd.arg("--role").arg(roles.arg());
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().context("cannot start the daemon process")?;
    drop(cmd);
    // Collects what the daemon says until it moves its output to the log.
    let (said_tx, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = reader.read_to_end(&mut text);
        let _ = said_tx.send(String::from_utf8_lossy(&text).into_owned());
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(info) = running(home)
            && info.pid == child.id()
        {
            return Ok(info);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // A process the daemon started may hold the pipe open: wait a little.
            let text = said
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_default();
            let text = text.trim();
            // Best effort: the log may be on the disk that made the start fail.
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .and_then(|mut log| writeln!(log, "{text}"));
            let said = if text.is_empty() {
                format!("it said nothing ({status})")
            } else {
                text.lines()
                    .map(|l| l.strip_prefix("error: ").unwrap_or(l))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            };
            anyhow::bail!("the daemon could not start: {said}");
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the daemon did not start within 15s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the running daemon (SIGTERM) and waits for it to exit.
pub fn stop(home: &Home, wait: Duration) -> anyhow::Result<Option<u32>> {
    let Some(info) = running(home) else {
        return Ok(None);
    };
    let pid = i32::try_from(info.pid).context("bad pid")?;
    // SAFETY: sends SIGTERM to the daemon's pid read from its info file.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + wait;
    while process_alive(info.pid) {
        if Instant::now() > deadline {
            anyhow::bail!(
                "the daemon (pid {}) did not stop within {}s; it may be finishing runs",
                info.pid,
                wait.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(info_path(home));
    Ok(Some(info.pid))
}

/// Relative path helper for deployed workflows.
pub(crate) fn workflow_path(home: &Home, name: &str) -> PathBuf {
    home.workflows_dir().join(format!("{name}.json"))
}
