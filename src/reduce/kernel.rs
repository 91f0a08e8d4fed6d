//! The per-chunk kernel: one chunk's values (and validity) to a [`Partial`].

use arrow_buffer::NullBuffer;

use super::Number;
use super::merge::{Partial, two_sum};

/// A numeric value type a kernel can reduce.
pub(super) trait Value: Copy + Send + Sync {
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
/// The same code runs everywhere; on x86-64 CPUs with AVX-512F or AVX2 (and FMA) it is
/// compiled again with those features enabled (wider vectors; Rust never contracts a multiply
/// and an add into an FMA by itself), which changes speed only: every operation and its order
/// are the same, so results are bit-for-bit identical on every machine. Those builds do some
/// of the compensated sum's additions as `fma(a, 1, b)`, which rounds exactly as `a + b` does
/// but runs on the multiply units (AMD's Zen 4 has two units for each), where the adders are
/// the bottleneck. On x86-64 the main pass also asks the CPU for the data [`AHEAD`] bytes
/// ahead (a hint: speed only), which keeps more memory requests in flight than the hardware
/// prefetcher does for a loop this long.
pub(super) fn chunk_partial<T: Value>(values: &[T], nulls: Option<&NullBuffer>) -> Partial {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the only precondition of calling a `#[target_feature(enable =
        // "avx512f,fma")]` function is that the CPU supports both, checked just above.
        return unsafe { chunk_partial_avx512(values, nulls) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the only precondition of calling a `#[target_feature(enable = "avx2,fma")]`
        // function is that the CPU supports both, checked just above.
        return unsafe { chunk_partial_avx2(values, nulls) };
    }
    chunk_partial_any::<T, false>(values, nulls)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn chunk_partial_avx512<T: Value>(values: &[T], nulls: Option<&NullBuffer>) -> Partial {
    chunk_partial_any::<T, true>(values, nulls)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chunk_partial_avx2<T: Value>(values: &[T], nulls: Option<&NullBuffer>) -> Partial {
    chunk_partial_any::<T, true>(values, nulls)
}

/// The kernel; `FMA_ADDS`: do some additions as `fma(a, 1, b)` (same result, other units).
#[inline(always)]
fn chunk_partial_any<T: Value, const FMA_ADDS: bool>(
    values: &[T],
    nulls: Option<&NullBuffer>,
) -> Partial {
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
        // Without nulls, the same pass sums the squares of the deviations from a pilot `k`
        // (see `pilot` and `one_pass_m2`).
        let one = std::hint::black_box(1.0); // an opaque 1: `fma(a, one, b)` stays an fma
        let plus = |a: f64, b: f64| if FMA_ADDS { a.mul_add(one, b) } else { a + b };
        let mut s = [0.0f64; LANES];
        let mut c = [0.0f64; LANES];
        let mut lo = [f64::INFINITY; LANES];
        let mut hi = [f64::NEG_INFINITY; LANES];
        let mut q = [0.0f64; LANES];
        let mut add = |l: usize, x: f64| {
            let t = s[l] + x;
            let bb = t - s[l];
            c[l] = plus((s[l] - plus(-bb, t)) + plus(-bb, x), c[l]);
            s[l] = t;
            lo[l] = if x < lo[l] { x } else { lo[l] };
            hi[l] = if x > hi[l] { x } else { hi[l] };
        };
        let pilot = match nulls {
            None => {
                let k = pilot(values);
                let mut blocks = values.chunks_exact(LANES);
                // The next chunk's pilot values (usually in the rows right after these).
                for j in 0..LANES {
                    prefetch(values, values.len() + pilot_row(j, LANES, values.len()));
                }
                let ahead = AHEAD / std::mem::size_of::<T>();
                for (b, block) in (&mut blocks).enumerate() {
                    prefetch(values, b * LANES + ahead);
                    prefetch(values, b * LANES + ahead + LANES / 2);
                    for (l, &x) in block.iter().enumerate() {
                        let x = x.f();
                        add(l, x);
                        let d = x - k;
                        q[l] = d.mul_add(d, q[l]);
                    }
                }
                for (l, &x) in blocks.remainder().iter().enumerate() {
                    let x = x.f();
                    add(l, x);
                    let d = x - k;
                    q[l] = d.mul_add(d, q[l]);
                }
                Some(k)
            }
            Some(_) => {
                for (k, &x) in values.iter().enumerate() {
                    if valid(k) {
                        add(k % LANES, x.f());
                    }
                }
                None
            }
        };
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
        if let Some(m2) = pilot.and_then(|k| one_pass_m2(total, k, q.iter().sum(), count)) {
            p.m2 = m2;
            return p;
        }
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

/// Bytes ahead of the values being summed that the main pass asks the CPU to fetch.
const AHEAD: usize = 4096;

/// Ask the CPU to fetch the cache line of `values[index]`, an index that may lie beyond the
/// end (a hint: nothing is read).
#[inline(always)]
fn prefetch<T>(values: &[T], index: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has; it is a hint that
        // never faults, whatever the address (`wrapping_add`: computing it has no UB either).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(values.as_ptr().wrapping_add(index).cast()) };
    }
}

/// The mean of 16 values spread evenly over the chunk (all of them in a shorter chunk), in
/// index order: an estimate of the chunk's mean that also holds for trending data (sorted
/// values, timestamps), where the chunk's first values lie far from its mean.
fn pilot<T: Value>(values: &[T]) -> f64 {
    let (n, picks) = (values.len(), values.len().min(LANES));
    let sum: f64 = (0..picks).map(|j| values[pilot_row(j, picks, n)].f()).sum();
    sum / picks as f64
}

/// The row of the `j`th of the `picks` values [`pilot`] averages in a chunk of `n` rows: the
/// middle of the `j`th of `picks` equal parts.
fn pilot_row(j: usize, picks: usize, n: usize) -> usize {
    (2 * j + 1) * n / (2 * picks)
}

/// The sum of squared deviations from the mean of `count` values summing to `sum` (a
/// double-double), from `q`, the sum of their squared deviations from `k`:
/// `q - (sum - count k)^2 / count`. Taken only where that subtraction cancels less than one
/// bit (`q <= 2 m2`, i.e. `k` lies within a standard deviation of the mean), so that it is as
/// accurate as the second pass (and nothing is taken for NaN or infinities); `None` sends the
/// chunk to the second pass.
fn one_pass_m2(sum: (f64, f64), k: f64, q: f64, count: usize) -> Option<f64> {
    let n = count as f64;
    let nk = n * k;
    let nk_low = n.mul_add(k, -nk); // n k = nk + nk_low exactly
    let s1 = ((sum.0 - nk) + sum.1) - nk_low;
    let m2 = q - s1 * s1 / n;
    (q.is_finite() && m2 >= 0.0 && q <= 2.0 * m2).then_some(m2)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reduce::Stats;

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
                    bits(chunk_partial_any::<_, false>(x, nulls.as_ref())),
                    bits(chunk_partial_any::<_, false>(y, nulls.as_ref())),
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
    fn a_pilot_far_from_the_mean_takes_the_second_pass() {
        // [0, ..., 0, 2^500, 0, ..., 0], the big value one of the 16 the pilot averages: the
        // pilot lies 2^500/16 from the mean, so a one-pass result would cancel ~6 bits; the
        // second pass is exact here: m2 = B^2 1023/1024 and var = m2 / 1024, both exact in
        // binary.
        let big = 2f64.powi(500);
        let mut xs = vec![0.0; 1024];
        xs[32] = big;
        assert_eq!(pilot(&xs), big / 16.0);
        let s = chunk_partial(&xs, None).finish("x", 0);
        assert_eq!(s.var, big * big * 1023.0 / 1024.0 / 1024.0);
        // Near the mean (offset data), the one pass is taken and agrees with the exact value
        // (small integers: the sums below are exact in f64).
        let ys: Vec<f64> = (0..1024).map(|i| 1e6 + f64::from(i % 10)).collect();
        let got = chunk_partial(&ys, None).finish("y", 0).var;
        let (s1, s2) = (0..1024).fold((0.0, 0.0), |(a, b), i| {
            let v = f64::from(i % 10);
            (a + v, b + v * v)
        });
        let want = (s2 - s1 * s1 / 1024.0) / 1024.0;
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
        // A ramp (sorted data, timestamps): its first values lie far from its mean, but the
        // pilot lies near the middle, so the one pass is taken (integers: every sum is exact).
        let ramp: Vec<f64> = (0..1 << 15).map(f64::from).collect();
        let k = pilot(&ramp);
        let q = ramp.iter().map(|x| (x - k) * (x - k)).sum();
        let sum = ramp.iter().sum();
        let m2 = one_pass_m2((sum, 0.0), k, q, ramp.len());
        let mean = sum / ramp.len() as f64;
        assert_eq!(m2, Some(ramp.iter().map(|x| (x - mean) * (x - mean)).sum()));
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
