//! `shmarrow worker ...`: the body of one worker process (started by `reduce`/`map`
//! `--processes`, and `demo`). It attaches by name, works on its own part, and writes only
//! its own rows.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::Context;

use shmarrow::partition::ReduceTask;
use shmarrow::{MapOptions, SegmentDir, split_rows};

use crate::cli::{WorkerArgs, WorkerJob};

pub fn run(dir: &SegmentDir, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    if let Some(pid) = args.coordinator {
        // The coordinator holds the segment's lock for its workers (`map`): once it has ended,
        // however it ended, no worker may go on writing. The kernel kills this process when its
        // parent ends from now on; had it ended before, this process has another parent.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .context("ask to be killed with the coordinator")?;
        anyhow::ensure!(
            u32::try_from(nix::unistd::getppid().as_raw()) == Ok(pid),
            "the coordinator (pid {pid}) has ended: nothing done"
        );
    }
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
            // never referenced here. On this thread alone (the processes are the parallelism):
            // no thread is started, so the process's page tables stay single-threaded.
            let options = MapOptions::default().wrap(*wrap);
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .use_current_thread()
                .build()?
                .install(|| writable.map_with(column, *op, rows, &options))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The command that runs `worker` of this binary (`exe`) on `dir`, with `dir`'s validation,
/// killed when this process ends; the job's arguments follow.
pub fn command(exe: &Path, dir: &SegmentDir) -> Command {
    let mut command = Command::new(exe);
    command
        .arg("--dir")
        .arg(dir.path())
        .arg("--validate")
        .arg(dir.validation().to_string())
        .arg("worker")
        .arg("--coordinator")
        .arg(std::process::id().to_string());
    command
}

/// This binary, to start its workers.
pub fn exe() -> anyhow::Result<std::path::PathBuf> {
    anyhow::Context::context(std::env::current_exe(), "locate the shmarrow binary")
}
