//! The run queue on PostgreSQL, for `fuse worker` processes on many machines
//! (preview: see docs/scale-out.md for what is and is not on PostgreSQL yet).
//!
//! - A queued run carries its workflow definition and the node types it
//!   needs, so any worker that has those types can run it.
//! - Workers claim runs with `FOR UPDATE SKIP LOCKED` (two workers never get
//!   the same run) and hold a lease they renew by heartbeat. A run whose
//!   lease ran out (its worker was killed or lost) is claimed again.
//! - Each node that succeeds is checkpointed before the run goes on; a run
//!   claimed again reuses those outputs, so no finished node runs twice.
//! - Every write of a worker is fenced by its lease: a worker that lost a run
//!   can no longer record anything for it.
//! - `NOTIFY fuse_runs` wakes idle workers when a run is queued; they also
//!   poll, so a lost notification costs at most one poll interval.
//! - A schedule fire is taken by inserting its (schedule, time) key: of any
//!   number of schedulers, exactly one starts the run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_postgres::NoTls;

pub mod db;
pub mod moving;
mod shared;
mod vectors;

pub use shared::ImportedWorkflow;

/// Errors of the PostgreSQL store, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL at {url}: cannot connect: {cause} (is the server running, and the URL's user, password and database right?)"
    )]
    Connect { url: String, cause: String },
    #[error("PostgreSQL: {action}: {cause}")]
    Query { action: &'static str, cause: String },
    /// What was asked cannot be done (a caller's mistake, not the database's).
    #[error("{0}")]
    Refused(String),
}

type Result<T> = std::result::Result<T, PgError>;

fn query_error(action: &'static str) -> impl Fn(tokio_postgres::Error) -> PgError {
    move |e| PgError::Query {
        action,
        cause: match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        },
    }
}

/// The schema, one step per version; applied in order under an advisory
/// lock, so processes starting together migrate once.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE queue_runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    definition TEXT NOT NULL,
    input JSONB NOT NULL,
    trigger_kind TEXT NOT NULL,
    entry TEXT,
    needs TEXT[] NOT NULL DEFAULT '{}',
    tags TEXT[] NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued',
    worker TEXT,
    lease_until TIMESTAMPTZ,
    claims INT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    output JSONB,
    error TEXT
);
CREATE INDEX queue_runs_open ON queue_runs (created_at) WHERE status IN ('queued', 'running');
CREATE TABLE queue_nodes (
    run_id TEXT NOT NULL REFERENCES queue_runs (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    output JSONB NOT NULL,
    worker TEXT NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, node_id)
);
CREATE TABLE queue_workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    version TEXT NOT NULL,
    tags TEXT[] NOT NULL,
    types TEXT[] NOT NULL,
    concurrency INT NOT NULL,
    running INT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE schedule_fires (
    schedule TEXT NOT NULL,
    fire_at BIGINT NOT NULL,
    taken_by TEXT NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (schedule, fire_at)
);
"#,
    r#"
ALTER TABLE queue_nodes ADD COLUMN error JSONB;
"#,
    r#"
CREATE TABLE queue_logs (
    run_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    node_id TEXT,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX queue_logs_run ON queue_logs (run_id, ts);
"#,
    r#"
CREATE TABLE queue_items (
    run_id TEXT NOT NULL REFERENCES queue_runs (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    item INT NOT NULL,
    output JSONB NOT NULL,
    worker TEXT NOT NULL,
    PRIMARY KEY (run_id, node_id, item)
);
"#,
    r#"
CREATE TABLE queue_node_runs (
    run_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    node_type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INT NOT NULL,
    duration_ms BIGINT NOT NULL,
    finished_ms BIGINT NOT NULL,
    error JSONB,
    PRIMARY KEY (run_id, node_id)
);
"#,
    // What every daemon on the database shares (see `shared`): deployed
    // workflows and their versions, schedule state, API tokens, sealed
    // credentials and conversation memory. Times are Unix ms, as in SQLite.
    r#"
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE workflows (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    current_version BIGINT,
    source_path TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE workflow_versions (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    definition TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, version)
);
CREATE INDEX workflow_versions_hash ON workflow_versions (hash);
CREATE TABLE schedules (
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('cron', 'interval', 'once')),
    spec TEXT NOT NULL,
    timezone TEXT,
    missed_policy TEXT NOT NULL,
    overlap_policy TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    next_fire_at BIGINT,
    last_fired_at BIGINT,
    max_fires BIGINT,
    fired BIGINT NOT NULL DEFAULT 0,
    retries BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow_id, node_id)
);
CREATE TABLE api_tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'run', 'admin')),
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE TABLE credentials (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    fields TEXT NOT NULL,
    nonce BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE TABLE memory_messages (
    id BIGSERIAL PRIMARY KEY,
    session TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    tokens BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX memory_by_session ON memory_messages (session, id);
CREATE TABLE memory_summaries (
    session TEXT PRIMARY KEY,
    content TEXT NOT NULL,
    tokens BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#,
    // Vector collections and the embedding cache (see `vectors`), as in SQLite:
    // embeddings are little-endian f32 bytes, searched in memory.
    r#"
CREATE TABLE vector_collections (
    name TEXT PRIMARY KEY,
    dims BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE vectors (
    collection TEXT NOT NULL REFERENCES vector_collections (name) ON DELETE CASCADE,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    embedding BYTEA NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE TABLE embedding_cache (
    key TEXT PRIMARY KEY,
    embedding BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
"#,
    // A queued run's history as SQLite keeps a run's: every attempt of every
    // node (and foreach item) with its input, output and error, and the steps
    // of agents, kept by the worker's event relay.
    r#"
CREATE TABLE queue_attempts (
    run_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    item INT NOT NULL,
    attempt INT NOT NULL,
    node_type TEXT NOT NULL,
    status TEXT NOT NULL,
    input JSONB,
    output JSONB,
    error JSONB,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, node_id, item, attempt)
);
CREATE TABLE queue_steps (
    run_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    seq INT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    input JSONB,
    output JSONB,
    error JSONB,
    started_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    tokens BIGINT,
    PRIMARY KEY (run_id, node_id, seq)
);
"#,
];

/// A queued run's summary from a row that starts with id, workflow, status,
/// trigger kind, creation (Unix ms), duration (ms) and error.
fn summary_of(r: &tokio_postgres::Row) -> crate::store::history::RunSummary {
    crate::store::history::RunSummary {
        id: r.get(0),
        workflow: r.get(1),
        status: r.get(2),
        trigger: r.get(3),
        created_at: r.get(4),
        duration_ms: r.get(5),
        error: r.get(6),
        parent_id: None,
        retry_of: None,
    }
}

/// A queued run's creation time in Unix ms, as runs are listed, ordered and
/// paged by (truncated, as the daemon's own clock gives whole milliseconds).
const CREATED_MS: &str = "floor(EXTRACT(EPOCH FROM created_at) * 1000)::bigint";

/// The channel queued runs are announced on.
pub const CHANNEL: &str = "fuse_runs";

/// A connection pool to the queue's database.
#[derive(Clone)]
pub struct Pg {
    pool: deadpool_postgres::Pool,
    url: Arc<str>,
}

/// A run to queue.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub workflow: String,
    pub definition: String,
    pub input: Value,
    pub trigger_kind: String,
    pub entry: Option<String>,
    /// The node types it uses: only a worker that has them all claims it.
    pub needs: Vec<String>,
    /// Only a worker with all these tags claims it.
    pub tags: Vec<String>,
}

/// A run a worker claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub workflow: String,
    pub definition: String,
    pub input: Value,
    pub trigger_kind: String,
    pub entry: Option<String>,
    /// How many times it has been claimed (2 and more: it is resumed).
    pub claims: i32,
    /// Outputs of the nodes that finished before (reused, not run again).
    pub finished: HashMap<String, Value>,
    /// Errors of the nodes that failed before, in a way the run went on
    /// from (an error path, `on_error: continue`): they fail the same way
    /// again without running.
    pub failed: HashMap<String, Value>,
    /// Outputs of the finished items of `foreach` nodes that had not
    /// finished all of them: by node, by item index.
    pub items: HashMap<String, HashMap<usize, Value>>,
}

/// What a worker says about itself.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub version: String,
    pub tags: Vec<String>,
    pub types: Vec<String>,
    pub concurrency: i32,
}

/// A run of the queue, as `fuse run --queue` waits for it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueuedRun {
    pub id: String,
    pub workflow: String,
    pub status: String,
    pub worker: Option<String>,
    pub claims: i32,
    pub error: Option<String>,
    pub output: Option<Value>,
}

/// A worker as the queue knows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub version: String,
    pub tags: Vec<String>,
    pub concurrency: i32,
    pub running: i32,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: i64,
}

/// A queued run that no live worker can take, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stuck {
    pub id: String,
    pub workflow: String,
    /// Node types no live worker has.
    pub missing_types: Vec<String>,
    /// Tags no live worker has.
    pub missing_tags: Vec<String>,
}

impl Pg {
    /// Connects (checking the server answers) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Pg> {
        let connect_error = |cause: String| PgError::Connect {
            url: redact(url),
            cause,
        };
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| connect_error(e.to_string()))?;
        let manager = deadpool_postgres::Manager::from_config(
            config,
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(8)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| connect_error(e.to_string()))?;
        let pg = Pg {
            pool,
            url: url.into(),
        };
        pg.migrate().await?;
        Ok(pg)
    }

    /// The URL it connects to (with its password: never show it; see [`redact`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| PgError::Connect {
            url: redact(&self.url),
            cause: pool_cause(e),
        })
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(query_error("starting the migration"))?;
        // One migrator at a time across every process using this database.
        tx.execute("SELECT pg_advisory_xact_lock(7406512)", &[])
            .await
            .map_err(query_error("locking for the migration"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS fuse_schema (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
        )
        .await
        .map_err(query_error("creating the schema table"))?;
        let current: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM fuse_schema", &[])
            .await
            .map_err(query_error("reading the schema version"))?
            .get(0);
        for (i, step) in MIGRATIONS.iter().enumerate() {
            let version = i as i32 + 1;
            if version <= current {
                continue;
            }
            tx.batch_execute(step)
                .await
                .map_err(query_error("migrating the schema"))?;
            tx.execute("INSERT INTO fuse_schema (version) VALUES ($1)", &[&version])
                .await
                .map_err(query_error("recording the schema version"))?;
        }
        tx.commit()
            .await
            .map_err(query_error("committing the migration"))
    }

    /// Queues a run and wakes a worker; committed when this returns.
    pub async fn enqueue(&self, run: &NewRun) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "WITH queued AS (
                     INSERT INTO queue_runs (id, workflow, definition, input, trigger_kind, entry, needs, tags)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id)
                 SELECT pg_notify($9, id) FROM queued",
                &[
                    &run.id,
                    &run.workflow,
                    &run.definition,
                    &run.input,
                    &run.trigger_kind,
                    &run.entry,
                    &run.needs,
                    &run.tags,
                    &CHANNEL,
                ],
            )
            .await
            .map_err(query_error("queueing a run"))?;
        Ok(())
    }

    /// Registers (or re-registers) a worker, and forgets workers not heard
    /// from for a day.
    pub async fn register(&self, w: &WorkerInfo) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM queue_workers WHERE heartbeat_at < clock_timestamp() - interval '1 day'",
                &[],
            )
            .await
            .map_err(query_error("forgetting old workers"))?;
        client
            .execute(
                "INSERT INTO queue_workers (id, host, version, tags, types, concurrency)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET host = $2, version = $3, tags = $4, types = $5,
                     concurrency = $6, heartbeat_at = clock_timestamp()",
                &[
                    &w.id,
                    &w.host,
                    &w.version,
                    &w.tags,
                    &w.types,
                    &w.concurrency,
                ],
            )
            .await
            .map_err(query_error("registering the worker"))?;
        Ok(())
    }

    /// Claims up to `max` runs this worker can run: queued ones, and running
    /// ones whose lease has run out. Holds each for `lease`.
    pub async fn claim(&self, w: &WorkerInfo, max: i64, lease: Duration) -> Result<Vec<Claimed>> {
        if max <= 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let lease_ms = lease.as_millis() as i64;
        let rows = client
            .query(
                "UPDATE queue_runs r
                    SET status = 'running', worker = $1, claims = r.claims + 1,
                        lease_until = clock_timestamp() + $2::bigint * interval '1 millisecond',
                        started_at = COALESCE(r.started_at, clock_timestamp())
                  WHERE r.id IN (
                        SELECT id FROM queue_runs
                         WHERE (status = 'queued' OR (status = 'running' AND lease_until < clock_timestamp()))
                           AND needs <@ $3::text[] AND tags <@ $4::text[]
                         ORDER BY created_at
                         LIMIT $5
                         FOR UPDATE SKIP LOCKED)
              RETURNING r.id, r.workflow, r.definition, r.input, r.trigger_kind, r.entry, r.claims",
                &[&w.id, &lease_ms, &w.types, &w.tags, &max],
            )
            .await
            .map_err(query_error("claiming runs"))?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.get(0);
            let claims: i32 = row.get(6);
            let ((finished, failed), items) = if claims > 1 {
                (
                    self.finished_nodes(&id).await?,
                    self.finished_items(&id).await?,
                )
            } else {
                Default::default()
            };
            claimed.push(Claimed {
                id,
                workflow: row.get(1),
                definition: row.get(2),
                input: row.get(3),
                trigger_kind: row.get(4),
                entry: row.get(5),
                claims,
                finished,
                failed,
                items,
            });
        }
        Ok(claimed)
    }

    /// The outputs of a run's finished nodes, and the errors of its failed ones.
    async fn finished_nodes(
        &self,
        run_id: &str,
    ) -> Result<(HashMap<String, Value>, HashMap<String, Value>)> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT node_id, output, error FROM queue_nodes WHERE run_id = $1",
                &[&run_id],
            )
            .await
            .map_err(query_error("reading finished nodes"))?;
        let (mut finished, mut failed) = (HashMap::new(), HashMap::new());
        for row in rows {
            match row.get::<_, Option<Value>>(2) {
                Some(error) => failed.insert(row.get(0), error),
                None => finished.insert(row.get(0), row.get(1)),
            };
        }
        Ok((finished, failed))
    }

    /// The outputs of a run's finished `foreach` items, by node and index.
    async fn finished_items(&self, run_id: &str) -> Result<HashMap<String, HashMap<usize, Value>>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT node_id, item, output FROM queue_items WHERE run_id = $1",
                &[&run_id],
            )
            .await
            .map_err(query_error("reading finished items"))?;
        let mut items: HashMap<String, HashMap<usize, Value>> = HashMap::new();
        for row in rows {
            let index: i32 = row.get(1);
            items
                .entry(row.get(0))
                .or_default()
                .insert(index.max(0) as usize, row.get(2));
        }
        Ok(items)
    }

    /// Records a finished item of a `foreach` node, if this worker still
    /// holds the run (false otherwise).
    pub async fn item_finished(
        &self,
        worker: &str,
        run: &str,
        node: &str,
        item: i32,
        output: &Value,
    ) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO queue_items (run_id, node_id, item, output, worker)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
                     SELECT 1 FROM queue_runs WHERE id = $1 AND worker = $5 AND status = 'running')
                 ON CONFLICT (run_id, node_id, item) DO UPDATE SET worker = EXCLUDED.worker",
                &[&run, &node, &item, output, &worker],
            )
            .await
            .map_err(query_error("checkpointing an item"))?;
        Ok(n == 1)
    }

    /// Renews the worker's heartbeat and the leases of `runs`; returns the
    /// runs it no longer holds (another worker took them over).
    pub async fn heartbeat(
        &self,
        worker: &str,
        runs: &[String],
        lease: Duration,
    ) -> Result<Vec<String>> {
        let client = self.client().await?;
        let lease_ms = lease.as_millis() as i64;
        let running = runs.len() as i32;
        client
            .execute(
                "UPDATE queue_workers SET heartbeat_at = clock_timestamp(), running = $2 WHERE id = $1",
                &[&worker, &running],
            )
            .await
            .map_err(query_error("recording a heartbeat"))?;
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let held: Vec<String> = client
            .query(
                "UPDATE queue_runs SET lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond'
                  WHERE id = ANY($2) AND worker = $1 AND status = 'running'
              RETURNING id",
                &[&worker, &runs, &lease_ms],
            )
            .await
            .map_err(query_error("renewing leases"))?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        Ok(runs.iter().filter(|r| !held.contains(r)).cloned().collect())
    }

    /// Records that `node` of `run` succeeded with `output`, if this worker
    /// still holds the run. Returns whether it was recorded.
    pub async fn node_finished(
        &self,
        worker: &str,
        run: &str,
        node: &str,
        output: &Value,
        error: Option<&Value>,
    ) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO queue_nodes (run_id, node_id, output, worker, error)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
                     SELECT 1 FROM queue_runs WHERE id = $1 AND worker = $4 AND status = 'running')
                 ON CONFLICT (run_id, node_id) DO UPDATE SET worker = EXCLUDED.worker",
                &[&run, &node, output, &worker, &error],
            )
            .await
            .map_err(query_error("checkpointing a node"))?;
        Ok(n == 1)
    }

    /// Records how a run ended, if this worker still holds it.
    pub async fn finish(
        &self,
        worker: &str,
        run: &str,
        status: &str,
        output: &Value,
        error: Option<&str>,
    ) -> Result<bool> {
        let client = self.client().await?;
        Self::finish_on(&client, worker, run, status, output, error).await
    }

    async fn finish_on(
        c: &impl deadpool_postgres::GenericClient,
        worker: &str,
        run: &str,
        status: &str,
        output: &Value,
        error: Option<&str>,
    ) -> Result<bool> {
        let n = c
            .execute(
                "UPDATE queue_runs SET status = $3, output = $4, error = $5,
                        finished_at = clock_timestamp(), lease_until = NULL
                  WHERE id = $2 AND worker = $1 AND status = 'running'",
                &[&worker, &run, &status, output, &error],
            )
            .await
            .map_err(query_error("recording a finished run"))?;
        Ok(n == 1)
    }

    /// Takes the fire of `schedule` at `fire_at_ms` for `by`: true for exactly
    /// one caller, however many schedulers try.
    pub async fn take_fire(&self, schedule: &str, fire_at_ms: i64, by: &str) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO schedule_fires (schedule, fire_at, taken_by) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&schedule, &fire_at_ms, &by],
            )
            .await
            .map_err(query_error("taking a schedule fire"))?;
        Ok(n == 1)
    }

    /// Queued runs no worker seen within `alive` can take.
    pub async fn stuck(&self, alive: Duration) -> Result<Vec<Stuck>> {
        let client = self.client().await?;
        let alive_ms = alive.as_millis() as i64;
        let rows = client
            .query(
                "WITH live AS (
                     SELECT types, tags FROM queue_workers
                      WHERE heartbeat_at > clock_timestamp() - $1::bigint * interval '1 millisecond')
                 SELECT r.id, r.workflow, r.needs, r.tags,
                        COALESCE((SELECT array_agg(DISTINCT t) FROM live, unnest(live.types) t), '{}'),
                        COALESCE((SELECT array_agg(DISTINCT t) FROM live, unnest(live.tags) t), '{}')
                   FROM queue_runs r
                  WHERE r.status = 'queued'
                    AND NOT EXISTS (SELECT 1 FROM live WHERE r.needs <@ live.types AND r.tags <@ live.tags)
                  ORDER BY r.created_at LIMIT 100",
                &[&alive_ms],
            )
            .await
            .map_err(query_error("looking for runs no worker can take"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let needs: Vec<String> = r.get(2);
                let tags: Vec<String> = r.get(3);
                let have_types: Vec<String> = r.get(4);
                let have_tags: Vec<String> = r.get(5);
                Stuck {
                    id: r.get(0),
                    workflow: r.get(1),
                    missing_types: needs
                        .into_iter()
                        .filter(|t| !have_types.contains(t))
                        .collect(),
                    missing_tags: tags
                        .into_iter()
                        .filter(|t| !have_tags.contains(t))
                        .collect(),
                }
            })
            .collect())
    }

    /// One run of the queue.
    pub async fn queued_run(&self, id: &str) -> Result<Option<QueuedRun>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, workflow, status, worker, claims, error, output FROM queue_runs WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(query_error("reading a queued run"))?;
        Ok(row.map(|r| QueuedRun {
            id: r.get(0),
            workflow: r.get(1),
            status: r.get(2),
            worker: r.get(3),
            claims: r.get(4),
            error: r.get(5),
            output: r.get(6),
        }))
    }

    /// A queued run as the run history shows runs: its summary, input,
    /// output and the nodes checkpointed so far.
    pub async fn run_detail(&self, id: &str) -> Result<Option<crate::store::history::RunDetail>> {
        use crate::store::history::{NodeRunRow, RunDetail};
        let client = self.client().await?;
        let Some(r) = client
            .query_opt(
                &format!(
                    "SELECT id, workflow, status, trigger_kind,
                        {CREATED_MS},
                        (EXTRACT(EPOCH FROM finished_at - started_at) * 1000)::bigint,
                        error, input, output
                   FROM queue_runs WHERE id = $1"
                ),
                &[&id],
            )
            .await
            .map_err(query_error("reading a queued run"))?
        else {
            return Ok(None);
        };
        // Every attempt the workers relayed, as history records a run's
        // (input, output, error, item); then nodes whose end was relayed
        // without attempts, and checkpoints whose relay was lost, as one row.
        let nodes = client
            .query(
                "SELECT a.node_id, a.node_type, a.status, a.attempt, a.finished_ms - a.started_ms,
                        a.started_ms, a.error, a.output, a.input, NULLIF(a.item, -1)
                   FROM queue_attempts a
                  WHERE a.run_id = $1
                 UNION ALL
                 SELECT n.node_id, n.node_type, n.status, n.attempts, n.duration_ms,
                        n.finished_ms - n.duration_ms, n.error, c.output, NULL, NULL
                   FROM queue_node_runs n
                   LEFT JOIN queue_nodes c ON c.run_id = n.run_id AND c.node_id = n.node_id
                  WHERE n.run_id = $1 AND NOT EXISTS (
                        SELECT 1 FROM queue_attempts a WHERE a.run_id = n.run_id AND a.node_id = n.node_id)
                 UNION ALL
                 SELECT c.node_id, '', CASE WHEN c.error IS NULL THEN 'succeeded' ELSE 'failed' END,
                        1, NULL, floor(EXTRACT(EPOCH FROM c.finished_at) * 1000)::bigint, c.error, c.output,
                        NULL, NULL
                   FROM queue_nodes c
                  WHERE c.run_id = $1
                    AND NOT EXISTS (
                        SELECT 1 FROM queue_node_runs n WHERE n.run_id = c.run_id AND n.node_id = c.node_id)
                    AND NOT EXISTS (
                        SELECT 1 FROM queue_attempts a WHERE a.run_id = c.run_id AND a.node_id = c.node_id)
                  ORDER BY 6, 1, 10 NULLS FIRST, 4",
                &[&id],
            )
            .await
            .map_err(query_error("reading a queued run's nodes"))?
            .into_iter()
            .map(|n| {
                let status: String = n.get(2);
                let attempt: i32 = n.get(3);
                NodeRunRow {
                    node_id: n.get(0),
                    node_type: n.get(1),
                    attempt: attempt.max(0) as u32,
                    item: n.get::<_, Option<i32>>(9).map(i64::from),
                    input: n.get(8),
                    output: if status == "succeeded" { n.get(7) } else { None },
                    status,
                    error: n.get(6),
                    started_at: n.get(5),
                    duration_ms: n.get(4),
                }
            })
            .collect();
        let steps = client
            .query(
                "SELECT node_id, seq, kind, name, status, input, output, error, started_ms,
                        duration_ms, tokens
                   FROM queue_steps WHERE run_id = $1 ORDER BY node_id, seq",
                &[&id],
            )
            .await
            .map_err(query_error("reading a queued run's agent steps"))?
            .into_iter()
            .map(|s| crate::store::history::StepRow {
                node_id: s.get(0),
                seq: s.get::<_, i32>(1).max(0) as u32,
                kind: s.get(2),
                name: s.get(3),
                status: s.get(4),
                input: s.get(5),
                output: s.get(6),
                error: s.get(7),
                started_at: s.get(8),
                duration_ms: s.get(9),
                tokens: s.get(10),
            })
            .collect();
        Ok(Some(RunDetail {
            summary: summary_of(&r),
            workflow_hash: None,
            source_path: None,
            input: r.get(7),
            output: r.get::<_, Option<Value>>(8).unwrap_or(Value::Null),
            usage: None,
            nodes,
            steps,
        }))
    }

    /// Queued runs as [`crate::store::Db::list_runs`] lists recorded ones:
    /// the same filters, ordered by creation (newest first, or oldest first
    /// after an `after` cursor), `limit + offset` of them from the start
    /// (the caller merges them with the recorded ones, then skips `offset`).
    /// `cursor_at` is the creation time of the `before`/`after` run.
    pub async fn list_runs(
        &self,
        filter: &crate::store::history::RunFilter,
        cursor_at: Option<i64>,
        exclude: &[String],
    ) -> Result<Vec<crate::store::history::RunSummary>> {
        use tokio_postgres::types::ToSql;
        let client = self.client().await?;
        let mut sql = format!(
            "SELECT id, workflow, status, trigger_kind, {CREATED_MS},
                    (EXTRACT(EPOCH FROM finished_at - started_at) * 1000)::bigint, error
               FROM queue_runs WHERE TRUE"
        );
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(w) = &filter.workflow {
            args.push(w);
            sql.push_str(&format!(" AND workflow = ${}", args.len()));
        }
        if let Some(st) = &filter.status {
            args.push(st);
            sql.push_str(&format!(" AND status = ${}", args.len()));
        }
        if let Some(t) = &filter.trigger {
            args.push(t);
            sql.push_str(&format!(" AND trigger_kind = ${}", args.len()));
        }
        if let Some(since) = &filter.since {
            args.push(since);
            sql.push_str(&format!(" AND {CREATED_MS} >= ${}", args.len()));
        }
        if !exclude.is_empty() {
            args.push(&exclude);
            sql.push_str(&format!(
                " AND COALESCE(worker <> ALL(${}), TRUE)",
                args.len()
            ));
        }
        let newer_first = filter.after.is_none();
        let cursor = filter.before.as_ref().or(filter.after.as_ref());
        if let (Some(id), Some(at)) = (cursor, &cursor_at) {
            args.push(at);
            args.push(id);
            let op = if newer_first { "<" } else { ">" };
            sql.push_str(&format!(
                " AND ({CREATED_MS}, id) {op} (${}, ${})",
                args.len() - 1,
                args.len()
            ));
        }
        sql.push_str(if newer_first {
            " ORDER BY 5 DESC, id DESC"
        } else {
            " ORDER BY 5 ASC, id ASC"
        });
        let limit = (filter.limit > 0).then(|| (filter.limit + filter.offset) as i64);
        if let Some(limit) = &limit {
            args.push(limit);
            sql.push_str(&format!(" LIMIT ${}", args.len()));
        }
        let rows = client
            .query(&sql, &args)
            .await
            .map_err(query_error("listing queued runs"))?;
        Ok(rows.into_iter().map(|r| summary_of(&r)).collect())
    }

    /// When a queued run was created (Unix ms), if it is on the queue.
    pub async fn run_created_at(&self, id: &str) -> Result<Option<i64>> {
        let client = self.client().await?;
        Ok(client
            .query_opt(
                &format!("SELECT {CREATED_MS} FROM queue_runs WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(query_error("reading a queued run"))?
            .map(|r| r.get(0)))
    }

    /// Queued runs whose id starts or ends with `part` (at most two: more
    /// than one is ambiguous), or the newest one for `last`.
    pub async fn find_runs(&self, part: &str) -> Result<Vec<(String, i64)>> {
        let client = self.client().await?;
        let rows = if part == "last" {
            client
                .query(
                    &format!(
                        "SELECT id, {CREATED_MS} FROM queue_runs ORDER BY 2 DESC, 1 DESC LIMIT 1"
                    ),
                    &[],
                )
                .await
        } else {
            client
                .query(
                    &format!(
                        "SELECT id, {CREATED_MS} FROM queue_runs
                      WHERE id = $1 OR starts_with(id, $1) OR right(id, length($1)) = $1 LIMIT 2"
                    ),
                    &[&part],
                )
                .await
        }
        .map_err(query_error("finding a queued run"))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Queued runs created in each of the `hours` hours up to `now` (Unix
    /// ms): (hour start, status, count).
    pub async fn runs_per_hour(
        &self,
        now: i64,
        hours: usize,
        exclude: &[String],
    ) -> Result<Vec<(i64, String, i64)>> {
        let client = self.client().await?;
        let hour = 3_600_000i64;
        let first = (now.div_euclid(hour) - hours as i64 + 1) * hour;
        let rows = client
            .query(
                &format!(
                    "SELECT ({CREATED_MS} / $2) * $2, status, COUNT(*)
                   FROM queue_runs WHERE created_at >= to_timestamp($1::bigint / 1000.0)
                    AND COALESCE(worker <> ALL($3), TRUE)
                  GROUP BY 1, 2"
                ),
                &[&first, &hour, &exclude],
            )
            .await
            .map_err(query_error("counting queued runs by hour"))?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// The workers, most recently heard from first.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, host, version, tags, concurrency, running,
                        (EXTRACT(EPOCH FROM clock_timestamp() - heartbeat_at) * 1000)::bigint
                   FROM queue_workers ORDER BY heartbeat_at DESC",
                &[],
            )
            .await
            .map_err(query_error("listing workers"))?;
        Ok(rows
            .into_iter()
            .map(|r| WorkerRow {
                id: r.get(0),
                host: r.get(1),
                version: r.get(2),
                tags: r.get(3),
                concurrency: r.get(4),
                running: r.get(5),
                heartbeat_age_ms: r.get(6),
            })
            .collect())
    }

    /// Runs waiting for a worker.
    pub async fn queue_depth(&self) -> Result<i64> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                "SELECT COUNT(*) FROM queue_runs WHERE status = 'queued'",
                &[],
            )
            .await
            .map_err(query_error("counting queued runs"))?
            .get(0))
    }

    /// Runs of `workflow` queued or running (a dead worker's run counts: it
    /// is resumed), by any process on the queue: what overlap policies see.
    pub async fn open_runs(&self, workflow: &str) -> Result<i64> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                "SELECT COUNT(*) FROM queue_runs
                  WHERE workflow = $1 AND status IN ('queued', 'running')",
                &[&workflow],
            )
            .await
            .map_err(query_error("counting a workflow's open runs"))?
            .get(0))
    }

    /// A listener that is woken when a run is queued. It stops (and the
    /// worker falls back to polling) if its connection drops.
    pub async fn listen(&self) -> Result<Listener> {
        let wake = Arc::new(tokio::sync::Notify::new());
        let woken = wake.clone();
        let (client, task) = self.subscribe(CHANNEL, move |_| woken.notify_one()).await?;
        Ok(Listener {
            wake,
            _client: client,
            task,
        })
    }

    /// Calls `each` with the payload of every notification on `channel`,
    /// until the returned client is dropped or the connection drops.
    pub async fn subscribe(
        &self,
        channel: &'static str,
        each: impl Fn(String) + Send + 'static,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        use futures_util::StreamExt;
        let (client, mut connection) =
            tokio_postgres::connect(&self.url, NoTls)
                .await
                .map_err(|e| PgError::Connect {
                    url: redact(&self.url),
                    cause: e.to_string(),
                })?;
        let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        let task = tokio::spawn(async move {
            futures_util::pin_mut!(messages);
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        each(n.payload().to_string())
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("listening on {channel}: the connection dropped ({e})");
                        break;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .map_err(query_error("listening for notifications"))?;
        Ok((client, task))
    }

    /// Announces run events (their JSON, one notification each) on
    /// [`EVENTS`], in order, in one round trip.
    async fn publish_events(
        c: &impl deadpool_postgres::GenericClient,
        payloads: &[String],
    ) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        c.execute(
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS e(p, i) ORDER BY i",
            &[&EVENTS, &payloads],
        )
        .await
        .map_err(query_error("announcing run events"))?;
        Ok(())
    }
}

/// What a relay writes at once: the parts of its batch of events, in the
/// order they are written.
#[derive(Debug, Default)]
pub struct KeptBatch {
    pub started: Vec<(String, Box<NewRun>)>,
    pub logs: Vec<QueueLog>,
    pub nodes: Vec<QueueNodeRun>,
    pub attempts: Vec<Box<crate::engine::events::NodeAttempt>>,
    pub steps: Vec<Box<crate::engine::events::NodeStep>>,
    /// (who ran it, run, status, output, error) of runs a process ran itself.
    pub finished: Vec<(String, String, String, Value, Option<String>)>,
    /// Events to announce (`NOTIFY`, delivered when the batch commits).
    pub events: Vec<String>,
}

impl KeptBatch {
    /// Each part as a batch of its own.
    pub fn split(self) -> Vec<KeptBatch> {
        let KeptBatch {
            started,
            logs,
            nodes,
            attempts,
            steps,
            finished,
            events,
        } = self;
        let parts = [
            KeptBatch {
                started,
                ..Default::default()
            },
            KeptBatch {
                logs,
                ..Default::default()
            },
            KeptBatch {
                nodes,
                ..Default::default()
            },
            KeptBatch {
                attempts,
                ..Default::default()
            },
            KeptBatch {
                steps,
                ..Default::default()
            },
            KeptBatch {
                finished,
                ..Default::default()
            },
            KeptBatch {
                events,
                ..Default::default()
            },
        ];
        parts.into_iter().filter(|p| !p.is_empty()).collect()
    }

    /// What a one-part batch holds, for messages.
    pub fn what(&self) -> String {
        [
            (self.started.len(), "run start(s)"),
            (self.logs.len(), "log line(s)"),
            (self.nodes.len(), "node end(s)"),
            (self.attempts.len(), "node attempt(s)"),
            (self.steps.len(), "agent step(s)"),
            (self.finished.len(), "run end(s)"),
            (self.events.len(), "announced event(s)"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
    }

    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
            && self.logs.is_empty()
            && self.nodes.is_empty()
            && self.attempts.is_empty()
            && self.steps.is_empty()
            && self.finished.is_empty()
            && self.events.is_empty()
    }
}

impl Pg {
    /// Writes a relay's batch in one transaction (one commit, so one wait
    /// for the disk however many parts it has); its announcements go out as
    /// it commits, so a client that hears of an event can read it back.
    pub async fn keep(&self, b: &KeptBatch) -> Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(query_error("keeping run events"))?;
        for (by, run) in &b.started {
            Self::record_started(&tx, run, by).await?;
        }
        Self::add_logs(&tx, &b.logs).await?;
        Self::add_node_runs(&tx, &b.nodes).await?;
        Self::add_attempts(&tx, &b.attempts).await?;
        Self::add_steps(&tx, &b.steps).await?;
        for (by, run, status, output, error) in &b.finished {
            Self::finish_on(&tx, by, run, status, output, error.as_deref()).await?;
        }
        Self::publish_events(&tx, &b.events).await?;
        tx.commit().await.map_err(query_error("keeping run events"))
    }
}

/// How a node of a queued run finished, kept for the run's page.
#[derive(Debug, Clone)]
pub struct QueueNodeRun {
    pub run_id: String,
    pub node_id: String,
    pub node_type: String,
    pub status: String,
    pub attempts: i32,
    pub duration_ms: i64,
    /// Unix ms.
    pub finished_ms: i64,
    pub error: Option<Value>,
}

/// Which workflows' runs [`Pg::prune_runs`] deletes.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    All,
    Only(&'a str),
    /// Every workflow but these (those with retention of their own).
    Except(&'a [String]),
}

/// What a worker's event relay keeps on the queue besides announcing it.
#[derive(Debug, Clone)]
pub enum Kept {
    Log(QueueLog),
    Node(QueueNodeRun),
    /// One attempt of a node (or foreach item), as history records it.
    Attempt(Box<crate::engine::events::NodeAttempt>),
    /// One step of an agent.
    Step(Box<crate::engine::events::NodeStep>),
    /// A run a daemon (`by`) runs itself began (see [`Pg::record_started`]).
    Started {
        by: String,
        run: Box<NewRun>,
    },
    /// Signals once everything sent before it is written.
    Flush(std::sync::mpsc::SyncSender<()>),
    /// A run a daemon runs itself ended.
    Finished {
        by: String,
        run_id: String,
        status: String,
        output: Value,
        error: Option<String>,
    },
}

/// A log line of a queued run, kept for its run logs.
#[derive(Debug, Clone)]
pub struct QueueLog {
    pub run_id: String,
    /// Unix ms.
    pub ts: i64,
    pub node_id: Option<String>,
    pub level: String,
    pub message: String,
}

impl Pg {
    /// Keeps log lines of queued runs (one statement for the batch).
    async fn add_logs(c: &impl deadpool_postgres::GenericClient, logs: &[QueueLog]) -> Result<()> {
        if logs.is_empty() {
            return Ok(());
        }
        let runs: Vec<&str> = logs.iter().map(|l| l.run_id.as_str()).collect();
        let times: Vec<i64> = logs.iter().map(|l| l.ts).collect();
        let nodes: Vec<Option<&str>> = logs.iter().map(|l| l.node_id.as_deref()).collect();
        let levels: Vec<&str> = logs.iter().map(|l| l.level.as_str()).collect();
        let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
        c
            .execute(
                "INSERT INTO queue_logs (run_id, ts, node_id, level, message)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])",
                &[&runs, &times, &nodes, &levels, &messages],
            )
            .await
            .map_err(query_error("keeping run log lines"))?;
        Ok(())
    }

    /// Keeps how nodes of queued runs finished (one statement for the
    /// batch). A node reused on resume (no attempt) keeps the row of the
    /// run that ran it.
    async fn add_node_runs(
        c: &impl deadpool_postgres::GenericClient,
        nodes: &[QueueNodeRun],
    ) -> Result<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        let runs: Vec<&str> = nodes.iter().map(|n| n.run_id.as_str()).collect();
        let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
        let types: Vec<&str> = nodes.iter().map(|n| n.node_type.as_str()).collect();
        let statuses: Vec<&str> = nodes.iter().map(|n| n.status.as_str()).collect();
        let attempts: Vec<i32> = nodes.iter().map(|n| n.attempts).collect();
        let durations: Vec<i64> = nodes.iter().map(|n| n.duration_ms).collect();
        let finished: Vec<i64> = nodes.iter().map(|n| n.finished_ms).collect();
        let errors: Vec<Option<&Value>> = nodes.iter().map(|n| n.error.as_ref()).collect();
        c
            .execute(
                "INSERT INTO queue_node_runs
                        (run_id, node_id, node_type, status, attempts, duration_ms, finished_ms, error)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[],
                                      $6::bigint[], $7::bigint[], $8::jsonb[])
                 ON CONFLICT (run_id, node_id) DO UPDATE SET
                        status = EXCLUDED.status, attempts = EXCLUDED.attempts,
                        duration_ms = EXCLUDED.duration_ms, finished_ms = EXCLUDED.finished_ms,
                        error = EXCLUDED.error
                  WHERE EXCLUDED.attempts > 0",
                &[&runs, &ids, &types, &statuses, &attempts, &durations, &finished, &errors],
            )
            .await
            .map_err(query_error("keeping how nodes finished"))?;
        Ok(())
    }

    /// Records a run that `by` (a daemon) runs itself rather than queues (a
    /// webhook's whose caller waits for its answer), so every daemon on the
    /// store lists and shows it: `running`, held by `by`, without a lease, so
    /// no worker ever claims it.
    async fn record_started(
        c: &impl deadpool_postgres::GenericClient,
        run: &NewRun,
        by: &str,
    ) -> Result<()> {
        c
            .execute(
                "INSERT INTO queue_runs (id, workflow, definition, input, trigger_kind, entry, needs, tags,
                        status, worker, claims, started_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running', $9, 1, clock_timestamp())
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &run.id,
                    &run.workflow,
                    &run.definition,
                    &run.input,
                    &run.trigger_kind,
                    &run.entry,
                    &run.needs,
                    &run.tags,
                    &by,
                ],
            )
            .await
            .map_err(query_error("recording a run"))?;
        Ok(())
    }

    /// Runs `by` recorded as running that it no longer runs (it stopped or
    /// was killed) are marked interrupted, as its own history marks them.
    pub async fn interrupt_runs_of(&self, by: &str, reason: &str) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE queue_runs SET status = 'interrupted', error = $2, finished_at = clock_timestamp()
                  WHERE worker = $1 AND status = 'running' AND lease_until IS NULL",
                &[&by, &reason],
            )
            .await
            .map_err(query_error("marking runs interrupted"))
    }

    /// Deletes finished queued runs, with everything kept of them, at most
    /// `batch` per statement (so other writers wait little): those finished
    /// before `before` (Unix ms), and those past the newest `keep` of their
    /// workflow. The number deleted. Runs still queued or running are never
    /// touched.
    pub async fn prune_runs(
        &self,
        before: Option<i64>,
        keep: Option<u64>,
        batch: i64,
        scope: &Scope<'_>,
    ) -> Result<u64> {
        let (only, except): (Option<&str>, Vec<&str>) = match scope {
            Scope::All => (None, Vec::new()),
            Scope::Only(name) => (Some(name), Vec::new()),
            Scope::Except(names) => (None, names.iter().map(String::as_str).collect()),
        };
        let client = self.client().await?;
        let keep = keep.map(|k| k.min(i64::MAX as u64) as i64);
        let mut total = 0;
        loop {
            let row = client
                .query_one(
                    "WITH doomed AS (
                        SELECT id FROM queue_runs
                         WHERE status NOT IN ('queued', 'running')
                           AND ($4::TEXT IS NULL OR workflow = $4) AND workflow <> ALL($5)
                           AND ($1::BIGINT IS NOT NULL
                                AND finished_at < to_timestamp($1::BIGINT / 1000.0))
                        UNION
                        SELECT id FROM (
                            SELECT id, status, row_number() OVER (
                                       PARTITION BY workflow ORDER BY created_at DESC, id DESC) AS n
                              FROM queue_runs
                             WHERE $2::BIGINT IS NOT NULL
                               AND ($4::TEXT IS NULL OR workflow = $4) AND workflow <> ALL($5)) ranked
                         WHERE $2::BIGINT IS NOT NULL AND n > $2::BIGINT
                           AND status NOT IN ('queued', 'running')
                        LIMIT $3),
                     gone AS (DELETE FROM queue_runs WHERE id IN (SELECT id FROM doomed) RETURNING id),
                     logs AS (DELETE FROM queue_logs WHERE run_id IN (SELECT id FROM gone)),
                     nodes AS (DELETE FROM queue_node_runs WHERE run_id IN (SELECT id FROM gone)),
                     attempts AS (DELETE FROM queue_attempts WHERE run_id IN (SELECT id FROM gone)),
                     steps AS (DELETE FROM queue_steps WHERE run_id IN (SELECT id FROM gone))
                     SELECT COUNT(*) FROM gone",
                    &[&before, &keep, &batch, &only, &except],
                )
                .await
                .map_err(query_error("deleting old queued runs"))?;
            let n: i64 = row.get(0);
            total += n.max(0) as u64;
            if n < batch {
                return Ok(total);
            }
        }
    }

    /// Keeps attempts of nodes of queued runs (one statement for the batch);
    /// an attempt relayed twice (a run resumed) keeps its first row.
    async fn add_attempts(
        c: &impl deadpool_postgres::GenericClient,
        attempts: &[Box<crate::engine::events::NodeAttempt>],
    ) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let runs: Vec<&str> = attempts.iter().map(|a| &*a.run_id).collect();
        let nodes: Vec<&str> = attempts.iter().map(|a| &*a.node_id).collect();
        let items: Vec<i32> = attempts
            .iter()
            .map(|a| a.item.map_or(-1, |i| i as i32))
            .collect();
        let numbers: Vec<i32> = attempts.iter().map(|a| a.attempt as i32).collect();
        let types: Vec<&str> = attempts.iter().map(|a| &*a.node_type).collect();
        let statuses: Vec<&str> = attempts.iter().map(|a| a.status.as_str()).collect();
        let inputs: Vec<&Value> = attempts.iter().map(|a| &*a.input).collect();
        let outputs: Vec<Option<&Value>> = attempts.iter().map(|a| a.output.as_deref()).collect();
        let errors: Vec<Option<&Value>> = attempts.iter().map(|a| a.error.as_ref()).collect();
        let started: Vec<i64> = attempts.iter().map(|a| a.started_ms).collect();
        let finished: Vec<i64> = attempts.iter().map(|a| a.finished_ms).collect();
        c
            .execute(
                "INSERT INTO queue_attempts (run_id, node_id, item, attempt, node_type, status,
                        input, output, error, started_ms, finished_ms)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[],
                        $6::text[], $7::jsonb[], $8::jsonb[], $9::jsonb[], $10::bigint[], $11::bigint[])
                 ON CONFLICT DO NOTHING",
                &[
                    &runs, &nodes, &items, &numbers, &types, &statuses, &inputs, &outputs,
                    &errors, &started, &finished,
                ],
            )
            .await
            .map_err(query_error("keeping node attempts"))?;
        Ok(())
    }

    /// Keeps steps of agents of queued runs.
    async fn add_steps(
        c: &impl deadpool_postgres::GenericClient,
        steps: &[Box<crate::engine::events::NodeStep>],
    ) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let runs: Vec<&str> = steps.iter().map(|s| &*s.run_id).collect();
        let nodes: Vec<&str> = steps.iter().map(|s| &*s.node_id).collect();
        let seqs: Vec<i32> = steps.iter().map(|s| s.seq as i32).collect();
        let kinds: Vec<&str> = steps.iter().map(|s| s.kind.as_str()).collect();
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        let statuses: Vec<&str> = steps
            .iter()
            .map(|s| {
                if s.error.is_some() {
                    "failed"
                } else {
                    "succeeded"
                }
            })
            .collect();
        let inputs: Vec<&Value> = steps.iter().map(|s| &s.input).collect();
        let outputs: Vec<Option<&Value>> = steps.iter().map(|s| s.output.as_ref()).collect();
        let errors: Vec<Option<&Value>> = steps.iter().map(|s| s.error.as_ref()).collect();
        let started: Vec<i64> = steps.iter().map(|s| s.started_ms).collect();
        let durations: Vec<i64> = steps.iter().map(|s| s.duration_ms as i64).collect();
        let tokens: Vec<Option<i64>> = steps.iter().map(|s| s.tokens.map(|t| t as i64)).collect();
        c.execute(
            "INSERT INTO queue_steps (run_id, node_id, seq, kind, name, status, input, output,
                        error, started_ms, duration_ms, tokens)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[],
                        $6::text[], $7::jsonb[], $8::jsonb[], $9::jsonb[], $10::bigint[],
                        $11::bigint[], $12::bigint[])
                 ON CONFLICT DO NOTHING",
            &[
                &runs, &nodes, &seqs, &kinds, &names, &statuses, &inputs, &outputs, &errors,
                &started, &durations, &tokens,
            ],
        )
        .await
        .map_err(query_error("keeping agent steps"))?;
        Ok(())
    }

    /// A queued run's log lines, oldest first.
    pub async fn run_logs(&self, id: &str) -> Result<Vec<crate::store::history::LogRow>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT ts, node_id, level, message FROM queue_logs WHERE run_id = $1 ORDER BY ts",
                &[&id],
            )
            .await
            .map_err(query_error("reading a queued run's log"))?;
        Ok(rows
            .into_iter()
            .map(|r| crate::store::history::LogRow {
                ts: r.get(0),
                node_id: r.get(1),
                level: r.get(2),
                message: r.get(3),
            })
            .collect())
    }
}

/// The channel workers announce run events on (for WebSocket clients of the
/// daemons).
pub const EVENTS: &str = "fuse_events";

/// The largest notification PostgreSQL carries (8000 bytes), with room to spare.
pub const MAX_EVENT_BYTES: usize = 7900;

/// Wakes a waiting worker when a run is queued.
pub struct Listener {
    wake: Arc<tokio::sync::Notify>,
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Waits for a notification, or `poll` at most.
    pub async fn wait(&self, poll: Duration) {
        let _ = tokio::time::timeout(poll, self.wake.notified()).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What went wrong getting a connection, from the server's own words when
/// it said something (a database that does not exist, a password refused).
fn pool_cause(e: deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text = format!("{text}: {s}");
                    source = s.source();
                }
                text
            }
        },
        deadpool_postgres::PoolError::Timeout(_) => {
            "no connection within 10 s (is the server reachable from here?)".into()
        }
        other => other.to_string(),
    }
}

/// Checks that `url` is a PostgreSQL connection URL, before connecting.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    url.parse::<tokio_postgres::Config>().map(|_| ()).map_err(|e| {
        format!(
            "{} is not a PostgreSQL URL ({e}); it looks like postgres://USER:PASSWORD@HOST:5432/DATABASE",
            redact(url)
        )
    })
}

/// A URL for messages: without its password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(a URL that does not parse)".into(),
    }
}
