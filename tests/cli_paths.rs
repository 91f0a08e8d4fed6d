//! The binary's inputs and outputs beyond the happy path: standard input and output, what
//! `export --force` may replace, `.tsv`, CSV inference, `--lifetime owner`, missing
//! directories, bad input files, `reduce` without numbers and its JSON, closed pipes.

mod common;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;

use arrow_array::{Array, Float64Array, RecordBatch, StringArray, UInt64Array};
use common::{TempDir, assert_same_batches, ok, run, shmarrow_bin, type_matrix, write_ipc_file};
use serde_json::Value;

/// Exit `code`, stderr containing `needle`, no panic.
fn fails_with(out: &Output, code: i32, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn succeeds(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `shmarrow --dir DIR ARGS` with `input` on standard input.
fn run_with_stdin(dir: &TempDir, args: &[&str], input: &[u8]) -> Output {
    let mut child = shmarrow_bin()
        .arg("--dir")
        .arg(&dir.0)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The child may refuse before reading everything: a closed pipe here is its answer.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn matrix_segment(tmp: &TempDir, name: &str) -> Vec<RecordBatch> {
    let (schema, batches) = type_matrix();
    let input = tmp.0.join(format!("{name}.arrow"));
    write_ipc_file(&input, &schema, &batches);
    ok(tmp, &["import", name, input.to_str().unwrap()]);
    batches
}

fn flat_segment(tmp: &TempDir, name: &str) -> RecordBatch {
    let batch = RecordBatch::try_from_iter([
        (
            "x",
            Arc::new(Float64Array::from(vec![Some(1.5), None, Some(-2.0)])) as _,
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![Some("a,b"), Some("c"), None])) as _,
        ),
    ])
    .unwrap();
    tmp.dir()
        .create(
            name,
            &batch.schema(),
            std::slice::from_ref(&batch),
            &shmarrow::CreateOptions::default().mode(0o640),
        )
        .unwrap();
    batch
}

fn without_meta(batches: &[RecordBatch]) -> Vec<RecordBatch> {
    batches
        .iter()
        .map(|b| {
            let schema = Arc::new(arrow_schema::Schema::new(b.schema().fields().clone()));
            RecordBatch::try_new(schema, b.columns().to_vec()).unwrap()
        })
        .collect()
}

#[test]
fn export_to_stdout_and_import_from_stdin() {
    let tmp = TempDir::new("stdio");
    let want = matrix_segment(&tmp, "m");

    // `-` streams an IPC stream to standard output; nothing named `-` appears.
    let out = shmarrow_bin()
        .current_dir(&tmp.0)
        .arg("--dir")
        .arg(&tmp.0)
        .args(["export", "m", "-"])
        .output()
        .unwrap();
    succeeds(&out);
    assert!(!tmp.0.join("-").exists(), "export wrote a file named -");
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard output"));
    // Piped back in: the format is sniffed without losing the bytes looked at.
    let back = run_with_stdin(&tmp, &["import", "back", "-"], &out.stdout);
    succeeds(&back);
    let got = tmp.dir().attach("back").unwrap();
    assert_same_batches(&without_meta(got.batches()), &without_meta(&want));

    // CSV through a pipe: inference reads rows that are then imported too.
    let flat = flat_segment(&tmp, "flat");
    let csv = ok(&tmp, &["export", "flat", "-", "--format", "csv"]);
    assert!(csv.starts_with("x,s\n"), "{csv}");
    let back = run_with_stdin(
        &tmp,
        &["import", "csv", "-", "--format", "csv", "--infer-rows", "1"],
        csv.as_bytes(),
    );
    succeeds(&back);
    let got = tmp.dir().attach("csv").unwrap();
    assert_eq!(got.num_rows(), 3);
    assert_same_batches(&without_meta(got.batches()), std::slice::from_ref(&flat));

    // Formats that need seeking say so.
    let file = std::fs::read(tmp.0.join("m.arrow")).unwrap();
    let out = run_with_stdin(&tmp, &["import", "f", "-"], &file);
    fails_with(&out, 1, "read at any offset");
    let out = run_with_stdin(&tmp, &["import", "p", "-", "--format", "parquet"], b"PAR1");
    fails_with(&out, 1, "read at any offset");
    let out = run_with_stdin(&tmp, &["import", "u", "-"], b"x,y\n1,2\n");
    fails_with(&out, 1, "pass --format");
    for name in ["f", "p", "u"] {
        assert!(!tmp.0.join(name).exists());
    }
}

#[test]
fn export_to_dev_stdout_writes_to_the_stream() {
    let tmp = TempDir::new("devstdout");
    flat_segment(&tmp, "flat");
    let before = std::fs::symlink_metadata("/dev/stdout")
        .unwrap()
        .file_type();
    // As root this used to rename a temp file onto /dev/stdout, even with output piped.
    let out = run(
        &tmp,
        &[
            "export",
            "flat",
            "/dev/stdout",
            "--format",
            "csv",
            "--force",
        ],
    );
    succeeds(&out);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("x,s\n"));
    let after = std::fs::symlink_metadata("/dev/stdout")
        .unwrap()
        .file_type();
    assert!(after.is_symlink() && before.is_symlink(), "{after:?}");
}

#[test]
fn export_force_replaces_only_regular_files() {
    let tmp = TempDir::new("force");
    flat_segment(&tmp, "flat"); // mode 640
    let path = |n: &str| tmp.0.join(n);
    let export = |target: &Path, force: bool| {
        let mut args = vec![
            "export",
            "flat",
            target.to_str().unwrap(),
            "--format",
            "csv",
        ];
        if force {
            args.push("--force");
        }
        run(&tmp, &args)
    };

    // A new file gets the segment's mode, not 0644.
    assert!(export(&path("new.csv"), false).status.success());
    let mode = std::fs::metadata(path("new.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    // An existing regular file: only with --force.
    fails_with(&export(&path("new.csv"), false), 1, "--force");
    std::fs::write(path("old.csv"), "old").unwrap();
    assert!(export(&path("old.csv"), true).status.success());
    assert!(
        std::fs::read_to_string(path("old.csv"))
            .unwrap()
            .starts_with("x,s")
    );

    // A symlink (to a file, or to a device) is refused and left as it was, target untouched.
    std::fs::write(path("target.csv"), "keep").unwrap();
    symlink(path("target.csv"), path("link.csv")).unwrap();
    symlink("/dev/null", path("null.csv")).unwrap();
    for link in ["link.csv", "null.csv"] {
        fails_with(&export(&path(link), true), 1, "symbolic link");
        assert!(
            std::fs::symlink_metadata(path(link))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    assert_eq!(std::fs::read_to_string(path("target.csv")).unwrap(), "keep");
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );

    // A FIFO and a directory are refused too (the FIFO is not opened: no hang).
    nix::unistd::mkfifo(&path("fifo.csv"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    fails_with(&export(&path("fifo.csv"), true), 1, "FIFO");
    assert!(
        std::fs::symlink_metadata(path("fifo.csv"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    std::fs::create_dir(path("dir.csv")).unwrap();
    fails_with(&export(&path("dir.csv"), true), 1, "directory");

    // No temp file is left beside the targets.
    let temps: Vec<_> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

#[test]
fn tsv_is_tab_separated_both_ways() {
    let tmp = TempDir::new("tsv");
    let flat = flat_segment(&tmp, "flat");
    let file = tmp.0.join("out.tsv");
    ok(&tmp, &["export", "flat", file.to_str().unwrap()]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().next(), Some("x\ts"));
    assert!(
        text.contains("a,b"),
        "a comma in a value stays as it is: {text}"
    );
    ok(&tmp, &["import", "back", file.to_str().unwrap()]);
    let got = tmp.dir().attach("back").unwrap();
    assert_same_batches(&without_meta(got.batches()), std::slice::from_ref(&flat));
}

#[test]
fn csv_inference_never_drops_values_silently() {
    let tmp = TempDir::new("infer");
    let file = tmp.0.join("late.csv");
    std::fs::write(&file, "a,b\n1,\n2,\n3,7\n").unwrap();
    let f = file.to_str().unwrap();
    let out = run(&tmp, &["import", "zero", f, "--infer-rows", "0"]);
    fails_with(&out, 2, "--infer-rows");
    assert!(!tmp.0.join("zero").exists());

    // Column b is empty in the rows inference sees: read as text, with a warning, value kept.
    let out = run(&tmp, &["import", "late", f, "--infer-rows", "2"]);
    succeeds(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("\"b\""),
        "{stderr}"
    );
    let seg = tmp.dir().attach("late").unwrap();
    let b = seg.batches()[0].column(1);
    assert_eq!(b.data_type(), &arrow_schema::DataType::Utf8);
    let b = b.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(b.value(2), "7");
}

#[test]
fn lifetime_owner_is_refused_with_what_to_use() {
    let tmp = TempDir::new("owner");
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/trades.json");
    let out = run(
        &tmp,
        &[
            "create",
            "o",
            "--schema",
            schema,
            "--rows",
            "10",
            "--lifetime",
            "owner",
        ],
    );
    let stderr = fails_with(&out, 2, "persistent");
    assert!(stderr.contains("shmarrow rm"), "{stderr}");
    let input = tmp.0.join("in.csv");
    std::fs::write(&input, "a\n1\n").unwrap();
    let out = run(
        &tmp,
        &[
            "import",
            "o",
            input.to_str().unwrap(),
            "--lifetime",
            "owner",
        ],
    );
    fails_with(&out, 2, "persistent");
    assert!(!tmp.0.join("o").exists());
}

#[test]
fn missing_and_empty_directories_are_named() {
    let tmp = TempDir::new("nodir");
    let input = tmp.0.join("in.csv");
    std::fs::write(&input, "a\n1\n").unwrap();
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/trades.json");
    let missing = tmp.0.join("missing");
    for args in [
        vec!["inspect", "x"],
        vec!["ls"],
        vec!["head", "x"],
        vec!["rm", "x"],
        vec!["import", "x", input.to_str().unwrap()],
        vec!["create", "x", "--schema", schema, "--rows", "10"],
    ] {
        let out = shmarrow_bin()
            .env("SHMARROW_DIR", &missing)
            .args(&args)
            .output()
            .unwrap();
        let stderr = fails_with(&out, 1, "does not exist");
        assert!(
            stderr.contains(&format!("segment directory {}", missing.display())),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("not found"), "{args:?}: {stderr}");
    }
    // An empty SHMARROW_DIR is unset, as in the library and Python: the default directory.
    let out = shmarrow_bin()
        .env("SHMARROW_DIR", "")
        .args(["--json", "ls"])
        .output()
        .unwrap();
    succeeds(&out);
    // An empty --dir is a usage error about the directory.
    let out = shmarrow_bin().args(["--dir", "", "ls"]).output().unwrap();
    fails_with(&out, 2, "segment directory is empty");
}

#[test]
fn a_bad_input_file_is_called_an_input_file() {
    let tmp = TempDir::new("badin");
    let file = tmp.0.join("bad.arrow");
    std::fs::write(
        &file,
        b"ARROW1\0\0 this is not an IPC file at all, padding.....",
    )
    .unwrap();
    let out = run(&tmp, &["import", "x", file.to_str().unwrap()]);
    let stderr = fails_with(&out, 1, "input file");
    assert!(!stderr.contains("segment \""), "{stderr}");
    // A symlink to a good file is followed (it is an input, not a segment).
    let (schema, batches) = type_matrix();
    write_ipc_file(&tmp.0.join("good.arrow"), &schema, &batches);
    symlink(tmp.0.join("good.arrow"), tmp.0.join("link.arrow")).unwrap();
    ok(
        &tmp,
        &["import", "y", tmp.0.join("link.arrow").to_str().unwrap()],
    );
}

#[test]
fn reduce_without_numbers_fails_and_json_holds_only_numbers_and_null() {
    let tmp = TempDir::new("reduce");
    let strings =
        RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["a", "b"])) as _)])
            .unwrap();
    let dir = tmp.dir();
    let opts = shmarrow::CreateOptions::default();
    dir.create(
        "s",
        &strings.schema(),
        std::slice::from_ref(&strings),
        &opts,
    )
    .unwrap();
    fails_with(
        &run(&tmp, &["reduce", "s"]),
        1,
        "no top-level integer or float column",
    );

    let batch = RecordBatch::try_from_iter([
        (
            "nan",
            Arc::new(Float64Array::from(vec![1.0, f64::NAN])) as _,
        ),
        (
            "inf",
            Arc::new(Float64Array::from(vec![1.0, f64::INFINITY])) as _,
        ),
        (
            "big",
            Arc::new(UInt64Array::from(vec![u64::MAX, u64::MAX])) as _,
        ),
        ("empty", Arc::new(Float64Array::from(vec![None, None])) as _),
    ])
    .unwrap();
    dir.create("n", &batch.schema(), std::slice::from_ref(&batch), &opts)
        .unwrap();
    let text = ok(&tmp, &["--json", "reduce", "n"]);
    // Strict JSON: serde_json refuses NaN and Infinity literals.
    let items: Vec<Value> = serde_json::from_str(&text).unwrap();
    let col = |name: &str| items.iter().find(|i| i["column"] == name).unwrap().clone();
    let nan = col("nan");
    assert_eq!(nan["mean"], Value::Null);
    assert_eq!(nan["special"]["mean"], "nan");
    assert_eq!(nan["count"], 2);
    let inf = col("inf");
    assert_eq!(
        (inf["max"].clone(), inf["special"]["max"].clone()),
        (Value::Null, "inf".into())
    );
    assert_eq!(inf["min"], 1.0);
    let big = col("big");
    assert_eq!(big["sum"], Value::Null);
    assert_eq!(big["special"]["sum"], (2 * u64::MAX as u128).to_string());
    assert_eq!(big["max"], u64::MAX);
    let empty = col("empty");
    assert_eq!(empty["min"], Value::Null);
    assert_eq!(empty["special"]["mean"], "nan");
    assert!(
        empty["special"].get("min").is_none(),
        "no value is not special: {empty}"
    );
    for item in &items {
        for (k, v) in item.as_object().unwrap() {
            assert!(
                v.is_number() || v.is_null() || k == "column" || k == "special",
                "{k}: {v}"
            );
        }
    }
}

/// Run with standard output a pipe whose reading end is already closed.
fn into_closed_pipe(dir: &TempDir, args: &[&str]) -> Output {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    shmarrow_bin()
        .arg("--dir")
        .arg(&dir.0)
        .args(args)
        .stdout(Stdio::from(write))
        .output()
        .unwrap()
}

#[test]
fn json_and_data_into_a_closed_pipe_exit_quietly() {
    let tmp = TempDir::new("epipe");
    matrix_segment(&tmp, "m");
    flat_segment(&tmp, "flat");
    // Bigger than the export's buffer: the writers meet the closed pipe mid-way.
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/trades.json");
    ok(
        &tmp,
        &["create", "t", "--schema", schema, "--rows", "100000"],
    );
    for args in [
        &["--json", "inspect", "m"][..],
        &["--json", "head", "m"],
        &["--json", "ls"],
        &["--json", "df"],
        &["--json", "reduce", "flat"],
        &["--json", "gc", "--dry-run"],
        &["inspect", "m"],
        &["head", "m"],
        &["export", "m", "-"],
        &["export", "t", "-", "--format", "csv"],
        &["export", "t", "-", "--format", "tsv"],
        &["export", "t", "-", "--format", "parquet"],
        &["export", "t", "/dev/stdout", "--format", "ipc"],
    ] {
        let out = into_closed_pipe(&tmp, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("error"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn create_beyond_the_free_space_fails_before_writing() {
    let tmp = TempDir::new("nospace");
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/trades.json");
    let rows: u64 = 100_000_000_000;
    let out = run(
        &tmp,
        &[
            "create",
            "big",
            "--schema",
            schema,
            "--rows",
            &rows.to_string(),
        ],
    );
    let stderr = fails_with(&out, 1, "no space for segment \"big\"");
    // The error names the whole estimated size (at least 8 bytes a row), found before the
    // data: a write that ran out of space midway would name what it had written.
    let needed: u64 = stderr
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {stderr}"));
    assert!(needed >= rows * 8, "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}
