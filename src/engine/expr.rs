//! `{{ … }}` expressions (minijinja). A string that is exactly one expression
//! keeps the JSON type of its value; any other string with `{{` is rendered as
//! text. Undefined names are errors (strict mode), and a fuel limit stops
//! expressions that loop.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use minijinja::value::{Enumerator, Object, Serde, Value as Mj};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// Instructions one rendering may execute before it is stopped.
const FUEL: u64 = 2_000_000;

/// Names an expression may start from.
pub const CONTEXT_NAMES: &[&str] = &[
    "trigger", "input", "nodes", "vars", "env", "creds", "run", "item", "index",
];

/// A failed expression.
#[derive(Debug, Clone)]
pub struct ExprError {
    pub expression: String,
    pub message: String,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expression {:?}: {}", self.expression, self.message)
    }
}

/// The expression engine (one per engine; cheap to share).
pub struct Expressions {
    env: Environment<'static>,
}

impl Default for Expressions {
    fn default() -> Self {
        Self::new()
    }
}

impl Expressions {
    pub fn new() -> Expressions {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(64);
        env.add_filter("fromjson", |s: String| -> Result<Mj, minijinja::Error> {
            let v: Value = serde_json::from_str(&s).map_err(|e| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("fromjson: {e}"),
                )
            })?;
            Ok(Mj::from(Serde(&v)))
        });
        Expressions { env }
    }

    /// Renders every string inside `value` (objects and arrays recursively).
    pub fn render(&self, value: &Value, scope: &Mj) -> Result<Value, ExprError> {
        match value {
            Value::String(s) => self.render_str(s, scope),
            Value::Array(items) => items
                .iter()
                .map(|v| self.render(v, scope))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (k, v) in map {
                    out.insert(k.clone(), self.render(v, scope)?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    /// Renders one string.
    pub fn render_str(&self, text: &str, scope: &Mj) -> Result<Value, ExprError> {
        let err = |e: minijinja::Error| ExprError {
            expression: text.to_string(),
            message: describe(&e),
        };
        if let Some(expr) = single_expression(text) {
            if let Some(value) = lookup_path(expr, scope) {
                return to_json(&value).map_err(|message| ExprError {
                    expression: text.to_string(),
                    message,
                });
            }
            let compiled = self.env.compile_expression(expr).map_err(err)?;
            let value = compiled.eval(scope.clone()).map_err(err)?;
            return to_json(&value).map_err(|message| ExprError {
                expression: text.to_string(),
                message,
            });
        }
        if !has_template(text) {
            return Ok(Value::String(text.to_string()));
        }
        self.env
            .render_str(text, scope.clone())
            .map(Value::String)
            .map_err(err)
    }

    /// Parses a string without running it; returns the context paths it reads
    /// (such as `nodes.fetch.output.body`).
    pub fn check(&self, text: &str) -> Result<Vec<String>, ExprError> {
        let err = |e: minijinja::Error| ExprError {
            expression: text.to_string(),
            message: describe(&e),
        };
        let source = match single_expression(text) {
            Some(expr) => format!("{{{{ {expr} }}}}"),
            None if has_template(text) => text.to_string(),
            None => return Ok(Vec::new()),
        };
        let template = self.env.template_from_str(&source).map_err(err)?;
        let globals: Vec<&str> = self.env.globals().map(|(name, _)| name).collect();
        let mut names: Vec<String> = template
            .undeclared_variables(true)
            .into_iter()
            .filter(|n| !globals.contains(&n.split('.').next().unwrap_or_default()))
            .collect();
        names.sort();
        // `nodes["my-node"]` is a subscript, which minijinja does not list as a path.
        for quote in ['"', '\''] {
            let needle = format!("nodes[{quote}");
            let mut rest = source.as_str();
            while let Some(i) = rest.find(&needle) {
                rest = &rest[i + needle.len()..];
                if let Some(end) = rest.find(quote) {
                    names.push(format!("nodes.{}", &rest[..end]));
                }
            }
        }
        Ok(names)
    }
}

/// True when a string contains template syntax.
pub fn has_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// The value of a plain dotted path such as `item` or `nodes.fetch.output.body`
/// without compiling it: the common case, and a hot one inside `foreach`.
/// `None` for anything else, and for a path that does not resolve, so the
/// compiled expression reports the error in its own words.
fn lookup_path(expr: &str, scope: &Mj) -> Option<Mj> {
    let is_ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut value = scope.clone();
    for segment in expr.split('.') {
        if !is_ident(segment) || value.is_undefined() || value.is_none() {
            return None;
        }
        value = value.get_attr(segment).ok()?;
    }
    (!value.is_undefined()).then_some(value)
}

/// The inner expression when `text` is exactly one `{{ … }}`.
pub fn single_expression(text: &str) -> Option<&str> {
    let t = text.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

fn describe(e: &minijinja::Error) -> String {
    let mut message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        message.push_str(
            " (a name or field that does not exist; check spelling and that the node is upstream)",
        );
    }
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        message.push_str(" (the expression did too much work; simplify it or use transform.jq)");
    }
    message
}

/// minijinja value → JSON.
pub fn to_json(v: &Mj) -> Result<Value, String> {
    if v.is_undefined() {
        return Err(
            "the expression has no value (a name or field that does not exist; check spelling and that the node is upstream)"
                .into(),
        );
    }
    serde_json::to_value(v).map_err(|e| format!("value cannot be converted to JSON: {e}"))
}

/// Outputs of the nodes of a run, looked up lazily by expressions as
/// `nodes.<id>.output`.
#[derive(Debug, Default)]
pub struct NodesView {
    outputs: RwLock<HashMap<String, Arc<Value>>>,
}

impl NodesView {
    pub fn set(&self, node_id: &str, output: Arc<Value>) {
        if let Ok(mut map) = self.outputs.write() {
            map.insert(node_id.to_string(), output);
        }
    }

    /// Forgets every output (at the end of a run, so they can move into the record).
    pub fn clear(&self) {
        if let Ok(mut map) = self.outputs.write() {
            map.clear();
        }
    }

    pub fn get(&self, node_id: &str) -> Option<Arc<Value>> {
        self.outputs.read().ok()?.get(node_id).cloned()
    }
}

#[derive(Debug)]
struct NodesObject(Arc<NodesView>);

impl Object for NodesObject {
    fn get_value(self: &Arc<Self>, key: &Mj) -> Option<Mj> {
        let output = self.0.get(key.as_str()?)?;
        Some(Mj::from_pairs([("output", Mj::from(Serde(&*output)))]))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Mj> = self
            .0
            .outputs
            .read()
            .map(|m| m.keys().map(|k| Mj::from(k.as_str())).collect())
            .unwrap_or_default();
        Enumerator::Values(keys)
    }
}

/// The process environment as `env.NAME` (read lazily).
#[derive(Debug)]
struct EnvObject;

impl Object for EnvObject {
    fn get_value(self: &Arc<Self>, key: &Mj) -> Option<Mj> {
        std::env::var(key.as_str()?).ok().map(Mj::from)
    }
}

/// Per-run values converted once, shared by every node of the run.
pub struct RunScope {
    pub trigger: Mj,
    pub vars: Mj,
    pub run: Mj,
    pub nodes: Mj,
    env: Mj,
    creds: Mj,
}

impl RunScope {
    pub fn new(
        trigger: &Value,
        vars: &serde_json::Map<String, Value>,
        run: Value,
        nodes: Arc<NodesView>,
        creds: Arc<super::RunCreds>,
    ) -> RunScope {
        RunScope {
            trigger: Mj::from(Serde(trigger)),
            vars: Mj::from(Serde(vars)),
            run: Mj::from(Serde(&run)),
            nodes: Mj::from_object(NodesObject(nodes)),
            env: Mj::from_object(EnvObject),
            creds: Mj::from_object(super::creds::CredsObject(creds)),
        }
    }

    /// The context of one node attempt.
    pub fn for_node(&self, input: &Value, item: Option<(&Value, usize)>) -> Mj {
        let mut entries = vec![
            ("trigger", self.trigger.clone()),
            ("input", Mj::from(Serde(input))),
            ("nodes", self.nodes.clone()),
            ("vars", self.vars.clone()),
            ("env", self.env.clone()),
            ("creds", self.creds.clone()),
            ("run", self.run.clone()),
        ];
        if let Some((item, index)) = item {
            entries.push(("item", Mj::from(Serde(item))));
            entries.push(("index", Mj::from(index)));
        }
        Mj::from_pairs(entries)
    }

    /// The context of one foreach item: `item` and `index` over the node's
    /// context, which is built once per node rather than once per item.
    pub fn with_item(base: &Mj, item: &Value, index: usize) -> Mj {
        minijinja::value::merge_maps([
            Mj::from_pairs([("item", Mj::from(Serde(item))), ("index", Mj::from(index))]),
            base.clone(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Mj {
        let nodes = Arc::new(NodesView::default());
        nodes.set("a", Arc::new(json!({"n": 2, "list": [1, 2, 3]})));
        let rs = RunScope::new(
            &json!({"name": "ada"}),
            &serde_json::Map::new(),
            json!({"id": "r1"}),
            nodes,
            Arc::new(crate::engine::RunCreds::default()),
        );
        rs.for_node(&json!({"x": 1}), None)
    }

    #[test]
    fn single_expression_keeps_type() {
        let e = Expressions::new();
        let s = scope();
        assert_eq!(
            e.render_str("{{ nodes.a.output.n * 2 }}", &s).unwrap(),
            json!(4)
        );
        assert_eq!(
            e.render_str("{{ nodes.a.output.list }}", &s).unwrap(),
            json!([1, 2, 3])
        );
        assert_eq!(
            e.render_str("hi {{ trigger.name }}!", &s).unwrap(),
            json!("hi ada!")
        );
        assert_eq!(e.render_str("plain", &s).unwrap(), json!("plain"));
    }

    #[test]
    fn plain_paths_match_the_compiled_expression() {
        let e = Expressions::new();
        let s = RunScope::with_item(&scope(), &json!({"id": 7, "tags": ["a"]}), 3);
        for (path, want) in [
            ("item", json!({"id": 7, "tags": ["a"]})),
            ("item.id", json!(7)),
            ("index", json!(3)),
            ("nodes.a.output.list", json!([1, 2, 3])),
            ("trigger.name", json!("ada")),
        ] {
            assert!(
                lookup_path(path, &s).is_some(),
                "{path} takes the fast path"
            );
            assert_eq!(
                e.render_str(&format!("{{{{ {path} }}}}"), &s).unwrap(),
                want
            );
            // The same path through minijinja proper gives the same value.
            let compiled = e.env.compile_expression(path).unwrap();
            assert_eq!(to_json(&compiled.eval(s.clone()).unwrap()).unwrap(), want);
        }
        for slow in [
            "item.nope",
            "item.tags[0]",
            "index + 1",
            "item | length",
            "1abc",
        ] {
            assert!(
                lookup_path(slow, &s).is_none(),
                "{slow} is not a plain path"
            );
        }
        let err = e.render_str("{{ item.nope }}", &s).unwrap_err();
        assert!(err.message.contains("does not exist"), "{err}");
    }

    #[test]
    fn undefined_names_are_errors() {
        let e = Expressions::new();
        let err = e
            .render_str("{{ nodes.zzz.output }}", &scope())
            .unwrap_err();
        assert!(err.message.contains("undefined"), "{err}");
        assert!(e.render_str("{{ trigger.nope }}", &scope()).is_err());
    }

    #[test]
    fn looping_expression_runs_out_of_fuel() {
        let e = Expressions::new();
        let err = e
            .render_str(
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
                &scope(),
            )
            .unwrap_err();
        assert!(
            err.message.contains("too much work") || err.message.contains("range"),
            "{err}"
        );
    }

    #[test]
    fn check_lists_paths() {
        let e = Expressions::new();
        let names = e
            .check("{{ nodes.fetch.output.body }} {{ nodes[\"my-node\"].output }}")
            .unwrap();
        assert!(
            names.iter().any(|n| n.starts_with("nodes.fetch")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n == "nodes.my-node"), "{names:?}");
        assert!(e.check("{{ 1 + }}").is_err());
    }
}
