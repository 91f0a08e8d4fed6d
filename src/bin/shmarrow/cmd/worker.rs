//! `shmarrow worker ...`: the body of one worker process (started by `reduce`/`map`
//! `--processes`). It attaches by name, works on its own part, and writes only its own rows.

use std::process::ExitCode;

use shmarrow::{MapOptions, SegmentDir, partition, split_rows};

use crate::cli::{WorkerArgs, WorkerJob};

pub fn run(dir: &SegmentDir, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.index < args.of,
        "worker --index {} is not below --of {}",
        args.index,
        args.of
    );
    match &args.job {
        WorkerJob::Reduce {
            name,
            results,
            columns,
        } => {
            let segment = dir.attach(name)?;
            let out = dir.open_writable(results)?;
            // The rows of each column's chunks follow those of the columns before it.
            let mut first = 0;
            for column in columns {
                let count = segment.chunk_count(column)?;
                let chunks = partition::worker_chunks(count, args.index, args.of);
                let (_, partials) = segment.chunk_partials(column, chunks.clone(), Some(1))?;
                partition::write_partials(&out, first + chunks.start, &partials)?;
                first += count;
            }
        }
        WorkerJob::Map {
            name,
            column,
            op,
            wrap,
        } => {
            let writable = dir.open_writable(name)?;
            let rows = split_rows(writable.segment().num_rows(), args.of)
                .get(args.index)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("worker {} of {}", args.index, args.of))?;
            // `map` makes slices over this worker's rows only: the other workers' rows are
            // never referenced here.
            let options = MapOptions::default().wrap(*wrap);
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()?
                .install(|| writable.map_with(column, *op, rows, &options))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
