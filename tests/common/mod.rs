//! Shared test helpers: unique segment names that clean up after themselves, the type matrix
//! (mirrored in `python/tests/matrix.py` for the cross-language tests), and the Python finder.
#![allow(dead_code)] // each integration test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arrow_array::builder::{
    FixedSizeListBuilder, Float32Builder, Int32Builder, Int64Builder, LargeListBuilder,
    LargeStringBuilder, ListBuilder, MapBuilder, MapFieldNames, StringBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use shmarrow::{Segment, SegmentDir};

/// A unique segment name in the default directory (`SHMARROW_DIR` or `/dev/shm`), removed
/// (with any temp files of it) when dropped.
pub struct Name {
    pub name: String,
    pub dir: SegmentDir,
}

impl Name {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "shmarrow-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            name,
            dir: SegmentDir::from_env(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.segment_path(&self.name).unwrap()
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            let prefix = format!(".{}.", self.name);
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// A fresh private segment directory under /dev/shm, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = PathBuf::from(format!(
            "/dev/shm/shmarrow-testdir-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
    pub fn dir(&self) -> SegmentDir {
        SegmentDir::new(&self.0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Rows in the type matrix; the matrix is published as batches of 3 + 2 rows.
pub const MATRIX_ROWS: usize = 5;

/// One column of every type the issue names, with nulls, extremes and empties; mirrored
/// value by value in `python/tests/matrix.py`.
pub fn type_matrix() -> (SchemaRef, Vec<RecordBatch>) {
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        (
            "i8",
            Arc::new(Int8Array::from(vec![
                Some(i8::MIN),
                Some(0),
                Some(i8::MAX),
                None,
                Some(1),
            ])),
        ),
        (
            "i16",
            Arc::new(Int16Array::from(vec![
                Some(i16::MIN),
                Some(1),
                Some(i16::MAX),
                Some(2),
                None,
            ])),
        ),
        (
            "i32",
            Arc::new(Int32Array::from(vec![
                Some(i32::MIN),
                Some(0),
                Some(i32::MAX),
                None,
                Some(7),
            ])),
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                Some(0),
                Some(i64::MAX),
                Some(42),
                None,
            ])),
        ),
        (
            "u8",
            Arc::new(UInt8Array::from(vec![
                Some(0),
                Some(u8::MAX),
                None,
                Some(1),
                Some(2),
            ])),
        ),
        (
            "u16",
            Arc::new(UInt16Array::from(vec![
                Some(0),
                Some(u16::MAX),
                Some(1),
                None,
                Some(3),
            ])),
        ),
        (
            "u32",
            Arc::new(UInt32Array::from(vec![
                Some(0),
                Some(u32::MAX),
                Some(1),
                Some(2),
                None,
            ])),
        ),
        (
            "u64",
            Arc::new(UInt64Array::from(vec![
                Some(0),
                Some(u64::MAX),
                None,
                Some(3),
                Some(4),
            ])),
        ),
        (
            "f16",
            Arc::new(Float16Array::from(vec![
                Some(half::f16::from_f32(1.5)),
                Some(half::f16::from_f32(-2.0)),
                Some(half::f16::from_f32(0.0)),
                None,
                Some(half::f16::MAX),
            ])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(1.5),
                Some(-0.25),
                Some(f32::INFINITY),
                None,
                Some(f32::MIN_POSITIVE),
            ])),
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![
                Some(0.1),
                Some(-1e300),
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY),
                None,
            ])),
        ),
        (
            "bool",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                Some(false),
            ])),
        ),
        (
            "utf8",
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some(""),
                None,
                Some("ünïcode"),
                Some("xxx"),
            ])),
        ),
        (
            "large_utf8",
            Arc::new(LargeStringArray::from(vec![
                Some("big"),
                None,
                Some(""),
                Some("z"),
                Some("é"),
            ])),
        ),
        (
            "binary",
            Arc::new(BinaryArray::from(vec![
                Some(&b"\x00\x01"[..]),
                Some(b""),
                None,
                Some(b"\xff"),
                Some(b"b"),
            ])),
        ),
        (
            "large_binary",
            Arc::new(LargeBinaryArray::from(vec![
                Some(&b"L"[..]),
                None,
                Some(b""),
                Some(b"\x00"),
                Some(b"q"),
            ])),
        ),
        (
            "fixed_binary",
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![Some(b"abc"), Some(b"def"), None, Some(b"ghi"), Some(b"jkl")].into_iter(),
                    3,
                )
                .unwrap(),
            ),
        ),
        (
            "date32",
            Arc::new(Date32Array::from(vec![
                Some(0),
                Some(19000),
                None,
                Some(-1),
                Some(1),
            ])),
        ),
        (
            "ts_tz",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(0),
                    Some(1_700_000_000_000_000),
                    None,
                    Some(-1),
                    Some(5),
                ])
                .with_timezone("Europe/Paris"),
            ),
        ),
        (
            "ts_ns",
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(1),
                Some(2),
                Some(3),
                None,
                Some(4),
            ])),
        ),
        (
            "duration_s",
            Arc::new(DurationSecondArray::from(vec![
                Some(1),
                Some(-1),
                None,
                Some(0),
                Some(100),
            ])),
        ),
        (
            "decimal",
            Arc::new(
                Decimal128Array::from(vec![
                    Some(12345),
                    Some(-1),
                    None,
                    Some(0),
                    Some(10i128.pow(20) - 1),
                ])
                .with_precision_and_scale(20, 4)
                .unwrap(),
            ),
        ),
        ("null", Arc::new(NullArray::new(MATRIX_ROWS))),
    ];

    // struct<a: int32, b: utf8>, null at row 2 (children null there too)
    let fields = Fields::from(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("b", DataType::Utf8, true),
    ]);
    let s = StructArray::new(
        fields,
        vec![
            Arc::new(Int32Array::from(vec![
                Some(1),
                Some(2),
                None,
                Some(4),
                Some(5),
            ])),
            Arc::new(StringArray::from(vec![
                Some("x"),
                None,
                None,
                Some("w"),
                Some("v"),
            ])),
        ],
        Some(NullBuffer::from(vec![true, true, false, true, true])),
    );
    cols.push(("struct", Arc::new(s)));

    let mut list = ListBuilder::new(Int32Builder::new());
    for row in [
        Some(vec![Some(1), Some(2)]),
        Some(vec![]),
        None,
        Some(vec![Some(3), None]),
        Some(vec![Some(4)]),
    ] {
        match row {
            Some(v) => {
                list.values().extend(v);
                list.append(true)
            }
            None => list.append(false),
        }
    }
    cols.push(("list", Arc::new(list.finish())));

    let mut llist = LargeListBuilder::new(LargeStringBuilder::new());
    for row in [
        Some(vec![Some("a")]),
        None,
        Some(vec![]),
        Some(vec![Some("b"), Some("c")]),
        Some(vec![None]),
    ] {
        match row {
            Some(v) => {
                for s in v {
                    llist.values().append_option(s);
                }
                llist.append(true)
            }
            None => llist.append(false),
        }
    }
    cols.push(("large_list", Arc::new(llist.finish())));

    let mut fsl = FixedSizeListBuilder::new(Float32Builder::new(), 2);
    for row in [
        Some([1.0, 2.0]),
        Some([3.0, 4.0]),
        None,
        Some([5.0, 6.0]),
        Some([7.0, 8.0]),
    ] {
        match row {
            Some(v) => {
                fsl.values().append_slice(&v);
                fsl.append(true)
            }
            None => {
                fsl.values().append_nulls(2);
                fsl.append(false)
            }
        }
    }
    cols.push(("fixed_list", Arc::new(fsl.finish())));

    let names = MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut map = MapBuilder::new(Some(names), StringBuilder::new(), Int64Builder::new());
    type Entries = Option<Vec<(&'static str, Option<i64>)>>;
    let rows: [Entries; 5] = [
        Some(vec![("k", Some(1))]),
        Some(vec![]),
        None,
        Some(vec![("a", Some(2)), ("b", Some(3))]),
        Some(vec![("z", None)]),
    ];
    for row in rows {
        match row {
            Some(entries) => {
                for (k, v) in entries {
                    map.keys().append_value(k);
                    map.values().append_option(v);
                }
                map.append(true).unwrap();
            }
            None => map.append(false).unwrap(),
        }
    }
    cols.push(("map", Arc::new(map.finish())));

    let dict = DictionaryArray::<Int32Type>::try_new(
        Int32Array::from(vec![Some(0), Some(1), None, Some(0), Some(2)]),
        Arc::new(StringArray::from(vec!["red", "green", "blue"])),
    )
    .unwrap();
    cols.push(("dict", Arc::new(dict)));

    let full =
        RecordBatch::try_from_iter_with_nullable(cols.into_iter().map(|(n, a)| (n, a, true)))
            .unwrap();
    let schema = full.schema();
    (schema, vec![full.slice(0, 3), full.slice(3, 2)])
}

/// Every buffer of every column (children and dictionaries included) lies in the mapping.
pub fn assert_zero_copy(segment: &Segment) {
    for batch in segment.batches() {
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            assert!(
                segment.contains(&column.to_data()),
                "column {} has a buffer outside the mapping",
                field.name()
            );
        }
    }
    assert!(segment.copied_columns().is_empty());
}

/// Compare batches by columns and field names/types (schema metadata is ignored: shmarrow
/// adds its `shmarrow.` keys).
pub fn assert_same_batches(got: &[RecordBatch], want: &[RecordBatch]) {
    assert_eq!(got.len(), want.len(), "batch count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.schema().fields(), w.schema().fields(), "batch {i} fields");
        for (j, (gc, wc)) in g.columns().iter().zip(w.columns()).enumerate() {
            assert_eq!(
                gc.to_data(),
                wc.to_data(),
                "batch {i} column {}",
                w.schema().field(j).name()
            );
        }
    }
}

/// The Python interpreter with pyarrow and the shmarrow package: `$SHMARROW_PYTHON`, else
/// `.venv/bin/python`. `None` (test skipped, with a message) unless
/// `SHMARROW_REQUIRE_PYTHON=1`, which `make test` sets so CI can never skip these.
pub fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("SHMARROW_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")))
        .filter(|p| p.exists());
    if candidate.is_none() {
        assert!(
            std::env::var_os("SHMARROW_REQUIRE_PYTHON").is_none(),
            "SHMARROW_REQUIRE_PYTHON is set but no Python found (set SHMARROW_PYTHON)"
        );
        eprintln!("skipped: no Python with pyarrow (run `make test`, or set SHMARROW_PYTHON)");
    }
    candidate
}

/// Run `python/tests/matrix.py` with `args`; returns stdout, panics with stderr on failure.
pub fn run_matrix_py(python: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/tests/matrix.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "matrix.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `shmarrow` binary built for these tests.
pub fn shmarrow_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmarrow"))
}

/// Run `shmarrow --dir DIR ARGS...` to completion.
pub fn run(dir: &TempDir, args: &[&str]) -> std::process::Output {
    shmarrow_bin()
        .arg("--dir")
        .arg(&dir.0)
        .args(args)
        .output()
        .unwrap()
}

/// Start `shmarrow --dir DIR ARGS...` in the background, its standard output going to
/// `stdout` and its standard error to a pipe (read it with `wait_with_output`).
pub fn spawn(dir: &TempDir, args: &[&str], stdout: std::process::Stdio) -> std::process::Child {
    shmarrow_bin()
        .arg("--dir")
        .arg(&dir.0)
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Start `shmarrow produce NAME` of small generated trades (`schemas/trades.json`, 4 rows a
/// batch, 4 slots of 64 KiB) with `extra` arguments, as [`spawn`] does.
pub fn produce_trades(
    dir: &TempDir,
    name: &str,
    extra: &[&str],
    stdout: std::process::Stdio,
) -> std::process::Child {
    let schema = format!("{}/schemas/trades.json", env!("CARGO_MANIFEST_DIR"));
    let args = [
        "produce",
        name,
        "--schema",
        &schema,
        "--batch-rows",
        "4",
        "--slots",
        "4",
        "--slot-size",
        "64K",
    ];
    spawn(dir, &[&args[..], extra].concat(), stdout)
}

/// Like [`run`], asserting success; returns stdout.
pub fn ok(dir: &TempDir, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every value of primitive column `column` over all batches of `segment` (`None` for nulls).
pub fn column_values<T: ArrowPrimitiveType>(
    segment: &Segment,
    column: &str,
) -> Vec<Option<T::Native>> {
    segment
        .batches()
        .iter()
        .flat_map(|b| {
            let array = b.column_by_name(column).expect("column");
            array
                .as_any()
                .downcast_ref::<PrimitiveArray<T>>()
                .expect("column type")
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Write `schema` + `batches` as an IPC file into a temporary file outside any segment dir.
pub fn write_ipc_file(path: &Path, schema: &Schema, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = arrow_ipc::writer::FileWriter::try_new(file, schema).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

/// Exit 1 with one clean line containing `needle`, and no segment or temp left in the dir.
pub fn fails_clean(dir: &TempDir, args: &[&str], needle: &str) {
    let before = dir.dir().list().unwrap();
    let out = run(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let after = dir.dir().list().unwrap();
    assert_eq!(before, after, "{args:?} left something behind");
}

/// Where each buffer's 16-byte `{offset, length}` entry lies in `message` (the flatbuffer of a
/// record batch message), in buffer order.
pub fn buffer_entries(message: &[u8]) -> Vec<usize> {
    let parsed = arrow_ipc::root_as_message(message).unwrap();
    let buffers = parsed.header_as_record_batch().unwrap().buffers().unwrap();
    buffers
        .iter()
        .map(|b| b as *const arrow_ipc::Buffer as usize - message.as_ptr() as usize)
        .collect()
}

/// The byte position, in `file`, of buffer `index`'s `{offset, length}` in record batch
/// `batch`'s message, and the position of the footer's block of record batch `batch`.
pub fn positions(file: &[u8], batch: usize, index: usize) -> (usize, usize) {
    let len = file.len();
    let footer_len = i32::from_le_bytes(file[len - 10..len - 6].try_into().unwrap()) as usize;
    let footer = arrow_ipc::root_as_footer(&file[len - 10 - footer_len..len - 10]).unwrap();
    let block = footer.recordBatches().unwrap().get(batch);
    let block_at = block as *const _ as usize - file.as_ptr() as usize;
    let start = block.offset() as usize;
    let skip = if file[start..start + 4] == [0xff; 4] {
        8
    } else {
        4
    };
    let message = start + skip;
    let meta = &file[message..start + block.metaDataLength() as usize];
    (message + buffer_entries(meta)[index], block_at)
}

/// Rewrite segment `name` of `dir` with `patch` applied to its bytes.
pub fn patch(dir: &SegmentDir, name: &str, patch: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.segment_path(name).unwrap();
    let mut file = std::fs::read(&path).unwrap();
    patch(&mut file);
    std::fs::write(&path, &file).unwrap();
}

/// In `message` (the flatbuffer of a record batch message), move the first non-empty buffer
/// 4 GiB past the body (bit 32 of its offset), as in the fuzzer's `slice offset=4294967344
/// length=8` panic of arrow-ipc.
pub fn lie_about_a_buffer_offset(message: &mut [u8]) {
    let at = buffer_entries(message)
        .into_iter()
        .find(|&at| message[at + 8..at + 16] != [0; 8])
        .unwrap();
    message[at + 4] |= 1;
}

/// Wait until a publish temp file (`.NAME....tmp`) with at least `min_bytes` exists in `dir`,
/// polling; fails if `child` exits first or nothing appears within a generous hang-detector
/// deadline (not a speed assertion).
pub fn wait_for_temp(dir: &Path, child: &mut std::process::Child, min_bytes: u64) -> PathBuf {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let found = std::fs::read_dir(dir).unwrap().flatten().find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with('.')
                && name.ends_with(".tmp")
                && e.metadata().is_ok_and(|m| m.len() >= min_bytes)
        });
        if let Some(entry) = found {
            return entry.path();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "pid {} exited ({status}) before writing a temp file",
                child.id()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {} wrote no temp file in 120 s",
            child.id()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Send `signal` to `child` (by pid), wait for it, and check it ended with 128 + the signal
/// number, said it published nothing, and left nothing at all in `dir` but `keep`.
pub fn interrupt_leaves_nothing(
    dir: &Path,
    mut child: std::process::Child,
    signal: nix::sys::signal::Signal,
    keep: &[&str],
) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
    }
    assert_eq!(
        status.code(),
        Some(128 + signal as i32),
        "{signal}: {status}: {stderr}"
    );
    assert!(
        stderr.contains("interrupted") && stderr.contains("nothing was published"),
        "{signal}: {stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "{signal} left {left:?}");
}

/// Create segment `name` in `dir` from `batches` (at least one; their schema), default options.
pub fn create_batches(dir: &SegmentDir, name: &str, batches: &[RecordBatch]) {
    dir.create(
        name,
        &batches[0].schema(),
        batches,
        &shmarrow::CreateOptions::default(),
    )
    .unwrap();
}

/// Poll until `done()` holds. Not a speed limit: only a hang (ten minutes) fails, naming `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "still waiting for {what} after ten minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// This process's mappings of `path` (the permissions column of `/proc/self/maps`: `rw-s` is
/// shared, `rw-p` private) and how many of its descriptors are open on it.
pub fn held(path: &Path) -> (Vec<String>, usize) {
    let want = path.to_string_lossy().into_owned();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(&want))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
        .collect();
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|p| p == path))
        .count();
    (maps, fds)
}

/// The first line of a `#[ignore = "needs root ..."]` test (`.ci/run` runs them as root with
/// `--ignored`): run by another user, it fails saying why instead of passing untested.
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{why}: run this test as root (`cargo test -- --ignored`)"
    );
}
