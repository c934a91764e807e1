//! The bodies the API takes and answers, shared by the daemon (which
//! serializes them), the CLI's client (which reads them) and the OpenAPI
//! document (whose schemas are derived from them).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::nodes::NodeSpec;
pub use crate::packages::Problem as PackageProblem;
pub use crate::secrets::CredentialInfo;
pub use crate::store::history::{LogRow, NodeRunRow, RunDetail, RunSummary, StepRow};
pub use crate::store::memory::{MemoryMessage, MemorySession};
pub use crate::store::workflows::VersionRow;

/// Every error answer: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`not_found`, `invalid_workflow`, …).
    pub code: String,
    /// What went wrong and how to fix it.
    pub message: String,
    /// Structured details (validation problems, the params a workflow takes).
    #[serde(default)]
    pub details: Value,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub uptime_s: u64,
    /// Runs accepted and not finished (running + queued).
    pub active_runs: usize,
    pub running: usize,
    pub queued: usize,
    /// RFC 3339.
    pub started_at: String,
}

/// `GET /version`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VersionInfo {
    pub version: String,
    pub commit: Option<String>,
    pub schema_version: i64,
}

/// `POST /dashboard/login-links`: open `url` in a browser to sign in to the
/// dashboard (once, within `expires_in_s`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoginLink {
    pub url: String,
    pub expires_in_s: u64,
}

/// An empty JSON object (a request that takes no fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `GET /workflows`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowSummary>,
}

/// A deployed workflow, what starts it and how many of its runs are active.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowSummary {
    pub name: String,
    pub enabled: bool,
    pub version: Option<i64>,
    /// Unix milliseconds.
    pub updated_at: i64,
    pub triggers: Vec<Trigger>,
    pub active_runs: usize,
    /// Its newest recorded run.
    #[serde(default)]
    pub last_run: Option<crate::store::history::RunSummary>,
}

/// What starts a deployed workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    Webhook {
        method: String,
        path: String,
        url: String,
    },
    Cron(ScheduleTrigger),
    Interval(ScheduleTrigger),
    File {
        path: String,
        glob: Option<String>,
    },
    Event {
        plugin: String,
        trigger: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleTrigger {
    pub spec: String,
    pub timezone: Option<String>,
    /// RFC 3339; none when the schedule will not fire again.
    pub next_fire_at: Option<String>,
}

/// `POST /workflows`, `PUT /workflows/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Deployed {
    /// The id in URLs.
    pub name: String,
    /// The `name` the workflow gave itself.
    pub display_name: String,
    pub version: i64,
    /// The content was the current version already: no new version was made.
    pub unchanged: bool,
    pub url: String,
}

/// `GET /workflows/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowDetail {
    pub name: String,
    pub version: i64,
    pub enabled: bool,
    /// The file it was deployed from.
    pub source: Option<String>,
    pub definition: Value,
}

/// `GET /workflows/{name}/versions`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Versions {
    pub name: String,
    pub versions: Vec<VersionRow>,
}

/// `GET /workflows/{name}/versions/{version}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VersionDetail {
    pub name: String,
    pub version: i64,
    pub hash: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub current: bool,
    pub definition: Value,
}

/// `POST /workflows/{name}/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to make current again.
    pub version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RolledBack {
    pub name: String,
    pub version: i64,
}

/// `POST /workflows/{name}/enable|disable`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Enabled {
    pub name: String,
    pub enabled: bool,
}

/// A deleted workflow or credential.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    pub deleted: String,
}

/// A run that was accepted (committed to the database) and will start.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunStarted {
    pub run_id: String,
    /// The run this one retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
}

/// `POST /executions/{id}/retry` (the body may be left out: a whole retry).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Reuse the outputs of the nodes that succeeded and run again from the
    /// failed node (the same definition and input).
    #[serde(default)]
    pub from_failed: bool,
}

/// `POST /executions/{id}/cancel`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Cancelling {
    pub run_id: String,
    pub cancelling: bool,
}

/// `GET /executions`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Executions {
    pub executions: Vec<RunSummary>,
}

/// `GET /executions/{id}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Logs {
    pub logs: Vec<LogRow>,
}

/// `GET /nodes`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NodeTypes {
    pub nodes: Vec<NodeSpec>,
}

/// `POST /nodes`: a new node package, as `fuse nodes new` makes it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    /// The package's name and node type: letters, digits, `-`, `_`.
    pub name: String,
    /// python (default), sh or rust.
    #[serde(default = "default_lang")]
    pub lang: String,
    /// What the node does (one line).
    #[serde(default)]
    pub description: Option<String>,
}

fn default_lang() -> String {
    "python".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeCreated {
    pub name: String,
    pub lang: String,
    /// The package's folder.
    pub dir: String,
    /// Its files, relative to `dir`.
    pub files: Vec<String>,
}

/// `GET /plugins`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Plugins {
    pub plugins: Vec<crate::packages::PluginReport>,
    /// Packages that could not be loaded, and why.
    pub problems: Vec<PackageProblem>,
}

/// `GET /credentials`: names, types and field names, never values.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Credentials {
    pub credentials: Vec<CredentialInfo>,
    /// Where the master key lives (`keyring`, `env`, `file`).
    pub key_store: String,
}

/// `POST /credentials`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Field values (encrypted at rest, never answered back).
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CredentialCreated {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `POST /credentials/{name}/check`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CredentialCheck {
    pub name: String,
    /// Whether it decrypts with the master key.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Schedules {
    pub schedules: Vec<ScheduleRow>,
}

/// A schedule trigger of an enabled workflow.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScheduleRow {
    pub workflow: String,
    pub node: String,
    /// `cron`, `interval` or `once`.
    pub kind: String,
    pub spec: String,
    pub timezone: Option<String>,
    /// RFC 3339.
    pub next_fire_at: Option<String>,
    pub last_fired_at: Option<String>,
    pub missed: String,
    pub overlap: String,
}

/// The input of a run: a JSON object whose keys are the workflow's params
/// (an empty body is `{}`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct RunInput(pub serde_json::Map<String, Value>);

/// The OpenAPI document itself.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Document(pub serde_json::Map<String, Value>);

/// A workflow definition (its schema is the workflow format's, with the node
/// types the daemon knows).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowBody(pub Value);

impl JsonSchema for WorkflowBody {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Workflow".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Replaced by the full workflow schema when the document is built.
        schemars::json_schema!({"type": "object"})
    }
}

/// `POST /api/workflows/` (the seed format's REST shape).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedWorkflowCreate {
    /// A display name (spaces allowed); the id is made from it.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The workflow: `{nodes, edges}` in the React-Flow shape.
    pub flow_data: Value,
    /// fuse has no users: only `false` can be honoured.
    #[serde(default)]
    pub is_public: Option<bool>,
}

/// `PUT /api/workflows/{id}`: what to change (the rest stays).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedWorkflowUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub flow_data: Option<Value>,
    #[serde(default)]
    pub is_public: Option<bool>,
}

/// A workflow as the seed format's API answers it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SeedWorkflow {
    /// The id in URLs (fuse's id, made from the name).
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub flow_data: Value,
    pub is_public: bool,
    pub version: i64,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /api/workflows/{id}/execute`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedExecute {
    /// The run input (the workflow's params, or anything for `trigger`).
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
}

/// A run as the seed format's API answers it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SeedExecution {
    pub id: String,
    pub execution_id: String,
    pub workflow_id: String,
    /// pending, running, completed, failed or cancelled.
    pub status: String,
    pub inputs: Value,
    #[serde(default)]
    pub outputs: Option<Value>,
    #[serde(default)]
    pub error_message: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default)]
    pub completed_at: Option<String>,
}

/// `DELETE /api/workflows/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SeedDeleted {
    pub message: String,
    pub id: String,
}

/// Conversation memory sessions of llm.chat and llm.agent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MemorySessions {
    pub sessions: Vec<MemorySession>,
}

/// One memory session's messages, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MemoryTranscript {
    pub session: String,
    /// What the turns older than the window said (`memory.summarize`).
    pub summary: Option<String>,
    pub messages: Vec<MemoryMessage>,
}

/// A forgotten memory session.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MemoryCleared {
    pub session: String,
    /// Messages removed.
    pub removed: usize,
}
