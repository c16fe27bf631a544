//! Jobs the daemon must refuse: unlisted compilers, absolute compiler paths,
//! forbidden arguments and an unreadable `DISTCC_CMDLIST`.
//!
//! Each refusal is proven twice: no server-side compiler script ran (the
//! scripts leave a mark in `$MARKS`, which only the daemon's environment
//! has), and the daemon's log says why it refused. A control run with the
//! same daemon shows that an accepted job does leave the mark, so a missing
//! mark means something. The real client, with its default fallback, must
//! still finish the build locally.

use crate::common;

use common::daemon::{distcc, need, Daemon, DaemonOptions};
use common::text;
use common::TestDir;
use distcc_rs::proto::encode_request;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// A server-side compiler script: marks `$MARKS/<its own name>`, then runs
/// the real compiler.
fn marking(real: &str) -> String {
    format!("if [ -n \"$MARKS\" ]; then touch \"$MARKS/${{0##*/}}\"; fi\nexec {real} \"$@\"")
}

/// The client's `markcc`: gcc, standing in for a compiler that has the
/// plugins the tests name (this gcc has none to load), so it drops plugin
/// options. It never leaves a mark.
const CLIENT_MARKCC: &str = "n=$#\nwhile [ \"$n\" -gt 0 ]; do\n  a=$1; shift; n=$((n - 1))\n  \
     case $a in -fplugin*|-fpass-plugin*) ;; *) set -- \"$@\" \"$a\" ;; esac\ndone\n\
     exec /usr/bin/gcc \"$@\"";

fn options(extra_names: &[&str], scripts: &[(&str, &str)]) -> DaemonOptions {
    let mut opts = DaemonOptions::default();
    opts.masquerade
        .extend(extra_names.iter().map(|s| s.to_string()));
    opts.scripts = scripts
        .iter()
        .map(|(name, real)| (name.to_string(), marking(real)))
        .collect();
    opts
}

/// The client's side of one test: a directory of cases, each with its own
/// DISTCC_DIR (a refused host is backed off for the rest of that directory),
/// and a `bin` with the client's `markcc` put first on PATH.
struct Client {
    dir: TestDir,
    path: String,
    cases: usize,
}

impl Client {
    fn new(name: &str) -> Client {
        need("gcc", "gcc");
        let dir = TestDir::new(name);
        dir.script("bin/markcc", CLIENT_MARKCC);
        let path = format!(
            "{}:{}",
            dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Client {
            dir,
            path,
            cases: 0,
        }
    }

    /// A fresh case directory holding `x.c` and the files the cases name.
    fn case(&mut self) -> PathBuf {
        self.cases += 1;
        let rel = format!("case{}", self.cases);
        self.dir.write(
            &format!("{rel}/x.c"),
            "#define UNUSED 1\nint x(int a) { return a * 3; }\n",
        );
        self.dir.write(&format!("{rel}/inc.h"), "int from_inc;\n");
        self.dir.write(&format!("{rel}/opts"), "-O1\n");
        self.dir.write(&format!("{rel}/asopts"), "--noexecstack\n");
        self.dir.write(&format!("{rel}/my.specs"), "");
        std::fs::create_dir_all(self.dir.join(&format!("{rel}/dd"))).unwrap();
        self.dir.join(&rel)
    }

    /// Runs `distcc <args>` in `cwd` with the client's PATH and no `$MARKS`.
    fn run(&self, daemon: &Daemon, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all = vec![("PATH", self.path.as_str()), ("MARKS", "")];
        all.extend_from_slice(env);
        distcc(cwd, &daemon.host(false), args, &all)
    }
}

fn clear_marks(daemon: &Daemon) {
    for mark in daemon.marks() {
        std::fs::remove_file(daemon.marks.join(mark)).unwrap();
    }
}

/// Runs `args` (writing `x.o`) through the daemon with fallbacks off and
/// checks that the daemon compiled it and the server-side script ran.
fn assert_accepted(daemon: &Daemon, client: &mut Client, args: &[&str], mark: &str) {
    let cwd = client.case();
    let before = daemon.log().matches("COMPILE_OK").count();
    let out = client.run(daemon, &cwd, args, &[("DISTCC_FALLBACK", "0")]);
    assert!(
        out.status.success(),
        "control {args:?} failed: {}\ndaemon log:\n{}",
        text(&out.stderr),
        daemon.log()
    );
    assert!(cwd.join("x.o").exists());
    assert_eq!(
        daemon.log().matches("COMPILE_OK").count(),
        before + 1,
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.marks(), vec![mark.to_string()], "control {args:?}");
    clear_marks(daemon);
}

/// Runs `args` (writing `x.o`) with the client's default fallback and
/// checks that the daemon refused it, saying why (the refusal line holds
/// every string in `why`), that nothing ran on the server, and that the
/// client built the object locally.
fn assert_refused(daemon: &Daemon, client: &mut Client, args: &[&str], why: &[&str]) {
    let cwd = client.case();
    let logged = daemon.log().len();
    let out = client.run(daemon, &cwd, args, &[]);
    let stderr = text(&out.stderr);
    assert!(daemon.marks().is_empty(), "{args:?} ran on the server");
    let log = daemon.log();
    let new = &log[logged..];
    assert!(
        new.lines()
            .any(|l| l.contains("refusing job") && why.iter().all(|w| l.contains(w))),
        "{args:?}: no 'refusing job' line with {why:?}:\n{new}"
    );
    assert!(!new.contains("COMPILE_"), "{args:?}:\n{new}");
    assert!(
        out.status.success(),
        "{args:?}: the client did not finish locally: {stderr}"
    );
    let object = std::fs::read(cwd.join("x.o"))
        .unwrap_or_else(|e| panic!("{args:?}: no object after the fallback: {e}\n{stderr}"));
    assert!(object.starts_with(b"\x7fELF"), "{args:?}");
    assert!(
        stderr.contains("failed to distribute") && stderr.contains("running locally instead"),
        "{args:?}: the client did not fall back: {stderr}"
    );
}

#[test]
fn a_compiler_outside_the_whitelist_is_refused() {
    let mut client = Client::new("refuse-unlisted-client");
    let listed = Daemon::start(
        "refuse-unlisted-control",
        options(&["markcc"], &[("markcc", "/usr/bin/gcc")]),
    );
    assert_accepted(
        &listed,
        &mut client,
        &["markcc", "-c", "x.c", "-o", "x.o"],
        "markcc",
    );
    let daemon = Daemon::start(
        "refuse-unlisted",
        options(&[], &[("markcc", "/usr/bin/gcc")]),
    );
    assert_refused(
        &daemon,
        &mut client,
        &["markcc", "-c", "x.c", "-o", "x.o"],
        &["compiler 'markcc' is not in the masquerade whitelist"],
    );
}

#[test]
fn an_absolute_compiler_path_outside_usr_bin_is_refused() {
    let mut client = Client::new("refuse-abspath-client");
    let daemon = Daemon::start(
        "refuse-abspath",
        options(&["markcc"], &[("markcc", "/usr/bin/gcc")]),
    );
    assert_accepted(
        &daemon,
        &mut client,
        &["markcc", "-c", "x.c", "-o", "x.o"],
        "markcc",
    );
    // The server's own marking script, by its full path: the client sends
    // the path as given, and if the daemon ran it, it would leave a mark.
    let script = daemon.dir.join("server-bin/markcc");
    let script = script.to_str().unwrap();
    assert_refused(
        &daemon,
        &mut client,
        &[script, "-c", "x.c", "-o", "x.o"],
        &[&format!(
            "compiler name <{script}> cannot be an absolute path"
        )],
    );
    // /usr/bin/ is stripped for the check, as distccd 3.4 does.
    let cwd = client.case();
    let out = client.run(
        &daemon,
        &cwd,
        &["/usr/bin/gcc", "-c", "x.c", "-o", "x.o"],
        &[("DISTCC_FALLBACK", "0")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        daemon
            .log()
            .lines()
            .any(|l| l.contains("COMPILE_OK") && l.ends_with(" /usr/bin/gcc x.c")),
        "{}",
        daemon.log()
    );
}

/// `<compiler> -c x.c -o x.o <extra...>`.
fn command<'a>(compiler: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![compiler, "-c", "x.c", "-o", "x.o"];
    v.extend_from_slice(extra);
    v
}

#[test]
fn forbidden_arguments_sent_by_the_client_are_refused() {
    need("clang", "clang");
    let mut client = Client::new("refuse-args-client");
    let daemon = Daemon::start(
        "refuse-args",
        options(
            &["markcc", "clang"],
            &[("markcc", "/usr/bin/gcc"), ("clang", "/usr/bin/clang")],
        ),
    );
    assert_accepted(&daemon, &mut client, &command("markcc", &[]), "markcc");
    assert_accepted(&daemon, &mut client, &command("clang", &[]), "clang");
    // (compiler, arguments added to the compile, what the refusal names).
    // Each argument is one a 3.4 client passes on to the server (it strips
    // others, which tests below send by hand). The -f..=/path rule is there
    // too.
    let opt_info = format!(
        "-fopt-info-all={}",
        client.dir.join("opt-info.txt").display()
    );
    let opt_info = opt_info.as_str();
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "markcc",
            &["-fplugin=/nonexistent/evil.so"],
            &["'-fplugin=/nonexistent/evil.so' loads a compiler plugin"],
        ),
        (
            "markcc",
            &["-fplugin-arg-evil-key=1"],
            &["'-fplugin-arg-evil-key=1' loads a compiler plugin"],
        ),
        (
            "markcc",
            &["-fpass-plugin=/nonexistent/p.so"],
            &["'-fpass-plugin=/nonexistent/p.so' loads a compiler plugin"],
        ),
        (
            "markcc",
            &["--specs=my.specs"],
            &["'--specs=my.specs' reads a specs file"],
        ),
        ("markcc", &["-B", "dd"], &["'-B' runs compiler programs"]),
        ("markcc", &["-Bdd"], &["'-Bdd' runs compiler programs"]),
        (
            "markcc",
            &["--prefix=dd"],
            &["'--prefix=dd' runs compiler programs"],
        ),
        (
            "markcc",
            &["-wrapper", "/usr/bin/env"],
            &["'-wrapper' runs a wrapper program"],
        ),
        (
            "markcc",
            &["-includeinc.h"],
            &["'-includeinc.h' reads a file"],
        ),
        (
            "markcc",
            &["--include", "inc.h"],
            &["'--include' reads a file"],
        ),
        (
            "markcc",
            &["--include=inc.h"],
            &["'--include=inc.h' reads a file"],
        ),
        (
            "markcc",
            &["-imacrosinc.h"],
            &["'-imacrosinc.h' reads a file"],
        ),
        (
            "markcc",
            &["--imacros", "inc.h"],
            &["'--imacros' reads a file"],
        ),
        (
            "markcc",
            &["--imacros=inc.h"],
            &["'--imacros=inc.h' reads a file"],
        ),
        (
            "markcc",
            &["-fprofile-update=single"],
            &["'-fprofile-update=single' reads or writes profile files"],
        ),
        (
            "clang",
            &["-Xclang", "-disable-llvm-verifier"],
            &["'-Xclang' passes options straight to the compiler"],
        ),
        (
            "clang",
            &["-mllvm", "-inline-threshold=100"],
            &["'-mllvm' passes options straight to LLVM"],
        ),
        (
            "markcc",
            &["-Xpreprocessor", "-Wunused-macros"],
            &["'-Xpreprocessor' passes options to the preprocessor"],
        ),
        (
            "markcc",
            &["-aux-info", "aux.txt"],
            &["'-aux-info' writes a file"],
        ),
        (
            "markcc",
            &["-dumpdir", "dd/"],
            &["'-dumpdir' chooses where"],
        ),
        (
            "markcc",
            &["-dumpbase", "foo"],
            &["'-dumpbase' chooses where"],
        ),
        (
            "markcc",
            &["-Wa,-o,other.o"],
            &["assembler option in '-Wa,-o,other.o' names an output file"],
        ),
        (
            "markcc",
            &["-Wa,@asopts"],
            &["assembler option in '-Wa,@asopts' reads a response file"],
        ),
        (
            "markcc",
            &["-Wa,-Idd"],
            &["assembler option in '-Wa,-Idd' reads files from a directory"],
        ),
        (
            "markcc",
            &["-Xassembler", "-adhln=listing.txt"],
            &["assembler option in '-adhln=listing.txt' writes an assembler listing"],
        ),
        (
            "markcc",
            &["-Xassembler", "--MD", "-Xassembler", "as.d"],
            &["assembler option in '--MD' writes a dependency file"],
        ),
        (
            "markcc",
            &[opt_info],
            &[opt_info, "names a file on the server"],
        ),
    ];
    for (compiler, extra, why) in cases {
        assert_refused(&daemon, &mut client, &command(compiler, extra), why);
    }
    assert!(daemon.leftovers().is_empty(), "{:?}", daemon.leftovers());
}

/// Sends a hand-built request (compiler `markcc`) and returns the response.
fn raw(daemon: &Daemon, version: u32, extra: &[&str]) -> Vec<u8> {
    let mut argv: Vec<&[u8]> = vec![b"markcc", b"-c", b"x.c", b"-o", b"x.o"];
    argv.extend(extra.iter().map(|a| a.as_bytes()));
    daemon.exchange(&encode_request(
        version,
        &argv,
        b"int x(void) { return 3; }\n",
    ))
}

#[test]
fn forbidden_arguments_the_client_strips_are_refused_in_raw_requests() {
    need("gcc", "gcc");
    let daemon = Daemon::start(
        "refuse-raw",
        options(&["markcc"], &[("markcc", "/usr/bin/gcc")]),
    );
    for version in [1, 2] {
        let reply = raw(&daemon, version, &[]);
        assert!(
            reply.starts_with(format!("DONE{version:08x}STAT00000000").as_bytes()),
            "control v{version}: {:?}\n{}",
            text(&reply[..reply.len().min(64)]),
            daemon.log()
        );
        assert_eq!(daemon.marks(), vec!["markcc".to_string()]);
        clear_marks(&daemon);
    }
    // Arguments a 3.4 client strips (spec 5.5) or never sends because its
    // own scan keeps the job local (spec 5.2), and what the refusal names.
    // The Debian client also expands `@file` itself before sending, so a
    // response file only reaches the daemon in a hand-built request.
    let cases: &[(&[&str], &str)] = &[
        (&["-include", "inc.h"], "'-include' reads a file"),
        (&["-imacros", "inc.h"], "'-imacros' reads a file"),
        (&["-MD", "-MF", "x.d"], "'-MF' writes a dependency file"),
        (&["-MD", "-MFx.d"], "'-MFx.d' writes a dependency file"),
        (
            &["-Wp,-MD,x.d"],
            "'-Wp,-MD,x.d' passes options to the preprocessor",
        ),
        (&["-specs=evil.specs"], "-specs="),
        (&["@opts"], "'@opts' reads a response file"),
        (&["-fprofile-generate"], "profiling must run locally"),
        (&["-fprofile-use=/tmp/p"], "profiling must run locally"),
        (&["-fprofile-arcs"], "profiling must run locally"),
        (&["-fauto-profile=/tmp/p"], "profiling must run locally"),
        (&["--coverage"], "profiling must run locally"),
        (&["-ftest-coverage"], "profiling must run locally"),
        (&["-Wa,-alh=x.lst"], "assembler listing"),
        (&["-Wa,--MD,x.d"], "assembler listing"),
    ];
    for version in [1, 2] {
        for (extra, why) in cases {
            let logged = daemon.log().len();
            let reply = raw(&daemon, version, extra);
            let reason = common::deny_reason(&reply);
            assert!(
                reason.as_deref().is_some_and(|r| r.contains(why)),
                "v{version} {extra:?}: no DENY naming {why:?}: {:?}",
                text(&reply[..reply.len().min(64)])
            );
            assert!(daemon.marks().is_empty(), "v{version} {extra:?} ran");
            let log = daemon.log();
            let new = &log[logged..];
            assert!(
                new.lines()
                    .any(|l| l.contains("refusing job") && l.contains(why)),
                "v{version} {extra:?}: no 'refusing job' line with {why:?}:\n{new}"
            );
        }
    }
    assert!(daemon.leftovers().is_empty(), "{:?}", daemon.leftovers());
}

#[test]
fn an_unreadable_cmdlist_refuses_every_job() {
    let mut client = Client::new("refuse-cmdlist-client");
    // Control: a readable list naming a marking script is obeyed. The list
    // is read at start-up, so the script lives in the client's directory.
    let script = client.dir.script("srv/markcc", &marking("/usr/bin/gcc"));
    let list = client
        .dir
        .write("commands.allow", format!("{}\n", script.display()));
    let mut opts = options(&[], &[]);
    opts.env
        .push(("DISTCC_CMDLIST".into(), list.display().to_string()));
    let listed = Daemon::start("refuse-cmdlist-control", opts);
    assert_accepted(
        &listed,
        &mut client,
        &["markcc", "-c", "x.c", "-o", "x.o"],
        "markcc",
    );
    let mut opts = options(
        &["markcc"],
        &[
            ("markcc", "/usr/bin/gcc"),
            ("x86_64-linux-gnu-gcc", "/usr/bin/x86_64-linux-gnu-gcc"),
        ],
    );
    let missing = client.dir.join("no-such-commands.allow");
    opts.env
        .push(("DISTCC_CMDLIST".into(), missing.display().to_string()));
    let daemon = Daemon::start("refuse-cmdlist", opts);
    assert!(
        daemon.log().contains("every job will be refused"),
        "{}",
        daemon.log()
    );
    let why = format!("cannot read DISTCC_CMDLIST {}", missing.display());
    for compiler in ["markcc", "gcc"] {
        assert_refused(
            &daemon,
            &mut client,
            &[compiler, "-c", "x.c", "-o", "x.o"],
            &[&why],
        );
    }
    let reason = common::deny_reason(&raw(&daemon, 1, &[]));
    assert!(
        reason.as_deref().is_some_and(|r| r.contains(&why)),
        "{reason:?}"
    );
    assert!(daemon.marks().is_empty());
}

#[test]
fn triple_prefixed_names_are_whitelisted_one_by_one() {
    need("g++", "g++");
    let mut client = Client::new("refuse-triple-client");
    let scripts = [
        ("x86_64-linux-gnu-gcc", "/usr/bin/x86_64-linux-gnu-gcc"),
        ("x86_64-linux-gnu-g++", "/usr/bin/x86_64-linux-gnu-g++"),
    ];
    // Only the gcc triple is listed: the client turns `gcc` into it.
    let mut opts = options(&[], &scripts);
    opts.masquerade = vec!["x86_64-linux-gnu-gcc".into()];
    let triple = Daemon::start("refuse-triple", opts);
    assert_accepted(
        &triple,
        &mut client,
        &["gcc", "-c", "x.c", "-o", "x.o"],
        "x86_64-linux-gnu-gcc",
    );
    assert!(
        triple
            .log()
            .lines()
            .any(|l| l.contains("COMPILE_OK") && l.ends_with(" x86_64-linux-gnu-gcc x.c")),
        "{}",
        triple.log()
    );
    // The g++ triple is not listed.
    assert_refused(
        &triple,
        &mut client,
        &["g++", "-c", "x.c", "-o", "x.o"],
        &["compiler 'x86_64-linux-gnu-g++' is not in the masquerade whitelist"],
    );
    // Bare names listed, triples not: what the client sends is refused.
    let mut opts = options(&[], &scripts);
    opts.masquerade = vec!["gcc".into(), "g++".into()];
    let bare = Daemon::start("refuse-bare", opts);
    assert_refused(
        &bare,
        &mut client,
        &["gcc", "-c", "x.c", "-o", "x.o"],
        &["compiler 'x86_64-linux-gnu-gcc' is not in the masquerade whitelist"],
    );
}

/// Regression: `-x c` made the server preprocess the "preprocessed" source
/// again, so `#include "/etc/passwd"` sent the server's file back in SERR.
#[test]
fn a_language_option_never_reruns_the_preprocessor_on_the_server() {
    let daemon = Daemon::start("refuse-xc", DaemonOptions::default());
    let secret = "root:x:0:0";
    assert!(std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains(secret));
    let source = b"#include \"/etc/passwd\"\nint x;\n";
    for lang in [&["-x", "c"][..], &["-x", "c++"], &["-x", "objective-c"]] {
        let mut argv: Vec<&[u8]> = vec![b"gcc"];
        argv.extend(lang.iter().map(|a| a.as_bytes()));
        argv.extend([&b"-c"[..], b"x.c", b"-o", b"x.o"]);
        let reply = daemon.exchange(&encode_request(1, &argv, source));
        assert!(
            reply.starts_with(b"DONE00000001STAT"),
            "no response for {lang:?}: {}",
            text(&reply)
        );
        assert!(
            !text(&reply).contains(secret),
            "server file leaked with {lang:?}: {}",
            text(&reply)
        );
    }
    for refused in [
        &["-x", "c-header"][..],
        &["-xassembler-with-cpp"],
        &["-fdirectives-only"],
    ] {
        let mut argv: Vec<&[u8]> = vec![b"gcc"];
        argv.extend(refused.iter().map(|a| a.as_bytes()));
        argv.extend([&b"-c"[..], b"x.c", b"-o", b"x.o"]);
        let reply = daemon.exchange(&encode_request(1, &argv, source));
        assert!(
            common::deny_reason(&reply).is_some(),
            "{refused:?} was served: {}",
            text(&reply)
        );
    }
    assert!(daemon.log().contains("refusing job"), "{}", daemon.log());
}

/// A request for `compiler -c x.c -o x.o` with a source of `source_len`
/// bytes (8 MiB is much more than the socket buffers hold).
fn big_request(compiler: &str, version: u32, source_len: usize) -> Vec<u8> {
    let argv: [&[u8]; 5] = [compiler.as_bytes(), b"-c", b"x.c", b"-o", b"x.o"];
    let mut source = Vec::with_capacity(source_len + 64);
    while source.len() < source_len {
        source.extend_from_slice(format!("int v{};\n", source.len()).as_bytes());
    }
    encode_request(version, &argv, &source)
}

/// Bug 6: a refused job must not look like a dead host. The daemon answers
/// `DENY` with its reason, and then reads (and throws away) the rest of the
/// request instead of closing under the client: a client that writes its
/// whole request before it reads, as 3.4's and ours do, would otherwise
/// have its write reset and never see the reason.
#[test]
fn a_refused_job_gets_deny_and_its_reason_even_while_the_client_writes() {
    let mut opts = options(&["markcc"], &[("markcc", "/usr/bin/gcc")]);
    opts.args = vec!["--jobs".into(), "1".into()];
    let daemon = Daemon::start("refuse-deny-raw", opts);
    let why = "compiler 'othercc' is not in the masquerade whitelist";
    for version in [1, 2] {
        let request = big_request("othercc", version, 8 << 20);
        let mut s = daemon.connect();
        let writer = {
            let mut s = s.try_clone().unwrap();
            std::thread::spawn(move || s.write_all(&request))
        };
        let mut reply = Vec::new();
        let read = s.read_to_end(&mut reply);
        let written = writer.join().unwrap();
        assert!(
            written.is_ok(),
            "v{version}: the daemon reset a client still writing: {written:?}\n{}",
            daemon.log()
        );
        assert!(read.is_ok(), "v{version}: {read:?}");
        let reason = common::deny_reason(&reply).unwrap_or_default();
        assert!(
            reason.starts_with(why),
            "v{version}: {:?}",
            text(&reply[..reply.len().min(80)])
        );
    }
    daemon.wait_for_log("refusing job from 127.0.0.1:", Duration::from_secs(5));
    assert!(daemon.log().contains(why));
    assert!(daemon.leftovers().is_empty(), "{:?}", daemon.leftovers());
    // A refused client that is still being drained holds no compile slot:
    // with --jobs 1, a job compiles meanwhile, long before the drain ends.
    let mut draining = daemon.connect();
    let request = big_request("othercc", 1, 8 << 20);
    draining.write_all(&request[..request.len() / 2]).unwrap();
    let mut header = [0u8; 12];
    draining.read_exact(&mut header).unwrap();
    assert_eq!(&header[..4], b"DENY");
    let start = Instant::now();
    let reply = daemon.exchange(&big_request("markcc", 2, 1000));
    assert!(
        reply.starts_with(b"DONE00000002STAT00000000"),
        "{}",
        text(&reply[..reply.len().min(80)])
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(daemon.marks(), vec!["markcc".to_string()]);
    drop(draining);
}

/// Runs `cmd` and waits at most `limit` for it; panics if it hangs.
fn output_within(mut cmd: std::process::Command, limit: Duration) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Bug 6 with the real 3.4 client: `DENY` reads to it as a protocol
/// derailment, which it handles as a closed connection: it compiles
/// locally, also with DISTCC_SKIP_LOCAL_RETRY (which would fail the build
/// for a `STAT` other than 0), and never hangs, also on a source larger
/// than the socket buffers.
#[test]
fn the_3_4_client_builds_a_denied_job_locally_without_hanging() {
    let mut client = Client::new("refuse-deny-real-client");
    let daemon = Daemon::start("refuse-deny-real", options(&[], &[]));
    let distcc = need("distcc", "distcc");
    let big: String = (0..200_000).map(|i| format!("int v{i};\n")).collect();
    for (env, source) in [
        (&[][..], None),
        (&[("DISTCC_SKIP_LOCAL_RETRY", "1")][..], None),
        (&[][..], Some(&big)),
    ] {
        let cwd = client.case();
        if let Some(source) = source {
            std::fs::write(cwd.join("x.c"), source).unwrap();
        }
        let logged = daemon.log().len();
        let mut cmd = common::daemon::client_command(&distcc, &cwd, &daemon.host(false), env);
        cmd.args(["markcc", "-c", "x.c", "-o", "x.o"])
            .env("PATH", &client.path)
            .env("MARKS", "");
        let out = output_within(cmd, Duration::from_secs(60));
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{env:?}: {stderr}");
        let object = std::fs::read(cwd.join("x.o")).unwrap();
        assert!(object.starts_with(b"\x7fELF"), "{env:?}");
        assert!(
            stderr.contains("running locally instead"),
            "{env:?}: {stderr}"
        );
        let logged_refusal = || {
            daemon.log()[logged..].lines().any(|l| {
                l.contains("refusing job from 127.0.0.1:")
                    && l.contains("not in the masquerade whitelist")
            })
        };
        let start = Instant::now();
        while !logged_refusal() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(logged_refusal(), "{env:?}: {}", daemon.log());
    }
    assert!(daemon.marks().is_empty());
}
