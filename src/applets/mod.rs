//! The applet table and the multicall dispatcher: `argv[0]` (or `argv[1]`) picks the applet.
//!
//! One table drives dispatch, `--list` and `--install`, as in busybox. The
//! basename of `argv[0]`, with any leading `-` removed, is matched against the
//! applet names and link names; the longest match wins, where a match is the
//! whole name or a suffix that follows a `-` (so `x86_64-linux-gnu-distccd`
//! reaches `distccd`). Called by its own name, the binary takes the applet
//! from `argv[1]`; an `argv[1]` that names no applet (a compiler, or an option
//! such as `-c`) goes to the client, as `distcc gcc -c x.c` does. Any other
//! `argv[0]` is a masquerade shim: the client, compiling with the compiler of
//! that name.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::exitcode::ExitCode;

mod client;
mod daemon;
mod key;
mod mon;
mod pump;
pub mod status;
mod stdout;
mod wrap;

pub use status::{Error, Outcome, Status};

/// An applet's entry point: its command line in, how it ended out. Errors
/// are printed by the dispatcher, never by the applet.
pub type AppletMain = fn(Call) -> Outcome;

/// The command line an applet is called with.
pub struct Call {
    /// argv: `args[0]` is the name the applet was reached by (a link's
    /// path, or the applet's name after `distcc-rs`).
    pub args: Vec<OsString>,
    /// The name `--version` puts first: the basename the binary was called
    /// by (`distcc`, `x86_64-linux-gnu-distccd`), or `distcc-rs`.
    pub called: String,
    /// How to call the applet again, for usage lines: `distccd`,
    /// `distcc-rs mon`.
    pub command: String,
}

/// One row of the applet table.
pub struct Applet {
    /// The subcommand name: `distcc-rs NAME ...`.
    pub name: &'static str,
    /// Names the applet is also reached by when the binary is linked under them.
    pub links: &'static [&'static str],
    pub main: AppletMain,
    /// One line for `--list`.
    pub about: &'static str,
    /// The program's name in its error messages, log lines and syslog
    /// ident, however it was called: one prefix per program.
    pub program: &'static str,
    /// The exit status for a bad command line.
    pub usage_status: u8,
    /// The options, for the line after a usage error (empty: none).
    pub synopsis: &'static str,
}

/// distcc's status for a bad command line.
const EXIT_BAD_ARGUMENTS: u8 = ExitCode::BadArguments as u8;

/// Every applet that works today. Applets are registered only once they work.
pub const APPLETS: &[Applet] = &[
    Applet {
        name: "daemon",
        links: &["distccd"],
        main: daemon::main,
        about: "distcc compile server (distccd), protocols 1 to 3",
        program: "distccd",
        usage_status: EXIT_BAD_ARGUMENTS,
        synopsis: "",
    },
    Applet {
        name: "client",
        links: &["distcc"],
        main: client::main,
        about: "distcc client: distcc-rs COMPILER ARGS, or linked as a compiler name",
        program: "distcc",
        usage_status: EXIT_BAD_ARGUMENTS,
        synopsis: "",
    },
    Applet {
        name: "mon",
        links: &["distccmon-text"],
        main: mon::main,
        about: "text monitor (distccmon-text): the jobs of local clients or of a daemon",
        program: "distccmon-text",
        // distccmon-text's status for a bad command line, not distcc's 101.
        usage_status: 1,
        synopsis: "[DELAY] [--summary] [--daemon HOST[:PORT] | --cluster HOST[:PORT]...]",
    },
    Applet {
        name: "pump",
        links: &["pump", "distcc-pump"],
        main: pump::main,
        about:
            "pump mode: run COMMAND with an include server (distcc-pump), or --startup/--shutdown",
        program: "distcc-pump",
        usage_status: 1,
        synopsis: "COMMAND [ARG...] | --startup | --shutdown",
    },
    Applet {
        name: "key",
        links: &[],
        main: key::main,
        about:
            "make or show the keys of the encrypted channel (key generate FILE, key public FILE)",
        program: "distcc-rs key",
        usage_status: 1,
        synopsis: "generate FILE [--comment TEXT] | public FILE",
    },
    Applet {
        name: "wrap",
        links: &[],
        main: wrap::main,
        about: "make this machine a cross helper: clang wrappers, whitelist, service files",
        program: "distcc-rs wrap",
        usage_status: EXIT_BAD_ARGUMENTS,
        synopsis: "",
    },
];

/// The dispatcher's own commands (`--list`, `--install`, ...), as a row
/// for printing their errors.
const SELF: Applet = Applet {
    name: SELF_NAME,
    links: &[],
    main: self_main,
    about: "",
    program: SELF_NAME,
    usage_status: EXIT_BAD_ARGUMENTS,
    synopsis: "",
};

/// The arguments after `argv[0]` as words argh can read, or the first one
/// that is not UTF-8.
pub(crate) fn utf8_words(args: &[OsString]) -> Result<Vec<String>, OsString> {
    args.iter()
        .skip(1)
        .map(|arg| arg.to_str().map(String::from).ok_or_else(|| arg.clone()))
        .collect()
}

/// Parses an applet's command line with argh: `--help` is printed (through
/// the one stdout writer) and ends the applet with status 0; a bad command
/// line ends it with argh's message as a usage error.
pub(crate) fn parse_options<T: argh::FromArgs>(
    command: &[&str],
    words: &[&str],
) -> Result<T, Outcome> {
    T::from_args(command, words).map_err(|early| match early.status {
        Ok(()) => stdout::print(&early.output).map(|()| Status::OK),
        Err(()) => Ok(Status::Usage(early.output.trim_end().to_string())),
    })
}

/// The exit status for a missing argv[0], as busybox uses for an unknown applet.
const EXIT_UNKNOWN_APPLET: u8 = 127;

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

/// The client applet's row, which also serves masquerade shims.
fn client_applet() -> &'static Applet {
    APPLETS
        .iter()
        .find(|a| a.name == "client")
        .expect("the client is in the applet table")
}

/// Runs the applet chosen by argv, prints its error if it ended with one,
/// and returns the process's exit status.
pub fn dispatch(args: Vec<OsString>) -> u8 {
    let Some(argv0) = args.first().cloned() else {
        report(&SELF, SELF_NAME, Err(Error::failure("no argv[0]")));
        return EXIT_UNKNOWN_APPLET;
    };
    let (applet, call) = choose(args, &argv0);
    crate::logging::start(applet.program);
    let command = call.command.clone();
    report(applet, &command, (applet.main)(call))
}

/// The applet argv names and the command line it gets.
fn choose(args: Vec<OsString>, argv0: &OsStr) -> (&'static Applet, Call) {
    let called = String::from_utf8_lossy(called_name(argv0)).into_owned();
    let call = |args, command| Call {
        args,
        called: called.clone(),
        command,
    };
    if !is_self_name(argv0) {
        // An applet's link, or a compiler's name: a masquerade shim.
        let applet = find_applet(argv0).unwrap_or_else(client_applet);
        return (applet, call(args, called.clone()));
    }
    let named = args.get(1).and_then(|first| {
        APPLETS
            .iter()
            .find(|a| OsStr::new(a.name) == first.as_os_str())
    });
    match named {
        Some(applet) => {
            let command = format!("{SELF_NAME} {}", applet.name);
            (applet, call(args[1..].to_vec(), command))
        }
        None if is_self_command(args.get(1)) => (&SELF, call(args, SELF_NAME.into())),
        // `distcc-rs gcc -c x.c`, `distcc-rs -c x.c`, `distcc-rs --show-hosts`.
        None => (client_applet(), call(args, SELF_NAME.into())),
    }
}

/// The words after `distcc-rs` that the dispatcher answers itself.
const SELF_COMMANDS: &[&str] = &[
    "--list",
    "--help",
    "-h",
    "--version",
    "--install",
    "--uninstall",
    "--install-masquerade",
];

fn is_self_command(first: Option<&OsString>) -> bool {
    first.is_none_or(|first| SELF_COMMANDS.iter().any(|c| first == c))
}

/// Prints an applet's error (the one place errors are printed) and turns
/// its outcome into the process's exit status.
fn report(applet: &Applet, command: &str, outcome: Outcome) -> u8 {
    let status = match outcome {
        Ok(status) => status,
        Err(Error::StdoutClosed) => return 0,
        Err(Error::Failed { status, message }) => {
            let lines = message
                .lines()
                .map(|line| format!("{}: {line}\n", applet.program));
            say_error(&lines.collect::<String>());
            status
        }
    };
    match status {
        Status::Exit(code) => code as u8,
        Status::Child(code) => code,
        Status::Failure => 1,
        Status::Usage(message) => {
            let mut text = format!("{}: {message}\n", applet.program);
            if !applet.synopsis.is_empty() {
                text += &format!("Usage: {command} {}\n", applet.synopsis);
            }
            text += &format!("Try '{command} --help' for more information.\n");
            say_error(&text);
            applet.usage_status
        }
    }
}

/// Writes to stderr in one piece; a stderr that cannot be written to is
/// passed over, as there is nowhere left to say so.
pub(super) fn say_error(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The dispatcher's own commands.
fn self_main(call: Call) -> Outcome {
    let args = &call.args;
    let Some(first) = args.get(1) else {
        say_error(&usage());
        return Ok(Status::Exit(ExitCode::BadArguments));
    };
    match first.to_str() {
        Some("--list") => stdout::print(list()).map(|()| Status::OK),
        Some("--help") | Some("-h") => stdout::print(usage()).map(|()| Status::OK),
        Some("--version") => stdout::print(crate::version_banner(SELF_NAME)).map(|()| Status::OK),
        Some("--install") => install(&args[2..]),
        Some("--uninstall") => uninstall(&args[2..]),
        Some("--install-masquerade") => client::install_masquerade(&args[2..]),
        _ => unreachable!("is_self_command chose these words"),
    }
}

fn usage() -> String {
    format!(
        "Usage: {SELF_NAME} APPLET [ARGS...]\n\
         \x20      {SELF_NAME} COMPILER [ARGS...]          compile through distcc (see '{SELF_NAME} client --help')\n\
         \x20      {SELF_NAME} --list\n\
         \x20      {SELF_NAME} --install [-s] DIR          links for the applets (distccd, distcc, distccmon-text, pump, distcc-pump)\n\
         \x20      {SELF_NAME} --uninstall DIR             removes those links where they lead here\n\
         \x20      {SELF_NAME} --install-masquerade [DIR]  compiler links (cc, gcc, ...; default /usr/lib/distcc)\n\
         \x20      {SELF_NAME} --version\n\
         \n\
         Linked under an applet's name (for example distccd), the binary runs that applet;\n\
         linked under a compiler's name (gcc, cc, x86_64-linux-gnu-gcc), it is a masquerade shim.\n\
         \n\
         Applets:\n{}",
        list()
    )
}

fn list() -> String {
    let mut text = String::new();
    for applet in APPLETS {
        let links = if applet.links.is_empty() {
            String::new()
        } else {
            format!(" (linked as {})", applet.links.join(", "))
        };
        text += &format!("  {:<10} {}{}\n", applet.name, applet.about, links);
    }
    text
}

/// Every applet's link names, in table order.
fn link_names() -> impl Iterator<Item = &'static str> {
    APPLETS.iter().flat_map(|a| a.links.iter().copied())
}

/// This executable, with symbolic links resolved.
fn this_exe() -> Result<PathBuf, Error> {
    crate::masquerade::self_exe()
        .ok_or_else(|| Error::exit(ExitCode::DistccFailed, "cannot find this executable"))
}

/// `--install [-s] DIR`: makes a hard link (or with `-s` a symbolic link) to
/// this binary in DIR for every applet's link names, and prints each
/// link's path. A symbolic link to a
/// binary in DIR itself is relative (`distccd -> distcc-rs`), so it still
/// holds when DIR is moved, as a staged `make install DESTDIR=...` is.
fn install(args: &[OsString]) -> Outcome {
    let (symbolic, dir) = match args {
        [flag, dir] if flag == "-s" => (true, Path::new(dir)),
        [dir] if dir != "-s" => (false, Path::new(dir)),
        _ => {
            return Ok(Status::Usage(format!(
                "usage: {SELF_NAME} --install [-s] DIR"
            )))
        }
    };
    let exe = this_exe()?;
    let target = match (exe.parent(), dir.canonicalize()) {
        (Some(parent), Ok(dir)) if symbolic && parent == dir => {
            PathBuf::from(exe.file_name().unwrap_or(exe.as_os_str()))
        }
        _ => exe.clone(),
    };
    let mut failed = 0;
    for link in link_names() {
        let path = dir.join(link);
        let _ = std::fs::remove_file(&path);
        let made = if symbolic {
            std::os::unix::fs::symlink(&target, &path)
        } else {
            std::fs::hard_link(&exe, &path)
        };
        failed += report_link(&path, made, "link")?;
    }
    links_outcome(failed, "made")
}

/// `--uninstall DIR`: removes every applet link in DIR that leads to this
/// binary (a symbolic link that resolves to it, or a hard link to it),
/// prints each one's path, and leaves anything else of those names alone.
fn uninstall(args: &[OsString]) -> Outcome {
    let [dir] = args else {
        return Ok(Status::Usage(format!("usage: {SELF_NAME} --uninstall DIR")));
    };
    let exe = this_exe()?;
    let mut failed = 0;
    for link in link_names() {
        let path = Path::new(dir).join(link);
        if !is_link_to(&path, &exe) {
            continue;
        }
        failed += report_link(&path, std::fs::remove_file(&path), "remove")?;
    }
    links_outcome(failed, "removed")
}

/// Whether `path` is a symbolic or hard link to `exe` (and not `exe` itself).
fn is_link_to(path: &Path, exe: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(own), Ok(target), Ok(exe_meta)) = (
        std::fs::symlink_metadata(path),
        std::fs::metadata(path),
        std::fs::metadata(exe),
    ) else {
        return false;
    };
    let same = (target.dev(), target.ino()) == (exe_meta.dev(), exe_meta.ino());
    same && (own.file_type().is_symlink() || path.canonicalize().ok().as_deref() != Some(exe))
}

/// Reports one link made or removed: its path on stdout, or why it could
/// not be done (`cannot VERB PATH: ERR`) on stderr. Returns the failures (0
/// or 1) to count.
pub(super) fn report_link(
    path: &Path,
    done: std::io::Result<()>,
    verb: &str,
) -> Result<usize, Error> {
    match done {
        Ok(()) => {
            stdout::print(format!("{}\n", path.display()))?;
            Ok(0)
        }
        Err(err) => {
            say_error(&format!(
                "{SELF_NAME}: cannot {verb} {}: {err}\n",
                path.display()
            ));
            Ok(1)
        }
    }
}

pub(super) fn links_outcome(failed: usize, done: &str) -> Outcome {
    match failed {
        0 => Ok(Status::OK),
        n => Err(Error::exit(
            ExitCode::DistccFailed,
            format!("{n} link(s) could not be {done}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_has_no_duplicate_names() {
        let mut seen = HashSet::new();
        for applet in APPLETS {
            // An applet may be linked under its own name (`pump`).
            let own_links = applet.links.iter().filter(|l| **l != applet.name);
            for name in std::iter::once(&applet.name).chain(own_links) {
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
        assert_eq!(name("pump"), Some("pump"));
        assert_eq!(name("/usr/bin/distcc-pump"), Some("pump"));
    }

    #[test]
    fn outcomes_become_exit_statuses() {
        let mon = find_applet(OsStr::new("distccmon-text")).unwrap();
        let daemon = find_applet(OsStr::new("distccd")).unwrap();
        let usage = || Ok(Status::Usage("bad".into()));
        assert_eq!(report(mon, "distccmon-text", usage()), 1);
        assert_eq!(report(daemon, "distccd", usage()), 101);
        assert_eq!(report(daemon, "distccd", Ok(Status::OK)), 0);
        assert_eq!(report(daemon, "distccd", Ok(Status::Child(139))), 139);
        assert_eq!(report(daemon, "distccd", Err(Error::StdoutClosed)), 0);
        let io = Error::exit(ExitCode::IoError, "x");
        assert_eq!(report(daemon, "distccd", Err(io)), 107);
        assert_eq!(report(daemon, "distccd", Err(Error::failure("x"))), 1);
    }

    #[test]
    fn self_name_is_recognised_with_path_and_dash() {
        assert!(is_self_name(OsStr::new("/usr/bin/distcc-rs")));
        assert!(is_self_name(OsStr::new("-distcc-rs")));
        assert!(!is_self_name(OsStr::new("distccd")));
    }
}
