//! Command-line definitions (clap derive types only; handlers live in `cmd/`).

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};
use shmarrow::Lifetime;

use crate::format::InputFormat;

/// Most threads, or worker processes, one command starts.
pub const MAX_PARALLEL: u64 = shmarrow::reduce::MAX_THREADS as u64;
/// Most consumers a channel can have (the library's limit).
pub const MAX_CONSUMERS: u64 = shmarrow::MAX_CONSUMERS as u64;
/// Most rows per record batch (one batch is held in private memory).
pub const MAX_BATCH_ROWS: usize = 1 << 24;
/// Longest finite wait, in seconds (about 31 years); `inf` waits forever.
pub const MAX_SECONDS: f64 = 1e9;

/// Zero-copy Apache Arrow tables in named shared memory.
///
/// A segment is a file in the segment directory (default /dev/shm) whose bytes are an Arrow
/// IPC file: any Arrow reader maps it, e.g.
/// pyarrow.ipc.open_file(pyarrow.memory_map("/dev/shm/NAME")).read_all()
#[derive(Debug, Parser)]
#[command(name = "shmarrow", version, propagate_version = true)]
pub struct Cli {
    /// Segment directory [default: $SHMARROW_DIR if set and not empty, else /dev/shm].
    #[arg(long, global = true, value_parser = parse_dir)]
    pub dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// How much of a segment to validate when attaching it: auto (structure only for a
    /// segment shmarrow published that only this user or root can write, full otherwise),
    /// full (every offset, UTF-8 string and dictionary key), structure (refused if other
    /// users can write the file). See SECURITY.md.
    #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "full", "structure"])]
    pub validate: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish a sample table, attach it from another process and from Python, and clean up.
    #[command(
        after_help = "Example:\n  shmarrow demo --rows 1000000 --array-len 100000000 --workers 8"
    )]
    Demo(DemoArgs),
    /// Publish an Arrow IPC file or stream, Feather, Parquet or CSV file as a segment.
    #[command(
        after_help = "Examples:\n  shmarrow import trades data/trades.parquet --mode 640\n  shmarrow import quotes quotes.csv --delimiter ';' --schema quotes.schema.json"
    )]
    Import(ImportArgs),
    /// Generate data of a dataset schema (schemas/*.json) into a new segment.
    #[command(
        after_help = "Example:\n  shmarrow create frames --schema schemas/sensor_frames.json --rows 1000000 --seed 7"
    )]
    Create(CreateArgs),
    /// Write a segment to an Arrow IPC file or stream, Parquet or CSV.
    #[command(after_help = "Example:\n  shmarrow export trades trades.parquet")]
    Export(ExportArgs),
    /// Show the first rows of a segment as a table.
    #[command(after_help = "Example:\n  shmarrow head trades -n 5 --columns price,qty")]
    Head(HeadArgs),
    /// Size, used and free space of the segment directory, and what segments hold.
    #[command(after_help = "Example:\n  shmarrow df --json")]
    Df,
    /// List the segments in the directory (and unfinished publishes).
    #[command(after_help = "Example:\n  shmarrow ls --json")]
    Ls,
    /// Show a segment's schema, batches, metadata and per-column facts.
    #[command(after_help = "Example:\n  shmarrow inspect trades")]
    Inspect(InspectArgs),
    /// Remove segments (readers that attached keep their view).
    #[command(after_help = "Example:\n  shmarrow rm trades quotes")]
    Rm(RmArgs),
    /// Remove unfinished publishes of dead writers and `owner` segments of dead creators.
    #[command(after_help = "Example:\n  shmarrow gc --dry-run")]
    Gc(GcArgs),
    /// Statistics of numeric columns: count, null_count, sum, mean, var, std, min, max.
    #[command(
        after_help = "Examples:\n  shmarrow reduce trades --column price --ops mean,std --threads 2\n  shmarrow reduce trades --column price --processes 4 --json"
    )]
    Reduce(ReduceArgs),
    /// Transform a fixed-width column's values in place (readers see the new values).
    #[command(
        after_help = "Examples:\n  shmarrow map data --column x --op square --processes 4\n  shmarrow map data --column x --op clip 0 1"
    )]
    Map(MapArgs),
    /// Stream record batches into a channel (created here) from a file or a dataset schema.
    #[command(
        after_help = "Examples:\n  shmarrow produce ticks --schema schemas/trades.json --batches 1000 --rate 100 --consumers 2\n  shmarrow produce frames --from frames.arrow --slot-size 64M"
    )]
    Produce(ProduceArgs),
    /// Receive the record batches of a channel, in order, zero-copy.
    #[command(
        after_help = "Examples:\n  shmarrow consume ticks --count\n  shmarrow consume ticks --reduce price --json"
    )]
    Consume(ConsumeArgs),
    /// Serve the segment directory over Arrow Flight (list, get, put, remove, reduce).
    #[cfg(feature = "flight")]
    #[command(
        after_help = "Examples:\n  shmarrow serve\n  shmarrow serve --listen 0.0.0.0:8815 --allow-remote --token-file token --tls-cert cert.pem --tls-key key.pem\n\nAny Flight client works, e.g. Python:\n  pyarrow.flight.connect(\"grpc://127.0.0.1:8815\").do_get(pyarrow.flight.Ticket(b\"NAME\")).read_all()"
    )]
    Serve(ServeArgs),
    /// Copy a segment from a Flight server into a local segment (atomic, streaming).
    #[cfg(feature = "flight")]
    #[command(
        after_help = "Example:\n  shmarrow pull 10.0.0.7:8815 trades --as trades-copy --token-file token"
    )]
    Pull(PullArgs),
    /// Copy a local segment to a Flight server, which publishes it atomically.
    #[cfg(feature = "flight")]
    #[command(
        after_help = "Example:\n  shmarrow push trades 10.0.0.7:8815 --as trades-from-a --token-file token"
    )]
    Push(PushArgs),
    /// Internal: one worker process of `reduce --processes` or `map --processes`.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// How to parallelize: threads in this process, or worker processes attaching by name.
#[derive(Debug, Args)]
pub struct Parallel {
    /// Threads in this process, 1 to 256 (default: one per core).
    #[arg(long, conflicts_with = "processes", value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_PARALLEL))]
    pub threads: Option<usize>,
    /// Worker processes of this binary (1 to 256) that attach the segment by name, each taking
    /// a disjoint part; no locks in the hot path.
    #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_PARALLEL))]
    pub processes: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ReduceArgs {
    /// Segment name.
    pub name: String,
    /// Column (dotted path for struct children, e.g. pos.x); repeatable. Default: every
    /// numeric top-level column.
    #[arg(long = "column", short = 'c')]
    pub columns: Vec<String>,
    /// Which statistics to report (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub ops: Vec<shmarrow::reduce::Op>,
    /// Delta degrees of freedom for var/std.
    #[arg(long, default_value_t = 0)]
    pub ddof: u32,
    #[command(flatten)]
    pub parallel: Parallel,
    /// Pre-fault the mapping before reducing (MADV_POPULATE_READ): see bench/README.md.
    #[arg(long)]
    pub populate: bool,
    /// With --processes: keep the per-worker results segment under this name.
    #[arg(long, requires = "processes")]
    pub keep_results: Option<String>,
}

#[derive(Debug, Args)]
pub struct MapArgs {
    /// Segment name.
    pub name: String,
    /// Fixed-width column to transform.
    #[arg(long, short = 'c')]
    pub column: String,
    /// square | scale K | add K | clip LO HI.
    #[arg(long)]
    pub op: String,
    /// The op's constants (integers for integer columns: `3`, not `3.0`).
    #[arg(allow_negative_numbers = true)]
    pub args: Vec<String>,
    /// Integer results that do not fit the column's type wrap around (as NumPy does) instead
    /// of failing before anything is written.
    #[arg(long)]
    pub wrap: bool,
    #[command(flatten)]
    pub parallel: Parallel,
}

/// Where Flight clients reach a server, and how they prove who they are.
#[cfg(feature = "flight")]
#[derive(Debug, Args)]
pub struct FlightClientArgs {
    /// Send `authorization: Bearer <token>` with the token in this file.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// For grpc+tls:// addresses: the server's certificate or its CA (PEM).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

#[cfg(feature = "flight")]
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8815")]
    pub listen: String,
    /// Allow a non-loopback listen address (other machines can connect).
    #[arg(long)]
    pub allow_remote: bool,
    /// Require `authorization: Bearer <token>` on every call, the token being this file's
    /// content.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Serve TLS with this certificate (PEM; needs --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[cfg(feature = "flight")]
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Server address: HOST:PORT, grpc://HOST:PORT or grpc+tls://HOST:PORT.
    pub addr: String,
    /// Segment name on the server.
    pub name: String,
    /// Local segment name (default: the same name).
    #[arg(long = "as", value_name = "LOCAL")]
    pub as_name: Option<String>,
    /// Replace an existing local segment of that name.
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub client: FlightClientArgs,
}

#[cfg(feature = "flight")]
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Local segment name.
    pub name: String,
    /// Server address: HOST:PORT, grpc://HOST:PORT or grpc+tls://HOST:PORT.
    pub addr: String,
    /// Segment name on the server (default: the same name).
    #[arg(long = "as", value_name = "REMOTE")]
    pub as_name: Option<String>,
    /// Replace an existing segment of that name on the server.
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub client: FlightClientArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(subcommand)]
    pub job: WorkerJob,
    /// This worker's index (below --of).
    #[arg(long, global = true, default_value_t = 0)]
    pub index: usize,
    /// Number of workers.
    #[arg(long, global = true, default_value_t = 1, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_PARALLEL))]
    pub of: usize,
    /// The pid of the process that started this worker: the worker is killed when that process
    /// ends (however it ends), and does not start if it has already ended.
    #[arg(long, global = true)]
    pub coordinator: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum WorkerJob {
    /// Reduce this worker's chunks of each column into its rows of the results segment.
    Reduce {
        name: String,
        #[arg(long)]
        results: String,
        #[arg(long = "column")]
        columns: Vec<String>,
    },
    /// Apply the op to this worker's rows.
    Map {
        name: String,
        #[arg(long)]
        column: String,
        #[arg(long)]
        op: shmarrow::MapOp,
        #[arg(long)]
        wrap: bool,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows in the sample table (1 to 100,000,000; built in private memory first).
    #[arg(long, default_value_t = 4_000_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    pub rows: usize,
    /// Length of the float64 array of the lecture's examples (28.1, 28.2), 1 to 2^32.
    #[arg(long, default_value_t = 16_000_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1 << 32))]
    pub array_len: usize,
    /// Worker processes for the lecture's examples.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// Python interpreter with the shmarrow package (default: $SHMARROW_PYTHON, else
    /// .venv/bin/python if present); the Python step is skipped when there is none.
    #[arg(long)]
    pub python: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Segment name.
    pub name: String,
    /// Input file; `-` reads standard input (an IPC stream or CSV: Parquet and IPC files
    /// need a file that can be read at any offset).
    pub file: PathBuf,
    /// Input format (default: from the extension, else from the input's first bytes).
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// CSV: a schema file instead of inference (`{"fields": [{"name": "x", "type": "Float64"}]}`).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// CSV: field delimiter, one ASCII character [default: tab for .tsv and --format tsv,
    /// else ','].
    #[arg(long, value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// CSV: whether the first line names the columns.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub header: bool,
    /// CSV: rows read to infer the schema (at least 1). A column empty in all of them is
    /// read as text, with a warning.
    #[arg(long, default_value_t = 10_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub infer_rows: usize,
    /// Rows per record batch when reading Parquet or CSV (bounds private memory).
    #[arg(long, default_value_t = 65_536, value_parser = parse_rows)]
    pub batch_rows: usize,
    #[command(flatten)]
    pub publish: PublishArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "schema"])))]
pub struct ProduceArgs {
    /// Channel name.
    pub name: String,
    /// Send the batches of this Arrow IPC file or stream, or Parquet file.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Send generated batches of this dataset schema (schemas/*.json).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Batches to send (with --from: cycle through the file until this many; default: the
    /// file once, or 100 generated).
    #[arg(long)]
    pub batches: Option<u64>,
    /// Rows per generated batch.
    #[arg(long, default_value_t = 65_536, value_parser = parse_rows)]
    pub batch_rows: usize,
    /// Seed of generated data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// At most this many batches per second, at least 1e-9 (default: as fast as consumers
    /// allow).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Slots in the ring, 1 to 65536.
    #[arg(long, default_value_t = 8, value_parser = RangedU64ValueParser::<u32>::new().range(1..=65_536))]
    pub slots: u32,
    /// Bytes per slot (e.g. 16M, 1.5GiB), 128 bytes to 1 TiB: the largest batch that fits,
    /// plus 64.
    #[arg(long, default_value = "16M", value_parser = parse_slot_size)]
    pub slot_size: u64,
    /// Overwrite batches slow consumers have not read (they are told how many they missed).
    #[arg(long)]
    pub lossy: bool,
    /// Wait until this many consumers (at most 4096) have subscribed before sending.
    #[arg(long, default_value_t = 0, value_parser = RangedU64ValueParser::<u32>::new().range(0..=MAX_CONSUMERS))]
    pub consumers: u32,
    /// Give up waiting for consumers or for ring space after this many seconds (`inf`: wait
    /// forever).
    #[arg(long, default_value = "inf", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub timeout: Timeout,
    /// Keep the channel segment after the stream ends (a persistent channel). Default: an
    /// owner channel, removed when the stream ends (consumers that are still reading keep
    /// their mapping) and by `shmarrow gc` if this process dies first.
    #[arg(long)]
    pub keep: bool,
    /// Permission bits of the channel, in octal.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    pub mode: u32,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Channel name.
    pub name: String,
    /// Statistics of this numeric column over the whole stream.
    #[arg(long)]
    pub reduce: Option<String>,
    /// Print only the totals (batches, rows, missed).
    #[arg(long)]
    pub count: bool,
    /// Stop after this many batches.
    #[arg(long)]
    pub batches: Option<u64>,
    /// Wait up to this many seconds for the channel to appear and for each batch (`inf`:
    /// wait forever).
    #[arg(long, default_value = "10", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub timeout: Timeout,
    /// Spin this many microseconds (at most 1000000) before sleeping on each wait (lower
    /// latency, burns a core).
    #[arg(long, default_value_t = 0, value_parser = RangedU64ValueParser::<u64>::new().range(0..=1_000_000))]
    pub spin_us: u64,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Segment name.
    pub name: String,
    /// Dataset schema file (format: schemas/README.md).
    #[arg(long)]
    pub schema: PathBuf,
    /// Rows to generate.
    #[arg(long)]
    pub rows: u64,
    /// Seed: the same seed gives the same data, whatever the thread count.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per record batch.
    #[arg(long, default_value_t = 65_536, value_parser = parse_rows)]
    pub batch_rows: usize,
    #[command(flatten)]
    pub publish: PublishArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Segment name.
    pub name: String,
    /// Output file (must not exist, unless --force); `-` or /dev/stdout writes to standard
    /// output. The file gets the segment's permission bits.
    pub file: PathBuf,
    /// Output format (default: from the extension; an IPC stream on standard output).
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Replace an existing regular file (never a symlink, FIFO, device or directory).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct HeadArgs {
    /// Segment name.
    pub name: String,
    /// Rows to show.
    #[arg(short = 'n', long = "rows", default_value_t = 10)]
    pub rows: usize,
    /// Columns to show (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
}

/// How a verb publishes the segment it makes (`import`, `create`).
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Replace an existing segment of that name (readers of the old one keep it).
    #[arg(long)]
    pub replace: bool,
    /// Permission bits, in octal.
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    pub mode: u32,
    /// `persistent` (until `rm`). `owner` is refused: this command exits right after
    /// publishing, so the segment would be garbage at once.
    #[arg(long, default_value = "persistent", value_parser = parse_lifetime)]
    pub lifetime: Lifetime,
}

impl PublishArgs {
    /// The library's options for these flags.
    pub fn options(&self) -> shmarrow::CreateOptions {
        shmarrow::CreateOptions::default()
            .replace(self.replace)
            .mode(self.mode)
            .lifetime(self.lifetime)
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Segment name.
    pub name: String,
    /// Fail if any buffer cannot be used in place.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Segment names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A wait: `None` waits forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<Duration>);

/// Seconds to wait: a number from 0 to [`MAX_SECONDS`], or `inf` (forever).
fn parse_seconds(s: &str) -> Result<Timeout, String> {
    match s.trim().parse::<f64>() {
        Ok(secs) if secs == f64::INFINITY => Ok(Timeout(None)),
        Ok(secs) if (0.0..=MAX_SECONDS).contains(&secs) => {
            Ok(Timeout(Some(Duration::from_secs_f64(secs))))
        }
        Ok(secs) if secs > MAX_SECONDS => Err(format!(
            "{s} seconds is more than {MAX_SECONDS:e}; pass inf to wait forever"
        )),
        _ => Err(format!(
            "{s:?} is not a number of seconds (0 or more, or inf)"
        )),
    }
}

/// Batches per second: finite, at least 1e-9 (one batch per 31 years).
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 1.0 / MAX_SECONDS => Ok(rate),
        _ => Err(format!(
            "{s:?} is not a rate in batches per second (a finite number, at least 1e-9)"
        )),
    }
}

fn parse_rows(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_BATCH_ROWS).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a number of rows per batch (1 to {MAX_BATCH_ROWS})"
        )),
    }
}

fn parse_dir(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("the segment directory is empty; name a directory (default /dev/shm)".into());
    }
    Ok(s.into())
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(format!("{s:?} is not one ASCII character")),
    }
}

fn parse_lifetime(s: &str) -> Result<Lifetime, String> {
    match s.parse()? {
        Lifetime::Owner => Err(
            "an `owner` segment goes when its creator exits, and this command \
             exits as soon as it has published: the segment would be gone at the next `gc`. \
             Publish it `persistent` (the default) and `shmarrow rm` it when done, or create it \
             with lifetime=\"owner\" from the Python or Rust process that uses it"
                .into(),
        ),
        lifetime => Ok(lifetime),
    }
}

/// A slot size: 128 bytes to 1 TiB.
fn parse_slot_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        bytes @ 128..=0x100_0000_0000 => Ok(bytes),
        _ => Err(format!("{s:?}: a slot holds 128 bytes to 1 TiB")),
    }
}

/// `64M`, `1.5GiB`, `4096`: bytes (K/M/G/T are powers of 1024, with or without `iB`/`B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let num: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 64M, 1.5GiB)"))?;
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{s:?}: unknown unit (K, M, G, T)")),
    };
    // Whole numbers exactly; fractions through f64 (below 2^63, where it is exact enough).
    let exact = digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift));
    let bytes = num * (1u64 << shift) as f64;
    match exact {
        Some(bytes) => Ok(bytes),
        None if (0.0..9.2e18).contains(&bytes) => Ok(bytes as u64),
        None => Err(format!("{s:?} is not a size below 8 EiB")),
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode between 000 and 777")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert_eq!(super::parse_size("64M"), Ok(64 << 20));
        assert_eq!(super::parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(super::parse_size("2kb"), Ok(2048));
        assert!(super::parse_size("12 parsecs").is_err());
        assert!(super::parse_size("-1M").is_err());
        assert_eq!(super::parse_size("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "18446744073709551616",
            "16E",
            "nan",
            "inf",
            "1e300",
            "17179869184T",
        ] {
            assert!(super::parse_size(bad).is_err(), "{bad}");
        }
    }
}
