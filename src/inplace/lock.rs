//! The segment's locks: shared for readers that need a stable view, exclusive for writers of
//! the whole segment (or of ranges that may overlap), and row locks for writers of one row
//! range (the partitioned pattern: disjoint ranges write at the same time).
//!
//! Two kernel locks on the segment's file, both held by one open of it and released when the
//! guard drops or the holder dies:
//! - a `flock`: shared for readers and row writers, exclusive for whole-segment writers (which
//!   so exclude both);
//! - byte-range (OFD) locks in a "row space" at offset [`ROW_LOCKS`] + row, far past the end
//!   of any segment file (and apart from a channel's producer claim, at its header): a row
//!   writer write-locks its rows, a reader read-locks every row. Row writers of disjoint ranges
//!   so run at once; a row writer waits for readers and for writers of overlapping rows, and
//!   they for it.
//!
//! | held \ wanted | shared | exclusive | rows |
//! |---|---|---|---|
//! | shared | yes | waits | waits |
//! | exclusive | waits | waits | waits |
//! | rows `a` | waits | waits | yes if disjoint from `a` |

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::name::SegmentDir;
use crate::sys;

use super::writable::WritableSegment;

/// Where the row space starts in the file's byte-range lock space (2^62: past the end of any
/// file, since a file cannot exceed `i64::MAX` bytes and segments live in memory).
const ROW_LOCKS: i64 = 1 << 62;

/// A held lock on a segment (see [`SegmentDir::lock`] and [`WritableSegment::lock_rows`]).
#[derive(Debug)]
pub struct SegmentLock {
    lock: Flock<File>,
}

impl Drop for SegmentLock {
    fn drop(&mut self) {
        // The row locks belong to the open file description, which the handle that made this
        // guard may keep open (a `dup` shares it): released here rather than at its close.
        // Nothing to do if this guard holds none; nothing to report if it fails (the kernel
        // releases them at the last close anyway).
        let _ = sys::unlock_range(&self.lock, ROW_LOCKS, 0);
    }
}

/// What a lock is for.
enum Kind {
    Shared,
    Exclusive,
    Rows(Range<u64>),
}

/// The byte range of the row space that stands for `rows` (start, length; length 0 = to the
/// end): every row from [`ROW_LOCKS`] on if the rows do not fit the lock space, which locks
/// more than asked, never less.
fn row_space(rows: &Range<u64>) -> (i64, i64) {
    let at = |row: u64| i64::try_from(row).ok()?.checked_add(ROW_LOCKS);
    match (at(rows.start), at(rows.end)) {
        (Some(start), Some(end)) => (start, end - start),
        _ => (ROW_LOCKS, 0),
    }
}

fn lock_file(name: &str, path: &Path, file: File, kind: Kind) -> Result<SegmentLock> {
    let arg = match kind {
        Kind::Exclusive => FlockArg::LockExclusive,
        Kind::Shared | Kind::Rows(_) => FlockArg::LockShared,
    };
    let err = |e: io::Error| Error::from_io(e, "lock", name, path);
    let lock = Flock::lock(file, arg).map_err(|(_, e)| err(io::Error::from(e)))?;
    match kind {
        Kind::Exclusive => {}
        Kind::Shared => sys::lock_range(&lock, false, ROW_LOCKS, 0).map_err(err)?,
        Kind::Rows(rows) if rows.is_empty() => {} // no row to write: the flock alone
        Kind::Rows(rows) => {
            let (start, len) = row_space(&rows);
            sys::lock_range(&lock, true, start, len).map_err(err)?;
        }
    }
    Ok(SegmentLock { lock })
}

impl SegmentDir {
    /// Take segment `name`'s lock: shared (readers that need a stable view: excludes every
    /// writer that takes a lock) or exclusive (writers of the whole segment, or of ranges that
    /// may overlap: excludes everyone). Waits until granted; released when the guard drops,
    /// or by the kernel when the holder dies. Writers of one row range take
    /// [`WritableSegment::lock_rows`] instead.
    ///
    /// # Errors
    /// As [`SegmentDir::attach`], or [`Error::Io`] if locking fails.
    pub fn lock(&self, name: &str, shared: bool) -> Result<SegmentLock> {
        let path = self.segment_path(name)?;
        let (file, _) = sys::open_segment(name, &path, false)?;
        let kind = if shared {
            Kind::Shared
        } else {
            Kind::Exclusive
        };
        lock_file(name, &path, file, kind)
    }
}

impl WritableSegment {
    /// Take this segment's exclusive (or shared) lock for the lifetime of the guard (see
    /// [`SegmentDir::lock`]).
    ///
    /// # Errors
    /// [`Error::Io`] if locking fails.
    pub fn lock(&self, shared: bool) -> Result<SegmentLock> {
        let kind = if shared {
            Kind::Shared
        } else {
            Kind::Exclusive
        };
        lock_file(&self.name, Path::new(&self.name), self.dup()?, kind)
    }

    /// Take the lock of a writer of rows `rows` alone (the partitioned pattern: each worker
    /// process opens the segment by name and writes its own rows): writers of disjoint ranges
    /// hold theirs at the same time, while readers holding the shared lock, writers holding
    /// the exclusive one and writers of overlapping rows wait for each other (see the module
    /// documentation). Waits until granted.
    ///
    /// # Errors
    /// [`Error::InvalidRows`] unless `rows.start <= rows.end <= ` the segment's rows (nothing
    /// is locked); [`Error::Io`] if locking fails.
    pub fn lock_rows(&self, rows: Range<u64>) -> Result<SegmentLock> {
        let total = self.view.num_rows();
        if rows.start > rows.end || rows.end > total {
            return Err(Error::InvalidRows {
                name: self.name.clone(),
                start: rows.start,
                stop: rows.end,
                rows: total,
            });
        }
        lock_file(
            &self.name,
            Path::new(&self.name),
            self.dup()?,
            Kind::Rows(rows),
        )
    }

    /// A new open of the segment's file would be another file if the name was replaced
    /// meanwhile: a duplicate of this handle's descriptor shares its open, so its locks are on
    /// this very file. (Locks of this handle and of a `dup` are one open's: only one guard at
    /// a time per handle.)
    fn dup(&self) -> Result<File> {
        self.file.try_clone().map_err(|e| Error::Io {
            op: "duplicate descriptor of",
            path: PathBuf::from(&self.name),
            source: e,
        })
    }
}
