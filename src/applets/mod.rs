//! The applet table and the multicall dispatcher: argv[0] (or argv[1]) picks the applet.
//!
//! One table drives dispatch, `--list` and `--install`, as in busybox. The
//! basename of argv[0], with any leading `-` removed, is matched against the
//! applet names and link names; the longest match wins, where a match is the
//! whole name or a suffix that follows a `-` (so `x86_64-linux-gnu-distccd`
//! reaches `distccd`). Called by its own name, the binary takes the applet
//! from argv[1]; an argv[1] that names no applet (a compiler, or an option
//! such as `-c`) goes to the client, as `distcc gcc -c x.c` does. Any other
//! argv[0] is a masquerade shim: the client, compiling with the compiler of
//! that name.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

mod client;
mod daemon;
mod mon;
mod wrap;

/// An applet's entry point: the full argv (argv[0] is the name it was called
/// by) in, an exit code out.
pub type AppletMain = fn(Vec<OsString>) -> i32;

/// One row of the applet table.
pub struct Applet {
    /// The subcommand name: `distcc-rs NAME ...`.
    pub name: &'static str,
    /// Names the applet is also reached by when the binary is linked under them.
    pub links: &'static [&'static str],
    pub main: AppletMain,
    /// One line for `--list`.
    pub about: &'static str,
}

/// Every applet that works today. Applets are registered only once they work.
pub const APPLETS: &[Applet] = &[
    Applet {
        name: "daemon",
        links: &["distccd"],
        main: daemon::main,
        about: "distcc compile server (distccd), protocols 1 and 2",
    },
    Applet {
        name: "client",
        links: &["distcc"],
        main: client::main,
        about: "distcc client: distcc-rs COMPILER ARGS, or linked as a compiler name",
    },
    Applet {
        name: "mon",
        links: &["distccmon-text"],
        main: mon::main,
        about: "text monitor (distccmon-text): the jobs of local clients or of a daemon",
    },
    Applet {
        name: "wrap",
        links: &[],
        main: wrap::main,
        about: "make this machine a cross helper: clang wrappers, whitelist, service files",
    },
];

/// Parses an applet's command line with argh. `Err(code)` means the applet
/// exits now with `code`: 0 once `--help` is printed, or what `bad` returns
/// for a bad command line (it gets argh's message).
pub(crate) fn parse_options<T: argh::FromArgs>(
    command: &[&str],
    words: &[&str],
    bad: impl FnOnce(&str) -> i32,
) -> Result<T, i32> {
    T::from_args(command, words).map_err(|early| match early.status {
        Ok(()) => {
            print!("{}", early.output);
            0
        }
        Err(()) => bad(early.output.trim_end()),
    })
}

/// The exit status for a missing argv[0], as busybox uses for an unknown applet.
const EXIT_UNKNOWN_APPLET: i32 = 127;

/// distcc's status for a bad command line.
const EXIT_BAD_ARGUMENTS: i32 = 101;

/// The name the binary answers to itself.
const SELF_NAME: &str = "distcc-rs";

/// Finds the applet for a called name by the rules in the module doc.
pub fn find_applet(called: &OsStr) -> Option<&'static Applet> {
    let base = called_name(called);
    let mut best: Option<(&'static Applet, usize)> = None;
    for applet in APPLETS {
        for name in std::iter::once(&applet.name).chain(applet.links.iter()) {
            if name_matches(base, name.as_bytes()) && best.is_none_or(|(_, len)| name.len() > len) {
                best = Some((applet, name.len()));
            }
        }
    }
    best.map(|(applet, _)| applet)
}

fn name_matches(base: &[u8], name: &[u8]) -> bool {
    base == name
        || (base.len() > name.len()
            && base.ends_with(name)
            && base[base.len() - name.len() - 1] == b'-')
}

/// The name the binary was called by: argv[0]'s basename without a leading
/// `-` (as a login shell's argv[0] has).
fn called_name(argv0: &OsStr) -> &[u8] {
    let base = Path::new(argv0).file_name().unwrap_or(argv0).as_bytes();
    base.strip_prefix(b"-").unwrap_or(base)
}

fn is_self_name(called: &OsStr) -> bool {
    called_name(called) == SELF_NAME.as_bytes()
}

/// Runs the applet chosen by argv and returns its exit code.
pub fn dispatch(args: Vec<OsString>) -> i32 {
    let Some(argv0) = args.first().cloned() else {
        eprintln!("{SELF_NAME}: no argv[0]");
        return EXIT_UNKNOWN_APPLET;
    };
    if !is_self_name(&argv0) {
        return match find_applet(&argv0) {
            Some(applet) => (applet.main)(args),
            // A compiler's name: a masquerade shim.
            None => client::main(args),
        };
    }
    let Some(first) = args.get(1) else {
        usage(&mut std::io::stderr());
        return EXIT_BAD_ARGUMENTS;
    };
    match first.to_str() {
        Some("--list") => {
            list(&mut std::io::stdout());
            0
        }
        Some("--help") | Some("-h") => {
            usage(&mut std::io::stdout());
            0
        }
        Some("--version") => {
            print!("{}", crate::version_banner(SELF_NAME));
            0
        }
        Some("--install") => install(&args[2..]),
        Some("--install-masquerade") => client::install_masquerade(&args[2..]),
        _ => match APPLETS
            .iter()
            .find(|a| OsStr::new(a.name) == first.as_os_str())
        {
            Some(applet) => (applet.main)(args[1..].to_vec()),
            // `distcc-rs gcc -c x.c`, `distcc-rs -c x.c`, `distcc-rs --show-hosts`.
            None => client::main(args),
        },
    }
}

fn usage(out: &mut dyn Write) {
    let _ = writeln!(
        out,
        "Usage: {SELF_NAME} APPLET [ARGS...]\n\
         \x20      {SELF_NAME} COMPILER [ARGS...]          compile through distcc (see '{SELF_NAME} client --help')\n\
         \x20      {SELF_NAME} --list\n\
         \x20      {SELF_NAME} --install [-s] DIR          links for the applets (distccd, distcc, distccmon-text)\n\
         \x20      {SELF_NAME} --install-masquerade [DIR]  compiler links (cc, gcc, ...; default /usr/lib/distcc)\n\
         \x20      {SELF_NAME} --version\n\
         \n\
         Linked under an applet's name (for example distccd), the binary runs that applet;\n\
         linked under a compiler's name (gcc, cc, x86_64-linux-gnu-gcc), it is a masquerade shim.\n\
         \n\
         Applets:"
    );
    list(out);
}

fn list(out: &mut dyn Write) {
    for applet in APPLETS {
        let links = if applet.links.is_empty() {
            String::new()
        } else {
            format!(" (linked as {})", applet.links.join(", "))
        };
        let _ = writeln!(out, "  {:<10} {}{}", applet.name, applet.about, links);
    }
}

/// `--install [-s] DIR`: makes a hard link (or with `-s` a symbolic link) to
/// this binary in DIR for every applet's link names.
fn install(args: &[OsString]) -> i32 {
    let (symbolic, dir) = match args {
        [flag, dir] if flag == "-s" => (true, dir),
        [dir] if dir != "-s" => (false, dir),
        _ => {
            eprintln!("Usage: {SELF_NAME} --install [-s] DIR");
            return 101;
        }
    };
    let Some(exe) = crate::masquerade::self_exe() else {
        eprintln!("{SELF_NAME}: cannot find this executable");
        return 100;
    };
    let mut status = 0;
    for link in APPLETS.iter().flat_map(|a| a.links.iter()) {
        let path: PathBuf = Path::new(dir).join(link);
        let _ = std::fs::remove_file(&path);
        let made = if symbolic {
            std::os::unix::fs::symlink(&exe, &path)
        } else {
            std::fs::hard_link(&exe, &path)
        };
        if let Err(err) = made {
            eprintln!("{SELF_NAME}: cannot link {}: {err}", path.display());
            status = 100;
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_has_no_duplicate_names() {
        let mut seen = HashSet::new();
        for applet in APPLETS {
            for name in std::iter::once(&applet.name).chain(applet.links.iter()) {
                assert!(seen.insert(*name), "duplicate applet name {name}");
            }
        }
        assert!(!seen.contains(SELF_NAME));
    }

    #[test]
    fn argv0_dispatch_rules() {
        let name = |s: &str| find_applet(OsStr::new(s)).map(|a| a.name);
        assert_eq!(name("distccd"), Some("daemon"));
        assert_eq!(name("/usr/sbin/distccd"), Some("daemon"));
        assert_eq!(name("-distccd"), Some("daemon"));
        assert_eq!(name("x86_64-linux-gnu-distccd"), Some("daemon"));
        assert_eq!(name("daemon"), Some("daemon"));
        assert_eq!(name("notdistccd"), None);
        assert_eq!(name("distccd-old"), None);
        assert_eq!(name("nosuchapplet"), None);
        assert_eq!(name("distcc"), Some("client"));
        assert_eq!(name("/usr/bin/distcc"), Some("client"));
        assert_eq!(name("gcc"), None);
        assert_eq!(name("distccmon-text"), Some("mon"));
        assert_eq!(name("/usr/local/bin/distccmon-text"), Some("mon"));
    }

    #[test]
    fn self_name_is_recognised_with_path_and_dash() {
        assert!(is_self_name(OsStr::new("/usr/bin/distcc-rs")));
        assert!(is_self_name(OsStr::new("-distcc-rs")));
        assert!(!is_self_name(OsStr::new("distccd")));
    }
}
