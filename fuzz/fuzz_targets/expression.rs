//! Expressions: static checks, the strict-comparison rewrite and rendering
//! against a small scope. Errors are fine; panics and hangs are not.
#![no_main]

use std::sync::{Arc, OnceLock};

use fuse::engine::expr::{Expressions, NodesView, RunScope, Scope};
use libfuzzer_sys::fuzz_target;

fn exprs() -> &'static Expressions {
    static EXPRS: OnceLock<Expressions> = OnceLock::new();
    EXPRS.get_or_init(Expressions::new)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let e = exprs();
    let _ = e.check(text);
    let _ = e.unknown_functions(text);
    if let Some(inner) = fuse::engine::expr::single_expression(text) {
        let _ = fuse::engine::compare::strict(inner);
    }
    let trigger = serde_json::json!({"a": 1, "s": "x", "l": [1, 2], "o": {"k": true}});
    let run = RunScope::new(
        &trigger,
        &serde_json::Map::new(),
        serde_json::json!({"id": "r"}),
        Arc::new(NodesView::default()),
        Arc::new(fuse::engine::creds::RunCreds::new(None)),
    );
    let input = serde_json::json!({"x": 2});
    let base = OnceLock::new();
    let scope = Scope::node(&run, &input, Some((&input, 0)), &base);
    let _ = e.render_str(text, &scope);
});
