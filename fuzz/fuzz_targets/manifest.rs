//! Package manifests: parsed and checked as discovery does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = fuse::packages::manifest::Manifest::parse(text) {
        let _ = manifest.check(&manifest.name.clone());
    }
});
