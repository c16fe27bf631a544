//! Hostile peers against the daemon: truncated, malformed, oversized and random requests, LZO bombs, idle and slow connections, and a fuzz loop of the request decoder.
//!
//! Every case is bounded in time. After each case the real Debian client
//! must still compile through the same daemon with `DISTCC_FALLBACK=0` (so
//! a local fallback cannot hide a failure), and at the end the daemon's
//! resident memory must still be small.

use crate::common;

use common::daemon::{distcc, need, Daemon, DaemonOptions};
use common::{wait_until, TestDir};
use distcc_rs::proto::{self, encode_request, Item, Limits, ProtoError, RequestDecoder};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The input limit the hostile daemon runs with (`DISTCC_RS_MAX_INPUT`), so
/// that an LZO bomb reaches it with a few kilobytes on the wire.
const MAX_INPUT: usize = 1024 * 1024;

/// Longest any single hostile connection may stay open.
const CASE_LIMIT: Duration = Duration::from_secs(5);

/// The daemon's resident memory must stay under this after the whole series.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// splitmix64: a small seeded generator, so every run sends the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// VmRSS of a process in KiB, from /proc/PID/status.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"))
}

/// A valid request for `gcc -c hello.c -o hello.o`.
fn valid_request(version: u32) -> Vec<u8> {
    let argv: [&[u8]; 5] = [b"gcc", b"-c", b"hello.c", b"-o", b"hello.o"];
    encode_request(version, &argv, b"int hello(void) { return 42; }\n")
}

/// The arguments of [`valid_request`] as wire bytes, up to the DOTI header.
fn command_part(version: u32) -> Vec<u8> {
    let argv: [&[u8]; 5] = [b"gcc", b"-c", b"hello.c", b"-o", b"hello.o"];
    let mut out = Vec::new();
    proto::put_header(&mut out, &proto::DIST, version);
    proto::put_header(&mut out, &proto::ARGC, argv.len() as u32);
    for arg in argv {
        proto::put_body(&mut out, &proto::ARGV, arg);
    }
    out
}

/// Sends `bytes` on a fresh connection, half-closes if asked, and reads until
/// the daemon closes. Panics if the daemon keeps the connection open longer
/// than [`CASE_LIMIT`]. A reset counts as a close.
fn hit(daemon: &Daemon, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let start = Instant::now();
    let mut s = daemon.connect();
    s.set_read_timeout(Some(CASE_LIMIT)).unwrap();
    // The daemon may close (and reset) before it has read everything.
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "daemon kept a hostile connection open for {:?} (sent {} bytes starting {:?})",
                    start.elapsed(),
                    bytes.len(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
                )
            }
            Err(_) => break,
        }
    }
    assert!(start.elapsed() < CASE_LIMIT);
    reply
}

/// Sends `bytes` that reach a job and checks that the daemon refuses it with
/// one `DENY` packet and closes.
fn denied(daemon: &Daemon, bytes: &[u8]) {
    let reply = hit(daemon, bytes, false);
    assert!(
        common::deny_reason(&reply).is_some(),
        "daemon did not deny a hostile request ({:?}...): {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(40)]),
        String::from_utf8_lossy(&reply[..reply.len().min(80)])
    );
}

/// Sends `bytes` and checks that the daemon closes without a single byte.
fn refused(daemon: &Daemon, bytes: &[u8], half_close: bool) {
    let reply = hit(daemon, bytes, half_close);
    assert!(
        reply.is_empty(),
        "daemon answered a hostile request ({:?}...) with {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(40)]),
        String::from_utf8_lossy(&reply[..reply.len().min(80)])
    );
}

/// Compiles one small file through the daemon with the Debian client and
/// checks that it really went there and came back as an ELF object.
struct Prober {
    work: TestDir,
    count: usize,
}

impl Prober {
    fn new(name: &str) -> Prober {
        need("gcc", "gcc");
        need("distcc", "distcc");
        Prober {
            work: TestDir::new(name),
            count: 0,
        }
    }

    fn compile(&mut self, daemon: &Daemon, after: &str) -> Duration {
        self.count += 1;
        let n = self.count;
        let src = format!("probe{n}.c");
        let obj = format!("probe{n}.o");
        self.work
            .write(&src, format!("int probe{n}(int x) {{ return x * {n}; }}\n"));
        let oks = daemon.log().matches("COMPILE_OK").count();
        let start = Instant::now();
        let out = distcc(
            &self.work.path,
            &daemon.host(n % 2 == 0),
            &["gcc", "-c", &src, "-o", &obj],
            &[("DISTCC_FALLBACK", "0")],
        );
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "real compile after {after} failed ({}): {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            daemon.log()
        );
        let object = std::fs::read(self.work.join(&obj)).unwrap();
        assert!(object.starts_with(b"\x7fELF"), "{obj} is not ELF");
        // The summary line is logged before the result is sent.
        assert_eq!(
            daemon.log().matches("COMPILE_OK").count(),
            oks + 1,
            "compile after {after} did not go through the daemon"
        );
        took
    }
}

/// Runs one case, then a real compile; logs the times and the daemon's RSS.
fn case(daemon: &mut Daemon, prober: &mut Prober, name: &str, body: impl FnOnce(&Daemon)) {
    let start = Instant::now();
    body(&*daemon);
    let took = start.elapsed();
    assert!(
        daemon.alive(),
        "daemon died in case {name}:\n{}",
        daemon.log()
    );
    let compile = prober.compile(daemon, name);
    eprintln!(
        "hostile case {name}: {took:?}; then a real compile in {compile:?}; daemon VmRSS {} KiB",
        rss_kib(daemon.child.id())
    );
    assert!(took < Duration::from_secs(60), "case {name} took {took:?}");
}

fn hostile_daemon(name: &str) -> Daemon {
    Daemon::start(
        name,
        DaemonOptions {
            args: vec!["--jobs".into(), "1".into()],
            env: vec![("DISTCC_RS_MAX_INPUT".into(), MAX_INPUT.to_string())],
            ..DaemonOptions::default()
        },
    )
}

#[test]
fn hostile_series_leaves_the_daemon_serving_in_bounded_memory() {
    let mut daemon = hostile_daemon("hostile-series");
    let mut prober = Prober::new("hostile-series-client");
    let pid = daemon.child.id();
    prober.compile(&daemon, "start-up");
    let rss_start = rss_kib(pid);
    eprintln!("daemon VmRSS after one compile: {rss_start} KiB");

    case(&mut daemon, &mut prober, "truncated packets", |d| {
        // Every cut point of a v1 and a v2 request, then a close.
        for version in [1, 2] {
            let full = valid_request(version);
            for cut in 0..full.len() {
                refused(d, &full[..cut], true);
            }
        }
    });

    case(&mut daemon, &mut prober, "bad hex", |d| {
        for bytes in [
            &b"DIST0000000g"[..],
            b"DIST0000000G",
            b"DIST 0000001",
            b"DIST-0000001",
            b"DIST0x000001",
            b"DIST00000001ARGC0000000z",
            b"DIST00000001ARGC00000001ARGV0000000\xff",
        ] {
            // No half-close: the daemon must close on its own.
            refused(d, bytes, false);
        }
    });

    case(&mut daemon, &mut prober, "derailed token", |d| {
        let mut doti_first = command_part(1);
        doti_first.truncate(24);
        doti_first.extend_from_slice(b"DOTI00000001x");
        for bytes in [
            &b"DIST00000001ARGV00000003gcc"[..],
            b"ARGC00000001",
            b"dist00000001",
            b"GET / HTTP/1.0\r\n\r\n",
            b"DIST00000001ARGC00000001DOTI00000000",
            &doti_first,
        ] {
            refused(d, bytes, false);
        }
        let mut extra_argv = command_part(1);
        extra_argv.extend_from_slice(b"ARGV00000002-g");
        denied(d, &extra_argv);
        // A derailed pump request and unknown versions are refused too.
        refused(d, b"DIST00000003CDIR00000001/ARGV00000001x", false);
        refused(d, b"DIST00000004", false);
        refused(d, b"DISTffffffff", false);
    });

    case(&mut daemon, &mut prober, "ARGC 2^32-1", |d| {
        let mut bytes = b"DIST00000001ARGCffffffff".to_vec();
        for _ in 0..1000 {
            bytes.extend_from_slice(b"ARGV00000001x");
        }
        refused(d, &bytes, false);
        refused(d, b"DIST00000001ARGC00000001ARGVffffffff", false);
        // One over the ARGC limit (64 Ki) is refused at once as well.
        refused(d, b"DIST00000002ARGC00010001", false);
    });

    case(&mut daemon, &mut prober, "DOTI 4 GiB", |d| {
        for version in [1, 2] {
            let mut bytes = command_part(version);
            bytes.extend_from_slice(b"DOTIffffffff");
            bytes.extend_from_slice(&[b'x'; 64 * 1024]);
            denied(d, &bytes);
        }
        // Just over the configured limit is refused as well.
        let mut bytes = command_part(1);
        bytes.extend_from_slice(format!("DOTI{:08x}", MAX_INPUT + 1).as_bytes());
        denied(d, &bytes);
    });

    case(&mut daemon, &mut prober, "LZO bomb", |d| {
        // 4 MiB of zeros, four times the limit, in a few KiB of LZO.
        let bomb = distcc_rs::lzo::compress(&vec![0u8; 4 * MAX_INPUT]);
        assert!(bomb.len() < MAX_INPUT / 16, "bomb is {} bytes", bomb.len());
        let mut bytes = command_part(2);
        proto::put_body(&mut bytes, &proto::DOTI, &bomb);
        let before = d.log().matches("cannot decompress").count();
        denied(d, &bytes);
        d.wait_for_log("expands beyond the size limit", Duration::from_secs(5));
        assert_eq!(d.log().matches("cannot decompress").count(), before + 1);
        // The same stream cut short, and with bytes after its end marker.
        let mut cut = command_part(2);
        proto::put_body(&mut cut, &proto::DOTI, &bomb[..bomb.len() / 2]);
        denied(d, &cut);
        let mut trailing = bomb.clone();
        trailing.extend_from_slice(b"junk");
        let mut bytes = command_part(2);
        proto::put_body(&mut bytes, &proto::DOTI, &trailing);
        denied(d, &bytes);
    });

    case(&mut daemon, &mut prober, "random bytes", |d| {
        let mut rng = Rng(0x6469_7374_6363_2d72);
        let valid = valid_request(1);
        for i in 0..96 {
            let len = 1 + rng.below(8192);
            let bytes = match i % 3 {
                0 => rng.bytes(len),
                // A good start, so the junk reaches the later parsing states.
                1 => {
                    let mut b = b"DIST00000001ARGC00000003".to_vec();
                    b.extend(rng.bytes(len));
                    b
                }
                _ => {
                    let mut b = valid[..rng.below(valid.len())].to_vec();
                    b.extend(rng.bytes(len));
                    b
                }
            };
            if i % 3 == 2 {
                // The junk may happen to complete the DOTI body, making a
                // request for a compile of junk that is then answered.
                let reply = hit(d, &bytes, true);
                assert!(
                    reply.is_empty()
                        || reply.starts_with(b"DONE00000001")
                        || common::deny_reason(&reply).is_some()
                );
            } else {
                refused(d, &bytes, true);
            }
        }
        // Damaged valid requests may still make sense to the daemon: then
        // it must answer with a well-formed response, or close.
        for _ in 0..64 {
            let mut bytes = valid_request(1 + rng.below(2) as u32);
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next() as u8;
            }
            let reply = hit(d, &bytes, true);
            assert!(
                reply.is_empty()
                    || reply.starts_with(b"DONE0000000")
                    || common::deny_reason(&reply).is_some(),
                "daemon sent {:?}",
                String::from_utf8_lossy(&reply[..reply.len().min(80)])
            );
        }
    });

    case(&mut daemon, &mut prober, "idle peer with --jobs 1", |d| {
        // Neither a silent peer nor one stalled after its arguments may
        // hold the only compile slot.
        let silent = d.connect();
        let mut stalled = d.connect();
        stalled.write_all(&command_part(1)).unwrap();
        let mut local = Prober::new("hostile-idle-client");
        let took = local.compile(d, "an idle connection");
        assert!(
            took < Duration::from_secs(10),
            "compile waited {took:?} behind idle peers"
        );
        drop(silent);
        drop(stalled);
    });

    case(&mut daemon, &mut prober, "500 idle connections", |d| {
        let mut idle: Vec<TcpStream> = Vec::with_capacity(500);
        for i in 0..500 {
            let mut s = d.connect();
            if i % 2 == 1 {
                s.write_all(b"DIST00000001ARG").unwrap();
            }
            idle.push(s);
        }
        let mut local = Prober::new("hostile-500-client");
        let took = local.compile(d, "500 idle connections");
        assert!(
            took < Duration::from_secs(10),
            "compile took {took:?} beside 500 idle connections"
        );
        eprintln!(
            "daemon VmRSS with 500 idle connections open: {} KiB",
            rss_kib(d.child.id())
        );
        // Every one of them is still open: none was dropped to make room.
        for s in &mut idle {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => panic!("an idle connection was closed early: {other:?}"),
            }
        }
    });

    let rss_end = rss_kib(pid);
    eprintln!(
        "daemon VmRSS: {rss_start} KiB after start-up, {rss_end} KiB after the hostile series \
         (limit {RSS_LIMIT_KIB} KiB)"
    );
    assert!(
        rss_end < RSS_LIMIT_KIB,
        "daemon VmRSS is {rss_end} KiB after the hostile series"
    );
    assert!(daemon.alive());
    // Give the daemon a moment to see the last idle connections close.
    daemon.assert_no_leftovers();
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

#[test]
fn read_deadline_closes_idle_and_dripping_peers() {
    let mut daemon = Daemon::start(
        "hostile-deadline",
        DaemonOptions {
            args: vec!["--jobs".into(), "1".into()],
            env: vec![("DISTCC_IO_TIMEOUT".into(), "2".into())],
            ..DaemonOptions::default()
        },
    );
    let mut prober = Prober::new("hostile-deadline-client");

    // A silent peer, and one that sends a byte of a valid request every
    // 300 ms: the deadline runs from accept to the whole request, so the
    // trickle does not extend it.
    let start = Instant::now();
    let mut silent = daemon.connect();
    let dripper = {
        let mut s = daemon.connect();
        std::thread::spawn(move || {
            let request = valid_request(1);
            let start = Instant::now();
            for b in request.iter().take(40) {
                if s.write_all(std::slice::from_ref(b)).is_err() {
                    break;
                }
                // The trickle itself: a byte every 300 ms.
                std::thread::sleep(Duration::from_millis(300));
            }
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut rest = Vec::new();
            let closed = match s.read_to_end(&mut rest) {
                Ok(_) => rest.is_empty(),
                Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            };
            (closed, start.elapsed())
        })
    };
    let mut buf = Vec::new();
    let closed = match silent.read_to_end(&mut buf) {
        Ok(_) => buf.is_empty(),
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    };
    let silent_took = start.elapsed();
    assert!(closed, "idle peer got {buf:?} or timed out");
    assert!(
        silent_took >= Duration::from_millis(1500) && silent_took < Duration::from_secs(6),
        "idle peer was closed after {silent_took:?}, expected about 2 s"
    );
    // The dripper needs 40 * 0.3 s = 12 s for its bytes; it must be cut off
    // long before. Its writes fail once the daemon has closed.
    let (dripper_closed, dripper_took) = dripper.join().unwrap();
    assert!(dripper_closed, "dripping peer was not closed");
    assert!(
        dripper_took < Duration::from_secs(6),
        "dripping peer was closed only after {dripper_took:?}"
    );
    eprintln!("idle peer closed after {silent_took:?}; dripping peer done after {dripper_took:?}");
    daemon.wait_for_log("sent no whole request within 2s", Duration::from_secs(1));
    assert!(
        daemon
            .log()
            .matches("sent no whole request within 2s")
            .count()
            >= 2,
        "{}",
        daemon.log()
    );
    let took = prober.compile(&daemon, "the read deadline");
    eprintln!("real compile after the deadline closes: {took:?}");
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// What the fuzz loop saw of one request.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    argv: Option<Vec<Vec<u8>>>,
    body: Vec<u8>,
    ended: bool,
}

/// Feeds `bytes` to a fresh decoder in random chunk sizes, checking every
/// item against the limits and the claimed lengths.
fn feed(bytes: &[u8], limits: &Limits, rng: &mut Rng) -> Result<Seen, ProtoError> {
    let mut dec = RequestDecoder::new(limits.clone());
    let mut seen = Seen::default();
    let mut claimed: Option<u32> = None;
    let mut files_total = 0u64;
    let mut pos = 0;
    while pos < bytes.len() && !seen.ended {
        let max = [1, 2, 3, 11, 12, 13, 100, 4096][rng.below(8)];
        let n = (1 + rng.below(max)).min(bytes.len() - pos);
        let mut input = &bytes[pos..pos + n];
        pos += n;
        // Each call either takes at least one byte or returns an item, so
        // a chunk needs at most one call per byte plus one per item.
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls <= 2 * n + 8, "decoder spins without progress");
            let Some(item) = dec.next(&mut input)? else {
                assert!(input.is_empty(), "Ok(None) with input left");
                break;
            };
            match item {
                Item::Command { version, argv } => {
                    assert!(seen.argv.is_none(), "second Command");
                    assert!(version <= 3);
                    assert!(!argv.is_empty() && argv.len() <= limits.max_argc as usize);
                    assert!(argv.iter().all(|a| a.len() <= limits.max_arg_len as usize));
                    assert!(argv.iter().map(Vec::len).sum::<usize>() <= limits.max_args_total);
                    assert!(argv.iter().all(|a| !a.contains(&0)));
                    seen.argv = Some(argv);
                }
                Item::InputStart(len) => {
                    assert!(seen.argv.is_some(), "DOTI before the command");
                    assert!(claimed.is_none(), "second DOTI");
                    assert!(len <= limits.max_input);
                    claimed = Some(len);
                }
                Item::Input(chunk) => {
                    let claimed = claimed.expect("body before DOTI");
                    assert!(!chunk.is_empty());
                    seen.body.extend_from_slice(chunk);
                    assert!(
                        seen.body.len() <= claimed as usize,
                        "decoder gave {} body bytes for a claimed {claimed}",
                        seen.body.len()
                    );
                }
                Item::FileStart { name, len } => {
                    assert!(seen.argv.is_some(), "FILE before the command");
                    assert!(name.len() <= distcc_rs::mirror::MAX_PATH_LEN);
                    assert!(len <= limits.max_file);
                    files_total += u64::from(len);
                    assert!(files_total <= limits.max_files_total);
                    claimed = Some(len);
                    seen.body.clear();
                }
                Item::HeaderBody(len) => {
                    assert!(len <= limits.max_file);
                    files_total += u64::from(len);
                    assert!(files_total <= limits.max_files_total);
                    claimed = Some(len);
                    seen.body.clear();
                }
                Item::Header { name, .. } => {
                    assert!(name.len() <= distcc_rs::mirror::MAX_PATH_LEN);
                }
                Item::HeadersListed(n) => {
                    assert!(n <= limits.max_files);
                    dec.need(n);
                }
                Item::FileEnd => assert_eq!(Some(seen.body.len() as u32), claimed),
                Item::Link { name, target } => {
                    assert!(seen.argv.is_some(), "LINK before the command");
                    let longest = distcc_rs::mirror::MAX_PATH_LEN;
                    assert!(name.len() <= longest && target.len() <= longest);
                }
                Item::End => {
                    if dec.version() < 3 {
                        assert_eq!(Some(seen.body.len() as u32), claimed);
                    }
                    assert!(dec.is_done());
                    seen.ended = true;
                    // Whatever follows the request is left alone.
                    let left = input.len();
                    assert_eq!(dec.next(&mut input), Ok(None));
                    assert_eq!(input.len(), left);
                    break;
                }
            }
        }
    }
    Ok(seen)
}

fn mutate(bytes: &mut Vec<u8>, rng: &mut Rng) {
    const INTERESTING: &[&[u8]] = &[
        b"ffffffff",
        b"00000000",
        b"7fffffff",
        b"80000000",
        b"00000001",
        b"0000000g",
        b"DIST",
        b"ARGC",
        b"ARGV",
        b"DOTI",
        b"\0",
    ];
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len().max(1);
        let at = rng.below(len).min(bytes.len());
        let last = bytes.len().saturating_sub(1);
        match rng.below(8) {
            0 if !bytes.is_empty() => bytes[at.min(last)] ^= 1 << rng.below(8),
            1 if !bytes.is_empty() => bytes[at.min(last)] = rng.next() as u8,
            2 => {
                let n = 1 + rng.below(16);
                let extra = rng.bytes(n);
                bytes.splice(at..at, extra);
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => bytes.truncate(at),
            5 => {
                let word = INTERESTING[rng.below(INTERESTING.len())];
                let end = (at + word.len()).min(bytes.len());
                bytes.splice(at..end, word.iter().copied());
            }
            6 => {
                let hex = format!("{:08x}", rng.next() as u32 >> rng.below(32));
                let end = (at + 8).min(bytes.len());
                bytes.splice(at..end, hex.bytes());
            }
            _ => {
                let end = (at + 1 + rng.below(32)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
        }
    }
}

/// A pump-mode (version 3) request to mutate: a source, a forcing file, a
/// system-directory link and a header by hash, then that header's body
/// (`,sysheaders`).
fn pump_seed(argv: &[&[u8]], input: &[u8]) -> Vec<u8> {
    use distcc_rs::proto::{encode_pump_request, PumpEntry};
    let lzo = distcc_rs::lzo::compress(input);
    let files = [
        PumpEntry::File {
            name: b"/home/u/x.c",
            lzo: &lzo,
        },
        PumpEntry::File {
            name: b"/home/u/sub/forcing_technique_271828",
            lzo: b"",
        },
        PumpEntry::Link {
            name: b"/usr/include",
            target: b"../../../usr/include",
        },
        PumpEntry::Header {
            name: b"/sys/h.h",
            hash: &[7; distcc_rs::proto::HASH_LEN],
        },
    ];
    let mut wire = encode_pump_request(b"/home/u", argv, &files);
    distcc_rs::proto::put_body(&mut wire, &distcc_rs::proto::FILE, &lzo);
    wire
}

/// A request to mutate: protocol version, arguments and source.
type Seed<'a> = (u32, Vec<&'a [u8]>, &'a [u8]);

#[test]
fn request_decoder_survives_20000_mutated_requests() {
    let mut rng = Rng(20_000);
    let big: Vec<u8> = (0..3000u32).map(|i| b"int x;\n"[i as usize % 7]).collect();
    let seeds: Vec<Seed> = vec![
        (1, vec![b"gcc", b"-c", b"x.c", b"-o", b"x.o"], b"int x;\n"),
        (2, vec![b"gcc", b"-c", b"x.c", b"-o", b"x.o"], b"int x;\n"),
        (0, vec![b"cc", b"-c", b"a.c"], b""),
        (2, vec![b"g++", b"", b"-O2", b"-c", b"y.cc"], &big),
        (1, vec![b"x86_64-linux-gnu-gcc", b"-c", b"z.c"], &big),
    ];
    let small = Limits {
        max_argc: 4,
        max_arg_len: 16,
        max_args_total: 40,
        max_input: 256,
        max_files: 2,
        max_file: 128,
        max_files_total: 200,
        max_names_total: 64,
    };
    let start = Instant::now();
    let (mut errors, mut complete) = (0, 0);
    for (version, argv, input) in &seeds {
        // Unmutated, every seed decodes back to itself.
        let wire = encode_request(*version, argv, input);
        let seen = feed(&wire, &Limits::default(), &mut rng).unwrap();
        assert!(seen.ended);
        assert_eq!(
            seen.argv.unwrap(),
            argv.iter().map(|a| a.to_vec()).collect::<Vec<_>>()
        );
        let body = if *version >= 2 && !input.is_empty() {
            distcc_rs::lzo::decompress(&seen.body, 1 << 20).unwrap()
        } else {
            seen.body
        };
        assert_eq!(body, *input);
    }
    for i in 0..20_000 {
        let (version, argv, input) = &seeds[rng.below(seeds.len())];
        let mut wire = if i % 5 == 0 {
            pump_seed(argv, input)
        } else {
            encode_request(*version, argv, input)
        };
        mutate(&mut wire, &mut rng);
        let limits = if i % 4 == 0 {
            &small
        } else {
            &Limits::default()
        };
        match feed(&wire, limits, &mut rng) {
            Ok(seen) if seen.ended => complete += 1,
            Ok(_) => {}
            Err(_) => errors += 1,
        }
    }
    let took = start.elapsed();
    eprintln!(
        "20000 mutated requests in {took:?}: {errors} refused, {complete} complete, \
         the rest incomplete"
    );
    assert!(
        errors > 1000 && complete > 1000,
        "mutations are too tame or too wild"
    );
    assert!(took < Duration::from_secs(60), "fuzz loop took {took:?}");
}

/// Sends a whole request for `slowcc`, half-closes either at once or once the
/// compiler has started, and returns the reply and how long it took.
fn send_and_leave(daemon: &Daemon, version: u32, wait_for_start: bool) -> (Vec<u8>, Duration) {
    let argv: [&[u8]; 5] = [b"slowcc", b"-c", b"x.c", b"-o", b"x.o"];
    let request = encode_request(version, &argv, b"int x;\n");
    let started = || {
        daemon
            .marks()
            .iter()
            .filter(|m| m.starts_with("started"))
            .count()
    };
    let before = started();
    let start = Instant::now();
    let mut s = daemon.connect();
    s.write_all(&request).unwrap();
    if wait_for_start {
        assert!(
            wait_until(Duration::from_secs(5), || started() != before),
            "slowcc never started"
        );
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    (reply, start.elapsed())
}

/// True while process `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[test]
fn peer_that_leaves_after_its_request_gets_no_compile() {
    // A client that sends its whole request and closes its side is gone:
    // whether the end of file arrives with the request or while the
    // compiler runs, the daemon must notice, stop or never start the
    // compiler, and not answer (distccd: status 107, compat spec 1.7).
    let mut opts = DaemonOptions::default();
    opts.masquerade.push("slowcc".into());
    opts.scripts.push((
        "slowcc".into(),
        "touch \"$MARKS/started.$$\"\nsleep 3\ntouch \"$MARKS/finished.$$\"\nexec gcc \"$@\""
            .into(),
    ));
    let mut daemon = Daemon::start("hostile-leave", opts);
    for version in [1, 2] {
        for wait_for_start in [false, true] {
            let (reply, took) = send_and_leave(&daemon, version, wait_for_start);
            assert!(
                reply.is_empty() && took < Duration::from_millis(2500),
                "v{version} (wait {wait_for_start}): daemon answered {:?} after {took:?} \
                 to a client that had gone\n{}",
                String::from_utf8_lossy(&reply[..reply.len().min(60)]),
                daemon.log()
            );
            eprintln!(
                "v{version}, left {}: closed after {took:?}",
                if wait_for_start {
                    "during the compile"
                } else {
                    "with the request"
                }
            );
        }
    }
    let log = daemon.log();
    let gone = log.matches("disconnected while its job waited").count()
        + log.matches("disconnected, killing compiler").count();
    assert_eq!(gone, 4, "{log}");
    assert!(
        log.matches("disconnected, killing compiler").count() >= 2,
        "{log}"
    );
    // Once every slowcc that started is gone, one that ran on would have
    // left its mark (it sleeps 3 s, then marks, then compiles).
    let started: Vec<i32> = daemon
        .marks()
        .iter()
        .filter_map(|m| m.strip_prefix("started."))
        .map(|pid| pid.parse().unwrap())
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || !started
            .iter()
            .any(|&pid| running(pid))),
        "slowcc still runs: {started:?}"
    );
    assert!(
        !daemon.marks().iter().any(|m| m.starts_with("finished")),
        "a compiler ran on after its client had gone: {:?}",
        daemon.marks()
    );
    let mut prober = Prober::new("hostile-leave-client");
    prober.compile(&daemon, "clients that went away");
    assert_eq!(daemon.terminate().code(), Some(0));
}
