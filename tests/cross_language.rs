//! Rust and Python on the same segments, both directions, values compared exactly.
//! Python runs `python/tests/matrix.py`, which mirrors `common::type_matrix` value by value.

mod common;

use common::{
    Name, TempDir, assert_same_batches, assert_zero_copy, python, run_matrix_py, type_matrix,
};
use shmarrow::{AttachOptions, CreateOptions};

#[test]
fn rust_publishes_stock_pyarrow_reads() {
    let Some(py) = python() else { return };
    let name = Name::new("rs2py");
    let (schema, batches) = type_matrix();
    name.dir
        .create(&name, &schema, &batches, &CreateOptions::default())
        .unwrap();
    // stock pyarrow only: equal values, every buffer inside the file mapping
    let out = run_matrix_py(&py, &["check-stock", name.path().to_str().unwrap()]);
    assert_eq!(out.trim(), "ok");
}

#[test]
fn python_publishes_rust_reads() {
    let Some(py) = python() else { return };
    let name = Name::new("py2rs");
    run_matrix_py(&py, &["publish", &name, name.dir.path().to_str().unwrap()]);
    let segment = name.dir.attach(&name).unwrap();
    let (_, want) = type_matrix();
    assert_same_batches(segment.batches(), &want);
    assert_zero_copy(&segment);
    let meta = segment.info().meta.expect("written through the binding");
    assert_ne!(meta.creator.pid, std::process::id());
    assert!(!meta.creator.is_alive(), "the Python creator has exited");
}

#[test]
fn stock_pyarrow_file_reads_in_rust() {
    let Some(py) = python() else { return };
    let name = Name::new("stock");
    run_matrix_py(&py, &["write-stock", name.path().to_str().unwrap()]);
    let segment = name.dir.attach(&name).unwrap();
    let (_, want) = type_matrix();
    assert_same_batches(segment.batches(), &want);
    assert!(
        segment.info().meta.is_none(),
        "no shmarrow keys in a stock file"
    );
}

#[test]
fn foreign_misaligned_file_is_read_copied_only_where_needed_and_reported() {
    let Some(py) = python() else { return };
    let tmp = TempDir::new("foreign");
    let path = tmp.0.join("foreign");
    let misaligned: Vec<String> = serde_json::from_str(&run_matrix_py(
        &py,
        &["write-foreign", path.to_str().unwrap()],
    ))
    .unwrap();
    assert!(!misaligned.is_empty());

    let segment = tmp.dir().attach("foreign").unwrap();
    assert_eq!(segment.copied_columns(), misaligned.as_slice());
    for c in segment.columns() {
        assert_eq!(c.zero_copy, !misaligned.contains(&c.name), "{}", c.name);
    }
    assert!(
        tmp.dir()
            .attach_with("foreign", &AttachOptions::default().strict(true))
            .is_err()
    );

    // The CLI says which columns were copied.
    let out = common::shmarrow_bin()
        .arg("--dir")
        .arg(&tmp.0)
        .args(["inspect", "foreign"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains(&format!("NO for {}", misaligned.join(", "))),
        "{text}"
    );

    // And Python reads it through the binding: equal to stock pyarrow; strict refuses.
    run_matrix_py(&py, &["attach-foreign", "foreign", tmp.0.to_str().unwrap()]);
}
