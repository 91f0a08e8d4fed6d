//! Channels across processes: one producer, three consumers (one in Python), 100,000 batches;
//! a consumer killed mid-stream stops holding the producer; a killed producer is reported;
//! processes racing to become a channel's producer (fresh, or after its producer was killed)
//! leave exactly one.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use common::{TempDir, produce_trades, spawn};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use shmarrow::{ChannelError, ChannelOptions, CreateOptions, Error, Lifetime, SegmentDir};

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
    common::wait_until(
        "the stuck consumer to hold the producer back by a full ring",
        || {
            tmp.dir().channel_info("ch").is_ok_and(|info| {
                // `next` counts the batch the consumer holds while its print blocks: that
                // batch's slot stays pinned, so a full ring is `slots` batches from it.
                info.consumers.iter().any(|c| {
                    c.process.pid == stuck.id() && info.sent + 1 >= c.next + u64::from(info.slots)
                })
            })
        },
    );
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
    common::wait_until("the consumer to receive a batch", || {
        tmp.dir().channel_info("ch").is_ok_and(|info| {
            info.consumers
                .iter()
                .any(|c| c.process.pid == consumer.id() && c.next > 0)
        })
    });
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

/// Set in the environment of a copy of this test binary that plays a racer (see [`racer`]).
const RACER: &str = "SHMARROW_TEST_RACER";

fn race_schema() -> Schema {
    Schema::new(vec![Field::new("round", DataType::Int64, false)])
}

/// A racer process: reads commands on stdin, answers one `RACER ...` line each on stdout.
/// `create NAME` creates an owner channel and becomes its producer; `claim NAME` tries to
/// become its producer (`won`, `lost` for `ProducerExists`, or `error ...`); `send N` sends
/// a batch holding N; `release` drops the producer (closing the stream).
fn racer() {
    let dir = SegmentDir::from_env();
    let mut held = None;
    let owner = ChannelOptions::default()
        .slot_size(4096)
        .create_options(CreateOptions::default().lifetime(Lifetime::Owner));
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let answer = match verb {
            "create" | "claim" => {
                let claim = if verb == "create" {
                    dir.create_producer(arg, &race_schema(), &owner)
                } else {
                    dir.producer(arg)
                };
                match claim {
                    Ok(p) => {
                        held = Some(p);
                        "won".to_owned()
                    }
                    Err(Error::Channel {
                        source: ChannelError::ProducerExists(_),
                        ..
                    }) => "lost".to_owned(),
                    Err(e) => format!("error {e}"),
                }
            }
            "send" => {
                let n: i64 = arg.parse().unwrap();
                let batch = RecordBatch::try_new(
                    Arc::new(race_schema()),
                    vec![Arc::new(Int64Array::from(vec![n]))],
                )
                .unwrap();
                match held.as_mut().map(|p| p.send(&batch)) {
                    Some(Ok(())) => "sent".to_owned(),
                    other => format!("error {other:?}"),
                }
            }
            "release" => {
                held = None;
                "released".to_owned()
            }
            other => format!("error unknown command {other}"),
        };
        println!("RACER {answer}");
    }
}

/// A copy of this test binary running [`racer`] (inside test `test`) in directory `dir`.
struct Racer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Racer {
    fn spawn(test: &str, dir: &TempDir) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                test,
                "--exact",
                "--nocapture",
                "--quiet",
                "--test-threads=1",
            ])
            .env(RACER, "1")
            .env(shmarrow::DIR_ENV, &dir.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn tell(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
    }

    /// The answer to the oldest command not answered yet (the harness's own lines skipped).
    fn answer(&mut self) -> String {
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "racer {} exited",
                self.child.id()
            );
            if let Some(answer) = line.trim_end().strip_prefix("RACER ") {
                return answer.to_owned();
            }
        }
    }

    /// Close its stdin (it exits) and wait for it.
    fn finish(self) {
        let Racer {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        assert!(child.wait().unwrap().success());
    }
}

/// Tell every racer `command` (in quick succession: they race), then collect the answers.
fn race(racers: &mut [Racer], command: &str) -> Vec<String> {
    for r in racers.iter_mut() {
        r.tell(command);
    }
    racers.iter_mut().map(Racer::answer).collect()
}

fn the_one_winner(answers: &[String], round: usize) -> usize {
    let winners: Vec<_> = (0..answers.len())
        .filter(|&i| answers[i] == "won")
        .collect();
    assert_eq!(winners.len(), 1, "round {round}: {answers:?}");
    assert!(
        answers.iter().all(|a| a == "won" || a == "lost"),
        "round {round}: {answers:?}"
    );
    winners[0]
}

/// In a racer copy of this binary ([`RACER`] set): play the racer, then `None`. Otherwise a
/// fresh directory and four racers, copies of this binary running test `test`.
fn racers_unless_one(test: &str) -> Option<(TempDir, Vec<Racer>)> {
    if std::env::var_os(RACER).is_some() {
        racer();
        return None;
    }
    let tmp = TempDir::new("chan-race");
    let racers = (0..4).map(|_| Racer::spawn(test, &tmp)).collect();
    Some((tmp, racers))
}

/// Four processes claim a fresh channel at once, 200 times: exactly one wins each round.
#[test]
fn processes_racing_for_a_fresh_channel_leave_exactly_one_producer() {
    let test = "processes_racing_for_a_fresh_channel_leave_exactly_one_producer";
    let Some((tmp, mut racers)) = racers_unless_one(test) else {
        return;
    };
    let dir = tmp.dir();
    let options = ChannelOptions::default().slots(1).slot_size(4096);
    for round in 0..200 {
        let name = format!("r{round}");
        dir.create_channel(&name, &race_schema(), &options).unwrap();
        let answers = race(&mut racers, &format!("claim {name}"));
        let winner = the_one_winner(&answers, round);
        let info = dir.channel_info(&name).unwrap();
        assert!(info.producer_alive, "round {round}");
        assert_eq!(
            info.producer.map(|p| p.pid),
            Some(racers[winner].child.id()),
            "round {round}"
        );
        racers[winner].tell("release");
        assert_eq!(racers[winner].answer(), "released");
        assert!(dir.remove(&name).unwrap());
    }
    racers.into_iter().for_each(Racer::finish);
}

/// A producer killed mid-stream: its consumer reports it dead, gc keeps the channel while a
/// new producer holds it, and of four processes racing to take it over exactly one does and
/// can send. 20 rounds, each with a fresh channel and a fresh victim.
#[test]
fn a_killed_producers_channel_is_taken_over_by_exactly_one_of_several_racers() {
    let test = "a_killed_producers_channel_is_taken_over_by_exactly_one_of_several_racers";
    let Some((tmp, mut racers)) = racers_unless_one(test) else {
        return;
    };
    let dir = tmp.dir();
    for round in 0..20 {
        let name = format!("t{round}");
        // The victim creates an owner channel: once it is dead, only the producer claim keeps
        // gc from removing the channel.
        let mut victim = Racer::spawn(test, &tmp);
        victim.tell(&format!("create {name}"));
        assert_eq!(victim.answer(), "won", "round {round}");
        let mut consumer = dir.subscribe(&name).unwrap();
        victim.tell("send 1");
        assert_eq!(victim.answer(), "sent");
        assert_eq!(consumer.next().unwrap().unwrap().num_rows(), 1);
        let victim_pid = victim.child.id();
        sigkill(&victim.child);
        victim.child.wait().unwrap();
        match consumer.recv() {
            Err(Error::Channel {
                source: ChannelError::ProducerDied(pid),
                ..
            }) => assert_eq!(pid, victim_pid),
            other => panic!("round {round}: {other:?}"),
        }
        drop(consumer);
        assert!(!dir.channel_info(&name).unwrap().producer_alive);

        let answers = race(&mut racers, &format!("claim {name}"));
        let winner = the_one_winner(&answers, round);
        assert!(dir.gc(false).unwrap().is_empty(), "round {round}");
        let mut consumer = dir.subscribe(&name).unwrap();
        racers[winner].tell(&format!("send {round}"));
        assert_eq!(racers[winner].answer(), "sent");
        let got = consumer.next().unwrap().unwrap();
        let column = got.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(column.value(0), round as i64);
        drop((got, consumer));
        racers[winner].tell("release");
        assert_eq!(racers[winner].answer(), "released");
        // Closed, its creator and producer gone, no consumer: now it is garbage.
        let removed = dir.gc(false).unwrap();
        assert_eq!(removed.len(), 1, "round {round}: {removed:?}");
        assert!(!tmp.0.join(&name).exists());
    }
    racers.into_iter().for_each(Racer::finish);
}
