//! Our daemon serving protocol 3 (pump mode): Debian's distcc client with a hand-built include-server answer gets objects and `.d` files identical to a local compile, and hostile v3 requests are refused without touching anything outside the job's directory.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::daemon::{distcc, need, Daemon, DaemonOptions, TestDir};
use crate::common::pump::{default_include_dirs, MirrorTree};
use crate::common::{deny_reason, local, text};
use distcc_rs::proto::{encode_pump_request, PumpEntry};

/// The pump-mode caps the test daemon runs with (`DISTCC_RS_MAX_INPUT`),
/// so that an LZO bomb reaches them quickly.
const CAP: usize = 1024 * 1024;

/// A server-side wrapper for `COMPILER` that records whether it was given
/// a source or a preprocessed file, then runs the real compiler.
fn wrapper(compiler: &str) -> (String, String) {
    let body = format!(
        "for a in \"$@\"; do case \"$a\" in \
           *.i|*.ii) touch \"$MARKS/preprocessed\";; \
           *.c|*.cc) touch \"$MARKS/source-$(basename \"$a\")\";; esac; done\n\
         exec /usr/bin/{compiler} \"$@\""
    );
    (compiler.to_string(), body)
}

fn start_daemon(name: &str) -> Daemon {
    need("distcc", "distcc");
    need("gcc", "gcc");
    Daemon::start(
        name,
        DaemonOptions {
            scripts: vec![
                wrapper("x86_64-linux-gnu-gcc"),
                wrapper("x86_64-linux-gnu-g++"),
            ],
            args: vec!["--jobs".into(), "1".into()],
            env: vec![("DISTCC_RS_MAX_INPUT".into(), CAP.to_string())],
            ..DaemonOptions::default()
        },
    )
}

/// A client project and the include server's answer for its one source:
/// a header through a symlink, one through `sub/../`, which needs the
/// forcing file in `sub`, one through an absolute `-I` (sent as `.lzo.abs`
/// with `#line`), and the compiler's system directories as links.
struct Project {
    dir: TestDir,
    proj: PathBuf,
    absinc: PathBuf,
    source: &'static str,
    tree: MirrorTree,
}

impl Project {
    fn new(name: &str, cc: &str, lang: &str) -> Project {
        let dir = TestDir::new(name);
        let source = if lang == "c" { "t.c" } else { "t.cc" };
        let (proj, absinc) = (dir.join("proj"), dir.join("absinc"));
        let stdio = if lang == "c" { "stdio.h" } else { "cstdio" };
        dir.write(
            &format!("proj/{source}"),
            format!(
                "#include <{stdio}>\n#include \"inc/alias.h\"\n#include \"sub/../x.h\"\n\
                 #include \"abs.h\"\nint main(void) {{\n  printf(\"%s %s %d\\n\", __FILE__, ABS, REAL);\n\
                   return X;\n}}\n"
            ),
        );
        dir.write("proj/inc/real.h", "#define REAL 1\n");
        std::os::unix::fs::symlink("real.h", proj.join("inc/alias.h")).unwrap();
        dir.write("proj/x.h", "#define X 0\n");
        std::fs::create_dir(proj.join("sub")).unwrap();
        dir.write("absinc/abs.h", "#define ABS __FILE__\n");
        let mut tree = MirrorTree::new(&dir.path);
        let abs_h = absinc.join("abs.h");
        tree.file(&proj.join(source))
            .file(&proj.join("inc/real.h"))
            .file(&proj.join("x.h"))
            .file_abs(&abs_h, abs_h.to_str().unwrap())
            .link(&proj.join("inc/alias.h"), &proj.join("inc/real.h"));
        // A mirror tree on disk holds no link inside another (the daemon
        // takes nested ones too: unit-tested in daemon/pump.rs).
        for system in outermost(default_include_dirs(cc, lang)) {
            tree.system_dir(&system);
        }
        tree.forcing(&proj.join("sub"));
        Project {
            dir,
            proj,
            absinc,
            source,
            tree,
        }
    }

    /// The compile command, with the absolute `-I` and `extra`.
    fn args<'a>(&'a self, cc: &'a str, extra: &[&'a str]) -> Vec<String> {
        let mut args = vec![cc.to_string(), "-c".into(), self.source.into()];
        args.extend(["-o".into(), "t.o".into()]);
        args.push(format!("-I{}", self.absinc.display()));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

/// System directories with none inside another.
fn outermost(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    let keep = |d: &PathBuf| !dirs.iter().any(|o| o != d && d.starts_with(o));
    dirs.iter().filter(|d| keep(d)).cloned().collect()
}

/// Compiles through the daemon with Debian's client in pump mode, and
/// checks that the job went there (the compiler saw the source, not a
/// preprocessed file) and came back.
fn pump_compile(daemon: &Daemon, project: &Project, args: &[String]) -> Duration {
    let host = format!("127.0.0.1:{},cpp,lzo", daemon.port);
    let before = daemon.log().matches("COMPILE_OK exit:").count();
    let pumped = daemon
        .log()
        .matches("COMPILE_OK in pump mode (protocol 3): ")
        .count();
    let marks = daemon.marks.join(format!("source-{}", project.source));
    let _ = std::fs::remove_file(&marks);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = distcc(
        &project.proj,
        &host,
        &args,
        &[
            ("INCLUDE_SERVER_STUB", &project.tree.stub()),
            ("DISTCC_FALLBACK", "0"),
            ("DISTCC_VERBOSE", "1"),
        ],
    );
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{args:?} in pump mode failed: {}\ndaemon log:\n{}",
        text(&out.stderr),
        daemon.log()
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("INCLUDE_SERVER_STUB is set"), "{stderr}");
    assert_eq!(
        daemon.log().matches("COMPILE_OK exit:").count(),
        before + 1,
        "{stderr}\n{}",
        daemon.log()
    );
    assert_eq!(
        daemon
            .log()
            .matches("COMPILE_OK in pump mode (protocol 3): ")
            .count(),
        pumped + 1,
        "the daemon's log says it was a pump job"
    );
    assert!(marks.exists(), "the compiler was not given the source");
    assert!(!daemon.marks.join("preprocessed").exists());
    took
}

/// The outputs of a local compile, then of a pump compile, of `args`.
fn compare(daemon: &Daemon, project: &Project, args: &[String], outputs: &[&str]) {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let loc = local(&project.proj, &words);
    assert!(
        loc.status.success(),
        "local {args:?}: {}",
        text(&loc.stderr)
    );
    let expected: Vec<Vec<u8>> = outputs
        .iter()
        .map(|o| std::fs::read(project.proj.join(o)).unwrap())
        .collect();
    for o in outputs {
        std::fs::remove_file(project.proj.join(o)).unwrap();
    }
    pump_compile(daemon, project, args);
    for (o, want) in outputs.iter().zip(&expected) {
        let got = std::fs::read(project.proj.join(o)).unwrap();
        assert!(
            got == *want,
            "{o} of {args:?} differs from the local one{}",
            if o.ends_with(".d") {
                format!(":\nlocal:\n{}\npump:\n{}", text(want), text(&got))
            } else {
                String::new()
            }
        );
    }
}

#[test]
fn debian_client_in_pump_mode_gets_local_objects_and_dotd_files() {
    let daemon = start_daemon("pump-debian");
    for (cc, lang) in [("gcc", "c"), ("g++", "c++")] {
        let project = Project::new("pump-project", cc, lang);
        for extra in [
            &[][..],
            &["-g"],
            &["-g", "-O2", "-MD"],
            &["-MMD"],
            &["-g", "-MD", "-MF", "deps/t.dep"],
        ] {
            std::fs::create_dir_all(project.proj.join("deps")).unwrap();
            let args = project.args(cc, extra);
            let mut outputs = vec!["t.o"];
            if extra.contains(&"-MF") {
                outputs.push("deps/t.dep");
            } else if extra.iter().any(|e| e.starts_with("-M")) {
                outputs.push("t.d");
            }
            compare(&daemon, &project, &args, &outputs);
        }
        // An absolute source, which gets the root in front and `__FILE__` back.
        let mut args = project.args(cc, &["-g", "-MD"]);
        args[2] = project.proj.join(project.source).display().to_string();
        compare(&daemon, &project, &args, &["t.o", "t.d"]);
    }
    daemon.assert_no_leftovers();
    store_holds_each_body_once(&daemon);
}

/// Every FILE went through the daemon's store: after 12 jobs of 5 files,
/// it holds each distinct body once (the C and C++ sources, three headers,
/// the empty forcing file), read-only, and no job's link to it is left.
fn store_holds_each_body_once(daemon: &Daemon) {
    let stores: Vec<PathBuf> = std::fs::read_dir(daemon.dir.join("daemon-tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("distccd-headers.")
        })
        .collect();
    assert_eq!(stores.len(), 1, "the daemon's store: {stores:?}");
    let mut bodies = Vec::new();
    for entry in std::fs::read_dir(&stores[0]).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o444,
            "{}",
            path.display()
        );
        assert_eq!(
            std::os::unix::fs::MetadataExt::nlink(&meta),
            1,
            "{}",
            path.display()
        );
        bodies.push(std::fs::read(&path).unwrap());
    }
    bodies.sort();
    assert!(bodies.contains(&b"#define X 0\n".to_vec()), "{bodies:?}");
    assert!(bodies.contains(&Vec::new()), "the forcing file: {bodies:?}");
    assert!(
        bodies.len() <= 8,
        "{} bodies kept, not each once",
        bodies.len()
    );
}

/// Everything under `dir`: each path with its kind and contents, sorted.
fn listing(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                todo.push(path.clone());
                "dir".to_string()
            } else {
                format!("file {}", text(&std::fs::read(&path).unwrap()))
            };
            out.push((path, what));
        }
    }
    out.sort();
    out
}

/// `../` enough times to climb from any job root to `/`, then `path` without its `/`.
fn climb(path: &Path) -> Vec<u8> {
    let mut p = b"../".repeat(40);
    p.extend_from_slice(&path.as_os_str().as_bytes()[1..]);
    p
}

/// A v3 request for `gcc -c t.c` in `/home/u`, with `files`.
fn request(cwd: &[u8], files: &[PumpEntry]) -> Vec<u8> {
    let argv: [&[u8]; 5] = [b"gcc", b"-c", b"t.c", b"-o", b"t.o"];
    encode_pump_request(cwd, &argv, files)
}

/// Sends a hostile request and checks the daemon refused it in time with
/// `DENY` (carrying `why`) and left the canary, itself and its slot alone.
fn refused(daemon: &mut Daemon, canary: &Path, project: &Project, bytes: &[u8], why: &str) {
    let before = listing(canary);
    let started = Instant::now();
    let reply = daemon.exchange(bytes);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{why}: took {took:?}");
    let reason =
        deny_reason(&reply).unwrap_or_else(|| panic!("{why}: no DENY but {:?}", text(&reply)));
    assert!(reason.contains(why), "{reason}");
    assert!(daemon.log().contains(why), "no log line for {why}");
    assert_eq!(listing(canary), before, "{why}: the canary changed");
    assert!(daemon.alive());
    daemon.assert_no_leftovers();
    let took = pump_compile(daemon, project, &project.args("gcc", &[]));
    assert!(
        took < Duration::from_secs(20),
        "{why}: next compile took {took:?}"
    );
    daemon.assert_no_leftovers();
}

#[test]
fn escapes_and_oversized_pump_requests_are_refused() {
    let mut daemon = start_daemon("pump-hostile");
    let project = Project::new("pump-hostile-project", "gcc", "c");
    // Writable by the daemon, which may run as nobody: only the rules
    // keep it out.
    let canary = project.dir.shared_dir("canary");
    let victim = project.dir.write("canary/victim", "untouched\n");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o666)).unwrap();
    project.dir.shared_dir("canary/dir");
    project.dir.write("canary/dir/inner", "inner\n");
    let planted = canary.join("planted");
    let x = lzo(b"overwritten\n");
    let d = &mut daemon;

    // 1. A NAME with `..`, which 3.4 writes (and then deletes) outside its root.
    let name = [&b"/"[..], &climb(&planted)].concat();
    let files = [PumpEntry::File {
        name: &name,
        lzo: &x,
    }];
    refused(
        d,
        &canary,
        &project,
        &request(b"/home/u", &files),
        "'..' component",
    );

    // 2. A LINK to the canary (in the system-directory form, which is
    // accepted), then a FILE under it.
    let canary_name = canary.as_os_str().as_bytes();
    let target = climb(&canary);
    let through = [canary_name, b"/planted"].concat();
    let files = [
        PumpEntry::Link {
            name: canary_name,
            target: &target,
        },
        PumpEntry::File {
            name: &through,
            lzo: &x,
        },
    ];
    let why = "passes through the link";
    refused(d, &canary, &project, &request(b"/home/u", &files), why);

    // 3. A CDIR with `..`.
    let cdir = [&b"/"[..], &climb(&canary.join("cdir_escape"))].concat();
    let files = [PumpEntry::File {
        name: b"/home/u/t.c",
        lzo: &x,
    }];
    refused(d, &canary, &project, &request(&cdir, &files), "CDIR");

    // 4. A relative LINK target that is not a system directory's.
    let target = climb(&canary);
    let files = [PumpEntry::Link {
        name: b"/home/u/inc",
        target: &target,
    }];
    let why = "a relative target must be a system directory's";
    refused(d, &canary, &project, &request(b"/home/u", &files), why);

    // 5. A duplicate NAME.
    let files = [
        PumpEntry::File {
            name: b"/home/u/t.c",
            lzo: &x,
        },
        PumpEntry::File {
            name: b"/home/u/t.c",
            lzo: &x,
        },
    ];
    refused(
        d,
        &canary,
        &project,
        &request(b"/home/u", &files),
        "sent twice",
    );

    // 6. The caps: NFIL, a FILE claiming 4 GiB, an LZO bomb.
    let mut nfil = request(b"/home/u", &[]);
    nfil.truncate(nfil.len() - 8);
    nfil.extend_from_slice(b"ffffffff");
    refused(d, &canary, &project, &nfil, "NFIL of 4294967295 exceeds");
    let mut huge = request(
        b"/home/u",
        &[PumpEntry::File {
            name: b"/home/u/t.c",
            lzo: b"",
        }],
    );
    huge.truncate(huge.len() - 8);
    huge.extend_from_slice(b"ffffffff");
    huge.extend_from_slice(&[0; 64 * 1024]);
    refused(
        d,
        &canary,
        &project,
        &huge,
        "FILE length of 4294967295 exceeds",
    );
    let bomb = lzo(&vec![0; 2 * CAP]);
    assert!(bomb.len() < CAP / 8, "{}", bomb.len());
    let files = [PumpEntry::File {
        name: b"/home/u/t.c",
        lzo: &bomb,
    }];
    let why = "cannot decompress FILE";
    refused(d, &canary, &project, &request(b"/home/u", &files), why);
    assert_eq!(daemon.terminate().code(), Some(0));
}

fn lzo(body: &[u8]) -> Vec<u8> {
    distcc_rs::lzo::compress(body)
}

fn get_stats(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn a_pump_job_shows_in_the_stats_like_any_other() {
    need("distcc", "distcc");
    // The compiler waits (bounded) for the test's go, so the job is seen running.
    let hold = "touch \"$MARKS/started\"; i=0; \
                while [ ! -e \"$MARKS/go\" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
                exec /usr/bin/x86_64-linux-gnu-gcc \"$@\"";
    let daemon = Daemon::start(
        "pump-stats",
        DaemonOptions {
            scripts: vec![("x86_64-linux-gnu-gcc".into(), hold.into())],
            args: vec!["--stats".into()],
            stats_listener: true,
            ..DaemonOptions::default()
        },
    );
    let project = Project::new("pump-stats-project", "gcc", "c");
    let host = format!("127.0.0.1:{},cpp,lzo", daemon.port);
    let args = project.args("gcc", &[]);
    let stub = project.tree.stub();
    let mut client = crate::common::daemon::client_command(
        &need("distcc", "distcc"),
        &project.proj,
        &host,
        &[("INCLUDE_SERVER_STUB", &stub), ("DISTCC_FALLBACK", "0")],
    )
    .args(&args[..])
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let started = daemon.marks.join("started");
    assert!(crate::common::wait_until(Duration::from_secs(20), || {
        started.exists()
    }));
    let port = daemon.stats_port.unwrap();
    let running = get_stats(port);
    std::fs::write(daemon.marks.join("go"), "").unwrap();
    let status = crate::common::exited_within(&mut client, Duration::from_secs(60)).unwrap();
    assert!(status.success(), "{}", daemon.log());
    assert!(
        running.contains("dcc_job 127.0.0.1:") && running.contains(" x86_64-linux-gnu-gcc t.c "),
        "{running}"
    );
    let after = get_stats(port);
    assert!(after.contains("\ndcc_compile_ok 1\n"), "{after}");
    daemon.assert_no_leftovers();
}

#[test]
fn clang_in_pump_mode_gets_the_local_object_and_dotd_file() {
    need("distcc", "distcc");
    need("clang", "clang");
    let mut opts = DaemonOptions {
        scripts: vec![wrapper("clang")],
        ..DaemonOptions::default()
    };
    opts.masquerade.push("clang".into());
    let daemon = Daemon::start("pump-clang", opts);
    let project = Project::new("pump-clang-project", "clang", "c");
    let args = project.args("clang", &["-g", "-MD"]);
    compare(&daemon, &project, &args, &["t.o", "t.d"]);
    daemon.assert_no_leftovers();
}

#[test]
fn a_compiler_without_prefix_maps_gets_the_root_patched_out_of_its_debug_info() {
    need("distcc", "distcc");
    // Not gcc or clang by name: the daemon gives it no prefix map.
    let mut opts = DaemonOptions {
        scripts: vec![(
            "tinycc".into(),
            "touch \"$MARKS/source-t.c\"; exec /usr/bin/gcc \"$@\"".into(),
        )],
        ..DaemonOptions::default()
    };
    opts.masquerade.push("tinycc".into());
    let daemon = Daemon::start("pump-tinycc", opts);
    let project = Project::new("pump-tinycc-project", "gcc", "c");
    pump_compile(&daemon, &project, &project.args("tinycc", &["-g"]));
    let object = std::fs::read(project.proj.join("t.o")).unwrap();
    let tmp = daemon.dir.join("daemon-tmp");
    let tmp = tmp.as_os_str().as_bytes();
    assert!(
        !object.windows(tmp.len()).any(|w| w == tmp),
        "the root is left in t.o"
    );
    let cwd = [&b"//////"[..], project.proj.as_os_str().as_bytes()].concat();
    assert!(
        object.windows(cwd.len()).any(|w| w == cwd),
        "no compile directory in t.o"
    );
    daemon.assert_no_leftovers();
}

/// A wrapper that, once the test has named a stored file in
/// `$MARKS/store-file`, tries to write into the daemon's store: a new
/// file in its directory, and the stored file itself made writable; then
/// its tree's files, which are hard links to the store's, made writable,
/// and a new file in the tree.
const STORE_WRITER: &str = r#"if [ -r "$MARKS/store-file" ]; then
  f=$(cat "$MARKS/store-file")
  echo poison > "$(dirname "$f")/poison" && touch "$MARKS/store-dir-written"
  if chmod u+w "$f"; then
    echo poison >> "$f" && touch "$MARKS/store-file-written"
    chmod a-w "$f"
  fi
  for f in ./*.c ./*.h; do
    if chmod u+w "$f"; then
      echo poison >> "$f" && touch "$MARKS/tree-file-written"
      chmod a-w "$f"
    fi
  done
  echo poison > ./new && touch "$MARKS/tree-written"
  touch "$MARKS/store-tried"
fi
"#;

#[test]
fn a_sandboxed_pump_compiler_reads_its_tree_but_cannot_write_it_or_the_store() {
    let (name, body) = wrapper("x86_64-linux-gnu-gcc");
    let daemon = Daemon::start(
        "pump-sandbox",
        DaemonOptions {
            scripts: vec![(name, format!("{STORE_WRITER}{body}"))],
            args: vec!["--jobs".into(), "1".into()],
            ..DaemonOptions::default()
        },
    );
    assert!(
        daemon
            .log()
            .contains("compilers run in a sandbox: Landlock"),
        "{}",
        daemon.log()
    );
    let project = Project::new("pump-sandbox-project", "gcc", "c");
    let args = project.args("gcc", &["-g", "-MD"]);
    compare(&daemon, &project, &args, &["t.o", "t.d"]);
    let store = std::fs::read_dir(daemon.dir.join("daemon-tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("distccd-headers."))
        .expect("the daemon's store");
    let stored = std::fs::read_dir(&store)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(daemon.marks.join("store-file"), stored.to_str().unwrap()).unwrap();
    compare(&daemon, &project, &args, &["t.o", "t.d"]);
    let marks = daemon.marks();
    assert!(marks.contains(&"store-tried".to_string()), "{marks:?}");
    assert!(!marks.iter().any(|m| m.ends_with("-written")), "{marks:?}");
    daemon.assert_no_leftovers();
    store_holds_each_body_once(&daemon);
}
