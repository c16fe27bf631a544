//! One conversation with a distcc server, over TCP or an ssh child's pipes: connect, send the request (plain or pump), read the response, each step bounded by DISTCC_IO_TIMEOUT.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::channel::{ClientHandshake, FrameBuffer, Opened, Transport};
use crate::exitcode::ExitCode;
use crate::identity::{self, Identity};
use crate::keys::{PrivateKey, PublicKey};
use crate::proto::{self, Token};
use crate::sysheaders;

/// Where a job is sent.
pub enum Target<'a> {
    Tcp {
        host: &'a str,
        port: u16,
        /// `,key=PATH`: the server's public key; the job goes over the channel.
        key: Option<&'a str>,
    },
    /// `[USER]@HOST[:COMMAND]`: `DISTCC_SSH [-l USER] HOST COMMAND --inetd --enable-tcp-insecure`.
    Ssh {
        user: Option<&'a str>,
        host: &'a str,
        command: Option<&'a str>,
    },
}

/// Why talking to a server failed; each maps to distcc's exit code and
/// carries its message, distcc 3.4's words first.
#[derive(Debug)]
pub enum RemoteError {
    Connect(String),
    Io(String),
    /// No progress within DISTCC_IO_TIMEOUT.
    Timeout(String),
    /// The server closed the connection or reset it.
    Truncated(String),
    Protocol(String),
}

impl RemoteError {
    /// True when a write failed because the peer stopped reading (EPIPE,
    /// ECONNRESET): its reply may still be there to read.
    pub fn peer_stopped_reading(&self) -> bool {
        matches!(self, RemoteError::Truncated(_))
    }

    /// The same error with `words` after its message.
    fn followed_by(self, words: &str) -> RemoteError {
        let add = |why: String| format!("{why}; {words}");
        match self {
            RemoteError::Connect(why) => RemoteError::Connect(add(why)),
            RemoteError::Io(why) => RemoteError::Io(add(why)),
            RemoteError::Timeout(why) => RemoteError::Timeout(add(why)),
            RemoteError::Truncated(why) => RemoteError::Truncated(add(why)),
            RemoteError::Protocol(why) => RemoteError::Protocol(add(why)),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            RemoteError::Connect(_) => ExitCode::ConnectFailed,
            RemoteError::Io(_) | RemoteError::Timeout(_) => ExitCode::IoError,
            RemoteError::Truncated(_) => ExitCode::Truncated,
            RemoteError::Protocol(_) => ExitCode::ProtocolError,
        }
    }
}

impl From<crate::net::ConnectError> for RemoteError {
    fn from(err: crate::net::ConnectError) -> RemoteError {
        RemoteError::Connect(err.to_string())
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Connect(why)
            | RemoteError::Io(why)
            | RemoteError::Timeout(why)
            | RemoteError::Truncated(why)
            | RemoteError::Protocol(why) => f.write_str(why),
        }
    }
}

/// What distcc 3.4 adds when the reply does not begin with `DONE`.
const NO_ANSWER: &str = "server provided no answer. Is the server configured to allow access \
     from your IP address? Is the server performing authentication and your client isn't? \
     Does the server have the compiler installed? Is the server configured to access the \
     compiler?";

/// What a read or write was for, so that its failure is told as 3.4 tells it.
#[derive(Clone, Copy)]
enum Step {
    /// Reading a packet header that must carry this token.
    Token(&'static Token),
    /// Any other transfer, in our words ("sending the source").
    Doing(&'static str),
}

impl Step {
    /// `failure` (3.4's words for what went wrong, e.g. `IO timeout`)
    /// during this step: after 3.4's `read failed while waiting for token
    /// "T"` for a header, else followed by what was being done.
    fn says(self, failure: impl std::fmt::Display) -> String {
        match self {
            Step::Token(token) => format!(
                "read failed while waiting for token \"{}\": {failure}",
                String::from_utf8_lossy(token)
            ),
            Step::Doing(what) => format!("{failure} while {what}"),
        }
    }
}

/// distcc 3.4's words for an unexpected token, then what came instead.
fn derailed(expected: &Token, header: &[u8; proto::HEADER_LEN]) -> RemoteError {
    RemoteError::Protocol(format!(
        "protocol derailment: expected token \"{}\", got \"{}\"",
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(header).escape_debug()
    ))
}

/// The most a server may send for stderr or stdout.
const MAX_TEXT: u32 = 64 * 1024 * 1024;
/// The most an object may decompress to.
const MAX_OBJECT: usize = 1 << 30;
/// The size of the buffer files are copied through.
const CHUNK: usize = 256 * 1024;
/// How much of a source is read at once on a channel: four whole frames.
const CHANNEL_CHUNK: usize = 4 * crate::channel::MAX_PLAIN;

/// An open conversation: a read side and a write side (one socket for TCP,
/// two pipes for ssh).
pub struct Connection {
    /// Both sides are `Some` until drop, which closes them before it waits for ssh.
    read: Option<OwnedFd>,
    write: Option<OwnedFd>,
    ssh: Option<Child>,
    io_timeout: Duration,
    /// The encrypted channel to a `,key=` host, once its handshake is done.
    sealed: Option<Sealed>,
    /// A `,key=` host's handshake between its first message and the
    /// server's answer; the first read or write finishes it.
    handshake: Handshake,
}

/// Where a `,key=` connection's handshake is.
enum Handshake {
    /// Done, or never begun (plain TCP, ssh).
    Idle,
    /// The first message is sent; the server's answer is not yet read.
    Sent {
        started: Box<ClientHandshake>,
        /// The pinned key, for the log (its fingerprint is a SHA-256,
        /// whose first use asks the CPU its features: worth a debug line
        /// only).
        server: [u8; crate::keys::KEY_LEN],
        /// The client's time in the handshake so far.
        spent: Duration,
    },
    /// It failed: nothing more is read or written.
    Failed,
}

/// A channel's transport, its frames read but not yet opened, and the
/// plaintext of a frame opened but not yet read.
struct Sealed {
    transport: Transport,
    /// What each read from the socket goes into.
    inbox: FrameBuffer,
    opened: Opened,
    /// The identity ask (`CIDQ`), sealed in front of the first write.
    ask: Vec<u8>,
    /// Sealed frames on their way out, kept for the next write.
    out: Vec<u8>,
}

/// What the daemon answered to a request's headers sent by hash.
pub enum Need {
    /// One flag per header, in order: send its body.
    Bodies(Vec<bool>),
    /// A distcc-rs daemon refused the job (`DENY`), for this reason.
    Refused(String),
}

/// What the daemon answered to a job, before any object.
pub enum Reply {
    /// It compiled the job (`DONE`): the object follows if the status is 0.
    Done(Outcome),
    /// A distcc-rs daemon refused the job (`DENY`), for this reason.
    Refused(String),
}

/// What the server said about the compile, before the object.
pub struct Outcome {
    /// The compiler's wait status.
    pub status: u32,
    pub stderr: Vec<u8>,
    pub stdout: Vec<u8>,
    /// What the daemon said its compiler is (`CIDR`, inside the channel only).
    pub identity: Option<Identity>,
}

/// The ssh program and its leading words from DISTCC_SSH: split on spaces,
/// at most 12 extra words, no quoting (as distcc 3.4).
fn ssh_words() -> Vec<String> {
    let value = std::env::var("DISTCC_SSH").unwrap_or_default();
    let mut words: Vec<String> = value
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    if words.is_empty() {
        words.push("ssh".into());
    }
    words.truncate(13);
    words
}

/// Opens a connection to `target`. A TCP connect is bounded by
/// `connect_timeout` per address; every later read or write by `io_timeout`.
pub fn connect(
    target: &Target,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> Result<Connection, RemoteError> {
    match target {
        Target::Tcp { host, port, key } => {
            let stream = crate::net::connect_tcp(host, *port, connect_timeout)?;
            stream
                .set_nodelay(true)
                .map_err(|e| RemoteError::Connect(format!("connect failed: {e}")))?;
            let write: OwnedFd = stream
                .try_clone()
                .map_err(|e| RemoteError::Connect(format!("connect failed: {e}")))?
                .into();
            let read: OwnedFd = stream.into();
            set_nonblocking(&read)?;
            let mut connection = Connection {
                read: Some(read),
                write: Some(write),
                ssh: None,
                io_timeout,
                sealed: None,
                handshake: Handshake::Idle,
            };
            if let Some(key) = key {
                connection.start_handshake(Path::new(key))?;
            }
            Ok(connection)
        }
        Target::Ssh {
            user,
            host,
            command,
        } => {
            let words = ssh_words();
            let mut cmd = Command::new(&words[0]);
            cmd.args(&words[1..]);
            if let Some(user) = user.filter(|u| !u.is_empty()) {
                cmd.arg("-l").arg(user);
            }
            cmd.arg(host)
                .arg(command.unwrap_or("distccd"))
                .args(["--inetd", "--enable-tcp-insecure"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| RemoteError::Connect(format!("failed to exec {}: {e}", words[0])))?;
            let write: OwnedFd = child.stdin.take().expect("piped stdin").into();
            let read: OwnedFd = child.stdout.take().expect("piped stdout").into();
            set_nonblocking(&read)?;
            set_nonblocking(&write)?;
            Ok(Connection {
                read: Some(read),
                write: Some(write),
                ssh: Some(child),
                io_timeout,
                sealed: None,
                handshake: Handshake::Idle,
            })
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), RemoteError> {
    crate::sys::set_nonblocking(fd.as_raw_fd(), true)
        .map_err(|e| RemoteError::Connect(format!("connect failed: {e}")))
}

/// Waits until `fd` is ready for `events`, at most `timeout`.
fn wait(
    fd: RawFd,
    events: libc::c_short,
    timeout: Duration,
    step: Step,
) -> Result<(), RemoteError> {
    match crate::sys::poll_one(fd, events, timeout) {
        Ok(true) => Ok(()),
        Ok(false) => {
            let secs = timeout.as_secs_f32();
            Err(RemoteError::Timeout(
                step.says(format_args!("IO timeout (no progress in {secs} s)")),
            ))
        }
        Err(err) => Err(RemoteError::Io(
            step.says(format_args!("poll failed: {err}")),
        )),
    }
}

impl Connection {
    fn read_fd(&self) -> RawFd {
        self.read.as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }

    fn write_fd(&self) -> RawFd {
        self.write.as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }

    /// Begins the handshake with the server whose public key file is
    /// `server_key`: sends the first message and returns. The server works
    /// out its answer while this client goes on with the job (reads its
    /// source, waits for its preprocessor); [`Connection::finish_handshake`]
    /// reads it.
    fn start_handshake(&mut self, server_key: &Path) -> Result<(), RemoteError> {
        let began = Instant::now();
        let server = PublicKey::load(server_key).map_err(RemoteError::Connect)?;
        let own = crate::env::client_key()
            .and_then(|path| PrivateKey::load(&path))
            .map_err(RemoteError::Connect)?;
        let (started, hello) = ClientHandshake::start(&own, &server)
            .map_err(|e| RemoteError::Connect(format!("handshake failed: {e}")))?;
        self.raw_write_all(&hello, Step::Doing("in the handshake"))?;
        self.handshake = Handshake::Sent {
            started: Box::new(started),
            server: server.bytes,
            spent: began.elapsed(),
        };
        Ok(())
    }

    /// Reads the server's answer to the handshake, which proves it holds
    /// the pinned key, sends the third message, which proves this client's
    /// key, and turns the channel on: everything after is sealed. Does
    /// nothing once the handshake is over; fails every time once it has
    /// failed.
    pub fn finish_handshake(&mut self) -> Result<(), RemoteError> {
        match std::mem::replace(&mut self.handshake, Handshake::Failed) {
            Handshake::Idle => {
                self.handshake = Handshake::Idle;
                Ok(())
            }
            Handshake::Failed => Err(RemoteError::Connect("the handshake failed".into())),
            Handshake::Sent {
                started,
                server,
                spent,
            } => {
                let began = Instant::now();
                self.read_answer(*started)?;
                self.handshake = Handshake::Idle;
                log::debug!(
                    "channel open: server key {} proved, handshake {} us",
                    crate::keys::fingerprint(&server),
                    (spent + began.elapsed()).as_micros()
                );
                Ok(())
            }
        }
    }

    fn read_answer(&mut self, started: ClientHandshake) -> Result<(), RemoteError> {
        let step = Step::Doing("in the handshake");
        let mut len = [0u8; 2];
        self.raw_read_exact(&mut len, step)
            .map_err(|e| e.followed_by("the server refused the handshake (is ,key= its key?)"))?;
        let len = usize::from(u16::from_be_bytes(len));
        if len > crate::channel::MAX_HANDSHAKE_FRAME {
            return Err(RemoteError::Protocol(format!(
                "handshake failed: the server's answer is {len} bytes (is it a distcc-rs daemon with --auth-keys?)"
            )));
        }
        let mut answer = vec![0u8; len];
        self.raw_read_exact(&mut answer, step)?;
        let (finish, transport) = started
            .finish(&answer)
            .map_err(|e| RemoteError::Connect(format!("handshake failed: {e}")))?;
        // At once, not with the first sealed bytes: the server checks the
        // client's key while this client seals them.
        self.raw_write_all(&finish, step)?;
        self.sealed = Some(Sealed {
            transport,
            inbox: FrameBuffer::new(CHUNK),
            opened: Opened::default(),
            ask: identity::ask(),
            out: Vec::new(),
        });
        Ok(())
    }

    /// Writes all of `buf`, sealed on a channel. A large `buf` is sealed
    /// and written a frame at a time: the server opens each frame while
    /// the next is sealed, and the sealed copy takes one frame's pages, not
    /// the whole body's (a page fault costs 2 us in a VM).
    fn write_all(&mut self, buf: &[u8], step: Step) -> Result<(), RemoteError> {
        self.finish_handshake()?;
        let Some(sealed) = self.sealed.as_mut() else {
            return self.raw_write_all(buf, step);
        };
        // The ask goes first, so that it and the request's start share the
        // first frame.
        let ask = std::mem::take(&mut sealed.ask);
        let joined;
        let plain = if ask.is_empty() {
            buf
        } else {
            joined = [ask.as_slice(), buf].concat();
            joined.as_slice()
        };
        let mut out = std::mem::take(&mut sealed.out);
        for chunk in plain.chunks(crate::channel::MAX_PLAIN) {
            // One frame's room, zeroed once for the connection.
            out.resize(out.len().max(crate::channel::sealed_len(chunk.len())), 0);
            let sealed = self.sealed.as_mut().expect("a channel");
            let n = sealed
                .transport
                .seal_into(chunk, &mut out)
                .map_err(|e| RemoteError::Io(step.says(e)))?;
            self.raw_write_all(&out[..n], step)?;
        }
        self.sealed.as_mut().expect("a channel").out = out;
        Ok(())
    }

    /// Reads some bytes into `buf` (at least one), opened from the
    /// channel's frames on a channel; a frame that fails its check fails
    /// the read.
    fn read_some(&mut self, buf: &mut [u8], step: Step) -> Result<usize, RemoteError> {
        self.finish_handshake()?;
        if self.sealed.is_none() {
            return self.raw_read_some(buf, step);
        }
        let failed = |e: crate::channel::ChannelError| {
            RemoteError::Protocol(step.says(format_args!("channel: {e}")))
        };
        loop {
            let sealed = self.sealed.as_mut().expect("a channel");
            if !sealed.opened.is_empty() {
                let n = buf.len().min(sealed.opened.len());
                buf[..n].copy_from_slice(&sealed.opened[..n]);
                sealed.opened.consume(n);
                return Ok(n);
            }
            if let Some(frame) = sealed.inbox.next_frame() {
                // Straight into the caller's buffer when the frame fits.
                if buf.len() >= frame.len() {
                    let n = sealed.transport.open_into(frame, buf).map_err(failed)?;
                    if n > 0 {
                        return Ok(n);
                    }
                    continue;
                }
                // Empty here: consuming its last byte cleared it.
                sealed
                    .transport
                    .open_onto(frame, &mut sealed.opened)
                    .map_err(failed)?;
                continue;
            }
            let mut inbox = std::mem::take(&mut sealed.inbox);
            let read = self.raw_read_some(inbox.space(), step);
            if let Ok(n) = read {
                inbox.filled(n);
            }
            self.sealed.as_mut().expect("a channel").inbox = inbox;
            read?;
        }
    }

    fn raw_read_exact(&mut self, mut buf: &mut [u8], step: Step) -> Result<(), RemoteError> {
        while !buf.is_empty() {
            let n = self.raw_read_some(buf, step)?;
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Writes all of `buf`, waiting at most the I/O timeout for each step of progress.
    fn raw_write_all(&mut self, mut buf: &[u8], step: Step) -> Result<(), RemoteError> {
        while !buf.is_empty() {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::write(self.write_fd(), buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                buf = &buf[n as usize..];
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => {
                    wait(self.write_fd(), libc::POLLOUT, self.io_timeout, step)?
                }
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    return Err(RemoteError::Truncated(
                        step.says(format_args!("failed to write: {err}")),
                    ))
                }
                _ => {
                    return Err(RemoteError::Io(
                        step.says(format_args!("failed to write: {err}")),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Reads some bytes into `buf` (at least one), or fails on EOF.
    fn raw_read_some(&mut self, buf: &mut [u8], step: Step) -> Result<usize, RemoteError> {
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::read(self.read_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                return Ok(n as usize);
            }
            if n == 0 {
                let fd = self.read_fd();
                return Err(RemoteError::Truncated(
                    step.says(format_args!("unexpected eof on fd{fd}")),
                ));
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => {
                    wait(self.read_fd(), libc::POLLIN, self.io_timeout, step)?
                }
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::ConnectionReset => {
                    return Err(RemoteError::Truncated(
                        step.says(format_args!("failed to read: {err}")),
                    ))
                }
                _ => {
                    return Err(RemoteError::Io(
                        step.says(format_args!("failed to read: {err}")),
                    ))
                }
            }
        }
    }

    fn read_exact(&mut self, mut buf: &mut [u8], step: Step) -> Result<(), RemoteError> {
        while !buf.is_empty() {
            let n = self.read_some(buf, step)?;
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Sends `DIST ARGC ARGV… DOTI` with the preprocessed source read from
    /// `input`. Version 1 streams the file; version 2 compresses it whole,
    /// as distcc does.
    pub fn send_request(
        &mut self,
        version: u32,
        argv: &[OsString],
        input: &Path,
    ) -> Result<(), RemoteError> {
        let mut head = Vec::with_capacity(256);
        proto::put_header(&mut head, &proto::DIST, version);
        proto::put_header(&mut head, &proto::ARGC, argv.len() as u32);
        for arg in argv {
            proto::put_body(&mut head, &proto::ARGV, arg.as_bytes());
        }
        let mut file =
            File::open(input).map_err(|e| RemoteError::Io(format!("{}: {e}", input.display())))?;
        if version >= 2 {
            let mut source = Vec::new();
            file.read_to_end(&mut source)
                .map_err(|e| RemoteError::Io(format!("{}: {e}", input.display())))?;
            let body = if source.is_empty() {
                Vec::new()
            } else {
                crate::lzo::compress(&source)
            };
            drop(source);
            proto::put_header(&mut head, &proto::DOTI, body.len() as u32);
            self.write_all(&head, Step::Doing("sending the request"))?;
            return self.write_all(&body, Step::Doing("sending the source"));
        }
        let len = file
            .metadata()
            .map_err(|e| RemoteError::Io(format!("{}: {e}", input.display())))?
            .len();
        let len = u32::try_from(len)
            .map_err(|_| RemoteError::Io(format!("{} is over 4 GiB", input.display())))?;
        proto::put_header(&mut head, &proto::DOTI, len);
        // On a channel, each read fills whole frames.
        let channel = !matches!(self.handshake, Handshake::Idle) || self.sealed.is_some();
        let chunk = if channel { CHANNEL_CHUNK } else { CHUNK };
        let mut buf = vec![0u8; chunk.min(len as usize).max(1)];
        let mut left = len as usize;
        let mut head = Some(head);
        while left > 0 {
            let want = left.min(buf.len());
            let n = file
                .read(&mut buf[..want])
                .map_err(|e| RemoteError::Io(format!("{}: {e}", input.display())))?;
            if n == 0 {
                return Err(RemoteError::Io(format!(
                    "{} shrank while it was sent",
                    input.display()
                )));
            }
            // The first read comes before the head's write, so that it
            // overlaps the server's answer to a handshake.
            if let Some(head) = head.take() {
                self.write_all(&head, Step::Doing("sending the request"))?;
            }
            self.write_all(&buf[..n], Step::Doing("sending the source"))?;
            left -= n;
        }
        if let Some(head) = head {
            self.write_all(&head, Step::Doing("sending the request"))?;
        }
        Ok(())
    }

    /// Whether this is an encrypted channel (a `,key=` host whose
    /// handshake is done), which tells the daemon's compiler (`CIDR`).
    pub fn is_sealed(&self) -> bool {
        self.sealed.is_some()
    }

    /// Sends a protocol 3 request, already encoded: `DIST 3 CDIR ARGC
    /// ARGV… NFIL` and the files (see [`super::pump::Request`]).
    pub fn send_pump_request(&mut self, request: &[u8]) -> Result<(), RemoteError> {
        self.write_all(request, Step::Doing("sending the request"))
    }

    /// Reads the daemon's `NEED` after a request with `count` headers sent
    /// by hash (`,sysheaders`): which bodies to send, or its refusal.
    pub fn read_need(&mut self, count: usize) -> Result<Need, RemoteError> {
        let (header, token, len) = self.read_header(&proto::NEED)?;
        let refusal = proto::deny_length(&header)
            .map_err(|e| RemoteError::Protocol(format!("protocol error: {e}")))?;
        if let Some(len) = refusal {
            return self.read_refusal(len).map(Need::Refused);
        }
        if token != proto::NEED {
            return Err(derailed(&proto::NEED, &header));
        }
        let want = sysheaders::need_length(len, count).map_err(RemoteError::Protocol)?;
        let mut bits = vec![0u8; want];
        self.read_exact(&mut bits, Step::Doing("reading NEED"))?;
        sysheaders::need_flags(&bits, count)
            .map(Need::Bodies)
            .map_err(|e| RemoteError::Protocol(format!("protocol error: {e}")))
    }

    /// Sends the header bodies a `NEED` asked for, each as `FILE`.
    pub fn send_header_bodies(&mut self, bodies: &[u8]) -> Result<(), RemoteError> {
        self.write_all(bodies, Step::Doing("sending the system headers"))
    }

    /// Reads `DOTD`, the server's `.d` file, into `out` (after the object
    /// of a protocol 3 job whose status was 0).
    pub fn read_deps(&mut self, out: &mut File) -> Result<(), RemoteError> {
        let len = self.expect(&proto::DOTD)?;
        let body = self.read_bulk(3, len, MAX_TEXT as usize, "reading the .d file")?;
        out.write_all(&body)
            .map_err(|e| RemoteError::Io(format!("writing the .d file: {e}")))
    }

    /// Reads one packet header, expected to carry `token`: its token and
    /// parameter.
    fn read_header(
        &mut self,
        token: &'static Token,
    ) -> Result<([u8; proto::HEADER_LEN], Token, u32), RemoteError> {
        let mut header = [0u8; proto::HEADER_LEN];
        self.read_exact(&mut header, Step::Token(token))?;
        let (token, value) = proto::parse_header(&header).map_err(|e| {
            RemoteError::Protocol(format!(
                "failed to parse parameter of token \"{}\": {e}",
                String::from_utf8_lossy(&header[..4]).escape_debug()
            ))
        })?;
        Ok((header, token, value))
    }

    /// Reads one packet header, which must carry `token`, and returns its parameter.
    fn expect(&mut self, token: &'static Token) -> Result<u32, RemoteError> {
        let (header, got, value) = self.read_header(token)?;
        if &got != token {
            return Err(derailed(token, &header));
        }
        Ok(value)
    }

    /// Reads a bulk body of `len` bytes (compressed in version 2) into memory.
    fn read_bulk(
        &mut self,
        version: u32,
        len: u32,
        limit: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, RemoteError> {
        if len as usize > limit {
            return Err(RemoteError::Protocol(format!(
                "protocol error: {what}: {len} bytes is over the limit"
            )));
        }
        let mut body = vec![0u8; len as usize];
        self.read_exact(&mut body, Step::Doing(what))?;
        if version >= 2 && !body.is_empty() {
            body = crate::lzo::decompress(&body, limit)
                .map_err(|e| RemoteError::Protocol(format!("protocol error: {what}: {e:?}")))?;
        }
        Ok(body)
    }

    /// Reads the daemon's reply up to the object: `DONE STAT SERR SOUT`,
    /// or distcc-rs's refusal, `DENY` and the reason, in place of `DONE`.
    pub fn read_reply(&mut self, version: u32) -> Result<Reply, RemoteError> {
        let (mut header, mut token, mut done) = self
            .read_header(&proto::DONE)
            .map_err(|e| e.followed_by(NO_ANSWER))?;
        let mut identity = None;
        if token == identity::CIDR && self.sealed.is_some() {
            identity = Some(self.read_identity(done)?);
            (header, token, done) = self.read_header(&proto::DONE)?;
        }
        let refusal = proto::deny_length(&header)
            .map_err(|e| RemoteError::Protocol(format!("protocol error: {e}")))?;
        if let Some(len) = refusal {
            return self.read_refusal(len).map(Reply::Refused);
        }
        if token != proto::DONE {
            return Err(derailed(&proto::DONE, &header).followed_by(NO_ANSWER));
        }
        if done != version {
            return Err(RemoteError::Protocol(format!(
                "got version {done} not {version} in response from server"
            )));
        }
        let status = self.expect(&proto::STAT)?;
        let len = self.expect(&proto::SERR)?;
        let stderr = self.read_bulk(version, len, MAX_TEXT as usize, "reading stderr")?;
        let len = self.expect(&proto::SOUT)?;
        let stdout = self.read_bulk(version, len, MAX_TEXT as usize, "reading stdout")?;
        Ok(Reply::Done(Outcome {
            status,
            stderr,
            stdout,
            identity,
        }))
    }

    /// Reads the body of a `CIDR` of `len` bytes: the daemon's compiler.
    fn read_identity(&mut self, len: u32) -> Result<Identity, RemoteError> {
        let bad = |e: String| RemoteError::Protocol(format!("protocol error: CIDR: {e}"));
        if len as usize > identity::MAX_BODY {
            return Err(bad(format!("{len} bytes is over the limit")));
        }
        let mut body = vec![0u8; len as usize];
        self.read_exact(&mut body, Step::Doing("reading the compiler's identity"))?;
        Identity::decode(&body).map_err(bad)
    }

    /// Reads the `len` bytes of a `DENY`'s reason (already checked
    /// against the limit), as text fit to show.
    fn read_refusal(&mut self, len: usize) -> Result<String, RemoteError> {
        let mut body = vec![0u8; len];
        self.read_exact(&mut body, Step::Doing("reading the refusal"))?;
        Ok(proto::deny_reason(&body))
    }

    /// Reads `DOTO` into `out` (after a status of 0).
    pub fn read_object(&mut self, version: u32, out: &mut File) -> Result<(), RemoteError> {
        let len = self.expect(&proto::DOTO)?;
        let write_err = |e: io::Error| RemoteError::Io(format!("writing the object: {e}"));
        if version >= 2 {
            if len > 0 {
                let body = self.read_bulk(version, len, MAX_OBJECT, "reading the object")?;
                out.write_all(&body).map_err(write_err)?;
            }
            return Ok(());
        }
        let mut buf = vec![0u8; CHUNK.min(len as usize).max(1)];
        let mut left = len as usize;
        while left > 0 {
            let want = left.min(buf.len());
            let n = self.read_some(&mut buf[..want], Step::Doing("reading the object"))?;
            out.write_all(&buf[..n]).map_err(write_err)?;
            left -= n;
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.read = None;
        self.write = None;
        if let Some(mut child) = self.ssh.take() {
            // Closing our ends (after this) lets distccd --inetd exit; ssh
            // follows. Reap it so no zombie is left, but never hang on it.
            let _ = child.try_wait().map(|done| {
                if done.is_none() {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < deadline {
                        if let Ok(Some(_)) = child.try_wait() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                }
            });
        }
    }
}
