//! The client's messages that users and scripts match on: for the same event, distcc 3.4's words, then our detail.
//!
//! Each test runs the real distcc 3.4 client and ours on the same event and
//! checks that both print the same words, so the expected text is 3.4's
//! own, not our memory of it.

use crate::common;

use common::daemon::{bin, client_command, need, TestDir};
use common::text;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `<client> gcc -c x.c` in a fresh case directory of `dir` named
/// `case`, with `hosts` (None: DISTCC_HOSTS unset) and `env`; `setup` may
/// add files to the case directory (its DISTCC_DIR is `.distcc-state`).
fn run(
    dir: &TestDir,
    case: &str,
    program: &Path,
    hosts: Option<&str>,
    env: &[(&str, &str)],
    setup: impl Fn(&Path),
) -> Output {
    need("gcc", "gcc");
    let cwd = dir.join(case);
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::write(cwd.join("x.c"), "int x = 1;\n").unwrap();
    let mut cmd: Command = client_command(program, &cwd, hosts.unwrap_or(""), env);
    if hosts.is_none() {
        cmd.env_remove("DISTCC_HOSTS");
    }
    setup(&cwd);
    let out = cmd.args(["gcc", "-c", "x.c"]).output().unwrap();
    assert!(
        cwd.join("x.o").exists(),
        "{case}: no object: {}",
        text(&out.stderr)
    );
    out
}

/// The stderr of distcc 3.4 and of ours for the same event.
fn both(
    name: &str,
    hosts: Option<&str>,
    env: &[(&str, &str)],
    setup: impl Fn(&Path),
) -> (TestDir, String, String) {
    let dir = TestDir::new(name);
    let theirs = run(&dir, "real", &need("distcc", "distcc"), hosts, env, &setup);
    let ours = run(&dir, "ours", Path::new(bin()), hosts, env, &setup);
    assert!(ours.status.success(), "{}", text(&ours.stderr));
    (dir, text(&theirs.stderr), text(&ours.stderr))
}

/// Asserts that both clients printed `words` at `level` ("Warning",
/// "ERROR" or "CRITICAL!", as 3.4 writes them) on one line.
fn assert_both_say(theirs: &str, ours: &str, level: &str, words: &str) {
    let said = if level.ends_with('!') {
        format!("{level} {words}")
    } else {
        format!("{level}: {words}")
    };
    for (who, stderr) in [("distcc 3.4", theirs), ("distcc-rs", ours)] {
        assert!(
            stderr.lines().any(|l| l.contains(&said)),
            "{who} did not say \"{said}\":\n{stderr}"
        );
    }
}

/// Asserts that both clients printed `words` on a line at `level`
/// ("Warning" or "ERROR"), perhaps after words of their own.
fn assert_both_say_at(theirs: &str, ours: &str, level: &str, words: &str) {
    for (who, stderr) in [("distcc 3.4", theirs), ("distcc-rs", ours)] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!(" {level}: ")) && l.contains(words)),
            "{who} did not say \"{words}\" at {level} level:\n{stderr}"
        );
    }
}

/// Asserts that both clients printed `words` somewhere.
fn assert_both_contain(theirs: &str, ours: &str, words: &str) {
    for (who, stderr) in [("distcc 3.4", theirs), ("distcc-rs", ours)] {
        assert!(
            stderr.contains(words),
            "{who} did not say \"{words}\":\n{stderr}"
        );
    }
}

#[test]
fn an_unopenable_distcc_log_is_a_failure_to_open_the_logfile() {
    let missing = std::env::temp_dir().join(format!(
        "distcc-rs-test-no-such-dir-{}/log",
        std::process::id()
    ));
    let log = missing.to_str().unwrap();
    let (_dir, theirs, ours) = both(
        "msg-logfile",
        Some("localhost"),
        &[("DISTCC_LOG", log)],
        |_| {},
    );
    assert_both_say(
        &theirs,
        &ours,
        "ERROR",
        &format!("failed to open logfile {log}: No such file or directory"),
    );
}

#[test]
fn an_empty_distcc_hosts_contains_no_hosts() {
    let (_dir, theirs, ours) = both("msg-empty-hosts", Some(""), &[], |_| {});
    assert_both_say(
        &theirs,
        &ours,
        "Warning",
        "$DISTCC_HOSTS contained no hosts; can't distribute work",
    );
    assert_both_say(
        &theirs,
        &ours,
        "Warning",
        "failed to distribute, running locally instead",
    );
}

#[test]
fn an_empty_hosts_file_contains_no_hosts() {
    let (dir, theirs, ours) = both("msg-empty-hosts-file", None, &[], |cwd| {
        std::fs::write(cwd.join(".distcc-state/hosts"), "# nothing\n").unwrap();
    });
    for (case, stderr) in [("real", &theirs), ("ours", &ours)] {
        let file = dir.join(&format!("{case}/.distcc-state/hosts"));
        let words = format!(
            "Warning: {} contained no hosts; can't distribute work",
            file.display()
        );
        assert!(stderr.contains(&words), "{case}: no \"{words}\":\n{stderr}");
    }
}

#[test]
fn a_dead_host_is_a_failure_to_distribute_to_it() {
    let (_dead, port) = common::refusing_port();
    let host = format!("127.0.0.1:{port}");
    let (_dir, theirs, ours) = both("msg-dead-host", Some(&host), &[], |_| {});
    assert_both_say(
        &theirs,
        &ours,
        "Warning",
        &format!("failed to distribute x.c to {host}, running locally instead"),
    );
}

#[test]
fn a_dead_host_without_fallback_says_fallbacks_are_disabled() {
    let dir = TestDir::new("msg-no-fallback");
    let (_dead, port) = common::refusing_port();
    let host = format!("127.0.0.1:{port}");
    for program in [need("distcc", "distcc"), bin().into()] {
        let cwd = dir.join(&format!("{}", program.display()).replace('/', "_"));
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::write(cwd.join("x.c"), "int x = 1;\n").unwrap();
        let out = client_command(&program, &cwd, &host, &[("DISTCC_FALLBACK", "0")])
            .args(["gcc", "-c", "x.c"])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(116), "{program:?}: {stderr}");
        assert!(
            stderr.contains("ERROR: failed to distribute and fallbacks are disabled"),
            "{program:?}: {stderr}"
        );
        assert!(!cwd.join("x.o").exists(), "{program:?}");
    }
}

/// A server that answers each of `connections` jobs with `reply`, then
/// reads until the client closes: a stand-in for a broken daemon.
fn answering(reply: &'static [u8], connections: usize) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = std::thread::spawn(move || {
        for _ in 0..connections {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            conn.write_all(reply).unwrap();
            let _ = conn.read_to_end(&mut Vec::new());
        }
    });
    (host, server)
}

#[test]
fn another_token_is_a_protocol_derailment() {
    let (host, server) = answering(b"XXXX00000000", 2);
    let (_dir, theirs, ours) = both("msg-derailment", Some(&host), &[], |_| {});
    server.join().unwrap();
    // 3.4 logs the cause as an error of its own; ours is the detail of
    // the warning that the host failed, since the job may go to another.
    assert_both_contain(
        &theirs,
        &ours,
        "protocol derailment: expected token \"DONE\"",
    );
}

#[test]
fn another_version_is_reported_as_3_4_does() {
    let (host, server) = answering(b"DONE00000009", 2);
    let (_dir, theirs, ours) = both("msg-version", Some(&host), &[], |_| {});
    server.join().unwrap();
    // 3.4 logs the cause as an error of its own; ours is the detail of
    // the warning that the host failed, since the job may go to another.
    assert_both_contain(
        &theirs,
        &ours,
        "got version 9 not 1 in response from server",
    );
}

#[test]
fn bad_host_entries_are_reported_in_3_4_words() {
    for (entry, words) in [
        ("h:x", "invalid tcp port specification in \"x\""),
        ("h/0", "bad multiplier \"/0\" in host specification"),
        ("h,foo", "unrecognized option in host specification: ,foo"),
        ("h,cpp", "pump mode (',cpp') requires compression (',lzo')"),
        (
            ":4000",
            "hostname is required in tcp host specification \":4000\"",
        ),
    ] {
        let name = format!("msg-bad-host-{}", entry.replace([':', '/', ','], "_"));
        let (_dir, theirs, ours) = both(&name, Some(entry), &[], |_| {});
        assert_both_contain(&theirs, &ours, words);
        assert_both_say_at(&theirs, &ours, "ERROR", words);
    }
}

/// A server that runs `handle` on each of `connections` connections: a
/// stand-in for a dead or broken daemon. Every read is bounded.
fn serving(
    connections: usize,
    handle: fn(std::net::TcpStream),
) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = std::thread::spawn(move || {
        for _ in 0..connections {
            let (conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            handle(conn);
        }
    });
    (host, server)
}

/// Reads one packet header, which must carry `token`, and returns its parameter.
fn read_header(conn: &mut std::net::TcpStream, token: &str) -> usize {
    use std::io::Read;
    let mut header = [0u8; 12];
    conn.read_exact(&mut header).unwrap();
    assert_eq!(&header[..4], token.as_bytes(), "{header:?}");
    usize::from_str_radix(std::str::from_utf8(&header[4..]).unwrap(), 16).unwrap()
}

/// Reads a whole protocol-1 request (`DIST ARGC ARGV… DOTI`), so that the
/// client is sure to be waiting for the reply.
fn read_request(conn: &mut std::net::TcpStream) {
    use std::io::Read;
    let body = |conn: &mut std::net::TcpStream, len: usize| {
        conn.read_exact(&mut vec![0u8; len]).unwrap();
    };
    assert_eq!(read_header(conn, "DIST"), 1);
    for _ in 0..read_header(conn, "ARGC") {
        let len = read_header(conn, "ARGV");
        body(conn, len);
    }
    let len = read_header(conn, "DOTI");
    body(conn, len);
}

/// Waits (bounded by the read timeout) until the client closes.
fn until_closed(mut conn: std::net::TcpStream) {
    use std::io::Read;
    let _ = conn.read_to_end(&mut Vec::new());
}

/// 3.4's words when the reply does not begin with `DONE`.
const NO_ANSWER: &str = "server provided no answer. Is the server configured to allow access \
     from your IP address? Is the server performing authentication and your client isn't? \
     Does the server have the compiler installed? Is the server configured to access the \
     compiler?";

#[test]
fn a_refused_connect_is_a_failed_nonblocking_connect() {
    let (_dead, port) = common::refusing_port();
    let host = format!("127.0.0.1:{port}");
    let (_dir, theirs, ours) = both("msg-refused-connect", Some(&host), &[], |_| {});
    assert_both_contain(
        &theirs,
        &ours,
        &format!("nonblocking connect to {host} failed: Connection refused"),
    );
}

#[test]
fn a_connect_nobody_answers_is_a_timeout_while_connecting() {
    let hang = common::unanswered_listener();
    let addr = hang.addr;
    // 3.4 waits its fixed 4 s; ours is told to wait 1 s.
    let host = addr.to_string();
    let env = [("DISTCC_CONNECT_TIMEOUT", "1")];
    let (_dir, theirs, ours) = both("msg-connect-timeout", Some(&host), &env, |_| {});
    assert_both_contain(
        &theirs,
        &ours,
        &format!("timeout while connecting to {host}"),
    );
}

#[test]
fn a_server_that_closes_at_once_fails_the_write_or_the_read() {
    let (host, server) = serving(2, drop);
    let (_dir, theirs, ours) = both("msg-closed-at-once", Some(&host), &[], |_| {});
    server.join().unwrap();
    // Whether the close is seen by a write or by the read of the reply
    // is a race, for 3.4 as for us; either way, in 3.4's words.
    for (who, stderr) in [("distcc 3.4", &theirs), ("distcc-rs", &ours)] {
        assert!(
            [
                "failed to write: ",
                "failed to read: ",
                "unexpected eof on fd"
            ]
            .iter()
            .any(|words| stderr.contains(words)),
            "{who} did not say it in 3.4's words:\n{stderr}"
        );
    }
}

#[test]
fn a_server_that_closes_after_the_request_is_an_unexpected_eof() {
    let (host, server) = serving(2, |mut conn| read_request(&mut conn));
    let (_dir, theirs, ours) = both("msg-eof", Some(&host), &[], |_| {});
    server.join().unwrap();
    assert_both_contain(&theirs, &ours, "unexpected eof on fd");
    assert_both_contain(
        &theirs,
        &ours,
        "read failed while waiting for token \"DONE\"",
    );
    assert_both_contain(&theirs, &ours, NO_ANSWER);
}

#[test]
fn a_silent_server_is_an_io_timeout() {
    let (host, server) = serving(2, |mut conn| {
        read_request(&mut conn);
        until_closed(conn);
    });
    let env = [("DISTCC_IO_TIMEOUT", "1")];
    let (_dir, theirs, ours) = both("msg-io-timeout", Some(&host), &env, |_| {});
    server.join().unwrap();
    assert_both_contain(&theirs, &ours, "IO timeout");
    assert_both_contain(
        &theirs,
        &ours,
        "read failed while waiting for token \"DONE\"",
    );
    assert_both_contain(&theirs, &ours, NO_ANSWER);
}

#[test]
fn a_bad_io_timeout_is_reported_in_3_4_words() {
    for value in ["x", "0"] {
        // 3.4 reads the variable when it first waits for the server, so
        // give it a server that lets it wait.
        let (host, server) = serving(1, until_closed);
        let dir = TestDir::new(&format!("msg-bad-io-timeout-{value}"));
        let mut stderr = Vec::new();
        for program in [need("distcc", "distcc"), bin().into()] {
            let cwd = dir.join(&format!("{}", program.display()).replace('/', "_"));
            std::fs::create_dir_all(&cwd).unwrap();
            std::fs::write(cwd.join("x.c"), "int x = 1;\n").unwrap();
            let out = client_command(&program, &cwd, &host, &[("DISTCC_IO_TIMEOUT", value)])
                .args(["gcc", "-c", "x.c"])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(101), "{program:?}: {out:?}");
            stderr.push(text(&out.stderr));
        }
        server.join().unwrap();
        assert_both_say(
            &stderr[0],
            &stderr[1],
            "ERROR",
            &format!("Bad DISTCC_IO_TIMEOUT value: {value}"),
        );
    }
}

#[test]
fn an_ssh_that_cannot_be_run_is_a_failure_to_exec_it() {
    let missing = std::env::temp_dir().join(format!(
        "distcc-rs-test-no-such-dir-{}/ssh",
        std::process::id()
    ));
    let ssh = missing.to_str().unwrap();
    let (_dir, theirs, ours) = both("msg-no-ssh", Some("@h"), &[("DISTCC_SSH", ssh)], |_| {});
    assert_both_contain(
        &theirs,
        &ours,
        &format!("failed to exec {ssh}: No such file or directory"),
    );
}

#[test]
fn a_set_safeguard_is_a_critical_recursion() {
    let dir = TestDir::new("msg-recursion");
    let mut stderr = Vec::new();
    for program in [need("distcc", "distcc"), bin().into()] {
        let cwd = dir.join(&format!("{}", program.display()).replace('/', "_"));
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::write(cwd.join("x.c"), "int x = 1;\n").unwrap();
        let out = client_command(&program, &cwd, "", &[("_DISTCC_SAFEGUARD", "1")])
            .args(["gcc", "-c", "x.c"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(111), "{program:?}: {out:?}");
        stderr.push(text(&out.stderr));
    }
    assert_both_say(
        &stderr[0],
        &stderr[1],
        "CRITICAL!",
        "distcc seems to have invoked itself recursively!",
    );
}

#[test]
fn a_masquerade_link_with_no_real_compiler_is_a_recursion() {
    let dir = TestDir::new("msg-masquerade-alone");
    let mut stderr = Vec::new();
    for (case, program) in [("real", need("distcc", "distcc")), ("ours", bin().into())] {
        // The link is the only gcc on PATH.
        let links = dir.join(&format!("{case}-links"));
        std::fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink(&program, links.join("gcc")).unwrap();
        let cwd = dir.join(case);
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::write(cwd.join("x.c"), "int x = 1;\n").unwrap();
        let out = client_command(&links.join("gcc"), &cwd, "", &[])
            .env("PATH", &links)
            .args(["-c", "x.c"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{case}: {out:?}");
        stderr.push(text(&out.stderr));
    }
    // 3.4 runs itself again and says so from there; ours knows beforehand.
    assert_both_contain(
        &stderr[0],
        &stderr[1],
        "distcc seems to have invoked itself recursively!",
    );
}
