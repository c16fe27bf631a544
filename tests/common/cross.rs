//! Locates the static powerpc and armv7 binaries, building them with `make cross` first.
//!
//! The binaries live in their own cargo target dir (`target/cross`, the
//! Makefile's `CROSS_TARGET_DIR`), so the `cargo build` that `make cross` runs
//! never waits on the build lock of the `cargo test` that is running us.
//! `make cross` runs once per test process, whatever the state of the
//! binaries: cargo decides whether they are stale and rebuilds them if so, and
//! the Makefile then checks them with file(1) and runs them under qemu.
//!
//! Missing tools are a test failure with a message naming the Debian packages,
//! never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One cross target: its triple, the qemu-user binary that runs it, the cross
/// gcc that links it and the Debian packages that provide the linker and libc.
#[derive(Debug)]
pub struct CrossTarget {
    pub triple: &'static str,
    pub qemu: &'static str,
    pub linker: &'static str,
    pub linker_packages: &'static [&'static str],
}

/// The Debian package of every `qemu-*-static`.
const QEMU_PACKAGE: &str = "qemu-user-static";

/// 32-bit big-endian PowerPC, the stand-in for OpenBSD/macppc.
pub const POWERPC: CrossTarget = CrossTarget {
    triple: "powerpc-unknown-linux-gnu",
    qemu: "qemu-ppc-static",
    linker: "powerpc-linux-gnu-gcc",
    linker_packages: &["gcc-powerpc-linux-gnu", "libc6-dev-powerpc-cross"],
};

/// 32-bit little-endian ARMv7 with hard float.
pub const ARMV7: CrossTarget = CrossTarget {
    triple: "armv7-unknown-linux-gnueabihf",
    qemu: "qemu-arm-static",
    linker: "arm-linux-gnueabihf-gcc",
    linker_packages: &["gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"],
};

/// Every target `make cross` builds.
pub const ALL: [&CrossTarget; 2] = [&POWERPC, &ARMV7];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target dir of the cross builds, handed to make as CROSS_TARGET_DIR
/// so that the Makefile and this helper agree on it.
pub fn cross_target_dir() -> PathBuf {
    manifest_dir().join("target").join("cross")
}

/// Where `make cross` leaves the static binary for `target`.
pub fn binary_path(target: &CrossTarget) -> PathBuf {
    cross_target_dir()
        .join(target.triple)
        .join("release")
        .join("distcc-rs")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| std::fs::metadata(dir.join(tool)).is_ok_and(|m| m.is_file()))
    })
}

/// An error naming the packages to install if any tool `make cross` needs is
/// missing.
fn require_tools() -> Result<(), String> {
    let mut missing = Vec::new();
    let mut packages = Vec::new();
    for target in ALL {
        if !on_path(target.qemu) {
            missing.push(target.qemu);
            packages.push(QEMU_PACKAGE);
        }
        if !on_path(target.linker) {
            missing.push(target.linker);
            packages.extend(target.linker_packages);
        }
    }
    for (tool, package) in [("make", "make"), ("file", "file")] {
        if !on_path(tool) {
            missing.push(tool);
            packages.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    packages.sort_unstable();
    packages.dedup();
    Err(format!(
        "the cross tests need tools that are not on PATH: {}. Install them with \
         `apt-get install {}` (see .ci/run). These tests fail rather than skip.",
        missing.join(", "),
        packages.join(" ")
    ))
}

/// Runs `make -C <manifest dir> cross` (once per process) and panics with its
/// output if it fails.
fn build_once() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        require_tools()?;
        let mut make = Command::new("make");
        make.arg("-C")
            .arg(manifest_dir())
            .arg("cross")
            .arg(format!("CROSS_TARGET_DIR={}", cross_target_dir().display()))
            // When `make test` runs us, the outer make's flags and jobserver
            // are not ours to inherit.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL");
        let output = make
            .output()
            .map_err(|err| format!("cannot run {make:?}: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{make:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// The up-to-date static binary for `target`, built by `make cross` if needed.
pub fn binary(target: &CrossTarget) -> PathBuf {
    build_once();
    let path = binary_path(target);
    assert!(
        path.is_file(),
        "`make cross` succeeded but left no binary at {}",
        path.display()
    );
    path
}

/// A command that runs the static binary for `target` under qemu-user; add
/// the arguments (an applet name first, or `--version`).
pub fn qemu(target: &CrossTarget) -> Command {
    let bin = binary(target);
    let mut cmd = Command::new(target.qemu);
    cmd.arg(bin);
    cmd
}

/// Like [`qemu`], but with argv[0] set to `argv0` (qemu's `-0`), so that the
/// binary picks its applet by the called name as it would through a link
/// named, say, `distccd`.
pub fn qemu_as(target: &CrossTarget, argv0: &str) -> Command {
    let bin = binary(target);
    let mut cmd = Command::new(target.qemu);
    cmd.arg("-0").arg(argv0).arg(bin);
    cmd
}
