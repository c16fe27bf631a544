//! The client when things go wrong: dead hosts, a daemon killed mid-job, a refused compiler, recursion; and masquerade shims.

use crate::common;

use common::daemon::{bin, client, client_command, need, Daemon, DaemonOptions};
use common::TestDir;
use common::{local_object, text, wait_until};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A loopback port nobody listens on: connecting to it is refused for as
/// long as the socket lives.
fn dead_host() -> (socket2::Socket, String) {
    let (socket, port) = common::refusing_port();
    (socket, format!("127.0.0.1:{port}"))
}

/// Names in `dir` that look like our temporary objects or cpp outputs.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("distcc-rs-") || n.starts_with("distcc_"))
        .collect()
}

#[test]
fn first_host_dead_second_compiles() {
    need("gcc", "gcc");
    let daemon = Daemon::start("fail-second", DaemonOptions::default());
    let work = TestDir::new("fail-second-work");
    work.write("x.c", "int x = 7;\n");
    let want = local_object(&work.path, "x.c");
    let (_dead, dead) = dead_host();
    let hosts = format!("{dead} {}", daemon.host(false));
    // 3.4's static rule, so that the dead host, first in the list, is tried
    // first (placement would go to the live one: tests/farm.rs).
    let out = client(
        &work.path,
        &hosts,
        &["gcc", "-c", "x.c"],
        &[("DISTCC_FALLBACK", "0"), ("DISTCC_PLACEMENT", "0")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(work.join("x.o")).unwrap(), want);
    assert_eq!(
        daemon.log().matches(" COMPILE_OK ").count(),
        1,
        "{}",
        daemon.log()
    );
    // The dead host is backed off: a backoff mark exists for it.
    let marks: Vec<String> = std::fs::read_dir(work.join(".distcc-state/lock"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("backoff_tcp_127.0.0.1_"))
        .collect();
    assert_eq!(marks.len(), 1, "{marks:?}");
}

#[test]
fn all_hosts_dead_falls_back_locally_or_exits_116() {
    need("gcc", "gcc");
    let work = TestDir::new("fail-all");
    work.write("x.c", "int x = 8;\n");
    let want = local_object(&work.path, "x.c");
    let ((_a, dead_a), (_b, dead_b)) = (dead_host(), dead_host());
    let hosts = format!("{dead_a} {dead_b}");
    // The fallback also creates a missing object directory, as a remote compile would.
    let out = client(
        &work.path,
        &hosts,
        &["gcc", "-c", "x.c", "-o", "new/x.o"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(work.join("new/x.o")).unwrap(), want);
    // With backoff off the dead hosts are still given up on, not retried forever.
    let start = Instant::now();
    let out = client(
        &work.path,
        &hosts,
        &["gcc", "-c", "x.c"],
        &[("DISTCC_FALLBACK", "0"), ("DISTCC_BACKOFF_PERIOD", "0")],
    );
    assert_eq!(out.status.code(), Some(116), "{}", text(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(!work.join("x.o").exists());
    assert!(
        temp_files(&work.path).is_empty(),
        "{:?}",
        temp_files(&work.path)
    );
}

#[test]
fn daemon_killed_mid_job_leaves_no_partial_object_and_the_build_succeeds() {
    need("gcc", "gcc");
    let mut daemon = Daemon::start(
        "fail-killed",
        DaemonOptions {
            scripts: vec![(
                "gcc".into(),
                "echo $$ > \"$MARKS/started\"; sleep 30; exec /usr/bin/gcc \"$@\"".into(),
            )],
            ..DaemonOptions::default()
        },
    );
    let work = TestDir::new("fail-killed-work");
    work.write("x.c", "int x = 9;\n");
    let want = local_object(&work.path, "x.c");
    std::fs::write(work.join("x.o"), b"old object").unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["gcc", "-c", "x.c"])
        .current_dir(&work.path)
        .env("DISTCC_HOSTS", daemon.host(true))
        .env("DISTCC_DIR", work.join(".distcc-state"))
        .env("DISTCC_NO_REWRITE_CROSS", "1");
    std::fs::create_dir_all(work.join(".distcc-state")).unwrap();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || !daemon.marks().is_empty()),
        "the job never started:\n{}",
        daemon.log()
    );
    assert_eq!(std::fs::read(work.join("x.o")).unwrap(), b"old object");
    // SAFETY: killing our own child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("running locally"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(work.join("x.o")).unwrap(), want);
    assert!(
        temp_files(&work.path).is_empty(),
        "{:?}",
        temp_files(&work.path)
    );
    assert!(!daemon.alive());
    // The orphaned compiler leads its own process group; stop it.
    let pid: i32 = std::fs::read_to_string(daemon.marks.join("started"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling the test's own orphaned compiler group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

#[test]
fn refused_compiler_falls_back_locally() {
    need("gcc", "gcc");
    let daemon = Daemon::start(
        "fail-refused",
        DaemonOptions {
            masquerade: vec!["g++".into()],
            ..DaemonOptions::default()
        },
    );
    let work = TestDir::new("fail-refused-work");
    work.write("x.c", "int x = 10;\n");
    let want = local_object(&work.path, "x.c");
    let out = client(&work.path, &daemon.host(false), &["gcc", "-c", "x.c"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(work.join("x.o")).unwrap(), want);
    assert!(daemon.log().contains("refusing job"), "{}", daemon.log());
    std::fs::remove_file(work.join("x.o")).unwrap();
    let out = client(
        &work.path,
        &daemon.host(false),
        &["gcc", "-c", "x.c"],
        &[("DISTCC_FALLBACK", "0")],
    );
    assert!(!out.status.success());
    assert!(!work.join("x.o").exists());
}

/// A masquerade directory (`gcc`, `cc` → distcc-rs) first on PATH.
fn masquerade_dir(work: &TestDir) -> std::path::PathBuf {
    let dir = work.join("masq");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["gcc", "cc", "x86_64-linux-gnu-gcc"] {
        std::os::unix::fs::symlink(bin(), dir.join(name)).unwrap();
    }
    dir
}

#[test]
fn masquerade_shims_build_through_the_daemon() {
    need("gcc", "gcc");
    let daemon = Daemon::start("masq", DaemonOptions::default());
    let work = TestDir::new("masq-work");
    work.write("x.c", "int x = 11;\n");
    let want = local_object(&work.path, "x.c");
    let dir = masquerade_dir(&work);
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    let gcc = |args: &[&str], env: &[(&str, &str)]| {
        client_command(Path::new("gcc"), &work.path, &daemon.host(true), env)
            .env("PATH", &path)
            .args(args)
            .output()
            .unwrap()
    };
    let out = gcc(&["-c", "x.c"], &[("DISTCC_FALLBACK", "0")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(work.join("x.o")).unwrap(), want);
    assert_eq!(
        daemon.log().matches(" COMPILE_OK ").count(),
        1,
        "{}",
        daemon.log()
    );
    // A local-only job (linking) through the shim finds the real gcc behind it.
    work.write("main.c", "int main(void) { return 0; }\n");
    let out = gcc(&["main.c", "-o", "main"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(Command::new(work.join("main")).status().unwrap().success());
}

#[test]
fn safeguard_stops_recursion_with_111() {
    let work = TestDir::new("masq-safeguard");
    work.write("x.c", "int x = 12;\n");
    let out = client(
        &work.path,
        "localhost",
        &["gcc", "-c", "x.c"],
        &[("_DISTCC_SAFEGUARD", "1")],
    );
    assert_eq!(out.status.code(), Some(111), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("invoked itself recursively"));
    // A masquerade directory whose only gcc is the shim itself: the shim
    // finds no real compiler and says so instead of calling itself.
    let dir = masquerade_dir(&work);
    let shim = |path: &str, env: &[(&str, &str)]| {
        client_command(&dir.join("gcc"), &work.path, "localhost", env)
            .env("PATH", path)
            .args(["-c", "x.c"])
            .output()
            .unwrap()
    };
    let out = shim(dir.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(110), "{}", text(&out.stderr));
    // A shim reached from inside distcc (safeguard level 1, PATH trimmed) runs the real compiler.
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    let out = shim(&path, &[("_DISTCC_SAFEGUARD", "1")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(work.join("x.o").exists());
}

#[test]
fn sigterm_and_sigint_remove_temporary_files() {
    need("gcc", "gcc");
    let daemon = Daemon::start(
        "fail-signal",
        DaemonOptions {
            scripts: vec![(
                "gcc".into(),
                "touch \"$MARKS/started.$$\"; sleep 5; exec /usr/bin/gcc \"$@\"".into(),
            )],
            ..DaemonOptions::default()
        },
    );
    for (round, sig) in [libc::SIGTERM, libc::SIGINT].into_iter().enumerate() {
        let work = TestDir::new("fail-signal-work");
        let tmp = work.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(work.join(".distcc-state")).unwrap();
        work.write("x.c", "int x = 13;\n");
        let child = Command::new(bin())
            .args(["gcc", "-c", "x.c", "-o", "out/x.o"])
            .current_dir(&work.path)
            .env("DISTCC_HOSTS", daemon.host(false))
            .env("DISTCC_DIR", work.join(".distcc-state"))
            .env("DISTCC_NO_REWRITE_CROSS", "1")
            .env("TMPDIR", &tmp)
            .spawn()
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(20), || daemon.marks().len() > round),
            "the job never started:\n{}",
            daemon.log()
        );
        // The preprocessed source is in TMPDIR while the server compiles.
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait_with_output().unwrap().status;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(sig),
            "the client must die of the signal it got"
        );
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
        assert!(!work.join("out/x.o").exists());
    }
}

#[test]
fn skip_local_retry_and_distcc_log() {
    need("gcc", "gcc");
    let daemon = Daemon::start("fail-skip", DaemonOptions::default());
    let work = TestDir::new("fail-skip-work");
    work.write("bad.c", "int f(void) { return nosuch; }\n");
    let log = work.join("client.log");
    let log_str = log.to_str().unwrap();
    let retried = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("retrying locally")
    };
    let out = client(
        &work.path,
        &daemon.host(false),
        &["gcc", "-c", "bad.c"],
        &[("DISTCC_LOG", log_str)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(retried(&log), "DISTCC_LOG has no retry line");
    std::fs::remove_file(&log).unwrap();
    let out = client(
        &work.path,
        &daemon.host(false),
        &["gcc", "-c", "bad.c"],
        &[("DISTCC_LOG", log_str), ("DISTCC_SKIP_LOCAL_RETRY", "1")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !retried(&log),
        "retried locally despite DISTCC_SKIP_LOCAL_RETRY"
    );
    // The server's diagnostics are shown instead.
    assert!(
        text(&out.stderr).contains("nosuch"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn response_files_are_expanded_before_sending() {
    need("gcc", "gcc");
    let daemon = Daemon::start("client-atfile", DaemonOptions::default());
    let work = TestDir::new("client-atfile-work");
    work.write("x.c", "int x = VALUE;\n");
    work.write("args.txt", "-DVALUE=5 -c 'x.c'\n-o x.o\n");
    let out = client(
        &work.path,
        &daemon.host(false),
        &["gcc", "@args.txt"],
        &[("DISTCC_FALLBACK", "0")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(work.join("x.o").exists());
    assert_eq!(
        daemon.log().matches(" COMPILE_OK ").count(),
        1,
        "{}",
        daemon.log()
    );
}

#[test]
fn install_masquerade_links_the_compilers_on_path() {
    let work = TestDir::new("install-masq");
    for name in [
        "gcc",
        "g++",
        "x86_64-linux-gnu-gcc-12",
        "clang-14",
        "gcc-ar",
        "ld",
    ] {
        work.script(&format!("bin/{name}"), "exit 0");
    }
    let out = Command::new(bin())
        .args(["--install-masquerade"])
        .arg(work.join("masq"))
        .env("PATH", work.join("bin"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut links: Vec<String> = std::fs::read_dir(work.join("masq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    links.sort();
    assert_eq!(links, ["clang-14", "g++", "gcc", "x86_64-linux-gnu-gcc-12"]);
    let target = std::fs::read_link(work.join("masq/gcc")).unwrap();
    assert_eq!(
        target.canonicalize().unwrap(),
        Path::new(bin()).canonicalize().unwrap()
    );
}

#[test]
fn a_host_that_never_answers_the_connect_times_out() {
    need("gcc", "gcc");
    let work = TestDir::new("fail-blackhole");
    work.write("x.c", "int x = 14;\n");
    let hang = common::unanswered_listener();
    let addr = hang.addr;
    let start = Instant::now();
    let out = client(
        &work.path,
        &format!("{addr}"),
        &["gcc", "-c", "x.c"],
        &[("DISTCC_CONNECT_TIMEOUT", "1"), ("DISTCC_FALLBACK", "0")],
    );
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(116), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("timed out"),
        "{}",
        text(&out.stderr)
    );
    // distcc 3.4's words.
    assert!(
        text(&out.stderr).contains(&format!("timeout while connecting to {addr}")),
        "{}",
        text(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(3),
        "the connect was not bounded by 1 s: {took:?}"
    );
}
