//! Test support shared by the unit tests and the integration tests: a
//! private temporary directory per test, a bounded poll, and fake programs
//! and PATHs.
//!
//! It is no part of the library: lib.rs declares it only under
//! `#[cfg(test)]`, and `tests/common` compiles this same file into the
//! integration tests with `#[path]`. So it uses nothing from the crate.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A fresh directory for one test, `$TMPDIR/distcc-rs-test-NAME-PID-N`,
/// removed with everything in it when dropped.
///
/// It is readable by everyone (mode 0755): a daemon under test may drop
/// from root to `nobody`. [`TestDir::shared_dir`] makes a sticky, world
/// writable place inside it for that daemon's own files.
pub struct TestDir {
    /// The directory (the same as [`TestDir::path`]).
    pub path: PathBuf,
}

impl TestDir {
    /// Makes a new directory whose name starts with `name`; never one that
    /// exists already (a leftover of an earlier run, or another test's).
    pub fn new(name: &str) -> TestDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let parent = std::env::temp_dir();
        for _ in 0..1000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("distcc-rs-test-{name}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .unwrap();
                    return TestDir { path };
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot make a test directory in {}: {e}", parent.display()),
            }
        }
        panic!(
            "no free test directory name for {name} in {}",
            parent.display()
        );
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` inside the directory.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Writes a file (making parents) and returns its path.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// Writes an executable shell script.
    pub fn script(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.write(rel, format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// Makes a directory anyone may write to (sticky, like /tmp).
    pub fn shared_dir(&self, rel: &str) -> PathBuf {
        let p = self.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o1777)).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `condition` until it holds or `limit` has passed, and returns
/// whether it held: the one way tests wait for something another process
/// or thread does. The caller asserts on the result with its own message
/// (often a log), or goes on to count what it sees.
#[must_use]
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// A fake program: a shell script named `name` in `dir` (made if missing)
/// that exits 0.
pub fn fake_program(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A symbolic link `dir/name` (dir made if missing) to `target`.
pub fn symlink_in(target: &Path, dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
}

/// A PATH value of these directories.
pub fn join_path(dirs: &[&Path]) -> std::ffi::OsString {
    let parts: Vec<&std::ffi::OsStr> = dirs.iter().map(|d| d.as_os_str()).collect();
    parts.join(std::ffi::OsStr::new(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_dirs_are_fresh_and_go_away() {
        let a = TestDir::new("testing");
        let b = TestDir::new("testing");
        assert_ne!(a.path(), b.path());
        let file = a.write("sub/f", "x");
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        let kept = a.path.clone();
        drop(a);
        assert!(!kept.exists());
    }

    #[test]
    fn wait_until_gives_up_at_the_limit() {
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(50), || false));
        assert!(start.elapsed() >= Duration::from_millis(50));
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
    }
}
