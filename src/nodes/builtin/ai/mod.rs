//! The AI side: model turns against OpenAI-compatible and Anthropic APIs
//! ([`provider`]), the tool-calling agent ([`agent`]) and conversation
//! memory ([`memory`]). `llm.chat` lives in `super::llm` and uses the same
//! providers and memory.

pub mod agent;
pub mod memory;
pub mod provider;

use serde_json::Value;

/// The user message an upstream node hands over: a string; an object's
/// `message`, `prompt`, `text`, `content`, `input` or `output` (the first
/// that is a string, looking one level into `input`, `output` and a webhook
/// request's `body`); or `None` when there is none.
pub fn upstream_message(input: &Value) -> Option<String> {
    match input {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Object(map) => [
            "message", "prompt", "text", "content", "input", "output", "body",
        ]
        .iter()
        .find_map(|k| match map.get(*k) {
            Some(Value::String(s)) if !s.trim().is_empty() && *k != "body" => Some(s.clone()),
            // One level into a run's input or output, or a webhook request's body.
            Some(inner @ Value::Object(_)) if matches!(*k, "input" | "output" | "body") => {
                upstream_message(inner)
            }
            _ => None,
        }),
        _ => None,
    }
}
