//! Arrow Flight, for `serve`, `pull` and `push`: the tokio runtime (started by these verbs
//! only), tokens and TLS files, the client connection, batches to and from Flight messages,
//! and the server (service, descriptors, actions, authentication, request bodies).

mod action;
mod auth;
mod body;
mod client;
mod descriptor;
mod server;
mod service;
mod stream;

use std::path::Path;

use anyhow::{Context, bail};

pub use client::{connect, flight_error};
pub use server::serve;
pub use stream::{FlightBatches, flight_batches};

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
