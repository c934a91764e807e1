//! Writes run events to SQLite on one writer thread, in batches: the engine only
//! sends events down a channel, so recording costs it a clone and a send (and,
//! for a node's attempt, writing its output as JSON text: the run's thread
//! does that, not the one writer every run shares).
//!
//! Payloads larger than the blob threshold are written once to
//! `blobs/<hash>` (content-addressed) and referenced from the row.
//!
//! Retention (`keep_runs`, `keep_days`) stays off the path of runs: finished
//! top-level runs only mark their workflow, and the writer prunes marked
//! workflows in the background, at most once a [`RETENTION_EVERY`] (every [`RETENTION_BEHIND`] while it is behind), at most
//! [`RETENTION_BATCH`] runs per statement (a short pause for the runs waiting on the writer),
//! through the `(workflow_name, created_at)` index, and removes freed blobs.
//! Under load the pages it frees are reused by new runs; once the writer has
//! been idle for [`IDLE`], it gives the free pages back to the file
//! (incremental vacuum in [`VACUUM_STEP`]s, new work first between steps,
//! then a WAL checkpoint), so the database stays bounded on disk. A flush and
//! the writer's stop finish pending retention and shrink the file at once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::definition::Definition;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::config::HistoryConfig;
use crate::engine::events::NodeAttempt;
use crate::engine::{Event, Observer, Status};
use crate::error::Result;
use crate::store::Store;

/// Events written in one transaction at most.
const MAX_BATCH: usize = 8192;
/// One-shot: events a batch waits for (at most [`GATHER`]) before it is written.
const GATHERED: usize = 512;
const GATHER: Duration = Duration::from_millis(2);
/// How often retention runs while runs finish.
const RETENTION_EVERY: Duration = Duration::from_secs(1);
/// How soon it runs again while it has more to delete.
const RETENTION_BEHIND: Duration = Duration::from_millis(5);
/// Runs deleted per retention statement.
const RETENTION_BATCH: i64 = 200;
/// How long the writer must have had nothing to write before it shrinks the
/// file (in [`VACUUM_STEP`]s, looking for new work between steps).
const IDLE: Duration = Duration::from_secs(2);

/// Pauses before the retries of a batch that failed on a full disk, an I/O
/// error or a lock: short, so a caller waiting for its commit hears soon.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(250)];
/// Runs whose history failed, remembered for whoever asks (oldest dropped first).
const MAX_FAILURES: usize = 10_000;

/// Whether a durable write committed; the error says why not.
pub type Committed = std::result::Result<(), String>;

enum Op {
    Event(Box<Event>),
    Attempt(Box<Attempt>),
    Flush(SyncSender<()>),
    /// A write in order with the events; `ack` hears whether its transaction
    /// committed.
    Write {
        item: Item,
        ack: tokio::sync::oneshot::Sender<Committed>,
    },
}

/// A run the daemon accepted, recorded `queued` before its caller hears of it.
struct Accepted {
    id: String,
    workflow: String,
    trigger: String,
    /// The input as JSON text (serialized by the caller, off the writer).
    input: String,
    retry_of: Option<String>,
}

/// A recorded run that got its slot: `running`, with what it runs.
struct Started {
    id: String,
    hash: String,
    definition: Definition,
    source_path: Option<String>,
}

/// A node's attempt, with its output as JSON text (written by the run).
struct Attempt {
    node: NodeAttempt,
    output: Option<String>,
}

/// What one batch transaction writes, in order.
enum Item {
    Event(Box<Event>),
    Attempt(Box<Attempt>),
    Exec(&'static str, Vec<rusqlite::types::Value>),
    Accept(Box<Accepted>),
    Started(Box<Started>),
}

impl Item {
    /// The run an event belongs to (acknowledged writes stand alone).
    fn run_id(&self) -> Option<&str> {
        match self {
            Item::Exec(..) | Item::Accept(_) | Item::Started(_) => None,
            Item::Attempt(a) => Some(&a.node.run_id),
            Item::Event(e) => Some(match e.as_ref() {
                Event::RunStarted { run_id, .. }
                | Event::NodeFinished { run_id, .. }
                | Event::Log { run_id, .. }
                | Event::RunFinished { run_id, .. } => run_id.as_str(),
                Event::NodeStarted { run_id, .. } => run_id,
                Event::NodeAttempt(a) => &a.run_id,
                Event::NodeStep(s) => &s.run_id,
            }),
        }
    }
}

/// Runs whose history could not be written, with the reason, oldest first.
#[derive(Default)]
struct Failures(std::collections::VecDeque<(String, String)>);

impl Failures {
    fn add(&mut self, run_id: &str, reason: &str) {
        if self.0.iter().any(|(id, _)| id == run_id) {
            return;
        }
        if self.0.len() >= MAX_FAILURES {
            self.0.pop_front();
        }
        self.0.push_back((run_id.to_string(), reason.to_string()));
    }
}

/// The history writer. Dropping it flushes and stops the thread.
///
/// A batch that fails is retried; if it still fails, each run's events are
/// written in a transaction of their own, so one run's problem does not cost
/// the others their history, and every run whose history could not be written
/// is remembered ([`Recorder::failures`]) and logged with its id.
pub struct Recorder {
    tx: Mutex<Option<Tx>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<Checkpointer>>,
    failures: Arc<Mutex<Failures>>,
    progress: Arc<Progress>,
}

/// The writer's queue. A one-shot writer's is bounded: a run that records
/// faster than SQLite writes waits for the writer (it waits for it at its end
/// anyway) instead of queueing every event of a long run in memory. The
/// daemon's is not: no request or run may block on the disk.
enum Tx {
    Unbounded(Sender<Op>),
    Bounded(SyncSender<Op>),
}

/// Events a one-shot writer's queue holds before a run waits for it.
const ONE_SHOT_QUEUE: usize = 1024;

impl Tx {
    fn send(&self, op: Op) -> bool {
        match self {
            Tx::Unbounded(tx) => tx.send(op).is_ok(),
            Tx::Bounded(tx) => tx.send(op).is_ok(),
        }
    }
}

/// How far the writer is behind: what was sent, what it has handled.
#[derive(Default)]
struct Progress {
    sent: std::sync::atomic::AtomicU64,
    handled: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
    last_batch: std::sync::atomic::AtomicU64,
}

/// Who the writer records for: the daemon (a long life, many runs) or one
/// `fuse run` (one run, then the process exits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A background checkpointer copies the log into the database every
    /// 250 ms; stopping leaves the log empty.
    Daemon,
    /// One disk sync per run: [`Recorder::flush`] (which `fuse run` calls
    /// before it reports the run) syncs the write-ahead log, and nothing else
    /// does. There is no checkpointer and no checkpoint when the process
    /// exits: the log stays beside the database for the next process, which
    /// copies it in (with its own syncs) before its run writes once it holds
    /// [`EARLY_CHECKPOINT`] pages, while its workflow is read; SQLite does
    /// when a commit passes twice that.
    OneShot,
}

impl Recorder {
    /// Starts the writer on an open store.
    pub fn start(
        store: Store,
        blobs_dir: PathBuf,
        history: HistoryConfig,
        mode: Mode,
    ) -> Result<Recorder> {
        let (tx, rx) = match mode {
            Mode::Daemon => {
                let (tx, rx) = mpsc::channel();
                (Tx::Unbounded(tx), rx)
            }
            Mode::OneShot => {
                let (tx, rx) = mpsc::sync_channel(ONE_SHOT_QUEUE);
                (Tx::Bounded(tx), rx)
            }
        };
        let failures = Arc::new(Mutex::new(Failures::default()));
        let progress = Arc::new(Progress::default());
        let checkpointer = match mode {
            Mode::Daemon => Some(Checkpointer::start(store.path())?),
            Mode::OneShot => None,
        };
        let log = (mode == Mode::OneShot).then(|| {
            let (path, existed) = store.log();
            Log {
                path,
                index: crate::store::log_index_path(store.path()),
                created: !existed,
            }
        });
        let conn = store.into_connection();
        if mode == Mode::OneShot
            && let Err(e) = conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
        {
            tracing::debug!("the log will be checkpointed on close: {e}");
        }
        // Every statement the writer runs stays prepared. The checkpointer copies
        // the log into the database in the background, so when a commit passes
        // 1,000 log pages the writer's own checkpoint has little left to copy;
        // that checkpoint lets the log start over (and be cut back to 8 MB).
        // One-shot, the log is copied before a run writes once it holds
        // EARLY_CHECKPOINT pages; SQLite's own copy, mid-run, only past twice that.
        conn.set_prepared_statement_cache_capacity(64);
        let pages = match mode {
            Mode::Daemon => 1000,
            Mode::OneShot => 2 * EARLY_CHECKPOINT,
        };
        if let Err(e) = conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {pages}; PRAGMA journal_size_limit = 8388608;"
        )) {
            tracing::warn!("cannot bound the history writer's log: {e}");
        }
        // A one-shot writer appends one run: SQLite's default 2 MB page cache
        // mostly holds pages it has written and will not read again.
        if mode == Mode::OneShot
            && let Err(e) = conn.execute_batch("PRAGMA cache_size = -512;")
        {
            tracing::debug!("the history writer keeps SQLite's default cache: {e}");
        }
        let writer = Writer {
            conn,
            blobs_dir,
            history,
            runs: HashMap::new(),
            definitions: std::collections::HashSet::new(),
            pending: HashMap::new(),
            next_retention: std::time::Instant::now(),
            last_write: std::time::Instant::now(),
            shrink: false,
            failures: failures.clone(),
            mode,
            log,
            progress: progress.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("fuse-recorder".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| crate::Error::io("start the history writer", "thread", e))?;
        Ok(Recorder {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            checkpointer: Mutex::new(checkpointer),
            failures,
            progress,
        })
    }

    /// (batches committed, events and writes handled, size of the last batch).
    pub fn throughput(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.progress.batches.load(Relaxed),
            self.progress.handled.load(Relaxed),
            self.progress.last_batch.load(Relaxed),
        )
    }

    /// Events and writes sent to the writer that it has not handled yet.
    pub fn backlog(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let handled = self.progress.handled.load(Relaxed);
        self.progress.sent.load(Relaxed).saturating_sub(handled)
    }

    fn send(&self, op: Op) {
        if let Ok(tx) = self.tx.lock()
            && let Some(tx) = tx.as_ref()
            && tx.send(op)
        {
            self.progress
                .sent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Every run whose history could not be written, with the reason. Ask
    /// after [`Recorder::flush`] to cover everything sent so far.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.failures
            .lock()
            .map(|f| f.0.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until every event sent so far is on disk.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let sent = self
            .tx
            .lock()
            .ok()
            .and_then(|tx| tx.as_ref().map(|tx| tx.send(Op::Flush(ack_tx))))
            .unwrap_or(false);
        if sent {
            let _ = ack_rx.recv();
        }
    }

    /// Records a run the daemon accepted as `queued`; resolves once it is
    /// committed (sharing one commit with everything else in flight), so a
    /// daemon killed right after answering still has it.
    pub fn accept(
        &self,
        id: &str,
        workflow: &str,
        trigger: &str,
        input: &serde_json::Value,
        retry_of: Option<&str>,
    ) -> tokio::sync::oneshot::Receiver<Committed> {
        self.write(Item::Accept(Box::new(Accepted {
            id: id.to_string(),
            workflow: workflow.to_string(),
            trigger: trigger.to_string(),
            input: input.to_string(),
            retry_of: retry_of.map(str::to_string),
        })))
    }

    /// A recorded run got its slot: `running` (with the definition it runs)
    /// before any node starts; after a crash, `queued` means the run never
    /// started and is safe to start again. The engine's `RunStarted` for a
    /// run recorded this way writes nothing more.
    pub fn started(
        &self,
        id: &str,
        plan: &crate::Plan,
    ) -> tokio::sync::oneshot::Receiver<Committed> {
        self.write(Item::Started(Box::new(Started {
            id: id.to_string(),
            hash: plan.hash.clone(),
            definition: plan.definition.clone(),
            source_path: plan.source_path.as_ref().map(|p| p.display().to_string()),
        })))
    }

    /// A run cancelled before it started (nothing happens to a run that has
    /// started: its own cancellation records it).
    pub fn cancel_queued(&self, id: &str) -> tokio::sync::oneshot::Receiver<Committed> {
        use rusqlite::types::Value as Sql;
        self.write(Item::Exec(
            "UPDATE executions SET status = 'cancelled', error = 'cancelled before it started',
                 finished_at = ?2
             WHERE id = ?1 AND status = 'queued'",
            vec![
                Sql::Text(id.to_string()),
                Sql::Integer(crate::engine::events::now_ms()),
            ],
        ))
    }

    /// Writes `item` in the writer's next transaction (in order with the
    /// events sent before it) and resolves to whether it is committed.
    fn write(&self, item: Item) -> tokio::sync::oneshot::Receiver<Committed> {
        let (ack, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Write { item, ack });
        rx
    }

    /// Flushes, stops the writer and waits for it.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(handle) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = handle.join();
        }
        if let Some(checkpointer) = self.checkpointer.lock().ok().and_then(|mut c| c.take()) {
            checkpointer.stop();
        }
    }
}

/// How often the write-ahead log is copied into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies the write-ahead log into the database on its own thread and
/// connection (`PRAGMA wal_checkpoint(PASSIVE)`: it never blocks the writer),
/// so the writer's commits seldom wait for a checkpoint and its disk sync.
struct Checkpointer {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Its connection is opened on its own thread at its first checkpoint, so
    /// a short `fuse run` (done before then) never pays for it.
    fn start(path: &Path) -> Result<Checkpointer> {
        let path = path.to_path_buf();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fuse-checkpoint".into())
            .spawn(move || {
                let mut store = None;
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if store.is_none() {
                        match Store::open_reader(&path) {
                            Ok(opened) => store = Some(opened),
                            Err(e) => {
                                tracing::warn!("the log is checkpointed by the writer only: {e}");
                                return;
                            }
                        }
                    }
                    if let Some(store) = &store
                        && let Err(e) = store
                            .conn()
                            .execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
                    {
                        tracing::warn!("checkpointing the write-ahead log failed: {e}");
                    }
                }
            })
            .map_err(|e| crate::Error::io("start the checkpointer", "thread", e))?;
        Ok(Checkpointer { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}

impl Observer for Recorder {
    fn on_event(&self, event: &Event) {
        // History keeps nothing of a node's start, nor of the end of a node
        // that ran (its attempts have the rows): two of a node's three
        // events never reach the writer's queue.
        if matches!(
            event,
            Event::NodeStarted { .. } | Event::NodeFinished { attempts: 1.., .. }
        ) {
            return;
        }
        if let Event::NodeAttempt(a) = event {
            let output = a.output.as_ref().map(|o| o.to_string());
            self.send(Op::Attempt(Box::new(Attempt {
                node: NodeAttempt::clone(a),
                output,
            })));
            return;
        }
        self.send(Op::Event(Box::new(event.clone())));
    }
}

/// Retention settings of a run in progress.
struct RunMeta {
    workflow: String,
    top_level: bool,
    keep_runs: u64,
    keep_days: u64,
}

struct Writer {
    conn: Connection,
    blobs_dir: PathBuf,
    history: HistoryConfig,
    runs: HashMap<String, RunMeta>,
    /// Definition hashes known to be stored (each run names one).
    definitions: std::collections::HashSet<String>,
    failures: Arc<Mutex<Failures>>,
    /// Workflows with finished runs to apply retention to: (keep_runs, keep_days).
    pending: HashMap<String, (u64, u64)>,
    next_retention: std::time::Instant,
    /// When the writer last had something to write.
    last_write: std::time::Instant,
    /// Retention freed pages the file has not given back yet.
    shrink: bool,
    mode: Mode,
    /// One-shot: the write-ahead log to sync at each flush.
    log: Option<Log>,
    progress: Arc<Progress>,
}

/// The write-ahead log a one-shot writer syncs.
struct Log {
    path: PathBuf,
    /// Its index (`fuse.db-shm`).
    index: PathBuf,
    /// Created by this process: its folder entry needs a sync too.
    created: bool,
}

impl Writer {
    fn run(mut self, rx: Receiver<Op>) {
        if self.mode == Mode::OneShot {
            self.copy_log_early();
        }
        loop {
            let wake = if !self.pending.is_empty() {
                Some(self.next_retention)
            } else if self.shrink {
                Some(self.last_write + IDLE)
            } else {
                None
            };
            let first = match wake {
                None => match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                },
                Some(at) => {
                    match rx.recv_timeout(at.saturating_duration_since(std::time::Instant::now())) {
                        Ok(op) => op,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if self.pending.is_empty() {
                                self.shrink_step();
                            } else {
                                self.retention(false);
                            }
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            self.last_write = std::time::Instant::now();
            let batch = self.gather(first, &rx);
            let ops = batch
                .iter()
                .filter(|op| !matches!(op, Op::Flush(_)))
                .count() as u64;
            let mut acks = Vec::new();
            let mut exec_acks = Vec::new();
            let mut finished = Vec::new();
            let items: Vec<Item> = batch
                .into_iter()
                .filter_map(|op| match op {
                    Op::Event(e) => Some(Item::Event(e)),
                    Op::Attempt(a) => Some(Item::Attempt(a)),
                    Op::Write { item, ack } => {
                        exec_acks.push(ack);
                        Some(item)
                    }
                    Op::Flush(ack) => {
                        acks.push(ack);
                        None
                    }
                })
                .collect();
            self.commit(items, exec_acks, &mut finished);
            self.progress
                .handled
                .fetch_add(ops, std::sync::atomic::Ordering::Relaxed);
            if ops > 0 {
                self.progress
                    .batches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.progress
                    .last_batch
                    .store(ops, std::sync::atomic::Ordering::Relaxed);
            }
            for run_id in finished {
                if let Some(meta) = self.runs.remove(&run_id)
                    && meta.top_level
                    && (meta.keep_runs > 0 || meta.keep_days > 0)
                {
                    self.pending
                        .insert(meta.workflow, (meta.keep_runs, meta.keep_days));
                }
            }
            if !acks.is_empty() {
                // A flush leaves nothing pending, and in one-shot mode on disk.
                self.retention(true);
                self.sync_log();
                for ack in acks {
                    let _ = ack.send(());
                }
            } else if std::time::Instant::now() >= self.next_retention {
                self.retention(false);
            }
        }
        self.retention(true);
        if self.mode == Mode::Daemon {
            let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        }
    }

    /// A batch: `first` and what is queued behind it. One-shot, a small
    /// batch nobody waits for waits up to [`GATHER`] for more: each commit
    /// writes the pages it changed to the log again (the last page of the
    /// table and of its index, the page map, the header), so a run committed
    /// in batches of about 60 rows wrote its 450 pages of history as 1,100.
    fn gather(&self, first: Op, rx: &Receiver<Op>) -> Vec<Op> {
        let awaited = |op: &Op| matches!(op, Op::Write { .. } | Op::Flush(_));
        let mut waits = awaited(&first);
        let mut batch = vec![first];
        let until = std::time::Instant::now() + GATHER;
        while batch.len() < MAX_BATCH {
            let next = match rx.try_recv() {
                Ok(op) => Some(op),
                Err(_) if self.mode == Mode::OneShot && !waits && batch.len() < GATHERED => rx
                    .recv_timeout(until.saturating_duration_since(std::time::Instant::now()))
                    .ok(),
                Err(_) => None,
            };
            let Some(op) = next else { break };
            waits |= awaited(&op);
            batch.push(op);
        }
        batch
    }

    /// One-shot, before the run's first write (while the workflow is being
    /// read on the main thread): copies a log that earlier runs filled past
    /// [`EARLY_CHECKPOINT`] frames into the database, so the copy SQLite
    /// makes when a commit passes twice that seldom falls in this run, and
    /// the run's writes start the log over. A passive checkpoint: it never
    /// waits for another process's reader (nor blocks one).
    fn copy_log_early(&mut self) {
        let Some(log) = &self.log else { return };
        if frames_to_copy(&log.index).is_some_and(|n| n >= EARLY_CHECKPOINT)
            && let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
        {
            tracing::debug!("the write-ahead log is copied later: {e}");
        }
    }

    /// One-shot: puts everything committed so far on disk with one sync of
    /// the write-ahead log (its file, on a descriptor of our own: SQLite's
    /// commits under `synchronous = NORMAL` do not sync), plus one of the
    /// folder if this process created the log.
    fn sync_log(&mut self) {
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let synced = std::fs::File::open(&log.path).and_then(|f| f.sync_data());
        let synced = match (synced, log.created) {
            (Ok(()), true) => log.path.parent().map_or(Ok(()), |dir| {
                std::fs::File::open(dir).and_then(|d| d.sync_all())
            }),
            (result, _) => result,
        };
        match synced {
            Ok(()) => log.created = false,
            // Not found: there is no log (it was checkpointed away), so
            // every commit is in the database file, synced by that checkpoint.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "syncing {} failed ({e}): a power loss could lose this run's record",
                log.path.display()
            ),
        }
    }

    /// Writes a batch: whole, retried on errors that may pass (a full disk, an
    /// I/O error, a lock), then run by run so that what can be written is.
    fn commit(
        &mut self,
        items: Vec<Item>,
        exec_acks: Vec<tokio::sync::oneshot::Sender<Committed>>,
        finished: &mut Vec<String>,
    ) {
        let mut result = self.write_batch(&items, finished);
        for delay in RETRY_DELAYS {
            match &result {
                Err(e) if may_pass(e) => {
                    std::thread::sleep(delay);
                    finished.clear();
                    result = self.write_batch(&items, finished);
                }
                _ => break,
            }
        }
        let error = match result {
            Ok(()) => {
                for ack in exec_acks {
                    let _ = ack.send(Ok(()));
                }
                return;
            }
            Err(e) => crate::store::explain(&e),
        };
        finished.clear();
        // One transaction per run (and per statement): a run whose events
        // cannot be written does not take the others down with it.
        let mut groups: Vec<(Option<String>, Vec<Item>)> = Vec::new();
        let mut acks = exec_acks.into_iter();
        let mut statements = Vec::new();
        for item in items {
            match item.run_id().map(str::to_string) {
                None => {
                    statements.push(acks.next());
                    groups.push((None, vec![item]));
                }
                Some(id) => match groups.iter_mut().find(|(g, _)| g.as_deref() == Some(&id)) {
                    Some((_, group)) => group.push(item),
                    None => groups.push((Some(id), vec![item])),
                },
            }
        }
        tracing::warn!("a history batch failed ({error}); writing it run by run");
        let mut statements = statements.into_iter();
        for (run_id, group) in groups {
            let mut done = Vec::new();
            let outcome = self
                .write_batch(&group, &mut done)
                .map_err(|e| crate::store::explain(&e));
            match (&run_id, &outcome) {
                (_, Ok(())) => finished.extend(done),
                (Some(id), Err(e)) => {
                    tracing::error!(
                        run_id = %id,
                        "the history of run {id} could not be written: {e}; its record is incomplete"
                    );
                    if let Ok(mut f) = self.failures.lock() {
                        f.add(id, e);
                    }
                }
                // A statement's caller hears the error through its ack.
                (None, Err(_)) => {}
            }
            if run_id.is_none()
                && let Some(Some(ack)) = statements.next()
            {
                let _ = ack.send(outcome);
            }
        }
    }

    fn write_batch(&mut self, items: &[Item], finished: &mut Vec<String>) -> rusqlite::Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut new_definitions = Vec::new();
        self.write_items(items, finished, &mut new_definitions)?;
        // Known only once committed (a failed batch is written again).
        self.definitions.extend(new_definitions);
        Ok(())
    }

    fn write_items(
        &mut self,
        items: &[Item],
        finished: &mut Vec<String>,
        new_definitions: &mut Vec<String>,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        // The last node output written in this transaction: (run, value, text).
        let mut last_output: Option<(&str, &Arc<Value>, Cow<'_, str>)> = None;
        // Node rows not inserted yet: in order, before anything else.
        let mut nodes: Vec<NodeRow<'_>> = Vec::with_capacity(NODE_ROWS);
        let threshold = self.history.blob_threshold;
        for item in items {
            if !nodes.is_empty() && !matches!(item, Item::Attempt(_)) {
                insert_nodes(&tx, &mut nodes)?;
            }
            let event = match item {
                Item::Exec(sql, params) => {
                    tx.prepare_cached(sql)?
                        .execute(rusqlite::params_from_iter(params.iter()))?;
                    continue;
                }
                Item::Accept(a) => {
                    tx.prepare_cached(
                        "INSERT INTO executions (id, workflow_name, status, trigger_kind, input, retry_of, created_at)
                         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        a.id,
                        a.workflow,
                        a.trigger,
                        inline(&a.input, threshold),
                        a.retry_of,
                        crate::engine::events::now_ms()
                    ])?;
                    input_blob(&tx, &self.blobs_dir, threshold, &a.id, &a.input)?;
                    continue;
                }
                Item::Started(s) => {
                    define(
                        &tx,
                        &self.definitions,
                        new_definitions,
                        &s.hash,
                        &s.definition,
                    )?;
                    tx.prepare_cached(
                        "UPDATE executions SET status = 'running', started_at = ?2,
                             workflow_hash = ?3, source_path = ?4
                         WHERE id = ?1 AND status = 'queued'",
                    )?
                    .execute(params![
                        s.id,
                        crate::engine::events::now_ms(),
                        s.hash,
                        s.source_path
                    ])?;
                    continue;
                }
                Item::Attempt(at) => {
                    let a = &at.node;
                    // A node's input is often the output written just before
                    // (the same value, shared): its text is reused.
                    let input = match last_output.take() {
                        Some((run, value, text))
                            if Arc::ptr_eq(value, &a.input) && run == &*a.run_id =>
                        {
                            text
                        }
                        _ => Cow::Owned(payload(
                            &tx,
                            &self.blobs_dir,
                            threshold,
                            &a.run_id,
                            &a.input,
                        )?),
                    };
                    let output = match &at.output {
                        Some(text) => {
                            Some(stored(&tx, &self.blobs_dir, threshold, &a.run_id, text)?)
                        }
                        None => None,
                    };
                    if let (Some(value), Some(text)) = (&a.output, &output) {
                        last_output = Some((&a.run_id, value, text.clone()));
                    }
                    nodes.push(NodeRow {
                        attempt: a,
                        item: a.item.map(|i| i as i64),
                        status: a.status.as_str(),
                        input,
                        output,
                        error: a.error.as_ref().map(Value::to_string),
                        duration_ms: a.finished_ms - a.started_ms,
                    });
                    if nodes.len() == NODE_ROWS {
                        insert_nodes(&tx, &mut nodes)?;
                    }
                    continue;
                }
                Item::Event(e) => e,
            };
            match event.as_ref() {
                Event::RunStarted {
                    run_id,
                    workflow,
                    workflow_hash,
                    definition,
                    source_path,
                    parent_id,
                    retry_of,
                    trigger_kind,
                    input,
                    recorded,
                    keep_runs,
                    keep_days,
                    at_ms,
                    ..
                } => {
                    // A run recorded before it started (the daemon's) has its
                    // row already: accepted, then started.
                    if !recorded {
                        define(
                            &tx,
                            &self.definitions,
                            new_definitions,
                            workflow_hash,
                            definition,
                        )?;
                        let text = input.to_string();
                        tx.prepare_cached("INSERT INTO executions (id, workflow_name, workflow_hash, source_path, status, trigger_kind,
                                 input, parent_id, retry_of, created_at, started_at)
                             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8, ?9, ?9)")?
                            .execute(params![run_id, workflow, workflow_hash, source_path, trigger_kind,
                                inline(&text, threshold), parent_id, retry_of, at_ms])?;
                        input_blob(&tx, &self.blobs_dir, threshold, run_id, &text)?;
                    }
                    self.runs.insert(
                        run_id.clone(),
                        RunMeta {
                            workflow: workflow.clone(),
                            top_level: parent_id.is_none(),
                            keep_runs: keep_runs.unwrap_or(self.history.keep_runs),
                            keep_days: keep_days.unwrap_or(self.history.keep_days),
                        },
                    );
                }
                Event::NodeStep(step) => {
                    let input =
                        payload(&tx, &self.blobs_dir, threshold, &step.run_id, &step.input)?;
                    let output = match &step.output {
                        Some(o) => Some(payload(&tx, &self.blobs_dir, threshold, &step.run_id, o)?),
                        None => None,
                    };
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO node_steps (execution_id, node_id, seq, kind, name, status,
                             input, output, error, started_at, duration_ms, tokens)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    )?
                    .execute(params![
                        step.run_id,
                        step.node_id,
                        step.seq,
                        step.kind.as_str(),
                        step.name,
                        if step.error.is_some() { "failed" } else { "succeeded" },
                        input,
                        output,
                        step.error.as_ref().map(Value::to_string),
                        step.started_ms,
                        step.duration_ms as i64,
                        step.tokens.map(|t| t as i64),
                    ])?;
                }
                Event::NodeFinished {
                    run_id,
                    node_id,
                    node_type,
                    status,
                    attempts: 0,
                    ..
                } if matches!(status, Status::Skipped | Status::Cancelled) => {
                    tx.prepare_cached(
                        "INSERT INTO node_runs (execution_id, node_id, node_type, attempt, status)
                         VALUES (?1, ?2, ?3, 0, ?4)",
                    )?
                    .execute(params![
                        run_id,
                        node_id,
                        node_type,
                        status.as_str()
                    ])?;
                }
                Event::Log {
                    run_id,
                    node_id,
                    level,
                    message,
                } => {
                    tx.prepare_cached("INSERT INTO logs (execution_id, node_id, level, message, ts) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![run_id, node_id, level.as_str(), message, crate::engine::events::now_ms()])?;
                }
                Event::RunFinished {
                    run_id,
                    status,
                    output,
                    error,
                    usage,
                    at_ms,
                    duration_ms,
                } => {
                    let output = payload(&tx, &self.blobs_dir, threshold, run_id, output)?;
                    tx.prepare_cached("UPDATE executions SET status = ?2, output = ?3, error = ?4, finished_at = ?5,
                             duration_ms = ?6, usage = ?7
                         WHERE id = ?1")?.execute(params![
                            run_id,
                            status.as_str(),
                            output,
                            error,
                            at_ms,
                            *duration_ms as i64,
                            usage.as_ref().map(Value::to_string)
                        ])?;
                    finished.push(run_id.clone());
                }
                // Not sent to the writer (see `on_event`), or sent as an
                // `Attempt`.
                Event::NodeStarted { .. } | Event::NodeFinished { .. } | Event::NodeAttempt(_) => {}
            }
        }
        insert_nodes(&tx, &mut nodes)?;
        tx.commit()
    }

    /// Applies keep_runs / keep_days to the workflows with finished runs: one
    /// batch each (or, with `all`, until nothing is left), then frees blobs
    /// and gives space back once enough is free.
    fn retention(&mut self, all: bool) {
        let mut deleted = 0;
        let mut behind = false;
        for (workflow, (keep_runs, keep_days)) in std::mem::take(&mut self.pending) {
            loop {
                match self.prune_workflow(&workflow, keep_runs, keep_days) {
                    Ok(n) => {
                        deleted += n;
                        if n < RETENTION_BATCH as usize {
                            break;
                        }
                        if !all {
                            behind = true;
                            self.pending
                                .insert(workflow.clone(), (keep_runs, keep_days));
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::error!("pruning the run history of {workflow} failed: {e}");
                        break;
                    }
                }
            }
        }
        self.next_retention = std::time::Instant::now()
            + if behind {
                RETENTION_BEHIND
            } else {
                RETENTION_EVERY
            };
        if deleted == 0 {
            return;
        }
        let result = if all {
            self.shrink = false;
            reclaim(&self.conn, &self.blobs_dir)
        } else {
            self.shrink = true;
            free_blobs(&self.conn, &self.blobs_dir)
        };
        if let Err(e) = result {
            tracing::error!("giving back the space of pruned runs failed: {e}");
        }
    }

    /// One step of giving free pages back to the file (the writer is idle);
    /// the WAL is truncated after the last.
    fn shrink_step(&mut self) {
        let stepped = self
            .conn
            .prepare(&format!("PRAGMA incremental_vacuum({VACUUM_STEP})"))
            .and_then(|mut stmt| {
                let mut rows = stmt.query([])?;
                let mut n = 0u64;
                while rows.next()?.is_some() {
                    n += 1;
                }
                Ok(n)
            });
        match stepped {
            Ok(n) if n >= u64::from(VACUUM_STEP) => {}
            Ok(_) => {
                self.shrink = false;
                if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                    tracing::warn!("truncating the write-ahead log failed: {e}");
                }
            }
            Err(e) => {
                self.shrink = false;
                tracing::error!("giving free pages back to the file failed: {e}");
            }
        }
    }

    /// Deletes up to [`RETENTION_BATCH`] finished top-level runs of `workflow`
    /// beyond the newest `keep_runs` or older than `keep_days`.
    fn prune_workflow(
        &self,
        workflow: &str,
        keep_runs: u64,
        keep_days: u64,
    ) -> rusqlite::Result<usize> {
        let mut deleted = 0;
        if keep_runs > 0 {
            // The oldest run kept: everything older goes.
            let cutoff: Option<(i64, String)> = self
                .conn
                .prepare_cached(
                    "SELECT created_at, id FROM executions
                     WHERE workflow_name = ?1 AND parent_id IS NULL
                     ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?2",
                )?
                .query_row(params![workflow, keep_runs as i64 - 1], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            if let Some((at, id)) = cutoff {
                deleted += self
                    .conn
                    .prepare_cached(
                        "DELETE FROM executions WHERE id IN (
                           SELECT id FROM executions
                           WHERE workflow_name = ?1 AND parent_id IS NULL
                             AND status NOT IN ('running', 'queued')
                             AND (created_at < ?2 OR (created_at = ?2 AND id < ?3))
                           ORDER BY created_at LIMIT ?4)",
                    )?
                    .execute(params![workflow, at, id, RETENTION_BATCH])?;
            }
        }
        if keep_days > 0 && deleted < RETENTION_BATCH as usize {
            let cutoff = crate::engine::events::now_ms() - (keep_days as i64) * 86_400_000;
            deleted += self
                .conn
                .prepare_cached(
                    "DELETE FROM executions WHERE id IN (
                       SELECT id FROM executions
                       WHERE workflow_name = ?1 AND parent_id IS NULL AND created_at < ?2
                         AND status NOT IN ('running', 'queued')
                       ORDER BY created_at LIMIT ?3)",
                )?
                .execute(params![workflow, cutoff, RETENTION_BATCH])?;
        }
        Ok(deleted)
    }
}

/// Removes blobs no run refers to any more (files and rows).
fn free_blobs(conn: &Connection, blobs_dir: &Path) -> rusqlite::Result<()> {
    let orphans: Vec<String> = conn
        .prepare_cached("SELECT hash FROM blobs WHERE NOT EXISTS (SELECT 1 FROM blob_refs r WHERE r.hash = blobs.hash)")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for hash in &orphans {
        let path = blob_path(blobs_dir, hash);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove the blob {}: {e}", path.display());
        }
        conn.execute("DELETE FROM blobs WHERE hash = ?1", [hash])?;
    }
    Ok(())
}

/// Frees blobs no run refers to any more and gives free pages back to the file.
pub fn reclaim(conn: &Connection, blobs_dir: &Path) -> rusqlite::Result<()> {
    free_blobs(conn, blobs_dir)?;
    vacuum_free_pages(conn)?;
    Ok(())
}

/// Pages freed per `incremental_vacuum` step: the writer gets the database
/// back between steps.
const VACUUM_STEP: u32 = 512;

/// Gives every free page back to the file system, in steps of
/// [`VACUUM_STEP`] pages. `PRAGMA incremental_vacuum` frees one page per
/// step of its statement, so each statement is stepped to its end (run
/// through `execute_batch`, it freed a single page). Returns the pages freed.
pub fn vacuum_free_pages(conn: &Connection) -> rusqlite::Result<u64> {
    let mut freed = 0;
    loop {
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        if free <= 0 {
            return Ok(freed);
        }
        let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({VACUUM_STEP})"))?;
        let mut rows = stmt.query([])?;
        let mut stepped = 0u64;
        while rows.next()?.is_some() {
            stepped += 1;
        }
        if stepped == 0 {
            // Nothing could be freed (auto_vacuum is off in an old database).
            return Ok(freed);
        }
        freed += stepped;
    }
}

/// Errors that may pass on their own: a full disk, an I/O error, a lock.
fn may_pass(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | DatabaseBusy | DatabaseLocked | CannotOpen)
    )
}

/// Where a blob lives: `blobs/<first two hex>/<hash>`.
pub fn blob_path(blobs_dir: &Path, hash: &str) -> PathBuf {
    blobs_dir.join(&hash[..2.min(hash.len())]).join(hash)
}

/// Writes a workflow definition the writer has not stored yet (`known`: the
/// hashes stored; `new` collects the ones written, known once committed).
fn define(
    conn: &Connection,
    known: &std::collections::HashSet<String>,
    new: &mut Vec<String>,
    hash: &str,
    definition: &Definition,
) -> rusqlite::Result<()> {
    if known.contains(hash) {
        return Ok(());
    }
    // Asked first: SQLite would copy the whole text (twice) to find out
    // that an `INSERT OR IGNORE` had nothing to do, and a workflow is
    // mostly run again as it was (10 MB for a 100,000-node one).
    let stored: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM definitions WHERE hash = ?1)")?
        .query_row([hash], |r| r.get(0))?;
    match definition {
        _ if stored => {}
        Definition::Text(text) if text.len() <= STREAMED_DEFINITION => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO definitions (hash, definition) VALUES (?1, ?2)",
            )?
            .execute(params![hash, text.as_str()])?;
        }
        _ => {
            // Bound as a value, SQLite would copy the text twice (the binding
            // and the row it builds): room made for it, then written into
            // the row's pages directly, piece by piece from a file.
            let made = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO definitions (hash, definition) VALUES (?1, zeroblob(?2))",
                )?
                .execute(params![hash, definition.len() as i64])?;
            if made == 1 {
                let mut blob = conn.blob_open(
                    rusqlite::MAIN_DB,
                    "definitions",
                    "definition",
                    conn.last_insert_rowid(),
                    false,
                )?;
                definition
                    .copy(|piece, at| blob.write_at(piece, at).map_err(|e| e.to_string()))
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
            }
        }
    }
    new.push(hash.to_string());
    Ok(())
}

/// Definitions longer than this are written into their row in place
/// ([`define`]); a 100,000-node workflow is about 12 MB.
const STREAMED_DEFINITION: usize = 64 * 1024;

/// Rows of `node_runs` one statement inserts: one statement per 32 attempts
/// instead of one per attempt (each statement opens, positions and closes
/// its cursors on the table and its index).
const NODE_ROWS: usize = 32;

const NODE_COLUMNS: &str = "INSERT INTO node_runs (execution_id, node_id, node_type, attempt,
    item_index, status, input, output, error, started_at, finished_at, duration_ms) VALUES ";
const NODE_VALUES: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// A node attempt's row, ready to insert.
struct NodeRow<'a> {
    attempt: &'a NodeAttempt,
    item: Option<i64>,
    status: &'static str,
    input: Cow<'a, str>,
    output: Option<Cow<'a, str>>,
    error: Option<String>,
    duration_ms: i64,
}

/// Inserts `rows` (in order) and empties it: full chunks of [`NODE_ROWS`]
/// by one statement each, the rest one by one.
fn insert_nodes(conn: &Connection, rows: &mut Vec<NodeRow<'_>>) -> rusqlite::Result<()> {
    static MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{NODE_COLUMNS}{}", vec![NODE_VALUES; NODE_ROWS].join(", "))
    });
    static ONE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{NODE_COLUMNS}{NODE_VALUES}"));
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(12 * NODE_ROWS);
    let mut chunks = rows.chunks_exact(NODE_ROWS);
    for chunk in &mut chunks {
        values.clear();
        chunk.iter().for_each(|row| row.bind(&mut values));
        conn.prepare_cached(&MANY)?.execute(&*values)?;
    }
    for row in chunks.remainder() {
        values.clear();
        row.bind(&mut values);
        conn.prepare_cached(&ONE)?.execute(&*values)?;
    }
    rows.clear();
    Ok(())
}

impl NodeRow<'_> {
    /// Its 12 values, in the order of [`NODE_COLUMNS`].
    fn bind<'v>(&'v self, values: &mut Vec<&'v dyn rusqlite::ToSql>) {
        let a = self.attempt;
        values.extend_from_slice(&[
            &a.run_id,
            &a.node_id,
            &a.node_type,
            &a.attempt,
            &self.item,
            &self.status,
            &self.input,
            &self.output,
            &self.error,
            &a.started_ms,
            &a.finished_ms,
            &self.duration_ms,
        ]);
    }
}

/// Frames in the write-ahead log (4 KiB pages) from which a one-shot writer
/// copies the log into the database before its run writes (about 4 MB of
/// history: a 10,000-node chain writes about 570 frames, so every other
/// such run copies, and no run's commits make SQLite copy it mid-run unless
/// the run itself writes over 1,000).
const EARLY_CHECKPOINT: u32 = 1000;

/// Frames of a write-ahead log not yet copied into its database, from the
/// wal-index header at the start of `shm` (`fuse.db-shm`), as SQLite's file
/// format documents it (walformat.html): `iVersion` (3007000) at byte 0,
/// `isInit` at 12, `mxFrame` (the log's last frame) at 16 and `nBackfill`
/// (frames copied) at 96, in the machine's byte order. `None` when there is
/// no such index or it is not one this reads.
fn frames_to_copy(shm: &Path) -> Option<u32> {
    use std::io::Read;
    let mut head = [0u8; 100];
    std::fs::File::open(shm).ok()?.read_exact(&mut head).ok()?;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(head.get(at..at + 4)?.try_into().ok()?))
    };
    if word(0)? != 3_007_000 || head[12] != 1 {
        return None;
    }
    word(16)?.checked_sub(word(96)?)
}

/// A run's input for its new row: the text when small (one statement), else
/// NULL and [`input_blob`] after the insert (a blob's reference needs the row).
fn inline(text: &str, threshold: u64) -> Option<&str> {
    ((text.len() as u64) <= threshold).then_some(text)
}

/// The large input of a row just inserted: written as a blob, referenced.
fn input_blob(
    conn: &Connection,
    blobs_dir: &Path,
    threshold: u64,
    run_id: &str,
    text: &str,
) -> rusqlite::Result<()> {
    if inline(text, threshold).is_none() {
        let stored = blob(conn, blobs_dir, run_id, text)?;
        conn.prepare_cached("UPDATE executions SET input = ?2 WHERE id = ?1")?
            .execute(params![run_id, stored])?;
    }
    Ok(())
}

/// The stored text of a payload: inline JSON, or a `{"$blob": …}` reference.
fn payload(
    conn: &Connection,
    blobs_dir: &Path,
    threshold: u64,
    run_id: &str,
    value: &Value,
) -> rusqlite::Result<String> {
    // As `stored`, keeping the text it made when it is the row's.
    let text = value.to_string();
    match inline(&text, threshold) {
        Some(_) => Ok(text),
        None => blob(conn, blobs_dir, run_id, &text),
    }
}

/// What a row keeps of a payload's JSON text: the text, or a blob reference.
fn stored<'t>(
    conn: &Connection,
    blobs_dir: &Path,
    threshold: u64,
    run_id: &str,
    text: &'t str,
) -> rusqlite::Result<Cow<'t, str>> {
    match inline(text, threshold) {
        Some(text) => Ok(Cow::Borrowed(text)),
        None => blob(conn, blobs_dir, run_id, text).map(Cow::Owned),
    }
}

/// Writes `text` to `blobs/<hash>` once and returns the reference the row
/// keeps (the text itself if the blob cannot be written).
fn blob(conn: &Connection, blobs_dir: &Path, run_id: &str, text: &str) -> rusqlite::Result<String> {
    let hash = crate::digest::sha256_hex(text);
    let path = blob_path(blobs_dir, &hash);
    if !path.exists() {
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                crate::home::write_atomic(&path, text.as_bytes(), None)
                    .map_err(std::io::Error::other)
            });
        if let Err(e) = written {
            tracing::error!(
                "cannot write blob {}: {e}; storing the payload inline",
                path.display()
            );
            return Ok(text.to_string());
        }
    }
    conn.execute(
        "INSERT OR IGNORE INTO blobs (hash, size, created_at) VALUES (?1, ?2, ?3)",
        params![hash, text.len() as i64, crate::engine::events::now_ms()],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO blob_refs (hash, execution_id) VALUES (?1, ?2)",
        params![hash, run_id],
    )?;
    Ok(serde_json::json!({"$blob": hash, "size": text.len()}).to_string())
}

/// Reads a stored payload back, following a blob reference.
pub fn load_payload(blobs_dir: &Path, text: &str) -> Value {
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
    match value.get("$blob").and_then(Value::as_str) {
        Some(hash) if value.as_object().is_some_and(|o| o.len() == 2) => {
            std::fs::read_to_string(blob_path(blobs_dir, hash))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_else(|| serde_json::json!({"$missing_blob": hash}))
        }
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    /// A migrated database at `dir/fuse.db` whose write-ahead log holds
    /// `rows` pages of a filler table not copied into it yet, and the
    /// connection that wrote them (open, so that the log stays).
    fn with_log(dir: &Path, rows: usize) -> Result<(PathBuf, Connection)> {
        let path = dir.join("fuse.db");
        let conn = Store::open(&path)?.into_connection();
        conn.execute_batch(
            "PRAGMA wal_autocheckpoint = 0;
             PRAGMA wal_checkpoint(TRUNCATE);
             CREATE TABLE filler (page BLOB);",
        )?;
        let tx = conn.unchecked_transaction()?;
        for _ in 0..rows {
            tx.execute("INSERT INTO filler VALUES (zeroblob(3900))", [])?;
        }
        tx.commit()?;
        Ok((path, conn))
    }

    fn one_shot(path: &Path, dir: &Path) -> Result<Recorder> {
        Ok(Recorder::start(
            Store::open(path)?,
            dir.join("blobs"),
            HistoryConfig::default(),
            Mode::OneShot,
        )?)
    }

    #[test]
    fn a_one_shot_writer_copies_a_full_log_before_its_run_writes() -> Result {
        let dir = tempfile::tempdir()?;
        let full = EARLY_CHECKPOINT as usize + 50;
        let (path, conn) = with_log(dir.path(), full)?;
        let index = crate::store::log_index_path(&path);
        let pending = frames_to_copy(&index);
        assert!(
            pending.is_some_and(|n| n as usize >= full),
            "the filler is in the log, not copied: {pending:?}"
        );
        let recorder = one_shot(&path, dir.path())?;
        recorder.flush();
        assert_eq!(frames_to_copy(&index), Some(0), "copied at the start");
        recorder.close();
        let rows: i64 = conn.query_row("SELECT count(*) FROM filler", [], |r| r.get(0))?;
        assert_eq!(rows, full as i64);
        // Read from the database file alone (not its log): the copy is in it.
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy)?;
        let alone = Connection::open(&copy)?;
        let rows: i64 = alone.query_row("SELECT count(*) FROM filler", [], |r| r.get(0))?;
        assert_eq!(rows, full as i64);
        Ok(())
    }

    #[test]
    fn a_one_shot_writer_leaves_a_short_log_to_grow() -> Result {
        let dir = tempfile::tempdir()?;
        let (path, _conn) = with_log(dir.path(), 40)?;
        let index = crate::store::log_index_path(&path);
        let pending = frames_to_copy(&index).unwrap_or_default();
        assert!(
            (40..EARLY_CHECKPOINT).contains(&pending),
            "a short log: {pending}"
        );
        let recorder = one_shot(&path, dir.path())?;
        recorder.flush();
        assert_eq!(
            frames_to_copy(&index),
            Some(pending),
            "no copy (and no disk syncs) for a short log"
        );
        recorder.close();
        Ok(())
    }

    #[test]
    fn an_index_that_is_not_a_wal_index_is_not_read() -> Result {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("fuse.db-shm");
        assert_eq!(frames_to_copy(&file), None, "no file");
        std::fs::write(&file, [0u8; 40])?;
        assert_eq!(frames_to_copy(&file), None, "too short");
        std::fs::write(&file, [7u8; 200])?;
        assert_eq!(frames_to_copy(&file), None, "not SQLite's");
        Ok(())
    }
}
