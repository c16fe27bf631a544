//! The daemon as a process: access list, option errors, inetd over a pipe, --jobs, --job-lifetime, SIGTERM, --stats, and the powerpc build under qemu.

use crate::common;

use common::cross::{self, POWERPC};
use common::daemon::{bin, distcc, need, Daemon, DaemonOptions};
use common::{exited_within, wait_until, TestDir};
use distcc_rs::proto::{encode_request, HEADER_LEN};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Compiles a fresh `name.c` in `work` through `host` with the Debian
/// client, with fallback off so that a local compile cannot stand in.
fn compile(work: &TestDir, host: &str, name: &str, env: &[(&str, &str)]) -> Output {
    need("gcc", "gcc");
    work.write(
        &format!("{name}.c"),
        format!("int {name}(int x) {{ return x + 1; }}\n"),
    );
    let mut env = env.to_vec();
    env.push(("DISTCC_FALLBACK", "0"));
    let src = format!("{name}.c");
    let obj = format!("{name}.o");
    distcc(&work.path, host, &["gcc", "-c", &src, "-o", &obj], &env)
}

/// Checks that the client succeeded and left an ELF object.
fn assert_compiled(out: &Output, work: &TestDir, name: &str, log: &str) {
    assert!(
        out.status.success(),
        "distcc failed ({}): {}\ndaemon log:\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let object = std::fs::read(work.join(&format!("{name}.o"))).unwrap();
    assert!(object.starts_with(b"\x7fELF"), "{name}.o is not ELF");
}

/// Waits for a child with a limit; kills it and panics if it runs on.
fn wait_with_limit(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    exited_within(child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} still ran after {limit:?}");
    })
}

/// All the child's piped stderr, once it has exited.
fn stderr_text(child: &mut Child) -> String {
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

/// A daemon started on its own `--listen ADDR --port P` rather than through
/// the harness's socket activation: for IPv6, and for the powerpc binary.
struct PortDaemon {
    child: Child,
    port: u16,
    dir: TestDir,
}

impl PortDaemon {
    /// Starts `program` (the binary and any leading words, e.g. qemu) on a
    /// free port of `listen`, trying again with another port if the one
    /// found was taken in between (exit 102).
    fn start(name: &str, program: &[OsString], listen: &str, extra: &[&str]) -> PortDaemon {
        let dir = TestDir::new(name);
        let tmp = dir.shared_dir("daemon-tmp");
        let masq = dir.join("masq");
        std::fs::create_dir_all(&masq).unwrap();
        for name in ["gcc", "cc", "x86_64-linux-gnu-gcc"] {
            std::os::unix::fs::symlink(bin(), masq.join(name)).unwrap();
        }
        let ip: std::net::IpAddr = listen.parse().unwrap();
        for attempt in 0..5 {
            let port = TcpListener::bind(SocketAddr::new(ip, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log_path = dir.join(&format!("daemon-{attempt}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let mut cmd = Command::new(&program[0]);
            cmd.args(&program[1..])
                .args(["--no-detach", "--log-stderr", "--listen", listen])
                .arg("--port")
                .arg(port.to_string())
                .arg("--masquerade-dir")
                .arg(&masq)
                .args(extra)
                .env("TMPDIR", &tmp)
                .env_remove("DISTCC_CMDLIST")
                .env_remove("LISTEN_PID")
                .env_remove("LISTEN_FDS")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            let mut child = cmd.spawn().expect("start the daemon");
            let serving =
                || std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains("serving with"));
            let mut exited = None;
            let _ = wait_until(Duration::from_secs(30), || {
                exited = child.try_wait().unwrap();
                exited.is_some() || serving()
            });
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            match exited {
                None if serving() => {
                    std::fs::rename(&log_path, dir.join("daemon.log")).unwrap();
                    return PortDaemon { child, port, dir };
                }
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("daemon did not start in 30 s:\n{text}");
                }
                Some(status) if status.code() == Some(102) => {}
                Some(status) => panic!("daemon exited with {status} at start-up:\n{text}"),
            }
        }
        panic!("no free port on {listen} after 5 tries");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_with_limit(
            &mut self.child,
            Duration::from_secs(30),
            "daemon after SIGTERM",
        )
    }
}

impl Drop for PortDaemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn host_daemon() -> Vec<OsString> {
    vec![bin().into(), "daemon".into()]
}

/// Connects to the daemon from 127.0.0.2, which the kernel routes over
/// loopback like 127.0.0.1.
fn connect_from_127_0_0_2(port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
    socket.bind(&from.into()).unwrap();
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends bytes and reads until the peer closes; a reset counts as a close.
fn send_and_read(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = stream.write_all(bytes);
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("the daemon kept the connection open")
        }
        Err(_) => {}
    }
    reply
}

fn gcc_request(version: u32) -> Vec<u8> {
    let argv: [&[u8]; 5] = [b"gcc", b"-c", b"t.c", b"-o", b"t.o"];
    encode_request(version, &argv, b"int t(void) { return 7; }\n")
}

#[test]
fn client_outside_the_allow_list_is_refused() {
    let daemon = Daemon::start("process-deny", DaemonOptions::default());
    let start = Instant::now();
    let mut s = connect_from_127_0_0_2(daemon.port);
    let reply = send_and_read(&mut s, &gcc_request(1));
    assert!(reply.is_empty(), "a denied client got {reply:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    daemon.wait_for_log("connection from client '127.0.0.2:", Duration::from_secs(5));
    daemon.wait_for_log("denied by access list", Duration::from_secs(1));
    assert!(daemon.log().contains("allowing access from: 127.0.0.1/32"));
    assert!(!daemon.log().contains("COMPILE_"), "{}", daemon.log());
    // 127.0.0.1 itself is served.
    let work = TestDir::new("process-deny-client");
    let out = compile(&work, &daemon.host(false), "allowed", &[]);
    assert_compiled(&out, &work, "allowed", &daemon.log());
}

#[test]
fn default_allow_list_serves_loopback_over_ipv4_and_ipv6() {
    let daemon = Daemon::start(
        "process-default-allow",
        DaemonOptions {
            allow: None,
            ..DaemonOptions::default()
        },
    );
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("allowing access from:"))
        .unwrap_or_else(|| panic!("the access list in effect is not logged:\n{log}"));
    for range in ["192.168.0.0/16", "10.0.0.0/8", "127.0.0.0/8", "::1/128"] {
        assert!(line.contains(range), "{range} is missing from {line:?}");
    }
    let work = TestDir::new("process-default-allow-client");
    let out = compile(&work, &daemon.host(false), "over_v4", &[]);
    assert_compiled(&out, &work, "over_v4", &daemon.log());

    // IPv6 loopback, on a daemon that listens on ::1 itself.
    let mut v6 = PortDaemon::start("process-default-allow-v6", &host_daemon(), "::1", &[]);
    assert!(v6.log().contains("::1/128"), "{}", v6.log());
    let host = format!("[::1]:{}/4,lzo", v6.port);
    let out = compile(&work, &host, "over_v6", &[]);
    assert_compiled(&out, &work, "over_v6", &v6.log());
    assert!(
        v6.log().contains("client: [::1]:"),
        "the job did not come from ::1:\n{}",
        v6.log()
    );
    assert!(v6.log().contains("COMPILE_OK"));
    assert_eq!(v6.terminate().code(), Some(0));
}

#[test]
fn bad_allow_masks_exit_101_at_once() {
    let dir = TestDir::new("process-bad-allow");
    let tmp = dir.shared_dir("tmp");
    let masq = dir.join("masq");
    std::fs::create_dir_all(&masq).unwrap();
    std::os::unix::fs::symlink(bin(), masq.join("gcc")).unwrap();
    let run = |allow: &str| -> Child {
        // A loopback port of its own and --lifetime, so that a mask taken
        // by mistake serves nothing else and stops by itself.
        let port = common::free_port();
        Command::new(bin())
            .args(["daemon", "--allow", allow, "--no-detach", "--log-stderr"])
            .args(["--listen", "127.0.0.1", "--lifetime", "5", "--port"])
            .arg(port.to_string())
            .arg("--masquerade-dir")
            .arg(&masq)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for allow in [
        "10.0.0.0/x",
        "10.0.0.0/40",
        "10.0.0.0/33",
        "10.0.0.0/",
        "10.0.0.0/-1",
        "10.0.0.0/8x",
        "::1/129",
        "/8",
    ] {
        let start = Instant::now();
        let mut child = run(allow);
        let status = wait_with_limit(&mut child, Duration::from_secs(5), allow);
        let took = start.elapsed();
        let stderr = stderr_text(&mut child);
        assert_eq!(
            status.code(),
            Some(101),
            "--allow {allow} gave {status}: {stderr}"
        );
        assert!(
            took < Duration::from_secs(2),
            "--allow {allow} took {took:?}"
        );
        assert!(
            stderr.contains("mask") || stderr.contains("address"),
            "--allow {allow}: {stderr}"
        );
    }
    // The same command with a good mask starts and serves.
    let mut good = run("10.0.0.0/8");
    let start = Instant::now();
    let stderr = good.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // It says it serves before it does; a bad mask would have made it exit.
    let mut text = String::new();
    let serving = wait_until(Duration::from_secs(10), || {
        text.extend(rx.try_iter().map(|line| line + "\n"));
        text.contains("serving with")
    });
    assert!(
        serving && good.try_wait().unwrap().is_none(),
        "a good mask did not start: {text}"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(good.id() as i32, libc::SIGTERM) };
    let status = wait_with_limit(&mut good, Duration::from_secs(10), "good daemon");
    // The rest of its stderr, up to the end of file.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        text.push_str(&line);
        text.push('\n');
    }
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("allowing access from: 10.0.0.0/8"), "{text}");
    eprintln!("good mask served for {:?}", start.elapsed());
}

/// DISTCC_IO_TIMEOUT is read by the client's rule (3.4's): set, it must be
/// a number above zero, and the empty string is no exception.
#[test]
fn bad_io_timeout_exits_101_at_once_even_when_empty() {
    let dir = TestDir::new("process-bad-io-timeout");
    let tmp = dir.shared_dir("tmp");
    for value in ["", "0", "ten"] {
        let mut child = Command::new(bin())
            .args([
                "daemon",
                "--no-detach",
                "--log-stderr",
                "--enable-tcp-insecure",
            ])
            .args(["--listen", "127.0.0.1", "--lifetime", "5", "--port"])
            .arg(common::free_port().to_string())
            .env("TMPDIR", &tmp)
            .env("DISTCC_IO_TIMEOUT", value)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_with_limit(&mut child, Duration::from_secs(5), value);
        let stderr = stderr_text(&mut child);
        assert_eq!(status.code(), Some(101), "{value:?}: {stderr}");
        assert!(stderr.contains("DISTCC_IO_TIMEOUT"), "{value:?}: {stderr}");
    }
}

/// Reads one token header from `r`.
fn header(r: &mut &[u8], token: &[u8; 4]) -> u32 {
    assert!(
        r.len() >= HEADER_LEN,
        "response ends before {}",
        String::from_utf8_lossy(token)
    );
    let (head, rest) = r.split_at(HEADER_LEN);
    assert_eq!(&head[..4], token, "got {:?}", String::from_utf8_lossy(head));
    *r = rest;
    u32::from_str_radix(std::str::from_utf8(&head[4..]).unwrap(), 16).unwrap()
}

/// Reads one body packet, decompressing it in version 2.
fn body(r: &mut &[u8], token: &[u8; 4], version: u32) -> Vec<u8> {
    let len = header(r, token) as usize;
    assert!(
        r.len() >= len,
        "{} body is cut short",
        String::from_utf8_lossy(token)
    );
    let (raw, rest) = r.split_at(len);
    *r = rest;
    if version >= 2 && len > 0 {
        distcc_rs::lzo::decompress(raw, 64 << 20).unwrap()
    } else {
        raw.to_vec()
    }
}

#[test]
fn inetd_serves_one_job_over_a_pipe() {
    need("gcc", "gcc");
    let dir = TestDir::new("process-inetd");
    let tmp = dir.shared_dir("tmp");
    for version in [1, 2] {
        let log_path = dir.join(&format!("inetd-v{version}.log"));
        let start = Instant::now();
        let mut child = Command::new(bin())
            .args(["daemon", "--inetd", "--enable-tcp-insecure", "--log-stderr"])
            .env("TMPDIR", &tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        // As over ssh: the request goes in and stdin stays open while the
        // response is read, since an end of file would mean the client left.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&gcc_request(version)).unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            let _ = tx.send(out);
        });
        let response = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("no response from --inetd in 30 s")
            });
        drop(stdin);
        let status = wait_with_limit(&mut child, Duration::from_secs(10), "distcc-rs --inetd");
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(status.code(), Some(0), "{log}");
        let mut r = response.as_slice();
        assert_eq!(header(&mut r, b"DONE"), version);
        assert_eq!(header(&mut r, b"STAT"), 0, "{log}");
        let stderr = body(&mut r, b"SERR", version);
        assert!(stderr.is_empty(), "{}", String::from_utf8_lossy(&stderr));
        body(&mut r, b"SOUT", version);
        let object = body(&mut r, b"DOTO", version);
        assert!(r.is_empty(), "{} bytes after DOTO", r.len());
        assert!(object.starts_with(b"\x7fELF"), "DOTO is not an ELF object");
        assert!(log.contains("NOTSOCKET COMPILE_OK"), "{log}");
        eprintln!(
            "--inetd v{version}: {} byte object in {:?}",
            object.len(),
            start.elapsed()
        );
    }
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "job directories left in TMPDIR"
    );
}

/// A server-side compiler script that records when it ran in
/// `$MARKS/run.PID` ("start end" in ns), sleeping `sleep` seconds first.
fn recording_gcc(sleep: &str) -> String {
    format!(
        "s=$(date +%s%N)\nsleep {sleep}\n/usr/bin/gcc \"$@\"\nrc=$?\n\
         echo \"$s $(date +%s%N)\" > \"$MARKS/run.$$\"\nexit $rc"
    )
}

/// The greatest number of the intervals in `runs` that overlap at once.
fn max_overlap(runs: &[(u128, u128)]) -> usize {
    let mut events: Vec<(u128, i32)> = runs.iter().flat_map(|&(s, e)| [(s, 1), (e, -1)]).collect();
    // At the same instant an end comes before a start.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

#[test]
fn jobs_2_runs_at_most_two_of_20_concurrent_clients() {
    let script = recording_gcc("0.2");
    let daemon = Daemon::start(
        "process-jobs",
        DaemonOptions {
            args: vec!["--jobs".into(), "2".into()],
            scripts: vec![
                ("gcc".into(), script.clone()),
                ("x86_64-linux-gnu-gcc".into(), script),
            ],
            ..DaemonOptions::default()
        },
    );
    let host = daemon.host(true);
    let start = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let host = host.clone();
            std::thread::spawn(move || {
                let work = TestDir::new(&format!("process-jobs-client{i}"));
                let name = format!("unit{i}");
                let out = compile(&work, &host, &name, &[]);
                (work, name, out)
            })
        })
        .collect();
    for client in clients {
        let (work, name, out) = client.join().unwrap();
        assert_compiled(&out, &work, &name, &daemon.log());
    }
    let took = start.elapsed();
    let runs: Vec<(u128, u128)> = daemon
        .marks()
        .iter()
        .filter(|m| m.starts_with("run."))
        .map(|m| {
            let text = std::fs::read_to_string(daemon.marks.join(m)).unwrap();
            let mut words = text.split_whitespace().map(|w| w.parse().unwrap());
            (words.next().unwrap(), words.next().unwrap())
        })
        .collect();
    assert_eq!(runs.len(), 20, "compiler runs recorded: {}", runs.len());
    let max = max_overlap(&runs);
    eprintln!("20 clients with --jobs 2 in {took:?}; at most {max} compilers at once");
    assert!(max <= 2, "{max} compilers ran at once with --jobs 2");
    assert_eq!(max, 2, "the two slots were never used together");
    assert_eq!(daemon.log().matches("COMPILE_OK").count(), 20);
    // 20 runs of 0.2 s in two slots take at least 2 s.
    assert!(took >= Duration::from_secs(2), "{took:?}");
}

/// Every process in /proc with the fields of its `stat` after "(comm)":
/// state, ppid, pgrp, ...
fn proc_stats() -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        out.push((pid, rest.split_whitespace().map(String::from).collect()));
    }
    out
}

/// Live processes whose process group is `pgid`, from /proc. Zombies are
/// left out: an orphan's is reaped by init, which in a container may never
/// get round to it.
fn group_members(pgid: u32) -> Vec<u32> {
    proc_stats()
        .into_iter()
        .filter(|(_, f)| {
            f.first().is_some_and(|s| s != "Z")
                && f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Children of `ppid` that are zombies.
fn zombie_children(ppid: u32) -> Vec<u32> {
    proc_stats()
        .into_iter()
        .filter(|(_, f)| {
            let zombie = f.first().is_some_and(|s| s == "Z");
            zombie && f.get(1) == Some(&ppid.to_string())
        })
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn job_lifetime_kills_a_hanging_compiler_and_its_group() {
    let mut opts = DaemonOptions {
        args: vec!["--job-lifetime".into(), "2".into()],
        ..DaemonOptions::default()
    };
    opts.masquerade.push("hangcc".into());
    opts.scripts.push((
        "hangcc".into(),
        "echo $$ > \"$MARKS/hangcc.pgid\"\nsleep 60\ntouch \"$MARKS/hangcc.finished\"".into(),
    ));
    let daemon = Daemon::start("process-job-lifetime", opts);
    let work = TestDir::new("process-job-lifetime-client");
    // The client preprocesses with its own hangcc, which is plain gcc.
    work.script("client-bin/hangcc", "exec gcc \"$@\"");
    work.write("hang.c", "int hang(void) { return 1; }\n");
    let path = format!(
        "{}:{}",
        work.join("client-bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let start = Instant::now();
    let out = distcc(
        &work.path,
        &daemon.host(false),
        &["hangcc", "-c", "hang.c", "-o", "hang.o"],
        &[("PATH", &path), ("DISTCC_SKIP_LOCAL_RETRY", "1")],
    );
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(118),
        "client: {stderr}\ndaemon log:\n{}",
        daemon.log()
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "the job was stopped after {took:?}"
    );
    assert!(
        stderr.contains("Compilation takes too long, timeout."),
        "{stderr}"
    );
    assert!(
        daemon.log().contains("COMPILE_TIMEOUT exit:118"),
        "{}",
        daemon.log()
    );
    eprintln!("--job-lifetime 2: client exited 118 after {took:?}");

    // Nothing of the script's process group is left, and it never finished.
    let pgid: u32 = std::fs::read_to_string(daemon.marks.join("hangcc.pgid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = wait_until(Duration::from_secs(5), || group_members(pgid).is_empty());
    assert_eq!(
        group_members(pgid),
        Vec::<u32>::new(),
        "hangcc's group lives on"
    );
    assert!(
        zombie_children(daemon.child.id()).is_empty(),
        "unreaped compilers"
    );
    assert!(!daemon.marks().contains(&"hangcc.finished".to_string()));

    // The next job is served.
    let out = compile(&work, &daemon.host(false), "after_hang", &[]);
    assert_compiled(&out, &work, "after_hang", &daemon.log());
    assert!(daemon.leftovers().is_empty(), "{:?}", daemon.leftovers());
}

#[test]
fn sigterm_stops_accepting_lets_the_job_finish_and_removes_the_pid_file() {
    let slow = "touch \"$MARKS/started\"\nsleep 2\nexec /usr/bin/gcc \"$@\"";
    let pid_dir = TestDir::new("process-sigterm-pid");
    let pid_file = pid_dir.shared_dir("run").join("distccd.pid");
    let mut daemon = Daemon::start(
        "process-sigterm",
        DaemonOptions {
            args: vec!["--pid-file".into(), pid_file.display().to_string()],
            scripts: vec![
                ("gcc".into(), slow.into()),
                ("x86_64-linux-gnu-gcc".into(), slow.into()),
            ],
            ..DaemonOptions::default()
        },
    );
    let pid = daemon.child.id();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{pid}\n")
    );
    let host = daemon.host(false);
    let client = std::thread::spawn(move || {
        let work = TestDir::new("process-sigterm-client");
        let out = compile(&work, &host, "slow", &[]);
        (work, out)
    });
    assert!(
        wait_until(Duration::from_secs(10), || daemon
            .marks()
            .contains(&"started".to_string())),
        "the slow job never started"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let signalled = Instant::now();
    daemon.wait_for_log("signal 15 received, stopping", Duration::from_secs(5));
    // No longer accepting: the listening socket is closed.
    match TcpStream::connect(("127.0.0.1", daemon.port)) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("the daemon still accepts after SIGTERM"),
    }
    assert!(daemon.alive(), "the daemon left before its job finished");
    let (work, out) = client.join().unwrap();
    assert_compiled(&out, &work, "slow", &daemon.log());
    let status = wait_with_limit(
        &mut daemon.child,
        Duration::from_secs(10),
        "daemon after SIGTERM",
    );
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(!pid_file.exists(), "the pid file was left behind");
    assert!(daemon.log().contains("COMPILE_OK"));
    assert!(daemon.log().contains("exiting"));
    assert!(daemon.leftovers().is_empty(), "{:?}", daemon.leftovers());
    eprintln!("SIGTERM: daemon finished its job and exited 0 {took:?} after the signal");
}

/// distccd 3.4's stats lines, in order (compat spec section 8).
const STATS_FIELDS: [&str; 28] = [
    "dcc_tcp_accept",
    "dcc_rej_bad_req",
    "dcc_rej_overload",
    "dcc_compile_ok",
    "dcc_compile_error",
    "dcc_compile_timeout",
    "dcc_cli_disconnect",
    "dcc_other",
    "dcc_longest_job",
    "dcc_longest_job_compiler",
    "dcc_longest_job_time_msecs",
    "dcc_max_kids",
    "dcc_avg_kids1",
    "dcc_avg_kids2",
    "dcc_avg_kids3",
    "dcc_current_load",
    "dcc_load1",
    "dcc_load2",
    "dcc_load3",
    "dcc_num_compiles1",
    "dcc_num_compiles2",
    "dcc_num_compiles3",
    "dcc_num_procstate_D",
    "dcc_max_RSS",
    "dcc_max_RSS_name",
    "dcc_io_rate",
    "dcc_free_space",
    "</distccstats>",
];

fn get_stats(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn stats_lists_distccd_fields_in_order_and_counts_compiles() {
    let daemon = Daemon::start(
        "process-stats",
        DaemonOptions {
            // The stats port is the second socket handed over (fd 4).
            args: vec!["--stats".into(), "--jobs".into(), "3".into()],
            stats_listener: true,
            ..DaemonOptions::default()
        },
    );
    let stats_port = daemon.stats_port.unwrap();
    let before = get_stats(stats_port);
    assert!(before.contains("\ndcc_compile_ok 0\n"), "{before}");
    assert!(before.contains("\ndcc_longest_job none\n"), "{before}");

    let work = TestDir::new("process-stats-client");
    for name in ["first", "second"] {
        let out = compile(&work, &daemon.host(false), name, &[]);
        assert_compiled(&out, &work, name, &daemon.log());
    }
    // One compile error, reported as such rather than retried locally.
    work.write("broken.c", "int broken(void) { return }\n");
    let out = distcc(
        &work.path,
        &daemon.host(false),
        &["gcc", "-c", "broken.c", "-o", "broken.o"],
        &[("DISTCC_SKIP_LOCAL_RETRY", "1")],
    );
    assert_eq!(out.status.code(), Some(1));

    let reply = get_stats(stats_port);
    assert!(
        reply.starts_with("HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: close\n\n"),
        "{reply}"
    );
    let block = reply
        .split_once("<distccstats>\n")
        .unwrap_or_else(|| panic!("no <distccstats>: {reply}"))
        .1;
    let names: Vec<&str> = block
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .take(STATS_FIELDS.len())
        .collect();
    assert_eq!(names, STATS_FIELDS, "{reply}");
    let value = |name: &str| -> String {
        block
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}: {reply}"))
            .to_string()
    };
    assert_eq!(value("dcc_tcp_accept"), "3", "{reply}");
    assert_eq!(value("dcc_compile_ok"), "2", "{reply}");
    assert_eq!(value("dcc_compile_error"), "1", "{reply}");
    assert_eq!(value("dcc_rej_bad_req"), "0", "{reply}");
    assert_eq!(value("dcc_max_kids"), "3", "{reply}");
    assert_eq!(value("dcc_num_compiles1"), "3", "{reply}");
    assert!(
        ["first.c", "second.c"].contains(&value("dcc_longest_job").as_str()),
        "{reply}"
    );
    assert!(value("dcc_longest_job_time_msecs").parse::<u64>().is_ok());
    assert!(value("dcc_free_space").ends_with(" MB"), "{reply}");

    // The stats port obeys the access list too.
    let mut s = connect_from_127_0_0_2(stats_port);
    assert!(send_and_read(&mut s, b"GET / HTTP/1.0\r\n\r\n").is_empty());
    eprintln!("stats after 3 jobs:\n{block}");
}

#[test]
fn powerpc_daemon_under_qemu_serves_the_debian_client() {
    let ppc = cross::binary(&POWERPC);
    need(POWERPC.qemu, "qemu-user-static");
    let program: Vec<OsString> = vec![
        POWERPC.qemu.into(),
        "-0".into(),
        "distccd".into(),
        ppc.into(),
    ];
    let start = Instant::now();
    let mut daemon = PortDaemon::start(
        "process-powerpc",
        &program,
        "127.0.0.1",
        &["--allow", "127.0.0.1", "--jobs", "2"],
    );
    let started = start.elapsed();
    let work = TestDir::new("process-powerpc-client");
    for (name, lzo) in [("ppc_v1", ""), ("ppc_v2", ",lzo")] {
        let host = format!("127.0.0.1:{}/2{lzo}", daemon.port);
        let out = compile(&work, &host, name, &[]);
        assert_compiled(&out, &work, name, &daemon.log());
    }
    let log = daemon.log();
    assert_eq!(log.matches("COMPILE_OK").count(), 2, "{log}");
    assert!(log.contains("serving with 2 job slots"), "{log}");
    assert_eq!(daemon.terminate().code(), Some(0), "{}", daemon.log());
    eprintln!(
        "powerpc distccd under {}: started in {started:?}, two jobs served in {:?}",
        POWERPC.qemu,
        start.elapsed()
    );
}

/// Started as root, the daemon runs as an unprivileged user; either way a
/// compiler's stray files stay inside its job directory, which goes with the job.
#[test]
fn drops_root_and_writes_only_inside_the_job_directory() {
    let stray =
        "cd_here=$(pwd); echo stray > stray.txt; echo \"$cd_here\" > \"$MARKS/straycc-cwd\"; \
                 exec gcc \"$@\"";
    let mut opts = DaemonOptions::default();
    opts.masquerade.push("straycc".into());
    opts.scripts.push(("straycc".into(), stray.into()));
    let mut daemon = Daemon::start("process-confined", opts);
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let uids: Vec<u32> = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|u| u.parse().unwrap())
        .collect();
    // SAFETY: plain system call.
    if unsafe { libc::geteuid() } == 0 {
        assert!(
            uids.iter().all(|&u| u != 0),
            "daemon still has root: {uids:?}"
        );
    }
    let work = TestDir::new("process-confined-client");
    work.write("s.c", "int s;\n");
    // The client preprocesses with its own straycc, a plain gcc.
    work.script("client-bin/straycc", "exec gcc \"$@\"");
    let path = format!(
        "{}:{}",
        work.join("client-bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = distcc(
        &work.path,
        &daemon.host(false),
        &["straycc", "-c", "s.c", "-o", "s.o"],
        &[("DISTCC_FALLBACK", "0"), ("PATH", &path)],
    );
    assert!(
        out.status.success(),
        "{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    let cwd = std::fs::read_to_string(daemon.marks.join("straycc-cwd")).unwrap();
    let tmp = daemon.dir.join("daemon-tmp");
    assert!(
        cwd.trim()
            .starts_with(&format!("{}/distccd_", tmp.display())),
        "compiler ran in {cwd}, not in a job directory under {}",
        tmp.display()
    );
    daemon.assert_no_leftovers();
    assert!(!work.join("stray.txt").exists());
    assert!(daemon.terminate().success());
}

/// Regression: the stats reply was one write on a non-blocking socket, so
/// whatever did not fit in the socket buffers was dropped. 72 running jobs
/// with 62 KiB source names make a reply of about 4.4 MiB, more than
/// loopback's largest send buffer (4 MiB) and the client's small receive
/// buffer together; it must arrive whole.
#[test]
fn a_stats_reply_larger_than_the_socket_buffer_arrives_whole() {
    const JOBS: usize = 72;
    let mut opts = DaemonOptions {
        args: vec!["--stats".into(), "--jobs".into(), JOBS.to_string()],
        stats_listener: true,
        ..DaemonOptions::default()
    };
    opts.masquerade.push("waitcc".into());
    // Waits until the test leaves `go` (at most 30 s), then writes an object.
    opts.scripts.push((
        "waitcc".into(),
        "touch \"$MARKS/started.$$\"\ni=0\nwhile [ ! -e \"$MARKS/../go\" ] && [ $i -lt 150 ]; do \
         sleep 0.2; i=$((i + 1)); done\nwhile [ $# -gt 1 ]; do [ \"$1\" = -o ] && echo obj > \"$2\"; \
         shift; done"
            .into(),
    ));
    let daemon = Daemon::start("process-stats-big", opts);
    let names: Vec<String> = (0..JOBS)
        .map(|i| format!("{}{i}.c", "n".repeat(62 * 1024)))
        .collect();
    let clients: Vec<TcpStream> = names
        .iter()
        .map(|name| {
            let argv: [&[u8]; 5] = [b"waitcc", b"-c", name.as_bytes(), b"-o", b"x.o"];
            let mut s = daemon.connect();
            s.write_all(&encode_request(1, &argv, b"int x;\n")).unwrap();
            s
        })
        .collect();
    let start = Instant::now();
    while daemon.marks().len() < JOBS {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the compilers did not start: {} of {JOBS}\n{}",
            daemon.marks().len(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A small receive buffer: the client takes the reply a few KiB at a time.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], daemon.stats_port.unwrap()).into();
    sock.connect(&addr.into()).unwrap();
    let mut s = TcpStream::from(sock);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    std::fs::write(daemon.marks.join("../go"), "").unwrap();
    assert!(
        reply.len() > JOBS * 62 * 1024 && reply.ends_with("</distccjobs>\n"),
        "{} bytes, ending {:?}",
        reply.len(),
        &reply[reply.len().saturating_sub(80)..]
    );
    let jobs = reply.split_once("<distccjobs>\n").unwrap().1;
    for name in &names {
        assert!(
            jobs.lines()
                .any(|l| l.starts_with("dcc_job 127.0.0.1:") && l.contains(name.as_str())),
            "no job line for {}…",
            &name[name.len() - 8..]
        );
    }
    for mut s in clients {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            out.starts_with(b"DONE00000001STAT00000000"),
            "{}",
            common::text(&out[..out.len().min(80)])
        );
    }
}

/// The poll's token space below connections holds 62 listening sockets:
/// 32 addresses with `--stats` make 64, which the daemon refuses at start-up
/// with a clear error instead of giving two sockets one token.
#[test]
fn more_listening_sockets_than_tokens_is_an_error() {
    let dir = TestDir::new("process-listeners");
    let tmp = dir.shared_dir("tmp");
    let (port, stats_port) = (common::free_port(), common::free_port());
    let mut cmd = Command::new(bin());
    cmd.args([
        "daemon",
        "--no-detach",
        "--log-stderr",
        "--enable-tcp-insecure",
    ])
    .args(["--allow", "127.0.0.0/8", "--stats"])
    .args(["--port", &port.to_string()])
    .args(["--stats-port", &stats_port.to_string()])
    .env("TMPDIR", &tmp)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for i in 1..=32 {
        cmd.args(["--listen", &format!("127.0.0.{i}")]);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the daemon served 64 listening sockets");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let log = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(100), "{log}");
    assert!(
        log.contains("64 listening sockets; at most 62 are served"),
        "{log}"
    );
}
