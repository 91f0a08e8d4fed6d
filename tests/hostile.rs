//! Every verb of the binary with hostile numbers (negative, zero, NaN, infinities, 2^64,
//! 1e300) in every numeric argument: each is refused with exit 2 (usage) or 1 (a clear
//! error), or, where the number is a valid one, works; never a panic (exit 101), a signal or a
//! hang. Each run has a generous deadline after which it is killed (by pid) and the test
//! fails: a hang detector, not a speed assertion.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, ok, shmarrow_bin};

const HOSTILE: [&str; 8] = [
    "-1",
    "0",
    "nan",
    "inf",
    "-inf",
    "18446744073709551616",
    "1e300",
    "1e-300",
];

/// Wait for `child` up to the hang deadline; kill it by pid and fail if it is still running.
fn wait_bounded(mut child: Child, what: &str) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after 120 s (hang)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn run_bounded(dir: &TempDir, args: &[String]) -> std::process::Output {
    let child = shmarrow_bin()
        .arg("--dir")
        .arg(&dir.0)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, &format!("{args:?}"))
}

/// One verb's invocation with `{}` standing for the hostile number, and the numbers that are
/// valid there (they may succeed). `forever`: valid numbers that make it wait or serve
/// forever, as asked (not run here; `consume --timeout inf` has its own test below).
struct Case {
    args: &'static str,
    valid: &'static [&'static str],
    forever: &'static [&'static str],
}

const fn case(args: &'static str, valid: &'static [&'static str]) -> Case {
    Case {
        args,
        valid,
        forever: &[],
    }
}

#[test]
fn every_verb_refuses_hostile_numbers_cleanly() {
    let tmp = TempDir::new("hostile");
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/trades.json");
    ok(&tmp, &["create", "t", "--schema", schema, "--rows", "100"]);
    let csv = tmp.0.join("in.csv");
    std::fs::write(&csv, "a,b\n1,2.5\n").unwrap();
    let csv = csv.to_str().unwrap().to_owned();
    let cases = [
        case("demo --rows={}", &[]),
        case("demo --array-len={}", &[]),
        case("demo --workers={}", &[]),
        case("import i CSV --batch-rows={} --replace", &[]),
        case("import i CSV --infer-rows={} --replace", &[]),
        case("import i CSV --mode={} --replace", &["0"]),
        case("create c --schema SCHEMA --rows={} --replace", &["0"]),
        case(
            "create c --schema SCHEMA --rows=10 --seed={} --replace",
            &["0"],
        ),
        case(
            "create c --schema SCHEMA --rows=10 --batch-rows={} --replace",
            &[],
        ),
        case(
            "create c --schema SCHEMA --rows=10 --mode={} --replace",
            &["0"],
        ),
        case("head t --rows={}", &["0"]),
        case("reduce t --ddof={}", &["0"]),
        case("reduce t --threads={}", &[]),
        case("reduce t --processes={}", &[]),
        case("map t -c price --op scale {}", &HOSTILE),
        case("map t -c qty --op add {}", &["-1", "0"]),
        case("map t -c qty --op clip {} 5", &["-1", "0"]),
        case("map t -c price --op square --threads={}", &[]),
        case("map t -c price --op square --processes={}", &[]),
        case(
            "produce p --schema SCHEMA --batches={} --batch-rows=10",
            &["0"],
        ),
        case("produce p --schema SCHEMA --batches=1 --batch-rows={}", &[]),
        case(
            "produce p --schema SCHEMA --batches=1 --batch-rows=10 --seed={}",
            &["0"],
        ),
        case(
            "produce p --schema SCHEMA --batches=2 --batch-rows=10 --rate={}",
            &["18446744073709551616", "1e300"],
        ),
        case(
            "produce p --schema SCHEMA --batches=1 --batch-rows=10 --slots={}",
            &[],
        ),
        case(
            "produce p --schema SCHEMA --batches=1 --batch-rows=10 --slot-size={}",
            &[],
        ),
        case(
            "produce p --schema SCHEMA --batches=1 --batch-rows=10 --consumers={}",
            &["0"],
        ),
        case(
            "produce p --schema SCHEMA --batches=1 --batch-rows=10 --timeout={}",
            &["0", "1e-300", "inf"],
        ),
        case(
            "produce p --schema SCHEMA --batches=1 --batch-rows=10 --mode={}",
            &["0"],
        ),
        Case {
            args: "consume nothing --timeout={}",
            valid: &["0", "1e-300"],
            forever: &["inf"],
        },
        case("consume nothing --timeout=0 --batches={}", &[]),
        case("consume nothing --timeout=0 --spin-us={}", &[]),
        Case {
            args: "serve --listen=127.0.0.1:{}",
            valid: &[],
            forever: &["0"],
        },
        case("pull 127.0.0.1:{} t", &[]),
        case("push t 127.0.0.1:{}", &[]),
        case("worker --of={} map t --column price --op square", &[]),
        case(
            "worker --of=2 --index={} map t --column price --op square",
            &["0"],
        ),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        for value in HOSTILE {
            if c.forever.contains(&value) {
                continue;
            }
            let line = c.args.replace("{}", value);
            let args: Vec<String> = line
                .split_whitespace()
                .map(|a| a.replace("SCHEMA", schema).replace("CSV", &csv))
                .collect();
            let out = run_bounded(&tmp, &args);
            let code = out.status.code();
            let allowed: &[i32] = if c.valid.contains(&value) {
                &[0, 1, 2]
            } else {
                &[1, 2]
            };
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !code.is_some_and(|c| allowed.contains(&c)) || stderr.contains("panicked") {
                failures.push(format!("{line}: {:?}: {}", out.status, stderr.trim()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Nothing was left half-done.
    let temps = tmp.dir().list().unwrap().temps;
    assert!(temps.is_empty(), "{temps:?}");
}

#[test]
fn timeout_inf_waits_for_the_producer() {
    let tmp = TempDir::new("forever");
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/trades.json");
    // The consumer starts first and waits, without a deadline, for the channel to appear.
    let consumer = shmarrow_bin()
        .arg("--dir")
        .arg(&tmp.0)
        .args(["--json", "consume", "ch", "--timeout", "inf", "--count"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let producer = shmarrow_bin()
        .arg("--dir")
        .arg(&tmp.0)
        .args([
            "produce",
            "ch",
            "--schema",
            schema,
            "--batches",
            "3",
            "--batch-rows",
            "10",
        ])
        .args(["--consumers", "1", "--timeout", "inf"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let produced = wait_bounded(producer, "produce");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let consumed = wait_bounded(consumer, "consume");
    assert!(
        consumed.status.success(),
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&consumed.stdout).unwrap();
    assert_eq!(report["batches"], 3);
}

#[test]
fn dataset_schemas_with_hostile_numbers_are_refused() {
    let tmp = TempDir::new("hostile-schema");
    let fields = [
        r#"{"name": "s", "type": "utf8", "gen": {"length": [0, 18446744073709551615]}}"#,
        r#"{"name": "s", "type": "utf8", "gen": {"length": [0, 1e300]}}"#,
        r#"{"name": "s", "type": "utf8", "gen": {"length": [-1, 4]}}"#,
        r#"{"name": "s", "type": "utf8", "gen": {"length": [1048576, 1048576]}}"#,
        r#"{"name": "l", "type": {"list": "int32"}, "gen": {"length": [0, 1e19]}}"#,
        r#"{"name": "f", "type": {"fixed_size_list": "float32", "size": 4294967297}}"#,
        r#"{"name": "f", "type": {"fixed_size_list": "float32", "size": -1}}"#,
        r#"{"name": "f", "type": {"fixed_size_list": "float32", "size": 1048576}}"#,
        r#"{"name": "i", "type": "int32", "gen": {"min": -1e308, "max": 1e308}}"#,
        r#"{"name": "i", "type": "int64", "gen": {"min": 5, "max": 1}}"#,
        r#"{"name": "n", "type": "float64", "nullable": true, "null_fraction": 1e300}"#,
        r#"{"name": "d", "type": "decimal128(300, 2)"}"#,
        r#"{"name": "k", "type": {"dictionary": "utf8", "index": "int8"}, "gen": {"values": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128,129,130]}}"#,
    ];
    let mut failures = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let path = tmp.0.join(format!("schema-{i}.json"));
        std::fs::write(&path, format!(r#"{{"fields": [{field}]}}"#)).unwrap();
        let path = path.to_str().unwrap();
        for verb in ["create", "produce"] {
            let args: Vec<String> = match verb {
                "create" => [
                    "create",
                    "c",
                    "--schema",
                    path,
                    "--rows",
                    "4096",
                    "--replace",
                ]
                .map(String::from)
                .to_vec(),
                _ => [
                    "produce",
                    "p",
                    "--schema",
                    path,
                    "--batches",
                    "1",
                    "--batch-rows",
                    "4096",
                ]
                .map(String::from)
                .to_vec(),
            };
            let out = run_bounded(&tmp, &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            // Valid extremes may work (a 1e308-wide integer range saturates); never a crash.
            if !matches!(out.status.code(), Some(0..=2)) || stderr.contains("panicked") {
                failures.push(format!(
                    "{verb} {field}: {:?}: {}",
                    out.status,
                    stderr.trim()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
