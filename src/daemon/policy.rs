//! Which compilers the daemon will run: the whitelist (masquerade
//! directories or `DISTCC_CMDLIST`). The arguments it refuses are rows of
//! the option table, [`crate::options`].

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

#[cfg(test)]
mod tests {
    use super::*;

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
