//! The house rules, checked on the source: features never import each other's internals, shared modules import no
//! feature, every module opens with a `//!` line, and no function runs past 80 lines.
//!
//! The map these rules keep true is in docs/house.md.

use crate::common::manifest_dir;
use std::path::{Path, PathBuf};

/// The features: each is a directory under src/ that only the applets (and itself) may import.
const FEATURES: &[&str] = &["client", "daemon", "monitor", "pump", "wrap"];

/// The one function allowed past the limit: the LZO1X decoder's state machine, which reads best whole.
const LONG_FUNCTIONS_ALLOWED: &[(&str, &str)] = &[("src/lzo.rs", "run")];

const MAX_FUNCTION_LINES: usize = 80;

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    crate::common::files_with_extension(dir, "rs")
}

/// The file's path from the manifest directory, for messages: `src/client/mod.rs`.
fn shown(path: &Path) -> String {
    path.strip_prefix(manifest_dir())
        .unwrap()
        .display()
        .to_string()
}

/// The feature a file belongs to, if any: `src/client/x.rs` is in `client`.
fn feature_of(path: &Path) -> Option<&'static str> {
    let rel = path.strip_prefix(manifest_dir().join("src")).ok()?;
    let top = rel.components().next()?.as_os_str().to_str()?;
    FEATURES.iter().copied().find(|f| *f == top)
}

/// Whether a file is the applets' (the command lines, which may use every feature).
fn is_applet(path: &Path) -> bool {
    path.starts_with(manifest_dir().join("src/applets"))
        || path == manifest_dir().join("src/main.rs")
        || path == manifest_dir().join("src/lib.rs")
}

/// The features a line names through `crate::FEATURE`.
fn features_named(line: &str) -> Vec<&'static str> {
    FEATURES
        .iter()
        .copied()
        .filter(|f| {
            let needle = format!("crate::{f}");
            line.match_indices(&needle).any(|(at, _)| {
                let next = line.as_bytes().get(at + needle.len()).copied();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            })
        })
        .collect()
}

#[test]
fn no_feature_imports_another_and_shared_modules_import_none() {
    let mut broken = Vec::new();
    for path in rust_files(&manifest_dir().join("src")) {
        if is_applet(&path) {
            continue;
        }
        let own = feature_of(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for named in features_named(line) {
                if Some(named) != own {
                    let whose =
                        own.map_or("a shared module".to_string(), |f| format!("feature {f}"));
                    broken.push(format!(
                        "{}:{}: {whose} imports {named}: {}",
                        shown(&path),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "house rule broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_module_opens_with_a_doc_line() {
    let mut files = rust_files(&manifest_dir().join("src"));
    files.extend(rust_files(&manifest_dir().join("tests")));
    let missing: Vec<String> = files
        .iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//! "))
        .map(|p| shown(p))
        .collect();
    assert!(
        missing.is_empty(),
        "modules without an opening `//!` line: {missing:?}"
    );
}

/// A `fn` at the start of a line (after indentation and qualifiers): its indentation and name.
fn function_start(line: &str) -> Option<(usize, &str)> {
    let body = line.trim_start();
    let indent = line.len() - body.len();
    let mut words = body.split_whitespace();
    let mut word = words.next()?;
    while matches!(
        word,
        "pub" | "const" | "unsafe" | "async" | "extern" | "\"C\""
    ) || word.starts_with("pub(")
    {
        word = words.next()?;
    }
    if word != "fn" {
        return None;
    }
    let name = words.next()?;
    let end = name
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    Some((indent, &name[..end]))
}

/// Functions longer than the limit, as `(file, name, lines)`: from the `fn` line to the first `}` at its
/// indentation (rustfmt's layout). A signature that ends in `;` has no body.
fn long_functions(path: &Path) -> Vec<(String, String, usize)> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut long = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some((indent, name)) = function_start(line) else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        let Some(len) = lines[start..].iter().position(|l| *l == close) else {
            continue;
        };
        if len + 1 > MAX_FUNCTION_LINES {
            long.push((shown(path), name.to_string(), len + 1));
        }
    }
    long
}

#[test]
fn no_function_runs_past_80_lines() {
    let long: Vec<String> = rust_files(&manifest_dir().join("src"))
        .iter()
        .flat_map(|p| long_functions(p))
        .filter(|(file, name, _)| !LONG_FUNCTIONS_ALLOWED.contains(&(file.as_str(), name.as_str())))
        .map(|(file, name, n)| format!("{file}: {name} is {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "split these into named steps:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_rules_see_what_they_check() {
    // The checks above would pass on an empty tree; make sure they read this one.
    let files = rust_files(&manifest_dir().join("src"));
    assert!(files.len() > 20, "{files:?}");
    assert_eq!(features_named("use crate::client::scan;"), ["client"]);
    assert_eq!(features_named("use crate::clientele;"), Vec::<&str>::new());
    assert_eq!(
        function_start("    pub(crate) fn run(&self) {"),
        Some((4, "run"))
    );
    let lzo = long_functions(&manifest_dir().join("src/lzo.rs"));
    assert!(
        lzo.iter().any(|(_, name, _)| name == "run"),
        "the LZO decoder is long: {lzo:?}"
    );
}
