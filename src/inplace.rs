//! Writing fixed-width values in place, locking, and tables filled in place before they are
//! published.
//!
//! Only *values* ever change: lengths, offsets, validity bitmaps, null counts and metadata are
//! never written, so every reader's decoded view stays valid, and readers that attached earlier
//! (any process, any language) see the new values without attaching again. Writers of disjoint
//! row ranges need no lock ([`WritableSegment::values_mut`] hands out each column once, and
//! [`split_rows`] cuts ranges that cannot overlap); overlapping writers, and readers that need
//! a stable view, take the segment's `flock` ([`SegmentDir::lock`]).

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, RecordBatch, make_array};
use arrow_buffer::Buffer;
use arrow_data::ArrayData;
use arrow_schema::{DataType, Schema};
use memmap2::MmapRaw;
use nix::fcntl::{Flock, FlockArg};

use crate::attach::{AttachOptions, Segment, attach_path};
use crate::create::{CreateOptions, Created, write_ipc};
use crate::error::{Error, Result};
use crate::meta::SegmentMeta;
use crate::name::SegmentDir;
use crate::reduce::CHUNK_ROWS;
use crate::sys;

/// Where a column's values lie in the file: one `(byte offset, elements)` per batch.
#[derive(Debug, Clone)]
struct Placement {
    data_type: DataType,
    parts: Vec<(usize, usize)>,
}

/// A segment mapped writable: mutable access to the values of fixed-width columns.
#[derive(Debug)]
pub struct WritableSegment {
    name: String,
    map: Arc<MmapRaw>,
    file: File,
    view: Segment,
    taken: Mutex<Vec<String>>,
}

/// A raw, shareable view of one column's values in a writable mapping (for bindings such as
/// NumPy that manage aliasing themselves): pointer, element count per batch, and the mapping
/// that keeps the pointers valid.
#[derive(Debug, Clone)]
pub struct RawValues {
    /// The column's element type.
    pub data_type: DataType,
    /// `(pointer, elements)` per batch.
    pub parts: Vec<(*mut u8, usize)>,
    /// Keeps the mapping (and so the pointers) alive.
    pub owner: Arc<MmapRaw>,
}

// SAFETY: the pointers point into `owner`, a shared file mapping that lives as long as this
// value; sending the view to another thread moves no data and creates no reference.
unsafe impl Send for RawValues {}

impl SegmentDir {
    /// Open segment `name` for in-place writes (read-write mapping).
    ///
    /// # Errors
    /// As [`SegmentDir::attach`], plus [`Error::PermissionDenied`] without write permission.
    pub fn open_writable(&self, name: &str) -> Result<WritableSegment> {
        WritableSegment::open(name, &self.segment_path(name)?)
    }

    /// Take segment `name`'s advisory lock: shared (readers that need a stable view) or
    /// exclusive (writers whose ranges may overlap). Released when the guard drops, or by the
    /// kernel when the holder dies.
    ///
    /// # Errors
    /// As [`SegmentDir::attach`], or [`Error::Io`] if `flock` fails.
    pub fn lock(&self, name: &str, shared: bool) -> Result<SegmentLock> {
        let path = self.segment_path(name)?;
        let (file, _) = open(name, &path, false)?;
        lock_file(name, &path, file, shared)
    }
}

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

fn open(name: &str, path: &Path, write: bool) -> Result<(File, std::fs::Metadata)> {
    sys::open_regular(path, write).map_err(|e| match e {
        Ok(kind) => Error::NotAFile {
            name: name.to_owned(),
            kind,
        },
        Err(e) => Error::from_io(e, "open", name, path),
    })
}

impl WritableSegment {
    fn open(name: &str, path: &Path) -> Result<Self> {
        let (file, meta) = open(name, path, true)?;
        // The layout comes from a checked read-only attach of the same file.
        let view = attach_path(name, path, &AttachOptions::default().strict(true))?;
        if view.info().bytes != meta.len() {
            return Err(Error::corrupt(name, "file changed while opening"));
        }
        let map = MmapRaw::map_raw(&file).map_err(|e| Error::from_io(e, "map", name, path))?;
        Ok(Self {
            name: name.to_owned(),
            map: Arc::new(map),
            file,
            view,
            taken: Mutex::new(Vec::new()),
        })
    }

    /// The decoded (read-only) view of the segment: schema, batches, rows.
    pub fn segment(&self) -> &Segment {
        &self.view
    }

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

    fn placement(&self, path: &str) -> Result<Placement> {
        let err = |reason: String| Error::InvalidColumn {
            name: self.name.clone(),
            column: path.to_owned(),
            reason,
        };
        let base = self.view.bytes().as_ptr() as usize;
        let mut data_type = None;
        let mut parts = Vec::new();
        let batches = self.view.batches();
        let empty;
        let batches: &[RecordBatch] = if batches.is_empty() {
            empty = [RecordBatch::new_empty(self.view.schema())];
            &empty
        } else {
            batches
        };
        for batch in batches {
            let array = column_at(batch, path).ok_or_else(|| err("no such column".into()))?;
            let values = fixed_width_values(&array)
                .ok_or_else(|| err(format!("{} has no fixed-width values to write in place (variable-width and nested columns cannot change size)", array.data_type())))?;
            data_type = Some(values.data_type().clone());
            if self.view.batches().is_empty() {
                break; // the stand-in empty batch lies outside the mapping: no values to place
            }
            let buffer = &values.buffers()[0];
            let width = values.data_type().primitive_width().expect("primitive");
            let offset = buffer.as_ptr() as usize - base + values.offset() * width;
            parts.push((offset, values.len()));
        }
        Ok(Placement {
            data_type: data_type.expect("at least one batch"),
            parts,
        })
    }

    /// Mutable access to the values of fixed-width column `path` (a top-level name,
    /// `parent.child` through structs; a fixed-size list gives its flattened values), one slice
    /// per batch. While the returned guard lives, the column cannot be taken again from this
    /// handle, so slices never alias.
    ///
    /// # Errors
    /// [`Error::InvalidColumn`] if the column is missing, not fixed-width, of another type than
    /// `T`, or currently taken.
    pub fn values_mut<T: ArrowPrimitiveType>(
        &self,
        path: &str,
    ) -> Result<ValuesMut<'_, T::Native>> {
        let placement = self.placement(path)?;
        let err = |reason: String| Error::InvalidColumn {
            name: self.name.clone(),
            column: path.to_owned(),
            reason,
        };
        if !same_type(&placement.data_type, &T::DATA_TYPE) {
            return Err(err(format!(
                "values are {}, not {}",
                placement.data_type,
                T::DATA_TYPE
            )));
        }
        let size = std::mem::size_of::<T::Native>();
        for &(offset, len) in &placement.parts {
            assert!(
                offset + len * size <= self.map.len(),
                "placement inside the mapping"
            );
            if offset % std::mem::align_of::<T::Native>() != 0 {
                return Err(err("values are misaligned in the file".into()));
            }
        }
        {
            let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
            if taken.iter().any(|t| t == path) {
                return Err(err("already taken from this WritableSegment".into()));
            }
            taken.push(path.to_owned());
        }
        let slices = placement
            .parts
            .iter()
            .map(|&(offset, len)| {
                // SAFETY: `offset..offset + len * size` lies inside the live read-write mapping
                // and is aligned for `T::Native` (both checked above; the layout itself comes
                // from the strict, validated attach). The range holds this column's values
                // only (the buffers of an Arrow file do not overlap), and `taken` hands each
                // column out once at a time, so no other reference to it exists in this
                // process while the guard lives. Any bit pattern is a valid primitive number.
                unsafe {
                    std::slice::from_raw_parts_mut(
                        self.map.as_mut_ptr().add(offset).cast::<T::Native>(),
                        len,
                    )
                }
            })
            .collect();
        Ok(ValuesMut {
            slices,
            path: path.to_owned(),
            taken: &self.taken,
        })
    }

    /// A raw view of column `path`'s values for a binding (NumPy) that manages aliasing itself.
    ///
    /// # Errors
    /// As [`values_mut`](Self::values_mut), except that the type is not fixed in advance.
    pub fn raw_values(&self, path: &str) -> Result<RawValues> {
        let placement = self.placement(path)?;
        Ok(RawValues {
            parts: placement
                .parts
                .iter()
                // `wrapping_add`: pointer arithmetic only; nothing is dereferenced here.
                .map(|&(offset, len)| (self.map.as_mut_ptr().wrapping_add(offset), len))
                .collect(),
            data_type: placement.data_type,
            owner: self.map.clone(),
        })
    }

    /// Apply `op` to the values of column `path` whose global row index lies in `rows`
    /// (all rows: `0..u64::MAX`), in parallel chunks of [`CHUNK_ROWS`].
    ///
    /// # Errors
    /// As [`values_mut`](Self::values_mut), and [`Error::InvalidColumn`] if `op`'s constants do
    /// not fit an integer column.
    pub fn map(&self, path: &str, op: MapOp, rows: Range<u64>) -> Result<()> {
        let placement = self.placement(path)?;
        macro_rules! go {
            ($t:ty) => {{
                let mut values = self.values_mut::<$t>(path)?;
                let slices = values.batches_mut();
                let op = <<$t as ArrowPrimitiveType>::Native as MapValue>::prepare(op).map_err(
                    |reason| Error::InvalidColumn {
                        name: self.name.clone(),
                        column: path.to_owned(),
                        reason,
                    },
                )?;
                apply(slices, &op, rows)
            }};
        }
        let data_type = placement.data_type.clone();
        map_dispatch!(
            data_type,
            go,
            Err(Error::InvalidColumn {
                name: self.name.clone(),
                column: path.to_owned(),
                reason: format!("{data_type} values cannot be mapped"),
            })
        )
    }
}

/// Mutable values of one column, one slice per batch (see [`WritableSegment::values_mut`]).
/// Index it by batch (`values[0][row] = x`) or take all batches with
/// [`batches_mut`](Self::batches_mut); the slices borrow the guard, and dropping the guard
/// gives the column back.
#[derive(Debug)]
pub struct ValuesMut<'a, T> {
    slices: Vec<&'a mut [T]>,
    path: String,
    taken: &'a Mutex<Vec<String>>,
}

impl<T> ValuesMut<'_, T> {
    /// Every batch's slice.
    pub fn batches_mut(&mut self) -> Vec<&mut [T]> {
        self.slices.iter_mut().map(|s| &mut **s).collect()
    }

    /// Number of batches.
    pub fn len(&self) -> usize {
        self.slices.len()
    }

    /// Whether there are no batches (a 0-row table).
    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }
}

impl<T> std::ops::Index<usize> for ValuesMut<'_, T> {
    type Output = [T];
    fn index(&self, batch: usize) -> &[T] {
        self.slices[batch]
    }
}

impl<T> std::ops::IndexMut<usize> for ValuesMut<'_, T> {
    fn index_mut(&mut self, batch: usize) -> &mut [T] {
        self.slices[batch]
    }
}

impl<T> Drop for ValuesMut<'_, T> {
    fn drop(&mut self) {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|t| t != &self.path);
    }
}

/// Call `$go!(ArrowType)` for numeric `$dt`, else evaluate `$other`.
macro_rules! map_dispatch {
    ($dt:expr, $go:ident, $other:expr) => {{
        use arrow_array::types::*;
        match $dt {
            DataType::Int8 => $go!(Int8Type),
            DataType::Int16 => $go!(Int16Type),
            DataType::Int32 => $go!(Int32Type),
            DataType::Int64 => $go!(Int64Type),
            DataType::UInt8 => $go!(UInt8Type),
            DataType::UInt16 => $go!(UInt16Type),
            DataType::UInt32 => $go!(UInt32Type),
            DataType::UInt64 => $go!(UInt64Type),
            DataType::Float32 => $go!(Float32Type),
            DataType::Float64 => $go!(Float64Type),
            _ => $other,
        }
    }};
}
use map_dispatch;

/// Types whose values are the same native numbers (a timestamp's zone, a decimal's precision
/// and scale are not part of the values).
fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::Timestamp(u1, _), DataType::Timestamp(u2, _)) => u1 == u2,
        (DataType::Decimal128(..), DataType::Decimal128(..))
        | (DataType::Decimal256(..), DataType::Decimal256(..)) => true,
        _ => a == b,
    }
}

/// The column at `path` in `batch`: an exact top-level name, else `parent.child` via structs.
fn column_at(batch: &RecordBatch, path: &str) -> Option<ArrayRef> {
    if let Some(c) = batch.column_by_name(path) {
        return Some(c.clone());
    }
    let mut parts = path.split('.');
    let mut array = batch.column_by_name(parts.next()?)?.clone();
    for part in parts {
        let s = array.as_any().downcast_ref::<arrow_array::StructArray>()?;
        array = s.column_by_name(part)?.clone();
    }
    Some(array)
}

/// The primitive values array of a fixed-width column (a fixed-size list's child values).
fn fixed_width_values(array: &ArrayRef) -> Option<ArrayData> {
    let data = array.to_data();
    match data.data_type() {
        DataType::FixedSizeList(..) => {
            let child = data.child_data()[0].clone();
            let values = make_array(child);
            fixed_width_values(&values)
        }
        DataType::Boolean => None, // bit-packed: not addressable per value
        dt if dt.primitive_width().is_some() => Some(data),
        _ => None,
    }
}

/// A constant of a [`MapOp`]: a float, or an exact integer (which integer columns require).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant {
    value: f64,
    exact: Option<i128>,
}

impl From<f64> for Constant {
    /// A float constant: float columns only (`3.0` is not an integer constant, as in NumPy).
    fn from(value: f64) -> Self {
        Self { value, exact: None }
    }
}

impl From<i64> for Constant {
    /// An exact integer constant.
    fn from(value: i64) -> Self {
        Self {
            value: value as f64,
            exact: Some(value.into()),
        }
    }
}

impl std::str::FromStr for Constant {
    type Err = String;
    /// `"3"` is an exact integer; `"3.0"`, `"1e3"` and `"0.5"` are floats.
    fn from_str(s: &str) -> Result<Self, String> {
        let value: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
        Ok(Self {
            value,
            exact: s.parse::<i128>().ok(),
        })
    }
}

impl std::fmt::Display for Constant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.exact {
            Some(i) => write!(f, "{i}"),
            None => write!(f, "{:?}", self.value),
        }
    }
}

/// An element-wise operation for [`WritableSegment::map`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MapOp {
    /// `x = x * x`
    Square,
    /// `x = x * k`
    Scale(Constant),
    /// `x = x + k`
    Add(Constant),
    /// `x = clamp(x, lo, hi)`
    Clip(Constant, Constant),
}

impl std::fmt::Display for MapOp {
    /// The form [`FromStr`](std::str::FromStr) reads: `square`, `scale:K`, `add:K`, `clip:LO:HI`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapOp::Square => write!(f, "square"),
            MapOp::Scale(k) => write!(f, "scale:{k}"),
            MapOp::Add(k) => write!(f, "add:{k}"),
            MapOp::Clip(lo, hi) => write!(f, "clip:{lo}:{hi}"),
        }
    }
}

impl std::str::FromStr for MapOp {
    type Err = String;
    /// `square`, `scale:K`, `add:K`, `clip:LO:HI`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<Constant> = parts.map(str::parse).collect::<Result<_, _>>()?;
        let op = match (name, args.as_slice()) {
            ("square", []) => MapOp::Square,
            ("scale", [k]) => MapOp::Scale(*k),
            ("add", [k]) => MapOp::Add(*k),
            ("clip", [lo, hi]) if lo.value <= hi.value => MapOp::Clip(*lo, *hi),
            ("clip", [_, _]) => return Err("clip needs LO <= HI".into()),
            _ => {
                return Err(format!(
                    "unknown op {s:?} (expected square, scale:K, add:K or clip:LO:HI)"
                ));
            }
        };
        Ok(op)
    }
}

/// A value type `map` can transform. Integers follow NumPy: arithmetic wraps; constants must be
/// integers that fit the type.
trait MapValue: Copy + Send + Sync + Sized {
    type Op: Sync;
    fn prepare(op: MapOp) -> Result<Self::Op, String>;
    fn apply(values: &mut [Self], op: &Self::Op);
}

macro_rules! float_map {
    ($($t:ty),*) => {$(
        impl MapValue for $t {
            type Op = MapOp;
            fn prepare(op: MapOp) -> Result<MapOp, String> { Ok(op) }
            fn apply(values: &mut [Self], op: &MapOp) {
                match *op {
                    MapOp::Square => values.iter_mut().for_each(|x| *x *= *x),
                    MapOp::Scale(k) => { let k = k.value as $t; values.iter_mut().for_each(|x| *x *= k) }
                    MapOp::Add(k) => { let k = k.value as $t; values.iter_mut().for_each(|x| *x += k) }
                    MapOp::Clip(lo, hi) => {
                        let (lo, hi) = (lo.value as $t, hi.value as $t);
                        values.iter_mut().for_each(|x| *x = x.clamp(lo, hi))
                    }
                }
            }
        }
    )*};
}
float_map!(f32, f64);

/// An integer op with its constants converted to the column's type.
#[derive(Debug, Clone, Copy)]
enum IntOp<T> {
    Square,
    Scale(T),
    Add(T),
    Clip(T, T),
}

macro_rules! int_map {
    ($($t:ty),*) => {$(
        impl MapValue for $t {
            type Op = IntOp<$t>;
            fn prepare(op: MapOp) -> Result<IntOp<$t>, String> {
                let conv = |k: Constant| -> Result<$t, String> {
                    k.exact
                        .and_then(|i| <$t>::try_from(i).ok())
                        .ok_or_else(|| format!("{k} is not an integer in the range of {}", stringify!($t)))
                };
                Ok(match op {
                    MapOp::Square => IntOp::Square,
                    MapOp::Scale(k) => IntOp::Scale(conv(k)?),
                    MapOp::Add(k) => IntOp::Add(conv(k)?),
                    MapOp::Clip(lo, hi) => IntOp::Clip(conv(lo)?, conv(hi)?),
                })
            }
            fn apply(values: &mut [Self], op: &IntOp<$t>) {
                match *op {
                    IntOp::Square => values.iter_mut().for_each(|x| *x = x.wrapping_mul(*x)),
                    IntOp::Scale(k) => values.iter_mut().for_each(|x| *x = x.wrapping_mul(k)),
                    IntOp::Add(k) => values.iter_mut().for_each(|x| *x = x.wrapping_add(k)),
                    IntOp::Clip(lo, hi) => values.iter_mut().for_each(|x| *x = (*x).clamp(lo, hi)),
                }
            }
        }
    )*};
}
int_map!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Apply `op` to the rows of `slices` (consecutive batches) inside `rows`, in parallel chunks.
fn apply<T: MapValue>(slices: Vec<&mut [T]>, op: &T::Op, rows: Range<u64>) -> Result<()> {
    use rayon::prelude::*;
    let mut chunks: Vec<&mut [T]> = Vec::new();
    let mut start = 0u64;
    for slice in slices {
        let len = slice.len() as u64;
        let lo = rows.start.clamp(start, start + len) - start;
        let hi = rows.end.clamp(start, start + len) - start;
        start += len;
        chunks.extend(slice[lo as usize..hi as usize].chunks_mut(CHUNK_ROWS));
    }
    chunks.into_par_iter().for_each(|c| T::apply(c, op));
    Ok(())
}

/// Cut `0..total` into `parts` contiguous ranges that cover it and cannot overlap (the
/// partitioned pattern: part `i` goes to worker `i`).
pub fn split_rows(total: u64, parts: usize) -> Vec<Range<u64>> {
    let parts = parts.max(1) as u64;
    (0..parts)
        .map(|i| (total * i / parts)..(total * (i + 1) / parts))
        .collect()
}

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

    /// Publish atomically under the name (the rename of [`SegmentDir::create`]).
    ///
    /// # Errors
    /// [`Error::Exists`] with `replace(false)`; [`Error::Io`].
    pub fn publish(mut self) -> Result<Created> {
        self.writable = None; // unmap before the rename; other mappings keep working
        let created =
            crate::create::commit(&self.dir, &self.name, &self.temp, &self.options, self.bytes)?;
        self.temp = PathBuf::new(); // published: nothing to clean up
        Ok(created)
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
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
        let largest = widths.iter().map(|w| w * rows).max().unwrap_or(0).max(64);
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
        let columns = schema
            .fields()
            .iter()
            .map(|f| make_array(zero_data(f.data_type(), rows, &zero_buffer)))
            .collect::<Vec<_>>();
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), columns).map_err(|source| {
            Error::InvalidTable {
                name: name.to_owned(),
                source,
            }
        })?;

        let meta = SegmentMeta::now(options.lifetime_value());
        let schema = crate::create::with_meta(schema, &meta);
        let batches = if rows == 0 { vec![] } else { vec![batch] };
        let plan = crate::create::plan(name, &schema, &batches)?;
        let (temp, file, guard) = crate::create::reserve_temp(self, name, &meta, options, plan)?;
        let written = write_ipc(
            SkipZeros {
                inner: BufWriter::with_capacity(1 << 16, &file),
                zeros: zero_range,
            },
            &schema,
            &batches,
        )
        .map_err(|e| crate::create::write_error(self, name, &temp, plan, e))?;
        crate::create::check_written(name, &temp, written, plan)?;
        drop(file);
        let writable = WritableSegment::open(name, &temp)?;
        guard.disarm();
        Ok(Allocation {
            dir: self.clone(),
            name: name.to_owned(),
            temp,
            options: *options,
            writable: Some(writable),
            bytes: plan,
        })
    }
}

/// Bytes per row of a fixed-width type (fixed-size lists flattened), if fixed-width.
fn flat_width(dt: &DataType) -> Option<usize> {
    match dt {
        DataType::FixedSizeList(f, n) => Some(flat_width(f.data_type())? * *n as usize),
        DataType::Boolean => None,
        dt => dt.primitive_width(),
    }
}

/// All-valid array data of `rows` rows whose values are a prefix of `zeros`.
fn zero_data(dt: &DataType, rows: usize, zeros: &Buffer) -> ArrayData {
    let builder = ArrayData::builder(dt.clone()).len(rows);
    let data = match dt {
        DataType::FixedSizeList(f, n) => {
            builder.add_child_data(zero_data(f.data_type(), rows * *n as usize, zeros))
        }
        dt => {
            builder.add_buffer(zeros.slice_with_length(0, dt.primitive_width().unwrap_or(0) * rows))
        }
    };
    data.build().expect("fixed-width layout")
}
