//! What the API does with a request body: a deploy (name → id, parse,
//! validate) and a run input checked against declared params.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

struct Fixture {
    engine: fuse::Engine,
    plan: fuse::Plan,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let engine = fuse::Engine::new(
            fuse::nodes::Registry::builtin(),
            Arc::new(fuse::engine::NullObserver),
            1,
        );
        let plan = engine
            .load_str(
                r#"{"name": "p", "params": [
                    {"name": "n", "type": "integer", "required": true},
                    {"name": "s", "type": "string", "default": "x"},
                    {"name": "b", "type": "boolean"}, {"name": "f", "type": "number"},
                    {"name": "l", "type": "array"}, {"name": "o", "type": "object"}],
                   "nodes": [{"id": "a", "type": "log", "data": {"inputs": {"message": "{{ trigger.s }}"}}}],
                   "edges": []}"#,
                None,
            )
            .expect("the fixture workflow is valid");
        Fixture { engine, plan }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let f = fixture();
    if let Some(name) = body.get("name").and_then(serde_json::Value::as_str) {
        let _ = fuse::workflow::workflow_id(name);
    }
    let _ = f.engine.load_str(&body.to_string(), None);
    for check in [fuse::workflow::params::Check::Strict, fuse::workflow::params::Check::Defaults] {
        let _ = f.plan.check_input(body.clone(), check);
    }
});
