//! A compile's command line as the scanner reads it, through the shared option table: the source and its language, the flags the compiler's own macros and search dirs depend on, the search options, and the `-D`/`-U`/`-imacros`/`-include` steps in order.

use crate::options::{self, Role, Token, Tokens, Value};

use super::NotCovered;

/// One `-D` or `-U`, in command-line order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MacroOp {
    Define(String),
    Undef(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Command {
    pub compiler: String,
    /// The source as the command names it.
    pub source: String,
    /// `c`, `c++`, `objective-c` or `objective-c++`.
    pub lang: &'static str,
    /// Flags that can change the compiler's predefined macros or default
    /// include dirs (for the `-dD -E -v` query).
    pub driver: Vec<String>,
    /// The search-dir options, each with its value, in order.
    pub search: Vec<String>,
    pub macros: Vec<MacroOp>,
    pub imacros: Vec<String>,
    pub includes: Vec<String>,
    /// `-fmacro-prefix-map` or `-ffile-prefix-map`: `__FILE__` is rewritten.
    pub prefix_maps: bool,
}

fn refuse<T>(why: String) -> Result<T, NotCovered> {
    Err(NotCovered(why))
}

/// Reads a command line (compiler first).
pub fn read(argv: &[String]) -> Result<Command, NotCovered> {
    let bytes: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    let tokens = Tokens::of(&bytes);
    let mut cmd = Command {
        compiler: argv
            .first()
            .cloned()
            .ok_or(NotCovered("an empty command".into()))?,
        ..Command::default()
    };
    let mut lang: Option<&'static str> = None;
    let mut compile = false;
    for token in tokens.iter() {
        match token {
            Token::Word(i) => source(&mut cmd, &argv[i], lang)?,
            Token::Unknown(i) => unknown(&mut cmd, &argv[i])?,
            Token::Known(at, o, Value::Missing) => {
                let _ = (at, o);
                return refuse(format!("{} is missing its value", argv[at]));
            }
            Token::Known(at, o, v) => {
                let value =
                    String::from_utf8_lossy(options::value_of(&bytes, at, o, v)).into_owned();
                let whole: Vec<String> = match v {
                    Value::Separate(j) => vec![argv[at].clone(), argv[j].clone()],
                    _ => vec![argv[at].clone()],
                };
                match o.role {
                    Role::Compile | Role::CompileToAssembler => compile = true,
                    Role::Language => lang = language_option(&value)?,
                    _ => known(&mut cmd, o.name, o.role, value, whole)?,
                }
            }
        }
    }
    if !compile {
        return refuse("not a compile (no -c or -S)".into());
    }
    if cmd.source.is_empty() {
        return refuse("no source file".into());
    }
    Ok(cmd)
}

fn language_option(value: &str) -> Result<Option<&'static str>, NotCovered> {
    Ok(Some(match value {
        "c" => "c",
        "c++" => "c++",
        "objective-c" => "objective-c",
        "objective-c++" => "objective-c++",
        "none" => return Ok(None),
        _ => return refuse(format!("-x {value}: a language the scanner does not read")),
    }))
}

fn source(cmd: &mut Command, word: &str, lang: Option<&'static str>) -> Result<(), NotCovered> {
    let ext = word.rsplit_once('.').map_or("", |(_, e)| e);
    let by_ext = match ext {
        "c" => Some("c"),
        "cc" | "cpp" | "cxx" | "cp" | "c++" | "C" | "CPP" => Some("c++"),
        "m" => Some("objective-c"),
        "mm" | "M" => Some("objective-c++"),
        _ => None,
    };
    let Some(l) = lang.or(by_ext) else {
        return refuse(format!("{word}: not a C or C++ source"));
    };
    if by_ext.is_none() && !matches!(ext, "h" | "hpp" | "hh" | "inc") {
        return refuse(format!("{word}: not a C or C++ source"));
    }
    if !cmd.source.is_empty() {
        return refuse("more than one source file".into());
    }
    cmd.source = word.to_string();
    cmd.lang = l;
    Ok(())
}

/// An option the table does not know: accepted only where the scanner
/// knows it takes no separate value and what it changes.
fn unknown(cmd: &mut Command, arg: &str) -> Result<(), NotCovered> {
    const QUERY: [&str; 7] = [
        "-O",
        "-std=",
        "-ansi",
        "-pthread",
        "--gcc-toolchain=",
        "-resource-dir=",
        "--rtlib=",
    ];
    const IGNORE: [&str; 19] = [
        "-W",
        "-g",
        "-w",
        "-pedantic",
        "-H",
        "-P",
        "-C",
        "-p",
        "-static",
        "-shared",
        "-s",
        "-rdynamic",
        "-nostdlib",
        "-nodefaultlibs",
        "-nostartfiles",
        "-pie",
        "-no-pie",
        "--param=",
        "-Qunused-arguments",
    ];
    let refused = [
        "-traditional",
        "-trigraphs",
        "-resource-dir",
        "-iframework",
        "-cxx-isystem",
        "-I-",
    ];
    if refused
        .iter()
        .any(|r| arg == *r || (arg.starts_with(r) && r.len() > 3 && *r != "-resource-dir"))
    {
        return refuse(format!("{arg}: an option the scanner does not follow"));
    }
    if QUERY.iter().any(|p| arg.starts_with(p)) || (arg.starts_with("-m") && arg.len() > 2) {
        cmd.driver.push(arg.to_string());
        return Ok(());
    }
    if (arg.starts_with("-W") && !arg.starts_with("-Wp,"))
        || IGNORE
            .iter()
            .any(|p| arg == *p || (p.len() > 2 && arg.starts_with(p)))
    {
        return Ok(());
    }
    if matches!(arg, "-CC" | "-pg" | "-v") || arg.starts_with("-g") {
        return Ok(());
    }
    refuse(format!("{arg}: an option the scanner does not know"))
}

/// An option of the table.
fn known(
    cmd: &mut Command,
    name: &str,
    role: Role,
    value: String,
    whole: Vec<String>,
) -> Result<(), NotCovered> {
    match (name, role) {
        ("-D", _) => cmd.macros.push(MacroOp::Define(value)),
        ("-U", _) => cmd.macros.push(MacroOp::Undef(value)),
        ("-include" | "--include", _) => cmd.includes.push(strip_eq(name, value)),
        ("-imacros" | "--imacros", _) => cmd.imacros.push(strip_eq(name, value)),
        (
            "-I" | "-iquote" | "-isystem" | "-idirafter" | "-iprefix" | "-iwithprefix"
            | "-iwithprefixbefore" | "-stdlib++-isystem",
            _,
        ) => {
            if name == "-I" && value == "-" {
                return refuse("-I-: an option the scanner does not follow".into());
            }
            cmd.search.extend(whole)
        }
        (n, _) if n.starts_with("--include-") && n != "--include-barrier" => {
            cmd.search.extend(whole)
        }
        (_, Role::Local(why)) => return refuse(why.to_string()),
        (_, Role::Preprocess) => return refuse("-E: preprocessing only".into()),
        (_, Role::Format | Role::Target) => cmd.driver.extend(whole),
        (_, Role::Flag) => flag(cmd, &whole[0])?,
        ("-Wp,", _) => preprocessor_option(&value)?,
        (
            "--sysroot" | "--sysroot=" | "-isysroot" | "-stdlib" | "-nostdinc" | "-nostdinc++"
            | "-undef" | "-B" | "--prefix",
            _,
        ) => cmd.driver.extend(whole),
        (
            "-F" | "--include-barrier" | "-specs" | "--specs" | "-Xclang" | "-Xpreprocessor"
            | "-include-pch" | "-fplugin" | "-fpass-plugin" | "-wrapper" | "-fdirectives-only",
            _,
        ) => {
            return refuse(format!(
                "{}: an option the scanner does not follow",
                whole.join(" ")
            ))
        }
        _ => {}
    }
    Ok(())
}

fn strip_eq(name: &str, value: String) -> String {
    match value.strip_prefix('=') {
        Some(v) if name.starts_with("--") => v.to_string(),
        _ => value,
    }
}

/// `-Wp,`: only the dependency-file forms, which do not change what is read.
fn preprocessor_option(value: &str) -> Result<(), NotCovered> {
    let parts: Vec<&str> = value.split(',').collect();
    match parts.as_slice() {
        ["-MD" | "-MMD" | "-MT" | "-MQ" | "-MF", _] | ["-MP"] => Ok(()),
        _ => refuse(format!(
            "-Wp,{value}: a preprocessor option the scanner does not follow"
        )),
    }
}

/// `-f…`: passed to the compiler's query unless it changes preprocessing in
/// a way the query does not show.
fn flag(cmd: &mut Command, arg: &str) -> Result<(), NotCovered> {
    const REFUSED: [&str; 12] = [
        "-fpreprocessed",
        "-fmodules",
        "-fmodule-",
        "-fimplicit-module",
        "-fcxx-modules",
        "-fms-compatibility",
        "-fms-extensions",
        "-fexec-charset",
        "-fwide-exec-charset",
        "-fno-dollars-in-identifiers",
        "-fprebuilt-module",
        "-fheader-unit",
    ];
    if REFUSED.iter().any(|p| arg.starts_with(p)) {
        return refuse(format!("{arg}: an option the scanner does not follow"));
    }
    if let Some(cs) = arg.strip_prefix("-finput-charset=") {
        if !cs.eq_ignore_ascii_case("utf-8") {
            return refuse(format!("{arg}: an input charset the scanner does not read"));
        }
    }
    if arg.starts_with("-fmacro-prefix-map") || arg.starts_with("-ffile-prefix-map") {
        cmd.prefix_maps = true;
        return Ok(());
    }
    let ignored = [
        "-fdiagnostics",
        "-fmessage-length",
        "-fdebug-prefix-map",
        "-fprofile",
        "-fno-show-column",
    ];
    if !ignored.iter().any(|p| arg.starts_with(p)) {
        cmd.driver.push(arg.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_command_splits_into_its_parts() {
        let c = read(&argv(
            "gcc -c -O2 -g -Wall -m32 -DA=1 -UB -I inc -iquote q -include k.h -o x.o -MD -MF x.d x.c -fPIC",
        ))
        .unwrap();
        assert_eq!(c.source, "x.c");
        assert_eq!(c.lang, "c");
        assert_eq!(c.driver, ["-O2", "-m32", "-fPIC"]);
        assert_eq!(c.search, ["-I", "inc", "-iquote", "q"]);
        assert_eq!(
            c.macros,
            [MacroOp::Define("A=1".into()), MacroOp::Undef("B".into())]
        );
        assert_eq!(c.includes, ["k.h"]);
    }

    #[test]
    fn dependency_options_through_wp_are_followed() {
        let c = read(&argv("gcc -Wp,-MD,d/.x.o.d -Wp,-MT,x.o -Wp,-MP -c x.c")).unwrap();
        assert_eq!(c.source, "x.c");
    }

    #[test]
    fn what_the_scanner_cannot_follow_is_refused() {
        for line in [
            "gcc -c x.c y.c",
            "gcc -c x.s",
            "gcc -E x.c",
            "gcc x.c",
            "gcc -c x.c -G 0",
            "gcc -c x.c -traditional-cpp",
            "gcc -c x.c -Wp,-DX",
            "gcc -c x.c -I-",
            "gcc -c x.c -Xclang -foo",
            "gcc -c -x assembler-with-cpp x.S",
            "gcc -c x.c -fpreprocessed",
            "clang -c x.c -fmodules",
            "gcc -c x.c -M",
        ] {
            assert!(read(&argv(line)).is_err(), "{line}");
        }
    }
}
