//! The client's scan against the real compilers: the preprocessor command
//! it runs for a distributed job leaves the same `.d` files, byte for
//! byte, as the compiler run plainly.

use crate::common;

use common::daemon::{client, need, Daemon, DaemonOptions};
use common::{text, wait_until, TestDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Every `*.d` file under `dir` (dot files too), by relative path.
fn dep_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    common::files_with_extension(dir, "d")
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

/// A source tree in which to compile: `src/a.c` including `src/h.h`,
/// and empty `obj/` and `dep/` directories.
fn source_tree(dir: &Path) {
    for sub in ["src", "obj", "dep"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(
        dir.join("src/a.c"),
        "#include \"h.h\"\n#include <stddef.h>\nint x;\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/h.h"), "int y;\n").unwrap();
}

/// Runs `compiler ARGS` plainly and through distcc-rs to our daemon
/// (`DISTCC_FALLBACK=0`, and the daemon's log must show the job, so the
/// client really distributed it and ran its own preprocessor command),
/// each in its own tree, and compares the `.d` files they leave byte for
/// byte. Fails if the compiler is not installed.
fn dependency_files_match(compiler: &str) {
    need(compiler, compiler);
    let forms = [
        "-c src/a.c -o obj/a.o -MD",
        "-c src/a.c -o obj/a.o -MMD",
        "-c src/a.c -o obj/a.o -MD -MF dep/x.d",
        "-c src/a.c -o obj/a.o -MMD -MFdep/x.d",
        "-c src/a.c -o obj/a.o -MD -MT tgt",
        "-c src/a.c -o obj/a.o -MD -MQ q$$",
        "-c src/a.c -o obj/a.o -MD -MT t1 -MQ t2",
        "-c src/a.c -o obj/a.o -MD -MP",
        "-c src/a.c -oobj/a.o -MMD -MP -MF obj/a.dep.d",
        "-c src/a.c -o obj/a -MD",
        "-c src/a.c -o obj/a.o.tmp -MD",
        "-c src/a.c -MD",
        "-c src/a.c -MMD -MT tgt",
        "-S src/a.c -o obj/a.s -MD",
        "-c src/a.c -o obj/a.o -Wp,-MD,obj/.a.o.d",
        "-c src/a.c -o obj/a.o -Wp,-MMD,obj/.a.o.d",
        "-c src/a.c -o obj/a.o -Wp,-MMD,obj/.a.o.d -MP",
        "-c src/a.c -o obj/a.o -Wp,-MD,dep/x.d -DX=1 -Wp,-DY",
    ];
    let mut opts = DaemonOptions::default();
    if !opts.masquerade.iter().any(|m| m == compiler) {
        opts.masquerade.push(compiler.into());
    }
    let daemon = Daemon::start(&format!("deps-{compiler}"), opts);
    let jobs = || daemon.log().matches(" COMPILE_OK ").count();
    let top = TestDir::new(&format!("deps-{compiler}-work"));
    for (n, form) in forms.iter().enumerate() {
        let line = format!("{compiler} {form}");
        let args: Vec<&str> = line.split_whitespace().collect();
        let plain = top.join(&format!("{n}-plain"));
        let cpp = top.join(&format!("{n}-cpp"));
        source_tree(&plain);
        source_tree(&cpp);

        let status = Command::new(args[0])
            .args(&args[1..])
            .current_dir(&plain)
            .status()
            .unwrap_or_else(|e| panic!("{compiler} must be installed for this test: {e}"));
        assert!(status.success(), "{line}");

        let before = jobs();
        let out = client(
            &cpp,
            &daemon.host(n % 2 == 0),
            &args,
            &[("DISTCC_FALLBACK", "0")],
        );
        assert!(
            out.status.success(),
            "distcc-rs {line}: {}\ndaemon log:\n{}",
            text(&out.stderr),
            daemon.log()
        );
        assert!(
            wait_until(Duration::from_secs(5), || jobs() > before),
            "{line}: not distributed\n{}\ndaemon log:\n{}",
            text(&out.stderr),
            daemon.log()
        );

        let want = dep_files(&plain);
        assert!(!want.is_empty(), "{line}: no .d file");
        let got = dep_files(&cpp);
        let show = |files: &[(PathBuf, Vec<u8>)]| {
            files
                .iter()
                .map(|(p, b)| format!("{}: {}", p.display(), String::from_utf8_lossy(b)))
                .collect::<String>()
        };
        assert_eq!(
            show(&got),
            show(&want),
            "{line}\n  client stderr: {}",
            text(&out.stderr)
        );
        assert_eq!(got, want, "{line}");
    }
}

#[test]
fn dependency_files_match_plain_gcc() {
    dependency_files_match("gcc");
}

#[test]
fn dependency_files_match_plain_clang() {
    dependency_files_match("clang");
}
