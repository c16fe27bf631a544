//! Locates the static powerpc and armv7 binaries, building them with `make cross` first;
//! runs them under qemu-user as a "slow machine" client; makes a clang helper
//! with `distcc-rs wrap` and starts its daemon from the generated unit.
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

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::daemon::{bin, client_command, need, Daemon};
use super::{free_port, manifest_dir, text};
use super::{wait_until, TestDir};

/// One cross target: its triple, the qemu-user binary that runs it, the cross
/// gcc that links it and the Debian packages that provide the linker and libc.
#[derive(Debug)]
pub struct CrossTarget {
    pub triple: &'static str,
    /// The GNU triple of the cross gcc and of clang's `--target`.
    pub gnu_triple: &'static str,
    pub qemu: &'static str,
    pub linker: &'static str,
    pub linker_packages: &'static [&'static str],
}

/// The Debian package of every `qemu-*-static`.
const QEMU_PACKAGE: &str = "qemu-user-static";

/// 32-bit big-endian PowerPC, the stand-in for OpenBSD/macppc.
pub const POWERPC: CrossTarget = CrossTarget {
    triple: "powerpc-unknown-linux-gnu",
    gnu_triple: "powerpc-linux-gnu",
    qemu: "qemu-ppc-static",
    linker: "powerpc-linux-gnu-gcc",
    linker_packages: &["gcc-powerpc-linux-gnu", "libc6-dev-powerpc-cross"],
};

/// 32-bit little-endian ARMv7 with hard float.
pub const ARMV7: CrossTarget = CrossTarget {
    triple: "armv7-unknown-linux-gnueabihf",
    gnu_triple: "arm-linux-gnueabihf",
    qemu: "qemu-arm-static",
    linker: "arm-linux-gnueabihf-gcc",
    linker_packages: &["gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"],
};

/// Every target `make cross` builds.
pub const ALL: [&CrossTarget; 2] = [&POWERPC, &ARMV7];

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

impl CrossTarget {
    /// Where Debian's libc6-dev-*-cross puts the target's libc: qemu's `-L`.
    pub fn sysroot(&self) -> PathBuf {
        Path::new("/usr").join(self.gnu_triple)
    }

    /// Fails the test, naming the packages, unless the qemu-user binary, the
    /// cross gcc and clang are all on PATH.
    pub fn need_tools(&self) {
        need(self.qemu, QEMU_PACKAGE);
        need(self.linker, &self.linker_packages.join(" "));
        need("clang", "clang");
    }
}

/// The "slow machine": the static build of distcc-rs for one target, copied
/// as one file into a fresh directory and run under qemu-user as the client,
/// with a `bin/` of its own first on PATH for its `cc`.
pub struct SlowMachine {
    pub target: &'static CrossTarget,
    pub dir: TestDir,
    /// The copied binary.
    pub bin: PathBuf,
}

impl SlowMachine {
    pub fn new(target: &'static CrossTarget, name: &str) -> SlowMachine {
        target.need_tools();
        let dir = TestDir::new(name);
        let bin = dir.join("distcc-rs");
        std::fs::copy(binary(target), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        SlowMachine { target, dir, bin }
    }

    /// Writes the client's `cc`, a shell script with this body.
    pub fn cc(&self, body: &str) -> PathBuf {
        self.dir.script("bin/cc", body)
    }

    /// The client's PATH: its own `bin/`, then ours (for sh, clang, ...).
    fn path(&self) -> std::ffi::OsString {
        let ours = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(self.dir.join("bin")).chain(std::env::split_paths(&ours));
        std::env::join_paths(dirs).unwrap()
    }

    /// `qemu-* distcc-rs ARGS` in the machine's directory, with `hosts`, a
    /// DISTCC_DIR of its own ([`client_command`]) and its PATH.
    pub fn distcc_rs(&self, hosts: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = client_command(Path::new(self.target.qemu), &self.dir.path, hosts, env);
        cmd.env("PATH", self.path()).arg(&self.bin).args(args);
        cmd
    }

    /// `qemu-* distcc-rs` on the machine, for an applet other than the client.
    pub fn run(&self) -> Command {
        let mut cmd = Command::new(self.target.qemu);
        cmd.arg(&self.bin);
        cmd
    }

    /// The client's DISTCC_DIR, as [`client_command`] sets it.
    pub fn distcc_dir(&self) -> PathBuf {
        self.dir.join(".distcc-state")
    }

    /// Links `objects` in the machine's directory with the target's cross
    /// gcc into `program` and runs it under qemu-user with the target's
    /// libc; returns its output after checking both steps succeeded.
    pub fn link_and_run(&self, objects: &[&str], program: &str) -> Output {
        let link = Command::new(self.target.linker)
            .args(objects)
            .arg("-o")
            .arg(program)
            .current_dir(&self.dir.path)
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.target.linker));
        assert!(
            link.status.success(),
            "{} {objects:?} -o {program} failed: {}",
            self.target.linker,
            text(&link.stderr)
        );
        let run = Command::new(self.target.qemu)
            .arg("-L")
            .arg(self.target.sysroot())
            .arg(self.dir.join(program))
            .current_dir(&self.dir.path)
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.target.qemu));
        assert!(
            run.status.success(),
            "{program} under {} exited with {}: {}",
            self.target.qemu,
            run.status,
            text(&run.stderr)
        );
        run
    }
}

/// Runs the client to completion, with a bounded wait: qemu is slow.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {cmd:?}: {err}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: killing our own child, which has not been reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// The helper: a compile server made by `distcc-rs wrap`, started from its unit.
// ---------------------------------------------------------------------------

/// The name the helpers are made under: `--name`.
pub const HELPER_NAME: &str = "xtest";

/// A helper's generated files and the daemon started from its unit.
pub struct HelperInstance {
    /// The `--dir` that wrap wrote into.
    pub dir: PathBuf,
    /// `Environment=` of the unit, in order.
    pub env: Vec<(String, String)>,
    /// `ExecStart=` of the unit, split into words, with the test's additions.
    pub exec: Vec<String>,
    /// The daemon, logging to `daemon.dir/daemon.log`.
    pub daemon: Daemon,
}

impl HelperInstance {
    /// The host spec for DISTCC_HOSTS.
    pub fn host(&self, lzo: bool) -> String {
        self.daemon.host(lzo)
    }

    /// The helper's wrapper script for `name` (`cc`, `clang`, ...).
    pub fn wrapper(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// The daemon's `COMPILE_OK` lines for `input`, as the job summary
    /// writes them: `... COMPILE_OK ... PROGRAM INPUT`.
    pub fn compile_ok_lines(&self, input: &str) -> Vec<String> {
        self.daemon
            .log()
            .lines()
            .filter(|l| l.contains(" COMPILE_OK ") && l.ends_with(&format!(" {input}")))
            .map(str::to_string)
            .collect()
    }
}

/// Makes a helper for the clang target `target` (a GNU triple) in
/// `dir/helper` with `distcc-rs wrap --target TARGET --port PORT --allow
/// 127.0.0.1`, and starts its daemon from the generated
/// unit's `Environment=` and `ExecStart=` lines.
pub fn make_helper(target: &str, dir: TestDir, port: u16) -> HelperInstance {
    let clang = need("clang", "clang");
    let helper = dir.join("helper");
    let port_text = port.to_string();
    let args = [
        "--target",
        target,
        "--compiler",
        clang.to_str().unwrap(),
        "--dir",
        helper.to_str().unwrap(),
        "--port",
        &port_text,
        "--name",
        HELPER_NAME,
        "--allow",
        "127.0.0.1",
    ];
    let out = Command::new(bin()).arg("wrap").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "distcc-rs wrap {args:?} exited with {}:\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let unit_path = helper.join(format!("distcc-rs-{HELPER_NAME}.service"));
    let unit = std::fs::read_to_string(&unit_path)
        .unwrap_or_else(|err| panic!("cannot read the unit {}: {err}", unit_path.display()));
    let (env, exec) = parse_unit(&unit);
    for file in ["commands.allow", "bin/cc"] {
        assert!(
            helper.join(file).is_file(),
            "wrap made no {file} in {}",
            helper.display()
        );
    }
    start_helper_daemon(dir, helper, env, exec, port)
}

/// A unit's `Environment="K=V"` pairs and its `ExecStart=` words.
fn parse_unit(unit: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut env = Vec::new();
    let mut exec = None;
    for line in unit.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Environment=") {
            let value = value.trim_matches('"');
            let (k, v) = value
                .split_once('=')
                .unwrap_or_else(|| panic!("unit line {line:?} is not Environment=\"K=V\""));
            env.push((k.to_string(), v.to_string()));
        } else if let Some(command) = line.strip_prefix("ExecStart=") {
            assert!(exec.is_none(), "the unit has two ExecStart= lines:\n{unit}");
            exec = Some(
                command
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            );
        }
    }
    let exec = exec.unwrap_or_else(|| panic!("the unit has no ExecStart= line:\n{unit}"));
    for key in ["DISTCC_CMDLIST", "PATH", "DISTCCD_PATH"] {
        assert!(
            env.iter().any(|(k, _)| k == key),
            "the unit sets no {key}:\n{unit}"
        );
    }
    (env, exec)
}

/// Sets (or adds) the value of `--option` in a command's words.
fn set_option(exec: &mut Vec<String>, option: &str, value: &str) {
    let joined = format!("{option}=");
    if let Some(i) = exec.iter().position(|w| w == option) {
        assert!(i + 1 < exec.len(), "{option} without a value in {exec:?}");
        exec[i + 1] = value.to_string();
    } else if let Some(i) = exec.iter().position(|w| w.starts_with(&joined)) {
        exec[i] = format!("{joined}{value}");
    } else {
        exec.push(option.to_string());
        exec.push(value.to_string());
    }
}

fn option_value<'a>(exec: &'a [String], option: &str) -> Option<&'a str> {
    let joined = format!("{option}=");
    exec.iter().enumerate().find_map(|(i, w)| {
        if w == option {
            exec.get(i + 1).map(String::as_str)
        } else {
            w.strip_prefix(&joined)
        }
    })
}

/// Starts the unit's command as systemd would (the unit's environment and
/// nothing else), plus what a test needs: TMPDIR and the log file in `dir`,
/// loopback only, and `port` unless the unit already uses it. If another
/// process takes the port first, the daemon cannot listen and the start is
/// tried again on a new free port.
fn start_helper_daemon(
    dir: TestDir,
    helper: PathBuf,
    env: Vec<(String, String)>,
    mut exec: Vec<String>,
    port: u16,
) -> HelperInstance {
    assert!(
        exec.get(1).map(String::as_str) == Some("daemon"),
        "ExecStart= does not run `distcc-rs daemon`: {exec:?}"
    );
    assert!(
        exec.iter().any(|w| w == "--no-detach"),
        "ExecStart= has no --no-detach: {exec:?}"
    );
    let tmp = dir.shared_dir("daemon-tmp");
    let marks = dir.shared_dir("marks");
    let log = dir.join("daemon.log");
    // The daemon opens its log after dropping root to nobody.
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    // systemd would send stderr to the journal; the test matches jobs in a file.
    exec.retain(|w| w != "--log-stderr");
    exec.push("--log-file".into());
    exec.push(log.to_str().unwrap().into());
    if option_value(&exec, "--listen").is_none() {
        exec.push("--listen".into());
        exec.push("127.0.0.1".into());
    }
    if option_value(&exec, "--allow").is_none() {
        exec.push("--allow".into());
        exec.push("127.0.0.1".into());
    }
    let mut port = port;
    for _ in 0..5 {
        if option_value(&exec, "--port") != Some(&port.to_string()) {
            set_option(&mut exec, "--port", &port.to_string());
        }
        let stderr = std::fs::File::create(dir.join("daemon.stderr")).unwrap();
        let mut child = Command::new(&exec[0])
            .args(&exec[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {exec:?}: {err}"));
        let serving = || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("serving with"));
        let mut exited = None;
        let _ = wait_until(Duration::from_secs(10), || {
            exited = child.try_wait().unwrap();
            exited.is_some() || serving()
        });
        if exited.is_none() && serving() {
            let daemon = Daemon {
                child,
                port,
                stats_port: None,
                dir,
                marks,
            };
            return HelperInstance {
                dir: helper,
                env,
                exec,
                daemon,
            };
        }
        let stderr = std::fs::read_to_string(dir.join("daemon.stderr")).unwrap_or_default();
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        if exited.is_none() {
            let _ = child.kill();
        }
        // Reaps the killed daemon; an exited one was reaped by try_wait.
        let _ = child.wait();
        if exited.is_none() {
            panic!("the helper daemon {exec:?} did not serve within 10 s:\n{stderr}{log_text}");
        }
        if !(stderr + &log_text).contains("cannot listen") {
            panic!(
                "the helper daemon {exec:?} exited with {:?}:\n{}{log_text}",
                exited,
                std::fs::read_to_string(dir.join("daemon.stderr")).unwrap_or_default()
            );
        }
        port = free_port();
    }
    panic!("the helper daemon found no free port in 5 tries");
}
