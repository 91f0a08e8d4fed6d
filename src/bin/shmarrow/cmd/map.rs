//! `shmarrow map NAME --column C --op OP [ARGS]`: transform values in place, by threads or by
//! worker processes that each take a disjoint row range. Holds the segment's exclusive lock
//! meanwhile, so overlapping `map`s wait for each other.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;
use shmarrow::{MapOp, MapOptions, SegmentDir};

use crate::cli::MapArgs;

pub fn run(
    dir: &SegmentDir,
    args: &MapArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let spec = std::iter::once(args.op.clone())
        .chain(args.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(":");
    let op: MapOp = spec.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let writable = dir.open_writable(&args.name)?;
    let _lock = writable.lock(false)?;
    let rows = writable.segment().num_rows();
    let options = MapOptions::default().wrap(args.wrap);
    let t0 = Instant::now();
    match args.parallel.processes {
        None => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(args.parallel.threads.unwrap_or(0))
                .build()
                .context("start threads")?;
            // The process exits right after: each thread releases its own pages as it goes.
            pool.install(|| {
                writable.map_with(&args.column, op, 0..u64::MAX, &options.release(true))
            })?;
        }
        Some(p) => {
            // Check column, op and (unless wrapping) overflow over all rows here, with the
            // exclusive lock held: a bad one is one clear error before any worker writes,
            // rather than P worker failures after some of them wrote.
            writable.map_with(&args.column, op, 0..u64::MAX, &options.dry_run(true))?;
            let exe = super::worker::exe()?;
            shmarrow::partition::run_workers(p, |i| {
                let mut worker = super::worker::command(&exe, dir);
                worker.args(["map", &args.name, "--column", &args.column, "--op", &spec]);
                if args.wrap {
                    worker.arg("--wrap");
                }
                worker.args(["--index", &i.to_string(), "--of", &p.to_string()]);
                worker
            })?;
        }
    }
    let elapsed = t0.elapsed();
    if json {
        crate::fmt::print_json(
            out,
            &json!({"name": args.name, "column": args.column, "op": spec, "rows": rows, "seconds": elapsed.as_secs_f64()}),
        )?;
    } else {
        writeln!(
            out,
            "{} {}.{}: {rows} rows in {:.1} ms",
            spec,
            args.name,
            args.column,
            elapsed.as_secs_f64() * 1e3
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
