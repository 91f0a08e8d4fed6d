//! The client side of `pull` and `push`: server addresses, the connection, and gRPC statuses
//! as one clear line.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use arrow_flight::FlightClient;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::{CONNECTION_WINDOW, STREAM_WINDOW, read_pem, read_token};

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
