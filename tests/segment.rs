//! The core segment contract through the Rust API: round trip, zero copy, snapshots,
//! lifetimes, permissions, hostile files and bad bytes, gc.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;
use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch};
use common::{Name, TempDir, assert_same_batches, assert_zero_copy, type_matrix};
use shmarrow::{AttachOptions, Attachment, CreateOptions, Error, Lifetime, SegmentDir, Validate};
use std::io::Cursor;

fn floats(values: &[f64]) -> RecordBatch {
    RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(values.to_vec())) as _)]).unwrap()
}

fn x_values(segment: &shmarrow::Segment) -> Vec<f64> {
    common::column_values::<arrow_array::types::Float64Type>(segment, "x")
        .into_iter()
        .flatten()
        .collect()
}

#[test]
fn type_matrix_round_trips_zero_copy_with_metadata() {
    let name = Name::new("matrix");
    let (schema, batches) = type_matrix();
    let created = name
        .dir
        .create(&name, &schema, &batches, &CreateOptions::default())
        .unwrap();
    assert_eq!(
        created.bytes(),
        std::fs::metadata(name.path()).unwrap().len()
    );

    let segment = name.dir.attach(&name).unwrap();
    assert_same_batches(segment.batches(), &batches);
    assert_zero_copy(&segment);
    assert_eq!(segment.num_rows(), common::MATRIX_ROWS as u64);
    let meta = segment.info().meta.expect("shmarrow metadata");
    assert_eq!(meta.creator.pid, std::process::id());
    assert!(meta.creator.is_alive());
    assert_eq!(meta.lifetime, Lifetime::Persistent);
    assert_eq!(meta.format_version, shmarrow::FORMAT_VERSION);

    // Every buffer of our own files starts on a 64-byte boundary of the file.
    let base = segment.bytes().as_ptr() as usize;
    for batch in segment.batches() {
        for column in batch.columns() {
            for buffer in column.to_data().buffers() {
                if !buffer.is_empty() {
                    // sliced batches are re-based by the writer, so each buffer starts aligned
                    assert_eq!((buffer.as_ptr() as usize - base) % 64, 0);
                }
            }
        }
    }
}

#[test]
fn empty_table_and_many_batches() {
    let name = Name::new("empty");
    let (schema, _) = type_matrix();
    name.dir
        .create(&name, &schema, &[], &CreateOptions::default())
        .unwrap();
    let segment = name.dir.attach(&name).unwrap();
    assert_eq!(segment.num_rows(), 0);
    assert!(segment.batches().is_empty());
    assert_eq!(segment.schema().fields(), schema.fields());

    let many: Vec<_> = (0..50).map(|i| floats(&[i as f64, -(i as f64)])).collect();
    name.dir
        .create(&name, &many[0].schema(), &many, &CreateOptions::default())
        .unwrap();
    let segment = name.dir.attach(&name).unwrap();
    assert_eq!(segment.batches().len(), 50);
    assert_same_batches(segment.batches(), &many);
    assert_zero_copy(&segment);
}

#[test]
fn replacing_keeps_the_old_snapshot_for_attached_readers() {
    let name = Name::new("snapshot");
    let v1 = floats(&[1.0, 2.0, 3.0]);
    name.dir
        .create(
            &name,
            &v1.schema(),
            std::slice::from_ref(&v1),
            &CreateOptions::default(),
        )
        .unwrap();
    let old = name.dir.attach(&name).unwrap();

    let v2 = floats(&[10.0, 20.0]);
    name.dir
        .create(&name, &v2.schema(), &[v2], &CreateOptions::default())
        .unwrap();
    assert_eq!(x_values(&old), [1.0, 2.0, 3.0], "attached reader sees v1");
    assert_eq!(x_values(&name.dir.attach(&name).unwrap()), [10.0, 20.0]);

    // replace(false): refused, and the current version is untouched.
    let err = name
        .dir
        .create(
            &name,
            &v1.schema(),
            &[v1],
            &CreateOptions::default().replace(false),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Exists { .. }), "{err}");
    assert_eq!(x_values(&name.dir.attach(&name).unwrap()), [10.0, 20.0]);
}

#[test]
fn batches_must_match_the_schema() {
    let name = Name::new("mismatch");
    let a = floats(&[1.0]);
    let b =
        RecordBatch::try_from_iter([("y", Arc::new(Float64Array::from(vec![1.0])) as _)]).unwrap();
    let err = name
        .dir
        .create(
            &name,
            &a.schema(),
            &[a.clone(), b],
            &CreateOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidTable { .. }), "{err}");
    assert!(!name.path().exists());
}

#[test]
fn owner_lifetime_removes_on_drop_and_persistent_stays() {
    let name = Name::new("owner");
    let b = floats(&[1.0]);
    let owned = name
        .dir
        .create(
            &name,
            &b.schema(),
            std::slice::from_ref(&b),
            &CreateOptions::default().lifetime(Lifetime::Owner),
        )
        .unwrap();
    assert!(name.path().exists());
    let reader = name.dir.attach(&name).unwrap();
    drop(owned);
    assert!(
        !name.path().exists(),
        "owner segment removed with its handle"
    );
    assert_eq!(
        x_values(&reader),
        [1.0],
        "an attached reader keeps its view"
    );

    // A replacement published under the name is not removed by the old handle.
    let owned = name
        .dir
        .create(
            &name,
            &b.schema(),
            std::slice::from_ref(&b),
            &CreateOptions::default().lifetime(Lifetime::Owner),
        )
        .unwrap();
    name.dir
        .create(
            &name,
            &b.schema(),
            std::slice::from_ref(&b),
            &CreateOptions::default(),
        )
        .unwrap();
    drop(owned);
    assert!(name.path().exists(), "someone else's replacement survives");

    let persistent = name
        .dir
        .create(&name, &b.schema(), &[b], &CreateOptions::default())
        .unwrap();
    drop(persistent);
    assert!(name.path().exists());
}

#[test]
fn modes_are_exact_and_private_by_default() {
    let name = Name::new("mode");
    let b = floats(&[1.0]);
    name.dir
        .create(
            &name,
            &b.schema(),
            std::slice::from_ref(&b),
            &CreateOptions::default(),
        )
        .unwrap();
    let mode = |p| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(name.path()), 0o600);
    name.dir
        .create(
            &name,
            &b.schema(),
            &[b],
            &CreateOptions::default().mode(0o664),
        )
        .unwrap();
    assert_eq!(mode(name.path()), 0o664, "not filtered by the umask");
}

#[test]
fn names_are_checked_everywhere() {
    let dir = SegmentDir::from_env();
    let b = floats(&[1.0]);
    for bad in [
        "",
        ".hidden",
        "a/b",
        "../../etc/passwd",
        "x y",
        &"n".repeat(201),
    ] {
        assert!(matches!(dir.attach(bad), Err(Error::InvalidName { .. })));
        assert!(matches!(dir.remove(bad), Err(Error::InvalidName { .. })));
        assert!(matches!(
            dir.create(
                bad,
                &b.schema(),
                std::slice::from_ref(&b),
                &CreateOptions::default()
            ),
            Err(Error::InvalidName { .. })
        ));
    }
    // The longest legal name works end to end.
    let long = "n".repeat(shmarrow::MAX_NAME_LEN);
    let tmp = TempDir::new("longname");
    tmp.dir()
        .create(&long, &b.schema(), &[b], &CreateOptions::default())
        .unwrap();
    assert_eq!(tmp.dir().attach(&long).unwrap().num_rows(), 1);
}

#[test]
fn missing_segments() {
    let name = Name::new("missing");
    assert!(matches!(
        name.dir.attach(&name),
        Err(Error::NotFound { .. })
    ));
    assert!(!name.dir.remove(&name).unwrap());
}

#[test]
fn symlinks_fifos_and_directories_are_refused() {
    let target = Name::new("target");
    let b = floats(&[1.0]);
    target
        .dir
        .create(&target, &b.schema(), &[b], &CreateOptions::default())
        .unwrap();

    let link = Name::new("link");
    symlink(target.path(), link.path()).unwrap();
    assert!(
        matches!(
            link.dir.attach(&link),
            Err(Error::NotAFile {
                kind: "symbolic link",
                ..
            })
        ),
        "symlink followed"
    );

    let fifo = Name::new("fifo");
    nix::unistd::mkfifo(&fifo.path(), nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(matches!(
        fifo.dir.attach(&fifo),
        Err(Error::NotAFile { kind: "FIFO", .. })
    ));

    let tmp = TempDir::new("isdir");
    std::fs::create_dir(tmp.0.join("sub")).unwrap();
    assert!(matches!(
        tmp.dir().attach("sub"),
        Err(Error::NotAFile {
            kind: "directory",
            ..
        })
    ));
    assert!(matches!(
        tmp.dir().remove("sub"),
        Err(Error::NotAFile { .. })
    ));
}

/// Published matrix bytes, to damage.
fn matrix_bytes() -> Vec<u8> {
    let name = Name::new("src");
    let (schema, batches) = type_matrix();
    name.dir
        .create(&name, &schema, &batches, &CreateOptions::default())
        .unwrap();
    std::fs::read(name.path()).unwrap()
}

fn assert_corrupt(tag: &str, bytes: &[u8]) {
    let name = Name::new(tag);
    std::fs::write(name.path(), bytes).unwrap();
    match name.dir.attach(&name) {
        Err(Error::Corrupt { name: n, reason }) => {
            assert_eq!(n, name.name);
            assert!(!reason.is_empty());
        }
        other => panic!("{tag}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn bad_bytes_are_errors_not_panics() {
    let good = matrix_bytes();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let random: Vec<u8> = (0..4096).map(|_| next() as u8).collect();
    assert_corrupt("random", &random);
    assert_corrupt("empty", &[]);
    assert_corrupt("tiny", b"ARROW");
    assert_corrupt("magic-only", b"ARROW1\0\0ARROW1\0\0\0\0ARROW1");
    for cut in [good.len() / 2, good.len() - 1, good.len() - 11, 100] {
        assert_corrupt("truncated", &good[..cut]);
    }
    let mut footer = good.clone();
    let n = footer.len();
    footer[n - 74..n - 10].fill(0xff);
    assert_corrupt("footer", &footer);
    let mut lying_len = good.clone();
    lying_len[n - 10..n - 6].copy_from_slice(&i32::MAX.to_le_bytes());
    assert_corrupt("footer-len", &lying_len);
}

#[test]
fn single_byte_damage_never_panics() {
    // Flip every byte of a small file, one at a time: each result is an error or a valid
    // table, never a panic, a hang or a read out of bounds.
    let name = Name::new("flip");
    let (schema, batches) = type_matrix();
    name.dir
        .create(&name, &schema, &batches[..1], &CreateOptions::default())
        .unwrap();
    let good = std::fs::read(name.path()).unwrap();
    let (mut errors, mut ok) = (0, 0);
    for i in 0..good.len() {
        let mut bytes = good.clone();
        bytes[i] ^= 0xa5;
        std::fs::write(name.path(), &bytes).unwrap();
        match name.dir.attach(&name) {
            Ok(_) => ok += 1,
            Err(Error::Corrupt { .. }) => errors += 1,
            Err(e) => panic!("byte {i}: unexpected error kind {e}"),
        }
    }
    assert!(errors > 0 && errors + ok == good.len());
}

#[test]
fn strict_attach_and_copied_columns_of_a_misaligned_file() {
    // A file of ours, shifted by 8 bytes inside the body: not possible with a valid file, so
    // build a foreign-style file with arrow's writer at 8-byte alignment instead.
    use arrow_array::Decimal128Array;
    let tmp = TempDir::new("align");
    let mut found = None;
    for pad in 0..4usize {
        let prefix = arrow_array::Int8Array::from(vec![1i8; pad * 8 + 1]);
        let dec = Decimal128Array::from(vec![1i128; pad * 8 + 1])
            .with_precision_and_scale(10, 2)
            .unwrap();
        let batch = RecordBatch::try_from_iter([
            ("pad", Arc::new(prefix) as _),
            ("dec", Arc::new(dec) as _),
        ])
        .unwrap();
        let opts =
            arrow_ipc::writer::IpcWriteOptions::try_new(8, false, arrow_ipc::MetadataVersion::V5)
                .unwrap();
        let path = tmp.0.join(format!("f{pad}"));
        let mut w = arrow_ipc::writer::FileWriter::try_new_with_options(
            std::fs::File::create(&path).unwrap(),
            &batch.schema(),
            opts,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let seg = tmp.dir().attach(&format!("f{pad}")).unwrap();
        assert_same_batches(seg.batches(), &[batch]);
        if seg.copied_columns() == ["dec"] {
            found = Some(pad);
            let err = tmp
                .dir()
                .attach_with(&format!("f{pad}"), &AttachOptions::default().strict(true))
                .unwrap_err();
            assert!(
                matches!(err, Error::NotZeroCopy { ref columns, .. } if columns == &["dec"]),
                "{err}"
            );
            let cols = seg.columns();
            assert!(!cols[1].zero_copy && cols[0].zero_copy);
        } else {
            assert!(seg.copied_columns().is_empty());
        }
    }
    assert!(
        found.is_some(),
        "no layout put the decimal buffer at 8 mod 16"
    );
}

#[test]
fn list_and_gc() {
    let tmp = TempDir::new("gc");
    let dir = tmp.dir();
    let b = floats(&[1.0, 2.0]);
    dir.create(
        "keep",
        &b.schema(),
        std::slice::from_ref(&b),
        &CreateOptions::default(),
    )
    .unwrap();
    std::fs::write(tmp.0.join("not-arrow"), b"hello world").unwrap();

    // A temp left by a writer that is dead (pid of an exited child).
    let mut child = Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let dead = format!(".ghost.{dead_pid}.12345.abc.tmp");
    std::fs::write(tmp.0.join(&dead), b"partial").unwrap();
    // A temp of this (live) process, and one whose pid is ours but start time is not
    // (a reused pid): only the first is kept.
    let me = shmarrow::ProcessId::current();
    let live = format!(".busy.{}.{}.def.tmp", me.pid, me.start_time);
    let reused = format!(".reuse.{}.{}.def.tmp", me.pid, me.start_time + 1);
    std::fs::write(tmp.0.join(&live), b"partial").unwrap();
    std::fs::write(tmp.0.join(&reused), b"partial").unwrap();

    let listing = dir.list().unwrap();
    assert_eq!(
        listing
            .segments
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["keep"]
    );
    assert_eq!(
        listing.segments[0].bytes,
        std::fs::metadata(tmp.0.join("keep")).unwrap().len()
    );
    assert_eq!(listing.temps.len(), 3);
    assert_eq!(listing.temps.iter().filter(|t| t.writer_alive).count(), 1);

    let planned = dir.gc(true).unwrap();
    assert_eq!(planned.len(), 2);
    assert!(tmp.0.join(&dead).exists(), "dry run removes nothing");
    let mut removed: Vec<_> = dir
        .gc(false)
        .unwrap()
        .into_iter()
        .map(|r| r.file_name.into_string().unwrap())
        .collect();
    removed.sort();
    assert_eq!(removed, [dead.clone(), reused.clone()]);
    assert!(!tmp.0.join(&dead).exists() && tmp.0.join(&live).exists());
    assert!(tmp.0.join("keep").exists());
}

#[test]
fn gc_reclaims_owner_segments_of_dead_creators_only() {
    let tmp = TempDir::new("gcowner");
    let (schema, batches) = type_matrix();
    let input = tmp.0.join("input.arrow");
    common::write_ipc_file(&input, &schema, &batches);
    // A creator that has exited (a child that ran and was reaped) left an `owner` segment.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let orphan = schema.as_ref().clone().with_metadata(
        [
            ("shmarrow.version", "1"),
            ("shmarrow.creator_pid", &dead_pid.to_string()),
            ("shmarrow.creator_start", "1"),
            ("shmarrow.created_ms", "0"),
            ("shmarrow.lifetime", "owner"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<std::collections::HashMap<String, String>>(),
    );
    let batches: Vec<_> = batches
        .iter()
        .map(|b| b.clone().with_schema(Arc::new(orphan.clone())).unwrap())
        .collect();
    common::write_ipc_file(&tmp.0.join("orphan"), &orphan, &batches);
    common::ok(&tmp, &["import", "kept", input.to_str().unwrap()]);
    // An owner segment whose creator (this test) is alive is kept.
    let b = floats(&[1.0]);
    let alive = tmp
        .dir()
        .create(
            "alive",
            &b.schema(),
            &[b],
            &CreateOptions::default().lifetime(Lifetime::Owner),
        )
        .unwrap();
    let removed: Vec<_> = tmp
        .dir()
        .gc(false)
        .unwrap()
        .into_iter()
        .map(|r| r.file_name)
        .collect();
    assert_eq!(removed, ["orphan"]);
    assert!(tmp.0.join("kept").exists() && tmp.0.join("alive").exists());
    drop(alive);
}

/// Where record batch `batch`'s message flatbuffer lies in `file` (after its 8-byte prefix).
fn message_range(file: &[u8], batch: usize) -> std::ops::Range<usize> {
    let (_, block) = common::positions(file, batch, 0);
    // A footer block is {offset: i64, metaDataLength: i32, padding, bodyLength: i64}.
    let offset = i64::from_le_bytes(file[block..block + 8].try_into().unwrap()) as usize;
    let len = i32::from_le_bytes(file[block + 8..block + 12].try_into().unwrap()) as usize;
    offset + 8..offset + len
}

/// The validation modes attach can be asked for.
const MODES: [shmarrow::Validate; 3] = [
    shmarrow::Validate::Auto,
    shmarrow::Validate::Full,
    shmarrow::Validate::Structure,
];

/// Attach refuses segment `name` in every mode, for a reason containing `needle` (a check's,
/// not a panic caught).
fn assert_refused(dir: &SegmentDir, name: &str, needle: &str) {
    for validate in MODES {
        match dir.attach_with(name, &AttachOptions::default().validate(validate)) {
            Err(Error::Corrupt { reason, .. }) if reason.contains(needle) => {}
            other => panic!("{validate}: expected Corrupt ({needle}), got {other:?}"),
        }
    }
}

/// Batches of one shape repeat their message metadata, which attach verifies and checks once
/// per run: a block whose footer entry declares a shorter body, or whose metadata differs,
/// is still checked on its own.
#[test]
fn every_batch_of_a_run_of_one_shape_is_checked_against_its_own_block() {
    let tmp = TempDir::new("runs");
    let dir = tmp.dir();
    let batches: Vec<_> = (0..4).map(|i| floats(&[i as f64, 1.0, 2.0, 3.0])).collect();
    let publish = || common::create_batches(&dir, "t", &batches);
    publish();
    let file = std::fs::read(dir.segment_path("t").unwrap()).unwrap();
    let metadata = |batch| file[message_range(&file, batch)].to_vec();
    assert_eq!(
        metadata(1),
        metadata(3),
        "the batches repeat their metadata"
    );
    for validate in MODES {
        let segment = dir
            .attach_with("t", &AttachOptions::default().validate(validate))
            .unwrap();
        assert_same_batches(segment.batches(), &batches);
    }

    // The footer's block of batch 3 declares an 8-byte body: its 32 bytes of values lie outside.
    common::patch(&dir, "t", |file| {
        let (_, block) = common::positions(file, 3, 1);
        file[block + 16..block + 24].copy_from_slice(&8i64.to_le_bytes());
    });
    assert_refused(&dir, "t", "lies outside the 8-byte body");

    // Batch 2's message moves a buffer past its body.
    publish();
    common::patch(&dir, "t", |file| {
        let range = message_range(file, 2);
        common::lie_about_a_buffer_offset(&mut file[range]);
    });
    assert_refused(&dir, "t", "lies outside the");
}

/// A table of primitive columns only (arrays made straight from the mapping, without arrow's
/// `ArrayData` path): every primitive type of the matrix, nulls included, round trips zero-copy
/// in every mode, and a null count that differs from its bitmap is refused. `attach_checked`
/// leaves such a private segment undecoded (another reader decodes its messages in place)
/// where the validation is structural and it is wanted, decodes it otherwise, and refuses the
/// wrong null count as attach does.
#[test]
fn primitive_columns_round_trip_zero_copy_and_a_wrong_null_count_is_refused() {
    let tmp = TempDir::new("primitive");
    let dir = tmp.dir();
    let (schema, batches) = type_matrix();
    let primitive: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).data_type().is_primitive())
        .collect();
    assert!(primitive.len() > 10, "{schema:?}");
    let batches: Vec<_> = batches
        .iter()
        .map(|b| b.project(&primitive).unwrap())
        .collect();
    assert!(batches[0].columns().iter().any(|c| c.null_count() > 0));
    common::create_batches(&dir, "t", &batches);
    for validate in MODES {
        let segment = dir
            .attach_with("t", &AttachOptions::default().validate(validate))
            .unwrap();
        assert_same_batches(segment.batches(), &batches);
        assert_zero_copy(&segment);
        let options = AttachOptions::default().validate(validate);
        match dir.attach_checked("t", &options, |_, _| true).unwrap() {
            Attachment::Checked(checked) => {
                assert_ne!(validate, Validate::Full);
                assert_eq!(checked.info().batches, segment.info().batches);
                assert_eq!(checked.messages().len(), batches.len());
                // Each range is one whole encapsulated message: stock arrow-rs reading it after
                // the file's schema message decodes the very batch attach decodes.
                let file = checked.bytes();
                let writer =
                    arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &checked.info().schema)
                        .unwrap();
                let schema_message = writer.get_ref().clone(); // no end-of-stream marker
                for (range, batch) in checked.messages().iter().zip(&batches) {
                    let mut stream = schema_message.clone();
                    stream.extend_from_slice(&file[range.clone()]);
                    let mut reader =
                        arrow_ipc::reader::StreamReader::try_new(Cursor::new(stream), None)
                            .unwrap();
                    let read = reader.next().unwrap().unwrap();
                    assert_same_batches(&[read], std::slice::from_ref(batch));
                }
            }
            Attachment::Decoded(decoded) => {
                assert_eq!(validate, Validate::Full);
                assert_same_batches(decoded.batches(), &batches);
            }
        }
        let Attachment::Decoded(decoded) = dir
            .attach_checked("t", &options, |s, n| {
                assert_eq!((s.fields().len(), n), (primitive.len(), batches.len()));
                false
            })
            .unwrap()
        else {
            panic!("not wanted, yet not decoded");
        };
        assert_same_batches(decoded.batches(), &batches);
    }

    let with_nulls = batches[0]
        .columns()
        .iter()
        .position(|c| c.null_count() > 0)
        .unwrap();
    let declared = batches[0].column(with_nulls).null_count() as i64;
    common::patch(&dir, "t", |file| {
        let message = arrow_ipc::root_as_message(&file[message_range(file, 0)]).unwrap();
        let nodes = message.header_as_record_batch().unwrap().nodes().unwrap();
        let node = nodes.get(with_nulls) as *const arrow_ipc::FieldNode;
        // A field node is {length: i64, null_count: i64}.
        let at = node as usize - file.as_ptr() as usize + 8;
        assert_eq!(file[at..at + 8], declared.to_le_bytes());
        file[at..at + 8].copy_from_slice(&(declared + 1).to_le_bytes());
    });
    assert_refused(&dir, "t", "null");
    for validate in MODES {
        let options = AttachOptions::default().validate(validate);
        match dir.attach_checked("t", &options, |_, _| true) {
            Err(Error::Corrupt { reason, .. }) if reason.contains("null") => {}
            other => panic!("{validate}: expected Corrupt (null), got {other:?}"),
        }
    }
}
