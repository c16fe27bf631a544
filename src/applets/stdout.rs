//! The one writer every applet's standard output goes through.
//!
//! Each piece is written whole and flushed at once, so a failure is seen
//! where it happens: a broken pipe (the reader went away, as `| head` does)
//! ends the applet quietly with status 0; any other failure (`>/dev/full`)
//! is an error with distcc's I/O status, 107.

use std::io::{ErrorKind, Write};

use super::status::Error;
use crate::exitcode::ExitCode;

/// Writes all of `bytes` to stdout and flushes.
pub fn write(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|err| match err.kind() {
            ErrorKind::BrokenPipe => Error::StdoutClosed,
            _ => Error::exit(
                ExitCode::IoError,
                format!("failed to write to stdout: {}", crate::sys::strerror(&err)),
            ),
        })
}

/// Writes `text` to stdout; see [`write`].
pub fn print(text: impl AsRef<str>) -> Result<(), Error> {
    write(text.as_ref().as_bytes())
}
