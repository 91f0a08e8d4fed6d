//! `shmarrow inspect NAME`: schema tree, batches, metadata, per-column facts.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use shmarrow::{AttachOptions, SegmentDir};

use crate::cli::InspectArgs;
use crate::fmt;

pub fn run(
    dir: &SegmentDir,
    args: &InspectArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let segment = dir.attach_with(&args.name, &AttachOptions::default().strict(args.strict))?;
    let info = segment.info();
    let columns = segment.columns();
    if json {
        let mut value = fmt::info_json(info);
        value["batches"] = json!(
            info.batches
                .iter()
                .map(|b| json!({"rows": b.rows, "bytes": b.bytes}))
                .collect::<Vec<_>>()
        );
        value["columns"] = json!(
            columns
                .iter()
                .zip(info.schema.fields())
                .map(|(c, f)| json!({
                    "name": c.name,
                    "type": f.data_type().to_string(),
                    "nullable": f.is_nullable(),
                    "null_count": c.null_count,
                    "bytes": c.bytes,
                    "zero_copy": c.zero_copy,
                }))
                .collect::<Vec<_>>()
        );
        value["metadata"] = json!(
            info.schema
                .metadata()
                .iter()
                .collect::<std::collections::BTreeMap<_, _>>()
        );
        value["zero_copy"] = json!(segment.copied_columns().is_empty());
        value["copied_columns"] = json!(segment.copied_columns());
        return fmt::print_json(out, &value).map(|()| ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "segment {}  ({}, {} rows, {} batches)",
        info.name,
        fmt::bytes(info.bytes),
        info.rows(),
        info.batches.len()
    )?;
    writeln!(out, "path    {}", dir.segment_path(&info.name)?.display())?;
    if let Some(meta) = &info.meta {
        writeln!(
            out,
            "created by pid {} ({}), lifetime {}, format v{}",
            meta.creator.pid,
            if meta.creator.is_alive() {
                "alive"
            } else {
                "dead"
            },
            meta.lifetime,
            meta.format_version
        )?;
    } else {
        writeln!(out, "not written by shmarrow (no shmarrow.* metadata)")?;
    }
    writeln!(out, "mode {:o}, uid {}", info.mode, info.uid)?;
    writeln!(out, "\nschema:")?;
    fmt::schema_tree(out, info.schema.fields(), 0)?;
    writeln!(out, "\ncolumns:")?;
    writeln!(
        out,
        "  {:<24} {:>12} {:>10}  ZERO-COPY",
        "NAME", "NULLS", "BYTES"
    )?;
    for c in &columns {
        writeln!(
            out,
            "  {:<24} {:>12} {:>10}  {}",
            c.name,
            c.null_count,
            fmt::bytes(c.bytes),
            if c.zero_copy { "yes" } else { "no (copied)" }
        )?;
    }
    writeln!(out, "\nbatches:")?;
    for (i, b) in info.batches.iter().enumerate() {
        writeln!(
            out,
            "  #{i:<4} {:>12} rows {:>10}",
            b.rows,
            fmt::bytes(b.bytes)
        )?;
    }
    let user_meta: Vec<_> = info.schema.metadata().iter().collect();
    if !user_meta.is_empty() {
        writeln!(out, "\nmetadata:")?;
        for (k, v) in user_meta {
            writeln!(out, "  {k} = {v}")?;
        }
    }
    if segment.copied_columns().is_empty() {
        writeln!(out, "\nzero-copy: every buffer is read in place")?;
    } else {
        writeln!(
            out,
            "\nzero-copy: NO for {} (misaligned or compressed; copied on attach)",
            segment.copied_columns().join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
