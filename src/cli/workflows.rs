//! `fuse workflows …`: the workflows a running daemon holds, through its API
//! with the home's token (the same answers `curl` gets).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use super::Globals;
use super::client::{Client, print_run};
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

/// What a deploy answered.
pub(super) struct Deployed {
    pub name: String,
    pub version: i64,
    pub unchanged: bool,
}

/// Deploys one workflow file; its name is `name`, else the file name.
pub(super) fn deploy_file(client: &Client, file: &Path) -> anyhow::Result<Deployed> {
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
    let answer = client.call_with(
        Method::POST,
        "/workflows",
        &[("source", source.display().to_string())],
        Some(&workflow),
    )?;
    Ok(Deployed {
        name: answer["name"].as_str().unwrap_or_default().to_string(),
        version: answer["version"].as_i64().unwrap_or_default(),
        unchanged: answer["unchanged"].as_bool().unwrap_or(false),
    })
}

pub fn run(globals: &Globals, command: WorkflowsCommand) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let client = Client::of_home(&home)?;
    match command {
        WorkflowsCommand::List { json } => {
            let answer = client.call(Method::GET, "/workflows", None)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&answer["workflows"])?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = answer["workflows"].as_array().cloned().unwrap_or_default();
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
                    w["name"].as_str().unwrap_or(""),
                    if w["enabled"].as_bool().unwrap_or(false) {
                        "yes"
                    } else {
                        "no"
                    },
                    w["version"]
                        .as_i64()
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    w["updated_at"]
                        .as_i64()
                        .map(super::runs::local_time)
                        .unwrap_or_default()
                );
            }
        }
        WorkflowsCommand::Show { name, json } => {
            let answer = client.call(Method::GET, &format!("/workflows/{name}"), None)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                eprintln!(
                    "{name}: version {}, {}",
                    answer["version"],
                    if answer["enabled"].as_bool().unwrap_or(false) {
                        "enabled"
                    } else {
                        "disabled"
                    }
                );
                outln!("{}", serde_json::to_string_pretty(&answer["definition"])?);
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
            client.call(Method::DELETE, &format!("/workflows/{name}"), None)?;
            if !globals.quiet {
                outln!("removed {name} (its runs stay in history)");
            }
        }
        WorkflowsCommand::Enable { name } => set_enabled(&client, globals, &name, true)?,
        WorkflowsCommand::Disable { name } => set_enabled(&client, globals, &name, false)?,
        WorkflowsCommand::Versions { name, json } => {
            let answer = client.call(Method::GET, &format!("/workflows/{name}/versions"), None)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&answer["versions"])?);
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "{:>7}  {:<19}  {:<12}  CURRENT",
                "VERSION",
                "CREATED",
                "HASH"
            );
            for v in answer["versions"].as_array().cloned().unwrap_or_default() {
                outln!(
                    "{:>7}  {:<19}  {:<12}  {}",
                    v["version"],
                    v["created_at"]
                        .as_i64()
                        .map(super::runs::local_time)
                        .unwrap_or_default(),
                    v["hash"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(12)
                        .collect::<String>(),
                    if v["current"].as_bool().unwrap_or(false) {
                        "*"
                    } else {
                        ""
                    }
                );
            }
        }
        WorkflowsCommand::Rollback { name, version } => {
            client.call(
                Method::POST,
                &format!("/workflows/{name}/rollback"),
                Some(&json!({"version": version})),
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
            let started = client.call(
                Method::POST,
                &format!("/workflows/{name}/run"),
                Some(&input),
            )?;
            let Some(run_id) = started["run_id"].as_str() else {
                anyhow::bail!("the daemon did not start the run: {started}");
            };
            if !follow {
                if json {
                    outln!("{}", serde_json::to_string_pretty(&started)?);
                } else {
                    outln!("{run_id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let record = client.follow(run_id, globals.quiet || json)?;
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
    let action = if enabled { "enable" } else { "disable" };
    client.call(Method::POST, &format!("/workflows/{name}/{action}"), None)?;
    if !globals.quiet {
        outln!("{name} {action}d");
    }
    Ok(())
}
