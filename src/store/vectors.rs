//! Vector collections of `vector.upsert`/`query`/`delete` and the embedding
//! cache of `llm.embed`. A collection has one dimension count; every write
//! bumps its version so in-memory copies (the search index) know when to
//! reload.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Store;
use crate::error::{Error, Result};

/// One item of a collection.
#[derive(Debug, Clone)]
pub struct VectorItem {
    pub id: String,
    pub text: String,
    pub metadata: Value,
    /// Normalised to length 1.
    pub embedding: Vec<f32>,
}

/// A collection as `fuse`/the API list it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CollectionInfo {
    pub name: String,
    pub dims: i64,
    pub count: i64,
    pub updated_at: i64,
}

/// A whole collection as the search index loads it: ids, metadata and the
/// embeddings one after another (`dims` floats each).
#[derive(Debug, Default)]
pub struct LoadedCollection {
    pub version: i64,
    pub dims: usize,
    pub ids: Vec<String>,
    pub metadata: Vec<Value>,
    pub data: Vec<f32>,
}

/// Checks a collection name: letters, digits, `-`, `_` and `.`, at most 64.
pub fn check_collection(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid collection name: use 1 to 64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn from_blob(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
}

impl Store {
    /// Adds or replaces items (by id); creates the collection on first use.
    /// Returns the collection's item count after the write.
    pub fn vector_upsert(&mut self, collection: &str, items: &[VectorItem]) -> Result<i64> {
        let Some(dims) = items.first().map(|i| i.embedding.len()) else {
            return self.vector_count(collection);
        };
        if let Some(bad) = items.iter().find(|i| i.embedding.len() != dims) {
            return Err(Error::Setting(format!(
                "the embeddings have different lengths ({dims} and {} for {:?}); embed everything with one model",
                bad.embedding.len(),
                bad.id
            )));
        }
        let now = crate::engine::events::now_ms();
        let (tx, err) = self.write_tx("writing vectors")?;
        let err = |e| err.of(e);
        let existing: Option<i64> = tx
            .query_row(
                "SELECT dims FROM vector_collections WHERE name = ?1",
                [collection],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        match existing {
            Some(d) if d as usize != dims => {
                return Err(Error::Setting(format!(
                    "collection {collection:?} holds vectors of {d} dimensions, these have {dims}; \
                     use the model the collection was made with, or another collection"
                )));
            }
            Some(_) => {
                tx.execute(
                    "UPDATE vector_collections SET version = version + 1, updated_at = ?2 WHERE name = ?1",
                    params![collection, now],
                )
                .map_err(err)?;
            }
            None => {
                tx.execute(
                    "INSERT INTO vector_collections (name, dims, version, created_at, updated_at)
                     VALUES (?1, ?2, 1, ?3, ?3)",
                    params![collection, dims as i64, now],
                )
                .map_err(err)?;
            }
        }
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO vectors (collection, id, text, metadata, embedding)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            for item in items {
                stmt.execute(params![
                    collection,
                    item.id,
                    item.text,
                    item.metadata.to_string(),
                    to_blob(&item.embedding)
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        self.vector_count(collection)
    }

    fn vector_count(&self, collection: &str) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM vectors WHERE collection = ?1",
                [collection],
                |r| r.get(0),
            )
            .map_err(|e| self.db_err("reading vectors", e))
    }

    /// (version, dims) of a collection; `None` when there is none.
    pub fn vector_version(&self, collection: &str) -> Result<Option<(i64, usize)>> {
        self.conn
            .query_row(
                "SELECT version, dims FROM vector_collections WHERE name = ?1",
                [collection],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)),
            )
            .optional()
            .map_err(|e| self.db_err("reading vectors", e))
    }

    /// A whole collection for the search index (`None` when there is none).
    pub fn vector_load(&self, collection: &str) -> Result<Option<LoadedCollection>> {
        let Some((version, dims)) = self.vector_version(collection)? else {
            return Ok(None);
        };
        let err = |e| self.db_err("reading vectors", e);
        let mut out = LoadedCollection {
            version,
            dims,
            ..Default::default()
        };
        let mut stmt = self
            .conn
            .prepare("SELECT id, metadata, embedding FROM vectors WHERE collection = ?1")
            .map_err(err)?;
        let mut rows = stmt.query([collection]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let id: String = row.get(0).map_err(err)?;
            let metadata: String = row.get(1).map_err(err)?;
            let blob = row.get_ref(2).map_err(err)?.as_blob().map_err(|e| {
                self.db_err(
                    "reading vectors",
                    rusqlite::Error::FromSqlConversionFailure(
                        2,
                        rusqlite::types::Type::Blob,
                        Box::new(e),
                    ),
                )
            })?;
            if blob.len() != dims * 4 {
                continue;
            }
            out.ids.push(id);
            out.metadata
                .push(serde_json::from_str(&metadata).unwrap_or(Value::Null));
            from_blob(blob, &mut out.data);
        }
        Ok(Some(out))
    }

    /// Text and metadata of items by id (those that exist).
    pub fn vector_rows(
        &self,
        collection: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, (String, Value)>> {
        let err = |e| self.db_err("reading vectors", e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT text, metadata FROM vectors WHERE collection = ?1 AND id = ?2")
            .map_err(err)?;
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some((text, metadata)) = stmt
                .query_row(params![collection, id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()
                .map_err(err)?
            {
                out.insert(
                    id.to_string(),
                    (text, serde_json::from_str(&metadata).unwrap_or(Value::Null)),
                );
            }
        }
        Ok(out)
    }

    /// Deletes items by id, or the whole collection with `None`: the items removed.
    pub fn vector_delete(&mut self, collection: &str, ids: Option<&[String]>) -> Result<usize> {
        let now = crate::engine::events::now_ms();
        let (tx, err) = self.write_tx("deleting vectors")?;
        let err = |e| err.of(e);
        let removed = match ids {
            None => {
                let n = tx
                    .execute("DELETE FROM vectors WHERE collection = ?1", [collection])
                    .map_err(err)?;
                tx.execute(
                    "DELETE FROM vector_collections WHERE name = ?1",
                    [collection],
                )
                .map_err(err)?;
                n
            }
            Some(ids) => {
                let mut n = 0;
                {
                    let mut stmt = tx
                        .prepare_cached("DELETE FROM vectors WHERE collection = ?1 AND id = ?2")
                        .map_err(err)?;
                    for id in ids {
                        n += stmt.execute(params![collection, id]).map_err(err)?;
                    }
                }
                tx.execute(
                    "UPDATE vector_collections SET version = version + 1, updated_at = ?2 WHERE name = ?1",
                    params![collection, now],
                )
                .map_err(err)?;
                n
            }
        };
        tx.commit().map_err(err)?;
        Ok(removed)
    }

    /// Every item of a collection, to copy into another store.
    pub fn vector_items(&self, collection: &str) -> Result<Vec<VectorItem>> {
        let err = |e| self.db_err("reading vectors", e);
        let mut stmt = self
            .conn
            .prepare("SELECT id, text, metadata, embedding FROM vectors WHERE collection = ?1 ORDER BY id")
            .map_err(err)?;
        stmt.query_map([collection], |r| {
            let metadata: String = r.get(2)?;
            let blob: Vec<u8> = r.get(3)?;
            let mut embedding = Vec::with_capacity(blob.len() / 4);
            from_blob(&blob, &mut embedding);
            Ok(VectorItem {
                id: r.get(0)?,
                text: r.get(1)?,
                metadata: serde_json::from_str(&metadata).unwrap_or(Value::Null),
                embedding,
            })
        })
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(err)
    }

    /// Every collection with its size.
    pub fn vector_collections(&self) -> Result<Vec<CollectionInfo>> {
        let err = |e| self.db_err("reading vectors", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.name, c.dims, (SELECT COUNT(*) FROM vectors v WHERE v.collection = c.name), c.updated_at
                 FROM vector_collections c ORDER BY c.name",
            )
            .map_err(err)?;
        stmt.query_map([], |r| {
            Ok(CollectionInfo {
                name: r.get(0)?,
                dims: r.get(1)?,
                count: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(err)
    }

    /// Cached embeddings by key (those there are).
    pub fn embedding_cache_get(&self, keys: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        let err = |e| self.db_err("reading the embedding cache", e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT embedding FROM embedding_cache WHERE key = ?1")
            .map_err(err)?;
        let mut out = HashMap::new();
        for key in keys {
            if let Some(blob) = stmt
                .query_row([key], |r| r.get::<_, Vec<u8>>(0))
                .optional()
                .map_err(err)?
            {
                let mut v = Vec::with_capacity(blob.len() / 4);
                from_blob(&blob, &mut v);
                out.insert(key.clone(), v);
            }
        }
        Ok(out)
    }

    pub fn embedding_cache_put(&mut self, entries: &[(String, Vec<f32>)]) -> Result<()> {
        let now = crate::engine::events::now_ms();
        let (tx, err) = self.write_tx("writing the embedding cache")?;
        let err = |e| err.of(e);
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO embedding_cache (key, embedding, created_at) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for (key, v) in entries {
                stmt.execute(params![key, to_blob(v), now]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}
