//! `mon --daemon HOST[:PORT]`: the jobs a distcc-rs daemon is compiling now, read from the `<distccjobs>` part of its `--stats` page.
//!
//! The page is distccd's (section 8) plus our own section of
//! `dcc_job CLIENT COMPILER INPUT MSECS` lines, one per running job, whose
//! fields are escaped as `stats_page` says. A Debian distccd has no
//! such section; that is reported as such rather than shown as an idle
//! daemon. Reading is bounded in size and time.

use crate::stats_page::unescape_job_field;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::exitcode::ExitCode;
use crate::net::{connect_tcp, ConnectError};
use crate::proto::DEFAULT_STATS_PORT;

/// The most a stats page may be: distccd's is about 1 KiB, plus a line per job.
const MAX_PAGE: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(crate::env::DEFAULT_CONNECT_SECS);
/// The whole exchange after connecting, request and reply.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon to ask: `HOST`, `HOST:PORT`, `[V6ADDR]:PORT`, or a bare IPv6 address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn parse(spec: &str) -> Result<Target, String> {
        let bad_port = |p: &str| format!("--daemon: bad port '{p}' in '{spec}'");
        let port_of = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad_port(p)),
            Ok(n) => Ok(n),
        };
        let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("--daemon: no ']' in '{spec}'"))?;
            match after {
                "" => (host, DEFAULT_STATS_PORT),
                _ => match after.strip_prefix(':') {
                    Some(p) => (host, port_of(p)?),
                    None => return Err(format!("--daemon: bad address '{spec}'")),
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
            return Err(format!("--daemon: no host in '{spec}'"));
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

/// One running job on the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The client's address and port, as the daemon saw it.
    pub client: Vec<u8>,
    pub compiler: Vec<u8>,
    pub input: Vec<u8>,
    /// Milliseconds since the daemon started reading the request.
    pub msecs: u64,
}

/// What a stats page says about the daemon's jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `dcc_max_kids`: the daemon's job slots.
    pub slots: Option<u64>,
    pub jobs: Vec<Job>,
}

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

/// Asks the daemon for its stats page and reads it.
pub fn fetch(target: &Target) -> Result<Report, FetchError> {
    let page = fetch_page(target)?;
    parse(&page).map_err(|why| match why {
        PageError::Truncated => FetchError::Truncated("sending its stats page"),
        why => FetchError::Protocol(format!("{target}: {why}")),
    })
}

fn fetch_page(target: &Target) -> Result<Vec<u8>, FetchError> {
    let mut stream =
        connect_tcp(&target.host, target.port, CONNECT_TIMEOUT).map_err(FetchError::Connect)?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let io = |e: std::io::Error| FetchError::Io(format!("{target}: {}", crate::sys::strerror(&e)));
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
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
                if page.len() + n > MAX_PAGE {
                    return Err(FetchError::Protocol(format!(
                        "{target}: stats page longer than {MAX_PAGE} bytes"
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

/// Why a reply is not a page of running jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageError {
    /// Nothing at all: a compile port, or a client the `--allow` list refuses.
    Empty,
    /// No `<distccstats>` section.
    NotStats,
    /// distccd statistics without `<distccjobs>`: a distccd 3.4, not distcc-rs.
    NoJobList,
    /// `<distccjobs>` without its end.
    Truncated,
    /// A `dcc_job` line that is not five words ending in a number.
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

/// Reads the parts of a stats page the monitor needs.
pub fn parse(page: &[u8]) -> Result<Report, PageError> {
    if page.is_empty() {
        return Err(PageError::Empty);
    }
    let lines: Vec<&[u8]> = page
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    if !lines.contains(&&b"<distccstats>"[..]) {
        return Err(PageError::NotStats);
    }
    let slots = lines
        .iter()
        .find_map(|l| l.strip_prefix(b"dcc_max_kids "))
        .and_then(|n| std::str::from_utf8(n).ok()?.trim().parse().ok());
    let start = lines
        .iter()
        .position(|l| *l == b"<distccjobs>")
        .ok_or(PageError::NoJobList)?;
    let mut jobs = Vec::new();
    for line in &lines[start + 1..] {
        if *line == b"</distccjobs>" {
            return Ok(Report { slots, jobs });
        }
        if line.is_empty() {
            continue;
        }
        jobs.push(
            parse_job(line)
                .ok_or_else(|| PageError::BadJob(String::from_utf8_lossy(line).into_owned()))?,
        );
    }
    Err(PageError::Truncated)
}

/// `dcc_job CLIENT COMPILER INPUT MSECS`. An unescaped line with more words
/// (from before fields were escaped) takes the extra words as the input's.
fn parse_job(line: &[u8]) -> Option<Job> {
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if words.len() < 5 || words[0] != b"dcc_job" {
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

/// A name for the screen: control characters (a newline in a file name)
/// shown as `%XX` so that every job stays on one line.
fn shown(name: &[u8]) -> Vec<u8> {
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

/// The client's address without its port: `1.2.3.4:5` gives `1.2.3.4`,
/// `[::1]:5` gives `::1`.
fn client_host(client: &[u8]) -> &[u8] {
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

fn put_padded(out: &mut Vec<u8>, text: &[u8], width: usize) {
    out.extend_from_slice(text);
    out.resize(out.len() + width.saturating_sub(text.len()), b' ');
}

/// One poll of a daemon: a header line (`HOST:PORT: N of M slots busy`), a
/// title line and one line per job (milliseconds running, client, compiler,
/// input), by client address in byte order and the longest-running first
/// within one address; with
/// `summary`, a table of jobs per client address; then one empty line.
pub fn render(target: &Target, report: &Report, summary: bool) -> Vec<u8> {
    let mut jobs: Vec<&Job> = report.jobs.iter().collect();
    jobs.sort_by(|a, b| {
        (client_host(&a.client).cmp(client_host(&b.client)))
            .then(b.msecs.cmp(&a.msecs))
            .then(a.client.cmp(&b.client))
    });
    let mut out = Vec::new();
    let busy = jobs.len();
    let header = match report.slots {
        Some(slots) => format!("{target}: {busy} of {slots} slots busy\n"),
        None => format!("{target}: {busy} jobs running\n"),
    };
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(
        format!(
            "{:>8}  {:<23}  {:<16}  INPUT\n",
            "MSECS", "CLIENT", "COMPILER"
        )
        .as_bytes(),
    );
    for job in jobs {
        out.extend_from_slice(format!("{:>8}  ", job.msecs).as_bytes());
        put_padded(&mut out, &shown(&job.client), 23);
        out.extend_from_slice(b"  ");
        put_padded(&mut out, &shown(&job.compiler), 16);
        out.extend_from_slice(b"  ");
        out.extend_from_slice(&shown(&job.input));
        out.push(b'\n');
    }
    if summary {
        let mut clients: std::collections::BTreeMap<&[u8], usize> = Default::default();
        for job in &report.jobs {
            *clients.entry(client_host(&job.client)).or_default() += 1;
        }
        out.extend_from_slice(format!("{:<23}  {:>4}\n", "CLIENT", "JOBS").as_bytes());
        for (client, n) in clients {
            put_padded(&mut out, &shown(client), 23);
            out.extend_from_slice(format!("  {n:>4}\n").as_bytes());
        }
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_a_port_or_the_stats_default() {
        let t = |s: &str| Target::parse(s).map(|t| (t.host, t.port));
        assert_eq!(t("box"), Ok(("box".into(), 3633)));
        assert_eq!(t("box:4000"), Ok(("box".into(), 4000)));
        assert_eq!(t("127.0.0.1:1"), Ok(("127.0.0.1".into(), 1)));
        assert_eq!(t("[::1]:4000"), Ok(("::1".into(), 4000)));
        assert_eq!(t("[::1]"), Ok(("::1".into(), 3633)));
        assert_eq!(t("::1"), Ok(("::1".into(), 3633)));
        for bad in [
            "",
            ":80",
            "box:",
            "box:0",
            "box:70000",
            "box:x",
            "[::1",
            "[::1]x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Target::parse("::1").unwrap().to_string(), "[::1]:3633");
        assert_eq!(Target::parse("box").unwrap().to_string(), "box:3633");
    }

    const PAGE: &str = "HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: close\n\n\
        argv /distccd\n<distccstats>\ndcc_tcp_accept 3\ndcc_max_kids 4\n</distccstats>\n";

    #[test]
    fn pages_with_and_without_jobs() {
        let page = format!(
            "{PAGE}<distccjobs>\ndcc_job 127.0.0.1:40000 gcc hello.c 1500\n\
             dcc_job [::1]:40001 my%20cc a%20b.c 7\n</distccjobs>\n"
        );
        let report = parse(page.as_bytes()).unwrap();
        assert_eq!(report.slots, Some(4));
        assert_eq!(
            report.jobs[1],
            Job {
                client: b"[::1]:40001".to_vec(),
                compiler: b"my cc".to_vec(),
                input: b"a b.c".to_vec(),
                msecs: 7
            }
        );
        let idle = format!("{PAGE}<distccjobs>\n</distccjobs>\n");
        assert_eq!(
            parse(idle.as_bytes()),
            Ok(Report {
                slots: Some(4),
                jobs: vec![]
            })
        );
        assert_eq!(parse(PAGE.as_bytes()), Err(PageError::NoJobList));
        assert_eq!(parse(b""), Err(PageError::Empty));
        assert_eq!(parse(b"SSH-2.0-OpenSSH_9.2\r\n"), Err(PageError::NotStats));
        let cut = format!("{PAGE}<distccjobs>\ndcc_job 1.2.3.4:5 gcc a.c 1\n");
        assert_eq!(parse(cut.as_bytes()), Err(PageError::Truncated));
        let bad = format!("{PAGE}<distccjobs>\ndcc_job 1.2.3.4:5 gcc a.c soon\n</distccjobs>\n");
        assert!(matches!(parse(bad.as_bytes()), Err(PageError::BadJob(_))));
        // Unescaped names with spaces, as an older daemon sent them.
        let old = format!("{PAGE}<distccjobs>\ndcc_job 1.2.3.4:5 gcc a b.c 9\n</distccjobs>\n");
        assert_eq!(parse(old.as_bytes()).unwrap().jobs[0].input, b"a b.c");
    }

    #[test]
    fn a_poll_shows_header_jobs_and_summary() {
        let target = Target::parse("127.0.0.1:3633").unwrap();
        let job = |client: &str, input: &str, msecs| Job {
            client: client.as_bytes().to_vec(),
            compiler: b"gcc".to_vec(),
            input: input.as_bytes().to_vec(),
            msecs,
        };
        let report = Report {
            slots: Some(4),
            jobs: vec![
                job("127.0.0.2:5000", "b.c", 10),
                job("127.0.0.1:4000", "a\nb.c", 20),
                job("127.0.0.1:4001", "c.c", 3000),
                job("[::1]:4002", "d.c", 1),
            ],
        };
        let text = String::from_utf8(render(&target, &report, true)).unwrap();
        let want = "\
127.0.0.1:3633: 4 of 4 slots busy
   MSECS  CLIENT                   COMPILER          INPUT
    3000  127.0.0.1:4001           gcc               c.c
      20  127.0.0.1:4000           gcc               a%0Ab.c
      10  127.0.0.2:5000           gcc               b.c
       1  [::1]:4002               gcc               d.c
CLIENT                   JOBS
127.0.0.1                   2
127.0.0.2                   1
::1                         1

";
        assert_eq!(text, want);
        let idle = Report {
            slots: None,
            jobs: vec![],
        };
        assert_eq!(
            String::from_utf8(render(&target, &idle, false)).unwrap(),
            "127.0.0.1:3633: 0 jobs running\n   MSECS  CLIENT                   COMPILER          INPUT\n\n"
        );
    }
}
