//! Checkpoints of main files: a walk's state after a main file's top-level `#include`s, kept for the build, so that the next source that starts with the same directives under the same command resumes there instead of walking the same headers again.
//!
//! A checkpoint's key is what the state at that point is made of: the
//! compiler and its search chain (the driver-flag key, the cwd and the
//! search options), the command's `-include`s and `-imacros`, the names of
//! its `-D`s and `-U`s, and the main file's directives up to that point
//! (each one's tokens and where its group goes on, not its line). The rest
//! is checked when a walk takes a checkpoint up:
//! * every path looked up before it stats the same now (as for the closure
//!   cache), so a header made or changed since is seen;
//! * each `-D` or `-U` value the walk asked about is the command's value
//!   now (a kernel build gives each file its own `KBUILD_MODNAME`, which no
//!   header asks about);
//! * the main file's directory is in the key only once a `"..."` include
//!   in the main file searched it.
//!
//! A walk that reads `__LINE__`, `__FILE__` or `__BASE_FILE__` in the main
//! file, has `#pragma once` there, or reads the main file as a header,
//! takes no checkpoint after that. A checkpoint is kept the second time its
//! key is reached, so only prefixes that sources share take memory, and all
//! of them together are bounded by the paths and macros they hold.

use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::super::directives::Parsed;
use super::super::fs::Part;
use super::super::hash::{FastMap, FastSet};
use super::super::lex::Text;
use super::super::macros::{Changes, Table};
use super::super::{evict_half, probes_hold, probes_settled};
use super::{dir_of, Found, OnceKey, Walk};
use crate::pump::closure::Closure;

/// How many keys reached once are remembered; past it they are forgotten at once.
const MAX_SIGHTED: usize = 100_000;

/// The checkpoints of a build, shared by its scans.
pub struct Checkpoints {
    map: Mutex<Kept>,
    /// The bound on the paths and macros all checkpoints hold.
    limit: usize,
}

#[derive(Default)]
struct Kept {
    snapshots: FastMap<u128, Arc<Snapshot>>,
    sighted: FastSet<u128>,
    weight: usize,
}

/// A walk's state at a checkpoint, without the main file's own part.
struct Snapshot {
    changes: Changes,
    once: Vec<OnceKey>,
    closure: Closure,
    /// The files read, and where the main file came among them.
    read: Vec<PathBuf>,
    main_read_at: usize,
    fs: Part,
    feature_wrappers: FastMap<Text, (Text, usize)>,
    used_system: Vec<bool>,
    bytes: usize,
    dir_used: bool,
}

impl Snapshot {
    fn weight(&self) -> usize {
        1 + self.changes.weight()
            + self.once.len()
            + self.closure.paths()
            + self.read.len()
            + self.fs.weight()
    }
}

impl Checkpoints {
    pub fn new(limit: usize) -> Checkpoints {
        Checkpoints {
            map: Mutex::default(),
            limit,
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.map.lock().expect("checkpoints")
    }

    /// The latest place below `below` with a checkpoint, its key and the checkpoint.
    fn latest(&self, keys: &[(u128, u128)], below: usize) -> Option<(usize, u128, Arc<Snapshot>)> {
        let kept = self.kept();
        keys[..below]
            .iter()
            .enumerate()
            .rev()
            .find_map(|(at, (free, with_dir))| {
                [free, with_dir]
                    .into_iter()
                    .find_map(|k| kept.snapshots.get(k).map(|s| (at, *k, s.clone())))
            })
    }

    fn forget(&self, key: u128) {
        let mut kept = self.kept();
        if let Some(old) = kept.snapshots.remove(&key) {
            kept.weight -= old.weight();
        }
    }

    /// True if a walk reaching `key` should keep its state: the key was
    /// reached once before and has no checkpoint.
    fn wanted(&self, key: u128) -> bool {
        let mut kept = self.kept();
        if kept.snapshots.contains_key(&key) {
            return false;
        }
        if kept.sighted.len() >= MAX_SIGHTED {
            kept.sighted.clear();
        }
        !kept.sighted.insert(key)
    }

    fn keep(&self, key: u128, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        let mut kept = self.kept();
        if kept.weight + snapshot.weight() > self.limit {
            evict_half(&mut kept.snapshots);
            kept.weight = kept.snapshots.values().map(|s| s.weight()).sum();
        }
        kept.weight += snapshot.weight();
        if let Some(old) = kept.snapshots.insert(key, snapshot) {
            kept.weight -= old.weight();
        }
    }
}

/// What a walk knows of its main file for checkpoints.
#[derive(Default)]
pub struct Main {
    real: PathBuf,
    /// The path the main file was looked up by.
    looked_up: PathBuf,
    size: usize,
    /// Per directive of the main file, the key of the place before it
    /// (and one for its end): without the main file's dir, and with it.
    keys: Vec<(u128, u128)>,
    /// A `"..."` include in the main file searched the main file's dir.
    dir_used: bool,
    /// The state depends on the main file itself from here on.
    tainted: Cell<bool>,
}

impl Main {
    pub fn taint(&self) {
        self.tainted.set(true);
    }

    pub fn searched_its_dir(&mut self) {
        self.dir_used = true;
    }

    pub fn entered_as_header(&self, real: &Path) {
        if real == self.real {
            self.taint();
        }
    }
}

/// A 128-bit hasher: two SipHash streams seeded apart.
#[derive(Clone)]
struct Wide(DefaultHasher, DefaultHasher);

impl Wide {
    fn new(seed: &impl Hash) -> Wide {
        let mut w = Wide(DefaultHasher::new(), DefaultHasher::new());
        1u8.hash(&mut w.0);
        2u8.hash(&mut w.1);
        seed.hash(&mut w.0);
        seed.hash(&mut w.1);
        w
    }

    fn add(&mut self, v: impl Hash) {
        v.hash(&mut self.0);
        v.hash(&mut self.1);
    }

    fn finish(&self) -> u128 {
        (self.0.finish() as u128) << 64 | self.1.finish() as u128
    }
}

/// The keys of every place in a main file, from a start.
fn place_keys(mut h: Wide, parsed: &Parsed) -> Vec<u128> {
    let mut keys = Vec::with_capacity(parsed.entries.len() + 1);
    keys.push(h.finish());
    for (i, e) in parsed.entries.iter().enumerate() {
        let onward = if e.next == 0 { 0 } else { e.next as usize - i };
        h.add((e.hash, onward));
        keys.push(h.finish());
    }
    keys
}

impl Walk<'_> {
    /// Notes the main file and computes the keys of its places.
    pub(super) fn plan_checkpoints(&mut self, main: &Found, parsed: &Parsed, names: &[Text]) {
        let cmd = self.cmd;
        let base = (
            self.info_key,
            &self.cwd,
            &cmd.search,
            &cmd.imacros,
            &cmd.includes,
            names,
            self.system_headers,
            cmd.prefix_maps,
        );
        let free = place_keys(Wide::new(&(&base, 0u8)), parsed);
        let dir = dir_of(cmd.source.as_bytes());
        let with_dir = place_keys(Wide::new(&(&base, 1u8, dir)), parsed);
        self.main = Main {
            real: main.resolved.real.clone(),
            looked_up: self
                .cwd
                .join(Path::new(std::ffi::OsStr::from_bytes(&main.name))),
            size: parsed.size,
            keys: free.into_iter().zip(with_dir).collect(),
            dir_used: false,
            tainted: Cell::new(false),
        };
    }

    /// Takes up the latest checkpoint that holds for this walk; the place
    /// in the main file to go on from.
    pub(super) fn resume(&mut self, main: &Found, parsed: &Parsed) -> Option<usize> {
        let checkpoints = &self.scanner.checkpoints;
        let id = OnceKey::of(main.resolved.sig?, parsed);
        let mut below = self.main.keys.len();
        while let Some((at, key, snapshot)) = checkpoints.latest(&self.main.keys, below) {
            below = at;
            if !probes_hold(&snapshot.fs.probes) {
                checkpoints.forget(key);
                continue;
            }
            let same_values = (snapshot.changes.consulted.iter())
                .all(|(name, v)| self.table.value(name) == v.as_ref());
            if !same_values || id.in_list(&snapshot.once, self.info.gcc) {
                continue;
            }
            self.take_up(&snapshot);
            let resumed = &self.scanner.resumed;
            resumed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::debug!(
                "{}: {} files from a checkpoint before directive {at} of {}",
                self.cmd.source,
                snapshot.read.len(),
                parsed.entries.len()
            );
            return Some(at);
        }
        None
    }

    fn take_up(&mut self, s: &Snapshot) {
        self.table = Table::resumed(&self.table, s.changes.clone());
        self.once = s.once.clone();
        self.closure = s.closure.clone();
        let c = &self.closure;
        self.seen_files = c.files.iter().map(|f| &f.path).collect();
        self.seen_links = c.links.iter().map(|l| &l.path).collect();
        self.seen_dirs = c.dirs.iter().collect();
        self.seen_system = c.system_files.iter().collect();
        let mut read = s.read.clone();
        if !read.contains(&self.main.real) {
            read.insert(s.main_read_at, self.main.real.clone());
        }
        self.seen_read = read.iter().collect();
        self.read = read;
        self.fs.take_up(&s.fs);
        self.feature_wrappers = s.feature_wrappers.clone();
        self.used_system = s.used_system.clone();
        self.bytes = s.bytes;
        self.main.dir_used = s.dir_used;
    }

    /// At place `at` of the main file: keeps the state if sources share it.
    pub(super) fn checkpoint(&mut self, at: usize) {
        if at == 0 && self.cmd.includes.is_empty() && self.cmd.imacros.is_empty() {
            return;
        }
        if self.main.tainted.get() {
            return;
        }
        let Some(&(free, with_dir)) = self.main.keys.get(at) else {
            return;
        };
        let key = if self.main.dir_used { with_dir } else { free };
        let checkpoints = &self.scanner.checkpoints;
        if !checkpoints.wanted(key) {
            return;
        }
        let fs = self.fs.part(&self.main.looked_up);
        if !probes_settled(&fs.probes) {
            return;
        }
        let Some(main_read_at) = self.read.iter().position(|r| *r == self.main.real) else {
            return;
        };
        let mut read = self.read.clone();
        read.remove(main_read_at);
        let snapshot = Snapshot {
            changes: self.table.changes(),
            once: self.once.clone(),
            closure: self.closure.clone(),
            read,
            main_read_at,
            fs,
            feature_wrappers: self.feature_wrappers.clone(),
            used_system: self.used_system.clone(),
            bytes: self.bytes - self.main.size,
            dir_used: self.main.dir_used,
        };
        checkpoints.keep(key, snapshot);
    }
}
