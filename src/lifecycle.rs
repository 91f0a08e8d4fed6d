//! Removing, listing and reclaiming segments.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result};
use crate::meta::Lifetime;
use crate::name::{SegmentDir, check_name, parse_temp_name};
use crate::sys::{self, ProcessId};

/// A segment found by [`SegmentDir::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSegment {
    /// Segment name.
    pub name: String,
    /// File size in bytes.
    pub bytes: u64,
}

/// A temporary file of an unfinished (in progress, or crashed) publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempFile {
    /// The file name in the directory (`.NAME.PID.START.NONCE.tmp`).
    pub file_name: OsString,
    /// The segment it was going to become.
    pub segment: String,
    /// The writing process.
    pub writer: ProcessId,
    /// Whether the writer is still running (a dead writer's temp is garbage).
    pub writer_alive: bool,
    /// File size in bytes.
    pub bytes: u64,
}

/// What [`SegmentDir::list`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Tables (Arrow IPC files) under valid segment names, sorted by name.
    pub segments: Vec<ListedSegment>,
    /// Channel segments (see [`SegmentDir::channel_info`]), sorted by name.
    pub channels: Vec<ListedSegment>,
    /// Temporary files of publishes, sorted by file name.
    pub temps: Vec<TempFile>,
}

/// Why [`SegmentDir::gc`] reclaimed a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcReason {
    /// A temporary file whose writer is dead.
    DeadWriter(ProcessId),
    /// An `owner` segment whose creator is dead.
    DeadOwner(ProcessId),
    /// An `owner` channel whose creator (given) and producer are dead, and that no live
    /// consumer holds.
    DeadChannel(ProcessId),
}

/// A file [`SegmentDir::gc`] removed (or, in a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    /// The file name in the directory.
    pub file_name: OsString,
    /// Its size in bytes.
    pub bytes: u64,
    /// Why it was garbage.
    pub reason: GcReason,
}

impl SegmentDir {
    /// Remove segment `name`. Returns `Ok(false)` if there was none. Processes that attached
    /// it keep their (unchanged) view until they drop it.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::NoDirectory`], [`Error::PermissionDenied`],
    /// [`Error::NotAFile`] for a directory, [`Error::Io`].
    pub fn remove(&self, name: &str) -> Result<bool> {
        let path = self.segment_path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.path().is_dir() => Ok(false),
            Err(e) if e.raw_os_error() == Some(nix::libc::EISDIR) => Err(Error::NotAFile {
                name: name.to_owned(),
                kind: "directory",
            }),
            Err(e) => Err(Error::from_io(e, "remove", name, &path)),
        }
    }

    /// The segments (regular files under valid names that start with the Arrow magic: tables;
    /// or with [`CHANNEL_MAGIC`](crate::CHANNEL_MAGIC): channels) and the publish temporaries
    /// in the directory. Files this process cannot read are left out.
    ///
    /// # Errors
    /// [`Error::NoDirectory`]; [`Error::Io`] if the directory cannot be read.
    pub fn list(&self) -> Result<Listing> {
        let entries = std::fs::read_dir(self.path()).map_err(|source| {
            if self.path().is_dir() {
                Error::Io {
                    op: "read directory",
                    path: self.path().to_owned(),
                    source,
                }
            } else {
                Error::NoDirectory {
                    dir: self.path().to_owned(),
                    name: None,
                }
            }
        })?;
        let mut listing = Listing::default();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            if let Some((segment, writer)) = parse_temp_name(&file_name) {
                listing.temps.push(TempFile {
                    file_name,
                    segment,
                    writer,
                    writer_alive: writer.is_alive(),
                    bytes: meta.len(),
                });
            } else if let Some(name) = file_name.to_str().filter(|n| check_name(n).is_ok()) {
                let mut magic = Vec::with_capacity(8);
                if let Ok((f, _)) = sys::open_regular(&entry.path(), false) {
                    let _ = f.take(8).read_to_end(&mut magic);
                }
                let listed = ListedSegment {
                    name: name.to_owned(),
                    bytes: meta.len(),
                };
                if magic.starts_with(b"ARROW1") {
                    listing.segments.push(listed);
                } else if magic == crate::CHANNEL_MAGIC {
                    listing.channels.push(listed);
                }
            }
        }
        listing.segments.sort_by(|a, b| a.name.cmp(&b.name));
        listing.channels.sort_by(|a, b| a.name.cmp(&b.name));
        listing.temps.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        Ok(listing)
    }

    /// Reclaim garbage owned by this user: temporaries whose writer is dead, `owner`
    /// segments whose creator is dead, and `owner` channels whose creator and producer are
    /// dead and that no live consumer holds. A process is identified by pid *and* start time, so a
    /// reused pid does not keep garbage alive, and a live creator's segment is never removed.
    /// With `dry_run`, nothing is removed and the report says what would be.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be read or a file cannot be removed.
    pub fn gc(&self, dry_run: bool) -> Result<Vec<Reclaimed>> {
        let listing = self.list()?;
        let me = sys::effective_uid();
        let owned_by_me = |file_name: &OsString| {
            std::fs::symlink_metadata(self.path().join(file_name))
                .is_ok_and(|m| m.is_file() && m.uid() == me)
        };
        let mut garbage: Vec<Reclaimed> = listing
            .temps
            .into_iter()
            .filter(|t| !t.writer_alive && owned_by_me(&t.file_name))
            .map(|t| Reclaimed {
                file_name: t.file_name,
                bytes: t.bytes,
                reason: GcReason::DeadWriter(t.writer),
            })
            .collect();
        for segment in listing.segments {
            let file_name = OsString::from(&segment.name);
            let Ok(info) = self.info(&segment.name) else {
                continue;
            };
            let Some(meta) = info.meta else { continue };
            if meta.lifetime == Lifetime::Owner
                && !meta.creator.is_alive()
                && owned_by_me(&file_name)
            {
                garbage.push(Reclaimed {
                    file_name,
                    bytes: segment.bytes,
                    reason: GcReason::DeadOwner(meta.creator),
                });
            }
        }
        for channel in listing.channels {
            let file_name = OsString::from(&channel.name);
            let Ok(info) = self.channel_info(&channel.name) else {
                continue;
            };
            if let Some(meta) = info.meta
                && info.is_garbage()
                && owned_by_me(&file_name)
            {
                garbage.push(Reclaimed {
                    file_name,
                    bytes: channel.bytes,
                    reason: GcReason::DeadChannel(meta.creator),
                });
            }
        }
        if !dry_run {
            for g in &garbage {
                let path = self.path().join(&g.file_name);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(Error::Io {
                            op: "remove",
                            path,
                            source,
                        });
                    }
                }
            }
        }
        Ok(garbage)
    }
}
