//! The exact include scanner of pump mode: for one compile, every file the compiler reads, found by preprocessing the directives as the compiler would, with caches that live for one build.
//!
//! The model is goma's include processor, not distcc's Python include
//! server: a single-valued preprocessor that evaluates `#if` with the
//! compiler's own predefined macros and search dirs (asked of the compiler,
//! cached per flag set), and that fails closed: whatever it cannot decide
//! is [`NotCovered`], and the job goes in plain mode.
//!
//! Caches (all bounded, all for the [`Scanner`]'s lifetime):
//! * the compiler's answers, per distinct driver flags (`compiler.rs`);
//! * search lists per set of search options (`-I`, `-iquote`, `-isystem`,
//!   `-idirafter`, `-iprefix`...), asked of the compiler itself with
//!   `-E -v` rather than rebuilt with gcc's and clang's differing
//!   de-duplication rules: one run (about 10 ms) per distinct option set
//!   and cwd in a build, and a kernel build has a few dozen; re-asked when
//!   a dir the compiler ignored as missing has appeared;
//! * parsed directives per file, reused only while the file's (mtime,
//!   size, inode, device) are unchanged, and never for a file modified in
//!   the last two seconds (it may still be being written);
//! * closures per (cwd, command), reused only while every path the scan
//!   looked up, found or not, stats the same;
//! * checkpoints of main files (`walk/checkpoint.rs`): the walk's state
//!   after a main file's top-level `#include`s, from which another source
//!   with the same first directives and command goes on.
//!
//! Negative lookups are never cached across scans: within one scan a
//! lookup is memoized (`fs.rs`); the next scan stats again, so a header a
//! build generates between two compiles is found (distcc's include server
//! caches the miss for the whole build). The closure cache keeps the misses
//! as probes and re-checks them, so it sees the new header too. A stat
//! costs about a microsecond; a warm scan of a kernel file makes a few
//! thousand, a small part of its time (the macro table and `#if`s are
//! the rest), so per-directory listings would buy little.

mod command;
mod compiler;
mod directives;
mod expr;
mod fs;
mod hash;
mod lex;
mod macros;
mod walk;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

pub use crate::pump::closure::NotCovered;
use crate::pump::closure::{Closure, Request};
use command::Command;
use compiler::{Info, Search};
use directives::Parsed;
use fs::Sig;
use hash::FastMap;
use lex::{Mode, Tok};

/// The scanner's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Per scan: wall time, bytes of files followed, include depth.
    pub time: Duration,
    pub bytes: usize,
    pub depth: usize,
    /// Cached parsed files: count and source bytes, over all shards.
    pub parsed_files: usize,
    pub parsed_bytes: usize,
    /// Cached closures: the paths (files, links, dirs, probes) they hold, over all.
    pub closure_paths: usize,
    /// Checkpoints of main files: the paths and macros they hold, over all.
    pub checkpoint_paths: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            time: Duration::from_secs(20),
            bytes: 512 << 20,
            depth: 200,
            parsed_files: 200_000,
            parsed_bytes: 1 << 30,
            closure_paths: 1_000_000,
            checkpoint_paths: 1_000_000,
        }
    }
}

const SHARDS: usize = 16;

/// The most macros a scan's table makes room for at its start.
const MAX_TABLE_HINT: usize = 1 << 16;

/// A bound on each cache of compiler answers (one entry per distinct flag
/// set, search-option set or `__has_*` operand).
const MAX_QUERIES: usize = 4096;

/// The environment variables that add search dirs behind the command's back.
const SEARCH_VARIABLES: [&str; 5] = [
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "OBJCPLUS_INCLUDE_PATH",
];

type Once<T> = Arc<OnceLock<Result<T, String>>>;
/// (driver-flag key, cwd, search options).
type ChainKey = (u64, PathBuf, Vec<String>);
/// (cwd, command, with the system headers).
type ClosureKey = (PathBuf, Command, bool);
/// (driver-flag key, operator, operand).
type FeatureKey = (u64, Vec<u8>, Vec<u8>);

#[derive(Default)]
struct ParseShard {
    /// By the path's bytes, then by lexing mode.
    files: FastMap<OsString, Vec<(Mode, Sig, Arc<Parsed>)>>,
    count: usize,
    bytes: usize,
}

impl ParseShard {
    fn get(&self, real: &Path, mode: Mode) -> Option<&(Mode, Sig, Arc<Parsed>)> {
        let modes = self.files.get(real.as_os_str())?;
        modes.iter().find(|(m, _, _)| *m == mode)
    }

    fn put(&mut self, real: &Path, mode: Mode, sig: Sig, parsed: Arc<Parsed>) {
        let modes = self.files.entry(real.as_os_str().to_owned()).or_default();
        match modes.iter_mut().find(|(m, _, _)| *m == mode) {
            Some(old) => {
                self.bytes -= old.2.size;
                *old = (mode, sig, parsed.clone());
            }
            None => {
                self.count += 1;
                modes.push((mode, sig, parsed.clone()));
            }
        }
        self.bytes += parsed.size;
    }

    fn evict_half(&mut self) {
        evict_half(&mut self.files);
        let all = || self.files.values().flatten();
        self.count = all().count();
        self.bytes = all().map(|(_, _, p)| p.size).sum();
    }
}

/// What one scan found.
struct Scan {
    closure: Closure,
    read: Vec<PathBuf>,
    probes: Vec<(PathBuf, Option<Sig>)>,
}

/// The command of a request, once the scanner's own environment is checked.
fn checked_command(req: &Request) -> Result<Command, NotCovered> {
    if let Some(v) = search_variable(|v| std::env::var_os(v).is_some()) {
        return Err(NotCovered(format!(
            "{v} is set in the include server's environment"
        )));
    }
    if !req.cwd.is_absolute() {
        return Err(NotCovered("a relative working directory".into()));
    }
    command::read(&req.argv)
}

/// The first variable of [`SEARCH_VARIABLES`] that is set.
fn search_variable(is_set: impl Fn(&str) -> bool) -> Option<&'static str> {
    SEARCH_VARIABLES.iter().copied().find(|v| is_set(v))
}

struct CachedClosure {
    closure: Closure,
    probes: Vec<(PathBuf, Option<Sig>)>,
}

impl CachedClosure {
    /// The paths it holds, for the cache's bound.
    fn weight(&self) -> usize {
        1 + self.closure.paths() + self.probes.len()
    }
}

#[derive(Default)]
struct ClosureCache {
    map: HashMap<ClosureKey, Arc<CachedClosure>>,
    paths: usize,
}

/// A search chain ready for scans.
struct Chain {
    search: Search,
    dirs: Vec<(Vec<u8>, PathBuf, Option<usize>)>,
    quote_len: usize,
    system_real: Vec<PathBuf>,
}

/// The include scanner of one build, shared by the include server's threads.
pub struct Scanner {
    limits: Limits,
    infos: Mutex<HashMap<u64, Once<Arc<Info>>>>,
    chains: Mutex<HashMap<ChainKey, Once<Arc<Chain>>>>,
    features: Mutex<HashMap<FeatureKey, Result<Tok, String>>>,
    /// Held while the compiler is asked for `__has_*` values, so that
    /// concurrent scans missing the same values wait for one run.
    asking: Mutex<()>,
    parsed: Vec<Mutex<ParseShard>>,
    closures: Mutex<ClosureCache>,
    checkpoints: walk::Checkpoints,
    /// Scans that went on from a checkpoint.
    resumed: AtomicUsize,
    /// How many macros the last scan changed: the next one's table starts that big.
    table_hint: AtomicUsize,
}

impl Default for Scanner {
    fn default() -> Scanner {
        Scanner::new()
    }
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Scanner {
        Scanner {
            limits,
            infos: Mutex::default(),
            chains: Mutex::default(),
            features: Mutex::default(),
            asking: Mutex::default(),
            parsed: (0..SHARDS).map(|_| Mutex::default()).collect(),
            closures: Mutex::default(),
            checkpoints: walk::Checkpoints::new(limits.checkpoint_paths),
            resumed: AtomicUsize::new(0),
            table_hint: AtomicUsize::new(0),
        }
    }

    /// Every file the compile reads, or why the scanner cannot tell.
    pub fn closure(&self, req: &Request) -> Result<Closure, NotCovered> {
        let cmd = checked_command(req)?;
        let key = (req.cwd.clone(), cmd.clone(), req.system_headers);
        if let Some(hit) = self.cached_closure(&key) {
            return Ok(hit);
        }
        let scan = self.scan(req, &cmd)?;
        self.store_closure(key, &scan.closure, scan.probes);
        Ok(scan.closure)
    }

    fn table_hint(&self) -> usize {
        self.table_hint.load(Ordering::Relaxed)
    }

    /// How many scans so far went on from a checkpoint of another source
    /// instead of walking its headers again.
    pub fn resumed(&self) -> u64 {
        self.resumed.load(Ordering::Relaxed) as u64
    }

    /// Every file the compile reads, the compiler's own headers too, in the
    /// order first read (for checks against `cc -M`; no closure cache).
    pub fn files_read(&self, req: &Request) -> Result<Vec<PathBuf>, NotCovered> {
        let cmd = checked_command(req)?;
        Ok(self.scan(req, &cmd)?.read)
    }

    fn scan(&self, req: &Request, cmd: &Command) -> Result<Scan, NotCovered> {
        let (info_key, info) = self.info(&req.cwd, cmd)?;
        let chain = self.chain(info_key, &info, &req.cwd, cmd)?;
        let dirs = chain
            .dirs
            .iter()
            .map(|(name, path, system)| walk::SearchDir {
                name: name.clone(),
                path: path.clone(),
                system: *system,
            })
            .collect();
        let mut w = walk::Walk::new(
            self,
            cmd,
            &info,
            info_key,
            &req.cwd,
            dirs,
            chain.quote_len,
            chain.system_real.clone(),
        );
        w.system_headers = req.system_headers;
        w.run()
            .map_err(|NotCovered(why)| NotCovered(why.trim_start_matches('@').to_string()))?;
        let changed = w.changed_macros().min(MAX_TABLE_HINT);
        self.table_hint.store(changed, Ordering::Relaxed);
        let mut probes = std::mem::take(&mut w.fs.probes);
        probes.extend(chain.search.absent.iter().map(|d| (req.cwd.join(d), None)));
        Ok(Scan {
            closure: std::mem::take(&mut w.closure),
            read: std::mem::take(&mut w.read),
            probes,
        })
    }

    fn cached_closure(&self, key: &ClosureKey) -> Option<Closure> {
        let hit = self
            .closures
            .lock()
            .expect("closure cache")
            .map
            .get(key)
            .cloned()?;
        probes_hold(&hit.probes).then(|| hit.closure.clone())
    }

    fn store_closure(
        &self,
        key: ClosureKey,
        closure: &Closure,
        probes: Vec<(PathBuf, Option<Sig>)>,
    ) {
        if !probes_settled(&probes) {
            return;
        }
        let entry = Arc::new(CachedClosure {
            closure: closure.clone(),
            probes,
        });
        let mut cache = self.closures.lock().expect("closure cache");
        if cache.paths + entry.weight() > self.limits.closure_paths {
            evict_half(&mut cache.map);
            cache.paths = cache.map.values().map(|c| c.weight()).sum();
        }
        cache.paths += entry.weight();
        if let Some(old) = cache.map.insert(key, entry) {
            cache.paths -= old.weight();
        }
    }

    /// The compiler's macros, dirs and operators for the command's driver flags.
    fn info(&self, cwd: &Path, cmd: &Command) -> Result<(u64, Arc<Info>), NotCovered> {
        let place = needs_cwd(cmd).then(|| cwd.to_path_buf());
        let key = hash(&(place, &cmd.compiler, cmd.lang, &cmd.driver));
        let cell = {
            let mut infos = self.infos.lock().expect("info cache");
            if infos.len() >= MAX_QUERIES {
                evict_half(&mut infos);
            }
            infos.entry(key).or_default().clone()
        };
        let info = cell.get_or_init(|| {
            compiler::query(cwd, &cmd.compiler, cmd.lang, &cmd.driver).map(Arc::new)
        });
        info.clone().map(|i| (key, i)).map_err(NotCovered)
    }

    /// The search chain for the command's search options.
    fn chain(
        &self,
        info_key: u64,
        info: &Info,
        cwd: &Path,
        cmd: &Command,
    ) -> Result<Arc<Chain>, NotCovered> {
        let key = (info_key, cwd.to_path_buf(), cmd.search.clone());
        for _ in 0..2 {
            let cell = {
                let mut chains = self.chains.lock().expect("chain cache");
                if chains.len() >= MAX_QUERIES {
                    evict_half(&mut chains);
                }
                chains.entry(key.clone()).or_default().clone()
            };
            let made = cell.get_or_init(|| {
                let search = if cmd.search.is_empty() {
                    Ok(info.search.clone())
                } else {
                    compiler::search(cwd, &cmd.compiler, cmd.lang, &cmd.driver, &cmd.search)
                };
                search.map(|s| Arc::new(chain_of(s, &info.search, cwd)))
            });
            let chain = made.clone().map_err(NotCovered)?;
            let appeared = chain
                .search
                .absent
                .iter()
                .any(|d| fs::stat(&cwd.join(d)).map_or(true, |s| s.is_some()));
            if !appeared {
                return Ok(chain);
            }
            self.chains.lock().expect("chain cache").remove(&key);
        }
        Err(NotCovered("the search dirs keep changing".into()))
    }

    /// A file's directives, from the cache while its stat is unchanged.
    fn parsed(&self, real: &Path, sig: Sig, mode: Mode) -> Result<Arc<Parsed>, NotCovered> {
        let shard = {
            let mut h = hash::Fx::default();
            h.write(real.as_os_str().as_bytes());
            &self.parsed[h.finish() as usize % SHARDS]
        };
        if let Some((_, s, p)) = shard.lock().expect("parse cache").get(real, mode) {
            if *s == sig {
                return Ok(p.clone());
            }
        }
        let raw =
            std::fs::read(real).map_err(|e| NotCovered(format!("{}: {e}", real.display())))?;
        if raw.len() as u64 != sig.size {
            return Err(NotCovered(format!(
                "{} changed while it was read",
                real.display()
            )));
        }
        let parsed = Arc::new(directives::parse(&raw, mode));
        if settled(sig) {
            let mut s = shard.lock().expect("parse cache");
            if s.count >= self.limits.parsed_files / SHARDS
                || s.bytes >= self.limits.parsed_bytes / SHARDS
            {
                s.evict_half();
            }
            s.put(real, mode, sig, parsed.clone());
        }
        Ok(parsed)
    }

    /// The compiler's value for `NAME(ARG)`, asked once per build. On a
    /// miss, the operands not known yet in every file open in the walk
    /// (`more`) are asked in the same run: one compiler run costs the same
    /// for one operand or a hundred. One run at a time: a scan that misses
    /// while another asks waits, and usually finds its answer cached.
    fn feature(
        &self,
        info_key: u64,
        cwd: &Path,
        cmd: &Command,
        operand: (Vec<u8>, Vec<u8>),
        more: impl FnOnce() -> Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Tok, String> {
        let key = |(n, a): &(Vec<u8>, Vec<u8>)| (info_key, n.clone(), a.clone());
        let cached = |op: &(Vec<u8>, Vec<u8>)| {
            let cache = self.features.lock().expect("feature cache");
            cache.get(&key(op)).cloned()
        };
        if let Some(v) = cached(&operand) {
            return v;
        }
        let _asking = self.asking.lock().expect("feature query");
        let mut batch = vec![operand];
        {
            let cache = self.features.lock().expect("feature cache");
            if let Some(v) = cache.get(&key(&batch[0])) {
                return v.clone();
            }
            for m in more() {
                if batch.len() < 256 && !batch.contains(&m) && !cache.contains_key(&key(&m)) {
                    batch.push(m);
                }
            }
        }
        let ask = |ops: &[(Vec<u8>, Vec<u8>)]| {
            compiler::features(cwd, &cmd.compiler, cmd.lang, &cmd.driver, ops)
        };
        let answers: Vec<Result<Tok, String>> = match ask(&batch) {
            Ok(all) => all.into_iter().map(Ok).collect(),
            Err(_) if batch.len() > 1 => {
                batch.truncate(1);
                vec![ask(&batch).map(|mut v| v.remove(0))]
            }
            Err(e) => vec![Err(e)],
        };
        let mut cache = self.features.lock().expect("feature cache");
        if cache.len() + answers.len() >= MAX_QUERIES {
            evict_half(&mut cache);
        }
        for (op, v) in batch.iter().zip(&answers) {
            cache.insert(key(op), v.clone());
        }
        answers[0].clone()
    }
}

fn hash<T: Hash + ?Sized>(t: &T) -> u64 {
    let mut h = DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

fn evict_half<K: Clone + Eq + Hash, V, S: std::hash::BuildHasher>(map: &mut HashMap<K, V, S>) {
    let keys: Vec<K> = map.keys().step_by(2).cloned().collect();
    for k in keys {
        map.remove(&k);
    }
}

/// True if every probe stats now as it did.
fn probes_hold(probes: &[(PathBuf, Option<Sig>)]) -> bool {
    probes
        .iter()
        .all(|(p, sig)| fs::stat(p).is_ok_and(|now| now == *sig))
}

/// True unless a file probed changed in the last seconds: it may still be
/// being written, and on a file system with coarse timestamps its stat may
/// not show the rest.
fn probes_settled(probes: &[(PathBuf, Option<Sig>)]) -> bool {
    !probes
        .iter()
        .any(|(_, sig)| sig.is_some_and(|s| !s.dir && !settled(s)))
}

/// True if the file was last changed long enough ago that a write still
/// under way would have moved its mtime.
fn settled(sig: Sig) -> bool {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    sig.mtime + 2 < now
}

/// True if the driver flags or the compiler name a relative path, so the
/// compiler's answers depend on the cwd.
fn needs_cwd(cmd: &Command) -> bool {
    let relative = |a: &str| {
        let v = a.split_once('=').map_or(a, |(_, v)| v);
        v.contains('/')
            && !v.starts_with('/')
            && !a.starts_with("-B/")
            && !a.starts_with("-isysroot/")
    };
    relative(&cmd.compiler) || cmd.driver.iter().any(|a| relative(a))
}

fn chain_of(search: Search, defaults: &Search, cwd: &Path) -> Chain {
    let real = |d: &str| std::fs::canonicalize(cwd.join(d)).ok();
    let system_real: Vec<PathBuf> = defaults.bracket.iter().filter_map(|d| real(d)).collect();
    let dirs = search
        .quote
        .iter()
        .chain(&search.bracket)
        .map(|d| {
            let system = real(d).and_then(|r| system_real.iter().position(|s| *s == r));
            (d.as_bytes().to_vec(), cwd.join(d), system)
        })
        .collect();
    Chain {
        quote_len: search.quote.len(),
        search,
        dirs,
        system_real,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_variables_of_the_environment_refuse_the_scan() {
        assert_eq!(search_variable(|v| v == "CPATH"), Some("CPATH"));
        assert_eq!(
            search_variable(|v| v == "CPLUS_INCLUDE_PATH"),
            Some("CPLUS_INCLUDE_PATH")
        );
        assert_eq!(
            search_variable(|v| v == "OBJC_INCLUDE_PATH"),
            Some("OBJC_INCLUDE_PATH")
        );
        assert_eq!(search_variable(|_| false), None);
    }
}
