//! Live events over WebSocket: every run event goes to a broadcast channel and
//! to a per-run buffer, so a client that connects mid-run first gets what
//! already happened, then the rest as it happens.
//! `GET /api/v1/events` streams every run; `GET /api/v1/executions/{id}/events`
//! one run, closing after its `run_finished`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::engine::{Event, Observer};

/// Events kept per run for late joiners.
const MAX_BUFFERED: usize = 10_000;
/// Finished runs whose events are kept in memory.
const KEEP_FINISHED: usize = 200;

pub struct EventBus {
    tx: broadcast::Sender<Arc<Value>>,
    buffers: Mutex<HashMap<String, Vec<Arc<Value>>>>,
    finished: Mutex<VecDeque<String>>,
    /// Node outputs and results kept for the runs a seed-format stream
    /// watches (`node_end` carries the output, `workflow_complete` the
    /// result), and the workflows whose new runs are watched, with how many
    /// streams watch each.
    watched: Mutex<Watched>,
    /// How much is watched: every event reads it, so the lock is taken only
    /// while a seed-format stream is open.
    watching: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct Watched {
    workflows: HashMap<String, usize>,
    runs: HashMap<String, RunData>,
}

#[derive(Default)]
struct RunData {
    outputs: HashMap<String, Arc<Value>>,
    result: Option<Arc<Value>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(4096).0,
            buffers: Mutex::new(HashMap::new()),
            finished: Mutex::new(VecDeque::new()),
            watched: Mutex::new(Watched::default()),
            watching: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl EventBus {
    /// Keeps node outputs and results of `workflow`'s runs that start from
    /// now on, until [`EventBus::unwatch_workflow`].
    pub fn watch_workflow(&self, workflow: &str) {
        if let Ok(mut w) = self.watched.lock() {
            *w.workflows.entry(workflow.to_string()).or_default() += 1;
            self.count(&w);
        }
    }

    pub fn unwatch_workflow(&self, workflow: &str) {
        if let Ok(mut w) = self.watched.lock() {
            if let Some(n) = w.workflows.get_mut(workflow) {
                *n -= 1;
                if *n == 0 {
                    w.workflows.remove(workflow);
                }
            }
            self.count(&w);
        }
    }

    /// Keeps node outputs and the result of run `run_id` from now on.
    pub fn watch_run(&self, run_id: &str) {
        if let Ok(mut w) = self.watched.lock() {
            w.runs.entry(run_id.to_string()).or_default();
            self.count(&w);
        }
    }

    /// Forgets what was kept of run `run_id`.
    pub fn unwatch_run(&self, run_id: &str) {
        if let Ok(mut w) = self.watched.lock() {
            w.runs.remove(run_id);
            self.count(&w);
        }
    }

    /// A watched run's node output, if kept.
    pub fn output_of(&self, run_id: &str, node: &str) -> Option<Arc<Value>> {
        let w = self.watched.lock().ok()?;
        w.runs.get(run_id)?.outputs.get(node).cloned()
    }

    /// A watched run's result, if kept.
    pub fn result_of(&self, run_id: &str) -> Option<Arc<Value>> {
        let w = self.watched.lock().ok()?;
        w.runs.get(run_id)?.result.clone()
    }

    /// Notes how much is watched (called with the lock held).
    fn count(&self, w: &Watched) {
        self.watching.store(
            w.workflows.len() + w.runs.len(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Keeps what a watched run produces (outputs are shared, not copied).
    fn keep(&self, event: &Event) {
        if self.watching.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        let Ok(mut w) = self.watched.lock() else {
            return;
        };
        match event {
            Event::RunStarted {
                run_id, workflow, ..
            } if w.workflows.contains_key(workflow) => {
                w.runs.entry(run_id.clone()).or_default();
                self.count(&w);
            }
            Event::NodeAttempt(a) if a.status == crate::engine::Status::Succeeded => {
                if let (Some(run), Some(output)) = (w.runs.get_mut(&*a.run_id), &a.output) {
                    run.outputs.insert(a.node_id.to_string(), output.clone());
                }
            }
            Event::RunFinished { run_id, output, .. } => {
                if let Some(run) = w.runs.get_mut(run_id) {
                    run.result = Some(output.clone());
                }
            }
            _ => {}
        }
    }
}

/// The JSON form of an event (without the bulky payloads).
pub fn to_json(event: &Event) -> Option<Value> {
    Some(match event {
        Event::RunStarted {
            run_id,
            workflow,
            trigger_kind,
            node_count,
            at_ms,
            parent_id,
            ..
        } => json!({"type": "run_started", "run_id": run_id, "workflow": workflow,
                    "trigger": trigger_kind, "nodes": node_count, "parent_id": parent_id, "at_ms": at_ms}),
        Event::NodeStarted {
            run_id,
            node_id,
            attempt,
            item,
        } => {
            json!({"type": "node_started", "run_id": run_id, "node": node_id, "attempt": attempt, "item": item})
        }
        Event::NodeAttempt(_) => return None,
        Event::NodeStep(step) => json!({"type": "node_step", "run_id": &*step.run_id,
            "node": &*step.node_id, "seq": step.seq, "kind": step.kind, "name": step.name,
            "status": if step.error.is_some() { "failed" } else { "succeeded" },
            "input": step.input, "output": step.output, "error": step.error,
            "duration_ms": step.duration_ms, "tokens": step.tokens}),
        Event::NodeFinished {
            run_id,
            node_id,
            node_type,
            status,
            attempts,
            duration_ms,
            error,
            ..
        } => {
            json!({"type": if status.as_str() == "failed" { "node_failed" } else { "node_finished" },
                    "run_id": run_id, "node": node_id, "node_type": node_type, "status": status,
                    "attempts": attempts, "duration_ms": duration_ms, "error": error})
        }
        Event::Log {
            run_id,
            node_id,
            level,
            message,
        } => {
            json!({"type": "log", "run_id": run_id, "node": node_id, "level": level, "message": message})
        }
        Event::RunFinished {
            run_id,
            status,
            error,
            duration_ms,
            ..
        } => json!({"type": "run_finished", "run_id": run_id, "status": status, "error": error,
                    "duration_ms": duration_ms}),
    })
}

impl Observer for EventBus {
    fn on_event(&self, event: &Event) {
        self.keep(event);
        if let Some(value) = to_json(event) {
            self.publish(value);
        }
    }
}

impl EventBus {
    /// Sends an event (in its JSON form) to the WebSocket clients: the
    /// engine's here, or one a worker relayed through the queue.
    pub fn publish(&self, value: Value) {
        let run_id = value["run_id"].as_str().unwrap_or("").to_string();
        let run_finished = value["type"] == "run_finished";
        let value = Arc::new(value);
        if let Ok(mut buffers) = self.buffers.lock() {
            let buffer = buffers.entry(run_id.clone()).or_default();
            if buffer.len() < MAX_BUFFERED {
                buffer.push(value.clone());
            }
            if run_finished && let Ok(mut finished) = self.finished.lock() {
                finished.push_back(run_id);
                while finished.len() > KEEP_FINISHED {
                    if let Some(old) = finished.pop_front() {
                        buffers.remove(&old);
                    }
                }
            }
        }
        let _ = self.tx.send(value);
    }
}

impl EventBus {
    /// What happened so far in a run, and a receiver for what comes next
    /// (taken together, so nothing falls between them).
    pub(super) fn join(
        &self,
        run_id: Option<&str>,
    ) -> (Vec<Arc<Value>>, broadcast::Receiver<Arc<Value>>) {
        let buffers = self.buffers.lock();
        let rx = self.tx.subscribe();
        let past = match (run_id, buffers) {
            (Some(id), Ok(b)) => b.get(id).cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        (past, rx)
    }
}

/// Waits for run `run_id` to finish: its status (`None` when the bus closes).
pub(super) async fn finished(bus: &EventBus, run_id: &str) -> Option<String> {
    let status_of = |e: &Value| {
        (e["type"] == "run_finished" && e["run_id"] == run_id)
            .then(|| e["status"].as_str().unwrap_or("").to_string())
    };
    'join: loop {
        let (past, mut rx) = bus.join(Some(run_id));
        if let Some(status) = past.iter().find_map(|e| status_of(e)) {
            return Some(status);
        }
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some(status) = status_of(&e) {
                        return Some(status);
                    }
                }
                // Fell behind: the run's own buffer still has its events.
                Err(broadcast::error::RecvError::Lagged(_)) => continue 'join,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Streams events to one WebSocket client.
pub(super) async fn serve(
    bus: Arc<EventBus>,
    run_id: Option<String>,
    already_finished: Option<Value>,
    socket: hyper_tungstenite::HyperWebsocket,
) {
    let Ok(mut ws) = socket.await else { return };
    use hyper_tungstenite::tungstenite::Message;
    let (past, mut rx) = bus.join(run_id.as_deref());
    let mut done = false;
    for event in &past {
        if ws.send(Message::text(event.to_string())).await.is_err() {
            return;
        }
        done |= event["type"] == "run_finished";
    }
    // A run finished before the daemon kept its events: its final state only.
    if past.is_empty()
        && let Some(summary) = already_finished
    {
        let _ = ws.send(Message::text(summary.to_string())).await;
        done = true;
    }
    while !done {
        tokio::select! {
            event = rx.recv() => match event {
                Ok(event) => {
                    if let Some(id) = &run_id && event["run_id"].as_str() != Some(id) {
                        continue;
                    }
                    if ws.send(Message::text(event.to_string())).await.is_err() {
                        return;
                    }
                    done = run_id.is_some() && event["type"] == "run_finished";
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let note = json!({"type": "lagged", "missed": n});
                    if ws.send(Message::text(note.to_string())).await.is_err() {
                        return;
                    }
                }
                Err(_) => break,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
    let _ = ws.close(None).await;
}
