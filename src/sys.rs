//! Every raw operating-system call the library makes, in one place (Linux).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::RenameFlags;
use nix::libc;

/// A process, identified beyond its pid: the start time (clock ticks since boot, field 22 of
/// `/proc/PID/stat`) tells a live creator from an unrelated process that reused its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start_time: start_time(pid).unwrap_or(0),
        }
    }

    /// Whether this very process (same pid *and* same start time) is still running. A zombie
    /// (exited, not yet reaped by its parent) is not.
    pub fn is_alive(&self) -> bool {
        stat(self.pid)
            .is_some_and(|(state, start)| start == self.start_time && !matches!(state, 'Z' | 'X'))
    }
}

/// Field 22 (`starttime`) of `/proc/PID/stat`, or `None` if there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Fields 3 (`state`) and 22 (`starttime`) of `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': the fields
    // we want come after the *last* ')'. After it, field 3 is first, so 22 is index 19.
    let mut fields = stat[stat.rfind(')')? + 1..].split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// Create a new file that must not exist: `O_CREAT|O_EXCL|O_NOFOLLOW`, then set `mode`
/// exactly (not filtered by the umask).
pub fn create_exclusive(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode & 0o600) // never wider than owner-only before the explicit chmod below
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Open an existing segment file without following a symlink and without blocking on a FIFO,
/// returning it with its metadata; anything but a regular file is refused with `Err(Ok(kind))`.
pub fn open_regular(
    path: &Path,
    write: bool,
) -> Result<(File, std::fs::Metadata), Result<&'static str, io::Error>> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Ok("symbolic link")
            } else {
                Err(e)
            }
        })?;
    let meta = file.metadata().map_err(Err)?;
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok((file, meta));
    }
    Err(Ok(if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else {
        "device"
    }))
}

/// [`open_regular`] for segment `name`: a file that is not regular is
/// [`crate::Error::NotAFile`]
/// naming what it is, an I/O error the variant that says what it means.
pub fn open_segment(
    name: &str,
    path: &Path,
    write: bool,
) -> crate::Result<(File, std::fs::Metadata)> {
    open_regular(path, write).map_err(|e| match e {
        Ok(kind) => crate::Error::NotAFile {
            name: name.to_owned(),
            kind,
        },
        Err(e) => crate::Error::from_io(e, "open", name, path),
    })
}

/// Reserve `len` bytes for `file` now, so a full filesystem fails here with `ENOSPC`
/// instead of later (a write through a mapping past the limit would be a SIGBUS).
pub fn reserve(file: &File, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
    if len == 0 {
        return Ok(());
    }
    nix::fcntl::posix_fallocate(file, 0, len).map_err(io::Error::from)
}

/// Allocate the pages of `file`'s first `len` bytes through a shared mapping that asks for
/// transparent huge pages (`MADV_HUGEPAGE`, then `MADV_POPULATE_WRITE`), growing the file to
/// `len` bytes if it is shorter. On a tmpfs whose `huge=` policy allows huge pages this backs
/// the file with them even where a plain `fallocate` would not (`huge=advise` gives them only
/// to mappings that ask; the kernel's `defrag` policy compacts memory only for them). A failure
/// (a full filesystem included: `MADV_POPULATE_WRITE` reports it as an error, never as a
/// signal) leaves the pages allocated so far; [`reserve`] afterwards is what checks the space.
pub fn populate_huge(file: &File, len: u64) -> io::Result<()> {
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
    let map = memmap2::MmapOptions::new().len(len).map_raw(file)?;
    map.advise(memmap2::Advice::HugePage)?;
    map.advise(memmap2::Advice::PopulateWrite)
}

/// Move `from` onto `to` atomically. With `replace == false` the rename fails with
/// `AlreadyExists` if `to` exists (`renameat2(RENAME_NOREPLACE)`).
pub fn rename(from: &Path, to: &Path, replace: bool) -> io::Result<()> {
    if replace {
        return std::fs::rename(from, to);
    }
    match nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        from,
        nix::fcntl::AT_FDCWD,
        to,
        RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        // A filesystem without RENAME_NOREPLACE: link(2) is just as atomic about existence.
        Err(Errno::EINVAL) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Identity of a file (device, inode), to tell "the segment we created" from a replacement.
pub fn file_identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// `lstat` identity of whatever is at `path` now, if anything.
pub fn identity_at(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| file_identity(&m))
}

/// A new open file description of the very file `file` refers to (through
/// `/proc/self/fd/N`, so a rename of its path in between cannot swap the file). Locks that
/// belong to an open (OFD locks) then belong to this open alone, not to a mapping made through
/// `file`, which would keep them alive as long as the mapping's pages are referenced.
pub fn reopen(file: &File, write: bool) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Bytes an unprivileged process can still allocate in the filesystem holding `dir`.
pub fn available_bytes(dir: &Path) -> io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

/// The page-table granule a move of a mapping works in: a move that keeps addresses at the
/// same offset within it moves whole page tables (512 pages at a time) instead of entries.
const PMD_SIZE: usize = 2 << 20;

/// An address range this process mapped and nothing references any more: unmapped when
/// dropped, on whichever thread drops it (unmapping costs time proportional to the pages
/// mapped: [`remap_private`] hands this out so that its caller need not wait for it).
#[derive(Debug)]
pub struct Retired {
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: `Retired` owns its address range alone (no pointer into it was handed out: see
// `remap_private`); unmapping it from another thread touches no memory anyone uses.
unsafe impl Send for Retired {}

impl Drop for Retired {
    fn drop(&mut self) {
        // SAFETY: `addr..addr + len` is a range `remap_private` mapped and gave to this value
        // alone (the moved-away shared mapping and the parts of its reservation around it);
        // nothing references it, so unmapping it invalidates no live pointer.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// Replace the shared mapping `addr..addr + len` of `file` (mapped at offset 0, read-write)
/// with a *private* copy-on-write mapping of the same file at the same address: the bytes
/// read the same, but writes through any pointer into the range stop reaching the file.
///
/// The new mapping is made elsewhere and moved over the old one by `mremap`, which replaces it
/// atomically (a thread writing meanwhile writes into one or the other, never into a hole).
/// Unmapping the old mapping's pages would take time proportional to them (about 20 ms per
/// GiB), so first its page tables are moved away (`MREMAP_DONTUNMAP`: the old mapping stays,
/// emptied, and would fault its pages in again from the file); the moved copy is returned, to
/// be dropped when convenient. On a kernel without `MREMAP_DONTUNMAP` for shared mappings
/// (before 5.13) the replacement unmaps the pages itself and `None` is returned. On failure the
/// old mapping is left in place (its bytes unchanged).
///
/// # Safety
/// `addr..addr + len` must be exactly one live, page-aligned, read-write mapping of `file`
/// from offset 0 that the caller owns (it stays mapped until the caller unmaps it), so that no
/// other object's memory is replaced.
pub unsafe fn remap_private(addr: *mut u8, len: usize, file: &File) -> io::Result<Option<Retired>> {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh mapping at an address the kernel chooses (no MAP_FIXED) replaces nothing;
    // `file` is an open descriptor and `len` the length the caller mapped.
    let fresh = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if fresh == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the caller's contract (`addr..addr + len` is its own mapping of `file`).
    let retired = unsafe { move_pages_away(addr, len) };
    // SAFETY: `fresh` is the mapping just made, of `len` bytes; MREMAP_FIXED moves it onto
    // `addr..addr + len`, which the caller guarantees is its own live mapping of the same
    // length (so only that mapping is replaced, and every pointer into it stays valid).
    let moved = unsafe {
        libc::mremap(
            fresh,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            addr.cast::<libc::c_void>(),
        )
    };
    if moved == libc::MAP_FAILED {
        let err = io::Error::last_os_error();
        // SAFETY: `fresh` is still our own mapping of `len` bytes, referenced by nothing.
        unsafe { libc::munmap(fresh, len) };
        return Err(err);
    }
    Ok(retired)
}

/// Move the page tables of the shared mapping `addr..addr + len` to a range of their own,
/// leaving the mapping in place but empty (`MREMAP_DONTUNMAP`); `None` if the kernel cannot.
///
/// # Safety
/// As [`remap_private`]: `addr..addr + len` is one live mapping the caller owns.
unsafe fn move_pages_away(addr: *mut u8, len: usize) -> Option<Retired> {
    let reserved = len.checked_add(PMD_SIZE)?;
    // SAFETY: an inaccessible anonymous reservation at an address the kernel chooses replaces
    // nothing.
    let hole = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserved,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if hole == libc::MAP_FAILED {
        return None;
    }
    // The retired range owns the whole reservation from here on (dropping it unmaps it).
    let retired = Retired {
        addr: hole,
        len: reserved,
    };
    // The place in the reservation at the same offset within a PMD as `addr`.
    let shift = (addr as usize).wrapping_sub(hole as usize) % PMD_SIZE;
    // SAFETY: `hole + shift .. hole + shift + len` lies inside the reservation (`shift <
    // PMD_SIZE`), which this function owns: MREMAP_FIXED replaces only that. The source is the
    // caller's own mapping of `len` bytes; MREMAP_DONTUNMAP leaves it mapped (shared mappings
    // then fault their pages in again from the file), so no pointer into it dangles.
    let moved = unsafe {
        libc::mremap(
            addr.cast::<libc::c_void>(),
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP,
            hole.cast::<u8>().add(shift).cast::<libc::c_void>(),
        )
    };
    (moved != libc::MAP_FAILED).then_some(retired)
}

/// Try to take an open-file-description (OFD) write lock on bytes `start..start + len` of
/// `file` without waiting: `Ok(true)` if this open of the file now holds it, `Ok(false)` if
/// another open holds a conflicting lock. The lock belongs to this open file description (not
/// to the process): it conflicts with every other open, in this process or another, and is
/// released when the last descriptor of this open is closed, which the kernel does when the
/// process dies. It is independent of `flock` locks on the same file.
pub fn try_lock_range(file: &File, start: i64, len: i64) -> io::Result<bool> {
    let lock = range(libc::F_WRLCK, start, len);
    match nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether another open of the file holds an OFD or POSIX lock that conflicts with a write
/// lock on bytes `start..start + len` (`F_OFD_GETLK`: a test that takes nothing, so it never
/// gets in the way of a process taking the lock meanwhile). Works on a read-only open.
pub fn range_locked(file: &File, start: i64, len: i64) -> io::Result<bool> {
    let mut lock = range(libc::F_WRLCK, start, len);
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut lock))?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

fn range(kind: libc::c_int, start: i64, len: i64) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: len,
        // OFD locks require 0 here.
        l_pid: 0,
    }
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Sleep until `word` may no longer hold `expected` (a `FUTEX_WAIT` on shared memory), at most
/// `timeout`. Spurious wake-ups are allowed: callers re-check their condition in a loop.
pub fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: std::time::Duration,
) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned 4-byte atomic for the duration of the call (a
    // reference); FUTEX_WAIT (without FUTEX_PRIVATE_FLAG, so it works across processes on a
    // shared mapping) only reads it, and `ts` is a valid relative timeout. The result is
    // ignored on purpose: EAGAIN (value changed), ETIMEDOUT and EINTR all mean "re-check".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wake every process waiting on `word` (`FUTEX_WAKE` on shared memory).
pub fn futex_wake_all(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: `word` is a valid, aligned 4-byte atomic (a reference); FUTEX_WAKE does not
    // access the memory, it only wakes waiters keyed on its address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let who = ProcessId {
            pid: child.id(),
            start_time: start_time(child.id()).unwrap_or(0),
        };
        // Exited but not reaped yet: a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while stat(who.pid).is_some_and(|(s, _)| s != 'Z') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!who.is_alive());
        child.wait().unwrap();
        assert!(!who.is_alive());
    }

    #[test]
    fn current_process_is_alive_and_a_reused_pid_is_not() {
        let me = ProcessId::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
        let reused = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive());
    }
}
