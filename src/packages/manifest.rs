//! `manifest.json` of node and plugin packages: the model, its checks, and the
//! published JSON Schema (`fuse schema manifest`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A package manifest.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Package name: the folder name; letters, digits, `-` and `_`.
    pub name: String,
    #[serde(default = "default_version")]
    pub version: String,
    pub kind: Kind,
    #[serde(default)]
    pub description: String,
    /// The node type this package provides (default: the package name).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    /// Allows `type` to replace a built-in node type.
    #[serde(default)]
    pub overrides: bool,
    #[serde(default)]
    pub inputs: Vec<InputDecl>,
    /// Accept inputs beyond `inputs` (a node whose inputs are free-form);
    /// without it an undeclared input is a validation error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free_inputs: bool,
    #[serde(default)]
    pub outputs: Vec<OutputDecl>,
    /// How the node runs: a command (`oneshot` or `persistent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// A composite node: this workflow file (relative to the package) is its body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// A declarative HTTP node: the request, with `{{ params.X }}` expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Value>,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub requires: Requires,
    /// Credential types the node accepts (through its `credential` input); a
    /// package receives no other credential.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// A call `fuse nodes doctor` makes to check the package works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selftest: Option<SelfTest>,
    /// Plugins: the node packages they bundle (folders inside the plugin).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Plugins: credential types they add.
    #[serde(default)]
    pub credential_types: Vec<CredentialTypeDecl>,
    /// Plugins: HTTP routes served by the plugin's process (its `runtime`, in
    /// `persistent` mode) under `/plugins/<name>/`.
    #[serde(default)]
    pub routes: Vec<RouteDecl>,
    /// Plugins: long-running processes whose JSON-line events start workflows.
    #[serde(default)]
    pub triggers: Vec<TriggerDecl>,
}

/// A daemon route a plugin serves: `/plugins/<plugin>/<path>`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteDecl {
    /// Path below `/plugins/<plugin>`, starting with `/`.
    pub path: String,
    #[serde(default = "get_only")]
    pub methods: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Served without the API token (e.g. an OAuth2 callback).
    #[serde(default)]
    pub public: bool,
}

fn get_only() -> Vec<String> {
    vec!["GET".into()]
}

/// An event trigger: a long-running command that prints one JSON event per
/// line; each event starts the workflows that listen to `name`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDecl {
    pub name: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub description: String,
}

fn default_version() -> String {
    "0.0.0".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Node,
    Plugin,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputDecl {
    pub name: String,
    #[serde(rename = "type", default = "any")]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputDecl {
    pub name: String,
    #[serde(rename = "type", default = "any")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
}

fn any() -> String {
    "any".into()
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Oneshot,
    Persistent,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Program and arguments, run in the package folder.
    pub command: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Per-call limit (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `persistent`: stop the process after this long without calls (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Replies larger than this are refused (default 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reply_bytes: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Environment variables passed through from fuse's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Paths the package may read (besides its own folder and system files).
    #[serde(default)]
    pub read: Vec<String>,
    /// Paths the package may write.
    #[serde(default)]
    pub write: Vec<String>,
    /// Whether the package needs the network.
    #[serde(default)]
    pub network: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// Commands that must be on PATH.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Minimum fuse version, e.g. "0.1.0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuse: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfTest {
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    #[serde(default)]
    pub input: Value,
    /// The output must contain these fields with these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialTypeDecl {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub fields: Vec<CredentialFieldDecl>,
    /// OAuth2 settings: authorize_url, token_url, scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialFieldDecl {
    pub name: String,
    #[serde(default)]
    pub secret: bool,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub description: String,
}

fn yes() -> bool {
    true
}

/// A problem with a manifest: the field it is about and why.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestError {
    pub field: String,
    pub reason: String,
}

/// Whether a package name is safe to use as a folder name and a node type.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether a node type name is acceptable (`csv-parse`, `acme.lookup`).
pub fn valid_type(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.split('.').all(valid_name)
}

impl Manifest {
    /// Parses manifest JSON; the error names the field.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            ManifestError {
                field: if field == "." { String::new() } else { field },
                reason: inner.to_string(),
            }
        })
    }

    /// The node type name the package provides.
    pub fn node_type(&self) -> &str {
        self.type_name.as_deref().unwrap_or(&self.name)
    }

    /// Checks beyond the JSON shape. `folder` is the package's folder name.
    pub fn check(&self, folder: &str) -> Vec<ManifestError> {
        let mut problems = Vec::new();
        let mut p = |field: &str, reason: String| {
            problems.push(ManifestError {
                field: field.into(),
                reason,
            })
        };
        if !valid_name(&self.name) {
            p(
                "name",
                format!(
                    "{:?} is not a valid package name: letters, digits, `-` and `_` only (no `..`, no `/`)",
                    self.name
                ),
            );
        } else if self.name != folder {
            p(
                "name",
                format!("{:?} must match the folder name {folder:?}", self.name),
            );
        }
        if let Some(t) = &self.type_name
            && !valid_type(t)
        {
            p(
                "type",
                format!(
                    "{t:?} is not a valid node type name (parts of letters, digits, `-`, `_`, joined by `.`)"
                ),
            );
        }
        if self.kind == Kind::Node {
            let bodies = [
                self.runtime.is_some(),
                self.workflow.is_some(),
                self.http.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if bodies != 1 {
                p(
                    "runtime",
                    "a node package needs exactly one of `runtime` (a command), `workflow` (a composite node) or `http` (a declarative request)".into(),
                );
            }
        }
        if let Some(rt) = &self.runtime {
            if rt.command.is_empty() || rt.command[0].trim().is_empty() {
                p(
                    "runtime.command",
                    "give the program and its arguments, e.g. [\"python3\", \"main.py\"]".into(),
                );
            }
            for (field, value) in [
                ("runtime.timeout", &rt.timeout),
                ("runtime.idle_timeout", &rt.idle_timeout),
            ] {
                if let Some(v) = value
                    && let Err(e) = crate::engine::duration::parse(v)
                {
                    p(field, e);
                }
            }
        }
        if let Some(wf) = &self.workflow
            && !safe_relative(wf)
        {
            p(
                "workflow",
                format!("{wf:?} must be a path inside the package (no `..`, not absolute)"),
            );
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if input.name.is_empty() {
                p(&format!("inputs[{i}].name"), "an input needs a name".into());
            }
            if self.inputs[..i].iter().any(|o| o.name == input.name) {
                p(
                    &format!("inputs[{i}].name"),
                    format!("input {:?} is declared twice", input.name),
                );
            }
        }
        for (i, kind) in self.credentials.iter().enumerate() {
            if kind.is_empty() {
                p(
                    &format!("credentials[{i}]"),
                    "a credential type name is empty".into(),
                );
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if !valid_name(node) {
                p(
                    &format!("nodes[{i}]"),
                    format!("{node:?} must be a folder name inside the plugin"),
                );
            }
        }
        if self.kind == Kind::Plugin && !self.routes.is_empty() && self.runtime.is_none() {
            p(
                "routes",
                "a plugin with routes needs a `runtime` (the process that serves them)".into(),
            );
        }
        for (i, route) in self.routes.iter().enumerate() {
            if !route.path.starts_with('/')
                || route.path.contains("..")
                || route.path.contains("//")
            {
                p(
                    &format!("routes[{i}].path"),
                    format!(
                        "{:?} must start with `/` and not contain `..` or `//`",
                        route.path
                    ),
                );
            }
            for m in &route.methods {
                if !matches!(
                    m.as_str(),
                    "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
                ) {
                    p(
                        &format!("routes[{i}].methods"),
                        format!("{m:?} is not an HTTP method (upper case)"),
                    );
                }
            }
        }
        for (i, trigger) in self.triggers.iter().enumerate() {
            if !valid_name(&trigger.name) {
                p(
                    &format!("triggers[{i}].name"),
                    format!("{:?} is not a valid trigger name", trigger.name),
                );
            }
            if trigger.command.is_empty() {
                p(
                    &format!("triggers[{i}].command"),
                    "give the program and its arguments".into(),
                );
            }
        }
        if let Some(min) = &self.requires.fuse
            && parse_version(min).is_none()
        {
            p(
                "requires.fuse",
                format!("{min:?} is not a version like \"0.1.0\""),
            );
        }
        problems
    }
}

/// A relative path that stays inside its base folder.
pub fn safe_relative(path: &str) -> bool {
    let p = std::path::Path::new(path);
    !p.is_absolute()
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

/// `major.minor.patch` (a leading `>=` is accepted).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let v = v
        .trim()
        .trim_start_matches(">=")
        .trim()
        .trim_start_matches('v');
    let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

/// The JSON Schema of `manifest.json`, generated from [`Manifest`] (unknown
/// fields are refused, as the parser refuses them).
pub fn schema() -> Value {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Manifest>()
        .to_value();
    schema["$id"] = json!("https://fuse.dev/schema/manifest.json");
    schema["title"] = json!("fuse package manifest");
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_fields_are_named() {
        let e = Manifest::parse(
            r#"{"name": "x", "kind": "node", "inputs": [{"name": "a", "requird": true}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "inputs[0].requird");
        assert!(e.reason.contains("requird"), "{}", e.reason);
        let e = Manifest::parse(r#"{"name": "x", "kind": "widget"}"#).unwrap_err();
        assert_eq!(e.field, "kind");
    }

    #[test]
    fn plugin_routes_and_triggers_are_modelled_and_checked() {
        let m = Manifest::parse(
            r#"{"name": "p", "kind": "plugin",
                "runtime": {"command": ["python3", "serve.py"], "mode": "persistent"},
                "routes": [{"path": "/hook", "methods": ["POST"]}, {"path": "../x"}],
                "triggers": [{"name": "new-mail", "command": ["python3", "watch.py"]}, {"name": "a/b", "command": []}]}"#,
        )
        .unwrap();
        assert_eq!(m.routes[0].methods, vec!["POST"]);
        assert_eq!(m.routes[1].methods, vec!["GET"], "GET by default");
        let fields: Vec<String> = m.check("p").into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            vec!["routes[1].path", "triggers[1].name", "triggers[1].command"]
        );
        let no_runtime =
            Manifest::parse(r#"{"name": "p", "kind": "plugin", "routes": [{"path": "/a"}]}"#)
                .unwrap();
        assert_eq!(no_runtime.check("p")[0].field, "routes");
    }

    #[test]
    fn names_and_paths_are_checked() {
        let m = Manifest::parse(
            r#"{"name": "../evil", "kind": "node", "workflow": "../../etc/x.json"}"#,
        )
        .unwrap();
        let problems = m.check("evil");
        assert!(problems.iter().any(|p| p.field == "name"), "{problems:?}");
        assert!(
            problems.iter().any(|p| p.field == "workflow"),
            "{problems:?}"
        );
        assert!(valid_name("csv-parse") && !valid_name("a/b") && !valid_name(".."));
        assert!(valid_type("acme.lookup") && !valid_type("acme..x"));
        assert_eq!(parse_version(">=0.2"), Some((0, 2, 0)));
    }
}
