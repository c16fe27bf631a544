//! The daemon's store of pump-mode files by content hash: files named by their SHA-256 in a private directory, bounded, least recently used out first, hard-linked into each job's tree.
//!
//! Every FILE of a pump request is kept here under the hash of its bytes,
//! computed by the daemon, and linked into the job's tree: a header costs a
//! new inode and its bytes once per daemon, and each later job only a link.
//! A client on a `,sysheaders` host sends its system headers by hash
//! (`src/sysheaders.rs`); the daemon links those it has into the job's tree
//! and asks for the rest. Every body received is hashed here and refused
//! when it does not match the hash claimed for it, so one client cannot put
//! a file under another content's name: the store is shared by every client.
//!
//! The store is `TMPDIR/distccd-headers.XXXXXX`, made for the daemon's first
//! pump job and removed when it stops (one left by a killed daemon stays,
//! like its job directories). Files are mode 0444. It holds at most
//! [`MAX_BYTES`] and [`MAX_FILES`] files; past either, the least recently
//! used go. A header is linked into a job's tree (or copied there, when
//! linking fails) under the store's lock, so eviction cannot take it away
//! mid-link, and a job keeps its link after the store lets the file go.
//! A file that has vanished from under the store counts as missing.
//!
//! The store also remembers, for each FILE body it decompressed, the hash
//! of the compressed bytes as they came ([`packed_key`]) and the content
//! they made. A later job that sends the same compressed bytes gets its
//! file linked without decompressing or hashing the body again: on a Linux
//! kernel source's 700 headers that was most of the daemon's own work. Only
//! the daemon's own decompression fills this map, so a client cannot make
//! one body stand for another; it is bounded like the store.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::beneath;
use crate::sysheaders::{self, Hash};

/// The most bytes the store holds by default.
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The most files the store holds by default.
pub const MAX_FILES: usize = 65536;

/// The store: its directory, its bounds and what it holds.
#[derive(Debug)]
pub struct HeaderStore {
    dir: PathBuf,
    dir_fd: OwnedFd,
    max_bytes: u64,
    max_files: usize,
    inner: Mutex<Inner>,
}

/// What the store holds, with the order of last use.
#[derive(Debug, Default)]
struct Inner {
    /// Each file: its size and the tick of its last use.
    files: HashMap<Hash, (u64, u64)>,
    /// Hashes by tick of last use, oldest first.
    order: BTreeMap<u64, Hash>,
    bytes: u64,
    tick: u64,
    /// FILE bodies decompressed before: [`packed_key`] to the content's
    /// hash and decompressed size. Emptied when it reaches the store's
    /// file bound.
    packed: HashMap<Hash, (Hash, u64)>,
}

impl Inner {
    fn touch(&mut self, hash: &Hash) {
        self.tick += 1;
        if let Some((_, tick)) = self.files.get_mut(hash) {
            self.order.remove(tick);
            *tick = self.tick;
            self.order.insert(self.tick, *hash);
        }
    }

    fn forget(&mut self, hash: &Hash) {
        if let Some((size, tick)) = self.files.remove(hash) {
            self.order.remove(&tick);
            self.bytes -= size;
        }
    }
}

impl HeaderStore {
    /// Makes a fresh store in `parent` holding at most `max_bytes` in
    /// `max_files` files.
    pub fn create(parent: &Path, max_bytes: u64, max_files: usize) -> io::Result<HeaderStore> {
        let dir = crate::sys::make_temp_dir(parent, "distccd-headers.")?;
        let opened = beneath::cstring(dir.as_os_str().as_bytes())
            .and_then(|path| beneath::open_dir(libc::AT_FDCWD, &path, false));
        let dir_fd = match opened {
            Ok(fd) => fd,
            Err(err) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(err);
            }
        };
        Ok(HeaderStore {
            dir,
            dir_fd,
            max_bytes,
            max_files,
            inner: Mutex::default(),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// How many files and bytes the store holds.
    pub fn held(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.files.len(), inner.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `name` in `dir` the stored header `hash`, if the store has
    /// it: returns whether it did. `name` must not exist.
    pub fn place(&self, hash: &Hash, dir: RawFd, name: &CStr) -> io::Result<bool> {
        self.place_locked(&mut self.lock(), hash, dir, name)
    }

    fn place_locked(
        &self,
        inner: &mut Inner,
        hash: &Hash,
        dir: RawFd,
        name: &CStr,
    ) -> io::Result<bool> {
        if !inner.files.contains_key(hash) {
            return Ok(false);
        }
        match self.link_or_copy(hash, dir, name) {
            Ok(()) => {
                inner.touch(hash);
                Ok(true)
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                // Gone from under the store: the client sends it again.
                inner.forget(hash);
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// The content and decompressed size of the FILE body whose
    /// [`packed_key`] is `key`, if this store made it before.
    pub fn known(&self, key: &Hash) -> Option<(Hash, u64)> {
        self.lock().packed.get(key).copied()
    }

    /// Stores `body`, which the client says has the hash `claimed`, and
    /// makes `name` in `dir` that header. A body whose hash is not
    /// `claimed` is refused. A body larger than the whole store is written
    /// to the job's tree only.
    pub fn add_and_place(
        &self,
        claimed: &Hash,
        body: &[u8],
        dir: RawFd,
        name: &CStr,
    ) -> Result<(), String> {
        let computed = sysheaders::hash(body);
        if computed != *claimed {
            return Err(format!(
                "its body's SHA-256 is {}, not the {} claimed",
                sysheaders::hex(&computed),
                sysheaders::hex(claimed)
            ));
        }
        self.store_and_place(claimed, body, dir, name)
    }

    /// Keeps `body` under its own hash (unless the store has it already)
    /// and makes `name` in `dir` that file. Every pump job's FILE bodies
    /// come this way: a header then costs a new inode and its bytes once
    /// per daemon, and each later job only a link (on ext4, creating and
    /// removing a kernel source's 700 headers per job cost more CPU than
    /// the rest of the daemon's work for it).
    ///
    /// `packed`, for a body decompressed from a FILE, is that FILE's
    /// [`packed_key`] and decompressed size: the next FILE body with that
    /// key is then [`HeaderStore::known`].
    pub fn keep_and_place(
        &self,
        body: &[u8],
        packed: Option<(&Hash, u64)>,
        dir: RawFd,
        name: &CStr,
    ) -> Result<(), String> {
        let hash = sysheaders::hash(body);
        self.store_and_place(&hash, body, dir, name)?;
        let Some((key, size)) = packed else {
            return Ok(());
        };
        let mut inner = self.lock();
        if inner.files.contains_key(&hash) {
            if inner.packed.len() >= self.max_files {
                inner.packed.clear();
            }
            inner.packed.insert(*key, (hash, size));
        }
        Ok(())
    }

    /// `body`, whose hash is `hash`, stored and made at `name` in `dir`.
    fn store_and_place(
        &self,
        hash: &Hash,
        body: &[u8],
        dir: RawFd,
        name: &CStr,
    ) -> Result<(), String> {
        let size = body.len() as u64;
        if size > self.max_bytes || self.max_files == 0 {
            return beneath::write_new(dir, name, body, 0o444).map_err(|e| e.to_string());
        }
        let mut inner = self.lock();
        let placed = self.place_locked(&mut inner, hash, dir, name);
        if placed.map_err(|e| e.to_string())? {
            return Ok(());
        }
        self.make_room(&mut inner, size);
        let file = stored_name(hash).map_err(|e| e.to_string())?;
        // SAFETY: a plain system call on our directory and a NUL-terminated name.
        unsafe { libc::unlinkat(self.dir_fd.as_raw_fd(), file.as_ptr(), 0) };
        beneath::write_new(self.dir_fd.as_raw_fd(), &file, body, 0o444)
            .map_err(|e| format!("cannot store it: {e}"))?;
        inner.files.insert(*hash, (size, 0));
        inner.bytes += size;
        inner.touch(hash);
        self.link_or_copy(hash, dir, name)
            .map_err(|e| e.to_string())
    }

    /// Evicts the least recently used files until `size` more bytes and
    /// one more file fit.
    fn make_room(&self, inner: &mut Inner, size: u64) {
        while inner.bytes + size > self.max_bytes || inner.files.len() >= self.max_files {
            let Some(oldest) = inner.order.values().next().copied() else {
                return;
            };
            inner.forget(&oldest);
            if let Ok(file) = stored_name(&oldest) {
                // SAFETY: as above.
                unsafe { libc::unlinkat(self.dir_fd.as_raw_fd(), file.as_ptr(), 0) };
            }
        }
    }

    /// Hard-links the stored `hash` to `name` in `dir`, or copies it there
    /// when the link fails (another file system, say).
    fn link_or_copy(&self, hash: &Hash, dir: RawFd, name: &CStr) -> io::Result<()> {
        let file = stored_name(hash)?;
        let store = self.dir_fd.as_raw_fd();
        // SAFETY: plain system calls on open directories and NUL-terminated names.
        if unsafe { libc::linkat(store, file.as_ptr(), dir, name.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if matches!(err.raw_os_error(), Some(libc::EEXIST | libc::ENOENT)) {
            return Err(err);
        }
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as above.
        let fd = unsafe { libc::openat(store, file.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat just returned this descriptor; nothing else owns it.
        let mut stored = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut body = Vec::new();
        stored.read_to_end(&mut body)?;
        beneath::write_new(dir, name, &body, 0o444)
    }
}

/// The key the store knows a FILE body by before it is decompressed: the
/// SHA-256 of its compressed bytes and of `stripped`, whether the daemon
/// drops the body's `#line` prefix (the same bytes then make another file).
pub fn packed_key(stripped: bool, lzo: &[u8]) -> Hash {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update([u8::from(stripped)]);
    hasher.update(lzo);
    hasher.finalize().into()
}

/// The name of `hash`'s file in the store: the hash in hex.
fn stored_name(hash: &Hash) -> io::Result<std::ffi::CString> {
    beneath::cstring(sysheaders::hex(hash).as_bytes())
}

impl Drop for HeaderStore {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            log::warn!(
                "cannot remove the header store {}: {err}",
                self.dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDir;
    use std::sync::Arc;

    fn job_dir(dir: &TestDir, name: &str) -> OwnedFd {
        let path = dir.join(name);
        std::fs::create_dir(&path).unwrap();
        let c = beneath::cstring(path.as_os_str().as_bytes()).unwrap();
        beneath::open_dir(libc::AT_FDCWD, &c, false).unwrap()
    }

    fn name(n: usize) -> std::ffi::CString {
        beneath::cstring(format!("h{n}.h").as_bytes()).unwrap()
    }

    #[test]
    fn headers_are_stored_once_linked_read_only_and_removed_with_the_store() {
        let dir = TestDir::new("store-basic");
        let store = HeaderStore::create(&dir.path, MAX_BYTES, MAX_FILES).unwrap();
        let job = job_dir(&dir, "job");
        let body = b"#define X 1\n";
        let h = sysheaders::hash(body);
        assert!(!store.place(&h, job.as_raw_fd(), &name(0)).unwrap());
        store
            .add_and_place(&h, body, job.as_raw_fd(), &name(0))
            .unwrap();
        assert!(store.place(&h, job.as_raw_fd(), &name(1)).unwrap());
        assert_eq!(std::fs::read(dir.join("job/h1.h")).unwrap(), body);
        let meta = std::fs::metadata(dir.join("job/h1.h")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.mode() & 0o777, 0o444);
        assert_eq!(meta.nlink(), 3, "the store's file and two links");
        assert_eq!(store.held(), (1, body.len() as u64));
        let path = store.path().to_path_buf();
        assert!(path.join(sysheaders::hex(&h)).is_file());
        // A name that exists is an error, never a replacement.
        assert!(store.place(&h, job.as_raw_fd(), &name(1)).is_err());
        drop(store);
        assert!(!path.exists());
        assert_eq!(std::fs::read(dir.join("job/h0.h")).unwrap(), body);
    }

    #[test]
    fn a_body_that_does_not_match_its_claimed_hash_is_refused() {
        let dir = TestDir::new("store-lie");
        let store = HeaderStore::create(&dir.path, MAX_BYTES, MAX_FILES).unwrap();
        let job = job_dir(&dir, "job");
        let honest = sysheaders::hash(b"int honest;\n");
        let err = store
            .add_and_place(&honest, b"int evil;\n", job.as_raw_fd(), &name(0))
            .unwrap_err();
        assert!(err.contains("not the"), "{err}");
        assert_eq!(store.held(), (0, 0));
        assert!(!dir.join("job/h0.h").exists());
        assert!(!store.place(&honest, job.as_raw_fd(), &name(0)).unwrap());
    }

    #[test]
    fn the_store_is_bounded_and_evicts_the_least_recently_used() {
        let dir = TestDir::new("store-bound");
        let store = HeaderStore::create(&dir.path, 100, 3).unwrap();
        let job = job_dir(&dir, "job");
        let bodies: Vec<Vec<u8>> = (0..5).map(|i| vec![b'a' + i as u8; 30]).collect();
        let hashes: Vec<Hash> = bodies.iter().map(|b| sysheaders::hash(b)).collect();
        let mut n = 0;
        let mut add = |i: usize| {
            n += 1;
            store
                .add_and_place(&hashes[i], &bodies[i], job.as_raw_fd(), &name(n))
                .unwrap();
        };
        add(0);
        add(1);
        add(2);
        // 0 used again: 1 is now the oldest, and goes first.
        assert!(store
            .place(&hashes[0], job.as_raw_fd(), &name(100))
            .unwrap());
        add(3);
        let has = |i: usize| store.lock().files.contains_key(&hashes[i]);
        assert!(has(0) && !has(1) && has(2) && has(3));
        assert_eq!(store.held(), (3, 90));
        // The byte bound: 60 more bytes push out the two oldest.
        let big = vec![b'z'; 70];
        let hb = sysheaders::hash(&big);
        store
            .add_and_place(&hb, &big, job.as_raw_fd(), &name(200))
            .unwrap();
        assert!(store.held().1 <= 100, "{:?}", store.held());
        assert!(has(3) && !has(0) && !has(2));
        let files = std::fs::read_dir(store.path()).unwrap().count();
        assert_eq!(files, store.held().0);
        // Larger than the whole store: the job gets it, the store does not.
        let huge = vec![b'y'; 101];
        let hh = sysheaders::hash(&huge);
        store
            .add_and_place(&hh, &huge, job.as_raw_fd(), &name(300))
            .unwrap();
        assert!(!store.lock().files.contains_key(&hh));
        assert_eq!(std::fs::read(dir.join("job/h300.h")).unwrap(), huge);
        // Evicted files stay readable through the links jobs made.
        assert_eq!(std::fs::read(dir.join("job/h2.h")).unwrap(), bodies[1]);
    }

    #[test]
    fn a_file_gone_from_under_the_store_counts_as_missing() {
        let dir = TestDir::new("store-gone");
        let store = HeaderStore::create(&dir.path, MAX_BYTES, MAX_FILES).unwrap();
        let job = job_dir(&dir, "job");
        let h = sysheaders::hash(b"x");
        store
            .add_and_place(&h, b"x", job.as_raw_fd(), &name(0))
            .unwrap();
        std::fs::remove_file(store.path().join(sysheaders::hex(&h))).unwrap();
        assert!(!store.place(&h, job.as_raw_fd(), &name(1)).unwrap());
        assert_eq!(store.held(), (0, 0));
        store
            .add_and_place(&h, b"x", job.as_raw_fd(), &name(1))
            .unwrap();
        assert!(store.place(&h, job.as_raw_fd(), &name(2)).unwrap());
    }

    #[test]
    fn links_made_while_others_evict_are_whole_or_missing() {
        // Jobs link a set of headers while other jobs add new ones to a
        // store too small for them all: every placed header has its full
        // body, and a miss is only ever reported as a miss.
        let dir = TestDir::new("store-race");
        let store = Arc::new(HeaderStore::create(&dir.path, 64 * 40, 40).unwrap());
        let bodies: Vec<Vec<u8>> = (0..200).map(|i| format!("{i:064}").into_bytes()).collect();
        let hashes: Vec<Hash> = bodies.iter().map(|b| sysheaders::hash(b)).collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (store, bodies, hashes, dir) = (&store, &bodies, &hashes, &dir);
                s.spawn(move || {
                    let job = job_dir(dir, &format!("job{t}"));
                    for round in 0..400 {
                        let i = (round * 7 + t * 13) % bodies.len();
                        let n = name(round);
                        let placed = store.place(&hashes[i], job.as_raw_fd(), &n).unwrap();
                        if !placed {
                            store
                                .add_and_place(&hashes[i], &bodies[i], job.as_raw_fd(), &n)
                                .unwrap();
                        }
                        let path = dir.path.join(format!("job{t}/h{round}.h"));
                        assert_eq!(std::fs::read(path).unwrap(), bodies[i]);
                    }
                });
            }
        });
        let (files, bytes) = store.held();
        assert!(files <= 40 && bytes <= 64 * 40, "{files} {bytes}");
        assert_eq!(std::fs::read_dir(store.path()).unwrap().count(), files);
    }
}
