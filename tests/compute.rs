//! Reductions, in-place writes, locks and fill-in-place tables through the Rust API.

mod common;

use std::sync::Arc;

use arrow_array::types::{Float32Type, Float64Type, Int32Type};
use arrow_array::{
    Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, StructArray, UInt64Array,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use common::{Name, TempDir, column_values, create_batches};
use shmarrow::reduce::{CHUNK_ROWS, Number, ReduceOptions};
use shmarrow::{CreateOptions, Error, MapOp, MapOptions, SegmentDir, split_rows};

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
    create_batches(&name.dir, name, &batches);
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
        ("nope", MapOp::Square, "no such column"),
    ] {
        match w.map(col, op, 0..u64::MAX) {
            Err(Error::InvalidColumn { reason, .. }) => {
                assert!(reason.contains(why), "{col}: {reason}")
            }
            other => panic!("{col}: {other:?}"),
        }
    }
    for (op, why) in [
        (MapOp::Add(0.5.into()), "not an integer"),
        (MapOp::Scale(3.0.into()), "not an integer"),
        (MapOp::Add(f64::NAN.into()), "not an integer"),
        (
            MapOp::Add((1i64 << 40).into()),
            "not an integer in the range of i32",
        ),
    ] {
        match w.map("n", op, 0..u64::MAX) {
            Err(Error::InvalidConstant { reason, .. }) => {
                assert!(reason.contains(why), "{op}: {reason}")
            }
            other => panic!("{op}: {other:?}"),
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
fn publish_leaves_no_mapping_or_descriptor_behind() {
    let tmp = TempDir::new("unmap");
    let dir = tmp.dir();
    let schema = Schema::new(vec![Field::new("x", DataType::Float64, false)]);
    let rows = 300_000;
    let fill = |alloc: &shmarrow::Allocation, v: f64| {
        alloc.values_mut::<Float64Type>("x").unwrap()[0].fill(v);
    };
    let sum = |name: &str| {
        let segment = dir.attach(name).unwrap();
        segment.reduce(&["x"], &ReduceOptions::default()).unwrap()[0].sum
    };

    // No pointer handed out: the writer's mappings and descriptor all go (after the call).
    let alloc = dir
        .allocate("plain", &schema, rows, &CreateOptions::default())
        .unwrap();
    fill(&alloc, 1.5);
    let plain = alloc.publish().unwrap();
    common::wait_until("the writer's mappings of plain to go", || {
        common::held(plain.path()) == (vec![], 0)
    });
    assert_eq!(sum("plain"), Number::Float(1.5 * rows as f64));

    // A raw view (what NumPy holds) keeps one private mapping; nothing shared, no descriptor.
    // Two sizes: below 32 MiB the mapping moves in 2 MiB page tables, from 32 MiB on in GiB
    // ones (placed on a GiB boundary and padded to it).
    for (name, rows) in [("viewed", rows), ("viewed-large", 5_000_000)] {
        let alloc = dir
            .allocate(name, &schema, rows, &CreateOptions::default())
            .unwrap();
        let raw = alloc.raw_values("x").unwrap();
        fill(&alloc, 2.5);
        let (ptr, len) = raw.parts[0];
        assert_eq!(len, rows);
        let ptr = ptr.cast::<f64>();
        // A thread writes through the view all along the publish: the mapping is replaced
        // atomically (a hole would crash this test with SIGSEGV), and none of it reaches the
        // published segment.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let addr = ptr as usize; // a raw pointer is not Send
        let viewed = std::thread::scope(|s| {
            s.spawn(|| {
                let ptr = addr as *mut f64;
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // SAFETY: `ptr..ptr + len` stays valid memory while `raw` lives (before
                    // publish the shared mapping, after it the private one); no reference
                    // to these values exists meanwhile (the fill above ended).
                    unsafe { ptr.add(i % len).write_volatile(2.5) };
                    i += 4099;
                }
            });
            let viewed = alloc.publish().unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            viewed
        });
        // SAFETY: as above; the writer thread has ended.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }.fill(-1.0);
        common::wait_until("only the view's private mapping to stay", || {
            common::held(viewed.path()) == (vec!["rw-p".to_owned()], 0)
        });
        assert_eq!(sum(name), Number::Float(2.5 * rows as f64));
        // SAFETY: as above.
        let seen = unsafe { std::slice::from_raw_parts(ptr, len) };
        assert!(
            seen.iter().all(|&v| v == -1.0),
            "the view keeps its private writes"
        );
        drop(raw);
        assert_eq!(common::held(viewed.path()), (vec![], 0));
    }
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

/// `err`'s message contains every one of `needles`.
fn assert_text(err: &Error, needles: &[&str]) {
    let text = err.to_string();
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
}

/// Publish one batch of `columns` as segment `name` of `dir`.
fn publish(dir: &SegmentDir, name: &str, columns: Vec<(&str, arrow_array::ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    dir.create(name, &batch.schema(), &[batch], &CreateOptions::default())
        .unwrap();
}

fn values_of<T: arrow_array::ArrowPrimitiveType>(
    dir: &SegmentDir,
    name: &str,
    col: &str,
) -> Vec<Option<T::Native>> {
    common::column_values::<T>(&dir.attach(name).unwrap(), col)
}

#[test]
fn integer_overflow_is_an_error_before_any_value_is_written_unless_wrapping() {
    use arrow_array::types::{Int64Type, UInt8Type, UInt64Type};
    let tmp = TempDir::new("overflow");
    let dir = tmp.dir();
    // Several chunks, the value that overflows in the last one: nothing may be written before
    // the read pass has seen it.
    let mut n: Vec<Option<i32>> = (0..CHUNK_ROWS as i32 * 3).map(|i| Some(i % 1000)).collect();
    n[1] = None;
    *n.last_mut().unwrap() = Some(50_000);
    publish(
        &dir,
        "t",
        vec![("n", Arc::new(Int32Array::from(n.clone())) as _)],
    );
    let w = dir.open_writable("t").unwrap();
    let err = w.map("n", MapOp::Square, 0..u64::MAX).unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err:?}");
    assert_text(
        &err,
        &[
            "50000 squared = 2500000000 does not fit i32",
            "nothing was written",
        ],
    );
    assert_eq!(
        values_of::<Int32Type>(&dir, "t", "n"),
        n,
        "nothing was written"
    );
    // The rows that do not hold the big value square fine; twice overflows (the issue's case:
    // square twice gave -2146556319), again before writing.
    let last = n.len() as u64 - 1;
    w.map("n", MapOp::Square, 0..last).unwrap();
    assert!(matches!(
        w.map("n", MapOp::Square, 0..last),
        Err(Error::Overflow { .. })
    ));
    let squared: Vec<Option<i32>> = n[..last as usize]
        .iter()
        .map(|v| v.map(|x| x * x))
        .collect();
    assert_eq!(
        values_of::<Int32Type>(&dir, "t", "n")[..last as usize],
        squared[..]
    );
    // Asked for, wrapping is NumPy's two's complement.
    w.map_with(
        "n",
        MapOp::Square,
        last..last + 1,
        &MapOptions::default().wrap(true),
    )
    .unwrap();
    assert_eq!(
        values_of::<Int32Type>(&dir, "t", "n")[last as usize],
        Some(50_000i32.wrapping_mul(50_000))
    );
    // A dry run reads only: a coordinator's check over all rows.
    assert!(matches!(
        w.map_with(
            "n",
            MapOp::Square,
            0..u64::MAX,
            &MapOptions::default().dry_run(true)
        ),
        Err(Error::Overflow { .. })
    ));
    let before = values_of::<Int32Type>(&dir, "t", "n");
    w.map_with(
        "n",
        MapOp::Square,
        0..u64::MAX,
        &MapOptions::default().wrap(true).dry_run(true),
    )
    .unwrap();
    assert_eq!(
        values_of::<Int32Type>(&dir, "t", "n"),
        before,
        "a dry run writes nothing"
    );

    // Every op and the limits of several types; a null slot holding a value that would
    // overflow does not count (its value is not part of the data).
    let nulls = NullBuffer::from(vec![true, true, false]);
    publish(
        &dir,
        "u",
        vec![
            (
                "u8",
                Arc::new(arrow_array::UInt8Array::from(vec![0u8, 200, 7])) as _,
            ),
            (
                "u64",
                Arc::new(UInt64Array::from(vec![1u64, 1 << 32, 3])) as _,
            ),
            (
                "i64",
                Arc::new(Int64Array::from(vec![
                    i64::MIN / 2 - 1,
                    i64::MAX / 2 + 1,
                    0,
                ])) as _,
            ),
            (
                "masked",
                Arc::new(Int64Array::new(vec![1, 2, i64::MAX].into(), Some(nulls))) as _,
            ),
        ],
    );
    let w = dir.open_writable("u").unwrap();
    for (col, op) in [
        ("u8", MapOp::Add(56i64.into())),
        ("u8", MapOp::Scale(2i64.into())),
        ("u64", MapOp::Square),
        ("u64", MapOp::Scale((u64::MAX as i128).into())),
        ("i64", MapOp::Scale(2i64.into())),
        ("i64", MapOp::Scale((-3i64).into())),
        ("i64", MapOp::Add(i64::MAX.into())),
        ("i64", MapOp::Square),
    ] {
        assert!(
            matches!(w.map(col, op, 0..u64::MAX), Err(Error::Overflow { .. })),
            "{col} {op}"
        );
    }
    w.map("u8", MapOp::Add(55i64.into()), 0..u64::MAX).unwrap();
    w.map("i64", MapOp::Scale(2i64.into()), 2..3).unwrap();
    w.map("masked", MapOp::Add(1i64.into()), 0..u64::MAX)
        .unwrap();
    assert_eq!(
        values_of::<UInt8Type>(&dir, "u", "u8"),
        [Some(55), Some(255), Some(62)]
    );
    assert_eq!(
        values_of::<Int64Type>(&dir, "u", "masked"),
        [Some(2), Some(3), None]
    );
    assert_eq!(
        values_of::<UInt64Type>(&dir, "u", "u64"),
        [Some(1), Some(1 << 32), Some(3)],
        "untouched by the refused ops"
    );
    // Clip never overflows; LO > HI is refused exactly, even where floats cannot tell them apart.
    let (lo, hi) = ((1i128 << 53) + 1, 1i128 << 53);
    assert_eq!(lo as f64, hi as f64);
    assert!(MapOp::new("clip", &[lo.into(), hi.into()]).is_err());
    assert!(format!("clip:{lo}:{hi}").parse::<MapOp>().is_err());
    assert!("clip:nan:1.0".parse::<MapOp>().is_err());

    // Floats keep IEEE 754: overflow is infinity, not an error.
    publish(
        &dir,
        "f",
        vec![("x", Arc::new(Float64Array::from(vec![1e200, -1.0])) as _)],
    );
    dir.open_writable("f")
        .unwrap()
        .map("x", MapOp::Square, 0..u64::MAX)
        .unwrap();
    assert_eq!(
        values_of::<Float64Type>(&dir, "f", "x"),
        [Some(f64::INFINITY), Some(1.0)]
    );
}

#[test]
fn row_slices_cover_only_their_rows() {
    let tmp = TempDir::new("rows");
    let dir = tmp.dir();
    let batches: Vec<RecordBatch> = [3usize, 4, 5]
        .iter()
        .scan(0i32, |start, &n| {
            let b = RecordBatch::try_from_iter([(
                "n",
                Arc::new(Int32Array::from_iter_values(*start..*start + n as i32)) as _,
            )])
            .unwrap();
            *start += n as i32;
            Some(b)
        })
        .collect();
    dir.create(
        "r",
        &batches[0].schema(),
        &batches,
        &CreateOptions::default(),
    )
    .unwrap();
    let w = dir.open_writable("r").unwrap();
    {
        let mut v = w.values_mut_rows::<Int32Type>("n", 2..8).unwrap();
        let lens: Vec<usize> = v.batches_mut().iter().map(|s| s.len()).collect();
        assert_eq!(lens, [1, 4, 1]);
        assert_eq!((v[0][0], v[1][0], v[2][0]), (2, 3, 7));
        v.batches_mut().into_iter().flatten().for_each(|x| *x = -*x);
    }
    let all: Vec<i32> = values_of::<Int32Type>(&dir, "r", "n")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(all, [0, 1, -2, -3, -4, -5, -6, -7, 8, 9, 10, 11]);

    // Fixed-size lists: a row is `size` values.
    let schema = Schema::new(vec![Field::new(
        "pos",
        DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 3),
        false,
    )]);
    let alloc = dir
        .allocate("fsl", &schema, 10, &CreateOptions::default())
        .unwrap();
    let mut pos = alloc.values_mut_rows::<Float32Type>("pos", 4..6).unwrap();
    assert_eq!(pos[0].len(), 6);
    pos[0].fill(1.0);
    drop(pos);
    let pos = alloc.values_mut::<Float32Type>("pos").unwrap();
    assert_eq!(pos[0].iter().filter(|&&x| x == 1.0).count(), 6);
    assert_eq!(pos[0][12..18], [1.0; 6]);
}

/// Segments of `dir` whose layouts make writable value ranges overlap, each still a valid,
/// readable Arrow file: (name, writable column).
fn overlapping_segments(dir: &SegmentDir) -> Vec<(&'static str, &'static str)> {
    let ints = |start: i64| Arc::new(Int64Array::from_iter_values(start..start + 8)) as _;
    // Two batches sharing bytes: the footer's second block points at the first batch.
    let b = |start| RecordBatch::try_from_iter([("x", ints(start))]).unwrap();
    let options = CreateOptions::default();
    dir.create("batches", &b(0).schema(), &[b(0), b(100)], &options)
        .unwrap();
    common::patch(dir, "batches", |file| {
        let (_, block0) = common::positions(file, 0, 0);
        let (_, block1) = common::positions(file, 1, 0);
        file.copy_within(block0..block0 + 24, block1);
    });
    // Two columns sharing bytes: b's values buffer (buffer 3) is a's (buffer 1).
    publish(dir, "columns", vec![("a", ints(0)), ("b", ints(100))]);
    common::patch(dir, "columns", |file| {
        let (a, b) = (
            common::positions(file, 0, 1).0,
            common::positions(file, 0, 3).0,
        );
        file.copy_within(a..a + 8, b);
    });
    // A values buffer over an offsets buffer: n's values (buffer 4) are s's offsets (buffer 1).
    let strings = Arc::new(StringArray::from(vec!["ab", "c", "", "def"])) as _;
    let n = Arc::new(Int32Array::from(vec![9, 9, 9, 9])) as _;
    publish(dir, "offsets", vec![("s", strings), ("n", n)]);
    common::patch(dir, "offsets", |file| {
        let (s, n) = (
            common::positions(file, 0, 1).0,
            common::positions(file, 0, 4).0,
        );
        file.copy_within(s..s + 8, n);
    });
    // A values buffer over the next batch's message metadata: the first block's body (in the
    // footer) and its values buffer reach into the second block's metadata.
    dir.create("metadata", &b(0).schema(), &[b(0), b(100)], &options)
        .unwrap();
    common::patch(dir, "metadata", |file| {
        let (values0, block0) = common::positions(file, 0, 1);
        let (_, block1) = common::positions(file, 1, 1);
        let at = |pos: usize| i64::from_le_bytes(file[pos..pos + 8].try_into().unwrap());
        let int32 = |pos: usize| i32::from_le_bytes(file[pos..pos + 4].try_into().unwrap());
        let body0 = (at(block0) + i64::from(int32(block0 + 8))) as usize;
        let meta1 = at(block1) as usize;
        // Values 4..8 of x in batch 0 are the first 32 bytes of batch 1's metadata.
        let start = meta1 - 32 - body0;
        file[values0..values0 + 8].copy_from_slice(&(start as i64).to_le_bytes());
        file[block0 + 16..block0 + 24].copy_from_slice(&((start + 64) as i64).to_le_bytes());
    });
    vec![
        ("batches", "x"),
        ("columns", "b"),
        ("offsets", "n"),
        ("metadata", "x"),
    ]
}

#[test]
fn overlapping_value_ranges_are_refused_for_writing() {
    let tmp = TempDir::new("overlap");
    let dir = tmp.dir();
    for (name, column) in overlapping_segments(&dir) {
        // Readable (the bytes are a valid Arrow file), but not writable in place.
        let before = dir.attach(name).unwrap();
        let err = dir.open_writable(name).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{name}: {err:?}");
        assert_text(&err, &["cannot be written in place", "overlaps"]);
        // The CLI: exit 1, one line, nothing written.
        let out = common::run(&tmp, &["map", name, "-c", column, "--op", "add", "1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains("cannot be written in place"),
            "{name}: {stderr}"
        );
        let out = common::run(
            &tmp,
            &[
                "map",
                name,
                "-c",
                column,
                "--op",
                "add",
                "1",
                "--processes",
                "2",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{name}");
        let after = dir.attach(name).unwrap();
        common::assert_same_batches(after.batches(), before.batches());
    }
    // What the crafted files look like to a reader: the overlap is real.
    assert_eq!(
        values_of::<Int32Type>(&dir, "offsets", "n"),
        [Some(0), Some(2), Some(3), Some(3)],
        "n reads s's offsets"
    );
    // x[4] reads batch 1's continuation marker (and then its metadata length).
    let x = values_of::<arrow_array::types::Int64Type>(&dir, "metadata", "x");
    assert_eq!(x[4].map(|v| v as u32), Some(u32::MAX));
    let err = dir.open_writable("metadata").unwrap_err();
    assert_text(
        &err,
        &["\"x\" in batch 0", "the message metadata or footer"],
    );
}

#[test]
fn a_writable_handle_writes_the_file_it_opened_whatever_the_name_holds_later() {
    let tmp = TempDir::new("rename");
    let dir = tmp.dir();
    publish(
        &dir,
        "s",
        vec![("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)],
    );
    let old_reader = dir.attach("s").unwrap();
    let w = dir.open_writable("s").unwrap();
    // The name now holds another file (same size and layout).
    publish(
        &dir,
        "s",
        vec![("x", Arc::new(Int64Array::from(vec![7, 8, 9])) as _)],
    );
    w.map("x", MapOp::Add(10i64.into()), 0..u64::MAX).unwrap();
    assert_eq!(
        values_of::<arrow_array::types::Int64Type>(&dir, "s", "x"),
        [Some(7), Some(8), Some(9)]
    );
    let x = old_reader.batches()[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(x.values().to_vec(), [11, 12, 13]);
}

#[test]
fn a_writable_open_racing_renames_never_applies_one_files_layout_to_another() {
    use arrow_array::types::Int64Type;
    let tmp = TempDir::new("race");
    let dir = tmp.dir();
    // Same size, columns swapped: applying one file's layout to the other writes the wrong
    // column.
    let col = |v: i64| Arc::new(Int64Array::from(vec![v; 8])) as _;
    publish(&dir, "a", vec![("x", col(0)), ("y", col(-1))]);
    publish(&dir, "b", vec![("y", col(-1)), ("x", col(0))]);
    let (a, b) = (
        dir.segment_path("a").unwrap(),
        dir.segment_path("b").unwrap(),
    );
    assert_eq!(
        std::fs::metadata(&a).unwrap().len(),
        std::fs::metadata(&b).unwrap().len()
    );
    let race = dir.segment_path("race").unwrap();
    std::fs::hard_link(&a, &race).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let tmp_link = tmp.0.join("swap");
            let mut flips = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let from = if flips.is_multiple_of(2) { &b } else { &a };
                std::fs::hard_link(from, &tmp_link).unwrap();
                std::fs::rename(&tmp_link, &race).unwrap();
                flips += 1;
            }
        });
        // Stops the renaming thread however this one leaves the scope (a failed assertion
        // included), so a failure is reported rather than waiting for it forever.
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        for i in 1..=2000i64 {
            let w = dir.open_writable("race").unwrap();
            let first = w.segment().schema().field(0).name().clone();
            w.values_mut::<Int64Type>("x").unwrap()[0][0] = i;
            drop(w);
            let which = if first == "x" { "a" } else { "b" };
            assert_eq!(
                values_of::<Int64Type>(&dir, which, "x")[0],
                Some(i),
                "iteration {i}"
            );
            for name in ["a", "b"] {
                assert!(
                    values_of::<Int64Type>(&dir, name, "y")
                        .iter()
                        .all(|&v| v == Some(-1)),
                    "iteration {i}: y of {name} was written"
                );
            }
        }
    });
}

/// KiB of `path` resident in this process's shared read-write mappings of it (`Rss:` of the
/// `rw-s` entries of `/proc/self/smaps`): the pages its page tables map.
fn writable_rss_kib(path: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let wanted = path.to_str().unwrap();
    let mut ours = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            ours = line.ends_with(wanted) && fields.next() == Some("rw-s");
        } else if ours && first == "Rss:" {
            kib += fields.next().unwrap().parse::<u64>().unwrap();
        }
    }
    kib
}

#[test]
fn a_released_map_writes_every_value_and_leaves_its_pages_unmapped() {
    let name = Name::new("release");
    let sizes = [3 * CHUNK_ROWS + 17, 5, 2 * CHUNK_ROWS + 1];
    let batches: Vec<RecordBatch> = sizes
        .iter()
        .map(|&n| {
            let x = Float64Array::from_iter_values((0..n).map(|i| i as f64 + 0.5));
            RecordBatch::try_from_iter([("x", Arc::new(x) as _)]).unwrap()
        })
        .collect();
    create_batches(&name.dir, &name, &batches);
    let values_kib = (sizes.iter().sum::<usize>() * 8 / 1024) as u64;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let w = name.dir.open_writable(&name).unwrap();
    // Without release the written pages stay mapped (the contrast that shows the measure).
    pool.install(|| w.map("x", MapOp::Scale(1.0.into()), 0..u64::MAX))
        .unwrap();
    assert!(writable_rss_kib(&name.path()) >= values_kib);
    drop(w);
    let w = name.dir.open_writable(&name).unwrap();
    let release = MapOptions::default().release(true);
    pool.install(|| w.map_with("x", MapOp::Square, 0..u64::MAX, &release))
        .unwrap();
    // Left mapped: at most the pages the pieces share at their ends, and the file's header.
    let left = writable_rss_kib(&name.path());
    assert!(
        left < values_kib / 4,
        "{left} KiB of {values_kib} still mapped"
    );
    let expected = |n: usize| (0..n).map(|i| (i as f64 + 0.5) * (i as f64 + 0.5));
    // Every value reached the segment: a new reader sees them, and the same handle reads them
    // again (faulting the released pages back in).
    let seg = name.dir.attach(&name).unwrap();
    let values = w.values_mut::<Float64Type>("x").unwrap();
    for (b, &n) in sizes.iter().enumerate() {
        let read = seg.batches()[b]
            .column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .values()
            .to_vec();
        assert_eq!(read, expected(n).collect::<Vec<_>>(), "batch {b}");
        assert_eq!(values[b].to_vec(), read, "batch {b} through the handle");
    }
}

/// Whether another open of segment `name` holds a lock that conflicts with a lock of `kind`
/// (`F_WRLCK`, `F_RDLCK`) on rows `rows` (the row space starts at 2^62 in the file's byte-range
/// lock space: `src/inplace/lock.rs`).
fn rows_locked(name: &Name, kind: nix::libc::c_int, rows: std::ops::Range<i64>) -> bool {
    let f = std::fs::File::open(name.path()).unwrap();
    let mut lock = nix::libc::flock {
        l_type: kind as nix::libc::c_short,
        l_whence: nix::libc::SEEK_SET as nix::libc::c_short,
        l_start: (1 << 62) + rows.start,
        l_len: rows.end - rows.start,
        l_pid: 0,
    };
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut lock)).unwrap();
    lock.l_type != nix::libc::F_UNLCK as nix::libc::c_short
}

#[test]
fn row_writers_of_disjoint_ranges_write_at_once_and_exclude_readers_and_whole_writers() {
    use nix::fcntl::{Flock, FlockArg};
    let name = Name::new("rowlock");
    let b = RecordBatch::try_from_iter([(
        "x",
        Arc::new(Float64Array::from_iter_values((0..100).map(f64::from))) as _,
    )])
    .unwrap();
    name.dir
        .create(&name, &b.schema(), &[b], &CreateOptions::default())
        .unwrap();
    let flock_free = |arg| {
        let f = std::fs::File::open(name.path()).unwrap();
        Flock::lock(f, arg).is_ok()
    };
    // Two opens, as two worker processes have (locks belong to an open, not a process).
    let a = name.dir.open_writable(&name).unwrap();
    let b = name.dir.open_writable(&name).unwrap();
    let held_a = a.lock_rows(0..50).unwrap();
    let held_b = b.lock_rows(50..100).unwrap(); // disjoint: granted while `a` holds its rows
    a.map("x", MapOp::Square, 0..50).unwrap();
    b.map("x", MapOp::Square, 50..100).unwrap();
    assert!(rows_locked(&name, nix::libc::F_WRLCK, 49..50));
    assert!(rows_locked(&name, nix::libc::F_WRLCK, 50..51));
    assert!(
        rows_locked(&name, nix::libc::F_RDLCK, 0..100),
        "a reader waits"
    );
    assert!(
        !flock_free(FlockArg::LockExclusiveNonblock),
        "a whole writer waits"
    );
    assert!(flock_free(FlockArg::LockSharedNonblock));
    // Released by the guard, though its handle still holds the file open.
    drop(held_a);
    assert!(!rows_locked(&name, nix::libc::F_WRLCK, 0..50));
    assert!(rows_locked(&name, nix::libc::F_WRLCK, 0..51));
    drop(held_b);
    assert!(!rows_locked(&name, nix::libc::F_WRLCK, 0..100));
    assert!(flock_free(FlockArg::LockExclusiveNonblock));
    // A reader's shared lock makes row writers wait; an exclusive lock, everyone.
    let reader = name.dir.lock(&name, true).unwrap();
    assert!(rows_locked(&name, nix::libc::F_WRLCK, 99..100));
    assert!(
        !rows_locked(&name, nix::libc::F_RDLCK, 0..100),
        "readers share"
    );
    drop(reader);
    let whole = a.lock(false).unwrap();
    assert!(!flock_free(FlockArg::LockSharedNonblock));
    drop(whole);
    let got = column_values::<Float64Type>(&name.dir.attach(&name).unwrap(), "x");
    assert_eq!(
        got,
        (0..100).map(|i| Some(f64::from(i * i))).collect::<Vec<_>>()
    );
    // Rows that are not a range of the segment's: refused, nothing locked.
    for (start, stop) in [
        (5, 3),
        (0, 101),
        (100, 101),
        (0, u64::MAX),
        (u64::MAX, u64::MAX),
    ] {
        let err = a.lock_rows(start..stop).unwrap_err();
        assert!(
            matches!(err, Error::InvalidRows { rows: 100, .. }),
            "{start}..{stop}: {err}"
        );
        assert!(
            err.to_string().contains("0 <= start <= stop <= 100"),
            "{err}"
        );
    }
    assert!(!rows_locked(
        &name,
        nix::libc::F_WRLCK,
        0..i64::MAX - (1 << 62)
    ));
    drop(a.lock_rows(100..100).unwrap()); // no row: fine
}
