//! Helpers shared by the benchmark programs `core`, `compute` and `channel`, each of which
//! includes this file with `#[path = "common.rs"] mod common;`.

// Each bench uses a subset of these helpers; the rest would be dead code in that bench.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use shmarrow::SegmentDir;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

// ---------------------------------------------------------------------------------------------
// Interruption: a signal only sets a flag; the loops check it and unwind through the guards.

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn install_signal_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    // SA_RESTART: a system call in progress (e.g. waiting for a child) is resumed, not failed
    // with EINTR.
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            eprintln!("warning: cannot install a handler for {sig}: {e}");
        }
    }
}

pub fn check_interrupted() -> BenchResult<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted by a signal; cleaning up".into())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Cleanup guards.

/// Removes a segment when dropped (also while unwinding from a panic), if it exists.
pub struct SegmentGuard<'a> {
    pub dir: &'a SegmentDir,
    pub name: String,
}

impl Drop for SegmentGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.dir.remove(&self.name) {
            eprintln!("warning: could not remove segment {}: {e}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting.

pub fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

pub fn human(bytes: usize) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

// ---------------------------------------------------------------------------------------------
// Machine description.

/// The value (after the first `:`, trimmed) of the first line of `path` starting with `prefix`.
pub fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with(prefix))
            .map(|l| l.split_once(':').map_or(l, |(_, v)| v).trim().to_owned())
    })
}

/// The three load averages of `/proc/loadavg`, or `?`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The available parallelism, 0 if unknown.
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The available parallelism as text, `?` if unknown.
pub fn nproc_text() -> String {
    std::thread::available_parallelism()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The kernel release (`/proc/sys/kernel/osrelease`), or `?`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}
