//! `fuse tokens new|list|revoke`: named API tokens with a scope. A new token
//! is printed once; only its hash is stored. Works with or without a running
//! daemon, which picks changes up within a second.

use std::process::ExitCode;

use serde_json::json;

use super::Globals;
use crate::home::Home;
use crate::store::tokens::{self, Scope};

#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Make a token; it is printed once (store it now: only its hash is kept).
    #[command(
        after_help = "Examples:\n  fuse tokens new ci --scope run        # start and read runs\n  fuse tokens new grafana --scope read\n  fuse tokens new ops --scope admin --json\n\nScopes: read (everything readable), run (read, and start, cancel, retry runs),\nadmin (everything: deploys, deletes, credentials)."
    )]
    New {
        /// A name for it: letters, digits, `-`, `_`.
        name: String,
        /// read, run or admin.
        #[arg(long, value_parser = ["read", "run", "admin"])]
        scope: String,
        #[arg(long)]
        json: bool,
    },
    /// List tokens: name, scope, created, last used (never the tokens).
    #[command(after_help = "Example:\n  fuse tokens list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: requests with it are refused from then on.
    #[command(after_help = "Example:\n  fuse tokens revoke ci")]
    Revoke { name: String },
}

pub fn run(globals: &Globals, command: TokensCommand) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let store = home.open_db()?;
    match command {
        TokensCommand::New { name, scope, json } => {
            let scope = Scope::parse(&scope)?;
            let token = tokens::generate()?;
            store.add_token(&name, &token, scope)?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"name": name, "scope": scope, "token": token})
                    )?
                );
            } else {
                outln!("{token}");
                if !globals.quiet {
                    eprintln!(
                        "token {name:?} (scope {}) made; it is shown this once: send it as `Authorization: Bearer <token>`",
                        scope.as_str()
                    );
                }
            }
        }
        TokensCommand::List { json } => {
            let all = store.list_tokens()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "{:<24}  {:<6}  {:<19}  LAST USED",
                "NAME",
                "SCOPE",
                "CREATED"
            );
            for t in all {
                outln!(
                    "{:<24}  {:<6}  {:<19}  {}",
                    t.name,
                    t.scope.as_str(),
                    super::runs::local_time(t.created_at),
                    t.last_used_at
                        .map(super::runs::local_time)
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
        TokensCommand::Revoke { name } => {
            if name == tokens::INIT_TOKEN {
                anyhow::bail!(crate::Error::Setting(format!(
                    "the {:?} token is the one in the home's api-token file, which fuse itself uses; it cannot be revoked",
                    tokens::INIT_TOKEN
                )));
            }
            if !store.revoke_token(&name)? {
                anyhow::bail!(crate::Error::Setting(format!(
                    "no token named {name:?}; `fuse tokens list` shows them"
                )));
            }
            if !globals.quiet {
                outln!("token {name:?} revoked");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
