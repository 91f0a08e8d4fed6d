//! What `serve`, `pull` and `push` share: addresses, tokens, TLS files, the client connection,
//! error messages for gRPC statuses, and the tokio runtime (started by these verbs only).

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_buffer::Buffer;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightData};
use arrow_schema::{ArrowError, Schema, SchemaRef};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use shmarrow::ipc::{Decoded, Decoder};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// HTTP/2 flow-control windows. The defaults (64 KiB) cap a stream at one window per round
/// trip; batches are megabytes, so both sides advertise windows of this size.
pub const STREAM_WINDOW: u32 = 16 << 20;
pub const CONNECTION_WINDOW: u32 = 64 << 20;

/// The runtime of a Flight verb: two workers (network and encode/decode overlap).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the tokio runtime")
}

/// A bearer token from a file: its content without surrounding whitespace, never empty.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("token file {} is empty", path.display());
    }
    if token.chars().any(|c| c.is_control() || !c.is_ascii()) {
        bail!(
            "token file {} holds characters a header cannot carry (use printable ASCII)",
            path.display()
        );
    }
    Ok(token.to_owned())
}

/// Read a PEM file (certificate, key or CA), naming what it is in the error.
pub fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("read {what} {}", path.display()))?;
    if !pem.windows(10).any(|w| w == b"-----BEGIN") {
        bail!("{what} {} is not a PEM file", path.display());
    }
    Ok(pem)
}

/// A server address as given on the command line (`HOST:PORT`, `grpc://HOST:PORT`,
/// `grpc+tls://HOST:PORT`, `http://…`, `https://…`) as a URI tonic connects to, and whether
/// it is TLS.
pub fn server_uri(addr: &str) -> anyhow::Result<(String, bool)> {
    let (scheme, rest) = match addr.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("grpc".into(), addr),
    };
    let tls = match scheme.as_str() {
        "grpc" | "grpc+tcp" | "http" => false,
        "grpc+tls" | "https" => true,
        _ => bail!(
            "{addr:?}: unknown scheme {scheme:?} (use HOST:PORT, grpc://HOST:PORT or grpc+tls://HOST:PORT)"
        ),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || !rest.contains(':') {
        bail!("{addr:?} is not HOST:PORT (e.g. 127.0.0.1:8815)");
    }
    let scheme = if tls { "https" } else { "http" };
    Ok((format!("{scheme}://{rest}"), tls))
}

/// Connect a Flight client to `addr`, with the bearer token of `token_file` on every call and
/// `tls_ca` trusted for `grpc+tls://` addresses.
pub async fn connect(
    addr: &str,
    token_file: Option<&Path>,
    tls_ca: Option<&Path>,
) -> anyhow::Result<FlightClient> {
    let (uri, tls) = server_uri(addr)?;
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("{addr:?} is not a server address"))?
        .connect_timeout(Duration::from_secs(10))
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .tcp_nodelay(true);
    match (tls, tls_ca) {
        (true, Some(ca)) => {
            let ca = Certificate::from_pem(read_pem(ca, "CA certificate")?);
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(ca))
                .context("configure TLS")?;
        }
        (true, None) => bail!(
            "{addr}: a TLS address needs --tls-ca FILE (the server's certificate or its CA, PEM)"
        ),
        (false, Some(_)) => bail!("--tls-ca given but {addr} is not a TLS address (grpc+tls://)"),
        (false, None) => {}
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connect to {addr}: {}", error_chain(&e)))?;
    let inner = FlightServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let mut client = FlightClient::new_from_inner(inner);
    if let Some(path) = token_file {
        client
            .add_header("authorization", &format!("Bearer {}", read_token(path)?))
            .context("the token cannot be sent as a header")?;
    }
    Ok(client)
}

/// A Flight error as one clear line: what the server said, or what happened to the connection.
pub fn flight_error(err: FlightError, addr: &str) -> anyhow::Error {
    match err {
        FlightError::Tonic(status) => status_error(&status, addr),
        other => anyhow::anyhow!("{addr}: {other}"),
    }
}

fn status_error(status: &tonic::Status, addr: &str) -> anyhow::Error {
    let message = status.message();
    match status.code() {
        Code::Unauthenticated => anyhow::anyhow!(
            "{addr} refused the request: {message} (unauthenticated: pass --token-file with the server's token)"
        ),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
            if message.contains("transport")
                || message.contains("h2 protocol")
                || message.contains("connection")
                || message.contains("broken pipe") =>
        {
            let detail = match std::error::Error::source(status).map(error_chain) {
                Some(cause) if cause.starts_with(message) => cause,
                Some(cause) => format!("{message}: {cause}"),
                None => message.to_owned(),
            };
            let hint = if detail.contains("frame with invalid size") {
                " (a TLS server? use grpc+tls://)"
            } else {
                ""
            };
            anyhow::anyhow!("connection to {addr} lost: {detail}{hint}")
        }
        code => {
            let name = code_name(code);
            if message.contains(&name) {
                anyhow::anyhow!("{addr}: {message}")
            } else {
                anyhow::anyhow!("{addr}: {message} ({name})")
            }
        }
    }
}

fn code_name(code: Code) -> String {
    let debug = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// An error and its sources on one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// A segment copied from elsewhere keeps the user's metadata but not the `shmarrow.` keys,
/// which describe the file they were read from (creator pid, lifetime).
pub fn strip_shmarrow_keys(schema: &Schema) -> Schema {
    let mut metadata = schema.metadata().clone();
    metadata.retain(|k, _| !k.starts_with("shmarrow."));
    schema.clone().with_metadata(metadata)
}

/// Target size of one Flight message: what arrow-flight aims for, below the 4 MiB that gRPC
/// clients accept by default.
pub const MESSAGE_BYTES: u64 = 2 << 20;

/// A segment's batches ready to encode: the same arrays (pointing into the mapping) under
/// `schema` (the segment's without our keys), each cut into row slices of about
/// [`MESSAGE_BYTES`] (slicing copies nothing).
///
/// The cut is made here from the batch's exact size in the file: arrow-flight's own split
/// estimates sizes from buffer capacities, which for a mapped segment are the whole mapping,
/// so it would cut every batch into single rows. Encode with `with_max_flight_data_size(
/// usize::MAX)` to keep it from cutting again.
pub fn flight_batches(
    segment: &shmarrow::Segment,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut out = Vec::new();
    for (batch, info) in segment.batches().iter().zip(&segment.info().batches) {
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            batch.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?;
        let rows = batch.num_rows();
        let pieces = info.bytes.div_ceil(MESSAGE_BYTES).max(1) as usize;
        let step = rows.div_ceil(pieces).max(1);
        if pieces == 1 || rows <= 1 {
            out.push(batch);
            continue;
        }
        let mut offset = 0;
        while offset < rows {
            let len = step.min(rows - offset);
            out.push(batch.slice(offset, len));
            offset += len;
        }
    }
    Ok(out)
}

/// A Flight stream (an upload to `serve`, a download by `pull`) decoded batch by batch by
/// [`shmarrow::ipc::Decoder`]: bytes from another host are checked like any foreign IPC
/// (arrow-flight's own decoder panics on a lying buffer offset and allocates whatever a
/// compressed buffer declares).
pub struct FlightBatches {
    input: BoxStream<'static, Result<FlightData, FlightError>>,
    decoder: Decoder,
}

impl FlightBatches {
    /// `label` names the transfer in errors.
    pub fn new(
        label: &str,
        input: impl Stream<Item = Result<FlightData, FlightError>> + Send + 'static,
    ) -> Self {
        Self {
            input: input.boxed(),
            decoder: Decoder::new(label),
        }
    }

    /// The schema, once its message arrived.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.decoder.schema()
    }

    /// The next record batch; `None` when the stream ends.
    pub async fn next(&mut self) -> Result<Option<RecordBatch>, FlightError> {
        while let Some(data) = self.input.try_next().await? {
            let body = Buffer::from(data.data_body);
            match self.decoder.decode(&data.data_header, &body) {
                Ok(Decoded::Batch(batch)) => return Ok(Some(batch)),
                Ok(Decoded::Schema(_) | Decoded::Dictionary | Decoded::Nothing) => {}
                Err(e) => return Err(FlightError::DecodeError(e.to_string())),
            }
        }
        Ok(None)
    }
}

/// A progress bar of rows on stderr when it is a terminal; hidden otherwise.
pub fn progress(total_rows: u64, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = if total_rows == 0 {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(total_rows)
    };
    let template = format!(
        "{{spinner}} {verb} [{{bar:40}}] {{human_pos}}/{{human_len}} rows ({{per_sec}}, {{eta}})"
    );
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            server_uri("127.0.0.1:8815").unwrap(),
            ("http://127.0.0.1:8815".into(), false)
        );
        assert_eq!(
            server_uri("grpc://h:1").unwrap(),
            ("http://h:1".into(), false)
        );
        assert_eq!(
            server_uri("grpc+tls://h:1/").unwrap(),
            ("https://h:1".into(), true)
        );
        assert!(server_uri("ftp://h:1").is_err());
        assert!(server_uri("justahost").is_err());
        assert_eq!(code_name(Code::PermissionDenied), "permission denied");
    }
}
