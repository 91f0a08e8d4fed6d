//! `shmarrow reduce NAME`: fused statistics, by threads or by worker processes.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use shmarrow::reduce::{Number, Op, Partial, ReduceOptions, Stats, merge_in_order};
use shmarrow::{AttachOptions, CreateOptions, Lifetime, Segment, SegmentDir, partition};

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
    let columns: Vec<String> = if args.columns.is_empty() {
        segment.numeric_columns()
    } else {
        args.columns.clone()
    };
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
        Some(p) => by_processes(dir, &segment, args, &columns, p)?,
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
                write!(out, " {:>20}", text(&value(s, *op)))?;
            }
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The lecture's production pattern: a results segment with one row per (column, chunk),
/// P worker processes that attach by name and fill the rows of their chunks, then the merge
/// of every chunk's partial in chunk order, exactly as with threads (so the result is bit for
/// bit the same for any number of processes or threads).
fn by_processes(
    dir: &SegmentDir,
    segment: &Segment,
    args: &ReduceArgs,
    columns: &[String],
    workers: usize,
) -> anyhow::Result<Vec<Stats>> {
    let keep = args.keep_results.is_some();
    let results = args
        .keep_results
        .clone()
        .unwrap_or_else(|| format!("shmarrow-results-{}", std::process::id()));
    let options = CreateOptions::default().replace(false).lifetime(if keep {
        Lifetime::Persistent
    } else {
        Lifetime::Owner
    });
    let chunk_counts = columns
        .iter()
        .map(|c| segment.chunk_count(c))
        .collect::<shmarrow::Result<Vec<_>>>()?;
    // Removed when this handle drops (also on failure), unless kept for inspection.
    let created = partition::allocate_results(dir, &results, workers, &chunk_counts, &options)?;
    let mut worker_args = vec![
        "reduce".to_owned(),
        args.name.clone(),
        "--results".into(),
        results.clone(),
    ];
    for c in columns {
        worker_args.extend(["--column".to_owned(), c.clone()]);
    }
    crate::workers::run(dir, workers, &worker_args)?;
    let rows = partition::read_partials(&dir.attach(&results)?)?;
    if let Some(row) = rows.iter().find(|r| !r.done) {
        bail!(
            "worker {} exited without writing its result for chunk {} of column {}",
            row.worker,
            row.chunk,
            columns[row.column as usize]
        );
    }
    let stats = columns
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let first = partition::first_row(&chunk_counts, c);
            let partials: Vec<Partial> = rows
                .get(first..first + chunk_counts[c])
                .with_context(|| format!("results segment {results:?} lacks rows of {name}"))?
                .iter()
                .map(|r| r.partial)
                .collect();
            // Whether it is an integer column (an empty range: no chunk is reduced here).
            let int = segment.chunk_partials(name, 0..0, None)?.0;
            Ok(merge_in_order(int, &partials).finish(name, args.ddof))
        })
        .collect::<anyhow::Result<_>>()?;
    if keep {
        created.disown();
    }
    Ok(stats)
}

/// A statistic's value: an exact integer, a float, or absent.
enum Val {
    Int(i128),
    Float(f64),
    None,
}

fn value(s: &Stats, op: Op) -> Val {
    let num = |n: Option<Number>| match n {
        Some(Number::Int(i)) => Val::Int(i),
        Some(Number::Float(f)) => Val::Float(f),
        None => Val::None,
    };
    match op {
        Op::Count => Val::Int(s.count.into()),
        Op::NullCount => Val::Int(s.null_count.into()),
        Op::Sum => num(Some(s.sum)),
        Op::Mean => Val::Float(s.mean),
        Op::Var => Val::Float(s.var),
        Op::Std => Val::Float(s.std),
        Op::Min => num(s.min),
        Op::Max => num(s.max),
    }
}

fn text(v: &Val) -> String {
    match v {
        Val::Int(i) => i.to_string(),
        Val::Float(f) => format!("{f}"),
        Val::None => "-".into(),
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
        let (v, text) = match value(s, *op) {
            Val::Int(i) => match (i64::try_from(i), u64::try_from(i)) {
                (Ok(i), _) => (json!(i), None),
                (_, Ok(u)) => (json!(u), None),
                _ => (Value::Null, Some(i.to_string())),
            },
            Val::Float(f) if f.is_finite() => (json!(f), None),
            Val::Float(f) if f.is_nan() => (Value::Null, Some("nan".to_owned())),
            Val::Float(f) => (
                Value::Null,
                Some(if f > 0.0 { "inf" } else { "-inf" }.to_owned()),
            ),
            Val::None => (Value::Null, None),
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
