//! The producing end: claiming a channel, waiting for a free slot, encoding a batch straight
//! into it, publishing it.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};

use super::encode::{EncodeError, SlotEncoder, SlotSink};
use super::layout::{LIVENESS, SLOT_HEADER, Shared, UNREADABLE, WRITING, channel_err};
use super::{ChannelOptions, WaitPolicy};
use crate::error::{ChannelError, Error, Result};
use crate::name::SegmentDir;
use crate::publish::Created;
use crate::sys::{self, ProcessId};

/// How long a claim waits for the kernel to release a dead producer's lock.
const PRODUCER_TEARDOWN: Duration = Duration::from_secs(2);
/// How many times a claim starts again on a channel replaced meanwhile.
const REPLACED_RETRIES: usize = 8;

impl SegmentDir {
    /// Create channel `name` (as [`create_channel`](Self::create_channel)) and become its
    /// producer. Dropping the producer closes the stream and, for an
    /// [`Owner`](crate::Lifetime::Owner) channel, removes it (consumers that joined read what
    /// was sent, then the end of the stream).
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
        // A channel replaced between our open and our claim is not ours to produce into (its
        // new consumers join the new file): claim again, on what the name holds now.
        for _ in 0..REPLACED_RETRIES {
            if let Some(producer) = self.claim(name, &path)? {
                return Ok(producer);
            }
        }
        Err(channel_err(name, ChannelError::ProducerExists(0)))
    }

    /// One attempt of [`producer`](Self::producer): `None` if the file was replaced after we
    /// opened it (the claim on it is given back).
    fn claim(&self, name: &str, path: &std::path::Path) -> Result<Option<Producer>> {
        let (shared, file) = Shared::open(name, path, true)?;
        let shared = Arc::new(shared);
        // The claim lives on an open of its own: a lock on the open that the mapping was made
        // through would outlive a killed producer for as long as anything still holds its
        // address space (the mapping references that open), and a takeover could be refused.
        let claim = sys::reopen(&file, true).map_err(|e| Error::from_io(e, "open", name, path))?;
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
            if shared.try_claim(&claim, path)? {
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
        // `create_channel` holds the old file's claim until its rename is done: a claim won
        // after that finds the name on another file.
        let ours = claim
            .metadata()
            .map_err(|e| Error::from_io(e, "stat", name, path))?;
        if sys::identity_at(path) != Some(sys::file_identity(&ours)) {
            return Ok(None);
        }
        // Publish who we are for consumers, `ls` and `info`, in the order `Shared::producer`
        // relies on.
        let me = ProcessId::current();
        h.producer_pid.store(0, SeqCst);
        h.producer_start.store(me.start_time, SeqCst);
        h.producer_pid.store(me.pid, SeqCst);
        let schema = shared.schema.clone();
        Ok(Some(Producer {
            shared,
            _claim: sys::ParentOnly::new(claim),
            forks: sys::fork_generation(),
            encoder: SlotEncoder::new(schema.clone()),
            schema,
            policy: WaitPolicy::default(),
            created: None,
            free_below: 0,
        }))
    }
}

/// The producing end of a channel (see [`SegmentDir::producer`]). Dropping it closes the
/// stream: consumers then receive the remaining batches and `None`.
pub struct Producer {
    shared: Arc<Shared>,
    /// Our open of the channel file, holding the claim lock: closed (releasing it) only after
    /// `drop` has stored `closed` and cleared `producer_pid`. A forked child does not keep it.
    _claim: sys::ParentOnly,
    /// [`sys::fork_generation`] of the process that claimed: in a forked child (which inherits
    /// this value but not the claim) the handle sends nothing and closes nothing.
    forks: u64,
    schema: SchemaRef,
    encoder: SlotEncoder,
    policy: WaitPolicy,
    /// The channel this producer created ([`SegmentDir::create_producer`]): dropped after the
    /// stream is closed, which removes an owner channel.
    created: Option<Created>,
    /// Blocking mode: every slot of a batch numbered below this is free (no consumer needs
    /// its batch any more); see `wait_for_slot`.
    free_below: u64,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("channel", &self.shared.name)
            .finish()
    }
}

impl Producer {
    /// Whether this handle is a forked child's copy of its parent's producer (which the child
    /// does not hold the claim of: see [`sys::ParentOnly`]).
    fn forked(&self) -> bool {
        sys::fork_generation() != self.forks
    }

    /// How [`send`](Self::send) waits for space (default: block, no timeout), to read or
    /// change.
    pub fn wait_policy(&mut self) -> &mut WaitPolicy {
        &mut self.policy
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
        self.shared.active_consumers(SeqCst).count()
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
        if self.forked() {
            let pid = self.shared.producer().map_or(0, |p| p.pid);
            return Err(channel_err(&name, ChannelError::ProducerExists(pid)));
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
        // SAFETY: the slot's message area (after its 64-byte header, `cap` bytes) lies in the
        // mapping `self.shared` keeps alive (`Shared::open` checked the ring against it), and
        // `wait_for_slot` returned: no consumer reads the slot until `seq` is stored below.
        let sink = unsafe { SlotSink::new(slot_ptr.wrapping_add(SLOT_HEADER), cap) };
        let written = self.encoder.encode(batch, sink);
        let slot = self.shared.slot(seq);
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                let e = match e {
                    EncodeError::TooLarge(needed) => channel_err(
                        &name,
                        ChannelError::BatchTooLarge {
                            needed: (needed + SLOT_HEADER) as u64,
                            slot: self.shared.slot_size as u64,
                        },
                    ),
                    EncodeError::Arrow(source) => Error::InvalidTable {
                        name: name.clone(),
                        source,
                    },
                };
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

    /// Wait until slot `seq % slots` may be written: no live consumer still needs the batch
    /// in it (it was read and released, or, in lossy mode, at least released).
    fn wait_for_slot(&mut self, seq: u64) -> Result<()> {
        let s = &self.shared;
        let h = s.header();
        let slot = s.slot(seq);
        let old = seq.wrapping_sub(s.slot_count);
        // Taken when a wait begins (reading the clock costs more than sending a batch).
        let mut started: Option<Instant> = None;
        let mut last_reap: Option<Instant> = None;
        loop {
            if !s.lossy {
                // Blocking mode: what every consumer needs only moves forward (a consumer that
                // joins starts at `write_seq` or later), so a bound computed once holds until
                // the producer reaches it; the consumer table is read again only then.
                if seq >= self.free_below {
                    self.free_below = self.oldest_held().min(seq) + s.slot_count;
                }
                if seq < self.free_below {
                    slot.seq.store(WRITING, SeqCst);
                    return Ok(());
                }
            } else if seq < s.slot_count || self.oldest_held() > old {
                // Lossy: announce the rewrite, then make sure nobody pinned the old batch
                // meanwhile (the consumer pins, then checks `seq`: one of us sees the other).
                slot.seq.store(WRITING, SeqCst);
                if seq < s.slot_count || self.oldest_held() > old {
                    return Ok(());
                }
                slot.seq.store(old, SeqCst);
            }
            let started = *started.get_or_insert_with(Instant::now);
            let limit = self.policy.next_sleep(&s.name, started)?;
            let seen = h.space_futex.load(SeqCst);
            if self.oldest_held() > old {
                continue;
            }
            Shared::wait(
                &h.space_futex,
                &h.space_waiters,
                seen,
                limit,
                self.policy.mode,
            );
            if last_reap.get_or_insert(started).elapsed() >= LIVENESS {
                self.reap_dead_consumers();
                last_reap = Some(Instant::now());
            }
        }
    }

    /// The oldest sequence number any live consumer still needs (`u64::MAX`: none).
    fn oldest_held(&self) -> u64 {
        let s = &self.shared;
        s.active_consumers(SeqCst)
            .map(|c| {
                // The cursor before the pin: a consumer pins a batch before it moves its cursor
                // past it, so a cursor read past the batch comes with a pin read that still
                // holds it (or its release). The other way round, a pin read before it is taken
                // and a cursor read after it moved on would free a slot being read.
                let cursor = if s.lossy {
                    u64::MAX
                } else {
                    c.cursor.load(SeqCst)
                };
                cursor.min(c.pinned.load(SeqCst))
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    fn reap_dead_consumers(&self) {
        for c in self.shared.active_consumers(SeqCst) {
            let who = ProcessId {
                pid: c.pid.load(SeqCst),
                start_time: c.start.load(SeqCst),
            };
            if !who.is_alive() {
                let _ = c.state.compare_exchange(1, 0, SeqCst, SeqCst);
            }
        }
    }

    /// End the stream: consumers receive what was sent, then `None`.
    pub fn close(self) {}
}

impl Drop for Producer {
    fn drop(&mut self) {
        if self.forked() {
            // Not the producer: the process that claimed it still is (or was).
            if let Some(created) = self.created.take() {
                created.disown();
            }
            return;
        }
        let h = self.shared.header();
        h.closed.store(1, SeqCst);
        Shared::notify(&h.data_futex, &h.data_waiters);
        h.producer_pid.store(0, SeqCst);
    }
}
