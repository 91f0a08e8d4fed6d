//! `shmarrow demo`: the whole data plane in one run, with nothing to set up.
//!
//! 1. Publish a sample table; attach it in this process, from a second process, and from
//!    Python (the `shmarrow` package and stock pyarrow).
//! 2. The lecture's Example 28.1: a float64 array allocated once in shared memory, filled in
//!    place, published, then squared in place by worker processes that attach by name.
//! 3. Example 28.2 and the production pattern: per-worker statistics by worker processes, each
//!    writing its own row of a results segment, merged by the coordinator.
//!
//! Every segment has the `owner` lifetime, so nothing is left behind even if a step fails.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow_array::types::{Float64Type, Int8Type};
use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use shmarrow::partition::{self, ProcessOptions};
use shmarrow::reduce::ReduceOptions;
use shmarrow::{CreateOptions, Lifetime, SegmentDir};

use crate::cli::{DemoArgs, MapArgs, Parallel};
use crate::fmt;

const BATCH_ROWS: usize = 1 << 20;

const PYTHON_STEP: &str = r#"
import sys, time
import numpy as np, pyarrow as pa, pyarrow.compute as pc
import shmarrow
name, array = sys.argv[1], sys.argv[2]
t0 = time.perf_counter(); table = shmarrow.attach(name); dt = time.perf_counter() - t0
print(f"   shmarrow.attach({name!r}): {table.num_rows} rows in {dt * 1e3:.2f} ms, "
      f"sum(price) = {pc.sum(table['price']).as_py():.6f}")
view = shmarrow.column_view(table, "price")[0]
print(f"   shmarrow.column_view: numpy {view.dtype} view of {len(view)} values, writeable={view.flags.writeable}")
stock = pa.ipc.open_file(pa.memory_map(shmarrow.path(name))).read_all()
print(f"   stock pyarrow (no shmarrow): {stock.num_rows} rows, equal to the above: {stock.equals(table)}")
x = shmarrow.column_view(shmarrow.attach(array), "x")
print(f"   the squared array from numpy views: max = {max(v.max() for v in x):.6f}, "
      f"mean = {sum(v.sum() for v in x) / sum(len(v) for v in x):.6f}")
"#;

pub fn run(dir: &SegmentDir, args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let pid = std::process::id();
    let name = format!("shmarrow-demo-{pid}");
    let owner = CreateOptions::default().lifetime(Lifetime::Owner);
    let batches = sample(args.rows)?;
    let schema = batches[0].schema();

    writeln!(
        out,
        "== 1. A table in shared memory, read by many processes without a copy =="
    )?;
    writeln!(
        out,
        "publish: {} rows (int64, float64, int32, dictionary<int8, utf8>, timestamp[us, UTC]) as segment {name:?}",
        args.rows
    )?;
    let t0 = Instant::now();
    let created = dir.create(&name, &schema, &batches, &owner)?;
    writeln!(
        out,
        "   {} written atomically in {:.1} ms -> {}",
        fmt::bytes(created.bytes()),
        ms(t0),
        created.path().display()
    )?;

    let t0 = Instant::now();
    let segment = dir.attach(&name)?;
    let attach_us = t0.elapsed().as_secs_f64() * 1e6;
    let all_in_place = segment
        .batches()
        .iter()
        .flat_map(|b| b.columns())
        .all(|c| segment.contains(&c.to_data()));
    writeln!(
        out,
        "attach in this process: {attach_us:.0} µs, every buffer inside the mapping: {all_in_place}"
    )?;
    drop(segment);

    out.flush()?; // children write to the same terminal
    let exe = std::env::current_exe().context("locate the shmarrow binary")?;
    let t0 = Instant::now();
    let child = Command::new(&exe)
        .arg("--dir")
        .arg(dir.path())
        .args(["--json", "inspect", &name])
        .output()
        .context("run `shmarrow inspect` in a second process")?;
    if !child.status.success() {
        bail!(
            "second process failed: {}",
            String::from_utf8_lossy(&child.stderr).trim()
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&child.stdout)?;
    writeln!(
        out,
        "a second process (`shmarrow inspect --json`, {:.1} ms incl. exec) attached by name: rows={} batches={} zero_copy={}",
        ms(t0),
        report["rows"],
        report["batches"].as_array().map_or(0, Vec::len),
        report["zero_copy"]
    )?;

    // Example 28.1: allocate once, fill in place, publish, square in place by P processes.
    let array = format!("shmarrow-demo-{pid}-array");
    let n = args.array_len;
    let w = args.workers as usize;
    writeln!(
        out,
        "\n== 2. Example 28.1: {n} float64 ({}) squared in place by {w} worker processes ==",
        fmt::bytes(n as u64 * 8)
    )?;
    let t0 = Instant::now();
    let alloc = dir.allocate(
        &array,
        &Schema::new(vec![Field::new("x", DataType::Float64, false)]),
        n,
        &owner,
    )?;
    {
        let mut x = alloc.values_mut::<Float64Type>("x")?;
        let x = &mut x[0];
        let half = n / 2;
        let (a, b) = x.split_at_mut(half);
        std::thread::scope(|s| {
            s.spawn(|| fill(a, 0, n));
            s.spawn(|| fill(b, half, n));
        });
    }
    let array_created = alloc.publish()?;
    writeln!(
        out,
        "allocate + fill by 2 threads + publish: {:.1} ms (the data was written once, in shared memory)",
        ms(t0)
    )?;
    let map = MapArgs {
        name: array.clone(),
        column: "x".into(),
        op: "square".into(),
        args: vec![],
        wrap: false,
        parallel: Parallel {
            threads: None,
            processes: Some(w),
        },
    };
    out.flush()?;
    let t0 = Instant::now();
    super::map::run(dir, &map, false, &mut std::io::sink())?;
    writeln!(
        out,
        "{w} workers attached {array:?} by name and squared disjoint row ranges in place, no locks: {:.1} ms incl. process start; data bytes sent to workers: 0",
        ms(t0)
    )?;

    // Example 28.2 + the production pattern.
    writeln!(
        out,
        "\n== 3. Example 28.2: mean/std/max per worker; each of {w} processes writes its own row of a results segment =="
    )?;
    let data = dir.attach(&array)?;
    let chunks = data.chunk_count("x")?;
    let exe = super::worker::exe()?;
    // The results segment is an owner segment: removed once merged, also on failure.
    let options = ProcessOptions::default();
    let reduced = partition::reduce_by_processes(dir, &array, &["x"], w, &options, |task| {
        let mut worker = super::worker::command(&exe, dir);
        worker.args(task.args());
        worker
    })?;
    writeln!(
        out,
        "   {:>6} {:>12} {:>14} {:>14} {:>14}",
        "WORKER", "COUNT", "MEAN", "STD", "MAX"
    )?;
    // One row per chunk, labelled with its worker: each worker's chunks merged.
    for (worker, stats) in reduced.per_worker.iter().enumerate() {
        let s = &stats[0];
        writeln!(
            out,
            "   {:>6} {:>12} {:>14.6} {:>14.6} {:>14.6}",
            worker,
            s.count,
            s.mean,
            s.std,
            s.max.map_or(f64::NAN, |m| m.as_f64())
        )?;
    }
    let merged = &reduced.stats[0];
    let threads = data.reduce(&["x"], &ReduceOptions::default())?.remove(0);
    writeln!(
        out,
        "merged by the coordinator: mean {:.9} std {:.9} (threads in one process: mean {:.9} std {:.9}); {} chunks; {:.1} ms incl. process start",
        merged.mean,
        merged.std,
        threads.mean,
        threads.std,
        chunks,
        reduced.workers.elapsed.as_secs_f64() * 1e3
    )?;
    writeln!(
        out,
        "bytes between processes: {} of command lines to the workers, {} results segment back (the data: 0)",
        reduced.workers.argv_bytes,
        fmt::bytes(reduced.results_bytes)
    )?;
    drop(data);

    writeln!(out, "\n== 4. Python, in another process ==")?;
    match python(args) {
        Some(python) => {
            writeln!(out, "({})", python.display())?;
            out.flush()?;
            let status = Command::new(&python)
                .args(["-c", PYTHON_STEP, &name, &array])
                .env(shmarrow::DIR_ENV, dir.path())
                .status()
                .with_context(|| format!("run {}", python.display()))?;
            if !status.success() {
                bail!(
                    "the Python step failed ({status}); is the shmarrow package installed in {}?",
                    python.display()
                );
            }
            writeln!(
                out,
                "   (Rust: max = {:.6}, mean = {:.6})",
                threads.max.map_or(f64::NAN, |m| m.as_f64()),
                threads.mean
            )?;
        }
        None => writeln!(
            out,
            "skipped: no interpreter (pass --python, set SHMARROW_PYTHON, or run `make demo`)"
        )?,
    }

    writeln!(
        out,
        "\nAny Arrow reader can attach with no package of ours:"
    )?;
    writeln!(
        out,
        "  python -c 'import pyarrow as pa; print(pa.ipc.open_file(pa.memory_map(\"{}\")).read_all())'",
        created.path().display()
    )?;
    drop((created, array_created));
    writeln!(
        out,
        "removed {name:?}, {array:?} and the results segment (owner lifetime: the creator's handles dropped)"
    )?;
    Ok(ExitCode::SUCCESS)
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// `x[i] = (start + i) / n`: values in [0, 1).
fn fill(x: &mut [f64], start: usize, n: usize) {
    for (i, v) in x.iter_mut().enumerate() {
        *v = (start + i) as f64 / n as f64;
    }
}

fn python(args: &DemoArgs) -> Option<PathBuf> {
    args.python
        .clone()
        .or_else(|| std::env::var_os("SHMARROW_PYTHON").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(".venv/bin/python")).filter(|p| p.exists()))
}

/// Deterministic market-like sample data, in batches of 1 Mi rows.
fn sample(rows: usize) -> anyhow::Result<Vec<RecordBatch>> {
    let sides = Arc::new(arrow_array::StringArray::from(vec!["buy", "sell"]));
    (0..rows.max(1))
        .step_by(BATCH_ROWS)
        .map(|start| {
            let n = BATCH_ROWS.min(rows - start.min(rows));
            let ids = (start..start + n).map(|i| i as i64);
            let columns: Vec<(&str, ArrayRef)> = vec![
                ("id", Arc::new(Int64Array::from_iter_values(ids.clone()))),
                (
                    "price",
                    Arc::new(Float64Array::from_iter_values(
                        ids.clone().map(|i| 100.0 + (i % 1000) as f64 * 0.01),
                    )),
                ),
                (
                    "qty",
                    Arc::new(Int32Array::from_iter_values(
                        ids.clone().map(|i| (i % 97) as i32 + 1),
                    )),
                ),
                (
                    "side",
                    Arc::new(DictionaryArray::<Int8Type>::try_new(
                        ids.clone().map(|i| (i % 2) as i8).collect(),
                        sides.clone(),
                    )?),
                ),
                (
                    "ts",
                    Arc::new(
                        TimestampMicrosecondArray::from_iter_values(
                            ids.map(|i| 1_764_000_000_000_000 + i * 1000),
                        )
                        .with_timezone("UTC"),
                    ),
                ),
            ];
            Ok(RecordBatch::try_from_iter(columns)?)
        })
        .collect()
}
