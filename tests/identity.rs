//! The compiler identity check over the channel (docs/trust.md): a helper
//! whose gcc says it is another version is not used for gcc jobs and the
//! client's warning names both sides; `DISTCC_RS_ACCEPT_COMPILER` accepts
//! it; a wrap-made powerpc helper is used by the powerpc client, and a
//! helper whose clang is another version is not.

use crate::common;
use crate::trust::{compile_with, generate, keyed_host, Keys, PowerpcClient};

use common::cross::{run_bounded, SlowMachine, POWERPC};
use common::daemon::{bin, client, need, Daemon, DaemonOptions};
use common::{text, TestDir};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SOURCE: &str = "int twice(int x) { return 2 * x; }\n";

/// A helper's gcc that says it is gcc 99.1.0 when asked, and otherwise is
/// gcc, leaving a mark in $MARKS each time it compiles.
const OTHER_GCC: &str = r#"case "$1" in
-v) /usr/bin/gcc -v 2>&1 | sed 's/version [0-9][0-9.]*/version 99.1.0/' >&2; exit 0;;
--version|-dumpversion|-dumpfullversion) echo 99.1.0; exit 0;;
esac
touch "$MARKS/ran.$$"; exec /usr/bin/gcc "$@""#;

fn other_gcc() -> Vec<(String, String)> {
    ["gcc", "x86_64-linux-gnu-gcc"]
        .iter()
        .map(|name| (name.to_string(), OTHER_GCC.to_string()))
        .collect()
}

/// The local gcc's version, as its `-v` says it.
fn local_gcc_version() -> String {
    let out = Command::new("gcc")
        .arg("-dumpfullversion")
        .output()
        .unwrap();
    text(&out.stdout).trim().to_string()
}

fn work_dir(name: &str) -> TestDir {
    let work = TestDir::new(name);
    work.write("x.c", SOURCE);
    work
}

#[test]
fn a_helper_whose_gcc_is_another_version_is_not_used_for_gcc_jobs() {
    let keys = Keys::new("identity-other-keys");
    let other = Daemon::start(
        "identity-other",
        DaemonOptions {
            scripts: other_gcc(),
            ..keys.daemon()
        },
    );
    let good = Daemon::start("identity-good", keys.daemon());
    let work = work_dir("identity-other-work");
    let pubkey = keys.path("server.pub");
    let hosts = format!(
        "{} {}",
        keyed_host(other.port, &pubkey, true),
        keyed_host(good.port, &pubkey, true)
    );
    let client_key = keys.path("client");
    let env = [("DISTCC_RS_KEY", client_key.as_str())];
    let first = text(&compile_with(&work, &hosts, &env, false).stderr);
    let here = format!("gcc version {}", local_gcc_version());
    assert!(
        first.contains("another compiler")
            && first.contains("gcc version 99.1.0")
            && first.contains(&here),
        "the warning must name both compilers:\n{first}"
    );
    // The first job ran there, its object thrown away; the good helper made it.
    assert_eq!(other.marks().len(), 1, "{}", other.log());
    assert_eq!(good.marks().len(), 1, "{}", good.log());
    let second = text(&compile_with(&work, &hosts, &env, false).stderr);
    assert!(
        !second.contains("another compiler"),
        "warned twice:\n{second}"
    );
    assert_eq!(other.marks().len(), 1, "a gcc job went there again");
    assert_eq!(good.marks().len(), 2, "{}", good.log());
    // Alone, the helper with the other gcc is not used: the job fails
    // without a fallback, and is compiled here with one.
    let alone = keyed_host(other.port, &pubkey, true);
    let out = client(
        &work.path,
        &alone,
        &["gcc", "-c", "x.c"],
        &[("DISTCC_RS_KEY", &client_key), ("DISTCC_FALLBACK", "0")],
    );
    assert!(!out.status.success(), "{}", text(&out.stderr));
    let _ = std::fs::remove_file(work.join("x.o"));
    let out = client(&work.path, &alone, &["gcc", "-c", "x.c"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(other.marks().len(), 1, "a gcc job went there again");
}

#[test]
fn the_powerpc_client_does_not_use_a_helper_whose_clang_is_another_version() {
    let ppc = PowerpcClient::new("identity-ppc-client", Keys::new("identity-ppc-keys"));
    let triple = POWERPC.gnu_triple;
    let other = ppc.daemon_with(
        "identity-ppc-other",
        format!(
            "if [ \"$1\" = -v ]; then clang --target={triple} -v 2>&1 | \
             sed 's/version [0-9][0-9.]*/version 99.1.0/' >&2; exit 0; fi
             touch \"$MARKS/ran.$$\"; exec clang --target={triple} \"$@\""
        ),
    );
    let good = ppc.daemon("identity-ppc-good");
    let pubkey = ppc.keys.path("server.pub");
    let hosts = format!(
        "{} {}",
        keyed_host(other.port, &pubkey, true),
        keyed_host(good.port, &pubkey, true)
    );
    let first = ppc.compile(&hosts, "client", false);
    let clang = Command::new("clang").arg("-dumpversion").output().unwrap();
    let here = format!("version {}", text(&clang.stdout).trim());
    assert!(
        first.contains("another compiler")
            && first.contains("version 99.1.0")
            && first.contains(&here),
        "the warning must name both compilers:\n{first}"
    );
    assert_eq!(other.marks().len(), 1, "{}", other.log());
    assert_eq!(good.marks().len(), 1, "{}", good.log());
    let second = ppc.compile(&hosts, "client", false);
    assert!(
        !second.contains("another compiler"),
        "warned twice:\n{second}"
    );
    assert_eq!(other.marks().len(), 1, "a cc job went there again");
    assert_eq!(good.marks().len(), 2, "{}", good.log());
}

#[test]
fn with_the_variable_a_helper_with_another_gcc_is_used() {
    let keys = Keys::new("identity-accept-keys");
    let other = Daemon::start(
        "identity-accept",
        DaemonOptions {
            scripts: other_gcc(),
            ..keys.daemon()
        },
    );
    let work = work_dir("identity-accept-work");
    let hosts = keyed_host(other.port, &keys.path("server.pub"), true);
    let client_key = keys.path("client");
    let env = [
        ("DISTCC_RS_KEY", client_key.as_str()),
        ("DISTCC_RS_ACCEPT_COMPILER", "elsewhere,127.0.0.1"),
    ];
    let first = text(&compile_with(&work, &hosts, &env, false).stderr);
    assert!(
        first.contains("gcc version 99.1.0") && first.contains("anyway"),
        "{first}"
    );
    let second = text(&compile_with(&work, &hosts, &env, false).stderr);
    assert!(
        !second.contains("another compiler"),
        "warned twice:\n{second}"
    );
    assert_eq!(other.marks().len(), 2, "{}", other.log());
}

/// `distcc-rs wrap` for powerpc with a key, into `helper`; the client key
/// `client_line` accepted.
fn wrap_powerpc(helper: &Path, client_line: &str) {
    let user = text(&Command::new("id").arg("-un").output().unwrap().stdout);
    let out = Command::new(bin())
        .args(["wrap", "--target", POWERPC.gnu_triple, "--key", "--user"])
        .arg(user.trim())
        .arg("--compiler")
        .arg(need("clang", "clang"))
        .arg("--dir")
        .arg(helper)
        .output()
        .unwrap();
    assert!(out.status.success(), "wrap: {}", text(&out.stderr));
    let auth = helper.join("auth-keys");
    let mut keys = std::fs::read_to_string(&auth).unwrap_or_default();
    keys.push_str(&format!("{client_line}\n"));
    std::fs::write(&auth, keys).unwrap();
}

#[test]
fn a_wrap_made_powerpc_helper_is_used_by_the_powerpc_client() {
    let dir = TestDir::new("identity-wrap");
    let helper = dir.join("helper");
    let client_line = generate(&dir.join("client"));
    wrap_powerpc(&helper, &client_line);
    let path = std::env::var("PATH").unwrap_or_default();
    let daemon = Daemon::start(
        "identity-wrap-daemon",
        DaemonOptions {
            masquerade: Vec::new(),
            args: ["--key", "--auth-keys"]
                .iter()
                .zip(["key", "auth-keys"])
                .flat_map(|(flag, file)| {
                    [flag.to_string(), helper.join(file).display().to_string()]
                })
                .collect(),
            env: vec![
                (
                    "DISTCC_CMDLIST".into(),
                    helper.join("commands.allow").display().to_string(),
                ),
                (
                    "DISTCCD_PATH".into(),
                    format!("{}:{path}", helper.join("bin").display()),
                ),
            ],
            ..DaemonOptions::default()
        },
    );
    let triple = POWERPC.gnu_triple;
    let machine = SlowMachine::new(&POWERPC, "identity-wrap-client");
    // Another build of the same clang, as on a real powerpc machine: it
    // matches a wrap-made helper (same target, same major version), not
    // a helper that is a plain compiler.
    machine.cc(&format!(
        "case \"$1\" in -v) clang --target={triple} -v 2>&1 | \
         sed 's/^.*clang version \\([0-9.]*\\).*/clang version \\1 (another build)/' >&2; exit 0;; esac\n\
         exec clang --target={triple} \"$@\""
    ));
    machine.dir.write("x.c", SOURCE);
    let local = Command::new("clang")
        .args([&format!("--target={triple}"), "-c", "x.c", "-o", "local.o"])
        .current_dir(&machine.dir.path)
        .output()
        .unwrap();
    assert!(local.status.success(), "{}", text(&local.stderr));
    let host = keyed_host(
        daemon.port,
        &helper.join("key.pub").display().to_string(),
        true,
    );
    let client_key = dir.join("client").display().to_string();
    let out = run_bounded(
        machine.distcc_rs(
            &host,
            &["cc", "-c", "x.c", "-o", "x.o"],
            &[("DISTCC_FALLBACK", "0"), ("DISTCC_RS_KEY", &client_key)],
        ),
        Duration::from_secs(120),
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", daemon.log());
    assert!(!stderr.contains("another compiler"), "{stderr}");
    let got = std::fs::read(machine.dir.join("x.o")).unwrap();
    assert_eq!(got, std::fs::read(machine.dir.join("local.o")).unwrap());
    let log = daemon.log();
    assert!(
        log.contains("COMPILE_OK") && log.contains("wrap-made"),
        "the wrap-made cc did not serve the job, or did not say what it is:\n{log}"
    );
}
