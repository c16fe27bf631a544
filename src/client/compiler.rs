//! The client's compiler names: implicit mode (5.1) and distcc 3.4's compiler-name rewriting (5.8).
//!
//! Finding the real compiler behind a masquerade link and the recursion
//! safeguard are shared with the daemon and live in [`crate::masquerade`].
//!
//! Deliberate differences from distcc 3.4: compiler-name rewriting skips
//! masquerade entries (as [`crate::masquerade`] defines them) and empty PATH
//! entries (3.4 stops there). The option table's target options
//! ([`Role::Target`]: `-target`, `-target=…`, `--target` and `--target=…`)
//! count as "target given" for clang, so a user's `--target=` is never
//! overridden (3.4 only knows `-target`); the value of another option
//! (`-D -target`) is none.
//!
//! The GNU host triple is not the triple this binary was built for (a static
//! musl build would say `x86_64-unknown-linux-musl`): it is derived from the
//! architecture and OS the way distcc's configure names a glibc host, see
//! [`gnu_host`].

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use crate::masquerade;
use crate::options::{Role, Tokens};

/// Turns off compiler-name rewriting (5.8).
pub const NO_REWRITE_CROSS_VAR: &str = "DISTCC_NO_REWRITE_CROSS";

/// True if `distcc ARG…` means `cc ARG…` (5.1): `ARG` starts with `-`, or
/// has a source extension, or ends in `.o`.
pub fn implicit_compiler(first_arg: &OsStr) -> bool {
    let a = first_arg.as_bytes();
    a.first() == Some(&b'-') || crate::filename::is_source(a) || a.ends_with(b".o")
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

/// The prefix of a host's gcc names: the GNU triple with its first `-pc-`
/// turned into `-` (`x86_64-linux-gnu`), as 3.4 forms it.
fn gcc_triple(host: &str) -> String {
    host.replacen("-pc-", "-", 1)
}

/// distcc 3.4's compiler-name rewriting (5.8) of `argv`, read into `tokens`,
/// applied before the scan and so for local runs too, unless
/// [`NO_REWRITE_CROSS_VAR`] is set. Arguments it appends are read into
/// `tokens`.
pub fn rewrite_compiler(argv: &mut Vec<OsString>, tokens: &mut Tokens, path: &OsStr) {
    if std::env::var_os(NO_REWRITE_CROSS_VAR).is_some() {
        return;
    }
    let me = masquerade::self_exe().unwrap_or_default();
    rewrite_names(argv, tokens, path, &me, &gnu_host());
}

/// [`rewrite_compiler`] with the executable to skip and the host triple
/// given.
fn rewrite_names(
    argv: &mut Vec<OsString>,
    tokens: &mut Tokens,
    path: &OsStr,
    self_exe: &Path,
    host: &str,
) {
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
        if let Some(found) = masquerade::which(first, path, self_exe) {
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
        if !tokens.has(Role::Target) {
            let end = argv.len();
            argv.push("-target".into());
            argv.push(host.into());
            tokens.read(argv, end);
        }
        return;
    }
    // 3. gcc: the host's triple-prefixed name, if it is installed.
    let is_gcc =
        name == b"gcc" || name == b"g++" || name.starts_with(b"gcc-") || name.starts_with(b"g++-");
    if is_gcc {
        let mut full = gcc_triple(host).into_bytes();
        full.push(b'-');
        full.extend_from_slice(&name);
        if masquerade::which(OsStr::from_bytes(&full), path, self_exe).is_some() {
            argv[0] = OsString::from_vec(full);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masquerade::{is_distcc_name, self_exe};
    use crate::sys::is_executable;

    use crate::testing::{fake_program as fake, join_path, symlink_in as link};

    fn argv(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    /// [`rewrite_names`] on a command read into tokens, whose tokens after
    /// it are those of the rewritten command.
    fn rewrite(argv: &mut Vec<OsString>, path: &OsStr, me: &Path, host: &str) {
        let mut tokens = Tokens::of(argv);
        rewrite_names(argv, &mut tokens, path, me, host);
        assert_eq!(tokens, Tokens::of(argv), "{argv:?}");
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
            assert_eq!(gcc_triple(&gnu_host()), "x86_64-linux-gnu");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn section_5_8_rewriting() {
        let tmp = crate::testing::TestDir::new("compiler");
        let t = tmp.path();
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
            rewrite(&mut a, path, &me, host);
            assert_eq!(a, argv(want), "{rule}");
        }
    }

    /// Only an option names a target: the value of another (`-D -target`,
    /// `-o --target=x.o`) does not, and clang gets the host's.
    #[test]
    #[rustfmt::skip]
    fn a_target_is_an_option_not_a_value() {
        let me = Path::new("/nonexistent/distcc");
        let host = "x86_64-pc-linux-gnu";
        // command                                  rewritten
        let cases: &[(&str, &str)] = &[
            ("clang -D -target -c x.c",               "clang -D -target -c x.c -target x86_64-pc-linux-gnu"),
            ("clang -c x.c -o --target=x.o",          "clang -c x.c -o --target=x.o -target x86_64-pc-linux-gnu"),
            ("clang -D-target -c x.c",                "clang -D-target -c x.c -target x86_64-pc-linux-gnu"),
            ("clang --target arm -c x.c",             "clang --target arm -c x.c"),
            ("clang -c x.c -target",                  "clang -c x.c -target"),
            ("clang -c x.c -o",                       "clang -c x.c -o -target x86_64-pc-linux-gnu"),
        ];
        for (line, want) in cases {
            let mut a = argv(line);
            rewrite(&mut a, OsStr::new(""), me, host);
            assert_eq!(a, argv(want), "{line}");
        }
    }

    /// On Debian, `cc` is `/usr/bin/cc → /etc/alternatives/cc → /usr/bin/gcc`
    /// and the user's `gcc` is sent as `x86_64-linux-gnu-gcc`. Fails where gcc
    /// is not installed that way.
    #[test]
    fn debian_gcc_is_named_by_its_triple() {
        let triple_gcc = format!("{}-gcc", gcc_triple(&gnu_host()));
        assert!(
            is_executable(&Path::new("/usr/bin").join(&triple_gcc)),
            "{triple_gcc} must be installed"
        );
        let me = self_exe().unwrap();
        for first in ["gcc", "cc"] {
            let mut a = argv(&format!("{first} -c x.c"));
            rewrite(&mut a, OsStr::new("/usr/bin"), &me, &gnu_host());
            assert_eq!(a[0], OsString::from(&triple_gcc), "{first}");
        }
        let mut a = argv("c++ -c x.cc");
        rewrite(&mut a, OsStr::new("/usr/bin"), &me, &gnu_host());
        assert_eq!(
            a[0],
            OsString::from(format!("{}-g++", gcc_triple(&gnu_host())))
        );
    }
}
