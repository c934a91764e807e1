//! `fuse nodes list|show|new|doctor` and `fuse plugins list|show`: the node
//! catalogue (built-ins and packages), scaffolding, and package health.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::Globals;
use crate::engine::{Engine, NullObserver, RunRequest, Status};
use crate::home::Home;
use crate::nodes::Registry;
use crate::packages::{Catalog, Package, manifest};

#[derive(Debug, clap::Subcommand)]
pub enum NodesCommand {
    /// List every node type: built-in and from packages.
    #[command(
        after_help = "Examples:\n  fuse nodes list\n  fuse nodes list --json | jq -r '.[].type'"
    )]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a node type: inputs, output, runtime and where it comes from.
    #[command(
        after_help = "Examples:\n  fuse nodes show http.request\n  fuse nodes show csv-parse --json"
    )]
    Show {
        #[arg(value_name = "TYPE")]
        type_name: String,
        #[arg(long)]
        json: bool,
    },
    /// Create a node package in the home's node_packages/, ready to run.
    #[command(
        after_help = "Examples:\n  fuse nodes new csv-tool --lang python\n  fuse nodes new word-count --lang sh\n\nThen use it in a workflow as {\"type\": \"csv-tool\"}; edit node_packages/csv-tool/."
    )]
    New {
        /// Package name (also the node type): letters, digits, `-`, `_`.
        name: String,
        /// python, sh or rust.
        #[arg(long, default_value = "python")]
        lang: String,
        /// What the node does (the manifest's description).
        #[arg(long)]
        description: Option<String>,
    },
    /// Check every package: manifest, required commands, fuse version, self-test,
    /// and whether file-system confinement is enforced here.
    #[command(after_help = "Examples:\n  fuse nodes doctor\n  fuse nodes doctor --json")]
    Doctor {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum PluginsCommand {
    /// List plugins with their state (loaded or the error).
    #[command(after_help = "Example:\n  fuse plugins list")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show what a plugin contributes: nodes, credential types, routes, triggers.
    #[command(after_help = "Example:\n  fuse plugins show text-tools")]
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

struct Loaded {
    home: Home,
    registry: Registry,
    catalog: Arc<Catalog>,
}

fn load(globals: &Globals) -> anyhow::Result<Loaded> {
    let home = Home::resolve(globals.home.clone())?;
    home.require()?;
    let config = home.config(&Default::default())?;
    let settings = crate::nodes::Settings::of_home(&home, &config);
    let (registry, catalog) = crate::packages::registry_of_home(&settings, &home);
    Ok(Loaded {
        home,
        registry,
        catalog,
    })
}

fn source_of(catalog: &Catalog, type_name: &str) -> (String, Option<String>) {
    match catalog.node_package(type_name) {
        Some(p) => (
            match &p.plugin {
                Some(plugin) => format!("plugin {plugin}"),
                None => "package".into(),
            },
            Some(p.dir.display().to_string()),
        ),
        None => ("built-in".into(), None),
    }
}

fn runtime_of(p: &Package) -> String {
    let m = &p.manifest;
    if let Some(rt) = &m.runtime {
        format!(
            "{} `{}`",
            match rt.mode {
                manifest::Mode::Oneshot => "oneshot",
                manifest::Mode::Persistent => "persistent",
            },
            rt.command.join(" ")
        )
    } else if let Some(wf) = &m.workflow {
        format!("composite ({wf})")
    } else {
        "declarative http".into()
    }
}

pub fn run_nodes(globals: &Globals, command: NodesCommand) -> anyhow::Result<ExitCode> {
    match command {
        NodesCommand::List { json } => {
            let l = load(globals)?;
            let rows: Vec<Value> = l
                .registry
                .iter()
                .map(|n| {
                    let spec = n.spec();
                    let (source, dir) = source_of(&l.catalog, &spec.type_name);
                    json!({"type": spec.type_name, "source": source, "dir": dir, "description": spec.description})
                })
                .collect();
            if json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let width = rows
                    .iter()
                    .filter_map(|r| r["type"].as_str().map(str::len))
                    .max()
                    .unwrap_or(4);
                for r in &rows {
                    outln!(
                        "{:<width$}  {:<18}  {}",
                        r["type"].as_str().unwrap_or(""),
                        r["source"].as_str().unwrap_or(""),
                        r["description"].as_str().unwrap_or("")
                    );
                }
                for p in &l.catalog.problems {
                    eprintln!("warning: {p} (not loaded)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::Show { type_name, json } => {
            let l = load(globals)?;
            let Some(node) = l.registry.get(&type_name) else {
                let hint = l
                    .registry
                    .suggest(&type_name)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                bail!(
                    "there is no node type {type_name:?}{hint}; `fuse nodes list` shows them all"
                );
            };
            let spec = node.spec();
            let package = l.catalog.node_package(&spec.type_name);
            let (source, dir) = source_of(&l.catalog, &spec.type_name);
            if json {
                let mut v = serde_json::to_value(spec)?;
                v["source"] = json!(source);
                v["dir"] = json!(dir);
                if let Some(p) = package {
                    v["runtime"] = json!(runtime_of(p));
                    v["manifest"] = serde_json::to_value(&p.manifest)?;
                }
                outln!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            outln!("{}  ({source})", spec.type_name);
            if !spec.description.is_empty() {
                outln!("  {}", spec.description);
            }
            if let (Some(p), Some(dir)) = (package, dir) {
                outln!("runtime  {}", runtime_of(p));
                outln!("folder   {dir}");
            }
            outln!("inputs");
            for i in &spec.inputs {
                outln!(
                    "  {:<18} {:<8} {}{}",
                    i.name,
                    i.kind,
                    if i.required { "(required) " } else { "" },
                    i.description
                );
            }
            if let Some(props) = spec.output.get("properties").and_then(Value::as_object) {
                outln!("output");
                for (k, v) in props {
                    outln!(
                        "  {:<18} {}",
                        k,
                        v.get("type").and_then(Value::as_str).unwrap_or("any")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::New {
            name,
            lang,
            description,
        } => {
            let home = Home::resolve(globals.home.clone())?;
            home.require()?;
            let dest = home.node_packages_dir().join(&name);
            let files = crate::packages::scaffold::new_node(
                &home.node_packages_dir(),
                &name,
                &lang,
                description.as_deref(),
            )
            .with_context(|| format!("could not create node package {name:?}"))?;
            if !globals.quiet {
                outln!(
                    "created node package {name} ({lang}) in {}:",
                    dest.display()
                );
                for f in files {
                    outln!("  {}", f.strip_prefix(&dest).unwrap_or(&f).display());
                }
                outln!(
                    "use it as {{\"id\": \"x\", \"type\": \"{name}\", \"data\": {{\"inputs\": {{\"text\": \"hi\"}}}}}}; \
                     `fuse nodes doctor` runs its self-test"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::Doctor { json } => doctor(globals, json),
    }
}

fn doctor(globals: &Globals, json_out: bool) -> anyhow::Result<ExitCode> {
    let l = load(globals)?;
    let confinement = crate::packages::confinement_status();
    let engine = Engine::new(l.registry.clone(), Arc::new(NullObserver), 4).with_credentials(
        Arc::new(crate::secrets::vault::HomeCredentials::new(l.home.clone())),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut reports = Vec::new();
    let mut failed = 0;
    for p in &l.catalog.nodes {
        let m = &p.manifest;
        let mut checks: Vec<(String, Result<String, String>)> = Vec::new();
        for cmd in &m.requires.commands {
            checks.push((
                format!("command {cmd}"),
                which(cmd)
                    .map(|path| path.display().to_string())
                    .ok_or_else(|| format!("{cmd} is not on PATH; install it")),
            ));
        }
        if let Some(min) = &m.requires.fuse {
            let have = manifest::parse_version(env!("CARGO_PKG_VERSION"));
            let need = manifest::parse_version(min);
            checks.push((
                format!("fuse >= {min}"),
                if have >= need {
                    Ok(env!("CARGO_PKG_VERSION").to_string())
                } else {
                    Err(format!(
                        "this is fuse {}; upgrade",
                        env!("CARGO_PKG_VERSION")
                    ))
                },
            ));
        }
        if let Some(test) = &m.selftest {
            checks.push(("self-test".into(), selftest(&engine, &runtime, p, test)));
        }
        let ok = checks.iter().all(|(_, r)| r.is_ok());
        if !ok {
            failed += 1;
        }
        reports.push((p, checks, ok));
    }
    failed += l.catalog.problems.len();
    if json_out {
        let packages: Vec<Value> = reports
            .iter()
            .map(|(p, checks, ok)| {
                json!({
                    "name": p.manifest.name, "type": p.manifest.node_type(), "dir": p.dir, "ok": ok,
                    "checks": checks.iter().map(|(what, r)| match r {
                        Ok(detail) => json!({"check": what, "ok": true, "detail": detail}),
                        Err(e) => json!({"check": what, "ok": false, "error": e}),
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "confinement": confinement, "packages": packages,
                "problems": l.catalog.problems, "failed": failed,
            }))?
        );
    } else {
        outln!("confinement: {confinement}");
        for (p, checks, ok) in &reports {
            outln!(
                "{} {} ({})",
                if *ok { "ok    " } else { "FAILED" },
                p.manifest.name,
                p.dir.display()
            );
            for (what, r) in checks {
                match r {
                    Ok(detail) => outln!("         {what}: ok ({detail})"),
                    Err(e) => outln!("         {what}: {e}"),
                }
            }
        }
        for problem in &l.catalog.problems {
            outln!("FAILED {problem}");
        }
        if reports.is_empty() && l.catalog.problems.is_empty() {
            outln!(
                "no node packages in {}",
                l.home.node_packages_dir().display()
            );
        }
    }
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn selftest(
    engine: &Engine,
    runtime: &tokio::runtime::Runtime,
    p: &Package,
    test: &manifest::SelfTest,
) -> Result<String, String> {
    let wf = json!({"name": format!("selftest-{}", p.manifest.name), "nodes": [
        {"id": "test", "type": p.manifest.node_type(), "data": {"inputs": test.params}}
    ], "edges": []});
    let plan = engine
        .load_str(wf.to_string(), None)
        .map_err(|e| e.to_string())?;
    let record = runtime.block_on(engine.run(
        Arc::new(plan),
        RunRequest::new(test.input.clone(), "selftest"),
    ));
    if record.status != Status::Succeeded {
        return Err(record.error.unwrap_or_else(|| "failed".into()));
    }
    if let Some(expect) = test.expect.as_ref().and_then(Value::as_object) {
        for (k, want) in expect {
            let got = record.output.get(k).cloned().unwrap_or(Value::Null);
            if &got != want {
                return Err(format!("output `{k}` is {got}, expected {want}"));
            }
        }
    }
    Ok(format!("{}ms", record.duration_ms))
}

/// The path of a command on PATH.
pub fn which(cmd: &str) -> Option<std::path::PathBuf> {
    if cmd.contains('/') {
        let p = std::path::PathBuf::from(cmd);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(cmd))
        .find(|p| p.is_file())
}

pub fn run_plugins(globals: &Globals, command: PluginsCommand) -> anyhow::Result<ExitCode> {
    let l = load(globals)?;
    let reports = l.catalog.plugin_reports(&l.home.plugin_packages_dir());
    match command {
        PluginsCommand::List { json } => {
            let rows: Vec<Value> = reports
                .iter()
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .collect();
            if json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                outln!("no plugins in {}", l.home.plugin_packages_dir().display());
            } else {
                for r in &rows {
                    outln!(
                        "{:<20} {:<14} {}",
                        r["name"].as_str().unwrap_or(""),
                        r["state"].as_str().unwrap_or(""),
                        r["description"].as_str().unwrap_or("")
                    );
                    for e in r["errors"].as_array().into_iter().flatten() {
                        outln!("    {}", e.as_str().unwrap_or(""));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Show { name, json } => {
            let Some(p) = l.catalog.plugins.iter().find(|p| p.manifest.name == name) else {
                bail!("there is no plugin {name:?}; `fuse plugins list` shows them");
            };
            let v = reports
                .iter()
                .find(|r| r.name == name)
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .unwrap_or_default();
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!(
                    "{} {} ({})",
                    p.manifest.name,
                    p.manifest.version,
                    v["state"].as_str().unwrap_or("")
                );
                outln!("  {}", p.manifest.description);
                outln!("folder            {}", p.dir.display());
                outln!(
                    "nodes             {}",
                    v["nodes"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                );
                let types: Vec<&str> = p
                    .manifest
                    .credential_types
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect();
                outln!(
                    "credential types  {}",
                    if types.is_empty() {
                        "-".into()
                    } else {
                        types.join(", ")
                    }
                );
                for r in &p.manifest.routes {
                    outln!(
                        "route             {} /plugins/{}{}",
                        r.methods.join(","),
                        p.manifest.name,
                        r.path
                    );
                }
                for t in &p.manifest.triggers {
                    outln!("trigger           {} (`{}`)", t.name, t.command.join(" "));
                }
                if p.manifest.routes.is_empty() && p.manifest.triggers.is_empty() {
                    outln!("routes, triggers  none");
                }
                for e in v["errors"].as_array().into_iter().flatten() {
                    outln!("error: {}", e.as_str().unwrap_or(""));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
