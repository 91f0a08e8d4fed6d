//! `shmarrow rm NAME...`: remove segments; exit 1 if any was missing or could not be removed.

use std::io::Write;
use std::process::ExitCode;

use serde_json::json;
use shmarrow::SegmentDir;

use crate::cli::RmArgs;

pub fn run(
    dir: &SegmentDir,
    args: &RmArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let mut report = Vec::new();
    let mut failed = false;
    for name in &args.names {
        let (status, error) = match dir.remove(name) {
            Ok(true) => ("removed", None),
            Ok(false) => ("not found", None),
            Err(e) => ("error", Some(format!("{:#}", anyhow::Error::from(e)))),
        };
        failed |= status != "removed";
        if !json {
            match &error {
                Some(e) => eprintln!("shmarrow: error: {e}"),
                None if status == "removed" => writeln!(out, "removed {name}")?,
                None => eprintln!(
                    "shmarrow: error: segment {name:?} not found in {}",
                    dir.path().display()
                ),
            }
        }
        report.push(json!({"name": name, "status": status, "error": error}));
    }
    if json {
        crate::fmt::print_json(out, &json!(report))?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
