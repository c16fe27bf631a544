//! The `daemon` applet (linked as `distccd`): distccd's command line.

use std::ffi::OsString;

pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("distccd: not yet");
    1
}
