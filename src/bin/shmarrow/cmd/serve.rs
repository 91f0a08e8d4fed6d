//! `shmarrow serve`: an Arrow Flight server over the segment directory.
//!
//! - `list_flights` / `get_flight_info` / `get_schema`: segments, read from their footers
//!   (schema, rows, bytes); the ticket of a segment is its name.
//! - `do_get`: the segment is attached and its batches, which point into the shared mapping,
//!   are encoded straight into Flight messages (no private copy of the table first).
//! - `do_put`: the uploaded stream is written batch by batch into the segment's temp file and
//!   published with the same atomic `rename` as every other publish; an upload that fails or
//!   is cut off leaves nothing.
//! - `do_action`: `remove` (body: the name) and `reduce` (body: JSON `{"name", "columns",
//!   "ops", "ddof"}`), which runs next to the data: only the statistics cross the network.
//!
//! Loopback by default; another address needs `--allow-remote`. `--token-file` requires
//! `authorization: Bearer <token>` on every call; `--tls-cert/--tls-key` serve TLS.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, bail};
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use arrow_ipc::writer::IpcWriteOptions;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use shmarrow::reduce::{Op, ReduceOptions};
use shmarrow::{CreateOptions, SegmentDir};
use tonic::codegen::{Service, http};
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use super::flight_common::{
    CONNECTION_WINDOW, FlightBatches, STREAM_WINDOW, flight_batches, read_pem, read_token, runtime,
    strip_shmarrow_keys,
};
use crate::cli::ServeArgs;

pub fn run(
    dir: &SegmentDir,
    args: &ServeArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let addr = listen_addr(&args.listen, args.allow_remote)?;
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Identity::from_pem(
            read_pem(cert, "TLS certificate")?,
            read_pem(key, "TLS key")?,
        )),
        _ => None,
    };
    if !dir.path().is_dir() {
        bail!("segment directory {} does not exist", dir.path().display());
    }
    if !addr.ip().is_loopback() && (token.is_none() || tls.is_none()) {
        eprintln!(
            "shmarrow: warning: serving {} on {addr} without {}: anyone who can reach it can read, write and remove segments{}",
            dir.path().display(),
            if token.is_none() { "a token" } else { "TLS" },
            if tls.is_none() {
                ", and the data crosses the network unencrypted"
            } else {
                ""
            }
        );
    }

    let rt = runtime()?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr}"))?;
        let local = listener.local_addr()?;
        let scheme = if tls.is_some() { "grpc+tls" } else { "grpc" };
        let url = format!("{scheme}://{local}");
        if json {
            let line = json!({
                "listen": local.to_string(),
                "url": url,
                "dir": dir.path(),
                "auth": token.is_some(),
                "tls": tls.is_some(),
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "serving {} on {url} (auth: {}, tls: {})",
                dir.path().display(),
                if token.is_some() {
                    "bearer token"
                } else {
                    "none"
                },
                if tls.is_some() { "on" } else { "off" }
            )?;
        }
        out.flush()?;

        let service = FlightServiceServer::new(Flight { dir: dir.clone() })
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let service = WatchBodies(InterceptedService::new(service, Auth(token.map(Arc::new))));
        let mut builder = Server::builder()
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .tcp_nodelay(true);
        if let Some(identity) = tls {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .context("configure TLS")?;
        }
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = builder.add_service(service).serve_with_incoming(incoming);
        tokio::select! {
            served = server => served.context("serve")?,
            signal = shutdown_signal() => eprintln!("shmarrow: {signal}: stopping"),
        }
        anyhow::Ok(())
    });
    // Uploads still in progress are dropped here, and with them their temp files.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The address to listen on; anything but loopback needs `--allow-remote`.
fn listen_addr(listen: &str, allow_remote: bool) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .with_context(|| {
            format!("{listen:?} is not an address to listen on (e.g. 127.0.0.1:8815)")
        })?
        .collect();
    let Some(first) = addrs.first().copied() else {
        bail!("{listen:?} resolves to no address");
    };
    if !allow_remote && let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "{remote} is not a loopback address: other machines could connect; pass --allow-remote to serve on it (with --token-file and --tls-cert/--tls-key)"
        );
    }
    Ok(first)
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "interrupted",
            _ = term.recv() => "terminated",
        },
        _ => std::future::pending().await,
    }
}

/// Whether a request body ended with END_STREAM (the client sent all of it), as opposed to a
/// reset (the client cancelled, or went away). tonic's `Streaming` reports a cancelled request
/// stream as a clean end, so an upload cut off by its client would look complete: `do_put`
/// checks this flag before publishing.
#[derive(Clone, Default)]
struct BodyEnd(Arc<AtomicBool>);

impl BodyEnd {
    fn ended(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

struct Watched {
    inner: tonic::body::Body,
    end: BodyEnd,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.end.0.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.end.0.store(true, Ordering::Release);
        }
        end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps every request body in [`Watched`], its [`BodyEnd`] in the request's extensions.
#[derive(Clone)]
struct WatchBodies<S>(S);

impl<S> Service<http::Request<tonic::body::Body>> for WatchBodies<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let end = BodyEnd::default();
        let (mut parts, inner) = request.into_parts();
        parts.extensions.insert(end.clone());
        let body = tonic::body::Body::new(Watched { inner, end });
        self.0.call(http::Request::from_parts(parts, body))
    }
}

impl<S: NamedService> NamedService for WatchBodies<S> {
    const NAME: &'static str = S::NAME;
}

/// Bearer-token check on every call (all or nothing: no call is served without it).
#[derive(Clone)]
struct Auth(Option<Arc<String>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.0 else {
            return Ok(request);
        };
        match bearer(request.metadata()) {
            Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong bearer token")),
            None => Err(Status::unauthenticated(
                "this server requires the header authorization: Bearer <token>",
            )),
        }
    }
}

fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A library error as a gRPC status, saying what happened to which segment (without the
/// server's paths).
fn status(err: shmarrow::Error) -> Status {
    use shmarrow::Error as E;
    match &err {
        E::NotFound { name, .. } => Status::not_found(format!("segment {name:?} not found")),
        E::Exists { name, .. } => Status::already_exists(format!(
            "segment {name:?} already exists on the server (push --replace overwrites it)"
        )),
        E::NoSpace { name, needed, .. } => Status::resource_exhausted(format!(
            "no space for segment {name:?} on the server: at least {needed} bytes needed"
        )),
        E::InvalidName { .. } | E::InvalidColumn { .. } | E::InvalidTable { .. } => {
            Status::invalid_argument(format!("{:#}", anyhow::Error::from(err)))
        }
        E::PermissionDenied { name, .. } => {
            Status::permission_denied(format!("permission denied for segment {name:?}"))
        }
        E::NotAFile { .. } | E::Corrupt { .. } => {
            Status::failed_precondition(format!("{:#}", anyhow::Error::from(err)))
        }
        _ => Status::internal(format!("{:#}", anyhow::Error::from(err))),
    }
}

/// What a descriptor names: a segment, and for uploads whether to replace it and how many
/// rows the client is sending.
struct Target {
    name: String,
    replace: bool,
    rows: Option<u64>,
}

/// The segment a descriptor names: a path of one element, or a command holding the name, or
/// JSON `{"name": ..., "replace": bool, "rows": N}` (upload options).
///
/// `rows` guards uploads: a gRPC client stream that ends early looks complete (arrow-flight's
/// `FlightClient` ends it cleanly when its input fails), so a client that announces its row
/// count gets nothing published unless exactly that many arrive. `push` always announces it.
fn descriptor_target(descriptor: &FlightDescriptor) -> Result<Target, Status> {
    let bad = || {
        Status::invalid_argument(
            "the descriptor must name one segment: a path [NAME], or a command NAME or {\"name\": NAME, \"replace\": true, \"rows\": N}",
        )
    };
    let plain = |name: &str| Target {
        name: name.to_owned(),
        replace: false,
        rows: None,
    };
    match DescriptorType::try_from(descriptor.r#type) {
        Ok(DescriptorType::Path) => match descriptor.path.as_slice() {
            [name] => Ok(plain(name)),
            _ => Err(bad()),
        },
        Ok(DescriptorType::Cmd) => {
            let text = std::str::from_utf8(&descriptor.cmd).map_err(|_| bad())?;
            if !text.trim_start().starts_with('{') {
                return Ok(plain(text));
            }
            let value: Value = serde_json::from_str(text).map_err(|_| bad())?;
            let rows = match &value["rows"] {
                Value::Null => None,
                v => Some(v.as_u64().ok_or_else(bad)?),
            };
            Ok(Target {
                name: value["name"].as_str().ok_or_else(bad)?.to_owned(),
                replace: value["replace"].as_bool().unwrap_or(false),
                rows,
            })
        }
        _ => Err(bad()),
    }
}

fn ticket_name(ticket: &Ticket) -> Result<String, Status> {
    String::from_utf8(ticket.ticket.to_vec())
        .map_err(|_| Status::invalid_argument("a ticket is a segment name (UTF-8)"))
}

fn peer<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "?".into(), |a| a.to_string())
}

#[derive(Clone)]
struct Flight {
    dir: SegmentDir,
}

impl Flight {
    fn info(&self, name: &str) -> Result<FlightInfo, Status> {
        let info = self.dir.info(name).map_err(status)?;
        let schema = strip_shmarrow_keys(&info.schema);
        FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encode the schema of {name:?}: {e}")))
            .map(|fi| {
                fi.with_descriptor(FlightDescriptor::new_path(vec![name.to_owned()]))
                    .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(name.to_owned())))
                    .with_total_records(i64::try_from(info.rows()).unwrap_or(i64::MAX))
                    .with_total_bytes(i64::try_from(info.bytes).unwrap_or(i64::MAX))
                    .with_ordered(true)
            })
    }

    /// Receive an upload into `name`'s temp file and publish it; dropped unfinished (error,
    /// cancelled call, server shutdown), the writer removes the temp file.
    async fn receive(
        &self,
        target: &Target,
        first: FlightData,
        rest: Streaming<FlightData>,
        end: Option<BodyEnd>,
    ) -> Result<Value, Status> {
        let name = target.name.as_str();
        let options = CreateOptions::default().replace(target.replace);
        let input = stream::once(async { Ok(first) })
            .chain(rest)
            .map_err(FlightError::from);
        let mut batches = FlightBatches::new(name, input);
        let mut writer = None;
        let mut rows = 0u64;
        while let Some(batch) = batches.next().await.map_err(upload_error)? {
            let w = match &mut writer {
                Some(w) => w,
                None => writer.insert(
                    self.dir
                        .writer(name, &strip_shmarrow_keys(batch.schema_ref()), &options)
                        .map_err(status)?,
                ),
            };
            w.write(&batch).map_err(status)?;
            rows += batch.num_rows() as u64;
        }
        let writer = match writer {
            Some(w) => w,
            None => {
                let schema = batches.schema().ok_or_else(|| {
                    Status::invalid_argument("the upload ended before its schema")
                })?;
                self.dir
                    .writer(name, &strip_shmarrow_keys(schema), &options)
                    .map_err(status)?
            }
        };
        if end.is_some_and(|end| !end.ended()) {
            return Err(Status::cancelled(format!(
                "the upload of {name:?} was cancelled by the client after {rows} rows; nothing was published"
            )));
        }
        if let Some(announced) = target.rows
            && announced != rows
        {
            return Err(Status::data_loss(format!(
                "the upload of {name:?} ended after {rows} of the {announced} rows announced; nothing was published"
            )));
        }
        let created = writer.finish().map_err(status)?;
        let info = self.dir.info(created.name()).map_err(status)?;
        Ok(crate::fmt::info_json(&info))
    }
}

fn upload_error(err: FlightError) -> Status {
    match err {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!("bad upload: {other}")),
    }
}

fn log(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "shmarrow serve: {line}");
}

#[tonic::async_trait]
impl FlightService for Flight {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "no handshake: send the header authorization: Bearer <token> on every call",
        ))
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        // Criteria, if any: a name prefix.
        let prefix = String::from_utf8_lossy(&request.get_ref().expression).into_owned();
        let listing = self.dir.list().map_err(status)?;
        let infos: Vec<Result<FlightInfo, Status>> = listing
            .segments
            .iter()
            .filter(|s| s.name.starts_with(&prefix))
            .filter_map(|s| self.info(&s.name).ok()) // removed meanwhile, or unreadable
            .map(Ok)
            .collect();
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let name = descriptor_target(request.get_ref())?.name;
        Ok(Response::new(self.info(&name)?))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "poll_flight_info: segments are complete, use get_flight_info",
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let name = descriptor_target(request.get_ref())?.name;
        let info = self.dir.info(&name).map_err(status)?;
        let schema = strip_shmarrow_keys(&info.schema);
        let result = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow_schema::ArrowError| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let name = ticket_name(request.get_ref())?;
        let segment = self.dir.attach(&name).map_err(status)?;
        log(format_args!(
            "do_get {name}: {} rows to {}",
            segment.num_rows(),
            peer(&request)
        ));
        let schema = Arc::new(strip_shmarrow_keys(&segment.schema()));
        // The same arrays (pointing into the mapping), cut into messages; they keep the
        // mapping alive until sent, even if the segment is removed or replaced meanwhile.
        let batches =
            flight_batches(&segment, &schema).map_err(|e| Status::internal(e.to_string()))?;
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(usize::MAX)
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(stream::iter(batches.into_iter().map(Ok)))
            .map_err(Status::from);
        Ok(Response::new(encoded.boxed()))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let from = peer(&request);
        let end = request.extensions().get::<BodyEnd>().cloned();
        let mut input = request.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty upload"))?;
        let descriptor = first.flight_descriptor.as_ref().ok_or_else(|| {
            Status::invalid_argument(
                "the first message of an upload must carry a descriptor naming the segment",
            )
        })?;
        let target = descriptor_target(descriptor)?;
        let name = target.name.clone();
        self.dir.segment_path(&name).map_err(status)?;
        if !target.replace && self.dir.segment_path(&name).is_ok_and(|p| p.exists()) {
            return Err(status(shmarrow::Error::Exists {
                name,
                dir: self.dir.path().to_owned(),
            }));
        }
        log(format_args!("do_put {name} from {from}: receiving"));
        match self.receive(&target, first, input, end).await {
            Ok(info) => {
                log(format_args!(
                    "do_put {name}: published {} rows",
                    info["rows"]
                ));
                let result = PutResult {
                    app_metadata: info.to_string().into(),
                };
                Ok(Response::new(stream::iter([Ok(result)]).boxed()))
            }
            Err(e) => {
                log(format_args!(
                    "do_put {name}: failed, nothing published: {}",
                    e.message()
                ));
                Err(e)
            }
        }
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let from = peer(&request);
        let action = request.into_inner();
        let body = match action.r#type.as_str() {
            "remove" => {
                let name = std::str::from_utf8(&action.body)
                    .map_err(|_| Status::invalid_argument("remove: the body is a segment name"))?
                    .trim()
                    .to_owned();
                log(format_args!("remove {name} for {from}"));
                if !self.dir.remove(&name).map_err(status)? {
                    return Err(Status::not_found(format!("segment {name:?} not found")));
                }
                json!({"name": name, "status": "removed"})
            }
            "reduce" => {
                let request: Value = serde_json::from_slice(&action.body).map_err(|e| {
                    Status::invalid_argument(format!(
                        "reduce: the body is JSON {{\"name\": ..., \"columns\": [...]}}: {e}"
                    ))
                })?;
                log(format_args!("reduce {} for {from}", request["name"]));
                let dir = self.dir.clone();
                tokio::task::spawn_blocking(move || reduce(&dir, &request))
                    .await
                    .map_err(|e| Status::internal(format!("reduce: {e}")))??
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown action {other:?} (this server offers remove, reduce)"
                )));
            }
        };
        let result = arrow_flight::Result::new(body.to_string());
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            ActionType {
                r#type: "remove".into(),
                description: "Remove a segment. Body: its name. Result: {\"name\", \"status\"}."
                    .into(),
            },
            ActionType {
                r#type: "reduce".into(),
                description: "Statistics of numeric columns, computed next to the data. Body: JSON {\"name\": ..., \"columns\": [...], \"ops\": [...], \"ddof\": 0} (columns default to every numeric column, ops to all). Result: the JSON of `shmarrow reduce --json`.".into(),
            },
        ];
        Ok(Response::new(stream::iter(actions.map(Ok)).boxed()))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }
}

/// The `reduce` action: the same statistics and JSON as `shmarrow reduce --json`.
fn reduce(dir: &SegmentDir, request: &Value) -> Result<Value, Status> {
    let bad = |what: &str| Status::invalid_argument(format!("reduce: {what}"));
    let name = request["name"]
        .as_str()
        .ok_or_else(|| bad("\"name\" (a string) is required"))?;
    let strings = |key: &str| -> Result<Vec<String>, Status> {
        match &request[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(&format!("\"{key}\" must be a list of strings"))),
            _ => Err(bad(&format!("\"{key}\" must be a list of strings"))),
        }
    };
    let mut columns = strings("columns")?;
    let ops = strings("ops")?
        .iter()
        .map(|s| s.parse::<Op>().map_err(|e| bad(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    let ddof = match &request["ddof"] {
        Value::Null => 0,
        v => v
            .as_u64()
            .and_then(|d| u32::try_from(d).ok())
            .ok_or_else(|| bad("\"ddof\" must be a small non-negative integer"))?,
    };
    let segment = dir.attach(name).map_err(status)?;
    if columns.is_empty() {
        columns = segment
            .schema()
            .fields()
            .iter()
            .filter(|f| f.data_type().is_integer() || f.data_type().is_floating())
            .map(|f| f.name().clone())
            .collect();
    }
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let stats = segment
        .reduce(&refs, &ReduceOptions::default().ddof(ddof))
        .map_err(status)?;
    let ops: &[Op] = if ops.is_empty() { &Op::ALL } else { &ops };
    Ok(Value::Array(
        stats
            .iter()
            .map(|s| super::reduce::stats_json(s, ops))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        assert!(listen_addr("127.0.0.1:0", false).is_ok());
        assert!(listen_addr("[::1]:0", false).is_ok());
        let err = listen_addr("0.0.0.0:0", false).unwrap_err().to_string();
        assert!(err.contains("--allow-remote"), "{err}");
        assert!(listen_addr("0.0.0.0:0", true).is_ok());
    }

    #[test]
    fn bearer_tokens() {
        let mut map = MetadataMap::new();
        map.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert_eq!(bearer(&map), Some("s3cret"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
