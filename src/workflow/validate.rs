//! Static checks of a workflow. Every problem is collected (not just the first),
//! each with the node id and the JSON path, and a clean workflow becomes a
//! [`Plan`].

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::model::{OnError, Workflow};
use crate::engine::duration;
use crate::engine::expr::{CONTEXT_NAMES, Expressions, Template, has_template};
use crate::engine::plan::{Plan, PlannedEdge, PlannedNode, RetryPolicy};
use crate::nodes::{DEFAULT_HANDLES, DEFAULT_TARGET_HANDLES, ERROR_HANDLE, Handles, Registry};

/// One thing wrong with a workflow.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// JSON path in the file, e.g. `nodes[2].data.inputs.url`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(node) => write!(f, "node {node:?} ({}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Where the workflow came from (for relative paths and history).
#[derive(Clone, Default)]
pub struct Source<'a> {
    pub path: Option<&'a Path>,
    /// The exact text of the file, hashed for history.
    /// Owned text moves into the plan; borrowed text is copied.
    pub text: Option<std::borrow::Cow<'a, str>>,
    /// Whether a credential of a name is stored (for bare names in
    /// expressions); without it, none is.
    pub credential_exists: Option<&'a dyn Fn(&str) -> bool>,
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("credential_exists", &self.credential_exists.is_some())
            .finish_non_exhaustive()
    }
}

/// Checks `workflow` against `registry`; returns a plan or every problem found.
pub fn validate(
    mut workflow: Workflow,
    registry: &Registry,
    exprs: &Expressions,
    source: Source<'_>,
) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut p = |node: Option<&str>, path: String, message: String| {
        problems.push(Problem {
            node: node.map(str::to_string),
            path,
            message,
        })
    };

    if workflow.nodes.is_empty() {
        p(
            None,
            "nodes".into(),
            "the workflow has no nodes; add at least one".into(),
        );
    }
    if let Some(name) = &workflow.name
        && let Err(e) = super::workflow_id(name)
    {
        p(None, "name".into(), e);
    }
    if let Some(params) = &workflow.params {
        for (path, message) in super::params::check_declaration(params) {
            p(None, path, message);
        }
    }
    // Where declared params are read from: `trigger.NAME` for manual runs,
    // `trigger.body.NAME` for webhooks; other triggers make their own input.
    let param_root = workflow.params.as_ref().and_then(|_| {
        let kinds: Vec<&str> = workflow
            .nodes
            .iter()
            .map(|n| crate::workflow::canonical_type(&n.node_type))
            .filter(|t| t.starts_with("trigger.") && *t != "trigger.manual")
            .collect();
        match kinds.as_slice() {
            [] => Some("trigger."),
            k if k.iter().all(|t| *t == "trigger.webhook") => Some("trigger.body."),
            _ => None,
        }
    });
    let mut warnings = Vec::new();
    let mut strict = Vec::new();
    super::strict::unknown_keys(&workflow, &mut strict);
    for problem in strict {
        p(problem.node.as_deref(), problem.path, problem.message);
    }

    // Ids.
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, node) in workflow.nodes.iter().enumerate() {
        if node.id.trim().is_empty() {
            p(None, format!("nodes[{i}].id"), "node id is empty".into());
            continue;
        }
        if let Some(first) = index.get(&node.id) {
            p(
                Some(&node.id),
                format!("nodes[{i}].id"),
                format!("duplicate node id (also nodes[{first}]); ids must be unique"),
            );
        } else {
            index.insert(node.id.clone(), i);
        }
    }

    // Types.
    let mut impls = Vec::with_capacity(workflow.nodes.len());
    for (i, node) in workflow.nodes.iter().enumerate() {
        match registry.get(&node.node_type) {
            Some(n) => impls.push(Some(n.clone())),
            None => {
                let hint = registry
                    .suggest(&node.node_type)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_else(|| "; `fuse nodes list` shows the known types".into());
                p(
                    Some(&node.id),
                    format!("nodes[{i}].type"),
                    format!("unknown node type {:?}{hint}", node.node_type),
                );
                impls.push(None);
            }
        }
    }

    // Edges.
    let mut edges = Vec::new();
    for (e, edge) in workflow.edges.iter().enumerate() {
        let source = index.get(&edge.source).copied();
        let target = index.get(&edge.target).copied();
        if source.is_none() {
            p(
                None,
                format!("edges[{e}].source"),
                format!("edge from unknown node {:?}", edge.source),
            );
        }
        if target.is_none() {
            p(
                None,
                format!("edges[{e}].target"),
                format!("edge to unknown node {:?}", edge.target),
            );
        }
        let (Some(s), Some(t)) = (source, target) else {
            continue;
        };
        if s == t {
            p(
                Some(&edge.source),
                format!("edges[{e}]"),
                "edge from a node to itself".into(),
            );
            continue;
        }
        let allowed = impls[s]
            .as_ref()
            .map(|node| allowed_handles(&node.spec().handles, &workflow.nodes[s].data.inputs))
            .unwrap_or_default();
        if let (Some(handle), Some(_)) = (&edge.source_handle, &impls[s]) {
            let allowed = allowed.clone();
            let ok = handle == ERROR_HANDLE
                || DEFAULT_HANDLES.contains(&handle.as_str())
                || allowed.iter().any(|h| h == handle);
            if !ok {
                let mut names: Vec<String> = allowed;
                names.push(ERROR_HANDLE.into());
                p(
                    Some(&edge.source),
                    format!("edges[{e}].sourceHandle"),
                    format!(
                        "node {:?} has no handle {handle:?}; use one of: {}",
                        edge.source,
                        names.join(", ")
                    ),
                );
            }
        }
        edges.push(PlannedEdge {
            source: s,
            target: t,
            source_handle: edge
                .source_handle
                .clone()
                // A default-output name means "always", unless the node has a branch by that name.
                .filter(|h| !DEFAULT_HANDLES.contains(&h.as_str()) || allowed.contains(h))
                .map(String::into_boxed_str),
            target_handle: edge
                .target_handle
                .clone()
                .filter(|h| !DEFAULT_TARGET_HANDLES.contains(&h.as_str()))
                .map(String::into_boxed_str),
        });
    }

    let n = workflow.nodes.len();
    let mut incoming = vec![Vec::new(); n];
    let mut outgoing = vec![Vec::new(); n];
    for (i, e) in edges.iter().enumerate() {
        incoming[e.target].push(i);
        outgoing[e.source].push(i);
    }

    // Cycles.
    let order = topological_order(n, &edges);
    let acyclic = order.len() == n;
    if !acyclic {
        let cycle = find_cycle(n, &edges, &order);
        let names: Vec<&str> = cycle
            .iter()
            .map(|&i| workflow.nodes[i].id.as_str())
            .collect();
        let first = cycle.first().map(|&i| workflow.nodes[i].id.as_str());
        p(
            first,
            "edges".into(),
            format!(
                "the graph has a cycle: {} -> {}; workflows must be acyclic (use foreach to repeat work)",
                names.join(" -> "),
                names.first().unwrap_or(&"?")
            ),
        );
    }

    // Ancestors, for "expression names a node that is not upstream": computed
    // only for nodes whose expressions name other nodes.
    let ancestors = Ancestors::new(n, &edges);

    // Where a bare name in an expression is found (declared params, vars,
    // stored credentials), if anywhere.
    let credential_exists = source.credential_exists;
    let bare_params = workflow.params.as_deref().unwrap_or_default();
    let bare_vars = &workflow.settings.vars;
    let bare_known = |name: &str| -> Option<&'static str> {
        if bare_params.iter().any(|p| p.name == name) {
            Some("param")
        } else if bare_vars.contains_key(name) {
            Some("var")
        } else if credential_exists.is_some_and(|exists| exists(name)) {
            Some("credential")
        } else {
            None
        }
    };

    // Per node: inputs, expressions, durations, retry.
    let mut planned_meta = Vec::with_capacity(n);
    // Outputs expressions read: by node, or all when one reads `nodes` whole.
    let mut read_outputs = vec![false; n];
    let mut read_all_outputs = false;
    for (i, node) in workflow.nodes.iter().enumerate() {
        let id = node.id.as_str();
        let base = format!("nodes[{i}]");
        let mut has_expressions = false;
        let mut node_creds: Vec<String> = Vec::new();
        if let Some(Value::String(name)) = node.data.inputs.get("credential")
            && !has_template(name)
        {
            if crate::secrets::vault::check_name(name).is_err() {
                p(
                    Some(id),
                    format!("{base}.data.inputs.credential"),
                    format!("{name:?} is not a valid credential name (letters, digits, `_`, `-`)"),
                );
            }
            node_creds.push(name.clone());
        }
        if let Some(imp) = &impls[i] {
            let spec = imp.spec();
            let mut strict = Vec::new();
            super::strict::unknown_inputs(&node.data.inputs, spec, &base, id, &mut strict);
            for problem in strict {
                p(problem.node.as_deref(), problem.path, problem.message);
            }
            for input in spec.inputs.iter().filter(|i| i.kind == "duration") {
                if let Some(Value::String(text)) = node.data.inputs.get(&input.name)
                    && !has_template(text)
                    && let Err(e) = duration::parse(text)
                {
                    p(Some(id), format!("{base}.data.inputs.{}", input.name), e);
                }
            }
            for input in &spec.inputs {
                if input.required && !node.data.inputs.contains_key(&input.name) {
                    p(
                        Some(id),
                        format!("{base}.data.inputs.{}", input.name),
                        format!(
                            "missing required input `{}` ({}: {})",
                            input.name, input.kind, input.description
                        ),
                    );
                }
            }
        }
        let mut strings = Vec::new();
        for (key, value) in &node.data.inputs {
            collect_templates(value, &|| format!("{base}.data.inputs.{key}"), &mut strings);
        }
        if let Some(fe) = &node.foreach {
            if crate::engine::expr::single_expression(fe).is_none() {
                p(
                    Some(id),
                    format!("{base}.foreach"),
                    "foreach must be one expression like \"{{ input.items }}\"".into(),
                );
            }
            strings.push((format!("{base}.foreach"), fe.clone()));
        }
        for (path, text) in &strings {
            if !has_template(text) {
                continue;
            }
            has_expressions = true;
            for message in exprs.unknown_functions(text) {
                p(Some(id), path.clone(), format!("in {text:?}: {message}"));
            }
            match exprs.check(text) {
                Err(e) => p(
                    Some(id),
                    path.clone(),
                    format!("expression does not parse: {}", e.message),
                ),
                Ok(names) => {
                    for name in names {
                        if let Some(rest) = name.strip_prefix("nodes") {
                            match rest
                                .strip_prefix('.')
                                .and_then(|r| r.split('.').next())
                                .and_then(|target| index.get(target))
                            {
                                Some(&t) => read_outputs[t] = true,
                                None if rest.is_empty() || rest.starts_with('.') => {
                                    read_all_outputs = true
                                }
                                None => {}
                            }
                        }
                        if let Some(cred) = name
                            .strip_prefix("creds.")
                            .and_then(|rest| rest.split('.').next())
                            .filter(|c| !c.is_empty())
                            && !node_creds.iter().any(|c| c == cred)
                        {
                            node_creds.push(cred.to_string());
                        }
                        if let (Some(root), Some(params)) = (param_root, &workflow.params)
                            && let Some(field) = name
                                .strip_prefix(root)
                                .and_then(|rest| rest.split('.').next())
                            && !params.iter().any(|p| p.name == field)
                        {
                            let declared: Vec<&str> =
                                params.iter().map(|p| p.name.as_str()).collect();
                            let hint = closest(field, declared.iter().copied())
                                .map(|s| format!("did you mean `{s}`?"))
                                .unwrap_or_else(|| {
                                    format!("the declared params are: {}", declared.join(", "))
                                });
                            p(
                                Some(id),
                                path.clone(),
                                format!(
                                    "in {text:?}: `{root}{field}` is not a declared param; {hint}"
                                ),
                            );
                        }
                        check_name(
                            &name,
                            i,
                            node.foreach.is_some(),
                            &index,
                            &ancestors,
                            &impls,
                            acyclic,
                            &bare_known,
                            &mut |msg| p(Some(id), path.clone(), format!("in {text:?}: {msg}")),
                        );
                    }
                }
            }
        }
        let timeout = node
            .timeout
            .as_deref()
            .and_then(|t| match duration::parse(t) {
                Ok(d) => Some(d),
                Err(e) => {
                    p(Some(id), format!("{base}.timeout"), e);
                    None
                }
            });
        let retry = node.retry.as_ref().map(|r| {
            if r.attempts == 0 {
                p(
                    Some(id),
                    format!("{base}.retry.attempts"),
                    "attempts must be at least 1".into(),
                );
            }
            retry_checks(r, id, &base, &mut p, &mut warnings);
            let mut dur = |field: &str, value: &Option<String>, default: u64| match value {
                None => std::time::Duration::from_millis(default),
                Some(t) => duration::parse(t).unwrap_or_else(|e| {
                    p(Some(id), format!("{base}.retry.{field}"), e);
                    std::time::Duration::ZERO
                }),
            };
            RetryPolicy {
                attempts: r.attempts.max(1),
                backoff: r.backoff,
                initial: dur("initial", &r.initial, 500),
                max: dur("max", &r.max, 30_000),
                on: r.on.clone(),
            }
        });
        if node.concurrency == Some(0) {
            p(
                Some(id),
                format!("{base}.concurrency"),
                "concurrency must be at least 1".into(),
            );
        }
        let first_wins = crate::workflow::canonical_type(&node.node_type) == "flow.merge"
            && node.data.inputs.get("mode").and_then(Value::as_str) == Some("first");
        if crate::workflow::canonical_type(&node.node_type) == "flow.merge"
            && let Some(mode) = node.data.inputs.get("mode")
            && mode.as_str().is_none_or(|m| m != "all" && m != "first")
        {
            p(
                Some(id),
                format!("{base}.data.inputs.mode"),
                "mode must be \"all\" or \"first\"".into(),
            );
        }
        // Schedules are checked here, so `fuse validate` and a deploy catch them.
        let canonical = crate::workflow::canonical_type(&node.node_type);
        let input_str = |k: &str| node.data.inputs.get(k).and_then(Value::as_str);
        if canonical == "trigger.cron"
            && let Some(spec) = input_str("cron")
            && !has_template(spec)
            && let Err(e) = crate::schedule::Schedule::cron(spec, input_str("timezone"))
        {
            p(Some(id), format!("{base}.data.inputs.cron"), e);
        }
        if canonical == "trigger.interval"
            && let Some(every) = input_str("every")
            && let Err(e) = crate::schedule::Schedule::interval(every)
        {
            p(Some(id), format!("{base}.data.inputs.every"), e);
        }
        if canonical == "http.request"
            && node.data.inputs.get("enable_templating") == Some(&Value::Bool(false))
        {
            p(
                Some(id),
                format!("{base}.data.inputs.enable_templating"),
                "enable_templating: false cannot be honoured: fuse always renders {{ }} in inputs; \
                 remove it, and wrap text that must stay as written in {% raw %}…{% endraw %}"
                    .into(),
            );
        }
        if canonical == "trigger.timer" {
            timer_checks(&node.data.inputs, &base, id, &mut p);
        }
        if matches!(
            canonical,
            "trigger.cron" | "trigger.interval" | "trigger.timer"
        ) {
            if let Err(e) = crate::schedule::Missed::parse(input_str("missed")) {
                p(Some(id), format!("{base}.data.inputs.missed"), e);
            }
            if let Err(e) = crate::schedule::Overlap::parse(input_str("overlap")) {
                p(Some(id), format!("{base}.data.inputs.overlap"), e);
            }
        }
        planned_meta.push((
            timeout,
            retry.map(Box::new),
            first_wins,
            has_expressions,
            node_creds,
        ));
    }

    let settings = &workflow.settings;
    if settings.max_parallel == Some(0) {
        p(
            None,
            "settings.max_parallel".into(),
            "max_parallel must be at least 1".into(),
        );
    }
    let timeout = settings
        .timeout
        .as_deref()
        .and_then(|t| match duration::parse(t) {
            Ok(d) => Some(d),
            Err(e) => {
                p(None, "settings.timeout".into(), e);
                None
            }
        });

    if !problems.is_empty() {
        return Err(problems);
    }

    let definition = match source.text {
        Some(text) => text.into_owned(),
        None => serde_json::to_string(&workflow).unwrap_or_default(),
    };
    // The plan owns the node definitions (moved, not copied).
    let mut nodes = Vec::with_capacity(n);
    for (i, ((node, imp), (timeout, retry, first_wins, has_expressions, credentials))) in
        std::mem::take(&mut workflow.nodes)
            .into_iter()
            .zip(impls)
            .zip(planned_meta)
            .enumerate()
    {
        let Some(imp) = imp else { continue };
        let has_error_edge = outgoing[i]
            .iter()
            .any(|&e| edges[e].source_handle.as_deref() == Some(ERROR_HANDLE));
        let inputs = has_expressions.then(|| {
            node.data
                .inputs
                .iter()
                .map(|(k, v)| (k.clone(), Template::new(v)))
                .collect()
        });
        let trigger = imp.spec().trigger;
        let written = if inputs.is_none() || trigger {
            node.data.inputs
        } else {
            Map::new()
        };
        nodes.push(PlannedNode {
            id: Arc::from(node.id.as_str()),
            type_name: imp.spec().type_name.as_str().into(),
            trigger,
            node: imp,
            on_error: node.on_error.unwrap_or(OnError::Fail),
            written,
            foreach: node.foreach.map(String::into_boxed_str),
            concurrency: node.concurrency,
            incoming: std::mem::take(&mut incoming[i]).into_boxed_slice(),
            outgoing: std::mem::take(&mut outgoing[i]).into_boxed_slice(),
            retry,
            timeout,
            has_error_edge,
            first_wins,
            inputs,
            credentials,
            read_by_expressions: read_all_outputs || read_outputs[i],
        });
    }

    let hash = hex(&Sha256::digest(definition.as_bytes()));
    let fallback = source
        .path
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workflow".into());
    let base_dir = source
        .path
        .and_then(|p| std::path::absolute(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let name = workflow.display_name(&fallback);
    Ok(Plan {
        id: super::workflow_id(&name).unwrap_or_else(|_| fallback.clone()),
        name,
        max_parallel: workflow.settings.max_parallel,
        timeout,
        definition: Arc::new(definition),
        hash,
        source_path: source
            .path
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
        base_dir: Arc::new(base_dir),
        nodes,
        edges,
        index,
        params: workflow.params,
        settings: workflow.settings,
        warnings,
    })
}

/// Error kinds `retry.on.kinds` may name.
pub const RETRY_KINDS: &[&str] = &[
    "timeout",
    "network",
    "http",
    "exit",
    "process",
    "io",
    "other",
    "input",
    "expression",
    "any",
];

/// A retry whose `on` names unknown kinds (errors), or that can never retry
/// (warnings).
fn retry_checks(
    r: &super::model::RetryDef,
    id: &str,
    base: &str,
    p: &mut impl FnMut(Option<&str>, String, String),
    warnings: &mut Vec<Problem>,
) {
    let mut warn = |path: String, message: String| {
        warnings.push(Problem {
            node: Some(id.to_string()),
            path,
            message,
        })
    };
    if r.attempts == 1 {
        warn(
            format!("{base}.retry.attempts"),
            "attempts is 1, so this retry never retries (attempts counts the first one); use 2 or more"
                .into(),
        );
    }
    let Some(on) = &r.on else { return };
    for (k, kind) in on.kinds.iter().enumerate() {
        if kind == "cancelled" {
            p(
                Some(id),
                format!("{base}.retry.on.kinds[{k}]"),
                "a cancelled node is never retried; remove `cancelled`".into(),
            );
        } else if !RETRY_KINDS.contains(&kind.as_str()) {
            let hint = closest(kind, RETRY_KINDS.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("use one of: {}", RETRY_KINDS.join(", ")));
            p(
                Some(id),
                format!("{base}.retry.on.kinds[{k}]"),
                format!("unknown error kind `{kind}`; {hint}"),
            );
        }
    }
    for (k, kind) in on.kinds.iter().enumerate() {
        if kind == "input" || kind == "expression" {
            warn(
                format!("{base}.retry.on.kinds[{k}]"),
                format!("`{kind}` errors are never retried: another attempt cannot change them"),
            );
        }
    }
    let applies = !on.exit_codes.is_empty()
        || !on.statuses.is_empty()
        || on.kinds.iter().any(|k| k != "input" && k != "expression");
    if !applies {
        warn(
            format!("{base}.retry.on"),
            "this retry can never apply: `on` names no error that is ever retried".into(),
        );
    }
}

/// Checks one name an expression reads.
#[allow(clippy::too_many_arguments)]
fn check_name(
    name: &str,
    node: usize,
    in_foreach: bool,
    index: &HashMap<String, usize>,
    ancestors: &Ancestors,
    impls: &[Option<Arc<dyn crate::nodes::Node>>],
    acyclic: bool,
    bare_known: &dyn Fn(&str) -> Option<&'static str>,
    report: &mut dyn FnMut(String),
) {
    let mut parts = name.split('.');
    let root = parts.next().unwrap_or_default();
    if !CONTEXT_NAMES.contains(&root) {
        // A bare name (the seed format's `{{ api_token }}`): a declared
        // param, a var or a stored credential.
        if bare_known(root).is_some() {
            return;
        }
        let hint = closest(root, CONTEXT_NAMES.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        report(format!(
            "unknown name `{root}`{hint} (expressions can read {}; a bare name is looked up as a declared param, a var and a stored credential, and `{root}` is none of them: declare it in `params`, set it in `vars`, or store it with `fuse creds set {root} --type bearer`)",
            CONTEXT_NAMES.join(", ")
        ));
        return;
    }
    if (root == "item" || root == "index") && !in_foreach {
        report(format!("`{root}` exists only in a node with `foreach`"));
        return;
    }
    if root != "nodes" {
        return;
    }
    let Some(target) = parts.next() else { return };
    let Some(&t) = index.get(target) else {
        let hint = closest(target, index.keys().map(String::as_str))
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        report(format!("no node {target:?} in this workflow{hint}"));
        return;
    };
    if acyclic && !ancestors.of(node).contains(&t) {
        report(format!(
            "node {target:?} is not upstream of this node, so its output is not available; add an edge path from it"
        ));
        return;
    }
    match parts.next() {
        None => {}
        Some("output") => {
            let rest: Vec<&str> = parts.collect();
            if let Some(imp) = &impls[t]
                && let Some(missing) = missing_path(&imp.spec().output, &rest)
            {
                report(format!(
                    "nodes.{target}.output has no field `{missing}` ({} outputs {})",
                    imp.spec().type_name,
                    describe_schema(&imp.spec().output)
                ));
            }
        }
        Some(other) => report(format!(
            "nodes.{target} has no `{other}`; use nodes.{target}.output"
        )),
    }
}

/// The first path segment that a closed object schema says cannot exist.
fn missing_path(schema: &Value, path: &[&str]) -> Option<String> {
    let mut current = schema;
    for seg in path {
        let closed = current.get("additionalProperties") == Some(&Value::Bool(false));
        match current.get("properties").and_then(|p| p.get(*seg)) {
            Some(next) => current = next,
            None if closed => return Some((*seg).to_string()),
            None => return None,
        }
    }
    None
}

fn describe_schema(schema: &Value) -> String {
    match schema.get("properties").and_then(Value::as_object) {
        Some(props) => format!(
            "{{{}}}",
            props.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        None => "a value".into(),
    }
}

fn allowed_handles(handles: &Handles, inputs: &serde_json::Map<String, Value>) -> Vec<String> {
    match handles {
        Handles::Default => Vec::new(),
        Handles::Fixed(names) => names.clone(),
        Handles::FromInput(key) => {
            let mut names: Vec<String> = inputs
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            names.push("default".into());
            names
        }
    }
}

/// The strings under `value` that hold an expression, with their paths (made
/// only for those: most inputs are plain values).
fn collect_templates(value: &Value, path: &dyn Fn() -> String, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) if has_template(s) => out.push((path(), s.clone())),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_templates(v, &|| format!("{}[{i}]", path()), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                collect_templates(v, &|| format!("{}.{k}", path()), out);
            }
        }
        _ => {}
    }
}

/// Kahn's algorithm; shorter than `n` when there is a cycle.
fn topological_order(n: usize, edges: &[PlannedEdge]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut out = vec![Vec::new(); n];
    for e in edges {
        indegree[e.target] += 1;
        out[e.source].push(e.target);
    }
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &t in &out[i] {
            indegree[t] -= 1;
            if indegree[t] == 0 {
                queue.push_back(t);
            }
        }
    }
    order
}

/// One cycle among the nodes Kahn's algorithm could not order.
fn find_cycle(n: usize, edges: &[PlannedEdge], order: &[usize]) -> Vec<usize> {
    let ordered: HashSet<usize> = order.iter().copied().collect();
    let mut out = vec![Vec::new(); n];
    for e in edges {
        out[e.source].push(e.target);
    }
    let Some(start) = (0..n).find(|i| !ordered.contains(i)) else {
        return Vec::new();
    };
    // Every unordered node has an unordered successor; walk until a node repeats.
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut path = Vec::new();
    let mut current = start;
    loop {
        if let Some(&pos) = seen.get(&current) {
            return path[pos..].to_vec();
        }
        seen.insert(current, path.len());
        path.push(current);
        match out[current].iter().find(|t| !ordered.contains(t)) {
            Some(&next) => current = next,
            None => return path,
        }
    }
}

/// Upstream nodes of each node, found on demand by walking edges backwards.
struct Ancestors {
    parents: Vec<Vec<usize>>,
    memo: std::cell::RefCell<HashMap<usize, std::rc::Rc<HashSet<usize>>>>,
}

impl Ancestors {
    fn new(n: usize, edges: &[PlannedEdge]) -> Ancestors {
        let mut parents = vec![Vec::new(); n];
        for e in edges {
            parents[e.target].push(e.source);
        }
        Ancestors {
            parents,
            memo: Default::default(),
        }
    }

    fn of(&self, node: usize) -> std::rc::Rc<HashSet<usize>> {
        if let Some(set) = self.memo.borrow().get(&node) {
            return set.clone();
        }
        let mut seen = HashSet::new();
        let mut stack = self.parents[node].clone();
        while let Some(p) = stack.pop() {
            if seen.insert(p) {
                stack.extend(self.parents[p].iter().copied());
            }
        }
        let set = std::rc::Rc::new(seen);
        self.memo.borrow_mut().insert(node, set.clone());
        set
    }
}

/// The candidate closest to `name` by edit distance, if close enough to be a typo.
///
/// Bounded: a name longer than any sensible identifier gets no suggestion, and
/// candidates whose length is too far off are not compared, so a hostile
/// 1 MB name costs nothing.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    const LONGEST: usize = 128;
    if name.len() > LONGEST {
        return None;
    }
    let limit = (name.len() / 3).max(2);
    let lower = name.to_lowercase();
    candidates
        .filter(|c| c.len().abs_diff(name.len()) <= limit)
        .map(|c| (levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The seed format's `TimerStartNode` (`trigger.timer`): each field is
/// honoured by the daemon's scheduler, so each is checked here.
fn timer_checks(
    inputs: &serde_json::Map<String, Value>,
    base: &str,
    id: &str,
    p: &mut impl FnMut(Option<&str>, String, String),
) {
    let at = |k: &str| format!("{base}.data.inputs.{k}");
    let text = |k: &str| inputs.get(k).and_then(Value::as_str);
    let timezone = text("timezone");
    if let Some(tz) = timezone
        && let Err(e) = crate::schedule::time_zone(Some(tz))
    {
        p(Some(id), at("timezone"), e);
    }
    match text("schedule_type").unwrap_or("interval") {
        "manual" => {}
        "interval" => {
            if let Some(v) = inputs.get("interval_seconds")
                && v.as_f64().is_none_or(|s| s < 1.0)
            {
                p(
                    Some(id),
                    at("interval_seconds"),
                    format!("interval_seconds must be a number of at least 1, not {v}"),
                );
            }
        }
        "cron" => match text("cron_expression") {
            None => p(
                Some(id),
                at("cron_expression"),
                "schedule_type cron needs cron_expression, e.g. \"0 9 * * 1-5\"".into(),
            ),
            Some(spec) if !has_template(spec) => {
                if let Err(e) = crate::schedule::Schedule::cron(spec, timezone) {
                    p(Some(id), at("cron_expression"), e);
                }
            }
            Some(_) => {}
        },
        "once" => match text("scheduled_time") {
            None => p(
                Some(id),
                at("scheduled_time"),
                "schedule_type once needs scheduled_time, e.g. \"2026-12-01T09:00:00Z\"".into(),
            ),
            Some(when) => {
                if let Err(e) = crate::schedule::Schedule::once(when, timezone) {
                    p(Some(id), at("scheduled_time"), e);
                }
            }
        },
        other => p(
            Some(id),
            at("schedule_type"),
            format!("schedule_type {other:?} must be interval, cron, once or manual"),
        ),
    }
    for key in ["max_executions", "retry_count"] {
        if let Some(v) = inputs.get(key)
            && v.as_i64().is_none_or(|n| n < 0)
        {
            p(
                Some(id),
                at(key),
                format!("{key} must be a whole number of at least 0, not {v}"),
            );
        }
    }
}
