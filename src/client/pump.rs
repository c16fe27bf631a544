//! Pump mode on the client: whether a job on a `,cpp` host goes out as protocol 3, the include server's answer and the files it names, the `.d` file, and the discrepancy counter.
//!
//! This is distcc 3.4's client side of pump mode (`compile.c`,
//! `include_server_if.c`, `clirpc.c`, `dotd.c`; sections 1.4.2, 1.10 and
//! 5.7 of the compatibility notes):
//!
//! * [`plain_reason`]: a job on a pump host still goes plain (preprocessed
//!   here, protocol 2, to the same host) when its source is preprocessed
//!   already, when `CPATH`, `C_INCLUDE_PATH` or `CPLUS_INCLUDE_PATH` is set,
//!   or when the build has had `DISTCC_MAX_DISCREPANCY` discrepancies;
//! * [`ask`]: the include server on the UNIX socket `$INCLUDE_SERVER_PORT`
//!   is sent `CDIR` and the full command line and answers the paths of the
//!   job's files in its mirror tree (or a fixed `INCLUDE_SERVER_STUB`
//!   list); no socket, an I/O error, a timeout or an empty answer sends the
//!   job plain;
//! * [`load`]: each mirror path becomes the file's own name; a symlink is
//!   sent as `LINK` with its target, anything else as `FILE` with the mirror
//!   file's bytes, LZO-compressed already;
//! * [`server_argv`]: the full command (not stripped), with `-MT TARGET`
//!   appended when a `.d` file is wanted and the command names no target;
//!   [`Request::deps`] is where the server's `.d` file is written;
//! * [`note_discrepancy`]: a remote failure that the local retry does not
//!   reproduce is counted, one byte per event, in `discrepancy_counter`
//!   beside the socket; the `pump` wrapper reads its size.
//!
//! Differences from 3.4, each deliberate:
//! * the reasons for a plain job are one line at the verbose level, not
//!   warnings (3.4 warns for a preprocessed source, for `CPATH` and for an
//!   include server that gives up); `INCLUDE_SERVER_PORT` unset and
//!   `INCLUDE_SERVER_STUB` set still warn, as in 3.4;
//! * `-Wp,-MD,FILE` and `-Wp,-MMD,FILE` (the Linux kernel's) go to the
//!   server as driver options that write the same `.d` file; any other
//!   `-Wp,` holding a `-M…` option (kept whole, see `scan.rs`) sends the job
//!   plain: the server would write that `.d` file in its own directory;
//! * a current directory that cannot be read sends the job plain (3.4 sends
//!   a request without `CDIR`);
//! * a `.d` file is wanted for `-MD`, `-MMD` or `DEPENDENCIES_OUTPUT`, not
//!   for any `-M…` word (gcc writes none for a lone `-MP` or `-MF`), and its
//!   default name is the output's with the extension of its last component
//!   replaced, as gcc names it;
//! * every answer is checked before use: at most [`MAX_FILES`] entries of
//!   at most [`MAX_FILE`] bytes, [`MAX_TOTAL`] in all, every one under a
//!   mirror root in the same directory as the first entry's (the include
//!   server keeps a header's copy for a second absolute name in a sibling
//!   root), every name absolute with no `.` or `..` component;
//! * a bad `DISTCC_MAX_DISCREPANCY` is an error for the job's log, and the
//!   job goes plain (3.4 exits).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::scan::{self, Job};
use crate::mirror;
use crate::options::{Role, Token};
use crate::proto;
use crate::sysheaders::{Hash, SystemAnswer};

/// The most entries an include server's answer may hold.
pub const MAX_FILES: usize = 64 * 1024;
/// The largest mirror file sent.
pub const MAX_FILE: u64 = 256 * 1024 * 1024;
/// The most bytes all the files of one job may take together.
pub const MAX_TOTAL: u64 = 1024 * 1024 * 1024;

/// The most bytes of paths an include server's answer may hold.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// The longest `$INCLUDE_SERVER_PORT` (a `sockaddr_un` path, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A job ready to go out as protocol 3.
pub struct Request {
    /// The client's working directory (`CDIR`).
    pub cwd: Vec<u8>,
    /// The command the server runs, see [`server_argv`].
    pub argv: Vec<OsString>,
    /// The job's files, in the include server's order.
    pub files: Vec<Entry>,
    /// Where the server's `.d` file goes, when one is wanted.
    pub deps: Option<PathBuf>,
    /// Made for a `,sysheaders` host: the system headers are among the
    /// files, by hash.
    pub sysheaders: bool,
}

/// The include server's answer.
#[derive(Debug, Default)]
pub struct Answer {
    /// The mirror paths (3.4's `ARGC`/`ARGV`).
    pub paths: Vec<Vec<u8>>,
    /// For a `SYSH` query: the system headers, search dirs and preincludes.
    pub system: Option<SystemAnswer>,
}

/// One file of a protocol 3 request.
pub enum Entry {
    /// A file: its client name and its LZO1X-compressed bytes.
    File { name: Vec<u8>, lzo: Vec<u8> },
    /// A symlink: its client name and its target.
    Link { name: Vec<u8>, target: Vec<u8> },
    /// A system header sent by hash (`,sysheaders`): its client name, the
    /// hash of its bytes, and its mirror file (LZO1X), read only if the
    /// daemon asks for its body.
    Header {
        name: Vec<u8>,
        hash: Hash,
        mirror: PathBuf,
    },
}

impl Request {
    /// The request as proto encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let argv: Vec<&[u8]> = self.argv.iter().map(|a| a.as_bytes()).collect();
        let files: Vec<proto::PumpEntry> = self
            .files
            .iter()
            .map(|entry| match entry {
                Entry::File { name, lzo } => proto::PumpEntry::File { name, lzo },
                Entry::Link { name, target } => proto::PumpEntry::Link { name, target },
                Entry::Header { name, hash, .. } => proto::PumpEntry::Header { name, hash },
            })
            .collect();
        proto::encode_pump_request(&self.cwd, &argv, &files)
    }

    /// How many files go by hash.
    pub fn header_count(&self) -> usize {
        self.headers().count()
    }

    fn headers(&self) -> impl Iterator<Item = (&Hash, &Path)> {
        self.files.iter().filter_map(|entry| match entry {
            Entry::Header { hash, mirror, .. } => Some((hash, mirror.as_path())),
            _ => None,
        })
    }

    /// The `FILE`s for the headers whose flag in `needed` is set (one flag
    /// per header, in order), read from their mirror files now. A mirror
    /// file that is gone or too large fails the job here.
    pub fn needed_bodies(&self, needed: &[bool]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut total = 0u64;
        for ((_, mirror), _) in self.headers().zip(needed).filter(|(_, n)| **n) {
            let shown = mirror.display();
            let meta = std::fs::symlink_metadata(mirror)
                .map_err(|e| format!("{shown}: stat failed: {e}"))?;
            if !meta.is_file() || meta.len() > MAX_FILE || total + meta.len() > MAX_TOTAL {
                return Err(format!("{shown}: not a regular file within the limits"));
            }
            let mut lzo = Vec::with_capacity(meta.len() as usize);
            std::fs::File::open(mirror)
                .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut lzo))
                .map_err(|e| format!("{shown}: read failed: {e}"))?;
            total += lzo.len() as u64;
            proto::put_body(&mut out, &proto::FILE, &lzo);
        }
        Ok(out)
    }
}

/// Why `job` goes plain on a pump host before the include server is asked
/// (3.4's `dcc_perhaps_adjust_cpp_where_and_protover`), if it does.
pub fn plain_reason(job: &Job) -> Option<String> {
    match max_discrepancies() {
        Ok(max) => {
            let count = discrepancies();
            if count >= max {
                return Some(format!(
                    "{count} discrepancies in this build (DISTCC_MAX_DISCREPANCY={max})"
                ));
            }
        }
        Err(why) => {
            log::error!("{why}");
            return Some(why);
        }
    }
    if job.preprocessed {
        return Some(
            "cannot use distcc_pump on already preprocessed file (such as emitted by ccache)"
                .into(),
        );
    }
    if ["CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return Some(
            "cannot use distcc_pump with any of environment variables CPATH, C_INCLUDE_PATH or \
             CPLUS_INCLUDE_PATH set"
                .into(),
        );
    }
    let wp = job
        .argv
        .iter()
        .filter(|a| scan::wp_holds_deps(a.as_bytes()))
        .count();
    let simple = job.argv.iter().any(|a| scan::is_wp_deps(a.as_bytes()));
    if wp > 1 || (wp == 1 && (!simple || driver_deps(job))) {
        return Some("a -Wp, option writes the dependency file".into());
    }
    None
}

/// The command has a driver dependency option of its own (`-MD`, `-MF`, `-MT`...).
fn driver_deps(job: &Job) -> bool {
    job.tokens.iter().any(|t| {
        matches!(t, Token::Known(_, o, _)
            if matches!(o.role, Role::DepsDriver | Role::DepsFile | Role::DepsTarget))
    })
}

/// `-Wp,-MD,FILE` or `-Wp,-MMD,FILE` as driver options that make the same
/// `.d` file: `-MD`/`-MMD -MF FILE -MQ TARGET`. The server cannot run the
/// `-Wp,` form, which writes FILE in its own directory. TARGET is what the
/// preprocessor names by itself: for gcc (whose driver hands `-Wp,` to cc1
/// untouched) the source's basename with its suffix replaced by `.o`; clang's
/// driver turns the form into `-MD -MF FILE` and targets the output.
fn expand_wp_deps(job: &Job, arg: &[u8]) -> Option<[OsString; 5]> {
    if !scan::is_wp_deps(arg) {
        return None;
    }
    let rest = &arg[b"-Wp,".len()..];
    let comma = rest.iter().position(|&c| c == b',')?;
    let target = if scan::is_clang(&job.argv[0]) {
        job.output.clone().into_os_string()
    } else {
        let base = crate::filename::basename(job.input.as_os_str().as_bytes());
        let stem = base
            .iter()
            .rposition(|&c| c == b'.')
            .map_or(base, |dot| &base[..dot]);
        OsString::from_vec([stem, b".o"].concat())
    };
    Some([
        OsString::from_vec(rest[..comma].to_vec()),
        "-MF".into(),
        OsString::from_vec(rest[comma + 1..].to_vec()),
        "-MQ".into(),
        target,
    ])
}

/// The client's working directory, for `CDIR` and the include server.
pub fn cwd() -> Result<Vec<u8>, String> {
    std::env::current_dir()
        .map(|dir| dir.into_os_string().into_vec())
        .map_err(|err| format!("cannot read the current directory: {err}"))
}

/// The include server's answer for `argv` run in `cwd`: the paths of the
/// job's files in its mirror tree, or why there is none (3.4's
/// `dcc_talk_to_include_server`, with a timeout on every read and write).
/// With `system`, the system headers too (`,sysheaders`).
pub fn ask(
    cwd: &[u8],
    argv: &[OsString],
    timeout: Duration,
    system: bool,
) -> Result<Answer, String> {
    if let Some(stub) = std::env::var_os("INCLUDE_SERVER_STUB") {
        let files: Vec<Vec<u8>> = stub
            .as_bytes()
            .split(|c| c.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        log::warn!(
            "INCLUDE_SERVER_STUB is set to '{}'; ignoring include server",
            String::from_utf8_lossy(&files.join(&b' '))
        );
        return non_empty(Answer {
            paths: files,
            system: None,
        });
    }
    let Some(port) = std::env::var_os("INCLUDE_SERVER_PORT") else {
        let why = "INCLUDE_SERVER_PORT not set - did you forget to run under 'distcc-pump'?";
        log::warn!("{why}");
        return Err(why.into());
    };
    if port.len() >= MAX_SOCKET_PATH {
        return Err(format!(
            "$INCLUDE_SERVER_PORT is longer than {MAX_SOCKET_PATH} characters"
        ));
    }
    let files = talk(Path::new(&port), cwd, argv, timeout, system).map_err(|err| {
        format!(
            "failed to talk to include server '{}': {err}",
            Path::new(&port).display()
        )
    })?;
    non_empty(files)
}

fn non_empty(files: Answer) -> Result<Answer, String> {
    if files.paths.is_empty() {
        return Err("include server gave up analyzing".into());
    }
    Ok(files)
}

/// One exchange on the include server's socket.
fn talk(
    port: &Path,
    cwd: &[u8],
    argv: &[OsString],
    timeout: Duration,
    system: bool,
) -> std::io::Result<Answer> {
    let mut stream = UnixStream::connect(port)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    let query = match system {
        true => proto::encode_system_include_query(cwd, &argv),
        false => proto::encode_include_query(cwd, &argv),
    };
    stream.write_all(&query)?;
    let limits = proto::Limits {
        max_argc: MAX_FILES as u32,
        max_arg_len: mirror::MAX_PATH_LEN as u32,
        max_args_total: MAX_ANSWER,
        ..proto::Limits::default()
    };
    let paths = proto::read_argv(&mut stream, &limits)?;
    let system = match system {
        true => Some(SystemAnswer::read(&mut stream, &limits)?),
        false => None,
    };
    Ok(Answer { paths, system })
}

/// The mirror root of `path`: its first [`mirror::MIRROR_DEPTH`]
/// components, when more follow.
fn mirror_root(path: &[u8]) -> Option<&[u8]> {
    let mut end = 0;
    for _ in 0..mirror::MIRROR_DEPTH {
        end += 1 + path.get(end + 1..)?.iter().position(|&c| c == b'/')?;
    }
    Some(&path[..end])
}

/// Turns the include server's answer into the request's files (3.4's
/// `dcc_x_many_files`): each mirror path named by its client name, a
/// symlink sent as its target, anything else as the mirror file's bytes;
/// then the system headers of a `SYSH` answer, by hash.
pub fn load(answer: &Answer) -> Result<Vec<Entry>, String> {
    let mut files = load_paths(&answer.paths)?;
    let Some(system) = &answer.system else {
        return Ok(files);
    };
    if files.len() + system.headers.len() > MAX_FILES {
        return Err(format!("the include server named over {MAX_FILES} files"));
    }
    let root = answer.paths.first().and_then(|p| mirror_root(p));
    for (path, hash) in &system.headers {
        let name = entry_name(path, root.is_some() && mirror_root(path) == root)?;
        files.push(Entry::Header {
            name: name.to_vec(),
            hash: *hash,
            mirror: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
        });
    }
    Ok(files)
}

fn load_paths(answer: &[Vec<u8>]) -> Result<Vec<Entry>, String> {
    if answer.len() > MAX_FILES {
        return Err(format!("the include server named over {MAX_FILES} files"));
    }
    let shown = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    // A header reached under a second absolute name comes from a sibling
    // root (`ROOT.1`): every root must be in the first one's directory.
    let parent = |p: &[u8]| {
        mirror_root(p).and_then(|r| r.iter().rposition(|&c| c == b'/').map(|i| r[..i].to_vec()))
    };
    let root = answer.first().and_then(|p| parent(p));
    let mut total = 0u64;
    let mut files = Vec::with_capacity(answer.len());
    for path in answer {
        let name = entry_name(path, root.is_some() && parent(path) == root)?;
        let mirror_path = Path::new(std::ffi::OsStr::from_bytes(path));
        let entry = read_entry(mirror_path, name, &mut total)
            .map_err(|err| format!("{}: {err}", shown(path)))?;
        files.push(entry);
    }
    Ok(files)
}

/// The client name of the mirror entry `path`, which must be `in_tree`
/// (under the answer's mirror roots) and name a plain absolute path.
fn entry_name(path: &[u8], in_tree: bool) -> Result<&[u8], String> {
    let shown = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let name = mirror::client_name(path)
        .filter(|_| in_tree)
        .ok_or_else(|| format!("{} is not in the include server's mirror tree", shown(path)))?;
    mirror::check_path(name).map_err(|err| format!("{}: {err}", shown(name)))?;
    Ok(name)
}

/// One mirror entry: its bytes, or its link's target, adding the bytes to
/// `total`. A kernel source names 700 entries, so each costs one path
/// lookup: the entry is opened without following a link (`ELOOP` says it
/// is one) or blocking on a FIFO, checked through its descriptor, and read
/// to the size that gave.
fn read_entry(mirror_path: &Path, name: &[u8], total: &mut u64) -> Result<Entry, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(mirror_path);
    let file = match opened {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
            return read_link_entry(mirror_path, name)
        }
        Err(err) => return Err(format!("open failed: {err}")),
    };
    let meta = file.metadata().map_err(|e| format!("stat failed: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE || *total + meta.len() > MAX_TOTAL {
        return Err(format!(
            "{} bytes is over the limit ({MAX_FILE} per file, {MAX_TOTAL} per job)",
            meta.len()
        ));
    }
    let mut lzo = Vec::with_capacity(meta.len() as usize);
    file.take(meta.len())
        .read_to_end(&mut lzo)
        .map_err(|e| format!("read failed: {e}"))?;
    *total += lzo.len() as u64;
    Ok(Entry::File {
        name: name.to_vec(),
        lzo,
    })
}

/// A mirror entry that is a symbolic link: sent as its target.
fn read_link_entry(mirror_path: &Path, name: &[u8]) -> Result<Entry, String> {
    let target = std::fs::read_link(mirror_path)
        .map_err(|e| format!("readlink failed: {e}"))?
        .into_os_string()
        .into_vec();
    if target.len() > mirror::MAX_PATH_LEN {
        return Err("the link's target is too long".into());
    }
    Ok(Entry::Link {
        name: name.to_vec(),
        target,
    })
}

/// [`server_argv`] for a request that carries the system headers: the
/// helper's compiler is told to search exactly the client's system dirs,
/// in the client's order (`-nostdinc`, and `-nostdinc++` for C++, then
/// `-isystem DIR` for each; the daemon puts its root in front of each
/// DIR), and to read the files the client's reads by itself first, which
/// `-nostdinc` turns off (`-include FILE`, after the compiler's name).
pub fn system_server_argv(job: &Job, system: &SystemAnswer) -> (Vec<OsString>, Option<PathBuf>) {
    let (mut argv, deps) = server_argv(job);
    let os = |b: &[u8]| OsString::from_vec(b.to_vec());
    let front = system
        .preincludes
        .iter()
        .flat_map(|p| [OsString::from("-include"), os(p)]);
    argv.splice(1..1, front);
    argv.push("-nostdinc".into());
    if system.cplusplus {
        argv.push("-nostdinc++".into());
    }
    for dir in &system.search {
        argv.extend([OsString::from("-isystem"), os(dir)]);
    }
    (argv, deps)
}

/// The command a protocol 3 server runs (3.4's `dcc_build_somewhere`):
/// the whole of `job.argv`, with `-MT TARGET` appended when a `.d` file is
/// wanted and the command names no `-MT` or `-MQ` target; and where the
/// server's `.d` file goes (section 5.7).
pub fn server_argv(job: &Job) -> (Vec<OsString>, Option<PathBuf>) {
    let mut argv = Vec::with_capacity(job.argv.len() + 4);
    let mut wp_file = None;
    for arg in &job.argv {
        match expand_wp_deps(job, arg.as_bytes()) {
            Some(expanded) => {
                wp_file = Some(PathBuf::from(&expanded[2]));
                argv.extend(expanded);
            }
            None => argv.push(arg.clone()),
        }
    }
    if wp_file.is_some() {
        return (argv, wp_file);
    }
    let env = std::env::var_os("DEPENDENCIES_OUTPUT")
        .filter(|v| !v.is_empty())
        .map(OsString::into_vec);
    let mut wanted = env.is_some();
    let mut file = None;
    let mut has_target = false;
    for token in job.tokens.iter() {
        if let Token::Known(at, o, v) = token {
            match o.role {
                Role::DepsDriver => wanted = true,
                Role::DepsTarget => has_target = true,
                Role::DepsFile => {
                    file = Some(crate::options::value_of(&job.argv, at, o, v).to_vec())
                }
                _ => {}
            }
        }
    }
    if !wanted {
        return (argv, None);
    }
    // DEPENDENCIES_OUTPUT is `FILE` or `FILE TARGET`.
    let (env_file, env_target) = match &env {
        Some(value) => match value.iter().position(|&c| c == b' ') {
            Some(space) => (Some(&value[..space]), Some(&value[space + 1..])),
            None => (Some(&value[..]), None),
        },
        None => (None, None),
    };
    if !has_target {
        argv.push("-MT".into());
        argv.push(match env_target {
            Some(target) => OsString::from_vec(target.to_vec()),
            None => job.output.clone().into_os_string(),
        });
    }
    let deps = file
        .or_else(|| env_file.map(<[u8]>::to_vec))
        .unwrap_or_else(|| scan::deps_file_for(job.output.as_os_str().as_bytes()));
    (argv, Some(PathBuf::from(OsString::from_vec(deps))))
}

/// What `--scan-includes` prints for the include server's answer (3.4's
/// `dcc_categorize_file`): one line per entry, `SYSTEMDIR`, `DIRECTORY`
/// (a forcing file, named by its directory), `SYMLINK` or `FILE`, then the
/// client's name. Fails at the first entry that cannot be read.
pub fn categorized(answer: &[Vec<u8>]) -> Result<String, String> {
    let mut out = String::new();
    for path in answer {
        let shown = String::from_utf8_lossy(path);
        let mirror_path = Path::new(std::ffi::OsStr::from_bytes(path));
        let meta = std::fs::symlink_metadata(mirror_path)
            .map_err(|e| format!("stat '{shown}' failed: {e}"))?;
        let target = match meta.file_type().is_symlink() {
            true => Some(
                std::fs::read_link(mirror_path)
                    .map_err(|e| format!("readlink '{shown}' failed: {e}"))?
                    .into_os_string()
                    .into_vec(),
            ),
            false => None,
        };
        let name = mirror::client_name(path).ok_or("dcc_get_original_fname failed")?;
        let forcing = format!("/{}", mirror::FORCING_FILE);
        let dir = name.strip_suffix(forcing.as_bytes());
        let name = dir.unwrap_or(name);
        let category = match &target {
            Some(target) if mirror::is_system_link(name, target) => "SYSTEMDIR",
            _ if dir.is_some() => "DIRECTORY",
            Some(_) => "SYMLINK",
            None => "FILE",
        };
        out.push_str(&format!(
            "{category:<9} {}\n",
            String::from_utf8_lossy(name)
        ));
    }
    Ok(out)
}

/// The discrepancy counter: `discrepancy_counter` beside the include
/// server's socket, when `$INCLUDE_SERVER_PORT` ends in `/socket`.
fn counter_file() -> Option<PathBuf> {
    let port = std::env::var_os("INCLUDE_SERVER_PORT")?.into_vec();
    let dir = port
        .strip_suffix(mirror::SOCKET.as_bytes())?
        .strip_suffix(b"/")?;
    let mut path = dir.to_vec();
    path.push(b'/');
    path.extend_from_slice(mirror::DISCREPANCY_COUNTER.as_bytes());
    Some(PathBuf::from(OsString::from_vec(path)))
}

/// How many discrepancies this build has had: the counter's size.
fn discrepancies() -> u64 {
    counter_file()
        .and_then(|path| std::fs::metadata(path).ok())
        .map_or(0, |meta| meta.len())
}

/// `DISTCC_MAX_DISCREPANCY`: after that many discrepancies the build goes
/// plain (default 1, as in 3.4 and the `pump` wrapper).
fn max_discrepancies() -> Result<u64, String> {
    let Some(value) = std::env::var_os("DISTCC_MAX_DISCREPANCY") else {
        return Ok(1);
    };
    match value.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(max) if max > 0 => Ok(max),
        _ => Err(format!(
            "Bad DISTCC_MAX_DISCREPANCY value: {}",
            value.to_string_lossy()
        )),
    }
}

/// Reports that the remote compile of `input` failed where the local one
/// did not, in 3.4's words, and adds one byte to the counter; the
/// discrepancy that reaches `DISTCC_MAX_DISCREPANCY` says that the rest of
/// the build goes plain.
pub fn note_discrepancy(input: &Path) {
    log::warn!(
        "remote compilation of '{}' failed, retried locally and got a different result.",
        input.display()
    );
    let Some(path) = counter_file() else { return };
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(b"@")?;
            file.metadata()
        });
    match appended {
        Ok(meta) => {
            if Ok(meta.len()) == max_discrepancies() {
                log::warn!(
                    "now using plain distcc, possibly due to inconsistent file system changes \
                     during build"
                );
            }
        }
        Err(err) => log::error!(
            "failed to open discrepancy_filename file: {}: {err}",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_roots() {
        assert_eq!(
            mirror_root(b"/tmp/a/m/home/u/x.c.lzo"),
            Some(&b"/tmp/a/m"[..])
        );
        assert_eq!(mirror_root(b"/tmp/a/m/usr/include"), Some(&b"/tmp/a/m"[..]));
        assert_eq!(mirror_root(b"/tmp/a"), None);
    }

    fn job(args: &[&str]) -> Job {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        match scan::scan(&argv, &crate::options::Tokens::of(&argv)) {
            scan::Decision::Remote(job) => job,
            scan::Decision::Local(why) => panic!("{args:?} is local: {}", why.reason),
        }
    }

    fn server(args: &[&str]) -> (Vec<String>, Option<String>) {
        // DEPENDENCIES_OUTPUT is read from the environment, which these
        // tests leave alone; the integration tests set it.
        let (argv, deps) = server_argv(&job(args));
        let argv = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        (argv, deps.map(|d| d.display().to_string()))
    }

    #[test]
    fn the_server_gets_the_whole_command_and_a_target_for_the_d_file() {
        let (argv, deps) = server(&["gcc", "-Iinc", "-DX", "-c", "a.c"]);
        assert_eq!(argv, ["gcc", "-Iinc", "-DX", "-c", "a.c", "-o", "a.o"]);
        assert_eq!(deps, None);
        let (argv, deps) = server(&["gcc", "-MD", "-c", "a.c", "-o", "obj/a.o"]);
        assert_eq!(
            argv,
            ["gcc", "-MD", "-c", "a.c", "-o", "obj/a.o", "-MT", "obj/a.o"]
        );
        assert_eq!(deps.as_deref(), Some("obj/a.d"));
        let (argv, deps) = server(&["gcc", "-MMD", "-MQ", "t", "-MFx.d", "-c", "a.c"]);
        assert_eq!(argv.last().map(String::as_str), Some("a.o"), "no -MT added");
        assert_eq!(deps.as_deref(), Some("x.d"));
        let (_, deps) = server(&["gcc", "-MD", "-MF", "y.d", "-c", "a.c", "-o", "a.dir/b"]);
        assert_eq!(deps.as_deref(), Some("y.d"));
        let (_, deps) = server(&["gcc", "-MD", "-c", "a.c", "-o", "a.dir/b"]);
        assert_eq!(deps.as_deref(), Some("a.dir/b.d"));
        // A lone -MP or -MF writes no .d file.
        assert_eq!(server(&["gcc", "-MP", "-MFz.d", "-c", "a.c"]).1, None);
    }

    #[test]
    fn a_wp_dependency_file_becomes_driver_options_with_the_preprocessors_own_target() {
        // The Linux kernel's form. gcc's cc1 names the target after the
        // source's basename; clang's driver uses the output.
        let (argv, deps) = server(&["gcc", "-Wp,-MMD,d/.t.o.d", "-c", "d/t.x.c", "-o", "o/t.o"]);
        assert_eq!(
            argv,
            ["gcc", "-MMD", "-MF", "d/.t.o.d", "-MQ", "t.x.o", "-c", "d/t.x.c", "-o", "o/t.o"]
        );
        assert_eq!(deps.as_deref(), Some("d/.t.o.d"));
        let (argv, deps) = server(&["clang", "-c", "t.c", "-Wp,-MD,t.d", "-o", "o/t.o"]);
        assert_eq!(argv[3..8], ["-MD", "-MF", "t.d", "-MQ", "o/t.o"]);
        assert_eq!(deps.as_deref(), Some("t.d"));
        assert_eq!(
            plain_reason(&job(&["gcc", "-Wp,-MD,t.d", "-c", "t.c"])),
            None
        );
        for other in [
            &["gcc", "-Wp,-MD,t.d,-MT,x", "-c", "t.c"][..],
            &["gcc", "-Wp,-MD,t.d", "-MT", "x", "-c", "t.c"],
            &["gcc", "-Wp,-MD,t.d", "-Wp,-MMD,u.d", "-c", "t.c"],
        ] {
            let why = plain_reason(&job(other));
            assert_eq!(
                why.as_deref(),
                Some("a -Wp, option writes the dependency file")
            );
        }
    }

    #[test]
    fn the_system_headers_make_the_server_search_the_clients_dirs_in_order() {
        let system = SystemAnswer {
            cplusplus: false,
            headers: Vec::new(),
            search: vec![
                b"/usr/lib/x/include".to_vec(),
                b"/usr/a/../include".to_vec(),
            ],
            preincludes: vec![b"/usr/include/stdc-predef.h".to_vec()],
        };
        let (argv, deps) = system_server_argv(&job(&["gcc", "-I", "i", "-c", "a.c"]), &system);
        let argv: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            argv,
            [
                "gcc",
                "-include",
                "/usr/include/stdc-predef.h",
                "-I",
                "i",
                "-c",
                "a.c",
                "-o",
                "a.o",
                "-nostdinc",
                "-isystem",
                "/usr/lib/x/include",
                "-isystem",
                "/usr/a/../include"
            ]
        );
        assert_eq!(deps, None);
        let cxx = SystemAnswer {
            cplusplus: true,
            ..system
        };
        let (argv, _) = system_server_argv(&job(&["g++", "-c", "a.cc"]), &cxx);
        assert!(argv.windows(2).any(|w| w == ["-nostdinc", "-nostdinc++"]));
    }

    #[test]
    fn wp_deps_options() {
        assert!(scan::wp_holds_deps(b"-Wp,-MMD,dir/.x.o.d"));
        assert!(scan::wp_holds_deps(b"-Wp,-DX,-MD,x.d"));
        assert!(!scan::wp_holds_deps(b"-Wp,-DX"));
        assert!(!scan::wp_holds_deps(b"-MD"));
    }
}
