//! `shmarrow export NAME FILE`: write a segment to an Arrow IPC file or stream, Parquet, CSV or
//! TSV, streaming batch by batch from the mapping (no private copy of the table).
//!
//! A file is written beside its target and renamed onto it (a failed or interrupted export
//! leaves no half file); it gets the segment's permission bits. `--force` replaces only a
//! regular file: a symlink, FIFO, device or directory at the path is refused, never followed
//! or replaced. `-` and `/dev/stdout` stream to standard output (the report goes to stderr).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use shmarrow::{SegmentDir, TempGuard};

use crate::cli::ExportArgs;
use crate::fmt;
use crate::format::InputFormat;

pub fn run(
    dir: &SegmentDir,
    args: &ExportArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let to_stdout = is_stdout(&args.file);
    let format = match args.format {
        Some(f) => f,
        None if to_stdout => InputFormat::Stream,
        None => InputFormat::from_extension(&args.file).with_context(|| {
            format!(
                "cannot tell the format from {:?}; pass --format (ipc, stream, parquet, csv, tsv)",
                args.file.display().to_string()
            )
        })?,
    };
    if !to_stdout {
        check_target(&args.file, args.force)?;
    }
    let segment = dir.attach(&args.name)?;
    let schema = shmarrow::without_shmarrow_keys(&segment.schema());
    let (target, bytes) = if to_stdout {
        let bytes = write(io::stdout(), format, &schema, segment.batches())?;
        ("standard output".to_owned(), bytes)
    } else {
        let bytes = write_file(&args.file, args.force, segment.info().mode, |file| {
            write(file, format, &schema, segment.batches())
        })?;
        (args.file.display().to_string(), bytes)
    };
    // With the data on standard output, the report goes to stderr.
    let report: &mut dyn Write = if to_stdout { &mut io::stderr() } else { out };
    if json {
        fmt::print_json(
            report,
            &serde_json::json!({
                "name": args.name, "file": target, "format": format!("{format:?}").to_lowercase(),
                "rows": segment.num_rows(), "bytes": bytes,
            }),
        )?;
    } else {
        writeln!(
            report,
            "exported {} -> {target} ({} rows, {})",
            args.name,
            segment.num_rows(),
            fmt::bytes(bytes)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `-`, or a name of this process's standard output.
fn is_stdout(path: &Path) -> bool {
    ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
        .iter()
        .any(|p| path == Path::new(p))
}

/// Nothing at `path`, or a regular file and `force`.
fn check_target(path: &Path, force: bool) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    let file_type = meta.file_type();
    if file_type.is_file() {
        anyhow::ensure!(
            force,
            "{} exists; pass --force to replace it",
            path.display()
        );
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt;
    let kind = if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    anyhow::bail!(
        "{} is {kind}; export writes regular files only and never replaces anything else, \
         even with --force (use `-` for standard output)",
        path.display()
    )
}

/// Write a temp file beside `target` with `fill`, give it `mode`, and move it onto `target`
/// (replacing a regular file only with `force`); returns the bytes written.
fn write_file(
    target: &Path,
    force: bool,
    mode: u32,
    fill: impl FnOnce(&File) -> anyhow::Result<u64>,
) -> anyhow::Result<u64> {
    let temp = temp_beside(target);
    let (file, guard) =
        TempGuard::create(&temp, mode).with_context(|| format!("create {}", temp.display()))?;
    let bytes = fill(&file).with_context(|| format!("export to {}", target.display()))?;
    drop(file);
    if force {
        std::fs::rename(&temp, target)
    } else {
        // A link fails if the target appeared meanwhile: never clobber without --force.
        std::fs::hard_link(&temp, target)
    }
    .with_context(|| format!("move the export onto {}", target.display()))?;
    drop(guard); // removes the temp name (renamed: already gone; linked: the second name)
    Ok(bytes)
}

/// Write the batches in `format`; returns the bytes written.
fn write<W: Write + Send>(
    sink: W,
    format: InputFormat,
    schema: &Schema,
    batches: &[RecordBatch],
) -> anyhow::Result<u64> {
    let mut sink = shmarrow::Counting::new(BufWriter::with_capacity(1 << 20, sink));
    if let Err(e) = encode(&mut sink, format, schema, batches) {
        // A failed write comes back wrapped (by the CSV writer, as text only); the sink still
        // holds the bytes, and flushing again gives the `io::Error` itself: a closed pipe is
        // then a quiet exit.
        sink.flush()?;
        return Err(e);
    }
    sink.flush()?;
    Ok(sink.written())
}

fn encode(
    sink: &mut (impl Write + Send),
    format: InputFormat,
    schema: &Schema,
    batches: &[RecordBatch],
) -> anyhow::Result<()> {
    match format {
        InputFormat::Ipc => {
            let mut w = arrow_ipc::writer::FileWriter::try_new(sink, schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        InputFormat::Stream => {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(sink, schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        InputFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(
                sink,
                std::sync::Arc::new(schema.clone()),
                Some(props),
            )?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
        InputFormat::Csv | InputFormat::Tsv => {
            let mut w = arrow_csv::WriterBuilder::new()
                .with_header(true)
                .with_delimiter(if format == InputFormat::Tsv {
                    b'\t'
                } else {
                    b','
                })
                .build(sink);
            for b in batches {
                w.write(b)?;
            }
        }
    }
    Ok(())
}

fn temp_beside(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}
