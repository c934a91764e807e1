//! `fuse schema workflow|manifest|test`: the JSON Schemas of workflows, package
//! manifests and workflow test files.

use std::process::ExitCode;

use crate::nodes::Registry;

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Which schema.
    pub which: Which,
}

#[derive(Debug, Clone, clap::ValueEnum)]
pub enum Which {
    /// The workflow file format.
    Workflow,
    /// The manifest.json of node and plugin packages.
    Manifest,
    /// Workflow test files (NAME.test.json, for `fuse test`).
    Test,
}

pub fn run(globals: &super::Globals, args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = match args.which {
        // With a home, its node packages are node types too (as for `fuse validate`).
        Which::Workflow => {
            let registry = match crate::home::Home::resolve(globals.home.clone()) {
                Ok(home) => super::run::home_registry(&home, &Default::default(), false),
                Err(_) => Registry::builtin(),
            };
            crate::workflow::schema::workflow_schema(&registry)
        }
        Which::Manifest => crate::packages::manifest::schema(),
        Which::Test => crate::testing::schema(),
    };
    outln!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}
