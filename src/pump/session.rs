//! One `pump` run: its private directory (the socket, the discrepancy counter, the background server's log), the mirror root, and the include server started and stopped in them.
//!
//! As distcc 3.4's `pump` script does, the directory is
//! `mktemp -d ${TMPDIR:-/tmp}/distcc-pump.XXXXXX` and the socket is
//! `<dir>/socket`; 3.4's client counts a discrepancy (a compile that failed
//! remotely and then worked locally) by appending a byte to
//! `<dir>/discrepancy_counter`.
//!
//! The mirror root must have exactly [`mirror::MIRROR_DEPTH`] components.
//! It is `<dir>/mirror` when the directory has two (the usual
//! `/tmp/distcc-pump.XXXXXX`), padded with `/padding` when it has fewer.
//! When it has more (a deeper `TMPDIR`), the root is made where 3.4's
//! include server makes it: in `DISTCC_CLIENT_TMP` if that is set (at most
//! two components, as 3.4 requires), else in `/dev/shm` or `/tmp`.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mirror;
use crate::pump::mirror_tree::MirrorTree;
use crate::pump::server::{Config, Running, Scan, Server};

/// The discrepancy counter's name next to the socket.
pub use crate::mirror::DISCREPANCY_COUNTER;
/// The socket's name in the pump directory.
pub use crate::mirror::SOCKET;
/// How the pump directory's name starts.
pub const DIR_PREFIX: &str = "distcc-pump.";
/// Where a background server's log goes, printed by `--shutdown` (3.4's
/// include server's stderr file).
pub const LOG_FILE: &str = "stderr";

/// How long a stopping server waits for the clients it is answering.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A pump run's private directory.
#[derive(Debug)]
pub struct PumpDir {
    path: PathBuf,
}

impl PumpDir {
    /// Makes a fresh one under `$TMPDIR` (or `/tmp`).
    pub fn create() -> io::Result<PumpDir> {
        let parent = crate::env::tmp_dir();
        let path = crate::sys::make_temp_dir(&parent, DIR_PREFIX).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("could not make a directory in {}: {e}", parent.display()),
            )
        })?;
        Ok(PumpDir { path })
    }

    /// The directory `INCLUDE_SERVER_DIR` names, for `--shutdown`: it must
    /// be a directory whose name starts with [`DIR_PREFIX`].
    pub fn existing(path: &Path) -> Result<PumpDir, String> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !path.is_absolute() || !name.starts_with(DIR_PREFIX) {
            return Err(format!(
                "INCLUDE_SERVER_DIR={} is not a pump directory ({DIR_PREFIX}XXXXXX)",
                path.display()
            ));
        }
        Ok(PumpDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The socket clients connect to (`INCLUDE_SERVER_PORT`).
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET)
    }

    /// The background server's log.
    pub fn log_file(&self) -> PathBuf {
        self.path.join(LOG_FILE)
    }

    /// The discrepancies counted so far: the counter file's size.
    pub fn discrepancies(&self) -> u64 {
        std::fs::metadata(self.path.join(DISCREPANCY_COUNTER)).map_or(0, |m| m.len())
    }

    /// Removes the directory and everything in it, never following a link.
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The mirror root, and the directory to remove with it when it is not
/// inside the pump directory.
#[derive(Debug)]
pub struct MirrorRoot {
    pub root: PathBuf,
    outside: Option<PathBuf>,
}

impl MirrorRoot {
    /// Makes the root for `dir` by the rules in the module's doc.
    pub fn make(dir: &PumpDir) -> io::Result<MirrorRoot> {
        let client_tmp = std::env::var_os("DISTCC_CLIENT_TMP").filter(|v| !v.is_empty());
        let (top, outside) = match client_tmp {
            Some(tmp) => (made_in(&checked_client_tmp(Path::new(&tmp))?)?, true),
            None if depth(dir.path()) < mirror::MIRROR_DEPTH => (dir.path().join("mirror"), false),
            None => (made_in(&fallback_tmp())?, true),
        };
        let mut root = top.clone();
        while depth(&root) < mirror::MIRROR_DEPTH {
            root.push("padding");
        }
        std::fs::create_dir_all(&root)?;
        Ok(MirrorRoot {
            root,
            outside: outside.then_some(top),
        })
    }

    /// Removes the root, and the sibling roots the tree made next to it,
    /// when they are not in the pump directory (which goes as a whole).
    pub fn remove(&self) {
        if let Some(top) = &self.outside {
            let _ = std::fs::remove_dir_all(top);
            if *top == self.root {
                for sibling in crate::pump::mirror_tree::sibling_roots(&self.root) {
                    let _ = std::fs::remove_dir_all(sibling);
                }
            }
        }
    }
}

/// `DISTCC_CLIENT_TMP`, if 3.4's include server would take it.
fn checked_client_tmp(tmp: &Path) -> io::Result<PathBuf> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    if !tmp.is_absolute() {
        return Err(bad("DISTCC_CLIENT_TMP must start with '/'."));
    }
    if depth(tmp) > mirror::MIRROR_DEPTH - 1 {
        return Err(bad(
            "DISTCC_CLIENT_TMP must have at most two directory levels.",
        ));
    }
    Ok(tmp.to_path_buf())
}

/// `/dev/shm` when this user may write there, else `/tmp`.
fn fallback_tmp() -> PathBuf {
    let shm = Path::new("/dev/shm");
    // SAFETY: access(2) on a NUL-terminated constant path.
    let usable = unsafe { libc::access(c"/dev/shm".as_ptr(), libc::W_OK | libc::X_OK) } == 0;
    if shm.is_dir() && usable {
        shm.to_path_buf()
    } else {
        PathBuf::from("/tmp")
    }
}

/// How a mirror made outside the pump directory is named, before the pid.
const MIRROR_PREFIX: &str = "distcc-pump-mirror-";

/// A fresh mirror directory `distcc-pump-mirror-PID.XXXXXX` in `parent`,
/// after removing those of pumps that are gone.
fn made_in(parent: &Path) -> io::Result<PathBuf> {
    remove_stale_mirrors(parent);
    let prefix = format!("{MIRROR_PREFIX}{}.", std::process::id());
    crate::sys::make_temp_dir(parent, &prefix).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "could not make the mirror directory in {}: {e}",
                parent.display()
            ),
        )
    })
}

/// Removes the mirrors in `parent` that this user's pumps left when they
/// died without cleaning up (3.4's include server does the same for its
/// own): directories named for a pid that no longer runs.
fn remove_stale_mirrors(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(MIRROR_PREFIX))
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid.filter(|&pid| !alive(pid)) else {
            continue;
        };
        let path = entry.path();
        let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours {
            log::debug!("removing {}, left by pump {pid}", path.display());
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// An include server answering on a pump directory's socket.
pub struct IncludeServer {
    running: Running,
    root: MirrorRoot,
}

impl IncludeServer {
    /// Binds the socket of `dir`, before anything else starts (so that a
    /// `--startup` can fork after it and print its variables at once).
    pub fn bind(dir: &PumpDir) -> io::Result<Server> {
        let socket = dir.socket();
        Server::bind(&socket).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("could not listen on {}: {e}", socket.display()),
            )
        })
    }

    /// Makes the mirror root and starts answering on `server`.
    pub fn start(dir: &PumpDir, server: Server, scanner: Arc<dyn Scan>) -> io::Result<Self> {
        let root = MirrorRoot::make(dir)?;
        let tree = match MirrorTree::open(&root.root) {
            Ok(tree) => tree,
            Err(e) => {
                root.remove();
                return Err(e);
            }
        };
        let running = server.start(scanner, tree, Config::default());
        log::debug!(
            "include server on {} with its mirror at {}",
            dir.socket().display(),
            root.root.display()
        );
        Ok(IncludeServer { running, root })
    }

    /// The mirror root.
    pub fn mirror_root(&self) -> &Path {
        &self.root.root
    }

    /// Stops answering and removes the socket and the mirror root.
    pub fn stop(self) {
        self.running.stop(STOP_WAIT);
        self.root.remove();
    }

    /// Answers until SIGTERM, SIGINT or SIGHUP, then stops: the background
    /// server of `--startup`.
    pub fn run_until_signal(
        dir: &PumpDir,
        server: Server,
        scanner: Arc<dyn Scan>,
    ) -> io::Result<()> {
        let signals = crate::sys::signal_pipe(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])?;
        let me = IncludeServer::start(dir, server, scanner)?;
        loop {
            let ready = crate::sys::poll_one(
                std::os::fd::AsRawFd::as_raw_fd(&signals),
                libc::POLLIN,
                Duration::from_secs(3600),
            )?;
            if ready && !crate::sys::drain_signals(&signals).is_empty() {
                break;
            }
        }
        me.stop();
        Ok(())
    }
}

/// `DISTCC_MAX_DISCREPANCY` (default 1), which must be 1 or more.
pub fn max_discrepancies() -> Result<u64, String> {
    match std::env::var("DISTCC_MAX_DISCREPANCY") {
        Err(_) => Ok(1),
        Ok(v) if v.is_empty() => Ok(1),
        Ok(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n as u64),
            _ => Err(format!(
                "Bad DISTCC_MAX_DISCREPANCY value: \"{v}\". Needs to be 1 or greater."
            )),
        },
    }
}

/// What 3.4's `pump` says on stderr at the end when `count` compiles
/// failed on the server and worked locally (nothing when none did).
pub fn discrepancy_report(count: u64, max: u64) -> Option<String> {
    if count == 0 {
        return None;
    }
    let mut text = format!(
        "__________Warning: {count} pump-mode compilation(s) failed on server, but succeeded locally.\n"
    );
    if count >= max {
        text += "__________Distcc-pump was demoted to plain mode.\n";
    }
    text += "See the Distcc Discrepancy Symptoms section in the include_server(1) man page.\n";
    Some(text)
}

/// Whether process `pid` exists.
pub fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Sends SIGTERM to the background server `pid` and waits (at most
/// `limit`) until it is gone. Returns whether it went.
pub fn terminate(pid: u32, limit: Duration) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if raw <= 1 {
        return false;
    }
    // SAFETY: a plain system call.
    unsafe { libc::kill(raw, libc::SIGTERM) };
    let deadline = Instant::now() + limit;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrepancies_are_reported_in_3_4_words() {
        assert_eq!(discrepancy_report(0, 1), None);
        let one = discrepancy_report(1, 1).unwrap();
        assert!(one.starts_with("__________Warning: 1 pump-mode compilation(s) failed on server, but succeeded locally.\n__________Distcc-pump was demoted to plain mode.\n"), "{one}");
        assert!(!discrepancy_report(1, 2).unwrap().contains("demoted"));
    }

    #[test]
    fn a_pump_directory_must_look_like_one() {
        assert!(PumpDir::existing(Path::new("/tmp/distcc-pump.AbC123")).is_ok());
        assert!(PumpDir::existing(Path::new("/home/u")).is_err());
        assert!(PumpDir::existing(Path::new("distcc-pump.x")).is_err());
    }

    #[test]
    fn the_mirror_root_has_three_components_wherever_it_is() {
        let test = crate::testing::TestDir::new("session-root");
        let shallow = PumpDir {
            path: test.path.clone(),
        };
        let root = MirrorRoot::make(&shallow).unwrap();
        assert_eq!(root.root, test.join("mirror"));
        assert!(root.outside.is_none());
        let deep = PumpDir {
            path: test.join("deeper"),
        };
        let root = MirrorRoot::make(&deep).unwrap();
        assert_eq!(depth(&root.root), mirror::MIRROR_DEPTH);
        assert!(!root.root.starts_with(&test.path));
        assert!(root.root.is_dir());
        root.remove();
        assert!(!root.outside.as_ref().unwrap().exists());
        // One left by a pump that is gone is removed; ours and others stay.
        let dead = test.join(&format!("{MIRROR_PREFIX}999999999.AbCdEf"));
        let live = test.join(&format!("{MIRROR_PREFIX}{}.AbCdEf", std::process::id()));
        let other = test.join("distcc-pump-mirror-x.AbCdEf");
        for dir in [&dead, &live, &other] {
            std::fs::create_dir_all(dir.join("padding")).unwrap();
        }
        remove_stale_mirrors(&test.path);
        assert!(!dead.exists() && live.exists() && other.exists());
    }

    #[test]
    fn client_tmp_is_checked_as_3_4_checks_it() {
        assert!(checked_client_tmp(Path::new("/dev/shm")).is_ok());
        assert!(checked_client_tmp(Path::new("/tmp")).is_ok());
        let deep = checked_client_tmp(Path::new("/a/b/c")).unwrap_err();
        assert_eq!(
            deep.to_string(),
            "DISTCC_CLIENT_TMP must have at most two directory levels."
        );
        assert!(checked_client_tmp(Path::new("tmp")).is_err());
    }
}
