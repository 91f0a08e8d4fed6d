//! `shmarrow head NAME [-n N] [--columns A,B]`: the first rows as a table.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use shmarrow::SegmentDir;

use crate::cli::HeadArgs;

pub fn run(
    dir: &SegmentDir,
    args: &HeadArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let segment = dir.attach(&args.name)?;
    let schema = segment.schema();
    let indices = args
        .columns
        .iter()
        .map(|c| {
            schema
                .index_of(c)
                .with_context(|| format!("segment {:?} has no column {c:?}", args.name))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut left = args.rows;
    let mut batches = Vec::new();
    for batch in segment.batches() {
        if left == 0 {
            break;
        }
        let batch = batch.slice(0, left.min(batch.num_rows()));
        left -= batch.num_rows();
        batches.push(if indices.is_empty() {
            batch
        } else {
            batch.project(&indices)?
        });
    }
    if json {
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        for b in &batches {
            writer.write(b)?;
        }
        writer.finish()?;
        let rows: serde_json::Value =
            serde_json::from_slice(&writer.into_inner()).unwrap_or(serde_json::json!([]));
        crate::fmt::print_json(out, &rows)?;
    } else {
        writeln!(
            out,
            "{}",
            arrow_cast::pretty::pretty_format_batches(&batches)?
        )?;
        writeln!(
            out,
            "({} of {} rows)",
            args.rows.min(segment.num_rows() as usize),
            segment.num_rows()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
