//! The include server proper: a UNIX socket answering many clients at once, one query per connection, in distcc 3.4's include-server protocol.
//!
//! A client sends `CDIR` and `ARGC`/`ARGV` (its compile); the server asks
//! the scanner for the compile's closure, makes the mirror tree hold it,
//! and answers `ARGC`/`ARGV` with the mirror paths, or `ARGC 0` when the
//! scanner does not cover the compile (the client then preprocesses
//! locally). Each connection has a thread of its own, up to
//! [`Config::max_connections`]; the scans themselves run at most
//! [`Config::max_scans`] at a time. A query must arrive whole within
//! [`Config::query_timeout`], so a client that connects and says nothing
//! holds one thread for that long and blocks nobody else. Bad input closes
//! that one connection; nothing a client sends stops the server.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::proto::{self, Limits};
use crate::pump::closure::{Closure, NotCovered, Request};
use crate::pump::mirror_tree::MirrorTree;
use crate::sysheaders::SystemAnswer;

/// What the server asks for each compile: its closure, or why not.
pub trait Scan: Send + Sync {
    fn closure(&self, request: &Request) -> Result<Closure, NotCovered>;
}

/// The environment variables that add include directories behind the
/// command line's back. 3.4's client refuses pump mode when it has one of
/// the first three; the server, whose scanner asks the compiler for its
/// search directories, cannot see what the client's compiler would.
pub const INCLUDE_PATH_VARS: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "OBJCPLUS_INCLUDE_PATH",
];

/// The first of [`INCLUDE_PATH_VARS`] set (non-empty) in this process's
/// environment, as the reason every answer is `ARGC 0`.
pub fn include_path_poison() -> Option<String> {
    INCLUDE_PATH_VARS.iter().find_map(|var| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(|_| format!("{var} is set in the include server's environment"))
    })
}

/// How the server bounds its work.
#[derive(Clone, Debug)]
pub struct Config {
    /// Time for a whole query to arrive, and for an answer to be taken.
    pub query_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Scans run at once.
    pub max_scans: usize,
    /// Caps on a query's argument count and lengths.
    pub limits: Limits,
    /// Set when every answer must be `ARGC 0`, with the reason (see
    /// [`include_path_poison`]).
    pub poison: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            query_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_scans: crate::sys::cpu_count().clamp(2, 16) * 2,
            limits: Limits {
                max_argc: 16 * 1024,
                max_arg_len: crate::mirror::MAX_PATH_LEN as u32 * 4,
                max_args_total: 1024 * 1024,
                max_input: 0,
                ..Limits::default()
            },
            poison: include_path_poison(),
        }
    }
}

/// Counts of what the server answered, for its log and the tests.
#[derive(Debug, Default)]
pub struct Counts {
    pub accepted: AtomicUsize,
    pub answered: AtomicUsize,
    pub not_covered: AtomicUsize,
    pub bad_queries: AtomicUsize,
}

/// A counting semaphore.
struct Gate {
    used: Mutex<usize>,
    freed: Condvar,
    size: usize,
}

impl Gate {
    fn new(size: usize) -> Gate {
        Gate {
            used: Mutex::new(0),
            freed: Condvar::new(),
            size: size.max(1),
        }
    }

    fn enter(&self) -> GatePass<'_> {
        self.wait_and_take();
        GatePass(self)
    }

    fn wait_and_take(&self) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.size {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
    }

    /// Takes a place as [`Gate::wait_and_take`] does, unless `stop` is
    /// set first (it is looked at every 100 ms). Returns whether it took one.
    fn take_unless(&self, stop: &AtomicBool) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.size {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *used += 1;
        true
    }

    fn leave(&self) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        self.freed.notify_all();
    }

    /// Waits until nobody is inside, for at most `limit`.
    fn wait_empty(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            used = self
                .freed
                .wait_timeout(used, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

struct GatePass<'a>(&'a Gate);

impl Drop for GatePass<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// A connection's place, taken by the acceptor and given back by the
/// connection's thread when it ends.
struct ConnectionPass(Arc<Shared>);

impl Drop for ConnectionPass {
    fn drop(&mut self) {
        self.0.connections.leave();
    }
}

/// What every connection's thread shares.
struct Shared {
    scanner: Arc<dyn Scan>,
    tree: MirrorTree,
    /// The tree for answers with system headers (`,sysheaders`), beside
    /// `tree`; `None` if it could not be made (such queries get `ARGC 0`).
    system_tree: Option<MirrorTree>,
    config: Config,
    connections: Gate,
    scans: Gate,
    stopping: AtomicBool,
    counts: Arc<Counts>,
}

/// A bound socket, not yet answering.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

/// A running server; [`Running::stop`] ends it.
pub struct Running {
    shared: Arc<Shared>,
    path: PathBuf,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds the socket at `path` (which must not exist).
    pub fn bind(path: &Path) -> io::Result<Server> {
        let listener = UnixListener::bind(path)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Starts answering on a thread of its own.
    pub fn start(self, scanner: Arc<dyn Scan>, tree: MirrorTree, config: Config) -> Running {
        let system_tree = MirrorTree::open_system(&tree)
            .map_err(|e| log::warn!("cannot make the mirror tree for system headers: {e}"))
            .ok();
        let shared = Arc::new(Shared {
            scanner,
            tree,
            system_tree,
            connections: Gate::new(config.max_connections),
            scans: Gate::new(config.max_scans),
            config,
            stopping: AtomicBool::new(false),
            counts: Arc::new(Counts::default()),
        });
        if let Some(reason) = &shared.config.poison {
            log::warn!("{reason}: every compile will be preprocessed locally");
        }
        let for_thread = Arc::clone(&shared);
        let listener = self.listener;
        let acceptor = std::thread::spawn(move || accept_loop(&listener, &for_thread));
        Running {
            shared,
            path: self.path,
            acceptor: Some(acceptor),
        }
    }
}

impl Running {
    /// The counts so far.
    pub fn counts(&self) -> Arc<Counts> {
        Arc::clone(&self.shared.counts)
    }

    /// The mirror tree's root.
    pub fn mirror_root(&self) -> &Path {
        self.shared.tree.root()
    }

    /// Stops accepting, waits (at most `limit`) for the connections being
    /// served, and removes the socket.
    pub fn stop(mut self, limit: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor at once; it also looks at `stopping` every
        // ACCEPT_WAKE, so that a socket file removed from under the server
        // cannot keep it waiting.
        let _ = UnixStream::connect(&self.path);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        if !self.shared.connections.wait_empty(limit) {
            log::warn!("stopping with clients still connected");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How often a waiting acceptor looks whether the server is stopping.
const ACCEPT_WAKE: Duration = Duration::from_millis(200);

/// The next connection, or `None` when the server is stopping. The
/// listener is non-blocking, so a client that leaves between the poll and
/// the accept cannot block it; the connection itself is made blocking (a
/// BSD one inherits the listener's flag).
fn next_connection(listener: &UnixListener, shared: &Shared) -> Option<io::Result<UnixStream>> {
    use std::os::fd::AsRawFd;
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return None;
        }
        match crate::sys::poll_one(listener.as_raw_fd(), libc::POLLIN, ACCEPT_WAKE) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(err) => return Some(Err(err)),
        }
        match listener.accept() {
            Ok((stream, _)) => return Some(stream.set_nonblocking(false).map(|()| stream)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return Some(Err(err)),
        }
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    if let Err(err) = listener.set_nonblocking(true) {
        log::error!("cannot make the include server's socket non-blocking: {err}");
        return;
    }
    loop {
        if !shared.connections.take_unless(&shared.stopping) {
            return;
        }
        let pass = ConnectionPass(Arc::clone(shared));
        let stream = match next_connection(listener, shared) {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(err)) if err.kind() == io::ErrorKind::Interrupted => continue,
            Some(Err(err)) => {
                log::error!("accept failed: {err}");
                // Out of descriptors, say: let connections end first.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        shared.counts.accepted.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("include-client".into())
            .spawn(move || serve(&pass.0, stream));
        if let Err(err) = spawned {
            log::error!("cannot start a thread for a client: {err}");
        }
    }
}

/// Answers one connection.
fn serve(shared: &Shared, stream: UnixStream) {
    let deadline = Instant::now() + shared.config.query_timeout;
    let query = proto::read_include_query(
        &mut DeadlineReader {
            stream: &stream,
            deadline,
        },
        &shared.config.limits,
    );
    let query = match query {
        Ok(query) => query,
        Err(err) => {
            shared.counts.bad_queries.fetch_add(1, Ordering::Relaxed);
            log::info!("dropping a client whose query could not be read: {err}");
            return;
        }
    };
    let system_headers = query.system_headers;
    let (answer, system) = match answer(shared, query) {
        Ok(answer) => {
            shared.counts.answered.fetch_add(1, Ordering::Relaxed);
            answer
        }
        Err(reason) => {
            shared.counts.not_covered.fetch_add(1, Ordering::Relaxed);
            log::info!("not covered: {reason}");
            (Vec::new(), SystemAnswer::default())
        }
    };
    let paths: Vec<&[u8]> = answer
        .iter()
        .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
        .collect();
    let mut out = proto::encode_include_answer(&paths);
    if system_headers {
        system.encode(&mut out);
    }
    let _ = stream.set_write_timeout(Some(shared.config.query_timeout));
    if let Err(err) = (&stream).write_all(&out) {
        log::info!("a client went away before its answer: {err}");
    }
}

/// The mirror paths for one query, and for a query with `SYSH` the
/// system headers' part.
fn answer(
    shared: &Shared,
    query: proto::IncludeQuery,
) -> Result<(Vec<PathBuf>, SystemAnswer), NotCovered> {
    if let Some(reason) = &shared.config.poison {
        return Err(NotCovered(reason.clone()));
    }
    let system_headers = query.system_headers;
    let request = request(query.cwd, query.argv, system_headers)?;
    let _pass = shared.scans.enter();
    let closure = shared.scanner.closure(&request)?;
    if !system_headers {
        return Ok((shared.tree.answer(&closure)?, SystemAnswer::default()));
    }
    match &shared.system_tree {
        Some(tree) => tree.answer_with_system(&closure),
        None => Err(NotCovered("no mirror tree for system headers".into())),
    }
}

/// The query as the scanner takes it: an absolute working directory and
/// arguments that are text.
fn request(cwd: Vec<u8>, argv: Vec<Vec<u8>>, system_headers: bool) -> Result<Request, NotCovered> {
    let cwd = PathBuf::from(std::ffi::OsString::from_vec(cwd));
    if !cwd.is_absolute() {
        return Err(NotCovered(format!(
            "the working directory {} is not absolute",
            cwd.display()
        )));
    }
    if argv.is_empty() {
        return Err(NotCovered("the command line is empty".into()));
    }
    let argv = argv
        .into_iter()
        .map(|arg| {
            String::from_utf8(arg).map_err(|e| {
                NotCovered(format!(
                    "an argument is not UTF-8: {:?}",
                    String::from_utf8_lossy(e.as_bytes())
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Request {
        cwd,
        argv,
        system_headers,
    })
}

/// Reads from a stream until a deadline for the whole query.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "the query took too long"))?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pump::closure::Input;
    use crate::testing::TestDir;

    /// A scanner for tests: the closure of `cc -c FILE` is FILE alone
    /// (relative to the working directory); `-x` is not covered.
    struct OneFile;

    impl Scan for OneFile {
        fn closure(&self, request: &Request) -> Result<Closure, NotCovered> {
            if request.argv.iter().any(|a| a == "-x") {
                return Err(NotCovered("-x is not known".into()));
            }
            let file = request.cwd.join(request.argv.last().unwrap());
            Ok(Closure {
                files: vec![Input {
                    path: file,
                    line_name: None,
                }],
                ..Closure::default()
            })
        }
    }

    struct Fixture {
        dir: TestDir,
        socket: PathBuf,
        running: Option<Running>,
    }

    fn start(name: &str, config: Config) -> Fixture {
        let dir = TestDir::new(name);
        let dir_path = std::fs::canonicalize(&dir.path).unwrap();
        std::fs::create_dir(dir_path.join("m")).unwrap();
        let tree = MirrorTree::open(&dir_path.join("m")).unwrap();
        let socket = dir_path.join("socket");
        let running = Server::bind(&socket)
            .unwrap()
            .start(Arc::new(OneFile), tree, config);
        Fixture {
            dir,
            socket,
            running: Some(running),
        }
    }

    fn config() -> Config {
        Config {
            poison: None,
            ..Config::default()
        }
    }

    impl Fixture {
        fn ask(&self, cwd: &Path, argv: &[&str]) -> Vec<Vec<u8>> {
            let mut stream = UnixStream::connect(&self.socket).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
            let cwd = std::os::unix::ffi::OsStrExt::as_bytes(cwd.as_os_str());
            stream
                .write_all(&proto::encode_include_query(cwd, &argv))
                .unwrap();
            proto::read_argv(&mut stream, &Limits::default()).unwrap()
        }

        fn root(&self) -> PathBuf {
            self.running.as_ref().unwrap().mirror_root().to_path_buf()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if let Some(running) = self.running.take() {
                running.stop(Duration::from_secs(5));
            }
        }
    }

    #[test]
    fn a_query_gets_mirror_paths_or_argc_0() {
        let f = start("server-answer", config());
        let cwd = std::fs::canonicalize(&f.dir.path).unwrap();
        std::fs::write(cwd.join("t.c"), "int t;\n").unwrap();
        let answer = f.ask(&cwd, &["gcc", "-c", "t.c"]);
        let mut want = f.root().into_os_string();
        want.push(cwd.join("t.c.lzo"));
        assert_eq!(answer, [std::os::unix::ffi::OsStringExt::into_vec(want)]);
        assert!(f.ask(&cwd, &["gcc", "-x", "c", "t.c"]).is_empty());
        assert!(f.ask(Path::new("rel"), &["gcc", "t.c"]).is_empty());
        assert!(f.ask(&cwd, &["gcc", "-c", "missing.c"]).is_empty());
        let counts = f.running.as_ref().unwrap().counts();
        assert_eq!(counts.answered.load(Ordering::Relaxed), 1);
        assert_eq!(counts.not_covered.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn bad_input_closes_that_connection_only() {
        let f = start("server-bad", config());
        let cwd = std::fs::canonicalize(&f.dir.path).unwrap();
        std::fs::write(cwd.join("t.c"), "int t;\n").unwrap();
        for garbage in [
            &b"GARBAGE GARBAGE"[..],
            b"CDIRffffffff",
            b"CDIR00000001/ARGCffffffff",
            b"CDIR00000001/ARGC00000001ARGV00ffffff",
            b"CDIR00000001/ARGC00000001ARGVzzzzzzzz",
        ] {
            let mut stream = UnixStream::connect(&f.socket).unwrap();
            stream.write_all(garbage).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            assert!(rest.is_empty(), "an answer to {garbage:?}");
        }
        assert_eq!(f.ask(&cwd, &["gcc", "-c", "t.c"]).len(), 1);
    }

    #[test]
    fn a_silent_client_blocks_nobody_and_is_dropped() {
        let f = start(
            "server-silent",
            Config {
                query_timeout: Duration::from_secs(3),
                max_connections: 4,
                ..config()
            },
        );
        let cwd = std::fs::canonicalize(&f.dir.path).unwrap();
        std::fs::write(cwd.join("t.c"), "int t;\n").unwrap();
        let mut silent = UnixStream::connect(&f.socket).unwrap();
        let started = Instant::now();
        for _ in 0..8 {
            assert_eq!(f.ask(&cwd, &["gcc", "-c", "t.c"]).len(), 1);
        }
        // Everyone was answered while the silent client still held its connection.
        silent
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let still_open = silent.read(&mut [0u8; 1]).unwrap_err().kind();
        assert!(matches!(
            still_open,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
        silent
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = silent.read_to_end(&mut rest);
        assert!(rest.is_empty());
        assert!(started.elapsed() >= Duration::from_secs(2));
    }

    #[test]
    fn stopping_does_not_hang_when_the_socket_file_was_removed() {
        // Its wake-up connect then finds nothing; the acceptor must still
        // notice. The stop runs on a thread so that a hang fails the test.
        let mut f = start("server-unlinked", config());
        f.dir.write("t.c", "int t;\n");
        let cwd = std::fs::canonicalize(&f.dir.path).unwrap();
        assert_eq!(f.ask(&cwd, &["gcc", "-c", "t.c"]).len(), 1);
        std::fs::remove_file(&f.socket).unwrap();
        let running = f.running.take().unwrap();
        let (done, stopped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            running.stop(Duration::from_millis(200));
            let _ = done.send(());
        });
        assert!(
            stopped.recv_timeout(Duration::from_secs(10)).is_ok(),
            "stop() still waits after 10 s"
        );
    }

    #[test]
    fn stopping_does_not_wait_for_a_silent_client_holding_every_place() {
        let mut f = start(
            "server-stop",
            Config {
                max_connections: 1,
                ..config()
            },
        );
        let _silent = UnixStream::connect(&f.socket).unwrap();
        let counts = f.running.as_ref().unwrap().counts();
        let accepted = || counts.accepted.load(Ordering::Relaxed) == 1;
        assert!(crate::testing::wait_until(
            Duration::from_secs(10),
            accepted
        ));
        let _queued = UnixStream::connect(&f.socket).unwrap();
        let started = Instant::now();
        f.running.take().unwrap().stop(Duration::from_millis(200));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(!f.socket.exists());
    }

    #[test]
    fn many_clients_at_once_get_their_own_answers() {
        let f = start("server-many", config());
        let cwd = std::fs::canonicalize(&f.dir.path).unwrap();
        let root = f.root();
        std::thread::scope(|s| {
            for i in 0..16 {
                let (f, cwd, root) = (&f, &cwd, &root);
                s.spawn(move || {
                    let name = format!("t{i}.c");
                    std::fs::write(cwd.join(&name), format!("int t{i};\n")).unwrap();
                    let answer = f.ask(cwd, &["gcc", "-c", &name]);
                    let mut want = root.clone().into_os_string();
                    want.push(cwd.join(format!("{name}.lzo")));
                    assert_eq!(answer, [std::os::unix::ffi::OsStringExt::into_vec(want)]);
                });
            }
        });
    }

    #[test]
    fn an_include_path_variable_makes_every_answer_argc_0() {
        let f = start(
            "server-poison",
            Config {
                poison: Some("CPATH is set".into()),
                ..config()
            },
        );
        let cwd = std::fs::canonicalize(&f.dir.path).unwrap();
        std::fs::write(cwd.join("t.c"), "int t;\n").unwrap();
        assert!(f.ask(&cwd, &["gcc", "-c", "t.c"]).is_empty());
    }
}
