//! The `pump` applet's command line: `distcc-rs pump COMMAND...`, `--startup` and `--shutdown` (linked as `pump` and `distcc-pump`), as distcc 3.4's pump script has them; the include server itself is `crate::pump`.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::{stdout, Call, Error, Outcome, Status};
use crate::client::hosts;
use crate::exitcode::ExitCode;
use crate::pump::session::{self, IncludeServer, PumpDir};

/// How long `--shutdown` waits for the background server to go.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);

fn help(command: &str) -> String {
    format!(
        "Usage:
    {command} COMMAND [ARG...]
or
    {command} --startup
    {command} --shutdown

Pump mode: the helpers preprocess as well as compile. The client sends each
compile's source and headers (found by distcc-rs's include server) to hosts
marked ,cpp,lzo in DISTCC_HOSTS; other hosts get plain jobs.

\"{command} COMMAND [ARG...]\" starts an include server on a socket in a new
directory ${{TMPDIR:-/tmp}}/distcc-pump.XXXXXX, sets INCLUDE_SERVER_PORT
(the socket), INCLUDE_SERVER_PID and INCLUDE_SERVER_DIR, puts this program's
directory first on PATH, runs COMMAND (typically a parallel build such as
\"make -j80\"), then stops the server, removes the directory and exits with
COMMAND's status.

\"{command} --startup\" starts a server in the background and prints the
variables as export lines; \"{command} --shutdown\" stops it (it reads
INCLUDE_SERVER_PID and INCLUDE_SERVER_DIR) and cleans up:

    eval `{command} --startup`
    make -j80
    {command} --shutdown

It works with distcc 3.4's own client as with distcc-rs's. A compile the
server cannot vouch for (an absolute #include, an option it does not know,
CPATH and friends set in its environment...) gets an empty answer and is
preprocessed locally. The server re-reads a file that changes during the
build (by its mtime, size and inode).

Environment:
  DISTCC_HOSTS            must have at least one host with ,cpp (or a hosts
                          file must: $DISTCC_DIR/hosts, ~/.distcc/hosts or
                          /etc/distcc/hosts)
  DISTCC_MAX_DISCREPANCY  compiles that may fail remotely and then work
                          locally before the client stops using pump mode
                          (default 1)
  DISTCC_CLIENT_TMP       where the mirror of the sources goes when the
                          pump directory is deeper than two levels (default
                          /dev/shm, else /tmp); at most two levels
  DISTCC_LOCATION         the directory put first on PATH (default: this
                          program's)
  TMPDIR                  where the pump directory is made (default /tmp)

distcc 3.4's DISTCC_POTENTIAL_HOSTS (hosts found by lsdistcc) and
INCLUDE_SERVER_ARGS (options of the Python include server) are not supported.
"
    )
}

pub fn main(call: Call) -> Outcome {
    let args = &call.args[1..];
    let first = args.first().map(|a| a.to_string_lossy());
    match first.as_deref() {
        None | Some("-h") | Some("--help") => {
            return stdout::print(help(&call.command)).map(|()| Status::OK)
        }
        Some("--startup") | Some("--shutdown") if args.len() > 1 => {
            return Ok(Status::Usage(format!(
                "{} takes no arguments",
                args[0].to_string_lossy()
            )))
        }
        _ => {}
    }
    if crate::env::bool_var("DISTCC_VERBOSE", false) {
        // The server's notices: why a compile was not covered.
        crate::logging::set_level(log::LevelFilter::Debug);
    }
    if std::env::var_os("INCLUDE_SERVER_ARGS").is_some_and(|v| !v.is_empty()) {
        log::warn!("INCLUDE_SERVER_ARGS is ignored: it holds options of distcc 3.4's Python include server");
    }
    let max = session::max_discrepancies().map_err(Error::failure)?;
    match first.as_deref() {
        Some("--startup") => startup(),
        Some("--shutdown") => shutdown(max),
        _ => run_command(args, max),
    }
}

/// Prints a line through the one stdout writer.
fn say(line: impl std::fmt::Display) -> Result<(), Error> {
    stdout::print(format!("{line}\n"))
}

/// The directory put first on COMMAND's PATH: `DISTCC_LOCATION`, or this program's.
fn location() -> PathBuf {
    if let Some(dir) = std::env::var_os("DISTCC_LOCATION").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    crate::masquerade::self_exe()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `LOCATION:$PATH`.
fn path_with(location: &std::path::Path) -> OsString {
    let mut path = location.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    path
}

/// 3.4's check of the host list: at least one host, and one with `,cpp`.
fn check_hosts(verbose: bool) -> Result<(), Error> {
    if std::env::var_os("DISTCC_POTENTIAL_HOSTS").is_some_and(|v| !v.is_empty()) {
        return Err(Error::failure(
            "DISTCC_POTENTIAL_HOSTS is not supported (it needs lsdistcc): \
             list the hosts in DISTCC_HOSTS with ,cpp,lzo",
        ));
    }
    let list =
        match hosts::load() {
            Ok((list, _)) => list,
            Err(hosts::LoadError::NoHosts) => return Err(Error::failure(
                "expected environment variables \"DISTCC_HOSTS\" or \"DISTCC_POTENTIAL_HOSTS\" \
                 to be set, or to find a distcc hosts file in \"$DISTCC_DIR/hosts\", \
                 \"$HOME/.distcc/hosts\", or \"/etc/distcc/hosts\".",
            )),
            Err(e) => return Err(Error::failure(format!("error: {e}"))),
        };
    let all = list.hosts.len();
    let pump = list.hosts.iter().filter(|h| h.pump).count();
    if all == 0 {
        return Err(Error::failure("error: distcc hosts list is empty!"));
    }
    if pump == 0 {
        return Err(Error::failure(
            "error: pump mode requested, but distcc hosts list does not contain any hosts \
             with ',cpp' option",
        ));
    }
    if verbose {
        let word = if all == 1 { "server" } else { "servers" };
        if all == pump {
            say(format!("__________Using {all} distcc {word} in pump mode"))?;
        } else {
            say(format!(
                "__________Using {all} distcc {word}, of which only {pump} support(s) pump mode"
            ))?;
        }
    }
    Ok(())
}

fn could_not_start(err: std::io::Error) -> Error {
    Error::failure(format!(
        "{err}\n__________Could not start distcc-pump include server"
    ))
}

/// `pump COMMAND...`: a server in this process's threads for COMMAND's run.
fn run_command(args: &[OsString], max: u64) -> Outcome {
    let location = location();
    say(format!(
        "__________Using distcc-pump from {}",
        location.display()
    ))?;
    check_hosts(true)?;
    let dir = PumpDir::create().map_err(could_not_start)?;
    let result = serve_command(&dir, args, &location, max);
    let _ = dir.remove();
    result
}

fn serve_command(
    dir: &PumpDir,
    args: &[OsString],
    location: &std::path::Path,
    max: u64,
) -> Outcome {
    let server = IncludeServer::bind(dir)
        .and_then(|server| IncludeServer::start(dir, server, crate::pump::scanner()))
        .map_err(could_not_start)?;
    let started = say("__________Started distcc-pump include server");
    let status = started.and_then(|()| run_child(args, dir, location));
    report_discrepancies(dir, max);
    let _ = say("__________Shutting down distcc-pump include server");
    server.stop();
    status
}

/// Runs COMMAND with the server's variables, passing SIGTERM and SIGHUP
/// on to it, and returns its status (128 + the signal that killed it).
fn run_child(args: &[OsString], dir: &PumpDir, location: &std::path::Path) -> Outcome {
    let signals =
        crate::sys::signal_pipe(&[libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT])
            .map_err(|e| Error::failure(format!("cannot catch signals: {e}")))?;
    let mut child = match Command::new(&args[0])
        .args(&args[1..])
        .env("INCLUDE_SERVER_PORT", dir.socket())
        .env("INCLUDE_SERVER_PID", std::process::id().to_string())
        .env("INCLUDE_SERVER_DIR", dir.path())
        .env("PATH", path_with(location))
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            say_error(&format!("{}: {e}", args[0].to_string_lossy()));
            return Ok(Status::Child(code));
        }
    };
    let pid = child.id();
    std::thread::spawn(move || forward_signals(&signals, pid));
    let status = child.wait().map_err(|e| {
        Error::exit(
            ExitCode::DistccFailed,
            format!("cannot wait for COMMAND: {e}"),
        )
    })?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(Status::Child(u8::try_from(code).unwrap_or(u8::MAX)))
}

fn say_error(text: &str) {
    super::say_error(&format!("{text}\n"));
}

/// Passes SIGTERM and SIGHUP on to the child; SIGINT and SIGQUIT come to
/// it from the terminal itself, so they are only kept from ending the
/// pump before its clean-up.
fn forward_signals(signals: &std::os::fd::OwnedFd, pid: u32) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(signals);
    loop {
        if crate::sys::poll_one(fd, libc::POLLIN, Duration::from_secs(3600)).is_err() {
            return;
        }
        for sig in crate::sys::drain_signals(signals) {
            if sig == libc::SIGTERM || sig == libc::SIGHUP {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid as libc::pid_t, sig) };
            }
        }
    }
}

fn report_discrepancies(dir: &PumpDir, max: u64) {
    if let Some(text) = session::discrepancy_report(dir.discrepancies(), max) {
        super::say_error(&text);
    }
}

/// Single-quotes a value for `eval`.
fn quoted(value: &OsStr) -> String {
    format!("'{}'", value.to_string_lossy().replace('\'', "'\\''"))
}

/// `pump --startup`: a background server, and its variables on stdout.
fn startup() -> Outcome {
    check_hosts(false)?;
    let dir = PumpDir::create().map_err(could_not_start)?;
    let server = match IncludeServer::bind(&dir) {
        Ok(server) => server,
        Err(e) => {
            let _ = dir.remove();
            return Err(could_not_start(e));
        }
    };
    let location = location();
    let exports = |pid: u32| {
        let mut text = format!("export INCLUDE_SERVER_PID='{pid}'\n");
        text += &format!(
            "export INCLUDE_SERVER_DIR={}\n",
            quoted(dir.path().as_os_str())
        );
        text += &format!(
            "export INCLUDE_SERVER_PORT={}\n",
            quoted(dir.socket().as_os_str())
        );
        if let Some(hosts) = std::env::var_os("DISTCC_HOSTS").filter(|h| !h.is_empty()) {
            text += &format!("export DISTCC_HOSTS={}\n", quoted(&hosts));
        }
        text += &format!("export PATH={}\n", quoted(&path_with(&location)));
        text
    };
    crate::sys::detach(|pid| match stdout::print(exports(pid)) {
        Ok(()) => 0,
        Err(_) => 1,
    })
    .map_err(could_not_start)?;
    // The background server, its stdio on /dev/null: it logs to the
    // directory, and --shutdown prints that log.
    if let Ok(log) = std::fs::File::create(dir.log_file()) {
        crate::logging::set_destination(crate::logging::Destination::File(log));
    }
    let scanner: Arc<dyn crate::pump::server::Scan> = crate::pump::scanner();
    if let Err(e) = IncludeServer::run_until_signal(&dir, server, scanner) {
        log::error!("include server: {e}");
        return Ok(Status::Failure);
    }
    Ok(Status::OK)
}

/// `pump --shutdown`: stops the server `--startup` started and removes its directory.
fn shutdown(max: u64) -> Outcome {
    let pid = std::env::var("INCLUDE_SERVER_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    let dir = std::env::var_os("INCLUDE_SERVER_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PumpDir::existing(std::path::Path::new(&d)));
    if let Some(Ok(dir)) = &dir {
        report_discrepancies(dir, max);
    }
    if let Some(pid) = pid.filter(|&p| session::alive(p)) {
        say("__________Shutting down distcc-pump include server")?;
        if !session::terminate(pid, SHUTDOWN_WAIT) {
            say_error(&format!("the include server (pid {pid}) did not stop"));
        }
    }
    match dir {
        None => Ok(Status::OK),
        Some(Err(why)) => Err(Error::failure(why)),
        Some(Ok(dir)) => {
            if let Ok(log) = std::fs::read(dir.log_file()) {
                super::say_error(&String::from_utf8_lossy(&log));
            }
            dir.remove().map_err(|e| {
                Error::failure(format!("cannot remove {}: {e}", dir.path().display()))
            })?;
            Ok(Status::OK)
        }
    }
}
