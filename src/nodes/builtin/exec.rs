//! `exec.command`: runs a program (argv, no shell unless asked), captures its
//! output, and kills its whole process group on timeout or cancellation.

use std::process::Stdio;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{InputSpec, Node, boxed, builtin, object_schema};
use crate::nodes::{ErrorKind, NodeCtx, NodeError, NodeOutput, wrong_type};

/// Bytes of stdout or stderr kept; the rest is drained and dropped.
const MAX_CAPTURE: usize = 16 * 1024 * 1024;

pub(super) fn node() -> Arc<dyn Node> {
    builtin(
        "exec.command",
        "Runs a command and outputs {exit_code, stdout, stderr}; a non-zero exit fails the node unless allow_failure.",
        vec![
            InputSpec::required(
                "argv",
                "array",
                "program and arguments, e.g. [\"ls\", \"-l\"]; a string with shell: true",
            ),
            InputSpec::optional("env", "object", "extra environment variables"),
            InputSpec::optional(
                "cwd",
                "string",
                "working folder (default: the workflow's folder)",
            ),
            InputSpec::optional(
                "stdin",
                "any",
                "text (or JSON) written to the command's stdin",
            ),
            InputSpec::optional("shell", "boolean", "run through `sh -c` (default false)"),
            InputSpec::optional(
                "allow_failure",
                "boolean",
                "a non-zero exit does not fail the node",
            ),
        ],
        object_schema(&[
            ("exit_code", "integer"),
            ("stdout", "string"),
            ("stderr", "string"),
        ]),
        |ctx| boxed(run(ctx)),
    )
}

async fn run(ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let shell = ctx.bool_or("shell", false)?;
    let allow_failure = ctx.bool_or("allow_failure", false)?;
    let argv: Vec<String> = match ctx.value("argv")? {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
                other => Err(wrong_type("argv", "an array of strings", other)),
            })
            .collect::<Result<_, _>>()?,
        Value::String(s) if shell => vec![s.clone()],
        other => {
            return Err(wrong_type(
                "argv",
                "an array of strings (or a string with shell: true)",
                other,
            ));
        }
    };
    let Some(program) = argv.first() else {
        return Err(NodeError::input(
            "argv is empty; give at least the program name",
        ));
    };
    let mut cmd = if shell {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(argv.join(" "));
        c
    } else {
        let mut c = tokio::process::Command::new(program);
        c.args(&argv[1..]);
        c
    };
    if let Some(env) = ctx.param("env") {
        let map = env
            .as_object()
            .ok_or_else(|| wrong_type("env", "an object", env))?;
        for (k, v) in map {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            cmd.env(k, value);
        }
    }
    let cwd = match ctx.opt_str("cwd")? {
        Some(_) => ctx.path("cwd")?,
        None => (*ctx.base_dir).clone(),
    };
    cmd.current_dir(&cwd);
    let stdin = match ctx.param("stdin") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone().into_bytes()),
        Some(other) => Some(other.to_string().into_bytes()),
    };
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    dies_with_fuse(&mut cmd);

    let mut child = cmd.spawn().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            format!("command {program:?} was not found (is it installed and on PATH?)")
        } else {
            format!("cannot start {program:?} in {}: {e}", cwd.display())
        };
        NodeError::new(ErrorKind::Process, hint).retryable(false)
    })?;
    let _group = ProcessGroup(child.id());

    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = pipe.write_all(&bytes).await;
        });
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read_out = async move {
        let mut buf = Vec::new();
        if let Some(mut out) = stdout {
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n) = out.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let room = MAX_CAPTURE.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
        buf
    };
    let log_ctx = ctx.clone();
    let read_err = async move {
        let mut text = String::new();
        if let Some(err) = stderr {
            log_ctx
                .log_lines(err, |line| {
                    if text.len() < MAX_CAPTURE {
                        text.push_str(&line);
                        text.push('\n');
                    }
                })
                .await;
        }
        text
    };
    let (out, err, status) = tokio::join!(read_out, read_err, child.wait());
    let status = status.map_err(|e| {
        NodeError::new(
            ErrorKind::Process,
            format!("waiting for {program:?} failed: {e}"),
        )
    })?;
    let stdout = String::from_utf8_lossy(&out).into_owned();
    let Some(code) = status.code() else {
        #[cfg(unix)]
        let signal = std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0);
        #[cfg(not(unix))]
        let signal = 0;
        return Err(NodeError::new(
            ErrorKind::Process,
            format!("{program:?} was killed by signal {signal}"),
        )
        .with_details(json!({"stdout": stdout, "stderr": err})));
    };
    if code != 0 && !allow_failure {
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no stderr output");
        return Err(NodeError::new(
            ErrorKind::Exit { code },
            format!("{program:?} exited with code {code}: {last}"),
        )
        .with_details(json!({"exit_code": code, "stdout": stdout, "stderr": err})));
    }
    Ok(NodeOutput::new(
        json!({"exit_code": code, "stdout": stdout, "stderr": err}),
    ))
}

/// Kills the whole process group when dropped (timeout, cancellation, or after a
/// normal exit, to take down anything the command left running in its group).
pub(crate) struct ProcessGroup(pub(crate) Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill() with a negative pid signals the group we created for the
            // child; it has no memory-safety preconditions.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// Makes a child process die with this process (Linux): a fuse (or worker)
/// killed with -9 leaves no command or package process behind that would
/// finish its side effect beside the run another worker resumes. The signal
/// comes when the thread that spawned the child ends, so spawn from a
/// runtime's own threads, not from a pool thread that may exit first.
pub(crate) fn dies_with_fuse(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}
