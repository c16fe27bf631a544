//! The client's slot locks against another process's: distcc 3.4 takes
//! them with `fcntl(F_SETLK)`, and so must we, or the two clients would
//! share a slot. The other process is Python's `fcntl.lockf`, which is
//! that call.

use crate::common;

use common::daemon::need;
use common::TestDir;
use distcc_rs::client::lock::{busy_slots, try_lock};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Another process holding (or trying) an fcntl lock on a file.
struct Python {
    child: Child,
    said: String,
}

impl Python {
    /// Runs `lockf(path, LOCK_EX|LOCK_NB)`; the child prints `locked`
    /// or `busy` and keeps what it got until its stdin closes.
    fn lock(path: &Path) -> Python {
        let script = "import fcntl, sys\n\
            f = open(sys.argv[1], 'w')\n\
            try:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('locked')\n\
            except OSError:\n    print('busy')\n\
            sys.stdout.flush(); sys.stdin.read()\n";
        let mut child = Command::new(need("python3", "python3"))
            .args(["-c", script])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("these tests need python3 to hold an fcntl lock from another process");
        let mut said = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut said)
            .unwrap();
        Python {
            child,
            said: said.trim().to_string(),
        }
    }

    fn release(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

#[test]
fn a_slot_held_by_another_process_is_busy() {
    let tmp = TestDir::new("lock");
    let file = tmp.path().join("cpu_tcp_h_3632_0");
    let python = Python::lock(&file);
    assert_eq!(python.said, "locked");
    assert!(try_lock(tmp.path(), "tcp_h_3632", 0).unwrap().is_none());
    assert!(try_lock(tmp.path(), "tcp_h_3632", 1).unwrap().is_some());
    python.release();
    let lock = try_lock(tmp.path(), "tcp_h_3632", 0).unwrap().unwrap();
    assert_eq!((lock.path(), lock.slot()), (file.as_path(), 0));
}

#[test]
fn another_process_sees_our_lock_until_it_is_dropped() {
    let tmp = TestDir::new("lock");
    let lock = try_lock(tmp.path(), "localhost", 3).unwrap().unwrap();
    let file = tmp.path().join("cpu_localhost_3");
    let python = Python::lock(&file);
    assert_eq!(python.said, "busy");
    python.release();
    drop(lock);
    let python = Python::lock(&file);
    assert_eq!(python.said, "locked");
    python.release();
    // The lock file stays, as in distcc.
    assert!(file.exists());
}

#[test]
fn a_slot_held_by_this_process_is_busy_too() {
    let tmp = TestDir::new("lock");
    let first = try_lock(tmp.path(), "localhost", 0).unwrap().unwrap();
    assert!(try_lock(tmp.path(), "localhost", 0).unwrap().is_none());
    // Still held for other processes after the failed second attempt.
    let python = Python::lock(&tmp.path().join("cpu_localhost_0"));
    assert_eq!(python.said, "busy");
    python.release();
    drop(first);
    assert!(try_lock(tmp.path(), "localhost", 0).unwrap().is_some());
}

#[test]
fn placement_counts_a_slot_another_process_holds_without_taking_it() {
    let tmp = TestDir::new("lock-busy");
    let theirs = Python::lock(&tmp.join("cpu_localhost_1"));
    assert_eq!(theirs.said, "locked");
    assert_eq!(busy_slots(tmp.path(), "localhost", 4), 1);
    // Counting opened and closed the file: the other process still holds it.
    assert!(try_lock(tmp.path(), "localhost", 1).unwrap().is_none());
    theirs.release();
    assert_eq!(busy_slots(tmp.path(), "localhost", 4), 0);
}
