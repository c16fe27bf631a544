//! The client's argument scanner: reads the shared option table to decide local or remote, the output name and what the server is sent.
//!
//! The order is distcc's: [`expand_response_files`] (`@file`), then
//! [`expand_preprocessor_options`] (`-Wp,`), then [`scan`], which says whether
//! a command is a job for a server ([`Decision::Remote`]) or runs here
//! ([`Decision::Local`]). [`remote_argv`] is what a v1/v2 server is sent,
//! [`cpp_argv`] is the local preprocessor command and [`format_options`]
//! are the object check's options.
//!
//! Every option the scanner knows is one row of [`crate::options::OPTIONS`],
//! the table the daemon reads too: how it takes its value, what it means for
//! the decision, whether it is stripped for the server and whether a daemon
//! refuses it. The command is read into tokens once ([`Job::tokens`]); every
//! step here walks them. Because the table knows which options take a
//! separate value, the value of `-include`, `-MF`, `-o`, `-I` and the rest
//! is never mistaken for an input or an output. Arguments stay bytes
//! (`OsString`) from start to end.
//!
//! Deliberate differences from distcc 3.4 (each has a test below):
//!
//! * Values of options are never inputs: `-include foo.c -c x.c` is one
//!   source, distributed (3.4: "several source files", local).
//! * `-x LANG` is checked on LANG itself, in both the joined and separate
//!   forms: `-xc -c x.c` is distributed (3.4 tests the next argument). The
//!   languages distributed are those a daemon can compile preprocessed: C,
//!   C++, Objective-C and Objective-C++ and their `cpp-output` forms. The
//!   `-header` languages (a precompiled header needs the macros that
//!   preprocessing removes), `go` and `none` stay local.
//! * A bare `*.o` word in a compile is local: gcc takes it for an unused
//!   linker input and writes its default output, while 3.4 took it for the
//!   output name.
//! * Source from standard input (`-`), an `@file` that could not be read
//!   (anywhere, also as an option's value), an option missing its value,
//!   `-mcpu=native`, and every `-fprofile…` option are local.
//! * Every option a distcc-rs daemon refuses and that is not stripped keeps
//!   the command local, for the daemon's reason: options that load code or
//!   run programs (`-fplugin…`, `-fpass-plugin…`, `-Xclang`, `-specs…`/
//!   `--specs`, `-B`, `--prefix`, `-wrapper`), read files on the server
//!   (`-include-pch`, `-mllvm`, `-fdirectives-only`, `-fNAME=/path`,
//!   `-Wa,-I…`, `-Wa,@…`), or write files there (`-aux-info`, `-dumpdir`,
//!   `-dumpbase`, `-Wa,-o…`, profiling and coverage). A job this client
//!   distributes is never refused by its own daemon.
//! * Stripping (5.5) also removes `-Xpreprocessor X` (as post-3.4 distcc
//!   does), `--include`, `--imacros` and gcc's other `--include-…` long
//!   forms with their values, `-stdlib++-isystem DIR` with its value, and
//!   the joined forms `-includeF`, `-imacrosF`,
//!   `-idirafterD`, `-iprefixP`, `-iwithprefixD`, `-iwithprefixbeforeD`:
//!   all preprocessor-only, so the server compile of the preprocessed source
//!   is unchanged.
//! * `-Wp,` options that hold a `-M…` option (`-Wp,-MD,FILE`, the Linux
//!   kernel's `-Wp,-MMD,dir/.x.o.d`) are not expanded: gcc's driver adds
//!   `-MQ OUTPUT` for its own `-MD` but not for cc1's, so 3.4's expansion to
//!   `-MD -MF FILE` changes the target written in the `.d` file.
//! * [`cpp_argv`] gives the preprocessor the `-MF` and `-MQ` that the
//!   compiler driver would have derived from `-o`, so the `.d` file written
//!   by the local preprocessor is byte-identical to a plain local compile's
//!   (3.4 removes `-o` and so writes `a.o` instead of `obj/a.o`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::filename;
use crate::options::{self, Compile, Output, Role, Token, Tokens, Value};

/// A command that runs here rather than on a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// Why, for the log.
    pub reason: String,
    /// `-E`: the command is a preprocessing run and takes a preprocessing
    /// slot (`EXIT_LOCAL_CPP` in 3.4) rather than a compile slot.
    pub cpp_slot: bool,
}

/// A single compile of one source file that a server can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The full command, compiler first, with `-o OUTPUT` appended when the
    /// command named no output. Local runs of the job use it too (as in 3.4;
    /// for `-S -MD` without `-o` that makes a local run's `.d` target `x.s`
    /// where plain gcc writes `x.o`; [`cpp_argv`] is not affected).
    pub argv: Vec<OsString>,
    /// `argv` read by the option table, once.
    pub tokens: Tokens,
    /// Index of the source file in `argv`.
    pub input_index: usize,
    /// The source file, as the command names it.
    pub input: PathBuf,
    /// Where the object (or assembler, for `-S`) is written.
    pub output: PathBuf,
    /// `-o OUTPUT` was appended by the scanner rather than given.
    pub output_added: bool,
    /// The input is already preprocessed (`.i`, `.ii`, `.mi`, `.mii`) and is
    /// sent as it is.
    pub preprocessed: bool,
    /// The extension of the preprocessed input (`.i`, `.ii`, `.mi`, `.mii`).
    pub preprocessed_ext: &'static str,
    /// `-S`: the output is assembler.
    pub assemble_only: bool,
}

/// The scanner's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Remote(Job),
    Local(Local),
}

fn local(reason: impl Into<String>) -> Decision {
    Decision::Local(run_here(reason))
}

fn run_here(reason: impl Into<String>) -> Local {
    Local {
        reason: reason.into(),
        cpp_slot: false,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Options inside `-Wp,` that are fine: dependency output. Any other `-M…`
/// makes the preprocessor print dependencies instead of preprocessing.
fn preprocessor_option_is_local(part: &[u8]) -> bool {
    part.starts_with(b"-M")
        && !matches!(
            part,
            b"-MD" | b"-MMD" | b"-MG" | b"-MP" | b"-MF" | b"-MT" | b"-MQ"
        )
        && !(part.starts_with(b"-MF") || part.starts_with(b"-MT") || part.starts_with(b"-MQ"))
}

/// Decides whether `argv` (compiler first; after [`expand_response_files`] and
/// [`expand_preprocessor_options`]) is a job for a server, following
/// sections 5.2 and 5.3 with the differences listed in the module doc: look
/// in the command (read into `tokens` once, by the caller) for a reason to
/// run it here, read the job's shape as a daemon does, then name its output.
pub fn scan(argv: &[OsString], tokens: &Tokens) -> Decision {
    if let Some(here) = first_local(argv, tokens) {
        return Decision::Local(here);
    }
    match options::compile_shape(argv, tokens) {
        Ok(shape) => job(argv.to_vec(), tokens.clone(), shape),
        Err(why) => local(why),
    }
}

/// The first reason to run `argv` here rather than on a server, if any.
fn first_local(argv: &[OsString], tokens: &Tokens) -> Option<Local> {
    if argv.iter().skip(1).any(|a| a.as_bytes().starts_with(b"@")) {
        return Some(run_here("a response file that could not be read"));
    }
    tokens.iter().find_map(|token| token_is_local(argv, token))
}

/// Why one token keeps the command here: a word for standard input, an
/// option missing its value, a row's own reason, or what a daemon would
/// refuse in what the server is sent.
fn token_is_local(argv: &[OsString], token: Token) -> Option<Local> {
    let (at, o, v) = match token {
        Token::Word(i) if argv[i] == "-" => {
            return Some(run_here("the source is read from standard input"))
        }
        Token::Word(_) | Token::Unknown(_) => return None,
        Token::Known(_, _, Value::Missing) => {
            return Some(run_here("an option is missing its value"))
        }
        Token::Known(at, o, v) => (at, o, v),
    };
    match o.role {
        Role::Local(reason) => Some(run_here(reason)),
        Role::Preprocess => Some(Local {
            reason: "-E: preprocessing only".into(),
            cpp_slot: true,
        }),
        Role::Preprocessor
            if options::value_of(argv, at, o, v)
                .split(|&c| c == b',')
                .any(preprocessor_option_is_local) =>
        {
            Some(run_here(options::DEPS_ONLY))
        }
        _ if o.strip => None,
        _ => options::refusal(argv, token).map(run_here),
    }
}

/// The job for a command of this shape, with its output named (5.3); or a
/// local run for an autoconf test, an object word or an output that cannot
/// be named or is standard output.
fn job(mut argv: Vec<OsString>, mut tokens: Tokens, shape: Compile) -> Decision {
    let input_name = argv[shape.input].as_bytes().to_vec();
    let base = filename::basename(&input_name);
    if base.starts_with(b"conftest.") || base.starts_with(b"tmp.conftest.") {
        return local("autoconf test");
    }
    let output = match shape.output {
        Some(Output::Separate(j)) => argv[j].as_bytes().to_vec(),
        Some(Output::Joined(at)) => argv[at].as_bytes()[2..].to_vec(),
        Some(Output::Word(_)) => {
            return local("an object file in a compile is an unused linker input")
        }
        None => match filename::default_output(&input_name, shape.assemble_only) {
            Some(o) => o,
            None => return local("cannot derive an output name"),
        },
    };
    if output == b"-" {
        return local("output to standard output");
    }
    let output_added = shape.output.is_none();
    if output_added {
        let end = argv.len();
        argv.push("-o".into());
        argv.push(OsString::from_vec(output.clone()));
        tokens.read(&argv, end);
    }
    Decision::Remote(Job {
        argv,
        tokens,
        input_index: shape.input,
        input: PathBuf::from(OsStr::from_bytes(&input_name)),
        output: PathBuf::from(OsString::from_vec(output)),
        output_added,
        preprocessed: filename::is_preprocessed(&input_name),
        preprocessed_ext: filename::preprocessed_extension(&input_name).unwrap_or(".i"),
        assemble_only: shape.assemble_only,
    })
}

/// Pushes an option token's arguments (the option and its separate value).
fn push_option(out: &mut Vec<OsString>, argv: &[OsString], at: usize, v: Value) {
    out.push(argv[at].clone());
    if let Value::Separate(j) = v {
        out.push(argv[j].clone());
    }
}

/// The command a v1/v2 server is sent (5.5): the job's argv without the
/// options marked `strip` in the table (with their separate values). The
/// input keeps its name (the server puts its own file there) and `-o OUTPUT`
/// stays.
pub fn remote_argv(job: &Job) -> Vec<OsString> {
    strip(&job.argv, &job.tokens)
}

/// `argv` (read into `tokens`) without the options marked `strip`.
fn strip(argv: &[OsString], tokens: &Tokens) -> Vec<OsString> {
    let mut out = vec![argv[0].clone()];
    for token in tokens.iter() {
        match token {
            Token::Word(i) | Token::Unknown(i) => out.push(argv[i].clone()),
            Token::Known(_, o, _) if o.strip => {}
            Token::Known(at, _, v) => push_option(&mut out, argv, at, v),
        }
    }
    out
}

/// The options of `argv` (read into `tokens`) that change the format of the
/// objects it makes (word size, byte order, ABI, target: the table's
/// [`Role::Format`] and [`Role::Target`] rows), with their values, in order:
/// the object check's cache key and probe ([`super::objformat`]). `-march`
/// and `-mcpu` are not among them (one machine, one `e_machine`), nor is
/// `-flto` (see `objformat`). Values of other options are never taken for
/// options.
pub fn format_options(argv: &[OsString], tokens: &Tokens) -> Vec<OsString> {
    let mut out = Vec::new();
    for token in tokens.iter() {
        if let Token::Known(at, o, v) = token {
            if matches!(o.role, Role::Format | Role::Target) {
                push_option(&mut out, argv, at, v);
            }
        }
    }
    out
}

/// True if the compiler is clang, whose driver turns `-Wp,-MD,FILE` into its
/// own `-MD -MF FILE` (gcc passes it to cc1 untouched).
pub fn is_clang(compiler: &OsStr) -> bool {
    contains(filename::basename(compiler.as_bytes()), b"clang")
}

/// `-Wp,-MD,FILE` or `-Wp,-MMD,FILE`: the form clang's driver rewrites.
pub fn is_wp_deps(arg: &[u8]) -> bool {
    let Some(rest) = arg.strip_prefix(b"-Wp,") else {
        return false;
    };
    let parts: Vec<&[u8]> = rest.split(|&c| c == b',').collect();
    parts.len() == 2 && matches!(parts[0], b"-MD" | b"-MMD")
}

/// The dependency file a compiler driver derives from `-o OUTPUT` for `-MD`:
/// the output with the text from the last `.` of its basename replaced by
/// `.d` (`obj/a.o` → `obj/a.d`, `obj/a` → `obj/a.d`, `obj/.x` → `obj/.d`).
pub fn deps_file_for(output: &[u8]) -> Vec<u8> {
    let base_at = output.len() - filename::basename(output).len();
    let stem_end = output[base_at..]
        .iter()
        .rposition(|&c| c == b'.')
        .map_or(output.len(), |dot| base_at + dot);
    let mut d = output[..stem_end].to_vec();
    d.extend_from_slice(b".d");
    d
}

/// The local preprocessor command (5.6): every `-o` removed, `-c` and `-S`
/// turned into `-E`; the preprocessed source goes to stdout.
///
/// Without `-o` the driver no longer knows where the compile would put its
/// object, so when the command asks for dependencies (`-MD`/`-MMD`, or for
/// clang `-Wp,-MD,FILE`) and named an output, the `-MF OUTPUT_STEM.d` and
/// `-MQ OUTPUT` that gcc and clang derive from `-o` are added (each only if
/// the command gives none of its own), so the `.d` file is byte-identical to
/// a plain local compile's.
pub fn cpp_argv(job: &Job) -> Vec<OsString> {
    let argv = &job.argv;
    let clang = is_clang(&argv[0]);
    let mut out = vec![argv[0].clone()];
    let mut driver_deps = false;
    let mut deps_file = false;
    let mut deps_target = false;
    for token in job.tokens.iter() {
        match token {
            Token::Word(i) | Token::Unknown(i) => out.push(argv[i].clone()),
            Token::Known(at, o, v) => {
                match o.role {
                    Role::Output => continue,
                    Role::Compile | Role::CompileToAssembler => {
                        out.push("-E".into());
                        continue;
                    }
                    Role::DepsDriver => driver_deps = true,
                    Role::DepsFile => deps_file = true,
                    Role::DepsTarget => deps_target = true,
                    Role::Preprocessor if clang && is_wp_deps(argv[at].as_bytes()) => {
                        driver_deps = true;
                        deps_file = true;
                    }
                    _ => {}
                }
                push_option(&mut out, argv, at, v);
            }
        }
    }
    if driver_deps && !job.output_added {
        let output = job.output.as_os_str().as_bytes();
        if !deps_file {
            out.push("-MF".into());
            out.push(OsString::from_vec(deps_file_for(output)));
        }
        if !deps_target {
            out.push("-MQ".into());
            out.push(job.output.clone().into_os_string());
        }
    }
    out
}

/// `-Wp,…` holding a `-M…` option, which [`expand_preprocessor_options`]
/// keeps whole.
pub fn wp_holds_deps(arg: &[u8]) -> bool {
    arg.strip_prefix(b"-Wp,")
        .is_some_and(|rest| rest.split(|&c| c == b',').any(|p| p.starts_with(b"-M")))
}

/// Expands `-Wp,A,B,…` into the separate arguments `A B …` (5.6), so the
/// scanner, the stripping and the local compiler all see them.
///
/// Unlike 3.4, a `-Wp,` holding any `-M…` option stays as it is: gcc's driver
/// reacts to its own `-MD`, `-MT` and `-MF` (adding `-MQ OUTPUT`, or not) but
/// not to cc1's, so moving them out of `-Wp,` changes the `.d` file.
pub fn expand_preprocessor_options(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        match arg.as_bytes().strip_prefix(b"-Wp,") {
            Some(rest) if !wp_holds_deps(arg.as_bytes()) => {
                out.extend(
                    rest.split(|&c| c == b',')
                        .map(|p| OsString::from_vec(p.to_vec())),
                );
            }
            _ => out.push(arg),
        }
    }
    out
}

/// How many response files one command may expand, as libiberty's
/// `expandargv` (which stops a file that includes itself).
const MAX_RESPONSE_FILES: usize = 2000;

/// Expands gcc's `@FILE` arguments (libiberty's `expandargv`), before
/// anything else looks at the command: FILE's words replace the argument,
/// split at whitespace, with single and double quotes and backslash escapes;
/// words from FILE may name further `@FILE`s. An `@FILE` that cannot be read
/// (missing, a directory) stays as it is, as gcc keeps it.
pub fn expand_response_files(args: Vec<OsString>) -> io::Result<Vec<OsString>> {
    let mut out = Vec::with_capacity(args.len());
    let mut pending: Vec<OsString> = args.into_iter().rev().collect();
    let mut expanded = 0;
    while let Some(arg) = pending.pop() {
        let Some(file) = arg.as_bytes().strip_prefix(b"@") else {
            out.push(arg);
            continue;
        };
        let path = PathBuf::from(OsStr::from_bytes(file));
        if path.is_dir() {
            out.push(arg);
            continue;
        }
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(_) => {
                out.push(arg);
                continue;
            }
        };
        expanded += 1;
        if expanded > MAX_RESPONSE_FILES {
            return Err(io::Error::other(format!(
                "more than {MAX_RESPONSE_FILES} response files: does {} include itself?",
                path.display()
            )));
        }
        pending.extend(split_response_file(&text).into_iter().rev());
    }
    Ok(out)
}

/// libiberty's `buildargv`: whitespace separates words; `'…'` and `"…"`
/// quote; a backslash takes the next character literally, inside quotes too.
fn split_response_file(text: &[u8]) -> Vec<OsString> {
    let mut words = Vec::new();
    let mut word: Option<Vec<u8>> = None;
    let (mut squote, mut dquote, mut escape) = (false, false, false);
    for &c in text {
        if escape {
            escape = false;
            word.get_or_insert_with(Vec::new).push(c);
        } else if c == b'\\' {
            escape = true;
            word.get_or_insert_with(Vec::new);
        } else if squote {
            if c == b'\'' {
                squote = false;
            } else {
                word.get_or_insert_with(Vec::new).push(c);
            }
        } else if dquote {
            if c == b'"' {
                dquote = false;
            } else {
                word.get_or_insert_with(Vec::new).push(c);
            }
        } else if c.is_ascii_whitespace() || c == 0x0b {
            if let Some(w) = word.take() {
                words.push(OsString::from_vec(w));
            }
        } else if c == b'\'' {
            squote = true;
            word.get_or_insert_with(Vec::new);
        } else if c == b'"' {
            dquote = true;
            word.get_or_insert_with(Vec::new);
        } else {
            word.get_or_insert_with(Vec::new).push(c);
        }
    }
    if let Some(w) = word {
        words.push(OsString::from_vec(w));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn words(v: &[OsString]) -> String {
        v.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn scan_line(line: &str) -> Decision {
        let a = argv(line);
        scan(&a, &Tokens::of(&a))
    }

    fn job(line: &str) -> Job {
        match scan_line(line) {
            Decision::Remote(job) => job,
            Decision::Local(l) => panic!("{line}: local ({})", l.reason),
        }
    }

    /// `Some("input output")` for a remote job, `None` for a local run.
    fn outcome(line: &str) -> Option<String> {
        match scan_line(line) {
            Decision::Remote(j) => Some(format!("{} {}", j.input.display(), j.output.display())),
            Decision::Local(_) => None,
        }
    }

    const LOCAL: Option<&str> = None;

    /// (rule, command, `Some("input output")` for a remote job or LOCAL).
    type Case = (&'static str, &'static str, Option<&'static str>);

    // rule                                command                                  remote: "input output"
    #[rustfmt::skip]
    const SECTION_5_2: &[Case] = &[
        ("-MD -MMD -MG -MP fine",        "gcc -c x.c -MD -MMD -MG -MP",                 Some("x.c x.o")),
        ("-MF -MT -MQ skip the next",    "gcc -c x.c -MF y.c -MT z.c -MQ w.o",          Some("x.c x.o")),
        ("-MF… -MT… -MQ… joined",        "gcc -c x.c -MFx.d -MTx.o -MQq",              Some("x.c x.o")),
        ("other -M: -M",                 "gcc -c x.c -M",                               LOCAL),
        ("other -M: -MM",                "gcc -c x.c -MM",                              LOCAL),
        ("other -M: -MJ",                "gcc -c x.c -MJ x.json",                       LOCAL),
        ("-march=native",                "gcc -c x.c -march=native",                    LOCAL),
        ("-mtune=native",                "gcc -c x.c -mtune=native",                    LOCAL),
        ("-march=x86-64 is fine",        "gcc -c x.c -march=x86-64",                    Some("x.c x.o")),
        ("-flto exactly",                "gcc -c x.c -flto",                            LOCAL),
        ("-flto=auto",                   "gcc -c x.c -flto=auto",                       Some("x.c x.o")),
        ("-Wa, with ,-a",                "gcc -c x.c -Wa,-alh=x.lst",                   LOCAL),
        ("-Wa, with --MD",               "gcc -c x.c -Wa,--MD,x.d",                     LOCAL),
        ("-Wa, other",                   "gcc -c x.c -Wa,--noexecstack",                Some("x.c x.o")),
        ("-specs=",                      "gcc -c x.c -specs=foo",                       LOCAL),
        ("-S compile only",              "gcc -S x.c",                                  Some("x.c x.s")),
        ("-fprofile-arcs",               "gcc -c x.c -fprofile-arcs",                   LOCAL),
        ("-ftest-coverage",              "gcc -c x.c -ftest-coverage",                  LOCAL),
        ("--coverage",                   "gcc -c x.c --coverage",                       LOCAL),
        ("-fprofile-correction",         "gcc -c x.c -fprofile-correction",             LOCAL),
        ("-fprofile-generate…",          "gcc -c x.c -fprofile-generate=dir",           LOCAL),
        ("-fprofile-use…",               "gcc -c x.c -fprofile-use",                    LOCAL),
        ("-fauto-profile…",              "gcc -c x.c -fauto-profile=x.afdo",            LOCAL),
        ("-frepo",                       "gcc -c x.c -frepo",                           LOCAL),
        ("-x c",                         "gcc -x c -c x.c",                             Some("x.c x.o")),
        ("-x c++",                       "gcc -x c++ -c x.cc",                          Some("x.cc x.o")),
        ("-x c-header: no preprocessed form", "gcc -x c-header -c x.c",                 LOCAL),
        ("-x cpp-output",                "gcc -x cpp-output -c x.i",                    Some("x.i x.o")),
        ("-x objective-c++",             "gcc -x objective-c++ -c x.mm",                Some("x.mm x.o")),
        ("-x assembler",                 "gcc -x assembler -c x.c",                     LOCAL),
        ("-x none",                      "gcc -x none -c x.c",                          LOCAL),
        ("-dr…",                         "gcc -c x.c -dr",                              LOCAL),
        ("-c marks compile",             "gcc -c x.c",                                  Some("x.c x.o")),
        ("-o FILE",                      "gcc -c x.c -o out/y.o",                       Some("x.c out/y.o")),
        ("-oFILE",                       "gcc -c x.c -oout/y.o",                        Some("x.c out/y.o")),
        ("other options ignored",        "gcc -O2 -g -Wall -c x.c",                     Some("x.c x.o")),
        ("second input",                 "gcc -c x.c y.c",                              LOCAL),
        ("second output",                "gcc -c x.c -o a.o -o b.o",                    LOCAL),
        ("other non-options ignored",    "gcc -c x.c README",                           Some("x.c x.o")),
        ("no -c or -S: link",            "gcc x.c -o x",                                LOCAL),
        ("no input: .s",                 "gcc -c a.s",                                  LOCAL),
        ("no input: .S",                 "gcc -c a.S",                                  LOCAL),
        ("no input: .cu",                "gcc -c x.cu",                                 LOCAL),
        ("no input: .CPP",               "gcc -c x.CPP",                                LOCAL),
        ("no input at all",              "gcc -c",                                      LOCAL),
        ("stdin -x c -",                 "gcc -x c -c -",                               LOCAL),
        ("conftest.",                    "gcc -c conftest.c",                           LOCAL),
        ("tmp.conftest.",                "gcc -c sub/tmp.conftest.c",                   LOCAL),
        ("output -",                     "gcc -c x.c -o -",                             LOCAL),
        ("-o without its value",         "gcc -c x.c -o",                               LOCAL),
    ];

    #[rustfmt::skip]
    const SECTION_5_3: &[Case] = &[
        ("-o given",                "gcc -c sub/x.c -o o/x.o",   Some("sub/x.c o/x.o")),
        ("basename, .o for -c",     "gcc -c sub/foo.cpp",        Some("sub/foo.cpp foo.o")),
        ("basename, .s for -S",     "gcc -S sub/foo.c",          Some("sub/foo.c foo.s")),
        ("-S wins over -c",         "gcc -c -S x.c",             Some("x.c x.s")),
        ("from the last dot",       "gcc -c a.b.c",              Some("a.b.c a.b.o")),
        ("basename under 3 chars",  "gcc -c .c",                 LOCAL),
    ];

    #[rustfmt::skip]
    const BETTER_THAN_3_4: &[Case] = &[
        ("-include value is not an input",  "gcc -include foo.c -c x.c",     Some("x.c x.o")),
        ("-imacros value",                  "gcc -imacros m.c -c x.c",       Some("x.c x.o")),
        ("-MF value is not an input",       "gcc -c x.c -MD -MF y.c",        Some("x.c x.o")),
        ("-o value is not an input",        "gcc -c x.c -o y.c",             Some("x.c y.c")),
        ("-I value",                        "gcc -I a.c -c x.c",             Some("x.c x.o")),
        ("-Xlinker value",                  "gcc -Xlinker y.c -c x.c",       Some("x.c x.o")),
        ("-xc checks c itself",             "gcc -xc -c x.c",                Some("x.c x.o")),
        ("-xassembler checks itself",       "gcc -xassembler -c x.c",        LOCAL),
        ("-x go is local",                  "gcc -x go -c x.c",              LOCAL),
        (".o word is a linker input",       "gcc -c x.c a.o",                LOCAL),
        ("missing @file",                   "gcc @no-such-file -c x.c",      LOCAL),
        ("-mcpu=native",                    "gcc -c x.c -mcpu=native",       LOCAL),
        ("-fprofile-update=",               "gcc -c x.c -fprofile-update=atomic", LOCAL),
        ("-fplugin=",                       "gcc -c x.c -fplugin=foo.so",    LOCAL),
        ("-fpass-plugin=",                  "clang -c x.c -fpass-plugin=p.so", LOCAL),
        ("--specs",                         "gcc -c x.c --specs=foo",        LOCAL),
        ("-B",                              "gcc -c x.c -B/opt/bin",         LOCAL),
        ("-B DIR",                          "gcc -c x.c -B /opt/bin",        LOCAL),
        ("-wrapper",                        "gcc -c x.c -wrapper gdb",       LOCAL),
        ("-aux-info",                       "gcc -c x.c -aux-info x.proto",  LOCAL),
        ("-Xassembler -a",                  "gcc -c x.c -Xassembler -alh",   LOCAL),
        ("-Wp,-M is -M",                    "gcc -c x.c -Wp,-M",             LOCAL),
        ("-Wp,-MD,FILE is fine",            "gcc -c x.c -Wp,-MD,.x.o.d",     Some("x.c x.o")),
        ("-MD value-less stays fine",       "gcc -c x.c -MD",                Some("x.c x.o")),
        ("--target= is not an input",       "clang --target=x.c -c x.c",     Some("x.c x.o")),
        ("@file as a value",                "gcc -c x.c -o @x.o",            LOCAL),
    ];

    /// Issue 9, bug 1: what a distcc-rs daemon refuses is local here, for
    /// the daemon's reason; what it accepts is distributed.
    #[rustfmt::skip]
    const REFUSED_BY_THE_DAEMON: &[Case] = &[
        ("-xc is accepted",                 "gcc -xc -c x.c",                Some("x.c x.o")),
        ("-x c is accepted",                "gcc -x c -c x.c",               Some("x.c x.o")),
        ("-xc++ is accepted",               "g++ -xc++ -c x.c",              Some("x.c x.o")),
        ("-x c-header: precompiled header", "gcc -x c-header -c x.c",        LOCAL),
        ("-xc-header",                      "gcc -xc-header -c x.c",         LOCAL),
        ("-x c++-header",                   "g++ -x c++-header -c x.cc",     LOCAL),
        ("-Xclang can load plugins",        "clang -Xclang -fno-pch-timestamp -c x.c", LOCAL),
        ("-mllvm reaches LLVM",             "clang -mllvm -inline-threshold=9 -c x.c", LOCAL),
        ("-Wa,-I reads server files",       "gcc -Wa,-Iinc -c x.c",          LOCAL),
        ("-Wa,-I later in the list",        "gcc -Wa,--noexecstack,-I,inc -c x.c", LOCAL),
        ("-Wa,-o",                          "gcc -Wa,-o,y.o -c x.c",         LOCAL),
        ("-Wa,@file",                       "gcc -Wa,@opts -c x.c",          LOCAL),
        ("-dumpdir",                        "gcc -dumpdir d/ -c x.c",        LOCAL),
        ("-dumpbase",                       "gcc -dumpbase x -c x.c",        LOCAL),
        ("-dumpbase-ext",                   "gcc -dumpbase-ext .c -c x.c",   LOCAL),
        ("-include-pch",                    "clang -include-pch h.pch -c x.c", LOCAL),
        ("-fdirectives-only",               "gcc -fdirectives-only -c x.c",  LOCAL),
        ("-fNAME=/path",                    "gcc -fsanitize-ignorelist=/x/l.txt -c x.c", LOCAL),
        ("-f…prefix-map=/path is fine",     "gcc -fmacro-prefix-map=/a=/b -c x.c", Some("x.c x.o")),
        ("--include is stripped",           "gcc --include h.h -c x.c",      Some("x.c x.o")),
        ("--include= is stripped",          "gcc --include=h.h -c x.c",      Some("x.c x.o")),
        ("-include is stripped",            "gcc -include h.h -c x.c",       Some("x.c x.o")),
        ("-Xpreprocessor is stripped",      "gcc -Xpreprocessor -DX -c x.c", Some("x.c x.o")),
        ("-MF is stripped",                 "gcc -MD -MF x.d -c x.c",        Some("x.c x.o")),
    ];

    /// distcc 3.4's own scan (`dcc_scan_args`, section 5.2), which the
    /// daemon ran until its reasons became this client's: (command, 3.4
    /// distributes it, distcc-rs distributes it). They differ only where the
    /// module doc says.
    #[rustfmt::skip]
    const SCAN_3_4: &[(&str, bool, bool)] = &[
        ("gcc -c x.c -o x.o",                     true,  true),
        ("gcc -c x.c",                            true,  true),
        ("gcc -S x.c",                            true,  true),
        ("gcc -E x.c",                            false, false),
        ("gcc -c x.c -MD -MF x.d -MT x.o -MQ y",  true,  true),
        ("gcc -c x.c -MFx.d -MTx.o",              true,  true),
        ("gcc -c x.c -M",                         false, false),
        ("gcc -c x.c -MM",                        false, false),
        ("gcc -c x.c -march=native",              false, false),
        ("gcc -c x.c -mtune=native",              false, false),
        ("gcc -c x.c -flto",                      false, false),
        ("gcc -c x.c -flto=auto",                 true,  true),
        ("gcc -c x.c -Wa,-alh=x.lst",             false, false),
        ("gcc -c x.c -Wa,--MD,x.d",               false, false),
        ("gcc -c x.c -specs=foo",                 false, false),
        ("gcc -c x.c -fprofile-arcs",             false, false),
        ("gcc -c x.c -ftest-coverage",            false, false),
        ("gcc -c x.c --coverage",                 false, false),
        ("gcc -c x.c -fprofile-use=x",            false, false),
        ("gcc -c x.c -fprofile-generate",         false, false),
        ("gcc -c x.c -fauto-profile",             false, false),
        ("gcc -c x.c -frepo",                     false, false),
        ("gcc -x c -c x.c",                       true,  true),
        ("gcc -x c++ -c x.cc",                    true,  true),
        ("gcc -x objective-c++ -c x.mm",          true,  true),
        ("gcc -x assembler -c x.c",               false, false),
        ("gcc -x none -c x.c",                    false, false),
        ("gcc -x c-header -c x.c",                true,  false),
        ("gcc -x go -c x.c",                      true,  false),
        ("gcc -xc -c x.c",                        false, true),
        ("gcc -c x.c -dr",                        false, false),
        ("gcc -c x.c y.c",                        false, false),
        ("gcc x.c -o x",                          false, false),
        ("gcc -c a.s",                            false, false),
        ("gcc -c a.S",                            false, false),
        ("gcc -c x.cu",                           false, false),
        ("gcc -c x.CPP",                          false, false),
        ("gcc -c conftest.c",                     false, false),
        ("gcc -c tmp.conftest.c",                 false, false),
        ("gcc -c x.c -o -",                       false, false),
        ("gcc -c x.c -o a.o -o b.o",              false, false),
        ("gcc -c x.c -oa.o",                      true,  true),
        ("gcc -c x.c a.o",                        true,  false),
        ("gcc -c x.c a.o b.o",                    false, false),
        ("gcc -c",                                false, false),
        ("gcc -c x.c -o",                         false, false),
        ("gcc -c .c",                             false, false),
    ];

    #[test]
    #[rustfmt::skip]
    fn section_5_2_rows() {
        // rule                                command                                  remote: "input output"
        let cases = SECTION_5_2;
        for (rule, line, expected) in cases {
            assert_eq!(outcome(line).as_deref(), *expected, "{rule}: {line}");
        }
    }

    #[test]
    fn minus_e_takes_a_preprocessing_slot() {
        let Decision::Local(l) = scan_line("gcc -E x.c") else {
            panic!("-E is local")
        };
        assert!(l.cpp_slot);
        let Decision::Local(l) = scan_line("gcc x.c -o x") else {
            panic!("link is local")
        };
        assert!(!l.cpp_slot);
    }

    #[test]
    fn section_5_3_output_name() {
        for (rule, line, expected) in SECTION_5_3 {
            assert_eq!(outcome(line).as_deref(), *expected, "{rule}: {line}");
        }
        let j = job("gcc -c sub/foo.c");
        assert!(j.output_added);
        assert_eq!(words(&j.argv), "gcc -c sub/foo.c -o foo.o");
        let j = job("gcc -c sub/foo.c -o foo.o");
        assert!(!j.output_added);
        assert_eq!(words(&j.argv), "gcc -c sub/foo.c -o foo.o");
        assert_eq!(j.input_index, 2);
    }

    #[test]
    fn section_5_4_extensions() {
        // command              preprocessed?  preprocessed extension
        let cases: &[(&str, bool, &str)] = &[
            ("gcc -c x.c", false, ".i"),
            ("gcc -c x.i", true, ".i"),
            ("gcc -c x.cc", false, ".ii"),
            ("gcc -c x.cpp", false, ".ii"),
            ("gcc -c x.cxx", false, ".ii"),
            ("gcc -c x.cp", false, ".ii"),
            ("gcc -c x.c++", false, ".ii"),
            ("gcc -c x.C", false, ".ii"),
            ("gcc -c x.ii", true, ".ii"),
            ("gcc -c x.m", false, ".mi"),
            ("gcc -c x.mi", true, ".mi"),
            ("gcc -c x.mm", false, ".mii"),
            ("gcc -c x.M", false, ".mii"),
            ("gcc -c x.mii", true, ".mii"),
        ];
        for (line, preprocessed, ext) in cases {
            let j = job(line);
            assert_eq!(
                (j.preprocessed, j.preprocessed_ext),
                (*preprocessed, *ext),
                "{line}"
            );
        }
        assert_eq!(outcome("gcc -c dir.d/x"), None, "no extension");
        assert_eq!(outcome("gcc -c x."), None, "trailing dot");
    }

    #[test]
    fn better_than_3_4() {
        for (rule, line, expected) in BETTER_THAN_3_4 {
            assert_eq!(outcome(line).as_deref(), *expected, "{rule}: {line}");
        }
    }

    #[test]
    fn what_the_daemon_refuses_is_local_for_its_reason() {
        for (rule, line, expected) in REFUSED_BY_THE_DAEMON {
            assert_eq!(outcome(line).as_deref(), *expected, "{rule}: {line}");
        }
        let reason = |line: &str| match scan_line(line) {
            Decision::Local(l) => l.reason,
            Decision::Remote(_) => panic!("{line} was distributed"),
        };
        assert_eq!(
            reason("clang -c x.c -Xclang -load -Xclang p.so"),
            "argument '-Xclang' passes options straight to the compiler proper, which can load plugins"
        );
        assert_eq!(
            reason("gcc -c x.c -Wa,-Iinc"),
            "assembler option in '-Wa,-Iinc' reads files from a directory"
        );
        assert_eq!(
            reason("gcc -x c-header -c x.c"),
            "language in '-x c-header' has no preprocessed form; compiling it would run \
             the preprocessor on the server"
        );
    }

    #[test]
    fn section_5_2_as_distcc_3_4_scanned_it() {
        for (line, _, ours) in SCAN_3_4 {
            assert_eq!(outcome(line).is_some(), *ours, "{line}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn section_5_5_stripping() {
        // rule                         command (after gcc -c x.c -o x.o)      sent to the server
        let cases: &[(&str, &str, &str)] = &[
            ("-D X",                "-D X",                         ""),
            ("-I X",                "-I inc",                       ""),
            ("-U X",                "-U X",                         ""),
            ("-L X",                "-L lib",                       ""),
            ("-l X",                "-l m",                         ""),
            ("-MF X",               "-MF x.d",                      ""),
            ("-MT X",               "-MT t",                        ""),
            ("-MQ X",               "-MQ q",                        ""),
            ("-include X",          "-include h.h",                 ""),
            ("-imacros X",          "-imacros m.h",                 ""),
            ("-iprefix X",          "-iprefix p/",                  ""),
            ("-iwithprefix X",      "-iwithprefix d",               ""),
            ("-isystem X",          "-isystem /s",                  ""),
            ("-iwithprefixbefore X","-iwithprefixbefore d",         ""),
            ("-idirafter X",        "-idirafter d",                 ""),
            ("-Xpreprocessor X",    "-Xpreprocessor -DX",           ""),
            ("-Wp,",                "-Wp,-MD,.x.o.d",               ""),
            ("-Wl,",                "-Wl,--as-needed",              ""),
            ("-D…",                 "-DX=1",                        ""),
            ("-U…",                 "-UX",                          ""),
            ("-I…",                 "-Iinc",                        ""),
            ("-l…",                 "-lm",                          ""),
            ("-L…",                 "-Llib",                        ""),
            ("-MF…",                "-MFx.d",                       ""),
            ("-MT…",                "-MTt",                         ""),
            ("-MQ…",                "-MQq",                         ""),
            ("-isystem…",           "-isystem/s",                   ""),
            ("-stdlib…",            "-stdlib=libc++",               ""),
            ("-undef",              "-undef",                       ""),
            ("-nostdinc",           "-nostdinc",                    ""),
            ("-nostdinc++",         "-nostdinc++",                  ""),
            ("-MD",                 "-MD",                          ""),
            ("-MMD",                "-MMD",                         ""),
            ("-MG",                 "-MG",                          ""),
            ("-MP",                 "-MP",                          ""),
            ("-iquote kept",        "-iquote q",                    "-iquote q"),
            ("-isysroot kept",      "-isysroot /r",                 "-isysroot /r"),
            ("--sysroot kept",      "--sysroot /r",                 "--sysroot /r"),
            ("--sysroot= kept",     "--sysroot=/r",                 "--sysroot=/r"),
            ("other options kept",  "-O2 -g -Wall -fPIC",           "-O2 -g -Wall -fPIC"),
            // Better than 3.4: joined preprocessor-only forms go too.
            ("-include… (joined)",  "-includeh.h",                  ""),
            ("-imacros… (joined)",  "-imacrosm.h",                  ""),
            ("-idirafter… (joined)","-idirafterd",                  ""),
            ("-stdlib++-isystem X", "-stdlib++-isystem d",          ""),
            ("--include X",         "--include h.h",                ""),
            ("--include=X",         "--include=h.h",                ""),
            ("--imacros X",         "--imacros m.h",                ""),
            ("--include-directory X", "--include-directory d",      ""),
            ("--include-directory=X", "--include-directory=d",      ""),
        ];
        for (rule, extra, sent) in cases {
            let j = job(&format!("gcc -c x.c -o x.o {extra}"));
            let expected = format!("gcc -c x.c -o x.o {sent}");
            assert_eq!(words(&remote_argv(&j)), expected.trim_end(), "{rule}");
        }
        let j = job("gcc -c sub/x.c");
        assert_eq!(words(&remote_argv(&j)), "gcc -c sub/x.c -o x.o", "-o added and kept");
    }

    #[test]
    #[rustfmt::skip]
    fn section_5_6_wp_expansion() {
        let cases: &[(&str, &str, &str)] = &[
            ("-Wp,A,B → A B",             "gcc -Wp,-DX,-UY -c x.c",      "gcc -DX -UY -c x.c"),
            ("-Wp,-include,h",            "gcc -Wp,-include,h.h -c x.c", "gcc -include h.h -c x.c"),
            ("kept: -Wp,-MD,FILE",        "gcc -Wp,-MD,.x.o.d -c x.c",   "gcc -Wp,-MD,.x.o.d -c x.c"),
            ("kept: -Wp,-MMD,FILE",       "gcc -Wp,-MMD,d/.x.o.d -c x.c","gcc -Wp,-MMD,d/.x.o.d -c x.c"),
            ("kept: -Wp,-MT,t",           "gcc -Wp,-MT,t -c x.c",        "gcc -Wp,-MT,t -c x.c"),
        ];
        for (rule, line, expanded) in cases {
            assert_eq!(words(&expand_preprocessor_options(argv(line))), *expanded, "{rule}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn cpp_argv_rules() {
        // command                                             local preprocessor command
        let cases: &[(&str, &str)] = &[
            ("gcc -c x.c -o x.o",                               "gcc -E x.c"),
            ("gcc -S x.c -ox.s",                                "gcc -E x.c"),
            ("gcc -c sub/x.c",                                  "gcc -E sub/x.c"),
            ("gcc -c src/a.c -o obj/a.o -MD",                   "gcc -E src/a.c -MD -MF obj/a.d -MQ obj/a.o"),
            ("gcc -c src/a.c -o obj/a.o -MMD -MP",              "gcc -E src/a.c -MMD -MP -MF obj/a.d -MQ obj/a.o"),
            ("gcc -c src/a.c -o obj/a.o -MD -MF x.d",           "gcc -E src/a.c -MD -MF x.d -MQ obj/a.o"),
            ("gcc -c src/a.c -o obj/a.o -MD -MT t",             "gcc -E src/a.c -MD -MT t -MF obj/a.d"),
            ("gcc -c src/a.c -MD",                              "gcc -E src/a.c -MD"),
            ("gcc -c src/a.c -o obj/a -MD",                     "gcc -E src/a.c -MD -MF obj/a.d -MQ obj/a"),
            ("gcc -c src/a.c -o o.x/a.o.tmp -MD",               "gcc -E src/a.c -MD -MF o.x/a.o.d -MQ o.x/a.o.tmp"),
            ("gcc -c src/a.c -o obj/a.o -Wp,-MD,obj/.a.o.d",    "gcc -E src/a.c -Wp,-MD,obj/.a.o.d"),
            ("clang -c src/a.c -o obj/a.o -Wp,-MD,obj/.a.o.d",  "clang -E src/a.c -Wp,-MD,obj/.a.o.d -MQ obj/a.o"),
        ];
        for (line, cpp) in cases {
            assert_eq!(words(&cpp_argv(&job(line))), *cpp, "{line}");
        }
    }

    #[test]
    fn response_files() {
        let tmp = crate::testing::TestDir::new("scan");
        let dir = tmp.path.clone();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            format!("@{}", p.display())
        };
        let inner = write("inner", "-DIN 'sp ace' \"d q\" a\\ b\n\t-c");
        let outer = write("outer", &format!("-O2 {inner} 'it''s' \"x\\\"y\" ''"));
        let empty = write("empty", "  \n");
        let missing = format!("@{}", dir.join("missing").display());
        let got = expand_response_files(vec![
            "gcc".into(),
            outer.clone().into(),
            empty.into(),
            missing.clone().into(),
            dir.clone().into_os_string(),
            "x.c".into(),
        ])
        .unwrap();
        let expected: Vec<OsString> = [
            "gcc", "-O2", "-DIN", "sp ace", "d q", "a b", "-c", "its", "x\"y", "", &missing,
        ]
        .iter()
        .map(OsString::from)
        .chain([dir.clone().into_os_string(), "x.c".into()])
        .collect();
        assert_eq!(got, expected);
        let dir_arg = format!("@{}", dir.display());
        assert_eq!(
            expand_response_files(vec![dir_arg.clone().into()]).unwrap(),
            vec![OsString::from(dir_arg)],
            "a directory stays literal"
        );
        let looped = write("loop", "");
        std::fs::write(&looped[1..], &looped).unwrap();
        assert!(expand_response_files(vec![looped.into()]).is_err());
    }

    // The `.d` files of cpp_argv's command against plain gcc and clang
    // runs are compared in tests/scan.rs.
}
