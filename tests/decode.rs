//! Foreign bytes decoded safely: big-endian files converted, lying buffer offsets and
//! decompression bombs refused by attach and by every `import` path, nothing left behind.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch};
use arrow_ipc::writer::{IpcDataGenerator, IpcWriteOptions, StreamWriter};
use arrow_schema::{DataType, Field, Schema};
use common::{TempDir, assert_same_batches, fails_clean, ok};
use shmarrow::{AttachOptions, Error, attach_path};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The stream inside an IPC file: the bytes between the leading magic (and its padding, 8 or
/// 64 bytes) and the footer (the file format is magic, a stream, then the footer).
fn stream_of_file(file: &[u8]) -> Vec<u8> {
    let n = file.len();
    let footer_len = i32::from_le_bytes(file[n - 10..n - 6].try_into().unwrap()) as usize;
    let start = 8 + file[8..].iter().position(|&b| b != 0).unwrap();
    file[start..n - 10 - footer_len].to_vec()
}

#[test]
fn a_big_endian_file_attaches_equal_to_its_little_endian_twin() {
    let le = attach_path(
        "le",
        &data("littleendian_primitive.arrow_file"),
        &AttachOptions::default(),
    )
    .unwrap();
    let be = attach_path(
        "be",
        &data("bigendian_primitive.arrow_file"),
        &AttachOptions::default(),
    )
    .unwrap();
    assert_eq!(be.num_rows(), 37);
    assert_same_batches(be.batches(), le.batches());
    // The converted columns are private copies, named as such and refused in strict mode.
    assert!(be.copied_columns().iter().any(|c| c == "int32_nullable"));
    match attach_path(
        "be",
        &data("bigendian_primitive.arrow_file"),
        &AttachOptions::default().strict(true),
    ) {
        Err(Error::NotZeroCopy { columns, .. }) => assert!(!columns.is_empty()),
        other => panic!("strict attach of a big-endian file: {other:?}"),
    }
}

#[test]
fn import_of_a_big_endian_file_or_stream_writes_a_native_segment() {
    let seg = TempDir::new("decode-be");
    let input = TempDir::new("decode-be-in");
    let le = attach_path(
        "le",
        &data("littleendian_primitive.arrow_file"),
        &AttachOptions::default(),
    )
    .unwrap();
    let be_file = data("bigendian_primitive.arrow_file");
    let be_stream = input.0.join("be.arrows");
    std::fs::write(
        &be_stream,
        stream_of_file(&std::fs::read(&be_file).unwrap()),
    )
    .unwrap();
    ok(&seg, &["import", "f", be_file.to_str().unwrap()]);
    ok(&seg, &["import", "s", be_stream.to_str().unwrap()]);
    for name in ["f", "s"] {
        // Strict: written natively by shmarrow, nothing left to convert or copy.
        let got = seg
            .dir()
            .attach_with(name, &AttachOptions::default().strict(true))
            .unwrap();
        let got: Vec<RecordBatch> = got.batches().to_vec();
        assert_same_batches(&got, le.batches());
    }
    // `inspect` of the big-endian file placed as a segment says its columns are copies.
    std::fs::copy(&be_file, seg.0.join("be")).unwrap();
    let out = ok(&seg, &["--json", "inspect", "be"]);
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(out.to_string().contains("int32_nullable"), "{out}");
    std::fs::remove_file(seg.0.join("be")).unwrap();
}

fn int64_batch(rows: i64) -> RecordBatch {
    RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from_iter_values(0..rows)) as _)])
        .unwrap()
}

/// Move the first non-empty buffer of the record batch message in `bytes` (an IPC stream or
/// file) 4 GiB past its body.
fn lie_about_a_buffer_offset(bytes: &mut [u8], batch: &RecordBatch) {
    let (_, encoded) = IpcDataGenerator::default()
        .encode(
            batch,
            &mut arrow_ipc::writer::DictionaryTracker::new(false),
            &IpcWriteOptions::default(),
            &mut Default::default(),
        )
        .unwrap();
    let meta = &encoded.ipc_message;
    let at = bytes
        .windows(meta.len())
        .position(|w| w == meta.as_slice())
        .expect("the batch message, as encoded, in the file");
    common::lie_about_a_buffer_offset(&mut bytes[at..at + meta.len()]);
}

#[test]
fn a_buffer_offset_past_the_body_is_refused_by_import_and_attach() {
    let seg = TempDir::new("decode-offset");
    let input = TempDir::new("decode-offset-in");
    let batch = int64_batch(6);
    let file = input.0.join("lying.arrow");
    common::write_ipc_file(&file, &batch.schema(), std::slice::from_ref(&batch));
    let mut bytes = std::fs::read(&file).unwrap();
    lie_about_a_buffer_offset(&mut bytes, &batch);
    std::fs::write(&file, &bytes).unwrap();
    let stream = input.0.join("lying.arrows");
    std::fs::write(&stream, stream_of_file(&bytes)).unwrap();

    // Stock arrow-ipc panics on this stream (the reported crash), shmarrow refuses it.
    let panicked = std::panic::catch_unwind(|| {
        arrow_ipc::reader::StreamReader::try_new(std::fs::File::open(&stream).unwrap(), None)
            .map(|r| r.collect::<Vec<_>>())
    });
    assert!(
        panicked.is_err(),
        "arrow-ipc no longer panics here: {panicked:?}"
    );

    for (path, format) in [(&file, "ipc"), (&stream, "stream")] {
        fails_clean(
            &seg,
            &["import", "x", path.to_str().unwrap(), "--format", format],
            "outside the",
        );
    }
    match attach_path("lying", &file, &AttachOptions::default()) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("outside the"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// A zstd-compressed IPC file of one int64 column, `rows` rows, whose values buffer declares
/// `declared` decompressed bytes and holds `zeros` zero bytes compressed.
fn zstd_file(rows: i64, declared: i64, zeros: u64) -> Vec<u8> {
    use arrow_ipc::{
        Block, BodyCompressionBuilder, BodyCompressionMethod, CompressionType, FieldNode,
        FooterBuilder, MessageBuilder, MessageHeader, MetadataVersion, RecordBatchBuilder,
    };
    use flatbuffers::FlatBufferBuilder;
    use std::io::Write;

    let schema = Schema::new(vec![Field::new("x", DataType::Int64, false)]);
    let mut values = declared.to_le_bytes().to_vec();
    let mut encoder = zstd::stream::Encoder::new(&mut values, 1).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        encoder.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    encoder.finish().unwrap();
    let buffer_len = values.len() as i64;
    while !values.len().is_multiple_of(8) {
        values.push(0);
    }

    let mut fbb = FlatBufferBuilder::new();
    let nodes = fbb.create_vector(&[FieldNode::new(rows, 0)]);
    let buffers = fbb.create_vector(&[
        arrow_ipc::Buffer::new(0, 0),
        arrow_ipc::Buffer::new(0, buffer_len),
    ]);
    let mut compression = BodyCompressionBuilder::new(&mut fbb);
    compression.add_codec(CompressionType::ZSTD);
    compression.add_method(BodyCompressionMethod::BUFFER);
    let compression = compression.finish();
    let mut batch = RecordBatchBuilder::new(&mut fbb);
    batch.add_length(rows);
    batch.add_nodes(nodes);
    batch.add_buffers(buffers);
    batch.add_compression(compression);
    let batch = batch.finish();
    let mut message = MessageBuilder::new(&mut fbb);
    message.add_version(MetadataVersion::V5);
    message.add_header_type(MessageHeader::RecordBatch);
    message.add_header(batch.as_union_value());
    message.add_bodyLength(values.len() as i64);
    let message = message.finish();
    fbb.finish(message, None);
    let mut meta = fbb.finished_data().to_vec();
    while !meta.len().is_multiple_of(8) {
        meta.push(0);
    }

    // magic, the schema message (from a real stream), the batch, then the footer.
    let mut stream = Vec::new();
    StreamWriter::try_new(&mut stream, &schema)
        .unwrap()
        .finish()
        .unwrap();
    let schema_message = &stream[..stream.len() - 8]; // without the end-of-stream marker
    let mut file = b"ARROW1\0\0".to_vec();
    file.extend_from_slice(schema_message);
    let block_offset = file.len() as i64;
    file.extend_from_slice(&[0xff; 4]);
    file.extend_from_slice(&(meta.len() as i32).to_le_bytes());
    file.extend_from_slice(&meta);
    file.extend_from_slice(&values);
    file.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

    let mut fbb = FlatBufferBuilder::new();
    let fb_schema = arrow_ipc::convert::schema_to_fb_offset(&mut fbb, &schema);
    let blocks = fbb.create_vector(&[Block::new(
        block_offset,
        meta.len() as i32 + 8,
        values.len() as i64,
    )]);
    let mut footer = FooterBuilder::new(&mut fbb);
    footer.add_version(MetadataVersion::V5);
    footer.add_schema(fb_schema);
    footer.add_recordBatches(blocks);
    let footer = footer.finish();
    fbb.finish(footer, None);
    let footer = fbb.finished_data();
    file.extend_from_slice(footer);
    file.extend_from_slice(&(footer.len() as i32).to_le_bytes());
    file.extend_from_slice(b"ARROW1");
    file
}

#[test]
fn a_crafted_zstd_file_is_read_and_the_helper_is_honest() {
    // The helper's file, told the truth, is an ordinary compressed file.
    let input = TempDir::new("decode-zstd-ok");
    let path = input.0.join("ok.arrow");
    std::fs::write(&path, zstd_file(4, 32, 32)).unwrap();
    let segment = attach_path("ok", &path, &AttachOptions::default()).unwrap();
    let column = segment.batches()[0].column(0).clone();
    assert_eq!(column.as_ref(), &Int64Array::from(vec![0i64; 4]));
    assert_eq!(segment.copied_columns(), ["x"]);
}

#[test]
fn a_decompression_bomb_is_refused_before_it_is_allocated() {
    let seg = TempDir::new("decode-bomb");
    let input = TempDir::new("decode-bomb-in");
    // 2 GiB of zeros, truthfully declared, in a file under 100 kB: over the cap.
    let bomb = zstd_file(1 << 28, 1 << 31, 1 << 31);
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    // A length that exceeds what 4 rows of int64 need (32 bytes).
    let liar = zstd_file(4, 1 << 40, 32);
    // A declared length smaller than what the data really decompresses to.
    let short = zstd_file(4, 32, 1 << 30);
    let cases = [
        ("bomb", bomb, "limit is 1073741824"),
        ("liar", liar, "rows and type allow 32"),
        ("short", short, "Destination buffer is too small"),
    ];
    for (name, bytes, needle) in cases {
        let file = input.0.join(format!("{name}.arrow"));
        std::fs::write(&file, &bytes).unwrap();
        let stream = input.0.join(format!("{name}.arrows"));
        std::fs::write(&stream, stream_of_file(&bytes)).unwrap();
        let err = attach_path(name, &file, &AttachOptions::default()).unwrap_err();
        assert!(err.to_string().contains(needle), "{name}: {err}");
        for path in [&file, &stream] {
            fails_clean(&seg, &["import", "x", path.to_str().unwrap()], needle);
        }
    }
}
