//! distcc-rs: distcc's client, daemon, masquerade shims, text monitor and cross-helper generator in one multicall binary.
//!
//! The binary speaks distcc 3.4's wire protocol, so it mixes with real distcc
//! clients and servers. `main.rs` only dispatches; each applet lives in
//! `applets/`. The features (`client`, `daemon`, `monitor`, `pump`, `wrap`) build on
//! the shared, feature-neutral modules below (`proto`, `options`, `state`,
//! `env`, `masquerade`, `net`, `sys`, ...) and never import each other.

pub mod applets;
pub mod beneath;
pub mod channel;
pub mod client;
pub mod cluster;
pub mod daemon;
pub mod env;
pub mod exitcode;
pub mod filename;
pub mod identity;
pub mod keys;
pub mod load;
pub mod logging;
pub mod lzo;
pub mod masquerade;
pub mod mirror;
pub mod monitor;
pub mod net;
pub mod options;
pub mod proto;
pub mod pump;
pub mod sandbox;
pub mod state;
pub mod stats_page;
pub mod sys;
pub mod sysheaders;
#[cfg(test)]
mod testing;
pub mod wrap;

/// This build's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version banner for the program called `name` (the name it was
/// called by: `distcc`, `distccd`, `distcc-rs`). Line 1 is
/// `NAME VERSION TRIPLE`, which is what scripts and `lsdistcc` read from
/// distcc's own banner; the lines after it say what answers.
pub fn version_banner(name: &str) -> String {
    let called = if name == "distcc-rs" {
        String::new()
    } else {
        format!("This is distcc-rs {VERSION}, called as {name}.\n")
    };
    format!(
        "{name} {VERSION} {}\n  (protocols 1, 2 and 3) (default port {})\n\
         {called}\
         distcc-rs is free software under the GNU General Public License, version 2 or later.\n\
         It speaks the wire protocol of distcc 3.4 by Martin Pool and others.\n",
        env!("DISTCC_RS_TARGET"),
        proto::DEFAULT_PORT
    )
}
