//! `shmarrow gc [--dry-run]`: reclaim what dead processes left behind.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use shmarrow::{GcReason, SegmentDir};

use crate::cli::GcArgs;
use crate::fmt;

pub fn run(
    dir: &SegmentDir,
    args: &GcArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let reclaimed = dir.gc(args.dry_run)?;
    if json {
        let items: Vec<_> = reclaimed
            .iter()
            .map(|r| {
                let (reason, pid) = match r.reason {
                    GcReason::DeadWriter(p) => ("dead_writer", p.pid),
                    GcReason::DeadOwner(p) => ("dead_owner", p.pid),
                    GcReason::DeadChannel(p) => ("dead_channel", p.pid),
                };
                json!({"name": r.file_name.to_string_lossy(), "bytes": r.bytes, "reason": reason, "pid": pid, "removed": !args.dry_run})
            })
            .collect();
        return fmt::print_json(out, &json!(items)).map(|()| ExitCode::SUCCESS);
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for r in &reclaimed {
        let why = match r.reason {
            GcReason::DeadWriter(p) => format!("unfinished publish, writer pid {} is dead", p.pid),
            GcReason::DeadOwner(p) => format!("owner segment, creator pid {} is dead", p.pid),
            GcReason::DeadChannel(p) => format!(
                "owner channel, creator pid {} and its producer are dead, no live consumer",
                p.pid
            ),
        };
        writeln!(
            out,
            "{verb} {} ({}): {why}",
            r.file_name.to_string_lossy(),
            fmt::bytes(r.bytes)
        )?;
    }
    let total: u64 = reclaimed.iter().map(|r| r.bytes).sum();
    writeln!(
        out,
        "{verb} {} file(s), {}",
        reclaimed.len(),
        fmt::bytes(total)
    )?;
    Ok(ExitCode::SUCCESS)
}
