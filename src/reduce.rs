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
//! - Floats: each chunk is summed with Neumaier's compensated summation (four independent lanes,
//!   so the loop vectorizes), its sum of squared deviations is a second pass over the chunk while
//!   it is still in cache (exact two-pass variance per chunk), and chunks merge with Chan et al.'s
//!   pairwise update; chunk sums merge with an error-free two-sum. `[1e16, 1.0, -1e16]` sums to
//!   `1.0`. NaN propagates to `sum`, `mean`, `var`, `std`, `min` and `max` as in NumPy's non-nan
//!   functions; infinities behave as in NumPy (`mean([inf, 1]) = inf`, `var = nan`).
//! - Integers: sums are exact in `i128` (no overflow for any column shmarrow can hold); `min`
//!   and `max` are exact; `mean`, `var` and `std` are `f64`.
//! - Nulls are skipped (`count` counts non-null values); a null struct parent nulls its children.
//! - A fixed-size list column (`vel: [f32; 3]`) reduces over all its values.
//! - An empty (or all-null) column has `sum = 0`, `mean`/`var`/`std` NaN, and no `min`/`max`.
//!
//! arrow's aggregate kernels are not used: they are not fused, their float `min`/`max` order NaN
//! differently from NumPy, and their summation is not compensated.

use std::ops::Range;

use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, FixedSizeListArray, PrimitiveArray, RecordBatch};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, SchemaRef};
use rayon::prelude::*;

use crate::attach::Segment;
use crate::column_path::column_at;
use crate::error::{Error, Result};

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

/// The mergeable state of a reduction over some chunks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Partial {
    /// Non-null values.
    pub count: u64,
    /// Null values.
    pub null_count: u64,
    /// Sum (for floats, the high part of a compensated sum).
    pub sum: Number,
    /// Low part of a float sum (0 for integers).
    pub sum_low: f64,
    /// Mean of the non-null values (used to merge `m2`), as an unevaluated sum `mean + mean_low`
    /// so that merging chunks of data far from zero (`1e9 + noise`) keeps every digit.
    pub mean: f64,
    /// Low part of the mean.
    pub mean_low: f64,
    /// Sum of squared deviations from `mean`.
    pub m2: f64,
    /// Minimum, if any non-null value.
    pub min: Option<Number>,
    /// Maximum, if any non-null value.
    pub max: Option<Number>,
    /// A NaN was seen.
    pub nan: bool,
}

impl Partial {
    fn empty(int: bool) -> Self {
        Partial {
            count: 0,
            null_count: 0,
            sum: if int {
                Number::Int(0)
            } else {
                Number::Float(0.0)
            },
            sum_low: 0.0,
            mean: 0.0,
            mean_low: 0.0,
            m2: 0.0,
            min: None,
            max: None,
            nan: false,
        }
    }

    /// Combine two partials (Chan et al. for `m2`, error-free two-sum for float sums).
    pub fn merge(&self, other: &Partial) -> Partial {
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let ((mean, mean_low), m2) = if other.count == 0 {
            ((self.mean, self.mean_low), self.m2)
        } else if self.count == 0 {
            ((other.mean, other.mean_low), other.m2)
        } else {
            // The high parts of two close means subtract exactly; the low parts add the rest.
            let delta = (other.mean - self.mean) + (other.mean_low - self.mean_low);
            let (hi, e) = two_sum(self.mean, delta * (nb / n));
            (
                fast_two_sum(hi, self.mean_low + e),
                self.m2 + other.m2 + delta * delta * (na * nb / n),
            )
        };
        let (sum, sum_low) = match (self.sum, other.sum) {
            (Number::Int(a), Number::Int(b)) => (Number::Int(a + b), 0.0),
            (a, b) => {
                let (s, e) = two_sum(a.as_f64(), b.as_f64());
                (Number::Float(s), self.sum_low + other.sum_low + e)
            }
        };
        Partial {
            count: self.count + other.count,
            null_count: self.null_count + other.null_count,
            sum,
            sum_low,
            mean,
            mean_low,
            m2,
            min: pick(self.min, other.min, f64::min, i128::min),
            max: pick(self.max, other.max, f64::max, i128::max),
            nan: self.nan || other.nan,
        }
    }

    /// The final statistics, with `ddof` for `var`/`std`.
    pub fn finish(&self, column: &str, ddof: u32) -> Stats {
        let n = self.count as f64;
        let sum = match self.sum {
            Number::Float(hi) if self.nan => Number::Float(f64::NAN + hi),
            Number::Float(hi) if hi.is_finite() => Number::Float(hi + self.sum_low),
            other => other,
        };
        let mean = if self.count == 0 {
            f64::NAN
        } else {
            sum.as_f64() / n
        };
        let var = if self.count > u64::from(ddof) && !self.nan {
            self.m2 / (n - f64::from(ddof))
        } else {
            f64::NAN
        };
        let nan_or = |v: Option<Number>| {
            if self.nan {
                Some(Number::Float(f64::NAN))
            } else {
                v
            }
        };
        Stats {
            column: column.to_owned(),
            count: self.count,
            null_count: self.null_count,
            sum,
            mean,
            var,
            std: var.sqrt(),
            min: nan_or(self.min),
            max: nan_or(self.max),
        }
    }
}

fn pick(
    a: Option<Number>,
    b: Option<Number>,
    f: fn(f64, f64) -> f64,
    i: fn(i128, i128) -> i128,
) -> Option<Number> {
    match (a, b) {
        (Some(Number::Int(x)), Some(Number::Int(y))) => Some(Number::Int(i(x, y))),
        (Some(x), Some(y)) => Some(Number::Float(f(x.as_f64(), y.as_f64()))),
        (x, None) => x,
        (None, y) => y,
    }
}

/// `a + b = s + e` exactly, given `|a| >= |b|` (or `a` zero).
fn fast_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

/// Knuth's two-sum: `a + b = s + e` exactly.
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// Merge chunk partials in the given order, as [`Segment::reduce`] does: a left fold from the
/// empty partial of an integer (`int`) or float column. Folding the chunk partials of several
/// segments, segment after segment, gives bit for bit what reducing one segment holding all
/// their batches in that order gives (chunks never span batches).
pub fn merge_in_order(int: bool, partials: &[Partial]) -> Partial {
    partials
        .iter()
        .fold(Partial::empty(int), |acc, p| acc.merge(p))
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

/// A numeric value type a kernel can reduce.
trait Value: Copy + Send + Sync {
    const INT: bool;
    fn f(self) -> f64;
    fn i(self) -> i128;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            const INT: bool = true;
            #[inline(always)]
            fn f(self) -> f64 { self as f64 }
            #[inline(always)]
            fn i(self) -> i128 { self as i128 }
        }
    )*};
}
int_value!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! float_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            const INT: bool = false;
            #[inline(always)]
            fn f(self) -> f64 { f64::from(self) }
            #[inline(always)]
            fn i(self) -> i128 { 0 }
        }
    )*};
}
float_value!(f32, f64, half::f16);

/// Independent accumulators per pass: enough for the compiler to fill AVX2 registers.
const LANES: usize = 16;

/// One chunk: `values` with an optional validity bitmap over the same rows.
///
/// The same code runs everywhere; on x86-64 CPUs with AVX-512F or AVX2 it is compiled again
/// with that feature enabled (wider vectors; Rust never contracts a multiply and an add into
/// an FMA), which changes speed only: every operation and its order are the same, so results
/// are bit-for-bit identical on every machine.
fn chunk_partial<T: Value>(values: &[T], nulls: Option<&NullBuffer>) -> Partial {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the only precondition of calling a `#[target_feature(enable = "avx512f")]`
        // function is that the CPU supports AVX-512F, checked just above.
        return unsafe { chunk_partial_avx512(values, nulls) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the only precondition of calling a `#[target_feature(enable = "avx2")]`
        // function is that the CPU supports AVX2, checked just above.
        return unsafe { chunk_partial_avx2(values, nulls) };
    }
    chunk_partial_any(values, nulls)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn chunk_partial_avx512<T: Value>(values: &[T], nulls: Option<&NullBuffer>) -> Partial {
    chunk_partial_any(values, nulls)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn chunk_partial_avx2<T: Value>(values: &[T], nulls: Option<&NullBuffer>) -> Partial {
    chunk_partial_any(values, nulls)
}

#[inline(always)]
fn chunk_partial_any<T: Value>(values: &[T], nulls: Option<&NullBuffer>) -> Partial {
    let mut p = Partial::empty(T::INT);
    let valid = |k: usize| nulls.is_none_or(|n| n.is_valid(k));
    let count = nulls.map_or(values.len(), |n| n.len() - n.null_count());
    p.null_count = (values.len() - count) as u64;
    p.count = count as u64;
    if count == 0 {
        return p;
    }
    if T::INT {
        let (mut sum, mut lo, mut hi) = (0i128, i128::MAX, i128::MIN);
        if std::mem::size_of::<T>() <= 4 {
            // 32 Ki values of at most 32 bits cannot overflow an i64 lane.
            let mut s = [0i64; LANES];
            let mut l_lo = [i64::MAX; LANES];
            let mut l_hi = [i64::MIN; LANES];
            for (k, &x) in values.iter().enumerate() {
                if nulls.is_none() || valid(k) {
                    let (l, v) = (k % LANES, x.i() as i64);
                    s[l] += v;
                    l_lo[l] = if v < l_lo[l] { v } else { l_lo[l] };
                    l_hi[l] = if v > l_hi[l] { v } else { l_hi[l] };
                }
            }
            sum = s.iter().map(|&v| i128::from(v)).sum();
            lo = l_lo.iter().map(|&v| i128::from(v)).min().unwrap_or(lo);
            hi = l_hi.iter().map(|&v| i128::from(v)).max().unwrap_or(hi);
        } else {
            for (k, &x) in values.iter().enumerate() {
                if nulls.is_none() || valid(k) {
                    let v = x.i();
                    sum += v;
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        p.sum = Number::Int(sum);
        p.min = Some(Number::Int(lo));
        p.max = Some(Number::Int(hi));
        let high = sum as f64;
        set_mean(&mut p, high, (sum - high as i128) as f64, count);
    } else {
        // Compensated sums (Knuth's branch-free two-sum per lane) and compare-select min/max.
        // A NaN makes the sum NaN, so NaNs are looked for only when the sum is not finite.
        let mut s = [0.0f64; LANES];
        let mut c = [0.0f64; LANES];
        let mut lo = [f64::INFINITY; LANES];
        let mut hi = [f64::NEG_INFINITY; LANES];
        let mut add = |l: usize, x: f64| {
            let t = s[l] + x;
            let bb = t - s[l];
            c[l] += (s[l] - (t - bb)) + (x - bb);
            s[l] = t;
            lo[l] = if x < lo[l] { x } else { lo[l] };
            hi[l] = if x > hi[l] { x } else { hi[l] };
        };
        match nulls {
            None => {
                let mut blocks = values.chunks_exact(LANES);
                for block in &mut blocks {
                    for (l, &x) in block.iter().enumerate() {
                        add(l, x.f());
                    }
                }
                for (l, &x) in blocks.remainder().iter().enumerate() {
                    add(l, x.f());
                }
            }
            Some(_) => {
                for (k, &x) in values.iter().enumerate() {
                    if valid(k) {
                        add(k % LANES, x.f());
                    }
                }
            }
        }
        let mut total = (0.0, 0.0);
        for l in 0..LANES {
            let (t, e) = two_sum(total.0, s[l]);
            total = (t, total.1 + e + c[l]);
        }
        p.sum = Number::Float(total.0);
        p.sum_low = if total.0.is_finite() { total.1 } else { 0.0 };
        p.min = Some(Number::Float(lo.into_iter().fold(f64::INFINITY, f64::min)));
        p.max = Some(Number::Float(
            hi.into_iter().fold(f64::NEG_INFINITY, f64::max),
        ));
        p.nan = !total.0.is_finite()
            && values
                .iter()
                .enumerate()
                .any(|(k, &x)| x.f().is_nan() && valid(k));
        let low = p.sum_low;
        set_mean(&mut p, total.0, low, count);
    }
    // Second pass, while the chunk is in cache: deviations from the chunk mean, with the
    // corrected two-pass formula (the sum of deviations removes the mean's rounding).
    let mean = p.mean;
    let mut d1 = [0.0f64; LANES];
    let mut d2 = [0.0f64; LANES];
    let mut dev = |l: usize, x: f64| {
        let d = x - mean;
        d1[l] += d;
        d2[l] += d * d;
    };
    match nulls {
        None => {
            let mut blocks = values.chunks_exact(LANES);
            for block in &mut blocks {
                for (l, &x) in block.iter().enumerate() {
                    dev(l, x.f());
                }
            }
            for (l, &x) in blocks.remainder().iter().enumerate() {
                dev(l, x.f());
            }
        }
        Some(_) => {
            for (k, &x) in values.iter().enumerate() {
                if valid(k) {
                    dev(k % LANES, x.f());
                }
            }
        }
    }
    let (s1, s2): (f64, f64) = (d1.iter().sum(), d2.iter().sum());
    let m2 = if s2.is_finite() {
        s2 - s1 * s1 / count as f64
    } else {
        s2 // inf stays inf
    };
    p.m2 = if m2 < 0.0 { 0.0 } else { m2 }; // keeps NaN
    p
}

/// The mean of `count` values summing to `high + low`, as a double-double.
fn set_mean(p: &mut Partial, high: f64, low: f64, count: usize) {
    let n = count as f64;
    let mean = (high + low) / n;
    // high - mean * n, exactly (fused multiply-add), plus the low part, spread over n.
    let rest = (-mean).mul_add(n, high) + low;
    p.mean = mean;
    p.mean_low = if rest.is_finite() { rest / n } else { 0.0 };
}

/// A numeric column's chunks, resolved once: `(array, nulls)` per batch.
struct Column {
    parts: Vec<(ArrayRef, Option<NullBuffer>)>,
    chunks: Vec<(usize, Range<usize>)>,
}

impl Column {
    /// Resolve `path` in `batches` (of `schema`); `name` labels errors.
    fn resolve(
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

    fn int(&self) -> bool {
        self.parts[0].0.data_type().is_integer()
    }

    /// The partial of chunks `chunks`, computed in parallel and merged in order.
    fn reduce(&self, chunks: Range<usize>, threads: Option<usize>) -> Partial {
        merge_in_order(self.int(), &self.partials(chunks, threads))
    }

    /// The partial of each chunk in `chunks` (clamped), in chunk order, computed in parallel.
    fn partials(&self, chunks: Range<usize>, threads: Option<usize>) -> Vec<Partial> {
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
        macro_rules! go {
            ($t:ty) => {{
                let values = array
                    .as_any()
                    .downcast_ref::<PrimitiveArray<$t>>()
                    .expect("checked in resolve");
                chunk_partial(&values.values()[rows.clone()], nulls.as_ref())
            }};
        }
        dispatch!(array.data_type(), go)
    }
}

/// Call `$go!(ArrowType)` for the numeric type `$dt`.
macro_rules! dispatch {
    ($dt:expr, $go:ident) => {
        match $dt {
            DataType::Int8 => $go!(Int8Type),
            DataType::Int16 => $go!(Int16Type),
            DataType::Int32 => $go!(Int32Type),
            DataType::Int64 => $go!(Int64Type),
            DataType::UInt8 => $go!(UInt8Type),
            DataType::UInt16 => $go!(UInt16Type),
            DataType::UInt32 => $go!(UInt32Type),
            DataType::UInt64 => $go!(UInt64Type),
            DataType::Float16 => $go!(Float16Type),
            DataType::Float32 => $go!(Float32Type),
            DataType::Float64 => $go!(Float64Type),
            other => unreachable!("{other} checked in resolve"),
        }
    };
}
use dispatch;

fn is_numeric(dt: &DataType) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(xs: &[f64]) -> (f64, f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        (
            mean,
            var,
            xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        )
    }

    fn stats(xs: &[f64]) -> Stats {
        xs.chunks(7)
            .map(|c| chunk_partial(c, None))
            .fold(Partial::empty(false), |a, p| a.merge(&p))
            .finish("x", 0)
    }

    #[test]
    fn every_compiled_kernel_gives_the_same_bits() {
        // Offset noise with nulls and odd lengths: the lane order shows in the last digits.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let xs: Vec<f64> = (0..40_001)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                1e9 + (state >> 11) as f64 * 1e-10
            })
            .collect();
        let ys: Vec<i32> = xs.iter().map(|x| (x.to_bits() as i32) >> 3).collect();
        let nulls = NullBuffer::from_iter((0..xs.len()).map(|i| i % 7 != 3));
        let bits = |p: Partial| format!("{p:?}");
        for n in [None, Some(&nulls)] {
            for len in [xs.len(), 17, 3] {
                let nulls = n.map(|n| n.slice(0, len));
                let (x, y) = (&xs[..len], &ys[..len]);
                let want = (
                    bits(chunk_partial_any(x, nulls.as_ref())),
                    bits(chunk_partial_any(y, nulls.as_ref())),
                );
                // The dispatched kernel (AVX-512F or AVX2 on such CPUs) and each one this CPU
                // can run.
                assert_eq!(bits(chunk_partial(x, nulls.as_ref())), want.0);
                assert_eq!(bits(chunk_partial(y, nulls.as_ref())), want.1);
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is supported, checked just above.
                    let got = unsafe { chunk_partial_avx2(x, nulls.as_ref()) };
                    assert_eq!(bits(got), want.0);
                }
            }
        }
    }

    #[test]
    fn cancellation_is_compensated() {
        let s = stats(&[1e16, 1.0, -1e16]);
        assert_eq!(s.sum, Number::Float(1.0));
        assert_eq!(s.count, 3);
    }

    #[test]
    fn tiny_variance_on_a_huge_offset() {
        // 1e9 + k/1000: every value is an integer multiple of 2^-23, so the exact mean and
        // variance follow from i128 arithmetic on the scaled values.
        let xs: Vec<f64> = (0..1000)
            .map(|i| 1e9 + ((i * 7919) % 101) as f64 * 1e-3)
            .collect();
        let scaled: Vec<i128> = xs.iter().map(|x| (x * 8_388_608.0) as i128).collect();
        let n = xs.len() as i128;
        let (s1, s2) = scaled
            .iter()
            .fold((0i128, 0i128), |(a, b), &v| (a + v, b + v * v));
        let exact_mean = s1 as f64 / n as f64 / 8_388_608.0;
        let exact_var = (n * s2 - s1 * s1) as f64 / (n * n) as f64 / 2f64.powi(46);
        let s = stats(&xs);
        assert!((s.mean - exact_mean).abs() / exact_mean < 1e-15);
        assert!(
            (s.var - exact_var).abs() / exact_var < 1e-12,
            "{} vs {exact_var}",
            s.var
        );
        let (_, _, max) = naive(&xs);
        assert_eq!(s.max, Some(Number::Float(max)));
    }

    #[test]
    fn nan_and_infinities_follow_numpy() {
        let s = stats(&[1.0, f64::NAN, 3.0]);
        assert!(s.sum.as_f64().is_nan() && s.mean.is_nan() && s.var.is_nan());
        assert!(s.min.unwrap().as_f64().is_nan() && s.max.unwrap().as_f64().is_nan());
        let s = stats(&[f64::INFINITY, 1.0]);
        assert_eq!(s.sum, Number::Float(f64::INFINITY));
        assert_eq!(s.mean, f64::INFINITY);
        assert!(s.var.is_nan());
        let s = stats(&[f64::INFINITY, f64::NEG_INFINITY]);
        assert!(s.sum.as_f64().is_nan());
    }

    #[test]
    fn integer_extremes_are_exact() {
        let xs = [i64::MAX, i64::MAX, i64::MIN];
        let p = chunk_partial(&xs, None).finish("x", 0);
        assert_eq!(p.sum, Number::Int(i64::MAX as i128 - 1));
        assert_eq!(p.min, Some(Number::Int(i64::MIN as i128)));
        let ys = [u64::MAX; 3];
        let p = chunk_partial(&ys, None).finish("y", 1);
        assert_eq!(p.sum, Number::Int(3 * u64::MAX as i128));
        assert_eq!(p.var, 0.0);
    }

    #[test]
    fn empty_and_single() {
        let e = Partial::empty(false).finish("x", 0);
        assert_eq!((e.count, e.sum), (0, Number::Float(0.0)));
        assert!(e.mean.is_nan() && e.min.is_none());
        let one = stats(&[2.5]);
        assert_eq!(
            (one.mean, one.var, one.min),
            (2.5, 0.0, Some(Number::Float(2.5)))
        );
        assert!(chunk_partial(&[2.5f64], None).finish("x", 1).var.is_nan());
    }
}
