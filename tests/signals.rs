//! Ctrl-C (SIGINT), SIGTERM and SIGHUP sent to the real binary in the middle of `create` and
//! `import` (`pull`: tests/flight.rs): the command removes its own temp file, publishes
//! nothing and exits with 128 + the signal number. Each waits on the temp file existing, then
//! signals by pid.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{TempDir, interrupt_leaves_nothing, shmarrow_bin, wait_for_temp};
use nix::sys::signal::Signal;

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

#[test]
fn interrupted_import_from_a_pipe_leaves_nothing() {
    for signal in SIGNALS {
        let tmp = TempDir::new("sig-import");
        let mut child = shmarrow_bin()
            .arg("--dir")
            .arg(&tmp.0)
            .args(["import", "x", "-", "--format", "csv", "--infer-rows", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first rows arrive, then the pipe stays open: the import waits mid-way, its temp
        // file written.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a,b\n1,2\n3,4\n").unwrap();
        wait_for_temp(&tmp.0, &mut child, 0);
        interrupt_leaves_nothing(&tmp.0, child, signal, &[]);
        drop(stdin);
    }
}

#[test]
fn interrupted_create_leaves_nothing() {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/trades.json");
    for signal in SIGNALS {
        let tmp = TempDir::new("sig-create");
        let mut child = shmarrow_bin()
            .arg("--dir")
            .arg(&tmp.0)
            .args(["create", "big", "--schema", schema, "--rows", "5000000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_temp(&tmp.0, &mut child, 0);
        interrupt_leaves_nothing(&tmp.0, child, signal, &[]);
    }
}

#[test]
fn interrupted_export_leaves_nothing() {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/trades.json");
    let tmp = TempDir::new("sig-export");
    common::ok(
        &tmp,
        &["create", "t", "--schema", schema, "--rows", "2000000"],
    );
    let out = tmp.0.join("out");
    std::fs::create_dir(&out).unwrap();
    for signal in SIGNALS {
        let mut child = shmarrow_bin()
            .arg("--dir")
            .arg(&tmp.0)
            .args(["export", "t"])
            .arg(out.join("t.parquet"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_temp(&out, &mut child, 0);
        interrupt_leaves_nothing(&out, child, signal, &[]);
    }
}
