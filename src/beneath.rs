//! Files made beneath a directory descriptor, one component at a time and never through a link: the daemon's pump job trees and the include server's mirror tree.
//!
//! A path is never handed to the kernel whole. Each directory on the way is
//! made with `mkdirat` and opened with `O_NOFOLLOW|O_DIRECTORY` from the
//! one before, and the last component is made with `O_CREAT|O_EXCL|
//! O_NOFOLLOW` or `symlinkat`, so a link planted anywhere on the way (by a
//! client, or by an earlier entry) is an error, never a way out. These are
//! POSIX calls, so the same code runs on OpenBSD.

use std::ffi::{CStr, CString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `bytes` as a C string; a NUL in them is `InvalidInput`.
pub fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn fresh(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call that returned `fd` just opened it; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory `name` in `at` (`libc::AT_FDCWD` for a path); with
/// `follow` false, a link there is an error.
pub fn open_dir(at: RawFd, name: &CStr, follow: bool) -> io::Result<OwnedFd> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | nofollow;
    // SAFETY: a plain system call with a NUL-terminated name.
    fresh(unsafe { libc::openat(at, name.as_ptr(), flags) })
}

/// Makes (with `mode`, when missing) and opens each directory of `parts`
/// in turn from `root`, never following a link. Returns the last one, or
/// `root` opened again when `parts` is empty.
pub fn make_dirs<'a>(
    root: RawFd,
    parts: impl IntoIterator<Item = &'a [u8]>,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let mut dir = open_dir(root, c".", false)?;
    for part in parts {
        let name = cstring(part)?;
        // SAFETY: `dir` is an open directory and `name` NUL-terminated.
        if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(err);
            }
        }
        dir = open_dir(dir.as_raw_fd(), &name, false)?;
    }
    Ok(dir)
}

/// Creates the file `name` in `dir`, which must not exist (nor be a link),
/// with `mode`, and writes `body`. A failed write removes it again.
pub fn write_new(dir: RawFd, name: &CStr, body: &[u8], mode: libc::mode_t) -> io::Result<()> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a plain system call with a NUL-terminated name.
    let fd = fresh(unsafe { libc::openat(dir, name.as_ptr(), flags, libc::c_uint::from(mode)) })?;
    let written = std::fs::File::from(fd).write_all(body);
    if written.is_err() {
        // SAFETY: as above; the entry was just made here.
        unsafe { libc::unlinkat(dir, name.as_ptr(), 0) };
    }
    written
}

/// Makes `name` in `dir` an empty file, unless a file is there already
/// (a link there is an error).
pub fn create_empty(dir: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a plain system call with a NUL-terminated name.
    fresh(unsafe { libc::openat(dir, name.as_ptr(), flags, libc::c_uint::from(mode)) }).map(drop)
}

/// Makes the symlink `name` in `dir` to `target`; nothing may be there.
pub fn symlink(target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: a plain system call with NUL-terminated strings.
    if unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The target of the link `name` in `dir`, if it is a link whose target
/// has at most `max` bytes.
pub fn read_link(dir: RawFd, name: &CStr, max: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; max + 1];
    // SAFETY: buf is valid for buf.len() bytes; the name is NUL-terminated.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).ok().filter(|&n| n <= max)?;
    buf.truncate(n);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDir;
    use std::os::unix::ffi::OsStrExt;

    fn root(dir: &TestDir) -> OwnedFd {
        open_dir(
            libc::AT_FDCWD,
            &cstring(dir.path.as_os_str().as_bytes()).unwrap(),
            true,
        )
        .unwrap()
    }

    #[test]
    fn entries_are_made_beneath_the_root_and_never_through_a_link() {
        let dir = TestDir::new("beneath");
        let outside = TestDir::new("beneath-outside");
        let root = root(&dir);
        let d = make_dirs(root.as_raw_fd(), [&b"a"[..], b"b"], 0o755).unwrap();
        write_new(d.as_raw_fd(), c"f", b"body", 0o644).unwrap();
        assert_eq!(std::fs::read(dir.join("a/b/f")).unwrap(), b"body");
        let again = write_new(d.as_raw_fd(), c"f", b"x", 0o644).unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::EEXIST));
        symlink(c"/nowhere", d.as_raw_fd(), c"l").unwrap();
        assert_eq!(read_link(d.as_raw_fd(), c"l", 64).unwrap(), b"/nowhere");
        assert_eq!(read_link(d.as_raw_fd(), c"l", 3), None, "longer than max");
        assert_eq!(read_link(d.as_raw_fd(), c"f", 64), None, "not a link");
        create_empty(d.as_raw_fd(), c"e", 0o600).unwrap();
        create_empty(d.as_raw_fd(), c"e", 0o600).unwrap();

        std::os::unix::fs::symlink(&outside.path, dir.join("out")).unwrap();
        let through = make_dirs(root.as_raw_fd(), [&b"out"[..], b"x"], 0o755);
        assert!(through.is_err());
        std::os::unix::fs::symlink(outside.join("t"), dir.join("a/b/to")).unwrap();
        assert!(write_new(d.as_raw_fd(), c"to", b"x", 0o644).is_err());
        assert!(create_empty(d.as_raw_fd(), c"to", 0o600).is_err());
        assert_eq!(std::fs::read_dir(&outside.path).unwrap().count(), 0);
        assert!(cstring(b"a\0b").is_err());
    }
}
