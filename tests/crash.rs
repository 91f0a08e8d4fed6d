//! What happens when things go wrong outside our control: a publisher killed mid-write, a
//! full directory, another user. These run the real binary as a separate process.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, RecordBatch};
use common::{TempDir, shmarrow_bin};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shmarrow::CreateOptions;

/// An Arrow IPC file of `mib` MiB of float64 at `path` (written as a segment of `dir`).
fn big_input(dir: &TempDir, name: &str, mib: usize) -> std::path::PathBuf {
    let n = mib * 1024 * 1024 / 8;
    let batch = RecordBatch::try_from_iter([(
        "x",
        Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))) as _,
    )])
    .unwrap();
    dir.dir()
        .create(name, &batch.schema(), &[batch], &CreateOptions::default())
        .unwrap();
    dir.0.join(name)
}

fn temps_of(dir: &Path, name: &str) -> Vec<String> {
    let prefix = format!(".{name}.");
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(&prefix))
        .collect()
}

fn assert_clean_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.to_lowercase().contains(needle), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn publisher_killed_mid_write_leaves_nothing_visible_and_gc_reclaims() {
    let input_dir = TempDir::new("crash-in");
    let input = big_input(&input_dir, "input", 192);
    let out_dir = TempDir::new("crash-out");
    let trials = 5;
    let mut killed_mid_write = 0;
    for trial in 0..trials {
        let name = format!("victim{trial}");
        let mut child = shmarrow_bin()
            .arg("--dir")
            .arg(&out_dir.0)
            .args(["import", &name])
            .arg(&input)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it as soon as its temp file exists: between create and rename.
        let deadline = Instant::now() + Duration::from_secs(20);
        while temps_of(&out_dir.0, &name).is_empty() && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200 + trial as u64 * 300));
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        child.wait().unwrap();

        let visible = out_dir.0.join(&name);
        if visible.exists() {
            // The publish won the race: then the segment must be complete.
            let seg = out_dir.dir().attach(&name).unwrap();
            assert_eq!(seg.num_rows(), 192 * 1024 * 1024 / 8);
        } else {
            killed_mid_write += 1;
            assert!(
                !temps_of(&out_dir.0, &name).is_empty(),
                "killed writer left its temp"
            );
            let listing = out_dir.dir().list().unwrap();
            assert!(listing.temps.iter().all(|t| !t.writer_alive));
        }
        let reclaimed = out_dir.dir().gc(false).unwrap();
        assert!(
            temps_of(&out_dir.0, &name).is_empty(),
            "gc reclaimed {reclaimed:?}"
        );
    }
    assert!(
        killed_mid_write > 0,
        "no trial killed the writer mid-publish"
    );
    eprintln!("{killed_mid_write}/{trials} trials killed mid-publish; none left a visible segment");
}

#[test]
#[ignore = "needs root (mounting a small tmpfs needs root (unshare -m)); .ci/run runs it as root"]
fn full_directory_gives_no_space_and_leaves_nothing() {
    common::require_root("mounting a small tmpfs needs root (unshare -m)");
    let input_dir = TempDir::new("nospace-in");
    let input = big_input(&input_dir, "input", 64);
    let mount = tempfile_dir();
    let script = format!(
        "mount -t tmpfs -o size=16m shmarrow-test {m} && {bin} --dir {m} import big {input}; rc=$?; \
         echo \"rc=$rc\"; ls -A {m} | sed 's/^/left:/'",
        m = mount.display(),
        bin = env!("CARGO_BIN_EXE_shmarrow"),
        input = input.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&mount);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("unshare failed") || stderr.contains("mount:") {
        eprintln!("skipped: cannot mount a tmpfs here: {stderr}");
        return;
    }
    assert!(stdout.contains("rc=1"), "stdout: {stdout} stderr: {stderr}");
    let needed: u64 = stderr
        .split("no space for segment \"big\": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("stderr: {stderr}"));
    assert!(
        needed > 64 << 20,
        "the error names the bytes needed: {needed}"
    );
    assert!(!stderr.contains("panicked"));
    assert!(!stdout.contains("left:"), "files left behind: {stdout}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("shmarrow-mnt-{}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Run the binary as user `nobody`.
fn as_nobody(args: &[&str], dir: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_shmarrow"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs root (switching to user nobody needs root); .ci/run runs it as root"]
fn another_user_cannot_read_remove_or_gc_private_segments() {
    common::require_root("switching to user nobody needs root");
    let tmp = TempDir::new("perm");
    std::fs::set_permissions(&tmp.0, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let batch =
        RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(vec![1.0])) as _)]).unwrap();
    let dir = tmp.dir();
    dir.create(
        "private",
        &batch.schema(),
        std::slice::from_ref(&batch),
        &CreateOptions::default(),
    )
    .unwrap();
    dir.create(
        "shared",
        &batch.schema(),
        &[batch],
        &CreateOptions::default().mode(0o644),
    )
    .unwrap();

    assert_clean_failure(
        &as_nobody(&["inspect", "private"], &tmp.0),
        "permission denied",
    );
    let ok = as_nobody(&["--json", "inspect", "shared"], &tmp.0);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Sticky directory (like /dev/shm): nobody cannot remove root's segments...
    let rm = as_nobody(&["rm", "private"], &tmp.0);
    assert_eq!(rm.status.code(), Some(1));
    assert!(tmp.0.join("private").exists());
    // ...nor gc root's garbage.
    let dead = ".private.999999999.1.x.tmp";
    std::fs::write(tmp.0.join(dead), b"junk").unwrap();
    let gc = as_nobody(&["gc"], &tmp.0);
    assert!(gc.status.success());
    assert!(
        tmp.0.join(dead).exists(),
        "another user's gc removed our temp"
    );
}

#[test]
fn a_killed_lock_holder_releases_the_lock() {
    let Some(python) = common::python() else {
        return;
    };
    let tmp = TempDir::new("lockkill");
    let batch =
        RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(vec![1.0])) as _)]).unwrap();
    tmp.dir()
        .create(
            "locked",
            &batch.schema(),
            &[batch],
            &CreateOptions::default(),
        )
        .unwrap();
    // A Python process takes the exclusive lock, says so, and hangs.
    let mut holder = Command::new(python)
        .args([
            "-c",
            "import shmarrow, sys, time\nwith shmarrow.lock('locked', shared=False, dir=sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)",
        ])
        .arg(&tmp.0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");
    let try_lock = || {
        let f = std::fs::File::open(tmp.0.join("locked")).unwrap();
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok()
    };
    assert!(!try_lock(), "the holder has it");
    kill(Pid::from_raw(holder.id() as i32), Signal::SIGKILL).unwrap();
    holder.wait().unwrap();
    assert!(try_lock(), "the kernel released the dead holder's lock");
    let _guard = tmp.dir().lock("locked", false).unwrap();
}

#[test]
fn too_many_open_files_is_a_clean_error() {
    let Some(python) = common::python() else {
        return;
    };
    let tmp = TempDir::new("emfile");
    let batch =
        RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(vec![1.0])) as _)]).unwrap();
    tmp.dir()
        .create("t", &batch.schema(), &[batch], &CreateOptions::default())
        .unwrap();
    // Exhaust the process's descriptors (after loading everything), then attach and create.
    let script = r#"
import os, resource, sys, pyarrow as pa, shmarrow
d = sys.argv[1]
table = pa.table({"x": [1]})  # before the limit: pyarrow imports pandas, if installed, lazily
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
held = []
try:
    while True:
        held.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
for call in (lambda: shmarrow.attach("t", dir=d), lambda: shmarrow.create("u", table, dir=d)):
    try:
        call()
        print("no error")
    except shmarrow.ShmarrowError as e:
        print(type(e).__name__, e)
for fd in held:
    os.close(fd)
print("after", shmarrow.attach("t", dir=d).num_rows)
"#;
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&tmp.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &lines[..2] {
        assert!(line.contains("Too many open files"), "{stdout}");
    }
    assert_eq!(lines[2], "after 1");
    let listing = tmp.dir().list().unwrap();
    assert_eq!(
        listing.segments.len(),
        1,
        "nothing left behind: {listing:?}"
    );
    assert!(listing.temps.is_empty());
}
