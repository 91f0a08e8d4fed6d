//! Segment names and the segment directory: the only place that turns a name into a path.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::attach::Validate;
use crate::error::{Error, Result};

/// Longest allowed segment name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Environment variable naming the segment directory (default [`DEFAULT_DIR`]).
pub const DIR_ENV: &str = "SHMARROW_DIR";

/// Where segments live unless `SHMARROW_DIR` says otherwise: POSIX shared memory.
pub const DEFAULT_DIR: &str = "/dev/shm";

/// Check a segment name: `[A-Za-z0-9._-]`, 1 to 200 bytes, not starting with `.`
/// (dot names are reserved for in-progress writes). No `/`, so no path traversal.
///
/// # Errors
/// [`Error::InvalidName`] saying which rule the name breaks.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 200 bytes");
    }
    if name.starts_with('.') {
        return bad("starts with '.' (reserved for temporary files)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only A-Z a-z 0-9 . _ - are allowed");
    }
    Ok(())
}

/// A directory of segments (by default `/dev/shm`, the POSIX shared-memory namespace): the
/// entry point of the library.
///
/// Every operation on segments and channels is a method of this type, given a segment name
/// (checked by [`check_name`]: a name never escapes the directory). Any directory whose
/// filesystem supports `mmap` works; `/dev/shm` (tmpfs) keeps the bytes in memory.
///
/// # Operations
///
/// The directory:
/// - [`from_env`](Self::from_env) (`$SHMARROW_DIR`, else `/dev/shm`), [`new`](Self::new),
///   [`path`](Self::path), [`segment_path`](Self::segment_path);
///   [`validate`](Self::validate) / [`validation`](Self::validation): how attaches through
///   it check variable-width values.
///
/// Publish a table (atomically: readers see nothing or all of it, see [`Created`]):
/// - [`create`](Self::create): record batches already in memory, in one write pass;
/// - [`writer`](Self::writer): batch by batch, for inputs of unknown size
///   ([`SegmentWriter`]);
/// - [`allocate`](Self::allocate): fixed-width columns laid out in a segment not yet visible,
///   filled in place by threads or processes, then [`Allocation::publish`]ed.
///
/// Attach and read:
/// - [`attach`](Self::attach), [`attach_with`](Self::attach_with): map read-only and decode
///   zero-copy into a [`Segment`] (whose [`reduce`](crate::Segment::reduce) runs parallel
///   reductions);
/// - [`info`](Self::info): describe a segment's schema, batches and columns.
///
/// Write in place (values of fixed-width columns only):
/// - [`open_writable`](Self::open_writable): a [`WritableSegment`] ([`map`] `square`,
///   `scale`, `add`, `clip`, or [`values_mut`] slices);
/// - [`lock`](Self::lock): the segment's shared or exclusive `flock`.
///
/// Channels (a ring of batches from one producer to every consumer):
/// - [`create_channel`](Self::create_channel), [`create_producer`](Self::create_producer),
///   [`producer`](Self::producer), [`subscribe`](Self::subscribe),
///   [`subscribe_within`](Self::subscribe_within), [`channel_info`](Self::channel_info).
///
/// Lifecycle:
/// - [`remove`](Self::remove), [`list`](Self::list) (segments, channels, temp files),
///   [`gc`](Self::gc) (what dead processes left behind).
///
/// # Example
///
/// Publish, attach, reduce and remove, in a directory of its own:
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Float64Array, RecordBatch};
/// use shmarrow::reduce::{Number, ReduceOptions};
/// use shmarrow::{CreateOptions, SegmentDir};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let path = std::env::temp_dir().join(format!("shmarrow-doc-dir-{}", std::process::id()));
/// # std::fs::create_dir_all(&path)?;
/// let dir = SegmentDir::new(&path);
/// let batch = RecordBatch::try_from_iter([(
///     "price",
///     Arc::new(Float64Array::from(vec![1.5, 2.5, 3.0])) as _,
/// )])?;
/// dir.create("prices", &batch.schema(), &[batch], &CreateOptions::default())?;
///
/// let segment = dir.attach("prices")?; // in any process
/// let stats = segment.reduce(&["price"], &ReduceOptions::default())?;
/// assert_eq!(stats[0].sum, Number::Float(7.0));
/// assert_eq!(dir.list()?.segments.len(), 1);
///
/// assert!(dir.remove("prices")?); // attached readers keep their mapping
/// # std::fs::remove_dir_all(&path)?;
/// # Ok(()) }
/// ```
///
/// [`Created`]: crate::Created
/// [`SegmentWriter`]: crate::SegmentWriter
/// [`Allocation::publish`]: crate::Allocation::publish
/// [`Segment`]: crate::Segment
/// [`WritableSegment`]: crate::WritableSegment
/// [`map`]: crate::WritableSegment::map
/// [`values_mut`]: crate::WritableSegment::values_mut
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDir {
    path: PathBuf,
    validate: Validate,
}

impl Default for SegmentDir {
    /// Same as [`SegmentDir::from_env`].
    fn default() -> Self {
        Self::from_env()
    }
}

impl SegmentDir {
    /// `$SHMARROW_DIR` if set and non-empty, else `/dev/shm`.
    pub fn from_env() -> Self {
        match std::env::var_os(DIR_ENV) {
            Some(dir) if !dir.is_empty() => Self::new(dir),
            _ => Self::new(DEFAULT_DIR),
        }
    }

    /// Segments in any directory of a filesystem that supports `mmap` and `write(2)` and does not
    /// grow a file that is mapped past its end (tmpfs with or without huge pages, a disk; not
    /// hugetlbfs, which refuses `write(2)` and grows a file to the length of a writable mapping).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            validate: Validate::Auto,
        }
    }

    /// The validation of attaches through this directory whose [`AttachOptions`] choose none
    /// (default [`Validate::Auto`]): how the CLI's `--validate` reaches every verb.
    ///
    /// [`AttachOptions`]: crate::AttachOptions
    pub fn validate(mut self, validate: Validate) -> Self {
        self.validate = validate;
        self
    }

    /// The validation set by [`validate`](Self::validate).
    pub fn validation(&self) -> Validate {
        self.validate
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file that holds segment `name`, after checking the name.
    ///
    /// # Errors
    /// [`Error::InvalidName`].
    pub fn segment_path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.path.join(name))
    }

    /// A fresh temporary path for writing `name`:
    /// `.NAME.<pid>.<pid start time>.<nonce>.tmp`. The writer's identity in the name lets
    /// `gc` tell a live writer from a dead one, even after the pid is reused.
    pub(crate) fn temp_path(&self, name: &str, writer: crate::sys::ProcessId) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let nonce = COUNTER.fetch_add(1, Ordering::Relaxed) ^ (u64::from(nanos) << 20);
        self.path.join(format!(
            ".{name}.{}.{}.{nonce:x}.tmp",
            writer.pid, writer.start_time
        ))
    }
}

/// The writer of a temporary file, parsed back from its name; `None` if the file name is
/// not one of ours.
pub(crate) fn parse_temp_name(file_name: &OsStr) -> Option<(String, crate::sys::ProcessId)> {
    let s = file_name.to_str()?;
    let inner = s.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(4, '.');
    let _nonce = parts.next()?;
    let start_time = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    check_name(name).ok()?;
    Some((name.to_owned(), crate::sys::ProcessId { pid, start_time }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "x.arrow", "A-b_c.9", &"n".repeat(200)] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "../etc",
            "sp ace",
            "é",
            "nul\0",
            &"n".repeat(201),
        ] {
            assert!(
                matches!(check_name(bad), Err(Error::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn temp_names_round_trip() {
        let dir = SegmentDir::new("/x");
        let me = crate::sys::ProcessId {
            pid: 42,
            start_time: 777,
        };
        let p = dir.temp_path("my.seg-1", me);
        let (name, writer) = parse_temp_name(p.file_name().unwrap()).unwrap();
        assert_eq!(name, "my.seg-1");
        assert_eq!(writer, me);
        assert_ne!(p, dir.temp_path("my.seg-1", me), "nonce must differ");
        assert!(parse_temp_name(OsStr::new(".junk.tmp")).is_none());
        assert!(parse_temp_name(OsStr::new("plain")).is_none());
    }
}
