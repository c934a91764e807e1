//! Strict keys: a key the format does not know is an error naming its JSON
//! path and the nearest known key (`retyr` → "did you mean `retry`?"), so a
//! typo never passes silently. Keys that visual editors add (React Flow's
//! `position`, `style`, `width`, `selected`, …) are known too: they are kept
//! and written back, and the engine ignores them. The lists below are the
//! whole rule; docs/workflows.md repeats them.

use serde_json::{Map, Value};

use super::model::{EdgeDef, Head, NodeDef, Workflow};
use super::validate::{Problem, closest};
use crate::nodes::NodeSpec;

/// Top-level keys of a workflow.
pub const WORKFLOW_KEYS: &[&str] = &[
    "name",
    "description",
    "settings",
    "params",
    "nodes",
    "edges",
];
/// Top-level keys editors and tools add.
pub const WORKFLOW_EDITOR_KEYS: &[&str] = &["$schema", "viewport"];

/// Keys of a node.
pub const NODE_KEYS: &[&str] = &[
    "id",
    "type",
    "data",
    "retry",
    "timeout",
    "on_error",
    "foreach",
    "concurrency",
];
/// Node keys React Flow and similar editors add.
pub const NODE_EDITOR_KEYS: &[&str] = &[
    "position",
    "positionAbsolute",
    "width",
    "height",
    "measured",
    "initialWidth",
    "initialHeight",
    "style",
    "className",
    "sourcePosition",
    "targetPosition",
    "hidden",
    "selected",
    "dragging",
    "draggable",
    "selectable",
    "connectable",
    "deletable",
    "dragHandle",
    "parentId",
    "parentNode",
    "extent",
    "expandParent",
    "zIndex",
    "ariaLabel",
    "focusable",
    "resizing",
    "origin",
    "handles",
];

/// Keys of a node's `data`.
pub const DATA_KEYS: &[&str] = &["name", "inputs"];
/// `data` keys editors add for display.
pub const DATA_EDITOR_KEYS: &[&str] = &["label", "description", "notes", "icon", "color"];

/// Keys of an edge.
pub const EDGE_KEYS: &[&str] = &["id", "source", "target", "sourceHandle", "targetHandle"];
/// Edge keys React Flow and similar editors add.
pub const EDGE_EDITOR_KEYS: &[&str] = &[
    "type",
    "animated",
    "hidden",
    "deletable",
    "selectable",
    "focusable",
    "selected",
    "data",
    "markerStart",
    "markerEnd",
    "zIndex",
    "ariaLabel",
    "interactionWidth",
    "label",
    "labelStyle",
    "labelShowBg",
    "labelBgStyle",
    "labelBgPadding",
    "labelBgBorderRadius",
    "style",
    "className",
    "reconnectable",
    "updatable",
    "pathOptions",
];

/// Keys of `settings` (no editor adds any).
pub const SETTINGS_KEYS: &[&str] = &[
    "max_parallel",
    "timeout",
    "keep_runs",
    "keep_days",
    "vars",
    "resume",
    "on_failure",
];

/// Every key of `workflow` (top level, settings, nodes, their data, edges)
/// that is neither part of the format nor a listed editor key.
pub fn unknown_keys(workflow: &Workflow, problems: &mut Vec<Problem>) {
    top_keys(&workflow.extra, &workflow.settings.extra, problems);
    for (i, node) in workflow.nodes.iter().enumerate() {
        node_keys(node, i, problems);
    }
    for (e, edge) in workflow.edges.iter().enumerate() {
        edge_keys(edge, e, problems);
    }
}

/// Unknown keys of a workflow's top level and settings.
pub fn head_keys(head: &Head, problems: &mut Vec<Problem>) {
    top_keys(&head.extra, &head.settings.extra, problems);
}

fn top_keys(top: &Map<String, Value>, settings: &Map<String, Value>, problems: &mut Vec<Problem>) {
    check(
        top,
        String::new,
        WORKFLOW_KEYS,
        WORKFLOW_EDITOR_KEYS,
        None,
        problems,
    );
    check(
        settings,
        || "settings.".to_string(),
        SETTINGS_KEYS,
        &[],
        None,
        problems,
    );
}

/// Unknown keys of node `i` and its data.
pub fn node_keys(node: &NodeDef, i: usize, problems: &mut Vec<Problem>) {
    let id = Some(node.id.as_str());
    check(
        &node.extra,
        || format!("nodes[{i}]."),
        NODE_KEYS,
        NODE_EDITOR_KEYS,
        id,
        problems,
    );
    check(
        &node.data.extra,
        || format!("nodes[{i}].data."),
        DATA_KEYS,
        DATA_EDITOR_KEYS,
        id,
        problems,
    );
}

/// Unknown keys of edge `e`.
pub fn edge_keys(edge: &EdgeDef, e: usize, problems: &mut Vec<Problem>) {
    check(
        &edge.extra,
        || format!("edges[{e}]."),
        EDGE_KEYS,
        EDGE_EDITOR_KEYS,
        None,
        problems,
    );
}

/// `prefix` makes the path's start, only when there is a problem to report
/// (most objects have no extra keys: checking them allocates nothing).
fn check(
    extra: &Map<String, Value>,
    prefix: impl Fn() -> String,
    known: &[&str],
    editor: &[&str],
    node: Option<&str>,
    problems: &mut Vec<Problem>,
) {
    for key in extra.keys() {
        if editor.contains(&key.as_str()) {
            continue;
        }
        problems.push(Problem {
            node: node.map(str::to_string),
            path: format!("{}{key}", prefix()),
            message: format!("unknown key `{key}`{}", hint(key, known)),
        });
    }
}

/// Undeclared inputs of a node whose type declares its inputs.
pub fn unknown_inputs(
    inputs: &Map<String, Value>,
    spec: &NodeSpec,
    base: impl std::fmt::Display,
    node: &str,
    problems: &mut Vec<Problem>,
) {
    if spec.free_inputs {
        return;
    }
    for key in inputs.keys() {
        if spec
            .inputs
            .iter()
            .any(|i| i.name == *key || i.aliases.iter().any(|a| a == key))
        {
            continue;
        }
        let declared: Vec<&str> = spec.inputs.iter().map(|i| i.name.as_str()).collect();
        let known = if declared.is_empty() {
            format!("; {} takes no inputs", spec.type_name)
        } else {
            format!(
                "; {} takes: {} (`fuse nodes show {}`)",
                spec.type_name,
                declared.join(", "),
                spec.type_name
            )
        };
        let message = match closest(key, declared.iter().copied()) {
            Some(near) => format!("unknown input `{key}`; did you mean `{near}`?"),
            None => format!("unknown input `{key}`{known}"),
        };
        problems.push(Problem {
            node: Some(node.to_string()),
            path: format!("{base}.data.inputs.{key}"),
            message,
        });
    }
}

/// "; did you mean `x`?" for the nearest known key, else the list of keys.
fn hint(key: &str, known: &[&str]) -> String {
    match closest(key, known.iter().copied()) {
        Some(near) => format!("; did you mean `{near}`?"),
        None => format!("; the known keys here are: {}", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        let wf = Workflow::from_json(text).unwrap();
        let mut p = Vec::new();
        unknown_keys(&wf, &mut p);
        p
    }

    #[test]
    fn typos_are_named_with_the_nearest_key() {
        let p = problems(
            r#"{"nodes": [{"id": "a", "type": "log", "retyr": {"attempts": 2}, "timout": "1s",
                 "on_eror": "continue", "position": {"x": 1}, "data": {"inputs": {}, "label": "A", "nmae": "x"}}],
                "edges": [{"source": "a", "target": "a", "source_handle": "true", "animated": true}],
                "settings": {"max_paralel": 2}, "viewport": {}, "edgs": []}"#,
        );
        let got: Vec<String> = p
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        for want in [
            "edgs: unknown key `edgs`; did you mean `edges`?",
            "settings.max_paralel: unknown key `max_paralel`; did you mean `max_parallel`?",
            "nodes[0].retyr: unknown key `retyr`; did you mean `retry`?",
            "nodes[0].timout: unknown key `timout`; did you mean `timeout`?",
            "nodes[0].on_eror: unknown key `on_eror`; did you mean `on_error`?",
            "nodes[0].data.nmae: unknown key `nmae`; did you mean `name`?",
            "edges[0].source_handle: unknown key `source_handle`; did you mean `sourceHandle`?",
        ] {
            assert!(
                got.iter().any(|g| g == want),
                "missing {want:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), 7, "{got:#?}");
    }
}
