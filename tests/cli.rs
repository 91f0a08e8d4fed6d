//! The `shmarrow` binary: every verb, human and JSON output, and bad input.

mod common;

use std::process::{Command, Stdio};

use common::{TempDir, ok, run, shmarrow_bin, type_matrix, write_ipc_file};
use serde_json::Value;

fn json(dir: &TempDir, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &all)).unwrap()
}

/// Exit 1, exactly one line on stderr that contains `needle`, no panic.
fn fails(dir: &TempDir, args: &[&str], needle: &str) {
    let out = run(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.starts_with("shmarrow: error: "), "{stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
}

fn matrix_file(dir: &TempDir) -> String {
    let (schema, batches) = type_matrix();
    let path = dir.0.join("input.arrow");
    write_ipc_file(&path, &schema, &batches);
    path.to_str().unwrap().to_owned()
}

#[test]
fn import_ls_inspect_rm() {
    let tmp = TempDir::new("cli");
    let input = matrix_file(&tmp);
    let text = ok(&tmp, &["import", "m", &input]);
    assert!(
        text.contains("imported") && text.contains("5 rows, 29 columns, 2 batches"),
        "{text}"
    );

    // Refuses to clobber without --replace.
    fails(&tmp, &["import", "m", &input], "already exists");
    ok(&tmp, &["import", "m", &input, "--replace", "--mode", "640"]);

    let ls = json(&tmp, &["ls"]);
    let entries = ls.as_array().unwrap();
    let m = entries.iter().find(|e| e["name"] == "m").expect("m listed");
    assert_eq!(m["rows"], 5);
    assert_eq!(m["batches"], 2);
    assert_eq!(m["mode"], "640");
    assert_eq!(m["kind"], "segment");
    assert_eq!(
        m["bytes"],
        std::fs::metadata(tmp.0.join("m")).unwrap().len()
    );
    assert!(entries.iter().all(|e| e["name"] != "input.arrow.tmp"));
    let human = ok(&tmp, &["ls"]);
    assert!(human.lines().next().unwrap().starts_with("NAME"));
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("m ") && l.contains("persistent")),
        "{human}"
    );

    let info = json(&tmp, &["inspect", "m"]);
    assert_eq!(info["name"], "m");
    assert_eq!(info["rows"], 5);
    assert_eq!(info["zero_copy"], true);
    assert_eq!(info["batches"].as_array().unwrap().len(), 2);
    let columns = info["columns"].as_array().unwrap();
    assert_eq!(columns.len(), type_matrix().0.fields().len());
    let i8col = columns.iter().find(|c| c["name"] == "i8").unwrap();
    assert_eq!(i8col["null_count"], 1);
    assert_eq!(i8col["type"], "Int8");
    assert!(info["metadata"]["shmarrow.version"].is_string());

    let text = ok(&tmp, &["inspect", "m"]);
    for needle in [
        "schema:",
        "struct: struct",
        "    a: Int32",
        "map: map",
        "zero-copy: every buffer",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }

    assert_eq!(ok(&tmp, &["rm", "m"]).trim(), "removed m");
    fails(&tmp, &["rm", "m"], "not found");
    let out = run(&tmp, &["--json", "rm", "m"]);
    assert_eq!(out.status.code(), Some(1));
    let rm: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rm[0]["status"], "not found");
}

#[test]
fn import_stream() {
    let tmp = TempDir::new("cli-stream");
    let (schema, batches) = type_matrix();
    let path = tmp.0.join("input.arrows");
    let mut w =
        arrow_ipc::writer::StreamWriter::try_new(std::fs::File::create(&path).unwrap(), &schema)
            .unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    ok(&tmp, &["import", "s", path.to_str().unwrap()]);
    let seg = tmp.dir().attach("s").unwrap();
    common::assert_same_batches(seg.batches(), &batches);
    // Format sniffing without an extension.
    let plain = tmp.0.join("noext");
    std::fs::copy(&path, &plain).unwrap();
    ok(&tmp, &["import", "s2", plain.to_str().unwrap()]);
    assert_eq!(tmp.dir().attach("s2").unwrap().num_rows(), 5);
}

#[test]
fn bad_input_is_one_line_and_exit_1() {
    let tmp = TempDir::new("cli-bad");
    let input = matrix_file(&tmp);
    ok(&tmp, &["import", "good", &input]);
    let good = std::fs::read(tmp.0.join("good")).unwrap();

    std::fs::write(
        tmp.0.join("random"),
        (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(tmp.0.join("truncated"), &good[..good.len() / 2]).unwrap();
    let mut footer = good.clone();
    let n = footer.len();
    footer[n - 60..n - 10].fill(0xee);
    std::fs::write(tmp.0.join("footer"), footer).unwrap();
    for name in ["random", "truncated", "footer"] {
        fails(&tmp, &["inspect", name], "is corrupt");
    }
    fails(&tmp, &["inspect", "nope"], "not found");
    fails(&tmp, &["inspect", "../etc"], "invalid segment name");
    fails(
        &tmp,
        &["import", "x", "/nonexistent/file.arrow"],
        "nonexistent",
    );
    fails(
        &tmp,
        &[
            "import",
            "x",
            tmp.0.join("random").to_str().unwrap(),
            "--format",
            "ipc",
        ],
        "input file",
    );
    fails(
        &tmp,
        &[
            "import",
            "x",
            tmp.0.join("random").to_str().unwrap(),
            "--format",
            "stream",
        ],
        "is not an Arrow IPC stream",
    );

    // ls skips the damaged ones with a note, lists the good one, and still succeeds.
    let out = run(&tmp, &["ls"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("good"));

    // Usage errors exit 2.
    assert_eq!(run(&tmp, &["import"]).status.code(), Some(2));
    assert_eq!(
        run(&tmp, &["import", "a", "b", "--mode", "999"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&tmp, &["frobnicate"]).status.code(), Some(2));
}

#[test]
fn gc_reports_what_it_removes() {
    let tmp = TempDir::new("cli-gc");
    std::fs::write(tmp.0.join(".lost.999999999.1.a.tmp"), b"x").unwrap();
    let dry = json(&tmp, &["gc", "--dry-run"]);
    assert_eq!(dry[0]["reason"], "dead_writer");
    assert_eq!(dry[0]["removed"], false);
    assert!(tmp.0.join(".lost.999999999.1.a.tmp").exists());
    let ls = ok(&tmp, &["ls"]);
    assert!(ls.contains("stale"), "{ls}");
    let text = ok(&tmp, &["gc"]);
    assert!(
        text.contains("removed .lost.999999999.1.a.tmp") && text.contains("removed 1 file(s)"),
        "{text}"
    );
    assert!(!tmp.0.join(".lost.999999999.1.a.tmp").exists());
}

#[test]
fn closed_pipe_exits_quietly() {
    let tmp = TempDir::new("cli-pipe");
    let input = matrix_file(&tmp);
    for i in 0..40 {
        ok(&tmp, &["import", &format!("seg{i}"), &input]);
    }
    for _ in 0..3 {
        let mut child = shmarrow_bin()
            .arg("--dir")
            .arg(&tmp.0)
            .arg("ls")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // like `| head -0`
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{:?}", out.status);
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_verb_has_help_with_an_example() {
    for verb in [
        "demo", "import", "export", "head", "df", "ls", "inspect", "rm", "gc", "reduce", "map",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_shmarrow"))
            .args([verb, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Example"),
            "{verb}: {text}"
        );
    }
}

#[test]
fn demo_runs_end_to_end() {
    let tmp = TempDir::new("cli-demo");
    let mut args = vec![
        "demo",
        "--rows",
        "50000",
        "--array-len",
        "300000",
        "--workers",
        "3",
    ];
    let python = common::python();
    let py = python.as_ref().map(|p| p.to_str().unwrap().to_owned());
    if let Some(py) = &py {
        args.extend(["--python", py]);
    }
    let text = ok(&tmp, &args);
    assert!(
        text.contains("every buffer inside the mapping: true"),
        "{text}"
    );
    assert!(
        text.contains("rows=50000") && text.contains("zero_copy=true"),
        "{text}"
    );
    if python.is_some() {
        assert!(text.contains("equal to the above: True"), "{text}");
        assert!(text.contains("writeable=False"), "{text}");
    }
    assert!(
        text.contains("squared disjoint row ranges in place"),
        "{text}"
    );
    // The coordinator's merge of the 3 workers' rows equals the threaded reduce.
    let merged = text
        .lines()
        .find(|l| l.starts_with("merged by the coordinator"))
        .unwrap();
    let nums: Vec<&str> = merged
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == ')' || c == ';'))
        .filter(|w| w.contains('.') && w.parse::<f64>().is_ok())
        .collect();
    assert_eq!(nums.len(), 5, "mean, std, mean, std, ms: {merged}");
    assert_eq!((nums[0], nums[1]), (nums[2], nums[3]), "{merged}");
    assert!(text.contains("removed"));
    assert!(
        tmp.dir().list().unwrap().segments.is_empty(),
        "demo left its segment"
    );
}
