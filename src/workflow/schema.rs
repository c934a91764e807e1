//! The published JSON Schema of the workflow format (`fuse schema workflow`),
//! generated from the serde types of [`super::model`] (schemars) so that it
//! cannot drift from what is parsed, then tightened to what `fuse validate`
//! accepts: the strict key lists of [`super::strict`] (editor keys allowed,
//! nothing else), the node types of a registry (a home's packages included),
//! and, per node type, its declared inputs (aliases too) and required ones.

use serde_json::{Map, Value, json};

use super::model::Workflow;
use super::strict;
use crate::nodes::Registry;

/// What a duration string looks like (`"300ms"`, `"1m30s"`).
const DURATION: &str = "^([0-9.]+(ms|s|m|h|d))+$";

/// The JSON Schema (draft 2020-12) of a workflow file for the node types of
/// `registry` (and the seed aliases).
pub fn workflow_schema(registry: &Registry) -> Value {
    let root = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Workflow>();
    let mut schema = root.to_value();
    schema["$id"] = json!("https://fuse.dev/schema/workflow.json");
    schema["title"] = json!("fuse workflow");
    close(
        &mut schema,
        strict::WORKFLOW_KEYS,
        strict::WORKFLOW_EDITOR_KEYS,
    );
    let defs = schema
        .get_mut("$defs")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut defs: Map<String, Value> = defs;
    for (name, keys, editor) in [
        ("Settings", strict::SETTINGS_KEYS, &[][..]),
        ("NodeDef", strict::NODE_KEYS, strict::NODE_EDITOR_KEYS),
        ("NodeData", strict::DATA_KEYS, strict::DATA_EDITOR_KEYS),
        ("EdgeDef", strict::EDGE_KEYS, strict::EDGE_EDITOR_KEYS),
    ] {
        if let Some(def) = defs.get_mut(name) {
            close(def, keys, editor);
        }
    }
    for (def, field) in [
        ("Settings", "timeout"),
        ("NodeDef", "timeout"),
        ("RetryDef", "initial"),
        ("RetryDef", "max"),
    ] {
        if let Some(prop) = defs
            .get_mut(def)
            .and_then(|d| d.pointer_mut(&format!("/properties/{field}")))
        {
            prop["pattern"] = json!(DURATION);
        }
    }
    if let Some(node) = defs.get_mut("NodeDef") {
        let mut types: Vec<String> = registry
            .iter()
            .map(|n| n.spec().type_name.clone())
            .collect();
        types.extend(super::ALIASES.iter().map(|(a, _)| a.to_string()));
        types.sort();
        node["properties"]["type"] =
            json!({"enum": types, "description": "a node type (`fuse nodes list`)"});
        node["allOf"] = Value::Array(inputs_by_type(registry));
    }
    schema["$defs"] = Value::Object(defs);
    schema
}

/// Only `keys` (already in the schema from the serde type) and `editor`
/// (allowed, anything) are accepted.
fn close(schema: &mut Value, keys: &[&str], editor: &[&str]) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let props = obj
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(props) = props {
        props.retain(|k, _| keys.contains(&k.as_str()));
        for key in editor {
            props.insert(
                (*key).to_string(),
                json!({"description": "added by visual editors: kept and ignored"}),
            );
        }
    }
    obj.insert("additionalProperties".into(), json!(false));
}

/// For each node type: `data.inputs` holds only its declared inputs (and
/// their aliases) and every required one.
fn inputs_by_type(registry: &Registry) -> Vec<Value> {
    let mut rules = Vec::new();
    for node in registry.iter() {
        let spec = node.spec();
        let mut names: Vec<String> = vec![spec.type_name.clone()];
        names.extend(
            super::ALIASES
                .iter()
                .filter(|(_, canonical)| *canonical == spec.type_name)
                .map(|(alias, _)| alias.to_string()),
        );
        let mut props = Map::new();
        for input in &spec.inputs {
            let entry = json!({"description": format!("{} ({})", input.description, input.kind)});
            props.insert(input.name.clone(), entry.clone());
            for alias in &input.aliases {
                props.insert(
                    alias.clone(),
                    json!({"description": format!("same as `{}`", input.name)}),
                );
            }
        }
        let required: Vec<&str> = spec
            .inputs
            .iter()
            .filter(|i| i.required)
            .map(|i| i.name.as_str())
            .collect();
        let mut inputs = json!({"type": "object", "properties": props});
        if !spec.free_inputs {
            inputs["additionalProperties"] = json!(false);
        }
        if !required.is_empty() {
            inputs["required"] = json!(required);
        }
        let mut data = json!({"properties": {"inputs": inputs}});
        if !required.is_empty() {
            data["required"] = json!(["inputs"]);
        }
        let mut then = json!({"properties": {"data": data}});
        if !required.is_empty() {
            then["required"] = json!(["data"]);
        }
        rules.push(json!({
            "if": {"properties": {"type": {"enum": names}}, "required": ["type"]},
            "then": then
        }));
    }
    rules
}
