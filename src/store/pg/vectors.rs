//! Vector collections and the embedding cache on PostgreSQL: the statements
//! of [`crate::store::Store`]'s (`store/vectors.rs`), one for one, so
//! `vector.*` and `llm.embed` behave the same on both (`tests/store.rs`).

use std::collections::HashMap;

use serde_json::Value;

use super::{Pg, PgError, Result, query_error};
use crate::store::vectors::{CollectionInfo, LoadedCollection, VectorItem, from_blob, to_blob};

fn now_ms() -> i64 {
    crate::engine::events::now_ms()
}

/// A refusal the node shows as a bad input (as SQLite's `Error::Setting`).
fn refused(message: String) -> PgError {
    PgError::Refused(message)
}

impl Pg {
    /// Adds or replaces items (by id), creating the collection on first use:
    /// the collection's item count after the write. One transaction, with
    /// the collection's row locked.
    pub async fn vector_upsert(&self, collection: &str, items: &[VectorItem]) -> Result<i64> {
        let mut client = self.client().await?;
        let err = query_error("writing vectors");
        let Some(dims) = items.first().map(|i| i.embedding.len()) else {
            return self.vector_count(&client, collection).await;
        };
        if let Some(bad) = items.iter().find(|i| i.embedding.len() != dims) {
            return Err(refused(format!(
                "the embeddings have different lengths ({dims} and {} for {:?}); embed everything with one model",
                bad.embedding.len(),
                bad.id
            )));
        }
        let tx = client.transaction().await.map_err(&err)?;
        let had: i64 = tx
            .query_one(
                "INSERT INTO vector_collections (name, dims, version, created_at, updated_at)
                 VALUES ($1, $2, 1, $3, $3)
                 ON CONFLICT (name) DO UPDATE SET version = vector_collections.version + 1,
                   updated_at = excluded.updated_at
                 RETURNING dims",
                &[&collection, &(dims as i64), &now_ms()],
            )
            .await
            .map_err(&err)?
            .get(0);
        if had as usize != dims {
            return Err(refused(format!(
                "collection {collection:?} holds vectors of {had} dimensions, these have {dims}; \
                 use the model the collection was made with, or another collection"
            )));
        }
        let insert = tx
            .prepare(
                "INSERT INTO vectors (collection, id, text, metadata, embedding) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (collection, id) DO UPDATE SET text = excluded.text,
                   metadata = excluded.metadata, embedding = excluded.embedding",
            )
            .await
            .map_err(&err)?;
        for item in items {
            tx.execute(
                &insert,
                &[
                    &collection,
                    &item.id,
                    &item.text,
                    &item.metadata.to_string(),
                    &to_blob(&item.embedding),
                ],
            )
            .await
            .map_err(&err)?;
        }
        tx.commit().await.map_err(&err)?;
        self.vector_count(&client, collection).await
    }

    async fn vector_count(
        &self,
        client: &deadpool_postgres::Object,
        collection: &str,
    ) -> Result<i64> {
        Ok(client
            .query_one(
                "SELECT COUNT(*) FROM vectors WHERE collection = $1",
                &[&collection],
            )
            .await
            .map_err(query_error("reading vectors"))?
            .get(0))
    }

    /// (version, dims) of a collection; `None` when there is none.
    pub async fn vector_version(&self, collection: &str) -> Result<Option<(i64, usize)>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT version, dims FROM vector_collections WHERE name = $1",
                &[&collection],
            )
            .await
            .map_err(query_error("reading vectors"))?;
        Ok(row.map(|r| (r.get(0), r.get::<_, i64>(1) as usize)))
    }

    /// A whole collection for the search index (`None` when there is none),
    /// read in one transaction so its version matches its rows.
    pub async fn vector_load(&self, collection: &str) -> Result<Option<LoadedCollection>> {
        let mut client = self.client().await?;
        let err = query_error("reading vectors");
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(&err)?;
        let Some(head) = tx
            .query_opt(
                "SELECT version, dims FROM vector_collections WHERE name = $1",
                &[&collection],
            )
            .await
            .map_err(&err)?
        else {
            return Ok(None);
        };
        let dims = head.get::<_, i64>(1) as usize;
        let mut out = LoadedCollection {
            version: head.get(0),
            dims,
            ..Default::default()
        };
        let rows = tx
            .query(
                "SELECT id, metadata, embedding FROM vectors WHERE collection = $1",
                &[&collection],
            )
            .await
            .map_err(&err)?;
        for row in rows {
            let blob: &[u8] = row.get(2);
            if blob.len() != dims * 4 {
                continue;
            }
            out.ids.push(row.get(0));
            out.metadata
                .push(serde_json::from_str(row.get(1)).unwrap_or(Value::Null));
            from_blob(blob, &mut out.data);
        }
        tx.commit().await.map_err(&err)?;
        Ok(Some(out))
    }

    /// Text and metadata of items by id (those that exist).
    pub async fn vector_rows(
        &self,
        collection: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, (String, Value)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, text, metadata FROM vectors WHERE collection = $1 AND id = ANY($2)",
                &[&collection, &ids],
            )
            .await
            .map_err(query_error("reading vectors"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let metadata: String = r.get(2);
                (
                    r.get(0),
                    (
                        r.get(1),
                        serde_json::from_str(&metadata).unwrap_or(Value::Null),
                    ),
                )
            })
            .collect())
    }

    /// Deletes items by id, or the whole collection with `None`: the items removed.
    pub async fn vector_delete(&self, collection: &str, ids: Option<&[String]>) -> Result<usize> {
        let mut client = self.client().await?;
        let err = query_error("deleting vectors");
        let tx = client.transaction().await.map_err(&err)?;
        let removed = match ids {
            None => {
                let n = tx
                    .execute("DELETE FROM vectors WHERE collection = $1", &[&collection])
                    .await
                    .map_err(&err)?;
                tx.execute(
                    "DELETE FROM vector_collections WHERE name = $1",
                    &[&collection],
                )
                .await
                .map_err(&err)?;
                n
            }
            Some(ids) => {
                let n = tx
                    .execute(
                        "DELETE FROM vectors WHERE collection = $1 AND id = ANY($2)",
                        &[&collection, &ids],
                    )
                    .await
                    .map_err(&err)?;
                tx.execute(
                    "UPDATE vector_collections SET version = version + 1, updated_at = $2 WHERE name = $1",
                    &[&collection, &now_ms()],
                )
                .await
                .map_err(&err)?;
                n
            }
        };
        tx.commit().await.map_err(&err)?;
        Ok(removed as usize)
    }

    /// Every collection with its size.
    pub async fn vector_collections(&self) -> Result<Vec<CollectionInfo>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT c.name, c.dims, (SELECT COUNT(*) FROM vectors v WHERE v.collection = c.name),
                        c.updated_at
                 FROM vector_collections c ORDER BY c.name",
                &[],
            )
            .await
            .map_err(query_error("reading vectors"))?;
        Ok(rows
            .iter()
            .map(|r| CollectionInfo {
                name: r.get(0),
                dims: r.get(1),
                count: r.get(2),
                updated_at: r.get(3),
            })
            .collect())
    }

    /// Cached embeddings by key (those there are).
    pub async fn embedding_cache_get(&self, keys: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key, embedding FROM embedding_cache WHERE key = ANY($1)",
                &[&keys],
            )
            .await
            .map_err(query_error("reading the embedding cache"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let blob: &[u8] = r.get(1);
                let mut v = Vec::with_capacity(blob.len() / 4);
                from_blob(blob, &mut v);
                (r.get(0), v)
            })
            .collect())
    }

    pub async fn embedding_cache_put(&self, entries: &[(String, Vec<f32>)]) -> Result<()> {
        let mut client = self.client().await?;
        let err = query_error("writing the embedding cache");
        let tx = client.transaction().await.map_err(&err)?;
        let now = now_ms();
        for (key, v) in entries {
            tx.execute(
                "INSERT INTO embedding_cache (key, embedding, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET embedding = excluded.embedding, created_at = excluded.created_at",
                &[key, &to_blob(v), &now],
            )
            .await
            .map_err(&err)?;
        }
        tx.commit().await.map_err(&err)
    }
}
