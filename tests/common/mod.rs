//! Helpers shared by the integration tests; each test crate uses only some of them.
#![allow(dead_code)]

pub mod cross;
pub mod daemon;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

/// The source tree (Cargo.toml's directory).
pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
