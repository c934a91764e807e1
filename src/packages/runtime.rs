//! How a node package runs:
//! - `oneshot`: one process per call; one JSON request on stdin, one JSON reply
//!   on stdout, stderr lines into the run log.
//! - `persistent`: one long-lived process per package; JSON lines with request
//!   ids, many calls in flight, restarted with backoff when it dies, stopped
//!   when idle.
//! - composite: a workflow file in the package is the node's body.
//! - declarative HTTP: an `http.request` described in the manifest.
//!
//! Children get a clean environment (PATH plus the variables the manifest
//! declares), run in the package folder in their own process group, and the
//! group is killed on timeout or cancellation. The protocol is in
//! docs/node-protocol.md.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::Package;
use super::manifest::{Manifest, Mode};
use crate::engine::expr::{Scope, Template};
use crate::engine::{Status, duration};
use crate::nodes::builtin::exec::ProcessGroup;
use crate::nodes::{
    ErrorKind, Handles, InputSpec, LogLevel, Node, NodeCtx, NodeError, NodeFuture, NodeOutput,
    NodeSpec,
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_IDLE: Duration = Duration::from_secs(300);
const DEFAULT_MAX_REPLY: usize = 16 * 1024 * 1024;
/// Longest input passed as an environment variable (Linux refuses much more).
const MAX_ENV_PARAM: usize = 64 * 1024;

/// `FUSE_PARAM_<NAME>`: the input name upper-cased, other characters as `_`.
pub fn param_var(name: &str) -> String {
    let mut var = String::from("FUSE_PARAM_");
    var.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    var
}

/// The node type of a package.
pub fn node_for(
    package: &Package,
    home: Option<&std::path::Path>,
) -> Result<Arc<dyn Node>, String> {
    let m = &package.manifest;
    let resolve = |p: &String| -> PathBuf {
        match p.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(rest),
            None => package.dir.join(p),
        }
    };
    let policy = super::confine::Policy {
        home: home.map(std::path::Path::to_path_buf),
        own: package.dir.clone(),
        read: m.permissions.read.iter().map(resolve).collect(),
        write: m.permissions.write.iter().map(resolve).collect(),
        tmp: Some(private_tmp(&m.name)),
    };
    let spec = spec_of(m);
    let body = if let Some(rt) = &m.runtime {
        let parse = |v: &Option<String>, default| match v {
            Some(t) => duration::parse(t),
            None => Ok(default),
        };
        let settings = ProcessSettings {
            command: rt.command.clone(),
            dir: package.dir.clone(),
            env: m.permissions.env.clone(),
            timeout: parse(&rt.timeout, DEFAULT_TIMEOUT)?,
            max_reply: rt.max_reply_bytes.unwrap_or(DEFAULT_MAX_REPLY),
            name: m.name.clone(),
            confiner: Arc::new(super::confine::Confiner::new(policy)),
        };
        match rt.mode {
            Mode::Oneshot => Body::Oneshot(settings),
            Mode::Persistent => Body::Persistent(Arc::new(Worker::new(
                settings,
                parse(&rt.idle_timeout, DEFAULT_IDLE)?,
            ))),
        }
    } else if let Some(wf) = &m.workflow {
        Body::Composite(package.dir.join(wf))
    } else if let Some(http) = &m.http {
        Body::Http(Template::new(http))
    } else {
        return Err("the manifest has no runtime, workflow or http".into());
    };
    Ok(Arc::new(PackageNode {
        spec,
        body,
        name: m.name.clone(),
        defaults: m
            .inputs
            .iter()
            .filter_map(|i| i.default.clone().map(|d| (i.name.clone(), d)))
            .collect(),
        credential_types: m.credentials.clone(),
    }))
}

fn spec_of(m: &Manifest) -> NodeSpec {
    let mut inputs: Vec<InputSpec> = m
        .inputs
        .iter()
        .map(|i| InputSpec {
            name: i.name.clone(),
            kind: i.kind.clone(),
            required: i.required && i.default.is_none(),
            description: i.description.clone(),
            aliases: Vec::new(),
        })
        .collect();
    if !m.credentials.is_empty() && !inputs.iter().any(|i| i.name == "credential") {
        inputs.push(InputSpec::optional(
            "credential",
            "string",
            &format!(
                "name of a stored credential of type {}",
                m.credentials.join(" or ")
            ),
        ));
    }
    let output = if m.outputs.is_empty() {
        json!({})
    } else {
        let fields: Vec<(&str, &str)> = m
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), o.kind.as_str()))
            .collect();
        crate::nodes::builtin::object_schema(&fields)
    };
    NodeSpec {
        type_name: m.node_type().to_string(),
        description: m.description.clone(),
        inputs,
        output,
        handles: Handles::Default,
        trigger: false,
        free_inputs: m.free_inputs,
    }
}

struct PackageNode {
    spec: NodeSpec,
    body: Body,
    name: String,
    defaults: Vec<(String, Value)>,
    credential_types: Vec<String>,
}

enum Body {
    Oneshot(ProcessSettings),
    Persistent(Arc<Worker>),
    Composite(PathBuf),
    Http(Template),
}

#[derive(Clone)]
struct ProcessSettings {
    command: Vec<String>,
    dir: PathBuf,
    env: Vec<String>,
    timeout: Duration,
    max_reply: usize,
    name: String,
    confiner: Arc<super::confine::Confiner>,
}

impl Node for PackageNode {
    fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    fn run<'a>(&'a self, ctx: NodeCtx) -> NodeFuture<'a> {
        Box::pin(self.call(ctx))
    }
}

impl PackageNode {
    async fn call(&self, mut ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
        for (k, v) in &self.defaults {
            if !ctx.params.contains_key(k) {
                ctx.params.insert(k.clone(), v.clone());
            }
        }
        let credentials = self.credentials(&mut ctx)?;
        match &self.body {
            Body::Oneshot(settings) => oneshot_call(settings, &ctx, credentials).await,
            Body::Persistent(worker) => worker.call(&ctx, credentials).await,
            Body::Composite(path) => self.composite(path, &ctx).await,
            Body::Http(template) => self.http(template, ctx).await,
        }
    }

    /// The credential named by the `credential` input, if the package declares
    /// its type; a package gets no other credential.
    fn credentials(&self, ctx: &mut NodeCtx) -> Result<Value, NodeError> {
        let Some(name) = ctx.params.remove("credential").filter(|v| !v.is_null()) else {
            return Ok(json!({}));
        };
        let name = name
            .as_str()
            .ok_or_else(|| NodeError::input("credential must be a credential name"))?
            .to_string();
        if self.credential_types.is_empty() {
            return Err(NodeError::input(format!(
                "package {} declares no credentials, so it cannot be given {name:?} \
                 (add its type to \"credentials\" in the manifest)",
                self.name
            )));
        }
        let credential = ctx.credential(&name)?;
        if !self.credential_types.contains(&credential.kind) {
            return Err(NodeError::input(format!(
                "credential {name:?} is of type {}; package {} accepts {}",
                credential.kind,
                self.name,
                self.credential_types.join(", ")
            )));
        }
        let mut fields: Map<String, Value> = credential
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect();
        fields.insert("type".into(), Value::String(credential.kind.clone()));
        Ok(json!({ name: fields }))
    }

    async fn composite(
        &self,
        path: &std::path::Path,
        ctx: &NodeCtx,
    ) -> Result<NodeOutput, NodeError> {
        if ctx.run.depth + 1 > crate::engine::MAX_DEPTH {
            return Err(NodeError::input(format!(
                "package {} nests sub-workflows more than {} deep",
                self.name,
                crate::engine::MAX_DEPTH
            )));
        }
        let plan = ctx
            .engine()
            .load(path)
            .map_err(|e| NodeError::input(format!("package {}: {e}", self.name)))?;
        let mut input = Value::Object(ctx.params.clone());
        input["input"] = (*ctx.input).clone();
        let record = ctx.run_child(plan, input).await;
        match record.status {
            Status::Succeeded => Ok(NodeOutput::new(Arc::unwrap_or_clone(record.output))),
            status => Err(NodeError::other(format!(
                "package {} (run {}) {}: {}",
                self.name,
                record.run_id,
                status.as_str(),
                record.error.unwrap_or_default()
            ))),
        }
    }

    async fn http(&self, template: &Template, mut ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
        let scope_json = json!({"params": Value::Object(ctx.params.clone()), "input": *ctx.input});
        let scope =
            std::sync::OnceLock::from(minijinja::Value::from(minijinja::value::Serde(&scope_json)));
        let rendered = ctx
            .engine()
            .expressions()
            .render_template(template, &Scope::of(&scope))
            .map_err(|e| {
                NodeError::new(ErrorKind::Expression, format!("package {}: {e}", self.name))
            })?;
        let Value::Object(params) = rendered else {
            return Err(NodeError::input(format!(
                "package {}: `http` must be an object of http.request inputs",
                self.name
            )));
        };
        let http = ctx
            .engine()
            .registry()
            .get("http.request")
            .cloned()
            .ok_or_else(|| NodeError::other("http.request is not available"))?;
        ctx.params = params;
        http.run(ctx).await
    }
}

/// The request a package process receives.
fn request_of(ctx: &NodeCtx, credentials: Value) -> Value {
    json!({
        "params": Value::Object(ctx.params.clone()),
        "input": *ctx.input,
        "context": {"run_id": ctx.run.id, "workflow": ctx.run.workflow, "node_id": &*ctx.node_id},
        "credentials": credentials,
    })
}

/// A package's reply (`{"output": …}` or `{"error": {"message", "retryable"}}`).
fn parse_reply(name: &str, reply: Value) -> Result<NodeOutput, NodeError> {
    let Value::Object(mut map) = reply else {
        return Err(NodeError::new(
            ErrorKind::Process,
            format!(
                "package {name} replied with JSON that is not an object; reply {{\"output\": …}} or {{\"error\": {{\"message\": …}}}}"
            ),
        ));
    };
    if let Some(err) = map.remove("error").filter(|e| !e.is_null()) {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        let retryable = err
            .get("retryable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return Err(
            NodeError::new(ErrorKind::Other, format!("package {name}: {message}"))
                .retryable(retryable),
        );
    }
    match map.remove("output") {
        Some(output) => Ok(NodeOutput::new(output)),
        None => Err(NodeError::new(
            ErrorKind::Process,
            format!("package {name} replied without `output` or `error`"),
        )),
    }
}

fn command_of(settings: &ProcessSettings) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&settings.command[0]);
    cmd.args(&settings.command[1..])
        .current_dir(&settings.dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FUSE_PACKAGE", &settings.name)
        .env("FUSE_PACKAGE_DIR", &settings.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for var in &settings.env {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    if let Some(tmp) = &settings.confiner.policy().tmp
        && crate::files::create_private_dir(tmp).is_ok()
    {
        cmd.env("TMPDIR", tmp);
    }
    #[cfg(unix)]
    cmd.process_group(0);
    // Dies with this process, as `exec.command`'s commands do.
    crate::nodes::builtin::exec::dies_with_fuse(&mut cmd);
    settings.confiner.confine(&mut cmd);
    cmd
}

/// A package's own temporary folder (its `TMPDIR`), outside the fuse home.
fn private_tmp(name: &str) -> PathBuf {
    // SAFETY: getuid has no preconditions.
    #[cfg(unix)]
    let uid = unsafe { libc::getuid() };
    #[cfg(not(unix))]
    let uid = 0;
    std::env::temp_dir().join(format!("fuse-{uid}-pkg-{name}"))
}

fn spawn_error(settings: &ProcessSettings, e: &std::io::Error) -> NodeError {
    let program = &settings.command[0];
    let message = if e.kind() == std::io::ErrorKind::NotFound {
        format!(
            "package {}: command {program:?} was not found (is it installed and on PATH? `fuse nodes doctor` checks)",
            settings.name
        )
    } else {
        format!("package {}: cannot start {program:?}: {e}", settings.name)
    };
    NodeError::new(ErrorKind::Process, message).retryable(false)
}

async fn oneshot_call(
    settings: &ProcessSettings,
    ctx: &NodeCtx,
    credentials: Value,
) -> Result<NodeOutput, NodeError> {
    let name = &settings.name;
    let mut cmd = command_of(settings);
    // Scalar inputs also as $FUSE_PARAM_<NAME>, so shell nodes need no JSON parser.
    for (key, value) in &ctx.params {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => continue,
        };
        if text.len() <= MAX_ENV_PARAM && !text.contains('\0') {
            cmd.env(param_var(key), text);
        }
    }
    let mut child = cmd.spawn().map_err(|e| spawn_error(settings, &e))?;
    // Dropped on every exit path (timeout and cancellation drop this future):
    // the whole process group goes, including anything the package started.
    let _group = ProcessGroup(child.id());
    let request = serde_json::to_vec(&request_of(ctx, credentials))
        .map_err(|e| NodeError::other(format!("cannot encode the request: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(&request).await;
            let _ = stdin.shutdown().await;
        });
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let limit = settings.max_reply;
    let read_out = async move {
        let mut buf = Vec::new();
        if let Some(out) = stdout {
            // Read one byte past the limit to know it was exceeded.
            let _ = out.take(limit as u64 + 1).read_to_end(&mut buf).await;
        }
        buf
    };
    let log_ctx = ctx.clone();
    let read_err = async move {
        let mut last = String::new();
        if let Some(err) = stderr {
            log_ctx
                .log_lines(err, |line| {
                    if !line.trim().is_empty() {
                        last = line;
                    }
                })
                .await;
        }
        last
    };
    let work = async {
        let (out, last_err) = tokio::join!(read_out, read_err);
        let status = child.wait().await;
        (out, last_err, status)
    };
    let (out, last_err, status) = match tokio::time::timeout(settings.timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            return Err(NodeError::new(
                ErrorKind::Timeout,
                format!(
                    "package {name} gave no reply within {} (its process group was killed; raise runtime.timeout if it needs longer)",
                    duration::human(settings.timeout)
                ),
            ));
        }
    };
    if out.len() > limit {
        return Err(NodeError::new(
            ErrorKind::Process,
            format!(
                "package {name} replied with more than {limit} bytes (runtime.max_reply_bytes)"
            ),
        )
        .retryable(false));
    }
    let status = status.map_err(|e| {
        NodeError::new(
            ErrorKind::Process,
            format!("waiting for package {name}: {e}"),
        )
    })?;
    let text = String::from_utf8_lossy(&out);
    let text = text.trim();
    if text.is_empty() {
        let how = match status.code() {
            Some(code) => format!("exited with code {code}"),
            None => "was killed by a signal".to_string(),
        };
        let stderr = if last_err.is_empty() {
            "no stderr output".to_string()
        } else {
            format!("last stderr line: {last_err}")
        };
        return Err(NodeError::new(
            ErrorKind::Process,
            format!("package {name} {how} without a reply ({stderr})"),
        ));
    }
    let reply: Value = serde_json::from_str(text).map_err(|e| {
        let excerpt: String = text.chars().take(200).collect();
        NodeError::new(
            ErrorKind::Process,
            format!("package {name} replied with something that is not JSON ({e}): {excerpt}"),
        )
        .retryable(false)
    })?;
    parse_reply(name, reply)
}

/// A persistent package process and the calls waiting for it.
struct Worker {
    settings: ProcessSettings,
    idle: Duration,
    next_id: AtomicU64,
    state: tokio::sync::Mutex<Option<Running>>,
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
    restarts: Mutex<(u32, Option<Instant>)>,
    last_used: Arc<Mutex<Instant>>,
}

struct Pending {
    reply: oneshot::Sender<Result<Value, NodeError>>,
    ctx: NodeCtx,
}

struct Running {
    stdin: tokio::process::ChildStdin,
    alive: Arc<std::sync::atomic::AtomicBool>,
    _child: Arc<Mutex<tokio::process::Child>>,
    _group: Arc<ProcessGroup>,
}

impl Worker {
    fn new(settings: ProcessSettings, idle: Duration) -> Worker {
        Worker {
            settings,
            idle,
            next_id: AtomicU64::new(1),
            state: tokio::sync::Mutex::new(None),
            pending: Arc::new(Mutex::new(HashMap::new())),
            restarts: Mutex::new((0, None)),
            last_used: Arc::new(Mutex::new(Instant::now())),
        }
    }

    async fn call(&self, ctx: &NodeCtx, credentials: Value) -> Result<NodeOutput, NodeError> {
        let name = &self.settings.name;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = request_of(ctx, credentials);
        request["id"] = json!(id);
        let mut line = serde_json::to_vec(&request)
            .map_err(|e| NodeError::other(format!("cannot encode the request: {e}")))?;
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(
                id,
                Pending {
                    reply: tx,
                    ctx: ctx.clone(),
                },
            );
        }
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
        // Drops the pending entry however this call ends (timeout, cancellation).
        let _forget = Forget(&self.pending, id);
        {
            let mut state = self.state.lock().await;
            let dead = state
                .as_ref()
                .is_none_or(|r| !r.alive.load(Ordering::Acquire));
            if dead {
                *state = Some(self.start().await?);
            }
            let running = state
                .as_mut()
                .ok_or_else(|| NodeError::other("worker not running"))?;
            if let Err(e) = running.stdin.write_all(&line).await {
                running.alive.store(false, Ordering::Release);
                return Err(NodeError::new(
                    ErrorKind::Process,
                    format!(
                        "package {name}: cannot send the request to its worker ({e}); it will be restarted"
                    ),
                ));
            }
            let _ = running.stdin.flush().await;
        }
        match tokio::time::timeout(self.settings.timeout, rx).await {
            Ok(Ok(result)) => parse_reply(name, result?),
            Ok(Err(_)) => Err(NodeError::new(
                ErrorKind::Process,
                format!("package {name}: the worker went away before replying"),
            )),
            Err(_) => Err(NodeError::new(
                ErrorKind::Timeout,
                format!(
                    "package {name}: no reply within {} (raise runtime.timeout if it needs longer)",
                    duration::human(self.settings.timeout)
                ),
            )),
        }
    }

    /// Starts the process (after a backoff if it keeps dying) and its readers.
    async fn start(&self) -> Result<Running, NodeError> {
        let wait = {
            let mut r = self
                .restarts
                .lock()
                .map_err(|_| NodeError::other("worker state lost"))?;
            let recent = r.1.is_some_and(|t| t.elapsed() < Duration::from_secs(30));
            r.0 = if recent { r.0 + 1 } else { 0 };
            r.1 = Some(Instant::now());
            if r.0 == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(100u64 << r.0.min(7)).min(Duration::from_secs(10))
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let mut child = command_of(&self.settings)
            .spawn()
            .map_err(|e| spawn_error(&self.settings, &e))?;
        let group = Arc::new(ProcessGroup(child.id()));
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| NodeError::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| NodeError::other("no stdout"))?;
        let stderr = child.stderr.take();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let child = Arc::new(Mutex::new(child));
        let name = self.settings.name.clone();

        // Replies, by id; a closed stdout means the worker died: every call in
        // flight fails (retryable) and the next call restarts it.
        let (pending, alive_out) = (self.pending.clone(), alive.clone());
        let limit = self.settings.max_reply;
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.len() > limit {
                    tracing::warn!(
                        "package {name}: a reply of {} bytes was dropped",
                        line.len()
                    );
                    continue;
                }
                let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                    tracing::warn!("package {name}: worker wrote a line that is not JSON");
                    continue;
                };
                let Some(id) = msg.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                let mut pending = match pending.lock() {
                    Ok(p) => p,
                    Err(_) => break,
                };
                if let Some(log) = msg.get("log").and_then(Value::as_str) {
                    if let Some(p) = pending.get(&id) {
                        p.ctx.log(LogLevel::Info, log.to_string());
                    }
                    continue;
                }
                if let Some(p) = pending.remove(&id) {
                    let _ = p.reply.send(Ok(msg));
                }
            }
            alive_out.store(false, Ordering::Release);
            if let Ok(mut pending) = pending.lock() {
                for (_, p) in pending.drain() {
                    let _ = p.reply.send(Err(NodeError::new(
                        ErrorKind::Process,
                        format!("package {name}: its worker process exited; it restarts on the next call"),
                    )));
                }
            }
        });
        if let Some(stderr) = stderr {
            let name = self.settings.name.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!("package {name}: {line}");
                }
            });
        }
        // Stop when idle: nothing in flight and no call for `idle`.
        {
            let (alive, group, last_used, pending, idle) = (
                alive.clone(),
                Arc::downgrade(&group),
                self.last_used.clone(),
                self.pending.clone(),
                self.idle,
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(
                        idle.min(Duration::from_secs(5))
                            .max(Duration::from_millis(50)),
                    )
                    .await;
                    if !alive.load(Ordering::Acquire) {
                        break;
                    }
                    let quiet = last_used
                        .lock()
                        .map(|t| t.elapsed() >= idle)
                        .unwrap_or(false);
                    let busy = pending.lock().map(|p| !p.is_empty()).unwrap_or(true);
                    if quiet && !busy {
                        alive.store(false, Ordering::Release);
                        if let Some(group) = group.upgrade()
                            && let Some(pid) = group.0.and_then(|p| i32::try_from(p).ok())
                        {
                            // SAFETY: signals the process group fuse created for the worker.
                            unsafe {
                                libc::kill(-pid, libc::SIGTERM);
                            }
                        }
                        break;
                    }
                }
            });
        }
        Ok(Running {
            stdin,
            alive,
            _child: child,
            _group: group,
        })
    }
}

struct Forget<'a>(&'a Arc<Mutex<HashMap<u64, Pending>>>, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.0.lock() {
            p.remove(&self.1);
        }
    }
}
