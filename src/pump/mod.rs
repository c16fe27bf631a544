//! Pump mode's include server: it tells a client which files a compile reads, so that the helper can preprocess.
//!
//! `closure` is the boundary between the scanner, which finds the files, and
//! the server (`server`), which answers clients in distcc 3.4's
//! include-server protocol. `mirror_tree` writes the files of an answer
//! where the client reads them; `session` is one `pump` run: its private
//! directory, the mirror root, starting and stopping.

use std::sync::Arc;

pub mod closure;
pub mod mirror_tree;
pub mod server;
pub mod session;

/// Stands in for the scanner until it is part of the build: it covers
/// nothing, so every compile is preprocessed locally.
struct NoScanner;

impl server::Scan for NoScanner {
    fn closure(&self, _: &closure::Request) -> Result<closure::Closure, closure::NotCovered> {
        Err(closure::NotCovered(
            "no include scanner in this build".into(),
        ))
    }
}

/// The scanner the include server asks.
pub fn scanner() -> Arc<dyn server::Scan> {
    Arc::new(NoScanner)
}
