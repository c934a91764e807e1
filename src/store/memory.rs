//! Conversation memory of `llm.chat` and `llm.agent`: messages per session,
//! oldest first, with an estimate of their tokens so a window can be cut by
//! tokens as well as by messages.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::Result;

/// One remembered message.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryMessage {
    pub id: i64,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    /// Estimated tokens (about four characters each).
    pub tokens: i64,
    pub created_at: i64,
}

/// A session and how much it holds.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemorySession {
    pub session: String,
    pub messages: i64,
    pub tokens: i64,
    /// When its last message was added (Unix ms).
    pub updated_at: i64,
}

/// Longest session name kept (names come from expressions such as a user id).
pub const MAX_SESSION: usize = 200;

/// The estimated tokens of a text: about four characters each, at least one.
pub fn estimate_tokens(text: &str) -> i64 {
    ((text.chars().count() as i64 + 3) / 4).max(1)
}

/// Checks a session name: not empty, at most [`MAX_SESSION`] characters, no
/// control characters.
pub fn check_session(session: &str) -> std::result::Result<(), String> {
    if session.trim().is_empty() {
        return Err(
            "the memory session is empty; give memory.session a value, e.g. \"{{ trigger.user }}\""
                .into(),
        );
    }
    if session.chars().count() > MAX_SESSION {
        return Err(format!(
            "the memory session name is longer than {MAX_SESSION} characters"
        ));
    }
    if session.chars().any(char::is_control) {
        return Err("the memory session name has a control character".into());
    }
    Ok(())
}

/// The window of a session from its newest messages (newest first): as
/// many as fit `max_tokens`, oldest first, never starting with an answer
/// whose question was cut off.
pub fn window_of(newest_first: Vec<MemoryMessage>, max_tokens: Option<i64>) -> Vec<MemoryMessage> {
    let mut kept = Vec::with_capacity(newest_first.len());
    let mut tokens = 0;
    for m in newest_first {
        tokens += m.tokens;
        if max_tokens.is_some_and(|limit| tokens > limit) {
            break;
        }
        kept.push(m);
    }
    kept.reverse();
    while kept.first().is_some_and(|m| m.role != "user") {
        kept.remove(0);
    }
    kept
}

impl Store {
    /// The newest messages of a session (oldest first) that fit both limits.
    pub fn memory_window(
        &self,
        session: &str,
        max_messages: usize,
        max_tokens: Option<i64>,
    ) -> Result<Vec<MemoryMessage>> {
        let err = |e| self.db_err("reading memory", e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, role, content, tokens, created_at FROM memory_messages
                 WHERE session = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![session, max_messages as i64], row)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(err)?;
        Ok(window_of(rows, max_tokens))
    }

    /// Adds messages to a session, in order, in one transaction.
    pub fn memory_append(&mut self, session: &str, messages: &[(&str, &str)]) -> Result<()> {
        let now = crate::engine::events::now_ms();
        let (tx, err) = self.write_tx("writing memory")?;
        let err = |e| err.of(e);
        for (role, content) in messages {
            tx.prepare_cached(
                "INSERT INTO memory_messages (session, role, content, tokens, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    session,
                    role,
                    content,
                    estimate_tokens(content),
                    now
                ])
            })
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Every session, most recently used first.
    pub fn memory_sessions(&self) -> Result<Vec<MemorySession>> {
        let err = |e| self.db_err("reading memory", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT session, COUNT(*), SUM(tokens), MAX(created_at) FROM memory_messages
                 GROUP BY session ORDER BY MAX(id) DESC",
            )
            .map_err(err)?;
        stmt.query_map([], |r| {
            Ok(MemorySession {
                session: r.get(0)?,
                messages: r.get(1)?,
                tokens: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(err)
    }

    /// All messages of a session, oldest first; `None` when it has none.
    pub fn memory_messages(&self, session: &str) -> Result<Option<Vec<MemoryMessage>>> {
        let err = |e| self.db_err("reading memory", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, role, content, tokens, created_at FROM memory_messages
                 WHERE session = ?1 ORDER BY id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([session], row)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(err)?;
        Ok((!rows.is_empty()).then_some(rows))
    }

    /// Forgets a session (or every session, with `None`): the messages removed.
    pub fn memory_clear(&self, session: Option<&str>) -> Result<usize> {
        let done = match session {
            Some(s) => self
                .conn
                .execute("DELETE FROM memory_summaries WHERE session = ?1", [s])
                .and_then(|_| {
                    self.conn
                        .execute("DELETE FROM memory_messages WHERE session = ?1", [s])
                }),
            None => self
                .conn
                .execute("DELETE FROM memory_summaries", [])
                .and_then(|_| self.conn.execute("DELETE FROM memory_messages", [])),
        };
        done.map_err(|e| self.db_err("clearing memory", e))
    }

    /// The summary of a session's older turns, if one was made.
    pub fn memory_summary(&self, session: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT content FROM memory_summaries WHERE session = ?1",
                [session],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db_err("reading memory", e))
    }

    /// Replaces the messages up to `through_id` with a summary, in one transaction.
    pub fn memory_summarize(
        &mut self,
        session: &str,
        through_id: i64,
        summary: &str,
    ) -> Result<()> {
        let now = crate::engine::events::now_ms();
        let (tx, err) = self.write_tx("writing memory")?;
        let err = |e| err.of(e);
        tx.execute(
            "INSERT OR REPLACE INTO memory_summaries (session, content, tokens, updated_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![session, summary, estimate_tokens(summary), now],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM memory_messages WHERE session = ?1 AND id <= ?2",
            params![session, through_id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MemoryMessage> {
    Ok(MemoryMessage {
        id: r.get(0)?,
        role: r.get(1)?,
        content: r.get(2)?,
        tokens: r.get(3)?,
        created_at: r.get(4)?,
    })
}
