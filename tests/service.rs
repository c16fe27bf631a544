//! The service files and `distcc-rs wrap`: the contrib systemd units and
//! rc.d script, the files wrap writes, and daemons started the way systemd
//! and OpenBSD's rc.subr start them.

use crate::common;

use common::daemon::{bin, client, need, Daemon};
use common::TestDir;
use common::{free_port, local_object, manifest_dir, text, wait_until};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const TRIPLE: &str = "powerpc-unknown-openbsd";

/// A C file that needs no system headers: there are no OpenBSD headers here.
const SOURCE: &str = "int triple(int x) { return 3 * x + 1; }\n";

/// A `bin` directory in `dir` standing in for @BINDIR@: distcc-rs and its
/// distccd link, as `make install` makes them.
fn bin_dir(dir: &TestDir) -> PathBuf {
    let bindir = dir.join("bin");
    if !bindir.exists() {
        std::fs::create_dir_all(&bindir).unwrap();
        std::os::unix::fs::symlink(bin(), bindir.join("distcc-rs")).unwrap();
        std::os::unix::fs::symlink("distcc-rs", bindir.join("distccd")).unwrap();
    }
    bindir
}

/// A contrib file with @BINDIR@ replaced, written into `dir` under its own name.
fn contrib(dir: &TestDir, rel: &str) -> PathBuf {
    let body = std::fs::read_to_string(manifest_dir().join("contrib").join(rel)).unwrap();
    let name = Path::new(rel).file_name().unwrap().to_str().unwrap();
    let path = dir.write(
        name,
        body.replace("@BINDIR@", bin_dir(dir).to_str().unwrap()),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A masquerade directory whitelisting gcc under the names our client sends.
fn masquerade_dir(dir: &TestDir) -> PathBuf {
    let masq = dir.join("masq");
    std::fs::create_dir_all(&masq).unwrap();
    for name in ["gcc", "x86_64-linux-gnu-gcc"] {
        std::os::unix::fs::symlink(bin(), masq.join(name)).unwrap();
    }
    masq
}

/// Waits (up to 15 s) until something listens on `port`; `log` is shown on failure.
fn wait_for_port(port: u16, what: &str, log: &Path) {
    assert!(
        wait_until(Duration::from_secs(15), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "{what} is not listening on port {port} after 15s; its output:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Runs `distcc-rs wrap ARGS`.
fn wrap(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("wrap")
        .args(args)
        .output()
        .expect("run distcc-rs wrap")
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `wrap --target TRIPLE --compiler CLANG --dir DIR EXTRA...`.
fn wrap_into(dir: &Path, extra: &[&str]) -> Output {
    let clang = need("clang", "clang");
    let mut args = vec![
        "--target",
        TRIPLE,
        "--compiler",
        clang.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    wrap(&args)
}

/// Everything under `root`: each path with its kind, mode and contents (or
/// link target), for comparing a tree before and after.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &path, out);
                format!("dir {mode:o}")
            } else {
                format!("file {mode:o} {:?}", text(&std::fs::read(&path).unwrap()))
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The `Environment="K=V"` and `ExecStart=` lines of a unit: the program,
/// its arguments and its environment.
fn unit_command(unit: &str) -> (PathBuf, Vec<OsString>, Vec<(String, String)>) {
    let mut env = Vec::new();
    let mut exec = None;
    for line in unit.lines() {
        if let Some(kv) = line.strip_prefix("Environment=") {
            let kv = kv.trim_matches('"');
            let (k, v) = kv.split_once('=').expect("Environment=\"K=V\"");
            env.push((k.to_string(), v.to_string()));
        } else if let Some(cmd) = line.strip_prefix("ExecStart=") {
            assert!(exec.is_none(), "two ExecStart= lines");
            exec = Some(cmd.to_string());
        }
    }
    let exec = exec.expect("no ExecStart= line");
    let mut words = exec.split_whitespace();
    let program = PathBuf::from(words.next().unwrap());
    (program, words.map(OsString::from).collect(), env)
}

/// Checks that an object is a 32-bit big-endian PowerPC ELF relocatable.
fn assert_powerpc_object(object: &Path) {
    let readelf = need("readelf", "binutils");
    let out = Command::new(readelf)
        .arg("-h")
        .arg(object)
        .output()
        .unwrap();
    assert_ok(&out, "readelf -h");
    let header = text(&out.stdout);
    for want in [
        "ELF32",
        "2's complement, big endian",
        "REL (Relocatable file)",
        "PowerPC",
    ] {
        assert!(
            header.contains(want),
            "{} is not a 32-bit big-endian PowerPC relocatable ({want} missing):\n{header}",
            object.display()
        );
    }
}

/// Compiles `SOURCE` with `cc -c x.c` through the distcc-rs client, with
/// the wrappers in `wrappers` first on PATH (so that the client preprocesses
/// with `clang --target=TRIPLE` too) and no fallback to a local compile.
fn compile_for_powerpc(cwd: &Path, port: u16, wrappers: &Path) {
    std::fs::write(cwd.join("x.c"), SOURCE).unwrap();
    let path = format!(
        "{}:{}",
        wrappers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = client(
        cwd,
        &format!("127.0.0.1:{port}/4"),
        &["cc", "-c", "x.c", "-o", "x.o"],
        &[("PATH", path.as_str()), ("DISTCC_FALLBACK", "0")],
    );
    assert_ok(&out, "distcc-rs cc -c x.c");
    assert_powerpc_object(&cwd.join("x.o"));
}

/// A process killed (and reaped) when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `systemd-analyze verify` on unit files; fails on any complaint.
fn verify_units(units: &[&Path]) {
    let analyze = need("systemd-analyze", "systemd");
    let out = Command::new(analyze)
        .arg("verify")
        .args(units)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {units:?} ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn contrib_units_pass_systemd_analyze_verify() {
    let dir = TestDir::new("service-verify");
    let service = contrib(&dir, "systemd/distcc-rs.service");
    let socket = contrib(&dir, "systemd/distcc-rs.socket");
    std::fs::set_permissions(&service, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o644)).unwrap();
    verify_units(&[&service, &socket]);
}

#[test]
fn the_unit_wrap_writes_passes_systemd_analyze_verify() {
    let dir = TestDir::new("service-wrap-verify");
    let helper = dir.join("helper");
    assert_ok(&wrap_into(&helper, &["--stats-port", "3640"]), "wrap");
    verify_units(&[&helper.join(format!("distcc-rs-{TRIPLE}.service"))]);
}

/// `sh -n` and `mksh -n` (the pdksh descendant closest to OpenBSD's ksh).
fn syntax_check(script: &Path) {
    let mksh = need("mksh", "mksh");
    for shell in [PathBuf::from("/bin/sh"), mksh] {
        let out = Command::new(&shell).arg("-n").arg(script).output().unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{} -n {}: {}",
            shell.display(),
            script.display(),
            text(&out.stderr)
        );
    }
}

#[test]
fn rc_scripts_pass_sh_and_ksh_syntax_checks() {
    let dir = TestDir::new("service-rc-syntax");
    syntax_check(&contrib(&dir, "rc.d/distccd"));
    let helper = dir.join("helper");
    assert_ok(&wrap_into(&helper, &[]), "wrap");
    syntax_check(&helper.join("rc.d/distccd_powerpc_unknown_openbsd"));
    syntax_check(&manifest_dir().join("tests/fixtures/rc.subr"));
}

/// Runs an rc.d script's action under mksh with the fake rc.subr in place
/// of /etc/rc.d/rc.subr. Its output goes through files, not pipes: the
/// daemon it starts inherits copies of the shell's saved descriptors, and
/// would hold a pipe open (and `output()` waiting) for as long as it runs.
fn rc(script: &Path, action: &str, env: &[(&str, &str)]) -> Output {
    let mksh = need("mksh", "mksh");
    need("pgrep", "procps");
    let dir = script.parent().unwrap();
    let (out_path, err_path) = (dir.join(".rc.stdout"), dir.join(".rc.stderr"));
    let status = Command::new(mksh)
        .arg(script)
        .arg(action)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

/// Copies an rc.d script into `dir` under the same name, sourcing the fake rc.subr.
fn with_fake_rc_subr(dir: &TestDir, script: &Path) -> PathBuf {
    let body = std::fs::read_to_string(script).unwrap();
    assert!(body.contains(". /etc/rc.d/rc.subr\n"));
    let fake = manifest_dir().join("tests/fixtures/rc.subr");
    let name = script.file_name().unwrap().to_str().unwrap();
    let path = dir.write(
        &format!("etc-rc.d/{name}"),
        body.replace("/etc/rc.d/rc.subr", fake.to_str().unwrap()),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// start, check, a running daemon, stop, check again; `serve` runs while
/// it is up. `log` is the daemon's output (FAKE_RC_LOG), shown on failure.
fn start_check_stop(
    script: &Path,
    env: &[(&str, &str)],
    log: &Path,
    port: u16,
    serve: impl FnOnce(),
) {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let out = rc(script, "check", env);
    assert!(!out.status.success(), "check before start succeeded");
    let out = rc(script, "start", env);
    assert_ok(&out, &format!("rc.d start; daemon output:\n{}", log_text()));
    // Whatever happens next, the daemon must not outlive the test.
    struct Stop<'a>(&'a Path, &'a [(&'a str, &'a str)]);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = rc(self.0, "stop", self.1);
        }
    }
    let _stop = Stop(script, env);
    wait_for_port(port, "the daemon started by rc.d", log);
    let out = rc(script, "check", env);
    assert_ok(&out, &format!("rc.d check; daemon output:\n{}", log_text()));
    serve();
    assert_ok(&rc(script, "stop", env), "rc.d stop");
    let out = rc(script, "check", env);
    assert!(!out.status.success(), "check after stop succeeded");
}

#[test]
fn contrib_rc_script_starts_checks_and_stops_its_daemon() {
    let dir = TestDir::new("service-rc-contrib");
    let script = with_fake_rc_subr(&dir, &contrib(&dir, "rc.d/distccd"));
    let masq = masquerade_dir(&dir);
    let port = free_port();
    // rc.conf.local's distccd_flags, as rcctl set distccd flags writes them.
    let flags = format!(
        "--allow 127.0.0.1 --listen 127.0.0.1 --port {port} --masquerade-dir {} --lifetime 120 --log-stderr",
        masq.display()
    );
    let log = dir.join("daemon.log");
    let env = [
        ("distccd_flags", flags.as_str()),
        ("FAKE_RC_LOG", log.to_str().unwrap()),
    ];
    start_check_stop(&script, &env, &log, port, || {
        let work = dir.shared_dir("work");
        std::fs::write(work.join("x.c"), SOURCE).unwrap();
        let out = client(
            &work,
            &format!("127.0.0.1:{port}/4"),
            &["gcc", "-c", "x.c"],
            &[("DISTCC_FALLBACK", "0")],
        );
        assert_ok(&out, "distcc-rs gcc -c x.c");
        assert_eq!(
            std::fs::read(work.join("x.o")).unwrap(),
            local_object(&work, "x.c")
        );
    });
}

#[test]
fn wrap_rc_script_runs_a_daemon_with_the_wrappers() {
    let dir = TestDir::new("service-rc-wrap");
    let helper = dir.join("helper");
    let port = free_port();
    let port_text = port.to_string();
    assert_ok(
        &wrap_into(&helper, &["--port", &port_text, "--allow", "127.0.0.1"]),
        "wrap",
    );
    let script = with_fake_rc_subr(&dir, &helper.join("rc.d/distccd_powerpc_unknown_openbsd"));
    let log = dir.join("daemon.log");
    let env = [
        (
            "distccd_powerpc_unknown_openbsd_flags",
            "--allow 127.0.0.1 --lifetime 120 --log-stderr",
        ),
        ("FAKE_RC_LOG", log.to_str().unwrap()),
    ];
    start_check_stop(&script, &env, &log, port, || {
        let work = dir.shared_dir("work");
        compile_for_powerpc(&work, port, &helper.join("bin"));
    });
}

#[test]
fn socket_activated_daemon_from_the_contrib_unit_serves_a_job() {
    let activate = need("systemd-socket-activate", "systemd");
    let dir = TestDir::new("service-socket");
    let unit = std::fs::read_to_string(contrib(&dir, "systemd/distcc-rs.service")).unwrap();
    let (program, args, _) = unit_command(&unit);
    let masq = masquerade_dir(&dir);
    let tmp = dir.shared_dir("daemon-tmp");
    // DISTCC_ARGS, as /etc/default/distcc-rs would set it.
    let distcc_args = format!(
        "--allow 127.0.0.1 --masquerade-dir {} --lifetime 120",
        masq.display()
    );
    let mut words: Vec<String> = Vec::new();
    for arg in &args {
        if arg == "$DISTCC_ARGS" {
            words.extend(distcc_args.split_whitespace().map(String::from));
        } else {
            words.push(arg.to_str().unwrap().to_string());
        }
    }
    assert!(
        words.iter().any(|w| w == "--no-detach") && words.iter().any(|w| w == "--log-stderr"),
        "the contrib unit's daemon must stay in the foreground and log to stderr: {words:?}"
    );
    let port = free_port();
    let log = dir.join("activate.log");
    let daemon = Reaped(
        Command::new(activate)
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg(format!("--setenv=TMPDIR={}", tmp.display()))
            .arg("--setenv=PATH")
            .arg(&program)
            .args(&words)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start systemd-socket-activate"),
    );
    wait_for_port(port, "systemd-socket-activate", &log);
    let work = dir.shared_dir("work");
    std::fs::write(work.join("x.c"), SOURCE).unwrap();
    let out = client(
        &work,
        &format!("127.0.0.1:{port}/4"),
        &["gcc", "-c", "x.c"],
        &[("DISTCC_FALLBACK", "0")],
    );
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_ok(
        &out,
        &format!("distcc-rs gcc -c x.c; daemon log:\n{log_text}"),
    );
    assert_eq!(
        std::fs::read(work.join("x.o")).unwrap(),
        local_object(&work, "x.c")
    );
    assert!(
        log_text.contains("socket activation") && log_text.contains("COMPILE_OK"),
        "the daemon did not serve the job on the activated socket:\n{log_text}"
    );
    drop(daemon);
}

#[test]
fn a_daemon_started_from_the_wrap_unit_compiles_for_powerpc_openbsd() {
    let dir = TestDir::new("service-wrap-unit");
    let helper = dir.join("helper");
    assert_ok(&wrap_into(&helper, &[]), "wrap");
    let unit = std::fs::read_to_string(helper.join(format!("distcc-rs-{TRIPLE}.service"))).unwrap();
    let (program, args, env) = unit_command(&unit);
    assert_eq!(
        std::fs::canonicalize(&program).unwrap(),
        std::fs::canonicalize(bin()).unwrap(),
        "ExecStart must name the distcc-rs that wrote the unit"
    );
    assert!(env
        .iter()
        .any(|(k, v)| k == "DISTCC_CMDLIST" && Path::new(v) == helper.join("commands.allow")));
    let work = dir.shared_dir("work");
    let wrappers = helper.join("bin");
    // The unit's port is 3632; socket activation hands the daemon a free one instead.
    let daemon = Daemon::launch(dir, &program, &args, &env, false);
    compile_for_powerpc(&work, daemon.port, &wrappers);
    let log = daemon.log();
    assert!(
        log.contains("COMPILE_OK") && log.contains(&format!("{}/cc", wrappers.display())),
        "the job did not run the cc wrapper on the daemon:\n{log}"
    );
}

#[test]
fn the_cc_wrapper_makes_a_powerpc_object_from_a_preprocessed_file() {
    let dir = TestDir::new("service-wrap-cc");
    let helper = dir.join("helper");
    assert_ok(&wrap_into(&helper, &[]), "wrap");
    dir.write("x.c", SOURCE);
    let cc = helper.join("bin/cc");
    let out = Command::new(&cc)
        .args(["-E", "x.c", "-o", "x.i"])
        .current_dir(&dir.path)
        .output()
        .unwrap();
    assert_ok(&out, "cc -E x.c");
    let out = Command::new(&cc)
        .args(["-c", "x.i", "-o", "x.o"])
        .current_dir(&dir.path)
        .output()
        .unwrap();
    assert_ok(&out, "cc -c x.i");
    assert_powerpc_object(&dir.join("x.o"));
}

#[test]
fn a_dry_run_changes_nothing() {
    let dir = TestDir::new("service-wrap-dry");
    dir.write("other/file", "not wrap's");
    let before = snapshot(&dir.path);
    let out = wrap_into(&dir.join("helper"), &["--dry-run"]);
    assert_ok(&out, "wrap --dry-run");
    assert!(text(&out.stdout).contains("would create"));
    assert_eq!(
        snapshot(&dir.path),
        before,
        "a dry run into a new DIR wrote"
    );
    // Over an instance that is there, with other options.
    assert_ok(&wrap_into(&dir.join("helper"), &[]), "wrap");
    let before = snapshot(&dir.path);
    let out = wrap_into(&dir.join("helper"), &["--dry-run", "--port", "3700"]);
    assert_ok(&out, "wrap --dry-run --port 3700");
    assert!(text(&out.stdout).contains("would update"));
    assert_eq!(
        snapshot(&dir.path),
        before,
        "a dry run over an instance wrote"
    );
    let out = wrap_into(&dir.join("helper"), &["--dry-run", "--remove"]);
    assert_ok(&out, "wrap --dry-run --remove");
    assert_eq!(snapshot(&dir.path), before, "a dry run of --remove removed");
}

#[test]
fn running_wrap_twice_gives_the_same_files() {
    let dir = TestDir::new("service-wrap-twice");
    let helper = dir.join("helper");
    assert_ok(&wrap_into(&helper, &[]), "wrap");
    let first = snapshot(&dir.path);
    let out = wrap_into(&helper, &[]);
    assert_ok(&out, "wrap again");
    assert_eq!(snapshot(&dir.path), first);
    assert!(
        text(&out.stdout).contains("Nothing changed"),
        "{}",
        text(&out.stdout)
    );
    // The files, with the modes the contract fixes.
    let mode = |rel: &str| {
        std::fs::symlink_metadata(helper.join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .permissions()
            .mode()
            & 0o7777
    };
    for name in ["cc", "c++", "clang", "clang++", "clang-cpp"] {
        assert_eq!(mode(&format!("bin/{name}")), 0o755, "bin/{name}");
    }
    for suffix in ["clang", "clang++"] {
        assert_eq!(mode(&format!("bin/{TRIPLE}-{suffix}")), 0o755);
    }
    assert_eq!(mode("commands.allow"), 0o644);
    assert_eq!(mode(&format!("distcc-rs-{TRIPLE}.service")), 0o644);
    assert_eq!(mode("rc.d/distccd_powerpc_unknown_openbsd"), 0o755);
    // Every commands.allow line is a wrapper, by absolute path.
    let allow = std::fs::read_to_string(helper.join("commands.allow")).unwrap();
    for line in allow.lines() {
        assert!(Path::new(line).starts_with(helper.join("bin")), "{line}");
        assert!(Path::new(line).is_file(), "{line}");
    }
}

#[test]
fn remove_leaves_nothing_behind() {
    let dir = TestDir::new("service-wrap-remove");
    dir.write("other/file", "not wrap's");
    let before = snapshot(&dir.path);
    let helper = dir.join("deep/helper");
    assert_ok(&wrap_into(&helper, &[]), "wrap");
    let out = wrap_into(&helper, &["--remove"]);
    assert_ok(&out, "wrap --remove");
    assert_eq!(snapshot(&dir.path), before, "--remove left something");
    let out = wrap_into(&helper, &["--remove"]);
    assert_ok(&out, "a second wrap --remove");
    // A DIR that was there before keeps what else is in it.
    let shared = dir.join("shared");
    dir.write("shared/notes", "mine");
    let before = snapshot(&dir.path);
    assert_ok(&wrap_into(&shared, &[]), "wrap into a DIR that exists");
    assert_ok(&wrap_into(&shared, &["--remove"]), "wrap --remove");
    assert_eq!(snapshot(&dir.path), before);
}

#[test]
fn a_real_compiler_is_never_overwritten_without_force() {
    let dir = TestDir::new("service-wrap-foreign");
    let helper = dir.join("helper");
    std::fs::create_dir_all(helper.join("bin")).unwrap();
    let foreign = helper.join("bin/cc");
    std::fs::copy("/usr/bin/true", &foreign).unwrap();
    let before = snapshot(&dir.path);
    let out = wrap_into(&helper, &[]);
    assert!(!out.status.success(), "wrap replaced a foreign cc");
    assert!(
        text(&out.stderr).contains(foreign.to_str().unwrap()),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(snapshot(&dir.path), before, "the refusal wrote something");
    // Nor one changed since wrap wrote it, nor on --remove.
    assert_ok(&wrap_into(&helper, &["--force"]), "wrap --force");
    let mut script = std::fs::read_to_string(helper.join("bin/clang")).unwrap();
    script.push_str("# local change\n");
    std::fs::write(helper.join("bin/clang"), &script).unwrap();
    let before = snapshot(&dir.path);
    assert!(!wrap_into(&helper, &[]).status.success());
    assert!(!wrap_into(&helper, &["--remove"]).status.success());
    assert_eq!(snapshot(&dir.path), before, "a refusal wrote or removed");
    assert_ok(&wrap_into(&helper, &["--force"]), "wrap --force");
    assert_ok(&wrap_into(&helper, &["--remove"]), "wrap --remove");
    // What is left is what the test made: helper/bin, now empty.
    let left: Vec<PathBuf> = snapshot(&helper).into_keys().collect();
    assert_eq!(left, vec![PathBuf::from("bin")], "--remove left files");
}

#[test]
fn force_never_writes_through_a_symlink() {
    let dir = TestDir::new("service-wrap-symlink");
    let helper = dir.join("helper");
    std::fs::create_dir_all(helper.join("bin")).unwrap();
    let victim = dir.write("victim", "precious");
    std::os::unix::fs::symlink(&victim, helper.join("bin/clang")).unwrap();
    assert!(!wrap_into(&helper, &[]).status.success());
    assert_ok(&wrap_into(&helper, &["--force"]), "wrap --force");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(helper.join("bin/clang"))
        .unwrap()
        .is_file());
    // A DIR/bin that is a link to another directory is refused even with --force.
    let other = dir.join("other");
    std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::os::unix::fs::symlink(dir.join("elsewhere"), other.join("bin")).unwrap();
    let before = snapshot(&dir.path);
    let out = wrap_into(&other, &["--force"]);
    assert!(
        !out.status.success(),
        "wrap wrote through DIR/bin -> elsewhere"
    );
    assert_eq!(snapshot(&dir.path), before);
}

#[test]
fn a_compiler_that_is_distcc_is_refused() {
    let dir = TestDir::new("service-wrap-self");
    let out = wrap(&[
        "--target",
        TRIPLE,
        "--compiler",
        bin(),
        "--dir",
        dir.join("helper").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("distcc"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("helper").exists());
}
