//! The partitioned multi-process pattern (the lecture's production design), as data:
//! a small *results segment*, itself an Arrow table with one row per (column, chunk), that
//! workers attach by name and fill in place, each its own rows, with no lock.
//!
//! The coordinator [`allocate_results`], publishes it, starts workers that each compute the
//! [`Partial`] of each chunk of their share ([`worker_chunks`]) and [`write_partials`] them into
//! their rows, marking each `done` last; after they exit, [`read_partials`] gives the rows back,
//! in chunk order, to [`crate::reduce::merge_in_order`]: the same merge of the same chunk
//! partials as [`Segment::reduce`] with threads, so the result is bit for bit the same for any
//! number of processes or threads. Any Arrow reader can inspect the partials
//! (`shmarrow inspect`, pyarrow).

use std::ops::Range;

use arrow_array::types::{Decimal128Type, Float64Type, UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrowPrimitiveType, Decimal128Array, Float64Array, PrimitiveArray, UInt8Array,
    UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};

use crate::attach::Segment;
use crate::error::{Error, Result};
use crate::inplace::WritableSegment;
use crate::name::SegmentDir;
use crate::publish::{CreateOptions, Created};
use crate::reduce::{Number, Partial};

/// The results table's schema: one row per (column, chunk), in that order.
pub fn results_schema() -> Schema {
    let f64f = |n: &str| Field::new(n, DataType::Float64, false);
    let dec = |n: &str| Field::new(n, DataType::Decimal128(38, 0), false);
    Schema::new(vec![
        Field::new("worker", DataType::UInt32, false),
        Field::new("column", DataType::UInt32, false),
        Field::new("chunk", DataType::UInt64, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("null_count", DataType::UInt64, false),
        dec("sum_int"),
        f64f("sum"),
        f64f("sum_low"),
        f64f("mean"),
        f64f("mean_low"),
        f64f("m2"),
        dec("min_int"),
        dec("max_int"),
        f64f("min"),
        f64f("max"),
        // bit 0: integer column, bit 1: has min/max, bit 2: NaN seen
        Field::new("flags", DataType::UInt8, false),
        // written last by the worker: 1 when the row is complete
        Field::new("done", DataType::UInt8, false),
    ])
}

/// Create and publish the results segment for `workers` workers over columns of
/// `chunk_counts[c]` chunks each: one row per (column, chunk), column after column, each row
/// labelled with the worker that owns the chunk ([`worker_chunks`]).
///
/// # Errors
/// As [`SegmentDir::allocate`] and [`crate::Allocation::publish`].
pub fn allocate_results(
    dir: &SegmentDir,
    name: &str,
    workers: usize,
    chunk_counts: &[usize],
    options: &CreateOptions,
) -> Result<Created> {
    let rows: usize = chunk_counts.iter().sum();
    let alloc = dir.allocate(name, &results_schema(), rows, options)?;
    let labels = chunk_counts.iter().enumerate().flat_map(|(c, &chunks)| {
        (0..workers.max(1)).flat_map(move |w| {
            worker_chunks(chunks, w, workers).map(move |chunk| (w as u32, c as u32, chunk as u64))
        })
    });
    fill::<UInt32Type>(&alloc, "worker", 0..rows, labels.clone().map(|l| l.0))?;
    fill::<UInt32Type>(&alloc, "column", 0..rows, labels.clone().map(|l| l.1))?;
    fill::<UInt64Type>(&alloc, "chunk", 0..rows, labels.map(|l| l.2))?;
    alloc.publish()
}

/// The chunk indices worker `worker` of `workers` reduces, out of `chunks`.
pub fn worker_chunks(chunks: usize, worker: usize, workers: usize) -> Range<usize> {
    let w = workers.max(1);
    (chunks * worker / w)..(chunks * (worker + 1) / w)
}

/// The first row of column `column`'s chunks in a results segment made by
/// [`allocate_results`] with `chunk_counts`.
pub fn first_row(chunk_counts: &[usize], column: usize) -> usize {
    chunk_counts[..column].iter().sum()
}

/// Write `partials` into rows `first..first + partials.len()` of an opened results segment,
/// the `done` flags last.
///
/// # Errors
/// [`Error::InvalidColumn`] if the segment is not a results table or has not these rows.
pub fn write_partials(results: &WritableSegment, first: usize, partials: &[Partial]) -> Result<()> {
    let float = |n: Option<Number>| match n {
        Some(Number::Float(x)) => x,
        _ => 0.0,
    };
    let int = |n: Option<Number>| match n {
        Some(Number::Int(i)) => i,
        _ => 0,
    };
    let rows = || first..first + partials.len();
    let each = || partials.iter();
    fill::<UInt64Type>(results, "count", rows(), each().map(|p| p.count))?;
    fill::<UInt64Type>(results, "null_count", rows(), each().map(|p| p.null_count))?;
    fill::<Decimal128Type>(results, "sum_int", rows(), each().map(|p| int(Some(p.sum))))?;
    fill::<Float64Type>(results, "sum", rows(), each().map(|p| float(Some(p.sum))))?;
    fill::<Float64Type>(results, "sum_low", rows(), each().map(|p| p.sum_low))?;
    fill::<Float64Type>(results, "mean", rows(), each().map(|p| p.mean))?;
    fill::<Float64Type>(results, "mean_low", rows(), each().map(|p| p.mean_low))?;
    fill::<Float64Type>(results, "m2", rows(), each().map(|p| p.m2))?;
    fill::<Decimal128Type>(results, "min_int", rows(), each().map(|p| int(p.min)))?;
    fill::<Decimal128Type>(results, "max_int", rows(), each().map(|p| int(p.max)))?;
    fill::<Float64Type>(results, "min", rows(), each().map(|p| float(p.min)))?;
    fill::<Float64Type>(results, "max", rows(), each().map(|p| float(p.max)))?;
    let flags = |p: &Partial| {
        u8::from(matches!(p.sum, Number::Int(_)))
            | (u8::from(p.min.is_some() && p.max.is_some()) << 1)
            | (u8::from(p.nan) << 2)
    };
    fill::<UInt8Type>(results, "flags", rows(), each().map(flags))?;
    // `done` last: the coordinator reads rows only after the worker has exited, and a row
    // without `done` means the worker died before finishing it.
    fill::<UInt8Type>(results, "done", rows(), each().map(|_| 1))
}

/// Set rows `rows` of a results column to `values`, through slices over those rows only
/// (other workers write the other rows meanwhile).
fn fill<T: ArrowPrimitiveType>(
    results: &WritableSegment,
    column: &str,
    rows: Range<usize>,
    values: impl Iterator<Item = T::Native>,
) -> Result<()> {
    let mut slices = results.values_mut_rows::<T>(column, rows.start as u64..rows.end as u64)?;
    let mut written = 0;
    for (slot, value) in slices.batches_mut().into_iter().flatten().zip(values) {
        *slot = value;
        written += 1;
    }
    if written < rows.len() {
        return Err(Error::InvalidColumn {
            name: results.segment().info().name.clone(),
            column: column.into(),
            reason: format!("results table has no row {}", rows.start + written),
        });
    }
    Ok(())
}

/// One row of a results segment.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialRow {
    /// The worker that wrote it.
    pub worker: u32,
    /// Index of the reduced column.
    pub column: u32,
    /// Index of the chunk in the column.
    pub chunk: u64,
    /// Whether the worker finished writing the row.
    pub done: bool,
    /// The partial result.
    pub partial: Partial,
}

/// The rows of a results segment, in row order.
///
/// # Errors
/// [`Error::InvalidColumn`] if the segment is not a results table.
pub fn read_partials(results: &Segment) -> Result<Vec<PartialRow>> {
    let name = &results.info().name;
    let mut rows = Vec::new();
    for batch in results.batches() {
        let col = |c: &str| {
            batch
                .column_by_name(c)
                .cloned()
                .ok_or_else(|| Error::InvalidColumn {
                    name: name.clone(),
                    column: c.into(),
                    reason: "not a results table".into(),
                })
        };
        macro_rules! get {
            ($c:expr, $t:ty) => {
                col($c)?
                    .as_any()
                    .downcast_ref::<$t>()
                    .cloned()
                    .ok_or_else(|| Error::InvalidColumn {
                        name: name.clone(),
                        column: $c.into(),
                        reason: "unexpected type".into(),
                    })?
            };
        }
        let worker: UInt32Array = get!("worker", UInt32Array);
        let column: UInt32Array = get!("column", UInt32Array);
        let chunk: UInt64Array = get!("chunk", UInt64Array);
        let count: UInt64Array = get!("count", UInt64Array);
        let nulls: UInt64Array = get!("null_count", UInt64Array);
        let f = |c: &str| -> Result<Float64Array> { Ok(get!(c, Float64Array)) };
        let d = |c: &str| -> Result<Decimal128Array> { Ok(get!(c, Decimal128Array)) };
        let (sum_int, min_int, max_int) = (d("sum_int")?, d("min_int")?, d("max_int")?);
        let (sum, sum_low, mean, mean_low, m2, min, max) = (
            f("sum")?,
            f("sum_low")?,
            f("mean")?,
            f("mean_low")?,
            f("m2")?,
            f("min")?,
            f("max")?,
        );
        let flags: PrimitiveArray<UInt8Type> = get!("flags", UInt8Array);
        let done: UInt8Array = get!("done", UInt8Array);
        for i in 0..batch.num_rows() {
            let int = flags.value(i) & 1 != 0;
            let num = |iv: &Decimal128Array, fv: &Float64Array| {
                if int {
                    Number::Int(iv.value(i))
                } else {
                    Number::Float(fv.value(i))
                }
            };
            let has = flags.value(i) & 2 != 0;
            rows.push(PartialRow {
                worker: worker.value(i),
                column: column.value(i),
                chunk: chunk.value(i),
                done: done.value(i) == 1,
                partial: Partial {
                    count: count.value(i),
                    null_count: nulls.value(i),
                    sum: num(&sum_int, &sum),
                    sum_low: sum_low.value(i),
                    mean: mean.value(i),
                    mean_low: mean_low.value(i),
                    m2: m2.value(i),
                    min: has.then(|| num(&min_int, &min)),
                    max: has.then(|| num(&max_int, &max)),
                    nan: flags.value(i) & 4 != 0,
                },
            });
        }
    }
    Ok(rows)
}
