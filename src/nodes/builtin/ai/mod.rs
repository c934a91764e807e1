//! The AI side: model turns against OpenAI-compatible and Anthropic APIs
//! ([`provider`]), the tool-calling agent ([`agent`]) and conversation
//! memory ([`memory`]). `llm.chat` lives in `super::llm` and uses the same
//! providers and memory.

pub mod agent;
pub mod docs;
pub mod memory;
pub mod provider;
pub mod vector;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::http::Http;
use super::{InputSpec, any_output, object_schema};
use crate::config::LlmConfig;
use crate::nodes::{Handles, Node, NodeCtx, NodeFuture, NodeSpec};

/// What the retrieval nodes share: the HTTP client, `[llm]`, and the home's
/// database (`None` without a home).
pub struct Env {
    pub http: Arc<Http>,
    pub config: LlmConfig,
    pub db: Option<PathBuf>,
    /// The store on PostgreSQL, where collections and the embedding cache
    /// are kept instead of `db` when the home's store is there.
    pub pg: Option<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    Load,
    Split,
    Extract,
    Embed,
    Upsert,
    Query,
    Delete,
    Rerank,
}

struct AiNode {
    spec: NodeSpec,
    kind: Kind,
    env: Arc<Env>,
}

impl Node for AiNode {
    fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    fn run<'a>(&'a self, ctx: NodeCtx) -> NodeFuture<'a> {
        let env = self.env.clone();
        match self.kind {
            Kind::Load => Box::pin(docs::load(ctx)),
            Kind::Split => Box::pin(docs::split(ctx)),
            Kind::Extract => Box::pin(docs::extract(ctx)),
            Kind::Embed => Box::pin(vector::embed(env, ctx)),
            Kind::Upsert => Box::pin(vector::upsert(env, ctx)),
            Kind::Query => Box::pin(vector::query(env, ctx)),
            Kind::Delete => Box::pin(vector::delete(env, ctx)),
            Kind::Rerank => Box::pin(vector::rerank(env, ctx)),
        }
    }
}

fn spec(type_name: &str, description: &str, inputs: Vec<InputSpec>, output: Value) -> NodeSpec {
    NodeSpec {
        type_name: type_name.into(),
        description: description.into(),
        inputs,
        output,
        handles: Handles::Default,
        trigger: false,
        free_inputs: false,
    }
}

/// Inputs that say which API a node calls.
fn endpoint_inputs(model: &str) -> Vec<InputSpec> {
    vec![
        InputSpec::optional("model", "string", model),
        InputSpec::optional("base_url", "string", "API base (default llm.base_url)"),
        InputSpec::optional(
            "api_key",
            "string",
            "API key (default: the credential, else the variable named by llm.api_key_env)",
        )
        .with_aliases(&["apiKey"]),
        InputSpec::optional(
            "credential",
            "string",
            "name of a stored openai or bearer credential",
        ),
        InputSpec::optional(
            "timeout",
            "duration",
            "per-request limit (default llm.timeout)",
        ),
    ]
}

/// The retrieval nodes.
pub fn nodes(env: Env) -> Vec<Arc<dyn Node>> {
    let env = Arc::new(env);
    let docs_out = object_schema(&[("count", "integer"), ("documents", "array")]);
    let mut embed_inputs = vec![
        InputSpec::optional(
            "documents",
            "array",
            "strings or {text, metadata?, id?} (default: the input's documents or chunks)",
        ),
        InputSpec::optional(
            "text",
            "string",
            "embed one text instead (outputs `embedding`)",
        ),
        InputSpec::optional("batch_size", "integer", "texts per request (default 64)"),
        InputSpec::optional(
            "cache",
            "boolean",
            "reuse embeddings by a hash of model and text (default true)",
        ),
    ];
    embed_inputs.extend(endpoint_inputs("embedding model (default llm.embed_model)"));
    let mut query_inputs = vec![
        InputSpec::required("collection", "string", "the collection's name"),
        InputSpec::optional("query", "string", "text to search for (embedded with the embedding model); default: the question from upstream").with_aliases(&["question"]),
        InputSpec::optional("embedding", "array", "search with this vector instead of `query`"),
        InputSpec::optional("top_k", "integer", "matches to return (default 5)"),
        InputSpec::optional("filter", "object", "metadata that must match: {key: value} or {key: [any of]}"),
        InputSpec::optional("min_score", "number", "leave out matches below this cosine similarity"),
    ];
    query_inputs.extend(endpoint_inputs(
        "embedding model of `query` (default llm.embed_model)",
    ));
    let mut rerank_inputs = vec![
        InputSpec::optional(
            "query",
            "string",
            "what the documents should answer (default: the input's query)",
        )
        .with_aliases(&["question"]),
        InputSpec::optional(
            "documents",
            "array",
            "what to rank (default: the input's matches)",
        ),
        InputSpec::optional("top_n", "integer", "keep the best n (default all)"),
        InputSpec::optional(
            "mode",
            "string",
            "endpoint (a /rerank API, as llama.cpp and Jina serve; default) or llm (the chat model scores)",
        ),
        InputSpec::optional("provider", "string", "with mode llm: openai or anthropic"),
    ];
    rerank_inputs.extend(endpoint_inputs("rerank or chat model (default llm.model)"));
    let all = [
        (
            Kind::Load,
            spec(
                "doc.load",
                "Loads documents: a text, Markdown, HTML (as clean text) or PDF file (a document per page), or a folder of them with a glob; each {id, text, metadata: {path, title, page?}}.",
                vec![
                    InputSpec::required(
                        "path",
                        "string",
                        "a file or folder (relative to the workflow's folder)",
                    ),
                    InputSpec::optional(
                        "glob",
                        "string",
                        "files of a folder to load, e.g. **/*.{md,pdf} (default: all; hidden ones skipped)",
                    ),
                    InputSpec::optional(
                        "format",
                        "string",
                        "text, markdown, html or pdf (default: by extension)",
                    ),
                    InputSpec::optional(
                        "max_files",
                        "integer",
                        "most files of a folder (default 1000)",
                    ),
                    InputSpec::optional("max_bytes", "integer", "largest file (default 50 MB)"),
                ],
                docs_out,
            ),
        ),
        (
            Kind::Split,
            spec(
                "text.split",
                "Splits documents into chunks of at most chunk_size characters, at paragraphs, lines, sentences, then words, with overlap; Markdown by section.",
                vec![
                    InputSpec::optional(
                        "documents",
                        "array",
                        "strings or {text, metadata?, id?} (default: the input's documents)",
                    ),
                    InputSpec::optional(
                        "chunk_size",
                        "integer",
                        "most characters in a chunk (default 1000)",
                    ),
                    InputSpec::optional(
                        "chunk_overlap",
                        "integer",
                        "characters repeated between chunks (default: a fifth of chunk_size, at most 200)",
                    ),
                    InputSpec::optional(
                        "markdown",
                        "boolean",
                        "split at headings first, keeping the heading path in metadata.section (default: for Markdown documents)",
                    ),
                ],
                object_schema(&[("count", "integer"), ("chunks", "array")]),
            ),
        ),
        (
            Kind::Extract,
            spec(
                "html.extract",
                "Extracts from HTML with CSS selectors (text, an attribute or HTML; one or all matches) and the page's main text.",
                vec![
                    InputSpec::optional(
                        "html",
                        "string",
                        "the HTML (default: the input, or an http.request output's body)",
                    ),
                    InputSpec::optional(
                        "selectors",
                        "object",
                        "name → CSS selector, or {selector, attribute?, html?, all?}",
                    ),
                    InputSpec::optional(
                        "main_text",
                        "boolean",
                        "add the page's title and main text (default: when no selectors are given)",
                    ),
                ],
                any_output(),
            ),
        ),
        (
            Kind::Embed,
            spec(
                "llm.embed",
                "Embeds texts with an OpenAI-compatible /embeddings endpoint, batched and cached; adds `embedding` to each document.",
                embed_inputs,
                object_schema(&[
                    ("count", "integer"),
                    ("chunks", "array"),
                    ("embedding", "array"),
                    ("dimensions", "integer"),
                    ("model", "string"),
                    ("usage", "object"),
                    ("cached", "integer"),
                ]),
            ),
        ),
        (
            Kind::Upsert,
            spec(
                "vector.upsert",
                "Adds or replaces documents with embeddings in a named collection (by id; default id: a hash of the text).",
                vec![
                    InputSpec::required(
                        "collection",
                        "string",
                        "the collection's name (letters, digits, - _ .)",
                    ),
                    InputSpec::optional(
                        "documents",
                        "array",
                        "{id?, text, metadata?, embedding} (default: the input's chunks, from llm.embed)",
                    ),
                ],
                object_schema(&[
                    ("collection", "string"),
                    ("upserted", "integer"),
                    ("count", "integer"),
                ]),
            ),
        ),
        (
            Kind::Query,
            spec(
                "vector.query",
                "The documents of a collection nearest a query (exact cosine search), with metadata filters.",
                query_inputs,
                object_schema(&[
                    ("collection", "string"),
                    ("query", "string"),
                    ("count", "integer"),
                    ("matches", "array"),
                ]),
            ),
        ),
        (
            Kind::Delete,
            spec(
                "vector.delete",
                "Deletes documents from a collection by ids or metadata filter, or the whole collection.",
                vec![
                    InputSpec::required("collection", "string", "the collection's name"),
                    InputSpec::optional("ids", "array", "ids to delete"),
                    InputSpec::optional("filter", "object", "delete what matches this metadata"),
                    InputSpec::optional("all", "boolean", "delete the whole collection"),
                ],
                object_schema(&[("collection", "string"), ("deleted", "integer")]),
            ),
        ),
        (
            Kind::Rerank,
            spec(
                "rerank",
                "Orders documents by relevance to a query with a /rerank endpoint or the chat model.",
                rerank_inputs,
                object_schema(&[
                    ("query", "string"),
                    ("count", "integer"),
                    ("matches", "array"),
                ]),
            ),
        ),
    ];
    all.into_iter()
        .map(|(kind, spec)| -> Arc<dyn Node> {
            Arc::new(AiNode {
                spec,
                kind,
                env: env.clone(),
            })
        })
        .collect()
}

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
