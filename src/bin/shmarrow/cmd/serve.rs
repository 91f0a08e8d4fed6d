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
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;
use shmarrow::SegmentDir;
use tonic::transport::Identity;

use crate::cli::ServeArgs;
use crate::flight::{self, read_pem, read_token, runtime};

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

        flight::serve(dir, listener, token, tls).await
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
}
