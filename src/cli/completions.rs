//! `fuse completions SHELL`: shell completion scripts from the clap definitions.

use std::process::ExitCode;

use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout();
    clap_complete::generate(args.shell, &mut cmd, "fuse", &mut out);
    std::io::Write::flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}
