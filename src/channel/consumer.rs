//! The consuming end: joining a channel, pinning slots while their batches live, decoding
//! them in place.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_schema::SchemaRef;

use super::WaitPolicy;
use super::layout::{ConsumerEntry, LIVENESS, SLOT_HEADER, Shared, UNREADABLE, channel_err};
use crate::error::{ChannelError, Error, Result};
use crate::ipc::Decoder;
use crate::name::SegmentDir;
use crate::sys::ProcessId;

impl SegmentDir {
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
                pins: Mutex::new(VecDeque::new()),
            }),
            decoder: Decoder::with_schema(name, schema.clone(), false),
            schema,
            next,
            policy: WaitPolicy::default(),
            checked: None,
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
}

/// A consumer's entry and pins, shared by the [`Consumer`] and every batch it handed out: the
/// entry is freed only when all of them are gone.
struct ConsumerState {
    shared: Arc<Shared>,
    index: usize,
    /// Sequence numbers of slots with live batches, with their counts, oldest first (at most
    /// one per slot of the ring: a deque that keeps its capacity allocates nothing per batch).
    pins: Mutex<VecDeque<(u64, usize)>>,
}

impl ConsumerState {
    fn entry(&self) -> &ConsumerEntry {
        self.shared.consumer(self.index)
    }

    fn pin(&self, seq: u64) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        match pins.binary_search_by_key(&seq, |&(s, _)| s) {
            Ok(i) => pins[i].1 += 1,
            Err(i) => pins.insert(i, (seq, 1)),
        }
        self.entry().pinned.store(pins[0].0, SeqCst);
    }

    fn unpin(&self, seq: u64) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        if let Ok(i) = pins.binary_search_by_key(&seq, |&(s, _)| s) {
            pins[i].1 -= 1;
            if pins[i].1 == 0 {
                pins.remove(i);
            }
        }
        let oldest = pins.front().map_or(u64::MAX, |&(s, _)| s);
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
    /// Decodes every slot (kept: it remembers the last verified metadata).
    decoder: Decoder,
    next: u64,
    policy: WaitPolicy,
    /// When the producer was last checked alive (while waiting for data).
    checked: Option<Instant>,
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
    /// How [`recv`](Self::recv) waits for data (default: block, no timeout: wait while the
    /// producer lives), to read or change.
    pub fn wait_policy(&mut self) -> &mut WaitPolicy {
        &mut self.policy
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
        // Taken when a wait begins (reading the clock costs more than receiving a batch).
        let mut started: Option<Instant> = None;
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
                let batch = self.decoder.decode_until_batch(&bytes)?;
                return Ok(Some(Received { batch, seq, missed }));
            }
            if h.closed.load(SeqCst) != 0 && self.next >= h.write_seq.load(SeqCst) {
                return Ok(None);
            }
            // Check the producer at most every LIVENESS, across calls (reading /proc costs
            // microseconds, and a wait that found no data is the common case on a fast stream),
            // and sleep no longer than until the next check is due.
            let since = self.checked.map_or(LIVENESS, |t: Instant| t.elapsed());
            if h.closed.load(SeqCst) == 0 && since >= LIVENESS {
                self.checked = Some(Instant::now());
                // A producer that closed stored `closed` before it exited: re-check it, or a
                // clean close just before an exit would look like a death.
                if let Some(who) = s.producer()
                    && !who.is_alive()
                    && h.closed.load(SeqCst) == 0
                {
                    return Err(channel_err(&s.name, ChannelError::ProducerDied(who.pid)));
                }
            }
            let until_check = if since >= LIVENESS {
                LIVENESS // just checked
            } else {
                (LIVENESS - since).max(Duration::from_millis(1))
            };
            let limit = self
                .policy
                .next_sleep(&s.name, *started.get_or_insert_with(Instant::now))?
                .min(until_check);
            let seen = h.data_futex.load(SeqCst);
            if h.write_seq.load(SeqCst) > self.next || h.closed.load(SeqCst) != 0 {
                continue;
            }
            Shared::wait(
                &h.data_futex,
                &h.data_waiters,
                seen,
                limit,
                self.policy.mode,
            );
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
