//! Hand-built include-server answers for tests: a mirror tree laid out as distcc 3.4's include server lays it out, and the `INCLUDE_SERVER_STUB` list that makes a client use it.

use distcc_rs::{lzo, mirror};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A mirror tree under `root`, which must have exactly
/// [`mirror::MIRROR_DEPTH`] components, and the answer it makes.
pub struct MirrorTree {
    pub root: PathBuf,
    entries: Vec<PathBuf>,
}

impl MirrorTree {
    /// A tree at `DIR/m` (`dir` must have two components, e.g. `/tmp/x`,
    /// which a `TestDir` under /tmp has).
    pub fn new(dir: &Path) -> MirrorTree {
        let root = dir.join("m");
        assert_eq!(
            root.components().count() - 1,
            mirror::MIRROR_DEPTH,
            "mirror root {} needs {} components",
            root.display(),
            mirror::MIRROR_DEPTH
        );
        MirrorTree {
            root,
            entries: Vec::new(),
        }
    }

    fn at(&self, client_path: &Path, suffix: &str) -> PathBuf {
        assert!(client_path.is_absolute(), "{}", client_path.display());
        let mut p = self.root.as_os_str().to_owned();
        p.push(client_path.as_os_str());
        p.push(suffix);
        PathBuf::from(p)
    }

    fn create_parent(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    }

    /// Adds the file at `client_path` (read now), as `.lzo`.
    pub fn file(&mut self, client_path: &Path) -> &mut Self {
        let body = std::fs::read(client_path).unwrap();
        self.body(client_path, &body, ".lzo")
    }

    /// Adds the file at `client_path` as `.lzo.abs`, with the include
    /// server's `#line 1 "NAME"` in front of its bytes.
    pub fn file_abs(&mut self, client_path: &Path, name: &str) -> &mut Self {
        let mut body =
            mirror::line_prefix(name.as_bytes()).expect("a name without control characters");
        body.extend(std::fs::read(client_path).unwrap());
        self.body(client_path, &body, ".lzo.abs")
    }

    fn body(&mut self, client_path: &Path, body: &[u8], suffix: &str) -> &mut Self {
        let at = self.at(client_path, suffix);
        Self::create_parent(&at);
        let lzo = if body.is_empty() {
            Vec::new()
        } else {
            lzo::compress(body)
        };
        std::fs::write(&at, lzo).unwrap();
        self.entries.push(at);
        self
    }

    /// Adds a symlink at `client_path` to `target`, verbatim.
    pub fn link(&mut self, client_path: &Path, target: &Path) -> &mut Self {
        let at = self.at(client_path, "");
        Self::create_parent(&at);
        std::os::unix::fs::symlink(target, &at).unwrap();
        self.entries.push(at);
        self
    }

    /// Adds the system-directory link for the default include directory `dir`.
    pub fn system_dir(&mut self, dir: &Path) -> &mut Self {
        let target = mirror::system_link_target(dir.as_os_str().as_bytes());
        let target = PathBuf::from(std::ffi::OsStr::from_bytes(&target));
        self.link(dir, &target)
    }

    /// Adds the empty forcing file that makes `dir` exist on the server.
    pub fn forcing(&mut self, dir: &Path) -> &mut Self {
        let at = self.at(&dir.join(mirror::FORCING_FILE), "");
        Self::create_parent(&at);
        std::fs::write(&at, b"").unwrap();
        self.entries.push(at);
        self
    }

    /// The mirror paths, in the order added: what the include server answers.
    pub fn answer(&self) -> &[PathBuf] {
        &self.entries
    }

    /// The value of `INCLUDE_SERVER_STUB` that makes a client take this
    /// answer instead of asking an include server.
    pub fn stub(&self) -> String {
        let words: Vec<_> = self.entries.iter().map(|p| p.to_str().unwrap()).collect();
        words.join(" ")
    }
}

/// The compiler's default include directories, as `CC -x LANG -E -v` prints them.
pub fn default_include_dirs(cc: &str, lang: &str) -> Vec<PathBuf> {
    let out = std::process::Command::new(cc)
        .args(["-x", lang, "-E", "-v", "/dev/null", "-o", "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let start = text.find("#include <...> search starts here:").unwrap();
    let end = text.find("End of search list.").unwrap();
    text[start..end]
        .lines()
        .skip(1)
        .map(|l| std::fs::canonicalize(l.trim()).unwrap())
        .collect()
}
