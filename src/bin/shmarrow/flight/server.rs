//! The Flight server: the service behind bearer-token authentication and the body watch,
//! with wide HTTP/2 windows, until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use shmarrow::SegmentDir;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use super::auth::Auth;
use super::body::WatchBodies;
use super::service::Flight;
use super::{CONNECTION_WINDOW, STREAM_WINDOW};

/// Serve `dir` on `listener` (requiring `token` on every call when given, TLS with `tls`)
/// until SIGINT or SIGTERM.
pub async fn serve(
    dir: &SegmentDir,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    tls: Option<Identity>,
) -> anyhow::Result<()> {
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
    Ok(())
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
