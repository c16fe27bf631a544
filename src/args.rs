//! Compiler command-line scanning: distcc 3.4's `dcc_scan_args`, which both the
//! daemon and the client run to decide whether a job may be distributed.
//!
//! Arguments are raw bytes end to end; nothing is converted lossily.

/// Where the output name sits in the argument list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `-o FILE`: the index of FILE.
    Separate(usize),
    /// `-oFILE`: the index of the whole argument.
    Joined(usize),
    /// A bare `FILE.o` word.
    Word(usize),
}

/// A command that is a single compile of one source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compile {
    /// Index of the source file argument.
    pub input: usize,
    /// The output, if the command names one.
    pub output: Option<Output>,
    /// `-S`: the output is assembler, not an object.
    pub assemble_only: bool,
}

impl Compile {
    /// The output file name the compiler would use, from the command or by
    /// the default rule (the input's basename with `.o`, or `.s` for `-S`).
    pub fn output_name(&self, argv: &[Vec<u8>]) -> Option<Vec<u8>> {
        match self.output {
            Some(Output::Separate(i)) | Some(Output::Word(i)) => Some(argv[i].clone()),
            Some(Output::Joined(i)) => Some(argv[i][2..].to_vec()),
            None => default_output(&argv[self.input], self.assemble_only),
        }
    }
}

/// Why a command must run locally rather than be distributed.
pub type Local = &'static str;

fn has_prefix(arg: &[u8], prefix: &str) -> bool {
    arg.starts_with(prefix.as_bytes())
}

/// The extension of a file name: the text from the last `.` of its basename.
pub fn extension(name: &[u8]) -> Option<&[u8]> {
    let base = basename(name);
    let dot = base.iter().rposition(|&c| c == b'.')?;
    let ext = &base[dot..];
    (ext.len() > 1).then_some(ext)
}

/// The part of a path after its last `/`.
pub fn basename(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&c| c == b'/') {
        Some(slash) => &name[slash + 1..],
        None => name,
    }
}

/// True for the source extensions distcc distributes (`dcc_is_source`).
pub fn is_source(name: &[u8]) -> bool {
    preprocessed_extension(name).is_some_and(|ext| ext != b".s")
}

/// The extension of the preprocessed form of a source (`dcc_preproc_exten`).
pub fn preprocessed_extension(name: &[u8]) -> Option<&'static [u8]> {
    preprocessed_extension_str(name).map(str::as_bytes)
}

/// [`preprocessed_extension`] as text: the table of section 5.4, in one place
/// for the daemon and the client.
pub fn preprocessed_extension_str(name: &[u8]) -> Option<&'static str> {
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

/// distcc 3.4's scan: `Ok` for a distributable compile, `Err` with the reason
/// it must run locally. `argv[0]` is the compiler and is not scanned.
pub fn scan(argv: &[Vec<u8>]) -> Result<Compile, Local> {
    let mut input = None;
    let mut output = None;
    let mut seen_c = false;
    let mut seen_s = false;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_slice();
        if a.first() == Some(&b'-') {
            match a {
                b"-E" => return Err("-E must run locally"),
                b"-MD" | b"-MMD" | b"-MG" | b"-MP" => {}
                b"-MF" | b"-MT" | b"-MQ" => i += 1,
                _ if has_prefix(a, "-MF") || has_prefix(a, "-MT") || has_prefix(a, "-MQ") => {}
                _ if has_prefix(a, "-M") => return Err("-M options must run locally"),
                b"-march=native" | b"-mtune=native" => {
                    return Err("-march=native must run locally")
                }
                b"-flto" => return Err("-flto must run locally"),
                _ if has_prefix(a, "-Wa,") && (contains(a, b",-a") || contains(a, b"--MD")) => {
                    return Err("assembler listing must run locally")
                }
                _ if has_prefix(a, "-specs=") => return Err("-specs= must run locally"),
                b"-S" => seen_s = true,
                b"-fprofile-arcs"
                | b"-ftest-coverage"
                | b"--coverage"
                | b"-fprofile-correction" => return Err("profiling must run locally"),
                _ if has_prefix(a, "-fprofile-generate")
                    || has_prefix(a, "-fprofile-use")
                    || has_prefix(a, "-fauto-profile") =>
                {
                    return Err("profiling must run locally")
                }
                b"-frepo" => return Err("-frepo must run locally"),
                _ if has_prefix(a, "-x") => {
                    if let Some(next) = argv.get(i + 1) {
                        if !(has_prefix(next, "c")
                            || has_prefix(next, "objective-c")
                            || has_prefix(next, "go"))
                        {
                            return Err("language from -x must run locally");
                        }
                    }
                }
                _ if has_prefix(a, "-dr") => return Err("-dr must run locally"),
                b"-c" => seen_c = true,
                b"-o" => {
                    i += 1;
                    if i >= argv.len() {
                        return Err("-o without a file name");
                    }
                    if output.is_some() {
                        return Err("several outputs: called for link?");
                    }
                    output = Some(Output::Separate(i));
                }
                _ if has_prefix(a, "-o") => {
                    if output.is_some() {
                        return Err("several outputs: called for link?");
                    }
                    output = Some(Output::Joined(i));
                }
                _ => {}
            }
        } else if is_source(a) {
            if input.is_some() {
                return Err("several source files");
            }
            input = Some(i);
        } else if a.ends_with(b".o") {
            if output.is_some() {
                return Err("several outputs: called for link?");
            }
            output = Some(Output::Word(i));
        }
        i += 1;
    }
    if !seen_c && !seen_s {
        return Err("not a compile (-c or -S)");
    }
    let input = input.ok_or("no source file")?;
    let name = basename(&argv[input]);
    if name.starts_with(b"conftest.") || name.starts_with(b"tmp.conftest.") {
        return Err("autoconf test");
    }
    let job = Compile {
        input,
        output,
        assemble_only: seen_s,
    };
    match job.output_name(argv) {
        None => Err("cannot derive an output name"),
        Some(name) if name == b"-" => Err("output to stdout"),
        Some(_) => Ok(job),
    }
}

/// Splits a command line at spaces, for tests that read like a man page.
#[cfg(test)]
pub(crate) fn argv_of(line: &str) -> Vec<Vec<u8>> {
    line.split_whitespace()
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::argv_of as argv;

    fn distributed(line: &str) -> bool {
        scan(&argv(line)).is_ok()
    }

    #[test]
    fn section_5_2_table() {
        // command                                   distributed?
        let cases: &[(&str, bool)] = &[
            ("gcc -c x.c -o x.o", true),
            ("gcc -c x.c", true),
            ("gcc -S x.c", true),
            ("gcc -E x.c", false),
            ("gcc -c x.c -MD -MF x.d -MT x.o -MQ y", true),
            ("gcc -c x.c -MFx.d -MTx.o", true),
            ("gcc -c x.c -M", false),
            ("gcc -c x.c -MM", false),
            ("gcc -c x.c -march=native", false),
            ("gcc -c x.c -mtune=native", false),
            ("gcc -c x.c -flto", false),
            ("gcc -c x.c -flto=auto", true),
            ("gcc -c x.c -Wa,-alh=x.lst", false),
            ("gcc -c x.c -Wa,--MD,x.d", false),
            ("gcc -c x.c -specs=foo", false),
            ("gcc -c x.c -fprofile-arcs", false),
            ("gcc -c x.c -ftest-coverage", false),
            ("gcc -c x.c --coverage", false),
            ("gcc -c x.c -fprofile-use=x", false),
            ("gcc -c x.c -fprofile-generate", false),
            ("gcc -c x.c -fauto-profile", false),
            ("gcc -c x.c -frepo", false),
            ("gcc -x c -c x.c", true),
            ("gcc -x c++ -c x.cc", true),
            ("gcc -x objective-c++ -c x.mm", true),
            ("gcc -x assembler -c x.c", false),
            ("gcc -x none -c x.c", false),
            ("gcc -xc -c x.c", false),
            ("gcc -c x.c -dr", false),
            ("gcc -c x.c y.c", false),
            ("gcc x.c -o x", false),
            ("gcc -c a.s", false),
            ("gcc -c a.S", false),
            ("gcc -c x.cu", false),
            ("gcc -c x.CPP", false),
            ("gcc -c conftest.c", false),
            ("gcc -c tmp.conftest.c", false),
            ("gcc -c x.c -o -", false),
            ("gcc -c x.c -o a.o -o b.o", false),
            ("gcc -c x.c -oa.o", true),
            ("gcc -c x.c a.o", true),
            ("gcc -c x.c a.o b.o", false),
            ("gcc -c", false),
            ("gcc -c x.c -o", false),
        ];
        for (line, expected) in cases {
            assert_eq!(distributed(line), *expected, "{line}");
        }
    }

    #[test]
    fn input_and_output_positions() {
        let a = argv("gcc -c x.c -o out/x.o");
        let job = scan(&a).unwrap();
        assert_eq!(job.input, 2);
        assert_eq!(job.output, Some(Output::Separate(4)));
        assert_eq!(job.output_name(&a).unwrap(), b"out/x.o");
        let a = argv("gcc -c sub/foo.cpp");
        let job = scan(&a).unwrap();
        assert_eq!(job.output, None);
        assert_eq!(job.output_name(&a).unwrap(), b"foo.o");
        let a = argv("gcc -S sub/foo.c");
        assert_eq!(scan(&a).unwrap().output_name(&a).unwrap(), b"foo.s");
        let a = argv("gcc -c x.c -ox.o");
        assert_eq!(scan(&a).unwrap().output_name(&a).unwrap(), b"x.o");
    }

    #[test]
    fn short_input_name_without_output_is_local() {
        assert!(!distributed("gcc -c .c"));
    }

    #[test]
    fn extensions() {
        assert_eq!(preprocessed_extension(b"a.c"), Some(&b".i"[..]));
        assert_eq!(preprocessed_extension(b"a.C"), Some(&b".ii"[..]));
        assert_eq!(preprocessed_extension(b"a.c++"), Some(&b".ii"[..]));
        assert_eq!(preprocessed_extension(b"a.M"), Some(&b".mii"[..]));
        assert_eq!(preprocessed_extension(b"a.S"), Some(&b".s"[..]));
        assert_eq!(preprocessed_extension(b"dir.d/a"), None);
        assert_eq!(preprocessed_extension(b"a."), None);
        assert!(!is_source(b"a.s"));
        assert!(is_source(b"a.ii"));
    }
}
