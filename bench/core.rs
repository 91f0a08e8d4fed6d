//! Core benchmarks of shmarrow (Rust side). Run with `cargo bench --bench core` (or `make bench`).
//!
//! No harness, no criterion: `std::time::Instant`, medians over many repeats, figures printed
//! (never asserted: the machine is shared and noisy, so a slow run prints MISS, it does not fail).
//!
//! Cases (see `bench/README.md`):
//! - **attach**: `SegmentDir::attach` + dropping the segment, for tables of 1 MiB, 100 MiB and
//!   1 GiB of data (8 float64 columns, ONE record batch per table, so the per-batch and
//!   per-column work is identical at every size and only the data size changes).
//! - **publish**: `SegmentDir::create` of the 1 GiB table (already in memory) against a
//!   baseline that `write_all`s the same number of bytes (a resident `Vec<u8>`, 1 MiB chunks)
//!   into a fresh file (`O_CREAT|O_EXCL`, no `fallocate`) in the same directory.
//!
//! - **shapes** (issue 17): one string column of 1M and 10M rows, 1,000 float64 columns ×
//!   1,000 rows, one float64 column in 10,000 batches of 100 rows, one float64 column of 1 MiB,
//!   100 MiB and 1 GiB in one batch: `SegmentDir::attach` with
//!   `Validate::Auto` (a private shmarrow segment: structural checks), with `Validate::Full`,
//!   and stock arrow-rs (`arrow_ipc::reader::FileDecoder` over the same mapping, arrow's
//!   default validation), alternating, with the load average.
//!
//! - **allocation publish** (issue 17): `Allocation::publish` of a filled float64 column of
//!   1 MiB, 100 MiB and 1 GiB, without and with a raw view held (the Python path), beside a
//!   `rename` of a file of the same size (the commit alone).
//!
//! `cargo bench --bench core -- alloc-publish` runs the last case alone, `-- shapes` the shapes
//! alone.
//! `SHMARROW_BENCH_QUICK=1`: fewer repeats, no 1 GiB table (publish then uses 100 MiB), no
//! 10M-row strings.
//! The segment directory is `$SHMARROW_DIR` or `/dev/shm`. Every file this program creates is
//! named `shmarrow-bench-<pid>-...` and removed on success, on error, on panic and on
//! SIGINT/SIGTERM/SIGHUP (checked between steps).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::types::Float64Type;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_buffer::Buffer;
use arrow_schema::{DataType, Field, Schema};
use shmarrow::{AttachOptions, CreateOptions, SegmentDir, Validate};

#[path = "common.rs"]
mod common;
use common::{
    BenchResult, SegmentGuard, Summary, bench_main, check_interrupted, human, loadavg, machine,
    quick, summary_of, verdict,
};

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;
const COLUMNS: usize = 8;

/// Targets from the issue; printed beside the measurements, never asserted.
const TARGET_ATTACH_1GIB_US: f64 = 100.0;
const TARGET_ATTACH_RATIO: f64 = 2.0;
const TARGET_PUBLISH_RATIO: f64 = 1.2;
const TARGET_ALLOC_PUBLISH_US: f64 = 200.0;

// ---------------------------------------------------------------------------------------------
// Cleanup guards.

/// Removes a plain file when dropped, if it exists.
struct FileGuard(PathBuf);

impl Drop for FileGuard {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: could not remove {}: {e}", self.0.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data.

/// A table of `COLUMNS` float64 columns holding `bytes` of values, in ONE record batch.
fn table(bytes: usize) -> BenchResult<(Arc<Schema>, Vec<RecordBatch>)> {
    let rows = bytes / (COLUMNS * 8);
    let fields: Vec<Field> = (0..COLUMNS)
        .map(|c| Field::new(format!("c{c}"), DataType::Float64, false))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<ArrayRef> = (0..COLUMNS)
        .map(|c| {
            let k = (c + 1) as f64;
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| i as f64 * k),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok((schema, vec![batch]))
}

fn segment_name(what: &str) -> String {
    format!("shmarrow-bench-{}-{what}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Case a: attach.

struct AttachRow {
    bytes: usize,
    file_bytes: u64,
    total: Summary,
    drop_median_us: f64,
}

fn bench_attach(
    dir: &SegmentDir,
    bytes: usize,
    warmups: usize,
    repeats: usize,
) -> BenchResult<AttachRow> {
    let (schema, batches) = table(bytes)?;
    check_interrupted()?;
    let name = segment_name(&format!("attach-{}", human(bytes).replace(' ', "")));
    let guard = SegmentGuard {
        dir,
        name: name.clone(),
    };
    let created = dir.create(&name, &schema, &batches, &CreateOptions::default())?;
    let file_bytes = created.bytes();
    drop(created);
    drop(batches); // only the segment is needed from here on

    // Sanity check, outside the timing: the data is really mapped, not copied.
    {
        let seg = dir.attach(&name)?;
        let rows = (bytes / (COLUMNS * 8)) as u64;
        if seg.num_rows() != rows || seg.batches().len() != 1 {
            return Err(format!(
                "{name}: attached {} rows in {} batches, expected {rows} in 1",
                seg.num_rows(),
                seg.batches().len()
            )
            .into());
        }
        if !seg.copied_columns().is_empty()
            || !seg.columns().iter().all(|c| c.zero_copy)
            || !seg.contains(&seg.batches()[0].column(0).to_data())
        {
            return Err(format!("{name}: attached columns are not zero-copy").into());
        }
    }

    let mut total = Vec::with_capacity(repeats);
    let mut drops = Vec::with_capacity(repeats);
    for i in 0..warmups + repeats {
        check_interrupted()?;
        let t0 = Instant::now();
        let seg = dir.attach(&name)?;
        let seg = std::hint::black_box(seg);
        let t1 = Instant::now();
        drop(seg);
        let t2 = Instant::now();
        if i >= warmups {
            total.push(t2 - t0);
            drops.push(t2 - t1);
        }
    }
    drop(guard);
    Ok(AttachRow {
        bytes,
        file_bytes,
        total: summary_of(&total, 1e6),
        drop_median_us: summary_of(&drops, 1e6).median,
    })
}

// ---------------------------------------------------------------------------------------------
// Case b: publish against a plain write of the same bytes.

struct PublishResult {
    bytes: usize,
    file_bytes: u64,
    create: Summary,
    baseline: Summary,
}

/// The baseline: a new file (`O_CREAT|O_EXCL`), `write_all` of `data` in 1 MiB chunks, close.
fn baseline_write(path: &Path, data: &[u8]) -> BenchResult<Duration> {
    let t0 = Instant::now();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path)?;
    for chunk in data.chunks(MIB) {
        file.write_all(chunk)?;
    }
    drop(file);
    Ok(t0.elapsed())
}

fn bench_publish(
    dir: &SegmentDir,
    bytes: usize,
    warmups: usize,
    repeats: usize,
) -> BenchResult<PublishResult> {
    let (schema, batches) = table(bytes)?;
    check_interrupted()?;
    let name = segment_name(&format!("publish-{}", human(bytes).replace(' ', "")));
    let seg_guard = SegmentGuard {
        dir,
        name: name.clone(),
    };
    let base_path = dir.path().join(segment_name(&format!(
        "baseline-{}.bin",
        human(bytes).replace(' ', "")
    )));
    let base_guard = FileGuard(base_path.clone());
    let options = CreateOptions::default();

    // One create to learn the exact file size; the baseline writes that many bytes.
    let file_bytes = dir.create(&name, &schema, &batches, &options)?.bytes();
    dir.remove(&name)?;
    let data = vec![0x5a_u8; usize::try_from(file_bytes)?]; // memset: every page resident
    std::hint::black_box(&data);

    let run_create = || -> BenchResult<Duration> {
        let t0 = Instant::now();
        let created = dir.create(&name, &schema, &batches, &options)?;
        drop(created);
        let elapsed = t0.elapsed();
        dir.remove(&name)?;
        Ok(elapsed)
    };
    let run_baseline = || -> BenchResult<Duration> {
        let elapsed = baseline_write(&base_path, &data)?;
        std::fs::remove_file(&base_path)?;
        Ok(elapsed)
    };

    let mut create = Vec::with_capacity(repeats);
    let mut baseline = Vec::with_capacity(repeats);
    for i in 0..warmups + repeats {
        check_interrupted()?;
        // Alternate the order so drift (other tenants, page cache state) hits both alike.
        let (c, b) = if i % 2 == 0 {
            let b = run_baseline()?;
            (run_create()?, b)
        } else {
            let c = run_create()?;
            (c, run_baseline()?)
        };
        if i >= warmups {
            create.push(c);
            baseline.push(b);
        }
    }
    drop(seg_guard);
    drop(base_guard);
    Ok(PublishResult {
        bytes,
        file_bytes,
        create: summary_of(&create, 1e6),
        baseline: summary_of(&baseline, 1e6),
    })
}

// ---------------------------------------------------------------------------------------------
// Case c: the table shapes of issue 17.

/// A table shape: its label and how to build its batches (built one shape at a time, so the
/// 1 GiB column and the 10M strings are never in memory together).
struct Shape {
    label: String,
    build: Box<dyn Fn() -> BenchResult<Vec<RecordBatch>>>,
}

fn float_column(rows: usize, start: usize) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(
        (start..start + rows).map(|i| i as f64),
    ))
}

fn shapes(quick: bool) -> Vec<Shape> {
    let strings = |rows: usize| Shape {
        label: format!("1 string column, {}M rows", rows / 1_000_000),
        build: Box::new(move || {
            let values = StringArray::from_iter_values((0..rows).map(|i| format!("value-{i:011}")));
            Ok(vec![RecordBatch::try_from_iter([(
                "s",
                Arc::new(values) as ArrayRef,
            )])?])
        }),
    };
    let mut out = vec![strings(1_000_000)];
    if !quick {
        out.push(strings(10_000_000));
    }
    out.push(Shape {
        label: "1,000 float64 columns × 1,000 rows, 1 batch".into(),
        build: Box::new(|| {
            Ok(vec![RecordBatch::try_from_iter(
                (0..1000).map(|c| (format!("c{c}"), float_column(1000, c))),
            )?])
        }),
    });
    out.push(Shape {
        label: "1 float64 column × 10,000 batches of 100 rows".into(),
        build: Box::new(|| {
            Ok((0..10_000)
                .map(|b| RecordBatch::try_from_iter([("x", float_column(100, b * 100))]))
                .collect::<Result<Vec<_>, _>>()?)
        }),
    });
    let sizes: &[usize] = if quick {
        &[MIB, 100 * MIB]
    } else {
        &[MIB, 100 * MIB, GIB]
    };
    for &bytes in sizes {
        out.push(Shape {
            label: format!("1 float64 column, {}, 1 batch", human(bytes)),
            build: Box::new(move || {
                Ok(vec![RecordBatch::try_from_iter([(
                    "x",
                    float_column(bytes / 8, 0),
                )])?])
            }),
        });
    }
    out
}

/// Stock arrow-rs: map the file and decode every batch with `FileDecoder` (zero-copy, arrow's
/// default validation) into a `Vec` (the table in hand, as `attach` gives it); returns the
/// batches' row count.
fn stock_arrow_rs(path: &Path) -> BenchResult<usize> {
    use arrow_ipc::convert::try_fb_to_schema;
    use arrow_ipc::reader::{FileDecoder, read_footer_length};
    let file = std::fs::File::open(path)?;
    // SAFETY: a benchmark segment of this process; nothing writes it while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let buffer = Buffer::from(bytes::Bytes::from_owner(map));
    let len = buffer.len();
    let footer_len = read_footer_length(buffer[len - 10..].try_into()?)?;
    let footer = arrow_ipc::root_as_footer(&buffer[len - 10 - footer_len..len - 10])?;
    let schema = try_fb_to_schema(footer.schema().ok_or("no schema")?)?;
    let mut decoder = FileDecoder::new(Arc::new(schema), footer.version());
    let slice = |b: &arrow_ipc::Block| {
        buffer.slice_with_length(
            b.offset() as usize,
            b.metaDataLength() as usize + b.bodyLength() as usize,
        )
    };
    for block in footer.dictionaries().iter().flatten() {
        decoder.read_dictionary(block, &slice(block))?;
    }
    // The batches are kept, as an attached table keeps them, and dropped together at the end.
    let mut batches = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        batches.extend(decoder.read_record_batch(block, &slice(block))?);
    }
    Ok(batches.iter().map(RecordBatch::num_rows).sum())
}

fn bench_shape(
    dir: &SegmentDir,
    shape: &Shape,
    warmups: usize,
    repeats: usize,
) -> BenchResult<[Summary; 3]> {
    let name = segment_name("shape");
    let guard = SegmentGuard {
        dir,
        name: name.clone(),
    };
    let rows = {
        let batches = (shape.build)()?;
        let schema = batches[0].schema();
        dir.create(&name, &schema, &batches, &CreateOptions::default())?;
        batches.iter().map(RecordBatch::num_rows).sum::<usize>()
    };
    let path = dir.segment_path(&name)?;
    let attach = |validate: Validate| -> BenchResult<Duration> {
        let t0 = Instant::now();
        let segment = dir.attach_with(&name, &AttachOptions::default().validate(validate))?;
        let segment = std::hint::black_box(segment);
        if segment.num_rows() as usize != rows {
            return Err(format!("{name}: attached {} rows, not {rows}", segment.num_rows()).into());
        }
        drop(segment);
        Ok(t0.elapsed())
    };
    let stock = || -> BenchResult<Duration> {
        let t0 = Instant::now();
        let got = stock_arrow_rs(&path)?;
        if got != rows {
            return Err(format!("stock arrow-rs read {got} rows, not {rows}").into());
        }
        Ok(t0.elapsed())
    };
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for i in 0..warmups + repeats {
        check_interrupted()?;
        // Rotate the order so drift hits all three alike. Each timed call follows an untimed
        // call of the same case, so none pays for the caches the case before it evicted (the
        // rotation alone always ran auto right after stock arrow-rs).
        let run = |case: usize| match case {
            0 => attach(Validate::Auto),
            1 => attach(Validate::Full),
            _ => stock(),
        };
        let mut times = [Duration::ZERO; 3];
        for k in 0..3 {
            let case = (i + k) % 3;
            run(case)?;
            times[case] = run(case)?;
        }
        if i >= warmups {
            for (samples, t) in samples.iter_mut().zip(times) {
                samples.push(t);
            }
        }
    }
    drop(guard);
    Ok(samples.map(|s| summary_of(&s, 1e6)))
}

/// Case c, printed: every shape's medians beside stock arrow-rs, and whether auto beat it.
fn report_shapes(dir: &SegmentDir, quick: bool) -> BenchResult<()> {
    let (shape_warmups, shape_repeats) = if quick { (1, 5) } else { (2, 15) };
    println!(
        "## attach + drop of the table shapes of issue 17 (load average before: {}); \
         {shape_warmups} warmups, {shape_repeats} repeats, rotating, each after an untimed call of itself",
        loadavg()
    );
    println!();
    println!(
        "| table | auto (structure) median µs | full median µs | stock arrow-rs median µs | \
         stock / auto | full / auto | n |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut slowest: Option<(f64, String)> = None;
    for shape in shapes(quick) {
        check_interrupted()?;
        let [auto, full, stock] = bench_shape(dir, &shape, shape_warmups, shape_repeats)?;
        let ratio = stock.median / auto.median;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {ratio:.2}× | {:.2}× | {} |",
            shape.label,
            auto.median,
            full.median,
            stock.median,
            full.median / auto.median,
            auto.n
        );
        if slowest.as_ref().is_none_or(|(worst, _)| ratio < *worst) {
            slowest = Some((ratio, shape.label));
        }
    }
    println!();
    if let Some((ratio, label)) = slowest {
        println!(
            "- lowest stock / auto: {ratio:.2}× ({label}; target ≥ 1×, every shape at least as fast as stock arrow-rs): {}",
            verdict(ratio >= 1.0)
        );
    }
    println!(
        "load average after: {} (on a loaded machine these figures are indicative)",
        loadavg()
    );
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case d: publishing a table filled in place (issue 17, item 2).

/// `Allocation::publish` of a filled one-column float64 table of `bytes`, without and with a
/// raw view held (what NumPy holds in Python), against the commit alone: `rename` of a file of
/// the same size. Medians in µs: [publish, publish with a view, rename].
fn bench_alloc_publish(
    dir: &SegmentDir,
    bytes: usize,
    warmups: usize,
    repeats: usize,
) -> BenchResult<[Summary; 3]> {
    let schema = Schema::new(vec![Field::new("x", DataType::Float64, false)]);
    let name = segment_name(&format!("alloc-{}", human(bytes).replace(' ', "")));
    let guard = SegmentGuard {
        dir,
        name: name.clone(),
    };
    let path = dir.path().join(&name);
    let other = FileGuard(dir.path().join(segment_name("rename-baseline")));
    let publish = |view: bool| -> BenchResult<Duration> {
        let alloc = dir.allocate(&name, &schema, bytes / 8, &CreateOptions::default())?;
        alloc.values_mut::<Float64Type>("x")?[0].fill(1.0); // every page resident
        let raw = if view {
            Some(alloc.raw_values("x")?)
        } else {
            None
        };
        let t0 = Instant::now();
        let created = alloc.publish()?;
        let elapsed = t0.elapsed();
        drop((created, raw));
        dir.remove(&name)?;
        // Untimed: let the background unmap end before the next sample.
        while std::fs::read_to_string("/proc/self/maps")?.contains(&*path.to_string_lossy()) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(elapsed)
    };
    let rename = || -> BenchResult<Duration> {
        let file = std::fs::File::create(&other.0)?;
        file.set_len(bytes as u64)?;
        let t0 = Instant::now();
        std::fs::rename(&other.0, &path)?;
        let elapsed = t0.elapsed();
        std::fs::remove_file(&path)?;
        Ok(elapsed)
    };
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for i in 0..warmups + repeats {
        check_interrupted()?;
        let times = [publish(false)?, publish(true)?, rename()?];
        if i >= warmups {
            for (samples, t) in samples.iter_mut().zip(times) {
                samples.push(t);
            }
        }
    }
    drop(guard);
    Ok(samples.map(|s| summary_of(&s, 1e6)))
}

/// Case d, printed.
fn report_alloc_publish(dir: &SegmentDir, sizes: &[usize], quick: bool) -> BenchResult<()> {
    let (alloc_warmups, alloc_repeats) = if quick { (1, 5) } else { (2, 15) };
    println!(
        "## `Allocation::publish` of a filled float64 column (load average before: {}); \
         {alloc_warmups} warmups, {alloc_repeats} repeats, rotating",
        loadavg()
    );
    println!();
    println!(
        "| data | publish median µs | publish, a raw view held, median µs | \
         baseline `rename` median µs | publish / rename | n |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut worst: f64 = 0.0;
    for &bytes in sizes {
        let [plain, viewed, rename] =
            bench_alloc_publish(dir, bytes, alloc_warmups, alloc_repeats)?;
        worst = worst.max(plain.median).max(viewed.median);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2}× | {} |",
            human(bytes),
            plain.median,
            viewed.median,
            rename.median,
            plain.median / rename.median,
            plain.n
        );
    }
    println!();
    println!(
        "- slowest publish median: {worst:.1} µs (target ≤ {TARGET_ALLOC_PUBLISH_US:.0} µs at every size): {}",
        verdict(worst <= TARGET_ALLOC_PUBLISH_US)
    );
    println!("load average after: {}", loadavg());
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn main() {
    bench_main(run);
}

fn run() -> BenchResult<()> {
    let quick = quick();
    let dir = SegmentDir::from_env();
    let (attach_sizes, attach_warmups, attach_repeats) = if quick {
        (vec![MIB, 100 * MIB], 1, 11)
    } else {
        (vec![MIB, 100 * MIB, GIB], 3, 31)
    };
    let (publish_bytes, publish_warmups, publish_repeats) = if quick {
        (100 * MIB, 1, 3)
    } else {
        (GIB, 1, 7)
    };

    println!("# shmarrow core benchmark (Rust)");
    println!();
    println!(
        "machine: {}; dir {}; mode {}; pid {}",
        machine(),
        dir.path().display(),
        if quick { "QUICK (no 1 GiB)" } else { "full" },
        std::process::id()
    );
    println!();
    if std::env::args().any(|a| a == "alloc-publish") {
        return report_alloc_publish(&dir, &attach_sizes, quick);
    }
    if std::env::args().any(|a| a == "shapes") {
        return report_shapes(&dir, quick);
    }

    // a. attach
    println!(
        "## attach (open + map + check + decode, and drop), 8 float64 columns, 1 batch; \
         {attach_warmups} warmups, {attach_repeats} repeats"
    );
    println!();
    println!("| data | file bytes | median µs | min µs | max µs | of which drop (median µs) | n |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for &bytes in &attach_sizes {
        let row = bench_attach(&dir, bytes, attach_warmups, attach_repeats)?;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            human(row.bytes),
            row.file_bytes,
            row.total.median,
            row.total.min,
            row.total.max,
            row.drop_median_us,
            row.total.n
        );
        rows.push(row);
    }
    println!();
    let (small, large) = (&rows[0], &rows[rows.len() - 1]);
    let ratio = large.total.median / small.total.median;
    if large.bytes == GIB {
        println!(
            "- attach 1 GiB median: {:.1} µs (target ≤ {TARGET_ATTACH_1GIB_US:.0} µs): {}",
            large.total.median,
            verdict(large.total.median <= TARGET_ATTACH_1GIB_US)
        );
        println!(
            "- attach ratio 1 GiB / 1 MiB (medians): {ratio:.2}× (target ≤ {TARGET_ATTACH_RATIO:.0}×): {}",
            verdict(ratio <= TARGET_ATTACH_RATIO)
        );
    } else {
        println!(
            "- attach ratio {} / {} (medians): {ratio:.2}× (quick mode: the targets are for 1 GiB, not judged)",
            human(large.bytes),
            human(small.bytes)
        );
    }
    println!();

    report_shapes(&dir, quick)?;

    // b. publish
    check_interrupted()?;
    let p = bench_publish(&dir, publish_bytes, publish_warmups, publish_repeats)?;
    println!(
        "## publish {} (8 float64 columns, 1 batch, in memory), alternating with the baseline; \
         {publish_warmups} warmup, {publish_repeats} repeats each",
        human(p.bytes)
    );
    println!();
    println!("| case | median ms | min ms | max ms | GB/s (median) | n |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, s) in [
        (
            "`dir.create` (dry run, O_EXCL temp, fallocate, write, rename)",
            &p.create,
        ),
        (
            "baseline: O_EXCL new file + write_all (1 MiB chunks) + close",
            &p.baseline,
        ),
    ] {
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
            s.median / 1e3,
            s.min / 1e3,
            s.max / 1e3,
            p.file_bytes as f64 / (s.median * 1e3),
            s.n
        );
    }
    println!();
    let ratio = p.create.median / p.baseline.median;
    if p.bytes == GIB {
        println!(
            "- publish ratio create / baseline (medians, {} bytes each): {ratio:.2}× (target ≤ {TARGET_PUBLISH_RATIO}×): {}",
            p.file_bytes,
            verdict(ratio <= TARGET_PUBLISH_RATIO)
        );
    } else {
        println!(
            "- publish ratio create / baseline (medians, {} bytes each): {ratio:.2}× (quick mode: target is for 1 GiB, not judged)",
            p.file_bytes
        );
    }
    println!();

    report_alloc_publish(&dir, &attach_sizes, quick)
}
