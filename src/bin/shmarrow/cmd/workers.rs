//! Starting worker processes of this binary and waiting for all of them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// Run `workers` copies of this binary (`--dir DIR worker ARGS --index i --of workers`) and
/// wait for all. Fails naming every worker that failed or was killed, with its last stderr
/// line; never reports a partial result as complete.
pub fn run(dir: &Path, workers: usize, args: &[String]) -> anyhow::Result<std::time::Duration> {
    let exe = std::env::current_exe().context("locate the shmarrow binary")?;
    let t0 = Instant::now();
    let children = (0..workers)
        .map(|i| {
            Command::new(&exe)
                .arg("--dir")
                .arg(dir)
                .arg("worker")
                .args(args)
                .args(["--index", &i.to_string(), "--of", &workers.to_string()])
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
    Ok(t0.elapsed())
}
