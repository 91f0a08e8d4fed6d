//! `shmarrow consume NAME`: receive a channel's batches in order, zero-copy; print them, count
//! them, or reduce a column over the whole stream.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmarrow::reduce::{Partial, reduce_batches};
use shmarrow::{SegmentDir, WaitMode, WaitPolicy};

use crate::cli::ConsumeArgs;
use crate::fmt;

pub fn run(
    dir: &SegmentDir,
    args: &ConsumeArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let timeout = args.timeout.0;
    // The channel may not exist yet: wait for its producer to create it.
    let mut consumer = dir.subscribe_within(&args.name, timeout)?;
    let wait = if args.spin_us > 0 {
        WaitMode::SpinThenBlock(Duration::from_micros(args.spin_us))
    } else {
        WaitMode::Block
    };
    *consumer.wait_policy() = WaitPolicy {
        mode: wait,
        timeout,
    };
    let (mut batches, mut rows, mut missed) = (0u64, 0u64, 0u64);
    let mut partial: Option<Partial> = None;
    let t0 = Instant::now();
    while args.batches.is_none_or(|n| batches < n) {
        let Some(received) = consumer.recv()? else {
            break;
        };
        batches += 1;
        rows += received.batch.num_rows() as u64;
        missed += received.missed;
        if let Some(column) = &args.reduce {
            let p = reduce_batches(&args.name, std::slice::from_ref(&received.batch), column)?;
            partial = Some(partial.map_or(p, |acc| acc.merge(&p)));
        } else if !args.count && !json {
            writeln!(
                out,
                "batch {} ({} rows){}",
                received.seq,
                received.batch.num_rows(),
                if received.missed > 0 {
                    format!(", missed {} before it", received.missed)
                } else {
                    String::new()
                }
            )?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let stats = match (&args.reduce, partial) {
        (Some(column), Some(p)) => Some(p.finish(column, 0)),
        _ => None,
    };
    if json {
        let mut value = serde_json::json!({"name": args.name, "batches": batches, "rows": rows, "missed": missed, "seconds": secs});
        if let Some(s) = &stats {
            value["reduce"] = crate::cmd::reduce::stats_json(s, &shmarrow::reduce::Op::ALL);
        }
        fmt::print_json(out, &value)?;
    } else {
        writeln!(
            out,
            "received {batches} batches, {rows} rows, missed {missed}, in {secs:.3} s"
        )?;
        if let Some(s) = stats {
            writeln!(
                out,
                "{}: count {} nulls {} sum {} mean {} std {} min {} max {}",
                s.column,
                s.count,
                s.null_count,
                s.sum.as_f64(),
                s.mean,
                s.std,
                s.min.map_or(f64::NAN, |m| m.as_f64()),
                s.max.map_or(f64::NAN, |m| m.as_f64())
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
