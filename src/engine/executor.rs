//! Runs a [`Plan`]: a node starts when every incoming edge is resolved (live or
//! dead); a node whose incoming edges are all dead is skipped, and so are the
//! edges it would have fed. Ready nodes run concurrently up to `max_parallel`.
//! Each node gets retries with backoff, a per-attempt timeout, and an error path
//! (`error` edges or `on_error: continue`); a failure with no error path stops
//! the run and cancels what is still running.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::events::{Event, NodeAttempt, Status, now_ms};
use super::expr::{NodesView, RunScope, Scope};
use super::plan::{NodeRef, Plan, RetryPolicy};
use super::{Engine, NodeRecord, RunRecord, RunRequest};
use crate::nodes::{ErrorKind, LogLevel, NodeCtx, NodeError, NodeOutput, RunInfo};
use crate::workflow::OnError;

/// State shared by the tasks of one run.
struct Shared {
    engine: Engine,
    plan: Arc<Plan>,
    run: Arc<RunInfo>,
    scope: RunScope,
    view: Arc<NodesView>,
    creds: Arc<super::RunCreds>,
    cancel: CancellationToken,
    reuse: HashMap<String, Value>,
    reuse_items: HashMap<String, HashMap<usize, Value>>,
    pins: Arc<HashMap<String, super::pin::Pin>>,
    max_parallel: usize,
    /// The trigger node that started the run ([`super::RunRequest::entry`]).
    entry: Option<String>,
    /// Numbers the steps nodes record ([`crate::nodes::NodeCtx::step`]).
    steps: Arc<std::sync::atomic::AtomicU32>,
}

/// What a finished node task reports.
struct NodeResult {
    index: usize,
    /// A trigger node that did not start the run: skipped, its edges dead.
    skipped: bool,
    result: Result<Gave, NodeError>,
    attempts: u32,
    started: Instant,
    input: Arc<Value>,
}

/// What a node gave: its output, one value shared by the attempt's event,
/// the edges it leaves by and the run's record (an observer that keeps the
/// event, as history does, costs no copy, and knows a successor's input as
/// the value it has seen), and the handle it leaves by.
struct Gave {
    value: Arc<Value>,
    handle: Option<String>,
}

impl Gave {
    fn new(value: Value) -> Gave {
        Gave {
            value: Arc::new(value),
            handle: None,
        }
    }
}

/// Where each edge of a run stands: a byte an edge, and the values of the
/// live edges apart (an edge is live from its source's end until its target
/// takes the value, so a chain holds one at a time, where a value slot per
/// edge took 16 bytes an edge).
struct EdgeStates {
    states: Vec<EdgeState>,
    live: HashMap<u32, Arc<Value>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EdgeState {
    Pending,
    Live,
    /// Was live; its target has started and taken the value.
    Taken,
    Dead,
}

impl EdgeStates {
    fn new(n: usize) -> EdgeStates {
        EdgeStates {
            states: vec![EdgeState::Pending; n],
            live: HashMap::new(),
        }
    }

    fn is_live(&self, e: usize) -> bool {
        self.states[e] == EdgeState::Live
    }

    /// The value edge `e` carries, while it is live.
    fn value(&self, e: usize) -> Option<&Arc<Value>> {
        if self.is_live(e) {
            self.live.get(&(e as u32))
        } else {
            None
        }
    }

    /// Edge `e` carries `value`, or is dead.
    fn decide(&mut self, e: usize, value: Option<&Arc<Value>>) {
        match value {
            Some(value) => {
                self.states[e] = EdgeState::Live;
                self.live.insert(e as u32, value.clone());
            }
            None => self.kill(e),
        }
    }

    fn kill(&mut self, e: usize) {
        if self.states[e] == EdgeState::Live {
            self.live.remove(&(e as u32));
        }
        self.states[e] = EdgeState::Dead;
    }

    /// Edge `e`'s target has taken its value: it is let go.
    fn take(&mut self, e: usize) {
        if self.states[e] == EdgeState::Live {
            self.live.remove(&(e as u32));
            self.states[e] = EdgeState::Taken;
        }
    }
}

/// A node's final state during the run: 16 bytes, as a run holds one per
/// node. Outputs stay shared (`Arc`) with the expression view and edges until
/// the run ends, then move into the record; a failed node's error is kept
/// apart (most nodes have none).
struct Done {
    status: Status,
    attempts: u32,
    output: Option<Arc<Value>>,
}

const _: () = assert!(std::mem::size_of::<Option<Done>>() <= 16);

impl Done {
    fn into_record(self, error: Option<Value>) -> NodeRecord {
        NodeRecord {
            status: self.status,
            attempts: self.attempts,
            output: self.output,
            error,
        }
    }
}

/// The results a run keeps for its record: every node's when it keeps every
/// output, else only those of the nodes its record lists (those that did not
/// succeed, and those its result is made of). A 100,000-node chain run by
/// `fuse run` keeps one, where it kept 100,000.
struct Records {
    kept: Kept,
    /// Whether each node's output is part of the result (a sink, or `end`).
    makes_result: Vec<bool>,
    /// Failed nodes' errors (most nodes have none).
    errors: HashMap<usize, Value>,
}

enum Kept {
    Every(Vec<Option<Done>>),
    Listed(HashMap<usize, Done>),
}

impl Records {
    fn new(plan: &Plan, keep_outputs: bool) -> Records {
        let n = plan.nodes.len();
        Records {
            kept: if keep_outputs {
                Kept::Every((0..n).map(|_| None).collect())
            } else {
                Kept::Listed(HashMap::new())
            },
            makes_result: plan
                .iter_nodes()
                .map(|n| plan.outgoing(n.index()).is_empty() || &**n.type_name() == "end")
                .collect(),
            errors: HashMap::new(),
        }
    }

    /// Node `i` is done (with its output, if it succeeded).
    fn set(&mut self, i: usize, mut done: Done) {
        match &mut self.kept {
            Kept::Every(all) => all[i] = Some(done),
            Kept::Listed(listed) => {
                let makes_result = self.makes_result.get(i).copied().unwrap_or(false);
                if !makes_result {
                    done.output = None;
                }
                if makes_result || done.status != Status::Succeeded {
                    listed.insert(i, done);
                }
            }
        }
    }

    /// Node `i` failed with `error`.
    fn set_failed(&mut self, i: usize, done: Done, error: Value) {
        self.errors.insert(i, error);
        self.set(i, done);
    }

    /// The output of node `i` if it succeeded and its output is kept.
    fn output(&self, i: usize) -> Option<Arc<Value>> {
        let done = match &self.kept {
            Kept::Every(all) => all.get(i)?.as_ref(),
            Kept::Listed(listed) => listed.get(&i),
        }?;
        (done.status == Status::Succeeded)
            .then(|| done.output.clone())
            .flatten()
    }

    /// The record's nodes, by id.
    fn into_nodes(mut self, plan: &Plan) -> BTreeMap<String, NodeRecord> {
        let kept: Vec<(usize, Done)> = match self.kept {
            Kept::Every(all) => all
                .into_iter()
                .enumerate()
                .filter_map(|(i, d)| d.map(|d| (i, d)))
                .collect(),
            Kept::Listed(listed) => listed.into_iter().collect(),
        };
        kept.into_iter()
            .map(|(i, done)| {
                let error = self.errors.remove(&i);
                (plan.nodes[i].id.to_string(), done.into_record(error))
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Waiting,
    Ready,
    Running,
    Done,
}

pub(super) async fn execute(engine: Engine, plan: Arc<Plan>, mut request: RunRequest) -> RunRecord {
    use tracing::Instrument;
    let recorded = request.run_id.is_some();
    let run_id = request
        .run_id
        .get_or_insert_with(|| uuid::Uuid::now_v7().to_string())
        .clone();
    // Every log line inside the run says which run and workflow.
    let span = tracing::info_span!("run", run_id = %run_id, workflow = %plan.id);
    execute_as(engine, plan, request, run_id, recorded)
        .instrument(span)
        .await
}

async fn execute_as(
    engine: Engine,
    plan: Arc<Plan>,
    request: RunRequest,
    run_id: String,
    recorded: bool,
) -> RunRecord {
    let started = Instant::now();
    let observer = engine.observer().clone();
    let input = Arc::new(request.input);
    let started_at = request
        .started_at
        .unwrap_or_else(jiff::Timestamp::now)
        .to_string();
    observer.on_event(&Event::RunStarted {
        run_id: run_id.clone(),
        workflow: plan.id.clone(),
        workflow_hash: plan.hash.clone(),
        definition: plan.definition.clone(),
        source_path: plan.source_path.as_ref().map(|p| p.display().to_string()),
        parent_id: request.parent_id.clone(),
        retry_of: request.retry_of.clone(),
        trigger_kind: request.trigger_kind.clone(),
        input: input.clone(),
        recorded,
        node_count: plan.nodes.len(),
        keep_runs: plan.settings.keep_runs,
        keep_days: plan.settings.keep_days,
        at_ms: now_ms(),
    });

    let view = Arc::new(NodesView::default());
    let creds = Arc::new(super::RunCreds::new(engine.inner.credentials.clone()));
    let run = Arc::new(RunInfo {
        id: run_id.as_str().into(),
        workflow: plan.id.clone(),
        started_at: started_at.clone(),
        depth: request.depth,
        responder: request.responder.clone(),
    });
    let scope = RunScope::new(
        &input,
        &plan.settings.vars,
        json!({"id": run_id, "workflow": plan.id, "started_at": started_at}),
        view.clone(),
        creds.clone(),
    );
    let max_parallel = plan
        .max_parallel
        .unwrap_or(engine.inner.max_parallel)
        .max(1);
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        plan: plan.clone(),
        run,
        scope,
        view,
        creds,
        cancel: request.cancel.child_token(),
        reuse: request.reuse,
        reuse_items: request.reuse_items,
        pins: request.pins,
        max_parallel,
        entry: request.entry.clone().or_else(|| default_entry(&plan)),
        steps: Default::default(),
    });

    let n = plan.nodes.len();
    let mut edges = EdgeStates::new(plan.edges.len());
    // Edges into each node not yet decided (fewer than 2³² in a plan).
    let mut remaining: Vec<u32> = (0..n).map(|i| plan.incoming(i).len() as u32).collect();
    let mut state = vec![NodeState::Waiting; n];
    // The input a `first` merge took (only such nodes have one).
    let mut first_input: HashMap<usize, Arc<Value>> = HashMap::new();
    // Without `keep_outputs`, the record keeps only the outputs the result is
    // made of; the outputs that carry token usage are kept to be summed.
    let mut records = Records::new(&plan, request.keep_outputs);
    let mut with_usage: Vec<Arc<Value>> = Vec::new();
    let mut ready: VecDeque<usize> = VecDeque::new();
    for (i, state) in state.iter_mut().enumerate() {
        if plan.incoming(i).is_empty() {
            *state = NodeState::Ready;
            ready.push_back(i);
        }
    }

    let deadline = plan.timeout.map(|t| tokio::time::Instant::now() + t);
    // Node futures are polled here, in the run's own task: a chain of quick nodes
    // never pays a cross-thread wake-up per node. Blocking work inside nodes goes
    // to spawn_blocking; a panicking node is caught and recorded as a failure.
    let mut tasks = FuturesUnordered::new();
    let mut failure: Option<String> = None;
    let mut stop: Option<Status> = None;

    loop {
        while stop.is_none() && tasks.len() < max_parallel {
            let Some(i) = ready.pop_front() else { break };
            let node_input = if plan.incoming(i).is_empty() {
                input.clone()
            } else if plan.nodes[i].first_wins {
                first_input
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Value::Null))
            } else {
                gather_input(&plan, i, &edges)
            };
            if !request.keep_outputs {
                // Nothing reads a started node's incoming edges again: let
                // their values go once the node is done with its input.
                for e in plan.incoming(i).iter() {
                    edges.take(e);
                }
                first_input.remove(&i);
            }
            state[i] = NodeState::Running;
            let shared = shared.clone();
            tasks.push(async move {
                let started = Instant::now();
                let input = node_input.clone();
                std::panic::AssertUnwindSafe(run_node(shared, i, node_input))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| NodeResult {
                        index: i,
                        skipped: false,
                        result: Err(NodeError::other(format!(
                            "the node panicked: {}",
                            panic_message(&panic)
                        ))),
                        attempts: 1,
                        started,
                        input,
                    })
            });
        }
        if tasks.is_empty() {
            break;
        }
        let joined = tokio::select! {
            joined = tasks.next() => joined,
            _ = shared.cancel.cancelled(), if stop.is_none() => {
                stop = Some(if request.cancel.is_cancelled() { Status::Cancelled } else { Status::Failed });
                continue;
            }
            _ = sleep_until(deadline), if stop.is_none() && deadline.is_some() => {
                let limit = plan.timeout.map(super::duration::human).unwrap_or_default();
                failure = Some(format!("the workflow timed out after {limit} (settings.timeout)"));
                stop = Some(Status::Failed);
                shared.cancel.cancel();
                continue;
            }
        };
        let Some(done) = joined else { break };
        let i = done.index;
        let node = plan.at(i);
        state[i] = NodeState::Done;
        let duration_ms = done.started.elapsed().as_millis() as u64;
        let mut newly_dead = Vec::new();
        if done.skipped {
            for e in plan.outgoing(i).iter() {
                edges.kill(e);
            }
            finish(&shared, i, Status::Skipped, 0, 0, Finished::Nothing);
            records.set(
                i,
                Done {
                    status: Status::Skipped,
                    attempts: 0,
                    output: None,
                },
            );
        } else {
            match done.result {
                Ok(out) => {
                    let value = out.value;
                    if node.read_by_expressions {
                        shared.view.set(&node.id, value.clone());
                    }
                    if super::record::has_usage(&value) {
                        with_usage.push(value.clone());
                    }
                    for e in plan.outgoing(i).iter() {
                        let live = match plan.edges.source_handle(e) {
                            None => true,
                            Some(crate::nodes::ERROR_HANDLE) => false,
                            Some(h) => out.handle.as_deref() == Some(h),
                        };
                        edges.decide(e, live.then_some(&value));
                    }
                    finish(
                        &shared,
                        i,
                        Status::Succeeded,
                        done.attempts,
                        duration_ms,
                        Finished::Output(value.clone()),
                    );
                    records.set(
                        i,
                        Done {
                            status: Status::Succeeded,
                            attempts: done.attempts,
                            output: Some(value),
                        },
                    );
                }
                Err(err) => {
                    let cancelled = err.kind == ErrorKind::Cancelled;
                    let status = if cancelled {
                        Status::Cancelled
                    } else {
                        Status::Failed
                    };
                    let error_json = err.to_json();
                    let handled =
                        !cancelled && (node.has_error_edge || node.on_error == OnError::Continue);
                    if handled {
                        let carried = Arc::new(json!({"error": error_json, "input": *done.input}));
                        if node.on_error == OnError::Continue
                            && !node.has_error_edge
                            && node.read_by_expressions
                        {
                            shared.view.set(&node.id, carried.clone());
                        }
                        for e in plan.outgoing(i).iter() {
                            let is_error_edge =
                                plan.edges.source_handle(e) == Some(crate::nodes::ERROR_HANDLE);
                            let live = if node.has_error_edge {
                                is_error_edge
                            } else {
                                !is_error_edge
                            };
                            edges.decide(e, live.then_some(&carried));
                        }
                        shared.engine.observer().on_event(&Event::Log {
                            run_id: shared.run.id.to_string(),
                            node_id: Some(node.id.to_string()),
                            level: LogLevel::Warn,
                            message: format!(
                                "failed, continuing by its {}: {}",
                                if node.has_error_edge {
                                    "error path"
                                } else {
                                    "on_error: continue"
                                },
                                err.message
                            ),
                        });
                    } else {
                        for e in plan.outgoing(i).iter() {
                            edges.kill(e);
                        }
                        if cancelled {
                            // The run is stopping (cancel, timeout or another failure); the
                            // node's own "cancelled" error is not a failure of its own.
                            if stop.is_none() {
                                stop = Some(if request.cancel.is_cancelled() {
                                    Status::Cancelled
                                } else {
                                    Status::Failed
                                });
                            }
                        } else if stop.is_none() {
                            failure = Some(format!(
                                "node {:?} ({}) failed: {}",
                                &*node.id,
                                node.type_name(),
                                err.message
                            ));
                            stop = Some(Status::Failed);
                            shared.cancel.cancel();
                        }
                    }
                    finish(
                        &shared,
                        i,
                        status,
                        done.attempts,
                        duration_ms,
                        Finished::Error {
                            message: err.message.clone(),
                            value: error_json.clone(),
                        },
                    );
                    records.set_failed(
                        i,
                        Done {
                            status,
                            attempts: done.attempts,
                            output: None,
                        },
                        error_json,
                    );
                }
            }
        }
        // Resolve the targets of the edges just decided; skips propagate.
        let mut decided: VecDeque<usize> = plan.outgoing(i).iter().collect();
        while let Some(e) = decided.pop_front() {
            let t = plan.edges[e].target();
            remaining[t] -= 1;
            if state[t] != NodeState::Waiting {
                continue;
            }
            let target = &plan.nodes[t];
            if target.first_wins
                && let Some(v) = edges.value(e)
            {
                first_input.insert(t, v.clone());
                state[t] = NodeState::Ready;
                ready.push_back(t);
                continue;
            }
            if remaining[t] > 0 {
                continue;
            }
            let any_live = plan.incoming(t).iter().any(|x| edges.is_live(x));
            if any_live && !target.first_wins {
                state[t] = NodeState::Ready;
                ready.push_back(t);
            } else {
                state[t] = NodeState::Done;
                newly_dead.push(t);
                for out in plan.outgoing(t).iter() {
                    edges.kill(out);
                    decided.push_back(out);
                }
            }
        }
        for t in newly_dead {
            finish(&shared, t, Status::Skipped, 0, 0, Finished::Nothing);
            records.set(
                t,
                Done {
                    status: Status::Skipped,
                    attempts: 0,
                    output: None,
                },
            );
        }
    }

    // Nodes that never got to run because the run stopped.
    for (i, state) in state.iter().enumerate() {
        if *state != NodeState::Done {
            let status = if stop.is_some() {
                Status::Cancelled
            } else {
                Status::Skipped
            };
            finish(&shared, i, status, 0, 0, Finished::Nothing);
            let done = Done {
                status,
                attempts: 0,
                output: None,
            };
            records.set(i, done);
        }
    }

    let status = match stop {
        Some(Status::Cancelled) => {
            failure.get_or_insert_with(|| "the run was cancelled".into());
            Status::Cancelled
        }
        Some(s) => s,
        None => Status::Succeeded,
    };
    let output = if status == Status::Succeeded {
        result_of(&plan, &records)
    } else {
        Arc::default()
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let usage = super::record::sum_usage(with_usage.iter().map(|v| &**v));
    drop(with_usage);
    engine.observer().on_event(&Event::RunFinished {
        run_id: run_id.clone(),
        status,
        output: output.clone(),
        error: failure.clone(),
        usage: usage.clone(),
        at_ms: now_ms(),
        duration_ms,
    });
    // Release the other holders of node outputs so they move, not copy, into the record.
    drop(edges);
    drop(first_input);
    shared.view.clear();
    // Without `keep_outputs`, the record lists only the nodes that did not
    // succeed and those the result is made of (history has them all).
    let nodes = records.into_nodes(&plan);
    RunRecord {
        run_id,
        workflow: plan.id.clone(),
        status,
        output,
        error: failure,
        duration_ms,
        usage,
        nodes,
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What a node left when it finished.
enum Finished {
    /// Skipped or cancelled before it ran.
    Nothing,
    Output(Arc<Value>),
    /// Its error: the message and the error as history records it.
    Error {
        message: String,
        value: Value,
    },
}

fn finish(
    shared: &Shared,
    i: usize,
    status: Status,
    attempts: u32,
    duration_ms: u64,
    result: Finished,
) {
    let node = shared.plan.at(i);
    let (output, error, error_value) = match result {
        Finished::Nothing => (None, None, None),
        Finished::Output(output) => (Some(output), None, None),
        Finished::Error { message, value } => (None, Some(message), Some(value)),
    };
    shared.engine.observer().on_event(&Event::NodeFinished {
        run_id: shared.run.id.to_string(),
        node_id: node.id.to_string(),
        node_type: node.type_name().to_string(),
        status,
        attempts,
        duration_ms,
        error,
        output,
        error_value,
    });
}

/// The input of a node with incoming edges: the single live upstream value, or
/// an object keyed by `targetHandle` (else upstream id) when there are several,
/// and always keyed for `flow.merge`.
fn gather_input(plan: &Plan, i: usize, edges: &EdgeStates) -> Arc<Value> {
    let node = plan.at(i);
    let live = || {
        plan.incoming(i)
            .iter()
            .filter_map(|e| Some((e, edges.value(e)?)))
    };
    let keyed = &**node.type_name() == "flow.merge";
    if !keyed {
        // One live upstream value: shared, not copied.
        let mut one = live();
        if let (Some((e, v)), None) = (one.next(), one.next())
            && plan.edges.target_handle(e).is_none()
        {
            return Arc::clone(v);
        }
    }
    let mut map = Map::new();
    for (e, v) in live() {
        let key = plan
            .edges
            .target_handle(e)
            .unwrap_or(&plan.nodes[plan.edges[e].source()].id)
            .to_string();
        map.insert(key, (**v).clone());
    }
    Arc::new(Value::Object(map))
}

/// The workflow result: the `end` node's output, else the single sink's, else an
/// object keyed by sink id (of sinks that succeeded).
fn result_of(plan: &Plan, records: &Records) -> Arc<Value> {
    let output = |i: usize| records.output(i);
    if let Some(i) = plan.iter_nodes().position(|n| &**n.type_name() == "end")
        && let Some(v) = output(i)
    {
        return v;
    }
    let sinks: Vec<usize> = (0..plan.nodes.len())
        .filter(|&i| plan.outgoing(i).is_empty())
        .collect();
    if let [only] = sinks.as_slice() {
        return output(*only).unwrap_or_default();
    }
    let mut map = Map::new();
    for i in sinks {
        if let Some(v) = output(i) {
            map.insert(plan.nodes[i].id.to_string(), (*v).clone());
        }
    }
    Arc::new(Value::Object(map))
}

/// The entry of a run no trigger started (`fuse run`, by hand, the API) in a
/// workflow with several trigger nodes without inputs (the seed format's
/// webhook and timer side by side): the first of them, so a node fed by
/// both gets one input, as when either fires. `None` with one or none.
fn default_entry(plan: &Plan) -> Option<String> {
    let mut roots = plan
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| n.trigger && plan.incoming(*i).is_empty())
        .map(|(_, n)| n);
    let first = roots.next()?;
    roots.next().map(|_| first.id.to_string())
}

/// Runs one node: once, or once per item with `foreach`.
async fn run_node(shared: Arc<Shared>, i: usize, input: Arc<Value>) -> NodeResult {
    let started = Instant::now();
    let node = shared.plan.at(i);
    if node.trigger
        && shared.plan.incoming(i).is_empty()
        && shared
            .entry
            .as_deref()
            .is_some_and(|entry| entry != &*node.id)
    {
        return NodeResult {
            index: i,
            skipped: true,
            result: Ok(Gave::new(Value::Null)),
            attempts: 0,
            started,
            input,
        };
    }
    if let Some(output) = shared.reuse.get(&*node.id) {
        let reused = Arc::new(output.clone());
        let observer = shared.engine.observer();
        observer.on_event(&Event::Log {
            run_id: shared.run.id.to_string(),
            node_id: Some(node.id.to_string()),
            level: LogLevel::Info,
            message: "reused the output of the earlier run".into(),
        });
        // Recorded as attempt 0 with its output: the history shows the node
        // succeeded, and a later retry of this run can reuse it again.
        let at = now_ms();
        observer.on_event(&Event::NodeAttempt(Box::new(NodeAttempt {
            run_id: shared.run.id.clone(),
            node_id: Arc::from(&*node.id),
            node_type: node.type_name().clone(),
            attempt: 0,
            item: None,
            status: Status::Succeeded,
            input: input.clone(),
            output: Some(reused.clone()),
            error: None,
            started_ms: at,
            finished_ms: at,
        })));
        return NodeResult {
            index: i,
            skipped: false,
            result: Ok(Gave {
                value: reused,
                handle: None,
            }),
            attempts: 0,
            started,
            input,
        };
    }
    // A pinned foreach node gives its pinned output as a whole: no items run.
    let pinned = shared.pins.contains_key(&*node.id);
    let (result, attempts) = match node.foreach() {
        _ if pinned => attempts(&shared, i, &input, None).await,
        None => attempts(&shared, i, &input, None).await,
        Some(expr) => run_foreach(&shared, i, &input, expr).await,
    };
    NodeResult {
        index: i,
        skipped: false,
        result,
        attempts,
        started,
        input,
    }
}

async fn run_foreach(
    shared: &Arc<Shared>,
    i: usize,
    input: &Arc<Value>,
    expr: &str,
) -> (Result<Gave, NodeError>, u32) {
    let node = shared.plan.at(i);
    // The node's expression context, built at most once and shared by its items.
    let context = OnceLock::new();
    let scope = Scope::node(&shared.scope, input, None, &context);
    let items = match shared.engine.inner.exprs.render_str(expr, &scope) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            return (
                Err(NodeError::new(
                    ErrorKind::Expression,
                    format!(
                        "foreach {expr:?} gave {}, not an array",
                        crate::nodes::json_type(&other)
                    ),
                )),
                1,
            );
        }
        Err(e) => return (Err(NodeError::new(ErrorKind::Expression, e.to_string())), 1),
    };
    let concurrency = node.concurrency().unwrap_or(shared.max_parallel).max(1);
    // Items are polled here, at most `concurrency` at a time, like the nodes of a
    // run: no task (and no cross-thread wake-up) per item.
    let count = items.len();
    let mut results: Vec<Value> = vec![Value::Null; count];
    // Items a resumed run finished before: their outputs, not run again.
    let reused = shared.reuse_items.get(&*node.id);
    if let Some(reused) = reused {
        let mut taken = 0;
        for (&index, output) in reused.iter().filter(|(index, _)| **index < count) {
            results[index] = output.clone();
            taken += 1;
        }
        shared.engine.observer().on_event(&Event::Log {
            run_id: shared.run.id.to_string(),
            node_id: Some(node.id.to_string()),
            level: LogLevel::Info,
            message: format!("reused {taken} of its {count} items from the earlier run"),
        });
    }
    let mut pending = items
        .into_iter()
        .enumerate()
        .filter(|(index, _)| reused.is_none_or(|r| !r.contains_key(index)));
    let mut running = FuturesUnordered::new();
    let mut max_attempts = 0;
    let mut first_error: Option<(usize, NodeError)> = None;
    loop {
        while first_error.is_none() && running.len() < concurrency {
            let Some((index, item)) = pending.next() else {
                break;
            };
            let base = &context;
            running.push(async move {
                let (result, attempts) = std::panic::AssertUnwindSafe(attempts(
                    shared,
                    i,
                    input,
                    Some((item, index, base)),
                ))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    (
                        Err(NodeError::other(format!(
                            "the node panicked: {}",
                            panic_message(&panic)
                        ))),
                        1,
                    )
                });
                (index, result, attempts)
            });
        }
        // One failed item fails the node: the others are dropped (cancelled).
        if first_error.is_some() {
            break;
        }
        let Some((index, result, attempts)) = running.next().await else {
            break;
        };
        max_attempts = max_attempts.max(attempts);
        match result {
            Ok(out) => results[index] = Arc::unwrap_or_clone(out.value),
            Err(e) => first_error = Some((index, e)),
        }
    }
    drop(running);
    if let Some((index, mut e)) = first_error {
        e.message = format!("item {index}: {}", e.message);
        return (Err(e), max_attempts);
    }
    let values = results;
    (Ok(Gave::new(Value::Array(values))), max_attempts.max(1))
}

/// Runs the attempts of one node (or one foreach item) until success, a
/// non-retryable error, or the attempts run out.
async fn attempts(
    shared: &Arc<Shared>,
    i: usize,
    input: &Arc<Value>,
    item: Option<(Value, usize, &OnceLock<minijinja::Value>)>,
) -> (Result<Gave, NodeError>, u32) {
    let node = shared.plan.at(i);
    let max = node.retry().map_or(1, |r| r.attempts);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let observer = shared.engine.observer();
        observer.on_event(&Event::NodeStarted {
            run_id: shared.run.id.clone(),
            node_id: Arc::from(&*node.id),
            attempt,
            item: item.as_ref().map(|(_, idx, _)| *idx),
        });
        let started_ms = now_ms();
        let pin = shared.pins.get(&*node.id);
        let result = match pin {
            Some(pin) => {
                observer.on_event(&Event::Log {
                    run_id: shared.run.id.to_string(),
                    node_id: Some(node.id.to_string()),
                    level: LogLevel::Debug,
                    message: format!("pinned: attempt {attempt} did not run the node"),
                });
                let outcome = pin.attempt(attempt);
                limited(shared, node, async move {
                    match outcome {
                        Some(result) => result,
                        // Never finishes by itself: its timeout or the run's end stops it.
                        None => std::future::pending().await,
                    }
                })
                .await
            }
            None => {
                one_attempt(
                    shared,
                    node,
                    input,
                    item.as_ref().map(|(v, i, base)| (v, *i, *base)),
                )
                .await
            }
        };
        // Secret values never leave the node: not in outputs, not in errors.
        let result = match result {
            Ok(mut out) => {
                shared.creds.mask_value(&mut out.value);
                Ok(out)
            }
            Err(mut e) => {
                shared.creds.mask_string(&mut e.message);
                if let Some(details) = e.details.as_deref_mut() {
                    shared.creds.mask_value(details);
                }
                Err(e)
            }
        };
        // The output moves into an Arc, shared from here on (a foreach item's
        // is taken back out, into its node's array).
        let result = result.map(|out| (out.handle, Arc::new(out.value)));
        observer.on_event(&Event::NodeAttempt(Box::new(NodeAttempt {
            run_id: shared.run.id.clone(),
            node_id: Arc::from(&*node.id),
            node_type: node.type_name().clone(),
            attempt,
            item: item.as_ref().map(|(_, idx, _)| *idx),
            status: match &result {
                Ok(_) => Status::Succeeded,
                Err(e) if e.kind == ErrorKind::Cancelled => Status::Cancelled,
                Err(_) => Status::Failed,
            },
            input: input.clone(),
            output: result.as_ref().ok().map(|(_, v)| v.clone()),
            error: result.as_ref().err().map(NodeError::to_json),
            started_ms,
            finished_ms: now_ms(),
        })));
        let err = match result {
            Ok((handle, value)) => return (Ok(Gave { value, handle }), attempt),
            Err(e) => e,
        };
        let policy = match node.retry() {
            Some(p) if attempt < max && should_retry(&err, p) && !shared.cancel.is_cancelled() => p,
            _ => return (Err(err), attempt),
        };
        let mut delay = backoff(policy, attempt);
        if let Some(after) = err.retry_after {
            delay = delay.max(after);
        }
        // A pinned failure has nothing to wait for: its retries follow at once.
        if pin.is_some() {
            delay = Duration::ZERO;
        }
        observer.on_event(&Event::Log {
            run_id: shared.run.id.to_string(),
            node_id: Some(node.id.to_string()),
            level: LogLevel::Warn,
            message: format!(
                "attempt {attempt}/{max} failed: {}; retrying in {}",
                err.message,
                super::duration::human(delay)
            ),
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.cancel.cancelled() => {
                return (Err(NodeError::new(ErrorKind::Cancelled, "cancelled while waiting to retry")), attempt);
            }
        }
    }
}

async fn one_attempt(
    shared: &Arc<Shared>,
    node: NodeRef<'_>,
    input: &Arc<Value>,
    item: Option<(&Value, usize, &OnceLock<minijinja::Value>)>,
) -> Result<NodeOutput, NodeError> {
    // The credentials the node names load first, so a missing or undecryptable
    // one is an error that names it (not an undefined value in an expression).
    for name in node.credentials() {
        shared
            .creds
            .get(name)
            .map_err(|e| NodeError::new(ErrorKind::Input, e).retryable(false))?;
    }
    let params = match node.templates() {
        None => node.written().map_err(|e| {
            NodeError::new(
                ErrorKind::Input,
                format!("the node's inputs could not be read back from its plan: {e}"),
            )
        })?,
        Some(inputs) => {
            let own = OnceLock::new();
            let (item, base) = match item {
                Some((item, index, base)) => (Some((item, index)), base),
                None => (None, &own),
            };
            let context = Scope::node(&shared.scope, input, item, base);
            let mut params = Map::with_capacity(inputs.len());
            for (key, template) in inputs {
                let rendered = shared
                    .engine
                    .inner
                    .exprs
                    .render_template(template, &context)
                    .map_err(|e| {
                        NodeError::new(ErrorKind::Expression, format!("input `{key}`: {e}"))
                    })?;
                params.insert(key.clone(), rendered);
            }
            params
        }
    };
    let ctx = NodeCtx {
        creds: shared.creds.clone(),
        node_id: Arc::from(&*node.id),
        params,
        input: input.clone(),
        run: shared.run.clone(),
        cancel: shared.cancel.clone(),
        base_dir: shared.plan.base_dir.clone(),
        observer: shared.engine.observer().clone(),
        engine: shared.engine.clone(),
        steps: shared.steps.clone(),
    };
    let work = tracing::Instrument::instrument(
        node.imp().run(ctx),
        tracing::debug_span!("node", node_id = %node.id),
    );
    limited(shared, node, work).await
}

/// An attempt's work under the node's timeout, stopped when the run is cancelled.
async fn limited(
    shared: &Arc<Shared>,
    node: NodeRef<'_>,
    work: impl std::future::Future<Output = Result<NodeOutput, NodeError>>,
) -> Result<NodeOutput, NodeError> {
    let cancel = shared.cancel.clone();
    let timed = async {
        match node.timeout() {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(r) => r,
                Err(_) => Err(NodeError::new(
                    ErrorKind::Timeout,
                    format!("timed out after {}", super::duration::human(limit)),
                )),
            },
            None => work.await,
        }
    };
    tokio::select! {
        r = timed => r,
        _ = cancel.cancelled() => Err(NodeError::new(ErrorKind::Cancelled, "cancelled")),
    }
}

/// Whether `err` is worth another attempt under `policy`.
///
/// Every failure is retried but the ones another attempt cannot change:
/// cancellation, invalid input and expressions (as in n8n, Airflow, Prefect);
/// `retry.on` narrows that to the errors it names.
fn should_retry(err: &NodeError, policy: &RetryPolicy) -> bool {
    if matches!(
        err.kind,
        ErrorKind::Cancelled | ErrorKind::Input | ErrorKind::Expression
    ) {
        return false;
    }
    let Some(on) = &policy.on else {
        return true;
    };
    let kind = err.kind.name();
    on.kinds.iter().any(|k| k == kind || k == "any")
        || matches!(err.kind, ErrorKind::Exit { code } if on.exit_codes.contains(&code))
        || matches!(err.kind, ErrorKind::Http { status } if on.statuses.contains(&status))
}

/// Delay before attempt `attempt + 1`: exponential (or fixed) with jitter in [50%, 100%].
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let base = match policy.backoff {
        crate::workflow::model::Backoff::Fixed => policy.initial,
        crate::workflow::model::Backoff::Exponential => {
            let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
            policy.initial.saturating_mul(factor)
        }
    }
    .min(policy.max);
    let jitter: f64 = rand::random_range(0.5..=1.0);
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::model::{Backoff, RetryOn};

    fn policy(on: Option<RetryOn>) -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            backoff: Backoff::Exponential,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
            on,
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = policy(None);
        for _ in 0..50 {
            let d1 = backoff(&p, 1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d2 = backoff(&p, 2);
            assert!(
                d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200),
                "{d2:?}"
            );
            let d9 = backoff(&p, 9);
            assert!(d9 <= Duration::from_millis(350), "{d9:?}");
        }
    }

    #[test]
    fn retry_on_conditions() {
        let exit3 = NodeError::new(ErrorKind::Exit { code: 3 }, "x");
        let exit4 = NodeError::new(ErrorKind::Exit { code: 4 }, "x");
        let on = RetryOn {
            exit_codes: vec![3],
            ..Default::default()
        };
        assert!(should_retry(&exit3, &policy(Some(on.clone()))));
        assert!(!should_retry(&exit4, &policy(Some(on))));
        let timeout = NodeError::new(ErrorKind::Timeout, "t");
        assert!(
            should_retry(&timeout, &policy(None)),
            "timeouts are retryable by default"
        );
        assert!(
            should_retry(&exit3, &policy(None)),
            "without `on`, every failure is retried"
        );
        for kind in [
            ErrorKind::Input,
            ErrorKind::Expression,
            ErrorKind::Cancelled,
        ] {
            assert!(!should_retry(&NodeError::new(kind, "x"), &policy(None)));
        }
        let kinds = RetryOn {
            kinds: vec!["timeout".into()],
            ..Default::default()
        };
        assert!(should_retry(&timeout, &policy(Some(kinds.clone()))));
        assert!(!should_retry(
            &NodeError::new(ErrorKind::Network, "n"),
            &policy(Some(kinds))
        ));
        let http = RetryOn {
            statuses: vec![503],
            ..Default::default()
        };
        assert!(should_retry(
            &NodeError::new(ErrorKind::Http { status: 503 }, "h"),
            &policy(Some(http.clone()))
        ));
        assert!(!should_retry(
            &NodeError::new(ErrorKind::Http { status: 404 }, "h"),
            &policy(Some(http))
        ));
    }
}
