//! A `--stats` page: how a distcc-rs daemon writes its job lines (`dcc_job CLIENT COMPILER INPUT MSECS`, escaped), and how a reader fetches a page (bounded in size and time) and parses it, a distccd 3.4 page included.
//!
//! distccd 3.4's page is an HTTP header, an `argv` line and the
//! `<distccstats>` section of `dcc_` counters. A distcc-rs daemon adds, after
//! it, `<distccqueue>` (one `dcc_queued_job` line per job waiting for a
//! slot, its time the time since its connection came) and `<distccjobs>`
//! (one `dcc_job` line per running job), which ends the page. Both readers, the monitor
//! and the daemon's cluster page, treat a page as untrusted input.

use std::fmt;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::exitcode::ExitCode;
use crate::net::{connect_tcp, ConnectError};
use crate::proto::DEFAULT_STATS_PORT;

/// The counters' section, distccd 3.4's.
const STATS_BEGIN: &[u8] = b"<distccstats>";
/// The running jobs' section of the page.
pub const JOBS_BEGIN: &str = "<distccjobs>";
pub const JOBS_END: &str = "</distccjobs>";
pub const JOB_WORD: &str = "dcc_job";
/// The queue's section: jobs whose request is in, waiting for a slot.
pub const QUEUE_BEGIN: &str = "<distccqueue>";
pub const QUEUE_END: &str = "</distccqueue>";
pub const QUEUED_JOB_WORD: &str = "dcc_queued_job";

/// One field of a `dcc_job` line: the bytes as they are, except that `%`,
/// spaces, control characters and bytes that are not UTF-8 become `%XX`, so
/// that a line is always five space-separated words and names with spaces
/// or odd bytes survive. Plain names read the same as before this escaping.
pub fn escape_job_field(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' || c == ' ' || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Undoes `%XX`; a `%` not followed by two hex digits stays as it is.
pub fn unescape_job_field(word: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if word[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                word.get(i + 1).copied().and_then(hex),
                word.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(word[i]);
        i += 1;
    }
    out
}

/// A daemon's stats port: `HOST`, `HOST:PORT`, `[V6ADDR]:PORT`, or a bare
/// IPv6 address (port 3633 unless given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Reads a spec; the error says what is wrong, for the caller to put
    /// after its option's name.
    pub fn parse(spec: &str) -> Result<Target, String> {
        let bad_port = |p: &str| format!("bad port '{p}' in '{spec}'");
        let port_of = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad_port(p)),
            Ok(n) => Ok(n),
        };
        let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("no ']' in '{spec}'"))?;
            match after {
                "" => (host, DEFAULT_STATS_PORT),
                _ => match after.strip_prefix(':') {
                    Some(p) => (host, port_of(p)?),
                    None => return Err(format!("bad address '{spec}'")),
                },
            }
        } else {
            match spec.matches(':').count() {
                0 => (spec, DEFAULT_STATS_PORT),
                1 => {
                    let (host, p) = spec.split_once(':').unwrap_or((spec, ""));
                    (host, port_of(p)?)
                }
                // More than one colon and no brackets: a bare IPv6 address.
                _ => (spec, DEFAULT_STATS_PORT),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in '{spec}'"));
        }
        Ok(Target {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One job on a page, running or queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The client's address and port, as the daemon saw it.
    pub client: Vec<u8>,
    pub compiler: Vec<u8>,
    pub input: Vec<u8>,
    /// Milliseconds since the daemon started reading the request.
    pub msecs: u64,
}

/// What a stats page says, as far as the readers need it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// `dcc_max_kids`: the daemon's job slots.
    pub slots: Option<u64>,
    /// `dcc_load1`, as the page writes it.
    pub load1: Option<String>,
    /// `dcc_num_compiles1`: jobs finished in the last minute.
    pub compiles1: Option<u64>,
    /// `dcc_avg_kids1`: jobs running, on average over the last minute.
    pub avg_kids1: Option<u64>,
    /// The running jobs; `None` without `<distccjobs>` (distccd 3.4).
    pub jobs: Option<Vec<Job>>,
    /// The queued jobs; `None` without `<distccqueue>` (distccd 3.4, or a
    /// distcc-rs daemon from before the queue was shown).
    pub queued: Option<Vec<Job>>,
}

/// Why a reply is not a stats page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageError {
    /// Nothing at all: a compile port, or a client the `--allow` list refuses.
    Empty,
    /// No `<distccstats>` section.
    NotStats,
    /// distccd statistics without `<distccjobs>`: a distccd 3.4, not distcc-rs.
    NoJobList,
    /// `<distccjobs>` or `<distccqueue>` without its end.
    Truncated,
    /// A job line that is not five words ending in a number.
    BadJob(String),
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Empty => write!(
                f,
                "closed the connection without a stats page (not a --stats port, or this \
                 client is not in the daemon's --allow list)"
            ),
            PageError::NotStats => write!(f, "the reply is not a distccd --stats page"),
            PageError::NoJobList => write!(
                f,
                "the stats page has no <distccjobs> section, so this daemon does not say \
                 which jobs it runs (distccd 3.4 does not; a distcc-rs daemon does)"
            ),
            PageError::Truncated => write!(f, "the stats page ends inside <distccjobs>"),
            PageError::BadJob(line) => write!(f, "bad dcc_job line: '{line}'"),
        }
    }
}

/// Reads a stats page: its counters, and its job sections where it has them.
pub fn parse_page(page: &[u8]) -> Result<Page, PageError> {
    if page.is_empty() {
        return Err(PageError::Empty);
    }
    let lines: Vec<&[u8]> = page
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    if !lines.contains(&STATS_BEGIN) {
        return Err(PageError::NotStats);
    }
    let field = |name: &str| {
        lines.iter().find_map(|l| {
            let value = l.strip_prefix(name.as_bytes())?.strip_prefix(b" ")?;
            Some(String::from_utf8_lossy(value).trim().to_string())
        })
    };
    let number = |name: &str| field(name).and_then(|v| v.parse().ok());
    Ok(Page {
        slots: number("dcc_max_kids"),
        load1: field("dcc_load1"),
        compiles1: number("dcc_num_compiles1"),
        avg_kids1: number("dcc_avg_kids1"),
        jobs: section(&lines, JOBS_BEGIN, JOBS_END, JOB_WORD)?,
        queued: section(&lines, QUEUE_BEGIN, QUEUE_END, QUEUED_JOB_WORD)?,
    })
}

/// The job lines between `begin` and `end`, or `None` if the page has no
/// such section.
fn section(
    lines: &[&[u8]],
    begin: &str,
    end: &str,
    word: &str,
) -> Result<Option<Vec<Job>>, PageError> {
    let Some(start) = lines.iter().position(|l| *l == begin.as_bytes()) else {
        return Ok(None);
    };
    let mut jobs = Vec::new();
    for line in &lines[start + 1..] {
        if *line == end.as_bytes() {
            return Ok(Some(jobs));
        }
        if line.is_empty() {
            continue;
        }
        jobs.push(
            parse_job(line, word)
                .ok_or_else(|| PageError::BadJob(String::from_utf8_lossy(line).into_owned()))?,
        );
    }
    Err(PageError::Truncated)
}

/// `WORD CLIENT COMPILER INPUT MSECS`. An unescaped line with more words
/// (from before fields were escaped) takes the extra words as the input's.
fn parse_job(line: &[u8], word: &str) -> Option<Job> {
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if words.len() < 5 || words[0] != word.as_bytes() {
        return None;
    }
    let msecs = std::str::from_utf8(words[words.len() - 1])
        .ok()?
        .parse()
        .ok()?;
    Some(Job {
        client: unescape_job_field(words[1]),
        compiler: unescape_job_field(words[2]),
        input: unescape_job_field(&words[3..words.len() - 1].join(&b' ')),
        msecs,
    })
}

/// The client's address without its port: `1.2.3.4:5` gives `1.2.3.4`,
/// `[::1]:5` gives `::1`.
pub fn client_host(client: &[u8]) -> &[u8] {
    let host = match client.iter().rposition(|&b| b == b':') {
        Some(colon) if client.starts_with(b"[") || !client[..colon].contains(&b':') => {
            &client[..colon]
        }
        _ => client,
    };
    host.strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host)
}

/// A name for the screen: control characters (a newline in a file name)
/// shown as `%XX` so that every job stays on one line.
pub fn shown(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        if b < 0x20 || b == 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// How long and how much a fetch may take.
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    pub connect: Duration,
    /// The whole exchange after connecting, request and reply.
    pub io: Duration,
    pub max_bytes: usize,
}

/// `mon --daemon`'s: distcc's connect timeout, 5 s to answer, and 1 MiB (a
/// page is about 1 KiB, plus a line per job).
pub const MONITOR_LIMITS: FetchLimits = FetchLimits {
    connect: Duration::from_secs(crate::env::DEFAULT_CONNECT_SECS),
    io: Duration::from_secs(5),
    max_bytes: 1 << 20,
};

/// Why the stats page could not be had; each maps to distcc's exit code.
#[derive(Debug)]
pub enum FetchError {
    Connect(ConnectError),
    Io(String),
    Timeout(&'static str),
    Truncated(&'static str),
    Protocol(String),
}

impl FetchError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            FetchError::Connect(_) => ExitCode::ConnectFailed,
            FetchError::Io(_) | FetchError::Timeout(_) => ExitCode::IoError,
            FetchError::Truncated(_) => ExitCode::Truncated,
            FetchError::Protocol(_) => ExitCode::ProtocolError,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Connect(why) => write!(f, "connect failed: {why}"),
            FetchError::Io(why) => write!(f, "i/o error: {why}"),
            FetchError::Timeout(what) => write!(f, "timed out while {what}"),
            FetchError::Truncated(what) => write!(f, "server closed the connection while {what}"),
            FetchError::Protocol(why) => write!(f, "protocol error: {why}"),
        }
    }
}

/// Asks a daemon for its stats page and reads it.
pub fn fetch(target: &Target, limits: FetchLimits) -> Result<Page, FetchError> {
    let page = fetch_page(target, limits)?;
    parse_page(&page).map_err(|why| match why {
        PageError::Truncated => FetchError::Truncated("sending its stats page"),
        why => FetchError::Protocol(format!("{target}: {why}")),
    })
}

/// The raw reply to `GET /`, bounded by `limits`.
pub fn fetch_page(target: &Target, limits: FetchLimits) -> Result<Vec<u8>, FetchError> {
    let mut stream =
        connect_tcp(&target.host, target.port, limits.connect).map_err(FetchError::Connect)?;
    let deadline = Instant::now() + limits.io;
    let io = |e: std::io::Error| FetchError::Io(format!("{target}: {}", crate::sys::strerror(&e)));
    stream.set_write_timeout(Some(limits.io)).map_err(io)?;
    // Any request will do; this one also suits an HTTP proxy or a person.
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                FetchError::Timeout("sending the stats request")
            }
            _ => io(e),
        })?;
    let mut page = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FetchError::Timeout("reading the stats page"));
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(page),
            Ok(n) => {
                if page.len() + n > limits.max_bytes {
                    return Err(FetchError::Protocol(format!(
                        "{target}: stats page longer than {} bytes",
                        limits.max_bytes
                    )));
                }
                page.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(FetchError::Timeout("reading the stats page"))
            }
            // A reset after a complete page (the daemon closed without
            // reading all we sent) loses nothing.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !page.is_empty() => {
                return Ok(page)
            }
            Err(e) => return Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_fields_come_back_whole() {
        for name in [
            &b"hello.c"[..],
            b"a b.c",
            b"100%.c",
            b"%41",
            b"new\nline",
            b"\xff\xfe",
            b"caf\xc3\xa9.c",
        ] {
            assert_eq!(
                unescape_job_field(escape_job_field(name).as_bytes()),
                name,
                "{name:?}"
            );
        }
        assert_eq!(unescape_job_field(b"50%"), b"50%");
        assert_eq!(unescape_job_field(b"%4"), b"%4");
        assert_eq!(unescape_job_field(b"%zz"), b"%zz");
    }
}
