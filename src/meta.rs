//! The `shmarrow.` keys in a segment's schema metadata. Other Arrow readers ignore them.

use std::fmt;
use std::str::FromStr;

use arrow_schema::{Metadata, Schema};

use crate::sys::ProcessId;

/// Version of the segment layout described in `schemas/SEGMENT.md`.
pub const FORMAT_VERSION: u32 = 1;

/// Key: layout version.
pub const KEY_VERSION: &str = "shmarrow.version";
/// Key: pid of the creating process.
pub const KEY_CREATOR_PID: &str = "shmarrow.creator_pid";
/// Key: start time of the creating process (clock ticks since boot, `/proc/PID/stat` field 22).
pub const KEY_CREATOR_START: &str = "shmarrow.creator_start";
/// Key: creation time, milliseconds since the Unix epoch.
pub const KEY_CREATED_MS: &str = "shmarrow.created_ms";
/// Key: [`Lifetime`] as `persistent` or `owner`.
pub const KEY_LIFETIME: &str = "shmarrow.lifetime";

/// `schema` with the user's metadata but without the `shmarrow.` keys, which describe the file
/// it was read from (creator, lifetime, time): a copy published elsewhere gets its own.
pub fn without_shmarrow_keys(schema: &Schema) -> Schema {
    let mut metadata = schema.metadata().clone();
    metadata.retain(|k, _| !k.starts_with("shmarrow."));
    schema.clone().with_metadata(metadata)
}

/// How long a segment lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifetime {
    /// Lives until removed (`remove`, `shmarrow rm`).
    #[default]
    Persistent,
    /// Removed when the creator's [`Created`](crate::Created) handle drops; reclaimed by `gc`
    /// once the creating process is dead.
    Owner,
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lifetime::Persistent => "persistent",
            Lifetime::Owner => "owner",
        })
    }
}

impl FromStr for Lifetime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "persistent" => Ok(Lifetime::Persistent),
            "owner" => Ok(Lifetime::Owner),
            _ => Err(format!(
                "unknown lifetime {s:?} (expected persistent or owner)"
            )),
        }
    }
}

/// What shmarrow records about a segment it created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Layout version ([`FORMAT_VERSION`] when written by this library).
    pub format_version: u32,
    /// The creating process.
    pub creator: ProcessId,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// How long the segment lives.
    pub lifetime: Lifetime,
}

impl SegmentMeta {
    /// Metadata for a segment created now by this process.
    pub(crate) fn now(lifetime: Lifetime) -> Self {
        let created_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            format_version: FORMAT_VERSION,
            creator: ProcessId::current(),
            created_unix_ms,
            lifetime,
        }
    }

    /// Read the keys back; `None` for a file shmarrow did not write (or whose keys are damaged).
    pub fn from_metadata(md: &Metadata) -> Option<Self> {
        let get = |k: &str| md.get(k).map(String::as_str);
        Some(Self {
            format_version: get(KEY_VERSION)?.parse().ok()?,
            creator: ProcessId {
                pid: get(KEY_CREATOR_PID)?.parse().ok()?,
                start_time: get(KEY_CREATOR_START)?.parse().ok()?,
            },
            created_unix_ms: get(KEY_CREATED_MS)?.parse().ok()?,
            lifetime: get(KEY_LIFETIME)?.parse().ok()?,
        })
    }

    /// Write the keys into schema metadata (replacing any earlier `shmarrow.` keys).
    pub(crate) fn insert_into(&self, md: &mut Metadata) {
        md.insert(KEY_VERSION, self.format_version.to_string());
        md.insert(KEY_CREATOR_PID, self.creator.pid.to_string());
        md.insert(KEY_CREATOR_START, self.creator.start_time.to_string());
        md.insert(KEY_CREATED_MS, self.created_unix_ms.to_string());
        md.insert(KEY_LIFETIME, self.lifetime.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign() {
        let meta = SegmentMeta::now(Lifetime::Owner);
        let mut md = Metadata::default().with("user", "kept");
        meta.insert_into(&mut md);
        assert_eq!(SegmentMeta::from_metadata(&md), Some(meta));
        assert_eq!(md["user"], "kept");
        md.insert(KEY_LIFETIME, "forever");
        assert_eq!(SegmentMeta::from_metadata(&md), None);
        assert_eq!(SegmentMeta::from_metadata(&Metadata::default()), None);
    }

    #[test]
    fn a_copy_keeps_the_users_keys_only() {
        let mut md = Metadata::default().with("user", "kept");
        SegmentMeta::now(Lifetime::Owner).insert_into(&mut md);
        let schema = Schema::empty().with_metadata(md);
        let copied = without_shmarrow_keys(&schema);
        assert_eq!(copied.metadata().len(), 1, "{:?}", copied.metadata());
        assert_eq!(copied.metadata()["user"], "kept");
    }
}
