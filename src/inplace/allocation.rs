//! Tables laid out in a segment that is not visible yet, filled in place, then published.

use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use arrow_array::{RecordBatch, make_array};
use arrow_buffer::Buffer;
use arrow_data::ArrayData;
use arrow_schema::{ArrowError, DataType, Schema};

use crate::error::{Error, Result};
use crate::meta::SegmentMeta;
use crate::name::SegmentDir;
use crate::publish::{
    CreateOptions, Created, TempGuard, check_written, commit, plan, reserve_temp, with_meta,
    write_error, write_ipc,
};
use crate::sys;

use super::writable::WritableSegment;

/// A table being filled in place: a segment laid out with `rows` rows of fixed-width columns,
/// not yet visible under its name. Fill its columns through [`values_mut`](Self::values_mut)
/// (from threads, or processes that open the temp file), then [`publish`](Self::publish).
/// Dropping it unpublished removes everything.
#[derive(Debug)]
pub struct Allocation {
    dir: SegmentDir,
    name: String,
    temp: PathBuf,
    options: CreateOptions,
    writable: Option<WritableSegment>,
    bytes: u64,
    /// Removes the temp file unless published.
    guard: TempGuard,
}

impl std::ops::Deref for Allocation {
    type Target = WritableSegment;
    fn deref(&self) -> &WritableSegment {
        self.writable.as_ref().expect("present until publish")
    }
}

impl Allocation {
    /// The not-yet-published file (workers in other processes may open it by this path).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Publish atomically under the name (the rename of [`SegmentDir::create`]), in time that
    /// does not grow with the table's size.
    ///
    /// If pointers into this process's writable mapping were handed out ([`raw_values`],
    /// NumPy views), the mapping first becomes a private copy-on-write one (same address, same
    /// bytes): they stay valid memory, but what is written through them after this no longer
    /// reaches the published file, so readers keep the snapshot they attached. Its page tables
    /// move out of the way in one step per GiB (per 2 MiB below 32 MiB: the mapping is placed
    /// on such a boundary and padded to it with address space), not one per page. (Slices from
    /// [`values_mut`](WritableSegment::values_mut) cannot outlive this call: it consumes the
    /// allocation. Other processes that opened [`temp_path`](Self::temp_path) themselves keep
    /// their own mappings.)
    ///
    /// The rename is the commit. Unmapping the writer's pages costs time proportional to them
    /// (tens of milliseconds per GiB), so it happens after the call returns, on a thread of
    /// the process that drops the writable mapping, the read-only view and the descriptor (or
    /// here, if no thread can be started). That thread runs in the lowest scheduling class
    /// (`SCHED_IDLE`): on a machine with few cores it would otherwise compete with the process
    /// that attaches the table just published (measured: 1-2 ms more from publish to attach
    /// at 100 MiB and 1 GiB on 2 cores). It drops the pages with `MADV_DONTNEED`, which holds
    /// only that mapping's lock, so preempted it does not hold up other threads' `mmap` or
    /// `munmap` (`bench/unmap_inversion.py`). A background thread rather than the returned
    /// [`Created`]: a handle dropped right away would only move the wait to the caller's next
    /// line.
    ///
    /// # Errors
    /// [`Error::Exists`] with `replace(false)`; [`Error::Io`] (also if the mapping cannot be
    /// made private: then nothing is published).
    ///
    /// [`raw_values`]: WritableSegment::raw_values
    pub fn publish(mut self) -> Result<Created> {
        let writable = self.writable.take();
        let retired = match &writable {
            // Only this value holds the mapping: nothing can write through it after this call.
            Some(w) if Arc::strong_count(&w.map) > 1 => w.detach_writes()?,
            _ => None,
        };
        let created = commit(&self.dir, &self.name, &self.temp, &self.options, self.bytes)?;
        self.guard.disarm();
        drop_in_background((writable, retired));
        Ok(created)
    }
}

/// The unmapping thread's queue, and the process that started it.
type Unmapper = (u32, mpsc::Sender<Box<dyn Send>>);

/// The process's unmapping thread, once started (a forked child has no such thread, though it
/// inherits this value, so it starts its own).
static UNMAPPER: Mutex<Option<Unmapper>> = Mutex::new(None);

/// Drop `value` (mappings to unmap, descriptors to close) on the process's unmapping thread,
/// so that the caller does not wait for the kernel to tear down its pages. The thread is
/// started on first use and lives as long as the process; if it cannot be started, `value`
/// is dropped here.
fn drop_in_background<T: Send + 'static>(value: T) {
    let mut unmapper = UNMAPPER.lock().unwrap_or_else(PoisonError::into_inner);
    let pid = std::process::id();
    let value: Box<dyn Send> = Box::new(value);
    let value = match &*unmapper {
        Some((started_by, tx)) if *started_by == pid => match tx.send(value) {
            Ok(()) => return,
            Err(mpsc::SendError(value)) => value,
        },
        _ => value,
    };
    let (tx, rx) = mpsc::channel::<Box<dyn Send>>();
    let started = std::thread::Builder::new()
        .name("shmarrow-unmap".into())
        .stack_size(64 << 10)
        .spawn(move || {
            sys::yield_to_others();
            rx.into_iter().for_each(drop)
        });
    if started.is_ok() && tx.send(value).is_ok() {
        *unmapper = Some((pid, tx));
    }
}

impl WritableSegment {
    /// Make this process's writable mapping private (see [`Allocation::publish`]); the old
    /// shared mapping's pages, moved out of the way, are returned to be unmapped later.
    fn detach_writes(&self) -> Result<Option<sys::Retired>> {
        self.map
            .make_private(&self.file)
            .map_err(|source| Error::Io {
                op: "make private the writable mapping of",
                path: PathBuf::from(&self.name),
                source,
            })
    }
}

/// A writer that skips (seeks over) every write whose bytes lie in the zero region: the file was
/// reserved with `posix_fallocate`, so those bytes already read as zero.
struct SkipZeros<W> {
    inner: W,
    zeros: Range<usize>,
}

impl<W: Write + Seek> Write for SkipZeros<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let start = buf.as_ptr() as usize;
        if !buf.is_empty() && start >= self.zeros.start && start + buf.len() <= self.zeros.end {
            self.inner.seek(SeekFrom::Current(buf.len() as i64))?;
            return Ok(buf.len());
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl SegmentDir {
    /// Lay out a table of `rows` rows of `schema` (fixed-width columns only: primitives and
    /// fixed-size lists of them, all values valid) in a new, not yet visible segment whose
    /// values are zero. The values are written once: by you, in shared memory.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidColumn`] for a column that is not fixed-width,
    /// [`Error::NoSpace`], [`Error::PermissionDenied`], [`Error::Io`].
    pub fn allocate(
        &self,
        name: &str,
        schema: &Schema,
        rows: usize,
        options: &CreateOptions,
    ) -> Result<Allocation> {
        let path = self.segment_path(name)?;
        let widths = schema
            .fields()
            .iter()
            .map(|f| {
                flat_width(f.data_type()).ok_or_else(|| Error::InvalidColumn {
                    name: name.to_owned(),
                    column: f.name().clone(),
                    reason: format!("{} is not fixed-width", f.data_type()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // The values alone: a lower bound of the file's size, in u128 (no overflow for any
        // `rows` and list sizes), checked against the free space before anything is made.
        let values: u128 = widths.iter().fold(0u128, |sum, w| {
            sum.saturating_add(w.saturating_mul(rows as u128))
        });
        let needed = u64::try_from(values).unwrap_or(u64::MAX);
        let available = sys::available_bytes(self.path())
            .map_err(|e| Error::from_io(e, "check free space of", name, self.path()))?;
        if needed > available {
            return Err(Error::NoSpace {
                name: name.to_owned(),
                needed,
                dir: self.path().to_owned(),
            });
        }
        // Each column fits in the free space, so in usize and in the address space's terms.
        let largest = widths
            .iter()
            .map(|w| usize::try_from(w * rows as u128).unwrap_or(usize::MAX))
            .max()
            .unwrap_or(0)
            .max(64);
        // Untouched anonymous memory: reading it would give zeros, and nothing reads it (the
        // writer below seeks over it), so it costs address space only.
        let zeros = memmap2::MmapOptions::new()
            .len(largest)
            .map_anon()
            .and_then(|m| m.make_read_only())
            .map_err(|source| Error::Io {
                op: "reserve address space for",
                path: path.clone(),
                source,
            })?;
        let zero_range = zeros.as_ptr() as usize..zeros.as_ptr() as usize + zeros.len();
        let zero_buffer = Buffer::from(bytes::Bytes::from_owner(zeros));
        let batch = schema
            .fields()
            .iter()
            .map(|f| zero_data(f.data_type(), rows, &zero_buffer).map(make_array))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|columns| RecordBatch::try_new(Arc::new(schema.clone()), columns))
            .map_err(|source| Error::InvalidTable {
                name: name.to_owned(),
                source,
            })?;

        let meta = SegmentMeta::now(options.lifetime_value());
        let schema = with_meta(schema, &meta);
        let batches = if rows == 0 { vec![] } else { vec![batch] };
        let plan = plan(name, &schema, &batches)?;
        let (temp, file, guard) = reserve_temp(self, name, &meta, options, plan)?;
        let written = write_ipc(
            SkipZeros {
                inner: BufWriter::with_capacity(1 << 16, &file),
                zeros: zero_range,
            },
            &schema,
            &batches,
        )
        .map_err(|e| write_error(self, name, &temp, plan, e))?;
        check_written(name, &temp, written, plan)?;
        let meta = file
            .metadata()
            .map_err(|e| Error::from_io(e, "stat", name, &temp))?;
        let writable = WritableSegment::from_file(name, &temp, file, &meta)?;
        Ok(Allocation {
            dir: self.clone(),
            name: name.to_owned(),
            temp,
            options: *options,
            writable: Some(writable),
            bytes: plan,
            guard,
        })
    }
}

/// Bytes per row of a fixed-width type (fixed-size lists flattened), if fixed-width
/// (saturated: a nest of huge list sizes is simply more than any directory holds).
fn flat_width(dt: &DataType) -> Option<u128> {
    match dt {
        DataType::FixedSizeList(f, n) => {
            Some(flat_width(f.data_type())?.saturating_mul(u128::try_from(*n).ok()?))
        }
        dt => dt.primitive_width().map(|w| w as u128),
    }
}

/// All-valid array data of `rows` rows whose values are a prefix of `zeros` (which the caller
/// made as large as the widest column).
fn zero_data(dt: &DataType, rows: usize, zeros: &Buffer) -> Result<ArrayData, ArrowError> {
    let too_many =
        || ArrowError::InvalidArgumentError(format!("{rows} rows of {dt} are too many values"));
    let builder = ArrayData::builder(dt.clone()).len(rows);
    let data = match dt {
        DataType::FixedSizeList(f, n) => {
            let values = usize::try_from(*n)
                .ok()
                .and_then(|n| n.checked_mul(rows))
                .ok_or_else(too_many)?;
            builder.add_child_data(zero_data(f.data_type(), values, zeros)?)
        }
        dt => {
            let bytes = dt
                .primitive_width()
                .and_then(|w| w.checked_mul(rows))
                .filter(|&b| b <= zeros.len())
                .ok_or_else(too_many)?;
            builder.add_buffer(zeros.slice_with_length(0, bytes))
        }
    };
    data.build()
}
