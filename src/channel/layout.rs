//! The bytes of a channel segment (`schemas/CHANNEL.md`): the control header, the consumer
//! table and the slots, and [`Shared`], a checked mapping of them.

use std::fs::File;
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::SeqCst, fence,
};
use std::time::{Duration, Instant};

use arrow_schema::{Schema, SchemaRef};
use memmap2::MmapRaw;

use super::{CHANNEL_MAGIC, CHANNEL_VERSION, MAX_CONSUMERS, WaitMode};
use crate::error::{ChannelError, Error, Result};
use crate::ipc::{guarded, message_prefix, read_schema};
use crate::sys::{self, ProcessId};

/// A slot's `seq` while the producer rewrites it (lossy mode).
pub(super) const WRITING: u64 = u64::MAX;
/// A slot's `len` when its bytes are torn (the producer failed to encode a batch into it):
/// consumers skip it and count it missed, never decode it.
pub(super) const UNREADABLE: u64 = u64::MAX;
/// How often a waiting side checks that the other side is alive.
pub(super) const LIVENESS: Duration = Duration::from_millis(50);
pub(super) const SLOT_HEADER: usize = size_of::<SlotHeader>();
/// The plain fields come first, then [`Live`].
const LIVE_OFFSET: usize = size_of::<Geometry>();
/// The control header: [`Geometry`], written once by the creator, then [`Live`].
pub(super) const HEADER_LEN: usize = LIVE_OFFSET + size_of::<Live>();
/// The producer claim: an open-file-description write lock on these bytes of the channel
/// file (the `producer_pid` field), held by the producer's own open for its lifetime.
const CLAIM_START: i64 = (LIVE_OFFSET + offset_of!(Live, producer_pid)) as i64;
const CLAIM_LEN: i64 = size_of::<AtomicU32>() as i64;
pub(super) const MIN_SLOT_SIZE: u64 = 128;
pub(super) const FLAG_LOSSY: u32 = 1;

/// The plain header fields (offsets 0 to 64, `#[repr(C)]`): written once by the creator before
/// the channel is published. Never referenced in the mapping (another process could write
/// them): [`Geometry::read`] copies them out once, [`Geometry::to_bytes`] lays them out.
#[repr(C)]
pub(super) struct Geometry {
    pub(super) magic: [u8; 8],
    pub(super) version: u32,
    pub(super) flags: u32,
    pub(super) slot_count: u32,
    pub(super) max_consumers: u32,
    pub(super) slot_size: u64,
    pub(super) schema_offset: u64,
    pub(super) schema_len: u64,
    pub(super) consumers_offset: u64,
    pub(super) slots_offset: u64,
}

/// The live part of the control header, after [`Geometry`] (`#[repr(C)]`, 128 bytes; see
/// `schemas/CHANNEL.md`). Only atomics: other processes write it while we hold references.
#[repr(C)]
pub(super) struct Live {
    // cache line 1: written by the producer
    pub(super) write_seq: AtomicU64,
    pub(super) producer_pid: AtomicU32,
    pub(super) closed: AtomicU32,
    pub(super) producer_start: AtomicU64,
    pub(super) data_futex: AtomicU32,
    pub(super) data_waiters: AtomicU32,
    _pad1: [AtomicU64; 4],
    // cache line 2: written by consumers
    pub(super) space_futex: AtomicU32,
    pub(super) space_waiters: AtomicU32,
    _pad2: [AtomicU64; 7],
}

/// One consumer's entry in the table (64 bytes).
#[repr(C)]
pub(super) struct ConsumerEntry {
    /// 0 free, 1 active, 2 being claimed.
    pub(super) state: AtomicU32,
    pub(super) pid: AtomicU32,
    pub(super) start: AtomicU64,
    /// Next sequence number this consumer will read.
    pub(super) cursor: AtomicU64,
    /// Oldest sequence number it still holds a batch from (`u64::MAX`: none).
    pub(super) pinned: AtomicU64,
    /// Batches it missed (lossy mode) or skipped as unreadable.
    pub(super) missed: AtomicU64,
    _pad: [AtomicU64; 3],
}

/// Each slot starts with this (64 bytes), then the encapsulated IPC messages.
#[repr(C)]
pub(super) struct SlotHeader {
    pub(super) seq: AtomicU64,
    /// Bytes of messages, or [`UNREADABLE`].
    pub(super) len: AtomicU64,
    _pad: [AtomicU64; 6],
}

const _: () = assert!(LIVE_OFFSET == 64);
const _: () = assert!(HEADER_LEN == 192);
const _: () = assert!(offset_of!(Live, space_futex) == 64);
const _: () = assert!(size_of::<ConsumerEntry>() == 64);
const _: () = assert!(SLOT_HEADER == 64);

/// Copy `N` bytes at `offset` of `bytes` (the header's plain fields, little-endian).
fn field<const N: usize>(bytes: &[u8; LIVE_OFFSET], offset: usize) -> [u8; N] {
    bytes[offset..offset + N].try_into().expect("N bytes")
}

impl Geometry {
    /// The fields as laid out at the start of the file (little-endian).
    pub(super) fn to_bytes(&self) -> [u8; LIVE_OFFSET] {
        let mut b = [0u8; LIVE_OFFSET];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(offset_of!(Self, magic), &self.magic);
        put(offset_of!(Self, version), &self.version.to_le_bytes());
        put(offset_of!(Self, flags), &self.flags.to_le_bytes());
        put(offset_of!(Self, slot_count), &self.slot_count.to_le_bytes());
        put(
            offset_of!(Self, max_consumers),
            &self.max_consumers.to_le_bytes(),
        );
        put(offset_of!(Self, slot_size), &self.slot_size.to_le_bytes());
        put(
            offset_of!(Self, schema_offset),
            &self.schema_offset.to_le_bytes(),
        );
        put(offset_of!(Self, schema_len), &self.schema_len.to_le_bytes());
        put(
            offset_of!(Self, consumers_offset),
            &self.consumers_offset.to_le_bytes(),
        );
        put(
            offset_of!(Self, slots_offset),
            &self.slots_offset.to_le_bytes(),
        );
        b
    }

    /// The fields from a private copy of the file's first bytes.
    fn from_bytes(b: &[u8; LIVE_OFFSET]) -> Self {
        let u32_at = |at| u32::from_le_bytes(field(b, at));
        let u64_at = |at| u64::from_le_bytes(field(b, at));
        Self {
            magic: field(b, offset_of!(Self, magic)),
            version: u32_at(offset_of!(Self, version)),
            flags: u32_at(offset_of!(Self, flags)),
            slot_count: u32_at(offset_of!(Self, slot_count)),
            max_consumers: u32_at(offset_of!(Self, max_consumers)),
            slot_size: u64_at(offset_of!(Self, slot_size)),
            schema_offset: u64_at(offset_of!(Self, schema_offset)),
            schema_len: u64_at(offset_of!(Self, schema_len)),
            consumers_offset: u64_at(offset_of!(Self, consumers_offset)),
            slots_offset: u64_at(offset_of!(Self, slots_offset)),
        }
    }

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

/// The shared mapping of a channel segment, with the header fields `open` checked (read once,
/// never again from shared memory) and checked accessors.
pub(super) struct Shared {
    pub(super) name: String,
    pub(super) map: MmapRaw,
    pub(super) slot_count: u64,
    pub(super) slot_size: usize,
    slots_offset: usize,
    pub(super) max_consumers: usize,
    consumers_offset: usize,
    pub(super) lossy: bool,
    /// Decoded from a private copy of the schema message.
    pub(super) schema: SchemaRef,
}

impl Shared {
    /// Open and map channel `name` at `path` (read-write to take part, read-only to look),
    /// and check its header against the mapping. The open file comes back too: the producer
    /// claim is a lock on it, and whoever looks tests that lock through it.
    pub(super) fn open(name: &str, path: &Path, writable: bool) -> Result<(Self, File)> {
        let (file, _) = sys::open_segment(name, path, writable)?;
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
        let mut plain = [0u8; LIVE_OFFSET];
        for (i, word) in plain.chunks_exact_mut(8).enumerate() {
            // SAFETY: `8 * i + 8 <= LIVE_OFFSET < len` (checked above) and 8-aligned in a
            // page-aligned mapping; an atomic load is sound even while another process writes
            // the word, and a relaxed one also on a read-only mapping.
            let value = unsafe { &*map.as_ptr().add(8 * i).cast::<AtomicU64>() }.load(Relaxed);
            word.copy_from_slice(&value.to_le_bytes());
        }
        let g = Geometry::from_bytes(&plain);
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

    pub(super) fn header(&self) -> &Live {
        // SAFETY: the mapping is at least HEADER_LEN bytes (checked in `open`) and
        // page-aligned, so `Live` at LIVE_OFFSET (64) lies inside it, 64-aligned. Every field
        // of `Live` is an atomic, so shared references are sound while other processes
        // write it.
        unsafe { &*self.map.as_ptr().add(LIVE_OFFSET).cast::<Live>() }
    }

    pub(super) fn consumer(&self, i: usize) -> &ConsumerEntry {
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

    /// The entries in use (`state` 1), read with `order`.
    pub(super) fn active_consumers(
        &self,
        order: std::sync::atomic::Ordering,
    ) -> impl Iterator<Item = &ConsumerEntry> {
        (0..self.max_consumers)
            .map(|i| self.consumer(i))
            .filter(move |c| c.state.load(order) == 1)
    }

    pub(super) fn slot_ptr(&self, seq: u64) -> *mut u8 {
        let index = (seq % self.slot_count) as usize;
        // In bounds: `open` checked slots_offset + slot_count * slot_size == len.
        self.map
            .as_mut_ptr()
            .wrapping_add(self.slots_offset + index * self.slot_size)
    }

    pub(super) fn slot(&self, seq: u64) -> &SlotHeader {
        // SAFETY: the slot starts inside the mapping at a 64-aligned offset (see `slot_ptr`)
        // and is at least 128 bytes long; its header fields are all atomics.
        unsafe { &*self.slot_ptr(seq).cast::<SlotHeader>() }
    }

    /// Bump a futex word and wake its waiters if there are any.
    pub(super) fn notify(word: &AtomicU32, waiters: &AtomicU32) {
        word.fetch_add(1, SeqCst);
        if waiters.load(SeqCst) > 0 {
            sys::futex_wake_all(word);
        }
    }

    /// Sleep until `word` changes from `seen`, at most `limit`, spinning first if asked.
    pub(super) fn wait(
        word: &AtomicU32,
        waiters: &AtomicU32,
        seen: u32,
        limit: Duration,
        mode: WaitMode,
    ) {
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
    pub(super) fn producer(&self) -> Option<ProcessId> {
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
    pub(super) fn claimed(&self, file: &File, path: &Path) -> Result<bool> {
        sys::range_locked(file, CLAIM_START, CLAIM_LEN)
            .map_err(|e| Error::from_io(e, "test the producer lock of", &self.name, path))
    }

    /// Take the producer claim on `claim`, our own open of the file: `false` if another open
    /// holds it.
    pub(super) fn try_claim(&self, claim: &File, path: &Path) -> Result<bool> {
        sys::try_lock_range(claim, CLAIM_START, CLAIM_LEN)
            .map_err(|e| Error::from_io(e, "lock", &self.name, path))
    }
}

pub(super) fn channel_err(name: &str, e: ChannelError) -> Error {
    Error::Channel {
        name: name.to_owned(),
        source: e,
    }
}

/// The schema message of the header (untrusted bytes, from a private copy; callers guard it).
fn decode_schema(name: &str, bytes: &[u8]) -> Result<Schema> {
    let bad = |why: String| channel_err(name, ChannelError::NotAChannel(why));
    let (start, _) = message_prefix(bytes).map_err(|e| bad(format!("schema message: {e}")))?;
    let message =
        arrow_ipc::root_as_message(&bytes[start..]).map_err(|e| bad(format!("schema: {e}")))?;
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
