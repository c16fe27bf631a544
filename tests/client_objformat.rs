//! The object check (distcc issue #440): a host whose `powerpc-linux-gnu-gcc` is really the native gcc returns x86-64 objects; the client must catch them, back the host off and get the right object elsewhere, and learn the local compiler's format once.
//!
//! The "bad" host is our daemon with a server-side `powerpc-linux-gnu-gcc`
//! script that runs `/usr/bin/gcc`; the honest host is our daemon running
//! the real cross compiler.

use crate::common;

use common::daemon::{client, need, Daemon, DaemonOptions};
use common::TestDir;
use common::{local, text, wait_until};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

const PPC_GCC: &str = "powerpc-linux-gnu-gcc";
const SOURCE: &str = "int answer(int x) { return x * 42; }\n";
/// What the warning says about the bad host's object and the expected one.
const WARNING: &str = "returned an ELF64 little-endian x86-64 object, but powerpc-linux-gnu-gcc \
                       makes ELF32 big-endian PowerPC objects here";

fn need_tools() {
    need("gcc", "gcc");
    need(PPC_GCC, "gcc-powerpc-linux-gnu");
}

/// A daemon whose `powerpc-linux-gnu-gcc` is the native gcc.
fn bad_daemon(name: &str) -> Daemon {
    Daemon::start(
        name,
        DaemonOptions {
            masquerade: vec![PPC_GCC.into()],
            scripts: vec![(PPC_GCC.into(), "exec /usr/bin/gcc \"$@\"".into())],
            ..DaemonOptions::default()
        },
    )
}

/// A daemon running the real cross compiler.
fn honest_daemon(name: &str) -> Daemon {
    Daemon::start(
        name,
        DaemonOptions {
            masquerade: vec![PPC_GCC.into()],
            ..DaemonOptions::default()
        },
    )
}

/// A work directory with `x.c` and an empty TMPDIR of its own.
fn workdir(name: &str) -> TestDir {
    let work = TestDir::new(name);
    work.write("x.c", SOURCE);
    std::fs::create_dir_all(work.join("tmp")).unwrap();
    work
}

/// The object a local `powerpc-linux-gnu-gcc -c x.c` makes.
fn local_ppc_object(work: &TestDir) -> Vec<u8> {
    let out = local(&work.path, &[PPC_GCC, "-c", "x.c", "-o", "local.o"]);
    assert!(
        out.status.success(),
        "local {PPC_GCC}: {}",
        text(&out.stderr)
    );
    let bytes = std::fs::read(work.join("local.o")).unwrap();
    std::fs::remove_file(work.join("local.o")).unwrap();
    bytes
}

/// Runs `powerpc-linux-gnu-gcc -c x.c` through our client with `env` added
/// to TMPDIR=work/tmp.
fn compile(work: &TestDir, hosts: &str, env: &[(&str, &str)]) -> Output {
    let tmp = work.join("tmp");
    let mut all = vec![("TMPDIR", tmp.to_str().unwrap())];
    all.extend_from_slice(env);
    client(&work.path, hosts, &[PPC_GCC, "-c", "x.c"], &all)
}

/// Asserts that `bytes` is an ELF32 big-endian PowerPC relocatable object.
fn assert_ppc_object(bytes: &[u8]) {
    assert!(bytes.len() > 52, "object too short: {} bytes", bytes.len());
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert_eq!(bytes[4], 1, "not ELF32");
    assert_eq!(bytes[5], 2, "not big-endian");
    assert_eq!(u16::from_be_bytes([bytes[16], bytes[17]]), 1, "not ET_REL");
    assert_eq!(u16::from_be_bytes([bytes[18], bytes[19]]), 20, "not EM_PPC");
}

/// The backoff marks in the client's DISTCC_DIR.
fn backoff_marks(work: &TestDir) -> Vec<String> {
    let mut marks: Vec<String> = std::fs::read_dir(work.join(".distcc-state/lock"))
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("backoff_"))
                .collect()
        })
        .unwrap_or_default();
    marks.sort();
    marks
}

fn backoff_mark(daemon: &Daemon) -> String {
    format!("backoff_tcp_127.0.0.1_{}_0", daemon.port)
}

/// Our temporary files left in the work directory or its TMPDIR.
fn leftovers(work: &TestDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(work.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.extend(
        std::fs::read_dir(&work.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("distcc-rs-") || n.starts_with("distcc_")),
    );
    names
}

/// The files of the object format cache.
fn cache_files(work: &TestDir) -> Vec<PathBuf> {
    std::fs::read_dir(work.join(".distcc-state/objformat"))
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn wrong_machine_object_is_caught_and_the_next_host_compiles() {
    need_tools();
    let bad = bad_daemon("objfmt-next-bad");
    let good = honest_daemon("objfmt-next-good");
    let work = workdir("objfmt-next");
    let want = local_ppc_object(&work);
    let hosts = format!("{} {}", bad.host(false), good.host(true));
    // 3.4's static rule, so that the bad host, first in the list, is tried first.
    let env = [("DISTCC_FALLBACK", "0"), ("DISTCC_PLACEMENT", "0")];
    let out = compile(&work, &hosts, &env);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got = std::fs::read(work.join("x.o")).unwrap();
    assert_ppc_object(&got);
    assert_eq!(got, want, "the object differs from a local compile");
    assert!(
        stderr.contains(&format!("127.0.0.1:{} {WARNING}", bad.port)),
        "no warning naming the bad host:\n{stderr}"
    );
    // Both hosts compiled; the second one's object was used.
    bad.wait_for_log(" COMPILE_OK ", Duration::from_secs(5));
    good.wait_for_log(" COMPILE_OK ", Duration::from_secs(5));
    assert_eq!(good.log().matches(" COMPILE_OK ").count(), 1);
    assert_eq!(backoff_marks(&work), vec![backoff_mark(&bad)]);
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

#[test]
fn wrong_machine_object_from_the_only_host_falls_back_locally() {
    need_tools();
    let bad = bad_daemon("objfmt-local-bad");
    let work = workdir("objfmt-local");
    let want = local_ppc_object(&work);
    let out = compile(&work, &bad.host(true), &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(std::fs::read(work.join("x.o")).unwrap(), want);
    assert!(stderr.contains(WARNING), "{stderr}");
    assert!(stderr.contains("running locally instead"), "{stderr}");
    bad.wait_for_log(" COMPILE_OK ", Duration::from_secs(5));
    assert_eq!(backoff_marks(&work), vec![backoff_mark(&bad)]);
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

#[test]
fn wrong_machine_object_without_fallback_fails_and_leaves_the_old_object() {
    need_tools();
    let bad = bad_daemon("objfmt-nofb-bad");
    let work = workdir("objfmt-nofb");
    work.write("x.o", "the previous object\n");
    let out = compile(&work, &bad.host(false), &[("DISTCC_FALLBACK", "0")]);
    let stderr = text(&out.stderr);
    // 116 (no hosts left), as when every host failed to connect.
    assert_eq!(out.status.code(), Some(116), "{stderr}");
    assert!(stderr.contains(WARNING), "{stderr}");
    assert_eq!(
        std::fs::read(work.join("x.o")).unwrap(),
        b"the previous object\n"
    );
    assert_eq!(backoff_marks(&work), vec![backoff_mark(&bad)]);
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

#[test]
fn the_check_can_be_turned_off() {
    // Proves the bad host really returns x86-64 objects, which only the
    // check stops.
    need_tools();
    let bad = bad_daemon("objfmt-off-bad");
    let work = workdir("objfmt-off");
    let out = compile(
        &work,
        &bad.host(false),
        &[("DISTCC_FALLBACK", "0"), ("DISTCC_RS_OBJECT_CHECK", "0")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = std::fs::read(work.join("x.o")).unwrap();
    assert_eq!(&got[..6], b"\x7fELF\x02\x01", "not the native ELF64 object");
    assert_eq!(u16::from_le_bytes([got[18], got[19]]), 62);
    assert!(backoff_marks(&work).is_empty());
    assert!(cache_files(&work).is_empty(), "probed although off");
}

/// A `powerpc-linux-gnu-gcc` in `work/bin` that counts the object check's
/// probes (compiles of /dev/null) and runs the real one.
fn counting_compiler(work: &TestDir) -> String {
    let real = need(PPC_GCC, "gcc-powerpc-linux-gnu");
    work.script(
        &format!("bin/{PPC_GCC}"),
        &format!(
            "for a in \"$@\"; do [ \"$a\" = /dev/null ] && echo probe >> \"{}\"; done\nexec {} \"$@\"",
            work.join("probes").display(),
            real.display()
        ),
    );
    format!(
        "{}:{}",
        work.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn probes(work: &TestDir) -> usize {
    std::fs::read_to_string(work.join("probes"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn assert_compiles(work: &TestDir, daemon: &Daemon, path: &str, want: &[u8], jobs: usize) {
    let out = compile(
        work,
        &daemon.host(true),
        &[("DISTCC_FALLBACK", "0"), ("PATH", path)],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("returned"), "{stderr}");
    assert_eq!(std::fs::read(work.join("x.o")).unwrap(), want);
    let _ = wait_until(Duration::from_secs(5), || {
        daemon.log().matches(" COMPILE_OK ").count() >= jobs
    });
    assert_eq!(daemon.log().matches(" COMPILE_OK ").count(), jobs);
}

#[test]
fn honest_jobs_probe_once_and_reuse_the_cache() {
    need_tools();
    let good = honest_daemon("objfmt-once-good");
    let work = workdir("objfmt-once");
    let want = local_ppc_object(&work);
    let path = counting_compiler(&work);
    assert_compiles(&work, &good, &path, &want, 1);
    assert_eq!(probes(&work), 1);
    let cache = cache_files(&work);
    assert_eq!(cache.len(), 1, "{cache:?}");
    let contents = std::fs::read(&cache[0]).unwrap();
    assert!(
        contents.starts_with(b"distcc-rs objformat 1\nelf 32 1 20 1\n"),
        "{}",
        text(&contents)
    );
    let mtime = std::fs::metadata(&cache[0]).unwrap().modified().unwrap();
    assert_compiles(&work, &good, &path, &want, 2);
    assert_eq!(probes(&work), 1, "the second job probed again");
    assert_eq!(cache_files(&work), cache);
    assert_eq!(
        std::fs::metadata(&cache[0]).unwrap().modified().unwrap(),
        mtime
    );
    assert!(backoff_marks(&work).is_empty());
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

#[test]
fn a_corrupt_cache_file_is_rewritten() {
    need_tools();
    let good = honest_daemon("objfmt-corrupt-good");
    let work = workdir("objfmt-corrupt");
    let want = local_ppc_object(&work);
    let path = counting_compiler(&work);
    assert_compiles(&work, &good, &path, &want, 1);
    let cache = cache_files(&work);
    assert_eq!(cache.len(), 1, "{cache:?}");
    let good_contents = std::fs::read(&cache[0]).unwrap();
    for (round, garbage) in [
        &b"\x00\xffnot a cache"[..],
        b"distcc-rs objformat 1\nelf 64 0 62 1\n",
    ]
    .iter()
    .enumerate()
    {
        // Garbage, then a well-formed file that lies about the format but
        // holds no key: both are ignored, probed again and rewritten.
        std::fs::write(&cache[0], garbage).unwrap();
        assert_compiles(&work, &good, &path, &want, round + 2);
        assert_eq!(probes(&work), round + 2);
        assert_eq!(std::fs::read(&cache[0]).unwrap(), good_contents);
    }
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

#[test]
fn probe_failure_turns_the_check_off_for_the_job() {
    // A compiler that cannot compile /dev/null: the job still succeeds with
    // whatever the host returns, and nothing is cached.
    need_tools();
    let bad = bad_daemon("objfmt-noprobe-bad");
    let work = workdir("objfmt-noprobe");
    let real = need(PPC_GCC, "gcc-powerpc-linux-gnu");
    work.script(
        &format!("bin/{PPC_GCC}"),
        &format!(
            "for a in \"$@\"; do [ \"$a\" = /dev/null ] && exit 1; done\nexec {} \"$@\"",
            real.display()
        ),
    );
    let path = format!(
        "{}:{}",
        work.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = compile(
        &work,
        &bad.host(false),
        &[("DISTCC_FALLBACK", "0"), ("PATH", &path)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read(work.join("x.o"))
        .unwrap()
        .starts_with(b"\x7fELF\x02"));
    assert!(cache_files(&work).is_empty());
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

#[test]
fn concurrent_clients_each_probe_at_most_once() {
    // make -j with an empty cache: every client may probe, none may fail,
    // and one complete cache file is left.
    need_tools();
    let good = honest_daemon("objfmt-jobs-good");
    let work = workdir("objfmt-jobs");
    let path = counting_compiler(&work);
    const JOBS: usize = 4;
    for i in 0..JOBS {
        work.write(
            &format!("x{i}.c"),
            format!("int f{i}(void) {{ return {i}; }}\n"),
        );
    }
    let tmp = work.join("tmp");
    let children: Vec<_> = (0..JOBS)
        .map(|i| {
            common::daemon::client_command(
                std::path::Path::new(common::daemon::bin()),
                &work.path,
                &good.host(true),
                &[
                    ("DISTCC_FALLBACK", "0"),
                    ("PATH", &path),
                    ("TMPDIR", tmp.to_str().unwrap()),
                ],
            )
            .args([PPC_GCC, "-c", &format!("x{i}.c")])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            !text(&out.stderr).contains("returned"),
            "{}",
            text(&out.stderr)
        );
    }
    for i in 0..JOBS {
        assert_ppc_object(&std::fs::read(work.join(&format!("x{i}.o"))).unwrap());
    }
    let probed = probes(&work);
    assert!((1..=JOBS).contains(&probed), "{probed} probes");
    let cache = cache_files(&work);
    assert_eq!(cache.len(), 1, "{cache:?}");
    assert!(std::fs::read(&cache[0])
        .unwrap()
        .starts_with(b"distcc-rs objformat 1\nelf 32 1 20 1\n"));
    assert!(leftovers(&work).is_empty(), "{:?}", leftovers(&work));
}

#[test]
fn parser_agrees_with_readelf_on_fresh_objects() {
    // The unit tests hold copies of these headers; this checks the parser
    // against today's compilers and binutils' own reading of them.
    use distcc_rs::client::objformat::{parse, Format};
    need("readelf", "binutils");
    need("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf");
    need_tools();
    let work = TestDir::new("objfmt-readelf");
    let cases: [(&[&str], &str); 4] = [
        (&["gcc"], "ELF64 little-endian x86-64"),
        (&["gcc", "-m32"], "ELF32 little-endian i386"),
        (&[PPC_GCC], "ELF32 big-endian PowerPC"),
        (&["arm-linux-gnueabihf-gcc"], "ELF32 little-endian ARM"),
    ];
    for (compiler, want) in cases {
        let mut args = compiler.to_vec();
        args.extend(["-x", "c", "-c", "/dev/null", "-o", "probe.o"]);
        let out = local(&work.path, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let bytes = std::fs::read(work.join("probe.o")).unwrap();
        let format = parse(&bytes).unwrap();
        assert_eq!(format.to_string(), want, "{compiler:?}");
        let Format::Elf {
            bits, big_endian, ..
        } = format
        else {
            panic!("{compiler:?} made {format}");
        };
        let readelf = local(&work.path, &["readelf", "-h", "probe.o"]);
        let header = text(&readelf.stdout);
        let field = |name: &str| {
            header
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("readelf -h has no {name}:\n{header}"))
        };
        assert_eq!(field("Class:"), format!("ELF{bits}"));
        let data = if big_endian {
            "big endian"
        } else {
            "little endian"
        };
        assert!(field("Data:").ends_with(data), "{header}");
        assert_eq!(field("Type:"), "REL (Relocatable file)");
        let machine = field("Machine:");
        let name = want.rsplit(' ').next().unwrap();
        let readelf_names: &[&str] = match name {
            "x86-64" => &["Advanced Micro Devices X86-64"],
            "i386" => &["Intel 80386"],
            other => &[other],
        };
        assert!(
            readelf_names.contains(&machine.as_str()),
            "{machine} for {want}"
        );
    }
}
