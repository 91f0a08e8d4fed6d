//! Channels: broadcast in order, zero copy, backpressure, lossy mode, liveness.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use common::TempDir;
use shmarrow::{ChannelError, ChannelOptions, CreateOptions, Error, Lifetime};

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
    ])
}

fn batch(i: i64, rows: usize) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            Arc::new(Int64Array::from(vec![i; rows])),
            Arc::new(StringArray::from_iter(
                (0..rows).map(|r| (r % 3 != 0).then(|| format!("{i}-{r}"))),
            )),
        ],
    )
    .unwrap()
}

fn seq_of(b: &RecordBatch) -> i64 {
    b.column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

#[test]
fn broadcast_in_order_to_every_consumer() {
    let tmp = TempDir::new("chan");
    let dir = tmp.dir();
    dir.create_channel(
        "c",
        &schema(),
        &ChannelOptions::default().slots(4).slot_size(1 << 16),
    )
    .unwrap();
    let consumers: Vec<_> = (0..3).map(|_| dir.subscribe("c").unwrap()).collect();
    let n = 2000;
    let handles: Vec<_> = consumers
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let mut seen = 0i64;
                while let Some(r) = c.recv().unwrap() {
                    assert_eq!(seq_of(&r.batch), seen);
                    assert_eq!(r.seq, seen as u64);
                    assert_eq!(r.missed, 0);
                    assert_eq!(r.batch.num_rows(), 1 + (seen as usize % 5));
                    let s = r
                        .batch
                        .column(1)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .unwrap();
                    assert!(s.is_null(0));
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    let mut p = dir.producer("c").unwrap();
    assert!(matches!(
        dir.producer("c"),
        Err(Error::Channel {
            source: ChannelError::ProducerExists(_),
            ..
        })
    ));
    for i in 0..n {
        p.send(&batch(i, 1 + (i as usize % 5))).unwrap();
    }
    drop(p);
    for h in handles {
        assert_eq!(h.join().unwrap(), n);
    }
}

#[test]
fn a_held_batch_pins_its_slot_and_oversized_batches_are_refused() {
    let tmp = TempDir::new("chan-pin");
    let dir = tmp.dir();
    dir.create_channel(
        "c",
        &schema(),
        &ChannelOptions::default().slots(2).slot_size(4096),
    )
    .unwrap();
    let mut c = dir.subscribe("c").unwrap();
    let mut p = dir.producer("c").unwrap();
    p.wait_policy().timeout = Some(Duration::from_millis(200));
    p.send(&batch(0, 3)).unwrap();
    let kept = c.recv().unwrap().unwrap().batch;
    p.send(&batch(1, 3)).unwrap();
    let second = c.recv().unwrap().unwrap();
    // Both slots are held (pinned by `kept` and `second`): the producer must wait.
    let t0 = Instant::now();
    assert!(matches!(
        p.send(&batch(2, 3)),
        Err(Error::Channel {
            source: ChannelError::Timeout(_),
            ..
        })
    ));
    assert!(t0.elapsed() >= Duration::from_millis(200));
    assert_eq!(seq_of(&kept), 0, "the held batch was not overwritten");
    drop(kept);
    p.send(&batch(2, 3)).unwrap();
    assert_eq!(seq_of(&c.recv().unwrap().unwrap().batch), 2);
    drop(second);
    match p.send(&batch(3, 1000)) {
        Err(Error::Channel {
            source: ChannelError::BatchTooLarge { needed, slot: 4096 },
            ..
        }) => assert!(needed > 4096),
        other => panic!("{other:?}"),
    }
    p.send(&batch(3, 1)).unwrap();
    assert_eq!(
        seq_of(&c.recv().unwrap().unwrap().batch),
        3,
        "an oversized batch sends nothing"
    );
}

#[test]
fn lossy_mode_reports_missed_batches_exactly() {
    let tmp = TempDir::new("chan-lossy");
    let dir = tmp.dir();
    dir.create_channel(
        "c",
        &schema(),
        &ChannelOptions::default()
            .slots(4)
            .slot_size(1 << 14)
            .lossy(true),
    )
    .unwrap();
    let mut c = dir.subscribe("c").unwrap();
    let mut p = dir.producer("c").unwrap();
    for i in 0..10 {
        p.send(&batch(i, 2)).unwrap(); // nobody reads: never blocks in lossy mode
    }
    let r = c.recv().unwrap().unwrap();
    assert_eq!((r.seq, r.missed, seq_of(&r.batch)), (6, 6, 6));
    // While `r` is held its slot is pinned: the producer writes around... it waits for it.
    drop(r);
    for expected in 7..10 {
        let r = c.recv().unwrap().unwrap();
        assert_eq!((r.seq, r.missed), (expected, 0));
    }
    assert_eq!(c.missed(), 6);
    drop(p);
    assert!(c.recv().unwrap().is_none());
}

#[test]
fn schema_mismatch_and_not_a_channel() {
    let tmp = TempDir::new("chan-bad");
    let dir = tmp.dir();
    dir.create_channel(
        "c",
        &schema(),
        &ChannelOptions::default().slot_size(1 << 12),
    )
    .unwrap();
    let mut p = dir.producer("c").unwrap();
    let other =
        RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1])) as _)]).unwrap();
    assert!(matches!(
        p.send(&other),
        Err(Error::Channel {
            source: ChannelError::SchemaMismatch(_),
            ..
        })
    ));
    std::fs::write(tmp.0.join("junk"), vec![7u8; 4096]).unwrap();
    assert!(matches!(
        dir.subscribe("junk"),
        Err(Error::Channel {
            source: ChannelError::NotAChannel(_),
            ..
        })
    ));
    assert!(matches!(
        dir.subscribe("missing"),
        Err(Error::NotFound { .. })
    ));
}

/// Inputs the fuzzers found crashes with (`fuzz/`), kept so they stay fixed. The channel target
/// patches in the magic and version when the first byte is odd; so does this test.
#[test]
fn fuzz_regressions_are_errors() {
    let tmp = TempDir::new("chan-fuzz");
    let dir = tmp.dir();
    let cases = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fuzz_regressions"
    ))
    .unwrap();
    for case in cases
        .flatten()
        .filter(|c| c.file_name().to_string_lossy().starts_with("channel-"))
    {
        let mut bytes = std::fs::read(case.path()).unwrap();
        if bytes.len() >= 12 && bytes[0] & 1 == 1 {
            bytes[..8].copy_from_slice(shmarrow::CHANNEL_MAGIC);
            bytes[8..12].copy_from_slice(&shmarrow::CHANNEL_VERSION.to_le_bytes());
        }
        std::fs::write(tmp.0.join("c"), &bytes).unwrap();
        assert!(dir.subscribe("c").is_err(), "{:?}", case.path());
        assert!(dir.producer("c").is_err(), "{:?}", case.path());
    }
}

fn dict_schema() -> Schema {
    Schema::new(vec![Field::new(
        "tag",
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        false,
    )])
}

/// A batch of `keys` into the dictionary `values`.
fn dict_batch(values: [&str; 2], keys: Vec<i32>) -> RecordBatch {
    let dict = DictionaryArray::new(
        Int32Array::from(keys),
        Arc::new(StringArray::from(values.to_vec())),
    );
    RecordBatch::try_new(Arc::new(dict_schema()), vec![Arc::new(dict)]).unwrap()
}

fn tags(b: &RecordBatch) -> Vec<String> {
    let dict = b.column(0).as_dictionary::<Int32Type>();
    let values = dict.values().as_string::<i32>();
    dict.keys()
        .values()
        .iter()
        .map(|&k| values.value(k as usize).to_owned())
        .collect()
}

/// Issue 12 item 4: a batch too large for its slot is refused after part of it was written
/// (its dictionary message fits, its record batch does not). The slot's old batch is then torn:
/// the new dictionary in front of the old indices. A consumer in lossy mode that reaches the
/// slot must skip it and count it missed, never hand out a batch decoded from those bytes.
#[test]
fn lossy_consumer_never_yields_a_batch_from_a_slot_whose_encoding_failed() {
    let tmp = TempDir::new("chan-torn");
    let dir = tmp.dir();
    dir.create_channel(
        "c",
        &dict_schema(),
        &ChannelOptions::default()
            .slots(2)
            .slot_size(4096)
            .lossy(true),
    )
    .unwrap();
    let mut c = dir.subscribe("c").unwrap();
    let mut p = dir.producer("c").unwrap();
    p.send(&dict_batch(["a", "b"], vec![0, 1])).unwrap();
    p.send(&dict_batch(["a", "b"], vec![1, 0])).unwrap();
    // Same dictionary size, thousands of keys: the dictionary message overwrites the one of
    // batch 0 in slot 0, the record batch overflows.
    match p.send(&dict_batch(["x", "y"], vec![1; 5000])) {
        Err(Error::Channel {
            source: ChannelError::BatchTooLarge { .. },
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut received = Vec::new();
    c.wait_policy().timeout = Some(Duration::ZERO);
    loop {
        match c.recv() {
            Ok(Some(r)) => received.push((r.seq, r.missed, tags(&r.batch))),
            Err(Error::Channel {
                source: ChannelError::Timeout(_),
                ..
            }) => break,
            other => panic!("{other:?}"),
        }
    }
    c.wait_policy().timeout = None;
    assert_eq!(
        received,
        vec![(1, 1, vec!["b".to_owned(), "a".to_owned()])],
        "batch 0's slot was torn: skipped and counted, batch 1 intact"
    );
    assert_eq!(c.missed(), 1);
    // The producer goes on: the slot is rewritten whole and readable again.
    p.send(&dict_batch(["x", "y"], vec![0])).unwrap();
    let r = c.recv().unwrap().unwrap();
    assert_eq!((r.seq, tags(&r.batch)), (2, vec!["x".to_owned()]));
}

/// The same failure without lossy mode: the torn slot held a batch every consumer had read, so
/// nobody sees it, and the next batch gets the sequence number the failed one would have had.
#[test]
fn a_failed_send_in_blocking_mode_loses_nothing() {
    let tmp = TempDir::new("chan-torn-block");
    let dir = tmp.dir();
    dir.create_channel(
        "c",
        &dict_schema(),
        &ChannelOptions::default().slots(2).slot_size(4096),
    )
    .unwrap();
    let mut c = dir.subscribe("c").unwrap();
    let mut p = dir.producer("c").unwrap();
    for i in 0..2 {
        p.send(&dict_batch(["a", "b"], vec![i])).unwrap();
        assert_eq!(c.recv().unwrap().unwrap().seq, i as u64);
    }
    assert!(p.send(&dict_batch(["x", "y"], vec![1; 5000])).is_err());
    p.send(&dict_batch(["x", "y"], vec![1])).unwrap();
    let r = c.recv().unwrap().unwrap();
    assert_eq!(
        (r.seq, r.missed, tags(&r.batch)),
        (2, 0, vec!["y".to_owned()])
    );
    assert_eq!(c.missed(), 0);
}

/// Issue 12 item 4: the header fields `open` checked are cached. Rewriting them in the file
/// afterwards (as a hostile or buggy process could) changes nothing for the handles already
/// open, and a new subscriber is refused cleanly.
#[test]
fn header_fields_are_read_once() {
    let tmp = TempDir::new("chan-header");
    let dir = tmp.dir();
    dir.create_channel(
        "c",
        &schema(),
        &ChannelOptions::default().slots(2).slot_size(1 << 14),
    )
    .unwrap();
    let mut c = dir.subscribe("c").unwrap();
    let mut p = dir.producer("c").unwrap();
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(tmp.0.join("c"))
            .unwrap();
        // slot_count 0, max_consumers huge, slot_size, schema_offset, schema_len, offsets: junk.
        file.write_all_at(&[0xEE; 48], 16).unwrap();
    }
    for i in 0..5 {
        p.send(&batch(i, 3)).unwrap();
        let r = c.recv().unwrap().unwrap();
        assert_eq!((r.seq, seq_of(&r.batch)), (i as u64, i));
    }
    assert!(matches!(
        dir.subscribe("c"),
        Err(Error::Channel {
            source: ChannelError::NotAChannel(_),
            ..
        })
    ));
}

/// Files too short for the header, or whose header does not match their length, are refused
/// before any reference into the mapping is built.
#[test]
fn short_or_inconsistent_files_are_refused() {
    let tmp = TempDir::new("chan-short");
    let dir = tmp.dir();
    for len in [0usize, 8, 100, 191] {
        let mut bytes = vec![0u8; len];
        bytes[..len.min(8)].copy_from_slice(&shmarrow::CHANNEL_MAGIC[..len.min(8)]);
        std::fs::write(tmp.0.join("c"), &bytes).unwrap();
        for result in [
            dir.subscribe("c").map(drop),
            dir.producer("c").map(drop),
            dir.channel_info("c").map(drop),
        ] {
            assert!(
                matches!(
                    result,
                    Err(Error::Channel {
                        source: ChannelError::NotAChannel(_),
                        ..
                    })
                ),
                "{len} bytes: {result:?}"
            );
        }
    }
    // A valid channel cut short: the header promises more than the file holds.
    dir.create_channel("d", &schema(), &ChannelOptions::default().slot_size(4096))
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp.0.join("d"))
        .unwrap();
    file.set_len(file.metadata().unwrap().len() - 4096).unwrap();
    assert!(matches!(
        dir.subscribe("d"),
        Err(Error::Channel {
            source: ChannelError::NotAChannel(_),
            ..
        })
    ));
}

#[test]
fn invalid_options_are_refused_and_leave_nothing() {
    let tmp = TempDir::new("chan-options");
    let dir = tmp.dir();
    let base = ChannelOptions::default().slot_size(4096);
    for (options, needle) in [
        (base.slots(0), "at least 1 slot"),
        (base.max_consumers(0), "max_consumers"),
        (
            base.max_consumers(shmarrow::MAX_CONSUMERS + 1),
            "max_consumers",
        ),
        (base.slot_size(0), "at least 128"),
        (base.slot_size(127), "at least 128"),
        (base.slot_size(u64::MAX), "more than a file can hold"),
        (base.slot_size(u64::MAX - 63), "more than a file can hold"),
        (
            base.slots(u32::MAX).slot_size(1 << 40),
            "more than a file can hold",
        ),
    ] {
        match dir.create_channel("c", &schema(), &options) {
            Err(
                e @ Error::Channel {
                    source: ChannelError::InvalidOptions(_),
                    ..
                },
            ) => {
                let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
                assert!(text.contains(needle), "{text}");
            }
            other => panic!("{options:?}: {other:?}"),
        }
    }
    assert_eq!(
        std::fs::read_dir(&tmp.0).unwrap().count(),
        0,
        "nothing left behind"
    );
    // Sizes are rounded up to 64 bytes.
    dir.create_channel("c", &schema(), &base.slot_size(130))
        .unwrap();
    assert_eq!(dir.channel_info("c").unwrap().slot_size, 192);
}

/// Small slots, removed with the handle that created the channel.
fn owner_options() -> ChannelOptions {
    ChannelOptions::default()
        .slot_size(4096)
        .create_options(CreateOptions::default().lifetime(Lifetime::Owner))
}

#[test]
fn owner_channels_go_with_their_producer_persistent_ones_stay() {
    let tmp = TempDir::new("chan-lifetime");
    let dir = tmp.dir();
    let owner = owner_options();
    let mut p = dir.create_producer("owned", &schema(), &owner).unwrap();
    let mut c = dir.subscribe("owned").unwrap();
    p.send(&batch(7, 2)).unwrap();
    drop(p);
    assert!(
        !tmp.0.join("owned").exists(),
        "an owner channel goes with its producer"
    );
    // A consumer that joined still reads what was sent, then the end of the stream.
    assert_eq!(seq_of(&c.recv().unwrap().unwrap().batch), 7);
    assert!(c.recv().unwrap().is_none());

    // The handle of create_channel owns it the same way.
    let created = dir.create_channel("owned", &schema(), &owner).unwrap();
    assert!(tmp.0.join("owned").exists());
    drop(created);
    assert!(!tmp.0.join("owned").exists());

    let p = dir
        .create_producer(
            "kept",
            &schema(),
            &ChannelOptions::default().slot_size(4096),
        )
        .unwrap();
    p.close();
    assert!(tmp.0.join("kept").exists(), "persistent is the default");
    assert_eq!(
        dir.gc(false).unwrap(),
        vec![],
        "gc never removes a persistent channel"
    );
}

/// Channels are listed apart from tables, described by `channel_info`, and refused by `attach`
/// with an error that says what they are (and tables by `subscribe`).
#[test]
fn channels_are_listed_described_and_told_apart_from_tables() {
    let tmp = TempDir::new("chan-list");
    let dir = tmp.dir();
    let mut p = dir
        .create_producer(
            "c",
            &schema(),
            &ChannelOptions::default()
                .slots(3)
                .slot_size(4096)
                .lossy(true),
        )
        .unwrap();
    let table = batch(1, 2);
    dir.create("t", &table.schema(), &[table], &CreateOptions::default())
        .unwrap();
    let consumer = dir.subscribe("c").unwrap();
    p.send(&batch(0, 1)).unwrap();
    let listing = dir.list().unwrap();
    assert_eq!(
        listing.segments.iter().map(|s| &s.name).collect::<Vec<_>>(),
        ["t"]
    );
    assert_eq!(listing.channels.len(), 1);
    assert_eq!(listing.channels[0].name, "c");
    assert_eq!(
        listing.channels[0].bytes,
        std::fs::metadata(tmp.0.join("c")).unwrap().len()
    );
    let info = dir.channel_info("c").unwrap();
    let me = shmarrow::ProcessId::current();
    assert_eq!(
        (info.slots, info.slot_size, info.lossy, info.sent),
        (3, 4096, true, 1)
    );
    assert_eq!(info.producer, Some(me));
    assert!(info.producer_alive && !info.closed);
    assert_eq!(info.live_consumers(), 1);
    assert_eq!(info.consumers[0].process, me);
    let meta = info.meta.unwrap();
    assert_eq!((meta.creator, meta.lifetime), (me, Lifetime::Persistent));
    assert!(!info.is_garbage());
    drop(consumer);
    p.close();
    let info = dir.channel_info("c").unwrap();
    assert!(info.closed && info.producer.is_none() && info.consumers.is_empty());

    let err = dir.attach("c").unwrap_err();
    assert!(matches!(err, Error::IsChannel { .. }), "{err:?}");
    assert!(err.to_string().contains("is a channel"), "{err}");
    assert!(matches!(dir.info("c"), Err(Error::IsChannel { .. })));
    match dir.subscribe("t") {
        Err(
            e @ Error::Channel {
                source: ChannelError::NotAChannel(_),
                ..
            },
        ) => {
            let text = std::error::Error::source(&e).unwrap().to_string();
            assert!(text.contains("use attach"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn subscribe_within_waits_for_the_channel_to_appear() {
    let tmp = TempDir::new("chan-wait");
    let dir = tmp.dir();
    // Nobody creates it: a timeout that says so.
    let t0 = Instant::now();
    match dir.subscribe_within("late", Some(Duration::from_millis(100))) {
        Err(Error::Channel {
            source: ChannelError::NotCreated(t),
            ..
        }) => assert_eq!(t, Duration::from_millis(100)),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(100));
    // Created by another thread once we wait (the subscriber signals that it started).
    let (started, go) = std::sync::mpsc::channel();
    let creator = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            go.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            dir.create_producer(
                "late",
                &schema(),
                &ChannelOptions::default().slot_size(4096),
            )
            .unwrap()
        })
    };
    started.send(()).unwrap();
    let mut c = dir.subscribe_within("late", None).unwrap();
    let mut p = creator.join().unwrap();
    c.wait_policy().timeout = Some(Duration::from_secs(10));
    p.send(&batch(3, 1)).unwrap();
    assert_eq!(seq_of(&c.recv().unwrap().unwrap().batch), 3);
    // A table under the name fails at once, without waiting.
    let table = batch(1, 1);
    dir.create("t", &table.schema(), &[table], &CreateOptions::default())
        .unwrap();
    assert!(matches!(
        dir.subscribe_within("t", None),
        Err(Error::Channel {
            source: ChannelError::NotAChannel(_),
            ..
        })
    ));
}

/// The producer claim is the kernel's lock on each claimer's own open of the file: threads
/// that each open the channel (as separate processes do) and claim it at the same instant,
/// 200 times over, always leave exactly one producer. (The claim used to be a pid
/// compare-and-swap followed by a start-time store: a claimer reading in between took the
/// new producer for dead and became a second one.)
#[test]
fn threads_racing_for_a_fresh_channel_leave_exactly_one_producer_each_round() {
    let tmp = TempDir::new("chan-race");
    let dir = tmp.dir();
    let racers = 4;
    let options = ChannelOptions::default().slots(1).slot_size(4096);
    let me = shmarrow::ProcessId::current();
    for round in 0..200 {
        let name = format!("r{round}");
        dir.create_channel(&name, &schema(), &options).unwrap();
        let start = Arc::new(std::sync::Barrier::new(racers));
        let claims: Vec<_> = (0..racers)
            .map(|_| {
                let (dir, name, start) = (dir.clone(), name.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    dir.producer(&name)
                })
            })
            .collect();
        let claims: Vec<_> = claims.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<_> = claims.iter().filter_map(|c| c.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {claims:?}");
        for lost in claims.iter().filter_map(|c| c.as_ref().err()) {
            assert!(
                matches!(
                    lost,
                    Error::Channel {
                        source: ChannelError::ProducerExists(_),
                        ..
                    }
                ),
                "round {round}: {lost:?}"
            );
        }
        let info = dir.channel_info(&name).unwrap();
        assert!(info.producer_alive, "round {round}");
        assert_eq!(info.producer, Some(me), "round {round}");
        drop(claims);
        let info = dir.channel_info(&name).unwrap();
        assert!(info.closed && !info.producer_alive && info.producer.is_none());
        assert!(dir.remove(&name).unwrap());
    }
}

/// A producer starting while its channel is replaced is refused or ends up producing into the
/// channel the name holds afterwards, never on the unlinked old file (`create_channel` holds the
/// old file's claim until its rename; a claim won on a replaced file starts again).
#[test]
fn a_producer_racing_a_replace_never_stays_on_the_old_file() {
    let tmp = TempDir::new("chan-replace");
    let dir = tmp.dir();
    let options = ChannelOptions::default().slots(1).slot_size(4096);
    let (mut claimed, mut replaced) = (0, 0);
    for round in 0..200 {
        dir.create_channel("c", &schema(), &options).unwrap();
        let start = Arc::new(std::sync::Barrier::new(2));
        let racer = {
            let (dir, start) = (dir.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                dir.producer("c")
            })
        };
        start.wait();
        let replace = dir.create_channel("c", &schema(), &options);
        let producer = racer.join().unwrap();
        match &producer {
            Ok(_) => {
                claimed += 1;
                let info = dir.channel_info("c").unwrap();
                assert!(
                    info.producer_alive,
                    "round {round}: the producer is on another file"
                );
            }
            Err(e) => assert!(
                matches!(
                    e,
                    Error::Channel {
                        source: ChannelError::ProducerExists(_),
                        ..
                    }
                ),
                "round {round}: {e:?}"
            ),
        }
        match &replace {
            Ok(_) => replaced += 1,
            Err(e) => assert!(
                producer.is_ok()
                    && matches!(
                        e,
                        Error::Channel {
                            source: ChannelError::ProducerExists(_),
                            ..
                        }
                    ),
                "round {round}: {e:?}"
            ),
        }
        drop(producer);
        assert!(dir.remove("c").unwrap());
    }
    assert!(
        claimed > 0 && replaced > 0,
        "{claimed} claims, {replaced} replaces"
    );
}

/// The claim lock is a byte-range lock, not a `flock`: the segment lock of
/// [`shmarrow::SegmentDir::lock`] on a channel is not held up by its producer; replacing the
/// channel is refused while the producer holds it.
#[test]
fn the_claim_is_independent_of_the_segment_lock_and_refuses_replacing() {
    let tmp = TempDir::new("chan-claim");
    let dir = tmp.dir();
    let owner = owner_options();
    let p = dir.create_producer("c", &schema(), &owner).unwrap();
    // Taken at once both ways while the producer holds the channel (a flock-based claim would
    // make the exclusive one wait forever).
    drop(dir.lock("c", false).unwrap());
    drop(dir.lock("c", true).unwrap());
    match dir.create_channel("c", &schema(), &owner) {
        Err(Error::Channel {
            source: ChannelError::ProducerExists(pid),
            ..
        }) => assert_eq!(pid, std::process::id()),
        other => panic!("{other:?}"),
    }
    drop(p);
    assert!(
        !tmp.0.join("c").exists(),
        "an owner channel goes with its producer"
    );
}
