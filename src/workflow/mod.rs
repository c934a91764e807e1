//! The workflow format: what the JSON says ([`model`]), the static checks that
//! turn it into problems or a plan ([`validate`]), its JSON Schema ([`schema`]),
//! and the seed format's type aliases.

pub mod model;
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
    ("TimerStartNode", "trigger.interval"),
    ("OpenAINode", "llm.chat"),
];

/// The canonical type for a type name (aliases resolved).
pub fn canonical_type(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| canonical)
}
