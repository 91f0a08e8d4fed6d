//! A private segment directory per fuzz process, and a file in it holding the input.

use std::path::PathBuf;
use std::sync::OnceLock;

pub fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(format!("/dev/shm/shmarrow-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("fuzz dir");
        d
    })
}

pub fn write(name: &str, bytes: &[u8]) -> shmarrow::SegmentDir {
    std::fs::write(dir().join(name), bytes).expect("write input");
    shmarrow::SegmentDir::new(dir())
}
