//! The partitioned multi-process pattern (the lecture's production design), as data:
//! a small *results segment*, itself an Arrow table with one row per (worker, column), that
//! workers attach by name and fill in place, each its own row, with no lock.
//!
//! The coordinator [`allocate_results`], publishes it, starts workers that each compute the
//! [`Partial`] of their share of the chunks ([`worker_chunks`]) and [`write_partial`] it into
//! their row, marking it `done` last; after they exit, [`read_partials`] gives the rows back to
//! merge. Any Arrow reader can inspect the partials (`shmarrow inspect`, pyarrow).

use std::ops::Range;

use arrow_array::types::{Decimal128Type, Float64Type, UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrowPrimitiveType, Decimal128Array, Float64Array, PrimitiveArray, UInt8Array,
    UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};

use crate::attach::Segment;
use crate::create::{CreateOptions, Created};
use crate::error::{Error, Result};
use crate::inplace::WritableSegment;
use crate::name::SegmentDir;
use crate::reduce::{Number, Partial};

/// The results table's schema: one row per (worker, column).
pub fn results_schema() -> Schema {
    let f64f = |n: &str| Field::new(n, DataType::Float64, false);
    let dec = |n: &str| Field::new(n, DataType::Decimal128(38, 0), false);
    Schema::new(vec![
        Field::new("worker", DataType::UInt32, false),
        Field::new("column", DataType::UInt32, false),
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

/// Create and publish the results segment for `workers` workers over `columns` columns.
///
/// # Errors
/// As [`SegmentDir::allocate`] and [`crate::Allocation::publish`].
pub fn allocate_results(
    dir: &SegmentDir,
    name: &str,
    workers: usize,
    columns: usize,
    options: &CreateOptions,
) -> Result<Created> {
    let rows = workers * columns;
    let alloc = dir.allocate(name, &results_schema(), rows, options)?;
    for row in 0..rows {
        set::<UInt32Type>(&alloc, "worker", row, (row / columns) as u32)?;
        set::<UInt32Type>(&alloc, "column", row, (row % columns) as u32)?;
    }
    alloc.publish()
}

/// The chunk indices worker `worker` of `workers` reduces, out of `chunks`.
pub fn worker_chunks(chunks: usize, worker: usize, workers: usize) -> Range<usize> {
    let w = workers.max(1);
    (chunks * worker / w)..(chunks * (worker + 1) / w)
}

/// Write `partial` into row `row` of an opened results segment, `done` last.
///
/// # Errors
/// [`Error::InvalidColumn`] if the segment is not a results table or has no such row.
pub fn write_partial(results: &WritableSegment, row: usize, partial: &Partial) -> Result<()> {
    let mut flags = 0u8;
    set::<UInt64Type>(results, "count", row, partial.count)?;
    set::<UInt64Type>(results, "null_count", row, partial.null_count)?;
    match partial.sum {
        Number::Int(i) => {
            set::<Decimal128Type>(results, "sum_int", row, i)?;
            flags |= 1;
        }
        Number::Float(x) => set::<Float64Type>(results, "sum", row, x)?,
    }
    set::<Float64Type>(results, "sum_low", row, partial.sum_low)?;
    set::<Float64Type>(results, "mean", row, partial.mean)?;
    set::<Float64Type>(results, "mean_low", row, partial.mean_low)?;
    set::<Float64Type>(results, "m2", row, partial.m2)?;
    if let (Some(lo), Some(hi)) = (partial.min, partial.max) {
        flags |= 2;
        match (lo, hi) {
            (Number::Int(a), Number::Int(b)) => {
                set::<Decimal128Type>(results, "min_int", row, a)?;
                set::<Decimal128Type>(results, "max_int", row, b)?;
            }
            (a, b) => {
                set::<Float64Type>(results, "min", row, a.as_f64())?;
                set::<Float64Type>(results, "max", row, b.as_f64())?;
            }
        }
    }
    if partial.nan {
        flags |= 4;
    }
    set::<UInt8Type>(results, "flags", row, flags)?;
    // `done` last: the coordinator reads rows only after the worker has exited, and a row
    // without `done` means the worker died before finishing it.
    set::<UInt8Type>(results, "done", row, 1)
}

/// Set one value of a results column, through a slice over that row only (other workers
/// write the other rows meanwhile).
fn set<T: ArrowPrimitiveType>(
    results: &WritableSegment,
    column: &str,
    row: usize,
    value: T::Native,
) -> Result<()> {
    let row64 = row as u64;
    let mut values = results.values_mut_rows::<T>(column, row64..row64 + 1)?;
    let slot = values
        .batches_mut()
        .into_iter()
        .find_map(|slice| slice.first_mut())
        .ok_or_else(|| Error::InvalidColumn {
            name: results.segment().info().name.clone(),
            column: column.into(),
            reason: format!("results table has no row {row}"),
        })?;
    *slot = value;
    Ok(())
}

/// One row of a results segment.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialRow {
    /// The worker that wrote it.
    pub worker: u32,
    /// Index of the reduced column.
    pub column: u32,
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
