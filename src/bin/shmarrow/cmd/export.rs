//! `shmarrow export NAME FILE`: write a segment to an Arrow IPC file or stream, Parquet or CSV,
//! streaming batch by batch from the mapping (no private copy of the table).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use shmarrow::SegmentDir;

use crate::cli::{ExportArgs, InputFormat};
use crate::fmt;

pub fn run(
    dir: &SegmentDir,
    args: &ExportArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        Some(f) => f,
        None => from_extension(&args.file)?,
    };
    if !args.force && args.file.exists() {
        anyhow::bail!("{} exists; pass --force to replace it", args.file.display());
    }
    let segment = dir.attach(&args.name)?;
    let mut schema = (*segment.schema()).clone();
    let mut metadata = schema.metadata().clone();
    metadata.retain(|k, _| !k.starts_with("shmarrow."));
    schema = schema.with_metadata(metadata);
    // Write next to the target and rename, so a failed export leaves no half file.
    let temp = temp_beside(&args.file);
    let result = write(&temp, format, &schema, segment.batches());
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(e.context(format!("export to {}", args.file.display())));
    }
    std::fs::rename(&temp, &args.file)
        .with_context(|| format!("rename onto {}", args.file.display()))?;
    let bytes = std::fs::metadata(&args.file)?.len();
    if json {
        fmt::print_json(
            out,
            &serde_json::json!({
                "name": args.name, "file": args.file, "format": format!("{format:?}").to_lowercase(),
                "rows": segment.num_rows(), "bytes": bytes,
            }),
        )?;
    } else {
        writeln!(
            out,
            "exported {} -> {} ({} rows, {})",
            args.name,
            args.file.display(),
            segment.num_rows(),
            fmt::bytes(bytes)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write(
    path: &Path,
    format: InputFormat,
    schema: &Schema,
    batches: &[RecordBatch],
) -> anyhow::Result<()> {
    let file = BufWriter::with_capacity(
        1 << 20,
        File::create_new(path).with_context(|| format!("create {}", path.display()))?,
    );
    match format {
        InputFormat::Ipc => {
            let mut w = arrow_ipc::writer::FileWriter::try_new(file, schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            w.into_inner()?.flush()?;
        }
        InputFormat::Stream => {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(file, schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            w.into_inner()?.flush()?;
        }
        InputFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(
                file,
                std::sync::Arc::new(schema.clone()),
                Some(props),
            )?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
        InputFormat::Csv => {
            let mut w = arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(file);
            for b in batches {
                w.write(b)?;
            }
            w.into_inner().flush()?;
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

fn from_extension(path: &Path) -> anyhow::Result<InputFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    Ok(match ext.as_deref() {
        Some("arrow" | "feather" | "ipc") => InputFormat::Ipc,
        Some("arrows" | "stream") => InputFormat::Stream,
        Some("parquet" | "pq") => InputFormat::Parquet,
        Some("csv") => InputFormat::Csv,
        _ => anyhow::bail!(
            "cannot tell the format from {:?}; pass --format (ipc, stream, parquet, csv)",
            path.display().to_string()
        ),
    })
}
