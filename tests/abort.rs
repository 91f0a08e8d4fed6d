//! `abort_publishes` (what the CLI's signal handler calls before exiting). It makes every later
//! publish of the process fail, so it has a test binary (a process) of its own.

mod common;

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use common::TempDir;
use shmarrow::{CreateOptions, abort_publishes};

#[test]
fn abort_removes_every_temp_file_of_the_process_an_allocations_too() {
    let tmp = TempDir::new("abort");
    let dir = tmp.dir();
    let schema = Schema::new(vec![Field::new("x", DataType::Float64, false)]);
    let options = CreateOptions::default();
    let alloc = dir.allocate("filled", &schema, 1000, &options).unwrap();
    let writer = dir.writer("streamed", &schema, &options).unwrap();
    let filled_temp = alloc.temp_path().to_owned();
    assert!(filled_temp.exists());
    assert_eq!(dir.list().unwrap().temps.len(), 2);

    let removed = abort_publishes();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(removed.contains(&filled_temp));
    assert!(dir.list().unwrap().temps.is_empty());

    // Nothing can be published any more, and nothing appears under the names.
    assert!(alloc.publish().is_err());
    assert!(writer.finish().is_err());
    let batch =
        RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(vec![1.0])) as _)]).unwrap();
    assert!(
        dir.create("late", &batch.schema(), &[batch], &options)
            .is_err()
    );
    let listing = dir.list().unwrap();
    assert!(listing.segments.is_empty() && listing.temps.is_empty());
}
