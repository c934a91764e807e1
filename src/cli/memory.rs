//! `fuse memory list|show|clear`: the conversation memory `llm.chat` and
//! `llm.agent` keep per session (`memory: {session: …}`) in the home's database.

use std::process::ExitCode;

use super::Globals;
use crate::home::Home;

#[derive(Debug, clap::Subcommand)]
pub enum MemoryCommand {
    /// Sessions with their message and token counts, most recent first.
    #[command(after_help = "Example:\n  fuse memory list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// The messages of one session, oldest first.
    #[command(after_help = "Example:\n  fuse memory show alice")]
    Show {
        session: String,
        #[arg(long)]
        json: bool,
    },
    /// Forget a session (or every session with --all).
    #[command(after_help = "Examples:\n  fuse memory clear alice\n  fuse memory clear --all")]
    Clear {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        session: Option<String>,
        /// Forget every session.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(globals: &Globals, command: MemoryCommand) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    // The store's memory: PostgreSQL's with store.url, else the home's file.
    let store = home.open_db()?;
    match command {
        MemoryCommand::List { json } => {
            let sessions = store.memory_sessions()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&sessions)?);
                return Ok(ExitCode::SUCCESS);
            }
            if sessions.is_empty() {
                if !globals.quiet {
                    eprintln!(
                        "no conversation memory yet: llm.chat and llm.agent keep it with memory: {{\"session\": …}}"
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "{:<32}  {:>8}  {:>8}  LAST USED",
                "SESSION",
                "MESSAGES",
                "TOKENS"
            );
            for s in sessions {
                outln!(
                    "{:<32}  {:>8}  {:>8}  {}",
                    s.session,
                    s.messages,
                    s.tokens,
                    super::runs::local_time_ms(s.updated_at)
                );
            }
        }
        MemoryCommand::Show { session, json } => {
            let Some(messages) = store.memory_messages(&session)? else {
                anyhow::bail!(crate::Error::NotFound(format!(
                    "there is no memory session {session:?}; `fuse memory list` shows them"
                )));
            };
            let summary = store.memory_summary(&session)?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"session": session, "summary": summary, "messages": messages})
                    )?
                );
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(s) = summary {
                outln!("summary of earlier turns:");
                outln!("  {s}");
            }
            for m in messages {
                outln!("{} {}:", super::runs::local_time_ms(m.created_at), m.role);
                for line in m.content.lines() {
                    outln!("  {line}");
                }
            }
        }
        MemoryCommand::Clear { session, all, json } => {
            let removed = match (all, session.as_deref()) {
                (false, Some(session)) => store.memory_clear(session)?,
                (false, None) => 0,
                (true, _) => {
                    let mut removed = 0;
                    for kept in store.memory_sessions()? {
                        removed += store.memory_clear(&kept.session)?;
                    }
                    removed
                }
            };
            if json {
                outln!("{}", serde_json::json!({"removed": removed}));
            } else if !globals.quiet {
                eprintln!("forgot {removed} message(s)");
            }
            if !all && removed == 0 {
                anyhow::bail!(crate::Error::NotFound(format!(
                    "there is no memory session {:?}; `fuse memory list` shows them",
                    session.unwrap_or_default()
                )));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
