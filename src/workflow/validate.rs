//! Static checks of a workflow. Every problem is collected (not just the first),
//! each with the node id and the JSON path, and a clean workflow becomes a
//! [`Plan`].

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::digest::hex;
use crate::engine::definition::{Definition, DefinitionFile, Hashing, definition_hash};
use serde::Serialize;
use serde_json::Value;
use sha2::Digest;

use super::model::{EdgeDef, Head, NodeDef, OnError, Workflow};
use crate::engine::duration;
use crate::engine::expr::{CONTEXT_NAMES, Expressions, Template, has_template};
use crate::engine::plan::{
    Apart, Chunked, Edges, Kind, Links, More, NodeIndex, Plan, PlannedNode, RetryPolicy, Templates,
};
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

/// Why a workflow text is not a plan.
#[derive(Debug)]
pub enum Rejected {
    /// Not JSON, or not of the workflow's shape.
    Parse(super::model::ParseError),
    /// Every problem found.
    Invalid(Vec<Problem>),
}

/// Parses `text` and checks it against `registry`; returns a plan or why
/// not. Nodes and edges are checked and planned one by one as they are read
/// ([`Workflow::stream`]): the parsed workflow is never held whole beside the
/// plan. The text itself becomes the plan's definition.
pub fn validate(
    text: std::borrow::Cow<'_, str>,
    registry: &Registry,
    exprs: &Expressions,
    source: Source<'_>,
) -> Result<Plan, Rejected> {
    let mut builder = Builder::new(registry, exprs, source.credential_exists);
    let head = Workflow::stream(&text, &mut builder).map_err(Rejected::Parse)?;
    let hash = definition_hash(&text);
    let definition = Definition::Text(Arc::new(text.into_owned()));
    builder
        .finish(head, definition, hash, source.path)
        .map_err(Rejected::Invalid)
}

/// [`validate`] of a file read as a stream (at most `limit` bytes of it):
/// its text is not held, and the plan's definition reads it back from the
/// file when needed ([`Definition::File`]).
pub fn validate_file(
    file: std::fs::File,
    limit: u64,
    registry: &Registry,
    exprs: &Expressions,
    source: Source<'_>,
) -> Result<Plan, Rejected> {
    use std::io::Read;
    let path = source.path.unwrap_or(Path::new("workflow"));
    let mut builder = Builder::new(registry, exprs, source.credential_exists);
    // Hashed as read, in the reader's large reads (the parser reads byte by byte).
    let mut read = std::io::BufReader::with_capacity(64 * 1024, Hashing::new(file.take(limit)));
    // The file read again (by its path, when it has one), on an error.
    let reopen = |limit: u64| {
        let again = source.path.and_then(|p| std::fs::File::open(p).ok());
        again.map(|f| std::io::BufReader::with_capacity(64 * 1024, f.take(limit)))
    };
    let hint = || {
        // A syntax error: what the file's start says it may be instead.
        let mut start = Vec::new();
        reopen(64 * 1024)?.read_to_end(&mut start).ok()?;
        super::model::format_hint(&String::from_utf8_lossy(&start))
    };
    // And an error's JSON path is found by reading it with tracking.
    let again = || reopen(limit);
    let head =
        Workflow::stream_reader(&mut read, &mut builder, hint, again).map_err(Rejected::Parse)?;
    let read = read.into_inner();
    let hash = hex(&read.hash.finalize());
    let definition = Definition::File(Arc::new(DefinitionFile {
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        len: read.len,
        hash: hash.clone(),
    }));
    builder
        .finish(head, definition, hash, source.path)
        .map_err(Rejected::Invalid)
}

/// Where a problem goes in the report: problems are found in reading order
/// but reported by kind (keys, ids, types, edges, cycles, each node's own),
/// then by node or edge, as a whole-workflow check would list them.
type Order = (u8, usize, u32);
const HEAD: u8 = 0;
const TOP_KEYS: u8 = 1;
const NODE_KEYS: u8 = 2;
const EDGE_KEYS: u8 = 3;
const IDS: u8 = 4;
const TYPES: u8 = 5;
const EDGES: u8 = 6;
const CYCLES: u8 = 7;
const NODES: u8 = 8;
const SETTINGS: u8 = 9;
/// Within a node's own problems: its inputs first, then each expression
/// (`2k + 1` as read, `2k + 2` what it names), then the rest.
const INPUTS: u32 = 0;
const LAST: u32 = u32::MAX;

/// `nodes[i]`, where a node's JSON paths start: written out only in the
/// path of a problem.
#[derive(Clone, Copy)]
struct NodePath(usize);

impl std::fmt::Display for NodePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nodes[{}]", self.0)
    }
}

/// An expression whose names are checked once every node and edge is known.
struct Deferred {
    node: usize,
    /// The node has `foreach` (`item` and `index` exist).
    in_foreach: bool,
    order: u32,
    path: String,
    text: String,
    names: Vec<String>,
}

/// Checks and plans nodes and edges as they are read ([`super::model::Sink`]).
struct Builder<'a> {
    registry: &'a Registry,
    exprs: &'a Expressions,
    credential_exists: Option<&'a dyn Fn(&str) -> bool>,
    problems: Vec<(Order, Problem)>,
    warnings: Vec<Problem>,
    /// A node with an unknown type has no planned node (`None`); such a plan
    /// is never returned.
    nodes: Chunked<Option<PlannedNode>>,
    /// Ids of the nodes without a planned node, for messages.
    unplanned: HashMap<usize, Box<str>>,
    index: NodeIndex,
    /// What the plan keeps for its nodes apart from them.
    apart: Apart,
    /// Each node type's index in [`Apart::kinds`].
    kinds: HashMap<String, u16, foldhash::fast::RandomState>,
    /// Branch names of the nodes that have them (a switch's cases).
    handles: HashMap<usize, Vec<String>>,
    /// Trigger nodes other than `trigger.manual`: webhooks, and any other
    /// kind (for where params are read from).
    webhook_triggers: bool,
    other_triggers: bool,
    deferred: Vec<Deferred>,
    edges: Edges,
    /// Edges read before the nodes (`edges` first in the file).
    early_edges: Vec<(usize, EdgeDef)>,
    nodes_read: bool,
    edge_count: usize,
    /// Reused for each node's inputs as written.
    scratch: String,
}

impl super::model::Sink for Builder<'_> {
    fn node(&mut self, node: NodeDef) {
        self.add_node(node);
    }

    fn nodes_done(&mut self) {
        self.nodes_read = true;
        for (e, edge) in std::mem::take(&mut self.early_edges) {
            self.add_edge(e, edge);
        }
    }

    fn edge(&mut self, edge: EdgeDef) {
        let e = self.edge_count;
        self.edge_count += 1;
        let mut keys = Vec::new();
        super::strict::edge_keys(&edge, e, &mut keys);
        for problem in keys {
            self.problems.push(((EDGE_KEYS, e, 0), problem));
        }
        if self.nodes_read {
            self.add_edge(e, edge);
        } else {
            self.early_edges.push((e, edge));
        }
    }
}

/// The id of node `i` of a plan being built.
fn id_at<'n>(
    nodes: &'n Chunked<Option<PlannedNode>>,
    unplanned: &'n HashMap<usize, Box<str>>,
    i: usize,
) -> &'n str {
    match &nodes[i] {
        Some(node) => &node.id,
        None => unplanned.get(&i).map_or("", |id| id),
    }
}

impl<'a> Builder<'a> {
    fn new(
        registry: &'a Registry,
        exprs: &'a Expressions,
        credential_exists: Option<&'a dyn Fn(&str) -> bool>,
    ) -> Builder<'a> {
        Builder {
            registry,
            exprs,
            credential_exists,
            problems: Vec::new(),
            warnings: Vec::new(),
            nodes: Chunked::default(),
            unplanned: HashMap::new(),
            index: NodeIndex::default(),
            apart: Apart::default(),
            kinds: HashMap::default(),
            handles: HashMap::new(),
            webhook_triggers: false,
            other_triggers: false,
            deferred: Vec::new(),
            edges: Edges::default(),
            early_edges: Vec::new(),
            nodes_read: false,
            edge_count: 0,
            scratch: String::new(),
        }
    }

    fn id_of(&self, i: usize) -> &str {
        id_at(&self.nodes, &self.unplanned, i)
    }

    /// The first node with this id.
    fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id, |j| self.id_of(j))
    }

    fn imp(&self, i: usize) -> Option<&Arc<dyn crate::nodes::Node>> {
        let kind = self.nodes[i].as_ref()?.kind();
        Some(&self.apart.kinds.get(kind)?.imp)
    }

    fn add_node(&mut self, mut node: NodeDef) {
        let i = self.nodes.len();
        let problems = std::cell::RefCell::new(Vec::new());
        let mut keys = Vec::new();
        super::strict::node_keys(&node, i, &mut keys);
        problems
            .borrow_mut()
            .extend(keys.into_iter().map(|k| ((NODE_KEYS, i, 0), k)));
        // The id moves to the planned node (its text is read with exact capacity).
        let id: Box<str> = std::mem::take(&mut node.id).into_boxed_str();
        let p = |order: Order, path: String, message: String| {
            problems.borrow_mut().push((
                order,
                Problem {
                    node: Some(id.to_string()),
                    path,
                    message,
                },
            ))
        };

        // Id.
        if id.trim().is_empty() {
            problems.borrow_mut().push((
                (IDS, i, 0),
                Problem {
                    node: None,
                    path: format!("nodes[{i}].id"),
                    message: "node id is empty".into(),
                },
            ));
        } else {
            let (nodes, unplanned) = (&self.nodes, &self.unplanned);
            if let Err(first) = self.index.insert(i, &id, |j| id_at(nodes, unplanned, j)) {
                p(
                    (IDS, i, 0),
                    format!("nodes[{i}].id"),
                    format!("duplicate node id (also nodes[{first}]); ids must be unique"),
                );
            }
        }

        // Type.
        let imp = self.registry.get(&node.node_type).cloned();
        if imp.is_none() {
            let hint = self
                .registry
                .suggest(&node.node_type)
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_else(|| "; `fuse nodes list` shows the known types".into());
            p(
                (TYPES, i, 0),
                format!("nodes[{i}].type"),
                format!("unknown node type {:?}{hint}", node.node_type),
            );
        }
        let canonical = crate::workflow::canonical_type(&node.node_type);
        match canonical {
            "trigger.manual" => {}
            "trigger.webhook" => self.webhook_triggers = true,
            other if other.starts_with("trigger.") => self.other_triggers = true,
            _ => {}
        }

        // Inputs.
        let base = NodePath(i);
        let order = (NODES, i, INPUTS);
        let inputs = &node.data.inputs;
        let mut credentials: Vec<String> = Vec::new();
        if let Some(Value::String(name)) = inputs.get("credential")
            && !has_template(name)
        {
            if crate::secrets::vault::check_name(name).is_err() {
                p(
                    order,
                    format!("{base}.data.inputs.credential"),
                    format!("{name:?} is not a valid credential name (letters, digits, `_`, `-`)"),
                );
            }
            credentials.push(name.clone());
        }
        if let Some(imp) = &imp {
            let spec = imp.spec();
            let allowed = allowed_handles(&spec.handles, inputs);
            if !allowed.is_empty() {
                self.handles.insert(i, allowed);
            }
            let mut strict = Vec::new();
            super::strict::unknown_inputs(inputs, spec, base, &id, &mut strict);
            problems
                .borrow_mut()
                .extend(strict.into_iter().map(|s| (order, s)));
            let p = |path: String, message: String| p(order, path, message);
            for input in spec.inputs.iter().filter(|i| i.kind == "duration") {
                if let Some(Value::String(text)) = inputs.get(&input.name)
                    && !has_template(text)
                    && let Err(e) = duration::parse(text)
                {
                    p(format!("{base}.data.inputs.{}", input.name), e);
                }
            }
            for input in &spec.inputs {
                if input.required && !inputs.contains_key(&input.name) {
                    p(
                        format!("{base}.data.inputs.{}", input.name),
                        format!(
                            "missing required input `{}` ({}: {})",
                            input.name, input.kind, input.description
                        ),
                    );
                }
            }
        }

        // Expressions: parsed and their functions checked now; the names they
        // read once every node and edge is known.
        let mut strings = Vec::new();
        for (key, value) in inputs {
            collect_templates(value, &|| format!("{base}.data.inputs.{key}"), &mut strings);
        }
        if let Some(fe) = &node.foreach {
            if crate::engine::expr::single_expression(fe).is_none() {
                p(
                    order,
                    format!("{base}.foreach"),
                    "foreach must be one expression like \"{{ input.items }}\"".into(),
                );
            }
            strings.push((format!("{base}.foreach"), fe.clone()));
        }
        let mut has_expressions = false;
        for (k, (path, text)) in strings.into_iter().enumerate() {
            if !has_template(&text) {
                continue;
            }
            has_expressions = true;
            let read = (NODES, i, 1 + 2 * k as u32);
            for message in self.exprs.unknown_functions(&text) {
                p(read, path.clone(), format!("in {text:?}: {message}"));
            }
            match self.exprs.check(&text) {
                Err(e) => p(
                    read,
                    path,
                    format!("expression does not parse: {}", e.message),
                ),
                Ok(names) => {
                    for name in &names {
                        if let Some(cred) = name
                            .strip_prefix("creds.")
                            .and_then(|rest| rest.split('.').next())
                            .filter(|c| !c.is_empty())
                            && !credentials.iter().any(|c| c == cred)
                        {
                            credentials.push(cred.to_string());
                        }
                    }
                    self.deferred.push(Deferred {
                        node: i,
                        in_foreach: node.foreach.is_some(),
                        order: 2 + 2 * k as u32,
                        path,
                        text,
                        names,
                    });
                }
            }
        }

        // The rest of the node.
        let last = (NODES, i, LAST);
        let timeout = optional_duration(node.timeout.as_deref(), |e| {
            p(last, format!("{base}.timeout"), e)
        });
        let retry = node.retry.as_ref().map(|r| {
            let mut q = |_: Option<&str>, path: String, message: String| p(last, path, message);
            if r.attempts == 0 {
                q(
                    None,
                    format!("{base}.retry.attempts"),
                    "attempts must be at least 1".into(),
                );
            }
            retry_checks(r, &id, base, &mut q, &mut self.warnings);
            let dur = |field: &str, value: &Option<String>, default: u64| match value {
                None => std::time::Duration::from_millis(default),
                Some(t) => duration::parse(t).unwrap_or_else(|e| {
                    q(None, format!("{base}.retry.{field}"), e);
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
                last,
                format!("{base}.concurrency"),
                "concurrency must be at least 1".into(),
            );
        }
        let first_wins = canonical == "flow.merge"
            && inputs.get("mode").and_then(Value::as_str) == Some("first");
        if canonical == "flow.merge"
            && let Some(mode) = inputs.get("mode")
            && mode.as_str().is_none_or(|m| m != "all" && m != "first")
        {
            p(
                last,
                format!("{base}.data.inputs.mode"),
                "mode must be \"all\" or \"first\"".into(),
            );
        }
        // Schedules are checked here, so `fuse validate` and a deploy catch them.
        let input_str = |k: &str| inputs.get(k).and_then(Value::as_str);
        if canonical == "trigger.cron"
            && let Some(spec) = input_str("cron")
            && !has_template(spec)
            && let Err(e) = crate::schedule::Schedule::cron(spec, input_str("timezone"))
        {
            p(last, format!("{base}.data.inputs.cron"), e);
        }
        if canonical == "trigger.interval"
            && let Some(every) = input_str("every")
            && let Err(e) = crate::schedule::Schedule::interval(every)
        {
            p(last, format!("{base}.data.inputs.every"), e);
        }
        if canonical == "http.request"
            && inputs.get("enable_templating") == Some(&Value::Bool(false))
        {
            p(
                last,
                format!("{base}.data.inputs.enable_templating"),
                "enable_templating: false cannot be honoured: fuse always renders {{ }} in inputs; \
                 remove it, and wrap text that must stay as written in {% raw %}…{% endraw %}"
                    .into(),
            );
        }
        if canonical == "trigger.timer" {
            timer_checks(inputs, base, &id, &mut |_, path, message| {
                p(last, path, message)
            });
        }
        if matches!(
            canonical,
            "trigger.cron" | "trigger.interval" | "trigger.timer"
        ) {
            if let Err(e) = crate::schedule::Missed::parse(input_str("missed")) {
                p(last, format!("{base}.data.inputs.missed"), e);
            }
            if let Err(e) = crate::schedule::Overlap::parse(input_str("overlap")) {
                p(last, format!("{base}.data.inputs.overlap"), e);
            }
        }
        self.problems.append(&mut problems.into_inner());

        // The planned node: only what runs need, in its compact form.
        let Some(imp) = imp else {
            self.unplanned.insert(i, id);
            self.nodes.push(None);
            return;
        };
        let spec = imp.spec();
        let kind = match self.kinds.get(&spec.type_name) {
            Some(&kind) => Some(kind),
            None => {
                let kind = self.apart.add_kind(Kind {
                    name: Arc::from(spec.type_name.as_str()),
                    imp: imp.clone(),
                });
                if let Some(kind) = kind {
                    self.kinds.insert(spec.type_name.clone(), kind);
                }
                kind
            }
        };
        let Some(kind) = kind else {
            self.problems.push((
                (TYPES, i, 0),
                Problem {
                    node: Some(id.to_string()),
                    path: format!("nodes[{i}].type"),
                    message: "the workflow uses more than 65,536 node types; split it".into(),
                },
            ));
            self.unplanned.insert(i, id);
            self.nodes.push(None);
            return;
        };
        let mut planned = PlannedNode::new(id, kind, spec.trigger);
        let inputs = std::mem::take(&mut node.data.inputs);
        let templates = has_expressions.then(|| {
            inputs
                .iter()
                .map(|(k, v)| (k.clone(), Template::new(v)))
                .collect()
        });
        if templates.is_none() || planned.trigger {
            // Written in a buffer the builder reuses; writing a JSON value's
            // text into a `String` cannot fail.
            use std::fmt::Write;
            let mut text = std::mem::take(&mut self.scratch);
            text.clear();
            planned.written = match write!(text, "{}", Value::Object(inputs)) {
                Ok(()) => self.apart.texts.push(&text),
                Err(_) => None,
            };
            self.scratch = text;
            if planned.written.is_none() {
                // An object's text is never empty: the plan's texts passed 4 GiB.
                self.problems.push((
                    (NODES, i, LAST),
                    Problem {
                        node: Some(planned.id.to_string()),
                        path: format!("{base}.data.inputs"),
                        message: "the workflow's inputs pass 4 GiB in all; split the workflow"
                            .into(),
                    },
                ));
            }
        }
        if let Some(templates) = templates {
            self.apart.templates.insert(i as u32, Templates(templates));
        }
        let more = More {
            foreach: node.foreach.take().map(String::into_boxed_str),
            concurrency: node.concurrency,
            retry,
            timeout,
            credentials,
        };
        let plain = more.foreach.is_none()
            && more.concurrency.is_none()
            && more.retry.is_none()
            && more.timeout.is_none()
            && more.credentials.is_empty();
        if !plain {
            self.apart.more.insert(i as u32, more);
        }
        planned.on_error = node.on_error.unwrap_or(OnError::Fail);
        planned.first_wins = first_wins;
        self.nodes.push(Some(planned));
    }

    fn add_edge(&mut self, e: usize, edge: EdgeDef) {
        let source = self.position(&edge.source);
        let target = self.position(&edge.target);
        let mut p = |node: Option<&str>, path: String, message: String| {
            self.problems.push((
                (EDGES, e, 0),
                Problem {
                    node: node.map(str::to_string),
                    path,
                    message,
                },
            ))
        };
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
            return;
        };
        if s == t {
            p(
                Some(&edge.source),
                format!("edges[{e}]"),
                "edge from a node to itself".into(),
            );
            return;
        }
        let known = self.nodes[s].is_some();
        let allowed: &[String] = self.handles.get(&s).map_or(&[], Vec::as_slice);
        if let (Some(handle), true) = (&edge.source_handle, known) {
            let ok = handle == ERROR_HANDLE
                || DEFAULT_HANDLES.contains(&handle.as_str())
                || allowed.iter().any(|h| h == handle);
            if !ok {
                let mut names: Vec<String> = allowed.to_vec();
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
        let source_handle = edge
            .source_handle
            // A default-output name means "always", unless the node has a branch by that name.
            .filter(|h| !DEFAULT_HANDLES.contains(&h.as_str()) || allowed.contains(h))
            .map(String::into_boxed_str);
        let target_handle = edge
            .target_handle
            .filter(|h| !DEFAULT_TARGET_HANDLES.contains(&h.as_str()))
            .map(String::into_boxed_str);
        self.edges
            .push(s as u32, t as u32, source_handle, target_handle);
    }

    fn finish(
        mut self,
        head: Head,
        definition: Definition,
        hash: String,
        path: Option<&Path>,
    ) -> Result<Plan, Vec<Problem>> {
        // Edges read before the nodes were added when the nodes were done
        // (`nodes_done`; a workflow without `nodes` does not parse).
        let n = self.nodes.len();
        let p = |order: Order, node: Option<&str>, path: String, message: String| {
            (
                order,
                Problem {
                    node: node.map(str::to_string),
                    path,
                    message,
                },
            )
        };
        let mut found = Vec::new();

        if n == 0 {
            found.push(p(
                (HEAD, 0, 0),
                None,
                "nodes".into(),
                "the workflow has no nodes; add at least one".into(),
            ));
        }
        if let Some(name) = &head.name
            && let Err(e) = super::workflow_id(name)
        {
            found.push(p((HEAD, 0, 0), None, "name".into(), e));
        }
        if let Some(params) = &head.params {
            for (path, message) in super::params::check_declaration(params) {
                found.push(p((HEAD, 0, 0), None, path, message));
            }
        }
        let mut keys = Vec::new();
        super::strict::head_keys(&head, &mut keys);
        found.extend(keys.into_iter().map(|k| ((TOP_KEYS, 0, 0), k)));

        // Cycles.
        let links = Links::new(n, &self.edges);
        let graph = Graph {
            links: &links,
            edges: &self.edges,
        };
        let order = topological_order(n, &graph);
        let acyclic = order.len() == n;
        if !acyclic {
            let cycle = find_cycle(n, &graph, &order);
            let names: Vec<&str> = cycle.iter().map(|&i| self.id_of(i)).collect();
            let first = cycle.first().map(|&i| self.id_of(i));
            found.push(p(
                (CYCLES, 0, 0),
                first,
                "edges".into(),
                format!(
                    "the graph has a cycle: {} -> {}; workflows must be acyclic (use foreach to repeat work)",
                    names.join(" -> "),
                    names.first().unwrap_or(&"?")
                ),
            ));
        }
        drop(order);

        // Where declared params are read from: `trigger.NAME` for manual runs,
        // `trigger.body.NAME` for webhooks; other triggers make their own input.
        let root = match (self.webhook_triggers, self.other_triggers) {
            (false, false) => Some("trigger."),
            (true, false) => Some("trigger.body."),
            (_, true) => None,
        };
        let param_root = head.params.as_ref().and(root);
        // Where a bare name in an expression is found (declared params, vars,
        // stored credentials), if anywhere.
        let credential_exists = self.credential_exists;
        let bare_params = head.params.as_deref().unwrap_or_default();
        let bare_vars = &head.settings.vars;
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

        // What expressions name. Ancestors are computed only for nodes whose
        // expressions name other nodes.
        let ancestors = std::cell::OnceCell::new();
        let mut read_outputs = HashSet::new();
        let mut read_all_outputs = false;
        for d in std::mem::take(&mut self.deferred) {
            let id = self.id_of(d.node);
            let order = (NODES, d.node, d.order);
            let text = &d.text;
            for name in &d.names {
                if let Some(rest) = name.strip_prefix("nodes") {
                    match rest
                        .strip_prefix('.')
                        .and_then(|r| r.split('.').next())
                        .and_then(|target| self.position(target))
                    {
                        Some(t) => {
                            read_outputs.insert(t);
                        }
                        None if rest.is_empty() || rest.starts_with('.') => read_all_outputs = true,
                        None => {}
                    }
                }
                if let (Some(root), Some(params)) = (param_root, &head.params)
                    && let Some(field) = name
                        .strip_prefix(root)
                        .and_then(|rest| rest.split('.').next())
                    && !params.iter().any(|p| p.name == field)
                {
                    let declared: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                    let hint = closest(field, declared.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            format!("the declared params are: {}", declared.join(", "))
                        });
                    found.push(p(
                        order,
                        Some(id),
                        d.path.clone(),
                        format!("in {text:?}: `{root}{field}` is not a declared param; {hint}"),
                    ));
                }
                check_name(
                    name,
                    d.node,
                    d.in_foreach,
                    &|id| self.position(id),
                    &|| self.index.positions().map(|j| self.id_of(j)).collect(),
                    ancestors.get_or_init(|| Ancestors::new(graph)),
                    &|t| self.imp(t).cloned(),
                    acyclic,
                    &bare_known,
                    &mut |msg| {
                        found.push(p(
                            order,
                            Some(id),
                            d.path.clone(),
                            format!("in {text:?}: {msg}"),
                        ))
                    },
                );
            }
        }
        drop(ancestors);

        let settings = &head.settings;
        if settings.max_parallel == Some(0) {
            found.push(p(
                (SETTINGS, 0, 0),
                None,
                "settings.max_parallel".into(),
                "max_parallel must be at least 1".into(),
            ));
        }
        let timeout = optional_duration(settings.timeout.as_deref(), |e| {
            found.push(p((SETTINGS, 0, 0), None, "settings.timeout".into(), e))
        });

        self.problems.append(&mut found);
        if !self.problems.is_empty() {
            let mut problems = self.problems;
            problems.sort_by_key(|(order, _)| *order);
            return Err(problems.into_iter().map(|(_, problem)| problem).collect());
        }

        // Every node has its planned form when there is no problem.
        let mut nodes = self.nodes.present();
        for (e, edge) in self.edges.iter().enumerate() {
            if self.edges.source_handle(e) == Some(ERROR_HANDLE) {
                nodes[edge.source()].has_error_edge = true;
            }
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            node.read_by_expressions = read_all_outputs || read_outputs.contains(&i);
        }

        let fallback = path
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "workflow".into());
        let base_dir = path
            .and_then(|p| std::path::absolute(p).ok())
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        let name = head.display_name(&fallback);
        Ok(Plan {
            id: super::workflow_id(&name).unwrap_or_else(|_| fallback.clone()),
            name,
            max_parallel: head.settings.max_parallel,
            timeout,
            definition,
            hash,
            description: head.description,
            source_path: path.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
            base_dir: Arc::new(base_dir),
            nodes,
            edges: self.edges,
            links,
            index: self.index,
            apart: self.apart,
            params: head.params,
            settings: head.settings,
            warnings: self.warnings,
        })
    }
}

/// A duration that may be absent; one that does not parse is reported.
fn optional_duration(
    text: Option<&str>,
    report: impl FnOnce(String),
) -> Option<std::time::Duration> {
    match duration::parse(text?) {
        Ok(d) => Some(d),
        Err(e) => {
            report(e);
            None
        }
    }
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
    base: NodePath,
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
fn check_name<'i>(
    name: &str,
    node: usize,
    in_foreach: bool,
    position: &dyn Fn(&str) -> Option<usize>,
    ids: &dyn Fn() -> Vec<&'i str>,
    ancestors: &Ancestors,
    imp: &dyn Fn(usize) -> Option<Arc<dyn crate::nodes::Node>>,
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
    let Some(t) = position(target) else {
        let hint = closest(target, ids().into_iter())
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
            if let Some(imp) = imp(t)
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

/// The nodes after and before each node.
#[derive(Clone, Copy)]
struct Graph<'p> {
    links: &'p Links,
    edges: &'p Edges,
}

impl<'p> Graph<'p> {
    fn successors(self, node: usize) -> impl Iterator<Item = usize> + 'p {
        let edges = self.edges;
        self.links
            .outgoing(node)
            .iter()
            .map(move |e| edges[e].target())
    }

    fn predecessors(self, node: usize) -> impl Iterator<Item = usize> + 'p {
        let edges = self.edges;
        self.links
            .incoming(node)
            .iter()
            .map(move |e| edges[e].source())
    }
}

/// Kahn's algorithm; shorter than `n` when there is a cycle.
fn topological_order(n: usize, graph: &Graph) -> Vec<usize> {
    let mut indegree: Vec<u32> = (0..n)
        .map(|i| graph.links.incoming(i).len() as u32)
        .collect();
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for t in graph.successors(i) {
            indegree[t] -= 1;
            if indegree[t] == 0 {
                queue.push_back(t);
            }
        }
    }
    order
}

/// One cycle among the nodes Kahn's algorithm could not order.
fn find_cycle(n: usize, graph: &Graph, order: &[usize]) -> Vec<usize> {
    let ordered: HashSet<usize> = order.iter().copied().collect();
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
        match graph.successors(current).find(|t| !ordered.contains(t)) {
            Some(next) => current = next,
            None => return path,
        }
    }
}

/// Upstream nodes of each node, found on demand by walking edges backwards.
struct Ancestors<'p> {
    graph: Graph<'p>,
    memo: std::cell::RefCell<HashMap<usize, std::rc::Rc<HashSet<usize>>>>,
}

impl<'p> Ancestors<'p> {
    fn new(graph: Graph<'p>) -> Ancestors<'p> {
        Ancestors {
            graph,
            memo: Default::default(),
        }
    }

    fn of(&self, node: usize) -> std::rc::Rc<HashSet<usize>> {
        if let Some(set) = self.memo.borrow().get(&node) {
            return set.clone();
        }
        let mut seen = HashSet::new();
        let mut stack: Vec<usize> = self.graph.predecessors(node).collect();
        while let Some(p) = stack.pop() {
            if seen.insert(p) {
                stack.extend(self.graph.predecessors(p));
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
        .min_by_key(|&(d, c)| (d, c))
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

/// The seed format's `TimerStartNode` (`trigger.timer`): each field is
/// honoured by the daemon's scheduler, so each is checked here.
fn timer_checks(
    inputs: &serde_json::Map<String, Value>,
    base: NodePath,
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
