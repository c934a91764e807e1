//! `fuse validate` and `fuse schema` through the real binary.

use predicates::prelude::*;
use serde_json::{Value, json};

use crate::helper::{fuse, stdout_of};

fn problems_of(wf: &Value) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wf.json");
    std::fs::write(&path, wf.to_string()).unwrap();
    let out = fuse()
        .arg("validate")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    v["problems"].as_array().unwrap().clone()
}

fn has(problems: &[Value], node: Option<&str>, path: &str, text: &str) -> bool {
    problems.iter().any(|p| {
        p["node"].as_str() == node
            && p["path"].as_str() == Some(path)
            && p["message"].as_str().is_some_and(|m| m.contains(text))
    })
}

#[test]
fn every_problem_is_listed_with_node_and_path() {
    let wf = json!({
        "settings": {"timeout": "forever"},
        "nodes": [
            {"id": "a", "type": "trigger.manual"},
            {"id": "a", "type": "flow.noop"},
            {"id": "b", "type": "transfrom.set", "data": {"inputs": {"values": {}}}},
            {"id": "c", "type": "flow.if", "data": {"inputs": {}}},
            {"id": "d", "type": "log", "data": {"inputs": {"message": "{{ nodes.e.output }}"}}},
            {"id": "e", "type": "log", "data": {"inputs": {"message": "{{ trigr.x }}"}}},
            {"id": "f", "type": "log", "data": {"inputs": {"message": "{{ 1 + }}"}}},
            {"id": "g", "type": "exec.command", "data": {"inputs": {"argv": ["true"]}}},
            {"id": "h", "type": "log", "data": {"inputs": {"message": "{{ nodes.g.output.stdot }}"}}}
        ],
        "edges": [
            {"source": "a", "target": "ghost"},
            {"source": "c", "sourceHandle": "maybe", "target": "d"},
            {"source": "g", "target": "h"}
        ]
    });
    let p = problems_of(&wf);
    assert!(
        has(&p, Some("a"), "nodes[1].id", "duplicate node id"),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            Some("b"),
            "nodes[2].type",
            "did you mean \"transform.set\""
        ),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            Some("c"),
            "nodes[3].data.inputs.condition",
            "missing required input"
        ),
        "{p:#?}"
    );
    assert!(
        has(&p, None, "edges[0].target", "unknown node \"ghost\""),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            Some("c"),
            "edges[1].sourceHandle",
            "has no handle \"maybe\""
        ),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            Some("d"),
            "nodes[4].data.inputs.message",
            "not upstream"
        ),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            Some("e"),
            "nodes[5].data.inputs.message",
            "did you mean `trigger`"
        ),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            Some("f"),
            "nodes[6].data.inputs.message",
            "does not parse"
        ),
        "{p:#?}"
    );
    assert!(
        has(
            &p,
            Some("h"),
            "nodes[8].data.inputs.message",
            "no field `stdot`"
        ),
        "{p:#?}"
    );
    assert!(
        has(&p, None, "settings.timeout", "not a duration"),
        "{p:#?}"
    );
}

#[test]
fn cycles_name_their_nodes() {
    let wf = json!({"nodes": [{"id": "x", "type": "flow.noop"}, {"id": "y", "type": "flow.noop"}, {"id": "z", "type": "flow.noop"}],
        "edges": [{"source": "x", "target": "y"}, {"source": "y", "target": "z"}, {"source": "z", "target": "x"}]});
    let p = problems_of(&wf);
    let msg = p[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("cycle") && msg.contains("x -> y -> z -> x"),
        "{msg}"
    );
}

#[test]
fn valid_files_pass_and_text_output_lists_problems() {
    let ok = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/hello.json");
    let out = stdout_of(fuse().arg("validate").arg(&ok));
    assert!(out.contains("is valid: 4 nodes, 3 edges"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"nodes": [{"id": "n", "type": "flow.wait"}]}"#).unwrap();
    fuse()
        .arg("validate")
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "node \"n\" (nodes[0].data.inputs.duration): missing required input",
        ));
}

#[test]
fn seed_aliases_and_handles_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.json");
    std::fs::write(
        &path,
        json!({"nodes": [
            {"id": "1", "type": "Start", "position": {"x": 0, "y": 0}, "data": {"label": "Start"}},
            {"id": "2", "type": "End", "position": {"x": 100, "y": 0}}
        ], "edges": [{"id": "e1-2", "source": "1", "target": "2", "sourceHandle": "output", "targetHandle": "input"}]})
        .to_string(),
    )
    .unwrap();
    fuse().arg("validate").arg(&path).assert().success();
    let out = stdout_of(fuse().arg("run").arg(&path).args(["--input", "x=1"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({"x": 1}),
        "targetHandle \"input\" is the plain input: End returns what reaches it"
    );
}

#[test]
fn schema_is_published() {
    let out = stdout_of(fuse().args(["schema", "workflow"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["$schema"].as_str().unwrap().contains("json-schema.org"));
    let types = v["$defs"]["NodeDef"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap();
    for t in ["transform.jq", "exec.command", "HttpRequest", "Start"] {
        assert!(types.iter().any(|x| x == t), "{t} missing");
    }
}
