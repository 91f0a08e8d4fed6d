//! # shmarrow: Apache Arrow tables in named shared memory, zero-copy
//!
//! A **segment** is a named file in a segment directory (`/dev/shm` by default, or
//! `$SHMARROW_DIR`) whose bytes are exactly an Arrow IPC *file*: uncompressed, metadata V5,
//! every buffer 64-byte aligned. Any Arrow reader can map it (`pyarrow.ipc.open_file(
//! pyarrow.memory_map("/dev/shm/NAME"))`); this crate adds the safe publish protocol, checked
//! O(1) attach, and lifecycle.
//!
//! ```no_run
//! use std::sync::Arc;
//! use arrow_array::{Float64Array, RecordBatch};
//! use shmarrow::{CreateOptions, SegmentDir};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = SegmentDir::from_env();
//! let batch = RecordBatch::try_from_iter([(
//!     "x",
//!     Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as _,
//! )])?;
//! // Publish: readers see nothing or the whole table.
//! dir.create("prices", &batch.schema(), &[batch], &CreateOptions::default())?;
//! // Attach (in any process): the arrays point into the shared mapping.
//! let segment = dir.attach("prices")?;
//! assert_eq!(segment.num_rows(), 3);
//! dir.remove("prices")?;
//! # Ok(()) }
//! ```
//!
//! - [`SegmentDir::create`] publishes atomically (dry-run size, exclusive temp file,
//!   `posix_fallocate`, one write pass, `rename`).
//! - [`SegmentDir::attach`] maps read-only and decodes in place, checking untrusted bytes.
//! - [`SegmentDir::remove`], [`SegmentDir::list`], [`SegmentDir::gc`] manage the lifecycle.
//!
//! The file layout and metadata keys are specified in `schemas/SEGMENT.md`.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod attach;
mod channel;
mod column_path;
mod create;
mod error;
mod huge_pages;
mod inplace;
pub mod ipc;
mod lifecycle;
mod meta;
mod name;
pub mod partition;
mod publish;
pub mod reduce;
mod sys;

pub use attach::{
    AttachOptions, BatchInfo, ColumnInfo, IpcFile, Segment, SegmentInfo, Validate, attach_path,
};
pub use channel::{
    CHANNEL_MAGIC, CHANNEL_VERSION, ChannelInfo, ChannelOptions, Consumer, ConsumerInfo,
    MAX_CONSUMERS, Producer, Received, WaitMode, WaitPolicy,
};
pub use create::SegmentWriter;
pub use error::{ChannelError, Error, Result};
pub use huge_pages::HugePages;
pub use inplace::{
    Allocation, Constant, MapOp, MapOptions, RawValues, SegmentLock, ValuesMut, WritableSegment,
    split_rows,
};
pub use ipc::guarded;
pub use lifecycle::{GcReason, ListedSegment, Listing, Reclaimed, TempFile};
pub use meta::{FORMAT_VERSION, Lifetime, SegmentMeta, without_shmarrow_keys};
pub use name::{DEFAULT_DIR, DIR_ENV, MAX_NAME_LEN, SegmentDir, check_name};
pub use publish::{ALIGNMENT, Counting, CreateOptions, Created, TempGuard, abort_publishes};
pub use sys::ProcessId;
