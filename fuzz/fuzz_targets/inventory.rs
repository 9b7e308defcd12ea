//! Any bytes as inventory.yaml: an error with a place, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gantry::loader::fuzz_inventory(data);
});
