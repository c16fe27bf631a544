//! Which jobs the daemon will run: the compiler whitelist (masquerade
//! directories or `DISTCC_CMDLIST`) and the arguments it refuses.

use crate::sys::is_executable;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The compiler list from `DISTCC_CMDLIST`.
#[derive(Clone, Debug)]
pub struct CmdList {
    lines: Vec<Vec<u8>>,
    words: usize,
}

impl CmdList {
    /// Reads the list. `words` is `DISTCC_CMDLIST_NUMWORDS`: how many trailing
    /// `/`-separated components of a command are compared.
    pub fn read(path: &Path, words: usize) -> Result<CmdList, String> {
        let text = std::fs::read(path)
            .map_err(|e| format!("cannot read DISTCC_CMDLIST {}: {e}", path.display()))?;
        let lines = text
            .split(|&c| c == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        Ok(CmdList {
            lines,
            words: words.max(1),
        })
    }

    fn key<'a>(&self, command: &'a [u8]) -> &'a [u8] {
        let mut slashes = 0;
        for (i, &c) in command.iter().enumerate().rev() {
            if c == b'/' {
                slashes += 1;
                if slashes == self.words {
                    return &command[i + 1..];
                }
            }
        }
        command
    }

    /// The list line whose key matches the command's, which replaces it.
    fn lookup(&self, command: &[u8]) -> Option<&[u8]> {
        let key = self.key(command);
        self.lines
            .iter()
            .find(|line| self.key(line) == key)
            .map(Vec::as_slice)
    }
}

/// How the daemon decides which compilers to run.
#[derive(Clone, Debug)]
pub enum Whitelist {
    /// `--enable-tcp-insecure`: any compiler name or path.
    Insecure,
    /// `DISTCC_CMDLIST`; an unreadable list refuses every job.
    CmdList(Result<CmdList, String>),
    /// A name is allowed if one of these directories holds an executable
    /// link of that name that resolves to distcc or distcc-rs.
    Masquerade(Vec<PathBuf>),
}

/// The default masquerade directories: `<prefix>/lib/distcc` beside this
/// binary's `bin/`, then `/usr/lib/distcc` (and `/usr/local/lib/distcc`).
pub fn default_masquerade_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(prefix) =
        crate::masquerade::self_exe().and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
    {
        dirs.push(prefix.join("lib/distcc"));
    }
    for dir in [crate::masquerade::DEFAULT_DIR, "/usr/local/lib/distcc"] {
        if !dirs.iter().any(|d| d == Path::new(dir)) {
            dirs.push(PathBuf::from(dir));
        }
    }
    dirs
}

/// Directories as one line for messages: `a, b, c`.
pub fn show_dirs<'a>(dirs: impl Iterator<Item = &'a PathBuf>) -> String {
    dirs.map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// True if a resolved path's file name names distcc (distcc, distccd, distcc-rs).
pub(crate) fn names_distcc(real: &Path) -> bool {
    crate::masquerade::is_distcc_name(real.as_os_str())
}

/// True if `path` resolves to a distcc or distcc-rs binary.
fn resolves_to_distcc(path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|real| names_distcc(&real))
}

/// Strips a leading `/bin/` or `/usr/bin/` (any case), as distccd 3.4 does for
/// the whitelist check only.
fn strip_system_bin(argv0: &[u8]) -> &[u8] {
    for prefix in [&b"/usr/bin/"[..], b"/bin/"] {
        if argv0.len() > prefix.len() && argv0[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return &argv0[prefix.len()..];
        }
    }
    argv0
}

impl Whitelist {
    /// Checks the compiler a client asked for. Returns the command to run
    /// (the `DISTCC_CMDLIST` line replaces the name), or why it is refused.
    pub fn check(&self, argv0: &[u8]) -> Result<Vec<u8>, String> {
        let shown = String::from_utf8_lossy(argv0);
        if argv0.is_empty() || argv0[0] == b'-' {
            return Err(format!("compiler name '{shown}' is not a command"));
        }
        match self {
            Whitelist::Insecure => Ok(argv0.to_vec()),
            Whitelist::CmdList(Err(why)) => Err(format!("{why}; refusing every job")),
            Whitelist::CmdList(Ok(list)) => list
                .lookup(argv0)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| format!("compiler '{shown}' is not in DISTCC_CMDLIST")),
            Whitelist::Masquerade(dirs) => {
                let name = strip_system_bin(argv0);
                if name.contains(&b'/') {
                    return Err(format!(
                        "compiler name <{shown}> cannot be an absolute path"
                    ));
                }
                if name == b"." || name == b".." {
                    return Err(format!("compiler name <{shown}> is not a command"));
                }
                let allowed = dirs.iter().any(|dir| {
                    let link = dir.join(OsStr::from_bytes(name));
                    is_executable(&link) && resolves_to_distcc(&link)
                });
                if allowed {
                    Ok(argv0.to_vec())
                } else {
                    Err(format!(
                        "compiler '{shown}' is not in the masquerade whitelist ({})",
                        show_dirs(dirs.iter())
                    ))
                }
            }
        }
    }
}

/// Arguments the daemon refuses because they load code, read files on the
/// server, or write files outside the job's directory. Each row: how the
/// argument starts, and why it is refused.
const REFUSED_PREFIXES: &[(&str, &str)] = &[
    ("-fplugin", "loads a compiler plugin"),
    ("-fpass-plugin", "loads a compiler plugin"),
    ("-specs", "reads a specs file"),
    ("--specs", "reads a specs file"),
    ("-B", "runs compiler programs from a directory"),
    ("--prefix", "runs compiler programs from a directory"),
    ("-wrapper", "runs a wrapper program"),
    ("@", "reads a response file"),
    ("-include", "reads a file"),
    ("--include", "reads a file"),
    ("-imacros", "reads a file"),
    ("--imacros", "reads a file"),
    ("-fprofile", "reads or writes profile files"),
    ("-fauto-profile", "reads a profile file"),
    ("--coverage", "writes coverage files"),
    ("-ftest-coverage", "writes coverage files"),
    ("-Xclang", "passes options straight to the compiler proper"),
    ("-mllvm", "passes options straight to LLVM"),
    ("-Xpreprocessor", "passes options to the preprocessor"),
    ("-Wp,", "passes options to the preprocessor"),
    ("-MF", "writes a dependency file"),
    ("-aux-info", "writes a file"),
    ("-dumpdir", "chooses where auxiliary files are written"),
    ("-dumpbase", "chooses where auxiliary files are written"),
];

/// Assembler options (in `-Wa,` or `-Xassembler`) that name files.
const REFUSED_ASSEMBLER: &[(&str, &str)] = &[
    ("-a", "writes an assembler listing"),
    ("--MD", "writes a dependency file"),
    ("-o", "names an output file"),
    ("@", "reads a response file"),
    ("-I", "reads files from a directory"),
];

/// The language in which to compile an already preprocessed source, for a
/// client's `-x LANG`. The daemon's input is always preprocessed: compiling it
/// as `c` would run the preprocessor again, on the server, where `#include`
/// reads the server's files. Languages without a preprocessed form are refused.
pub fn preprocessed_language(lang: &[u8]) -> Option<&'static [u8]> {
    Some(match lang {
        b"c" | b"cpp-output" | b"c-cpp-output" => b"cpp-output",
        b"c++" | b"c++-cpp-output" => b"c++-cpp-output",
        b"objective-c" | b"objective-c-cpp-output" | b"objc-cpp-output" => {
            b"objective-c-cpp-output"
        }
        b"objective-c++" | b"objective-c++-cpp-output" | b"objc++-cpp-output" => {
            b"objective-c++-cpp-output"
        }
        _ => return None,
    })
}

/// Checks every argument after the compiler name. Returns the reason for the
/// first refused one.
pub fn check_arguments(argv: &[Vec<u8>]) -> Result<(), String> {
    let mut assembler_next = false;
    let mut language_next = false;
    for arg in argv.iter().skip(1) {
        let shown = String::from_utf8_lossy(arg);
        if assembler_next {
            assembler_next = false;
            check_assembler(arg, &shown)?;
            continue;
        }
        if language_next {
            language_next = false;
            check_language(arg, &shown)?;
            continue;
        }
        if arg == b"-x" {
            language_next = true;
            continue;
        }
        if let Some(lang) = arg.strip_prefix(b"-x") {
            check_language(lang, &shown)?;
            continue;
        }
        if arg == b"-fdirectives-only" {
            return Err(format!(
                "argument '{shown}' makes the compiler read #include files on the server"
            ));
        }
        for (prefix, why) in REFUSED_PREFIXES {
            if arg.starts_with(prefix.as_bytes()) {
                return Err(format!("argument '{shown}' {why}"));
            }
        }
        if let Some(opts) = arg.strip_prefix(b"-Wa,") {
            for opt in opts.split(|&c| c == b',') {
                check_assembler(opt, &shown)?;
            }
        } else if arg == b"-Xassembler" {
            assembler_next = true;
        } else if let Some(rest) = arg.strip_prefix(b"-f") {
            // -fNAME=/path: options that take a file. The prefix maps only
            // rewrite names and are common in reproducible builds.
            if let Some(eq) = rest.iter().position(|&c| c == b'=') {
                let name = &rest[..eq];
                if rest[eq..].contains(&b'/') && !name.ends_with(b"prefix-map") {
                    return Err(format!("argument '{shown}' names a file on the server"));
                }
            }
        }
    }
    Ok(())
}

fn check_language(lang: &[u8], shown: &str) -> Result<(), String> {
    match preprocessed_language(lang) {
        Some(_) => Ok(()),
        None => Err(format!(
            "language in '{shown}' has no preprocessed form; compiling it would run \
             the preprocessor on the server"
        )),
    }
}

fn check_assembler(opt: &[u8], shown: &str) -> Result<(), String> {
    for (prefix, why) in REFUSED_ASSEMBLER {
        if opt.starts_with(prefix.as_bytes()) {
            return Err(format!("assembler option in '{shown}' {why}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::args::argv_of as argv;

    #[test]
    fn forbidden_arguments_are_refused() {
        let refused = [
            "-fplugin=/tmp/evil.so",
            "-fplugin-arg-evil-x=1",
            "-fpass-plugin=/tmp/p.so",
            "-specs=/tmp/specs",
            "--specs=/tmp/specs",
            "-B/tmp/evil",
            "-B",
            "-wrapper",
            "@/etc/passwd",
            "-include",
            "-include/etc/passwd",
            "-imacros",
            "-fprofile-use=/tmp/p",
            "-fprofile-generate",
            "-fauto-profile=/tmp/x",
            "--coverage",
            "-Xclang",
            "-mllvm",
            "-Xpreprocessor",
            "-Wp,-MD,/tmp/x",
            "-MF/tmp/x",
            "-aux-info",
            "-dumpdir",
            "-Wa,-alh=/tmp/listing",
            "-Wa,--MD,/tmp/x.d",
            "-Wa,-o,/tmp/x",
            "-Wa,@/etc/passwd",
            "-fdump-tree-all=/tmp/dump",
            "-fsanitize-ignorelist=/etc/shadow",
            "-fopt-info-all=/tmp/x",
            "-fdirectives-only",
            "-xc-header",
            "-xassembler-with-cpp",
            "-xgo",
        ];
        for arg in refused {
            let line = format!("gcc -c x.c {arg} -o x.o");
            assert!(check_arguments(&argv(&line)).is_err(), "{arg} was allowed");
        }
        assert!(check_arguments(&argv("gcc -x c-header -c x.c")).is_err());
        assert!(check_arguments(&argv("gcc -x go -c x.c")).is_err());
        assert!(check_arguments(&argv("gcc -x c -c x.c")).is_ok());
        assert!(check_arguments(&argv("gcc -xc++ -c x.cc")).is_ok());
        let mut with_xassembler = argv("gcc -c x.c -o x.o -Xassembler");
        with_xassembler.push(b"-al=/tmp/x".to_vec());
        assert!(check_arguments(&with_xassembler).is_err());
    }

    #[test]
    fn ordinary_arguments_pass() {
        let line = "gcc -c x.c -o x.o -O2 -g -Wall -fPIC -std=gnu11 -ffile-prefix-map=/a=/b \
                    -fdebug-prefix-map=/x=/y -Wa,--noexecstack -fdiagnostics-color=always \
                    -I/usr/include/foo -iquote inc --sysroot=/opt/sys -x c -xc++ -Wl,-z,now \
                    -fstack-protector-strong -fno-omit-frame-pointer -MD -target x86_64-linux-gnu";
        assert_eq!(check_arguments(&argv(line)), Ok(()));
    }

    #[test]
    fn masquerade_rules() {
        let tmp = crate::testing::TestDir::new("masq");
        let dir = tmp.path.clone();
        let exe = std::env::current_exe().unwrap();
        let fake = dir.join("distcc-rs");
        std::fs::copy(&exe, &fake).unwrap();
        std::os::unix::fs::symlink(&fake, dir.join("gcc")).unwrap();
        std::os::unix::fs::symlink(&fake, dir.join("x86_64-linux-gnu-gcc")).unwrap();
        std::os::unix::fs::symlink("/bin/sh", dir.join("sh")).unwrap();
        let wl = Whitelist::Masquerade(vec![dir.clone()]);
        assert!(wl.check(b"gcc").is_ok());
        assert!(wl.check(b"x86_64-linux-gnu-gcc").is_ok());
        assert!(wl.check(b"/usr/bin/gcc").is_ok());
        assert!(wl.check(b"/BIN/gcc").is_ok());
        assert!(wl.check(b"/usr/local/bin/gcc").is_err());
        assert!(wl.check(b"../gcc").is_err());
        assert!(wl.check(b"sh").is_err(), "a link that is not distcc");
        assert!(wl.check(b"clang").is_err());
        assert!(wl.check(b"-gcc").is_err());
    }

    #[test]
    fn cmdlist_rules() {
        let tmp = crate::testing::TestDir::new("cmdlist");
        let path = tmp.join("commands.allow");
        std::fs::write(&path, "/usr/bin/gcc\n/opt/cross/bin/cc\n").unwrap();
        let wl = Whitelist::CmdList(CmdList::read(&path, 1));
        assert_eq!(wl.check(b"gcc").unwrap(), b"/usr/bin/gcc");
        assert_eq!(wl.check(b"/any/where/cc").unwrap(), b"/opt/cross/bin/cc");
        assert!(wl.check(b"clang").is_err());
        let two = Whitelist::CmdList(CmdList::read(&path, 2));
        assert!(two.check(b"gcc").is_err());
        assert_eq!(two.check(b"/x/bin/gcc").unwrap(), b"/usr/bin/gcc");
        let missing = Whitelist::CmdList(CmdList::read(&tmp.join("nope"), 1));
        assert!(missing.check(b"gcc").is_err());
    }
}
