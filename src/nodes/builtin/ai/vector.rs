//! `llm.embed` (OpenAI-compatible `/embeddings`, batched, cached by content
//! hash), `vector.upsert` / `vector.query` / `vector.delete` (named
//! collections in the fuse database, exact cosine search over contiguous f32
//! data held in memory per collection) and `rerank` (a `/rerank` endpoint or
//! scoring by the chat model).

use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::Env;
use super::docs::documents_of;
use super::provider::{Endpoint, Msg, string_input};
use crate::nodes::{NodeCtx, NodeError, NodeOutput, wrong_type};
use crate::store::Store;
use crate::store::vectors::{LoadedCollection, VectorItem, check_collection};

/// Texts one embeddings request carries by default.
const DEFAULT_BATCH: usize = 64;

fn db(env: &Env, what: &str) -> Result<Place, NodeError> {
    place(env).ok_or_else(|| {
        NodeError::input(format!(
            "{what} needs a fuse home to keep its data in; run `fuse init`"
        ))
    })
}

/// Where collections and the embedding cache live: the store on
/// PostgreSQL when the home's store is there, else the home's database.
#[derive(Debug, Clone)]
struct Place {
    pg: Option<String>,
    db: PathBuf,
}

fn place(env: &Env) -> Option<Place> {
    env.db.clone().map(|db| Place {
        pg: env.pg.clone(),
        db,
    })
}

impl Place {
    /// Opens it (on a blocking thread).
    fn open(&self) -> crate::Result<Vectors> {
        Ok(match &self.pg {
            Some(url) => Vectors::Pg(crate::store::pg::db::shared(url)?),
            None => Vectors::Sqlite(Store::open_reader(&self.db)?),
        })
    }

    /// What tells it apart from other places (for the in-memory indexes).
    fn key(&self) -> String {
        match &self.pg {
            Some(url) => url.clone(),
            None => self.db.display().to_string(),
        }
    }
}

/// An open place, with the statements of both stores.
enum Vectors {
    Sqlite(Store),
    Pg(Arc<crate::store::pg::db::PgDb>),
}

impl Vectors {
    fn upsert(&mut self, collection: &str, items: &[VectorItem]) -> crate::Result<i64> {
        match self {
            Vectors::Sqlite(s) => s.vector_upsert(collection, items),
            Vectors::Pg(p) => p.wait(p.pg().vector_upsert(collection, items)),
        }
    }
    fn version(&self, collection: &str) -> crate::Result<Option<(i64, usize)>> {
        match self {
            Vectors::Sqlite(s) => s.vector_version(collection),
            Vectors::Pg(p) => p.wait(p.pg().vector_version(collection)),
        }
    }
    fn load(&self, collection: &str) -> crate::Result<Option<LoadedCollection>> {
        match self {
            Vectors::Sqlite(s) => s.vector_load(collection),
            Vectors::Pg(p) => p.wait(p.pg().vector_load(collection)),
        }
    }
    fn rows(
        &self,
        collection: &str,
        ids: &[&str],
    ) -> crate::Result<HashMap<String, (String, Value)>> {
        match self {
            Vectors::Sqlite(s) => s.vector_rows(collection, ids),
            Vectors::Pg(p) => p.wait(p.pg().vector_rows(collection, ids)),
        }
    }
    fn delete(&mut self, collection: &str, ids: Option<&[String]>) -> crate::Result<usize> {
        match self {
            Vectors::Sqlite(s) => s.vector_delete(collection, ids),
            Vectors::Pg(p) => p.wait(p.pg().vector_delete(collection, ids)),
        }
    }
    fn cache_get(&self, keys: &[String]) -> crate::Result<HashMap<String, Vec<f32>>> {
        match self {
            Vectors::Sqlite(s) => s.embedding_cache_get(keys),
            Vectors::Pg(p) => p.wait(p.pg().embedding_cache_get(keys)),
        }
    }
    fn cache_put(&mut self, entries: &[(String, Vec<f32>)]) -> crate::Result<()> {
        match self {
            Vectors::Sqlite(s) => s.embedding_cache_put(entries),
            Vectors::Pg(p) => p.wait(p.pg().embedding_cache_put(entries)),
        }
    }
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, NodeError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(crate::Error::Setting(message))) => Err(NodeError::input(message)),
        Ok(Err(e)) => Err(NodeError::other(format!("{what}: {e}"))),
        Err(e) => Err(NodeError::other(format!("{what}: the task failed: {e}"))),
    }
}

use crate::digest::hex;

/// Embeds texts through the endpoint, `batch` at a time, with the cache in
/// the home's database: (vectors, prompt tokens, how many came from the cache).
async fn embed_texts(
    env: &Env,
    ctx: &NodeCtx,
    endpoint: &Endpoint,
    texts: &[String],
    batch: usize,
    use_cache: bool,
) -> Result<(Vec<Vec<f32>>, u64, usize), NodeError> {
    let keys: Vec<String> = texts
        .iter()
        .map(|t| {
            hex(&Sha256::digest(
                format!("{}\0{}\0{t}", endpoint.base, endpoint.model).as_bytes(),
            ))
        })
        .collect();
    let cached: HashMap<String, Vec<f32>> = match (use_cache, place(env)) {
        (true, Some(place)) => {
            let keys = keys.clone();
            blocking("the embedding cache", move || {
                place.open()?.cache_get(&keys)
            })
            .await?
        }
        _ => HashMap::new(),
    };
    let mut out: Vec<Option<Vec<f32>>> = keys.iter().map(|k| cached.get(k).cloned()).collect();
    let hits = out.iter().filter(|v| v.is_some()).count();
    let missing: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
    let mut tokens = 0;
    let mut fresh = Vec::new();
    for group in missing.chunks(batch.max(1)) {
        let input: Vec<&str> = group.iter().map(|&i| texts[i].as_str()).collect();
        let reply = endpoint
            .post_json(
                ctx,
                "embeddings",
                &json!({"model": endpoint.model, "input": input}),
            )
            .await?;
        let data = reply
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed_embeddings(&reply, "no data array"))?;
        if data.len() != group.len() {
            return Err(malformed_embeddings(
                &reply,
                &format!("{} embeddings for {} texts", data.len(), group.len()),
            ));
        }
        for (pos, item) in data.iter().enumerate() {
            let index = item
                .get("index")
                .and_then(Value::as_u64)
                .map_or(pos, |i| i as usize);
            let &slot = group.get(index).ok_or_else(|| {
                malformed_embeddings(&reply, &format!("index {index} is out of range"))
            })?;
            let vector: Vec<f32> = item
                .get("embedding")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed_embeddings(&reply, "an item has no embedding array"))?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    malformed_embeddings(&reply, "an embedding holds something other than numbers")
                })?;
            if vector.is_empty() {
                return Err(malformed_embeddings(&reply, "an embedding is empty"));
            }
            fresh.push((keys[slot].clone(), vector.clone()));
            out[slot] = Some(vector);
        }
        tokens += reply
            .pointer("/usage/prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
    }
    if use_cache
        && !fresh.is_empty()
        && let Some(place) = place(env)
    {
        blocking("the embedding cache", move || {
            place.open()?.cache_put(&fresh)
        })
        .await?;
    }
    let vectors = out
        .into_iter()
        .map(|v| v.ok_or_else(|| NodeError::other("an embedding is missing from the reply")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((vectors, tokens, hits))
}

fn malformed_embeddings(reply: &Value, what: &str) -> NodeError {
    NodeError::new(
        crate::nodes::ErrorKind::Other,
        format!(
            "the embeddings reply is not OpenAI-style: {what}; the reply was: {}",
            super::provider::excerpt(&reply.to_string())
        ),
    )
    .retryable(false)
}

fn embed_endpoint(env: &Env, ctx: &NodeCtx) -> Result<Endpoint, NodeError> {
    Endpoint::resolve_for(
        ctx,
        env.http.clone(),
        &env.config,
        &env.config.embed_model,
        "llm.embed_model",
    )
}

fn batch_size(ctx: &NodeCtx) -> Result<usize, NodeError> {
    match ctx.param("batch_size") {
        None | Some(Value::Null) => Ok(DEFAULT_BATCH),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=2048).contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| wrong_type("batch_size", "a whole number from 1 to 2048", v)),
    }
}

/// `llm.embed`.
pub async fn embed(env: Arc<Env>, ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let endpoint = embed_endpoint(&env, &ctx)?;
    let use_cache = ctx.bool_or("cache", true)?;
    let batch = batch_size(&ctx)?;
    if let Some(text) = string_input(&ctx, &["text"])? {
        let (mut vectors, tokens, hits) =
            embed_texts(&env, &ctx, &endpoint, &[text], batch, use_cache).await?;
        let vector = vectors.pop().unwrap_or_default();
        return Ok(NodeOutput::new(
            json!({"dimensions": vector.len(), "embedding": vector,
            "model": endpoint.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "cached": hits}),
        ));
    }
    let mut docs = documents_of(&ctx, "documents")?;
    let texts: Vec<String> = docs
        .iter()
        .map(|d| d["text"].as_str().unwrap_or_default().to_string())
        .collect();
    let (vectors, tokens, hits) =
        embed_texts(&env, &ctx, &endpoint, &texts, batch, use_cache).await?;
    let dims = vectors.first().map_or(0, Vec::len);
    for (doc, v) in docs.iter_mut().zip(vectors) {
        doc["embedding"] = json!(v);
    }
    Ok(NodeOutput::new(
        json!({"count": docs.len(), "chunks": docs, "dimensions": dims,
        "model": endpoint.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "cached": hits}),
    ))
}

fn collection(ctx: &NodeCtx) -> Result<String, NodeError> {
    let name = ctx.str("collection")?.to_string();
    check_collection(&name).map_err(NodeError::input)?;
    Ok(name)
}

/// A vector scaled to length 1 (a zero vector stays zero).
fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn vector_of(value: &Value, at: &str) -> Result<Vec<f32>, NodeError> {
    let list = value
        .as_array()
        .ok_or_else(|| wrong_type(at, "an array of numbers", value))?;
    let v: Option<Vec<f32>> = list.iter().map(|x| x.as_f64().map(|f| f as f32)).collect();
    match v {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(wrong_type(at, "a non-empty array of numbers", value)),
    }
}

/// `vector.upsert`.
pub async fn upsert(env: Arc<Env>, ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let name = collection(&ctx)?;
    let path = db(&env, "vector.upsert")?;
    let docs = documents_of(&ctx, "documents")?;
    let mut items = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let embedding = match doc.get("embedding") {
            Some(e) => vector_of(e, &format!("documents[{i}].embedding"))?,
            None => {
                return Err(NodeError::input(format!(
                    "documents[{i}] has no embedding; run llm.embed on the documents first"
                )));
            }
        };
        let text = doc["text"].as_str().unwrap_or_default().to_string();
        let id = match doc.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) => hex(&Sha256::digest(text.as_bytes()))[..16].to_string(),
            Some(other) => {
                return Err(wrong_type(&format!("documents[{i}].id"), "a string", other));
            }
        };
        let metadata = match doc.get("metadata") {
            None | Some(Value::Null) => json!({}),
            Some(m @ Value::Object(_)) => m.clone(),
            Some(other) => {
                return Err(wrong_type(
                    &format!("documents[{i}].metadata"),
                    "an object",
                    other,
                ));
            }
        };
        items.push(VectorItem {
            id,
            text,
            metadata,
            embedding: normalised(embedding),
        });
    }
    let upserted = items.len();
    let wanted = name.clone();
    let count = blocking("vector.upsert", move || {
        path.open()?.upsert(&wanted, &items)
    })
    .await?;
    Ok(NodeOutput::new(
        json!({"collection": name, "upserted": upserted, "count": count}),
    ))
}

/// A collection held in memory for search, with the version it was read at.
pub struct Index {
    version: i64,
    dims: usize,
    ids: Vec<String>,
    metadata: Vec<Value>,
    data: Vec<f32>,
}

/// Collections loaded by this process, by database and name.
/// Each index with the tick of its last use.
type Indexes = HashMap<(String, String), (Arc<Index>, u64)>;
static INDEXES: LazyLock<Mutex<(Indexes, u64)>> = LazyLock::new(Default::default);

/// Collections kept in memory at once, and the bytes of vectors they may
/// hold together; past either, the least recently used go first.
const MAX_INDEXES: usize = 16;
const MAX_INDEX_BYTES: usize = 1 << 30;

/// The current index of a collection (`None` when it does not exist).
fn index(place: &Place, name: &str) -> crate::Result<Option<Arc<Index>>> {
    let store = place.open()?;
    let Some((version, _)) = store.version(name)? else {
        return Ok(None);
    };
    let key = (place.key(), name.to_string());
    if let Ok(mut guard) = INDEXES.lock() {
        let (map, tick) = &mut *guard;
        *tick += 1;
        if let Some((ix, used)) = map.get_mut(&key)
            && ix.version == version
        {
            *used = *tick;
            return Ok(Some(ix.clone()));
        }
    }
    let Some(loaded) = store.load(name)? else {
        return Ok(None);
    };
    let ix = Arc::new(Index {
        version: loaded.version,
        dims: loaded.dims,
        ids: loaded.ids,
        metadata: loaded.metadata,
        data: loaded.data,
    });
    if let Ok(mut guard) = INDEXES.lock() {
        let (map, tick) = &mut *guard;
        map.insert(key.clone(), (ix.clone(), *tick));
        let bytes = |map: &Indexes| map.values().map(|(i, _)| i.data.len() * 4).sum::<usize>();
        while map.len() > 1 && (map.len() > MAX_INDEXES || bytes(map) > MAX_INDEX_BYTES) {
            let oldest = map
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
    }
    Ok(Some(ix))
}

/// The dot product, in eight lanes the compiler turns into vector instructions.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// Whether metadata passes a filter: every key equal, or one of an array.
fn passes(metadata: &Value, filter: &Map<String, Value>) -> bool {
    filter.iter().all(|(k, want)| {
        let got = metadata.get(k).unwrap_or(&Value::Null);
        match want {
            Value::Array(any) => any.contains(got),
            one => got == one,
        }
    })
}

#[derive(PartialEq)]
struct Scored(f32, usize);
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    // Reversed: the heap's top is the lowest score kept.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
    }
}

impl Index {
    /// The `k` best (score, position) by cosine similarity, best first.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Map<String, Value>>,
        min_score: Option<f32>,
    ) -> Vec<(f32, usize)> {
        if self.dims == 0 || query.len() != self.dims {
            return Vec::new();
        }
        let mut heap: BinaryHeap<Scored> = BinaryHeap::with_capacity(k + 1);
        for (i, row) in self.data.chunks_exact(self.dims).enumerate() {
            if let Some(f) = filter
                && !passes(&self.metadata[i], f)
            {
                continue;
            }
            let score = dot(row, query);
            if min_score.is_some_and(|m| score < m) {
                continue;
            }
            if heap.len() < k {
                heap.push(Scored(score, i));
            } else if heap.peek().is_some_and(|low| score > low.0) {
                heap.pop();
                heap.push(Scored(score, i));
            }
        }
        let mut best: Vec<(f32, usize)> = heap.into_iter().map(|s| (s.0, s.1)).collect();
        best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        best
    }

    pub fn from_parts(
        dims: usize,
        ids: Vec<String>,
        metadata: Vec<Value>,
        data: Vec<f32>,
    ) -> Index {
        Index {
            version: 0,
            dims,
            ids,
            metadata,
            data,
        }
    }
}

fn filter_of(ctx: &NodeCtx) -> Result<Option<Map<String, Value>>, NodeError> {
    match ctx.param("filter") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(other) => Err(wrong_type(
            "filter",
            "an object of metadata key → value (or an array of allowed values)",
            other,
        )),
    }
}

/// `vector.query`.
pub async fn query(env: Arc<Env>, ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let name = collection(&ctx)?;
    let path = db(&env, "vector.query")?;
    let top_k = match ctx.param("top_k") {
        None | Some(Value::Null) => 5,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| wrong_type("top_k", "a whole number from 1 to 1000", v))?
            as usize,
    };
    let min_score = match ctx.param("min_score") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .ok_or_else(|| wrong_type("min_score", "a number", v))? as f32,
        ),
    };
    let filter = filter_of(&ctx)?;
    // The query vector: given, or the query text embedded with the embedding model.
    let (vector, query_text) = match ctx.param("embedding") {
        Some(e) if !e.is_null() => (vector_of(e, "embedding")?, None),
        _ => {
            let text = match string_input(&ctx, &["query", "question"])? {
                Some(t) => t,
                None => super::upstream_message(&ctx.input)
                    .or_else(|| ctx.input.get("query").and_then(Value::as_str).map(str::to_string))
                    .or_else(|| ctx.input.get("question").and_then(Value::as_str).map(str::to_string))
                    .ok_or_else(|| {
                        NodeError::input(
                            "nothing to search for: give `query` (text) or `embedding`, or send a question from upstream",
                        )
                    })?,
            };
            let endpoint = embed_endpoint(&env, &ctx)?;
            let (mut v, _, _) =
                embed_texts(&env, &ctx, &endpoint, std::slice::from_ref(&text), 1, true).await?;
            (v.pop().unwrap_or_default(), Some(text))
        }
    };
    let vector = normalised(vector);
    let wanted = name.clone();
    let matches = blocking("vector.query", move || {
        let Some(ix) = index(&path, &wanted)? else {
            return Err(crate::Error::Setting(format!(
                "there is no collection {wanted:?}; vector.upsert makes it"
            )));
        };
        if ix.dims != vector.len() {
            return Err(crate::Error::Setting(format!(
                "the query vector has {} dimensions, collection {wanted:?} holds {}; embed the query with the collection's model",
                vector.len(),
                ix.dims
            )));
        }
        let best = ix.search(&vector, top_k, filter.as_ref(), min_score);
        let ids: Vec<&str> = best.iter().map(|(_, i)| ix.ids[*i].as_str()).collect();
        let rows = path.open()?.rows(&wanted, &ids)?;
        Ok(best
            .iter()
            .filter_map(|(score, i)| {
                let id = &ix.ids[*i];
                rows.get(id).map(|(text, metadata)| {
                    json!({"id": id, "text": text, "metadata": metadata, "score": score})
                })
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(NodeOutput::new(
        json!({"collection": name, "query": query_text,
                              "count": matches.len(), "matches": matches}),
    ))
}

/// `vector.delete`.
pub async fn delete(env: Arc<Env>, ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let name = collection(&ctx)?;
    let path = db(&env, "vector.delete")?;
    let all = ctx.bool_or("all", false)?;
    let filter = filter_of(&ctx)?;
    let ids: Option<Vec<String>> = match ctx.param("ids") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong_type("ids[…]", "a string", other)),
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(other) => return Err(wrong_type("ids", "an array of ids", other)),
    };
    let chosen = [all, filter.is_some(), ids.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if chosen != 1 {
        return Err(NodeError::input(
            "say what to delete with exactly one of `ids`, `filter` or `all: true`",
        ));
    }
    let wanted = name.clone();
    let deleted = blocking("vector.delete", move || {
        let mut store = path.open()?;
        if all {
            return store.delete(&wanted, None);
        }
        let ids = match (ids, filter) {
            (Some(ids), _) => ids,
            (None, Some(f)) => match index(&path, &wanted)? {
                Some(ix) => ix
                    .metadata
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| passes(m, &f))
                    .map(|(i, _)| ix.ids[i].clone())
                    .collect(),
                None => Vec::new(),
            },
            (None, None) => Vec::new(),
        };
        store.delete(&wanted, Some(&ids))
    })
    .await?;
    Ok(NodeOutput::new(
        json!({"collection": name, "deleted": deleted}),
    ))
}

/// `rerank`.
pub async fn rerank(env: Arc<Env>, ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let query = match string_input(&ctx, &["query", "question"])? {
        Some(q) => q,
        None => ctx
            .input
            .get("query")
            .or_else(|| ctx.input.get("question"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                NodeError::input("rerank needs `query`: the question the documents should answer")
            })?,
    };
    let docs = documents_of(&ctx, "documents")?;
    let top_n = match ctx.param("top_n") {
        None | Some(Value::Null) => docs.len(),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| wrong_type("top_n", "a whole number above 0", v))?
            as usize,
    };
    let mode = ctx.opt_str("mode")?.unwrap_or("endpoint").to_string();
    if docs.is_empty() {
        return Ok(NodeOutput::new(
            json!({"count": 0, "matches": [], "query": query}),
        ));
    }
    let texts: Vec<&str> = docs
        .iter()
        .map(|d| d["text"].as_str().unwrap_or_default())
        .collect();
    let scores: Vec<f64> = match mode.as_str() {
        "endpoint" => {
            let endpoint = Endpoint::resolve_for(
                &ctx,
                env.http.clone(),
                &env.config,
                &env.config.model,
                "llm.model",
            )?;
            let reply = endpoint
                .post_json(&ctx, "rerank", &json!({"model": endpoint.model, "query": query, "documents": texts, "top_n": texts.len()}))
                .await?;
            let results = reply
                .get("results")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    NodeError::other(format!(
                        "the rerank reply has no results array: {}",
                        super::provider::excerpt(&reply.to_string())
                    ))
                    .retryable(false)
                })?;
            let mut scores = vec![f64::NEG_INFINITY; texts.len()];
            for r in results {
                let (Some(i), Some(s)) = (
                    r.get("index").and_then(Value::as_u64),
                    r.get("relevance_score")
                        .or_else(|| r.get("score"))
                        .and_then(Value::as_f64),
                ) else {
                    return Err(NodeError::other(format!(
                        "a rerank result lacks index or relevance_score: {r}"
                    ))
                    .retryable(false));
                };
                if let Some(slot) = scores.get_mut(i as usize) {
                    *slot = s;
                }
            }
            scores
        }
        "llm" => {
            let endpoint = Endpoint::resolve(&ctx, env.http.clone(), &env.config)?;
            let listing: String = texts
                .iter()
                .enumerate()
                .map(|(i, t)| format!("[{i}] {}\n", t.chars().take(2000).collect::<String>()))
                .collect();
            let prompt = format!(
                "Query: {query}\n\nDocuments:\n{listing}\nRate how well each document answers the query, \
                 from 0 (not at all) to 10 (fully). Reply with only a JSON array of {} numbers, one per document, in order.",
                texts.len()
            );
            let turn = endpoint
                .send(
                    &ctx,
                    &endpoint.body(
                        Some("You rank documents by relevance."),
                        &[Msg::User(prompt)],
                        &[],
                    ),
                )
                .await?;
            let text = turn.text.trim();
            let start = text.find('[').unwrap_or(0);
            let end = text.rfind(']').map_or(text.len(), |e| e + 1);
            let parsed: Vec<f64> = serde_json::from_str(&text[start..end]).map_err(|e| {
                NodeError::other(format!(
                    "the model's ranking is not a JSON array of numbers ({e}): {}",
                    super::provider::excerpt(text)
                ))
            })?;
            if parsed.len() != texts.len() {
                return Err(NodeError::other(format!(
                    "the model ranked {} documents, not {}",
                    parsed.len(),
                    texts.len()
                )));
            }
            parsed.into_iter().map(|s| s / 10.0).collect()
        }
        other => {
            return Err(NodeError::input(format!(
                "unknown rerank mode {other:?}; use endpoint (a /rerank API) or llm (the chat model scores)"
            )));
        }
    };
    let mut ranked: Vec<(f64, Value)> = scores.into_iter().zip(docs).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let matches: Vec<Value> = ranked
        .into_iter()
        .take(top_n)
        .map(|(score, mut doc)| {
            if let Some(prior) = doc.get("score").cloned() {
                doc["vector_score"] = prior;
            }
            doc["score"] = json!(score);
            doc
        })
        .collect();
    Ok(NodeOutput::new(
        json!({"query": query, "count": matches.len(), "matches": matches}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_finds_the_nearest_with_filters() {
        let rows = [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]];
        let data: Vec<f32> = rows.iter().flat_map(|r| normalised(r.to_vec())).collect();
        let ix = Index::from_parts(
            2,
            (0..4).map(|i| format!("d{i}")).collect(),
            vec![
                json!({"k": "a"}),
                json!({"k": "b"}),
                json!({"k": "a"}),
                json!({"k": "b"}),
            ],
            data,
        );
        let best = ix.search(&[1.0, 0.0], 2, None, None);
        assert_eq!(best.iter().map(|b| b.1).collect::<Vec<_>>(), vec![0, 2]);
        let f = json!({"k": "b"});
        let best = ix.search(&[1.0, 0.0], 2, f.as_object(), None);
        assert_eq!(best.iter().map(|b| b.1).collect::<Vec<_>>(), vec![1, 3]);
        let best = ix.search(&[1.0, 0.0], 4, None, Some(0.5));
        assert_eq!(best.len(), 2);
    }

    #[test]
    fn dot_handles_lengths_off_the_lane_width() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let expected: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a), expected);
    }
}
