//! Decoding Arrow IPC bytes that came from outside the process: attached segments, imported
//! files and streams, Flight uploads and downloads, channel slots.
//!
//! Every message goes through a [`Decoder`], which checks it before arrow-ipc sees it:
//!
//! - every buffer the message declares lies inside its body (arrow-ipc slices with these
//!   numbers unchecked, and panics when they lie);
//! - in a compressed body (lz4/zstd), each buffer's declared decompressed length is checked
//!   against what the batch's row count and types allow, and the batch's total against
//!   [`MAX_DECOMPRESSED_BATCH`], before anything is decompressed: arrow allocates the declared
//!   length first, so a small file could otherwise make a reader allocate any amount;
//! - a big-endian schema is converted: every buffer is byte-swapped by its element width into
//!   a private copy, then decoded as usual (the columns are then copies, named by
//!   [`Segment::copied_columns`](crate::Segment::copied_columns) and refused in strict mode).
//!   A compressed big-endian body cannot be converted this way and is refused with
//!   [`Error::Unsupported`]; nothing is ever decoded as if it were native;
//!
//! then decodes with arrow's validation on (offsets, UTF-8, dictionary keys, null counts),
//! inside [`guarded`]: a panic left in arrow becomes [`Error::Corrupt`]. A batch whose columns
//! are all of primitive types (uncompressed, native byte order) is made with arrow's array
//! constructors after the checks arrow's validation makes for such columns (values buffer
//! large enough and aligned, null count equal to its bitmap), without arrow's per-column
//! `ArrayData`; anything else, or any doubt, goes through arrow's reader.
//!
//! Byte order conversion follows the Arrow columnar format, buffer by buffer in the order
//! arrow-ipc's reader consumes them: validity bitmaps, booleans, UTF-8/binary data,
//! fixed-size binary and union type ids are bytes (not swapped); integers, floats, dates,
//! times, timestamps, durations, offsets, list-view sizes, dictionary keys, run ends and
//! dense-union offsets are swapped per element; a decimal is one integer of its full width;
//! `interval[day_time]` is two 32-bit integers and `interval[month_day_nano]` two 32-bit and
//! one 64-bit integer; a string/binary view swaps its length and, for a non-inlined value, its
//! buffer index and offset (its 4-byte prefix and inlined bytes are data).

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Once};

use arrow_array::types::ArrowPrimitiveType;
use arrow_array::{ArrayRef, PrimitiveArray, RecordBatch, RecordBatchOptions, downcast_primitive};
use arrow_buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer, ScalarBuffer};
use arrow_data::{ArrayData, UnsafeFlag};
use arrow_ipc::reader::RecordBatchDecoder;
use arrow_ipc::{Endianness, MessageHeader, MetadataVersion};
use arrow_schema::{DataType, Field, FieldRef, IntervalUnit, Schema, SchemaRef, UnionMode};

use crate::error::{Error, Result};

/// The most bytes one compressed record (or dictionary) batch may declare it decompresses to:
/// 1 GiB. A larger batch is refused with [`Error::Unsupported`] before anything is allocated;
/// write such data with smaller batches (or uncompressed).
pub const MAX_DECOMPRESSED_BATCH: u64 = 1 << 30;

/// Run a decoding step over untrusted bytes; a panic inside it (a check arrow lacks) becomes
/// [`Error::Corrupt`] naming `name`, prints nothing, and the caller carries on. Every path
/// that decodes bytes from outside the process (attach, import, Flight, channels) runs here.
///
/// # Errors
/// Whatever `f` returns, or [`Error::Corrupt`] if it panicked.
pub fn guarded<T, E: From<Error>>(
    name: &str,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info)
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("decoder failed");
        Err(Error::corrupt(name, format!("invalid data ({what})")).into())
    })
}

/// A record batch message (or a dictionary batch's data) whose every buffer [`check_batch`]
/// found inside a body of `body_len` bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedBatch<'a> {
    batch: arrow_ipc::RecordBatch<'a>,
    version: MetadataVersion,
    body_len: usize,
    /// The body length the message itself declares (`body_len` is the block's or slot's).
    declared_body_len: i64,
    rows: u64,
}

impl CheckedBatch<'_> {
    /// The batch's row count.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether any Arrow reader handed this message as it lies, with `body` (the one it was
    /// checked against) right after its metadata, makes of it the very columns of `schema`
    /// that [`Decoder`] would, in place: the body is uncompressed, the message declares the
    /// body length it was checked against (a reader of the encapsulated message reads that
    /// many bytes), every buffer starts at a multiple of 8 bytes in the body (arrow C++
    /// refuses others), and every column is primitive and passes [`primitive_batch`]'s checks
    /// with its values in place.
    pub(crate) fn readable_in_place(&self, schema: &Schema, body: &Buffer) -> bool {
        self.batch.compression().is_none()
            && self.body_len == body.len()
            && i64::try_from(self.body_len).is_ok_and(|len| len == self.declared_body_len)
            && (self.batch.buffers()).is_some_and(|b| b.iter().all(|b| b.offset() % 8 == 0))
            && primitive_in_place(schema, self, body)
    }
}

/// Check that every buffer a record (or dictionary) batch `batch` of `message` declares lies
/// inside its `body_len`-byte body (arrow-ipc slices with these numbers unchecked), and read
/// its row count.
pub(crate) fn check_batch<'a>(
    batch: arrow_ipc::RecordBatch<'a>,
    message: &arrow_ipc::Message<'_>,
    body_len: usize,
) -> Result<CheckedBatch<'a>, String> {
    for buf in batch.buffers().iter().flatten() {
        let (Ok(start), Ok(len)) = (usize::try_from(buf.offset()), usize::try_from(buf.length()))
        else {
            return Err("negative buffer offset or length".into());
        };
        if start.checked_add(len).is_none_or(|e| e > body_len) {
            return Err(format!(
                "buffer [{start}, +{len}) lies outside the {body_len}-byte body"
            ));
        }
    }
    let rows = u64::try_from(batch.length()).map_err(|_| "negative row count")?;
    Ok(CheckedBatch {
        batch,
        version: message.version(),
        body_len,
        declared_body_len: message.bodyLength(),
        rows,
    })
}

/// A block's message, checked once and kept: its flatbuffer copied into private memory and
/// verified there, its type the block's, and every buffer its batch declares inside the body
/// ([`check_batch`]). Decoding it later needs no second check: both verdicts depend on the
/// bytes and the body length alone, and nobody can change the copy. Equal metadata (a file of
/// batches of one shape) shares one copy.
#[derive(Debug, Clone)]
pub(crate) struct CheckedMessage {
    metadata: Arc<[u8]>,
    body_len: usize,
    rows: u64,
}

impl CheckedMessage {
    /// Copy, verify and check `metadata` (the flatbuffer, after the continuation marker and
    /// length) as a record batch or (`dictionary`) a dictionary batch message whose body is
    /// `body_len` bytes; `previous` (the last message checked) is reused if it holds the same
    /// bytes and body length.
    pub(crate) fn new(
        metadata: &[u8],
        body_len: usize,
        dictionary: bool,
        previous: Option<&Self>,
    ) -> Result<Self, String> {
        if let Some(previous) =
            previous.filter(|p| p.body_len == body_len && *p.metadata == *metadata)
        {
            return Ok(previous.clone());
        }
        let metadata: Arc<[u8]> = metadata.into();
        let message =
            arrow_ipc::root_as_message(&metadata).map_err(|e| format!("message header: {e}"))?;
        let batch = match (message.header_type(), dictionary) {
            (MessageHeader::RecordBatch, false) => message.header_as_record_batch(),
            (MessageHeader::DictionaryBatch, true) => {
                message.header_as_dictionary_batch().and_then(|d| d.data())
            }
            (other, _) => return Err(format!("unexpected message type {other:?}")),
        }
        .ok_or("message has no batch")?;
        let rows = check_batch(batch, &message, body_len)?.rows;
        Ok(Self {
            metadata,
            body_len,
            rows,
        })
    }

    /// The batch's row count.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// The message.
    pub(crate) fn message(&self) -> arrow_ipc::Message<'_> {
        // SAFETY: `metadata` is private memory (no other process can change it) whose bytes
        // passed the flatbuffer verifier in `new`; the verdict depends on the bytes alone.
        unsafe { arrow_ipc::root_as_message_unchecked(&self.metadata) }
    }

    /// The record batch, as checked in `new`; `None` for a dictionary batch message.
    pub(crate) fn record_batch(&self) -> Option<CheckedBatch<'_>> {
        let message = self.message();
        Some(CheckedBatch {
            batch: message.header_as_record_batch()?,
            version: message.version(),
            body_len: self.body_len,
            declared_body_len: message.bodyLength(),
            rows: self.rows,
        })
    }
}

/// A private copy of the last message metadata read, and whether it passed the flatbuffer
/// verifier: the same bytes again are read from the copy without a second verification (a
/// file or stream of batches of one shape repeats its metadata). Reading the copy makes what
/// was verified what is read, whatever another process writes into the original meanwhile.
#[derive(Debug, Default)]
pub(crate) struct VerifiedMetadata {
    copy: Vec<u8>,
    /// `copy` passed the verifier (set only after it did, cleared before `copy` changes).
    passed: bool,
}

impl VerifiedMetadata {
    /// Whether `metadata` is, byte for byte, the copy that passed the verifier.
    pub(crate) fn holds(&self, metadata: &[u8]) -> bool {
        self.passed && metadata == self.copy.as_slice()
    }

    /// The message whose flatbuffer is `metadata`, read from the private copy: verified unless
    /// the copy [`holds`](Self::holds) these bytes already. The flag: the copy is new (verified
    /// now).
    pub(crate) fn message(
        &mut self,
        metadata: &[u8],
    ) -> Result<(arrow_ipc::Message<'_>, bool), String> {
        let fresh = !self.holds(metadata);
        if fresh {
            self.passed = false;
            self.copy.clear();
            self.copy.extend_from_slice(metadata);
            arrow_ipc::root_as_message(&self.copy).map_err(|e| format!("message header: {e}"))?;
            self.passed = true;
        }
        // SAFETY: `copy` is private memory (no other process can change it) whose bytes passed
        // the flatbuffer verifier, just above or when they were copied (`passed`); the
        // verifier's verdict depends on the bytes alone.
        let message = unsafe { arrow_ipc::root_as_message_unchecked(&self.copy) };
        Ok((message, fresh))
    }
}

/// The record batch messages of one file, verified (flatbuffer verifier) and checked
/// ([`check_batch`]) once per run of equal metadata: a file of batches of one shape repeats the
/// same message metadata, and both verdicts depend on the bytes and the body length alone.
/// Metadata up to [`CACHED_METADATA`] bytes is read from a private copy ([`VerifiedMetadata`]);
/// a message equal byte for byte to the last copy that passed (with the same body length) is
/// not checked again.
#[derive(Debug, Default)]
pub(crate) struct BatchMessages {
    metadata: VerifiedMetadata,
    /// The body length and rows the batch of `metadata`'s copy passed [`check_batch`] with.
    checked: Option<(usize, u64)>,
}

/// The largest message metadata [`BatchMessages`] copies (a batch of about 100 columns):
/// larger metadata, which files repeat rarely, is verified in place.
const CACHED_METADATA: usize = 4096;

impl BatchMessages {
    /// The record batch message whose flatbuffer is `metadata` (after the continuation marker
    /// and length), its buffers checked against a body of `body_len` bytes.
    pub(crate) fn record_batch<'s>(
        &'s mut self,
        metadata: &'s [u8],
        body_len: usize,
    ) -> Result<CheckedBatch<'s>, String> {
        let cached = metadata.len() <= CACHED_METADATA;
        let message = if cached {
            let (message, fresh) = self.metadata.message(metadata)?;
            if fresh {
                self.checked = None;
            }
            if let Some((len, rows)) = self.checked
                && len == body_len
            {
                let batch = message
                    .header_as_record_batch()
                    .ok_or("not a record batch message")?;
                return Ok(CheckedBatch {
                    batch,
                    version: message.version(),
                    body_len,
                    declared_body_len: message.bodyLength(),
                    rows,
                });
            }
            message
        } else {
            arrow_ipc::root_as_message(metadata).map_err(|e| format!("message header: {e}"))?
        };
        let batch = match message.header_type() {
            MessageHeader::RecordBatch => message.header_as_record_batch(),
            other => return Err(format!("unexpected message type {other:?}")),
        }
        .ok_or("message has no batch")?;
        let checked = check_batch(batch, &message, body_len)?;
        if cached {
            self.checked = Some((body_len, checked.rows));
        }
        Ok(checked)
    }
}

/// The continuation marker that starts an encapsulated message (since Arrow 0.15; before it,
/// a message started with its length).
pub(crate) const CONTINUATION: [u8; 4] = [0xff; 4];

/// Where the flatbuffer of the encapsulated message at the start of `bytes` begins (after the
/// continuation marker and length), and the length it declares (0: the end-of-stream marker).
pub(crate) fn message_prefix(bytes: &[u8]) -> Result<(usize, usize), String> {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
    };
    let (start, len) = match word(0) {
        Some(CONTINUATION) => (8, word(4)),
        first => (4, first),
    };
    let len = len.ok_or("message prefix truncated")?;
    let len = usize::try_from(i32::from_le_bytes(len)).map_err(|_| "negative metadata length")?;
    Ok((start, len))
}

/// A schema message's schema, and whether its byte order differs from this machine's.
pub(crate) fn read_schema(fb: arrow_ipc::Schema<'_>) -> Result<(Schema, bool), String> {
    let schema = arrow_ipc::convert::try_fb_to_schema(fb).map_err(|e| format!("schema: {e}"))?;
    let big = match fb.endianness() {
        Endianness::Little => false,
        Endianness::Big => true,
        other => return Err(format!("schema: unknown byte order {}", other.0)),
    };
    Ok((schema, big != cfg!(target_endian = "big")))
}

/// What one message was.
#[derive(Debug)]
pub enum Decoded {
    /// The schema (the first message of a stream).
    Schema(SchemaRef),
    /// A dictionary batch, kept by the decoder for the batches that follow.
    Dictionary,
    /// A record batch.
    Batch(RecordBatch),
    /// A message without a header (metadata only), ignored.
    Nothing,
}

/// Decodes the messages of one IPC stream, file, Flight transfer or channel slot, checking
/// each as the [module docs](self) say.
#[derive(Debug)]
pub struct Decoder {
    name: String,
    /// The schema and whether its byte order must be swapped; `None` until a schema message.
    schema: Option<(SchemaRef, bool)>,
    dictionaries: HashMap<i64, ArrayRef>,
    /// Record batches get structural checks only (see [`Decoder::trust_values`]).
    structure_only: bool,
    /// Every column of the schema is of a primitive type (see [`primitive_batch`]).
    primitive: bool,
    /// The last message metadata of [`decode_until_batch`](Self::decode_until_batch), copied
    /// and verified: the same bytes again need no second verification.
    verified: VerifiedMetadata,
    /// Where the buffers of the batch `verified` describes lie, when it is a slot's first
    /// message and its columns are fixed-width: the same metadata again is decoded from it.
    layout: Option<FixedLayout>,
}

impl Decoder {
    /// A decoder whose first message must be the schema (an IPC stream, a Flight transfer).
    /// `name` labels its errors.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            schema: None,
            dictionaries: HashMap::new(),
            structure_only: false,
            primitive: false,
            verified: VerifiedMetadata::default(),
            layout: None,
        }
    }

    /// Check record batches structurally only: every buffer inside the body and large enough
    /// for its length and type, child lengths and null counts consistent, but offsets, UTF-8,
    /// dictionary keys, run ends and union type ids not read. Dictionary batches are still
    /// validated in full.
    ///
    /// # Safety
    /// The values of variable-width and nested columns are trusted: a batch whose offsets,
    /// keys or UTF-8 are wrong yields arrays whose accessors are undefined behaviour. Call this
    /// only for bytes written by a writer that could already write this process's memory (the
    /// trust rule of `attach`: a shmarrow segment only this process's user, or root, can write).
    pub(crate) unsafe fn trust_values(&mut self) {
        // A schema of fixed-width columns has no values to skip: arrow's own validation is
        // then structural already, and cheaper than skipping it and checking afterwards.
        self.structure_only = self.schema.as_ref().is_none_or(|(schema, _)| {
            schema.fields().iter().any(|f| {
                let t = f.data_type();
                !(t.is_primitive() || matches!(t, DataType::Boolean | DataType::Null))
            })
        });
    }

    /// A decoder for a schema known already (a file's footer, a channel's header); `swap`:
    /// the schema's byte order is not this machine's.
    pub(crate) fn with_schema(name: &str, schema: SchemaRef, swap: bool) -> Self {
        let mut decoder = Self::new(name);
        decoder.set_schema(schema, swap);
        decoder
    }

    fn set_schema(&mut self, schema: SchemaRef, swap: bool) {
        self.primitive = schema.fields().iter().all(|f| f.data_type().is_primitive());
        self.schema = Some((schema, swap));
    }

    /// The schema, once known.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.schema.as_ref().map(|(s, _)| s)
    }

    /// Decode one message: `header` is its flatbuffer (without the continuation marker and
    /// length), `body` its body. Runs under [`guarded`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] for bytes that are not a valid message of this stream,
    /// [`Error::Unsupported`] for valid messages this crate cannot read (see the module docs).
    pub fn decode(&mut self, header: &[u8], body: &Buffer) -> Result<Decoded> {
        let name = self.name.clone();
        guarded(&name, || {
            if header.is_empty() {
                return Ok(Decoded::Nothing);
            }
            let message = arrow_ipc::root_as_message(header)
                .map_err(|e| self.corrupt(format!("message header: {e}")))?;
            self.decode_message(&message, body)
        })
    }

    /// [`decode`](Self::decode) for a message already parsed (not guarded: the caller is).
    pub(crate) fn decode_message(
        &mut self,
        message: &arrow_ipc::Message<'_>,
        body: &Buffer,
    ) -> Result<Decoded> {
        let version = message.version();
        match message.header_type() {
            MessageHeader::NONE => Ok(Decoded::Nothing),
            MessageHeader::Schema => {
                if self.schema.is_some() {
                    return Err(self.corrupt("a second schema message".into()));
                }
                let fb = message
                    .header_as_schema()
                    .ok_or_else(|| self.corrupt("bad schema message".into()))?;
                let (schema, swap) = read_schema(fb).map_err(|e| self.corrupt(e))?;
                let schema = Arc::new(schema);
                self.set_schema(schema.clone(), swap);
                Ok(Decoded::Schema(schema))
            }
            MessageHeader::DictionaryBatch => {
                let (schema, swap) = self.schema_or_err("a dictionary batch")?;
                let dict = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| self.corrupt("bad dictionary batch".into()))?;
                let data = dict
                    .data()
                    .ok_or_else(|| self.corrupt("dictionary batch without data".into()))?;
                let value_type = dictionary_value_type(&schema, dict.id()).ok_or_else(|| {
                    self.corrupt(format!("dictionary id {} is not in the schema", dict.id()))
                })?;
                let fields = [Arc::new(Field::new("", value_type, true))];
                let data = check_batch(data, message, body.len()).map_err(|e| self.corrupt(e))?;
                let body = self.prepare(&data, body, &fields, swap)?;
                arrow_ipc::reader::read_dictionary(
                    &body,
                    dict,
                    &schema,
                    &mut self.dictionaries,
                    &version,
                )
                .map_err(|e| self.corrupt(e.to_string()))?;
                Ok(Decoded::Dictionary)
            }
            MessageHeader::RecordBatch => {
                let batch = message
                    .header_as_record_batch()
                    .ok_or_else(|| self.corrupt("bad record batch".into()))?;
                let batch = check_batch(batch, message, body.len()).map_err(|e| self.corrupt(e))?;
                self.decode_batch(&batch, body).map(Decoded::Batch)
            }
            other => Err(self.unsupported(format!(
                "{} messages",
                other.variant_name().unwrap_or("unknown")
            ))),
        }
    }

    /// Decode the record batch message `batch` (checked against `body`, its body; not
    /// guarded: the caller is).
    pub(crate) fn decode_batch(
        &mut self,
        batch: &CheckedBatch<'_>,
        body: &Buffer,
    ) -> Result<RecordBatch> {
        let (schema, swap) = self.schema_or_err("a record batch")?;
        let body = self.prepare(batch, body, schema.fields(), swap)?;
        if self.primitive
            && !swap
            && batch.batch.compression().is_none()
            && let Some(batch) = primitive_batch(&schema, batch, &body)
        {
            return Ok(batch);
        }
        let decoder = RecordBatchDecoder::try_new(
            &body,
            batch.batch,
            schema,
            &self.dictionaries,
            &batch.version,
        )
        .map_err(|e| self.corrupt(e.to_string()))?
        .with_require_alignment(false);
        if !self.structure_only {
            return decoder
                .read_record_batch()
                .map_err(|e| self.corrupt(e.to_string()));
        }
        let mut skip = UnsafeFlag::new();
        // SAFETY: `structure_only` is set only through the unsafe `trust_values`, whose
        // caller vouches for the values; the structure is checked right below.
        unsafe { skip.set(true) };
        let batch = decoder
            .with_skip_validation(skip)
            .read_record_batch()
            .map_err(|e| self.corrupt(e.to_string()))?;
        self.check_structure(&batch)?;
        Ok(batch)
    }

    /// Decode the encapsulated messages at the start of `bytes` (the dictionary batches a
    /// record batch needs, then the record batch: a channel slot, self-contained: dictionaries
    /// of earlier calls are forgotten) in place, and return the record batch. Each message's
    /// (small) flatbuffer is read from a private copy, so what was checked is what is used
    /// whatever another process writes into `bytes` meanwhile; bytes equal to the last copy
    /// that passed the verifier are not verified again ([`VerifiedMetadata`]: a stream of
    /// batches of one shape repeats its metadata). Bodies stay in place. Runs under
    /// [`guarded`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] for bytes that are not such messages, as [`decode`](Self::decode).
    pub(crate) fn decode_until_batch(&mut self, bytes: &Buffer) -> Result<RecordBatch> {
        if let Some(batch) = self.decode_repeated(bytes) {
            return batch;
        }
        let name = self.name.clone();
        self.dictionaries.clear();
        // Out of `self` while its messages are in use (`decode_message` needs `self`).
        let mut verified = std::mem::take(&mut self.verified);
        let batch = guarded(&name, || {
            let mut pos = 0usize;
            while let Ok((start, meta_len)) = message_prefix(&bytes[pos..]) {
                if meta_len == 0 {
                    break;
                }
                let meta_start = pos + start;
                let meta_end = meta_start
                    .checked_add(meta_len)
                    .filter(|&e| e <= bytes.len())
                    .ok_or_else(|| self.corrupt("message metadata past the end".into()))?;
                let (message, fresh) = verified
                    .message(&bytes[meta_start..meta_end])
                    .map_err(|e| self.corrupt(e))?;
                if fresh {
                    self.layout = None;
                }
                let body_len = usize::try_from(message.bodyLength())
                    .map_err(|_| self.corrupt("negative body length".into()))?;
                let body_end = meta_end
                    .checked_add(body_len)
                    .filter(|&e| e <= bytes.len())
                    .ok_or_else(|| self.corrupt("message body past the end".into()))?;
                let body = bytes.slice_with_length(meta_end, body_len);
                if let Decoded::Batch(batch) = self.decode_message(&message, &body)? {
                    if pos == 0 && self.layout.is_none() {
                        self.layout = FixedLayout::of(&batch, &body, meta_end);
                    }
                    return Ok(batch);
                }
                pos = body_end;
            }
            Err(self.corrupt("no record batch".into()))
        });
        self.verified = verified;
        batch
    }

    /// [`decode_until_batch`](Self::decode_until_batch) for a slot whose first message is a
    /// record batch with the metadata of the last one that took the full path, which left a
    /// [`FixedLayout`]: the batch is built from that layout (checked when it was recorded)
    /// with the new body's buffers, without reading the flatbuffer again. The metadata is
    /// compared in place: whatever another process writes into it meanwhile, only the private
    /// layout is used, and every buffer is checked to lie inside `bytes` (the bodies are in
    /// place in any case). `None`: take the full path.
    fn decode_repeated(&self, bytes: &Buffer) -> Option<Result<RecordBatch>> {
        let layout = self.layout.as_ref()?;
        let (start, meta_len) = message_prefix(bytes).ok()?;
        let meta_end = start.checked_add(meta_len)?;
        if meta_end != layout.body_start || !self.verified.holds(bytes.get(start..meta_end)?) {
            return None;
        }
        let (schema, _) = self.schema.as_ref()?;
        let body_end = meta_end.checked_add(layout.body_len)?;
        if body_end > bytes.len() {
            return Some(Err(self.corrupt("message body past the end".into())));
        }
        layout
            .batch(schema, &bytes.slice_with_length(meta_end, layout.body_len))
            .map_err(|e| self.corrupt(e))
            .transpose()
    }

    /// What arrow's skipped validation would have checked without reading values: every
    /// column as long as the batch, every buffer large enough for its length and type (children
    /// included), null counts equal to the bitmaps.
    fn check_structure(&self, batch: &RecordBatch) -> Result<()> {
        for (field, column) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            let data = column.to_data();
            if data.len() != batch.num_rows() {
                return Err(self.corrupt(format!(
                    "column {:?} has {} rows, the batch {}",
                    field.name(),
                    data.len(),
                    batch.num_rows()
                )));
            }
            data.validate()
                .and_then(|()| nulls_consistent(&data))
                .map_err(|e| self.corrupt(format!("column {:?}: {e}", field.name())))?;
        }
        Ok(())
    }

    fn schema_or_err(&self, what: &str) -> Result<(SchemaRef, bool)> {
        self.schema
            .clone()
            .ok_or_else(|| self.corrupt(format!("{what} before the schema")))
    }

    /// The body to decode `batch` (checked against `body`) from: the same bytes, or a private
    /// byte-swapped copy.
    fn prepare<'b>(
        &self,
        batch: &CheckedBatch<'_>,
        body: &'b Buffer,
        fields: &[FieldRef],
        swap: bool,
    ) -> Result<Cow<'b, Buffer>> {
        if batch.body_len != body.len() {
            return Err(self.corrupt(format!(
                "a batch checked against a {}-byte body decoded from {} bytes",
                batch.body_len,
                body.len()
            )));
        }
        let (version, batch) = (batch.version, &batch.batch);
        let compressed = batch.compression().is_some();
        if !compressed && !swap {
            return Ok(Cow::Borrowed(body));
        }
        let slots = plan(fields, batch, version).map_err(|e| self.corrupt(e))?;
        if compressed && swap {
            return Err(self.unsupported(
                "a big-endian batch with compressed buffers cannot be byte-swapped (write it uncompressed or little-endian)"
                    .into(),
            ));
        }
        if compressed {
            self.check_compressed(&slots, batch, body)?;
            return Ok(Cow::Borrowed(body));
        }
        Ok(Cow::Owned(swap_body(&slots, batch, body)))
    }

    /// Every compressed buffer's declared length within what its rows and type allow, and the
    /// batch's total within [`MAX_DECOMPRESSED_BATCH`].
    fn check_compressed(
        &self,
        slots: &[Slot],
        batch: &arrow_ipc::RecordBatch<'_>,
        body: &[u8],
    ) -> Result<()> {
        let mut total = 0u64;
        for (i, (slot, buf)) in slots
            .iter()
            .zip(batch.buffers().iter().flatten())
            .enumerate()
        {
            // In the body: `check_batch` passed.
            let (start, len) = (buf.offset() as usize, buf.length() as usize);
            if len == 0 {
                continue;
            }
            let Some(prefix) = body.get(start..start + 8).filter(|_| len >= 8) else {
                return Err(self.corrupt(format!(
                    "compressed buffer {i} is {len} bytes, shorter than its length prefix"
                )));
            };
            let declared = i64::from_le_bytes(prefix.try_into().expect("8 bytes"));
            let Ok(declared) = u64::try_from(declared) else {
                if declared == -1 {
                    continue; // stored uncompressed
                }
                return Err(self.corrupt(format!(
                    "compressed buffer {i} declares a negative length {declared}"
                )));
            };
            if let Some(max) = slot.max_len
                && declared > max.saturating_add(63) / 64 * 64
            {
                return Err(self.corrupt(format!(
                    "compressed buffer {i} declares {declared} bytes decompressed; its rows and type allow {max}"
                )));
            }
            total = total.saturating_add(declared);
        }
        if total > MAX_DECOMPRESSED_BATCH {
            return Err(self.unsupported(format!(
                "a batch that decompresses to {total} bytes (the limit is {MAX_DECOMPRESSED_BATCH} per batch; write smaller batches)"
            )));
        }
        Ok(())
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::corrupt(&self.name, reason)
    }

    fn unsupported(&self, what: String) -> Error {
        Error::Unsupported {
            name: self.name.clone(),
            what,
        }
    }
}

/// A record batch of primitive columns (uncompressed, native byte order) made straight from
/// `body` with arrow's array constructors, or `None` when arrow's reader must make it (see
/// [`primitive_columns`]). arrow's own reader builds and drops an `ArrayData` per column: this
/// skips that allocation.
fn primitive_batch(
    schema: &SchemaRef,
    batch: &CheckedBatch<'_>,
    body: &Buffer,
) -> Option<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    let rows = primitive_columns(schema, batch, body, |data_type, values, rows, nulls| {
        columns.push(primitive_array(data_type, values, rows, nulls)?);
        Some(())
    })?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).ok()
}

/// Whether [`primitive_batch`] makes a batch of `batch` in `body` (every check passes, every
/// values buffer in place), without making it: then any Arrow reader given the same bytes
/// reads the same columns.
fn primitive_in_place(schema: &Schema, batch: &CheckedBatch<'_>, body: &Buffer) -> bool {
    let fits = |data_type: &DataType, values: Buffer, rows, _| {
        macro_rules! fits {
            ($t:ty) => {
                values_fit::<$t>(&values, rows, data_type)
            };
        }
        downcast_primitive! {
            data_type => (fits),
            _ => false
        }
        .then_some(())
    };
    primitive_columns(schema, batch, body, fits).is_some()
}

/// Each column of a record batch of primitive columns (uncompressed, native byte order) in
/// `body`, handed to `column` as (type, values, rows, validity), and the batch's rows; `None`
/// when arrow's reader must make the batch: a column whose type is not primitive, counts of
/// nodes or buffers that do not match the schema, a column whose length is not the batch's, a
/// validity bitmap too short or whose null count differs from the message's, or `column`
/// returning `None` (a values buffer misaligned, which arrow copies, or too short, which arrow
/// reports). These are the checks arrow's validation makes for such columns; their values have
/// nothing else to validate.
fn primitive_columns(
    schema: &Schema,
    batch: &CheckedBatch<'_>,
    body: &Buffer,
    mut column: impl FnMut(&DataType, Buffer, usize, Option<NullBuffer>) -> Option<()>,
) -> Option<usize> {
    let fields = schema.fields();
    let rows = usize::try_from(batch.rows).ok()?;
    let (nodes, buffers) = (batch.batch.nodes()?, batch.batch.buffers()?);
    if nodes.len() != fields.len() || buffers.len() != 2 * fields.len() {
        return None;
    }
    // Inside `body`: `check_batch` passed.
    let slice =
        |b: &arrow_ipc::Buffer| body.slice_with_length(b.offset() as usize, b.length() as usize);
    let mut buffers = buffers.iter();
    for (field, node) in fields.iter().zip(nodes) {
        let (validity, values) = (buffers.next()?, buffers.next()?);
        if usize::try_from(node.length()).ok()? != rows {
            return None;
        }
        let nulls = match usize::try_from(node.null_count()).ok()? {
            0 => None,
            count => {
                if (validity.length() as usize) < rows.div_ceil(8) {
                    return None;
                }
                let nulls = NullBuffer::new(BooleanBuffer::new(slice(validity), 0, rows));
                if nulls.null_count() != count {
                    return None;
                }
                Some(nulls)
            }
        };
        column(field.data_type(), slice(values), rows, nulls)?;
    }
    Some(rows)
}

/// A column of `rows` values of primitive type `data_type` in `values`, or `None` if `values`
/// is too short or misaligned for them (or `data_type` is not primitive).
fn primitive_array(
    data_type: &DataType,
    values: Buffer,
    rows: usize,
    nulls: Option<NullBuffer>,
) -> Option<ArrayRef> {
    macro_rules! column {
        ($t:ty) => {
            primitive_column::<$t>(values, rows, nulls, data_type)
        };
    }
    downcast_primitive! {
        data_type => (column),
        _ => None
    }
}

/// [`primitive_array`] of `T`.
fn primitive_column<T: ArrowPrimitiveType>(
    values: Buffer,
    rows: usize,
    nulls: Option<NullBuffer>,
    data_type: &DataType,
) -> Option<ArrayRef> {
    if !values_fit::<T>(&values, rows, data_type) {
        return None;
    }
    let values = ScalarBuffer::<T::Native>::new(values, 0, rows);
    let array = PrimitiveArray::<T>::try_new(values, nulls).ok()?;
    Some(Arc::new(array.with_data_type(data_type.clone())))
}

/// Whether `values` holds `rows` values of `T` (`data_type`, one of `T`'s types), aligned.
fn values_fit<T: ArrowPrimitiveType>(values: &Buffer, rows: usize, data_type: &DataType) -> bool {
    let fits = rows
        .checked_mul(std::mem::size_of::<T::Native>())
        .is_some_and(|need| need <= values.len());
    let aligned = values.as_ptr().cast::<T::Native>().is_aligned();
    fits && aligned && PrimitiveArray::<T>::is_compatible(data_type)
}

/// `ArrayData::validate_nulls` of `data` and every descendant (validate recurses; it does not).
fn nulls_consistent(data: &ArrayData) -> std::result::Result<(), arrow_schema::ArrowError> {
    data.validate_nulls()?;
    data.child_data().iter().try_for_each(nulls_consistent)
}

/// Where a record batch of fixed-width columns (one values buffer each, maybe a validity
/// bitmap) found its buffers in its body, recorded from a batch arrow decoded and validated in
/// full, for [`Decoder::decode_repeated`]: a body described by the same metadata has its
/// buffers at the same places.
#[derive(Debug)]
struct FixedLayout {
    /// Where the body starts in the slot's bytes (after the message's metadata).
    body_start: usize,
    body_len: usize,
    rows: usize,
    columns: Vec<FixedColumn>,
}

#[derive(Debug)]
struct FixedColumn {
    data_type: DataType,
    /// The values' bytes in the body.
    values: std::ops::Range<usize>,
    /// The validity bitmap's bytes in the body, its bit offset and its null count; `None`:
    /// no bitmap (no nulls).
    nulls: Option<(std::ops::Range<usize>, usize, usize)>,
}

impl FixedLayout {
    /// The layout of `batch`, decoded from `body` (at `body_start` of its slot), if every
    /// column is fixed-width and every buffer of it lies in `body` (not a copy arrow made to
    /// align, swap or decompress it).
    fn of(batch: &RecordBatch, body: &Buffer, body_start: usize) -> Option<Self> {
        let base = body.as_ptr() as usize;
        let within = |b: &Buffer| {
            let start = (b.as_ptr() as usize).checked_sub(base)?;
            let end = start.checked_add(b.len())?;
            (end <= body.len()).then_some(start..end)
        };
        let columns = batch
            .columns()
            .iter()
            .map(|column| {
                let data = column.to_data();
                let [values] = data.buffers() else {
                    return None;
                };
                if !data.data_type().is_primitive() || data.offset() != 0 {
                    return None;
                }
                let nulls = match data.nulls() {
                    None => None,
                    Some(n) => Some((within(n.buffer())?, n.offset(), n.null_count())),
                };
                Some(FixedColumn {
                    data_type: data.data_type().clone(),
                    values: within(values)?,
                    nulls,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            body_start,
            body_len: body.len(),
            rows: batch.num_rows(),
            columns,
        })
    }

    /// The batch of `schema` in `body` (`body_len` bytes), made as [`primitive_batch`] makes
    /// one; `Ok(None)`: a values buffer is misaligned here (arrow's reader copies it). A null
    /// count that differs from its bitmap is an error.
    fn batch(
        &self,
        schema: &SchemaRef,
        body: &Buffer,
    ) -> std::result::Result<Option<RecordBatch>, String> {
        let rows = self.rows;
        let slice = |r: &std::ops::Range<usize>| body.slice_with_length(r.start, r.len());
        let mut columns = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let nulls = match &c.nulls {
                None => None,
                Some((bytes, offset, count)) => {
                    let nulls = NullBuffer::new(BooleanBuffer::new(slice(bytes), *offset, rows));
                    if nulls.null_count() != *count {
                        return Err(format!(
                            "{} nulls in a bitmap, the metadata says {count}",
                            nulls.null_count()
                        ));
                    }
                    Some(nulls)
                }
            };
            let Some(column) = primitive_array(&c.data_type, slice(&c.values), rows, nulls) else {
                return Ok(None);
            };
            columns.push(column);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(schema.clone(), columns, &options)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// The value type of dictionary `id` in `schema`.
fn dictionary_value_type(schema: &Schema, id: i64) -> Option<DataType> {
    #[allow(deprecated)] // dictionary ids live on fields in arrow 60, as its own reader uses
    let field = schema.fields_with_dict_id(id).into_iter().next()?;
    match field.data_type() {
        DataType::Dictionary(_, value) => Some(value.as_ref().clone()),
        _ => None,
    }
}

/// How the values of one buffer are stored, for byte-swapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swap {
    /// Bits or bytes: nothing to swap.
    Bytes,
    /// Elements of this many bytes, each one integer (or float).
    Width(usize),
    /// `interval[month_day_nano]`: 4 + 4 + 8 bytes per value.
    MonthDayNano,
    /// 16-byte string/binary views.
    View,
}

/// One buffer of a batch, in message order.
#[derive(Debug, Clone, Copy)]
struct Slot {
    swap: Swap,
    /// The most bytes this buffer can need for its rows; `None` for variable-size data.
    max_len: Option<u64>,
}

/// The buffers a batch of `fields` consumes, in the order arrow-ipc's reader takes them.
fn plan(
    fields: &[FieldRef],
    batch: &arrow_ipc::RecordBatch<'_>,
    version: MetadataVersion,
) -> Result<Vec<Slot>, String> {
    let mut walk = Walk {
        nodes: batch
            .nodes()
            .ok_or("record batch without field nodes")?
            .iter()
            .map(|n| n.length())
            .collect(),
        next_node: 0,
        buffers: batch.buffers().map_or(0, |b| b.len()),
        variadic: batch.variadicBufferCounts().into_iter().flatten().collect(),
        version,
        slots: Vec::new(),
    };
    for field in fields {
        walk.field(field.data_type())?;
    }
    Ok(walk.slots)
}

struct Walk {
    /// The length of every field node.
    nodes: Vec<i64>,
    next_node: usize,
    /// Buffers the message declares.
    buffers: usize,
    variadic: VecDeque<i64>,
    version: MetadataVersion,
    slots: Vec<Slot>,
}

impl Walk {
    fn push(&mut self, swap: Swap, max_len: Option<u64>) -> Result<(), String> {
        if self.slots.len() >= self.buffers {
            return Err(format!(
                "the message has {} buffers, fewer than its schema needs",
                self.buffers
            ));
        }
        self.slots.push(Slot { swap, max_len });
        Ok(())
    }

    fn validity(&mut self, rows: u64) -> Result<(), String> {
        self.push(Swap::Bytes, Some(rows.div_ceil(8)))
    }

    /// A buffer of `count` elements of `width` bytes.
    fn fixed(&mut self, width: usize, count: u64) -> Result<(), String> {
        let swap = if width > 1 {
            Swap::Width(width)
        } else {
            Swap::Bytes
        };
        self.push(swap, Some(count.saturating_mul(width as u64)))
    }

    fn field(&mut self, data_type: &DataType) -> Result<(), String> {
        use DataType::*;
        let Some(&length) = self.nodes.get(self.next_node) else {
            return Err("fewer field nodes than the schema has fields".into());
        };
        self.next_node += 1;
        let rows = u64::try_from(length).map_err(|_| "negative field length")?;
        match data_type {
            Null => {}
            Boolean => {
                self.validity(rows)?;
                self.validity(rows)?;
            }
            Utf8 | Binary | LargeUtf8 | LargeBinary => {
                let width = if matches!(data_type, Utf8 | Binary) {
                    4
                } else {
                    8
                };
                self.validity(rows)?;
                self.fixed(width, rows.saturating_add(1))?;
                self.push(Swap::Bytes, None)?;
            }
            Utf8View | BinaryView => {
                let count = self
                    .variadic
                    .pop_front()
                    .and_then(|c| usize::try_from(c).ok())
                    .ok_or("missing or negative variadic buffer count")?;
                self.validity(rows)?;
                self.push(Swap::View, Some(rows.saturating_mul(16)))?;
                for _ in 0..count {
                    self.push(Swap::Bytes, None)?;
                }
            }
            FixedSizeBinary(width) => {
                self.validity(rows)?;
                let width = u64::try_from(*width).map_err(|_| "negative binary width")?;
                self.push(Swap::Bytes, Some(rows.saturating_mul(width)))?;
            }
            List(child) | LargeList(child) | Map(child, _) => {
                self.validity(rows)?;
                let width = if matches!(data_type, LargeList(_)) {
                    8
                } else {
                    4
                };
                self.fixed(width, rows.saturating_add(1))?;
                self.field(child.data_type())?;
            }
            ListView(child) | LargeListView(child) => {
                self.validity(rows)?;
                let width = if matches!(data_type, ListView(_)) {
                    4
                } else {
                    8
                };
                self.fixed(width, rows)?;
                self.fixed(width, rows)?;
                self.field(child.data_type())?;
            }
            FixedSizeList(child, _) => {
                self.validity(rows)?;
                self.field(child.data_type())?;
            }
            Struct(children) => {
                self.validity(rows)?;
                for child in children {
                    self.field(child.data_type())?;
                }
            }
            RunEndEncoded(run_ends, values) => {
                self.field(run_ends.data_type())?;
                self.field(values.data_type())?;
            }
            Dictionary(key, _) => {
                self.validity(rows)?;
                let width = key.primitive_width().ok_or("non-integer dictionary key")?;
                self.fixed(width, rows)?;
            }
            Union(children, mode) => {
                if self.version < MetadataVersion::V5 {
                    self.validity(rows)?;
                }
                self.push(Swap::Bytes, Some(rows))?;
                if *mode == UnionMode::Dense {
                    self.fixed(4, rows)?;
                }
                for (_, child) in children.iter() {
                    self.field(child.data_type())?;
                }
            }
            Interval(IntervalUnit::MonthDayNano) => {
                self.validity(rows)?;
                self.push(Swap::MonthDayNano, Some(rows.saturating_mul(16)))?;
            }
            Interval(IntervalUnit::DayTime) => {
                self.validity(rows)?;
                self.fixed(4, rows.saturating_mul(2))?;
            }
            other => {
                let width = other
                    .primitive_width()
                    .ok_or_else(|| format!("type {other} cannot be read"))?;
                self.validity(rows)?;
                self.fixed(width, rows)?;
            }
        }
        Ok(())
    }
}

/// A private copy of `body` with every buffer of `slots` byte-swapped.
fn swap_body(slots: &[Slot], batch: &arrow_ipc::RecordBatch<'_>, body: &Buffer) -> Buffer {
    let mut out = MutableBuffer::with_capacity(body.len());
    out.extend_from_slice(body.as_slice());
    for (slot, buf) in slots.iter().zip(batch.buffers().iter().flatten()) {
        // In the body: `check_batch` passed.
        let start = buf.offset() as usize;
        swap_values(&mut out[start..start + buf.length() as usize], slot.swap);
    }
    out.into()
}

/// Reverse the byte order of every value in `bytes` (a trailing partial value is padding).
fn swap_values(bytes: &mut [u8], swap: Swap) {
    match swap {
        Swap::Bytes => {}
        Swap::Width(width) => bytes.chunks_exact_mut(width).for_each(<[u8]>::reverse),
        Swap::MonthDayNano => {
            for value in bytes.chunks_exact_mut(16) {
                value[..4].reverse();
                value[4..8].reverse();
                value[8..].reverse();
            }
        }
        Swap::View => {
            for view in bytes.chunks_exact_mut(16) {
                view[..4].reverse();
                let len = i32::from_le_bytes(view[..4].try_into().expect("4 bytes"));
                if len > 12 {
                    view[8..12].reverse();
                    view[12..].reverse();
                }
            }
        }
    }
}

/// An Arrow IPC stream read message by message from `R`, each checked and decoded by a
/// [`Decoder`]. Reading allocates no more than the bytes that actually arrive (a declared
/// length is never allocated up front).
#[derive(Debug)]
pub struct StreamReader<R> {
    reader: R,
    label: String,
    decoder: Decoder,
    schema: SchemaRef,
    done: bool,
}

impl<R: Read> StreamReader<R> {
    /// Read the stream's schema message. `label` names the input in errors.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if it does not start with a schema message; [`Error::Io`].
    pub fn try_new(label: &str, mut reader: R) -> Result<Self> {
        let mut decoder = Decoder::new(label);
        let schema = match next_message(&mut reader, label)? {
            Some((header, body)) => match decoder.decode(&header, &body)? {
                Decoded::Schema(schema) => Some(schema),
                _ => None,
            },
            None => None,
        }
        .ok_or_else(|| Error::corrupt(label, "not an Arrow IPC stream (no schema message)"))?;
        Ok(Self {
            reader,
            label: label.to_owned(),
            decoder,
            schema,
            done: false,
        })
    }

    /// The stream's schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while let Some((header, body)) = next_message(&mut self.reader, &self.label)? {
            if let Decoded::Batch(batch) = self.decoder.decode(&header, &body)? {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }
}

impl<R: Read> Iterator for StreamReader<R> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_batch().transpose();
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}

/// The next encapsulated message (flatbuffer header, body) of a stream; `None` at its end (the
/// end-of-stream marker, or the end of the input between messages).
fn next_message(reader: &mut impl Read, label: &str) -> Result<Option<(Vec<u8>, Buffer)>> {
    let mut word = read_up_to(reader, 4, label)?;
    if word.is_empty() {
        return Ok(None);
    }
    if word == CONTINUATION {
        word = read_up_to(reader, 4, label)?;
    }
    let Ok(word) = <[u8; 4]>::try_from(word.as_slice()) else {
        return Err(Error::corrupt(
            label,
            "stream truncated in a message length",
        ));
    };
    let meta_len = i32::from_le_bytes(word);
    let meta_len = u64::try_from(meta_len)
        .map_err(|_| Error::corrupt(label, format!("negative message length {meta_len}")))?;
    if meta_len == 0 {
        return Ok(None);
    }
    let header = read_exactly(reader, meta_len, label, "message header")?;
    let message = arrow_ipc::root_as_message(&header)
        .map_err(|e| Error::corrupt(label, format!("message header: {e}")))?;
    let body_len = u64::try_from(message.bodyLength())
        .map_err(|_| Error::corrupt(label, "negative body length"))?;
    let body = read_exactly(reader, body_len, label, "message body")?;
    Ok(Some((header, Buffer::from_vec(body))))
}

/// `len` bytes, growing the buffer only as bytes arrive; an early end is [`Error::Corrupt`].
fn read_exactly(reader: &mut impl Read, len: u64, label: &str, what: &str) -> Result<Vec<u8>> {
    let bytes = read_up_to(reader, len, label)?;
    if (bytes.len() as u64) < len {
        return Err(Error::corrupt(
            label,
            format!(
                "stream truncated: {what} of {len} bytes has only {}",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

fn read_up_to(reader: &mut impl Read, len: u64, label: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(len)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io {
            op: "read",
            path: PathBuf::from(label),
            source,
        })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_inside_guarded_become_corrupt_errors() {
        let r: Result<()> = guarded("x", || panic!("boom"));
        match r {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("boom")),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The encapsulated message of `batch` as a stream writes it after its schema (a channel
    /// slot's bytes).
    fn slot_of(batch: &RecordBatch) -> Vec<u8> {
        use arrow_ipc::writer::StreamWriter;
        let mut schema_only = Vec::new();
        StreamWriter::try_new(&mut schema_only, batch.schema_ref()).expect("writer");
        let mut stream = Vec::new();
        let mut writer = StreamWriter::try_new(&mut stream, batch.schema_ref()).expect("writer");
        writer.write(batch).expect("write");
        drop(writer);
        stream.split_off(schema_only.len())
    }

    /// Only bytes equal to a copy that passed the verifier skip it: bytes that failed are
    /// verified (and refused) every time, and a new copy replaces the old one.
    #[test]
    fn verified_metadata_skips_the_verifier_only_for_the_copy_that_passed() {
        use arrow_array::Int64Array;
        let batch =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2])) as _)])
                .expect("batch");
        let slot = slot_of(&batch);
        let (start, len) = message_prefix(&slot).expect("prefix");
        let good = &slot[start..start + len];
        let bad = vec![0xffu8; len];
        let mut verified = VerifiedMetadata::default();
        let rows = |v: &mut VerifiedMetadata, bytes: &[u8]| {
            v.message(bytes).map(|(m, fresh)| {
                let rows = m.header_as_record_batch().map(|b| b.length());
                (rows, fresh)
            })
        };
        assert_eq!(rows(&mut verified, good), Ok((Some(2), true)));
        assert!(verified.holds(good));
        assert_eq!(rows(&mut verified, good), Ok((Some(2), false)), "the copy");
        for _ in 0..2 {
            assert!(rows(&mut verified, &bad).is_err(), "verified every time");
            assert!(!verified.holds(&bad));
        }
        assert!(!verified.holds(good), "replaced by the bad copy");
        assert_eq!(rows(&mut verified, good), Ok((Some(2), true)));
    }

    /// Metadata equal to the last verified copy skips the verifier; any other bytes, even after
    /// a verified copy, are verified (and refused when bad), and the good bytes decode again.
    #[test]
    fn only_metadata_equal_to_a_verified_copy_skips_the_verifier() {
        use arrow_array::Int64Array;
        let batch =
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])
                .expect("batch");
        let slot = slot_of(&batch);
        let mut decoder = Decoder::with_schema("slot", batch.schema(), false);
        for _ in 0..2 {
            let decoded = decoder.decode_until_batch(&Buffer::from(slot.clone()));
            assert_eq!(decoded.expect("decodes"), batch);
        }
        let (start, len) = message_prefix(&slot).expect("prefix");
        for at in start..start + len {
            let mut bad = slot.clone();
            bad[at] ^= 0xff;
            // Verified again (these bytes differ from the verified copy): refused, or decoded
            // under every check with the channel's schema; never a panic.
            if let Ok(decoded) = decoder.decode_until_batch(&Buffer::from(bad)) {
                assert_eq!(decoded.schema(), batch.schema());
            }
        }
        let decoded = decoder.decode_until_batch(&Buffer::from(slot));
        assert_eq!(decoded.expect("decodes"), batch);
    }

    /// A slot whose metadata repeats is built from the recorded layout: the new values and
    /// bitmaps are read (not the old ones), a bitmap whose null count differs from the
    /// metadata's and a body past the end are refused, other metadata takes the full path.
    #[test]
    fn repeated_metadata_decodes_each_new_body_under_the_same_checks() {
        use arrow_array::{Float64Array, Int64Array};
        let batch = |base: i64, rows: i64| {
            let ints = Int64Array::from_iter((0..rows).map(|i| (i % 3 != 1).then_some(base + i)));
            let floats = Float64Array::from_iter_values((0..rows).map(|i| (base * i) as f64));
            RecordBatch::try_from_iter([
                ("i", Arc::new(ints) as ArrayRef),
                ("f", Arc::new(floats) as ArrayRef),
            ])
            .expect("batch")
        };
        let first = batch(10, 7);
        let mut decoder = Decoder::with_schema("slot", first.schema(), false);
        let decode = |decoder: &mut Decoder, bytes: Vec<u8>| {
            decoder.decode_until_batch(&Buffer::from(bytes))
        };
        assert_eq!(
            decode(&mut decoder, slot_of(&first)).expect("decodes"),
            first
        );
        assert!(
            decoder.layout.is_some(),
            "fixed-width columns leave a layout"
        );
        for base in [20, 30] {
            let next = batch(base, 7);
            assert_eq!(
                decode(&mut decoder, slot_of(&next)).expect("decodes"),
                next,
                "the new body's values"
            );
        }
        // Same metadata, one more null in the bitmap of column `i` (row 0).
        let bytes = slot_of(&first);
        let (start, len) = message_prefix(&bytes).expect("prefix");
        let message = arrow_ipc::root_as_message(&bytes[start..start + len]).expect("message");
        let bitmap = message
            .header_as_record_batch()
            .and_then(|b| b.buffers())
            .expect("buffers")
            .get(0);
        let mut bad = bytes.clone();
        bad[start + len + bitmap.offset() as usize] &= !1;
        let err = decode(&mut decoder, bad).expect_err("a bitmap against its metadata");
        assert!(err.to_string().contains("nulls"), "{err}");
        let mut short = bytes.clone();
        short.truncate(start + len + message.bodyLength() as usize - 1);
        let err = decode(&mut decoder, short).expect_err("a body past the end");
        assert!(err.to_string().contains("past the end"), "{err}");
        // Other metadata (more rows): the full path, and a layout of its own.
        let longer = batch(40, 9);
        assert_eq!(
            decode(&mut decoder, slot_of(&longer)).expect("decodes"),
            longer
        );
        assert_eq!(decoder.layout.as_ref().map(|l| l.rows), Some(9));
        assert_eq!(
            decode(&mut decoder, slot_of(&first)).expect("decodes"),
            first
        );
    }
}

#[cfg(test)]
mod byte_order_tests {
    //! Every type converted: a little-endian batch is turned big-endian by the test's own
    //! converter (driven by the decoded arrays and arrow's layout table, not by [`plan`]), then
    //! decoded as big-endian and compared with the original.

    use std::sync::Arc;

    use arrow_array::builder::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_array::*;
    use arrow_buffer::{IntervalDayTime, IntervalMonthDayNano, ScalarBuffer, i256};
    use arrow_data::{ArrayData, BufferSpec, layout};
    use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
    use arrow_schema::{DataType, Field, IntervalUnit, UnionFields};

    use super::*;

    /// How each buffer of `data` (and its children) becomes big-endian, in IPC order.
    fn big_endian_plan(data: &ArrayData, out: &mut Vec<Option<Swap>>) {
        let data_type = data.data_type();
        let spec = layout(data_type);
        if spec.can_contain_null_mask {
            out.push(None);
        }
        match data_type {
            DataType::Interval(IntervalUnit::MonthDayNano) => out.push(Some(Swap::MonthDayNano)),
            DataType::Interval(IntervalUnit::DayTime) => out.push(Some(Swap::Width(4))),
            // Fixed-width in arrow's table, but bytes: nothing to swap.
            DataType::FixedSizeBinary(_) => out.push(None),
            DataType::Utf8View | DataType::BinaryView => {
                out.push(Some(Swap::View));
                out.extend(data.buffers()[1..].iter().map(|_| None));
            }
            _ => out.extend(spec.buffers.iter().map(|b| match b {
                BufferSpec::FixedWidth { byte_width, .. } if *byte_width > 1 => {
                    Some(Swap::Width(*byte_width))
                }
                _ => None,
            })),
        }
        if !matches!(data_type, DataType::Dictionary(..)) {
            for child in data.child_data() {
                big_endian_plan(child, out);
            }
        }
    }

    /// Little-endian `bytes` of one buffer made big-endian (views: the length is read first).
    fn to_big_endian(bytes: &mut [u8], swap: Swap) {
        if swap != Swap::View {
            return swap_values(bytes, swap);
        }
        for view in bytes.chunks_exact_mut(16) {
            let len = i32::from_le_bytes(view[..4].try_into().unwrap());
            view[..4].reverse();
            if len > 12 {
                view[8..12].reverse();
                view[12..].reverse();
            }
        }
    }

    /// The message's body converted to big-endian with `plan`.
    fn convert(message: &[u8], body: &[u8], plan: &[Option<Swap>]) -> Buffer {
        let message = arrow_ipc::root_as_message(message).unwrap();
        let batch = message
            .header_as_record_batch()
            .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()))
            .unwrap();
        let buffers: Vec<_> = batch.buffers().unwrap().iter().collect();
        assert_eq!(
            buffers.len(),
            plan.len(),
            "the test's plan and the message disagree"
        );
        let mut out = body.to_vec();
        for (buf, swap) in buffers.iter().zip(plan) {
            let range = buf.offset() as usize..(buf.offset() + buf.length()) as usize;
            if let Some(swap) = swap {
                to_big_endian(&mut out[range], *swap);
            }
        }
        Buffer::from_vec(out)
    }

    /// Encode `batch`, convert every message to big-endian, decode as big-endian (and, for
    /// contrast, as if native).
    fn round_trip(batch: &RecordBatch) -> (RecordBatch, Option<RecordBatch>) {
        let (generator, options) = (IpcDataGenerator::default(), IpcWriteOptions::default());
        let mut tracker = DictionaryTracker::new(false);
        // The schema as a reader gets it (with dictionary ids), from its own message.
        let schema = generator.schema_to_bytes_with_dictionary_tracker(
            &batch.schema(),
            &mut tracker,
            &options,
        );
        let schema = arrow_ipc::root_as_message(&schema.ipc_message).unwrap();
        let schema = Arc::new(read_schema(schema.header_as_schema().unwrap()).unwrap().0);
        let (dictionaries, encoded) = generator
            .encode(batch, &mut tracker, &options, &mut Default::default())
            .unwrap();
        let decode = |swap: bool| {
            let mut decoder = Decoder::with_schema("t", schema.clone(), swap);
            for dict in &dictionaries {
                // The only dictionary of these batches is in column `dict`.
                let column = batch.column_by_name("dict").unwrap();
                let values = column.as_any_dictionary().values().to_data();
                let mut plan = Vec::new();
                big_endian_plan(&values, &mut plan);
                let body = convert(&dict.ipc_message, &dict.arrow_data, &plan);
                decoder.decode(&dict.ipc_message, &body)?;
            }
            let mut plan = Vec::new();
            for column in batch.columns() {
                big_endian_plan(&column.to_data(), &mut plan);
            }
            let body = convert(&encoded.ipc_message, &encoded.arrow_data, &plan);
            match decoder.decode(&encoded.ipc_message, &body)? {
                Decoded::Batch(b) => Ok::<_, Error>(b),
                other => panic!("{other:?}"),
            }
        };
        (decode(true).unwrap(), decode(false).ok())
    }

    fn check(columns: Vec<(&str, ArrayRef)>) {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let (got, as_native) = round_trip(&batch);
        for (i, field) in batch.schema().fields().iter().enumerate() {
            assert_eq!(got.column(i), batch.column(i), "column {}", field.name());
        }
        let as_native = as_native.map(|b| b.columns().to_vec());
        assert_ne!(
            as_native.as_deref(),
            Some(batch.columns()),
            "the swap changed nothing"
        );
    }

    #[test]
    fn primitives_and_temporal_types_convert() {
        check(vec![
            (
                "i8",
                Arc::new(Int8Array::from(vec![Some(-1), None, Some(127)])),
            ),
            (
                "i16",
                Arc::new(Int16Array::from(vec![Some(-2), None, Some(300)])),
            ),
            (
                "i32",
                Arc::new(Int32Array::from(vec![None, Some(i32::MAX), None])),
            ),
            (
                "i64",
                Arc::new(Int64Array::from(vec![Some(1), Some(-1 << 40), None])),
            ),
            ("u16", Arc::new(UInt16Array::from(vec![1, 2, 65535]))),
            ("u64", Arc::new(UInt64Array::from(vec![1, 2, u64::MAX]))),
            (
                "f16",
                Arc::new(Float16Array::from(vec![
                    half::f16::from_f32(1.5),
                    half::f16::from_f32(-2.0),
                    half::f16::MAX,
                ])),
            ),
            (
                "f32",
                Arc::new(Float32Array::from(vec![1.5, f32::NAN, -0.0])),
            ),
            (
                "f64",
                Arc::new(Float64Array::from(vec![Some(1e300), None, Some(-2.5)])),
            ),
            (
                "bool",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
            ("date32", Arc::new(Date32Array::from(vec![1, -1, 20000]))),
            ("date64", Arc::new(Date64Array::from(vec![1, -1, 1 << 42]))),
            (
                "time32",
                Arc::new(Time32MillisecondArray::from(vec![1, 2, 86_399_999])),
            ),
            (
                "time64",
                Arc::new(Time64NanosecondArray::from(vec![1, 2, 3 << 40])),
            ),
            (
                "ts",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1), None, Some(1 << 50)])
                        .with_timezone("Europe/Paris"),
                ),
            ),
            (
                "dur",
                Arc::new(DurationSecondArray::from(vec![-5, 0, 1 << 33])),
            ),
            (
                "ym",
                Arc::new(IntervalYearMonthArray::from(vec![1, -13, 1 << 20])),
            ),
            (
                "dt",
                Arc::new(IntervalDayTimeArray::from(vec![
                    IntervalDayTime::new(1, -2),
                    IntervalDayTime::new(1 << 20, 3),
                    IntervalDayTime::new(-7, 1 << 25),
                ])),
            ),
            (
                "mdn",
                Arc::new(IntervalMonthDayNanoArray::from(vec![
                    IntervalMonthDayNano::new(1, 2, 3),
                    IntervalMonthDayNano::new(-1, 1 << 20, 1 << 50),
                    IntervalMonthDayNano::new(12, -30, -1),
                ])),
            ),
            (
                "dec32",
                Arc::new(
                    Decimal32Array::from(vec![1, -123_456, 99_999])
                        .with_precision_and_scale(9, 2)
                        .unwrap(),
                ),
            ),
            (
                "dec64",
                Arc::new(
                    Decimal64Array::from(vec![1, -1 << 40, 7])
                        .with_precision_and_scale(18, 3)
                        .unwrap(),
                ),
            ),
            (
                "dec128",
                Arc::new(
                    Decimal128Array::from(vec![Some(1), None, Some(-(1i128 << 100))])
                        .with_precision_and_scale(38, 4)
                        .unwrap(),
                ),
            ),
            (
                "dec256",
                Arc::new(
                    Decimal256Array::from(vec![
                        i256::from_i128(1),
                        i256::from_i128(-(1i128 << 120)),
                        i256::from_parts(5, 1 << 60),
                    ])
                    .with_precision_and_scale(76, 0)
                    .unwrap(),
                ),
            ),
        ]);
    }

    #[test]
    fn variable_width_and_views_convert() {
        let long = "a string longer than twelve bytes";
        check(vec![
            (
                "s",
                Arc::new(StringArray::from(vec![Some("ab"), None, Some(long)])),
            ),
            (
                "ls",
                Arc::new(LargeStringArray::from(vec![Some(""), Some("é"), None])),
            ),
            (
                "b",
                Arc::new(BinaryArray::from(vec![&b"\x00\x01"[..], b"", b"xyz"])),
            ),
            (
                "lb",
                Arc::new(LargeBinaryArray::from(vec![&b"q"[..], b"rs", b""])),
            ),
            (
                "fsb",
                Arc::new(
                    FixedSizeBinaryArray::try_from_iter([b"abc", b"def", b"ghi"].iter()).unwrap(),
                ),
            ),
            (
                "sv",
                Arc::new(StringViewArray::from(vec![Some("short"), None, Some(long)])),
            ),
            (
                "bv",
                Arc::new(BinaryViewArray::from(vec![
                    &b"tiny"[..],
                    long.as_bytes(),
                    b"",
                ])),
            ),
        ]);
    }

    #[test]
    fn nested_types_convert() {
        let mut list = ListBuilder::new(Int32Builder::new());
        list.append_value([Some(1), None, Some(1 << 20)]);
        list.append_null();
        list.append_value([Some(-3)]);
        let mut large = LargeListBuilder::new(Int64Builder::new());
        large.append_value([Some(1 << 40)]);
        large.append_value([]);
        large.append_value([Some(-1), Some(2)]);
        let mut fixed = FixedSizeListBuilder::new(Int16Builder::new(), 2);
        for (a, b) in [(1, 2), (300, -300), (7, 8)] {
            fixed.values().append_value(a);
            fixed.values().append_value(b);
            fixed.append(true);
        }
        let structs = StructArray::from(vec![
            (
                Arc::new(Field::new("a", DataType::Int32, true)),
                Arc::new(Int32Array::from(vec![Some(1), None, Some(1 << 30)])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("b", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec!["x", "yy", "zzz"])) as ArrayRef,
            ),
        ]);
        let mut map = MapBuilder::new(None, StringBuilder::new(), Int32Builder::new());
        map.keys().append_value("k");
        map.values().append_value(1 << 24);
        map.append(true).unwrap();
        map.append(false).unwrap();
        map.keys().append_value("j");
        map.values().append_null();
        map.append(true).unwrap();
        let list_view = ListViewArray::new(
            Arc::new(Field::new("item", DataType::Int32, true)),
            ScalarBuffer::from(vec![2, 0, 1]),
            ScalarBuffer::from(vec![1, 2, 0]),
            Arc::new(Int32Array::from(vec![10, 1 << 20, 30])),
            None,
        );
        let run_ends = Int32Array::from(vec![2, 3]);
        let ree =
            RunArray::<Int32Type>::try_new(&run_ends, &StringArray::from(vec!["r", "s"])).unwrap();
        check(vec![
            ("list", Arc::new(list.finish())),
            ("large", Arc::new(large.finish())),
            ("fixed", Arc::new(fixed.finish())),
            ("struct", Arc::new(structs)),
            ("map", Arc::new(map.finish())),
            ("list_view", Arc::new(list_view)),
            ("ree", Arc::new(ree)),
        ]);
    }

    #[test]
    fn dictionaries_and_unions_convert() {
        let dict: DictionaryArray<Int16Type> = vec![Some("a"), None, Some("bb"), Some("a")]
            .into_iter()
            .collect();
        let dict = dict.slice(0, 3);
        let fields = UnionFields::try_new(
            [0, 1],
            [
                Field::new("i", DataType::Int64, true),
                Field::new("f", DataType::Float64, true),
            ],
        )
        .unwrap();
        let dense = UnionArray::try_new(
            fields.clone(),
            ScalarBuffer::from(vec![0i8, 1, 0]),
            Some(ScalarBuffer::from(vec![0i32, 0, 1])),
            vec![
                Arc::new(Int64Array::from(vec![1 << 40, -1])),
                Arc::new(Float64Array::from(vec![2.5])),
            ],
        )
        .unwrap();
        let sparse = UnionArray::try_new(
            fields,
            ScalarBuffer::from(vec![1i8, 0, 1]),
            None,
            vec![
                Arc::new(Int64Array::from(vec![0, 7 << 33, 0])),
                Arc::new(Float64Array::from(vec![1.25, 0.0, -3.5])),
            ],
        )
        .unwrap();
        check(vec![
            ("dict", Arc::new(dict)),
            ("dense", Arc::new(dense)),
            ("sparse", Arc::new(sparse)),
            (
                "ts",
                Arc::new(TimestampNanosecondArray::from(vec![1, 2, 1 << 60])),
            ),
        ]);
    }
}
