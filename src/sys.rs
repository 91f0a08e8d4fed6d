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

/// The page-table granules a move of a mapping works in: a move between addresses at the same
/// offset within one moves whole page tables (512 pages at a time, PMD) or whole tables of
/// them (512 × 512 pages, PUD) instead of entries.
const PMD_SIZE: usize = 2 << 20;
const PUD_SIZE: usize = 1 << 30;

/// From this size on, a [`WritableMapping`] is placed and sized in PUD units: its page tables
/// then move in one step per GiB rather than per 2 MiB (512 steps per GiB), at the price of
/// address space (never memory) up to the next GiB.
const PUD_FROM: usize = 16 * PMD_SIZE;

/// Unmapping drops a range's pages in steps of this size, so that on a kernel whose
/// `MADV_DONTNEED` takes the address space's lock, another thread of the process that maps or
/// unmaps meanwhile waits for one step at most, not for a whole GiB.
const UNMAP_STEP: usize = PMD_SIZE;

/// `n` rounded up to a multiple of the power of two `to`, if that fits.
fn round_up(n: usize, to: usize) -> Option<usize> {
    Some(n.checked_add(to - 1)? & !(to - 1))
}

/// Reserve `len` bytes of inaccessible address space (no memory) at an address the kernel
/// chooses.
fn reserve_address_space(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous mapping at an address the kernel chooses (no MAP_FIXED) replaces
    // nothing.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(at.cast())
}

/// Unmap `addr..addr + len`: first its pages are dropped in steps of [`UNMAP_STEP`] (see
/// there) with `MADV_DONTNEED`, which recent kernels (6.18 here) do under the lock of that one
/// mapping rather than the process's address-space lock, then the emptied range goes in one
/// `munmap` (no pages left to tear down: it holds the address-space lock only briefly). The
/// unmapping thread runs at idle priority ([`yield_to_others`]); preempted in a step, it then
/// holds up no other thread's `mmap`/`munmap` (`bench/unmap_inversion.py`).
///
/// # Safety
/// The range is this process's own, referenced by nothing any more.
unsafe fn unmap(addr: *mut u8, len: usize) {
    let mut done = 0;
    while done < len {
        let step = UNMAP_STEP.min(len - done);
        // SAFETY: a part of the caller's range, still mapped and referenced by nothing: its
        // pages are dropped (a later access would read zeros or the file; there is none).
        unsafe { libc::madvise(addr.add(done).cast(), step, libc::MADV_DONTNEED) };
        done += step;
    }
    // SAFETY: the caller's range, still mapped (madvise does not unmap), referenced by nothing.
    unsafe { libc::munmap(addr.cast(), len) };
}

/// How many places [`WritableMapping::new`] tries while other threads map into each one first.
const PLACE_ATTEMPTS: usize = 8;

/// Map `len` bytes (`prot`, `flags`, descriptor `fd` at offset 0, or anonymous for `-1`) at
/// exactly `addr`, only if nothing is mapped anywhere in `addr..addr + len`
/// (`MAP_FIXED_NOREPLACE`: it never replaces a mapping, so it cannot take another thread's
/// range). `Ok(false)` if something is mapped there; a kernel before 4.17 takes the flag as a
/// hint, and a mapping it placed elsewhere is undone (`Ok(false)` too).
fn map_exactly(
    addr: *mut u8,
    len: usize,
    prot: libc::c_int,
    flags: libc::c_int,
    fd: libc::c_int,
) -> io::Result<bool> {
    // SAFETY: MAP_FIXED_NOREPLACE fails (EEXIST) rather than replace anything mapped in the
    // range, so the call can only create a new mapping in unmapped address space.
    let at = unsafe {
        libc::mmap(
            addr.cast(),
            len,
            prot,
            flags | libc::MAP_FIXED_NOREPLACE,
            fd,
            0,
        )
    };
    if at == libc::MAP_FAILED {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EEXIST) => Ok(false),
            _ => Err(err),
        };
    }
    if at.cast::<u8>() != addr {
        // SAFETY: `at` is the mapping just made (the hint not taken), referenced by nothing.
        unsafe { libc::munmap(at, len) };
        return Ok(false);
    }
    Ok(true)
}

/// After a `MAP_FIXED` or `MREMAP_FIXED` onto `addr..addr + len`, a range of ours, failed: the
/// kernel may have unmapped all of it before failing (`mremap` unmaps its destination first;
/// `mmap` did so before 6.12, in parts), and another thread may have mapped into the hole
/// since. Map the range again as `prot`/`flags`/`fd` ([`map_exactly`]) if it is wholly
/// unmapped: `true` if it is then ours again; `false` if anything is mapped in it, ours
/// untouched or another thread's: which, no call can tell, so the caller must never unmap
/// it.
fn refill(
    addr: *mut u8,
    len: usize,
    prot: libc::c_int,
    flags: libc::c_int,
    fd: libc::c_int,
) -> bool {
    map_exactly(addr, len, prot, flags, fd).unwrap_or(false)
}

/// The flags of an inaccessible anonymous reservation of address space.
const RESERVATION: libc::c_int = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;

/// Unmap `addr..addr + len` in one call: for a range whose pages were never accessible or
/// accessed (a reservation, a mapping's padding past the file), so there are no pages to tear
/// down and no other thread waits long behind it. Nothing for `len` 0.
///
/// # Safety
/// As [`unmap`].
unsafe fn unmap_untouched(addr: *mut u8, len: usize) {
    if len > 0 {
        // SAFETY: the caller's own range, referenced by nothing.
        unsafe { libc::munmap(addr.cast(), len) };
    }
}

/// A shared read-write mapping of a file's first `len` bytes, placed so that its page tables
/// can be moved away in a few steps ([`make_private`](Self::make_private)): it starts on a
/// PMD (2 MiB) boundary, or a PUD (1 GiB) one from [`PUD_FROM`] bytes on, and covers whole
/// granules (the part past `len`, past the end of the file, is never accessed: only the first
/// `len` bytes are handed out). Unmapped when dropped.
#[derive(Debug)]
pub struct WritableMapping {
    addr: *mut u8,
    len: usize,
    /// The bytes mapped from `addr`: `len` rounded up to the granule.
    mapped: usize,
    granule: usize,
    /// Whether [`make_private`](Self::make_private) replaced the shared mapping.
    private: std::sync::atomic::AtomicBool,
    /// The bytes from `addr` provably still this value's own, unmapped when it drops: all of
    /// `mapped`, unless a failed replacement in [`make_private`](Self::make_private) may have
    /// left a hole that another thread's mapping could fill (see [`refill`]); the rest then
    /// stays mapped for the life of the process (address space, never someone else's range).
    owned: std::sync::atomic::AtomicUsize,
}

// SAFETY: the mapping is plain memory owned by this value until it drops; it moves no data
// between threads by itself, and concurrent access to the bytes is the users' contract (as
// with any shared file mapping: see `WritableSegment`).
unsafe impl Send for WritableMapping {}
// SAFETY: as for `Send`; `make_private` replaces the mapping atomically (no thread ever sees
// a hole) and its flag is an atomic.
unsafe impl Sync for WritableMapping {}

impl WritableMapping {
    /// Map `file`'s first `len` bytes read-write and shared (`file` must be open read-write
    /// and at least `len` bytes long, and stay so while mapped).
    ///
    /// Placed without `MAP_FIXED`: address space is reserved to find an aligned range, freed,
    /// and the file mapped there with `MAP_FIXED_NOREPLACE`, which never replaces a mapping
    /// (another thread that maps into the range meanwhile makes it fail, and a new place is
    /// tried). A failed `MAP_FIXED` over a reservation could have dropped part of it first
    /// (kernels before 6.12), and unmapping the reservation then would unmap whatever another
    /// thread had mapped into the hole. After [`PLACE_ATTEMPTS`] places taken by other
    /// threads first, the file is mapped where the kernel chooses (unaligned: only
    /// `make_private` gets slower). On failure nothing of this call stays mapped.
    pub fn new(file: &File, len: usize) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let too_large = || io::Error::from(io::ErrorKind::FileTooLarge);
        let granule = if len >= PUD_FROM { PUD_SIZE } else { PMD_SIZE };
        let mapped = round_up(len.max(1), granule).ok_or_else(too_large)?;
        let reserved = mapped.checked_add(granule).ok_or_else(too_large)?;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let placed = |addr| Self {
            addr,
            len,
            mapped,
            granule,
            private: false.into(),
            owned: mapped.into(),
        };
        for _ in 0..PLACE_ATTEMPTS {
            let start = reserve_address_space(reserved)?;
            let addr = start.wrapping_add((start as usize).wrapping_neg() % granule);
            // SAFETY: the reservation just made: this function's own, referenced by nothing,
            // never accessible (PROT_NONE), so without pages.
            unsafe { unmap_untouched(start, reserved) };
            if map_exactly(addr, mapped, prot, libc::MAP_SHARED, file.as_raw_fd())? {
                return Ok(placed(addr));
            }
        }
        // Other threads kept mapping into each freed place first (the kernel hands the highest
        // free range to the next mmap of any thread): map where the kernel chooses. Correct at
        // any address; `make_private` then moves page-table entries rather than whole tables.
        // SAFETY: no MAP_FIXED: the kernel picks unmapped address space and replaces nothing.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(placed(at.cast()))
    }

    /// The first byte.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.addr
    }

    /// The bytes of the file mapped (and the only ones pointers may be made into).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Drop the whole pages inside `offset..offset + len` (bytes from the first) from this
    /// process's page tables (`MADV_DONTNEED`) while the mapping is shared: the values stay in
    /// the file, and a later access faults the same pages in again. A private mapping (whose
    /// written pages exist nowhere else) is left alone, as is the range on failure.
    pub fn release(&self, offset: usize, len: usize) {
        if self.private.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let page = page_size();
        let first = offset.next_multiple_of(page);
        let end = offset.saturating_add(len).min(self.len) / page * page;
        if end > first {
            // SAFETY: `first..end` lies inside this value's live mapping (`end <= len`), which
            // is shared (checked above; `make_private` runs only in `Allocation::publish`,
            // which consumes the allocation, so never during a `map` of it): MADV_DONTNEED only
            // removes page-table entries, no byte of the file changes and every pointer into
            // the range stays valid.
            unsafe {
                libc::madvise(
                    self.addr.add(first).cast(),
                    end - first,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }

    /// Replace the shared mapping with a *private* copy-on-write mapping of the same file at
    /// the same address (`file` is the file mapped): the bytes read the same, but writes
    /// through any pointer into the range stop reaching the file. Done once; later calls do
    /// nothing.
    ///
    /// The new mapping is made elsewhere and moved over the old one by `mremap`, which replaces
    /// it atomically (a thread writing meanwhile writes into one or the other, never into a
    /// hole). Unmapping the old mapping's pages would take time proportional to them (about
    /// 20 ms per GiB), so first its page tables are moved away in a few steps (one per granule,
    /// `MREMAP_DONTUNMAP`: the old mapping stays, emptied, and would fault its pages in again
    /// from the file); the moved copy is returned, to be dropped when convenient. On a kernel
    /// without `MREMAP_DONTUNMAP` for shared mappings (before 5.13) the replacement unmaps the
    /// pages itself and `None` is returned. On failure the shared mapping stays (its bytes
    /// unchanged).
    pub fn make_private(&self, file: &File) -> io::Result<Option<Retired>> {
        use std::os::fd::AsRawFd;
        use std::sync::atomic::Ordering;
        if self.private.load(Ordering::Acquire) {
            return Ok(None);
        }
        // SAFETY: a fresh mapping at an address the kernel chooses (no MAP_FIXED) replaces
        // nothing; `file` is an open descriptor. Only the file's `len` bytes: what is not
        // written stays shared with the page cache, and the written pages are charged to this
        // process's commit (not the granules' padding).
        let fresh = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if fresh == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let retired = self.move_pages_away();
        // The padding past the file's end, which the fresh mapping does not cover: made an
        // inaccessible anonymous reservation (no file, no page tables to move), so that nothing
        // of the file stays mapped shared.
        let fresh_end = round_up(self.len, page_size()).unwrap_or(self.mapped);
        let padding = self.addr.wrapping_add(fresh_end);
        let padding_len = self.mapped - fresh_end;
        // SAFETY: `padding..addr + mapped` is the end of this value's own mapping, past the
        // file's end, where no pointer was handed out; MAP_FIXED replaces only that (on failure
        // `refill` below finds out what is still ours).
        let padded = padding_len == 0
            || unsafe {
                libc::mmap(
                    padding.cast(),
                    padding_len,
                    libc::PROT_NONE,
                    RESERVATION | libc::MAP_FIXED,
                    -1,
                    0,
                )
            } != libc::MAP_FAILED;
        if !padded {
            let err = io::Error::last_os_error();
            if !refill(padding, padding_len, libc::PROT_NONE, RESERVATION, -1) {
                self.owned.store(fresh_end, Ordering::Release);
            }
            // SAFETY: `fresh` is still our own mapping of `len` bytes, referenced by nothing.
            unsafe { libc::munmap(fresh, self.len) };
            return Err(err);
        }
        // SAFETY: `fresh` is the mapping just made, of `len` bytes; MREMAP_FIXED moves it onto
        // `addr..addr + len`, this value's own mapping (so only it is replaced, and every
        // pointer into it stays valid).
        let moved = unsafe {
            libc::mremap(
                fresh,
                self.len,
                self.len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                self.addr.cast::<libc::c_void>(),
            )
        } != libc::MAP_FAILED;
        if !moved {
            let err = io::Error::last_os_error();
            // mremap unmaps its destination before it can fail for want of kernel memory: map
            // the file there again, shared (its bytes are the file's: nothing was private yet).
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            if !refill(
                self.addr,
                fresh_end,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
            ) {
                self.owned.store(0, Ordering::Release);
            }
            // SAFETY: a failed mremap leaves its source as it was: `fresh` is still our own
            // mapping of `len` bytes, referenced by nothing.
            unsafe { libc::munmap(fresh, self.len) };
            return Err(err);
        }
        self.private.store(true, Ordering::Release);
        Ok(retired)
    }

    /// Move the page tables of the (shared) mapping to a range of their own, leaving the
    /// mapping in place but empty (`MREMAP_DONTUNMAP`); `None` if the kernel cannot.
    fn move_pages_away(&self) -> Option<Retired> {
        use std::sync::atomic::Ordering;
        if DONTUNMAP_REFUSED.load(Ordering::Relaxed) {
            return None;
        }
        let reserved = self.mapped.checked_add(self.granule)?;
        let hole = reserve_address_space(reserved).ok()?;
        // The first granule boundary in the reservation: the same offset within a granule as
        // `addr`, so that whole page tables move.
        let to = hole.wrapping_add((hole as usize).wrapping_neg() % self.granule);
        // SAFETY: `to..to + mapped` lies inside the reservation (`to - hole < granule`), which
        // is this function's own: MREMAP_FIXED replaces only that. The source is this value's
        // own mapping of `mapped` bytes; MREMAP_DONTUNMAP leaves it mapped (shared mappings then
        // fault their pages in again from the file), so no pointer into it dangles.
        let moved = unsafe {
            libc::mremap(
                self.addr.cast(),
                self.mapped,
                self.mapped,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP,
                to.cast::<libc::c_void>(),
            )
        } != libc::MAP_FAILED;
        let end = to.wrapping_add(self.mapped);
        let after = hole as usize + reserved - end as usize;
        if !moved && !refill(to, self.mapped, libc::PROT_NONE, RESERVATION, -1) {
            // The destination may be a hole another thread mapped into since, or still ours (a
            // kernel that refused before unmapping it: before 5.7, which refuses every time;
            // it is not asked again). Only the parts around it are provably ours.
            DONTUNMAP_REFUSED.store(true, Ordering::Relaxed);
            // SAFETY: the parts of the reservation that no mremap touched: ours, unused, never
            // accessible (PROT_NONE), so without pages.
            unsafe {
                unmap_untouched(hole, to as usize - hole as usize);
                unmap_untouched(end, after);
            }
            return None;
        }
        // The retired range owns the whole reservation from here on (dropping it unmaps it).
        let retired = Retired {
            addr: hole,
            len: reserved,
        };
        moved.then_some(retired)
    }
}

/// A kernel refused `MREMAP_DONTUNMAP` for a shared mapping and left its destination in a
/// state no call can prove (see [`WritableMapping::move_pages_away`]): not tried again.
static DONTUNMAP_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Drop for WritableMapping {
    fn drop(&mut self) {
        let owned = *self.owned.get_mut();
        // Pages exist only in the file's bytes (pointers are handed out into the first `len`
        // bytes only): the padding after them goes in one call.
        let used = round_up(self.len, page_size()).map_or(owned, |u| u.min(owned));
        // SAFETY: `addr..addr + owned` is this value's own mapping (the file's, or after
        // `make_private` the private one and the padding's reservation; `owned` excludes any
        // part a failed replacement may have lost), split at `used <= owned`; it is dropped, so
        // no pointer into it is used any more (holders of pointers keep the value alive), and
        // nothing accessed the part past `used`.
        unsafe {
            unmap(self.addr, used);
            unmap_untouched(self.addr.wrapping_add(used), owned - used);
        }
    }
}

/// The size of a memory page.
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system; it has no memory effects.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// An address range this process mapped and nothing references any more: unmapped when
/// dropped, on whichever thread drops it (unmapping costs time proportional to the pages
/// mapped: [`WritableMapping::make_private`] hands this out so that its caller need not wait
/// for it).
#[derive(Debug)]
pub struct Retired {
    addr: *mut u8,
    len: usize,
}

// SAFETY: `Retired` owns its address range alone (no pointer into it was handed out: see
// `move_pages_away`); unmapping it from another thread touches no memory anyone uses.
unsafe impl Send for Retired {}

impl Drop for Retired {
    fn drop(&mut self) {
        // SAFETY: `addr..addr + len` is a reservation `move_pages_away` made and gave to this
        // value alone (with the moved-away shared mapping inside it); nothing references it.
        unsafe { unmap(self.addr, self.len) };
    }
}

/// Give the calling thread the lowest scheduling class (`SCHED_IDLE`): it runs on a CPU that
/// nothing else wants, and any other thread that wakes up takes the CPU from it at once. For
/// work nobody waits for (unmapping a published allocation's pages): on a busy machine it
/// would otherwise take a core from the reader of the very table just published. A kernel
/// that refuses leaves the thread as it was.
pub fn yield_to_others() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call's duration; pid 0 is the calling
    // thread, whose policy alone changes (no memory effects).
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
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

/// Take an OFD lock on bytes `start..start + len` of `file` (`len` 0: to the end of the lock
/// space), a write lock or a read lock, waiting while another open holds a conflicting one.
/// Held by this open file description, as [`try_lock_range`]'s.
pub fn lock_range(file: &File, write: bool, start: i64, len: i64) -> io::Result<()> {
    let kind = if write { libc::F_WRLCK } else { libc::F_RDLCK };
    let lock = range(kind, start, len);
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_SETLKW(&lock))?;
    Ok(())
}

/// Release this open's OFD locks on bytes `start..start + len` of `file` (`len` 0: to the end).
pub fn unlock_range(file: &File, start: i64, len: i64) -> io::Result<()> {
    let lock = range(libc::F_UNLCK, start, len);
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_SETLK(&lock))?;
    Ok(())
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

/// The forks this process is removed from the process that started it by: 0 in that
/// process, incremented in a forked child (a `pthread_atfork` handler, installed with the
/// first [`ParentOnly`]). A handle that must act for one process only records it and compares.
pub fn fork_generation() -> u64 {
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The descriptors of every live [`ParentOnly`] (-1: a free place). A fixed array of atomics:
/// the fork handler may neither allocate nor lock.
static PARENT_ONLY: [std::sync::atomic::AtomicI32; 256] =
    [const { std::sync::atomic::AtomicI32::new(-1) }; 256];

/// An open file that a forked child does not keep: in the child its descriptor then refers to
/// `/dev/null` instead (so the child holds nothing of the open, an OFD lock in particular,
/// however long it lives), and the file's owner finds it is no longer the process that opened
/// it through [`fork_generation`]. At most 256 at a time in a process: past that a file is
/// kept as before, and a forked child keeps it too.
#[derive(Debug)]
pub struct ParentOnly {
    /// Kept open (closed after `drop` took it out of the list).
    _file: File,
    slot: Option<usize>,
}

impl ParentOnly {
    /// Register `file`.
    pub fn new(file: File) -> Self {
        use std::os::fd::AsRawFd;
        use std::sync::atomic::Ordering::SeqCst;
        static INSTALL: std::sync::Once = std::sync::Once::new();
        // SAFETY: `in_child` is an `extern "C" fn()` that only makes async-signal-safe calls
        // (open, dup3, close) and atomic operations: what a handler in a forked child of a
        // multithreaded process may do.
        INSTALL.call_once(|| unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        });
        let fd = file.as_raw_fd();
        let slot = PARENT_ONLY
            .iter()
            .position(|s| s.compare_exchange(-1, fd, SeqCst, SeqCst).is_ok());
        Self { _file: file, slot }
    }
}

impl Drop for ParentOnly {
    fn drop(&mut self) {
        // Out of the list before the descriptor closes (when `file` drops after this): the
        // number may be reused at once, and a fork handler must never replace another file.
        if let Some(slot) = self.slot {
            PARENT_ONLY[slot].store(-1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// The `pthread_atfork` child handler: count the fork, and point every [`ParentOnly`]
/// descriptor at `/dev/null`.
extern "C" fn in_child() {
    use std::sync::atomic::Ordering::SeqCst;
    FORKS.fetch_add(1, SeqCst);
    // SAFETY: a NUL-terminated path; open, dup3 and close are async-signal-safe and touch no
    // memory of ours. dup3 replaces exactly the registered descriptors, which are open (a
    // descriptor leaves the list before it is closed), in the child alone.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            return;
        }
        for slot in &PARENT_ONLY {
            let fd = slot.load(SeqCst);
            if fd >= 0 {
                libc::dup3(null, fd, libc::O_CLOEXEC);
            }
        }
        libc::close(null);
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
    fn writable_mapping_is_placed_for_page_table_moves_and_made_private_once() {
        for (len, granule) in [(3 * 4096 + 5, PMD_SIZE), (PUD_FROM, PUD_SIZE)] {
            let path = std::env::temp_dir()
                .join(format!("shmarrow-sys-test-{}-{len}", std::process::id()));
            let file = create_exclusive(&path, 0o600).unwrap();
            std::fs::remove_file(&path).unwrap();
            file.set_len(len as u64).unwrap();
            let map = WritableMapping::new(&file, len).unwrap();
            assert_eq!(map.as_mut_ptr() as usize % granule, 0);
            assert_eq!(map.len(), len);
            // SAFETY: the first `len` bytes are the file's, mapped read-write; no reference
            // to them exists elsewhere.
            let bytes = unsafe { std::slice::from_raw_parts_mut(map.as_mut_ptr(), len) };
            bytes.fill(7);
            map.make_private(&file).unwrap();
            bytes[len - 1] = 9; // private now: not in the file
            assert!(map.make_private(&file).unwrap().is_none(), "once");
            assert_eq!(bytes[len - 1], 9, "a second call keeps the private writes");
            let mut tail = [0u8; 2];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut tail, len as u64 - 2).unwrap();
            assert_eq!(tail, [7, 7]);
        }
    }

    #[test]
    fn a_placed_mapping_never_replaces_another_and_a_failed_one_leaves_none() {
        let page = page_size();
        let at = reserve_address_space(4 * page).unwrap();
        for offset in [0, page, 3 * page] {
            let inside = at.wrapping_add(offset);
            assert!(!map_exactly(inside, page, libc::PROT_READ, RESERVATION, -1).unwrap());
            assert!(!refill(inside, 2 * page, libc::PROT_NONE, RESERVATION, -1));
        }
        // SAFETY: the reservation made above, still whole (nothing replaced it), unused.
        unsafe { unmap(at, 4 * page) };
        // A file open read-only cannot be mapped read-write: an error, and nothing mapped
        // (the address space is given back: a thousand failures use none of it).
        let path = std::env::temp_dir().join(format!("shmarrow-sys-ro-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 3 * PMD_SIZE]).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let before = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count();
        for _ in 0..1000 {
            let err = WritableMapping::new(&file, 3 * PMD_SIZE).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EACCES));
        }
        let after = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count();
        assert!(
            after < before + 100,
            "{before} mappings before, {after} after"
        );
    }

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
