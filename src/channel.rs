//! Streaming channels: a producer sends record batches to any number of consumers through a
//! fixed ring of slots in one shared-memory segment. Steady-state data moves at memory speed
//! (each batch is encoded straight into its slot, and consumers decode it in place); only
//! sequence numbers cross between processes. The byte layout and every memory ordering are
//! specified in `schemas/CHANNEL.md`.
//!
//! - **Broadcast**: every consumer receives every batch, in order (lossy mode aside).
//! - **Zero copy**: a received batch's buffers point into its slot. The batch *pins* the slot:
//!   the producer never overwrites a slot any consumer still holds a batch from, so a batch
//!   stays valid as long as it is alive (the price is backpressure while it is held).
//! - **Backpressure**: by default the producer waits while the slowest live consumer is a full
//!   ring behind. In lossy mode it overwrites slots consumers have not read yet (never pinned
//!   ones) and each consumer is told how many batches it missed.
//! - **Liveness**: waits sleep on futexes (no spinning unless asked for), and wake every 50 ms
//!   to check the other side by pid and start time: a dead producer is an error for consumers,
//!   a dead consumer stops holding the producer back.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{
    AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::SeqCst, fence,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::MetadataVersion;
use arrow_ipc::writer::{IpcDataGenerator, IpcWriteOptions, StreamWriter};
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};
use memmap2::MmapRaw;

use crate::error::{Error, Result};
use crate::ipc::{Decoded, Decoder, guarded, read_schema};
use crate::meta::{Lifetime, SegmentMeta};
use crate::name::SegmentDir;
use crate::publish::{CreateOptions, Created, commit, reserve_temp, with_meta};
use crate::sys::{self, ProcessId};

/// First bytes of a channel segment.
pub const CHANNEL_MAGIC: &[u8; 8] = b"SHMARCH1";
/// Version of the layout in `schemas/CHANNEL.md` (2: slots whose encoding failed are marked
/// unreadable; the creator's identity and lifetime are in the schema's metadata).
pub const CHANNEL_VERSION: u32 = 2;
/// Most entries a consumer table may have.
pub const MAX_CONSUMERS: u32 = 4096;
/// A slot's `seq` while the producer rewrites it (lossy mode).
const WRITING: u64 = u64::MAX;
/// A slot's `len` when its bytes are torn (the producer failed to encode a batch into it):
/// consumers skip it and count it missed, never decode it.
const UNREADABLE: u64 = u64::MAX;
/// How long a claim waits for the kernel to release a dead producer's lock.
const PRODUCER_TEARDOWN: Duration = Duration::from_secs(2);
/// How often a waiting side checks that the other side is alive.
const LIVENESS: Duration = Duration::from_millis(50);
const SLOT_HEADER: usize = 64;
/// The control header: 64 bytes of plain fields written once by the creator, then [`Live`].
const HEADER_LEN: usize = 192;
const LIVE_OFFSET: usize = 64;
/// The producer claim: an open-file-description write lock on these bytes of the channel
/// file (the `producer_pid` field), held by the producer's own open for its lifetime.
const CLAIM_START: i64 = 72;
const CLAIM_LEN: i64 = 4;
const MIN_SLOT_SIZE: u64 = 128;

/// The live part of the control header, at offset 64 (`#[repr(C)]`, 128 bytes; see
/// `schemas/CHANNEL.md`). Only atomics: other processes write it while we hold references.
/// The plain fields before it are never referenced; `Shared::open` reads them once.
#[repr(C)]
struct Live {
    // cache line 1: written by the producer
    write_seq: AtomicU64,
    producer_pid: AtomicU32,
    closed: AtomicU32,
    producer_start: AtomicU64,
    data_futex: AtomicU32,
    data_waiters: AtomicU32,
    _pad1: [AtomicU64; 4],
    // cache line 2: written by consumers
    space_futex: AtomicU32,
    space_waiters: AtomicU32,
    _pad2: [AtomicU64; 7],
}

/// One consumer's entry in the table (64 bytes).
#[repr(C)]
struct ConsumerEntry {
    /// 0 free, 1 active, 2 being claimed.
    state: AtomicU32,
    pid: AtomicU32,
    start: AtomicU64,
    /// Next sequence number this consumer will read.
    cursor: AtomicU64,
    /// Oldest sequence number it still holds a batch from (`u64::MAX`: none).
    pinned: AtomicU64,
    /// Batches it missed (lossy mode) or skipped as unreadable.
    missed: AtomicU64,
    _pad: [AtomicU64; 3],
}

/// Each slot starts with this (64 bytes), then the encapsulated IPC messages.
#[repr(C)]
struct SlotHeader {
    seq: AtomicU64,
    /// Bytes of messages, or [`UNREADABLE`].
    len: AtomicU64,
    _pad: [AtomicU64; 6],
}

const FLAG_LOSSY: u32 = 1;
const _: () = assert!(LIVE_OFFSET + std::mem::size_of::<Live>() == HEADER_LEN);
const _: () = assert!(std::mem::size_of::<ConsumerEntry>() == 64);
const _: () = assert!(std::mem::size_of::<SlotHeader>() == SLOT_HEADER);

/// Options for [`SegmentDir::create_channel`]. The values are checked when the channel is
/// created ([`ChannelError::InvalidOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOptions {
    slots: u32,
    slot_size: u64,
    max_consumers: u32,
    lossy: bool,
    create: CreateOptions,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            slots: 8,
            slot_size: 16 << 20,
            max_consumers: 16,
            lossy: false,
            create: CreateOptions::default(),
        }
    }
}

impl ChannelOptions {
    /// Slots in the ring (default 8; at least 1).
    pub fn slots(mut self, slots: u32) -> Self {
        self.slots = slots;
        self
    }

    /// Bytes per slot, rounded up to a multiple of 64 (default 16 MiB; at least 128). A batch
    /// whose encoded size (plus 64 bytes of slot header) exceeds it is refused with a clear
    /// error.
    pub fn slot_size(mut self, bytes: u64) -> Self {
        self.slot_size = bytes;
        self
    }

    /// Most consumers at once (default 16; 1 to [`MAX_CONSUMERS`]).
    pub fn max_consumers(mut self, n: u32) -> Self {
        self.max_consumers = n;
        self
    }

    /// Lossy mode: the producer never waits for slow readers; they are told what they missed.
    pub fn lossy(mut self, lossy: bool) -> Self {
        self.lossy = lossy;
        self
    }

    /// Replace, mode and lifetime of the channel segment, as for tables. An
    /// [`Owner`](Lifetime::Owner) channel is removed when the handle that created it
    /// ([`Created`], or the [`Producer`] of [`SegmentDir::create_producer`]) drops, and by
    /// `gc` once its creator and producer are dead and no live consumer holds it.
    pub fn create_options(mut self, options: CreateOptions) -> Self {
        self.create = options;
        self
    }

    /// The slot size as laid out (a multiple of 64), or why the options cannot make a channel.
    fn checked_slot_size(&self) -> std::result::Result<u64, ChannelError> {
        let bad = |why: String| Err(ChannelError::InvalidOptions(why));
        if self.slots == 0 {
            return bad("the ring needs at least 1 slot".into());
        }
        if self.max_consumers == 0 || self.max_consumers > MAX_CONSUMERS {
            return bad(format!(
                "max_consumers must be 1 to {MAX_CONSUMERS}, not {}",
                self.max_consumers
            ));
        }
        if self.slot_size < MIN_SLOT_SIZE {
            return bad(format!(
                "a slot must hold at least {MIN_SLOT_SIZE} bytes (64 are its header), not {}",
                self.slot_size
            ));
        }
        let slot_size = self.slot_size.checked_next_multiple_of(64);
        // The file (header, schema and the ring) must fit in an `off_t`.
        let ring = slot_size.and_then(|s| s.checked_mul(u64::from(self.slots)));
        match (slot_size, ring) {
            (Some(slot_size), Some(ring)) if ring <= (i64::MAX as u64) / 2 => Ok(slot_size),
            _ => bad(format!(
                "{} slots of {} bytes is more than a file can hold",
                self.slots, self.slot_size
            )),
        }
    }
}

/// How a side waits: sleep on a futex at once, or spin a while first (lower latency, burns a
/// core while spinning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitMode {
    /// Sleep on the futex right away.
    #[default]
    Block,
    /// Spin for this long before sleeping.
    SpinThenBlock(Duration),
}

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The file is not a channel segment of a version we read.
    #[error("not a channel segment: {0}")]
    NotAChannel(String),
    /// The [`ChannelOptions`] cannot make a channel.
    #[error("invalid channel options: {0}")]
    InvalidOptions(String),
    /// Another live process is the producer.
    #[error("another process (pid {0}) is its producer")]
    ProducerExists(u32),
    /// The producer closed the stream; no more batches can be sent.
    #[error("the channel was closed by its producer")]
    Closed,
    /// The producer died without closing the stream.
    #[error("the producer (pid {0}) died without closing the stream")]
    ProducerDied(u32),
    /// Every consumer entry is taken.
    #[error("all {0} consumer entries are taken")]
    TooManyConsumers(u32),
    /// A batch does not fit in a slot.
    #[error(
        "a batch of {needed} bytes does not fit in a {slot} byte slot (64 of them are the slot header); create the channel with a larger slot size"
    )]
    BatchTooLarge {
        /// Bytes the encoded batch needs, slot header included.
        needed: u64,
        /// The slot size.
        slot: u64,
    },
    /// The batch's fields differ from the channel's schema.
    #[error("batch fields differ from the channel schema: {0}")]
    SchemaMismatch(String),
    /// The wait for a batch (consumer) or for space (producer) timed out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// [`SegmentDir::subscribe_within`]: no channel appeared under the name in time.
    #[error("no channel of that name appeared within {0:?}")]
    NotCreated(Duration),
}

/// The shared mapping of a channel segment, with the header fields `open` checked (read once,
/// never again from shared memory) and checked accessors.
struct Shared {
    name: String,
    map: MmapRaw,
    slot_count: u64,
    slot_size: usize,
    slots_offset: usize,
    max_consumers: usize,
    consumers_offset: usize,
    lossy: bool,
    /// Decoded from a private copy of the schema message.
    schema: SchemaRef,
}

/// The plain header fields (offsets 0 to 64), as read once.
struct Geometry {
    magic: [u8; 8],
    version: u32,
    flags: u32,
    slot_count: u32,
    max_consumers: u32,
    slot_size: u64,
    schema_offset: u64,
    schema_len: u64,
    consumers_offset: u64,
    slots_offset: u64,
}

impl Geometry {
    /// Every offset and size consistent with a mapping of `len` bytes: the consumer table,
    /// the schema and the ring lie inside it, without overlapping, aligned.
    fn fits(&self, len: u64) -> bool {
        self.slot_count > 0
            && (1..=MAX_CONSUMERS).contains(&self.max_consumers)
            && self.slot_size >= MIN_SLOT_SIZE
            && self.slot_size.is_multiple_of(64)
            && self.slots_offset.is_multiple_of(64)
            && self.consumers_offset.is_multiple_of(64)
            && self.consumers_offset >= HEADER_LEN as u64
            && (64 * u64::from(self.max_consumers))
                .checked_add(self.consumers_offset)
                .is_some_and(|e| e <= self.schema_offset)
            && self
                .schema_offset
                .checked_add(self.schema_len)
                .is_some_and(|e| e <= self.slots_offset)
            && u64::from(self.slot_count)
                .checked_mul(self.slot_size)
                .and_then(|s| s.checked_add(self.slots_offset))
                == Some(len)
    }
}

impl Shared {
    /// Open and map channel `name` at `path` (read-write to take part, read-only to look),
    /// and check its header against the mapping. The open file comes back too: the producer
    /// claim is a lock on it, and whoever looks tests that lock through it.
    fn open(name: &str, path: &Path, writable: bool) -> Result<(Self, File)> {
        let (file, _) = sys::open_regular(path, writable).map_err(|e| match e {
            Ok(kind) => Error::NotAFile {
                name: name.to_owned(),
                kind,
            },
            Err(e) => Error::from_io(e, "open", name, path),
        })?;
        let map = if writable {
            MmapRaw::map_raw(&file)
        } else {
            memmap2::MmapOptions::new().map_raw_read_only(&file)
        }
        .map_err(|e| Error::from_io(e, "map", name, path))?;
        let bad = |why: String| channel_err(name, ChannelError::NotAChannel(why));
        // The mapping (not the file, which may have changed since) bounds every reference.
        let len = map.len();
        if len < HEADER_LEN {
            return Err(bad(format!("{len} bytes is too short")));
        }
        let word = |offset: usize| {
            // SAFETY: `offset + 8 <= 64 < len` (checked above) and 8-aligned in a page-aligned
            // mapping; an atomic load is sound even while another process writes the word, and
            // a relaxed one also on a read-only mapping.
            unsafe { &*map.as_ptr().add(offset).cast::<AtomicU64>() }
                .load(Relaxed)
                .to_le_bytes()
        };
        let low = |w: [u8; 8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let high = |w: [u8; 8]| u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        let g = Geometry {
            magic: word(0),
            version: low(word(8)),
            flags: high(word(8)),
            slot_count: low(word(16)),
            max_consumers: high(word(16)),
            slot_size: u64::from_le_bytes(word(24)),
            schema_offset: u64::from_le_bytes(word(32)),
            schema_len: u64::from_le_bytes(word(40)),
            consumers_offset: u64::from_le_bytes(word(48)),
            slots_offset: u64::from_le_bytes(word(56)),
        };
        if g.magic[..6] == *b"ARROW1" {
            return Err(bad(
                "it is a table (an Arrow IPC file): use attach to read it".into(),
            ));
        }
        if &g.magic != CHANNEL_MAGIC {
            return Err(bad("no channel magic".into()));
        }
        if g.version != CHANNEL_VERSION {
            return Err(bad(format!(
                "layout version {}, this shmarrow reads version {CHANNEL_VERSION}",
                g.version
            )));
        }
        if !g.fits(len as u64) {
            return Err(bad("inconsistent header sizes and offsets".into()));
        }
        // `fits` bounds every value by `len`, a `usize`: the conversions below are exact.
        let mut schema_copy = vec![0u8; g.schema_len as usize];
        // SAFETY: `schema_offset + schema_len <= slots_offset <= len` (`fits`): the source lies
        // in the mapping; the destination is a private buffer of that length. Copying once
        // means the schema we check is the schema we use, whatever other processes write.
        unsafe {
            std::ptr::copy_nonoverlapping(
                map.as_ptr().add(g.schema_offset as usize),
                schema_copy.as_mut_ptr(),
                schema_copy.len(),
            )
        };
        let schema = guarded(name, || decode_schema(name, &schema_copy))?;
        let shared = Shared {
            name: name.to_owned(),
            map,
            slot_count: u64::from(g.slot_count),
            slot_size: g.slot_size as usize,
            slots_offset: g.slots_offset as usize,
            max_consumers: g.max_consumers as usize,
            consumers_offset: g.consumers_offset as usize,
            lossy: g.flags & FLAG_LOSSY != 0,
            schema: Arc::new(schema),
        };
        Ok((shared, file))
    }

    fn header(&self) -> &Live {
        // SAFETY: the mapping is at least HEADER_LEN bytes (checked in `open`) and
        // page-aligned, so `Live` at offset 64 lies inside it, 64-aligned. Every field of
        // `Live` is an atomic, so shared references are sound while other processes write it.
        unsafe { &*self.map.as_ptr().add(LIVE_OFFSET).cast::<Live>() }
    }

    fn consumer(&self, i: usize) -> &ConsumerEntry {
        assert!(i < self.max_consumers);
        // SAFETY: entry `i < max_consumers` lies inside the mapping (`open` checked that the
        // table fits before the schema), at a 64-aligned offset; all its fields are atomics.
        unsafe {
            &*self
                .map
                .as_ptr()
                .add(self.consumers_offset + 64 * i)
                .cast::<ConsumerEntry>()
        }
    }

    fn slot_ptr(&self, seq: u64) -> *mut u8 {
        let index = (seq % self.slot_count) as usize;
        // In bounds: `open` checked slots_offset + slot_count * slot_size == len.
        self.map
            .as_mut_ptr()
            .wrapping_add(self.slots_offset + index * self.slot_size)
    }

    fn slot(&self, seq: u64) -> &SlotHeader {
        // SAFETY: the slot starts inside the mapping at a 64-aligned offset (see `slot_ptr`)
        // and is at least 128 bytes long; its header fields are all atomics.
        unsafe { &*self.slot_ptr(seq).cast::<SlotHeader>() }
    }

    /// Bump a futex word and wake its waiters if there are any.
    fn notify(word: &AtomicU32, waiters: &AtomicU32) {
        word.fetch_add(1, SeqCst);
        if waiters.load(SeqCst) > 0 {
            sys::futex_wake_all(word);
        }
    }

    /// Sleep until `word` changes from `seen`, at most `limit`, spinning first if asked.
    fn wait(word: &AtomicU32, waiters: &AtomicU32, seen: u32, limit: Duration, mode: WaitMode) {
        if let WaitMode::SpinThenBlock(spin) = mode {
            let until = Instant::now() + spin.min(limit);
            while Instant::now() < until {
                if word.load(SeqCst) != seen {
                    return;
                }
                std::hint::spin_loop();
            }
        }
        waiters.fetch_add(1, SeqCst);
        if word.load(SeqCst) == seen {
            sys::futex_wait(word, seen, limit);
        }
        waiters.fetch_sub(1, SeqCst);
    }

    /// The producer recorded in the header, if any: a pid and the start time of *that* pid,
    /// never a new pid with an old start time (which would make a live producer look dead).
    ///
    /// The claimer, holding the claim lock (so the only writer), stores `pid = 0`, then
    /// `start = new`, then `pid = new` (release stores). We load `pid`, `start`, `pid` again,
    /// each load followed by an acquire fence, and retry until the two `pid` loads agree:
    /// - if the first load saw the claimer's `pid = new`, the fence after it makes its earlier
    ///   `start = new` visible: the start load sees it (or a later claim's start, below);
    /// - if the start load saw a claim's `start = new`, the fence after it makes that claim's
    ///   earlier `pid = 0` visible: the second pid load sees 0 or a later store, never the pid
    ///   written before that claim. So an old pid read first and a new start read second make
    ///   the two pid loads differ (retry), unless the pid written after is numerically the
    ///   old one: a complete takeover by a process that reuses the pid between our loads,
    ///   i.e. the kernel cycling through every pid within three loads.
    ///
    /// A claimer that dies between its stores leaves values that no longer change, so the loop
    /// ends. Relaxed loads and fences only: sound on a read-only mapping (`channel_info`).
    fn producer(&self) -> Option<ProcessId> {
        let h = self.header();
        loop {
            let pid = h.producer_pid.load(Relaxed);
            fence(Acquire);
            let start_time = h.producer_start.load(Relaxed);
            fence(Acquire);
            if h.producer_pid.load(Relaxed) == pid {
                return (pid != 0).then_some(ProcessId { pid, start_time });
            }
        }
    }

    /// Whether a producer holds the channel now: another open of `file` holds the claim lock
    /// (the kernel drops it when the producer exits or dies, so no pid is guessed). A test
    /// that takes nothing, so it never makes a claim racing with it fail.
    fn claimed(&self, file: &File, path: &Path) -> Result<bool> {
        sys::range_locked(file, CLAIM_START, CLAIM_LEN)
            .map_err(|e| Error::from_io(e, "test the producer lock of", &self.name, path))
    }
}

fn channel_err(name: &str, e: ChannelError) -> Error {
    Error::Channel {
        name: name.to_owned(),
        source: e,
    }
}

/// V5, uncompressed, 64-byte aligned: every buffer in a slot can be used in place.
fn ipc_options() -> IpcWriteOptions {
    IpcWriteOptions::try_new(64, false, MetadataVersion::V5).expect("valid options")
}

impl SegmentDir {
    /// Create channel segment `name` for batches of `schema` (published atomically like a
    /// table; its slots are reserved up front, so a full directory fails here). Replacing a
    /// channel whose producer is alive is refused with [`ChannelError::ProducerExists`].
    /// The returned handle removes an [`Owner`](Lifetime::Owner) channel when dropped; to
    /// create and send through one handle, use [`create_producer`](Self::create_producer).
    ///
    /// # Errors
    /// [`ChannelError::InvalidOptions`]; otherwise as [`SegmentDir::create`].
    pub fn create_channel(
        &self,
        name: &str,
        schema: &Schema,
        options: &ChannelOptions,
    ) -> Result<Created> {
        let path = self.segment_path(name)?;
        let slot_size = options
            .checked_slot_size()
            .map_err(|e| channel_err(name, e))?;
        // Never pull a channel out from under its live producer (its consumers would be left
        // on the old file while new ones join the new one).
        if let Ok((existing, file)) = Shared::open(name, &path, false)
            && existing.claimed(&file, &path)?
        {
            let pid = existing.producer().map_or(0, |p| p.pid);
            return Err(channel_err(name, ChannelError::ProducerExists(pid)));
        }
        let meta = SegmentMeta::now(options.create.lifetime_value());
        let schema_msg = {
            let data_gen = IpcDataGenerator::default();
            let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
            let encoded = data_gen.schema_to_bytes_with_dictionary_tracker(
                &with_meta(schema, &meta),
                &mut tracker,
                &ipc_options(),
            );
            let mut bytes = Vec::new();
            arrow_ipc::writer::write_message(&mut bytes, encoded, &ipc_options()).map_err(|e| {
                Error::InvalidTable {
                    name: name.to_owned(),
                    source: e,
                }
            })?;
            bytes
        };
        let consumers_offset = HEADER_LEN as u64;
        let schema_offset = consumers_offset + 64 * u64::from(options.max_consumers);
        let slots_offset = (schema_offset + schema_msg.len() as u64).div_ceil(4096) * 4096;
        // `checked_slot_size` bounds the ring by i64::MAX / 2; the head is small.
        let total = slots_offset + u64::from(options.slots) * slot_size;
        let (temp, file, guard) = reserve_temp(self, name, &meta, &options.create, total)?;
        let mut head = vec![0u8; schema_offset as usize];
        let put = |buf: &mut [u8], at: usize, bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes)
        };
        put(&mut head, 0, CHANNEL_MAGIC);
        put(&mut head, 8, &CHANNEL_VERSION.to_le_bytes());
        put(
            &mut head,
            12,
            &(if options.lossy { FLAG_LOSSY } else { 0 }).to_le_bytes(),
        );
        put(&mut head, 16, &options.slots.to_le_bytes());
        put(&mut head, 20, &options.max_consumers.to_le_bytes());
        put(&mut head, 24, &slot_size.to_le_bytes());
        put(&mut head, 32, &schema_offset.to_le_bytes());
        put(&mut head, 40, &(schema_msg.len() as u64).to_le_bytes());
        put(&mut head, 48, &consumers_offset.to_le_bytes());
        put(&mut head, 56, &slots_offset.to_le_bytes());
        let io = |e: std::io::Error| Error::from_io(e, "write", name, &temp);
        (&file).write_all(&head).map_err(io)?;
        (&file).write_all(&schema_msg).map_err(io)?;
        drop::<File>(file);
        let created = commit(self, name, &temp, &options.create, total)?;
        guard.disarm();
        Ok(created)
    }

    /// Create channel `name` (as [`create_channel`](Self::create_channel)) and become its
    /// producer. Dropping the producer closes the stream and, for an
    /// [`Owner`](Lifetime::Owner) channel, removes it (consumers that joined read what was
    /// sent, then the end of the stream).
    ///
    /// # Errors
    /// As [`create_channel`](Self::create_channel) and [`producer`](Self::producer).
    pub fn create_producer(
        &self,
        name: &str,
        schema: &Schema,
        options: &ChannelOptions,
    ) -> Result<Producer> {
        let created = self.create_channel(name, schema, options)?;
        let mut producer = self.producer(name)?;
        producer.created = Some(created);
        Ok(producer)
    }

    /// Become the producer of channel `name` (one at a time: a live producer elsewhere is an
    /// error; a dead one is taken over). The claim is a lock the kernel holds for this
    /// producer's own open of the file until the producer is dropped or the process ends
    /// (`schemas/CHANNEL.md`), so of many processes or threads claiming at once exactly one
    /// wins.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Channel`] ([`ChannelError::ProducerExists`],
    /// [`ChannelError::Closed`], [`ChannelError::NotAChannel`]).
    pub fn producer(&self, name: &str) -> Result<Producer> {
        let path = self.segment_path(name)?;
        let (shared, file) = Shared::open(name, &path, true)?;
        let shared = Arc::new(shared);
        // The claim lives on an open of its own: a lock on the open that the mapping was made
        // through would outlive a killed producer for as long as anything still holds its
        // address space (the mapping references that open), and a takeover could be refused.
        let claim = sys::reopen(&file, true).map_err(|e| Error::from_io(e, "open", name, &path))?;
        drop(file);
        let h = shared.header();
        if h.closed.load(SeqCst) != 0 {
            return Err(channel_err(name, ChannelError::Closed));
        }
        // The claim is the kernel's: a write lock on our own open of the file, which no other
        // open can hold at the same time and which goes when we do, however we end.
        // A producer that is dead by pid and start time may still hold the lock for a moment:
        // its main thread is a zombie while the kernel finishes its other threads, which share
        // its descriptors. Only then is the lock retried, and for a bounded time.
        let teardown = Instant::now() + PRODUCER_TEARDOWN;
        let won = loop {
            if sys::try_lock_range(&claim, CLAIM_START, CLAIM_LEN)
                .map_err(|e| Error::from_io(e, "lock", name, &path))?
            {
                break true;
            }
            let dead = shared.producer().is_some_and(|p| !p.is_alive());
            if !dead || Instant::now() >= teardown {
                break false;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if !won {
            let pid = shared.producer().map_or(0, |p| p.pid);
            return Err(channel_err(name, ChannelError::ProducerExists(pid)));
        }
        // A producer that closed the stream stored `closed` before its lock went.
        if h.closed.load(SeqCst) != 0 {
            return Err(channel_err(name, ChannelError::Closed));
        }
        // Publish who we are for consumers, `ls` and `info`, in the order `Shared::producer`
        // relies on.
        let me = ProcessId::current();
        h.producer_pid.store(0, SeqCst);
        h.producer_start.store(me.start_time, SeqCst);
        h.producer_pid.store(me.pid, SeqCst);
        let schema = shared.schema.clone();
        let has_dictionaries = schema
            .flattened_fields()
            .iter()
            .any(|f| matches!(f.data_type(), DataType::Dictionary(..)));
        Ok(Producer {
            shared,
            _claim: claim,
            schema,
            writer: None,
            has_dictionaries,
            wait: WaitMode::Block,
            timeout: None,
            created: None,
        })
    }

    /// Join channel `name` as a consumer: it receives every batch sent from now on.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Channel`] ([`ChannelError::TooManyConsumers`],
    /// [`ChannelError::NotAChannel`]).
    pub fn subscribe(&self, name: &str) -> Result<Consumer> {
        let shared = Arc::new(Shared::open(name, &self.segment_path(name)?, true)?.0);
        let me = ProcessId::current();
        let index = (0..shared.max_consumers)
            .find(|&i| {
                let entry = shared.consumer(i);
                entry.state.compare_exchange(0, 2, SeqCst, SeqCst).is_ok()
            })
            .ok_or_else(|| {
                channel_err(
                    name,
                    ChannelError::TooManyConsumers(shared.max_consumers as u32),
                )
            })?;
        let entry = shared.consumer(index);
        entry.pid.store(me.pid, SeqCst);
        entry.start.store(me.start_time, SeqCst);
        entry.missed.store(0, SeqCst);
        entry.pinned.store(u64::MAX, SeqCst);
        // Hold everything while registering, then start at the write position seen *after*
        // becoming visible to the producer (schemas/CHANNEL.md, "joining").
        entry.cursor.store(0, SeqCst);
        entry.state.store(1, SeqCst);
        let next = shared.header().write_seq.load(SeqCst);
        entry.cursor.store(next, SeqCst);
        let schema = shared.schema.clone();
        Ok(Consumer {
            state: Arc::new(ConsumerState {
                shared,
                index,
                pins: Mutex::new(BTreeMap::new()),
            }),
            schema,
            next,
            wait: WaitMode::Block,
            timeout: None,
        })
    }

    /// [`subscribe`](Self::subscribe), waiting up to `timeout` (`None`: forever) for channel
    /// `name` to appear, as a consumer started before its producer does.
    ///
    /// # Errors
    /// [`ChannelError::NotCreated`] once `timeout` has passed without the channel; otherwise
    /// as [`subscribe`](Self::subscribe) (a segment that is not a channel fails at once).
    pub fn subscribe_within(&self, name: &str, timeout: Option<Duration>) -> Result<Consumer> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.subscribe(name) {
                Err(Error::NotFound { .. }) => {}
                other => return other,
            }
            let left = match timeout {
                None => Duration::MAX,
                Some(t) => t.saturating_sub(started.elapsed()),
            };
            if left.is_zero() {
                return Err(channel_err(
                    name,
                    ChannelError::NotCreated(timeout.unwrap_or_default()),
                ));
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// What channel `name` is and who uses it, read without joining it (the file is opened
    /// read-only).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::PermissionDenied`], [`Error::NotAFile`],
    /// [`ChannelError::NotAChannel`].
    pub fn channel_info(&self, name: &str) -> Result<ChannelInfo> {
        let path = self.segment_path(name)?;
        let (shared, file) = Shared::open(name, &path, false)?;
        let stat =
            std::fs::symlink_metadata(&path).map_err(|e| Error::from_io(e, "stat", name, &path))?;
        // Only relaxed loads below: the mapping is read-only (see `Shared::producer`).
        let h = shared.header();
        let producer = shared.producer();
        let producer_alive = shared.claimed(&file, &path)?;
        let consumers = (0..shared.max_consumers)
            .map(|i| shared.consumer(i))
            .filter(|c| c.state.load(Relaxed) == 1)
            .map(|c| {
                let process = ProcessId {
                    pid: c.pid.load(Relaxed),
                    start_time: c.start.load(Relaxed),
                };
                ConsumerInfo {
                    process,
                    alive: process.is_alive(),
                    next: c.cursor.load(Relaxed),
                    missed: c.missed.load(Relaxed),
                }
            })
            .collect();
        Ok(ChannelInfo {
            name: name.to_owned(),
            bytes: shared.map.len() as u64,
            slots: shared.slot_count as u32,
            slot_size: shared.slot_size as u64,
            max_consumers: shared.max_consumers as u32,
            lossy: shared.lossy,
            meta: SegmentMeta::from_metadata(shared.schema.metadata()),
            schema: shared.schema.clone(),
            producer,
            producer_alive,
            closed: h.closed.load(Relaxed) != 0,
            sent: h.write_seq.load(Relaxed),
            consumers,
            mode: stat.mode() & 0o7777,
            uid: stat.uid(),
        })
    }
}

/// A process that joined a channel (see [`ChannelInfo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The consumer process.
    pub process: ProcessId,
    /// Whether it is still running (a dead consumer's entry is freed by the producer).
    pub alive: bool,
    /// The next sequence number it will read (`u64::MAX` once it stopped reading but still
    /// holds batches).
    pub next: u64,
    /// Batches it missed (lossy mode) or skipped as unreadable.
    pub missed: u64,
}

/// What a channel segment is and who uses it ([`SegmentDir::channel_info`]).
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    /// The channel's name.
    pub name: String,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Slots in the ring.
    pub slots: u32,
    /// Bytes per slot (64 of them are the slot header).
    pub slot_size: u64,
    /// Entries in the consumer table.
    pub max_consumers: u32,
    /// Whether the producer overwrites batches slow consumers have not read.
    pub lossy: bool,
    /// The batches' schema (with the `shmarrow.` metadata keys).
    pub schema: SchemaRef,
    /// Creator, creation time and lifetime; `None` if the keys are missing.
    pub meta: Option<SegmentMeta>,
    /// The producer recorded in the channel (`None`: none now). Information: a producer
    /// taking over writes its identity just after it holds the claim.
    pub producer: Option<ProcessId>,
    /// Whether a producer holds the channel now (the kernel's claim lock, released when the
    /// producer ends, however it ends).
    pub producer_alive: bool,
    /// Whether the producer closed the stream.
    pub closed: bool,
    /// Batches sent so far.
    pub sent: u64,
    /// The consumer entries in use.
    pub consumers: Vec<ConsumerInfo>,
    /// Permission bits of the file.
    pub mode: u32,
    /// Owner uid of the file.
    pub uid: u32,
}

impl ChannelInfo {
    /// Consumers that are still running.
    pub fn live_consumers(&self) -> usize {
        self.consumers.iter().filter(|c| c.alive).count()
    }

    /// Whether `gc` may remove it: an [`Owner`](Lifetime::Owner) channel whose creator and
    /// producer are dead and that no live consumer holds.
    pub fn is_garbage(&self) -> bool {
        self.meta
            .is_some_and(|m| m.lifetime == Lifetime::Owner && !m.creator.is_alive())
            && !self.producer_alive
            && self.live_consumers() == 0
    }
}

/// The schema message of the header (untrusted bytes, from a private copy; callers guard it).
fn decode_schema(name: &str, bytes: &[u8]) -> Result<Schema> {
    let bad = |why: String| channel_err(name, ChannelError::NotAChannel(why));
    if bytes.len() < 8 {
        return Err(bad("schema message too short".into()));
    }
    let fb = if bytes[..4] == [0xff; 4] {
        &bytes[8..]
    } else {
        &bytes[4..]
    };
    let message = arrow_ipc::root_as_message(fb).map_err(|e| bad(format!("schema: {e}")))?;
    let ipc = message
        .header_as_schema()
        .ok_or_else(|| bad("no schema message".into()))?;
    let (schema, swap) = read_schema(ipc).map_err(bad)?;
    if swap {
        return Err(bad(
            "a schema in the other byte order (a channel carries its machine's own)".into(),
        ));
    }
    Ok(schema)
}

/// Writes into one slot's message area through a raw pointer; `None`: discard (the schema
/// message the stream writer emits on creation).
struct SlotSink {
    target: Option<(*mut u8, usize)>,
    pos: usize,
    overflow: bool,
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
            // SAFETY: `pos + len <= cap` (checked above) and `ptr..ptr + cap` is this slot's
            // message area inside the live mapping, which no consumer reads while the producer
            // writes it (backpressure, or the pin protocol in lossy mode).
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), ptr.add(self.pos), buf.len()) };
        }
        self.pos += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The producing end of a channel (see [`SegmentDir::producer`]). Dropping it closes the
/// stream: consumers then receive the remaining batches and `None`.
pub struct Producer {
    shared: Arc<Shared>,
    /// Our open of the channel file, holding the claim lock: closed (releasing it) only after
    /// `drop` has stored `closed` and cleared `producer_pid`.
    _claim: File,
    schema: SchemaRef,
    writer: Option<StreamWriter<SlotSink>>,
    has_dictionaries: bool,
    wait: WaitMode,
    timeout: Option<Duration>,
    /// The channel this producer created ([`SegmentDir::create_producer`]): dropped after the
    /// stream is closed, which removes an owner channel.
    created: Option<Created>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("channel", &self.shared.name)
            .finish()
    }
}

impl Producer {
    /// How to wait for space (default: block).
    pub fn wait_mode(mut self, mode: WaitMode) -> Self {
        self.wait = mode;
        self
    }

    /// Give up waiting for space after `timeout` (default: wait as long as a live consumer
    /// holds the ring; dead ones are reaped).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Change the timeout of later sends (see [`timeout`](Self::timeout)).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The channel's schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Batches sent so far (the next sequence number).
    pub fn sent(&self) -> u64 {
        self.shared.header().write_seq.load(SeqCst)
    }

    /// Live consumers right now.
    pub fn consumers(&self) -> usize {
        (0..self.shared.max_consumers)
            .filter(|&i| self.shared.consumer(i).state.load(SeqCst) == 1)
            .count()
    }

    /// Send one batch: wait for a free slot, encode the batch straight into it, publish it with
    /// one atomic store and wake the consumers.
    ///
    /// # Errors
    /// [`ChannelError::SchemaMismatch`], [`ChannelError::BatchTooLarge`] (nothing is sent),
    /// [`ChannelError::Timeout`], [`ChannelError::Closed`].
    pub fn send(&mut self, batch: &RecordBatch) -> Result<()> {
        let name = self.shared.name.clone();
        if batch.schema_ref().fields() != self.schema.fields() {
            return Err(channel_err(
                &name,
                ChannelError::SchemaMismatch(format!("{:?}", batch.schema_ref().fields())),
            ));
        }
        let shared = self.shared.clone();
        let h = shared.header();
        if h.closed.load(SeqCst) != 0 {
            return Err(channel_err(&name, ChannelError::Closed));
        }
        let seq = h.write_seq.load(SeqCst);
        self.wait_for_slot(seq)?;
        let slot_ptr = self.shared.slot_ptr(seq);
        let cap = self.shared.slot_size - SLOT_HEADER;
        let written = self.encode(batch, slot_ptr.wrapping_add(SLOT_HEADER), cap);
        let slot = self.shared.slot(seq);
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                // Nothing was published, but the slot's old bytes may be partly overwritten:
                // mark them unreadable (a lagging lossy consumer skips the slot and counts it
                // missed instead of decoding torn bytes), then give the slot back to its old
                // sequence number.
                slot.len.store(UNREADABLE, SeqCst);
                slot.seq
                    .store(seq.wrapping_sub(self.shared.slot_count), SeqCst);
                return Err(e);
            }
        };
        slot.len.store(len as u64, SeqCst);
        slot.seq.store(seq, SeqCst);
        h.write_seq.store(seq + 1, SeqCst);
        Shared::notify(&h.data_futex, &h.data_waiters);
        Ok(())
    }

    /// Encode `batch` into `len` bytes at `ptr`; the exact size on overflow.
    fn encode(&mut self, batch: &RecordBatch, ptr: *mut u8, cap: usize) -> Result<usize> {
        let name = self.shared.name.clone();
        let invalid = |e: ArrowError| Error::InvalidTable {
            name: name.clone(),
            source: e,
        };
        // Every slot is self-contained: with dictionaries, a fresh writer re-emits them.
        if self.writer.is_none() || self.has_dictionaries {
            let sink = SlotSink {
                target: None,
                pos: 0,
                overflow: false,
            };
            self.writer = Some(
                StreamWriter::try_new_with_options(sink, &self.schema, ipc_options())
                    .map_err(invalid)?,
            );
        }
        let writer = self.writer.as_mut().expect("just set");
        *writer.get_mut() = SlotSink {
            target: Some((ptr, cap)),
            pos: 0,
            overflow: false,
        };
        match writer.write(batch) {
            Ok(()) => Ok(writer.get_ref().pos),
            Err(_) if writer.get_ref().overflow => {
                // Measure the exact size for the error, then drop the half-used writer.
                let mut counter = StreamWriter::try_new_with_options(
                    SlotSink {
                        target: None,
                        pos: 0,
                        overflow: false,
                    },
                    &self.schema,
                    ipc_options(),
                )
                .map_err(invalid)?;
                let before = counter.get_ref().pos;
                counter.write(batch).map_err(invalid)?;
                let needed = (counter.get_ref().pos - before + SLOT_HEADER) as u64;
                self.writer = None;
                Err(channel_err(
                    &name,
                    ChannelError::BatchTooLarge {
                        needed,
                        slot: self.shared.slot_size as u64,
                    },
                ))
            }
            Err(e) => {
                self.writer = None;
                Err(invalid(e))
            }
        }
    }

    /// Wait until slot `seq % slots` may be written: no live consumer still needs the batch
    /// in it (it was read and released, or, in lossy mode, at least released).
    fn wait_for_slot(&self, seq: u64) -> Result<()> {
        let s = &self.shared;
        let h = s.header();
        let started = Instant::now();
        let slot = s.slot(seq);
        let old = seq.wrapping_sub(s.slot_count);
        let mut last_reap = Instant::now();
        loop {
            if seq < s.slot_count || self.oldest_held() > old || self.oldest_held() == u64::MAX {
                if !s.lossy {
                    slot.seq.store(WRITING, SeqCst);
                    return Ok(());
                }
                // Lossy: announce the rewrite, then make sure nobody pinned the old batch
                // meanwhile (the consumer pins, then checks `seq`: one of us sees the other).
                slot.seq.store(WRITING, SeqCst);
                if seq < s.slot_count || self.oldest_held() > old {
                    return Ok(());
                }
                slot.seq.store(old, SeqCst);
            }
            if let Some(t) = self.timeout
                && started.elapsed() >= t
            {
                return Err(channel_err(&s.name, ChannelError::Timeout(t)));
            }
            let seen = h.space_futex.load(SeqCst);
            if self.oldest_held() > old {
                continue;
            }
            Shared::wait(&h.space_futex, &h.space_waiters, seen, LIVENESS, self.wait);
            if last_reap.elapsed() >= LIVENESS {
                self.reap_dead_consumers();
                last_reap = Instant::now();
            }
        }
    }

    /// The oldest sequence number any live consumer still needs (`u64::MAX`: none).
    fn oldest_held(&self) -> u64 {
        let s = &self.shared;
        (0..s.max_consumers)
            .map(|i| s.consumer(i))
            .filter(|c| c.state.load(SeqCst) == 1)
            .map(|c| {
                let pinned = c.pinned.load(SeqCst);
                if s.lossy {
                    pinned
                } else {
                    pinned.min(c.cursor.load(SeqCst))
                }
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    fn reap_dead_consumers(&self) {
        let s = &self.shared;
        for i in 0..s.max_consumers {
            let c = s.consumer(i);
            if c.state.load(SeqCst) == 1 {
                let who = ProcessId {
                    pid: c.pid.load(SeqCst),
                    start_time: c.start.load(SeqCst),
                };
                if !who.is_alive() {
                    let _ = c.state.compare_exchange(1, 0, SeqCst, SeqCst);
                }
            }
        }
    }

    /// End the stream: consumers receive what was sent, then `None`.
    pub fn close(self) {}
}

impl Drop for Producer {
    fn drop(&mut self) {
        let h = self.shared.header();
        h.closed.store(1, SeqCst);
        Shared::notify(&h.data_futex, &h.data_waiters);
        h.producer_pid.store(0, SeqCst);
    }
}

/// A consumer's entry and pins, shared by the [`Consumer`] and every batch it handed out: the
/// entry is freed only when all of them are gone.
struct ConsumerState {
    shared: Arc<Shared>,
    index: usize,
    /// Sequence numbers of slots with live batches, with their counts.
    pins: Mutex<BTreeMap<u64, usize>>,
}

impl ConsumerState {
    fn entry(&self) -> &ConsumerEntry {
        self.shared.consumer(self.index)
    }

    fn pin(&self, seq: u64) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        *pins.entry(seq).or_insert(0) += 1;
        let oldest = *pins.keys().next().expect("just inserted");
        self.entry().pinned.store(oldest, SeqCst);
    }

    fn unpin(&self, seq: u64) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = pins.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&seq);
            }
        }
        let oldest = pins.keys().next().copied().unwrap_or(u64::MAX);
        self.entry().pinned.store(oldest, SeqCst);
        drop(pins);
        let h = self.shared.header();
        Shared::notify(&h.space_futex, &h.space_waiters);
    }
}

impl Drop for ConsumerState {
    fn drop(&mut self) {
        let entry = self.entry();
        entry.pinned.store(u64::MAX, SeqCst);
        entry.state.store(0, SeqCst);
        let h = self.shared.header();
        Shared::notify(&h.space_futex, &h.space_waiters);
    }
}

/// The bytes of one pinned slot: the owner of a received batch's buffers.
struct PinnedSlot {
    state: Arc<ConsumerState>,
    seq: u64,
    ptr: *const u8,
    len: usize,
}

// SAFETY: `ptr..ptr + len` lies in the mapping kept alive by `state.shared`; the slot is pinned
// for as long as this value lives, so no process writes those bytes meanwhile (schemas/
// CHANNEL.md); reading them from any thread is then sound.
unsafe impl Send for PinnedSlot {}
// SAFETY: as for `Send`: the bytes are immutable while pinned.
unsafe impl Sync for PinnedSlot {}

impl AsRef<[u8]> for PinnedSlot {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see the `Send` impl: in bounds of the live mapping and not written while
        // this pin exists.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for PinnedSlot {
    fn drop(&mut self) {
        self.state.unpin(self.seq);
    }
}

/// A batch received from a channel.
#[derive(Debug, Clone)]
pub struct Received {
    /// The batch; its buffers point into the slot, which stays pinned while any of them lives.
    pub batch: RecordBatch,
    /// Its sequence number (batches sent before it by the producer).
    pub seq: u64,
    /// Batches this consumer missed just before this one (lossy mode; always 0 otherwise).
    pub missed: u64,
}

/// The consuming end of a channel (see [`SegmentDir::subscribe`]).
pub struct Consumer {
    state: Arc<ConsumerState>,
    schema: SchemaRef,
    next: u64,
    wait: WaitMode,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("channel", &self.state.shared.name)
            .field("next", &self.next)
            .finish()
    }
}

impl Consumer {
    /// How to wait for data (default: block).
    pub fn wait_mode(mut self, mode: WaitMode) -> Self {
        self.wait = mode;
        self
    }

    /// Give up waiting for a batch after `timeout` (default: wait while the producer lives).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Change the timeout of later receives (see [`timeout`](Self::timeout)).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The channel's schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Total batches missed so far (lossy mode), unreadable slots skipped included.
    pub fn missed(&self) -> u64 {
        self.state.entry().missed.load(SeqCst)
    }

    /// The next batch, or `None` once the producer closed the stream and everything sent was
    /// received.
    ///
    /// # Errors
    /// [`ChannelError::ProducerDied`] (detected within about 50 ms), [`ChannelError::Timeout`],
    /// [`Error::Corrupt`] for a slot that does not decode.
    pub fn recv(&mut self) -> Result<Option<Received>> {
        let state = self.state.clone();
        let s = &state.shared;
        let h = s.header();
        let entry = state.entry();
        let started = Instant::now();
        let mut last_check: Option<Instant> = None;
        let mut missed = 0;
        loop {
            let written = h.write_seq.load(SeqCst);
            if self.next < written {
                if s.lossy && written - self.next > s.slot_count {
                    let skip = written - s.slot_count - self.next;
                    missed += skip;
                    entry.missed.fetch_add(skip, SeqCst);
                    self.next += skip;
                }
                let seq = self.next;
                state.pin(seq);
                let slot = s.slot(seq);
                // `len` after `seq`: the producer stores `len` first, then `seq`.
                let (slot_seq, len) = (slot.seq.load(SeqCst), slot.len.load(SeqCst));
                if slot_seq != seq || len == UNREADABLE {
                    // Overwritten (lossy mode; otherwise it cannot happen), or torn by an
                    // encoding that failed: skip it, count it, never decode it.
                    state.unpin(seq);
                    if slot_seq != seq && !s.lossy {
                        return Err(Error::corrupt(
                            &s.name,
                            format!("slot of batch {seq} was overwritten"),
                        ));
                    }
                    missed += 1;
                    entry.missed.fetch_add(1, SeqCst);
                    self.next += 1;
                    entry.cursor.store(self.next, SeqCst);
                    continue;
                }
                self.next += 1;
                entry.cursor.store(self.next, SeqCst);
                let pinned = PinnedSlot {
                    state: state.clone(),
                    seq,
                    ptr: s.slot_ptr(seq).wrapping_add(SLOT_HEADER),
                    len: usize::try_from(len)
                        .unwrap_or(usize::MAX)
                        .min(s.slot_size - SLOT_HEADER),
                };
                // The pin taken above now belongs to `pinned`: dropping the last buffer of the
                // batch (or a decode error) releases it.
                let bytes = Buffer::from(bytes::Bytes::from_owner(pinned));
                let batch = guarded(&s.name, || decode_slot(&s.name, &self.schema, &bytes))?;
                return Ok(Some(Received { batch, seq, missed }));
            }
            if h.closed.load(SeqCst) != 0 && self.next >= h.write_seq.load(SeqCst) {
                return Ok(None);
            }
            // Check the producer at most every LIVENESS (reading /proc costs microseconds, and
            // a wait that found no data is the common case on a fast stream).
            if h.closed.load(SeqCst) == 0
                && last_check.is_none_or(|t: Instant| t.elapsed() >= LIVENESS)
            {
                last_check = Some(Instant::now());
                // A producer that closed stored `closed` before it exited: re-check it, or a
                // clean close just before an exit would look like a death.
                if let Some(who) = s.producer()
                    && !who.is_alive()
                    && h.closed.load(SeqCst) == 0
                {
                    return Err(channel_err(&s.name, ChannelError::ProducerDied(who.pid)));
                }
            }
            let limit = match self.timeout {
                Some(t) if started.elapsed() >= t => {
                    return Err(channel_err(&s.name, ChannelError::Timeout(t)));
                }
                Some(t) => (t - started.elapsed()).min(LIVENESS),
                None => LIVENESS,
            };
            let seen = h.data_futex.load(SeqCst);
            if h.write_seq.load(SeqCst) > self.next || h.closed.load(SeqCst) != 0 {
                continue;
            }
            Shared::wait(&h.data_futex, &h.data_waiters, seen, limit, self.wait);
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // No more reading: only batches still alive (pins) hold the producer back now.
        self.state.entry().cursor.store(u64::MAX, SeqCst);
        let h = self.state.shared.header();
        Shared::notify(&h.space_futex, &h.space_waiters);
    }
}

impl Iterator for Consumer {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.recv().transpose().map(|r| r.map(|r| r.batch))
    }
}

/// Decode the messages of one slot (dictionaries, then the record batch) in place.
fn decode_slot(name: &str, schema: &SchemaRef, bytes: &Buffer) -> Result<RecordBatch> {
    let corrupt = |why: String| Error::corrupt(name, format!("channel slot: {why}"));
    let mut decoder = Decoder::with_schema(name, schema.clone(), false);
    let mut pos = 0usize;
    while pos + 8 <= bytes.len() {
        let word = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
        let (meta_start, meta_len) = if word == 0xffff_ffff {
            let len = i32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
            (pos + 8, len)
        } else {
            (pos + 4, word as i32)
        };
        let meta_len =
            usize::try_from(meta_len).map_err(|_| corrupt("negative metadata length".into()))?;
        if meta_len == 0 {
            break;
        }
        let meta_end = meta_start
            .checked_add(meta_len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| corrupt("metadata past the slot".into()))?;
        // A private copy of the (small) metadata: what the verifier checked is what is used,
        // whatever another process writes into the slot meanwhile.
        let metadata = bytes[meta_start..meta_end].to_vec();
        let message = arrow_ipc::root_as_message(&metadata)
            .map_err(|e| corrupt(format!("message header: {e}")))?;
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| corrupt("negative body length".into()))?;
        let body_end = meta_end
            .checked_add(body_len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| corrupt("body past the slot".into()))?;
        let body = bytes.slice_with_length(meta_end, body_len);
        if let Decoded::Batch(batch) = decoder.decode_message(&message, &body)? {
            return Ok(batch);
        }
        pos = body_end;
    }
    Err(corrupt("no record batch in the slot".into()))
}
