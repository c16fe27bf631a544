//! Thin safe wrappers around the libc calls that std lacks, for every applet: signals, users, process groups, daemonizing, temporary directories, descriptors and system figures.
//!
//! They build for Linux and OpenBSD (`make check-openbsd`); where the two
//! differ (errno's location, `prctl`), each has its own line.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// This thread's `errno`, for the two places that must save or clear it
/// (std reads it, but cannot set it).
fn errno() -> *mut libc::c_int {
    // SAFETY: each returns the calling thread's errno slot, valid for the
    // thread's life; both are async-signal-safe.
    #[cfg(target_os = "openbsd")]
    return unsafe { libc::__errno() };
    #[cfg(not(target_os = "openbsd"))]
    return unsafe { libc::__errno_location() };
}

/// The write end of the signal self-pipe, for the async-signal-safe handler.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte,
        // and the reader handles every signal kind on any byte anyway.
        unsafe {
            let saved = *errno();
            libc::write(fd, (&byte as *const u8).cast(), 1);
            *errno() = saved;
        }
    }
}

/// Routes `signals` into a non-blocking pipe and returns its read end, so an
/// event loop can wait for signals like any other input.
pub fn signal_pipe(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned these two fresh descriptors.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let old = SIGNAL_PIPE.swap(write.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(write);
    if old >= 0 {
        // SAFETY: the previous write end belonged to this module alone.
        unsafe { libc::close(old) };
    }
    for &sig in signals {
        // SAFETY: a zeroed sigaction with a plain handler is valid.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigemptyset(&mut action.sa_mask);
            check(libc::sigaction(sig, &action, std::ptr::null_mut()))?;
        }
    }
    Ok(read)
}

/// Reads the signal numbers waiting in the pipe from [`signal_pipe`].
pub fn drain_signals(fd: &OwnedFd) -> Vec<libc::c_int> {
    let mut buf = [0u8; 64];
    let mut out = Vec::new();
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend(buf[..n as usize].iter().map(|&b| libc::c_int::from(b)));
    }
    out
}

/// Sends `sig` to every process in group `pgid`.
pub fn kill_group(pgid: u32, sig: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 1 {
            // SAFETY: plain system call; a group that is gone gives ESRCH.
            unsafe { libc::kill(-pgid, sig) };
        }
    }
}

/// Adds `inc` to this process's nice value (children inherit it).
pub fn nice(inc: i32) -> io::Result<()> {
    if inc == 0 {
        return Ok(());
    }
    // SAFETY: errno must be cleared first because -1 is a valid return.
    unsafe {
        *errno() = 0;
        if libc::nice(inc) == -1 && *errno() != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: plain system calls.
    unsafe { libc::getuid() == 0 || libc::geteuid() == 0 }
}

/// A user's uid and primary gid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// Looks a user up in the system's user database, then in `/etc/passwd`
/// directly (a static glibc build may have no NSS modules to ask).
pub fn lookup_user(name: &str) -> Option<Ids> {
    let cname = CString::new(name).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage, read at once.
    unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if !pw.is_null() {
            return Some(Ids {
                uid: (*pw).pw_uid,
                gid: (*pw).pw_gid,
            });
        }
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        Some(Ids {
            uid: fields.next()?.parse().ok()?,
            gid: fields.next()?.parse().ok()?,
        })
    })
}

/// Switches to `ids` for good: groups, gid, uid, and no new privileges.
/// Fails unless root is gone afterwards.
pub fn drop_privileges(ids: Ids) -> io::Result<()> {
    // SAFETY: plain system calls with valid arguments.
    unsafe {
        let groups = [ids.gid as libc::gid_t];
        check(libc::setgroups(1, groups.as_ptr()))?;
        check(libc::setgid(ids.gid))?;
        check(libc::setuid(ids.uid))?;
        #[cfg(target_os = "linux")]
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    if is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "still root after setuid",
        ));
    }
    Ok(())
}

/// Forks into the background. Returns in the child, which leads a new
/// session with stdin, stdout and stderr on /dev/null. The parent calls
/// `parent(child_pid)` and exits with its status.
pub fn detach(parent: impl FnOnce(u32) -> i32) -> io::Result<()> {
    // SAFETY: the daemon forks before it starts any thread.
    let pid = check(unsafe { libc::fork() })?;
    if pid > 0 {
        let code = parent(pid as u32);
        // SAFETY: leave without running the child's share of destructors.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: plain system calls on fds 0..2 and a path we own.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

/// Makes this process the leader of a new process group.
pub fn new_process_group() {
    // SAFETY: plain system call.
    unsafe { libc::setpgid(0, 0) };
}

/// Creates a fresh private directory `parent/PREFIXxxxxxx` (mode 0700).
pub fn make_temp_dir(parent: &Path, prefix: &str) -> io::Result<PathBuf> {
    let mut template = parent.as_os_str().as_bytes().to_vec();
    template.extend_from_slice(b"/");
    template.extend_from_slice(prefix.as_bytes());
    template.extend_from_slice(b"XXXXXX\0");
    // SAFETY: template is NUL-terminated and writable.
    let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if made.is_null() {
        return Err(io::Error::last_os_error());
    }
    template.pop();
    Ok(PathBuf::from(OsStr::from_bytes(&template)))
}

/// A zeroed buffer of `len` bytes, and room for `spare` more, whose pages
/// forked children do not get (`MADV_DONTFORK`, Linux). A process that
/// forks a compiler per job and writes into a large buffer between forks
/// would otherwise take a copy-on-write fault (2 us in a VM) on each of its
/// pages after each fork. The children only exec: they never touch it.
/// Elsewhere, and if the advice fails, it is a plain buffer.
///
/// Only for buffers that live as long as the process and never grow past
/// their room: freed pages would keep the advice, and a later allocation
/// in them would be missing in a child between its fork and its exec.
pub fn unforked_buffer(len: usize, spare: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len + spare);
    buf.resize(len, 0);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let start = (buf.as_ptr() as usize).next_multiple_of(page);
        let end = (buf.as_ptr() as usize + buf.capacity()) / page * page;
        if end > start {
            // SAFETY: [start, end) lies within buf's allocation; the advice
            // changes only what a fork copies, never this process's view.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTFORK) };
        }
    }
    buf
}

/// Sets or clears O_NONBLOCK on a descriptor.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFL))?;
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        check(libc::fcntl(fd, libc::F_SETFL, flags))?;
    }
    Ok(())
}

/// Sets close-on-exec on a descriptor the process inherited, so that the
/// programs it runs do not inherit it in turn.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFD))?;
        check(libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC))?;
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: rlimit is plain data.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur as u64
    }
}

/// The `--jobs` values the daemon accepts and `wrap` writes: job slots.
pub const JOBS: std::ops::RangeInclusive<usize> = 1..=10_000;

/// The error for a `--jobs` value outside [`JOBS`].
pub fn jobs_out_of_range(n: usize) -> String {
    format!("--jobs: {n} is not in {}-{}", JOBS.start(), JOBS.end())
}

/// Online CPUs, as distccd counts them for its default `--jobs`.
pub fn cpu_count() -> usize {
    // SAFETY: plain system call.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let mut loads = [0f64; 3];
    // SAFETY: loads has room for three values.
    let n = unsafe { libc::getloadavg(loads.as_mut_ptr(), 3) };
    (n == 3).then_some(loads)
}

/// Free space for unprivileged users under `path`, in MiB.
pub fn free_space_mib(path: &Path) -> Option<u64> {
    let cpath = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills a plain struct.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(cpath.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64 / (1024 * 1024))
    }
}

/// The peer address of a socket, or `None` for a pipe (ssh) or any other error.
pub fn peer_address(fd: RawFd) -> Option<std::net::SocketAddr> {
    // SAFETY: the fd is borrowed only for this call; SockRef never closes it.
    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&sock).peer_addr().ok()?.as_socket()
}

/// This machine's host name, as gethostname(2) gives it.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; the name is NUL-terminated
    // when it fits, and the last byte stays 0 otherwise.
    let ret = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if ret != 0 {
        return None;
    }
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

/// True for a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Waits until `fd` is ready for `events` (`POLLIN`, `POLLOUT`), for at most
/// `timeout` in all, retrying on EINTR: `Ok(true)` when it is ready (or has
/// an error or hang-up to report), `Ok(false)` when the time ran out.
pub fn poll_one(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => return Ok(true),
            0 => {}
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// Opens a file close-on-exec in one system call: for writing, created or
/// truncated (mode 0666 less the umask, as `File::create`), or for reading.
/// std's `File::open` goes through musl's `open`, which follows each
/// close-on-exec open with an `fcntl` that no kernel since 2.6.23 needs;
/// `openat` has no such second call. The daemon opens several files a job.
pub fn open_file(path: &Path, write: bool) -> io::Result<std::fs::File> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    let flags = match write {
        true => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        false => libc::O_RDONLY,
    };
    loop {
        // SAFETY: path is NUL-terminated; the descriptor returned is ours.
        let fd = unsafe {
            libc::openat(
                libc::AT_FDCWD,
                path.as_ptr(),
                flags | libc::O_CLOEXEC,
                0o666 as libc::c_uint,
            )
        };
        match check(fd) {
            // SAFETY: a new descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { std::fs::File::from_raw_fd(fd) }),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
}

/// The first `limit` bytes of a file (all of it if shorter).
pub fn read_head(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(limit);
    std::fs::File::open(path)?
        .take(limit as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// 64-bit FNV-1a of `bytes`, as 16 hex digits: a cheap, stable name or
/// fingerprint for contents (not a defence against forgery).
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// An error's text without Rust's ` (os error N)` suffix, as C's `strerror` gives it.
pub fn strerror(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_drops_the_os_error_suffix() {
        let err = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(strerror(&err), "Permission denied");
    }

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a_hex(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn temp_dirs_are_fresh_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = crate::testing::TestDir::new("sys");
        let a = make_temp_dir(tmp.path(), "distcc-rs-test_").unwrap();
        let b = make_temp_dir(tmp.path(), "distcc-rs-test_").unwrap();
        assert_ne!(a, b);
        let mode = std::fs::metadata(&a).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir(a).unwrap();
        std::fs::remove_dir(b).unwrap();
    }

    #[test]
    fn root_user_is_found() {
        assert_eq!(lookup_user("root"), Some(Ids { uid: 0, gid: 0 }));
        assert_eq!(lookup_user("no-such-user-distcc-rs"), None);
    }

    #[test]
    fn signals_arrive_through_the_pipe() {
        let fd = signal_pipe(&[libc::SIGUSR2]).unwrap();
        // SAFETY: raising a signal we installed a handler for.
        unsafe { libc::raise(libc::SIGUSR2) };
        assert_eq!(drain_signals(&fd), vec![libc::SIGUSR2]);
    }
}
