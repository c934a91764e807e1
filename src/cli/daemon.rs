//! `fuse start`, `fuse stop`, `fuse status`: the local daemon.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use crate::api::{Op, types};

use super::Globals;
use crate::daemon;
use crate::home::Home;

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Stay in the foreground (for systemd, launchd, containers); logs on stderr.
    #[arg(long)]
    pub foreground: bool,
    /// Port to listen on (default daemon.port; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Do not open the dashboard in a browser (the sign-in link is printed
    /// either way; a browser opens only on a desktop: a terminal and a display).
    #[arg(long)]
    pub skip_browser: bool,
    /// Set by `fuse start` for the detached daemon: once it listens, its
    /// output goes to this file (until then to `fuse start`, which shows it).
    #[arg(long, hide = true, requires = "foreground")]
    pub log_file: Option<std::path::PathBuf>,
    /// With a PostgreSQL queue (FUSE_STORE_URL): what this daemon does,
    /// from api, scheduler, worker (default all three; `api,scheduler` leaves
    /// running runs to `fuse worker` processes).
    #[arg(long, env = "FUSE_ROLES", value_delimiter = ',', value_name = "ROLE,…")]
    pub role: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Only print the link; do not open a browser.
    #[arg(long)]
    pub skip_browser: bool,
    /// Print `{"url": …, "expires_in_s": …}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,

    /// Also show the worker pool of this PostgreSQL queue: workers, queue
    /// depth, runs no worker can take.
    #[arg(
        long,
        env = "FUSE_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
}

pub fn start(globals: &Globals, args: StartArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let roles = daemon::Roles::parse(&args.role).map_err(crate::Error::Setting)?;
    if args.foreground {
        daemon::run_foreground(&home, args.port, args.log_file.as_deref(), roles)?;
        return Ok(ExitCode::SUCCESS);
    }
    let info = daemon::start_detached(&home, args.port, roles)?;
    if !globals.quiet {
        outln!(
            "fuse daemon started (pid {}) on {}; logs in {}; `fuse stop` stops it",
            info.pid,
            info.url(),
            home.logs_dir().join("daemon.log").display()
        );
    }
    // The dashboard's sign-in link: a daemon that started is not undone by a
    // link it could not make.
    match login_link(&home) {
        Ok(link) => {
            if !globals.quiet {
                outln!(
                    "dashboard {} (one-time sign-in link, valid {}s; `fuse dashboard` makes another)",
                    link.url,
                    link.expires_in_s
                );
            }
            if !args.skip_browser && on_a_desktop() {
                open_browser(&link.url);
            }
        }
        Err(e) => eprintln!("warning: no dashboard sign-in link: {e:#}; try `fuse dashboard`"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `fuse dashboard`: a new one-time sign-in link from the running daemon.
pub fn dashboard(globals: &Globals, args: DashboardArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    // The client says so when no daemon is running.
    let link = login_link(&home)?;
    if args.json {
        outln!("{}", serde_json::to_string(&link)?);
    } else {
        outln!(
            "{} (one-time sign-in link, valid {}s)",
            link.url,
            link.expires_in_s
        );
    }
    if !args.skip_browser && on_a_desktop() {
        open_browser(&link.url);
    }
    Ok(ExitCode::SUCCESS)
}

fn login_link(home: &Home) -> anyhow::Result<types::LoginLink> {
    let client = super::client::Client::of_home(home)?;
    client.send(Op::CreateLoginLink, &[], &[], None::<&serde_json::Value>)
}

/// A person at a desktop: a terminal on stdout and (on Linux and the BSDs) a
/// graphical display.
fn on_a_desktop() -> bool {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return false;
    }
    cfg!(target_os = "macos")
        || cfg!(target_os = "windows")
        || std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty())
}

/// Opens `url` in the desktop's browser, without waiting for it; a failure is
/// reported, the link having been printed anyway.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("warning: cannot open a browser ({opener}: {e}); open the link above yourself");
    }
}

pub fn stop(globals: &Globals) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    match daemon::stop(&home, daemon::GRACE + Duration::from_secs(20))? {
        Some(pid) => {
            if !globals.quiet {
                outln!("fuse daemon (pid {pid}) stopped");
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("no fuse daemon is running for {}", home.root().display());
            Ok(ExitCode::from(1))
        }
    }
}

pub fn status(globals: &Globals, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let code = daemon_status(&home, &args)?;
    let store = match &args.store {
        Some(url) => Some(url.clone()),
        None => home.store_url()?,
    };
    if let Some(url) = &store {
        pool_status(url, args.json)?;
    }
    Ok(code)
}

/// `fuse status --store URL`: the workers sharing the queue.
fn pool_status(url: &str, json: bool) -> anyhow::Result<()> {
    crate::store::pg::check_url(url).map_err(crate::Error::Setting)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let (workers, depth, stuck) = runtime.block_on(async {
        let pg = crate::store::pg::Pg::connect(url).await?;
        Ok::<_, anyhow::Error>((
            pg.workers().await?,
            pg.queue_depth().await?,
            pg.stuck(std::time::Duration::from_secs(90)).await?,
        ))
    })?;
    if json {
        outln!(
            "{}",
            json!({"queue": {"depth": depth, "workers": workers, "stuck": stuck}})
        );
        return Ok(());
    }
    outln!(
        "queue     {depth} run(s) waiting at {}",
        crate::store::pg::redact(url)
    );
    if workers.is_empty() {
        outln!("workers   none has registered (start one with `fuse worker`)");
    } else {
        outln!("workers");
    }
    for w in &workers {
        let seen = w.heartbeat_age_ms as f64 / 1000.0;
        outln!(
            "  {:<20} {:<8} {:>2}/{:<2} running  heartbeat {:.1}s ago{}{}  {}",
            w.host,
            w.version,
            w.running,
            w.concurrency,
            seen,
            if seen > 90.0 { " (gone?)" } else { "" },
            if w.tags.is_empty() {
                String::new()
            } else {
                format!("  tags {}", w.tags.join(","))
            },
            w.id
        );
    }
    for s in &stuck {
        let mut missing = s.missing_types.clone();
        missing.extend(s.missing_tags.iter().map(|t| format!("tag {t}")));
        outln!(
            "  stuck: run {} of {} needs {} that no live worker has",
            s.id,
            s.workflow,
            missing.join(", ")
        );
    }
    Ok(())
}

fn daemon_status(home: &Home, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let home = home.clone();
    let Some(info) = daemon::running(&home) else {
        let schedules = if home.probe()? {
            home.open_store()?.schedules()?
        } else {
            Vec::new()
        };
        if args.json {
            outln!("{}", json!({"running": false, "schedules": schedules}));
        } else {
            outln!("not running (start it with `fuse start`)");
            print_schedules(&schedules)?;
        }
        return Ok(ExitCode::from(3));
    };
    let client = super::client::Client::of_home(&home)?;
    let health: Option<types::Health> = client.get(Op::Health, &[]).ok();
    let schedules = client
        .get::<types::Schedules>(Op::ListSchedules, &[])?
        .schedules;
    let workflows = match client.get::<types::WorkflowList>(Op::ListWorkflows, &[]) {
        Ok(w) => Some(w.workflows),
        Err(e) => {
            eprintln!("warning: cannot list the deployed workflows: {e:#}");
            None
        }
    };
    if args.json {
        outln!(
            "{}",
            json!({"running": true, "pid": info.pid, "url": info.url(), "started_at": info.started_at,
                   "health": health, "workflows": workflows, "schedules": schedules})
        );
    } else {
        outln!("running   pid {} on {}", info.pid, info.url());
        outln!("started   {}", info.started_at);
        match &health {
            Some(h) => outln!(
                "health    ok; up {}s; {} run(s) active ({} running, {} queued)",
                h.uptime_s,
                h.active_runs,
                h.running,
                h.queued
            ),
            None => outln!("health    no answer from {}", info.url()),
        }
        let rows = workflows.unwrap_or_default();
        if !rows.is_empty() {
            outln!("workflows");
        }
        for w in rows {
            let triggers: Vec<String> = w.triggers.iter().map(describe_trigger).collect();
            outln!(
                "  {:<24} v{:<3} {:<8} {} active  {}",
                w.name,
                w.version.map(|v| v.to_string()).unwrap_or_default(),
                if w.enabled { "enabled" } else { "disabled" },
                w.active_runs,
                if triggers.is_empty() {
                    "manual".to_string()
                } else {
                    triggers.join("; ")
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One trigger of a deployed workflow, as `fuse status` shows it.
fn describe_trigger(t: &types::Trigger) -> String {
    use types::Trigger;
    match t {
        Trigger::Webhook { method, url, .. } => format!("{method} {url}"),
        Trigger::File { path, .. } => format!("files in {path}"),
        Trigger::Event { plugin, trigger } => format!("event {plugin}/{trigger}"),
        Trigger::Cron(s) | Trigger::Interval(s) => format!(
            "{} {} (next {})",
            if matches!(t, Trigger::Cron(_)) {
                "cron"
            } else {
                "interval"
            },
            s.spec,
            s.next_fire_at.as_deref().unwrap_or("-")
        ),
    }
}

fn print_schedules(schedules: &[types::ScheduleRow]) -> anyhow::Result<()> {
    if schedules.is_empty() {
        return Ok(());
    }
    outln!("schedules");
    for s in schedules {
        outln!(
            "  {:<20} {:<9} {:<18} next {}",
            s.workflow,
            s.kind,
            s.spec,
            s.next_fire_at.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// A run id (or a unique part): its log; without one, the daemon's log.
    pub run: Option<String>,
    /// Follow: new daemon log lines, or a run's live events until it finishes.
    #[arg(short, long)]
    pub follow: bool,
    /// Events as JSON lines (with -f RUN).
    #[arg(long)]
    pub json: bool,
}

pub fn logs(globals: &Globals, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let Some(run) = args.run else {
        return daemon_log(&home, args.follow);
    };
    if !args.follow {
        return super::runs::run(
            globals,
            super::runs::RunsCommand::Logs {
                id: run,
                workflow: None,
                json: args.json,
            },
        );
    }
    if daemon::running(&home).is_none() {
        anyhow::bail!(
            "following a run needs the daemon (`fuse start`); `fuse logs {run}` prints what is recorded"
        );
    }
    let client = super::client::Client::of_home(&home)?;
    let mut status = String::new();
    client.events(&run, |text, event| {
        if event["type"] == "run_finished" {
            status = event["status"].as_str().unwrap_or("").to_string();
        }
        if args.json {
            outln!("{text}");
        } else {
            outln!("{}", describe(event));
        }
        Ok(())
    })?;
    Ok(if status == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) fn describe(e: &serde_json::Value) -> String {
    let node = e["node"].as_str().unwrap_or("");
    match e["type"].as_str().unwrap_or("") {
        "run_started" => format!(
            "run {} of {} started ({})",
            e["run_id"].as_str().unwrap_or(""),
            e["workflow"].as_str().unwrap_or(""),
            e["trigger"].as_str().unwrap_or("")
        ),
        "node_started" => format!("  [{node}] started"),
        "node_finished" => format!(
            "  [{node}] {} in {}ms",
            e["status"].as_str().unwrap_or(""),
            e["duration_ms"]
        ),
        "node_failed" => format!("  [{node}] FAILED: {}", e["error"].as_str().unwrap_or("")),
        "log" => format!(
            "  [{node}] {}: {}",
            e["level"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        ),
        "run_finished" => match e["error"].as_str() {
            Some(err) => format!(
                "{} after {}ms: {err}",
                e["status"].as_str().unwrap_or(""),
                e["duration_ms"]
            ),
            None => format!(
                "{} after {}ms",
                e["status"].as_str().unwrap_or(""),
                e["duration_ms"]
            ),
        },
        other => format!("{other}: {e}"),
    }
}

fn daemon_log(home: &Home, follow: bool) -> anyhow::Result<ExitCode> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let path = home.logs_dir().join("daemon.log");
    let mut out = std::io::stdout();
    // Rotated files first, oldest first (daemon.log.1 is the newest).
    let mut older: Vec<std::path::PathBuf> = (1..=1000)
        .map(|n| crate::daemon::logfile::rotated(&path, n))
        .take_while(|p| p.exists())
        .collect();
    older.reverse();
    for file in &older {
        out.write_all(&std::fs::read(file)?)?;
    }
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) if !older.is_empty() => return Ok(ExitCode::SUCCESS),
        Err(_) => {
            eprintln!(
                "no daemon log yet at {} (`fuse start` writes it)",
                path.display()
            );
            return Ok(ExitCode::from(1));
        }
    };
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    out.write_all(&buf)?;
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut pos = file.stream_position()?;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            // Rotated (or truncated): the rest of the old file, then the new one.
            let mut rest = Vec::new();
            file.read_to_end(&mut rest)?;
            out.write_all(&rest)?;
            match std::fs::File::open(&path) {
                Ok(f) => file = f,
                Err(_) => continue,
            }
            pos = 0;
        }
        if len > pos {
            file.seek(SeekFrom::Start(pos))?;
            let mut chunk = Vec::new();
            file.read_to_end(&mut chunk)?;
            out.write_all(&chunk)?;
            out.flush()?;
            pos += chunk.len() as u64;
        }
    }
}

/// `fuse run FILE --remote`: deploys the file to the daemon (telling it where
/// the file is, for relative paths), runs it, follows its events and prints
/// its result as `fuse run` would.
pub fn run_remote(
    globals: &Globals,
    file: &std::path::Path,
    input: serde_json::Value,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let client = super::client::Client::of_home(&home)?;
    let name = super::workflows::deploy_file(&client, file)?.name;
    let started: crate::api::types::RunStarted =
        client.send(crate::api::Op::RunWorkflow, &[&name], &[], Some(&input))?;
    let record = client.follow(&started.run_id, globals.quiet || json_out)?;
    super::client::print_run(&record, json_out)
}
