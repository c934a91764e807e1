//! `fuse run FILE`: runs a workflow in this process and prints its result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Map, Value};

use super::Globals;
use super::progress::{Mode, Progress};
use crate::engine::{Engine, Fanout, LoadError, Observer, RunRecord, RunRequest, Status};
use crate::home::Home;
use crate::nodes::Registry;
use crate::secrets::vault::HomeCredentials;
use crate::store::Recorder;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The workflow file (JSON).
    pub file: PathBuf,

    /// A run input value, KEY=VALUE; VALUE is parsed as JSON when it is valid JSON. Repeatable.
    #[arg(short, long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,

    /// A JSON object file as the run input (`-` for stdin); --input values override its keys.
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,

    /// Print the run record (status, output, error, per-node results) as JSON.
    #[arg(long)]
    pub json: bool,

    /// Do not record this run in the history database.
    #[arg(long)]
    pub no_history: bool,

    /// Run it on the daemon instead (deploys the file as a new version, follows
    /// the run's live events, prints its output).
    #[arg(long, conflicts_with_all = ["no_history", "pins", "trigger"])]
    pub remote: bool,

    /// Queue the run in PostgreSQL for `fuse worker` processes (--store or
    /// FUSE_STORE_URL) and wait for its result (preview: docs/scale-out.md).
    #[arg(long, conflicts_with_all = ["remote", "no_history", "pins", "trigger"])]
    pub queue: bool,

    /// The PostgreSQL database of the queue, with --queue (default: the
    /// home's store.url or FUSE_STORE_URL).
    #[arg(long, value_name = "URL", requires = "queue")]
    pub store: Option<String>,

    /// Do not run node NODE: use the JSON in FILE as its output. Repeatable.
    #[arg(long = "pin", value_name = "NODE=FILE")]
    pub pins: Vec<String>,

    /// Simulate a trigger: `webhook` (the body from --body, headers from
    /// --header) or `schedule` (a fire at --at); `TYPE:NODE` names the
    /// trigger node when the workflow has several.
    #[arg(long, value_name = "TYPE[:NODE]")]
    pub trigger: Option<String>,

    /// The webhook body (a JSON file, or text; `-` for stdin), with --trigger webhook.
    #[arg(long, value_name = "FILE", requires = "trigger")]
    pub body: Option<PathBuf>,

    /// A webhook request header, NAME=VALUE. Repeatable. With --trigger webhook.
    #[arg(long = "header", value_name = "NAME=VALUE", requires = "trigger")]
    pub headers: Vec<String>,

    /// A webhook query parameter, NAME=VALUE. Repeatable. With --trigger webhook.
    #[arg(long = "query", value_name = "NAME=VALUE", requires = "trigger")]
    pub query: Vec<String>,

    /// The fire time of --trigger schedule (RFC 3339; default now).
    #[arg(long, value_name = "TIME", requires = "trigger")]
    pub at: Option<String>,
}

/// An engine for the CLI, recording to the home's history when there is one.
pub(super) struct CliEngine {
    pub engine: Engine,
    pub recorder: Option<Arc<Recorder>>,
    /// With the store on PostgreSQL: what keeps runs there, and the store
    /// (its runtime writes them).
    pub keeper: Option<(Arc<crate::worker::Keeper>, Arc<crate::store::pg::db::PgDb>)>,
    pub progress: Arc<Progress>,
}

/// The built-in node types plus the home's node packages. A package that cannot
/// be loaded is reported (unless `report` is false) and left out; the others work.
pub(super) fn home_registry(
    home: &Home,
    settings: &crate::nodes::Settings,
    report: bool,
) -> Registry {
    if !home.is_initialized() {
        return Registry::with_settings(settings);
    }
    let (registry, catalog) = crate::packages::registry_of_home(settings, home);
    if report {
        for problem in &catalog.problems {
            eprintln!("warning: {problem} (skipped; `fuse nodes doctor` checks packages)");
        }
    }
    registry
}

impl CliEngine {
    pub fn open(globals: &Globals, history: bool, mode: Mode) -> anyhow::Result<CliEngine> {
        let home = Home::resolve(globals.home.clone())?;
        let progress = Arc::new(Progress::new(mode));
        let mut observers: Vec<Arc<dyn Observer>> = vec![progress.clone()];
        let mut max_parallel = crate::config::EngineConfig::default().max_parallel;
        let mut recorder = None;
        let mut keeper = None;
        let mut settings = crate::nodes::Settings::default();
        if home.probe()? {
            let config = home.config(&Default::default())?;
            max_parallel = config.engine.max_parallel;
            settings = crate::nodes::Settings::of_home(&home, &config);
            if history {
                let store = home.open_store()?;
                let r = Arc::new(Recorder::start(
                    store,
                    home.blobs_dir(),
                    config.history,
                    crate::store::recorder::Mode::OneShot,
                )?);
                observers.push(r.clone());
                recorder = Some(r);
                // With the store on PostgreSQL the run is kept there too, for
                // every daemon on the store to list.
                if let Some(url) = config.store.postgres() {
                    let store = crate::store::pg::db::shared(url)?;
                    let k = Arc::new(crate::worker::Keeper::start(
                        store.pg().clone(),
                        crate::worker::cli_keeper_name(&home),
                        &store.handle(),
                    ));
                    observers.push(k.clone());
                    keeper = Some((k, store));
                }
            }
        } else if history && mode != Mode::Silent {
            eprintln!(
                "note: this run is not recorded: there is no fuse home at {} (run `fuse init` to keep run history)",
                home.root().display()
            );
        }
        let registry = home_registry(&home, &settings, mode != Mode::Silent);
        let mut engine = Engine::new(registry, Arc::new(Fanout(observers)), max_parallel);
        if home.is_initialized() {
            // Opened on first use: a run that names no credential never loads the key.
            engine = engine.with_credentials(Arc::new(HomeCredentials::new(home.clone())));
        }
        Ok(CliEngine {
            engine,
            recorder,
            keeper,
            progress,
        })
    }

    /// Runs a plan on a fresh runtime with Ctrl-C cancelling it.
    pub fn run(&self, plan: crate::Plan, request: RunRequest) -> anyhow::Result<RunRecord> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let cancel = request.cancel.clone();
        let engine = self.engine.clone();
        let record = runtime.block_on(async move {
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\ncancelling the run (press Ctrl-C again to abort at once)…");
                    cancel.cancel();
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            });
            engine.run(Arc::new(plan), request).await
        });
        // Blocking tasks (a jq program that never ends) must not hold up exit.
        runtime.shutdown_timeout(std::time::Duration::from_millis(200));
        self.progress.finish();
        if let Some(r) = &self.recorder {
            r.flush();
        }
        if let Some((k, _)) = &self.keeper
            && !k.flush(std::time::Duration::from_secs(10))
        {
            eprintln!(
                "warning: the run could not be kept on PostgreSQL in time; it is in this home's history"
            );
        }
        Ok(record)
    }
}

pub fn run(globals: &Globals, args: RunArgs) -> anyhow::Result<ExitCode> {
    let quiet = globals.quiet;
    let input = run_input(&args.inputs, args.input_file.as_deref())?;
    if args.remote {
        return super::daemon::run_remote(globals, &args.file, input, args.json);
    }
    // A queued run is recorded by the queue, not this home's history.
    let cli = CliEngine::open(
        globals,
        !args.no_history && !args.queue,
        Mode::detect(quiet),
    )?;
    let plan = match cli.engine.load(&args.file) {
        Ok(plan) => plan,
        Err(e) => return Ok(report_load_error(&e)),
    };
    if !quiet {
        for w in &plan.warnings {
            eprintln!("warning: {w}");
        }
    }
    let pins = pins_of(&plan, &args.pins)?;
    let (input, trigger, entry) = match &args.trigger {
        None => (input, "manual", None),
        Some(spec) => simulated_trigger(&plan, spec, &args, input)?,
    };
    let input = match crate::engine::trigger::checked_input(&plan, input, trigger, false) {
        Ok(input) => input,
        Err(problems) => {
            eprintln!(
                "error: the input does not fit the params of {}:",
                args.file.display()
            );
            for p in &problems {
                eprintln!("  - {p}");
            }
            if let Some(params) = &plan.params {
                eprintln!("its params:");
                for p in params {
                    eprintln!("  {p}");
                }
            }
            eprintln!("hint: pass them as --input NAME=VALUE; `fuse validate FILE` lists them");
            return Ok(ExitCode::from(2));
        }
    };
    if args.queue {
        let store = match args.store.clone() {
            Some(url) => Some(url),
            None => Home::resolve(globals.home.clone())?.store_url()?,
        };
        return queue_run(&plan, input, store.as_deref(), args.json, quiet);
    }
    let mut request = RunRequest::new(input, "cli");
    request.pins = Arc::new(pins);
    request.entry = entry;
    // Only `--json` prints every node's output; otherwise the run need not keep them.
    request.keep_outputs = args.json;
    // A simulated caller for `webhook.respond` (its answer is the node's output).
    let (answer_tx, _answer) = tokio::sync::oneshot::channel();
    if trigger == "webhook" {
        request.responder = Some(Arc::new(std::sync::Mutex::new(Some(answer_tx))));
    }
    let record = cli.run(plan, request)?;
    cli.finish(&record, args.json, quiet)
}

/// `--queue`: the run goes to the workers' queue; this waits for its result.
fn queue_run(
    plan: &crate::Plan,
    input: Value,
    store: Option<&str>,
    json: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let Some(url) = store else {
        anyhow::bail!(crate::Error::Setting(
            "--queue needs the store on PostgreSQL: --store postgres://…, FUSE_STORE_URL or store.url in fuse.toml".into()
        ));
    };
    crate::store::pg::check_url(url).map_err(crate::Error::Setting)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let id = uuid::Uuid::now_v7().to_string();
    let run = crate::store::pg::NewRun {
        id: id.clone(),
        workflow: plan.id.clone(),
        definition: plan
            .definition
            .text()
            .map_err(anyhow::Error::msg)?
            .to_string(),
        input,
        trigger_kind: "cli".into(),
        entry: None,
        needs: crate::worker::needs_of_plan(plan),
        tags: Vec::new(),
    };
    let finished = runtime.block_on(async {
        let pg = crate::store::pg::Pg::connect(url).await?;
        pg.enqueue(&run).await?;
        if !quiet {
            eprintln!("queued run {id}; waiting for a worker (Ctrl-C stops waiting, not the run)");
        }
        // Quick runs are seen within milliseconds; long ones cost a query per 100ms.
        let mut wait = std::time::Duration::from_millis(1);
        loop {
            match pg.queued_run(&id).await? {
                Some(r) if matches!(r.status.as_str(), "succeeded" | "failed" | "cancelled") => {
                    return Ok::<_, anyhow::Error>(r);
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_millis(100));
                }
            }
        }
    })?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    if json {
        serde_json::to_writer_pretty(&mut out, &finished)?;
        writeln!(out)?;
    } else if finished.status == "succeeded" {
        serde_json::to_writer_pretty(&mut out, &finished.output.clone().unwrap_or_default())?;
        writeln!(out)?;
    }
    if finished.status == "succeeded" {
        if !quiet && !json {
            eprintln!(
                "succeeded on worker {}",
                finished.worker.as_deref().unwrap_or("?")
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: run {id} {}: {}",
            finished.status,
            finished.error.as_deref().unwrap_or("no error recorded")
        );
        Ok(ExitCode::from(1))
    }
}

/// `--pin NODE=FILE` values: each node must be in the workflow, each file JSON.
fn pins_of(
    plan: &crate::Plan,
    specs: &[String],
) -> anyhow::Result<std::collections::HashMap<String, crate::engine::pin::Pin>> {
    let mut pins = std::collections::HashMap::new();
    for spec in specs {
        let Some((node, file)) = spec.split_once('=') else {
            anyhow::bail!(crate::Error::Setting(format!(
                "--pin {spec:?} is not NODE=FILE (e.g. --pin fetch=fetch-output.json)"
            )));
        };
        if plan.node(node).is_none() {
            anyhow::bail!(crate::Error::Setting(format!(
                "--pin {spec:?}: {} has no node {node:?} (its nodes: {})",
                plan.name,
                plan.nodes
                    .iter()
                    .map(|n| &*n.id)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let value = read_json_file(Path::new(file), "--pin")?;
        pins.insert(node.to_string(), crate::engine::pin::Pin::output(value));
    }
    Ok(pins)
}

/// A JSON file's value (`-`: stdin), for --pin and --body.
fn read_json_file(file: &Path, what: &str) -> anyhow::Result<Value> {
    let text =
        read_text(file).with_context(|| format!("{what}: cannot read {}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::Error::new(crate::Error::Setting(format!(
            "{what}: {} is not valid JSON: {e}",
            file.display()
        )))
    })
}

fn read_text(file: &Path) -> std::io::Result<String> {
    if file == Path::new("-") {
        return std::io::read_to_string(std::io::stdin());
    }
    let bytes = crate::files::read_regular(file, crate::engine::MAX_WORKFLOW_BYTES)?;
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

/// The input, trigger kind and entry node of `--trigger TYPE[:NODE]`.
fn simulated_trigger(
    plan: &crate::Plan,
    spec: &str,
    args: &RunArgs,
    input: Value,
) -> anyhow::Result<(Value, &'static str, Option<String>)> {
    use crate::engine::trigger::{self, Kind};
    let (kind, node) = match spec.split_once(':') {
        Some((k, n)) => (k, Some(n)),
        None => (spec, None),
    };
    let kind = match kind {
        "webhook" => Kind::Webhook,
        "schedule" | "cron" => Kind::Schedule,
        "manual" => return Ok((input, "manual", node.map(str::to_string))),
        other => anyhow::bail!(crate::Error::Setting(format!(
            "--trigger {other:?} is not webhook, schedule or manual"
        ))),
    };
    let entry = trigger::entry_node(plan, kind, node)
        .map_err(|e| anyhow::Error::new(crate::Error::Setting(format!("--trigger: {e}"))))?
        .to_string();
    if kind == Kind::Schedule {
        let at = match &args.at {
            None => jiff::Timestamp::now(),
            Some(t) => t.parse().map_err(|e| {
                anyhow::Error::new(crate::Error::Setting(format!(
                    "--at {t:?} is not an RFC 3339 time (e.g. 2026-05-01T09:00:00Z): {e}"
                )))
            })?,
        };
        return Ok((
            trigger::simulated_fire(plan, &entry, at),
            "cron",
            Some(entry),
        ));
    }
    let body = match &args.body {
        None => input,
        Some(file) => {
            let text = read_text(file)
                .with_context(|| format!("--body: cannot read {}", file.display()))?;
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        }
    };
    let pairs = |flag: &str, list: &[String]| -> anyhow::Result<Map<String, Value>> {
        let mut map = Map::new();
        for pair in list {
            let Some((name, value)) = pair.split_once('=') else {
                anyhow::bail!(crate::Error::Setting(format!(
                    "--{flag} {pair:?} is not NAME=VALUE (e.g. --{flag} x-event=push)"
                )));
            };
            map.insert(name.trim().to_string(), Value::String(value.to_string()));
        }
        Ok(map)
    };
    let (headers, query) = (
        pairs("header", &args.headers)?,
        pairs("query", &args.query)?,
    );
    let input = trigger::simulated_webhook(plan, &entry, None, headers, query, body);
    Ok((input, "webhook", Some(entry)))
}

impl CliEngine {
    /// Prints the run's result and turns it into the exit code, which is
    /// [`HISTORY_FAILED`] when the run (or a sub-run) could not be recorded.
    pub fn finish(&self, record: &RunRecord, json: bool, quiet: bool) -> anyhow::Result<ExitCode> {
        let failures = self
            .recorder
            .as_ref()
            .map(|r| r.failures())
            .unwrap_or_default();
        let recorded = self.recorder.is_some() && failures.is_empty();
        let code = print_record(record, json, quiet, recorded)?;
        if let Some((run_id, why)) = failures.first() {
            eprintln!(
                "error: the run {} but its history could not be recorded (run {run_id}): {why}",
                record.status.as_str()
            );
            eprintln!(
                "hint: `fuse runs show {}` may be missing or incomplete; exit code {} means the run was not recorded",
                record.run_id, HISTORY_FAILED
            );
            return Ok(ExitCode::from(HISTORY_FAILED));
        }
        Ok(code)
    }
}

/// Exit code of a run whose history could not be written (whatever its status).
pub const HISTORY_FAILED: u8 = 4;

/// Prints a load error and returns exit code 2 (invalid workflow) or 1 (unreadable).
pub(super) fn report_load_error(e: &LoadError) -> ExitCode {
    eprintln!("error: {e}");
    match e {
        LoadError::Read { .. } => ExitCode::from(1),
        LoadError::Parse { .. } | LoadError::Invalid { .. } => {
            eprintln!(
                "hint: `fuse validate FILE` lists every problem; `fuse schema workflow` prints the format"
            );
            ExitCode::from(2)
        }
    }
}

/// Prints the result (or record) and turns the status into the exit code.
pub(super) fn print_record(
    record: &RunRecord,
    json: bool,
    quiet: bool,
    recorded: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, record)?;
        writeln!(out)?;
    } else if record.status == Status::Succeeded {
        serde_json::to_writer_pretty(&mut out, &record.output)?;
        writeln!(out)?;
    }
    out.flush()?;
    if record.status != Status::Succeeded {
        eprintln!(
            "error: run {} {}: {}",
            record.run_id,
            record.status.as_str(),
            record.error.as_deref().unwrap_or("no error recorded")
        );
        if recorded {
            let failed = record
                .nodes
                .iter()
                .find(|(_, n)| n.status == Status::Failed)
                .map(|(id, _)| id.clone());
            match failed {
                Some(node) => eprintln!(
                    "hint: `fuse runs show {} --node {node}` shows that node's input, output and error",
                    record.run_id
                ),
                None => eprintln!(
                    "hint: `fuse runs show {}` lists its nodes; add `--node ID` for one node's input and output",
                    record.run_id
                ),
            }
        }
    } else if !quiet && !json {
        let recorded = if recorded {
            format!(" (run {})", record.run_id)
        } else {
            String::new()
        };
        if let Some(total) = record.usage.as_ref().and_then(|u| u.get("total_tokens")) {
            eprintln!("tokens used: {total}");
        }
        eprintln!(
            "succeeded in {}{recorded}",
            crate::engine::duration::human(std::time::Duration::from_millis(record.duration_ms))
        );
    }
    Ok(if record.status == Status::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Builds the run input from --input-file and --input KEY=VALUE pairs.
pub(super) fn run_input(pairs: &[String], file: Option<&Path>) -> anyhow::Result<Value> {
    let mut map = Map::new();
    if let Some(file) = file {
        let text = read_text(file)
            .with_context(|| format!("cannot read the input file {}", file.display()))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => map = m,
            Ok(_) => anyhow::bail!(crate::Error::Setting(format!(
                "the input file {} must hold a JSON object",
                file.display()
            ))),
            Err(e) => anyhow::bail!(crate::Error::Setting(format!(
                "the input file {} is not valid JSON: {e}",
                file.display()
            ))),
        }
    }
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            anyhow::bail!(crate::Error::Setting(format!(
                "--input {pair:?} is not KEY=VALUE (e.g. --input name=Ada or --input count=3)"
            )));
        };
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        map.insert(key.to_string(), value);
    }
    Ok(Value::Object(map))
}
