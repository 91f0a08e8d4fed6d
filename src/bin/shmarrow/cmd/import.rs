//! `shmarrow import NAME FILE`: publish an Arrow IPC file or stream, Feather v2, Parquet, CSV
//! or TSV file as a segment. `FILE` may be `-` (standard input), a FIFO or another pipe: IPC
//! streams and CSV are read front to back; IPC files and Parquet need a regular file.
//!
//! Every input is read under [`shmarrow::guarded`] and streamed batch by batch into the
//! segment's temp file ([`shmarrow::SegmentWriter`]): private memory holds one batch
//! (`--batch-rows`), never the table. IPC/Feather files and streams are decoded by
//! [`shmarrow::ipc`] (checked, decompression bounded, big-endian converted); an uncompressed
//! little-endian IPC file is mapped, and its batches go from the page cache straight into the
//! segment (no private copy at all).

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{DataType, Schema, SchemaRef};
use shmarrow::{CreateOptions, Created, IpcFile, SegmentDir, guarded};

use crate::cli::ImportArgs;
use crate::fmt::{self, Unit};
use crate::format::{InputFormat, open};

pub fn run(
    dir: &SegmentDir,
    args: &ImportArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    // Everything is checked before any work: name, input, format, schema file.
    dir.segment_path(&args.name)?;
    let mut input = Input::open(&args.file)?;
    let label = input.label.clone();
    let format = match args.format {
        Some(f) => f,
        None => input.detect()?,
    };
    let csv_schema = args.schema.as_deref().map(read_schema).transpose()?;
    let options = args.publish.options();
    if let Some(path) = &input.path {
        let estimate = guarded(&label, || {
            Ok::<_, shmarrow::Error>(estimate(format, path, input.size))
        })
        .unwrap_or(input.size);
        warn_if_it_will_not_fit(dir, &label, estimate);
    }

    let (schema, counted, batches): (SchemaRef, (u64, Unit), Batches) = match (format, &input.path)
    {
        (InputFormat::Ipc, Some(path)) => {
            let reader = IpcFile::open(&label, path).map_err(|e| input_error(&input, format, e))?;
            let rows = reader.info().rows();
            (
                reader.info().schema.clone(),
                (rows, Unit::Rows),
                boxed(reader),
            )
        }
        (InputFormat::Parquet, Some(path)) => {
            let file = open(path)?;
            let (rows, reader) = guarded(&label, || {
                let builder = crate::parquet_pages::reader(file, &label)?;
                let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
                let reader = builder
                    .with_batch_size(args.batch_rows)
                    .build()
                    .with_context(|| format!("read {label}"))?;
                anyhow::Ok((rows, reader))
            })?;
            (reader.schema(), (rows, Unit::Rows), boxed(reader))
        }
        (InputFormat::Ipc | InputFormat::Parquet, None) => anyhow::bail!(
            "{label}: {} needs a file that can be read at any offset (its footer is at the end), \
             not a pipe; save it to a file and import that, or send an Arrow IPC stream \
             (`shmarrow export NAME - --format stream`) or CSV",
            if format == InputFormat::Ipc {
                "an Arrow IPC file"
            } else {
                "Parquet"
            }
        ),
        (InputFormat::Stream, _) => {
            let bytes = std::mem::replace(&mut input.bytes, Box::new(std::io::empty()));
            let reader = shmarrow::ipc::StreamReader::try_new(&label, BufReader::new(bytes))
                .map_err(|e| input_error(&input, format, e))?;
            (reader.schema(), (input.size, Unit::Bytes), boxed(reader))
        }
        (InputFormat::Csv | InputFormat::Tsv, _) => {
            let delimiter = args.delimiter.unwrap_or(if format == InputFormat::Tsv {
                b'\t'
            } else {
                b','
            });
            let csv = arrow_csv::reader::Format::default()
                .with_header(args.header)
                .with_delimiter(delimiter);
            let bytes = std::mem::replace(&mut input.bytes, Box::new(std::io::empty()));
            let (schema, bytes) = match csv_schema {
                Some(schema) => (schema, bytes),
                None => guarded(&label, || infer_csv(&csv, bytes, args, &label))?,
            };
            let schema = Arc::new(schema);
            let reader = arrow_csv::ReaderBuilder::new(schema.clone())
                .with_format(csv)
                .with_batch_size(args.batch_rows)
                .build(BufReader::new(bytes))
                .with_context(|| format!("read {label}"))?;
            (schema, (input.size, Unit::Bytes), boxed(reader))
        }
    };
    let created =
        stream_into(dir, args, &label, &schema, &options, counted, batches).map_err(|e| {
            match e.downcast::<shmarrow::Error>() {
                Ok(e) => input_error(&input, format, e),
                Err(e) => e,
            }
        })?;
    let info = dir.info(created.name())?;
    created.disown();
    if json {
        let mut value = fmt::info_json(&info);
        value["source"] = serde_json::json!(label);
        value["format"] = serde_json::json!(format!("{format:?}").to_lowercase());
        fmt::print_json(out, &value)?;
    } else {
        writeln!(
            out,
            "imported {label} -> {} ({} rows, {} columns, {} batches, {})",
            info.name,
            info.rows(),
            info.schema.fields().len(),
            info.batches.len(),
            fmt::bytes(info.bytes)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The bytes to import: a regular file (any format), or a stream — standard input (`-`), a
/// pipe, a FIFO — that can only be read once, front to back (IPC streams and CSV).
struct Input {
    /// How messages name it: the path, or "standard input".
    label: String,
    /// The path as given (its extension may name the format).
    given: PathBuf,
    /// The regular file's resolved path (symlinks followed); `None` for a stream.
    path: Option<PathBuf>,
    /// Its size in bytes (0 for a stream: unknown).
    size: u64,
    /// The bytes, from the start.
    bytes: Box<dyn Read>,
}

impl Input {
    fn open(path: &Path) -> anyhow::Result<Self> {
        if path == Path::new("-") {
            return Ok(Input {
                label: "standard input".into(),
                given: path.to_owned(),
                path: None,
                size: 0,
                bytes: Box::new(std::io::stdin()),
            });
        }
        let label = path.display().to_string();
        let file = open(path)?;
        let meta = file.metadata().with_context(|| format!("stat {label}"))?;
        if meta.is_dir() {
            anyhow::bail!("{label} is a directory, not an input file");
        }
        let regular = meta.is_file();
        Ok(Input {
            path: if regular {
                Some(std::fs::canonicalize(path).with_context(|| format!("resolve {label}"))?)
            } else {
                None
            },
            size: if regular { meta.len() } else { 0 },
            bytes: Box::new(file),
            label,
            given: path.to_owned(),
        })
    }

    /// The format from the file name, else from the first bytes (which are put back in front
    /// of the rest: nothing is consumed).
    fn detect(&mut self) -> anyhow::Result<InputFormat> {
        if let Some(format) = InputFormat::from_extension(&self.given) {
            return Ok(format);
        }
        let bytes = std::mem::replace(&mut self.bytes, Box::new(std::io::empty()));
        let (format, bytes) = InputFormat::sniff(bytes, &self.label)?;
        self.bytes = bytes;
        format.with_context(|| {
            format!(
                "cannot tell the format of {} from its name or first bytes; pass --format (ipc, stream, parquet, csv, tsv)",
                self.label
            )
        })
    }
}

/// An error about the input's bytes names the input (and what it should have been), not a
/// segment.
fn input_error(input: &Input, format: InputFormat, e: shmarrow::Error) -> anyhow::Error {
    match e {
        shmarrow::Error::Corrupt { name, reason } if name == input.label => {
            let what = match &input.path {
                Some(_) => format!("input file {}", input.label),
                None => input.label.clone(),
            };
            let expected = match format {
                InputFormat::Ipc => "an Arrow IPC file",
                InputFormat::Stream => "an Arrow IPC stream",
                InputFormat::Parquet => "a Parquet file",
                InputFormat::Csv => "CSV",
                InputFormat::Tsv => "TSV",
            };
            anyhow::anyhow!("{what} is not {expected}: {reason}")
        }
        e => e.into(),
    }
}

/// Infer a CSV schema from the first `--infer-rows` rows, which are kept in memory and read
/// again (nothing is consumed: the input may be a pipe). A column empty in all of them would
/// be typed Null and lose every later value: it is read as text instead, with a warning.
fn infer_csv(
    csv: &arrow_csv::reader::Format,
    bytes: Box<dyn Read>,
    args: &ImportArgs,
    label: &str,
) -> anyhow::Result<(Schema, Box<dyn Read>)> {
    let mut reader = BufReader::new(bytes);
    let mut head = Vec::new();
    let lines = args.infer_rows.saturating_add(usize::from(args.header));
    for _ in 0..lines {
        if reader
            .read_until(b'\n', &mut head)
            .with_context(|| format!("read {label}"))?
            == 0
        {
            break;
        }
    }
    let (schema, _) = csv
        .infer_schema(Cursor::new(&head), Some(args.infer_rows))
        .with_context(|| format!("infer the schema of {label}"))?;
    let fields = schema
        .fields()
        .iter()
        .map(|f| {
            if f.data_type() != &DataType::Null {
                return f.as_ref().clone();
            }
            fmt::warn(&format!(
                "column {:?} of {label} is empty in the first {} rows: read as text (Utf8); pass --schema to choose its type, or more --infer-rows",
                f.name(),
                args.infer_rows
            ));
            f.as_ref().clone().with_data_type(DataType::Utf8)
        })
        .collect::<Vec<_>>();
    Ok((
        Schema::new_with_metadata(fields, schema.metadata().clone()),
        Box::new(Cursor::new(head).chain(reader)),
    ))
}

/// The batches of any input format.
type Batches = Box<dyn Iterator<Item = anyhow::Result<RecordBatch>>>;

fn boxed<E>(batches: impl Iterator<Item = Result<RecordBatch, E>> + 'static) -> Batches
where
    E: std::error::Error + Send + Sync + 'static,
{
    Box::new(batches.map(|batch| batch.map_err(anyhow::Error::from)))
}

/// Stream `batches` into a new segment; the temp file is removed on any error. Every batch
/// is read under [`guarded`]: a reader that panics on its input is an error like any other.
fn stream_into(
    dir: &SegmentDir,
    args: &ImportArgs,
    label: &str,
    schema: &Schema,
    options: &CreateOptions,
    (total, unit): (u64, Unit),
    mut batches: Batches,
) -> anyhow::Result<Created> {
    let schema = shmarrow::without_shmarrow_keys(schema);
    let mut writer = dir.writer(&args.name, &schema, options)?;
    let bar = fmt::progress("importing", total, unit);
    let by_bytes = unit == Unit::Bytes;
    for i in 0.. {
        let Some(batch) = guarded(label, || Ok::<_, shmarrow::Error>(batches.next()))? else {
            break;
        };
        let batch = batch.with_context(|| format!("read {label} (batch {i})"))?;
        writer.write(&batch)?;
        bar.inc(if by_bytes { 0 } else { batch.num_rows() as u64 });
        if by_bytes {
            bar.set_position(writer.bytes_written());
        }
    }
    bar.finish_and_clear();
    Ok(writer.finish()?)
}

/// Roughly how large the segment will be: Parquet's uncompressed size, else the input's.
fn estimate(format: InputFormat, path: &Path, input_bytes: u64) -> u64 {
    if format == InputFormat::Parquet
        && let Ok(reader) =
            parquet::file::reader::SerializedFileReader::new(match File::open(path) {
                Ok(f) => f,
                Err(_) => return input_bytes,
            })
    {
        use parquet::file::reader::FileReader;
        return reader
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.total_byte_size().max(0) as u64)
            .sum::<u64>()
            .max(input_bytes);
    }
    input_bytes
}

fn warn_if_it_will_not_fit(dir: &SegmentDir, label: &str, estimate: u64) {
    if let Ok(stat) = nix::sys::statvfs::statvfs(dir.path()) {
        let free = stat.blocks_available() * stat.fragment_size();
        if estimate > free {
            fmt::warn(&format!(
                "{label} needs about {} but {} has {} free; the import will fail cleanly if it does not fit",
                fmt::bytes(estimate),
                dir.path().display(),
                fmt::bytes(free)
            ));
        }
    }
}

/// A CSV schema file: `{"fields": [{"name": "x", "type": "Float64", "nullable": true}, ...]}`,
/// types in Arrow's own notation (`Int64`, `Utf8`, `Timestamp(Microsecond, Some("UTC"))`).
/// An unknown (misspelt) key is an error.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvSchema {
    fields: Vec<CsvField>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvField {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    nullable: Option<bool>,
}

fn read_schema(path: &Path) -> anyhow::Result<Schema> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read schema {}", path.display()))?;
    let def: CsvSchema =
        serde_json::from_str(&text).with_context(|| format!("schema {}", path.display()))?;
    let fields =
        def.fields
            .into_iter()
            .map(|f| {
                let data_type: DataType = f.data_type.parse().with_context(|| {
                    format!("field {:?}: unknown type {:?}", f.name, f.data_type)
                })?;
                Ok(arrow_schema::Field::new(
                    f.name,
                    data_type,
                    f.nullable.unwrap_or(true),
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("schema {}", path.display()))?;
    Ok(Schema::new(fields))
}
