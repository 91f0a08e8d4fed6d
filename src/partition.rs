//! The partitioned multi-process pattern (the lecture's production design): P worker
//! processes attach a segment by name, each reduces its share of the chunks, and writes the
//! partials into its own rows of a small *results segment* (itself an Arrow table with one row
//! per (column, chunk)), in place, with no lock; the coordinator merges every chunk's partial
//! in chunk order.
//!
//! [`reduce_by_processes`] is the coordinator: it [`allocate_results`], publishes it, starts
//! the workers with a command the caller builds for each [`ReduceTask`] (this binary's
//! `shmarrow worker reduce`, `python -m shmarrow._worker`, ...), waits for all of them
//! ([`run_workers`]), and gives the rows back ([`read_partials`]), in chunk order, to
//! [`crate::reduce::merge_in_order`]: the same merge of the same chunk partials as
//! [`Segment::reduce`] with threads, so the result is bit for bit the same for any number of
//! processes or threads. A worker runs [`ReduceTask::run`]: it computes the [`Partial`] of
//! each chunk of its share ([`worker_chunks`]) and [`write_partials`] them into its rows,
//! marking each `done` last. Any Arrow reader can inspect the partials (`shmarrow inspect`,
//! pyarrow).
//!
//! ```no_run
//! # fn main() -> shmarrow::Result<()> {
//! use shmarrow::SegmentDir;
//! use shmarrow::partition::{ProcessOptions, reduce_by_processes};
//!
//! let dir = SegmentDir::from_env();
//! // Each worker is this crate's `shmarrow worker reduce ...` (any program that calls
//! // `ReduceTask::run` will do).
//! let reduced = reduce_by_processes(&dir, "prices", &["price"], 4, &ProcessOptions::default(), |task| {
//!     let mut command = std::process::Command::new("shmarrow");
//!     command.arg("--dir").arg(dir.path()).arg("worker").args(task.args());
//!     command
//! })?;
//! println!("mean {}", reduced.stats[0].mean);
//! # Ok(()) }
//! ```

use std::ops::Range;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow_array::types::{Decimal128Type, Float64Type, UInt8Type, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrowPrimitiveType, Decimal128Array, Float64Array, PrimitiveArray, UInt8Array,
    UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};

use crate::attach::Segment;
use crate::error::{Error, Result};
use crate::inplace::WritableSegment;
use crate::name::SegmentDir;
use crate::publish::{CreateOptions, Created};
use crate::reduce::{Number, Partial, Stats, merge_in_order};

/// The results table's schema: one row per (column, chunk), in that order.
pub fn results_schema() -> Schema {
    let f64f = |n: &str| Field::new(n, DataType::Float64, false);
    let dec = |n: &str| Field::new(n, DataType::Decimal128(38, 0), false);
    Schema::new(vec![
        Field::new("worker", DataType::UInt32, false),
        Field::new("column", DataType::UInt32, false),
        Field::new("chunk", DataType::UInt64, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("null_count", DataType::UInt64, false),
        dec("sum_int"),
        f64f("sum"),
        f64f("sum_low"),
        f64f("mean"),
        f64f("mean_low"),
        f64f("m2"),
        dec("min_int"),
        dec("max_int"),
        f64f("min"),
        f64f("max"),
        // bit 0: integer column, bit 1: has min/max, bit 2: NaN seen
        Field::new("flags", DataType::UInt8, false),
        // written last by the worker: 1 when the row is complete
        Field::new("done", DataType::UInt8, false),
    ])
}

/// Create and publish the results segment for `workers` workers over columns of
/// `chunk_counts[c]` chunks each: one row per (column, chunk), column after column, each row
/// labelled with the worker that owns the chunk ([`worker_chunks`]).
///
/// # Errors
/// As [`SegmentDir::allocate`] and [`crate::Allocation::publish`].
pub fn allocate_results(
    dir: &SegmentDir,
    name: &str,
    workers: usize,
    chunk_counts: &[usize],
    options: &CreateOptions,
) -> Result<Created> {
    let rows: usize = chunk_counts.iter().sum();
    let alloc = dir.allocate(name, &results_schema(), rows, options)?;
    let labels = chunk_counts.iter().enumerate().flat_map(|(c, &chunks)| {
        (0..workers.max(1)).flat_map(move |w| {
            worker_chunks(chunks, w, workers).map(move |chunk| (w as u32, c as u32, chunk as u64))
        })
    });
    fill::<UInt32Type>(&alloc, "worker", 0..rows, labels.clone().map(|l| l.0))?;
    fill::<UInt32Type>(&alloc, "column", 0..rows, labels.clone().map(|l| l.1))?;
    fill::<UInt64Type>(&alloc, "chunk", 0..rows, labels.map(|l| l.2))?;
    alloc.publish()
}

/// The chunk indices worker `worker` of `workers` reduces, out of `chunks`.
pub fn worker_chunks(chunks: usize, worker: usize, workers: usize) -> Range<usize> {
    let w = workers.max(1);
    (chunks * worker / w)..(chunks * (worker + 1) / w)
}

/// The first row of column `column`'s chunks in a results segment made by
/// [`allocate_results`] with `chunk_counts`.
pub fn first_row(chunk_counts: &[usize], column: usize) -> usize {
    chunk_counts[..column].iter().sum()
}

/// Write `partials` into rows `first..first + partials.len()` of an opened results segment,
/// the `done` flags last.
///
/// # Errors
/// [`Error::InvalidColumn`] if the segment is not a results table or has not these rows.
pub fn write_partials(results: &WritableSegment, first: usize, partials: &[Partial]) -> Result<()> {
    let float = |n: Option<Number>| match n {
        Some(Number::Float(x)) => x,
        _ => 0.0,
    };
    let int = |n: Option<Number>| match n {
        Some(Number::Int(i)) => i,
        _ => 0,
    };
    let rows = || first..first + partials.len();
    let each = || partials.iter();
    fill::<UInt64Type>(results, "count", rows(), each().map(|p| p.count))?;
    fill::<UInt64Type>(results, "null_count", rows(), each().map(|p| p.null_count))?;
    fill::<Decimal128Type>(results, "sum_int", rows(), each().map(|p| int(Some(p.sum))))?;
    fill::<Float64Type>(results, "sum", rows(), each().map(|p| float(Some(p.sum))))?;
    fill::<Float64Type>(results, "sum_low", rows(), each().map(|p| p.sum_low))?;
    fill::<Float64Type>(results, "mean", rows(), each().map(|p| p.mean))?;
    fill::<Float64Type>(results, "mean_low", rows(), each().map(|p| p.mean_low))?;
    fill::<Float64Type>(results, "m2", rows(), each().map(|p| p.m2))?;
    fill::<Decimal128Type>(results, "min_int", rows(), each().map(|p| int(p.min)))?;
    fill::<Decimal128Type>(results, "max_int", rows(), each().map(|p| int(p.max)))?;
    fill::<Float64Type>(results, "min", rows(), each().map(|p| float(p.min)))?;
    fill::<Float64Type>(results, "max", rows(), each().map(|p| float(p.max)))?;
    let flags = |p: &Partial| {
        u8::from(matches!(p.sum, Number::Int(_)))
            | (u8::from(p.min.is_some() && p.max.is_some()) << 1)
            | (u8::from(p.nan) << 2)
    };
    fill::<UInt8Type>(results, "flags", rows(), each().map(flags))?;
    // `done` last: the coordinator reads rows only after the worker has exited, and a row
    // without `done` means the worker died before finishing it.
    fill::<UInt8Type>(results, "done", rows(), each().map(|_| 1))
}

/// Set rows `rows` of a results column to `values`, through slices over those rows only
/// (other workers write the other rows meanwhile).
fn fill<T: ArrowPrimitiveType>(
    results: &WritableSegment,
    column: &str,
    rows: Range<usize>,
    values: impl Iterator<Item = T::Native>,
) -> Result<()> {
    let mut slices = results.values_mut_rows::<T>(column, rows.start as u64..rows.end as u64)?;
    let mut written = 0;
    for (slot, value) in slices.batches_mut().into_iter().flatten().zip(values) {
        *slot = value;
        written += 1;
    }
    if written < rows.len() {
        return Err(Error::InvalidColumn {
            name: results.segment().info().name.clone(),
            column: column.into(),
            reason: format!("results table has no row {}", rows.start + written),
        });
    }
    Ok(())
}

/// One row of a results segment.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialRow {
    /// The worker that wrote it.
    pub worker: u32,
    /// Index of the reduced column.
    pub column: u32,
    /// Index of the chunk in the column.
    pub chunk: u64,
    /// Whether the worker finished writing the row.
    pub done: bool,
    /// The partial result.
    pub partial: Partial,
}

/// The rows of a results segment, in row order.
///
/// # Errors
/// [`Error::InvalidColumn`] if the segment is not a results table.
pub fn read_partials(results: &Segment) -> Result<Vec<PartialRow>> {
    let name = &results.info().name;
    let mut rows = Vec::new();
    for batch in results.batches() {
        let col = |c: &str| {
            batch
                .column_by_name(c)
                .cloned()
                .ok_or_else(|| Error::InvalidColumn {
                    name: name.clone(),
                    column: c.into(),
                    reason: "not a results table".into(),
                })
        };
        macro_rules! get {
            ($c:expr, $t:ty) => {
                col($c)?
                    .as_any()
                    .downcast_ref::<$t>()
                    .cloned()
                    .ok_or_else(|| Error::InvalidColumn {
                        name: name.clone(),
                        column: $c.into(),
                        reason: "unexpected type".into(),
                    })?
            };
        }
        let worker: UInt32Array = get!("worker", UInt32Array);
        let column: UInt32Array = get!("column", UInt32Array);
        let chunk: UInt64Array = get!("chunk", UInt64Array);
        let count: UInt64Array = get!("count", UInt64Array);
        let nulls: UInt64Array = get!("null_count", UInt64Array);
        let f = |c: &str| -> Result<Float64Array> { Ok(get!(c, Float64Array)) };
        let d = |c: &str| -> Result<Decimal128Array> { Ok(get!(c, Decimal128Array)) };
        let (sum_int, min_int, max_int) = (d("sum_int")?, d("min_int")?, d("max_int")?);
        let (sum, sum_low, mean, mean_low, m2, min, max) = (
            f("sum")?,
            f("sum_low")?,
            f("mean")?,
            f("mean_low")?,
            f("m2")?,
            f("min")?,
            f("max")?,
        );
        let flags: PrimitiveArray<UInt8Type> = get!("flags", UInt8Array);
        let done: UInt8Array = get!("done", UInt8Array);
        for i in 0..batch.num_rows() {
            let int = flags.value(i) & 1 != 0;
            let num = |iv: &Decimal128Array, fv: &Float64Array| {
                if int {
                    Number::Int(iv.value(i))
                } else {
                    Number::Float(fv.value(i))
                }
            };
            let has = flags.value(i) & 2 != 0;
            rows.push(PartialRow {
                worker: worker.value(i),
                column: column.value(i),
                chunk: chunk.value(i),
                done: done.value(i) == 1,
                partial: Partial {
                    count: count.value(i),
                    null_count: nulls.value(i),
                    sum: num(&sum_int, &sum),
                    sum_low: sum_low.value(i),
                    mean: mean.value(i),
                    mean_low: mean_low.value(i),
                    m2: m2.value(i),
                    min: has.then(|| num(&min_int, &min)),
                    max: has.then(|| num(&max_int, &max)),
                    nan: flags.value(i) & 4 != 0,
                },
            });
        }
    }
    Ok(rows)
}

/// One worker's part of a partitioned reduce: what it is told on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReduceTask {
    /// The segment reduced.
    pub name: String,
    /// The results segment the worker writes its rows into.
    pub results: String,
    /// The columns reduced, in order.
    pub columns: Vec<String>,
    /// This worker's index, below `workers`.
    pub worker: usize,
    /// How many workers share the chunks.
    pub workers: usize,
}

impl ReduceTask {
    /// The task as the arguments of `shmarrow worker`: `reduce NAME --results R --column C...
    /// --index I --of N`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "reduce".to_owned(),
            self.name.clone(),
            "--results".into(),
            self.results.clone(),
        ];
        for c in &self.columns {
            args.extend(["--column".to_owned(), c.clone()]);
        }
        args.extend([
            "--index".to_owned(),
            self.worker.to_string(),
            "--of".into(),
            self.workers.to_string(),
        ]);
        args
    }

    /// The worker's body, in the worker process: attach the segment and the results segment
    /// by name, reduce this worker's chunks of each column (one thread: the processes are the
    /// parallelism) and write their partials into its own rows.
    ///
    /// # Errors
    /// As [`SegmentDir::attach`], [`SegmentDir::open_writable`], [`Segment::chunk_partials`]
    /// and [`write_partials`]; [`Error::Workers`] if `worker` is not below `workers`.
    pub fn run(&self, dir: &SegmentDir) -> Result<()> {
        if self.worker >= self.workers {
            return Err(Error::Workers {
                workers: self.workers,
                failures: vec![format!(
                    "worker index {} is not below {}",
                    self.worker, self.workers
                )],
            });
        }
        let segment = dir.attach(&self.name)?;
        let out = dir.open_writable(&self.results)?;
        // The rows of each column's chunks follow those of the columns before it.
        let mut first = 0;
        for column in &self.columns {
            let count = segment.chunk_count(column)?;
            let chunks = worker_chunks(count, self.worker, self.workers);
            let (_, partials) = segment.chunk_partials(column, chunks.clone(), Some(1))?;
            write_partials(&out, first + chunks.start, &partials)?;
            first += count;
        }
        Ok(())
    }
}

/// Options of [`reduce_by_processes`].
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    ddof: u32,
    keep_results: Option<String>,
}

impl ProcessOptions {
    /// Delta degrees of freedom for var/std (default 0).
    pub fn ddof(mut self, ddof: u32) -> Self {
        self.ddof = ddof;
        self
    }

    /// Keep the results segment, persistent, under this name (default: a fresh `owner`
    /// segment, removed when the reduction ends, whether it succeeds or fails).
    pub fn keep_results(mut self, name: Option<String>) -> Self {
        self.keep_results = name;
        self
    }
}

/// What [`reduce_by_processes`] found and cost.
#[derive(Debug, Clone)]
pub struct ProcessReduction {
    /// One per column, merged over all chunks: equal, bit for bit, to [`Segment::reduce`].
    pub stats: Vec<Stats>,
    /// `per_worker[w][c]`: column `c` over worker `w`'s chunks only.
    pub per_worker: Vec<Vec<Stats>>,
    /// The workers' run.
    pub workers: WorkerReport,
    /// Size of the results segment (all that came back from the workers).
    pub results_bytes: u64,
}

/// Reduce `columns` of segment `name` (every numeric top-level column if empty) by `workers`
/// processes (at least 1), `start` building the command of each (it is started with stdin
/// and stdout on `/dev/null`, stderr captured for the error).
///
/// # Errors
/// As [`SegmentDir::attach`] and [`Segment::chunk_count`] for the segment and its columns,
/// [`SegmentDir::allocate`] for the results segment; [`Error::Workers`] if a worker fails, is
/// killed or leaves a row unwritten (no partial result is returned); [`Error::Io`] if a
/// worker cannot be started.
pub fn reduce_by_processes(
    dir: &SegmentDir,
    name: &str,
    columns: &[&str],
    workers: usize,
    options: &ProcessOptions,
    mut start: impl FnMut(&ReduceTask) -> Command,
) -> Result<ProcessReduction> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let workers = workers.max(1);
    let segment = dir.attach(name)?;
    let columns = segment.reduce_columns(columns);
    let chunk_counts = columns
        .iter()
        .map(|c| segment.chunk_count(c))
        .collect::<Result<Vec<_>>>()?;
    let results = options.keep_results.clone().unwrap_or_else(|| {
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        format!("shmarrow-results-{}-{call}", std::process::id())
    });
    let lifetime = if options.keep_results.is_some() {
        crate::Lifetime::Persistent
    } else {
        crate::Lifetime::Owner
    };
    let create = CreateOptions::default().replace(false).lifetime(lifetime);
    // An owner segment: removed when this handle drops (also on failure), unless kept.
    let created = allocate_results(dir, &results, workers, &chunk_counts, &create)?;
    let report = run_workers(workers, |worker| {
        start(&ReduceTask {
            name: name.to_owned(),
            results: results.clone(),
            columns: columns.clone(),
            worker,
            workers,
        })
    })?;
    let rows = read_partials(&dir.attach(&results)?)?;
    if let Some(row) = rows.iter().find(|r| !r.done) {
        return Err(Error::Workers {
            workers,
            failures: vec![format!(
                "worker {} exited without writing its result for chunk {} of column {}",
                row.worker, row.chunk, columns[row.column as usize]
            )],
        });
    }
    let mut stats = Vec::with_capacity(columns.len());
    let mut per_worker = vec![Vec::with_capacity(columns.len()); workers];
    for (c, column) in columns.iter().enumerate() {
        let first = first_row(&chunk_counts, c);
        let partials: Vec<Partial> = rows
            .get(first..first + chunk_counts[c])
            .ok_or_else(|| Error::InvalidColumn {
                name: results.clone(),
                column: column.clone(),
                reason: "the results segment lacks rows of this column".into(),
            })?
            .iter()
            .map(|r| r.partial)
            .collect();
        // Whether it is an integer column (an empty range: no chunk is reduced here).
        let int = segment.chunk_partials(column, 0..0, None)?.0;
        stats.push(merge_in_order(int, &partials).finish(column, options.ddof));
        for (w, mine) in per_worker.iter_mut().enumerate() {
            let own = &partials[worker_chunks(partials.len(), w, workers)];
            mine.push(merge_in_order(int, own).finish(column, options.ddof));
        }
    }
    let results_bytes = created.bytes();
    if options.keep_results.is_some() {
        created.disown();
    }
    Ok(ProcessReduction {
        stats,
        per_worker,
        workers: report,
        results_bytes,
    })
}

/// What a run of worker processes cost.
#[derive(Debug, Clone, Copy)]
pub struct WorkerReport {
    /// Wall time from the first start to the last exit.
    pub elapsed: Duration,
    /// Bytes sent to the workers: their command lines (program and arguments; no data).
    pub argv_bytes: usize,
}

/// Start `workers` processes, `start(i)` building worker `i`'s command (stdin and stdout on
/// `/dev/null`, stderr captured), and wait for all of them.
///
/// # Errors
/// [`Error::Workers`] naming every worker that failed or was killed, with its pid and last
/// line on stderr (never a partial success); [`Error::Io`] if one cannot be started, after the
/// ones already started have exited.
pub fn run_workers(
    workers: usize,
    mut start: impl FnMut(usize) -> Command,
) -> Result<WorkerReport> {
    let t0 = Instant::now();
    let mut argv_bytes = 0;
    let mut children = Vec::with_capacity(workers);
    let mut failures = Vec::new();
    for i in 0..workers {
        let mut command = start(i);
        argv_bytes += std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| a.len() + 1)
            .sum::<usize>();
        let spawned = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => children.push((i, child)),
            Err(source) => {
                // Those already started run to their end before the error is returned.
                for (_, child) in children {
                    let _ = child.wait_with_output();
                }
                return Err(Error::Io {
                    op: "start worker process",
                    path: command.get_program().into(),
                    source,
                });
            }
        }
    }
    for (i, child) in children {
        let pid = child.id();
        let out = child.wait_with_output().map_err(|source| Error::Io {
            op: "wait for worker process",
            path: format!("pid {pid}").into(),
            source,
        })?;
        if out.status.success() {
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("").trim();
        let how = match std::os::unix::process::ExitStatusExt::signal(&out.status) {
            Some(sig) => format!("was killed by signal {sig}"),
            None => format!("failed ({})", out.status),
        };
        let said = if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        };
        failures.push(format!("worker {i} (pid {pid}) {how}{said}"));
    }
    if !failures.is_empty() {
        return Err(Error::Workers { workers, failures });
    }
    Ok(WorkerReport {
        elapsed: t0.elapsed(),
        argv_bytes,
    })
}
