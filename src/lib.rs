//! # shmarrow: Apache Arrow tables in named shared memory, zero-copy
//!
//! A **segment** is a named file in a segment directory (`/dev/shm` by default, or
//! `$SHMARROW_DIR`) whose bytes are exactly an Arrow IPC *file*: uncompressed, metadata V5,
//! every buffer 64-byte aligned. Any Arrow reader can map it (`pyarrow.ipc.open_file(
//! pyarrow.memory_map("/dev/shm/NAME"))`); this crate adds the atomic publish protocol,
//! checked constant-time attach, in-place writes, parallel reductions, channels of batches,
//! and the segments' lifecycle. The file layout and metadata keys are specified in
//! `schemas/SEGMENT.md`, the channel's in `schemas/CHANNEL.md`.
//!
//! [`SegmentDir`] is the entry point: every operation is one of its methods, given a name.
//!
//! # Example: publish and attach
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Float64Array, RecordBatch};
//! use shmarrow::{CreateOptions, SegmentDir};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let path = std::env::temp_dir().join(format!("shmarrow-doc-lib-{}", std::process::id()));
//! # std::fs::create_dir_all(&path)?;
//! let dir = SegmentDir::new(&path); // SegmentDir::from_env() for /dev/shm
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
//! # std::fs::remove_dir_all(&path)?;
//! # Ok(()) }
//! ```
//!
//! # Example: fill in place, publish, write in place
//!
//! ```
//! use arrow_array::types::Float64Type;
//! use arrow_schema::{DataType, Field, Schema};
//! use shmarrow::{CreateOptions, MapOp, SegmentDir};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let path = std::env::temp_dir().join(format!("shmarrow-doc-fill-{}", std::process::id()));
//! # std::fs::create_dir_all(&path)?;
//! # let dir = SegmentDir::new(&path);
//! let schema = Schema::new(vec![Field::new("x", DataType::Float64, false)]);
//! let alloc = dir.allocate("squares", &schema, 4, &CreateOptions::default())?;
//! for (i, v) in alloc.values_mut::<Float64Type>("x")?[0].iter_mut().enumerate() {
//!     *v = i as f64; // written once, in shared memory
//! }
//! alloc.publish()?;
//! // Readers that attached see the new values without attaching again.
//! let reader = dir.attach("squares")?;
//! dir.open_writable("squares")?.map("x", MapOp::Square, 0..u64::MAX)?;
//! let x = reader.batches()[0].column(0).as_any().downcast_ref::<arrow_array::Float64Array>();
//! assert_eq!(x.unwrap().values().to_vec(), vec![0.0, 1.0, 4.0, 9.0]);
//! # dir.remove("squares")?;
//! # std::fs::remove_dir_all(&path)?;
//! # Ok(()) }
//! ```
//!
//! # Example: a channel
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Int64Array, RecordBatch};
//! use shmarrow::{ChannelOptions, SegmentDir};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let path = std::env::temp_dir().join(format!("shmarrow-doc-chan-{}", std::process::id()));
//! # std::fs::create_dir_all(&path)?;
//! # let dir = SegmentDir::new(&path);
//! let batch = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![1, 2])) as _)])?;
//! let mut producer = dir.create_producer("ticks", &batch.schema(), &ChannelOptions::default())?;
//! let mut consumer = dir.subscribe("ticks")?; // in any process
//! producer.send(&batch)?;
//! let received = consumer.recv()?.expect("a batch"); // zero-copy: it pins its slot
//! assert_eq!(received.batch.columns(), batch.columns());
//! # drop((received, consumer, producer));
//! # std::fs::remove_dir_all(&path)?;
//! # Ok(()) }
//! ```
//!
//! # Where things are
//!
//! - Publish: [`SegmentDir::create`], [`SegmentDir::writer`] ([`SegmentWriter`]),
//!   [`SegmentDir::allocate`] ([`Allocation`]); the protocol (exclusive temp file,
//!   `posix_fallocate`, one write pass, `rename`) with [`CreateOptions`], [`Created`],
//!   [`TempGuard`], [`abort_publishes`].
//! - Attach: [`SegmentDir::attach`] ([`Segment`], [`AttachOptions`], [`Validate`]),
//!   [`attach_path`] for any Arrow IPC file; [`ipc`] decodes untrusted IPC bytes.
//! - In place: [`SegmentDir::open_writable`] ([`WritableSegment`], [`MapOp`]),
//!   [`SegmentDir::lock`], [`split_rows`].
//! - Reductions: [`reduce`] ([`Segment::reduce`]); across processes: [`partition`].
//! - Channels: [`SegmentDir::create_channel`], [`Producer`], [`Consumer`],
//!   [`ChannelOptions`].
//! - Lifecycle: [`SegmentDir::remove`], [`SegmentDir::list`], [`SegmentDir::gc`],
//!   [`Lifetime`].
//! - Errors: one [`Error`] enum with structured fields for every operation.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

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
    AttachOptions, Attachment, BatchInfo, CheckedSegment, ColumnInfo, IpcFile, Segment,
    SegmentInfo, Validate, attach_path,
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
