//! Pump mode's include server: it tells a client which files a compile reads, so that the helper can preprocess.
//!
//! `closure` is the boundary between the scanner (`scan`), which finds the
//! files, and the server (`server`), which answers clients in distcc 3.4's
//! include-server protocol. `mirror_tree` writes the files of an answer
//! where the client reads them; `session` is one `pump` run: its private
//! directory, the mirror root, starting and stopping.

use std::sync::Arc;

pub mod closure;
pub mod mirror_tree;
pub mod scan;
pub mod server;
pub mod session;

impl server::Scan for scan::Scanner {
    fn closure(&self, request: &closure::Request) -> Result<closure::Closure, closure::NotCovered> {
        scan::Scanner::closure(self, request)
    }
}

/// The scanner the include server asks, with its caches for one build.
pub fn scanner() -> Arc<dyn server::Scan> {
    Arc::new(scan::Scanner::new())
}
