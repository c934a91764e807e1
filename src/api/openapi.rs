//! The OpenAPI 3.1 document, generated from the route table and the schemas
//! of the request and response types (schemars, JSON Schema 2020-12, which
//! OpenAPI 3.1 uses as is).

use serde_json::{Map, Value, json};

use super::{Answer, Op, PREFIX, QueryKind, types};

/// What each error status means (every error has the same body).
fn error_meaning(status: u16) -> &'static str {
    match status {
        400 => "the request is malformed (not JSON, a wrong field, a bad parameter)",
        401 => "missing or wrong bearer token",
        403 => "the token's scope does not allow this route",
        404 => "no such workflow, version, run or credential",
        409 => "the workflow is disabled, or the run is not running in this daemon",
        413 => "the body is over the size limit",
        422 => "the workflow or the input is invalid (details list the problems)",
        429 => "the token's rate limit (daemon.api_rate_limit) is exceeded; see Retry-After",
        503 => "the run could not be recorded, so it was not accepted; see Retry-After",
        _ => "the daemon failed (the message says why)",
    }
}

/// The document for a daemon listening at `server` (`http://host:port`);
/// `workflow_schema` is the full schema of a workflow body (the node types of
/// the daemon's registry).
pub fn document(server: &str, workflow_schema: Value) -> Value {
    let mut responses = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .for_serialize()
        .into_generator();
    let mut requests = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .for_deserialize()
        .into_generator();
    let error = responses.subschema_for::<types::ErrorBody>().to_value();
    let mut paths = Map::new();
    for op in Op::ALL {
        let route = op.route();
        let mut parameters: Vec<Value> = route
            .params()
            .map(|name| {
                json!({"name": name, "in": "path", "required": true,
                "schema": if name == "version" {
                    json!({"type": "integer", "minimum": 1})
                } else {
                    json!({"type": "string", "minLength": 1})
                }})
            })
            .collect();
        for q in route.query {
            let schema = match q.kind {
                QueryKind::Text => json!({"type": "string"}),
                QueryKind::Count => json!({"type": "integer", "minimum": 0}),
            };
            parameters.push(json!({"name": q.name, "in": "query", "required": false,
                                   "description": q.description, "schema": schema}));
        }
        let mut answers = Map::new();
        match route.answer {
            Answer::Json(status, schema) => {
                let body =
                    json!({"application/json": {"schema": schema(&mut responses).to_value()}});
                answers.insert(
                    status.to_string(),
                    json!({"description": "success", "content": body}),
                );
                if let Some(also) = route.also_ok {
                    answers.insert(
                        also.to_string(),
                        json!({"description": "success (nothing new: identical content)", "content": body}),
                    );
                }
            }
            Answer::EventStream => {
                answers.insert(
                    "200".into(),
                    json!({"description": "server-sent events: one `data: {json}` line per run event, until the run ends",
                           "content": {"text/event-stream": {"schema": {
                               "description": "one server-sent event",
                               "type": "object",
                               "properties": {
                                   "data": {"type": "string", "description": "the event as JSON: {type: node_start | node_end | workflow_complete | error, execution_id, node_id?, status?, output?, result?, error?, timestamp}"},
                                   "event": {"type": "string"},
                                   "id": {"type": "string"},
                                   "retry": {"type": "integer"}
                               },
                               "required": ["data"]
                           }}}}),
                );
            }
            Answer::WebSocket => {
                answers.insert(
                    "101".into(),
                    json!({"description": "switching to a WebSocket of JSON run events"}),
                );
            }
        }
        let mut errors: Vec<u16> = route.errors.to_vec();
        errors.extend([401, 403, 429, 500]);
        errors.sort_unstable();
        errors.dedup();
        for status in errors {
            let mut answer = json!({"description": error_meaning(status),
                                    "content": {"application/json": {"schema": error.clone()}}});
            if matches!(status, 429 | 503) {
                answer["headers"] = json!({"Retry-After": {
                    "description": "seconds to wait", "schema": {"type": "integer"}}});
            }
            answers.insert(status.to_string(), answer);
        }
        let mut operation = json!({
            "operationId": format!("{op:?}"),
            "summary": route.summary,
            "description": format!("Needs a token with scope `{}` or more.", route.scope.as_str()),
            "parameters": parameters,
            "security": [{"bearer": []}],
            "responses": answers,
        });
        if let Some(body) = route.body {
            operation["requestBody"] = json!({"required": route.body_required, "content": {
                "application/json": {"schema": body(&mut requests).to_value()}}});
        }
        let entry = paths
            .entry(format!("{PREFIX}{}", route.path))
            .or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = operation;
    }
    let mut schemas = responses.take_definitions(true);
    schemas.extend(requests.take_definitions(true));
    schemas.insert("Workflow".into(), strip_meta(workflow_schema));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "fuse daemon API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The local fuse daemon. Every route needs `Authorization: Bearer <token>`; errors are `{\"error\": {\"code\", \"message\", \"details\"}}`.",
        },
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        }
    })
}

/// A standalone schema as a component: its `$defs` stay inside it (their
/// references are rewritten to point there).
fn strip_meta(mut schema: Value) -> Value {
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
        map.remove("$id");
    }
    let text = schema
        .to_string()
        .replace("\"#/$defs/", "\"#/components/schemas/Workflow/$defs/");
    serde_json::from_str(&text).unwrap_or(schema)
}
