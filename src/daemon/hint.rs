//! Plain hints in the daemon's log for compile failures whose cause is the
//! setup, not the source: today, input preprocessed by gcc that a clang
//! compiler failed on.
//!
//! A client whose cc is gcc sends glibc headers as gcc expanded them, full
//! of gcc-only attributes: `<sys/cdefs.h>` turns `__attr_dealloc (fclose, 1)`
//! into `__attribute__ ((__malloc__ (fclose, 1)))` only for gcc 11 and later.
//! So a helper whose `cc` runs clang fails every job that includes
//! `<stdio.h>`, and clang 14 says only `error: '__malloc__' attribute takes
//! no arguments` (7 times for glibc 2.36's stdio.h). This names the cause.
//!
//! Who preprocessed is told by the line markers: gcc writes the command
//! line's pseudo-file as `"<command-line>"` (and gcc 11 and later number
//! the first markers 0), clang writes `"<command line>"` and starts at 1.
//! Who compiled is told by the compiler's stderr, which shows what really
//! ran whatever wrapper scripts lay between the daemon and the compiler:
//! clang ends its diagnostics with `N error(s) generated.` and prefixes its
//! driver's errors with `clang: error:`.

use std::path::Path;

use crate::sys::read_head;

/// How much of the input is read to find its line markers: they open the file.
pub const SCAN_LIMIT: usize = 4096;

/// True if `prefix` (the start of a preprocessed source) carries gcc's line
/// markers: a marker for `"<command-line>"`, or a marker for line 0.
pub fn preprocessed_by_gcc(prefix: &[u8]) -> bool {
    prefix.split(|&c| c == b'\n').any(|line| {
        let Some(rest) = line.strip_prefix(b"# ") else {
            return false;
        };
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        let (number, rest) = rest.split_at(digits);
        let Some(name) = rest.strip_prefix(b" \"") else {
            return false;
        };
        number == b"0" || name.starts_with(b"<command-line>\"")
    })
}

/// True if a compiler's stderr is clang's: its closing `N errors generated.`
/// (or `1 error generated.`) or a driver error from `clang`, `clang-14`, ...
pub fn stderr_from_clang(stderr: &[u8]) -> bool {
    stderr.split(|&c| c == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let summary = line.ends_with(b" errors generated.") || line.ends_with(b" error generated.");
        let driver = line.starts_with(b"clang")
            && line
                .iter()
                .position(|&c| c == b':')
                .is_some_and(|colon| line[colon..].starts_with(b": error:"));
        summary || driver
    })
}

/// The hint for a failed job, if its cause is gcc-preprocessed input given
/// to clang: `compiler` is the name the client sent, `input` the job's
/// preprocessed source on disk, `stderr` what the compiler wrote.
pub fn gcc_input_to_clang(
    peer: &str,
    compiler: &str,
    input: &Path,
    stderr: &[u8],
) -> Option<String> {
    (stderr_from_clang(stderr)
        && preprocessed_by_gcc(&read_head(input, SCAN_LIMIT).unwrap_or_default()))
    .then(|| {
        format!(
            "job from {peer}: {compiler} failed on input preprocessed by gcc; clang cannot \
             compile gcc-preprocessed glibc headers — the client's {compiler} must be clang \
             (clang --target=...)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first lines of `powerpc-linux-gnu-gcc -E hello.c` (gcc 12).
    const GCC_12: &[u8] = b"# 0 \"hello.c\"\n# 0 \"<built-in>\"\n# 0 \"<command-line>\"\n\
        # 1 \"/usr/powerpc-linux-gnu/include/stdc-predef.h\" 1 3\n# 0 \"<command-line>\" 2\n\
        # 1 \"hello.c\"\n";

    /// gcc before 11 numbered the same markers 1 (not checked here: this
    /// machine has gcc 12 only).
    const GCC_10: &[u8] = b"# 1 \"hello.c\"\n# 1 \"<built-in>\"\n# 1 \"<command-line>\"\n\
        # 31 \"<command-line>\"\n# 1 \"/usr/include/stdc-predef.h\" 1 3 4\n";

    /// The first lines of `clang --target=powerpc-linux-gnu -E hello.c` (clang 14).
    const CLANG_14: &[u8] = b"# 1 \"hello.c\"\n# 1 \"<built-in>\" 1\n# 1 \"<built-in>\" 3\n\
        # 504 \"<built-in>\" 3\n# 1 \"<command line>\" 1\n# 1 \"<built-in>\" 2\n\
        # 1 \"hello.c\" 2\n";

    #[test]
    fn gcc_line_markers_are_recognised() {
        assert!(preprocessed_by_gcc(GCC_12));
        assert!(preprocessed_by_gcc(GCC_10));
        // Only the line-0 marker made it into the prefix.
        assert!(preprocessed_by_gcc(b"# 0 \"x.c\"\n"));
    }

    #[test]
    fn clang_and_marker_free_input_are_not_gcc() {
        assert!(!preprocessed_by_gcc(CLANG_14));
        // -P: no markers at all.
        assert!(!preprocessed_by_gcc(b"int printf(const char *, ...);\n"));
        assert!(!preprocessed_by_gcc(b""));
        // Source text that merely mentions the name, not a marker.
        assert!(!preprocessed_by_gcc(
            b"const char *s = \"<command-line>\";\n"
        ));
        assert!(!preprocessed_by_gcc(b"#0 \"<command-line>\"\n"));
        assert!(!preprocessed_by_gcc(b"# x \"<command-line>\"\n"));
        // Line 10 is not line 0.
        assert!(!preprocessed_by_gcc(b"# 10 \"x.c\"\n"));
    }

    #[test]
    fn clang_diagnostics_are_recognised() {
        let failed = b"In file included from hello.c:1:\n\
            /usr/powerpc-linux-gnu/include/stdio.h:189:48: error: '__malloc__' attribute takes no arguments\n\
            7 errors generated.\n";
        assert!(stderr_from_clang(failed));
        assert!(stderr_from_clang(
            b"x.c:1:1: error: unknown type name 'x'\n1 error generated.\n"
        ));
        assert!(stderr_from_clang(
            b"clang: error: unknown argument: '-fno-such'\n"
        ));
        assert!(stderr_from_clang(
            b"clang-14: error: no such file or directory: 'x.i'\r\n"
        ));
    }

    #[test]
    fn gcc_diagnostics_are_not_clangs() {
        let gcc = b"x.c: In function 'main':\nx.c:1:1: error: unknown type name 'x'\n";
        assert!(!stderr_from_clang(gcc));
        assert!(!stderr_from_clang(
            b"gcc: error: x.i: No such file or directory\n"
        ));
        assert!(!stderr_from_clang(b""));
        // A path that starts with "clang" is not the driver.
        assert!(!stderr_from_clang(b"clangfoo.c:1:1: warning: x\n"));
    }

    #[test]
    fn the_hint_needs_both_gcc_input_and_clang() {
        let tmp = crate::testing::TestDir::new("hint");
        let dir = tmp.path();
        let gcc_input = dir.join("gcc.i");
        let clang_input = dir.join("clang.i");
        std::fs::write(&gcc_input, GCC_12).unwrap();
        std::fs::write(&clang_input, CLANG_14).unwrap();
        let clang_failed = b"7 errors generated.\n";
        let gcc_failed = b"x.c:1:1: error: expected ';'\n";
        let hint = gcc_input_to_clang("127.0.0.1:4000", "cc", &gcc_input, clang_failed).unwrap();
        assert!(
            hint.starts_with("job from 127.0.0.1:4000: cc failed on input preprocessed by gcc;")
        );
        assert!(hint.contains("the client's cc must be clang"));
        assert!(gcc_input_to_clang("p", "cc", &clang_input, clang_failed).is_none());
        assert!(gcc_input_to_clang("p", "cc", &gcc_input, gcc_failed).is_none());
        assert!(gcc_input_to_clang("p", "cc", &dir.join("missing.i"), clang_failed).is_none());
    }

    #[test]
    fn only_the_prefix_is_read() {
        let tmp = crate::testing::TestDir::new("hint");
        let late = tmp.join("late.i");
        let mut text = vec![b'\n'; SCAN_LIMIT];
        text.extend_from_slice(b"# 0 \"<command-line>\"\n");
        std::fs::write(&late, &text).unwrap();
        assert_eq!(read_head(&late, SCAN_LIMIT).unwrap().len(), SCAN_LIMIT);
        assert!(!preprocessed_by_gcc(&read_head(&late, SCAN_LIMIT).unwrap()));
    }
}
