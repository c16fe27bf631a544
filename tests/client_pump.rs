//! Our client in pump mode against Debian's distccd 3.4 (protocol 3): the include server's answer given as `INCLUDE_SERVER_STUB` or by a small include server on a UNIX socket in the test, objects and `.d` files compared with a local compile, mixed host lists, every fallback to plain mode, discrepancies, the monitor's phase and `--scan-includes`.

use crate::common::daemon::{client, DebianDistccd};
use crate::common::pump::{default_include_dirs, MirrorTree};
use crate::common::{local, text, wait_until, TestDir};
use distcc_rs::proto;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The C source: a system header, a header through a relative `-I` and
/// one through an absolute `-I` that uses `__FILE__`.
const C_SOURCE: &str = "#include <stdio.h>\n#include \"g.h\"\n#include \"abs.h\"\n\
    int main(void) { printf(\"%d %s\\n\", G, abs_file); return 0; }\n";
const C_HEADER: &str = "#define G 42\n";
const ABS_HEADER: &str = "static const char *abs_file = __FILE__;\n";
const CXX_SOURCE: &str = "#include <vector>\n#include \"g.h\"\n\
    int f() { std::vector<int> v{G}; return v[0] + (int)v.size(); }\n";

/// A project in a test directory, with the mirror tree an include server
/// would answer for its compiles.
struct Project {
    dir: TestDir,
    tree: MirrorTree,
}

impl Project {
    /// `p.c`, `q.cpp`, `inc/g.h` and `absinc/abs.h`, and a mirror tree with
    /// `sources` (relative names), the headers and the system directories of
    /// `cc` for `lang`.
    fn new(name: &str, sources: &[&str], cc: &str, lang: &str) -> Project {
        let dir = TestDir::new(name);
        dir.write("p.c", C_SOURCE);
        dir.write("q.cpp", CXX_SOURCE);
        dir.write("inc/g.h", C_HEADER);
        dir.write("absinc/abs.h", ABS_HEADER);
        let mut tree = MirrorTree::new(dir.path());
        for source in sources {
            tree.file(&dir.join(source));
        }
        tree.file(&dir.join("inc/g.h"));
        let abs = dir.join("absinc/abs.h");
        tree.file_abs(&abs, abs.to_str().unwrap());
        for system in outermost(default_include_dirs(cc, lang)) {
            tree.system_dir(&system);
        }
        Project { dir, tree }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `-I` options for the headers: `inc` relative, `absinc` absolute.
    fn includes(&self) -> Vec<String> {
        vec![
            "-Iinc".to_string(),
            format!("-I{}", self.dir.join("absinc").display()),
        ]
    }
}

/// The directories of `dirs` that are not inside another one: the include
/// server links only those (a link inside a link would be made through it).
fn outermost(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    dirs.iter()
        .filter(|d| !dirs.iter().any(|o| o != *d && d.starts_with(o)))
        .cloned()
        .collect()
}

/// The pump host spec for `server`.
fn pump_host(server: &DebianDistccd) -> String {
    format!("127.0.0.1:{}/8,cpp,lzo", server.port)
}

/// Runs our client in `dir` with `hosts`, verbose, with `env`.
fn run(dir: &Path, hosts: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec![("DISTCC_VERBOSE", "1")];
    all.extend_from_slice(env);
    client(dir, hosts, args, &all)
}

/// `args` with owned extra arguments appended.
fn with(args: &[&str], extra: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string())
        .chain(extra.iter().cloned())
        .collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Asserts that `out` succeeded and that our client sent the job as
/// protocol 3.
fn assert_pumped(out: &Output, what: &str) {
    let err = text(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{err}");
    assert!(
        err.contains("(protocol 3, "),
        "{what} did not go out as protocol 3:\n{err}"
    );
}

/// Asserts that `out` succeeded as a plain (protocol 2) job on `host`,
/// after the one-line reason `why`.
fn assert_plain(out: &Output, host: &str, why: &str) {
    let err = text(&out.stderr);
    assert!(out.status.success(), "the plain job failed:\n{err}");
    let reason = err
        .lines()
        .find(|l| l.contains("plain mode on"))
        .unwrap_or_else(|| panic!("no reason for plain mode:\n{err}"));
    assert!(reason.contains(why), "reason {reason:?}, not {why:?}");
    assert!(
        err.contains(&format!("sending to {host} (protocol 2)")),
        "not sent plain to {host}:\n{err}"
    );
    assert!(!err.contains("(protocol 3, "), "sent as protocol 3:\n{err}");
}

/// Compiles `args` here in `dir` with `-o local.o` in place of `-o OUT`
/// and returns the object, leaving nothing behind.
fn local_object(dir: &Path, args: &[&str]) -> Vec<u8> {
    let mut local_args: Vec<&str> = args.to_vec();
    let o = local_args.iter().position(|a| *a == "-o").unwrap();
    local_args[o + 1] = "local.o";
    let out = local(dir, &local_args);
    assert!(
        out.status.success(),
        "local {args:?}: {}",
        text(&out.stderr)
    );
    let bytes = std::fs::read(dir.join("local.o")).unwrap();
    std::fs::remove_file(dir.join("local.o")).unwrap();
    bytes
}

#[test]
fn c_and_cxx_objects_are_identical_to_a_local_compile() {
    let server = DebianDistccd::start("pump-objects-d");
    let mut jobs = 0;
    for (cc, lang, source) in [("gcc", "c", "p.c"), ("g++", "c++", "q.cpp")] {
        let project = Project::new("pump-objects", &[source], cc, lang);
        let args = with(
            &[cc, "-O2", "-c", source, "-o", "out.o"],
            &project.includes(),
        );
        let args = strs(&args);
        let want = local_object(project.path(), &args);
        let stub = project.tree.stub();
        let out = run(
            project.path(),
            &pump_host(&server),
            &args,
            &[("INCLUDE_SERVER_STUB", &stub), ("DISTCC_FALLBACK", "0")],
        );
        assert_pumped(&out, cc);
        jobs += 1;
        assert_eq!(pump_jobs_at_least(&server, jobs), jobs, "{}", server.log());
        assert!(
            text(&out.stderr).contains("INCLUDE_SERVER_STUB is set to '"),
            "no stub warning:\n{}",
            text(&out.stderr)
        );
        let got = std::fs::read(project.path().join("out.o")).unwrap();
        assert!(
            got == want,
            "{cc}: the object differs from a local compile's"
        );
    }
}

/// The number of jobs distccd has compiled as protocol 3: it fixes up the
/// debug information (and logs it) only for those.
fn pump_jobs(server: &DebianDistccd) -> usize {
    server.log().matches("(dcc_fix_debug_info)").count()
}

/// Waits up to 5 s for distccd to have logged `want` protocol 3 jobs, and
/// returns how many it has.
fn pump_jobs_at_least(server: &DebianDistccd, want: usize) -> usize {
    let _ = wait_until(Duration::from_secs(5), || pump_jobs(server) >= want);
    pump_jobs(server)
}

/// What one client asked the include server: its directory and command.
type Query = (Vec<u8>, Vec<Vec<u8>>);

/// An include server in the test: a thread on the UNIX socket `is/socket`
/// of a test directory that answers every query with the same list, and
/// keeps the queries.
struct IncludeServer {
    socket: PathBuf,
    queries: Arc<Mutex<Vec<Query>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IncludeServer {
    /// Serves `answer` (an empty one: the server gives up) on `DIR/is/socket`.
    fn start(dir: &TestDir, answer: &[PathBuf]) -> IncludeServer {
        IncludeServer::start_gated(dir, answer, None)
    }

    /// The same, answering each query only once `gate` says so (or after
    /// 30 s).
    fn start_gated(
        dir: &TestDir,
        answer: &[PathBuf],
        gate: Option<std::sync::mpsc::Receiver<()>>,
    ) -> IncludeServer {
        let socket = dir.join("is/socket");
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let listener = UnixListener::bind(&socket).unwrap();
        let answer: Vec<Vec<u8>> = answer
            .iter()
            .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
            .collect();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, stopped) = (queries.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 100 connections; Drop wakes it with one more.
            for _ in 0..100 {
                let Ok((conn, _)) = listener.accept() else {
                    return;
                };
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if let Some(gate) = &gate {
                    let _ = gate.recv_timeout(Duration::from_secs(30));
                }
                if let Some(query) = answer_one(conn, &answer) {
                    seen.lock().unwrap().push(query);
                }
            }
        });
        IncludeServer {
            socket,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    fn port(&self) -> &str {
        self.socket.to_str().unwrap()
    }

    fn queries(&self) -> Vec<Query> {
        self.queries.lock().unwrap().clone()
    }

    /// The discrepancy counter beside the socket.
    fn counter(&self) -> PathBuf {
        self.socket.with_file_name("discrepancy_counter")
    }
}

/// Reads one query from `conn` and answers `answer`.
fn answer_one(mut conn: std::os::unix::net::UnixStream, answer: &[Vec<u8>]) -> Option<Query> {
    use std::io::Write;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let query = proto::read_include_query(&mut conn, &proto::Limits::default()).ok()?;
    let paths: Vec<&[u8]> = answer.iter().map(Vec::as_slice).collect();
    conn.write_all(&proto::encode_include_answer(&paths)).ok()?;
    Some((query.cwd, query.argv))
}

impl Drop for IncludeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::os::unix::net::UnixStream::connect(&self.socket);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `args` here in `dir` (with `env`), returns the bytes of `outputs`
/// and removes them.
fn local_outputs(
    dir: &Path,
    args: &[&str],
    outputs: &[&str],
    env: &[(&str, &str)],
) -> Vec<Vec<u8>> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "local {args:?}: {}",
        text(&out.stderr)
    );
    outputs
        .iter()
        .map(|o| {
            let bytes = std::fs::read(dir.join(o)).unwrap_or_else(|e| panic!("local {o}: {e}"));
            std::fs::remove_file(dir.join(o)).unwrap();
            bytes
        })
        .collect()
}

/// The bytes of `section` in the object at `path`.
fn section(path: &Path, section: &str) -> Vec<u8> {
    let dump = path.with_extension("section");
    let out = std::process::Command::new("objcopy")
        .arg(format!("--dump-section={section}={}", dump.display()))
        .arg(path)
        .arg(path.with_extension("scratch"))
        .output()
        .unwrap();
    assert!(out.status.success(), "objcopy: {}", text(&out.stderr));
    let bytes = std::fs::read(&dump).unwrap();
    std::fs::remove_file(&dump).unwrap();
    std::fs::remove_file(path.with_extension("scratch")).unwrap();
    bytes
}

/// The NUL-terminated strings of a string section.
fn strings(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn with_g_the_compile_directory_names_distccds_temporary_root() {
    let server = DebianDistccd::start("pump-debug-d");
    let project = Project::new("pump-debug", &["p.c"], "gcc", "c");
    let args = with(
        &["gcc", "-g", "-c", "p.c", "-o", "out.o"],
        &project.includes(),
    );
    let args = strs(&args);
    let dir = project.path();
    let local = local_outputs(dir, &args, &["out.o"], &[]);
    std::fs::write(dir.join("local.o"), &local[0]).unwrap();
    let stub = project.tree.stub();
    let out = run(
        dir,
        &pump_host(&server),
        &args,
        &[("INCLUDE_SERVER_STUB", &stub), ("DISTCC_FALLBACK", "0")],
    );
    assert_pumped(&out, "gcc -g");
    let (ours, theirs) = (dir.join("local.o"), dir.join("out.o"));
    assert!(std::fs::read(&theirs).unwrap() != local[0], "no difference");
    // The code and .debug_str, which distccd patches, are the same.
    for same in [".text", ".debug_str"] {
        assert_eq!(section(&ours, same), section(&theirs, same), "{same}");
    }
    // DWARF 5 keeps the compile directory in .debug_line_str, which
    // distccd 3.4 leaves alone: there, and only there, the client's
    // directory is named under distccd's temporary root.
    let cwd = dir.to_str().unwrap();
    let local_strings = strings(&section(&ours, ".debug_line_str"));
    let remote_strings = strings(&section(&theirs, ".debug_line_str"));
    let root_prefix = format!("{}/distccd_", server.dir.join("tmp").display());
    let comp_dir = remote_strings
        .iter()
        .find(|s| s.starts_with(&root_prefix))
        .unwrap_or_else(|| panic!("no temporary root in {remote_strings:?}"));
    let root = &comp_dir[..root_prefix.len() + 6];
    assert_eq!(comp_dir, &format!("{root}{cwd}"), "the compile directory");
    let expected: Vec<String> = local_strings
        .iter()
        .map(|s| {
            if s == cwd {
                format!("{root}{cwd}")
            } else {
                s.clone()
            }
        })
        .collect();
    assert_eq!(
        remote_strings, expected,
        "only the compile directory differs"
    );
    assert!(local_strings.iter().any(|s| s == cwd), "{local_strings:?}");
}

/// The words of a `.d` file as make reads them.
fn deps_words(d: &[u8]) -> Vec<String> {
    text(d)
        .replace("\\\n", " ")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn dependency_files_name_what_a_local_compile_names() {
    let server = DebianDistccd::start("pump-deps-d");
    let project = Project::new("pump-deps", &["p.c"], "gcc", "c");
    let dir = project.path();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("deps")).unwrap();
    let stub = project.tree.stub();
    let cases: &[(&[&str], &str, &str, Option<&str>)] = &[
        (&["-MD", "-c", "p.c", "-o", "out.o"], "out.o", "out.d", None),
        (
            &["-MMD", "-c", "p.c", "-o", "sub/out.o"],
            "sub/out.o",
            "sub/out.d",
            None,
        ),
        (
            &["-MD", "-MF", "deps/x.d", "-c", "p.c", "-o", "out.o"],
            "out.o",
            "deps/x.d",
            None,
        ),
        (
            &[
                "-MMD",
                "-MFdeps/y.d",
                "-MT",
                "custom",
                "-c",
                "p.c",
                "-o",
                "out.o",
            ],
            "out.o",
            "deps/y.d",
            None,
        ),
        (
            &["-c", "p.c", "-o", "out.o"],
            "out.o",
            "env.d",
            Some("env.d out.o"),
        ),
        // The Linux kernel's form, which the server gets as driver options.
        (
            &["-Wp,-MMD,deps/.out.o.d", "-c", "p.c", "-o", "sub/out.o"],
            "sub/out.o",
            "deps/.out.o.d",
            None,
        ),
    ];
    for &(rest, object, deps, env) in cases {
        let args = with(
            &["gcc"],
            &rest.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        let args = with(&strs(&args), &project.includes());
        let args = strs(&args);
        let extra: Vec<(&str, &str)> = env
            .map(|e| ("DEPENDENCIES_OUTPUT", e))
            .into_iter()
            .collect();
        let want = local_outputs(dir, &args, &[object, deps], &extra);
        let mut env_all = vec![
            ("INCLUDE_SERVER_STUB", stub.as_str()),
            ("DISTCC_FALLBACK", "0"),
        ];
        env_all.extend(&extra);
        let out = run(dir, &pump_host(&server), &args, &env_all);
        assert_pumped(&out, &format!("{rest:?}"));
        assert!(
            std::fs::read(dir.join(object)).unwrap() == want[0],
            "{rest:?}: object"
        );
        let got = std::fs::read(dir.join(deps)).unwrap();
        // distccd 3.4 puts the target in after gcc wrapped the lines for
        // its own, longer, temporary object name: the same words, which are
        // the client's paths (the system headers are the server's, which
        // here are the same), with the lines broken elsewhere.
        assert_eq!(
            deps_words(&got),
            deps_words(&want[1]),
            "{rest:?}: the .d file"
        );
        let abs = project.dir.join("absinc/abs.h");
        assert!(
            deps_words(&got).contains(&abs.display().to_string()),
            "{rest:?}"
        );
        for path in [object, deps] {
            std::fs::remove_file(dir.join(path)).unwrap();
        }
    }
    assert!(
        std::fs::read_dir(dir.join("deps")).unwrap().count() == 0
            && std::fs::read_dir(dir.join("sub")).unwrap().count() == 0,
        "temporary files left behind"
    );
}

#[test]
fn the_include_server_is_asked_over_its_socket() {
    let server = DebianDistccd::start("pump-socket-d");
    let project = Project::new("pump-socket", &["p.c"], "gcc", "c");
    let includes = IncludeServer::start(&project.dir, project.tree.answer());
    let dir = project.path();
    let args = with(&["gcc", "-MD", "-c", "p.c"], &project.includes());
    let args = strs(&args);
    let want = local_outputs(dir, &args, &["p.o", "p.d"], &[]);
    let out = run(
        dir,
        &pump_host(&server),
        &args,
        &[
            ("INCLUDE_SERVER_PORT", includes.port()),
            ("DISTCC_FALLBACK", "0"),
        ],
    );
    assert_pumped(&out, "gcc");
    assert!(std::fs::read(dir.join("p.o")).unwrap() == want[0], "object");
    assert_eq!(
        deps_words(&std::fs::read(dir.join("p.d")).unwrap()),
        deps_words(&want[1])
    );
    assert_eq!(pump_jobs_at_least(&server, 1), 1, "{}", server.log());
    // It was sent its directory and the whole command as the server gets
    // it, the compiler rewritten and the output named, without -MT.
    let queries = includes.queries();
    assert_eq!(queries.len(), 1, "{queries:?}");
    let (cwd, argv) = &queries[0];
    assert_eq!(cwd.as_slice(), dir.as_os_str().as_encoded_bytes());
    let includes_args = project.includes();
    let mut expected = vec!["x86_64-linux-gnu-gcc", "-MD", "-c", "p.c"];
    expected.extend(strs(&includes_args));
    expected.extend(["-o", "p.o"]);
    let argv: Vec<String> = argv.iter().map(|a| text(a)).collect();
    assert_eq!(argv, expected);
}

#[test]
fn a_mixed_list_sends_pump_jobs_to_the_pump_host_and_plain_jobs_to_the_plain_one() {
    let pump = DebianDistccd::start("pump-mixed-p");
    let plain = DebianDistccd::start("pump-mixed-q");
    let project = Project::new("pump-mixed", &["p.c"], "gcc", "c");
    let includes = IncludeServer::start(&project.dir, project.tree.answer());
    let dir = project.path();
    let args = with(&["gcc", "-c", "p.c", "-o", "out.o"], &project.includes());
    let args = strs(&args);
    let want = local_object(dir, &args);
    let pump_host = format!("127.0.0.1:{}/1,cpp,lzo", pump.port);
    let plain_host = format!("127.0.0.1:{}/1,lzo", plain.port);
    let hosts = format!("{pump_host} {plain_host}");
    let env = [
        ("INCLUDE_SERVER_PORT", includes.port()),
        ("DISTCC_FALLBACK", "0"),
    ];
    let first = run(dir, &hosts, &args, &env);
    assert_pumped(&first, "the first job");
    assert!(std::fs::read(dir.join("out.o")).unwrap() == want);
    // The pump host's only slot is taken: the next job goes to the plain
    // host, preprocessed here, and the include server is not asked.
    let lock_dir = dir.join(".distcc-state/lock");
    std::fs::create_dir_all(&lock_dir).unwrap();
    let _slot = hold_lock(&lock_dir.join(format!("cpu_tcp_127.0.0.1_{}_0", pump.port)));
    std::fs::remove_file(dir.join("out.o")).unwrap();
    let second = run(dir, &hosts, &args, &env);
    let err = text(&second.stderr);
    assert!(second.status.success(), "{err}");
    assert!(
        err.contains(&format!("sending to {plain_host} (protocol 2)")),
        "{err}"
    );
    assert!(std::fs::read(dir.join("out.o")).unwrap() == want);
    assert_eq!(includes.queries().len(), 1, "asked for the plain job");
    assert_eq!(pump_jobs_at_least(&pump, 1), 1);
    // distccd may log its summary after the client has the object.
    let compiled = wait_until(Duration::from_secs(5), || {
        plain.log().contains("COMPILE_OK")
    });
    assert!(compiled, "{}", plain.log());
    assert_eq!(pump_jobs(&plain), 0, "{}", plain.log());
}

/// Takes the `fcntl` lock a client takes on a slot, for as long as the
/// file is kept open.
fn hold_lock(path: &Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    // SAFETY: an all-zero flock covers the whole file; our own descriptor.
    let got = unsafe {
        let mut lock: libc::flock = std::mem::zeroed();
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &lock)
    };
    assert_eq!(got, 0, "cannot lock {}", path.display());
    file
}

/// Extra environment for one run.
type Env<'a> = Vec<(&'a str, &'a str)>;

/// A path of the length the include server's usually are.
fn project_path_placeholder() -> PathBuf {
    PathBuf::from("/tmp/distcc-rs-test-pump-fallbacks/m/tmp/distcc-rs-test-pump-fallbacks/p.c.lzo")
}

#[test]
fn each_fallback_sends_the_job_plain_to_the_same_host_with_its_reason() {
    let server = DebianDistccd::start("pump-fallbacks-d");
    let project = Project::new("pump-fallbacks", &["p.c"], "gcc", "c");
    let giving_up = TestDir::new("pump-fallbacks-gives-up");
    let gives_up = IncludeServer::start(&giving_up, &[]);
    // An answer of more entries than the client takes (65536).
    let flooding = TestDir::new("pump-fallbacks-floods");
    let flood = vec![project_path_placeholder(); 65537];
    let floods = IncludeServer::start(&flooding, &flood);
    let includes = IncludeServer::start(&project.dir, project.tree.answer());
    let dir = project.path();
    let host = pump_host(&server);
    let args = with(&["gcc", "-c", "p.c", "-o", "out.o"], &project.includes());
    let args = strs(&args);
    let want = local_object(dir, &args);
    let preprocessed = local(
        dir,
        &with(&["gcc", "-E", "p.c", "-o", "p.i"], &project.includes())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(preprocessed.status.success());
    let port = includes.port();
    let missing = dir.join("nothing/socket");
    let missing = missing.to_str().unwrap();
    let with_wp = with(&args, &["-Wp,-MD,wp.d,-MP".to_string()]);
    let cases: Vec<(Vec<&str>, Env, &str)> = vec![
        (
            vec!["gcc", "-c", "p.i", "-o", "out.o"],
            vec![("INCLUDE_SERVER_PORT", port)],
            "cannot use distcc_pump on already preprocessed file",
        ),
        (
            args.clone(),
            vec![("INCLUDE_SERVER_PORT", port), ("CPATH", "inc")],
            "CPATH",
        ),
        (
            args.clone(),
            vec![("INCLUDE_SERVER_PORT", port), ("C_INCLUDE_PATH", "inc")],
            "C_INCLUDE_PATH",
        ),
        (
            args.clone(),
            vec![],
            "INCLUDE_SERVER_PORT not set - did you forget to run under 'distcc-pump'?",
        ),
        (
            args.clone(),
            vec![("INCLUDE_SERVER_PORT", missing)],
            "failed to talk to include server",
        ),
        (
            args.clone(),
            vec![("INCLUDE_SERVER_PORT", gives_up.port())],
            "include server gave up analyzing",
        ),
        (
            args.clone(),
            vec![("INCLUDE_SERVER_PORT", floods.port())],
            "ARGC of 65537 exceeds the limit of 65536",
        ),
        (
            strs(&with_wp),
            vec![("INCLUDE_SERVER_PORT", port)],
            "a -Wp, option writes the dependency file",
        ),
    ];
    for (command, env, why) in cases {
        let mut env = env;
        env.push(("DISTCC_FALLBACK", "0"));
        let out = run(dir, &host, &command, &env);
        assert_plain(&out, &host, why);
        assert!(
            std::fs::read(dir.join("out.o")).unwrap() == want,
            "{why}: object"
        );
        std::fs::remove_file(dir.join("out.o")).unwrap();
    }
    let err = text(&run(dir, &host, &args, &[]).stderr);
    assert!(
        err.contains(
            "Warning: INCLUDE_SERVER_PORT not set - did you forget to run under 'distcc-pump'?"
        ),
        "3.4's warning: {err}"
    );
    assert_eq!(includes.queries().len(), 0, "asked for a plain job");
    assert_eq!(gives_up.queries().len(), 1);
    assert_eq!(pump_jobs(&server), 0, "{}", server.log());
}

#[test]
fn a_remote_failure_that_compiles_here_is_a_discrepancy_and_enough_of_them_turn_pump_off() {
    let server = DebianDistccd::start("pump-discrepancy-d");
    // The include server forgets g.h: the server cannot compile p.c.
    let project = Project::new("pump-discrepancy", &["p.c"], "gcc", "c");
    let forgetful: Vec<PathBuf> = project
        .tree
        .answer()
        .iter()
        .filter(|p| !p.ends_with("g.h.lzo"))
        .cloned()
        .collect();
    assert_eq!(forgetful.len() + 1, project.tree.answer().len());
    let includes = IncludeServer::start(&project.dir, &forgetful);
    let dir = project.path();
    let host = pump_host(&server);
    let args = with(&["gcc", "-c", "p.c", "-o", "out.o"], &project.includes());
    let args = strs(&args);
    let want = local_object(dir, &args);
    let env = [
        ("INCLUDE_SERVER_PORT", includes.port()),
        ("DISTCC_MAX_DISCREPANCY", "2"),
    ];
    let words = "remote compilation of 'p.c' failed, retried locally and got a different result.";
    let plain_now =
        "now using plain distcc, possibly due to inconsistent file system changes during build";
    for count in 1..=2u64 {
        let out = run(dir, &host, &args, &env);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("(protocol 3, "), "{err}");
        assert!(err.contains(&format!("Warning: {words}")), "{err}");
        assert_eq!(err.contains(plain_now), count == 2, "{err}");
        assert!(std::fs::read(dir.join("out.o")).unwrap() == want);
        assert_eq!(
            std::fs::read(includes.counter()).unwrap(),
            b"@".repeat(count as usize)
        );
        // The local retry's backoff mark would send the next job here.
        let _ = std::fs::remove_dir_all(dir.join(".distcc-state/lock"));
    }
    let out = run(dir, &host, &args, &env);
    assert_plain(
        &out,
        &host,
        "2 discrepancies in this build (DISTCC_MAX_DISCREPANCY=2)",
    );
    assert_eq!(includes.queries().len(), 2);
    // A failure the local compile repeats is no discrepancy.
    std::fs::write(dir.join("bad.c"), "int x = ;\n").unwrap();
    let _ = std::fs::remove_file(includes.counter());
    // Bound for the test's length: a temporary would remove the directory
    // before the tree is made in it, and the tree would be left behind.
    let bad_root = TestDir::new("pump-discrepancy-bad");
    let mut bad = MirrorTree::new(&bad_root.path);
    bad.file(&dir.join("bad.c"));
    let out = run(
        dir,
        &host,
        &["gcc", "-c", "bad.c", "-o", "bad.o"],
        &[
            ("INCLUDE_SERVER_STUB", &bad.stub()),
            ("INCLUDE_SERVER_PORT", includes.port()),
        ],
    );
    assert!(!out.status.success());
    assert!(!text(&out.stderr).contains(words), "{}", text(&out.stderr));
    assert!(!includes.counter().exists());
}

#[test]
fn cpp_without_lzo_is_3_4s_error_and_the_job_compiles_here() {
    let server = DebianDistccd::start("pump-nolzo-d");
    let project = Project::new("pump-nolzo", &["p.c"], "gcc", "c");
    let dir = project.path();
    let args = with(&["gcc", "-c", "p.c", "-o", "out.o"], &project.includes());
    let args = strs(&args);
    let want = local_object(dir, &args);
    let stub = project.tree.stub();
    let host = format!("127.0.0.1:{},cpp", server.port);
    let out = client(dir, &host, &args, &[("INCLUDE_SERVER_STUB", &stub)]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("ERROR: $DISTCC_HOSTS: bad host \"")
            && err.contains("pump mode (',cpp') requires compression (',lzo')"),
        "{err}"
    );
    assert!(std::fs::read(dir.join("out.o")).unwrap() == want);
    assert!(!server.log().contains("COMPILE_OK"), "{}", server.log());
}

#[test]
fn scan_includes_prints_what_debian_distcc_prints() {
    let server = DebianDistccd::start("pump-scan-d");
    let mut project = Project::new("pump-scan", &["p.c"], "gcc", "c");
    let inc = project.dir.join("inc");
    project.tree.forcing(&inc);
    project
        .tree
        .link(&project.dir.join("alias.h"), Path::new("inc/g.h"));
    let dir = project.path();
    let stub = project.tree.stub();
    let args = with(
        &["--scan-includes", "gcc", "-c", "p.c", "-o", "out.o"],
        &project.includes(),
    );
    let args = strs(&args);
    let host = pump_host(&server);
    let env = [("INCLUDE_SERVER_STUB", stub.as_str())];
    let ours = client(dir, &host, &args, &env);
    let theirs = crate::common::daemon::distcc(dir, &host, &args, &env);
    assert!(ours.status.success(), "{}", text(&ours.stderr));
    assert!(theirs.status.success(), "{}", text(&theirs.stderr));
    assert_eq!(text(&ours.stdout), text(&theirs.stdout));
    let d = dir.display();
    let lines: Vec<String> = text(&ours.stdout).lines().map(str::to_string).collect();
    for want in [
        format!("FILE      {d}/p.c"),
        format!("FILE      {d}/inc/g.h"),
        format!("FILE      {d}/absinc/abs.h"),
        "SYSTEMDIR /usr/include".to_string(),
        format!("DIRECTORY {d}/inc"),
        format!("SYMLINK   {d}/alias.h"),
    ] {
        assert!(lines.contains(&want), "no {want:?} in {lines:?}");
    }
    assert!(!dir.join("out.o").exists(), "compiled");
    // A host without ,cpp: 3.4's error, from both.
    let plain = server.host(true);
    let ours = client(dir, &plain, &args, &env);
    let theirs = crate::common::daemon::distcc(dir, &plain, &args, &env);
    let words = "'--scan_includes' specified, but distcc wouldn't have used include server";
    for out in [&ours, &theirs] {
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(words), "{}", text(&out.stderr));
    }
    assert_eq!(ours.status.code(), theirs.status.code());
}

#[test]
fn an_answer_that_cannot_be_used_or_an_unreadable_directory_sends_the_job_plain() {
    let server = DebianDistccd::start("pump-badanswer-d");
    let project = Project::new("pump-badanswer", &["p.c"], "gcc", "c");
    let dir = project.path();
    let host = pump_host(&server);
    let args = with(&["gcc", "-c", "p.c", "-o", "out.o"], &project.includes());
    let args = strs(&args);
    let want = local_object(dir, &args);
    let root = project.tree.root.display().to_string();
    let other = TestDir::new("pump-badanswer-other");
    let mut other_tree = MirrorTree::new(other.path());
    other_tree.file(&dir.join("inc/g.h"));
    let cases = [
        (
            "/tmp/x".to_string(),
            "/tmp/x is not in the include server's mirror tree",
        ),
        (
            format!("{root}{}/p.c.lzo {}", dir.display(), other_tree.stub()),
            "is not in the include server's mirror tree",
        ),
        (
            format!("{root}/tmp/missing.c.lzo"),
            "open failed: No such file",
        ),
        (
            format!("{root}/tmp/../etc/x.lzo"),
            "/tmp/../etc/x: has an empty, '.' or '..' component",
        ),
        (format!("{root}/tmp"), "not a regular file"),
    ];
    std::fs::create_dir_all(project.tree.root.join("tmp")).unwrap();
    for (stub, why) in cases {
        let env = [
            ("INCLUDE_SERVER_STUB", stub.as_str()),
            ("DISTCC_FALLBACK", "0"),
        ];
        let out = run(dir, &host, &args, &env);
        assert_plain(&out, &host, why);
        assert!(
            std::fs::read(dir.join("out.o")).unwrap() == want,
            "{why}: object"
        );
        std::fs::remove_file(dir.join("out.o")).unwrap();
    }
    // A working directory that no longer exists: getcwd fails, and the job
    // (all its paths absolute) goes plain rather than without CDIR.
    let d = dir.display();
    let command = format!(
        "mkdir gone && cd gone && rmdir ../gone && exec {} gcc -c {d}/p.c -o {d}/out.o \
         -I{d}/inc -I{d}/absinc",
        crate::common::daemon::bin()
    );
    let absolute = [
        "gcc".to_string(),
        "-c".into(),
        format!("{d}/p.c"),
        "-o".into(),
        format!("{d}/out.o"),
        format!("-I{d}/inc"),
        format!("-I{d}/absinc"),
    ];
    let want = local_object(dir, &strs(&absolute));
    let stub = project.tree.stub();
    let out = crate::common::daemon::client_command(Path::new("/bin/sh"), dir, &host, &[])
        .env("DISTCC_VERBOSE", "1")
        .env("INCLUDE_SERVER_STUB", &stub)
        .env("DISTCC_FALLBACK", "0")
        .args(["-c", &command])
        .output()
        .unwrap();
    assert_plain(&out, &host, "cannot read the current directory");
    assert!(std::fs::read(dir.join("out.o")).unwrap() == want, "object");
    assert_eq!(pump_jobs(&server), 0, "{}", server.log());
}

#[test]
fn the_monitor_shows_a_job_in_preprocess_on_localhost_while_the_include_server_is_asked() {
    let server = DebianDistccd::start("pump-monitor-d");
    let project = Project::new("pump-monitor", &["p.c"], "gcc", "c");
    let (open, gate) = std::sync::mpsc::channel();
    let includes = IncludeServer::start_gated(&project.dir, project.tree.answer(), Some(gate));
    let dir = project.path();
    let args = with(&["gcc", "-c", "p.c", "-o", "out.o"], &project.includes());
    let args = strs(&args);
    let want = local_object(dir, &args);
    let child = crate::common::daemon::client_command(
        Path::new(crate::common::daemon::bin()),
        dir,
        &pump_host(&server),
        &[
            ("INCLUDE_SERVER_PORT", includes.port()),
            ("DISTCC_VERBOSE", "1"),
        ],
    )
    .args(&args)
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // As in 3.4: the local preprocessing slot is held while the include
    // server scans, and the state file says so.
    let state = dir
        .join(".distcc-state/state")
        .join(format!("binstate_{}", child.id()));
    let mut seen = None;
    let preprocessing = wait_until(Duration::from_secs(10), || {
        seen = std::fs::read(&state)
            .ok()
            .and_then(|b| distcc_rs::state::decode(&b).ok());
        seen.as_ref()
            .is_some_and(|e| e.phase() == distcc_rs::state::Phase::Preprocess)
    });
    open.send(()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(preprocessing, "last state seen: {seen:?}");
    assert_eq!(seen.unwrap().host, b"localhost");
    assert_pumped(&out, "gcc");
    assert!(std::fs::read(dir.join("out.o")).unwrap() == want);
}

#[test]
fn entries_from_a_sibling_mirror_root_are_taken() {
    // The include server keeps a header's copy for its second absolute name
    // in `ROOT.1`, next to `ROOT`.
    let server = DebianDistccd::start("pump-sibling-d");
    let project = Project::new("pump-sibling", &["p.c"], "gcc", "c");
    let dir = project.path();
    let args = with(&["gcc", "-c", "p.c", "-o", "out.o"], &project.includes());
    let args = strs(&args);
    let want = local_object(dir, &args);
    let sibling = dir.join("m.1");
    let mut moved = Vec::new();
    for entry in project.tree.answer() {
        let name = entry.strip_prefix(&project.tree.root).unwrap();
        if name.to_str().unwrap().ends_with("/inc/g.h.lzo") {
            let at = sibling.join(name);
            std::fs::create_dir_all(at.parent().unwrap()).unwrap();
            std::fs::rename(entry, &at).unwrap();
            moved.push(at);
        } else {
            moved.push(entry.clone());
        }
    }
    assert!(moved.iter().any(|p| p.starts_with(&sibling)));
    let stub: Vec<_> = moved.iter().map(|p| p.to_str().unwrap()).collect();
    let stub = stub.join(" ");
    let out = run(
        dir,
        &pump_host(&server),
        &args,
        &[("INCLUDE_SERVER_STUB", &stub), ("DISTCC_FALLBACK", "0")],
    );
    assert_pumped(&out, "a sibling root");
    assert!(std::fs::read(dir.join("out.o")).unwrap() == want);
}
