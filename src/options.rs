//! The one table of gcc and clang options, and what the client and the daemon read from it: local or remote, what is stripped, what a daemon refuses, how a job is rewritten.
//!
//! Every option distcc-rs knows is one row of [`OPTIONS`], sorted by name:
//! how it takes its value ([`Takes`]), what it means ([`Role`]), whether
//! the client strips it from what a server is sent (section 5.5), and
//! whether a daemon refuses a job that holds it ([`Opt::refused`]). A
//! command line is read into [`Tokens`] once per job; every consumer walks
//! those tokens:
//!
//! * the client's scan (`client::scan`) keeps a command local for a row's
//!   [`Role::Local`] reason (distcc 3.4's `dcc_scan_args`), and for every
//!   refusal of [`refusal`] on what it would send, with the daemon's words;
//!   it builds the preprocessor and server command lines from the roles and
//!   the `strip` column, and the object-format options from
//!   [`Role::Format`] and [`Role::Target`];
//! * the client's compiler-name rewriting adds clang a target unless a
//!   [`Role::Target`] option is there; its object check takes bitcode from
//!   a command that [`asks_for_bitcode`]; the monitor names a job by its
//!   [`Tokens::first_source`];
//! * the daemon ([`check_job`]) reads the job's shape ([`compile_shape`]:
//!   one source, one output, `-c` or `-S`), refuses what [`refusal`] names
//!   in any token (options that load code, read files on the server or
//!   write files outside the job's directory) and any `@file`, and rewrites
//!   `-x`, `-o` and the input, adding `-pipe` unless a [`Role::Pipe`] row
//!   is there.
//!
//! Because the client keeps local every command with a refusal it would
//! send, everything it distributes is accepted by a distcc-rs daemon (the
//! contract test in `client::scan` checks both directions on real command
//! lines). The daemon does not refuse 3.4's local-only reasons
//! (`-march=native`, `-flto`, ...): they are the client's decision.
//!
//! Arguments stay bytes: the client's are `OsString`s, the daemon's
//! `Vec<u8>`s, both read through [`Arg`].

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::filename;

/// A command-line argument as bytes.
pub trait Arg {
    fn bytes(&self) -> &[u8];
}

impl Arg for OsString {
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Arg for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// How an option takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takes {
    /// Matched exactly; no value.
    Nothing,
    /// Matched exactly; the value is the next argument.
    Separate,
    /// Matched by prefix; the whole option is one argument (`-Wp,…`, `-M`,
    /// `-fprofile…`). Also matches the bare prefix.
    Joined,
    /// Exactly: the value is the next argument (`-I dir`); by prefix: the
    /// value is the rest of the argument (`-Idir`).
    JoinedOrSeparate,
}

/// What an option means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Nothing to anyone beyond its row's `strip` and `refused`.
    Plain,
    /// `-c`: compile to an object.
    Compile,
    /// `-S`: compile to assembler.
    CompileToAssembler,
    /// `-E`: preprocess only; not a job for a server.
    Preprocess,
    /// `-o`: the output.
    Output,
    /// `-x`: the language of the inputs that follow. Only languages with a
    /// preprocessed form ([`preprocessed_language`]) can be compiled on a
    /// server; the daemon rewrites them to that form.
    Language,
    /// `-MD`, `-MMD`: the driver writes a dependency file.
    DepsDriver,
    /// `-MF`: the dependency file.
    DepsFile,
    /// `-MT`, `-MQ`: a dependency target.
    DepsTarget,
    /// `-Wp,`: options for the preprocessor (the client checks them for
    /// `-M…`).
    Preprocessor,
    /// `-Wa,`: assembler options, each checked against the assembler options
    /// that name files.
    Assembler,
    /// `-Xassembler`: one assembler option, checked the same way.
    AssemblerSeparate,
    /// Any other `-f…`: `-fNAME=PATH` with a `/` names a file on the server
    /// (the `…prefix-map` options only rewrite names).
    Flag,
    /// Changes the format of the objects made (word size, byte order, ABI):
    /// the object check's options.
    Format,
    /// Names clang's target (`-target T`, `--target=T`; also `--target` and
    /// `-target=T`, which clang refuses): the compiler-name rewriting adds
    /// none of its own. Also an object check option, as it changes the
    /// format.
    Target,
    /// `-emit-llvm`: the object is LLVM bitcode (see [`asks_for_bitcode`]).
    Bitcode,
    /// `-pipe`, `-save-temps`: the daemon adds `-pipe` only without them.
    Pipe,
    /// The client runs the command locally, for this reason (3.4's scan);
    /// a daemon accepts it.
    Local(&'static str),
}

/// One option gcc or clang accepts.
#[derive(Debug, PartialEq, Eq)]
pub struct Opt {
    pub name: &'static str,
    pub takes: Takes,
    pub role: Role,
    /// Removed, with its separate value, from what a v1/v2 server is sent.
    pub strip: bool,
    /// Why a daemon refuses a job with this option. The client never sends
    /// such an option: it strips it, or keeps the command local for this
    /// same reason.
    pub refused: Option<&'static str>,
}

const fn opt(name: &'static str, takes: Takes, role: Role) -> Opt {
    Opt {
        name,
        takes,
        role,
        strip: false,
        refused: None,
    }
}

impl Opt {
    const fn stripped(self) -> Opt {
        Opt {
            strip: true,
            ..self
        }
    }

    const fn refuse(self, why: &'static str) -> Opt {
        Opt {
            refused: Some(why),
            ..self
        }
    }

    /// True for rows that match by prefix as well as exactly.
    fn joins(&self) -> bool {
        matches!(self.takes, Takes::Joined | Takes::JoinedOrSeparate)
    }
}

use Role::*;
use Takes::*;

// Why the daemon refuses (and so the client keeps local).
const PROFILE: &str = "reads or writes profile files (profiling must run locally)";
const PLUGIN: &str = "loads a compiler plugin";
const SPECS: &str = "reads a specs file";
const PROGRAMS: &str = "runs compiler programs from a directory";
const WRAPPER: &str = "runs a wrapper program";
const READS_FILE: &str = "reads a file";
const AUX_DIR: &str = "chooses where auxiliary files are written";
const PREPROCESSOR: &str = "passes options to the preprocessor";

// Why the client keeps a command local that a daemon would accept.
/// `-M` and `-MM` (also inside `-Wp,`).
pub const DEPS_ONLY: &str = "-M and -MM write dependencies instead of compiling";
const LTO: &str = "-flto (exactly) is kept local as in distcc 3.4";
const REPO: &str = "-frepo needs the local repository files";
const RTL_DUMP: &str = "-dr writes RTL dumps";
const NATIVE: &str = "-march=native and friends mean this machine's CPU";

/// Every option distcc-rs knows, sorted by name (bytewise). An argument is
/// matched exactly first, then by the longest prefix among `Joined` and
/// `JoinedOrSeparate` rows, both by binary search; options not here are passed on
/// untouched and refused by no one.
#[rustfmt::skip]
pub static OPTIONS: &[Opt] = &[
    opt("--coverage", Nothing, Plain).refuse(PROFILE),
    opt("--imacros", JoinedOrSeparate, Plain).stripped().refuse(READS_FILE),
    opt("--include", JoinedOrSeparate, Plain).stripped().refuse(READS_FILE),
    opt("--include-barrier", Nothing, Plain).stripped(),
    opt("--include-directory", JoinedOrSeparate, Plain).stripped(),
    opt("--include-directory-after", JoinedOrSeparate, Plain).stripped(),
    opt("--include-prefix", JoinedOrSeparate, Plain).stripped(),
    opt("--include-with-prefix", JoinedOrSeparate, Plain).stripped(),
    opt("--include-with-prefix-after", JoinedOrSeparate, Plain).stripped(),
    opt("--include-with-prefix-before", JoinedOrSeparate, Plain).stripped(),
    opt("--param", Separate, Plain),
    opt("--prefix", JoinedOrSeparate, Plain).refuse(PROGRAMS),
    opt("--specs", JoinedOrSeparate, Plain).refuse(SPECS),
    opt("--sysroot", Separate, Plain),
    opt("--sysroot=", Joined, Plain),
    opt("--target", Nothing, Target),
    opt("--target=", Joined, Target),
    opt("-A", JoinedOrSeparate, Plain),
    opt("-B", JoinedOrSeparate, Plain).refuse(PROGRAMS),
    opt("-D", JoinedOrSeparate, Plain).stripped(),
    opt("-E", Nothing, Preprocess),
    opt("-EB", Nothing, Format),
    opt("-EL", Nothing, Format),
    opt("-F", JoinedOrSeparate, Plain),
    opt("-I", JoinedOrSeparate, Plain).stripped(),
    opt("-L", JoinedOrSeparate, Plain).stripped(),
    opt("-M", Joined, Local(DEPS_ONLY)),
    opt("-MD", Nothing, DepsDriver).stripped(),
    opt("-MF", JoinedOrSeparate, DepsFile).stripped().refuse("writes a dependency file"),
    opt("-MG", Nothing, Plain).stripped(),
    opt("-MMD", Nothing, DepsDriver).stripped(),
    opt("-MP", Nothing, Plain).stripped(),
    opt("-MQ", JoinedOrSeparate, DepsTarget).stripped(),
    opt("-MT", JoinedOrSeparate, DepsTarget).stripped(),
    opt("-S", Nothing, CompileToAssembler),
    opt("-T", JoinedOrSeparate, Plain),
    opt("-U", JoinedOrSeparate, Plain).stripped(),
    opt("-Wa,", Joined, Assembler),
    opt("-Wl,", Joined, Plain).stripped(),
    opt("-Wp,", Joined, Preprocessor).stripped().refuse(PREPROCESSOR),
    opt("-Xassembler", Separate, AssemblerSeparate),
    opt("-Xclang", JoinedOrSeparate, Plain).refuse("passes options straight to the compiler proper, which can load plugins"),
    opt("-Xlinker", Separate, Plain),
    opt("-Xpreprocessor", Separate, Plain).stripped().refuse(PREPROCESSOR),
    opt("-arch", Separate, Format),
    opt("-aux-info", Separate, Plain).refuse("writes a file"),
    opt("-aux-info=", Joined, Plain).refuse("writes a file"),
    opt("-c", Nothing, Role::Compile),
    opt("-dr", Joined, Local(RTL_DUMP)),
    opt("-dumpbase", Separate, Plain).refuse(AUX_DIR),
    opt("-dumpbase-ext", Separate, Plain).refuse(AUX_DIR),
    opt("-dumpdir", Separate, Plain).refuse(AUX_DIR),
    opt("-e", JoinedOrSeparate, Plain),
    opt("-emit-llvm", Nothing, Bitcode),
    opt("-f", Joined, Flag),
    opt("-fauto-profile", Joined, Plain).refuse(PROFILE),
    opt("-fdirectives-only", Nothing, Plain).refuse("makes the compiler read #include files on the server"),
    opt("-flto", Nothing, Local(LTO)),
    opt("-fpass-plugin", Joined, Plain).refuse(PLUGIN),
    opt("-fplugin", Joined, Plain).refuse(PLUGIN),
    opt("-fprofile", Joined, Plain).refuse(PROFILE),
    opt("-frepo", Nothing, Local(REPO)),
    opt("-ftest-coverage", Nothing, Plain).refuse(PROFILE),
    opt("-idirafter", JoinedOrSeparate, Plain).stripped(),
    opt("-imacros", JoinedOrSeparate, Plain).stripped().refuse(READS_FILE),
    opt("-include", JoinedOrSeparate, Plain).stripped().refuse(READS_FILE),
    opt("-include-pch", Separate, Plain).refuse("reads a precompiled header"),
    opt("-iprefix", JoinedOrSeparate, Plain).stripped(),
    opt("-iquote", JoinedOrSeparate, Plain),
    opt("-isysroot", JoinedOrSeparate, Plain),
    opt("-isystem", JoinedOrSeparate, Plain).stripped(),
    opt("-iwithprefix", JoinedOrSeparate, Plain).stripped(),
    opt("-iwithprefixbefore", JoinedOrSeparate, Plain).stripped(),
    opt("-l", JoinedOrSeparate, Plain).stripped(),
    opt("-m16", Nothing, Format),
    opt("-m31", Nothing, Format),
    opt("-m32", Nothing, Format),
    opt("-m64", Nothing, Format),
    opt("-mabi=", Joined, Format),
    opt("-march=native", Nothing, Local(NATIVE)),
    opt("-mbig", Nothing, Format),
    opt("-mbig-endian", Nothing, Format),
    opt("-mcpu=native", Nothing, Local(NATIVE)),
    opt("-mlittle", Nothing, Format),
    opt("-mlittle-endian", Nothing, Format),
    opt("-mllvm", JoinedOrSeparate, Plain).refuse("passes options straight to LLVM, which can read and write files"),
    opt("-mtune=native", Nothing, Local(NATIVE)),
    opt("-mx32", Nothing, Format),
    opt("-nostdinc", Nothing, Plain).stripped(),
    opt("-nostdinc++", Nothing, Plain).stripped(),
    opt("-o", JoinedOrSeparate, Role::Output),
    opt("-param", Separate, Plain),
    opt("-pipe", Nothing, Pipe),
    opt("-save-temps", Joined, Pipe),
    opt("-specs", Joined, Plain).refuse(SPECS),
    opt("-stdlib", Joined, Plain).stripped(),
    opt("-stdlib++-isystem", JoinedOrSeparate, Plain).stripped(),
    opt("-target", Separate, Target),
    opt("-target=", Joined, Target),
    opt("-u", JoinedOrSeparate, Plain),
    opt("-undef", Nothing, Plain).stripped(),
    opt("-wrapper", Separate, Plain).refuse(WRAPPER),
    opt("-x", JoinedOrSeparate, Language),
    opt("-z", JoinedOrSeparate, Plain),
];

/// Assembler options (inside `-Wa,` or after `-Xassembler`) that name files,
/// by prefix, and why a daemon refuses them. The client keeps them local.
pub(crate) static ASSEMBLER_OPTIONS: &[(&str, &str)] = &[
    (
        "--MD",
        "writes a dependency file (like an assembler listing, it must be written locally)",
    ),
    ("-I", "reads files from a directory"),
    ("-a", "writes an assembler listing"),
    ("-o", "names an output file"),
    ("@", "reads a response file"),
];

/// The row for an option argument: an exact match first, then the longest
/// row that is a prefix of it and takes a joined value. Both by binary
/// search: the longest prefix is found by searching for the greatest row
/// not after the argument and, while that row is no such prefix, again for
/// the part the two have in common.
fn lookup(arg: &[u8]) -> Option<&'static Opt> {
    if let Ok(i) = OPTIONS.binary_search_by(|o| o.name.as_bytes().cmp(arg)) {
        return Some(&OPTIONS[i]);
    }
    let mut key = arg;
    // Each turn makes the key shorter, so the loop ends.
    loop {
        let below = OPTIONS.partition_point(|o| o.name.as_bytes() <= key);
        let row = &OPTIONS[below.checked_sub(1)?];
        let name = row.name.as_bytes();
        if key.starts_with(name) {
            if row.joins() {
                return Some(row);
            }
            // A shorter prefix is also a prefix of this row's name.
            key = &name[..name.len() - 1];
        } else {
            let common = key.iter().zip(name).take_while(|(a, b)| a == b).count();
            key = &key[..common];
        }
    }
}

/// The value of an option, where it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    None,
    /// The rest of the option argument.
    Joined,
    /// The argument at this index.
    Separate(usize),
    /// The option wants a separate value but is the last argument.
    Missing,
}

/// One argument (with its separate value) as the table reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// A word that is not an option: an input, `-` for stdin, `@file`.
    Word(usize),
    /// An option of the table at this index.
    Known(usize, &'static Opt, Value),
    /// An option the table does not know; passed on as it is.
    Unknown(usize),
}

/// A command line read by the table, once per job: `argv[1..]` as tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens(Vec<Token>);

impl Tokens {
    /// Reads `argv[1..]`.
    pub fn of<A: Arg>(argv: &[A]) -> Tokens {
        let mut tokens = Tokens::default();
        tokens.read(argv, 1);
        tokens
    }

    /// Reads `argv[from..]`, arguments appended after the last token. An
    /// option that was missing its value takes the first of them, so the
    /// tokens are those of one reading of the whole command.
    pub fn read<A: Arg>(&mut self, argv: &[A], from: usize) {
        let mut i = from;
        if let Some(&Token::Known(at, _, Value::Missing)) = self.0.last() {
            self.0.pop();
            i = at;
        }
        while i < argv.len() {
            let a = argv[i].bytes();
            let at = i;
            if a.len() < 2 || a[0] != b'-' {
                self.0.push(Token::Word(i));
            } else if let Some(o) = lookup(a) {
                let exact = a == o.name.as_bytes();
                let value = match o.takes {
                    Nothing => Value::None,
                    Joined => Value::Joined,
                    JoinedOrSeparate if !exact => Value::Joined,
                    Separate | JoinedOrSeparate if i + 1 < argv.len() => {
                        i += 1;
                        Value::Separate(i)
                    }
                    Separate | JoinedOrSeparate => Value::Missing,
                };
                self.0.push(Token::Known(at, o, value));
            } else {
                self.0.push(Token::Unknown(i));
            }
            i += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Token> + '_ {
        self.0.iter().copied()
    }

    /// True if an option of this role is there.
    pub fn has(&self, role: Role) -> bool {
        self.iter()
            .any(|t| matches!(t, Token::Known(_, o, _) if o.role == role))
    }

    /// The index of the first source file among the words (never the value
    /// of an option, such as `-include y.c` or `-o x.c`).
    pub fn first_source<A: Arg>(&self, argv: &[A]) -> Option<usize> {
        self.iter().find_map(|t| match t {
            Token::Word(i) if filename::is_source(argv[i].bytes()) => Some(i),
            _ => None,
        })
    }
}

/// True if the command asks for LLVM bitcode, whose target the object check
/// cannot read: a [`Role::Bitcode`] option (`-emit-llvm`) or any `-flto…`
/// option but `-flto=none` (clang writes bitcode for them; gcc's LTO objects
/// are ELF and compare as usual). The `-flto…` options are the `-flto` row
/// and the `-f` row's. Only options count: in `-o -flto.o` or `-D -emit-llvm`
/// the word is a value (so is `-Xclang -emit-llvm`'s, but `-Xclang` keeps a
/// job local, and local objects are not checked).
pub fn asks_for_bitcode<A: Arg>(argv: &[A], tokens: &Tokens) -> bool {
    let lto = |arg: &[u8]| arg.starts_with(b"-flto") && arg != b"-flto=none";
    tokens.iter().any(|t| match t {
        Token::Known(at, o, _) => o.role == Bitcode || lto(argv[at].bytes()),
        Token::Word(_) | Token::Unknown(_) => false,
    })
}

/// The bytes of an option's value.
pub fn value_of<'a, A: Arg>(argv: &'a [A], at: usize, o: &Opt, v: Value) -> &'a [u8] {
    match v {
        Value::Joined => &argv[at].bytes()[o.name.len()..],
        Value::Separate(j) => argv[j].bytes(),
        Value::None | Value::Missing => b"",
    }
}

/// The language in which to compile an already preprocessed source, for
/// `-x LANG`. A server's input is always preprocessed: compiling it as `c`
/// would run the preprocessor again, on the server, where `#include` reads
/// the server's files. Languages without a preprocessed form (headers, whose
/// precompiled form needs the macros preprocessing removed; assembler; go;
/// `none`) cannot be compiled on a server.
pub fn preprocessed_language(lang: &[u8]) -> Option<&'static [u8]> {
    Some(match lang {
        b"c" | b"cpp-output" | b"c-cpp-output" => b"cpp-output",
        b"c++" | b"c++-cpp-output" => b"c++-cpp-output",
        b"objective-c" | b"objective-c-cpp-output" | b"objc-cpp-output" => {
            b"objective-c-cpp-output"
        }
        b"objective-c++" | b"objective-c++-cpp-output" | b"objc++-cpp-output" => {
            b"objective-c++-cpp-output"
        }
        _ => return None,
    })
}

/// Why a daemon refuses an assembler option, if it does.
fn assembler_refusal(option: &[u8]) -> Option<&'static str> {
    ASSEMBLER_OPTIONS
        .iter()
        .find(|(prefix, _)| option.starts_with(prefix.as_bytes()))
        .map(|(_, why)| *why)
}

/// `-fNAME=VALUE` (given `NAME=VALUE`) where VALUE holds a `/` and NAME is
/// not a `…prefix-map`.
fn names_a_file(flag: &[u8]) -> bool {
    let Some(eq) = flag.iter().position(|&c| c == b'=') else {
        return false;
    };
    flag[eq..].contains(&b'/') && !flag[..eq].ends_with(b"prefix-map")
}

fn shown(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Why a daemon refuses one token, in the words its log and the client's
/// use; None if it does not.
pub fn refusal<A: Arg>(argv: &[A], token: Token) -> Option<String> {
    let Token::Known(at, o, v) = token else {
        return None;
    };
    let arg = argv[at].bytes();
    if let Some(why) = o.refused {
        return Some(format!("argument '{}' {why}", shown(arg)));
    }
    let value = value_of(argv, at, o, v);
    match o.role {
        Language if preprocessed_language(value).is_none() => {
            let whole = match v {
                Value::Separate(_) => format!("{} {}", shown(arg), shown(value)),
                _ => shown(arg),
            };
            Some(format!(
                "language in '{whole}' has no preprocessed form; compiling it would run \
                 the preprocessor on the server"
            ))
        }
        Assembler => value
            .split(|&c| c == b',')
            .find_map(assembler_refusal)
            .map(|why| format!("assembler option in '{}' {why}", shown(arg))),
        AssemblerSeparate => assembler_refusal(value)
            .map(|why| format!("assembler option in '{}' {why}", shown(value))),
        Flag if names_a_file(value) => Some(format!(
            "argument '{}' names a file on the server",
            shown(arg)
        )),
        _ => None,
    }
}

/// Why a daemon refuses an argument wherever it stands: `@FILE`, which gcc
/// reads as a response file even as the value of an option.
fn refusal_of_word(arg: &[u8]) -> Option<String> {
    arg.starts_with(b"@")
        .then(|| format!("argument '{}' reads a response file", shown(arg)))
}

/// The daemon's refusal: the first argument of `argv` that a job may not
/// hold, and why; options named in `answered` are let through.
fn first_refusal<A: Arg>(argv: &[A], tokens: &Tokens, answered: &[&str]) -> Result<(), String> {
    if let Some(why) = argv.iter().skip(1).find_map(|a| refusal_of_word(a.bytes())) {
        return Err(why);
    }
    let counted = |t: &Token| !matches!(t, Token::Known(_, o, _) if answered.contains(&o.name));
    match tokens.iter().filter(counted).find_map(|t| refusal(argv, t)) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// What a daemon accepts: the command read into tokens, once, and the shape
/// of its job; or why the daemon refuses it ([`compile_shape`], then
/// [`refusal`] for each token and `@file` anywhere).
pub fn check_job<A: Arg>(argv: &[A]) -> Result<(Tokens, Compile), String> {
    check_with(argv, &[])
}

/// The refused options a pump-mode (version 3) job may hold: the server
/// preprocesses, so `-include` and `-imacros` read files the client sent
/// (their absolute paths are rooted in the job's tree), and the daemon
/// replaces the client's `-MF` with its own.
const PUMP_ANSWERED: [&str; 3] = ["-MF", "-imacros", "-include"];

/// [`check_job`] for a pump-mode job: the same, but for [`PUMP_ANSWERED`].
pub fn check_pump_job<A: Arg>(argv: &[A]) -> Result<(Tokens, Compile), String> {
    check_with(argv, &PUMP_ANSWERED)
}

fn check_with<A: Arg>(argv: &[A], answered: &[&str]) -> Result<(Tokens, Compile), String> {
    let tokens = Tokens::of(argv);
    let compile = compile_shape(argv, &tokens).map_err(|why| {
        let words: Vec<String> = argv.iter().map(|a| shown(a.bytes())).collect();
        format!("not a distributable compile ({why}): {}", words.join(" "))
    })?;
    first_refusal(argv, &tokens, answered)?;
    Ok((tokens, compile))
}

/// Where the output name sits in the argument list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `-o FILE`: the index of FILE.
    Separate(usize),
    /// `-oFILE`: the index of the whole argument.
    Joined(usize),
    /// A bare `FILE.o` word (distcc 3.4 takes it for the output).
    Word(usize),
}

/// The shape of a single compile of one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compile {
    /// Index of the source file argument.
    pub input: usize,
    /// The output, if the command names one.
    pub output: Option<Output>,
    /// `-S`: the output is assembler, not an object.
    pub assemble_only: bool,
}

/// Reads the job in a command: `Err` with the reason when it is not one
/// compile (`-c` or `-S`) of one source file (5.4's extensions) to at most
/// one output, with every option's value there. Values of options are never
/// taken for inputs or outputs.
pub fn compile_shape<A: Arg>(argv: &[A], tokens: &Tokens) -> Result<Compile, &'static str> {
    let mut input = None;
    let mut output = None;
    let mut compile = false;
    let mut assemble_only = false;
    let mut set_output = |o: Output| match output.replace(o) {
        Some(_) => Err("several outputs: called for link?"),
        None => Ok(()),
    };
    for token in tokens.iter() {
        match token {
            Token::Word(i) => {
                let a = argv[i].bytes();
                if filename::is_source(a) {
                    if input.replace(i).is_some() {
                        return Err("several source files");
                    }
                } else if a.ends_with(b".o") {
                    set_output(Output::Word(i))?;
                }
            }
            Token::Unknown(_) => {}
            Token::Known(_, _, Value::Missing) => return Err("an option is missing its value"),
            Token::Known(at, o, v) => match o.role {
                Preprocess => return Err("-E: preprocessing only"),
                Role::Compile => compile = true,
                CompileToAssembler => {
                    compile = true;
                    assemble_only = true;
                }
                Role::Output => set_output(match v {
                    Value::Separate(j) => Output::Separate(j),
                    _ => Output::Joined(at),
                })?,
                _ => {}
            },
        }
    }
    if !compile {
        return Err("not a compile (no -c or -S)");
    }
    Ok(Compile {
        input: input.ok_or("no source file distcc distributes")?,
        output,
        assemble_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<Vec<u8>> {
        line.split_whitespace()
            .map(|s| s.as_bytes().to_vec())
            .collect()
    }

    fn check(line: &str) -> Result<Compile, String> {
        check_job(&argv(line)).map(|(_, compile)| compile)
    }

    #[test]
    fn table_is_sorted_without_duplicates() {
        for pair in OPTIONS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    /// A refused row has one reason, the daemon's, which the client reads too.
    #[test]
    fn refused_rows_have_one_reason() {
        for o in OPTIONS.iter().filter(|o| o.refused.is_some()) {
            assert!(!matches!(o.role, Local(_)), "{}: two reasons", o.name);
        }
    }

    #[test]
    fn lookup_is_exact_then_longest_joined_prefix() {
        // argument              row
        let cases: &[(&str, Option<&str>)] = &[
            ("-c", Some("-c")),
            ("-cfoo", None),
            ("-MD", Some("-MD")),
            ("-MJ", Some("-M")),
            ("-MFx.d", Some("-MF")),
            ("-include-pch", Some("-include-pch")),
            ("-includeh.h", Some("-include")),
            ("-iwithprefixbeforedir", Some("-iwithprefixbefore")),
            ("-iwithprefixd", Some("-iwithprefix")),
            ("-fprofile-use=x", Some("-fprofile")),
            ("-fpic", Some("-f")),
            ("-flto", Some("-flto")),
            ("-flto=auto", Some("-f")),
            ("-fplugin-arg-x", Some("-fplugin")),
            ("-dumpbase-ext", Some("-dumpbase-ext")),
            ("-dumpbasex", None),
            ("-save-temps=obj", Some("-save-temps")),
            ("-mabi=lp64", Some("-mabi=")),
            ("-march=x86-64", None),
            ("-mcpu=native", Some("-mcpu=native")),
            ("-xc++", Some("-x")),
            ("-Xclang", Some("-Xclang")),
            ("-Xclang=-v", Some("-Xclang")),
            ("-mllvm=-x", Some("-mllvm")),
            ("--sysroot=/r", Some("--sysroot=")),
            ("--include=h", Some("--include")),
            ("-O2", None),
            ("-", None),
            ("--", None),
            ("-zfoo", Some("-z")),
        ];
        for (arg, row) in cases {
            assert_eq!(lookup(arg.as_bytes()).map(|o| o.name), *row, "{arg}");
        }
        // Against a linear scan, for every row name and variations of it.
        let linear = |arg: &[u8]| {
            OPTIONS
                .iter()
                .find(|o| o.name.as_bytes() == arg)
                .or_else(|| {
                    OPTIONS
                        .iter()
                        .filter(|o| o.joins() && arg.starts_with(o.name.as_bytes()))
                        .max_by_key(|o| o.name.len())
                })
                .map(|o| o.name)
        };
        for o in OPTIONS {
            let name = o.name.as_bytes();
            for arg in [
                name.to_vec(),
                [name, b"x"].concat(),
                [name, b"="].concat(),
                [name, b"-ext"].concat(),
                name[..name.len() - 1].to_vec(),
            ] {
                assert_eq!(lookup(&arg).map(|o| o.name), linear(&arg), "{arg:?}");
            }
        }
    }

    #[test]
    fn forbidden_arguments_are_refused() {
        let refused = [
            "-fplugin=/tmp/evil.so",
            "-fplugin-arg-evil-x=1",
            "-fpass-plugin=/tmp/p.so",
            "-specs=/tmp/specs",
            "--specs=/tmp/specs",
            "-B/tmp/evil",
            "-B",
            "-wrapper",
            "@/etc/passwd",
            "-include",
            "-include/etc/passwd",
            "-imacros",
            "-fprofile-use=/tmp/p",
            "-fprofile-generate",
            "-fauto-profile=/tmp/x",
            "--coverage",
            "-Xclang",
            "-mllvm",
            "-Xpreprocessor",
            "-Wp,-MD,/tmp/x",
            "-MF/tmp/x",
            "-aux-info",
            "-dumpdir",
            "-Wa,-alh=/tmp/listing",
            "-Wa,--MD,/tmp/x.d",
            "-Wa,-o,/tmp/x",
            "-Wa,@/etc/passwd",
            "-fdump-tree-all=/tmp/dump",
            "-fsanitize-ignorelist=/etc/shadow",
            "-fopt-info-all=/tmp/x",
            "-fdirectives-only",
            "-xc-header",
            "-xassembler-with-cpp",
            "-xgo",
        ];
        for arg in refused {
            let line = format!("gcc -c x.c {arg} -o x.o");
            assert!(check(&line).is_err(), "{arg} was allowed");
        }
        assert!(check("gcc -x c-header -c x.c").is_err());
        assert!(check("gcc -x go -c x.c").is_err());
        assert!(check("gcc -x c -c x.c").is_ok());
        assert!(check("gcc -xc -c x.c").is_ok());
        assert!(check("gcc -xc++ -c x.cc").is_ok());
        assert!(check("gcc -c x.c -o x.o -Xassembler -al=/tmp/x").is_err());
        assert!(check("gcc -c x.c -o @x.o").is_err(), "@ as a value");
    }

    #[test]
    fn ordinary_arguments_pass() {
        let line = "gcc -c x.c -o x.o -O2 -g -Wall -fPIC -std=gnu11 -ffile-prefix-map=/a=/b \
                    -fdebug-prefix-map=/x=/y -Wa,--noexecstack -fdiagnostics-color=always \
                    -I/usr/include/foo -iquote inc --sysroot=/opt/sys -x c -xc++ -Wl,-z,now \
                    -fstack-protector-strong -fno-omit-frame-pointer -MD -target x86_64-linux-gnu";
        assert_eq!(check(line).map(|_| ()), Ok(()));
        // 3.4's local-only reasons are the client's: a daemon compiles them.
        for extra in ["-march=native", "-flto", "-frepo", "-MM", "-dr"] {
            assert!(check(&format!("gcc -c x.c {extra}")).is_ok(), "{extra}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn job_shape() {
        // command                           input  output                     -S
        type Shape = Result<(usize, Option<Output>, bool), &'static str>;
        let cases: &[(&str, Shape)] = &[
            ("gcc -c x.c -o out/x.o",        Ok((2, Some(Output::Separate(4)), false))),
            ("gcc -c sub/foo.cpp",           Ok((2, None, false))),
            ("gcc -S sub/foo.c",             Ok((2, None, true))),
            ("gcc -c x.c -ox.o",             Ok((2, Some(Output::Joined(3)), false))),
            ("gcc -c x.c a.o",               Ok((2, Some(Output::Word(3)), false))),
            ("gcc -include y.c -c x.c",      Ok((4, None, false))),
            ("gcc -E x.c",                   Err("-E: preprocessing only")),
            ("gcc x.c -o x",                 Err("not a compile (no -c or -S)")),
            ("gcc -c x.c y.c",               Err("several source files")),
            ("gcc -c x.c -o a.o -o b.o",     Err("several outputs: called for link?")),
            ("gcc -c x.c a.o b.o",           Err("several outputs: called for link?")),
            ("gcc -c a.s",                   Err("no source file distcc distributes")),
            ("gcc -c",                       Err("no source file distcc distributes")),
            ("gcc -c x.c -o",                Err("an option is missing its value")),
        ];
        for (line, expected) in cases {
            let a = argv(line);
            let got = compile_shape(&a, &Tokens::of(&a)).map(|c| (c.input, c.output, c.assemble_only));
            assert_eq!(got, *expected, "{line}");
        }
    }

    #[test]
    fn tokens_read_values_and_appended_arguments() {
        let mut a = argv("gcc -I inc -c x.c -xc");
        let mut tokens = Tokens::of(&a);
        a.extend(argv("-o x.o"));
        tokens.read(&a, 6);
        let got: Vec<String> = tokens
            .iter()
            .map(|t| match t {
                Token::Word(i) => format!("word {i}"),
                Token::Unknown(i) => format!("unknown {i}"),
                Token::Known(at, o, v) => format!("{} {at} {v:?}", o.name),
            })
            .collect();
        assert_eq!(
            got,
            [
                "-I 1 Separate(2)",
                "-c 3 None",
                "word 4",
                "-x 5 Joined",
                "-o 6 Separate(7)"
            ]
        );
        assert!(!tokens.has(Pipe));
        assert!(Tokens::of(&argv("gcc -save-temps=obj")).has(Pipe));
    }

    /// Arguments appended to a command (the scan's `-o`, the rewriting's
    /// `-target`) are read as if the whole command were read at once, also
    /// after an option that was missing its value.
    #[test]
    fn appended_arguments_read_as_one_reading() {
        for (line, appended) in [
            ("gcc -c x.c", "-o x.o"),
            ("clang -c x.c -o", "-target x86_64-pc-linux-gnu"),
            ("clang -c x.c -I", "-target x86_64-pc-linux-gnu"),
            ("clang -c x.c -Xassembler", "-o x.o"),
            ("gcc", "-c x.c"),
        ] {
            let mut a = argv(line);
            let mut tokens = Tokens::of(&a);
            let end = a.len();
            a.extend(argv(appended));
            tokens.read(&a, end);
            assert_eq!(tokens, Tokens::of(&a), "{line} + {appended}");
        }
    }

    /// A target is given by a target option, never by the value of another.
    #[test]
    #[rustfmt::skip]
    fn target_options_are_options_not_values() {
        // command                                   a target given
        let cases: &[(&str, bool)] = &[
            ("clang -target arm-linux-gnueabihf -c x.c", true),
            ("clang --target=arm-linux-gnueabihf -c x.c", true),
            ("clang -target=arm -c x.c",                 true),
            ("clang --target arm -c x.c",                true),
            ("clang -c x.c -target",                     true),
            ("clang -c x.c",                             false),
            ("clang -D-target -c x.c",                   false),
            ("clang -D -target -c x.c",                  false),
            ("clang -I -target=x -c x.c",                false),
            ("clang -c x.c -o --target=x.o",             false),
            ("clang -MT --target -c x.c",                false),
            ("clang -targetx -c x.c",                    false),
            ("clang --targets -c x.c",                   false),
            ("-target -c x.c",                           false),
        ];
        for (line, given) in cases {
            assert_eq!(Tokens::of(&argv(line)).has(Target), *given, "{line}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn bitcode_requests_are_options_not_values() {
        // command                                   asks for bitcode
        let cases: &[(&str, bool)] = &[
            ("clang -flto -c x.c",                       true),
            ("clang -flto=thin -c x.c",                  true),
            ("gcc -flto=auto -c x.c",                    true),
            ("gcc -flto-partition=one -c x.c",           true),
            ("clang -emit-llvm -c x.c",                  true),
            ("clang -fno-lto -flto -c x.c",              true),
            ("clang -c x.c",                             false),
            ("clang -fno-lto -c x.c",                    false),
            ("clang -flto=none -c x.c",                  false),
            ("clang -emit-llvm=x -c x.c",                false),
            ("clang -c x.c -o -flto.o",                  false),
            ("clang -c x.c -MF -emit-llvm",              false),
            ("clang -D-flto -c x.c",                     false),
            ("clang -D -emit-llvm -c x.c",               false),
            ("clang -include -flto -c x.c",              false),
            ("clang -Xclang -emit-llvm -c x.c",          false),
            ("-flto -c x.c",                             false),
        ];
        for (line, asks) in cases {
            let a = argv(line);
            assert_eq!(asks_for_bitcode(&a, &Tokens::of(&a)), *asks, "{line}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn the_first_source_is_a_word() {
        // command                                   index of the first source
        let cases: &[(&str, Option<usize>)] = &[
            ("gcc -c x.c -o x.o",                        Some(2)),
            ("gcc -c x.c y.cc",                          Some(2)),
            ("gcc -include y.c -c x.c",                  Some(4)),
            ("gcc -o x.c -c y.c",                        Some(4)),
            ("gcc -MF a.c -MT b.c -c",                   None),
            ("gcc -c -",                                 None),
            ("gcc -Dx.c -c a.s",                         None),
            ("x.c -c",                                   None),
        ];
        for (line, first) in cases {
            let a = argv(line);
            assert_eq!(Tokens::of(&a).first_source(&a), *first, "{line}");
        }
    }
}
