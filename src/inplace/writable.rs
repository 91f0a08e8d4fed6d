//! The writable segment: a read-write mapping whose fixed-width values are handed out as
//! mutable slices, after a check that no writable value range overlaps anything else.

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, RecordBatch, make_array};
use arrow_data::ArrayData;
use arrow_schema::DataType;

use crate::attach::{AttachOptions, Segment, attach_file};
use crate::column_path::column_at;
use crate::error::{Error, Result};
use crate::name::SegmentDir;
use crate::sys;

/// Where one batch's part of a column's values lies in the file.
#[derive(Debug, Clone)]
pub(super) struct Part {
    /// Byte offset of the first value in the mapping.
    pub(super) offset: usize,
    /// Values (elements) in the part.
    pub(super) len: usize,
    /// Global index of the batch's first row.
    pub(super) first_row: u64,
    /// Rows of the batch.
    pub(super) rows: u64,
    /// Values per row: the product of the fixed-size list sizes (1 for a primitive column).
    pub(super) per_row: usize,
    /// The values as the read-only view decoded them (read by the overflow pass).
    pub(super) data: ArrayData,
}

impl Part {
    /// The values of the global rows `rows` that lie in this part.
    pub(super) fn elements(&self, rows: &Range<u64>) -> Range<usize> {
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
pub(super) struct Placement {
    pub(super) data_type: DataType,
    pub(super) parts: Vec<Part>,
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
/// value ranges overlap each other or any offsets, validity, dictionary or other buffer, or
/// any message's metadata or the footer, is refused ([`Error::Corrupt`]); [`values_mut`](Self::values_mut) hands each column out once
/// per handle, and [`values_mut_rows`](Self::values_mut_rows) / [`map`](Self::map) make slices
/// over the requested rows only, so workers of disjoint row ranges never hold references to
/// each other's rows. A process that writes rows it was not given breaks the contract (its
/// readers and writers may see torn values, never out-of-mapping accesses).
#[derive(Debug)]
pub struct WritableSegment {
    pub(super) name: String,
    pub(super) map: Arc<sys::WritableMapping>,
    pub(super) file: File,
    pub(super) view: Segment,
    pub(super) taken: Mutex<Vec<String>>,
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
    pub owner: Arc<dyn std::fmt::Debug + Send + Sync>,
}

// SAFETY: the pointers point into `owner`, a shared file mapping that lives as long as this
// value; sending the view to another thread moves no data and creates no reference.
unsafe impl Send for RawValues {}

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
}

impl WritableSegment {
    /// Map `file` (open read-write; `meta` is its `fstat`) and read its layout from the same
    /// descriptor: whatever `path` names meanwhile, the layout is this file's.
    pub(super) fn from_file(
        name: &str,
        path: &Path,
        file: File,
        meta: &std::fs::Metadata,
    ) -> Result<Self> {
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
        let map = sys::WritableMapping::new(&file, view.bytes().len())
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

    pub(super) fn column_error(&self, path: &str, reason: String) -> Error {
        Error::InvalidColumn {
            name: self.name.clone(),
            column: path.to_owned(),
            reason,
        }
    }

    pub(super) fn placement(&self, path: &str) -> Result<Placement> {
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
    pub(super) fn typed_placement<T: ArrowPrimitiveType>(&self, path: &str) -> Result<Placement> {
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
/// other types), or any block's message metadata, the schema message or the footer: writing
/// values must never change what another column reads, nor anything a reader validated at
/// attach, nor what a later attach reads. Linear in the number of buffers, not in the data.
fn check_writable_layout(segment: &Segment) -> Result<()> {
    /// A buffer's byte range in the mapping, whether it may be written, and what it is.
    struct Span {
        range: Range<usize>,
        writable: bool,
        /// `None` for a range outside every batch's body.
        batch: Option<usize>,
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
                    batch: Some(batch),
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
    let base = segment.bytes().as_ptr() as usize;
    for range in segment.metadata_ranges()? {
        spans.push(Span {
            range: base + range.start..base + range.end,
            writable: false,
            batch: None,
            path: String::new(),
            what: "message metadata or footer",
        });
    }
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
            let at = |s: &Span| {
                let whose = match s.batch {
                    Some(batch) => format!(" of {:?} in batch {batch}", s.path),
                    None => String::new(),
                };
                format!(
                    "the {}{whose} (bytes {}..{})",
                    s.what,
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
