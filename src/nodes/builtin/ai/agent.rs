//! `llm.agent`: a tool-calling loop. The model is asked; when it calls tools
//! (fuse node types or workflows the author listed), they run (in parallel
//! when several are asked for at once) and their results go back as
//! observations; until the model answers without calling a tool, or a limit
//! (`max_steps`, `token_budget`) is reached. Every model turn and tool call is
//! recorded as a step of the node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::memory::{Memory, MemorySpec};
use super::provider::{Endpoint, Msg, ToolCall, ToolDef, Turn, Usage, input, string_input};
use crate::config::LlmConfig;
use crate::engine::{Status, StepKind, duration};
use crate::nodes::builtin::http::Http;
use crate::nodes::{
    Handles, InputSpec, LogLevel, Node, NodeCtx, NodeError, NodeOutput, NodeSpec, Step, wrong_type,
};

/// Characters of a tool result sent back to the model; the rest is cut (and
/// the model told so).
const MAX_OBSERVATION: usize = 32 * 1024;

struct Agent {
    spec: NodeSpec,
    http: Arc<Http>,
    config: LlmConfig,
    memory: Memory,
    cache_dir: Option<PathBuf>,
}

pub(crate) fn node(
    http: Arc<Http>,
    config: LlmConfig,
    memory: Memory,
    cache_dir: Option<PathBuf>,
) -> Arc<dyn Node> {
    let spec = NodeSpec {
        type_name: "llm.agent".into(),
        description: "An agent: asks the model, runs the tools it calls (fuse node types and workflows), hands their results back, until it answers; outputs {text, steps, usage, model}.".into(),
        inputs: vec![
            InputSpec::optional("prompt", "string", "the task (default: the message that flows in)").with_aliases(&["user_message", "userMessage", "message"]),
            InputSpec::optional("system", "string", "system message").with_aliases(&["system_message", "systemMessage"]),
            InputSpec::optional("tools", "array", "what the model may call: a node type (\"http.request\"), {node, name?, description?, inputs?} with fixed inputs, or {workflow: FILE, name?, description?}"),
            InputSpec::optional("max_steps", "integer", "most model turns (default 10)"),
            InputSpec::optional("token_budget", "integer", "most tokens over all turns (default: no limit)"),
            InputSpec::optional("tool_timeout", "duration", "limit of one tool call (default 60s)"),
            InputSpec::optional("parallel_tools", "boolean", "run the tool calls of one turn at once (default true)"),
            InputSpec::optional("memory", "object", "{session, window?, window_tokens?}: keep the conversation per session in the fuse database"),
            InputSpec::optional("provider", "string", "openai (any OpenAI-compatible server, default) or anthropic"),
            InputSpec::optional("model", "string", "model name (default llm.model)"),
            InputSpec::optional("temperature", "number", "sampling temperature"),
            InputSpec::optional("max_tokens", "integer", "reply length limit per turn").with_aliases(&["maxTokens"]),
            InputSpec::optional("stream", "boolean", "stream each turn, logging its text as it arrives").with_aliases(&["enable_streaming"]),
            InputSpec::optional("base_url", "string", "API base (default llm.base_url; https://api.anthropic.com/v1 for anthropic)"),
            InputSpec::optional("api_key", "string", "API key (default: the credential, else OPENAI_API_KEY / ANTHROPIC_API_KEY)").with_aliases(&["apiKey"]),
            InputSpec::optional("credential", "string", "name of a stored openai, anthropic or bearer credential"),
            InputSpec::optional("timeout", "duration", "limit of one model request (default llm.timeout)"),
            InputSpec::optional("cache", "boolean", "reuse a stored reply for an identical turn (default llm.cache)"),
        ],
        output: super::super::object_schema(&[("text", "string"), ("steps", "array"), ("usage", "object"), ("model", "string"), ("turns", "integer"), ("tool_calls", "integer")]),
        handles: Handles::Default,
        trigger: false,
        free_inputs: false,
    };
    Arc::new(Agent {
        spec,
        http,
        config,
        memory,
        cache_dir,
    })
}

impl Node for Agent {
    fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    fn run<'a>(&'a self, ctx: NodeCtx) -> crate::nodes::NodeFuture<'a> {
        Box::pin(run(self, ctx))
    }
}

/// What runs when the model calls a tool.
enum Target {
    Node {
        node: Arc<dyn Node>,
        fixed: Map<String, Value>,
    },
    Workflow {
        path: PathBuf,
    },
}

struct Tool {
    def: ToolDef,
    target: Target,
    /// Argument names the tool takes (`None`: any object).
    known: Option<Vec<String>>,
    required: Vec<String>,
}

async fn run(agent: &Agent, ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let endpoint = Endpoint::resolve(&ctx, agent.http.clone(), &agent.config)?;
    let tools = tools(&ctx)?;
    let defs: Vec<ToolDef> = tools.iter().map(|t| t.def.clone()).collect();
    let max_steps = match input(&ctx, &["max_steps"]) {
        None => 10,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| wrong_type("max_steps", "a whole number from 1 to 1000", v))?,
    };
    let budget = match input(&ctx, &["token_budget"]) {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| wrong_type("token_budget", "a whole number above 0", v))?,
        ),
    };
    let tool_timeout = match string_input(&ctx, &["tool_timeout"])? {
        Some(t) => duration::parse(&t).map_err(NodeError::input)?,
        None => Duration::from_secs(60),
    };
    let parallel = ctx.bool_or("parallel_tools", true)?;
    let system = string_input(&ctx, &["system", "system_message", "systemMessage"])?;
    let prompt = match string_input(&ctx, &["prompt", "user_message", "userMessage", "message"])? {
        Some(p) => p,
        None => super::upstream_message(&ctx.input).ok_or_else(|| {
            NodeError::input(
                "no task: give `prompt`, or send a message from upstream \
                 (a string, or an object with `message`, `prompt`, `text` or `content`)",
            )
        })?,
    };
    let memory = MemorySpec::parse(&ctx)?;
    let mut system = system;
    let mut msgs: Vec<Msg> = match &memory {
        Some(spec) => {
            let past = agent.memory.load(spec).await?;
            if let Some(summary) = past.summary_text() {
                system = Some(match system {
                    Some(s) => format!("{s}\n\n{summary}"),
                    None => summary,
                });
            }
            past.messages
        }
        None => Vec::new(),
    };
    let remembered = msgs.len();
    msgs.push(Msg::User(prompt.clone()));

    let mut usage = Usage::default();
    let mut steps: Vec<Value> = Vec::new();
    let mut tool_calls = 0usize;
    let mut sent = 0usize;
    for turn_no in 1..=max_steps {
        let body = endpoint.body(system.as_deref(), &msgs, &defs);
        let started = Instant::now();
        // A step records what is new since the previous turn, not the whole
        // conversation again.
        let step_input = json!({"turn": turn_no, "messages": msgs.len(), "new": describe(&msgs[sent..]), "tools": defs.len()});
        sent = msgs.len();
        let url = endpoint.url()?;
        let cache_file = super::super::llm::cache_file(
            &ctx,
            agent.cache_dir.as_deref(),
            agent.config.cache,
            &url,
            &body,
        )?;
        let cached = match super::super::llm::cache_read(&ctx, cache_file.as_deref()).await {
            Some(v) => turn_of(&v),
            None => None,
        };
        let sent_turn = match cached {
            Some(turn) => Ok(turn),
            None => match endpoint.send(&ctx, &body).await {
                Ok(turn) => {
                    let mut stored = turn_json(&turn);
                    ctx.mask_value(&mut stored);
                    super::super::llm::cache_write(&ctx, cache_file.as_deref(), &stored).await;
                    Ok(turn)
                }
                Err(e) => Err(e),
            },
        };
        let turn = match sent_turn {
            Ok(turn) => turn,
            Err(e) => {
                ctx.step(Step {
                    kind: StepKind::Model,
                    name: endpoint.model.clone(),
                    input: step_input,
                    output: None,
                    error: Some(e.to_json()),
                    started,
                    tokens: None,
                });
                return Err(e);
            }
        };
        usage.add(turn.usage);
        ctx.step(Step {
            kind: StepKind::Model,
            name: turn.model.clone(),
            input: step_input,
            output: Some(turn_json(&turn)),
            error: None,
            started,
            tokens: Some(turn.usage.total()),
        });
        steps.push(
            json!({"kind": "model", "name": turn.model, "tokens": turn.usage.total(),
                          "duration_ms": started.elapsed().as_millis() as u64,
                          "tool_calls": turn.calls.iter().map(|c| &c.name).collect::<Vec<_>>()}),
        );
        if let Some(limit) = budget
            && usage.total() > limit
        {
            return Err(NodeError::other(format!(
                "the agent used {} tokens, over its token_budget of {limit}, after {turn_no} turn(s); \
                 raise token_budget or give it a smaller task",
                usage.total()
            ))
            .retryable(false)
            .with_details(json!({"usage": usage.to_json(), "steps": steps})));
        }
        if turn.calls.is_empty() {
            if let Some(spec) = &memory {
                agent.memory.save(spec, &prompt, &turn.text).await?;
                agent.memory.compact(spec, &ctx, &endpoint).await;
            }
            ctx.log(
                LogLevel::Info,
                format!(
                    "answered after {turn_no} turn(s) and {tool_calls} tool call(s); {} tokens",
                    usage.total()
                ),
            );
            return Ok(NodeOutput::new(json!({
                "text": turn.text,
                "steps": steps,
                "usage": usage.to_json(),
                "model": turn.model,
                "turns": turn_no,
                "tool_calls": tool_calls,
                "remembered": remembered,
            })));
        }
        tool_calls += turn.calls.len();
        let calls = turn.calls.clone();
        msgs.push(Msg::Assistant {
            text: turn.text.clone(),
            calls: turn.calls,
        });
        let results: Vec<(Result<Value, Value>, u64)> = if parallel && calls.len() > 1 {
            futures_util::future::join_all(
                calls
                    .iter()
                    .map(|call| call_tool(&ctx, &tools, call, tool_timeout)),
            )
            .await
        } else {
            let mut out = Vec::with_capacity(calls.len());
            for call in &calls {
                out.push(call_tool(&ctx, &tools, call, tool_timeout).await);
            }
            out
        };
        for (call, (result, ms)) in calls.iter().zip(results) {
            let ok = result.is_ok();
            steps.push(json!({"kind": "tool", "name": call.name, "duration_ms": ms,
                              "status": if ok { "succeeded" } else { "failed" }}));
            let (content, is_error) = match result {
                Ok(v) => (observation(&v), false),
                Err(e) => (observation(&e), true),
            };
            msgs.push(Msg::Tool {
                call_id: call.id.clone(),
                content,
                is_error,
            });
        }
    }
    Err(NodeError::other(format!(
        "the agent did not answer within max_steps ({max_steps} model turns; it made {tool_calls} tool call(s)); \
         raise max_steps or give it a smaller task"
    ))
    .retryable(false)
    .with_details(json!({"usage": usage.to_json(), "steps": steps})))
}

/// The tools listed in the `tools` input, with the JSON Schema of their arguments.
fn tools(ctx: &NodeCtx) -> Result<Vec<Tool>, NodeError> {
    let list = match input(ctx, &["tools"]) {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(wrong_type("tools", "an array of tools", other)),
    };
    let registry = ctx.engine().registry();
    let mut tools: Vec<Tool> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        let (spec_obj, kind) = match item {
            Value::String(s) => (json!({"node": s}), "node"),
            Value::Object(o) if o.contains_key("node") && o.contains_key("workflow") => {
                return Err(NodeError::input(format!(
                    "{at} names both a node and a workflow; give one"
                )));
            }
            Value::Object(o) if o.contains_key("node") => (item.clone(), "node"),
            Value::Object(o) if o.contains_key("workflow") => (item.clone(), "workflow"),
            other => {
                return Err(NodeError::input(format!(
                    "{at} must be a node type (\"http.request\"), {{\"node\": TYPE, …}} or {{\"workflow\": FILE, …}}; got {other}"
                )));
            }
        };
        if let Some(extra) = spec_obj.as_object().and_then(|o| {
            o.keys().find(|k| {
                !["node", "workflow", "name", "description", "inputs"].contains(&k.as_str())
            })
        }) {
            return Err(NodeError::input(format!(
                "{at} has an unknown key {extra:?}; a tool takes node or workflow, name, description and inputs"
            )));
        }
        let text = |k: &str| -> Result<Option<String>, NodeError> {
            match spec_obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(wrong_type(&format!("{at}.{k}"), "a string", other)),
            }
        };
        let tool = if kind == "node" {
            let type_name = text("node")?.unwrap_or_default();
            let node = registry.get(&type_name).ok_or_else(|| {
                let hint = registry
                    .suggest(&type_name)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_else(|| "; `fuse nodes list` shows the known types".into());
                NodeError::input(format!("{at}: unknown node type {type_name:?}{hint}"))
            })?;
            if node.spec().type_name == "llm.agent" {
                return Err(NodeError::input(format!(
                    "{at}: an agent cannot call llm.agent as a tool; put the inner agent in a workflow and list that"
                )));
            }
            let fixed = match spec_obj.get("inputs") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(other) => {
                    return Err(wrong_type(
                        &format!("{at}.inputs"),
                        "an object of fixed inputs",
                        other,
                    ));
                }
            };
            let spec = node.spec();
            let mut properties = Map::new();
            let mut required = Vec::new();
            for input in spec.inputs.iter().filter(|i| !fixed.contains_key(&i.name)) {
                properties.insert(
                    input.name.clone(),
                    json_schema_of(&input.kind, &input.description),
                );
                if input.required {
                    required.push(input.name.clone());
                }
            }
            let known = (!spec.free_inputs).then(|| properties.keys().cloned().collect());
            Tool {
                def: ToolDef {
                    name: tool_name(text("name")?.as_deref().unwrap_or(&spec.type_name)),
                    description: text("description")?.unwrap_or_else(|| spec.description.clone()),
                    parameters: json!({"type": "object", "properties": properties, "required": required,
                                       "additionalProperties": spec.free_inputs}),
                },
                target: Target::Node {
                    node: node.clone(),
                    fixed,
                },
                known,
                required,
            }
        } else {
            let file = text("workflow")?.unwrap_or_default();
            let path = {
                let p = PathBuf::from(&file);
                if p.is_absolute() {
                    p
                } else {
                    ctx.base_dir.join(p)
                }
            };
            let plan = ctx
                .engine()
                .load(&path)
                .map_err(|e| NodeError::input(format!("{at}: {e}")))?;
            let (parameters, known, required) = match &plan.params {
                Some(params) => {
                    let mut properties = Map::new();
                    let mut required = Vec::new();
                    for p in params {
                        properties.insert(
                            p.name.clone(),
                            json_schema_of(p.kind.as_str(), p.description.as_deref().unwrap_or("")),
                        );
                        if p.required {
                            required.push(p.name.clone());
                        }
                    }
                    let known = properties.keys().cloned().collect();
                    (
                        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false}),
                        Some(known),
                        required,
                    )
                }
                None => (json!({"type": "object"}), None, Vec::new()),
            };
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| plan.id.clone());
            Tool {
                def: ToolDef {
                    name: tool_name(text("name")?.as_deref().unwrap_or(&stem)),
                    description: text("description")?
                        .or_else(|| plan.description.clone())
                        .unwrap_or_else(|| format!("runs the workflow {}", plan.name)),
                    parameters,
                },
                target: Target::Workflow { path },
                known,
                required,
            }
        };
        if tools.iter().any(|t| t.def.name == tool.def.name) {
            return Err(NodeError::input(format!(
                "{at}: two tools are named {:?}; give one a `name`",
                tool.def.name
            )));
        }
        tools.push(tool);
    }
    Ok(tools)
}

/// A name every API accepts: letters, digits, `_` and `-`, at most 64.
pub fn tool_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() {
        out.push_str("tool");
    }
    out
}

/// The JSON Schema of an input or param type.
fn json_schema_of(kind: &str, description: &str) -> Value {
    let mut schema = match kind {
        "string" | "duration" | "path" => json!({"type": "string"}),
        "number" => json!({"type": "number"}),
        "integer" => json!({"type": "integer"}),
        "boolean" => json!({"type": "boolean"}),
        "object" => json!({"type": "object"}),
        "array" => json!({"type": "array"}),
        _ => json!({}),
    };
    if !description.is_empty() {
        schema["description"] = json!(description);
    }
    schema
}

/// Runs one tool call: the result, or an error observation; and its time.
async fn call_tool(
    ctx: &NodeCtx,
    tools: &[Tool],
    call: &ToolCall,
    limit: Duration,
) -> (Result<Value, Value>, u64) {
    let started = Instant::now();
    let result = match tools.iter().find(|t| t.def.name == call.name) {
        None => {
            let names: Vec<&str> = tools.iter().map(|t| t.def.name.as_str()).collect();
            Err(
                json!({"error": format!("there is no tool {:?}; the tools are: {}", call.name,
                                        if names.is_empty() { "(none)".to_string() } else { names.join(", ") })}),
            )
        }
        Some(tool) => match check_arguments(tool, &call.arguments) {
            Err(message) => Err(json!({"error": message})),
            Ok(args) => match tokio::time::timeout(limit, invoke(ctx, tool, args)).await {
                Ok(r) => r,
                Err(_) => Err(json!({"error": format!(
                    "the tool {} did not finish within {} (tool_timeout)",
                    call.name,
                    duration::human(limit)
                ), "kind": "timeout"})),
            },
        },
    };
    ctx.step(Step {
        kind: StepKind::Tool,
        name: call.name.clone(),
        input: call.arguments.clone(),
        output: result.as_ref().ok().cloned(),
        error: result.as_ref().err().cloned(),
        started,
        tokens: None,
    });
    (result, started.elapsed().as_millis() as u64)
}

/// The arguments as an object the tool takes, or what is wrong with them.
fn check_arguments(tool: &Tool, args: &Value) -> Result<Map<String, Value>, String> {
    let name = &tool.def.name;
    let map = match args {
        Value::Object(m) if m.contains_key("$unparsed") => {
            return Err(format!(
                "the arguments for {name} are not a JSON object: {}",
                super::provider::excerpt(&m["$unparsed"].to_string())
            ));
        }
        Value::Object(m) => m.clone(),
        other => {
            return Err(format!(
                "the arguments for {name} must be a JSON object, not {other}"
            ));
        }
    };
    if let Some(known) = &tool.known {
        let unknown: Vec<&String> = map.keys().filter(|k| !known.contains(k)).collect();
        if !unknown.is_empty() {
            return Err(format!(
                "{name} has no argument {}; it takes: {}",
                unknown
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                known.join(", ")
            ));
        }
    }
    let missing: Vec<&String> = tool
        .required
        .iter()
        .filter(|r| !map.contains_key(*r))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{name} needs the argument(s) {}",
            missing
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(props) = tool
        .def
        .parameters
        .get("properties")
        .and_then(Value::as_object)
    {
        for (key, value) in &map {
            let Some(want) = props
                .get(key)
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let fits = match want {
                "string" => value.is_string(),
                "number" => value.is_number(),
                "integer" => value.is_i64() || value.is_u64(),
                "boolean" => value.is_boolean(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                _ => true,
            };
            if !fits {
                return Err(format!(
                    "the argument {key:?} of {name} must be of type {want}, not {}",
                    crate::nodes::json_type(value)
                ));
            }
        }
    }
    Ok(map)
}

async fn invoke(ctx: &NodeCtx, tool: &Tool, args: Map<String, Value>) -> Result<Value, Value> {
    match &tool.target {
        Target::Node { node, fixed } => {
            let mut params = fixed.clone();
            params.extend(args.clone());
            let tool_ctx = NodeCtx {
                params,
                input: Arc::new(Value::Object(args)),
                ..ctx.clone()
            };
            match node.run(tool_ctx).await {
                Ok(out) => {
                    let mut v = out.value;
                    ctx.mask_value(&mut v);
                    Ok(v)
                }
                Err(e) => {
                    let mut v = json!({"error": e.message, "kind": e.kind.name()});
                    ctx.mask_value(&mut v);
                    Err(v)
                }
            }
        }
        Target::Workflow { path } => {
            if ctx.run.depth + 1 > crate::engine::MAX_DEPTH {
                return Err(json!({"error": format!(
                    "sub-workflows are nested more than {} deep; does the tool's workflow run this agent again?",
                    crate::engine::MAX_DEPTH
                )}));
            }
            let plan = match ctx.engine().load(path) {
                Ok(plan) => plan,
                Err(e) => return Err(json!({"error": e.to_string()})),
            };
            if let Some(params) = &plan.params {
                let problems = plan
                    .check_input(
                        Value::Object(args.clone()),
                        crate::workflow::params::Check::Strict,
                    )
                    .err();
                if let Some(problems) = problems {
                    let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
                    return Err(
                        json!({"error": format!("{}; it takes: {}", problems.join("; "), names.join(", "))}),
                    );
                }
            }
            let record = ctx.run_child(plan, Value::Object(args)).await;
            match record.status {
                Status::Succeeded => Ok(Arc::unwrap_or_clone(record.output)),
                status => Err(json!({"error": format!("the workflow {} {} (run {}): {}",
                    path.display(), status.as_str(), record.run_id, record.error.unwrap_or_default()),
                    "run_id": record.run_id})),
            }
        }
    }
}

/// A tool result as the text the model reads, cut when very long.
fn observation(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.len() <= MAX_OBSERVATION {
        return text;
    }
    let mut end = MAX_OBSERVATION;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [cut: the result has {} bytes; only the first {end} are shown]",
        &text[..end],
        text.len()
    )
}

/// Messages as a step records them.
fn describe(msgs: &[Msg]) -> Value {
    msgs.iter()
        .map(|m| match m {
            Msg::User(text) => json!({"role": "user", "content": text}),
            Msg::Assistant { text, calls } => json!({"role": "assistant", "content": text,
                "tool_calls": calls.iter().map(|c| json!({"id": c.id, "name": c.name})).collect::<Vec<_>>()}),
            Msg::Tool {
                call_id,
                content,
                is_error,
            } => json!({"role": "tool", "call_id": call_id, "content": super::provider::excerpt(content), "is_error": is_error}),
        })
        .collect()
}

fn turn_json(turn: &Turn) -> Value {
    json!({"text": turn.text, "stop": turn.stop, "usage": turn.usage.to_json(), "model": turn.model,
           "tool_calls": turn.calls.iter().map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments})).collect::<Vec<_>>()})
}

/// A turn back from its cached JSON (`None` when the entry is not one).
fn turn_of(v: &Value) -> Option<Turn> {
    let count = |k: &str| {
        v.pointer(&format!("/usage/{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let calls = v
        .get("tool_calls")?
        .as_array()?
        .iter()
        .map(|c| {
            Some(ToolCall {
                id: c.get("id")?.as_str()?.to_string(),
                name: c.get("name")?.as_str()?.to_string(),
                arguments: c.get("arguments").cloned().unwrap_or_else(|| json!({})),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Turn {
        text: v.get("text")?.as_str()?.to_string(),
        calls,
        usage: Usage {
            prompt: count("prompt_tokens"),
            completion: count("completion_tokens"),
        },
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        stop: v.get("stop").and_then(Value::as_str).map(str::to_string),
    })
}
