//! `fuse worker`: runs queued runs from PostgreSQL ([`crate::store::pg`]),
//! many workers on many machines, each run by exactly one of them at a time.
//! A worker claims what it has room for (and has the node types of), renews
//! its leases by heartbeat, checkpoints each node that succeeds, and records
//! how the run ended. A run whose worker dies is claimed again once its lease
//! runs out and resumed from its checkpoints. The events of its runs go to
//! the daemons' WebSocket clients through `NOTIFY fuse_events`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, Event, Observer, RunRequest, Status};
use crate::nodes::Registry;
use crate::store::pg::{Claimed, Pg, WorkerInfo};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: usize,
    pub tags: Vec<String>,
    /// How long a claim holds without a heartbeat (heartbeats come every third of it).
    pub lease: Duration,
    /// How often an idle worker looks for runs when no notification comes.
    pub poll: Duration,
    pub max_parallel: usize,
}

/// Runs in progress on this worker, by id, with what cancels them.
type Running = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// The node types of a workflow definition (what a worker must have to run it).
pub fn needs_of(definition: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(definition) else {
        return Vec::new();
    };
    let mut types: Vec<String> = value
        .get("nodes")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| n.get("type").and_then(serde_json::Value::as_str))
        .map(|t| crate::workflow::canonical_type(t).to_string())
        .collect();
    types.sort();
    types.dedup();
    types
}

/// The node types of a planned workflow (no parse: what the daemon and
/// `fuse run --queue` queue with each run).
pub fn needs_of_plan(plan: &crate::Plan) -> Vec<String> {
    let mut types: Vec<String> = plan
        .iter_nodes()
        .map(|n| crate::workflow::canonical_type(n.type_name()).to_string())
        .collect();
    types.sort();
    types.dedup();
    types
}

/// This machine's name, for `fuse status`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Writes a checkpoint for each node that finishes (its output, or the error
/// the run went on from), before the run goes on.
struct Checkpoints {
    writer: std::sync::Mutex<std::sync::mpsc::Sender<Checkpoint>>,
    running: Running,
}

/// One checkpoint to write, and where to say whether it was written.
struct Checkpoint {
    run: String,
    node: String,
    /// One item of a `foreach` node.
    item: Option<i32>,
    output: serde_json::Value,
    error: Option<serde_json::Value>,
    done: std::sync::mpsc::Sender<Result<bool, String>>,
}

/// A thread with its own runtime and connections that writes checkpoints.
/// The engine's observer waits for each write without giving up its thread
/// (`block_in_place` would turn it into a pool thread that may exit, and a
/// command it started is killed when the thread that started it exits).
fn checkpoint_writer(
    url: String,
    worker: String,
) -> anyhow::Result<std::sync::mpsc::Sender<Checkpoint>> {
    let (tx, rx) = std::sync::mpsc::channel::<Checkpoint>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("fuse-checkpoints".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start its runtime: {e}")));
                    return;
                }
            };
            let pg = match runtime.block_on(Pg::connect(&url)) {
                Ok(pg) => pg,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            for job in rx {
                let written = match job.item {
                    Some(item) => runtime.block_on(pg.item_finished(
                        &worker,
                        &job.run,
                        &job.node,
                        item,
                        &job.output,
                    )),
                    None => runtime.block_on(pg.node_finished(
                        &worker,
                        &job.run,
                        &job.node,
                        &job.output,
                        job.error.as_ref(),
                    )),
                }
                .map_err(|e| e.to_string());
                let _ = job.done.send(written);
            }
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(tx),
        Ok(Err(e)) => anyhow::bail!("the checkpoint writer cannot start: {e}"),
        Err(_) => anyhow::bail!("the checkpoint writer stopped while starting"),
    }
}

impl Observer for Checkpoints {
    fn on_event(&self, event: &Event) {
        let (run, node, item, output, error) = match event {
            // Each finished item of a `foreach` node, so a resumed run does
            // not run it again (the node as a whole is checkpointed below).
            Event::NodeAttempt(a)
                if a.status == Status::Succeeded
                    && a.attempt > 0
                    && !crate::nodes::is_pure(&a.node_type) =>
            {
                let (Some(item), Some(output)) = (a.item, &a.output) else {
                    return;
                };
                (
                    a.run_id.to_string(),
                    a.node_id.to_string(),
                    Some(item as i32),
                    (**output).clone(),
                    None,
                )
            }
            // Attempts 0: reused from a checkpoint, or skipped without
            // running. A pure node (a transform, a branch) gives the same
            // again when resumed.
            Event::NodeFinished {
                run_id,
                node_id,
                node_type,
                status,
                attempts,
                output,
                error_value,
                ..
            } if *attempts > 0 && !crate::nodes::is_pure(node_type) => {
                let (output, error) = match (status, output, error_value) {
                    (Status::Succeeded, Some(output), _) => ((**output).clone(), None),
                    // Failed in a way the run may go on from (an error path,
                    // `on_error: continue`): resumed, it fails the same way
                    // again without running. (A failure that ends the run is
                    // harmless here.)
                    (Status::Failed, _, Some(error)) => {
                        (serde_json::Value::Null, Some(error.clone()))
                    }
                    _ => return,
                };
                (run_id.clone(), node_id.clone(), None, output, error)
            }
            _ => return,
        };
        let (done, written) = std::sync::mpsc::channel();
        let job = Checkpoint {
            run: run.clone(),
            node: node.clone(),
            item,
            output,
            error,
            done,
        };
        // Durable before the next node starts: a worker killed after this
        // never has the node run again.
        let sent = self
            .writer
            .lock()
            .map_err(|_| "the checkpoint writer is poisoned".to_string())
            .and_then(|w| {
                w.send(job)
                    .map_err(|_| "the checkpoint writer stopped".to_string())
            });
        let written = sent.and_then(|()| {
            written
                .recv()
                .map_err(|_| "the checkpoint writer stopped".to_string())
                .and_then(|r| r)
        });
        match written {
            Ok(true) => {}
            // A sub-run (workflow.call) is not a queued run: nothing to record.
            Ok(false) if !self.holds(&run) => {}
            Ok(false) => {
                tracing::warn!(run_id = %run, "lost the lease of the run (another worker took it over); stopping it here");
                self.cancel(&run);
            }
            Err(e) => {
                tracing::error!(run_id = %run, node_id = %node, "cannot checkpoint the node ({e}); stopping the run, another worker resumes it");
                self.cancel(&run);
            }
        }
    }
}

/// Relays the events of the runs this worker holds to the daemons' WebSocket
/// clients (`NOTIFY fuse_events`), in batches, in order.
struct Relay {
    tx: tokio::sync::mpsc::UnboundedSender<(Option<String>, Option<crate::store::pg::Kept>)>,
    running: Running,
}

impl Observer for Relay {
    fn on_event(&self, event: &Event) {
        let holds = |id: &str| self.running.lock().is_ok_and(|r| r.contains_key(id));
        // Attempts are not announced (live views get nodes' ends), only kept.
        if let Event::NodeAttempt(attempt) = event {
            if holds(&attempt.run_id) {
                let kept = crate::store::pg::Kept::Attempt(attempt.clone());
                let _ = self.tx.send((None, Some(kept)));
            }
            return;
        }
        let Some(mut value) = crate::daemon::event_json(event) else {
            return;
        };
        if !value["run_id"].as_str().is_some_and(holds) {
            return;
        }
        // Log lines, agent steps and how nodes finished are also kept, for
        // the run's logs and page.
        let kept = kept_of(event);
        let mut text = value.to_string();
        if text.len() > crate::store::pg::MAX_EVENT_BYTES {
            // A notification holds 8000 bytes: large step data stays in history.
            if let Some(map) = value.as_object_mut() {
                map.remove("input");
                map.remove("output");
                map.insert("truncated".into(), serde_json::Value::Bool(true));
            }
            text = value.to_string();
        }
        let announced = (text.len() <= crate::store::pg::MAX_EVENT_BYTES).then_some(text);
        if announced.is_some() || kept.is_some() {
            let _ = self.tx.send((announced, kept));
        }
    }
}

/// What of an event a run's page keeps on the queue: its log lines, agent
/// steps and how its nodes finished (attempts and the run's own start and
/// end are kept by whoever holds the run).
fn kept_of(event: &Event) -> Option<crate::store::pg::Kept> {
    use crate::store::pg::{Kept, QueueLog, QueueNodeRun};
    Some(match event {
        Event::Log {
            run_id,
            node_id,
            level,
            message,
        } => Kept::Log(QueueLog {
            run_id: run_id.clone(),
            ts: crate::engine::events::now_ms(),
            node_id: node_id.clone(),
            level: level.as_str().to_string(),
            message: message.clone(),
        }),
        Event::NodeFinished {
            run_id,
            node_id,
            node_type,
            status,
            attempts,
            duration_ms,
            error,
            error_value,
            ..
        } => Kept::Node(QueueNodeRun {
            run_id: run_id.clone(),
            node_id: node_id.clone(),
            node_type: node_type.clone(),
            status: status.as_str().to_string(),
            attempts: *attempts as i32,
            duration_ms: *duration_ms as i64,
            finished_ms: crate::engine::events::now_ms(),
            error: error_value
                .clone()
                .or_else(|| error.clone().map(serde_json::Value::String)),
        }),
        Event::NodeStep(step) => Kept::Step(step.clone()),
        _ => return None,
    })
}

/// The name a home's daemon keeps the runs it runs itself under on the
/// queue (stable across restarts, so a restart finds what it left).
pub fn keeper_name(home: &crate::home::Home) -> String {
    format!("daemon {}:{}", host_name(), home.root().display())
}

/// The name `fuse run` keeps a home's one-off runs under on the queue.
pub fn cli_keeper_name(home: &crate::home::Home) -> String {
    format!("fuse run {}:{}", host_name(), home.root().display())
}

/// Every name a home keeps its own runs under (they are in its history too).
pub fn keeper_names(home: &crate::home::Home) -> Vec<String> {
    vec![keeper_name(home), cli_keeper_name(home)]
}

/// Keeps the runs a daemon on PostgreSQL runs itself (a webhook's whose
/// caller waits for its answer) on the store beside the queued ones, so
/// every daemon lists and shows them: the run, its attempts, steps, node
/// ends and log lines, written in batches off the run's path. Live events
/// are the daemon's own (not announced again).
pub struct Keeper {
    tx: tokio::sync::mpsc::UnboundedSender<(Option<String>, Option<crate::store::pg::Kept>)>,
    /// Top-level runs being kept.
    running: Mutex<std::collections::HashSet<String>>,
    by: String,
}

impl Keeper {
    /// Starts its writer on `rt`; `by` names who runs the runs.
    pub fn start(pg: Pg, by: String, rt: &tokio::runtime::Handle) -> Keeper {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        rt.spawn(relay_events(pg, rx));
        Keeper {
            tx,
            running: Mutex::new(Default::default()),
            by,
        }
    }

    /// Waits until everything it was given is written (or `limit` passed):
    /// a command keeping its run calls it before it exits.
    pub fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self
            .tx
            .send((None, Some(crate::store::pg::Kept::Flush(done))))
            .is_err()
        {
            return false;
        }
        wait.recv_timeout(limit).is_ok()
    }
}

impl Observer for Keeper {
    fn on_event(&self, event: &Event) {
        use crate::store::pg::Kept;
        let holds = |id: &str| self.running.lock().is_ok_and(|r| r.contains(id));
        let kept = match event {
            Event::RunStarted {
                run_id,
                workflow,
                definition,
                parent_id: None,
                trigger_kind,
                input,
                ..
            } => {
                let definition = match definition.text() {
                    Ok(text) => text.to_string(),
                    Err(e) => {
                        tracing::error!(
                            run_id = %run_id,
                            "run {run_id} is not kept on PostgreSQL (it stays in this home's history): {e}"
                        );
                        return;
                    }
                };
                if let Ok(mut r) = self.running.lock() {
                    r.insert(run_id.clone());
                }
                Kept::Started {
                    by: self.by.clone(),
                    run: Box::new(crate::store::pg::NewRun {
                        id: run_id.clone(),
                        workflow: workflow.clone(),
                        definition,
                        input: (**input).clone(),
                        trigger_kind: trigger_kind.clone(),
                        entry: None,
                        needs: Vec::new(),
                        tags: Vec::new(),
                    }),
                }
            }
            Event::NodeAttempt(attempt) if holds(&attempt.run_id) => Kept::Attempt(attempt.clone()),
            Event::RunFinished {
                run_id,
                status,
                output,
                error,
                ..
            } if holds(run_id) => {
                if let Ok(mut r) = self.running.lock() {
                    r.remove(run_id);
                }
                Kept::Finished {
                    by: self.by.clone(),
                    run_id: run_id.clone(),
                    status: status.as_str().to_string(),
                    output: (**output).clone(),
                    error: error.clone(),
                }
            }
            Event::NodeStep(step) if holds(&step.run_id) => Kept::Step(step.clone()),
            Event::Log { run_id, .. } | Event::NodeFinished { run_id, .. } if holds(run_id) => {
                match kept_of(event) {
                    Some(kept) => kept,
                    None => return,
                }
            }
            _ => return,
        };
        let _ = self.tx.send((None, Some(kept)));
    }
}

async fn relay_events(
    pg: Pg,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(Option<String>, Option<crate::store::pg::Kept>)>,
) {
    while let Some(first) = rx.recv().await {
        let mut items = vec![first];
        while items.len() < 500 {
            match rx.try_recv() {
                Ok(more) => items.push(more),
                Err(_) => break,
            }
        }
        let mut kept = crate::store::pg::KeptBatch::default();
        let mut flushes = Vec::new();
        for (text, item) in items {
            kept.events.extend(text);
            match item {
                Some(crate::store::pg::Kept::Log(log)) => kept.logs.push(log),
                Some(crate::store::pg::Kept::Node(node)) => kept.nodes.push(node),
                Some(crate::store::pg::Kept::Attempt(attempt)) => kept.attempts.push(attempt),
                Some(crate::store::pg::Kept::Step(step)) => kept.steps.push(step),
                Some(crate::store::pg::Kept::Started { by, run }) => kept.started.push((by, run)),
                Some(crate::store::pg::Kept::Flush(done)) => flushes.push(done),
                Some(crate::store::pg::Kept::Finished {
                    by,
                    run_id,
                    status,
                    output,
                    error,
                }) => kept.finished.push((by, run_id, status, output, error)),
                None => {}
            }
        }
        // One commit for the batch; if it fails, each part on its own, so a
        // part that cannot be written does not take the others with it.
        if let Err(e) = pg.keep(&kept).await {
            tracing::warn!(
                "cannot keep a batch of run events at once ({e}); keeping its parts one by one"
            );
            for part in kept.split() {
                if let Err(e) = pg.keep(&part).await {
                    tracing::warn!(
                        "cannot keep {} of queued runs ({e}); their pages or live views miss it",
                        part.what()
                    );
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

impl Checkpoints {
    fn holds(&self, run: &str) -> bool {
        self.running.lock().is_ok_and(|r| r.contains_key(run))
    }

    fn cancel(&self, run: &str) {
        if let Ok(r) = self.running.lock()
            && let Some(token) = r.get(run)
        {
            token.cancel();
        }
    }
}

/// Runs the worker until `shutdown`; then stops claiming and lets the runs
/// it has finish (those still going when the process ends are resumed by
/// another worker after their lease).
pub async fn run(
    pg: Pg,
    registry: Registry,
    credentials: Option<Arc<dyn crate::engine::CredentialSource>>,
    options: Options,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut types: Vec<String> = registry
        .iter()
        .map(|n| n.spec().type_name.to_string())
        .collect();
    types.sort();
    let info = WorkerInfo {
        id: uuid::Uuid::now_v7().to_string(),
        host: host_name(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        tags: options.tags.clone(),
        types,
        concurrency: options.concurrency as i32,
    };
    pg.register(&info).await?;
    let running: Running = Default::default();
    let writer = checkpoint_writer(pg.url().to_string(), info.id.clone())?;
    let observer = Arc::new(Checkpoints {
        writer: std::sync::Mutex::new(writer),
        running: running.clone(),
    });
    let (event_tx, event_rx) = tokio::sync::mpsc::unbounded_channel();
    let relay = Arc::new(Relay {
        tx: event_tx,
        running: running.clone(),
    });
    let relaying = tokio::spawn(relay_events(pg.clone(), event_rx));
    let observers: Vec<Arc<dyn Observer>> = vec![observer, relay];
    let mut engine = Engine::new(
        registry,
        Arc::new(crate::engine::Fanout(observers)),
        options.max_parallel,
    );
    if let Some(c) = credentials {
        engine = engine.with_credentials(c);
    }
    let listener = match pg.listen().await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(
                "cannot listen for queued runs ({e}); polling every {:?}",
                options.poll
            );
            None
        }
    };
    tracing::info!(
        worker = %info.id,
        host = %info.host,
        concurrency = info.concurrency,
        "worker started"
    );
    let beats = tokio::spawn(heartbeats(
        pg.clone(),
        info.id.clone(),
        running.clone(),
        options.lease,
    ));
    let watch = tokio::spawn(report_stuck(pg.clone(), options.lease));
    let finished = Arc::new(tokio::sync::Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    while !shutdown.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let free = options.concurrency.saturating_sub(tasks.len()) as i64;
        let claimed = match pg.claim(&info, free, options.lease).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot claim runs ({e}); trying again");
                Vec::new()
            }
        };
        let got = claimed.len();
        for run in claimed {
            let token = CancellationToken::new();
            if let Ok(mut r) = running.lock() {
                r.insert(run.id.clone(), token.clone());
            }
            let (engine, pg, worker) = (engine.clone(), pg.clone(), info.id.clone());
            let (running, finished) = (running.clone(), finished.clone());
            tasks.spawn(async move {
                execute(&engine, &pg, &worker, run.clone(), token).await;
                if let Ok(mut r) = running.lock() {
                    r.remove(&run.id);
                }
                finished.notify_one();
            });
        }
        if got > 0 && (got as i64) == free {
            // There may be more: claim again once a slot frees.
            if tasks.len() >= options.concurrency {
                tokio::select! {
                    _ = finished.notified() => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            continue;
        }
        tokio::select! {
            _ = async {
                match &listener {
                    Some(l) => l.wait(options.poll).await,
                    None => tokio::time::sleep(options.poll).await,
                }
            } => {}
            _ = finished.notified() => {}
            _ = shutdown.cancelled() => {}
        }
    }
    tracing::info!(
        running = tasks.len(),
        "worker stopping: no new claims; letting its runs finish"
    );
    while tasks.join_next().await.is_some() {}
    beats.abort();
    watch.abort();
    relaying.abort();
    Ok(())
}

/// Runs one claimed run and records how it ended.
async fn execute(
    engine: &Engine,
    pg: &Pg,
    worker: &str,
    mut run: Claimed,
    token: CancellationToken,
) {
    let plan = match engine.load_str(&run.definition, None) {
        Ok(plan) => Arc::new(plan),
        Err(e) => {
            let message = format!("the workflow does not load on worker {worker}: {e}");
            tracing::error!(run_id = %run.id, "{message}");
            if let Err(e) = pg
                .finish(
                    worker,
                    &run.id,
                    "failed",
                    &serde_json::Value::Null,
                    Some(&message),
                )
                .await
            {
                tracing::error!(run_id = %run.id, "cannot record the failed run ({e})");
            }
            return;
        }
    };
    if run.claims > 1 {
        tracing::info!(
            run_id = %run.id,
            workflow = %run.workflow,
            reused = run.finished.len(),
            failed = run.failed.len(),
            "resuming a run another worker left (its finished nodes are reused, its handled failures repeated without running)"
        );
    }
    // The run's input and checkpoints move into the request (no copies).
    let mut request = RunRequest::new(std::mem::take(&mut run.input), &run.trigger_kind);
    // Checkpoints keep what a resumed run needs; the record only its result.
    request.keep_outputs = false;
    request.run_id = Some(run.id.clone());
    request.entry = run.entry.clone();
    request.reuse = std::mem::take(&mut run.finished);
    request.pins = Arc::new(failed_pins(&run.failed));
    request.reuse_items = std::mem::take(&mut run.items);
    request.cancel = token.clone();
    let record = engine.run(plan, request).await;
    if token.is_cancelled() {
        // Lost to another worker, or the checkpoint failed: not ours to record.
        return;
    }
    match pg
        .finish(
            worker,
            &run.id,
            record.status.as_str(),
            &record.output,
            record.error.as_deref(),
        )
        .await
    {
        Ok(true) => tracing::info!(
            run_id = %run.id,
            workflow = %run.workflow,
            status = record.status.as_str(),
            duration_ms = record.duration_ms,
            "run finished"
        ),
        Ok(false) => {
            tracing::warn!(run_id = %run.id, "the run finished here, but another worker had taken it over; its result is theirs")
        }
        Err(e) => {
            tracing::error!(run_id = %run.id, "cannot record the finished run ({e}); another worker runs it again after the lease")
        }
    }
}

/// Renews leases every third of the lease; cancels runs lost to another worker.
async fn heartbeats(pg: Pg, worker: String, running: Running, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 3);
    loop {
        tick.tick().await;
        let ids: Vec<String> = running
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        match pg.heartbeat(&worker, &ids, lease).await {
            Ok(lost) => {
                for id in lost {
                    tracing::warn!(run_id = %id, "lost the lease of the run (another worker took it over); stopping it here");
                    if let Some(t) = running.lock().ok().and_then(|r| r.get(&id).cloned()) {
                        t.cancel();
                    }
                }
            }
            Err(e) => {
                tracing::warn!("heartbeat failed ({e}); runs here may be taken over if it goes on")
            }
        }
    }
}

/// Says, once per run, when a queued run waits for node types or tags no live worker has.
async fn report_stuck(pg: Pg, lease: Duration) {
    let mut told: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(lease.max(Duration::from_secs(1)));
    loop {
        tick.tick().await;
        match pg.stuck(lease * 3).await {
            Ok(stuck) => {
                for s in stuck {
                    if told.insert(s.id.clone()) {
                        tracing::warn!(
                            run_id = %s.id,
                            workflow = %s.workflow,
                            "no worker can take this run: none has {}",
                            describe(&s.missing_types, &s.missing_tags)
                        );
                    }
                }
            }
            Err(e) => tracing::warn!("cannot check for runs no worker can take ({e})"),
        }
    }
}

fn describe(types: &[String], tags: &[String]) -> String {
    let mut parts = Vec::new();
    if !types.is_empty() {
        parts.push(format!("the node types {}", types.join(", ")));
    }
    if !tags.is_empty() {
        parts.push(format!("the tags {}", tags.join(", ")));
    }
    if parts.is_empty() {
        "all it needs at once".into()
    } else {
        parts.join(" and ")
    }
}

/// Pins that make each node that failed before the run was resumed fail the
/// same way again, without running (its side effects are not repeated); the
/// run then takes the same error path.
fn failed_pins(
    failed: &std::collections::HashMap<String, serde_json::Value>,
) -> std::collections::HashMap<String, crate::engine::pin::Pin> {
    use crate::engine::pin::{Outcome, Pin, error_from_json};
    failed
        .iter()
        .filter_map(|(node, error)| match error_from_json(error) {
            Ok(e) => Some((node.clone(), Pin::one(Outcome::Error(e)))),
            Err(e) => {
                tracing::warn!(node_id = %node, "the checkpointed error cannot be read back ({e}); the node runs again");
                None
            }
        })
        .collect()
}
