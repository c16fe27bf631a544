//! A distributed compile compared with a local run of the same command:
//! the objects and `.d` files byte for byte, the diagnostics line for line,
//! and the server's log for the job. Any client against any server.

use super::daemon::{Daemon, DebianDistccd};
use super::{diagnostics, local, text, wait_until, TestDir};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// A distcc server under test, as far as a comparison needs one.
pub trait Server {
    /// The host spec for DISTCC_HOSTS.
    fn host(&self, lzo: bool) -> String;
    /// The server's log so far.
    fn log(&self) -> String;
    /// What to call it in a failure.
    fn name(&self) -> &'static str;
}

impl Server for Daemon {
    fn host(&self, lzo: bool) -> String {
        Daemon::host(self, lzo)
    }
    fn log(&self) -> String {
        Daemon::log(self)
    }
    fn name(&self) -> &'static str {
        "distcc-rs daemon"
    }
}

impl Server for DebianDistccd {
    fn host(&self, lzo: bool) -> String {
        DebianDistccd::host(self, lzo)
    }
    fn log(&self) -> String {
        DebianDistccd::log(self)
    }
    fn name(&self) -> &'static str {
        "Debian distccd"
    }
}

/// How the distributed command is run: [`super::daemon::client`] (ours) or
/// [`super::daemon::distcc`] (Debian's), given the directory, the hosts,
/// the command and extra environment.
pub type Client = fn(&Path, &str, &[&str], &[(&str, &str)]) -> Output;

/// The number of job summary lines with `word` (COMPILE_OK, COMPILE_ERROR)
/// for `program input` in the server's log, waiting up to 5 s for at least
/// `want` of them: a server may log its summary after the client has its
/// object.
pub fn summaries_at_least(
    server: &dyn Server,
    word: &str,
    program: &str,
    input: &str,
    want: usize,
) -> usize {
    let tail = format!(" {program} {input}");
    let count = || {
        server
            .log()
            .lines()
            .filter(|l| l.contains(&format!(" {word} ")) && l.trim_end().ends_with(&tail))
            .count()
    };
    let _ = wait_until(Duration::from_secs(5), || count() >= want);
    count()
}

/// The number of job summary lines so far (see [`summaries_at_least`]).
pub fn summaries(server: &dyn Server, word: &str, program: &str, input: &str) -> usize {
    summaries_at_least(server, word, program, input, 0)
}

/// Runs `args` locally in `work`, then with `run` through `server` over
/// protocols 1 and 2 with `DISTCC_FALLBACK=0`, and checks that each remote
/// run succeeded, was compiled on the server (one more COMPILE_OK for
/// `program input`), wrote `outputs` identical to the local run's, printed
/// the same diagnostics and no complaint of the client's. Returns the local
/// run's diagnostics.
pub fn same_as_local(
    run: Client,
    server: &dyn Server,
    work: &TestDir,
    args: &[&str],
    outputs: &[&str],
    program: &str,
    input: &str,
) -> Vec<String> {
    let loc = local(&work.path, args);
    assert!(
        loc.status.success(),
        "local {args:?}: {}",
        text(&loc.stderr)
    );
    let expected: Vec<Vec<u8>> = outputs
        .iter()
        .map(|o| std::fs::read(work.join(o)).unwrap())
        .collect();
    let local_diags = diagnostics(&loc.stderr, input);
    for lzo in [false, true] {
        for o in outputs {
            std::fs::remove_file(work.join(o)).unwrap();
        }
        let before = summaries(server, "COMPILE_OK", program, input);
        let out = run(
            &work.path,
            &server.host(lzo),
            args,
            &[("DISTCC_FALLBACK", "0")],
        );
        assert!(
            out.status.success(),
            "{args:?} through {} (lzo={lzo}) failed: {}\nserver log:\n{}",
            server.name(),
            text(&out.stderr),
            server.log()
        );
        for (o, want) in outputs.iter().zip(&expected) {
            let got = std::fs::read(work.join(o))
                .unwrap_or_else(|e| panic!("{o} not written (lzo={lzo}): {e}"));
            assert!(
                got == *want,
                "{o} differs from the local run's ({}, lzo={lzo}): {} bytes, local {}",
                server.name(),
                got.len(),
                want.len()
            );
        }
        assert_eq!(
            diagnostics(&out.stderr, input),
            local_diags,
            "diagnostics differ (lzo={lzo}); client stderr:\n{}",
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).contains("distcc["),
            "the client complained (lzo={lzo}):\n{}",
            text(&out.stderr)
        );
        assert_eq!(
            summaries_at_least(server, "COMPILE_OK", program, input, before + 1),
            before + 1,
            "{} has no COMPILE_OK for {program} {input} (lzo={lzo}):\n{}",
            server.name(),
            server.log()
        );
    }
    local_diags
}
