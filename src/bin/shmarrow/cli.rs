//! Command-line definitions (clap derive types only; handlers live in `cmd/`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use shmarrow::Lifetime;

/// Zero-copy Apache Arrow tables in named shared memory.
///
/// A segment is a file in the segment directory (default /dev/shm) whose bytes are an Arrow
/// IPC file: any Arrow reader maps it, e.g.
/// pyarrow.ipc.open_file(pyarrow.memory_map("/dev/shm/NAME")).read_all()
#[derive(Debug, Parser)]
#[command(name = "shmarrow", version, propagate_version = true)]
pub struct Cli {
    /// Segment directory.
    #[arg(long, global = true, env = "SHMARROW_DIR", default_value = shmarrow::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
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
    /// Threads in this process (default: one per core).
    #[arg(long, conflicts_with = "processes")]
    pub threads: Option<usize>,
    /// Worker processes of this binary that attach the segment by name, each taking a
    /// disjoint part; no locks in the hot path.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub processes: Option<u32>,
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
    /// This worker's index.
    #[arg(long, global = true, default_value_t = 0)]
    pub index: usize,
    /// Number of workers.
    #[arg(long, global = true, default_value_t = 1)]
    pub of: usize,
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
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows in the sample table.
    #[arg(long, default_value_t = 4_000_000)]
    pub rows: usize,
    /// Length of the float64 array of the lecture's examples (28.1, 28.2).
    #[arg(long, default_value_t = 16_000_000)]
    pub array_len: usize,
    /// Worker processes for the lecture's examples.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// Python interpreter with the shmarrow package (default: $SHMARROW_PYTHON, else
    /// .venv/bin/python if present); the Python step is skipped when there is none.
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// File formats `import` reads and `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Arrow IPC file (also Feather v2): `.arrow`, `.feather`, `.ipc`.
    Ipc,
    /// Arrow IPC stream: `.arrows`, `.stream`.
    Stream,
    /// Parquet: `.parquet`, `.pq`.
    Parquet,
    /// CSV: `.csv`, `.tsv`.
    Csv,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Segment name.
    pub name: String,
    /// Input file.
    pub file: PathBuf,
    /// Input format (default: from the extension, else from the file's first bytes).
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// CSV: a schema file instead of inference (`{"fields": [{"name": "x", "type": "Float64"}]}`).
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// CSV: field delimiter.
    #[arg(long, default_value_t = ',')]
    pub delimiter: char,
    /// CSV: whether the first line names the columns.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub header: bool,
    /// CSV: rows read to infer the schema.
    #[arg(long, default_value_t = 10_000)]
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
    /// At most this many batches per second (default: as fast as consumers allow).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Slots in the ring.
    #[arg(long, default_value_t = 8)]
    pub slots: u32,
    /// Bytes per slot (e.g. 16M, 1.5GiB): the largest batch that fits, plus 64.
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    pub slot_size: u64,
    /// Overwrite batches slow consumers have not read (they are told how many they missed).
    #[arg(long)]
    pub lossy: bool,
    /// Wait until this many consumers have subscribed before sending.
    #[arg(long, default_value_t = 0)]
    pub consumers: usize,
    /// Give up waiting for consumers or for ring space after this many seconds.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Keep the channel segment after the stream ends (default: remove it; consumers that
    /// are still reading keep their mapping).
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
    /// Wait up to this many seconds for the channel to appear and for each batch.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Spin this many microseconds before sleeping on each wait (lower latency, burns a core).
    #[arg(long, default_value_t = 0)]
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
    /// Output file (must not exist, unless --force).
    pub file: PathBuf,
    /// Output format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Replace an existing output file.
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
    /// `persistent` (until `rm`) or `owner` (reclaimed by `gc` once this process is gone).
    #[arg(long, default_value = "persistent")]
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

fn parse_rows(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number of rows")),
    }
}

/// `64M`, `1.5GiB`, `4096`: bytes (K/M/G/T are powers of 1024, with or without `iB`/`B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
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
    let bytes = num * (1u64 << shift) as f64;
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
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
    }
}
