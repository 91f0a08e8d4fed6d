//! Starting worker processes of this binary and waiting for all of them.

use shmarrow::SegmentDir;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// What a batch of workers cost.
pub struct Report {
    /// Wall time from the first start to the last exit.
    pub elapsed: std::time::Duration,
    /// Bytes sent to the workers: their command lines (no data crosses).
    pub argv_bytes: usize,
}

/// Run `workers` copies of this binary (`--dir DIR worker ARGS --index i --of workers`) and
/// wait for all. Fails naming every worker that failed or was killed, with its last stderr
/// line; never reports a partial result as complete.
pub fn run(dir: &SegmentDir, workers: usize, args: &[String]) -> anyhow::Result<Report> {
    let exe = std::env::current_exe().context("locate the shmarrow binary")?;
    let t0 = Instant::now();
    let mut argv_bytes = 0;
    let children = (0..workers)
        .map(|i| {
            let index = i.to_string();
            let of = workers.to_string();
            argv_bytes += dir.path().as_os_str().len()
                + args.iter().map(String::len).sum::<usize>()
                + index.len()
                + of.len()
                + 32;
            Command::new(&exe)
                .arg("--dir")
                .arg(dir.path())
                .arg("--validate")
                .arg(dir.validation().to_string())
                .arg("worker")
                .args(args)
                .args(["--index", &index, "--of", &of])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("start worker {i}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut failures = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let pid = child.id();
        let out = child
            .wait_with_output()
            .with_context(|| format!("wait for worker {i}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("").trim();
            let how = match std::os::unix::process::ExitStatusExt::signal(&out.status) {
                Some(sig) => format!("was killed by signal {sig}"),
                None => format!("failed ({})", out.status),
            };
            failures.push(format!(
                "worker {i} (pid {pid}) {how}{}",
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                }
            ));
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {workers} worker(s) did not finish, no result: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(Report {
        elapsed: t0.elapsed(),
        argv_bytes,
    })
}
