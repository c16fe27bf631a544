//! The daemon's event loop: every connection's I/O on one mio poll, compile
//! slots handed out only to complete requests, compilers run by the workers.
//!
//! Connections and their states are in `conn`. Slow or idle peers only ever
//! hold a file descriptor, never a slot, and the read deadline closes them in
//! the end. Nothing here blocks: sockets are non-blocking, and the compiler
//! search, fork, exec and waitpid happen on the worker threads (`workers`).
//! Reading a request is in `server/request.rs`, building a finished job's
//! response in `response.rs`.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Waker};

use super::cluster::ClusterWatch;
use super::conn::{
    conn_of, conn_token, AfterWrite, Conn, ConnId, ConnState, Io, JobLabel, SealedOut,
    FIRST_LISTENER, MAX_CONN_ID, MAX_LISTENERS, MAX_STATS_HEAD, SIGNALS, WAKER,
};
use super::header_store::HeaderStore;
use super::job::{self, Compiler, Results, ServerJob};
use super::response::{self, Answer};
use super::stats::{Outcome, RunningJob, Stats};
use super::workers::{Report, Workers};
use super::Config;
use crate::exitcode::ExitCode;
use crate::sandbox::Sandbox;

mod load;
mod request;
mod secure;

/// How long a stats client may take to send its request before it gets the reply anyway.
const STATS_WAIT: Duration = Duration::from_millis(200);
/// Grace between SIGTERM and SIGKILL for a compiler being stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long running jobs may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long, and how much, a stats client may send after its reply.
const STATS_DRAIN_TIME: Duration = Duration::from_secs(1);
const STATS_DRAIN_BYTES: u64 = 64 * 1024;
/// How much of a reply is sealed at a time on a channel: four frames.
const REPLY_BATCH: usize = 4 * crate::channel::MAX_PLAIN;
/// The most one read from a connection takes: four whole channel frames.
const READ_SIZE: usize = 4 * (crate::channel::MAX_FRAME + 2);
/// The most a channel opens from one read: that read, a frame begun in the
/// read before, and while a frame is opened its own room; twice a frame is
/// more than enough, so `opened` never grows (see `sys::unforked_buffer`).
pub(super) const OPENED_ROOM: usize = READ_SIZE + 2 * crate::channel::MAX_FRAME;

/// What a listening socket serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Compile,
    Stats,
}

/// The event loop and everything it owns.
pub struct Server<'a> {
    config: &'a Config,
    poll: Poll,
    signals: OwnedFd,
    listeners: Vec<(TcpListener, Service)>,
    conns: HashMap<ConnId, Conn>,
    next_id: ConnId,
    max_conns: usize,
    queue: VecDeque<ConnId>,
    /// Slots in use: jobs with a worker, until it reports them finished.
    running: usize,
    /// Placement's load answers and the recent job time they give.
    load: load::LoadAnswers,
    stats: Stats,
    /// What each read from a connection goes into.
    scratch: Vec<u8>,
    /// What a channel opened from `scratch` (secure.rs).
    opened: crate::channel::Opened,
    stopping: Option<Instant>,
    /// True in inetd mode: the loop ends when the one connection does.
    single: bool,
    workers: Workers,
    /// The store every pump file goes through (and `,sysheaders` headers
    /// come from), made for the first pump job: `Some(None)` if it could
    /// not be.
    headers: Option<Option<Arc<HeaderStore>>>,
    /// The `/cluster` page's peers, watched from its first request.
    cluster: Option<ClusterWatch>,
}

impl<'a> Server<'a> {
    /// The loop for `listeners`, whose compilers run in `sandbox`.
    pub fn new(
        config: &'a Config,
        listeners: Vec<(TcpListener, Service)>,
        sandbox: Sandbox,
    ) -> io::Result<Self> {
        if listeners.len() > MAX_LISTENERS {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} listening sockets; at most {MAX_LISTENERS} are served",
                    listeners.len()
                ),
            ));
        }
        let poll = Poll::new()?;
        let signals = crate::sys::signal_pipe(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])?;
        poll.registry().register(
            &mut SourceFd(&signals.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        let mut listeners = listeners;
        for (i, (listener, _)) in listeners.iter_mut().enumerate() {
            poll.registry().register(
                listener,
                mio::Token(FIRST_LISTENER + i),
                Interest::READABLE,
            )?;
        }
        let mut load = match listeners.len() * 2 <= MAX_LISTENERS {
            true => load::LoadAnswers::bind(&listeners),
            false => load::LoadAnswers::none(),
        };
        // Claims are unauthenticated datagrams: a daemon that demands keys
        // does not let them hold its slots.
        load.take_claims(config.trust.is_none());
        load.register(poll.registry(), FIRST_LISTENER + listeners.len());
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let compilers = job::CompilerSearch::new(config.masquerade_dirs());
        let workers = Workers::new(config.jobs, compilers, sandbox, waker);
        let nofile = crate::sys::raise_nofile_limit();
        Ok(Server {
            config,
            poll,
            signals,
            listeners,
            conns: HashMap::new(),
            next_id: 0,
            max_conns: (nofile.saturating_sub(64) / 2).clamp(16, 8192) as usize,
            queue: VecDeque::new(),
            running: 0,
            load,
            stats: Stats::new(config.jobs),
            scratch: crate::sys::unforked_buffer(READ_SIZE, 0),
            opened: crate::channel::Opened::new(crate::sys::unforked_buffer(OPENED_ROOM, 0)),
            stopping: None,
            single: false,
            workers,
            headers: None,
            cluster: None,
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
        self.add_conn(io, peer, ConnState::reading(&self.config.limits))?;
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
            self.dispatch(&events);
            self.take_reports();
            let now = Instant::now();
            self.check_lifetime(now, lifetime_end);
            self.check_deadlines(now);
            self.start_jobs();
            self.stats.sample_kids(self.running);
            if self.finished(now) {
                return Ok(());
            }
        }
    }

    /// Hands each event to its connection, listener or the signal pipe.
    fn dispatch(&mut self, events: &Events) {
        for event in events.iter() {
            match event.token() {
                SIGNALS => self.on_signals(),
                // The workers' reports are taken after every batch.
                WAKER => {}
                token => match conn_of(token) {
                    Some(id) => self.on_conn_event(id, event),
                    None => self.on_listener(token.0 - FIRST_LISTENER),
                },
            }
        }
    }

    /// An event for a connection that has been closed meanwhile finds no
    /// connection: ids are never reused while their events can be pending.
    fn on_conn_event(&mut self, id: ConnId, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.on_readable(id);
        }
        if event.is_writable() || event.is_write_closed() {
            self.on_writable(id);
        }
    }

    fn check_lifetime(&mut self, now: Instant, lifetime_end: Option<Instant>) {
        if lifetime_end.is_some_and(|end| now >= end) && self.stopping.is_none() {
            log::info!("--lifetime expired, stopping");
            self.stop();
        }
    }

    /// True when the loop is done: stopping (or inetd) and nothing open, or
    /// the shutdown grace is over, which kills what still runs.
    fn finished(&mut self, now: Instant) -> bool {
        if (self.stopping.is_some() || self.single) && self.conns.is_empty() && self.running == 0 {
            return true;
        }
        if self.stopping.is_some_and(|end| now >= end) {
            self.abandon_jobs();
            return true;
        }
        false
    }

    fn next_timeout(&self, lifetime_end: Option<Instant>) -> Option<Duration> {
        let now = Instant::now();
        let mut next = lifetime_end.into_iter().chain(self.stopping).min();
        for conn in self.conns.values() {
            next = next.into_iter().chain(conn.deadline).min();
            if let ConnState::Compiling {
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

    fn on_signals(&mut self) {
        for sig in crate::sys::drain_signals(&self.signals) {
            if self.stopping.is_none() {
                log::info!("signal {sig} received, stopping");
                self.stop();
            }
        }
    }

    fn ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// Stops accepting and drops connections that have no complete request.
    fn stop(&mut self) {
        self.stopping = Some(Instant::now() + SHUTDOWN_GRACE);
        for (mut listener, _) in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        for id in self.ids() {
            let idle = matches!(
                self.conns.get(&id).map(|c| &c.state),
                Some(
                    ConnState::Reading { .. }
                        | ConnState::Stats { .. }
                        | ConnState::Draining { .. }
                )
            );
            if idle {
                self.close(id);
            }
        }
    }

    /// At the end of the shutdown grace: kill what still runs and close everything.
    fn abandon_jobs(&mut self) {
        for id in self.ids() {
            if let Some(ConnState::Compiling { compiler, .. }) =
                self.conns.get(&id).map(|c| &c.state)
            {
                log::warn!("killing compiler {} at shutdown", compiler.pid);
            }
            self.close(id);
        }
        // The loop is over: the workers reap the killed compilers, and
        // kill any started meanwhile.
        self.workers.stop();
    }

    /// A listener's event: a connection to accept, or load queries.
    fn on_listener(&mut self, i: usize) {
        match i.checked_sub(self.listeners.len()) {
            None => self.accept(i),
            Some(j) => {
                let load = self.load_now();
                self.load.answer_queries(j, &load, &self.config.access);
            }
        }
    }

    /// What a load query is answered: the slots, the jobs and the recent job time.
    fn load_now(&self) -> crate::load::Load {
        let arriving = self
            .conns
            .values()
            .filter(|c| matches!(c.state, ConnState::Reading { .. }))
            .count();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        crate::load::Load {
            slots: count(self.config.jobs),
            running: count(self.running),
            queued: count(self.queue.len()),
            arriving: count(arriving),
            recent_ms: self.load.recent_ms(),
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
                self.load.connection_from(addr.ip());
            }
            // Closed without a byte, as distccd 3.4 does (docs/refusals.md).
            if !self.config.access.allows(addr.ip()) {
                log::warn!("connection from client '{addr}' denied by access list");
                continue;
            }
            if self.conns.len() >= self.max_conns && !self.evict_idle() {
                log::warn!("too many connections; dropping client '{addr}'");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let io = Io {
                read: File::from(OwnedFd::from(std::net::TcpStream::from(stream))),
                write: None,
            };
            let state = match service {
                Service::Compile => ConnState::reading(&self.config.limits),
                Service::Stats => ConnState::Stats { head: Vec::new() },
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
            .filter(|(_, c)| matches!(c.state, ConnState::Reading { .. }))
            .min_by_key(|(_, c)| c.started)
            .map(|(id, c)| (*id, c.peer.clone()));
        match oldest {
            Some((id, peer)) => {
                log::warn!("too many connections; dropping idle client {peer}");
                self.close(id);
                true
            }
            None => false,
        }
    }

    /// The next free connection id, counting up and wrapping only past ids
    /// that are still in use.
    fn new_id(&mut self) -> ConnId {
        loop {
            let id = self.next_id;
            self.next_id = if id >= MAX_CONN_ID { 0 } else { id + 1 };
            if !self.conns.contains_key(&id) {
                return id;
            }
        }
    }

    /// Watches a new connection for input; output is watched only once a
    /// write would block.
    fn add_conn(&mut self, io: Io, peer: String, state: ConnState) -> io::Result<()> {
        let id = self.new_id();
        self.poll.registry().register(
            &mut SourceFd(&io.read.as_raw_fd()),
            conn_token(id, false),
            Interest::READABLE,
        )?;
        let now = Instant::now();
        let channel = match state {
            ConnState::Reading { .. } => self.new_channel(),
            _ => None,
        };
        let deadline = match state {
            ConnState::Stats { .. } => now + STATS_WAIT,
            _ if channel.is_some() => now + secure::HANDSHAKE_TIME.min(self.config.io_timeout),
            _ => now + self.config.io_timeout,
        };
        self.conns.insert(
            id,
            Conn {
                io,
                peer,
                started: now,
                deadline: Some(deadline),
                state,
                write_armed: false,
                channel,
                asked_identity: None,
            },
        );
        Ok(())
    }

    /// Closes a connection: deregisters it and drops its job, which removes
    /// the job's directory. A compiler still running is killed (its worker
    /// reaps it and removes the directory); one still starting is killed
    /// when its worker reports it started.
    fn close(&mut self, id: ConnId) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut SourceFd(&conn.io.read.as_raw_fd()));
        if let (Some(w), true) = (&conn.io.write, conn.write_armed) {
            let _ = registry.deregister(&mut SourceFd(&w.as_raw_fd()));
        }
        match std::mem::replace(&mut conn.state, ConnState::Taken) {
            ConnState::Compiling { compiler, .. } => compiler.signal(libc::SIGKILL),
            ConnState::Queued { .. } => self.queue.retain(|&q| q != id),
            _ => {}
        }
    }

    fn on_readable(&mut self, id: ConnId) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let n = match (&conn.io.read).read(&mut self.scratch) {
                Ok(n) => n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::warn!("read from {} failed: {err}", conn.peer);
                    self.client_gone(id);
                    return;
                }
            };
            if n == 0 {
                self.client_gone(id);
                return;
            }
            let data = std::mem::take(&mut self.scratch);
            let keep_going = self.on_received(id, &data[..n]);
            self.scratch = data;
            if !keep_going {
                return;
            }
        }
    }

    /// The peer closed or reset its end.
    fn client_gone(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let handshaking = secure::in_handshake(conn);
        match &mut conn.state {
            ConnState::Reading { .. } if handshaking => {
                log::warn!(
                    "client {} closed during the handshake; nothing run",
                    conn.peer
                );
                self.close(id);
            }
            ConnState::Reading { .. } => {
                log::debug!("client {} closed before sending a whole request", conn.peer);
                self.close(id);
            }
            ConnState::Compiling {
                compiler,
                kill_at,
                stopped,
                ..
            } => {
                if stopped.is_none() {
                    log::warn!(
                        "client {} disconnected, killing compiler {}",
                        conn.peer,
                        compiler.pid
                    );
                    compiler.signal(libc::SIGTERM);
                    *kill_at = Some(Instant::now() + KILL_GRACE);
                    *stopped = Some(Outcome::Disconnect);
                }
            }
            // Its compiler may be starting: it is stopped once it has.
            ConnState::Starting { gone, .. } => *gone = true,
            ConnState::Queued { .. } => {
                log::warn!("client {} disconnected while its job waited", conn.peer);
                self.stats.record(Outcome::Disconnect, None);
                self.close(id);
            }
            // The peer may only have shut its write side: the reply still
            // goes out, until a write fails or the deadline passes.
            ConnState::Writing { .. } => {}
            ConnState::Draining { .. } | ConnState::Stats { .. } | ConnState::Taken => {
                self.close(id)
            }
        }
    }

    /// Feeds bytes to a connection. Returns false once the connection has no
    /// further use for input (it was closed). After a whole request it
    /// returns true, so that the socket is still read until it would block:
    /// readiness is edge-triggered, and an end of file that arrived with the
    /// request would otherwise never be seen, leaving the compiler of a
    /// client that has gone to run on and its result to be sent to no one.
    fn on_data(&mut self, id: ConnId, data: &[u8]) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        match &mut conn.state {
            ConnState::Reading { .. } => self.on_request_bytes(id, data),
            ConnState::Stats { head } => {
                let room = MAX_STATS_HEAD.saturating_sub(head.len());
                head.extend_from_slice(&data[..data.len().min(room)]);
                if head.contains(&b'\n') || head.len() >= MAX_STATS_HEAD {
                    self.reply_stats(id);
                }
                true
            }
            ConnState::Draining { left } => {
                *left = left.saturating_sub(data.len() as u64);
                if *left > 0 {
                    return true;
                }
                log::debug!(
                    "client {} sent too much after a refusal; closing",
                    conn.peer
                );
                self.close(id);
                false
            }
            _ => {
                // Debug level: a client that floods must not flood the log.
                log::debug!(
                    "client {} sent {} bytes after its request; ignored",
                    conn.peer,
                    data.len()
                );
                true
            }
        }
    }

    /// Hands queued jobs to the workers while slots are free.
    fn start_jobs(&mut self) {
        while self.running < self.config.jobs && !self.queue.is_empty() {
            if !self.workers.make_room(self.running) {
                return;
            }
            let Some(id) = self.queue.pop_front() else {
                return;
            };
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            let ConnState::Queued { job } = std::mem::replace(&mut conn.state, ConnState::Taken)
            else {
                continue;
            };
            conn.state = ConnState::Starting {
                label: JobLabel::of(&job),
                gone: false,
            };
            self.running += 1;
            self.load.job_started(id);
            self.workers.start(id, job);
        }
    }

    /// Takes the workers' reports: compilers started, jobs finished.
    fn take_reports(&mut self) {
        for report in self.workers.reports() {
            match report {
                Report::Started { conn, compiler, at } => self.on_started(conn, compiler, at),
                Report::Finished { conn, job, ended } => self.on_finished(conn, *job, ended),
            }
        }
    }

    fn on_started(&mut self, id: ConnId, compiler: Arc<Compiler>, at: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            // Its client went away meanwhile.
            compiler.signal(libc::SIGKILL);
            return;
        };
        let ConnState::Starting { label, gone } =
            std::mem::replace(&mut conn.state, ConnState::Taken)
        else {
            compiler.signal(libc::SIGKILL);
            return;
        };
        log::debug!(
            "compiling {} for {} with {} (pid {})",
            String::from_utf8_lossy(&label.input),
            conn.peer,
            String::from_utf8_lossy(&label.program),
            compiler.pid
        );
        let (mut kill_at, mut stopped) = (None, None);
        if gone {
            log::warn!(
                "client {} disconnected, killing compiler {}",
                conn.peer,
                compiler.pid
            );
            compiler.signal(libc::SIGTERM);
            kill_at = Some(Instant::now() + KILL_GRACE);
            stopped = Some(Outcome::Disconnect);
        }
        conn.state = ConnState::Compiling {
            label,
            compiler,
            kill_at,
            stopped,
            lifetime_ends: self.config.job_lifetime.map(|d| at + d),
        };
    }

    /// A worker is done with a job: its slot is free, and the job's
    /// connection, if it is still there, gets its response.
    fn on_finished(
        &mut self,
        id: ConnId,
        job: ServerJob,
        ended: io::Result<(ExitStatus, Results)>,
    ) {
        self.running -= 1;
        let succeeded = matches!(&ended, Ok((status, _)) if status.success());
        self.load.job_finished(id, succeeded);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let stopped = match std::mem::replace(&mut conn.state, ConnState::Taken) {
            ConnState::Compiling { stopped, .. } => stopped,
            ConnState::Starting { gone: true, .. } => {
                log::warn!("client {} disconnected while its job waited", conn.peer);
                self.stats.record(Outcome::Disconnect, None);
                self.close(id);
                return;
            }
            ConnState::Starting { .. } => None,
            other => {
                conn.state = other;
                return;
            }
        };
        match ended {
            Err(err) => self.answer(id, &job, response::compiler_missing(&job, &err), &[]),
            Ok((status, results)) => self.finish(id, &job, stopped, status, results),
        }
    }

    /// Turns a finished compiler into the job's response.
    fn finish(
        &mut self,
        id: ConnId,
        job: &ServerJob,
        stopped: Option<Outcome>,
        status: ExitStatus,
        results: Results,
    ) {
        let answer = match stopped {
            Some(Outcome::Disconnect) => {
                self.stats.record(Outcome::Disconnect, None);
                let status = ExitCode::IoError.as_wait_status();
                self.summary(id, job, "CLI_DISCONNECT", status);
                self.close(id);
                return;
            }
            Some(_) => response::timed_out(job, results),
            None => {
                let peer = self.conns.get(&id).map_or("", |c| c.peer.as_str());
                let answer = response::compiled(job, status, &results, peer);
                // Inside the channel only: a distcc-rs extension.
                let identity = results.identity.as_ref().map(|i| i.packet());
                self.answer(id, job, answer, &identity.unwrap_or_default());
                return;
            }
        };
        self.answer(id, job, answer, &[]);
    }

    /// Counts the job, logs its summary and sends its response, after
    /// `first` (the identity answer, on a channel).
    fn answer(&mut self, id: ConnId, job: &ServerJob, answer: Answer, first: &[u8]) {
        let took = self.conns.get(&id).map(|c| c.started.elapsed());
        let timing = took
            .filter(|_| answer.outcome == Outcome::Ok)
            .map(|took| (job.input_name(), job.program.as_slice(), took));
        self.stats.record(answer.outcome, timing);
        self.summary(id, job, answer.word, answer.status);
        self.start_reply(id, first, answer.out, AfterWrite::Close);
    }

    /// One log line per job, as distccd's `dcc_job_summary` writes.
    fn summary(&self, id: ConnId, job: &ServerJob, word: &str, status: u32) {
        let Some(conn) = self.conns.get(&id) else {
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
        // A line of its own, so that distccd's summary keeps its shape for
        // whatever reads it (the source is its last word).
        if job.version >= 3 {
            log::info!(
                "client: {} {word} in pump mode (protocol 3): {}",
                conn.peer,
                String::from_utf8_lossy(job.input_name())
            );
        }
    }

    fn start_writing(&mut self, id: ConnId, out: Vec<u8>, then: AfterWrite) {
        self.start_reply(id, &[], out, then);
    }

    /// [`Server::start_writing`] with `first` ahead of `out`, sealed in
    /// frames of its own; `first` is for a channel only (it is dropped
    /// without one).
    fn start_reply(&mut self, id: ConnId, first: &[u8], out: Vec<u8>, then: AfterWrite) {
        let on_channel = self.conns.get(&id).is_some_and(|c| c.channel.is_some());
        let sealed = match on_channel {
            true => match self.seal(id, first.to_vec()) {
                Some(bytes) => Some(SealedOut {
                    end: bytes.len(),
                    bytes,
                    pos: 0,
                }),
                None => return,
            },
            false => None,
        };
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.state = ConnState::Writing {
            out,
            pos: 0,
            then,
            sealed,
        };
        conn.deadline = Some(Instant::now() + self.config.io_timeout);
        self.on_writable(id);
    }

    /// Writes what the socket takes; watches for writability only while
    /// output is left that would have blocked.
    fn on_writable(&mut self, id: ConnId) {
        let io_timeout = self.config.io_timeout;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let ConnState::Reading { .. } = conn.state {
            if let Err(err) = self.flush_need(id) {
                log::warn!("cannot send NEED to {}: {err}", conn_peer(&self.conns, id));
                self.close(id);
            }
            return;
        }
        let Conn {
            io,
            state,
            channel,
            peer,
            deadline,
            ..
        } = conn;
        let ConnState::Writing {
            out,
            pos,
            then,
            sealed,
        } = state
        else {
            return;
        };
        let then = *then;
        loop {
            let pending = match (sealed.as_mut(), channel.as_mut()) {
                (Some(batch), Some(channel)) => {
                    if batch.pos == batch.end && *pos < out.len() {
                        if let Err(err) = seal_batch(batch, channel, out, pos) {
                            log::warn!("cannot send to {peer}: {err}");
                            self.close(id);
                            return;
                        }
                    }
                    &batch.bytes[batch.pos..batch.end]
                }
                _ => &out[*pos..],
            };
            if pending.is_empty() {
                break;
            }
            match io.writer().write(pending) {
                Ok(0) => break,
                Ok(n) => {
                    match sealed.as_mut() {
                        Some(batch) => batch.pos += n,
                        None => *pos += n,
                    }
                    *deadline = Some(Instant::now() + io_timeout);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    self.watch_output(id, true);
                    return;
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::warn!("cannot send the result to {peer}: {err}");
                    self.close(id);
                    return;
                }
            }
        }
        self.watch_output(id, false);
        match then {
            AfterWrite::Close => self.close(id),
            AfterWrite::Drain { bytes, time } => self.start_draining(id, bytes, time),
        }
    }

    /// Starts or stops watching a connection for writability.
    pub(super) fn watch_output(&mut self, id: ConnId, on: bool) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.write_armed == on {
            return;
        }
        let registry = self.poll.registry();
        let result = match (&conn.io.write, on) {
            (Some(w), true) => registry.register(
                &mut SourceFd(&w.as_raw_fd()),
                conn_token(id, true),
                Interest::WRITABLE,
            ),
            (Some(w), false) => registry.deregister(&mut SourceFd(&w.as_raw_fd())),
            (None, on) => {
                let interest = if on {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                registry.reregister(
                    &mut SourceFd(&conn.io.read.as_raw_fd()),
                    conn_token(id, false),
                    interest,
                )
            }
        };
        match result {
            Ok(()) => conn.write_armed = on,
            Err(err) => {
                log::error!("cannot watch the connection to {}: {err}", conn.peer);
                self.close(id);
            }
        }
    }

    /// Shuts the connection's write side, so the peer sees the end of the
    /// reply, and reads what it still sends until it closes.
    fn start_draining(&mut self, id: ConnId, bytes: u64, time: Duration) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match conn.io.write.take() {
            // A pipe (inetd over ssh): closing it is the end of the reply.
            Some(w) => {
                let _ = socket2::SockRef::from(&w).shutdown(std::net::Shutdown::Write);
            }
            None => {
                let _ = socket2::SockRef::from(&conn.io.read).shutdown(std::net::Shutdown::Write);
            }
        }
        conn.state = ConnState::Draining { left: bytes };
        conn.deadline = Some(Instant::now() + time);
    }

    /// Answers a stats client: the `/cluster` page if its request line asks
    /// for it, distccd's page (with our job sections) for anything else.
    fn reply_stats(&mut self, id: ConnId) {
        let cluster = match self.conns.get(&id).map(|c| &c.state) {
            Some(ConnState::Stats { head }) => super::cluster::asks_for_cluster(head),
            _ => false,
        };
        let (running, queued) = job_lines(&self.conns);
        let text = self.stats.render(&self.config.tmpdir, &running, &queued);
        let text = if cluster {
            self.cluster_page(&text)
        } else {
            text
        };
        let drain = AfterWrite::Drain {
            bytes: STATS_DRAIN_BYTES,
            time: STATS_DRAIN_TIME,
        };
        self.start_writing(id, text.into_bytes(), drain);
    }

    /// The HTML cluster page: our own page's row and the peers' last answers.
    fn cluster_page(&mut self, own_text: &str) -> String {
        let stats: Vec<std::net::SocketAddr> = self
            .listeners
            .iter()
            .filter(|(_, service)| *service == Service::Stats)
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect();
        let watch = self
            .cluster
            .get_or_insert_with(|| ClusterWatch::start(self.config.cluster.clone(), stats.clone()));
        watch.reply(own_text, &stats)
    }

    fn check_deadlines(&mut self, now: Instant) {
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| is_due(c, now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            // `is_due` has seen this connection's deadline pass.
            if let ConnState::Compiling { .. } = conn.state {
                check_compiler_deadlines(conn, now);
                continue;
            }
            match conn.state {
                ConnState::Stats { .. } => self.reply_stats(id),
                ConnState::Reading { .. } if secure::in_handshake(conn) => {
                    log::warn!(
                        "client {} did not finish the handshake in time; closing, nothing run",
                        conn.peer
                    );
                    self.close(id);
                }
                ConnState::Reading { .. } => {
                    log::warn!(
                        "client {} sent no whole request within {}s; closing",
                        conn.peer,
                        self.config.io_timeout.as_secs()
                    );
                    self.stats.record(Outcome::BadRequest, None);
                    self.close(id);
                }
                ConnState::Writing { .. } => {
                    log::warn!("client {} stopped reading its result; closing", conn.peer);
                    self.close(id);
                }
                _ => self.close(id),
            }
        }
    }
}

impl Server<'_> {
    /// The header store, made on first use.
    pub(super) fn header_store(&mut self) -> Option<Arc<HeaderStore>> {
        let config = self.config;
        self.headers
            .get_or_insert_with(|| make_header_store(config))
            .clone()
    }
}

/// The daemon's header store in its TMPDIR, or None (with the reason in
/// the log) when it cannot be made.
fn make_header_store(config: &Config) -> Option<Arc<HeaderStore>> {
    use super::header_store::{MAX_BYTES, MAX_FILES};
    match HeaderStore::create(&config.tmpdir, MAX_BYTES, MAX_FILES) {
        Ok(store) => {
            log::debug!("pump files are kept in {}", store.path().display());
            Some(Arc::new(store))
        }
        Err(err) => {
            log::warn!(
                "cannot make a header store in {}: {err}; pump jobs write their files \
                 as they come, and ,sysheaders jobs will be refused",
                config.tmpdir.display()
            );
            None
        }
    }
}

fn conn_peer(conns: &HashMap<ConnId, Conn>, id: ConnId) -> String {
    conns.get(&id).map(|c| c.peer.clone()).unwrap_or_default()
}

/// The running jobs and the queued ones, for the stats page.
fn job_lines(conns: &HashMap<ConnId, Conn>) -> (Vec<RunningJob<'_>>, Vec<RunningJob<'_>>) {
    let mut running = Vec::new();
    let mut queued = Vec::new();
    for c in conns.values() {
        let (list, program, input) = match &c.state {
            // A job whose compiler is starting is as good as running.
            ConnState::Starting { label, .. } | ConnState::Compiling { label, .. } => {
                (&mut running, &label.program[..], &label.input[..])
            }
            ConnState::Queued { job } => (&mut queued, &job.program[..], job.input_name()),
            _ => continue,
        };
        list.push(RunningJob {
            client: c.peer.clone(),
            compiler: program,
            input,
            elapsed: c.started.elapsed(),
        });
    }
    (running, queued)
}

/// True if one of the connection's deadlines has come.
fn is_due(conn: &Conn, now: Instant) -> bool {
    let reached = |t: &Option<Instant>| t.is_some_and(|t| now >= t);
    match &conn.state {
        ConnState::Compiling {
            kill_at,
            lifetime_ends,
            ..
        } => reached(kill_at) || reached(lifetime_ends),
        _ => reached(&conn.deadline),
    }
}

/// `--job-lifetime`: SIGTERM to a compiler that ran past it, SIGKILL after the grace.
fn check_compiler_deadlines(conn: &mut Conn, now: Instant) {
    let ConnState::Compiling {
        compiler,
        kill_at,
        stopped,
        lifetime_ends,
        ..
    } = &mut conn.state
    else {
        return;
    };
    if lifetime_ends.is_some_and(|t| now >= t) && stopped.is_none() {
        log::warn!(
            "compiler {} for {} ran past --job-lifetime; killing it",
            compiler.pid,
            conn.peer
        );
        compiler.signal(libc::SIGTERM);
        *stopped = Some(Outcome::Timeout);
        *kill_at = Some(now + KILL_GRACE);
        *lifetime_ends = None;
    } else if kill_at.is_some_and(|t| now >= t) {
        compiler.signal(libc::SIGKILL);
        *kill_at = None;
    }
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

/// Seals the next [`REPLY_BATCH`] of `out` from `pos` into `batch`, whose
/// buffer is kept from batch to batch.
fn seal_batch(
    batch: &mut SealedOut,
    channel: &mut crate::channel::ServerChannel,
    out: &[u8],
    pos: &mut usize,
) -> Result<(), crate::channel::ChannelError> {
    let end = (*pos + REPLY_BATCH).min(out.len());
    let need = crate::channel::sealed_len(end - *pos);
    if batch.bytes.len() < need {
        // Fresh zeroed pages, not a memset of the old buffer; and only what
        // this batch needs: a small object's reply maps no four frames (an
        // mmap, page faults and an munmap per job).
        batch.bytes = vec![0; need];
    }
    batch.end = channel.seal_into(&out[*pos..end], &mut batch.bytes)?;
    batch.pos = 0;
    *pos = end;
    Ok(())
}
