//! Entry point: hands argv to the applet dispatcher and nothing else.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = distcc_rs::applets::dispatch(std::env::args_os().collect());
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
