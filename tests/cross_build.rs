//! Cross builds end to end: a "slow machine" client (the static powerpc or
//! armv7 distcc-rs under qemu-user, its cc being clang for its own target)
//! preprocesses here and compiles through a clang helper made by `distcc-rs
//! wrap`; the objects link with the target's gcc and the program runs under
//! qemu. Also: the monitor on the slow machine reads its client's state
//! files, and a gcc client's failure on a clang helper is named in the log.
//!
//! The client is run as `distcc-rs cc -c ...` rather than through a
//! masquerade link named cc: the explicit form is how builds set CC on such
//! a machine, and it does not depend on qemu-user's emulation of
//! /proc/self/exe to skip the link when the client looks for the real cc.

use crate::common;

use common::cross::{self, make_helper, run_bounded, HelperInstance, SlowMachine, ARMV7, POWERPC};
use common::daemon::bin;
use common::{exited_within, text, wait_until, TestDir};
use std::process::{Child, Command, Output};
use std::time::Duration;

/// The two sources: both include <stdio.h>; `order.c` prints the bytes of a
/// 32-bit word, so an object compiled for the wrong byte order shows.
const MAIN_C: &str = r#"#include <stdio.h>

void print_order(void);

int main(void)
{
    printf("hello from %s\n", __FILE__);
    print_order();
    return 0;
}
"#;

const ORDER_C: &str = r#"#include <stdint.h>
#include <stdio.h>

void print_order(void)
{
    union {
        uint32_t word;
        unsigned char bytes[4];
    } u = { .word = 0x01020304 };
    printf("bytes %02x %02x %02x %02x\n", u.bytes[0], u.bytes[1], u.bytes[2], u.bytes[3]);
}
"#;

/// The client's cc, as on an OpenBSD/macppc box: clang for its own target,
/// called cc. Every call is recorded, to show it only ever preprocessed.
fn clang_cc(machine: &SlowMachine) {
    machine.cc(&format!(
        "echo \"$*\" >> \"{}\"\nexec clang --target={} \"$@\"",
        machine.dir.join("cc.calls").display(),
        machine.target.gnu_triple
    ));
}

const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// Builds the two-file program on the slow machine through the helper, links
/// and runs it, and checks every compile went to the helper's `cc` wrapper.
fn build_through_helper(target: &'static cross::CrossTarget, lzo: bool, expected_bytes: &str) {
    let machine = SlowMachine::new(target, &format!("xbuild-{}", target.gnu_triple));
    let helper = make_helper(
        target.gnu_triple,
        TestDir::new(&format!("xhelper-{}", target.gnu_triple)),
        common::free_port(),
    );
    clang_cc(&machine);
    machine.dir.write("main.c", MAIN_C);
    machine.dir.write("order.c", ORDER_C);
    for src in ["main.c", "order.c"] {
        let obj = src.replace(".c", ".o");
        let out = run_bounded(
            machine.distcc_rs(
                &helper.host(lzo),
                &["cc", "-O2", "-c", src, "-o", &obj],
                &[("DISTCC_FALLBACK", "0")],
            ),
            CLIENT_LIMIT,
        );
        assert!(
            out.status.success(),
            "{} client: cc -c {src} exited with {}:\n{}\nhelper log:\n{}",
            target.qemu,
            out.status,
            text(&out.stderr),
            helper.daemon.log()
        );
        assert_remote(&helper, src);
    }
    // The client's cc only preprocesses, apart from the object check's one
    // probe (an empty compile, learned once and then read from DISTCC_DIR).
    let calls = std::fs::read_to_string(machine.dir.join("cc.calls")).unwrap();
    let mut probes = 0;
    for call in calls.lines() {
        let words: Vec<&str> = call.split_whitespace().collect();
        if words.windows(2).any(|w| w == ["-c", "/dev/null"]) {
            probes += 1;
            continue;
        }
        assert!(
            words.contains(&"-E"),
            "the client's cc ran something other than the preprocessor: {call:?}"
        );
    }
    assert_eq!(probes, 1, "object-format probes in {calls:?}");
    assert_eq!(calls.lines().count(), 3, "cc calls: {calls}");
    let run = machine.link_and_run(&["main.o", "order.o"], "hello");
    assert_eq!(
        text(&run.stdout),
        format!("hello from main.c\nbytes {expected_bytes}\n")
    );
    helper.daemon.assert_no_leftovers();
}

/// Exactly one COMPILE_OK line for `src`, run by the helper's `cc` wrapper.
fn assert_remote(helper: &HelperInstance, src: &str) {
    let lines = helper.compile_ok_lines(src);
    let wrapper = helper.wrapper("cc");
    let wanted = format!(" {} {src}", wrapper.display());
    assert!(
        lines.len() == 1 && lines[0].ends_with(&wanted),
        "expected one COMPILE_OK line ending in {wanted:?} for {src}, got {lines:?}; log:\n{}",
        helper.daemon.log()
    );
}

#[test]
fn powerpc_client_builds_through_clang_helper() {
    build_through_helper(&POWERPC, true, "01 02 03 04");
}

#[test]
fn armv7_client_builds_through_clang_helper() {
    build_through_helper(&ARMV7, false, "04 03 02 01");
}

/// The hint the daemon logs for gcc-preprocessed input that clang failed on.
const GCC_HINT: &str = "failed on input preprocessed by gcc; clang cannot compile \
                        gcc-preprocessed glibc headers";

#[test]
fn gcc_client_fails_on_clang_helper_and_the_log_says_why() {
    let machine = SlowMachine::new(&POWERPC, "xgcc-client");
    let helper = make_helper(
        POWERPC.gnu_triple,
        TestDir::new("xgcc-helper"),
        common::free_port(),
    );
    machine.cc(&format!("exec {} \"$@\"", POWERPC.linker));
    machine.dir.write("main.c", MAIN_C);
    let out = run_bounded(
        machine.distcc_rs(
            &helper.host(true),
            &["cc", "-c", "main.c", "-o", "main.o"],
            &[("DISTCC_FALLBACK", "0")],
        ),
        CLIENT_LIMIT,
    );
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a gcc client's compile on a clang helper succeeded:\n{stderr}"
    );
    // What clang 14 says about glibc's headers as gcc 12 expanded them.
    assert!(
        stderr.contains("error: '__malloc__' attribute takes no arguments"),
        "the client's stderr lacks clang's complaint:\n{stderr}"
    );
    assert!(!machine.dir.join("main.o").exists());
    let log = helper.daemon.log();
    let hints: Vec<&str> = log.lines().filter(|l| l.contains(GCC_HINT)).collect();
    assert_eq!(hints.len(), 1, "expected one hint line; log:\n{log}");
    assert!(
        hints[0].contains("Warning: job from 127.0.0.1:")
            && hints[0].contains(": cc failed on input")
            && hints[0].contains("the client's cc must be clang"),
        "hint line: {}",
        hints[0]
    );
    assert!(log.contains(" COMPILE_ERROR "), "log:\n{log}");

    // With fallback, the same client builds locally.
    let out = run_bounded(
        machine.distcc_rs(
            &helper.host(true),
            &["cc", "-c", "main.c", "-o", "main.o"],
            &[],
        ),
        CLIENT_LIMIT,
    );
    assert!(out.status.success(), "fallback: {}", text(&out.stderr));
    assert!(machine.dir.join("main.o").is_file());
    helper.daemon.assert_no_leftovers();
}

#[test]
fn clang_client_gets_no_gcc_hint() {
    // A clang client's failing compile: clang's diagnostics, clang's markers.
    let machine = SlowMachine::new(&POWERPC, "xclang-fail");
    let helper = make_helper(
        POWERPC.gnu_triple,
        TestDir::new("xclang-fail-helper"),
        common::free_port(),
    );
    clang_cc(&machine);
    machine.dir.write(
        "bad.c",
        "#include <stdio.h>\nint main(void) { return nosuch; }\n",
    );
    let out = run_bounded(
        machine.distcc_rs(
            &helper.host(false),
            &["cc", "-c", "bad.c", "-o", "bad.o"],
            &[("DISTCC_FALLBACK", "0")],
        ),
        CLIENT_LIMIT,
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "bad.c compiled:\n{stderr}");
    assert!(
        stderr.contains("use of undeclared identifier 'nosuch'"),
        "{stderr}"
    );
    let log = helper.daemon.log();
    assert!(log.contains(" COMPILE_ERROR "), "log:\n{log}");
    assert!(!log.contains(GCC_HINT), "hint for a clang client:\n{log}");
}

/// Removes the hold file and reaps the client, whatever the test did.
struct HeldClient {
    child: Child,
    hold: std::path::PathBuf,
}

impl Drop for HeldClient {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.hold);
        if exited_within(&mut self.child, CLIENT_LIMIT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn monitor_on_powerpc_reads_its_clients_state() {
    let machine = SlowMachine::new(&POWERPC, "xmon");
    let helper = make_helper(
        POWERPC.gnu_triple,
        TestDir::new("xmon-helper"),
        common::free_port(),
    );
    let hold = machine.dir.join("hold");
    let started = machine.dir.join("cpp-started");
    // While `hold` exists, cc -E waits (at most 60 s) before preprocessing.
    machine.cc(&format!(
        "case \" $* \" in *\" -E \"*)\n\
         if [ -e {hold} ]; then : > {started}; i=0\n\
         while [ -e {hold} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n\
         fi;;\nesac\nexec clang --target={} \"$@\"",
        POWERPC.gnu_triple,
        hold = hold.display(),
        started = started.display(),
    ));
    machine.dir.write("main.c", MAIN_C);
    std::fs::write(&hold, "").unwrap();
    let child = machine
        .distcc_rs(
            &helper.host(false),
            &["cc", "-c", "main.c", "-o", "main.o"],
            &[("DISTCC_FALLBACK", "0")],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut client = HeldClient { child, hold };
    let pid = client.child.id();
    let mut exited = false;
    let preprocessing = wait_until(CLIENT_LIMIT, || {
        exited = client.child.try_wait().unwrap().is_some();
        exited || started.exists()
    });
    if !started.exists() {
        assert!(!exited, "the client exited before preprocessing");
        assert!(
            preprocessing,
            "the client's cc -E did not start within {CLIENT_LIMIT:?}"
        );
    }

    // The state file: ILP32 big-endian, 280 bytes, magic 44 49 48 00, phase
    // Preprocess (3) at offset 272.
    let state = machine
        .distcc_dir()
        .join("state")
        .join(format!("binstate_{pid}"));
    // The client rewrites its file in place (O_TRUNC, then write), so a
    // read may come between the two: wait for a whole one.
    let mut read = std::fs::read(&state);
    let _ = wait_until(Duration::from_secs(10), || {
        read = std::fs::read(&state);
        read.as_ref().is_ok_and(|b| b.len() == 280)
    });
    let bytes = read.unwrap_or_else(|err| panic!("no state file {}: {err}", state.display()));
    assert_eq!(bytes.len(), 280, "state file size");
    assert_eq!(&bytes[0..4], &280u32.to_be_bytes());
    assert_eq!(&bytes[4..8], &[0x44, 0x49, 0x48, 0x00]);
    assert_eq!(&bytes[8..12], &pid.to_be_bytes());
    assert_eq!(&bytes[272..276], &3u32.to_be_bytes());

    let mon = |mut cmd: Command| -> Output {
        cmd.arg("mon").env("DISTCC_DIR", machine.distcc_dir());
        let shown = format!("{cmd:?}");
        let out = run_bounded(cmd, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{shown} exited with {}: {}",
            out.status,
            text(&out.stderr)
        );
        out
    };
    let ppc = mon(machine.run());
    let listing = text(&ppc.stdout);
    let line = format!("{pid:>6}  {:<10.10}  ", "Preprocess");
    let ours: Vec<&str> = listing.lines().filter(|l| l.starts_with(&line)).collect();
    assert_eq!(ours.len(), 1, "powerpc mon listing:\n{listing}");
    assert!(ours[0].ends_with(" localhost[0]"), "{}", ours[0]);
    assert!(
        listing.ends_with("\n\n"),
        "no empty line after the poll: {listing:?}"
    );

    // The x86-64 build reads the same file as a foreign layout: not listed.
    let native = mon(Command::new(bin()));
    let listing = text(&native.stdout);
    assert!(
        !listing
            .lines()
            .any(|l| l.trim_start().starts_with(&pid.to_string())),
        "the x86-64 monitor listed a powerpc client's state:\n{listing}"
    );

    let _ = std::fs::remove_file(&client.hold);
    let status = exited_within(&mut client.child, CLIENT_LIMIT).expect("the client did not finish");
    assert!(status.success(), "the held client failed: {status}");
    assert_eq!(helper.compile_ok_lines("main.c").len(), 1);
}
