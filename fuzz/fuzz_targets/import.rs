//! Arbitrary bytes as `import` input: an Arrow IPC file (mapped, as `shmarrow import` does), an
//! IPC stream or CSV (streamed into a SegmentWriter). Errors are fine; panics, hangs and
//! out-of-bounds reads are not, and a failed import leaves no file behind.
#![no_main]

use std::io::Cursor;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shmarrow::{AttachOptions, CreateOptions, SegmentDir};

#[path = "common.rs"]
mod common;

fn stream_into(dir: &SegmentDir, schema: &arrow_schema::Schema, batches: impl Iterator<Item = Result<arrow_array::RecordBatch, arrow_schema::ArrowError>>) {
    let Ok(mut writer) = dir.writer("out", schema, &CreateOptions::default()) else { return };
    for batch in batches.take(64) {
        match batch {
            Ok(b) => {
                if writer.write(&b).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let _ = writer.finish();
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let dir = common::write("in", body);
    match kind % 3 {
        0 => {
            if let Ok(input) = shmarrow::attach_path("in", &common::dir().join("in"), &AttachOptions::default()) {
                let _ = dir.create("out", &input.schema(), input.batches(), &CreateOptions::default());
            }
        }
        1 => {
            if let Ok(reader) = arrow_ipc::reader::StreamReader::try_new(Cursor::new(body), None) {
                let schema = reader.schema();
                stream_into(&dir, &schema, reader);
            }
        }
        _ => {
            let format = arrow_csv::reader::Format::default().with_header(true);
            if let Ok((schema, _)) = format.infer_schema(Cursor::new(body), Some(100)) {
                let schema = Arc::new(schema);
                if let Ok(reader) = arrow_csv::ReaderBuilder::new(schema.clone()).with_header(true).with_batch_size(64).build(Cursor::new(body)) {
                    stream_into(&dir, &schema, reader);
                }
            }
        }
    }
    // Whatever happened, no temp file may remain.
    let listing = dir.list().expect("list");
    assert!(listing.temps.is_empty(), "a failed import left {:?}", listing.temps);
    let _ = dir.remove("out");
});
