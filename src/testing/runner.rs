//! Runs test cases through the engine (pinned nodes never run) and checks
//! what each run did against its expectations.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::check::{Difference, Matcher};
use super::{Case, Trigger};
use crate::engine::{Engine, Event, Observer, Plan, RunRecord, RunRequest, Status};
use crate::nodes::LogLevel;

/// The longest a case runs when it sets no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Keeps the log lines and node inputs of the runs being tested.
#[derive(Default)]
pub struct Collector {
    runs: Mutex<HashMap<String, Captured>>,
}

/// What a run reported besides its record.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    pub logs: Vec<LogLine>,
    /// Each node's input at its first attempt.
    pub inputs: HashMap<String, Arc<Value>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub node: Option<String>,
    pub level: LogLevel,
    pub message: String,
}

impl Collector {
    fn watch(&self, run_id: &str) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(run_id.to_string(), Captured::default());
        }
    }

    fn take(&self, run_id: &str) -> Captured {
        self.runs
            .lock()
            .ok()
            .and_then(|mut runs| runs.remove(run_id))
            .unwrap_or_default()
    }
}

impl Collector {
    fn with(&self, run_id: &str, apply: impl FnOnce(&mut Captured)) {
        if let Ok(mut runs) = self.runs.lock()
            && let Some(captured) = runs.get_mut(run_id)
        {
            apply(captured);
        }
    }
}

impl Observer for Collector {
    fn on_event(&self, event: &Event) {
        match event {
            Event::Log {
                run_id,
                node_id,
                level,
                message,
            } => self.with(run_id, |c| {
                c.logs.push(LogLine {
                    node: node_id.clone(),
                    level: *level,
                    message: message.clone(),
                })
            }),
            Event::NodeAttempt(a) => self.with(&a.run_id, |c| {
                c.inputs
                    .entry(a.node_id.to_string())
                    .or_insert_with(|| a.input.clone());
            }),
            _ => {}
        }
    }
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Passed,
    /// The run did not do what the case expects.
    Failed,
    /// The case could not run (its workflow is invalid, it names a node the
    /// workflow lacks, its input does not fit the params).
    Error,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub file: PathBuf,
    /// The case's position in its file.
    pub index: usize,
    pub case: String,
    pub verdict: Verdict,
    pub duration_ms: u64,
    pub differences: Vec<Difference>,
    /// Why the case could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the run did (for `--update`).
    #[serde(skip)]
    pub actual: Option<Actual>,
}

/// What a case's run did.
#[derive(Debug, Clone)]
pub struct Actual {
    pub record: RunRecord,
    /// The answer `webhook.respond` gave.
    pub response: Option<Value>,
}

/// A workflow's plan, or why it cannot run; loaded once per file.
type PlanResult = Arc<Result<Arc<Plan>, String>>;

/// Runs cases with one engine (whose observer must include [`Runner::collector`]).
pub struct Runner {
    engine: Engine,
    collector: Arc<Collector>,
    plans: Mutex<HashMap<PathBuf, PlanResult>>,
}

impl Runner {
    /// `engine` is built by the caller with `collector` among its observers.
    pub fn new(engine: Engine, collector: Arc<Collector>) -> Runner {
        Runner {
            engine,
            collector,
            plans: Default::default(),
        }
    }

    /// The workflow's plan, loaded once per file.
    fn plan(&self, path: &Path) -> PlanResult {
        if let Ok(plans) = self.plans.lock()
            && let Some(p) = plans.get(path)
        {
            return p.clone();
        }
        let loaded = Arc::new(
            self.engine
                .load(path)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        );
        if let Ok(mut plans) = self.plans.lock() {
            plans.insert(path.to_path_buf(), loaded.clone());
        }
        loaded
    }

    /// Runs case `index` of `file` and checks it.
    pub async fn run_case(&self, file: &super::Loaded, index: usize) -> CaseResult {
        let started = Instant::now();
        let case = &file.file.cases[index];
        let mut result = CaseResult {
            file: file.path.clone(),
            index,
            case: case.name.clone(),
            verdict: Verdict::Error,
            duration_ms: 0,
            differences: Vec::new(),
            error: None,
            actual: None,
        };
        let outcome = self.run_checked(file, index, case).await;
        result.duration_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Err(e) => result.error = Some(e),
            Ok((differences, actual)) => {
                result.verdict = if differences.is_empty() {
                    Verdict::Passed
                } else {
                    Verdict::Failed
                };
                result.differences = differences;
                result.actual = Some(actual);
            }
        }
        result
    }

    async fn run_checked(
        &self,
        file: &super::Loaded,
        index: usize,
        case: &Case,
    ) -> Result<(Vec<Difference>, Actual), String> {
        let plan = match &*self.plan(&file.workflow) {
            Ok(plan) => plan.clone(),
            Err(e) => return Err(format!("its workflow cannot run: {e}")),
        };
        let at = format!("$.cases[{index}]");
        check_ids(&plan, case, &at)?;
        let now = case
            .now
            .as_deref()
            .map(super::parse_time)
            .transpose()
            .map_err(|e| format!("{at}.now: {e}"))?;
        let (input, trigger, entry) = input_of(&plan, case, now).map_err(|e| format!("{at}{e}"))?;
        let input = crate::engine::trigger::checked_input(&plan, input, trigger, false).map_err(
            |problems| {
                format!(
                    "{at}: the input does not fit the params of {}: {}",
                    plan.name,
                    problems.join("; ")
                )
            },
        )?;
        let mut pins = HashMap::new();
        for (node, spec) in &case.pins {
            pins.insert(
                node.clone(),
                super::to_pin(spec).map_err(|e| format!("{at}.pins.{node}{e}"))?,
            );
        }
        let run_id = case
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut request = RunRequest::new(input, "test");
        request.run_id = Some(run_id.clone());
        request.pins = Arc::new(pins);
        request.entry = entry;
        request.started_at = now;
        let answer = if trigger == "webhook" {
            let (tx, rx) = tokio::sync::oneshot::channel();
            request.responder = Some(Arc::new(Mutex::new(Some(tx))));
            Some(rx)
        } else {
            None
        };
        let limit = match &case.timeout {
            Some(t) => {
                crate::engine::duration::parse(t).map_err(|e| format!("{at}.timeout: {e}"))?
            }
            None => DEFAULT_TIMEOUT,
        };
        let cancel = request.cancel.clone();
        self.collector.watch(&run_id);
        let run = self.engine.run(plan.clone(), request);
        tokio::pin!(run);
        let mut timed_out = false;
        let record = tokio::select! {
            record = &mut run => record,
            _ = tokio::time::sleep(limit) => {
                timed_out = true;
                cancel.cancel();
                run.await
            }
        };
        let captured = self.collector.take(&run_id);
        let response = answer.and_then(|mut rx| rx.try_recv().ok());
        let mut differences = Vec::new();
        if timed_out {
            differences.push(Difference {
                path: "status".into(),
                message: format!(
                    "the case ran longer than its timeout ({}) and was cancelled",
                    crate::engine::duration::human(limit)
                ),
            });
        }
        let actual = Actual { record, response };
        check(
            &case.expect,
            &actual,
            &captured,
            self.engine.expressions(),
            &mut differences,
        );
        Ok((differences, actual))
    }
}

/// Every node a case names must be in the workflow.
pub fn check_ids(plan: &Plan, case: &Case, at: &str) -> Result<(), String> {
    let ids = || {
        plan.nodes
            .iter()
            .map(|n| &*n.id)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let known = |id: &str, here: String| {
        if plan.node(id).is_some() {
            Ok(())
        } else {
            Err(format!(
                "{here}: {} has no node {id:?} (its nodes: {})",
                plan.name,
                ids()
            ))
        }
    };
    for id in case.pins.keys() {
        known(id, format!("{at}.pins.{id}"))?;
    }
    let e = &case.expect;
    for id in e.nodes.keys() {
        known(id, format!("{at}.expect.nodes.{id}"))?;
    }
    for (key, list) in [
        ("ran", &e.ran),
        ("skipped", &e.skipped),
        ("failed", &e.failed),
    ] {
        for (i, id) in list.iter().flatten().enumerate() {
            known(id, format!("{at}.expect.{key}[{i}]"))?;
        }
    }
    for (i, log) in e.logs.iter().enumerate() {
        if let Some(id) = &log.node {
            known(id, format!("{at}.expect.logs[{i}].node"))?;
        }
    }
    Ok(())
}

/// The run input, trigger kind and entry node of a case.
fn input_of(
    plan: &Plan,
    case: &Case,
    now: Option<jiff::Timestamp>,
) -> Result<(Value, &'static str, Option<String>), String> {
    use crate::engine::trigger::{self, Kind};
    match &case.trigger {
        None => Ok((
            case.input.clone().unwrap_or_else(|| json!({})),
            "manual",
            None,
        )),
        Some(Trigger::Webhook(call)) => {
            let entry = trigger::entry_node(plan, Kind::Webhook, call.node.as_deref())
                .map_err(|e| format!(".trigger.webhook: {e}"))?
                .to_string();
            let input = trigger::simulated_webhook(
                plan,
                &entry,
                call.method.as_deref(),
                call.headers.clone(),
                call.query.clone(),
                call.body.clone(),
            );
            Ok((input, "webhook", Some(entry)))
        }
        Some(Trigger::Schedule(fire)) => {
            let entry = trigger::entry_node(plan, Kind::Schedule, fire.node.as_deref())
                .map_err(|e| format!(".trigger.schedule: {e}"))?
                .to_string();
            let at = match &fire.at {
                Some(t) => {
                    super::parse_time(t).map_err(|e| format!(".trigger.schedule.at: {e}"))?
                }
                None => now.unwrap_or_else(jiff::Timestamp::now),
            };
            Ok((
                trigger::simulated_fire(plan, &entry, at),
                "cron",
                Some(entry),
            ))
        }
    }
}

/// Checks a run against a case's expectations, adding what differed.
fn check(
    expect: &super::Expect,
    actual: &Actual,
    captured: &Captured,
    exprs: &crate::engine::expr::Expressions,
    out: &mut Vec<Difference>,
) {
    let record = &actual.record;
    let want = expect.status.as_deref().unwrap_or("succeeded");
    if record.status.as_str() != want {
        let why = record
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        out.push(Difference {
            path: "status".into(),
            message: format!("expected {want}, got {}{why}", record.status.as_str()),
        });
    }
    let mut matcher = |m: &Option<Matcher>, value: Option<&Value>, at: &str| {
        if let Some(m) = m {
            out.extend(m.check(value, exprs, at));
        }
    };
    let output = (record.status == Status::Succeeded).then_some(&*record.output);
    matcher(&expect.output, output, "output");
    let error = record.error.clone().map(Value::String);
    matcher(&expect.error, error.as_ref(), "error");
    matcher(&expect.response, actual.response.as_ref(), "response");
    for (id, e) in &expect.nodes {
        let at = format!("nodes.{id}");
        let node = record.nodes.get(id);
        if let Some(want) = &e.status {
            let got = node.map_or("not reached", |n| n.status.as_str());
            if got != want {
                let why = node
                    .and_then(|n| n.error.as_ref())
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                out.push(Difference {
                    path: format!("{at}.status"),
                    message: format!("expected {want}, got {got}{why}"),
                });
            }
        }
        if let Some(want) = e.attempts {
            let got = node.map_or(0, |n| n.attempts);
            if got != want {
                out.push(Difference {
                    path: format!("{at}.attempts"),
                    message: format!("expected {want}, got {got}"),
                });
            }
        }
        let mut matcher = |m: &Option<Matcher>, value: Option<&Value>, at: String| {
            if let Some(m) = m {
                out.extend(m.check(value, exprs, &at));
            }
        };
        matcher(
            &e.output,
            node.and_then(|n| n.output.as_deref()),
            format!("{at}.output"),
        );
        matcher(
            &e.error,
            node.and_then(|n| n.error.as_ref()),
            format!("{at}.error"),
        );
        matcher(
            &e.input,
            captured.inputs.get(id).map(|v| &**v),
            format!("{at}.input"),
        );
    }
    let with = |statuses: &[Status]| -> BTreeSet<&str> {
        record
            .nodes
            .iter()
            .filter(|(_, n)| statuses.contains(&n.status))
            .map(|(id, _)| id.as_str())
            .collect()
    };
    for (key, list, statuses) in [
        ("ran", &expect.ran, &[Status::Succeeded, Status::Failed][..]),
        ("skipped", &expect.skipped, &[Status::Skipped][..]),
        ("failed", &expect.failed, &[Status::Failed][..]),
    ] {
        let Some(list) = list else { continue };
        let want: BTreeSet<&str> = list.iter().map(String::as_str).collect();
        let got = with(statuses);
        if want != got {
            let extra: Vec<&str> = got.difference(&want).copied().collect();
            let lacking: Vec<&str> = want.difference(&got).copied().collect();
            let mut parts = Vec::new();
            if !lacking.is_empty() {
                parts.push(format!("not {key}: {}", lacking.join(", ")));
            }
            if !extra.is_empty() {
                parts.push(format!("also {key}: {}", extra.join(", ")));
            }
            out.push(Difference {
                path: key.into(),
                message: format!(
                    "expected exactly [{}]; {}",
                    list.join(", "),
                    parts.join("; ")
                ),
            });
        }
    }
    for (i, want) in expect.logs.iter().enumerate() {
        let level = want.level.as_deref().and_then(LogLevel::parse);
        let found = captured.logs.iter().any(|line| {
            line.message.contains(&want.contains)
                && want
                    .node
                    .as_ref()
                    .is_none_or(|n| line.node.as_ref() == Some(n))
                && level.is_none_or(|l| line.level == l)
        });
        if !found {
            let seen: Vec<String> = captured
                .logs
                .iter()
                .filter(|l| l.level != LogLevel::Debug)
                .take(10)
                .map(|l| {
                    format!(
                        "[{}{}] {}",
                        l.level.as_str(),
                        l.node
                            .as_deref()
                            .map(|n| format!(" {n}"))
                            .unwrap_or_default(),
                        l.message
                    )
                })
                .collect();
            out.push(Difference {
                path: format!("logs[{i}]"),
                message: format!(
                    "no log line contains {:?}{}{}; the run logged: {}",
                    want.contains,
                    want.node
                        .as_deref()
                        .map(|n| format!(" from node {n}"))
                        .unwrap_or_default(),
                    want.level
                        .as_deref()
                        .map(|l| format!(" at {l}"))
                        .unwrap_or_default(),
                    if seen.is_empty() {
                        "nothing".to_string()
                    } else {
                        seen.join(" | ")
                    }
                ),
            });
        }
    }
}

/// `--update`: sets the `equals` expectations of case `index` (and the run
/// output when the case states none) to what the run gave. Returns the
/// places changed with their differences; `raw` is edited in place.
pub fn update(raw: &mut Value, index: usize, actual: &Actual) -> Vec<Difference> {
    let mut changed = Vec::new();
    let Some(case) = raw.pointer_mut(&format!("/cases/{index}")) else {
        return changed;
    };
    let Value::Object(case) = case else {
        return changed;
    };
    let expect = case
        .entry("expect")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(expect) = expect else {
        return changed;
    };
    let record = &actual.record;
    let exprs = crate::engine::expr::Expressions::new();
    let mut set =
        |slot: &mut Map<String, Value>, key: &str, value: Option<&Value>, at: &str, add: bool| {
            let Some(value) = value else { return };
            let current = slot.get(key);
            let replace = match current {
                None => add,
                Some(Value::Object(m)) => m.len() == 1 && m.contains_key("equals"),
                Some(_) => false,
            };
            if !replace {
                return;
            }
            let before = current
                .and_then(|m| m.get("equals"))
                .map(|e| Matcher::Equals(e.clone()).check(Some(value), &exprs, at))
                .unwrap_or_else(|| {
                    vec![Difference {
                        path: at.into(),
                        message: format!("now expected: {}", super::check::shown(Some(value))),
                    }]
                });
            if !before.is_empty() {
                changed.extend(before);
                slot.insert(key.into(), json!({"equals": value}));
            }
        };
    if record.status == Status::Succeeded {
        let wants_failure = expect
            .get("status")
            .and_then(Value::as_str)
            .is_some_and(|s| s != "succeeded");
        set(
            expect,
            "output",
            Some(&record.output),
            "output",
            !wants_failure,
        );
    }
    set(
        expect,
        "response",
        actual.response.as_ref(),
        "response",
        false,
    );
    if let Some(Value::Object(nodes)) = expect.get_mut("nodes") {
        for (id, e) in nodes.iter_mut() {
            if let (Value::Object(e), Some(n)) = (e, record.nodes.get(id)) {
                set(
                    e,
                    "output",
                    n.output.as_deref(),
                    &format!("nodes.{id}.output"),
                    false,
                );
            }
        }
    }
    changed
}
