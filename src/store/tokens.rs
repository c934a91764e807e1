//! API tokens: named, scoped (`read` ⊂ `run` ⊂ `admin`), stored as SHA-256
//! hashes. The token of the home's `api-token` file (made by `fuse init`) is
//! the first admin token, `init`. A change bumps `meta.tokens_version`, which
//! a running daemon watches to pick up new and revoked tokens.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::Store;
use crate::error::{Error, Result};

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read everything (workflows, runs, logs, nodes, schedules).
    Read,
    /// Read, and start, cancel and retry runs.
    Run,
    /// Everything: deploy, delete, credentials, tokens.
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope> {
        match text {
            "read" => Ok(Scope::Read),
            "run" => Ok(Scope::Run),
            "admin" => Ok(Scope::Admin),
            other => Err(Error::Setting(format!(
                "unknown scope {other:?}; use read, run or admin"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Admin => "admin",
        }
    }
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub scope: Scope,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// The name of the token in the home's `api-token` file.
pub const INIT_TOKEN: &str = "init";

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    crate::digest::sha256_hex(token.trim())
}

/// A new random token (256 bits, hex).
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Setting(format!("cannot get random bytes for a token: {e}")))?;
    Ok(crate::digest::hex(&bytes))
}

/// The error for a token name already in use.
pub(crate) fn name_taken(name: &str) -> Error {
    Error::Setting(format!(
        "a token named {name:?} exists; revoke it first (`fuse tokens revoke {name}`) or pick another name"
    ))
}

/// Whether a token name is acceptable (letters, digits, `-`, `_`).
pub(crate) fn check_name(name: &str) -> Result<()> {
    if crate::packages::manifest::valid_name(name) {
        Ok(())
    } else {
        Err(Error::Setting(format!(
            "{name:?} is not a valid token name: use letters, digits, `-` and `_` (at most 64)"
        )))
    }
}

impl Store {
    /// Stores a token under `name`; refuses a name in use.
    pub fn add_token(&self, name: &str, token: &str, scope: Scope) -> Result<()> {
        check_name(name)?;
        let err = |e| self.db_err("storing a token", e);
        let taken: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )
            .map_err(err)?;
        if taken {
            return Err(name_taken(name));
        }
        self.conn
            .execute(
                "INSERT INTO api_tokens (name, hash, scope, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![
                    name,
                    hash(token),
                    scope.as_str(),
                    crate::engine::events::now_ms()
                ],
            )
            .map_err(err)?;
        self.bump_tokens_version()
    }

    /// Makes sure the token of the `api-token` file is the `init` admin token.
    pub fn ensure_init_token(&self, token: &str) -> Result<()> {
        let err = |e| self.db_err("storing the init token", e);
        let known: Option<String> = self
            .conn
            .query_row(
                "SELECT hash FROM api_tokens WHERE name = ?1",
                [INIT_TOKEN],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if known.as_deref() == Some(hash(token).as_str()) {
            return Ok(());
        }
        self.conn
            .execute(
                "INSERT INTO api_tokens (name, hash, scope, created_at) VALUES (?1, ?2, 'admin', ?3)
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, scope = 'admin'",
                params![INIT_TOKEN, hash(token), crate::engine::events::now_ms()],
            )
            .map_err(err)?;
        self.bump_tokens_version()
    }

    /// Every token, oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        Ok(self.stored_tokens()?.into_iter().map(|(_, t)| t).collect())
    }

    /// (hash, name, scope) of every token: what the daemon checks against.
    pub fn token_hashes(&self) -> Result<Vec<(String, String, Scope)>> {
        Ok(self
            .stored_tokens()?
            .into_iter()
            .map(|(hash, t)| (hash, t.name, t.scope))
            .collect())
    }

    /// Every token with its hash, oldest first.
    pub(crate) fn stored_tokens(&self) -> Result<Vec<(String, TokenInfo)>> {
        let err = |e| self.db_err("reading tokens", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT hash, name, scope, created_at, last_used_at FROM api_tokens
                 ORDER BY created_at, name",
            )
            .map_err(err)?;
        let rows: Vec<(String, String, String, i64, Option<i64>)> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        rows.into_iter()
            .map(|(hash, name, scope, created_at, last_used_at)| {
                let scope = Scope::parse(&scope)?;
                Ok((
                    hash,
                    TokenInfo {
                        name,
                        scope,
                        created_at,
                        last_used_at,
                    },
                ))
            })
            .collect()
    }

    /// Deletes a token; false when there was none by that name.
    pub fn revoke_token(&self, name: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM api_tokens WHERE name = ?1", [name])
            .map_err(|e| self.db_err("revoking a token", e))?;
        if n > 0 {
            self.bump_tokens_version()?;
        }
        Ok(n > 0)
    }

    /// Records when tokens were last used (the daemon batches these).
    pub fn touch_tokens(&self, used: &[(String, i64)]) -> Result<()> {
        for (name, at) in used {
            self.conn
                .execute(
                    "UPDATE api_tokens SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE name = ?1",
                    params![name, at],
                )
                .map_err(|e| self.db_err("recording token use", e))?;
        }
        Ok(())
    }

    /// A number that changes whenever a token is added or revoked.
    pub fn tokens_version(&self) -> Result<i64> {
        Ok(self
            .meta("tokens_version")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    fn bump_tokens_version(&self) -> Result<()> {
        let next = self.tokens_version()? + 1;
        self.set_meta("tokens_version", &next.to_string())
    }
}
