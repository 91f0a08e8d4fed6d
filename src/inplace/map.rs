//! Element-wise operations on a column in place (`square`, `scale`, `add`, `clip`): their
//! constants, the overflow check that runs before any write, and the kernels.

use std::ops::Range;

use arrow_array::ArrowPrimitiveType;
use arrow_buffer::NullBuffer;
use arrow_schema::DataType;

use crate::error::{Error, Result};
use crate::reduce::CHUNK_ROWS;
use crate::sys::WritableMapping;

use super::writable::{Placement, WritableSegment};

/// Options for [`WritableSegment::map_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    wrap: bool,
    dry_run: bool,
    release: bool,
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

    /// For a handle closed right after the map: each thread drops the pages it wrote from this
    /// process's page tables as soon as its piece is done (`MADV_DONTNEED` of a shared
    /// mapping: the values stay in the segment). Closing then has no page left to unmap,
    /// which would otherwise take one thread about 50 ms per GiB after the parallel work.
    /// A later access through this handle faults its pages in again.
    pub fn release(mut self, release: bool) -> Self {
        self.release = release;
        self
    }
}

impl WritableSegment {
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
                if !options.wrap && <Native as MapValue>::CAN_OVERFLOW {
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
                    let release = options.release.then_some(&*self.map);
                    apply(values.batches_mut(), &op, release);
                }
                Ok(())
            }};
        }
        // Integers through arrow's own dispatch; floats by hand (arrow has no float-only
        // dispatch, and `downcast_primitive!` would also admit dates, timestamps, decimals and
        // intervals by their native integers, which `map` refuses).
        let data_type = &placement.data_type;
        arrow_array::downcast_integer! {
            data_type => (go),
            DataType::Float32 => go!(arrow_array::types::Float32Type),
            DataType::Float64 => go!(arrow_array::types::Float64Type),
            _ => Err(self.column_error(path, format!("{data_type} values cannot be mapped"))),
        }
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
    /// Whether any result can overflow (integers): if not, there is no read pass to run.
    const CAN_OVERFLOW: bool;
    fn prepare(op: MapOp) -> Result<Self::Op, String>;
    /// Why applying `op` to the valid values of `values` would overflow, if it would.
    fn overflow(values: &[Self], nulls: Option<&NullBuffer>, op: &Self::Op) -> Option<String>;
    fn apply(values: &mut [Self], op: &Self::Op);
}

macro_rules! float_map {
    ($($t:ty),*) => {$(
        impl MapValue for $t {
            type Op = MapOp;
            const CAN_OVERFLOW: bool = false;
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
            const CAN_OVERFLOW: bool = true;
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

/// The largest piece of values one thread writes and then releases at once (see [`apply`]).
const MAX_PIECE_BYTES: usize = 8 << 20;

/// Apply `op` to every value of `slices` (which lie in `release`'s mapping, if given), in
/// parallel pieces of at least [`CHUNK_ROWS`] values, about 8 per thread up to
/// [`MAX_PIECE_BYTES`]. With `release`, the thread that wrote a piece then drops the whole
/// pages inside it from the page tables (see [`MapOptions::release`]).
fn apply<T: MapValue>(slices: Vec<&mut [T]>, op: &T::Op, release: Option<&WritableMapping>) {
    use rayon::prelude::*;
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let piece = (total / (rayon::current_num_threads() * 8))
        .min(MAX_PIECE_BYTES / std::mem::size_of::<T>())
        .max(CHUNK_ROWS);
    let pieces: Vec<&mut [T]> = slices
        .into_iter()
        .flat_map(|s| s.chunks_mut(piece))
        .collect();
    pieces.into_par_iter().for_each(|p| {
        T::apply(p, op);
        if let Some(map) = release {
            let offset = (p.as_ptr() as usize).saturating_sub(map.as_mut_ptr() as usize);
            map.release(offset, std::mem::size_of_val(p));
        }
    });
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
