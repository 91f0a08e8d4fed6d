//! Reductions, in-place writes, locks and fill-in-place tables through the Rust API.

mod common;

use std::sync::Arc;

use arrow_array::types::{Float32Type, Float64Type, Int32Type};
use arrow_array::{
    Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, StructArray, UInt64Array,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use common::{Name, TempDir};
use shmarrow::reduce::{CHUNK_ROWS, Number, ReduceOptions};
use shmarrow::{CreateOptions, Error, MapOp, split_rows};

/// Deterministic pseudo-random floats in [-1, 1) plus an offset.
fn noise(n: usize, seed: u64, offset: f64) -> Vec<f64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            offset + (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// Several batches (not multiples of the chunk size), with nulls every 7th row.
fn sample(name: &Name) -> Vec<Option<f64>> {
    let mut all = Vec::new();
    let batches: Vec<RecordBatch> = [CHUNK_ROWS * 2 + 17, 5, CHUNK_ROWS + 1]
        .iter()
        .enumerate()
        .map(|(b, &n)| {
            let v: Vec<Option<f64>> = noise(n, b as u64 + 7, 1e6)
                .into_iter()
                .enumerate()
                .map(|(i, x)| (i % 7 != 3).then_some(x))
                .collect();
            all.extend(v.iter().copied());
            let ints = Int64Array::from_iter_values((0..n as i64).map(|i| i * 1_000_003 - 7));
            RecordBatch::try_from_iter([
                ("x", Arc::new(Float64Array::from(v)) as _),
                ("i", Arc::new(ints) as _),
            ])
            .unwrap()
        })
        .collect();
    name.dir
        .create(
            name,
            &batches[0].schema(),
            &batches,
            &CreateOptions::default(),
        )
        .unwrap();
    all
}

#[test]
fn reductions_match_a_naive_reference_and_do_not_depend_on_threads() {
    let name = Name::new("reduce");
    let values = sample(&name);
    let seg = name.dir.attach(&name).unwrap();
    let valid: Vec<f64> = values.iter().flatten().copied().collect();
    let n = valid.len() as f64;
    let mean = valid.iter().sum::<f64>() / n;
    let var = valid.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;

    let one = seg
        .reduce(&["x", "i"], &ReduceOptions::default().threads(1))
        .unwrap();
    for threads in [2, 7] {
        let other = seg
            .reduce(&["x", "i"], &ReduceOptions::default().threads(threads))
            .unwrap();
        assert_eq!(one, other, "threads {threads} changed the result");
    }
    let x = &one[0];
    assert_eq!(x.count as usize, valid.len());
    assert_eq!(x.null_count as usize, values.len() - valid.len());
    assert!((x.mean - mean).abs() / mean < 1e-12);
    assert!((x.var - var).abs() / var < 1e-9);
    assert_eq!(
        x.min,
        Some(Number::Float(
            valid.iter().copied().fold(f64::INFINITY, f64::min)
        ))
    );
    assert_eq!(
        x.max,
        Some(Number::Float(
            valid.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        ))
    );

    let i = &one[1];
    let ints: Vec<i128> = seg
        .batches()
        .iter()
        .flat_map(|b| {
            let a = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            a.values().iter().map(|&v| v as i128).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(i.sum, Number::Int(ints.iter().sum()));
    assert_eq!(i.min, Some(Number::Int(*ints.iter().min().unwrap())));

    // ddof and the empty selection (all numeric columns).
    let d1 = seg
        .reduce(&["x"], &ReduceOptions::default().ddof(1))
        .unwrap();
    assert!((d1[0].var - var * n / (n - 1.0)).abs() / var < 1e-9);
    assert_eq!(seg.reduce(&[], &ReduceOptions::default()).unwrap().len(), 2);
}

#[test]
fn struct_children_by_dotted_path_with_parent_nulls() {
    let name = Name::new("struct");
    let x = Float64Array::from(vec![Some(1.0), Some(2.0), Some(100.0), None]);
    let pos = StructArray::new(
        Fields::from(vec![Field::new("x", DataType::Float64, true)]),
        vec![Arc::new(x)],
        Some(NullBuffer::from(vec![true, true, false, true])),
    );
    let batch = RecordBatch::try_from_iter([
        ("pos", Arc::new(pos) as _),
        (
            "s",
            Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as _,
        ),
    ])
    .unwrap();
    name.dir
        .create(&name, &batch.schema(), &[batch], &CreateOptions::default())
        .unwrap();
    let seg = name.dir.attach(&name).unwrap();
    let s = &seg.reduce(&["pos.x"], &ReduceOptions::default()).unwrap()[0];
    assert_eq!((s.count, s.null_count), (2, 2));
    assert_eq!(s.sum, Number::Float(3.0));
    for (bad, why) in [
        ("nope", "no such column"),
        ("s", "not a numeric"),
        ("pos.y", "no field"),
        ("s.x", "not a struct"),
    ] {
        match seg.reduce(&[bad], &ReduceOptions::default()) {
            Err(Error::InvalidColumn { reason, .. }) => {
                assert!(reason.contains(why), "{bad}: {reason}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn all_null_empty_and_nan_columns() {
    let name = Name::new("edge");
    let batch = RecordBatch::try_from_iter([
        ("nulls", Arc::new(Float64Array::from(vec![None, None])) as _),
        (
            "nan",
            Arc::new(Float64Array::from(vec![1.0, f64::NAN])) as _,
        ),
        (
            "big",
            Arc::new(UInt64Array::from(vec![u64::MAX, u64::MAX])) as _,
        ),
    ])
    .unwrap();
    name.dir
        .create(
            &name,
            &batch.schema(),
            std::slice::from_ref(&batch),
            &CreateOptions::default(),
        )
        .unwrap();
    let seg = name.dir.attach(&name).unwrap();
    let r = seg.reduce(&[], &ReduceOptions::default()).unwrap();
    assert_eq!((r[0].count, r[0].null_count, r[0].min), (0, 2, None));
    assert!(r[0].mean.is_nan());
    assert!(r[1].mean.is_nan() && r[1].max.unwrap().as_f64().is_nan());
    assert_eq!(r[2].sum, Number::Int(2 * u64::MAX as i128));

    name.dir
        .create(&name, &batch.schema(), &[], &CreateOptions::default())
        .unwrap();
    let empty = name
        .dir
        .attach(&name)
        .unwrap()
        .reduce(&["big"], &ReduceOptions::default())
        .unwrap();
    assert_eq!((empty[0].count, empty[0].sum), (0, Number::Int(0)));
}

#[test]
fn in_place_ops_are_seen_by_earlier_readers_and_keep_validity() {
    let name = Name::new("map");
    let batches: Vec<RecordBatch> = (0..3)
        .map(|b| {
            RecordBatch::try_from_iter([
                (
                    "x",
                    Arc::new(Float64Array::from(vec![Some(b as f64), None, Some(-3.0)])) as _,
                ),
                ("n", Arc::new(Int32Array::from(vec![1, 2, -7])) as _),
                ("s", Arc::new(StringArray::from(vec!["a", "b", "c"])) as _),
            ])
            .unwrap()
        })
        .collect();
    name.dir
        .create(
            &name,
            &batches[0].schema(),
            &batches,
            &CreateOptions::default(),
        )
        .unwrap();
    let reader = name.dir.attach(&name).unwrap();
    let w = name.dir.open_writable(&name).unwrap();
    w.map("x", MapOp::Square, 0..u64::MAX).unwrap();
    w.map("n", MapOp::Scale(3i64.into()), 0..u64::MAX).unwrap();
    w.map("n", MapOp::Clip((-10i64).into(), 5i64.into()), 3..6)
        .unwrap(); // batch 1 only
    let xs = |b: usize| {
        reader.batches()[b]
            .column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone()
    };
    assert_eq!(xs(2).value(0), 4.0);
    assert_eq!(xs(2).value(2), 9.0);
    assert!(xs(2).is_null(1), "validity unchanged");
    assert_eq!(xs(2).null_count(), 1);
    let ns = |b: usize| {
        reader.batches()[b]
            .column(1)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap()
            .values()
            .to_vec()
    };
    assert_eq!(ns(0), [3, 6, -21]);
    assert_eq!(ns(1), [3, 5, -10]);
    assert_eq!(ns(2), [3, 6, -21]);

    for (col, op, why) in [
        ("s", MapOp::Square, "fixed-width"),
        ("n", MapOp::Add(0.5.into()), "not an integer"),
        ("n", MapOp::Scale(3.0.into()), "not an integer"),
        (
            "n",
            MapOp::Add((1i64 << 40).into()),
            "not an integer in the range of i32",
        ),
        ("nope", MapOp::Square, "no such column"),
    ] {
        match w.map(col, op, 0..u64::MAX) {
            Err(Error::InvalidColumn { reason, .. }) => {
                assert!(reason.contains(why), "{col}: {reason}")
            }
            other => panic!("{col}: {other:?}"),
        }
    }
    // Each column's values are handed out once per writable handle: no aliasing.
    let w2 = name.dir.open_writable(&name).unwrap();
    let _x = w2.values_mut::<Float64Type>("x").unwrap();
    assert!(w2.values_mut::<Float64Type>("x").is_err());
    assert!(w2.values_mut::<Int32Type>("x").is_err(), "type checked");
}

#[test]
fn locks_exclude_writers() {
    use nix::fcntl::{Flock, FlockArg};
    let name = Name::new("lock");
    let b =
        RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(vec![1.0])) as _)]).unwrap();
    name.dir
        .create(&name, &b.schema(), &[b], &CreateOptions::default())
        .unwrap();
    let try_exclusive = || {
        let f = std::fs::File::open(name.path()).unwrap();
        Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
    };
    let shared = name.dir.lock(&name, true).unwrap();
    let shared2 = name.dir.lock(&name, true).unwrap();
    assert!(!try_exclusive(), "readers hold it");
    drop((shared, shared2));
    let exclusive = name.dir.lock(&name, false).unwrap();
    assert!(!try_exclusive());
    drop(exclusive);
    assert!(try_exclusive());
}

#[test]
fn fill_in_place_then_publish() {
    let tmp = TempDir::new("alloc");
    let dir = tmp.dir();
    let schema = Schema::new(vec![
        Field::new("x", DataType::Float64, false),
        Field::new(
            "pos",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 3),
            false,
        ),
    ]);
    let rows = 100_000;
    let alloc = dir
        .allocate("table", &schema, rows, &CreateOptions::default())
        .unwrap();
    assert!(!tmp.0.join("table").exists(), "not visible before publish");
    {
        let mut x = alloc.values_mut::<Float64Type>("x").unwrap();
        let mut pos = alloc.values_mut::<Float32Type>("pos").unwrap();
        assert_eq!(x[0].len(), rows);
        assert_eq!(pos[0].len(), rows * 3);
        let pos = &mut pos[0];
        std::thread::scope(|s| {
            let (a, b) = x[0].split_at_mut(rows / 2);
            s.spawn(|| a.iter_mut().enumerate().for_each(|(i, v)| *v = i as f64));
            s.spawn(|| {
                b.iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = (i + rows / 2) as f64)
            });
            s.spawn(|| pos.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32));
        });
    }
    let created = alloc.publish().unwrap();
    assert_eq!(
        created.bytes(),
        std::fs::metadata(tmp.0.join("table")).unwrap().len()
    );
    let seg = dir.attach("table").unwrap();
    common::assert_zero_copy(&seg);
    let x = seg.batches()[0]
        .column(0)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert!(x.values().iter().enumerate().all(|(i, &v)| v == i as f64));
    let s = &seg.reduce(&["x"], &ReduceOptions::default()).unwrap()[0];
    assert_eq!(s.sum, Number::Float((rows * (rows - 1) / 2) as f64));

    // Dropped without publishing: nothing left.
    let alloc = dir
        .allocate("gone", &schema, 10, &CreateOptions::default())
        .unwrap();
    let temp = alloc.temp_path().to_owned();
    assert!(temp.exists());
    drop(alloc);
    assert!(!temp.exists() && !tmp.0.join("gone").exists());
    assert!(dir.list().unwrap().temps.is_empty());

    let bad = Schema::new(vec![Field::new("s", DataType::Utf8, false)]);
    assert!(matches!(
        dir.allocate("bad", &bad, 1, &CreateOptions::default()),
        Err(Error::InvalidColumn { .. })
    ));
}

#[test]
fn split_rows_covers_without_overlap() {
    for (total, parts) in [(10u64, 3usize), (0, 4), (7, 7), (1_000_003, 4)] {
        let ranges = split_rows(total, parts);
        assert_eq!(ranges.len(), parts);
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges.last().unwrap().end, total);
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
    }
}
