//! View types (`Utf8View`, `BinaryView`: what polars hands over for strings) through publish,
//! attach, reduce, `inspect` and `head`: kept as they are, zero-copy, and never mistaken for
//! numbers.

mod common;

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryViewArray, Float64Array, RecordBatch, StringViewArray};
use common::{TempDir, assert_same_batches, assert_zero_copy, ok, run};
use shmarrow::reduce::ReduceOptions;
use shmarrow::{CreateOptions, Error};

fn views_batch() -> RecordBatch {
    let strings = StringViewArray::from(vec![
        Some("a"),
        None,
        Some("a string longer than twelve bytes (out of line)"),
    ]);
    let binary = BinaryViewArray::from(vec![
        Some(&b"\x00\x01"[..]),
        Some(&b"binary longer than twelve bytes"[..]),
        None,
    ]);
    RecordBatch::try_from_iter([
        ("s", Arc::new(strings) as ArrayRef),
        ("b", Arc::new(binary) as ArrayRef),
        (
            "x",
            Arc::new(Float64Array::from(vec![1.0, 2.0, 4.0])) as ArrayRef,
        ),
    ])
    .unwrap()
}

#[test]
fn view_columns_publish_attach_zero_copy_and_reduce_skips_them() {
    let tmp = TempDir::new("views");
    let dir = tmp.dir();
    let batch = views_batch();
    dir.create(
        "v",
        &batch.schema(),
        std::slice::from_ref(&batch),
        &CreateOptions::default(),
    )
    .unwrap();
    let segment = dir.attach("v").unwrap();
    assert_same_batches(segment.batches(), std::slice::from_ref(&batch));
    assert_zero_copy(&segment);

    let stats = segment.reduce(&[], &ReduceOptions::default()).unwrap();
    assert_eq!(
        stats.iter().map(|s| s.column.as_str()).collect::<Vec<_>>(),
        ["x"]
    );
    assert_eq!(stats[0].count, 3);
    for column in ["s", "b"] {
        match segment.reduce(&[column], &ReduceOptions::default()) {
            Err(Error::InvalidColumn {
                column: c, reason, ..
            }) => {
                assert_eq!(c, column);
                assert!(reason.contains("View"), "{reason}");
            }
            other => panic!("{column}: {other:?}"),
        }
    }
}

#[test]
fn inspect_and_head_show_view_columns() {
    let tmp = TempDir::new("views-cli");
    let batch = views_batch();
    tmp.dir()
        .create(
            "v",
            &batch.schema(),
            std::slice::from_ref(&batch),
            &CreateOptions::default(),
        )
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&ok(&tmp, &["inspect", "v", "--json"])).unwrap();
    let columns = json["columns"].as_array().unwrap();
    let by_name = |n: &str| columns.iter().find(|c| c["name"] == n).unwrap().clone();
    assert_eq!(by_name("s")["type"], "Utf8View");
    assert_eq!(by_name("s")["null_count"], 1);
    assert_eq!(by_name("s")["zero_copy"], true);
    assert_eq!(by_name("b")["type"], "BinaryView");
    assert_eq!(json["copied_columns"].as_array().unwrap().len(), 0);

    let head = ok(&tmp, &["head", "v"]);
    assert!(
        head.contains("a string longer than twelve bytes (out of line)"),
        "{head}"
    );

    let out = run(&tmp, &["reduce", "v", "-c", "s"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Utf8View") && stderr.contains("\"s\""),
        "{stderr}"
    );
    let reduced = ok(&tmp, &["reduce", "v", "--json"]);
    assert!(
        reduced.contains("\"x\"") && !reduced.contains("\"s\""),
        "{reduced}"
    );
}
