//! `fuse validate FILE`: every static problem of a workflow, with node ids and
//! JSON paths; exit 2 when there are any.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::json;

use crate::engine::{Engine, LoadError, NullObserver};
use crate::nodes::Registry;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The workflow file (JSON).
    pub file: PathBuf,

    /// Print {"valid", "problems": [{node, path, message}]} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(globals: &super::Globals, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    // With a home, its node packages are known types too.
    let home = crate::home::Home::resolve(globals.home.clone()).ok();
    let registry = match &home {
        Some(home) => super::run::home_registry(home, &Default::default(), false),
        None => Registry::builtin(),
    };
    let mut engine = Engine::new(registry, Arc::new(NullObserver), 1);
    // Bare names in expressions may name stored credentials (never decrypted here).
    if let Some(home) = home.filter(|h| h.is_initialized()) {
        engine =
            engine.with_credentials(Arc::new(crate::secrets::vault::HomeCredentials::new(home)));
    }
    let result = engine.load(&args.file);
    let problems = match &result {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid { problems, .. }) => problems.clone(),
        Err(LoadError::Parse { error, .. }) => vec![crate::workflow::Problem {
            node: None,
            path: error.path.clone(),
            message: format!(
                "line {}, column {}: {}",
                error.line, error.column, error.message
            ),
        }],
        Err(e @ LoadError::Read { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let warnings = result
        .as_ref()
        .map(|plan| plan.warnings.clone())
        .unwrap_or_default();
    let params = result.as_ref().ok().and_then(|plan| plan.params.clone());
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"valid": problems.is_empty(), "problems": problems, "warnings": warnings, "params": params})
            )?
        );
    } else if let Ok(plan) = &result {
        outln!(
            "{} is valid: {} nodes, {} edges",
            args.file.display(),
            plan.nodes.len(),
            plan.edges.len()
        );
        match &params {
            Some(params) if !params.is_empty() => {
                outln!("params (--input NAME=VALUE):");
                for p in params {
                    outln!("  {p}");
                }
            }
            Some(_) => outln!("it takes no input"),
            None => {}
        }
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    } else {
        eprintln!("{} has {} problem(s):", args.file.display(), problems.len());
        for p in &problems {
            eprintln!("  - {p}");
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
