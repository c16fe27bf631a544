//! distcc's wire protocol: 12-byte token headers, request decoding and response encoding.
//!
//! A packet is a 4-byte ASCII token and an 8-digit hex parameter; for body
//! tokens the parameter is the length of the bytes that follow. Requests for
//! protocol versions 1 and 2 are `DIST ARGC ARGV... DOTI`; responses are
//! `DONE STAT SERR SOUT DOTO`. Version 2 compresses every non-empty bulk body
//! with LZO1X. The decoder here is a pull parser over whatever bytes have
//! arrived, so the daemon's event loop can feed it without blocking, and it
//! checks every claimed length against [`Limits`] before it stores a byte.

use std::fmt;

/// distccd's default TCP port.
pub const DEFAULT_PORT: u16 = 3632;
/// distccd's default `--stats-port`, where the monitor asks for the stats page.
pub const DEFAULT_STATS_PORT: u16 = 3633;

/// Length of a token header: 4 token bytes and 8 hex digits.
pub const HEADER_LEN: usize = 12;

/// A 4-byte protocol token such as `DIST` or `DOTO`.
pub type Token = [u8; 4];

pub const DIST: Token = *b"DIST";
pub const ARGC: Token = *b"ARGC";
pub const ARGV: Token = *b"ARGV";
pub const DOTI: Token = *b"DOTI";
pub const DONE: Token = *b"DONE";
pub const STAT: Token = *b"STAT";
pub const SERR: Token = *b"SERR";
pub const SOUT: Token = *b"SOUT";
pub const DOTO: Token = *b"DOTO";
/// Pump mode (version 3): the client's working directory.
pub const CDIR: Token = *b"CDIR";
/// Pump mode: how many NAME entries follow.
pub const NFIL: Token = *b"NFIL";
/// Pump mode: a file's absolute path on the client.
pub const NAME: Token = *b"NAME";
/// Pump mode: the body of the file just named, LZO1X-compressed (length 0 is an empty file).
pub const FILE: Token = *b"FILE";
/// Pump mode: the target of the symlink just named, as `readlink` gives it.
pub const LINK: Token = *b"LINK";
/// Pump mode: the rewritten dependency file, after `DOTO` in a successful reply.
pub const DOTD: Token = *b"DOTD";
/// System headers by hash (`src/sysheaders.rs`; distcc-rs only, never sent
/// to a 3.4 peer): in a v3 request, a header's SHA-256 after its `NAME` in
/// place of its `FILE`; in the include server's longer answer, each
/// header's hash after its mirror path.
pub const SHDR: Token = *b"SHDR";
/// The daemon's answer to a request with `SHDR` entries: a bitmap of the
/// headers whose bodies it lacks, which the client then sends as `FILE`s.
pub const NEED: Token = *b"NEED";
/// The client's first packet to the include server when it wants system
/// headers as files (parameter 1); distcc 3.4's client never sends it.
pub const SYSH: Token = *b"SYSH";
/// The longer answer's system headers: how many (mirror path, hash) pairs follow.
pub const SYSF: Token = *b"SYSF";
/// The longer answer's language: parameter 1 when the compile is C++ or
/// Objective-C++ (the client then adds `-nostdinc++`), else 0.
pub const SYSX: Token = *b"SYSX";
/// The longer answer's system search directories, in order: how many `ARGV`s follow.
pub const SYSD: Token = *b"SYSD";
/// The longer answer's implicit preincludes (gcc's `stdc-predef.h`): how many `ARGV`s follow.
pub const PREI: Token = *b"PREI";
/// The length of an `SHDR` body: a SHA-256.
pub const HASH_LEN: usize = 32;
/// distcc-rs's refusal: the daemon will not run this job, and says why. Not
/// in distcc 3.4. It stands where `DONE` would, with the length of a UTF-8
/// reason (at most [`MAX_DENY_REASON`] bytes, never compressed) as its
/// parameter. A 3.4 client reading it reports a protocol derailment, which it
/// handles as it handles a closed connection: it backs the host off and
/// compiles locally.
pub const DENY: Token = *b"DENY";
/// The longest reason a `DENY` may carry, in bytes.
pub const MAX_DENY_REASON: usize = 4096;

/// Appends a token header with its parameter as 8 lower-case hex digits.
pub fn put_header(out: &mut Vec<u8>, token: &Token, param: u32) {
    out.extend_from_slice(token);
    out.extend_from_slice(format!("{param:08x}").as_bytes());
}

/// Appends a body packet: a header whose parameter is the body length, then the body.
pub fn put_body(out: &mut Vec<u8>, token: &Token, body: &[u8]) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    put_header(out, token, len);
    out.extend_from_slice(&body[..len as usize]);
}

/// Appends a bulk body (SERR, SOUT, DOTO, DOTI): LZO1X-compressed when the
/// protocol version asks for it, and always sent as length 0 when empty.
pub fn put_bulk(out: &mut Vec<u8>, token: &Token, body: &[u8], version: u32) {
    if version >= 2 && !body.is_empty() {
        put_body(out, token, &crate::lzo::compress(body));
    } else {
        put_body(out, token, body);
    }
}

/// Parses a 12-byte header, accepting upper- or lower-case hex as real distcc does.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(Token, u32), ProtoError> {
    let mut token = [0u8; 4];
    token.copy_from_slice(&header[..4]);
    let mut value: u32 = 0;
    for &c in &header[4..] {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(ProtoError::BadHex(*header)),
        };
        value = (value << 4) | u32::from(digit);
    }
    Ok((token, value))
}

/// Limits on what one request may claim. The decoder refuses a request as
/// soon as a claimed count or length exceeds these, before it stores a byte.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most arguments (ARGC), compiler name included.
    pub max_argc: u32,
    /// Longest single argument, in bytes.
    pub max_arg_len: u32,
    /// Most bytes over all arguments together.
    pub max_args_total: usize,
    /// Longest DOTI body as sent (compressed in version 2), and the largest
    /// preprocessed source it may decompress to.
    pub max_input: u32,
    /// Pump mode: the most entries a request's file list may have (NFIL).
    pub max_files: u32,
    /// Pump mode: the longest FILE body as sent, and the most one file may
    /// decompress to.
    pub max_file: u32,
    /// Pump mode: the most bytes all FILE bodies of a request may take
    /// together, as sent, and again decompressed.
    pub max_files_total: u64,
    /// Pump mode: the most bytes all NAMEs and LINK targets of a request
    /// may take together (each is at most `mirror::MAX_PATH_LEN`).
    pub max_names_total: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_argc: 64 * 1024,
            max_arg_len: 64 * 1024,
            max_args_total: 4 * 1024 * 1024,
            max_input: 512 * 1024 * 1024,
            max_files: 64 * 1024,
            max_file: 64 * 1024 * 1024,
            max_files_total: 512 * 1024 * 1024,
            max_names_total: 16 * 1024 * 1024,
        }
    }
}

/// Why a request was refused at the protocol level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// A token other than the one the protocol position calls for.
    Derailed {
        expected: Token,
        got: [u8; HEADER_LEN],
    },
    /// The 8 parameter characters were not all hex digits.
    BadHex([u8; HEADER_LEN]),
    /// A protocol version this daemon does not serve.
    UnsupportedVersion(u32),
    /// ARGC of zero: there is no compiler to run.
    NoArguments,
    /// A count or length above the configured limit.
    TooLarge {
        what: &'static str,
        claimed: u64,
        limit: u64,
    },
    /// An argument with a NUL byte in it, which no real client sends.
    NulInArgument(u32),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Derailed { expected, got } => write!(
                f,
                "protocol derailment: expected token \"{}\", got \"{}\"",
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(got).escape_debug()
            ),
            ProtoError::BadHex(got) => write!(
                f,
                "bad hex parameter in token \"{}\"",
                String::from_utf8_lossy(got).escape_debug()
            ),
            ProtoError::UnsupportedVersion(v) => {
                write!(f, "protocol version {v} is not served here")
            }
            ProtoError::NoArguments => write!(f, "request has no arguments"),
            ProtoError::TooLarge {
                what,
                claimed,
                limit,
            } => write!(f, "{what} of {claimed} exceeds the limit of {limit}"),
            ProtoError::NulInArgument(i) => write!(f, "argument {i} contains a NUL byte"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// What the decoder has found in the bytes given so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// `DIST`, `ARGC` and every `ARGV` have arrived (and, in version 3,
    /// `CDIR` before them: [`RequestDecoder::cwd`]).
    Command { version: u32, argv: Vec<Vec<u8>> },
    /// The `DOTI` header: this many body bytes follow.
    InputStart(u32),
    /// The next piece of the `DOTI` body, or of the FILE body just started.
    Input(&'a [u8]),
    /// Version 3: a `NAME` and its `FILE` header: the file's client path
    /// and the length of its compressed body, which follows as `Input`
    /// pieces, then [`Item::FileEnd`].
    FileStart { name: Vec<u8>, len: u32 },
    /// Version 3: the FILE body just started is complete.
    FileEnd,
    /// Version 3: a `NAME` and its `LINK`: the symlink's client path and target.
    Link { name: Vec<u8>, target: Vec<u8> },
    /// Version 3, `,sysheaders`: a `NAME` and its `SHDR`: a system header
    /// by the SHA-256 the client claims for its content.
    Header { name: Vec<u8>, hash: [u8; HASH_LEN] },
    /// Version 3: the file list is in and held this many `SHDR` entries.
    /// The decoder waits for [`RequestDecoder::need`] before it reads on.
    HeadersListed(u32),
    /// The body of the next needed header begins: its compressed length.
    /// Its bytes follow as `Input` pieces, then [`Item::FileEnd`].
    HeaderBody(u32),
    /// The request is complete.
    End,
}

#[derive(Debug)]
enum State {
    Dist,
    CdirHeader,
    CdirBody {
        len: u32,
    },
    Argc,
    ArgvHeader {
        left: u32,
    },
    ArgvBody {
        len: u32,
        left: u32,
    },
    DotiHeader,
    DotiBody {
        left: u32,
    },
    NfilHeader,
    /// `left` entries of the file list are still to come.
    NameHeader {
        left: u32,
    },
    NameBody {
        len: u32,
        left: u32,
    },
    /// The FILE or LINK after a NAME.
    EntryHeader {
        left: u32,
    },
    FileBody {
        size: u32,
        left: u32,
    },
    LinkBody {
        len: u32,
        left: u32,
    },
    HashBody {
        len: u32,
        left: u32,
    },
    /// The `SHDR` entries are listed; the daemon has not said yet which
    /// bodies it lacks.
    AwaitNeed,
    /// `left` header bodies are still to come.
    NeededHeader {
        left: u32,
    },
    NeededBody {
        size: u32,
        left: u32,
    },
    Done,
}

/// Pull decoder for a request: version 1 or 2 (`DIST ARGC ARGV... DOTI`)
/// or version 3, pump mode (`DIST CDIR ARGC ARGV... NFIL (NAME FILE|LINK)...`).
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
    /// A header, argument or path that has only partly arrived.
    partial: Vec<u8>,
    version: u32,
    cwd: Option<Vec<u8>>,
    argv: Vec<Vec<u8>>,
    args_total: usize,
    command_sent: bool,
    /// Version 3: the NAME whose FILE or LINK comes next.
    name: Vec<u8>,
    /// Version 3: FILE bytes claimed so far.
    files_total: u64,
    /// Version 3: NAME and LINK bytes claimed so far.
    names_total: u64,
    /// Version 3: `SHDR` entries so far.
    headers: u32,
    /// Version 3: the daemon has said which header bodies it lacks.
    needed: bool,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Dist,
            partial: Vec::new(),
            version: 0,
            cwd: None,
            argv: Vec::new(),
            args_total: 0,
            command_sent: false,
            name: Vec::new(),
            files_total: 0,
            names_total: 0,
            headers: 0,
            needed: false,
        }
    }

    /// After [`Item::HeadersListed`]: the daemon lacks the bodies of
    /// `count` of the headers (at most as many as were listed), which come
    /// next as `FILE`s, in the order of their `SHDR` entries.
    pub fn need(&mut self, count: u32) {
        if !matches!(self.state, State::AwaitNeed) {
            return;
        }
        self.needed = true;
        self.state = match count.min(self.headers) {
            0 => State::NameHeader { left: 0 },
            left => State::NeededHeader { left },
        };
    }

    /// The protocol version from `DIST`, once it has arrived.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Version 3: the client's working directory from `CDIR`, once it has arrived.
    pub fn cwd(&self) -> Option<&[u8]> {
        self.cwd.as_deref()
    }

    /// True once the whole request has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes bytes from the front of `input` until it can return the next
    /// item. Returns `Ok(None)` when `input` is used up first; call again
    /// with more bytes. Bytes after the end of the request are left in `input`.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<Item<'a>>, ProtoError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::AwaitNeed => return Ok(None),
                State::DotiBody { left } => return Ok(self.body_piece(input, left)),
                State::FileBody { size, .. } | State::NeededBody { size, .. } => {
                    return Ok(self.body_piece(input, size))
                }
                State::CdirBody { len }
                | State::ArgvBody { len, .. }
                | State::NameBody { len, .. }
                | State::LinkBody { len, .. }
                | State::HashBody { len, .. } => {
                    if !self.fill(input, len as usize) {
                        return Ok(None);
                    }
                    if let Some(item) = self.on_string()? {
                        return Ok(Some(item));
                    }
                }
                State::ArgvHeader { left: 0 } if !self.command_sent => {
                    self.command_sent = true;
                    self.state = if self.version == 3 {
                        State::NfilHeader
                    } else {
                        State::DotiHeader
                    };
                    return Ok(Some(Item::Command {
                        version: self.version,
                        argv: std::mem::take(&mut self.argv),
                    }));
                }
                State::NameHeader { left: 0 } if self.headers > 0 && !self.needed => {
                    self.state = State::AwaitNeed;
                    return Ok(Some(Item::HeadersListed(self.headers)));
                }
                State::NameHeader { left: 0 } => {
                    self.state = State::Done;
                    return Ok(Some(Item::End));
                }
                _ => {
                    let Some(header) = self.take_header(input) else {
                        return Ok(None);
                    };
                    if let Some(item) = self.on_header(&header)? {
                        return Ok(Some(item));
                    }
                }
            }
        }
    }

    /// The next piece of a DOTI or FILE body with `left` bytes to come, or
    /// its end once they have all come.
    fn body_piece<'a>(&mut self, input: &mut &'a [u8], left: u32) -> Option<Item<'a>> {
        if left == 0 {
            return Some(match self.state {
                State::FileBody { left, .. } => {
                    self.state = State::NameHeader { left: left - 1 };
                    Item::FileEnd
                }
                State::NeededBody { left: 1, .. } => {
                    self.state = State::NameHeader { left: 0 };
                    Item::FileEnd
                }
                State::NeededBody { left, .. } => {
                    self.state = State::NeededHeader { left: left - 1 };
                    Item::FileEnd
                }
                _ => {
                    self.state = State::Done;
                    Item::End
                }
            });
        }
        if input.is_empty() {
            return None;
        }
        let take = input.len().min(left as usize);
        let (chunk, rest) = input.split_at(take);
        *input = rest;
        let rest = left - take as u32;
        match &mut self.state {
            State::FileBody { size, .. } | State::NeededBody { size, .. } => *size = rest,
            state => *state = State::DotiBody { left: rest },
        }
        Some(Item::Input(chunk))
    }

    /// A CDIR, ARGV, NAME or LINK string has wholly arrived in `partial`.
    fn on_string(&mut self) -> Result<Option<Item<'static>>, ProtoError> {
        let body = std::mem::take(&mut self.partial);
        match self.state {
            State::CdirBody { .. } => {
                self.cwd = Some(body);
                self.state = State::Argc;
            }
            State::ArgvBody { left, .. } => {
                if body.contains(&0) {
                    return Err(ProtoError::NulInArgument(self.argv.len() as u32));
                }
                self.argv.push(body);
                self.state = State::ArgvHeader { left: left - 1 };
            }
            State::NameBody { left, .. } => {
                self.name = body;
                self.state = State::EntryHeader { left };
            }
            State::LinkBody { left, .. } => {
                self.state = State::NameHeader { left: left - 1 };
                return Ok(Some(Item::Link {
                    name: std::mem::take(&mut self.name),
                    target: body,
                }));
            }
            State::HashBody { left, .. } => {
                self.state = State::NameHeader { left: left - 1 };
                let mut hash = [0u8; HASH_LEN];
                hash.copy_from_slice(&body);
                return Ok(Some(Item::Header {
                    name: std::mem::take(&mut self.name),
                    hash,
                }));
            }
            _ => {}
        }
        Ok(None)
    }

    /// Moves bytes from `input` into `partial` until it holds `want` bytes.
    fn fill(&mut self, input: &mut &[u8], want: usize) -> bool {
        let need = want - self.partial.len();
        let take = need.min(input.len());
        self.partial.extend_from_slice(&input[..take]);
        *input = &input[take..];
        self.partial.len() == want
    }

    fn take_header(&mut self, input: &mut &[u8]) -> Option<[u8; HEADER_LEN]> {
        if !self.fill(input, HEADER_LEN) {
            return None;
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.partial);
        self.partial.clear();
        Some(header)
    }

    fn expect(header: &[u8; HEADER_LEN], expected: Token) -> Result<u32, ProtoError> {
        let (token, value) = parse_header(header)?;
        if token != expected {
            return Err(ProtoError::Derailed {
                expected,
                got: *header,
            });
        }
        Ok(value)
    }

    fn on_header(
        &mut self,
        header: &[u8; HEADER_LEN],
    ) -> Result<Option<Item<'static>>, ProtoError> {
        let path_limit = crate::mirror::MAX_PATH_LEN as u64;
        match self.state {
            State::Dist => {
                let version = Self::expect(header, DIST)?;
                // 3.4 serves DIST 0 as version 1 and echoes 0; version 3 is
                // pump mode; later versions are unknown, and are refused.
                if version > 3 {
                    return Err(ProtoError::UnsupportedVersion(version));
                }
                self.version = version;
                self.state = if version == 3 {
                    State::CdirHeader
                } else {
                    State::Argc
                };
            }
            State::CdirHeader => {
                let len = Self::expect(header, CDIR)?;
                check("CDIR length", len.into(), path_limit)?;
                self.state = State::CdirBody { len };
            }
            State::Argc => {
                let argc = Self::expect(header, ARGC)?;
                if argc == 0 {
                    return Err(ProtoError::NoArguments);
                }
                check("ARGC", argc.into(), self.limits.max_argc.into())?;
                self.state = State::ArgvHeader { left: argc };
            }
            State::ArgvHeader { left } => {
                let len = Self::expect(header, ARGV)?;
                check(
                    "argument length",
                    len.into(),
                    self.limits.max_arg_len.into(),
                )?;
                self.args_total += len as usize;
                let total = self.args_total as u64;
                check(
                    "total argument length",
                    total,
                    self.limits.max_args_total as u64,
                )?;
                self.state = State::ArgvBody { len, left };
            }
            State::DotiHeader => {
                let len = Self::expect(header, DOTI)?;
                check("DOTI length", len.into(), self.limits.max_input.into())?;
                self.state = State::DotiBody { left: len };
                return Ok(Some(Item::InputStart(len)));
            }
            State::NfilHeader => {
                let count = Self::expect(header, NFIL)?;
                check("NFIL", count.into(), self.limits.max_files.into())?;
                self.state = State::NameHeader { left: count };
            }
            State::NameHeader { left } => {
                let len = Self::expect(header, NAME)?;
                check("NAME length", len.into(), path_limit)?;
                self.count_name(len)?;
                self.state = State::NameBody { len, left };
            }
            State::EntryHeader { left } => return self.on_entry_header(header, left),
            State::NeededHeader { left } => {
                let len = Self::expect(header, FILE)?;
                self.count_file(len)?;
                self.state = State::NeededBody { size: len, left };
                return Ok(Some(Item::HeaderBody(len)));
            }
            _ => {}
        }
        Ok(None)
    }

    /// Counts a NAME or LINK target against the request's total.
    fn count_name(&mut self, len: u32) -> Result<(), ProtoError> {
        self.names_total += u64::from(len);
        check(
            "total NAME and LINK length",
            self.names_total,
            self.limits.max_names_total,
        )
    }

    /// The FILE or LINK header after a NAME.
    fn on_entry_header(
        &mut self,
        header: &[u8; HEADER_LEN],
        left: u32,
    ) -> Result<Option<Item<'static>>, ProtoError> {
        let (token, len) = parse_header(header)?;
        match token {
            FILE => {
                self.count_file(len)?;
                self.state = State::FileBody { size: len, left };
                Ok(Some(Item::FileStart {
                    name: std::mem::take(&mut self.name),
                    len,
                }))
            }
            LINK => {
                check(
                    "LINK length",
                    len.into(),
                    crate::mirror::MAX_PATH_LEN as u64,
                )?;
                self.count_name(len)?;
                self.state = State::LinkBody { len, left };
                Ok(None)
            }
            SHDR => {
                check("SHDR length", len.into(), HASH_LEN as u64)?;
                if len as usize != HASH_LEN {
                    return Err(ProtoError::Derailed {
                        expected: SHDR,
                        got: *header,
                    });
                }
                self.headers += 1;
                self.state = State::HashBody { len, left };
                Ok(None)
            }
            _ => Err(ProtoError::Derailed {
                expected: FILE,
                got: *header,
            }),
        }
    }

    /// Counts a FILE body of `len` bytes against the per-file and total caps.
    fn count_file(&mut self, len: u32) -> Result<(), ProtoError> {
        check("FILE length", len.into(), self.limits.max_file.into())?;
        self.files_total += u64::from(len);
        check(
            "total FILE length",
            self.files_total,
            self.limits.max_files_total,
        )
    }
}

/// `Err` when a claimed count or length is over its limit.
fn check(what: &'static str, claimed: u64, limit: u64) -> Result<(), ProtoError> {
    if claimed > limit {
        return Err(ProtoError::TooLarge {
            what,
            claimed,
            limit,
        });
    }
    Ok(())
}

/// Encodes a request (the client's side), for tests and for the client.
pub fn encode_request(version: u32, argv: &[&[u8]], input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + input.len());
    put_header(&mut out, &DIST, version);
    put_argv(&mut out, argv);
    put_bulk(&mut out, &DOTI, input, version);
    out
}

/// One entry of a version 3 request's file list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PumpEntry<'a> {
    /// `NAME` + `FILE`: the file's client path and its LZO1X-compressed bytes.
    File { name: &'a [u8], lzo: &'a [u8] },
    /// `NAME` + `LINK`: a symlink's client path and its target.
    Link { name: &'a [u8], target: &'a [u8] },
    /// `NAME` + `SHDR`: a system header by its content's SHA-256 (distcc-rs only).
    Header {
        name: &'a [u8],
        hash: &'a [u8; HASH_LEN],
    },
}

/// Encodes a version 3 (pump) request: `DIST 3, CDIR, ARGC/ARGV, NFIL`, then
/// each entry. FILE bodies go out as given: they are compressed already.
pub fn encode_pump_request(cwd: &[u8], argv: &[&[u8]], files: &[PumpEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    put_header(&mut out, &DIST, 3);
    put_body(&mut out, &CDIR, cwd);
    put_argv(&mut out, argv);
    put_header(&mut out, &NFIL, files.len() as u32);
    for entry in files {
        match entry {
            PumpEntry::File { name, lzo } => {
                put_body(&mut out, &NAME, name);
                put_body(&mut out, &FILE, lzo);
            }
            PumpEntry::Link { name, target } => {
                put_body(&mut out, &NAME, name);
                put_body(&mut out, &LINK, target);
            }
            PumpEntry::Header { name, hash } => {
                put_body(&mut out, &NAME, name);
                put_body(&mut out, &SHDR, &hash[..]);
            }
        }
    }
    out
}

/// Appends `ARGC n` and n `ARGV` strings.
pub fn put_argv(out: &mut Vec<u8>, argv: &[&[u8]]) {
    put_list(out, &ARGC, argv);
}

/// Appends a count packet `token` and an `ARGV` for each of `items`
/// (what [`read_list`] reads).
pub fn put_list<T: AsRef<[u8]>>(out: &mut Vec<u8>, token: &Token, items: &[T]) {
    put_header(out, token, items.len() as u32);
    for item in items {
        put_body(out, &ARGV, item.as_ref());
    }
}

/// Encodes what a client sends the include server: `CDIR`, then the full
/// command line as `ARGC`/`ARGV` (distcc 3.4's `dcc_talk_to_include_server`).
pub fn encode_include_query(cwd: &[u8], argv: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    put_body(&mut out, &CDIR, cwd);
    put_argv(&mut out, argv);
    out
}

/// The same query from a client that wants the system headers as files
/// too (`,sysheaders`): `SYSH 1` first. distcc 3.4's client never sends it.
pub fn encode_system_include_query(cwd: &[u8], argv: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    put_header(&mut out, &SYSH, 1);
    out.extend_from_slice(&encode_include_query(cwd, argv));
    out
}

/// Encodes the include server's answer: the mirror paths as `ARGC`/`ARGV`.
/// An empty list means "gave up": the client preprocesses locally.
pub fn encode_include_answer(paths: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    put_argv(&mut out, paths);
    out
}

/// Reads one header from a blocking stream and checks its token.
pub fn read_expected<R: std::io::Read>(r: &mut R, expected: Token) -> std::io::Result<u32> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)?;
    expected_in(&header, expected)
}

/// The parameter of `header`, which must carry `expected`.
fn expected_in(header: &[u8; HEADER_LEN], expected: Token) -> std::io::Result<u32> {
    let (token, value) = parse_header(header).map_err(invalid)?;
    if token != expected {
        return Err(invalid(ProtoError::Derailed {
            expected,
            got: *header,
        }));
    }
    Ok(value)
}

fn invalid(e: ProtoError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

fn too_large(what: &'static str, claimed: u64, limit: u64) -> std::io::Error {
    invalid(ProtoError::TooLarge {
        what,
        claimed,
        limit,
    })
}

/// Reads a string packet `token` of at most `max` bytes from a blocking stream.
pub fn read_string<R: std::io::Read>(
    r: &mut R,
    token: Token,
    max: u32,
) -> std::io::Result<Vec<u8>> {
    let len = read_expected(r, token)?;
    read_string_body(r, len, max)
}

/// Reads the `len` bytes of a string packet whose header is read, if
/// `len` is at most `max`.
fn read_string_body<R: std::io::Read>(r: &mut R, len: u32, max: u32) -> std::io::Result<Vec<u8>> {
    if len > max {
        return Err(too_large("string length", len.into(), max.into()));
    }
    let mut body = vec![0; len as usize];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Reads `ARGC`/`ARGV` from a blocking stream, within `limits`' argument
/// caps. Used for both sides of the include-server exchange.
pub fn read_argv<R: std::io::Read>(r: &mut R, limits: &Limits) -> std::io::Result<Vec<Vec<u8>>> {
    read_list(r, ARGC, limits)
}

/// Reads a count packet `token`, then as many `ARGV` strings, within
/// `limits`' argument caps.
pub fn read_list<R: std::io::Read>(
    r: &mut R,
    token: Token,
    limits: &Limits,
) -> std::io::Result<Vec<Vec<u8>>> {
    let argc = read_expected(r, token)?;
    if argc > limits.max_argc {
        return Err(too_large("ARGC", argc.into(), limits.max_argc.into()));
    }
    let mut argv = Vec::with_capacity(argc.min(1024) as usize);
    let mut total = 0usize;
    for _ in 0..argc {
        let arg = read_string(r, ARGV, limits.max_arg_len)?;
        total += arg.len();
        if total > limits.max_args_total {
            return Err(too_large(
                "total argument length",
                total as u64,
                limits.max_args_total as u64,
            ));
        }
        argv.push(arg);
    }
    Ok(argv)
}

/// A client's query to the include server.
#[derive(Debug, PartialEq, Eq)]
pub struct IncludeQuery {
    pub cwd: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    /// The client sent `SYSH 1` first: it wants the system headers as
    /// files, and the longer answer (`src/sysheaders.rs`).
    pub system_headers: bool,
}

/// Reads a client's query to the include server: its working directory
/// and its command line, after `SYSH 1` from a client that wants the
/// system headers.
pub fn read_include_query<R: std::io::Read>(
    r: &mut R,
    limits: &Limits,
) -> std::io::Result<IncludeQuery> {
    let max_path = crate::mirror::MAX_PATH_LEN as u32;
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header)?;
    let system_headers = header.starts_with(&SYSH);
    if system_headers {
        if expected_in(&header, SYSH)? != 1 {
            return Err(invalid(ProtoError::BadHex(header)));
        }
        r.read_exact(&mut header)?;
    }
    let len = expected_in(&header, CDIR)?;
    let cwd = read_string_body(r, len, max_path)?;
    let argv = read_argv(r, limits)?;
    Ok(IncludeQuery {
        cwd,
        argv,
        system_headers,
    })
}

/// Encodes `DENY` with `reason`, cut on a character boundary to at most
/// [`MAX_DENY_REASON`] bytes.
pub fn encode_deny(reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_DENY_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + end);
    put_body(&mut out, &DENY, &reason.as_bytes()[..end]);
    out
}

/// For a client that read `header` where it expected `DONE`: the length of
/// the reason that follows if it is a `DENY`, `None` if it is some other
/// token. A claimed length over [`MAX_DENY_REASON`] is a protocol error.
pub fn deny_length(header: &[u8; HEADER_LEN]) -> Result<Option<usize>, ProtoError> {
    let (token, len) = parse_header(header)?;
    if token != DENY {
        return Ok(None);
    }
    if len as usize > MAX_DENY_REASON {
        return Err(ProtoError::TooLarge {
            what: "DENY reason",
            claimed: len.into(),
            limit: MAX_DENY_REASON as u64,
        });
    }
    Ok(Some(len as usize))
}

/// A `DENY` body as text to show a user: invalid UTF-8 replaced, control
/// characters (a daemon's terminal escapes, line breaks) shown as spaces.
pub fn deny_reason(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The compiler's results as the daemon sends them back.
pub struct Response<'a> {
    pub version: u32,
    /// The raw wait status of the compiler (or an invented `code << 8`).
    pub status: u32,
    pub stderr: &'a [u8],
    pub stdout: &'a [u8],
    /// The object file; `None` when the compile failed, which sends `DOTO00000000`.
    pub object: Option<&'a [u8]>,
    /// Version 3 only: the rewritten `.d` file, sent as `DOTD` after a
    /// successful compile's `DOTO` (empty when there is none).
    pub dotd: &'a [u8],
}

impl Response<'_> {
    /// Encodes `DONE STAT SERR SOUT DOTO`.
    pub fn encode(&self) -> Vec<u8> {
        let object = self.object.unwrap_or(&[]);
        let mut out = Vec::with_capacity(5 * HEADER_LEN + self.stderr.len() + object.len());
        put_header(&mut out, &DONE, self.version);
        put_header(&mut out, &STAT, self.status);
        put_bulk(&mut out, &SERR, self.stderr, self.version);
        put_bulk(&mut out, &SOUT, self.stdout, self.version);
        put_bulk(&mut out, &DOTO, object, self.version);
        if self.version >= 3 && self.status == 0 && self.object.is_some() {
            put_bulk(&mut out, &DOTD, self.dotd, self.version);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded request: version, arguments and the DOTI body.
    type Decoded = (u32, Vec<Vec<u8>>, Vec<u8>);

    fn decode_all(bytes: &[u8], step: usize) -> Result<Decoded, ProtoError> {
        let mut dec = RequestDecoder::new(Limits::default());
        let mut argv = None;
        let mut body = Vec::new();
        let mut ended = false;
        for chunk in bytes.chunks(step.max(1)) {
            let mut input = chunk;
            while let Some(item) = dec.next(&mut input)? {
                match item {
                    Item::Command { argv: a, .. } => argv = Some(a),
                    Item::InputStart(_) => {}
                    Item::Input(b) => body.extend_from_slice(b),
                    Item::End => ended = true,
                    Item::FileStart { .. } | Item::FileEnd | Item::Link { .. } => {}
                    Item::Header { .. } | Item::HeadersListed(_) | Item::HeaderBody(_) => {}
                }
            }
            assert!(input.is_empty() || ended);
        }
        assert!(ended, "request did not end");
        Ok((dec.version(), argv.unwrap(), body))
    }

    #[test]
    fn observed_v1_request_decodes() {
        let wire = b"DIST00000001ARGC00000005ARGV00000003gccARGV00000002-cARGV00000003x.c\
ARGV00000002-oARGV00000003x.oDOTI00000007int x;\n";
        for step in [1, 5, 12, 13, 1000] {
            let (v, argv, body) = decode_all(wire, step).unwrap();
            assert_eq!(v, 1);
            assert_eq!(
                argv,
                vec![
                    b"gcc".to_vec(),
                    b"-c".to_vec(),
                    b"x.c".to_vec(),
                    b"-o".to_vec(),
                    b"x.o".to_vec()
                ]
            );
            assert_eq!(body, b"int x;\n");
        }
    }

    #[test]
    fn encode_request_matches_observed_bytes() {
        let argv: [&[u8]; 5] = [b"gcc", b"-c", b"x.c", b"-o", b"x.o"];
        let v1 = encode_request(1, &argv, b"int x;\n");
        assert_eq!(
            v1,
            b"DIST00000001ARGC00000005ARGV00000003gccARGV00000002-cARGV00000003x.c\
ARGV00000002-oARGV00000003x.oDOTI00000007int x;\n"
        );
        let v2 = encode_request(2, &argv, b"int x;\n");
        let tail: &[u8] = b"DOTI0000000b\x18int x;\n\x11\x00\x00";
        assert!(v2.starts_with(b"DIST00000002ARGC00000005"));
        assert!(v2.ends_with(tail));
    }

    #[test]
    fn upper_case_hex_is_accepted() {
        assert_eq!(parse_header(b"DOTI0000000B").unwrap(), (DOTI, 11));
    }

    #[test]
    fn bad_hex_is_refused() {
        assert!(matches!(
            parse_header(b"DIST0000000g"),
            Err(ProtoError::BadHex(_))
        ));
        assert!(matches!(
            parse_header(b"DIST -000001"),
            Err(ProtoError::BadHex(_))
        ));
    }

    #[test]
    fn derailed_token_is_refused() {
        let err = decode_all(b"DIST00000001ARGV00000003gcc", 100).unwrap_err();
        assert!(matches!(err, ProtoError::Derailed { expected, .. } if expected == ARGC));
    }

    #[test]
    fn unknown_versions_are_refused() {
        assert_eq!(
            decode_all(b"DIST00000004", 12).unwrap_err(),
            ProtoError::UnsupportedVersion(4)
        );
        assert_eq!(
            decode_all(b"DISTffffffff", 12).unwrap_err(),
            ProtoError::UnsupportedVersion(u32::MAX)
        );
    }

    #[test]
    fn claimed_sizes_over_limits_are_refused_before_allocation() {
        let err = decode_all(b"DIST00000001ARGCffffffff", 24).unwrap_err();
        assert!(matches!(err, ProtoError::TooLarge { what: "ARGC", .. }));
        let err = decode_all(b"DIST00000001ARGC00000001ARGVffffffff", 36).unwrap_err();
        assert!(matches!(
            err,
            ProtoError::TooLarge {
                what: "argument length",
                ..
            }
        ));
        let err =
            decode_all(b"DIST00000001ARGC00000001ARGV00000001xDOTIffffffff", 100).unwrap_err();
        assert!(matches!(
            err,
            ProtoError::TooLarge {
                what: "DOTI length",
                ..
            }
        ));
        assert_eq!(
            decode_all(b"DIST00000001ARGC00000000", 100).unwrap_err(),
            ProtoError::NoArguments
        );
    }

    #[test]
    fn nul_in_argument_is_refused() {
        let err =
            decode_all(b"DIST00000001ARGC00000001ARGV00000003g\0cDOTI00000000", 100).unwrap_err();
        assert_eq!(err, ProtoError::NulInArgument(0));
    }

    #[test]
    fn empty_input_ends_at_once() {
        let (_, argv, body) =
            decode_all(b"DIST00000002ARGC00000001ARGV00000003gccDOTI00000000", 7).unwrap();
        assert_eq!(argv, vec![b"gcc".to_vec()]);
        assert!(body.is_empty());
    }

    #[test]
    fn bytes_after_the_request_are_left_alone() {
        let mut dec = RequestDecoder::new(Limits::default());
        let wire: &[u8] = b"DIST00000001ARGC00000001ARGV00000001xDOTI00000001yJUNK";
        let mut input = wire;
        let mut items = 0;
        while let Some(item) = dec.next(&mut input).unwrap() {
            items += 1;
            if item == Item::End {
                break;
            }
        }
        assert_eq!(items, 4);
        assert_eq!(input, b"JUNK");
        assert!(dec.is_done());
    }

    #[test]
    fn observed_responses_encode_identically() {
        let ok = Response {
            version: 1,
            status: 0,
            stderr: b"",
            stdout: b"",
            object: Some(b"OBJ"),
            dotd: &[],
        };
        assert_eq!(
            ok.encode(),
            b"DONE00000001STAT00000000SERR00000000SOUT00000000DOTO00000003OBJ"
        );
        let failed = Response {
            version: 2,
            status: 0x300,
            stderr: b"to-stderr\n",
            stdout: b"to-stdout\n",
            object: None,
            dotd: &[],
        };
        assert_eq!(
            failed.encode(),
            b"DONE00000002STAT00000300SERR0000000e\x1bto-stderr\n\x11\x00\x00SOUT0000000e\x1bto-stdout\n\x11\x00\x00DOTO00000000".to_vec()
        );
    }

    #[test]
    fn deny_round_trips_and_is_bounded() {
        let wire = encode_deny("compiler 'cc1' is not allowed");
        assert_eq!(wire, b"DENY0000001dcompiler 'cc1' is not allowed");
        let header: [u8; HEADER_LEN] = wire[..HEADER_LEN].try_into().unwrap();
        assert_eq!(deny_length(&header).unwrap(), Some(29));
        assert_eq!(
            deny_reason(&wire[HEADER_LEN..]),
            "compiler 'cc1' is not allowed"
        );
        assert_eq!(deny_length(b"DONE00000001").unwrap(), None);
        assert!(matches!(
            deny_length(b"DENY00001001"),
            Err(ProtoError::TooLarge { .. })
        ));
        // Cut to the limit on a character boundary: 'a' and 2047 'é'.
        let long = format!("a{}", "é".repeat(MAX_DENY_REASON));
        let wire = encode_deny(&long);
        assert_eq!(&wire[..HEADER_LEN], b"DENY00000fff");
        assert!(std::str::from_utf8(&wire[HEADER_LEN..]).is_ok());
        assert_eq!(deny_reason(b"a\x1b[2Jb\nc\xff"), "a [2Jb c\u{fffd}");
    }

    #[test]
    fn pump_request_matches_observed_bytes() {
        // distcc-compat §1.4.2, with the LZO bodies cut down to short ones.
        let argv: [&[u8]; 3] = [b"x86_64-linux-gnu-gcc", b"-c", b"p.c"];
        let files = [
            PumpEntry::File {
                name: b"/tmp/exp/cli/p.c",
                lzo: b"LZ",
            },
            PumpEntry::Link {
                name: b"/tmp/exp/cli/alias.h",
                target: b"inc/g.h",
            },
        ];
        let wire = encode_pump_request(b"/tmp/exp/cli", &argv, &files);
        assert_eq!(
            wire,
            &b"DIST00000003CDIR0000000c/tmp/exp/cliARGC00000003\
               ARGV00000014x86_64-linux-gnu-gccARGV00000002-cARGV00000003p.c\
               NFIL00000002NAME00000010/tmp/exp/cli/p.cFILE00000002LZ\
               NAME00000014/tmp/exp/cli/alias.hLINK00000007inc/g.h"[..]
        );
    }

    #[test]
    fn include_server_exchange_round_trips_and_is_bounded() {
        let query = encode_include_query(b"/home/u", &[b"gcc", b"-c", b"t.c"]);
        assert!(query.starts_with(b"CDIR00000007/home/uARGC00000003"));
        let read = read_include_query(&mut &query[..], &Limits::default()).unwrap();
        assert_eq!(read.cwd, b"/home/u");
        assert_eq!(read.argv, [&b"gcc"[..], b"-c", b"t.c"]);
        assert!(!read.system_headers);
        let system = encode_system_include_query(b"/home/u", &[b"gcc", b"-c", b"t.c"]);
        assert_eq!(system, [&b"SYSH00000001"[..], &query].concat());
        let read = read_include_query(&mut &system[..], &Limits::default()).unwrap();
        assert!(read.system_headers);
        assert_eq!(read.argv.len(), 3);
        let bad = [&b"SYSH00000002"[..], &query].concat();
        assert!(read_include_query(&mut &bad[..], &Limits::default()).is_err());

        let answer = encode_include_answer(&[b"/a/b/c/t.c.lzo"]);
        let paths = read_argv(&mut &answer[..], &Limits::default()).unwrap();
        assert_eq!(paths, [b"/a/b/c/t.c.lzo"]);
        assert_eq!(encode_include_answer(&[]), b"ARGC00000000");

        let small = Limits {
            max_argc: 2,
            ..Limits::default()
        };
        let err = read_include_query(&mut &query[..], &small).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("ARGC of 3"), "{err}");
        let err = read_argv(&mut &b"ARGC00000001ARGVffffffff"[..], &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        let err = read_argv(&mut &b"CDIR00000000"[..], &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("expected token \"ARGC\""), "{err}");
        let cut = read_argv(&mut &b"ARGC00000001ARGV00000005ab"[..], &Limits::default());
        assert_eq!(cut.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn pump_replies_end_with_dotd_only_after_a_success() {
        let ok = Response {
            version: 3,
            status: 0,
            stderr: b"",
            stdout: b"",
            object: Some(b"OBJ"),
            dotd: b"",
        };
        assert!(ok.encode().ends_with(b"DOTD00000000"));
        let failed = Response {
            status: 256,
            object: None,
            ..ok
        };
        assert!(failed.encode().ends_with(b"DOTO00000000"));
        let v2 = Response { version: 2, ..ok };
        assert!(!v2.encode().windows(4).any(|w| w == b"DOTD"));
    }

    /// What a version 3 request decodes to, in order, file bodies joined.
    fn decode_pump(bytes: &[u8], step: usize, limits: Limits) -> Result<Vec<String>, ProtoError> {
        decode_pump_needing(bytes, step, limits, Vec::new())
    }

    /// As `decode_pump`, answering each `HeadersListed` with the next of `need`.
    fn decode_pump_needing(
        bytes: &[u8],
        step: usize,
        limits: Limits,
        mut need: Vec<u32>,
    ) -> Result<Vec<String>, ProtoError> {
        let mut dec = RequestDecoder::new(limits);
        let mut seen: Vec<String> = Vec::new();
        for chunk in bytes.chunks(step) {
            let mut input = chunk;
            while let Some(item) = dec.next(&mut input)? {
                let text = match item {
                    Item::Command { version, argv } => format!("cmd {version} {}", argv.len()),
                    Item::FileStart { name, len } => format!("file {} {len}", text(&name)),
                    Item::Input(b) => format!("data {}", text(b)),
                    Item::FileEnd => "end-file".into(),
                    Item::Link { name, target } => {
                        format!("link {} {}", text(&name), text(&target))
                    }
                    Item::End => "end".into(),
                    Item::Header { name, hash } => format!("hdr {} {}", text(&name), hash[0]),
                    Item::HeadersListed(n) => {
                        dec.need(need.pop().unwrap_or(0));
                        format!("listed {n}")
                    }
                    Item::HeaderBody(len) => format!("body {len}"),
                    Item::InputStart(_) => "doti".into(),
                };
                match (seen.last_mut(), text.strip_prefix("data ")) {
                    (Some(last), Some(more)) if last.starts_with("data ") => last.push_str(more),
                    _ => seen.push(text),
                }
            }
        }
        assert_eq!(dec.cwd(), Some(&b"/tmp/exp/cli"[..]));
        Ok(seen)
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn pump_requests_decode_in_any_pieces() {
        let argv: [&[u8]; 3] = [b"gcc", b"-c", b"p.c"];
        let files = [
            PumpEntry::File {
                name: b"/tmp/exp/cli/p.c",
                lzo: b"LZO-BYTES",
            },
            PumpEntry::File {
                name: b"/tmp/exp/cli/sub/forcing_technique_271828",
                lzo: b"",
            },
            PumpEntry::Link {
                name: b"/usr/include",
                target: b"../../../usr/include",
            },
        ];
        let wire = encode_pump_request(b"/tmp/exp/cli", &argv, &files);
        for step in [1, 5, 12, 13, wire.len()] {
            let seen = decode_pump(&wire, step, Limits::default()).unwrap();
            assert_eq!(
                seen,
                [
                    "cmd 3 3",
                    "file /tmp/exp/cli/p.c 9",
                    "data LZO-BYTES",
                    "end-file",
                    "file /tmp/exp/cli/sub/forcing_technique_271828 0",
                    "end-file",
                    "link /usr/include ../../../usr/include",
                    "end"
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn pump_claims_over_the_limits_are_refused_before_storing() {
        let head = b"DIST00000003CDIR0000000c/tmp/exp/cliARGC00000001ARGV00000003gcc";
        let with = |tail: &[u8], limits: Limits| {
            decode_pump(&[&head[..], tail].concat(), 1000, limits).unwrap_err()
        };
        let what = |e: ProtoError| match e {
            ProtoError::TooLarge { what, .. } => what,
            e => panic!("{e}"),
        };
        let small = Limits {
            max_files: 2,
            max_file: 100,
            max_files_total: 150,
            ..Limits::default()
        };
        assert_eq!(what(with(b"NFIL00000003", small.clone())), "NFIL");
        assert_eq!(what(with(b"NFILffffffff", Limits::default())), "NFIL");
        assert_eq!(
            what(with(b"NFIL00000001NAMEffffffff", small.clone())),
            "NAME length"
        );
        assert_eq!(
            what(with(
                b"NFIL00000001NAME00000002/aFILE00000065",
                small.clone()
            )),
            "FILE length"
        );
        let two = [
            &b"NFIL00000002NAME00000002/aFILE00000064"[..],
            &[b'x'; 100],
            b"NAME00000002/bFILE00000064",
        ]
        .concat();
        assert_eq!(what(with(&two, small.clone())), "total FILE length");
        assert_eq!(
            what(with(
                b"NFIL00000001NAME00000002/aLINKffffffff",
                small.clone()
            )),
            "LINK length"
        );
        let names = Limits {
            max_names_total: 5,
            ..Limits::default()
        };
        let two = b"NFIL00000002NAME00000002/aFILE00000000NAME00000004/bcd";
        assert_eq!(what(with(two, names)), "total NAME and LINK length");
        let err = decode_all(b"DIST00000003CDIRffffffff", 100).unwrap_err();
        assert_eq!(what(err), "CDIR length");
        let err = with(b"NFIL00000001NAME00000002/aDOTI00000000", small);
        assert!(matches!(err, ProtoError::Derailed { expected, .. } if expected == FILE));
    }

    #[test]
    fn header_entries_wait_for_need_then_take_the_needed_bodies() {
        let argv: [&[u8]; 3] = [b"clang", b"-c", b"p.c"];
        let (one, two) = ([1u8; HASH_LEN], [2u8; HASH_LEN]);
        let files = [
            PumpEntry::File {
                name: b"/tmp/exp/cli/p.c",
                lzo: b"SRC",
            },
            PumpEntry::Header {
                name: b"/usr/include/a.h",
                hash: &one,
            },
            PumpEntry::Header {
                name: b"/usr/include/b.h",
                hash: &two,
            },
        ];
        let wire = encode_pump_request(b"/tmp/exp/cli", &argv, &files);
        let body = b"FILE00000004BODY";
        for step in [1, 7, 12, wire.len() + body.len()] {
            let all = [&wire[..], body].concat();
            let seen = decode_pump_needing(&all, step, Limits::default(), vec![1]).unwrap();
            assert_eq!(
                seen,
                [
                    "cmd 3 3",
                    "file /tmp/exp/cli/p.c 3",
                    "data SRC",
                    "end-file",
                    "hdr /usr/include/a.h 1",
                    "hdr /usr/include/b.h 2",
                    "listed 2",
                    "body 4",
                    "data BODY",
                    "end-file",
                    "end"
                ],
                "step {step}"
            );
        }
        // Nothing needed: the request ends at the list.
        let seen = decode_pump_needing(&wire, 5, Limits::default(), vec![0]).unwrap();
        assert_eq!(seen.last().map(String::as_str), Some("end"));
        // More needed than listed is capped at what was listed.
        let all = [&wire[..], body, body, body].concat();
        let seen = decode_pump_needing(&all, 1000, Limits::default(), vec![9]).unwrap();
        assert_eq!(seen.iter().filter(|s| s.starts_with("body")).count(), 2);
    }

    #[test]
    fn malformed_header_entries_are_refused() {
        let head = b"DIST00000003CDIR0000000c/tmp/exp/cliARGC00000001ARGV00000003gcc";
        let with = |tail: &[u8], limits: Limits| {
            decode_pump_needing(&[&head[..], tail].concat(), 1000, limits, vec![1])
        };
        // A hash of another length, claimed short or huge.
        for bad in [
            &b"NFIL00000001NAME00000002/aSHDR0000001f"[..],
            b"NFIL00000001NAME00000002/aSHDRffffffff",
        ] {
            assert!(with(bad, Limits::default()).is_err(), "{}", text(bad));
        }
        // A needed body over the per-file cap, or that is no FILE.
        let small = Limits {
            max_file: 100,
            ..Limits::default()
        };
        let listed = [
            &b"NFIL00000001NAME00000002/aSHDR00000020"[..],
            &[7u8; HASH_LEN],
        ]
        .concat();
        let err = with(&[&listed[..], b"FILE00000065"].concat(), small).unwrap_err();
        assert!(
            matches!(
                err,
                ProtoError::TooLarge {
                    what: "FILE length",
                    ..
                }
            ),
            "{err}"
        );
        let err = with(&[&listed[..], b"LINK00000001/"].concat(), Limits::default()).unwrap_err();
        assert!(matches!(err, ProtoError::Derailed { expected, .. } if expected == FILE));
        // Bytes sent before NEED wait; they are not taken as a body.
        let mut dec = RequestDecoder::new(Limits::default());
        let all = [&head[..], &listed, b"FILE00000000"].concat();
        let mut input = &all[..];
        let mut last = None;
        while let Some(item) = dec.next(&mut input).unwrap() {
            last = Some(format!("{item:?}"));
        }
        assert_eq!(last.as_deref(), Some("HeadersListed(1)"));
        assert_eq!(input, b"FILE00000000");
    }
}
