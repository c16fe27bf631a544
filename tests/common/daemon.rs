//! Starts a distcc-rs daemon for one test: its own directory, its own port on
//! 127.0.0.1 (a listener bound to port 0 and handed over as systemd's fd 3),
//! its own masquerade directory, and the real Debian `distcc` client to drive it.
//!
//! The daemon runs as the test user, or drops from root to `nobody` as it
//! would in production, so every directory it needs is made world-readable
//! and its TMPDIR is sticky and world-writable.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{exited_within, wait_until};

/// The distcc-rs binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_distcc-rs")
}

/// Finds a program the tests need; panics (fails the test) if it is missing.
pub fn need(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is missing: apt-get install {package} (see .ci/run); this test fails rather than skip")
        })
}

/// The same [`TestDir`](super::TestDir), under the name the test files used first.
pub use super::TestDir;

/// How to start a test daemon.
pub struct DaemonOptions {
    /// Compiler names to whitelist (links in the masquerade directory).
    pub masquerade: Vec<String>,
    /// Extra options after `daemon --no-detach --log-stderr`.
    pub args: Vec<String>,
    /// Extra environment for the daemon.
    pub env: Vec<(String, String)>,
    /// Server-side compiler scripts: (name, shell body). They go in a `bin`
    /// directory put first on the daemon's PATH (through DISTCCD_PATH).
    pub scripts: Vec<(String, String)>,
    /// `--allow`; None leaves the default.
    pub allow: Option<String>,
    /// Also hand over a `--stats` listener on 127.0.0.1 as fd 4
    /// (`LISTEN_FDS=2`, `LISTEN_FDNAMES=distcc:stats`).
    pub stats_listener: bool,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            masquerade: [
                "gcc",
                "g++",
                "cc",
                "c++",
                "x86_64-linux-gnu-gcc",
                "x86_64-linux-gnu-g++",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            args: Vec::new(),
            env: Vec::new(),
            scripts: Vec::new(),
            allow: Some("127.0.0.1".into()),
            stats_listener: false,
        }
    }
}

/// A running daemon; killed (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    /// The `--stats` port, if [`DaemonOptions::stats_listener`] asked for one.
    pub stats_port: Option<u16>,
    pub dir: TestDir,
    /// Where server-side scripts leave marks.
    pub marks: PathBuf,
}

impl Daemon {
    pub fn start(name: &str, opts: DaemonOptions) -> Daemon {
        let dir = TestDir::new(name);
        let masq = dir.join("masq");
        std::fs::create_dir_all(&masq).unwrap();
        for name in &opts.masquerade {
            std::os::unix::fs::symlink(bin(), masq.join(name)).unwrap();
        }
        let server_bin = dir.join("server-bin");
        std::fs::create_dir_all(&server_bin).unwrap();
        for (name, body) in &opts.scripts {
            dir.script(&format!("server-bin/{name}"), body);
        }
        let mut args: Vec<OsString> = ["daemon", "--no-detach", "--log-stderr", "--masquerade-dir"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(masq.into_os_string());
        if let Some(allow) = &opts.allow {
            args.extend(["--allow".into(), allow.into()]);
        }
        // Marker scripts write their marks outside their job's directory.
        args.extend(["--sandbox-write".into(), dir.join("marks").into_os_string()]);
        args.extend(opts.args.iter().map(OsString::from));
        let path = std::env::var("PATH").unwrap_or_default();
        let mut env = vec![(
            "DISTCCD_PATH".to_string(),
            format!("{}:{path}", server_bin.display()),
        )];
        env.extend(opts.env);
        Daemon::launch(dir, Path::new(bin()), &args, &env, opts.stats_listener)
    }

    /// Starts `program ARGS` the way systemd's socket activation does: a
    /// listener on a free port of 127.0.0.1 as fd 3 (and, with
    /// `stats_listener`, a second one as fd 4), `LISTEN_FDS`, `LISTEN_PID`
    /// and `LISTEN_FDNAMES=distcc:stats`. The daemon's TMPDIR is `daemon-tmp`
    /// in `dir` and MARKS is `marks`; `env` comes last and may override them.
    /// Its stderr goes to `daemon.log`; returns once it logs "serving with".
    pub fn launch(
        dir: TestDir,
        program: &Path,
        args: &[OsString],
        env: &[(String, String)],
        stats_listener: bool,
    ) -> Daemon {
        let tmp = dir.shared_dir("daemon-tmp");
        let marks = dir.shared_dir("marks");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = stats_listener.then(|| TcpListener::bind("127.0.0.1:0").unwrap());
        let stats_port = stats.as_ref().map(|l| l.local_addr().unwrap().port());
        let fds: Vec<i32> = std::iter::once(&listener)
            .chain(&stats)
            .map(|l| l.as_raw_fd())
            .collect();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
            .arg(program)
            .args(args);
        cmd.env("TMPDIR", &tmp)
            .env("MARKS", &marks)
            .env("LISTEN_FDS", fds.len().to_string())
            .env("LISTEN_FDNAMES", "distcc:stats")
            .env_remove("DISTCC_CMDLIST");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        // SAFETY: fcntl, dup2 and close are async-signal-safe. The listeners
        // go to fds 3, 4, ... without close-on-exec for the daemon to
        // inherit, by way of copies above 64 so that no listener already
        // sitting on a target fd is overwritten before it is copied.
        unsafe {
            cmd.pre_exec(move || {
                let mut high = [0; 2];
                for (i, &fd) in fds.iter().enumerate() {
                    high[i] = libc::fcntl(fd, libc::F_DUPFD, 64);
                    if high[i] < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (i, &fd) in high[..fds.len()].iter().enumerate() {
                    if libc::dup2(fd, 3 + i as i32) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start the daemon");
        drop(listener);
        drop(stats);
        let daemon = Daemon {
            child,
            port,
            stats_port,
            dir,
            marks,
        };
        daemon.wait_for_log("serving with", Duration::from_secs(10));
        daemon
    }

    /// The host spec for DISTCC_HOSTS.
    pub fn host(&self, lzo: bool) -> String {
        format!("127.0.0.1:{}/8{}", self.port, if lzo { ",lzo" } else { "" })
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Waits until the log contains `text`; panics with the log if it does not in time.
    pub fn wait_for_log(&self, text: &str, limit: Duration) {
        assert!(
            wait_until(limit, || self.log().contains(text)),
            "daemon log has no '{text}' after {limit:?}:\n{}",
            self.log()
        );
    }

    /// True if the daemon process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Names of the marks left by server-side scripts.
    pub fn marks(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.marks)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Entries left in the daemon's TMPDIR (job directories that were not removed).
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("daemon-tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Waits (up to 5 s) for the daemon to remove its job directories, which
    /// it does once a response is written, possibly just after the client
    /// has read it; panics with what is left if they stay.
    pub fn assert_no_leftovers(&self) {
        let jobs = || {
            let mut left = self.leftovers();
            left.retain(|name| !name.starts_with("distccd-headers."));
            left
        };
        assert!(
            wait_until(Duration::from_secs(5), || jobs().is_empty()),
            "job directories left behind: {:?}",
            jobs()
        );
    }

    /// Connects to the daemon.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// Sends raw bytes and reads whatever comes back until the daemon closes.
    pub fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        let _ = s.write_all(request);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    /// Stops the daemon with SIGTERM and returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        match exited_within(&mut self.child, Duration::from_secs(30)) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                panic!("daemon ignored SIGTERM for 30s:\n{}", self.log());
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            if exited_within(&mut self.child, Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// A client command (`program`, then `args`) in `cwd` with `hosts` and a
/// DISTCC_DIR of its own under `cwd`, so that no other test's backoff marks
/// or locks leak in, and none of the caller's DISTCC_* settings.
pub fn client_command(program: &Path, cwd: &Path, hosts: &str, env: &[(&str, &str)]) -> Command {
    let state = cwd.join(".distcc-state");
    std::fs::create_dir_all(&state).unwrap();
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_DIR", &state)
        .env_remove("DISTCC_VERBOSE")
        .env_remove("DISTCC_LOG")
        .env_remove("DISTCC_FALLBACK")
        .env_remove("DISTCC_SKIP_LOCAL_RETRY")
        .env_remove("DISTCC_BACKOFF_PERIOD")
        .env_remove("_DISTCC_SAFEGUARD")
        .envs(env.iter().copied());
    cmd
}

/// Runs the real Debian distcc client (see [`client_command`]).
pub fn distcc(cwd: &Path, hosts: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let distcc = need("distcc", "distcc");
    client_command(&distcc, cwd, hosts, env)
        .args(args)
        .output()
        .expect("run distcc")
}

/// Runs our client, `distcc-rs ARGS` (see [`client_command`]).
pub fn client(cwd: &Path, hosts: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    client_command(Path::new(bin()), cwd, hosts, env)
        .args(args)
        .output()
        .expect("run distcc-rs")
}

/// Debian's distccd 3.4 on a free port of 127.0.0.1, killed when dropped.
///
/// distccd cannot take a listening socket from us, so the port is found by
/// binding port 0 and closing it; if another process takes it first,
/// distccd exits 102 and the start is tried again with a new port.
pub struct DebianDistccd {
    pub child: Child,
    pub port: u16,
    pub dir: TestDir,
}

impl DebianDistccd {
    pub fn start(name: &str) -> DebianDistccd {
        DebianDistccd::start_with(name, &[])
    }

    /// Starts distccd with extra environment (DISTCCD_PATH, …).
    pub fn start_with(name: &str, env: &[(&str, &str)]) -> DebianDistccd {
        DebianDistccd::start_with_args(name, &[], env)
    }

    /// Starts distccd with extra options (`--stats`, …) and environment.
    pub fn start_with_args(name: &str, args: &[&str], env: &[(&str, &str)]) -> DebianDistccd {
        let distccd = need("distccd", "distcc");
        let dir = TestDir::new(name);
        let tmp = dir.shared_dir("tmp");
        for _ in 0..5 {
            let port = super::free_port();
            let log = dir.join("distccd.log");
            std::fs::write(&log, "").unwrap();
            std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
            let mut cmd = Command::new(&distccd);
            cmd.args([
                "--daemon",
                "--no-detach",
                "--allow",
                "127.0.0.1",
                "--listen",
                "127.0.0.1",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--jobs",
                "8",
                "--log-level",
                "info",
            ])
            .arg("--log-file")
            .arg(&log)
            .args(args)
            .env("TMPDIR", &tmp)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            // SAFETY: geteuid cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                cmd.args(["--user", "nobody"]);
            }
            let mut child = cmd.spawn().expect("start distccd");
            let mut exited = false;
            let serving = wait_until(Duration::from_secs(10), || {
                exited = child.try_wait().unwrap().is_some();
                exited || TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if serving && !exited {
                return DebianDistccd { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("Debian distccd did not start");
    }

    /// The host spec for DISTCC_HOSTS.
    pub fn host(&self, lzo: bool) -> String {
        format!("127.0.0.1:{}/8{}", self.port, if lzo { ",lzo" } else { "" })
    }

    /// distccd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("distccd.log")).unwrap_or_default()
    }
}

impl Drop for DebianDistccd {
    fn drop(&mut self) {
        // distccd leads its own process group, with its preforked children.
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
