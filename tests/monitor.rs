//! The text monitor, `distcc-rs mon` and the `distccmon-text` link: the same bytes as Debian's distccmon-text on crafted state directories and while real clients of both kinds run slow jobs, the DELAY loop, stale and garbage state files, `--summary`, and `--daemon` against our daemon, a Debian distccd and a dead port.

use crate::common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use common::daemon::{bin, need, Daemon, DaemonOptions, DebianDistccd};
use common::text;
use common::{wait_until, TestDir};

/// Debian's monitor, the reference.
fn distccmon_text() -> PathBuf {
    need("distccmon-text", "distcc")
}

/// Runs a monitor once with `DISTCC_DIR` and nothing else of ours set.
fn run_monitor(program: &Path, pre_args: &[&str], distcc_dir: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(pre_args)
        .args(args)
        .env("DISTCC_DIR", distcc_dir)
        .env_remove("DISTCC_VERBOSE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ours(distcc_dir: &Path, args: &[&str]) -> Output {
    run_monitor(Path::new(bin()), &["mon"], distcc_dir, args)
}

fn theirs(distcc_dir: &Path, args: &[&str]) -> Output {
    run_monitor(&distccmon_text(), &[], distcc_dir, args)
}

/// Log lines without the `program[pid] (function)` part, which names C
/// functions in distccmon-text and a module in ours.
fn messages(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .map(|l| match l.find(") ") {
            Some(at) => l[at + 2..].to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// A state record as distcc 3.4 writes it on this machine (LP64, little-endian).
fn record(pid: u64, phase: i32, file: &[u8], host: &[u8], slot: i32) -> Vec<u8> {
    record_raw(296, 0x4449_4800, pid, phase, file, host, slot)
}

fn record_raw(
    size: u64,
    magic: u64,
    pid: u64,
    phase: i32,
    file: &[u8],
    host: &[u8],
    slot: i32,
) -> Vec<u8> {
    const {
        assert!(
            cfg!(all(target_pointer_width = "64", target_endian = "little")),
            "these tests craft LP64 little-endian state files; run them on x86_64 or arm64"
        )
    };
    let mut out = Vec::with_capacity(296);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&pid.to_le_bytes());
    for name in [file, host] {
        let mut field = [0u8; 128];
        let n = name.len().min(127);
        field[..n].copy_from_slice(&name[..n]);
        out.extend_from_slice(&field);
    }
    out.extend_from_slice(&slot.to_le_bytes());
    out.extend_from_slice(&phase.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

/// A `$DISTCC_DIR` with an empty `state` directory.
struct StateDir {
    dir: TestDir,
}

impl StateDir {
    fn new(name: &str) -> StateDir {
        let dir = TestDir::new(name);
        std::fs::create_dir(dir.join("state")).unwrap();
        StateDir { dir }
    }

    fn top(&self) -> &Path {
        &self.dir.path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join("state").join(name)
    }

    fn put(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Writes a file and sets its mtime `age` in the past.
    fn put_aged(&self, name: &str, bytes: &[u8], age: Duration) -> PathBuf {
        let path = self.put(name, bytes);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
        path
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// `sleep` processes to own crafted state files; killed when dropped.
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn start(n: usize) -> Sleepers {
        Sleepers(
            (0..n)
                .map(|_| Command::new("sleep").arg("120").spawn().unwrap())
                .collect(),
        )
    }

    fn pid(&self, i: usize) -> u64 {
        u64::from(self.0[i].id())
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A pid that was just in use and is now gone.
fn dead_pid() -> u64 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    u64::from(pid)
}

/// Asserts two monitors' outputs are the same bytes, showing both if not.
fn assert_same_output(ours: &Output, theirs: &Output) {
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "exit status; ours stderr: {}\ntheirs stderr: {}",
        text(&ours.stderr),
        text(&theirs.stderr)
    );
    assert!(
        ours.stdout == theirs.stdout,
        "stdout differs\n--- ours:\n{}--- distccmon-text:\n{}",
        text(&ours.stdout),
        text(&theirs.stdout)
    );
}

#[test]
fn byte_identical_to_distccmon_text_on_a_crafted_state_dir() {
    let state = StateDir::new("mon-crafted");
    let sleepers = Sleepers::start(3);
    let me = u64::from(std::process::id());
    let long_file = [b'f'; 200];
    let long_host = format!("{}.example.org", "h".repeat(40));
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("binstate_1", record(me, 5, b"a.c", b"hostb", 1)),
        (
            "binstate_2",
            record(sleepers.pid(0), 2, b"b.c", b"hosta", 2),
        ),
        ("binstate_3", record(sleepers.pid(1), 3, b"", b"hosta", 0)),
        (
            "binstate_4",
            record(me, 4, &long_file, long_host.as_bytes(), 7),
        ),
        // Shown with all ten digits; kill(2) sees only the low 32 bits, our pid.
        (
            "binstate_5",
            record(me + (1 << 32), 6, b"big.c", b"hosta", 0),
        ),
        ("binstate_6", record(me, 7, b"done.c", b"hosta", 0)),
        (
            "binstate_7",
            record(sleepers.pid(2), 8, b"p8.c", b"hosta", 0),
        ),
        ("binstate_8", record(me, -1, b"pneg.c", b"hosta", -3)),
        ("binstate_9", record(me, 0, b"p0.c", b"", 0)),
        ("binstate_10", record(me, 1, b"p1.c", b"hosta", 2)),
        ("binstate_11", record(me, 2, b"same-key.c", b"hosta", 2)),
        (
            "binstate_12",
            record(me, 1000, b"p1000.c", b"hosta", 123456789),
        ),
        ("binstate_13", record(dead_pid(), 5, b"dead.c", b"hosta", 2)),
        (
            "binstate_14",
            record(me, 5, b"caf\xc3\xa9 \xff.c", b"h\tb", 9),
        ),
        ("binstate_15", Vec::new()),
        ("binstate_16", b"short".to_vec()),
        (
            "binstate_17",
            record_raw(296, 1, me, 5, b"magic.c", b"h", 0),
        ),
        (
            "binstate_18",
            record_raw(100, 0x4449_4800, me, 5, b"size.c", b"h", 0),
        ),
        (
            "binstate_19",
            [record(me, 5, b"longer.c", b"hosta", 9), b"more".to_vec()].concat(),
        ),
        (
            "other_20",
            record(me, 5, b"not-a-state-file.c", b"hosta", 1),
        ),
        ("binstate_21", record(me, 5, b"x.c", b"localhost", 1)),
        ("binstate_22", record(me, 3, b"", b"localhost", 0)),
        ("binstate_23", record(me, 5, b"y.c", b"127.0.0.1", 3)),
    ];
    for (name, bytes) in &files {
        state.put(name, bytes);
    }
    let before = state.files();
    let reference = theirs(state.top(), &[]);
    assert!(reference.status.success(), "{}", text(&reference.stderr));
    // Make sure the reference really exercised what this test is about.
    let reference_text = text(&reference.stdout);
    let wide_pid = (me + (1 << 32)).to_string();
    for want in [&wide_pid, "hhhhhhhhhh", "Unknown", "[-3]", "[123456789]"] {
        if want == "Unknown" {
            assert!(!reference_text.contains(want), "{reference_text}");
        } else {
            assert!(reference_text.contains(want), "{want}:\n{reference_text}");
        }
    }
    assert!(!reference_text.contains("done.c") && !reference_text.contains("dead.c"));
    let got = ours(state.top(), &[]);
    assert_same_output(&got, &reference);
    assert_eq!(messages(&got.stderr), messages(&reference.stderr));
    assert_eq!(
        messages(&got.stderr),
        [
            format!(
                "Warning: wrong magic number: {}",
                state.path("binstate_17").display()
            ),
            format!(
                "Warning: wrong structure size: {}: version mismatch?",
                state.path("binstate_18").display()
            ),
        ]
    );
    // Nothing was fresh enough to delete, for either monitor.
    assert_eq!(state.files(), before);
    // The linked name runs the same applet.
    let link_dir = TestDir::new("mon-link");
    let link = link_dir.join("distccmon-text");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let linked = run_monitor(&link, &[], state.top(), &[]);
    assert_same_output(&linked, &reference);
}

#[test]
fn summary_is_a_table_after_the_job_lines() {
    let state = StateDir::new("mon-summary");
    let me = u64::from(std::process::id());
    state.put("binstate_1", &record(me, 5, b"a.c", b"127.0.0.1", 0));
    state.put("binstate_2", &record(me, 4, b"b.c", b"127.0.0.1", 1));
    state.put("binstate_3", &record(me, 3, b"", b"localhost", 0));
    state.put("binstate_4", &record(me, 5, b"c.c", b"localhost", 0));
    state.put("binstate_5", &record(me, 7, b"done.c", b"localhost", 1));
    state.put(
        "binstate_6",
        &record(me, 6, b"d.c", b"build-server-number-42.example.org", 2),
    );
    let plain = ours(state.top(), &[]);
    let summary = ours(state.top(), &["--summary"]);
    assert!(summary.status.success(), "{}", text(&summary.stderr));
    let plain = text(&plain.stdout);
    let summary = text(&summary.stdout);
    let jobs = plain.strip_suffix('\n').unwrap();
    assert_eq!(jobs.lines().count(), 5);
    assert_eq!(
        summary.strip_prefix(jobs),
        Some(
            "\
HOST                      JOBS  SLOTS  Startup  Blocked  Connect  Preprocess  Send  Compile  Receive
127.0.0.1                    2      2        0        0        0           0     1        1        0
build-server-number-42.example.org     1      1        0        0        0           0     0        0        1
localhost                    2      1        0        0        0           1     0        1        0
(all)                        5      4        0        0        0           1     1        2        1

"
        ),
        "{summary}"
    );
}

#[test]
fn stale_files_of_live_clients_stay_and_those_of_dead_ones_go() {
    let state = StateDir::new("mon-stale");
    let sleepers = Sleepers::start(1);
    let live = sleepers.pid(0);
    let dead = dead_pid();
    let ten_minutes = Duration::from_secs(600);
    let slow = state.put_aged(
        &format!("binstate_{live}"),
        &record(live, 5, b"slow.c", b"127.0.0.1", 0),
        ten_minutes,
    );
    let gone_old = state.put_aged(
        &format!("binstate_{dead}"),
        &record(dead, 5, b"gone.c", b"127.0.0.1", 1),
        ten_minutes,
    );
    let gone_new = state.put(
        "binstate_999999999",
        &record(dead, 5, b"new.c", b"127.0.0.1", 2),
    );
    // Garbage: skipped, and kept while the process named in the file name lives.
    let me = std::process::id();
    let garbage_live = state.put_aged(&format!("binstate_{me}"), b"garbage", ten_minutes);
    let garbage_magic = state.put(
        "binstate_1",
        &record_raw(296, 0xdead, u64::from(me), 5, b"m.c", b"h", 0),
    );
    let garbage_dead = state.put_aged("binstate_x", b"", ten_minutes);

    let got = ours(state.top(), &[]);
    assert!(got.status.success(), "{}", text(&got.stderr));
    let out = text(&got.stdout);
    let want = format!(
        "{live:>6}  Compile     slow.c                                        127.0.0.1[0]\n\n"
    );
    assert_eq!(out, want, "the slow live job is listed, nothing else");
    assert!(
        slow.exists(),
        "a live client's state file must not be deleted"
    );
    assert!(!gone_old.exists(), "a dead client's stale file is removed");
    assert!(
        gone_new.exists(),
        "a dead client's fresh file is only skipped"
    );
    assert!(garbage_live.exists());
    assert!(garbage_magic.exists());
    assert!(
        !garbage_dead.exists(),
        "stale garbage owned by no process goes"
    );
    assert_eq!(
        messages(&got.stderr),
        [format!(
            "Warning: wrong magic number: {}",
            garbage_magic.display()
        )]
    );

    // distccmon-text, for the record, deletes the live client's file.
    let reference = theirs(state.top(), &[]);
    assert!(reference.status.success());
    assert_eq!(text(&reference.stdout), "\n");
    assert!(
        !slow.exists(),
        "distccmon-text 3.4 deletes any state file over 60 s old; if this changed, update the docs"
    );
}

/// Reads a looping monitor's stdout until `polls` polls (each ending in an
/// empty line) have arrived or 10 s have passed, then kills it. Returns the
/// text read and whether the monitor was still running when killed.
fn read_polls(mut child: Child, polls: usize) -> (String, bool) {
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        // Each poll is written and flushed whole; read until enough arrive.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while seen.windows(2).filter(|w| w == b"\n\n").count() < polls {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        seen
    });
    let _ = wait_until(Duration::from_secs(10), || reader.is_finished());
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    (text(&reader.join().unwrap()), still_running)
}

#[test]
fn delay_repeats_polls_each_ending_in_an_empty_line() {
    let state = StateDir::new("mon-delay");
    let me = u64::from(std::process::id());
    state.put("binstate_1", &record(me, 5, b"loop.c", b"127.0.0.1", 0));
    let line = format!(
        "{me:>6}  Compile     loop.c                                        127.0.0.1[0]\n"
    );
    for delay in ["0.2", " 1e-1", "0x1p-3"] {
        let child = Command::new(bin())
            .args(["mon", delay])
            .env("DISTCC_DIR", state.top())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (seen, still_running) = read_polls(child, 3);
        assert!(still_running, "mon {delay:?} stopped by itself: {seen}");
        let polls: Vec<&str> = seen.split_inclusive("\n\n").collect();
        assert!(polls.len() >= 3, "mon {delay:?} gave {seen:?}");
        for poll in &polls[..3] {
            assert_eq!(*poll, format!("{line}\n"), "mon {delay:?}");
        }
    }
}

#[test]
fn delay_words_as_distccmon_text_takes_them() {
    let state = StateDir::new("mon-words");
    // Poll once and exit 0, as distccmon-text does.
    for args in [&[][..], &["0"], &[""], &["-0"], &["0.0"], &["1e-50"]] {
        let got = ours(state.top(), args);
        assert_same_output(&got, &theirs(state.top(), args));
        assert_eq!(got.status.code(), Some(0), "{args:?}");
        assert_eq!(got.stdout, b"\n", "{args:?}");
    }
    // Usage errors: exit 1, the usage on stderr, nothing on stdout.
    for args in [
        &["2x"][..],
        &["1", "2"],
        &["2 "],
        &["."],
        &["1e"],
        &["0x"],
        &["  "],
    ] {
        let got = ours(state.top(), args);
        assert_same_output(&got, &theirs(state.top(), args));
        assert_eq!(got.status.code(), Some(1), "{args:?}");
        assert!(
            text(&got.stderr).contains("Usage:"),
            "{args:?}: {}",
            text(&got.stderr)
        );
        assert!(got.stdout.is_empty());
    }
    // Refused by us: distccmon-text takes these and then sleeps for a
    // wrapped-around time (-1: 71 minutes) or not at all (nan, inf).
    for args in [
        &["-1"][..],
        &["-0.5"],
        &["nan"],
        &["inf"],
        &["--no-such-option"],
    ] {
        let got = ours(state.top(), args);
        assert_eq!(got.status.code(), Some(1), "{args:?}");
        assert!(text(&got.stderr).contains("Usage:"), "{args:?}");
        assert!(got.stdout.is_empty());
    }
    // --help is ours: on stdout, status 0, naming every option.
    let help = ours(state.top(), &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = text(&help.stdout);
    for word in [
        "DELAY",
        "--summary",
        "--daemon",
        "HOST[:PORT]",
        "3633",
        "107",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

#[test]
fn missing_state_dir_exits_107_and_missing_home_101() {
    let top = TestDir::new("mon-nodir");
    let absent = top.join("absent");
    let got = ours(&absent, &[]);
    assert_same_output(&got, &theirs(&absent, &[]));
    assert_eq!(got.status.code(), Some(107));
    assert!(text(&got.stderr).contains(&absent.display().to_string()));
    // A state directory that cannot be read (as nobody: root reads anything).
    let locked = StateDir::new("mon-locked");
    std::fs::set_permissions(locked.path(""), std::fs::Permissions::from_mode(0o000)).unwrap();
    let as_nobody = |program: &str, pre: &str| {
        Command::new("su")
            .args(["nobody", "-s", "/bin/sh", "-c"])
            .arg(format!(
                "DISTCC_DIR='{}' exec '{program}' {pre}",
                locked.top().display()
            ))
            .output()
            .unwrap()
    };
    let mon = distccmon_text();
    let got = as_nobody(bin(), "mon");
    let reference = as_nobody(mon.to_str().unwrap(), "");
    assert_same_output(&got, &reference);
    assert_eq!(got.status.code(), Some(107), "{}", text(&got.stderr));
    assert!(text(&got.stderr).contains("Permission denied"));

    for program in [Path::new(bin()), mon.as_path()] {
        let mut cmd = Command::new(program);
        if program == Path::new(bin()) {
            cmd.arg("mon");
        }
        let out = cmd.env_clear().output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(101),
            "{program:?} without HOME or DISTCC_DIR"
        );
    }
}

/// Every state file's name and change time (to the nanosecond); none
/// before a client has made the state directory.
fn state_files_changed_at(distcc_dir: &Path) -> Vec<(std::ffi::OsString, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir(distcc_dir.join("state")) else {
        return Vec::new();
    };
    let mut files: Vec<_> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let meta = e.metadata().ok()?;
            Some((e.file_name(), meta.ctime(), meta.ctime_nsec()))
        })
        .collect();
    files.sort();
    files
}

/// Polls both monitors until distccmon-text shows the same thing twice in a
/// row with ours in between, and no state file was written meanwhile (a
/// client rewrites its file with O_TRUNC, so a monitor that reads it
/// halfway sees a short file and skips it); returns that output. Panics if
/// the jobs never settle with `want` lines in 20 s.
fn settled_outputs(distcc_dir: &Path, want_lines: usize) -> (Output, Output) {
    let mut settled = None;
    let mut last = String::new();
    let _ = wait_until(Duration::from_secs(20), || {
        let files_before = state_files_changed_at(distcc_dir);
        let before = theirs(distcc_dir, &[]);
        let got = ours(distcc_dir, &[]);
        let after = theirs(distcc_dir, &[]);
        let unwritten = state_files_changed_at(distcc_dir) == files_before;
        let lines = text(&before.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .count();
        last = text(&after.stdout);
        if unwritten && before.stdout == after.stdout && lines == want_lines {
            settled = Some((got, before));
        }
        settled.is_some()
    });
    settled.unwrap_or_else(|| panic!("jobs never settled with {want_lines} lines; last:\n{last}"))
}

#[test]
fn byte_identical_while_real_and_distcc_rs_clients_run_slow_jobs() {
    need("distcc", "distcc");
    let daemon = Daemon::start(
        "mon-live",
        DaemonOptions {
            scripts: vec![("gcc".into(), "sleep 4; exec /usr/bin/gcc \"$@\"".into())],
            ..DaemonOptions::default()
        },
    );
    let work = TestDir::new("mon-live-work");
    let state = work.join("distcc-dir");
    std::fs::create_dir(&state).unwrap();
    let mut jobs = Vec::new();
    for (i, program) in [PathBuf::from(bin()), need("distcc", "distcc")]
        .iter()
        .enumerate()
    {
        let src = format!("slow{i}.c");
        work.write(&src, format!("int slow{i} = {i};\n"));
        jobs.push(
            Command::new(program)
                .args(["gcc", "-c", &src])
                .current_dir(&work.path)
                .env("DISTCC_HOSTS", daemon.host(false))
                .env("DISTCC_DIR", &state)
                .env("DISTCC_NO_REWRITE_CROSS", "1")
                .env("DISTCC_FALLBACK", "0")
                .env_remove("DISTCC_VERBOSE")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    let (got, reference) = settled_outputs(&state, 2);
    assert_same_output(&got, &reference);
    let shown = text(&got.stdout);
    for (i, job) in jobs.iter().enumerate() {
        let line = shown
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", job.id())))
            .unwrap_or_else(|| panic!("job {} not listed:\n{shown}", job.id()));
        assert!(line.contains(&format!("slow{i}.c")), "{line}");
    }
    for job in jobs {
        let out = job.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let after = ours(&state, &[]);
    assert_same_output(&after, &theirs(&state, &[]));
    assert_eq!(after.stdout, b"\n");
}

/// Runs `mon --daemon` (after `pre`) once.
fn ours_daemon(spec: &str, pre: &[&str]) -> Output {
    Command::new(bin())
        .arg("mon")
        .args(pre)
        .args(["--daemon", spec])
        .env_remove("DISTCC_VERBOSE")
        .output()
        .unwrap()
}

#[test]
fn daemon_mode_shows_what_our_daemon_compiles() {
    let daemon = Daemon::start(
        "mon-stats",
        DaemonOptions {
            scripts: vec![("gcc".into(), "sleep 4; exec /usr/bin/gcc \"$@\"".into())],
            stats_listener: true,
            args: vec!["--jobs".into(), "3".into()],
            ..DaemonOptions::default()
        },
    );
    let spec = format!("127.0.0.1:{}", daemon.stats_port.unwrap());
    let idle = ours_daemon(&spec, &[]);
    assert!(idle.status.success(), "{}", text(&idle.stderr));
    assert_eq!(
        text(&idle.stdout),
        format!("{spec}: 0 of 3 slots busy\n   MSECS  CLIENT                   COMPILER          INPUT\n\n")
    );

    let work = TestDir::new("mon-stats-work");
    work.write("slow job.c", "int slow = 1;\n");
    let state = work.join("distcc-dir");
    std::fs::create_dir(&state).unwrap();
    let job = Command::new(bin())
        .args(["gcc", "-c", "slow job.c", "-o", "slow.o"])
        .current_dir(&work.path)
        .env("DISTCC_HOSTS", daemon.host(false))
        .env("DISTCC_DIR", &state)
        .env("DISTCC_NO_REWRITE_CROSS", "1")
        .env("DISTCC_FALLBACK", "0")
        .env_remove("DISTCC_VERBOSE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut shown = String::new();
    let showed = wait_until(Duration::from_secs(20), || {
        let out = ours_daemon(&spec, &["--summary"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        shown = text(&out.stdout);
        shown.contains("1 of 3 slots busy")
    });
    assert!(showed, "the job never showed:\n{shown}\n{}", daemon.log());
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], format!("{spec}: 1 of 3 slots busy"), "{shown}");
    let job_line = lines[2];
    let words: Vec<&str> = job_line.split_whitespace().collect();
    assert!(words[0].parse::<u64>().is_ok(), "{job_line}");
    assert!(words[1].starts_with("127.0.0.1:"), "{job_line}");
    assert_eq!(words[2], "gcc", "{job_line}");
    assert!(job_line.ends_with("  slow job.c"), "{job_line}");
    assert_eq!(lines[3], "CLIENT                   JOBS");
    assert_eq!(lines[4], "127.0.0.1                   1");
    assert_eq!(lines[5], "", "one empty line ends the poll");
    assert_eq!(lines.len(), 6, "{shown}");

    // With DELAY: several polls, each with its header, until killed.
    let looping = Command::new(bin())
        .args(["mon", "0.2", "--daemon", &spec])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (seen, _) = read_polls(looping, 2);
    let polls: Vec<&str> = seen.split_inclusive("\n\n").collect();
    assert!(polls.len() >= 2, "{seen:?}");
    for poll in &polls[..2] {
        assert!(poll.starts_with(&format!("{spec}: ")), "{poll:?}");
    }

    let out = job.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn daemon_mode_says_plainly_what_is_wrong() {
    // Debian's distccd serves statistics but no running jobs.
    let stats_port = common::free_port();
    let port_arg = stats_port.to_string();
    let distccd = DebianDistccd::start_with_args(
        "mon-debian-stats",
        &["--stats", "--stats-port", &port_arg],
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            stats_port
        ))
        .is_ok()),
        "distccd's stats port never opened:\n{}",
        distccd.log()
    );
    let out = ours_daemon(&format!("127.0.0.1:{stats_port}"), &[]);
    assert_eq!(out.status.code(), Some(109), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("no <distccjobs> section"), "{err}");

    // A compile port is not a stats port.
    let out = ours_daemon(&format!("127.0.0.1:{}", distccd.port), &[]);
    assert_eq!(out.status.code(), Some(109), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("without a stats page"));

    // Nobody listening: distcc's "connect failed".
    let (_dead_socket, dead) = common::refusing_port();
    let out = ours_daemon(&format!("127.0.0.1:{dead}"), &[]);
    assert_eq!(out.status.code(), Some(103), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Connection refused"));

    // A peer that accepts and never answers: the bounded read gives up.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let out = ours_daemon(&spec, &[]);
    assert_eq!(out.status.code(), Some(107), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("timed out"),
        "{}",
        text(&out.stderr)
    );
    drop(silent);

    for bad in ["127.0.0.1:0", "127.0.0.1:x", ":3633"] {
        let out = ours_daemon(bad, &[]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(text(&out.stderr).contains("Usage:"));
    }
}
