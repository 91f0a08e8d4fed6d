//! The actions of `serve`: `remove` and `reduce` (computed next to the data: only the
//! statistics cross the network).

use serde_json::{Value, json};
use shmarrow::SegmentDir;
use shmarrow::reduce::{Op, ReduceOptions};
use tonic::Status;

use super::service::{log, status};

/// The actions offered, with their descriptions (`list_actions`).
pub const TYPES: [(&str, &str); 2] = [
    (
        "remove",
        "Remove a segment. Body: its name. Result: {\"name\", \"status\"}.",
    ),
    (
        "reduce",
        "Statistics of numeric columns, computed next to the data. Body: JSON {\"name\": ..., \"columns\": [...], \"ops\": [...], \"ddof\": 0} (columns default to every numeric column, ops to all). Result: the JSON of `shmarrow reduce --json`.",
    ),
];

/// Run `action` for the client at `from`: its result as JSON.
pub fn run(dir: &SegmentDir, action: &arrow_flight::Action, from: &str) -> Result<Value, Status> {
    match action.r#type.as_str() {
        "remove" => {
            let name = std::str::from_utf8(&action.body)
                .map_err(|_| Status::invalid_argument("remove: the body is a segment name"))?
                .trim()
                .to_owned();
            log(format_args!("remove {name} for {from}"));
            if !dir.remove(&name).map_err(status)? {
                return Err(Status::not_found(format!("segment {name:?} not found")));
            }
            Ok(json!({"name": name, "status": "removed"}))
        }
        "reduce" => {
            let request: Value = serde_json::from_slice(&action.body).map_err(|e| {
                Status::invalid_argument(format!(
                    "reduce: the body is JSON {{\"name\": ..., \"columns\": [...]}}: {e}"
                ))
            })?;
            log(format_args!("reduce {} for {from}", request["name"]));
            reduce(dir, &request)
        }
        other => Err(Status::invalid_argument(format!(
            "unknown action {other:?} (this server offers remove, reduce)"
        ))),
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
    let columns = strings("columns")?;
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
    // No column: every numeric column, as Segment::reduce does.
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let stats = segment
        .reduce(&refs, &ReduceOptions::default().ddof(ddof))
        .map_err(status)?;
    let ops: &[Op] = if ops.is_empty() { &Op::ALL } else { &ops };
    Ok(Value::Array(
        stats
            .iter()
            .map(|s| crate::cmd::reduce::stats_json(s, ops))
            .collect(),
    ))
}
