//! `shmarrow push NAME ADDR [--as REMOTE]`: upload a local segment to a Flight server, which
//! publishes it atomically. The batches are encoded straight from the shared mapping.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow_flight::FlightDescriptor;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use shmarrow::{SegmentDir, without_shmarrow_keys};

use crate::cli::PushArgs;
use crate::flight::{connect, flight_batches, flight_error, runtime};
use crate::fmt::{self, Unit};

pub fn run(
    dir: &SegmentDir,
    args: &PushArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let remote = args.as_name.clone().unwrap_or_else(|| args.name.clone());
    shmarrow::check_name(&remote)?;
    let segment = dir.attach(&args.name)?;
    let local_bytes = segment.info().bytes;
    let addr = args.addr.as_str();
    let start = Instant::now();
    let rt = runtime()?;
    let pushed = rt.block_on(async {
        tokio::select! {
            pushed = push(segment, args, &remote) => pushed,
            _ = tokio::signal::ctrl_c() => bail!("interrupted: the server publishes nothing"),
        }
    });
    drop(rt);
    let remote_info = pushed?;
    let seconds = start.elapsed().as_secs_f64();
    if json {
        let mut value = remote_info;
        value["source"] = json!(args.name);
        value["server"] = json!(addr);
        value["seconds"] = json!(seconds);
        fmt::print_json(out, &value)?;
    } else {
        writeln!(
            out,
            "pushed {} -> {addr} as {remote} ({} rows, {} in {seconds:.2} s, {}/s)",
            args.name,
            remote_info["rows"],
            fmt::bytes(local_bytes),
            fmt::bytes((local_bytes as f64 / seconds.max(1e-9)) as u64)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn push(segment: shmarrow::Segment, args: &PushArgs, remote: &str) -> anyhow::Result<Value> {
    let addr = args.addr.as_str();
    let mut client = connect(
        addr,
        args.client.token_file.as_deref(),
        args.client.tls_ca.as_deref(),
    )
    .await?;
    // The row count lets the server refuse an upload that ends early (see `serve`).
    let descriptor = FlightDescriptor::new_cmd(
        json!({"name": remote, "replace": args.replace, "rows": segment.num_rows()}).to_string(),
    );
    let schema = Arc::new(without_shmarrow_keys(&segment.schema()));
    let batches = flight_batches(&segment, &schema)?;
    let bar = fmt::progress("pushing", segment.num_rows(), Unit::Rows);
    let counter = bar.clone();
    let input = stream::iter(batches).map(move |b| {
        counter.inc(b.num_rows() as u64);
        Ok(b)
    });
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(usize::MAX)
        .with_flight_descriptor(Some(descriptor))
        .with_dictionary_handling(DictionaryHandling::Resend)
        .build(input);
    let results: Vec<_> = match client.do_put(encoded).await {
        Ok(results) => results.try_collect().await,
        Err(e) => Err(e),
    }
    .map_err(|e| {
        bar.abandon();
        flight_error(e, addr)
    })
    .with_context(|| format!("push {} as {remote}", args.name))?;
    bar.finish_and_clear();
    let Some(result) = results.first() else {
        bail!("{addr} acknowledged the upload without a result");
    };
    // Another Flight server may answer without our JSON summary; the upload was accepted.
    Ok(serde_json::from_slice(&result.app_metadata)
        .unwrap_or_else(|_| json!({"name": remote, "rows": segment.num_rows()})))
}
