//! Publishing a table as a segment: one pass over the data, atomically visible.
//!
//! 1. A dry run of the IPC file writer over a byte counter gives the exact length (no data
//!    is copied: arrow-ipc hands buffers to the sink, which only counts them).
//! 2. `.NAME.<pid>.<start>.<nonce>.tmp` is created with `O_CREAT|O_EXCL|O_NOFOLLOW`.
//! 3. `posix_fallocate` reserves the length: a full directory fails here, before any write.
//! 4. The IPC file is written with `write(2)`; buffers larger than the 1 MiB staging buffer
//!    go straight from the arrays to the file (one copy).
//! 5. `rename` onto `NAME` is the commit point: readers see nothing or the whole file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
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
    replace: bool,
    mode: u32,
    lifetime: Lifetime,
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

/// V5, uncompressed, 64-byte aligned: the layout of every segment we write.
fn ipc_options() -> IpcWriteOptions {
    IpcWriteOptions::try_new(ALIGNMENT, false, MetadataVersion::V5).expect("valid options")
}

/// Write `schema` + `batches` as an Arrow IPC file (V5, uncompressed, 64-byte aligned) into
/// `out`, returning the bytes written.
pub(crate) fn write_ipc<W: Write>(
    out: W,
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<u64, ArrowError> {
    let mut writer = FileWriter::try_new_with_options(
        Counting {
            inner: out,
            written: 0,
        },
        schema,
        ipc_options(),
    )?;
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
/// [`SegmentWriter`], of a channel being created, and of any caller's own atomic writes) and
/// make creating new ones fail: for a signal handler (SIGINT, SIGTERM, SIGHUP) that is about
/// to end the process, so that an interrupted publish leaves nothing behind. Returns the files
/// removed. Temp files an [`Allocation`] took over are its own (removed when it drops).
///
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

    /// Keep the file: it was renamed into place (or an [`Allocation`] took it over).
    ///
    /// [`Allocation`]: crate::Allocation
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

fn invalid(name: &str, source: ArrowError) -> Error {
    Error::InvalidTable {
        name: name.to_owned(),
        source,
    }
}

/// The exact file length, from a dry run that copies no data.
pub(crate) fn plan(name: &str, schema: &Schema, batches: &[RecordBatch]) -> Result<u64> {
    write_ipc(io::sink(), schema, batches).map_err(|e| invalid(name, e))
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOSPC | nix::libc::EDQUOT)
    )
}

fn no_space(dir: &SegmentDir, name: &str, needed: u64) -> Error {
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
    sys::reserve(&file, needed).map_err(|e| {
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

/// A segment being written batch by batch, for inputs whose size is not known in advance
/// (Parquet, CSV, IPC streams, network uploads): each batch goes straight into the temp file
/// in the segment directory, so private memory holds one batch at a time, never the table.
/// [`finish`](Self::finish) writes the footer and publishes atomically; dropping it unfinished
/// removes the temp file. On a full directory a write fails with [`Error::NoSpace`] (plain
/// `write(2)`, no mapping: never a SIGBUS).
pub struct SegmentWriter {
    dir: SegmentDir,
    name: String,
    temp: PathBuf,
    options: CreateOptions,
    writer: FileWriter<Counting<BufWriter<File>>>,
    guard: TempGuard,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("name", &self.name)
            .field("temp", &self.temp)
            .field("written", &self.writer.get_ref().written)
            .finish()
    }
}

impl SegmentWriter {
    /// Append one batch (its fields must be the schema's).
    ///
    /// # Errors
    /// [`Error::InvalidTable`] for a batch of another schema (or a dictionary that changes
    /// between batches, which the IPC file format cannot hold); [`Error::NoSpace`];
    /// [`Error::Io`].
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema_ref().fields() != self.writer.schema().fields() {
            return Err(invalid(
                &self.name,
                ArrowError::SchemaError(format!(
                    "batch fields {:?} differ from the schema's {:?}",
                    batch.schema_ref().fields(),
                    self.writer.schema().fields()
                )),
            ));
        }
        let at_least = self.bytes_written() + batch.get_array_memory_size() as u64;
        self.writer
            .write(batch)
            .map_err(|e| write_error(&self.dir, &self.name, &self.temp, at_least, e))
    }

    /// Reserve `total` bytes for the whole segment now (`posix_fallocate`), for a caller that
    /// can estimate the size: a directory that cannot hold it fails here with
    /// [`Error::NoSpace`] naming `total`, before the data is written. The file is cut to the
    /// bytes actually written when it is published.
    ///
    /// # Errors
    /// [`Error::NoSpace`]; [`Error::Io`].
    pub fn reserve(&mut self, total: u64) -> Result<()> {
        let file = self.writer.get_ref().inner.get_ref();
        sys::reserve(file, total).map_err(|e| {
            if is_no_space(&e) || e.kind() == io::ErrorKind::FileTooLarge {
                no_space(&self.dir, &self.name, total)
            } else {
                Error::from_io(e, "reserve space for", &self.name, &self.temp)
            }
        })
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.writer.get_ref().written
    }

    /// Write the footer and publish atomically under the name.
    ///
    /// # Errors
    /// [`Error::Exists`] with `replace(false)`; [`Error::NoSpace`]; [`Error::Io`].
    pub fn finish(mut self) -> Result<Created> {
        let at_least = self.bytes_written();
        let io = |e| write_error(&self.dir, &self.name, &self.temp, at_least, e);
        self.writer.finish().map_err(io)?;
        self.writer.get_mut().flush().map_err(|e| io(e.into()))?;
        let bytes = self.bytes_written();
        // A `reserve` beyond what was written is given back.
        self.writer
            .get_ref()
            .inner
            .get_ref()
            .set_len(bytes)
            .map_err(|e| Error::from_io(e, "truncate", &self.name, &self.temp))?;
        let created = commit(&self.dir, &self.name, &self.temp, &self.options, bytes)?;
        self.guard.disarm();
        Ok(created)
    }
}

impl SegmentDir {
    /// Start writing segment `name` batch by batch (see [`SegmentWriter`]).
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Exists`] with `replace(false)`,
    /// [`Error::InvalidTable`] for a schema the IPC format cannot hold,
    /// [`Error::PermissionDenied`], [`Error::Io`].
    pub fn writer(
        &self,
        name: &str,
        schema: &Schema,
        options: &CreateOptions,
    ) -> Result<SegmentWriter> {
        let path = self.segment_path(name)?;
        if !options.replace && path.exists() {
            return Err(Error::Exists {
                name: name.to_owned(),
                dir: self.path().to_owned(),
            });
        }
        let meta = SegmentMeta::now(options.lifetime);
        let schema = with_meta(schema, &meta);
        let (temp, file, guard) = reserve_temp(self, name, &meta, options, 0)?;
        let writer = FileWriter::try_new_with_options(
            Counting {
                inner: BufWriter::with_capacity(1 << 20, file),
                written: 0,
            },
            &schema,
            ipc_options(),
        )
        .map_err(|e| write_error(self, name, &temp, 0, e))?;
        Ok(SegmentWriter {
            dir: self.clone(),
            name: name.to_owned(),
            temp,
            options: *options,
            writer,
            guard,
        })
    }

    /// Publish `batches` (all of `schema`) as segment `name`, atomically.
    ///
    /// The bytes are an Arrow IPC file that any Arrow reader can map; the `shmarrow.` keys of
    /// [`SegmentMeta`] are added to the schema metadata. Zero batches give a valid 0-row table.
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::InvalidTable`] if a batch's fields differ from
    /// `schema`'s; [`Error::Exists`] with `replace(false)`; [`Error::NoSpace`] when the
    /// directory cannot hold it (nothing is left behind); [`Error::PermissionDenied`];
    /// [`Error::Io`].
    pub fn create(
        &self,
        name: &str,
        schema: &Schema,
        batches: &[RecordBatch],
        options: &CreateOptions,
    ) -> Result<Created> {
        let path = self.segment_path(name)?;
        if let Some(bad) = batches
            .iter()
            .find(|b| b.schema_ref().fields() != schema.fields())
        {
            return Err(invalid(
                name,
                ArrowError::SchemaError(format!(
                    "batch fields {:?} differ from the schema's {:?}",
                    bad.schema_ref().fields(),
                    schema.fields()
                )),
            ));
        }
        if !options.replace && path.exists() {
            return Err(Error::Exists {
                name: name.to_owned(),
                dir: self.path().to_owned(),
            });
        }
        let meta = SegmentMeta::now(options.lifetime);
        let schema = with_meta(schema, &meta);
        let needed = plan(name, &schema, batches)?;
        let (temp, file, guard) = reserve_temp(self, name, &meta, options, needed)?;
        let written = write_ipc(BufWriter::with_capacity(1 << 20, &file), &schema, batches)
            .map_err(|e| write_error(self, name, &temp, needed, e))?;
        check_written(name, &temp, written, needed)?;
        drop::<File>(file);
        let created = commit(self, name, &temp, options, needed)?;
        guard.disarm();
        Ok(created)
    }
}
