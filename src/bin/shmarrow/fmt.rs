//! Output helpers shared by the verbs: human sizes and dates, progress bars, JSON objects,
//! the schema tree.

use std::io::{IsTerminal, Write};

use arrow_schema::{DataType, Field};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use shmarrow::{ChannelInfo, SegmentInfo, SegmentMeta};

/// `1536` -> `1.50 KiB` (a `String`, so that widths apply in tables).
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Milliseconds since the epoch as `2026-11-25 04:30:12Z` (UTC).
pub fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms after the epoch"),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

/// What a progress bar counts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Rows,
    Bytes,
}

/// A progress bar on stderr when it is a terminal, hidden otherwise: `{verb} [bar] done/total`
/// in `unit`, rate and time left; a spinner when `total` is 0 (unknown).
pub fn progress(verb: &str, total: u64, unit: Unit) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = if total == 0 {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(total)
    };
    let counts = match unit {
        Unit::Rows => "{human_pos}/{human_len} rows ({per_sec}, {eta})",
        Unit::Bytes => "{bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    };
    let template = format!("{{spinner}} {verb} [{{bar:40}}] {counts}");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
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
    fn sizes() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.50 KiB");
        assert_eq!(super::bytes(3 << 30), "3.00 GiB");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(super::utc(1_795_580_165_541), "2026-11-25 04:16:05Z");
        assert_eq!(
            super::utc(u64::MAX),
            "18446744073709551615 ms after the epoch"
        );
    }
}
