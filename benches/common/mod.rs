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

/// Makes a home with `fuse init` (the default configuration).
pub fn init(home: &Path) {
    let out = fuse(home)
        .args(["init", "--yes", "--no-keyring"])
        .output()
        .expect("run fuse init");
    assert!(
        out.status.success(),
        "fuse init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the daemon of `home` on a free port (no browser); its pid and
/// `host:port`.
pub fn start(home: &Path) -> (u32, String) {
    let out = fuse(home)
        .args(["start", "--port", "0", "--skip-browser"])
        .output()
        .expect("run fuse start");
    assert!(
        out.status.success(),
        "fuse start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(home.join("daemon.json")).expect("daemon.json");
    let info: serde_json::Value = serde_json::from_str(&text).expect("daemon.json is JSON");
    let pid = info["pid"].as_u64().expect("a pid") as u32;
    let addr = format!(
        "{}:{}",
        info["host"].as_str().unwrap_or("127.0.0.1"),
        info["port"]
    );
    (pid, addr)
}
