//! Matchers of expectations, and the differences they report.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::expr::{Expressions, Scope};

/// How a value is checked: `{"equals": v}`, `{"subset": v}`, `{"contains":
/// "text"}`, `{"expr": "value.count > 2"}` or `{"jq": ".items | length > 2"}`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Matcher {
    /// The value is exactly this.
    Equals(Value),
    /// Every key given has this value (recursively); arrays match item by
    /// item and must have the same length.
    Subset(Value),
    /// The text (a string, or the JSON of anything else) contains this.
    Contains(String),
    /// A fuse expression over `value` that must be `true`.
    Expr(String),
    /// A jq program over the value that must give `true`.
    Jq(String),
}

/// One thing that differed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Where (`$.output.items[2].name`).
    pub path: String,
    pub message: String,
}

/// Differences shown per mismatch, at most.
const MAX_SHOWN: usize = 20;

impl Matcher {
    /// Checks the parts that can be wrong before running (expression and jq syntax).
    pub fn compile(&self) -> Result<(), String> {
        match self {
            Matcher::Expr(e) => minijinja::machinery::parse_expr(e)
                .map(|_| ())
                .map_err(|err| format!("expression {e:?} does not parse: {err}")),
            Matcher::Jq(code) => {
                match crate::nodes::builtin::transform::run_jq(code, &Value::Null, true) {
                    Err(e) if e.kind == crate::nodes::ErrorKind::Input => Err(e.message),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// The differences between `actual` (`None`: there is none) and what is
    /// expected; empty when it matches.
    pub fn check(&self, actual: Option<&Value>, exprs: &Expressions, at: &str) -> Vec<Difference> {
        let mut out = Vec::new();
        let absent = Value::Null;
        match self {
            Matcher::Equals(expected) => match actual {
                None => out.push(missing(at, expected)),
                Some(actual) => diff(expected, actual, at, false, &mut out),
            },
            Matcher::Subset(expected) => match actual {
                None => out.push(missing(at, expected)),
                Some(actual) => diff(expected, actual, at, true, &mut out),
            },
            Matcher::Contains(text) => {
                let found = match actual {
                    Some(Value::String(s)) => s.contains(text.as_str()),
                    Some(v) => v.to_string().contains(text.as_str()),
                    None => false,
                };
                if !found {
                    out.push(Difference {
                        path: at.into(),
                        message: format!(
                            "expected text containing {text:?}, got {}",
                            shown(actual)
                        ),
                    });
                }
            }
            Matcher::Expr(expr) => {
                let value = actual.unwrap_or(&absent);
                let base = std::sync::OnceLock::new();
                let _ = base.set(minijinja::Value::from(minijinja::value::Serde(
                    json!({"value": value}),
                )));
                match exprs.render_str(&format!("{{{{ {expr} }}}}"), &Scope::of(&base)) {
                    Ok(Value::Bool(true)) => {}
                    Ok(other) => out.push(Difference {
                        path: at.into(),
                        message: format!(
                            "expected `{expr}` to be true, it is {} (value: {})",
                            other,
                            shown(actual)
                        ),
                    }),
                    Err(e) => out.push(Difference {
                        path: at.into(),
                        message: format!("`{expr}` failed: {e} (value: {})", shown(actual)),
                    }),
                }
            }
            Matcher::Jq(code) => {
                let value = actual.unwrap_or(&absent);
                match crate::nodes::builtin::transform::run_jq(code, value, false) {
                    Ok(Value::Bool(true)) => {}
                    Ok(other) => out.push(Difference {
                        path: at.into(),
                        message: format!(
                            "expected jq `{code}` to give true, it gave {other} (value: {})",
                            shown(actual)
                        ),
                    }),
                    Err(e) => out.push(Difference {
                        path: at.into(),
                        message: format!(
                            "jq `{code}` failed: {} (value: {})",
                            e.message,
                            shown(actual)
                        ),
                    }),
                }
            }
        }
        if out.len() > MAX_SHOWN {
            let more = out.len() - MAX_SHOWN;
            out.truncate(MAX_SHOWN);
            out.push(Difference {
                path: at.into(),
                message: format!("… and {more} more differences"),
            });
        }
        out
    }
}

fn missing(at: &str, expected: &Value) -> Difference {
    Difference {
        path: at.into(),
        message: format!("expected {}, but there is none", compact(expected)),
    }
}

/// A value for a message, cut when long.
pub fn shown(v: Option<&Value>) -> String {
    match v {
        None => "nothing".into(),
        Some(v) => compact(v),
    }
}

fn compact(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 200 {
        let cut: String = text.chars().take(200).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Collects where `actual` differs from `expected`; with `subset`, keys of
/// `actual` that `expected` does not name are not differences.
fn diff(expected: &Value, actual: &Value, at: &str, subset: bool, out: &mut Vec<Difference>) {
    if out.len() > MAX_SHOWN {
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let here = format!("{at}{}", key_path(k));
                match a.get(k) {
                    Some(av) => diff(ev, av, &here, subset, out),
                    None => out.push(Difference {
                        path: here,
                        message: format!("missing (expected {})", compact(ev)),
                    }),
                }
            }
            if !subset {
                for (k, av) in a {
                    if !e.contains_key(k) {
                        out.push(Difference {
                            path: format!("{at}{}", key_path(k)),
                            message: format!("unexpected {}", compact(av)),
                        });
                    }
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                out.push(Difference {
                    path: at.into(),
                    message: format!("expected {} items, got {}", e.len(), a.len()),
                });
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(ev, av, &format!("{at}[{i}]"), subset, out);
            }
        }
        (e, a) if numbers_equal(e, a) || e == a => {}
        (e, a) => out.push(Difference {
            path: at.into(),
            message: format!("expected {}, got {}", compact(e), compact(a)),
        }),
    }
}

/// `1` and `1.0` are the same number.
fn numbers_equal(e: &Value, a: &Value) -> bool {
    match (e.as_f64(), a.as_f64()) {
        (Some(x), Some(y)) => e.is_number() && a.is_number() && x == y,
        _ => false,
    }
}

fn key_path(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!(".{k}")
    } else {
        format!("[{}]", Value::String(k.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(m: Matcher, v: Value) -> Vec<String> {
        m.check(Some(&v), &Expressions::new(), "$")
            .into_iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect()
    }

    #[test]
    fn equality_lists_each_difference_by_path() {
        let got = check(
            Matcher::Equals(json!({"a": 1, "b": [1, 2], "c": {"d": "x"}})),
            json!({"a": 2, "b": [1], "c": {"d": "x"}, "e": true}),
        );
        assert_eq!(
            got,
            vec![
                "$.a: expected 1, got 2",
                "$.b: expected 2 items, got 1",
                "$.e: unexpected true"
            ]
        );
        assert!(check(Matcher::Equals(json!(1)), json!(1.0)).is_empty());
    }

    #[test]
    fn subset_ignores_other_keys() {
        assert!(
            check(
                Matcher::Subset(json!({"a": {"b": 1}})),
                json!({"a": {"b": 1, "c": 2}, "d": 3})
            )
            .is_empty()
        );
        assert_eq!(
            check(
                Matcher::Subset(json!({"a": {"z": 1}})),
                json!({"a": {"b": 1}})
            ),
            vec!["$.a.z: missing (expected 1)"]
        );
    }

    #[test]
    fn predicates() {
        assert!(check(Matcher::Expr("value.n > 2".into()), json!({"n": 3})).is_empty());
        assert_eq!(
            check(Matcher::Expr("value.n > 2".into()), json!({"n": 1})).len(),
            1
        );
        assert!(
            check(
                Matcher::Jq(".items | length == 2".into()),
                json!({"items": [1, 2]})
            )
            .is_empty()
        );
        assert_eq!(check(Matcher::Jq(".n".into()), json!({"n": 1})).len(), 1);
        assert!(check(Matcher::Contains("lo w".into()), json!("hello world")).is_empty());
        assert!(Matcher::Jq(".a |||".into()).compile().is_err());
        assert!(Matcher::Expr("value.(".into()).compile().is_err());
    }
}
