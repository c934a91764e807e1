//! A workflow's declared parameters (`params`): what a run's input may hold,
//! of which type, with which defaults. `fuse run --input`, the API and
//! webhooks are checked against them before anything runs: an unknown name is
//! an error with the nearest declared one, `"5"` becomes 5 for a number, and a
//! missing required one or a value of the wrong type is refused.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::validate::closest;

/// One declared parameter.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// The name: `trigger.NAME` in expressions, `--input NAME=…` on the command line.
    pub name: String,
    /// The value's type (default `any`).
    #[serde(default, rename = "type")]
    pub kind: ParamType,
    /// The value used when the input does not give one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The input must give a value (a required param has no default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// What the parameter is for (shown by `fuse validate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The type of a parameter.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
    #[default]
    Any,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Number => "number",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Object => "object",
            ParamType::Array => "array",
            ParamType::Any => "any",
        }
    }
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}", self.name, self.kind.as_str())?;
        if self.required {
            f.write_str(", required")?;
        }
        if let Some(d) = &self.default {
            write!(f, ", default {d}")?;
        }
        f.write_str(")")?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// Problems with the `params` block itself, as (JSON path, message).
pub fn check_declaration(params: &[Param]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let path = format!("params[{i}]");
        let ident = p
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            problems.push((
                format!("{path}.name"),
                format!(
                    "param name {:?} must be letters, digits and `_`, not starting with a digit (it is read as trigger.NAME)",
                    p.name
                ),
            ));
        }
        if params[..i].iter().any(|q| q.name == p.name) {
            problems.push((
                format!("{path}.name"),
                format!("param {:?} is declared twice", p.name),
            ));
        }
        if let Some(default) = &p.default {
            if p.required {
                problems.push((
                    format!("{path}.default"),
                    "a required param has no use for a default: drop one of them".into(),
                ));
            }
            if let Err(e) = coerce(p.kind, default.clone()) {
                problems.push((format!("{path}.default"), format!("the default {e}")));
            }
        }
    }
    problems
}

/// How strictly an input is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Unknown names, missing required params and wrong types are errors.
    Strict,
    /// Only defaults are filled in (runs whose input the trigger makes:
    /// schedules, files, plugin events).
    Defaults,
}

/// The input of a run checked against `params`: defaults filled in and
/// strings converted; or every problem, each naming the parameter.
pub fn apply(params: &[Param], input: Value, check: Check) -> Result<Value, Vec<String>> {
    let mut map = match input {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other if check == Check::Defaults => return Ok(other),
        other => {
            return Err(vec![format!(
                "the input must be an object of named values, not {}",
                kind_of(&other)
            )]);
        }
    };
    let mut problems = Vec::new();
    if check == Check::Strict {
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        for key in map.keys() {
            if names.contains(&key.as_str()) {
                continue;
            }
            let hint = match closest(key, names.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None if names.is_empty() => "this workflow takes no input".to_string(),
                None => format!("this workflow takes: {}", names.join(", ")),
            };
            problems.push(format!("unknown input `{key}`; {hint}"));
        }
    }
    for p in params {
        match map.remove(&p.name) {
            Some(value) => match coerce(p.kind, value) {
                Ok(v) => {
                    map.insert(p.name.clone(), v);
                }
                Err(e) if check == Check::Strict => {
                    problems.push(format!("input `{}`: {e}", p.name));
                }
                Err(_) => {}
            },
            None => match &p.default {
                Some(d) => {
                    map.insert(p.name.clone(), d.clone());
                }
                None if p.required && check == Check::Strict => problems.push(format!(
                    "input `{}` is required ({}{})",
                    p.name,
                    p.kind.as_str(),
                    p.description
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )),
                None => {}
            },
        }
    }
    if problems.is_empty() {
        Ok(Value::Object(map))
    } else {
        Err(problems)
    }
}

/// A value as `kind`: strings converted where that is unambiguous (`"5"` is a
/// number, `"true"` a boolean, `"[1]"` an array); anything else must already
/// have the type.
pub fn coerce(kind: ParamType, value: Value) -> Result<Value, String> {
    let wrong = |v: &Value| {
        Err(format!(
            "expected {} {}, got {} {}",
            article(kind.as_str()),
            kind.as_str(),
            kind_of(v),
            shown(v)
        ))
    };
    match (kind, value) {
        (ParamType::Any, v) => Ok(v),
        (ParamType::String, Value::String(s)) => Ok(Value::String(s)),
        (ParamType::String, v @ (Value::Number(_) | Value::Bool(_))) => {
            Ok(Value::String(v.to_string()))
        }
        (ParamType::Number, Value::Number(n)) => Ok(Value::Number(n)),
        (ParamType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Value::Number(n)),
        (ParamType::Integer, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
            _ => wrong(&Value::Number(n)),
        },
        (ParamType::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
        (ParamType::Object, Value::Object(m)) => Ok(Value::Object(m)),
        (ParamType::Array, Value::Array(a)) => Ok(Value::Array(a)),
        (kind, Value::String(s)) => {
            let text = s.trim();
            let parsed = match kind {
                ParamType::Integer => text.parse::<i64>().ok().map(Value::from),
                ParamType::Number => text.parse::<i64>().ok().map(Value::from).or_else(|| {
                    text.parse::<f64>()
                        .ok()
                        .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                }),
                ParamType::Boolean => match text.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "1" | "on" => Some(Value::Bool(true)),
                    "false" | "no" | "0" | "off" => Some(Value::Bool(false)),
                    _ => None,
                },
                ParamType::Object => serde_json::from_str::<Value>(text)
                    .ok()
                    .filter(Value::is_object),
                ParamType::Array => serde_json::from_str::<Value>(text)
                    .ok()
                    .filter(Value::is_array),
                ParamType::String | ParamType::Any => None,
            };
            match parsed {
                Some(v) => Ok(v),
                None => wrong(&Value::String(s)),
            }
        }
        (_, v) => wrong(&v),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The JSON type of a value, as a person says it.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Vec<Param> {
        serde_json::from_value(json!([
            {"name": "count", "type": "integer", "default": 3},
            {"name": "name", "type": "string", "required": true},
            {"name": "loud", "type": "boolean", "default": false},
            {"name": "ratio", "type": "number"}
        ]))
        .unwrap()
    }

    #[test]
    fn strings_are_converted_and_defaults_filled() {
        let out = apply(
            &params(),
            json!({"count": "5", "name": 7, "loud": "yes", "ratio": "0.5"}),
            Check::Strict,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"count": 5, "name": "7", "loud": true, "ratio": 0.5})
        );
        let out = apply(&params(), json!({"name": "x"}), Check::Strict).unwrap();
        assert_eq!(out, json!({"count": 3, "name": "x", "loud": false}));
    }

    #[test]
    fn problems_name_the_param() {
        let err = apply(
            &params(),
            json!({"cuont": 1, "count": "many", "ratio": [1]}),
            Check::Strict,
        )
        .unwrap_err();
        assert!(
            err.contains(&"unknown input `cuont`; did you mean `count`?".to_string()),
            "{err:?}"
        );
        assert!(
            err.contains(&"input `count`: expected an integer, got string \"many\"".to_string()),
            "{err:?}"
        );
        assert!(
            err.contains(&"input `ratio`: expected a number, got array [1]".to_string()),
            "{err:?}"
        );
        assert!(
            err.iter()
                .any(|e| e.starts_with("input `name` is required")),
            "{err:?}"
        );
        // Trigger-made inputs only get defaults.
        let out = apply(&params(), json!({"scheduled": true}), Check::Defaults).unwrap();
        assert_eq!(out["count"], 3);
    }

    #[test]
    fn declarations_are_checked() {
        let bad: Vec<Param> = serde_json::from_value(json!([
            {"name": "1st", "type": "string"},
            {"name": "n", "type": "integer", "default": "x"},
            {"name": "n", "type": "integer", "required": true, "default": 1}
        ]))
        .unwrap();
        let problems = check_declaration(&bad);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
