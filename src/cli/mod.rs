//! Command-line interface: the clap definitions, logging set-up and dispatch.
//! Each subcommand lives in its own file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` that returns the write error instead of panicking, so that
/// `fuse … | head -1` ends quietly (a broken pipe is success, as in ripgrep).
macro_rules! outln {
    () => {
        std::io::Write::write_all(&mut std::io::stdout(), b"\n")?
    };
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout(), format_args!("{}\n", format_args!($($arg)*)))?
    };
}

mod backup;
mod client;
mod completions;
mod creds;
mod cron;
mod daemon;
mod doctor;
mod init;
mod memory;
mod nodes;
mod progress;
mod run;
mod runs;
mod schema;
mod test;
mod tokens;
mod transfer;
mod validate;
mod version;
mod worker;
mod workflows;

/// fuse: fast, local workflow automation.
#[derive(Debug, Parser)]
#[command(
    name = "fuse",
    version,
    about = "Fast, local workflow automation: JSON DAG workflows, a CLI and a local daemon",
    after_help = "Start with `fuse init`, then `fuse version` to see the environment.\nDocs: README.md"
)]
pub struct Cli {
    /// The fuse home (config, database, packages). Defaults to the platform data dir.
    #[arg(long, global = true, env = "FUSE_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// More output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less output: no progress or notes, only results and errors.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a fuse home: config, database, master key, bundled packages.
    #[command(
        after_help = "Examples:\n  fuse init                 # asks for home, port and keyring\n  fuse init --yes           # take the defaults\n  fuse --home ./h init --yes --port 9000"
    )]
    Init(init::InitArgs),

    /// Start the local daemon (API, webhooks) in the background, or --foreground.
    #[command(
        after_help = "Examples:\n  fuse start\n  fuse start --foreground --port 8080   # under systemd or in a container"
    )]
    Start(daemon::StartArgs),

    /// A one-time sign-in link to the daemon's dashboard (opened in a browser on a desktop).
    #[command(
        after_help = "Examples:\n  fuse dashboard                  # print the link; open it on a desktop\n  fuse dashboard --skip-browser   # only print it\n  fuse dashboard --json"
    )]
    Dashboard(daemon::DashboardArgs),

    /// Stop the daemon: no new requests, running runs get 10s, the rest are marked interrupted.
    #[command(after_help = "Example:\n  fuse stop")]
    Stop,

    /// The daemon's log, or a run's log; -f follows (a run's live events, from the daemon).
    #[command(
        after_help = "Examples:\n  fuse logs -f              # the daemon log, following\n  fuse logs -f 0194f2c3     # a run's events live until it ends\n  fuse logs 0194f2c3        # a run's recorded log lines"
    )]
    Logs(daemon::LogsArgs),

    /// Is the daemon running? Its pid, address, uptime and active runs.
    #[command(after_help = "Examples:\n  fuse status\n  fuse status --json")]
    Status(daemon::StatusArgs),

    /// Run a workflow file in this process and print its result.
    #[command(
        after_help = "Examples:\n  fuse run templates/hello.json\n  fuse run report.json --input url=https://example.org --input limit=10\n  fuse run wf.json --input-file input.json --json | jq .status\n\nExit codes: 0 succeeded, 1 failed or cancelled, 2 invalid workflow, input or usage,\n4 the run's history could not be recorded (e.g. a full disk)."
    )]
    Run(run::RunArgs),

    /// Run workflow tests: the cases of NAME.test.json files, with pinned node outputs.
    #[command(
        after_help = "Examples:\n  fuse test                          # every *.test.json under .\n  fuse test flows/ --filter retries\n  fuse test --junit report.xml       # for CI\n  fuse test flows/hello.test.json --update   # take the new outputs as expected\n\nExit codes: 0 every case passed, 1 a case failed, 2 a test file or case is invalid\n(a node the workflow lacks, an invalid workflow or input) or none matched. Format: docs/testing.md"
    )]
    Test(test::TestArgs),

    /// Run queued runs from PostgreSQL, beside other workers on any machine (preview).
    #[command(
        after_help = "Examples:\n  FUSE_STORE_URL=postgres://fuse:secret@db/fuse fuse worker\n  fuse worker --store postgres://fuse@db/fuse --concurrency 8 --tags gpu\n\nA run is claimed by one worker at a time, held by a lease renewed by heartbeat,\nand resumed by another worker from its finished nodes if this one dies.\nSee docs/scale-out.md."
    )]
    Worker(worker::WorkerArgs),

    /// Check a workflow file without running it; lists every problem.
    #[command(
        after_help = "Examples:\n  fuse validate workflow.json\n  fuse validate workflow.json --json"
    )]
    Validate(validate::ValidateArgs),

    /// Inspect and manage recorded runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),

    /// Node types: list, show, scaffold a package, check packages.
    #[command(subcommand)]
    Nodes(nodes::NodesCommand),

    /// Plugin packages and what they contribute.
    #[command(subcommand)]
    Plugins(nodes::PluginsCommand),

    /// Manage encrypted credentials (values never on the command line).
    #[command(subcommand)]
    Creds(creds::CredsCommand),

    /// Check the whole home: config, database, schema, key and credentials,
    /// file modes, daemon or port, packages, disk space, clock.
    #[command(
        after_help = "Examples:\n  fuse doctor\n  fuse doctor --json | jq '.checks[] | select(.ok == false)'\n\nExit codes: 0 every check passed, 1 something failed (each ✗ line says the fix)."
    )]
    Doctor(doctor::DoctorArgs),

    /// Write the home (workflows with versions, packages, credentials sealed
    /// with a passphrase, optionally run history) as one .tar.zst archive.
    #[command(
        after_help = "Examples:\n  fuse export > home.tar.zst\n  fuse export --runs -o home.tar.zst --passphrase-file pass.txt\n\nCredentials are sealed with an export passphrase (asked for, or\n--passphrase-file / FUSE_EXPORT_PASSPHRASE), never with the master key."
    )]
    Export(transfer::ExportArgs),

    /// Read an archive from `fuse export` into this home (a new one, unless --force).
    #[command(
        after_help = "Examples:\n  fuse init --yes && fuse import home.tar.zst\n  fuse import home.tar.zst --force --passphrase-file pass.txt"
    )]
    Import(transfer::ImportArgs),

    /// A consistent copy of the home's database, safe while the daemon runs.
    #[command(
        after_help = "Examples:\n  fuse backup                      # backups/fuse-<time>.db in the home\n  fuse backup /mnt/usb/fuse.db --force\n\nRestore: stop the daemon, copy the file over fuse.db (remove fuse.db-wal and\nfuse.db-shm), start it again. The master key is not in the database: keep\nit too (see `fuse version` for where it is)."
    )]
    Backup(backup::BackupArgs),

    /// Conversation memory of llm.chat and llm.agent: list, show or clear sessions.
    #[command(subcommand)]
    Memory(memory::MemoryCommand),

    /// Workflows the daemon holds: list, show, deploy, rm, enable, disable, versions, rollback, run.
    #[command(subcommand)]
    Workflows(workflows::WorkflowsCommand),

    /// API tokens for the daemon: named, with a scope (read, run, admin).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),

    /// Print a JSON Schema (for editors and CI checks).
    #[command(after_help = "Example:\n  fuse schema workflow > workflow.schema.json")]
    Schema(schema::SchemaArgs),

    /// Show the version of fuse and its environment.
    #[command(after_help = "Examples:\n  fuse version\n  fuse version --json | jq .schema_version")]
    Version(version::VersionArgs),

    /// Print the next fire times of a cron expression (check one before deploying).
    #[command(
        after_help = "Examples:\n  fuse cron '0 9 * * mon-fri' --tz Europe/Paris\n  fuse cron '*/30 * * * * *' --count 3 --json\n  fuse cron '30 2 * * *' --tz Europe/Berlin --from 2026-03-27T00:00:00Z"
    )]
    Cron(cron::CronArgs),

    /// Print shell completions to stdout.
    #[command(
        after_help = "Examples:\n  fuse completions bash > ~/.local/share/bash-completion/completions/fuse\n  fuse completions zsh > ~/.zfunc/_fuse"
    )]
    Completions(completions::CompletionsArgs),
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let globals = Globals {
        home: cli.home,
        quiet: cli.quiet > 0,
    };
    match cli.command {
        Command::Init(args) => init::run(&globals, args),
        Command::Start(args) => daemon::start(&globals, args),
        Command::Stop => daemon::stop(&globals),
        Command::Dashboard(args) => daemon::dashboard(&globals, args),
        Command::Status(args) => daemon::status(&globals, args),
        Command::Logs(args) => daemon::logs(&globals, args),
        Command::Run(args) => run::run(&globals, args),
        Command::Validate(args) => validate::run(&globals, args),
        Command::Test(args) => test::run(&globals, args),
        Command::Worker(args) => worker::run(&globals, args),
        Command::Runs(command) => runs::run(&globals, command),
        Command::Creds(command) => creds::run(&globals, command),
        Command::Tokens(command) => tokens::run(&globals, command),
        Command::Memory(command) => memory::run(&globals, command),
        Command::Backup(args) => backup::run(&globals, args),
        Command::Export(args) => transfer::export(&globals, args),
        Command::Import(args) => transfer::import(&globals, args),
        Command::Doctor(args) => doctor::run(&globals, args),
        Command::Workflows(command) => workflows::run(&globals, command),
        Command::Nodes(command) => nodes::run_nodes(&globals, command),
        Command::Plugins(command) => nodes::run_plugins(&globals, command),
        Command::Schema(args) => schema::run(&globals, args),
        Command::Version(args) => version::run(&globals, args),
        Command::Completions(args) => completions::run(args),
        Command::Cron(args) => cron::run(args),
    }
}

/// Options every subcommand sees.
#[derive(Debug, Clone)]
pub struct Globals {
    pub home: Option<PathBuf>,
    pub quiet: bool,
}

/// Logs go to stderr. `FUSE_LOG` (an env-filter such as `fuse=debug`) wins over -v/-q.
pub fn init_tracing(cli: &Cli) {
    let log = log_config(cli.home.as_deref());
    // The daemon logs at log.level (a service log); commands say only warnings.
    let daemon = matches!(cli.command, Command::Start(_) | Command::Worker(_));
    let level = match (cli.quiet, cli.verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) if daemon => log.level.as_str(),
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    // Libraries say their own info (migrations run, connections) only at debug.
    let filter = tracing_subscriber::EnvFilter::try_from_env("FUSE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},refinery_core=warn,refinery=warn,hyper=warn,reqwest=warn,notify=warn,tokio_postgres=warn"
        ))
    });
    // Colours only for a person at a terminal, never into a log file.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(UtcMillis)
        .with_ansi(ansi)
        .with_target(false);
    let format = std::env::var("FUSE_LOG_FORMAT").unwrap_or(log.format.clone());
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// `[log]` of the home's config (with its `FUSE_LOG_*` overrides); the
/// defaults when there is none (a config that does not parse is reported by
/// the command itself).
fn log_config(home: Option<&std::path::Path>) -> crate::config::LogConfig {
    crate::home::Home::resolve(home.map(std::path::Path::to_path_buf))
        .ok()
        .filter(|h| h.config_path().is_file())
        .and_then(|h| h.config(&Default::default()).ok())
        .map(|c| c.log)
        .unwrap_or_default()
}

/// Log times: RFC 3339 in UTC, to the millisecond.
struct UtcMillis;

impl tracing_subscriber::fmt::time::FormatTime for UtcMillis {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let now = jiff::Timestamp::now();
        write!(w, "{}", now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

/// A write to a closed pipe (`fuse … | head`) is not an error.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().map(std::io::Error::kind) == broken
            || e.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == broken
    })
}

/// Exit code for an error: 2 for invalid input, 1 for everything else.
pub fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    let invalid = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<crate::Error>(),
            Some(
                crate::Error::Config { .. }
                    | crate::Error::ConfigEnv { .. }
                    | crate::Error::Setting(_)
                    | crate::Error::NotFound(_)
                    | crate::Error::Refused(_)
            )
        )
    });
    if invalid {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// True when stdin is an interactive terminal.
pub fn stdin_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
