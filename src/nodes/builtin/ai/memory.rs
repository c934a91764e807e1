//! `memory: {session, window?, window_tokens?}` on `llm.chat` and
//! `llm.agent`: the conversation is kept per session in the fuse database.
//! Before a call the newest messages of the session (within the window) go
//! before the new message; after it the message and the answer are added.

use std::path::PathBuf;

use serde_json::Value;

use super::provider::{Endpoint, Msg};
use crate::nodes::{LogLevel, NodeCtx, NodeError, wrong_type};
use crate::store::Store;
use crate::store::memory::MemoryMessage;

/// Messages of a window when the node says nothing (10 exchanges).
pub const DEFAULT_WINDOW: usize = 20;

/// Where memory lives: the home's database (`None` without a home), or the
/// store on PostgreSQL when the home's store is there.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub db: Option<PathBuf>,
    pub pg: Option<String>,
}

/// An open memory store.
enum Kept {
    Sqlite(Store),
    Pg(std::sync::Arc<crate::store::pg::db::PgDb>),
}

impl Kept {
    fn window(
        &self,
        session: &str,
        max: usize,
        tokens: Option<i64>,
    ) -> crate::Result<Vec<MemoryMessage>> {
        match self {
            Kept::Sqlite(s) => s.memory_window(session, max, tokens),
            Kept::Pg(p) => p.wait(p.pg().memory_window(session, max, tokens)),
        }
    }
    fn summary(&self, session: &str) -> crate::Result<Option<String>> {
        match self {
            Kept::Sqlite(s) => s.memory_summary(session),
            Kept::Pg(p) => p.wait(p.pg().memory_summary(session)),
        }
    }
    fn messages(&self, session: &str) -> crate::Result<Vec<MemoryMessage>> {
        Ok(match self {
            Kept::Sqlite(s) => s.memory_messages(session)?,
            Kept::Pg(p) => p.wait(p.pg().memory_messages(session))?,
        }
        .unwrap_or_default())
    }
    fn append(&mut self, session: &str, messages: &[(&str, &str)]) -> crate::Result<()> {
        match self {
            Kept::Sqlite(s) => s.memory_append(session, messages),
            Kept::Pg(p) => p.wait(p.pg().memory_append(session, messages)),
        }
    }
    fn summarize(&mut self, session: &str, through: i64, summary: &str) -> crate::Result<()> {
        match self {
            Kept::Sqlite(s) => s.memory_summarize(session, through, summary),
            Kept::Pg(p) => p.wait(p.pg().memory_summarize(session, through, summary)),
        }
    }
}

/// What a node's `memory` input asks for.
#[derive(Debug, Clone)]
pub struct MemorySpec {
    pub session: String,
    pub window: usize,
    pub window_tokens: Option<i64>,
    /// Older turns leaving the window are summarised by the model (kept as
    /// one summary per session) instead of forgotten.
    pub summarize: bool,
}

/// What a session holds for the next call.
pub struct Remembered {
    /// The summary of turns older than the window.
    pub summary: Option<String>,
    pub messages: Vec<Msg>,
}

impl Remembered {
    /// The summary as a system message's text.
    pub fn summary_text(&self) -> Option<String> {
        self.summary
            .as_ref()
            .map(|s| format!("Summary of the earlier conversation: {s}"))
    }
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
            .find(|k| !["session", "window", "window_tokens", "summarize"].contains(&k.as_str()))
        {
            return Err(NodeError::input(format!(
                "memory has an unknown key {k:?}; it takes session, window (messages), window_tokens and summarize"
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
        let summarize = match spec.get("summarize") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong_type("memory.summarize", "true or false", other)),
        };
        Ok(Some(MemorySpec {
            session,
            window,
            window_tokens,
            summarize,
        }))
    }
}

impl Memory {
    /// Where to open the memory store (on a blocking thread, with [`open`]).
    fn path(&self) -> Result<(Option<String>, PathBuf), NodeError> {
        let db = self.db.clone().ok_or_else(|| {
            NodeError::input(
                "memory needs a fuse home to keep the conversation in; run `fuse init` (or drop `memory`)",
            )
        })?;
        Ok((self.pg.clone(), db))
    }

    /// The session's summary and the messages of its window, oldest first.
    pub async fn load(&self, spec: &MemorySpec) -> Result<Remembered, NodeError> {
        let path = self.path()?;
        let spec = spec.clone();
        let (summary, rows) = blocking(move || {
            let store = open(path)?;
            let rows = if spec.window == 0 {
                Vec::new()
            } else {
                store.window(&spec.session, spec.window, spec.window_tokens)?
            };
            Ok((store.summary(&spec.session)?, rows))
        })
        .await?;
        let messages = rows
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
            .collect();
        Ok(Remembered { summary, messages })
    }

    /// With `summarize`, folds the turns that have left the window (and the
    /// summary so far) into a new summary written by the model. A failure is
    /// logged and leaves the messages as they were (the window still bounds
    /// what is sent).
    pub async fn compact(&self, spec: &MemorySpec, ctx: &NodeCtx, endpoint: &Endpoint) {
        if !spec.summarize {
            return;
        }
        if let Err(e) = self.try_compact(spec, ctx, endpoint).await {
            ctx.log(
                LogLevel::Warn,
                format!(
                    "memory {:?}: the older turns could not be summarised: {}",
                    spec.session, e.message
                ),
            );
        }
    }

    async fn try_compact(
        &self,
        spec: &MemorySpec,
        ctx: &NodeCtx,
        endpoint: &Endpoint,
    ) -> Result<(), NodeError> {
        let path = self.path()?;
        let session = spec.session.clone();
        let (summary, rows) = blocking(move || {
            let store = open(path)?;
            Ok((store.summary(&session)?, store.messages(&session)?))
        })
        .await?;
        if rows.len() <= spec.window {
            return Ok(());
        }
        // The window starts at a user message; everything before it is folded.
        let mut cut = rows.len() - spec.window;
        while cut < rows.len() && rows[cut].role != "user" {
            cut += 1;
        }
        if cut == 0 {
            return Ok(());
        }
        let older = &rows[..cut];
        let mut text = String::new();
        if let Some(s) = &summary {
            text.push_str(&format!("Summary so far: {s}\n\n"));
        }
        for m in older {
            text.push_str(&format!("{}: {}\n", m.role, m.content));
        }
        let prompt = format!(
            "Summarise this conversation in a few sentences for your own later reference. \
             Keep names, facts, numbers and decisions; leave out pleasantries.\n\n{text}"
        );
        // Not streamed: the summary is not part of the node's visible answer.
        let mut endpoint = endpoint.clone();
        endpoint.stream = false;
        let body = endpoint.body(None, &[Msg::User(prompt)], &[]);
        let turn = endpoint.send(ctx, &body).await?;
        let new_summary = turn.text.trim().to_string();
        if new_summary.is_empty() {
            return Err(NodeError::other("the model gave an empty summary"));
        }
        let (path, session, through) = (
            self.path()?,
            spec.session.clone(),
            older[older.len() - 1].id,
        );
        blocking(move || open(path)?.summarize(&session, through, &new_summary)).await?;
        ctx.log(
            LogLevel::Info,
            format!(
                "memory {:?}: {} older message(s) summarised",
                spec.session,
                older.len()
            ),
        );
        Ok(())
    }

    /// Adds an exchange to the session, if the node keeps memory.
    pub async fn keep(
        &self,
        spec: Option<&MemorySpec>,
        user: &str,
        answer: &str,
    ) -> Result<(), NodeError> {
        match spec {
            Some(spec) => self.save(spec, user, answer).await,
            None => Ok(()),
        }
    }

    /// Adds an exchange to the session.
    pub async fn save(&self, spec: &MemorySpec, user: &str, answer: &str) -> Result<(), NodeError> {
        let path = self.path()?;
        let (session, user, answer) = (spec.session.clone(), user.to_string(), answer.to_string());
        blocking(move || open(path)?.append(&session, &[("user", &user), ("assistant", &answer)]))
            .await
    }
}

/// Opens the memory store: the store on PostgreSQL when there is one,
/// else the home's database.
fn open((pg, db): (Option<String>, PathBuf)) -> crate::Result<Kept> {
    Ok(match pg {
        Some(url) => Kept::Pg(crate::store::pg::db::shared(&url)?),
        None => Kept::Sqlite(Store::open_reader(&db)?),
    })
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
