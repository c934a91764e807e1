//! The `credentials` table: sealed (encrypted) credentials. The vault
//! ([`crate::secrets::Vault`]) seals and opens them; this module only stores
//! rows, so every SQL statement of the store stays in the store.

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::{Error, Result};

/// What `fuse creds list` shows: never a value.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct CredentialInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub fields: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
}

/// A stored credential: its name and type (the associated data) and the
/// nonce and ciphertext of its fields.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub name: String,
    pub kind: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Seals one credential again: its new (nonce, ciphertext).
pub type Reseal<'a> = dyn FnMut(&Sealed) -> Result<(Vec<u8>, Vec<u8>)> + 'a;

/// The sealed credentials and the `meta` values the vault keeps beside them
/// (the master key's store and fingerprint): what the vault asks of a
/// database. [`Store`] (one connection, for the CLI) and the daemon's
/// [`super::Db`] implement it, so a PostgreSQL store can hold credentials too.
pub trait CredentialStore: Send + Sync {
    fn meta(&self, key: &str) -> Result<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    /// Creates or replaces a credential; `field_names` is the JSON list of its
    /// field names (shown by `list`).
    fn put_credential(&self, sealed: &Sealed, field_names: &str, now_ms: i64) -> Result<()>;
    /// One credential; `None` when there is none of that name.
    fn sealed_credential(&self, name: &str) -> Result<Option<Sealed>>;
    /// Any one credential (to check a key against).
    fn any_sealed_credential(&self) -> Result<Option<Sealed>>;
    /// Notes that a credential was used.
    fn touch_credential(&self, name: &str, now_ms: i64) -> Result<()>;
    /// Every credential, by name; never a value.
    fn list_credentials(&self) -> Result<Vec<CredentialInfo>>;
    /// Deletes a credential; false when there was none.
    fn remove_credential(&self, name: &str) -> Result<bool>;
    /// One transaction: every credential sealed again by `reseal` and
    /// `meta[key] = value`; any error rolls all of it back. Returns how many.
    fn reseal_credentials(&self, reseal: &mut Reseal<'_>, meta: (&str, &str)) -> Result<usize>;
}

/// One connection of its own (the CLI's vault).
impl CredentialStore for std::sync::Mutex<Store> {
    fn meta(&self, key: &str) -> Result<Option<String>> {
        locked(self)?.meta(key)
    }
    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        locked(self)?.set_meta(key, value)
    }
    fn put_credential(&self, sealed: &Sealed, field_names: &str, now_ms: i64) -> Result<()> {
        locked(self)?.put_credential(sealed, field_names, now_ms)
    }
    fn sealed_credential(&self, name: &str) -> Result<Option<Sealed>> {
        locked(self)?.sealed_credential(name)
    }
    fn any_sealed_credential(&self) -> Result<Option<Sealed>> {
        locked(self)?.any_sealed_credential()
    }
    fn touch_credential(&self, name: &str, now_ms: i64) -> Result<()> {
        locked(self)?.touch_credential(name, now_ms)
    }
    fn list_credentials(&self) -> Result<Vec<CredentialInfo>> {
        locked(self)?.list_credentials()
    }
    fn remove_credential(&self, name: &str) -> Result<bool> {
        locked(self)?.remove_credential(name)
    }
    fn reseal_credentials(&self, reseal: &mut Reseal<'_>, meta: (&str, &str)) -> Result<usize> {
        locked(self)?.reseal_credentials(reseal, meta)
    }
}

fn locked(store: &std::sync::Mutex<Store>) -> Result<std::sync::MutexGuard<'_, Store>> {
    store.lock().map_err(|_| {
        Error::Credential("the credentials store is unusable after a crash; retry".into())
    })
}

impl Store {
    /// Creates or replaces a credential; `field_names` is the JSON list of its
    /// field names (shown by `list`).
    pub fn put_credential(&self, sealed: &Sealed, field_names: &str, now_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO credentials (name, type, fields, nonce, ciphertext, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (name) DO UPDATE SET type = excluded.type, fields = excluded.fields,
                   nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                params![sealed.name, sealed.kind, field_names, sealed.nonce, sealed.ciphertext, now_ms],
            )
            .map(|_| ())
            .map_err(|e| self.db_err("storing a credential", e))
    }

    /// One credential; `None` when there is none of that name.
    pub fn sealed_credential(&self, name: &str) -> Result<Option<Sealed>> {
        self.conn
            .query_row(
                "SELECT name, type, nonce, ciphertext FROM credentials WHERE name = ?1",
                [name],
                sealed,
            )
            .optional()
            .map_err(|e| self.db_err("reading a credential", e))
    }

    /// Any one credential (to check a key against).
    pub fn any_sealed_credential(&self) -> Result<Option<Sealed>> {
        self.conn
            .query_row(
                "SELECT name, type, nonce, ciphertext FROM credentials LIMIT 1",
                [],
                sealed,
            )
            .optional()
            .map_err(|e| self.db_err("reading credentials", e))
    }

    /// Notes that a credential was used.
    pub fn touch_credential(&self, name: &str, now_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE credentials SET last_used_at = ?2 WHERE name = ?1",
                params![name, now_ms],
            )
            .map(|_| ())
            .map_err(|e| self.db_err("noting a credential's use", e))
    }

    /// Every credential, by name; never a value.
    pub fn list_credentials(&self) -> Result<Vec<CredentialInfo>> {
        let result = (|| -> rusqlite::Result<Vec<CredentialInfo>> {
            let mut stmt = self.conn.prepare(
                "SELECT name, type, fields, created_at, updated_at, last_used_at
                 FROM credentials ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                let fields: String = r.get(2)?;
                Ok(CredentialInfo {
                    name: r.get(0)?,
                    kind: r.get(1)?,
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                    created_at: r.get(3)?,
                    updated_at: r.get(4)?,
                    last_used_at: r.get(5)?,
                })
            })?;
            rows.collect()
        })();
        result.map_err(|e| self.db_err("listing credentials", e))
    }

    /// Deletes a credential; false when there was none.
    pub fn remove_credential(&self, name: &str) -> Result<bool> {
        self.conn
            .execute("DELETE FROM credentials WHERE name = ?1", [name])
            .map(|n| n > 0)
            .map_err(|e| self.db_err("deleting a credential", e))
    }

    /// One transaction: every credential sealed again by `reseal` (its new
    /// nonce and ciphertext) and `meta[key] = value` (the new key's
    /// fingerprint). Any error rolls all of it back. Returns how many.
    pub fn reseal_credentials(
        &mut self,
        reseal: &mut Reseal<'_>,
        meta: (&str, &str),
    ) -> Result<usize> {
        let path = self.path.clone();
        let err = |cause| Error::Database {
            action: "re-encrypting credentials",
            path: path.clone(),
            cause,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let rows: Vec<Sealed> = tx
            .prepare("SELECT name, type, nonce, ciphertext FROM credentials")
            .and_then(|mut stmt| stmt.query_map([], sealed)?.collect())
            .map_err(err)?;
        for row in &rows {
            let (nonce, ciphertext) = reseal(row)?;
            tx.execute(
                "UPDATE credentials SET nonce = ?2, ciphertext = ?3 WHERE name = ?1",
                params![row.name, nonce, ciphertext],
            )
            .map_err(err)?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![meta.0, meta.1],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(rows.len())
    }
}

fn sealed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Sealed> {
    Ok(Sealed {
        name: r.get(0)?,
        kind: r.get(1)?,
        nonce: r.get(2)?,
        ciphertext: r.get(3)?,
    })
}
