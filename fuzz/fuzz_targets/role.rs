//! Any bytes as a role's tasks.yaml (first half) and defaults.yaml (second
//! half): an error with a place, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gantry::loader::fuzz_role(data);
});
