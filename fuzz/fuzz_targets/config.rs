//! fuse.toml: parsed with line/column errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = fuse::config::Config::parse(std::path::Path::new("fuse.toml"), text);
});
