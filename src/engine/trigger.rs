//! The inputs triggers give a run, in one place: the daemon builds them when
//! a webhook is called or a schedule fires, and `fuse test` and
//! `fuse run --trigger` build the same ones to simulate a trigger.

use serde_json::{Map, Value, json};

use super::Plan;

/// A webhook run's input: `{method, path, headers, query, body}` (`path` is
/// the hook's path, without `/webhook/`).
pub fn webhook_input(
    method: &str,
    path: &str,
    headers: Map<String, Value>,
    query: impl serde::Serialize,
    body: Value,
) -> Value {
    json!({"method": method, "path": path, "headers": headers, "query": query, "body": body})
}

/// A scheduled run's input: `{fired_at, schedule, kind, node, missed}`.
pub fn schedule_input(
    at: jiff::Timestamp,
    kind: &str,
    spec: &str,
    node: &str,
    missed: bool,
) -> Value {
    json!({"fired_at": at.to_string(), "schedule": spec, "kind": kind,
           "node": node, "missed": missed})
}

/// The trigger kinds a run can be simulated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    Schedule,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Schedule => "schedule",
        }
    }

    fn fits(self, type_name: &str) -> bool {
        match self {
            Kind::Webhook => type_name == "trigger.webhook",
            Kind::Schedule => matches!(
                type_name,
                "trigger.cron" | "trigger.interval" | "trigger.timer"
            ),
        }
    }
}

/// The trigger node of `kind` a simulated run enters by: `node` when given
/// (it must be one), else the workflow's only one.
pub fn entry_node<'a>(plan: &'a Plan, kind: Kind, node: Option<&str>) -> Result<&'a str, String> {
    let candidates: Vec<&str> = plan
        .iter_nodes()
        .filter(|n| kind.fits(crate::workflow::canonical_type(n.type_name())))
        .map(|n| n.id())
        .collect();
    match (node, candidates.as_slice()) {
        // The id as the plan holds it, which outlives `node`.
        (Some(id), _) if candidates.contains(&id) => Ok(plan.node(id).map_or("", |n| n.id())),
        (Some(id), _) => Err(format!(
            "node {id:?} is not a {} trigger of {} (its {} triggers: {})",
            kind.name(),
            plan.name,
            kind.name(),
            list(&candidates)
        )),
        (None, [only]) => Ok(only),
        (None, []) => Err(format!("{} has no {} trigger node", plan.name, kind.name())),
        (None, many) => Err(format!(
            "{} has several {} triggers ({}); name the one to fire with `node`",
            plan.name,
            kind.name(),
            list(many)
        )),
    }
}

/// A simulated webhook call of `node`: the input the daemon would give.
pub fn simulated_webhook(
    plan: &Plan,
    node: &str,
    method: Option<&str>,
    headers: Map<String, Value>,
    query: Map<String, Value>,
    body: Value,
) -> Value {
    // A trigger's inputs that do not read back are as good as none here: the
    // defaults below apply, as they do to a trigger without inputs.
    let inputs = plan.node(node).and_then(|n| n.written().ok());
    let get = |k: &str| {
        inputs
            .as_ref()
            .and_then(|i| i.get(k))
            .and_then(Value::as_str)
    };
    let path = get("path")
        .unwrap_or(&plan.id)
        .trim_matches('/')
        .to_string();
    let method = method.or(get("method")).unwrap_or("POST").to_uppercase();
    // Header names arrive lower-case from HTTP.
    let headers = headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    webhook_input(&method, &path, headers, query, body)
}

/// A simulated fire of schedule trigger `node` at `at`, from the planned
/// node's inputs (triggers keep them as written).
pub fn simulated_fire(plan: &Plan, node: &str, at: jiff::Timestamp) -> Value {
    let schedule = plan.node(node).and_then(|n| {
        let inputs = Value::Object(n.written().ok()?);
        crate::schedule::trigger_of(&plan.id, node, n.type_name(), &inputs, at)
    });
    let (kind, spec) = schedule
        .map(|s| (s.kind, s.spec))
        .unwrap_or_else(|| ("manual".into(), String::new()));
    schedule_input(at, &kind, &spec, node, false)
}

/// A run's input checked against the workflow's params: strictly for runs a
/// caller asked for (the API; a webhook's body), defaults only for inputs a
/// trigger made (schedules, files, events); as it is for runs started before
/// (retries, resumes, recovered runs).
pub fn checked_input(
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

fn list(ids: &[&str]) -> String {
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}
