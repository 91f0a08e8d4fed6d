//! Whether a segment directory hands out transparent huge pages (2 MiB) to its files.
//!
//! A fresh tmpfs page costs one page fault per 4 KiB when a process first touches it through a
//! mapping; a tmpfs mounted with `-o huge=within_size` (or `huge=always`) backs files with
//! 2 MiB pages, 512 times fewer. The policy is the mount's `huge=` option, read from
//! `/proc/self/mountinfo` for the directory's own filesystem (matched by device number, so
//! bind mounts and symlinks cannot mislead it), overridden by the kernel's emergency switches
//! in `/sys/kernel/mm/transparent_hugepage/shmem_enabled` (`deny`: none anywhere, `force`:
//! everywhere).
//!
//! shmarrow uses it when it reserves a file ([`reserve`]): in a directory with huge pages
//! (any policy but `never`), the pages of a file of 2 MiB or more are allocated through a
//! mapping that asks for huge pages (`MADV_HUGEPAGE` + `MADV_POPULATE_WRITE`) before the
//! `fallocate` that checks the space. A plain `fallocate` or `write` gets huge pages only when
//! free 2 MiB blocks happen to be at hand (never under `huge=advise`); the mapping that asks
//! lets the kernel compact memory for them. Tables published, allocated and channels created
//! there are then backed by 2 MiB pages, and every process that attaches them maps 2 MiB per
//! page fault (the kernel aligns mappings of such files to 2 MiB by itself).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The transparent huge page policy of a directory's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePages {
    /// Not a tmpfs, or a tmpfs mounted without `huge=` (or `huge=never`): 4 KiB pages only.
    Never,
    /// `huge=always`: a huge page wherever 2 MiB of a file fit.
    Always,
    /// `huge=within_size`: a huge page wherever a whole 2 MiB lies inside the file's size.
    WithinSize,
    /// `huge=advise`: huge pages only for mappings that ask (`MADV_HUGEPAGE`).
    Advise,
}

impl HugePages {
    /// The policy of the filesystem that holds `dir`.
    ///
    /// # Errors
    /// The `stat` of `dir` or the read of `/proc/self/mountinfo` failed.
    pub fn of_dir(dir: &Path) -> io::Result<Self> {
        let dev = std::fs::metadata(dir)?.dev();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let global = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
            .unwrap_or_default();
        Ok(Self::from_mountinfo(&mountinfo, dev, &global))
    }

    /// The policy for device `dev` given the text of `/proc/self/mountinfo` and of
    /// `shmem_enabled` (whose selected value is in brackets, `always [never] ...`).
    fn from_mountinfo(mountinfo: &str, dev: u64, global: &str) -> Self {
        let selected = global
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'));
        let want = format!(
            "{}:{}",
            nix::sys::stat::major(dev),
            nix::sys::stat::minor(dev)
        );
        // `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`;
        // of several mounts of one filesystem the super options are the same.
        let options = mountinfo.lines().find_map(|line| {
            let mut fields = line.split(' ');
            if fields.nth(2)? != want {
                return None;
            }
            let mut rest = fields.skip_while(|f| *f != "-").skip(1);
            let fstype = rest.next()?;
            let options = rest.nth(1)?;
            Some((fstype == "tmpfs").then_some(options))
        });
        let Some(Some(options)) = options else {
            return Self::Never; // not a tmpfs (or not found): the shmem switches do not apply
        };
        match selected {
            Some("deny") => return Self::Never,
            Some("force") => return Self::Always,
            _ => {}
        }
        match options.split(',').find_map(|o| o.strip_prefix("huge=")) {
            Some("always") => Self::Always,
            Some("within_size") => Self::WithinSize,
            Some("advise") => Self::Advise,
            _ => Self::Never,
        }
    }

    /// Whether files in the directory get huge pages without asking.
    pub fn enabled(self) -> bool {
        matches!(self, Self::Always | Self::WithinSize)
    }
}

impl crate::SegmentDir {
    /// The transparent huge page policy of this directory's filesystem (see [`HugePages`]):
    /// what `shmarrow df` and `inspect` report.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if the directory cannot be `stat`ed or
    /// `/proc/self/mountinfo` cannot be read.
    pub fn huge_pages(&self) -> crate::Result<HugePages> {
        HugePages::of_dir(self.path()).map_err(|source| crate::Error::Io {
            op: "read the huge page policy of",
            path: self.path().to_owned(),
            source,
        })
    }
}

/// The size of a transparent huge page on x86-64 and arm64 (4 KiB base pages).
pub const HUGE_PAGE: u64 = 2 << 20;

/// Reserve `len` bytes for `file`, a new file in directory `dir` (see the module docs): in a
/// directory with huge pages, files of at least [`HUGE_PAGE`] bytes get their pages through a
/// mapping that asks for them first; then `posix_fallocate` reserves the space (a full
/// directory fails there with `ENOSPC`).
pub(crate) fn reserve(dir: &Path, file: &File, len: u64) -> io::Result<()> {
    if len >= HUGE_PAGE && HugePages::of_dir(dir).is_ok_and(|h| h != HugePages::Never) {
        // Best effort: whatever it could not do, the fallocate below does (or reports).
        let _ = crate::sys::populate_huge(file, len);
    }
    crate::sys::reserve(file, len)
}

impl std::fmt::Display for HugePages {
    /// The mount option's spelling: `never`, `always`, `within_size`, `advise`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Never => "never",
            Self::Always => "always",
            Self::WithinSize => "within_size",
            Self::Advise => "advise",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 1 0:22 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw,size=8G,inode64
90 24 0:45 / /tmp/huge rw,relatime - tmpfs tmpfs rw,size=1048576k,huge=within_size,inode64
91 24 0:46 / /tmp/adv rw,relatime shared:7 master:2 - tmpfs none rw,huge=advise
92 24 8:1 / /data rw,relatime - ext4 /dev/sda1 rw,huge=always
";

    fn dev(major: u64, minor: u64) -> u64 {
        nix::sys::stat::makedev(major, minor)
    }

    #[test]
    fn the_mounts_huge_option_is_the_policy() {
        let of = |d| {
            HugePages::from_mountinfo(MOUNTINFO, d, "always within_size advise [never] deny force")
        };
        assert_eq!(of(dev(0, 22)), HugePages::Never);
        assert_eq!(of(dev(0, 45)), HugePages::WithinSize);
        assert_eq!(of(dev(0, 46)), HugePages::Advise);
        // Not a tmpfs, whatever its options say; an unknown device.
        assert_eq!(of(dev(8, 1)), HugePages::Never);
        assert_eq!(of(dev(9, 9)), HugePages::Never);
    }

    #[test]
    fn deny_and_force_override_every_tmpfs() {
        let of = |d, g| HugePages::from_mountinfo(MOUNTINFO, d, g);
        assert_eq!(
            of(dev(0, 45), "always within_size advise never [deny] force"),
            HugePages::Never
        );
        assert_eq!(
            of(dev(0, 22), "always within_size advise never deny [force]"),
            HugePages::Always
        );
        assert_eq!(
            of(dev(8, 1), "always within_size advise never deny [force]"),
            HugePages::Never
        );
    }
}
