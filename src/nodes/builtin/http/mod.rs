//! `http.request` on reqwest (rustls), and the HTTP plumbing `llm.chat` shares:
//! one connection pool, a circuit breaker and a rate limiter per target
//! (scheme://host:port) for every run in the process, bounded body reading.

pub mod breaker;
mod rate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use self::breaker::{Admit, Breakers, Transition};
use self::rate::RateLimiter;
use super::{InputSpec, Node, boxed, object_schema};
use crate::config::HttpConfig;
use crate::engine::duration;
use crate::nodes::{
    ErrorKind, Handles, LogLevel, NodeCtx, NodeError, NodeOutput, NodeSpec, wrong_type,
};

/// HTTP state shared by every run of a process.
pub struct Http {
    timeout: Duration,
    max_response_bytes: u64,
    max_redirects: usize,
    rate_limit: f64,
    rate_limits: BTreeMap<String, f64>,
    clients: Mutex<HashMap<usize, reqwest::Client>>,
    /// The client for the configured `max_redirects`: most requests use it.
    default_client: std::sync::OnceLock<reqwest::Client>,
    pub breakers: Arc<Breakers>,
    limiter: RateLimiter,
    /// The last URL parsed, with its target: a `foreach` calls the same URL
    /// (with different queries) thousands of times.
    last_url: Mutex<Option<(String, reqwest::Url, Arc<str>)>>,
}

impl Http {
    pub fn new(config: &HttpConfig) -> Http {
        let dur =
            |s: &str, default: u64| duration::parse(s).unwrap_or(Duration::from_secs(default));
        Http {
            timeout: dur(&config.timeout, 30),
            max_response_bytes: config.max_response_bytes,
            max_redirects: config.max_redirects,
            rate_limit: config.rate_limit,
            rate_limits: config.rate_limits.clone(),
            clients: Mutex::new(HashMap::new()),
            default_client: std::sync::OnceLock::new(),
            breakers: breaker::register(Breakers::new(
                config.breaker_threshold,
                dur(&config.breaker_cooldown, 30),
            )),
            limiter: RateLimiter::default(),
            last_url: Mutex::new(None),
        }
    }

    /// Parses an http(s) URL and names its target, reusing the last result when
    /// the text is the same.
    pub fn parse(&self, raw: &str) -> Result<(reqwest::Url, Arc<str>), NodeError> {
        if let Ok(last) = self.last_url.lock()
            && let Some((text, url, target)) = last.as_ref()
            && text == raw
        {
            return Ok((url.clone(), target.clone()));
        }
        let url = parse_url(raw)?;
        let target: Arc<str> = target_of(&url).into();
        if let Ok(mut last) = self.last_url.lock() {
            *last = Some((raw.to_string(), url.clone(), target.clone()));
        }
        Ok((url, target))
    }

    /// The pooled client that follows at most `max_redirects` redirects.
    pub fn client(&self, max_redirects: usize) -> Result<reqwest::Client, NodeError> {
        if max_redirects == self.max_redirects {
            if let Some(client) = self.default_client.get() {
                return Ok(client.clone());
            }
            let client = self.pooled(max_redirects)?;
            return Ok(self.default_client.get_or_init(|| client).clone());
        }
        self.pooled(max_redirects)
    }

    fn pooled(&self, max_redirects: usize) -> Result<reqwest::Client, NodeError> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| NodeError::other("the HTTP client pool is unusable"))?;
        if let Some(c) = clients.get(&max_redirects) {
            return Ok(c.clone());
        }
        let policy = if max_redirects == 0 {
            reqwest::redirect::Policy::none()
        } else {
            reqwest::redirect::Policy::limited(max_redirects)
        };
        let client = reqwest::Client::builder()
            .redirect(policy)
            .user_agent(concat!("fuse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NodeError::other(format!("cannot create the HTTP client: {e}")))?;
        clients.insert(max_redirects, client.clone());
        Ok(client)
    }

    pub fn default_timeout(&self) -> Duration {
        self.timeout
    }

    fn rate_for(&self, target: &str) -> f64 {
        self.rate_limits
            .get(target)
            .copied()
            .unwrap_or(self.rate_limit)
    }

    /// Sends a request through the target's breaker and rate limit.
    pub async fn execute(
        &self,
        ctx: &NodeCtx,
        target: &str,
        rate: Option<f64>,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, NodeError> {
        self.admit(target, rate).await?;
        self.send(ctx, target, request).await
    }

    /// Passes the target's breaker (or fails fast) and waits for its rate limit.
    pub async fn admit(&self, target: &str, rate: Option<f64>) -> Result<(), NodeError> {
        if let Admit::Reject { retry_in, failures } = self.breakers.admit(target) {
            return Err(NodeError::new(
                ErrorKind::Network,
                format!(
                    "circuit open for {target} after {failures} consecutive failures: failing fast \
                     (next probe in {}; see http.breaker_* in fuse.toml)",
                    duration::human(retry_in)
                ),
            )
            .retryable(false)
            .with_details(json!({"circuit": self.breakers.describe(target)})));
        }
        self.limiter
            .wait(target, rate.unwrap_or_else(|| self.rate_for(target)))
            .await;
        Ok(())
    }

    /// Sends an admitted request; the outcome feeds the target's breaker.
    pub async fn send(
        &self,
        ctx: &NodeCtx,
        target: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, NodeError> {
        match request.send().await {
            Ok(response) => {
                self.report(ctx, target, response.status().as_u16() < 500);
                Ok(response)
            }
            Err(e) => {
                self.report(ctx, target, false);
                Err(classify(&e, target)
                    .with_details(json!({"circuit": self.breakers.describe(target)})))
            }
        }
    }

    /// Records a failure that happened after the response started (e.g. the body timed out).
    pub fn failed(&self, ctx: &NodeCtx, target: &str) {
        self.report(ctx, target, false);
    }

    fn report(&self, ctx: &NodeCtx, target: &str, ok: bool) {
        match self.breakers.record(target, ok) {
            Some(Transition::Opened { failures }) => ctx.log(
                LogLevel::Warn,
                format!("circuit for {target} opened after {failures} consecutive failures; calls fail fast until a probe succeeds"),
            ),
            Some(Transition::Closed) => ctx.log(LogLevel::Info, format!("circuit for {target} closed: the probe succeeded")),
            None => {}
        }
    }

    /// Reads a whole body, refusing more than `limit` bytes.
    pub async fn read_body(
        &self,
        ctx: &NodeCtx,
        target: &str,
        mut response: reqwest::Response,
        limit: u64,
    ) -> Result<Vec<u8>, NodeError> {
        let too_big = |n: u64| {
            NodeError::new(
                ErrorKind::Other,
                format!("the response is larger than {limit} bytes (got {n}); raise max_response_bytes if it is expected"),
            )
            .retryable(false)
        };
        if let Some(len) = response.content_length()
            && len > limit
        {
            return Err(too_big(len));
        }
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > limit {
                        return Err(too_big((body.len() + chunk.len()) as u64));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    self.failed(ctx, target);
                    return Err(classify(&e, target));
                }
            }
        }
    }
}

/// `scheme://host:port` of a URL: the unit of breakers and rate limits.
pub fn target_of(url: &reqwest::Url) -> String {
    let (scheme, host) = (url.scheme(), url.host_str().unwrap_or(""));
    let port = url.port_or_known_default().unwrap_or(0).to_string();
    let mut target = String::with_capacity(scheme.len() + host.len() + port.len() + 4);
    for part in [scheme, "://", host, ":", &port] {
        target.push_str(part);
    }
    target
}

/// Parses an http(s) URL.
pub fn parse_url(raw: &str) -> Result<reqwest::Url, NodeError> {
    let url = reqwest::Url::parse(raw)
        .map_err(|e| NodeError::input(format!("url {raw:?} is not valid: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NodeError::input(format!(
            "url {raw:?} must start with http:// or https://"
        )));
    }
    Ok(url)
}

/// A reqwest error as a node error of the right kind.
fn classify(e: &reqwest::Error, target: &str) -> NodeError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    if e.is_timeout() {
        NodeError::new(
            ErrorKind::Timeout,
            format!("request to {target} timed out ({detail})"),
        )
    } else if e.is_redirect() {
        NodeError::new(
            ErrorKind::Other,
            format!("too many redirects ({detail}); raise max_redirects if they are expected"),
        )
    } else if e.is_builder() {
        NodeError::input(format!("the request cannot be built: {detail}"))
    } else if e.is_connect() {
        NodeError::new(
            ErrorKind::Network,
            format!("cannot connect to {target}: {detail}"),
        )
    } else {
        NodeError::new(
            ErrorKind::Network,
            format!("request to {target} failed: {detail}"),
        )
    }
}

/// `Retry-After` as seconds or an HTTP date, capped at an hour.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
            let ms = at.as_millisecond() - jiff::Timestamp::now().as_millisecond();
            Duration::from_millis(ms.max(0) as u64)
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

/// Response headers as a JSON object (lower-case names; repeated values joined).
pub fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::with_capacity(headers.keys_len());
    for (name, value) in headers {
        let v = match value.to_str() {
            Ok(text) => text.to_string(),
            Err(_) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
        };
        match map.entry(name.as_str()) {
            serde_json::map::Entry::Occupied(mut seen) => {
                if let Value::String(existing) = seen.get_mut() {
                    existing.push_str(", ");
                    existing.push_str(&v);
                }
            }
            serde_json::map::Entry::Vacant(slot) => {
                slot.insert(Value::String(v));
            }
        }
    }
    Value::Object(map)
}

/// A JSON scalar as request text (`name` names the input in an error).
fn scalar(name: impl FnOnce() -> String, v: &Value) -> Result<String, NodeError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(wrong_type(&name(), "a string, number or boolean", other)),
    }
}

/// How a response body is decoded: as `mode` says (json, text, bytes) or, in
/// auto mode, by its content type (an empty body is then null).
#[derive(Debug, Clone, Copy, PartialEq)]
enum BodyKind {
    Json,
    Text,
    Bytes,
    /// JSON, or text when it does not parse.
    AutoJson,
    AutoText,
    AutoBytes,
    /// No content type: text when it is UTF-8, else base64.
    AutoUnknown,
}

impl BodyKind {
    fn of(content_type: &str, mode: &str) -> BodyKind {
        match mode {
            "json" => return BodyKind::Json,
            "text" => return BodyKind::Text,
            "bytes" => return BodyKind::Bytes,
            _ => {}
        }
        let ct = content_type.as_bytes();
        let has = |needle: &str| {
            ct.windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        };
        if ct.is_empty() {
            BodyKind::AutoUnknown
        } else if has("json") {
            BodyKind::AutoJson
        } else if ct.len() >= 5 && ct[..5].eq_ignore_ascii_case(b"text/")
            || has("xml")
            || has("javascript")
            || has("x-www-form-urlencoded")
        {
            BodyKind::AutoText
        } else {
            BodyKind::AutoBytes
        }
    }

    fn parse(self, bytes: &[u8]) -> Result<Value, NodeError> {
        let text = || Value::String(String::from_utf8_lossy(bytes).into_owned());
        let b64 = || Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
        Ok(match self {
            BodyKind::Json => serde_json::from_slice(bytes)
                .map_err(|e| NodeError::other(format!("the response is not JSON: {e}")))?,
            BodyKind::Text => text(),
            BodyKind::Bytes => b64(),
            _ if bytes.is_empty() => Value::Null,
            BodyKind::AutoJson => serde_json::from_slice(bytes).unwrap_or_else(|_| text()),
            BodyKind::AutoText => text(),
            BodyKind::AutoUnknown if std::str::from_utf8(bytes).is_ok() => text(),
            BodyKind::AutoBytes | BodyKind::AutoUnknown => b64(),
        })
    }
}

/// Authentication from the `auth` input.
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
    Header(String, String),
    Query(String, String),
}

fn auth_of(ctx: &NodeCtx) -> Result<Auth, NodeError> {
    if let Some(name) = ctx.opt_str("credential")? {
        if ctx.param("auth").is_some_and(|v| !v.is_null()) {
            return Err(NodeError::input("give `credential` or `auth`, not both"));
        }
        let credential = ctx.credential(name)?;
        return auth_from_credential(&credential);
    }
    let Some(auth) = ctx.param("auth").filter(|v| !v.is_null()) else {
        return Ok(Auth::None);
    };
    let field = |k: &str| -> Result<String, NodeError> {
        match auth.get(k) {
            Some(v) => scalar(|| format!("auth.{k}"), v),
            None => Err(NodeError::input(format!("auth needs `{k}`"))),
        }
    };
    match auth.get("type").and_then(Value::as_str) {
        Some("bearer") => Ok(Auth::Bearer(field("token")?)),
        Some("basic") => Ok(Auth::Basic(field("username")?, field("password")?)),
        Some("header") => Ok(Auth::Header(field("name")?, field("value")?)),
        Some("query") => Ok(Auth::Query(field("name")?, field("value")?)),
        other => Err(NodeError::input(format!(
            "auth.type {other:?} is not one of bearer, basic, header, query"
        ))),
    }
}

/// How a stored credential authenticates a request, by its type.
fn auth_from_credential(c: &crate::secrets::Credential) -> Result<Auth, NodeError> {
    let field = |k: &str| -> Result<String, NodeError> {
        c.field(k).map(str::to_string).ok_or_else(|| {
            NodeError::input(format!(
                "credential {:?} has no `{k}`; set it again with `fuse creds set {} --type {}`",
                c.name, c.name, c.kind
            ))
        })
    };
    let optional = |k: &str| c.field(k).filter(|v| !v.is_empty());
    Ok(match c.kind.as_str() {
        "bearer" => Auth::Bearer(field("token")?),
        "openai" => Auth::Bearer(field("api_key")?),
        "basic" => Auth::Basic(field("username")?, field("password")?),
        "header" => Auth::Header(field("name")?, field("value")?),
        "api_key" => {
            let key = field("key")?;
            match optional("in").unwrap_or("header") {
                "query" => Auth::Query(optional("name").unwrap_or("api_key").to_string(), key),
                "header" => Auth::Header(optional("name").unwrap_or("X-API-Key").to_string(), key),
                other => {
                    return Err(NodeError::input(format!(
                        "credential {:?}: `in` is {other:?}; use header or query",
                        c.name
                    )));
                }
            }
        }
        other => {
            return Err(NodeError::input(format!(
                "credential {:?} is of type {other}, which http.request cannot send; \
                 use bearer, basic, header, api_key or openai",
                c.name
            )));
        }
    })
}

pub(super) fn node(http: Arc<Http>) -> Arc<dyn Node> {
    let spec = NodeSpec {
        type_name: "http.request".into(),
        description: "Sends an HTTP request; outputs {status, headers, body, url}. errors carry their status for retry.on.".into(),
        inputs: vec![
            InputSpec::required("url", "string", "http:// or https:// URL"),
            InputSpec::optional("method", "string", "GET (default), POST, PUT, PATCH, DELETE, HEAD, OPTIONS, …"),
            InputSpec::optional("headers", "object", "request headers"),
            InputSpec::optional("query", "object", "query parameters (arrays repeat the key)"),
            InputSpec::optional("json", "any", "JSON body"),
            InputSpec::optional("body", "string", "raw body (an object is sent as JSON)"),
            InputSpec::optional("form", "object", "urlencoded form body"),
            InputSpec::optional("multipart", "object", "multipart body: field -> text, or {file, filename, content_type}, or {content, filename, content_type}"),
            InputSpec::optional("auth", "object", "{type: bearer, token} | {type: basic, username, password} | {type: header, name, value} | {type: query, name, value}"),
            InputSpec::optional("credential", "string", "name of a stored credential: bearer, basic, header, api_key or openai (see `fuse creds`)"),
            InputSpec::optional("timeout", "duration", "per-request limit (default http.timeout)"),
            InputSpec::optional("follow_redirects", "boolean", "default true"),
            InputSpec::optional("max_redirects", "integer", "default http.max_redirects"),
            InputSpec::optional("max_response_bytes", "integer", "default http.max_response_bytes"),
            InputSpec::optional("response", "string", "auto (by content type, default), json, text or bytes (base64)"),
            InputSpec::optional("fail_on_status", "boolean", "a 4xx/5xx status fails the node (default true)"),
            InputSpec::optional("rate_limit", "number", "requests per second to this target (default from config)"),
            InputSpec::optional("enable_templating", "boolean", "the seed format's switch: true (fuse always renders {{ }} in inputs); false is refused by validate"),
        ],
        output: object_schema(&[("status", "integer"), ("headers", "object"), ("body", "any"), ("url", "string")]),
        handles: Handles::Default,
        trigger: false,
        free_inputs: false,
    };
    Arc::new(HttpNode { spec, http })
}

struct HttpNode {
    spec: NodeSpec,
    http: Arc<Http>,
}

impl Node for HttpNode {
    fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    fn run<'a>(&'a self, ctx: NodeCtx) -> crate::nodes::NodeFuture<'a> {
        boxed(request(self.http.clone(), ctx))
    }
}

async fn request(http: Arc<Http>, ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let method = match ctx.opt_str("method")? {
        None => reqwest::Method::GET,
        Some(name) => {
            let name = name.to_ascii_uppercase();
            reqwest::Method::from_bytes(name.as_bytes())
                .map_err(|_| NodeError::input(format!("method {name:?} is not an HTTP method")))?
        }
    };
    let (mut url, target) = http.parse(ctx.str("url")?)?;
    if let Some(query) = ctx.param("query").filter(|v| !v.is_null()) {
        let map = query
            .as_object()
            .ok_or_else(|| wrong_type("query", "an object", query))?;
        let mut pairs = url.query_pairs_mut();
        for (k, v) in map {
            match v {
                Value::Array(items) => {
                    for item in items {
                        pairs.append_pair(k, &scalar(|| format!("query.{k}"), item)?);
                    }
                }
                other => {
                    pairs.append_pair(k, &scalar(|| format!("query.{k}"), other)?);
                }
            }
        }
    }
    let auth = auth_of(&ctx)?;
    if let Auth::Query(name, value) = &auth {
        url.query_pairs_mut().append_pair(name, value);
    }
    let follow = ctx.bool_or("follow_redirects", true)?;
    let max_redirects = match ctx.param("max_redirects") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| wrong_type("max_redirects", "a whole number", v))?
            as usize,
        None => http.max_redirects,
    };
    let timeout = match ctx.opt_str("timeout")? {
        Some(t) => duration::parse(t).map_err(NodeError::input)?,
        None => http.timeout,
    };
    let limit = match ctx.param("max_response_bytes") {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| wrong_type("max_response_bytes", "a whole number", v))?,
        None => http.max_response_bytes,
    };
    let rate = match ctx.param("rate_limit") {
        Some(v) => Some(
            v.as_f64()
                .ok_or_else(|| wrong_type("rate_limit", "a number", v))?,
        ),
        None => None,
    };
    let mode = ctx.opt_str("response")?.unwrap_or("auto");
    if !matches!(mode, "auto" | "json" | "text" | "bytes") {
        return Err(NodeError::input(format!(
            "response {mode:?} is not one of auto, json, text, bytes"
        )));
    }

    let client = http.client(if follow { max_redirects } else { 0 })?;
    let mut req = client.request(method.clone(), url);
    if let Some(headers) = ctx.param("headers").filter(|v| !v.is_null()) {
        let map = headers
            .as_object()
            .ok_or_else(|| wrong_type("headers", "an object", headers))?;
        for (k, v) in map {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| NodeError::input(format!("header name {k:?} is not valid")))?;
            let value =
                HeaderValue::from_str(&scalar(|| format!("headers.{k}"), v)?).map_err(|_| {
                    NodeError::input(format!(
                        "header {k:?} has a value that is not valid in HTTP"
                    ))
                })?;
            req = req.header(name, value);
        }
    }
    req = match auth {
        Auth::Bearer(token) => req.bearer_auth(token),
        Auth::Basic(user, password) => req.basic_auth(user, Some(password)),
        Auth::Header(name, value) => req.header(name.as_str(), value.as_str()),
        Auth::Query(..) | Auth::None => req,
    };
    let given = |k: &&str| ctx.param(k).is_some_and(|v| !v.is_null());
    let mut bodies = ["json", "body", "form", "multipart"]
        .into_iter()
        .filter(given);
    let body_input = bodies.next();
    if body_input.is_some() && bodies.next().is_some() {
        let all: Vec<&str> = ["json", "body", "form", "multipart"]
            .into_iter()
            .filter(given)
            .collect();
        return Err(NodeError::input(format!(
            "give one body, not several ({}): json, body, form or multipart",
            all.join(", ")
        )));
    }
    req = match body_input {
        Some("json") => req.json(ctx.value("json")?),
        Some("body") => match ctx.value("body")? {
            Value::String(s) => req.body(s.clone()),
            other => req.json(other),
        },
        Some("form") => {
            let form = ctx.value("form")?;
            let map = form
                .as_object()
                .ok_or_else(|| wrong_type("form", "an object", form))?;
            let pairs: Vec<(String, String)> = map
                .iter()
                .map(|(k, v)| Ok((k.clone(), scalar(|| format!("form.{k}"), v)?)))
                .collect::<Result<_, NodeError>>()?;
            req.form(&pairs)
        }
        Some("multipart") => req.multipart(multipart(&ctx).await?),
        _ => req,
    };

    http.admit(&target, rate).await?;
    // One timer covers the whole exchange: connecting, redirects, headers, body.
    let exchange = async {
        let response = http.send(&ctx, &target, req).await?;
        let status = response.status();
        let headers = headers_json(response.headers());
        let wait = retry_after(response.headers());
        let kind = BodyKind::of(
            response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            mode,
        );
        let final_url = response.url().as_str().to_owned();
        let bytes = http.read_body(&ctx, &target, response, limit).await?;
        Ok::<_, NodeError>((status, headers, wait, kind, final_url, bytes))
    };
    let (status, headers, wait, kind, final_url, bytes) =
        match tokio::time::timeout(timeout, exchange).await {
            Ok(exchanged) => exchanged?,
            Err(_) => {
                http.failed(&ctx, &target);
                return Err(NodeError::new(
                    ErrorKind::Timeout,
                    format!(
                        "request to {target} timed out after {}; raise `timeout` if it is expected",
                        duration::human(timeout)
                    ),
                )
                .with_details(json!({"circuit": http.breakers.describe(&target)})));
            }
        };
    let body = kind.parse(&bytes)?;
    // Built in place: `json!` would serialize `headers` and `body` into copies.
    let mut output = Map::with_capacity(4);
    output.insert("status".into(), Value::from(status.as_u16()));
    output.insert("headers".into(), headers);
    output.insert("body".into(), body);
    output.insert("url".into(), Value::String(final_url.clone()));
    let output = Value::Object(output);
    if status.as_u16() >= 400 && ctx.bool_or("fail_on_status", true)? {
        let code = status.as_u16();
        let excerpt: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
        let mut err = NodeError::new(
            ErrorKind::Http { status: code },
            format!(
                "{method} {final_url} answered {code} {}{}",
                status.canonical_reason().unwrap_or(""),
                if excerpt.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", excerpt.trim())
                }
            ),
        )
        .retryable(code >= 500 || code == 429 || code == 408)
        .with_details(output);
        err.retry_after = wait;
        return Err(err);
    }
    Ok(NodeOutput::new(output))
}

async fn multipart(ctx: &NodeCtx) -> Result<reqwest::multipart::Form, NodeError> {
    use reqwest::multipart::{Form, Part};
    let spec = ctx.value("multipart")?;
    let map = spec
        .as_object()
        .ok_or_else(|| wrong_type("multipart", "an object", spec))?;
    let mut form = Form::new();
    for (name, field) in map {
        form = match field {
            Value::Object(o) => {
                let (bytes, default_name) =
                    if let Some(path) = o.get("file").and_then(Value::as_str) {
                        let path = if std::path::Path::new(path).is_absolute() {
                            std::path::PathBuf::from(path)
                        } else {
                            ctx.base_dir.join(path)
                        };
                        let bytes = tokio::fs::read(&path).await.map_err(|e| {
                            NodeError::io(format!(
                                "multipart.{name}: cannot read {}: {e}",
                                path.display()
                            ))
                        })?;
                        (
                            bytes,
                            path.file_name().map(|f| f.to_string_lossy().into_owned()),
                        )
                    } else if let Some(content) = o.get("content") {
                        (
                            scalar(|| format!("multipart.{name}.content"), content)?.into_bytes(),
                            None,
                        )
                    } else {
                        return Err(NodeError::input(format!(
                            "multipart.{name} needs `file` or `content`"
                        )));
                    };
                let mut part = Part::bytes(bytes);
                if let Some(f) = o
                    .get("filename")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or(default_name)
                {
                    part = part.file_name(f);
                }
                if let Some(ct) = o.get("content_type").and_then(Value::as_str) {
                    part = part.mime_str(ct).map_err(|_| {
                        NodeError::input(format!(
                            "multipart.{name}.content_type {ct:?} is not a MIME type"
                        ))
                    })?;
                }
                form.part(name.clone(), part)
            }
            other => form.text(name.clone(), scalar(|| format!("multipart.{name}"), other)?),
        };
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::BodyKind;
    use serde_json::json;

    #[test]
    fn bodies_decode_by_mode_and_content_type() {
        let cases = [
            (
                "application/json",
                "auto",
                &b"{\"a\":1}"[..],
                json!({"a": 1}),
            ),
            (
                "Application/Problem+JSON; charset=utf-8",
                "auto",
                b"[1]",
                json!([1]),
            ),
            ("application/json", "auto", b"not json", json!("not json")),
            ("text/plain", "auto", b"hi", json!("hi")),
            ("TEXT/html", "auto", b"<p>", json!("<p>")),
            ("application/xml", "auto", b"<a/>", json!("<a/>")),
            (
                "application/octet-stream",
                "auto",
                b"\x00\x01",
                json!("AAE="),
            ),
            ("", "auto", b"plain", json!("plain")),
            ("", "auto", b"\xff\xfe", json!("//4=")),
            ("text/plain", "auto", b"", json!(null)),
            ("application/json", "auto", b"", json!(null)),
            ("text/plain", "text", b"", json!("")),
            ("text/plain", "json", b"{\"b\":2}", json!({"b": 2})),
            ("application/json", "bytes", b"{}", json!("e30=")),
            ("application/json", "text", b"{}", json!("{}")),
        ];
        for (ct, mode, bytes, want) in cases {
            let got = BodyKind::of(ct, mode).parse(bytes).unwrap();
            assert_eq!(got, want, "{ct:?} {mode} {bytes:?}");
        }
        let err = BodyKind::of("text/plain", "json")
            .parse(b"nope")
            .unwrap_err();
        assert!(err.message.contains("not JSON"), "{}", err.message);
    }
}
