//! `shmarrow reduce NAME`: fused statistics, by threads or by worker processes.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::{Value, json};
use shmarrow::partition::{self, ProcessOptions};
use shmarrow::reduce::{Number, Op, ReduceOptions, Stats};
use shmarrow::{AttachOptions, SegmentDir};

use crate::cli::ReduceArgs;

pub fn run(
    dir: &SegmentDir,
    args: &ReduceArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let segment = dir.attach_with(
        &args.name,
        &AttachOptions::default().populate(args.populate),
    )?;
    let refs: Vec<&str> = args.columns.iter().map(String::as_str).collect();
    let columns = segment.reduce_columns(&refs);
    if columns.is_empty() {
        bail!(
            "segment {:?} has no top-level integer or float column to reduce; name one with \
             --column (struct children by dotted path, e.g. pos.x)",
            args.name
        );
    }
    let stats = match args.parallel.processes {
        None => {
            let mut options = ReduceOptions::default().ddof(args.ddof);
            if let Some(t) = args.parallel.threads {
                options = options.threads(t);
            }
            let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
            segment.reduce(&refs, &options)?
        }
        Some(p) => {
            // The lecture's production pattern: P worker processes of this binary attach by
            // name and fill their rows of a results segment; merged in chunk order as with
            // threads (bit for bit the same result).
            let exe = super::worker::exe()?;
            let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
            let options = ProcessOptions::default()
                .ddof(args.ddof)
                .keep_results(args.keep_results.clone());
            partition::reduce_by_processes(dir, &args.name, &refs, p, &options, |task| {
                let mut worker = super::worker::command(&exe, dir);
                worker.args(task.args());
                worker
            })?
            .stats
        }
    };
    let ops: &[Op] = if args.ops.is_empty() {
        &Op::ALL
    } else {
        &args.ops
    };
    if json {
        let items: Vec<Value> = stats.iter().map(|s| stats_json(s, ops)).collect();
        crate::fmt::print_json(out, &json!(items))?;
    } else {
        write!(out, "{:<20}", "COLUMN")?;
        for op in ops {
            write!(out, " {:>20}", op.name().to_uppercase())?;
        }
        writeln!(out)?;
        for s in &stats {
            write!(out, "{:<20}", s.column)?;
            for op in ops {
                write!(out, " {:>20}", text(s.get(*op)))?;
            }
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A statistic's value: an exact integer, a float, or absent.
fn text(v: Option<Number>) -> String {
    match v {
        Some(Number::Int(i)) => i.to_string(),
        Some(Number::Float(f)) => format!("{f}"),
        None => "-".into(),
    }
}

/// One object per column with stable keys. Every statistic is a JSON number, or `null`:
/// `null` alone when there is no value (`min` of a column without non-null values); a value
/// JSON numbers cannot hold (NaN, ±infinity, an integer sum beyond 64 bits) is `null` too, and
/// the column's `"special"` object gives it as a string (`"nan"`, `"inf"`, `"-inf"`, the exact
/// digits). `"special"` is present only when not empty.
pub fn stats_json(s: &Stats, ops: &[Op]) -> Value {
    let mut obj = serde_json::Map::new();
    let mut special = serde_json::Map::new();
    obj.insert("column".into(), json!(s.column));
    for op in ops {
        let (v, text) = match s.get(*op) {
            Some(Number::Int(i)) => match (i64::try_from(i), u64::try_from(i)) {
                (Ok(i), _) => (json!(i), None),
                (_, Ok(u)) => (json!(u), None),
                _ => (Value::Null, Some(i.to_string())),
            },
            Some(Number::Float(f)) if f.is_finite() => (json!(f), None),
            Some(Number::Float(f)) if f.is_nan() => (Value::Null, Some("nan".to_owned())),
            Some(Number::Float(f)) => (
                Value::Null,
                Some(if f > 0.0 { "inf" } else { "-inf" }.to_owned()),
            ),
            None => (Value::Null, None),
        };
        obj.insert(op.name().into(), v);
        if let Some(text) = text {
            special.insert(op.name().into(), json!(text));
        }
    }
    if !special.is_empty() {
        obj.insert("special".into(), Value::Object(special));
    }
    Value::Object(obj)
}
