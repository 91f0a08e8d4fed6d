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
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, RecordBatch, make_array};
use arrow_buffer::Buffer;
use arrow_buffer::NullBuffer;
use arrow_data::ArrayData;
use arrow_schema::{ArrowError, DataType, Schema};
use memmap2::MmapRaw;
use nix::fcntl::{Flock, FlockArg};

use crate::attach::{AttachOptions, Segment, attach_file};
use crate::column_path::column_at;
use crate::error::{Error, Result};
use crate::meta::SegmentMeta;
use crate::name::SegmentDir;
use crate::publish::{
    CreateOptions, Created, TempGuard, check_written, commit, plan, reserve_temp, with_meta,
    write_error, write_ipc,
};
use crate::reduce::CHUNK_ROWS;
use crate::sys;

/// Where one batch's part of a column's values lies in the file.
#[derive(Debug, Clone)]
struct Part {
    /// Byte offset of the first value in the mapping.
    offset: usize,
    /// Values (elements) in the part.
    len: usize,
    /// Global index of the batch's first row.
    first_row: u64,
    /// Rows of the batch.
    rows: u64,
    /// Values per row: the product of the fixed-size list sizes (1 for a primitive column).
    per_row: usize,
    /// The values as the read-only view decoded them (read by the overflow pass).
    data: ArrayData,
}

impl Part {
    /// The values of the global rows `rows` that lie in this part.
    fn elements(&self, rows: &Range<u64>) -> Range<usize> {
        let end = self.first_row + self.rows;
        let lo = rows.start.clamp(self.first_row, end) - self.first_row;
        let hi = rows.end.clamp(self.first_row, end) - self.first_row;
        let at = |r: u64| {
            usize::try_from(r)
                .unwrap_or(usize::MAX)
                .saturating_mul(self.per_row)
                .min(self.len)
        };
        at(lo)..at(hi)
    }
}

/// Where a column's values lie in the file: one part per batch.
#[derive(Debug, Clone)]
struct Placement {
    data_type: DataType,
    parts: Vec<Part>,
}

/// A segment mapped writable: mutable access to the values of fixed-width columns.
///
/// # Memory other processes may write
///
/// The mapping is shared: other processes (and other handles in this one) may read and write
/// the same bytes, and Rust cannot see them, as with any file mapping (see `memmap2::MmapMut`).
/// What makes the `&mut [T]` this type hands out sound is the contract every writer of a
/// segment keeps: only fixed-width *values* are written, by one writer per row at a time
/// (disjoint row ranges, or the segment's exclusive [`lock`](Self::lock)), and the file is
/// never truncated. This type enforces its side: the file is mapped and its layout read from
/// one descriptor (a rename of the name cannot swap files in between); a file whose writable
/// value ranges overlap each other or any offsets, validity, dictionary or other buffer is
/// refused ([`Error::Corrupt`]); [`values_mut`](Self::values_mut) hands each column out once
/// per handle, and [`values_mut_rows`](Self::values_mut_rows) / [`map`](Self::map) make slices
/// over the requested rows only, so workers of disjoint row ranges never hold references to
/// each other's rows. A process that writes rows it was not given breaks the contract (its
/// readers and writers may see torn values, never out-of-mapping accesses).
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

/// Options for [`WritableSegment::map_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    wrap: bool,
    dry_run: bool,
}

impl MapOptions {
    /// Integer results that do not fit the column's type wrap around (two's complement, as
    /// NumPy does) instead of failing with [`Error::Overflow`] before anything is written.
    /// Float columns always follow IEEE 754 (overflow gives infinities).
    pub fn wrap(mut self, wrap: bool) -> Self {
        self.wrap = wrap;
        self
    }

    /// Check everything (column, constants and, unless wrapping, that no result overflows),
    /// reading the values without writing any: a coordinator checks all rows once before its
    /// workers write their parts.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

impl SegmentDir {
    /// Open segment `name` for in-place writes (read-write mapping).
    ///
    /// # Errors
    /// As [`SegmentDir::attach`], plus [`Error::PermissionDenied`] without write permission
    /// and [`Error::Corrupt`] for a file whose value ranges overlap other buffers (see
    /// [`WritableSegment`]).
    pub fn open_writable(&self, name: &str) -> Result<WritableSegment> {
        let path = self.segment_path(name)?;
        let (file, meta) = sys::open_segment(name, &path, true)?;
        WritableSegment::from_file(name, &path, file, &meta)
    }

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

impl WritableSegment {
    /// Map `file` (open read-write; `meta` is its `fstat`) and read its layout from the same
    /// descriptor: whatever `path` names meanwhile, the layout is this file's.
    fn from_file(name: &str, path: &Path, file: File, meta: &std::fs::Metadata) -> Result<Self> {
        let view = attach_file(
            name,
            path,
            &file,
            meta,
            &AttachOptions::default().strict(true),
        )?;
        check_writable_layout(&view)?;
        // The same length as the view's mapping: every placement inside the view (checked by
        // the strict attach) is inside this mapping too.
        let map = memmap2::MmapOptions::new()
            .len(view.bytes().len())
            .map_raw(&file)
            .map_err(|e| Error::from_io(e, "map", name, path))?;
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

    fn column_error(&self, path: &str, reason: String) -> Error {
        Error::InvalidColumn {
            name: self.name.clone(),
            column: path.to_owned(),
            reason,
        }
    }

    fn placement(&self, path: &str) -> Result<Placement> {
        let err = |reason: String| self.column_error(path, reason);
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
        let mut first_row = 0u64;
        for batch in batches {
            let array = column_at(batch, path).map_err(err)?.array;
            let (values, width, per_row) = fixed_width_values(&array)
                .ok_or_else(|| err(format!("{} has no fixed-width values to write in place (variable-width and nested columns cannot change size)", array.data_type())))?;
            data_type = Some(values.data_type().clone());
            if self.view.batches().is_empty() {
                break; // the stand-in empty batch lies outside the mapping: no values to place
            }
            let rows = batch.num_rows() as u64;
            let offset = if values.is_empty() {
                0 // nothing to write: the mapping's (page-aligned) start serves as the pointer
            } else {
                // Inside the mapping: the attach was strict (no buffer outside it), and this
                // checks it again rather than trusting it.
                values
                    .buffers()
                    .first()
                    .and_then(|b| (b.as_ptr() as usize).checked_sub(base))
                    .and_then(|start| start.checked_add(values.offset().checked_mul(width)?))
                    .filter(|&o| {
                        values
                            .len()
                            .checked_mul(width)
                            .and_then(|n| n.checked_add(o))
                            .is_some_and(|end| end <= self.map.len())
                    })
                    .ok_or_else(|| err("values lie outside the mapping".into()))?
            };
            parts.push(Part {
                offset,
                len: values.len(),
                first_row,
                rows,
                per_row,
                data: values,
            });
            first_row += rows;
        }
        Ok(Placement {
            data_type: data_type.ok_or_else(|| err("no such column".into()))?,
            parts,
        })
    }

    /// The placement of column `path`, checked to hold `T` values aligned for `T`.
    fn typed_placement<T: ArrowPrimitiveType>(&self, path: &str) -> Result<Placement> {
        let placement = self.placement(path)?;
        if !same_type(&placement.data_type, &T::DATA_TYPE) {
            return Err(self.column_error(
                path,
                format!("values are {}, not {}", placement.data_type, T::DATA_TYPE),
            ));
        }
        let align = std::mem::align_of::<T::Native>();
        if placement.parts.iter().any(|p| p.offset % align != 0) {
            return Err(self.column_error(path, "values are misaligned in the file".into()));
        }
        Ok(placement)
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
        self.values_mut_rows::<T>(path, 0..u64::MAX)
    }

    /// As [`values_mut`](Self::values_mut), but each batch's slice covers only the values of
    /// the global rows in `rows` (empty for a batch outside it): a worker given a row range
    /// holds no reference to any other worker's rows.
    ///
    /// # Errors
    /// As [`values_mut`](Self::values_mut).
    pub fn values_mut_rows<T: ArrowPrimitiveType>(
        &self,
        path: &str,
        rows: Range<u64>,
    ) -> Result<ValuesMut<'_, T::Native>> {
        let placement = self.typed_placement::<T>(path)?;
        {
            let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
            if taken.iter().any(|t| t == path) {
                return Err(
                    self.column_error(path, "already taken from this WritableSegment".into())
                );
            }
            taken.push(path.to_owned());
        }
        let size = std::mem::size_of::<T::Native>();
        let slices = placement
            .parts
            .iter()
            .map(|part| {
                let elements = part.elements(&rows);
                // SAFETY: `part.offset .. part.offset + part.len * size` lies inside the live
                // read-write mapping (`placement` checks it against the mapping's length) and
                // is aligned for `T::Native` (`typed_placement`), and `elements` lies within
                // `0..part.len`. `check_writable_layout` proved at open that this range
                // overlaps no other column's values, no other batch and no offsets, validity
                // or dictionary buffer, and `taken` hands each column out once at a time, so
                // no other reference to these bytes exists in this process while the guard
                // lives (other processes: see the type's contract). Any bit pattern is a
                // valid primitive number.
                unsafe {
                    std::slice::from_raw_parts_mut(
                        self.map
                            .as_mut_ptr()
                            .add(part.offset + elements.start * size)
                            .cast::<T::Native>(),
                        elements.len(),
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
                .map(|p| (self.map.as_mut_ptr().wrapping_add(p.offset), p.len))
                .collect(),
            data_type: placement.data_type,
            owner: self.map.clone(),
        })
    }

    /// Apply `op` to the values of column `path` whose global row index lies in `rows`
    /// (all rows: `0..u64::MAX`), in parallel chunks of [`CHUNK_ROWS`]. Integer results that
    /// would not fit the column's type are an [`Error::Overflow`] raised before any value is
    /// written (see [`map_with`](Self::map_with) to wrap instead).
    ///
    /// # Errors
    /// As [`values_mut`](Self::values_mut); [`Error::InvalidConstant`] if `op`'s constants do
    /// not fit an integer column; [`Error::Overflow`].
    pub fn map(&self, path: &str, op: MapOp, rows: Range<u64>) -> Result<()> {
        self.map_with(path, op, rows, &MapOptions::default())
    }

    /// [`map`](Self::map) with options (wrapping integer arithmetic, dry run).
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn map_with(
        &self,
        path: &str,
        op: MapOp,
        rows: Range<u64>,
        options: &MapOptions,
    ) -> Result<()> {
        let placement = self.placement(path)?;
        macro_rules! go {
            ($t:ty) => {{
                type Native = <$t as ArrowPrimitiveType>::Native;
                let op =
                    <Native as MapValue>::prepare(op).map_err(|reason| Error::InvalidConstant {
                        name: self.name.clone(),
                        column: path.to_owned(),
                        reason,
                    })?;
                let placement = self.typed_placement::<$t>(path)?;
                if !options.wrap {
                    overflow::<Native>(&placement, &op, &rows).map_err(|reason| {
                        Error::Overflow {
                            name: self.name.clone(),
                            column: path.to_owned(),
                            reason,
                        }
                    })?;
                }
                if !options.dry_run {
                    let mut values = self.values_mut_rows::<$t>(path, rows)?;
                    apply(values.batches_mut(), &op);
                }
                Ok(())
            }};
        }
        let data_type = placement.data_type.clone();
        map_dispatch!(
            data_type,
            go,
            Err(self.column_error(path, format!("{data_type} values cannot be mapped")))
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

/// The primitive values array of a fixed-width column (a fixed-size list's child values), its
/// value width in bytes, and how many values make one row.
fn fixed_width_values(array: &ArrayRef) -> Option<(ArrayData, usize, usize)> {
    let data = array.to_data();
    match data.data_type() {
        DataType::FixedSizeList(_, n) => {
            let n = usize::try_from(*n).ok()?;
            let values = make_array(data.child_data().first()?.clone());
            let (values, width, per_row) = fixed_width_values(&values)?;
            Some((values, width, per_row.checked_mul(n)?))
        }
        // Boolean has no primitive width: bit-packed, not addressable per value.
        dt => dt.primitive_width().map(|width| (data, width, 1)),
    }
}

/// Refuse (as [`Error::Corrupt`]) a file in which any value range that can be written in place
/// (a fixed-width column, struct child or fixed-size list's values, in any batch) overlaps
/// another such range or any other buffer (offsets, validity, dictionary, keys, values of
/// other types): writing values must never change what another column reads, nor anything a
/// reader validated at attach. Linear in the number of buffers, not in the data.
fn check_writable_layout(segment: &Segment) -> Result<()> {
    /// A buffer's byte range in the mapping, whether it may be written, and what it is.
    struct Span {
        range: Range<usize>,
        writable: bool,
        batch: usize,
        path: String,
        what: &'static str,
    }
    fn collect(data: &ArrayData, path: &str, writable: bool, batch: usize, out: &mut Vec<Span>) {
        let width = data.data_type().primitive_width().filter(|_| writable);
        let mut push = |range: Range<usize>, writable: bool, what: &'static str| {
            if !range.is_empty() {
                out.push(Span {
                    range,
                    writable,
                    batch,
                    path: path.to_owned(),
                    what,
                });
            }
        };
        for (i, buffer) in data.buffers().iter().enumerate() {
            let start = buffer.as_ptr() as usize;
            match width {
                Some(w) if i == 0 => {
                    let first = start.saturating_add(data.offset().saturating_mul(w));
                    let len = data.len().saturating_mul(w);
                    push(first..first.saturating_add(len), true, "values");
                }
                _ => push(start..start + buffer.len(), false, "buffer"),
            }
        }
        if let Some(nulls) = data.nulls() {
            let b = nulls.buffer();
            push(
                b.as_ptr() as usize..b.as_ptr() as usize + b.len(),
                false,
                "validity",
            );
        }
        let inner = writable
            && matches!(
                data.data_type(),
                DataType::Struct(_) | DataType::FixedSizeList(..)
            );
        for (i, child) in data.child_data().iter().enumerate() {
            let name = match data.data_type() {
                DataType::Struct(fields) => fields.get(i).map(|f| f.name().clone()),
                DataType::Dictionary(..) => Some("dictionary".to_owned()),
                _ => None,
            }
            .unwrap_or_else(|| i.to_string());
            collect(child, &format!("{path}.{name}"), inner, batch, out);
        }
    }
    let mut spans = Vec::new();
    for (b, batch) in segment.batches().iter().enumerate() {
        for (field, column) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            collect(&column.to_data(), field.name(), true, b, &mut spans);
        }
    }
    spans.sort_by_key(|s| s.range.start);
    // Sweep in order of start: a range overlaps an earlier one iff it starts before the
    // furthest end seen so far (of any range, for a writable one; of writable ones otherwise).
    let (mut far_any, mut far_writable): (Option<usize>, Option<usize>) = (None, None);
    for (i, span) in spans.iter().enumerate() {
        let against = if span.writable { far_any } else { far_writable };
        if let Some(j) = against.filter(|&j| span.range.start < spans[j].range.end) {
            let other = &spans[j];
            let base = segment.bytes().as_ptr() as usize;
            let at = |s: &Span| {
                format!(
                    "the {} of {:?} in batch {} (bytes {}..{})",
                    s.what,
                    s.path,
                    s.batch,
                    s.range.start.saturating_sub(base),
                    s.range.end.saturating_sub(base)
                )
            };
            return Err(Error::corrupt(
                &segment.info().name,
                format!(
                    "cannot be written in place: {} overlaps {}",
                    at(span),
                    at(other)
                ),
            ));
        }
        if far_any.is_none_or(|j| span.range.end > spans[j].range.end) {
            far_any = Some(i);
        }
        if span.writable && far_writable.is_none_or(|j| span.range.end > spans[j].range.end) {
            far_writable = Some(i);
        }
    }
    Ok(())
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

impl From<i128> for Constant {
    /// An exact integer constant (the range of `u64` columns included).
    fn from(value: i128) -> Self {
        Self {
            value: value as f64,
            exact: Some(value),
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

impl MapOp {
    /// The op named `name` (`square`, `scale`, `add`, `clip`) with its constants.
    ///
    /// # Errors
    /// An unknown name, the wrong number of constants, or `clip` with `LO > HI` (or NaN).
    pub fn new(name: &str, args: &[Constant]) -> Result<Self, String> {
        Ok(match (name, args) {
            ("square", []) => MapOp::Square,
            ("scale", [k]) => MapOp::Scale(*k),
            ("add", [k]) => MapOp::Add(*k),
            ("clip", [lo, hi]) => {
                let ordered = match (lo.exact, hi.exact) {
                    (Some(a), Some(b)) => a <= b, // exact: 2**53 + 1 > 2**53 as floats are not
                    _ => lo.value <= hi.value,    // false for NaN
                };
                if !ordered {
                    return Err(format!("clip needs LO <= HI (got {lo} and {hi})"));
                }
                MapOp::Clip(*lo, *hi)
            }
            _ => {
                let args: Vec<String> = args.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "unknown op {:?} (expected square, scale K, add K or clip LO HI)",
                    std::iter::once(name.to_owned())
                        .chain(args)
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
            }
        })
    }
}

impl std::str::FromStr for MapOp {
    type Err = String;
    /// `square`, `scale:K`, `add:K`, `clip:LO:HI`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<Constant> = parts.map(str::parse).collect::<Result<_, _>>()?;
        MapOp::new(name, &args)
    }
}

/// A value type `map` can transform. Integer constants must be integers that fit the type;
/// integer results that do not fit are found by [`MapValue::overflow`] before anything is
/// written, and `apply` wraps (NumPy's behaviour, asked for, or proven not to happen).
trait MapValue: Copy + Send + Sync + Sized {
    type Op: Sync;
    fn prepare(op: MapOp) -> Result<Self::Op, String>;
    /// Why applying `op` to the valid values of `values` would overflow, if it would.
    fn overflow(values: &[Self], nulls: Option<&NullBuffer>, op: &Self::Op) -> Option<String>;
    fn apply(values: &mut [Self], op: &Self::Op);
}

macro_rules! float_map {
    ($($t:ty),*) => {$(
        impl MapValue for $t {
            type Op = MapOp;
            fn prepare(op: MapOp) -> Result<MapOp, String> { Ok(op) }
            fn overflow(_: &[Self], _: Option<&NullBuffer>, _: &MapOp) -> Option<String> {
                None // IEEE 754: overflow gives an infinity, as in NumPy
            }
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
            fn overflow(values: &[Self], nulls: Option<&NullBuffer>, op: &IntOp<$t>) -> Option<String> {
                let exact = |x: $t| -> Option<i128> {
                    let x = i128::from(x);
                    match *op {
                        IntOp::Square => x.checked_mul(x),
                        IntOp::Scale(k) => x.checked_mul(i128::from(k)),
                        IntOp::Add(k) => x.checked_add(i128::from(k)),
                        IntOp::Clip(..) => Some(x),
                    }
                };
                if matches!(op, IntOp::Clip(..)) {
                    return None;
                }
                // Square, scale and add are monotonic or convex: the extremes of the results
                // are the results of the extreme values.
                let extremes = |(lo, hi): ($t, $t), x: $t| (lo.min(x), hi.max(x));
                let (lo, hi) = match nulls {
                    None => values.iter().copied().fold((<$t>::MAX, <$t>::MIN), extremes),
                    Some(n) => values
                        .iter()
                        .zip(n.iter())
                        .filter_map(|(&x, valid)| valid.then_some(x))
                        .fold((<$t>::MAX, <$t>::MIN), extremes),
                };
                if lo > hi {
                    return None; // no valid value
                }
                [lo, hi].into_iter().find_map(|x| {
                    let result = exact(x);
                    result.and_then(|r| <$t>::try_from(r).ok()).is_none().then(|| {
                        let what = match *op {
                            IntOp::Square => format!("{x} squared"),
                            IntOp::Scale(k) => format!("{x} * {k}"),
                            IntOp::Add(k) => format!("{x} + {k}"),
                            IntOp::Clip(lo, hi) => format!("{x} clipped to [{lo}, {hi}]"),
                        };
                        format!(
                            "{what} = {} does not fit {} ({}..={}); nothing was written (wrapping around as NumPy does must be asked for: CLI --wrap, Python wrap=True)",
                            result.map_or_else(|| "more than 128 bits".to_owned(), |r| r.to_string()),
                            stringify!($t),
                            <$t>::MIN,
                            <$t>::MAX,
                        )
                    })
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

/// Apply `op` to every value of `slices`, in parallel chunks.
fn apply<T: MapValue>(slices: Vec<&mut [T]>, op: &T::Op) {
    use rayon::prelude::*;
    let chunks: Vec<&mut [T]> = slices
        .into_iter()
        .flat_map(|s| s.chunks_mut(CHUNK_ROWS))
        .collect();
    chunks.into_par_iter().for_each(|c| T::apply(c, op));
}

/// The read pass before an integer `map`: why `op` would overflow on a valid value of the rows
/// `rows` of `placement` (read through the read-only view), in parallel chunks, first in row
/// order; `Ok` if no result overflows.
fn overflow<T: MapValue + arrow_buffer::ArrowNativeType>(
    placement: &Placement,
    op: &T::Op,
    rows: &Range<u64>,
) -> Result<(), String> {
    use rayon::prelude::*;
    let mut chunks: Vec<(&[T], Option<NullBuffer>)> = Vec::new();
    for part in &placement.parts {
        let elements = part.elements(rows);
        let data = &part.data;
        // `typed_data` cannot panic here: `typed_placement` checked the alignment.
        let values = data
            .buffers()
            .first()
            .map(|b| b.typed_data::<T>())
            .and_then(|v| v.get(data.offset()..data.offset() + part.len))
            .and_then(|v| v.get(elements.clone()))
            .ok_or("values lie outside their buffer")?;
        for start in (0..values.len()).step_by(CHUNK_ROWS) {
            let end = (start + CHUNK_ROWS).min(values.len());
            let nulls = data
                .nulls()
                .map(|n| n.slice(elements.start + start, end - start));
            chunks.push((&values[start..end], nulls));
        }
    }
    match chunks
        .par_iter()
        .find_map_first(|(values, nulls)| T::overflow(values, nulls.as_ref(), op))
    {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
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
    /// reaches the published file, so readers keep the snapshot they attached. (Slices from
    /// [`values_mut`](WritableSegment::values_mut) cannot outlive this call: it consumes the
    /// allocation. Other processes that opened [`temp_path`](Self::temp_path) themselves keep
    /// their own mappings.)
    ///
    /// The rename is the commit. Unmapping the writer's pages costs time proportional to them
    /// (tens of milliseconds per GiB), so it happens after the call returns, on a thread of
    /// the process that drops the writable mapping, the read-only view and the descriptor (or
    /// here, if no thread can be started). A background thread rather than the returned
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
        .spawn(move || rx.into_iter().for_each(drop));
    if started.is_ok() && tx.send(value).is_ok() {
        *unmapper = Some((pid, tx));
    }
}

impl WritableSegment {
    /// Make this process's writable mapping private (see [`Allocation::publish`]); the old
    /// shared mapping's pages, moved out of the way, are returned to be unmapped later.
    fn detach_writes(&self) -> Result<Option<sys::Retired>> {
        // SAFETY: `self.map` is a live shared read-write mapping of `self.file` from offset 0
        // that this value owns (the `Arc` keeps it mapped until the last holder drops it);
        // memmap2 maps it at a page-aligned address with exactly `self.map.len()` bytes.
        unsafe { sys::remap_private(self.map.as_mut_ptr(), self.map.len(), &self.file) }.map_err(
            |source| Error::Io {
                op: "make private the writable mapping of",
                path: PathBuf::from(&self.name),
                source,
            },
        )
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
