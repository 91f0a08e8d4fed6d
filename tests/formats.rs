//! `import`/`export`/`head`/`df` through the binary: every format round-trips, bad input
//! fails cleanly and leaves nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use common::{TempDir, assert_same_batches, fails_clean, ok, run};
use serde_json::Value;

fn table(rows: usize) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..rows as i64)) as _,
        ),
        (
            "x",
            Arc::new(Float64Array::from_iter(
                (0..rows).map(|i| (i % 3 != 0).then_some(i as f64 * 0.5)),
            )) as _,
        ),
        (
            "s",
            Arc::new(StringArray::from_iter(
                (0..rows).map(|i| (i % 4 != 0).then(|| format!("v{i}"))),
            )) as _,
        ),
    ])
    .unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch, row_group: usize) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .build();
    write_parquet_with(path, batch, props);
}

/// Write `batch` to `path` as Parquet with `props`; the file's metadata.
fn write_parquet_with(
    path: &Path,
    batch: &RecordBatch,
    props: parquet::file::properties::WriterProperties,
) -> parquet::file::metadata::ParquetMetaData {
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap()
}

fn write_csv(path: &Path, batch: &RecordBatch) {
    let mut w = arrow_csv::WriterBuilder::new()
        .with_header(true)
        .build(std::fs::File::create(path).unwrap());
    w.write(batch).unwrap();
}

fn concat(seg: &shmarrow::Segment) -> RecordBatch {
    let schema = Arc::new(arrow_schema::Schema::new(seg.schema().fields().clone()));
    let batches: Vec<RecordBatch> = seg
        .batches()
        .iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
        .collect();
    arrow_select::concat::concat_batches(&schema, &batches).unwrap()
}

#[test]
fn parquet_csv_feather_stream_round_trip() {
    let tmp = TempDir::new("fmt");
    let files = TempDir::new("fmt-files");
    let want = table(10_000);
    let f = |n: &str| -> PathBuf { files.0.join(n) };

    write_parquet(&f("t.parquet"), &want, 3000);
    let text = ok(
        &tmp,
        &[
            "import",
            "p",
            f("t.parquet").to_str().unwrap(),
            "--batch-rows",
            "1000",
        ],
    );
    assert!(text.contains("10000 rows"), "{text}");
    let p = tmp.dir().attach("p").unwrap();
    assert!(
        p.batches().iter().all(|b| b.num_rows() <= 1000),
        "batches bounded by --batch-rows"
    );
    assert_same_batches(&[concat(&p)], std::slice::from_ref(&want));

    // CSV with an inferred schema: ints, floats with empty cells (nulls), strings.
    write_csv(&f("t.csv"), &want);
    ok(&tmp, &["import", "c", f("t.csv").to_str().unwrap()]);
    let c = concat(&tmp.dir().attach("c").unwrap());
    assert_eq!(c.num_rows(), 10_000);
    assert_eq!(c.column(1).null_count(), want.column(1).null_count());
    assert_eq!(
        c.column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(9999),
        9999
    );

    // CSV with a given schema, another delimiter and no header.
    std::fs::write(f("semi.csv"), "1;2.5;a\n2;;b\n").unwrap();
    std::fs::write(
        f("semi.json"),
        r#"{"fields": [{"name": "k", "type": "Int32", "nullable": false}, {"name": "v", "type": "Float32"}, {"name": "t", "type": "Utf8"}]}"#,
    )
    .unwrap();
    ok(
        &tmp,
        &[
            "import",
            "semi",
            f("semi.csv").to_str().unwrap(),
            "--schema",
            f("semi.json").to_str().unwrap(),
            "--delimiter",
            ";",
            "--header",
            "false",
        ],
    );
    let semi = tmp.dir().attach("semi").unwrap();
    assert_eq!(
        semi.schema().field(1).data_type(),
        &arrow_schema::DataType::Float32
    );
    assert_eq!(semi.batches()[0].column(1).null_count(), 1);

    // Feather v2 with zstd: decompressed on the way in, our segment is uncompressed + zero-copy.
    let opts = arrow_ipc::writer::IpcWriteOptions::default()
        .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
        .unwrap();
    let mut w = arrow_ipc::writer::FileWriter::try_new_with_options(
        std::fs::File::create(f("t.feather")).unwrap(),
        &want.schema(),
        opts,
    )
    .unwrap();
    w.write(&want).unwrap();
    w.finish().unwrap();
    drop(w);
    ok(&tmp, &["import", "fz", f("t.feather").to_str().unwrap()]);
    let fz = tmp
        .dir()
        .attach_with("fz", &shmarrow::AttachOptions::default().strict(true))
        .unwrap();
    assert_same_batches(&[concat(&fz)], std::slice::from_ref(&want));

    // export to every format and back.
    for (ext, fmt) in [
        ("arrow", "ipc"),
        ("arrows", "stream"),
        ("parquet", "parquet"),
        ("csv", "csv"),
    ] {
        let out = f(&format!("out.{ext}"));
        let json: Value =
            serde_json::from_str(&ok(&tmp, &["--json", "export", "p", out.to_str().unwrap()]))
                .unwrap();
        assert_eq!(json["format"], fmt);
        assert_eq!(json["rows"], 10_000);
        let back = format!("back-{ext}");
        ok(&tmp, &["import", &back, out.to_str().unwrap()]);
        let got = concat(&tmp.dir().attach(&back).unwrap());
        if ext == "csv" {
            assert_eq!(got.num_rows(), 10_000);
        } else {
            assert_same_batches(&[got], std::slice::from_ref(&want));
        }
    }
    // export refuses to overwrite and leaves no half file.
    let out = run(&tmp, &["export", "p", f("out.csv").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        std::fs::read_dir(&files.0)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
    );
}

#[test]
fn head_and_df() {
    let tmp = TempDir::new("head");
    let files = TempDir::new("head-files");
    write_parquet(&files.0.join("t.parquet"), &table(100), 100);
    ok(
        &tmp,
        &["import", "t", files.0.join("t.parquet").to_str().unwrap()],
    );
    let text = ok(&tmp, &["head", "t", "-n", "3", "--columns", "s,id"]);
    assert!(
        text.contains("| s ")
            && text.contains("| id |")
            && text.contains("v1")
            && text.contains("(3 of 100 rows)"),
        "{text}"
    );
    assert!(!text.contains("| x"), "{text}");
    let rows: Value = serde_json::from_str(&ok(&tmp, &["--json", "head", "t", "-n", "2"])).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[1]["id"], 1);
    assert_eq!(rows[1]["s"], "v1");
    let out = run(&tmp, &["head", "t", "--columns", "nope"]);
    assert_eq!(out.status.code(), Some(1));

    let df: Value = serde_json::from_str(&ok(&tmp, &["--json", "df"])).unwrap();
    assert_eq!(df["segments"], 1);
    assert_eq!(
        df["segment_bytes"],
        std::fs::metadata(tmp.0.join("t")).unwrap().len()
    );
    assert!(df["free"].as_u64().unwrap() <= df["size"].as_u64().unwrap());
    let text = ok(&tmp, &["df"]);
    assert!(
        text.starts_with("DIR") && text.contains("1 segment(s)"),
        "{text}"
    );
}

#[test]
fn bad_inputs_fail_cleanly_and_leave_nothing() {
    let tmp = TempDir::new("badfmt");
    let files = TempDir::new("badfmt-files");
    let f = |n: &str| files.0.join(n).to_str().unwrap().to_owned();
    write_parquet(&files.0.join("good.parquet"), &table(5000), 1000);
    let good = std::fs::read(files.0.join("good.parquet")).unwrap();
    std::fs::write(f("corrupt.parquet"), &good[..good.len() - 100]).unwrap();
    let mut footer = good.clone();
    let n = footer.len();
    footer[n - 40..n - 8].fill(0x55); // the footer's thrift metadata
    std::fs::write(f("damaged.parquet"), &footer).unwrap();
    std::fs::write(f("ragged.csv"), "a,b\n1,2\n3\n4,5\n").unwrap();
    std::fs::write(f("badvalue.csv"), "k\n1\n2\nthree\n").unwrap();
    std::fs::write(
        f("k.json"),
        r#"{"fields": [{"name": "k", "type": "Int64"}]}"#,
    )
    .unwrap();
    std::fs::write(
        f("badtype.json"),
        r#"{"fields": [{"name": "k", "type": "Integer"}]}"#,
    )
    .unwrap();
    std::fs::write(
        f("typo.json"),
        r#"{"fields": [{"name": "k", "type": "Int64", "nulable": false}]}"#,
    )
    .unwrap();
    std::fs::write(f("mystery.bin"), b"hello world, not a known format").unwrap();

    fails_clean(
        &tmp,
        &["import", "x", &f("missing.parquet")],
        "missing.parquet",
    );
    fails_clean(&tmp, &["import", "x", &f("corrupt.parquet")], "Parquet");
    fails_clean(
        &tmp,
        &["import", "x", &f("damaged.parquet")],
        "damaged.parquet",
    );
    fails_clean(&tmp, &["import", "x", &f("ragged.csv")], "ragged.csv");
    fails_clean(
        &tmp,
        &["import", "x", &f("badvalue.csv"), "--schema", &f("k.json")],
        "three",
    );
    fails_clean(
        &tmp,
        &[
            "import",
            "x",
            &f("badvalue.csv"),
            "--schema",
            &f("badtype.json"),
        ],
        "unknown type",
    );
    fails_clean(
        &tmp,
        &[
            "import",
            "x",
            &f("badvalue.csv"),
            "--schema",
            &f("typo.json"),
        ],
        "unknown field `nulable`",
    );
    fails_clean(
        &tmp,
        &["import", "x", &f("mystery.bin")],
        "cannot tell the format",
    );
    fails_clean(
        &tmp,
        &["import", "../x", &f("good.parquet")],
        "invalid segment name",
    );
    fails_clean(&tmp, &["export", "nope", &f("out.csv")], "not found");
    fails_clean(
        &tmp,
        &["export", "nope", &f("out.xyz")],
        "cannot tell the format",
    );
    fails_clean(&tmp, &["head", "nope"], "not found");
    assert_eq!(
        run(
            &tmp,
            &["import", "x", &f("good.parquet"), "--format", "xml"]
        )
        .status
        .code(),
        Some(2)
    );
}

#[test]
#[ignore = "needs root (mounting a small tmpfs needs root (unshare -m)); .ci/run runs it as root"]
fn streaming_import_into_a_full_directory() {
    common::require_root("mounting a small tmpfs needs root (unshare -m)");
    let files = TempDir::new("full-files");
    write_parquet(&files.0.join("big.parquet"), &table(2_000_000), 200_000);
    let mount = std::env::temp_dir().join(format!("shmarrow-fmt-mnt-{}", std::process::id()));
    std::fs::create_dir_all(&mount).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=8m shmarrow-test {m} && {bin} --dir {m} import big {input}; echo \"rc=$?\"; ls -A {m} | sed 's/^/left:/'",
        m = mount.display(),
        bin = env!("CARGO_BIN_EXE_shmarrow"),
        input = files.0.join("big.parquet").display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&mount);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("rc=1"), "{stdout} {stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("no space for segment \"big\""),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
    assert!(!stdout.contains("left:"), "left behind: {stdout}");
}

/// Write `path`: a Parquet file of one binary column holding `value` alone, in one page
/// compressed with `compression`, without dictionary or statistics; its metadata.
fn one_page_parquet(
    path: &Path,
    value: Vec<u8>,
    compression: parquet::basic::Compression,
) -> parquet::file::metadata::ParquetMetaData {
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    let batch = RecordBatch::try_from_iter([(
        "b",
        Arc::new(arrow_array::BinaryArray::from_iter_values([&value])) as _,
    )])
    .unwrap();
    drop(value);
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_data_page_size_limit(usize::MAX)
        .build();
    write_parquet_with(path, &batch, props)
}

#[test]
fn a_parquet_page_declaring_gigabytes_is_refused_before_it_is_read() {
    let tmp = TempDir::new("pqbomb");
    let files = TempDir::new("pqbomb-files");
    let path = files.0.join("bomb.parquet");
    // One page of 140 MB of zeros (its declared size a 5-byte varint), a few kB compressed.
    let value = vec![0u8; 140_000_000];
    let meta = one_page_parquet(&path, value, parquet::basic::Compression::LZ4_RAW);
    let start = meta.row_groups()[0].columns()[0].data_page_offset() as usize;
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    // The page header (Thrift compact): field 1 (i32) page type 0, field 2 (i32)
    // uncompressed_page_size; make it 2^31 - 1 (zigzag 2^32 - 2), the same five bytes long.
    assert_eq!(bytes[start..start + 3], [0x15, 0x00, 0x15]);
    assert_eq!(bytes[start + 7] & 0x80, 0, "a 5-byte varint");
    bytes[start + 3..start + 8].copy_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
    std::fs::write(&path, &bytes).unwrap();
    fails_clean(
        &tmp,
        &["import", "x", path.to_str().unwrap()],
        "row group 0 declares pages of 2147483647 bytes to hold at once",
    );
}

/// A page header of lists nested a byte each (compact type 9, one element of type 9, ...) is
/// refused at a bounded depth: the header reader recursed once per byte, and a column chunk of
/// 2 MB of them overflowed the stack (abort, SIGABRT).
#[test]
fn a_parquet_page_header_nested_beyond_any_depth_is_refused() {
    let tmp = TempDir::new("pqdeep");
    let files = TempDir::new("pqdeep-files");
    let path = files.0.join("deep.parquet");
    let value: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7) as u8).collect();
    let meta = one_page_parquet(&path, value, parquet::basic::Compression::UNCOMPRESSED);
    let (start, len) = meta.row_groups()[0].columns()[0].byte_range();
    let (start, len) = (start as usize, len as usize);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(len > 2_000_000, "a chunk of {len} bytes");
    // Field 1 of type list (0x19: delta 1, type 9), whose one element is a list (0x19: size
    // 1, type 9), whose one element ..., over the whole column chunk.
    bytes[start..start + len].fill(0x19);
    std::fs::write(&path, &bytes).unwrap();
    fails_clean(
        &tmp,
        &["import", "x", path.to_str().unwrap()],
        "invalid page header: nested too deeply",
    );
}
