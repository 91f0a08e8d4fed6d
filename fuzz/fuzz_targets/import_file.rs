//! Arbitrary bytes as an Arrow IPC file given to `shmarrow import` (seeded with the type matrix).
//! Errors are fine; panics outside the guard, crashes, hangs, unbounded allocations and
//! leftover temp files are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::import_file(data));
