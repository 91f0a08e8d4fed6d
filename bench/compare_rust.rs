//! The Rust-API contender of the side-by-side suite (`bench/compare`, `bench/comparison/`).
//!
//! Not a benchmark on its own: `bench/compare` builds it (`cargo bench --bench compare_rust
//! --no-run`) and drives it, so that its rounds alternate with the Python contenders' rounds
//! in the same run. Every mode but `stream` and `limits` is a small server: it sets up, prints
//! one JSON line (`{"ready": ...}`), then answers each `round` line on stdin with one JSON
//! line, and `stop` with a last line (peak RSS of itself and of its children) before exiting.
//! Timestamps are `CLOCK_MONOTONIC` nanoseconds, the clock of Python's `time.monotonic_ns`.
//!
//! Modes (DIR is the segment directory; every name is chosen by the caller, who removes it
//! again should this program die):
//!
//! - `handoff-held DIR NAME BYTES`: a channel (1 slot) created once; a consumer child
//!   (`consumer DIR NAME`) subscribed once. A round sends the same resident batch of BYTES of
//!   float64 (one copy into the slot) and waits for the consumer's sum. The caller's warm-up
//!   rounds fault the slot in both processes.
//! - `handoff-inplace DIR NAME BYTES`: a round allocates segment NAME, fills it (untimed),
//!   publishes it, and tells the consumer child (`attacher DIR`) the name on its stdin; the
//!   child attaches and sums. Reported: publish start, publish end, attached, summed.
//! - `square DIR NAME WORKERS`: a round = open the segment writable by name, take its exclusive
//!   lock, square every row on a pool of WORKERS threads, each releasing the pages it wrote as
//!   it goes (`MapOptions::release`), close (as Python's `map_inplace(threads=WORKERS)`).
//! - `square-workers DIR NAME WORKERS`: the lecture's pattern: WORKERS persistent worker
//!   processes (`square-worker DIR NAME`, started before the rounds); a round sends each its
//!   part of the rows (`START STOP`), and each opens the segment writable by name, takes the
//!   lock of a writer of those rows (`lock_rows`), squares them on one thread (releasing the
//!   pages it wrote as it goes) and closes.
//! - `stats DIR NAME WORKERS`: a round = WORKERS threads, each attaching by name and reducing its
//!   own chunks (`partition::worker_chunks`) on one thread; the chunk partials are merged in order.
//! - `attach DIR NAME...`: a round times `dir.attach(name)` + drop, for each name.
//! - `stream DIR NAME BYTES SECONDS WARMUP CONSUMERS`: one run; the producer sends the same
//!   batch (first value changed each time) for WARMUP + SECONDS seconds to CONSUMERS children.
//! - `limits DIR READ_BYTES COPY_BYTES REPEATS`: memory bandwidth and first-touch costs.

#[path = "common.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{Value, json};
use shmarrow::reduce::{Partial, merge_in_order};
use shmarrow::{ChannelOptions, CreateOptions, MapOp, MapOptions, SegmentDir, partition};

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// Peak resident set size of this process, bytes (`VmHWM`).
fn vmhwm() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Sum with 8 independent accumulators (the memory-bandwidth reference of `bench/compute.rs`).
fn sum8(xs: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let tail: f64 = chunks.remainder().iter().sum();
    acc.iter().sum::<f64>() + tail
}

fn sum_batch(batch: &RecordBatch) -> f64 {
    sum8(batch.column(0).as_primitive::<Float64Type>().values())
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)]))
}

fn batch_of(rows: usize, value: f64) -> R<RecordBatch> {
    let array: ArrayRef = Arc::new(Float64Array::from(vec![value; rows]));
    Ok(RecordBatch::try_new(schema(), vec![array])?)
}

/// A child process of this program speaking JSON lines.
struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Kid {
    fn spawn(args: &[&str]) -> R<Kid> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Kid {
            child,
            stdin,
            stdout,
        })
    }

    fn line(&mut self) -> R<Value> {
        let mut s = String::new();
        if self.stdout.read_line(&mut s)? == 0 {
            return Err("child closed its stdout".into());
        }
        Ok(serde_json::from_str(&s)?)
    }

    fn say(&mut self, s: &str) -> R<()> {
        let w = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(w, "{s}")?;
        w.flush()?;
        Ok(())
    }

    /// Close its stdin, read its last line, wait for it.
    fn finish(mut self) -> R<Value> {
        self.stdin = None;
        let last = self.line();
        self.child.wait()?;
        last
    }
}

/// Read the commands on stdin: `round` runs `f`, `stop` ends.
fn serve(mut round: impl FnMut() -> R<Value>) -> R<()> {
    for line in std::io::stdin().lock().lines() {
        match line?.trim() {
            "round" => emit(&round()?),
            "stop" | "" => break,
            other => return Err(format!("unknown command {other:?}").into()),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn handoff_held(dir: &SegmentDir, name: &str, bytes: usize) -> R<()> {
    let rows = bytes / 8;
    let batch = batch_of(rows, 1.0)?;
    // One slot: a hand-off is a ping-pong, and the slot is faulted by the warm-up rounds.
    let options = ChannelOptions::default()
        .slots(1)
        .slot_size((bytes + (1 << 20)) as u64);
    dir.create_channel(name, &schema(), &options)?;
    let mut producer = dir.producer(name)?;
    let dir_s = dir.path().to_string_lossy().into_owned();
    let mut kid = Kid::spawn(&["consumer", &dir_s, name])?;
    kid.line()?; // subscribed
    emit(&json!({"ready": true}));
    serve(|| {
        let t0 = common::mono_ns();
        producer.send(&batch)?;
        let r = kid.line()?;
        Ok(json!({"t0": t0, "t_recv": r["t_recv"], "t_sum": r["t_sum"], "sum": r["sum"]}))
    })?;
    drop(producer); // closes the stream: the consumer ends
    let last = kid.finish()?;
    dir.remove(name)?;
    emit(&json!({"producer_rss": vmhwm(), "consumer_rss": [last["rss"]]}));
    Ok(())
}

/// Consumer child: subscribe, then for every batch print its receive and sum times.
fn consumer(dir: &SegmentDir, name: &str) -> R<()> {
    let mut sub = dir.subscribe(name)?;
    emit(&json!({"subscribed": true}));
    while let Some(received) = sub.recv()? {
        let t_recv = common::mono_ns();
        let s = sum_batch(&received.batch);
        let t_sum = common::mono_ns();
        drop(received); // releases the slot
        emit(&json!({"seq": 0, "t_recv": t_recv, "t_sum": t_sum, "sum": s}));
    }
    emit(&json!({"rss": vmhwm()}));
    Ok(())
}

fn handoff_inplace(dir: &SegmentDir, name: &str, bytes: usize) -> R<()> {
    let rows = bytes / 8;
    let dir_s = dir.path().to_string_lossy().into_owned();
    let mut kid = Kid::spawn(&["attacher", &dir_s])?;
    kid.line()?;
    emit(&json!({"ready": true}));
    serve(|| {
        let alloc = dir.allocate(name, &schema(), rows, &CreateOptions::default())?;
        alloc.values_mut::<Float64Type>("x")?[0].fill(1.0); // built in place (untimed)
        let t0 = common::mono_ns();
        let created = alloc.publish()?;
        let t_pub = common::mono_ns();
        kid.say(name)?;
        let r = kid.line()?;
        created.disown();
        dir.remove(name)?;
        Ok(
            json!({"t0": t0, "t_pub": t_pub, "t_recv": r["t_recv"], "t_sum": r["t_sum"], "sum": r["sum"]}),
        )
    })?;
    let last = kid.finish()?;
    emit(&json!({"producer_rss": vmhwm(), "consumer_rss": [last["rss"]]}));
    Ok(())
}

/// Attacher child: for every name on stdin, attach, sum, drop, report.
fn attacher(dir: &SegmentDir) -> R<()> {
    emit(&json!({"ready": true}));
    for line in std::io::stdin().lock().lines() {
        let name = line?;
        let segment = dir.attach(name.trim())?;
        let t_recv = common::mono_ns();
        let s: f64 = segment.batches().iter().map(sum_batch).sum();
        let t_sum = common::mono_ns();
        drop(segment);
        emit(&json!({"t_recv": t_recv, "t_sum": t_sum, "sum": s}));
    }
    emit(&json!({"rss": vmhwm()}));
    Ok(())
}

fn square(dir: &SegmentDir, name: &str, workers: usize) -> R<()> {
    emit(&json!({"ready": true}));
    serve(|| {
        let t0 = Instant::now();
        let w = dir.open_writable(name)?;
        let _lock = w.lock(false)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()?;
        // Closed right after: each thread releases the pages it wrote as it goes.
        pool.install(|| {
            w.map_with(
                "x",
                MapOp::Square,
                0..u64::MAX,
                &MapOptions::default().release(true),
            )
        })?;
        drop(w);
        Ok(json!({"ns": t0.elapsed().as_nanos() as u64}))
    })?;
    emit(&json!({"rss": vmhwm()}));
    Ok(())
}

/// The lecture's pattern: WORKERS persistent worker processes (`square-worker`); a round sends
/// each its quarter of the rows and waits for all to be done.
fn square_workers(dir: &SegmentDir, name: &str, workers: usize) -> R<()> {
    let dir_s = dir.path().to_string_lossy().into_owned();
    let mut kids = (0..workers)
        .map(|_| Kid::spawn(&["square-worker", &dir_s, name]))
        .collect::<R<Vec<_>>>()?;
    for kid in &mut kids {
        kid.line()?; // ready
    }
    let rows = dir.attach(name)?.num_rows();
    let ranges = shmarrow::split_rows(rows, workers);
    emit(&json!({"ready": true}));
    serve(|| {
        let t0 = Instant::now();
        for (kid, r) in kids.iter_mut().zip(&ranges) {
            kid.say(&format!("{} {}", r.start, r.end))?;
        }
        for kid in &mut kids {
            kid.line()?;
        }
        Ok(json!({"ns": t0.elapsed().as_nanos() as u64}))
    })?;
    let mut rss = vec![];
    for kid in kids {
        rss.push(kid.finish()?["rss"].clone());
    }
    emit(&json!({"rss": vmhwm(), "worker_rss": rss}));
    Ok(())
}

/// A worker of `square-workers`: for every `START STOP` line on stdin, open the segment writable
/// by name, take the lock of a writer of those rows, square them on this process's one thread
/// (releasing the pages it wrote as it goes), close.
fn square_worker(dir: &SegmentDir, name: &str) -> R<()> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    emit(&json!({"ready": true}));
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut bounds = line.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(start)), Some(Ok(stop))) = (bounds.next(), bounds.next()) else {
            return Err(format!("expected START STOP, got {line:?}").into());
        };
        let w = dir.open_writable(name)?;
        let _lock = w.lock_rows(start..stop)?;
        let options = MapOptions::default().release(true);
        pool.install(|| w.map_with("x", MapOp::Square, start..stop, &options))?;
        drop(w);
        emit(&json!({"done": true}));
    }
    emit(&json!({"rss": vmhwm()}));
    Ok(())
}

fn stats(dir: &SegmentDir, name: &str, workers: usize) -> R<()> {
    emit(&json!({"ready": true}));
    serve(|| {
        let t0 = Instant::now();
        // Each worker's chunk partials, in worker (= chunk) order.
        let partials = std::thread::scope(|s| -> R<Vec<Vec<Partial>>> {
            let handles: Vec<_> = (0..workers)
                .map(|i| {
                    s.spawn(move || -> Result<Vec<Partial>, String> {
                        let seg = dir.attach(name).map_err(|e| e.to_string())?;
                        let chunks = seg.chunk_count("x").map_err(|e| e.to_string())?;
                        let mine = partition::worker_chunks(chunks, i, workers);
                        Ok(seg
                            .chunk_partials("x", mine, Some(1))
                            .map_err(|e| e.to_string())?
                            .1)
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                out.push(h.join().map_err(|_| "worker thread panicked")??);
            }
            Ok(out)
        })?;
        let per_worker: Vec<Value> = partials
            .iter()
            .map(|p| {
                let s = merge_in_order(false, p).finish("x", 0);
                json!([s.mean, s.std, s.max.map_or(f64::NAN, |m| m.as_f64())])
            })
            .collect();
        let merged = merge_in_order(false, &partials.concat()).finish("x", 0);
        let ns = t0.elapsed().as_nanos() as u64;
        Ok(json!({"ns": ns, "mean": merged.mean, "std": merged.std,
                  "max": merged.max.map_or(f64::NAN, |m| m.as_f64()), "per_worker": per_worker}))
    })?;
    emit(&json!({"rss": vmhwm()}));
    Ok(())
}

fn attach(dir: &SegmentDir, names: &[String]) -> R<()> {
    emit(&json!({"ready": true}));
    serve(|| {
        let mut out = Vec::new();
        for name in names {
            let t0 = Instant::now();
            let seg = dir.attach(name)?;
            drop(seg);
            out.push(t0.elapsed().as_nanos() as u64);
        }
        Ok(json!({"ns": out}))
    })?;
    emit(&json!({"rss": vmhwm()}));
    Ok(())
}

fn stream(
    dir: &SegmentDir,
    name: &str,
    bytes: usize,
    seconds: f64,
    warmup: f64,
    consumers: usize,
) -> R<()> {
    let batch = batch_of(bytes / 8, 1.0)?;
    let options = ChannelOptions::default()
        .slots(4)
        .slot_size((bytes + (1 << 20)) as u64);
    dir.create_channel(name, &schema(), &options)?;
    let result = (|| -> R<Value> {
        let mut producer = dir.producer(name)?;
        let dir_s = dir.path().to_string_lossy().into_owned();
        let mut kids = (0..consumers)
            .map(|_| Kid::spawn(&["consumer", &dir_s, name]))
            .collect::<R<Vec<_>>>()?;
        for k in &mut kids {
            k.line()?;
        }
        // Readers collect every consumer's per-batch lines while the producer runs.
        let readers: Vec<_> = kids
            .into_iter()
            .map(|mut k| {
                std::thread::spawn(move || -> Result<(Vec<u64>, Value), String> {
                    let mut done = Vec::new();
                    loop {
                        let v = k.line().map_err(|e| e.to_string())?;
                        if let Some(t) = v.get("t_sum").and_then(Value::as_u64) {
                            done.push(t);
                        } else {
                            k.child.wait().map_err(|e| e.to_string())?;
                            return Ok((done, v["rss"].clone()));
                        }
                    }
                })
            })
            .collect();
        let t_start = common::mono_ns();
        let t_measure = t_start + (warmup * 1e9) as u64;
        let t_end = t_measure + (seconds * 1e9) as u64;
        let mut sent = 0u64;
        while common::mono_ns() < t_end {
            producer.send(&batch)?; // the same resident batch, copied into a slot each time
            sent += 1;
        }
        drop(producer);
        let mut done = Vec::new();
        let mut rss = Vec::new();
        for r in readers {
            let (d, v) = r.join().map_err(|_| "reader panicked")??;
            done.push(d);
            rss.push(v);
        }
        Ok(
            json!({"sent": sent, "t_measure": t_measure, "t_end": t_end, "done": done,
                  "producer_rss": vmhwm(), "consumer_rss": rss}),
        )
    })();
    dir.remove(name)?;
    emit(&result?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Physical limits.

/// A fresh file in `dir` of `len` bytes, mapped shared read-write; `fallocate` reserves its
/// pages first (as shmarrow's segments and channels do).
fn fresh_map(dir: &SegmentDir, tag: &str, len: usize, fallocate: bool) -> R<memmap2::MmapMut> {
    let path = dir.path().join(format!(
        "shmarrow-bench-{}-limits-{tag}",
        std::process::id()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?; // unlinked: gone with the mapping, even if we die
    if fallocate {
        nix::fcntl::posix_fallocate(&file, 0, len as i64)?;
    } else {
        file.set_len(len as u64)?;
    }
    // SAFETY: the file is private to this process (unlinked), so nobody truncates it under us.
    Ok(unsafe { memmap2::MmapMut::map_mut(&file)? })
}

fn limits(dir: &SegmentDir, read_bytes: usize, copy_bytes: usize, repeats: usize) -> R<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let data: Vec<f64> = (0..read_bytes / 8).map(|i| (i % 1000) as f64).collect();
    let src = vec![1u8; copy_bytes];
    let mut dst = vec![0u8; copy_bytes];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); 6];
    let mut sink = 0.0;
    for round in 0..repeats + 1 {
        for k in 0..6 {
            let case = (k + round) % 6;
            let t0 = Instant::now();
            match case {
                0 => sink += sum8(&data),
                1 => {
                    let parts: Vec<&[f64]> = data.chunks(data.len().div_ceil(threads)).collect();
                    sink += std::thread::scope(|s| {
                        let hs: Vec<_> = parts.iter().map(|p| s.spawn(|| sum8(p))).collect();
                        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum::<f64>()
                    });
                }
                2 => dst.copy_from_slice(&src),
                3 | 4 => {
                    // First touch of fresh shared memory: map a new file and write every byte.
                    let mut map =
                        fresh_map(dir, &format!("{case}-{round}"), copy_bytes, case == 4)?;
                    map.fill(1);
                    sink += f64::from(map[copy_bytes - 1]);
                }
                _ => {
                    // The same write to memory that is already faulted in.
                    dst.fill(2);
                    sink += f64::from(dst[copy_bytes - 1]);
                }
            }
            let s = t0.elapsed().as_secs_f64();
            if round > 0 {
                samples[case].push(s);
            }
        }
    }
    let labels = [
        ("read_1thread", read_bytes),
        ("read_all_threads", read_bytes),
        ("memcpy", copy_bytes),
        ("first_touch_ftruncate", copy_bytes),
        ("first_touch_fallocate", copy_bytes),
        ("write_faulted", copy_bytes),
    ];
    let mut out = serde_json::Map::new();
    for (i, (label, bytes)) in labels.iter().enumerate() {
        let common::Summary {
            median: m,
            min: lo,
            max: hi,
            ..
        } = common::summary(&samples[i]);
        out.insert(
            (*label).to_owned(),
            json!({"bytes": bytes, "median_s": m, "min_s": lo, "max_s": hi, "n": samples[i].len()}),
        );
    }
    out.insert("threads".into(), json!(threads));
    out.insert("sink".into(), json!(sink));
    emit(&Value::Object(out));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; with no mode this program has nothing to do alone.
    let args: Vec<String> = args.into_iter().filter(|a| a != "--bench").collect();
    if args.len() < 2 {
        eprintln!("compare_rust: driven by bench/comparison (see bench/README.md); nothing to do");
        return;
    }
    let dir = SegmentDir::new(&args[1]);
    let num = |i: usize| -> usize { args[i].parse().expect("a number") };
    let fnum = |i: usize| -> f64 { args[i].parse().expect("a number") };
    let result = match args[0].as_str() {
        "handoff-held" => handoff_held(&dir, &args[2], num(3)),
        "handoff-inplace" => handoff_inplace(&dir, &args[2], num(3)),
        "consumer" => consumer(&dir, &args[2]),
        "attacher" => attacher(&dir),
        "square" => square(&dir, &args[2], num(3)),
        "square-workers" => square_workers(&dir, &args[2], num(3)),
        "square-worker" => square_worker(&dir, &args[2]),
        "stats" => stats(&dir, &args[2], num(3)),
        "attach" => attach(&dir, &args[2..]),
        "stream" => stream(&dir, &args[2], num(3), fnum(4), fnum(5), num(6)),
        "limits" => limits(&dir, num(2), num(3), num(4)),
        other => Err(format!("unknown mode {other}").into()),
    };
    if let Err(e) = result {
        eprintln!("compare_rust {}: {e}", args[0]);
        std::process::exit(1);
    }
}
