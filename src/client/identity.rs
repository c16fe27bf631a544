//! The client's half of the compiler identity check (docs/trust.md): the
//! local compiler's identity, cached under `$DISTCC_DIR/identity` by the
//! binary's stat, and the marks beside the backoff marks that keep a
//! compiler's jobs away from a host whose compiler is another one.
//!
//! A mark `compiler_<host>_<name>` holds what was refused (or accepted with
//! `DISTCC_RS_ACCEPT_COMPILER`) and both identities. It is the "once" of the
//! warning: a mismatch is warned about only when the mark did not already
//! say the same. A refused mark keeps the compiler's jobs away from the
//! host for [`MARK_PERIOD`], or until the local compiler changes.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::hosts::{Host, HostList};
use crate::identity::{file_name_of, probe, Identity, Stamp};

/// How long a mismatch keeps a compiler's jobs away from a host, before
/// the host is asked again.
pub const MARK_PERIOD: Duration = Duration::from_secs(3600);

/// The local compiler `argv0` (a name looked up on PATH past the
/// masquerade, or a path), from the cache or probed once. None if it
/// cannot be found or probed; the check is then skipped.
pub fn local(argv0: &OsStr) -> Option<Identity> {
    let program = resolve(argv0)?;
    let name = file_name_of(Path::new(argv0).file_name()?);
    let dir = crate::env::distcc_subdir("identity").ok()?;
    let cache = dir.join(file_name_of(program.as_os_str()));
    let stamp = Stamp::of(&program).ok()?;
    if let Some(identity) = read_cache(&cache, &stamp, &name) {
        return Some(identity);
    }
    let out = dir.join(format!(".probe.{}", std::process::id()));
    let probed = probe(&program, &name, &out, |_| Ok(()));
    let _ = std::fs::remove_file(&out);
    match probed {
        Ok(identity) => {
            let text = format!(
                "{}\n{}",
                stamp.line(),
                String::from_utf8_lossy(&identity.encode())
            );
            if let Err(err) = write_atomically(&cache, text.as_bytes()) {
                log::debug!("cannot cache the identity of {}: {err}", program.display());
            }
            Some(identity)
        }
        Err(err) => {
            log::debug!("cannot tell the identity of {}: {err}", program.display());
            None
        }
    }
}

fn resolve(argv0: &OsStr) -> Option<PathBuf> {
    if Path::new(argv0).components().count() > 1 {
        return Some(PathBuf::from(argv0));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let own = crate::masquerade::self_exe().unwrap_or_default();
    crate::masquerade::which(argv0, &path, &own)
}

/// The cached identity, if the cache is for this stamp and name.
fn read_cache(cache: &Path, stamp: &Stamp, name: &str) -> Option<Identity> {
    let text = std::fs::read_to_string(cache).ok()?;
    let (line, rest) = text.split_once('\n')?;
    let identity = Identity::decode(rest.as_bytes()).ok()?;
    (line == stamp.line() && identity.name == name).then_some(identity)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

fn mark_path(lock_dir: &Path, host: &Host, name: &OsStr) -> PathBuf {
    lock_dir.join(format!(
        "compiler_{}_{}",
        host.lock_name(),
        file_name_of(Path::new(name).file_name().unwrap_or(name))
    ))
}

/// The hosts of `list` that a fresh mark keeps `argv0`'s jobs away from.
/// Only `,key=` hosts tell their compiler, so only they are looked at;
/// the local identity is read only if there is a mark.
pub fn marked_hosts(list: &HostList, lock_dir: &Path, argv0: &OsStr) -> Vec<usize> {
    let mut local_identity = None;
    let mut marked = Vec::new();
    for (i, host) in list.hosts.iter().enumerate() {
        if host.key.is_none() || accepted(host) {
            continue;
        }
        let Some(mark) = fresh_mark(&mark_path(lock_dir, host, argv0)) else {
            continue;
        };
        let local = local_identity.get_or_insert_with(|| local(argv0));
        let still = local
            .as_ref()
            .is_some_and(|l| mark.starts_with(&refused_head(l)));
        if still {
            log::debug!(
                "{}: {argv0:?} is another compiler there (its mark); not sending",
                host.hostdef
            );
            marked.push(i);
        }
    }
    marked
}

fn fresh_mark(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    (age < MARK_PERIOD).then(|| std::fs::read_to_string(path).ok())?
}

fn refused_head(local: &Identity) -> String {
    format!("refused\n{}", String::from_utf8_lossy(&local.encode()))
}

/// Whether `DISTCC_RS_ACCEPT_COMPILER` accepts another compiler on `host`:
/// `1` or `*` for every host, else a comma-separated list of host names.
pub fn accepted(host: &Host) -> bool {
    accepts(
        std::env::var("DISTCC_RS_ACCEPT_COMPILER").ok().as_deref(),
        &host.hostname,
    )
}

fn accepts(value: Option<&str>, hostname: &str) -> bool {
    match value {
        None | Some("") | Some("0") => false,
        Some("1") | Some("*") => true,
        Some(list) => list.split(',').any(|h| h.trim() == hostname),
    }
}

/// Records that `host` runs `remote` for the local `local` (refused, or
/// `accepted`), and warns if the mark did not already say so.
pub fn note_mismatch(
    lock_dir: &Path,
    host: &Host,
    (local, remote): (&Identity, &Identity),
    accepted: bool,
) {
    let path = mark_path(lock_dir, host, OsStr::new(&local.name));
    let head = if accepted {
        format!("accepted\n{}", String::from_utf8_lossy(&local.encode()))
    } else {
        refused_head(local)
    };
    let text = format!("{head}{}", String::from_utf8_lossy(&remote.encode()));
    let known = std::fs::read_to_string(&path).is_ok_and(|old| old == text);
    if !known {
        let then = if accepted {
            "sending its jobs there anyway (DISTCC_RS_ACCEPT_COMPILER)"
        } else {
            "not sending its jobs there (DISTCC_RS_ACCEPT_COMPILER accepts it)"
        };
        log::warn!(
            "{}: another compiler: there {remote}; here {local}; {then}",
            host.hostdef
        );
    }
    if let Err(err) = write_atomically(&path, text.as_bytes()) {
        log::debug!("cannot write {}: {err}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_variable() {
        assert!(!accepts(None, "a"));
        assert!(!accepts(Some("0"), "a"));
        assert!(accepts(Some("1"), "a"));
        assert!(accepts(Some("*"), "a"));
        assert!(accepts(Some("b, a"), "a"));
        assert!(!accepts(Some("b,c"), "a"));
    }
}
