//! Attaching a segment: map it read-only and decode every record batch in place.
//!
//! The bytes come from another process and are untrusted: the footer, every block and every
//! message header is checked against the mapping here, then every message is decoded by
//! [`crate::ipc::Decoder`] (buffer bounds, decompressed sizes, byte order, arrow's own
//! validation, panics caught and reported as [`Error::Corrupt`]).
//!
//! Cost: O(batches × columns) under structural checks, independent of the data size, except
//! that validity bitmaps are recounted (about 1/64 of a column's bytes); full validation
//! (offsets, UTF-8, dictionary keys) is linear in the variable-width data. Which one a segment
//! gets is the trust model of [`Validate`] (SECURITY.md); `bench/core.rs` measures both.

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arrow_array::{Array, RecordBatch};
use arrow_buffer::Buffer;
use arrow_data::ArrayData;
use arrow_ipc::reader::read_footer_length;
use arrow_ipc::{Block, MessageHeader};
use arrow_schema::{DataType, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::ipc::{
    BatchMessages, CheckedBatch, CheckedMessage, Decoded, Decoder, check_batch, guarded,
    message_prefix, read_schema,
};
use crate::meta::SegmentMeta;
use crate::name::SegmentDir;
use crate::sys;

const MAGIC: &[u8; 6] = b"ARROW1";
/// Leading magic + padding (8) and trailing footer length + magic (10).
const MIN_FILE_LEN: u64 = 18;

/// How much of a segment's data attach validates (the trust model: SECURITY.md).
///
/// Structural checks are always made: the footer, every block and message, every buffer inside
/// the mapping and large enough for its column's length and type, lengths and null counts
/// consistent. They cost O(batches × columns) whatever the data. What they do not read is the
/// *values* of variable-width and nested columns: offsets, UTF-8, dictionary keys, run ends,
/// union type ids, view lengths. Full validation reads those too (O(data) for strings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Validate {
    /// [`Structure`](Validate::Structure) for a segment shmarrow published (its metadata
    /// says so) that only this process's user, or root, can write (owned by this user or root,
    /// no group or other write bit, which an ACL granting write would set); [`Full`](Validate::Full)
    /// for any other file.
    #[default]
    Auto,
    /// Always validate every value arrow can check (arrow's full validation).
    Full,
    /// Structural checks only, for any file only this user or root can write (shmarrow's or
    /// not); a file others can write is refused with [`Error::Untrusted`].
    Structure,
}

impl std::fmt::Display for Validate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Validate::Auto => "auto",
            Validate::Full => "full",
            Validate::Structure => "structure",
        })
    }
}

impl std::str::FromStr for Validate {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Validate::Auto),
            "full" => Ok(Validate::Full),
            "structure" => Ok(Validate::Structure),
            _ => Err(format!(
                "unknown validation {s:?} (expected auto, full or structure)"
            )),
        }
    }
}

/// Why users other than this process's own (and root) can write the file `info` describes, or
/// `None` if they cannot: its owner is this user or root, and neither the group nor others
/// have write permission (a POSIX ACL granting write to anyone shows as the group write bit).
pub(crate) fn foreign_writers(info: &SegmentInfo) -> Option<String> {
    let me = sys::effective_uid();
    if info.uid != me && info.uid != 0 {
        return Some(format!("owned by uid {}, not {me}", info.uid));
    }
    if info.mode & 0o022 != 0 {
        return Some(format!(
            "writable by its group or others (mode {:o})",
            info.mode
        ));
    }
    None
}

/// The validation `requested` resolves to for the file `info` describes: [`Validate::Full`] or
/// [`Validate::Structure`] (see [`Validate`]).
///
/// # Errors
/// [`Error::Untrusted`] for [`Validate::Structure`] of a file other users can write.
pub(crate) fn resolve_validation(requested: Validate, info: &SegmentInfo) -> Result<Validate> {
    Ok(match (requested, foreign_writers(info)) {
        (Validate::Full, _) => Validate::Full,
        (Validate::Structure, None) => Validate::Structure,
        (Validate::Structure, Some(reason)) => {
            return Err(Error::Untrusted {
                name: info.name.clone(),
                reason,
            });
        }
        (Validate::Auto, None) if info.meta.is_some() => Validate::Structure,
        (Validate::Auto, _) => Validate::Full,
    })
}

/// Options for [`SegmentDir::attach_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachOptions {
    strict: bool,
    populate: bool,
    validate: Option<Validate>,
}

impl AttachOptions {
    /// Refuse ([`Error::NotZeroCopy`]) a segment any of whose buffers would have to be copied
    /// (misaligned for its type, or compressed). Off by default: such foreign files are read,
    /// copying just those buffers, and [`Segment::copied_columns`] names the columns.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Pre-fault the whole mapping at attach (`MADV_POPULATE_READ`, Linux 5.14+; ignored where
    /// unsupported). Attach then costs time proportional to the size, but the first pass over
    /// the data takes no page faults: worth it when every byte will be read (a full reduce).
    pub fn populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// How much to validate (see [`Validate`]); unset, the directory's
    /// ([`SegmentDir::validate`], default [`Validate::Auto`]).
    pub fn validate(mut self, validate: Validate) -> Self {
        self.validate = Some(validate);
        self
    }
}

/// One record batch's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Rows in the batch.
    pub rows: u64,
    /// Bytes of the batch's message (metadata + body).
    pub bytes: u64,
}

/// What a segment holds, read from its footer and message headers without decoding any array.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// The segment name (or the path, for a file outside a segment directory).
    pub name: String,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The schema, with its metadata.
    pub schema: SchemaRef,
    /// Every record batch, in order.
    pub batches: Vec<BatchInfo>,
    /// The `shmarrow.` metadata; `None` for a file shmarrow did not write.
    pub meta: Option<SegmentMeta>,
    /// Permission bits of the file.
    pub mode: u32,
    /// Owner uid of the file.
    pub uid: u32,
    /// (device, inode) of the file mapped: tells one published version of a name from a
    /// replacement (as [`Created::identity`](crate::Created::identity) does).
    pub identity: (u64, u64),
}

impl SegmentInfo {
    /// Total rows over all batches.
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.rows).sum()
    }
}

/// Per-column facts of an attached segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Nulls in the column (top level), over all batches.
    pub null_count: u64,
    /// Bytes of all the column's buffers, children included.
    pub bytes: u64,
    /// Whether every buffer of the column lies in the mapping.
    pub zero_copy: bool,
}

/// An attached segment: record batches whose buffers point into the shared mapping.
///
/// The mapping lives as long as the segment or any array taken from it. A segment replaced
/// after attaching stays readable, unchanged (the old file lives while it is mapped).
///
/// # Memory other processes may write
///
/// Like any file mapping (see `memmap2::Mmap`), the bytes behind these arrays belong to a file
/// that other processes with write permission can change while this process reads them. The
/// contract shmarrow keeps, and asks of every writer: a published segment's file is never
/// truncated, and only the *values* of fixed-width columns are ever rewritten in place
/// ([`WritableSegment`](crate::WritableSegment), which refuses files whose value ranges touch
/// any other buffer). Under that contract a reader may see a value change between two reads
/// (take [`SegmentDir::lock`] shared for a stable view) but every offset, length, validity
/// bit and dictionary key it validated at attach stays as validated. A process that breaks it
/// (truncating the file, rewriting offsets) can make readers read wrong bytes within the
/// mapping, or fault (SIGBUS) on truncated pages: give write permission only to processes
/// you trust.
#[derive(Debug, Clone)]
pub struct Segment {
    info: SegmentInfo,
    map: Buffer,
    batches: Vec<RecordBatch>,
    /// [`copied_paths`], computed when first asked for (or at attach in strict mode): the
    /// walk over every buffer costs about as much as decoding a batch of few rows.
    copied: OnceLock<Vec<String>>,
    validation: Validate,
}

impl Segment {
    /// The byte ranges of the file (offsets from its start) that hold no batch body: the
    /// leading magic and schema message up to the first block, every block's message metadata,
    /// and the footer with the trailer. Read again from the mapping (the footer was checked at
    /// attach; a file changed since is checked anew).
    pub(crate) fn metadata_ranges(&self) -> Result<Vec<Range<usize>>> {
        let name = &self.info.name;
        let file: &[u8] = &self.map;
        let ends = Ends::of(file);
        let footer = Footer::read(name, file, &ends)?;
        let blocks = footer
            .dictionaries()
            .map(|b| footer.place(b, BlockKind::Dictionary))
            .chain(footer.batches().map(|b| footer.place(b, BlockKind::Batch)))
            .collect::<Result<Vec<_>>>()?;
        let first = blocks
            .iter()
            .map(|b| b.offset)
            .min()
            .unwrap_or(footer.start);
        let mut ranges = vec![0..first, footer.start..file.len()];
        ranges.extend(blocks.iter().map(|b| b.offset..b.offset + b.meta_len));
        Ok(ranges)
    }

    /// How this segment was validated: [`Validate::Full`] or [`Validate::Structure`].
    pub fn validation(&self) -> Validate {
        self.validation
    }

    /// Name, size, schema, batch sizes and metadata.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// The schema (with the `shmarrow.` metadata keys).
    pub fn schema(&self) -> SchemaRef {
        self.info.schema.clone()
    }

    /// The record batches, zero-copy views of the mapping.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Total rows.
    pub fn num_rows(&self) -> u64 {
        self.info.rows()
    }

    /// The mapped bytes (the whole Arrow IPC file).
    pub fn bytes(&self) -> &Buffer {
        &self.map
    }

    /// Dotted paths of the columns (or nested children) that could not be used in place and
    /// were copied into private memory. Always empty for segments shmarrow wrote.
    pub fn copied_columns(&self) -> &[String] {
        self.copied.get_or_init(|| copied_paths(self))
    }

    /// Whether `data` and all its children lie in this segment's mapping.
    pub fn contains(&self, data: &ArrayData) -> bool {
        let mut inside = true;
        visit(data, "", &mut |_, node| {
            inside &= own_buffers_inside(node, &self.map_range())
        });
        inside
    }

    /// Null counts, byte sizes and zero-copy status per top-level column.
    pub fn columns(&self) -> Vec<ColumnInfo> {
        let range = self.map_range();
        self.info
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let mut info = ColumnInfo {
                    name: field.name().clone(),
                    null_count: 0,
                    bytes: 0,
                    zero_copy: true,
                };
                for batch in &self.batches {
                    let data = batch.column(i).to_data();
                    info.null_count += data.null_count() as u64;
                    visit(&data, "", &mut |_, node| {
                        info.bytes += buffers_of(node).map(|b| b.len() as u64).sum::<u64>();
                        info.zero_copy &= own_buffers_inside(node, &range);
                    });
                }
                info
            })
            .collect()
    }

    fn map_range(&self) -> Range<usize> {
        let start = self.map.as_ptr() as usize;
        start..start + self.map.len()
    }
}

impl SegmentDir {
    /// Attach segment `name` (zero-copy, checked). Same as
    /// [`attach_with`](Self::attach_with) with default options.
    ///
    /// # Errors
    /// See [`attach_with`](Self::attach_with).
    pub fn attach(&self, name: &str) -> Result<Segment> {
        self.attach_with(name, &AttachOptions::default())
    }

    /// Attach segment `name`: open read-only (never following a symlink), map, check the
    /// footer, blocks and message headers against the file, and decode every batch.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NotFound`], [`Error::PermissionDenied`],
    /// [`Error::NotAFile`], [`Error::Corrupt`] for bytes that are not a valid Arrow IPC file,
    /// [`Error::NotZeroCopy`] in strict mode, [`Error::Untrusted`] for
    /// [`Validate::Structure`] of a file other users can write.
    pub fn attach_with(&self, name: &str, options: &AttachOptions) -> Result<Segment> {
        let options = AttachOptions {
            validate: Some(options.validate.unwrap_or(self.validation())),
            ..*options
        };
        attach_path(name, &self.segment_path(name)?, &options)
    }

    /// Read what segment `name` holds (schema, batches, rows, metadata) without decoding it.
    ///
    /// # Errors
    /// As [`attach_with`](Self::attach_with), except [`Error::NotZeroCopy`].
    pub fn info(&self, name: &str) -> Result<SegmentInfo> {
        let path = self.segment_path(name)?;
        let (file, meta) = sys::open_segment(name, &path, false)?;
        Ok(map_and_read(name, &path, &file, &meta, false)?.2)
    }
}

/// Attach any Arrow IPC file at `path` as if it were a segment named `label`.
///
/// # Errors
/// As [`SegmentDir::attach_with`].
pub fn attach_path(label: &str, path: &Path, options: &AttachOptions) -> Result<Segment> {
    let (file, meta) = sys::open_segment(label, path, false)?;
    attach_file(label, path, &file, &meta, options)
}

/// Attach the already open `file` (`meta` is its `fstat`): the layout comes from this very
/// file, whatever its path names meanwhile. `path` only labels errors.
pub(crate) fn attach_file(
    label: &str,
    path: &Path,
    file: &File,
    meta: &std::fs::Metadata,
    options: &AttachOptions,
) -> Result<Segment> {
    let (map, ends) = map_file(label, path, file, meta, options.populate)?;
    let (info, batches, validation) = guarded(label, || {
        let (footer, info, validation) = Footer::resolve(label, &map, &ends, meta, options)?;
        decode_batches(&footer, &map, info, validation)
    })?;
    segment(label, map, info, batches, validation, options)
}

/// Decode every batch of the file `footer` describes, mapped as `map`, checking as
/// `validation` says; returns `info` with the batches' rows and bytes, and the batches.
///
/// One pass over the blocks: each message header is verified and checked once and decoded at
/// once (as stock arrow-rs does), where [`IpcFile`] checks every block before decoding the
/// first; a run of batches with byte-identical metadata (batches of one shape) is verified and
/// checked once ([`BatchMessages`]).
fn decode_batches(
    footer: &Footer<'_>,
    map: &Buffer,
    mut info: SegmentInfo,
    validation: Validate,
) -> Result<(SegmentInfo, Vec<RecordBatch>, Validate)> {
    let mut decoder = decoder_for(footer.name, &footer.schema, footer.swap, validation);
    for block in footer.dictionaries() {
        let (message, _) = footer.check_block(block, BlockKind::Dictionary)?;
        decode_message(&mut decoder, map, block, &message)?;
    }
    let count = footer.batch_count();
    let mut batches = Vec::with_capacity(count);
    info.batches.reserve_exact(count);
    let mut messages = BatchMessages::default();
    for block in footer.batches() {
        let (message, body, batch) = footer.check_batch_block(block, &mut messages)?;
        let body = map.slice_with_length(body.start, body.len());
        batches.push(decoder.decode_batch(&message, &body)?);
        info.batches.push(batch);
    }
    Ok((info, batches, validation))
}

/// The attached segment of `label`, mapped as `map`, with its decoded `batches`; in strict mode
/// [`Error::NotZeroCopy`] if any buffer was copied.
fn segment(
    label: &str,
    map: Buffer,
    info: SegmentInfo,
    batches: Vec<RecordBatch>,
    validation: Validate,
    options: &AttachOptions,
) -> Result<Segment> {
    let segment = Segment {
        info,
        map,
        batches,
        copied: OnceLock::new(),
        validation,
    };
    if options.strict && !segment.copied_columns().is_empty() {
        return Err(Error::NotZeroCopy {
            name: label.to_owned(),
            columns: segment.copied_columns().to_vec(),
        });
    }
    Ok(segment)
}

/// What [`SegmentDir::attach_checked`] made of a segment.
#[derive(Debug, Clone)]
pub enum Attachment {
    /// Every batch decoded, as [`SegmentDir::attach_with`] gives it.
    Decoded(Segment),
    /// Every batch checked, none decoded: another Arrow reader decodes them in place.
    Checked(CheckedSegment),
}

/// A segment checked exactly as [`SegmentDir::attach_with`] checks it, whose record batches
/// were not decoded because any Arrow reader given their messages as they lie in the mapping
/// makes of them the very arrays attach would (the Python binding hands them to pyarrow).
///
/// [`SegmentDir::attach_checked`] gives one only for a segment whose validation resolved to
/// [`Validate::Structure`] (only this user or root can write it, so the bytes another reader
/// reads after the checks are the ones checked, or a trusted writer's: the trust model of
/// SECURITY.md), in native byte order, without dictionaries, all of whose columns are of
/// primitive types, and every batch of which is uncompressed, declares in its message the
/// lengths its block gives (prefix and body), has every buffer at a multiple of 8 bytes in
/// its body, aligned values long enough for its rows and null counts equal to their bitmaps.
/// The mapping lives as long as this value or any buffer taken from [`bytes`](Self::bytes).
#[derive(Debug, Clone)]
pub struct CheckedSegment {
    info: SegmentInfo,
    map: Buffer,
    messages: Vec<Range<usize>>,
}

impl CheckedSegment {
    /// Name, size, schema, batch sizes and metadata.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }

    /// The mapped bytes (the whole Arrow IPC file).
    pub fn bytes(&self) -> &Buffer {
        &self.map
    }

    /// Where each record batch's encapsulated message (continuation marker and length,
    /// metadata, body) lies in [`bytes`](Self::bytes), in order.
    pub fn messages(&self) -> &[Range<usize>] {
        &self.messages
    }
}

impl SegmentDir {
    /// Attach segment `name` as [`attach_with`](Self::attach_with) does, but leave the batches
    /// undecoded where `wanted(schema, batches)` says it is worth it (another reader is
    /// to decode them) and any Arrow reader decodes them in place exactly as checked (see
    /// [`CheckedSegment`] for when): [`Attachment::Checked`] then, else the decoded segment.
    ///
    /// # Errors
    /// As [`attach_with`](Self::attach_with).
    pub fn attach_checked(
        &self,
        name: &str,
        options: &AttachOptions,
        wanted: impl FnOnce(&Schema, usize) -> bool,
    ) -> Result<Attachment> {
        let options = AttachOptions {
            validate: Some(options.validate.unwrap_or(self.validation())),
            ..*options
        };
        let path = self.segment_path(name)?;
        let (file, meta) = sys::open_segment(name, &path, false)?;
        let (map, ends) = map_file(name, &path, &file, &meta, options.populate)?;
        let attached = guarded(name, || {
            let (footer, info, validation) = Footer::resolve(name, &map, &ends, &meta, &options)?;
            if validation == Validate::Structure
                && wanted(&footer.schema, footer.batch_count())
                && let Some(checked) = footer.in_place_messages(&map, info.clone())?
            {
                return Ok(Ok(checked));
            }
            decode_batches(&footer, &map, info, validation).map(Err)
        })?;
        match attached {
            Ok((info, messages)) => Ok(Attachment::Checked(CheckedSegment {
                info,
                map,
                messages,
            })),
            Err((info, batches, validation)) => {
                segment(name, map, info, batches, validation, &options).map(Attachment::Decoded)
            }
        }
    }
}

/// A decoder of `schema` (byte order swapped if `swap`) checking as `validation` says.
fn decoder_for(label: &str, schema: &SchemaRef, swap: bool, validation: Validate) -> Decoder {
    let mut decoder = Decoder::with_schema(label, schema.clone(), swap);
    if validation == Validate::Structure {
        // SAFETY: `resolve_validation` returns Structure only when `foreign_writers` found
        // that no user but this process's own (or root) can write the file whose `fstat` the
        // validation was resolved from, and which is mapped: its bytes, valid or not, came from
        // processes that can already write this process's memory (ptrace, /proc/PID/mem), so
        // trusting them gives no one a power they lack. SECURITY.md states this rule.
        unsafe { decoder.trust_values() };
    }
    decoder
}

/// An Arrow IPC file (or a segment) mapped read-only and decoded one record batch at a time,
/// checked exactly as [`SegmentDir::attach`] checks a segment. Batches are zero-copy views of
/// the mapping except where a copy is needed (compressed, misaligned or big-endian buffers),
/// so reading a file batch by batch never holds more than one converted batch in private
/// memory: what `shmarrow import` streams from.
#[derive(Debug)]
pub struct IpcFile {
    info: SegmentInfo,
    map: Buffer,
    layout: Layout,
    decoder: Decoder,
    next: usize,
}

impl IpcFile {
    /// Map the file at `path` (never following a symlink), check its footer, blocks and
    /// message headers, and decode its dictionaries. `label` names it in errors.
    ///
    /// # Errors
    /// As [`SegmentDir::attach_with`], except [`Error::NotZeroCopy`].
    pub fn open(label: &str, path: &Path) -> Result<Self> {
        let (file, meta) = sys::open_segment(label, path, false)?;
        let (map, layout, info) = map_and_read(label, path, &file, &meta, false)?;
        let mut decoder = decoder_for(label, &layout.schema, layout.swap, Validate::Full);
        guarded(label, || {
            for block in &layout.dictionaries {
                decoder.decode_message(&block.message.message(), &block.body(&map))?;
            }
            Ok::<_, Error>(())
        })?;
        Ok(Self {
            info,
            map,
            layout,
            decoder,
            next: 0,
        })
    }

    /// Name, size, schema, batch sizes and metadata, from the footer.
    pub fn info(&self) -> &SegmentInfo {
        &self.info
    }
}

impl Iterator for IpcFile {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let (block, _) = self.layout.batches.get(self.next)?;
        self.next += 1;
        let label = &self.info.name;
        Some(guarded(label, || {
            let batch = (block.message.record_batch())
                .ok_or_else(|| Error::corrupt(label, "not a record batch message"))?;
            self.decoder.decode_batch(&batch, &block.body(&self.map))
        }))
    }
}

/// Decode `message`, the header of `block` (checked by [`Footer::check_block`]).
fn decode_message(
    decoder: &mut Decoder,
    map: &Buffer,
    block: &Block,
    message: &arrow_ipc::Message<'_>,
) -> Result<Decoded> {
    let (offset, meta_len) = (block.offset() as usize, block.metaDataLength() as usize);
    let body = map.slice_with_length(offset + meta_len, block.bodyLength() as usize);
    decoder.decode_message(message, &body)
}

/// The message of a block's metadata (after the continuation marker and length).
fn block_message(meta: &[u8]) -> std::result::Result<arrow_ipc::Message<'_>, String> {
    let (start, _) = message_prefix(meta)?;
    arrow_ipc::root_as_message(&meta[start..]).map_err(|e| format!("message header: {e}"))
}

/// Map and read the layout of `file` (opened at `path`; `meta` is its `fstat`).
fn map_and_read(
    name: &str,
    path: &Path,
    file: &File,
    meta: &std::fs::Metadata,
    populate: bool,
) -> Result<(Buffer, Layout, SegmentInfo)> {
    let (map, ends) = map_file(name, path, file, meta, populate)?;
    let layout = guarded(name, || read_layout(name, &map, &ends))?;
    let mut info = segment_info(name, &map, &layout.schema, meta);
    info.batches = layout.batches.iter().map(|(_, info)| *info).collect();
    Ok((map, layout, info))
}

/// Map `file` (opened at `path`; `meta` is its `fstat`) read-only, and read its [`Ends`]; a
/// channel is refused.
fn map_file(
    name: &str,
    path: &Path,
    file: &File,
    meta: &std::fs::Metadata,
    populate: bool,
) -> Result<(Buffer, Ends)> {
    if meta.len() < MIN_FILE_LEN {
        return Err(Error::corrupt(
            name,
            format!("{} bytes is too short for an Arrow IPC file", meta.len()),
        ));
    }
    let ends = Ends::read(file, meta.len()).map_err(|e| Error::from_io(e, "read", name, path))?;
    if ends.head.starts_with(crate::CHANNEL_MAGIC) {
        return Err(Error::IsChannel {
            name: name.to_owned(),
        });
    }
    // SAFETY: the mapping is read-only and shared. Rust requires that the bytes behind the
    // `&[u8]` that `Mmap` hands out do not change or vanish while borrowed. shmarrow never
    // truncates or rewrites a published segment (publishing replaces the name, not the file);
    // the one exception is the documented in-place write of fixed-width *values*, whose byte
    // ranges the writable open proves disjoint from every offsets, validity, dictionary and
    // other buffer (`inplace::writable::check_writable_layout`), so it never changes any offset, length
    // or metadata this crate reads. A foreign process that truncates
    // the file breaks that contract (SIGBUS on access), as documented in SECURITY.md.
    let mmap = unsafe {
        memmap2::MmapOptions::new()
            .len(meta.len() as usize)
            .map(file)
    }
    .map_err(|e| Error::from_io(e, "map", name, path))?;
    if populate {
        // Best effort: an old kernel (EINVAL) just leaves the faults to the first reads.
        let _ = mmap.advise(memmap2::Advice::PopulateRead);
    }
    Ok((Buffer::from(bytes::Bytes::from_owner(mmap)), ends))
}

/// Private copies of a file's first and last [`Ends::SPAN`] bytes (the head is the whole file
/// if that is at most twice as long: one `pread` then), read with `pread` before the file is
/// mapped. The leading magic, the trailer, the
/// footer of a file of few batches and the message headers near its start are read from these
/// instead of the mapping: a read through the mapping faults its page in, and the kernel then
/// maps up to 16 pages around it, whose unmapping when the table is dropped is most of the
/// cost of attaching a one-batch table (`bench/attach.py`, one float64 column). Whatever a
/// copy does not hold is read from the mapping.
#[derive(Debug)]
struct Ends {
    head: Vec<u8>,
    tail: Vec<u8>,
    /// File offset of `tail[0]`.
    tail_start: usize,
}

impl Ends {
    const SPAN: u64 = 4096;

    fn read(file: &File, len: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::FileExt;
        let read = |offset: u64, n: u64| -> std::io::Result<Vec<u8>> {
            let mut bytes = vec![0; n as usize];
            file.read_exact_at(&mut bytes, offset)?;
            Ok(bytes)
        };
        let tail_start = len.saturating_sub(Self::SPAN);
        if len <= 2 * Self::SPAN {
            // Both ends in one read: the whole file is the head, the tail a copy of its end.
            let head = read(0, len)?;
            let tail = head[tail_start as usize..].to_vec();
            return Ok(Self {
                head,
                tail,
                tail_start: tail_start as usize,
            });
        }
        Ok(Self {
            head: read(0, Self::SPAN)?,
            tail: read(tail_start, Self::SPAN)?,
            tail_start: tail_start as usize,
        })
    }

    /// The ends of `file`, a whole file in memory.
    fn of(file: &[u8]) -> Self {
        let span = (Self::SPAN as usize).min(file.len());
        let tail_start = file.len() - span;
        Self {
            head: file[..span].to_vec(),
            tail: file[tail_start..].to_vec(),
            tail_start,
        }
    }

    /// The file's bytes `range` from a copy that holds them all, else from `map` (the whole
    /// file); `None` if `range` is not inside the file.
    fn get<'a>(&'a self, map: &'a [u8], range: Range<usize>) -> Option<&'a [u8]> {
        if range.end <= self.head.len() {
            self.head.get(range)
        } else if range.start >= self.tail_start {
            self.tail
                .get(range.start - self.tail_start..range.end - self.tail_start)
        } else {
            map.get(range)
        }
    }
}

/// What the file `meta` describes holds, mapped as `map`, with `schema` and no batches yet.
fn segment_info(
    name: &str,
    map: &[u8],
    schema: &SchemaRef,
    meta: &std::fs::Metadata,
) -> SegmentInfo {
    SegmentInfo {
        name: name.to_owned(),
        bytes: map.len() as u64,
        meta: SegmentMeta::from_metadata(schema.metadata()),
        batches: Vec::new(),
        schema: schema.clone(),
        mode: meta.permissions().mode() & 0o7777,
        uid: meta.uid(),
        identity: sys::file_identity(meta),
    }
}

/// The checked structure of an IPC file: every block and buffer range lies inside the file.
#[derive(Debug)]
struct Layout {
    schema: SchemaRef,
    /// The file's byte order is not this machine's: buffers are swapped into copies.
    swap: bool,
    dictionaries: Vec<LaidOut>,
    batches: Vec<(LaidOut, BatchInfo)>,
}

/// A block of a file: where its body lies, and its message, checked once.
#[derive(Debug)]
struct LaidOut {
    body: Range<usize>,
    message: CheckedMessage,
}

impl LaidOut {
    /// The body, in `map` (the file whose layout was read).
    fn body(&self, map: &Buffer) -> Buffer {
        map.slice_with_length(self.body.start, self.body.len())
    }
}

fn read_layout(name: &str, file: &[u8], ends: &Ends) -> Result<Layout> {
    let footer = Footer::read(name, file, ends)?;
    let dictionaries = footer.laid_out(footer.dictionaries(), BlockKind::Dictionary)?;
    let batches = footer.laid_out(footer.batches(), BlockKind::Batch)?;
    Ok(Layout {
        schema: footer.schema,
        swap: footer.swap,
        dictionaries: dictionaries.into_iter().map(|(block, _)| block).collect(),
        batches,
    })
}

/// The footers verified and decoded most recently (at most [`KNOWN_FOOTERS`], of at most
/// [`KNOWN_FOOTER_BYTES`] each), most recently used first: see [`KnownFooter::of`].
static KNOWN: Mutex<VecDeque<Arc<KnownFooter>>> = Mutex::new(VecDeque::new());
/// How many footers [`KNOWN`] keeps.
const KNOWN_FOOTERS: usize = 16;
/// The largest footer [`KNOWN`] keeps (a schema of a few thousand columns, or ten thousand
/// batches): larger ones are verified and decoded on every read.
const KNOWN_FOOTER_BYTES: usize = 256 << 10;

/// A private copy of a file's footer (its flatbuffer) that passed the flatbuffer verifier,
/// and the schema decoded from it.
#[derive(Debug)]
struct KnownFooter {
    bytes: Vec<u8>,
    schema: SchemaRef,
    /// The schema's byte order is not this machine's.
    swap: bool,
}

impl KnownFooter {
    /// The footer whose flatbuffer is `bytes`: one of [`KNOWN`] equal to them byte for byte
    /// (the same segment attached again, or another of the same schema and batch sizes), else
    /// a private copy of them verified and decoded now (and kept in [`KNOWN`]). Whatever
    /// another process writes into `bytes` meanwhile, what was verified is what is read: the
    /// copy. The verifier's verdict and the decoded schema depend on the bytes alone.
    fn of(bytes: &[u8]) -> std::result::Result<Arc<Self>, String> {
        let known = || KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut cache = known();
            let found = cache.iter().position(|k| k.bytes == bytes);
            if let Some(hit) = found.and_then(|i| cache.remove(i)) {
                cache.push_front(hit.clone());
                return Ok(hit);
            }
        }
        let copy = bytes.to_vec();
        let footer = arrow_ipc::root_as_footer(&copy).map_err(|e| format!("footer: {e}"))?;
        let schema = footer.schema().ok_or("footer has no schema")?;
        let (schema, swap) = read_schema(schema).map_err(|e| format!("footer {e}"))?;
        let new = Arc::new(Self {
            bytes: copy,
            schema: Arc::new(schema),
            swap,
        });
        if new.bytes.len() <= KNOWN_FOOTER_BYTES {
            let mut cache = known();
            cache.truncate(KNOWN_FOOTERS - 1);
            cache.push_front(new.clone());
        }
        Ok(new)
    }

    /// The footer's flatbuffer, read from the private copy.
    fn footer(&self) -> arrow_ipc::Footer<'_> {
        // SAFETY: `bytes` is a private copy (no other process can change it, and nothing here
        // mutates it after `of` made it) that passed the flatbuffer verifier in `of` before
        // this value existed; the verifier's verdict depends on the bytes alone.
        unsafe { arrow_ipc::root_as_footer_unchecked(&self.bytes) }
    }
}

/// The two kinds of blocks a file's footer lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Dictionary,
    Batch,
}

/// The checked footer of an IPC file: its schema, and the blocks it lists (each checked by
/// [`check_block`](Footer::check_block) before its message is used).
struct Footer<'a> {
    name: &'a str,
    file: &'a [u8],
    ends: &'a Ends,
    /// Where the footer starts: every block ends before it.
    start: usize,
    known: Arc<KnownFooter>,
    schema: SchemaRef,
    /// The file's byte order is not this machine's.
    swap: bool,
}

impl<'a> Footer<'a> {
    fn read(name: &'a str, file: &'a [u8], ends: &'a Ends) -> Result<Self> {
        let corrupt = |reason: String| Error::corrupt(name, reason);
        let len = file.len();
        if !ends.head.starts_with(MAGIC) {
            return Err(corrupt(
                "not an Arrow IPC file (no ARROW1 magic at the start)".into(),
            ));
        }
        let trailer: [u8; 10] = ends.tail[ends.tail.len() - 10..]
            .try_into()
            .expect("len >= 18");
        let footer_len = read_footer_length(trailer).map_err(|_| {
            corrupt("no ARROW1 magic at the end (truncated or not finished)".into())
        })?;
        let footer_end = len - 10;
        let start = footer_end
            .checked_sub(footer_len)
            .filter(|&start| start >= 8)
            .ok_or_else(|| corrupt(format!("footer length {footer_len} exceeds the file")))?;
        let footer_bytes = ends
            .get(file, start..footer_end)
            .ok_or_else(|| corrupt(format!("footer length {footer_len} exceeds the file")))?;
        let known = KnownFooter::of(footer_bytes).map_err(corrupt)?;
        Ok(Self {
            name,
            file,
            ends,
            start,
            schema: known.schema.clone(),
            swap: known.swap,
            known,
        })
    }

    /// [`read`](Self::read) the footer of the file `meta` describes, mapped as `file`, what it
    /// holds (no batches yet) and the validation `options` resolve to for it.
    fn resolve(
        name: &'a str,
        file: &'a [u8],
        ends: &'a Ends,
        meta: &std::fs::Metadata,
        options: &AttachOptions,
    ) -> Result<(Self, SegmentInfo, Validate)> {
        let footer = Self::read(name, file, ends)?;
        let info = segment_info(name, file, &footer.schema, meta);
        let validation = resolve_validation(options.validate.unwrap_or_default(), &info)?;
        Ok((footer, info, validation))
    }

    fn dictionaries(&self) -> impl Iterator<Item = &Block> + '_ {
        self.known.footer().dictionaries().into_iter().flatten()
    }

    fn batches(&self) -> impl Iterator<Item = &Block> + '_ {
        self.known.footer().recordBatches().into_iter().flatten()
    }

    /// `info` with every batch's rows and bytes, and where each record batch's message lies
    /// in `map` (the file), when another Arrow reader decodes each in place exactly as checked
    /// (see [`CheckedSegment`]); `None` as soon as one cannot be, or for a file in another
    /// byte order, with dictionaries or with a column not of a primitive type. Each batch is
    /// checked as [`check_batch_block`](Self::check_batch_block) checks it.
    fn in_place_messages(
        &self,
        map: &Buffer,
        mut info: SegmentInfo,
    ) -> Result<Option<(SegmentInfo, Vec<Range<usize>>)>> {
        let primitive = (self.schema.fields().iter()).all(|f| f.data_type().is_primitive());
        if self.swap || !primitive || self.dictionaries().next().is_some() {
            return Ok(None);
        }
        let mut messages = BatchMessages::default();
        let mut ranges = Vec::with_capacity(self.batch_count());
        for block in self.batches() {
            let place = self.place(block, BlockKind::Batch)?;
            let (start, len) =
                message_prefix(self.metadata(&place)?).map_err(|e| place.bad(self, &e))?;
            let (message, body, batch) = self.check_batch_block(block, &mut messages)?;
            let body_bytes = map.slice_with_length(body.start, body.len());
            if start.checked_add(len) != Some(place.meta_len)
                || body.start % 8 != 0
                || !message.readable_in_place(&self.schema, &body_bytes)
            {
                return Ok(None);
            }
            ranges.push(place.offset..body.end);
            info.batches.push(batch);
        }
        Ok(Some((info, ranges)))
    }

    fn batch_count(&self) -> usize {
        self.known.footer().recordBatches().map_or(0, |b| b.len())
    }

    /// Check that `block` lies between the leading magic and the footer, that its message is
    /// a `kind` and that every buffer the message declares lies inside the block's body
    /// (arrow-ipc slices with these numbers unchecked); returns the message and the batch's
    /// rows and bytes.
    fn check_block(
        &self,
        block: &Block,
        kind: BlockKind,
    ) -> Result<(arrow_ipc::Message<'a>, BatchInfo)> {
        let place = self.place(block, kind)?;
        let message = block_message(self.metadata(&place)?).map_err(|e| place.bad(self, &e))?;
        let batch = match (message.header_type(), kind) {
            (MessageHeader::RecordBatch, BlockKind::Batch) => message.header_as_record_batch(),
            (MessageHeader::DictionaryBatch, BlockKind::Dictionary) => {
                message.header_as_dictionary_batch().and_then(|d| d.data())
            }
            (other, _) => {
                return Err(place.bad(self, &format!("unexpected message type {other:?}")));
            }
        }
        .ok_or_else(|| place.bad(self, "message has no batch"))?;
        let checked =
            check_batch(batch, &message, place.body_len).map_err(|why| place.bad(self, &why))?;
        Ok((message, place.info(checked.rows())))
    }

    /// [`check_block`](Self::check_block) of a record batch block, each message verified
    /// and checked once per run of equal metadata (see [`BatchMessages`]); returns the checked
    /// message, where its body lies and the batch's rows and bytes.
    fn check_batch_block<'s>(
        &self,
        block: &Block,
        messages: &'s mut BatchMessages,
    ) -> Result<(CheckedBatch<'s>, Range<usize>, BatchInfo)>
    where
        'a: 's,
    {
        let place = self.place(block, BlockKind::Batch)?;
        let metadata = self.metadata(&place)?;
        let (start, _) = message_prefix(metadata).map_err(|e| place.bad(self, &e))?;
        let checked = messages
            .record_batch(&metadata[start..], place.body_len)
            .map_err(|why| place.bad(self, &why))?;
        let body_start = place.offset + place.meta_len;
        let info = place.info(checked.rows());
        Ok((checked, body_start..body_start + place.body_len, info))
    }

    /// Each of `blocks` (of `kind`) placed, and its message copied, verified and checked once
    /// ([`CheckedMessage`]), with the batch's rows and bytes.
    fn laid_out(
        &self,
        blocks: impl Iterator<Item = &'a Block>,
        kind: BlockKind,
    ) -> Result<Vec<(LaidOut, BatchInfo)>> {
        let mut out: Vec<(LaidOut, BatchInfo)> = Vec::new();
        for block in blocks {
            let place = self.place(block, kind)?;
            let metadata = self.metadata(&place)?;
            let (start, _) = message_prefix(metadata).map_err(|e| place.bad(self, &e))?;
            let previous = out.last().map(|(block, _)| &block.message);
            let dictionary = kind == BlockKind::Dictionary;
            let message =
                CheckedMessage::new(&metadata[start..], place.body_len, dictionary, previous)
                    .map_err(|e| place.bad(self, &e))?;
            let info = place.info(message.rows());
            let body = place.offset + place.meta_len;
            let body = body..body + place.body_len;
            out.push((LaidOut { body, message }, info));
        }
        Ok(out)
    }

    /// The metadata of the block at `place` (continuation marker and length included), from
    /// the private copy of the file's ends that holds it, else from the mapping.
    fn metadata(&self, place: &BlockPlace) -> Result<&'a [u8]> {
        (self.ends)
            .get(self.file, place.offset..place.offset + place.meta_len)
            .ok_or_else(|| place.bad(self, "outside the file"))
    }

    /// Where `block` lies, checked to be between the leading magic and the footer.
    fn place(&self, block: &Block, kind: BlockKind) -> Result<BlockPlace> {
        let bad = |why: &str| bad_block(self.name, kind, block, why);
        let (Ok(offset), Ok(meta_len), Ok(body_len)) = (
            usize::try_from(block.offset()),
            usize::try_from(block.metaDataLength()),
            usize::try_from(block.bodyLength()),
        ) else {
            return Err(bad("negative"));
        };
        let end = offset
            .checked_add(meta_len)
            .and_then(|e| e.checked_add(body_len));
        if offset < 8 || meta_len < 8 || end.is_none_or(|e| e > self.start) {
            return Err(bad("outside the file"));
        }
        Ok(BlockPlace {
            kind,
            block: *block,
            offset,
            meta_len,
            body_len,
        })
    }
}

/// The error for `block` of file `name`, a `kind` block, found bad for reason `why`.
fn bad_block(name: &str, kind: BlockKind, block: &Block, why: &str) -> Error {
    let what = match kind {
        BlockKind::Dictionary => "dictionary",
        BlockKind::Batch => "record batch",
    };
    Error::corrupt(
        name,
        format!(
            "{what} block at offset {} (metadata {}, body {}): {why}",
            block.offset(),
            block.metaDataLength(),
            block.bodyLength()
        ),
    )
}

/// A block of a file's footer whose ranges lie inside the file ([`Footer::place`]).
#[derive(Debug, Clone, Copy)]
struct BlockPlace {
    kind: BlockKind,
    block: Block,
    offset: usize,
    meta_len: usize,
    body_len: usize,
}

impl BlockPlace {
    fn info(&self, rows: u64) -> BatchInfo {
        BatchInfo {
            rows,
            bytes: (self.meta_len + self.body_len) as u64,
        }
    }

    /// The error for this block found bad for reason `why`.
    fn bad(&self, footer: &Footer<'_>, why: &str) -> Error {
        bad_block(footer.name, self.kind, &self.block, why)
    }
}

/// Visit `data` and all its descendants, with dotted paths (`pos.x`, `tags.item`).
pub(crate) fn visit(data: &ArrayData, path: &str, f: &mut dyn FnMut(&str, &ArrayData)) {
    f(path, data);
    let child_names: Vec<String> = match data.data_type() {
        DataType::Struct(fields) => fields.iter().map(|f| f.name().clone()).collect(),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => vec![f.name().clone()],
        DataType::Union(fields, _) => fields.iter().map(|(_, f)| f.name().clone()).collect(),
        DataType::Dictionary(..) => vec!["dictionary".into()],
        DataType::RunEndEncoded(r, v) => vec![r.name().clone(), v.name().clone()],
        _ => Vec::new(),
    };
    for (i, child) in data.child_data().iter().enumerate() {
        let child_name = child_names.get(i).cloned().unwrap_or_else(|| i.to_string());
        let child_path = if path.is_empty() {
            child_name
        } else {
            format!("{path}.{child_name}")
        };
        visit(child, &child_path, f);
    }
}

/// The buffers of one node (not its children), validity bitmap included.
fn buffers_of(data: &ArrayData) -> impl Iterator<Item = &Buffer> {
    data.buffers()
        .iter()
        .chain(data.nulls().map(|n| n.buffer()))
}

fn own_buffers_inside(data: &ArrayData, range: &Range<usize>) -> bool {
    buffers_of(data).all(|b| {
        let start = b.as_ptr() as usize;
        b.is_empty() || (start >= range.start && start + b.len() <= range.end)
    })
}

/// Dotted paths (top-level column first) of nodes with a buffer outside the mapping.
fn copied_paths(segment: &Segment) -> Vec<String> {
    let range = segment.map_range();
    let mut out: Vec<String> = Vec::new();
    for batch in &segment.batches {
        for (field, column) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            visit(&column.to_data(), field.name(), &mut |path, node| {
                if !own_buffers_inside(node, &range) && !out.iter().any(|p| p == path) {
                    out.push(path.to_owned());
                }
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of `bytes`, with [`Ends`] copied from them as [`Ends::read`] reads a file.
    fn layout_of(bytes: &[u8]) -> Result<Layout> {
        read_layout("x", bytes, &Ends::of(bytes))
    }

    #[test]
    fn ends_hold_every_byte_of_both_ends_whatever_the_length() {
        let span = Ends::SPAN as usize;
        let path = std::env::temp_dir().join(format!("shmarrow-ends-{}", std::process::id()));
        for len in [
            18,
            span - 1,
            span,
            span + 1,
            2 * span - 1,
            2 * span,
            2 * span + 1,
            5 * span,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&path, &bytes).unwrap();
            let ends = Ends::read(&File::open(&path).unwrap(), len as u64).unwrap();
            assert_eq!(
                &ends.head[..len.min(span)],
                &bytes[..len.min(span)],
                "{len}"
            );
            assert!(
                ends.tail.len() >= 10 && ends.tail_start + ends.tail.len() == len,
                "{len}"
            );
            assert_eq!(ends.tail, bytes[ends.tail_start..], "{len}");
            for (start, end) in [(0, 8), (len - 10, len), (len / 2, len / 2 + 5), (0, len)] {
                let got = ends.get(&bytes, start..end).unwrap();
                assert_eq!(got, &bytes[start..end], "{len}: {start}..{end}");
            }
            assert!(ends.get(&bytes, len - 4..len + 1).is_none(), "{len}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn schema_of_an_empty_file_is_checked() {
        assert!(layout_of(&[0u8; 18]).is_err());
        let mut bytes = b"ARROW1\0\0".to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(b"ARROW1");
        assert!(matches!(layout_of(&bytes), Err(Error::Corrupt { .. })));
    }
}
