//! What the fuzz targets share: a private segment directory per fuzz process, and each import
//! path of `shmarrow import` (IPC file, IPC stream, Parquet, CSV) and Flight `do_put`, driven
//! the way the CLI drives it: shmarrow's checked decoder, every step under `shmarrow::guarded`,
//! batches streamed into a `SegmentWriter` that must leave no temp file when anything fails.
#![allow(dead_code)] // each target uses a different subset

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_schema::Schema;
use shmarrow::ipc::{Decoded, Decoder, StreamReader};
use shmarrow::{CreateOptions, Error, IpcFile, SegmentDir, guarded};

/// This process's segment directory: under `$SHMARROW_FUZZ_DIR` (which `make fuzz` creates
/// and removes around each target), else under /dev/shm.
pub fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("SHMARROW_FUZZ_DIR").unwrap_or_else(|| "/dev/shm".into());
        let d = PathBuf::from(base).join(format!("shmarrow-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("fuzz dir");
        d
    })
}

pub fn write(name: &str, bytes: &[u8]) -> SegmentDir {
    std::fs::write(dir().join(name), bytes).expect("write input");
    SegmentDir::new(dir())
}

/// Stream `batches` into segment `out` (at most 64 batches), then check nothing was left
/// behind by a failure and remove the segment.
fn stream_into<E>(
    schema: &Schema,
    mut batches: impl Iterator<Item = Result<RecordBatch, E>>,
) {
    let dir = SegmentDir::new(dir());
    if let Ok(mut writer) = dir.writer("out", schema, &CreateOptions::default()) {
        for _ in 0..64 {
            match guarded("in", || Ok::<_, Error>(batches.next())) {
                Ok(Some(Ok(batch))) if writer.write(&batch).is_ok() => {}
                Ok(None) => {
                    let _ = writer.finish();
                    break;
                }
                _ => break,
            }
        }
    }
    let listing = dir.list().expect("list");
    assert!(listing.temps.is_empty(), "a failed import left {:?}", listing.temps);
    let _ = dir.remove("out");
}

/// `import` of an IPC file or Feather v2 file (mapped, decoded batch by batch).
pub fn import_file(bytes: &[u8]) {
    write("in", bytes);
    if let Ok(file) = IpcFile::open("in", &dir().join("in")) {
        let schema = file.info().schema.clone();
        stream_into(&schema, file);
    }
}

/// `import` of an IPC stream.
pub fn import_stream(bytes: &[u8]) {
    if let Ok(reader) = StreamReader::try_new("in", Cursor::new(bytes)) {
        let schema = reader.schema();
        stream_into(&schema, reader);
    }
}

/// `import` of a Parquet file.
pub fn import_parquet(bytes: &[u8]) {
    let bytes = bytes::Bytes::copy_from_slice(bytes);
    let reader = guarded("in", || {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.with_batch_size(1024).build())
            .map_err(|e| Error::Unsupported {
                name: "in".into(),
                what: e.to_string(),
            })
    });
    if let Ok(reader) = reader {
        let schema = arrow_array::RecordBatchReader::schema(&reader);
        stream_into(&schema, reader);
    }
}

/// `import` of a CSV file (schema inferred from 100 rows, as the CLI's default).
pub fn import_csv(bytes: &[u8]) {
    let format = arrow_csv::reader::Format::default().with_header(true);
    let inferred = guarded("in", || {
        format
            .infer_schema(Cursor::new(bytes), Some(100))
            .map_err(|e| Error::Unsupported {
                name: "in".into(),
                what: e.to_string(),
            })
    });
    let Ok((schema, _)) = inferred else { return };
    let schema = Arc::new(schema);
    if let Ok(reader) = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_batch_size(64)
        .build(Cursor::new(bytes))
    {
        stream_into(&schema, reader);
    }
}

/// Flight `do_put`: the upload's messages (`FlightData` header and body, framed here as
/// `u32 header length, header, u32 body length, body`, repeated) through the decoder `serve`
/// uses, batches into a segment.
pub fn flight_put(mut bytes: &[u8]) {
    let mut decoder = Decoder::new("upload");
    let mut batches = Vec::new();
    let mut schema = None;
    while let (Some(header), Some(body)) = (take(&mut bytes), take(&mut bytes)) {
        match decoder.decode(header, &Buffer::from(body)) {
            Ok(Decoded::Schema(s)) => schema = Some(s),
            Ok(Decoded::Batch(batch)) => batches.push(Ok::<_, Error>(batch)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if let Some(schema) = schema {
        stream_into(&schema, batches.into_iter());
    }
}

/// The next `u32`-length-prefixed piece of `bytes`.
fn take<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let piece = bytes.get(4..4 + len.min(bytes.len()))?;
    *bytes = &bytes[4 + piece.len()..];
    Some(piece)
}
