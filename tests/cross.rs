//! The static powerpc and armv7 binaries run under qemu-user and name their target.

use crate::common;

use common::cross::{self, CrossTarget, ARMV7, POWERPC};
use std::process::Command;

fn check_version(target: &CrossTarget) {
    let output = cross::qemu(target)
        .arg("--version")
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", target.qemu));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{} distcc-rs --version exited with {}\nstdout:\n{stdout}\nstderr:\n{}",
        target.qemu,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let first = stdout.lines().next().unwrap_or("");
    assert!(
        first.starts_with("distcc-rs "),
        "first line of --version is {first:?}"
    );
    assert!(
        first.split_whitespace().any(|word| word == target.triple),
        "first line of --version {first:?} does not name {}",
        target.triple
    );
}

/// Runs file(1) on the binary and checks it names every one of `expected`.
/// rustc has no static-pie for these glibc targets, so file(1) says
/// "statically linked" (the x86_64 musl build is "static-pie linked",
/// which `make` checks).
fn check_file(target: &CrossTarget, expected: &[&str]) {
    let bin = cross::binary(target);
    let output = Command::new("file")
        .arg("-L")
        .arg(&bin)
        .output()
        .unwrap_or_else(|err| panic!("cannot run file: {err}"));
    assert!(output.status.success(), "file {} failed", bin.display());
    let described = String::from_utf8_lossy(&output.stdout);
    for word in expected {
        assert!(
            described.contains(word),
            "file says {described:?}, expected it to contain {word:?}"
        );
    }
}

#[test]
fn powerpc_version_under_qemu() {
    check_version(&POWERPC);
}

#[test]
fn powerpc_is_static_32bit_big_endian() {
    check_file(
        &POWERPC,
        &["ELF 32-bit MSB", "PowerPC", "statically linked"],
    );
}

#[test]
fn armv7_version_under_qemu() {
    check_version(&ARMV7);
}

#[test]
fn armv7_is_static() {
    check_file(&ARMV7, &["ELF 32-bit LSB", "ARM", "statically linked"]);
}

#[test]
fn powerpc_picks_applet_by_argv0() {
    // Called as distccd, the binary must not answer as the multicall
    // dispatcher does to an unknown name (exit 127).
    let output = cross::qemu_as(&POWERPC, "distccd")
        .arg("--help")
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", POWERPC.qemu));
    assert_ne!(
        output.status.code(),
        Some(127),
        "distccd was not found as an applet: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
