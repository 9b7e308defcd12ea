//! Any bytes as .gantry/journal.jsonl: a state (or none), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gantry::journal::read_state(data);
});
