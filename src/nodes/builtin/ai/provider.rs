//! One model turn against a chat API: the OpenAI-compatible Chat Completions
//! API (Ollama, llama.cpp, vLLM, OpenAI, …) or the Anthropic Messages API,
//! with tools and streaming. The conversation is kept in a provider-neutral
//! form ([`Msg`]) and written out in each API's own shape per request.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::super::http::{Http, parse_url, retry_after, target_of};
use crate::config::LlmConfig;
use crate::engine::duration;
use crate::nodes::{ErrorKind, LogLevel, NodeCtx, NodeError, wrong_type};

/// Replies larger than this are refused.
pub const MAX_REPLY: u64 = 32 * 1024 * 1024;

/// The Anthropic API version fuse speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Where Anthropic requests go when neither the node nor a credential says.
pub const ANTHROPIC_BASE: &str = "https://api.anthropic.com/v1";

/// Which API a node speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
}

impl Provider {
    pub fn parse(ctx: &NodeCtx) -> Result<Provider, NodeError> {
        match ctx.param("provider") {
            None | Some(Value::Null) => Ok(Provider::OpenAi),
            Some(Value::String(s)) => match s.as_str() {
                "openai" | "openai-compatible" | "ollama" | "llama.cpp" | "vllm" => {
                    Ok(Provider::OpenAi)
                }
                "anthropic" => Ok(Provider::Anthropic),
                other => Err(NodeError::input(format!(
                    "unknown provider {other:?}; use \"openai\" (any OpenAI-compatible server) or \"anthropic\""
                ))),
            },
            Some(other) => Err(wrong_type("provider", "\"openai\" or \"anthropic\"", other)),
        }
    }
}

/// A message of a conversation.
#[derive(Debug, Clone)]
pub enum Msg {
    User(String),
    Assistant {
        text: String,
        calls: Vec<ToolCall>,
    },
    /// What a tool call gave back (or its error, `is_error`).
    Tool {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

/// A tool call the model asked for.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model sent them (OpenAI sends a JSON string).
    pub arguments: Value,
}

/// A tool the model may call.
#[derive(Debug, Clone)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object).
    pub parameters: Value,
}

/// Token counts of one turn.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

impl Usage {
    pub fn total(self) -> u64 {
        self.prompt + self.completion
    }

    pub fn add(&mut self, other: Usage) {
        self.prompt += other.prompt;
        self.completion += other.completion;
    }

    /// In the OpenAI shape every fuse output uses (so run usage sums work).
    pub fn to_json(self) -> Value {
        json!({"prompt_tokens": self.prompt, "completion_tokens": self.completion,
               "total_tokens": self.total()})
    }
}

/// What one turn gave.
#[derive(Debug, Clone)]
pub struct Turn {
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub usage: Usage,
    pub model: String,
    /// Why the model stopped (`stop`, `tool_calls`, `end_turn`, `max_tokens`, …).
    pub stop: Option<String>,
}

/// Where and how to send turns: resolved once per node attempt from its
/// inputs, its credential, and `[llm]` in fuse.toml.
#[derive(Clone)]
pub struct Endpoint {
    pub provider: Provider,
    pub http: Arc<Http>,
    pub base: String,
    pub model: String,
    api_key: Option<String>,
    pub timeout: Duration,
    pub stream: bool,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
}

/// Reads an input by its name or one of its other names.
pub fn input<'a>(ctx: &'a NodeCtx, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| ctx.param(n).filter(|v| !v.is_null()))
}

pub fn string_input(ctx: &NodeCtx, names: &[&str]) -> Result<Option<String>, NodeError> {
    match input(ctx, names) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(names[0], "a string", other)),
    }
}

impl Endpoint {
    pub fn resolve(
        ctx: &NodeCtx,
        http: Arc<Http>,
        config: &LlmConfig,
    ) -> Result<Endpoint, NodeError> {
        Endpoint::resolve_for(ctx, http, config, &config.model, "llm.model")
    }

    /// Like [`Endpoint::resolve`], with another default model (`setting`
    /// names where it comes from, for the error when there is none).
    pub fn resolve_for(
        ctx: &NodeCtx,
        http: Arc<Http>,
        config: &LlmConfig,
        default_model: &str,
        setting: &str,
    ) -> Result<Endpoint, NodeError> {
        let provider = Provider::parse(ctx)?;
        let model = string_input(ctx, &["model"])?
            .filter(|m| !m.is_empty())
            .or_else(|| Some(default_model.to_string()).filter(|m| !m.is_empty()))
            .ok_or_else(|| {
                NodeError::input(format!(
                    "no model: set the node's `model` input or {setting} in fuse.toml"
                ))
            })?;
        let credential = match string_input(ctx, &["credential"])? {
            Some(name) => Some(ctx.credential(&name)?),
            None => None,
        };
        let credential_key = match &credential {
            Some(c) => match (c.kind.as_str(), provider) {
                ("openai", _) | ("anthropic", _) => c.field("api_key").map(str::to_string),
                ("bearer", _) => c.field("token").map(str::to_string),
                (other, _) => {
                    return Err(NodeError::input(format!(
                        "credential {:?} is of type {other}; this node takes an openai, anthropic or bearer credential",
                        c.name
                    )));
                }
            },
            None => None,
        };
        let base = match string_input(ctx, &["base_url"])? {
            Some(b) => b,
            None => match credential
                .as_ref()
                .and_then(|c| c.field("base_url"))
                .filter(|b| !b.is_empty())
            {
                Some(b) => b.to_string(),
                None if provider == Provider::Anthropic => ANTHROPIC_BASE.to_string(),
                None => config.base_url.clone(),
            },
        };
        let env = match provider {
            Provider::OpenAi => config.api_key_env.clone(),
            Provider::Anthropic => "ANTHROPIC_API_KEY".to_string(),
        };
        let api_key = match string_input(ctx, &["api_key", "apiKey"])?.or(credential_key) {
            Some(k) => Some(k),
            None => std::env::var(&env).ok().filter(|k| !k.is_empty()),
        };
        let timeout = match string_input(ctx, &["timeout"])? {
            Some(t) => duration::parse(&t).map_err(NodeError::input)?,
            None => duration::parse(&config.timeout).unwrap_or(http.default_timeout()),
        };
        let stream = match input(ctx, &["stream", "enable_streaming"]) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong_type("stream", "true or false", other)),
        };
        let temperature = match input(ctx, &["temperature"]) {
            None => None,
            Some(t) => Some(
                t.as_f64()
                    .ok_or_else(|| wrong_type("temperature", "a number", t))?,
            ),
        };
        let max_tokens = match input(ctx, &["max_tokens", "maxTokens"]) {
            None => None,
            Some(m) => Some(
                m.as_u64()
                    .ok_or_else(|| wrong_type("max_tokens", "a whole number", m))?,
            ),
        };
        Ok(Endpoint {
            provider,
            http,
            base: base.trim_end_matches('/').to_string(),
            model,
            api_key,
            timeout,
            stream,
            temperature,
            max_tokens,
        })
    }

    /// The request body of a turn (also what a step records as its input).
    pub fn body(&self, system: Option<&str>, msgs: &[Msg], tools: &[ToolDef]) -> Value {
        match self.provider {
            Provider::OpenAi => {
                let mut messages = Vec::with_capacity(msgs.len() + 1);
                if let Some(s) = system {
                    messages.push(json!({"role": "system", "content": s}));
                }
                for m in msgs {
                    messages.push(match m {
                        Msg::User(text) => json!({"role": "user", "content": text}),
                        Msg::Assistant { text, calls } if calls.is_empty() => {
                            json!({"role": "assistant", "content": text})
                        }
                        Msg::Assistant { text, calls } => json!({
                            "role": "assistant",
                            "content": if text.is_empty() { Value::Null } else { json!(text) },
                            "tool_calls": calls.iter().map(|c| json!({
                                "id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments.to_string()}
                            })).collect::<Vec<_>>()
                        }),
                        Msg::Tool {
                            call_id, content, ..
                        } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
                    });
                }
                let mut body =
                    json!({"model": self.model, "messages": messages, "stream": self.stream});
                if !tools.is_empty() {
                    body["tools"] = tools
                        .iter()
                        .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                        .collect();
                }
                if let Some(t) = self.temperature {
                    body["temperature"] = json!(t);
                }
                if let Some(m) = self.max_tokens {
                    body["max_tokens"] = json!(m);
                }
                if self.stream {
                    body["stream_options"] = json!({"include_usage": true});
                }
                body
            }
            Provider::Anthropic => {
                // Anthropic wants alternating turns: tool results of one
                // assistant turn go together in one user message.
                let mut messages: Vec<Value> = Vec::with_capacity(msgs.len());
                for m in msgs {
                    match m {
                        Msg::User(text) => {
                            push_user(&mut messages, json!({"type": "text", "text": text}))
                        }
                        Msg::Assistant { text, calls } => {
                            let mut content = Vec::new();
                            if !text.is_empty() {
                                content.push(json!({"type": "text", "text": text}));
                            }
                            for c in calls {
                                content.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}));
                            }
                            messages.push(json!({"role": "assistant", "content": content}));
                        }
                        Msg::Tool {
                            call_id,
                            content,
                            is_error,
                        } => push_user(
                            &mut messages,
                            json!({"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error}),
                        ),
                    }
                }
                let mut body = json!({"model": self.model, "messages": messages,
                                      "max_tokens": self.max_tokens.unwrap_or(1024)});
                if let Some(s) = system {
                    body["system"] = json!(s);
                }
                if !tools.is_empty() {
                    body["tools"] = tools
                        .iter()
                        .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                        .collect();
                }
                if let Some(t) = self.temperature {
                    body["temperature"] = json!(t);
                }
                if self.stream {
                    body["stream"] = json!(true);
                }
                body
            }
        }
    }

    /// POSTs `body` to `url` with the endpoint's key (and Anthropic's
    /// version header); an answer of 400 or more is an HTTP error (retryable
    /// for 429 and 5xx, honouring Retry-After).
    async fn post(
        &self,
        ctx: &NodeCtx,
        url: &reqwest::Url,
        body: &Value,
    ) -> Result<(reqwest::Response, String), NodeError> {
        let target = target_of(url);
        let mut req = self
            .http
            .client(10)?
            .post(url.clone())
            .timeout(self.timeout)
            .json(body);
        match (self.provider, &self.api_key) {
            (Provider::OpenAi, Some(key)) => req = req.bearer_auth(key),
            (Provider::Anthropic, key) => {
                req = req.header("anthropic-version", ANTHROPIC_VERSION);
                if let Some(key) = key {
                    req = req.header("x-api-key", key);
                }
            }
            (Provider::OpenAi, None) => {}
        }
        let response = self.http.execute(ctx, &target, None, req).await?;
        if response.status().as_u16() >= 400 {
            return Err(http_error(&self.http, ctx, &target, url, response).await);
        }
        Ok((response, target))
    }

    /// POSTs JSON to `{base}/{path}` with the endpoint's key and reads a JSON
    /// reply (embeddings, rerank).
    pub async fn post_json(
        &self,
        ctx: &NodeCtx,
        path: &str,
        body: &Value,
    ) -> Result<Value, NodeError> {
        let url = parse_url(&format!("{}/{path}", self.base))?;
        let (response, target) = self.post(ctx, &url, body).await?;
        let bytes = self
            .http
            .read_body(ctx, &target, response, MAX_REPLY)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            NodeError::new(
                ErrorKind::Other,
                format!(
                    "{url} did not answer JSON ({e}): {}",
                    excerpt(&String::from_utf8_lossy(&bytes))
                ),
            )
            .retryable(false)
        })
    }

    pub fn url(&self) -> Result<reqwest::Url, NodeError> {
        match self.provider {
            Provider::OpenAi => parse_url(&format!("{}/chat/completions", self.base)),
            Provider::Anthropic => parse_url(&format!("{}/messages", self.base)),
        }
    }

    /// Sends one turn (`body` from [`Endpoint::body`]) and reads the reply;
    /// streamed text is logged line by line as it arrives.
    pub async fn send(&self, ctx: &NodeCtx, body: &Value) -> Result<Turn, NodeError> {
        let url = self.url()?;
        let (response, target) = self.post(ctx, &url, body).await?;
        if self.stream {
            let mut lines = LineLogger::default();
            let (turn, _) = match self.provider {
                Provider::OpenAi => {
                    read_sse(
                        &self.http,
                        ctx,
                        &target,
                        response,
                        OpenAiStream::default(),
                        &mut lines,
                    )
                    .await?
                }
                Provider::Anthropic => {
                    read_sse(
                        &self.http,
                        ctx,
                        &target,
                        response,
                        AnthropicStream::default(),
                        &mut lines,
                    )
                    .await?
                }
            };
            lines.finish(ctx, &turn.text);
            return Ok(Turn {
                model: if turn.model.is_empty() {
                    self.model.clone()
                } else {
                    turn.model
                },
                ..turn
            });
        }
        let bytes = self
            .http
            .read_body(ctx, &target, response, MAX_REPLY)
            .await?;
        let raw: Value = serde_json::from_slice(&bytes).map_err(|e| {
            self.malformed(&String::from_utf8_lossy(&bytes), &format!("not JSON ({e})"))
        })?;
        match self.provider {
            Provider::OpenAi => self.openai_reply(&raw),
            Provider::Anthropic => self.anthropic_reply(&raw),
        }
    }

    fn openai_reply(&self, raw: &Value) -> Result<Turn, NodeError> {
        let message = raw
            .pointer("/choices/0/message")
            .filter(|m| m.is_object())
            .ok_or_else(|| self.malformed(&raw.to_string(), "no choices[0].message"))?;
        let text = match message.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(
                    self.malformed(&raw.to_string(), "choices[0].message.content is not text")
                );
            }
        };
        let mut calls = Vec::new();
        if let Some(list) = message.get("tool_calls").filter(|v| !v.is_null()) {
            let list = list
                .as_array()
                .ok_or_else(|| self.malformed(&raw.to_string(), "tool_calls is not an array"))?;
            for (i, call) in list.iter().enumerate() {
                let name = call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        self.malformed(
                            &raw.to_string(),
                            &format!("tool_calls[{i}] has no function.name"),
                        )
                    })?;
                let arguments = match call.pointer("/function/arguments") {
                    Some(Value::String(s)) => parse_arguments(s),
                    Some(v @ Value::Object(_)) => v.clone(),
                    None | Some(Value::Null) => json!({}),
                    Some(other) => json!({ "$unparsed": other.to_string() }),
                };
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("call_{i}"), str::to_string);
                calls.push(ToolCall {
                    id,
                    name: name.to_string(),
                    arguments,
                });
            }
        }
        if text.is_empty() && calls.is_empty() && message.get("content").is_none() {
            return Err(self.malformed(
                &raw.to_string(),
                "the message has neither content nor tool_calls",
            ));
        }
        Ok(self.turn(
            raw,
            text,
            calls,
            ["prompt_tokens", "completion_tokens"],
            raw.pointer("/choices/0/finish_reason"),
        ))
    }

    fn anthropic_reply(&self, raw: &Value) -> Result<Turn, NodeError> {
        if let Some(err) = raw.get("error").filter(|e| !e.is_null()) {
            return Err(NodeError::other(format!(
                "the Anthropic API reported an error: {err}"
            )));
        }
        let content = raw
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| self.malformed(&raw.to_string(), "no content array"))?;
        let mut text = String::new();
        let mut calls = Vec::new();
        for (i, block) in content.iter().enumerate() {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""))
                }
                Some("tool_use") => {
                    let name = block.get("name").and_then(Value::as_str).ok_or_else(|| {
                        self.malformed(
                            &raw.to_string(),
                            &format!("content[{i}] (tool_use) has no name"),
                        )
                    })?;
                    calls.push(ToolCall {
                        id: block
                            .get("id")
                            .and_then(Value::as_str)
                            .map_or_else(|| format!("toolu_{i}"), str::to_string),
                        name: name.to_string(),
                        arguments: block.get("input").cloned().unwrap_or(json!({})),
                    });
                }
                // Thinking and other blocks carry nothing fuse uses.
                _ => {}
            }
        }
        Ok(self.turn(
            raw,
            text,
            calls,
            ["input_tokens", "output_tokens"],
            raw.get("stop_reason"),
        ))
    }

    /// A turn from a reply's parts, its token counts under `keys` of `usage`.
    fn turn(
        &self,
        raw: &Value,
        text: String,
        calls: Vec<ToolCall>,
        keys: [&str; 2],
        stop: Option<&Value>,
    ) -> Turn {
        let count = |k: &str| {
            raw.get("usage")
                .and_then(|u| u.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Turn {
            text,
            calls,
            usage: Usage {
                prompt: count(keys[0]),
                completion: count(keys[1]),
            },
            model: raw
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&self.model)
                .to_string(),
            stop: stop.and_then(Value::as_str).map(str::to_string),
        }
    }

    pub fn malformed(&self, reply: &str, what: &str) -> NodeError {
        let shape = match self.provider {
            Provider::OpenAi => "an OpenAI-style chat completion",
            Provider::Anthropic => "an Anthropic Messages reply",
        };
        NodeError::new(
            ErrorKind::Other,
            format!(
                "the LLM reply is not {shape}: {what}; the reply was: {}",
                excerpt(reply)
            ),
        )
        .retryable(false)
    }
}

/// The error of an answer of 400 or more from an LLM endpoint: its status
/// and the start of its body; retryable for 429 and 5xx, after Retry-After.
pub async fn http_error(
    http: &Http,
    ctx: &NodeCtx,
    target: &str,
    url: &reqwest::Url,
    response: reqwest::Response,
) -> NodeError {
    let status = response.status().as_u16();
    let wait = retry_after(response.headers());
    let bytes = http
        .read_body(ctx, target, response, MAX_REPLY)
        .await
        .unwrap_or_default();
    let excerpt: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
    let mut err = NodeError::new(
        ErrorKind::Http { status },
        format!(
            "the LLM endpoint {url} answered {status}: {}",
            excerpt.trim()
        ),
    )
    .retryable(status >= 500 || status == 429);
    err.retry_after = wait;
    err
}

/// Tool results of one assistant turn share one user message (Anthropic).
fn push_user(messages: &mut Vec<Value>, block: Value) {
    if let Some(last) = messages.last_mut()
        && last["role"] == "user"
        && let Some(content) = last["content"].as_array_mut()
    {
        content.push(block);
        return;
    }
    messages.push(json!({"role": "user", "content": [block]}));
}

/// Tool-call arguments from the JSON text a model sent; text that is not a
/// JSON object is kept under `$unparsed` so the tool can say what is wrong.
fn parse_arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "$unparsed": text }),
    }
}

pub fn excerpt(s: &str) -> String {
    let e: String = s.chars().take(200).collect();
    if s.chars().count() > 200 {
        format!("{e}…")
    } else {
        e
    }
}

/// Logs streamed text one finished line at a time.
#[derive(Default)]
struct LineLogger {
    logged: usize,
}

impl LineLogger {
    fn text(&mut self, ctx: &NodeCtx, text: &str) {
        while let Some(i) = text[self.logged..].find('\n') {
            ctx.log(
                LogLevel::Info,
                text[self.logged..self.logged + i].to_string(),
            );
            self.logged += i + 1;
        }
    }

    fn finish(&mut self, ctx: &NodeCtx, text: &str) {
        if self.logged < text.len() && !text[self.logged..].is_empty() {
            ctx.log(LogLevel::Info, text[self.logged..].to_string());
            self.logged = text.len();
        }
    }
}

/// Assembles a streamed reply from its server-sent events.
trait StreamState {
    /// Takes one event's data; `Ok(true)` when the stream says it is done.
    fn event(&mut self, data: &Value, raw: &str) -> Result<bool, String>;
    fn text(&self) -> &str;
    fn finish(self) -> Result<Turn, String>;
}

async fn read_sse<S: StreamState>(
    http: &Http,
    ctx: &NodeCtx,
    target: &str,
    mut response: reqwest::Response,
    mut state: S,
    lines: &mut LineLogger,
) -> Result<(Turn, usize), NodeError> {
    let mut pending = String::new();
    let mut received = 0u64;
    let mut events = 0usize;
    let malformed = |data: &str, what: &str| {
        NodeError::new(
            ErrorKind::Other,
            format!(
                "the LLM stream is malformed: {what}; the event was: {}",
                excerpt(data)
            ),
        )
        .retryable(false)
    };
    'read: loop {
        let chunk = match response.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                http.failed(ctx, target);
                return Err(NodeError::new(
                    ErrorKind::Network,
                    format!("the LLM stream broke off: {e}"),
                ));
            }
        };
        received += chunk.len() as u64;
        if received > MAX_REPLY {
            return Err(NodeError::other(format!(
                "the streamed reply is larger than {MAX_REPLY} bytes"
            )));
        }
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(nl) = pending.find('\n') {
            let line: String = pending.drain(..=nl).collect();
            let line = line.trim();
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                break 'read;
            }
            let event: Value = serde_json::from_str(data)
                .map_err(|e| malformed(data, &format!("an event is not JSON ({e})")))?;
            events += 1;
            let done = state.event(&event, data).map_err(|what| {
                if what.starts_with("the LLM endpoint") {
                    NodeError::other(what)
                } else {
                    malformed(data, &what)
                }
            })?;
            lines.text(ctx, state.text());
            if done {
                break 'read;
            }
        }
    }
    if events == 0 {
        return Err(malformed(&pending, "the stream carried no events"));
    }
    let turn = state.finish().map_err(|what| malformed("", &what))?;
    Ok((turn, events))
}

/// Reads an OpenAI-compatible streamed reply, logging its text line by line
/// as it arrives: the assembled turn and how many events carried it.
pub async fn read_openai_stream(
    http: &Http,
    ctx: &NodeCtx,
    target: &str,
    response: reqwest::Response,
) -> Result<(Turn, usize), NodeError> {
    let mut lines = LineLogger::default();
    let (turn, events) = read_sse(
        http,
        ctx,
        target,
        response,
        OpenAiStream::default(),
        &mut lines,
    )
    .await?;
    lines.finish(ctx, &turn.text);
    Ok((turn, events))
}

/// OpenAI-compatible chunks: text deltas, tool-call deltas by index, usage.
#[derive(Default)]
struct OpenAiStream {
    text: String,
    calls: Vec<(String, String, String)>,
    usage: Usage,
    model: String,
    stop: Option<String>,
}

impl StreamState for OpenAiStream {
    fn event(&mut self, event: &Value, _raw: &str) -> Result<bool, String> {
        if let Some(err) = event.get("error") {
            return Err(format!(
                "the LLM endpoint reported an error mid-stream: {err}"
            ));
        }
        if let Some(u) = event.get("usage").filter(|u| u.is_object()) {
            let count = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Usage {
                prompt: count("prompt_tokens"),
                completion: count("completion_tokens"),
            };
        }
        if let Some(m) = event.get("model").and_then(Value::as_str) {
            self.model = m.to_string();
        }
        let Some(choice) = event.pointer("/choices/0") else {
            return if event.get("usage").is_some() || event.get("choices").is_some() {
                Ok(false)
            } else {
                Err("an event has neither choices nor usage".into())
            };
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(reason.to_string());
        }
        if let Some(delta) = choice.pointer("/delta/content").and_then(Value::as_str) {
            self.text.push_str(delta);
        }
        if let Some(list) = choice
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
        {
            for call in list {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if index > 1024 {
                    return Err(format!("a tool call index of {index}"));
                }
                while self.calls.len() <= index {
                    self.calls.push(Default::default());
                }
                let slot = &mut self.calls[index];
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    slot.0 = id.to_string();
                }
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    slot.1.push_str(name);
                }
                if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    slot.2.push_str(args);
                }
            }
        }
        Ok(false)
    }

    fn text(&self) -> &str {
        &self.text
    }

    fn finish(self) -> Result<Turn, String> {
        let mut calls = Vec::new();
        for (i, (id, name, args)) in self.calls.into_iter().enumerate() {
            if name.is_empty() {
                return Err(format!("streamed tool call {i} has no name"));
            }
            calls.push(ToolCall {
                id: if id.is_empty() {
                    format!("call_{i}")
                } else {
                    id
                },
                name,
                arguments: parse_arguments(&args),
            });
        }
        Ok(Turn {
            text: self.text,
            calls,
            usage: self.usage,
            model: self.model,
            stop: self.stop,
        })
    }
}

/// The content block an Anthropic stream event is about.
fn block_index(event: &Value) -> String {
    event
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .to_string()
}

/// Anthropic's typed events: message_start, content_block_start/delta/stop,
/// message_delta, message_stop (and ping, error).
#[derive(Default)]
struct AnthropicStream {
    text: String,
    /// Content blocks by index: a tool use's id, name and JSON text so far.
    tools: Map<String, Value>,
    order: Vec<String>,
    usage: Usage,
    model: String,
    stop: Option<String>,
}

impl StreamState for AnthropicStream {
    fn event(&mut self, event: &Value, _raw: &str) -> Result<bool, String> {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "message_start" => {
                let m = &event["message"];
                if let Some(model) = m.get("model").and_then(Value::as_str) {
                    self.model = model.to_string();
                }
                self.usage.prompt = m
                    .pointer("/usage/input_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                self.usage.completion = m
                    .pointer("/usage/output_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
            }
            "content_block_start" => {
                let index = block_index(event);
                let block = &event["content_block"];
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let name = block
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or("a tool_use block has no name")?;
                        self.tools.insert(
                            index.clone(),
                            json!({"id": block.get("id").cloned().unwrap_or(Value::Null), "name": name, "json": ""}),
                        );
                        self.order.push(index);
                    }
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str) {
                            self.text.push_str(t);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = block_index(event);
                let delta = &event["delta"];
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        self.text
                            .push_str(delta.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    Some("input_json_delta") => {
                        let part = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let tool = self.tools.get_mut(&index).ok_or_else(|| {
                            format!("input for content block {index}, which is not a tool_use")
                        })?;
                        let mut so_far = tool["json"].as_str().unwrap_or("").to_string();
                        so_far.push_str(part);
                        tool["json"] = json!(so_far);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(reason.to_string());
                }
                if let Some(out) = event
                    .pointer("/usage/output_tokens")
                    .and_then(Value::as_u64)
                {
                    self.usage.completion = out;
                }
                if let Some(input) = event.pointer("/usage/input_tokens").and_then(Value::as_u64) {
                    self.usage.prompt = input;
                }
            }
            "message_stop" => return Ok(true),
            "error" => {
                return Err(format!(
                    "the LLM endpoint reported an error mid-stream: {}",
                    event.get("error").unwrap_or(event)
                ));
            }
            "ping" | "content_block_stop" => {}
            "" => return Err("an event has no type".into()),
            _ => {}
        }
        Ok(false)
    }

    fn text(&self) -> &str {
        &self.text
    }

    fn finish(self) -> Result<Turn, String> {
        let mut calls = Vec::new();
        for (i, index) in self.order.iter().enumerate() {
            let tool = &self.tools[index];
            calls.push(ToolCall {
                id: tool["id"]
                    .as_str()
                    .map_or_else(|| format!("toolu_{i}"), str::to_string),
                name: tool["name"].as_str().unwrap_or("").to_string(),
                arguments: parse_arguments(tool["json"].as_str().unwrap_or("")),
            });
        }
        Ok(Turn {
            text: self.text,
            calls,
            usage: self.usage,
            model: self.model,
            stop: self.stop,
        })
    }
}
