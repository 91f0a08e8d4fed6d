//! Parquet input with its page sizes checked before the parquet crate reads a page.
//!
//! The parquet crate allocates the uncompressed size a page header declares before it
//! decompresses the page (and for LZ4 and Snappy fills it with zeros), up to 2 GiB a page, and
//! holds one page per column of a row group at a time: a file of a few kilobytes could make a
//! reader allocate gigabytes, or abort when the allocation fails. So every page header of every
//! column chunk is read first (headers only, no data): each chunk must lie inside the file,
//! each page inside its chunk, and the largest pages of a row group's columns together must
//! stay within [`MAX_DECOMPRESSED_BATCH`], the bound IPC input has.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, bail};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use shmarrow::ipc::MAX_DECOMPRESSED_BATCH;

/// The largest page header read (statistics make them large; pages of real files have headers
/// of at most a few kilobytes).
const MAX_HEADER: u64 = 16 << 20;

/// A reader of Parquet `file` (labelled `label` in errors) whose page sizes were checked.
pub fn reader(file: File, label: &str) -> anyhow::Result<ParquetRecordBatchReaderBuilder<File>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(
        file.try_clone().with_context(|| format!("open {label}"))?,
    )
    .with_context(|| format!("{label} is not a Parquet file"))?;
    check_pages(&file, builder.metadata()).with_context(|| format!("{label}: refused"))?;
    Ok(builder)
}

fn check_pages(file: &File, metadata: &ParquetMetaData) -> anyhow::Result<()> {
    let len = file.metadata()?.len();
    for (g, group) in metadata.row_groups().iter().enumerate() {
        let mut held: u64 = 0;
        for (c, column) in group.columns().iter().enumerate() {
            let (start, bytes) = column.byte_range();
            let end = start
                .checked_add(bytes)
                .filter(|&end| end <= len)
                .with_context(|| {
                    format!("column chunk {c} of row group {g} ({bytes} bytes at {start}) lies outside the {len}-byte file")
                })?;
            let mut at = start;
            let mut largest = 0;
            while at < end {
                let page = page_header(file, at, end).with_context(|| {
                    format!("page at {at} of column chunk {c} of row group {g}")
                })?;
                largest = largest.max(page.uncompressed);
                at += page.header + page.compressed;
            }
            held = held.saturating_add(largest);
        }
        if held > MAX_DECOMPRESSED_BATCH {
            bail!(
                "row group {g} declares pages of {held} bytes to hold at once (its columns' largest), more than the {MAX_DECOMPRESSED_BATCH}-byte limit"
            );
        }
    }
    Ok(())
}

/// The sizes of one page: its header's, and those the header declares.
struct Page {
    header: u64,
    compressed: u64,
    uncompressed: u64,
}

/// Read the page header at `at` (Thrift compact `PageHeader`: field 2 `uncompressed_page_size`,
/// field 3 `compressed_page_size`), whose page must end by `end`.
fn page_header(file: &File, at: u64, end: u64) -> anyhow::Result<Page> {
    let available = end - at;
    let mut want = available.min(256);
    loop {
        let mut bytes = vec![0; want as usize];
        file.read_exact_at(&mut bytes, at)?;
        let mut reader = Compact {
            bytes: &bytes,
            at: 0,
        };
        match reader.page_sizes() {
            Ok((compressed, uncompressed)) => {
                let header = reader.at as u64;
                if compressed > available - header {
                    bail!("a page of {compressed} bytes does not fit in its column chunk");
                }
                return Ok(Page {
                    header,
                    compressed,
                    uncompressed,
                });
            }
            Err(Stop::Short) if want < available.min(MAX_HEADER) => {
                want = (want * 4).min(available.min(MAX_HEADER));
            }
            Err(Stop::Short) => bail!("page header truncated"),
            Err(Stop::Bad(why)) => bail!("invalid page header: {why}"),
        }
    }
}

/// Why a header could not be read: more bytes needed, or invalid.
enum Stop {
    Short,
    Bad(&'static str),
}

/// A reader of the Thrift compact protocol, as much as skipping a `PageHeader`'s fields needs.
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.bytes.get(self.at).ok_or(Stop::Short)?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Stop> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Stop::Bad("varint longer than 10 bytes"))
    }

    fn zigzag(&mut self) -> Result<i64, Stop> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), Stop> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(Stop::Short);
        }
        self.at += n as usize;
        Ok(())
    }

    /// The fields of a struct, each given to `field` (id, type) unless it returns `false`, in
    /// which case it is skipped.
    fn fields(
        &mut self,
        depth: u32,
        mut field: impl FnMut(&mut Self, i64, u8) -> Result<bool, Stop>,
    ) -> Result<(), Stop> {
        let mut id = 0i64;
        loop {
            let b = self.byte()?;
            if b == 0 {
                return Ok(());
            }
            let (delta, kind) = (b >> 4, b & 0x0f);
            id = if delta == 0 {
                self.zigzag()?
            } else {
                id + i64::from(delta)
            };
            if !field(self, id, kind)? {
                self.skip(kind, depth)?;
            }
        }
    }

    /// Skip a value of compact type `kind` (a struct field's: booleans carry no byte).
    fn skip(&mut self, kind: u8, depth: u32) -> Result<(), Stop> {
        match kind {
            1 | 2 => Ok(()),
            _ => self.skip_element(kind, depth),
        }
    }

    /// Skip a value of compact type `kind` inside a list, set or map (a boolean is a byte).
    /// Every nesting (struct, list, set, map) passes here: the depth is bounded here, before
    /// a crafted header of nested lists could recurse a byte at a time through the stack.
    fn skip_element(&mut self, kind: u8, depth: u32) -> Result<(), Stop> {
        if depth > 64 {
            return Err(Stop::Bad("nested too deeply"));
        }
        match kind {
            1..=3 => self.byte().map(drop),
            4..=6 => self.varint().map(drop),
            7 => self.skip_bytes(8),
            8 => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..n {
                    self.skip_element(h & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.skip_element(kv >> 4, depth + 1)?;
                        self.skip_element(kv & 0x0f, depth + 1)?;
                    }
                }
                Ok(())
            }
            12 => self.fields(depth + 1, |_, _, _| Ok(false)),
            _ => Err(Stop::Bad("unknown field type")),
        }
    }

    /// The `compressed_page_size` and `uncompressed_page_size` of a `PageHeader`.
    fn page_sizes(&mut self) -> Result<(u64, u64), Stop> {
        let (mut compressed, mut uncompressed) = (None, None);
        self.fields(0, |r, id, kind| {
            let slot = match (id, kind) {
                (2, 5) => &mut uncompressed,
                (3, 5) => &mut compressed,
                _ => return Ok(false),
            };
            *slot = Some(u64::try_from(r.zigzag()?).map_err(|_| Stop::Bad("negative size"))?);
            Ok(true)
        })?;
        match (compressed, uncompressed) {
            (Some(c), Some(u)) => Ok((c, u)),
            _ => Err(Stop::Bad("no page sizes")),
        }
    }
}
