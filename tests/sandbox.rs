//! The compilers' sandbox on our daemon: a source that `.incbin`s a file outside what compilers may read fails remotely and its bytes never come back, a compiler that writes outside its job's directory fails, and C, C++, Objective-C and clang for powerpc still give objects identical to local compiles.
//!
//! Each remote run has `DISTCC_FALLBACK=0`, so that a job refused by the
//! sandbox fails rather than being compiled again on the client; the
//! daemon's log says whether the compile ran there (`COMPILE_ERROR`) or
//! not at all.

use crate::common;

use common::compare::{self, summaries_at_least};
use common::daemon::{client, need, Daemon, DaemonOptions};
use common::{text, write_c_cxx_objc_sources, TestDir};
use std::path::Path;

/// What our client sends for `gcc` (distcc 3.4's rewrite).
const GCC: &str = "x86_64-linux-gnu-gcc";
const GXX: &str = "x86_64-linux-gnu-g++";

/// The line our daemon logs at start when compilers are confined.
const SANDBOX_ON: &str = "compilers run in a sandbox: Landlock";

fn start(name: &str, opts: DaemonOptions) -> Daemon {
    need("gcc", "gcc");
    let daemon = Daemon::start(name, opts);
    assert!(daemon.log().contains(SANDBOX_ON), "{}", daemon.log());
    daemon
}

/// A file nobody's compiler should read: world-readable, in the test's
/// own directory (neither a system directory nor the job's), holding
/// bytes that appear nowhere else.
fn secret(work: &TestDir) -> (std::path::PathBuf, Vec<u8>) {
    let secret = format!("SECRET-{}-{:x}-never-sent", std::process::id(), 0x5eed_u32);
    let path = work.write("private/secret.bin", secret.as_bytes());
    (path, secret.into_bytes())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn incbin_of_a_file_outside_the_sandbox_fails_remotely_and_its_bytes_never_come_back() {
    let daemon = start("sandbox-incbin", DaemonOptions::default());
    let work = TestDir::new("sandbox-incbin-work");
    let (path, bytes) = secret(&work);
    work.write(
        "steal.c",
        format!(
            "__asm__(\".section .rodata\\n.globl stolen\\nstolen:\\n.incbin \\\"{}\\\"\\n\");\n\
             int f(void) {{ return 1; }}\n",
            path.display()
        ),
    );
    let args = ["gcc", "-c", "steal.c", "-o", "steal.o"];
    let out = client(
        &work.path,
        &daemon.host(true),
        &args,
        &[("DISTCC_FALLBACK", "0")],
    );
    assert!(
        !out.status.success(),
        "the remote compile read {}:\n{}",
        path.display(),
        daemon.log()
    );
    assert!(!work.join("steal.o").exists(), "an object came back");
    assert!(!contains(&out.stdout, &bytes) && !contains(&out.stderr, &bytes));
    assert_eq!(
        summaries_at_least(&daemon, "COMPILE_ERROR", GCC, "steal.c", 1),
        1,
        "the compiler did not run on the daemon:\n{}",
        daemon.log()
    );
    // gas says "file not found" for a file it may not open.
    assert!(
        text(&out.stderr).contains("secret.bin"),
        "the assembler's complaint: {}",
        text(&out.stderr)
    );
    // The same source compiles locally: the file is readable, only not
    // to the daemon's compilers.
    let local = common::local(&work.path, &args);
    assert!(local.status.success(), "{}", text(&local.stderr));
    assert!(contains(
        &std::fs::read(work.join("steal.o")).unwrap(),
        &bytes
    ));
}

/// A server-side `gcc` that first writes a file outside its job's
/// directory, then compiles; it fails if the write does.
const ESCAPING_GCC: &str = r#"echo escaped > "$OUTSIDE/escaped" || exit 3
echo inside > ./inside || exit 4
exec /usr/bin/gcc "$@""#;

#[test]
fn a_compiler_that_writes_outside_its_job_directory_fails() {
    let outside = TestDir::new("sandbox-outside");
    std::fs::set_permissions(
        &outside.path,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let daemon = start(
        "sandbox-write",
        DaemonOptions {
            scripts: vec![(GCC.into(), ESCAPING_GCC.into())],
            env: vec![("OUTSIDE".into(), outside.path.display().to_string())],
            ..DaemonOptions::default()
        },
    );
    let work = TestDir::new("sandbox-write-work");
    work.write("x.c", "int x(void) { return 2; }\n");
    let out = client(
        &work.path,
        &daemon.host(false),
        &["gcc", "-c", "x.c", "-o", "x.o"],
        &[("DISTCC_FALLBACK", "0")],
    );
    assert!(!out.status.success(), "{}", daemon.log());
    assert!(
        !outside.join("escaped").exists(),
        "the compiler wrote outside"
    );
    assert_eq!(
        summaries_at_least(&daemon, "COMPILE_ERROR", GCC, "x.c", 1),
        1,
        "{}",
        daemon.log()
    );
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn c_cxx_objc_and_clang_for_powerpc_objects_are_identical_under_the_sandbox() {
    need("g++", "g++");
    need("clang", "clang");
    let mut opts = DaemonOptions::default();
    opts.masquerade.push("clang".into());
    let daemon = start("sandbox-langs", opts);
    let work = TestDir::new("sandbox-langs-work");
    write_c_cxx_objc_sources(&work);
    let cases: [(&[&str], &str, &str, &str); 4] = [
        (
            &["gcc", "-O2", "-c", "hello.c", "-o", "hello.o"],
            "hello.o",
            GCC,
            "hello.c",
        ),
        (
            &["g++", "-std=c++17", "-c", "vec.cc"],
            "vec.o",
            GXX,
            "vec.cc",
        ),
        (
            &["gcc", "-c", "obj.m", "-o", "obj.o"],
            "obj.o",
            GCC,
            "obj.m",
        ),
        (
            &[
                "clang",
                "--target=powerpc-linux-gnu",
                "-O2",
                "-c",
                "hello.c",
                "-o",
                "ppc.o",
            ],
            "ppc.o",
            "clang",
            "hello.c",
        ),
    ];
    for (args, object, program, input) in cases {
        compare::same_as_local(client, &daemon, &work, args, &[object], program, input);
    }
    let ppc = std::fs::read(work.join("ppc.o")).unwrap();
    // ELF, 32-bit, big-endian, machine 20 (PowerPC).
    assert_eq!(
        (&ppc[..6], &ppc[18..20]),
        (&b"\x7fELF\x01\x02"[..], &[0u8, 20][..])
    );
    daemon.assert_no_leftovers();
}

#[test]
fn require_sandbox_starts_here_and_no_sandbox_is_logged() {
    let daemon = start(
        "sandbox-require",
        DaemonOptions {
            args: vec!["--require-sandbox".into()],
            ..DaemonOptions::default()
        },
    );
    drop(daemon);
    let off = Daemon::start(
        "sandbox-off",
        DaemonOptions {
            args: vec!["--no-sandbox".into()],
            ..DaemonOptions::default()
        },
    );
    assert!(
        off.log()
            .contains("--no-sandbox: compilers run without a sandbox"),
        "{}",
        off.log()
    );
    let both = std::process::Command::new(common::daemon::bin())
        .args(["daemon", "--no-detach", "--log-stderr", "--inetd"])
        .args(["--no-sandbox", "--require-sandbox", "--enable-tcp-insecure"])
        .current_dir(Path::new("/"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(100), "{}", text(&both.stderr));
    assert!(
        text(&both.stderr).contains("contradict"),
        "{}",
        text(&both.stderr)
    );
}
