//! A numeric column of a reduction: its path resolved in every batch, cut into chunks.

use std::ops::Range;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, FixedSizeListArray, RecordBatch, downcast_integer_array,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, SchemaRef};
use rayon::prelude::*;

use super::CHUNK_ROWS;
use super::kernel::{Value, chunk_partial};
use super::merge::{Partial, merge_in_order};
use crate::column_path::column_at;
use crate::error::{Error, Result};

/// A numeric column's chunks, resolved once: `(array, nulls)` per batch.
pub(super) struct Column {
    parts: Vec<(ArrayRef, Option<NullBuffer>)>,
    pub(super) chunks: Vec<(usize, Range<usize>)>,
}

impl Column {
    /// Resolve `path` in `batches` (of `schema`); `name` labels errors.
    pub(super) fn resolve(
        name: &str,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        path: &str,
    ) -> Result<Self> {
        let mut parts = batches
            .iter()
            .map(|b| resolve_path(name, b, path))
            .collect::<Result<Vec<_>>>()?;
        if parts.is_empty() {
            // No batches: check the path against the schema alone (an empty batch).
            parts.push(resolve_path(
                name,
                &RecordBatch::new_empty(schema.clone()),
                path,
            )?);
        }
        let chunks = parts
            .iter()
            .enumerate()
            .flat_map(|(b, (array, _))| {
                (0..array.len())
                    .step_by(CHUNK_ROWS)
                    .map(move |start| (b, start..(start + CHUNK_ROWS).min(array.len())))
            })
            .collect();
        Ok(Column { parts, chunks })
    }

    pub(super) fn int(&self) -> bool {
        self.parts[0].0.data_type().is_integer()
    }

    /// The partial of chunks `chunks`, computed in parallel and merged in order.
    pub(super) fn reduce(&self, chunks: Range<usize>, threads: Option<usize>) -> Partial {
        merge_in_order(self.int(), &self.partials(chunks, threads))
    }

    /// The partial of each chunk in `chunks` (clamped), in chunk order, computed in parallel.
    pub(super) fn partials(&self, chunks: Range<usize>, threads: Option<usize>) -> Vec<Partial> {
        let end = chunks.end.min(self.chunks.len());
        let start = chunks.start.min(end);
        with_threads(threads, || {
            (start..end)
                .into_par_iter()
                .map(|i| self.partial(i))
                .collect()
        })
    }

    fn partial(&self, index: usize) -> Partial {
        let (b, rows) = &self.chunks[index];
        let (array, nulls) = &self.parts[*b];
        let nulls = nulls.as_ref().map(|n| n.slice(rows.start, rows.len()));
        let nulls = nulls.as_ref();
        downcast_integer_array!(
            array => chunk_partial(&array.values()[rows.clone()], nulls),
            DataType::Float16 => values_partial::<Float16Type>(array, rows.clone(), nulls),
            DataType::Float32 => values_partial::<Float32Type>(array, rows.clone(), nulls),
            DataType::Float64 => values_partial::<Float64Type>(array, rows.clone(), nulls),
            other => unreachable!("{other} checked in resolve"),
        )
    }
}

/// The partial of `rows` of a float `array` of type `T`.
fn values_partial<T: ArrowPrimitiveType>(
    array: &dyn Array,
    rows: Range<usize>,
    nulls: Option<&NullBuffer>,
) -> Partial
where
    T::Native: Value,
{
    chunk_partial(&array.as_primitive::<T>().values()[rows], nulls)
}

pub(super) fn is_numeric(dt: &DataType) -> bool {
    dt.is_integer() || dt.is_floating()
}

/// Find `path` ([`crate::column_path`]) in `batch`, with the nulls of every struct level on the
/// way folded in and fixed-size lists flattened, checked to be numeric.
fn resolve_path(
    name: &str,
    batch: &RecordBatch,
    path: &str,
) -> Result<(ArrayRef, Option<NullBuffer>)> {
    let err = |reason: String| Error::InvalidColumn {
        name: name.to_owned(),
        column: path.to_owned(),
        reason,
    };
    let found = column_at(batch, path).map_err(err)?;
    let mut nulls = found.nulls();
    let mut array = found.array;
    // A fixed-size list reduces over all its values (like NumPy over a (rows, k) array); a
    // null list nulls its k values.
    while let Some(list) = array.as_any().downcast_ref::<FixedSizeListArray>() {
        let k = list.value_length() as usize;
        let values = list.values().slice(list.offset() * k, list.len() * k);
        let expanded =
            nulls.map(|n| NullBuffer::from_iter(n.iter().flat_map(|v| std::iter::repeat_n(v, k))));
        nulls = NullBuffer::union(expanded.as_ref(), values.logical_nulls().as_ref());
        array = values;
    }
    if !is_numeric(array.data_type()) {
        return Err(err(format!(
            "{} is not a numeric (integer or float) column",
            array.data_type()
        )));
    }
    Ok((array, nulls))
}

fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    match threads.and_then(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().ok()) {
        Some(pool) => pool.install(f),
        None => f(),
    }
}
