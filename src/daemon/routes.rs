//! What the daemon keeps in memory about deployed workflows, rebuilt whenever
//! they change: each enabled workflow's plan (validated once, not per request)
//! and the webhook paths. The database stays the source of truth.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::State;
use crate::engine::Plan;

/// A webhook path's workflow.
#[derive(Clone)]
pub(crate) struct Hook {
    pub workflow: String,
    /// The `trigger.webhook` node (the run's entry).
    pub node: String,
    pub method: String,
    pub inputs: Value,
    /// The workflow has a `webhook.respond` node: the caller waits for it.
    pub responds: bool,
}

#[derive(Default)]
pub(crate) struct Routes {
    pub plans: HashMap<String, Arc<Plan>>,
    pub hooks: HashMap<String, Arc<Hook>>,
    pub files: Vec<super::files::FileTrigger>,
    /// (workflow, plugin, trigger) of every `trigger.event` node.
    pub events: Vec<(String, String, String)>,
}

/// Rebuilds the routes from the database (after a deploy, an enable or disable,
/// a rollback, a delete, a change in workflows/ or a package reload) and brings
/// the schedules in line.
pub(super) fn changed(state: &State) {
    let mut routes = Routes::default();
    let rows = state.db.enabled_workflows();
    // A failed read keeps what is served: an empty table would drop every
    // webhook, schedule and trigger until the next change.
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(
                "cannot read the deployed workflows ({e}); webhooks, schedules and triggers stay as they were"
            );
            return;
        }
    };
    for (name, definition, source) in rows {
        match state.engine.load_str(
            &definition,
            Some(&super::api::plan_path(state, &name, source.as_deref())),
        ) {
            Ok(plan) => {
                routes.plans.insert(name.clone(), Arc::new(plan));
            }
            Err(e) => tracing::warn!("workflow {name} cannot be loaded: {e}"),
        }
        let Ok(wf) = serde_json::from_str::<Value>(&definition) else {
            continue;
        };
        let nodes = wf
            .get("nodes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let responds = nodes
            .iter()
            .any(|n| n.get("type").and_then(Value::as_str) == Some("webhook.respond"));
        for node in &nodes {
            let kind = node.get("type").and_then(Value::as_str).unwrap_or("");
            if crate::workflow::canonical_type(kind) == "trigger.event" {
                let inputs = node.pointer("/data/inputs");
                let get = |k: &str| inputs.and_then(|i| i.get(k)).and_then(Value::as_str);
                if let (Some(plugin), Some(trigger)) = (get("plugin"), get("trigger")) {
                    routes
                        .events
                        .push((name.clone(), plugin.to_string(), trigger.to_string()));
                }
                continue;
            }
            if crate::workflow::canonical_type(kind) == "trigger.file" {
                let inputs = node.pointer("/data/inputs").cloned().unwrap_or(Value::Null);
                if let Some(t) =
                    super::files::FileTrigger::from_inputs(&name, &inputs, state.home.root())
                {
                    routes.files.push(t);
                }
                continue;
            }
            if crate::workflow::canonical_type(kind) != "trigger.webhook" {
                continue;
            }
            let inputs = node.pointer("/data/inputs").cloned().unwrap_or(Value::Null);
            let path = inputs
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or(&name)
                .trim_matches('/')
                .to_string();
            let method = inputs
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("POST")
                .to_string();
            if let Some(other) = routes.hooks.get(&path) {
                tracing::warn!(
                    "webhook path {path} is used by {} and {name}; {} keeps it",
                    other.workflow,
                    other.workflow
                );
                continue;
            }
            routes.hooks.insert(
                path,
                Arc::new(Hook {
                    workflow: name.clone(),
                    node: node
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    method,
                    inputs,
                    responds,
                }),
            );
        }
    }
    let files = routes.files.clone();
    let events = routes.events.clone();
    if let Ok(mut current) = state.routes.write() {
        *current = Arc::new(routes);
    }
    // File watchers follow the file triggers (replacing the old ones).
    if let Some(me) = state.me.get().and_then(std::sync::Weak::upgrade)
        && let Some(rt) = state.rt.get()
    {
        // May run on a watcher thread: spawn onto the daemon's runtime.
        let _entered = rt.enter();
        let watchers = super::files::watch(me.clone(), files);
        if let Ok(mut current) = state.file_watchers.lock() {
            *current = watchers;
        }
        // Event triggers: stop the old supervisors (killing their processes), start the new.
        if let Ok(mut tasks) = state.trigger_tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
            *tasks = super::plugins::start_triggers(me, events);
        }
    }
    super::scheduler::sync(state);
}

/// The current routes.
pub(super) fn current(state: &State) -> Arc<Routes> {
    state.routes.read().map(|r| r.clone()).unwrap_or_default()
}
