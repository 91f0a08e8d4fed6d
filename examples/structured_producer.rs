//! Publish a table of nested records: what `multiprocessing.Array` (ctypes scalars) and
//! `shared_memory` + one flat NumPy dtype cannot hold, in one segment.
//!
//! ```text
//! cargo run --example structured_producer -- frames 100000
//! python examples/structured_consumer.py frames      # pyarrow + NumPy views, zero-copy
//! ```

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringDictionaryBuilder, UInt16Builder};
use arrow_array::types::Int8Type;
use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Float64Array, RecordBatch, StringArray,
    StructArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields};
use shmarrow::{CreateOptions, SegmentDir};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "frames".into());
    let rows: usize = args.next().map_or(Ok(100_000), |s| s.parse())?;

    let frame = UInt32Array::from_iter_values(0..rows as u32);
    let t = TimestampMicrosecondArray::from_iter_values(
        (0..rows as i64).map(|i| 1_764_000_000_000_000 + i * 33_333),
    )
    .with_timezone("Europe/Paris");
    // pose: struct<x: float64, y: float64>, every 100th frame lost (a null record)
    let pose = StructArray::try_new(
        Fields::from(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("y", DataType::Float64, true),
        ]),
        vec![
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| (i as f64 * 0.01).cos()),
            )) as ArrayRef,
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| (i as f64 * 0.01).sin()),
            )),
        ],
        Some(NullBuffer::from_iter((0..rows).map(|i| i % 100 != 99))),
    )?;
    // accel: fixed_size_list<float32, 3>
    let accel = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        3,
        Arc::new(Float32Array::from_iter_values(
            (0..rows * 3).map(|i| (i % 3) as f32 - 1.0),
        )),
        None,
    )?;
    // label: a category (dictionary), detections: a variable-length list per frame
    let mut label = StringDictionaryBuilder::<Int8Type>::new();
    let mut detections = ListBuilder::new(UInt16Builder::new());
    for i in 0..rows {
        label.append_value(["clear", "rain", "fog"][i % 3]);
        for d in 0..(i % 4) {
            detections.values().append_value((i + d) as u16);
        }
        detections.append(true);
    }
    let note =
        StringArray::from_iter((0..rows).map(|i| (i % 10 == 0).then(|| format!("checkpoint {i}"))));

    let batch = RecordBatch::try_from_iter([
        ("frame", Arc::new(frame) as ArrayRef),
        ("t", Arc::new(t)),
        ("pose", Arc::new(pose)),
        ("accel", Arc::new(accel)),
        ("label", Arc::new(label.finish())),
        ("detections", Arc::new(detections.finish())),
        ("note", Arc::new(note)),
    ])?;
    let created = SegmentDir::from_env().create(
        &name,
        &batch.schema(),
        &[batch],
        &CreateOptions::default(),
    )?;
    println!(
        "published {name:?}: {rows} frames, {} bytes at {}",
        created.bytes(),
        created.path().display()
    );
    Ok(())
}
