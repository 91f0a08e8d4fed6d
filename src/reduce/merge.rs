//! Merging per-chunk partials: Chan et al.'s pairwise update for the squared deviations, an
//! error-free two-sum for float sums, in chunk order.

use super::{Number, Stats};

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
    pub(super) fn empty(int: bool) -> Self {
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
pub(super) fn two_sum(a: f64, b: f64) -> (f64, f64) {
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
