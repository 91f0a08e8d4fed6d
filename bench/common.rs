//! Helpers shared by the benchmark programs `core`, `compute`, `channel` and `compare_rust`,
//! each of which includes this file with `#[path = "common.rs"] mod common;`.

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

/// A benchmark's `main`: the signal handlers, then `run`; an error is printed, exit 1.
pub fn bench_main(run: fn() -> BenchResult<()>) {
    install_signal_handlers();
    if let Err(e) = run() {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

/// Quick mode: `SHMARROW_BENCH_QUICK` set, not empty and not `0`.
pub fn quick() -> bool {
    std::env::var("SHMARROW_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `CLOCK_MONOTONIC` in ns: one clock for every process on the machine (unlike `Instant`,
/// whose value cannot be sent to another process).
pub fn mono_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC exists on Linux");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
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
// Statistics of repeated measurements.

/// Median (the mean of the middle two for an even count), minimum, maximum and count.
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// The [`Summary`] of `values` (at least one).
pub fn summary(values: &[f64]) -> Summary {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Summary {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    }
}

/// The [`Summary`] of durations in units of `per_second` (1e3: ms, 1e6: µs).
pub fn summary_of(samples: &[std::time::Duration], per_second: f64) -> Summary {
    let values: Vec<f64> = samples
        .iter()
        .map(|d| d.as_secs_f64() * per_second)
        .collect();
    summary(&values)
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

/// `CPU, nproc N, MemTotal M, kernel K`: the start of every benchmark's machine line.
pub fn machine() -> String {
    let mem = first_line_with("/proc/meminfo", "MemTotal:").unwrap_or_else(|| "?".into());
    let cpu = first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into());
    format!(
        "{cpu}, nproc {}, MemTotal {mem}, kernel {}",
        nproc_text(),
        kernel_release()
    )
}

/// The kernel release (`/proc/sys/kernel/osrelease`), or `?`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}
