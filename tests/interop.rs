//! The real Debian distcc 3.4 client compiling through a distcc-rs daemon.

mod common;

use common::daemon::{distcc, need, Daemon, DaemonOptions, TestDir};
use std::process::Command;

fn local_compile(dir: &TestDir, compiler: &str, src: &str, out: &str) {
    let status = Command::new(compiler)
        .args(["-c", src, "-o", out])
        .current_dir(&dir.path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn c_objects_are_identical_to_local_over_protocols_1_and_2() {
    need("gcc", "gcc");
    let daemon = Daemon::start("interop-c", DaemonOptions::default());
    let work = TestDir::new("interop-c-client");
    work.write(
        "hello.c",
        "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n",
    );
    local_compile(&work, "gcc", "hello.c", "local.o");
    for lzo in [false, true] {
        let out = distcc(
            &work.path,
            &daemon.host(lzo),
            &["gcc", "-c", "hello.c", "-o", "remote.o"],
            &[],
        );
        assert!(
            out.status.success(),
            "distcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(work.join("remote.o")).unwrap(),
            std::fs::read(work.join("local.o")).unwrap(),
            "object differs (lzo={lzo})"
        );
    }
    let log = daemon.log();
    assert_eq!(log.matches("COMPILE_OK").count(), 2, "{log}");
    assert!(
        daemon.leftovers().is_empty(),
        "job directories left: {:?}",
        daemon.leftovers()
    );
}
