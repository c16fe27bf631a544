//! The include server's mirror tree: each file a compile reads, LZO-compressed at `<root><realpath>.lzo`, with the system-directory links, mirror links and forcing files of distcc 3.4's include server.
//!
//! The root has exactly [`mirror::MIRROR_DEPTH`] components, so that a 3.4
//! client recovers each file's own name from its mirror path. A file is
//! written once per content: it is written again only when the source's
//! (device, inode, size, mtime) changes, always under a temporary name that
//! is then renamed into place, so that a client never reads half a file.
//! Every entry is made beneath the root's directory descriptor, one
//! component at a time, never following a link: a file is never written
//! through a system-directory link (which points at the client's real
//! `/usr/include`) or through a mirror link.
//!
//! The tree is shared by every compile of the build, but each answer names
//! only what its own compile needs (unlike the Python server, which sends
//! every link and forcing file it has ever made: distcc issue #108).

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::pump::closure::{Closure, Input, Link, NotCovered};
use crate::sysheaders::{self, Hash, SystemAnswer};
use crate::{beneath, lzo, mirror};

/// The most entries the tree remembers having made. Past it the memory is
/// dropped and entries are checked again on disk: a cost, never a wrong
/// answer.
const MAX_REMEMBERED: usize = 256 * 1024;

/// The largest source file or header the tree copies (distccd's own caps
/// are smaller; a file this big would not be compiled remotely anyway).
pub const MAX_FILE_SIZE: u64 = 256 << 20;

/// The most absolute names one header may be reached under in a build:
/// each one after the first needs a root of its own.
pub const MAX_NAMES: usize = 16;

/// The sibling roots a tree at `root` may make for second names (`ROOT.1`
/// to `ROOT.15`).
fn numbered_roots(root: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    (1..MAX_NAMES).map(move |k| with_suffix(root, &format!(".{k}")))
}

fn with_suffix(root: &Path, suffix: &str) -> PathBuf {
    let mut path = root.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// The root of the tree that answers with system headers
/// ([`MirrorTree::open_system`]): `ROOT.sys`. Its files would collide with
/// the system-directory links of 3.4's answers.
pub fn system_root(root: &Path) -> PathBuf {
    with_suffix(root, ".sys")
}

/// Every sibling root a tree at `root` and its system tree may make, for
/// whoever removes the tree.
pub fn sibling_roots(root: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    let system = system_root(root);
    let system_numbered: Vec<PathBuf> = numbered_roots(&system).collect();
    numbered_roots(root)
        .chain(std::iter::once(system))
        .chain(system_numbered)
}

/// A mirror tree rooted at a directory that exists.
///
/// A `.lzo.abs` copy carries the one name its `#line` gives the file, but
/// a build may reach a header under several absolute names (the Linux
/// kernel's `/src/arch/x86/events/intel/../perf_event.h` from one source,
/// `/src/arch/x86/events/perf_event.h` from another). The copy for the
/// k-th name (k ≥ 1) lives in a sibling root `ROOT.k`, made when first
/// needed: a client drops the first three components of each path on its
/// own, so either root gives the same client name.
pub struct MirrorTree {
    root: PathBuf,
    /// The roots by name number: `root` first, then `ROOT.1`, `ROOT.2`...
    roots: Mutex<Vec<Arc<Root>>>,
    memory: Mutex<Memory>,
    next_temp: AtomicUsize,
}

/// One root directory and its descriptor.
struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

/// What the tree knows it has made.
#[derive(Default)]
struct Memory {
    /// Files by (realpath, the name of its `#line` if it is `.lzo.abs`).
    files: HashMap<(PathBuf, Option<PathBuf>), Written>,
    /// The absolute names each `.lzo.abs` file was copied under, in the
    /// order first met: a name's place is the number of its root.
    names: HashMap<PathBuf, Vec<PathBuf>>,
    /// Links (system-directory and mirror links) by client path: their target.
    links: HashMap<PathBuf, Vec<u8>>,
    /// Directories whose forcing file exists.
    forced: HashSet<PathBuf>,
}

impl Memory {
    fn len(&self) -> usize {
        self.files.len() + self.links.len() + self.forced.len()
    }
}

/// A file as it was when it was copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Written {
    stamp: Stamp,
    /// The SHA-256 of its bytes, when a system header answer needed it.
    hash: Option<Hash>,
}

/// What says a file has not changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

fn refuse(reason: impl std::fmt::Display) -> NotCovered {
    NotCovered(reason.to_string())
}

fn io_refusal(what: &str, path: &Path, err: io::Error) -> NotCovered {
    refuse(format!(
        "mirror tree: {what} {}: {}",
        path.display(),
        crate::sys::strerror(&err)
    ))
}

impl MirrorTree {
    /// Opens the tree at `root`, a directory of exactly
    /// [`mirror::MIRROR_DEPTH`] components that exists.
    pub fn open(root: &Path) -> io::Result<MirrorTree> {
        if depth(root) != Some(mirror::MIRROR_DEPTH) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mirror root {} must be an absolute path of {} components",
                    root.display(),
                    mirror::MIRROR_DEPTH
                ),
            ));
        }
        let fd = beneath::open_dir(libc::AT_FDCWD, &cstring(root.as_os_str())?, true)?;
        let main = Root {
            path: root.to_path_buf(),
            fd,
        };
        Ok(MirrorTree {
            root: root.to_path_buf(),
            roots: Mutex::new(vec![Arc::new(main)]),
            memory: Mutex::new(Memory::default()),
            next_temp: AtomicUsize::new(0),
        })
    }

    /// The tree for answers with system headers beside the tree at
    /// `main`'s root ([`system_root`]), made if it is not there.
    pub fn open_system(main: &MirrorTree) -> io::Result<MirrorTree> {
        let root = system_root(&main.root);
        match std::fs::DirBuilder::new().mode(0o700).create(&root) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        MirrorTree::open(&root)
    }

    /// The root: the first [`mirror::MIRROR_DEPTH`] components of every path in an answer.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes whatever `closure` needs that is not there yet, and returns the
    /// answer for the client in 3.4's order: the files, then the
    /// system-directory links, then the mirror links, then the forcing files
    /// (a hardened daemon refuses a NAME through a LINK it made earlier in
    /// the same request). Entries under a system directory are left out:
    /// the helper has its own.
    pub fn answer(&self, closure: &Closure) -> Result<Vec<PathBuf>, NotCovered> {
        self.forget_if_full();
        let system = outermost_dirs(&closure.system_dirs)?;
        let local = |path: &Path| !system.iter().any(|dir| path.starts_with(dir));
        if !closure
            .files
            .first()
            .is_some_and(|source| local(&source.path))
        {
            return Err(refuse("the closure has no source file to send"));
        }
        let mut answer = Answer::default();
        for input in closure.files.iter().filter(|i| local(&i.path)) {
            answer.push(self.file(input)?);
        }
        for dir in &system {
            let target = mirror::system_link_target(dir.as_os_str().as_bytes());
            answer.push(self.link(dir, &target)?);
        }
        for link in closure.links.iter().filter(|l| local(&l.path)) {
            answer.push(self.mirror_link(link)?);
        }
        for dir in closure.dirs.iter().filter(|d| local(d)) {
            answer.push(self.forcing_file(dir)?);
        }
        Ok(answer.paths)
    }

    /// The answer for a client that wants the system headers too
    /// (`,sysheaders`): the files, mirror links and forcing files as in
    /// [`MirrorTree::answer`] but with those under the system directories
    /// and no system-directory links, and apart from them the system
    /// headers with their hashes, the search dirs and preincludes.
    pub fn answer_with_system(
        &self,
        closure: &Closure,
    ) -> Result<(Vec<PathBuf>, SystemAnswer), NotCovered> {
        self.forget_if_full();
        if closure.files.is_empty() {
            return Err(refuse("the closure has no source file to send"));
        }
        let mut answer = Answer::default();
        for input in &closure.files {
            answer.push(self.file(input)?);
        }
        let mut headers = Vec::with_capacity(closure.system_files.len());
        for path in &closure.system_files {
            let (at, hash) = self.hashed_file(path)?;
            headers.push((at.into_os_string().into_vec(), hash));
        }
        for link in &closure.links {
            answer.push(self.mirror_link(link)?);
        }
        for dir in &closure.dirs {
            answer.push(self.forcing_file(dir)?);
        }
        let spelled = |paths: &[PathBuf]| -> Result<Vec<Vec<u8>>, NotCovered> {
            paths
                .iter()
                .map(|p| Ok(checked_spelling(p)?.as_os_str().as_bytes().to_vec()))
                .collect()
        };
        let system = SystemAnswer {
            cplusplus: closure.cplusplus,
            headers,
            search: spelled(&closure.system_search)?,
            preincludes: spelled(&closure.preincludes)?,
        };
        Ok((answer.paths, system))
    }

    /// A system header's `.lzo` copy and the hash of its bytes.
    fn hashed_file(&self, path: &Path) -> Result<(PathBuf, Hash), NotCovered> {
        let path = checked(path)?;
        let stamp = current_stamp(path)?;
        let hash = self.copy_if_changed(0, path, None, ".lzo", stamp, true)?;
        let hash = hash.expect("asked for");
        Ok((self.mirror_path(0, path, ".lzo")?, hash))
    }

    fn forget_if_full(&self) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if memory.len() >= MAX_REMEMBERED {
            log::info!("mirror tree: forgetting {} entries", memory.len());
            *memory = Memory::default();
        }
    }

    /// Root number `k`: the tree's own for 0, else the sibling `ROOT.k`,
    /// made (and opened without following a link) when first needed.
    fn root_number(&self, k: usize) -> Result<Arc<Root>, NotCovered> {
        let mut roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
        while roots.len() <= k {
            let Some(path) = numbered_roots(&self.root).nth(roots.len() - 1) else {
                return Err(refuse("no mirror root is left for another name"));
            };
            let made = std::fs::DirBuilder::new().mode(0o700).create(&path);
            let fd = match made {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                _ => cstring(path.as_os_str())
                    .and_then(|c| beneath::open_dir(libc::AT_FDCWD, &c, false)),
            }
            .map_err(|e| io_refusal("cannot make the mirror root", &path, e))?;
            roots.push(Arc::new(Root { path, fd }));
        }
        Ok(roots[k].clone())
    }

    /// `<root k><path><suffix>`.
    fn mirror_path(&self, k: usize, path: &Path, suffix: &str) -> Result<PathBuf, NotCovered> {
        let mut at = self.root_number(k)?.path.as_os_str().to_owned();
        at.push(path.as_os_str());
        at.push(suffix);
        Ok(PathBuf::from(at))
    }

    /// The copy of one file: `.lzo`, or `.lzo.abs` with its `#line`, in
    /// the root of that name's number.
    fn file(&self, input: &Input) -> Result<PathBuf, NotCovered> {
        let path = checked(&input.path)?;
        let stamp = current_stamp(path)?;
        let line_name = input.line_name.as_deref();
        let suffix = if line_name.is_some() {
            ".lzo.abs"
        } else {
            ".lzo"
        };
        let k = self.name_number(path, line_name)?;
        self.copy_if_changed(k, path, line_name, suffix, stamp, false)?;
        self.mirror_path(k, path, suffix)
    }

    /// Copies `path` to `<root k><path><suffix>` unless the copy there is
    /// of the file as `stamp` says it is now (and, when `hash` is asked
    /// for, its hash is remembered). Returns the hash if asked for.
    fn copy_if_changed(
        &self,
        k: usize,
        path: &Path,
        line_name: Option<&Path>,
        suffix: &str,
        stamp: Stamp,
        hash: bool,
    ) -> Result<Option<Hash>, NotCovered> {
        let key = (path.to_path_buf(), line_name.map(Path::to_path_buf));
        if let Some(written) = self.remembered_file(&key) {
            if written.stamp == stamp && (written.hash.is_some() || !hash) {
                return Ok(written.hash);
            }
        }
        let (stamp, hash) = self.copy_file(k, path, suffix, line_name, hash)?;
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.files.insert(key, Written { stamp, hash });
        Ok(hash)
    }

    /// The number of the root that holds `path`'s copy for `line_name`:
    /// 0 for a plain `.lzo`, else the place of the name among those the
    /// file has been copied under.
    fn name_number(&self, path: &Path, line_name: Option<&Path>) -> Result<usize, NotCovered> {
        let Some(name) = line_name else {
            return Ok(0);
        };
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let names = memory.names.entry(path.to_path_buf()).or_default();
        if let Some(k) = names.iter().position(|n| n == name) {
            return Ok(k);
        }
        if names.len() >= MAX_NAMES {
            return Err(refuse(format!(
                "{} is reached under more than {MAX_NAMES} absolute names, {} among them",
                path.display(),
                name.display()
            )));
        }
        names.push(name.to_path_buf());
        Ok(names.len() - 1)
    }

    fn remembered_file(&self, key: &(PathBuf, Option<PathBuf>)) -> Option<Written> {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.files.get(key).copied()
    }

    /// Reads `path`, compresses it (after its `#line` if it has one) and
    /// writes it into place. Returns the stamp of what was read and, if
    /// `hash`, the hash of the body.
    fn copy_file(
        &self,
        k: usize,
        path: &Path,
        suffix: &str,
        line_name: Option<&Path>,
        hash: bool,
    ) -> Result<(Stamp, Option<Hash>), NotCovered> {
        let (stamp, bytes) = read_source(path)?;
        let mut body = match line_name {
            Some(name) => line_directive(name)?,
            None => Vec::new(),
        };
        body.extend_from_slice(&bytes);
        let lzo = if body.is_empty() {
            Vec::new()
        } else {
            lzo::compress(&body)
        };
        let (parent, name) = self.parent_of(k, path, suffix)?;
        self.replace(&parent, &name, |fd, temp| {
            beneath::write_new(fd, temp, &lzo, 0o600)
        })
        .map_err(|e| io_refusal("cannot write the copy of", path, e))?;
        Ok((stamp, hash.then(|| sysheaders::hash(&body))))
    }

    /// The directory that holds `<root k><path><suffix>`, made as needed,
    /// and that entry's own name.
    fn parent_of(
        &self,
        k: usize,
        path: &Path,
        suffix: &str,
    ) -> Result<(OwnedFd, CString), NotCovered> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(suffix);
        let root = self.root_number(k)?;
        let parts = dir.components().filter_map(|c| match c {
            Component::Normal(name) => Some(name.as_bytes()),
            _ => None,
        });
        let fd = beneath::make_dirs(root.fd.as_raw_fd(), parts, 0o700)
            .map_err(|e| io_refusal("cannot make the directory for", path, e))?;
        let name = cstring(&name).map_err(|e| io_refusal("bad name", path, e))?;
        Ok((fd, name))
    }

    /// Makes `name` in `dir` by writing it under a fresh temporary name
    /// with `make` and renaming that over it.
    fn replace(
        &self,
        dir: &OwnedFd,
        name: &CString,
        make: impl FnOnce(RawFd, &CString) -> io::Result<()>,
    ) -> io::Result<()> {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        let temp = CString::new(format!(".distcc-pump-new.{}.{n}", std::process::id()))
            .expect("no NUL in a number");
        make(dir.as_raw_fd(), &temp)?;
        // SAFETY: plain system call on our descriptor and NUL-terminated names.
        let renamed = unsafe {
            libc::renameat(
                dir.as_raw_fd(),
                temp.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
            )
        };
        if renamed != 0 {
            let err = io::Error::last_os_error();
            // SAFETY: as above; the temporary entry is ours.
            unsafe { libc::unlinkat(dir.as_raw_fd(), temp.as_ptr(), 0) };
            return Err(err);
        }
        Ok(())
    }

    /// A mirror link: the client's link at `link.path`, whose target in
    /// the mirror is the absolute realpath it leads to (as the Python
    /// include server makes it; the daemon puts its root in front).
    fn mirror_link(&self, link: &Link) -> Result<PathBuf, NotCovered> {
        let path = checked(&link.path)?;
        let target = resolve_link(link)?;
        checked(&target)?;
        self.link(path, target.as_os_str().as_bytes())
    }

    /// The link `<root><path> -> target`, made or replaced unless it is
    /// there already.
    fn link(&self, path: &Path, target: &[u8]) -> Result<PathBuf, NotCovered> {
        let path = checked(path)?;
        let at = self.mirror_path(0, path, "")?;
        {
            let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            if memory.links.get(path).map(Vec::as_slice) == Some(target) {
                return Ok(at);
            }
        }
        let (dir, name) = self.parent_of(0, path, "")?;
        if beneath::read_link(dir.as_raw_fd(), &name, mirror::MAX_PATH_LEN).as_deref()
            != Some(target)
        {
            let target_c = CString::new(target).map_err(|_| refuse("a link target holds a NUL"))?;
            self.replace(&dir, &name, |fd, temp| {
                beneath::symlink(&target_c, fd, temp)
            })
            .map_err(|e| io_refusal("cannot make the link", path, e))?;
        }
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.links.insert(path.to_path_buf(), target.to_vec());
        Ok(at)
    }

    /// The empty file that makes `dir` exist on the helper.
    fn forcing_file(&self, dir: &Path) -> Result<PathBuf, NotCovered> {
        let dir = checked(dir)?;
        let file = dir.join(mirror::FORCING_FILE);
        let at = self.mirror_path(0, &file, "")?;
        {
            let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            if memory.forced.contains(dir) {
                return Ok(at);
            }
        }
        let (parent, name) = self.parent_of(0, &file, "")?;
        beneath::create_empty(parent.as_raw_fd(), &name, 0o600)
            .map_err(|e| io_refusal("cannot make the forcing file in", dir, e))?;
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.forced.insert(dir.to_path_buf());
        Ok(at)
    }
}

/// An answer being put together: each path once, in the order first given
/// (a daemon may refuse a NAME it was sent twice).
#[derive(Default)]
struct Answer {
    paths: Vec<PathBuf>,
    seen: HashSet<PathBuf>,
}

impl Answer {
    fn push(&mut self, path: PathBuf) {
        if self.seen.insert(path.clone()) {
            self.paths.push(path);
        }
    }
}

/// The system directories that are not inside another one, in their
/// order (the Python server makes one link for `/usr/include`, none for
/// `/usr/include/x86_64-linux-gnu` in it).
fn outermost_dirs(dirs: &[PathBuf]) -> Result<Vec<&Path>, NotCovered> {
    for dir in dirs {
        checked(dir)?;
    }
    let mut out: Vec<&Path> = Vec::new();
    for dir in dirs {
        let inside = |other: &PathBuf| other != dir && dir.starts_with(other);
        if !dirs.iter().any(inside) && !out.contains(&dir.as_path()) {
            out.push(dir);
        }
    }
    Ok(out)
}

/// `path` if it keeps pump mode's path rules (absolute, plain components).
fn checked(path: &Path) -> Result<&Path, NotCovered> {
    mirror::check_path(path.as_os_str().as_bytes())
        .map(|()| path)
        .map_err(|e| refuse(format!("the path {} {e}", path.display())))
}

/// The stamp of `path` as it is now (not following a last link).
fn current_stamp(path: &Path) -> Result<Stamp, NotCovered> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_refusal("cannot stat", path, e))?;
    Ok(Stamp::of(&meta))
}

/// A search dir or preinclude as the compiler spells it: absolute, at
/// most [`mirror::MAX_PATH_LEN`] bytes, with no control character (it may
/// hold `..`: the daemon puts its root in front, and the directories before
/// each `..` are in the answer as forcing files).
fn checked_spelling(path: &Path) -> Result<&Path, NotCovered> {
    let bytes = path.as_os_str().as_bytes();
    if !bytes.starts_with(b"/")
        || bytes.len() > mirror::MAX_PATH_LEN
        || bytes.iter().any(|&c| c < 0x20 || c == 0x7f)
    {
        return Err(refuse(format!(
            "the system search path {} cannot be sent",
            path.display()
        )));
    }
    Ok(path)
}

/// The absolute realpath a client link leads to.
fn resolve_link(link: &Link) -> Result<PathBuf, NotCovered> {
    std::fs::canonicalize(&link.path)
        .map_err(|e| io_refusal("cannot resolve the link", &link.path, e))
}

/// The source's bytes and the stamp of what was read, for a regular file
/// of at most [`MAX_FILE_SIZE`] bytes.
fn read_source(path: &Path) -> Result<(Stamp, Vec<u8>), NotCovered> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| io_refusal("cannot open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_refusal("cannot stat", path, e))?;
    if !meta.is_file() {
        return Err(refuse(format!("{} is not a regular file", path.display())));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(refuse(format!(
            "{} is bigger than {MAX_FILE_SIZE} bytes",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_refusal("cannot read", path, e))?;
    Ok((Stamp::of(&meta), bytes))
}

/// `#line 1 "NAME"` and a newline ([`mirror::line_prefix`]); a name with
/// a control character is not covered.
fn line_directive(name: &Path) -> Result<Vec<u8>, NotCovered> {
    mirror::line_prefix(name.as_os_str().as_bytes()).ok_or_else(|| {
        refuse(format!(
            "the name {} holds a control character",
            name.display()
        ))
    })
}

/// The number of components of an absolute path, if it is absolute.
fn depth(path: &Path) -> Option<usize> {
    path.is_absolute().then(|| {
        path.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    })
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    beneath::cstring(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pump::closure::{Input, Link};
    use crate::testing::TestDir;

    fn tree(dir: &TestDir) -> MirrorTree {
        let root = dir.join("m");
        std::fs::create_dir(&root).unwrap();
        MirrorTree::open(&root).unwrap()
    }

    fn input(path: PathBuf) -> Input {
        Input {
            path,
            line_name: None,
        }
    }

    fn body(path: &Path) -> Vec<u8> {
        let lzo = std::fs::read(path).unwrap();
        if lzo.is_empty() {
            return lzo;
        }
        lzo::decompress(&lzo, 1 << 20).unwrap()
    }

    fn real(p: PathBuf) -> PathBuf {
        std::fs::canonicalize(p).unwrap()
    }

    #[test]
    fn an_answer_has_files_then_system_links_then_links_then_forcing_files() {
        let dir = TestDir::new("mirror-order");
        let t = tree(&dir);
        let src = real(dir.write("proj/t.c", "#include \"a.h\"\n"));
        let header = real(dir.write("proj/inc/a.h", "int a;\n"));
        let empty = real(dir.write("proj/e.h", ""));
        let sys = real(dir.join("proj"));
        std::fs::create_dir_all(dir.join("sys/nested")).unwrap();
        let (system, nested) = (real(dir.join("sys")), real(dir.join("sys/nested")));
        std::os::unix::fs::symlink(&header, dir.join("proj/lnk.h")).unwrap();
        let link = real(dir.join("proj")).join("lnk.h");
        std::fs::create_dir(dir.join("proj/sub")).unwrap();
        let closure = Closure {
            files: vec![
                input(src.clone()),
                Input {
                    path: header.clone(),
                    line_name: Some(PathBuf::from("/abs\\dir/\"a.h")),
                },
                input(empty.clone()),
                input(system.join("left-out.h")),
            ],
            links: vec![Link {
                path: link.clone(),
                target: PathBuf::from("inc/a.h"),
            }],
            dirs: vec![sys.join("sub")],
            system_dirs: vec![nested, system.clone()],
            ..Closure::default()
        };
        let answer = t.answer(&closure).unwrap();
        let at = |p: &Path, s: &str| t.mirror_path(0, p, s).unwrap();
        assert_eq!(
            answer,
            [
                at(&src, ".lzo"),
                at(&header, ".lzo.abs"),
                at(&empty, ".lzo"),
                at(&system, ""),
                at(&link, ""),
                at(&sys.join("sub").join(mirror::FORCING_FILE), ""),
            ]
        );
        assert_eq!(body(&answer[0]), b"#include \"a.h\"\n");
        assert_eq!(
            body(&answer[1]),
            b"#line 1 \"/abs\\\\dir/\\\"a.h\"\nint a;\n"
        );
        assert_eq!(std::fs::read(&answer[2]).unwrap(), b"");
        let target = std::fs::read_link(&answer[3]).unwrap();
        assert_eq!(
            target.as_os_str().as_bytes(),
            mirror::system_link_target(system.as_os_str().as_bytes())
        );
        assert_eq!(std::fs::read_link(&answer[4]).unwrap(), header);
        let forcing = std::fs::symlink_metadata(&answer[5]).unwrap();
        assert!(forcing.is_file() && forcing.len() == 0);
        for path in &answer {
            let name = mirror::client_name(path.as_os_str().as_bytes()).unwrap();
            assert!(mirror::check_path(name).is_ok(), "{}", path.display());
        }
    }

    #[test]
    fn a_file_is_written_again_only_when_it_changes() {
        let dir = TestDir::new("mirror-rewrite");
        let t = tree(&dir);
        let header = real(dir.write("h.h", "one\n"));
        let closure = Closure {
            files: vec![input(header.clone())],
            ..Closure::default()
        };
        let copy = t.answer(&closure).unwrap().remove(0);
        let ino = std::fs::metadata(&copy).unwrap().ino();
        t.answer(&closure).unwrap();
        assert_eq!(std::fs::metadata(&copy).unwrap().ino(), ino, "rewritten");
        std::fs::write(&header, "two, longer\n").unwrap();
        t.answer(&closure).unwrap();
        assert_eq!(body(&copy), b"two, longer\n");
        assert_ne!(std::fs::metadata(&copy).unwrap().ino(), ino);
        let leftovers: Vec<_> = std::fs::read_dir(copy.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            [copy.file_name().unwrap()],
            "temporary files left"
        );
    }

    #[test]
    fn a_system_answer_sends_the_system_headers_by_hash_beside_the_3_4_tree() {
        let dir = TestDir::new("mirror-system");
        let t = tree(&dir);
        let sys = MirrorTree::open_system(&t).unwrap();
        assert_eq!(sys.root(), dir.join("m.sys"));
        let src = real(dir.write("t.c", "#include <s.h>\n"));
        std::fs::create_dir(dir.join("sys")).unwrap();
        let system = real(dir.join("sys"));
        let header = real(dir.write("sys/s.h", "int s;\n"));
        let closure = Closure {
            files: vec![input(src.clone())],
            system_dirs: vec![system.clone()],
            system_files: vec![header.clone()],
            system_search: vec![system.join("..").join("sys")],
            cplusplus: true,
            ..Closure::default()
        };
        // 3.4's answer links the system directory in its own tree; the
        // system tree holds the header itself.
        assert_eq!(t.answer(&closure).unwrap().len(), 2);
        let (paths, answer) = sys.answer_with_system(&closure).unwrap();
        assert_eq!(paths, [sys.mirror_path(0, &src, ".lzo").unwrap()]);
        assert!(answer.cplusplus);
        let (path, hash) = &answer.headers[0];
        assert_eq!(body(Path::new(OsStr::from_bytes(path))), b"int s;\n");
        assert_eq!(*hash, sysheaders::hash(b"int s;\n"));
        let spelled = system.join("..").join("sys");
        assert_eq!(answer.search, [spelled.as_os_str().as_bytes()]);
        // A changed header gets its new hash.
        std::fs::write(&header, "int s, t;\n").unwrap();
        let (_, again) = sys.answer_with_system(&closure).unwrap();
        assert_eq!(again.headers[0].1, sysheaders::hash(b"int s, t;\n"));
        // A search dir that cannot be sent is not covered.
        let relative = Closure {
            system_search: vec![PathBuf::from("rel/dir")],
            ..closure.clone()
        };
        assert!(sys.answer_with_system(&relative).is_err());
    }

    #[test]
    fn nothing_is_written_through_a_system_directory_link() {
        let dir = TestDir::new("mirror-through");
        let t = tree(&dir);
        std::fs::create_dir(dir.join("sys")).unwrap();
        let system = real(dir.join("sys"));
        let first = Closure {
            files: vec![input(real(dir.write("t.c", "")))],
            system_dirs: vec![system.clone()],
            ..Closure::default()
        };
        t.answer(&first).unwrap();
        let header = dir.write("sys/x.h", "int x;\n");
        let second = Closure {
            files: vec![input(real(header))],
            ..Closure::default()
        };
        let err = t.answer(&second).unwrap_err();
        assert!(err.0.contains("cannot make the directory"), "{err}");
        let names: Vec<_> = std::fs::read_dir(&system).unwrap().collect();
        assert_eq!(
            names.len(),
            1,
            "something was written into {}",
            system.display()
        );
    }

    #[test]
    fn each_absolute_name_of_a_header_gets_a_copy_in_a_root_of_its_own() {
        let dir = TestDir::new("mirror-names");
        let t = tree(&dir);
        let header = real(dir.write("h.h", "int h;\n"));
        let named = |name: &str| Closure {
            files: vec![Input {
                path: header.clone(),
                line_name: Some(PathBuf::from(name)),
            }],
            ..Closure::default()
        };
        let first = t.answer(&named("/one/h.h")).unwrap();
        let second = t.answer(&named("/one/../one/h.h")).unwrap();
        assert_eq!(t.answer(&named("/one/h.h")).unwrap(), first);
        let mut abs = dir.join("m.1").into_os_string();
        abs.push(header.as_os_str());
        abs.push(".lzo.abs");
        assert_eq!(second, [PathBuf::from(abs)]);
        for (answer, name) in [(&first, "/one/h.h"), (&second, "/one/../one/h.h")] {
            let got = body(&answer[0]);
            assert_eq!(got, format!("#line 1 \"{name}\"\nint h;\n").into_bytes());
            let path = answer[0].as_os_str().as_bytes();
            assert_eq!(
                mirror::client_name(path),
                Some(header.as_os_str().as_bytes()),
                "the client's name for either copy"
            );
        }
        for n in 2..MAX_NAMES {
            t.answer(&named(&format!("/n{n}/h.h"))).unwrap();
        }
        let err = t.answer(&named("/one/more/h.h")).unwrap_err();
        assert!(err.0.contains("more than 16 absolute names"), "{err}");
        let other = Closure {
            files: vec![Input {
                path: real(dir.write("g.h", "int g;\n")),
                line_name: Some(PathBuf::from("/bad\nname")),
            }],
            ..Closure::default()
        };
        let err = t.answer(&other).unwrap_err();
        assert!(err.0.contains("control character"), "{err}");
    }

    #[test]
    fn an_answer_names_only_what_its_compile_needs() {
        // distcc issue #108: the Python server sends every link and forcing
        // file made so far in the build with every answer.
        let dir = TestDir::new("mirror-only");
        let t = tree(&dir);
        let (a, b) = (real(dir.write("a.c", "")), real(dir.write("b.c", "")));
        std::fs::create_dir_all(dir.join("da")).unwrap();
        std::os::unix::fs::symlink(&a, dir.join("la.c")).unwrap();
        let first = Closure {
            files: vec![input(a)],
            links: vec![Link {
                path: real(dir.path.clone()).join("la.c"),
                target: PathBuf::from("a.c"),
            }],
            dirs: vec![real(dir.join("da"))],
            ..Closure::default()
        };
        assert_eq!(t.answer(&first).unwrap().len(), 3);
        let second = Closure {
            files: vec![input(b.clone())],
            ..Closure::default()
        };
        assert_eq!(
            t.answer(&second).unwrap(),
            [t.mirror_path(0, &b, ".lzo").unwrap()]
        );
    }

    #[test]
    fn each_entry_is_answered_once_and_a_source_is_needed() {
        let dir = TestDir::new("mirror-once");
        let t = tree(&dir);
        let src = real(dir.write("t.c", "int t;\n"));
        let twice = Closure {
            files: vec![input(src.clone()), input(src.clone())],
            dirs: vec![real(dir.path.clone()), real(dir.path.clone())],
            ..Closure::default()
        };
        assert_eq!(t.answer(&twice).unwrap().len(), 2);
        let err = t.answer(&Closure::default()).unwrap_err();
        assert!(err.0.contains("no source file"), "{err}");
    }

    #[test]
    fn bad_paths_are_not_covered() {
        let dir = TestDir::new("mirror-bad");
        let t = tree(&dir);
        for path in ["relative.h", "/a/../b.h", "/a//b.h"] {
            let closure = Closure {
                files: vec![input(PathBuf::from(path))],
                ..Closure::default()
            };
            assert!(t.answer(&closure).is_err(), "{path}");
        }
        let missing = Closure {
            files: vec![input(dir.join("missing.h"))],
            ..Closure::default()
        };
        assert!(t.answer(&missing).unwrap_err().0.contains("cannot stat"));
        assert!(MirrorTree::open(&dir.path).is_err(), "two components");
    }
}
