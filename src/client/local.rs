//! Running the compiler and the preprocessor on this machine, with the recursion safeguard set for them.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::exitcode::ExitCode;
use crate::masquerade::{self, find_program};

/// How children are started: the PATH they search (trimmed of masquerade
/// directories, or None to keep ours) and their `_DISTCC_SAFEGUARD` value.
pub struct Launcher {
    pub path: Option<OsString>,
    pub safeguard: String,
}

impl Launcher {
    fn command(&self, argv: &[OsString]) -> Command {
        // The program is looked up here, on the children's PATH, as execvp
        // would: given a changed PATH and a bare name, std falls back from
        // posix_spawn to fork and waits for the exec, which costs a
        // preprocessor start several milliseconds.
        let mut cmd = match self
            .path
            .as_deref()
            .and_then(|path| find_program(&argv[0], path))
        {
            Some(program) => {
                let mut cmd = Command::new(program);
                cmd.arg0(&argv[0]);
                cmd
            }
            None => Command::new(&argv[0]),
        };
        cmd.args(&argv[1..]);
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        cmd.env(masquerade::SAFEGUARD_VAR, &self.safeguard);
        cmd
    }

    /// Runs `argv` with our stdin, stdout and stderr and returns distcc's
    /// exit code for it: the compiler's code, 128+signal, or 110 if it
    /// could not be started.
    pub fn run(&self, argv: &[OsString]) -> i32 {
        match self.command(argv).status() {
            Ok(status) => exit_code(status),
            Err(err) => {
                log::error!("failed to exec {}: {err}", argv[0].to_string_lossy());
                ExitCode::CompilerMissing.into()
            }
        }
    }

    /// Where a command named `name` would be found: `name` itself if it
    /// holds a `/`, else on the children's PATH.
    pub fn resolve(&self, name: &OsStr) -> Option<PathBuf> {
        if name.as_bytes().contains(&b'/') {
            return Some(PathBuf::from(name));
        }
        let path = self.path.clone().or_else(|| std::env::var_os("PATH"))?;
        find_program(name, &path)
    }

    /// Runs a short command of our own (the object check's probe) with
    /// stdin from /dev/null and its output captured.
    pub fn probe(&self, argv: &[OsString]) -> io::Result<std::process::Output> {
        self.command(argv).stdin(Stdio::null()).output()
    }

    /// Starts the preprocessor with stdin from /dev/null and stdout into `out`.
    pub fn spawn_cpp(&self, argv: &[OsString], out: File) -> io::Result<Child> {
        let child = self
            .command(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .spawn()?;
        super::output::set_running_child(child.id());
        Ok(child)
    }
}

/// distcc's exit code for a finished child: its code, or 128+signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => ExitCode::DistccFailed.into(),
    }
}

/// The same for a raw wait status received from a server.
pub fn wait_status_code(status: u32) -> i32 {
    exit_code(ExitStatus::from_raw(status as i32))
}

/// Waits for the preprocessor and returns whether it succeeded.
pub fn wait_cpp(mut child: Child) -> io::Result<i32> {
    let status = child.wait();
    super::output::set_running_child(0);
    Ok(exit_code(status?))
}

/// The basename of a path as bytes, for messages and the state file.
pub fn display_name(path: &OsStr) -> String {
    std::path::Path::new(path)
        .file_name()
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
