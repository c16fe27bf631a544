//! A fast hasher for the scanner's in-memory maps (macro names, paths), whose keys come from the build's own files.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// The Fx hash (rustc's): a multiply and rotate per word.
#[derive(Clone, Copy, Default)]
pub struct Fx(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        // The last bytes as one word, built without a call to memcpy (a
        // path's or a name's tail is hashed on every lookup).
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let word = rest
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b));
            self.add(word);
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.add(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;
pub type FastSet<K> = HashSet<K, BuildHasherDefault<Fx>>;

/// A set of paths hashed by their bytes (a `Path`'s own hash walks its
/// components); adding allocates only for a new path.
#[derive(Clone, Default)]
pub struct PathSet(FastSet<std::ffi::OsString>);

impl PathSet {
    pub fn contains(&self, p: &std::path::Path) -> bool {
        self.0.contains(p.as_os_str())
    }

    /// Adds a path: true if it was not there.
    pub fn add(&mut self, p: &std::path::Path) -> bool {
        if self.contains(p) {
            return false;
        }
        self.0.insert(p.as_os_str().to_owned())
    }

    pub fn remove(&mut self, p: &std::path::Path) -> bool {
        self.0.remove(p.as_os_str())
    }
}

impl<'a> FromIterator<&'a std::path::PathBuf> for PathSet {
    fn from_iter<I: IntoIterator<Item = &'a std::path::PathBuf>>(paths: I) -> PathSet {
        PathSet(
            paths
                .into_iter()
                .map(|p| p.as_os_str().to_owned())
                .collect(),
        )
    }
}
