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

/// Asserts that both clients printed `words` at `level` ("Warning" or
/// "ERROR", as 3.4 writes them) on one line.
fn assert_both_say(theirs: &str, ours: &str, level: &str, words: &str) {
    for (who, stderr) in [("distcc 3.4", theirs), ("distcc-rs", ours)] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("{level}: {words}"))),
            "{who} did not say \"{level}: {words}\":\n{stderr}"
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
    let host = format!("127.0.0.1:{}", common::free_port());
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
    let host = format!("127.0.0.1:{}", common::free_port());
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
    }
}
