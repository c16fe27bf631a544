//! The distcc client: pick a host, preprocess locally, send the job, write the object, or fall back to a local compile.
//!
//! The flow follows distcc 3.4's `dcc_build_somewhere` (sections 6.3 and 6.4
//! of the compatibility notes), with four deliberate differences:
//! - a host that failed is not picked again for the same job, so
//!   `DISTCC_BACKOFF_PERIOD=0` never loops forever on a dead host;
//! - the preprocessed source is kept across hosts: when the first host is
//!   dead, the job goes to the next one without running cpp again;
//! - a genuine compile error on the server is retried locally as in 3.4,
//!   but the "retrying locally" line is logged at info level, so the user
//!   sees exactly the messages a local compile prints;
//! - an object of another format than the local compiler makes (an x86-64
//!   object for a powerpc job, distcc issue #440) is thrown away before it
//!   replaces anything, and the host is treated as failed ([`objformat`]).

pub mod compiler;
pub mod hosts;
pub mod local;
pub mod lock;
pub mod objformat;
pub mod output;
pub mod remote;
pub mod scan;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::env;
use crate::exitcode::ExitCode;
use crate::state::{Phase, State};
use compiler::Safeguard;
use hosts::{Host, HostList, Kind};
use local::Launcher;
use output::{ObjectFile, TempFile};
use remote::{RemoteError, Target};
use scan::{Decision, Job};

/// How the client was reached, decided by the applet before anything runs.
pub struct Invocation {
    /// The compiler command: the compiler's name first, then its arguments.
    pub argv: Vec<OsString>,
    /// PATH for children with masquerade directories removed; None keeps ours.
    pub path: Option<OsString>,
    /// Whether masquerade mode changed PATH (it counts against the safeguard level).
    pub tweaked: bool,
}

/// Sets up the client's messages as distcc does: warnings and errors to
/// stderr (or to UNCACHED_ERR_FD), everything to DISTCC_LOG when set, debug
/// lines with DISTCC_VERBOSE=1.
pub fn init_logging() {
    use crate::logging::{self, Destination};
    use log::LevelFilter;
    logging::set_program("distcc");
    let verbose = env::bool_var("DISTCC_VERBOSE", false);
    let log_file = std::env::var_os("DISTCC_LOG").filter(|v| !v.is_empty());
    let mut level = if verbose {
        LevelFilter::Trace
    } else {
        LevelFilter::Warn
    };
    let mut destination = Destination::Stderr;
    if let Some(path) = log_file {
        match std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
        {
            Ok(file) => {
                destination = Destination::File(file);
                if !verbose {
                    level = LevelFilter::Info;
                }
            }
            Err(err) => eprintln!(
                "distcc: cannot open DISTCC_LOG {}: {err}",
                Path::new(&path).display()
            ),
        }
    } else if let Some(fd) = std::env::var("UNCACHED_ERR_FD")
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|&fd| fd > 0)
    {
        // SAFETY: the parent (ccache) handed us this descriptor to write
        // messages to; a duplicate is ours to own.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup >= 0 {
            // SAFETY: dup is a fresh descriptor nothing else owns.
            destination = Destination::File(unsafe {
                <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(dup)
            });
        }
    }
    logging::init(level);
    logging::set_destination(destination);
}

/// Runs one compiler command the distcc way and returns the exit code.
pub fn compile(invocation: Invocation) -> i32 {
    output::install_signal_cleanup();
    let level = compiler::safeguard_level();
    let launcher = Launcher {
        path: invocation.path,
        safeguard: compiler::child_safeguard_value(level),
    };
    match compiler::safeguard(level, invocation.tweaked) {
        Safeguard::Recursion => {
            log::error!("distcc seems to have invoked itself recursively!");
            return ExitCode::Recursion.into();
        }
        Safeguard::RunLocally => return launcher.run(&invocation.argv),
        Safeguard::Proceed => {}
    }
    let io_timeout = match env::io_timeout() {
        Ok(timeout) => timeout,
        Err(why) => {
            log::error!("{why}");
            return ExitCode::BadArguments.into();
        }
    };
    let argv = match scan::expand_response_files(invocation.argv) {
        Ok(argv) => argv,
        Err(err) => {
            log::error!("cannot read a response file: {err}");
            return ExitCode::BadArguments.into();
        }
    };
    let argv = scan::expand_preprocessor_options(argv);
    let path = launcher
        .path
        .clone()
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let client = Client {
        launcher,
        io_timeout,
        hosts: hosts::load().map(|(list, _)| list),
        lock_dir: env::distcc_subdir("lock").map_err(|err| err.to_string()),
        state: State::new(),
        expected_format: None,
    };
    match scan::scan(&argv) {
        Decision::Local(local) => {
            let mut argv = argv;
            compiler::rewrite_compiler(&mut argv, &path);
            log::debug!("running locally: {}", local.reason);
            let mut client = client;
            client.run_locally(&argv, local.cpp_slot, None)
        }
        Decision::Remote(mut job) => {
            compiler::rewrite_compiler(&mut job.argv, &path);
            client.build_somewhere(&job)
        }
    }
}

/// What one attempt on a host came to.
enum Attempt {
    /// The job is finished with this exit code.
    Finished(i32),
    /// The host could not take the job: try another.
    HostFailed(RemoteError),
    /// The compile (or the local preprocessor) failed.
    CompileFailed {
        code: i32,
        stderr: Vec<u8>,
        stdout: Vec<u8>,
    },
    /// A local step failed (temp files, the object): compile locally.
    LocalTrouble(ExitCode),
    /// The host returned an object of another format than the local
    /// compiler's (distcc issue #440); it was thrown away. The message says
    /// what was returned and what was expected.
    WrongObject(String),
}

/// The local preprocessor's output, kept across hosts.
struct Preprocessed {
    temp: TempFile,
    child: Option<Child>,
    /// The local-cpp slot, held until the preprocessor finishes.
    lock: Option<lock::Lock>,
    status: Option<i32>,
}

struct Client {
    launcher: Launcher,
    io_timeout: Duration,
    hosts: Result<HostList, hosts::LoadError>,
    /// `$DISTCC_DIR/lock`, or why it cannot be used.
    lock_dir: Result<PathBuf, String>,
    state: Option<State>,
    /// The object format the local compiler makes, once learned for this
    /// job (None inside: it could not be learned).
    expected_format: Option<Option<objformat::Format>>,
}

fn fallback_enabled() -> bool {
    env::bool_var("DISTCC_FALLBACK", true)
}

fn save_temps() -> bool {
    env::bool_var("DISTCC_SAVE_TEMPS", false)
}

/// A host as log lines name it: `HOST:PORT` for TCP, else as written.
fn host_name(host: &Host) -> String {
    match host.kind {
        Kind::Tcp { port } => format!("{}:{port}", host.hostname),
        _ => host.hostdef.clone(),
    }
}

impl Client {
    fn update_state(
        &mut self,
        phase: Phase,
        file: Option<&[u8]>,
        host: Option<&str>,
        slot: Option<u32>,
    ) {
        if let Some(state) = &mut self.state {
            state.update(phase, file, host, slot);
        }
    }

    fn local_limits(&self) -> (u32, u32) {
        match &self.hosts {
            Ok(list) => (list.local_slots, list.local_slots_cpp),
            Err(_) => (4, 8),
        }
    }

    /// Runs `argv` here, holding a local slot (`--localslots`, or
    /// `--localslots_cpp` for `-E`) unless `held` is one already.
    fn run_locally(&mut self, argv: &[OsString], cpp_slot: bool, held: Option<lock::Lock>) -> i32 {
        let (slots, cpp_slots) = self.local_limits();
        let limit = if cpp_slot { cpp_slots } else { slots };
        let lock = match (held, &self.lock_dir) {
            (Some(lock), _) => Some(lock),
            (None, Ok(dir)) => match lock::local_slot(dir, limit, env::pause_time()) {
                Ok(lock) => Some(lock),
                Err(err) => {
                    log::warn!("cannot take a local slot: {err}");
                    None
                }
            },
            (None, Err(_)) => None,
        };
        let file = source_name(argv);
        self.update_state(
            Phase::Compile,
            file.as_deref().map(str::as_bytes),
            Some("localhost"),
            lock.as_ref().map(|l| l.slot()),
        );
        let code = self.launcher.run(argv);
        drop(lock);
        code
    }

    fn build_somewhere(mut self, job: &Job) -> i32 {
        let list = match &self.hosts {
            Ok(list) => list.clone(),
            Err(err) => {
                log::warn!("{err}");
                return self.fall_back(job, ExitCode::NoHosts.into(), None, &[], None);
            }
        };
        let lock_dir = match self.lock_dir.clone() {
            Ok(dir) => dir,
            Err(err) => {
                log::warn!("no lock directory ({err}); can't distribute work");
                return self.fall_back(job, ExitCode::NoHosts.into(), None, &[], None);
            }
        };
        let period = env::backoff_period();
        let mut excluded = Vec::new();
        let mut cpp: Option<Preprocessed> = None;
        loop {
            let slot = match lock::pick(&list, &lock_dir, period, env::pause_time(), &excluded) {
                Ok(slot) => slot,
                Err(err) => {
                    log::warn!("{err}");
                    return self.fall_back(job, ExitCode::NoHosts.into(), None, &[], None);
                }
            };
            let host = &list.hosts[slot.host];
            log::debug!(
                "{} goes to {} slot {}",
                job.input.display(),
                host.hostdef,
                slot.slot
            );
            if let Kind::Local = host.kind {
                let lock::Slot { lock, .. } = slot;
                return self.run_locally(&job.argv, false, Some(lock));
            }
            let attempt = self.try_host(job, host, slot.slot, &mut cpp);
            match attempt {
                Attempt::Finished(code) => {
                    clear_backoff(&lock_dir, host, period);
                    return code;
                }
                Attempt::HostFailed(err) => {
                    log::warn!(
                        "failed to compile {} on {}: {err}",
                        job.input.display(),
                        host.hostdef
                    );
                    mark_backoff(&lock_dir, host, period);
                    excluded.push(slot.host);
                    drop(slot);
                }
                Attempt::CompileFailed {
                    code,
                    stderr,
                    stdout,
                } => {
                    drop(slot);
                    if std::env::var_os("DISTCC_SKIP_LOCAL_RETRY").is_some() && code < 128 {
                        let _ = std::io::stdout().write_all(&stdout);
                        let _ = std::io::stderr().write_all(&stderr);
                        return code;
                    }
                    log::info!(
                        "remote compilation of '{}' failed, retrying locally",
                        job.input.display()
                    );
                    return self.fall_back(job, code, Some((host, &lock_dir)), &stderr, Some(code));
                }
                Attempt::LocalTrouble(code) => {
                    drop(slot);
                    return self.fall_back(job, code.into(), None, &[], None);
                }
                Attempt::WrongObject(why) => {
                    log::warn!("{why}; not using it, trying elsewhere");
                    mark_backoff(&lock_dir, host, period);
                    excluded.push(slot.host);
                    drop(slot);
                }
            }
        }
    }

    /// distcc's fallback: compile the whole command here, unless
    /// DISTCC_FALLBACK=0, in which case the saved server stderr is shown and
    /// `code` is returned. After a remote compile error (`remote`), a local
    /// result equal to the remote one clears the host's backoff mark.
    fn fall_back(
        &mut self,
        job: &Job,
        code: i32,
        host: Option<(&Host, &Path)>,
        server_stderr: &[u8],
        remote: Option<i32>,
    ) -> i32 {
        let period = env::backoff_period();
        if let Some((host, dir)) = host {
            mark_backoff(dir, host, period);
        }
        if !fallback_enabled() {
            log::error!("failed to distribute and fallbacks are disabled");
            let _ = std::io::stderr().write_all(server_stderr);
            return code;
        }
        if remote.is_none() {
            log::warn!(
                "failed to distribute {}, running locally instead",
                job.input.display()
            );
        }
        // A remote compile would have created the object's directory; a
        // build must not fail only because a host was down.
        if let Some(dir) = job.output.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let local = self.run_locally(&job.argv, false, None);
        if let (Some((host, dir)), Some(remote)) = (host, remote) {
            if remote == local {
                clear_backoff(dir, host, period);
            }
        }
        local
    }

    /// Starts the preprocessor for `job` (once), into a temporary file.
    fn start_cpp(&mut self, job: &Job) -> Result<Preprocessed, Attempt> {
        let (_, cpp_slots) = self.local_limits();
        let lock = match &self.lock_dir {
            Ok(dir) => lock::local_slot(dir, cpp_slots, env::pause_time()).ok(),
            Err(_) => None,
        };
        self.update_state(
            Phase::Preprocess,
            None,
            Some("localhost"),
            lock.as_ref().map(|l| l.slot()),
        );
        let tmpdir = crate::sys::tmp_dir();
        let (temp, file) =
            TempFile::create(&tmpdir, "distcc_", job.preprocessed_ext).map_err(|err| {
                log::warn!(
                    "cannot create a temporary file in {}: {err}",
                    tmpdir.display()
                );
                Attempt::LocalTrouble(ExitCode::IoError)
            })?;
        let argv = scan::cpp_argv(job);
        log::debug!("preprocessing: {argv:?}");
        match self.launcher.spawn_cpp(&argv, file) {
            Ok(child) => Ok(Preprocessed {
                temp,
                child: Some(child),
                lock,
                status: None,
            }),
            Err(err) => {
                log::warn!("failed to exec {}: {err}", argv[0].to_string_lossy());
                Err(Attempt::LocalTrouble(ExitCode::CompilerMissing))
            }
        }
    }

    fn try_host(
        &mut self,
        job: &Job,
        host: &Host,
        slot: u32,
        cpp: &mut Option<Preprocessed>,
    ) -> Attempt {
        let file = local::display_name(job.input.as_os_str());
        self.update_state(
            Phase::Connect,
            Some(file.as_bytes()),
            Some(&host.hostname),
            Some(slot),
        );
        if !job.preprocessed && cpp.is_none() {
            match self.start_cpp(job) {
                Ok(started) => *cpp = Some(started),
                Err(attempt) => return attempt,
            }
        }
        let target = match &host.kind {
            Kind::Tcp { port } => Target::Tcp {
                host: &host.hostname,
                port: *port,
            },
            Kind::Ssh { user, command } => Target::Ssh {
                user: user.as_deref(),
                host: &host.hostname,
                command: command.as_deref(),
            },
            Kind::Local => unreachable!("local hosts never reach try_host"),
        };
        let connection = remote::connect(&target, env::connect_timeout(), self.io_timeout);
        // Finish the preprocessor whatever the connect did: its result is
        // kept for the next host.
        if let Some(pre) = cpp.as_mut() {
            if let Some(child) = pre.child.take() {
                self.update_state(
                    Phase::Preprocess,
                    None,
                    Some("localhost"),
                    pre.lock.as_ref().map(|l| l.slot()),
                );
                pre.status =
                    Some(local::wait_cpp(child).unwrap_or(ExitCode::CompilerMissing.into()));
                pre.lock = None;
                if save_temps() {
                    pre.temp.keep();
                }
            }
            if pre.status != Some(0) {
                return Attempt::CompileFailed {
                    code: pre.status.unwrap_or(ExitCode::DistccFailed.into()),
                    stderr: Vec::new(),
                    stdout: Vec::new(),
                };
            }
        }
        let mut connection = match connection {
            Ok(connection) => connection,
            Err(err) => return Attempt::HostFailed(err),
        };
        let input: &Path = match cpp.as_ref() {
            Some(pre) => pre.temp.path(),
            None => &job.input,
        };
        let version = if host.lzo { 2 } else { 1 };
        if host.pump {
            warn_pump_once(host);
        }
        self.update_state(
            Phase::Send,
            Some(file.as_bytes()),
            Some(&host.hostname),
            Some(slot),
        );
        let argv = scan::remote_argv(job);
        log::debug!("sending to {} (protocol {version}): {argv:?}", host.hostdef);
        if let Err(err) = connection.send_request(version, &argv, input) {
            return Attempt::HostFailed(err);
        }
        self.update_state(
            Phase::Compile,
            Some(file.as_bytes()),
            Some(&host.hostname),
            Some(slot),
        );
        let outcome = match connection.read_outcome(version) {
            Ok(outcome) => outcome,
            Err(err) => return Attempt::HostFailed(err),
        };
        self.update_state(
            Phase::Receive,
            Some(file.as_bytes()),
            Some(&host.hostname),
            Some(slot),
        );
        if outcome.status != 0 {
            return Attempt::CompileFailed {
                code: local::wait_status_code(outcome.status),
                stderr: outcome.stderr,
                stdout: outcome.stdout,
            };
        }
        let mut object = match ObjectFile::create(&job.output) {
            Ok(object) => object,
            Err(err) => {
                log::warn!("cannot write {}: {err}", job.output.display());
                return Attempt::LocalTrouble(ExitCode::IoError);
            }
        };
        if let Err(err) = connection.read_object(version, object.file()) {
            return Attempt::HostFailed(err);
        }
        drop(connection);
        if let Some(why) = self.check_object(job, &object, host) {
            // Dropping the object removes its temporary file; the target
            // is untouched.
            drop(object);
            return Attempt::WrongObject(why);
        }
        if let Err(err) = object.commit() {
            log::warn!("cannot write {}: {err}", job.output.display());
            return Attempt::LocalTrouble(ExitCode::IoError);
        }
        let _ = std::io::stdout().write_all(&outcome.stdout);
        let _ = std::io::stderr().write_all(&outcome.stderr);
        Attempt::Finished(0)
    }

    /// The object check (see [`objformat`]): None if the object `host`
    /// returned may be used, else why not. Objects of `-S` jobs, objects
    /// written in place and jobs whose compiler's format cannot be learned
    /// are not checked; nor is anything with DISTCC_RS_OBJECT_CHECK=0.
    fn check_object(&mut self, job: &Job, object: &ObjectFile, host: &Host) -> Option<String> {
        if job.assemble_only || !objformat::enabled() {
            return None;
        }
        let head = match object.head(objformat::HEAD_LEN)? {
            Ok(head) => head,
            Err(err) => {
                log::debug!("object check: cannot read back the object: {err}");
                return None;
            }
        };
        if head.is_empty() {
            log::debug!("object check: the object from {} is empty", host_name(host));
            return None;
        }
        let expected = match &self.expected_format {
            Some(known) => known.clone(),
            None => {
                let cache = env::distcc_subdir("objformat").ok();
                let learned = objformat::expected(
                    &job.argv,
                    &self.launcher,
                    cache.as_deref(),
                    &crate::sys::tmp_dir(),
                );
                if learned.is_none() {
                    log::debug!("object check: off for this job");
                }
                self.expected_format = Some(learned.clone());
                learned
            }
        }?;
        match objformat::judge(&head, &expected, &job.argv) {
            objformat::Verdict::Fine => None,
            objformat::Verdict::Unchecked(why) => {
                log::debug!(
                    "object check: not checking the object from {}: {why}",
                    host_name(host)
                );
                None
            }
            objformat::Verdict::Wrong { got } => Some(format!(
                "{} returned {} object, but {} makes {} objects here",
                host_name(host),
                got.with_article(),
                local::display_name(&job.argv[0]),
                expected
            )),
        }
    }
}

/// Marks `host` as failing for DISTCC_BACKOFF_PERIOD; a mark that cannot
/// be written only costs the next job a retry.
fn mark_backoff(dir: &Path, host: &Host, period: Duration) {
    if let Err(err) = lock::mark_backoff(dir, host, period) {
        log::debug!("cannot write the backoff mark of {}: {err}", host.hostdef);
    }
}

/// Clears `host`'s backoff mark.
fn clear_backoff(dir: &Path, host: &Host, period: Duration) {
    if let Err(err) = lock::clear_backoff(dir, host, period) {
        log::debug!("cannot clear the backoff mark of {}: {err}", host.hostdef);
    }
}

/// The basename of the first source file in `argv`, for the monitor.
fn source_name(argv: &[OsString]) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    argv.iter()
        .skip(1)
        .find(|arg| !arg.as_bytes().starts_with(b"-") && crate::args::is_source(arg.as_bytes()))
        .map(|arg| local::display_name(arg))
}

/// Pump mode (`,cpp`) is not built yet: such hosts get plain preprocessed
/// jobs, and the user is told once per process.
fn warn_pump_once(host: &Host) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        log::warn!(
            "{}: pump mode (,cpp) is not supported by distcc-rs yet; sending preprocessed source instead",
            host.hostdef
        )
    });
}
