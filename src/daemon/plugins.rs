//! Plugins in the daemon: HTTP routes under `/plugins/<plugin>/<path>`, served
//! by the plugin's persistent process, and event triggers: long-running
//! commands whose JSON lines start the workflows listening to them
//! (`trigger.event`).
//!
//! A route call is a node call to the plugin's runtime with
//! `params = {method, path, query, headers, body}`; the reply's `output` is
//! `{status, headers, body}` (docs/node-protocol.md).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use super::State;
use crate::nodes::{Node, NodeCtx};
use crate::packages::{Catalog, Package};

/// A loaded plugin's route handler (its runtime as a node) and route table.
pub(crate) struct PluginRoutes {
    pub handler: Arc<dyn Node>,
    pub routes: Vec<crate::packages::manifest::RouteDecl>,
}

/// Route handlers of the home's plugins, by plugin name.
pub(crate) fn load(state: &State) -> HashMap<String, PluginRoutes> {
    let catalog = Catalog::discover(
        &state.home.node_packages_dir(),
        &state.home.plugin_packages_dir(),
    );
    let mut out = HashMap::new();
    for plugin in &catalog.plugins {
        if plugin.manifest.routes.is_empty() {
            continue;
        }
        let mut as_node = plugin.clone();
        as_node.manifest.kind = crate::packages::Kind::Node;
        match crate::packages::runtime::node_for(&as_node, Some(state.home.root())) {
            Ok(handler) => {
                out.insert(
                    plugin.manifest.name.clone(),
                    PluginRoutes {
                        handler,
                        routes: plugin.manifest.routes.clone(),
                    },
                );
            }
            Err(e) => tracing::warn!("plugin {}: routes not served: {e}", plugin.manifest.name),
        }
    }
    out
}

/// A context for calling a plugin's process outside a run.
fn context(state: &State, node_id: &str, params: serde_json::Map<String, Value>) -> NodeCtx {
    NodeCtx {
        node_id: Arc::from(node_id),
        params,
        input: Arc::new(Value::Null),
        run: Arc::new(crate::nodes::RunInfo {
            id: format!("plugin-{}", uuid::Uuid::now_v7()).into(),
            workflow: String::new(),
            started_at: jiff::Timestamp::now().to_string(),
            depth: 0,
            responder: None,
        }),
        cancel: tokio_util::sync::CancellationToken::new(),
        base_dir: Arc::new(state.home.root().to_path_buf()),
        observer: Arc::new(crate::engine::NullObserver),
        engine: state.engine.clone(),
        creds: Arc::new(crate::engine::RunCreds::default()),
        steps: Default::default(),
    }
}

/// The outcome of a plugin route: Err(status, message) when it did not run.
/// `request` is `{method, path, query, headers, body}` (the route's `params`).
pub(super) async fn call_route(
    state: &State,
    plugin: &str,
    request: Value,
    has_token: bool,
) -> Result<Value, (u16, String)> {
    let method = request["method"].as_str().unwrap_or("GET").to_string();
    let path = request["path"].as_str().unwrap_or("/").to_string();
    let Some(found) = state.plugin_routes.get().and_then(|m| m.get(plugin)) else {
        return Err((404, format!("no plugin {plugin:?} with routes")));
    };
    let Some(route) = found.routes.iter().find(|r| r.path == path) else {
        return Err((404, format!("plugin {plugin} has no route {path}")));
    };
    if !route
        .methods
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&method))
    {
        return Err((405, format!("{path} takes {}", route.methods.join(", "))));
    }
    if !route.public && !has_token {
        return Err((
            401,
            "this plugin route needs the API token (Authorization: Bearer …)".into(),
        ));
    }
    let ctx = context(
        state,
        &format!("plugin:{plugin}"),
        request.as_object().cloned().unwrap_or_default(),
    );
    match found.handler.run(ctx).await {
        Ok(out) => Ok(out.value),
        Err(e) => Err((502, e.message)),
    }
}

/// Starts the event triggers that enabled workflows listen to; returns their
/// supervisor tasks (aborted when workflows change).
pub(super) fn start_triggers(
    state: Arc<State>,
    listeners: Vec<(String, String, String)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let catalog = Catalog::discover(
        &state.home.node_packages_dir(),
        &state.home.plugin_packages_dir(),
    );
    // (plugin, trigger) -> workflows
    let mut wanted: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (workflow, plugin, trigger) in listeners {
        wanted.entry((plugin, trigger)).or_default().push(workflow);
    }
    let mut tasks = Vec::new();
    for ((plugin_name, trigger_name), workflows) in wanted {
        let Some(plugin) = catalog
            .plugins
            .iter()
            .find(|p| p.manifest.name == plugin_name)
        else {
            tracing::warn!(
                "{}: no plugin {plugin_name} for trigger.event",
                workflows.join(", ")
            );
            continue;
        };
        let Some(decl) = plugin
            .manifest
            .triggers
            .iter()
            .find(|t| t.name == trigger_name)
        else {
            tracing::warn!("plugin {plugin_name} has no trigger {trigger_name}");
            continue;
        };
        tasks.push(tokio::spawn(supervise(
            state.clone(),
            plugin.clone(),
            decl.command.clone(),
            trigger_name,
            workflows,
        )));
    }
    tasks
}

/// Runs a trigger command, restarting it with backoff; each JSON line starts
/// a run of every listening workflow.
async fn supervise(
    state: Arc<State>,
    plugin: Package,
    command: Vec<String>,
    name: String,
    workflows: Vec<String>,
) {
    let mut failures = 0u32;
    loop {
        let mut cmd = tokio::process::Command::new(&command[0]);
        cmd.args(&command[1..])
            .current_dir(&plugin.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FUSE_PACKAGE", &plugin.manifest.name)
            .env("FUSE_PACKAGE_DIR", &plugin.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        for var in &plugin.manifest.permissions.env {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        #[cfg(unix)]
        cmd.process_group(0);
        match cmd.spawn() {
            Ok(mut child) => {
                let _group = crate::nodes::builtin::exec::ProcessGroup(child.id());
                if let Some(out) = child.stdout.take() {
                    let mut lines = tokio::io::BufReader::new(out).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let Ok(event) = serde_json::from_str::<Value>(&line) else {
                            tracing::warn!(
                                "plugin {} trigger {name}: a line that is not JSON",
                                plugin.manifest.name
                            );
                            continue;
                        };
                        failures = 0;
                        for wf in &workflows {
                            let input = json!({"plugin": plugin.manifest.name, "trigger": name, "event": event});
                            if let Err(r) = super::api::start_run(&state, wf, input, "event").await
                            {
                                tracing::warn!("{wf}: event run not started ({})", r.status());
                            }
                        }
                    }
                }
                let _ = child.wait().await;
                tracing::warn!(
                    "plugin {} trigger {name} exited; restarting",
                    plugin.manifest.name
                );
            }
            Err(e) => tracing::warn!(
                "plugin {} trigger {name} cannot start: {e}",
                plugin.manifest.name
            ),
        }
        failures += 1;
        tokio::time::sleep(Duration::from_millis(200u64 << failures.min(6))).await;
    }
}
