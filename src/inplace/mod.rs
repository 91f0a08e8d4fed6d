//! Writing fixed-width values in place, locking, and tables filled in place before they are
//! published.
//!
//! Only *values* ever change: lengths, offsets, validity bitmaps, null counts and metadata are
//! never written, so every reader's decoded view stays valid, and readers that attached earlier
//! (any process, any language) see the new values without attaching again. Writers of disjoint
//! row ranges need no lock ([`WritableSegment::values_mut`] hands out each column once, and
//! [`split_rows`] cuts ranges that cannot overlap); worker processes that each open the segment
//! by name and write their rows take the lock of those rows ([`WritableSegment::lock_rows`]);
//! overlapping writers, and readers that need a stable view, take the segment's lock
//! ([`SegmentDir::lock`]).
//!
//! One file per concept: [`writable`] the writable segment (its mapping, the check of its
//! layout, mutable slices), [`lock`] the segment's locks, [`map`] the element-wise
//! operations and their kernels, [`allocation`] tables laid out and filled before they are
//! published.

mod allocation;
mod lock;
mod map;
mod writable;

use std::ops::Range;

pub use allocation::Allocation;
pub use lock::SegmentLock;
pub use map::{Constant, MapOp, MapOptions};
pub use writable::{RawValues, ValuesMut, WritableSegment};

/// Cut `0..total` into `parts` contiguous ranges that cover it and cannot overlap (the
/// partitioned pattern: part `i` goes to worker `i`).
pub fn split_rows(total: u64, parts: usize) -> Vec<Range<u64>> {
    let parts = parts.max(1) as u64;
    (0..parts)
        .map(|i| (total * i / parts)..(total * (i + 1) / parts))
        .collect()
}
