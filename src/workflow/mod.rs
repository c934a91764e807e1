//! The workflow format: what the JSON says ([`model`]), the static checks that
//! turn it into problems or a plan ([`validate`]), its JSON Schema ([`schema`]),
//! and the seed format's type aliases.

pub mod diff;
pub mod model;
pub mod params;
pub mod schema;
pub mod strict;
pub mod validate;

pub use model::{EdgeDef, NodeDef, OnError, RetryDef, Settings, Workflow};
pub use validate::{Problem, validate};

/// Node type names of the original Fuse JSON format and what they run as.
pub const ALIASES: &[(&str, &str)] = &[
    ("Start", "trigger.manual"),
    ("End", "end"),
    ("HttpRequest", "http.request"),
    ("WebhookTrigger", "trigger.webhook"),
    ("TimerStartNode", "trigger.timer"),
    ("OpenAINode", "llm.chat"),
];

/// The id of a workflow named `name`: the name itself when it is already
/// made of letters, digits, `-` and `_` (at most 64), else the name lowercased
/// with every run of other characters turned into one `-`
/// ("Integration Test Workflow" → `integration-test-workflow`). The id is
/// what URLs, the daemon and history use; the name stays for display.
pub fn workflow_id(name: &str) -> Result<String, String> {
    if crate::packages::manifest::valid_name(name) {
        return Ok(name.to_string());
    }
    let mut id = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            id.push(c.to_ascii_lowercase());
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    let id = id.trim_end_matches('-').to_string();
    if crate::packages::manifest::valid_name(&id) {
        Ok(id)
    } else if id.is_empty() {
        Err(format!(
            "the workflow name {name:?} has no letter or digit to make its id from; use letters, digits, spaces, `-` or `_`"
        ))
    } else {
        Err(format!(
            "the workflow name {name:?} is too long for an id ({} characters; at most 64)",
            id.len()
        ))
    }
}

/// The canonical type for a type name (aliases resolved).
pub fn canonical_type(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| canonical)
}
