//! distcc-rs: distcc's daemon (and, in time, client and tools) in one multicall binary.
//!
//! The binary speaks distcc 3.4's wire protocol, so it mixes with real distcc
//! clients and servers. `main.rs` only dispatches; each applet lives in
//! `applets/`, and the pieces they share live in the modules below.

pub mod applets;
pub mod client;
pub mod daemon;
pub mod env;
pub mod exitcode;
pub mod filename;
pub mod logging;
pub mod lzo;
pub mod monitor;
pub mod options;
pub mod proto;
pub mod state;
pub mod sys;
pub mod wrap;

/// This build's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version banner. Line 1 is `NAME VERSION TRIPLE`, which is what
/// scripts and `lsdistcc` read from distcc's own banner.
pub fn version_banner(name: &str) -> String {
    format!(
        "{name} {VERSION} {}\n  (protocols 1 and 2) (default port {})\n\
         distcc-rs is free software under the GNU General Public License, version 2 or later.\n\
         It speaks the wire protocol of distcc 3.4 by Martin Pool and others.\n",
        env!("DISTCC_RS_TARGET"),
        proto::DEFAULT_PORT
    )
}
