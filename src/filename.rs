//! Source file names as distcc reads them: extensions, which sources it distributes, their preprocessed forms and the default output name.
//!
//! Names are raw bytes, as they come in a command line.

/// The part of a path after its last `/`.
pub fn basename(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&c| c == b'/') {
        Some(slash) => &name[slash + 1..],
        None => name,
    }
}

/// The extension of a file name: the text from the last `.` of its basename.
pub fn extension(name: &[u8]) -> Option<&[u8]> {
    let base = basename(name);
    let dot = base.iter().rposition(|&c| c == b'.')?;
    let ext = &base[dot..];
    (ext.len() > 1).then_some(ext)
}

/// True for the source extensions distcc distributes (`dcc_is_source`).
pub fn is_source(name: &[u8]) -> bool {
    preprocessed_extension(name).is_some_and(|ext| ext != ".s")
}

/// The extension of the preprocessed form of a source (`dcc_preproc_exten`):
/// the table of section 5.4, in one place for the daemon and the client.
pub fn preprocessed_extension(name: &[u8]) -> Option<&'static str> {
    let ext = extension(name)?;
    Some(match ext {
        b".c" | b".i" => ".i",
        b".cc" | b".cpp" | b".cxx" | b".cp" | b".c++" | b".C" | b".ii" => ".ii",
        b".m" | b".mi" => ".mi",
        b".mm" | b".M" | b".mii" => ".mii",
        _ if ext.eq_ignore_ascii_case(b".s") => ".s",
        _ => return None,
    })
}

/// True for a source that is already preprocessed (`.i`, `.ii`, `.mi`, `.mii`).
pub fn is_preprocessed(name: &[u8]) -> bool {
    matches!(extension(name), Some(b".i" | b".ii" | b".mi" | b".mii"))
}

/// The default output name (5.3): the input's basename with the text from its
/// last `.` replaced by `.o`, or `.s` for `-S`; `None` for a basename shorter
/// than 3 characters or without a `.`.
pub fn default_output(input: &[u8], assemble_only: bool) -> Option<Vec<u8>> {
    let base = basename(input);
    if base.len() < 3 {
        return None;
    }
    let dot = base.iter().rposition(|&c| c == b'.')?;
    let mut out = base[..dot].to_vec();
    out.extend_from_slice(if assemble_only { b".s" } else { b".o" });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        assert_eq!(preprocessed_extension(b"a.c"), Some(".i"));
        assert_eq!(preprocessed_extension(b"a.C"), Some(".ii"));
        assert_eq!(preprocessed_extension(b"a.c++"), Some(".ii"));
        assert_eq!(preprocessed_extension(b"a.M"), Some(".mii"));
        assert_eq!(preprocessed_extension(b"a.S"), Some(".s"));
        assert_eq!(preprocessed_extension(b"dir.d/a"), None);
        assert_eq!(preprocessed_extension(b"a."), None);
        assert!(!is_source(b"a.s"));
        assert!(is_source(b"a.ii"));
    }

    #[test]
    fn default_outputs() {
        assert_eq!(default_output(b"sub/foo.cpp", false).unwrap(), b"foo.o");
        assert_eq!(default_output(b"sub/foo.c", true).unwrap(), b"foo.s");
        assert_eq!(default_output(b"a.b.c", false).unwrap(), b"a.b.o");
        assert_eq!(default_output(b".c", false), None);
        assert_eq!(default_output(b"dir.d/abc", false), None);
    }
}
