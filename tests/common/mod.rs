//! Helpers shared by the integration tests; each test crate uses only some of them.
#![allow(dead_code)]

pub mod cross;
pub mod daemon;

use std::path::Path;
use std::process::{Command, Output};

/// Output bytes as text, for messages and comparisons.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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
