//! fuse: a local, CLI-first workflow-automation engine.
//!
//! Layout (data takes one road, whether from `fuse run` or the daemon):
//! - [`api`]: the daemon's HTTP API as one typed contract (routes, types, OpenAPI).
//! - [`cli`]: argument parsing and one file per subcommand; the only place that
//!   prints or prompts.
//! - [`config`]: `fuse.toml` ← `FUSE_*` environment ← flags.
//! - [`files`]: atomic writes and file permissions.
//! - [`home`]: the home directory, its paths, and `init` with the bundled files.
//! - [`store`]: SQLite (WAL) with embedded refinery migrations.
//! - [`secrets`]: the master key and its stores (keyring, env, key file).
//! - [`workflow`]: the workflow format, validation and JSON Schema.
//! - [`engine`]: plans and runs workflows (the one code path for runs).
//! - [`nodes`]: the node trait, registry and built-in nodes.
//! - [`error`]: the library's error type.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod digest;
pub mod engine;
pub mod error;
pub mod files;
pub mod home;
pub mod nodes;
pub mod packages;
pub mod schedule;
pub mod secrets;
pub mod store;
pub mod testing;
pub mod worker;
pub mod workflow;

pub use engine::{Engine, Plan, RunRecord, RunRequest};
pub use error::{Error, Result};
pub use workflow::Workflow;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
