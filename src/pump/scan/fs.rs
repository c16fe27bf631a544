//! The file system as one scan sees it: every path resolved component by component (so the symlinks crossed and the directories a `..` needs are known), each lookup memoized for the scan and recorded as a probe the closure cache re-checks.
//!
//! Nothing here outlives a scan unchecked: a negative lookup is remembered
//! only until the scan ends, so a header a build generates later is seen by
//! the next scan. Across scans, the closure cache and the checkpoints
//! re-stat every probe they keep before they are used.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::hash::{FastMap, FastSet};
use crate::pump::closure::Link;

/// What identifies a file's contents: its stat signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sig {
    pub mtime: i64,
    pub mtime_ns: i64,
    pub size: u64,
    pub ino: u64,
    pub dev: u64,
    pub dir: bool,
    pub regular: bool,
}

impl Sig {
    pub fn of(m: &std::fs::Metadata) -> Sig {
        Sig {
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            size: m.size(),
            ino: m.ino(),
            dev: m.dev(),
            dir: m.is_dir(),
            regular: m.is_file(),
        }
    }
}

/// The stat of a path (following links): `None` if it does not exist;
/// an error for anything but "no such file".
pub fn stat(path: &Path) -> io::Result<Option<Sig>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Sig::of(&m))),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// A path resolved: its realpath, the links crossed, and the directories
/// that a `..` after them needs.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub real: PathBuf,
    pub sig: Option<Sig>,
    pub links: Vec<Link>,
    pub before_dotdot: Vec<PathBuf>,
}

const MAX_LINKS: usize = 40;

/// What a lookup found: `None` if nothing.
type Lookup = Option<Arc<Resolved>>;

#[derive(Default)]
pub struct Fs {
    /// By the path's bytes (hashing a `Path` walks its components).
    resolved: FastMap<Arc<[u8]>, Lookup>,
    /// Every path looked up, with what was found, for the closure cache.
    pub probes: Vec<(PathBuf, Option<Sig>)>,
    probed: FastSet<Vec<u8>>,
}

/// What a checkpoint keeps of a scan's file system: its lookups and probes.
#[derive(Default)]
pub struct Part {
    memo: Vec<(Arc<[u8]>, Lookup)>,
    pub probes: Vec<(PathBuf, Option<Sig>)>,
}

impl Part {
    pub fn weight(&self) -> usize {
        self.memo.len() + self.probes.len()
    }
}

impl Fs {
    /// Its lookups and probes so far, but for the path `skip`.
    pub fn part(&self, skip: &Path) -> Part {
        let skip = skip.as_os_str().as_bytes();
        Part {
            memo: (self.resolved.iter())
                .filter(|(k, _)| &***k != skip)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            probes: (self.probes.iter())
                .filter(|(p, _)| p.as_os_str().as_bytes() != skip)
                .cloned()
                .collect(),
        }
    }

    /// Takes up a checkpoint's lookups and probes (checked by the caller).
    pub fn take_up(&mut self, part: &Part) {
        for (k, v) in &part.memo {
            self.resolved.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (p, sig) in &part.probes {
            let bytes = p.as_os_str().as_bytes();
            if !self.probed.contains(bytes) {
                self.probed.insert(bytes.to_vec());
                self.probes.push((p.clone(), *sig));
            }
        }
    }

    /// Looks up an absolute path: `None` if it does not exist.
    pub fn lookup(&mut self, path: &Path) -> io::Result<Option<Arc<Resolved>>> {
        let r = self.resolve(path, 0)?;
        let bytes = path.as_os_str().as_bytes();
        if !self.probed.contains(bytes) {
            self.probed.insert(bytes.to_vec());
            self.probes
                .push((path.to_path_buf(), r.as_ref().and_then(|r| r.sig)));
        }
        Ok(r)
    }

    fn resolve(&mut self, path: &Path, hops: usize) -> io::Result<Option<Arc<Resolved>>> {
        if let Some(r) = self.resolved.get(path.as_os_str().as_bytes()) {
            return Ok(r.clone());
        }
        let r = self.resolve_uncached(path, hops)?.map(Arc::new);
        self.resolved
            .insert(path.as_os_str().as_bytes().into(), r.clone());
        Ok(r)
    }

    fn resolve_uncached(&mut self, path: &Path, hops: usize) -> io::Result<Option<Resolved>> {
        let comps: Vec<Component> = path.components().collect();
        let Some((last, parents)) = comps.split_last() else {
            return Ok(None);
        };
        let name: OsString = match last {
            Component::RootDir => {
                let sig = stat(Path::new("/"))?;
                return Ok(Some(Resolved {
                    real: PathBuf::from("/"),
                    sig,
                    ..Resolved::default()
                }));
            }
            Component::Normal(n) => n.to_os_string(),
            _ => OsString::new(),
        };
        let parent: PathBuf = parents.iter().collect();
        let Some(base) = self.resolve(&parent, hops)? else {
            return Ok(None);
        };
        if !base.sig.is_some_and(|s| s.dir) {
            return Ok(None);
        }
        let mut base = Resolved::clone(&base);
        match last {
            Component::ParentDir => {
                base.before_dotdot.push(base.real.clone());
                base.real.pop();
                base.sig = stat(&base.real)?;
                return Ok(Some(base));
            }
            Component::CurDir => return Ok(Some(base)),
            _ => {}
        }
        let next = base.real.join(&name);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            return self.follow(base, next, hops);
        }
        if meta.file_type().is_fifo() || meta.file_type().is_socket() {
            return Ok(None);
        }
        base.real = next;
        base.sig = Some(Sig::of(&meta));
        Ok(Some(base))
    }

    fn follow(
        &mut self,
        base: Resolved,
        link: PathBuf,
        hops: usize,
    ) -> io::Result<Option<Resolved>> {
        if hops >= MAX_LINKS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = std::fs::read_link(&link)?;
        let through = base.real.join(&target);
        let Some(r) = self.resolve(&through, hops + 1)? else {
            return Ok(None);
        };
        let mut r = Resolved::clone(&r);
        let mut links = base.links;
        links.push(Link { path: link, target });
        links.append(&mut r.links);
        r.links = links;
        let mut before = base.before_dotdot;
        before.append(&mut r.before_dotdot);
        r.before_dotdot = before;
        Ok(Some(r))
    }
}
