//! `shmarrow demo`: the whole data plane in one run, with nothing to set up.
//!
//! Publishes a sample table, attaches it from a second process (this binary's `inspect`) and
//! from Python (the `shmarrow` package and stock pyarrow), prints what each saw, and removes it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow_array::types::Int8Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    TimestampMicrosecondArray,
};
use shmarrow::{CreateOptions, Lifetime, SegmentDir};

use crate::cli::DemoArgs;
use crate::fmt;

const BATCH_ROWS: usize = 1 << 20;

const PYTHON_STEP: &str = r#"
import os, sys, time
import pyarrow as pa, pyarrow.compute as pc
import shmarrow
name = sys.argv[1]
t0 = time.perf_counter(); table = shmarrow.attach(name); dt = time.perf_counter() - t0
print(f"  shmarrow.attach({name!r}): {table.num_rows} rows in {dt * 1e3:.2f} ms, "
      f"sum(price) = {pc.sum(table['price']).as_py():.6f}")
view = shmarrow.column_view(table, "price")[0]
print(f"  shmarrow.column_view: numpy {view.dtype} view of {len(view)} values, writeable={view.flags.writeable}")
stock = pa.ipc.open_file(pa.memory_map(shmarrow.path(name))).read_all()
print(f"  stock pyarrow (no shmarrow): {stock.num_rows} rows, equal to the above: {stock.equals(table)}")
"#;

pub fn run(dir: &SegmentDir, args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let name = format!("shmarrow-demo-{}", std::process::id());
    let batches = sample(args.rows)?;
    let schema = batches[0].schema();
    let expected_sum: f64 = batches
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_any()
                .downcast_ref::<Float64Array>()
                .into_iter()
        })
        .flat_map(|a| a.values().iter().copied())
        .sum();

    writeln!(
        out,
        "1. publish: {} rows (int64, float64, int32, dictionary<int8, utf8>, timestamp[us, UTC]) as segment {name:?}",
        args.rows
    )?;
    let t0 = Instant::now();
    // `owner`: removed when `created` drops at the end, even if a later step fails.
    let created = dir.create(
        &name,
        &schema,
        &batches,
        &CreateOptions::default().lifetime(Lifetime::Owner),
    )?;
    writeln!(
        out,
        "   {} written atomically in {:.1} ms -> {}",
        fmt::bytes(created.bytes()),
        t0.elapsed().as_secs_f64() * 1e3,
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
        "2. attach in this process: {attach_us:.0} µs, every buffer inside the mapping: {all_in_place}"
    )?;

    out.flush()?; // children write to the same terminal
    let exe = std::env::current_exe().context("locate the shmarrow binary")?;
    let t0 = Instant::now();
    let child = Command::new(exe)
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
        "3. a second process (`shmarrow inspect --json`, {:.1} ms incl. exec) attached by name: rows={} batches={} zero_copy={}",
        t0.elapsed().as_secs_f64() * 1e3,
        report["rows"],
        report["batches"].as_array().map_or(0, Vec::len),
        report["zero_copy"]
    )?;

    match python(args) {
        Some(python) => {
            writeln!(
                out,
                "4. Python ({}), same segment, in another process:",
                python.display()
            )?;
            out.flush()?;
            let status = Command::new(&python)
                .args(["-c", PYTHON_STEP, &name])
                .env(shmarrow::DIR_ENV, dir.path())
                .status()
                .with_context(|| format!("run {}", python.display()))?;
            if !status.success() {
                bail!(
                    "the Python step failed ({status}); is the shmarrow package installed in {}?",
                    python.display()
                );
            }
            writeln!(out, "   Rust's sum(price) = {expected_sum:.6}")?;
        }
        None => writeln!(
            out,
            "4. Python step skipped: no interpreter (pass --python, set SHMARROW_PYTHON, or run `make demo`)"
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
    drop(segment);
    drop(created);
    writeln!(
        out,
        "5. removed {name:?} (owner lifetime: the creator's handle dropped)"
    )?;
    Ok(ExitCode::SUCCESS)
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
