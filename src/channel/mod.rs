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
//!
//! The files: `layout` (the bytes and the checked mapping of them), `producer` (claiming,
//! encoding into slots, backpressure), `consumer` (joining, pins, decoding in place); here:
//! options, the wait policy both sides share, creating a channel and looking at one.
//!
//! ```no_run
//! use std::sync::Arc;
//! use arrow_array::{Int64Array, RecordBatch};
//! use shmarrow::{ChannelOptions, SegmentDir};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = SegmentDir::from_env();
//! let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2])) as _)])?;
//! let mut producer = dir.create_producer("ticks", &batch.schema(), &ChannelOptions::default())?;
//! let mut consumer = dir.subscribe("ticks")?; // in any process
//! producer.send(&batch)?;
//! assert_eq!(consumer.recv()?.expect("a batch").batch, batch);
//! # Ok(()) }
//! ```

mod consumer;
mod encode;
mod layout;
mod producer;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use arrow_ipc::writer::IpcDataGenerator;
use arrow_schema::{Schema, SchemaRef};

pub use consumer::{Consumer, Received};
pub use producer::Producer;

use crate::error::{ChannelError, Error, Result};
use crate::meta::{Lifetime, SegmentMeta};
use crate::name::SegmentDir;
use crate::publish::{CreateOptions, Created, commit, ipc_options, reserve_temp, with_meta};
use crate::sys::{self, ProcessId};
use layout::{FLAG_LOSSY, Geometry, HEADER_LEN, LIVENESS, MIN_SLOT_SIZE, Shared, channel_err};

/// First bytes of a channel segment.
pub const CHANNEL_MAGIC: &[u8; 8] = b"SHMARCH1";
/// Version of the layout in `schemas/CHANNEL.md` (2: slots whose encoding failed are marked
/// unreadable; the creator's identity and lifetime are in the schema's metadata).
pub const CHANNEL_VERSION: u32 = 2;
/// Most entries a consumer table may have.
pub const MAX_CONSUMERS: u32 = 4096;

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

/// How a [`Producer`] waits for space and a [`Consumer`] for data: the same policy for both
/// (set it with [`Producer::wait_policy`] or [`Consumer::wait_policy`]).
///
/// ```no_run
/// # fn main() -> shmarrow::Result<()> {
/// use std::time::Duration;
/// use shmarrow::{SegmentDir, WaitMode, WaitPolicy};
/// let mut consumer = SegmentDir::from_env().subscribe("ticks")?;
/// *consumer.wait_policy() = WaitPolicy {
///     mode: WaitMode::SpinThenBlock(Duration::from_micros(50)),
///     timeout: Some(Duration::from_secs(1)),
/// };
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitPolicy {
    /// Block at once (default), or spin first.
    pub mode: WaitMode,
    /// Give up waiting after this long ([`ChannelError::Timeout`]); `None` (default): wait as
    /// long as the other side lives (a consumer: while the producer lives; a producer: while
    /// a live consumer holds the ring, dead ones being reaped).
    pub timeout: Option<Duration>,
}

impl WaitPolicy {
    /// How long the next sleep of a wait that began at `started` may last (at most
    /// [`LIVENESS`], to check the other side), or the timeout once it has passed.
    fn next_sleep(&self, name: &str, started: Instant) -> Result<Duration> {
        match self.timeout {
            Some(t) => match t.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => Ok(left.min(LIVENESS)),
                _ => Err(channel_err(name, ChannelError::Timeout(t))),
            },
            None => Ok(LIVENESS),
        }
    }
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
        // on the old file while new ones join the new one). The old channel's claim is held
        // here until the rename is done, so no producer can start on it in between (one that
        // claims it afterwards finds it replaced and claims the new one); without write access
        // to it, only tested.
        let mut old_claim = None;
        if let Ok((existing, file)) = Shared::open(name, &path, false) {
            // (Without replace, the rename fails anyway: only test.)
            let reopened = options.create.replace.then(|| sys::reopen(&file, true));
            let free = match reopened {
                Some(Ok(claim)) => {
                    let won = existing.try_claim(&claim, &path)?;
                    old_claim = won.then_some(claim);
                    won
                }
                None | Some(Err(_)) => !existing.claimed(&file, &path)?,
            };
            if !free {
                let pid = existing.producer().map_or(0, |p| p.pid);
                return Err(channel_err(name, ChannelError::ProducerExists(pid)));
            }
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
        let geometry = Geometry {
            magic: *CHANNEL_MAGIC,
            version: CHANNEL_VERSION,
            flags: if options.lossy { FLAG_LOSSY } else { 0 },
            slot_count: options.slots,
            max_consumers: options.max_consumers,
            slot_size,
            schema_offset,
            schema_len: schema_msg.len() as u64,
            consumers_offset,
            slots_offset,
        };
        // The live header and the consumer table start zeroed.
        let mut head = vec![0u8; schema_offset as usize];
        let plain = geometry.to_bytes();
        head[..plain.len()].copy_from_slice(&plain);
        let io = |e: std::io::Error| Error::from_io(e, "write", name, &temp);
        (&file).write_all(&head).map_err(io)?;
        (&file).write_all(&schema_msg).map_err(io)?;
        drop(file);
        let created = commit(self, name, &temp, &options.create, total)?;
        guard.disarm();
        drop(old_claim);
        Ok(created)
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
        let consumers = shared
            .active_consumers(Relaxed)
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
