//! Arbitrary bytes as a Feather v2 file given to `shmarrow import`: the IPC file path, seeded with
//! lz4 and zstd compressed files so the fuzzer explores decompression and its bounds.
//! Errors are fine; panics outside the guard, crashes, hangs, unbounded allocations and
//! leftover temp files are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::import_file(data));
