//! The client applet: `distcc-rs COMPILER ARGS...`, the `distcc` link, and masquerade shims linked under a compiler's name.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::{say_error, stdout, Call, Error, Outcome, Status};
use crate::client::{self, compiler, hosts, Invocation};
use crate::exitcode::ExitCode;
use crate::masquerade;

/// The names `--install-masquerade` links when a compiler of that name is on PATH.
const MASQUERADE_NAMES: &[&str] = &["cc", "c++", "gcc", "g++", "clang", "clang++"];

/// Entry point. `args[0]` decides the mode: a name containing `distcc`
/// (distcc, distcc-rs) or the subcommand name `client` is the explicit or
/// implicit form, anything else is a masquerade shim named after the compiler.
pub fn main(call: Call) -> Outcome {
    client::init_logging();
    if masquerade::is_distcc_name(&call.args[0]) || call.args[0] == "client" {
        distcc_mode(call)
    } else {
        masquerade_mode(call.args)
    }
}

const USAGE: &str = "Usage:\n\
         \x20  distcc-rs [--] COMPILER [COMPILE OPTIONS]\n\
         \x20  distcc-rs [COMPILE OPTIONS]            (the compiler is cc)\n\
         \x20  COMPILER [COMPILE OPTIONS]             (a masquerade link named after the compiler)\n\
         \x20  distcc-rs --scan-includes [COMPILER] [COMPILE OPTIONS]\n\
         \x20  distcc-rs --show-hosts | -j | --help | --version\n\
         \n\
         Options:\n\
         \x20  --help          this text\n\
         \x20  --version       the version banner\n\
         \x20  --show-hosts    the host list, one host per line\n\
         \x20  -j              the sum of the hosts' job limits (for make -j)\n\
         \x20  --scan-includes the files pump mode would send for the command, as the\n\
         \x20                  include server names them (SYSTEMDIR, DIRECTORY, SYMLINK\n\
         \x20                  or FILE, then the name), without compiling; needs a ,cpp host\n\
         \n\
         Host list: DISTCC_HOSTS, else $DISTCC_DIR/hosts, else /etc/distcc/hosts.\n\
         \x20  localhost[/LIMIT]                      compile here\n\
         \x20  HOST[:PORT][/LIMIT][,lzo][,cpp]        TCP to a distccd (port 3632); with\n\
         \x20                                         ,cpp,lzo: pump mode under distcc-rs pump\n\
         \x20  HOST...,cpp,lzo,sysheaders            pump mode that also sends the system\n\
         \x20                                         headers (for a cross helper; distcc-rs\n\
         \x20                                         daemons only)\n\
         \x20  HOST...,key=PATH                       the encrypted channel to a distcc-rs\n\
         \x20                                         daemon with --auth-keys; PATH holds its\n\
         \x20                                         public key (docs/trust.md)\n\
         \x20  [USER]@HOST[/LIMIT][:COMMAND][,lzo]    over ssh ($DISTCC_SSH, default ssh)\n\
         \x20  --randomize  --localslots=N  --localslots_cpp=N  # comments\n\
         \n\
         Environment: DISTCC_DIR, DISTCC_VERBOSE, DISTCC_LOG, DISTCC_FALLBACK,\n\
         DISTCC_SKIP_LOCAL_RETRY, DISTCC_BACKOFF_PERIOD, DISTCC_IO_TIMEOUT,\n\
         DISTCC_CONNECT_TIMEOUT, DISTCC_PAUSE_TIME_MSEC, DISTCC_SAVE_TEMPS, DISTCC_SSH,\n\
         DISTCC_NO_REWRITE_CROSS, TMPDIR, UNCACHED_ERR_FD; DISTCC_RS_OBJECT_CHECK=0 turns\n\
         off the check of returned objects' format; DISTCC_RS_KEY (this client's key for\n\
         ,key= hosts, else $DISTCC_DIR/key); DISTCC_RS_ACCEPT_COMPILER=1 (or HOST,...)\n\
         uses a ,key= host whose compiler is another than the local one. Pump mode: INCLUDE_SERVER_PORT (set by\n\
         distcc-rs pump), INCLUDE_SERVER_STUB, DISTCC_MAX_DISCREPANCY, DEPENDENCIES_OUTPUT.\n\
         See README.md and docs/pump.md.\n";

fn distcc_mode(call: Call) -> Outcome {
    let mut args = call.args;
    if args.len() < 2 {
        return Ok(Status::Usage("missing option/operand".into()));
    }
    // `--scan-includes COMMAND`: as 3.4, the rest is read as if it came
    // first.
    let scan_includes = args[1] == "--scan-includes";
    if scan_includes {
        if args.len() <= 2 {
            return Ok(Status::Usage("missing operand".into()));
        }
        args.remove(1);
    }
    let first = &args[1];
    match first.to_str() {
        Some("--help") => {
            let banner = crate::version_banner(&call.called);
            stdout::print(format!("{}\n{USAGE}", banner.trim_end()))?;
            return Ok(Status::OK);
        }
        Some("--version") => {
            stdout::print(crate::version_banner(&call.called))?;
            return Ok(Status::OK);
        }
        Some("--show-hosts") => return show_hosts(false),
        Some("-j") => return show_hosts(true),
        _ => {}
    }
    let mut argv: Vec<OsString> = args[1..].to_vec();
    if argv.first().is_some_and(|a| a == "--") {
        argv.remove(0);
        if argv.is_empty() {
            return Ok(Status::Usage("missing compiler after --".into()));
        }
    } else if compiler::implicit_compiler(first) {
        argv.insert(0, OsString::from("cc"));
    }
    // Children search PATH without masquerade directories, so an explicit
    // `distcc-rs gcc` never runs a gcc shim that leads back to us.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let trimmed =
        masquerade::find_real_compiler(&argv[0], &path, &self_exe()).map(|real| real.child_path);
    Ok(Status::from_code(client::compile(Invocation {
        argv,
        path: trimmed,
        tweaked: false,
        scan_includes,
    })))
}

fn masquerade_mode(args: Vec<OsString>) -> Outcome {
    let name = Path::new(&args[0])
        .file_name()
        .unwrap_or(args[0].as_os_str())
        .to_os_string();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(real) = masquerade::find_real_compiler(&name, &path, &self_exe()) else {
        // 3.4 would run itself again and say so from there.
        return Err(Error::exit(
            ExitCode::CompilerMissing,
            format!(
                "distcc seems to have invoked itself recursively! (cannot find the real {} \
                 on PATH: every entry named so is a link to distcc-rs)",
                name.to_string_lossy()
            ),
        ));
    };
    let mut argv = args;
    argv[0] = name;
    Ok(Status::from_code(client::compile(Invocation {
        argv,
        path: Some(real.child_path),
        tweaked: real.path_tweaked,
        scan_includes: false,
    })))
}

/// This executable, with symbolic links resolved (empty if unknown, which
/// no PATH entry resolves to).
fn self_exe() -> PathBuf {
    masquerade::self_exe().unwrap_or_default()
}

/// `--show-hosts` (one hostdef per line) and `-j` (the sum of the limits).
/// Both exit 0 even when the list does not parse, as distcc does.
fn show_hosts(sum: bool) -> Outcome {
    match hosts::load() {
        Ok((list, _)) => stdout::print(listing(&list, sum))?,
        Err(err) => log::log!(err.level(), "{err}"),
    }
    Ok(Status::OK)
}

/// What `--show-hosts` (or with `sum`, `-j`) prints for a loaded list: the
/// hosts in the order the client tries them. [`hosts::load`] has already
/// shuffled a `--randomize` list, once.
fn listing(list: &hosts::HostList, sum: bool) -> String {
    if sum {
        return format!("{}\n", list.total_limit());
    }
    list.hosts
        .iter()
        .map(|h| format!("{}\n", h.hostdef))
        .collect()
}

/// `distcc-rs --install-masquerade [DIR]`: makes symbolic links to this
/// binary in DIR (default /usr/lib/distcc) for cc, c++, gcc, g++, clang,
/// clang++ and every `<triple>-gcc`-style or versioned name of those found
/// on PATH, as update-distcc-symlinks does. Existing links to distcc are
/// replaced; anything else in DIR is left alone.
pub fn install_masquerade(args: &[OsString]) -> Outcome {
    let dir = match args {
        [] => PathBuf::from(masquerade::DEFAULT_DIR),
        [dir] => PathBuf::from(dir),
        _ => {
            return Ok(Status::Usage(
                "usage: distcc-rs --install-masquerade [DIR]".into(),
            ))
        }
    };
    let Some(exe) = masquerade::self_exe() else {
        return Err(Error::exit(
            ExitCode::DistccFailed,
            "cannot find this executable to link to",
        ));
    };
    if let Err(err) = std::fs::create_dir_all(&dir) {
        return Err(Error::exit(
            ExitCode::DistccFailed,
            format!("cannot create {}: {err}", dir.display()),
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut failed = 0;
    for name in compiler_names_on_path(&path, &dir, &exe) {
        let link = dir.join(&name);
        if let Ok(meta) = std::fs::symlink_metadata(&link) {
            let ours = meta.file_type().is_symlink()
                && std::fs::read_link(&link)
                    .is_ok_and(|t| masquerade::is_distcc_name(t.as_os_str()));
            if !ours {
                say_error(&format!(
                    "distcc-rs: leaving {} alone: it is not a link to distcc\n",
                    link.display()
                ));
                continue;
            }
            let _ = std::fs::remove_file(&link);
        }
        failed += super::report_link(&link, std::os::unix::fs::symlink(&exe, &link), "link")?;
    }
    super::links_outcome(failed, "made")
}

/// Whether `name` is one of the compiler names a masquerade directory
/// holds: a base name, optionally with a `<triple>-` prefix and a `-N`
/// version suffix (x86_64-linux-gnu-gcc-12, clang-16, g++).
fn is_compiler_name(name: &str) -> bool {
    MASQUERADE_NAMES.iter().any(|base| {
        let Some(at) = name.find(base) else {
            return false;
        };
        let (prefix, rest) = name.split_at(at);
        let suffix = &rest[base.len()..];
        let prefix_ok =
            prefix.is_empty() || (prefix.ends_with('-') && !matches!(*base, "cc" | "c++"));
        let suffix_ok = suffix.is_empty()
            || (suffix.len() > 1
                && suffix.starts_with('-')
                && suffix[1..].chars().all(|c| c.is_ascii_digit() || c == '.'));
        prefix_ok && suffix_ok
    })
}

/// The compiler names found on PATH, skipping `skip_dir` and anything that
/// is this binary or another distcc.
fn compiler_names_on_path(path: &OsStr, skip_dir: &Path, exe: &Path) -> Vec<String> {
    let skip = skip_dir.canonicalize().ok();
    let mut names = std::collections::BTreeSet::new();
    for dir in masquerade::dirs(path) {
        if dir.canonicalize().ok() == skip {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_compiler_name(name) || masquerade::is_distcc_name(OsStr::new(name)) {
                continue;
            }
            let path = entry.path();
            if !masquerade::is_masquerade(&path, exe) && crate::sys::is_executable(&path) {
                names.insert(name.to_string());
            }
        }
    }
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_hosts_lists_randomized_hosts_in_the_order_the_client_uses() {
        let text: String = (0..20).map(|i| format!("h{i} ")).collect();
        // The client compiles with the list as loaded: shuffled once.
        let (used, _) = hosts::load_from(Some(&format!("--randomize {text}")), &[]).unwrap();
        let want: String = used
            .hosts
            .iter()
            .map(|h| format!("{}\n", h.hostdef))
            .collect();
        assert_eq!(listing(&used, false), want);
        assert_eq!(listing(&used, true), "80\n", "20 hosts of 4 slots");
    }

    #[test]
    fn compiler_names_for_masquerade_links() {
        for name in [
            "cc",
            "c++",
            "gcc",
            "g++",
            "clang",
            "clang++",
            "gcc-12",
            "x86_64-linux-gnu-gcc",
            "x86_64-linux-gnu-g++-12",
            "clang-16",
            "powerpc-linux-gnu-gcc",
            "clang++-14",
        ] {
            assert!(is_compiler_name(name), "{name}");
        }
        for name in [
            "gcc-ar",
            "gcc-nm-12",
            "x86_64-linux-gnu-cc",
            "ccache",
            "cc1",
            "gccgo",
            "clang-tidy",
            "c++filt",
        ] {
            assert!(!is_compiler_name(name), "{name}");
        }
    }
}
