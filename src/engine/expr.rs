//! `{{ … }}` expressions (minijinja). A string that is exactly one expression
//! keeps the JSON type of its value; any other string with `{{` is rendered as
//! text. Undefined names are errors (strict mode), and a fuel limit stops
//! expressions that loop.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use minijinja::value::{Enumerator, Object, Serde, Value as Mj};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// Instructions one rendering may execute before it is stopped.
const FUEL: u64 = 2_000_000;

/// Names an expression may start from.
pub const CONTEXT_NAMES: &[&str] = &[
    "trigger", "input", "nodes", "vars", "env", "creds", "run", "item", "index",
];

/// Filter and test names offered as suggestions (those the environment has).
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "default",
    "dictsort",
    "escape",
    "first",
    "float",
    "fromjson",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "chain",
    "zip",
];
const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
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
    /// Whether a filter or test name exists, by ("filter" | "test", name):
    /// asked once per name, not once per use (validation of big workflows).
    known: std::sync::Mutex<HashMap<(&'static str, String), bool>>,
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
        // "{{ x }}\n" keeps its newline, as a static string does.
        // Only custom delimiters can make build() fail; these are the defaults.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.add_function(super::compare::FUNCTION, super::compare::compare);
        env.add_filter("fromjson", |s: String| -> Result<Mj, minijinja::Error> {
            let v: Value = serde_json::from_str(&s).map_err(|e| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("fromjson: {e}"),
                )
            })?;
            Ok(Mj::from(Serde(&v)))
        });
        Expressions {
            env,
            known: Default::default(),
        }
    }

    /// Renders one string.
    pub fn render_str(&self, text: &str, scope: &Scope<'_>) -> Result<Value, ExprError> {
        if let Some(expr) = single_expression(text) {
            let strict = super::compare::strict(expr);
            let expr = strict.as_deref().unwrap_or(expr);
            return self.eval(text, expr, plain_path(expr).is_some(), scope);
        }
        if !has_template(text) {
            return Ok(Value::String(text.to_string()));
        }
        self.text(text, scope)
    }

    /// Renders an input prepared by [`Template::new`].
    pub fn render_template(
        &self,
        template: &Template,
        scope: &Scope<'_>,
    ) -> Result<Value, ExprError> {
        match template {
            Template::Static(value) => Ok(value.clone()),
            Template::Expr { text, expr, plain } => self.eval(text, expr, *plain, scope),
            Template::Text(text) => self.text(text, scope),
            Template::Array(items) => items
                .iter()
                .map(|t| self.render_template(t, scope))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Object(entries) => {
                let mut out = serde_json::Map::with_capacity(entries.len());
                for (k, t) in entries {
                    out.insert(k.clone(), self.render_template(t, scope)?);
                }
                Ok(Value::Object(out))
            }
        }
    }

    /// The value of `expr`, the inside of `text` (`{{ expr }}`).
    fn eval(
        &self,
        text: &str,
        expr: &str,
        plain: bool,
        scope: &Scope<'_>,
    ) -> Result<Value, ExprError> {
        let err = |message: String| ExprError {
            expression: text.to_string(),
            message,
        };
        if plain && let Some(value) = scope.lookup(expr) {
            return value.map_err(err);
        }
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| err(describe(&e)))?;
        let undefined = |message: String| err(self.missing(text, scope).unwrap_or(message));
        let value = compiled
            .eval(scope.context().clone())
            .map_err(|e| err(self.explain(&e, text, scope)))?;
        to_json(&value).map_err(undefined)
    }

    /// An evaluation error in words: what is undefined, said precisely, when
    /// an undefined value is the cause.
    fn explain(&self, e: &minijinja::Error, text: &str, scope: &Scope<'_>) -> String {
        let about_undefined = e.kind() == minijinja::ErrorKind::UndefinedError
            || e.detail().is_some_and(|d| d.contains("undefined"));
        match (
            about_undefined,
            about_undefined.then(|| self.missing(text, scope)).flatten(),
        ) {
            (_, None) => describe(e),
            (_, Some(missing)) if e.kind() == minijinja::ErrorKind::UndefinedError => missing,
            (_, Some(missing)) => format!("{}; {missing}", describe(e)),
        }
    }

    /// What an expression reads that does not exist, said precisely:
    /// "`trigger` has no field `nmae` (it has: name)".
    fn missing(&self, text: &str, scope: &Scope<'_>) -> Option<String> {
        let names = self.check(text).ok()?;
        let context = scope.context();
        for name in names {
            let mut value = context.clone();
            let mut path = String::new();
            for key in name.split('.') {
                let next = value.get_attr(key).unwrap_or(Mj::UNDEFINED);
                if next.is_undefined() {
                    return Some(match path.as_str() {
                        "" => format!(
                            "`{key}` does not exist (expressions can read {})",
                            CONTEXT_NAMES.join(", ")
                        ),
                        "env" => format!("the environment variable `{key}` is not set"),
                        "nodes" => format!(
                            "node `{key}` has no output here (it did not run, or is not upstream of this node)"
                        ),
                        _ => {
                            let keys: Vec<String> = match value.kind() {
                                minijinja::value::ValueKind::Map => value
                                    .try_iter()
                                    .map(|it| it.take(12).map(|k| k.to_string()).collect())
                                    .unwrap_or_default(),
                                _ => Vec::new(),
                            };
                            let has = match (value.kind(), keys.is_empty()) {
                                (minijinja::value::ValueKind::Map, true) => {
                                    " (it is empty)".to_string()
                                }
                                (minijinja::value::ValueKind::Map, false) => {
                                    format!(" (it has: {})", keys.join(", "))
                                }
                                (kind, _) => format!(" (it is a {kind}, not an object)"),
                            };
                            format!("`{path}` has no field `{key}`{has}")
                        }
                    });
                }
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                value = next;
            }
        }
        None
    }

    /// `text` rendered as a template, as a string.
    fn text(&self, text: &str, scope: &Scope<'_>) -> Result<Value, ExprError> {
        self.env
            .render_str(text, scope.context().clone())
            .map(Value::String)
            .map_err(|e| ExprError {
                expression: text.to_string(),
                message: self.explain(&e, text, scope),
            })
    }

    /// The filters and tests `text` uses that do not exist, each as a message
    /// with the nearest known name (`lenght` → "did you mean `length`?").
    pub fn unknown_functions(&self, text: &str) -> Vec<String> {
        use minijinja::machinery::Token;
        if !has_template(text) {
            return Vec::new();
        }
        // The tokenizer repeats its error forever: stop at the first one (the
        // syntax error itself is reported by `check`).
        let tokens: Vec<Token<'_>> =
            minijinja::machinery::tokenize(text, false, Default::default())
                .map_while(|t| t.ok().map(|(token, _)| token))
                .collect();
        let mut problems = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let found = match (&tokens[i], tokens.get(i + 1), tokens.get(i + 2)) {
                (Token::Pipe, Some(Token::Ident(name)), _) => Some(("filter", *name)),
                (Token::Ident("is"), Some(Token::Ident("not")), Some(Token::Ident(name))) => {
                    Some(("test", *name))
                }
                (Token::Ident("is"), Some(Token::Ident(name)), _) if *name != "not" => {
                    Some(("test", *name))
                }
                _ => None,
            };
            if let Some((what, name)) = found
                && !self.known(what, name)
            {
                let names = if what == "filter" { FILTERS } else { TESTS };
                let known: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| self.known(what, n))
                    .collect();
                let hint = crate::workflow::validate::closest(name, known.iter().copied())
                    .map(|n| format!("did you mean `{n}`?"))
                    .unwrap_or_else(|| format!("the {what}s are: {}", known.join(", ")));
                let message = format!("unknown {what} `{name}`; {hint}");
                if !problems.contains(&message) {
                    problems.push(message);
                }
            }
            i += 1;
        }
        problems
    }

    /// Whether the environment has a filter (`what` = "filter") or test by this name.
    fn known(&self, what: &'static str, name: &str) -> bool {
        let key = (what, name.to_string());
        if let Some(known) = self.known.lock().ok().and_then(|k| k.get(&key).copied()) {
            return known;
        }
        let known = self.probe(what, name);
        // Bounded: names come from users (a daemon sees many deploys).
        if let Ok(mut cache) = self.known.lock()
            && cache.len() < 1024
        {
            cache.insert(key, known);
        }
        known
    }

    fn probe(&self, what: &str, name: &str) -> bool {
        let source = match what {
            "filter" => format!("none | {name}"),
            _ => format!("none is {name}"),
        };
        let unknown = match what {
            "filter" => minijinja::ErrorKind::UnknownFilter,
            _ => minijinja::ErrorKind::UnknownTest,
        };
        match self.env.compile_expression(&source) {
            Err(e) => e.kind() != unknown,
            Ok(compiled) => compiled
                .eval(minijinja::context! {})
                .err()
                .is_none_or(|e| e.kind() != unknown),
        }
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

/// A node input prepared once, when the workflow is planned: what needs
/// rendering is known before the first attempt (and the thousandth item).
#[derive(Debug, Clone)]
pub enum Template {
    /// No expression inside: used as is.
    Static(Value),
    /// Exactly one `{{ expr }}`: keeps the JSON type of its value.
    Expr {
        text: String,
        expr: String,
        /// A plain dotted path, read without compiling.
        plain: bool,
    },
    /// Text with template syntax: renders to a string.
    Text(String),
    Array(Vec<Template>),
    Object(Vec<(String, Template)>),
}

impl Template {
    pub fn new(value: &Value) -> Template {
        match value {
            Value::String(text) => match single_expression(text) {
                Some(expr) => Template::Expr {
                    text: text.clone(),
                    // Orderings between different types are errors, not
                    // silently true (rewritten once, here).
                    expr: super::compare::strict(expr).unwrap_or_else(|| expr.to_string()),
                    plain: plain_path(expr).is_some(),
                },
                None if has_template(text) => Template::Text(text.clone()),
                None => Template::Static(value.clone()),
            },
            Value::Array(items) => {
                let items: Vec<Template> = items.iter().map(Template::new).collect();
                if items.iter().all(Template::is_static) {
                    Template::Static(value.clone())
                } else {
                    Template::Array(items)
                }
            }
            Value::Object(map) => {
                let entries: Vec<(String, Template)> = map
                    .iter()
                    .map(|(k, v)| (k.clone(), Template::new(v)))
                    .collect();
                if entries.iter().all(|(_, t)| t.is_static()) {
                    Template::Static(value.clone())
                } else {
                    Template::Object(entries)
                }
            }
            other => Template::Static(other.clone()),
        }
    }

    pub fn is_static(&self) -> bool {
        matches!(self, Template::Static(_))
    }
}

/// True when a string contains template syntax.
pub fn has_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// The segments of a plain dotted path such as `item` or
/// `nodes.fetch.output.body`; `None` for anything else.
fn plain_path(expr: &str) -> Option<std::str::Split<'_, char>> {
    let is_ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    expr.split('.').all(is_ident).then(|| expr.split('.'))
}

/// Follows object keys from `value`; `None` when one is missing.
fn walk<'v>(mut value: &'v Value, keys: std::str::Split<'_, char>) -> Option<&'v Value> {
    for key in keys {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// The value of a plain dotted path on a minijinja value, or `None` when it
/// does not resolve.
fn lookup_mj(scope: &Mj, keys: std::str::Split<'_, char>) -> Option<Mj> {
    let mut value = scope.clone();
    for key in keys {
        if value.is_undefined() || value.is_none() {
            return None;
        }
        value = value.get_attr(key).ok()?;
    }
    (!value.is_undefined()).then_some(value)
}

/// The inner expression when `text` is exactly one `{{ … }}`.
///
/// Only the exact string counts: `"{{ x }}\n"` is text (and keeps its newline).
pub fn single_expression(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?;
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
    /// The seed format's bare names ([`super::creds::BareNames`]).
    bare: Mj,
    view: Arc<NodesView>,
}

/// What the expressions of one node attempt see. Plain paths into `item`,
/// `index`, `input` and `nodes.<id>.output` are read straight from the JSON
/// values; the minijinja context (which converts `input` and, per item,
/// merges `item` over it) is built only when an expression needs it.
pub struct Scope<'a> {
    run: Option<&'a RunScope>,
    input: Option<&'a Value>,
    item: Option<(&'a Value, usize)>,
    /// The node's context without the item: shared by the items of a `foreach`.
    base: &'a OnceLock<Mj>,
    full: OnceLock<Mj>,
}

impl<'a> Scope<'a> {
    /// The scope of a node attempt (`item` and `index` inside a `foreach`).
    /// `base` caches the node's context; pass the same cell for every item.
    pub fn node(
        run: &'a RunScope,
        input: &'a Value,
        item: Option<(&'a Value, usize)>,
        base: &'a OnceLock<Mj>,
    ) -> Scope<'a> {
        Scope {
            run: Some(run),
            input: Some(input),
            item,
            base,
            full: OnceLock::new(),
        }
    }

    /// A scope that is a ready minijinja value (`base` must hold it).
    pub fn of(base: &'a OnceLock<Mj>) -> Scope<'a> {
        Scope {
            run: None,
            input: None,
            item: None,
            base,
            full: OnceLock::new(),
        }
    }

    /// The whole context as minijinja sees it.
    pub fn context(&self) -> &Mj {
        let base = self.base.get_or_init(|| match (self.run, self.input) {
            (Some(run), Some(input)) => run.for_node(input, None),
            _ => Mj::UNDEFINED,
        });
        match self.item {
            None => base,
            Some((item, index)) => self
                .full
                .get_or_init(|| RunScope::with_item(base, item, index)),
        }
    }

    /// The value of a plain dotted path without compiling it: the common case,
    /// and a hot one inside `foreach`. `None` for anything else and for a path
    /// that does not resolve, so the compiled expression reports the error in
    /// its own words.
    fn lookup(&self, expr: &str) -> Option<Result<Value, String>> {
        let mut keys = plain_path(expr)?;
        let whole = keys.clone();
        let direct = match (keys.next()?, self.item) {
            ("item", Some((item, _))) => walk(item, keys),
            ("index", Some((_, index))) => {
                return keys.next().is_none().then(|| Ok(Value::from(index)));
            }
            ("input", _) if self.input.is_some() => walk(self.input?, keys),
            ("nodes", _) if self.run.is_some() => {
                let output = self.run?.view.get(keys.next()?)?;
                if keys.next()? != "output" {
                    return None;
                }
                return walk(&output, keys).cloned().map(Ok);
            }
            _ => return lookup_mj(self.context(), whole).map(|v| to_json(&v)),
        };
        direct.cloned().map(Ok)
    }
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
            nodes: Mj::from_object(NodesObject(nodes.clone())),
            env: Mj::from_object(EnvObject),
            creds: Mj::from_object(super::creds::CredsObject(creds.clone())),
            bare: Mj::from_object(super::creds::BareNames {
                trigger: Mj::from(Serde(trigger)),
                vars: Mj::from(Serde(vars)),
                creds,
            }),
            view: nodes,
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
        // Names that are none of the above: the seed format's bare names.
        minijinja::value::merge_maps([Mj::from_pairs(entries), self.bare.clone()])
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

    fn run_scope() -> RunScope {
        let nodes = Arc::new(NodesView::default());
        nodes.set("a", Arc::new(json!({"n": 2, "list": [1, 2, 3]})));
        RunScope::new(
            &json!({"name": "ada"}),
            &serde_json::Map::new(),
            json!({"id": "r1"}),
            nodes,
            Arc::new(crate::engine::RunCreds::default()),
        )
    }

    /// Renders `text` in a node scope with input `{"x": 1}`.
    fn render(text: &str) -> Result<Value, ExprError> {
        let (rs, base, input) = (run_scope(), OnceLock::new(), json!({"x": 1}));
        Expressions::new().render_str(text, &Scope::node(&rs, &input, None, &base))
    }

    #[test]
    fn single_expression_keeps_type() {
        assert_eq!(render("{{ nodes.a.output.n * 2 }}").unwrap(), json!(4));
        assert_eq!(
            render("{{ nodes.a.output.list }}").unwrap(),
            json!([1, 2, 3])
        );
        assert_eq!(render("hi {{ trigger.name }}!").unwrap(), json!("hi ada!"));
        assert_eq!(render("{{ input.x + 1 }}").unwrap(), json!(2));
        assert_eq!(render("plain").unwrap(), json!("plain"));
    }

    #[test]
    fn plain_paths_match_the_compiled_expression() {
        let e = Expressions::new();
        let (rs, base, input) = (run_scope(), OnceLock::new(), json!({"x": 1.5}));
        let item = json!({"id": 7, "tags": ["a"], "big": u64::MAX});
        let s = Scope::node(&rs, &input, Some((&item, 3)), &base);
        for (path, want) in [
            ("item", item.clone()),
            ("item.id", json!(7)),
            ("item.big", json!(u64::MAX)),
            ("index", json!(3)),
            ("input", json!({"x": 1.5})),
            ("input.x", json!(1.5)),
            ("nodes.a.output.list", json!([1, 2, 3])),
            ("nodes.a.output", json!({"n": 2, "list": [1, 2, 3]})),
            ("trigger.name", json!("ada")),
        ] {
            assert!(s.lookup(path).is_some(), "{path} takes the fast path");
            assert_eq!(
                e.render_str(&format!("{{{{ {path} }}}}"), &s).unwrap(),
                want
            );
            // The same path through minijinja proper gives the same value.
            let compiled = e.env.compile_expression(path).unwrap();
            assert_eq!(
                to_json(&compiled.eval(s.context().clone()).unwrap()).unwrap(),
                want
            );
        }
        for slow in [
            "item.nope",
            "item.tags[0]",
            "index + 1",
            "index.x",
            "item | length",
            "nodes.a",
            "nodes.zzz.output",
            "nodes.a.output.nope",
            "input.nope",
            "1abc",
        ] {
            assert!(s.lookup(slow).is_none(), "{slow} is not a plain path");
        }
        for missing in [
            "item.nope",
            "nodes.zzz.output",
            "input.nope",
            "nodes.a.output.nope",
        ] {
            let err = e
                .render_str(&format!("{{{{ {missing} }}}}"), &s)
                .unwrap_err();
            assert!(
                err.message.contains("has no field") || err.message.contains("has no output"),
                "{missing}: {err}"
            );
        }
    }

    #[test]
    fn undefined_names_are_errors() {
        let err = render("{{ nodes.zzz.output }}").unwrap_err();
        assert!(err.message.contains("node `zzz` has no output"), "{err}");
        assert!(render("{{ trigger.nope }}").is_err());
        // `item` exists only inside a foreach.
        assert!(render("{{ item }}").is_err());
    }

    #[test]
    fn looping_expression_runs_out_of_fuel() {
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
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
