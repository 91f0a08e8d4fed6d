//! Channel benchmarks of shmarrow (Rust side). Run with `cargo bench --bench channel` (or
//! `make bench`).
//!
//! No harness, no criterion: medians over alternating rounds, figures printed beside their
//! targets as PASS/MISS (never asserted: the machine is shared and noisy). A wrong batch (out of
//! order, wrong contents, wrong sum), unlike a slow one, is an error: the program exits non-zero.
//!
//! Producer and consumer run in SEPARATE PROCESSES: this program is the producer; for every
//! run it re-executes itself (`std::env::current_exe()`, with `SHMARROW_CHANNEL_BENCH_ROLE=
//! consumer`) as the consumer, which subscribes by name and reports what it measured on stdout.
//!
//! Cases (see `bench/README.md`):
//! - **a. latency**, small batches (8 rows, 4 columns: `seq` int64, `sent_ns` int64, `x` and `y`
//!   float64): the producer stores `CLOCK_MONOTONIC` (ns) in `sent_ns` just before building and
//!   sending each batch; the consumer takes `CLOCK_MONOTONIC` right after `recv()` returns and
//!   keeps `now - sent_ns`. The producer paces its sends (it sleeps 20 µs after each send,
//!   less than the spin; a second, sparse, case sleeps 200 µs, more than the spin; timer slack
//!   1 ns), so the figures are one-way latencies, not queueing. Consumer `WaitMode::Block`
//!   against `WaitMode::SpinThenBlock(50 µs)`.
//! - **b. throughput**, the same small batches, the producer sending as fast as it can: batches/s
//!   from the producer's first timed send to the consumer's receipt of the last batch (both
//!   `CLOCK_MONOTONIC`, which is one clock for every process), both ends `Block` against both
//!   ends `SpinThenBlock(50 µs)`.
//! - **c. 16 MiB batches** (2 float64 columns of 1 Mi rows), 4 slots of 17 MiB, both ends
//!   `Block`: GB/s end to end, consumer only receiving (decoding in place, reading one value; the
//!   judged row) and consumer summing column `a` (a reference), each in one channel run whose
//!   timed batches go in rounds. Before each round's batches, this process times as many plain
//!   memcpys of the same 16 MiB into 4 warm buffers in turn (a reference), then into one warm
//!   16 MiB buffer (the baseline; once more after the last round), so every round's batches run
//!   between two baselines: the verdict is the median of the per-round ratios channel / mean of
//!   those two baselines (this VM's memory bandwidth moves between runs and within one, and a
//!   ratio of medians taken minutes apart moves with it).
//!
//! `SHMARROW_BENCH_QUICK=1`: fewer batches and rounds. `SHMARROW_BENCH_CASES=a,b,c` (any of
//! them, comma-separated; default all): only these cases. The segment directory is `$SHMARROW_DIR`
//! or `/dev/shm`. Every channel this program creates is named `shmarrow-bench-<pid>-chan-...`
//! and removed on success, on error, on panic and on SIGINT/SIGTERM/SIGHUP (checked between
//! steps and every 256 batches); a consumer child still running is killed (by its pid) and
//! reaped.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use shmarrow::{ChannelOptions, Producer, SegmentDir, WaitMode, WaitPolicy};

#[path = "common.rs"]
mod common;
use common::{
    BenchResult, SegmentGuard, bench_main, check_interrupted, loadavg, machine, mono_ns, nproc,
    quick, summary, verdict,
};

const MIB: usize = 1 << 20;

/// The consumer child is this program with this variable set.
const ROLE_ENV: &str = "SHMARROW_CHANNEL_BENCH_ROLE";

/// Small batches: rows per batch, slots and slot size.
const SMALL_ROWS: usize = 8;
const SMALL_SLOTS: u32 = 64;
const SMALL_SLOT_SIZE: u64 = 4096;
/// Large batches: 2 float64 columns of 1 Mi rows = 16 MiB of values.
const LARGE_ROWS: usize = MIB;
const LARGE_BYTES: usize = 2 * 8 * LARGE_ROWS;
const LARGE_SLOTS: u32 = 4;
const LARGE_SLOT_SIZE: u64 = 17 * MIB as u64;

/// The spin of `WaitMode::SpinThenBlock` measured here.
const SPIN: Duration = Duration::from_micros(50);
/// Latency pacing: the producer sleeps this long after each send (dense: shorter than the spin,
/// so a spinning consumer catches every batch while spinning; sparse: longer than the spin).
/// The producer's timer slack is set to 1 ns, so a sleep lasts about what it asks for.
const DENSE_SLEEP: Duration = Duration::from_micros(20);
const SPARSE_SLEEP: Duration = Duration::from_micros(200);
/// Idle time between the warm-up batches and the timed ones (the consumer drains the ring).
const SETTLE: Duration = Duration::from_millis(20);
/// Longest a side waits for the other before the run is an error.
const PATIENCE: Duration = Duration::from_secs(30);

/// Targets from the issue; printed beside the measurements, never asserted.
const TARGET_P50_US: f64 = 2.0;
const TARGET_BATCHES_PER_S: f64 = 1_000_000.0;
const TARGET_MEMCPY_RATIO: f64 = 0.9;

// ---------------------------------------------------------------------------------------------
// Cleanup guards.

/// Kills (by its pid) and reaps the consumer child when dropped, unless it was collected.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clock, statistics, machine.

/// Nearest-rank percentile `p` (0..=100) of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_machine(dir: &SegmentDir, quick: bool) {
    println!(
        "machine: {}; dir {}; pid {}; mode {}",
        machine(),
        dir.path().display(),
        std::process::id(),
        if quick {
            "QUICK (fewer batches)"
        } else {
            "full"
        }
    );
    if nproc() <= 2 {
        println!(
            "note: only {} core(s): the producer and the consumer take one each, so a spinning \
             side competes with the other side and with everything else on the machine \
             (the kernel, other tenants)",
            nproc()
        );
    }
    println!("load average at start: {}", loadavg());
}

fn wait_name(mode: WaitMode) -> String {
    match mode {
        WaitMode::Block => "Block".into(),
        WaitMode::SpinThenBlock(d) => format!("SpinThenBlock({} µs)", d.as_micros()),
    }
}

// ---------------------------------------------------------------------------------------------
// Data.

fn small_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("sent_ns", DataType::Int64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
    ]))
}

fn large_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("a", DataType::Float64, false),
        Field::new("b", DataType::Float64, false),
    ]))
}

/// `a[i] = i`, `b[i] = i / 2`: every partial sum of `a` is an integer below 2^53, so the sum is
/// exact in any order.
fn large_batch() -> BenchResult<RecordBatch> {
    let a = Float64Array::from_iter_values((0..LARGE_ROWS).map(|i| i as f64));
    let b = Float64Array::from_iter_values((0..LARGE_ROWS).map(|i| i as f64 * 0.5));
    Ok(RecordBatch::try_new(
        large_schema(),
        vec![Arc::new(a) as ArrayRef, Arc::new(b) as ArrayRef],
    )?)
}

fn large_sum_expected() -> f64 {
    let n = LARGE_ROWS as f64;
    n * (n - 1.0) / 2.0
}

/// Sum with 8 independent accumulators (memory-bound, not latency-bound).
fn sum8(values: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f64>() + rest.iter().sum::<f64>()
}

// ---------------------------------------------------------------------------------------------
// The consumer (child process).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Small batches; keep `now - sent_ns` of each timed batch.
    Latency,
    /// Small batches; only check them.
    Throughput,
    /// 16 MiB batches; decode in place and read one value.
    LargeRecv,
    /// 16 MiB batches; sum column `a`.
    LargeSum,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Latency => "latency",
            Kind::Throughput => "throughput",
            Kind::LargeRecv => "large-recv",
            Kind::LargeSum => "large-sum",
        }
    }

    fn parse(s: &str) -> BenchResult<Self> {
        Ok(match s {
            "latency" => Kind::Latency,
            "throughput" => Kind::Throughput,
            "large-recv" => Kind::LargeRecv,
            "large-sum" => Kind::LargeSum,
            other => return Err(format!("unknown consumer kind {other:?}").into()),
        })
    }
}

fn wait_arg(mode: WaitMode) -> String {
    match mode {
        WaitMode::Block => "block".into(),
        WaitMode::SpinThenBlock(d) => format!("spin{}", d.as_nanos()),
    }
}

fn parse_wait(s: &str) -> BenchResult<WaitMode> {
    if s == "block" {
        return Ok(WaitMode::Block);
    }
    let ns: u64 = s
        .strip_prefix("spin")
        .ok_or_else(|| format!("unknown wait mode {s:?}"))?
        .parse()?;
    Ok(WaitMode::SpinThenBlock(Duration::from_nanos(ns)))
}

/// Child: `exe DIR NAME KIND WAIT TOTAL WARM`. Prints `done RECEIVED ERRORS LAST_NS`, then one
/// line per timed batch: its one-way latency in ns (latency), its receipt time (`CLOCK_MONOTONIC`
/// ns; 16 MiB batches).
fn consumer_main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, name, kind, wait, total, warm] = args.as_slice() else {
        return Err(
            format!("consumer: expected DIR NAME KIND WAIT TOTAL WARM, got {args:?}").into(),
        );
    };
    let kind = Kind::parse(kind)?;
    let wait = parse_wait(wait)?;
    let total: u64 = total.parse()?;
    let warm: u64 = warm.parse()?;
    let dir = SegmentDir::new(PathBuf::from(dir));
    let mut consumer = dir.subscribe(name)?;
    *consumer.wait_policy() = WaitPolicy {
        mode: wait,
        timeout: Some(PATIENCE),
    };
    let timed = kind != Kind::Throughput;
    let mut samples: Vec<u64> = Vec::with_capacity(if timed {
        total.saturating_sub(warm) as usize
    } else {
        0
    });
    let expected_sum = large_sum_expected();
    let (mut received, mut errors, mut last_ns) = (0u64, 0u64, 0u64);
    let mut first_error: Option<String> = None;
    let mut error = |what: String, errors: &mut u64| {
        *errors += 1;
        first_error.get_or_insert(what);
    };
    while let Some(r) = consumer.recv()? {
        // The clock is read only where a figure needs it (a read costs about as much as a
        // small batch's hand-over): on receipt of a timed batch (latency, 16 MiB), and of the
        // last one.
        let now = if timed || received + 1 == total {
            mono_ns()
        } else {
            0
        };
        let batch = &r.batch;
        if r.seq != received || r.missed != 0 {
            error(
                format!(
                    "batch {received}: seq {} missed {} (not in order)",
                    r.seq, r.missed
                ),
                &mut errors,
            );
        }
        match kind {
            Kind::Latency | Kind::Throughput => {
                let column = |i: usize| batch.column(i).as_any().downcast_ref::<Int64Array>();
                match (column(0), column(1)) {
                    (Some(seq), Some(sent)) if batch.num_rows() == SMALL_ROWS => {
                        if seq.values().iter().any(|&s| s != received as i64) {
                            error(format!("batch {received}: wrong seq column"), &mut errors);
                        }
                        if kind == Kind::Latency && received >= warm {
                            samples.push(now.saturating_sub(sent.value(0) as u64));
                        }
                    }
                    _ => error(format!("batch {received}: wrong shape"), &mut errors),
                }
            }
            Kind::LargeRecv | Kind::LargeSum => {
                match batch.column(0).as_any().downcast_ref::<Float64Array>() {
                    Some(a) if a.len() == LARGE_ROWS => {
                        if kind == Kind::LargeSum {
                            let sum = sum8(std::hint::black_box(a.values()));
                            if sum != expected_sum {
                                error(
                                    format!("batch {received}: sum {sum} != {expected_sum}"),
                                    &mut errors,
                                );
                            }
                        } else if a.value(LARGE_ROWS - 1) != (LARGE_ROWS - 1) as f64 {
                            error(format!("batch {received}: wrong last value"), &mut errors);
                        }
                    }
                    _ => error(format!("batch {received}: wrong shape"), &mut errors),
                }
                if received >= warm {
                    samples.push(now);
                }
            }
        }
        drop(r); // release the slot
        received += 1;
        if received == total {
            last_ns = now;
        }
    }
    if received != total {
        error(
            format!("received {received} batches, expected {total}"),
            &mut errors,
        );
    }
    if let Some(e) = &first_error {
        eprintln!("consumer: {errors} error(s); first: {e}");
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(out, "done {received} {errors} {last_ns}")?;
    for l in &samples {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The producer side of one run (this process).

#[derive(Debug, Clone, Copy)]
enum Pacing {
    /// As fast as possible.
    Flat,
    /// Sleep this long after each send (the producer does not compete for a core meanwhile).
    Sleep(Duration),
}

struct RunSpec {
    kind: Kind,
    consumer_wait: WaitMode,
    producer_wait: WaitMode,
    warm: usize,
    timed: usize,
    /// The timed batches go in chunks of this many (at most `timed`), each after a pause.
    chunk: usize,
    pacing: Pacing,
}

struct RunOutcome {
    /// From the producer's first timed send to the consumer's receipt of the last batch.
    end_to_end: Duration,
    /// From the producer's first timed send to the return of its last send.
    producer: Duration,
    /// One-way latencies in ns (latency runs), receipt times (16 MiB runs).
    samples: Vec<u64>,
    /// `CLOCK_MONOTONIC` ns just before the first send of each chunk.
    chunk_starts: Vec<u64>,
}

struct Ctx<'a> {
    dir: &'a SegmentDir,
    exe: PathBuf,
    run_id: usize,
}

impl Ctx<'_> {
    /// One run; `before_chunk(k)` is called before the pause that precedes chunk `k` of the
    /// timed batches (the consumer has received everything sent before it by then).
    fn run(
        &mut self,
        spec: &RunSpec,
        large: Option<&RecordBatch>,
        before_chunk: &mut dyn FnMut(usize) -> BenchResult<()>,
    ) -> BenchResult<RunOutcome> {
        check_interrupted()?;
        self.run_id += 1;
        let name = format!(
            "shmarrow-bench-{}-chan-{}-{}",
            std::process::id(),
            spec.kind.arg(),
            self.run_id
        );
        let (schema, options) = match spec.kind {
            Kind::Latency | Kind::Throughput => (
                small_schema(),
                ChannelOptions::default()
                    .slots(SMALL_SLOTS)
                    .slot_size(SMALL_SLOT_SIZE),
            ),
            Kind::LargeRecv | Kind::LargeSum => (
                large_schema(),
                ChannelOptions::default()
                    .slots(LARGE_SLOTS)
                    .slot_size(LARGE_SLOT_SIZE),
            ),
        };
        let _segment = SegmentGuard {
            dir: self.dir,
            name: name.clone(),
        };
        self.dir.create_channel(&name, &schema, &options)?;
        let mut producer = self.dir.producer(&name)?;
        *producer.wait_policy() = WaitPolicy {
            mode: spec.producer_wait,
            timeout: Some(PATIENCE),
        };
        let total = spec.warm + spec.timed;
        let mut child = ChildGuard(Some(
            Command::new(&self.exe)
                .env(ROLE_ENV, "consumer")
                .arg(self.dir.path())
                .arg(&name)
                .arg(spec.kind.arg())
                .arg(wait_arg(spec.consumer_wait))
                .arg(total.to_string())
                .arg(spec.warm.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?,
        ));
        let deadline = Instant::now() + PATIENCE;
        while producer.consumers() < 1 {
            check_interrupted()?;
            if let Some(status) = child.0.as_mut().expect("running").try_wait()? {
                return Err(format!("consumer exited before subscribing ({status})").into());
            }
            if Instant::now() > deadline {
                return Err("the consumer did not subscribe within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }

        let mut chunk_starts = Vec::new();
        for i in 0..total {
            if i >= spec.warm && (i - spec.warm).is_multiple_of(spec.chunk.max(1)) {
                before_chunk(chunk_starts.len())?;
                std::thread::sleep(SETTLE);
                chunk_starts.push(mono_ns());
            }
            if i % 256 == 0 {
                check_interrupted()?;
            }
            match large {
                Some(batch) => producer.send(batch)?,
                None => send_small(&mut producer, i)?,
            }
            if let Pacing::Sleep(d) = spec.pacing {
                std::thread::sleep(d);
            }
        }
        let t_sent = mono_ns();
        producer.close();

        let out = child.0.take().expect("running").wait_with_output()?;
        if !out.status.success() {
            return Err(format!("consumer failed ({})", out.status).into());
        }
        let text = String::from_utf8(out.stdout)?;
        let mut lines = text.lines();
        let head: Vec<u64> = lines
            .next()
            .and_then(|l| l.strip_prefix("done "))
            .ok_or("consumer printed no result")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [received, errors, last_ns] = head.as_slice() else {
            return Err(format!("bad consumer result {head:?}").into());
        };
        if *errors != 0 || *received != total as u64 {
            return Err(format!(
                "consumer received {received} of {total} batches with {errors} wrong ones \
                 (a correctness error, not a slow run)"
            )
            .into());
        }
        let samples = lines.map(str::parse).collect::<Result<Vec<u64>, _>>()?;
        let t_first = *chunk_starts.first().ok_or("no timed batch")?;
        Ok(RunOutcome {
            end_to_end: Duration::from_nanos(last_ns.saturating_sub(t_first)),
            producer: Duration::from_nanos(t_sent - t_first),
            samples,
            chunk_starts,
        })
    }
}

/// Build small batch `i` (the timestamp is taken just before the `sent_ns` column is built) and
/// send it.
fn send_small(producer: &mut Producer, i: usize) -> BenchResult<()> {
    thread_local! {
        static FIXED: (SchemaRef, ArrayRef, ArrayRef) = (
            small_schema(),
            Arc::new(Float64Array::from_iter_values((0..SMALL_ROWS).map(|r| r as f64))),
            Arc::new(Float64Array::from_iter_values((0..SMALL_ROWS).map(|r| r as f64 * 0.25))),
        );
    }
    let (schema, x, y) = FIXED.with(|f| f.clone());
    let seq: ArrayRef = Arc::new(Int64Array::from(vec![i as i64; SMALL_ROWS]));
    let now = mono_ns() as i64;
    let sent: ArrayRef = Arc::new(Int64Array::from(vec![now; SMALL_ROWS]));
    let batch = RecordBatch::try_new(schema, vec![seq, sent, x, y])?;
    producer.send(&batch)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// a. latency

struct LatencyResult {
    mode: WaitMode,
    sorted: Vec<u64>,
    round_p50_us: Vec<f64>,
    /// Mean time between two sends of each round (µs), as achieved by the producer.
    interval_us: Vec<f64>,
}

fn bench_latency(
    ctx: &mut Ctx,
    pacing: Pacing,
    rounds: usize,
    per_round: usize,
    warm: usize,
) -> BenchResult<Vec<LatencyResult>> {
    let modes = [WaitMode::Block, WaitMode::SpinThenBlock(SPIN)];
    let mut results: Vec<LatencyResult> = modes
        .iter()
        .map(|&mode| LatencyResult {
            mode,
            sorted: Vec::new(),
            round_p50_us: Vec::new(),
            interval_us: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..modes.len() {
            let m = (k + round) % modes.len(); // alternate which mode goes first
            let out = ctx.run(
                &RunSpec {
                    kind: Kind::Latency,
                    consumer_wait: modes[m],
                    producer_wait: WaitMode::Block,
                    warm,
                    timed: per_round,
                    chunk: per_round,
                    pacing,
                },
                None,
                &mut |_| Ok(()),
            )?;
            let mut lat = out.samples;
            if lat.len() != per_round {
                return Err(format!("{} latencies, expected {per_round}", lat.len()).into());
            }
            lat.sort_unstable();
            results[m]
                .round_p50_us
                .push(percentile(&lat, 50.0) as f64 / 1e3);
            results[m].sorted.extend_from_slice(&lat);
            results[m]
                .interval_us
                .push(out.producer.as_secs_f64() * 1e6 / per_round as f64);
        }
    }
    for r in &mut results {
        r.sorted.sort_unstable();
    }
    Ok(results)
}

fn print_latency(results: &[LatencyResult]) {
    println!(
        "| consumer wait mode | p50 µs | p99 µs | p99.9 µs | max µs | p50 of each round (min–max) µs | \
         mean send interval µs | batches |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let us = |p: f64| percentile(&r.sorted, p) as f64 / 1e3;
        let rounds = summary(&r.round_p50_us);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}–{:.1} | {:.1} | {} |",
            wait_name(r.mode),
            us(50.0),
            us(99.0),
            us(99.9),
            *r.sorted.last().expect("samples") as f64 / 1e3,
            rounds.min,
            rounds.max,
            summary(&r.interval_us).median,
            r.sorted.len()
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// b. throughput

struct RateResult {
    mode: WaitMode,
    end_to_end: Vec<f64>,
    producer: Vec<f64>,
}

fn bench_throughput(
    ctx: &mut Ctx,
    rounds: usize,
    per_round: usize,
    warm: usize,
) -> BenchResult<Vec<RateResult>> {
    let modes = [WaitMode::Block, WaitMode::SpinThenBlock(SPIN)];
    let mut results: Vec<RateResult> = modes
        .iter()
        .map(|&mode| RateResult {
            mode,
            end_to_end: Vec::new(),
            producer: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..modes.len() {
            let m = (k + round) % modes.len();
            let out = ctx.run(
                &RunSpec {
                    kind: Kind::Throughput,
                    consumer_wait: modes[m],
                    producer_wait: modes[m],
                    warm,
                    timed: per_round,
                    chunk: per_round,
                    pacing: Pacing::Flat,
                },
                None,
                &mut |_| Ok(()),
            )?;
            results[m]
                .end_to_end
                .push(per_round as f64 / out.end_to_end.as_secs_f64());
            results[m]
                .producer
                .push(per_round as f64 / out.producer.as_secs_f64());
        }
    }
    Ok(results)
}

// ---------------------------------------------------------------------------------------------
// c. 16 MiB batches against memcpy

/// Copy the batch's 16 MiB of values `times` times, into `dst[i % dst.len()]` for copy `i`;
/// the elapsed time.
fn memcpy_run(batch: &RecordBatch, dst: &mut [Vec<u8>], times: usize) -> BenchResult<Duration> {
    let column = |i: usize| -> BenchResult<&[u8]> {
        Ok(batch
            .column(i)
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or("not float64")?
            .values()
            .inner()
            .as_slice())
    };
    let (a, b) = (column(0)?, column(1)?);
    let half = a.len();
    let t0 = Instant::now();
    for i in 0..times {
        if i % 16 == 0 {
            check_interrupted()?;
        }
        let d = &mut dst[i % dst.len()];
        d[..half].copy_from_slice(std::hint::black_box(a));
        d[half..half + b.len()].copy_from_slice(std::hint::black_box(b));
        std::hint::black_box(d);
    }
    Ok(t0.elapsed())
}

/// One channel run of the 16 MiB case with its baselines, GB/s per round (`[k]`: round `k`).
struct LargeResult {
    kind: Kind,
    /// memcpy into one warm 16 MiB buffer: the baseline, timed just before each round's batches
    /// and once more after the last round's.
    memcpy: Vec<f64>,
    /// memcpy into `LARGE_SLOTS` warm 16 MiB buffers in turn: a reference.
    ring: Vec<f64>,
    channel: Vec<f64>,
}

impl LargeResult {
    /// channel / memcpy of each round: against the mean of the baselines measured just before
    /// and just after the round's batches (which cancels a drift of the machine's speed).
    fn ratios(&self) -> Vec<f64> {
        self.channel
            .iter()
            .zip(self.memcpy.windows(2))
            .map(|(c, m)| c / ((m[0] + m[1]) / 2.0))
            .collect()
    }
}

/// GB/s of `batches` 16 MiB batches moved in `elapsed`.
fn gbps(batches: usize, elapsed: Duration) -> f64 {
    (batches * LARGE_BYTES) as f64 / elapsed.as_secs_f64() / 1e9
}

/// For each consumer kind, one channel run whose timed batches go in `rounds` chunks of `chunk`.
/// Before each chunk the producer times `chunk` copies into the ring of warm buffers (a
/// reference), then, after one untimed copy that makes the baseline's buffer warm again, `chunk`
/// copies into it (the baseline); after the last chunk, the baseline once more. Each timed piece
/// follows the same pause. So every round's batches run between two baselines, in the same
/// machine state.
fn bench_large(
    ctx: &mut Ctx,
    rounds: usize,
    chunk: usize,
    warm: usize,
) -> BenchResult<Vec<LargeResult>> {
    let batch = large_batch()?;
    // Warm destinations: every page resident (written once).
    let mut one = vec![vec![0x5a_u8; LARGE_BYTES]];
    let mut ring: Vec<Vec<u8>> = (0..LARGE_SLOTS)
        .map(|_| vec![0x5a_u8; LARGE_BYTES])
        .collect();
    // Untimed warm-ups; the channel warms up inside each run.
    memcpy_run(&batch, &mut one, warm)?;
    memcpy_run(&batch, &mut ring, warm)?;
    let baseline = |one: &mut [Vec<u8>]| -> BenchResult<f64> {
        memcpy_run(&batch, one, 1)?;
        std::thread::sleep(SETTLE);
        Ok(gbps(chunk, memcpy_run(&batch, one, chunk)?))
    };
    let mut results = Vec::new();
    for kind in [Kind::LargeRecv, Kind::LargeSum] {
        let (mut memcpy, mut ring_gbps) = (Vec::new(), Vec::new());
        let out = ctx.run(
            &RunSpec {
                kind,
                consumer_wait: WaitMode::Block,
                producer_wait: WaitMode::Block,
                warm,
                timed: rounds * chunk,
                chunk,
                pacing: Pacing::Flat,
            },
            Some(&batch),
            &mut |_| {
                std::thread::sleep(SETTLE);
                ring_gbps.push(gbps(chunk, memcpy_run(&batch, &mut ring, chunk)?));
                memcpy.push(baseline(&mut one)?);
                Ok(())
            },
        )?;
        memcpy.push(baseline(&mut one)?);
        if out.samples.len() != rounds * chunk || out.chunk_starts.len() != rounds {
            return Err(format!(
                "{} receipt times and {} chunks, expected {} and {rounds}",
                out.samples.len(),
                out.chunk_starts.len(),
                rounds * chunk
            )
            .into());
        }
        let channel = out
            .chunk_starts
            .iter()
            .zip(out.samples.chunks_exact(chunk))
            .map(|(&start, received)| {
                let last = *received.last().expect("chunk > 0");
                gbps(chunk, Duration::from_nanos(last.saturating_sub(start)))
            })
            .collect();
        results.push(LargeResult {
            kind,
            memcpy,
            ring: ring_gbps,
            channel,
        });
    }
    Ok(results)
}

fn print_large(results: &[LargeResult]) {
    println!("| run | case | GB/s (median) | min | max | rounds |");
    println!("|---|---|---:|---:|---:|---:|");
    for r in results {
        let run = match r.kind {
            Kind::LargeRecv => "consumer only receives",
            _ => "consumer sums `a`",
        };
        let channel = match r.kind {
            Kind::LargeRecv => {
                "channel, consumer only receives (decodes in place, reads one value)"
            }
            _ => "channel, consumer sums column `a` (8 MiB read)",
        };
        for (label, v) in [
            (
                "memcpy 16 MiB → one warm 16 MiB buffer (baseline)",
                &r.memcpy,
            ),
            (
                "memcpy 16 MiB → 4 warm 16 MiB buffers in turn (reference, not judged)",
                &r.ring,
            ),
            (channel, &r.channel),
        ] {
            let s = summary(v);
            println!(
                "| {run} | {label} | {:.2} | {:.2} | {:.2} | {} |",
                s.median, s.min, s.max, s.n
            );
        }
    }
    println!();
    for r in results {
        let (memcpy, ring) = (summary(&r.memcpy).median, summary(&r.ring).median);
        let ratios = summary(&r.ratios());
        let figures = format!(
            "median of the per-round ratios {:.2}× (min {:.2}, max {:.2}; ratio of the medians \
             {:.2}×; reference: 4 buffers / one buffer {:.2}×)",
            ratios.median,
            ratios.min,
            ratios.max,
            summary(&r.channel).median / memcpy,
            ring / memcpy,
        );
        if r.kind == Kind::LargeRecv {
            println!(
                "- channel / memcpy (consumer only receives): {figures} (target ≥ \
                 {TARGET_MEMCPY_RATIO}×): {}",
                verdict(ratios.median >= TARGET_MEMCPY_RATIO)
            );
        } else {
            println!(
                "- channel / memcpy (consumer sums column `a`; not judged: the consumer also \
                 reads 8 MiB per batch from memory, which the baseline does not): {figures}"
            );
        }
    }
    println!();
}

// ---------------------------------------------------------------------------------------------

fn main() {
    if std::env::var_os(ROLE_ENV).is_some() {
        if let Err(e) = consumer_main() {
            eprintln!("channel bench consumer failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    bench_main(run);
}

fn run() -> BenchResult<()> {
    let quick = quick();
    let cases = std::env::var("SHMARROW_BENCH_CASES").unwrap_or_default();
    let wanted =
        |case: char| cases.is_empty() || cases.split(',').any(|c| c.trim() == case.to_string());
    let dir = SegmentDir::from_env();
    // (rounds, timed batches per round, warm-up batches per run)
    let (lat_rounds, lat_n, lat_warm) = if quick {
        (2, 5_000, 500)
    } else {
        (4, 25_000, 1_000)
    };
    let (sparse_rounds, sparse_n, sparse_warm) = if quick {
        (2, 1_000, 100)
    } else {
        (2, 10_000, 200)
    };
    let (tp_rounds, tp_n, tp_warm) = if quick {
        (3, 20_000, 1_000)
    } else {
        (5, 100_000, 2_000)
    };
    let (big_rounds, big_n, big_warm) = if quick { (12, 10, 8) } else { (60, 10, 8) };

    // Sleeps of the paced producer last what they ask for (default slack: 50 µs).
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and touches no memory.
    let slack_ok =
        unsafe { nix::libc::prctl(nix::libc::PR_SET_TIMERSLACK, 1 as nix::libc::c_ulong) } == 0;
    let exe = std::env::current_exe()?;
    let mut ctx = Ctx {
        dir: &dir,
        exe,
        run_id: 0,
    };

    println!("# shmarrow channel benchmark (Rust)");
    println!();
    print_machine(&dir, quick);
    println!(
        "every run: a fresh channel, this process the producer, a fresh consumer process (this \
         program re-executed); clock CLOCK_MONOTONIC; cases alternate (order rotated every round)"
    );
    println!(
        "small batch: {SMALL_ROWS} rows × 4 columns (seq int64, sent_ns int64, x, y float64), \
         {SMALL_SLOTS} slots of {SMALL_SLOT_SIZE} B; the producer builds each batch (2 new int64 \
         columns) and sends it"
    );
    println!();

    if wanted('a') {
        // a. latency
        println!(
            "## a. one-way latency, small batches: `sent_ns` taken just before building and sending, \
         `now` right after `recv()` returns in the consumer process"
        );
        println!();
        println!(
            "dense pacing: the producer sleeps {} µs after each send (shorter than the spin; timer \
         slack {}); {lat_rounds} rounds × {lat_n} timed batches per mode (after {lat_warm} \
         warm-up batches per run), producer WaitMode::Block",
            DENSE_SLEEP.as_micros(),
            if slack_ok {
                "1 ns"
            } else {
                "NOT set, default 50 µs"
            }
        );
        println!();
        let dense = bench_latency(
            &mut ctx,
            Pacing::Sleep(DENSE_SLEEP),
            lat_rounds,
            lat_n,
            lat_warm,
        )?;
        print_latency(&dense);
        for r in &dense {
            let p50 = percentile(&r.sorted, 50.0) as f64 / 1e3;
            println!(
                "- {}: p50 {p50:.1} µs (target ≤ {TARGET_P50_US:.0} µs): {}",
                wait_name(r.mode),
                verdict(p50 <= TARGET_P50_US)
            );
        }
        println!();
        println!(
            "sparse pacing (not judged): the producer sleeps {} µs after each send (longer than the \
         spin, so SpinThenBlock falls asleep too); {sparse_rounds} rounds × {sparse_n} timed \
         batches per mode",
            SPARSE_SLEEP.as_micros()
        );
        println!();
        let sparse = bench_latency(
            &mut ctx,
            Pacing::Sleep(SPARSE_SLEEP),
            sparse_rounds,
            sparse_n,
            sparse_warm,
        )?;
        print_latency(&sparse);
    }
    if wanted('b') {
        // b. throughput
        check_interrupted()?;
        println!(
            "## b. throughput, small batches, producer sending as fast as it can; {tp_rounds} rounds \
         × {tp_n} timed batches per mode (after {tp_warm} warm-up batches and a {} ms pause); the \
         same wait mode on both ends",
            SETTLE.as_millis()
        );
        println!();
        let rates = bench_throughput(&mut ctx, tp_rounds, tp_n, tp_warm)?;
        println!(
            "| wait mode (both ends) | end to end batches/s (median) | min | max | producer-side \
         batches/s (median) | rounds |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for r in &rates {
            let (e, p) = (summary(&r.end_to_end), summary(&r.producer));
            println!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
                wait_name(r.mode),
                e.median,
                e.min,
                e.max,
                p.median,
                e.n
            );
        }
        println!();
        for r in &rates {
            let e = summary(&r.end_to_end).median;
            println!(
                "- {}: {e:.0} batches/s end to end (target ≥ {TARGET_BATCHES_PER_S:.0}): {}",
                wait_name(r.mode),
                verdict(e >= TARGET_BATCHES_PER_S)
            );
        }
        println!();
    }
    if wanted('c') {
        // c. large
        check_interrupted()?;
        println!(
            "## c. 16 MiB batches (2 float64 columns of {LARGE_ROWS} rows), {LARGE_SLOTS} slots of \
             {} MiB, both ends Block; per consumer kind one channel, {big_rounds} rounds (after \
             {big_warm} warm-up batches); each round, in this process, {big_n} memcpys of the same \
             16 MiB into {LARGE_SLOTS} warm buffers in turn (reference), one untimed and {big_n} \
             timed into a warm 16 MiB buffer (the baseline), then {big_n} batches through the \
             channel; the baseline once more after the last round; each timed piece after a {} ms \
             pause",
            LARGE_SLOT_SIZE as usize / MIB,
            SETTLE.as_millis()
        );
        println!();
        println!(
            "GB/s = 10^9 bytes of values ({LARGE_BYTES} per batch) per second; channel: from the \
             producer's first send of the round to the consumer's receipt of its last batch; both \
             move the same bytes once: memcpy with glibc's `memcpy`, the channel's producer into a \
             slot (the consumer decodes in place); the ratio of each round compares the channel \
             with the mean of the baselines measured just before and just after it"
        );
        println!();
        let large = bench_large(&mut ctx, big_rounds, big_n, big_warm)?;
        print_large(&large);
    }
    println!("load average at end: {}", loadavg());
    Ok(())
}
