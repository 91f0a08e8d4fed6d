"""Property tests of ``shmarrow.reduce`` against an exact oracle (``fractions.Fraction``).

Hypothesis draws the data (values from several distributions: large offsets with small noise,
wide magnitudes, exact cancellations, nulls) and how it is cut: batch sizes decide the chunk
boundaries (chunks of 32 Ki rows never span batches), and the thread count is drawn too.
The oracle computes the exact sum, mean and variance of the float64 values as rationals.

Claims checked:
- integer sums, counts, min and max are exact;
- float sums are within the compensated-summation bound ``eps*|S| + 4*(n*eps)**2 * sum|x|``
  (``eps = 2**-53``): far below the naive bound ``n*eps*sum|x|``;
- the mean is within that bound over n (plus its own rounding);
- the variance is within ``1e-11`` of the exact variance, relatively, plus ``16*eps**2*max x**2``
  (the rounding of the values' squares' scale, which matters only when the variance is 0).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shmarrow

EPS = 2.0**-53
PROPERTY = settings(
    max_examples=int(os.environ.get("SHMARROW_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def exact_stats(values, ddof):
    """Exact sum, mean and variance of ``values`` (Python ints or floats) as Fractions."""
    xs = [Fraction(v) for v in values]
    n = len(xs)
    s1 = sum(xs, Fraction(0))
    mean = s1 / n
    m2 = sum(((x - mean) ** 2 for x in xs), Fraction(0))
    var = m2 / (n - ddof) if n > ddof else None
    return s1, mean, var


# Batch sizes: up to 3 chunks per batch, and batches shorter than a chunk.
SIZES = st.lists(st.one_of(st.integers(0, 40), st.integers(1, 70_000)), min_size=1, max_size=4)


@st.composite
def float_columns(draw):
    """(batches of float64 values, batches of validity masks)."""
    sizes = draw(SIZES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offset = draw(st.sampled_from([0.0, 1.0, 1e9, -3e15, 1e100]))
    scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 1e6, 1e90]))
    n = sum(sizes)
    values = offset + scale * rng.standard_normal(n)
    # Exact cancellations of huge terms placed at random (across chunks and batches).
    for _ in range(draw(st.integers(0, 3))):
        if n >= 2:
            i, j = rng.choice(n, 2, replace=False)
            big = draw(st.sampled_from([1e16, 1e22, 2.0**80]))
            values[i], values[j] = big, -big
    # A few explicit values Hypothesis picks (and shrinks) itself.
    explicit = draw(st.lists(st.floats(-1e150, 1e150, allow_nan=False), max_size=min(n, 8)))
    values[: len(explicit)] = explicit
    valid = rng.random(n) > draw(st.sampled_from([0.0, 0.3]))
    return np.split(values, np.cumsum(sizes)[:-1]), np.split(valid, np.cumsum(sizes)[:-1])


@st.composite
def int_columns(draw):
    """(batches of int64 values, batches of validity masks); every value within 2**53, where
    float64 holds it exactly, or spread over the whole int64 range."""
    sizes = draw(SIZES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = sum(sizes)
    if draw(st.booleans()):
        values = rng.integers(-(2**63), 2**63, n, dtype=np.int64, endpoint=False)
    else:
        offset = draw(st.sampled_from([0, 2**40, -(2**52)]))
        spread = draw(st.sampled_from([0, 3, 1000, 2**30]))
        values = offset + rng.integers(-spread, spread, n, endpoint=True)
    valid = rng.random(n) > draw(st.sampled_from([0.0, 0.3]))
    return np.split(values, np.cumsum(sizes)[:-1]), np.split(valid, np.cumsum(sizes)[:-1])


def reduce_drawn(name, batches, valids, typ, threads, ddof):
    """Publish the drawn batches as segment ``name``, reduce ``x``, remove the segment; check
    the counts, min and max. Returns the statistics and the non-null values in order."""
    table = pa.Table.from_batches(
        [pa.record_batch({"x": pa.array(v, typ, mask=~m)}) for v, m in zip(batches, valids)]
    )
    try:
        shmarrow.create(name, table)
        got = shmarrow.reduce(name, threads=threads, ddof=ddof)["x"]
    finally:
        shmarrow.remove(name)
    xs = [v for b, m in zip(batches, valids) for v in b[m].tolist()]
    assert (got["count"], got["null_count"]) == (len(xs), sum(len(b) for b in batches) - len(xs))
    if xs:
        assert (got["min"], got["max"]) == (min(xs), max(xs))
    else:
        assert got["min"] is None and got["max"] is None and math.isnan(got["mean"])
    return got, xs


@PROPERTY
@given(data=float_columns(), threads=st.integers(1, 3), ddof=st.integers(0, 1))
def test_float_reduce_within_the_compensated_bound(new_name, data, threads, ddof):
    got, xs = reduce_drawn(new_name(), *data, pa.float64(), threads, ddof)
    n = len(xs)
    if n == 0:
        assert got["sum"] == 0.0
        return
    s1, mean, var = exact_stats(xs, ddof)
    abs_sum = sum(abs(Fraction(x)) for x in xs)
    sum_bound = EPS * abs(s1) + 4 * (n * EPS) ** 2 * abs_sum
    assert abs(Fraction(got["sum"]) - s1) <= sum_bound, (got["sum"], float(s1), float(sum_bound))
    mean_bound = sum_bound / n + 2 * EPS * abs(mean)
    assert abs(Fraction(got["mean"]) - mean) <= mean_bound, (got["mean"], float(mean))
    if var is None:
        assert math.isnan(got["var"])
        return
    peak = max(abs(Fraction(x)) for x in xs)
    var_bound = Fraction(1e-11) * var + 16 * Fraction(EPS) ** 2 * peak**2
    assert abs(Fraction(got["var"]) - var) <= var_bound, (got["var"], float(var))


@PROPERTY
@given(data=int_columns(), threads=st.integers(1, 3), ddof=st.integers(0, 1))
def test_integer_reduce_is_exact(new_name, data, threads, ddof):
    got, xs = reduce_drawn(new_name(), *data, pa.int64(), threads, ddof)
    assert got["sum"] == sum(xs) and type(got["sum"]) is int
    if not xs:
        return
    _, mean, var = exact_stats(xs, ddof)
    # The exact sum rounded to float64, then divided by n: two roundings.
    assert abs(Fraction(got["mean"]) - mean) <= 2 * EPS * abs(mean)
    if var is None:
        assert math.isnan(got["var"])
        return
    peak = max(abs(x) for x in xs)
    var_bound = Fraction(1e-11) * var + 16 * Fraction(EPS) ** 2 * peak**2
    assert abs(Fraction(got["var"]) - var) <= var_bound, (got["var"], float(var))
