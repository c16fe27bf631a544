//! Masquerade mode and PATH (compat 5.9, 5.10): the one PATH walker, this executable, telling a distcc from a real compiler, and the `_DISTCC_SAFEGUARD` recursion guard.
//!
//! The client (finding the real compiler behind a masquerade link), the
//! daemon (never running itself as a compiler), `wrap` (finding clang) and
//! `--install-masquerade` all walk PATH here.
//!
//! Deliberate differences from distcc 3.4:
//!
//! * A PATH entry is skipped when its `<name>` resolves (through every
//!   symlink) to this executable or to a file whose basename contains
//!   `distcc`, wherever it sits in PATH and however the entry is spelled.
//!   3.4 compares the text of the entries and cuts PATH after the first
//!   match; the PATH children get here is PATH without the masquerade
//!   entries.
//! * The child safeguard value stops at `9`: 3.4 writes the character
//!   `'0' + level + 1`, which is no longer a digit past 9.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::sys::is_executable;

/// The environment variable that marks children of distcc (5.10).
pub const SAFEGUARD_VAR: &str = "_DISTCC_SAFEGUARD";

/// Where `--install-masquerade` puts its links unless told, and the first
/// place the daemon looks for them: Debian's masquerade directory.
pub const DEFAULT_DIR: &str = "/usr/lib/distcc";

/// One PATH entry, as written. An empty entry means the current directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry<'a>(&'a [u8]);

impl Entry<'_> {
    /// True for an empty entry (`a::b`, a leading or trailing `:`).
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The directory the entry names: `.` for an empty one.
    fn dir(&self) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(if self.0.is_empty() {
            b"."
        } else {
            self.0
        }))
    }

    /// `DIR/name`.
    fn join(&self, name: &OsStr) -> PathBuf {
        self.dir().join(name)
    }
}

/// PATH's entries, in order: the one PATH walker, under every search below.
fn entries(path: &OsStr) -> impl Iterator<Item = Entry<'_>> {
    path.as_bytes().split(|&c| c == b':').map(Entry)
}

/// PATH's non-empty entries as directories, for the searches that never
/// look in the current directory (the daemon's, `--install-masquerade`).
pub fn dirs(path: &OsStr) -> impl Iterator<Item = PathBuf> + '_ {
    entries(path).filter(|e| !e.is_empty()).map(|e| e.dir())
}

/// Where execvp would find `name` on `path`: `None` if `name` holds a `/`,
/// else the first executable file `DIR/name` (an empty entry is the current
/// directory).
pub fn find_program(name: &OsStr, path: &OsStr) -> Option<PathBuf> {
    if name.as_bytes().contains(&b'/') {
        return None;
    }
    entries(path)
        .map(|e| e.join(name))
        .find(|candidate| is_executable(candidate))
}

/// This executable, with every symbolic link resolved.
///
/// Linux reads `/proc/self/exe`. Elsewhere (OpenBSD has no `/proc` and no
/// call that names a process's executable) std's answer is used, and when
/// it has none, `argv[0]`: resolved as given if it holds a `/`, else as the
/// shell found it, the first executable of that name on PATH.
pub fn self_exe() -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    if let Ok(exe) = std::fs::canonicalize("/proc/self/exe") {
        return Some(exe);
    }
    std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .ok()
        .or_else(|| {
            let argv0 = std::env::args_os().next()?;
            exe_from_argv0(&argv0, &std::env::var_os("PATH").unwrap_or_default())
        })
}

/// [`self_exe`]'s last resort: where `argv0` was found, resolved.
fn exe_from_argv0(argv0: &OsStr, path: &OsStr) -> Option<PathBuf> {
    let found = if argv0.as_bytes().contains(&b'/') {
        PathBuf::from(argv0)
    } else {
        find_program(argv0, path)?
    };
    std::fs::canonicalize(found).ok()
}

/// True if `argv0`'s basename contains `distcc`: distcc itself rather than
/// a compiler (5.1).
pub fn is_distcc_name(argv0: &OsStr) -> bool {
    let name = argv0.as_bytes();
    let base = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
    base.windows(6).any(|w| w == b"distcc")
}

/// True if `candidate` resolves to `self_exe` (this executable, resolved)
/// or to any distcc.
pub fn is_masquerade(candidate: &Path, self_exe: &Path) -> bool {
    std::fs::canonicalize(candidate)
        .is_ok_and(|real| real == self_exe || is_distcc_name(real.as_os_str()))
}

/// The first PATH entry holding an executable `name` that is not distcc;
/// empty entries are skipped.
pub fn which(name: &OsStr, path: &OsStr, self_exe: &Path) -> Option<PathBuf> {
    dirs(path)
        .map(|dir| dir.join(name))
        .find(|c| is_executable(c) && !is_masquerade(c, self_exe))
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
    for entry in entries(path) {
        let candidate = entry.join(name);
        if is_executable(&candidate) && is_masquerade(&candidate, self_exe) {
            tweaked = true;
            continue;
        }
        if found.is_none() && is_executable(&candidate) {
            found = Some(candidate);
        }
        kept.push(entry.0);
    }
    Some(RealCompiler {
        path: found?,
        child_path: OsString::from_vec(kept.join(&b':')),
        path_tweaked: tweaked,
    })
}

/// This process's safeguard level: 0 when [`SAFEGUARD_VAR`] is unset.
pub fn safeguard_level() -> u32 {
    parse_safeguard(std::env::var_os(SAFEGUARD_VAR).as_deref())
}

/// The level a [`SAFEGUARD_VAR`] value stands for, by 3.4's
/// `dcc_recursion_safeguard`: C's `atoi`, with a set value that reads as 0
/// (`0`, non-numeric, empty) counting as 1.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDir;

    use crate::testing::{fake_program as fake, join_path, symlink_in as link};

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
    fn distcc_names() {
        for (argv0, distcc) in [
            ("distcc", true),
            ("/usr/bin/distcc-rs", true),
            ("x-distcc", true),
            ("distccd", true),
            ("gcc", false),
            ("/usr/lib/distcc/gcc", false),
            ("distcc/gcc", false),
            ("", false),
        ] {
            assert_eq!(is_distcc_name(OsStr::new(argv0)), distcc, "{argv0}");
        }
    }

    #[test]
    fn path_entries_and_execvp_lookup() {
        let t = TestDir::new("masquerade-path");
        let bin = t.path().join("bin");
        let gcc = fake(&bin, "gcc");
        let words: Vec<PathBuf> = entries(OsStr::new("/a::b:")).map(|e| e.dir()).collect();
        let want: Vec<PathBuf> = ["/a", ".", "b", "."].iter().map(PathBuf::from).collect();
        assert_eq!(words, want);
        let kept: Vec<PathBuf> = dirs(OsStr::new("/a::b:")).collect();
        assert_eq!(kept, vec![PathBuf::from("/a"), PathBuf::from("b")]);
        let path = join_path(&[&t.path().join("missing"), &bin]);
        assert_eq!(find_program(OsStr::new("gcc"), &path), Some(gcc));
        assert_eq!(find_program(OsStr::new("cc"), &path), None);
        assert_eq!(find_program(OsStr::new("./gcc"), &path), None);
    }

    #[test]
    fn self_exe_is_this_test_binary() {
        let exe = self_exe().unwrap();
        assert!(exe.is_absolute() && is_executable(&exe), "{exe:?}");
        assert_eq!(
            Some(exe.clone()),
            std::env::current_exe()
                .ok()
                .and_then(|e| std::fs::canonicalize(e).ok())
        );
        // The argv[0] fallback: a bare name is found on PATH, a path as given.
        let dir = exe.parent().unwrap();
        let name = exe.file_name().unwrap();
        assert_eq!(exe_from_argv0(name, dir.as_os_str()), Some(exe.clone()));
        assert_eq!(exe_from_argv0(exe.as_os_str(), OsStr::new("")), Some(exe));
        assert_eq!(
            exe_from_argv0(OsStr::new("no-such-program"), OsStr::new("/")),
            None
        );
    }

    #[test]
    fn masquerade_skips_every_entry_that_is_distcc() {
        let t = TestDir::new("masquerade");
        let t = t.path();
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
        assert_eq!(which(OsStr::new("gcc"), &path, &me), Some(real.clone()));

        let plain = join_path(&[&t.join("real")]);
        let found = find_real_compiler(OsStr::new("gcc"), &plain, &me).unwrap();
        assert_eq!((found.child_path, found.path_tweaked), (plain, false));

        let only_us = join_path(&[&t.join("masq"), &t.join("masq2")]);
        assert_eq!(find_real_compiler(OsStr::new("gcc"), &only_us, &me), None);
        assert_eq!(which(OsStr::new("gcc"), &only_us, &me), None);
    }
}
