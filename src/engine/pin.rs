//! Pinned node outcomes: a pinned node does not run; each attempt takes the
//! next outcome of its pin (an output, or an error the retry policy and error
//! paths then handle as if the node had failed). `fuse test` cases and
//! `fuse run --pin` set them; a run with every side-effecting node pinned
//! touches no network, disk or credential.

use serde_json::Value;

use crate::nodes::{ErrorKind, NodeError, NodeOutput};

/// What one attempt of a pinned node gives.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Succeeds with this output, leaving by `handle` (`true`/`false` of a
    /// `flow.if`, a `flow.switch` case) when given.
    Output {
        value: Value,
        handle: Option<String>,
    },
    /// Fails with this error.
    Error(NodeError),
    /// Never finishes: the node's timeout, the workflow's, or the run's end
    /// (another node failed) stops it, as for a call that hangs.
    Wait,
}

/// The outcomes of a pinned node, one per attempt; the last repeats when the
/// retry policy asks for more attempts than the pin lists.
#[derive(Debug, Clone)]
pub struct Pin {
    outcomes: Vec<Outcome>,
}

impl Pin {
    /// A pin that always gives `value`.
    pub fn output(value: Value) -> Pin {
        Pin::one(Outcome::Output {
            value,
            handle: None,
        })
    }

    /// A pin that gives `outcome` at every attempt.
    pub fn one(outcome: Outcome) -> Pin {
        Pin {
            outcomes: vec![outcome],
        }
    }

    /// A pin over attempts; `None` when `outcomes` is empty.
    pub fn sequence(outcomes: Vec<Outcome>) -> Option<Pin> {
        (!outcomes.is_empty()).then_some(Pin { outcomes })
    }

    /// The outcome of attempt `attempt` (1-based); `None` for [`Outcome::Wait`].
    pub fn attempt(&self, attempt: u32) -> Option<Result<NodeOutput, NodeError>> {
        let index = (attempt.max(1) as usize - 1).min(self.outcomes.len() - 1);
        match &self.outcomes[index] {
            Outcome::Output { value, handle } => Some(Ok(NodeOutput {
                value: value.clone(),
                handle: handle.clone(),
            })),
            Outcome::Error(e) => Some(Err(e.clone())),
            Outcome::Wait => None,
        }
    }
}

/// A node error from its JSON form (`{kind, message, status?, exit_code?,
/// retryable?, details?}`, as history records it and error edges carry it).
pub fn error_from_json(v: &Value) -> Result<NodeError, String> {
    let Value::Object(map) = v else {
        return Err(format!(
            "an error is an object like {{\"kind\": \"http\", \"status\": 503, \"message\": \"…\"}}, not {}",
            crate::nodes::json_type(v)
        ));
    };
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "kind" | "message" | "status" | "exit_code" | "retryable" | "details"
        ) {
            return Err(format!(
                "unknown key `{key}` in an error (it takes kind, message, status, exit_code, retryable, details)"
            ));
        }
    }
    let message = match map.get("message") {
        None => "pinned error".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "`message` must be a string, not {}",
                crate::nodes::json_type(other)
            ));
        }
    };
    let int = |key: &str| -> Result<Option<i64>, String> {
        match map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("`{key}` must be an integer")),
        }
    };
    let status = int("status")?;
    let code = int("exit_code")?;
    let kind_name = match map.get("kind") {
        None if status.is_some() => "http",
        None if code.is_some() => "exit",
        None => "other",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("`kind` must be a string".into()),
    };
    let kind = match kind_name {
        "input" => ErrorKind::Input,
        "expression" => ErrorKind::Expression,
        "timeout" => ErrorKind::Timeout,
        "network" => ErrorKind::Network,
        "http" => ErrorKind::Http {
            status: status
                .and_then(|s| u16::try_from(s).ok())
                .ok_or("an `http` error needs `status` (e.g. 503)")?,
        },
        "exit" => ErrorKind::Exit {
            code: code
                .and_then(|c| i32::try_from(c).ok())
                .ok_or("an `exit` error needs `exit_code` (e.g. 1)")?,
        },
        "process" => ErrorKind::Process,
        "io" => ErrorKind::Io,
        "cancelled" => ErrorKind::Cancelled,
        "other" => ErrorKind::Other,
        other => {
            return Err(format!(
                "unknown error kind `{other}` (one of input, expression, timeout, network, http, exit, process, io, cancelled, other)"
            ));
        }
    };
    let mut error = NodeError::new(kind, message);
    match map.get("retryable") {
        None => {}
        Some(Value::Bool(b)) => error.retryable = *b,
        Some(_) => return Err("`retryable` must be true or false".into()),
    }
    if let Some(details) = map.get("details") {
        error = error.with_details(details.clone());
    }
    Ok(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_round_trip_through_their_json_form() {
        for e in [
            NodeError::new(ErrorKind::Http { status: 503 }, "busy"),
            NodeError::new(ErrorKind::Exit { code: 3 }, "exit 3")
                .with_details(json!({"stderr": "x"})),
            NodeError::new(ErrorKind::Timeout, "slow"),
        ] {
            let back = error_from_json(&e.to_json()).map_err(|e| e.to_string());
            assert_eq!(back.map(|b| b.to_json()), Ok(e.to_json()));
        }
        assert!(
            error_from_json(&json!({"kind": "http"}))
                .unwrap_err()
                .contains("status")
        );
        assert!(
            error_from_json(&json!({"kind": "nope"}))
                .unwrap_err()
                .contains("unknown error kind")
        );
        assert!(
            error_from_json(&json!({"mesage": "x"}))
                .unwrap_err()
                .contains("mesage")
        );
        assert_eq!(
            error_from_json(&json!({"status": 404})).map(|e| e.kind.name()),
            Ok("http")
        );
    }

    #[test]
    fn the_last_outcome_repeats() {
        let pin = Pin::sequence(vec![
            Outcome::Error(NodeError::new(ErrorKind::Network, "down")),
            Outcome::Output {
                value: json!(1),
                handle: None,
            },
        ])
        .unwrap_or_else(|| Pin::output(Value::Null));
        assert!(matches!(pin.attempt(1), Some(Err(_))));
        let value = |a| pin.attempt(a).and_then(|r| r.ok()).map(|o| o.value);
        assert_eq!(value(2), Some(json!(1)));
        assert_eq!(value(9), Some(json!(1)));
    }
}
