//! Host slots and backoff marks under $DISTCC_DIR/lock, shared with real distcc through fcntl record locks.
//!
//! A slot is the file `cpu_<lock name>_<slot>`, held with an exclusive
//! `fcntl(F_SETLK)` record lock on the whole file, as 3.4 takes it
//! (`src/lock.c`). `flock()` locks would not be seen by real distcc clients
//! sharing the directory, so they are never used. A backoff mark is the
//! file `backoff_<lock name>_0`, whose mtime says when the host last failed:
//! [`mark_backoff`] writes it and [`clear_backoff`] removes it (3.4's
//! `dcc_disliked_host` and `dcc_enjoyed_host`); the format is 3.4's, so
//! both clients honour each other's marks.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::hosts::{Host, HostList};

/// The highest slot number tried on any host, as in 3.4.
pub const MAX_SLOTS: u32 = 10_000;
/// The shortest sleep between rounds of a busy wait for a slot.
const MIN_PAUSE: Duration = Duration::from_millis(1);

/// The slot files this process holds. POSIX record locks belong to the
/// process, so a second lock on a held file would "succeed", and closing any
/// descriptor of that file would drop the first lock; this list makes a
/// held slot look busy to the rest of the process too, without opening it.
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One held slot: the lock file, locked, until dropped.
#[derive(Debug)]
pub struct Lock {
    fd: OwnedFd,
    path: PathBuf,
    slot: u32,
}

impl Lock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The slot number, for the monitor's state file.
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: an all-zero flock is valid; F_SETLK on our own descriptor.
        unsafe {
            let mut unlock: libc::flock = std::mem::zeroed();
            unlock.l_type = libc::F_UNLCK as libc::c_short;
            unlock.l_whence = libc::SEEK_SET as libc::c_short;
            libc::fcntl(self.fd.as_raw_fd(), libc::F_SETLK, &unlock);
        }
        // The descriptor closes after this, then the slot may be taken again.
        held().retain(|p| p != &self.path);
    }
}

/// Opens `path` with `flags | O_CLOEXEC` and mode 0666 (minus the umask).
fn open(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a lock path"))?;
    // SAFETY: cpath is NUL-terminated; the mode is passed as an int as open(2) expects.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr(),
            flags | libc::O_CLOEXEC,
            0o666 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Tries to take slot `slot` of the host whose lock name is `lock_name`,
/// without waiting: `lock_dir` is `$DISTCC_DIR/lock`. `None` if another
/// process (or this one) holds it. The file is created if missing and
/// never deleted.
pub fn try_lock(lock_dir: &Path, lock_name: &str, slot: u32) -> io::Result<Option<Lock>> {
    let path = lock_dir.join(format!("cpu_{lock_name}_{slot}"));
    let mut held = held();
    if held.contains(&path) {
        return Ok(None);
    }
    let fd = open(&path, libc::O_WRONLY | libc::O_CREAT)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // SAFETY: an all-zero flock is valid; l_start 0 and l_len 0 cover the whole file.
    let ret = unsafe {
        let mut lock: libc::flock = std::mem::zeroed();
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, &lock)
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => Ok(None),
            _ => Err(io::Error::new(
                e.kind(),
                format!("lock {}: {e}", path.display()),
            )),
        };
    }
    held.push(path.clone());
    Ok(Some(Lock { fd, path, slot }))
}

fn backoff_path(lock_dir: &Path, host: &Host) -> PathBuf {
    lock_dir.join(format!("backoff_{}_0", host.lock_name()))
}

/// Marks `host` as failed: writes `x` at offset 0 of its backoff file,
/// which sets the file's mtime to now. Does nothing when `period` is zero.
pub fn mark_backoff(lock_dir: &Path, host: &Host, period: Duration) -> io::Result<()> {
    if period.is_zero() {
        return Ok(());
    }
    let fd = open(
        &backoff_path(lock_dir, host),
        libc::O_WRONLY | libc::O_CREAT,
    )?;
    // SAFETY: writing one byte from a valid buffer to our own descriptor.
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), b"x".as_ptr().cast(), 1, 0) };
    if n != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clears `host`'s backoff mark after a success (or a local result equal
/// to its remote one). Does nothing when
/// `period` is zero.
pub fn clear_backoff(lock_dir: &Path, host: &Host, period: Duration) -> io::Result<()> {
    if period.is_zero() {
        return Ok(());
    }
    match std::fs::remove_file(backoff_path(lock_dir, host)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// True while `host` failed less than `period` ago. Never when `period` is
/// zero. A mark dated in the future (a clock step) counts as recent, as in 3.4.
pub fn is_backed_off(lock_dir: &Path, host: &Host, period: Duration) -> bool {
    if period.is_zero() {
        return false;
    }
    let Ok(mtime) = std::fs::metadata(backoff_path(lock_dir, host)).and_then(|m| m.modified())
    else {
        return false;
    };
    match SystemTime::now().duration_since(mtime) {
        Ok(age) => age < period,
        Err(_) => true,
    }
}

/// A slot taken on a host of the list.
#[derive(Debug)]
pub struct Slot {
    /// The host's index in [`HostList::hosts`].
    pub host: usize,
    /// The slot number on that host.
    pub slot: u32,
    /// The held lock; dropping it frees the slot.
    pub lock: Lock,
}

/// Why no slot could be picked.
#[derive(Debug)]
pub enum PickError {
    /// Every host is backed off, excluded or `,down`.
    NoHosts,
    /// A lock file could not be created or locked.
    Lock(io::Error),
}

impl fmt::Display for PickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PickError::NoHosts => f.write_str("no usable host: all are backed off or down"),
            PickError::Lock(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PickError {}

/// The hosts a job may go to, as (index, host): not backed off, not
/// `,down`, not in `exclude` (indices of hosts that already failed this job,
/// so that a dead host is not retried forever when backoff is off).
pub fn candidates<'l>(
    list: &'l HostList,
    lock_dir: &Path,
    period: Duration,
    exclude: &[usize],
) -> Vec<(usize, &'l Host)> {
    list.hosts
        .iter()
        .enumerate()
        .filter(|&(i, host)| {
            !host.down && !exclude.contains(&i) && !is_backed_off(lock_dir, host, period)
        })
        .collect()
}

/// Picks a host and takes one of its slots (3.4's `dcc_pick_host_from_list`).
/// Only [`candidates`] are tried. Slot 0 of every host, in list order, is
/// tried before any slot 1, and so on. When every slot is busy, sleeps
/// `pause` (at least 1 ms) and starts again, for as long as it takes.
pub fn pick(
    list: &HostList,
    lock_dir: &Path,
    period: Duration,
    pause: Duration,
    exclude: &[usize],
) -> Result<Slot, PickError> {
    let candidates = candidates(list, lock_dir, period, exclude);
    if candidates.is_empty() {
        return Err(PickError::NoHosts);
    }
    loop {
        if let Some(slot) = try_slot_major(lock_dir, &candidates)? {
            return Ok(slot);
        }
        log::debug!("every slot is busy; waiting {pause:?}");
        pause_between_rounds(pause);
    }
}

/// One round of 3.4's rule over `hosts`: slot 0 of each in order, then
/// slot 1, and so on; None when every slot is busy.
pub fn try_slot_major(
    lock_dir: &Path,
    hosts: &[(usize, &Host)],
) -> Result<Option<Slot>, PickError> {
    let names: Vec<String> = hosts.iter().map(|(_, h)| h.lock_name()).collect();
    let top = hosts
        .iter()
        .map(|(_, h)| h.limit)
        .max()
        .unwrap_or(0)
        .min(MAX_SLOTS);
    for slot in 0..top {
        for (&(i, host), name) in hosts.iter().zip(&names) {
            if slot >= host.limit {
                continue;
            }
            if let Some(lock) = try_lock(lock_dir, name, slot).map_err(PickError::Lock)? {
                return Ok(Some(Slot {
                    host: i,
                    slot,
                    lock,
                }));
            }
        }
    }
    Ok(None)
}

/// The sleep between two rounds when every slot is busy: `pause`, at least 1 ms.
pub fn pause_between_rounds(pause: Duration) {
    std::thread::sleep(pause.max(MIN_PAUSE));
}

/// How many of the slots below `limit` of the host named `lock_name` are
/// held, by this process or another, without taking any.
pub fn busy_slots(lock_dir: &Path, lock_name: &str, limit: u32) -> u32 {
    let mut busy = 0;
    for slot in 0..limit.min(MAX_SLOTS) {
        let path = lock_dir.join(format!("cpu_{lock_name}_{slot}"));
        if held().contains(&path) || locked_by_another(&path) {
            busy += 1;
        }
    }
    busy
}

/// True if another process holds a lock on `path` (`F_GETLK`); a missing
/// file is a free slot.
fn locked_by_another(path: &Path) -> bool {
    let Ok(fd) = open(path, libc::O_RDONLY) else {
        return false;
    };
    // SAFETY: an all-zero flock is valid; F_GETLK fills it in on our own descriptor.
    unsafe {
        let mut probe: libc::flock = std::mem::zeroed();
        probe.l_type = libc::F_WRLCK as libc::c_short;
        probe.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(fd.as_raw_fd(), libc::F_GETLK, &mut probe) == 0
            && probe.l_type != libc::F_UNLCK as libc::c_short
    }
}

/// Takes a local slot, `cpu_localhost_N` with N below `limit` (at least 1),
/// waiting as [`pick`] does. Local-only jobs pass `--localslots`; the
/// `localhost` host and preprocessing ([`local_cpp_slot`]) share the same
/// files, so all local work counts against one pool.
pub fn local_slot(lock_dir: &Path, limit: u32, pause: Duration) -> io::Result<Lock> {
    wait_for_local(lock_dir, limit, pause, pause)
}

/// How soon a preprocessor that found every local-cpp slot busy looks
/// again, at first; the wait then doubles up to the pause. A preprocessor
/// holds its slot for tens of milliseconds, so 3.4's whole pause (1 s)
/// left the CPUs idle at the start of every build with more jobs than
/// `--localslots_cpp`.
pub const CPP_FIRST_WAIT: Duration = Duration::from_millis(5);

/// [`local_slot`] for preprocessing or the include server's scan, below
/// `--localslots_cpp`: looks again after [`CPP_FIRST_WAIT`], doubling up
/// to `pause`.
pub fn local_cpp_slot(lock_dir: &Path, limit: u32, pause: Duration) -> io::Result<Lock> {
    wait_for_local(lock_dir, limit, CPP_FIRST_WAIT.min(pause), pause)
}

fn wait_for_local(
    lock_dir: &Path,
    limit: u32,
    first: Duration,
    pause: Duration,
) -> io::Result<Lock> {
    let mut wait = first;
    loop {
        for slot in 0..limit.clamp(1, MAX_SLOTS) {
            if let Some(lock) = try_lock(lock_dir, "localhost", slot)? {
                return Ok(lock);
            }
        }
        std::thread::sleep(wait.max(MIN_PAUSE));
        wait = (wait * 2).min(pause).max(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::hosts::parse;
    use crate::testing::TestDir;
    use std::time::Instant;

    // The locks against another process's (python3's lockf) are tested in
    // tests/lock.rs.

    #[test]
    fn a_missing_lock_directory_is_an_error() {
        let tmp = TestDir::new("lock");
        let err = try_lock(&tmp.path().join("nope"), "localhost", 0).unwrap_err();
        assert!(err.to_string().contains("nope/cpu_localhost_0"), "{err}");
    }

    #[test]
    fn backoff_marks() {
        let tmp = TestDir::new("lock");
        let list = parse("h:4000 @s").unwrap();
        let (tcp, ssh) = (&list.hosts[0], &list.hosts[1]);
        let minute = Duration::from_secs(60);
        let mark = tmp.path().join("backoff_tcp_h_4000_0");

        assert!(!is_backed_off(tmp.path(), tcp, minute));
        mark_backoff(tmp.path(), tcp, Duration::ZERO).unwrap();
        assert!(!mark.exists(), "a zero period writes no mark");

        mark_backoff(tmp.path(), tcp, minute).unwrap();
        mark_backoff(tmp.path(), tcp, minute).unwrap();
        assert_eq!(std::fs::read(&mark).unwrap(), b"x");
        assert!(is_backed_off(tmp.path(), tcp, minute));
        assert!(!is_backed_off(tmp.path(), tcp, Duration::ZERO));
        assert!(!is_backed_off(tmp.path(), ssh, minute));

        let old = SystemTime::now() - Duration::from_secs(61);
        std::fs::File::options()
            .write(true)
            .open(&mark)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(!is_backed_off(tmp.path(), tcp, minute));
        assert!(is_backed_off(tmp.path(), tcp, Duration::from_secs(120)));

        clear_backoff(tmp.path(), tcp, Duration::ZERO).unwrap();
        assert!(mark.exists(), "a zero period leaves marks alone");
        clear_backoff(tmp.path(), tcp, minute).unwrap();
        assert!(!mark.exists());
        clear_backoff(tmp.path(), tcp, minute).unwrap();

        mark_backoff(tmp.path(), ssh, minute).unwrap();
        assert!(tmp.path().join("backoff_ssh_s_0").exists());
    }

    #[test]
    fn slot_zero_of_every_host_comes_first() {
        let tmp = TestDir::new("lock");
        let list = parse("a/2 b/1 c/3").unwrap();
        let mut held = Vec::new();
        let mut order = Vec::new();
        for _ in 0..6 {
            let slot = pick(&list, tmp.path(), Duration::ZERO, Duration::ZERO, &[]).unwrap();
            order.push((list.hosts[slot.host].hostname.clone(), slot.slot));
            assert_eq!(slot.lock.slot(), slot.slot);
            held.push(slot);
        }
        let want = [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("c", 1), ("c", 2)];
        let want: Vec<(String, u32)> = want.iter().map(|&(h, s)| (h.to_string(), s)).collect();
        assert_eq!(order, want);

        // All busy: the picker waits until a slot is freed.
        let freed = held.remove(4); // c, slot 1
        let releaser = std::thread::spawn(move || {
            // Not a wait for anything: the slot is freed a moment later,
            // so that pick is (most likely) already waiting for one.
            std::thread::sleep(Duration::from_millis(50));
            drop(freed);
        });
        let slot = pick(&list, tmp.path(), Duration::ZERO, Duration::ZERO, &[]).unwrap();
        assert_eq!((slot.host, slot.slot), (2, 1));
        releaser.join().unwrap();
    }

    #[test]
    fn backed_off_excluded_and_down_hosts_are_passed_over() {
        let tmp = TestDir::new("lock");
        let list = parse("a b c,down d").unwrap();
        let minute = Duration::from_secs(60);
        mark_backoff(tmp.path(), &list.hosts[0], minute).unwrap();
        let slot = pick(&list, tmp.path(), minute, Duration::ZERO, &[1]).unwrap();
        assert_eq!((slot.host, slot.slot), (3, 0));
        // With backoff off, the mark is not looked at.
        let a = pick(&list, tmp.path(), Duration::ZERO, Duration::ZERO, &[]).unwrap();
        assert_eq!(a.host, 0);
        assert!(matches!(
            pick(&list, tmp.path(), minute, Duration::ZERO, &[1, 3]),
            Err(PickError::NoHosts)
        ));
        assert!(matches!(
            pick(
                &list,
                tmp.path(),
                Duration::ZERO,
                Duration::ZERO,
                &[0, 1, 3]
            ),
            Err(PickError::NoHosts)
        ));
    }

    #[test]
    fn a_preprocessor_takes_a_freed_slot_long_before_the_pause() {
        let tmp = TestDir::new("lock");
        let held = local_slot(tmp.path(), 1, Duration::ZERO).unwrap();
        let pause = Duration::from_secs(30);
        let dir = tmp.path().to_path_buf();
        let began = Instant::now();
        let waiter = std::thread::spawn(move || {
            let lock = local_cpp_slot(&dir, 1, pause).unwrap();
            (lock.slot(), began.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        let (slot, waited) = waiter.join().unwrap();
        assert_eq!(slot, 0);
        // 3.4 would look again only after the whole pause; a local compile
        // (local_slot) still does.
        assert!(waited < pause / 2, "waited {waited:?}");
    }

    #[test]
    fn busy_slots_counts_held_slots_without_taking_any() {
        let tmp = TestDir::new("lock");
        assert_eq!(busy_slots(tmp.path(), "localhost", 4), 0);
        let cpp = local_slot(tmp.path(), 8, Duration::ZERO).unwrap();
        let list = parse("localhost/3").unwrap();
        let job = pick(&list, tmp.path(), Duration::ZERO, Duration::ZERO, &[]).unwrap();
        assert_eq!(busy_slots(tmp.path(), "localhost", 3), 2);
        assert_eq!(busy_slots(tmp.path(), "localhost", 1), 1);
        drop(cpp);
        assert_eq!(busy_slots(tmp.path(), "localhost", 3), 1);
        // Counting took nothing: slot 0 is free for the next job.
        let next = pick(&list, tmp.path(), Duration::ZERO, Duration::ZERO, &[]).unwrap();
        assert_eq!((job.slot, next.slot), (1, 0));
    }

    #[test]
    fn local_slots_share_the_localhost_files() {
        let tmp = TestDir::new("lock");
        let list = parse("localhost/2 remote").unwrap();
        let host = pick(&list, tmp.path(), Duration::ZERO, Duration::ZERO, &[]).unwrap();
        assert_eq!((host.host, host.slot), (0, 0));
        let cpp = local_slot(tmp.path(), 8, Duration::ZERO).unwrap();
        assert_eq!(cpp.slot(), 1);
        assert_eq!(cpp.path(), tmp.path().join("cpu_localhost_1"));
        // localhost's two slots are now taken, so the next job goes remote.
        let next = pick(&list, tmp.path(), Duration::ZERO, Duration::ZERO, &[]).unwrap();
        assert_eq!((next.host, next.slot), (1, 0));
        // A limit of 0 still means one slot, which waits for slot 0.
        drop(host);
        assert_eq!(local_slot(tmp.path(), 0, Duration::ZERO).unwrap().slot(), 0);
    }
}
