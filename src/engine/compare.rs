//! Ordering comparisons that refuse to compare values of different types.
//!
//! Jinja orders any two values, so `"5" > 10`, `"abc" > 10` and `[1] > 10` are
//! all silently true or false by the types' order, and a `flow.if` takes a
//! branch nobody meant. An expression with `<`, `>`, `<=` or `>=` is rewritten
//! once, when the workflow is planned, so that each ordering goes through
//! [`compare`], which orders numbers with numbers, strings with strings,
//! booleans with booleans and lists with lists, and is an error naming both
//! types otherwise. `==` and `!=` are left alone: values of different types
//! are simply not equal.

use minijinja::machinery::ast::{BinOpKind, CallArg, CompareOpKind, Expr, UnaryOpKind};
use minijinja::value::{Value as Mj, ValueKind};
use minijinja::{Error, ErrorKind};

/// The name the rewritten expressions call.
pub const FUNCTION: &str = "__fuse_compare";

/// `expr` with its ordering comparisons made strict, or `None` when it has
/// none (or does not parse: the error is reported where it is compiled).
pub fn strict(expr: &str) -> Option<String> {
    if !expr.contains(['<', '>']) {
        return None;
    }
    let parsed = minijinja::machinery::parse_expr(expr).ok()?;
    let mut found = false;
    let text = print(&parsed, &mut found);
    found.then_some(text)
}

/// `left OP right` for the ordering operators, refusing mixed types.
pub fn compare(left: Mj, op: String, right: Mj) -> Result<bool, Error> {
    let comparable = matches!(
        (left.kind(), right.kind()),
        (ValueKind::Number, ValueKind::Number)
            | (ValueKind::String, ValueKind::String)
            | (ValueKind::Bool, ValueKind::Bool)
            | (ValueKind::Seq, ValueKind::Seq)
    );
    if !comparable {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "cannot compare {} {} with {} {} using `{op}`; convert one side first (`| int`, `| float`, `| string`) or declare the param's type",
                kind_name(&left),
                shown(&left),
                kind_name(&right),
                shown(&right)
            ),
        ));
    }
    Ok(match op.as_str() {
        "<" => left < right,
        "<=" => left <= right,
        ">" => left > right,
        ">=" => left >= right,
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("unknown comparison `{other}`"),
            ));
        }
    })
}

fn kind_name(v: &Mj) -> &'static str {
    match v.kind() {
        ValueKind::Undefined => "an undefined value",
        ValueKind::None => "none",
        ValueKind::Bool => "boolean",
        ValueKind::Number => "number",
        ValueKind::String => "string",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq => "list",
        ValueKind::Map => "object",
        _ => "value",
    }
}

fn shown(v: &Mj) -> String {
    if v.is_undefined() || v.is_none() {
        return String::new();
    }
    let text = match v.as_str() {
        Some(s) => format!("{s:?}"),
        None => v.to_string(),
    };
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

/// Prints `e` back as an expression (every compound part parenthesized),
/// with ordering comparisons as calls of [`FUNCTION`].
fn print(e: &Expr<'_>, found: &mut bool) -> String {
    match e {
        Expr::Var(v) => v.id.to_string(),
        Expr::Const(c) => constant(&c.value),
        Expr::Slice(s) => {
            let part = |x: &Option<Expr<'_>>, found: &mut bool| {
                x.as_ref().map(|x| print(x, found)).unwrap_or_default()
            };
            let expr = print(&s.expr, found);
            let start = part(&s.start, found);
            let stop = part(&s.stop, found);
            let step = part(&s.step, found);
            format!("{expr}[{start}:{stop}:{step}]")
        }
        Expr::UnaryOp(u) => match u.op {
            UnaryOpKind::Not => format!("(not {})", print(&u.expr, found)),
            UnaryOpKind::Neg => format!("(-{})", print(&u.expr, found)),
        },
        Expr::BinOp(b) => {
            let left = print(&b.left, found);
            let right = print(&b.right, found);
            let op = match b.op {
                BinOpKind::Lt | BinOpKind::Lte | BinOpKind::Gt | BinOpKind::Gte => {
                    *found = true;
                    let op = match b.op {
                        BinOpKind::Lt => "<",
                        BinOpKind::Lte => "<=",
                        BinOpKind::Gt => ">",
                        _ => ">=",
                    };
                    return format!("{FUNCTION}({left}, \"{op}\", {right})");
                }
                BinOpKind::Eq => "==",
                BinOpKind::Ne => "!=",
                BinOpKind::ScAnd => "and",
                BinOpKind::ScOr => "or",
                BinOpKind::Add => "+",
                BinOpKind::Sub => "-",
                BinOpKind::Mul => "*",
                BinOpKind::Div => "/",
                BinOpKind::FloorDiv => "//",
                BinOpKind::Rem => "%",
                BinOpKind::Pow => "**",
                BinOpKind::Concat => "~",
                BinOpKind::In => "in",
            };
            format!("({left} {op} {right})")
        }
        Expr::Compare(c) => {
            // A chain `a < b < c`: each link compared, all must hold.
            let mut links = Vec::new();
            let mut left = print(&c.expr, found);
            for link in &c.ops {
                let right = print(&link.expr, found);
                let text = match link.op {
                    CompareOpKind::Lt => ordering(&left, "<", &right, found),
                    CompareOpKind::Lte => ordering(&left, "<=", &right, found),
                    CompareOpKind::Gt => ordering(&left, ">", &right, found),
                    CompareOpKind::Gte => ordering(&left, ">=", &right, found),
                    CompareOpKind::Eq => format!("({left} == {right})"),
                    CompareOpKind::Ne => format!("({left} != {right})"),
                    CompareOpKind::In => format!("({left} in {right})"),
                    CompareOpKind::NotIn => format!("({left} not in {right})"),
                };
                links.push(text);
                left = right;
            }
            format!("({})", links.join(" and "))
        }
        Expr::IfExpr(i) => {
            let test = print(&i.test_expr, found);
            let yes = print(&i.true_expr, found);
            match &i.false_expr {
                Some(no) => format!("({yes} if {test} else {})", print(no, found)),
                None => format!("({yes} if {test})"),
            }
        }
        Expr::Filter(f) => {
            let args = call_args(&f.args, found);
            let args = if f.args.is_empty() {
                String::new()
            } else {
                format!("({args})")
            };
            match &f.expr {
                Some(x) => format!("({} | {}{args})", print(x, found), f.name),
                None => format!("{}{args}", f.name),
            }
        }
        Expr::Test(t) => {
            let args = call_args(&t.args, found);
            let args = if t.args.is_empty() {
                String::new()
            } else {
                format!("({args})")
            };
            format!("({} is {}{args})", print(&t.expr, found), t.name)
        }
        Expr::GetAttr(g) => format!("{}.{}", print(&g.expr, found), g.name),
        Expr::GetItem(g) => format!(
            "{}[{}]",
            print(&g.expr, found),
            print(&g.subscript_expr, found)
        ),
        Expr::Call(c) => format!("{}({})", print(&c.expr, found), call_args(&c.args, found)),
        Expr::List(l) => format!("[{}]", items(&l.items, found)),
        Expr::Tuple(t) => match t.items.len() {
            1 => format!("({},)", items(&t.items, found)),
            _ => format!("({})", items(&t.items, found)),
        },
        Expr::Map(m) => {
            let pairs: Vec<String> = m
                .keys
                .iter()
                .zip(&m.values)
                .map(|(k, v)| format!("{}: {}", print(k, found), print(v, found)))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }
    }
}

fn ordering(left: &str, op: &str, right: &str, found: &mut bool) -> String {
    *found = true;
    format!("{FUNCTION}({left}, \"{op}\", {right})")
}

fn items(items: &[Expr<'_>], found: &mut bool) -> String {
    items
        .iter()
        .map(|i| print(i, found))
        .collect::<Vec<_>>()
        .join(", ")
}

fn call_args(args: &[CallArg<'_>], found: &mut bool) -> String {
    args.iter()
        .map(|a| match a {
            CallArg::Pos(e) => print(e, found),
            CallArg::Kwarg(name, e) => format!("{name}={}", print(e, found)),
            CallArg::PosSplat(e) => format!("*{}", print(e, found)),
            CallArg::KwargSplat(e) => format!("**{}", print(e, found)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A constant as expression source.
fn constant(v: &Mj) -> String {
    match v.kind() {
        ValueKind::None | ValueKind::Undefined => "none".into(),
        ValueKind::Bool => if v.is_true() { "true" } else { "false" }.into(),
        ValueKind::String => {
            serde_json::to_string(v.as_str().unwrap_or_default()).unwrap_or_default()
        }
        ValueKind::Seq => {
            let items: Vec<String> = v
                .try_iter()
                .map(|it| it.map(|x| constant(&x)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let pairs: Vec<String> = v
                .try_iter()
                .map(|keys| {
                    keys.map(|k| {
                        let value = v.get_item(&k).unwrap_or_default();
                        format!("{}: {}", constant(&k), constant(&value))
                    })
                    .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", pairs.join(", "))
        }
        _ => {
            // Numbers: keep a float a float (`1.0`, not `1`).
            let text = v.to_string();
            if v.as_i64().is_none() && !text.contains(['.', 'e', 'E', 'i', 'n']) {
                format!("{text}.0")
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> minijinja::Environment<'static> {
        let mut env = minijinja::Environment::new();
        env.add_function(FUNCTION, compare);
        env
    }

    fn eval(expr: &str, ctx: serde_json::Value) -> Result<serde_json::Value, String> {
        let env = env();
        let source = strict(expr).unwrap_or_else(|| expr.to_string());
        env.compile_expression(&source)
            .and_then(|c| c.eval(minijinja::Value::from(minijinja::value::Serde(&ctx))))
            .map(|v| serde_json::to_value(v).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn same_types_compare_as_before() {
        let ctx = serde_json::json!({"n": 5, "f": 2.5, "s": "b", "l": [1, 2]});
        for (expr, want) in [
            ("n > 3", true),
            ("n >= 5 and n < 6", true),
            ("f < n", true),
            ("s > 'a'", true),
            ("1 < n < 10", true),
            ("1 < n < 4", false),
            ("(n + 1) * 2 > 11", true),
            ("not (n > 1)", false),
            ("l | length > 1", true),
            ("[1, 2] < [1, 3]", true),
            ("n > 3 if s == 'b' else false", true),
            ("n == '5'", false),
        ] {
            assert_eq!(
                eval(expr, ctx.clone()),
                Ok(serde_json::json!(want)),
                "{expr}"
            );
        }
        assert_eq!(
            eval("{'a': n > 1}['a']", ctx.clone()),
            Ok(serde_json::json!(true))
        );
        assert_eq!(
            eval("'x\"y' ~ (n > 1) | string", ctx),
            Ok(serde_json::json!("x\"yTrue"))
        );
    }

    #[test]
    fn different_types_are_an_error_naming_both() {
        let ctx = serde_json::json!({"s": "5", "t": "abc", "l": [1]});
        for (expr, types) in [
            ("s > 10", "string \"5\" with number 10"),
            ("t > 10", "string \"abc\" with number 10"),
            ("l > 10", "list [1] with number 10"),
            ("10 < s", "number 10 with string \"5\""),
        ] {
            let err = eval(expr, ctx.clone()).unwrap_err();
            assert!(err.contains(types), "{expr}: {err}");
        }
        assert!(strict("a == b").is_none());
        assert!(strict("a | default('<none>')").is_none());
    }
}
