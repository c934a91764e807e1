//! Test fixtures: a temporary home and the real `fuse` binary pointed at it,
//! and an HTTP server on 127.0.0.1 ([`http`]).

#![allow(dead_code)]

pub mod http;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A temporary fuse home; `cmd()` runs the real binary against it.
pub struct TestHome {
    dir: tempfile::TempDir,
    home: PathBuf,
}

impl TestHome {
    /// A temp folder with a home path inside it that does not exist yet.
    pub fn new() -> TestHome {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("home");
        TestHome { dir, home }
    }

    /// A home at `path` (which need not exist yet); the temp folder is separate.
    pub fn at(path: PathBuf) -> TestHome {
        let dir = tempfile::tempdir().expect("temp dir");
        TestHome { dir, home: path }
    }

    /// A home on which `fuse init --yes` has run.
    pub fn initialized() -> TestHome {
        let t = TestHome::new();
        t.cmd().args(["init", "--yes"]).assert().success();
        t
    }

    pub fn path(&self) -> &Path {
        &self.home
    }

    pub fn tmp(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `workflow` (pretty JSON) to `name` in the temp folder; returns its path.
    pub fn write(&self, name: &str, workflow: &serde_json::Value) -> PathBuf {
        let path = self.tmp().join(name);
        let text = serde_json::to_string_pretty(workflow).expect("JSON");
        std::fs::write(&path, text).expect("write the workflow");
        path
    }

    /// `fuse` with FUSE_HOME set to this home and no other FUSE_* from the outside.
    pub fn cmd(&self) -> Command {
        let mut cmd = fuse();
        cmd.env("FUSE_HOME", &self.home);
        cmd
    }
}

/// The real binary with a clean environment (no FUSE_* variables, no TTY stdin).
pub fn fuse() -> Command {
    let mut cmd = Command::cargo_bin("fuse").expect("fuse binary");
    for (key, _) in std::env::vars() {
        if key.starts_with("FUSE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// stdout of a successful command as a string.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run fuse");
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout of a successful command, as JSON.
pub fn json_of(cmd: &mut Command) -> serde_json::Value {
    let out = stdout_of(cmd);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Runs the real binary on a pseudo-terminal (through Python's `pty`), typing
/// each answer once its prompt has appeared; returns everything it printed.
pub fn in_terminal(
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
    dialog: &[(&str, &str)],
) -> String {
    const DRIVER: &str = r#"
import json, os, pty, select, sys, time
exe, args, dialog = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pid, fd = pty.fork()
if pid == 0:
    os.execv(exe, [exe] + args)
out = b""
def read(deadline):
    global out
    r, _, _ = select.select([fd], [], [], max(0, deadline - time.time()))
    if not r:
        return False
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        return None
    if not chunk:
        return None
    out += chunk
    return True
for expect, answer in dialog:
    deadline = time.time() + 20
    while expect.encode() not in out:
        if read(deadline) is None or time.time() > deadline:
            sys.stdout.write(out.decode(errors="replace"))
            sys.exit("never saw %r" % expect)
    if answer:
        os.write(fd, answer.encode())
deadline = time.time() + 20
while read(deadline):
    pass
os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
"#;
    let exe = assert_cmd::cargo::cargo_bin("fuse");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c")
        .arg(DRIVER)
        .arg(&exe)
        .arg(serde_json::to_string(args).expect("JSON"))
        .arg(serde_json::to_string(dialog).expect("JSON"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FUSE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1").env("TERM", "dumb");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the terminal session failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
