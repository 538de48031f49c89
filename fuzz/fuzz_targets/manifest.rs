//! Any bytes as `manifest.json`: the parser answers with a manifest or with
//! located problems, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match warden_package::manifest::parse(data, &Default::default()) {
        Ok(m) => {
            // What passed must satisfy the invariants the rest relies on.
            // An API plugin (`"type": "api"`) has no code, so no entrypoint.
            assert!(!m.code.is_empty() && (m.kind == "api" || !m.entrypoint.is_empty()));
        }
        Err(problems) => assert!(!problems.is_empty()),
    }
});
