//! `memory: {session, window?, window_tokens?}` on `llm.chat` and
//! `llm.agent`: the conversation is kept per session in the fuse database.
//! Before a call the newest messages of the session (within the window) go
//! before the new message; after it the message and the answer are added.

use std::path::PathBuf;

use serde_json::Value;

use super::provider::Msg;
use crate::nodes::{NodeCtx, NodeError, wrong_type};
use crate::store::Store;

/// Messages of a window when the node says nothing (10 exchanges).
pub const DEFAULT_WINDOW: usize = 20;

/// Where memory lives: the home's database (`None` without a home).
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub db: Option<PathBuf>,
}

/// What a node's `memory` input asks for.
#[derive(Debug, Clone)]
pub struct MemorySpec {
    pub session: String,
    pub window: usize,
    pub window_tokens: Option<i64>,
}

impl MemorySpec {
    pub fn parse(ctx: &NodeCtx) -> Result<Option<MemorySpec>, NodeError> {
        let spec = match ctx.param("memory") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(wrong_type(
                    "memory",
                    "an object like {\"session\": \"{{ trigger.user }}\", \"window\": 20}",
                    other,
                ));
            }
        };
        if let Some(k) = spec
            .keys()
            .find(|k| !["session", "window", "window_tokens"].contains(&k.as_str()))
        {
            return Err(NodeError::input(format!(
                "memory has an unknown key {k:?}; it takes session, window (messages) and window_tokens"
            )));
        }
        let session = match spec.get("session") {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Number(_)) => v.to_string(),
            Some(other) => return Err(wrong_type("memory.session", "a string", other)),
            None => {
                return Err(NodeError::input(
                    "memory needs a session, e.g. {\"session\": \"{{ trigger.user }}\"}",
                ));
            }
        };
        crate::store::memory::check_session(&session).map_err(NodeError::input)?;
        let window = match spec.get("window") {
            None | Some(Value::Null) => DEFAULT_WINDOW,
            Some(v) => v.as_u64().filter(|n| *n <= 10_000).ok_or_else(|| {
                wrong_type("memory.window", "a whole number of messages up to 10000", v)
            })? as usize,
        };
        let window_tokens =
            match spec.get("window_tokens") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    wrong_type("memory.window_tokens", "a whole number above 0", v)
                })? as i64),
            };
        Ok(Some(MemorySpec {
            session,
            window,
            window_tokens,
        }))
    }
}

impl Memory {
    fn path(&self) -> Result<PathBuf, NodeError> {
        self.db.clone().ok_or_else(|| {
            NodeError::input(
                "memory needs a fuse home to keep the conversation in; run `fuse init` (or drop `memory`)",
            )
        })
    }

    /// The remembered messages of the session's window, oldest first.
    pub async fn load(&self, spec: &MemorySpec) -> Result<Vec<Msg>, NodeError> {
        if spec.window == 0 {
            return Ok(Vec::new());
        }
        let path = self.path()?;
        let spec = spec.clone();
        let rows = blocking(move || {
            Store::open_reader(&path)?.memory_window(&spec.session, spec.window, spec.window_tokens)
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|m| {
                if m.role == "user" {
                    Msg::User(m.content)
                } else {
                    Msg::Assistant {
                        text: m.content,
                        calls: Vec::new(),
                    }
                }
            })
            .collect())
    }

    /// Adds an exchange to the session.
    pub async fn save(&self, spec: &MemorySpec, user: &str, answer: &str) -> Result<(), NodeError> {
        let path = self.path()?;
        let (session, user, answer) = (spec.session.clone(), user.to_string(), answer.to_string());
        blocking(move || {
            Store::open_reader(&path)?
                .memory_append(&session, &[("user", &user), ("assistant", &answer)])
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, NodeError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(NodeError::other(format!("conversation memory: {e}"))),
        Err(e) => Err(NodeError::other(format!(
            "conversation memory: the task failed: {e}"
        ))),
    }
}
