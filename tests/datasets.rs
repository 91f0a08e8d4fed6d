//! `shmarrow create --schema`: every example schema generates a valid segment, the data depends
//! on the seed only (not on the thread count), and bad schemas fail cleanly.

mod common;

use std::process::Output;

use common::{TempDir, shmarrow_bin};
use serde_json::Value;

fn create(dir: &TempDir, name: &str, schema: &str, rows: &str, extra: &[(&str, &str)]) -> Output {
    let mut cmd = shmarrow_bin();
    cmd.arg("--dir")
        .arg(&dir.0)
        .args(["--json", "create", name, "--schema", schema, "--rows", rows]);
    for (k, v) in extra {
        if k.starts_with("--") {
            cmd.args([k, v]);
        } else {
            cmd.env(k, v);
        }
    }
    cmd.output().unwrap()
}

fn schema(name: &str) -> String {
    format!("{}/schemas/{name}.json", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn example_schemas_generate_valid_segments() {
    let tmp = TempDir::new("ds");
    for (name, columns) in [("trades", 7), ("sensor_frames", 6), ("events", 8)] {
        let out = create(
            &tmp,
            name,
            &schema(name),
            "150000",
            &[("--seed", "1"), ("--batch-rows", "40000")],
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["rows"], 150_000);
        assert_eq!(info["columns"], columns);
        assert_eq!(info["batches"], 4);
        let seg = tmp
            .dir()
            .attach_with(name, &shmarrow::AttachOptions::default().strict(true))
            .unwrap();
        common::assert_zero_copy(&seg);
    }
    // The generators do what the schema says.
    let seg = tmp.dir().attach("sensor_frames").unwrap();
    let stats = seg
        .reduce(
            &["pose.x", "temperature", "frame"],
            &shmarrow::reduce::ReduceOptions::default(),
        )
        .unwrap();
    assert!(
        stats[0].mean.abs() < 0.05 && (stats[0].std - 2.0).abs() < 0.05,
        "{:?}",
        stats[0]
    );
    let nulls = stats[1].null_count as f64 / 150_000.0;
    assert!(
        (0.005..0.015).contains(&nulls),
        "null_fraction 0.01, got {nulls}"
    );
    assert_eq!(stats[2].max, Some(shmarrow::reduce::Number::Int(149_999)));
}

#[test]
fn data_depends_on_the_seed_not_the_threads() {
    let tmp = TempDir::new("ds-seed");
    for (name, seed, threads) in [("a", "5", "1"), ("b", "5", "4"), ("c", "6", "2")] {
        let out = create(
            &tmp,
            name,
            &schema("events"),
            "50000",
            &[
                ("--seed", seed),
                ("--batch-rows", "7000"),
                ("RAYON_NUM_THREADS", threads),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let [a, b, c] = ["a", "b", "c"].map(|n| tmp.dir().attach(n).unwrap());
    common::assert_same_batches(a.batches(), b.batches());
    assert_ne!(
        a.batches()[0].column(3).to_data(),
        c.batches()[0].column(3).to_data(),
        "another seed, other data"
    );
}

#[test]
fn bad_schemas_fail_cleanly() {
    let tmp = TempDir::new("ds-bad");
    let write = |name: &str, text: &str| {
        let p = tmp.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    for (file, text, needle) in [
        ("a.json", "{", "not valid JSON"),
        (
            "b.json",
            r#"{"fields": [{"name": "x", "type": "int128"}]}"#,
            "unknown type",
        ),
        (
            "c.json",
            r#"{"fields": [{"name": "x", "type": "int8", "null_fraction": 2}]}"#,
            "null_fraction",
        ),
        (
            "d.json",
            r#"{"fields": [{"name": "k", "type": {"dictionary": "utf8"}}]}"#,
            "needs",
        ),
        (
            "e.json",
            r#"{"fields": [{"name": "x", "type": "float64", "gen": {"dist": "zipf"}}]}"#,
            "unknown variant `zipf`, expected one of `uniform`, `normal`, `sequence`",
        ),
        // A misspelt key fails at load, wherever it is, instead of falling back to a default.
        (
            "typo-field.json",
            r#"{"fields": [{"name": "x", "type": "int8", "nulable": true}]}"#,
            "unknown field `nulable`",
        ),
        (
            "typo-gen.json",
            r#"{"fields": [{"name": "x", "type": "float64", "gen": {"dist": "normal", "mena": 3}}]}"#,
            "unknown field `mena`",
        ),
        (
            "typo-type.json",
            r#"{"fields": [{"name": "l", "type": {"lsit": "int8"}}]}"#,
            "unknown field `lsit`",
        ),
        (
            "typo-item.json",
            r#"{"fields": [{"name": "l", "type": {"list": {"type": "int8", "gne": {}}}}]}"#,
            "unknown field `gne`",
        ),
        (
            "typo-top.json",
            r#"{"feilds": [{"name": "x", "type": "int8"}]}"#,
            "unknown field `feilds`",
        ),
        (
            "f.json",
            r#"{"fields": [{"name": "l", "type": {"fixed_size_list": "int8", "size": 0}}]}"#,
            "size",
        ),
    ] {
        let path = write(file, text);
        let out = create(&tmp, "x", &path, "10", &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(
            stderr.contains(needle) && !stderr.contains("panicked"),
            "{file}: {stderr}"
        );
        assert!(
            tmp.dir().list().unwrap().segments.is_empty()
                && tmp.dir().list().unwrap().temps.is_empty()
        );
    }
}
