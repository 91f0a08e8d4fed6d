//! Channels in the directory's lifecycle (issue 13): `ls`, `ls --json`, `df` and `inspect` show
//! them, `attach`-based verbs say what they are, and `gc` removes an owner channel once its
//! producer is dead and no live consumer holds it.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{TempDir, ok, produce_trades, run, spawn};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

fn json(dir: &TempDir, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &all)).unwrap()
}

/// The `ls --json` entry of `name`, if listed.
fn listed(dir: &TempDir, name: &str) -> Option<Value> {
    json(dir, &["ls"])
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["name"] == name)
        .cloned()
}

#[test]
fn a_killed_producers_channel_is_listed_and_collected_unless_a_consumer_holds_it() {
    let tmp = TempDir::new("chanlife");
    let mut producer = produce_trades(
        &tmp,
        "ticks",
        &["--batches", "1000000", "--rate", "50"],
        Stdio::null(),
    );
    // Wait (on the condition, no time bound) for the producer to have joined its channel.
    let pid = producer.id();
    while !tmp
        .dir()
        .channel_info("ticks")
        .is_ok_and(|info| info.producer_alive)
    {
        assert!(
            producer.try_wait().unwrap().is_none(),
            "produce exited early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let entry = listed(&tmp, "ticks").expect("ls --json lists the channel");
    assert_eq!(entry["kind"], "channel");
    assert_eq!(entry["slots"], 4);
    assert_eq!(entry["slot_size"], 65536);
    assert_eq!(entry["lifetime"], "owner");
    assert_eq!(entry["producer_pid"], pid);
    assert_eq!(entry["producer_alive"], true);
    assert_eq!(entry["consumers"], 0);
    assert_eq!(json(&tmp, &["gc", "--dry-run"]), serde_json::json!([]));

    // A consumer process joins, then is killed: a dead consumer holds nothing.
    let mut consumer = spawn(
        &tmp,
        &["consume", "ticks", "--count", "--timeout", "600"],
        Stdio::null(),
    );
    while listed(&tmp, "ticks").unwrap()["consumers"] != 1 {
        assert!(
            consumer.try_wait().unwrap().is_none(),
            "consume exited early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(Pid::from_raw(consumer.id() as i32), Signal::SIGKILL).unwrap();
    consumer.wait().unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    producer.wait().unwrap();
    let bytes = std::fs::metadata(tmp.0.join("ticks")).unwrap().len();
    let entry = listed(&tmp, "ticks").expect("still there after kill -9");
    assert_eq!(entry["consumers"], 0, "the killed consumer is not counted");
    assert_eq!(entry["producer_pid"], pid);
    assert_eq!(entry["producer_alive"], false);
    assert_eq!(entry["bytes"], bytes);
    let text = ok(&tmp, &["ls"]);
    let line = text.lines().find(|l| l.starts_with("ticks")).unwrap();
    assert!(line.contains(&format!("{pid} (dead)")), "{text}");
    let df = json(&tmp, &["df"]);
    assert_eq!(
        (df["channels"].as_u64(), df["channel_bytes"].as_u64()),
        (Some(1), Some(bytes))
    );
    assert_eq!(df["segment_bytes"], bytes);
    let text = ok(&tmp, &["inspect", "ticks"]);
    assert!(text.starts_with("channel ticks"), "{text}");
    assert!(text.contains(&format!("producer {pid} (dead)")), "{text}");
    assert!(text.contains("lifetime owner"), "{text}");
    let inspected = json(&tmp, &["inspect", "ticks"]);
    assert_eq!(inspected["kind"], "channel");
    assert_eq!(inspected["consumers"], 0);
    let entries = inspected["consumer_entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "the killed consumer's entry: nobody freed it"
    );
    assert_eq!(entries[0]["alive"], false);
    assert_eq!(inspected["fields"][0]["name"], "ts");
    let head = run(&tmp, &["head", "ticks"]);
    let stderr = String::from_utf8_lossy(&head.stderr);
    assert_eq!(head.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is a channel") && stderr.contains("subscribe"),
        "{stderr}"
    );

    // A live consumer holds it: gc leaves it.
    let consumer = tmp.dir().subscribe("ticks").unwrap();
    assert_eq!(listed(&tmp, "ticks").unwrap()["consumers"], 1);
    assert_eq!(json(&tmp, &["gc"]), serde_json::json!([]));
    assert!(tmp.0.join("ticks").exists());
    drop(consumer);
    let removed = json(&tmp, &["gc"]);
    assert_eq!(removed[0]["name"], "ticks", "{removed}");
    assert_eq!(removed[0]["reason"], "dead_channel");
    assert_eq!(removed[0]["bytes"], bytes);
    assert!(!tmp.0.join("ticks").exists());
    assert_eq!(json(&tmp, &["ls"]), serde_json::json!([]));
}

/// A produce that ends removes its channel itself; a `--keep` (persistent) channel is never
/// collected.
#[test]
fn ended_produces_remove_their_channel_and_kept_channels_stay() {
    let tmp = TempDir::new("chanlife-keep");
    let produce = |name: &str, extra: &[&str]| {
        let out = produce_trades(
            &tmp,
            name,
            &[&["--batches", "3"], extra].concat(),
            Stdio::null(),
        )
        .wait_with_output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    produce("gone", &[]);
    assert!(
        !tmp.0.join("gone").exists(),
        "an ended produce removes its channel"
    );
    produce("kept", &["--keep"]);
    assert_eq!(listed(&tmp, "kept").unwrap()["lifetime"], "persistent");
    assert_eq!(json(&tmp, &["gc"]), serde_json::json!([]));
    assert!(tmp.0.join("kept").exists());
}
