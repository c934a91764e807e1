//! Workflow JSON through the parser and the whole validator (strict keys,
//! inputs, expressions, params, schedules): never a panic, whatever the bytes.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

fn engine() -> &'static fuse::Engine {
    static ENGINE: OnceLock<fuse::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        fuse::Engine::new(
            fuse::nodes::Registry::builtin(),
            Arc::new(fuse::engine::NullObserver),
            1,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = engine().load_str(text, None) {
        let _ = plan.check_input(serde_json::json!({"a": "1"}), fuse::workflow::params::Check::Strict);
    }
});
