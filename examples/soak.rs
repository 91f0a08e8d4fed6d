//! A bounded soak of the segment lifecycle: P processes for S seconds publish, replace, attach,
//! read, reduce and remove segments under a few shared names, checking every read.
//!
//! ```text
//! cargo run --release --example soak -- --seconds 60 --processes 8
//! ```
//!
//! Checks: no torn read (every attached version is internally consistent and its reduce agrees
//! with its contents), no file-descriptor or mapping leak in any worker, and no segment or temp
//! file left in the directory. Prints what each worker did and exits non-zero on any failure.

use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, Int64Array, RecordBatch};
use shmarrow::reduce::{Number, ReduceOptions};
use shmarrow::{CreateOptions, SegmentDir};

const NAMES: u64 = 4;

fn arg(args: &[String], flag: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn count_maps(dir: &str) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().filter(|l| l.contains(dir)).count())
        .unwrap_or(0)
}

/// Version `v` of a table: x[i] = v * 1_000_000 + i, in 1 to 4 batches.
fn table(v: i64, rows: i64) -> Vec<RecordBatch> {
    let batches = 1 + (v % 4);
    (0..batches)
        .map(|b| {
            let range = (rows * b / batches)..(rows * (b + 1) / batches);
            let x = Int64Array::from_iter_values(range.map(|i| v * 1_000_000 + i));
            RecordBatch::try_from_iter([("x", Arc::new(x) as _)]).unwrap()
        })
        .collect()
}

fn worker(dir: &SegmentDir, index: u64, seconds: u64) -> Result<String, String> {
    let dir_label = dir.path().display().to_string();
    let (fds0, maps0) = (count_fds(), count_maps(&dir_label));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut publishes, mut attaches, mut reduces, mut removes, mut missing) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut v = index as i64;
    while Instant::now() < deadline {
        v += 1_000;
        let name = format!("soak-{}", (v as u64 / 7 + index) % NAMES);
        let rows = 1 + (v % 5000);
        let batches = table(v, rows);
        dir.create(
            &name,
            &batches[0].schema(),
            &batches,
            &CreateOptions::default(),
        )
        .map_err(|e| format!("publish: {e}"))?;
        publishes += 1;
        for k in 0..NAMES {
            let name = format!("soak-{k}");
            let segment = match dir.attach(&name) {
                Ok(s) => s,
                Err(shmarrow::Error::NotFound { .. }) => {
                    missing += 1;
                    continue;
                }
                Err(e) => return Err(format!("attach {name}: {e}")),
            };
            attaches += 1;
            // Consistency: one version throughout, rows 0..n in order.
            let mut expected_row = 0i64;
            let mut version = None;
            for batch in segment.batches() {
                let x = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or("x is not int64")?;
                for i in 0..x.len() {
                    let (ver, row) = (x.value(i) / 1_000_000, x.value(i) % 1_000_000);
                    if row != expected_row || version.is_some_and(|w| w != ver) {
                        return Err(format!(
                            "torn read in {name}: row {expected_row} holds {}",
                            x.value(i)
                        ));
                    }
                    version = Some(ver);
                    expected_row += 1;
                }
            }
            let stats = segment
                .reduce(&["x"], &ReduceOptions::default().threads(1))
                .map_err(|e| format!("reduce: {e}"))?;
            reduces += 1;
            let n = expected_row as i128;
            let want = version.map_or(0, |ver| i128::from(ver) * 1_000_000 * n + n * (n - 1) / 2);
            if stats[0].sum != Number::Int(want) || stats[0].count as i128 != n {
                return Err(format!("reduce of {name} disagrees with its contents"));
            }
        }
        if v % 11 == 0 {
            removes += u64::from(dir.remove(&name).map_err(|e| format!("remove: {e}"))?);
        }
    }
    let (fds1, maps1) = (count_fds(), count_maps(&dir_label));
    if fds1 != fds0 || maps1 != maps0 {
        return Err(format!(
            "leak: fds {fds0} -> {fds1}, mappings {maps0} -> {maps1}"
        ));
    }
    Ok(format!(
        "worker {index}: {publishes} publishes, {attaches} attaches (all consistent), {reduces} reduces, {removes} removes, {missing} found removed; fds {fds0} -> {fds1}, mappings {maps0} -> {maps1}"
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let seconds = arg(&args, "--seconds", 60);
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        let dir = SegmentDir::new(&args[i + 2]);
        return match worker(&dir, args[i + 1].parse().unwrap_or(0), seconds) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("worker {}: FAILED: {e}", args[i + 1]);
                ExitCode::FAILURE
            }
        };
    }
    let processes = arg(&args, "--processes", 8);
    let path = format!("/dev/shm/shmarrow-soak-{}", std::process::id());
    std::fs::create_dir_all(&path).expect("create the soak directory");
    println!("soak: {processes} processes x {seconds} s in {path}");
    let t0 = Instant::now();
    let exe = std::env::current_exe().expect("own path");
    let children: Vec<_> = (0..processes)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--seconds",
                    &seconds.to_string(),
                    "--worker",
                    &i.to_string(),
                    &path,
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let mut failed = false;
    for child in children {
        let out = child.wait_with_output().expect("wait");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        failed |= !out.status.success();
    }
    let dir = SegmentDir::new(&path);
    let listing = dir.list().expect("list");
    let temps = listing.temps.len();
    for s in &listing.segments {
        let _ = dir.remove(&s.name);
    }
    let others: Vec<_> = std::fs::read_dir(&path)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let _ = std::fs::remove_dir(&path);
    println!(
        "after {:.1} s: {} segment(s) under the shared names (removed), {temps} temp file(s) left, {} other file(s)",
        t0.elapsed().as_secs_f64(),
        listing.segments.len(),
        others.len()
    );
    if failed || temps > 0 || !others.is_empty() {
        println!("SOAK FAILED");
        return ExitCode::FAILURE;
    }
    println!("soak passed: no torn read, no fd or mapping leak, nothing left behind");
    ExitCode::SUCCESS
}
