//! Our client and a job the daemon refuses (`DENY`): the user sees the daemon's reason, the host is not backed off, and the job goes elsewhere or is compiled here.

use crate::common;

use common::daemon::{client_command, need, Daemon, DaemonOptions, TestDir};
use common::text;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// What the daemon says when the compiler is not whitelisted.
const REASON: &str = "compiler 'mycc' is not in the masquerade whitelist";

/// A client-side directory with `bin/mycc` (gcc under a name the default
/// daemon does not whitelist) first on PATH.
struct Work {
    dir: TestDir,
    path: String,
}

impl Work {
    fn new(name: &str) -> Work {
        need("gcc", "gcc");
        let dir = TestDir::new(name);
        dir.script("bin/mycc", "exec gcc \"$@\"");
        let path = format!(
            "{}:{}",
            dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        dir.write("x.c", "int x(int a) { return a + 1; }\n");
        dir.write("y.c", "int y(int a) { return a + 2; }\n");
        Work { dir, path }
    }

    /// Runs our client on `args` with `hosts`; the DISTCC_DIR is
    /// `.distcc-state` in the work directory, the same for every run.
    fn run(&self, hosts: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all = vec![("PATH", self.path.as_str())];
        all.extend_from_slice(env);
        client_command(
            Path::new(common::daemon::bin()),
            &self.dir.path,
            hosts,
            &all,
        )
        .args(args)
        .output()
        .unwrap()
    }

    /// The backoff marks the client wrote.
    fn backoff_marks(&self) -> Vec<String> {
        let lock = self.dir.join(".distcc-state/lock");
        let Ok(entries) = std::fs::read_dir(lock) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("backoff_"))
            .collect()
    }

    fn object(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn compile_ok(daemon: &Daemon) -> usize {
    daemon.log().matches("COMPILE_OK").count()
}

/// The line our client prints for the refusal.
fn refused_line(daemon: &Daemon) -> String {
    format!("Warning: {} refused the job: {REASON}", daemon.host(false))
}

#[test]
fn a_refused_job_is_built_here_and_the_host_is_not_backed_off() {
    let daemon = Daemon::start("refused-local", DaemonOptions::default());
    let work = Work::new("refused-local-work");
    let out = work.run(&daemon.host(false), &["mycc", "-c", "x.c"], &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&refused_line(&daemon)), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "failed to distribute x.c to {}, running locally instead",
            daemon.host(false)
        )),
        "{stderr}"
    );
    assert!(std::fs::read(work.object("x.o"))
        .unwrap()
        .starts_with(b"\x7fELF"));
    assert_eq!(work.backoff_marks(), Vec::<String>::new(), "{stderr}");
    assert_eq!(compile_ok(&daemon), 0, "{}", daemon.log());

    // The host was not backed off: the next good job goes to it.
    let out = work.run(
        &daemon.host(false),
        &["gcc", "-c", "y.c"],
        &[("DISTCC_FALLBACK", "0")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(work.object("y.o").exists());
    assert_eq!(compile_ok(&daemon), 1, "{}", daemon.log());
}

#[test]
fn a_refused_job_is_built_here_even_without_local_retries() {
    // DISTCC_SKIP_LOCAL_RETRY is about compile errors: a refusal is none.
    let daemon = Daemon::start("refused-skip-retry", DaemonOptions::default());
    let work = Work::new("refused-skip-retry-work");
    let out = work.run(
        &daemon.host(true),
        &["mycc", "-c", "x.c"],
        &[("DISTCC_SKIP_LOCAL_RETRY", "1")],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(REASON), "{stderr}");
    assert!(work.object("x.o").exists());
    assert_eq!(work.backoff_marks(), Vec::<String>::new());
}

#[test]
fn a_refused_job_goes_to_the_next_host() {
    let refuses = Daemon::start("refused-first", DaemonOptions::default());
    let mut opts = DaemonOptions::default();
    opts.masquerade.push("mycc".into());
    opts.scripts = vec![("mycc".into(), "exec gcc \"$@\"".into())];
    let accepts = Daemon::start("refused-second", opts);
    let work = Work::new("refused-next-work");
    let hosts = format!("{} {}", refuses.host(false), accepts.host(true));
    // The list's order, as in distcc 3.4: the refusing host is tried first.
    let out = work.run(
        &hosts,
        &["mycc", "-c", "x.c"],
        &[("DISTCC_FALLBACK", "0"), ("DISTCC_PLACEMENT", "0")],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&refused_line(&refuses)), "{stderr}");
    assert!(!stderr.contains("running locally"), "{stderr}");
    assert!(work.object("x.o").exists());
    assert_eq!(compile_ok(&accepts), 1, "{}", accepts.log());
    assert_eq!(work.backoff_marks(), Vec::<String>::new());
}

#[test]
fn a_refused_job_without_fallback_fails_with_the_reason() {
    let daemon = Daemon::start("refused-nofallback", DaemonOptions::default());
    let work = Work::new("refused-nofallback-work");
    let out = work.run(
        &daemon.host(false),
        &["mycc", "-c", "x.c"],
        &[("DISTCC_FALLBACK", "0")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(116), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "ERROR: failed to distribute and fallbacks are disabled: {} refused the job: {REASON}",
            daemon.host(false)
        )),
        "{stderr}"
    );
    assert!(!work.object("x.o").exists());
    assert_eq!(work.backoff_marks(), Vec::<String>::new());
}

/// Bytes `conn` has sent that the other side has not acknowledged yet.
fn unacknowledged(conn: &TcpStream) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) on our own socket writes one int.
    let ret = unsafe { libc::ioctl(conn.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(ret, 0, "{}", std::io::Error::last_os_error());
    n
}

/// A peer that stands for a daemon which refuses a job at once and stops
/// reading: it takes the first bytes of the request, answers `DENY`, and
/// closes with the rest of the request unread, so the client's write fails
/// (EPIPE or ECONNRESET) while the refusal waits in its socket.
fn abrupt_refuser(listener: TcpListener, reason: &'static str) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).unwrap();
        assert_eq!(&head[..4], b"DIST");
        let mut reply = format!("DENY{:08x}", reason.len()).into_bytes();
        reply.extend_from_slice(reason.as_bytes());
        conn.write_all(&reply).unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        // Closing with unread input sends a reset, which would drop a reply
        // still in our send queue: wait until the client has it all.
        let deadline = Instant::now() + Duration::from_secs(10);
        while unacknowledged(&conn) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

#[test]
fn a_refusal_is_read_even_when_the_daemon_stopped_reading() {
    let work = Work::new("refused-epipe-work");
    // Far more source than the socket buffers hold, so the send cannot
    // complete once the peer has stopped reading.
    let line = format!("\"{}\"\n", "x".repeat(60));
    let big = format!("const char s[] =\n{};\n", line.repeat(100_000));
    work.dir.write("big.c", big);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = abrupt_refuser(listener, "too big for me");
    let started = Instant::now();
    let out = work.run(
        &format!("127.0.0.1:{port}"),
        &["gcc", "-c", "big.c"],
        &[("DISTCC_IO_TIMEOUT", "20"), ("DISTCC_VERBOSE", "1")],
    );
    peer.join().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port} refused the job: too big for me")),
        "{stderr}"
    );
    assert!(work.object("big.o").exists());
    assert_eq!(work.backoff_marks(), Vec::<String>::new(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(stderr.contains("reading its reply anyway"), "{stderr}");
}
