//! What the benches share: the `fuse` binary in a given home with the default
//! configuration, and numeric settings from the environment.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The release `fuse` binary for `home`, with no `FUSE_*` setting from this
/// environment (the benches measure the default configuration).
pub fn fuse(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fuse"));
    cmd.env("FUSE_HOME", home);
    for (k, _) in std::env::vars() {
        if k.starts_with("FUSE_") && k != "FUSE_HOME" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `key` from the environment, parsed, else `default`.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
