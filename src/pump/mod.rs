//! Pump mode's include server: it tells a client which files a compile reads, so that the helper can preprocess.
//!
//! `closure` is the boundary between the scanner, which finds the files, and
//! the server, which answers clients in distcc 3.4's include-server protocol.

pub mod closure;
pub mod scan;
