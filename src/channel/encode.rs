//! Encoding a batch into a slot: the encapsulated IPC messages of `schemas/CHANNEL.md`, written
//! straight into the slot through a bounds-checked raw-pointer sink.
//!
//! A batch whose columns are all fixed-width primitives (integers, floats, decimals, dates,
//! times, timestamps, durations, intervals) takes a direct path: its record batch message is
//! laid out here, byte for byte as arrow-ipc's stream writer lays it out (a test compares
//! them), and its flatbuffer metadata is kept and reused while the row count and the null
//! counts repeat, since the buffers' lengths and offsets then repeat too. Only the buffers'
//! bytes are copied, once, into the slot. Every other batch goes through arrow-ipc's
//! `StreamWriter` (with dictionaries, a fresh one per slot, so every slot is self-contained).

use std::io::Write;

use arrow_array::{Array, RecordBatch, downcast_primitive_array};
use arrow_buffer::Buffer;
use arrow_ipc::writer::StreamWriter;
use arrow_ipc::{MessageHeader, MetadataVersion};
use arrow_schema::{ArrowError, DataType, SchemaRef};

use crate::ipc::CONTINUATION;
use crate::publish::{ALIGNMENT, ipc_options};

/// Every buffer of a slot's messages starts at a multiple of this (as `ipc_options` says).
const ALIGN: usize = ALIGNMENT;
const PADDING: [u8; ALIGN] = [0; ALIGN];

/// Zero bytes after `len` up to the next multiple of [`ALIGN`].
fn padding(len: usize) -> usize {
    len.next_multiple_of(ALIGN) - len
}

/// Writes into one slot's message area through a raw pointer; `None`: discard (the schema
/// message the stream writer emits on creation), or count only.
pub(super) struct SlotSink {
    target: Option<(*mut u8, usize)>,
    pos: usize,
    overflow: bool,
}

impl SlotSink {
    /// A sink into the `cap` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr..ptr + cap` must stay valid for writes, and read by no one else, while the sink
    /// lives: a slot's message area in the producer's live mapping, which no consumer reads
    /// while the producer writes it.
    pub(super) unsafe fn new(ptr: *mut u8, cap: usize) -> Self {
        Self {
            target: Some((ptr, cap)),
            pos: 0,
            overflow: false,
        }
    }

    fn discard() -> Self {
        Self {
            target: None,
            pos: 0,
            overflow: false,
        }
    }
}

// SAFETY: the pointer targets the shared mapping, which the owning Producer keeps alive; the
// sink is only used by that Producer (moving it to another thread moves the only user).
unsafe impl Send for SlotSink {}
// SAFETY: a shared `&SlotSink` allows no access at all (writing needs `&mut`), so sharing
// references between threads cannot race.
unsafe impl Sync for SlotSink {}

impl Write for SlotSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some((ptr, cap)) = self.target {
            if self.pos + buf.len() > cap {
                self.overflow = true;
                return Err(std::io::Error::other("slot full"));
            }
            // SAFETY: `pos + len <= cap` (checked above), and `ptr..ptr + cap` is writable and
            // read by no one else while the sink lives (the contract of `SlotSink::new`); `buf`
            // is a Rust slice, so it does not overlap the slot's bytes we hold exclusively.
            unsafe { copy_into_slot(buf, ptr.add(self.pos)) };
        }
        self.pos += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies of at least this many bytes into a slot use non-temporal stores (x86-64 with AVX): a
/// buffer this large would push most of the producer's cache out, and the consumer reads it
/// from another core anyway; the stores skip reading each destination line before writing it.
/// (2 MiB is a core's L2 here; the 16 MiB case of `bench/channel.rs` shows the effect.)
const STREAM_AT_LEAST: usize = 2 << 20;

/// Copy `src` to `dst`: with non-temporal stores when it is large (and the CPU has them),
/// fenced, so the bytes are visible before the slot is published.
///
/// # Safety
/// `dst..dst + src.len()` must be valid for writes and not overlap `src`.
unsafe fn copy_into_slot(src: &[u8], dst: *mut u8) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= STREAM_AT_LEAST && std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the caller's contract; AVX was detected just above.
        unsafe { stream_into_slot(src, dst) };
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
}

/// [`copy_into_slot`] with 32-byte non-temporal stores (AVX), 128 bytes per iteration: the
/// widest stores every AVX CPU has (half the instructions of SSE2's 16-byte ones per line).
///
/// # Safety
/// As [`copy_into_slot`], and the CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn stream_into_slot(src: &[u8], dst: *mut u8) {
    use std::arch::x86_64::{__m256i, _mm_sfence, _mm256_loadu_si256, _mm256_stream_si256};
    const LANE: usize = 32;
    const CHUNK: usize = 4 * LANE;
    // Plain copies up to the first 32-aligned destination byte and after the last whole
    // chunk; streaming 32-byte stores in between.
    let head = dst.align_offset(LANE).min(src.len());
    let chunks = (src.len() - head) / CHUNK;
    let tail = head + chunks * CHUNK;
    // SAFETY: `head <= src.len()`: in bounds of both (the caller's contract).
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, head) };
    for i in 0..chunks {
        let at = head + i * CHUNK;
        for k in (0..CHUNK).step_by(LANE) {
            // SAFETY: `at + k + 32 <= tail <= src.len()`, in bounds of both; `dst + at + k` is
            // 32-aligned (`head` aligns it, `at - head` and `k` are multiples of 32), as
            // `_mm256_stream_si256` needs; the load is unaligned. AVX: the caller's contract.
            unsafe {
                let v = _mm256_loadu_si256(src.as_ptr().add(at + k).cast::<__m256i>());
                _mm256_stream_si256(dst.add(at + k).cast::<__m256i>(), v);
            }
        }
    }
    // SAFETY: `tail..src.len()` is in bounds of both.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr().add(tail), dst.add(tail), src.len() - tail)
    };
    // Non-temporal stores are weakly ordered: order them before the stores that publish the
    // slot. `sfence` has no operands; SSE is part of x86-64.
    _mm_sfence();
}

/// Why a batch was not encoded into a slot.
pub(super) enum EncodeError {
    /// It needs this many bytes of messages; nothing or part of it was written.
    TooLarge(usize),
    Arrow(ArrowError),
}

/// The framed metadata (continuation marker, length, flatbuffer, padding) of the last
/// fixed-width batch, with the row and null counts it describes.
struct Framed {
    rows: usize,
    null_counts: Vec<usize>,
    header: Vec<u8>,
}

/// Encodes the batches of one channel into its slots.
pub(super) struct SlotEncoder {
    schema: SchemaRef,
    /// Arrow's writer, for batches the direct path does not take.
    writer: Option<StreamWriter<SlotSink>>,
    has_dictionaries: bool,
    /// Every column of the schema is a fixed-width primitive: try the direct path.
    fixed_width: bool,
    framed: Option<Framed>,
}

impl SlotEncoder {
    pub(super) fn new(schema: SchemaRef) -> Self {
        let has_dictionaries = schema
            .flattened_fields()
            .iter()
            .any(|f| matches!(f.data_type(), DataType::Dictionary(..)));
        let fixed_width = !schema.fields().is_empty()
            && schema
                .fields()
                .iter()
                .all(|f| f.data_type().primitive_width().is_some());
        Self {
            schema,
            writer: None,
            has_dictionaries,
            fixed_width,
            framed: None,
        }
    }

    /// Encode `batch` (of the channel's schema) into `sink`; the bytes written.
    pub(super) fn encode(
        &mut self,
        batch: &RecordBatch,
        sink: SlotSink,
    ) -> Result<usize, EncodeError> {
        if self.fixed_width
            && let Some(columns) = fixed_width_buffers(batch)
        {
            return self.encode_fixed(batch.num_rows(), &columns, sink);
        }
        self.encode_with_arrow(batch, sink)
    }

    /// The direct path: the (reused) framed metadata, then every buffer and its padding.
    fn encode_fixed(
        &mut self,
        rows: usize,
        columns: &[(Option<Buffer>, usize, &Buffer)],
        mut sink: SlotSink,
    ) -> Result<usize, EncodeError> {
        let null_counts = columns.iter().map(|&(_, n, _)| n);
        let reuse = self
            .framed
            .as_ref()
            .is_some_and(|f| f.rows == rows && f.null_counts.iter().copied().eq(null_counts));
        if !reuse {
            self.framed = Some(Framed {
                rows,
                null_counts: columns.iter().map(|&(_, n, _)| n).collect(),
                header: frame_record_batch(rows, columns),
            });
        }
        let header = &self.framed.as_ref().expect("just set").header;
        let body: usize = columns
            .iter()
            .flat_map(|(nulls, _, values)| [nulls.as_ref().map_or(0, Buffer::len), values.len()])
            .map(|len| len + padding(len))
            .sum();
        let needed = header.len() + body;
        if sink.target.is_some_and(|(_, cap)| needed > cap) {
            return Err(EncodeError::TooLarge(needed));
        }
        let io = |e: std::io::Error| EncodeError::Arrow(e.into());
        sink.write_all(header).map_err(io)?;
        for (nulls, _, values) in columns {
            for bytes in [nulls.as_ref().map_or(&[][..], Buffer::as_slice), values] {
                sink.write_all(bytes).map_err(io)?;
                sink.write_all(&PADDING[..padding(bytes.len())])
                    .map_err(io)?;
            }
        }
        Ok(sink.pos)
    }

    /// Arrow's stream writer, whose first message (the schema) goes nowhere.
    fn encode_with_arrow(
        &mut self,
        batch: &RecordBatch,
        sink: SlotSink,
    ) -> Result<usize, EncodeError> {
        // Every slot is self-contained: with dictionaries, a fresh writer re-emits them.
        if self.writer.is_none() || self.has_dictionaries {
            self.writer = Some(
                StreamWriter::try_new_with_options(
                    SlotSink::discard(),
                    &self.schema,
                    ipc_options(),
                )
                .map_err(EncodeError::Arrow)?,
            );
        }
        let writer = self.writer.as_mut().expect("just set");
        *writer.get_mut() = sink;
        match writer.write(batch) {
            Ok(()) => Ok(writer.get_ref().pos),
            Err(_) if writer.get_ref().overflow => {
                // Measure the exact size for the error, then drop the half-used writer.
                self.writer = None;
                let mut counter = StreamWriter::try_new_with_options(
                    SlotSink::discard(),
                    &self.schema,
                    ipc_options(),
                )
                .map_err(EncodeError::Arrow)?;
                let before = counter.get_ref().pos;
                counter.write(batch).map_err(EncodeError::Arrow)?;
                Err(EncodeError::TooLarge(counter.get_ref().pos - before))
            }
            Err(e) => {
                self.writer = None;
                Err(EncodeError::Arrow(e))
            }
        }
    }
}

/// For each column of a batch of fixed-width primitive arrays, what arrow-ipc's writer writes:
/// the validity bitmap (only with nulls; sliced to the array), the null count and the values
/// (sliced to the array). `None` if a column is not such an array.
fn fixed_width_buffers(batch: &RecordBatch) -> Option<Vec<(Option<Buffer>, usize, &Buffer)>> {
    batch
        .columns()
        .iter()
        .map(|column| {
            let values: &Buffer = downcast_primitive_array!(
                column => column.values().inner(),
                _ => return None
            );
            let nulls = column.nulls().filter(|n| n.null_count() > 0);
            Some((
                nulls.map(|n| n.inner().sliced()),
                column.null_count(),
                values,
            ))
        })
        .collect()
}

/// The framed record batch message (continuation marker, length, flatbuffer, padding to 64
/// bytes) for `rows` rows of these columns, as arrow-ipc's writer frames it.
fn frame_record_batch(rows: usize, columns: &[(Option<Buffer>, usize, &Buffer)]) -> Vec<u8> {
    let mut nodes = Vec::with_capacity(columns.len());
    let mut buffers = Vec::with_capacity(2 * columns.len());
    let mut offset = 0usize;
    for (nulls, null_count, values) in columns {
        nodes.push(arrow_ipc::FieldNode::new(rows as i64, *null_count as i64));
        for len in [nulls.as_ref().map_or(0, Buffer::len), values.len()] {
            buffers.push(arrow_ipc::Buffer::new(offset as i64, len as i64));
            offset += len + padding(len);
        }
    }
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let buffers = fbb.create_vector(&buffers);
    let nodes = fbb.create_vector(&nodes);
    let mut batch = arrow_ipc::RecordBatchBuilder::new(&mut fbb);
    batch.add_length(rows as i64);
    batch.add_nodes(nodes);
    batch.add_buffers(buffers);
    let batch = batch.finish();
    let mut message = arrow_ipc::MessageBuilder::new(&mut fbb);
    message.add_version(MetadataVersion::V5);
    message.add_header_type(MessageHeader::RecordBatch);
    message.add_bodyLength(offset as i64);
    message.add_header(batch.as_union_value());
    let message = message.finish();
    fbb.finish(message, None);
    let metadata = fbb.finished_data();
    let padded = (metadata.len() + 8).next_multiple_of(ALIGN) - 8;
    let mut framed = Vec::with_capacity(8 + padded);
    framed.extend_from_slice(&CONTINUATION);
    framed.extend_from_slice(&(padded as i32).to_le_bytes());
    framed.extend_from_slice(metadata);
    framed.resize(8 + padded, 0);
    framed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, Decimal128Array, Float64Array, Int8Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow_schema::{Field, Schema};

    use super::*;

    /// What `encoder` writes for `batch`, and whether it took the direct path.
    fn encoded(encoder: &mut SlotEncoder, batch: &RecordBatch) -> (Vec<u8>, bool) {
        let mut slot = vec![0xa5u8; 1 << 16];
        let direct = encoder.fixed_width && fixed_width_buffers(batch).is_some();
        // SAFETY: `slot` is a private buffer of that length that outlives the sink.
        let sink = unsafe { SlotSink::new(slot.as_mut_ptr(), slot.len()) };
        let len = encoder
            .encode(batch, sink)
            .unwrap_or_else(|_| panic!("encodes"));
        slot.truncate(len);
        (slot, direct)
    }

    /// Arrow's stream writer's bytes for `batch` (the record batch message only).
    fn arrow_bytes(batch: &RecordBatch) -> Vec<u8> {
        let mut schema_only = Vec::new();
        StreamWriter::try_new_with_options(&mut schema_only, batch.schema_ref(), ipc_options())
            .expect("writer");
        let mut all = Vec::new();
        let mut writer =
            StreamWriter::try_new_with_options(&mut all, batch.schema_ref(), ipc_options())
                .expect("writer");
        writer.write(batch).expect("write");
        drop(writer);
        all.split_off(schema_only.len())
    }

    #[test]
    fn the_direct_path_writes_arrows_bytes_and_reuses_only_matching_metadata() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("b", DataType::Int8, false),
            Field::new("d", DataType::Decimal128(20, 3), true),
            Field::new(
                "t",
                DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = |rows: i64, nulls: bool| {
            let maybe = |i: i64| (!nulls || i % 3 != 1).then_some(i);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter((0..rows).map(maybe))),
                Arc::new(Float64Array::from_iter(
                    (0..rows).map(|i| maybe(i).map(|v| v as f64 / 4.0)),
                )),
                Arc::new(Int8Array::from_iter_values((0..rows).map(|i| i as i8))),
                Arc::new(
                    Decimal128Array::from_iter((0..rows).map(|i| maybe(i).map(i128::from)))
                        .with_precision_and_scale(20, 3)
                        .expect("decimal"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from_iter((0..rows).map(maybe)).with_timezone("UTC"),
                ),
            ];
            RecordBatch::try_new(schema.clone(), columns).expect("batch")
        };
        let mut encoder = SlotEncoder::new(schema.clone());
        // Every shape twice in a row (the second reuses the metadata), then others, sliced
        // arrays (offsets not a multiple of 8 in the bitmaps) and an empty batch.
        let full = batch(1000, true);
        let cases = [
            batch(10, false),
            batch(10, false),
            batch(10, true),
            batch(10, true),
            batch(11, true),
            full.slice(3, 500),
            full.slice(5, 500),
            full.slice(0, 0),
            batch(10, false),
        ];
        for (i, case) in cases.iter().enumerate() {
            let (bytes, direct) = encoded(&mut encoder, case);
            assert!(direct, "case {i} takes the direct path");
            assert_eq!(bytes, arrow_bytes(case), "case {i}");
        }
    }

    #[test]
    fn other_columns_go_through_arrows_writer() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "bc"])),
            ],
        )
        .expect("batch");
        let (bytes, direct) = encoded(&mut SlotEncoder::new(schema), &batch);
        assert!(!direct);
        assert_eq!(bytes, arrow_bytes(&batch));
    }

    #[test]
    fn large_copies_into_a_slot_are_exact_at_any_alignment() {
        let src: Vec<u8> = (0..STREAM_AT_LEAST + 333)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        for (from, to) in [(0, 0), (1, 3), (5, 16), (17, 1), (3, 32), (40, 63)] {
            let part = &src[from..];
            let mut slot = vec![0xa5u8; src.len() + 64];
            // SAFETY: `slot` holds `to + part.len()` bytes (`to < 64`), a buffer of its own.
            unsafe { copy_into_slot(part, slot.as_mut_ptr().add(to)) };
            assert!(slot[..to].iter().all(|&b| b == 0xa5), "{from} {to}: before");
            assert!(slot[to..to + part.len()] == *part, "{from} {to}: the bytes");
            assert!(
                slot[to + part.len()..].iter().all(|&b| b == 0xa5),
                "{from} {to}: after"
            );
        }
    }

    #[test]
    fn a_batch_too_large_for_the_slot_writes_nothing() {
        let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..100))],
        )
        .expect("batch");
        let mut slot = vec![0xa5u8; 256];
        // SAFETY: `slot` is a private buffer of that length that outlives the sink.
        let sink = unsafe { SlotSink::new(slot.as_mut_ptr(), slot.len()) };
        let result = SlotEncoder::new(schema).encode(&batch, sink);
        assert!(matches!(result, Err(EncodeError::TooLarge(n)) if n == arrow_bytes(&batch).len()));
        assert!(slot.iter().all(|&b| b == 0xa5));
    }
}
