//! `shmarrow create NAME --schema schemas/X.json --rows N [--seed S]`: generate data of a
//! declarative dataset schema straight into a new segment. Batches are generated in parallel
//! (each from its own seed, so the data does not depend on the thread count) and streamed into
//! the segment in order; private memory holds one wave of batches, never the table.

use std::io::Write;
use std::process::ExitCode;

use rayon::prelude::*;
use shmarrow::SegmentDir;

use crate::cli::CreateArgs;
use crate::dataset::Dataset;
use crate::fmt::{self, Unit};

pub fn run(
    dir: &SegmentDir,
    args: &CreateArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    dir.segment_path(&args.name)?;
    let dataset = Dataset::load(&args.schema)?;
    let options = args.publish.options();
    let mut writer = dir.writer(&args.name, &dataset.schema, &options)?;
    let bar = fmt::progress("generating", args.rows, Unit::Rows);
    let batch_rows = args.batch_rows as u64;
    let batches = args.rows.div_ceil(batch_rows);
    let wave = (rayon::current_num_threads() * 2) as u64;
    let t0 = std::time::Instant::now();
    let header = writer.bytes_written();
    let mut reserved = false;
    for start in (0..batches).step_by(wave as usize) {
        let generated = (start..(start + wave).min(batches))
            .into_par_iter()
            .map(|b| {
                let first = b * batch_rows;
                dataset.batch(
                    args.seed,
                    b,
                    first,
                    batch_rows.min(args.rows - first) as usize,
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for batch in &generated {
            writer.write(batch)?;
            if !reserved {
                // Reserve the whole segment, as estimated from the first batch, before going
                // on: a directory that cannot hold it fails now, not once it is full.
                reserved = true;
                let per_row =
                    (writer.bytes_written() - header).div_ceil(batch.num_rows().max(1) as u64);
                let footer = batches.saturating_mul(64).saturating_add(4096);
                let total = per_row
                    .saturating_mul(args.rows)
                    .saturating_add(header)
                    .saturating_add(footer);
                writer.reserve(total)?;
            }
            bar.inc(batch.num_rows() as u64);
        }
    }
    bar.finish_and_clear();
    let created = writer.finish()?;
    let info = dir.info(created.name())?;
    created.disown();
    if json {
        let mut value = fmt::info_json(&info);
        value["dataset"] = serde_json::json!(dataset.name);
        value["seed"] = serde_json::json!(args.seed);
        fmt::print_json(out, &value)?;
    } else {
        writeln!(
            out,
            "created {} from {} ({}): {} rows, {} batches, {} in {:.1} ms",
            info.name,
            args.schema.display(),
            dataset.name,
            info.rows(),
            info.batches.len(),
            fmt::bytes(info.bytes),
            t0.elapsed().as_secs_f64() * 1e3
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
