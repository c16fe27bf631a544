//! What the include scanner found for one compile: the files, links and directories that a v3 request carries.

use std::path::PathBuf;

/// One compile as a client asks about it: its working directory and its
/// whole command line, compiler first, exactly as sent on the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    /// The client wants the system headers as files too (`,sysheaders`):
    /// the closure then fills [`Closure::system_files`] and the rest of
    /// the system part.
    pub system_headers: bool,
}

/// Everything the helper needs, besides its own system headers, to
/// preprocess the compile as the client would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closure {
    /// The regular files the compile reads, each once, by its realpath: the
    /// source first, then `-include`/`-imacros` files and headers in the
    /// order they were first reached. Files under `system_dirs` are left out.
    pub files: Vec<Input>,
    /// The symlinks met on the way to those files, each once: the link's
    /// path (its parents resolved) and its target as `readlink` gives it.
    pub links: Vec<Link>,
    /// Directories that must exist on the helper although no file in them
    /// is sent: the `sub` of `#include "sub/../x.h"`, and search
    /// directories that hold nothing the compile reads.
    pub dirs: Vec<PathBuf>,
    /// The compiler's default include directories, which the helper takes
    /// from its own file system (sent as system-directory links).
    pub system_dirs: Vec<PathBuf>,
    /// With [`Request::system_headers`]: the files under `system_dirs`
    /// the compile reads, by realpath, in the order first reached (the
    /// links and directories on their way are in `links` and `dirs`).
    pub system_files: Vec<PathBuf>,
    /// With [`Request::system_headers`]: the compiler's default search
    /// directories as it spells them, in its order.
    pub system_search: Vec<PathBuf>,
    /// With [`Request::system_headers`]: the files the compiler reads
    /// before the source by itself (gcc's `stdc-predef.h`), by the name
    /// it finds them under.
    pub preincludes: Vec<PathBuf>,
    /// The compile is C++ or Objective-C++.
    pub cplusplus: bool,
}

impl Closure {
    /// How many paths it holds, for the bounds of the caches that keep closures.
    pub fn paths(&self) -> usize {
        self.files.len()
            + self.links.len()
            + self.dirs.len()
            + self.system_dirs.len()
            + self.system_files.len()
    }
}

/// A file the compile reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// Its realpath on the client.
    pub path: PathBuf,
    /// The absolute name the client's compiler gives it (its `__FILE__`),
    /// when it was reached through an absolute search directory and so
    /// would carry the helper's root there. The include server then sends it
    /// as `.lzo.abs` with `#line 1 "<name>"` in front. `None` otherwise.
    pub line_name: Option<PathBuf>,
}

/// A symlink the compile passes through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// Why the scanner will not give a file list for a compile: the job then
/// goes in plain mode. The reason is one line, for the client's verbose log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotCovered(pub String);

impl std::fmt::Display for NotCovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotCovered {}
