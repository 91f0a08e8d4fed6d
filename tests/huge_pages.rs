//! Segment directories with transparent huge pages (issue 16): `df`, `inspect` and
//! `SegmentDir::huge_pages` name the directory's policy, and tables published, tables
//! allocated and channels created there are backed by 2 MiB pages. Needs root to mount a
//! tmpfs with `-o huge=within_size`; says it skipped otherwise.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use common::{TempDir, ok};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use serde_json::Value;
use shmarrow::{ChannelOptions, CreateOptions, Error, HugePages};

/// A tmpfs mounted on a test directory, unmounted when dropped (before the directory goes).
struct Mount<'a>(&'a Path);

impl<'a> Mount<'a> {
    /// Mount a tmpfs with `options` on `dir`, or say why not (the test then skips).
    fn tmpfs(dir: &'a Path, options: &str) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        mount(
            Some("shmarrow-test"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options),
        )
        .map_err(|e| format!("cannot mount a tmpfs with {options} here: {e}"))?;
        Ok(Self(dir))
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = umount2(self.0, MntFlags::MNT_DETACH);
    }
}

/// KiB of `path` mapped by 2 MiB page-table entries in this process (`/proc/self/smaps`).
fn huge_mapped_kib(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let wanted = path.to_str().unwrap();
    let mut ours = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if line
            .split(' ')
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            ours = line.ends_with(wanted);
        } else if ours
            && (line.starts_with("ShmemPmdMapped:") || line.starts_with("FilePmdMapped:"))
        {
            kib += line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
    }
    kib
}

/// Assert that `kib` (of `what`) shows huge pages, unless the kernel has none to give right
/// now: then a fresh 4 MiB table published in the same directory gets none either, and the
/// assertion is skipped with a message (a fragmented machine's lack of free 2 MiB blocks is
/// not shmarrow's doing).
fn assert_huge(dir: &shmarrow::SegmentDir, kib: u64, what: &str) {
    eprintln!("{what}: {kib} KiB mapped by huge pages");
    if kib >= 2048 {
        return;
    }
    let probe = table(512 << 10);
    dir.create(
        "probe",
        &probe.schema(),
        &[probe],
        &CreateOptions::default(),
    )
    .unwrap();
    let segment = dir.attach("probe").unwrap();
    let _ = sum(&segment.batches()[0]);
    let control = huge_mapped_kib(&dir.segment_path("probe").unwrap());
    drop(segment);
    dir.remove("probe").unwrap();
    assert_eq!(
        control, 0,
        "no huge page backs the {what}, but a fresh table got {control} KiB"
    );
    eprintln!(
        "not asserted for the {what}: the kernel has no free 2 MiB page now (a fresh table got none either)"
    );
}

fn table(rows: usize) -> RecordBatch {
    let x = Float64Array::from_iter_values((0..rows).map(|i| i as f64));
    RecordBatch::try_from_iter([("x", Arc::new(x) as _)]).unwrap()
}

fn sum(batch: &RecordBatch) -> f64 {
    batch
        .column(0)
        .as_primitive::<Float64Type>()
        .values()
        .iter()
        .sum()
}

#[test]
fn a_huge_page_directory_says_so_and_backs_tables_allocations_and_channels_with_huge_pages() {
    let tmp = TempDir::new("huge");
    let _mount = match Mount::tmpfs(&tmp.0, "huge=within_size,size=96m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let dir = tmp.dir();
    assert_eq!(dir.huge_pages().unwrap(), HugePages::WithinSize);

    // A published table (32 MiB): every process that attaches it maps 2 MiB pages.
    let rows = 4 << 20;
    let batch = table(rows);
    dir.create(
        "t",
        &batch.schema(),
        std::slice::from_ref(&batch),
        &CreateOptions::default(),
    )
    .unwrap();
    let segment = dir.attach("t").unwrap();
    assert_eq!(sum(&segment.batches()[0]), sum(&batch));
    assert_huge(
        &dir,
        huge_mapped_kib(&dir.segment_path("t").unwrap()),
        "published table",
    );
    drop(segment);

    // An allocated table, filled through its writable mapping, then published.
    let schema = Schema::new(vec![Field::new("x", DataType::Float64, false)]);
    let allocation = dir
        .allocate("a", &schema, rows, &CreateOptions::default())
        .unwrap();
    allocation.values_mut::<Float64Type>("x").unwrap()[0].fill(2.0);
    assert_huge(&dir, huge_mapped_kib(allocation.temp_path()), "allocation");
    allocation.publish().unwrap();
    let segment = dir.attach("a").unwrap();
    assert_eq!(sum(&segment.batches()[0]), 2.0 * rows as f64);
    drop(segment);

    // A channel of 4 slots of 4 MiB: its ring is backed by huge pages too.
    let options = ChannelOptions::default().slots(4).slot_size(4 << 20);
    dir.create_channel("c", &batch.schema(), &options).unwrap();
    let mut producer = dir.producer("c").unwrap();
    let mut consumer = dir.subscribe("c").unwrap();
    let small = table(1000);
    producer.send(&small).unwrap();
    let received = consumer.recv().unwrap().expect("a batch").batch;
    assert_eq!(sum(&received), sum(&small));
    assert_huge(
        &dir,
        huge_mapped_kib(&dir.segment_path("c").unwrap()),
        "channel",
    );
    drop((received, consumer, producer));

    // df and inspect name the policy.
    let df: Value = serde_json::from_str(&ok(&tmp, &["--json", "df"])).unwrap();
    assert_eq!(df["huge_pages"], "within_size");
    assert!(ok(&tmp, &["df"]).contains("within_size"));
    let inspect: Value = serde_json::from_str(&ok(&tmp, &["--json", "inspect", "t"])).unwrap();
    assert_eq!(inspect["huge_pages"], "within_size");
    assert!(ok(&tmp, &["inspect", "t"]).contains("(huge pages: within_size)"));
    let inspect: Value = serde_json::from_str(&ok(&tmp, &["--json", "inspect", "c"])).unwrap();
    assert_eq!(inspect["huge_pages"], "within_size");

    // More than the mount holds: a clean NoSpace (the pages are allocated through a mapping
    // first, which must not turn a full directory into a SIGBUS), and nothing left behind.
    for name in ["t", "a", "c"] {
        dir.remove(name).unwrap();
    }
    let big = table(16 << 20); // 128 MiB
    match dir.create("big", &big.schema(), &[big], &CreateOptions::default()) {
        Err(Error::NoSpace { needed, .. }) => assert!(needed > 128 << 20),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_plain_tmpfs_has_no_huge_pages_and_advise_is_named() {
    let tmp = TempDir::new("nohuge");
    let _mount = match Mount::tmpfs(&tmp.0, "size=16m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    assert_eq!(tmp.dir().huge_pages().unwrap(), HugePages::Never);
    let df: Value = serde_json::from_str(&ok(&tmp, &["--json", "df"])).unwrap();
    assert_eq!(df["huge_pages"], "never");
    let advise = TempDir::new("advise");
    let _advise = Mount::tmpfs(&advise.0, "huge=advise,size=16m").unwrap();
    assert_eq!(advise.dir().huge_pages().unwrap(), HugePages::Advise);
}
