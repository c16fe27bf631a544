//! The encrypted channel end to end: keys made by `distcc-rs key`, a daemon
//! with `--key` and `--auth-keys`, clients with `,key=`. Every refused
//! connection runs nothing, which the daemon's marker compiler proves; a
//! relay in the test flips bytes, records and replays sessions. The
//! static powerpc client under qemu goes through the same cases.

use crate::common;

use common::cross::{run_bounded, SlowMachine, POWERPC};
use common::daemon::{bin, client, distcc, need, Daemon, DaemonOptions};
use common::{local_object, text, wait_until, TestDir};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A source whose text must never be seen on the wire.
const SECRET_C: &str = "int secret_marker_4711(int x) { return x * 4711; }\n";

/// A compiler that leaves a mark in $MARKS each time it runs, then is gcc.
/// Marks each compile it runs; the daemon's `-v` for the compiler's
/// identity is not a compile.
const MARKER: &str = "[ \"$1\" = -v ] || touch \"$MARKS/ran.$$\"; exec /usr/bin/gcc \"$@\"";

/// Runs `distcc-rs key generate PATH`; returns the public key line.
pub(crate) fn generate(path: &Path) -> String {
    let out = Command::new(bin())
        .args(["key", "generate"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "key generate: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// The keys of one test: the daemon's, an accepted client's, and an
/// outsider's (a client key not in --auth-keys, a server key not the daemon's).
pub(crate) struct Keys {
    dir: TestDir,
}

impl Keys {
    pub(crate) fn new(name: &str) -> Keys {
        let dir = TestDir::new(name);
        let client_line = generate(&dir.join("client"));
        generate(&dir.join("server"));
        generate(&dir.join("outsider"));
        dir.write("auth", format!("# the accepted clients\n{client_line}\n"));
        Keys { dir }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The daemon's options: --key, --auth-keys, and the marker compiler.
    pub(crate) fn daemon(&self) -> DaemonOptions {
        DaemonOptions {
            args: vec![
                "--key".into(),
                self.path("server"),
                "--auth-keys".into(),
                self.path("auth"),
            ],
            scripts: marker_scripts(),
            ..DaemonOptions::default()
        }
    }
}

fn marker_scripts() -> Vec<(String, String)> {
    ["gcc", "x86_64-linux-gnu-gcc"]
        .iter()
        .map(|name| (name.to_string(), MARKER.to_string()))
        .collect()
}

/// A host entry for `port` pinning the server key in `pubkey`.
pub(crate) fn keyed_host(port: u16, pubkey: &str, lzo: bool) -> String {
    format!(
        "127.0.0.1:{port}/8{},key={pubkey}",
        if lzo { ",lzo" } else { "" }
    )
}

/// Compiles `x.c` in `work` with `gcc` through our client as `client_key`,
/// falling back to a local compile or not; returns the client's stderr
/// (see [`compile_with`]).
fn compile(work: &TestDir, hosts: &str, client_key: &str, fallback: bool) -> String {
    let out = compile_with(work, hosts, &[("DISTCC_RS_KEY", client_key)], fallback);
    text(&out.stderr)
}

/// Compiles `x.c` in `work` with `gcc` through our client with `env`,
/// falling back to a local compile or not, with no backoff between cases;
/// checks it succeeded and the object is the local one.
pub(crate) fn compile_with(
    work: &TestDir,
    hosts: &str,
    env: &[(&str, &str)],
    fallback: bool,
) -> Output {
    let want = local_object(&work.path, "x.c");
    let _ = std::fs::remove_file(work.join("x.o"));
    // The list's order decides, as in distcc 3.4: a relay listed first is
    // tried first, although the daemon behind it answers placement's query.
    let mut env = env.to_vec();
    env.extend([("DISTCC_PLACEMENT", "0"), ("DISTCC_BACKOFF_PERIOD", "0")]);
    if !fallback {
        env.push(("DISTCC_FALLBACK", "0"));
    }
    let out = client(&work.path, hosts, &["gcc", "-c", "x.c"], &env);
    assert!(out.status.success(), "client: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read(work.join("x.o")).unwrap(),
        want,
        "x.o differs"
    );
    out
}

fn work_dir(name: &str) -> TestDir {
    let work = TestDir::new(name);
    work.write("x.c", SECRET_C);
    work
}

/// A test's client: compiles `x.c` on the hosts given as the key named
/// (a file of [`Keys`]), with a local fallback or not; checks the object
/// and returns the client's stderr. The key cases below take one, so that
/// the x86_64 client and the powerpc one go through the same cases.
type Compile<'a> = &'a dyn Fn(&str, &str, bool) -> String;

/// Our x86_64 client in `work`, with the keys of `keys`.
fn local_client<'a>(work: &'a TestDir, keys: &'a Keys) -> impl Fn(&str, &str, bool) -> String + 'a {
    move |hosts, key, fallback| compile(work, hosts, &keys.path(key), fallback)
}

/// An unknown client key and a wrong pinned server key: each job is built
/// locally, and the daemon runs nothing.
fn refused_keys_run_nothing(compile: Compile, daemon: &Daemon, keys: &Keys, lzo: bool) {
    let ran = daemon.marks().len();
    let host = keyed_host(daemon.port, &keys.path("server.pub"), lzo);
    let stderr = compile(&host, "outsider", true);
    assert!(stderr.contains("failed to distribute"), "{stderr}");
    daemon.wait_for_log("is not in --auth-keys; nothing run", Duration::from_secs(5));
    let wrong = keyed_host(daemon.port, &keys.path("outsider.pub"), lzo);
    let stderr = compile(&wrong, "client", true);
    assert!(stderr.contains("failed to distribute"), "{stderr}");
    daemon.wait_for_log("not for this daemon's key", Duration::from_secs(5));
    assert_eq!(daemon.marks().len(), ran, "{:?}", daemon.marks());
}

/// A flipped byte either way, past the handshake (50 + 66 bytes up, 50
/// down: in the first frames): that host fails, the job is retried on the
/// next one, the object is right.
fn flipped_bytes_fail_the_host(compile: Compile, daemon: &Daemon, keys: &Keys, lzo: bool) {
    let server_pub = keys.path("server.pub");
    let direct = keyed_host(daemon.port, &server_pub, lzo);
    for (up, at, runs) in [(true, 140, 0), (false, 70, 1)] {
        let before = daemon.marks().len();
        let (port, capture) = relay(daemon.port, Some((up, at)));
        let hosts = format!("{} {direct}", keyed_host(port, &server_pub, lzo));
        let stderr = compile(&hosts, "client", false);
        assert!(stderr.contains("failed to distribute"), "{stderr}");
        let (to_server, _) = captured(&capture, at);
        assert!(to_server.len() > at);
        // The tampered job ran (down) or not (up); the retry ran once.
        assert_eq!(daemon.marks().len(), before + runs + 1, "{}", daemon.log());
    }
}

/// One job through a recording relay: neither direction shows the source
/// or a distcc header. Returns what the client sent.
fn a_recorded_session(compile: Compile, daemon: &Daemon, keys: &Keys, lzo: bool) -> Vec<u8> {
    let (port, capture) = relay(daemon.port, None);
    compile(
        &keyed_host(port, &keys.path("server.pub"), lzo),
        "client",
        false,
    );
    let (to_server, to_client) = captured(&capture, 200);
    for wire in [&to_server, &to_client] {
        assert!(
            !contains(wire, b"secret_marker_4711"),
            "plaintext on the wire"
        );
        assert!(!contains(wire, b"DIST") && !contains(wire, b"DONE"));
    }
    to_server
}

/// Everything a client sent, played again: the daemon answers the first
/// message with a fresh key, so the rest opens to nothing and nothing runs.
fn a_replay_runs_nothing(daemon: &Daemon, to_server: &[u8]) {
    let (ran, failed) = (
        daemon.marks().len(),
        daemon.log().matches(KEY_FAILED).count(),
    );
    let mut s = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(to_server);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.len() <= 50, "the replay got {} bytes", reply.len());
    wait_for_count(daemon, KEY_FAILED, failed + 1);
    assert_eq!(daemon.marks().len(), ran, "{}", daemon.log());
}

/// What the daemon logs for a third message that fails.
const KEY_FAILED: &str = "the client's key failed the handshake";

/// 500 idle connections to the daemon, bounded in time; every other one
/// sends `hello` (a client's first message) and never its third.
fn idle_half_handshakes(daemon: &Daemon, hello: &[u8]) -> Vec<TcpStream> {
    let mut idle = Vec::new();
    let started = Instant::now();
    for i in 0..500 {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", daemon.port)) else {
            panic!("connection {i} failed");
        };
        if i % 2 == 0 {
            s.write_all(hello).unwrap();
        }
        idle.push(s);
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    idle
}

#[test]
fn authenticated_compiles_match_local_ones() {
    need("gcc", "gcc");
    let keys = Keys::new("trust-ok-keys");
    let daemon = Daemon::start("trust-ok", keys.daemon());
    let work = work_dir("trust-ok-work");
    for lzo in [false, true] {
        let host = keyed_host(daemon.port, &keys.path("server.pub"), lzo);
        compile(&work, &host, &keys.path("client"), false);
    }
    assert_eq!(daemon.marks().len(), 2, "{}", daemon.log());
    assert_eq!(daemon.log().matches(" COMPILE_OK ").count(), 2);
    // An x86_64 client picks AES-256-GCM.
    daemon.wait_for_log("), AES-256-GCM", Duration::from_secs(5));
    // No key material in the log: neither base64 key appears.
    let client_pub = std::fs::read_to_string(keys.dir.join("client.pub")).unwrap();
    let key_text = client_pub.split_whitespace().nth(1).unwrap();
    assert!(!daemon.log().contains(key_text), "{}", daemon.log());
}

#[test]
fn key_files_are_private_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("trust-keyfiles");
    let line = generate(&dir.join("k"));
    assert!(line.starts_with("distcc-rs-x25519 "), "{line}");
    let mode = std::fs::metadata(dir.join("k"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join("k.pub")).unwrap().trim(),
        line
    );
    let public = Command::new(bin())
        .args(["key", "public"])
        .arg(dir.join("k"))
        .output()
        .unwrap();
    assert_eq!(text(&public.stdout).trim(), line);
    let again = Command::new(bin())
        .args(["key", "generate"])
        .arg(dir.join("k"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("k.pub")).unwrap().trim(),
        line
    );
}

#[test]
fn an_unknown_client_key_or_a_wrong_server_key_runs_nothing() {
    need("gcc", "gcc");
    let keys = Keys::new("trust-refused-keys");
    let daemon = Daemon::start("trust-refused", keys.daemon());
    let work = work_dir("trust-refused-work");
    refused_keys_run_nothing(&local_client(&work, &keys), &daemon, &keys, false);
    assert!(daemon.marks().is_empty(), "{:?}", daemon.marks());
}

#[test]
fn debian_distcc_and_a_truncated_handshake_run_nothing() {
    need("gcc", "gcc");
    let keys = Keys::new("trust-plain-keys");
    let daemon = Daemon::start("trust-plain", keys.daemon());
    let work = work_dir("trust-plain-work");
    let out = distcc(&work.path, &daemon.host(false), &["gcc", "-c", "x.c"], &[]);
    // distcc 3.4 gets no answer and compiles locally.
    assert!(out.status.success(), "{}", text(&out.stderr));
    daemon.wait_for_log("a plain distcc request", Duration::from_secs(10));
    // A first message's length and half its bytes, then the client goes away.
    let mut s = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    s.write_all(&[0, 48]).unwrap();
    s.write_all(&[7; 24]).unwrap();
    drop(s);
    daemon.wait_for_log(
        "closed during the handshake; nothing run",
        Duration::from_secs(10),
    );
    assert!(daemon.marks().is_empty(), "{:?}", daemon.marks());
}

/// One relayed TCP session: what went each way.
#[derive(Default)]
struct Capture {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
}

/// A relay on a free port of 127.0.0.1 that forwards one connection to
/// `port`, flipping the byte at `flip` (direction: true is towards the
/// server), and records both directions.
fn relay(port: u16, flip: Option<(bool, usize)>) -> (u16, Arc<Mutex<Capture>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let capture = Arc::new(Mutex::new(Capture::default()));
    let cap = capture.clone();
    std::thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let server = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let up_flip = flip.filter(|f| f.0).map(|f| f.1);
        let down_flip = flip.filter(|f| !f.0).map(|f| f.1);
        let cap2 = cap.clone();
        let up = std::thread::spawn(move || pump(client, server, up_flip, &cap2, true));
        pump(s2, c2, down_flip, &cap, false);
        let _ = up.join();
    });
    (relay_port, capture)
}

/// Copies `from` to `to` until EOF or an error (bounded by read timeouts),
/// flipping one byte, recording what passed.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    flip: Option<usize>,
    cap: &Mutex<Capture>,
    up: bool,
) {
    from.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 16384];
    let mut offset = 0;
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Some(at) = flip.filter(|&at| at >= offset && at < offset + n) {
            buf[at - offset] ^= 0x20;
        }
        offset += n;
        let mut cap = cap.lock().unwrap();
        if up {
            cap.to_server.extend_from_slice(&buf[..n]);
        } else {
            cap.to_client.extend_from_slice(&buf[..n]);
        }
        drop(cap);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// Waits until the relay's client has closed both ways.
fn captured(capture: &Mutex<Capture>, up_at_least: usize) -> (Vec<u8>, Vec<u8>) {
    assert!(
        wait_until(Duration::from_secs(10), || capture
            .lock()
            .unwrap()
            .to_server
            .len()
            >= up_at_least),
        "the relay saw too little"
    );
    let cap = capture.lock().unwrap();
    (cap.to_server.clone(), cap.to_client.clone())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_flipped_byte_either_way_fails_the_host_and_the_job_is_retried() {
    need("gcc", "gcc");
    let keys = Keys::new("trust-flip-keys");
    let daemon = Daemon::start("trust-flip", keys.daemon());
    let work = work_dir("trust-flip-work");
    flipped_bytes_fail_the_host(&local_client(&work, &keys), &daemon, &keys, false);
    // The job whose reply was tampered with, and the two retries.
    assert_eq!(daemon.log().matches(" COMPILE_OK ").count(), 3);
}

#[test]
fn the_wire_shows_no_source_and_a_replayed_session_runs_nothing() {
    need("gcc", "gcc");
    let keys = Keys::new("trust-replay-keys");
    let daemon = Daemon::start("trust-replay", keys.daemon());
    let work = work_dir("trust-replay-work");
    let to_server = a_recorded_session(&local_client(&work, &keys), &daemon, &keys, false);
    assert_eq!(daemon.marks().len(), 1);
    // The same capture through a relay to a plain daemon does show the
    // source: the check above could fail.
    let plain = Daemon::start("trust-replay-plain", DaemonOptions::default());
    let (port, capture) = relay(plain.port, None);
    compile(
        &work,
        &format!("127.0.0.1:{port}/8"),
        &keys.path("client"),
        false,
    );
    assert!(contains(&captured(&capture, 200).0, b"secret_marker_4711"));
    a_replay_runs_nothing(&daemon, &to_server);
    assert_eq!(daemon.marks().len(), 1, "{}", daemon.log());
}

#[test]
fn five_hundred_idle_half_handshakes_do_not_stop_a_real_job() {
    need("gcc", "gcc");
    let keys = Keys::new("trust-idle-keys");
    let daemon = Daemon::start("trust-idle", keys.daemon());
    let work = work_dir("trust-idle-work");
    // A real client's first message, recorded by a relay.
    let session = a_recorded_session(&local_client(&work, &keys), &daemon, &keys, false);
    let idle = idle_half_handshakes(&daemon, &session[..50]);
    let t = Instant::now();
    let host = keyed_host(daemon.port, &keys.path("server.pub"), false);
    compile(&work, &host, &keys.path("client"), false);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(daemon.log().matches(" COMPILE_OK ").count(), 2);
    drop(idle);
}

/// The load a daemon on `port` answers to a claim (placement's datagram).
fn claim_answer(port: u16) -> distcc_rs::load::Load {
    use distcc_rs::load::{query, read_answer, Ask};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.send_to(&query(4711, Ask::Claim), ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf).expect("a load answer");
    read_answer(&buf[..n], 4711).expect("a well-formed answer")
}

#[test]
fn a_daemon_with_auth_keys_counts_no_claims() {
    let keys = Keys::new("trust-claim-keys");
    let keyed = Daemon::start("trust-claim", keys.daemon());
    let plain = Daemon::start("trust-claim-plain", DaemonOptions::default());
    // A plain daemon counts the claim as a job on its way, at once; so the
    // keyed one's 0 is not just an answer sent too early.
    assert_eq!(claim_answer(plain.port).arriving, 1);
    for _ in 0..3 {
        let load = claim_answer(keyed.port);
        assert_eq!(load.arriving, 0, "{load:?}");
    }
}

/// The static powerpc client under qemu (big-endian, ChaCha20-Poly1305),
/// its `cc` the cross clang, against an x86_64 daemon with the marker.
pub(crate) struct PowerpcClient {
    machine: SlowMachine,
    pub(crate) keys: Keys,
}

impl PowerpcClient {
    pub(crate) fn new(name: &str, keys: Keys) -> PowerpcClient {
        let triple = POWERPC.gnu_triple;
        let machine = SlowMachine::new(&POWERPC, name);
        machine.cc(&format!("exec clang --target={triple} \"$@\""));
        machine.dir.write("x.c", SECRET_C);
        let local = Command::new("clang")
            .args([&format!("--target={triple}"), "-c", "x.c", "-o", "local.o"])
            .current_dir(&machine.dir.path)
            .output()
            .unwrap();
        assert!(local.status.success(), "{}", text(&local.stderr));
        PowerpcClient { machine, keys }
    }

    /// The daemon for it: --key, --auth-keys, the cross clang as `cc`, marked.
    pub(crate) fn daemon(&self, name: &str) -> Daemon {
        let triple = POWERPC.gnu_triple;
        let compiler = format!(
            "[ \"$1\" = -v ] || touch \"$MARKS/ran.$$\"; exec clang --target={triple} \"$@\""
        );
        self.daemon_with(name, compiler)
    }

    /// [`PowerpcClient::daemon`] with `compiler` as the body of its `cc`.
    pub(crate) fn daemon_with(&self, name: &str, compiler: String) -> Daemon {
        Daemon::start(
            name,
            DaemonOptions {
                masquerade: vec!["cc".into()],
                scripts: vec![("cc".into(), compiler)],
                ..self.keys.daemon()
            },
        )
    }

    /// `cc -c x.c` on `hosts` as the key file `key` (of `keys`), in the
    /// list's order, no backoff between cases; checks that it succeeded
    /// and that x.o is the local object. Returns the client's stderr.
    pub(crate) fn compile(&self, hosts: &str, key: &str, fallback: bool) -> String {
        let _ = std::fs::remove_file(self.machine.dir.join("x.o"));
        let key = self.keys.path(key);
        let mut env = vec![
            ("DISTCC_RS_KEY", key.as_str()),
            ("DISTCC_PLACEMENT", "0"),
            ("DISTCC_BACKOFF_PERIOD", "0"),
        ];
        if !fallback {
            env.push(("DISTCC_FALLBACK", "0"));
        }
        let out = run_bounded(
            self.machine
                .distcc_rs(hosts, &["cc", "-c", "x.c", "-o", "x.o"], &env),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let dir = &self.machine.dir;
        assert_eq!(
            std::fs::read(dir.join("x.o")).unwrap(),
            std::fs::read(dir.join("local.o")).unwrap(),
            "x.o differs"
        );
        text(&out.stderr)
    }
}

/// Waits until `text` is in the daemon's log `count` times.
fn wait_for_count(daemon: &Daemon, text: &str, count: usize) {
    assert!(
        wait_until(Duration::from_secs(10), || daemon
            .log()
            .matches(text)
            .count()
            >= count),
        "daemon log has not {count} '{text}':\n{}",
        daemon.log()
    );
}

#[test]
fn the_powerpc_client_under_qemu_passes_every_key_case() {
    let ppc = PowerpcClient::new("trust-ppc-client", Keys::new("trust-ppc-keys"));
    let daemon = ppc.daemon("trust-ppc");
    let server_pub = ppc.keys.path("server.pub");
    let direct = keyed_host(daemon.port, &server_pub, true);
    // Authenticated: the object is the local one; the G4's stand-in picks
    // ChaCha20-Poly1305, and the daemon reads either suite.
    ppc.compile(&direct, "client", false);
    assert_eq!(daemon.marks().len(), 1, "{}", daemon.log());
    daemon.wait_for_log("ChaCha20-Poly1305", Duration::from_secs(5));
    let compile = |hosts: &str, key: &str, fallback: bool| ppc.compile(hosts, key, fallback);
    refused_keys_run_nothing(&compile, &daemon, &ppc.keys, true);
    flipped_bytes_fail_the_host(&compile, &daemon, &ppc.keys, true);
    let to_server = a_recorded_session(&compile, &daemon, &ppc.keys, false);
    let ran = daemon.marks().len();
    a_replay_runs_nothing(&daemon, &to_server);
    // 500 idle half-handshakes with the client's first message do not stop
    // its next job.
    let idle = idle_half_handshakes(&daemon, &to_server[..50]);
    ppc.compile(&direct, "client", false);
    assert_eq!(daemon.marks().len(), ran + 1, "{}", daemon.log());
    drop(idle);
}

#[test]
fn wrap_makes_a_key_for_its_instance_and_prints_the_host_line() {
    let dir = TestDir::new("trust-wrap");
    let user = text(&Command::new("id").arg("-un").output().unwrap().stdout)
        .trim()
        .to_string();
    let run = || {
        Command::new(bin())
            .args([
                "wrap",
                "--target",
                "powerpc-unknown-linux-gnu",
                "--key",
                "--user",
                &user,
            ])
            .args([
                "--compiler",
                need("clang", "clang").to_str().unwrap(),
                "--dir",
            ])
            .arg(dir.join("helper"))
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let helper = dir.join("helper");
    let line = std::fs::read_to_string(helper.join("key.pub")).unwrap();
    assert!(
        text(&out.stdout).contains(line.trim()),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains(",key="), "{}", text(&out.stdout));
    let unit = std::fs::read_to_string(helper.join("distcc-rs-powerpc-unknown-linux-gnu.service"))
        .unwrap();
    let flags = format!(
        "--key {} --auth-keys {}",
        helper.join("key").display(),
        helper.join("auth-keys").display()
    );
    assert!(unit.contains(&flags), "{unit}");
    // A second run keeps the key.
    assert!(run().status.success());
    assert_eq!(
        std::fs::read_to_string(helper.join("key.pub")).unwrap(),
        line
    );
}
