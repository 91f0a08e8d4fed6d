//! The structured example pairs run end to end: Rust publishes nested records that Python reads
//! through zero-copy views, and Python publishes a NumPy structured array that Rust reduces by
//! dotted path.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TempDir;
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shmarrow"))
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

fn script(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn ok(cmd: &mut Command, dir: &TempDir) -> String {
    let out = cmd.env(shmarrow::DIR_ENV, &dir.0).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn rust_producer_python_consumer() {
    let Some(python) = common::python() else {
        return;
    };
    let tmp = TempDir::new("ex-rs-py");
    ok(
        Command::new(example("structured_producer")).args(["frames", "1000"]),
        &tmp,
    );
    let report: Value = serde_json::from_str(&ok(
        Command::new(&python).args([&script("structured_consumer.py"), "frames"]),
        &tmp,
    ))
    .unwrap();
    assert_eq!(report["rows"], 1000);
    let fields = &report["fields"];
    assert_eq!(fields["frame"]["sum"], 499_500.0);
    assert_eq!(
        fields["pose.x"]["count"], 990,
        "null records skipped through the mask"
    );
    assert_eq!(
        fields["accel"]["count"], 3000,
        "fixed-size list viewed as (rows, 3)"
    );
    assert_eq!(fields["accel"]["min"], -1.0);
}

#[test]
fn python_producer_rust_consumer() {
    let Some(python) = common::python() else {
        return;
    };
    let tmp = TempDir::new("ex-py-rs");
    ok(
        Command::new(&python).args([&script("structured_producer.py"), "particles", "1000"]),
        &tmp,
    );
    let text = ok(
        Command::new(example("structured_consumer")).args([
            "particles",
            "pos.x",
            "mass",
            "vel",
            "id",
        ]),
        &tmp,
    );
    let line = |field: &str| {
        text.lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("{field} missing:\n{text}"))
            .to_owned()
    };
    assert!(
        line("mass ").contains("count      990 nulls     10"),
        "{text}"
    );
    assert!(line("vel ").contains("count     3000"), "{text}");
    assert!(line("id ").contains("max          999"), "{text}");
    assert!(
        text.contains("pos: Struct")
            && text.contains("phase: Struct(\"re\": Float64, \"im\": Float64)"),
        "{text}"
    );
    assert!(text.contains("zero-copy: true"));
}
