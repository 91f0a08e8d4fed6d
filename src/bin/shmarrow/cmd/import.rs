//! `shmarrow import NAME FILE`: publish an Arrow IPC file or stream as a segment.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use arrow_ipc::reader::StreamReader;
use shmarrow::{AttachOptions, CreateOptions, SegmentDir};

use crate::cli::{ImportArgs, InputFormat};
use crate::fmt;

pub fn run(
    dir: &SegmentDir,
    args: &ImportArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        Some(f) => f,
        None => detect(&args.file)?,
    };
    let options = CreateOptions::default()
        .replace(args.replace)
        .mode(args.mode)
        .lifetime(args.lifetime);
    let label = args.file.display().to_string();
    let created = match format {
        // An IPC file is mapped, not read: its batches go from the page cache straight into
        // the segment, and private memory holds none of them.
        InputFormat::Ipc => {
            let input = shmarrow::attach_path(&label, &args.file, &AttachOptions::default())?;
            let schema = strip_shmarrow_keys(&input.schema());
            dir.create(&args.name, &schema, input.batches(), &options)?
        }
        InputFormat::Stream => {
            let file = File::open(&args.file).with_context(|| format!("open {label}"))?;
            let reader = StreamReader::try_new(BufReader::new(file), None)
                .with_context(|| format!("{label} is not an Arrow IPC stream"))?;
            let schema = reader.schema();
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("read {label}"))?;
            dir.create(&args.name, &schema, &batches, &options)?
        }
    };
    let info = dir.info(created.name())?;
    created.disown(); // an `owner` import is reclaimed by `gc` once this process is gone
    if json {
        fmt::print_json(out, &fmt::info_json(&info))?;
    } else {
        writeln!(
            out,
            "imported {} -> {} ({} rows, {} batches, {})",
            label,
            info.name,
            info.rows(),
            info.batches.len(),
            fmt::bytes(info.bytes)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A segment copied from another keeps the user's metadata but gets fresh `shmarrow.` keys.
fn strip_shmarrow_keys(schema: &arrow_schema::Schema) -> arrow_schema::Schema {
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
        _ => {
            let mut magic = [0u8; 6];
            File::open(path)
                .and_then(|mut f| f.read_exact(&mut magic))
                .with_context(|| format!("read {}", path.display()))?;
            if &magic == b"ARROW1" {
                InputFormat::Ipc
            } else {
                InputFormat::Stream
            }
        }
    })
}
