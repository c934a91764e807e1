//! The engine: turns a workflow file into a [`Plan`] and runs it. `fuse run`
//! and the daemon both call [`Engine::run`]; there is no second code path.
//!
//! - [`plan`]: the validated, indexed graph.
//! - [`executor`]: readiness, skips, concurrency, retries, timeouts, cancellation.
//! - [`expr`]: `{{ … }}` expressions.
//! - [`events`]: what a run reports to observers (recorder, progress, daemon).
//! - [`duration`]: `"300ms"`-style durations.

pub mod compare;
pub mod creds;
pub mod definition;
pub mod duration;
pub mod events;
mod executor;
pub mod expr;
pub mod pin;
pub mod plan;
mod record;
pub mod trigger;

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use creds::{CredentialSource, RunCreds};
pub use events::{Event, Fanout, NodeStep, NullObserver, Observer, Status, StepKind};
pub use plan::Plan;
pub use record::{NodeRecord, RunRecord};

use crate::nodes::Registry;
use crate::workflow::{Problem, model::ParseError, validate::Source};

/// Sub-workflows may nest this deep (stops a workflow that calls itself).
pub const MAX_DEPTH: u32 = 16;

/// Runs workflows. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// Swapped as a whole when packages change; plans keep the nodes they resolved.
    registry: std::sync::RwLock<Arc<Registry>>,
    exprs: expr::Expressions,
    observer: Arc<dyn Observer>,
    max_parallel: usize,
    credentials: Option<Arc<dyn CredentialSource>>,
}

/// What to run a plan with.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub input: Value,
    /// What started the run: `cli`, `manual`, `webhook`, `cron`, `call`, `retry`.
    pub trigger_kind: String,
    pub parent_id: Option<String>,
    pub retry_of: Option<String>,
    pub depth: u32,
    pub cancel: CancellationToken,
    /// Outputs of nodes to reuse instead of running them (`runs retry --from-failed`).
    pub reuse: std::collections::HashMap<String, Value>,
    /// Outputs of single items of `foreach` nodes to reuse instead of
    /// running them again (a resumed queued run): by node, by item index.
    pub reuse_items: std::collections::HashMap<String, std::collections::HashMap<usize, Value>>,
    /// The id of a run its caller has recorded before it starts (the daemon
    /// records it accepted, answers `202 {run_id}`, then records it started):
    /// history then writes no row for its start. A new v7 UUID otherwise.
    pub run_id: Option<String>,
    /// A waiting webhook caller, answered by `webhook.respond`.
    pub responder: Option<crate::nodes::Responder>,
    /// The trigger node that started the run (a webhook's, a schedule's):
    /// the workflow's other trigger nodes without inputs are skipped, so a
    /// node fed by two triggers gets the one that fired. `None` (by hand,
    /// `fuse run`): every trigger node passes the run input on.
    pub entry: Option<String>,
    /// Nodes that do not run: each attempt takes its pin's next outcome
    /// (`fuse test`, `fuse run --pin`).
    pub pins: Arc<std::collections::HashMap<String, pin::Pin>>,
    /// The run's start time as its expressions see it (`run.started_at`);
    /// the clock's when `None`. A test fixes it for a deterministic run.
    pub started_at: Option<jiff::Timestamp>,
    /// Whether the record keeps every node's output (`fuse run --json`,
    /// `fuse test`, the API's synchronous runs). Without it the record lists
    /// only the nodes that did not succeed and those the run's result is made
    /// of (history has every node), and the run holds each output only while
    /// an edge or an expression still needs it, so a run's memory is bounded
    /// by the data in flight, not by its length.
    pub keep_outputs: bool,
}

impl RunRequest {
    pub fn new(input: Value, trigger_kind: &str) -> RunRequest {
        RunRequest {
            input,
            trigger_kind: trigger_kind.into(),
            parent_id: None,
            retry_of: None,
            depth: 0,
            cancel: CancellationToken::new(),
            reuse: Default::default(),
            reuse_items: Default::default(),
            run_id: None,
            responder: None,
            entry: None,
            pins: Default::default(),
            started_at: None,
            keep_outputs: true,
        }
    }
}

/// A workflow file that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read workflow {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid workflow: {error}", path.display())]
    Parse {
        path: std::path::PathBuf,
        error: ParseError,
    },
    #[error("{} has {} problem(s):\n{}", path.display(), problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: std::path::PathBuf,
        problems: Vec<Problem>,
    },
}

/// Workflow files larger than this are refused before parsing.
pub const MAX_WORKFLOW_BYTES: u64 = 64 * 1024 * 1024;

impl Engine {
    pub fn new(registry: Registry, observer: Arc<dyn Observer>, max_parallel: usize) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                registry: std::sync::RwLock::new(Arc::new(registry)),
                exprs: expr::Expressions::new(),
                observer,
                max_parallel: max_parallel.max(1),
                credentials: None,
            }),
        }
    }

    /// Lets runs use stored credentials (`credential` inputs, `creds.NAME.FIELD`).
    pub fn with_credentials(self, source: Arc<dyn CredentialSource>) -> Engine {
        let inner = &self.inner;
        Engine {
            inner: Arc::new(Inner {
                registry: std::sync::RwLock::new(self.registry()),
                exprs: expr::Expressions::new(),
                observer: inner.observer.clone(),
                max_parallel: inner.max_parallel,
                credentials: Some(source),
            }),
        }
    }

    /// The node types new plans resolve against.
    /// The expression engine runs render with.
    pub fn expressions(&self) -> &expr::Expressions {
        &self.inner.exprs
    }

    pub fn registry(&self) -> Arc<Registry> {
        match self.inner.registry.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the node types (hot reload). Runs already started keep the nodes
    /// their plan resolved; plans loaded from now on see the new ones.
    pub fn set_registry(&self, registry: Registry) {
        let registry = Arc::new(registry);
        match self.inner.registry.write() {
            Ok(mut r) => *r = registry,
            Err(poisoned) => *poisoned.into_inner() = registry,
        }
    }

    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.inner.observer
    }

    /// Reads, parses and validates a workflow file. A large one (see
    /// [`definition::STREAMED_FILE`]) is read as a stream and its text is not
    /// held: the plan's definition reads it back when needed.
    pub fn load(&self, path: &Path) -> Result<Plan, LoadError> {
        let read_error = |source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        };
        let (file, len) =
            crate::files::open_regular(path, MAX_WORKFLOW_BYTES).map_err(read_error)?;
        if len >= definition::STREAMED_FILE {
            let stored = |name: &str| self.credential_exists(name);
            return crate::workflow::validate::validate_file(
                file,
                MAX_WORKFLOW_BYTES,
                &self.registry(),
                &self.inner.exprs,
                Source {
                    path: Some(path),
                    credential_exists: Some(&stored),
                },
            )
            .map_err(|rejected| load_error(rejected, path.to_path_buf()));
        }
        let bytes = crate::files::read_opened(file, len, MAX_WORKFLOW_BYTES).map_err(read_error)?;
        let text = String::from_utf8(bytes).map_err(|e| LoadError::Parse {
            path: path.to_path_buf(),
            error: crate::workflow::model::ParseError::not_utf8(&e),
        })?;
        self.load_str(text, Some(path))
    }

    fn credential_exists(&self, name: &str) -> bool {
        self.inner
            .credentials
            .as_ref()
            .is_some_and(|c| c.exists(name))
    }

    /// Parses and validates workflow JSON. A `String` given moves into the
    /// plan (its definition); a `&str` is copied there.
    pub fn load_str<'t>(
        &self,
        text: impl Into<std::borrow::Cow<'t, str>>,
        path: Option<&Path>,
    ) -> Result<Plan, LoadError> {
        let text = text.into();
        let shown = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| "workflow".into());
        let stored = |name: &str| self.credential_exists(name);
        crate::workflow::validate(
            text,
            &self.registry(),
            &self.inner.exprs,
            Source {
                path,
                credential_exists: Some(&stored),
            },
        )
        .map_err(|rejected| load_error(rejected, shown))
    }

    /// Runs a plan to the end and returns its record.
    pub async fn run(&self, plan: Arc<Plan>, request: RunRequest) -> RunRecord {
        // The run gets its own task on the runtime's workers, beside the I/O tasks
        // its nodes wake, rather than being polled by whoever awaits it (often
        // `block_on` on the main thread): every wake-up would cross threads.
        let name = plan.name.clone();
        match tokio::spawn(executor::execute(self.clone(), plan, request)).await {
            Ok(record) => record,
            Err(e) => RunRecord::crashed(name, format!("the run task failed: {e}")),
        }
    }
}

/// Why a workflow was not planned, for the file (or text) at `path`.
fn load_error(
    rejected: crate::workflow::validate::Rejected,
    path: std::path::PathBuf,
) -> LoadError {
    match rejected {
        crate::workflow::validate::Rejected::Parse(error) => LoadError::Parse { path, error },
        crate::workflow::validate::Rejected::Invalid(problems) => {
            LoadError::Invalid { path, problems }
        }
    }
}
