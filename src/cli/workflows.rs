//! `fuse workflows …`: the workflows a running daemon holds, through its API
//! with the home's token (the same answers `curl` gets).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use super::Globals;
use super::client::{Client, print_run};
use crate::api::{Op, types};
use crate::home::Home;

#[derive(Debug, clap::Subcommand)]
pub enum WorkflowsCommand {
    /// Deployed workflows: name, enabled, current version, last change.
    #[command(after_help = "Examples:\n  fuse workflows list\n  fuse workflows list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// One deployed workflow's current definition.
    #[command(after_help = "Example:\n  fuse workflows show report")]
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Deploy workflow files (relative paths resolve against each file's folder);
    /// identical content makes no new version.
    #[command(
        after_help = "Examples:\n  fuse workflows deploy report.json\n  fuse workflows deploy flows/*.json --json"
    )]
    Deploy {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a deployed workflow (its runs stay in history).
    #[command(after_help = "Example:\n  fuse workflows rm report")]
    Rm { name: String },
    /// Enable a workflow: it runs, fires and answers webhooks again.
    Enable { name: String },
    /// Disable a workflow: it does not run, fire or answer webhooks.
    Disable { name: String },
    /// Every version of a workflow, newest first.
    #[command(after_help = "Example:\n  fuse workflows versions report")]
    Versions {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// What changed between two versions of a workflow (B defaults to the
    /// current one): a line diff of their definitions.
    #[command(
        after_help = "Examples:\n  fuse workflows diff report 2 3\n  fuse workflows diff report 2      # version 2 against the current one"
    )]
    Diff {
        name: String,
        a: i64,
        b: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier version current.
    #[command(after_help = "Example:\n  fuse workflows rollback report 3")]
    Rollback { name: String, version: i64 },
    /// Run a deployed workflow on the daemon; --follow prints its events and result.
    #[command(
        after_help = "Examples:\n  fuse workflows run report --input limit=5          # prints the run id\n  fuse workflows run report --input limit=5 --follow # waits, prints the result"
    )]
    Run {
        name: String,
        /// KEY=VALUE (VALUE is JSON when it parses, else text); repeatable.
        #[arg(long = "input", value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        /// A JSON object file with the input (`-` for stdin); --input adds to it.
        #[arg(long, value_name = "FILE")]
        input_file: Option<PathBuf>,
        /// Follow the run's events until it ends and print its result.
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Deploys one workflow file; its name is `name`, else the file name.
pub(super) fn deploy_file(client: &Client, file: &Path) -> anyhow::Result<types::Deployed> {
    let bytes = crate::files::read_regular(file, crate::engine::MAX_WORKFLOW_BYTES)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let mut workflow: Value = serde_json::from_slice(&bytes)
        .map_err(|e| crate::Error::Refused(format!("{} is not JSON: {e}", file.display())))?;
    if workflow.get("name").and_then(Value::as_str).is_none() {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        workflow["name"] = json!(stem);
    }
    let source = std::path::absolute(file)
        .map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", file.display()))?;
    client.send(
        Op::DeployWorkflow,
        &[],
        &[("source", source.display().to_string())],
        Some(&workflow),
    )
}

pub fn run(globals: &Globals, command: WorkflowsCommand) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let client = Client::of_home(&home)?;
    match command {
        WorkflowsCommand::List { json } => {
            let rows = client
                .get::<types::WorkflowList>(Op::ListWorkflows, &[])?
                .workflows;
            if json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            if rows.is_empty() {
                outln!("no workflows deployed; `fuse workflows deploy FILE` deploys one");
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "{:<32}  {:<8}  {:>7}  UPDATED",
                "NAME",
                "ENABLED",
                "VERSION"
            );
            for w in rows {
                outln!(
                    "{:<32}  {:<8}  {:>7}  {}",
                    w.name,
                    if w.enabled { "yes" } else { "no" },
                    w.version.map(|v| v.to_string()).unwrap_or_default(),
                    super::runs::local_time(w.updated_at)
                );
            }
        }
        WorkflowsCommand::Show { name, json } => {
            let answer: types::WorkflowDetail = client.get(Op::GetWorkflow, &[&name])?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                eprintln!(
                    "{name}: version {}, {}",
                    answer.version,
                    if answer.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    }
                );
                outln!("{}", serde_json::to_string_pretty(&answer.definition)?);
            }
        }
        WorkflowsCommand::Deploy { files, json } => {
            let mut results = Vec::new();
            for file in &files {
                let d = deploy_file(&client, file)?;
                if !json && !globals.quiet {
                    if d.unchanged {
                        outln!(
                            "{}: {} unchanged (version {})",
                            file.display(),
                            d.name,
                            d.version
                        );
                    } else {
                        outln!(
                            "{}: deployed {} version {}",
                            file.display(),
                            d.name,
                            d.version
                        );
                    }
                }
                results.push(json!({"file": file, "name": d.name, "version": d.version, "unchanged": d.unchanged}));
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&results)?);
            }
        }
        WorkflowsCommand::Rm { name } => {
            client.send::<types::Deleted>(Op::DeleteWorkflow, &[&name], &[], None::<&Value>)?;
            if !globals.quiet {
                outln!("removed {name} (its runs stay in history)");
            }
        }
        WorkflowsCommand::Enable { name } => set_enabled(&client, globals, &name, true)?,
        WorkflowsCommand::Disable { name } => set_enabled(&client, globals, &name, false)?,
        WorkflowsCommand::Versions { name, json } => {
            let versions = client
                .get::<types::Versions>(Op::ListVersions, &[&name])?
                .versions;
            if json {
                outln!("{}", serde_json::to_string_pretty(&versions)?);
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "{:>7}  {:<19}  {:<12}  CURRENT",
                "VERSION",
                "CREATED",
                "HASH"
            );
            for v in versions {
                outln!(
                    "{:>7}  {:<19}  {:<12}  {}",
                    v.version,
                    super::runs::local_time(v.created_at),
                    v.hash.chars().take(12).collect::<String>(),
                    if v.current { "*" } else { "" }
                );
            }
        }
        WorkflowsCommand::Diff { name, a, b, json } => {
            let old: types::VersionDetail = client.get(Op::GetVersion, &[&name, &a.to_string()])?;
            let new: types::VersionDetail = match b {
                Some(b) => client.get(Op::GetVersion, &[&name, &b.to_string()])?,
                None => {
                    let current: types::WorkflowDetail = client.get(Op::GetWorkflow, &[&name])?;
                    client.get(Op::GetVersion, &[&name, &current.version.to_string()])?
                }
            };
            let (old_text, new_text) = (
                serde_json::to_string_pretty(&old.definition)?,
                serde_json::to_string_pretty(&new.definition)?,
            );
            let lines = crate::workflow::diff::lines(&old_text, &new_text);
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "name": name, "from": old.version, "to": new.version,
                        "same": old.hash == new.hash,
                        "lines": lines.iter().map(|(tag, line)| json!({"op": tag.to_string(), "line": line})).collect::<Vec<_>>(),
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            outln!("--- {name} version {}", old.version);
            outln!("+++ {name} version {}", new.version);
            if old.hash == new.hash {
                outln!("(the two versions are the same)");
            }
            // Changed lines with two lines of context around them.
            for shown in crate::workflow::diff::folded(&lines, 2) {
                match shown {
                    Some((tag, line)) => outln!("{tag}{line}"),
                    None => outln!("…"),
                }
            }
        }
        WorkflowsCommand::Rollback { name, version } => {
            client.send::<types::RolledBack>(
                Op::Rollback,
                &[&name],
                &[],
                Some(&types::RollbackRequest { version }),
            )?;
            if !globals.quiet {
                outln!("{name} is at version {version} again");
            }
        }
        WorkflowsCommand::Run {
            name,
            inputs,
            input_file,
            follow,
            json,
        } => {
            let input = super::run::run_input(&inputs, input_file.as_deref())?;
            let started: types::RunStarted =
                client.send(Op::RunWorkflow, &[&name], &[], Some(&input))?;
            if !follow {
                if json {
                    outln!("{}", serde_json::to_string_pretty(&started)?);
                } else {
                    outln!("{}", started.run_id);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let record = client.follow(&started.run_id, globals.quiet || json)?;
            return print_run(&record, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn set_enabled(
    client: &Client,
    globals: &Globals,
    name: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    let (op, action) = if enabled {
        (Op::Enable, "enable")
    } else {
        (Op::Disable, "disable")
    };
    client.send::<types::Enabled>(op, &[name], &[], None::<&Value>)?;
    if !globals.quiet {
        outln!("{name} {action}d");
    }
    Ok(())
}
