//! `/metrics` in the Prometheus (OpenMetrics) text format. Counters and
//! histograms are fed by the engine's events and the request path; gauges are
//! read at each scrape. Labels stay bounded: workflow names, node types,
//! models, API operations and statuses; never run ids.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::{Event, Observer, Status};

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 1 ms … about 9 minutes.
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    runs_started: Family<Labels, Counter>,
    runs_finished: Family<Labels, Counter>,
    run_seconds: Histograms,
    node_seconds: Histograms,
    retries: Family<Labels, Counter>,
    llm_tokens: Family<Labels, Counter>,
    webhooks: Family<Labels, Counter>,
    api_requests: Family<Labels, Counter>,
    api_seconds: Histograms,
    active_runs: Gauge,
    queued_runs: Gauge,
    history_backlog: Gauge,
    history_batches: Counter,
    history_written: Counter,
    history_last_batch: Gauge,
    circuits: Family<Labels, Gauge>,
    database_bytes: Gauge,
    memory_bytes: Gauge,
    open_fds: Gauge,
    queue_depth: Gauge,
    queue_stuck: Gauge,
    worker_running: Family<Labels, Gauge>,
    worker_concurrency: Family<Labels, Gauge>,
    worker_heartbeat_age: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// The worker pool of a PostgreSQL queue, read for a scrape.
pub struct Pool {
    pub depth: i64,
    pub stuck: usize,
    pub workers: Vec<crate::store::pg::WorkerRow>,
}

impl Pool {
    /// The pool as the queue sees it now (workers heard from in the last 10 minutes).
    pub async fn read(pg: &crate::store::pg::Pg) -> Result<Pool, crate::store::pg::PgError> {
        let alive = std::time::Duration::from_secs(90);
        Ok(Pool {
            depth: pg.queue_depth().await?,
            stuck: pg.stuck(alive).await?.len(),
            workers: pg
                .workers()
                .await?
                .into_iter()
                .filter(|w| w.heartbeat_age_ms < 600_000)
                .collect(),
        })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fuse");
        let m = Metrics {
            runs_started: Family::default(),
            runs_finished: Family::default(),
            run_seconds: Family::new_with_constructor(seconds),
            node_seconds: Family::new_with_constructor(seconds),
            retries: Family::default(),
            llm_tokens: Family::default(),
            webhooks: Family::default(),
            api_requests: Family::default(),
            api_seconds: Family::new_with_constructor(seconds),
            active_runs: Gauge::default(),
            queued_runs: Gauge::default(),
            history_backlog: Gauge::default(),
            history_batches: Counter::default(),
            history_written: Counter::default(),
            history_last_batch: Gauge::default(),
            circuits: Family::default(),
            database_bytes: Gauge::default(),
            memory_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            queue_depth: Gauge::default(),
            queue_stuck: Gauge::default(),
            worker_running: Family::default(),
            worker_concurrency: Family::default(),
            worker_heartbeat_age: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "runs_started",
            "Runs started, by workflow",
            m.runs_started.clone(),
        );
        registry.register(
            "runs_finished",
            "Runs finished, by workflow and status",
            m.runs_finished.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Run durations, by workflow",
            m.run_seconds.clone(),
        );
        registry.register(
            "node_duration_seconds",
            "Node durations (all attempts), by node type",
            m.node_seconds.clone(),
        );
        registry.register(
            "node_retries",
            "Attempts after a node's first, by node type",
            m.retries.clone(),
        );
        registry.register(
            "llm_tokens",
            "LLM tokens, by model and kind (prompt, completion)",
            m.llm_tokens.clone(),
        );
        registry.register(
            "webhook_requests",
            "Webhook calls, by answer status",
            m.webhooks.clone(),
        );
        registry.register(
            "api_requests",
            "API requests, by operation and status",
            m.api_requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "API request latency, by operation",
            m.api_seconds.clone(),
        );
        registry.register(
            "active_runs",
            "Runs running or waiting for a slot",
            m.active_runs.clone(),
        );
        registry.register(
            "queued_runs",
            "Runs waiting for a run slot (daemon.max_runs)",
            m.queued_runs.clone(),
        );
        registry.register(
            "history_backlog",
            "Events the history writer has not written yet",
            m.history_backlog.clone(),
        );
        registry.register(
            "history_batches",
            "Transactions the history writer has committed",
            m.history_batches.clone(),
        );
        registry.register(
            "history_events_written",
            "Events and writes the history writer has handled (over history_batches: the mean batch size)",
            m.history_written.clone(),
        );
        registry.register(
            "history_last_batch_size",
            "Events in the history writer's last transaction",
            m.history_last_batch.clone(),
        );
        registry.register(
            "circuit_state",
            "Circuit breaker of each HTTP target: 0 closed, 1 half-open (probing), 2 open (failing fast)",
            m.circuits.clone(),
        );
        registry.register(
            "database_bytes",
            "Size of fuse.db and its write-ahead log",
            m.database_bytes.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the daemon",
            m.memory_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the daemon",
            m.open_fds.clone(),
        );
        registry.register(
            "queue_depth",
            "Runs waiting in the PostgreSQL queue for a worker",
            m.queue_depth.clone(),
        );
        registry.register(
            "queue_stuck_runs",
            "Queued runs that no live worker can take (a node type or tag none has)",
            m.queue_stuck.clone(),
        );
        registry.register(
            "worker_running_runs",
            "Runs in progress on each worker, by worker and host",
            m.worker_running.clone(),
        );
        registry.register(
            "worker_concurrency",
            "Runs each worker takes at once, by worker and host",
            m.worker_concurrency.clone(),
        );
        registry.register(
            "worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat, by worker and host",
            m.worker_heartbeat_age.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn webhook(&self, status: u16) {
        self.webhooks
            .get_or_create(&labels(&[("status", &status.to_string())]))
            .inc();
    }

    pub fn api(&self, op: &str, status: u16, took: std::time::Duration) {
        self.api_requests
            .get_or_create(&labels(&[
                ("operation", op),
                ("status", &status.to_string()),
            ]))
            .inc();
        self.api_seconds
            .get_or_create(&labels(&[("operation", op)]))
            .observe(took.as_secs_f64());
    }

    /// The text of a scrape, gauges read now (`pool`: the worker pool of
    /// the PostgreSQL queue, when the daemon has one).
    pub fn render(&self, state: &super::State, pool: Option<Pool>) -> String {
        if let Some(pool) = pool {
            self.queue_depth.set(pool.depth);
            self.queue_stuck.set(pool.stuck as i64);
            // Workers come and go: only the ones heard from lately are shown.
            self.worker_running.clear();
            self.worker_concurrency.clear();
            self.worker_heartbeat_age.clear();
            for w in &pool.workers {
                let key = labels(&[("worker", &w.id), ("host", &w.host)]);
                self.worker_running
                    .get_or_create(&key)
                    .set(i64::from(w.running));
                self.worker_concurrency
                    .get_or_create(&key)
                    .set(i64::from(w.concurrency));
                self.worker_heartbeat_age
                    .get_or_create(&key)
                    .set(w.heartbeat_age_ms as f64 / 1000.0);
            }
        }
        let health = super::api::health(state);
        self.active_runs.set(health.active_runs as i64);
        self.queued_runs.set(health.queued as i64);
        self.history_backlog.set(state.recorder.backlog() as i64);
        let (batches, written, last) = state.recorder.throughput();
        // Counters follow the writer's own totals.
        for (counter, total) in [
            (&self.history_batches, batches),
            (&self.history_written, written),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.history_last_batch.set(last as i64);
        for (target, value) in crate::nodes::builtin::http::breaker::states() {
            self.circuits
                .get_or_create(&labels(&[("target", &target)]))
                .set(i64::from(value));
        }
        self.database_bytes
            .set(crate::store::files_size(&state.home.db_path()) as i64);
        if let Some(rss) = resident_bytes() {
            self.memory_bytes.set(rss as i64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

impl Observer for Metrics {
    fn on_event(&self, event: &Event) {
        match event {
            Event::RunStarted { workflow, .. } => {
                self.runs_started
                    .get_or_create(&labels(&[("workflow", workflow)]))
                    .inc();
            }
            Event::NodeFinished {
                node_type,
                attempts,
                duration_ms,
                ..
            } if *attempts > 0 => {
                self.node_seconds
                    .get_or_create(&labels(&[("node_type", node_type)]))
                    .observe(*duration_ms as f64 / 1000.0);
                if *attempts > 1 {
                    self.retries
                        .get_or_create(&labels(&[("node_type", node_type)]))
                        .inc_by(u64::from(*attempts - 1));
                }
            }
            Event::NodeAttempt(a) if a.status == Status::Succeeded && a.item.is_none() => {
                if let Some(out) = &a.output
                    && let Some(usage) = out.get("usage").filter(|u| u.is_object())
                {
                    let model = out
                        .get("model")
                        .and_then(|m| m.as_str())
                        .unwrap_or("unknown");
                    for (field, kind) in [
                        ("prompt_tokens", "prompt"),
                        ("completion_tokens", "completion"),
                    ] {
                        if let Some(n) =
                            usage.get(field).and_then(|v| v.as_u64()).filter(|n| *n > 0)
                        {
                            self.llm_tokens
                                .get_or_create(&labels(&[("model", model), ("kind", kind)]))
                                .inc_by(n);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Finished runs are counted where the daemon knows the workflow's name
/// (the event carries only the run id).
pub fn finished(metrics: &Metrics, workflow: &str, status: Status, duration_ms: u64) {
    metrics
        .runs_finished
        .get_or_create(&labels(&[
            ("workflow", workflow),
            ("status", status.as_str()),
        ]))
        .inc();
    metrics
        .run_seconds
        .get_or_create(&labels(&[("workflow", workflow)]))
        .observe(duration_ms as f64 / 1000.0);
}
