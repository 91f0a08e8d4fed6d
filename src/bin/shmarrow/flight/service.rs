//! The Flight service over a segment directory: segments are flights, a segment's ticket is
//! its name; `do_get` encodes straight from the mapping, `do_put` publishes atomically.

use std::io::Write;
use std::sync::Arc;

use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use arrow_ipc::writer::IpcWriteOptions;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use shmarrow::{CreateOptions, SegmentDir, without_shmarrow_keys};
use tonic::{Request, Response, Status, Streaming};

use super::action;
use super::body::BodyEnd;
use super::descriptor::{Target, descriptor_target, ticket_name};
use super::{FlightBatches, flight_batches};

/// A library error as a gRPC status, saying what happened to which segment (without the
/// server's paths).
pub fn status(err: shmarrow::Error) -> Status {
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

fn peer<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "?".into(), |a| a.to_string())
}

#[derive(Clone)]
pub struct Flight {
    pub dir: SegmentDir,
}

impl Flight {
    fn info(&self, name: &str) -> Result<FlightInfo, Status> {
        let info = self.dir.info(name).map_err(status)?;
        let schema = without_shmarrow_keys(&info.schema);
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
                        .writer(name, &without_shmarrow_keys(batch.schema_ref()), &options)
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
                    .writer(name, &without_shmarrow_keys(schema), &options)
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

pub fn log(line: std::fmt::Arguments) {
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
        let schema = without_shmarrow_keys(&info.schema);
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
        let schema = Arc::new(without_shmarrow_keys(&segment.schema()));
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
        let requested = request.into_inner();
        let kind = requested.r#type.clone();
        let dir = self.dir.clone();
        // A reduction reads the whole segment: off the network threads.
        let body = tokio::task::spawn_blocking(move || action::run(&dir, &requested, &from))
            .await
            .map_err(|e| Status::internal(format!("{kind}: {e}")))??;
        let result = arrow_flight::Result::new(body.to_string());
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Ok(Response::new(
            stream::iter(action::TYPES.map(|(name, doc)| {
                Ok(ActionType {
                    r#type: name.into(),
                    description: doc.into(),
                })
            }))
            .boxed(),
        ))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }
}
