//! The pump scanner against the compilers themselves: for each case, the files it finds are those `cc -M` lists for the same command, and what it cannot decide is NotCovered.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use distcc_rs::pump::closure::{Closure, Request};
use distcc_rs::pump::scan::Scanner;

use crate::common::TestDir;

/// Writes files (`name`, `text`) under the test dir, making their dirs.
fn files(dir: &TestDir, list: &[(&str, &str)]) {
    for (name, text) in list {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

fn request(dir: &Path, line: &str) -> Request {
    Request {
        cwd: std::fs::canonicalize(dir).unwrap(),
        argv: argv(line),
        system_headers: false,
    }
}

fn system_dirs(cc: &str) -> Vec<PathBuf> {
    let mut dirs = crate::common::pump::default_include_dirs(cc, "c");
    dirs.extend(crate::common::pump::default_include_dirs(cc, "c++"));
    dirs
}

/// The prerequisites of `cc -M` output, unescaped (`\ ` is a space in a name).
fn make_words(out: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(out).replace("\\\n", " ");
    let deps = text.split_once(": ").unwrap().1;
    let mut words = vec![String::new()];
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|n| *n == ' ' || *n == '#') => {
                words.last_mut().unwrap().push(chars.next().unwrap())
            }
            '$' if chars.peek() == Some(&'$') => {
                words.last_mut().unwrap().push(chars.next().unwrap())
            }
            c if c.is_whitespace() => words.push(String::new()),
            c => words.last_mut().unwrap().push(c),
        }
    }
    words.retain(|w| !w.is_empty());
    words
}

/// The non-system files `cc -M` lists for the command (with -c replaced).
fn compiler_deps(dir: &Path, line: &str) -> BTreeSet<PathBuf> {
    let mut args = argv(line);
    let cc = args.remove(0);
    args.retain(|a| a != "-c");
    let out = std::process::Command::new(&cc)
        .args(&args)
        .arg("-M")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cc} -M {line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let system = system_dirs(&cc);
    make_words(&out.stdout)
        .iter()
        .map(|d| std::fs::canonicalize(dir.join(d)).unwrap())
        .filter(|d| !system.iter().any(|s| d.starts_with(s)))
        .collect()
}

fn scanned(closure: &Closure) -> BTreeSet<PathBuf> {
    closure.files.iter().map(|f| f.path.clone()).collect()
}

/// Scans the command and checks its files against `cc -M`; returns the closure.
fn same_as_compiler(scanner: &Scanner, dir: &TestDir, line: &str) -> Closure {
    let closure = scanner
        .closure(&request(dir.path(), line))
        .unwrap_or_else(|e| panic!("{line}: not covered: {e}"));
    assert_eq!(scanned(&closure), compiler_deps(dir.path(), line), "{line}");
    let source = std::fs::canonicalize(dir.path())
        .unwrap()
        .join(line.split_whitespace().last().unwrap());
    assert_eq!(closure.files[0].path, source, "the source comes first");
    closure
}

fn not_covered(scanner: &Scanner, dir: &TestDir, line: &str) -> String {
    match scanner.closure(&request(dir.path(), line)) {
        Ok(c) => panic!("{line}: covered, with {:?}", c.files),
        Err(e) => e.0,
    }
}

#[test]
fn quoted_and_angled_includes_with_system_headers() {
    let dir = TestDir::new("scan-plain");
    files(
        &dir,
        &[
            ("x.c", "#include <stdio.h>\n#include \"a.h\"\n#include <b.h>\nint main(void) { return 0; }\n"),
            ("a.h", "#include \"sub/c.h\"\n"),
            ("sub/c.h", "#include \"d.h\"\n#include <string.h>\n"),
            ("sub/d.h", "/* found next to c.h */\n"),
            ("inc/b.h", "#include <stdlib.h>\n"),
            ("unused/e.h", ""),
        ],
    );
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        let c = same_as_compiler(&scanner, &dir, &format!("{cc} -Iinc -Iunused -c x.c"));
        assert!(!c.system_dirs.is_empty(), "{cc}: {:?}", c.system_dirs);
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert!(c.dirs.contains(&real.join("unused")), "{:?}", c.dirs);
    }
}

#[test]
fn computed_includes() {
    let dir = TestDir::new("scan-computed");
    files(
        &dir,
        &[
            (
                "x.c",
                "#define HDR \"one.h\"\n#include HDR\n#define STR(x) #x\n#define XSTR(x) STR(x)\n\
                 #define NAME two\n#include XSTR(NAME.h)\n#define ANGLED <three.h>\n#include ANGLED\n\
                 #define CAT(a, b) a##b\n#define PICK(n) XSTR(CAT(fo, n).h)\n#include PICK(ur)\n",
            ),
            ("one.h", ""),
            ("two.h", ""),
            ("inc/three.h", ""),
            ("four.h", ""),
        ],
    );
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        same_as_compiler(&scanner, &dir, &format!("{cc} -Iinc -c x.c"));
    }
}

#[test]
fn include_next_searches_after_the_dir_of_the_current_file() {
    let dir = TestDir::new("scan-next");
    files(
        &dir,
        &[
            ("x.c", "#include <v.h>\n#include \"w.h\"\n"),
            ("one/v.h", "#include_next <v.h>\n"),
            ("two/v.h", "#include_next <v.h>\n"),
            ("three/v.h", "#define V 3\n"),
            ("two/w.h", "#include_next \"w.h\"\n"),
            ("three/w.h", "#include <stdint.h>\n"),
        ],
    );
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        same_as_compiler(&scanner, &dir, &format!("{cc} -Ione -Itwo -Ithree -c x.c"));
    }
}

#[test]
fn guards_and_pragma_once_skip_what_the_compiler_skips() {
    let dir = TestDir::new("scan-once");
    files(
        &dir,
        &[
            ("x.c", "#include \"g.h\"\n#include \"g.h\"\n#include \"o.h\"\n#include \"o.h\"\n#import \"i.h\"\n#import \"i.h\"\n"),
            ("g.h", "// a guard\n#ifndef G_H\n#define G_H\n#include \"g2.h\"\n#endif\n"),
            ("g2.h", ""),
            ("o.h", "#pragma once\n#ifdef O_SEEN\n#include \"never.h\"\n#endif\n#define O_SEEN\n"),
            ("i.h", "#ifdef I_SEEN\n#include \"never.h\"\n#endif\n#define I_SEEN\n"),
        ],
    );
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        same_as_compiler(&scanner, &dir, &format!("{cc} -w -c x.c"));
    }
}

#[test]
fn has_include_decides_without_failing() {
    let dir = TestDir::new("scan-has");
    files(
        &dir,
        &[
            (
                "x.c",
                "#if __has_include(\"yes.h\") && __has_include(<stdio.h>)\n#include \"yes.h\"\n#endif\n\
                 #if __has_include(\"no.h\")\n#include \"no.h\"\n#endif\n\
                 #ifdef __has_include\n#include \"has.h\"\n#endif\n\
                 #if defined(__has_include) && defined __has_include_next && defined(__LINE__)\n#include \"defined.h\"\n#endif\n",
            ),
            ("yes.h", ""),
            ("has.h", ""),
            ("defined.h", ""),
        ],
    );
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        same_as_compiler(&scanner, &dir, &format!("{cc} -c x.c"));
    }
}

#[test]
fn if_on_the_compilers_predefined_macros() {
    let dir = TestDir::new("scan-predef");
    files(
        &dir,
        &[
            (
                "x.c",
                "#if defined __x86_64__ && __SIZEOF_POINTER__ == 8\n#include \"x64.h\"\n#elif defined __i386__\n#include \"x32.h\"\n\
                 #elif defined(__aarch64__)\n#include \"arm64.h\"\n#endif\n\
                 #if __GNUC__ >= 4 && '\\377' < 0\n#include \"gnu.h\"\n#endif\n\
                 #ifdef __OPTIMIZE__\n#include \"opt.h\"\n#endif\n\
                 #if __has_builtin(__builtin_expect) && __has_attribute(noreturn)\n#include \"builtin.h\"\n#endif\n",
            ),
            ("x64.h", ""),
            ("x32.h", ""),
            ("arm64.h", ""),
            ("gnu.h", ""),
            ("opt.h", ""),
            ("builtin.h", ""),
        ],
    );
    let scanner = Scanner::new();
    for line in [
        "gcc -c x.c",
        "gcc -m32 -O2 -c x.c",
        "clang -c x.c",
        "clang --target=aarch64-linux-gnu -funsigned-char -c x.c",
        "clang -target i686-linux-gnu -O1 -c x.c",
    ] {
        same_as_compiler(&scanner, &dir, line);
    }
}

#[test]
fn include_and_imacros_and_d_u_in_order() {
    let dir = TestDir::new("scan-cmdline");
    files(
        &dir,
        &[
            ("x.c", "#if A == 2 && !defined B\n#include \"two.h\"\n#endif\n#ifdef FROM_IMACROS\n#include \"im.h\"\n#endif\n#ifdef FROM_INCLUDE\n#include \"inc.h\"\n#endif\n"),
            ("k.h", "#define FROM_INCLUDE\n#include \"k2.h\"\n"),
            ("k2.h", ""),
            ("m.h", "#define FROM_IMACROS\n"),
            ("two.h", ""),
            ("im.h", ""),
            ("inc.h", ""),
        ],
    );
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        same_as_compiler(
            &scanner,
            &dir,
            &format!("{cc} -DA -UA -DA=2 -DB -UB -include k.h -imacros m.h -c x.c"),
        );
        same_as_compiler(&scanner, &dir, &format!("{cc} -DA=2 -DB -c x.c"));
    }
}

#[test]
fn kernel_style_macros_and_va_opt() {
    let dir = TestDir::new("scan-kconfig");
    files(
        &dir,
        &[
            (
                "x.c",
                "#define __ARG_PLACEHOLDER_1 0,\n#define __take_second_arg(__ignored, val, ...) val\n\
                 #define __is_defined(x) ___is_defined(x)\n#define ___is_defined(val) ____is_defined(__ARG_PLACEHOLDER_##val)\n\
                 #define ____is_defined(arg1_or_junk) __take_second_arg(arg1_or_junk 1, 0)\n\
                 #define IS_BUILTIN(option) __is_defined(option)\n#define IS_MODULE(option) __is_defined(option##_MODULE)\n\
                 #define __or(x, y) ___or(x, y)\n#define ___or(x, y) ____or(__ARG_PLACEHOLDER_##x, y)\n\
                 #define ____or(arg1_or_junk, y) __take_second_arg(arg1_or_junk 1, y)\n\
                 #define IS_ENABLED(option) __or(IS_BUILTIN(option), IS_MODULE(option))\n\
                 #if IS_ENABLED(CONFIG_FOO)\n#include \"foo.h\"\n#endif\n#if IS_ENABLED(CONFIG_BAR)\n#include \"bar.h\"\n#endif\n\
                 #if IS_ENABLED(CONFIG_BAZ)\n#include \"baz.h\"\n#endif\n\
                 #define F(a, ...) a __VA_OPT__(+ 1)\n#if F(0) == 0 && F(0, x) == 1\n#include \"vaopt.h\"\n#endif\n\
                 #define G(fmt, ...) fmt , ## __VA_ARGS__\n#if G(1) == 1\n#include \"comma.h\"\n#endif\n",
            ),
            ("foo.h", ""),
            ("bar.h", ""),
            ("baz.h", ""),
            ("vaopt.h", ""),
            ("comma.h", ""),
        ],
    );
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        same_as_compiler(
            &scanner,
            &dir,
            &format!("{cc} -DCONFIG_FOO=1 -DCONFIG_BAR_MODULE=1 -c x.c"),
        );
    }
}

#[test]
fn symlinked_headers_and_dotdot() {
    let dir = TestDir::new("scan-links");
    files(
        &dir,
        &[
            (
                "x.c",
                "#include \"sub/../y.h\"\n#include <l.h>\n#include \"alias.h\"\n#include \"sub/near-alias.h\"\n",
            ),
            // A header found through a link includes relative to the link's dir.
            ("other/far.h", "#include \"near.h\"\n"),
            ("other/near.h", ""),
            ("sub/near.h", ""),
            ("y.h", ""),
            ("sub/keep", ""),
            ("real/l.h", ""),
            ("target.h", ""),
        ],
    );
    std::os::unix::fs::symlink("real", dir.join("linked")).unwrap();
    std::os::unix::fs::symlink("target.h", dir.join("alias.h")).unwrap();
    std::os::unix::fs::symlink("../other/far.h", dir.join("sub/near-alias.h")).unwrap();
    let scanner = Scanner::new();
    let real = std::fs::canonicalize(dir.path()).unwrap();
    for cc in ["gcc", "clang"] {
        let c = same_as_compiler(&scanner, &dir, &format!("{cc} -Ilinked -c x.c"));
        assert!(c.dirs.contains(&real.join("sub")), "{:?}", c.dirs);
        let links: Vec<(PathBuf, PathBuf)> = c
            .links
            .iter()
            .map(|l| (l.path.clone(), l.target.clone()))
            .collect();
        assert!(
            links.contains(&(real.join("linked"), PathBuf::from("real"))),
            "{links:?}"
        );
        assert!(
            links.contains(&(real.join("alias.h"), PathBuf::from("target.h"))),
            "{links:?}"
        );
    }
}

#[test]
fn absolute_search_dirs_give_the_line_name() {
    let dir = TestDir::new("scan-abs");
    files(
        &dir,
        &[
            ("x.c", "#include \"h.h\"\n"),
            ("inc/h.h", "#include \"h2.h\"\n"),
            ("inc/h2.h", ""),
        ],
    );
    let real = std::fs::canonicalize(dir.path()).unwrap();
    let scanner = Scanner::new();
    let c = same_as_compiler(
        &scanner,
        &dir,
        &format!("gcc -I{}/inc -c x.c", real.display()),
    );
    let names: Vec<Option<PathBuf>> = c.files.iter().map(|f| f.line_name.clone()).collect();
    assert_eq!(
        names,
        [
            None,
            Some(real.join("inc/h.h")),
            Some(real.join("inc/h2.h"))
        ]
    );
}

/// A make rule that generates a header between two compiles: the second
/// scan finds it, both where nothing was found before and where it now
/// shadows a header found later in the search path.
#[test]
fn a_header_generated_between_two_scans_is_seen() {
    let dir = TestDir::new("scan-generated");
    files(
        &dir,
        &[
            ("x.c", "#include \"gen.h\"\n#include <shadow.h>\n"),
            ("late/shadow.h", ""),
            ("early/.keep", ""),
        ],
    );
    // Old enough for the closure cache, which then has to see the change.
    for f in ["x.c", "late/shadow.h", "early/.keep"] {
        age(&dir.join(f), 3600);
    }
    let scanner = Scanner::new();
    let line = "gcc -Iearly -Ilate -c x.c";
    let why = not_covered(&scanner, &dir, line);
    assert!(why.contains("gen.h"), "{why}");
    files(&dir, &[("gen.h", "")]);
    age(&dir.join("gen.h"), 3600);
    same_as_compiler(&scanner, &dir, line);
    files(&dir, &[("early/shadow.h", "")]);
    let c = same_as_compiler(&scanner, &dir, line);
    let real = std::fs::canonicalize(dir.path()).unwrap();
    assert!(scanned(&c).contains(&real.join("early/shadow.h")));
}

#[test]
fn what_the_scanner_cannot_decide_is_not_covered() {
    let dir = TestDir::new("scan-refused");
    files(
        &dir,
        &[
            ("abs.c", "#include \"/etc/hostname\"\n"),
            ("missing.c", "#include \"nowhere.h\"\n"),
            ("error.c", "#error no\n"),
            ("unknown.c", "#frobnicate\n"),
            ("comment.c", "/* never closed\n"),
            ("counter.c", "#if __COUNTER__ == 0\n#endif\n"),
            ("ok.c", "#include <stdio.h>\n"),
            ("a.s", ""),
            ("y.c", ""),
        ],
    );
    let scanner = Scanner::new();
    for (line, why) in [
        ("gcc -c abs.c", "absolute"),
        ("gcc -c missing.c", "nowhere.h"),
        ("gcc -c error.c", "#error"),
        ("gcc -c unknown.c", "frobnicate"),
        ("gcc -c comment.c", "comment"),
        ("gcc -c counter.c", "__COUNTER__"),
        ("gcc -G 0 -c ok.c", "-G"),
        ("gcc -c ok.c -frobnicate", "-frobnicate"),
        ("gcc -c a.s", "a.s"),
        ("gcc -x assembler-with-cpp -c ok.c", "assembler-with-cpp"),
        ("gcc -c ok.c y.c", "more than one source"),
        ("gcc ok.c", "not a compile"),
        ("gcc -c ok.c -include nothere.h", "nothere.h"),
        ("gcc -c ok.c -Wp,-DX", "-Wp"),
    ] {
        let got = not_covered(&scanner, &dir, line);
        assert!(got.contains(why), "{line}: {got}");
    }
    // A compiler name that is distcc (a masquerade link) is never run.
    std::fs::create_dir(dir.join("bin")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_distcc-rs"), dir.join("bin/gcc")).unwrap();
    let got = not_covered(
        &scanner,
        &dir,
        &format!("{} -c ok.c", dir.join("bin/gcc").display()),
    );
    assert!(got.contains("is distcc"), "{got}");
    let tiny = Scanner::with_limits(distcc_rs::pump::scan::Limits {
        bytes: 100,
        ..Default::default()
    });
    let got = not_covered(&tiny, &dir, "gcc -c ok.c");
    assert!(got.contains("budget"), "{got}");
}

/// With warm caches (the parse cache for new -D values, then the closure
/// cache for the same command), scans give the compiler's own answer. What
/// they cost is measured in bench/, never asserted here.
#[test]
fn warm_scans_give_the_same_closure() {
    let dir = TestDir::new("scan-warm");
    files(&dir, &[("x.c", "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\nint main(void) { return 0; }\n")]);
    age(&dir.join("x.c"), 3600);
    let scanner = Scanner::new();
    let first = same_as_compiler(&scanner, &dir, "gcc -O2 -c x.c");
    for i in 0..5 {
        // A new -D each time: no closure-cache hit, only the parse cache.
        let again = scanner
            .closure(&request(dir.path(), &format!("gcc -O2 -DN{i} -c x.c")))
            .unwrap();
        assert_eq!(again, first, "-DN{i}");
    }
    for _ in 0..5 {
        let hit = scanner
            .closure(&request(dir.path(), "gcc -O2 -c x.c"))
            .unwrap();
        assert_eq!(hit, first, "a closure-cache hit");
    }
}

/// Every file `cc -M` lists (system headers too), as realpaths.
fn all_compiler_deps(dir: &Path, line: &str) -> BTreeSet<PathBuf> {
    let mut args = argv(line);
    let cc = args.remove(0);
    args.retain(|a| a != "-c");
    let out = std::process::Command::new(&cc)
        .args(&args)
        .arg("-M")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cc} -M {line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    make_words(&out.stdout)
        .iter()
        .map(|d| std::fs::canonicalize(dir.join(d)).unwrap())
        .collect()
}

/// The scanner reads exactly the files the compiler reads, its own
/// headers too, for libc and the C++ library in several standards.
#[test]
fn system_headers_are_followed_exactly() {
    let dir = TestDir::new("scan-system");
    let c = "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>\n\
             #include <pthread.h>\n#include <signal.h>\n#include <stdint.h>\n#include <stdatomic.h>\n\
             #include <sys/stat.h>\n#include <fcntl.h>\n#include <unistd.h>\n#include <limits.h>\n\
             #include <wchar.h>\n#include <x86intrin.h>\n";
    let cxx = "#include <vector>\n#include <string>\n#include <iostream>\n#include <map>\n#include <memory>\n\
               #include <algorithm>\n#include <atomic>\n#include <thread>\n#include <chrono>\n#include <regex>\n\
               #include <functional>\n#include <cstdio>\n#include <unordered_map>\n#include <variant>\n";
    let cross = "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <math.h>\n#include <pthread.h>\n";
    files(&dir, &[("x.c", c), ("y.cc", cxx), ("z.c", cross)]);
    let scanner = Scanner::new();
    for line in [
        "gcc -c x.c",
        "gcc -O2 -std=c89 -c x.c",
        "gcc -std=gnu2x -D_GNU_SOURCE -c x.c",
        "gcc -std=c11 -D_FILE_OFFSET_BITS=64 -D_FORTIFY_SOURCE=2 -O2 -c x.c",
        "clang -c x.c",
        "clang -O2 -D_GNU_SOURCE -c x.c",
        "g++ -c y.cc",
        "g++ -std=c++11 -O2 -c y.cc",
        "g++ -std=c++20 -c y.cc",
        "clang++ -std=c++17 -c y.cc",
        "powerpc-linux-gnu-gcc -O2 -c z.c",
        "arm-linux-gnueabihf-gcc -c z.c",
        "clang --target=powerpc-linux-gnu -c z.c",
    ] {
        let req = request(dir.path(), line);
        let read: BTreeSet<PathBuf> = scanner
            .files_read(&req)
            .unwrap_or_else(|e| panic!("{line}: not covered: {e}"))
            .into_iter()
            .collect();
        let expected = all_compiler_deps(dir.path(), line);
        let missing: Vec<_> = expected.difference(&read).collect();
        let extra: Vec<_> = read.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{line}: missing {missing:?}, extra {extra:?}"
        );
    }
}

/// One scanner serves several threads at once, each getting its own answer.
#[test]
fn threads_share_one_scanner() {
    fn shared<T: Send + Sync>(_: &T) {}
    let dir = TestDir::new("scan-threads");
    files(
        &dir,
        &[
            ("x.c", "#include <stdio.h>\n#if N % 2\n#include \"odd.h\"\n#else\n#include \"even.h\"\n#endif\n"),
            ("odd.h", ""),
            ("even.h", ""),
        ],
    );
    let scanner = Scanner::new();
    shared(&scanner);
    let real = std::fs::canonicalize(dir.path()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (scanner, dir, real) = (&scanner, &dir, &real);
            s.spawn(move || {
                for n in 0..5 {
                    let line = format!("gcc -DN={} -c x.c", t * 5 + n);
                    let c = scanner.closure(&request(dir.path(), &line)).unwrap();
                    let want = if (t * 5 + n) % 2 == 1 {
                        "odd.h"
                    } else {
                        "even.h"
                    };
                    assert_eq!(
                        scanned(&c),
                        [real.join("x.c"), real.join(want)].into_iter().collect(),
                        "{line}"
                    );
                }
            });
        }
    });
}

/// A search dir that did not exist (so the compiler dropped it) and is made
/// by the build later: the next scan searches it.
#[test]
fn a_search_dir_made_between_two_scans_is_searched() {
    let dir = TestDir::new("scan-newdir");
    files(&dir, &[("x.c", "#include <y.h>\n"), ("inc/y.h", "")]);
    let scanner = Scanner::new();
    let line = "gcc -Igenerated -Iinc -c x.c";
    same_as_compiler(&scanner, &dir, line);
    files(&dir, &[("generated/y.h", "")]);
    let c = same_as_compiler(&scanner, &dir, line);
    let real = std::fs::canonicalize(dir.path()).unwrap();
    assert!(scanned(&c).contains(&real.join("generated/y.h")));
}

/// Sets a file's mtime to `secs` seconds ago (old enough for the parse cache).
fn age(path: &Path, secs: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// A cached parse is reused only while the file's stat is the same: an
/// edit (new size or mtime) or a file renamed over it (new inode, same
/// size and mtime) is read again.
#[test]
fn a_changed_header_is_parsed_again() {
    let dir = TestDir::new("scan-edit");
    files(
        &dir,
        &[
            ("x.c", "#include \"h.h\"\n"),
            ("h.h", "#include \"a.h\"\n"),
            ("a.h", ""),
            ("bb.h", ""),
            ("cc.h", ""),
        ],
    );
    age(&dir.join("h.h"), 3600);
    let scanner = Scanner::new();
    let line = "gcc -c x.c";
    same_as_compiler(&scanner, &dir, line);
    files(&dir, &[("h.h", "#include \"bb.h\"\n")]);
    age(&dir.join("h.h"), 3000);
    same_as_compiler(&scanner, &dir, line);
    // Same size and mtime, another inode.
    files(&dir, &[("new.h", "#include \"cc.h\"\n")]);
    let mtime = std::fs::metadata(dir.join("h.h"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(dir.join("new.h"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(dir.join("new.h"), dir.join("h.h")).unwrap();
    same_as_compiler(&scanner, &dir, line);
}

/// gcc's `#pragma once` also skips another file of the same contents, size
/// and mtime; clang's skips only the same file.
#[test]
fn pragma_once_copies_as_each_compiler_sees_them() {
    let dir = TestDir::new("scan-once-copies");
    let once = "#pragma once\n#include \"n.h\"\n";
    files(
        &dir,
        &[
            ("x.c", "#include \"a/o.h\"\n#include \"b/o.h\"\n"),
            ("a/o.h", once),
            ("b/o.h", once),
            ("a/n.h", ""),
            ("b/n.h", ""),
        ],
    );
    for copy in ["a/o.h", "b/o.h"] {
        age(&dir.join(copy), 3600);
        let m = std::fs::metadata(dir.join("a/o.h"))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(dir.join(copy))
            .unwrap()
            .set_modified(m)
            .unwrap();
    }
    let scanner = Scanner::new();
    let gcc = same_as_compiler(&scanner, &dir, "gcc -c x.c");
    let clang = same_as_compiler(&scanner, &dir, "clang -c x.c");
    assert_eq!((gcc.files.len(), clang.files.len()), (3, 5));
}

/// The standard's rescanning examples (C11 6.10.3.5, 6.10.3.3), used as
/// file names: hide sets, nested calls, `#`, `##` and spacing must all
/// give exactly the compiler's spelling, or the file is not found.
#[test]
fn rescanning_examples_name_files_as_the_compiler_does() {
    let dir = TestDir::new("scan-rescan");
    let src = "#define str(s) # s\n#define xstr(s) str(s)\n#define x 3\n#define f(a) f(x * (a))\n#undef x\n\
               #define x 2\n#define g f\n#define z z[0]\n#define t(a) a\n\
               #include xstr(f(y+1) + f(f(z)) % t(t(g)(0) + t)(1))\n\
               #define ff(a) a*gg\n#define gg(a) ff(a)\n#include xstr(ff(2)(9))\n\
               #define hash_hash # ## #\n#define mkstr(a) # a\n#define in_between(a) mkstr(a)\n\
               #define join(c, d) in_between(c hash_hash d)\n#include join(x, y)\n\
               #define paste(a, b) a ## b\n#include xstr(paste(x, 1)paste(, .h)paste(,))\n";
    files(
        &dir,
        &[
            ("x.c", src),
            // clang's spelling, and gcc's (which in a directive gives an
            // expansion no space before its first token).
            (
                "f(2 * (y+1)) + f(2 * (f(2 * (z[0])))) % f(2 * (0)) + t(1)",
                "",
            ),
            (
                "f(2 * (y+1)) +f(2 * (f(2 * (z[0])))) %f(2 * (0)) + t(1)",
                "",
            ),
            ("2*9*gg", ""),
            ("2 ## y", ""),
            ("2## y", ""),
            ("x1.h", ""),
            ("x1 .h", ""),
        ],
    );
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        let c = same_as_compiler(&scanner, &dir, &format!("{cc} -c x.c"));
        assert_eq!(c.files.len(), 5, "{cc}");
    }
}

/// `#if` arithmetic as the compilers compute it: intmax/uintmax, the usual
/// conversions, shifts, character constants, short-circuits.
#[test]
fn if_arithmetic_as_the_compiler_computes_it() {
    let dir = TestDir::new("scan-arith");
    let exprs = [
        "-1 < 0u",
        "(0u - 1) == 18446744073709551615u",
        "(1 << 63) < 0",
        "-1 >> 1 == -1",
        "'ab' == 24930",
        "'\\377' < 0",
        "L'\\xffffffff' < 0",
        "u'x' == 120 && U'\\x7f' == 127",
        "0x7fffffffffffffff + 0 > 0",
        "18446744073709551615 == -1",
        "2 || 1 / 0",
        "0 && 1 / 0",
        "1 ? 2 : (1 / 0)",
        "10 % 3 == 1 && -7 / 2 == -3 && -7 % 2 == -1",
        "~0u == 0xffffffffffffffff",
        "0b101 == 5 && 017 == 15",
        "__INCLUDE_LEVEL__ == 0 && __LINE__ > 30",
        "(-1 > 0u ? 1 : 0) == 1",
        "1 << -1 == 0 && 4 >> -1 == 8",
        "4 >> -1 == 0 && -4 >> -1 == -1",
        "(0 ? 1u : -1) > 0",
        "'\\n' == 10 && '\\x41' == 65 && '\\101' == 65",
        "!defined NOPE && defined(__STDC__)",
        "-9223372036854775807 - 1 < 0",
    ];
    let mut src = String::new();
    let mut list = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        src.push_str(&format!("#if {e}\n#include \"t{i}.h\"\n#endif\n"));
        list.push((format!("t{i}.h"), String::new()));
    }
    let mut all: Vec<(&str, &str)> = list.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    all.push(("x.c", &src));
    files(&dir, &all);
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        same_as_compiler(&scanner, &dir, &format!("{cc} -w -c x.c"));
    }
}

/// C++: alternative operator spellings and `true` in `#if`, raw strings and
/// digit separators in the text, `__has_cpp_attribute` values.
#[test]
fn cplusplus_lexing_and_conditions() {
    let dir = TestDir::new("scan-cxx");
    let src = "#if __cplusplus >= 201703L and not defined(NOPE) and (1 bitor 2) == 3\n#include \"cxx17.h\"\n#endif\n\
               auto s = R\"x(\n#include \"never.h\"\n)x\";\nint n = 1'000; /*\n#include \"never2.h\"\n*/\n\
               #if __has_cpp_attribute(nodiscard) >= 201603 && __has_cpp_attribute(nodiscard) < 300000\n\
               #include \"nodiscard.h\"\n#endif\n#if true && !false\n#include \"bool.h\"\n#endif\n";
    files(
        &dir,
        &[
            ("y.cc", src),
            ("cxx17.h", ""),
            ("nodiscard.h", ""),
            ("bool.h", ""),
        ],
    );
    let scanner = Scanner::new();
    for cc in [
        "g++ -std=c++17",
        "clang++ -std=c++17",
        "g++ -std=c++14",
        "clang++ -std=c++20",
    ] {
        same_as_compiler(&scanner, &dir, &format!("{cc} -w -c y.cc"));
    }
}

/// The compiler's `__has_*` answers are asked for a whole file at once;
/// an operand the compiler rejects, in a group never taken, costs nothing
/// but that batch.
#[test]
fn has_operands_asked_together_tolerate_a_bad_one() {
    let dir = TestDir::new("scan-has-batch");
    let src = "#if __has_builtin(__builtin_expect) && __has_attribute(noreturn)\n#include \"a.h\"\n#endif\n\
               #if 0\n#if __has_attribute(1 2 3)\n#include \"never.h\"\n#endif\n#endif\n\
               #if __has_attribute(__no_such_attribute__)\n#include \"never.h\"\n#endif\n";
    files(&dir, &[("x.c", src), ("a.h", "")]);
    let scanner = Scanner::new();
    for cc in ["gcc", "clang"] {
        let c = same_as_compiler(&scanner, &dir, &format!("{cc} -c x.c"));
        assert_eq!(c.files.len(), 2, "{cc}");
    }
}

/// The `__has_*` values one build needs cost one compiler run, however
/// many scans miss them at once and however they are spelt: glibc asks
/// through `__glibc_has_attribute (attr)`, one operand per `#if`, and a
/// run per operand made the include server's first jobs slow.
#[test]
fn has_values_of_a_cold_build_cost_one_compiler_run() {
    let dir = TestDir::new("scan-has-once");
    let log = dir.join("runs.log");
    let gcc = dir.join("bin/gcc");
    files(&dir, &[("bin/gcc", "")]);
    std::fs::write(
        &gcc,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec /usr/bin/gcc \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&gcc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let header = "#define my_has_attr(a) __has_attribute (a)\n\
                  #if my_has_attr(noreturn)\n#include \"a.h\"\n#endif\n\
                  #if my_has_attr(__cold__) && my_has_attr(__hot__)\n#include \"b.h\"\n#endif\n\
                  #if __has_builtin(__builtin_expect)\n#include \"c.h\"\n#endif\n";
    let mut list = vec![("wrap.h", header), ("a.h", ""), ("b.h", ""), ("c.h", "")];
    let sources: Vec<(String, String)> = (0..4)
        .map(|t| {
            (
                format!("x{t}.c"),
                format!("#include \"wrap.h\"\nint x{t};\n"),
            )
        })
        .collect();
    list.extend(sources.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    files(&dir, &list);
    let scanner = Scanner::new();
    std::thread::scope(|s| {
        for (name, _) in &sources {
            let (scanner, dir, gcc) = (&scanner, &dir, &gcc);
            s.spawn(move || {
                let line = format!("{} -c {name}", gcc.display());
                let c = scanner.closure(&request(dir.path(), &line)).unwrap();
                assert_eq!(c.files.len(), 5, "{line}: {:?}", scanned(&c));
            });
        }
    });
    let runs = std::fs::read_to_string(&log).unwrap();
    let has_runs = runs.lines().filter(|l| l.contains("-E -P")).count();
    assert_eq!(has_runs, 1, "the compiler runs:\n{runs}");
}

/// Scans with the shared scanner and checks the closure against `cc -M`
/// and against a scanner of its own (no checkpoint of other sources).
fn same_as_alone(scanner: &Scanner, dir: &TestDir, line: &str) -> Closure {
    let shared = same_as_compiler(scanner, dir, line);
    let alone = Scanner::new()
        .closure(&request(dir.path(), line))
        .unwrap_or_else(|e| panic!("{line}: not covered alone: {e}"));
    assert_eq!(shared, alone, "{line}: with checkpoints and alone");
    shared
}

/// Writes the files and makes them old enough for the caches.
fn old_files(dir: &TestDir, list: &[(&str, &str)]) {
    files(dir, list);
    for (name, _) in list {
        age(&dir.join(name), 3600);
    }
}

/// Sources that start with the same includes go on from a checkpoint of
/// the first ones, and find what a scan of their own finds: with a `-D`
/// a header asks about before the checkpoint (its value is checked) and
/// one each file has its own (as the kernel's KBUILD_MODNAME), asked only
/// after it.
#[test]
fn sources_sharing_their_first_includes_go_on_from_a_checkpoint() {
    let dir = TestDir::new("scan-checkpoint");
    let mode_h = "#if MODE == 1\n#include \"one.h\"\n#else\n#include \"two.h\"\n#endif\n";
    let mut list = vec![
        (
            "include/common.h",
            "#include <stdlib.h>\n#include \"mode.h\"\n",
        ),
        ("include/mode.h", mode_h),
        ("include/one.h", "#define ONE 1\n"),
        ("include/two.h", "#define TWO 2\n"),
        ("include/tail1.h", ""),
        ("include/tail2.h", ""),
    ];
    // IDX is asked after the checkpoints: each source's own value counts.
    let text = "#include <stdio.h>\n#include <string.h>\n#include \"common.h\"\n\
                #ifdef ONE\n#include \"tail1.h\"\n#endif\n\
                #if IDX % 3 == 0\n#include \"tail2.h\"\n#endif\nint f;\n";
    let sources: Vec<(String, String)> = (0..8).map(|k| (format!("s{k}.c"), text.into())).collect();
    list.extend(sources.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    old_files(&dir, &list);
    let scanner = Scanner::new();
    for (k, (name, _)) in sources.iter().enumerate() {
        let mode = 1 + k % 2;
        let line = format!("gcc -O2 -Iinclude -DMODE={mode} -DIDX={k} -c {name}");
        let c = same_as_alone(&scanner, &dir, &line);
        let has = |h: &str| scanned(&c).contains(&std::fs::canonicalize(dir.join(h)).unwrap());
        assert_eq!(has("include/one.h"), mode == 1, "{line}");
        assert_eq!(has("include/tail2.h"), k % 3 == 0, "{line}");
    }
    // Sources 0 and 1 walk everything; 2 and 3 keep the checkpoints (on
    // their second sight); each later one goes on from one.
    assert!(
        scanner.resumed() >= 4,
        "{} scans resumed",
        scanner.resumed()
    );
}

/// A checkpoint holds only while what it looked up stats the same: a
/// header edited, or one made where a search found nothing, after the
/// checkpoint was kept is seen by the next source that shares it.
#[test]
fn a_checkpoint_sees_headers_changed_and_made_since() {
    let dir = TestDir::new("scan-checkpoint-change");
    let head = "#include <stdio.h>\n#include \"a.h\"\n#include <b.h>\n";
    let list: Vec<(String, String)> = (0..6)
        .map(|k| (format!("s{k}.c"), format!("{head}int f{k};\n")))
        .collect();
    let mut all: Vec<(&str, &str)> = list.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    all.extend([
        ("a.h", "#include \"x.h\"\n"),
        ("x.h", ""),
        ("y.h", ""),
        ("late/b.h", ""),
    ]);
    old_files(&dir, &all);
    std::fs::create_dir(dir.join("early")).unwrap();
    let scanner = Scanner::new();
    let line = |k: usize| format!("gcc -Iearly -Ilate -c s{k}.c");
    for k in 0..3 {
        same_as_alone(&scanner, &dir, &line(k));
    }
    let resumed = scanner.resumed();
    assert!(resumed >= 1, "no scan resumed");
    old_files(&dir, &[("a.h", "#include \"y.h\"\n\n")]);
    let c = same_as_alone(&scanner, &dir, &line(3));
    let real = std::fs::canonicalize(dir.path()).unwrap();
    assert!(scanned(&c).contains(&real.join("y.h")));
    old_files(&dir, &[("early/b.h", "")]);
    let c = same_as_alone(&scanner, &dir, &line(4));
    assert!(scanned(&c).contains(&real.join("early/b.h")));
    same_as_alone(&scanner, &dir, &line(5));
}

/// What depends on the main file itself is never taken from another's
/// checkpoint: its own directory's headers for `"..."`, and `__LINE__`,
/// `__FILE__` and `__BASE_FILE__` in it.
#[test]
fn a_checkpoint_never_carries_what_depends_on_the_main_file() {
    let dir = TestDir::new("scan-checkpoint-main");
    let head = "#include <stdio.h>\n#include \"local.h\"\n#include \"next.h\"\n";
    let line_test =
        "#include <stdio.h>\n#if __LINE__ > 3\n#include \"late.h\"\n#endif\n#include \"next.h\"\n";
    let file_test = "#include <stdio.h>\n#ifndef AGAIN\n#define AGAIN\n#include __FILE__\n#endif\n#include \"next.h\"\n";
    let mut list: Vec<(String, String)> = Vec::new();
    for sub in ["one", "two", "three"] {
        list.push((format!("{sub}/local.h"), format!("#include \"{sub}.h\"\n")));
        list.push((format!("{sub}/{sub}.h"), String::new()));
        list.push((format!("{sub}/x.c"), head.to_string()));
        list.push((format!("{sub}/y.c"), head.to_string()));
    }
    for k in 0..4 {
        let pad = "\n".repeat(k);
        list.push((format!("l{k}.c"), format!("{pad}{line_test}")));
        list.push((format!("f{k}.c"), file_test.to_string()));
    }
    let mut all: Vec<(&str, &str)> = list.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    all.extend([("inc/next.h", ""), ("late.h", "")]);
    old_files(&dir, &all);
    let scanner = Scanner::new();
    for sub in ["one", "two", "three", "one", "two", "three"] {
        for f in ["x.c", "y.c"] {
            same_as_alone(&scanner, &dir, &format!("gcc -Iinc -c {sub}/{f}"));
        }
    }
    for k in [0, 3, 1, 2, 0, 3] {
        same_as_alone(&scanner, &dir, &format!("gcc -Iinc -c l{k}.c"));
        same_as_alone(&scanner, &dir, &format!("gcc -Iinc -c f{k}.c"));
    }
}
