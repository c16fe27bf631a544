//! Pump mode (protocol 3) on the daemon: the job tree of a request's files and links, made beneath the job's root so that no path leaves it, and distccd 3.4's argument rewriting (the `.d` file's is in `dotd.rs`).
//!
//! A version 3 request names the client's working directory (CDIR) and
//! sends the source and its headers as a file list of NAMEs, each a FILE
//! (LZO1X-compressed) or a LINK. The daemon rebuilds them under the job's
//! root, `JOBDIR/root`, at `root + NAME`, runs the compiler in
//! `root + CDIR`, and sends back the object and the `.d` file, which the
//! compiler writes into `JOBDIR/out` (the sandbox keeps the tree read-only).
//!
//! distccd 3.4 joins the path strings and follows whatever links a client
//! made (pump-notes §1.8). Here every name must pass
//! [`mirror::check_path`], every directory on the way is opened with
//! `O_NOFOLLOW|O_DIRECTORY` from the root's descriptor, every file is made
//! with `O_CREAT|O_EXCL|O_NOFOLLOW`, a name may not pass through a link of
//! the same request, and a link target is either absolute (the root is put
//! in front of it, as 3.4 does) or the system-directory form. The job
//! directory is removed by `remove_dir_all`, which removes links and never
//! follows them (`JobDir`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{CStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::beneath;
use crate::filename;
use crate::mirror;
use crate::options::{self, Compile, Output, Role, Token, Tokens, Value};
use crate::proto::Limits;
use crate::sysheaders::Hash;

use super::header_store::{self, HeaderStore};

/// The most directories a tree keeps open while its request comes in
/// ([`Tree::dir`]): past it, it closes them all and opens again as it goes.
/// Every request being received holds up to this many descriptors.
const MAX_OPEN_DIRS: usize = 64;

/// A pump job's tree: the root, the client's working directory in it, and
/// what the request has made so far.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    root_fd: OwnedFd,
    cwd: PathBuf,
    names: HashSet<Vec<u8>>,
    links: HashSet<Vec<u8>>,
    /// The system-directory links, made at the end: (name, target).
    system: Vec<(Vec<u8>, Vec<u8>)>,
    /// The FILE being received: its name and compressed bytes.
    pending: Option<(Vec<u8>, Vec<u8>)>,
    /// Decompressed bytes the request may still make.
    budget: u64,
    max_file: usize,
    /// Drop a first line `#line 1 "/ABSOLUTE"` from each file.
    drop_lines: bool,
    /// The buffers files are received and decompressed into, kept from
    /// file to file.
    spare: Vec<u8>,
    scratch: Vec<u8>,
    /// The daemon's store, which every FILE goes through and headers sent
    /// by hash (`,sysheaders`) come from.
    store: Option<Arc<HeaderStore>>,
    /// `,sysheaders`: each header sent by hash, and whether the store had it.
    headers: Vec<(Vec<u8>, Hash, bool)>,
    /// The headers whose bodies the client is to send, in order.
    needed: VecDeque<(Vec<u8>, Hash)>,
    /// The header body being received: its name, claimed hash and bytes.
    receiving: Option<(Vec<u8>, Hash, Vec<u8>)>,
    /// The directories made or opened so far, by their components joined
    /// with `/` ([`Tree::dir`]); at most [`MAX_OPEN_DIRS`], and none after
    /// [`Tree::finish`].
    dirs: HashMap<Vec<u8>, OwnedFd>,
    /// FILEs made, and how many of them the store knew by their
    /// compressed bytes.
    files: usize,
    files_known: usize,
}

/// How a job's headers sent by hash came: from the store, or as bodies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderCounts {
    pub from_store: usize,
    pub received: usize,
}

/// Shows a client's path in a refusal.
fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).escape_debug().to_string()
}

impl Tree {
    /// Makes the root in `job_dir` and the client's working directory
    /// `cdir` in it, or says why `cdir` is refused.
    pub fn create(job_dir: &Path, cdir: &[u8], limits: &Limits) -> Result<Tree, String> {
        mirror::check_path(cdir).map_err(|e| format!("CDIR '{}' {e}", shown(cdir)))?;
        let root = job_dir.join("root");
        let made = std::fs::create_dir(&root).and_then(|()| {
            let path = beneath::cstring(root.as_os_str().as_bytes())?;
            beneath::open_dir(libc::AT_FDCWD, &path, false)
        });
        let root_fd = made.map_err(|e| format!("cannot make the job's root: {e}"))?;
        let tree = Tree {
            cwd: under(&root, cdir),
            root,
            root_fd,
            names: HashSet::new(),
            links: HashSet::new(),
            system: Vec::new(),
            pending: None,
            budget: limits.max_files_total,
            max_file: limits.max_file as usize,
            drop_lines: false,
            spare: Vec::new(),
            scratch: Vec::new(),
            store: None,
            headers: Vec::new(),
            needed: VecDeque::new(),
            receiving: None,
            dirs: HashMap::new(),
            files: 0,
            files_known: 0,
        };
        beneath::make_dirs(tree.root_fd.as_raw_fd(), components(cdir), 0o755)
            .map_err(|e| format!("cannot make CDIR '{}': {e}", shown(cdir)))?;
        Ok(tree)
    }

    /// The root: the client's `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the compiler runs: the root and the client's working directory.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// Checks a NAME: the path rules, no duplicate, no link of this
    /// request on the way.
    fn check_name(&mut self, name: &[u8]) -> Result<(), String> {
        let is_link = |p: &[u8]| self.links.contains(p) || self.system.iter().any(|(n, _)| n == p);
        let through = (1..name.len())
            .filter(|&i| name[i] == b'/')
            .find(|&i| is_link(&name[..i]));
        if let Some(i) = through {
            return Err(format!(
                "NAME '{}' passes through the link '{}' of the same request",
                shown(name),
                shown(&name[..i])
            ));
        }
        self.check_new(name)
    }

    /// Checks a NAME's path rules, and that it has not come before.
    fn check_new(&mut self, name: &[u8]) -> Result<(), String> {
        mirror::check_path(name).map_err(|e| format!("NAME '{}' {e}", shown(name)))?;
        if !self.names.insert(name.to_vec()) {
            return Err(format!("NAME '{}' is sent twice", shown(name)));
        }
        Ok(())
    }

    /// A FILE of `len` compressed bytes begins at `name`.
    pub fn begin_file(&mut self, name: Vec<u8>, len: u32) -> Result<(), String> {
        self.check_name(&name)?;
        let body = self
            .body_buffer(len)
            .map_err(|e| format!("cannot hold FILE '{}': {e}", shown(&name)))?;
        self.pending = Some((name, body));
        Ok(())
    }

    /// The tree's spare buffer, emptied, with room for a body of `len`
    /// claimed bytes up to 1 MiB: a client that claims much and sends
    /// little holds no more.
    fn body_buffer(&mut self, len: u32) -> Result<Vec<u8>, std::collections::TryReserveError> {
        let mut body = std::mem::take(&mut self.spare);
        body.clear();
        body.try_reserve_exact((len as usize).min(1 << 20))?;
        Ok(body)
    }

    /// Keeps a received body's buffer as the spare, unless it is large.
    fn recycle_received(&mut self, lzo: Vec<u8>) {
        if lzo.capacity() <= 1 << 20 {
            self.spare = lzo;
        }
    }

    /// More of the FILE (or header body) begun last.
    pub fn extend(&mut self, chunk: &[u8]) {
        if let Some((_, _, body)) = &mut self.receiving {
            body.extend_from_slice(chunk);
        } else if let Some((_, body)) = &mut self.pending {
            body.extend_from_slice(chunk);
        }
    }

    /// `body` decompressed within the per-file cap and what is left of
    /// the request's, which it then takes from. The buffer is the tree's
    /// own, reused from file to file (a kernel source brings 700): with a
    /// fresh one per file, the daemon faulted its pages in again each time.
    fn decompress(&mut self, name: &[u8], lzo: &[u8]) -> Result<Vec<u8>, String> {
        let limit = self.file_limit();
        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        if !lzo.is_empty() {
            crate::lzo::decompress_into(lzo, limit, &mut body)
                .map_err(|e| format!("cannot decompress FILE '{}': {e}", shown(name)))?;
        }
        self.budget -= body.len() as u64;
        Ok(body)
    }

    /// The most bytes the next FILE may make: the per-file cap, or what is
    /// left of the job's total if that is less.
    fn file_limit(&self) -> usize {
        self.max_file
            .min(usize::try_from(self.budget).unwrap_or(usize::MAX))
    }

    /// Gives the buffer [`Tree::decompress`] lent back, unless it is large
    /// (more than 4 MiB is not kept for the rest of the job).
    fn recycle(&mut self, body: Vec<u8>) {
        if body.capacity() <= 4 << 20 {
            self.scratch = body;
        }
    }

    /// The FILE begun last is complete: decompress it within the caps and
    /// create it. An empty body is an empty file (a forcing file).
    pub fn end_file(&mut self) -> Result<(), String> {
        if self.receiving.is_some() {
            return self.end_header_body();
        }
        let Some((name, lzo)) = self.pending.take() else {
            return Ok(());
        };
        let key = (self.store.is_some() && !lzo.is_empty())
            .then(|| header_store::packed_key(self.drop_lines, &lzo));
        self.files += 1;
        if let Some(key) = &key {
            if self.place_known(&name, key)? {
                self.files_known += 1;
                self.recycle_received(lzo);
                return Ok(());
            }
        }
        let whole = self.decompress(&name, &lzo)?;
        self.recycle_received(lzo);
        let body = match self.drop_lines {
            true => mirror::strip_line_prefix(&whole),
            false => &whole[..],
        };
        let made = match self.store.clone() {
            None => self.make(&name, |dir, last| {
                beneath::write_new(dir, last, body, 0o644)
            }),
            Some(store) => {
                let mut kept = Ok(());
                self.make(&name, |dir, last| {
                    let packed = key.as_ref().map(|key| (key, whole.len() as u64));
                    kept = store.keep_and_place(body, packed, dir, last);
                    Ok(())
                })
                .and_then(|()| {
                    kept.map_err(|why| format!("cannot make FILE '{}': {why}", shown(&name)))
                })
            }
        };
        self.recycle(whole);
        made
    }

    /// Makes the FILE `name` from the store without decompressing it, if
    /// the store made a file from the same compressed bytes (`key`) before
    /// and still has it, and its size fits the caps, which it then takes
    /// from. Returns whether it did; if not, nothing was made.
    fn place_known(&mut self, name: &[u8], key: &Hash) -> Result<bool, String> {
        let Some(store) = self.store.clone() else {
            return Ok(false);
        };
        let Some((hash, size)) = store.known(key) else {
            return Ok(false);
        };
        if size > self.file_limit() as u64 {
            return Ok(false);
        }
        let mut placed = false;
        self.make(name, |dir, last| {
            placed = store.place(&hash, dir, last)?;
            Ok(())
        })?;
        if placed {
            self.budget -= size;
        }
        Ok(placed)
    }

    /// Whether to drop the include server's `#line 1 "NAME"` first line
    /// from each file. It names a header reached through an absolute search
    /// directory as the client's compiler does, for a daemon that leaves its
    /// root in `__FILE__`. Under the root's prefix map the compiler names
    /// the file so by itself, and the line costs dearly: a directive before
    /// a header's include guard defeats gcc's multiple-include optimisation,
    /// so every later `#include` of it reads it again (a Linux kernel
    /// source compiled 2.6 times slower).
    pub fn drop_line_prefixes(&mut self, drop: bool) {
        self.drop_lines = drop;
    }

    /// The daemon's store, which every FILE body goes through (and headers
    /// sent by hash come from). Without one, files are written as they
    /// come.
    pub fn use_store(&mut self, store: Option<Arc<HeaderStore>>) {
        self.store = store;
    }

    /// A header sent by hash at `name`: made from the tree's store
    /// ([`Tree::use_store`]) if it has it, else put on the list of bodies
    /// to ask for. Without a store the request is refused.
    pub fn add_header(&mut self, name: Vec<u8>, hash: Hash) -> Result<(), String> {
        self.check_name(&name)?;
        let Some(store) = self.store.clone() else {
            return Err("this daemon keeps no system headers (its header store is missing)".into());
        };
        let mut placed = false;
        self.make(&name, |dir, last| {
            placed = store.place(&hash, dir, last)?;
            Ok(())
        })?;
        self.headers.push((name, hash, placed));
        Ok(())
    }

    /// The file list is in: which of its headers' bodies the client is to
    /// send (one flag per header, in order).
    pub fn needed_headers(&mut self) -> Vec<bool> {
        self.needed = self
            .headers
            .iter()
            .filter(|(_, _, placed)| !placed)
            .map(|(name, hash, _)| (name.clone(), *hash))
            .collect();
        self.headers.iter().map(|(_, _, placed)| !placed).collect()
    }

    /// The next needed header's body begins: `len` compressed bytes.
    pub fn begin_header_body(&mut self, len: u32) -> Result<(), String> {
        let Some((name, hash)) = self.needed.pop_front() else {
            return Err("a header body that was not asked for".into());
        };
        let body = self
            .body_buffer(len)
            .map_err(|e| format!("cannot hold the body of '{}': {e}", shown(&name)))?;
        self.receiving = Some((name, hash, body));
        Ok(())
    }

    /// The header body is complete: decompressed within the caps, checked
    /// against its hash by the store, stored and made in the tree.
    fn end_header_body(&mut self) -> Result<(), String> {
        let Some((name, hash, lzo)) = self.receiving.take() else {
            return Ok(());
        };
        let body = self.decompress(&name, &lzo)?;
        self.recycle_received(lzo);
        let store = self.store.clone().ok_or("no header store")?;
        let mut stored = Ok(());
        let made = self.make(&name, |dir, last| {
            stored = store.add_and_place(&hash, &body, dir, last);
            Ok(())
        });
        self.recycle(body);
        made?;
        stored.map_err(|why| format!("header '{}' refused: {why}", shown(&name)))
    }

    /// How many FILEs this job's tree has, and how many of them the store
    /// made without decompressing them ([`Tree::end_file`]).
    pub fn file_counts(&self) -> (usize, usize) {
        (self.files, self.files_known)
    }

    /// How this job's headers sent by hash came.
    pub fn header_counts(&self) -> HeaderCounts {
        let from_store = self.headers.iter().filter(|(_, _, p)| *p).count();
        HeaderCounts {
            from_store,
            received: self.headers.len() - from_store,
        }
    }

    /// A LINK at `name` to `target`: absolute (made relative to the root)
    /// or the system-directory form, which leaves the root on purpose.
    pub fn add_link(&mut self, name: Vec<u8>, target: Vec<u8>) -> Result<(), String> {
        let relative = !target.starts_with(b"/");
        if relative && mirror::is_system_link(&name, &target) && !target.contains(&0) {
            return self.add_system_link(name, target);
        }
        self.check_name(&name)?;
        if relative {
            return Err(format!(
                "LINK '{}' -> '{}': a relative target must be a system directory's",
                shown(&name),
                shown(&target)
            ));
        }
        mirror::check_path(&target).map_err(|e| format!("LINK target '{}' {e}", shown(&target)))?;
        let target = under(&self.root, &target).into_os_string().into_vec();
        self.make(&name, |dir, last| symlink_new(&target, dir, last))?;
        self.links.insert(name);
        Ok(())
    }

    /// A system-directory link. It is made at the end of the request
    /// ([`Tree::finish`]), after every file. One inside another (the
    /// include server sends `/usr/include/x86_64-linux-gnu` next to
    /// `/usr/include`, in either order) names the same directory of the
    /// daemon's, and only the outer one is made.
    fn add_system_link(&mut self, name: Vec<u8>, target: Vec<u8>) -> Result<(), String> {
        let inside = |inner: &[u8], outer: &[u8]| {
            inner.len() > outer.len() && inner.starts_with(outer) && inner[outer.len()] == b'/'
        };
        if self.system.iter().any(|(outer, _)| inside(&name, outer)) {
            return self.check_new(&name);
        }
        self.check_name(&name)?;
        self.system.retain(|(inner, _)| !inside(inner, &name));
        self.system.push((name, target));
        Ok(())
    }

    /// The request is complete: makes its system-directory links.
    pub fn finish(&mut self) -> Result<(), String> {
        for (name, target) in std::mem::take(&mut self.system) {
            self.make(&name, |dir, last| symlink_new(&target, dir, last))?;
            self.links.insert(name);
        }
        self.dirs.clear();
        Ok(())
    }

    /// Opens (making them) the directories of `name` beneath the root,
    /// never following a link, then makes its last component with `make`.
    fn make(
        &mut self,
        name: &[u8],
        make: impl FnOnce(RawFd, &CStr) -> io::Result<()>,
    ) -> Result<(), String> {
        let mut parts: Vec<&[u8]> = components(name).collect();
        let made = match parts.pop() {
            Some(last) => beneath::cstring(last).and_then(|last| {
                let dir = self.dir(&parts)?;
                make(dir, &last)
            }),
            None => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        };
        made.map_err(|e| format!("cannot make '{}' in the job's tree: {e}", shown(name)))
    }

    /// The directory `parts` beneath the root: made if missing and opened
    /// from its parent without following a link, then kept open for the
    /// request's later entries. A kernel source's 700 headers sit in a few
    /// dozen directories; opening every directory on the way for each file
    /// cost 20 system calls a file.
    fn dir(&mut self, parts: &[&[u8]]) -> io::Result<RawFd> {
        let Some((last, up)) = parts.split_last() else {
            return Ok(self.root_fd.as_raw_fd());
        };
        let key = parts.join(&b'/');
        if let Some(fd) = self.dirs.get(&key) {
            return Ok(fd.as_raw_fd());
        }
        let parent = self.dir(up)?;
        let opened = beneath::make_dirs(parent, [*last], 0o755)?;
        if self.dirs.len() >= MAX_OPEN_DIRS {
            // `parent` may close here: it is not used again.
            self.dirs.clear();
        }
        let fd = opened.as_raw_fd();
        self.dirs.insert(key, opened);
        Ok(fd)
    }
}

/// The non-empty components of an absolute path.
fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&c| c == b'/').filter(|c| !c.is_empty())
}

/// `path` (absolute) under `root`: the two strings joined.
fn under(root: &Path, path: &[u8]) -> PathBuf {
    let mut joined = root.as_os_str().as_bytes().to_vec();
    joined.extend_from_slice(path);
    PathBuf::from(OsString::from_vec(joined))
}

/// Creates the symlink `name` in `dir` to `target`; nothing may be there.
fn symlink_new(target: &[u8], dir: RawFd, name: &CStr) -> io::Result<()> {
    beneath::symlink(&beneath::cstring(target)?, dir, name)
}

/// The options whose absolute path argument gets the root in front
/// (distccd 3.4's `include_options`), joined or separate.
const ROOTED: [&str; 9] = [
    "-I",
    "-idirafter",
    "-imacros",
    "-include",
    "-iprefix",
    "-iquote",
    "-isystem",
    "-iwithprefix",
    "-iwithprefixbefore",
];

/// Where a pump job's files are, for its arguments.
pub struct Paths<'a> {
    /// The job's root: the client's `/`.
    pub root: &'a Path,
    /// The temporary object.
    pub output: &'a Path,
    /// The `.d` file the compiler writes.
    pub deps: &'a Path,
    /// Map the root away (`-ffile-prefix-map`): for gcc and clang, which
    /// take the option.
    pub map_root: bool,
}

/// The prefix-map options whose absolute old prefix gets the root in front.
const PREFIX_MAPS: [&[u8]; 3] = [
    b"-fdebug-prefix-map=",
    b"-ffile-prefix-map=",
    b"-fmacro-prefix-map=",
];

/// A pump job's compiler arguments, as distccd 3.4's
/// `tweak_arguments_for_server` makes them: `-o` names `output`; the first
/// separate `-MT X` goes (X is the `.d` target, [`dotd_target`]); the
/// client's `-MF` goes; `-MMD` is added unless `-MD` or `-MMD` is there,
/// and `-MF deps` last; absolute paths of the [`ROOTED`] options and an
/// absolute source get the root in front. Unlike 3.4, for gcc and clang
/// the first argument maps the root back to `/` in everything the compiler
/// records (`-ffile-prefix-map=ROOT=`, which turns `ROOT/home/u/x.c` into
/// `/home/u/x.c`; first, because gcc tries the last map given first), and
/// the client's own prefix maps are rooted too.
pub fn arguments(
    argv: &[Vec<u8>],
    tokens: &Tokens,
    compile: &Compile,
    paths: &Paths,
) -> Vec<OsString> {
    let root = paths.root.as_os_str().as_bytes();
    let rooted = |path: &[u8]| -> Vec<u8> {
        match path.starts_with(b"/") {
            true => [root, path].concat(),
            false => path.to_vec(),
        }
    };
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(argv.len() + 6);
    if paths.map_root {
        out.push([&b"-ffile-prefix-map="[..], root, b"="].concat());
    }
    let mut mt_seen = false;
    for token in tokens.iter() {
        match token {
            Token::Word(i) if i == compile.input => out.push(rooted(&argv[i])),
            Token::Word(i) if compile.output == Some(Output::Word(i)) => {}
            Token::Word(i) | Token::Unknown(i) => out.push(argv[i].clone()),
            Token::Known(_, o, _) if o.role == Role::Output => {}
            Token::Known(_, o, _) if o.role == Role::DepsFile => {}
            Token::Known(at, _, Value::Separate(_)) if argv[at] == b"-MT" && !mt_seen => {
                mt_seen = true;
            }
            Token::Known(at, o, v) if ROOTED.contains(&o.name) => {
                let value = options::value_of(argv, at, o, v);
                match v {
                    Value::Separate(_) => out.extend([argv[at].clone(), rooted(value)]),
                    _ => out.push([o.name.as_bytes(), &rooted(value)].concat()),
                }
            }
            Token::Known(at, _, v) => {
                out.push(rooted_prefix_map(&argv[at], root));
                if let Value::Separate(j) = v {
                    out.push(argv[j].clone());
                }
            }
        }
    }
    out.extend([b"-o".to_vec(), paths.output.as_os_str().as_bytes().to_vec()]);
    if !tokens.has(Role::DepsDriver) {
        out.push(b"-MMD".to_vec());
    }
    out.extend([b"-MF".to_vec(), paths.deps.as_os_str().as_bytes().to_vec()]);
    out.into_iter().map(OsString::from_vec).collect()
}

/// A `-f…-prefix-map=OLD=NEW` with an absolute OLD, with the root in front
/// of OLD; any other argument as it is.
fn rooted_prefix_map(arg: &[u8], root: &[u8]) -> Vec<u8> {
    match PREFIX_MAPS.iter().find(|p| arg.starts_with(p)) {
        Some(p) if arg[p.len()..].starts_with(b"/") => [*p, root, &arg[p.len()..]].concat(),
        _ => arg.to_vec(),
    }
}

/// The target the `.d` file names: the first separate `-MT` value, else
/// the client's output name (given, or the compiler's default).
pub fn dotd_target(argv: &[Vec<u8>], tokens: &Tokens, compile: &Compile) -> Vec<u8> {
    let mt = tokens.iter().find_map(|t| match t {
        Token::Known(at, _, Value::Separate(j)) if argv[at] == b"-MT" => Some(argv[j].clone()),
        _ => None,
    });
    if let Some(target) = mt {
        return target;
    }
    match compile.output {
        Some(Output::Separate(j) | Output::Word(j)) => argv[j].clone(),
        Some(Output::Joined(at)) => argv[at][2..].to_vec(),
        None => filename::default_output(&argv[compile.input], compile.assemble_only)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDir;

    fn tree(dir: &TestDir) -> Tree {
        let job = dir.join("job");
        std::fs::create_dir(&job).unwrap();
        Tree::create(&job, b"/home/u/proj", &Limits::default()).unwrap()
    }

    fn file(tree: &mut Tree, name: &[u8], body: &[u8]) -> Result<(), String> {
        let lzo = if body.is_empty() {
            Vec::new()
        } else {
            crate::lzo::compress(body)
        };
        tree.begin_file(name.to_vec(), lzo.len() as u32)?;
        tree.extend(&lzo);
        tree.end_file()
    }

    /// A tree in its own job directory `name` in `dir`.
    fn tree_in(dir: &TestDir, name: &str) -> Tree {
        let job = dir.join(name);
        std::fs::create_dir(&job).unwrap();
        Tree::create(&job, b"/home/u/proj", &Limits::default()).unwrap()
    }

    /// Receives `body` as the next needed header's.
    fn header_body(tree: &mut Tree, body: &[u8]) -> Result<(), String> {
        let lzo = crate::lzo::compress(body);
        tree.begin_header_body(lzo.len() as u32)?;
        tree.extend(&lzo);
        tree.end_file()
    }

    #[test]
    fn headers_by_hash_come_from_the_store_or_as_checked_bodies() {
        let dir = TestDir::new("pump-tree-headers");
        let store = Arc::new(HeaderStore::create(&dir.path, 1 << 20, 100).unwrap());
        let (honest, other) = (&b"#define H 1\n"[..], &b"#define O 2\n"[..]);
        let (h, o) = (
            crate::sysheaders::hash(honest),
            crate::sysheaders::hash(other),
        );
        let mut t = tree_in(&dir, "none");
        let err = t.add_header(b"/usr/include/h.h".to_vec(), h).unwrap_err();
        assert!(err.contains("no system headers"), "{err}");
        let mut t = tree_in(&dir, "first");
        t.use_store(Some(store.clone()));
        t.add_header(b"/usr/include/h.h".to_vec(), h).unwrap();
        t.add_header(b"/usr/include/o.h".to_vec(), o).unwrap();
        assert_eq!(t.needed_headers(), [true, true]);
        header_body(&mut t, honest).unwrap();
        // A body that is not the one its hash names is refused.
        let err = header_body(&mut t, b"#define O 666\n").unwrap_err();
        assert!(err.contains("header '/usr/include/o.h' refused"), "{err}");
        assert!(!t.root().join("usr/include/o.h").exists());
        assert!(header_body(&mut t, other).is_err(), "a body not asked for");
        assert_eq!(
            std::fs::read(t.root().join("usr/include/h.h")).unwrap(),
            honest
        );
        // The next job gets the honest one from the store, the other not.
        let mut next = tree_in(&dir, "next");
        next.use_store(Some(store.clone()));
        for (name, hash) in [(&b"/usr/include/h.h"[..], h), (b"/usr/include/o.h", o)] {
            next.add_header(name.to_vec(), hash).unwrap();
        }
        assert_eq!(next.needed_headers(), [false, true]);
        header_body(&mut next, other).unwrap();
        assert_eq!(
            next.header_counts(),
            HeaderCounts {
                from_store: 1,
                received: 1
            }
        );
        // The tree's rules hold: no header through a link of the request.
        let mut linked = tree_in(&dir, "linked");
        linked
            .add_link(b"/usr/include".to_vec(), b"/elsewhere".to_vec())
            .unwrap();
        linked.use_store(Some(store));
        let err = linked
            .add_header(b"/usr/include/h.h".to_vec(), h)
            .unwrap_err();
        assert!(err.contains("passes through the link"), "{err}");
    }

    #[test]
    fn files_links_and_forcing_files_land_beneath_the_root() {
        let dir = TestDir::new("pump-tree");
        let mut t = tree(&dir);
        file(&mut t, b"/home/u/proj/t.c", b"int x;\n").unwrap();
        file(&mut t, b"/home/u/proj/sub/forcing_technique_271828", b"").unwrap();
        t.add_link(
            b"/home/u/proj/alias.h".to_vec(),
            b"/home/u/proj/t.c".to_vec(),
        )
        .unwrap();
        let system =
            |t: &mut Tree, dir: &[u8]| t.add_link(dir.to_vec(), mirror::system_link_target(dir));
        // Nested system directories, in both orders: only the outer is made.
        system(&mut t, b"/usr/include/x86_64-linux-gnu").unwrap();
        system(&mut t, b"/usr/include").unwrap();
        system(&mut t, b"/usr/include/c++").unwrap();
        system(&mut t, b"/usr/lib/gcc/x86_64-linux-gnu/12/include").unwrap();
        assert!(system(&mut t, b"/usr/include")
            .unwrap_err()
            .contains("twice"));
        let err = file(&mut t, b"/usr/include/stdio.h", b"x").unwrap_err();
        assert!(
            err.contains("passes through the link '/usr/include'"),
            "{err}"
        );
        t.finish().unwrap();
        assert!(t.cwd().is_dir());
        assert_eq!(std::fs::read(t.cwd().join("t.c")).unwrap(), b"int x;\n");
        assert_eq!(std::fs::read(t.cwd().join("alias.h")).unwrap(), b"int x;\n");
        assert!(t.cwd().join("sub").is_dir());
        let target = std::fs::read_link(t.root().join("usr/include")).unwrap();
        assert_eq!(
            target.as_os_str().as_bytes(),
            mirror::system_link_target(b"/usr/include")
        );
        assert!(t
            .root()
            .join("usr/lib/gcc/x86_64-linux-gnu/12/include")
            .is_symlink());
        assert_eq!(std::fs::read_dir(t.root().join("usr")).unwrap().count(), 2);
    }

    #[test]
    fn a_tree_that_drops_line_prefixes_writes_files_without_them() {
        let dir = TestDir::new("pump-lines");
        let mut t = tree(&dir);
        t.drop_line_prefixes(true);
        file(
            &mut t,
            b"/home/u/proj/h.h",
            b"#line 1 \"/home/u/proj/h.h\"\nint h;\n",
        )
        .unwrap();
        let got = std::fs::read(t.root().join("home/u/proj/h.h")).unwrap();
        assert_eq!(got, b"int h;\n");
    }

    #[test]
    fn escapes_duplicates_and_bad_links_are_refused() {
        let dir = TestDir::new("pump-escape");
        let mut t = tree(&dir);
        let err = file(&mut t, b"/../../canary", b"x").unwrap_err();
        assert!(err.contains("'..' component"), "{err}");
        t.add_link(b"/home/u/evil".to_vec(), b"/elsewhere".to_vec())
            .unwrap();
        let err = file(&mut t, b"/home/u/evil/through", b"x").unwrap_err();
        assert!(err.contains("passes through the link"), "{err}");
        let err = t
            .add_link(b"/home/u/rel".to_vec(), b"../../../../srv".to_vec())
            .unwrap_err();
        assert!(err.contains("system directory"), "{err}");
        file(&mut t, b"/home/u/proj/t.c", b"").unwrap();
        let err = file(&mut t, b"/home/u/proj/t.c", b"").unwrap_err();
        assert!(err.contains("sent twice"), "{err}");
        // A file where a directory was made, and the reverse.
        assert!(file(&mut t, b"/home/u/proj", b"").is_err());
        assert!(file(&mut t, b"/home/u/proj/t.c/x", b"").is_err());
        let job = dir.join("job2");
        std::fs::create_dir(&job).unwrap();
        let err = Tree::create(&job, b"/../../x", &Limits::default()).unwrap_err();
        assert!(err.starts_with("CDIR"), "{err}");
    }

    #[test]
    fn a_link_made_outside_the_request_is_never_followed() {
        // Even a link the kernel finds on the way (not one the request
        // made) stops the walk: O_NOFOLLOW on every component.
        let dir = TestDir::new("pump-nofollow");
        let outside = dir.join("outside");
        std::fs::create_dir(&outside).unwrap();
        let mut t = tree(&dir);
        std::os::unix::fs::symlink(&outside, t.root().join("home/u/sneaky")).unwrap();
        assert!(file(&mut t, b"/home/u/sneaky/x", b"x").is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn decompression_is_capped_per_file_and_in_total() {
        let dir = TestDir::new("pump-caps");
        let job = dir.join("job");
        std::fs::create_dir(&job).unwrap();
        let limits = Limits {
            max_file: 1000,
            max_files_total: 1500,
            ..Limits::default()
        };
        let mut t = Tree::create(&job, b"/w", &limits).unwrap();
        assert!(file(&mut t, b"/w/big", &[0; 1001]).is_err());
        file(&mut t, b"/w/a", &[0; 1000]).unwrap();
        assert!(file(&mut t, b"/w/b", &[0; 501]).is_err());
        file(&mut t, b"/w/c", &[0; 500]).unwrap();
    }

    #[test]
    fn files_in_more_directories_than_stay_open_land_where_named() {
        let dir = TestDir::new("pump-dirs");
        let mut t = tree(&dir);
        let name = |i: usize| format!("/w/d{}/e{}/f{i}.h", i % 37, i % (MAX_OPEN_DIRS + 5));
        for i in 0..3 * MAX_OPEN_DIRS {
            file(&mut t, name(i).as_bytes(), name(i).as_bytes()).unwrap();
            assert!(t.dirs.len() <= MAX_OPEN_DIRS);
        }
        t.finish().unwrap();
        assert!(
            t.dirs.is_empty(),
            "no directory stays open after the request"
        );
        for i in 0..3 * MAX_OPEN_DIRS {
            let path = t.root().join(&name(i)[1..]);
            assert_eq!(std::fs::read(path).unwrap(), name(i).as_bytes());
        }
    }

    #[test]
    fn a_file_sent_again_is_linked_from_the_store_within_the_caps() {
        use std::os::unix::fs::MetadataExt;
        let dir = TestDir::new("pump-known");
        let store = Arc::new(HeaderStore::create(&dir.path, 1 << 20, 100).unwrap());
        let body = b"#line 1 \"/w/h.h\"\n#define H 1\n".repeat(20);
        let lzo = crate::lzo::compress(&body);
        let make = |name: &str, limits: &Limits, stripped: bool| {
            let job = dir.join(name);
            std::fs::create_dir(&job).unwrap();
            let mut t = Tree::create(&job, b"/w", limits).unwrap();
            t.use_store(Some(store.clone()));
            t.drop_line_prefixes(stripped);
            let made = file(&mut t, b"/w/h.h", &body);
            (t, made)
        };
        let (first, made) = make("first", &Limits::default(), false);
        made.unwrap();
        let key = header_store::packed_key(false, &lzo);
        let (hash, size) = store.known(&key).expect("the store knows these bytes");
        assert_eq!(
            (hash, size),
            (crate::sysheaders::hash(&body), body.len() as u64)
        );
        // The same bytes again: the store's file, linked.
        let (again, made) = make("again", &Limits::default(), false);
        made.unwrap();
        let inode = |t: &Tree| std::fs::metadata(t.root().join("w/h.h")).unwrap().ino();
        assert_eq!(inode(&again), inode(&first));
        assert_eq!((first.file_counts(), again.file_counts()), ((1, 0), (1, 1)));
        assert_eq!(std::fs::read(again.root().join("w/h.h")).unwrap(), body);
        // Stripped of its #line prefix, the same bytes are another file.
        let (stripped, made) = make("stripped", &Limits::default(), true);
        made.unwrap();
        assert_ne!(inode(&stripped), inode(&first));
        assert_eq!(stripped.file_counts(), (1, 0));
        let text = std::fs::read(stripped.root().join("w/h.h")).unwrap();
        assert_eq!(
            text,
            &body[body.iter().position(|&b| b == b'\n').unwrap() + 1..]
        );
        // A known file still counts against the caps, per file and in total.
        let small = Limits {
            max_file: body.len() as u32 - 1,
            ..Limits::default()
        };
        let (_, made) = make("capped", &small, false);
        assert!(made.unwrap_err().contains("decompress"));
        let total = Limits {
            max_files_total: body.len() as u64 + 10,
            ..Limits::default()
        };
        let job = dir.join("total");
        std::fs::create_dir(&job).unwrap();
        let mut t = Tree::create(&job, b"/w", &total).unwrap();
        t.use_store(Some(store.clone()));
        file(&mut t, b"/w/h.h", &body).unwrap();
        assert_eq!(t.file_counts(), (1, 1));
        assert!(file(&mut t, b"/w/h2.h", &body).is_err());
    }

    fn words(line: &str) -> Vec<Vec<u8>> {
        line.split_whitespace().map(|w| w.into()).collect()
    }

    #[test]
    fn arguments_are_rewritten_as_distccd_does() {
        let argv = words(
            "gcc -MD -MF t.d -MT t.o -MT other -c /home/u/t.c -o t.o -I/abs -I rel \
             -isystem /sys -include /inc.h -iquote q -ffile-prefix-map=/home/u=. -x c",
        );
        let (tokens, compile) = options::check_pump_job(&argv).unwrap();
        let paths = Paths {
            root: Path::new("/R"),
            output: Path::new("/J/o.o"),
            deps: Path::new("/J/o.d"),
            map_root: true,
        };
        let args = arguments(&argv, &tokens, &compile, &paths);
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            args.join(" "),
            "-ffile-prefix-map=/R= -MD -MT other -c /R/home/u/t.c -I/R/abs -I rel \
             -isystem /R/sys -include /R/inc.h -iquote q -ffile-prefix-map=/R/home/u=. -x c \
             -o /J/o.o -MF /J/o.d"
        );
        assert_eq!(dotd_target(&argv, &tokens, &compile), b"t.o");
        let argv = words("gcc -c sub/t.c");
        let (tokens, compile) = options::check_pump_job(&argv).unwrap();
        // A compiler that is not gcc or clang gets no prefix map.
        let paths = Paths {
            map_root: false,
            ..paths
        };
        let args = arguments(&argv, &tokens, &compile, &paths);
        assert_eq!(args[0], "-c");
        assert_eq!(args[args.len() - 3], "-MMD");
        assert_eq!(dotd_target(&argv, &tokens, &compile), b"t.o");
    }
}
