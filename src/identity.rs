//! A compiler's identity (docs/trust.md): its name, version, target and a
//! fingerprint, probed from `COMPILER -v`, cached by the binary's stat,
//! sent by the daemon inside the channel (`CIDR`) and compared by the client.
//!
//! The fingerprint is a SHA-256 of the lines of `-v` that say how the
//! compiler was built (version, target, configuration, thread model). It covers what decides
//! the objects a compiler makes and that a hash of the binary misses: gcc's
//! `-v` names its configuration (`--enable-default-pie`, the default
//! `-march`, ...), which lives in `cc1` and its specs, not in the `gcc`
//! driver whose bytes a binary hash would see; and a wrapper script's
//! bytes say nothing about the compiler it runs.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The token of the daemon's identity packet, sent only inside the channel,
/// before `DONE`: a body of [`Identity::encode`]'s lines.
pub const CIDR: crate::proto::Token = *b"CIDR";
/// The client's ask, the first 12 bytes of its first transport frame:
/// `CIDQ` with parameter 0. A daemon sends `CIDR` only to a client that
/// asked, so a distcc-rs client from before the check still gets `DONE`.
pub const CIDQ: crate::proto::Token = *b"CIDQ";
/// The ask as it is on the wire.
pub fn ask() -> Vec<u8> {
    let mut out = Vec::new();
    crate::proto::put_header(&mut out, &CIDQ, 0);
    out
}
/// The longest `CIDR` body either side accepts.
pub const MAX_BODY: usize = 4096;
/// How long `-v` may take.
const PROBE_TIME: Duration = Duration::from_secs(10);
/// How much of `-v`'s output is read.
const MAX_OUTPUT: u64 = 64 * 1024;
/// The mark `distcc-rs wrap` leaves in each wrapper script.
const WRAP_MARK: &[u8] = b"written by `distcc-rs wrap`";

/// What a compiler says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The name it was asked by (the job's `argv[0]`).
    pub name: String,
    /// `-v`'s version line, e.g. `gcc version 12.2.0 (Debian 12.2.0-14)`.
    pub version: String,
    /// `-v`'s `Target:`, e.g. `x86_64-linux-gnu`.
    pub target: String,
    /// The first 16 hex digits of the SHA-256 of `-v`'s version, target, configuration and thread model lines.
    pub fingerprint: String,
    /// A `distcc-rs wrap` wrapper script (clang with `--target`).
    pub wrapped: bool,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} for {} (fingerprint {}{})",
            self.name,
            self.version,
            self.target,
            self.fingerprint,
            if self.wrapped { ", wrap-made" } else { "" }
        )
    }
}

impl Identity {
    /// Reads `-v`'s output of the compiler asked for as `name`.
    pub fn parse(name: &str, output: &str, wrapped: bool) -> Result<Identity, String> {
        let version = output
            .lines()
            .find(|l| l.contains(" version ") && !l.starts_with("Configured with"))
            .ok_or("no version line in its -v")?;
        let target = output
            .lines()
            .find_map(|l| l.strip_prefix("Target: "))
            .ok_or("no Target: line in its -v")?;
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(version.trim().as_bytes());
        hash.update(b"\n");
        for line in output.lines().filter(|l| is_build_line(l)) {
            hash.update(line.as_bytes());
            hash.update(b"\n");
        }
        let digest = hash.finalize();
        let fingerprint = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Identity {
            name: name.to_string(),
            version: version.trim().to_string(),
            target: target.trim().to_string(),
            fingerprint,
            wrapped,
        })
    }

    /// `gcc`, `clang`, or the version line's first word.
    pub fn family(&self) -> &str {
        let before = self.version.split(" version ").next().unwrap_or("");
        if before.ends_with("clang") {
            "clang"
        } else if before.ends_with("gcc") {
            "gcc"
        } else {
            before.split(' ').next().unwrap_or("")
        }
    }

    /// The version number: the word after `version`.
    pub fn number(&self) -> &str {
        self.version
            .split(" version ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("")
    }

    /// Whether objects from `remote` may stand for this compiler's. Two
    /// compilers match when `-v` says the same of how they were built:
    /// the same version line, target and fingerprint. A wrap-made helper
    /// runs another build of clang than the client's, so for one the
    /// client must be clang too, for the same target, with the same major
    /// version.
    pub fn matches(&self, remote: &Identity) -> bool {
        if self.wrapped || remote.wrapped {
            let major = |i: &Identity| i.number().split('.').next().unwrap_or("").to_string();
            return self.family() == "clang"
                && remote.family() == "clang"
                && self.target == remote.target
                && major(self) == major(remote);
        }
        self.version == remote.version
            && self.target == remote.target
            && self.fingerprint == remote.fingerprint
    }

    /// The identity as lines: name, version, target, fingerprint, wrapped.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{}\n{}\n{}\n{}\n{}\n",
            self.name.replace(['\n', '\r'], "?"),
            self.version,
            self.target,
            self.fingerprint,
            u8::from(self.wrapped)
        )
        .into_bytes()
    }

    /// Reads [`Identity::encode`]'s lines.
    pub fn decode(body: &[u8]) -> Result<Identity, String> {
        if body.len() > MAX_BODY {
            return Err(format!("an identity of {} bytes", body.len()));
        }
        let text = std::str::from_utf8(body).map_err(|_| "an identity that is not UTF-8")?;
        let lines: Vec<&str> = text.lines().collect();
        let [name, version, target, fingerprint, wrapped] = lines[..] else {
            return Err(format!("an identity of {} lines, not 5", lines.len()));
        };
        Ok(Identity {
            name: name.into(),
            version: version.into(),
            target: target.into(),
            fingerprint: fingerprint.into(),
            wrapped: wrapped == "1",
        })
    }

    /// The `CIDR` packet.
    pub fn packet(&self) -> Vec<u8> {
        let mut out = Vec::new();
        crate::proto::put_body(&mut out, &CIDR, &self.encode());
        out
    }
}

/// The lines of `-v` that say how the compiler was built: its version,
/// target, configuration and thread model. Not the lines that say where it
/// was run from or which gcc installations clang found for linking, nor
/// what a wrapper script prints on its way.
fn is_build_line(line: &str) -> bool {
    ["Target: ", "Configured with: ", "Thread model: "]
        .iter()
        .any(|p| line.starts_with(p))
}

/// What a compiler binary's identity is valid for: the stat of what its
/// path leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    pub fn of(path: &Path) -> io::Result<Stamp> {
        let meta = std::fs::metadata(path)?;
        Ok(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }

    /// One line, for a cache file.
    pub fn line(&self) -> String {
        format!("{} {} {} {}", self.dev, self.ino, self.size, self.mtime_ns)
    }
}

/// Runs `program -v` (as `name`), its output into `out`, in the
/// environment its jobs get (so that a wrapper script finds what it
/// needs) with `LC_ALL=C`, so that the lines are in English, after
/// `confine` has had its say; kills it after [`PROBE_TIME`].
pub fn probe(
    program: &Path,
    name: &str,
    out: &Path,
    confine: impl FnOnce(&mut Command) -> io::Result<()>,
) -> io::Result<Identity> {
    let file = crate::sys::open_file(out, true)?;
    let mut command = Command::new(program);
    use std::os::unix::process::CommandExt;
    command
        .arg0(name)
        .arg("-v")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    confine(&mut command)?;
    let mut child = command.spawn()?;
    let deadline = Instant::now() + PROBE_TIME;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(io::ErrorKind::TimedOut, "-v took too long"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut text = String::new();
    use std::io::Read;
    std::fs::File::open(out)?
        .take(MAX_OUTPUT)
        .read_to_string(&mut text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "-v is not text"))?;
    Identity::parse(name, &text, is_wrapped(program))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Whether `program` is a wrapper script `distcc-rs wrap` wrote.
pub fn is_wrapped(program: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 512];
    let n = std::fs::File::open(program)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n].starts_with(b"#!") && head[..n].windows(WRAP_MARK.len()).any(|w| w == WRAP_MARK)
}

/// The daemon's identities, per compiler path, each kept while the
/// binary's stat is unchanged; shared by the compile workers.
#[derive(Default)]
pub struct Cache {
    known: Mutex<HashMap<CacheKey, Known>>,
}

/// A compiler's path and the name it is asked by.
type CacheKey = (PathBuf, String);
/// What a probe found, for the stamp it was made at (None: no identity).
type Known = (Stamp, Option<Arc<Identity>>);

impl Cache {
    /// The identity of `program` asked for as `name`, from the cache or
    /// from `probe` (which is not run under the cache's lock). A compiler
    /// whose `-v` tells no identity is remembered as such (and logged
    /// once), so that it is not run again for every job.
    pub fn get(
        &self,
        program: &Path,
        name: &str,
        probe: impl FnOnce() -> io::Result<Identity>,
    ) -> Option<Arc<Identity>> {
        let stamp = Stamp::of(program).ok()?;
        let key = (program.to_path_buf(), name.to_string());
        let lock = || self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, identity)) = lock().get(&key) {
            if *known == stamp {
                return identity.clone();
            }
        }
        let identity = match probe() {
            Ok(identity) => {
                log::info!("compiler {}: {identity}", program.display());
                Some(Arc::new(identity))
            }
            Err(err) => {
                log::warn!("cannot tell the identity of {}: {err}", program.display());
                None
            }
        };
        lock().insert(key, (stamp, identity.clone()));
        identity
    }
}

/// A name as it may stand in a file name: `[A-Za-z0-9._+-]`, others as `_`.
pub fn file_name_of(name: &OsStr) -> String {
    name.to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GCC: &str = "Using built-in specs.\nCOLLECT_GCC=gcc\nTarget: x86_64-linux-gnu\n\
        Configured with: ../src/configure -v --enable-default-pie\nThread model: posix\n\
        gcc version 12.2.0 (Debian 12.2.0-14)\n";
    const CLANG: &str = "Debian clang version 14.0.6\nTarget: powerpc-unknown-linux-gnu\n\
        Thread model: posix\nInstalledDir: /usr/bin\n";

    #[test]
    fn the_cache_probes_once_per_stamp() {
        let dir = crate::testing::TestDir::new("identity-cache");
        let program = dir.write("gcc", "one");
        let cache = Cache::default();
        let probes = std::cell::Cell::new(0);
        let probe = || {
            probes.set(probes.get() + 1);
            Identity::parse("gcc", GCC, false).map_err(io::Error::other)
        };
        assert!(cache.get(&program, "gcc", probe).is_some());
        assert!(cache.get(&program, "gcc", probe).is_some());
        assert_eq!(probes.get(), 1);
        dir.write("gcc", "two, longer");
        assert!(cache.get(&program, "gcc", probe).is_some());
        assert_eq!(probes.get(), 2);
        let fails = || Err(io::Error::other("no"));
        assert!(cache.get(&program, "cc", fails).is_none());
        assert!(cache
            .get(&program, "cc", || panic!("probed again"))
            .is_none());
    }

    #[test]
    fn gcc_and_clang_identities() {
        let gcc = Identity::parse("gcc", GCC, false).unwrap();
        assert_eq!(gcc.version, "gcc version 12.2.0 (Debian 12.2.0-14)");
        assert_eq!((gcc.family(), gcc.number()), ("gcc", "12.2.0"));
        assert_eq!(gcc.target, "x86_64-linux-gnu");
        let clang = Identity::parse("cc", CLANG, false).unwrap();
        assert_eq!((clang.family(), clang.number()), ("clang", "14.0.6"));
        assert_eq!(Identity::decode(&clang.encode()).unwrap(), clang);
        assert!(Identity::parse("cc", "nothing", false).is_err());
    }

    #[test]
    fn paths_do_not_count_and_versions_do() {
        let here = Identity::parse("gcc", GCC, false).unwrap();
        let moved = GCC.replace("COLLECT_GCC=gcc", "COLLECT_GCC=/usr/bin/gcc");
        assert!(here.matches(&Identity::parse("x86_64-linux-gnu-gcc", &moved, false).unwrap()));
        let other = GCC.replace("12.2.0-14", "12.2.0-15");
        assert!(!here.matches(&Identity::parse("gcc", &other, false).unwrap()));
        let config = GCC.replace("--enable-default-pie", "");
        assert!(!here.matches(&Identity::parse("gcc", &config, false).unwrap()));
    }

    #[test]
    fn a_wrap_made_clang_matches_a_clang_of_its_target_and_major_version() {
        let wrap = Identity::parse("cc", CLANG, true).unwrap();
        let client = CLANG.replace(
            "Debian clang version 14.0.6",
            "clang version 14.0.5 (Fedora)",
        );
        let client = Identity::parse("cc", &client, false).unwrap();
        assert!(client.matches(&wrap));
        let x86 = CLANG.replace("powerpc-unknown", "x86_64-pc");
        assert!(!Identity::parse("cc", &x86, false).unwrap().matches(&wrap));
        let old = CLANG.replace("14.0.6", "13.0.1");
        assert!(!Identity::parse("cc", &old, false).unwrap().matches(&wrap));
        assert!(!Identity::parse("gcc", GCC, false).unwrap().matches(&wrap));
    }
}
