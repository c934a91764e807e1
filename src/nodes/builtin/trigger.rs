//! Trigger nodes start runs. Under `fuse run` (and for a manual run) they emit
//! the run input; the daemon fires them from schedules, webhooks and files.

use std::sync::Arc;

use super::{InputSpec, Node, NodeCtx, NodeFuture, NodeOutput, NodeSpec, any_output, boxed};
use crate::nodes::Handles;

struct Trigger {
    spec: NodeSpec,
}

impl Node for Trigger {
    fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    fn run<'a>(&'a self, ctx: NodeCtx) -> NodeFuture<'a> {
        boxed(async move { Ok(NodeOutput::new((*ctx.input).clone())) })
    }
}

fn trigger(type_name: &str, description: &str, inputs: Vec<InputSpec>) -> Arc<dyn Node> {
    Arc::new(Trigger {
        spec: NodeSpec {
            type_name: type_name.into(),
            description: description.into(),
            inputs,
            output: any_output(),
            handles: Handles::Default,
            trigger: true,
            free_inputs: false,
        },
    })
}

/// `inputs` and the schedule triggers' `missed` and `overlap` policies.
fn with_policies(mut inputs: Vec<InputSpec>) -> Vec<InputSpec> {
    inputs.extend([
        InputSpec::optional(
            "missed",
            "string",
            "fires missed while the daemon was down: skip (default) or run_once",
        ),
        InputSpec::optional(
            "overlap",
            "string",
            "when the previous run is still going: allow (default), skip or queue",
        ),
    ]);
    inputs
}

pub(super) fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        trigger(
            "trigger.manual",
            "Starts a run by hand (fuse run, the API); outputs the run input.",
            vec![],
        ),
        trigger(
            "trigger.cron",
            "Starts a run on a cron schedule (daemon); outputs the run input.",
            with_policies(vec![
                InputSpec::required("cron", "string", "5- or 6-field cron expression"),
                InputSpec::optional(
                    "timezone",
                    "string",
                    "IANA time zone, e.g. Europe/Paris (default UTC)",
                ),
            ]),
        ),
        trigger(
            "trigger.interval",
            "Starts a run every interval (daemon); outputs the run input.",
            vec![
                InputSpec::required("every", "duration", "interval, e.g. \"5m\""),
                InputSpec::optional("missed", "string", "skip (default) or run_once"),
                InputSpec::optional("overlap", "string", "allow (default), skip or queue"),
            ],
        ),
        trigger(
            "trigger.timer",
            "Starts runs on a schedule of the seed format's TimerStartNode (daemon): interval, cron, once or manual; outputs the run input.",
            with_policies(vec![
                InputSpec::optional(
                    "schedule_type",
                    "string",
                    "interval (default), cron, once or manual (never by itself)",
                ),
                InputSpec::optional(
                    "interval_seconds",
                    "number",
                    "seconds between fires with interval (default 3600, at least 1)",
                ),
                InputSpec::optional(
                    "cron_expression",
                    "string",
                    "5- or 6-field cron expression, with cron",
                ),
                InputSpec::optional(
                    "scheduled_time",
                    "string",
                    "when to fire with once: RFC 3339, or a local date and time in timezone",
                ),
                InputSpec::optional(
                    "timezone",
                    "string",
                    "IANA time zone of cron and once, e.g. America/New_York (default UTC)",
                ),
                InputSpec::optional(
                    "auto_trigger_workflow",
                    "boolean",
                    "false: the schedule does not start runs (default true)",
                ),
                InputSpec::optional(
                    "max_executions",
                    "integer",
                    "fire at most this many times (0, the default: no limit)",
                ),
                InputSpec::optional(
                    "retry_on_failure",
                    "boolean",
                    "run a failed scheduled run again (as a retry of it)",
                ),
                InputSpec::optional(
                    "retry_count",
                    "integer",
                    "how many times, with retry_on_failure (default 3)",
                ),
            ]),
        ),
        trigger(
            "trigger.webhook",
            "Starts a run from an HTTP request to /webhook/<path> (daemon); outputs the request.",
            vec![
                InputSpec::optional("path", "string", "URL path under /webhook/"),
                InputSpec::optional("method", "string", "HTTP method (default POST)"),
                InputSpec::optional(
                    "secret",
                    "string",
                    "HMAC-SHA256 secret: requests must carry a matching signature",
                ),
                InputSpec::optional(
                    "credential",
                    "string",
                    "a stored credential whose value/token/key is the HMAC secret",
                ),
                InputSpec::optional(
                    "signature_header",
                    "string",
                    "header with `sha256=<hex>` (default X-Fuse-Signature)",
                ),
                InputSpec::optional(
                    "rate_limit",
                    "number",
                    "requests per second this path accepts (429 beyond)",
                ),
                InputSpec::optional(
                    "rate_limit_per_minute",
                    "number",
                    "requests per minute this path accepts, in bursts of as many (429 beyond)",
                ),
                InputSpec::optional(
                    "authentication_required",
                    "boolean",
                    "callers must send Authorization: Bearer with an API token of the daemon (run scope) or this webhook's token (401 otherwise)",
                ),
                InputSpec::optional(
                    "token",
                    "string",
                    "a bearer token for this webhook alone (with authentication_required)",
                ),
                InputSpec::optional(
                    "max_payload_size",
                    "number",
                    "largest request body in KB (413 beyond)",
                ),
                InputSpec::optional(
                    "allowed_event_types",
                    "any",
                    "event types accepted (\"a,b\" or [\"a\", \"b\"]), read from the X-Event-Type header, else the body's event_type (422 otherwise)",
                ),
            ],
        ),
        trigger(
            "trigger.event",
            "Starts a run for each event a plugin's event trigger emits (daemon); outputs the event.",
            vec![
                InputSpec::required("plugin", "string", "the plugin's name"),
                InputSpec::required(
                    "trigger",
                    "string",
                    "the trigger's name in the plugin manifest",
                ),
            ],
        ),
        trigger(
            "trigger.file",
            "Starts a run when files change under a folder (daemon); outputs the event.",
            vec![
                InputSpec::required("path", "string", "folder to watch"),
                InputSpec::optional("events", "array", "create, modify, remove (default all)"),
                InputSpec::optional(
                    "glob",
                    "string",
                    "only files whose name matches, e.g. *.csv",
                ),
                InputSpec::optional(
                    "debounce",
                    "duration",
                    "wait until a file is quiet this long (default 500ms)",
                ),
            ],
        ),
    ]
}
