//! `shmarrow inspect NAME`: schema tree, batches, metadata, per-column facts; for a channel,
//! its ring, producer and consumers.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use shmarrow::{AttachOptions, Error, SegmentDir};

use crate::cli::InspectArgs;
use crate::fmt;

pub fn run(
    dir: &SegmentDir,
    args: &InspectArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let segment = match dir.attach_with(&args.name, &AttachOptions::default().strict(args.strict)) {
        Err(Error::IsChannel { .. }) => return channel(dir, &args.name, json, out),
        other => other?,
    };
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
        value["validation"] = json!(segment.validation().to_string());
        value["zero_copy"] = json!(segment.copied_columns().is_empty());
        value["copied_columns"] = json!(segment.copied_columns());
        value["huge_pages"] = json!(dir.huge_pages()?.to_string());
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
    writeln!(
        out,
        "path    {}  (huge pages: {})",
        dir.segment_path(&info.name)?.display(),
        dir.huge_pages()?
    )?;
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
    writeln!(
        out,
        "mode {:o}, uid {}, validated: {}",
        info.mode,
        info.uid,
        segment.validation()
    )?;
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

/// A channel: its ring, lifetime, producer, consumers and schema.
fn channel(
    dir: &SegmentDir,
    name: &str,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let info = dir.channel_info(name)?;
    if json {
        let mut value = fmt::channel_json(&info);
        value["huge_pages"] = json!(dir.huge_pages()?.to_string());
        value["consumer_entries"] = json!(
            info.consumers
                .iter()
                .map(|c| json!({
                    "pid": c.process.pid,
                    "alive": c.alive,
                    "next": (c.next != u64::MAX).then_some(c.next),
                    "missed": c.missed,
                }))
                .collect::<Vec<_>>()
        );
        value["fields"] = json!(
            info.schema
                .fields()
                .iter()
                .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
                .collect::<Vec<_>>()
        );
        return fmt::print_json(out, &value).map(|()| ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "channel {}  ({}: {} slots of {}{}, up to {} consumers)",
        info.name,
        fmt::bytes(info.bytes),
        info.slots,
        fmt::bytes(info.slot_size),
        if info.lossy { ", lossy" } else { "" },
        info.max_consumers
    )?;
    writeln!(
        out,
        "path    {}  (huge pages: {})",
        dir.segment_path(name)?.display(),
        dir.huge_pages()?
    )?;
    match &info.meta {
        Some(meta) => writeln!(
            out,
            "created by pid {}, lifetime {}",
            fmt::creator(Some(meta)),
            meta.lifetime
        )?,
        None => writeln!(out, "no shmarrow.* metadata (creator unknown)")?,
    }
    writeln!(out, "mode {:o}, uid {}", info.mode, info.uid)?;
    writeln!(
        out,
        "producer {}; {} batch(es) sent{}",
        fmt::producer(&info),
        info.sent,
        if info.closed { ", stream closed" } else { "" }
    )?;
    writeln!(out, "\nconsumers: {} live", info.live_consumers())?;
    for c in &info.consumers {
        writeln!(
            out,
            "  pid {:<8} {:<6} next {:>10} missed {}",
            c.process.pid,
            if c.alive { "alive" } else { "dead" },
            if c.next == u64::MAX {
                "-".to_owned()
            } else {
                c.next.to_string()
            },
            c.missed
        )?;
    }
    writeln!(out, "\nschema:")?;
    fmt::schema_tree(out, info.schema.fields(), 0)?;
    writeln!(
        out,
        "\nread it with `shmarrow consume {name}` (or subscribe from Rust or Python)"
    )?;
    Ok(ExitCode::SUCCESS)
}
