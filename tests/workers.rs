//! `reduce` and `map` through the binary: threads and worker processes agree, results
//! segments are cleaned up, a killed worker fails the command cleanly, permissions hold.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, Float64Array, Int32Array, RecordBatch, StringArray};
use common::{TempDir, create_batches, run, shmarrow_bin};
use serde_json::Value;

fn ok_json(dir: &TempDir, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(dir, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `rows` rows of x (floats with nulls), n (ints), s (strings), in batches of `batch` rows.
fn publish(dir: &TempDir, name: &str, rows: usize, batch: usize) {
    let batches: Vec<RecordBatch> = (0..rows)
        .step_by(batch)
        .map(|start| {
            let r = start..(start + batch).min(rows);
            RecordBatch::try_from_iter([
                (
                    "x",
                    Arc::new(Float64Array::from_iter(
                        r.clone()
                            .map(|i| (i % 5 != 0).then_some((i as f64).sin() * 1e3)),
                    )) as _,
                ),
                (
                    "n",
                    Arc::new(Int32Array::from_iter_values(
                        r.clone().map(|i| (i % 1000) as i32 - 500),
                    )) as _,
                ),
                (
                    "s",
                    Arc::new(StringArray::from_iter_values(r.map(|i| i.to_string()))) as _,
                ),
            ])
            .unwrap()
        })
        .collect();
    create_batches(&dir.dir(), name, &batches);
}

#[test]
fn threads_and_processes_agree_and_leave_nothing() {
    let tmp = TempDir::new("w-agree");
    publish(&tmp, "d", 300_000, 70_001);
    let threads = ok_json(
        &tmp,
        &["reduce", "d", "-c", "x", "-c", "n", "--threads", "2"],
    );
    let one = ok_json(
        &tmp,
        &["reduce", "d", "-c", "x", "-c", "n", "--threads", "1"],
    );
    assert_eq!(threads, one, "thread count changes nothing");
    for p in ["1", "2", "3"] {
        let procs = ok_json(
            &tmp,
            &["reduce", "d", "-c", "x", "-c", "n", "--processes", p],
        );
        assert_eq!(procs, threads, "{p} processes");
    }
    assert_eq!(threads[0]["null_count"], 60_000);
    let listing = tmp.dir().list().unwrap();
    assert_eq!(
        listing.segments.len(),
        1,
        "results segments removed: {listing:?}"
    );
    assert!(listing.temps.is_empty());

    // --ops filters the keys; the text table has a header and a row per column.
    let some = ok_json(&tmp, &["reduce", "d", "-c", "x", "--ops", "mean,max"]);
    let keys: Vec<_> = some[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["column", "max", "mean"]);
    let text = String::from_utf8(run(&tmp, &["reduce", "d", "--threads", "2"]).stdout).unwrap();
    assert!(
        text.starts_with("COLUMN") && text.lines().count() == 3,
        "{text}"
    );
}

/// Random floats on a large offset (where merge order shows in the last digits) and random
/// integers, in batches of odd sizes: 12 chunks of uneven lengths.
fn publish_offset_floats(dir: &TempDir, name: &str) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*: reproducible noise without a dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let batches: Vec<RecordBatch> = [70_001, 33_333, 99_999, 5, 131_071, 1]
        .into_iter()
        .map(|rows| {
            let xs: Vec<f64> = (0..rows)
                .map(|_| 1e9 + (next() >> 11) as f64 / (1u64 << 53) as f64 * 1e3)
                .collect();
            let ns: Vec<i64> = (0..rows).map(|_| next() as i64 >> 3).collect();
            RecordBatch::try_from_iter([
                ("x", Arc::new(Float64Array::from(xs)) as _),
                ("n", Arc::new(arrow_array::Int64Array::from(ns)) as _),
            ])
            .unwrap()
        })
        .collect();
    create_batches(&dir.dir(), name, &batches);
}

#[test]
fn processes_equal_threads_bit_for_bit() {
    let tmp = TempDir::new("w-bits");
    publish_offset_floats(&tmp, "d");
    let reduce = |how: &str, n: &str| {
        ok_json(
            &tmp,
            &["reduce", "d", "-c", "x", "-c", "n", "--ddof", "1", how, n],
        )
    };
    let one = reduce("--threads", "1");
    // JSON prints the shortest repr that round-trips, so equal text is equal bits.
    for n in ["2", "7"] {
        assert_eq!(reduce("--threads", n), one, "{n} threads");
    }
    for p in ["1", "2", "3", "4"] {
        assert_eq!(reduce("--processes", p), one, "{p} processes");
    }
    // Not vacuous: merging per-worker partials (the old way) changes the last digits here.
    let seg = tmp.dir().attach("d").unwrap();
    let (int, partials) = seg.chunk_partials("x", 0..usize::MAX, Some(1)).unwrap();
    let by_chunk = shmarrow::reduce::merge_in_order(int, &partials).finish("x", 1);
    // Every way 2, 3 or 4 workers cut the 12 chunks (`worker_chunks`), merged per worker first.
    let by_worker = |workers: usize| {
        (0..workers)
            .map(|w| {
                let mine = shmarrow::partition::worker_chunks(partials.len(), w, workers);
                shmarrow::reduce::merge_in_order(int, &partials[mine])
            })
            .reduce(|a, b| a.merge(&b))
            .unwrap()
            .finish("x", 1)
    };
    assert_eq!(by_chunk.var, one[0]["var"].as_f64().unwrap());
    assert!(
        (2..=4).any(|w| (by_worker(w).var, by_worker(w).mean) != (by_chunk.var, by_chunk.mean)),
        "a merge order that does not matter on this data shows nothing"
    );
}

/// The library's coordinator, called from Rust with workers of this binary: the same stats,
/// bit for bit, as threads; per-worker stats cover each worker's own chunks; nothing is left.
#[test]
fn the_library_coordinator_reduces_by_processes() {
    use shmarrow::partition::{ProcessOptions, ReduceTask, reduce_by_processes};
    let tmp = TempDir::new("w-lib");
    publish_offset_floats(&tmp, "d");
    let dir = tmp.dir();
    let threads = dir
        .attach("d")
        .unwrap()
        .reduce(
            &["x", "n"],
            &shmarrow::reduce::ReduceOptions::default().ddof(1),
        )
        .unwrap();
    // Each worker is `shmarrow --dir DIR worker reduce ...` of this build.
    let worker_of = |task: &ReduceTask| {
        let mut worker = shmarrow_bin();
        worker
            .arg("--dir")
            .arg(dir.path())
            .arg("worker")
            .args(task.args());
        worker
    };
    let mut started = Vec::new();
    let reduced = reduce_by_processes(
        &dir,
        "d",
        &["x", "n"],
        3,
        &ProcessOptions::default().ddof(1),
        |task| {
            started.push(task.worker);
            worker_of(task)
        },
    )
    .unwrap();
    assert_eq!(started, [0, 1, 2]);
    assert_eq!(reduced.stats, threads);
    assert_eq!(reduced.per_worker.len(), 3);
    let counts: u64 = reduced.per_worker.iter().map(|w| w[0].count).sum();
    assert_eq!(counts, threads[0].count);
    assert!(reduced.per_worker.iter().all(|w| w[0].count > 0));
    assert!(reduced.workers.argv_bytes > 0 && reduced.results_bytes > 0);
    assert_eq!(
        dir.list().unwrap().segments.len(),
        1,
        "the results segment is gone"
    );
    // A worker that fails: the error names it and its last line on stderr; no result.
    let err = reduce_by_processes(&dir, "d", &["x"], 2, &ProcessOptions::default(), |task| {
        let mut worker = worker_of(task);
        if task.worker == 1 {
            worker.args(["--column", "nope"]);
        }
        worker
    })
    .unwrap_err();
    assert!(
        matches!(&err, shmarrow::Error::Workers { workers: 2, failures } if failures.len() == 1),
        "{err}"
    );
    assert!(err.to_string().contains("worker 1 (pid"), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(dir.list().unwrap().segments.len(), 1);
}

#[test]
fn kept_results_are_an_arrow_table_one_row_per_chunk() {
    let tmp = TempDir::new("w-keep");
    publish(&tmp, "d", 100_000, 100_000);
    ok_json(
        &tmp,
        &[
            "reduce",
            "d",
            "-c",
            "x",
            "--processes",
            "4",
            "--keep-results",
            "partials",
        ],
    );
    let seg = tmp.dir().attach("partials").unwrap();
    let rows = shmarrow::partition::read_partials(&seg).unwrap();
    // 100_000 rows in one batch: 4 chunks of 32 Ki rows (the last shorter), one per worker.
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.done));
    assert_eq!(rows.iter().map(|r| r.partial.count).sum::<u64>(), 80_000);
    assert_eq!(
        rows.iter().map(|r| (r.worker, r.chunk)).collect::<Vec<_>>(),
        [(0, 0), (1, 1), (2, 2), (3, 3)]
    );
}

#[test]
fn map_by_processes_and_threads() {
    let tmp = TempDir::new("w-map");
    publish(&tmp, "d", 200_000, 60_000);
    let before = tmp.dir().attach("d").unwrap();
    let out = run(
        &tmp,
        &[
            "map",
            "d",
            "-c",
            "n",
            "--op",
            "add",
            "7",
            "--processes",
            "3",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &tmp,
        &[
            "map",
            "d",
            "-c",
            "x",
            "--op",
            "clip",
            "-10",
            "10",
            "--threads",
            "2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut row = 0usize;
    for batch in before.batches() {
        let n = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        let x = batch
            .column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        for i in 0..batch.num_rows() {
            assert_eq!(n.value(i), (row % 1000) as i32 - 500 + 7, "row {row}");
            if row.is_multiple_of(5) {
                assert!(x.is_null(i));
            } else {
                assert_eq!(x.value(i), ((row as f64).sin() * 1e3).clamp(-10.0, 10.0));
            }
            row += 1;
        }
    }
    for (args, needle) in [
        (
            &["map", "d", "-c", "s", "--op", "square"][..],
            "fixed-width",
        ),
        (
            &["map", "d", "-c", "s", "--op", "square", "--processes", "2"][..],
            "fixed-width",
        ),
        (
            &["map", "d", "-c", "n", "--op", "scale", "0.5"][..],
            "not an integer",
        ),
        (&["map", "d", "-c", "x", "--op", "cube"][..], "unknown op"),
        (&["reduce", "d", "-c", "s"][..], "not a numeric"),
        (
            &["reduce", "d", "-c", "x", "--ops", "median"][..],
            "unknown op",
        ),
    ] {
        let out = run(&tmp, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

/// Every value of the int column `n`.
fn ns(dir: &TempDir, name: &str) -> Vec<i32> {
    let segment = dir.dir().attach(name).unwrap();
    common::column_values::<arrow_array::types::Int32Type>(&segment, "n")
        .into_iter()
        .flatten()
        .collect()
}

#[test]
fn integer_overflow_fails_the_map_before_any_worker_writes_unless_wrap() {
    let tmp = TempDir::new("w-overflow");
    publish(&tmp, "d", 100_000, 30_000);
    let before = ns(&tmp, "d");
    // n * 2**30 fits int32 only for n in -2..=1: it overflows in every worker's rows.
    let scale = (1i64 << 30).to_string();
    for parallel in [&["--threads", "2"][..], &["--processes", "3"][..]] {
        let mut args = vec!["map", "d", "-c", "n", "--op", "scale", &scale];
        args.extend_from_slice(parallel);
        let out = run(&tmp, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("does not fit i32"), "{stderr}");
        assert!(stderr.contains("nothing was written"), "{stderr}");
        assert_eq!(ns(&tmp, "d"), before, "{args:?} wrote");
    }
    // --wrap: NumPy's two's complement, by threads and by worker processes alike.
    for (parallel, times) in [(&["--threads", "2"][..], 1), (&["--processes", "3"][..], 2)] {
        let mut args = vec!["map", "d", "-c", "n", "--op", "scale", &scale, "--wrap"];
        args.extend_from_slice(parallel);
        let out = run(&tmp, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: Vec<i32> = before
            .iter()
            .map(|&n| (0..times).fold(n, |v, _| v.wrapping_mul(1 << 30)))
            .collect();
        assert_eq!(ns(&tmp, "d"), want, "{args:?}");
    }
}

/// Direct children of `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_killed_worker_fails_the_command_naming_it() {
    let tmp = TempDir::new("w-kill");
    publish(&tmp, "d", 4_000_000, 1_000_000);
    let mut failures = 0;
    for attempt in 0..5 {
        let child = shmarrow_bin()
            .arg("--dir")
            .arg(&tmp.0)
            .args(["reduce", "d", "-c", "x", "-c", "n", "--processes", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let coordinator = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut killed = false;
        while Instant::now() < deadline {
            if let Some(&worker) = children(coordinator).first() {
                std::thread::sleep(Duration::from_millis(attempt * 5));
                killed = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(worker as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok();
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let out = child.wait_with_output().unwrap();
        if !killed || out.status.success() {
            continue; // the worker finished first: try another kill point
        }
        failures += 1;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("killed by signal 9") && stderr.contains("no result"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "no partial result printed");
        assert_eq!(
            tmp.dir().list().unwrap().segments.len(),
            1,
            "results segment removed"
        );
    }
    assert!(failures > 0, "no attempt killed a worker in time");
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// `map --processes` holds the segment's lock for its workers: when the coordinator is killed
/// (the kernel releases its lock), its workers must not go on writing. A worker is stopped
/// (SIGSTOP) once it has the segment mapped, the coordinator is killed: the stopped worker
/// must end (it would wait stopped forever, and then write, if nothing killed it).
#[test]
fn a_killed_coordinator_takes_its_workers_with_it() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let tmp = TempDir::new("w-coord");
    let rows = 1 << 24;
    let batch = RecordBatch::try_from_iter([(
        "x",
        Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))) as _,
    )])
    .unwrap();
    create_batches(&tmp.dir(), "d", &[batch]);
    let segment = tmp.0.join("d").to_string_lossy().into_owned();
    let signal = |pid: u32, s: Signal| kill(Pid::from_raw(pid as i32), s).is_ok();
    let mut checked = 0;
    for _attempt in 0..5 {
        let mut coordinator = shmarrow_bin()
            .arg("--dir")
            .arg(&tmp.0)
            .args(["map", "d", "-c", "x", "--op", "square", "--processes", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first worker that has the segment mapped (so is past its start-up), stopped.
        // Its command line first: a child that has not exec'd the worker yet shares the
        // coordinator's memory, mapping included.
        let mut stopped = None;
        while stopped.is_none() && coordinator.try_wait().unwrap().is_none() {
            stopped = children(coordinator.id()).into_iter().find(|&w| {
                std::fs::read(format!("/proc/{w}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"worker"))
                    && std::fs::read_to_string(format!("/proc/{w}/maps"))
                        .is_ok_and(|maps| maps.contains(&segment))
                    && signal(w, Signal::SIGSTOP)
            });
        }
        let Some(worker) = stopped else {
            continue; // the workers finished first: try again
        };
        coordinator.kill().unwrap();
        coordinator.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ended(worker) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let survived = !ended(worker);
        if survived {
            signal(worker, Signal::SIGKILL); // clean up
        }
        assert!(!survived, "worker {worker} outlived its killed coordinator");
        checked += 1;
    }
    assert!(checked > 0, "no attempt stopped a worker in time");
}

#[test]
#[ignore = "needs root (switching to user nobody needs root); .ci/run runs it as root"]
fn another_user_cannot_map() {
    common::require_root("switching to user nobody needs root");
    let tmp = TempDir::new("w-perm");
    std::fs::set_permissions(&tmp.0, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    publish(&tmp, "d", 10, 10);
    std::fs::set_permissions(
        tmp.0.join("d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_shmarrow"))
            .arg("--dir")
            .arg(&tmp.0)
            .args(args)
            .output()
            .unwrap()
    };
    let read = as_nobody(&["reduce", "d", "-c", "n"]);
    assert!(
        read.status.success(),
        "a 0644 segment is readable by others"
    );
    let write = as_nobody(&["map", "d", "-c", "n", "--op", "square"]);
    let stderr = String::from_utf8_lossy(&write.stderr);
    assert_eq!(write.status.code(), Some(1));
    assert!(stderr.contains("permission denied"), "{stderr}");
}
