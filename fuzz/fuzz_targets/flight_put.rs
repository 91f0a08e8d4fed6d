//! Arbitrary bytes as the messages of a Flight `do_put` upload, decoded as `shmarrow serve` does.
//! Errors are fine; panics outside the guard, crashes, hangs, unbounded allocations and
//! leftover temp files are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::flight_put(data));
