//! `distcc-rs wrap`: turns a plain machine into a cross helper for one
//! target triple, with no chroot. It writes, under one directory, compiler
//! wrappers that run clang with `--target=TRIPLE`, the daemon's
//! `DISTCC_CMDLIST` naming them, a systemd unit and an OpenBSD rc.d script
//! for a daemon instance of its own, and a manifest of what it wrote.
//!
//! The wrappers are shell scripts (`exec /usr/bin/clang --target=T "$@"`),
//! not links to distcc-rs: the daemon never runs anything that resolves to
//! distcc-rs as a compiler (`CompilerSearch`), and a masquerade link would
//! make distcc-rs a client again instead of a compiler. A script costs one
//! `sh` start per job, shows plainly what it runs, and keeps working if
//! distcc-rs moves.
//!
//! Safety rules: every check runs before anything is written, so a refusal
//! leaves the disk as it was; a file is replaced only if the manifest says
//! wrap wrote it and it has not changed since (or `--force`); files are
//! written to a temporary name and renamed into place, so a symlink in the
//! way is replaced, never written through; `--remove` removes only what the
//! manifest lists, unchanged, then the directories wrap created if empty.

pub mod render;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where an instance's files go unless `--dir` says: `/usr/local/lib/distcc-rs/NAME`.
pub fn default_dir(name: &str) -> PathBuf {
    Path::new(DEFAULT_PARENT).join(name)
}

/// The directory under which [`default_dir`] puts each instance.
const DEFAULT_PARENT: &str = "/usr/local/lib/distcc-rs";

/// The manifest's file name in DIR.
pub const MANIFEST: &str = ".distcc-rs-wrap";

/// The manifest's first line, which also marks the format's version.
const MANIFEST_HEADER: &str =
    "# distcc-rs wrap manifest 1: what wrap wrote here; wrap and wrap --remove read it.";

/// Everything that decides the files of one instance, checked.
#[derive(Clone, Debug)]
pub struct Instance {
    pub target: String,
    /// The real compiler, absolute.
    pub compiler: PathBuf,
    /// Where the files go, absolute.
    pub dir: PathBuf,
    pub name: String,
    pub port: u16,
    pub stats_port: Option<u16>,
    pub allow: Vec<String>,
    pub user: Option<String>,
    pub jobs: Option<usize>,
    /// `--key`: the daemon serves only clients with a key in `DIR/auth-keys`,
    /// with its own key in `DIR/key` (docs/trust.md).
    pub key: bool,
    /// The distcc-rs binary the unit and the rc.d script start, resolved.
    pub exe: PathBuf,
}

/// What the command line asked for, before the checks.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub target: String,
    pub compiler: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub name: Option<String>,
    pub port: u16,
    pub stats_port: Option<u16>,
    pub allow: Vec<String>,
    pub user: Option<String>,
    pub jobs: Option<usize>,
    pub key: bool,
}

/// Bytes allowed in a path or word that goes into a script or a unit:
/// nothing a shell, systemd or PATH would read specially.
fn is_plain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"/._+-".contains(&c)
}

/// A triple, instance name or user name: plain bytes, not starting with
/// `-` or `.`.
fn check_word(what: &str, word: &str) -> Result<(), String> {
    let ok = !word.is_empty()
        && word.bytes().all(|c| is_plain(c) && c != b'/')
        && !word.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} '{word}' must be letters, digits, '.', '_', '+' or '-' (not first)"
        ))
    }
}

fn check_path(what: &str, path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if !path.is_absolute() || !bytes.iter().all(|&c| is_plain(c)) {
        return Err(format!(
            "{what} {} must be an absolute path of letters, digits and '/._+-' \
             (it goes into shell scripts, a systemd unit and PATH unquoted)",
            path.display()
        ));
    }
    Ok(())
}

/// Makes a path absolute against the current directory, without resolving links.
fn absolute(path: &Path) -> Result<PathBuf, String> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .map_err(|e| format!("cannot find the current directory: {e}"))
}

/// The compiler: `--compiler` (a bare name is looked up on PATH), or
/// `clang` on PATH, skipping any that is a distcc masquerade link.
fn find_compiler(given: Option<&Path>, exe: &Path) -> Result<PathBuf, String> {
    use crate::masquerade::{find_real_compiler, is_masquerade};
    let name = given.unwrap_or(Path::new("clang"));
    if name.as_os_str().is_empty() {
        return Err("--compiler: empty path".into());
    }
    let path = if name.components().count() > 1 || name.is_absolute() {
        absolute(name)?
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = find_real_compiler(name.as_os_str(), &path, exe).ok_or_else(|| {
            format!(
                "no {} on PATH (other than distcc); name one with --compiler",
                name.display()
            )
        })?;
        absolute(&found.path)?
    };
    if !crate::sys::is_executable(&path) {
        return Err(format!(
            "compiler {} is not an executable file",
            path.display()
        ));
    }
    if is_masquerade(&path, exe) {
        return Err(format!(
            "compiler {} resolves to distcc itself; name the real clang",
            path.display()
        ));
    }
    Ok(path)
}

impl Instance {
    /// Checks a request and fills in the defaults.
    pub fn new(request: Request, exe: PathBuf) -> Result<Instance, String> {
        check_word("--target", &request.target)?;
        let name = request.name.unwrap_or_else(|| request.target.clone());
        check_word("--name", &name)?;
        if let Some(user) = &request.user {
            check_word("--user", user)?;
        }
        for allow in &request.allow {
            if !allow.bytes().all(|c| is_plain(c) || c == b':') || allow.starts_with('-') {
                return Err(format!("--allow: bad address '{allow}'"));
            }
            crate::net::Allow::parse(allow).map_err(|e| format!("--allow: {e}"))?;
        }
        if request.port == 0 {
            return Err("--port: 0 is not a port".into());
        }
        if let Some(stats) = request.stats_port {
            if stats == 0 || stats == request.port {
                return Err(format!(
                    "--stats-port: {stats} is not a port apart from --port"
                ));
            }
        }
        if let Some(jobs) = request.jobs {
            if !crate::sys::JOBS.contains(&jobs) {
                return Err(crate::sys::jobs_out_of_range(jobs));
            }
        }
        let dir = match request.dir {
            Some(dir) => absolute(&dir)?,
            None => default_dir(&name),
        };
        check_path("--dir", &dir)?;
        check_path("this executable", &exe)?;
        if exe.as_os_str().to_string_lossy().contains('+') {
            return Err(format!(
                "this executable's path {} has a '+', which the rc.d script's pexp would read \
                 as a regular expression",
                exe.display()
            ));
        }
        let compiler = find_compiler(request.compiler.as_deref(), &exe)?;
        check_path("--compiler", &compiler)?;
        let real = fs::canonicalize(&compiler).unwrap_or_else(|_| compiler.clone());
        let bin = fs::canonicalize(dir.join("bin")).unwrap_or_else(|_| dir.join("bin"));
        if real.starts_with(&bin) || compiler.starts_with(dir.join("bin")) {
            return Err(format!(
                "compiler {} is one of the wrappers in {}",
                compiler.display(),
                bin.display()
            ));
        }
        Ok(Instance {
            target: request.target,
            compiler,
            dir,
            name,
            port: request.port,
            stats_port: request.stats_port,
            allow: request.allow,
            user: request.user,
            jobs: request.jobs,
            key: request.key,
            exe,
        })
    }

    /// `DIR/key`, the daemon's private key with `--key`.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("key")
    }

    /// `DIR/auth-keys`, the client keys the daemon accepts with `--key`.
    pub fn auth_keys_file(&self) -> PathBuf {
        self.dir.join("auth-keys")
    }

    /// With `--key`: makes the daemon's key (kept if it exists, never
    /// replaced), its `.pub`, and an empty `auth-keys`, owned by the
    /// service user when run as root. Returns the public key line.
    pub fn make_key(&self) -> Result<String, String> {
        let key_file = self.key_file();
        let key = if key_file.exists() {
            crate::keys::PrivateKey::load(&key_file)?
        } else {
            let key = crate::keys::PrivateKey::generate()?;
            key.save_new(&key_file)?;
            key
        };
        let line = key.public(&format!("distcc-rs-{}", self.name))?.to_line();
        let write = |path: PathBuf, text: String| {
            fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write(self.dir.join("key.pub"), format!("{line}\n"))?;
        if !self.auth_keys_file().exists() {
            write(
                self.auth_keys_file(),
                "# One client public key a line (distcc-rs key generate FILE; FILE.pub)\n".into(),
            )?;
        }
        self.give_key_to_user()?;
        Ok(line)
    }

    /// Root runs wrap, the service user runs the daemon: the key is its.
    fn give_key_to_user(&self) -> Result<(), String> {
        let Some(user) = self.user.as_deref().filter(|_| crate::sys::is_root()) else {
            return Ok(());
        };
        let ids = crate::sys::lookup_user(user).ok_or(format!("--user: no user '{user}'"))?;
        std::os::unix::fs::chown(self.key_file(), Some(ids.uid), Some(ids.gid))
            .map_err(|e| format!("cannot give {} to {user}: {e}", self.key_file().display()))
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    pub fn commands_allow(&self) -> PathBuf {
        self.dir.join("commands.allow")
    }

    /// `distcc-rs-NAME.service`.
    pub fn unit_name(&self) -> String {
        format!("distcc-rs-{}.service", self.name)
    }

    /// `distccd_NAME`, with every byte outside `[A-Za-z0-9_]` turned into
    /// `_`, as OpenBSD's rc.subr accepts only such script names.
    pub fn rc_script_name(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("distccd_{name}")
    }

    /// The files, relative to DIR, with their contents and modes.
    pub fn files(&self) -> Vec<Wanted> {
        let mut files = Vec::new();
        for (name, driver) in render::wrapper_names(&self.target) {
            files.push(Wanted {
                rel: format!("bin/{name}"),
                contents: render::wrapper(self, &name, driver).into_bytes(),
                mode: 0o755,
            });
        }
        files.push(Wanted {
            rel: "commands.allow".into(),
            contents: render::commands_allow(self).into_bytes(),
            mode: 0o644,
        });
        files.push(Wanted {
            rel: self.unit_name(),
            contents: render::unit(self).into_bytes(),
            mode: 0o644,
        });
        files.push(Wanted {
            rel: format!("rc.d/{}", self.rc_script_name()),
            contents: render::rc_script(self).into_bytes(),
            mode: 0o755,
        });
        files
    }
}

/// A file an instance consists of.
#[derive(Clone, Debug)]
pub struct Wanted {
    /// The path under DIR.
    pub rel: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// A cheap fingerprint of a file's contents (64-bit FNV-1a), to tell a file
/// wrap wrote from one changed since. It guards against mistakes, not
/// against someone forging a file on purpose (who could edit the manifest).
fn fingerprint(bytes: &[u8]) -> String {
    crate::sys::fnv1a_hex(bytes)
}

/// What the manifest records of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub mode: u32,
    pub fingerprint: String,
}

/// The manifest: the files wrap wrote (by path under DIR) and the
/// directories it created (absolute, parents first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub files: BTreeMap<String, Record>,
    pub created_dirs: Vec<PathBuf>,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MANIFEST_HEADER) {
            return Err("it does not start with wrap's header".into());
        }
        let mut manifest = Manifest::default();
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["dir", path] if path.starts_with('/') => {
                    manifest.created_dirs.push(PathBuf::from(path))
                }
                ["file", rel, mode, print]
                    if !rel.starts_with('/')
                        && !rel.split('/').any(|c| c == ".." || c.is_empty()) =>
                {
                    let mode = u32::from_str_radix(mode, 8)
                        .map_err(|_| format!("bad mode in line '{line}'"))?;
                    manifest.files.insert(
                        rel.to_string(),
                        Record {
                            mode,
                            fingerprint: print.to_string(),
                        },
                    );
                }
                _ => return Err(format!("bad line '{line}'")),
            }
        }
        Ok(manifest)
    }

    pub fn render(&self) -> String {
        let mut out = format!("{MANIFEST_HEADER}\n");
        for dir in &self.created_dirs {
            out.push_str(&format!("dir {}\n", dir.display()));
        }
        for (rel, record) in &self.files {
            out.push_str(&format!(
                "file {rel} {:o} {}\n",
                record.mode, record.fingerprint
            ));
        }
        out
    }
}

/// What is at a path now, as far as wrap cares.
enum Found {
    Missing,
    /// A regular file (not a link): its mode bits and contents.
    File(u32, Vec<u8>),
    Symlink,
    /// A directory, device, socket...
    Other,
}

/// [`look`], or a refusal (the path cannot be read) added to `refusals`.
fn look_or_refuse(path: &Path, refusals: &mut Vec<Refusal>) -> Option<Found> {
    look(path)
        .map_err(|e| {
            refusals.push(Refusal {
                path: path.to_path_buf(),
                why: format!("cannot be read: {e}"),
            })
        })
        .ok()
}

/// What is at `path`, without following a symbolic link.
fn look(path: &Path) -> io::Result<Found> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(e),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        Ok(Found::Symlink)
    } else if kind.is_file() {
        Ok(Found::File(meta.mode() & 0o7777, fs::read(path)?))
    } else {
        Ok(Found::Other)
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Unchanged,
    /// Replace a file wrap wrote and nobody changed since.
    Update,
    /// Replace a file wrap did not write, or that was changed (`--force`).
    Overwrite(String),
    /// Remove a file wrap wrote that the instance no longer has.
    Remove,
    /// Remove a changed file (`--remove --force`).
    RemoveChanged(String),
    /// Leave a changed file that the instance no longer has, and forget it.
    Forget(String),
    /// Already gone: only dropped from the manifest.
    Gone,
}

/// One refusal: the path and why.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub path: PathBuf,
    pub why: String,
}

/// The checked steps for one run; nothing has been written yet.
pub struct Plan {
    pub dir: PathBuf,
    pub steps: Vec<(PathBuf, Action)>,
    /// Directories to create, parents first.
    pub new_dirs: Vec<PathBuf>,
    /// The manifest after the run (None: remove it).
    pub manifest: Option<Manifest>,
    /// True when the manifest file itself changes.
    pub manifest_changes: bool,
    pub refusals: Vec<Refusal>,
    /// Directories to remove if empty, parents first (`--remove`).
    pub remove_dirs: Vec<PathBuf>,
    /// The files to write, by path.
    contents: BTreeMap<PathBuf, (Vec<u8>, u32)>,
}

impl Plan {
    /// True when the run changes nothing on disk.
    pub fn is_noop(&self) -> bool {
        self.new_dirs.is_empty()
            && self.remove_dirs.is_empty()
            && !self.manifest_changes
            && self
                .steps
                .iter()
                .all(|(_, a)| matches!(a, Action::Unchanged))
    }
}

/// Reads DIR's manifest: None if there is none; an error (a refusal unless
/// `--force`) if the file is there but is not wrap's.
fn read_manifest(dir: &Path) -> Result<Option<Manifest>, String> {
    let path = dir.join(MANIFEST);
    match look(&path) {
        Ok(Found::Missing) => Ok(None),
        Ok(Found::File(_, bytes)) => {
            let text = String::from_utf8(bytes).map_err(|_| "it is not text".to_string())?;
            Manifest::parse(&text).map(Some)
        }
        Ok(Found::Symlink) => Err("it is a symbolic link".into()),
        Ok(Found::Other) => Err("it is not a regular file".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Why an existing file is not (or no longer) wrap's, or None if it is
/// exactly what the manifest recorded.
fn changed_since(found: &Found, record: Option<&Record>) -> Option<String> {
    match (found, record) {
        (_, None) => Some("wrap did not write it".into()),
        (Found::File(mode, bytes), Some(r)) => {
            if fingerprint(bytes) != r.fingerprint {
                Some("it was changed since wrap wrote it".into())
            } else if *mode != r.mode {
                Some(format!(
                    "its mode was changed from {:o} to {mode:o} since wrap wrote it",
                    r.mode
                ))
            } else {
                None
            }
        }
        (Found::Symlink, Some(_)) => Some("it is now a symbolic link".into()),
        (Found::Other, Some(_)) => Some("it is not a regular file".into()),
        (Found::Missing, Some(_)) => None,
    }
}

/// Checks that a directory wrap writes into is a real directory, not a
/// link (a link could lead the writes into another directory, such as
/// /usr/bin). Returns whether it must be created.
fn check_dir(path: &Path, refusals: &mut Vec<Refusal>) -> bool {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            refusals.push(Refusal {
                path: path.to_path_buf(),
                why: "it is a symbolic link, and wrap never writes through one (not even with --force)"
                    .into(),
            });
            false
        }
        Ok(m) if m.is_dir() => false,
        Ok(_) => {
            refusals.push(Refusal {
                path: path.to_path_buf(),
                why: "it is in the way: not a directory".into(),
            });
            false
        }
        Err(_) => true,
    }
}

/// Directories from the topmost missing one down to `path`.
fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut p = Some(path);
    while let Some(dir) = p {
        if fs::symlink_metadata(dir).is_ok() {
            break;
        }
        out.push(dir.to_path_buf());
        p = dir.parent();
    }
    out.reverse();
    out
}

/// Plans writing an instance's files.
pub fn plan_write(instance: &Instance, force: bool) -> Plan {
    let dir = &instance.dir;
    let mut refusals = Vec::new();
    let new_dirs = plan_dirs(instance, &mut refusals);
    let old = read_old_manifest(dir, force, &mut refusals);
    let old_manifest = old.clone().unwrap_or_default();
    let mut manifest = Manifest {
        files: BTreeMap::new(),
        created_dirs: old_manifest.created_dirs.clone(),
    };
    manifest.created_dirs.extend(new_dirs.iter().cloned());
    let mut steps = Vec::new();
    let mut contents = BTreeMap::new();
    let wanted = instance.files();
    for file in &wanted {
        let path = dir.join(&file.rel);
        let record = old_manifest.files.get(&file.rel);
        let Some(action) = wanted_action(&path, file, record, force, &mut refusals) else {
            continue;
        };
        manifest.files.insert(
            file.rel.clone(),
            Record {
                mode: file.mode,
                fingerprint: fingerprint(&file.contents),
            },
        );
        if action != Action::Unchanged {
            contents.insert(path.clone(), (file.contents.clone(), file.mode));
        }
        steps.push((path, action));
    }
    // Files of an earlier run that this instance no longer has (another
    // --target or --name in the same DIR).
    for (rel, record) in &old_manifest.files {
        if wanted.iter().any(|w| &w.rel == rel) {
            continue;
        }
        let path = dir.join(rel);
        if let Some(action) = unwanted_action(&path, record, force, &mut refusals) {
            steps.push((path, action));
        }
    }
    let manifest_changes = old.as_ref() != Some(&manifest);
    Plan {
        dir: dir.clone(),
        steps,
        new_dirs,
        manifest: Some(manifest),
        manifest_changes,
        refusals,
        remove_dirs: Vec::new(),
        contents,
    }
}

/// The directories to create for DIR, DIR/bin and DIR/rc.d, parents first;
/// one that is a link or not a directory is a refusal.
fn plan_dirs(instance: &Instance, refusals: &mut Vec<Refusal>) -> Vec<PathBuf> {
    let dir = &instance.dir;
    let mut new_dirs = Vec::new();
    for d in [dir.clone(), instance.bin_dir(), dir.join("rc.d")] {
        if check_dir(&d, refusals) {
            for m in missing_dirs(&d) {
                if !new_dirs.contains(&m) {
                    new_dirs.push(m);
                }
            }
        }
    }
    new_dirs
}

/// DIR's manifest from an earlier run, if any. One that is not wrap's is a
/// refusal, or with `--force` is treated as absent.
fn read_old_manifest(dir: &Path, force: bool, refusals: &mut Vec<Refusal>) -> Option<Manifest> {
    match read_manifest(dir) {
        Ok(m) => m,
        Err(why) => {
            let why = format!("it is not wrap's manifest ({why})");
            if !force {
                refusals.push(Refusal {
                    path: dir.join(MANIFEST),
                    why,
                });
            }
            None
        }
    }
}

/// What to do with a file the instance wants at `path`, given what is there
/// and what the old manifest recorded; `None` after a refusal.
fn wanted_action(
    path: &Path,
    file: &Wanted,
    record: Option<&Record>,
    force: bool,
    refusals: &mut Vec<Refusal>,
) -> Option<Action> {
    let found = look_or_refuse(path, refusals)?;
    let refuse = |refusals: &mut Vec<Refusal>, why: String| {
        refusals.push(Refusal {
            path: path.to_path_buf(),
            why,
        });
        None
    };
    match &found {
        Found::Missing => Some(Action::Create),
        Found::File(mode, bytes) if *bytes == file.contents && *mode == file.mode => {
            Some(Action::Unchanged)
        }
        Found::Other => refuse(
            refusals,
            "it is in the way: not a regular file (not even --force replaces it)".into(),
        ),
        _ => match changed_since(&found, record) {
            None => Some(Action::Update),
            Some(why) if force => Some(Action::Overwrite(why)),
            Some(why) => refuse(refusals, format!("{why}; --force replaces it")),
        },
    }
}

/// What to do with a file an earlier run wrote that the instance no longer
/// wants; `None` after a refusal.
fn unwanted_action(
    path: &Path,
    record: &Record,
    force: bool,
    refusals: &mut Vec<Refusal>,
) -> Option<Action> {
    let found = look_or_refuse(path, refusals)?;
    match (&found, changed_since(&found, Some(record))) {
        (Found::Missing, _) => Some(Action::Gone),
        (_, None) => Some(Action::Remove),
        (_, Some(why)) if force => Some(Action::Forget(why)),
        (_, Some(why)) => {
            refusals.push(Refusal {
                path: path.to_path_buf(),
                why: format!(
                    "an earlier wrap wrote it and no longer wants it, but {why}; \
                     --force leaves it and forgets it"
                ),
            });
            None
        }
    }
}

/// Plans `--remove`: the files the manifest lists, then the directories
/// wrap created.
pub fn plan_remove(dir: &Path, force: bool) -> Result<Plan, String> {
    let manifest = match read_manifest(dir) {
        Ok(Some(m)) => m,
        Ok(None) => Manifest::default(),
        Err(why) => {
            return Err(format!(
                "{} is not wrap's manifest ({why}); nothing removed",
                dir.join(MANIFEST).display()
            ))
        }
    };
    let mut refusals = Vec::new();
    let mut steps = Vec::new();
    for (rel, record) in &manifest.files {
        let path = dir.join(rel);
        let Some(found) = look_or_refuse(&path, &mut refusals) else {
            continue;
        };
        let action = match (&found, changed_since(&found, Some(record))) {
            (Found::Missing, _) => Action::Gone,
            (Found::Other, _) => {
                refusals.push(Refusal {
                    path: path.clone(),
                    why: "it is not a regular file; wrap does not remove it".into(),
                });
                continue;
            }
            (_, None) => Action::Remove,
            (_, Some(why)) if force => Action::RemoveChanged(why),
            (_, Some(why)) => {
                refusals.push(Refusal {
                    path: path.clone(),
                    why: format!("{why}; --force removes it anyway"),
                });
                continue;
            }
        };
        steps.push((path, action));
    }
    let had_manifest = fs::symlink_metadata(dir.join(MANIFEST)).is_ok();
    Ok(Plan {
        dir: dir.to_path_buf(),
        steps,
        new_dirs: Vec::new(),
        manifest: None,
        manifest_changes: had_manifest,
        refusals,
        remove_dirs: manifest.created_dirs,
        contents: BTreeMap::new(),
    })
}

/// Writes `contents` to `path` by way of a temporary file in the same
/// directory, renamed into place: readers see the old file or the new one,
/// and a symlink at `path` is replaced rather than followed.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.wrap-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(contents)?;
        // The umask may have taken bits off the mode asked for.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// What a run did (or, in a dry run, would do), one line a change.
pub struct Report {
    pub lines: Vec<String>,
    pub changed: bool,
}

/// A report line's verb: what was done, or in a dry run what would be.
fn verb<'a>(dry_run: bool, done: &'a str, would: &'a str) -> &'a str {
    if dry_run {
        would
    } else {
        done
    }
}

/// `VERB PATH`, or `VERB PATH (WHY)`, with the verb in a column of 16.
fn report_line(verb: &str, path: &Path, why: Option<&str>) -> String {
    match why {
        Some(why) => format!("{verb:<16} {} ({why})", path.display()),
        None => format!("{verb:<16} {}", path.display()),
    }
}

impl Plan {
    /// Carries the plan out (or only describes it, with `dry_run`). The
    /// plan must have no refusals.
    pub fn apply(&self, dry_run: bool) -> io::Result<Report> {
        let mut lines = Vec::new();
        for dir in &self.new_dirs {
            if !dry_run {
                fs::create_dir(dir)?;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
            }
            let verb = verb(dry_run, "created", "would create");
            lines.push(format!("{verb:<16} {}/", dir.display()));
        }
        for (path, action) in &self.steps {
            lines.push(self.apply_step(path, action, dry_run)?);
        }
        if self.manifest_changes {
            lines.push(self.apply_manifest(dry_run)?);
        }
        self.remove_empty_dirs(dry_run, &mut lines);
        let changed = !self.is_noop();
        Ok(Report { lines, changed })
    }

    /// Writes, removes or leaves one file; returns its report line.
    fn apply_step(&self, path: &Path, action: &Action, dry_run: bool) -> io::Result<String> {
        let verb = |done, would| verb(dry_run, done, would);
        Ok(match action {
            Action::Unchanged => report_line("unchanged", path, None),
            Action::Create => {
                self.write(path, dry_run)?;
                report_line(verb("created", "would create"), path, None)
            }
            Action::Update => {
                self.write(path, dry_run)?;
                report_line(verb("updated", "would update"), path, None)
            }
            Action::Overwrite(why) => {
                self.write(path, dry_run)?;
                report_line(verb("overwrote", "would overwrite"), path, Some(why))
            }
            Action::Remove | Action::RemoveChanged(_) => {
                if !dry_run {
                    fs::remove_file(path)?;
                }
                let why = match action {
                    Action::RemoveChanged(why) => Some(why.as_str()),
                    _ => None,
                };
                report_line(verb("removed", "would remove"), path, why)
            }
            Action::Forget(why) => report_line(
                verb("left", "would leave"),
                path,
                Some(&format!("{why}; no longer in the manifest")),
            ),
            Action::Gone => report_line("already gone", path, None),
        })
    }

    /// Writes the planned contents of `path` (not in a dry run).
    fn write(&self, path: &Path, dry_run: bool) -> io::Result<()> {
        if dry_run {
            return Ok(());
        }
        let (bytes, mode) = &self.contents[path];
        write_atomically(path, bytes, *mode)
    }

    /// Writes the new manifest, or removes it (`--remove`).
    fn apply_manifest(&self, dry_run: bool) -> io::Result<String> {
        let path = self.dir.join(MANIFEST);
        match &self.manifest {
            Some(m) => {
                if !dry_run {
                    write_atomically(&path, m.render().as_bytes(), 0o644)?;
                }
                Ok(report_line(
                    verb(dry_run, "wrote", "would write"),
                    &path,
                    None,
                ))
            }
            None => {
                if !dry_run {
                    fs::remove_file(&path)?;
                }
                Ok(report_line(
                    verb(dry_run, "removed", "would remove"),
                    &path,
                    None,
                ))
            }
        }
    }

    /// Removes the directories wrap created, deepest first, if nothing else
    /// is in them.
    fn remove_empty_dirs(&self, dry_run: bool, lines: &mut Vec<String>) {
        for dir in self.remove_dirs.iter().rev() {
            if dry_run {
                lines.push(format!(
                    "{:<16} {}/ (if empty)",
                    "would remove",
                    dir.display()
                ));
                continue;
            }
            match fs::remove_dir(dir) {
                Ok(()) => lines.push(format!("{:<16} {}/", "removed", dir.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => lines.push(format!("{:<16} {}/ (not empty)", "kept", dir.display())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: Option<&str>) -> Instance {
        let request = Request {
            target: "powerpc-unknown-openbsd".into(),
            compiler: Some(PathBuf::from("/bin/sh")),
            dir: Some(PathBuf::from("/nonexistent/distcc-rs-wrap-test")),
            name: name.map(String::from),
            port: 3632,
            ..Request::default()
        };
        Instance::new(request, PathBuf::from("/usr/local/bin/distcc-rs")).unwrap()
    }

    #[test]
    fn names_follow_the_triple_and_the_rc_rules() {
        let i = instance(None);
        assert_eq!(i.unit_name(), "distcc-rs-powerpc-unknown-openbsd.service");
        assert_eq!(i.rc_script_name(), "distccd_powerpc_unknown_openbsd");
        assert_eq!(instance(Some("ppc.v2")).rc_script_name(), "distccd_ppc_v2");
    }

    #[test]
    fn words_and_paths_that_would_need_quoting_are_refused() {
        for bad in ["", "-x", ".x", "a b", "a/b", "a$b", "a;b", "a%b", "a\"b"] {
            assert!(check_word("--name", bad).is_err(), "{bad:?}");
        }
        assert!(check_word("--name", "powerpc-unknown-openbsd").is_ok());
        assert!(check_path("--dir", Path::new("relative/dir")).is_err());
        assert!(check_path("--dir", Path::new("/a b")).is_err());
        assert!(check_path("--dir", Path::new("/a:b")).is_err());
        assert!(check_path("--dir", Path::new("/usr/local/lib/distcc-rs/ppc")).is_ok());
    }

    #[test]
    fn the_manifest_reads_back_what_it_wrote() {
        let i = instance(None);
        let mut m = Manifest {
            created_dirs: vec![i.dir.clone(), i.bin_dir()],
            ..Manifest::default()
        };
        for f in i.files() {
            m.files.insert(
                f.rel.clone(),
                Record {
                    mode: f.mode,
                    fingerprint: fingerprint(&f.contents),
                },
            );
        }
        assert_eq!(Manifest::parse(&m.render()).unwrap(), m);
        assert!(Manifest::parse("#!/bin/sh\nexec gcc\n").is_err());
        let escape = format!("{MANIFEST_HEADER}\nfile ../../etc/passwd 644 0\n");
        assert!(Manifest::parse(&escape).is_err());
    }

    #[test]
    fn a_compiler_that_is_distcc_is_refused() {
        let exe = crate::masquerade::self_exe().unwrap();
        let err = find_compiler(Some(&exe), &exe).unwrap_err();
        assert!(err.contains("resolves to distcc"), "{err}");
    }
}
