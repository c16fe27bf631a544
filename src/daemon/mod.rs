//! The compile server: accepts distcc requests, runs whitelisted compilers,
//! returns results. This module holds its configuration and start-up order;
//! the event loop is in `server`.

pub mod access;
mod cluster;
mod conn;
mod debuginfo;
mod dotd;
pub mod header_store;
pub mod hint;
pub mod job;
pub mod policy;
pub mod pump;
mod response;
pub mod server;
pub mod stats;
mod workers;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;
use mio::net::TcpListener;

use crate::exitcode::ExitCode;
use crate::logging::Destination;
use crate::proto::Limits;
use crate::sandbox::{Sandbox, Status};
use access::AccessList;
use policy::Whitelist;
use server::{Server, Service};

/// How the daemon talks to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Listen on TCP and serve many clients.
    Daemon,
    /// Serve one job on stdin and stdout (inetd, or ssh).
    Inetd,
}

/// Everything the daemon's options and environment decide.
pub struct Config {
    pub mode: Mode,
    pub access: AccessList,
    pub listen: Vec<IpAddr>,
    pub port: u16,
    pub jobs: usize,
    pub nice: i32,
    pub job_lifetime: Option<Duration>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// `--user`, and whether it was given.
    pub user: (String, bool),
    pub lifetime: Option<Duration>,
    pub log_file: Option<PathBuf>,
    pub log_stderr: bool,
    pub log_level: LevelFilter,
    pub stats_port: Option<u16>,
    /// `--cluster`: the daemons whose stats the `/cluster` page shows.
    pub cluster: Vec<crate::stats_page::Target>,
    pub whitelist: Whitelist,
    pub limits: Limits,
    pub io_timeout: Duration,
    pub save_temps: bool,
    pub tmpdir: PathBuf,
    /// `--no-sandbox`, `--require-sandbox`, `--sandbox-allow`.
    pub sandbox: crate::sandbox::Settings,
    /// `--key` and `--auth-keys`: every compile connection must prove an
    /// accepted client key over the encrypted channel (docs/trust.md).
    pub trust: Option<Trust>,
}

/// The daemon's own key and the client keys it accepts.
pub struct Trust {
    pub key: crate::keys::PrivateKey,
    pub clients: crate::keys::AuthKeys,
}

impl Config {
    /// The masquerade directories in force (none for the other whitelists).
    pub fn masquerade_dirs(&self) -> &[PathBuf] {
        match &self.whitelist {
            Whitelist::Masquerade(dirs) => dirs,
            _ => &[],
        }
    }
}

/// Listening sockets handed over by systemd socket activation: fds from 3
/// on, when `LISTEN_PID` names this process. A socket named `stats` in
/// `LISTEN_FDNAMES` serves `--stats`; the others serve compiles.
fn activation_sockets() -> Option<Vec<(RawFd, Service)>> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    if pid != std::process::id() {
        return None;
    }
    let count: i32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    Some(
        (0..count.max(0))
            .map(|i| {
                let service = match names.next() {
                    Some("stats") => Service::Stats,
                    _ => Service::Compile,
                };
                (3 + i, service)
            })
            .collect(),
    )
}

fn bind(addr: SocketAddr, v6_only: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn open_listeners(config: &Config) -> io::Result<Vec<(TcpListener, Service)>> {
    if let Some(fds) = activation_sockets() {
        let mut out = Vec::new();
        for (fd, service) in fds {
            let listener = server::listener_from_fd(fd)?;
            log::info!(
                "listening on {} (socket activation, {service:?})",
                listener.local_addr()?
            );
            out.push((listener, service));
        }
        if out.iter().any(|(_, s)| *s == Service::Compile) {
            return Ok(out);
        }
        return Err(io::Error::other(
            "socket activation passed no compile socket",
        ));
    }
    let addrs = if config.listen.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
    } else {
        config.listen.clone()
    };
    let several = addrs.len() > 1;
    let mut out = Vec::new();
    for addr in addrs {
        let ports = std::iter::once((config.port, Service::Compile))
            .chain(config.stats_port.map(|p| (p, Service::Stats)));
        for (port, service) in ports {
            let listener = bind(SocketAddr::new(addr, port), several)
                .map_err(|e| io::Error::new(e.kind(), format!("{addr} port {port}: {e}")))?;
            log::info!("listening on {} ({service:?})", listener.local_addr()?);
            out.push((listener, service));
        }
    }
    Ok(out)
}

fn set_up_logging(config: &Config) {
    if config.log_stderr {
        crate::logging::set_destination(Destination::Stderr);
        return;
    }
    if let Some(path) = &config.log_file {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o666)
            .open(path)
        {
            Ok(file) => {
                crate::logging::set_destination(Destination::File(file));
                return;
            }
            Err(err) => log::error!("cannot open log file {}: {err}", path.display()),
        }
    }
    crate::logging::set_destination(Destination::Syslog);
}

fn drop_root(config: &Config) -> Result<(), i32> {
    let (user, given) = &config.user;
    if !crate::sys::is_root() {
        if *given {
            log::warn!("--user is ignored when distccd is not started as root");
        }
        return Ok(());
    }
    // distccd's default user is distcc; Debian's package creates distccd.
    let fallbacks: &[&str] = if *given { &[] } else { &["distccd"] };
    let ids = std::iter::once(user.as_str())
        .chain(fallbacks.iter().copied())
        .find_map(crate::sys::lookup_user)
        .or_else(|| {
            log::warn!("user '{user}' not found; using nobody");
            crate::sys::lookup_user("nobody")
        })
        .unwrap_or(crate::sys::Ids {
            uid: 65534,
            gid: 65534,
        });
    if let Err(err) = crate::sys::drop_privileges(ids) {
        log::error!("cannot drop root privileges: {err}");
        return Err(ExitCode::SetuidFailed.into());
    }
    log::debug!("running as uid {} gid {}", ids.uid, ids.gid);
    Ok(())
}

fn write_pid_file(path: &PathBuf, pid: u32) {
    if let Err(err) = std::fs::write(path, format!("{pid}\n")) {
        log::error!("cannot write pid file {}: {err}", path.display());
    }
}

/// Runs the daemon and returns its exit code. Start-up follows distccd:
/// nice, bind, drop root, open the log, check the whitelist, detach, serve.
pub fn run(config: Config) -> i32 {
    match start_and_serve(&config) {
        Ok(()) => {
            log::info!("exiting");
            0
        }
        Err(code) => code,
    }
}

/// The steps of [`run`]; an error is the exit code, already logged.
fn start_and_serve(config: &Config) -> Result<(), i32> {
    if let Err(err) = crate::sys::nice(config.nice) {
        log::warn!("nice({}) failed: {err}", config.nice);
    }
    let listeners = match config.mode {
        Mode::Inetd => Vec::new(),
        Mode::Daemon => open_listeners(config).map_err(|err| {
            log::error!("cannot listen: {err}");
            i32::from(ExitCode::BindFailed)
        })?,
    };
    drop_root(config)?;
    set_up_logging(config);
    job::set_safeguard();
    if let Err(err) = std::env::set_current_dir(&config.tmpdir) {
        log::error!("cannot chdir to {}: {err}", config.tmpdir.display());
        return Err(ExitCode::NoSuchFile.into());
    }
    check_whitelist(config)?;
    let sandbox = start_sandbox(config)?;
    log::info!("allowing access from: {}", config.access);
    if config.mode == Mode::Daemon {
        detach(config)?;
    }
    let result = serve(config, listeners, sandbox);
    if let Some(path) = &config.pid_file {
        if config.mode == Mode::Daemon {
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

/// Logs the compilers the whitelist allows; fails if it can allow none.
fn check_whitelist(config: &Config) -> Result<(), i32> {
    match &config.whitelist {
        Whitelist::Masquerade(dirs) => {
            if !dirs.iter().any(|d| d.is_dir()) {
                log::error!(
                    "no masquerade directory ({}) exists; create one with compiler links to \
                     distcc-rs, set DISTCC_CMDLIST, or use --enable-tcp-insecure",
                    policy::show_dirs(dirs.iter())
                );
                return Err(ExitCode::CompilerMissing.into());
            }
            log::info!(
                "compilers allowed by the masquerade directories: {}",
                policy::show_dirs(dirs.iter().filter(|d| d.is_dir()))
            );
        }
        Whitelist::CmdList(Ok(_)) => log::info!("compilers allowed by DISTCC_CMDLIST"),
        Whitelist::CmdList(Err(why)) => log::error!("{why}; every job will be refused"),
        Whitelist::Insecure => {
            log::warn!("--enable-tcp-insecure: any compiler a client names will be run")
        }
    }
    Ok(())
}

/// The compilers' sandbox, with its one line in the log; with
/// `--require-sandbox`, none is an error.
fn start_sandbox(config: &Config) -> Result<Sandbox, i32> {
    let sandbox = Sandbox::new(&config.sandbox);
    match sandbox.status() {
        Status::On(how) => log::info!("compilers run in a sandbox: {how}"),
        Status::Off if config.sandbox.require => {
            log::error!("--require-sandbox and --no-sandbox contradict each other; not starting");
            return Err(ExitCode::DistccFailed.into());
        }
        Status::Off => log::warn!("--no-sandbox: compilers run without a sandbox"),
        Status::Unavailable(why) if config.sandbox.require => {
            log::error!("--require-sandbox: {why}; not starting");
            return Err(ExitCode::DistccFailed.into());
        }
        Status::Unavailable(why) => log::warn!("compilers run without a sandbox: {why}"),
    }
    Ok(sandbox)
}

/// Goes into the background (`--detach`, the default) or leads a process
/// group of its own, and writes the pid file.
fn detach(config: &Config) -> Result<(), i32> {
    if !config.detach {
        crate::sys::new_process_group();
        if let Some(path) = &config.pid_file {
            write_pid_file(path, std::process::id());
        }
        return Ok(());
    }
    let detached = crate::sys::detach(|child| {
        if let Some(path) = &config.pid_file {
            write_pid_file(path, child);
        }
        0
    });
    detached.map_err(|err| {
        log::error!("cannot fork: {err}");
        i32::from(ExitCode::OutOfMemory)
    })
}

/// Runs the event loop until it ends.
fn serve(
    config: &Config,
    listeners: Vec<(TcpListener, Service)>,
    sandbox: Sandbox,
) -> Result<(), i32> {
    let mut server = Server::new(config, listeners, sandbox).map_err(|err| {
        log::error!("cannot start the event loop: {err}");
        i32::from(ExitCode::DistccFailed)
    })?;
    let result = match config.mode {
        Mode::Inetd => server.serve_inetd(),
        Mode::Daemon => {
            log::info!(
                "distcc-rs {} serving with {} job slots",
                crate::VERSION,
                config.jobs
            );
            server.run()
        }
    };
    result.map_err(|err| {
        log::error!("event loop failed: {err}");
        i32::from(ExitCode::DistccFailed)
    })
}
