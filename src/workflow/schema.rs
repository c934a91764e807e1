//! The published JSON Schema of the workflow format (`fuse schema workflow`).

use serde_json::{Value, json};

use crate::nodes::Registry;

/// The JSON Schema (draft 2020-12) of a workflow file, listing the node types of
/// `registry` (and the seed aliases) as the allowed `type` values.
pub fn workflow_schema(registry: &Registry) -> Value {
    let mut types: Vec<Value> = registry.iter().map(|n| json!(n.spec().type_name)).collect();
    types.extend(super::ALIASES.iter().map(|(a, _)| json!(a)));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://fuse.dev/schema/workflow.json",
        "title": "fuse workflow",
        "type": "object",
        "required": ["nodes"],
        "properties": {
            "name": {"type": "string"},
            "settings": {
                "type": "object",
                "properties": {
                    "max_parallel": {"type": "integer", "minimum": 1},
                    "timeout": {"$ref": "#/$defs/duration"},
                    "keep_runs": {"type": "integer", "minimum": 0},
                    "keep_days": {"type": "integer", "minimum": 0},
                    "vars": {"type": "object"}
                }
            },
            "nodes": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/node"}},
            "edges": {"type": "array", "items": {"$ref": "#/$defs/edge"}}
        },
        "$defs": {
            "duration": {"type": "string", "pattern": "^([0-9.]+(ms|s|m|h|d))+$"},
            "node": {
                "type": "object",
                "required": ["id", "type"],
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "type": {"enum": types},
                    "data": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "inputs": {"type": "object"}
                        }
                    },
                    "retry": {
                        "type": "object",
                        "required": ["attempts"],
                        "additionalProperties": false,
                        "properties": {
                            "attempts": {"type": "integer", "minimum": 1},
                            "backoff": {"enum": ["exponential", "fixed"]},
                            "initial": {"$ref": "#/$defs/duration"},
                            "max": {"$ref": "#/$defs/duration"},
                            "on": {
                                "type": "object",
                                "additionalProperties": false,
                                "properties": {
                                    "kinds": {"type": "array", "items": {"enum": ["timeout", "network", "http", "exit", "process", "io", "other", "any"]}},
                                    "exit_codes": {"type": "array", "items": {"type": "integer"}},
                                    "statuses": {"type": "array", "items": {"type": "integer"}}
                                }
                            }
                        }
                    },
                    "timeout": {"$ref": "#/$defs/duration"},
                    "on_error": {"enum": ["fail", "continue"]},
                    "foreach": {"type": "string", "pattern": "^\\s*\\{\\{.*\\}\\}\\s*$"},
                    "concurrency": {"type": "integer", "minimum": 1}
                }
            },
            "edge": {
                "type": "object",
                "required": ["source", "target"],
                "properties": {
                    "id": {"type": "string"},
                    "source": {"type": "string"},
                    "target": {"type": "string"},
                    "sourceHandle": {"type": ["string", "null"]},
                    "targetHandle": {"type": ["string", "null"]}
                }
            }
        }
    })
}
