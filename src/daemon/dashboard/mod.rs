//! The dashboard: server-rendered pages (minijinja, embedded in the binary:
//! no Node.js at install, no network in the browser) behind a session cookie.
//!
//! - `GET /login?code=…`: a one-time sign-in link (`fuse start`, `fuse
//!   dashboard`) sets the session cookie and redirects to `/`; a used, expired
//!   or unknown code gets the sign-in page with the reason.
//! - `GET /login`, `POST /login` (`token=…`): sign in with an API token.
//! - `POST /logout`: ends the session.
//! - `GET /`: the overview (health, running and queued runs, recent failures
//!   and runs, next scheduled fires); without a session, a redirect to `/login`.
//!
//! Forms that change something (`POST`) must come from the dashboard's own
//! origin ([`same_origin`]), on top of the cookie's `SameSite=Strict`.

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::State;
use super::api::Reply;
use super::sessions::{self, Grant};

mod charts;
mod graph;

const PAGE: &str = include_str!("page.html");
const LIVE_JS: &str = include_str!("live.js");
/// Runs per page of the runs list.
const PAGE_SIZE: usize = 50;
/// Bytes of a node's input or output shown inline.
const SHOWN: usize = 16 * 1024;
/// Largest sign-in form accepted.
const MAX_FORM: usize = 4096;

/// Whether a path is one of the dashboard's.
pub(super) fn owns(path: &str) -> bool {
    matches!(
        path,
        "/" | "/login"
            | "/logout"
            | "/runs"
            | "/workflows"
            | "/nodes"
            | "/credentials"
            | "/triggers"
            | "/assets/live.js"
    ) || ["/runs/", "/workflows/"].iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
    }) || path
        .strip_prefix("/workflows/")
        .and_then(|rest| rest.strip_suffix("/diff"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// Answers a dashboard request.
pub(super) async fn handle(state: &Arc<State>, req: Request<hyper::body::Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/assets/live.js") => Response::builder()
            .header(
                hyper::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            )
            .header(hyper::header::CACHE_CONTROL, "no-cache")
            .header("x-content-type-options", "nosniff")
            .body(super::api::whole(Bytes::from_static(LIVE_JS.as_bytes())))
            .unwrap_or_default(),
        (Method::GET, page) if !matches!(page, "/login" | "/logout") => {
            // Every page but sign-in needs a session.
            if session(state, &req).is_none() {
                return redirect("/login", None);
            }
            match page {
                "/" => overview(state).await,
                "/runs" => {
                    let query =
                        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                            .into_owned()
                            .collect();
                    runs(state, query).await
                }
                "/nodes" => nodes(state, query_value(&req, "new")).await,
                "/credentials" => credentials(state).await,
                "/workflows" => workflows(state, "workflows").await,
                "/triggers" => workflows(state, "triggers").await,
                _ => match (
                    page.strip_prefix("/workflows/"),
                    page.strip_prefix("/runs/"),
                ) {
                    (Some(rest), _) if rest.ends_with("/diff") => {
                        let name = crate::api::decode(rest.trim_end_matches("/diff"));
                        let version = |key| query_value(&req, key).and_then(|v| v.parse().ok());
                        diff_page(state, name, version("from"), version("to")).await
                    }
                    (Some(name), _) => workflow_page(state, crate::api::decode(name)).await,
                    (_, Some(id)) => run_page(state, id.to_string()).await,
                    _ => super::api::not_found("no such page"),
                },
            }
        }
        (Method::GET, "/login") => {
            let code = query_value(&req, "code");
            match code {
                None if session(state, &req).is_some() => redirect("/", None),
                None => login_page(StatusCode::OK, None),
                Some(code) => match state.sessions.redeem(&code) {
                    Ok(Some(id)) => redirect("/", Some(sessions::set_cookie(&id))),
                    Ok(None) => login_page(
                        StatusCode::UNAUTHORIZED,
                        Some(
                            "This sign-in link was already used, has expired or is unknown. \
                             Run `fuse dashboard` for a new one.",
                        ),
                    ),
                    Err(e) => login_page(StatusCode::INTERNAL_SERVER_ERROR, Some(&e.to_string())),
                },
            }
        }
        (Method::POST, "/login") => {
            if !same_origin(&req) {
                return cross_origin();
            }
            let form = match Limited::new(req.into_body(), MAX_FORM).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    return login_page(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Some("The sign-in form is too large."),
                    );
                }
            };
            let token = url::form_urlencoded::parse(&form)
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let st = state.clone();
            let checked =
                tokio::task::spawn_blocking(move || st.tokens.check(&st, token.trim())).await;
            match checked {
                Ok(Some((name, scope))) => match state.sessions.start(Grant { name, scope }) {
                    Ok(id) => redirect("/", Some(sessions::set_cookie(&id))),
                    Err(e) => login_page(StatusCode::INTERNAL_SERVER_ERROR, Some(&e.to_string())),
                },
                Ok(None) => login_page(
                    StatusCode::UNAUTHORIZED,
                    Some("That token is not known to this daemon."),
                ),
                Err(e) => login_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(&format!("checking the token failed: {e}")),
                ),
            }
        }
        (Method::POST, "/logout") => {
            if !same_origin(&req) {
                return cross_origin();
            }
            if let Some(id) = sessions::cookie_of(req.headers()) {
                state.sessions.end(&id);
            }
            redirect("/login", Some(sessions::clear_cookie()))
        }
        _ if owns(&path) => super::api::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {path}", req.method()),
            Value::Null,
        ),
        _ => super::api::not_found("no such page"),
    }
}

/// One query parameter of a request.
fn query_value(req: &Request<hyper::body::Incoming>, key: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    })
}

/// The grant of the request's session cookie, if live.
pub(super) fn session(state: &State, req: &Request<hyper::body::Incoming>) -> Option<Grant> {
    sessions::cookie_of(req.headers()).and_then(|id| state.sessions.check(&id))
}

/// Whether the request's `Origin` is the address it was sent to (a page of
/// this daemon), as browsers send it with every `POST` and WebSocket.
pub(super) fn same_origin(req: &Request<hyper::body::Incoming>) -> bool {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    match (header(hyper::header::ORIGIN), header(hyper::header::HOST)) {
        (Some(origin), Some(host)) => origin == format!("http://{host}"),
        _ => false,
    }
}

/// 403 for a form or WebSocket from another site.
pub(super) fn cross_origin() -> Reply {
    super::api::error(
        StatusCode::FORBIDDEN,
        "cross_origin",
        "refused: a request signed in by the dashboard's cookie must come from the dashboard's own pages (its Origin header must match)",
        Value::Null,
    )
}

fn redirect(to: &str, cookie: Option<String>) -> Reply {
    let mut builder = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(hyper::header::LOCATION, to)
        .header(hyper::header::CACHE_CONTROL, "no-store");
    if let Some(cookie) = cookie {
        builder = builder.header(hyper::header::SET_COOKIE, cookie);
    }
    builder
        .body(super::api::whole(Bytes::new()))
        .unwrap_or_default()
}

fn html(status: StatusCode, body: String) -> Reply {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(hyper::header::CACHE_CONTROL, "no-store")
        .header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .body(super::api::whole(body))
        .unwrap_or_default()
}

fn render(status: StatusCode, context: Value) -> Reply {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    let rendered = env
        .template_from_str(PAGE)
        .and_then(|t| t.render(minijinja::value::Serde(&context)));
    match rendered {
        Ok(body) => html(status, body),
        Err(e) => super::api::internal(&format!("the page could not be rendered: {e}")),
    }
}

fn login_page(status: StatusCode, problem: Option<&str>) -> Reply {
    render(
        status,
        json!({"page": "login", "title": "Sign in", "problem": problem}),
    )
}

async fn overview(state: &Arc<State>) -> Reply {
    let health = super::api::health(state);
    let data = state
        .db(|db| {
            let failures = db.list_runs(&crate::store::history::RunFilter {
                status: Some("failed".into()),
                limit: 10,
                ..Default::default()
            })?;
            let runs = db.list_runs(&crate::store::history::RunFilter {
                limit: 20,
                ..Default::default()
            })?;
            let workflows = db.list_workflows()?.len();
            let hours = db.runs_per_hour(crate::engine::events::now_ms(), 24)?;
            let mut schedules = db.schedules()?;
            schedules.retain(|s| s.next_fire_at.is_some());
            schedules.sort_by(|a, b| a.next_fire_at.cmp(&b.next_fire_at));
            schedules.truncate(5);
            Ok((failures, runs, workflows, schedules, hours))
        })
        .await;
    let (failures, runs, workflows, schedules, hours) = match data {
        Ok(data) => data,
        Err(e) => return super::api::internal(&format!("the overview could not be read: {e}")),
    };
    let uptime = {
        let s = health.uptime_s;
        match s {
            0..60 => format!("{s}s"),
            60..3600 => format!("{}m", s / 60),
            _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
        }
    };
    render(
        StatusCode::OK,
        json!({"page": "overview", "title": "Overview", "health": health, "uptime": uptime,
               "failures": failures, "runs": runs, "workflows": workflows, "schedules": schedules,
               "chart": charts::per_hour(&hours)}),
    )
}

/// Time windows of the runs list's filter: (query value, label, ms).
const WINDOWS: &[(&str, &str, i64)] = &[
    ("1h", "last hour", 3_600_000),
    ("24h", "last 24 hours", 86_400_000),
    ("7d", "last 7 days", 7 * 86_400_000),
    ("30d", "last 30 days", 30 * 86_400_000),
];

/// What started runs, for the runs list's filter.
const TRIGGERS: &[&str] = &[
    "manual", "webhook", "cron", "interval", "file", "plugin", "retry", "resume", "call", "cli",
];

/// `/runs?workflow=&status=&trigger=&within=&before=|after=`: newest first,
/// [`PAGE_SIZE`] a page. Pages are bounded by a run (`before` the last one
/// shown, `after` the first), not counted, so page 2,000 costs what page 1
/// does.
async fn runs(state: &Arc<State>, query: std::collections::HashMap<String, String>) -> Reply {
    let given = |key: &str| query.get(key).filter(|v| !v.is_empty()).cloned();
    let (workflow, status, trigger, within) = (
        given("workflow"),
        given("status"),
        given("trigger"),
        given("within"),
    );
    let window = within
        .as_deref()
        .and_then(|w| WINDOWS.iter().find(|(key, ..)| *key == w));
    let since = window.map(|(_, _, ms)| crate::engine::events::now_ms() - ms);
    let (before, after) = (given("before"), given("after"));
    let filter = crate::store::history::RunFilter {
        workflow: workflow.clone(),
        status: status.clone(),
        trigger: trigger.clone(),
        since,
        before: before.clone(),
        after: after.clone(),
        // One more than a page: whether there is another one beyond.
        limit: PAGE_SIZE + 1,
        offset: 0,
        cursor_at: None,
    };
    let listed = state
        .db(move |db| Ok((db.list_runs(&filter), db.list_workflows()?)))
        .await;
    let (rows, workflows) = match listed {
        Ok(found) => found,
        Err(e) => return super::api::internal(&format!("the runs could not be read: {e}")),
    };
    let (mut rows, problem) = match rows {
        Ok(rows) => (rows, None),
        // A cursor run pruned since: say so, show the newest.
        Err(crate::Error::Setting(why)) => (Vec::new(), Some(why)),
        Err(e) => return super::api::internal(&format!("the runs could not be read: {e}")),
    };
    let beyond = rows.len() > PAGE_SIZE;
    let (newer, older) = if after.is_some() {
        if beyond {
            rows.remove(0);
        }
        (beyond, true)
    } else {
        rows.truncate(PAGE_SIZE);
        (before.is_some(), beyond)
    };
    let names: Vec<String> = workflows.into_iter().map(|w| w.name).collect();
    // Links to other pages keep the filters.
    let link = |cursor: Option<(&str, &str)>| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("workflow", &workflow),
            ("status", &status),
            ("trigger", &trigger),
            ("within", &within),
        ] {
            if let Some(v) = value {
                q.append_pair(key, v);
            }
        }
        if let Some((key, id)) = cursor {
            q.append_pair(key, id);
        }
        format!("/runs?{}", q.finish())
    };
    let first = rows.first().map(|r| r.id.clone());
    let last = rows.last().map(|r| r.id.clone());
    let windows: Vec<Value> = WINDOWS
        .iter()
        .map(|(key, label, _)| json!({"key": key, "label": label}))
        .collect();
    render(
        StatusCode::OK,
        json!({"page": "runs", "title": "Runs", "runs": rows, "workflows": names,
               "workflow": workflow, "status": status, "trigger": trigger, "within": within,
               "problem": problem,
               "newest": (newer || problem.is_some()).then(|| link(None)),
               "prev": newer.then(|| first.as_deref().map(|id| link(Some(("after", id))))).flatten(),
               "next": older.then(|| last.as_deref().map(|id| link(Some(("before", id))))).flatten(),
               "statuses": ["queued", "running", "succeeded", "failed", "cancelled", "interrupted"],
               "triggers": TRIGGERS, "windows": windows}),
    )
}

/// `/runs/{id}`: the run, its graph coloured by node state (live while it
/// runs), each node's attempts with input, output and error, and its log.
async fn run_page(state: &Arc<State>, id: String) -> Reply {
    let wanted = id.clone();
    let found = state
        .db(move |db| {
            let (detail, definition) = db.run_with_definition(&wanted)?;
            let logs = db.run_logs(&wanted)?;
            Ok((detail, definition, logs))
        })
        .await;
    let (detail, definition, logs) = match found {
        Ok(found) => found,
        Err(crate::Error::NotFound(_)) => {
            return render(
                StatusCode::NOT_FOUND,
                json!({"page": "missing", "title": "No such run",
                       "message": format!("There is no run {id:?}; the runs page lists them.")}),
            );
        }
        Err(e) => return super::api::internal(&format!("the run could not be read: {e}")),
    };
    let states = graph::states(&detail.nodes);
    let graph = definition
        .as_deref()
        .and_then(|d| crate::workflow::Workflow::from_json(d).ok())
        .map(|wf| graph::layout(&wf, &states));
    // Each node's log lines, shown with its first attempt.
    let mut node_logs: std::collections::HashMap<&str, Vec<String>> = Default::default();
    for line in &logs {
        if let Some(node) = &line.node_id {
            node_logs
                .entry(node.as_str())
                .or_default()
                .push(format!("{} {}", line.level, line.message));
        }
    }
    let attempts: Vec<Value> = detail
        .nodes
        .iter()
        .enumerate()
        .map(|(index, n)| {
            let log = node_logs.remove(n.node_id.as_str());
            let error = n.error.as_ref();
            json!({"index": index, "node": n.node_id, "type": n.node_type, "attempt": n.attempt,
                   "item": n.item, "status": n.status, "duration_ms": n.duration_ms,
                   "error": error.map(error_text),
                   "error_kind": error.and_then(|e| e.get("kind")).and_then(Value::as_str),
                   "error_details": error.and_then(|e| e.get("details")).filter(|d| !d.is_null())
                       .map(|d| shown(d, SHOWN)),
                   "log": log,
                   "input": n.input.as_ref().map(|v| part(v, SHOWN)),
                   "output": n.output.as_ref().map(|v| part(v, SHOWN))})
        })
        .collect();
    let steps: Vec<Value> = detail
        .steps
        .iter()
        .map(|s| {
            json!({"node": s.node_id, "seq": s.seq, "kind": s.kind, "name": s.name,
                   "status": s.status, "duration_ms": s.duration_ms, "tokens": s.tokens,
                   "input": s.input.as_ref().map(|v| part(v, SHOWN)),
                   "output": s.output.as_ref().map(|v| part(v, SHOWN)),
                   "error": s.error.as_ref().map(|v| part(v, SHOWN))})
        })
        .collect();
    let live = matches!(detail.summary.status.as_str(), "queued" | "running");
    let timeline = charts::timeline(&detail.nodes);
    render(
        StatusCode::OK,
        json!({"page": "run", "title": format!("Run {}", short(&detail.summary.id)),
               "run": detail.summary, "graph": graph, "attempts": attempts, "logs": logs, "steps": steps,
               "live": live, "output": shown(&detail.output, SHOWN), "timeline": timeline}),
    )
}

/// The distinctive end of a run id (v7 ids share their start).
fn short(id: &str) -> &str {
    let cut = id.len().saturating_sub(8);
    id.get(cut..).unwrap_or(id)
}

/// An error value as one line: its message, else its JSON.
fn error_text(error: &Value) -> String {
    error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| error.to_string())
}

/// `/workflows`: every deployed workflow with its triggers and state;
/// `/triggers`: the same triggers by kind (schedules with their next fires,
/// webhooks with their URLs, watched folders, plugin events).
async fn workflows(state: &Arc<State>, page: &str) -> Reply {
    let st = state.clone();
    let listed = tokio::task::spawn_blocking(move || super::api::workflow_summaries(&st)).await;
    let workflows = match listed {
        Ok(Ok(w)) => w,
        Ok(Err(e)) => {
            return super::api::internal(&format!("the workflows could not be read: {e}"));
        }
        Err(e) => return super::api::internal(&format!("the request's task failed: {e}")),
    };
    let title = if page == "triggers" {
        "Triggers"
    } else {
        "Workflows"
    };
    // The triggers page: each trigger with its workflow, by kind.
    let mut by_kind: std::collections::BTreeMap<&str, Vec<Value>> =
        ["schedule", "webhook", "file", "event"]
            .into_iter()
            .map(|k| (k, Vec::new()))
            .collect();
    for w in &workflows {
        for t in &w.triggers {
            let kind = match t {
                crate::api::types::Trigger::Cron(_) | crate::api::types::Trigger::Interval(_) => {
                    "schedule"
                }
                crate::api::types::Trigger::Webhook { .. } => "webhook",
                crate::api::types::Trigger::File { .. } => "file",
                crate::api::types::Trigger::Event { .. } => "event",
            };
            if let Some(list) = by_kind.get_mut(kind) {
                list.push(json!({"workflow": w.name, "enabled": w.enabled, "t": t}));
            }
        }
    }
    render(
        StatusCode::OK,
        json!({"page": page, "title": title, "workflows": workflows, "triggers": by_kind}),
    )
}

/// `/workflows/{name}`: its graph, triggers, a form to run it with its
/// params, enable / disable, its versions and recent runs.
async fn workflow_page(state: &Arc<State>, name: String) -> Reply {
    let st = state.clone();
    let wanted = name.clone();
    let found = tokio::task::spawn_blocking(move || -> crate::Result<_> {
        let current = st.db.current_workflow(&wanted)?;
        let versions = st.db.workflow_versions(&wanted)?.unwrap_or_default();
        let runs = st.db.list_runs(&crate::store::history::RunFilter {
            workflow: Some(wanted.clone()),
            limit: 20,
            ..Default::default()
        })?;
        let summary = super::api::workflow_summary(&st, &wanted)?;
        Ok((current, versions, runs, summary))
    })
    .await;
    let (current, versions, runs, summary) = match found {
        Ok(Ok((Some(current), versions, runs, summary))) => (current, versions, runs, summary),
        Ok(Ok((None, ..))) => {
            return render(
                StatusCode::NOT_FOUND,
                json!({"page": "missing", "title": "No such workflow",
                       "message": format!("No workflow {name:?} is deployed; the workflows page lists them.")}),
            );
        }
        Ok(Err(e)) => return super::api::internal(&format!("the workflow could not be read: {e}")),
        Err(e) => return super::api::internal(&format!("the request's task failed: {e}")),
    };
    let workflow = crate::workflow::Workflow::from_json(&current.definition).ok();
    let graph = workflow
        .as_ref()
        .map(|wf| graph::layout(wf, &Default::default()));
    let params = workflow.and_then(|wf| wf.params).unwrap_or_default();
    render(
        StatusCode::OK,
        json!({"page": "workflow", "title": name, "name": name, "version": current.version,
               "enabled": current.enabled, "source": current.source, "graph": graph,
               "params": params, "versions": versions, "runs": runs,
               "triggers": summary.map(|s| s.triggers).unwrap_or_default()}),
    )
}

/// `/workflows/{name}/diff?from=&to=`: what changed between two versions
/// (by default the one before the current, and the current), as a line diff
/// of their definitions with three lines of context.
async fn diff_page(state: &Arc<State>, name: String, from: Option<i64>, to: Option<i64>) -> Reply {
    let wanted = name.clone();
    let found = state
        .db(move |db| {
            let versions = db.workflow_versions(&wanted)?.unwrap_or_default();
            let current = versions.iter().find(|v| v.current).map(|v| v.version);
            let to = to.or(current);
            let from = from.or_else(|| {
                versions
                    .iter()
                    .map(|v| v.version)
                    .filter(|v| Some(*v) < to)
                    .max()
            });
            let read = |version: Option<i64>| match version {
                Some(v) => db.workflow_version(&wanted, v),
                None => Ok(None),
            };
            Ok((versions, read(from)?, read(to)?))
        })
        .await;
    let (versions, from, to) = match found {
        Ok(found) => found,
        Err(e) => return super::api::internal(&format!("the versions could not be read: {e}")),
    };
    if versions.is_empty() {
        return render(
            StatusCode::NOT_FOUND,
            json!({"page": "missing", "title": "No such workflow",
                   "message": format!("No workflow {name:?} is deployed; the workflows page lists them.")}),
        );
    }
    let (Some((from, from_text)), Some((to, to_text))) = (from, to) else {
        return render(
            StatusCode::NOT_FOUND,
            json!({"page": "missing", "title": "No such version",
                   "message": format!("{name} has versions {}; pick two of them on its page.",
                       versions.iter().map(|v| v.version.to_string()).collect::<Vec<_>>().join(", "))}),
        );
    };
    let pretty = |text: &str| {
        serde_json::from_str::<Value>(text)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| text.to_string())
    };
    let lines = crate::workflow::diff::lines(&pretty(&from_text), &pretty(&to_text));
    let shown: Vec<Value> = crate::workflow::diff::folded(&lines, 3)
        .into_iter()
        .map(|line| match line {
            Some((tag, text)) => json!({"tag": tag.to_string(), "text": text}),
            None => json!({"tag": "…", "text": ""}),
        })
        .collect();
    let changed = lines.iter().filter(|(tag, _)| *tag != ' ').count();
    render(
        StatusCode::OK,
        json!({"page": "diff", "title": format!("{name}: v{} → v{}", from.version, to.version),
               "name": name, "from": from, "to": to, "lines": shown, "changed": changed,
               "versions": versions}),
    )
}

/// `/nodes`: every node type (built in, packages, plugins) with its inputs,
/// then plugins and the packages that could not be loaded.
async fn nodes(state: &Arc<State>, fresh: Option<String>) -> Reply {
    let mut specs: Vec<crate::nodes::NodeSpec> = state
        .engine
        .registry()
        .iter()
        .map(|n| n.spec().clone())
        .collect();
    specs.sort_by(|a, b| a.type_name.cmp(&b.type_name));
    let st = state.clone();
    let catalog = tokio::task::spawn_blocking(move || {
        crate::packages::Catalog::discover(
            &st.home.node_packages_dir(),
            &st.home.plugin_packages_dir(),
        )
    })
    .await;
    let plugin_dir = state.home.plugin_packages_dir();
    let (plugins, problems) = match catalog {
        Ok(c) => (c.plugin_reports(&plugin_dir), c.problems),
        Err(e) => return super::api::internal(&format!("the request's task failed: {e}")),
    };
    render(
        StatusCode::OK,
        json!({"page": "nodes", "title": "Nodes", "nodes": specs, "plugins": plugins,
               "problems": problems, "languages": crate::packages::scaffold::LANGUAGES,
               "fresh": fresh}),
    )
}

/// `/credentials`: names, types, field names and dates; never a value.
async fn credentials(state: &Arc<State>) -> Reply {
    let st = state.clone();
    let listed = tokio::task::spawn_blocking(move || {
        let types = crate::secrets::types::known(&st.home);
        st.vault()
            .and_then(|vault| vault.list())
            .map(|list| (list, types))
    })
    .await;
    let (credentials, types) = match listed {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return super::api::internal(&format!("the credentials could not be listed: {e}"));
        }
        Err(e) => return super::api::internal(&format!("the request's task failed: {e}")),
    };
    render(
        StatusCode::OK,
        json!({"page": "credentials", "title": "Credentials", "credentials": credentials,
               "types": types}),
    )
}

/// A node's input or output for the page: `{text, cut, bytes}`; a cut one
/// is loaded whole on demand (the page's "Show all" asks the API).
fn part(value: &Value, limit: usize) -> Value {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    if text.len() <= limit {
        return json!({"text": text, "cut": false, "bytes": text.len()});
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    json!({"text": format!("{}\n…", &text[..cut]), "cut": true, "bytes": text.len()})
}

/// A JSON value pretty-printed for the page, cut at `limit` bytes (saying
/// how large it is).
fn shown(value: &Value, limit: usize) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    if text.len() <= limit {
        return text;
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n… ({} bytes in all; the whole value: GET /api/v1/executions/{{id}})",
        &text[..cut],
        text.len()
    )
}
