//! Finding and naming the real compiler: masquerade PATH trimming, the recursion safeguard and distcc 3.4's compiler-name rewriting.
//!
//! Deliberate differences from distcc 3.4:
//!
//! * Masquerade (5.9): a PATH entry is skipped when its `<name>` resolves
//!   (through every symlink) to this executable or to a file whose basename
//!   contains `distcc`, wherever it sits in PATH and however the entry is
//!   spelled. 3.4 compares the text of the entries and cuts PATH after the
//!   first match; the PATH children get here is PATH without the masquerade
//!   entries.
//! * Compiler-name rewriting (5.8) skips masquerade entries the same way, and
//!   skips empty PATH entries (3.4 stops there). Only `-target`, `-target=…`,
//!   `--target` and `--target=…` count as "target given" for clang, so a
//!   user's `--target=` is never overridden (3.4 only knows `-target`).
//! * The child safeguard value stops at `9`: 3.4 writes the character
//!   `'0' + level + 1`, which is no longer a digit past 9.
//!
//! The GNU host triple is not the triple this binary was built for (a static
//! musl build would say `x86_64-unknown-linux-musl`): it is derived from the
//! architecture and OS the way distcc's configure names a glibc host, see
//! [`gnu_host`].

use crate::sys::is_executable;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The environment variable that marks children of distcc (5.10).
pub const SAFEGUARD_VAR: &str = "_DISTCC_SAFEGUARD";

/// Turns off compiler-name rewriting (5.8).
pub const NO_REWRITE_CROSS_VAR: &str = "DISTCC_NO_REWRITE_CROSS";

/// This process's safeguard level: 0 when [`SAFEGUARD_VAR`] is unset.
pub fn safeguard_level() -> u32 {
    parse_safeguard(std::env::var_os(SAFEGUARD_VAR).as_deref())
}

/// The level a [`SAFEGUARD_VAR`] value stands for: C's `atoi`, with a set
/// value that reads as 0 (non-numeric, empty) counting as 1, as in 3.4.
pub fn parse_safeguard(value: Option<&OsStr>) -> u32 {
    let Some(value) = value else {
        return 0;
    };
    let text = value.as_bytes();
    let text = &text[text.iter().take_while(|c| c.is_ascii_whitespace()).count()..];
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let n = digits
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u32, |n, &c| {
            n.saturating_mul(10).saturating_add(u32::from(c - b'0'))
        });
    match (negative, n) {
        (_, 0) => 1,
        // A negative level passes both checks, as in 3.4.
        (true, _) => 0,
        (false, n) => n,
    }
}

/// The [`SAFEGUARD_VAR`] value for a child of a process at `level`: one
/// digit, `level + 1`, at most 9.
pub fn child_safeguard_value(level: u32) -> String {
    level.saturating_add(1).min(9).to_string()
}

/// What the safeguard says to do (5.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Safeguard {
    /// Not inside distcc: go on as usual.
    Proceed,
    /// A masquerade link reached from inside distcc: run the command here at
    /// once, with no scan, locks or rewriting.
    RunLocally,
    /// distcc has invoked itself: print "distcc seems to have invoked itself
    /// recursively!" and exit 111.
    Recursion,
}

/// The safeguard rule: `level - tweaked > 0` is recursion; otherwise any
/// `level > 0` runs locally. `path_tweaked` is whether masquerade mode
/// removed entries from PATH.
pub fn safeguard(level: u32, path_tweaked: bool) -> Safeguard {
    if level > u32::from(path_tweaked) {
        Safeguard::Recursion
    } else if level > 0 {
        Safeguard::RunLocally
    } else {
        Safeguard::Proceed
    }
}

/// True if `argv0`'s basename contains `distcc`: explicit or implicit mode
/// rather than masquerade mode (5.1).
pub fn is_distcc_name(argv0: &OsStr) -> bool {
    contains(crate::filename::basename(argv0.as_bytes()), b"distcc")
}

/// True if `distcc ARG…` means `cc ARG…` (5.1): `ARG` starts with `-`, or
/// has a source extension, or ends in `.o`.
pub fn implicit_compiler(first_arg: &OsStr) -> bool {
    let a = first_arg.as_bytes();
    a.first() == Some(&b'-') || crate::filename::is_source(a) || a.ends_with(b".o")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The running executable, resolved, for [`find_real_compiler`].
pub fn self_exe() -> Option<PathBuf> {
    std::fs::canonicalize("/proc/self/exe")
        .or_else(|_| std::env::current_exe().and_then(std::fs::canonicalize))
        .ok()
}

/// True if `candidate` resolves to this executable or to any distcc.
pub fn is_masquerade(candidate: &Path, self_exe: &Path) -> bool {
    std::fs::canonicalize(candidate)
        .is_ok_and(|real| real == self_exe || is_distcc_name(real.as_os_str()))
}

/// PATH's entries; an empty entry means the current directory.
fn path_entries(path: &OsStr) -> impl Iterator<Item = &[u8]> {
    path.as_bytes().split(|&c| c == b':')
}

fn entry_dir(entry: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(if entry.is_empty() {
        b"."
    } else {
        entry
    }))
}

/// The compiler a masquerade link stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealCompiler {
    /// The first `<name>` on PATH that is not distcc.
    pub path: PathBuf,
    /// PATH without the masquerade entries, for children, so that cpp and
    /// the compiler found by `execvp` are the real ones.
    pub child_path: OsString,
    /// Whether entries were removed: the `tweaked` of the safeguard.
    pub path_tweaked: bool,
}

/// Masquerade mode (5.9): finds the real `name` on `path`, skipping every
/// entry whose `name` resolves to `self_exe` (this executable, resolved) or
/// to a distcc. `None` if there is no other `name` on PATH.
pub fn find_real_compiler(name: &OsStr, path: &OsStr, self_exe: &Path) -> Option<RealCompiler> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut found = None;
    let mut tweaked = false;
    for entry in path_entries(path) {
        let candidate = entry_dir(entry).join(name);
        if is_executable(&candidate) && is_masquerade(&candidate, self_exe) {
            tweaked = true;
            continue;
        }
        if found.is_none() && is_executable(&candidate) {
            found = Some(candidate);
        }
        kept.push(entry);
    }
    Some(RealCompiler {
        path: found?,
        child_path: OsString::from_vec(kept.join(&b':')),
        path_tweaked: tweaked,
    })
}

/// The GNU triple of the host, as distcc's configure would name a glibc host
/// of this architecture and OS: `<arch>-pc-linux-gnu` on Linux (so Debian's
/// `x86_64-pc-linux-gnu`), `arm-linux-gnueabihf` and `powerpc-linux-gnu` for
/// those, `<arch>-unknown-openbsd` on OpenBSD and `<arch>-unknown-<os>`
/// elsewhere. Rust's `x86` is `i686`.
pub fn gnu_host() -> String {
    gnu_triple(std::env::consts::ARCH, std::env::consts::OS)
}

fn gnu_triple(arch: &str, os: &str) -> String {
    let arch = if arch == "x86" { "i686" } else { arch };
    match (arch, os) {
        ("arm", "linux") => "arm-linux-gnueabihf".to_string(),
        ("powerpc", "linux") => "powerpc-linux-gnu".to_string(),
        (arch, "linux") => format!("{arch}-pc-linux-gnu"),
        (arch, os) => format!("{arch}-unknown-{os}"),
    }
}

/// The prefix of the host's gcc names: [`gnu_host`] with its first `-pc-`
/// turned into `-` (`x86_64-linux-gnu`), as 3.4 forms it.
pub fn gcc_triple() -> String {
    gnu_host().replacen("-pc-", "-", 1)
}

/// The first PATH entry holding an executable `name` that is not distcc.
fn which(name: &[u8], path: &OsStr, self_exe: &Path) -> Option<PathBuf> {
    path_entries(path)
        .filter(|e| !e.is_empty())
        .map(|e| entry_dir(e).join(OsStr::from_bytes(name)))
        .find(|c| is_executable(c) && !is_masquerade(c, self_exe))
}

/// distcc 3.4's compiler-name rewriting (5.8), applied after the scan and for
/// local runs too, unless [`NO_REWRITE_CROSS_VAR`] is set.
pub fn rewrite_compiler(argv: &mut Vec<OsString>, path: &OsStr) {
    if std::env::var_os(NO_REWRITE_CROSS_VAR).is_some() {
        return;
    }
    let me = self_exe().unwrap_or_default();
    rewrite_names(argv, path, &me, &gnu_host());
}

/// [`rewrite_compiler`] with the executable to skip and the host triple
/// given.
fn rewrite_names(argv: &mut Vec<OsString>, path: &OsStr, self_exe: &Path, host: &str) {
    let Some(first) = argv.first() else {
        return;
    };
    // 1. cc and c++: name the compiler they link to.
    let generic: Option<&[&str]> = match first.as_bytes() {
        b"cc" => Some(&["clang", "gcc"]),
        b"c++" => Some(&["clang++", "g++"]),
        _ => None,
    };
    if let Some(names) = generic {
        if let Some(found) = which(first.as_bytes(), path, self_exe) {
            if let Ok(mut target) = std::fs::read_link(&found) {
                if target == Path::new("/etc/alternatives/cc")
                    || target == Path::new("/etc/alternatives/c++")
                {
                    if let Ok(next) = std::fs::read_link(&target) {
                        target = next;
                    }
                }
                let base = crate::filename::basename(target.as_os_str().as_bytes());
                if let Some(name) = names.iter().find(|n| n.as_bytes() == base) {
                    argv[0] = OsString::from(*name);
                }
            }
        }
    }
    let name = argv[0].as_bytes().to_vec();
    // 2. clang: compile for the host unless a target is given.
    let is_clang = name == b"clang"
        || name == b"clang++"
        || name.starts_with(b"clang-")
        || name.starts_with(b"clang++-");
    if is_clang {
        let target_given = argv.iter().skip(1).any(|a| {
            let a = a.as_bytes();
            a == b"-target"
                || a == b"--target"
                || a.starts_with(b"-target=")
                || a.starts_with(b"--target=")
        });
        if !target_given {
            argv.push("-target".into());
            argv.push(host.into());
        }
        return;
    }
    // 3. gcc: the host's triple-prefixed name, if it is installed.
    let is_gcc =
        name == b"gcc" || name == b"g++" || name.starts_with(b"gcc-") || name.starts_with(b"g++-");
    if is_gcc {
        let mut full = host.replacen("-pc-", "-", 1).into_bytes();
        full.push(b'-');
        full.extend_from_slice(&name);
        if which(&full, path, self_exe).is_some() {
            argv[0] = OsString::from_vec(full);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::os::unix::fs::PermissionsExt;

    fn temp() -> PathBuf {
        crate::sys::make_temp_dir(&std::env::temp_dir(), "distcc-rs-compiler_").unwrap()
    }

    /// A fake compiler: a shell script named `name` in `dir`.
    fn fake(dir: &Path, name: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn link(target: &Path, dir: &Path, name: &str) {
        std::fs::create_dir_all(dir).unwrap();
        symlink(target, dir.join(name)).unwrap();
    }

    fn join_path(dirs: &[&Path]) -> OsString {
        let parts: Vec<&OsStr> = dirs.iter().map(|d| d.as_os_str()).collect();
        parts.join(OsStr::new(":"))
    }

    fn argv(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn safeguard_levels() {
        // value of _DISTCC_SAFEGUARD   level
        let cases: &[(Option<&str>, u32)] = &[
            (None, 0),
            (Some("1"), 1),
            (Some("2"), 2),
            (Some(" 3x"), 3),
            (Some("abc"), 1),
            (Some(""), 1),
            (Some("0"), 1),
            (Some("-2"), 0),
        ];
        for (value, level) in cases {
            assert_eq!(parse_safeguard(value.map(OsStr::new)), *level, "{value:?}");
        }
        assert_eq!(child_safeguard_value(0), "1");
        assert_eq!(child_safeguard_value(1), "2");
        assert_eq!(child_safeguard_value(8), "9");
        assert_eq!(child_safeguard_value(9), "9");
    }

    #[test]
    fn safeguard_rule() {
        // level  PATH tweaked  what to do
        let cases = [
            (0, false, Safeguard::Proceed),
            (0, true, Safeguard::Proceed),
            (1, false, Safeguard::Recursion), // _DISTCC_SAFEGUARD=1 distcc gcc … → 111
            (1, true, Safeguard::RunLocally), // masquerade link reached from inside distcc
            (2, true, Safeguard::Recursion),
        ];
        for (level, tweaked, want) in cases {
            assert_eq!(safeguard(level, tweaked), want, "{level} {tweaked}");
        }
    }

    #[test]
    fn section_5_1_names() {
        for (argv0, distcc) in [
            ("distcc", true),
            ("/usr/bin/distcc-rs", true),
            ("x-distcc", true),
            ("gcc", false),
            ("/usr/lib/distcc/gcc", false),
            ("distcc/gcc", false),
        ] {
            assert_eq!(is_distcc_name(OsStr::new(argv0)), distcc, "{argv0}");
        }
        for (arg, implicit) in [
            ("-c", true),
            ("x.c", true),
            ("x.cpp", true),
            ("x.o", true),
            ("a.s", false),
            ("gcc", false),
            ("x86_64-linux-gnu-gcc", false),
        ] {
            assert_eq!(implicit_compiler(OsStr::new(arg)), implicit, "{arg}");
        }
    }

    #[test]
    fn masquerade_skips_every_entry_that_is_distcc() {
        let t = temp();
        let me = fake(&t.join("bin"), "distcc-rs-under-another-name");
        let me = std::fs::canonicalize(me).unwrap();
        let other_distcc = fake(&t.join("opt"), "distcc");
        link(&me, &t.join("masq"), "gcc");
        link(&other_distcc, &t.join("masq2"), "gcc");
        link(
            Path::new("../bin/distcc-rs-under-another-name"),
            &t.join("rel"),
            "gcc",
        );
        std::fs::create_dir_all(t.join("noexec")).unwrap();
        std::fs::write(t.join("noexec/gcc"), "").unwrap();
        let real = fake(&t.join("real"), "gcc");
        fake(&t.join("later"), "gcc");
        let doubled = PathBuf::from(format!("{}//masq", t.display()));
        let path = join_path(&[
            &doubled,
            &t.join("missing"),
            &t.join("masq2"),
            &t.join("rel"),
            &t.join("noexec"),
            real.parent().unwrap(),
            &t.join("later"),
        ]);
        let found = find_real_compiler(OsStr::new("gcc"), &path, &me).unwrap();
        assert_eq!(found.path, real);
        assert_eq!(
            found.child_path,
            join_path(&[
                &t.join("missing"),
                &t.join("noexec"),
                &t.join("real"),
                &t.join("later")
            ])
        );
        assert!(found.path_tweaked);

        let plain = join_path(&[&t.join("real")]);
        let found = find_real_compiler(OsStr::new("gcc"), &plain, &me).unwrap();
        assert_eq!((found.child_path, found.path_tweaked), (plain, false));

        let only_us = join_path(&[&t.join("masq"), &t.join("masq2")]);
        assert_eq!(find_real_compiler(OsStr::new("gcc"), &only_us, &me), None);
        std::fs::remove_dir_all(t).unwrap();
    }

    #[test]
    fn gnu_triples() {
        for (arch, os, triple) in [
            ("x86_64", "linux", "x86_64-pc-linux-gnu"),
            ("aarch64", "linux", "aarch64-pc-linux-gnu"),
            ("x86", "linux", "i686-pc-linux-gnu"),
            ("arm", "linux", "arm-linux-gnueabihf"),
            ("powerpc", "linux", "powerpc-linux-gnu"),
            ("x86_64", "openbsd", "x86_64-unknown-openbsd"),
            ("powerpc", "openbsd", "powerpc-unknown-openbsd"),
        ] {
            assert_eq!(gnu_triple(arch, os), triple);
        }
        if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            assert_eq!(gnu_host(), "x86_64-pc-linux-gnu");
            assert_eq!(gcc_triple(), "x86_64-linux-gnu");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn section_5_8_rewriting() {
        let t = temp();
        let me = std::fs::canonicalize(fake(&t.join("me"), "distcc")).unwrap();
        // bin: cc → gcc, c++ → clang++ (through a fake alternatives link), and
        // the host's gcc triple name; masq: cc and gcc that are distcc.
        let bin = t.join("bin");
        fake(&bin, "gcc");
        fake(&bin, "clang++");
        link(Path::new("gcc"), &bin, "cc");
        link(Path::new("clang++"), &t.join("alt"), "c++");
        link(&t.join("alt/c++"), &bin, "c++");
        link(&me, &t.join("masq"), "cc");
        link(&me, &t.join("masq"), "x86_64-linux-gnu-g++");
        fake(&bin, "x86_64-linux-gnu-gcc");
        let nolink = t.join("nolink");
        fake(&nolink, "cc");
        let path = join_path(&[&t.join("masq"), &bin]);
        let host = "x86_64-pc-linux-gnu";
        // rule                            PATH         command                              rewritten
        let cases: &[(&str, &OsStr, &str, &str)] = &[
            ("cc → gcc → triple",          &path,        "cc -c x.c",                        "x86_64-linux-gnu-gcc -c x.c"),
            ("c++ not via alternatives",   &path,        "c++ -c x.cc",                      "c++ -c x.cc"),
            ("cc not a symlink",           nolink.as_os_str(), "cc -c x.c",                  "cc -c x.c"),
            ("gcc → triple",               &path,        "gcc -c x.c",                       "x86_64-linux-gnu-gcc -c x.c"),
            ("g++: triple is only us",     &path,        "g++ -c x.cc",                      "g++ -c x.cc"),
            ("gcc-12: no triple name",     &path,        "gcc-12 -c x.c",                    "gcc-12 -c x.c"),
            ("clang gets the host",        &path,        "clang -c x.c",                     "clang -c x.c -target x86_64-pc-linux-gnu"),
            ("clang++-14 too",             &path,        "clang++-14 -c x.cc",               "clang++-14 -c x.cc -target x86_64-pc-linux-gnu"),
            ("-target given",              &path,        "clang -target arm-linux -c x.c",   "clang -target arm-linux -c x.c"),
            ("--target= given",            &path,        "clang --target=powerpc-unknown-openbsd -c x.c", "clang --target=powerpc-unknown-openbsd -c x.c"),
            ("-target= given",             &path,        "clang -target=arm -c x.c",         "clang -target=arm -c x.c"),
            ("a path is left alone",       &path,        "/usr/bin/gcc -c x.c",              "/usr/bin/gcc -c x.c"),
            ("other compilers",            &path,        "icc -c x.c",                       "icc -c x.c"),
        ];
        for (rule, path, line, want) in cases {
            let mut a = argv(line);
            rewrite_names(&mut a, path, &me, host);
            assert_eq!(a, argv(want), "{rule}");
        }
        std::fs::remove_dir_all(t).unwrap();
    }

    /// On Debian, `cc` is `/usr/bin/cc → /etc/alternatives/cc → /usr/bin/gcc`
    /// and the user's `gcc` is sent as `x86_64-linux-gnu-gcc`. Fails where gcc
    /// is not installed that way.
    #[test]
    fn debian_gcc_is_named_by_its_triple() {
        let triple_gcc = format!("{}-gcc", gcc_triple());
        assert!(
            is_executable(&Path::new("/usr/bin").join(&triple_gcc)),
            "{triple_gcc} must be installed"
        );
        let me = self_exe().unwrap();
        for first in ["gcc", "cc"] {
            let mut a = argv(&format!("{first} -c x.c"));
            rewrite_names(&mut a, OsStr::new("/usr/bin"), &me, &gnu_host());
            assert_eq!(a[0], OsString::from(&triple_gcc), "{first}");
        }
        let mut a = argv("c++ -c x.cc");
        rewrite_names(&mut a, OsStr::new("/usr/bin"), &me, &gnu_host());
        assert_eq!(a[0], OsString::from(format!("{}-g++", gcc_triple())));
    }
}
