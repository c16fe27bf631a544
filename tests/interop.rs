//! The real Debian distcc 3.4 client compiling through a distcc-rs daemon.
//!
//! Every remote run has `DISTCC_FALLBACK=0`, so a job the daemon did not
//! compile fails instead of being built locally, and each success is also
//! looked up in the daemon's log. Outputs are compared with a local run of
//! the same command, over protocol 1 (`host`) and protocol 2 (`host,lzo`).

use crate::common;

use common::compare::{self, summaries, summaries_at_least};
use common::daemon::{distcc, need, Daemon, DaemonOptions};
use common::TestDir;
use common::{local, text};
use std::path::Path;
use std::process::Output;

/// What a Debian client sends for `gcc` and `g++` (spec 5.8).
const GCC: &str = "x86_64-linux-gnu-gcc";
const GXX: &str = "x86_64-linux-gnu-g++";

/// Runs `distcc <args>` against the daemon only: no local fallback.
fn remote(daemon: &Daemon, cwd: &Path, lzo: bool, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec![("DISTCC_FALLBACK", "0")];
    all.extend_from_slice(env);
    distcc(cwd, &daemon.host(lzo), args, &all)
}

/// [`compare::same_as_local`] with the Debian client through our daemon,
/// which must also have removed its job directories.
fn same_as_local(
    daemon: &Daemon,
    work: &TestDir,
    args: &[&str],
    outputs: &[&str],
    program: &str,
    input: &str,
) -> Vec<String> {
    let diags = compare::same_as_local(distcc, daemon, work, args, outputs, program, input);
    daemon.assert_no_leftovers();
    diags
}

fn start(name: &str) -> (Daemon, TestDir) {
    need("gcc", "gcc");
    need("g++", "g++");
    let daemon = Daemon::start(name, DaemonOptions::default());
    let work = TestDir::new(&format!("{name}-client"));
    (daemon, work)
}

#[test]
fn c_objects_are_identical_to_local_over_protocols_1_and_2() {
    let (daemon, work) = start("interop-c");
    work.write(
        "hello.c",
        "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n",
    );
    let diags = same_as_local(
        &daemon,
        &work,
        &["gcc", "-O2", "-c", "hello.c", "-o", "hello.o"],
        &["hello.o"],
        GCC,
        "hello.c",
    );
    assert!(diags.is_empty(), "{diags:?}");
}

#[test]
fn cxx_objects_are_identical_to_local() {
    let (daemon, work) = start("interop-cxx");
    work.write(
        "vec.cc",
        "#include <vector>\n#include <string>\n#include <numeric>\n\
         template <typename T> T total(const std::vector<T>& v) {\n\
           return std::accumulate(v.begin(), v.end(), T());\n}\n\
         std::string join(const std::vector<std::string>& v) { return total(v); }\n\
         int sum(const std::vector<int>& v) { return total(v); }\n",
    );
    same_as_local(
        &daemon,
        &work,
        &["g++", "-std=c++17", "-c", "vec.cc", "-o", "vec.o"],
        &["vec.o"],
        GXX,
        "vec.cc",
    );
}

#[test]
fn warnings_reach_the_client_as_from_local_gcc() {
    let (daemon, work) = start("interop-warn");
    work.write(
        "warn.c",
        "int f(int x) {\n  int unused;\n  if (x) return 1;\n}\n\
         int g(void) { unsigned u = 1; int i = -1; return u < i; }\n",
    );
    let diags = same_as_local(
        &daemon,
        &work,
        &["gcc", "-Wall", "-Wextra", "-c", "warn.c", "-o", "warn.o"],
        &["warn.o"],
        GCC,
        "warn.c",
    );
    let warnings: Vec<_> = diags.iter().filter(|l| l.contains(": warning: ")).collect();
    assert_eq!(warnings.len(), 3, "{diags:?}");
    assert!(
        warnings.iter().any(|l| l.contains("-Wunused-variable")),
        "{diags:?}"
    );
}

#[test]
fn compile_errors_reach_the_client_as_from_local_gcc() {
    let (daemon, work) = start("interop-error");
    work.write("bad.c", "int main(void) {\n  int x = 1\n  return x;\n}\n");
    let args = ["gcc", "-c", "bad.c", "-o", "bad.o"];
    let loc = local(&work.path, &args);
    assert_eq!(loc.status.code(), Some(1), "{}", text(&loc.stderr));
    assert!(!work.join("bad.o").exists());
    let first_error = |stderr: &[u8]| {
        text(stderr)
            .lines()
            .find(|l| l.contains(": error: "))
            .map(str::to_string)
    };
    let expected = first_error(&loc.stderr).expect("local gcc printed no error");
    for lzo in [false, true] {
        let before = summaries(&daemon, "COMPILE_ERROR", GCC, "bad.c");
        // Skipping the local retry makes the client report the server's
        // result instead of compiling again to get its own.
        let out = remote(
            &daemon,
            &work.path,
            lzo,
            &args,
            &[("DISTCC_SKIP_LOCAL_RETRY", "1")],
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "lzo={lzo}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            first_error(&out.stderr).as_deref(),
            Some(expected.as_str()),
            "lzo={lzo}; client stderr:\n{}",
            text(&out.stderr)
        );
        assert!(
            !work.join("bad.o").exists(),
            "an object was left (lzo={lzo})"
        );
        assert_eq!(
            summaries_at_least(&daemon, "COMPILE_ERROR", GCC, "bad.c", before + 1),
            before + 1,
            "{}",
            daemon.log()
        );
    }
    assert!(!daemon.log().contains("COMPILE_OK"), "{}", daemon.log());
    daemon.assert_no_leftovers();
}

#[test]
fn dependency_file_is_the_same_as_local() {
    let (daemon, work) = start("interop-deps");
    work.write("dep.h", "#define ANSWER 42\n");
    work.write("inc/other.h", "int other(void);\n");
    work.write(
        "dep.c",
        "#include \"dep.h\"\n#include \"other.h\"\nint answer(void) { return ANSWER; }\n",
    );
    same_as_local(
        &daemon,
        &work,
        &[
            "gcc", "-Iinc", "-c", "dep.c", "-o", "dep.o", "-MD", "-MF", "dep.d",
        ],
        &["dep.o", "dep.d"],
        GCC,
        "dep.c",
    );
    let deps = std::fs::read_to_string(work.join("dep.d")).unwrap();
    assert!(
        deps.starts_with("dep.o:") && deps.contains("dep.h") && deps.contains("inc/other.h"),
        "{deps}"
    );
}

#[test]
fn output_into_a_subdirectory() {
    let (daemon, work) = start("interop-subdir");
    work.write("x.c", "int x(void) { return 7; }\n");
    std::fs::create_dir(work.join("sub")).unwrap();
    same_as_local(
        &daemon,
        &work,
        &["gcc", "-c", "x.c", "-o", "sub/x.o"],
        &["sub/x.o"],
        GCC,
        "x.c",
    );
    assert!(!work.join("x.o").exists(), "x.o written beside the source");
}

#[test]
fn empty_source_file() {
    let (daemon, work) = start("interop-empty");
    work.write("empty.c", "");
    same_as_local(
        &daemon,
        &work,
        &["gcc", "-c", "empty.c", "-o", "empty.o"],
        &["empty.o"],
        GCC,
        "empty.c",
    );
    assert!(std::fs::read(work.join("empty.o"))
        .unwrap()
        .starts_with(b"\x7fELF"));
}

#[test]
fn several_megabyte_source() {
    let (daemon, work) = start("interop-big");
    // About 5 MB of numbers that do not compress to nothing.
    let mut src = String::from("const unsigned int big[] = {\n");
    let mut x: u32 = 1;
    while src.len() < 5 << 20 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345) & 0x7fff_ffff;
        src.push_str(&format!("{x},\n"));
    }
    src.push_str("};\nunsigned int pick(int i) { return big[i]; }\n");
    work.write("big.c", &src);
    same_as_local(
        &daemon,
        &work,
        &["gcc", "-c", "big.c", "-o", "big.o"],
        &["big.o"],
        GCC,
        "big.c",
    );
    assert!(std::fs::metadata(work.join("big.o")).unwrap().len() > 1 << 20);
}
