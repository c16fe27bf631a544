//! One client connection of the daemon: its file descriptors, where it is in
//! its job's life (`ConnState`) and the poll tokens it is known by.
//!
//! A compile connection moves through `Reading` (the request arrives, the
//! source is stored in the job's directory), `Queued` (complete, waiting for
//! one of the `--jobs` slots), `Starting` (a worker thread is starting its
//! compiler), `Compiling` (the compiler runs in its own process group) and
//! `Writing` (the response goes out), then closes, or drains after a `DENY`.
//! A job that is starting or compiling is with a worker thread (`workers`).

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::Compiler;
use super::job::ServerJob;
use super::stats::Outcome;
use crate::channel::ServerChannel;
use crate::proto::{Limits, RequestDecoder};

/// A connection's two directions: one socket, or (inetd over ssh) two pipes.
pub struct Io {
    pub read: File,
    pub write: Option<File>,
}

impl Io {
    pub fn writer(&self) -> &File {
        self.write.as_ref().unwrap_or(&self.read)
    }
}

/// Where a connection is in its job's life.
pub enum ConnState {
    Reading {
        decoder: Box<RequestDecoder>,
        job: Option<ServerJob>,
        body: Option<File>,
        compressed: bool,
        /// `NEED` bytes not yet written (`,sysheaders`): the client waits
        /// for them before it sends the rest of its request.
        out: Vec<u8>,
    },
    Queued {
        job: ServerJob,
    },
    /// The job is with a worker, which starts its compiler; it holds a slot.
    Starting {
        label: JobLabel,
        /// The client went away meanwhile.
        gone: bool,
    },
    /// The compiler runs; the job comes back from the worker when it has exited.
    Compiling {
        label: JobLabel,
        compiler: Arc<Compiler>,
        /// SIGKILL time for a compiler that was sent SIGTERM.
        kill_at: Option<Instant>,
        /// Why it was stopped, if it was.
        stopped: Option<Outcome>,
        lifetime_ends: Option<Instant>,
    },
    Writing {
        /// The reply; on a channel, its plaintext.
        out: Vec<u8>,
        /// How much of `out` is written (or, on a channel, sealed).
        pos: usize,
        then: AfterWrite,
        /// On a channel: the frames sealed from `out` and not yet written.
        sealed: Option<SealedOut>,
    },
    /// The reply is out and the write side shut: what the peer still sends
    /// is read and thrown away, up to `left` bytes and the deadline, so that
    /// closing with unread input does not reset the connection under a
    /// client still writing its request (the reset would discard the reply).
    Draining {
        left: u64,
    },
    /// A stats client: reply once its request line is read (`head`, at
    /// most `MAX_STATS_HEAD` bytes) or after a short wait, then drain until
    /// it closes.
    Stats {
        head: Vec<u8>,
    },
    /// The job has been taken out to move it to its next state; no event
    /// sees this, because the next state is set before the handler returns.
    Taken,
}

/// The most of a stats request that is kept: enough for its first line.
pub const MAX_STATS_HEAD: usize = 1024;

/// A job's compiler and source names, for logs and the stats page while the
/// job is with a worker.
pub struct JobLabel {
    pub program: Vec<u8>,
    pub input: Vec<u8>,
}

impl JobLabel {
    pub fn of(job: &ServerJob) -> JobLabel {
        JobLabel {
            program: job.program.clone(),
            input: job.input_name().to_vec(),
        }
    }
}

/// What a connection does once its output is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterWrite {
    Close,
    /// Shut the write side and drain the peer's input, up to `bytes` and `time`.
    Drain {
        bytes: u64,
        time: Duration,
    },
}

impl ConnState {
    /// A new compile connection, waiting for its request.
    pub fn reading(limits: &Limits) -> ConnState {
        ConnState::Reading {
            decoder: Box::new(RequestDecoder::new(limits.clone())),
            job: None,
            body: None,
            compressed: false,
            out: Vec::new(),
        }
    }
}

pub struct Conn {
    pub io: Io,
    pub peer: String,
    pub started: Instant,
    pub deadline: Option<Instant>,
    pub state: ConnState,
    /// True while the poll also watches for writability: only while output
    /// is pending and the last write would have blocked.
    pub write_armed: bool,
    /// The encrypted channel, on a daemon with `--auth-keys`.
    pub channel: Option<ServerChannel>,
    /// Whether the client's first transport frame began with the identity
    /// ask (`CIDQ`); None until its first plaintext.
    pub asked_identity: Option<bool>,
}

/// A reply's sealed frames on their way out. The reply is sealed a few
/// frames at a time, as the socket takes them, so that a large object
/// never has a sealed copy of its own (and its page faults).
#[derive(Default)]
pub struct SealedOut {
    /// Sealed bytes up to `end`; the buffer is kept for the next batch.
    pub bytes: Vec<u8>,
    pub pos: usize,
    pub end: usize,
}

/// The poll tokens below connections: the signal pipe, the workers' waker,
/// then one per listening socket.
pub const SIGNALS: mio::Token = mio::Token(0);
pub const WAKER: mio::Token = mio::Token(1);
pub const FIRST_LISTENER: usize = 2;
pub const FIRST_CONN: usize = 64;
/// The most listening sockets the token space below connections holds.
pub const MAX_LISTENERS: usize = FIRST_CONN - FIRST_LISTENER;

/// A connection's identity: handed out in increasing order and never given
/// to a new connection while an older one still has it, so an event still
/// queued for a closed connection never reaches the next one.
pub type ConnId = usize;

/// The largest id whose tokens fit in a `usize`.
pub const MAX_CONN_ID: ConnId = (usize::MAX - FIRST_CONN) / 2;

/// The poll token of a connection's read side (or socket) or write side (a pipe).
pub fn conn_token(id: ConnId, write_side: bool) -> mio::Token {
    mio::Token(FIRST_CONN + id * 2 + usize::from(write_side))
}

/// The connection a poll token names, if it names one.
pub fn conn_of(token: mio::Token) -> Option<ConnId> {
    token.0.checked_sub(FIRST_CONN).map(|t| t / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_connection_and_side_and_never_overflow() {
        for id in [0, 1, 7, 1000, MAX_CONN_ID] {
            for side in [false, true] {
                assert_eq!(conn_of(conn_token(id, side)), Some(id));
            }
            assert_ne!(conn_token(id, false), conn_token(id, true));
        }
        assert_eq!(conn_token(MAX_CONN_ID, true).0 / 2, (usize::MAX - 1) / 2);
        for below in [
            SIGNALS,
            WAKER,
            mio::Token(FIRST_LISTENER + MAX_LISTENERS - 1),
        ] {
            assert_eq!(conn_of(below), None);
        }
    }
}
