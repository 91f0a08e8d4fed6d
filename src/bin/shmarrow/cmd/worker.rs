//! `shmarrow worker ...`: the body of one worker process (started by `reduce`/`map`
//! `--processes`, and `demo`). It attaches by name, works on its own part, and writes only
//! its own rows.

use std::path::Path;
use std::process::{Command, ExitCode};

use shmarrow::partition::ReduceTask;
use shmarrow::{MapOptions, SegmentDir, split_rows};

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
        } => ReduceTask {
            name: name.clone(),
            results: results.clone(),
            columns: columns.clone(),
            worker: args.index,
            workers: args.of,
        }
        .run(dir)?,
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

/// The command that runs `worker` of this binary (`exe`) on `dir`, with `dir`'s validation;
/// the job's arguments follow.
pub fn command(exe: &Path, dir: &SegmentDir) -> Command {
    let mut command = Command::new(exe);
    command
        .arg("--dir")
        .arg(dir.path())
        .arg("--validate")
        .arg(dir.validation().to_string())
        .arg("worker");
    command
}

/// This binary, to start its workers.
pub fn exe() -> anyhow::Result<std::path::PathBuf> {
    anyhow::Context::context(std::env::current_exe(), "locate the shmarrow binary")
}
