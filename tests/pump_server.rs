//! The include server and `distcc-rs pump`: the socket protocol (with our proto helpers and with Debian's distcc client), many clients at once, and the pump's life: COMMAND's status, `--startup`/`--shutdown`, its files removed.

use crate::common;

use common::daemon::{bin, TestDir};
use common::{text, wait_until};
use distcc_rs::proto::{self, Limits};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A pump host: any port, as the server never connects to it.
const PUMP_HOSTS: &str = "127.0.0.1:1,cpp,lzo";

/// `distcc-rs pump ARGS` in `dir`, with its pump directory and mirror in
/// `dir` too (TMPDIR, DISTCC_CLIENT_TMP) and `hosts`.
fn pump(dir: &TestDir, hosts: &str, args: &[&str]) -> Command {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let mut cmd = Command::new(bin());
    cmd.arg("pump")
        .args(args)
        .current_dir(&dir.path)
        .env("TMPDIR", &tmp)
        .env("DISTCC_CLIENT_TMP", &dir.path)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_DIR", dir.join("state"))
        .env_remove("DISTCC_POTENTIAL_HOSTS")
        .env_remove("DISTCC_MAX_DISCREPANCY")
        .env_remove("INCLUDE_SERVER_PORT")
        .env_remove("DISTCC_VERBOSE")
        .env_remove("DISTCC_LOG")
        .env_remove("DISTCC_FALLBACK")
        .env_remove("DISTCC_SKIP_LOCAL_RETRY")
        .env_remove("_DISTCC_SAFEGUARD")
        .env_remove("CPATH")
        .env_remove("C_INCLUDE_PATH");
    cmd
}

/// What is left in the test directory's pump places: pump directories and mirrors.
fn leftovers(dir: &TestDir) -> Vec<String> {
    let mut left = Vec::new();
    for place in [dir.join("tmp"), dir.path.clone()] {
        for entry in std::fs::read_dir(place).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with("distcc-pump") {
                left.push(name);
            }
        }
    }
    left
}

/// One query on the include server's socket; the answer's paths.
fn ask(socket: &Path, cwd: &Path, argv: &[&str]) -> Vec<PathBuf> {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    let query = proto::encode_include_query(cwd.as_os_str().as_bytes(), &argv);
    stream.write_all(&query).unwrap();
    proto::read_argv(&mut stream, &Limits::default())
        .unwrap()
        .into_iter()
        .map(|p| PathBuf::from(std::ffi::OsString::from(String::from_utf8(p).unwrap())))
        .collect()
}

fn assert_status(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn pump_command_exports_the_server_and_exits_with_its_status() {
    let dir = TestDir::new("pump-command");
    let script = "test -S \"$INCLUDE_SERVER_PORT\" || exit 99; \
                  echo \"port=$INCLUDE_SERVER_PORT dir=$INCLUDE_SERVER_DIR pid=$INCLUDE_SERVER_PID\"; \
                  ls -d \"$DISTCC_CLIENT_TMP\"/distcc-pump-mirror-* >/dev/null || exit 98; \
                  exit 7";
    let out = pump(&dir, PUMP_HOSTS, &["sh", "-c", script])
        .output()
        .unwrap();
    assert_status(&out, 7, "COMMAND's status");
    let stdout = text(&out.stdout);
    for line in [
        "__________Using distcc-pump from ",
        "__________Using 1 distcc server in pump mode\n",
        "__________Started distcc-pump include server\n",
        "__________Shutting down distcc-pump include server\n",
    ] {
        assert!(stdout.contains(line), "no {line:?} in {stdout}");
    }
    let port = stdout
        .split("port=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let tmp = dir.join("tmp");
    assert!(port.starts_with(tmp.to_str().unwrap()), "{port}");
    assert!(port.ends_with("/socket"), "{port}");
    assert!(stdout.contains(&format!(
        "dir={}",
        Path::new(port).parent().unwrap().display()
    )));
    assert_eq!(leftovers(&dir), Vec::<String>::new(), "files left behind");
}

#[test]
fn pump_command_that_cannot_run_and_one_killed() {
    let dir = TestDir::new("pump-command-missing");
    let out = pump(&dir, PUMP_HOSTS, &["no-such-command-here"])
        .output()
        .unwrap();
    assert_status(&out, 127, "a missing COMMAND");
    let out = pump(&dir, PUMP_HOSTS, &["sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_status(&out, 128 + 15, "COMMAND killed by SIGTERM");
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

#[test]
fn pump_needs_a_cpp_host_as_3_4_does() {
    let dir = TestDir::new("pump-hosts");
    let out = pump(&dir, "127.0.0.1,lzo", &["true"]).output().unwrap();
    assert_status(&out, 1, "no ,cpp host");
    assert!(
        text(&out.stderr).contains(
            "error: pump mode requested, but distcc hosts list does not contain any hosts with ',cpp' option"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = pump(&dir, "127.0.0.1,lzo 127.0.0.2,cpp,lzo", &["true"])
        .output()
        .unwrap();
    assert_status(&out, 0, "one ,cpp host of two");
    assert!(text(&out.stdout)
        .contains("__________Using 2 distcc servers, of which only 1 support(s) pump mode\n"));
    let out = pump(&dir, PUMP_HOSTS, &["true"])
        .env_remove("DISTCC_HOSTS")
        .env("HOME", &dir.path)
        .output()
        .unwrap();
    if !Path::new("/etc/distcc/hosts").exists() {
        assert_status(&out, 1, "no hosts at all");
        assert!(text(&out.stderr).contains("expected environment variables \"DISTCC_HOSTS\""));
    }
    let help = pump(&dir, PUMP_HOSTS, &["--help"]).output().unwrap();
    assert_status(&help, 0, "--help");
    assert!(text(&help.stdout).contains("--startup"));
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

/// The variables `pump --startup` printed.
struct Started {
    pid: u32,
    dir: PathBuf,
    port: PathBuf,
}

impl Started {
    fn parse(stdout: &str) -> Started {
        let value = |name: &str| {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"));
            line.split_once('=')
                .unwrap()
                .1
                .trim_matches('\'')
                .to_string()
        };
        assert!(stdout.contains("export PATH='"), "{stdout}");
        Started {
            pid: value("INCLUDE_SERVER_PID").parse().unwrap(),
            dir: value("INCLUDE_SERVER_DIR").into(),
            port: value("INCLUDE_SERVER_PORT").into(),
        }
    }

    fn alive(&self) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(self.pid as i32, 0) == 0 }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.alive() {
            // SAFETY: the server this test started.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
    }
}

#[test]
fn startup_prints_the_variables_and_shutdown_stops_the_server() {
    let dir = TestDir::new("pump-startup");
    let out = pump(&dir, PUMP_HOSTS, &["--startup"]).output().unwrap();
    assert_status(&out, 0, "--startup");
    let started = Started::parse(&text(&out.stdout));
    assert!(started.alive(), "no server running");
    assert_eq!(started.port, started.dir.join("socket"));
    assert!(started.dir.starts_with(dir.join("tmp")));
    // It answers (ARGC 0 here: there is no source file).
    assert!(ask(&started.port, &dir.path, &["gcc", "-c", "missing.c"]).is_empty());
    std::fs::write(started.dir.join("discrepancy_counter"), "x").unwrap();
    let down = pump(&dir, PUMP_HOSTS, &["--shutdown"])
        .env("INCLUDE_SERVER_PID", started.pid.to_string())
        .env("INCLUDE_SERVER_DIR", &started.dir)
        .output()
        .unwrap();
    assert_status(&down, 0, "--shutdown");
    assert!(text(&down.stdout).contains("__________Shutting down distcc-pump include server"));
    assert!(text(&down.stderr).contains(
        "__________Warning: 1 pump-mode compilation(s) failed on server, but succeeded locally.\n\
         __________Distcc-pump was demoted to plain mode.\n"
    ));
    assert!(
        wait_until(Duration::from_secs(20), || !started.alive()),
        "the server still runs"
    );
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

#[test]
fn shutdown_refuses_a_directory_that_is_not_a_pump_directory() {
    let dir = TestDir::new("pump-shutdown-bad");
    let victim = dir.write("precious/file", "keep me");
    let out = pump(&dir, PUMP_HOSTS, &["--shutdown"])
        .env("INCLUDE_SERVER_DIR", victim.parent().unwrap())
        .env_remove("INCLUDE_SERVER_PID")
        .output()
        .unwrap();
    assert_status(&out, 1, "--shutdown of another directory");
    assert!(victim.exists());
}

#[test]
fn many_clients_at_once_and_a_silent_one_through_the_applet() {
    let dir = TestDir::new("pump-many");
    let proj = std::fs::canonicalize(&dir.path).unwrap();
    for i in 0..12 {
        dir.write(&format!("t{i}.c"), format!("#include \"h{i}.h\"\n"));
        dir.write(&format!("h{i}.h"), format!("int h{i};\n"));
    }
    dir.write("abs.c", format!("#include \"{}/h0.h\"\n", proj.display()));
    let out = pump(&dir, PUMP_HOSTS, &["--startup"]).output().unwrap();
    assert_status(&out, 0, "--startup");
    let started = Started::parse(&text(&out.stdout));
    let mut silent = UnixStream::connect(&started.port).unwrap();
    let began = Instant::now();
    std::thread::scope(|s| {
        for i in 0..12 {
            let (started, proj) = (&started, &proj);
            s.spawn(move || {
                let source = format!("t{i}.c");
                let answer = ask(&started.port, proj, &["gcc", "-c", &source]);
                let names: Vec<PathBuf> = answer
                    .iter()
                    .map(|p| {
                        let name =
                            distcc_rs::mirror::client_name(p.as_os_str().as_bytes()).unwrap();
                        PathBuf::from(std::str::from_utf8(name).unwrap())
                    })
                    .collect();
                assert_eq!(names[0], proj.join(&source), "{answer:?}");
                assert_eq!(names[1], proj.join(format!("h{i}.h")), "{answer:?}");
                assert!(answer[0].to_str().unwrap().ends_with(".c.lzo"));
            });
        }
    });
    assert!(began.elapsed() < Duration::from_secs(30));
    // Fail closed: an absolute #include gets ARGC 0.
    assert!(ask(&started.port, &proj, &["gcc", "-c", "abs.c"]).is_empty());
    silent
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        silent.read(&mut byte).is_err(),
        "the silent client was dropped early"
    );
    let down = pump(&dir, PUMP_HOSTS, &["--shutdown"])
        .env("INCLUDE_SERVER_PID", started.pid.to_string())
        .env("INCLUDE_SERVER_DIR", &started.dir)
        .output()
        .unwrap();
    assert_status(&down, 0, "--shutdown");
    assert!(wait_until(Duration::from_secs(20), || !started.alive()));
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

/// A build directory with the hand sources and Debian's distccd as its one
/// pump host, for Debian's distcc under `distcc-rs pump`.
struct PumpBuild {
    dir: TestDir,
    distccd: common::daemon::DebianDistccd,
    hosts: String,
}

impl PumpBuild {
    fn new(name: &str) -> PumpBuild {
        let dir = TestDir::new(name);
        hand_sources(&dir);
        let distccd = common::daemon::DebianDistccd::start(&format!("{name}-distccd"));
        let hosts = format!("127.0.0.1:{}/2,cpp,lzo", distccd.port);
        PumpBuild {
            dir,
            distccd,
            hosts,
        }
    }

    /// `-I` with the absolute path of `inc`.
    fn inc(&self) -> String {
        format!(
            "-I{}",
            std::fs::canonicalize(self.dir.join("inc"))
                .unwrap()
                .display()
        )
    }

    /// `distcc-rs pump ARGS` with Debian's client logging verbosely.
    fn pump(&self, args: &[&str]) -> Output {
        pump(&self.dir, &self.hosts, args)
            .env("DISTCC_VERBOSE", "1")
            .output()
            .unwrap()
    }

    /// Asserts `out` ran `compiles` compiles in pump mode: only a protocol 3
    /// reply has a DOTD, and nothing was preprocessed here.
    fn assert_pumped(&self, out: &Output, compiles: usize, what: &str) {
        assert_status(out, 0, what);
        let log = text(&out.stderr);
        assert_eq!(log.matches("got DOTD").count(), compiles, "{what}: {log}");
        assert!(!log.contains("preprocessing locally"), "{what}: {log}");
        assert!(!log.contains(" -E "), "{what}: preprocessed locally: {log}");
        assert_eq!(leftovers(&self.dir), Vec::<String>::new(), "{what}");
    }

    /// Compiles `local` here and asserts its object `local_object` is
    /// `object`, byte for byte.
    fn assert_same(&self, object: &str, local: &[&str], local_object: &str) {
        let out = common::local(&self.dir.path, local);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let read = |name: &str| std::fs::read(self.dir.join(name)).unwrap();
        assert!(
            read(object) == read(local_object),
            "{object} differs from the local {local_object}"
        );
    }
}

#[test]
fn debian_distcc_under_pump_compiles_on_debian_distccd() {
    let b = PumpBuild::new("pump-real");
    let inc = b.inc();
    let scan = b.pump(&["distcc", "--scan-includes", "gcc", &inc, "-c", "t.c"]);
    assert_status(&scan, 0, "distcc --scan-includes under pump");
    let proj = std::fs::canonicalize(&b.dir.path).unwrap();
    for line in [
        format!("FILE      {}/t.c\n", proj.display()),
        format!("FILE      {}/a.h\n", proj.display()),
        format!("FILE      {}/inc/b.h\n", proj.display()),
        "SYSTEMDIR /usr/include\n".to_string(),
        format!("DIRECTORY {}/sub\n", proj.display()),
    ] {
        assert!(
            text(&scan.stdout).contains(&line),
            "no {line:?} in {}",
            text(&scan.stdout)
        );
    }
    let out = b.pump(&["distcc", "gcc", &inc, "-c", "t.c", "-o", "t.o"]);
    b.assert_pumped(&out, 1, "distcc-rs pump distcc gcc -c t.c");
    let log = b.distccd.log();
    assert!(log.contains("compile from t.c to t.o"), "{log}");
    // b.h's __FILE__ (under an absolute -I) is the client's name for it.
    b.assert_same(
        "t.o",
        &["gcc", &inc, "-c", "t.c", "-o", "local.o"],
        "local.o",
    );
}

#[test]
fn debian_distcc_under_pump_compiles_through_linked_headers() {
    let b = PumpBuild::new("pump-links");
    b.dir.write("real/d/l.h", "#define L 7\n");
    std::os::unix::fs::symlink("real/d/l.h", b.dir.join("fl.h")).unwrap();
    std::os::unix::fs::symlink("real/d", b.dir.join("dl")).unwrap();
    b.dir.write(
        "u.c",
        "#include \"fl.h\"\n#include \"dl/l.h\"\nint u = L;\n",
    );
    let out = b.pump(&["distcc", "gcc", "-c", "u.c", "-o", "u.o"]);
    b.assert_pumped(&out, 1, "a compile through a linked file and directory");
    b.assert_same("u.o", &["gcc", "-c", "u.c", "-o", "lu.o"], "lu.o");
}

#[test]
fn debian_distcc_under_pump_compiles_cxx() {
    let b = PumpBuild::new("pump-cxx");
    b.dir.write(
        "x.cpp",
        "#include <vector>\n#include <string>\n#include \"a.h\"\n\
         int f() { std::vector<std::string> v{\"a\"}; return (int)v.size() + A; }\n",
    );
    let out = b.pump(&["distcc", "g++", "-c", "x.cpp", "-o", "x.o"]);
    b.assert_pumped(&out, 1, "a C++ compile under pump");
    b.assert_same("x.o", &["g++", "-c", "x.cpp", "-o", "lx.o"], "lx.o");
}

#[test]
fn a_header_changed_during_the_build_reaches_the_helper_as_it_is_now() {
    let b = PumpBuild::new("pump-changed");
    let inc = b.inc();
    let local = ["gcc", inc.as_str(), "-c", "t.c", "-o"];
    assert!(
        common::local(&b.dir.path, &[&local[..], &["old.o"]].concat())
            .status
            .success()
    );
    let script = format!(
        "distcc gcc {inc} -c t.c -o t1.o && printf '#define A 40\\n' > a.h && \
         distcc gcc {inc} -c t.c -o t2.o"
    );
    let out = b.pump(&["sh", "-c", &script]);
    b.assert_pumped(&out, 2, "two compiles with a header changed between them");
    b.assert_same("t1.o", &[&local[..], &["new.o"]].concat(), "old.o");
    b.assert_same("t2.o", &[&local[..], &["new.o"]].concat(), "new.o");
    let read = |name: &str| std::fs::read(b.dir.join(name)).unwrap();
    assert!(
        read("t2.o") != read("t1.o"),
        "the change made no difference"
    );
}

/// The include server in this test process, answering every query with
/// a closure built by hand (the scanner's place): the real 3.4 client and
/// daemon check the mirror tree's format.
struct HandServer {
    running: Option<distcc_rs::pump::server::Running>,
    socket: PathBuf,
}

struct Fixed(distcc_rs::pump::closure::Closure);

impl distcc_rs::pump::server::Scan for Fixed {
    fn closure(
        &self,
        _: &distcc_rs::pump::closure::Request,
    ) -> Result<distcc_rs::pump::closure::Closure, distcc_rs::pump::closure::NotCovered> {
        Ok(self.0.clone())
    }
}

impl HandServer {
    fn start(dir: &TestDir, closure: distcc_rs::pump::closure::Closure) -> HandServer {
        use distcc_rs::pump::{mirror_tree::MirrorTree, server};
        let root = dir.join("m");
        std::fs::create_dir_all(&root).unwrap();
        let socket = dir.join("socket");
        let config = server::Config {
            poison: None,
            ..server::Config::default()
        };
        let running = server::Server::bind(&socket).unwrap().start(
            std::sync::Arc::new(Fixed(closure)),
            MirrorTree::open(&root).unwrap(),
            config,
        );
        HandServer {
            running: Some(running),
            socket,
        }
    }
}

impl Drop for HandServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop(Duration::from_secs(5));
        }
    }
}

fn hand_closure(dir: &TestDir) -> distcc_rs::pump::closure::Closure {
    use distcc_rs::pump::closure::{Closure, Input};
    let proj = std::fs::canonicalize(&dir.path).unwrap();
    let input = |p: PathBuf, line_name: Option<PathBuf>| Input { path: p, line_name };
    Closure {
        files: vec![
            input(proj.join("t.c"), None),
            input(proj.join("a.h"), None),
            input(proj.join("inc/b.h"), Some(proj.join("inc/b.h"))),
        ],
        links: vec![],
        dirs: vec![proj.join("sub")],
        system_dirs: common::pump::default_include_dirs("gcc", "c"),
        ..Closure::default()
    }
}

fn hand_sources(dir: &TestDir) {
    dir.write(
        "t.c",
        "#include <stdio.h>\n#include \"a.h\"\n#include \"b.h\"\n#include \"sub/../a.h\"\nint main(void) { printf(\"%d %s\\n\", A + B, NAME); return 0; }\n",
    );
    dir.write("a.h", "#ifndef A\n#define A 1\n#endif\n");
    dir.write(
        "inc/b.h",
        "#define B 2\n#define NAME b_file\nstatic const char *b_file = __FILE__;\n",
    );
    std::fs::create_dir_all(dir.join("sub")).unwrap();
}

/// Debian's distcc client with the hand-built server, in `dir`.
fn debian_client(dir: &TestDir, server: &HandServer, hosts: &str, args: &[&str]) -> Output {
    common::daemon::client_command(
        &common::daemon::need("distcc", "distcc"),
        &dir.path,
        hosts,
        &[
            ("INCLUDE_SERVER_PORT", server.socket.to_str().unwrap()),
            ("DISTCC_VERBOSE", "1"),
        ],
    )
    .args(args)
    .output()
    .unwrap()
}

#[test]
fn debian_distcc_scan_includes_reads_the_hand_built_answer() {
    let dir = TestDir::new("pump-scan-includes");
    hand_sources(&dir);
    let server = HandServer::start(&dir, hand_closure(&dir));
    let inc = format!(
        "-I{}",
        std::fs::canonicalize(dir.join("inc")).unwrap().display()
    );
    let args = ["--scan-includes", "gcc", &inc, "-c", "t.c"];
    let out = debian_client(&dir, &server, "127.0.0.1:1,cpp,lzo", &args);
    assert_status(&out, 0, "distcc --scan-includes");
    let proj = std::fs::canonicalize(&dir.path).unwrap();
    let p = proj.display();
    let mut want = format!("FILE      {p}/t.c\nFILE      {p}/a.h\nFILE      {p}/inc/b.h\n");
    let systems = common::pump::default_include_dirs("gcc", "c");
    for system in &systems {
        // gcc's /usr/include/x86_64-linux-gnu is inside /usr/include: no link of its own.
        if !systems.iter().any(|s| s != system && system.starts_with(s)) {
            want += &format!("SYSTEMDIR {}\n", system.display());
        }
    }
    want += &format!("DIRECTORY {p}/sub\n");
    assert_eq!(text(&out.stdout), want, "{}", text(&out.stderr));
}

#[test]
fn debian_distcc_compiles_in_pump_mode_on_debian_distccd() {
    let dir = TestDir::new("pump-debian-compile");
    hand_sources(&dir);
    let server = HandServer::start(&dir, hand_closure(&dir));
    let distccd = common::daemon::DebianDistccd::start("pump-debian-compile-distccd");
    let hosts = format!("127.0.0.1:{}/2,cpp,lzo", distccd.port);
    let inc = format!(
        "-I{}",
        std::fs::canonicalize(dir.join("inc")).unwrap().display()
    );
    let out = debian_client(
        &dir,
        &server,
        &hosts,
        &["gcc", &inc, "-c", "t.c", "-o", "t.o"],
    );
    assert_status(&out, 0, "distcc gcc -c t.c in pump mode");
    let log = text(&out.stderr);
    // Only a protocol 3 reply has a DOTD; the server compiled the .c itself.
    assert!(log.contains("got DOTD"), "{log}");
    assert!(!log.contains("preprocessing locally"), "{log}");
    assert!(!log.contains(" -E t.c"), "preprocessed locally: {log}");
    assert!(
        distccd.log().contains("compile from t.c to t.o"),
        "{}",
        distccd.log()
    );
    let local = common::local(&dir.path, &["gcc", &inc, "-c", "t.c", "-o", "local.o"]);
    assert!(local.status.success());
    assert!(
        std::fs::read(dir.join("t.o")).unwrap() == std::fs::read(dir.join("local.o")).unwrap(),
        "the pump-mode object differs from the local one"
    );
}

#[test]
fn cpath_in_the_servers_environment_makes_every_answer_argc_0() {
    let dir = TestDir::new("pump-cpath");
    let proj = std::fs::canonicalize(&dir.path).unwrap();
    dir.write("t.c", "int t;\n");
    let out = pump(&dir, PUMP_HOSTS, &["--startup"])
        .env("CPATH", dir.join("extra"))
        .output()
        .unwrap();
    assert_status(&out, 0, "--startup with CPATH");
    let started = Started::parse(&text(&out.stdout));
    assert!(ask(&started.port, &proj, &["gcc", "-c", "t.c"]).is_empty());
    let down = pump(&dir, PUMP_HOSTS, &["--shutdown"])
        .env("INCLUDE_SERVER_PID", started.pid.to_string())
        .env("INCLUDE_SERVER_DIR", &started.dir)
        .output()
        .unwrap();
    assert_status(&down, 0, "--shutdown");
    // The server's warning, from its log.
    assert!(
        text(&down.stderr).contains("CPATH is set in the include server's environment"),
        "{}",
        text(&down.stderr)
    );
    assert!(wait_until(Duration::from_secs(20), || !started.alive()));
}
