//! Ctrl-C, SIGTERM and SIGHUP during a verb that writes files (`create`, `import`, `pull`,
//! `export`): the files it was writing are removed before the process ends, so an interrupted
//! command leaves nothing behind (not even a temp file for `gc`).

use std::io::Write;

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};

/// Block SIGINT, SIGTERM and SIGHUP in this thread, so in every thread started after it, and
/// start one thread that waits for them: on the first, it removes every temp file of this
/// process ([`shmarrow::abort_publishes`]) and exits with 128 + the signal number, as a shell
/// reports a process killed by it. Call before any other thread starts.
pub fn remove_temps_on_signals() -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set.thread_block().context("block signals")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(signal) = set.wait() else { return };
            let removed = shmarrow::abort_publishes();
            let _ = writeln!(
                std::io::stderr(),
                "shmarrow: interrupted by {signal}: nothing was published{}",
                if removed.is_empty() {
                    String::new()
                } else {
                    format!(" ({} temp file(s) removed)", removed.len())
                }
            );
            std::process::exit(128 + signal as i32);
        })
        .context("start the signal thread")?;
    Ok(())
}
