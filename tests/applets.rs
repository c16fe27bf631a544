//! The multicall dispatcher and the applet boundary: links made by
//! `--install`, each applet reached by its link name, `--version`'s first
//! line, and standard output that is closed early or full.

use crate::common;

use common::daemon::{bin, TestDir};
use common::text;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// distcc's status for an I/O error.
const EXIT_IO_ERROR: i32 = 107;

/// `--install [-s] DIR` into a fresh directory; the links it made.
fn install(dir: &TestDir, symbolic: bool) -> PathBuf {
    let links = dir.join("bin");
    std::fs::create_dir_all(&links).unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("--install");
    if symbolic {
        cmd.arg("-s");
    }
    let out = cmd.arg(&links).output().unwrap();
    assert!(out.status.success(), "--install: {}", text(&out.stderr));
    let printed: Vec<PathBuf> = text(&out.stdout).lines().map(PathBuf::from).collect();
    let want: Vec<PathBuf> = ["distccd", "distcc", "distccmon-text", "pump", "distcc-pump"]
        .iter()
        .map(|l| links.join(l))
        .collect();
    assert_eq!(printed, want, "--install prints each link it made");
    links
}

/// Runs `program` with `args` and DISTCC_HOSTS, DISTCC_DIR set for the test.
fn run(program: &Path, args: &[&str], dir: &TestDir) -> Output {
    Command::new(program)
        .args(args)
        .env("DISTCC_HOSTS", "127.0.0.1/3 localhost/2")
        .env("DISTCC_DIR", dir.join("distcc-dir"))
        .env_remove("DISTCC_VERBOSE")
        .output()
        .unwrap()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
}

/// The first line of a `--version` banner, checked to be `NAME VERSION TRIPLE`.
fn assert_banner_names(out: &Output, name: &str) {
    assert_ok(out, name);
    let stdout = text(&out.stdout);
    let first: Vec<&str> = stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(first.len(), 3, "{name}: first line {first:?}");
    assert_eq!(first[0], name, "{name}: first line {first:?}");
    assert_eq!(first[1], env!("CARGO_PKG_VERSION"), "{name}: {first:?}");
    assert!(
        first[2].contains("-linux-"),
        "{name}: no triple in {first:?}"
    );
    assert!(stdout.contains("distcc-rs"), "{name}: {stdout}");
    assert!(stdout.contains("distcc 3.4"), "{name}: {stdout}");
}

#[test]
fn dispatch_through_installed_links() {
    let dir = TestDir::new("applets-dispatch");
    std::fs::create_dir_all(dir.join("distcc-dir")).unwrap();
    let links = install(&dir, false);
    let mut made: Vec<String> = std::fs::read_dir(&links)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(
        made,
        ["distcc", "distcc-pump", "distccd", "distccmon-text", "pump"]
    );

    let list = run(Path::new(bin()), &["--list"], &dir);
    assert_ok(&list, "--list");
    for (applet, link) in [
        ("daemon", "distccd"),
        ("client", "distcc"),
        ("mon", "distccmon-text"),
        ("pump", "distcc-pump"),
        ("wrap", ""),
    ] {
        let line = text(&list.stdout)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(applet))
            .map(String::from)
            .unwrap_or_else(|| panic!("--list lacks {applet}:\n{}", text(&list.stdout)));
        assert!(line.contains(link), "{line}");
    }
    let help = run(Path::new(bin()), &["--help"], &dir);
    assert_ok(&help, "--help");
    assert!(text(&help.stdout).starts_with("Usage: distcc-rs APPLET"));
    assert!(text(&help.stdout).contains(&text(&list.stdout)));

    // Each applet, reached by its link's name.
    assert_banner_names(
        &run(&links.join("distccd"), &["--version"], &dir),
        "distccd",
    );
    assert_banner_names(&run(&links.join("distcc"), &["--version"], &dir), "distcc");
    let daemon_help = run(&links.join("distccd"), &["--help"], &dir);
    assert_ok(&daemon_help, "distccd --help");
    assert!(text(&daemon_help.stdout).contains("--allow"));
    let hosts = run(&links.join("distcc"), &["--show-hosts"], &dir);
    assert_ok(&hosts, "distcc --show-hosts");
    assert_eq!(text(&hosts.stdout), "127.0.0.1/3\nlocalhost/2\n");
    let jobs = run(&links.join("distcc"), &["-j"], &dir);
    assert_eq!(text(&jobs.stdout), "5\n");
    let mon = run(&links.join("distccmon-text"), &[], &dir);
    assert_ok(&mon, "distccmon-text");
    assert_eq!(text(&mon.stdout), "\n", "no jobs: one empty line");
    assert!(dir.join("distcc-dir/state").is_dir());
    let mon_bad = run(&links.join("distccmon-text"), &["2x"], &dir);
    assert_eq!(mon_bad.status.code(), Some(1));
    assert!(
        text(&mon_bad.stderr).starts_with("distccmon-text: bad DELAY '2x'"),
        "{}",
        text(&mon_bad.stderr)
    );
}

#[test]
fn version_names_any_link_it_is_called_by() {
    let dir = TestDir::new("applets-version");
    let links = install(&dir, true);
    for link in ["distcc", "distccd"] {
        let target = std::fs::read_link(links.join(link)).unwrap();
        assert_eq!(target, Path::new(bin()).canonicalize().unwrap());
    }
    std::os::unix::fs::symlink(bin(), links.join("x86_64-linux-gnu-distccd")).unwrap();
    assert_banner_names(
        &run(
            &links.join("x86_64-linux-gnu-distccd"),
            &["--version"],
            &dir,
        ),
        "x86_64-linux-gnu-distccd",
    );
    assert_banner_names(&run(&links.join("distcc"), &["--version"], &dir), "distcc");
    assert_banner_names(
        &run(&links.join("distccd"), &["--version"], &dir),
        "distccd",
    );
    assert_banner_names(&run(Path::new(bin()), &["--version"], &dir), "distcc-rs");
    assert_banner_names(
        &run(Path::new(bin()), &["daemon", "--version"], &dir),
        "distcc-rs",
    );
    let help = run(&links.join("distcc"), &["--help"], &dir);
    assert!(
        text(&help.stdout).starts_with("distcc "),
        "{}",
        text(&help.stdout)
    );
}

#[test]
fn install_beside_the_binary_is_relative_and_uninstall_takes_only_its_links() {
    let dir = TestDir::new("applets-uninstall");
    let bindir = dir.join("bin");
    std::fs::create_dir_all(&bindir).unwrap();
    let copy = bindir.join("distcc-rs");
    std::fs::copy(bin(), &copy).unwrap();
    let out = run_copy(Command::new(&copy).args(["--install", "-s"]).arg(&bindir));
    assert_ok(&out, "--install -s beside the binary");
    assert_eq!(
        std::fs::read_link(bindir.join("distccd")).unwrap(),
        Path::new("distcc-rs"),
        "a link beside the binary is relative, so a staged DESTDIR still holds"
    );
    // Someone else's distcc stays.
    std::fs::remove_file(bindir.join("distcc")).unwrap();
    std::fs::write(bindir.join("distcc"), "#!/bin/sh\n").unwrap();
    let out = run_copy(Command::new(&copy).arg("--uninstall").arg(&bindir));
    assert_ok(&out, "--uninstall");
    let mut left: Vec<String> = std::fs::read_dir(&bindir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["distcc", "distcc-rs"]);
    let usage = run_copy(Command::new(&copy).arg("--uninstall"));
    assert_eq!(usage.status.code(), Some(101));
    assert!(text(&usage.stderr).starts_with("distcc-rs: usage: distcc-rs --uninstall DIR"));
}

/// Runs a freshly copied executable. While another test thread forks, its
/// child holds the copy's write descriptor until that child execs, and exec
/// of the copy fails with ETXTBSY meanwhile; retried for at most 10 s.
fn run_copy(command: &mut Command) -> Output {
    let mut result = None;
    let ran = common::wait_until(std::time::Duration::from_secs(10), || {
        match command.output() {
            Err(err) if err.kind() == std::io::ErrorKind::ExecutableFileBusy => false,
            other => {
                result = Some(other);
                true
            }
        }
    });
    assert!(ran, "{command:?} stayed busy (ETXTBSY) for 10 s");
    result.unwrap().unwrap()
}

/// The commands whose output goes to stdout, each with its stdout replaced.
const PRINTERS: &[&[&str]] = &[
    &["--version"],
    &["--list"],
    &["--help"],
    &["--show-hosts"],
    &["-j"],
    &["client", "--help"],
    &["daemon", "--help"],
    &["daemon", "--version"],
    &["wrap", "--help"],
    &["mon", "--help"],
];

fn printer(args: &[&str], stdout: impl Into<Stdio>, dir: &TestDir) -> Output {
    Command::new(bin())
        .args(args)
        .env("DISTCC_HOSTS", "127.0.0.1/3 localhost/2")
        .env("DISTCC_DIR", dir.join("distcc-dir"))
        .stdout(stdout)
        .output()
        .unwrap()
}

#[test]
fn stdout_closed_early_is_a_clean_exit() {
    let dir = TestDir::new("applets-epipe");
    for args in PRINTERS {
        // The reading end is closed before the program starts, so its
        // first write meets a broken pipe, as `(sleep 1; distcc-rs
        // --version) | true` does.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = printer(args, writer, &dir);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: stderr {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}

#[test]
fn stdout_full_is_an_io_error() {
    let dir = TestDir::new("applets-full");
    for args in PRINTERS {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = printer(args, full, &dir);
        assert_eq!(
            out.status.code(),
            Some(EXIT_IO_ERROR),
            "{args:?}: stderr {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one message: {stderr}");
        assert!(
            stderr.contains(": failed to write to stdout: No space left on device"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn show_hosts_with_randomize_lists_every_host_once() {
    let dir = TestDir::new("applets-randomize");
    let hosts: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
    let out = Command::new(bin())
        .arg("--show-hosts")
        .env("DISTCC_HOSTS", format!("--randomize {}", hosts.join(" ")))
        .env("DISTCC_DIR", dir.join("distcc-dir"))
        .output()
        .unwrap();
    assert_ok(&out, "--show-hosts");
    let mut shown: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    shown.sort_by_key(|h| h[1..].parse::<u32>().unwrap());
    assert_eq!(shown, hosts);
}
