//! `shmarrow import NAME FILE`: publish an Arrow IPC file or stream, Feather v2, Parquet or CSV
//! file as a segment.
//!
//! Every input is read under [`shmarrow::guarded`] and streamed batch by batch into the
//! segment's temp file ([`shmarrow::SegmentWriter`]): private memory holds one batch
//! (`--batch-rows`), never the table. IPC/Feather files and streams are decoded by
//! [`shmarrow::ipc`] (checked, decompression bounded, big-endian converted); an uncompressed
//! little-endian IPC file is mapped, and its batches go from the page cache straight into the
//! segment (no private copy at all).

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Seek, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{Schema, SchemaRef};
use indicatif::{ProgressBar, ProgressStyle};
use shmarrow::{CreateOptions, Created, IpcFile, SegmentDir, guarded};

use crate::cli::{ImportArgs, InputFormat};
use crate::fmt;

pub fn run(
    dir: &SegmentDir,
    args: &ImportArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    // Everything is checked before any work: name, format, schema file, input.
    dir.segment_path(&args.name)?;
    let format = match args.format {
        Some(f) => f,
        None => detect(&args.file)?,
    };
    let label = args.file.display().to_string();
    let input_bytes = std::fs::metadata(&args.file)
        .with_context(|| format!("open {label}"))?
        .len();
    let csv_schema = args.schema.as_deref().map(read_schema).transpose()?;
    let options = args.publish.options();
    let estimate = guarded(&label, || {
        Ok::<_, shmarrow::Error>(estimate(format, &args.file, input_bytes))
    })
    .unwrap_or(input_bytes);
    warn_if_it_will_not_fit(dir, &label, estimate);

    let (schema, bar, batches): (SchemaRef, ProgressBar, Batches) = match format {
        InputFormat::Ipc => {
            let reader = IpcFile::open(&label, &args.file)?;
            let rows = reader.info().rows();
            (
                reader.info().schema.clone(),
                progress(rows, "rows"),
                boxed(reader),
            )
        }
        InputFormat::Stream => {
            let reader =
                shmarrow::ipc::StreamReader::try_new(&label, BufReader::new(open(&args.file)?))
                    .with_context(|| format!("{label} is not an Arrow IPC stream"))?;
            (
                reader.schema(),
                progress(input_bytes, "bytes"),
                boxed(reader),
            )
        }
        InputFormat::Parquet => {
            let file = open(&args.file)?;
            let (rows, reader) = guarded(&label, || {
                let builder =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .with_context(|| format!("{label} is not a Parquet file"))?;
                let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
                let reader = builder
                    .with_batch_size(args.batch_rows)
                    .build()
                    .with_context(|| format!("read {label}"))?;
                anyhow::Ok((rows, reader))
            })?;
            (reader.schema(), progress(rows, "rows"), boxed(reader))
        }
        InputFormat::Csv => {
            let mut file = open(&args.file)?;
            let format = arrow_csv::reader::Format::default()
                .with_header(args.header)
                .with_delimiter(args.delimiter as u8);
            let schema = match csv_schema {
                Some(schema) => schema,
                None => {
                    let (schema, _) = guarded(&label, || {
                        format
                            .infer_schema(&mut file, Some(args.infer_rows))
                            .with_context(|| format!("infer the schema of {label}"))
                    })?;
                    file.rewind()?;
                    schema
                }
            };
            let schema = Arc::new(schema);
            let reader = arrow_csv::ReaderBuilder::new(schema.clone())
                .with_header(args.header)
                .with_delimiter(args.delimiter as u8)
                .with_batch_size(args.batch_rows)
                .build(BufReader::new(file))
                .with_context(|| format!("read {label}"))?;
            (schema, progress(input_bytes, "bytes"), boxed(reader))
        }
    };
    let created = stream_into(dir, args, &label, &schema, &options, bar, batches)?;
    let info = dir.info(created.name())?;
    created.disown(); // an `owner` import is reclaimed by `gc` once this process is gone
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

fn open(path: &Path) -> anyhow::Result<File> {
    File::open(path).with_context(|| format!("open {}", path.display()))
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
    bar: ProgressBar,
    mut batches: Batches,
) -> anyhow::Result<Created> {
    let schema = strip_shmarrow_keys(schema);
    let mut writer = dir.writer(&args.name, &schema, options)?;
    let by_bytes = bar.message() == "bytes";
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

/// A progress bar on stderr when it is a terminal; hidden otherwise. `total` 0: a spinner.
fn progress(total: u64, unit: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden().with_message(unit);
    }
    let bar = if total == 0 {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(total)
    };
    let template = if unit == "bytes" {
        "{spinner} importing [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
    } else {
        "{spinner} importing [{bar:40}] {pos}/{len} rows ({per_sec}, {eta})"
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.with_message(unit)
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
            eprintln!(
                "shmarrow: warning: {label} needs about {} but {} has {} free; the import will fail cleanly if it does not fit",
                fmt::bytes(estimate),
                dir.path().display(),
                fmt::bytes(free)
            );
        }
    }
}

/// A CSV schema file: `{"fields": [{"name": "x", "type": "Float64", "nullable": true}, ...]}`,
/// types in Arrow's own notation (`Int64`, `Utf8`, `Timestamp(Microsecond, Some("UTC"))`).
fn read_schema(path: &Path) -> anyhow::Result<Schema> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read schema {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let fields = value["fields"]
        .as_array()
        .with_context(|| format!("{}: expected {{\"fields\": [...]}}", path.display()))?;
    let fields = fields
        .iter()
        .map(|f| {
            let name = f["name"].as_str().context("a field without \"name\"")?;
            let ty = f["type"]
                .as_str()
                .with_context(|| format!("field {name:?} without \"type\""))?;
            let data_type: arrow_schema::DataType = ty
                .parse()
                .with_context(|| format!("field {name:?}: unknown type {ty:?}"))?;
            Ok(arrow_schema::Field::new(
                name,
                data_type,
                f["nullable"].as_bool().unwrap_or(true),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("schema {}", path.display()))?;
    Ok(Schema::new(fields))
}

/// A segment copied from another keeps the user's metadata but gets fresh `shmarrow.` keys.
fn strip_shmarrow_keys(schema: &Schema) -> Schema {
    let mut metadata = schema.metadata().clone();
    metadata.retain(|k, _| !k.starts_with("shmarrow."));
    schema.clone().with_metadata(metadata)
}

fn detect(path: &Path) -> anyhow::Result<InputFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    Ok(match ext.as_deref() {
        Some("arrow" | "feather" | "ipc") => InputFormat::Ipc,
        Some("arrows" | "stream") => InputFormat::Stream,
        Some("parquet" | "pq") => InputFormat::Parquet,
        Some("csv" | "tsv") => InputFormat::Csv,
        _ => {
            let mut magic = [0u8; 6];
            open(path)?
                .read_exact(&mut magic)
                .with_context(|| format!("read {}", path.display()))?;
            match &magic {
                b"ARROW1" => InputFormat::Ipc,
                [b'P', b'A', b'R', b'1', ..] => InputFormat::Parquet,
                [0xff, 0xff, 0xff, 0xff, ..] => InputFormat::Stream,
                _ => anyhow::bail!(
                    "cannot tell the format of {} from its name or first bytes; pass --format (ipc, stream, parquet, csv)",
                    path.display()
                ),
            }
        }
    })
}
