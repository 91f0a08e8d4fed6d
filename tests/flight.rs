//! `shmarrow serve`, `pull` and `push` over Arrow Flight, on loopback only: a Rust client and
//! a pyarrow.flight client list, read and upload; `pull` round-trips the type matrix; a server
//! killed mid-transfer leaves nothing on the pulling side; tokens; remote `reduce`.
//!
//! Every server is the real binary on 127.0.0.1, port 0 (it prints the port it got), killed
//! by pid when its guard drops.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::{Action, Criteria, FlightClient, FlightDescriptor, Ticket};
use arrow_schema::ArrowError;
use common::{TempDir, assert_same_batches, assert_zero_copy, python, shmarrow_bin, type_matrix};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use shmarrow::CreateOptions;

/// A `shmarrow serve` process on 127.0.0.1 (any free port); killed by pid when dropped.
struct Server {
    child: Child,
    addr: String,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = shmarrow_bin()
            .arg("--dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("grpc://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches(')')
            .to_owned();
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
        Self {
            child,
            addr,
            _stdout: stdout,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL, by pid
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn client(addr: &str) -> FlightClient {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightClient::new(channel)
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    shmarrow_bin()
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = cli(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Exit 1 with one line on stderr containing every needle.
fn fails(dir: &Path, args: &[&str], needles: &[&str]) -> String {
    let out = cli(dir, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(stderr.starts_with("shmarrow: error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
    stderr
}

/// Nothing under `name` in `dir`: no segment, no temp file (waits for a server to notice a
/// cancelled upload; only a hang fails).
fn assert_nothing_left(dir: &TempDir, name: &str) {
    common::wait_until(&format!("nothing left of {name}"), || {
        let listing = dir.dir().list().unwrap();
        !(listing.segments.iter().any(|s| s.name == name)
            || listing.temps.iter().any(|t| t.segment == name))
    });
}

fn publish_matrix(dir: &TempDir, name: &str) {
    let (schema, batches) = type_matrix();
    dir.dir()
        .create(name, &schema, &batches, &CreateOptions::default())
        .unwrap();
}

/// 256 MiB: 8 batches of 2 Mi rows of a float64 and an int64 column.
fn publish_big(dir: &TempDir, name: &str) {
    let rows = 2 << 20;
    let x: ArrayRef = Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64)));
    let y: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
    let batch = RecordBatch::try_from_iter([("x", x), ("y", y)]).unwrap();
    let batches = vec![batch.clone(); 8];
    dir.dir()
        .create(name, &batch.schema(), &batches, &CreateOptions::default())
        .unwrap();
}

#[test]
fn every_flight_verb_has_help_with_an_example() {
    for verb in ["serve", "pull", "push"] {
        let out = shmarrow_bin().args([verb, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Example"),
            "{verb}: {text}"
        );
    }
}

#[test]
fn rust_client_lists_reads_and_uploads() {
    let tmp = TempDir::new("flight-rs");
    publish_matrix(&tmp, "m");
    let server = Server::start(&tmp.0, &[]);
    let (schema, want) = type_matrix();
    rt().block_on(async {
        let mut c = client(&server.addr).await;

        let infos: Vec<_> = c
            .list_flights(Criteria::default().expression)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(infos.len(), 1, "{infos:?}");
        assert_eq!(infos[0].total_records, 5);
        assert_eq!(
            infos[0].total_bytes as u64,
            std::fs::metadata(tmp.0.join("m")).unwrap().len()
        );

        let info = c
            .get_flight_info(FlightDescriptor::new_path(vec!["m".into()]))
            .await
            .unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        assert_eq!(ticket, Ticket::new("m"));
        let announced = info.try_decode_schema().unwrap();
        assert_eq!(announced.fields(), schema.fields());
        assert!(
            announced
                .metadata()
                .keys()
                .all(|k| !k.starts_with("shmarrow.")),
            "{:?}",
            announced.metadata()
        );

        // do_get: the segment's batches, value for value.
        let got: Vec<RecordBatch> = c.do_get(ticket).await.unwrap().try_collect().await.unwrap();
        assert_same_batches(&got, &want);

        // do_put: a new segment equal to the upload.
        let upload = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["up".into()])))
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(futures::stream::iter(want.clone().into_iter().map(Ok)));
        let results: Vec<_> = c.do_put(upload).await.unwrap().try_collect().await.unwrap();
        let summary: Value = serde_json::from_slice(&results[0].app_metadata).unwrap();
        assert_eq!(summary["name"], "up");
        assert_eq!(summary["rows"], 5);
        let segment = tmp.dir().attach("up").unwrap();
        assert_same_batches(segment.batches(), &want);
        assert_zero_copy(&segment);

        // An existing name is refused before any data is written.
        let again = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["up".into()])))
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(futures::stream::iter(want.clone().into_iter().map(Ok)));
        let err = match c.do_put(again).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err(),
            Err(e) => e,
        };
        assert!(err.to_string().contains("already exists"), "{err}");

        // An upload whose producer fails half way: arrow-flight's client then ends the stream
        // as if it were complete, so only the row count announced in the descriptor (as
        // `push` does) tells the server; it publishes nothing and leaves no temp file.
        let failing = futures::stream::iter(want.clone().into_iter().map(Ok)).chain(
            futures::stream::once(async {
                Err(FlightError::Arrow(ArrowError::ComputeError(
                    "the producer died".into(),
                )))
            }),
        );
        let announced = r#"{"name": "broken", "rows": 10}"#;
        let aborted = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_cmd(announced)))
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(failing);
        let result = match c.do_put(aborted).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(result.is_err(), "the aborted upload succeeded");
        assert_nothing_left(&tmp, "broken");

        // A client that goes away mid-upload (the call is cancelled): nothing either.
        let hanging = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["hung".into()])))
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(
                futures::stream::iter(want.clone().into_iter().map(Ok))
                    .chain(futures::stream::pending()),
            );
        let started = async {
            while tmp.dir().list().unwrap().temps.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            r = c.do_put(hanging) => panic!("a hanging upload finished: {:?}", r.err()),
            _ = started => {} // the server is writing "hung"'s temp file
            _ = tokio::time::sleep(Duration::from_secs(600)) => panic!("the upload never started (a hang: 600 s)"),
        }
        assert_nothing_left(&tmp, "hung");

        // The remove action.
        let mut out = c.do_action(Action::new("remove", "up")).await.unwrap();
        let body: Value = serde_json::from_slice(&out.next().await.unwrap().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"name": "up", "status": "removed"}));
        assert!(!tmp.0.join("up").exists());
        let err = c
            .do_action(Action::new("remove", "up"))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("not found"), "{err}");
    });
}

#[test]
fn pyarrow_client_lists_reads_and_uploads() {
    let Some(py) = python() else { return };
    let tmp = TempDir::new("flight-py");
    publish_matrix(&tmp, "m");
    let server = Server::start(&tmp.0, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/tests/flight_client.py");
    let run = |args: &[&str]| {
        let out = Command::new(&py).arg(&script).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "flight_client.py {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&["check", &server.addr, "m"]).trim(), "ok");

    let summary: Value = serde_json::from_str(&run(&["upload", &server.addr, "frompy"])).unwrap();
    assert_eq!(summary["rows"], 5);
    let segment = tmp.dir().attach("frompy").unwrap();
    let (_, want) = type_matrix();
    assert_same_batches(segment.batches(), &want);
    assert_zero_copy(&segment);

    let remote: Value =
        serde_json::from_str(&run(&["reduce", &server.addr, "m", "i64", "f64", "u8"])).unwrap();
    let local: Value = serde_json::from_str(&ok(
        &tmp.0,
        &[
            "--json", "reduce", "m", "-c", "i64", "-c", "f64", "-c", "u8",
        ],
    ))
    .unwrap();
    assert_eq!(remote, local);

    assert_eq!(run(&["remove", &server.addr, "frompy"]).trim(), "ok");
    assert!(!tmp.0.join("frompy").exists());
}

#[test]
fn pull_and_push_round_trip_the_type_matrix() {
    let host_a = TempDir::new("flight-a");
    let host_b = TempDir::new("flight-b");
    publish_matrix(&host_a, "m");
    let server = Server::start(&host_a.0, &[]);
    let (_, want) = type_matrix();

    let text = ok(&host_b.0, &["pull", &server.addr, "m"]);
    assert!(text.starts_with("pulled m from"), "{text}");
    let pulled = host_b.dir().attach("m").unwrap();
    assert_same_batches(pulled.batches(), &want);
    assert_zero_copy(&pulled);
    // A segment of this host: written by the (exited) pull, not a copy of the server's keys.
    let meta = pulled.info().meta.unwrap();
    assert!(!meta.creator.is_alive());
    assert_ne!(
        Some(meta.created_unix_ms),
        host_a
            .dir()
            .info("m")
            .unwrap()
            .meta
            .map(|m| m.created_unix_ms)
    );

    // --as, --json; an existing local name needs --replace.
    let json: Value = serde_json::from_str(&ok(
        &host_b.0,
        &["--json", "pull", &server.addr, "m", "--as", "m2"],
    ))
    .unwrap();
    assert_eq!(json["name"], "m2");
    assert_eq!(json["rows"], 5);
    fails(
        &host_b.0,
        &["pull", &server.addr, "m"],
        &["already exists", "--replace"],
    );
    ok(&host_b.0, &["pull", &server.addr, "m", "--replace"]);
    fails(&host_b.0, &["pull", &server.addr, "nope"], &["not found"]);

    // push back under another name; equal on the server.
    ok(&host_b.0, &["push", "m2", &server.addr, "--as", "back"]);
    assert_same_batches(host_a.dir().attach("back").unwrap().batches(), &want);
    fails(
        &host_b.0,
        &["push", "m2", &server.addr, "--as", "back"],
        &["already exists"],
    );
    ok(
        &host_b.0,
        &["push", "m2", &server.addr, "--as", "back", "--replace"],
    );
}

#[test]
fn server_killed_mid_pull_leaves_no_partial_segment() {
    let host_a = TempDir::new("flight-kill-a");
    let host_b = TempDir::new("flight-kill-b");
    publish_big(&host_a, "big");
    let mut server = Server::start(&host_a.0, &[]);

    let pull = shmarrow_bin()
        .arg("--dir")
        .arg(&host_b.0)
        .args(["pull", &server.addr, "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = pull.id();
    // Kill the server as soon as the pull has written data into its temp file.
    let deadline = Instant::now() + Duration::from_secs(600); // a hang guard, not a speed limit
    let seen = loop {
        let temps = host_b.dir().list().unwrap().temps;
        if let Some(t) = temps.iter().find(|t| t.bytes > 0) {
            break t.bytes;
        }
        assert!(
            !host_b.0.join("big").exists(),
            "the pull finished before the server could be killed"
        );
        assert!(
            Instant::now() < deadline,
            "pull {pid} never started writing"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    server.kill();
    let out = pull.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing was published"), "{stderr}");
    assert!(
        seen < std::fs::metadata(host_a.0.join("big")).unwrap().len(),
        "killed after the whole segment had arrived"
    );
    assert!(!host_b.0.join("big").exists(), "partial segment published");
    // The pull removed its temp file itself; gc finds nothing either.
    assert!(host_b.dir().list().unwrap().temps.is_empty());
    ok(&host_b.0, &["gc"]);
    let listing = host_b.dir().list().unwrap();
    assert!(
        listing.segments.is_empty() && listing.temps.is_empty(),
        "{listing:?}"
    );
}

#[test]
fn interrupted_pull_leaves_nothing() {
    let host_a = TempDir::new("flight-sig-a");
    publish_big(&host_a, "big");
    let server = Server::start(&host_a.0, &[]);
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        let host_b = TempDir::new("flight-sig-b");
        let mut pull = shmarrow_bin()
            .arg("--dir")
            .arg(&host_b.0)
            .args(["pull", &server.addr, "big"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Mid-transfer: data has arrived in the temp file.
        common::wait_for_temp(&host_b.0, &mut pull, 1);
        common::interrupt_leaves_nothing(&host_b.0, pull, signal, &[]);
    }
}

#[test]
fn push_killed_mid_transfer_leaves_nothing_on_the_server() {
    let host_a = TempDir::new("flight-pkill-a");
    let host_b = TempDir::new("flight-pkill-b");
    publish_big(&host_b, "big");
    let server = Server::start(&host_a.0, &[]);
    let mut push = shmarrow_bin()
        .arg("--dir")
        .arg(&host_b.0)
        .args(["push", "big", &server.addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600); // a hang guard, not a speed limit
    loop {
        if host_a
            .dir()
            .list()
            .unwrap()
            .temps
            .iter()
            .any(|t| t.bytes > 0)
        {
            break;
        }
        assert!(
            !host_a.0.join("big").exists(),
            "the push finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    push.kill().unwrap(); // SIGKILL, by pid
    push.wait().unwrap();
    // The server drops the upload and its temp file; it keeps serving.
    assert_nothing_left(&host_a, "big");
    publish_matrix(&host_b, "m");
    ok(&host_b.0, &["push", "m", &server.addr]);
}

#[test]
fn a_wrong_token_is_refused() {
    let tmp = TempDir::new("flight-token");
    publish_matrix(&tmp, "m");
    let token = tmp.0.join("token.txt");
    let wrong = tmp.0.join("wrong.txt");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    std::fs::write(&wrong, "guess\n").unwrap();
    let server = Server::start(&tmp.0, &["--token-file", token.to_str().unwrap()]);
    let local = TempDir::new("flight-token-b");
    let addr = server.addr.as_str();

    fails(
        &local.0,
        &["pull", addr, "m", "--token-file", wrong.to_str().unwrap()],
        &["refused", "wrong bearer token", "--token-file"],
    );
    fails(
        &local.0,
        &["pull", addr, "m"],
        &["refused", "authorization: Bearer"],
    );
    assert_nothing_left(&local, "m");
    ok(
        &local.0,
        &["pull", addr, "m", "--token-file", token.to_str().unwrap()],
    );

    // The Rust client gets Unauthenticated without the header, and in with it.
    rt().block_on(async {
        let mut c = client(addr).await;
        let err = c.list_flights(vec![]).await.err().unwrap();
        match err {
            FlightError::Tonic(status) => {
                assert_eq!(status.code(), tonic::Code::Unauthenticated)
            }
            other => panic!("{other}"),
        }
        c.add_header("authorization", "Bearer s3cret-token")
            .unwrap();
        let infos: Vec<_> = c
            .list_flights(vec![])
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(infos.len(), 1);
    });

    if let Some(py) = python() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/tests/flight_client.py");
        let out = Command::new(py)
            .arg(script)
            .args(["token", addr, "m", "s3cret-token"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn remote_reduce_equals_local_reduce() {
    let tmp = TempDir::new("flight-reduce");
    ok(
        &tmp.0,
        &[
            "create",
            "trades",
            "--schema",
            concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/trades.json"),
            "--rows",
            "300000",
            "--seed",
            "3",
        ],
    );
    publish_matrix(&tmp, "m");
    let server = Server::start(&tmp.0, &[]);
    rt().block_on(async {
        let mut c = client(&server.addr).await;
        for (name, columns) in [
            ("trades", vec!["price", "qty", "trade_id"]),
            ("trades", vec![]),
            ("m", vec![]),
        ] {
            let body = serde_json::json!({"name": name, "columns": columns}).to_string();
            let results: Vec<_> = c
                .do_action(Action::new("reduce", body))
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            assert_eq!(results.len(), 1);
            let remote: Value = serde_json::from_slice(&results[0]).unwrap();
            let mut args = vec!["--json", "reduce", name];
            for column in &columns {
                args.extend(["-c", column]);
            }
            let local: Value = serde_json::from_str(&ok(&tmp.0, &args)).unwrap();
            assert_eq!(remote, local, "{name} {columns:?}");
        }

        // ops and ddof, as `reduce --ops --ddof`.
        let body = r#"{"name": "trades", "columns": ["price"], "ops": ["mean", "std"], "ddof": 1}"#;
        let results: Vec<_> = c
            .do_action(Action::new("reduce", body))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let remote: Value = serde_json::from_slice(&results[0]).unwrap();
        let local: Value = serde_json::from_str(&ok(
            &tmp.0,
            &[
                "--json", "reduce", "trades", "-c", "price", "--ops", "mean,std", "--ddof", "1",
            ],
        ))
        .unwrap();
        assert_eq!(remote, local);

        // Errors say what is wrong.
        for (body, needle) in [
            (r#"{"name": "nope"}"#, "not found"),
            (r#"{"name": "trades", "columns": ["venue"]}"#, "venue"),
            ("not json", "JSON"),
        ] {
            let err = c
                .do_action(Action::new("reduce", body))
                .await
                .err()
                .unwrap();
            assert!(err.to_string().contains(needle), "{body}: {err}");
        }
    });
}

#[test]
fn non_loopback_needs_allow_remote() {
    let tmp = TempDir::new("flight-remote");
    fails(
        &tmp.0,
        &["serve", "--listen", "0.0.0.0:0"],
        &["not a loopback address", "--allow-remote"],
    );
    fails(
        &tmp.0,
        &["pull", "ftp://127.0.0.1:1", "m"],
        &["unknown scheme"],
    );
}

#[test]
fn a_lying_upload_is_refused_and_the_server_carries_on() {
    let tmp = TempDir::new("flight-lying");
    let server = Server::start(&tmp.0, &[]);
    let batch = RecordBatch::try_from_iter([(
        "x",
        Arc::new(Int64Array::from_iter_values(0..6)) as ArrayRef,
    )])
    .unwrap();
    let upload = |name: &str| {
        FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![name.into()])))
            .build(futures::stream::iter([Ok(batch.clone())]))
    };
    rt().block_on(async {
        let mut c = client(&server.addr).await;
        // The batch message's values buffer moved 4 GiB past its body (arrow-flight's own
        // decoder panics on this: the fuzzer's `slice offset=4294967344`).
        let mut messages: Vec<_> = upload("lying").try_collect().await.unwrap();
        let data = messages.last_mut().unwrap();
        let mut header = data.data_header.to_vec();
        common::lie_about_a_buffer_offset(&mut header);
        data.data_header = header.into();
        let result = match c
            .do_put(futures::stream::iter(messages.into_iter().map(Ok)))
            .await
        {
            Ok(s) => s.try_collect::<Vec<_>>().await.map(|_| ()),
            Err(e) => Err(e),
        };
        let err = result.unwrap_err().to_string();
        assert!(err.contains("outside the"), "{err}");
        assert_nothing_left(&tmp, "lying");
        // The same server takes the next, honest upload.
        let honest = c.do_put(upload("honest")).await.unwrap();
        assert_eq!(honest.count().await, 1);
        assert_eq!(tmp.dir().attach("honest").unwrap().num_rows(), 6);
    });
}
