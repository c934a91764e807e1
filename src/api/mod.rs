//! The daemon's HTTP API as one typed contract: every operation ([`Op`]) with
//! its method, path, scope, query parameters, body and answers ([`Route`]),
//! and the request and response types ([`types`]).
//!
//! This table is the only list of routes: the daemon dispatches on it (one
//! exhaustive `match` over [`Op`], so a route without a handler does not
//! compile), answers 404 and 405 (with `Allow`) and checks scopes from it, the
//! OpenAPI document is generated from it ([`openapi`]), and the CLI's client
//! builds its requests from it.

mod openapi;
pub mod types;

pub use openapi::document;

use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::store::tokens::Scope;

/// The prefix of every route path: native routes are under `/api/v1`, the
/// seed format's compatibility routes directly under `/api`.
pub const PREFIX: &str = "/api";

macro_rules! ops {
    ($($(#[$doc:meta])* $op:ident),* $(,)?) => {
        /// Every operation of the API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op { $($(#[$doc])* $op),* }

        impl Op {
            /// Every operation, in the order of the document.
            pub const ALL: &'static [Op] = &[$(Op::$op),*];
        }
    };
}

ops! {
    Health, Version, OpenApi,
    ListWorkflows, DeployWorkflow, GetWorkflow, PutWorkflow, DeleteWorkflow,
    ListVersions, GetVersion, Rollback, Enable, Disable, RunWorkflow,
    ListExecutions, GetExecution, ExecutionLogs, ExecutionEvents, Events,
    CancelExecution, RetryExecution,
    ListNodes, CreateNode, ListPlugins, ListCredentials, CreateCredential, CheckCredential, DeleteCredential,
    ListSchedules, CreateLoginLink,
    ListMemory, GetMemory, DeleteMemory,
    /// The seed format's REST shapes (docs/seeds.md), under `/api`.
    SeedCreateWorkflow, SeedGetWorkflow, SeedPutWorkflow, SeedDeleteWorkflow,
    SeedExecute, SeedGetExecution, SeedExecutionStream, SeedWorkflowStream,
}

/// A schema of a type, made by the document's generator.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// How an operation answers success.
#[derive(Clone, Copy)]
pub enum Answer {
    Json(u16, SchemaFn),
    /// A WebSocket upgrade (101).
    WebSocket,
    /// Server-sent events (200, `text/event-stream`).
    EventStream,
}

/// A query parameter.
#[derive(Clone, Copy)]
pub struct Query {
    pub name: &'static str,
    pub kind: QueryKind,
    pub description: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Text,
    /// A non-negative integer.
    Count,
}

/// One route of the API.
#[derive(Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// Below [`PREFIX`] (`/v1/…` for the native API), with `{param}` segments.
    pub path: &'static str,
    pub summary: &'static str,
    /// The least token scope that may call it.
    pub scope: Scope,
    pub query: &'static [Query],
    /// The JSON body it takes, if any.
    pub body: Option<SchemaFn>,
    /// Whether a request must have that body (a run's input may be left out).
    pub body_required: bool,
    pub answer: Answer,
    /// Error statuses beyond those every route has (401, 403, 429, 500).
    pub errors: &'static [u16],
    /// Another success status with the same body (a deploy of identical
    /// content is 200, not 201).
    pub also_ok: Option<u16>,
}

impl Route {
    const fn new(method: &'static str, path: &'static str, summary: &'static str) -> Route {
        Route {
            method,
            path,
            summary,
            scope: if matches!(method.as_bytes(), b"GET") {
                Scope::Read
            } else {
                Scope::Admin
            },
            query: &[],
            body: None,
            body_required: true,
            answer: Answer::Json(200, schema::<types::Document>),
            errors: &[],
            also_ok: None,
        }
    }
    const fn get(path: &'static str, summary: &'static str) -> Route {
        Route::new("GET", path, summary)
    }
    const fn post(path: &'static str, summary: &'static str) -> Route {
        Route::new("POST", path, summary)
    }
    const fn ok(mut self, status: u16, answer: SchemaFn) -> Route {
        self.answer = Answer::Json(status, answer);
        self
    }
    const fn body(mut self, body: SchemaFn) -> Route {
        self.body = Some(body);
        self
    }
    const fn also_ok(mut self, status: u16) -> Route {
        self.also_ok = Some(status);
        self
    }
    const fn optional_body(mut self, body: SchemaFn) -> Route {
        self.body = Some(body);
        self.body_required = false;
        self
    }
    const fn errors(mut self, errors: &'static [u16]) -> Route {
        self.errors = errors;
        self
    }
    const fn scope(mut self, scope: Scope) -> Route {
        self.scope = scope;
        self
    }
    const fn query(mut self, query: &'static [Query]) -> Route {
        self.query = query;
        self
    }

    /// The status a success answers with.
    pub fn ok_status(&self) -> u16 {
        match self.answer {
            Answer::Json(status, _) => status,
            Answer::WebSocket => 101,
            Answer::EventStream => 200,
        }
    }

    /// The path's `{param}` names, in order.
    pub fn params(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }
}

const TOKEN_QUERY: &[Query] = &[Query {
    name: "token",
    kind: QueryKind::Text,
    description: "The bearer token (browsers cannot set headers on a WebSocket)",
}];

impl Op {
    /// The route of an operation.
    pub const fn route(self) -> Route {
        use types::*;
        match self {
            Op::Health => Route::get("/v1/health", "Daemon health, active and queued runs")
                .ok(200, schema::<Health>),
            Op::Version => Route::get("/v1/version", "Version, commit and database schema")
                .ok(200, schema::<VersionInfo>),
            Op::OpenApi => Route::get("/v1/openapi.json", "This document"),
            Op::ListWorkflows => Route::get("/v1/workflows", "Deployed workflows and their triggers")
                .ok(200, schema::<WorkflowList>),
            Op::DeployWorkflow => Route::post("/v1/workflows", "Deploy a workflow (a new version unless identical)")
                .query(&[Query {
                    name: "source",
                    kind: QueryKind::Text,
                    description: "The absolute path it was deployed from (relative paths resolve against its folder)",
                }])
                .body(schema::<WorkflowBody>)
                .ok(201, schema::<Deployed>)
                .also_ok(200)
                .errors(&[400, 413, 422]),
            Op::GetWorkflow => Route::get("/v1/workflows/{name}", "A workflow's current definition")
                .ok(200, schema::<WorkflowDetail>)
                .errors(&[404]),
            Op::PutWorkflow => Route::new("PUT", "/v1/workflows/{name}", "Deploy a workflow under this name (a new version unless identical)")
                .body(schema::<WorkflowBody>)
                .ok(201, schema::<Deployed>)
                .also_ok(200)
                .errors(&[400, 413, 422]),
            Op::DeleteWorkflow => Route::new("DELETE", "/v1/workflows/{name}", "Delete a workflow and its versions")
                .ok(200, schema::<Deleted>)
                .errors(&[404]),
            Op::ListVersions => Route::get("/v1/workflows/{name}/versions", "Versions of a workflow")
                .ok(200, schema::<Versions>)
                .errors(&[404]),
            Op::GetVersion => Route::get("/v1/workflows/{name}/versions/{version}", "One version of a workflow with its definition")
                .ok(200, schema::<VersionDetail>)
                .errors(&[400, 404]),
            Op::Rollback => Route::post("/v1/workflows/{name}/rollback", "Make an earlier version current")
                .body(schema::<RollbackRequest>)
                .ok(200, schema::<RolledBack>)
                .errors(&[400, 404, 413]),
            Op::Enable => Route::post("/v1/workflows/{name}/enable", "Enable a workflow")
                .ok(200, schema::<Enabled>)
                .errors(&[404]),
            Op::Disable => Route::post("/v1/workflows/{name}/disable", "Disable a workflow")
                .ok(200, schema::<Enabled>)
                .errors(&[404]),
            Op::RunWorkflow => Route::post("/v1/workflows/{name}/run", "Run a workflow with the body as its input")
                .scope(Scope::Run)
                .optional_body(schema::<RunInput>)
                .ok(202, schema::<RunStarted>)
                .errors(&[400, 404, 409, 413, 422, 503]),
            Op::ListExecutions => Route::get("/v1/executions", "Recorded runs, newest first")
                .query(&[
                    Query { name: "workflow", kind: QueryKind::Text, description: "Only runs of this workflow" },
                    Query { name: "status", kind: QueryKind::Text, description: "Only runs with this status (queued, running, succeeded, failed, cancelled, interrupted)" },
                    Query { name: "limit", kind: QueryKind::Count, description: "At most this many (default 50, at most 1000; 0 is 1000)" },
                    Query { name: "trigger", kind: QueryKind::Text, description: "Only runs started this way (manual, webhook, cron, interval, file, retry, resume, call, …)" },
                    Query { name: "since", kind: QueryKind::Count, description: "Only runs created at or after this time (Unix milliseconds)" },
                    Query { name: "before", kind: QueryKind::Text, description: "Only runs older than this run id (the last of the page before: paging that stays fast however deep)" },
                    Query { name: "after", kind: QueryKind::Text, description: "Only runs newer than this run id (the first of the page after), still newest first" },
                    Query { name: "offset", kind: QueryKind::Count, description: "Skip this many first" },
                ])
                .ok(200, schema::<Executions>)
                .errors(&[400]),
            Op::GetExecution => Route::get("/v1/executions/{id}", "One run with its node attempts (an id prefix is enough)")
                .ok(200, schema::<RunDetail>)
                .errors(&[400, 404]),
            Op::ExecutionLogs => Route::get("/v1/executions/{id}/logs", "A run's log lines")
                .ok(200, schema::<Logs>)
                .errors(&[400, 404]),
            Op::ExecutionEvents => Route {
                answer: Answer::WebSocket,
                ..Route::get("/v1/executions/{id}/events", "WebSocket: a run's events, from its start")
                    .query(TOKEN_QUERY)
                    .errors(&[400, 404])
            },
            Op::Events => Route {
                answer: Answer::WebSocket,
                ..Route::get("/v1/events", "WebSocket: the events of every run")
                    .query(TOKEN_QUERY)
                    .errors(&[400])
            },
            Op::CancelExecution => Route::post("/v1/executions/{id}/cancel", "Cancel a queued or running run")
                .scope(Scope::Run)
                .ok(202, schema::<Cancelling>)
                .errors(&[400, 404, 409]),
            Op::RetryExecution => Route::post("/v1/executions/{id}/retry", "Run again with the same definition and input (from the failed node with from_failed)")
                .scope(Scope::Run)
                .optional_body(schema::<RetryRequest>)
                .ok(202, schema::<RunStarted>)
                .errors(&[400, 404, 409, 422, 503]),
            Op::ListNodes => Route::get("/v1/nodes", "Node types (built in and from packages)")
                .ok(200, schema::<NodeTypes>),
            Op::CreateNode => Route::post("/v1/nodes", "Scaffold a node package in the home (as `fuse nodes new`); hot reload loads it")
                .body(schema::<NewNode>)
                .ok(201, schema::<NodeCreated>)
                .errors(&[400, 409, 413]),
            Op::ListPlugins => Route::get("/v1/plugins", "Plugins, and packages that could not be loaded")
                .ok(200, schema::<Plugins>),
            Op::ListCredentials => Route::get("/v1/credentials", "Credentials: names, types and field names, never values")
                .ok(200, schema::<Credentials>),
            Op::CreateCredential => Route::post("/v1/credentials", "Create or replace a credential")
                .body(schema::<NewCredential>)
                .ok(201, schema::<CredentialCreated>)
                .errors(&[400, 413]),
            Op::CheckCredential => Route::post("/v1/credentials/{name}/check", "Check that a credential decrypts with the master key (its value is never answered)")
                .ok(200, schema::<CredentialCheck>)
                .errors(&[404]),
            Op::DeleteCredential => Route::new("DELETE", "/v1/credentials/{name}", "Delete a credential")
                .ok(200, schema::<Deleted>)
                .errors(&[404]),
            Op::ListSchedules => Route::get("/v1/schedules", "Schedules of enabled workflows and their next fires")
                .ok(200, schema::<Schedules>),
            Op::ListMemory => Route::get("/v1/memory", "Conversation memory sessions of llm.chat and llm.agent")
                .ok(200, schema::<MemorySessions>),
            Op::GetMemory => Route::get("/v1/memory/{session}", "One memory session's messages, oldest first")
                .ok(200, schema::<MemoryTranscript>)
                .errors(&[404]),
            Op::DeleteMemory => Route::new("DELETE", "/v1/memory/{session}", "Forget a memory session")
                .scope(Scope::Run)
                .ok(200, schema::<MemoryCleared>)
                .errors(&[404]),
            Op::SeedCreateWorkflow => Route::post("/workflows", "Seed format: create a workflow from {name, description, flow_data}")
                .body(schema::<SeedWorkflowCreate>)
                .ok(201, schema::<SeedWorkflow>)
                .errors(&[400, 409, 413, 422]),
            Op::SeedGetWorkflow => Route::get("/workflows/{id}", "Seed format: a workflow with its flow_data")
                .ok(200, schema::<SeedWorkflow>)
                .errors(&[404]),
            Op::SeedPutWorkflow => Route::new("PUT", "/workflows/{id}", "Seed format: change a workflow's name, description or flow_data (a new version)")
                .body(schema::<SeedWorkflowUpdate>)
                .ok(200, schema::<SeedWorkflow>)
                .errors(&[400, 404, 409, 413, 422]),
            Op::SeedDeleteWorkflow => Route::new("DELETE", "/workflows/{id}", "Seed format: delete a workflow")
                .ok(200, schema::<SeedDeleted>)
                .errors(&[404]),
            Op::SeedExecute => Route::post("/workflows/{id}/execute", "Seed format: run a workflow with {inputs}")
                .scope(Scope::Run)
                .optional_body(schema::<SeedExecute>)
                .ok(201, schema::<SeedExecution>)
                .errors(&[400, 404, 409, 413, 422, 503]),
            Op::SeedGetExecution => Route::get("/executions/{id}", "Seed format: a run with its inputs, outputs and status")
                .ok(200, schema::<SeedExecution>)
                .errors(&[400, 404]),
            Op::SeedExecutionStream => Route {
                answer: Answer::EventStream,
                ..Route::get("/executions/{id}/stream", "Seed format: a run's events as server-sent events (node_start, node_end, workflow_complete, error)")
                    .errors(&[400, 404])
            },
            Op::SeedWorkflowStream => Route {
                answer: Answer::WebSocket,
                ..Route::get("/workflows/{id}/stream", "Seed format, WebSocket: send {action: execute, inputs} or {action: cancel}; receive the run's events in the seed's words")
                    .scope(Scope::Run)
                    .query(TOKEN_QUERY)
                    .errors(&[400, 404])
            },
            Op::CreateLoginLink => Route::post("/v1/dashboard/login-links", "A one-time dashboard sign-in link (single use, valid for a minute)")
                .optional_body(schema::<Empty>)
                .ok(201, schema::<LoginLink>)
                .errors(&[400, 413]),
        }
    }
}

/// Why a request matched no operation.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    /// The path exists with other methods (for 405 and its `Allow`).
    Method(Vec<&'static str>),
}

/// The operation a request names, with its path parameters (percent-decoded,
/// in order); `path` is below [`PREFIX`].
pub fn find(method: &str, path: &str) -> Result<(Op, Vec<String>), Miss> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut allowed = Vec::new();
    for op in Op::ALL {
        let route = op.route();
        let template: Vec<&str> = route.path.trim_matches('/').split('/').collect();
        if template.len() != parts.len()
            || !template
                .iter()
                .zip(&parts)
                .all(|(t, p)| t.starts_with('{') || t == p)
        {
            continue;
        }
        if route.method != method {
            allowed.push(route.method);
            continue;
        }
        let params = template
            .iter()
            .zip(&parts)
            .filter(|(t, _)| t.starts_with('{'))
            .map(|(_, p)| decode(p))
            .collect();
        return Ok((*op, params));
    }
    if allowed.is_empty() {
        Err(Miss::NotFound)
    } else {
        allowed.sort_unstable();
        allowed.dedup();
        Err(Miss::Method(allowed))
    }
}

/// The path of `op` with its parameters filled in (percent-encoded), below
/// [`PREFIX`].
pub fn path_of(op: Op, params: &[&str]) -> String {
    let mut params = params.iter();
    op.route()
        .path
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                encode(params.next().copied().unwrap_or_default())
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A percent-encoded path segment, decoded (lossily: bad UTF-8 becomes U+FFFD).
pub fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// What a path segment must escape.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_found_and_paths_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for op in Op::ALL {
            let route = op.route();
            assert!(seen.insert((route.method, route.path)), "{op:?} twice");
            let params: Vec<String> = route.params().map(|p| format!("x-{p}")).collect();
            let refs: Vec<&str> = params.iter().map(String::as_str).collect();
            let path = path_of(*op, &refs);
            assert_eq!(find(route.method, &path), Ok((*op, params.clone())));
        }
    }

    #[test]
    fn wrong_methods_and_unknown_paths() {
        assert_eq!(
            find("PATCH", "/v1/workflows/a"),
            Err(Miss::Method(vec!["DELETE", "GET", "PUT"]))
        );
        assert_eq!(find("GET", "/nope"), Err(Miss::NotFound));
        assert_eq!(
            find("GET", "/v1/workflows/a%20b%2Fc"),
            Ok((Op::GetWorkflow, vec!["a b/c".to_string()]))
        );
        assert_eq!(
            path_of(Op::GetWorkflow, &["a b/c"]),
            "/v1/workflows/a%20b%2Fc"
        );
        // The seed format's paths are beside the native ones.
        assert_eq!(
            find("GET", "/workflows/a"),
            Ok((Op::SeedGetWorkflow, vec!["a".to_string()]))
        );
    }
}
