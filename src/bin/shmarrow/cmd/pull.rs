//! `shmarrow pull ADDR NAME [--as LOCAL]`: copy a segment from a Flight server into a local
//! segment, streaming. Each received batch goes straight into the local segment's temp file
//! ([`shmarrow::SegmentWriter`]), published by `rename` once the stream ends: a transfer cut
//! off (server killed, network gone, Ctrl-C, SIGTERM, SIGHUP) leaves no partial segment.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow_flight::error::FlightError;
use arrow_flight::{FlightDescriptor, Ticket};
use futures::TryStreamExt;
use serde_json::json;
use shmarrow::{CreateOptions, SegmentDir, SegmentWriter, without_shmarrow_keys};

use crate::cli::PullArgs;
use crate::flight::{FlightBatches, connect, flight_error, runtime};
use crate::fmt::{self, Unit};

pub fn run(
    dir: &SegmentDir,
    args: &PullArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let local = args.as_name.as_deref().unwrap_or(&args.name);
    let path = dir.segment_path(local)?;
    if !args.replace && path.exists() {
        return Err(shmarrow::Error::Exists {
            name: local.to_owned(),
            dir: dir.path().to_owned(),
        })
        .context("pass --replace to overwrite it");
    }
    let options = CreateOptions::default().replace(args.replace);
    let addr = args.addr.as_str();
    let start = Instant::now();
    // Ctrl-C, SIGTERM, SIGHUP: the signal thread started in `main` removes the temp file.
    let rt = runtime()?;
    let pulled = rt.block_on(pull(dir, args, local, &options));
    drop(rt);
    let (rows, created) = pulled?;
    let seconds = start.elapsed().as_secs_f64();
    let info = dir.info(created.name())?;
    if json {
        let mut value = fmt::info_json(&info);
        value["source"] = json!(format!("{addr}/{}", args.name));
        value["seconds"] = json!(seconds);
        fmt::print_json(out, &value)?;
    } else {
        writeln!(
            out,
            "pulled {} from {addr} -> {} ({rows} rows, {} batches, {} in {seconds:.2} s, {}/s)",
            args.name,
            info.name,
            info.batches.len(),
            fmt::bytes(info.bytes),
            fmt::bytes((info.bytes as f64 / seconds.max(1e-9)) as u64)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn pull(
    dir: &SegmentDir,
    args: &PullArgs,
    local: &str,
    options: &CreateOptions,
) -> anyhow::Result<(u64, shmarrow::Created)> {
    let addr = args.addr.as_str();
    let name = args.name.as_str();
    let mut client = connect(
        addr,
        args.client.token_file.as_deref(),
        args.client.tls_ca.as_deref(),
    )
    .await?;
    let info = client
        .get_flight_info(FlightDescriptor::new_path(vec![name.to_owned()]))
        .await
        .map_err(|e| flight_error(e, addr))
        .with_context(|| format!("pull {name}"))?;
    let total = u64::try_from(info.total_records).unwrap_or(0);
    let ticket = match info.endpoint.as_slice() {
        [endpoint] => endpoint.ticket.clone(),
        [] => None,
        _ => bail!("{addr}: {name} is split over several endpoints, which pull does not join"),
    }
    .unwrap_or_else(|| Ticket::new(name.to_owned()));
    // The raw messages (with the client's headers), decoded by shmarrow's checked decoder.
    let mut request = tonic::Request::new(ticket);
    *request.metadata_mut() = client.metadata().clone();
    let input = client
        .inner_mut()
        .do_get(request)
        .await
        .map_err(|e| flight_error(e.into(), addr))
        .with_context(|| format!("pull {name}"))?
        .into_inner()
        .map_err(FlightError::from);
    let mut stream = FlightBatches::new(name, input);
    let bar = fmt::progress("pulling", total, Unit::Rows);
    let mut writer: Option<SegmentWriter> = None;
    let mut rows = 0u64;
    loop {
        let batch = match stream.next().await {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(e) => {
                bar.abandon();
                return Err(flight_error(e, addr)).with_context(|| {
                    format!("pull {name}: transfer stopped after {rows} of {total} rows; nothing was published")
                });
            }
        };
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(dir.writer(
                local,
                &without_shmarrow_keys(batch.schema_ref()),
                options,
            )?),
        };
        w.write(&batch)?;
        rows += batch.num_rows() as u64;
        bar.inc(batch.num_rows() as u64);
    }
    bar.finish_and_clear();
    let writer = match writer {
        Some(w) => w,
        None => {
            let schema = stream
                .schema()
                .with_context(|| format!("pull {name}: the stream ended before its schema"))?;
            dir.writer(local, &without_shmarrow_keys(schema), options)?
        }
    };
    if total != 0 && rows != total {
        bail!(
            "pull {name}: received {rows} rows, the server announced {total}; nothing was published"
        );
    }
    Ok((rows, writer.finish()?))
}
