//! `fuse runs list|show|logs|retry|pin|prune`: the recorded history.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::Globals;
use super::client::Client;
use super::progress::Mode;
use super::run::{CliEngine, report_load_error};
use crate::api::{Op, types};
use crate::engine::{RunRequest, duration};
use crate::home::Home;
use crate::store::Db as _;
use crate::store::history::{LogRow, RunDetail, RunFilter, RunSummary};

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// List recorded runs, newest first.
    #[command(
        after_help = "Examples:\n  fuse runs list\n  fuse runs list --workflow report --status failed --limit 5"
    )]
    List {
        /// Only runs of this workflow (its name).
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs with this status: running, succeeded, failed, cancelled, interrupted.
        #[arg(long)]
        status: Option<String>,
        /// At most this many runs (0 = all).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one run: its nodes, attempts, timings and errors (--node: one
    /// node's input, output and error).
    #[command(
        after_help = "Examples:\n  fuse runs show last\n  fuse runs show last --workflow report\n  fuse runs show 7c2e41ab --node fetch     # its input, output and error\n  fuse runs show 7c2e41ab --json | jq '.nodes[] | select(.status == \"failed\")'\n\nA run id may be the whole id, `last`, or any unique start or end of it (ids start\nwith their time, so the end tells runs of the same minute apart)."
    )]
    Show {
        /// Run id, `last`, or a unique start or end of an id.
        id: String,
        /// With `last`: the newest run of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this node: every attempt with its input, output and error.
        #[arg(long, value_name = "NODE_ID")]
        node: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the log lines of a run.
    #[command(after_help = "Examples:\n  fuse runs logs 7c2e41ab\n  fuse runs logs last")]
    Logs {
        /// Run id, `last`, or a unique start or end of an id.
        id: String,
        /// With `last`: the newest run of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run a recorded run again with the same workflow and input.
    #[command(
        after_help = "Examples:\n  fuse runs retry 0194f2c3\n  fuse runs retry 0194f2c3 --from-failed   # reuse the outputs of nodes that succeeded"
    )]
    Retry {
        /// Run id, `last`, or a unique start or end of an id.
        id: String,
        /// With `last`: the newest run of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Reuse the stored outputs of the nodes that succeeded; run only the rest.
        #[arg(long)]
        from_failed: bool,
        #[arg(long)]
        json: bool,
    },
    /// Turn a recorded run into a test case: its trigger input, the outputs of
    /// its side-effecting nodes as pins, what it did as expectations.
    #[command(
        after_help = "Examples:\n  fuse runs pin last --workflow report --into flows/report.test.json\n  fuse runs pin 7c2e41ab --into report.test.json --name \"busy API\" --all\n\nThe case is added to the file (which is created if needed); `fuse test FILE` runs it."
    )]
    Pin {
        /// Run id, `last`, or a unique start or end of an id.
        id: String,
        /// With `last`: the newest run of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// The test file to add the case to (NAME.test.json beside NAME.json).
        #[arg(long, value_name = "FILE")]
        into: std::path::PathBuf,
        /// The case's name (default: "run ID").
        #[arg(long)]
        name: Option<String>,
        /// Pin every node that ran (but flow.if/flow.switch), not only those with side effects.
        #[arg(long)]
        all: bool,
    },
    /// Delete finished runs older than a duration and give the space back.
    #[command(
        after_help = "Examples:\n  fuse runs prune --older-than 7d\n  fuse runs prune --older-than 12h"
    )]
    Prune {
        /// e.g. 30d, 12h, 90m.
        #[arg(long, value_name = "DURATION")]
        older_than: String,
    },
}

/// Where `fuse runs list|show|logs` read: the daemon's API while one serves
/// the home, else the database (with the store on PostgreSQL: the home's
/// own runs and the queue's). They give the same answers.
enum Source {
    Daemon(Client),
    Local(crate::store::Store, std::path::PathBuf),
    Shared(crate::store::queued::WithQueue),
}

impl Source {
    fn open(home: &Home) -> anyhow::Result<Source> {
        if crate::daemon::running(home).is_some()
            && let Ok(client) = Client::of_home(home)
        {
            tracing::info!("reading runs from the daemon at {}", client.info.url());
            return Ok(Source::Daemon(client));
        }
        if let Some(url) = home.store_url()? {
            let shared = std::sync::Arc::new(crate::store::pg::db::PgDb::open(&url)?);
            let local = crate::store::Sqlite::new(home.open_store()?, home.blobs_dir())?;
            tracing::info!(
                "reading runs from {} and the PostgreSQL queue",
                home.db_path().display()
            );
            let rt = shared.handle();
            return Ok(Source::Shared(crate::store::queued::WithQueue::new(
                std::sync::Arc::new(local),
                shared,
                rt,
                crate::worker::keeper_names(home),
            )));
        }
        tracing::info!("reading runs from {}", home.db_path().display());
        Ok(Source::Local(home.open_store()?, home.blobs_dir()))
    }

    fn list(&self, filter: &RunFilter) -> anyhow::Result<Vec<RunSummary>> {
        let client = match self {
            Source::Local(store, _) => return Ok(store.list_runs(filter)?),
            Source::Shared(db) => return Ok(db.list_runs(filter)?),
            Source::Daemon(client) => client,
        };
        // The API answers pages of at most 1,000.
        let mut runs = Vec::new();
        loop {
            let want = match filter.limit {
                0 => 1000,
                n => (n - runs.len()).min(1000),
            };
            let mut query = vec![
                ("limit", want.to_string()),
                ("offset", runs.len().to_string()),
            ];
            if let Some(w) = &filter.workflow {
                query.push(("workflow", w.clone()));
            }
            if let Some(s) = &filter.status {
                query.push(("status", s.clone()));
            }
            let page = client
                .send::<types::Executions>(Op::ListExecutions, &[], &query, None::<&Value>)?
                .executions;
            let got = page.len();
            runs.extend(page);
            if got < want || (filter.limit > 0 && runs.len() >= filter.limit) {
                return Ok(runs);
            }
        }
    }

    /// The full id of a run: an id, a unique part of one, or `last` (of
    /// `workflow` when given).
    fn resolve(&self, id: &str, workflow: Option<&str>) -> anyhow::Result<String> {
        match self {
            Source::Local(store, _) => Ok(store.resolve_run(id, workflow)?),
            Source::Daemon(_) | Source::Shared(_) if id.trim() == "last" && workflow.is_some() => {
                let newest = self.list(&RunFilter {
                    workflow: workflow.map(str::to_string),
                    limit: 1,
                    ..Default::default()
                })?;
                match newest.into_iter().next() {
                    Some(run) => Ok(run.id),
                    None => Err(crate::Error::NotFound(format!(
                        "no recorded run of workflow {:?}; `fuse runs list` shows the recorded runs",
                        workflow.unwrap_or_default()
                    ))
                    .into()),
                }
            }
            Source::Shared(db) => Ok(db.resolve_run(id)?),
            Source::Daemon(client) => {
                Ok(client.get::<RunDetail>(Op::GetExecution, &[id])?.summary.id)
            }
        }
    }

    fn get(&self, id: &str) -> anyhow::Result<RunDetail> {
        match self {
            Source::Local(store, blobs) => Ok(store.get_run(id, blobs)?),
            Source::Shared(db) => Ok(db.get_run(id)?),
            Source::Daemon(client) => client.get(Op::GetExecution, &[id]),
        }
    }

    fn logs(&self, id: &str) -> anyhow::Result<Vec<LogRow>> {
        match self {
            Source::Local(store, _) => Ok(store.run_logs(id)?),
            Source::Shared(db) => Ok(db.run_logs(id)?),
            Source::Daemon(client) => Ok(client.get::<types::Logs>(Op::ExecutionLogs, &[id])?.logs),
        }
    }
}

pub fn run(globals: &Globals, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    match command {
        read_only @ (RunsCommand::List { .. }
        | RunsCommand::Show { .. }
        | RunsCommand::Logs { .. }) => read(&home, read_only),
        RunsCommand::Retry {
            id,
            workflow,
            from_failed,
            json,
        } => retry(globals, &home, &id, workflow.as_deref(), from_failed, json),
        RunsCommand::Prune { older_than } => prune(globals, &home, &older_than),
        RunsCommand::Pin {
            id,
            workflow,
            into,
            name,
            all,
        } => pin(&home, &id, workflow.as_deref(), &into, name, all),
    }
}

fn retry(
    globals: &Globals,
    home: &Home,
    id: &str,
    workflow: Option<&str>,
    from_failed: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = home.open_store()?;
    let id = store.resolve_run(id, workflow)?;
    let run = store.get_run(&id, &home.blobs_dir())?;
    let hash = run.workflow_hash.clone().unwrap_or_default();
    let Some(definition) = store.definition(&hash)? else {
        anyhow::bail!(
            "the workflow of run {} is no longer stored, so it cannot be retried",
            run.summary.id
        );
    };
    drop(store);
    let quiet = globals.quiet;
    let cli = CliEngine::open(globals, true, Mode::detect(quiet))?;
    let source = run.source_path.as_deref().map(std::path::Path::new);
    let plan = match cli.engine.load_str(&definition, source) {
        Ok(plan) => plan,
        Err(e) => return Ok(report_load_error(&e)),
    };
    let mut request = RunRequest::new(run.input.clone(), "retry");
    request.retry_of = Some(run.summary.id.clone());
    if from_failed {
        request.reuse = crate::store::history::succeeded_outputs(&run.nodes);
    }
    let record = cli.run(plan, request)?;
    cli.finish(&record, json, quiet)
}

/// `fuse runs pin`: adds the run as a case to a test file.
fn pin(
    home: &Home,
    id: &str,
    workflow: Option<&str>,
    into: &std::path::Path,
    name: Option<String>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    let source = Source::open(home)?;
    let id = source.resolve(id, workflow)?;
    let run = source.get(&id)?;
    if run.summary.status == "running" || run.summary.status == "queued" {
        anyhow::bail!(crate::Error::Refused(format!(
            "run {id} is still {}; pin it once it has finished",
            run.summary.status
        )));
    }
    let mut file = if into.exists() {
        let text = std::fs::read_to_string(into)
            .with_context(|| format!("cannot read {}", into.display()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            crate::Error::Setting(format!(
                "{} is not JSON ({e}); pin into a new file or fix it first",
                into.display()
            ))
        })?;
        if !value.get("cases").is_some_and(Value::is_array) {
            anyhow::bail!(crate::Error::Setting(format!(
                "{} is not a test file (it has no `cases` list)",
                into.display()
            )));
        }
        value
    } else {
        let mut file = serde_json::json!({});
        if !crate::testing::is_test_file(into) {
            anyhow::bail!(crate::Error::Setting(format!(
                "{} is not named NAME{}: call it after its workflow (report.json → report.test.json)",
                into.display(),
                crate::testing::SUFFIX
            )));
        }
        let sibling = into
            .to_string_lossy()
            .strip_suffix(crate::testing::SUFFIX)
            .map(|stem| std::path::PathBuf::from(format!("{stem}.json")));
        if let (Some(sibling), Some(src)) = (&sibling, &run.source_path)
            && !sibling.exists()
        {
            // The run's workflow file, when it is not the file's namesake.
            file["workflow"] = Value::String(src.clone());
        }
        file["cases"] = serde_json::json!([]);
        file
    };
    let cases = file
        .get_mut("cases")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| anyhow::anyhow!("the test file has no `cases` list"))?;
    let taken: std::collections::HashSet<String> = cases
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let base = name.unwrap_or_else(|| format!("run {}", short_id(&id)));
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base} ({n})");
        n += 1;
    }
    let case = crate::testing::record::case_from_run(&run, &name, all);
    let pinned = case
        .get("pins")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    cases.push(case);
    let mut text = serde_json::to_string_pretty(&file)?;
    text.push('\n');
    crate::files::write_atomic(into, text.as_bytes(), None)
        .with_context(|| format!("cannot write {}", into.display()))?;
    outln!(
        "added case {name:?} to {} ({})",
        into.display(),
        if pinned.is_empty() {
            "no node pinned".to_string()
        } else {
            format!("pinned: {}", pinned.join(", "))
        }
    );
    eprintln!("next: fuse test {}", into.display());
    Ok(ExitCode::SUCCESS)
}

fn short_id(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

fn prune(globals: &Globals, home: &Home, older_than: &str) -> anyhow::Result<ExitCode> {
    let store = home.open_store()?;
    let age = duration::parse(older_than).map_err(crate::Error::Setting)?;
    let cutoff = crate::engine::events::now_ms() - age.as_millis() as i64;
    let (n, freed) = store.prune_before(cutoff, &home.blobs_dir())?;
    if !globals.quiet {
        outln!(
            "deleted {n} run(s) older than {older_than}; gave back {} (the database is now {})",
            bytes(freed),
            bytes(store.files_size())
        );
    }
    // With the store on PostgreSQL, the queue's finished runs too.
    if let Some(url) = home.store_url()? {
        let db = crate::store::pg::db::PgDb::open(&url)?;
        let queued =
            db.wait(
                db.pg()
                    .prune_runs(Some(cutoff), None, 500, &crate::store::pg::Scope::All),
            )?;
        if !globals.quiet {
            outln!("deleted {queued} queued run(s) older than {older_than} from PostgreSQL");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `list`, `show` and `logs`: from the daemon while it runs, else the database.
fn read(home: &Home, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let source = Source::open(home)?;
    match command {
        RunsCommand::List {
            workflow,
            status,
            limit,
            json,
        } => {
            let runs = source.list(&RunFilter {
                workflow,
                status,
                limit,
                ..Default::default()
            })?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(ExitCode::SUCCESS);
            }
            if runs.is_empty() {
                outln!("no runs recorded yet; `fuse run FILE` records one");
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "{:<36}  {:<20}  {:<11}  {:<8}  {:<19}  {:>8}  ERROR",
                "ID",
                "WORKFLOW",
                "STATUS",
                "TRIGGER",
                "STARTED",
                "DURATION"
            );
            for r in runs {
                outln!(
                    "{:<36}  {:<20}  {:<11}  {:<8}  {:<19}  {:>8}  {}",
                    r.id,
                    clip(&r.workflow, 20),
                    r.status,
                    r.trigger,
                    local_time(r.created_at),
                    r.duration_ms.map(ms).unwrap_or_else(|| "-".into()),
                    clip(r.error.as_deref().unwrap_or(""), 60)
                );
            }
        }
        RunsCommand::Show {
            id,
            workflow,
            node,
            json,
        } => {
            let id = source.resolve(&id, workflow.as_deref())?;
            let run = source.get(&id)?;
            if let Some(node) = node {
                return show_node(&run, &node, json);
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&run)?);
                return Ok(ExitCode::SUCCESS);
            }
            let s = &run.summary;
            outln!("run       {}", s.id);
            outln!(
                "workflow  {}{}",
                s.workflow,
                run.source_path
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            );
            outln!("status    {}", s.status);
            outln!("trigger   {}", s.trigger);
            outln!("started   {}", local_time(s.created_at));
            outln!(
                "duration  {}",
                s.duration_ms.map(ms).unwrap_or_else(|| "-".into())
            );
            if let Some(parent) = &s.parent_id {
                outln!("parent    {parent}");
            }
            if let Some(of) = &s.retry_of {
                outln!("retry of  {of}");
            }
            if let Some(e) = &s.error {
                outln!("error     {e}");
            }
            if let Some(u) = &run.usage {
                outln!(
                    "tokens    {} ({} prompt, {} completion)",
                    u["total_tokens"],
                    u["prompt_tokens"],
                    u["completion_tokens"]
                );
            }
            outln!();
            outln!(
                "{:<24}  {:<16}  {:<10}  {:>8}  {:>8}  ERROR",
                "NODE",
                "TYPE",
                "STATUS",
                "ATTEMPTS",
                "DURATION"
            );
            for (node, rows) in crate::store::history::by_node(&run.nodes) {
                let last = rows.last().copied();
                let attempts = rows
                    .iter()
                    .filter(|r| r.item.is_none() || r.item == Some(0))
                    .map(|r| r.attempt)
                    .max()
                    .unwrap_or(0);
                let duration: i64 = rows.iter().filter_map(|r| r.duration_ms).sum();
                let failed = rows.iter().rev().find(|r| r.status == "failed");
                let status = match (rows.iter().any(|r| r.item.is_some()), failed) {
                    (true, Some(_))
                        if rows
                            .iter()
                            .all(|r| r.status != "succeeded" || r.item.is_some())
                            && last.is_some_and(|l| l.status == "failed") =>
                    {
                        "failed"
                    }
                    _ => last.map_or("-", |l| l.status.as_str()),
                };
                let error = if status == "failed" {
                    failed
                        .and_then(|f| f.error.as_ref())
                        .and_then(|e| e.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                } else {
                    ""
                };
                outln!(
                    "{:<24}  {:<16}  {:<10}  {:>8}  {:>8}  {}",
                    clip(node, 24),
                    clip(last.map_or("", |l| l.node_type.as_str()), 16),
                    status,
                    attempts,
                    if attempts == 0 {
                        "-".into()
                    } else {
                        ms(duration)
                    },
                    clip(error, 80)
                );
            }
            if !run.steps.is_empty() {
                outln!();
                outln!("STEPS (`fuse runs show ID --node NODE` shows their data)");
                for step in &run.steps {
                    outln!("  {}", step_line(step));
                }
            }
        }
        RunsCommand::Logs { id, workflow, json } => {
            let id = source.resolve(&id, workflow.as_deref())?;
            let logs = source.logs(&id)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&logs)?);
            } else {
                for l in logs {
                    outln!(
                        "{} {:<5} [{}] {}",
                        local_time_ms(l.ts),
                        l.level,
                        l.node_id.as_deref().unwrap_or("run"),
                        l.message
                    );
                }
            }
        }
        RunsCommand::Retry { .. } | RunsCommand::Prune { .. } | RunsCommand::Pin { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Node rows grouped by node, in first-seen order.
fn clip(s: &str, n: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= n {
        s
    } else {
        format!(
            "{}…",
            s.chars().take(n.saturating_sub(1)).collect::<String>()
        )
    }
}

fn ms(v: i64) -> String {
    duration::human(std::time::Duration::from_millis(v.max(0) as u64))
}

pub(super) fn local_time(ms: i64) -> String {
    format_time(ms, "%Y-%m-%d %H:%M:%S")
}

pub(super) fn local_time_ms(ms: i64) -> String {
    format_time(ms, "%H:%M:%S%.3f")
}

fn format_time(ms: i64, format: &str) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime(format)
                .to_string()
        })
        .unwrap_or_else(|_| ms.to_string())
}

/// `fuse runs show ID --node N`: every attempt of one node with its data.
fn show_node(
    run: &crate::store::history::RunDetail,
    node: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let rows: Vec<&crate::store::history::NodeRunRow> =
        run.nodes.iter().filter(|r| r.node_id == node).collect();
    if rows.is_empty() {
        let mut ids: Vec<&str> = run.nodes.iter().map(|r| r.node_id.as_str()).collect();
        ids.dedup();
        let hint = crate::workflow::validate::closest(node, ids.iter().copied())
            .map(|n| format!("did you mean {n:?}? "))
            .unwrap_or_default();
        anyhow::bail!(crate::Error::Setting(format!(
            "run {} has no node {node:?}; {hint}its nodes are: {}",
            run.summary.id,
            ids.join(", ")
        )));
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let pretty = |v: &Option<Value>| -> anyhow::Result<String> {
        Ok(match v {
            None => "-".to_string(),
            Some(v) => serde_json::to_string_pretty(v)?.replace('\n', "\n    "),
        })
    };
    outln!("run {} node {node} ({})", run.summary.id, rows[0].node_type);
    for r in rows {
        let item = r.item.map(|i| format!(" item {i}")).unwrap_or_default();
        outln!();
        outln!(
            "attempt {}{item}: {} {}",
            r.attempt,
            r.status,
            r.duration_ms.map(ms).unwrap_or_default()
        );
        outln!("  input   {}", pretty(&r.input)?);
        outln!("  output  {}", pretty(&r.output)?);
        if r.error.is_some() {
            outln!("  error   {}", pretty(&r.error)?);
        }
    }
    let steps: Vec<_> = run.steps.iter().filter(|s| s.node_id == node).collect();
    if !steps.is_empty() {
        outln!();
        outln!("steps:");
        for step in steps {
            outln!("  {}", step_line(step));
            outln!(
                "    input   {}",
                pretty(&step.input)?.replace('\n', "\n    ")
            );
            if step.output.is_some() {
                outln!(
                    "    output  {}",
                    pretty(&step.output)?.replace('\n', "\n    ")
                );
            }
            if step.error.is_some() {
                outln!(
                    "    error   {}",
                    pretty(&step.error)?.replace('\n', "\n    ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One step as a line: `agent #2 tool search: succeeded 12ms`.
fn step_line(step: &crate::store::history::StepRow) -> String {
    let tokens = step
        .tokens
        .map(|t| format!(", {t} tokens"))
        .unwrap_or_default();
    format!(
        "{} #{} {} {}: {} {}{tokens}",
        step.node_id,
        step.seq,
        step.kind,
        step.name,
        step.status,
        ms(step.duration_ms)
    )
}

/// A size as people read it.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}
