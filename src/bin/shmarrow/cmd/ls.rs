//! `shmarrow ls`: the segments in the directory (tables and channels), and unfinished
//! publishes.

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};
use shmarrow::SegmentDir;

use crate::fmt;

pub fn run(dir: &SegmentDir, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let listing = dir.list()?;
    // A segment can vanish or be unreadable between listing and reading: skip it, say why.
    let skip = |name: &str, e: shmarrow::Error| {
        eprintln!("shmarrow: skipping {name}: {:#}", anyhow::Error::from(e));
    };
    let infos: Vec<_> = listing
        .segments
        .iter()
        .filter_map(|s| dir.info(&s.name).map_err(|e| skip(&s.name, e)).ok())
        .collect();
    let channels: Vec<_> = listing
        .channels
        .iter()
        .filter_map(|s| dir.channel_info(&s.name).map_err(|e| skip(&s.name, e)).ok())
        .collect();
    if json {
        let mut items: Vec<Value> = infos.iter().map(fmt::info_json).collect();
        for item in &mut items {
            item["kind"] = json!("segment");
        }
        items.extend(channels.iter().map(fmt::channel_json));
        items.extend(listing.temps.iter().map(|t| {
            json!({
                "name": t.file_name.to_string_lossy(),
                "kind": "temp",
                "segment": t.segment,
                "bytes": t.bytes,
                "rows": null,
                "writer_pid": t.writer.pid,
                "writer_alive": t.writer_alive,
            })
        }));
        return fmt::print_json(out, &Value::Array(items)).map(|()| ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<24} {:>10} {:>12} {:>4} {:>7} {:<20} {:<10} {:<16} {:>4} {:<8}",
        "NAME",
        "SIZE",
        "ROWS",
        "COLS",
        "BATCHES",
        "CREATED",
        "LIFETIME",
        "CREATOR",
        "MODE",
        "OWNER"
    )?;
    for info in &infos {
        writeln!(
            out,
            "{:<24} {:>10} {:>12} {:>4} {:>7} {:<20} {:<10} {:<16} {:>4o} {:<8}",
            info.name,
            fmt::bytes(info.bytes),
            info.rows(),
            info.schema.fields().len(),
            info.batches.len(),
            info.meta
                .map_or("-".into(), |m| fmt::utc(m.created_unix_ms)),
            info.meta.map_or("-".into(), |m| m.lifetime.to_string()),
            fmt::creator(info.meta.as_ref()),
            info.mode,
            fmt::user(info.uid)
        )?;
    }
    if !channels.is_empty() {
        writeln!(
            out,
            "\n{:<24} {:>10} {:>5} {:>10} {:<6} {:<10} {:<16} {:>9} {:>10} {:>4} {:<8}",
            "CHANNEL",
            "SIZE",
            "SLOTS",
            "SLOT SIZE",
            "LOSSY",
            "LIFETIME",
            "PRODUCER",
            "CONSUMERS",
            "SENT",
            "MODE",
            "OWNER"
        )?;
    }
    for c in &channels {
        writeln!(
            out,
            "{:<24} {:>10} {:>5} {:>10} {:<6} {:<10} {:<16} {:>9} {:>10} {:>4o} {:<8}",
            c.name,
            fmt::bytes(c.bytes),
            c.slots,
            fmt::bytes(c.slot_size),
            if c.lossy { "yes" } else { "no" },
            c.meta.map_or("-".into(), |m| m.lifetime.to_string()),
            fmt::producer(c),
            c.live_consumers(),
            c.sent,
            c.mode,
            fmt::user(c.uid)
        )?;
    }
    for t in &listing.temps {
        let state = if t.writer_alive {
            "publish in progress"
        } else {
            "stale: writer dead, `shmarrow gc` removes it"
        };
        writeln!(
            out,
            "{} ({}, for {}, writer pid {}): {state}",
            t.file_name.to_string_lossy(),
            fmt::bytes(t.bytes),
            t.segment,
            t.writer.pid
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
