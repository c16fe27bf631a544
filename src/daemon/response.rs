//! The daemon's answer to a job that reached its compiler: the response in
//! distccd's form, how the job counts in the stats, and its summary word.

use std::io;
use std::process::ExitStatus;

use super::hint;
use super::job::{Results, ServerJob};
use super::stats::Outcome;
use crate::exitcode::ExitCode;
use crate::proto::Response;

/// A job's response and how it ended.
pub struct Answer {
    /// The encoded response.
    pub out: Vec<u8>,
    pub outcome: Outcome,
    /// The word of distccd's job summary line (`COMPILE_OK`, ...).
    pub word: &'static str,
    /// The wait status the response reports.
    pub status: u32,
}

/// A line of the daemon's own in a job's SERR, in distccd's format, so a
/// client shows it as it would show distccd's.
fn serr_line(function: &str, text: &str) -> String {
    format!(
        "distccd[{}] ({function}) ERROR: {text}\n",
        std::process::id()
    )
}

/// A job whose compiler could not be run, answered as distccd does.
pub fn compiler_missing(job: &ServerJob, err: &io::Error) -> Answer {
    let program = String::from_utf8_lossy(&job.program);
    let message = serr_line("dcc_execvp", &format!("failed to exec {program}: {err}"));
    log::error!("failed to exec {program}: {err}");
    let status = ExitCode::CompilerMissing.as_wait_status();
    let out = Response {
        version: job.version,
        status,
        stderr: message.as_bytes(),
        stdout: b"",
        object: None,
        dotd: &[],
    }
    .encode();
    Answer {
        out,
        outcome: Outcome::CompileError,
        word: "COMPILER_MISSING",
        status,
    }
}

/// A compiler killed at `--job-lifetime`.
pub fn timed_out(job: &ServerJob, results: Results) -> Answer {
    let status = ExitCode::Timeout.as_wait_status();
    let message = serr_line("dcc_collect_child", "Compilation takes too long, timeout.");
    let mut stderr = results.stderr;
    stderr.extend_from_slice(message.as_bytes());
    let out = Response {
        version: job.version,
        status,
        stderr: &stderr,
        stdout: &results.stdout,
        object: None,
        dotd: &[],
    }
    .encode();
    Answer {
        out,
        outcome: Outcome::Timeout,
        word: "COMPILE_TIMEOUT",
        status,
    }
}

/// A compiler that exited on its own, for the client at `peer`.
pub fn compiled(job: &ServerJob, status: ExitStatus, results: &Results, peer: &str) -> Answer {
    use std::os::unix::process::ExitStatusExt;
    let raw = status.into_raw() as u32;
    let mut out = Response {
        version: job.version,
        status: raw,
        stderr: &results.stderr,
        stdout: &results.stdout,
        object: results.object.as_deref(),
        dotd: &results.dotd,
    }
    .encode();
    let (outcome, word) = match (raw, &results.object) {
        (0, Some(_)) => (Outcome::Ok, "COMPILE_OK"),
        (0, None) => {
            // distccd 3.4 stops after SOUT when the compiler left no
            // output; the client sees a truncated response.
            log::error!(
                "compiler succeeded but wrote no output for {}",
                String::from_utf8_lossy(job.input_name())
            );
            out.truncate(out.len() - crate::proto::HEADER_LEN);
            (Outcome::CompileError, "COMPILE_NO_OUTPUT")
        }
        _ => {
            log_hint(job, &results.stderr, peer);
            (Outcome::CompileError, "COMPILE_ERROR")
        }
    };
    Answer {
        out,
        outcome,
        word,
        status: raw,
    }
}

/// Logs why gcc may have failed on clang's input, if that is the likely cause.
fn log_hint(job: &ServerJob, stderr: &[u8], peer: &str) {
    let hint = hint::gcc_input_to_clang(
        peer,
        &String::from_utf8_lossy(&job.argv[0]),
        &job.input_path(),
        stderr,
    );
    if let Some(hint) = hint {
        log::warn!("{hint}");
    }
}
