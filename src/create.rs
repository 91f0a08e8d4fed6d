//! Publishing a table as a segment: one pass over the data, atomically visible.
//!
//! 1. A dry run of the IPC file writer over a byte counter gives the exact length (no data
//!    is copied: arrow-ipc hands buffers to the sink, which only counts them).
//! 2. The temp file is created and its length reserved ([`reserve_temp`], see
//!    [`crate::publish`]'s protocol).
//! 3. The IPC file is written with `write(2)`; buffers larger than the 1 MiB staging buffer
//!    go straight from the arrays to the file (one copy).
//! 4. `rename` onto `NAME` ([`commit`]) is the commit point: readers see nothing or the
//!    whole file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{ArrowError, Schema};

use crate::error::{Error, Result};
use crate::meta::SegmentMeta;
use crate::name::SegmentDir;
use crate::publish::{
    Counting, CreateOptions, Created, TempGuard, check_written, commit, invalid, ipc_options,
    is_no_space, no_space, plan, reserve_temp, with_meta, write_error, write_ipc,
};

/// A segment being written batch by batch, for inputs whose size is not known in advance
/// (Parquet, CSV, IPC streams, network uploads): each batch goes straight into the temp file
/// in the segment directory, so private memory holds one batch at a time, never the table.
/// [`finish`](Self::finish) writes the footer and publishes atomically; dropping it unfinished
/// removes the temp file. On a full directory a write fails with [`Error::NoSpace`] (plain
/// `write(2)`, no mapping: never a SIGBUS).
pub struct SegmentWriter {
    dir: SegmentDir,
    name: String,
    temp: PathBuf,
    options: CreateOptions,
    writer: FileWriter<Counting<BufWriter<File>>>,
    guard: TempGuard,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("name", &self.name)
            .field("temp", &self.temp)
            .field("written", &self.writer.get_ref().written())
            .finish()
    }
}

impl SegmentWriter {
    /// Append one batch (its fields must be the schema's).
    ///
    /// # Errors
    /// [`Error::InvalidTable`] for a batch of another schema (or a dictionary that changes
    /// between batches, which the IPC file format cannot hold); [`Error::NoSpace`];
    /// [`Error::Io`].
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        check_fields(&self.name, batch, self.writer.schema())?;
        let at_least = self.bytes_written() + batch.get_array_memory_size() as u64;
        self.writer
            .write(batch)
            .map_err(|e| write_error(&self.dir, &self.name, &self.temp, at_least, e))
    }

    /// Reserve `total` bytes for the whole segment now (`posix_fallocate`), for a caller that
    /// can estimate the size: a directory that cannot hold it fails here with
    /// [`Error::NoSpace`] naming `total`, before the data is written. The file is cut to the
    /// bytes actually written when it is published.
    ///
    /// # Errors
    /// [`Error::NoSpace`]; [`Error::Io`].
    pub fn reserve(&mut self, total: u64) -> Result<()> {
        let file = self.writer.get_ref().get_ref().get_ref();
        crate::huge_pages::reserve(self.dir.path(), file, total).map_err(|e| {
            if is_no_space(&e) || e.kind() == io::ErrorKind::FileTooLarge {
                no_space(&self.dir, &self.name, total)
            } else {
                Error::from_io(e, "reserve space for", &self.name, &self.temp)
            }
        })
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.writer.get_ref().written()
    }

    /// Write the footer and publish atomically under the name.
    ///
    /// # Errors
    /// [`Error::Exists`] with `replace(false)`; [`Error::NoSpace`]; [`Error::Io`].
    pub fn finish(mut self) -> Result<Created> {
        let at_least = self.bytes_written();
        let io = |e| write_error(&self.dir, &self.name, &self.temp, at_least, e);
        self.writer.finish().map_err(io)?;
        self.writer.get_mut().flush().map_err(|e| io(e.into()))?;
        let bytes = self.bytes_written();
        // A `reserve` beyond what was written is given back.
        self.writer
            .get_ref()
            .get_ref()
            .get_ref()
            .set_len(bytes)
            .map_err(|e| Error::from_io(e, "truncate", &self.name, &self.temp))?;
        let created = commit(&self.dir, &self.name, &self.temp, &self.options, bytes)?;
        self.guard.disarm();
        Ok(created)
    }
}

impl SegmentDir {
    /// Start writing segment `name` batch by batch (see [`SegmentWriter`]).
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Exists`] with `replace(false)`,
    /// [`Error::InvalidTable`] for a schema the IPC format cannot hold,
    /// [`Error::PermissionDenied`], [`Error::Io`].
    pub fn writer(
        &self,
        name: &str,
        schema: &Schema,
        options: &CreateOptions,
    ) -> Result<SegmentWriter> {
        self.check_free(name, options)?;
        let meta = SegmentMeta::now(options.lifetime);
        let schema = with_meta(schema, &meta);
        let (temp, file, guard) = reserve_temp(self, name, &meta, options, 0)?;
        let writer = FileWriter::try_new_with_options(
            Counting::new(BufWriter::with_capacity(1 << 20, file)),
            &schema,
            ipc_options(),
        )
        .map_err(|e| write_error(self, name, &temp, 0, e))?;
        Ok(SegmentWriter {
            dir: self.clone(),
            name: name.to_owned(),
            temp,
            options: *options,
            writer,
            guard,
        })
    }

    /// Publish `batches` (all of `schema`) as segment `name`, atomically.
    ///
    /// The bytes are an Arrow IPC file that any Arrow reader can map; the `shmarrow.` keys of
    /// [`SegmentMeta`] are added to the schema metadata. Zero batches give a valid 0-row table.
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::InvalidTable`] if a batch's fields differ from
    /// `schema`'s; [`Error::Exists`] with `replace(false)`; [`Error::NoSpace`] when the
    /// directory cannot hold it (nothing is left behind); [`Error::PermissionDenied`];
    /// [`Error::Io`].
    pub fn create(
        &self,
        name: &str,
        schema: &Schema,
        batches: &[RecordBatch],
        options: &CreateOptions,
    ) -> Result<Created> {
        for batch in batches {
            check_fields(name, batch, schema)?;
        }
        self.check_free(name, options)?;
        let meta = SegmentMeta::now(options.lifetime);
        let schema = with_meta(schema, &meta);
        let needed = plan(name, &schema, batches)?;
        let (temp, file, guard) = reserve_temp(self, name, &meta, options, needed)?;
        let written = write_ipc(BufWriter::with_capacity(1 << 20, &file), &schema, batches)
            .map_err(|e| write_error(self, name, &temp, needed, e))?;
        check_written(name, &temp, written, needed)?;
        drop::<File>(file);
        let created = commit(self, name, &temp, options, needed)?;
        guard.disarm();
        Ok(created)
    }
}

impl SegmentDir {
    /// Check `name`, and refuse it early if it is taken and `options` do not replace (the
    /// commit refuses it atomically in any case).
    fn check_free(&self, name: &str, options: &CreateOptions) -> Result<()> {
        let path = self.segment_path(name)?;
        if !options.replace && path.exists() {
            return Err(Error::Exists {
                name: name.to_owned(),
                dir: self.path().to_owned(),
            });
        }
        Ok(())
    }
}

/// A batch to publish under `name` has exactly `schema`'s fields.
fn check_fields(name: &str, batch: &RecordBatch, schema: &Schema) -> Result<()> {
    if batch.schema_ref().fields() == schema.fields() {
        return Ok(());
    }
    Err(invalid(
        name,
        ArrowError::SchemaError(format!(
            "batch fields {:?} differ from the schema's {:?}",
            batch.schema_ref().fields(),
            schema.fields()
        )),
    ))
}
