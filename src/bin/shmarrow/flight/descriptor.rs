//! What a Flight descriptor or ticket names: the descriptor protocol of `serve`.

use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::{FlightDescriptor, Ticket};
use serde_json::Value;
use tonic::Status;

/// What a descriptor names: a segment, and for uploads whether to replace it and how many
/// rows the client is sending.
pub struct Target {
    pub name: String,
    pub replace: bool,
    pub rows: Option<u64>,
}

/// The segment a descriptor names: a path of one element, or a command holding the name, or
/// JSON `{"name": ..., "replace": bool, "rows": N}` (upload options).
///
/// `rows` guards uploads: a gRPC client stream that ends early looks complete (arrow-flight's
/// `FlightClient` ends it cleanly when its input fails), so a client that announces its row
/// count gets nothing published unless exactly that many arrive. `push` always announces it.
pub fn descriptor_target(descriptor: &FlightDescriptor) -> Result<Target, Status> {
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

pub fn ticket_name(ticket: &Ticket) -> Result<String, Status> {
    String::from_utf8(ticket.ticket.to_vec())
        .map_err(|_| Status::invalid_argument("a ticket is a segment name (UTF-8)"))
}
