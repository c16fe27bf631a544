//! The distcc-rs client against Debian's distccd 3.4 and against our own daemon.
//!
//! Remote runs set `DISTCC_FALLBACK=0` and are looked up in the server's log
//! (`COMPILE_OK … <program> <input>`), so a job that was silently compiled
//! locally fails the test. Objects and `.d` files are compared byte for byte
//! with a local run of the same command.

use crate::common;

use common::compare::{self, summaries_at_least, Server};
use common::daemon::{bin, client, need, Daemon, DaemonOptions, DebianDistccd};
use common::TestDir;
use common::{local, text, write_c_cxx_objc_sources};
use std::path::Path;
use std::process::Command;

/// What our client sends for `gcc`, `g++` (distcc 3.4's rewrite, section 5.8).
const GCC: &str = "x86_64-linux-gnu-gcc";
const GXX: &str = "x86_64-linux-gnu-g++";

/// Our daemon and Debian's distccd, each in a directory of its own.
fn both_servers(name: &str) -> Vec<Box<dyn Server>> {
    need("gcc", "gcc");
    vec![
        Box::new(Daemon::start(name, DaemonOptions::default())),
        Box::new(DebianDistccd::start(&format!("{name}-distccd"))),
    ]
}

/// [`compare::same_as_local`] with our client.
fn same_as_local(
    server: &dyn Server,
    work: &TestDir,
    args: &[&str],
    outputs: &[&str],
    program: &str,
    input: &str,
) {
    compare::same_as_local(client, server, work, args, outputs, program, input);
}

#[test]
fn c_cxx_and_objc_objects_are_identical_to_local() {
    need("g++", "g++");
    let cc1obj = Command::new("gcc")
        .arg("-print-prog-name=cc1obj")
        .output()
        .unwrap();
    assert!(
        Path::new(text(&cc1obj.stdout).trim()).is_file(),
        "gcc cannot compile Objective-C: apt-get install gobjc (see .ci/run)"
    );
    for server in both_servers("client-langs") {
        let work = TestDir::new("client-langs-work");
        write_c_cxx_objc_sources(&work);
        same_as_local(
            &*server,
            &work,
            &["gcc", "-O2", "-c", "hello.c", "-o", "hello.o"],
            &["hello.o"],
            GCC,
            "hello.c",
        );
        same_as_local(
            &*server,
            &work,
            &["g++", "-std=c++17", "-c", "vec.cc"],
            &["vec.o"],
            GXX,
            "vec.cc",
        );
        same_as_local(
            &*server,
            &work,
            &["gcc", "-c", "obj.m", "-o", "obj.o"],
            &["obj.o"],
            GCC,
            "obj.m",
        );
    }
}

#[test]
fn dependency_files_are_identical_to_local() {
    for server in both_servers("client-deps") {
        let work = TestDir::new("client-deps-work");
        work.write("src/a.h", "#define A 1\n");
        work.write("src/a.c", "#include \"a.h\"\nint a = A;\n");
        std::fs::create_dir_all(work.join("obj")).unwrap();
        let cases: &[(&[&str], &[&str])] = &[
            (&["-MD"], &["obj/a.o", "obj/a.d"]),
            (&["-MMD"], &["obj/a.o", "obj/a.d"]),
            (&["-MD", "-MF", "obj/dep.d"], &["obj/a.o", "obj/dep.d"]),
            (
                &["-MMD", "-MT", "target", "-MF", "obj/t.d"],
                &["obj/a.o", "obj/t.d"],
            ),
            (&["-MD", "-MQ", "q$x", "-MP"], &["obj/a.o", "obj/a.d"]),
            (&["-Wp,-MD,obj/.a.o.d"], &["obj/a.o", "obj/.a.o.d"]),
            (&["-Wp,-MMD,obj/.a.o.d"], &["obj/a.o", "obj/.a.o.d"]),
        ];
        for (flags, outputs) in cases {
            let mut args = vec!["gcc", "-c", "src/a.c", "-o", "obj/a.o"];
            args.extend_from_slice(flags);
            same_as_local(&*server, &work, &args, outputs, GCC, "src/a.c");
        }
    }
}

#[test]
fn warnings_and_errors_are_as_from_local_gcc() {
    for server in both_servers("client-diag") {
        let work = TestDir::new("client-diag-work");
        work.write(
            "warn.c",
            "int f(int x) {\n  int unused;\n  if (x) return 1;\n}\n",
        );
        same_as_local(
            &*server,
            &work,
            &["gcc", "-Wall", "-c", "warn.c"],
            &["warn.o"],
            GCC,
            "warn.c",
        );
        work.write(
            "bad.c",
            "int f(void) { return nosuch; }\nint g(void) { return 1 }\n",
        );
        let loc = local(&work.path, &["gcc", "-c", "bad.c"]);
        for lzo in [false, true] {
            let out = client(&work.path, &server.host(lzo), &["gcc", "-c", "bad.c"], &[]);
            assert_eq!(
                out.status.code(),
                loc.status.code(),
                "{}",
                text(&out.stderr)
            );
            assert_eq!(
                text(&out.stderr),
                text(&loc.stderr),
                "stderr differs from local gcc's (lzo={lzo})"
            );
            assert!(!work.join("bad.o").exists());
        }
        assert!(
            summaries_at_least(&*server, "COMPILE_ERROR", GCC, "bad.c", 2) >= 2,
            "{}",
            server.log()
        );
    }
}

#[test]
fn output_into_a_missing_directory_is_created() {
    for server in both_servers("client-newdir") {
        let work = TestDir::new("client-newdir-work");
        work.write("x.c", "int x = 42;\n");
        let loc = local(&work.path, &["gcc", "-c", "x.c", "-o", "x.o"]);
        assert!(loc.status.success());
        let want = std::fs::read(work.join("x.o")).unwrap();
        let out = client(
            &work.path,
            &server.host(true),
            &["gcc", "-c", "x.c", "-o", "new/sub/x.o"],
            &[("DISTCC_FALLBACK", "0")],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(work.join("new/sub/x.o")).unwrap(), want);
        assert_eq!(
            summaries_at_least(&*server, "COMPILE_OK", GCC, "x.c", 1),
            1,
            "{}",
            server.log()
        );
    }
}

#[test]
fn implicit_and_distcc_link_forms() {
    let daemon = Daemon::start("client-forms", DaemonOptions::default());
    let work = TestDir::new("client-forms-work");
    work.write("x.c", "int x = 1;\n");
    let link = work.join("distcc");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    // `distcc-rs -c x.c` runs cc, which Debian's alternatives make gcc.
    let out = client(
        &work.path,
        &daemon.host(false),
        &["-c", "x.c"],
        &[("DISTCC_FALLBACK", "0")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new(&link)
        .args(["gcc", "-c", "x.c", "-o", "y.o"])
        .current_dir(&work.path)
        .env("DISTCC_HOSTS", daemon.host(false))
        .env("DISTCC_DIR", work.join(".distcc-state"))
        .env("DISTCC_FALLBACK", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(work.join("y.o").exists());
    let log = daemon.log();
    assert_eq!(log.matches(" COMPILE_OK ").count(), 2, "{log}");
}

#[test]
fn show_hosts_and_j() {
    let work = TestDir::new("client-show");
    let hosts =
        "localhost a b:4000 c/8 d/2:4001 @e user@f/3:/opt/distccd,lzo [::1]:3700/5,lzo,cpp g,lzo";
    let out = client(&work.path, hosts, &["-j"], &[]);
    assert_eq!(text(&out.stdout), "36\n");
    let out = client(&work.path, hosts, &["--show-hosts"], &[]);
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        hosts.split(' ').collect::<Vec<_>>()
    );
    let out = client(&work.path, "a:4000x", &["--show-hosts"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("a:4000x"),
        "{}",
        text(&out.stderr)
    );
    let out = client(&work.path, "", &[], &[]);
    assert_eq!(out.status.code(), Some(101));
}
