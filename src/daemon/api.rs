//! The HTTP API (`/api/v1`, bearer token) and webhooks (`/webhook/{path}`).
//! Errors are `{"error": {"code", "message", "details"}}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{MAX_BODY, State, manage};
use crate::api::{self, Miss, Op, types};
use crate::engine::RunRequest;
use crate::store::history::RunFilter;

pub(super) type Reply = Response<Body>;
/// A reply's body: whole (almost always) or streamed (server-sent events).
pub(super) type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A whole body.
pub(super) fn whole(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub(super) fn reply(status: StatusCode, body: &Value) -> Reply {
    json_reply(status, body.to_string().into_bytes())
}

fn json_reply(status: StatusCode, bytes: Vec<u8>) -> Reply {
    let mut r = Response::new(whole(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    details: Value,
) -> Reply {
    reply(
        status,
        &json!({"error": {"code": code, "message": message.into(), "details": details}}),
    )
}

pub(super) fn not_found(what: &str) -> Reply {
    error(StatusCode::NOT_FOUND, "not_found", what, Value::Null)
}

/// The token a request presents: `Authorization: Bearer …`, or `?token=`
/// on event streams (`…/events`, `…/stream`: browsers cannot set headers on
/// a WebSocket or an EventSource).
fn presented_token(req: &Request<hyper::body::Incoming>) -> Option<String> {
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let path = req.uri().path();
    let query = (path.ends_with("/events") || path.ends_with("/stream"))
        .then(|| parse_query(req.uri().query().unwrap_or("")).remove("token"))
        .flatten();
    header.or(query)
}

/// What a request signs in with: a bearer token, or the dashboard's session
/// cookie (from the dashboard's own pages).
enum Credential {
    Token(String),
    Session(super::sessions::Grant),
    None,
}

/// The request's credential: a presented token first; else a live session
/// cookie, refused (403) when the request comes from another site.
fn credential_of(
    state: &State,
    req: &Request<hyper::body::Incoming>,
) -> Result<Credential, Box<Reply>> {
    if let Some(token) = presented_token(req) {
        return Ok(Credential::Token(token));
    }
    let Some(grant) = super::dashboard::session(state, req) else {
        return Ok(Credential::None);
    };
    // A browser sends Origin with every POST, PUT, DELETE and WebSocket; a
    // plain GET from the dashboard's pages may come without one.
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    let origin_given = req.headers().contains_key(hyper::header::ORIGIN);
    if (reads && !origin_given) || super::dashboard::same_origin(req) {
        Ok(Credential::Session(grant))
    } else {
        Err(Box::new(super::dashboard::cross_origin()))
    }
}

/// 401 for a missing or unknown token, 429 over the token's rate limit, 404
/// and 405 (with `Allow`) from the route table, 403 for a token whose scope
/// is too small; else the operation and its path parameters.
/// Reads the store (the token table): call it off the async workers.
fn authorize(
    state: &State,
    credential: Credential,
    method: &Method,
    path: &str,
) -> Result<(Op, Vec<String>), Box<Reply>> {
    let full_path = format!("{}{path}", api::PREFIX);
    let found = match credential {
        Credential::Token(t) => state.tokens.check(state, &t),
        Credential::Session(grant) => Some((grant.name, grant.scope)),
        Credential::None => None,
    };
    let Some((name, scope)) = found else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token; send `Authorization: Bearer <token>` with the token from the home's api-token file (or one from `fuse tokens new`)",
            Value::Null,
        )));
    };
    if let Some(wait) = super::hooks::take(
        &state.api_buckets,
        &name,
        state.daemon_config.api_rate_limit,
    ) {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "token {name:?} may make {} API requests per second (daemon.api_rate_limit); try again shortly",
                state.daemon_config.api_rate_limit
            ),
            Value::Null,
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
        return Err(Box::new(r));
    }
    let (op, params) = match api::find(method.as_str(), path) {
        Ok(found) => found,
        Err(Miss::NotFound) => {
            return Err(Box::new(not_found(&format!(
                "no API route {}{path}; see {}/v1/openapi.json",
                api::PREFIX,
                api::PREFIX
            ))));
        }
        // A known path with another method: 405 naming the methods it has.
        Err(Miss::Method(allowed)) => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!(
                    "{method} is not allowed on {full_path}; it takes {}",
                    allowed.join(", ")
                ),
                Value::Null,
            );
            if let Ok(v) = hyper::header::HeaderValue::from_str(&allowed.join(", ")) {
                r.headers_mut().insert(hyper::header::ALLOW, v);
            }
            return Err(Box::new(r));
        }
    };
    let needed = op.route().scope;
    if scope < needed {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {name:?} has scope {}; {method} {full_path} needs {}",
                scope.as_str(),
                needed.as_str()
            ),
            json!({"scope": scope.as_str(), "needed": needed.as_str()}),
        )));
    }
    Ok((op, params))
}

/// The whole request body, refused over [`MAX_BODY`].
async fn body_bytes(req: Request<hyper::body::Incoming>) -> Result<hyper::body::Bytes, Box<Reply>> {
    Ok(Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is over {MAX_BODY} bytes or broken: {e}"),
                Value::Null,
            ))
        })?
        .to_bytes())
}

/// The request's headers as JSON, without `Authorization`.
fn request_headers(req: &Request<hyper::body::Incoming>) -> Map<String, Value> {
    req.headers()
        .iter()
        .filter(|(k, _)| *k != hyper::header::AUTHORIZATION)
        .map(|(k, v)| {
            (
                k.to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect()
}

/// The request body as JSON; `None` when there is none (or only whitespace).
pub(super) async fn body_json(
    req: Request<hyper::body::Incoming>,
) -> Result<Option<Value>, Box<Reply>> {
    let bytes = body_bytes(req).await?;
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is only whitespace, which is not JSON; send a JSON value, or no body at all",
            Value::Null,
        )));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
            Value::Null,
        ))
    })
}

pub(super) async fn handle(
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Reply, Infallible> {
    // CORS: only for origins listed in daemon.cors_origins (none by default).
    let origin = req
        .headers()
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| {
            state
                .daemon_config
                .cors_origins
                .iter()
                .any(|allowed| allowed == o)
        })
        .map(str::to_string);
    let api = req.uri().path().starts_with("/api/");
    if api && req.method() == Method::OPTIONS {
        return Ok(preflight(origin.as_deref()));
    }
    let mut reply = route(state, req).await;
    if api && let Some(origin) = origin {
        allow_origin(&mut reply, &origin);
    }
    Ok(reply)
}

/// The answer to a CORS preflight: allowed for a listed origin, 403 otherwise.
fn preflight(origin: Option<&str>) -> Reply {
    let Some(origin) = origin else {
        return error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not call the API from a browser; list it in daemon.cors_origins",
            Value::Null,
        );
    };
    let mut r = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(whole(Bytes::new()))
        .unwrap_or_default();
    allow_origin(&mut r, origin);
    let headers = r.headers_mut();
    headers.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
        hyper::header::HeaderValue::from_static("GET, POST, PUT, DELETE"),
    );
    headers.insert(
        hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
        hyper::header::HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(
        hyper::header::ACCESS_CONTROL_MAX_AGE,
        hyper::header::HeaderValue::from_static("600"),
    );
    r
}

fn allow_origin(reply: &mut Reply, origin: &str) {
    if let Ok(v) = hyper::header::HeaderValue::from_str(origin) {
        let headers = reply.headers_mut();
        headers.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        headers.insert(
            hyper::header::VARY,
            hyper::header::HeaderValue::from_static("Origin"),
        );
    }
}

async fn route(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] if req.method() == Method::GET || req.method() == Method::HEAD => {
            super::probes::healthz()
        }
        ["readyz"] if req.method() == Method::GET || req.method() == Method::HEAD => {
            super::probes::readyz(&state).await
        }
        ["metrics"] if req.method() == Method::GET => {
            if !state.daemon_config.metrics_public {
                let credential = match credential_of(&state, &req) {
                    Ok(c) => c,
                    Err(reply) => return *reply,
                };
                let st = state.clone();
                let allowed = tokio::task::spawn_blocking(move || match credential {
                    Credential::Token(t) => st.tokens.check(&st, &t).is_some(),
                    Credential::Session(_) => true,
                    Credential::None => false,
                })
                .await
                .unwrap_or(false);
                if !allowed {
                    return error(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "/metrics needs a token (`Authorization: Bearer <token>`, e.g. from `fuse tokens new prometheus --scope read`), or daemon.metrics_public = true for a local scraper",
                        Value::Null,
                    );
                }
            }
            let pool = match &state.queue {
                Some(pg) => match super::metrics::Pool::read(pg).await {
                    Ok(pool) => Some(pool),
                    Err(e) => {
                        tracing::warn!("/metrics: cannot read the worker pool ({e})");
                        None
                    }
                },
                None => None,
            };
            let text = state.metrics.render(&state, pool);
            Response::builder()
                .status(StatusCode::OK)
                .header(
                    hyper::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(whole(Bytes::from(text)))
                .unwrap_or_default()
        }
        ["webhook", rest @ ..] if !rest.is_empty() => {
            let hook = rest.join("/");
            let answer = webhook(&state, hook.clone(), req).await;
            let status = answer.status();
            state.metrics.webhook(status.as_u16());
            if status.is_client_error() || status.is_server_error() {
                tracing::warn!(
                    webhook = %hook,
                    status = status.as_u16(),
                    "webhook refused ({status})"
                );
            }
            answer
        }
        ["plugins", plugin, rest @ ..] => {
            let plugin = plugin.to_string();
            let route = format!("/{}", rest.join("/"));
            plugin_route(&state, plugin, route, req).await
        }
        ["api", ..] => {
            let below = path
                .strip_prefix(api::PREFIX)
                .unwrap_or_default()
                .to_string();
            let credential = match credential_of(&state, &req) {
                Ok(c) => c,
                Err(reply) => return *reply,
            };
            let (st, method) = (state.clone(), req.method().clone());
            let checked =
                tokio::task::spawn_blocking(move || authorize(&st, credential, &method, &below))
                    .await;
            match checked {
                Ok(Err(reply)) => *reply,
                Ok(Ok((op, params))) => {
                    let started = std::time::Instant::now();
                    let answer = dispatch(&state, req, op, &params).await;
                    state.metrics.api(
                        &format!("{op:?}"),
                        answer.status().as_u16(),
                        started.elapsed(),
                    );
                    answer
                }
                Err(e) => internal(&format!("the request's task failed: {e}")),
            }
        }
        _ if super::dashboard::owns(&path) => super::dashboard::handle(&state, req).await,
        _ => not_found(
            "no such route; the dashboard is at /, the API under /api/v1, webhooks under /webhook/{path}, probes at /healthz and /readyz",
        ),
    }
}

/// The daemon's health: version, uptime, running and queued runs.
pub(super) fn health(state: &State) -> types::Health {
    let active = state.active.load(Ordering::SeqCst);
    let running = state
        .daemon_config
        .max_runs
        .max(1)
        .saturating_sub(state.slots.available_permits())
        .min(active);
    types::Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: state.started.elapsed().as_secs(),
        active_runs: active,
        running,
        queued: active - running,
        started_at: state.started_at.clone(),
    }
}

/// One operation of the route table: a missing arm does not compile.
async fn dispatch(
    state: &Arc<State>,
    req: Request<hyper::body::Incoming>,
    op: Op,
    params: &[String],
) -> Reply {
    let param = |i: usize| params.get(i).map(String::as_str).unwrap_or_default();
    let query = parse_query(req.uri().query().unwrap_or(""));
    match op {
        Op::Health => ok(StatusCode::OK, &health(state)),
        Op::Version => ok(
            StatusCode::OK,
            &types::VersionInfo {
                version: env!("CARGO_PKG_VERSION").into(),
                commit: option_env!("FUSE_GIT_COMMIT").map(str::to_string),
                schema_version: crate::store::Store::latest_schema_version(),
            },
        ),
        Op::OpenApi => reply(StatusCode::OK, &openapi(state)),
        Op::Events => events(state, req, None).await,
        Op::ExecutionEvents => events(state, req, Some(param(0).to_string())).await,
        Op::ListWorkflows => blocking(state, list_workflows).await,
        Op::DeployWorkflow => {
            let source = query.get("source").map(std::path::PathBuf::from);
            match body_json(req).await {
                Ok(value) => {
                    let value = value.unwrap_or_default();
                    blocking(state, move |s| deploy(s, value, source)).await
                }
                Err(r) => *r,
            }
        }
        Op::PutWorkflow => match body_json(req).await {
            Ok(value) => {
                let mut value = value.unwrap_or_default();
                if let Some(map) = value.as_object_mut() {
                    map.insert("name".into(), json!(param(0)));
                }
                blocking(state, move |s| deploy(s, value, None)).await
            }
            Err(r) => *r,
        },
        Op::GetWorkflow => {
            let name = param(0).to_string();
            blocking(state, move |s| get_workflow(s, &name)).await
        }
        Op::DeleteWorkflow => {
            let name = param(0).to_string();
            blocking(state, move |s| manage::delete_workflow(s, &name)).await
        }
        Op::ListVersions => {
            let name = param(0).to_string();
            blocking(state, move |s| manage::versions(s, &name)).await
        }
        Op::GetVersion => {
            let (name, version) = (param(0).to_string(), param(1).to_string());
            blocking(state, move |s| manage::version(s, &name, &version)).await
        }
        Op::Rollback => match typed_body::<types::RollbackRequest>(req).await {
            Ok(body) => {
                let name = param(0).to_string();
                blocking(state, move |s| manage::rollback(s, &name, body.version)).await
            }
            Err(r) => *r,
        },
        Op::Enable | Op::Disable => {
            let name = param(0).to_string();
            let on = op == Op::Enable;
            blocking(state, move |s| manage::set_enabled(s, &name, on)).await
        }
        Op::RunWorkflow => {
            // No body is `{}`; a body is a JSON object of the workflow's params.
            let input = match body_json(req).await {
                Ok(None) => json!({}),
                Ok(Some(input @ Value::Object(_))) => input,
                Ok(Some(other)) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_input",
                        format!(
                            "the input must be a JSON object of the workflow's params, not {}",
                            crate::workflow::params::kind_of(&other)
                        ),
                        Value::Null,
                    );
                }
                Err(r) => return *r,
            };
            match start_run(state, param(0), input, "manual").await {
                Ok(id) => ok(
                    StatusCode::ACCEPTED,
                    &types::RunStarted {
                        run_id: id,
                        retry_of: None,
                    },
                ),
                Err(r) => *r,
            }
        }
        Op::ListExecutions => {
            let count = |key: &str, default: usize| -> Result<usize, Box<Reply>> {
                match query.get(key) {
                    None => Ok(default),
                    Some(text) => text.parse().map_err(|_| {
                        Box::new(error(
                            StatusCode::BAD_REQUEST,
                            "invalid_query",
                            format!("{key} must be a non-negative integer, not {text:?}"),
                            Value::Null,
                        ))
                    }),
                }
            };
            let (limit, offset) = match (count("limit", 50), count("offset", 0)) {
                // 0 asks for as many as one page holds.
                (Ok(limit), Ok(offset)) => {
                    (if limit == 0 { 1000 } else { limit.min(1000) }, offset)
                }
                (Err(r), _) | (_, Err(r)) => return *r,
            };
            let since = match query.get("since").map(|t| t.parse::<i64>()) {
                None => None,
                Some(Ok(ms)) if ms >= 0 => Some(ms),
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        "since must be a time in Unix milliseconds",
                        Value::Null,
                    );
                }
            };
            let filter = RunFilter {
                workflow: query.get("workflow").cloned(),
                status: query.get("status").cloned(),
                trigger: query.get("trigger").cloned(),
                since,
                before: query.get("before").cloned(),
                after: query.get("after").cloned(),
                limit,
                offset,
                cursor_at: None,
            };
            match state.db(move |db| db.list_runs(&filter)).await {
                Ok(executions) => ok(StatusCode::OK, &types::Executions { executions }),
                Err(e) => store_error(&e),
            }
        }
        Op::GetExecution => {
            let id = param(0).to_string();
            let wanted = id.clone();
            match state
                .db(move |db| db.get_run(&db.resolve_run(&wanted)?))
                .await
            {
                // A run on the queue too ([`crate::store::queued::WithQueue`]).
                Ok(detail) => ok(StatusCode::OK, &detail),
                Err(e) => store_error(&e),
            }
        }
        Op::ExecutionLogs => {
            let id = param(0).to_string();
            blocking(state, move |s| manage::logs(s, &id)).await
        }
        Op::CancelExecution => manage::cancel(state, param(0)).await,
        Op::RetryExecution => match optional_body::<types::RetryRequest>(req).await {
            Ok(body) => manage::retry(state, param(0), body.from_failed).await,
            Err(r) => *r,
        },
        Op::ListNodes => manage::nodes(state),
        Op::CreateNode => match typed_body::<types::NewNode>(req).await {
            Ok(body) => blocking(state, move |s| manage::create_node(s, body)).await,
            Err(r) => *r,
        },
        Op::ListPlugins => blocking(state, manage::plugins).await,
        Op::ListCredentials => blocking(state, manage::credentials).await,
        Op::CreateCredential => match typed_body::<types::NewCredential>(req).await {
            Ok(body) => blocking(state, move |s| manage::create_credential(s, body)).await,
            Err(r) => *r,
        },
        Op::CheckCredential => {
            let name = param(0).to_string();
            blocking(state, move |s| manage::check_credential(s, &name)).await
        }
        Op::DeleteCredential => {
            let name = param(0).to_string();
            blocking(state, move |s| manage::delete_credential(s, &name)).await
        }
        Op::ListSchedules => blocking(state, manage::schedules).await,
        Op::ListMemory => match state.db(|db| db.memory_sessions()).await {
            Ok(sessions) => ok(StatusCode::OK, &types::MemorySessions { sessions }),
            Err(e) => store_error(&e),
        },
        Op::GetMemory => {
            let session = param(0).to_string();
            let wanted = session.clone();
            match state
                .db(move |db| Ok((db.memory_messages(&wanted)?, db.memory_summary(&wanted)?)))
                .await
            {
                Ok((Some(messages), summary)) => ok(
                    StatusCode::OK,
                    &types::MemoryTranscript {
                        session,
                        summary,
                        messages,
                    },
                ),
                Ok((None, _)) => no_memory(&session),
                Err(e) => store_error(&e),
            }
        }
        Op::DeleteMemory => {
            let session = param(0).to_string();
            let wanted = session.clone();
            match state.db(move |db| db.memory_clear(&wanted)).await {
                Ok(0) => no_memory(&session),
                Ok(removed) => ok(StatusCode::OK, &types::MemoryCleared { session, removed }),
                Err(e) => store_error(&e),
            }
        }
        Op::SeedCreateWorkflow => match typed_body::<types::SeedWorkflowCreate>(req).await {
            Ok(body) => blocking(state, move |s| super::compat::create(s, body)).await,
            Err(r) => *r,
        },
        Op::SeedGetWorkflow => {
            let id = param(0).to_string();
            blocking(state, move |s| super::compat::get(s, &id)).await
        }
        Op::SeedPutWorkflow => match typed_body::<types::SeedWorkflowUpdate>(req).await {
            Ok(body) => {
                let id = param(0).to_string();
                blocking(state, move |s| super::compat::update(s, &id, body)).await
            }
            Err(r) => *r,
        },
        Op::SeedDeleteWorkflow => {
            let id = param(0).to_string();
            blocking(state, move |s| super::compat::delete(s, &id)).await
        }
        Op::SeedExecute => match optional_body::<types::SeedExecute>(req).await {
            Ok(body) => super::compat::execute(state, param(0), body).await,
            Err(r) => *r,
        },
        Op::SeedGetExecution => {
            let id = param(0).to_string();
            blocking(state, move |s| super::compat::execution(s, &id)).await
        }
        Op::SeedExecutionStream => super::compat::execution_stream(state, param(0)).await,
        Op::SeedWorkflowStream => seed_socket(state, req, param(0).to_string()).await,
        Op::CreateLoginLink => match optional_body::<types::Empty>(req).await {
            Ok(types::Empty {}) => login_link(state),
            Err(r) => *r,
        },
    }
}

/// A one-time dashboard sign-in link (its session gets the admin scope: only
/// an admin token can ask for one).
fn login_link(state: &State) -> Reply {
    let grant = super::sessions::Grant {
        name: "dashboard".into(),
        scope: crate::store::tokens::Scope::Admin,
    };
    let addr = state
        .addr
        .get()
        .map(ToString::to_string)
        .unwrap_or_else(|| "127.0.0.1:5678".into());
    match state.sessions.new_link(grant) {
        Ok(code) => ok(
            StatusCode::CREATED,
            &types::LoginLink {
                url: format!("http://{addr}/login?code={code}"),
                expires_in_s: state.sessions.link_ttl().as_secs(),
            },
        ),
        Err(e) => internal(&e.to_string()),
    }
}

/// Runs a blocking handler (database, vault, files) off the async workers.
fn no_memory(session: &str) -> Reply {
    not_found(&format!(
        "there is no memory session {session:?}; GET /api/v1/memory lists them"
    ))
}

async fn blocking(
    state: &Arc<State>,
    handler: impl FnOnce(&Arc<State>) -> Reply + Send + 'static,
) -> Reply {
    let state = state.clone();
    tokio::task::spawn_blocking(move || handler(&state))
        .await
        .unwrap_or_else(|e| internal(&format!("the request's task failed: {e}")))
}

/// The OpenAPI document with this daemon's address and node types.
fn openapi(state: &State) -> Value {
    let server = state
        .addr
        .get()
        .map(|a| format!("http://{a}"))
        .unwrap_or_else(|| "http://127.0.0.1:5678".into());
    api::document(
        &server,
        crate::workflow::schema::workflow_schema(&state.engine.registry()),
    )
}

/// A typed answer.
pub(super) fn ok<T: serde::Serialize>(status: StatusCode, body: &T) -> Reply {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_reply(status, bytes),
        Err(e) => internal(&format!("cannot encode the answer: {e}")),
    }
}

/// A typed request body: 400 saying which field is wrong.
async fn typed_body<T: serde::de::DeserializeOwned>(
    req: Request<hyper::body::Incoming>,
) -> Result<T, Box<Reply>> {
    fit(body_json(req).await?.unwrap_or_default())
}

/// A typed body that may be left out (no body is `T::default()`).
async fn optional_body<T: serde::de::DeserializeOwned + Default>(
    req: Request<hyper::body::Incoming>,
) -> Result<T, Box<Reply>> {
    match body_json(req).await? {
        None => Ok(T::default()),
        Some(value) => fit(value),
    }
}

/// A JSON object as the request type `T`, or 400 naming where it does not
/// fit. (Serde would also take a struct as an array of its fields.)
fn fit<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Box<Reply>> {
    if !value.is_object() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "the body must be a JSON object, not {}",
                crate::workflow::params::kind_of(&value)
            ),
            Value::Null,
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            if path == "." {
                format!("the body does not fit: {}", e.inner())
            } else {
                format!("the body does not fit at {path}: {}", e.inner())
            },
            json!({"path": path}),
        ))
    })
}

/// 503: the run could not be persisted, so it was not accepted; the caller
/// may try again (the daemon recovers by itself once the cause is gone).
pub(super) fn unavailable(why: &str) -> Reply {
    let mut reply = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        format!("the run was not accepted because it could not be recorded: {why}"),
        Value::Null,
    );
    reply.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("5"),
    );
    reply
}

/// A store error as an answer: a run or workflow that is not there (or an id
/// that names several) is a 404; anything else is the database failing, a
/// 500 that says so, never a "not found".
pub(super) fn store_error(e: &crate::Error) -> Reply {
    match e {
        crate::Error::NotFound(message) => not_found(message),
        crate::Error::Queue(message) => {
            unavailable(&format!("the run queue cannot be read: {message}"))
        }
        crate::Error::Setting(message) => error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            message.clone(),
            Value::Null,
        ),
        other => {
            tracing::error!("{other}");
            internal(&other.to_string())
        }
    }
}

pub(super) fn internal(message: &str) -> Reply {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        message,
        Value::Null,
    )
}

fn parse_query(q: &str) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The file a deployed workflow is planned as: the one it was deployed from
/// (relative paths resolve against its folder), else `<home>/workflows/NAME.json`.
pub(super) fn plan_path(state: &State, name: &str, source: Option<&str>) -> std::path::PathBuf {
    match source {
        Some(source) => std::path::PathBuf::from(source),
        None => super::workflow_path(&state.home, name),
    }
}

/// Deploys a workflow; `source` is the file it came from (`fuse run
/// --remote`, `?source=`), whose folder its relative paths resolve against.
pub(super) fn deploy(
    state: &Arc<State>,
    value: Value,
    source: Option<std::path::PathBuf>,
) -> Reply {
    match deployed(state, value, source) {
        Ok((deployed, created)) => ok(
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &deployed,
        ),
        Err(reply) => *reply,
    }
}

/// Checks and stores a workflow (a new version unless identical): what was
/// deployed and whether it is a new version; else the refusal.
pub(super) fn deployed(
    state: &Arc<State>,
    value: Value,
    source: Option<std::path::PathBuf>,
) -> Result<(types::Deployed, bool), Box<Reply>> {
    let text = value.to_string();
    if let Some(path) = &source
        && !path.is_absolute()
    {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_source",
            format!("source {} must be an absolute path", path.display()),
            Value::Null,
        )));
    }
    let Some(display) = value.get("name").and_then(Value::as_str) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_workflow",
            "a deployed workflow needs a \"name\"",
            Value::Null,
        )));
    };
    // The same rule as `fuse validate`: a display name may have spaces; the
    // id in URLs is derived from it.
    let name = match crate::workflow::workflow_id(display) {
        Ok(id) => id,
        Err(message) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "invalid_workflow",
                message,
                Value::Null,
            )));
        }
    };
    let path = source
        .clone()
        .unwrap_or_else(|| super::workflow_path(&state.home, &name));
    if let Err(e) = state.engine.load_str(&text, Some(&path)) {
        let details = match &e {
            crate::engine::LoadError::Invalid { problems, .. } => json!(problems),
            _ => Value::Null,
        };
        return Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_workflow",
            e.to_string(),
            details,
        )));
    }
    let result = state.db.store_version(&name, &text, source.as_deref());
    if result.is_ok() {
        // New or changed schedule triggers take effect at once.
        super::routes::changed(state);
    }
    match result {
        Ok((version, created)) => {
            if created {
                tracing::info!(workflow = %name, version, "deployed version {version}");
            }
            Ok((
                types::Deployed {
                    url: format!("{}{}", api::PREFIX, api::path_of(Op::GetWorkflow, &[&name])),
                    name,
                    display_name: display.to_string(),
                    version,
                    unchanged: !created,
                },
                created,
            ))
        }
        Err(e) => Err(Box::new(store_error(&e))),
    }
}

fn list_workflows(state: &Arc<State>) -> Reply {
    match workflow_summaries(state) {
        Ok(workflows) => ok(StatusCode::OK, &types::WorkflowList { workflows }),
        Err(e) => store_error(&e),
    }
}

/// Every deployed workflow with what starts it (webhook URLs, schedules and
/// their next fires, folders, plugin events) and its active runs. Reads the
/// store: call it off the async workers.
pub(super) fn workflow_summaries(state: &State) -> crate::Result<Vec<types::WorkflowSummary>> {
    summaries(state, None)
}

/// The summary of one workflow (its page), if deployed.
pub(super) fn workflow_summary(
    state: &State,
    name: &str,
) -> crate::Result<Option<types::WorkflowSummary>> {
    Ok(summaries(state, Some(name))?.pop())
}

/// Summaries of every workflow, or of the one named `only`.
fn summaries(state: &State, only: Option<&str>) -> crate::Result<Vec<types::WorkflowSummary>> {
    let mut rows = state.db.list_workflows()?;
    if let Some(name) = only {
        rows.retain(|r| r.name == name);
    }
    let schedules = state.db.schedules()?;
    // What starts each workflow: webhooks, schedules, folders, plugin events.
    let routes = super::routes::current(state);
    let base = state
        .addr
        .get()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    let workflows = rows
        .into_iter()
        .map(|row| {
            let name = row.name;
            let mut triggers = Vec::new();
            for (path, hook) in routes.hooks.iter().filter(|(_, h)| h.workflow == name) {
                triggers.push(types::Trigger::Webhook {
                    method: hook.method.clone(),
                    path: path.clone(),
                    url: format!("{base}/webhook/{path}"),
                });
            }
            for s in schedules.iter().filter(|s| s.workflow == name) {
                let schedule = types::ScheduleTrigger {
                    spec: s.spec.clone(),
                    timezone: s.timezone.clone(),
                    next_fire_at: s.next_fire_at.clone(),
                };
                triggers.push(if s.kind == "cron" {
                    types::Trigger::Cron(schedule)
                } else {
                    types::Trigger::Interval(schedule)
                });
            }
            for f in routes.files.iter().filter(|f| f.workflow == name) {
                triggers.push(types::Trigger::File {
                    path: f.dir.display().to_string(),
                    glob: f.glob.clone(),
                });
            }
            for (_, plugin, trigger) in routes.events.iter().filter(|(w, _, _)| *w == name) {
                triggers.push(types::Trigger::Event {
                    plugin: plugin.clone(),
                    trigger: trigger.clone(),
                });
            }
            let last_run = state
                .db
                .list_runs(&RunFilter {
                    workflow: Some(name.clone()),
                    limit: 1,
                    ..Default::default()
                })?
                .into_iter()
                .next();
            Ok(types::WorkflowSummary {
                active_runs: state.running_of(&name),
                last_run,
                name,
                enabled: row.enabled,
                version: row.version,
                updated_at: row.updated_at,
                triggers,
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    Ok(workflows)
}

fn get_workflow(state: &Arc<State>, name: &str) -> Reply {
    match state.db.current_workflow(name) {
        Ok(Some(c)) => ok(
            StatusCode::OK,
            &types::WorkflowDetail {
                name: name.to_string(),
                version: c.version,
                enabled: c.enabled,
                source: c.source,
                definition: serde_json::from_str(&c.definition)
                    .unwrap_or(Value::String(c.definition)),
            },
        ),
        Ok(None) => not_found(&format!(
            "no deployed workflow {name:?}; `fuse workflows list` shows them"
        )),
        Err(e) => store_error(&e),
    }
}

/// Starts a run of a deployed workflow in the background; returns its id.
pub(super) async fn start_run(
    state: &Arc<State>,
    name: &str,
    input: Value,
    trigger: &str,
) -> Result<String, Box<Reply>> {
    start_run_with(state, name, input, trigger, RunSpec::default()).await
}

/// Starts a run of `name` with the given definition (a retry runs what ran
/// before) or its current one.
/// How to start a run beyond its workflow, input and trigger.
#[derive(Default)]
pub(super) struct RunSpec {
    /// Run this definition (a retry runs what ran before) instead of the current one.
    pub definition: Option<String>,
    /// A webhook caller waiting for `webhook.respond`.
    pub responder: Option<crate::nodes::Responder>,
    /// The id of a run already recorded as queued (resubmitted after a restart).
    pub existing_id: Option<String>,
    pub retry_of: Option<String>,
    /// Outputs of nodes to reuse (resume from the last finished node).
    pub reuse: std::collections::HashMap<String, Value>,
    /// The trigger node that fired ([`crate::RunRequest::entry`]).
    pub entry: Option<String>,
}

pub(super) async fn start_run_with(
    state: &Arc<State>,
    name: &str,
    input: Value,
    trigger: &str,
    spec: RunSpec,
) -> Result<String, Box<Reply>> {
    // The current version of an enabled workflow is planned once (routes);
    // a given definition (a retry) is planned now.
    let cached = match &spec.definition {
        None => super::routes::current(state).plans.get(name).cloned(),
        Some(_) => None,
    };
    let plan = match (cached, spec.definition) {
        (Some(plan), _) => plan,
        (None, given) => {
            let wanted = name.to_string();
            let current = state.db(move |db| db.current_workflow(&wanted)).await;
            let (definition, source) = match current {
                Ok(Some(c)) if !c.enabled && given.is_none() => {
                    return Err(Box::new(error(
                        StatusCode::CONFLICT,
                        "disabled",
                        format!(
                            "workflow {name:?} is disabled; `fuse workflows enable {name}` enables it"
                        ),
                        Value::Null,
                    )));
                }
                Ok(Some(c)) => (given.unwrap_or(c.definition), c.source),
                Ok(None) => match given {
                    Some(d) => (d, None),
                    None => {
                        return Err(Box::new(not_found(&format!(
                            "no deployed workflow {name:?}; `fuse workflows list` shows them"
                        ))));
                    }
                },
                Err(e) => return Err(Box::new(store_error(&e))),
            };
            Arc::new(
                state
                    .engine
                    .load_str(
                        &definition,
                        Some(&plan_path(state, name, source.as_deref())),
                    )
                    .map_err(|e| {
                        error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "invalid_workflow",
                            e.to_string(),
                            Value::Null,
                        )
                    })?,
            )
        }
    };
    let input = match crate::engine::trigger::checked_input(
        &plan,
        input,
        trigger,
        spec.existing_id.is_some(),
    ) {
        Ok(input) => input,
        Err(problems) => {
            return Err(Box::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                format!(
                    "the input does not fit the params of {name}: {}",
                    problems.join("; ")
                ),
                json!({"problems": problems, "params": plan.params}),
            )));
        }
    };
    // With a PostgreSQL queue, new runs go to the workers (committed there
    // before the caller hears of them); a caller waiting for
    // `webhook.respond` is answered by a run here.
    if let Some(pg) = &state.queue
        && spec.existing_id.is_none()
        && spec.responder.is_none()
    {
        let run = crate::store::pg::NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            workflow: name.to_string(),
            definition: plan
                .definition
                .text()
                .map_err(|e| Box::new(internal(&e)))?
                .to_string(),
            input,
            trigger_kind: trigger.to_string(),
            entry: spec.entry.clone(),
            needs: crate::worker::needs_of_plan(&plan),
            tags: Vec::new(),
        };
        return match pg.enqueue(&run).await {
            Ok(()) => Ok(run.id),
            Err(e) => Err(Box::new(unavailable(&format!(
                "the run queue cannot take the run: {e}"
            )))),
        };
    }
    let run_id = match spec.existing_id {
        Some(id) => id,
        None => {
            let run_id = uuid::Uuid::now_v7().to_string();
            // The run is committed to the database before the caller hears
            // about it (sharing one commit with everything else in flight): a
            // daemon killed right after answering still has it.
            let recorded = state
                .recorder
                .accept(&run_id, name, trigger, &input, spec.retry_of.as_deref())
                .await;
            match recorded {
                Ok(Ok(())) => {}
                Ok(Err(why)) => return Err(Box::new(unavailable(&why))),
                Err(_) => {
                    return Err(Box::new(unavailable(
                        "the history writer has stopped (the daemon is shutting down)",
                    )));
                }
            }
            run_id
        }
    };
    let mut request = RunRequest::new(input, trigger);
    // History keeps the node outputs; the run need not hold them to its end.
    request.keep_outputs = false;
    request.run_id = Some(run_id.clone());
    request.responder = spec.responder;
    request.retry_of = spec.retry_of;
    request.reuse = spec.reuse;
    request.entry = spec.entry;
    request.cancel = state.runs_cancel.child_token();
    if let Ok(mut cancels) = state.cancels.lock() {
        cancels.insert(run_id.clone(), request.cancel.clone());
    }
    state.active.fetch_add(1, Ordering::SeqCst);
    state.workflow_started(name);
    let (engine, st, wf, id, trigger) = (
        state.engine.clone(),
        state.clone(),
        name.to_string(),
        run_id.clone(),
        trigger.to_string(),
    );
    tokio::spawn(async move {
        // At most daemon.max_runs run at once; the others stay queued (and a
        // cancel reaches them while they wait).
        let permit = tokio::select! {
            permit = st.slots.clone().acquire_owned() => permit.ok(),
            () = request.cancel.cancelled() => None,
        };
        if request.cancel.is_cancelled() && !st.runs_cancel.is_cancelled() {
            // Cancelled before it started (a stopping daemon leaves its queued
            // runs queued for the next start instead).
            if let Err(why) = cancel_queued(&st, &id).await {
                tracing::error!(run_id = %id, "run {id} was cancelled but could not be recorded as cancelled: {why}");
            }
        } else if permit.is_some() && !request.cancel.is_cancelled() {
            // `running` before any node starts: after a crash, `queued` means the
            // run never started and is safe to start again.
            match st.recorder.started(&id, &plan).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => tracing::error!(
                    run_id = %id,
                    "run {id} could not be recorded as started ({why}); it runs, and after a crash before it finishes it would run again"
                ),
                Err(_) => {
                    tracing::error!(run_id = %id, "run {id} could not be recorded as started: the history writer has stopped")
                }
            }
            let on_failure = plan.settings.on_failure.clone();
            let record = engine.run(plan, request).await;
            super::metrics::finished(&st.metrics, &wf, record.status, record.duration_ms);
            super::alerts::after_run(&st, &wf, on_failure.as_deref(), &trigger, &record).await;
        }
        if let Ok(mut cancels) = st.cancels.lock() {
            cancels.remove(&id);
        }
        st.workflow_finished(&wf);
        st.active.fetch_sub(1, Ordering::SeqCst);
    });
    Ok(run_id)
}

/// Records a run that never started as cancelled (nothing happens to a run
/// that has started: its own cancellation records it).
pub(super) async fn cancel_queued(state: &State, run_id: &str) -> Result<(), String> {
    match state.recorder.cancel_queued(run_id).await {
        Ok(done) => done,
        Err(_) => Err("the history writer has stopped".to_string()),
    }
}

/// `/plugins/<plugin>/<path>`: answered by the plugin's process.
async fn plugin_route(
    state: &Arc<State>,
    plugin: String,
    route: String,
    req: Request<hyper::body::Incoming>,
) -> Reply {
    let (st, token) = (state.clone(), presented_token(&req));
    let has_token = tokio::task::spawn_blocking(move || {
        token.is_some_and(|t| st.tokens.check(&st, &t).is_some())
    })
    .await
    .unwrap_or(false);
    let method = req.method().to_string();
    let query = json!(parse_query(req.uri().query().unwrap_or("")));
    let headers = request_headers(&req);
    let bytes = match body_bytes(req).await {
        Ok(bytes) => bytes,
        Err(reply) => return *reply,
    };
    let body = serde_json::from_slice::<Value>(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let request = json!({"method": method, "path": route, "query": query,
                         "headers": Value::Object(headers), "body": body});
    match super::plugins::call_route(state, &plugin, request, has_token).await {
        Ok(answer) => respond_with("", &answer),
        Err((status, message)) => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            match status {
                401 => "unauthorized",
                404 => "not_found",
                405 => "method_not_allowed",
                _ => "plugin_failed",
            },
            message,
            Value::Null,
        ),
    }
}

/// `ws://…/api/workflows/{id}/stream` (the seed format's protocol).
async fn seed_socket(
    state: &Arc<State>,
    mut req: Request<hyper::body::Incoming>,
    id: String,
) -> Reply {
    if let Some(refused) = not_a_websocket(&req) {
        return refused;
    }
    let wanted = id.clone();
    match state.db(move |db| db.current_workflow(&wanted)).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(&format!("no workflow {id:?}")),
        Err(e) => return store_error(&e),
    }
    let state = state.clone();
    upgrade(&mut req, move |socket| {
        tokio::spawn(super::compat::workflow_stream(state, id, socket));
    })
}

/// 400 for a request to a WebSocket route that is not an upgrade.
fn not_a_websocket(req: &Request<hyper::body::Incoming>) -> Option<Reply> {
    (!hyper_tungstenite::is_upgrade_request(req)).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "websocket_required",
            "connect with a WebSocket client (Upgrade: websocket)",
            Value::Null,
        )
    })
}

/// Answers a WebSocket upgrade and hands the socket to `serve`.
fn upgrade(
    req: &mut Request<hyper::body::Incoming>,
    serve: impl FnOnce(hyper_tungstenite::HyperWebsocket),
) -> Reply {
    match hyper_tungstenite::upgrade(req, None) {
        Ok((response, socket)) => {
            serve(socket);
            response.map(BodyExt::boxed)
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            "websocket_failed",
            e.to_string(),
            Value::Null,
        ),
    }
}

/// Upgrades to a WebSocket streaming run events (one run, or all).
async fn events(
    state: &Arc<State>,
    mut req: Request<hyper::body::Incoming>,
    run: Option<String>,
) -> Reply {
    if let Some(refused) = not_a_websocket(&req) {
        return refused;
    }
    // A finished run the daemon no longer keeps events for: its final state.
    let mut finished = None;
    if let Some(id) = &run {
        let wanted = id.clone();
        let found = state
            .db(move |db| {
                let full = db.resolve_run(&wanted)?;
                let detail = db.get_run(&full)?;
                Ok((full, detail))
            })
            .await;
        match found {
            Ok((full, d)) => {
                if !matches!(d.summary.status.as_str(), "running" | "queued") {
                    finished = Some(json!({"type": "run_finished", "run_id": full,
                        "status": d.summary.status, "error": d.summary.error,
                        "duration_ms": d.summary.duration_ms}));
                }
            }
            Err(e) => return store_error(&e),
        }
    }
    let bus = state.bus.clone();
    upgrade(&mut req, move |socket| {
        tokio::spawn(super::events::serve(bus, run, finished, socket));
    })
}

/// `/webhook/{path}`: the workflow whose `trigger.webhook` node has this path.
async fn webhook(state: &Arc<State>, hook: String, req: Request<hyper::body::Incoming>) -> Reply {
    let method = req.method().to_string();
    let headers = request_headers(&req);
    let query = parse_query(req.uri().query().unwrap_or(""));
    // Find the workflow first: unknown paths never read the body.
    let Some(hook_route) = super::routes::current(state).hooks.get(&hook).cloned() else {
        return not_found(&format!("no enabled workflow listens on /webhook/{hook}"));
    };
    let (name, want_method, inputs, responds) = (
        &hook_route.workflow,
        &hook_route.method,
        &hook_route.inputs,
        hook_route.responds,
    );
    if !want_method.eq_ignore_ascii_case(&method) {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("/webhook/{hook} takes {want_method}, not {method}"),
            Value::Null,
        );
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let signature = super::hooks::signature_header(inputs).and_then(|h| header(&h));
    let event_type = header("x-event-type");
    // Only a trigger that wants a token pays for checking one.
    if super::hooks::requires_token(inputs) {
        let bearer = header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_string()));
        let own = inputs
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string);
        let st = state.clone();
        let accepted = tokio::task::spawn_blocking(move || {
            super::hooks::token_accepted(&st, own.as_deref(), bearer.as_deref())
        })
        .await;
        match accepted {
            Ok(true) => {}
            Ok(false) => {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    format!(
                        "/webhook/{hook} needs a token: send Authorization: Bearer <an API token that may run workflows, or this webhook's token>"
                    ),
                    Value::Null,
                );
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
            Err(e) => return internal(&format!("checking the webhook's token failed: {e}")),
        }
    }
    let limit = super::hooks::max_payload(inputs);
    let too_large = |size: usize| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is {size} bytes; /webhook/{hook} takes at most {} KB",
                inputs.get("max_payload_size").cloned().unwrap_or_default()
            ),
            Value::Null,
        )
    };
    if let (Some(limit), Some(length)) = (
        limit,
        header("content-length").and_then(|v| v.parse::<usize>().ok()),
    ) && length > limit
    {
        return too_large(length);
    }
    let bytes = match body_bytes(req).await {
        Ok(bytes) => bytes,
        Err(reply) => return *reply,
    };
    if let Some(limit) = limit
        && bytes.len() > limit
    {
        return too_large(bytes.len());
    }
    if let Err(message) = super::hooks::verify(state, inputs, signature.as_deref(), &bytes) {
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            message,
            Value::Null,
        );
    }
    // Only signed (or unsigned-by-design) requests count against the rate
    // limit: otherwise anyone who reaches the port keeps the real sender at 429.
    if let Some((wait, limit)) = super::hooks::throttle(state, &hook, inputs) {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("/webhook/{hook} takes at most {limit}"),
            Value::Null,
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
        return r;
    }
    let body = serde_json::from_slice::<Value>(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    if let Some(message) = super::hooks::event_refused(inputs, event_type.as_deref(), &body) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "event_type_not_allowed",
            message,
            Value::Null,
        );
    }
    let input = crate::engine::trigger::webhook_input(&method, &hook, headers, query, body);
    let (responder, answer) = if responds {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Some(Arc::new(std::sync::Mutex::new(Some(tx)))), Some(rx))
    } else {
        (None, None)
    };
    let spec = RunSpec {
        responder,
        entry: Some(hook_route.node.clone()),
        ..RunSpec::default()
    };
    let id = match start_run_with(state, name, input, "webhook", spec).await {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let Some(answer) = answer else {
        return ok(
            StatusCode::ACCEPTED,
            &types::RunStarted {
                run_id: id,
                retry_of: None,
            },
        );
    };
    match tokio::time::timeout(RESPOND_WAIT, answer).await {
        Ok(Ok(answer)) => respond_with(&id, &answer),
        // The run ended without reaching webhook.respond (a skipped branch, a failure).
        Ok(Err(_)) => reply(
            StatusCode::ACCEPTED,
            &json!({"run_id": id, "responded": false}),
        ),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "no_response",
            format!(
                "the run did not reach webhook.respond within {}s; it goes on",
                RESPOND_WAIT.as_secs()
            ),
            json!({"run_id": id}),
        ),
    }
}

/// How long a webhook caller waits for `webhook.respond`.
const RESPOND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The HTTP answer `webhook.respond` asked for.
fn respond_with(run_id: &str, answer: &Value) -> Reply {
    let status = answer
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let (bytes, content_type) = match answer.get("body") {
        Some(Value::String(text)) => (text.clone().into_bytes(), "text/plain; charset=utf-8"),
        Some(Value::Null) | None => (Vec::new(), "text/plain; charset=utf-8"),
        Some(other) => (other.to_string().into_bytes(), "application/json"),
    };
    let mut r = Response::new(whole(bytes));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    if !run_id.is_empty()
        && let Ok(v) = hyper::header::HeaderValue::from_str(run_id)
    {
        headers.insert("x-fuse-run-id", v);
    }
    for (k, v) in answer
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let text = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(&text),
        ) {
            headers.insert(name, value);
        }
    }
    r
}
