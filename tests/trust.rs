//! The trust model of attach (SECURITY.md): which segments are validated in full (offsets,
//! UTF-8, dictionary keys) and which get structural checks only, and forcing either.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use common::TempDir;
use shmarrow::{AttachOptions, CreateOptions, Error, SegmentDir, Validate};

/// The string whose first byte a test turns into 0xFF (never valid UTF-8).
const VICTIM: &[u8] = b"victim-value";

fn batch() -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "s",
            Arc::new(StringArray::from(vec!["first", "victim-value", "last"])) as ArrayRef,
        ),
        ("x", Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as _),
    ])
    .unwrap()
}

fn publish(dir: &SegmentDir, name: &str) {
    let b = batch();
    dir.create(name, &b.schema(), &[b], &CreateOptions::default())
        .unwrap();
}

/// Corrupt the string column at rest (after publish, before attach): bad UTF-8.
fn break_utf8(file: &mut [u8]) {
    let at = file
        .windows(VICTIM.len())
        .position(|w| w == VICTIM)
        .expect("the string is in the file");
    file[at] = 0xFF;
}

fn attach(dir: &SegmentDir, name: &str, validate: Validate) -> shmarrow::Result<shmarrow::Segment> {
    dir.attach_with(name, &AttachOptions::default().validate(validate))
}

fn chmod(dir: &SegmentDir, name: &str, mode: u32) {
    let path = dir.segment_path(name).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_bad_utf8(result: shmarrow::Result<shmarrow::Segment>) {
    match result {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(reason.to_lowercase().contains("utf"), "{reason}")
        }
        other => panic!("expected a UTF-8 error, got {other:?}"),
    }
}

#[test]
fn a_private_shmarrow_segment_gets_structural_checks_and_full_validation_when_asked() {
    let tmp = TempDir::new("trust-auto");
    let dir = tmp.dir();
    publish(&dir, "t");
    let segment = dir.attach("t").unwrap();
    assert_eq!(segment.validation(), Validate::Structure);
    assert_eq!(
        segment.batches()[0].column(0).as_string::<i32>().value(1),
        "victim-value"
    );
    assert_eq!(
        attach(&dir, "t", Validate::Full).unwrap().validation(),
        Validate::Full
    );
    // The directory's default reaches plain `attach` (the CLI's --validate).
    assert_eq!(
        dir.clone()
            .validate(Validate::Full)
            .attach("t")
            .unwrap()
            .validation(),
        Validate::Full
    );

    common::patch(&dir, "t", |f| break_utf8(f));
    // Forced full validation catches the corruption; auto trusts the writer (only this user
    // or root can write the file: they can already write this process's memory).
    assert_bad_utf8(attach(&dir, "t", Validate::Full));
    assert_eq!(dir.attach("t").unwrap().validation(), Validate::Structure);
}

#[test]
fn a_segment_its_group_or_others_can_write_is_validated_in_full() {
    let tmp = TempDir::new("trust-mode");
    let dir = tmp.dir();
    publish(&dir, "t");
    common::patch(&dir, "t", |f| break_utf8(f));
    for mode in [0o620, 0o602, 0o666] {
        chmod(&dir, "t", mode);
        assert_bad_utf8(dir.attach("t"));
        match attach(&dir, "t", Validate::Structure) {
            Err(Error::Untrusted { reason, .. }) => {
                assert!(reason.contains(&format!("{mode:o}")), "{mode:o}: {reason}")
            }
            other => panic!("{mode:o}: expected Untrusted, got {other:?}"),
        }
    }
    // Group read only: still only this user writes it.
    chmod(&dir, "t", 0o640);
    assert_eq!(dir.attach("t").unwrap().validation(), Validate::Structure);
}

#[test]
fn a_foreign_file_is_validated_in_full_unless_structure_is_forced() {
    let tmp = TempDir::new("trust-foreign");
    let dir = tmp.dir();
    let b = batch();
    let path = dir.segment_path("foreign").unwrap();
    common::write_ipc_file(&path, &b.schema(), &[b]);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let segment = dir.attach("foreign").unwrap();
    assert!(segment.info().meta.is_none());
    assert_eq!(segment.validation(), Validate::Full);

    common::patch(&dir, "foreign", |f| break_utf8(f));
    assert_bad_utf8(dir.attach("foreign"));
    // Forced: only this user can write it, so the caller may trust it.
    assert_eq!(
        attach(&dir, "foreign", Validate::Structure)
            .unwrap()
            .validation(),
        Validate::Structure
    );
}

#[test]
fn structure_mode_still_refuses_a_buffer_too_small_for_its_rows() {
    let tmp = TempDir::new("trust-structure");
    let dir = tmp.dir();
    publish(&dir, "t");
    // Buffer 4 is column x's values (3 × 8 bytes): declare 8 bytes instead.
    common::patch(&dir, "t", |file| {
        let (entry, _) = common::positions(file, 0, 4);
        assert_eq!(file[entry + 8..entry + 16], 24u64.to_le_bytes());
        file[entry + 8..entry + 16].copy_from_slice(&8u64.to_le_bytes());
    });
    for validate in [Validate::Structure, Validate::Auto, Validate::Full] {
        match attach(&dir, "t", validate) {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("{validate}: expected Corrupt, got {other:?}"),
        }
    }
}

/// A segment owned by another user (`nobody`) is validated in full even by root; read by
/// `nobody`, a root-owned segment is trusted (root can already do anything).
#[test]
#[ignore = "needs root (chown to user nobody needs root); .ci/run runs it as root"]
fn a_segment_another_user_owns_is_validated_in_full() {
    common::require_root("chown to user nobody needs root");
    let tmp = TempDir::new("trust-nobody");
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let dir = tmp.dir();
    publish(&dir, "root-owned");
    chmod(&dir, "root-owned", 0o644);
    publish(&dir, "t");
    common::patch(&dir, "t", |f| break_utf8(f));
    let path = dir.segment_path("t").unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    assert_bad_utf8(dir.attach("t"));
    assert!(matches!(
        attach(&dir, "t", Validate::Structure),
        Err(Error::Untrusted { .. })
    ));

    let inspect = |name: &str| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_shmarrow"))
            .arg("--dir")
            .arg(&tmp.0)
            .args(["--json", "inspect", name])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = inspect("root-owned");
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["validation"], "structure");
    // nobody owns "t": to nobody it is its own segment, so auto trusts it (and says so).
    let (code, stdout, stderr) = inspect("t");
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["validation"], "structure");
}

#[test]
fn the_cli_validates_as_asked() {
    let tmp = TempDir::new("trust-cli");
    let dir = tmp.dir();
    publish(&dir, "t");
    let validation = |args: &[&str]| {
        let json: serde_json::Value = serde_json::from_str(&common::ok(&tmp, args)).unwrap();
        json["validation"].as_str().unwrap().to_owned()
    };
    assert_eq!(validation(&["--json", "inspect", "t"]), "structure");
    assert_eq!(
        validation(&["--validate", "full", "--json", "inspect", "t"]),
        "full"
    );
    common::patch(&dir, "t", |f| break_utf8(f));
    common::fails_clean(&tmp, &["--validate", "full", "head", "t"], "utf");
    common::fails_clean(&tmp, &["--validate", "full", "reduce", "t"], "utf");
    chmod(&dir, "t", 0o660);
    common::fails_clean(&tmp, &["head", "t"], "utf");
    common::fails_clean(
        &tmp,
        &["--validate", "structure", "inspect", "t"],
        "writable by its group or others (mode 660)",
    );
    let out = common::run(&tmp, &["--validate", "some", "inspect", "t"]);
    assert_eq!(out.status.code(), Some(2));
}
