//! Parallel chunked reductions: `count`, `null_count`, `sum`, `mean`, `var`, `std`, `min`, `max`
//! of numeric columns, in one fused pass per column over the shared buffers.
//!
//! # Chunking and determinism
//! Every record batch of a column is cut into chunks of [`CHUNK_ROWS`] rows. Each chunk gives a
//! [`Partial`] (computed in parallel by rayon); partials are then merged *in chunk order* on one
//! thread, so the result is bit-for-bit the same for any number of threads. Worker processes
//! (`shmarrow reduce --processes`, [`crate::partition`]) return the same per-chunk partials,
//! merged in the same order, so their result is the same too.
//!
//! # Numerics
//! - Floats: each chunk is summed with Knuth's two-sum per lane (16 independent lanes, so the
//!   loop vectorizes). Without nulls, the same pass sums the squares of the deviations from a
//!   pilot (the mean of 16 values spread evenly over the chunk, so that sorted or trending data
//!   gets a pilot near its middle), which gives the chunk's squared deviations from its mean
//!   when the pilot lies within a standard deviation of the mean (the shift then cancels less
//!   than one bit); otherwise, and for chunks with nulls, a second pass over the
//!   chunk while it is still in cache sums the squared deviations from the chunk mean (exact
//!   two-pass variance). Chunks merge with Chan et al.'s pairwise update; chunk sums merge with
//!   an error-free two-sum. `[1e16, 1.0, -1e16]` sums to `1.0`. NaN propagates to `sum`, `mean`, `var`, `std`, `min` and `max` as in NumPy's non-nan
//!   functions; infinities behave as in NumPy (`mean([inf, 1]) = inf`, `var = nan`).
//! - Integers: sums are exact in `i128` (no overflow for any column shmarrow can hold); `min`
//!   and `max` are exact; `mean`, `var` and `std` are `f64`.
//! - Nulls are skipped (`count` counts non-null values); a null struct parent nulls its children.
//! - A fixed-size list column (`vel: [f32; 3]`) reduces over all its values.
//! - An empty (or all-null) column has `sum = 0`, `mean`/`var`/`std` NaN, and no `min`/`max`.
//!
//! arrow's aggregate kernels are not used: they are not fused, their float `min`/`max` order NaN
//! differently from NumPy, and their summation is not compensated.

mod column;
mod kernel;
mod merge;

use std::ops::Range;

use arrow_array::RecordBatch;

use crate::attach::Segment;
use crate::error::{Error, Result};
use column::{Column, is_numeric};
pub use merge::{Partial, merge_in_order};

/// Rows per chunk: 32 Ki values (256 KiB of float64) stay in cache between the two passes.
pub const CHUNK_ROWS: usize = 1 << 15;

/// An exact integer or a float: sums, minima and maxima keep the column's kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// From an integer column (exact).
    Int(i128),
    /// From a float column.
    Float(f64),
}

impl Number {
    /// As `f64` (rounded for integers beyond 2^53).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// The reductions that can be asked for (all are computed in the same pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Non-null values.
    Count,
    /// Null values.
    NullCount,
    /// Sum of non-null values.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Variance with `ddof`.
    Var,
    /// Standard deviation with `ddof`.
    Std,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl Op {
    /// Every op, in output order.
    pub const ALL: [Op; 8] = [
        Op::Count,
        Op::NullCount,
        Op::Sum,
        Op::Mean,
        Op::Var,
        Op::Std,
        Op::Min,
        Op::Max,
    ];

    /// The op's name as used by the CLI, JSON and Python (`null_count`, `std`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Op::Count => "count",
            Op::NullCount => "null_count",
            Op::Sum => "sum",
            Op::Mean => "mean",
            Op::Var => "var",
            Op::Std => "std",
            Op::Min => "min",
            Op::Max => "max",
        }
    }
}

impl std::str::FromStr for Op {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Op::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| format!("unknown op {s:?} (expected one of count, null_count, sum, mean, var, std, min, max)"))
    }
}

/// Most threads a caller may ask for (the CLI's `--threads`/`--processes`, Python's
/// `threads=`): more is a mistake on any machine this runs on, and would only cost time.
pub const MAX_THREADS: usize = 256;

/// Options for [`Segment::reduce`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReduceOptions {
    threads: Option<usize>,
    ddof: u32,
}

impl ReduceOptions {
    /// Threads to use (default: rayon's global pool, one per core). Results do not depend on it.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Delta degrees of freedom for `var`/`std` (default 0, as in NumPy).
    pub fn ddof(mut self, ddof: u32) -> Self {
        self.ddof = ddof;
        self
    }
}

/// Statistics of one column.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// The column path.
    pub column: String,
    /// Non-null values.
    pub count: u64,
    /// Null values.
    pub null_count: u64,
    /// Sum of the non-null values (exact for integer columns).
    pub sum: Number,
    /// Mean (NaN when there are no values).
    pub mean: f64,
    /// Variance with the requested `ddof` (NaN when `count <= ddof`).
    pub var: f64,
    /// Standard deviation with the requested `ddof`.
    pub std: f64,
    /// Minimum (`None` when there are no values).
    pub min: Option<Number>,
    /// Maximum (`None` when there are no values).
    pub max: Option<Number>,
}

impl Stats {
    /// The value of `op`: an integer for `count`, `null_count` and an integer column's `sum`,
    /// `min` and `max`; `None` only for the `min`/`max` of a column without values.
    pub fn get(&self, op: Op) -> Option<Number> {
        match op {
            Op::Count => Some(Number::Int(self.count.into())),
            Op::NullCount => Some(Number::Int(self.null_count.into())),
            Op::Sum => Some(self.sum),
            Op::Mean => Some(Number::Float(self.mean)),
            Op::Var => Some(Number::Float(self.var)),
            Op::Std => Some(Number::Float(self.std)),
            Op::Min => self.min,
            Op::Max => self.max,
        }
    }
}

impl Segment {
    /// Reduce each of `columns` (all numeric top-level columns if empty) over all batches.
    ///
    /// # Errors
    /// [`Error::InvalidColumn`] for a missing or non-numeric column.
    pub fn reduce(&self, columns: &[&str], options: &ReduceOptions) -> Result<Vec<Stats>> {
        self.reduce_columns(columns)
            .iter()
            .map(|name| {
                let partial = self.column(name)?.reduce(0..usize::MAX, options.threads);
                Ok(partial.finish(name, options.ddof))
            })
            .collect()
    }

    /// The top-level integer and float columns: what [`reduce`](Self::reduce) reduces when
    /// given no column.
    pub fn numeric_columns(&self) -> Vec<String> {
        self.schema()
            .fields()
            .iter()
            .filter(|f| is_numeric(f.data_type()))
            .map(|f| f.name().clone())
            .collect()
    }

    /// Number of [`CHUNK_ROWS`]-row chunks of column `path` (the unit of work partitioning).
    ///
    /// # Errors
    /// [`Error::InvalidColumn`].
    pub fn chunk_count(&self, path: &str) -> Result<usize> {
        Ok(self.column(path)?.chunks.len())
    }

    /// The columns [`Segment::reduce`] reduces: `columns`, or every numeric top-level column
    /// when it is empty.
    pub fn reduce_columns(&self, columns: &[&str]) -> Vec<String> {
        if columns.is_empty() {
            self.numeric_columns()
        } else {
            columns.iter().map(|c| (*c).to_owned()).collect()
        }
    }

    /// Whether column `path` is an integer column, and the partial of each of its chunks in
    /// `chunks` (indices in `0..chunk_count`, clamped) in chunk order, computed in parallel:
    /// what [`merge_in_order`] takes. Partials of chunk ranges reduced in different processes
    /// or hosts, concatenated in chunk order, merge exactly (bit for bit) as one reduction
    /// with any number of threads would.
    ///
    /// # Errors
    /// As [`Segment::reduce`].
    pub fn chunk_partials(
        &self,
        path: &str,
        chunks: Range<usize>,
        threads: Option<usize>,
    ) -> Result<(bool, Vec<Partial>)> {
        let column = self.column(path)?;
        Ok((column.int(), column.partials(chunks, threads)))
    }

    fn column(&self, path: &str) -> Result<Column> {
        Column::resolve(&self.info().name, &self.schema(), self.batches(), path)
    }
}

/// The [`Partial`] of column `path` over record batches that are not a segment (a channel's
/// stream, say): merge the partials of successive calls with [`Partial::merge`]. `name` labels
/// errors.
///
/// # Errors
/// [`Error::InvalidColumn`] for a missing or non-numeric column.
pub fn reduce_batches(name: &str, batches: &[RecordBatch], path: &str) -> Result<Partial> {
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| Error::InvalidColumn {
            name: name.to_owned(),
            column: path.to_owned(),
            reason: "no batches".into(),
        })?;
    Ok(Column::resolve(name, &schema, batches, path)?.reduce(0..usize::MAX, None))
}
