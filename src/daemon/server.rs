//! The daemon's event loop: every connection's I/O on one mio poll, compile
//! slots handed out only to complete requests, compilers reaped on SIGCHLD.
//!
//! A connection moves through `Reading` (the request arrives, the source is
//! stored in the job's directory), `Queued` (complete, waiting for one of the
//! `--jobs` slots), `Compiling` (the compiler runs in its own process group)
//! and `Writing` (the response goes out). Slow or idle peers therefore only
//! ever hold a file descriptor, never a slot, and the read deadline closes
//! them in the end.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Child;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::hint;
use super::job::{self, Job, JobDir};
use super::policy;
use super::stats::{Outcome, RunningJob, Stats};
use super::Config;
use crate::exitcode::ExitCode;
use crate::proto::{Item, Limits, RequestDecoder, Response};

const SIGNALS: Token = Token(0);
const FIRST_LISTENER: usize = 1;
const FIRST_CONN: usize = 64;
/// How long a stats client may take to send its request before it gets the reply anyway.
const STATS_WAIT: Duration = Duration::from_millis(200);
/// Grace between SIGTERM and SIGKILL for a compiler being stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long running jobs may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long a refused client may go on sending its request after `DENY`.
const DENY_DRAIN_TIME: Duration = Duration::from_secs(5);
/// How long, and how much, a stats client may send after its reply.
const STATS_DRAIN_TIME: Duration = Duration::from_secs(1);
const STATS_DRAIN_BYTES: u64 = 64 * 1024;

/// What a listening socket serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Compile,
    Stats,
}

/// A connection's two directions: one socket, or (inetd over ssh) two pipes.
struct Io {
    read: File,
    write: Option<File>,
}

impl Io {
    fn writer(&self) -> &File {
        self.write.as_ref().unwrap_or(&self.read)
    }
}

enum State {
    Reading {
        decoder: RequestDecoder,
        job: Option<Job>,
        body: Option<File>,
        compressed: bool,
    },
    Queued {
        job: Job,
    },
    Compiling {
        job: Job,
        child: Child,
        /// SIGKILL time for a compiler that was sent SIGTERM.
        kill_at: Option<Instant>,
        /// Why it was stopped, if it was.
        stopped: Option<Outcome>,
        lifetime_ends: Option<Instant>,
    },
    Writing {
        out: Vec<u8>,
        pos: usize,
        then: AfterWrite,
    },
    /// The reply is out and the write side shut: what the peer still sends
    /// is read and thrown away, up to `left` bytes and the deadline, so that
    /// closing with unread input does not reset the connection under a
    /// client still writing its request (the reset would discard the reply).
    Draining {
        left: u64,
    },
    /// A stats client: reply once its request is read or after a short wait,
    /// then drain until it closes.
    Stats,
    /// The job has been taken out to move it to its next state; no event
    /// sees this, because the next state is set before the handler returns.
    Taken,
}

/// What a connection does once its output is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterWrite {
    Close,
    /// Shut the write side and drain the peer's input, up to `bytes` and `time`.
    Drain {
        bytes: u64,
        time: Duration,
    },
}

impl State {
    /// A new compile connection, waiting for its request.
    fn reading(limits: &Limits) -> State {
        State::Reading {
            decoder: RequestDecoder::new(limits.clone()),
            job: None,
            body: None,
            compressed: false,
        }
    }
}

/// A line of the daemon's own in a job's SERR, in distccd's format, so a
/// client shows it as it would show distccd's.
fn serr_line(function: &str, text: &str) -> String {
    format!(
        "distccd[{}] ({function}) ERROR: {text}\n",
        std::process::id()
    )
}

struct Conn {
    io: Io,
    peer: String,
    started: Instant,
    deadline: Option<Instant>,
    state: State,
}

/// The event loop and everything it owns.
pub struct Server<'a> {
    config: &'a Config,
    poll: Poll,
    signals: OwnedFd,
    listeners: Vec<(TcpListener, Service)>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    max_conns: usize,
    queue: VecDeque<usize>,
    running: usize,
    stats: Stats,
    scratch: Vec<u8>,
    stopping: Option<Instant>,
    /// True in inetd mode: the loop ends when the one connection does.
    single: bool,
    compilers: job::CompilerSearch,
}

fn conn_token(idx: usize, write_side: bool) -> Token {
    Token(FIRST_CONN + idx * 2 + usize::from(write_side))
}

impl<'a> Server<'a> {
    pub fn new(config: &'a Config, listeners: Vec<(TcpListener, Service)>) -> io::Result<Self> {
        let poll = Poll::new()?;
        let signals =
            crate::sys::signal_pipe(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD])?;
        poll.registry().register(
            &mut SourceFd(&signals.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        let mut listeners = listeners;
        for (i, (listener, _)) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(listener, Token(FIRST_LISTENER + i), Interest::READABLE)?;
        }
        let nofile = crate::sys::raise_nofile_limit();
        Ok(Server {
            config,
            poll,
            signals,
            listeners,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            max_conns: (nofile.saturating_sub(64) / 2).clamp(16, 8192) as usize,
            queue: VecDeque::new(),
            running: 0,
            stats: Stats::new(config.jobs),
            scratch: vec![0; 64 * 1024],
            stopping: None,
            single: false,
            compilers: job::CompilerSearch::new(config.masquerade_dirs()),
        })
    }

    /// Serves one connection on stdin and stdout (`--inetd`), then returns.
    pub fn serve_inetd(&mut self) -> io::Result<()> {
        let peer_addr = crate::sys::peer_address(0);
        if let Some(addr) = peer_addr {
            if !self.config.access.allows(addr.ip()) {
                log::warn!("connection from client '{addr}' denied by access list");
                return Ok(());
            }
        }
        crate::sys::set_nonblocking(0, true)?;
        crate::sys::set_nonblocking(1, true)?;
        // SAFETY: fds 0 and 1 are ours for the life of this one-job process.
        let (read, write) = unsafe {
            use std::os::fd::FromRawFd;
            (File::from_raw_fd(0), File::from_raw_fd(1))
        };
        let io = Io {
            read,
            write: Some(write),
        };
        let peer = peer_addr.map_or_else(|| "NOTSOCKET".to_string(), |a| a.to_string());
        self.single = true;
        self.add_conn(io, peer, State::reading(&self.config.limits))?;
        self.run()
    }

    /// Runs until SIGTERM, SIGINT, SIGHUP or `--lifetime`, then lets running
    /// jobs finish (bounded) and returns.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let lifetime_end = self.config.lifetime.map(|d| Instant::now() + d);
        loop {
            let timeout = self.next_timeout(lifetime_end);
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let mut reap = false;
            for event in events.iter() {
                match event.token() {
                    SIGNALS => reap |= self.on_signals(),
                    Token(t) if t >= FIRST_CONN => {
                        let idx = (t - FIRST_CONN) / 2;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(idx);
                        }
                        if event.is_writable() || event.is_write_closed() {
                            self.on_writable(idx);
                        }
                    }
                    Token(t) => self.accept(t - FIRST_LISTENER),
                }
            }
            if reap {
                self.reap();
            }
            let now = Instant::now();
            if lifetime_end.is_some_and(|end| now >= end) && self.stopping.is_none() {
                log::info!("--lifetime expired, stopping");
                self.stop();
            }
            self.check_deadlines(now);
            self.start_jobs();
            self.stats.sample_kids(self.running);
            if (self.stopping.is_some() || self.single) && self.open == 0 {
                return Ok(());
            }
            if self.stopping.is_some_and(|end| now >= end) {
                self.abandon_jobs();
                return Ok(());
            }
        }
    }

    fn next_timeout(&self, lifetime_end: Option<Instant>) -> Option<Duration> {
        let now = Instant::now();
        let mut next = lifetime_end.into_iter().chain(self.stopping).min();
        for conn in self.conns.iter().flatten() {
            next = next.into_iter().chain(conn.deadline).min();
            if let State::Compiling {
                kill_at,
                lifetime_ends,
                ..
            } = &conn.state
            {
                next = next.into_iter().chain(*kill_at).chain(*lifetime_ends).min();
            }
        }
        // Wake at least once a second for the running-jobs samples.
        let cap = Duration::from_secs(1);
        Some(next.map_or(cap, |t| t.saturating_duration_since(now).min(cap)))
    }

    /// Handles pending signals; returns true if children may need reaping.
    fn on_signals(&mut self) -> bool {
        let mut reap = false;
        for sig in crate::sys::drain_signals(&self.signals) {
            if sig == libc::SIGCHLD {
                reap = true;
            } else if self.stopping.is_none() {
                log::info!("signal {sig} received, stopping");
                self.stop();
            }
        }
        reap
    }

    /// Stops accepting and drops connections that have no complete request.
    fn stop(&mut self) {
        self.stopping = Some(Instant::now() + SHUTDOWN_GRACE);
        for (mut listener, _) in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for idx in 0..self.conns.len() {
            let idle = matches!(
                self.conns[idx].as_ref().map(|c| &c.state),
                Some(State::Reading { .. } | State::Stats | State::Draining { .. })
            );
            if idle {
                self.close(idx);
            }
        }
    }

    /// At the end of the shutdown grace: kill what still runs and close everything.
    fn abandon_jobs(&mut self) {
        for idx in 0..self.conns.len() {
            if let Some(Conn {
                state: State::Compiling { child, .. },
                ..
            }) = self.conns[idx].as_mut()
            {
                log::warn!("killing compiler {} at shutdown", child.id());
                crate::sys::kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
            }
            self.close(idx);
        }
    }

    fn accept(&mut self, listener: usize) {
        loop {
            let Some((sock, service)) = self.listeners.get(listener) else {
                return;
            };
            let service = *service;
            let (stream, addr) = match sock.accept() {
                Ok(pair) => pair,
                Err(err) if err.kind() == ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::error!("accept failed: {err}");
                    return;
                }
            };
            if service == Service::Compile {
                self.stats.tcp_accept += 1;
            }
            if !self.config.access.allows(addr.ip()) {
                log::warn!("connection from client '{addr}' denied by access list");
                continue;
            }
            if self.open >= self.max_conns && !self.evict_idle() {
                log::warn!("too many connections; dropping client '{addr}'");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let io = Io {
                read: File::from(OwnedFd::from(std::net::TcpStream::from(stream))),
                write: None,
            };
            let state = match service {
                Service::Compile => State::reading(&self.config.limits),
                Service::Stats => State::Stats,
            };
            log::debug!("connection from {addr}");
            if let Err(err) = self.add_conn(io, addr.to_string(), state) {
                log::error!("cannot watch connection from {addr}: {err}");
            }
        }
    }

    /// Closes the connection that has waited longest without a complete
    /// request, to make room. Returns false if there is none.
    fn evict_idle(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| matches!(c.state, State::Reading { .. }))
            .min_by_key(|(_, c)| c.started)
            .map(|(i, _)| i);
        match oldest {
            Some(idx) => {
                if let Some(conn) = &self.conns[idx] {
                    log::warn!("too many connections; dropping idle client {}", conn.peer);
                }
                self.close(idx);
                true
            }
            None => false,
        }
    }

    fn add_conn(&mut self, io: Io, peer: String, state: State) -> io::Result<()> {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let registry = self.poll.registry();
        let read_fd = io.read.as_raw_fd();
        let result = match &io.write {
            None => registry.register(
                &mut SourceFd(&read_fd),
                conn_token(idx, false),
                Interest::READABLE | Interest::WRITABLE,
            ),
            Some(w) => registry
                .register(
                    &mut SourceFd(&read_fd),
                    conn_token(idx, false),
                    Interest::READABLE,
                )
                .and_then(|_| {
                    registry.register(
                        &mut SourceFd(&w.as_raw_fd()),
                        conn_token(idx, true),
                        Interest::WRITABLE,
                    )
                }),
        };
        if let Err(err) = result {
            self.free.push(idx);
            return Err(err);
        }
        let now = Instant::now();
        let deadline = match state {
            State::Stats => now + STATS_WAIT,
            _ => now + self.config.io_timeout,
        };
        self.conns[idx] = Some(Conn {
            io,
            peer,
            started: now,
            deadline: Some(deadline),
            state,
        });
        self.open += 1;
        Ok(())
    }

    /// Closes a connection: deregisters it and drops its job, which removes
    /// the job's directory. A compiler still running is killed.
    fn close(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut SourceFd(&conn.io.read.as_raw_fd()));
        if let Some(w) = &conn.io.write {
            let _ = registry.deregister(&mut SourceFd(&w.as_raw_fd()));
        }
        match &mut conn.state {
            State::Compiling { child, .. } => {
                crate::sys::kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                self.running -= 1;
            }
            State::Queued { .. } => self.queue.retain(|&q| q != idx),
            _ => {}
        }
        self.free.push(idx);
        self.open -= 1;
    }

    fn on_readable(&mut self, idx: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                return;
            };
            let n = match (&conn.io.read).read(&mut self.scratch) {
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::warn!("read from {} failed: {err}", conn.peer);
                    self.client_gone(idx);
                    return;
                }
            };
            if n == 0 {
                self.client_gone(idx);
                return;
            }
            let data = std::mem::take(&mut self.scratch);
            let keep_going = self.on_data(idx, &data[..n]);
            self.scratch = data;
            if !keep_going {
                return;
            }
        }
    }

    /// The peer closed or reset its end.
    fn client_gone(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        match &mut conn.state {
            State::Reading { .. } => {
                log::debug!("client {} closed before sending a whole request", conn.peer);
                self.close(idx);
            }
            State::Compiling {
                child,
                kill_at,
                stopped,
                ..
            } => {
                if stopped.is_none() {
                    log::warn!(
                        "client {} disconnected, killing compiler {}",
                        conn.peer,
                        child.id()
                    );
                    crate::sys::kill_group(child.id(), libc::SIGTERM);
                    *kill_at = Some(Instant::now() + KILL_GRACE);
                    *stopped = Some(Outcome::Disconnect);
                }
            }
            State::Queued { .. } => {
                log::warn!("client {} disconnected while its job waited", conn.peer);
                self.stats.record(Outcome::Disconnect, None);
                self.close(idx);
            }
            // The peer may only have shut its write side: the reply still
            // goes out, until a write fails or the deadline passes.
            State::Writing { .. } => {}
            State::Draining { .. } | State::Stats | State::Taken => self.close(idx),
        }
    }

    /// Feeds bytes to a connection. Returns false once the connection has no
    /// further use for input (it was closed). After a whole request it
    /// returns true, so that the socket is still read until it would block:
    /// readiness is edge-triggered, and an end of file that arrived with the
    /// request would otherwise never be seen, leaving the compiler of a
    /// client that has gone to run on and its result to be sent to no one.
    fn on_data(&mut self, idx: usize, data: &[u8]) -> bool {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return false;
        };
        match conn.state {
            State::Reading { .. } => {}
            State::Stats => {
                self.reply_stats(idx);
                return true;
            }
            State::Draining { ref mut left } => {
                *left = left.saturating_sub(data.len() as u64);
                if *left == 0 {
                    log::debug!(
                        "client {} sent too much after a refusal; closing",
                        conn.peer
                    );
                    self.close(idx);
                    return false;
                }
                return true;
            }
            _ => {
                // Debug level: a client that floods must not flood the log.
                log::debug!(
                    "client {} sent {} bytes after its request; ignored",
                    conn.peer,
                    data.len()
                );
                return true;
            }
        }
        let config = self.config;
        let mut input = data;
        loop {
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                return false;
            };
            let State::Reading {
                decoder,
                job,
                body,
                compressed,
            } = &mut conn.state
            else {
                return false;
            };
            let item = match decoder.next(&mut input) {
                Ok(Some(item)) => item,
                Ok(None) => return true,
                Err(err) => {
                    if job.is_some() {
                        self.refuse(idx, Outcome::BadRequest, &err.to_string());
                    } else {
                        self.drop_bad_request(idx, &err.to_string());
                    }
                    return true;
                }
            };
            match item {
                Item::Command { version, argv } => match accept_command(config, version, argv) {
                    Ok(accepted) => *job = Some(accepted),
                    Err(why) => {
                        self.refuse(idx, Outcome::Other, &why);
                        return true;
                    }
                },
                Item::InputStart(len) => {
                    let Some(j) = job.as_ref() else {
                        return false;
                    };
                    *compressed = j.version >= 2 && len > 0;
                    match File::create(j.body_path(*compressed)) {
                        Ok(file) => *body = Some(file),
                        Err(err) => {
                            let why = format!("cannot store the source: {err}");
                            self.refuse(idx, Outcome::Other, &why);
                            return true;
                        }
                    }
                }
                Item::Input(chunk) => {
                    if let Some(Err(err)) = body.as_mut().map(|f| f.write_all(chunk)) {
                        let why = format!("cannot store the source: {err}");
                        self.refuse(idx, Outcome::Other, &why);
                        return true;
                    }
                }
                Item::End => {
                    *body = None;
                    let (Some(j), was_compressed) = (job.take(), *compressed) else {
                        return false;
                    };
                    if was_compressed {
                        if let Err(why) = j.unpack_input(config.limits.max_input as usize) {
                            self.refuse(idx, Outcome::BadRequest, &why);
                            return true;
                        }
                    }
                    if !input.is_empty() {
                        log::warn!(
                            "client {} sent {} bytes after its request; ignored",
                            conn.peer,
                            input.len()
                        );
                    }
                    conn.state = State::Queued { job: j };
                    conn.deadline = None;
                    self.queue.push_back(idx);
                    return true;
                }
            }
        }
    }

    /// Refuses a job with `DENY` and the reason, then drains what the
    /// client still sends. A 3.4 client takes it as a failed host and
    /// compiles locally; ours shows the reason and keeps the host.
    fn refuse(&mut self, idx: usize, outcome: Outcome, why: &str) {
        let Some(conn) = self.conns.get(idx).and_then(Option::as_ref) else {
            return;
        };
        log::warn!("refusing job from {}: {why}", conn.peer);
        self.stats.record(outcome, None);
        let drain = AfterWrite::Drain {
            bytes: drain_budget(&self.config.limits),
            time: DENY_DRAIN_TIME,
        };
        self.start_writing(idx, crate::proto::encode_deny(why), drain);
    }

    /// Closes a connection whose bytes are no distcc request (garbage, a
    /// protocol version not served, a claimed size over the limits) before
    /// any job was made, as distccd 3.4 does: no reply.
    fn drop_bad_request(&mut self, idx: usize, why: &str) {
        if let Some(conn) = self.conns.get(idx).and_then(Option::as_ref) {
            log::warn!("refusing job from {}: {why}", conn.peer);
        }
        self.stats.record(Outcome::BadRequest, None);
        self.close(idx);
    }

    fn start_jobs(&mut self) {
        while self.running < self.config.jobs {
            let Some(idx) = self.queue.pop_front() else {
                return;
            };
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            if !matches!(conn.state, State::Queued { .. }) {
                continue;
            }
            let State::Queued { job } = std::mem::replace(&mut conn.state, State::Taken) else {
                continue;
            };
            let spawned = match self.compilers.find(&job.program) {
                Some(path) => job.spawn(&path),
                None => Err(io::Error::new(
                    ErrorKind::NotFound,
                    "not found on the server's PATH",
                )),
            };
            match spawned {
                Ok(child) => {
                    log::debug!(
                        "compiling {} for {} with {} (pid {})",
                        String::from_utf8_lossy(job.input_name()),
                        conn.peer,
                        String::from_utf8_lossy(&job.program),
                        child.id()
                    );
                    conn.state = State::Compiling {
                        job,
                        child,
                        kill_at: None,
                        stopped: None,
                        lifetime_ends: self.config.job_lifetime.map(|d| Instant::now() + d),
                    };
                    self.running += 1;
                }
                Err(err) => {
                    let message = serr_line(
                        "dcc_execvp",
                        &format!(
                            "failed to exec {}: {err}",
                            String::from_utf8_lossy(&job.program)
                        ),
                    );
                    log::error!(
                        "failed to exec {}: {err}",
                        String::from_utf8_lossy(&job.program)
                    );
                    let status = ExitCode::CompilerMissing.as_wait_status();
                    let out = Response {
                        version: job.version,
                        status,
                        stderr: message.as_bytes(),
                        stdout: b"",
                        object: None,
                    }
                    .encode();
                    self.stats.record(Outcome::CompileError, None);
                    self.summary(idx, &job, "COMPILER_MISSING", status);
                    self.start_writing(idx, out, AfterWrite::Close);
                }
            }
        }
    }

    /// Reaps finished compilers and turns their results into responses.
    fn reap(&mut self) {
        for idx in 0..self.conns.len() {
            let Some(Conn {
                state: State::Compiling { child, .. },
                ..
            }) = self.conns[idx].as_mut()
            else {
                continue;
            };
            let status = match child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => continue,
                Err(err) => {
                    log::error!("waitpid for {} failed: {err}", child.id());
                    continue;
                }
            };
            self.running -= 1;
            self.finish(idx, status);
        }
    }

    fn finish(&mut self, idx: usize, status: std::process::ExitStatus) {
        use std::os::unix::process::ExitStatusExt;
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let State::Compiling { job, stopped, .. } =
            std::mem::replace(&mut conn.state, State::Taken)
        else {
            return;
        };
        let took = conn.started.elapsed();
        match stopped {
            Some(Outcome::Disconnect) => {
                self.stats.record(Outcome::Disconnect, None);
                self.summary(
                    idx,
                    &job,
                    "CLI_DISCONNECT",
                    ExitCode::IoError.as_wait_status(),
                );
                self.close(idx);
            }
            Some(_) => {
                let status = ExitCode::Timeout.as_wait_status();
                let message =
                    serr_line("dcc_collect_child", "Compilation takes too long, timeout.");
                let results = job.results(false);
                let mut stderr = results.stderr;
                stderr.extend_from_slice(message.as_bytes());
                let out = Response {
                    version: job.version,
                    status,
                    stderr: &stderr,
                    stdout: &results.stdout,
                    object: None,
                }
                .encode();
                self.stats.record(Outcome::Timeout, None);
                self.summary(idx, &job, "COMPILE_TIMEOUT", status);
                self.start_writing(idx, out, AfterWrite::Close);
            }
            None => {
                let raw = status.into_raw() as u32;
                let results = job.results(raw == 0);
                let mut out = Response {
                    version: job.version,
                    status: raw,
                    stderr: &results.stderr,
                    stdout: &results.stdout,
                    object: results.object.as_deref(),
                }
                .encode();
                let (outcome, word) = match (raw, &results.object) {
                    (0, Some(_)) => (Outcome::Ok, "COMPILE_OK"),
                    (0, None) => {
                        // distccd 3.4 stops after SOUT when the compiler left
                        // no output; the client sees a truncated response.
                        log::error!(
                            "compiler succeeded but wrote no output for {}",
                            String::from_utf8_lossy(job.input_name())
                        );
                        let doto_header = crate::proto::HEADER_LEN;
                        out.truncate(out.len() - doto_header);
                        (Outcome::CompileError, "COMPILE_NO_OUTPUT")
                    }
                    _ => {
                        let hint = hint::gcc_input_to_clang(
                            &conn.peer,
                            &String::from_utf8_lossy(&job.argv[0]),
                            &job.input_path(),
                            &results.stderr,
                        );
                        if let Some(hint) = hint {
                            log::warn!("{hint}");
                        }
                        (Outcome::CompileError, "COMPILE_ERROR")
                    }
                };
                let timing = (outcome == Outcome::Ok)
                    .then(|| (job.input_name(), job.program.as_slice(), took));
                self.stats.record(outcome, timing);
                self.summary(idx, &job, word, raw);
                self.start_writing(idx, out, AfterWrite::Close);
            }
        }
    }

    /// One log line per job, as distccd's `dcc_job_summary` writes.
    fn summary(&self, idx: usize, job: &Job, word: &str, status: u32) {
        let Some(conn) = self.conns.get(idx).and_then(Option::as_ref) else {
            return;
        };
        log::info!(
            "client: {} {word} exit:{} sig:{} core:{} time:{}ms {} {}",
            conn.peer,
            (status >> 8) & 0xff,
            status & 0x7f,
            (status >> 7) & 1,
            conn.started.elapsed().as_millis(),
            String::from_utf8_lossy(&job.program),
            String::from_utf8_lossy(job.input_name())
        );
    }

    fn start_writing(&mut self, idx: usize, out: Vec<u8>, then: AfterWrite) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        conn.state = State::Writing { out, pos: 0, then };
        conn.deadline = Some(Instant::now() + self.config.io_timeout);
        self.on_writable(idx);
    }

    fn on_writable(&mut self, idx: usize) {
        let io_timeout = self.config.io_timeout;
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let State::Writing { out, pos, then } = &mut conn.state else {
            return;
        };
        let then = *then;
        while *pos < out.len() {
            match conn.io.writer().write(&out[*pos..]) {
                Ok(0) => break,
                Ok(n) => {
                    *pos += n;
                    conn.deadline = Some(Instant::now() + io_timeout);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::warn!("cannot send the result to {}: {err}", conn.peer);
                    self.close(idx);
                    return;
                }
            }
        }
        match then {
            AfterWrite::Close => self.close(idx),
            AfterWrite::Drain { bytes, time } => self.start_draining(idx, bytes, time),
        }
    }

    /// Shuts the connection's write side, so the peer sees the end of the
    /// reply, and reads what it still sends until it closes.
    fn start_draining(&mut self, idx: usize, bytes: u64, time: Duration) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        match conn.io.write.take() {
            Some(w) => {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&w.as_raw_fd()));
                let _ = socket2::SockRef::from(&w).shutdown(std::net::Shutdown::Write);
            }
            None => {
                let _ = socket2::SockRef::from(&conn.io.read).shutdown(std::net::Shutdown::Write);
            }
        }
        conn.state = State::Draining { left: bytes };
        conn.deadline = Some(Instant::now() + time);
    }

    fn reply_stats(&mut self, idx: usize) {
        let running: Vec<RunningJob> = self
            .conns
            .iter()
            .flatten()
            .filter_map(|c| match &c.state {
                State::Compiling { job, .. } => Some(RunningJob {
                    client: c.peer.clone(),
                    compiler: &job.program,
                    input: job.input_name(),
                    elapsed: c.started.elapsed(),
                }),
                _ => None,
            })
            .collect();
        let text = self.stats.render(&self.config.tmpdir, &running);
        let drain = AfterWrite::Drain {
            bytes: STATS_DRAIN_BYTES,
            time: STATS_DRAIN_TIME,
        };
        self.start_writing(idx, text.into_bytes(), drain);
    }

    fn check_deadlines(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let Some(conn) = self.conns[idx].as_mut() else {
                continue;
            };
            if let State::Compiling {
                child,
                kill_at,
                stopped,
                lifetime_ends,
                ..
            } = &mut conn.state
            {
                if lifetime_ends.is_some_and(|t| now >= t) && stopped.is_none() {
                    log::warn!(
                        "compiler {} for {} ran past --job-lifetime; killing it",
                        child.id(),
                        conn.peer
                    );
                    crate::sys::kill_group(child.id(), libc::SIGTERM);
                    *stopped = Some(Outcome::Timeout);
                    *kill_at = Some(now + KILL_GRACE);
                    *lifetime_ends = None;
                } else if kill_at.is_some_and(|t| now >= t) {
                    crate::sys::kill_group(child.id(), libc::SIGKILL);
                    *kill_at = None;
                }
                continue;
            }
            if conn.deadline.is_none_or(|t| now < t) {
                continue;
            }
            match conn.state {
                State::Stats => self.reply_stats(idx),
                State::Reading { .. } => {
                    log::warn!(
                        "client {} sent no whole request within {}s; closing",
                        conn.peer,
                        self.config.io_timeout.as_secs()
                    );
                    self.stats.record(Outcome::BadRequest, None);
                    self.close(idx);
                }
                State::Writing { .. } => {
                    log::warn!("client {} stopped reading its result; closing", conn.peer);
                    self.close(idx);
                }
                _ => self.close(idx),
            }
        }
    }
}

/// Checks a request's command against the scan, the whitelist and the
/// argument rules, and makes its job directory.
fn accept_command(config: &Config, version: u32, argv: Vec<Vec<u8>>) -> Result<Job, String> {
    let compile = crate::args::scan(&argv)
        .map_err(|why| format!("not a distributable compile ({why}): {}", show_argv(&argv)))?;
    let program = config.whitelist.check(&argv[0])?;
    policy::check_arguments(&argv)?;
    let dir = JobDir::create(&config.tmpdir, config.save_temps).map_err(|e| {
        format!(
            "cannot make a job directory in {}: {e}",
            config.tmpdir.display()
        )
    })?;
    Ok(Job::new(version, argv, program, compile, dir))
}

/// The most a refused client may still send: the largest request the limits allow.
fn drain_budget(limits: &Limits) -> u64 {
    let headers = (u64::from(limits.max_argc) + 4) * crate::proto::HEADER_LEN as u64;
    headers + limits.max_args_total as u64 + u64::from(limits.max_input)
}

fn show_argv(argv: &[Vec<u8>]) -> String {
    argv.iter()
        .map(|a| String::from_utf8_lossy(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Raw descriptor helper for callers that hand in listening sockets.
pub fn listener_from_fd(fd: RawFd) -> io::Result<TcpListener> {
    use std::os::fd::FromRawFd;
    crate::sys::set_nonblocking(fd, true)?;
    // Inherited without close-on-exec; a compiler that kept it would hold
    // the port open after the daemon closed it.
    crate::sys::set_cloexec(fd)?;
    // SAFETY: the caller passes a listening socket it owns (systemd's fd 3).
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}
