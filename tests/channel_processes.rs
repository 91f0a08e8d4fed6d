//! Channels across processes: one producer, three consumers (one in Python), 100,000 batches;
//! a consumer killed mid-stream stops holding the producer; a killed producer is reported.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TempDir, produce_trades, spawn};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

fn example(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_shmarrow"));
    bin.parent().unwrap().join("examples").join(name)
}

fn sigkill(child: &Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
}

/// Wait (on the condition, not a clock) until `creator` has created channel `name`.
fn wait_for_channel(dir: &TempDir, name: &str, creator: &mut Child) {
    while !dir.0.join(name).exists() {
        assert!(
            creator.try_wait().unwrap().is_none(),
            "the producer exited before creating the channel"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn one_producer_three_consumers_100k_batches() {
    let tmp = TempDir::new("chanproc");
    let python = common::python();
    let consumer = |lang: &str| -> Child {
        let mut cmd = if lang == "python" {
            let mut c = Command::new(python.as_ref().unwrap());
            c.arg(format!(
                "{}/examples/consumer.py",
                env!("CARGO_MANIFEST_DIR")
            ));
            c
        } else {
            Command::new(example("consumer"))
        };
        cmd.arg("ticks")
            .env(shmarrow::DIR_ENV, &tmp.0)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let kinds = if python.is_some() {
        ["rust", "rust", "python"]
    } else {
        ["rust", "rust", "rust"]
    };
    let producer = Command::new(example("producer"))
        .args(["ticks", "100000", "4", "3"])
        .env(shmarrow::DIR_ENV, &tmp.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let consumers: Vec<Child> = kinds.iter().map(|k| consumer(k)).collect();
    let out = producer.wait_with_output().unwrap();
    assert!(out.status.success(), "producer failed");
    for (child, kind) in consumers.into_iter().zip(kinds) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{kind} consumer failed");
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["consumer"], kind);
        assert_eq!(summary["batches"], 100_000, "{summary}");
        assert_eq!(summary["rows"], 400_000);
        assert_eq!(summary["in_order_and_correct"], true);
    }
    assert!(tmp.dir().list().unwrap().segments.is_empty() && !tmp.0.join("ticks").exists());
}

#[test]
fn a_killed_consumer_stops_holding_the_producer_back() {
    let tmp = TempDir::new("chankill-c");
    let mut producer = produce_trades(
        &tmp,
        "ch",
        &["--batches", "20000", "--consumers", "2", "--timeout", "60"],
        Stdio::piped(),
    );
    wait_for_channel(&tmp, "ch", &mut producer);
    let consume =
        |args: &[&str], stdout: Stdio| spawn(&tmp, &[&["consume", "ch"], args].concat(), stdout);
    let healthy = consume(&["--count"], Stdio::piped());
    // Prints a line per batch into a pipe nobody reads: it stalls once the pipe is full,
    // holding the ring, like a consumer that hangs.
    let stuck = consume(&[], Stdio::piped());
    std::thread::sleep(Duration::from_millis(1500));
    sigkill(&stuck);
    // Had the dead consumer kept holding the ring, the producer would have given up after its
    // --timeout (an error exit) instead of sending everything.
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent 20000 batches"));
    let healthy = healthy.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&healthy.stdout).contains("received 20000 batches"),
        "{}",
        String::from_utf8_lossy(&healthy.stdout)
    );
    let mut stuck = stuck;
    stuck.wait().unwrap();
}

#[test]
fn a_killed_producer_is_an_error_for_consumers() {
    let tmp = TempDir::new("chankill-p");
    let mut producer = produce_trades(
        &tmp,
        "ch",
        &[
            "--batches",
            "100000",
            "--rate",
            "50",
            "--consumers",
            "1",
            "--timeout",
            "60",
        ],
        Stdio::null(),
    );
    wait_for_channel(&tmp, "ch", &mut producer);
    let consumer = spawn(
        &tmp,
        &["consume", "ch", "--count", "--timeout", "60"],
        Stdio::piped(),
    );
    std::thread::sleep(Duration::from_millis(800));
    sigkill(&producer);
    // A consumer that did not notice would wait out its --timeout and say "timed out".
    let out = consumer.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("died without closing the stream"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(tmp.0.join("ch"));
    producer.wait().unwrap();
}
