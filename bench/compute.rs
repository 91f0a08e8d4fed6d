//! Compute benchmarks of shmarrow (Rust side). Run with `cargo bench --bench compute` (or
//! `make bench`).
//!
//! No harness, no criterion: `std::time::Instant`, medians over alternating repeats, figures
//! printed beside their targets as PASS/MISS (never asserted: the machine is shared and noisy).
//!
//! The data: ONE float64 column `x` (non-null) holding 1 GiB of values (128 Mi rows), stored as
//! 8 record batches of 16 Mi rows (128 MiB each), i.e. 4096 reduce chunks of `CHUNK_ROWS` rows.
//! Values `x[i] = 1 + (i mod 1_000_003) / 1000`, so the mean, std, min and max are known.
//!
//! Cases (see `bench/README.md`):
//! - **a. fused stats vs bandwidth reference**, warm mapping (every page touched before timing):
//!   `Segment::reduce` (all ops in one pass) with 1 and 2 threads against a plain sum over the
//!   same mapped bytes with 8 independent `f64` accumulators (1 thread; 2 threads = the slices
//!   split in two halves, `rayon::join` on a 2-thread pool).
//! - **b. `--processes 2` vs `--threads 2`**: the release CLI (`target/release/shmarrow reduce
//!   NAME -c x ... --json`) as a subprocess, start-up and attach included.
//! - **c. cold vs warm**: a new mapping per run (attach again, in this process), then one
//!   reduce, with and without `AttachOptions::populate` (`MADV_POPULATE_READ`), against a
//!   second reduce on the same mapping (warm); plus the CLI in a fresh process with and without
//!   `--populate`.
//!
//! `SHMARROW_BENCH_QUICK=1`: 128 MiB instead of 1 GiB, fewer repeats, targets not judged.
//! `SHMARROW_BENCH_ONLY=a`: case a alone (for working on the kernel).
//! The segment directory is `$SHMARROW_DIR` or `/dev/shm`. Every file this program creates is
//! named `shmarrow-bench-<pid>-...` and removed on success, on error, on panic and on
//! SIGINT/SIGTERM/SIGHUP (checked between steps); a results segment a CLI child leaves behind
//! (`shmarrow-results-<child pid>`) is removed too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use shmarrow::reduce::{CHUNK_ROWS, Number, ReduceOptions, Stats as ColumnStats};
use shmarrow::{AttachOptions, CreateOptions, Segment, SegmentDir};

#[path = "common.rs"]
mod common;
use common::{
    BenchResult, SegmentGuard, Summary, bench_main, check_interrupted, human, loadavg, machine,
    quick, summary_of, verdict,
};

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;
const BATCHES: usize = 8;
const MODULUS: usize = 1_000_003;
const COLUMN: &str = "x";

/// Targets from the issue; printed beside the measurements, never asserted.
const TARGET_STATS_RATIO: f64 = 0.85; // stats throughput / reference throughput
const TARGET_PROCESSES_RATIO: f64 = 0.8; // threads time / processes time

// ---------------------------------------------------------------------------------------------
// Statistics of timings.

/// GB/s (10^9 bytes per second) for `bytes` in `ms` milliseconds.
fn gbps(bytes: usize, ms: f64) -> f64 {
    bytes as f64 / (ms * 1e6)
}

fn rel_diff(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

// ---------------------------------------------------------------------------------------------
// Machine description.

/// The mount line (type and options) of the file system holding `dir`.
fn mount_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/mounts")
        .ok()
        .and_then(|s| {
            s.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 4 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2], f[3]))
                })
                .max_by_key(|(len, _, _)| *len)
                .map(|(_, fs, opts)| format!("{fs} ({opts})"))
        })
        .unwrap_or_else(|| "?".into())
}

fn print_machine(dir: &SegmentDir, quick: bool, exe: &Path) {
    println!(
        "machine: {}; pid {}; mode {}",
        machine(),
        std::process::id(),
        if quick {
            "QUICK (128 MiB, targets not judged)"
        } else {
            "full"
        }
    );
    let built = std::fs::metadata(exe)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or_else(|| "?".into(), |d| format!("{} s ago", d.as_secs()));
    println!(
        "segment dir: {} on {}; CLI: {} (built {built})",
        dir.path().display(),
        mount_of(dir.path()),
        exe.display()
    );
    println!("load average at start: {}", loadavg());
}

// ---------------------------------------------------------------------------------------------
// Data.

fn value(i: usize) -> f64 {
    1.0 + (i % MODULUS) as f64 * 1e-3
}

/// The exact mean of `value(0..rows)`, up to the rounding of 1e-3 and of the final division.
fn expected_mean(rows: usize) -> f64 {
    let (q, r) = ((rows / MODULUS) as u128, (rows % MODULUS) as u128);
    let m = MODULUS as u128;
    let sum = q * (m * (m - 1) / 2) + r * (r.saturating_sub(1)) / 2;
    1.0 + sum as f64 * 1e-3 / rows as f64
}

/// Publish the column `x` (float64, `bytes` of values, `BATCHES` batches) as segment `name`.
fn publish(dir: &SegmentDir, name: &str, bytes: usize) -> BenchResult<u64> {
    let rows = bytes / 8;
    let per_batch = rows / BATCHES;
    let schema = Arc::new(Schema::new(vec![Field::new(
        COLUMN,
        DataType::Float64,
        false,
    )]));
    let batches = (0..BATCHES)
        .map(|b| {
            let start = b * per_batch;
            let values = Float64Array::from_iter_values((start..start + per_batch).map(value));
            RecordBatch::try_new(schema.clone(), vec![Arc::new(values) as ArrayRef])
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_interrupted()?;
    let options = CreateOptions::default().replace(false);
    Ok(dir.create(name, &schema, &batches, &options)?.bytes())
}

/// The values of column `x`, one slice per batch, pointing into the mapping.
fn value_slices(segment: &Segment) -> BenchResult<Vec<&[f64]>> {
    segment
        .batches()
        .iter()
        .map(|b| {
            let array = b
                .column(0)
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or("column x is not float64")?;
            if array.null_count() != 0 || !segment.contains(&array.to_data()) {
                return Err("column x has nulls or is not in the mapping".into());
            }
            Ok(array.values().as_ref())
        })
        .collect()
}

/// Split `slices` into two halves of (almost) equal element counts.
fn split_halves<'a>(slices: &[&'a [f64]]) -> (Vec<&'a [f64]>, Vec<&'a [f64]>) {
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let mut left = total / 2;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for s in slices {
        if left >= s.len() {
            a.push(*s);
            left -= s.len();
        } else {
            let (x, y) = s.split_at(left);
            if !x.is_empty() {
                a.push(x);
            }
            b.push(y);
            left = 0;
        }
    }
    (a, b)
}

/// The memory-bandwidth reference: a plain sum with 8 independent accumulators.
#[inline(never)]
fn plain_sum(slices: &[&[f64]]) -> f64 {
    let mut acc = [0.0f64; 8];
    for s in slices {
        let mut octs = s.chunks_exact(8);
        for o in &mut octs {
            for l in 0..8 {
                acc[l] += o[l];
            }
        }
        for (l, &x) in octs.remainder().iter().enumerate() {
            acc[l] += x;
        }
    }
    acc.iter().sum()
}

fn reduce_x(segment: &Segment, threads: usize) -> BenchResult<ColumnStats> {
    let mut stats = segment.reduce(&[COLUMN], &ReduceOptions::default().threads(threads))?;
    stats
        .pop()
        .ok_or_else(|| "reduce returned no column".into())
}

fn num(n: Option<Number>) -> f64 {
    n.map_or(f64::NAN, Number::as_f64)
}

// ---------------------------------------------------------------------------------------------
// Case a: fused stats vs the bandwidth reference, warm.

#[derive(Clone, Copy, PartialEq)]
enum Warm {
    Stats(usize),
    Reference(usize),
}

fn bench_fused(
    dir: &SegmentDir,
    name: &str,
    bytes: usize,
    warmups: usize,
    repeats: usize,
) -> BenchResult<()> {
    let segment = dir.attach(name)?;
    let slices = value_slices(&segment)?;
    let (lo, hi) = split_halves(&slices);
    let pool2 = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;

    // Touch every page once (this mapping's page tables get filled), untimed.
    let t0 = Instant::now();
    let touch = plain_sum(&slices);
    let touch_ms = t0.elapsed().as_secs_f64() * 1e3;

    let rows = bytes / 8;
    let s = reduce_x(&segment, 2)?;
    let reference = std::hint::black_box(touch);
    println!(
        "result (Segment::reduce, all ops, 2 threads): count {} null_count {} sum {:.6} mean {:.12} \
         var {:.9} std {:.9} min {} max {}",
        s.count,
        s.null_count,
        s.sum.as_f64(),
        s.mean,
        s.var,
        s.std,
        num(s.min),
        num(s.max)
    );
    println!(
        "check: reference sum {reference:.6} (relative difference to reduce's sum {:.1e}); \
         closed-form mean {:.12} (relative difference {:.1e}); rows {rows} (expected {rows}: {})",
        rel_diff(reference, s.sum.as_f64()),
        expected_mean(rows),
        rel_diff(expected_mean(rows), s.mean),
        if s.count as usize == rows {
            "ok"
        } else {
            "WRONG"
        }
    );
    println!("first pass over the fresh mapping (touch, untimed in the table): {touch_ms:.1} ms");
    println!();

    let cases = [
        Warm::Stats(1),
        Warm::Reference(1),
        Warm::Stats(2),
        Warm::Reference(2),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut sink = 0.0;
    for i in 0..warmups + repeats {
        for k in 0..cases.len() {
            check_interrupted()?;
            // Rotate the order every repeat, so drift hits every case alike.
            let c = (k + i) % cases.len();
            let t0 = Instant::now();
            let v = match cases[c] {
                Warm::Stats(t) => reduce_x(&segment, t)?.mean,
                Warm::Reference(1) => plain_sum(&slices),
                Warm::Reference(_) => pool2.install(|| {
                    let (a, b) = rayon::join(|| plain_sum(&lo), || plain_sum(&hi));
                    a + b
                }),
            };
            let elapsed = t0.elapsed();
            sink += std::hint::black_box(v);
            if i >= warmups {
                samples[c].push(elapsed);
            }
        }
    }
    std::hint::black_box(sink);

    println!(
        "| case | threads | median ms | min ms | max ms | GB/s (median) | n |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    let t: Vec<Summary> = samples.iter().map(|s| summary_of(s, 1e3)).collect();
    for (c, case) in cases.iter().enumerate() {
        let (label, threads) = match case {
            Warm::Stats(t) => (
                "`Segment::reduce` (fused: count, sum, mean, var, std, min, max)",
                t,
            ),
            Warm::Reference(t) => ("reference: plain sum, 8 accumulators", t),
        };
        println!(
            "| {label} | {threads} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
            t[c].median,
            t[c].min,
            t[c].max,
            gbps(bytes, t[c].median),
            t[c].n
        );
    }
    println!();
    let judged = bytes == GIB;
    for (threads, s, r) in [(1, 0, 1), (2, 2, 3)] {
        let ratio = t[r].median / t[s].median;
        println!(
            "- {threads} thread(s): stats / reference throughput (medians) = {ratio:.2} \
             (target ≥ {TARGET_STATS_RATIO}): {}",
            if judged {
                verdict(ratio >= TARGET_STATS_RATIO)
            } else {
                "quick mode, not judged"
            }
        );
    }
    println!(
        "- scaling 1 → 2 threads (medians): stats {:.2}×, reference {:.2}×",
        t[0].median / t[2].median,
        t[1].median / t[3].median
    );
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cases b and c (fresh process): the release CLI as a subprocess.

/// `target/release/shmarrow`, built with `cargo build --release` when missing.
fn cli_binary() -> BenchResult<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let exe = target.join("release").join("shmarrow");
    if !exe.is_file() {
        eprintln!("{} is missing: cargo build --release", exe.display());
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "shmarrow", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .status()?;
        if !status.success() || !exe.is_file() {
            return Err(format!("cargo build --release failed ({status})").into());
        }
    }
    Ok(exe)
}

#[derive(Clone, Copy, PartialEq)]
enum Cli {
    Processes2,
    Threads2,
    Threads2Populate,
}

impl Cli {
    fn args(self) -> &'static [&'static str] {
        match self {
            Cli::Processes2 => &["--processes", "2"],
            Cli::Threads2 => &["--threads", "2"],
            Cli::Threads2Populate => &["--threads", "2", "--populate"],
        }
    }
}

/// Run `exe --dir DIR reduce NAME -c x ARGS --json`; the wall time (spawn to exit) and the mean.
fn run_cli(
    exe: &Path,
    dir: &SegmentDir,
    name: &str,
    args: &[&str],
) -> BenchResult<(Duration, f64)> {
    let t0 = Instant::now();
    let child = Command::new(exe)
        .arg("--dir")
        .arg(dir.path())
        .args(["reduce", name, "-c", COLUMN])
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // With --processes the child creates `shmarrow-results-<its pid>` and removes it itself;
    // should it die before, the guard removes what it left (after it has exited).
    let _results = SegmentGuard {
        dir,
        name: format!("shmarrow-results-{}", child.id()),
    };
    let out = child.wait_with_output()?;
    let elapsed = t0.elapsed();
    if !out.status.success() {
        return Err(format!(
            "shmarrow reduce {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mean = json[0]["mean"]
        .as_f64()
        .ok_or_else(|| format!("no mean in the CLI's output: {json}"))?;
    Ok((elapsed, mean))
}

struct CliResult {
    timings: Vec<Summary>,
    means: Vec<f64>,
}

const CLI_CASES: [Cli; 3] = [Cli::Processes2, Cli::Threads2, Cli::Threads2Populate];

fn bench_cli(
    exe: &Path,
    dir: &SegmentDir,
    name: &str,
    warmups: usize,
    repeats: usize,
) -> BenchResult<CliResult> {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); CLI_CASES.len()];
    let mut means = vec![f64::NAN; CLI_CASES.len()];
    for i in 0..warmups + repeats {
        for k in 0..CLI_CASES.len() {
            check_interrupted()?;
            let c = (k + i) % CLI_CASES.len();
            let (elapsed, mean) = run_cli(exe, dir, name, CLI_CASES[c].args())?;
            means[c] = mean;
            if i >= warmups {
                samples[c].push(elapsed);
            }
        }
    }
    Ok(CliResult {
        timings: samples.iter().map(|s| summary_of(s, 1e3)).collect(),
        means,
    })
}

// ---------------------------------------------------------------------------------------------
// Case c: cold (a new mapping per run) vs warm, in this process.

#[derive(Default)]
struct ColdSamples {
    attach: Vec<Duration>,
    reduce: Vec<Duration>,
    total: Vec<Duration>,
    drop: Vec<Duration>,
}

struct ColdResult {
    threads: usize,
    plain: ColdSamples,
    populate: ColdSamples,
    warm: Vec<Duration>,
    faults_plain: u64,
    faults_populate: u64,
    faults_warm: u64,
}

/// Minor page faults of this process so far.
fn minor_faults() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct.
    if unsafe { nix::libc::getrusage(nix::libc::RUSAGE_SELF, &mut usage) } == 0 {
        usage.ru_minflt as u64
    } else {
        0
    }
}

fn bench_cold(
    dir: &SegmentDir,
    name: &str,
    threads: usize,
    warmups: usize,
    repeats: usize,
) -> BenchResult<ColdResult> {
    let mut r = ColdResult {
        threads,
        plain: ColdSamples::default(),
        populate: ColdSamples::default(),
        warm: Vec::new(),
        faults_plain: 0,
        faults_populate: 0,
        faults_warm: 0,
    };
    let mut sink = 0.0;
    for i in 0..warmups + repeats {
        for k in 0..2 {
            check_interrupted()?;
            let populate = (k + i) % 2 == 1;
            let options = AttachOptions::default().populate(populate);
            let f0 = minor_faults();
            let t0 = Instant::now();
            let segment = dir.attach_with(name, &options)?; // a new mapping: empty page tables
            let t1 = Instant::now();
            let cold = reduce_x(&segment, threads)?;
            let t2 = Instant::now();
            let f1 = minor_faults();
            sink += std::hint::black_box(cold.mean);
            if !populate {
                // Warm: the same reduce again on the mapping the cold pass just faulted in.
                let t = Instant::now();
                let warm = reduce_x(&segment, threads)?;
                let warm_time = t.elapsed();
                let f2 = minor_faults();
                sink += std::hint::black_box(warm.mean);
                if warm.mean.to_bits() != cold.mean.to_bits() {
                    return Err("warm and cold reduce disagree".into());
                }
                if i >= warmups {
                    r.warm.push(warm_time);
                    r.faults_warm = f2 - f1;
                }
            }
            let t3 = Instant::now();
            drop(segment); // munmap
            let t4 = Instant::now();
            if i >= warmups {
                let s = if populate {
                    r.faults_populate = f1 - f0;
                    &mut r.populate
                } else {
                    r.faults_plain = f1 - f0;
                    &mut r.plain
                };
                s.attach.push(t1 - t0);
                s.reduce.push(t2 - t1);
                s.total.push(t2 - t0);
                s.drop.push(t4 - t3);
            }
        }
    }
    std::hint::black_box(sink);
    Ok(r)
}

fn print_cold(results: &[ColdResult], bytes: usize) {
    println!(
        "| case | threads | attach ms | reduce ms | attach + reduce ms (median) | min | max | GB/s end to end | drop (munmap) ms | minor faults (last run) | n |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        for (label, s, faults) in [
            (
                "(i) cold: attach + reduce, no populate",
                &r.plain,
                r.faults_plain,
            ),
            (
                "(ii) cold: attach with populate (MADV_POPULATE_READ) + reduce",
                &r.populate,
                r.faults_populate,
            ),
        ] {
            let total = summary_of(&s.total, 1e3);
            println!(
                "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {faults} | {} |",
                r.threads,
                summary_of(&s.attach, 1e3).median,
                summary_of(&s.reduce, 1e3).median,
                total.median,
                total.min,
                total.max,
                gbps(bytes, total.median),
                summary_of(&s.drop, 1e3).median,
                total.n
            );
        }
        let warm = summary_of(&r.warm, 1e3);
        println!(
            "| (iii) warm: reduce again on the same mapping | {} | - | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | - | {} | {} |",
            r.threads,
            warm.median,
            warm.median,
            warm.min,
            warm.max,
            gbps(bytes, warm.median),
            r.faults_warm,
            warm.n
        );
    }
    println!();
    for r in results {
        let plain = summary_of(&r.plain.total, 1e3).median;
        let populate = summary_of(&r.populate.total, 1e3).median;
        let warm = summary_of(&r.warm, 1e3).median;
        println!(
            "- {} thread(s): populate end to end {populate:.1} ms vs no populate {plain:.1} ms \
             ({:.2}×): populate makes the cold case {}; cold/warm: no populate {:.2}×, \
             populate {:.2}×",
            r.threads,
            plain / populate,
            if populate < plain { "FASTER" } else { "SLOWER" },
            plain / warm,
            populate / warm
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    bench_main(run);
}

fn run() -> BenchResult<()> {
    let quick = quick();
    let dir = SegmentDir::from_env();
    let (bytes, warmups, repeats) = if quick {
        (128 * MIB, 1, 3)
    } else {
        (GIB, 1, 9)
    };
    let rows = bytes / 8;
    let exe = cli_binary()?;

    println!("# shmarrow compute benchmark (Rust)");
    println!();
    print_machine(&dir, quick, &exe);
    println!(
        "data: ONE float64 column `x` (non-null), {} of values = {rows} rows, in {BATCHES} record \
         batches of {} rows ({} each) = {} reduce chunks of {CHUNK_ROWS} rows; \
         x[i] = 1 + (i mod {MODULUS}) / 1000",
        human(bytes),
        rows / BATCHES,
        human(bytes / BATCHES),
        rows.div_ceil(CHUNK_ROWS)
    );
    println!(
        "GB/s = 10^9 bytes of values per second; medians over {repeats} repeats after {warmups} \
         warm-up round(s), cases alternating (order rotated every repeat)"
    );
    println!();

    let name = format!("shmarrow-bench-{}-compute", std::process::id());
    let guard = SegmentGuard {
        dir: &dir,
        name: name.clone(),
    };
    let t0 = Instant::now();
    let file_bytes = publish(&dir, &name, bytes)?;
    println!(
        "published {name}: {file_bytes} bytes in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    println!();

    // a.
    check_interrupted()?;
    println!(
        "## a. fused stats vs memory-bandwidth reference, warm mapping (pages touched first), {}",
        human(bytes)
    );
    println!();
    bench_fused(&dir, &name, bytes, warmups, repeats)?;
    if std::env::var("SHMARROW_BENCH_ONLY").is_ok_and(|v| v == "a") {
        println!("load average at end: {}", loadavg());
        return Ok(());
    }

    // b. (and c, fresh process)
    check_interrupted()?;
    let cli = bench_cli(&exe, &dir, &name, warmups, repeats)?;
    println!(
        "## b. `shmarrow reduce NAME -c x --processes 2 --json` vs `--threads 2 --json` \
         (release CLI as a subprocess: wall time from spawn to exit, so process start-up, attach, \
         page faults of a fresh mapping and JSON output are included)"
    );
    println!();
    println!("| CLI arguments | median ms | min ms | max ms | GB/s (median) | mean printed | n |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (c, case) in CLI_CASES.iter().enumerate() {
        let t = &cli.timings[c];
        println!(
            "| `{} --json` | {:.1} | {:.1} | {:.1} | {:.2} | {:.12} | {} |",
            case.args().join(" "),
            t.median,
            t.min,
            t.max,
            gbps(bytes, t.median),
            cli.means[c],
            t.n
        );
    }
    println!();
    let (p, t) = (cli.timings[0].median, cli.timings[1].median);
    let ratio = t / p;
    println!(
        "- threads time / processes time (medians) = {ratio:.2} (target ≥ {TARGET_PROCESSES_RATIO}, \
         processes at least 0.8× the speed of threads): {}",
        if bytes == GIB {
            verdict(ratio >= TARGET_PROCESSES_RATIO)
        } else {
            "quick mode, not judged"
        }
    );
    println!(
        "- means agree: processes vs threads relative difference {:.1e}",
        rel_diff(cli.means[0], cli.means[1])
    );
    println!();

    // c.
    check_interrupted()?;
    println!(
        "## c. cold vs warm, {}: a new mapping per run (attach again in this process), then \
         reduce; warm = a second reduce on that mapping",
        human(bytes)
    );
    println!();
    let cold: Vec<ColdResult> = [1, 2]
        .into_iter()
        .map(|threads| bench_cold(&dir, &name, threads, warmups, repeats))
        .collect::<BenchResult<_>>()?;
    print_cold(&cold, bytes);
    let (plain, populate) = (cli.timings[1].median, cli.timings[2].median);
    println!(
        "- fresh process (CLI, from b): `--threads 2 --populate` {populate:.1} ms vs \
         `--threads 2` {plain:.1} ms ({:.2}×): populate makes it {}",
        plain / populate,
        if populate < plain { "FASTER" } else { "SLOWER" }
    );
    println!();
    println!("load average at end: {}", loadavg());

    drop(guard);
    Ok(())
}
