//! The option table's promise, end to end (issue 9, bug 1): a job our client distributes is accepted by our daemon, and a job our daemon would refuse is compiled locally without contacting it, so no host is backed off.
//!
//! Before the one table, `distcc-rs gcc -xc -c x.c` was refused by
//! `distcc-rs daemon` ("language from -x must run locally"), the client
//! backed the host off, and for DISTCC_BACKOFF_PERIOD the next plain
//! `gcc -c x.c` compiled locally. The same happened with `-x c-header`,
//! `-Xclang …`, `-mllvm …`, `-Wa,-I…` and `-dumpdir`. Each case here runs
//! our client against our real daemon (logging every connection), then a
//! plain compile that must still be distributed.

use crate::common;

use common::daemon::{client, need, Daemon, DaemonOptions, TestDir};
use common::text;

/// Where a case's job must run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    /// Compiled by the daemon (`COMPILE_OK`).
    Remote,
    /// Compiled here, without a connection to the daemon.
    Local,
}

/// Lines of `log` that contain `what`.
fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// The backoff marks in a client's `$DISTCC_DIR/lock`.
fn backoff_marks(cwd: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cwd.join(".distcc-state/lock")) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("backoff"))
        .collect()
}

/// Runs `args` (which write `output`) with our client through our daemon,
/// checks that it ran where `expected` says and left no backoff mark, then
/// that a plain `gcc -c x.c` is still distributed.
fn runs_without_backoff(name: &str, args: &[&str], output: &str, expected: Where) {
    need("gcc", "gcc");
    let mut opts = DaemonOptions::default();
    opts.masquerade.push("clang".into());
    opts.args.push("--verbose".into());
    let daemon = Daemon::start(&format!("options-{name}"), opts);
    let work = TestDir::new(&format!("options-{name}-work"));
    work.write("x.c", "int x(int a) { return a * 3; }\n");
    std::fs::create_dir_all(work.join("inc")).unwrap();
    std::fs::create_dir_all(work.join("dd")).unwrap();

    let before = daemon.log();
    let out = client(&work.path, &daemon.host(false), args, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    assert!(work.join(output).exists(), "{args:?} wrote no {output}");
    let log = daemon.log();
    let (compiled, connections) = (
        count(&log, "COMPILE_OK") - count(&before, "COMPILE_OK"),
        count(&log, "connection from") - count(&before, "connection from"),
    );
    match expected {
        Where::Remote => assert_eq!(
            (compiled, connections),
            (1, 1),
            "{args:?} was not compiled remotely:\n{log}"
        ),
        Where::Local => assert_eq!(
            (compiled, connections),
            (0, 0),
            "{args:?} contacted the daemon:\n{log}"
        ),
    }
    assert!(!log.contains("refusing job"), "{args:?}:\n{log}");
    assert!(
        !stderr.contains("failed to distribute"),
        "{args:?} was refused: {stderr}"
    );
    assert_eq!(backoff_marks(&work.path), Vec::<String>::new(), "{args:?}");

    std::fs::remove_file(work.join("x.o")).ok();
    let plain = client(&work.path, &daemon.host(false), &["gcc", "-c", "x.c"], &[]);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    assert_eq!(
        count(&daemon.log(), "COMPILE_OK"),
        count(&log, "COMPILE_OK") + 1,
        "after {args:?}, a plain gcc -c x.c was not distributed:\n{}",
        daemon.log()
    );
}

#[test]
fn distributed_xc_is_accepted_by_our_daemon() {
    runs_without_backoff("xc", &["gcc", "-xc", "-c", "x.c"], "x.o", Where::Remote);
}

#[test]
fn distributed_x_c_is_accepted_by_our_daemon() {
    runs_without_backoff(
        "x-c",
        &["gcc", "-x", "c", "-c", "x.c"],
        "x.o",
        Where::Remote,
    );
}

#[test]
fn refused_option_is_never_distributed_nor_backed_off_x_c_header() {
    // gcc writes a precompiled header, x.c.gch: it needs the macros that
    // preprocessing removes, so it is built here.
    runs_without_backoff(
        "x-c-header",
        &["gcc", "-x", "c-header", "-c", "x.c"],
        "x.c.gch",
        Where::Local,
    );
}

#[test]
fn refused_option_is_never_distributed_nor_backed_off_xclang() {
    need("clang", "clang");
    runs_without_backoff(
        "xclang",
        &["clang", "-Xclang", "-fno-pch-timestamp", "-c", "x.c"],
        "x.o",
        Where::Local,
    );
}

#[test]
fn refused_option_is_never_distributed_nor_backed_off_mllvm() {
    need("clang", "clang");
    runs_without_backoff(
        "mllvm",
        &["clang", "-mllvm", "-inline-threshold=100", "-c", "x.c"],
        "x.o",
        Where::Local,
    );
}

#[test]
fn refused_option_is_never_distributed_nor_backed_off_wa_include() {
    runs_without_backoff(
        "wa-include",
        &["gcc", "-Wa,-Iinc", "-c", "x.c"],
        "x.o",
        Where::Local,
    );
}

#[test]
fn refused_option_is_never_distributed_nor_backed_off_dumpdir() {
    runs_without_backoff(
        "dumpdir",
        &["gcc", "-dumpdir", "dd/", "-c", "x.c"],
        "x.o",
        Where::Local,
    );
}

/// The daemon checks an option's separate value only as a value (so
/// `-o -fplugin=x.o` names a file). That is safe only if the compilers take
/// that argument as a value too: for every row of the table that takes a
/// separate value and is not refused anyway, gcc and clang must not read the
/// argument after it as an option.
#[test]
fn a_separate_value_is_never_an_option_to_the_compiler() {
    use distcc_rs::options::{Takes, OPTIONS};
    need("gcc", "gcc");
    need("clang", "clang");
    let work = TestDir::new("options-values");
    work.write(
        "x.c",
        "#ifdef INJECTED\n#error the value was taken for an option\n#endif\nint x;\n",
    );
    let rows = OPTIONS.iter().filter(|o| {
        matches!(o.takes, Takes::Separate | Takes::JoinedOrSeparate) && o.refused.is_none()
    });
    let mut checked = 0;
    for o in rows {
        for cc in ["gcc", "clang"] {
            let out = std::process::Command::new(cc)
                .args(["-c", "x.c", "-o", "x.o", o.name, "-DINJECTED"])
                .current_dir(&work.path)
                .output()
                .unwrap();
            let stderr = text(&out.stderr);
            assert!(
                !stderr.contains("taken for an option"),
                "{cc} {}: {stderr}",
                o.name
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} checked");
}
