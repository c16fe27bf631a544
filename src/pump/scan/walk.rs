//! One scan: the translation unit preprocessed at the level of directives, exactly as the compiler would, collecting every file it reads.

mod checkpoint;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::command::{Command, MacroOp};
use super::compiler::Info;
use super::directives::{self, Dir, IncludeKind, Macro, Parsed};
use super::expr;
use super::fs::{Fs, Resolved};
use super::hash::{FastMap, PathSet};
use super::lex::{self, Kind, Text, Tok};
use super::macros::{header_name, Env, Expander, PTok, Table};
use super::{Limits, NotCovered, Scanner};
use crate::pump::closure::{Closure, Input, Link};
pub use checkpoint::Checkpoints;

fn nc<T>(why: impl Into<String>) -> Result<T, NotCovered> {
    Err(NotCovered(why.into()))
}

fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A search dir: as the compiler spells it, absolute, and whether it is one
/// of the compiler's default dirs.
pub struct SearchDir {
    pub name: Vec<u8>,
    pub path: PathBuf,
    /// Its place among the compiler's default dirs, if it is one.
    pub system: Option<usize>,
}

/// A file being read, as the include stack holds it.
struct Frame {
    /// Its name as the compiler gives it (relative to the cwd, or absolute).
    name: Vec<u8>,
    /// Where in the search chain it was found, for `#include_next`.
    found_at: Option<usize>,
    /// Found next to its includer (then `found_at` is `None`).
    relative: bool,
    line: u32,
    parsed: Arc<Parsed>,
    /// The main file (not a `-include` or header).
    main: bool,
}

/// What `#pragma once` remembers of a file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct OnceKey {
    id: (u64, u64),
    mtime: i64,
    size: u64,
    hash: u64,
}

impl OnceKey {
    fn of(sig: super::fs::Sig, parsed: &Parsed) -> OnceKey {
        OnceKey {
            id: (sig.dev, sig.ino),
            mtime: sig.mtime,
            size: sig.size,
            hash: parsed.hash,
        }
    }

    /// True if a list of files marked once holds this one: the same file,
    /// or for gcc one of the same contents, size and mtime.
    fn in_list(&self, once: &[OnceKey], gcc: bool) -> bool {
        let same = |k: &OnceKey| (k.mtime, k.size, k.hash) == (self.mtime, self.size, self.hash);
        once.iter().any(|k| k.id == self.id || (gcc && same(k)))
    }
}

/// How a file is entered.
#[derive(Clone, Copy)]
enum Entering {
    /// A header (or a `-include`), `#import`ed or not.
    Header { import: bool },
    /// The main file, from this directive on.
    Main { start: usize },
}

/// A file found by a search.
#[derive(Clone)]
struct Found {
    name: Vec<u8>,
    at: Option<usize>,
    relative: bool,
    resolved: Arc<Resolved>,
}

pub struct Walk<'a> {
    scanner: &'a Scanner,
    cmd: &'a Command,
    info: &'a Info,
    info_key: u64,
    cwd: PathBuf,
    /// `-iquote` dirs, then the bracket chain.
    chain: Vec<SearchDir>,
    quote_len: usize,
    system_real: Vec<PathBuf>,
    table: Table,
    pub fs: Fs,
    stack: Vec<Frame>,
    once: Vec<OnceKey>,
    pub closure: Closure,
    /// Every file entered, system headers too, in order.
    pub read: Vec<PathBuf>,
    seen_read: PathSet,
    seen_files: PathSet,
    seen_system: PathSet,
    seen_links: PathSet,
    seen_dirs: PathSet,
    /// Function-like macros that pass a parameter to a `__has_*` name, as
    /// glibc's `__glibc_has_attribute (attr)`: the name and the index.
    feature_wrappers: FastMap<Text, (Text, usize)>,
    used_system: Vec<bool>,
    /// Put the system headers in the closure too (`,sysheaders`).
    pub system_headers: bool,
    deadline: Instant,
    bytes: usize,
    limits: Limits,
    /// The main file's checkpoints.
    main: checkpoint::Main,
    /// A buffer for the paths a search tries.
    scratch: Vec<u8>,
}

impl<'a> Walk<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scanner: &'a Scanner,
        cmd: &'a Command,
        info: &'a Info,
        info_key: u64,
        cwd: &Path,
        chain: Vec<SearchDir>,
        quote_len: usize,
        system_real: Vec<PathBuf>,
    ) -> Walk<'a> {
        let limits = scanner.limits;
        Walk {
            scanner,
            cmd,
            info,
            info_key,
            cwd: cwd.to_path_buf(),
            used_system: vec![false; system_real.len()],
            system_headers: false,
            chain,
            quote_len,
            system_real,
            table: Table::with_capacity(info.macros.clone(), scanner.table_hint()),
            fs: Fs::default(),
            stack: Vec::new(),
            once: Vec::new(),
            closure: Closure::default(),
            read: Vec::new(),
            seen_read: PathSet::default(),
            seen_files: PathSet::default(),
            seen_system: PathSet::default(),
            seen_links: PathSet::default(),
            seen_dirs: PathSet::default(),
            feature_wrappers: FastMap::default(),
            deadline: Instant::now() + limits.time,
            bytes: 0,
            limits,
            main: checkpoint::Main::default(),
            scratch: Vec::new(),
        }
    }

    /// Scans the whole translation unit.
    pub fn run(&mut self) -> Result<(), NotCovered> {
        let source = self.cmd.source.as_bytes().to_vec();
        let Some(main) = self.lookup(&source, None)? else {
            return nc(format!("cannot read the source {}", self.cmd.source));
        };
        let mut names = Vec::with_capacity(self.cmd.macros.len());
        for op in &self.cmd.macros {
            names.push(self.command_macro(op)?);
        }
        self.table.watch(names.iter().cloned());
        let sig = main.resolved.sig.expect("a found file has a stat");
        let parsed = self
            .scanner
            .parsed(&main.resolved.real, sig, self.info.mode)?;
        self.plan_checkpoints(&main, &parsed, &names);
        let start = match self.resume(&main, &parsed) {
            Some(at) => at,
            None => {
                self.before_main()?;
                0
            }
        };
        self.enter_main(main.clone(), parsed, start)?;
        self.put_main_first(&main);
        self.search_dirs()?;
        self.closure.system_dirs = self
            .system_real
            .iter()
            .zip(&self.used_system)
            .filter(|(_, used)| **used)
            .map(|(d, _)| d.clone())
            .collect();
        self.closure.cplusplus = self.cmd.lang.ends_with("++");
        if self.system_headers {
            self.closure.system_search = self.chain[self.quote_len..]
                .iter()
                .filter(|d| d.system.is_some())
                .map(|d| d.path.clone())
                .collect();
        }
        Ok(())
    }

    /// How many macros the walk defined or undefined.
    pub fn changed_macros(&self) -> usize {
        self.table.changed()
    }

    /// The command's `-imacros`, the compiler's preincludes and the command's `-include`s.
    fn before_main(&mut self) -> Result<(), NotCovered> {
        for name in &self.cmd.imacros {
            self.command_include(name.as_bytes(), "-imacros")?;
        }
        for name in &self.info.preincludes.clone() {
            self.preinclude(name)?;
        }
        for name in &self.cmd.includes {
            self.command_include(name.as_bytes(), "-include")?;
        }
        Ok(())
    }

    /// A `-D` or `-U`, applied to the table; its macro's name.
    fn command_macro(&mut self, op: &MacroOp) -> Result<Text, NotCovered> {
        match op {
            MacroOp::Define(def) => {
                if def.contains('\n') {
                    return nc("a newline in a -D value");
                }
                let text = match def.split_once('=') {
                    Some((name, body)) => format!("{name} {body}"),
                    None => format!("{def} 1"),
                };
                let lexed = lex::lex(format!("#define {text}\n").as_bytes(), self.info.mode)
                    .map_err(|e| NotCovered(format!("-D{def}: {e}")))?;
                let toks = lexed
                    .lines
                    .first()
                    .map(|l| l.toks[1..].to_vec())
                    .unwrap_or_default();
                let m =
                    directives::macro_of(&toks).map_err(|e| NotCovered(format!("-D{def}: {e}")))?;
                let name = m.name.clone();
                self.table.define(Arc::new(m));
                Ok(name)
            }
            MacroOp::Undef(name) => {
                let name = Text::from(name.as_bytes());
                self.table.undef(&name);
                Ok(name)
            }
        }
    }

    /// `-include` and `-imacros`: searched from the cwd, then the quote chain.
    fn command_include(&mut self, name: &[u8], what: &str) -> Result<(), NotCovered> {
        let found = if name.starts_with(b"/") {
            self.lookup(name, None)?
        } else {
            self.find(name, Some(b"./"), 0)?
        };
        let Some(found) = found else {
            return nc(format!("{what} {}: no such file", shown(name)));
        };
        self.enter(found, false)
    }

    /// gcc's implicit `#include <stdc-predef.h>`: read if found in the
    /// compiler's own dirs, as it was for its macros.
    fn preinclude(&mut self, name: &[u8]) -> Result<(), NotCovered> {
        let Some(found) = self.find(name, None, self.quote_len)? else {
            return Ok(());
        };
        if !self.is_system(&found.resolved.real) {
            return nc(format!(
                "{} in a search dir of the command shadows the compiler's",
                shown(name)
            ));
        }
        if self.system_headers {
            self.closure
                .preincludes
                .push(self.cwd.join(Path::new(OsStr::from_bytes(&found.name))));
        }
        self.enter(found, false)
    }

    /// An absolute path or one relative to the cwd.
    fn lookup(&mut self, name: &[u8], at: Option<usize>) -> Result<Option<Found>, NotCovered> {
        let path = self.cwd.join(Path::new(OsStr::from_bytes(name)));
        Ok(self.file_at(&path)?.map(|resolved| Found {
            name: name.to_vec(),
            at,
            relative: false,
            resolved,
        }))
    }

    /// The file (not a directory) at an absolute path, if there is one.
    fn file_at(&mut self, path: &Path) -> Result<Option<Arc<Resolved>>, NotCovered> {
        let r = self
            .fs
            .lookup(path)
            .map_err(|e| NotCovered(format!("{}: {e}", path.display())))?;
        Ok(r.filter(|r| r.sig.is_some_and(|s| !s.dir)))
    }

    /// Searches for `name`: first in `includer` (the spelled directory of
    /// the including file, for `"..."`), then the chain from `from`.
    fn find(
        &mut self,
        name: &[u8],
        includer: Option<&[u8]>,
        from: usize,
    ) -> Result<Option<Found>, NotCovered> {
        if let Some(dir) = includer {
            if let Some(mut f) = self.lookup(&join(dir, name), None)? {
                f.relative = true;
                return Ok(Some(f));
            }
        }
        for k in from..self.chain.len() {
            if let Some(i) = self.chain[k].system {
                self.used_system[i] = true;
            }
            // The dir's absolute path and the name: the bytes of the cwd
            // joined to the spelled name, made without allocating.
            let mut path = std::mem::take(&mut self.scratch);
            path.clear();
            path.extend_from_slice(self.chain[k].path.as_os_str().as_bytes());
            if !path.ends_with(b"/") {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            let found = self.file_at(Path::new(OsStr::from_bytes(&path)));
            self.scratch = path;
            if let Some(resolved) = found? {
                return Ok(Some(Found {
                    name: join(&self.chain[k].name, name),
                    at: Some(k),
                    relative: false,
                    resolved,
                }));
            }
        }
        Ok(None)
    }

    fn is_system(&self, real: &Path) -> bool {
        self.system_real.iter().any(|s| real.starts_with(s))
    }

    /// Whether the closure keeps a link or directory at `path`: not under
    /// a system dir, unless the system headers go too.
    fn keeps(&self, path: &Path) -> bool {
        self.system_headers || !self.is_system(path)
    }

    /// Puts a file (and the links and dirs on its way) in the closure.
    fn record(&mut self, f: &Found, source: bool) {
        let real = &f.resolved.real;
        if self.is_system(real) {
            if self.system_headers && self.seen_system.add(real) {
                self.closure.system_files.push(real.clone());
                self.record_way(&f.resolved);
            }
            return;
        }
        if self.seen_files.add(real) {
            let line_name =
                (!source && f.name.starts_with(b"/")).then(|| PathBuf::from(shown(&f.name)));
            self.closure.files.push(Input {
                path: real.clone(),
                line_name,
            });
        }
        self.record_way(&f.resolved);
    }

    fn record_way(&mut self, r: &Resolved) {
        for l in &r.links {
            if self.keeps(&l.path) && self.seen_links.add(&l.path) {
                self.closure.links.push(Link {
                    path: l.path.clone(),
                    target: l.target.clone(),
                });
            }
        }
        for d in &r.before_dotdot {
            self.record_dir(d);
        }
    }

    fn record_dir(&mut self, d: &Path) {
        if self.keeps(d) && d != Path::new("/") && self.seen_dirs.add(d) {
            self.closure.dirs.push(d.to_path_buf());
        }
    }

    /// The command's own search dirs that exist, so that they exist on the helper too.
    fn search_dirs(&mut self) -> Result<(), NotCovered> {
        for k in 0..self.chain.len() {
            if self.chain[k].system.is_some() {
                continue;
            }
            let path = self.chain[k].path.clone();
            let r = self
                .fs
                .lookup(&path)
                .map_err(|e| NotCovered(format!("{}: {e}", path.display())))?;
            if let Some(r) = r.filter(|r| r.sig.is_some_and(|s| s.dir)) {
                self.record_way(&r);
                self.record_dir(&r.real);
            }
        }
        Ok(())
    }

    fn check_budget(&self) -> Result<(), NotCovered> {
        if self.stack.len() >= self.limits.depth {
            return nc("#include nested too deeply");
        }
        if self.bytes > self.limits.bytes {
            return nc("the scan read more than its byte budget");
        }
        if Instant::now() > self.deadline {
            return nc("the scan ran past its time budget");
        }
        Ok(())
    }

    /// Reads a file found by a search, putting it in the closure unless
    /// `#pragma once` skips it.
    fn enter(&mut self, f: Found, import: bool) -> Result<(), NotCovered> {
        self.check_budget()?;
        let sig = f.resolved.sig.expect("a found file has a stat");
        let parsed = self.scanner.parsed(&f.resolved.real, sig, self.info.mode)?;
        let id = OnceKey::of(sig, &parsed);
        if self.is_once(&id) {
            return Ok(());
        }
        self.main.entered_as_header(&f.resolved.real);
        self.record(&f, false);
        self.note_read(&f.resolved.real);
        self.follow(f, parsed, id, Entering::Header { import })
    }

    /// Reads the main file from directive `start` on (0, or a checkpoint's
    /// place); the closure gets it at the end ([`Walk::put_main_first`]).
    fn enter_main(
        &mut self,
        f: Found,
        parsed: Arc<Parsed>,
        start: usize,
    ) -> Result<(), NotCovered> {
        self.check_budget()?;
        let id = OnceKey::of(f.resolved.sig.expect("a found file has a stat"), &parsed);
        if self.is_once(&id) {
            return Ok(());
        }
        self.note_read(&f.resolved.real);
        self.follow(f, parsed, id, Entering::Main { start })
    }

    fn note_read(&mut self, real: &Path) {
        if self.seen_read.add(real) {
            self.read.push(real.to_path_buf());
        }
    }

    /// Runs a file entered, unless its guard is defined (a checkpoint
    /// resumes past the main file's guard, so it is checked at 0 only).
    fn follow(
        &mut self,
        f: Found,
        parsed: Arc<Parsed>,
        id: OnceKey,
        how: Entering,
    ) -> Result<(), NotCovered> {
        if let Some(e) = &parsed.error {
            return nc(format!("{}: {e}", f.resolved.real.display()));
        }
        let (start, main) = match how {
            Entering::Header { import } => {
                if import {
                    self.once.push(id);
                }
                (0, false)
            }
            Entering::Main { start } => (start, true),
        };
        if start == 0 && parsed.guard.as_ref().is_some_and(|g| self.is_defined(g)) {
            return Ok(());
        }
        self.bytes += parsed.size;
        self.stack.push(Frame {
            name: f.name,
            found_at: f.at,
            relative: f.relative,
            line: 0,
            parsed: parsed.clone(),
            main,
        });
        let r = self.directives(&parsed, id, start);
        self.stack.pop();
        r
    }

    /// The main file goes first in the closure, as the source.
    fn put_main_first(&mut self, main: &Found) {
        let real = &main.resolved.real;
        if self.seen_files.remove(real) {
            self.closure.files.retain(|f| f.path != *real);
        }
        let before = self.closure.files.len();
        self.record(main, true);
        if self.closure.files.len() > before {
            let source = self.closure.files.pop().expect("just recorded");
            self.closure.files.insert(0, source);
        }
    }

    /// True for a file marked `#pragma once` (or `#import`ed) already.
    fn is_once(&self, key: &OnceKey) -> bool {
        key.in_list(&self.once, self.info.gcc)
    }

    fn is_defined(&self, name: &[u8]) -> bool {
        self.table.get(name).is_some() || self.info.special.contains(name)
    }

    /// Runs a file's directives, taking the branches the compiler takes.
    fn directives(&mut self, parsed: &Parsed, id: OnceKey, start: usize) -> Result<(), NotCovered> {
        let entries = &parsed.entries;
        let in_main = self.stack.last().is_some_and(|f| f.main);
        if in_main && start == 0 {
            self.checkpoint(0);
        }
        let mut i = start;
        while i < entries.len() {
            let e = &entries[i];
            let line = e.line;
            self.stack.last_mut().expect("a frame").line = line;
            i = match &e.dir {
                Dir::If(_) | Dir::Ifdef(..) => {
                    self.branch(entries, i).map_err(|w| self.locate(w, line))?
                }
                Dir::Elif(_) | Dir::Elifdef(..) | Dir::Else => end_of_group(entries, i) + 1,
                Dir::Endif => i + 1,
                Dir::PragmaOnce => {
                    if in_main {
                        self.main.taint();
                    }
                    self.once.push(id);
                    i + 1
                }
                d => {
                    self.directive(d).map_err(|w| self.locate(w, line))?;
                    if in_main && matches!(d, Dir::Include(..)) {
                        self.checkpoint(i + 1);
                    }
                    i + 1
                }
            };
        }
        Ok(())
    }

    /// A reason with the file and line it arose at (once, innermost).
    fn locate(&self, NotCovered(why): NotCovered, line: u32) -> NotCovered {
        if why.starts_with('@') {
            return NotCovered(why);
        }
        let name = self.stack.last().map_or(String::new(), |f| shown(&f.name));
        NotCovered(format!("@{name}:{line}: {why}"))
    }

    /// At `#if`-like `i`: the index of the first directive of the branch taken.
    fn branch(&mut self, entries: &[directives::Entry], mut i: usize) -> Result<usize, NotCovered> {
        loop {
            let taken = match &entries[i].dir {
                Dir::If(t) | Dir::Elif(t) => self.condition(t)?,
                Dir::Ifdef(t, negate) | Dir::Elifdef(t, negate) => match t.first() {
                    Some(n) if n.kind == Kind::Ident => self.is_defined(&n.text) != *negate,
                    _ => return nc("#ifdef without a macro name"),
                },
                Dir::Else => true,
                _ => return Ok(i + 1),
            };
            if taken {
                return Ok(i + 1);
            }
            i = entries[i].next as usize;
        }
    }

    fn condition(&mut self, toks: &[Tok]) -> Result<bool, NotCovered> {
        let toks: Vec<PTok> = toks.iter().map(PTok::of).collect();
        let expanded = self.expand(toks, true)?;
        expr::evaluate(&expanded, self.info.lang).map_err(NotCovered)
    }

    fn expand(&mut self, toks: Vec<PTok>, in_if: bool) -> Result<Vec<PTok>, NotCovered> {
        let stand_in = Table::new(self.info.macros.clone());
        let table = std::mem::replace(&mut self.table, stand_in);
        let name_space = !self.info.gcc;
        let r = Expander {
            table: &table,
            env: self,
            in_if,
            made: 0,
            name_space,
        }
        .expand(toks);
        self.table = table;
        r.map_err(NotCovered)
    }

    fn directive(&mut self, d: &Dir) -> Result<(), NotCovered> {
        match d {
            Dir::Define(m) => {
                if let Some(wrapped) = self.wrapped_feature(m) {
                    self.feature_wrappers.insert(m.name.clone(), wrapped);
                }
                self.table.define(m.clone())
            }
            Dir::Undef(n) => self.table.undef(n),
            Dir::Include(kind, toks) => self.include(*kind, toks)?,
            Dir::PushMacro(n) => self.table.push(n),
            Dir::PopMacro(n) => self.table.pop(n),
            Dir::Fail(why) => return nc(why.clone()),
            _ => {}
        }
        Ok(())
    }

    fn include(&mut self, kind: IncludeKind, toks: &[Tok]) -> Result<(), NotCovered> {
        if let Some((text, angle)) = spelled_header(toks) {
            let name = &text[1..text.len() - 1];
            let Some(found) = self.search(name, angle, kind == IncludeKind::Next)? else {
                return nc(format!("no {} in the search path", shown(name)));
            };
            return self.enter(found, kind == IncludeKind::Import);
        }
        let toks: Vec<PTok> = toks.iter().map(PTok::of).collect();
        let direct = matches!(
            toks.first().map(|t| t.tok.kind),
            Some(Kind::Header | Kind::Str)
        );
        let toks = if direct {
            toks
        } else {
            self.expand(toks, false)?
        };
        let Some((name, angle)) = header_name(&toks) else {
            return nc("a malformed #include");
        };
        let Some(found) = self.search(&name, angle, kind == IncludeKind::Next)? else {
            return nc(format!("no {} in the search path", shown(&name)));
        };
        self.enter(found, kind == IncludeKind::Import)
    }

    /// Where `#include` (or `#include_next`) finds a name.
    fn search(
        &mut self,
        name: &[u8],
        angle: bool,
        next: bool,
    ) -> Result<Option<Found>, NotCovered> {
        if name.is_empty() {
            return nc("an empty file name in #include");
        }
        if name.starts_with(b"/") {
            return nc(format!("an absolute #include of {}", shown(name)));
        }
        let frame = self.stack.last().expect("a frame");
        if next && self.stack.len() > 1 {
            return match (frame.found_at, frame.relative) {
                (Some(k), _) => self.find(name, None, k + 1),
                // gcc searches the whole chain, clang the angle chain.
                (None, true) if angle && self.quote_len == 0 => self.find(name, None, 0),
                _ => nc("#include_next in a file not found in a search dir"),
            };
        }
        if angle {
            return self.find(name, None, self.quote_len);
        }
        let dir = dir_of(&frame.name).to_vec();
        if frame.main {
            self.main.searched_its_dir();
        }
        self.find(name, Some(&dir), 0)
    }
}

impl Env for Walk<'_> {
    fn has_include(&mut self, name: &[u8], angle: bool, next: bool) -> Result<bool, String> {
        let found = self.search(name, angle, next).map_err(|NotCovered(w)| w)?;
        if let Some(f) = &found {
            self.record(f, false);
        }
        Ok(found.is_some())
    }

    fn is_special(&self, name: &[u8]) -> bool {
        self.info.special.contains(name)
    }

    fn is_feature(&self, name: &[u8]) -> bool {
        self.info.features.contains(name)
    }

    fn feature(&mut self, name: &[u8], arg: &[u8]) -> Result<Tok, String> {
        let more = || {
            let frames = self.stack.iter().rev();
            frames.flat_map(|f| self.operands_in(&f.parsed)).collect()
        };
        self.scanner.feature(
            self.info_key,
            &self.cwd,
            self.cmd,
            (name.to_vec(), arg.to_vec()),
            more,
        )
    }

    fn line(&self) -> u32 {
        match self.stack.last() {
            Some(f) if f.main => {
                self.main.taint();
                f.line
            }
            Some(f) => f.line,
            None => 0,
        }
    }

    fn include_level(&self) -> u32 {
        self.stack.len().saturating_sub(1) as u32
    }

    fn file_name(&self, base: bool) -> Result<Vec<u8>, String> {
        if self.cmd.prefix_maps {
            return Err("__FILE__ under a prefix map".into());
        }
        if base || self.stack.last().is_none_or(|f| f.main) {
            self.main.taint();
        }
        Ok(match (base, self.stack.last()) {
            (false, Some(f)) => f.name.clone(),
            _ => self.cmd.source.as_bytes().to_vec(),
        })
    }
}

impl Walk<'_> {
    /// The `__has_*(...)` operands written in a file's `#if` and `#elif`
    /// lines, as the expansion spells them, to ask the compiler at once.
    fn operands_in(&self, parsed: &Parsed) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for e in &parsed.entries {
            let (Dir::If(toks) | Dir::Elif(toks)) = &e.dir else {
                continue;
            };
            for (k, t) in toks.iter().enumerate() {
                if t.kind != Kind::Ident {
                    continue;
                }
                let operand = paren_operand_at(toks, k + 1);
                let (name, arg) = match self.feature_wrappers.get(&t.text) {
                    _ if self.info.features.contains(&t.text) => (&t.text, operand),
                    Some((name, at)) => {
                        (name, operand.and_then(|o| split_args(o).get(*at).copied()))
                    }
                    None => continue,
                };
                if let Some(arg) = arg {
                    let arg: Vec<PTok> = arg.iter().map(PTok::of).collect();
                    out.push((name.to_vec(), super::macros::spell(&arg)));
                }
            }
        }
        out
    }

    /// `(FEATURE, k)` when the function-like macro `m` has `FEATURE (P)` in
    /// its body with `P` its k-th parameter. Only a guess for batching the
    /// compiler's answers: any operand asked is a real one.
    fn wrapped_feature(&self, m: &Macro) -> Option<(Text, usize)> {
        let params = m.params.as_ref()?;
        m.body.windows(4).find_map(|w| {
            let at = params.iter().position(|p| *p == w[2].text)?;
            let call = self.info.features.contains(&w[0].text) && w[1].is(b"(") && w[3].is(b")");
            call.then(|| (w[0].text.clone(), at))
        })
    }
}

/// An `#include`'s `<name>` or `"name"` as written (not a macro): the
/// token's text and whether it is `<...>`. As for the compiler, tokens after
/// it do not count.
fn spelled_header(toks: &[Tok]) -> Option<(Text, bool)> {
    let t = toks.first()?;
    match t.kind {
        Kind::Header => Some((t.text.clone(), true)),
        Kind::Str if t.text.len() >= 2 && t.text[0] == b'"' => Some((t.text.clone(), false)),
        _ => None,
    }
}

/// The top-level comma-separated arguments of a parenthesised operand.
fn split_args(toks: &[Tok]) -> Vec<&[Tok]> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (k, t) in toks.iter().enumerate() {
        if t.is(b"(") {
            depth += 1;
        } else if t.is(b")") {
            depth -= 1;
        } else if t.is(b",") && depth == 0 {
            out.push(&toks[start..k]);
            start = k + 1;
        }
    }
    out.push(&toks[start..]);
    out
}

/// The tokens between the `(` at `i` and its `)`.
fn paren_operand_at(toks: &[Tok], i: usize) -> Option<&[Tok]> {
    if !toks.get(i)?.is(b"(") {
        return None;
    }
    let mut depth = 0;
    for (k, t) in toks.iter().enumerate().skip(i) {
        if t.is(b"(") {
            depth += 1;
        } else if t.is(b")") {
            depth -= 1;
            if depth == 0 {
                return Some(&toks[i + 1..k]);
            }
        }
    }
    None
}

/// The directive after the `#endif` of the group whose branch starts at `i`.
fn end_of_group(entries: &[directives::Entry], mut i: usize) -> usize {
    while !matches!(entries[i].dir, Dir::Endif) {
        i = entries[i].next as usize;
    }
    i
}

/// gcc's name for a file in a dir: `dir/name`, or `name` in the cwd.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut s = dir.to_vec();
    if !s.ends_with(b"/") {
        s.push(b'/');
    }
    s.extend_from_slice(name);
    s
}

/// The directory part of a name, through its last `/` ("" for none).
fn dir_of(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&c| c == b'/') {
        Some(k) => &name[..=k],
        None => b"",
    }
}
