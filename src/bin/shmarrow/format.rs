//! The file formats `import` reads, `export` writes and `produce` streams: told by the file
//! name or by the first bytes, and the one way input files are opened.

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

use anyhow::Context;

/// File formats `import` reads and `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Arrow IPC file (also Feather v2): `.arrow`, `.feather`, `.ipc`.
    Ipc,
    /// Arrow IPC stream: `.arrows`, `.stream`.
    Stream,
    /// Parquet: `.parquet`, `.pq`.
    Parquet,
    /// CSV: `.csv` (comma-separated unless --delimiter).
    Csv,
    /// CSV with tabs: `.tsv`.
    Tsv,
}

impl InputFormat {
    /// The format a file name says (`.arrow`, `.parquet`, `.tsv`, ...), if any.
    pub fn from_extension(path: &Path) -> Option<InputFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "arrow" | "feather" | "ipc" => InputFormat::Ipc,
            "arrows" | "stream" => InputFormat::Stream,
            "parquet" | "pq" => InputFormat::Parquet,
            "csv" => InputFormat::Csv,
            "tsv" => InputFormat::Tsv,
            _ => return None,
        })
    }

    /// The format the first bytes show (an Arrow IPC file, Parquet, or an IPC stream's
    /// continuation marker), if any.
    pub fn from_magic(head: &[u8]) -> Option<InputFormat> {
        match head {
            [b'A', b'R', b'R', b'O', b'W', b'1', ..] => Some(InputFormat::Ipc),
            [b'P', b'A', b'R', b'1', ..] => Some(InputFormat::Parquet),
            [0xff, 0xff, 0xff, 0xff, ..] => Some(InputFormat::Stream),
            _ => None,
        }
    }

    /// The format `bytes` start with, and the same bytes from the start (what was read to
    /// tell is put back in front: nothing is consumed, the input may be a pipe).
    pub fn sniff(
        mut bytes: Box<dyn Read>,
        label: &str,
    ) -> anyhow::Result<(Option<InputFormat>, Box<dyn Read>)> {
        let mut head = Vec::with_capacity(6);
        (&mut bytes)
            .take(6)
            .read_to_end(&mut head)
            .with_context(|| format!("read {label}"))?;
        Ok((
            Self::from_magic(&head),
            Box::new(Cursor::new(head).chain(bytes)),
        ))
    }
}

/// Open an input file, naming it in the error.
pub fn open(path: &Path) -> anyhow::Result<File> {
    File::open(path).with_context(|| format!("open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_first_bytes() {
        assert_eq!(
            InputFormat::from_extension(Path::new("a/b.Parquet")),
            Some(InputFormat::Parquet)
        );
        assert_eq!(InputFormat::from_extension(Path::new("b.bin")), None);
        assert_eq!(
            InputFormat::from_magic(b"ARROW1\0\0"),
            Some(InputFormat::Ipc)
        );
        assert_eq!(InputFormat::from_magic(b"PAR1"), Some(InputFormat::Parquet));
        assert_eq!(
            InputFormat::from_magic(&[0xff; 8]),
            Some(InputFormat::Stream)
        );
        assert_eq!(InputFormat::from_magic(b"ARROW"), None);
        let (format, mut again) =
            InputFormat::sniff(Box::new(Cursor::new(b"PAR1 and more".to_vec())), "x").unwrap();
        assert_eq!(format, Some(InputFormat::Parquet));
        let mut all = String::new();
        again.read_to_string(&mut all).unwrap();
        assert_eq!(all, "PAR1 and more");
    }
}
