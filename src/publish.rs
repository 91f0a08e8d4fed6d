//! The publish protocol: how a segment becomes visible under its name, atomically.
//!
//! Every writer of a segment (a table by [`SegmentDir::create`] or a [`SegmentWriter`], a
//! table filled in place by an [`Allocation`], a channel) follows the same steps:
//!
//! 1. [`reserve_temp`]: `.NAME.<pid>.<start>.<nonce>.tmp` is created with
//!    `O_CREAT|O_EXCL|O_NOFOLLOW` under a [`TempGuard`], and `posix_fallocate` reserves the
//!    length: a full directory fails here ([`Error::NoSpace`]), before any write, and leaves
//!    nothing.
//! 2. The bytes are written into the temp file (a failed write is reported by
//!    [`write_error`]; [`check_written`] checks the length against the plan).
//! 3. [`commit`]: `rename` onto `NAME` is the commit point: readers see nothing or the whole
//!    file. The guard is then disarmed; until then, dropping it (or [`abort_publishes`] in a
//!    signal handler) removes the temp file.
//!
//! [`SegmentWriter`]: crate::SegmentWriter
//! [`Allocation`]: crate::Allocation

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use arrow_array::RecordBatch;
use arrow_ipc::MetadataVersion;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::{ArrowError, Schema};

use crate::error::{Error, Result};
use crate::meta::{Lifetime, SegmentMeta};
use crate::name::SegmentDir;
use crate::sys;

/// Buffer alignment of every segment we write: enough for any Arrow type and for SIMD loads.
pub const ALIGNMENT: usize = 64;

/// Options for [`SegmentDir::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    pub(crate) replace: bool,
    pub(crate) mode: u32,
    pub(crate) lifetime: Lifetime,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            replace: true,
            mode: 0o600,
            lifetime: Lifetime::Persistent,
        }
    }
}

impl CreateOptions {
    /// Replace an existing segment of the same name (default `true`). Readers that attached
    /// the old version keep reading it, unchanged; with `false`, creating fails with
    /// [`Error::Exists`].
    pub fn replace(mut self, replace: bool) -> Self {
        self.replace = replace;
        self
    }

    /// Permission bits of the new segment (default `0o600`, owner only). Applied exactly,
    /// not filtered by the umask. Bits above `0o777` are ignored.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// [`Lifetime`] of the new segment (default [`Lifetime::Persistent`]).
    pub fn lifetime(mut self, lifetime: Lifetime) -> Self {
        self.lifetime = lifetime;
        self
    }

    pub(crate) fn lifetime_value(&self) -> Lifetime {
        self.lifetime
    }
}

/// The handle to a segment this process created. Dropping it removes an
/// [`Lifetime::Owner`] segment (only if the name still refers to the file we created, not to a
/// later replacement); a persistent one stays.
#[derive(Debug)]
pub struct Created {
    name: String,
    path: PathBuf,
    identity: (u64, u64),
    bytes: u64,
    lifetime: Lifetime,
}

impl Created {
    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The segment's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the segment in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The segment's lifetime.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }

    /// (device, inode) of the published file: what [`SegmentInfo::identity`](crate::SegmentInfo::identity)
    /// of an attach shows while the name still refers to this version.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// Give up the handle without removing the segment: an `owner` segment is then reclaimed
    /// by `gc` once this process has exited.
    pub fn disown(mut self) {
        self.lifetime = Lifetime::Persistent;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.lifetime == Lifetime::Owner && sys::identity_at(&self.path) == Some(self.identity) {
            // Best effort: the segment may already have been removed by someone else.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A writer that counts the bytes it passes on (the dry run of a publish uses it over
/// `io::sink()`; the CLI's `export` to count what it wrote).
#[derive(Debug)]
pub struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W> Counting<W> {
    /// Count what goes to `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The writer the bytes go to.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// V5, uncompressed, 64-byte aligned: the layout of every segment we write, and of every
/// channel slot (so that every buffer can be used in place).
pub(crate) fn ipc_options() -> IpcWriteOptions {
    IpcWriteOptions::try_new(ALIGNMENT, false, MetadataVersion::V5).expect("valid options")
}

/// Write `schema` + `batches` as an Arrow IPC file (V5, uncompressed, 64-byte aligned) into
/// `out`, returning the bytes written.
pub(crate) fn write_ipc<W: Write>(
    out: W,
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<u64, ArrowError> {
    let mut writer = FileWriter::try_new_with_options(Counting::new(out), schema, ipc_options())?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let mut counting = writer.into_inner()?;
    counting.flush()?;
    Ok(counting.written)
}

/// The temp files of publishes in progress in this process, for [`abort_publishes`]; `aborted`
/// once it ran, after which no new temp file is created.
struct LiveTemps {
    paths: Vec<PathBuf>,
    aborted: bool,
}

static LIVE_TEMPS: Mutex<LiveTemps> = Mutex::new(LiveTemps {
    paths: Vec::new(),
    aborted: false,
});

fn live_temps() -> MutexGuard<'static, LiveTemps> {
    // The list stays consistent whatever panicked while holding it (pushes and removals only).
    LIVE_TEMPS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remove every [`TempGuard`] file of this process (the temp files of `create`, of a
/// [`SegmentWriter`], of an [`Allocation`], of a channel being created, and of any caller's own
/// atomic writes) and
/// make creating new ones fail: for a signal handler (SIGINT, SIGTERM, SIGHUP) that is about
/// to end the process, so that an interrupted publish leaves nothing behind. Returns the files
/// removed.
///
/// [`SegmentWriter`]: crate::SegmentWriter
/// [`Allocation`]: crate::Allocation
pub fn abort_publishes() -> Vec<PathBuf> {
    let mut live = live_temps();
    live.aborted = true;
    let paths = std::mem::take(&mut live.paths);
    paths
        .into_iter()
        .filter(|p| std::fs::remove_file(p).is_ok())
        .collect()
}

/// A temporary file being written for an atomic `rename` into place: removed when the guard
/// drops unless [`disarm`](Self::disarm)ed, and by [`abort_publishes`].
#[derive(Debug)]
pub struct TempGuard(Option<PathBuf>);

impl TempGuard {
    /// Create `path`, which must not exist (`O_CREAT|O_EXCL|O_NOFOLLOW`), with permission bits
    /// `mode` applied exactly.
    ///
    /// # Errors
    /// The OS error (`AlreadyExists`, ...); `Interrupted` once [`abort_publishes`] ran.
    pub fn create(path: &Path, mode: u32) -> io::Result<(File, TempGuard)> {
        // Created and registered under the lock, so `abort_publishes` sees every temp file.
        let mut live = live_temps();
        if live.aborted {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the process is exiting",
            ));
        }
        let file = sys::create_exclusive(path, mode)?;
        live.paths.push(path.to_owned());
        Ok((file, TempGuard(Some(path.to_owned()))))
    }

    /// Keep the file: it was renamed into place.
    pub fn disarm(mut self) {
        if let Some(path) = self.0.take() {
            live_temps().paths.retain(|p| *p != path);
        }
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let mut live = live_temps();
            let _ = std::fs::remove_file(&path);
            live.paths.retain(|p| *p != path);
        }
    }
}

/// `schema` with `meta`'s `shmarrow.` keys added to its metadata.
pub(crate) fn with_meta(schema: &Schema, meta: &SegmentMeta) -> Schema {
    let mut metadata = schema.metadata().clone();
    meta.insert_into(&mut metadata);
    schema.clone().with_metadata(metadata)
}

pub(crate) fn invalid(name: &str, source: ArrowError) -> Error {
    Error::InvalidTable {
        name: name.to_owned(),
        source,
    }
}

/// The exact file length, from a dry run that copies no data.
pub(crate) fn plan(name: &str, schema: &Schema, batches: &[RecordBatch]) -> Result<u64> {
    write_ipc(io::sink(), schema, batches).map_err(|e| invalid(name, e))
}

pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOSPC | nix::libc::EDQUOT)
    )
}

pub(crate) fn no_space(dir: &SegmentDir, name: &str, needed: u64) -> Error {
    Error::NoSpace {
        name: name.to_owned(),
        needed,
        dir: dir.path().to_owned(),
    }
}

/// Create the exclusive temp file (a fresh nonce if one is somehow taken) and reserve `needed`
/// bytes: a full directory fails here, before any byte is written, and leaves nothing.
pub(crate) fn reserve_temp(
    dir: &SegmentDir,
    name: &str,
    meta: &SegmentMeta,
    options: &CreateOptions,
    needed: u64,
) -> Result<(PathBuf, File, TempGuard)> {
    let mut attempt = 0;
    let (temp, file, guard) = loop {
        let temp = dir.temp_path(name, meta.creator);
        match TempGuard::create(&temp, options.mode) {
            Ok((file, guard)) => break (temp, file, guard),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => return Err(Error::from_io(e, "create", name, &temp)),
        }
    };
    crate::huge_pages::reserve(dir.path(), &file, needed).map_err(|e| {
        if is_no_space(&e) {
            no_space(dir, name, needed)
        } else {
            Error::from_io(e, "reserve space for", name, &temp)
        }
    })?;
    Ok((temp, file, guard))
}

/// The error for a failed write into the temp file.
pub(crate) fn write_error(
    dir: &SegmentDir,
    name: &str,
    temp: &Path,
    needed: u64,
    e: ArrowError,
) -> Error {
    match e {
        ArrowError::IoError(_, e) if is_no_space(&e) => no_space(dir, name, needed),
        ArrowError::IoError(_, e) => Error::from_io(e, "write", name, temp),
        other => invalid(name, other),
    }
}

/// The write produced exactly the planned bytes.
pub(crate) fn check_written(name: &str, temp: &Path, written: u64, needed: u64) -> Result<()> {
    if written == needed {
        return Ok(());
    }
    Err(Error::from_io(
        io::Error::other(format!("wrote {written} bytes, planned {needed}")),
        "write",
        name,
        temp,
    ))
}

/// The commit: rename the finished temp file onto the name.
pub(crate) fn commit(
    dir: &SegmentDir,
    name: &str,
    temp: &Path,
    options: &CreateOptions,
    bytes: u64,
) -> Result<Created> {
    let path = dir.segment_path(name)?;
    let identity = sys::identity_at(temp)
        .ok_or_else(|| Error::from_io(io::ErrorKind::NotFound.into(), "stat", name, temp))?;
    sys::rename(temp, &path, options.replace).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::Exists {
                name: name.to_owned(),
                dir: dir.path().to_owned(),
            }
        } else {
            Error::from_io(e, "rename", name, &path)
        }
    })?;
    Ok(Created {
        name: name.to_owned(),
        path,
        identity,
        bytes,
        lifetime: options.lifetime,
    })
}
