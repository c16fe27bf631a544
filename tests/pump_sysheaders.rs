//! Pump mode's `,sysheaders`: the client's system headers go to the helper by hash and are kept in the daemon's store, so a helper that lacks the client's sysroot compiles as the client would, and the second build sends no header bodies.
//!
//! The cross test runs the daemon in a mount namespace of its own with a
//! tmpfs over the powerpc sysroot, so its compiler cannot see the client's
//! headers; the client is the static powerpc build under qemu-user. The
//! protocol tests speak to the daemon byte by byte: a client that lies
//! about a header's hash is refused and does not poison the store.

use crate::common;

use common::cross::{run_bounded, SlowMachine, POWERPC};
use common::daemon::{bin, need, Daemon, DaemonOptions, TestDir};
use common::text;
use distcc_rs::proto;
use distcc_rs::sysheaders;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// The client's source: system headers with inline code, macros that
/// expand to `__FILE__`, and types that `-g` describes from the headers.
const MAIN_C: &str = r#"#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct pair { uint32_t a; size_t b; };

int main(int argc, char **argv)
{
    struct pair p = { 0x01020304u, strlen(argv[0]) };
    assert(argc > 0);
    printf("%s %d %u %zu\n", __FILE__, toupper('a'), p.a, p.b);
    return 0;
}
"#;

/// The client's cc: clang for powerpc with the powerpc sysroot.
fn cross_cc(machine: &SlowMachine) {
    machine.cc(&format!(
        "exec clang --target={} --sysroot={} \"$@\"",
        POWERPC.gnu_triple,
        POWERPC.sysroot().display()
    ));
}

/// Our daemon in a mount namespace where a tmpfs hides `hidden`; its `cc`
/// is clang for powerpc (an amd64 compiler, as on a helper).
fn daemon_without(hidden: &Path) -> Daemon {
    need("unshare", "util-linux");
    let dir = TestDir::new("sysh-daemon");
    let masq = dir.join("masq");
    std::fs::create_dir_all(&masq).unwrap();
    std::os::unix::fs::symlink(bin(), masq.join("cc")).unwrap();
    let server_bin = dir.shared_dir("server-bin");
    dir.script(
        "server-bin/cc",
        &format!("exec clang --target={} \"$@\"", POWERPC.gnu_triple),
    );
    let mount = format!(
        "mount -t tmpfs -o size=1m,mode=0755 tmpfs '{}' && exec \"$0\" \"$@\"",
        hidden.display()
    );
    let args: Vec<OsString> = [
        "-m",
        "sh",
        "-c",
        &mount,
        bin(),
        "daemon",
        "--no-detach",
        "--log-stderr",
        "--allow",
        "127.0.0.1",
        "--masquerade-dir",
    ]
    .iter()
    .map(OsString::from)
    .chain([masq.into_os_string()])
    .collect();
    let path = std::env::var("PATH").unwrap_or_default();
    let env = [(
        "DISTCCD_PATH".to_string(),
        format!("{}:{path}", server_bin.display()),
    )];
    Daemon::launch(dir, Path::new("unshare"), &args, &env, false)
}

/// `distcc-rs pump distcc-rs cc ARGS`, both under qemu on the slow machine.
fn pump_on(machine: &SlowMachine, hosts: &str, args: &[&str]) -> Output {
    let bin = machine.bin.to_str().unwrap();
    let command = [&["pump", POWERPC.qemu, bin, "cc"][..], args].concat();
    let env = [
        ("DISTCC_VERBOSE", "1"),
        ("DISTCC_FALLBACK", "0"),
        ("DISTCC_MAX_DISCREPANCY", "100"),
        ("DISTCC_BACKOFF_PERIOD", "0"),
    ];
    let mut cmd = machine.distcc_rs(hosts, &command, &env);
    cmd.env_remove("INCLUDE_SERVER_PORT")
        .env_remove("CPATH")
        .env_remove("C_INCLUDE_PATH");
    run_bounded(cmd, Duration::from_secs(180))
}

/// The `(from the store, bodies received)` of each job the daemon logged.
fn header_lines(daemon: &Daemon) -> Vec<(usize, usize)> {
    daemon
        .log()
        .lines()
        .filter_map(|l| {
            let rest = l.split_once("system headers for main.c: ")?.1;
            let (stored, rest) = rest.split_once(" from the store, ")?;
            let received = rest.strip_suffix(" bodies received")?;
            Some((stored.parse().ok()?, received.parse().ok()?))
        })
        .collect()
}

/// The slow machine's own compile, for comparison.
fn local_cross(machine: &SlowMachine, args: &[&str], out: &str) -> Vec<u8> {
    let run = Command::new(machine.dir.join("bin/cc"))
        .args(args)
        .args(["-o", out])
        .current_dir(&machine.dir.path)
        .output()
        .unwrap();
    assert!(run.status.success(), "local cc: {}", text(&run.stderr));
    std::fs::read(machine.dir.join(out)).unwrap()
}

fn assert_ok(out: &Output, what: &str, daemon: &Daemon) {
    assert!(
        out.status.success(),
        "{what} exited with {}:\n{}\ndaemon log:\n{}",
        out.status,
        text(&out.stderr),
        daemon.log()
    );
}

#[test]
fn a_powerpc_client_sends_its_system_headers_once_to_a_helper_without_them() {
    let machine = SlowMachine::new(&POWERPC, "sysh-client");
    cross_cc(&machine);
    machine.dir.write("main.c", MAIN_C);
    let mut daemon = daemon_without(&POWERPC.sysroot());
    let port = daemon.port;

    // Plain pump mode: the helper's own sysroot is hidden, so its compiler
    // finds no powerpc headers (it falls back on the amd64 /usr/include)
    // and fails; without fallbacks the client then fails too.
    let plain = pump_on(
        &machine,
        &format!("127.0.0.1:{port}/2,cpp,lzo"),
        &["-c", "main.c", "-o", "plain.o"],
    );
    let stderr = text(&plain.stderr);
    assert!(
        !plain.status.success()
            && stderr.contains("file not found")
            && daemon
                .log()
                .contains("COMPILE_ERROR in pump mode (protocol 3): main.c"),
        "plain pump mode worked on a helper without the sysroot:\n{stderr}\n{}",
        daemon.log()
    );
    assert!(header_lines(&daemon).is_empty());

    // With ,sysheaders: the headers go by hash, then from the store.
    let hosts = format!("127.0.0.1:{port}/2,cpp,lzo,sysheaders");
    let want = local_cross(&machine, &["-c", "main.c"], "local.o");
    for out in ["first.o", "second.o"] {
        let run = pump_on(&machine, &hosts, &["-c", "main.c", "-o", out]);
        assert_ok(&run, out, &daemon);
        let got = std::fs::read(machine.dir.join(out)).unwrap();
        assert!(got == want, "{out} differs from the local cross compile");
    }
    let want_g = local_cross(&machine, &["-g", "-c", "main.c"], "local-g.o");
    let run = pump_on(&machine, &hosts, &["-g", "-c", "main.c", "-o", "g.o"]);
    assert_ok(&run, "g.o", &daemon);
    assert!(
        std::fs::read(machine.dir.join("g.o")).unwrap() == want_g,
        "-g differs"
    );

    let jobs = header_lines(&daemon);
    assert_eq!(jobs.len(), 3, "{}", daemon.log());
    let (stored, received) = jobs[0];
    assert!(stored == 0 && received > 10, "first build: {jobs:?}");
    assert_eq!(
        jobs[1],
        (received, 0),
        "the second build sent header bodies"
    );
    assert_eq!(jobs[2], (received, 0), "the -g build sent header bodies");
    let ok = daemon.log().matches("COMPILE_OK in pump mode").count();
    assert_eq!(ok, 3, "{}", daemon.log());

    // The store lives in the daemon's TMPDIR, and goes with the daemon.
    let stores = || {
        daemon
            .leftovers()
            .into_iter()
            .filter(|n| n.starts_with("distccd-headers."))
            .count()
    };
    assert_eq!(stores(), 1, "{:?}", daemon.leftovers());
    assert!(daemon.terminate().success());
    assert_eq!(daemon.leftovers(), Vec::<String>::new());
}

/// A v3 request for `cc -c t.c` whose source includes `<h.h>`, sent by hash.
fn header_request(hash: &sysheaders::Hash) -> Vec<u8> {
    let source = distcc_rs::lzo::compress(b"#include <h.h>\nint x = V;\n");
    let argv: [&[u8]; 9] = [
        b"cc",
        b"-c",
        b"t.c",
        b"-o",
        b"t.o",
        b"-nostdinc",
        b"-isystem",
        b"/sys/inc",
        b"-w",
    ];
    let files = [
        proto::PumpEntry::File {
            name: b"/home/u/t.c",
            lzo: &source,
        },
        proto::PumpEntry::Header {
            name: b"/sys/inc/h.h",
            hash,
        },
    ];
    proto::encode_pump_request(b"/home/u", &argv, &files)
}

/// Sends `request`, reads `NEED` for one header, sends `body` if it is
/// asked for, and returns (whether it was, the reply).
fn exchange_one_header(daemon: &Daemon, request: &[u8], body: &[u8]) -> (bool, Vec<u8>) {
    let mut conn = daemon.connect();
    conn.write_all(request).unwrap();
    let mut need = [0u8; proto::HEADER_LEN + 1];
    conn.read_exact(&mut need).unwrap();
    let needed = sysheaders::read_need(&mut &need[..], 1).unwrap()[0];
    if needed {
        let mut file = Vec::new();
        proto::put_body(&mut file, &proto::FILE, &distcc_rs::lzo::compress(body));
        conn.write_all(&file).unwrap();
    }
    let mut reply = Vec::new();
    let _ = conn.read_to_end(&mut reply);
    (needed, reply)
}

#[test]
fn a_body_that_lies_about_its_hash_is_refused_and_poisons_nothing() {
    let daemon = Daemon::start("sysh-lie", DaemonOptions::default());
    let honest = b"#define V 1\n";
    let hash = sysheaders::hash(honest);
    let request = header_request(&hash);

    let (needed, reply) = exchange_one_header(&daemon, &request, b"#define V 666\n");
    assert!(needed);
    let why = common::deny_reason(&reply).unwrap_or_else(|| panic!("{}", text(&reply)));
    assert!(why.contains("header '/sys/inc/h.h' refused"), "{why}");

    // The honest client is asked for the body again, and gets its compile.
    let (needed, reply) = exchange_one_header(&daemon, &request, honest);
    assert!(needed, "the lying body was kept");
    assert!(
        reply.starts_with(b"DONE00000003STAT00000000"),
        "{}",
        text(&reply)
    );
    // Then the store has it.
    let (needed, reply) = exchange_one_header(&daemon, &request, honest);
    assert!(!needed);
    assert!(
        reply.starts_with(b"DONE00000003STAT00000000"),
        "{}",
        text(&reply)
    );
    let log = daemon.log();
    assert!(log.contains("system headers for t.c: 0 from the store, 1 bodies received"));
    assert!(log.contains("system headers for t.c: 1 from the store, 0 bodies received"));
}

#[test]
fn a_header_name_that_breaks_the_tree_rules_is_refused_before_need() {
    let daemon = Daemon::start("sysh-name", DaemonOptions::default());
    let hash = sysheaders::hash(b"x");
    let argv: [&[u8]; 3] = [b"cc", b"-c", b"t.c"];
    for name in [&b"/sys/../etc/h.h"[..], b"/home/u/t.c", b"sys/h.h"] {
        let files = [
            proto::PumpEntry::File {
                name: b"/home/u/t.c",
                lzo: b"",
            },
            proto::PumpEntry::Header { name, hash: &hash },
        ];
        let reply = daemon.exchange(&proto::encode_pump_request(b"/home/u", &argv, &files));
        let why = common::deny_reason(&reply).unwrap_or_else(|| panic!("{}", text(&reply)));
        assert!(why.contains("NAME"), "{why}");
    }
}
