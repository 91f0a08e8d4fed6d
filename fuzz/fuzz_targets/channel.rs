//! Arbitrary bytes as a channel segment: subscribing and becoming the producer must return
//! errors for anything that is not a consistent channel, never panic or read out of bounds.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // Start from a valid header most of the time, so the fuzzer explores past the magic.
    let mut bytes = data.to_vec();
    if bytes.len() >= 8 && bytes[0] & 1 == 1 {
        bytes[..8].copy_from_slice(shmarrow::CHANNEL_MAGIC);
        if bytes.len() >= 12 {
            bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        }
    }
    let dir = common::write("chan", &bytes);
    if let Ok(consumer) = dir.subscribe("chan") {
        let mut consumer = consumer.timeout(Some(Duration::from_millis(1)));
        let _ = consumer.recv();
    }
    let _ = dir.producer("chan");
});
