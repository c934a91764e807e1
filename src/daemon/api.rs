//! The HTTP API (`/api/v1`, bearer token) and webhooks (`/webhook/{path}`).
//! Errors are `{"error": {"code", "message", "details"}}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{MAX_BODY, State};
use crate::engine::RunRequest;
use crate::store::history::RunFilter;
use crate::store::tokens::Scope;

pub(super) type Reply = Response<Full<Bytes>>;

pub(super) fn reply(status: StatusCode, body: &Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
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
/// on event streams (browsers cannot set headers on a WebSocket).
fn presented_token(req: &Request<hyper::body::Incoming>) -> Option<String> {
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let query = req
        .uri()
        .path()
        .ends_with("/events")
        .then(|| parse_query(req.uri().query().unwrap_or("")).remove("token"))
        .flatten();
    header.or(query)
}

/// Whether the request carries a valid token (any scope).
fn token_ok(state: &State, req: &Request<hyper::body::Incoming>) -> bool {
    presented_token(req).is_some_and(|t| state.tokens.check(state, &t).is_some())
}

/// What scope a route needs: reading is `read`; starting, cancelling and
/// retrying runs is `run`; everything else (deploys, deletes, credentials)
/// is `admin`.
pub(super) fn required_scope(method: &Method, parts: &[&str]) -> Scope {
    match (method, parts) {
        (&Method::GET, _) => Scope::Read,
        (&Method::POST, ["workflows", _, "run"])
        | (&Method::POST, ["executions", _, "cancel" | "retry"]) => Scope::Run,
        _ => Scope::Admin,
    }
}

/// 401 for a missing or unknown token, 403 for one whose scope is too small.
fn authorize(
    state: &State,
    req: &Request<hyper::body::Incoming>,
    parts: &[&str],
) -> Result<(), Box<Reply>> {
    let Some((name, scope)) = presented_token(req).and_then(|t| state.tokens.check(state, &t))
    else {
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
    // A known path with another method: 405 naming the methods it has.
    let allowed = super::manage::allowed_methods(parts);
    if !allowed.is_empty() && !allowed.contains(&req.method().as_str()) {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is not allowed on {}; it takes {}",
                req.method(),
                req.uri().path(),
                allowed.join(", ")
            ),
            Value::Null,
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&allowed.join(", ")) {
            r.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return Err(Box::new(r));
    }
    let needed = required_scope(req.method(), parts);
    if scope < needed {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {name:?} has scope {}; {} {} needs {}",
                scope.as_str(),
                req.method(),
                req.uri().path(),
                needed.as_str()
            ),
            json!({"scope": scope.as_str(), "needed": needed.as_str()}),
        )));
    }
    Ok(())
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

pub(super) async fn body_json(
    req: Request<hyper::body::Incoming>,
) -> Result<(Value, Map<String, Value>), Box<Reply>> {
    let bytes = body_bytes(req).await?;
    if bytes.is_empty() {
        return Ok((Value::Null, Map::new()));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
            Value::Null,
        ))
    })?;
    let map = value.as_object().cloned().unwrap_or_default();
    Ok((value, map))
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
    let api = req.uri().path().starts_with("/api/v1/");
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
        .body(Full::new(Bytes::new()))
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
        ["webhook", rest @ ..] if !rest.is_empty() => {
            let hook = rest.join("/");
            webhook(&state, hook, req).await
        }
        ["plugins", plugin, rest @ ..] => {
            let plugin = plugin.to_string();
            let route = format!("/{}", rest.join("/"));
            plugin_route(&state, plugin, route, req).await
        }
        ["api", "v1", rest @ ..] => match authorize(&state, &req, rest) {
            Err(reply) => *reply,
            Ok(()) => {
                let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                api(&state, req, &rest).await
            }
        },
        _ => {
            not_found("no such route; the API is under /api/v1 and webhooks under /webhook/{path}")
        }
    }
}

async fn api(state: &Arc<State>, req: Request<hyper::body::Incoming>, rest: &[String]) -> Reply {
    let method = req.method().clone();
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (method, parts.as_slice()) {
        (Method::GET, ["health"]) => {
            let active = state.active.load(Ordering::SeqCst);
            let running = state
                .daemon_config
                .max_runs
                .max(1)
                .saturating_sub(state.slots.available_permits())
                .min(active);
            reply(
                StatusCode::OK,
                &json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"),
                        "uptime_s": state.started.elapsed().as_secs(),
                        "active_runs": active, "running": running,
                        "queued": active - running,
                        "started_at": state.started_at}),
            )
        }
        (Method::GET, ["version"]) => reply(
            StatusCode::OK,
            &json!({"version": env!("CARGO_PKG_VERSION"), "commit": option_env!("FUSE_GIT_COMMIT"),
                    "schema_version": crate::store::Store::latest_schema_version()}),
        ),
        (Method::GET, ["events"]) => events(state, req, None),
        (Method::GET, ["executions", id, "events"]) => {
            let id = id.to_string();
            events(state, req, Some(id))
        }
        (Method::GET, ["workflows"]) => list_workflows(state),
        (Method::POST, ["workflows"]) => {
            let source = parse_query(req.uri().query().unwrap_or(""))
                .remove("source")
                .map(std::path::PathBuf::from);
            match body_json(req).await {
                Ok((value, _)) => deploy(state, value, source),
                Err(r) => *r,
            }
        }
        (Method::GET, ["workflows", name]) => get_workflow(state, name),
        (Method::POST, ["workflows", name, "run"]) => match body_json(req).await {
            Ok((input, _)) => {
                let input = if input.is_null() { json!({}) } else { input };
                match start_run(state, name, input, "manual").await {
                    Ok(id) => reply(StatusCode::ACCEPTED, &json!({"run_id": id})),
                    Err(r) => *r,
                }
            }
            Err(r) => *r,
        },
        (Method::GET, ["executions"]) => {
            let query = parse_query(req.uri().query().unwrap_or(""));
            let filter = RunFilter {
                workflow: query.get("workflow").cloned(),
                status: query.get("status").cloned(),
                limit: query
                    .get("limit")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(50),
                offset: query
                    .get("offset")
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(0),
            };
            let store = match state.store.lock() {
                Ok(s) => s,
                Err(_) => return internal("the store is unusable"),
            };
            match store.list_runs(&filter) {
                Ok(runs) => reply(StatusCode::OK, &json!({"executions": runs})),
                Err(e) => internal(&e.to_string()),
            }
        }
        (Method::GET, ["executions", id]) => {
            let store = match state.store.lock() {
                Ok(s) => s,
                Err(_) => return internal("the store is unusable"),
            };
            let detail = store
                .resolve_run_id(id)
                .and_then(|full| store.get_run(&full, &state.home.blobs_dir()));
            match detail {
                Ok(d) => reply(StatusCode::OK, &serde_json::to_value(d).unwrap_or_default()),
                Err(e) => store_error(&e),
            }
        }
        (m, p) => {
            let p: Vec<&str> = p.to_vec();
            // A known path with another method was answered 405 by `authorize`.
            match super::manage::route(state, &m, &p, req).await {
                Some(r) => r,
                None => not_found("no such API route; see /api/v1/openapi.json"),
            }
        }
    }
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
        crate::Error::Setting(message) => not_found(message),
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

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Stores a deployed workflow (see [`crate::store::Store::store_version`]).
pub(super) fn store_version(
    state: &State,
    name: &str,
    text: &str,
    source_path: Option<&std::path::Path>,
) -> crate::Result<(i64, bool)> {
    let Ok(store) = state.store.lock() else {
        return Err(crate::Error::Setting("the store is unusable".into()));
    };
    store.store_version(name, text, source_path)
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
    let text = value.to_string();
    if let Some(path) = &source
        && !path.is_absolute()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_source",
            format!("source {} must be an absolute path", path.display()),
            Value::Null,
        );
    }
    let Some(display) = value.get("name").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_workflow",
            "a deployed workflow needs a \"name\"",
            Value::Null,
        );
    };
    // The same rule as `fuse validate`: a display name may have spaces; the
    // id in URLs is derived from it.
    let name = match crate::workflow::workflow_id(display) {
        Ok(id) => id,
        Err(message) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_workflow",
                message,
                Value::Null,
            );
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
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_workflow",
            e.to_string(),
            details,
        );
    }
    let result = store_version(state, &name, &text, source.as_deref());
    if result.is_ok() {
        // New or changed schedule triggers take effect at once.
        super::routes::changed(state);
    }
    match result {
        Ok((version, created)) => reply(
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &json!({"name": name, "display_name": display, "version": version,
                    "unchanged": !created, "url": format!("/api/v1/workflows/{name}")}),
        ),
        Err(e) => internal(&format!("cannot store the workflow: {e}")),
    }
}

fn list_workflows(state: &Arc<State>) -> Reply {
    let Ok(store) = state.store.lock() else {
        return internal("the store is unusable");
    };
    let rows = store.list_workflows().map(|rows| {
        rows.iter()
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .collect::<Vec<Value>>()
    });
    let schedules = super::scheduler::upcoming(&store);
    drop(store);
    let (mut rows, schedules) = match (rows, schedules) {
        (Ok(rows), Ok(schedules)) => (rows, schedules),
        (Err(e), _) | (_, Err(e)) => return store_error(&e),
    };
    // What starts each workflow: webhooks, schedules, folders, plugin events.
    let routes = super::routes::current(state);
    let base = state
        .addr
        .get()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    for row in &mut rows {
        let name = row["name"].as_str().unwrap_or_default().to_string();
        let mut triggers = Vec::new();
        for (path, hook) in routes.hooks.iter().filter(|(_, h)| h.workflow == name) {
            triggers.push(
                json!({"kind": "webhook", "method": hook.method, "path": path,
                                 "url": format!("{base}/webhook/{path}")}),
            );
        }
        for s in schedules.iter().filter(|s| s["workflow"] == name) {
            triggers.push(
                json!({"kind": s["kind"], "spec": s["spec"], "timezone": s["timezone"],
                                 "next_fire_at": s["next_fire_at"]}),
            );
        }
        for f in routes.files.iter().filter(|f| f.workflow == name) {
            triggers.push(json!({"kind": "file", "path": f.dir, "glob": f.glob}));
        }
        for (_, plugin, trigger) in routes.events.iter().filter(|(w, _, _)| *w == name) {
            triggers.push(json!({"kind": "event", "plugin": plugin, "trigger": trigger}));
        }
        row["triggers"] = Value::Array(triggers);
        row["active_runs"] = json!(state.running_of(&name));
    }
    reply(StatusCode::OK, &json!({"workflows": rows}))
}

/// The current definition of a deployed, enabled workflow.
/// The current version of a deployed workflow: (definition, version, enabled, source file).
type Current = (String, i64, bool, Option<String>);

fn current(state: &State, name: &str) -> Result<Option<Current>, String> {
    let store = state
        .store
        .lock()
        .map_err(|_| "the store is unusable".to_string())?;
    store
        .current_workflow(name)
        .map(|c| c.map(|c| (c.definition, c.version, c.enabled, c.source)))
        .map_err(|e| e.to_string())
}

fn get_workflow(state: &Arc<State>, name: &str) -> Reply {
    match current(state, name) {
        Ok(Some((definition, version, enabled, source))) => reply(
            StatusCode::OK,
            &json!({"name": name, "version": version, "enabled": enabled, "source": source,
                    "definition": serde_json::from_str::<Value>(&definition).unwrap_or(Value::Null)}),
        ),
        Ok(None) => not_found(&format!("no deployed workflow {name:?}")),
        Err(e) => internal(&e),
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
            let (definition, source) = match current(state, name) {
                Ok(Some((_, _, false, _))) if given.is_none() => {
                    return Err(Box::new(error(
                        StatusCode::CONFLICT,
                        "disabled",
                        format!("workflow {name:?} is disabled"),
                        Value::Null,
                    )));
                }
                Ok(Some((d, _, _, source))) => (given.unwrap_or(d), source),
                Ok(None) => match given {
                    Some(d) => (d, None),
                    None => {
                        return Err(Box::new(not_found(&format!(
                            "no deployed workflow {name:?}"
                        ))));
                    }
                },
                Err(e) => return Err(Box::new(internal(&e))),
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
    let input = match checked_input(&plan, input, trigger, spec.existing_id.is_some()) {
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
    let run_id = match spec.existing_id {
        Some(id) => id,
        None => {
            let run_id = uuid::Uuid::now_v7().to_string();
            // The run is committed to the database before the caller hears
            // about it (sharing one commit with everything else in flight): a
            // daemon killed right after answering still has it.
            use rusqlite::types::Value as Sql;
            let recorded = state
                .recorder
                .exec(
                    "INSERT INTO executions (id, workflow_name, status, trigger_kind, input, retry_of, created_at)
                     VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6)",
                    vec![
                        Sql::Text(run_id.clone()),
                        Sql::Text(name.to_string()),
                        Sql::Text(trigger.to_string()),
                        Sql::Text(input.to_string()),
                        spec.retry_of.clone().map(Sql::Text).unwrap_or(Sql::Null),
                        Sql::Integer(now_ms()),
                    ],
                )
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
    request.run_id = Some(run_id.clone());
    request.responder = spec.responder;
    request.retry_of = spec.retry_of;
    request.reuse = spec.reuse;
    request.cancel = state.runs_cancel.child_token();
    if let Ok(mut cancels) = state.cancels.lock() {
        cancels.insert(run_id.clone(), request.cancel.clone());
    }
    state.active.fetch_add(1, Ordering::SeqCst);
    state.workflow_started(name);
    let (engine, st, wf, id) = (
        state.engine.clone(),
        state.clone(),
        name.to_string(),
        run_id.clone(),
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
            let _ = st
                .recorder
                .exec(
                    "UPDATE executions SET status = 'running', started_at = ?2 WHERE id = ?1 AND status = 'queued'",
                    vec![
                        rusqlite::types::Value::Text(id.clone()),
                        rusqlite::types::Value::Integer(now_ms()),
                    ],
                )
                .await;
            let _ = engine.run(plan, request).await;
        }
        if let Ok(mut cancels) = st.cancels.lock() {
            cancels.remove(&id);
        }
        st.workflow_finished(&wf);
        st.active.fetch_sub(1, Ordering::SeqCst);
    });
    Ok(run_id)
}

/// A run's input checked against the workflow's params: strictly for runs a
/// caller asked for (the API; a webhook's body), defaults only for inputs a
/// trigger made (schedules, files, events); as it is for runs started before
/// (retries, resumes, recovered runs).
fn checked_input(
    plan: &crate::Plan,
    input: Value,
    trigger: &str,
    recovered: bool,
) -> Result<Value, Vec<String>> {
    use crate::workflow::params::Check;
    if recovered || matches!(trigger, "retry" | "resume") {
        return Ok(input);
    }
    match trigger {
        "manual" => plan.check_input(input, Check::Strict),
        "webhook" => {
            let Value::Object(mut request) = input else {
                return Ok(input);
            };
            let body = request.remove("body").unwrap_or(Value::Null);
            let body = plan.check_input(body, Check::Strict).map_err(|p| {
                p.into_iter()
                    .map(|e| format!("body: {e}"))
                    .collect::<Vec<_>>()
            })?;
            request.insert("body".into(), body);
            Ok(Value::Object(request))
        }
        _ => plan.check_input(input, Check::Defaults),
    }
}

/// Records a run that never started as cancelled (nothing happens to a run
/// that has started: its own cancellation records it).
pub(super) async fn cancel_queued(state: &State, run_id: &str) -> Result<(), String> {
    use rusqlite::types::Value as Sql;
    match state
        .recorder
        .exec(
            "UPDATE executions SET status = 'cancelled', error = 'cancelled before it started',
                 finished_at = ?2
             WHERE id = ?1 AND status = 'queued'",
            vec![Sql::Text(run_id.to_string()), Sql::Integer(now_ms())],
        )
        .await
    {
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
    let has_token = token_ok(state, &req);
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

/// Upgrades to a WebSocket streaming run events (one run, or all).
fn events(
    state: &Arc<State>,
    mut req: Request<hyper::body::Incoming>,
    run: Option<String>,
) -> Reply {
    if !hyper_tungstenite::is_upgrade_request(&req) {
        return error(
            StatusCode::BAD_REQUEST,
            "websocket_required",
            "connect with a WebSocket client (Upgrade: websocket)",
            Value::Null,
        );
    }
    // A finished run the daemon no longer keeps events for: its final state.
    let mut finished = None;
    if let Some(id) = &run {
        let Ok(store) = state.store.lock() else {
            return internal("the store is unusable");
        };
        match store.resolve_run_id(id) {
            Ok(full) => {
                if let Ok(d) = store.get_run(&full, &state.home.blobs_dir())
                    && !matches!(d.summary.status.as_str(), "running" | "queued")
                {
                    finished = Some(json!({"type": "run_finished", "run_id": full,
                        "status": d.summary.status, "error": d.summary.error,
                        "duration_ms": d.summary.duration_ms}));
                }
            }
            Err(e) => {
                return store_error(&e);
            }
        }
    }
    match hyper_tungstenite::upgrade(&mut req, None) {
        Ok((response, socket)) => {
            tokio::spawn(super::events::serve(
                state.bus.clone(),
                run,
                finished,
                socket,
            ));
            response
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            "websocket_failed",
            e.to_string(),
            Value::Null,
        ),
    }
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
        hook_route.workflow,
        hook_route.method,
        hook_route.inputs,
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
    let signature = super::hooks::signature_header(&inputs)
        .and_then(|h| req.headers().get(h.as_str()))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = match body_bytes(req).await {
        Ok(bytes) => bytes,
        Err(reply) => return *reply,
    };
    if let Err(message) = super::hooks::verify(state, &inputs, signature.as_deref(), &bytes) {
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            message,
            Value::Null,
        );
    }
    // Only signed (or unsigned-by-design) requests count against the rate
    // limit: otherwise anyone who reaches the port keeps the real sender at 429.
    if let Some(rate) = inputs.get("rate_limit").and_then(Value::as_f64)
        && let Some(wait) = super::hooks::throttle(state, &hook, rate)
    {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("/webhook/{hook} takes at most {rate} requests per second"),
            Value::Null,
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
        return r;
    }
    let body = serde_json::from_slice::<Value>(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let input =
        json!({"method": method, "path": hook, "headers": headers, "query": query, "body": body});
    let (responder, answer) = if responds {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Some(Arc::new(std::sync::Mutex::new(Some(tx)))), Some(rx))
    } else {
        (None, None)
    };
    let spec = RunSpec {
        responder,
        ..RunSpec::default()
    };
    let id = match start_run_with(state, &name, input, "webhook", spec).await {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let Some(answer) = answer else {
        return reply(StatusCode::ACCEPTED, &json!({"run_id": id}));
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
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
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
