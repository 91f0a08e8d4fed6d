//! `shmarrow produce NAME`: create a channel and stream batches into it from a file or a
//! dataset schema, at a given rate, to as many consumers as subscribe.

use std::io::{BufReader, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use shmarrow::{ChannelOptions, CreateOptions, Lifetime, SegmentDir};

use crate::cli::ProduceArgs;
use crate::dataset::Dataset;
use crate::fmt;
use crate::format::{InputFormat, open};

/// Where batches come from.
enum Source {
    /// Batches read from a file once (cycled through when more are asked for).
    File(Vec<RecordBatch>),
    /// Generated on demand.
    Generated(Dataset),
}

pub fn run(
    dir: &SegmentDir,
    args: &ProduceArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    dir.segment_path(&args.name)?;
    let (schema, source): (SchemaRef, Source) = match (&args.from, &args.schema) {
        (Some(path), _) => {
            let batches = read_file(path)?;
            let schema = batches
                .first()
                .map(RecordBatch::schema)
                .with_context(|| format!("{} holds no batches", path.display()))?;
            (schema, Source::File(batches))
        }
        (None, Some(path)) => {
            let dataset = Dataset::load(path)?;
            (dataset.schema.clone(), Source::Generated(dataset))
        }
        (None, None) => bail!("give --from FILE or --schema FILE"),
    };
    let total = args.batches.unwrap_or(match &source {
        Source::File(b) => b.len() as u64,
        Source::Generated(_) => 100,
    });
    // Without --keep the channel is an owner channel: removed when the producer drops (stream
    // ended or failed), and by `gc` if this process is killed.
    let lifetime = if args.keep {
        Lifetime::Persistent
    } else {
        Lifetime::Owner
    };
    let options = ChannelOptions::default()
        .slots(args.slots)
        // Room for at least the consumers it waits for (16 is the library's default).
        .max_consumers(args.consumers.max(16))
        .slot_size(args.slot_size)
        .lossy(args.lossy)
        .create_options(CreateOptions::default().mode(args.mode).lifetime(lifetime));
    let producer = dir.create_producer(&args.name, &schema, &options)?;
    let (sent, rows, bytes, elapsed) = stream(producer, args, &source, total)?;
    let secs = elapsed.as_secs_f64().max(1e-9);
    if json {
        fmt::print_json(
            out,
            &serde_json::json!({
                "name": args.name, "batches": sent, "rows": rows, "bytes": bytes,
                "seconds": secs, "batches_per_second": sent as f64 / secs,
            }),
        )?;
    } else {
        writeln!(
            out,
            "sent {sent} batches ({rows} rows, {}) through {:?} in {:.3} s: {:.0} batches/s, {}/s",
            fmt::bytes(bytes),
            args.name,
            secs,
            sent as f64 / secs,
            fmt::bytes((bytes as f64 / secs) as u64)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn stream(
    mut producer: shmarrow::Producer,
    args: &ProduceArgs,
    source: &Source,
    total: u64,
) -> anyhow::Result<(u64, u64, u64, Duration)> {
    let timeout = args.timeout.0;
    producer.wait_policy().timeout = timeout;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    while producer.consumers() < args.consumers as usize {
        if deadline.is_some_and(|d| Instant::now() > d) {
            bail!(
                "only {} of {} consumers subscribed in time",
                producer.consumers(),
                args.consumers
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let t0 = Instant::now();
    let (mut rows, mut bytes) = (0u64, 0u64);
    for i in 0..total {
        if let Some(rate) = args.rate {
            let due = Duration::try_from_secs_f64(i as f64 / rate)
                .ok()
                .and_then(|after| t0.checked_add(after))
                .with_context(|| format!("--rate {rate}: batch {i} would be due too late"))?;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let generated;
        let batch = match source {
            Source::File(batches) => &batches[(i % batches.len() as u64) as usize],
            Source::Generated(dataset) => {
                let n = args.batch_rows;
                generated = dataset.batch(args.seed, i, i * n as u64, n)?;
                &generated
            }
        };
        producer.send(batch)?;
        rows += batch.num_rows() as u64;
        bytes += batch.get_array_memory_size() as u64;
    }
    let elapsed = t0.elapsed();
    producer.close();
    Ok((total, rows, bytes, elapsed))
}

/// All batches of an IPC file or stream, or a Parquet file (a file is sent from memory: the
/// channel's point is the stream, not the file).
fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<RecordBatch>> {
    let label = path.display().to_string();
    let (format, _) = InputFormat::sniff(Box::new(open(path)?), &label)?;
    // Foreign bytes: IPC through shmarrow's checked decoder, everything under its guard.
    let batches: anyhow::Result<Vec<_>> = shmarrow::guarded(&label, || match format {
        Some(InputFormat::Ipc) => {
            Ok(shmarrow::IpcFile::open(&label, path)?.collect::<Result<_, _>>()?)
        }
        Some(InputFormat::Parquet) => Ok(crate::parquet_pages::reader(open(path)?, &label)?
            .build()?
            .collect::<Result<_, _>>()?),
        _ => Ok(
            shmarrow::ipc::StreamReader::try_new(&label, BufReader::new(open(path)?))
                .with_context(|| {
                    format!("{label} is not an Arrow IPC file or stream, nor Parquet")
                })?
                .collect::<Result<_, _>>()?,
        ),
    });
    batches.with_context(|| format!("read {label}"))
}
