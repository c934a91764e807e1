//! `llm.chat`: a chat completion from any OpenAI-compatible endpoint
//! (`POST {base_url}/chat/completions`): Ollama, llama.cpp's server, OpenAI, …
//! With `stream`, tokens are logged line by line as they arrive and the
//! assembled text is the output. With `cache`, responses are stored by a hash of
//! the request, so re-runs and tests are deterministic and free.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use super::ai::memory::{Memory, MemorySpec};
use super::ai::provider::{Endpoint, Msg, Provider, excerpt};
use super::http::{Http, parse_url, target_of};
use super::{InputSpec, Node, boxed, object_schema};
use crate::config::LlmConfig;
use crate::engine::duration;
use crate::nodes::{
    ErrorKind, Handles, LogLevel, NodeCtx, NodeError, NodeOutput, NodeSpec, wrong_type,
};

/// Replies larger than this are refused.
const MAX_REPLY: u64 = 32 * 1024 * 1024;

struct Llm {
    spec: NodeSpec,
    http: Arc<Http>,
    config: LlmConfig,
    cache_dir: Option<PathBuf>,
    memory: Memory,
}

pub(super) fn node(
    http: Arc<Http>,
    config: LlmConfig,
    cache_dir: Option<PathBuf>,
    memory: Memory,
) -> Arc<dyn Node> {
    let spec = NodeSpec {
        type_name: "llm.chat".into(),
        description: "Chat completion from an OpenAI-compatible endpoint or the Anthropic API; outputs {text, usage, model, cached, raw}.".into(),
        inputs: vec![
            InputSpec::optional("provider", "string", "openai (any OpenAI-compatible server, default) or anthropic"),
            InputSpec::optional("memory", "object", "{session, window?, window_tokens?}: keep the conversation per session in the fuse database"),
            InputSpec::optional("model", "string", "model name (default llm.model)"),
            InputSpec::optional("prompt", "string", "the user message (or use messages)").with_aliases(&["user_message", "userMessage", "message"]),
            InputSpec::optional("messages", "array", "[{role, content}, …]; prompt is appended as a user message"),
            InputSpec::optional("system", "string", "system message").with_aliases(&["system_message", "systemMessage"]),
            InputSpec::optional("temperature", "number", "sampling temperature"),
            InputSpec::optional("max_tokens", "integer", "reply length limit").with_aliases(&["maxTokens"]),
            InputSpec::optional("json", "boolean", "JSON mode: the reply must be a JSON object (also parsed into `json`)"),
            InputSpec::optional("stream", "boolean", "stream the reply, logging it as it arrives").with_aliases(&["enable_streaming"]),
            InputSpec::optional("base_url", "string", "API base, e.g. http://127.0.0.1:11434/v1 (default llm.base_url)"),
            InputSpec::optional("api_key", "string", "API key (default: the credential, else the variable named by llm.api_key_env)").with_aliases(&["apiKey"]),
            InputSpec::optional("credential", "string", "name of a stored openai or anthropic (api_key, base_url) or bearer credential"),
            InputSpec::optional("cache", "boolean", "reuse a stored reply for an identical request (default llm.cache)"),
            InputSpec::optional("timeout", "duration", "per-request limit (default llm.timeout)"),
        ],
        output: object_schema(&[("text", "string"), ("usage", "object"), ("model", "string"), ("cached", "boolean"), ("raw", "object"), ("json", "any")]),
        handles: Handles::Default,
        trigger: false,
        free_inputs: false,
    };
    Arc::new(Llm {
        spec,
        http,
        config,
        cache_dir,
        memory,
    })
}

impl Node for Llm {
    fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    fn run<'a>(&'a self, ctx: NodeCtx) -> crate::nodes::NodeFuture<'a> {
        boxed(chat(
            self.http.clone(),
            self.config.clone(),
            self.cache_dir.clone(),
            self.memory.clone(),
            ctx,
        ))
    }
}

use super::ai::upstream_message;

/// Reads an input by its name or the seed format's name for it.
fn input<'a>(ctx: &'a NodeCtx, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| ctx.param(n).filter(|v| !v.is_null()))
}

fn string_input(ctx: &NodeCtx, names: &[&str]) -> Result<Option<String>, NodeError> {
    match input(ctx, names) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(names[0], "a string", other)),
    }
}

async fn chat(
    http: Arc<Http>,
    config: LlmConfig,
    cache_dir: Option<PathBuf>,
    memory: Memory,
    ctx: NodeCtx,
) -> Result<NodeOutput, NodeError> {
    if Provider::parse(&ctx)? == Provider::Anthropic {
        return anthropic_chat(http, config, cache_dir, memory, ctx).await;
    }
    let remember = MemorySpec::parse(&ctx)?;
    let model = string_input(&ctx, &["model"])?
        .filter(|m| !m.is_empty())
        .or_else(|| Some(config.model.clone()).filter(|m| !m.is_empty()))
        .ok_or_else(|| {
            NodeError::input("no model: set the node's `model` input or llm.model in fuse.toml")
        })?;
    let mut messages: Vec<Value> = match input(&ctx, &["messages"]) {
        None => Vec::new(),
        Some(Value::Array(m)) => m.clone(),
        Some(other) => return Err(wrong_type("messages", "an array of {role, content}", other)),
    };
    if let Some(system) = string_input(&ctx, &["system", "system_message", "systemMessage"])? {
        messages.insert(0, json!({"role": "system", "content": system}));
    }
    if let Some(prompt) = string_input(&ctx, &["prompt", "user_message", "userMessage", "message"])?
    {
        messages.push(json!({"role": "user", "content": prompt}));
    }
    // No user message of its own: the message that flows in from upstream
    // (a string, or the `message` of an object such as a run's input).
    if !messages.iter().any(|m| m["role"] == "user")
        && let Some(text) = upstream_message(&ctx.input)
    {
        messages.push(json!({"role": "user", "content": text}));
    }
    if !messages.iter().any(|m| m["role"] == "user") {
        return Err(nothing_to_send());
    }
    // What memory keeps of this call: the last user message and the answer.
    let asked = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    if let Some(spec) = &remember {
        let at = messages
            .iter()
            .take_while(|m| m["role"] == "system")
            .count();
        let remembered = memory.load(spec).await?;
        let mut past: Vec<Value> = remembered
            .summary_text()
            .map(|s| json!({"role": "system", "content": s}))
            .into_iter()
            .collect();
        past.extend(remembered.messages.into_iter().map(|m| match m {
            Msg::User(text) => json!({"role": "user", "content": text}),
            Msg::Assistant { text, .. } => json!({"role": "assistant", "content": text}),
            Msg::Tool { .. } => Value::Null,
        }));
        past.retain(|m| !m.is_null());
        messages.splice(at..at, past);
    }
    let stream = match input(&ctx, &["stream", "enable_streaming"]) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(wrong_type("stream", "true or false", other)),
    };
    let json_mode = ctx.bool_or("json", false)?;
    let mut body = json!({"model": model, "messages": messages, "stream": stream});
    if let Some(t) = input(&ctx, &["temperature"]) {
        body["temperature"] = json!(t.as_f64().ok_or_else(|| wrong_type(
            "temperature",
            "a number",
            t
        ))?);
    }
    if let Some(m) = input(&ctx, &["max_tokens", "maxTokens"]) {
        body["max_tokens"] = json!(m.as_u64().ok_or_else(|| wrong_type(
            "max_tokens",
            "a whole number",
            m
        ))?);
    }
    if json_mode {
        body["response_format"] = json!({"type": "json_object"});
    }
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    // A stored credential (type openai or bearer) gives the key and maybe the base URL.
    let credential = match string_input(&ctx, &["credential"])? {
        Some(name) => Some(ctx.credential(&name)?),
        None => None,
    };
    let credential_key = match &credential {
        Some(c) => match c.kind.as_str() {
            "openai" => c.field("api_key").map(str::to_string),
            "bearer" => c.field("token").map(str::to_string),
            other => {
                return Err(NodeError::input(format!(
                    "credential {:?} is of type {other}; llm.chat takes an openai or bearer credential",
                    c.name
                )));
            }
        },
        None => None,
    };
    let base = match string_input(&ctx, &["base_url"])? {
        Some(b) => b,
        None => credential
            .as_ref()
            .and_then(|c| c.field("base_url"))
            .filter(|b| !b.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| config.base_url.clone()),
    };
    let url = parse_url(&format!("{}/chat/completions", base.trim_end_matches('/')))?;

    // The cache key covers everything that shapes the reply, never the key.
    let cache_file = cache_file(&ctx, cache_dir.as_deref(), config.cache, &url, &body)?;
    if let Some(cached) = cache_read(&ctx, cache_file.as_deref()).await {
        let answer = cached["text"].as_str().unwrap_or_default();
        memory.keep(remember.as_ref(), &asked, answer).await?;
        return Ok(NodeOutput::new(cached));
    }

    let api_key = match string_input(&ctx, &["api_key", "apiKey"])?.or(credential_key) {
        Some(k) => Some(k),
        None => std::env::var(&config.api_key_env)
            .ok()
            .filter(|k| !k.is_empty()),
    };
    let timeout = match string_input(&ctx, &["timeout"])? {
        Some(t) => duration::parse(&t).map_err(NodeError::input)?,
        None => duration::parse(&config.timeout).unwrap_or(http.default_timeout()),
    };
    let target = target_of(&url);
    let mut req = http
        .client(10)?
        .post(url.clone())
        .timeout(timeout)
        .json(&body);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let response = http.execute(&ctx, &target, None, req).await?;
    if response.status().as_u16() >= 400 {
        return Err(super::ai::provider::http_error(&http, &ctx, &target, &url, response).await);
    }
    let mut output = if stream {
        let (turn, events) =
            super::ai::provider::read_openai_stream(&http, &ctx, &target, response).await?;
        // No usage in the stream (a server that ignores stream_options): none counted.
        let usage = if turn.usage.total() == 0 {
            json!({})
        } else {
            turn.usage.to_json()
        };
        let model = if turn.model.is_empty() {
            json!(model)
        } else {
            json!(turn.model)
        };
        json!({"text": turn.text, "usage": usage, "model": model, "raw": {"streamed_events": events}})
    } else {
        let bytes = http.read_body(&ctx, &target, response, MAX_REPLY).await?;
        let raw: Value = serde_json::from_slice(&bytes)
            .map_err(|e| malformed(&String::from_utf8_lossy(&bytes), &format!("not JSON ({e})")))?;
        let text = raw
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(&raw.to_string(), "no choices[0].message.content"))?
            .to_string();
        json!({"text": text, "usage": raw.get("usage").cloned().unwrap_or(json!({})), "model": raw.get("model").cloned().unwrap_or(json!(model)), "raw": raw})
    };
    if json_mode {
        let text = output["text"].as_str().unwrap_or_default();
        let parsed: Value = serde_json::from_str(text).map_err(|e| {
            NodeError::other(format!(
                "JSON mode was asked for, but the reply is not JSON ({e}): {}",
                excerpt(text)
            ))
        })?;
        output["json"] = parsed;
    }
    let usage = &output["usage"];
    if let Some(total) = usage.get("total_tokens").and_then(Value::as_u64) {
        ctx.log(
            LogLevel::Info,
            format!(
                "{total} tokens ({} prompt, {} completion)",
                usage
                    .get("prompt_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                usage
                    .get("completion_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            ),
        );
    }
    output["cached"] = json!(false);
    if let Some(spec) = &remember {
        memory
            .save(spec, &asked, output["text"].as_str().unwrap_or_default())
            .await?;
        if spec.summarize {
            let endpoint = Endpoint::resolve(&ctx, http.clone(), &config)?;
            memory.compact(spec, &ctx, &endpoint).await;
        }
    }
    // The cache is a file in the home: no secret may reach it either.
    ctx.mask_value(&mut output);
    cache_write(&ctx, cache_file.as_deref(), &output).await;
    Ok(NodeOutput::new(output))
}

/// Where the reply to `body` is cached, when caching is on and there is a home.
pub(super) fn cache_file(
    ctx: &NodeCtx,
    cache_dir: Option<&std::path::Path>,
    default: bool,
    url: &reqwest::Url,
    body: &Value,
) -> Result<Option<PathBuf>, NodeError> {
    let use_cache = ctx.bool_or("cache", default)?;
    Ok(match (cache_dir, use_cache) {
        (Some(dir), true) => {
            let key =
                crate::digest::sha256_hex(json!({"url": url.as_str(), "body": body}).to_string());
            Some(dir.join(format!("{key}.json")))
        }
        (None, true) => {
            ctx.log(
                LogLevel::Debug,
                "llm cache skipped: there is no fuse home to keep it in",
            );
            None
        }
        _ => None,
    })
}

/// A cached reply, marked `cached: true`.
pub(super) async fn cache_read(ctx: &NodeCtx, file: Option<&std::path::Path>) -> Option<Value> {
    let text = tokio::fs::read_to_string(file?).await.ok()?;
    let mut cached = serde_json::from_str::<Value>(&text).ok()?;
    cached["cached"] = json!(true);
    ctx.log(LogLevel::Info, "reply taken from the llm cache");
    Some(cached)
}

/// Stores a reply (already masked) in the cache; a failure is logged.
pub(super) async fn cache_write(ctx: &NodeCtx, file: Option<&std::path::Path>, output: &Value) {
    let Some(file) = file else { return };
    let stored = async {
        if let Some(dir) = file.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(file, output.to_string()).await
    };
    if let Err(e) = stored.await {
        ctx.log(
            LogLevel::Warn,
            format!("cannot write the llm cache {}: {e}", file.display()),
        );
    }
}

/// `llm.chat` with `provider: anthropic`: one Messages API turn.
async fn anthropic_chat(
    http: Arc<Http>,
    config: LlmConfig,
    cache_dir: Option<PathBuf>,
    memory: Memory,
    ctx: NodeCtx,
) -> Result<NodeOutput, NodeError> {
    let endpoint = Endpoint::resolve(&ctx, http, &config)?;
    let remember = MemorySpec::parse(&ctx)?;
    let mut system: Vec<String> = Vec::new();
    let mut msgs: Vec<Msg> = Vec::new();
    if let Some(s) = string_input(&ctx, &["system", "system_message", "systemMessage"])? {
        system.push(s);
    }
    match input(&ctx, &["messages"]) {
        None => {}
        Some(Value::Array(list)) => {
            for (i, m) in list.iter().enumerate() {
                let content = match &m["content"] {
                    Value::String(s) => s.clone(),
                    other => {
                        return Err(wrong_type(
                            &format!("messages[{i}].content"),
                            "a string",
                            other,
                        ));
                    }
                };
                match m["role"].as_str() {
                    Some("system") => system.push(content),
                    Some("user") => msgs.push(Msg::User(content)),
                    Some("assistant") => msgs.push(Msg::Assistant {
                        text: content,
                        calls: Vec::new(),
                    }),
                    _ => {
                        return Err(NodeError::input(format!(
                            "messages[{i}].role must be system, user or assistant"
                        )));
                    }
                }
            }
        }
        Some(other) => return Err(wrong_type("messages", "an array of {role, content}", other)),
    }
    if let Some(prompt) = string_input(&ctx, &["prompt", "user_message", "userMessage", "message"])?
    {
        msgs.push(Msg::User(prompt));
    }
    if !msgs.iter().any(|m| matches!(m, Msg::User(_)))
        && let Some(text) = upstream_message(&ctx.input)
    {
        msgs.push(Msg::User(text));
    }
    let asked = match msgs.iter().rev().find_map(|m| match m {
        Msg::User(t) => Some(t.clone()),
        _ => None,
    }) {
        Some(t) => t,
        None => return Err(nothing_to_send()),
    };
    if let Some(spec) = &remember {
        let past = memory.load(spec).await?;
        if let Some(summary) = past.summary_text() {
            system.push(summary);
        }
        msgs.splice(0..0, past.messages);
    }
    let json_mode = ctx.bool_or("json", false)?;
    if json_mode {
        system.push("Reply with one JSON object and nothing else.".into());
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    let body = endpoint.body(system.as_deref(), &msgs, &[]);
    let url = endpoint.url()?;
    let cache_file = cache_file(&ctx, cache_dir.as_deref(), config.cache, &url, &body)?;
    if let Some(cached) = cache_read(&ctx, cache_file.as_deref()).await {
        let answer = cached["text"].as_str().unwrap_or_default();
        memory.keep(remember.as_ref(), &asked, answer).await?;
        return Ok(NodeOutput::new(cached));
    }
    let turn = endpoint.send(&ctx, &body).await?;
    let mut output = json!({"text": turn.text, "usage": turn.usage.to_json(), "model": turn.model,
                            "raw": {"stop_reason": turn.stop, "provider": "anthropic"}, "cached": false});
    if json_mode {
        let parsed: Value = serde_json::from_str(turn.text.trim()).map_err(|e| {
            NodeError::other(format!(
                "JSON mode was asked for, but the reply is not JSON ({e}): {}",
                excerpt(&turn.text)
            ))
        })?;
        output["json"] = parsed;
    }
    ctx.log(
        LogLevel::Info,
        format!(
            "{} tokens ({} prompt, {} completion)",
            turn.usage.total(),
            turn.usage.prompt,
            turn.usage.completion
        ),
    );
    if let Some(spec) = &remember {
        memory.save(spec, &asked, &turn.text).await?;
        memory.compact(spec, &ctx, &endpoint).await;
    }
    ctx.mask_value(&mut output);
    cache_write(&ctx, cache_file.as_deref(), &output).await;
    Ok(NodeOutput::new(output))
}

fn nothing_to_send() -> NodeError {
    NodeError::input(
        "nothing to send: give `prompt` or `messages`, or send a message from upstream \
         (a string, or an object with `message`, `prompt`, `text` or `content`)",
    )
}

fn malformed(reply: &str, what: &str) -> NodeError {
    NodeError::new(
        ErrorKind::Other,
        format!(
            "the LLM reply is not an OpenAI-style chat completion: {what}; the reply was: {}",
            excerpt(reply)
        ),
    )
    .retryable(false)
}
