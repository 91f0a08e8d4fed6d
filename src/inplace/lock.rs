//! The segment's advisory lock (`flock`): shared for readers that need a stable view,
//! exclusive for writers whose ranges may overlap.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::name::SegmentDir;
use crate::sys;

use super::writable::WritableSegment;

/// A held `flock` on a segment (see [`SegmentDir::lock`]).
#[derive(Debug)]
pub struct SegmentLock {
    _lock: Flock<File>,
}

fn lock_file(name: &str, path: &Path, file: File, shared: bool) -> Result<SegmentLock> {
    let arg = if shared {
        FlockArg::LockShared
    } else {
        FlockArg::LockExclusive
    };
    let lock = Flock::lock(file, arg)
        .map_err(|(_, e)| Error::from_io(io::Error::from(e), "lock", name, path))?;
    Ok(SegmentLock { _lock: lock })
}

impl SegmentDir {
    /// Take segment `name`'s advisory lock: shared (readers that need a stable view) or
    /// exclusive (writers whose ranges may overlap). Released when the guard drops, or by the
    /// kernel when the holder dies.
    ///
    /// # Errors
    /// As [`SegmentDir::attach`], or [`Error::Io`] if `flock` fails.
    pub fn lock(&self, name: &str, shared: bool) -> Result<SegmentLock> {
        let path = self.segment_path(name)?;
        let (file, _) = sys::open_segment(name, &path, false)?;
        lock_file(name, &path, file, shared)
    }
}

impl WritableSegment {
    /// Take this segment's exclusive (or shared) `flock` for the lifetime of the guard.
    ///
    /// # Errors
    /// [`Error::Io`] if `flock` fails.
    pub fn lock(&self, shared: bool) -> Result<SegmentLock> {
        let file = self.file.try_clone().map_err(|e| Error::Io {
            op: "duplicate descriptor of",
            path: PathBuf::from(&self.name),
            source: e,
        })?;
        lock_file(&self.name, Path::new(&self.name), file, shared)
    }
}
