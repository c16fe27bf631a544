//! Entry point: hands argv to the applet dispatcher and nothing else.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(distcc_rs::applets::dispatch(std::env::args_os().collect()))
}
