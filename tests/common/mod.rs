//! Helpers shared by the integration tests; each test crate uses only some of them.
#![allow(dead_code)]

pub mod compare;
pub mod cross;
pub mod daemon;
pub mod pump;
/// The test support the unit tests use too (`src/testing.rs`, which the
/// library compiles only for its own tests).
#[path = "../../src/testing.rs"]
pub mod testing;

pub use testing::{wait_until, TestDir};

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::Duration;

/// The source tree (Cargo.toml's directory).
pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A port of 127.0.0.1 that refuses connections for as long as the
/// returned socket lives: bound, never listening, so that no other test
/// can be handed the port meanwhile (as a port from [`free_port`] can).
pub fn refusing_port() -> (socket2::Socket, u16) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&addr.into()).unwrap();
    let port = sock.local_addr().unwrap().as_socket().unwrap().port();
    (sock, port)
}

/// A port that was free a moment ago on 127.0.0.1 (bound to port 0 and
/// closed again), for programs that cannot take a listening socket from
/// the test, and for a port that nobody listens on.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Output bytes as text, for messages and comparisons.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The reason of a daemon's reply that is exactly one `DENY` packet and
/// nothing after it; `None` for any other reply.
pub fn deny_reason(reply: &[u8]) -> Option<String> {
    use distcc_rs::proto;
    let header: &[u8; proto::HEADER_LEN] = reply.get(..proto::HEADER_LEN)?.try_into().ok()?;
    let len = proto::deny_length(header).ok()??;
    let body = &reply[proto::HEADER_LEN..];
    (body.len() == len && len > 0).then(|| proto::deny_reason(body))
}

/// Runs a command (the compiler first) here, with the local compiler, in `cwd`.
pub fn local(cwd: &Path, args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// One source in each of C (`hello.c`), C++ (`vec.cc`) and Objective-C
/// (`obj.m`), for the tests that compare the three languages' objects.
pub fn write_c_cxx_objc_sources(work: &TestDir) {
    work.write(
        "hello.c",
        "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n",
    );
    work.write(
        "vec.cc",
        "#include <vector>\n#include <numeric>\nint sum(const std::vector<int>& v) {\n\
         return std::accumulate(v.begin(), v.end(), 0); }\n",
    );
    work.write(
        "obj.m",
        "@interface Counter { int n; }\n- (int)bump;\n@end\n\
         @implementation Counter\n- (int)bump { return ++n; }\n@end\n",
    );
}

/// The object local `gcc -c SRC` makes in `cwd`, leaving nothing behind.
pub fn local_object(cwd: &Path, src: &str) -> Vec<u8> {
    let out = local(cwd, &["gcc", "-c", src, "-o", "local.o"]);
    assert!(
        out.status.success(),
        "local gcc -c {src}: {}",
        text(&out.stderr)
    );
    let bytes = std::fs::read(cwd.join("local.o")).unwrap();
    std::fs::remove_file(cwd.join("local.o")).unwrap();
    bytes
}

/// The compiler's own diagnostic lines about `input` (`x.c: In function`,
/// `x.c:3:7: warning: ...`), without the source excerpts under them: the
/// server has no copy of the source to quote from.
pub fn diagnostics(stderr: &[u8], input: &str) -> Vec<String> {
    text(stderr)
        .lines()
        .filter(|l| l.starts_with(&format!("{input}:")) || l.contains(&format!("/{input}:")))
        .map(str::to_string)
        .collect()
}

/// Waits up to `limit` for `child` to exit and returns its status, or None
/// if it still runs (the caller decides whether to kill it).
pub fn exited_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    let _ = wait_until(limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

/// A listener that never accepts, with its queue filled: further SYNs are
/// dropped, so a connect to its address hangs as it would to a powered-off
/// host. Keep the value alive for as long as the address must hang.
pub struct Unanswered {
    pub addr: std::net::SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<std::net::TcpStream>,
}

pub fn unanswered_listener() -> Unanswered {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&any.into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let fill = std::time::Duration::from_millis(200);
    let fillers = (0..4)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, fill).ok())
        .collect();
    Unanswered {
        addr,
        _listener: listener,
        _fillers: fillers,
    }
}

/// Every file under `dir` (dot files and subdirectories too) whose name
/// ends in `.EXT`, sorted.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
