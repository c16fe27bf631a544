//! Pump mode's file names: the include server's mirror tree, system-directory links, forcing files, and the path rules a v3 request must keep.
//!
//! distcc 3.4's include server answers a client with paths in a private
//! mirror tree whose root has exactly [`MIRROR_DEPTH`] components. The
//! client recovers each file's own name by dropping those components, then a
//! `.abs` suffix, then a `.lzo` suffix. The mirror file holds the file's
//! bytes already LZO1X-compressed; `.lzo.abs` files also start with a
//! `#line 1 "<name>"` line. A default system include directory is sent as a
//! link `../`×([`SERVER_ROOT_COMPONENTS`] + depth) + the directory without
//! its leading `/`, which on the server climbs out of the job's root and
//! lands on the server's own copy of that directory. An empty
//! [`FORCING_FILE`] inside a directory makes the server create it.
//!
//! The client, the include server and the daemon all follow these rules, so
//! they live here, in one place.

use std::fmt;

/// Components in the include server's mirror root (distcc 3.4's
/// `INCLUDE_SERVER_DIR_DEPTH`).
pub const MIRROR_DEPTH: usize = 3;

/// The most components a server's temporary root may have, as the include
/// server assumes when it writes a system-directory link
/// (`MAX_COMPONENTS_IN_SERVER_ROOT`).
pub const SERVER_ROOT_COMPONENTS: usize = 20;

/// The empty file whose only purpose is to make its directory exist on the server.
pub const FORCING_FILE: &str = "forcing_technique_271828";

/// The longest NAME, CDIR or LINK target a v3 request may carry (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// The include server's socket in the pump directory (`$INCLUDE_SERVER_PORT`).
pub const SOCKET: &str = "socket";

/// The file beside the socket that counts a build's discrepancies, one byte
/// each (distcc 3.4's pump and client).
pub const DISCREPANCY_COUNTER: &str = "discrepancy_counter";

/// The first line of a `.lzo.abs` file's body: `#line 1 "NAME"` and a
/// newline, with `\` and `"` escaped as in a C string. `None` when NAME
/// holds a control character, which cannot be written there.
pub fn line_prefix(name: &[u8]) -> Option<Vec<u8>> {
    if name.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return None;
    }
    let mut line = b"#line 1 \"".to_vec();
    for &c in name {
        if c == b'\\' || c == b'"' {
            line.push(b'\\');
        }
        line.push(c);
    }
    line.extend_from_slice(b"\"\n");
    Some(line)
}

/// `body` without a first line that [`line_prefix`] writes for an absolute
/// name; any other body as it is.
pub fn strip_line_prefix(body: &[u8]) -> &[u8] {
    let Some(rest) = body.strip_prefix(b"#line 1 \"/") else {
        return body;
    };
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'\\' if matches!(rest.get(i + 1), Some(b'\\' | b'"')) => i += 2,
            b'"' => {
                return match rest.get(i + 1) {
                    Some(b'\n') => &rest[i + 2..],
                    _ => body,
                }
            }
            c if c < 0x20 || c == 0x7f || c == b'\\' => return body,
            _ => i += 1,
        }
    }
    body
}

/// The client's name for the mirror entry `mirror_path`: the path without
/// the mirror root's [`MIRROR_DEPTH`] components, then without `.abs`, then
/// without `.lzo` (distcc 3.4's `dcc_get_original_fname`). `None` when the
/// path has too few components.
pub fn client_name(mirror_path: &[u8]) -> Option<&[u8]> {
    let mut rest = mirror_path;
    for _ in 0..MIRROR_DEPTH {
        let slash = rest.iter().skip(1).position(|&c| c == b'/')? + 1;
        rest = &rest[slash..];
    }
    let rest = strip_extension(rest, b".abs");
    Some(strip_extension(rest, b".lzo"))
}

/// `path` without `ext` when its last component ends in it and has more
/// before it. Like 3.4's `dcc_find_extension`, a name that is only the
/// extension keeps it.
fn strip_extension<'a>(path: &'a [u8], ext: &[u8]) -> &'a [u8] {
    let base = path.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1);
    if path.len() - base > ext.len() && path.ends_with(ext) {
        &path[..path.len() - ext.len()]
    } else {
        path
    }
}

/// The link target the include server writes for the system include
/// directory `dir` (an absolute path): `../` once per server-root component
/// and once per slash in `dir`, then `dir` without its leading `/`.
pub fn system_link_target(dir: &[u8]) -> Vec<u8> {
    let depth = SERVER_ROOT_COMPONENTS + slashes(dir);
    let mut target = b"../".repeat(depth);
    target.extend_from_slice(dir.strip_prefix(b"/").unwrap_or(dir));
    target
}

/// Whether a LINK at `name` to `target` is a system-directory link: some
/// `../` steps, more of them than `name` has slashes, then `name` itself
/// (3.4's `dcc_categorize_file` SYSTEMDIR test).
pub fn is_system_link(name: &[u8], target: &[u8]) -> bool {
    let ups = leading_dotdots(target);
    ups > 0 && ups > slashes(name) && target[3 * ups - 1..] == *name
}

fn slashes(path: &[u8]) -> usize {
    path.iter().filter(|&&c| c == b'/').count()
}

fn leading_dotdots(mut path: &[u8]) -> usize {
    let mut count = 0;
    while let Some(rest) = path.strip_prefix(b"../") {
        path = rest;
        count += 1;
    }
    count
}

/// Why a NAME or CDIR breaks the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// It does not start with `/`.
    Relative,
    /// It has an empty, `.` or `..` component (which includes `/` alone and a trailing `/`).
    BadComponent,
    /// It holds a NUL byte.
    Nul,
    /// It is longer than [`MAX_PATH_LEN`].
    TooLong,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Relative => "is not absolute",
            PathError::BadComponent => "has an empty, '.' or '..' component",
            PathError::Nul => "holds a NUL byte",
            PathError::TooLong => "is too long",
        })
    }
}

impl std::error::Error for PathError {}

/// Checks a NAME or CDIR: absolute, at most [`MAX_PATH_LEN`] bytes, no NUL,
/// and every component a real name (not empty, `.` or `..`). Such a path
/// joined under a job's root stays under it, unless a symlink on the way
/// leads out.
pub fn check_path(path: &[u8]) -> Result<(), PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if path.contains(&0) {
        return Err(PathError::Nul);
    }
    let Some(rest) = path.strip_prefix(b"/") else {
        return Err(PathError::Relative);
    };
    if rest
        .split(|&c| c == b'/')
        .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return Err(PathError::BadComponent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_drop_the_root_then_abs_then_lzo() {
        let root = b"/tmp/tmpAb.include_server-1-0/padding";
        let name = |rest: &[u8]| client_name(&[&root[..], rest].concat()).map(<[u8]>::to_vec);
        assert_eq!(name(b"/home/u/t.c.lzo").unwrap(), b"/home/u/t.c");
        assert_eq!(
            name(b"/home/u/inc/foo.h.lzo.abs").unwrap(),
            b"/home/u/inc/foo.h"
        );
        assert_eq!(name(b"/usr/include").unwrap(), b"/usr/include");
        assert_eq!(name(b"/x.abs.lzo").unwrap(), b"/x.abs");
        assert_eq!(name(b"/d/.lzo").unwrap(), b"/d/.lzo");
        assert_eq!(client_name(b"/a/b"), None);
        assert_eq!(client_name(b"/a/b/c"), None);
        assert_eq!(client_name(b"/a/b/c/d").unwrap(), b"/d");
    }

    #[test]
    fn system_links_match_the_include_servers() {
        // From a real include server's answer (pump-notes §2.1).
        assert_eq!(
            system_link_target(b"/usr/include"),
            [&b"../".repeat(22)[..], b"usr/include"].concat()
        );
        let gcc = b"/usr/lib/gcc/x86_64-linux-gnu/12/include";
        assert_eq!(system_link_target(gcc)[..26 * 3], b"../".repeat(26)[..]);
        assert!(is_system_link(gcc, &system_link_target(gcc)));
        assert!(is_system_link(b"/usr/include", b"../../../usr/include"));
        // Too few steps to leave the root, another directory, or none.
        assert!(!is_system_link(b"/usr/include", b"../../usr/include"));
        assert!(!is_system_link(b"/usr/include", b"../../../etc"));
        assert!(!is_system_link(b"/usr/include", b"/usr/include"));
        assert!(!is_system_link(b"/a", b"a"));
    }

    #[test]
    fn line_prefixes_are_written_and_only_they_are_stripped() {
        let name = b"/a \"q\\.h";
        let line = line_prefix(name).unwrap();
        assert_eq!(line, b"#line 1 \"/a \\\"q\\\\.h\"\n");
        assert_eq!(strip_line_prefix(&[&line[..], b"x"].concat()), b"x");
        assert_eq!(
            strip_line_prefix(b"#line 1 \"/a/b.h\"\n#ifndef B\n"),
            b"#ifndef B\n"
        );
        assert_eq!(line_prefix(b"/a\nb"), None);
        assert_eq!(line_prefix(b"/a\x7fb"), None);
        for kept in [
            &b"#line 1 \"rel.h\"\nx"[..],
            b"#line 2 \"/a.h\"\nx",
            b"#line 1 \"/a.h\" 3\nx",
            b"#line 1 \"/a\tb.h\"\nx",
            b"#line 1 \"/a\x7fb.h\"\nx",
            b"#line 1 \"/a\\nb.h\"\nx",
            b"#line 1 \"/a.h",
            b"int x;\n",
        ] {
            assert_eq!(
                strip_line_prefix(kept),
                kept,
                "{}",
                String::from_utf8_lossy(kept)
            );
        }
    }

    #[test]
    fn paths_must_be_absolute_and_plain() {
        assert_eq!(check_path(b"/home/u/proj/t.c"), Ok(()));
        assert_eq!(check_path(b"home/u"), Err(PathError::Relative));
        assert_eq!(check_path(b""), Err(PathError::Relative));
        for bad in [
            &b"/"[..],
            b"/a//b",
            b"/a/",
            b"/a/./b",
            b"/../../srv/x",
            b"/a/..",
        ] {
            assert_eq!(check_path(bad), Err(PathError::BadComponent), "{bad:?}");
        }
        assert_eq!(check_path(b"/a\0b"), Err(PathError::Nul));
        let long = [&b"/"[..], &[b'x'; MAX_PATH_LEN]].concat();
        assert_eq!(check_path(&long), Err(PathError::TooLong));
        assert_eq!(
            check_path(b"/a/..b/.c/b..").map_err(|e| e.to_string()),
            Ok(())
        );
    }
}
