//! The one error type of the library. Every variant names the segment it concerns, so a
//! message read on its own says what went wrong and where.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a segment.
///
/// `Display` says what happened to which segment; the OS or arrow error behind it is the
/// [`source`](std::error::Error::source) (print the chain, e.g. with `{:#}` in anyhow).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name breaks the naming rule (see [`crate::check_name`]).
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// No segment of that name exists in the directory.
    #[error("segment {name:?} not found in {}", dir.display())]
    NotFound {
        /// The segment name.
        name: String,
        /// The segment directory searched.
        dir: PathBuf,
    },
    /// The segment directory itself does not exist (or is not a directory).
    #[error(
        "segment directory {} does not exist or is not a directory{}",
        dir.display(),
        name.as_ref().map(|n| format!(" (for segment {n:?})")).unwrap_or_default()
    )]
    NoDirectory {
        /// The directory.
        dir: PathBuf,
        /// The segment sought there, if one was.
        name: Option<String>,
    },
    /// Creating with `replace(false)` found a segment of that name already.
    #[error("segment {name:?} already exists in {}", dir.display())]
    Exists {
        /// The segment name.
        name: String,
        /// The segment directory.
        dir: PathBuf,
    },
    /// The directory cannot hold the segment; nothing was written.
    #[error("no space for segment {name:?}: {needed} bytes needed in {}", dir.display())]
    NoSpace {
        /// The segment name.
        name: String,
        /// Exact size of the segment in bytes (for an [`allocate`](crate::SegmentDir::allocate)
        /// refused before its layout was made: the bytes of its values, a lower bound,
        /// saturated at `u64::MAX`).
        needed: u64,
        /// The segment directory.
        dir: PathBuf,
    },
    /// The operating system refused access (mode bits, another user's segment).
    #[error("permission denied for segment {name:?}")]
    PermissionDenied {
        /// The segment name.
        name: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Something other than a regular file sits at the segment's name (a symlink, FIFO,
    /// directory, device): refused, never followed or opened.
    #[error("segment {name:?} is not a regular file ({kind}); refusing to open it")]
    NotAFile {
        /// The segment name.
        name: String,
        /// What was found instead.
        kind: &'static str,
    },
    /// The bytes are not a valid Arrow IPC file (garbage, truncated, lying offsets).
    #[error("segment {name:?} is corrupt: {reason}")]
    Corrupt {
        /// The segment name.
        name: String,
        /// What check failed.
        reason: String,
    },
    /// Valid Arrow data this crate cannot read as it is (a compressed big-endian batch, a
    /// batch that decompresses beyond [`MAX_DECOMPRESSED_BATCH`](crate::ipc::MAX_DECOMPRESSED_BATCH),
    /// a message type other than schema, dictionary and record batch). Never decoded wrongly.
    #[error("segment {name:?}: unsupported: {what}")]
    Unsupported {
        /// The segment (or input) name.
        name: String,
        /// What cannot be read, and why.
        what: String,
    },
    /// The segment is a channel (a ring of batches), not a table: read it with
    /// [`SegmentDir::subscribe`](crate::SegmentDir::subscribe).
    #[error(
        "segment {name:?} is a channel, not a table: use subscribe (`shmarrow consume`) to read it"
    )]
    IsChannel {
        /// The segment name.
        name: String,
    },
    /// Structure-only validation was asked of a file other users can write: refused, since
    /// they could have written offsets or UTF-8 that are not valid (see
    /// [`Validate`](crate::Validate)).
    #[error("segment {name:?} cannot be attached with structure-only validation: {reason}")]
    Untrusted {
        /// The segment name.
        name: String,
        /// Who else can write it.
        reason: String,
    },
    /// Strict attach: these columns could not be used in place and would need a copy.
    #[error("segment {name:?} is not zero-copy readable: column(s) {} would need a copy", columns.join(", "))]
    NotZeroCopy {
        /// The segment name.
        name: String,
        /// Dotted paths of the columns whose buffers would be copied.
        columns: Vec<String>,
    },
    /// A column path names no column, or a column of a type the operation does not support.
    #[error("segment {name:?}: column {column:?}: {reason}")]
    InvalidColumn {
        /// The segment name.
        name: String,
        /// The column path as given (`pos.x` for a struct child).
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `map` constant does not fit the column's type (`0.5`, NaN or `2**40` for an int32
    /// column): nothing was written.
    #[error("segment {name:?}: column {column:?}: {reason}")]
    InvalidConstant {
        /// The segment name.
        name: String,
        /// The column path as given.
        column: String,
        /// Which constant and why.
        reason: String,
    },
    /// An integer `map` would overflow the column's type. Checked over the values before any
    /// is written (nothing was); ask for wrapping arithmetic to wrap around as NumPy does.
    #[error("segment {name:?}: column {column:?}: {reason}")]
    Overflow {
        /// The segment name.
        name: String,
        /// The column path as given.
        column: String,
        /// The value and result that do not fit.
        reason: String,
    },
    /// The data handed to `create` is not a valid table (schema mismatch, unsupported type).
    #[error("invalid table for segment {name:?}")]
    InvalidTable {
        /// The segment name.
        name: String,
        /// The error from arrow.
        source: arrow_schema::ArrowError,
    },
    /// A channel operation failed (see [`ChannelError`]).
    #[error("channel {name:?}")]
    Channel {
        /// The channel segment's name.
        name: String,
        /// What went wrong.
        source: ChannelError,
    },
    /// A row range that is not a range of the segment's rows (`start > stop`, or `stop` past
    /// the last row): nothing was locked or written.
    #[error(
        "segment {name:?}: rows {start}..{stop} are not a range of its {rows} rows (0 <= start <= stop <= {rows})"
    )]
    InvalidRows {
        /// The segment name.
        name: String,
        /// First row asked for.
        start: u64,
        /// End of the rows asked for (exclusive).
        stop: u64,
        /// Rows of the segment.
        rows: u64,
    },
    /// Worker processes of a partitioned job ([`crate::partition`]) failed, were killed or
    /// left their part unwritten: there is no result.
    #[error("{} of {workers} worker(s) did not finish, no result: {}", failures.len(), failures.join("; "))]
    Workers {
        /// How many workers were started.
        workers: usize,
        /// One line per worker that did not finish: which, its pid, how it ended, its last
        /// line on stderr.
        failures: Vec<String>,
    },
    /// Any other I/O error, with the path it happened on.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done ("open", "write", "rename", ...).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    /// Map an I/O error on a segment to the variant that says what it means.
    pub(crate) fn from_io(
        source: io::Error,
        op: &'static str,
        name: &str,
        path: &std::path::Path,
    ) -> Self {
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory if !dir.is_dir() => {
                Error::NoDirectory {
                    dir,
                    name: Some(name.to_owned()),
                }
            }
            io::ErrorKind::NotFound => Error::NotFound {
                name: name.to_owned(),
                dir,
            },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied {
                name: name.to_owned(),
                source,
            },
            _ if source.raw_os_error() == Some(nix::libc::ELOOP) => Error::NotAFile {
                name: name.to_owned(),
                kind: "symbolic link",
            },
            _ => Error::Io {
                op,
                path: path.to_owned(),
                source,
            },
        }
    }

    /// [`Error::Corrupt`], with the reason folded onto one line (flatbuffers' verifier
    /// reports over several).
    pub(crate) fn corrupt(name: &str, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            name: name.to_owned(),
            reason: reason
                .into()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The file is not a channel segment of a version we read.
    #[error("not a channel segment: {0}")]
    NotAChannel(String),
    /// The [`ChannelOptions`](crate::ChannelOptions) cannot make a channel.
    #[error("invalid channel options: {0}")]
    InvalidOptions(String),
    /// Another live process is the producer.
    #[error("another process (pid {0}) is its producer")]
    ProducerExists(u32),
    /// The producer closed the stream; no more batches can be sent.
    #[error("the channel was closed by its producer")]
    Closed,
    /// The producer died without closing the stream.
    #[error("the producer (pid {0}) died without closing the stream")]
    ProducerDied(u32),
    /// Every consumer entry is taken.
    #[error("all {0} consumer entries are taken")]
    TooManyConsumers(u32),
    /// A batch does not fit in a slot.
    #[error(
        "a batch of {needed} bytes does not fit in a {slot} byte slot (64 of them are the slot header); create the channel with a larger slot size"
    )]
    BatchTooLarge {
        /// Bytes the encoded batch needs, slot header included.
        needed: u64,
        /// The slot size.
        slot: u64,
    },
    /// The batch's fields differ from the channel's schema.
    #[error("batch fields differ from the channel schema: {0}")]
    SchemaMismatch(String),
    /// The wait for a batch (consumer) or for space (producer) timed out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// [`SegmentDir::subscribe_within`](crate::SegmentDir::subscribe_within): no channel appeared under the name in time.
    #[error("no channel of that name appeared within {0:?}")]
    NotCreated(Duration),
}
