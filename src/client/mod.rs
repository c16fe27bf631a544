//! The distcc client: pick a host, preprocess locally (or on a pump host ask the include server for the job's files), send the job, write the object, or fall back to a local compile.
//!
//! Pump mode is [`pump`]'s: on a `,cpp,lzo` host the job goes out as
//! protocol 3 with the files the include server names, or, for a reason
//! shown at the verbose level, plain to the same host.
//!
//! The flow follows distcc 3.4's `dcc_build_somewhere` (sections 6.3 and 6.4
//! of the compatibility notes), with five deliberate differences:
//! - a host that failed is not picked again for the same job, so
//!   `DISTCC_BACKOFF_PERIOD=0` never loops forever on a dead host;
//! - the preprocessed source is kept across hosts: when the first host is
//!   dead, the job goes to the next one without running cpp again;
//! - a genuine compile error on the server is retried locally as in 3.4,
//!   but the "retrying locally" line is logged at info level, so the user
//!   sees exactly the messages a local compile prints;
//! - an object of another format than the local compiler makes (an x86-64
//!   object for a powerpc job, distcc issue #440) is thrown away before it
//!   replaces anything, and the host is treated as failed ([`objformat`]);
//! - a distcc-rs daemon that refuses a job says why (`DENY` in place of
//!   `DONE`): the reason is shown as "HOST refused the job: REASON", the
//!   host gets no backoff mark (the job, not the host, is at fault), and the
//!   job goes to the next host or is compiled here. A send the daemon cut
//!   short is followed by a read of its reply, which says more.
//!
//! For events 3.4 also reports, the messages are 3.4's words with our detail
//! after them (docs/messages.md lists them): "failed to open logfile",
//! "$DISTCC_HOSTS contained no hosts; can't distribute work", "failed to
//! distribute FILE to HOST, running locally instead", "failed to distribute
//! and fallbacks are disabled", "protocol derailment: expected token".

pub mod compiler;
pub mod hosts;
pub mod identity;
pub mod local;
pub mod lock;
pub mod objformat;
pub mod output;
pub mod placement;
pub mod pump;
pub mod remote;
pub mod scan;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::env;
use crate::exitcode::ExitCode;
use crate::masquerade::{self, Safeguard};
use crate::options::Tokens;
use crate::state::{self, Phase};
use hosts::{Host, HostList, Kind};
use local::Launcher;
use output::{ObjectFile, TempFile};
use remote::{Connection, RemoteError, Reply, Target};
use scan::Decision;

/// How the client was reached, decided by the applet before anything runs.
pub struct Invocation {
    /// The compiler command: the compiler's name first, then its arguments.
    pub argv: Vec<OsString>,
    /// PATH for children with masquerade directories removed; None keeps ours.
    pub path: Option<OsString>,
    /// Whether masquerade mode changed PATH (it counts against the safeguard level).
    pub tweaked: bool,
    /// `--scan-includes`: print what the include server answers for the
    /// job instead of compiling it.
    pub scan_includes: bool,
}

/// Sets up the client's messages as distcc does: warnings and errors to
/// stderr (or to UNCACHED_ERR_FD), everything to DISTCC_LOG when set, debug
/// lines with DISTCC_VERBOSE=1.
pub fn init_logging() {
    use crate::logging::{self, Destination};
    use log::LevelFilter;
    let verbose = env::bool_var("DISTCC_VERBOSE", false);
    let log_file = std::env::var_os("DISTCC_LOG").filter(|v| !v.is_empty());
    let mut level = if verbose {
        LevelFilter::Trace
    } else {
        LevelFilter::Warn
    };
    let mut destination = Destination::Stderr;
    let mut log_file_error = None;
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
            Err(err) => log_file_error = Some((path, err)),
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
    logging::set_level(level);
    logging::set_destination(destination);
    if let Some((path, err)) = log_file_error {
        // 3.4's words; messages go to stderr instead.
        log::error!(
            "failed to open logfile {}: {err}",
            Path::new(&path).display()
        );
    }
}

/// Runs one compiler command the distcc way and returns the exit code.
pub fn compile(invocation: Invocation) -> i32 {
    output::install_signal_cleanup();
    let level = masquerade::safeguard_level();
    let launcher = Launcher {
        path: invocation.path,
        safeguard: masquerade::child_safeguard_value(level),
    };
    match masquerade::safeguard(level, invocation.tweaked) {
        Safeguard::Recursion => {
            log::error!(
                target: crate::logging::CRITICAL,
                "distcc seems to have invoked itself recursively!"
            );
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
        state_file: state::State::new(),
        expected_format: None,
        local_identity: None,
        scan_includes: invocation.scan_includes,
    };
    let mut argv = argv;
    let mut tokens = Tokens::of(&argv);
    compiler::rewrite_compiler(&mut argv, &mut tokens, &path);
    match scan::scan(&argv, &tokens) {
        Decision::Local(local) => {
            log::debug!("running locally: {}", local.reason);
            let mut client = client;
            client.run_locally(&argv, &tokens, local.cpp_slot, None)
        }
        Decision::Remote(job) => client.build_somewhere(&job),
    }
}

/// What one attempt on a host came to.
enum Attempt {
    /// The job is finished with this exit code.
    Finished(i32),
    /// The host could not take the job: back it off and try another.
    HostFailed(RemoteError),
    /// The daemon refused the job and said why (distcc-rs's `DENY`). The
    /// host is alive and not to blame: try another without backing it off.
    Refused(String),
    /// The compile (or the local preprocessor) failed; `pumped` when the
    /// job went out as protocol 3.
    CompileFailed {
        code: i32,
        stderr: Vec<u8>,
        stdout: Vec<u8>,
        pumped: bool,
    },
    /// A local step failed (temp files, the object): compile locally.
    LocalTrouble(ExitCode),
    /// The host returned an object of another format than the local
    /// compiler's (distcc issue #440); it was thrown away. The message says
    /// what was returned and what was expected.
    WrongObject(String),
    /// The host's compiler is another than the local one (its identity,
    /// inside the channel): the job goes elsewhere (`client/identity.rs`).
    OtherCompiler(Box<(crate::identity::Identity, crate::identity::Identity)>),
}

/// What a job was made into for the hosts tried so far: the local
/// preprocessor's output, and the protocol 3 request (None inside when the
/// job goes plain), each made once and kept across hosts.
#[derive(Default)]
struct Prepared {
    cpp: Option<Preprocessed>,
    pump: Option<Option<pump::Request>>,
}

/// What a request carries after its command line.
enum Payload<'a> {
    /// The preprocessed source in this file (protocol 1 or 2).
    Preprocessed(&'a Path),
    /// The source and its headers (protocol 3).
    Pump(&'a pump::Request),
}

/// The local preprocessor's output, kept across hosts.
struct Preprocessed {
    temp: TempFile,
    child: Option<Child>,
    /// The local-cpp slot, held until the preprocessor finishes.
    lock: Option<lock::Lock>,
    status: Option<i32>,
}

/// Why the job is compiled here after all, for the fallback's messages.
struct Fallback<'a> {
    /// The exit code when fallbacks are off.
    code: i32,
    /// The last host that failed or refused the job, named as 3.4 names
    /// it in "failed to distribute FILE to HOST".
    host: Option<&'a Host>,
    /// Our detail, put after 3.4's words.
    detail: Option<String>,
}

impl<'a> Fallback<'a> {
    fn no_host(code: ExitCode, detail: Option<String>) -> Self {
        Fallback {
            code: code.into(),
            host: None,
            detail,
        }
    }
}

struct Client {
    launcher: Launcher,
    io_timeout: Duration,
    hosts: Result<HostList, hosts::LoadError>,
    /// `$DISTCC_DIR/lock`, or why it cannot be used.
    lock_dir: Result<PathBuf, String>,
    /// This process's entry in the monitor's state directory.
    state_file: Option<state::State>,
    /// The object format the local compiler makes, once learned for this
    /// job (None inside: it could not be learned).
    expected_format: Option<Option<objformat::Format>>,
    /// The local compiler's identity, once learned for this job (None
    /// inside: it could not be learned).
    local_identity: Option<Option<crate::identity::Identity>>,
    /// `--scan-includes` (see [`Invocation::scan_includes`]).
    scan_includes: bool,
}

fn fallback_enabled() -> bool {
    env::bool_var("DISTCC_FALLBACK", true)
}

/// A host as log lines name it: `HOST:PORT` for TCP, else as written.
fn host_name(host: &Host) -> String {
    match host.kind {
        Kind::Tcp { port } => format!("{}:{port}", host.hostname),
        _ => host.hostdef.clone(),
    }
}

/// Where `host`'s jobs are sent.
fn target(host: &Host) -> Target<'_> {
    match &host.kind {
        Kind::Tcp { port } => Target::Tcp {
            host: &host.hostname,
            port: *port,
            key: host.key.as_deref(),
        },
        Kind::Ssh { user, command } => Target::Ssh {
            user: user.as_deref(),
            host: &host.hostname,
            command: command.as_deref(),
        },
        Kind::Local => unreachable!("local hosts never reach try_host"),
    }
}

impl Client {
    /// Writes this job's phase to the state file the monitor reads.
    fn note_state(
        &mut self,
        phase: Phase,
        file: Option<&[u8]>,
        host: Option<&str>,
        slot: Option<u32>,
    ) {
        if let Some(state_file) = &mut self.state_file {
            state_file.update(phase, file, host, slot);
        }
    }

    fn local_limits(&self) -> (u32, u32) {
        match &self.hosts {
            Ok(list) => (list.local_slots, list.local_slots_cpp),
            Err(_) => (hosts::DEFAULT_LOCAL_SLOTS, hosts::DEFAULT_LOCAL_SLOTS_CPP),
        }
    }

    /// Runs `argv` (read into `tokens`) here, holding a local slot
    /// (`--localslots`, or `--localslots_cpp` for `-E`) unless `held` is one
    /// already.
    fn run_locally(
        &mut self,
        argv: &[OsString],
        tokens: &Tokens,
        cpp_slot: bool,
        held: Option<lock::Lock>,
    ) -> i32 {
        let (slots, cpp_slots) = self.local_limits();
        let limit = if cpp_slot { cpp_slots } else { slots };
        let take = if cpp_slot {
            lock::local_cpp_slot
        } else {
            lock::local_slot
        };
        let lock = match (held, &self.lock_dir) {
            (Some(lock), _) => Some(lock),
            (None, Ok(dir)) => match take(dir, limit, env::pause_time()) {
                Ok(lock) => Some(lock),
                Err(err) => {
                    log::warn!("failed to lock: {err}");
                    None
                }
            },
            (None, Err(_)) => None,
        };
        let file = source_name(argv, tokens);
        self.note_state(
            Phase::Compile,
            file.as_deref().map(str::as_bytes),
            Some("localhost"),
            lock.as_ref().map(|l| l.slot()),
        );
        let code = self.launcher.run(argv);
        drop(lock);
        code
    }

    /// The host list and the lock directory, or why the job cannot be
    /// distributed at all: a problem with the list is its own warning, as
    /// in 3.4; a missing lock directory is the fallback's detail.
    fn distribution_setup(&self) -> Result<(HostList, PathBuf), Option<String>> {
        let list = match &self.hosts {
            Ok(list) => list.clone(),
            Err(err) => {
                log::log!(err.level(), "{err}");
                return Err(None);
            }
        };
        match self.lock_dir.clone() {
            Ok(dir) => Ok((list, dir)),
            Err(err) => Err(Some(format!("no lock directory: {err}"))),
        }
    }

    /// 3.4's `dcc_build_somewhere`: picks hosts until one compiles the job,
    /// else compiles it here.
    fn build_somewhere(mut self, job: &scan::Job) -> i32 {
        let (list, lock_dir) = match self.distribution_setup() {
            Ok(setup) => setup,
            Err(detail) => {
                return self.fall_back(job, Fallback::no_host(ExitCode::NoHosts, detail))
            }
        };
        let period = env::backoff_period();
        // Hosts that failed or refused this job, and the last one's name
        // and story for the fallback.
        let mut excluded = identity::marked_hosts(&list, &lock_dir, &job.argv[0]);
        let mut last: Option<(&Host, String)> = None;
        let mut prepared = Prepared::default();
        loop {
            let slot = match placement::pick(&list, &lock_dir, period, env::pause_time(), &excluded)
            {
                Ok(slot) => slot,
                Err(err) => {
                    let (host, detail) = match last {
                        Some((host, why)) => (Some(host), why),
                        None => (None, err.to_string()),
                    };
                    let fallback = Fallback {
                        code: ExitCode::NoHosts.into(),
                        host,
                        detail: Some(detail),
                    };
                    return self.fall_back(job, fallback);
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
                return self.run_locally(&job.argv, &job.tokens, false, Some(lock));
            }
            if self.scan_includes {
                return self.print_includes(job, host);
            }
            let attempt = self.try_host(job, host, slot.slot, &mut prepared);
            drop(slot.lock);
            match self.after_attempt(job, host, &lock_dir, attempt) {
                Ok(code) => return code,
                Err(why) => {
                    excluded.push(slot.host);
                    last = Some((host, why));
                }
            }
        }
    }

    /// Settles an attempt on `host`: the job's exit code, or why the host
    /// is passed over for this job (after backing it off if it failed).
    fn after_attempt(
        &mut self,
        job: &scan::Job,
        host: &Host,
        lock_dir: &Path,
        attempt: Attempt,
    ) -> Result<i32, String> {
        let period = env::backoff_period();
        let why = match attempt {
            Attempt::Finished(code) => {
                clear_backoff(lock_dir, host, period);
                return Ok(code);
            }
            Attempt::HostFailed(err) => {
                log::warn!(
                    "failed to distribute {} to {}: {err}",
                    job.input.display(),
                    host.hostdef
                );
                mark_backoff(lock_dir, host, period);
                format!("{}: {err}", host.hostdef)
            }
            Attempt::Refused(reason) => {
                // Not the host's fault: no backoff mark.
                let why = format!("{} refused the job: {reason}", host.hostdef);
                log::warn!("{why}");
                why
            }
            Attempt::OtherCompiler(sides) => {
                let (local, remote) = &*sides;
                identity::note_mismatch(lock_dir, host, (local, remote), false);
                format!("{} has another compiler: {remote}", host.hostdef)
            }
            Attempt::WrongObject(why) => {
                log::warn!("{why}; not using it, trying elsewhere");
                mark_backoff(lock_dir, host, period);
                why
            }
            Attempt::CompileFailed {
                code,
                stderr,
                stdout,
                pumped,
            } => {
                let output = (stdout, stderr);
                return Ok(self.compile_failed(job, host, lock_dir, (code, pumped), output));
            }
            Attempt::LocalTrouble(code) => {
                let fallback = Fallback {
                    code: code.into(),
                    host: Some(host),
                    detail: None,
                };
                return Ok(self.fall_back(job, fallback));
            }
        };
        Err(why)
    }

    /// After the compile failed on `host`: as 3.4, shows the server's
    /// output and returns its code with DISTCC_SKIP_LOCAL_RETRY, else
    /// backs the host off and retries here; a local result equal to the
    /// remote one clears the mark again, and another result after a
    /// protocol 3 job (`pumped`) is a discrepancy.
    fn compile_failed(
        &mut self,
        job: &scan::Job,
        host: &Host,
        lock_dir: &Path,
        (code, pumped): (i32, bool),
        (stdout, stderr): (Vec<u8>, Vec<u8>),
    ) -> i32 {
        if std::env::var_os("DISTCC_SKIP_LOCAL_RETRY").is_some() && code < 128 {
            let _ = std::io::stdout().write_all(&stdout);
            let _ = std::io::stderr().write_all(&stderr);
            return code;
        }
        log::info!(
            "remote compilation of '{}' failed, retrying locally",
            job.input.display()
        );
        let period = env::backoff_period();
        mark_backoff(lock_dir, host, period);
        if !fallback_enabled() {
            log::error!("failed to distribute and fallbacks are disabled");
            let _ = std::io::stderr().write_all(&stderr);
            return code;
        }
        let local = self.compile_here(job);
        if local == code {
            clear_backoff(lock_dir, host, period);
        } else if pumped {
            pump::note_discrepancy(&job.input);
        }
        local
    }

    /// distcc's fallback: compile the whole command here, unless
    /// DISTCC_FALLBACK=0, in which case `why.code` is returned.
    fn fall_back(&mut self, job: &scan::Job, why: Fallback) -> i32 {
        let detail = why.detail.map(|d| format!(": {d}")).unwrap_or_default();
        if !fallback_enabled() {
            log::error!("failed to distribute and fallbacks are disabled{detail}");
            return why.code;
        }
        match why.host {
            Some(host) => log::warn!(
                "failed to distribute {} to {}, running locally instead",
                job.input.display(),
                host.hostdef
            ),
            None => log::warn!(
                "failed to distribute, running locally instead: {}{detail}",
                job.input.display()
            ),
        }
        self.compile_here(job)
    }

    /// Runs the whole command here, after a failure to distribute it.
    fn compile_here(&mut self, job: &scan::Job) -> i32 {
        // A remote compile would have created the object's directory; a
        // build must not fail only because a host was down.
        if let Some(dir) = job.output.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        self.run_locally(&job.argv, &job.tokens, false, None)
    }

    /// Takes a local preprocessing slot (`--localslots_cpp`), for the
    /// preprocessor or the include server's scan, as 3.4 does.
    fn cpp_slot(&mut self) -> Option<lock::Lock> {
        let (_, cpp_slots) = self.local_limits();
        let lock = match &self.lock_dir {
            Ok(dir) => lock::local_cpp_slot(dir, cpp_slots, env::pause_time()).ok(),
            Err(_) => None,
        };
        self.note_state(
            Phase::Preprocess,
            None,
            Some("localhost"),
            lock.as_ref().map(|l| l.slot()),
        );
        lock
    }

    /// Starts the preprocessor for `job` (once), into a temporary file.
    fn start_cpp(&mut self, job: &scan::Job) -> Result<Preprocessed, Attempt> {
        let lock = self.cpp_slot();
        let tmpdir = env::tmp_dir();
        let (temp, file) =
            TempFile::create(&tmpdir, "distcc_", job.preprocessed_ext).map_err(|err| {
                log::warn!(
                    "failed to create a temporary file in {}: {err}",
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

    /// Waits for the preprocessor (the first time) and frees its slot; an
    /// error if it failed, which is the job's result.
    fn finish_cpp(&mut self, pre: &mut Preprocessed) -> Result<(), Attempt> {
        if let Some(child) = pre.child.take() {
            self.note_state(
                Phase::Preprocess,
                None,
                Some("localhost"),
                pre.lock.as_ref().map(|l| l.slot()),
            );
            pre.status = Some(local::wait_cpp(child).unwrap_or(ExitCode::CompilerMissing.into()));
            pre.lock = None;
            if env::save_temps() {
                pre.temp.keep();
            }
        }
        if pre.status == Some(0) {
            return Ok(());
        }
        Err(Attempt::CompileFailed {
            code: pre.status.unwrap_or(ExitCode::DistccFailed.into()),
            stderr: Vec::new(),
            stdout: Vec::new(),
            pumped: false,
        })
    }

    /// One attempt on `host`: for a pump host, the job as protocol 3 if
    /// the include server can name its files; else preprocess (once, while
    /// connecting). Then send the job, read the daemon's reply, then the
    /// object.
    fn try_host(
        &mut self,
        job: &scan::Job,
        host: &Host,
        slot: u32,
        prepared: &mut Prepared,
    ) -> Attempt {
        if host.pump {
            if let Some(request) = self.pump_request(job, host, &mut prepared.pump) {
                let connection = self.connect(job, host, slot);
                return self.exchange(job, host, slot, connection, Payload::Pump(request));
            }
        }
        self.note_connect(job, host, slot);
        let cpp = &mut prepared.cpp;
        if !job.preprocessed && cpp.is_none() {
            match self.start_cpp(job) {
                Ok(started) => *cpp = Some(started),
                Err(attempt) => return attempt,
            }
        }
        let mut connection =
            remote::connect(&target(host), env::connect_timeout(), self.io_timeout);
        // A channel's handshake ends while the preprocessor runs; with no
        // preprocessor, at the first write, after the source is read.
        if cpp.is_some() {
            connection = connection.and_then(|mut c| c.finish_handshake().map(|()| c));
        }
        // Finish the preprocessor whatever the connect did: its result is
        // kept for the next host.
        if let Some(pre) = cpp.as_mut() {
            if let Err(attempt) = self.finish_cpp(pre) {
                return attempt;
            }
        }
        let input = cpp
            .as_ref()
            .map_or(job.input.as_path(), |pre| pre.temp.path());
        self.exchange(job, host, slot, connection, Payload::Preprocessed(input))
    }

    fn note_connect(&mut self, job: &scan::Job, host: &Host, slot: u32) {
        let file = local::display_name(job.input.as_os_str());
        self.note_state(
            Phase::Connect,
            Some(file.as_bytes()),
            Some(&host.hostname),
            Some(slot),
        );
    }

    fn connect(
        &mut self,
        job: &scan::Job,
        host: &Host,
        slot: u32,
    ) -> Result<Connection, RemoteError> {
        self.note_connect(job, host, slot);
        remote::connect(&target(host), env::connect_timeout(), self.io_timeout)
    }

    /// The protocol 3 request for `job`, made the first time a pump host
    /// is picked (into `made`, for the next hosts); None when the job goes
    /// plain, after a one-line reason at the verbose level.
    fn pump_request<'p>(
        &mut self,
        job: &scan::Job,
        host: &Host,
        made: &'p mut Option<Option<pump::Request>>,
    ) -> Option<&'p pump::Request> {
        if made
            .as_ref()
            .is_some_and(|r| r.as_ref().is_some_and(|r| r.sysheaders != host.sysheaders))
        {
            *made = None;
        }
        let request = made.get_or_insert_with(|| match self.make_pump_request(job, host) {
            Ok(request) => Some(request),
            Err(why) => {
                log::debug!(
                    "{}: plain mode on {}: {why}; preprocessing locally",
                    job.input.display(),
                    host.hostdef
                );
                None
            }
        });
        request.as_ref()
    }

    /// Asks the include server for `job`'s files, holding a local
    /// preprocessing slot as 3.4 does, and reads them.
    fn make_pump_request(&mut self, job: &scan::Job, host: &Host) -> Result<pump::Request, String> {
        if let Some(why) = pump::plain_reason(job) {
            return Err(why);
        }
        let cwd = pump::cwd()?;
        let lock = self.cpp_slot();
        let answer = pump::ask(&cwd, &job.argv, self.io_timeout, host.sysheaders)?;
        let files = pump::load(&answer)?;
        drop(lock);
        let (argv, deps) = match &answer.system {
            Some(system) => pump::system_server_argv(job, system),
            None => pump::server_argv(job),
        };
        Ok(pump::Request {
            cwd,
            argv,
            files,
            deps,
            sysheaders: answer.system.is_some(),
        })
    }

    /// `--scan-includes` once a host is picked (3.4's
    /// `dcc_approximate_includes`): the include server's answer for `job`,
    /// one categorised line per entry on stdout.
    fn print_includes(&mut self, job: &scan::Job, host: &Host) -> i32 {
        let why = match host.pump {
            false => Some("the host has no ,cpp".to_string()),
            true => pump::plain_reason(job),
        };
        if let Some(why) = why {
            log::debug!("--scan-includes: {why}");
            log::error!(
                "'--scan_includes' specified, but distcc wouldn't have used include server \
                 (make sure hosts list includes ',cpp' option?)"
            );
            return ExitCode::DistccFailed.into();
        }
        let _lock = self.cpp_slot();
        let answer = pump::cwd().and_then(|cwd| pump::ask(&cwd, &job.argv, self.io_timeout, false));
        let answer = match answer {
            Ok(answer) => answer.paths,
            Err(why) => {
                log::error!("failed to get includes from include server: {why}");
                return 1;
            }
        };
        match pump::categorized(&answer) {
            Ok(text) => match std::io::stdout().write_all(text.as_bytes()) {
                // As the applets' output: a reader that went away is no error.
                Ok(()) => 0,
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => 0,
                Err(err) => {
                    log::error!("failed to write to stdout: {err}");
                    ExitCode::IoError.into()
                }
            },
            Err(why) => {
                log::error!("{why}");
                ExitCode::IoError.into()
            }
        }
    }

    /// The local compiler's identity (`client/identity.rs`), learned once
    /// for this job.
    fn local_identity(&mut self, job: &scan::Job) -> Option<&crate::identity::Identity> {
        self.local_identity
            .get_or_insert_with(|| identity::local(&job.argv[0]))
            .as_ref()
    }

    /// Sends the job over `connection` and reads the reply and the object.
    fn exchange(
        &mut self,
        job: &scan::Job,
        host: &Host,
        slot: u32,
        connection: Result<Connection, RemoteError>,
        payload: Payload,
    ) -> Attempt {
        let mut connection = match connection {
            Ok(connection) => connection,
            Err(err) => return Attempt::HostFailed(err),
        };
        let outcome = match self.send_job(&mut connection, job, host, slot, &payload) {
            Ok(outcome) => outcome,
            Err(attempt) => return attempt,
        };
        if let Some(remote) = &outcome.identity {
            let local = self.local_identity(job).cloned();
            if let Some(attempt) = other_compiler(host, local, remote) {
                return attempt;
            }
        }
        let file = local::display_name(job.input.as_os_str());
        self.note_state(
            Phase::Receive,
            Some(file.as_bytes()),
            Some(&host.hostname),
            Some(slot),
        );
        let (version, deps) = match &payload {
            Payload::Pump(request) => (3, request.deps.as_deref()),
            Payload::Preprocessed(_) => (plain_version(host), None),
        };
        if outcome.status != 0 {
            return Attempt::CompileFailed {
                code: local::wait_status_code(outcome.status),
                stderr: outcome.stderr,
                stdout: outcome.stdout,
                pumped: version == 3,
            };
        }
        self.receive_object(job, host, (connection, version, deps), outcome)
    }

    /// Sends the job and reads the daemon's reply up to the object. A
    /// daemon that refuses a job may stop reading it, so a send cut short
    /// by the peer is followed by a read: a refusal says more than the
    /// broken pipe.
    fn send_job(
        &mut self,
        connection: &mut Connection,
        job: &scan::Job,
        host: &Host,
        slot: u32,
        payload: &Payload,
    ) -> Result<remote::Outcome, Attempt> {
        let file = local::display_name(job.input.as_os_str());
        self.note_state(
            Phase::Send,
            Some(file.as_bytes()),
            Some(&host.hostname),
            Some(slot),
        );
        let (version, sent) = match payload {
            Payload::Preprocessed(input) => {
                let version = plain_version(host);
                let argv = scan::remote_argv(job);
                log::debug!("sending to {} (protocol {version}): {argv:?}", host.hostdef);
                (version, connection.send_request(version, &argv, input))
            }
            Payload::Pump(request) => {
                log::debug!(
                    "sending to {} (protocol 3, {} files): {:?}",
                    host.hostdef,
                    request.files.len(),
                    request.argv
                );
                let sent = connection.send_pump_request(&request.encode());
                match sent {
                    Ok(()) if request.header_count() > 0 => {
                        (3, self.send_headers(connection, host, request)?)
                    }
                    sent => (3, sent),
                }
            }
        };
        match &sent {
            Err(err) if !err.peer_stopped_reading() => {
                return Err(Attempt::HostFailed(sent.unwrap_err()))
            }
            Err(err) => log::debug!("{}: {err}; reading its reply anyway", host.hostdef),
            Ok(()) => {}
        }
        self.note_state(
            Phase::Compile,
            Some(file.as_bytes()),
            Some(&host.hostname),
            Some(slot),
        );
        if connection.is_sealed() {
            // The host will say which compiler it ran: learn the local one
            // while it compiles, not after.
            self.local_identity(job);
        }
        match (connection.read_reply(version), sent) {
            (Ok(Reply::Refused(reason)), _) => Err(Attempt::Refused(reason)),
            (Ok(Reply::Done(outcome)), Ok(())) => Ok(outcome),
            // A result for a job that was not all sent is not to be trusted.
            (_, Err(err)) | (Err(err), Ok(())) => Err(Attempt::HostFailed(err)),
        }
    }

    /// After a request with headers sent by hash: reads the daemon's
    /// `NEED` and sends the bodies it asks for. A refusal ends the attempt.
    fn send_headers(
        &mut self,
        connection: &mut Connection,
        host: &Host,
        request: &pump::Request,
    ) -> Result<Result<(), RemoteError>, Attempt> {
        let needed = match connection.read_need(request.header_count()) {
            Ok(remote::Need::Bodies(needed)) => needed,
            Ok(remote::Need::Refused(reason)) => return Err(Attempt::Refused(reason)),
            Err(err) => return Err(Attempt::HostFailed(err)),
        };
        let count = needed.iter().filter(|&&n| n).count();
        log::debug!(
            "{} has {} of {} system headers; sending {count}",
            host.hostdef,
            needed.len() - count,
            needed.len()
        );
        let bodies = request.needed_bodies(&needed).map_err(|why| {
            log::error!("cannot send the system headers: {why}");
            Attempt::LocalTrouble(ExitCode::IoError)
        })?;
        Ok(connection.send_header_bodies(&bodies))
    }

    /// Reads the object (after a status of 0), and for a protocol 3 job
    /// that wants one the `.d` file, each beside its target; checks the
    /// object's format, puts both in place and shows the compiler's output.
    fn receive_object(
        &mut self,
        job: &scan::Job,
        host: &Host,
        (mut connection, version, deps): (Connection, u32, Option<&Path>),
        outcome: remote::Outcome,
    ) -> Attempt {
        let mut object = match ObjectFile::create(&job.output) {
            Ok(object) => object,
            Err(err) => {
                log::warn!("failed to create {}: {err}", job.output.display());
                return Attempt::LocalTrouble(ExitCode::IoError);
            }
        };
        if let Err(err) = connection.read_object(version, object.file()) {
            return Attempt::HostFailed(err);
        }
        let deps = match deps.map(|path| receive_deps(&mut connection, path)) {
            None => None,
            Some(Ok(deps)) => Some(deps),
            Some(Err(attempt)) => return attempt,
        };
        drop(connection);
        if let Some(why) = self.check_object(job, &object, host) {
            // Dropping the object removes its temporary file; the target
            // is untouched.
            drop(object);
            return Attempt::WrongObject(why);
        }
        let committed = object.commit().map_err(|err| (job.output.as_path(), err));
        let committed = committed.and_then(|()| match deps {
            Some((path, deps)) => deps.commit().map_err(|err| (path, err)),
            None => Ok(()),
        });
        if let Err((path, err)) = committed {
            log::warn!("failed to create {}: {err}", path.display());
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
    fn check_object(
        &mut self,
        job: &scan::Job,
        object: &ObjectFile,
        host: &Host,
    ) -> Option<String> {
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
                let learned =
                    objformat::expected(job, &self.launcher, cache.as_deref(), &env::tmp_dir());
                if learned.is_none() {
                    log::debug!("object check: off for this job");
                }
                self.expected_format = Some(learned.clone());
                learned
            }
        }?;
        match objformat::judge(&head, &expected, &job.argv, &job.tokens) {
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

/// Compares the identity the host sent (inside the channel) with the
/// local compiler's: another compiler makes the attempt fail, unless
/// `DISTCC_RS_ACCEPT_COMPILER` accepts it (warned once).
fn other_compiler(
    host: &Host,
    local: Option<crate::identity::Identity>,
    remote: &crate::identity::Identity,
) -> Option<Attempt> {
    let local = local?;
    if local.matches(remote) {
        return None;
    }
    if identity::accepted(host) {
        if let Ok(lock_dir) = env::distcc_subdir("lock") {
            identity::note_mismatch(&lock_dir, host, (&local, remote), true);
        }
        return None;
    }
    Some(Attempt::OtherCompiler(Box::new((local, remote.clone()))))
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

/// The basename of the first source file in `argv` (read into `tokens`),
/// for the monitor.
fn source_name(argv: &[OsString], tokens: &Tokens) -> Option<String> {
    tokens
        .first_source(argv)
        .map(|i| local::display_name(&argv[i]))
}

/// The protocol of a plain job to `host`: 2 with `,lzo`, else 1 (a pump
/// host has `,lzo`, so its plain jobs are version 2).
fn plain_version(host: &Host) -> u32 {
    if host.lzo {
        2
    } else {
        1
    }
}

/// Reads the server's `.d` file into a temporary file beside `path`.
fn receive_deps<'p>(
    connection: &mut Connection,
    path: &'p Path,
) -> Result<(&'p Path, ObjectFile), Attempt> {
    let mut deps = ObjectFile::create(path).map_err(|err| {
        log::warn!("failed to create {}: {err}", path.display());
        Attempt::LocalTrouble(ExitCode::IoError)
    })?;
    connection
        .read_deps(deps.file())
        .map_err(Attempt::HostFailed)?;
    Ok((path, deps))
}
