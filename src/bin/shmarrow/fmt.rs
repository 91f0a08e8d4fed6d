//! Output helpers shared by the verbs: human sizes, JSON objects, the schema tree.

use std::io::Write;

use arrow_schema::{DataType, Field};
use serde_json::{Value, json};
use shmarrow::{ChannelInfo, SegmentInfo, SegmentMeta};

/// `1536` -> `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Milliseconds since the epoch as `2026-11-25 04:30:12Z` (UTC; Hinnant's civil-from-days).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A user id as its name, if it has one.
pub fn user(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// `creator` as `pid 123 (alive)`, or `-` for a file shmarrow did not write.
pub fn creator(meta: Option<&SegmentMeta>) -> String {
    meta.map_or_else(
        || "-".into(),
        |m| {
            let state = if m.creator.is_alive() {
                "alive"
            } else {
                "dead"
            };
            format!("{} ({state})", m.creator.pid)
        },
    )
}

/// The JSON object every reporting verb uses for a segment's summary (stable keys).
pub fn info_json(info: &SegmentInfo) -> Value {
    let meta = info.meta.as_ref();
    json!({
        "name": info.name,
        "bytes": info.bytes,
        "rows": info.rows(),
        "columns": info.schema.fields().len(),
        "batches": info.batches.len(),
        "lifetime": meta.map(|m| m.lifetime.to_string()),
        "created_unix_ms": meta.map(|m| m.created_unix_ms),
        "creator_pid": meta.map(|m| m.creator.pid),
        "creator_alive": meta.map(|m| m.creator.is_alive()),
        "mode": format!("{:o}", info.mode),
        "uid": info.uid,
        "owner": user(info.uid),
    })
}

/// The JSON object `ls` and `inspect` use for a channel's summary (stable keys).
pub fn channel_json(info: &ChannelInfo) -> Value {
    let meta = info.meta.as_ref();
    json!({
        "name": info.name,
        "kind": "channel",
        "bytes": info.bytes,
        "rows": null,
        "slots": info.slots,
        "slot_size": info.slot_size,
        "max_consumers": info.max_consumers,
        "lossy": info.lossy,
        "lifetime": meta.map(|m| m.lifetime.to_string()),
        "created_unix_ms": meta.map(|m| m.created_unix_ms),
        "creator_pid": meta.map(|m| m.creator.pid),
        "creator_alive": meta.map(|m| m.creator.is_alive()),
        "producer_pid": info.producer.map(|p| p.pid),
        "producer_alive": info.producer_alive,
        "closed": info.closed,
        "sent": info.sent,
        "consumers": info.live_consumers(),
        "consumer_pids": info.consumers.iter().filter(|c| c.alive).map(|c| c.process.pid).collect::<Vec<_>>(),
        "mode": format!("{:o}", info.mode),
        "uid": info.uid,
        "owner": user(info.uid),
    })
}

/// A channel's producer as `pid 123 (alive)`, `pid 123 (dead)`, `closed` or `none`.
pub fn producer(info: &ChannelInfo) -> String {
    match info.producer {
        Some(p) if info.producer_alive => format!("{} (alive)", p.pid),
        Some(p) => format!("{} (dead)", p.pid),
        None if info.closed => "closed".into(),
        None => "none".into(),
    }
}

/// Print `value` as pretty JSON. A write error stays an `io::Error` (a closed pipe is then a
/// quiet exit, as for text).
pub fn print_json(out: &mut dyn Write, value: &Value) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// `shmarrow: warning: ...` on stderr (never fails: a closed stderr loses the warning).
pub fn warn(message: &str) {
    let _ = writeln!(std::io::stderr(), "shmarrow: warning: {message}");
}

/// The schema as an indented tree: nested types show their children below them.
pub fn schema_tree(
    out: &mut dyn Write,
    fields: &[std::sync::Arc<Field>],
    depth: usize,
) -> std::io::Result<()> {
    for field in fields {
        let (label, children): (String, Vec<std::sync::Arc<Field>>) = match field.data_type() {
            DataType::Struct(f) => ("struct".into(), f.iter().cloned().collect()),
            DataType::List(f) => ("list".into(), vec![f.clone()]),
            DataType::LargeList(f) => ("large_list".into(), vec![f.clone()]),
            DataType::FixedSizeList(f, n) => (format!("fixed_size_list[{n}]"), vec![f.clone()]),
            DataType::Map(f, _) => ("map".into(), vec![f.clone()]),
            other => (other.to_string(), Vec::new()),
        };
        let null = if field.is_nullable() { "" } else { " not null" };
        writeln!(
            out,
            "{:indent$}{}: {label}{null}",
            "",
            field.name(),
            indent = 2 + depth * 2
        )?;
        schema_tree(out, &children, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(super::utc(1_795_580_165_541), "2026-11-25 04:16:05Z");
    }
}
