//! Workflow tests (`fuse test`): a `NAME.test.json` file next to `NAME.json`
//! holds cases; each case gives the trigger input, pins the outputs of nodes
//! that must not run (an HTTP call, an LLM reply), and states what the run
//! must do. See docs/testing.md.
//!
//! - this module: the file format, read with JSON-path errors;
//! - [`check`]: matchers and the differences they report;
//! - [`runner`]: runs a case through the engine and checks it;
//! - [`junit`]: JUnit XML for CI.

pub mod check;
pub mod junit;
pub mod record;
pub mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

pub use check::Matcher;

/// The suffix of test files.
pub const SUFFIX: &str = ".test.json";

/// Whether `path` is a test file (`NAME.test.json`), not a workflow.
pub fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(SUFFIX))
}

/// A test file as read.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The workflow, relative to the test file (default: `NAME.json` beside
    /// `NAME.test.json`).
    #[serde(default)]
    pub workflow: Option<String>,
    pub cases: Vec<Case>,
}

/// One test case.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// The run input (the workflow's params), as `fuse run --input` gives it.
    #[serde(default)]
    pub input: Option<Value>,
    /// A simulated trigger instead of `input`.
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// Nodes that do not run, by id.
    #[serde(default)]
    pub pins: BTreeMap<String, PinSpec>,
    /// The run's start time (`run.started_at`), and a schedule's default fire time.
    #[serde(default)]
    pub now: Option<String>,
    /// The run's id (`run.id`); a new one each time when not given.
    #[serde(default)]
    pub run_id: Option<String>,
    /// The longest the case may run (default 60s).
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub expect: Expect,
}

/// A simulated trigger.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Trigger {
    Webhook(Box<WebhookCall>),
    Schedule(ScheduleFire),
}

/// A webhook call: what the daemon would pass the run.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookCall {
    /// The `trigger.webhook` node (needed when there are several).
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Map<String, Value>,
    #[serde(default)]
    pub query: Map<String, Value>,
    #[serde(default)]
    pub body: Value,
}

/// A schedule firing.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFire {
    #[serde(default)]
    pub node: Option<String>,
    /// The fire time (default: the case's `now`, else the clock).
    #[serde(default)]
    pub at: Option<String>,
}

/// A pinned node: one of `output`, `error`, `wait` or `sequence` (one per attempt).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PinSpec {
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Value>")]
    pub output: Option<Value>,
    /// The handle the output leaves by (a `flow.if`'s `true`/`false`).
    #[serde(default)]
    pub handle: Option<String>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub sequence: Option<Vec<PinSpec>>,
    /// `true`: the attempt never finishes (a hanging call): the node's
    /// timeout, the workflow's, or the run's end stops it.
    #[serde(default)]
    pub wait: bool,
}

/// What the run must do. Every part is optional; `status` defaults to
/// `succeeded`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub status: Option<String>,
    /// The run's output.
    #[serde(default)]
    pub output: Option<Matcher>,
    /// The run's error message.
    #[serde(default)]
    pub error: Option<Matcher>,
    /// The answer `webhook.respond` gave (`{status, headers, body}`).
    #[serde(default)]
    pub response: Option<Matcher>,
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeExpect>,
    /// Exactly these nodes ran (succeeded or failed; pinned ones count).
    #[serde(default)]
    pub ran: Option<Vec<String>>,
    /// Exactly these nodes were skipped.
    #[serde(default)]
    pub skipped: Option<Vec<String>>,
    /// Exactly these nodes failed.
    #[serde(default)]
    pub failed: Option<Vec<String>>,
    /// Each must match a log line of the run.
    #[serde(default)]
    pub logs: Vec<LogExpect>,
}

/// What one node must do.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeExpect {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub output: Option<Matcher>,
    /// Its error (`{kind, message, status?, exit_code?}`).
    #[serde(default)]
    pub error: Option<Matcher>,
    /// The input it got (its first attempt's).
    #[serde(default)]
    pub input: Option<Matcher>,
}

/// A log line the run must have written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogExpect {
    pub contains: String,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
}

/// `Some(value)` for a key that is present, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A test file that cannot be used, with where in it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

/// A test file with its workflow and its raw JSON (which `--update` edits).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub workflow: PathBuf,
    pub file: TestFile,
    pub raw: Value,
}

/// The statuses a run or a node can end with.
const STATUSES: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];

/// The JSON Schema of test files (`fuse schema test`), for editors.
pub fn schema() -> Value {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<TestFile>()
        .to_value();
    schema["$id"] = Value::String("https://fuse.dev/schema/test.json".into());
    schema["title"] = Value::String("fuse workflow test file".into());
    schema
}

/// Reads and checks a test file (not yet against its workflow's nodes: see
/// [`runner::check_ids`]).
pub fn load(path: &Path) -> Result<Loaded, FileError> {
    let fail = |message: String| FileError {
        path: path.to_path_buf(),
        message,
    };
    let bytes = crate::files::read_regular(path, crate::engine::MAX_WORKFLOW_BYTES)
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    let raw: Value = serde_json::from_slice(&bytes).map_err(|e| fail(format!("not JSON: {e}")))?;
    let file: TestFile = serde_path_to_error::deserialize(raw.clone()).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            "$".into()
        } else {
            format!("$.{at}")
        };
        fail(format!("{at}: {}", e.inner()))
    })?;
    if file.cases.is_empty() {
        return Err(fail(
            "$.cases: no cases; add one like {\"name\": \"runs\", \"input\": {}}".into(),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, case) in file.cases.iter().enumerate() {
        let at = format!("$.cases[{i}]");
        if !names.insert(case.name.as_str()) {
            return Err(fail(format!(
                "{at}.name: another case is also named {:?}; names must differ",
                case.name
            )));
        }
        check_case(case, &at).map_err(fail)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let workflow = match &file.workflow {
        Some(w) => dir.join(w),
        None => match name.strip_suffix(SUFFIX) {
            Some(stem) => dir.join(format!("{stem}.json")),
            None => {
                return Err(fail(format!(
                    "$.workflow: name the workflow, or call the file NAME{SUFFIX} beside NAME.json"
                )));
            }
        },
    };
    Ok(Loaded {
        path: path.to_path_buf(),
        workflow,
        file,
        raw,
    })
}

fn check_case(case: &Case, at: &str) -> Result<(), String> {
    if case.input.is_some() && case.trigger.is_some() {
        return Err(format!(
            "{at}: give `input` (a run by hand) or `trigger` (a webhook call or a schedule fire), not both"
        ));
    }
    if let Some(now) = &case.now {
        parse_time(now).map_err(|e| format!("{at}.now: {e}"))?;
    }
    if let Some(Trigger::Schedule(fire)) = &case.trigger
        && let Some(t) = &fire.at
    {
        parse_time(t).map_err(|e| format!("{at}.trigger.schedule.at: {e}"))?;
    }
    if let Some(t) = &case.timeout {
        crate::engine::duration::parse(t).map_err(|e| format!("{at}.timeout: {e}"))?;
    }
    for (node, pin) in &case.pins {
        to_pin(pin).map_err(|e| format!("{at}.pins.{node}{e}"))?;
    }
    let expect = &case.expect;
    let status = |s: &Option<String>, at: &str| match s {
        Some(s) if !STATUSES.contains(&s.as_str()) => Err(format!(
            "{at}: {s:?} is not a status (one of {})",
            STATUSES.join(", ")
        )),
        _ => Ok(()),
    };
    status(&expect.status, &format!("{at}.expect.status"))?;
    let mut matchers: Vec<(String, &Matcher)> = Vec::new();
    for (key, m) in [
        ("output", &expect.output),
        ("error", &expect.error),
        ("response", &expect.response),
    ] {
        if let Some(m) = m {
            matchers.push((format!("{at}.expect.{key}"), m));
        }
    }
    for (node, e) in &expect.nodes {
        let here = format!("{at}.expect.nodes.{node}");
        status(&e.status, &format!("{here}.status"))?;
        for (key, m) in [
            ("output", &e.output),
            ("error", &e.error),
            ("input", &e.input),
        ] {
            if let Some(m) = m {
                matchers.push((format!("{here}.{key}"), m));
            }
        }
    }
    for (i, log) in expect.logs.iter().enumerate() {
        if let Some(level) = &log.level
            && crate::nodes::LogLevel::parse(level).is_none()
        {
            return Err(format!(
                "{at}.expect.logs[{i}].level: {level:?} is not a level (debug, info, warn, error)"
            ));
        }
    }
    for (here, m) in matchers {
        m.compile().map_err(|e| format!("{here}: {e}"))?;
    }
    Ok(())
}

/// A pin spec as the engine's pin; the error names the part (`.sequence[1]`).
pub fn to_pin(spec: &PinSpec) -> Result<crate::engine::pin::Pin, String> {
    use crate::engine::pin::Pin;
    if let Some(steps) = &spec.sequence {
        if spec.output.is_some() || spec.error.is_some() || spec.handle.is_some() || spec.wait {
            return Err(": give `sequence` alone (each step has its own output or error)".into());
        }
        let mut outcomes = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            if step.sequence.is_some() {
                return Err(format!(".sequence[{i}]: a step cannot hold a sequence"));
            }
            outcomes.push(outcome(step).map_err(|e| format!(".sequence[{i}]{e}"))?);
        }
        return Pin::sequence(outcomes)
            .ok_or_else(|| ".sequence: it is empty; give one output or error per attempt".into());
    }
    outcome(spec).map(Pin::one)
}

fn outcome(spec: &PinSpec) -> Result<crate::engine::pin::Outcome, String> {
    use crate::engine::pin::Outcome;
    if spec.wait {
        return match (&spec.output, &spec.error, &spec.handle) {
            (None, None, None) => Ok(Outcome::Wait),
            _ => Err(": `wait` stands alone (the node gives nothing)".into()),
        };
    }
    match (&spec.output, &spec.error) {
        (Some(value), None) => Ok(Outcome::Output {
            value: value.clone(),
            handle: spec.handle.clone(),
        }),
        (None, Some(error)) if spec.handle.is_none() => crate::engine::pin::error_from_json(error)
            .map(Outcome::Error)
            .map_err(|e| format!(".error: {e}")),
        (None, Some(_)) => Err(": `handle` goes with `output`, not `error`".into()),
        (Some(_), Some(_)) => Err(": give `output` or `error`, not both".into()),
        (None, None) => Err(
            ": give `output` (what the node returns), `error` (how it fails), `wait: true` (it hangs) or `sequence` (one per attempt)"
                .into(),
        ),
    }
}

/// An RFC 3339 time.
pub fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse()
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2026-05-01T09:00:00Z): {e}"))
}

/// The test files under `paths` (files as given; folders searched, hidden
/// folders and `target` left out), sorted.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FileError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| FileError {
            path: path.clone(),
            message: format!("cannot read it: {e}"),
        })?;
        if meta.is_dir() {
            walk(path, &mut out, 0);
        } else {
            out.push(path.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 16 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                walk(&path, out, depth + 1);
            }
        } else if kind.is_file() && is_test_file(&path) {
            out.push(path);
        }
    }
}
