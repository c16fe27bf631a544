//! The `daemon` applet (linked as `distccd`): distccd's command line and environment.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use super::{stdout, Call, Outcome, Status};
use crate::daemon::access::{AccessList, Allow};
use crate::daemon::policy::{self, CmdList, Whitelist};
use crate::daemon::{Config, Mode, Trust};
use crate::keys::{AuthKeys, PrivateKey};
use crate::proto::{Limits, DEFAULT_PORT};

/// distcc-rs daemon: a distcc compile server, compatible with distccd 3.4
/// (protocols 1, 2 and 3, pump mode). With no --allow, it serves only the private address
/// ranges (10/8, 172.16/12, 192.168/16, 127/8, fe80::/10, fc00::/7, ::1).
/// It runs only compilers named in a masquerade directory (links to distcc
/// in <prefix>/lib/distcc or /usr/lib/distcc, or --masquerade-dir) or in
/// DISTCC_CMDLIST. Environment: DISTCCD_PATH, DISTCC_CMDLIST,
/// DISTCC_CMDLIST_NUMWORDS, TMPDIR, DISTCC_SAVE_TEMPS, DISTCC_IO_TIMEOUT,
/// DISTCC_RS_MAX_INPUT (lowers the 512 MiB limit on a job's source, and
/// pump mode's on its files). Compilers run in a sandbox (Landlock on
/// Linux, unveil and pledge on OpenBSD): they may read /usr, /lib*, a few
/// files under /etc and their own directories, and write only in their
/// job's directory (docs/sandbox.md).
#[derive(FromArgs)]
struct Options {
    /// allow clients from ADDR[/BITS] (repeatable)
    #[argh(option, short = 'a')]
    allow: Vec<String>,
    /// allow the private address ranges, ::1 included
    #[argh(switch)]
    allow_private: bool,
    /// listen on this address (repeatable; default 0.0.0.0; :: for IPv6)
    #[argh(option)]
    listen: Vec<String>,
    /// TCP port to listen on (default 3632)
    #[argh(option, short = 'p')]
    port: Option<String>,
    /// maximum concurrent jobs (default: CPUs + 2)
    #[argh(option, short = 'j')]
    jobs: Option<String>,
    /// niceness increment for compilers and the daemon (default 5)
    #[argh(option, short = 'N')]
    nice: Option<String>,
    /// kill a compiler that runs longer than this many seconds (default 0: never)
    #[argh(option)]
    job_lifetime: Option<String>,
    /// serve TCP connections (the default unless stdin is a socket)
    #[argh(switch)]
    daemon: bool,
    /// serve one job on stdin and stdout (inetd, ssh)
    #[argh(switch)]
    inetd: bool,
    /// stay in the foreground
    #[argh(switch)]
    no_detach: bool,
    /// accepted for distccd compatibility; jobs always run in child processes
    #[argh(switch)]
    no_fork: bool,
    /// accepted for distccd compatibility; no effect
    #[argh(switch)]
    no_fifo: bool,
    /// write the daemon's pid here (after dropping root)
    #[argh(option, short = 'P')]
    pid_file: Option<PathBuf>,
    /// user to run as when started as root (default distcc, then distccd, then nobody)
    #[argh(option)]
    user: Option<String>,
    /// exit after this many seconds (for tests)
    #[argh(option)]
    lifetime: Option<String>,
    /// append log lines to this file instead of syslog
    #[argh(option)]
    log_file: Option<PathBuf>,
    /// emerg, alert, crit, error, warning, notice (default), info or debug
    #[argh(option)]
    log_level: Option<String>,
    /// log to stderr
    #[argh(switch)]
    log_stderr: bool,
    /// log everything (same as --log-level=debug)
    #[argh(switch)]
    verbose: bool,
    /// debug mode: --daemon --no-detach --log-stderr --verbose
    #[argh(switch, short = 'W')]
    wizard: bool,
    /// serve statistics over HTTP on --stats-port
    #[argh(switch)]
    stats: bool,
    /// statistics port (default 3633)
    #[argh(option)]
    stats_port: Option<String>,
    /// with --stats, also show the daemon whose stats port is HOST[:PORT]
    /// (port 3633 unless given) on the cluster page, GET /cluster on the
    /// stats port (repeatable; this daemon is always on it)
    #[argh(option, arg_name = "HOST[:PORT]")]
    cluster: Vec<String>,
    /// run any compiler a client names (no whitelist); for ssh use
    #[argh(switch)]
    enable_tcp_insecure: bool,
    /// old name of --enable-tcp-insecure
    #[argh(switch)]
    make_me_a_botnet: bool,
    /// whitelist the compiler links in this directory (repeatable)
    #[argh(option)]
    masquerade_dir: Vec<PathBuf>,
    /// run compilers without the sandbox (Landlock on Linux, unveil and
    /// pledge on OpenBSD) that lets them read only system directories and
    /// write only in their job's directory
    #[argh(switch)]
    no_sandbox: bool,
    /// refuse to start where compilers cannot run in the sandbox
    #[argh(switch)]
    require_sandbox: bool,
    /// let sandboxed compilers also read and execute beneath this path
    /// (repeatable), e.g. a toolchain outside /usr
    #[argh(option)]
    sandbox_allow: Vec<PathBuf>,
    /// let sandboxed compilers also read and write beneath this directory
    /// (repeatable), e.g. the cache of a ccache run as the compiler
    #[argh(option)]
    sandbox_write: Vec<PathBuf>,
    /// this daemon's private key (distcc-rs key generate FILE); needs --auth-keys
    #[argh(option)]
    key: Option<PathBuf>,
    /// serve only clients that prove a public key listed in this file, over
    /// the encrypted channel (docs/trust.md); needs --key
    #[argh(option)]
    auth_keys: Option<PathBuf>,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

/// Options that take a value, for splitting `-j4` and `--jobs=4`.
const SHORT_WITH_VALUE: &[&str] = &["-a", "-p", "-j", "-N", "-P"];

/// Rewrites popt-style `--opt=value` and `-jN` into separate words for argh.
fn split_joined(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        if arg.starts_with("--") {
            if let Some((opt, value)) = arg.split_once('=') {
                out.push(opt.to_string());
                out.push(value.to_string());
                continue;
            }
        } else if arg.len() > 2 && SHORT_WITH_VALUE.contains(&&arg[..2]) {
            out.push(arg[..2].to_string());
            out.push(arg[2..].to_string());
            continue;
        }
        out.push(arg.clone());
    }
    out
}

/// Why the daemon's command line or environment was refused; every one
/// exits 101, as distccd does.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// An argument that is not UTF-8.
    NotUnicode(OsString),
    /// A bad `--allow` mask, with access's reason.
    Allow(String),
    /// A `--listen` that is not an IP address.
    Address(String),
    /// An option's value that is not a number.
    Number { option: &'static str, value: String },
    /// A `--port` or `--stats-port` outside 1-65535.
    Port { option: &'static str, port: u32 },
    /// A `--jobs` outside `sys::JOBS`.
    Jobs(usize),
    /// A bad `DISTCC_IO_TIMEOUT`, with env's reason.
    IoTimeout(String),
    /// An environment variable that must be a number above zero.
    Env { name: &'static str, value: String },
    /// A bad `--cluster` host, or too many.
    Cluster(String),
    /// `--key` or `--auth-keys` missing its partner, or a file that cannot be read.
    Trust(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NotUnicode(arg) => write!(f, "argument is not valid UTF-8: {arg:?}"),
            ConfigError::Allow(why) => f.write_str(why),
            ConfigError::Address(a) => write!(f, "--listen: bad address '{a}'"),
            ConfigError::Number { option, value } => write!(f, "{option}: bad number '{value}'"),
            ConfigError::Port { option, port } => {
                write!(f, "{option}: port {port} is not in 1-65535")
            }
            ConfigError::Jobs(n) => f.write_str(&crate::sys::jobs_out_of_range(*n)),
            ConfigError::IoTimeout(why) => f.write_str(why),
            ConfigError::Env { name, value } => write!(f, "{name}: bad value '{value}'"),
            ConfigError::Cluster(why) => write!(f, "--cluster: {why}"),
            ConfigError::Trust(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConfigError {}

type Result<T> = std::result::Result<T, ConfigError>;

fn number<T: std::str::FromStr>(option: &'static str, value: &str) -> Result<T> {
    value.parse().map_err(|_| ConfigError::Number {
        option,
        value: value.to_string(),
    })
}

fn stdin_is_socket() -> bool {
    // SAFETY: fstat on fd 0 fills a plain struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(0, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

/// A positive whole number from the environment: `None` when unset or
/// empty, and an error (exit 101, as distcc gives) for anything else that
/// is not a number above zero.
fn positive_env(name: &'static str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(ConfigError::Env { name, value: v }),
        },
        _ => Ok(None),
    }
}

/// Applies `DISTCC_RS_MAX_INPUT`: the most bytes a request's source may
/// take on the wire or decompress to (default 512 MiB); in pump mode also
/// the most each file and all files together may take (64 and 512 MiB).
/// It may only lower the limits; the tests use it to reach them with a
/// small LZO bomb.
fn input_limit(mut limits: Limits) -> Result<Limits> {
    const NAME: &str = "DISTCC_RS_MAX_INPUT";
    if let Some(n) = positive_env(NAME)? {
        let n = u32::try_from(n).map_err(|_| ConfigError::Env {
            name: NAME,
            value: n.to_string(),
        })?;
        limits.max_input = limits.max_input.min(n);
        limits.max_file = limits.max_file.min(n);
        limits.max_files_total = limits.max_files_total.min(n.into());
    }
    Ok(limits)
}

/// `--inetd`, `--daemon` (or `-W`), else inetd when stdin is a socket.
fn mode(o: &Options) -> Mode {
    if o.inetd {
        Mode::Inetd
    } else if o.daemon || o.wizard {
        Mode::Daemon
    } else if stdin_is_socket() {
        Mode::Inetd
    } else {
        Mode::Daemon
    }
}

/// `--allow` and `--allow-private`; a TCP daemon given neither serves the
/// private ranges.
fn access(o: &Options, mode: Mode) -> Result<AccessList> {
    let mut access = AccessList::default();
    for spec in &o.allow {
        access.push(Allow::parse(spec).map_err(ConfigError::Allow)?);
    }
    if o.allow_private {
        access.add_private();
    }
    if access.is_empty() && mode == Mode::Daemon {
        log::info!("no --allow option given: allowing only the private ranges");
        access.add_private();
    }
    Ok(access)
}

fn listen_addresses(o: &Options) -> Result<Vec<IpAddr>> {
    o.listen
        .iter()
        .map(|a| {
            a.parse::<IpAddr>()
                .map_err(|_| ConfigError::Address(a.clone()))
        })
        .collect()
}

fn port_in_range(option: &'static str, value: &str) -> Result<u16> {
    match number::<u32>(option, value)? {
        p @ 1..=65535 => Ok(p as u16),
        port => Err(ConfigError::Port { option, port }),
    }
}

/// `--stats-port` is checked even without `--stats`, which alone turns
/// the statistics on (on `proto::DEFAULT_STATS_PORT` unless given).
fn stats_port(o: &Options) -> Result<Option<u16>> {
    let port = o
        .stats_port
        .as_deref()
        .map(|p| port_in_range("--stats-port", p))
        .transpose()?;
    Ok(o.stats
        .then(|| port.unwrap_or(crate::proto::DEFAULT_STATS_PORT)))
}

/// `--cluster`: at most `cluster::MAX_HOSTS` stats ports, each a
/// HOST[:PORT] as `mon --daemon` takes it.
fn cluster(o: &Options) -> Result<Vec<crate::stats_page::Target>> {
    if o.cluster.len() > crate::cluster::MAX_HOSTS {
        return Err(ConfigError::Cluster(format!(
            "{} hosts; at most {} are shown",
            o.cluster.len(),
            crate::cluster::MAX_HOSTS
        )));
    }
    o.cluster
        .iter()
        .map(|spec| crate::stats_page::Target::parse(spec).map_err(ConfigError::Cluster))
        .collect()
}

fn jobs(o: &Options) -> Result<usize> {
    match &o.jobs {
        Some(j) => match number::<usize>("--jobs", j)? {
            n if crate::sys::JOBS.contains(&n) => Ok(n),
            n => Err(ConfigError::Jobs(n)),
        },
        None => Ok(crate::sys::cpu_count() + 2),
    }
}

/// A number of seconds; 0 or less means no limit.
fn seconds(option: &'static str, value: &Option<String>) -> Result<Option<Duration>> {
    match value {
        Some(v) => {
            let n: i64 = number(option, v)?;
            Ok((n > 0).then(|| Duration::from_secs(n as u64)))
        }
        None => Ok(None),
    }
}

/// `--log-level`, overridden by `--verbose` and `-W`; an unknown name is
/// warned about and taken as notice.
fn log_level(o: &Options) -> log::LevelFilter {
    match (&o.log_level, o.verbose || o.wizard) {
        (_, true) => log::LevelFilter::Trace,
        (Some(name), false) => crate::logging::parse_level(name).unwrap_or_else(|| {
            log::warn!("--log-level: unknown level '{name}'; using notice");
            log::LevelFilter::Info
        }),
        (None, false) => log::LevelFilter::Info,
    }
}

/// Which compilers may run: any (`--enable-tcp-insecure`), those of
/// `DISTCC_CMDLIST`, or the links in the masquerade directories.
fn whitelist(o: &Options) -> Whitelist {
    if o.enable_tcp_insecure || o.make_me_a_botnet {
        Whitelist::Insecure
    } else if let Some(path) = std::env::var_os("DISTCC_CMDLIST") {
        let words = std::env::var("DISTCC_CMDLIST_NUMWORDS")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(1);
        Whitelist::CmdList(CmdList::read(&PathBuf::from(path), words))
    } else if o.masquerade_dir.is_empty() {
        Whitelist::Masquerade(policy::default_masquerade_dirs())
    } else {
        Whitelist::Masquerade(o.masquerade_dir.clone())
    }
}

/// `--key` and `--auth-keys`, read now (before root is dropped). Each
/// needs the other: a daemon that served any client over the channel
/// would look protected and not be; an open port is a second instance.
fn trust(o: &Options) -> Result<Option<Trust>> {
    let (key, clients) = match (&o.key, &o.auth_keys) {
        (None, None) => return Ok(None),
        (Some(key), Some(clients)) => (key, clients),
        (Some(_), None) => {
            return Err(ConfigError::Trust(
                "--key needs --auth-keys: the client keys this daemon accepts".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::Trust(
                "--auth-keys needs --key: this daemon's private key".into(),
            ))
        }
    };
    let key = PrivateKey::load(key).map_err(ConfigError::Trust)?;
    let clients =
        AuthKeys::load(clients).map_err(|e| ConfigError::Trust(format!("--auth-keys: {e}")))?;
    if clients.is_empty() {
        log::warn!("--auth-keys lists no key: every client will be refused");
    }
    Ok(Some(Trust { key, clients }))
}

/// Turns parsed options and the environment into the daemon's configuration.
fn configure(o: Options) -> Result<Config> {
    if o.no_fork || o.no_fifo {
        log::debug!("--no-fork and --no-fifo are accepted for distccd compatibility only");
    }
    let mode = mode(&o);
    let trust = trust(&o)?;
    let config = Config {
        trust,
        mode,
        access: access(&o, mode)?,
        listen: listen_addresses(&o)?,
        port: match &o.port {
            Some(p) => port_in_range("--port", p)?,
            None => DEFAULT_PORT,
        },
        stats_port: stats_port(&o)?,
        cluster: cluster(&o)?,
        jobs: jobs(&o)?,
        nice: match &o.nice {
            Some(n) => number("--nice", n)?,
            None => 5,
        },
        job_lifetime: seconds("--job-lifetime", &o.job_lifetime)?,
        lifetime: seconds("--lifetime", &o.lifetime)?,
        log_level: log_level(&o),
        io_timeout: crate::env::io_timeout().map_err(ConfigError::IoTimeout)?,
        limits: input_limit(Limits::default())?,
        whitelist: whitelist(&o),
        detach: !(o.no_detach || o.wizard),
        user: (
            o.user.clone().unwrap_or_else(|| "distcc".into()),
            o.user.is_some(),
        ),
        log_stderr: o.log_stderr || o.wizard,
        pid_file: o.pid_file,
        log_file: o.log_file,
        save_temps: crate::env::save_temps(),
        tmpdir: crate::env::tmp_dir(),
        sandbox: crate::sandbox::Settings {
            off: o.no_sandbox,
            require: o.require_sandbox,
            extra_read: o.sandbox_allow,
            extra_write: o.sandbox_write,
        },
    };
    if let Some(path) = std::env::var_os("DISTCCD_PATH") {
        std::env::set_var("PATH", path);
    }
    Ok(config)
}

/// The arguments after argv[0] as words argh can read.
fn words(args: &[OsString]) -> Result<Vec<String>> {
    let words = super::utf8_words(args).map_err(ConfigError::NotUnicode)?;
    Ok(split_joined(&words))
}

fn usage(err: ConfigError) -> Outcome {
    Ok(Status::Usage(err.to_string()))
}

pub fn main(call: Call) -> Outcome {
    crate::logging::set_level(log::LevelFilter::Info);
    let words = match words(&call.args) {
        Ok(words) => words,
        Err(err) => return usage(err),
    };
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let options: Options = match super::parse_options(&[&call.command], &refs) {
        Ok(o) => o,
        Err(outcome) => return outcome,
    };
    if options.version {
        stdout::print(crate::version_banner(&call.called))?;
        return Ok(Status::OK);
    }
    let config = match configure(options) {
        Ok(c) => c,
        Err(err) => return usage(err),
    };
    crate::logging::set_level(config.log_level);
    Ok(Status::from_code(crate::daemon::run(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn popt_forms_are_split() {
        assert_eq!(
            split_joined(&words(
                "--jobs=4 -j4 -a10.0.0.0/8 --allow 1.2.3.4 -W --log-file=/x"
            )),
            words("--jobs 4 -j 4 -a 10.0.0.0/8 --allow 1.2.3.4 -W --log-file /x")
        );
    }
}
