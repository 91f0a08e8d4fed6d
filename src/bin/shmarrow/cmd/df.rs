//! `shmarrow df`: size, used and free of the segment directory's filesystem, and how much of it
//! shmarrow segments (tables and channels) and unfinished publishes hold, and whether the
//! filesystem backs files with huge pages (its tmpfs `huge=` policy).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use shmarrow::SegmentDir;

use crate::fmt;

pub fn run(dir: &SegmentDir, json: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let stat = nix::sys::statvfs::statvfs(dir.path())
        .with_context(|| format!("statvfs {}", dir.path().display()))?;
    let block = stat.fragment_size();
    let size = stat.blocks() * block;
    let free = stat.blocks_available() * block;
    let used = size - stat.blocks_free() * block;
    let listing = dir.list()?;
    let tables: u64 = listing.segments.iter().map(|s| s.bytes).sum();
    let channels: u64 = listing.channels.iter().map(|s| s.bytes).sum();
    let segments = tables + channels;
    let count = listing.segments.len() + listing.channels.len();
    let temps: u64 = listing.temps.iter().map(|t| t.bytes).sum();
    let huge = dir.huge_pages()?;
    if json {
        fmt::print_json(
            out,
            &serde_json::json!({
                "dir": dir.path(), "size": size, "used": used, "free": free,
                "segments": count, "segment_bytes": segments,
                "tables": listing.segments.len(), "table_bytes": tables,
                "channels": listing.channels.len(), "channel_bytes": channels,
                "temps": listing.temps.len(), "temp_bytes": temps,
                "huge_pages": huge.to_string(),
            }),
        )?;
    } else {
        writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>10} {:>5}  {:<11}  {:>10}",
            "DIR", "SIZE", "USED", "FREE", "USE%", "HUGE PAGES", "SEGMENTS"
        )?;
        let pct = if size == 0 {
            0.0
        } else {
            used as f64 * 100.0 / size as f64
        };
        writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>10} {:>4.0}%  {:<11}  {:>10} in {} segment(s), {} of them channel(s)",
            dir.path().display(),
            fmt::bytes(size),
            fmt::bytes(used),
            fmt::bytes(free),
            pct,
            huge,
            fmt::bytes(segments),
            count,
            listing.channels.len()
        )?;
        if !listing.temps.is_empty() {
            writeln!(
                out,
                "{} in {} unfinished publish(es) (`shmarrow gc` reclaims those of dead writers)",
                fmt::bytes(temps),
                listing.temps.len()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
