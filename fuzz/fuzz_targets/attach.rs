//! Arbitrary bytes as a segment: attach (strict and not), info, reduce and inspect-style walks
//! must return errors, never panic or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmarrow::AttachOptions;
use shmarrow::reduce::ReduceOptions;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let dir = common::write("seg", data);
    let _ = dir.info("seg");
    let _ = dir.attach_with("seg", &AttachOptions::default().strict(true));
    if let Ok(segment) = dir.attach("seg") {
        let _ = segment.columns();
        let _ = segment.reduce(&[], &ReduceOptions::default().threads(1));
        for batch in segment.batches() {
            for column in batch.columns() {
                let _ = segment.contains(&column.to_data());
            }
        }
    }
});
