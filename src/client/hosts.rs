//! The host list (DISTCC_HOSTS and the hosts files): where it comes from and its grammar.
//!
//! The grammar is distcc 3.4's (`src/hosts.c`, section 2.3 of the
//! compatibility notes), and every list 3.4 reads the same way parses to
//! the same hosts, limits, ports and protocols here. Where 3.4 silently
//! ignores the rest of a token (`,lzofoo`, `c/8x`, `localhost/2,lzo`) this
//! parser stops with an error naming the token and the column instead:
//! ignoring it can silently change meaning (in `,lzofoo,cpp` 3.4 drops the
//! `cpp`), and a list that does not parse only makes the client compile
//! locally with a clear message, never send a job somewhere unexpected.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::proto::DEFAULT_PORT;

/// Where distcc's system-wide configuration lives (`/etc/distcc/hosts`).
pub const SYSCONFDIR: &str = "/etc";
/// The largest hosts file read (`src/loadfile.c`).
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Slots of a TCP or SSH host without a `/LIMIT`.
pub const DEFAULT_LIMIT: u32 = 4;
/// Slots of the `localhost` entry without a `/LIMIT`.
pub const DEFAULT_LOCALHOST_LIMIT: u32 = 2;
/// Local slots for jobs that must run locally, unless `--localslots` says otherwise.
pub const DEFAULT_LOCAL_SLOTS: u32 = 4;
/// Local preprocessing slots, unless `--localslots_cpp` says otherwise.
pub const DEFAULT_LOCAL_SLOTS_CPP: u32 = 8;

/// How a host is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Compile on this machine, without a daemon.
    Local,
    /// A distccd listening on TCP.
    Tcp { port: u16 },
    /// distccd run over ssh; `user` and `command` are `None` when not given.
    Ssh {
        user: Option<String>,
        command: Option<String>,
    },
}

/// One host of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The token exactly as written, for `--show-hosts` and log lines.
    pub hostdef: String,
    /// The host name as written (without brackets for IPv6), never resolved here.
    pub hostname: String,
    /// How the host is reached.
    pub kind: Kind,
    /// How many jobs may run on it at once (its number of slots).
    pub limit: u32,
    /// `,lzo`: compress the request and the reply.
    pub lzo: bool,
    /// `,cpp`: pump mode (the server preprocesses), protocol 3.
    pub pump: bool,
    /// `,sysheaders` (distcc-rs only, with `,cpp,lzo`): pump mode sends
    /// the client's system headers too, by hash (`src/sysheaders.rs`).
    pub sysheaders: bool,
    /// `,down`: never use this host.
    pub down: bool,
    /// `,key=PATH` (distcc-rs only, TCP hosts): the file with the server's
    /// public key; the job goes over the encrypted channel (docs/trust.md).
    pub key: Option<String>,
}

impl Host {
    /// The protocol version spoken to the host: 1 plain, 2 with `,lzo`, 3 with `,cpp`.
    pub fn protocol(&self) -> u32 {
        if self.pump {
            3
        } else if self.lzo {
            2
        } else {
            1
        }
    }

    /// The host's part of its lock and backoff file names, as 3.4 builds
    /// them: `localhost`, `tcp_<hostname>_<port>` or `ssh_<hostname>`.
    pub fn lock_name(&self) -> String {
        match &self.kind {
            Kind::Local => "localhost".to_string(),
            Kind::Tcp { port } => format!("tcp_{}_{port}", self.hostname),
            Kind::Ssh { .. } => format!("ssh_{}", self.hostname),
        }
    }
}

/// A parsed host list with its `--` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostList {
    /// The hosts in the order written (or shuffled, see `randomize`).
    pub hosts: Vec<Host>,
    /// `--randomize` was given.
    pub randomize: bool,
    /// `--localslots`: slots for jobs that must run locally.
    pub local_slots: u32,
    /// `--localslots_cpp`: slots for local preprocessing.
    pub local_slots_cpp: u32,
}

impl HostList {
    /// The sum of the hosts' limits, which `distcc -j` prints.
    pub fn total_limit(&self) -> u32 {
        self.hosts
            .iter()
            .fold(0u32, |n, h| n.saturating_add(h.limit))
    }
}

/// Why a host list could not be used, with the token and character at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError {
    /// Where the list came from: `$DISTCC_HOSTS` or a file name, as 3.4 names it.
    pub origin: String,
    /// The token at fault, verbatim; `None` when the whole list is at fault.
    pub token: Option<String>,
    /// 1-based column of the offending character within the token.
    pub column: usize,
    /// Byte offset of the offending character within the whole list.
    pub offset: usize,
    /// 1-based line of the offending character within the list.
    pub line: usize,
    /// 1-based column of the offending character within that line.
    pub line_column: usize,
    /// What is wrong, e.g. `junk "x0" after port`.
    pub problem: String,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(token) = &self.token else {
            // The whole list is at fault: 3.4's "SOURCE contained no hosts".
            return write!(f, "{} {}", self.origin, self.problem);
        };
        let what = if token.starts_with(['-', '+']) {
            "entry"
        } else {
            "host"
        };
        write!(
            f,
            "{}: bad {what} \"{token}\": {} at column {}",
            self.origin, self.problem, self.column
        )?;
        if self.line != 1 || self.line_column != self.column {
            write!(
                f,
                " (line {}, column {} of the list)",
                self.line, self.line_column
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for HostError {}

/// A problem at a byte position within one token.
type TokenError = (usize, String);

/// Parses a host list read from `DISTCC_HOSTS`. The hosts stay in the order
/// written, even with `--randomize` (see `randomize`).
pub fn parse(text: &str) -> Result<HostList, HostError> {
    parse_from(text, "$DISTCC_HOSTS")
}

/// Parses a host list; `origin` (a variable or file name) starts error messages.
pub fn parse_from(text: &str, origin: &str) -> Result<HostList, HostError> {
    let mut list = HostList {
        hosts: Vec::new(),
        randomize: false,
        local_slots: DEFAULT_LOCAL_SLOTS,
        local_slots_cpp: DEFAULT_LOCAL_SLOTS_CPP,
    };
    let error = |token: Option<&str>, offset: usize, column: usize, problem: String| {
        let before = &text[..offset];
        let line_start = before.rfind(['\n', '\r']).map_or(0, |i| i + 1);
        HostError {
            origin: origin.to_string(),
            token: token.map(str::to_string),
            column,
            offset,
            line: 1 + before.matches(['\n', '\r']).count(),
            line_column: 1 + before[line_start..].chars().count(),
            problem,
        }
    };
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(is_space);
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('#') {
            rest = rest.find(['\n', '\r']).map_or("", |end| &rest[end..]);
            continue;
        }
        let len = rest
            .find(|c: char| is_space(c) || c == '#')
            .unwrap_or(rest.len());
        let (token, after) = rest.split_at(len);
        let start = text.len() - rest.len();
        rest = after;
        if let Err((pos, problem)) = parse_token(token, &mut list) {
            let column = 1 + token[..pos].chars().count();
            return Err(error(Some(token), start + pos, column, problem));
        }
    }
    if list.hosts.is_empty() {
        return Err(error(
            None,
            text.len(),
            0,
            "contained no hosts; can't distribute work".to_string(),
        ));
    }
    Ok(list)
}

/// C's `isspace`: Rust's ASCII whitespace lacks the vertical tab. Unlike
/// 3.4, which skips `\v` between tokens but keeps it inside one, any of
/// them ends a token.
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\x0b'
}

/// Parses one token: a `--` option, `+zeroconf` or a host.
fn parse_token(token: &str, list: &mut HostList) -> Result<(), TokenError> {
    if token.starts_with("--") {
        return parse_list_option(token, list);
    }
    if token == "+zeroconf" {
        return Err((
            0,
            "zeroconf is not supported (distcc-rs has no Avahi browser): list the hosts instead"
                .to_string(),
        ));
    }
    let host = if token == "localhost" || token.starts_with("localhost/") {
        parse_localhost(token)?
    } else if token.contains('@') {
        parse_ssh(token)?
    } else {
        parse_tcp(token)?
    };
    list.hosts.push(host);
    Ok(())
}

/// `--randomize`, `--localslots[=N]`, `--localslots_cpp[=N]` (`/N` too).
fn parse_list_option(token: &str, list: &mut HostList) -> Result<(), TokenError> {
    if token == "--randomize" {
        list.randomize = true;
        return Ok(());
    }
    let (name, slots) = if let Some(rest) = token.strip_prefix("--localslots_cpp") {
        (rest, &mut list.local_slots_cpp)
    } else if let Some(rest) = token.strip_prefix("--localslots") {
        (rest, &mut list.local_slots)
    } else {
        return Err((0, format!("unknown option \"{token}\"")));
    };
    let start = token.len() - name.len();
    match name.as_bytes().first() {
        None => Ok(()),
        Some(b'=' | b'/') => {
            let (n, end) = parse_limit(token, start)?;
            expect_end(token, end, "number")?;
            *slots = n;
            Ok(())
        }
        Some(_) => Err((0, format!("unknown option \"{token}\""))),
    }
}

/// `localhost` or `localhost/LIMIT`.
fn parse_localhost(token: &str) -> Result<Host, TokenError> {
    let mut limit = DEFAULT_LOCALHOST_LIMIT;
    let mut pos = "localhost".len();
    if pos < token.len() {
        (limit, pos) = parse_limit(token, pos)?;
        expect_end(token, pos, "limit")?;
    }
    Ok(Host {
        hostdef: token.to_string(),
        hostname: "localhost".to_string(),
        kind: Kind::Local,
        limit,
        lzo: false,
        pump: false,
        sysheaders: false,
        down: false,
        key: None,
    })
}

/// `[USER]@HOSTNAME[/LIMIT][:COMMAND]OPTIONS`.
fn parse_ssh(token: &str) -> Result<Host, TokenError> {
    let at = token.find('@').unwrap_or(0);
    let user = &token[..at];
    let (hostname, mut pos) = hostname_at(token, at + 1)?;
    if let Some(second) = hostname.find('@') {
        return Err((at + 1 + second, "a second \"@\" in an ssh host".to_string()));
    }
    let mut limit = DEFAULT_LIMIT;
    let mut after = "hostname";
    if token[pos..].starts_with('/') {
        (limit, pos) = parse_limit(token, pos)?;
        after = "limit";
    }
    let mut command = None;
    if token[pos..].starts_with(':') {
        let end = token[pos + 1..]
            .find(',')
            .map_or(token.len(), |i| pos + 1 + i);
        command = Some(&token[pos + 1..end]).filter(|c| !c.is_empty());
        pos = end;
        after = "command";
    }
    let mut host = Host {
        hostdef: token.to_string(),
        hostname: hostname.to_string(),
        kind: Kind::Ssh {
            user: Some(user).filter(|u| !u.is_empty()).map(str::to_string),
            command: command.map(str::to_string),
        },
        limit,
        lzo: false,
        pump: false,
        sysheaders: false,
        down: false,
        key: None,
    };
    parse_options(token, pos, after, &mut host)?;
    Ok(host)
}

/// `HOSTID[/LIMIT][:PORT][/LIMIT]OPTIONS`, HOSTID a name or `[IPv6]`.
fn parse_tcp(token: &str) -> Result<Host, TokenError> {
    let (hostname, mut pos) = if let Some(inner) = token.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return Err((
                token.len(),
                "IPv6 Hostname requires closing ']'".to_string(),
            ));
        };
        if close == 0 {
            return Err((1, hostname_required(token)));
        }
        (&inner[..close], close + 2)
    } else {
        hostname_at(token, 0)?
    };
    let mut limit = None;
    let mut after = if token.starts_with('[') {
        "IPv6 address"
    } else {
        "hostname"
    };
    if token[pos..].starts_with('/') {
        let (n, end) = parse_limit(token, pos)?;
        (limit, pos, after) = (Some(n), end, "limit");
    }
    let mut port = DEFAULT_PORT;
    if token[pos..].starts_with(':') {
        (port, pos) = parse_port(token, pos + 1)?;
        after = "port";
        if token[pos..].starts_with('/') {
            if limit.is_some() {
                return Err((pos, "a second limit".to_string()));
            }
            let (n, end) = parse_limit(token, pos)?;
            (limit, pos, after) = (Some(n), end, "limit");
        }
    }
    let mut host = Host {
        hostdef: token.to_string(),
        hostname: hostname.to_string(),
        kind: Kind::Tcp { port },
        limit: limit.unwrap_or(DEFAULT_LIMIT),
        lzo: false,
        pump: false,
        sysheaders: false,
        down: false,
        key: None,
    };
    parse_options(token, pos, after, &mut host)?;
    Ok(host)
}

/// 3.4's words for a host entry without a host name.
fn hostname_required(token: &str) -> String {
    let kind = if token.contains('@') { "SSH" } else { "tcp" };
    format!("hostname is required in {kind} host specification \"{token}\"")
}

/// The host name starting at `start`, up to `/`, `:` or `,`; it must not be empty.
fn hostname_at(token: &str, start: usize) -> Result<(&str, usize), TokenError> {
    let end = token[start..]
        .find(['/', ':', ','])
        .map_or(token.len(), |i| start + i);
    if end == start {
        return Err((start, hostname_required(token)));
    }
    Ok((&token[start..end], end))
}

/// A multiplier `/LIMIT` or `=LIMIT` at `pos`: decimal digits making a
/// number above zero. Returns the limit and the position after its digits.
fn parse_limit(token: &str, pos: usize) -> Result<(u32, usize), TokenError> {
    let digits_start = pos + 1;
    let digits = token[digits_start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(token.len(), |i| digits_start + i);
    match token[digits_start..digits].parse::<u32>() {
        Ok(n) if n > 0 => Ok((n, digits)),
        _ => {
            let shown = token[pos..]
                .find([':', ','])
                .map_or(&token[pos..], |i| &token[pos..pos + i]);
            Err((
                pos,
                format!(
                    "bad multiplier \"{shown}\" in host specification: the limit must be a \
                     number above 0"
                ),
            ))
        }
    }
}

/// A port number at `start` (just after `:`), 1 to 65535, followed by the
/// end of the token, `/` or `,`.
fn parse_port(token: &str, start: usize) -> Result<(u16, usize), TokenError> {
    let end = token[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(token.len(), |i| start + i);
    let digits = &token[start..end];
    // 3.4's words, then ours.
    let invalid = |pos: usize, why: String| {
        let spec = &token[start..];
        (
            pos,
            format!("invalid tcp port specification in \"{spec}\": {why}"),
        )
    };
    if digits.is_empty() {
        return Err(invalid(
            start,
            "missing port number after \":\"".to_string(),
        ));
    }
    let port = digits
        .parse::<u32>()
        .ok()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| invalid(start, format!("port {digits} out of range 1..65535")))?;
    match token.as_bytes().get(end) {
        None | Some(b'/' | b',') => Ok((port, end)),
        Some(_) => Err(invalid(
            end,
            format!("junk \"{}\" after port", &token[end..]),
        )),
    }
}

/// The `,lzo`, `,cpp`, `,sysheaders`, `,down`, `,key=PATH` and `,auth[=NAME]` options from `pos` to
/// the end of the token. `after` names what came before, for messages.
fn parse_options(
    token: &str,
    mut pos: usize,
    mut after: &str,
    host: &mut Host,
) -> Result<(), TokenError> {
    let options_start = pos;
    while token[pos..].starts_with(',') {
        let start = pos + 1;
        let end = token[start..].find(',').map_or(token.len(), |i| start + i);
        let option = &token[start..end];
        match option {
            "lzo" => host.lzo = true,
            "cpp" => host.pump = true,
            "sysheaders" => host.sysheaders = true,
            "down" => host.down = true,
            _ if option.starts_with("key=") => host.key = Some(key_path(token, start, host)?),
            _ if option == "auth" || option.starts_with("auth=") => log::warn!(
                "ignoring \",{option}\" in host \"{token}\": distcc-rs has no GSS-API \
                 authentication"
            ),
            _ => {
                return Err(
                    match ["lzo", "cpp", "down", "auth", "sysheaders"]
                        .into_iter()
                        .find(|known| option.starts_with(known))
                    {
                        Some(known) => (
                            start + known.len(),
                            format!(
                                "junk \"{}\" after option \"{known}\"",
                                &option[known.len()..]
                            ),
                        ),
                        None => (
                            start,
                            format!(
                                "unrecognized option in host specification: {}: unknown \
                                 option \"{option}\" after \",\"",
                                &token[options_start..]
                            ),
                        ),
                    },
                );
            }
        }
        pos = end;
        after = "option";
    }
    expect_end(token, pos, after)?;
    if host.pump && !host.lzo {
        return Err((
            0,
            "pump mode (',cpp') requires compression (',lzo')".to_string(),
        ));
    }
    if host.sysheaders && !host.pump {
        return Err((
            0,
            "system headers (',sysheaders') require pump mode (',cpp,lzo')".to_string(),
        ));
    }
    Ok(())
}

/// The PATH of `,key=PATH` at `start` (just after its comma): TCP hosts
/// only, since ssh authenticates its own hosts.
fn key_path(token: &str, start: usize, host: &Host) -> Result<String, TokenError> {
    let end = token[start..].find(',').map_or(token.len(), |i| start + i);
    let path = &token[start + "key=".len()..end];
    if !matches!(host.kind, Kind::Tcp { .. }) {
        return Err((
            start,
            "',key=' is for TCP hosts; ssh hosts are authenticated by ssh".to_string(),
        ));
    }
    if path.is_empty() {
        return Err((
            start,
            "',key=' needs the path of the server's public key".into(),
        ));
    }
    Ok(path.to_string())
}

/// Fails unless `pos` is the end of the token.
fn expect_end(token: &str, pos: usize, after: &str) -> Result<(), TokenError> {
    if pos < token.len() {
        return Err((pos, format!("junk \"{}\" after {after}", &token[pos..])));
    }
    Ok(())
}

/// Shuffles the hosts, as `--randomize` asks. The order depends only on
/// the process id (3.4 seeds `rand` with `getpid()` too), so every reading
/// of the list within one client process, retries included, agrees, while
/// parallel clients spread out. Private to [`load_from`], so a list is
/// shuffled once, and `--show-hosts` prints it as loaded.
fn randomize(list: &mut HostList) {
    // splitmix64 of the pid seeds an xorshift64* generator; never zero.
    let mut z = u64::from(std::process::id()).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let mut state = (z ^ (z >> 31)) | 1;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for i in (1..list.hosts.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        list.hosts.swap(i, j);
    }
}

/// Where a host list was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The `DISTCC_HOSTS` environment variable.
    Env,
    /// A hosts file.
    File(PathBuf),
}

/// Why no host list could be had.
#[derive(Debug)]
pub enum LoadError {
    /// No `DISTCC_HOSTS` and no readable hosts file.
    NoHosts,
    /// The list was found but does not parse (or has no hosts).
    Parse(HostError),
    /// A hosts file could be opened but not read, is too big or is not text.
    File { path: PathBuf, error: io::Error },
    /// `DISTCC_HOSTS` is not valid UTF-8.
    NotUnicode,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NoHosts => f.write_str("no hostlist is set; can't distribute work"),
            LoadError::Parse(e) => e.fmt(f),
            LoadError::File { path, error } => write!(f, "{}: {error}", path.display()),
            LoadError::NotUnicode => f.write_str("$DISTCC_HOSTS: not valid UTF-8"),
        }
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    /// The level distcc 3.4 reports this at: a bad host entry is an error,
    /// a missing or empty list a warning.
    pub fn level(&self) -> log::Level {
        match self {
            LoadError::Parse(HostError { token: Some(_), .. }) => log::Level::Error,
            _ => log::Level::Warn,
        }
    }
}

/// Reads the host list as 3.4 does: `$DISTCC_HOSTS` if set at all, else
/// `$DISTCC_DIR/hosts`, else `/etc/distcc/hosts`; shuffled if it says
/// `--randomize`.
pub fn load() -> Result<(HostList, Source), LoadError> {
    let env = match std::env::var_os("DISTCC_HOSTS") {
        Some(value) => Some(value.into_string().map_err(|_| LoadError::NotUnicode)?),
        None => None,
    };
    let mut files = Vec::new();
    match crate::env::distcc_dir() {
        Ok(dir) => files.push(dir.join("hosts")),
        Err(e) => log::debug!("not reading $DISTCC_DIR/hosts: {e}"),
    }
    files.push(Path::new(SYSCONFDIR).join("distcc/hosts"));
    load_from(env.as_deref(), &files)
}

/// The core of [`load`]: `env_value` is `DISTCC_HOSTS` (`None` if unset),
/// then the first of `files` that can be opened is read. A file that cannot
/// be opened is passed over, as 3.4 passes over one it may not read.
pub fn load_from(
    env_value: Option<&str>,
    files: &[PathBuf],
) -> Result<(HostList, Source), LoadError> {
    let (mut list, source) = match env_value {
        Some(text) => (parse(text).map_err(LoadError::Parse)?, Source::Env),
        None => {
            let (path, text) = files
                .iter()
                .find_map(|path| read_hosts_file(path).transpose())
                .transpose()?
                .ok_or(LoadError::NoHosts)?;
            let origin = path.display().to_string();
            let list = parse_from(&text, &origin).map_err(LoadError::Parse)?;
            (list, Source::File(path))
        }
    };
    if list.randomize {
        randomize(&mut list);
    }
    Ok((list, source))
}

/// A hosts file's text, or `None` if it cannot be opened.
fn read_hosts_file(path: &Path) -> Result<Option<(PathBuf, String)>, LoadError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => {
            log::debug!("not reading {}: {e}", path.display());
            return Ok(None);
        }
    };
    let fail = |error| LoadError::File {
        path: path.to_path_buf(),
        error,
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidData,
            "larger than 1 MiB",
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        fail(io::Error::new(
            io::ErrorKind::InvalidData,
            "not valid UTF-8",
        ))
    })?;
    Ok(Some((path.to_path_buf(), text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(hostdef: &str, hostname: &str, port: u16, limit: u32) -> Host {
        Host {
            hostdef: hostdef.to_string(),
            hostname: hostname.to_string(),
            kind: Kind::Tcp { port },
            limit,
            lzo: false,
            pump: false,
            sysheaders: false,
            down: false,
            key: None,
        }
    }

    fn ssh(hostdef: &str, user: Option<&str>, hostname: &str, command: Option<&str>) -> Host {
        Host {
            kind: Kind::Ssh {
                user: user.map(str::to_string),
                command: command.map(str::to_string),
            },
            ..tcp(hostdef, hostname, 0, DEFAULT_LIMIT)
        }
    }

    fn one(text: &str) -> Host {
        let list = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(list.hosts.len(), 1, "{text:?}");
        list.hosts.into_iter().next().unwrap()
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(list) => panic!("{text:?} parsed: {list:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_observed_list_parses_to_36_slots() {
        let list = parse(
            "localhost a b:4000 c/8 d/2:4001 @e user@f/3:/opt/distccd,lzo \
             [::1]:3700/5,lzo,cpp g,lzo",
        )
        .unwrap();
        let local = Host {
            kind: Kind::Local,
            ..tcp("localhost", "localhost", 0, 2)
        };
        let f = Host {
            limit: 3,
            lzo: true,
            ..ssh(
                "user@f/3:/opt/distccd,lzo",
                Some("user"),
                "f",
                Some("/opt/distccd"),
            )
        };
        let v6 = Host {
            lzo: true,
            pump: true,
            ..tcp("[::1]:3700/5,lzo,cpp", "::1", 3700, 5)
        };
        let g = Host {
            lzo: true,
            ..tcp("g,lzo", "g", 3632, 4)
        };
        assert_eq!(
            list.hosts,
            vec![
                local,
                tcp("a", "a", 3632, 4),
                tcp("b:4000", "b", 4000, 4),
                tcp("c/8", "c", 3632, 8),
                tcp("d/2:4001", "d", 4001, 2),
                ssh("@e", None, "e", None),
                f,
                v6,
                g,
            ]
        );
        assert_eq!(list.total_limit(), 36);
        assert!(!list.randomize);
        assert_eq!((list.local_slots, list.local_slots_cpp), (4, 8));
        let protocols: Vec<u32> = list.hosts.iter().map(Host::protocol).collect();
        assert_eq!(protocols, [1, 1, 1, 1, 1, 1, 2, 3, 2]);
    }

    #[test]
    fn lock_names_are_the_ones_3_4_writes() {
        let names: Vec<String> = parse("localhost 127.0.0.1:36321 [::1]:3700 bob@big/16 @e")
            .unwrap()
            .hosts
            .iter()
            .map(Host::lock_name)
            .collect();
        assert_eq!(
            names,
            [
                "localhost",
                "tcp_127.0.0.1_36321",
                "tcp_::1_3700",
                "ssh_big",
                "ssh_e"
            ]
        );
    }

    #[test]
    fn key_combines_with_limit_port_and_options_on_tcp_hosts_only() {
        let host = one("h/3:4000,lzo,key=/k/h.pub,cpp");
        assert_eq!(host.key.as_deref(), Some("/k/h.pub"));
        assert_eq!(
            (host.limit, host.kind.clone()),
            (3, Kind::Tcp { port: 4000 })
        );
        assert!(host.lzo && host.pump);
        assert_eq!(one("h,key=a.pub").key.as_deref(), Some("a.pub"));
        assert_eq!(one("h").key, None);
        for bad in ["@h,key=a.pub", "u@h:/bin/distccd,key=a.pub", "h,key="] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_form_of_section_2_3() {
        assert_eq!(one("localhost/3").limit, 3);
        assert_eq!(one("localhost/3").kind, Kind::Local);
        // Only exactly "localhost" or "localhost/" is the local host.
        assert_eq!(
            one("localhost:3632"),
            tcp("localhost:3632", "localhost", 3632, 4)
        );
        assert_eq!(
            one("localhost=3"),
            tcp("localhost=3", "localhost=3", 3632, 4)
        );
        assert_eq!(one("b:4000/4"), tcp("b:4000/4", "b", 4000, 4));
        assert_eq!(one("[::1]"), tcp("[::1]", "::1", 3632, 4));
        assert_eq!(one("[fe80::1]/7"), tcp("[fe80::1]/7", "fe80::1", 3632, 7));
        assert!(one("h,down").down);
        assert!(one("h,lzo,down").lzo);
        assert!(one("h,cpp,lzo").pump);
        assert!(!one("h,cpp,lzo").sysheaders);
        let sys = one("10.0.0.3/8,cpp,lzo,sysheaders");
        assert!(sys.pump && sys.lzo && sys.sysheaders);
        assert_eq!(sys.protocol(), 3);
        assert!(one("h,sysheaders,lzo,cpp").sysheaders);
        assert_eq!(
            one("@big/16:/opt/bin/distccd,lzo").kind,
            Kind::Ssh {
                user: None,
                command: Some("/opt/bin/distccd".to_string())
            }
        );
        assert_eq!(one("me@big:").kind, ssh("", Some("me"), "big", None).kind);
        assert_eq!(one("me@big/2").limit, 2);
        assert!(one("@big,lzo,cpp").pump);
        // auth is accepted (with a warning) and changes nothing else.
        assert_eq!(one("h,auth"), tcp("h,auth", "h", 3632, 4));
        assert_eq!(one("h,auth=princ,lzo").protocol(), 2);
    }

    #[test]
    fn list_options() {
        let list = parse("--randomize --localslots=6 --localslots_cpp/12 a").unwrap();
        assert!(list.randomize);
        assert_eq!((list.local_slots, list.local_slots_cpp), (6, 12));
        let list = parse("--localslots/2 --localslots --localslots_cpp a").unwrap();
        assert_eq!((list.local_slots, list.local_slots_cpp), (2, 8));
    }

    #[test]
    fn comments_run_to_the_end_of_the_line() {
        let list = parse("g,lzo#note h\n# all of this\ti\rj # k\n\x0bl").unwrap();
        let names: Vec<&str> = list.hosts.iter().map(|h| h.hostdef.as_str()).collect();
        assert_eq!(names, ["g,lzo", "j", "l"]);
    }

    /// Bad ports, and where in the list the entry stands.
    const PORT_ERRORS: &[(&str, &str)] = &[
        (
            "b:40x0",
            "$DISTCC_HOSTS: bad host \"b:40x0\": invalid tcp port specification in \"40x0\": \
             junk \"x0\" after port at column 5",
        ),
        (
            "a b:40x0",
            "$DISTCC_HOSTS: bad host \"b:40x0\": invalid tcp port specification in \"40x0\": \
             junk \"x0\" after port at column 5 (line 1, column 7 of the list)",
        ),
        (
            "b:",
            "$DISTCC_HOSTS: bad host \"b:\": invalid tcp port specification in \"\": missing \
             port number after \":\" at column 3",
        ),
        (
            "b:0",
            "$DISTCC_HOSTS: bad host \"b:0\": invalid tcp port specification in \"0\": port 0 \
             out of range 1..65535 at column 3",
        ),
        (
            "b:65536",
            "$DISTCC_HOSTS: bad host \"b:65536\": invalid tcp port specification in \"65536\": \
             port 65536 out of range 1..65535 at column 3",
        ),
        (
            "b:-1",
            "$DISTCC_HOSTS: bad host \"b:-1\": invalid tcp port specification in \"-1\": \
             missing port number after \":\" at column 3",
        ),
    ];

    /// Bad limits (`/N`).
    const LIMIT_ERRORS: &[(&str, &str)] = &[
        (
            "a\n  c/0",
            "$DISTCC_HOSTS: bad host \"c/0\": bad multiplier \"/0\" in host specification: the \
             limit must be a number above 0 at column 2 (line 2, column 4 of the list)",
        ),
        (
            "c/x:4000",
            "$DISTCC_HOSTS: bad host \"c/x:4000\": bad multiplier \"/x\" in host specification: the \
             limit must be a number above 0 at column 2",
        ),
        (
            "localhost/",
            "$DISTCC_HOSTS: bad host \"localhost/\": bad multiplier \"/\" in host specification: the \
             limit must be a number above 0 at column 10",
        ),
        (
            "b/2:4000/3",
            "$DISTCC_HOSTS: bad host \"b/2:4000/3\": a second limit at column 9",
        ),
        (
            "c/8x",
            "$DISTCC_HOSTS: bad host \"c/8x\": junk \"x\" after limit at column 4",
        ),
        (
            "localhost/2,lzo",
            "$DISTCC_HOSTS: bad host \"localhost/2,lzo\": junk \",lzo\" after limit at \
             column 12",
        ),
        (
            "@e/3x:cmd",
            "$DISTCC_HOSTS: bad host \"@e/3x:cmd\": junk \"x:cmd\" after limit at column 5",
        ),
    ];

    /// Missing host names, IPv6 brackets and ssh users.
    const NAME_ERRORS: &[(&str, &str)] = &[
        (
            ":4000",
            "$DISTCC_HOSTS: bad host \":4000\": hostname is required in tcp host \
             specification \":4000\" at column 1",
        ),
        (
            "/4",
            "$DISTCC_HOSTS: bad host \"/4\": hostname is required in tcp host specification \
             \"/4\" at column 1",
        ),
        (
            "[]:4000",
            "$DISTCC_HOSTS: bad host \"[]:4000\": hostname is required in tcp host \
             specification \"[]:4000\" at column 2",
        ),
        (
            "me@",
            "$DISTCC_HOSTS: bad host \"me@\": hostname is required in SSH host specification \
             \"me@\" at column 4",
        ),
        (
            "@/3",
            "$DISTCC_HOSTS: bad host \"@/3\": hostname is required in SSH host specification \
             \"@/3\" at column 2",
        ),
        (
            "[::1:4000",
            "$DISTCC_HOSTS: bad host \"[::1:4000\": IPv6 Hostname requires closing ']' at \
             column 10",
        ),
        (
            "[::1]x",
            "$DISTCC_HOSTS: bad host \"[::1]x\": junk \"x\" after IPv6 address at column 6",
        ),
        (
            "a@b@c",
            "$DISTCC_HOSTS: bad host \"a@b@c\": a second \"@\" in an ssh host at column 4",
        ),
    ];

    /// Bad host options (`,lzo`, `,cpp`).
    const OPTION_ERRORS: &[(&str, &str)] = &[
        (
            "g,foo",
            "$DISTCC_HOSTS: bad host \"g,foo\": unrecognized option in host specification: ,foo: \
             unknown option \"foo\" after \",\" at column 3",
        ),
        (
            "g,lzo,",
            "$DISTCC_HOSTS: bad host \"g,lzo,\": unrecognized option in host specification: \
             ,lzo,: unknown option \"\" after \",\" at column 7",
        ),
        (
            "g,lzofoo,cpp",
            "$DISTCC_HOSTS: bad host \"g,lzofoo,cpp\": junk \"foo\" after option \"lzo\" at \
             column 6",
        ),
        (
            "g,cpp",
            "$DISTCC_HOSTS: bad host \"g,cpp\": pump mode (',cpp') requires compression \
             (',lzo') at column 1",
        ),
        (
            "g,lzo,sysheaders",
            "$DISTCC_HOSTS: bad host \"g,lzo,sysheaders\": system headers (',sysheaders') \
             require pump mode (',cpp,lzo') at column 1",
        ),
        (
            "g,cpp,lzo,sysheadersx",
            "$DISTCC_HOSTS: bad host \"g,cpp,lzo,sysheadersx\": junk \"x\" after option \
             \"sysheaders\" at column 21",
        ),
    ];

    /// Bad list options and entries, and lists without hosts.
    const LIST_ERRORS: &[(&str, &str)] = &[
        (
            "--randomise a",
            "$DISTCC_HOSTS: bad entry \"--randomise\": unknown option \"--randomise\" at \
             column 1",
        ),
        (
            "--localslots=0 a",
            "$DISTCC_HOSTS: bad entry \"--localslots=0\": bad multiplier \"=0\" in host \
             specification: the limit must be a number above 0 at column 13",
        ),
        (
            "--localslots_cpp=3x a",
            "$DISTCC_HOSTS: bad entry \"--localslots_cpp=3x\": junk \"x\" after number at \
             column 19",
        ),
        (
            "a +zeroconf",
            "$DISTCC_HOSTS: bad entry \"+zeroconf\": zeroconf is not supported (distcc-rs \
             has no Avahi browser): list the hosts instead at column 1 (line 1, column 3 \
             of the list)",
        ),
        (
            "",
            "$DISTCC_HOSTS contained no hosts; can't distribute work",
        ),
        (
            " # only a comment\n--randomize",
            "$DISTCC_HOSTS contained no hosts; can't distribute work",
        ),
    ];

    #[test]
    fn errors_name_the_token_and_column() {
        for cases in [
            PORT_ERRORS,
            LIMIT_ERRORS,
            NAME_ERRORS,
            OPTION_ERRORS,
            LIST_ERRORS,
        ] {
            for (text, want) in cases {
                assert_eq!(error(text), *want, "{text:?}");
            }
        }
    }

    #[test]
    fn error_positions_are_exact() {
        let e = parse("a\n\nbb  c:9x").unwrap_err();
        assert_eq!(e.token.as_deref(), Some("c:9x"));
        assert_eq!((e.column, e.offset, e.line, e.line_column), (4, 10, 3, 8));
        assert_eq!(&"a\n\nbb  c:9x"[e.offset..], "x");
    }

    #[test]
    fn randomize_keeps_every_host_and_is_stable_within_a_process() {
        let text: String = (0..20).map(|i| format!("h{i} ")).collect();
        let written = parse(&text).unwrap();
        let mut a = written.clone();
        let mut b = written.clone();
        randomize(&mut a);
        randomize(&mut b);
        assert_eq!(a, b);
        assert_ne!(a.hosts, written.hosts, "20 hosts should not stay in order");
        let mut sorted = a.hosts.clone();
        sorted.sort_by_key(|h| h.hostname[1..].parse::<u32>().unwrap());
        assert_eq!(sorted, written.hosts);
    }

    #[test]
    fn sources_are_tried_in_order() {
        let tmp = crate::testing::TestDir::new("hosts");
        let user = tmp.path().join("user/hosts");
        let system = tmp.path().join("system/hosts");
        let files = [user.clone(), system.clone()];

        let err = load_from(None, &files).unwrap_err();
        assert_eq!(err.to_string(), "no hostlist is set; can't distribute work");
        assert!(matches!(err, LoadError::NoHosts));

        std::fs::create_dir(tmp.path().join("system")).unwrap();
        std::fs::write(&system, "sys1\nsys2 # comment\n").unwrap();
        let (list, source) = load_from(None, &files).unwrap();
        assert_eq!(source, Source::File(system.clone()));
        assert_eq!(list.hosts.len(), 2);

        std::fs::create_dir(tmp.path().join("user")).unwrap();
        std::fs::write(&user, "# nothing here\n").unwrap();
        let err = load_from(None, &files).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} contained no hosts; can't distribute work",
                user.display()
            )
        );

        std::fs::write(&user, "u1\nu2:x\n").unwrap();
        let err = load_from(None, &files).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: bad host \"u2:x\": invalid tcp port specification in \"x\": missing port \
                 number after \":\" at column 4 (line 2, column 4 of the list)",
                user.display()
            )
        );

        std::fs::write(&user, "u1").unwrap();
        let (list, source) = load_from(None, &files).unwrap();
        assert_eq!(
            (list.hosts[0].hostname.as_str(), source),
            ("u1", Source::File(user.clone()))
        );

        // DISTCC_HOSTS set at all wins, even when empty.
        let (list, source) = load_from(Some("e1"), &files).unwrap();
        assert_eq!(
            (list.hosts[0].hostname.as_str(), source),
            ("e1", Source::Env)
        );
        let err = load_from(Some(""), &files).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$DISTCC_HOSTS contained no hosts; can't distribute work"
        );

        // A file over 1 MiB is refused rather than half read.
        std::fs::write(&user, vec![b' '; MAX_FILE_SIZE as usize + 1]).unwrap();
        let err = load_from(None, &files).unwrap_err().to_string();
        assert_eq!(err, format!("{}: larger than 1 MiB", user.display()));
    }

    #[test]
    fn randomize_is_applied_on_load() {
        let text: String = (0..20).map(|i| format!("h{i} ")).collect();
        let (list, _) = load_from(Some(&format!("--randomize {text}")), &[]).unwrap();
        let mut want = parse(&text).unwrap();
        want.randomize = true;
        randomize(&mut want);
        assert_eq!(list, want);
    }
}
