//! fuse: a local, CLI-first workflow-automation engine.
//!
//! Layout (data takes one road, whether from `fuse run` or the daemon):
//! - [`cli`]: argument parsing and one file per subcommand; the only place that
//!   prints or prompts.
//! - [`config`]: `fuse.toml` ← `FUSE_*` environment ← flags.
//! - [`home`]: the home directory, its paths, and `init` with the bundled files.
//! - [`store`]: SQLite (WAL) with embedded refinery migrations.
//! - [`secrets`]: the master key and its stores (keyring, env, key file).
//! - [`error`]: the library's error type.

pub mod cli;
pub mod config;
pub mod error;
pub mod home;
pub mod secrets;
pub mod store;

pub use error::{Error, Result};

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
