//! Arbitrary bytes in a channel segment: subscribing, becoming the producer and receiving must
//! return errors (or batches) for anything, never panic or read out of bounds.
//!
//! The first byte picks what the input is (a quarter of inputs go to each slot mode):
//! - header mode (`b0 & 6 != 6`): the whole file; an odd `b0` gets a valid magic and version
//!   patched in, so the fuzzer explores past them (`tests/channel.rs` replays these);
//! - slot mode (`b0 & 6 == 6`): a valid channel (lossy if `b1` is odd) that a consumer joined,
//!   whose slot 0 is then filled from the input and published (`write_seq = 1`, closed): with
//!   `b0 & 8 == 0` the raw slot (`len` from bytes 2..10, the messages after them); otherwise a
//!   valid slot holding a real batch of many types, patched by (offset u16, byte) triples.
#![no_main]

use std::os::unix::fs::FileExt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow_array::builder::{ListBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, StructArray,
};
use arrow_schema::{DataType, Field};
use libfuzzer_sys::fuzz_target;
use shmarrow::{ChannelOptions, SegmentDir};

#[path = "common.rs"]
mod common;

const SLOT_SIZE: usize = 16 << 10;
/// `write_seq` and `closed` in the control header (schemas/CHANNEL.md).
const WRITE_SEQ: u64 = 64;
const CLOSED: u64 = 76;

/// A batch of every kind of buffer a slot can carry: plain, variable-length, dictionary,
/// list and struct columns, with nulls.
fn rich_batch() -> RecordBatch {
    let mut dict = StringDictionaryBuilder::<Int32Type>::new();
    let mut list = ListBuilder::new(arrow_array::builder::Int32Builder::new());
    for i in 0..10 {
        dict.append_value(["a", "bb", "ccc"][i % 3]);
        list.values().append_slice(&[i as i32; 3][..i % 3]);
        list.append(i % 4 != 0);
    }
    let point = StructArray::from(vec![
        (
            Arc::new(Field::new("x", DataType::Float64, true)),
            Arc::new(Float64Array::from_iter((0..10).map(|i| Some(i as f64 / 3.0)))) as ArrayRef,
        ),
        (
            Arc::new(Field::new("ok", DataType::Boolean, true)),
            Arc::new(BooleanArray::from_iter((0..10).map(|i| (i % 3 != 0).then_some(i % 2 == 0)))),
        ),
    ]);
    RecordBatch::try_from_iter([
        ("n", Arc::new(Int64Array::from_iter(0..10)) as ArrayRef),
        (
            "s",
            Arc::new(StringArray::from_iter((0..10).map(|i| (i % 4 != 1).then(|| format!("s{i}"))))),
        ),
        ("tag", Arc::new(dict.finish())),
        ("l", Arc::new(list.finish())),
        ("p", Arc::new(point)),
    ])
    .expect("valid batch")
}

struct Template {
    /// The bytes of a fresh channel (no producer, no consumer), plain and lossy.
    files: [Vec<u8>; 2],
    slots_offset: u64,
    /// Slot 0 after sending `rich_batch()`: header (seq 0, len) and messages.
    valid_slot: Vec<u8>,
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = SegmentDir::new(common::dir());
        let batch = rich_batch();
        let make = |name: &str, lossy: bool| {
            let options = ChannelOptions::default()
                .slots(2)
                .slot_size(SLOT_SIZE as u64)
                .lossy(lossy);
            dir.create_channel(name, &batch.schema(), &options)
                .expect("template channel");
            std::fs::read(common::dir().join(name)).expect("read template")
        };
        let files = [make("template", false), make("template-lossy", true)];
        let slots_offset = u64::from_le_bytes(files[0][56..64].try_into().expect("8 bytes"));
        dir.producer("template")
            .expect("producer")
            .send(&batch)
            .expect("send");
        let sent = std::fs::read(common::dir().join("template")).expect("read template");
        let at = slots_offset as usize;
        Template {
            files,
            slots_offset,
            valid_slot: sent[at..at + SLOT_SIZE].to_vec(),
        }
    })
}

/// Fill slot 0 of a joined channel from `data` and receive from it.
fn slots(data: &[u8]) {
    let t = template();
    let lossy = data.get(1).is_some_and(|b| b & 1 == 1);
    let dir = common::write("chan", &t.files[usize::from(lossy)]);
    let Ok(consumer) = dir.subscribe("chan") else {
        panic!("the template channel must accept a consumer");
    };
    let mut slot = if data[0] & 8 == 0 {
        let mut slot = vec![0u8; 16];
        let len = data.get(2..10).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8")));
        slot[8..16].copy_from_slice(&len.to_le_bytes());
        slot.resize(64, 0);
        slot.extend_from_slice(data.get(10..).unwrap_or_default());
        slot
    } else {
        let mut slot = t.valid_slot.clone();
        for patch in data.get(2..).unwrap_or_default().chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % slot.len();
            slot[at] = patch[2];
        }
        slot
    };
    slot.truncate(SLOT_SIZE);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(common::dir().join("chan"))
        .expect("open");
    file.write_all_at(&slot, t.slots_offset).expect("write slot");
    file.write_all_at(&1u64.to_le_bytes(), WRITE_SEQ).expect("write_seq");
    file.write_all_at(&1u32.to_le_bytes(), CLOSED).expect("closed");
    let mut consumer = consumer;
    consumer.wait_policy().timeout = Some(Duration::from_millis(1));
    if let Ok(Some(received)) = consumer.recv() {
        // Touch every value, so a wrong offset is read, not just built.
        for column in received.batch.columns() {
            let _ = format!("{column:?}");
        }
    }
    let _ = consumer.recv();
}

/// The whole file from `data` (magic and version patched in for odd first bytes).
fn header(data: &[u8]) {
    let mut bytes = data.to_vec();
    if bytes.len() >= 8 && bytes[0] & 1 == 1 {
        bytes[..8].copy_from_slice(shmarrow::CHANNEL_MAGIC);
        if bytes.len() >= 12 {
            bytes[8..12].copy_from_slice(&shmarrow::CHANNEL_VERSION.to_le_bytes());
        }
    }
    let dir = common::write("chan", &bytes);
    if let Ok(mut consumer) = dir.subscribe("chan") {
        consumer.wait_policy().timeout = Some(Duration::from_millis(1));
        let _ = consumer.recv();
    }
    let _ = dir.producer("chan");
    let _ = dir.channel_info("chan");
}

fuzz_target!(|data: &[u8]| {
    match data.first() {
        Some(b) if b & 6 == 6 => slots(data),
        _ => header(data),
    }
});
