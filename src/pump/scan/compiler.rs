//! What the scanner asks the compiler itself: its predefined macros, pre-included files and `__has_*` operators (`-dD -E`), its include search lists (`-E -v`), and the value of a `__has_*` operand.

use super::hash::{FastMap, FastSet};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::directives::{self, Dir, Macro};
use super::expr;
use super::lex::{self, Kind, Mode, Text, Tok};
use crate::masquerade;

/// The compiler's answers for one set of driver flags.
#[derive(Debug)]
pub struct Info {
    pub macros: Arc<FastMap<Text, Arc<Macro>>>,
    /// Names `defined` sees that are no macros of the table: `__has_include`,
    /// `__FILE__`, ...
    pub special: FastSet<Text>,
    /// The `__has_*`-like operators whose values the compiler gives.
    pub features: FastSet<Text>,
    pub mode: Mode,
    pub lang: expr::Lang,
    /// gcc's implicit `-include` (stdc-predef.h), by the name a bracket search finds it.
    pub preincludes: Vec<Vec<u8>>,
    pub search: Search,
    /// gcc, not clang: its `#pragma once` also skips a file with the same
    /// contents, size and mtime as one already marked, and in a directive
    /// the first token of a macro's expansion has no space before it (which
    /// `#` shows).
    pub gcc: bool,
}

/// Include search lists as the compiler prints them under `-v`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Search {
    /// `-iquote` dirs (searched for `"..."` only).
    pub quote: Vec<String>,
    /// The rest, in order.
    pub bracket: Vec<String>,
    /// Dirs of the command the compiler ignored because they did not exist.
    pub absent: Vec<String>,
}

const SPECIAL: [&str; 28] = [
    "__has_include",
    "__has_include_next",
    "__has_builtin",
    "__has_attribute",
    "__has_cpp_attribute",
    "__has_c_attribute",
    "__has_feature",
    "__has_extension",
    "__has_warning",
    "__has_declspec_attribute",
    "__is_identifier",
    "__has_constexpr_builtin",
    "__is_target_arch",
    "__is_target_vendor",
    "__is_target_os",
    "__is_target_environment",
    "__has_embed",
    "__building_module",
    "__FILE__",
    "__LINE__",
    "__DATE__",
    "__TIME__",
    "__TIMESTAMP__",
    "__COUNTER__",
    "__INCLUDE_LEVEL__",
    "__BASE_FILE__",
    "__FILE_NAME__",
    "__is_target_variant_os",
];

const MARK: &str = "__distcc_rs_defined_";

/// How long one query of the compiler may take.
const QUERY_TIME: Duration = Duration::from_secs(60);

/// Runs a compiler with its output captured, in the C locale; killed if it
/// runs past [`QUERY_TIME`].
fn run(cwd: &Path, argv: &[String], stdin: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let (program, path) = real_compiler(&argv[0])?;
    let mut command = Command::new(program);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let mut child = command
        .args(&argv[1..])
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let mut input = child.stdin.take().expect("piped stdin");
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || input.write_all(text.as_bytes()));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_bounded(&mut child).map_err(|e| format!("{}: {e}", argv[0]))?;
    let _ = writer.join();
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    let Some(status) = status else {
        return Err(format!("{} took too long on the scanner's query", argv[0]));
    };
    if !status.success() {
        let err = String::from_utf8_lossy(&stderr);
        let last = err
            .lines()
            .find(|l| l.contains("error"))
            .or_else(|| err.lines().rfind(|l| !l.trim().is_empty()))
            .unwrap_or("");
        return Err(format!("{} failed on the scanner's query: {last}", argv[0]));
    }
    Ok((stdout, stderr))
}

/// The compiler to run for a command's compiler name: never distcc (a
/// masquerade link first on PATH would run distcc, and so the include
/// server, again), with PATH for it to find its own programs.
fn real_compiler(name: &str) -> Result<(PathBuf, Option<OsString>), String> {
    let refuse = || Err(format!("the compiler {name} is distcc"));
    if masquerade::is_distcc_name(OsStr::new(name)) {
        return refuse();
    }
    let self_exe = masquerade::self_exe().unwrap_or_default();
    if name.contains('/') {
        if masquerade::is_masquerade(Path::new(name), &self_exe) {
            return refuse();
        }
        return Ok((PathBuf::from(name), None));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    match masquerade::find_real_compiler(OsStr::new(name), &path, &self_exe) {
        Some(real) => Ok((real.path, real.path_tweaked.then_some(real.child_path))),
        None => Err(format!("no compiler {name} on PATH")),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// The exit status, or `None` (the child killed) past the deadline.
fn wait_bounded(child: &mut Child) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + QUERY_TIME;
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Asks the compiler for everything that depends on the driver flags.
pub fn query(cwd: &Path, compiler: &str, lang: &str, driver: &[String]) -> Result<Info, String> {
    let mut argv = vec![compiler.to_string()];
    argv.extend(driver.iter().cloned());
    argv.extend(["-x", lang, "-dD", "-E", "-v", "-"].map(String::from));
    let probe: String = SPECIAL
        .iter()
        .map(|s| format!("#ifdef {s}\n#define {MARK}{s}\n#endif\n"))
        .collect();
    let (stdout, stderr) = run(cwd, &argv, &probe)?;
    let (defines, preincluded, special) = read_dump(&stdout);
    let macros = macro_table(&defines)?;
    let search = search_lists(&stderr)?;
    let preincludes = preincluded
        .iter()
        .filter_map(|p| bracket_name(p, &search.bracket))
        .collect();
    let features: FastSet<Text> = special
        .iter()
        .filter(|s| {
            s.starts_with(b"__has_") || s.starts_with(b"__is_") || &***s == b"__building_module"
        })
        .filter(|s| !matches!(&***s, b"__has_include" | b"__has_include_next"))
        .cloned()
        .collect();
    let (mode, lang) = modes(&macros);
    Ok(Info {
        gcc: !macros.contains_key(&b"__clang__"[..]),
        macros: Arc::new(macros),
        special,
        features,
        mode,
        lang,
        preincludes,
        search,
    })
}

/// The search lists with the command's own search options.
pub fn search(
    cwd: &Path,
    compiler: &str,
    lang: &str,
    driver: &[String],
    opts: &[String],
) -> Result<Search, String> {
    let mut argv = vec![compiler.to_string()];
    argv.extend(driver.iter().cloned());
    argv.extend(opts.iter().cloned());
    argv.extend(["-x", lang, "-E", "-v", "-", "-o", "/dev/null"].map(String::from));
    let (_, stderr) = run(cwd, &argv, "")?;
    search_lists(&stderr)
}

/// The compiler's expansions of `NAME(ARG)` operands (e.g.
/// `__has_builtin(x)`), all in one run; an error if any is not a number.
pub fn features(
    cwd: &Path,
    compiler: &str,
    lang: &str,
    driver: &[String],
    operands: &[(Vec<u8>, Vec<u8>)],
) -> Result<Vec<Tok>, String> {
    let mut argv = vec![compiler.to_string()];
    argv.extend(driver.iter().cloned());
    argv.extend(["-x", lang, "-E", "-P", "-"].map(String::from));
    let mut input = String::new();
    for (i, (name, arg)) in operands.iter().enumerate() {
        let (name, arg) = (String::from_utf8_lossy(name), String::from_utf8_lossy(arg));
        if arg.contains('\n') {
            return Err("a newline in a __has_ operand".into());
        }
        input.push_str(&format!("__distcc_rs_value_{i} {name}({arg})\n"));
    }
    let (stdout, _) = run(cwd, &argv, &input)?;
    let text = String::from_utf8_lossy(&stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    (0..operands.len())
        .map(|i| {
            let mark = format!("__distcc_rs_value_{i}");
            let at = words.iter().position(|w| *w == mark);
            let value = at.and_then(|k| words.get(k + 1)).copied().unwrap_or("");
            match lex::one_token(value.as_bytes()) {
                Some(Kind::Number) => Ok(Tok::new(Kind::Number, value.as_bytes(), true)),
                _ => Err(format!(
                    "the compiler gives '{value}' for a __has_ operand, not a number"
                )),
            }
        })
        .collect()
}

/// From `-dD -E` output: the predefined `#define` lines, the files the
/// compiler pre-includes, and the special names found defined.
fn read_dump(out: &[u8]) -> (Vec<u8>, Vec<PathBuf>, FastSet<Text>) {
    let mut defines = Vec::new();
    let mut pre = Vec::new();
    let mut special = FastSet::default();
    let mut stack: Vec<Vec<u8>> = vec![b"<stdin>".to_vec()];
    for line in out.split(|&c| c == b'\n') {
        if let Some((name, flags)) = linemarker(line) {
            match flags.first() {
                Some(1) => {
                    if stack.last().is_some_and(|t| t.starts_with(b"<")) && !name.starts_with(b"<")
                    {
                        pre.push(PathBuf::from(String::from_utf8_lossy(&name).into_owned()));
                    }
                    stack.push(name);
                }
                Some(2) => {
                    stack.pop();
                    if let Some(t) = stack.last_mut() {
                        *t = name;
                    }
                }
                _ => {
                    if let Some(t) = stack.last_mut() {
                        *t = name;
                    }
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix(format!("#define {MARK}").as_bytes()) {
            special.insert(Text::from(rest.split(|&c| c == b' ').next().unwrap_or(b"")));
            continue;
        }
        let builtin = stack.last().is_some_and(|t| t.starts_with(b"<"));
        if builtin && (line.starts_with(b"#define ") || line.starts_with(b"#undef ")) {
            defines.extend_from_slice(line);
            defines.push(b'\n');
        }
    }
    (defines, pre, special)
}

/// `# N "name" flags...`: the name (unescaped) and flags.
fn linemarker(line: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let rest = line.strip_prefix(b"# ")?;
    let sp = rest.iter().position(|&c| c == b' ')?;
    if !rest[..sp].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let rest = rest[sp + 1..].strip_prefix(b"\"")?;
    let mut name = Vec::new();
    let mut i = 0;
    while i < rest.len() && rest[i] != b'"' {
        if rest[i] == b'\\' && i + 1 < rest.len() {
            i += 1;
        }
        name.push(rest[i]);
        i += 1;
    }
    let flags = String::from_utf8_lossy(rest.get(i + 1..).unwrap_or(b""))
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    Some((name, flags))
}

fn macro_table(defines: &[u8]) -> Result<FastMap<Text, Arc<Macro>>, String> {
    let parsed = directives::parse(
        defines,
        Mode {
            line_comments: true,
            ..Mode::default()
        },
    );
    if let Some(e) = parsed.error {
        return Err(format!("the compiler's macros: {e}"));
    }
    let mut table = FastMap::default();
    for e in parsed.entries {
        match e.dir {
            Dir::Define(m) => {
                table.insert(m.name.clone(), m);
            }
            Dir::Undef(n) => {
                table.remove(&n);
            }
            Dir::Fail(why) => return Err(format!("the compiler's macros: {why}")),
            _ => {}
        }
    }
    Ok(table)
}

/// Reads the search lists from `-v` output.
fn search_lists(stderr: &[u8]) -> Result<Search, String> {
    let text = String::from_utf8_lossy(stderr);
    let mut s = Search::default();
    let mut part = 0;
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("ignoring nonexistent directory \"") {
            s.absent.push(d.trim_end_matches('"').to_string());
        } else if line.starts_with("#include \"...\" search starts here:") {
            part = 1;
        } else if line.starts_with("#include <...> search starts here:") {
            part = 2;
        } else if line.starts_with("End of search list.") {
            return Ok(s);
        } else if part > 0 && line.starts_with(' ') {
            let dir = line.trim_start_matches(' ');
            if dir.ends_with("(framework directory)") || dir.ends_with("(headermap)") {
                return Err(format!("a search dir the scanner does not follow: {dir}"));
            }
            if part == 1 {
                &mut s.quote
            } else {
                &mut s.bracket
            }
            .push(dir.to_string());
        }
    }
    Err("no search list in the compiler's -v output".into())
}

/// `dir/NAME` for the first bracket dir that holds the path.
fn bracket_name(path: &Path, bracket: &[String]) -> Option<Vec<u8>> {
    bracket.iter().find_map(|d| {
        let rest = path.strip_prefix(d).ok()?;
        Some(rest.to_string_lossy().into_owned().into_bytes())
    })
}

/// The lexing mode and `#if` arithmetic of the language the macros describe.
fn modes(m: &FastMap<Text, Arc<Macro>>) -> (Mode, expr::Lang) {
    let value = |name: &[u8]| -> Option<i64> {
        let body = &m.get(name)?.body;
        let t = body.first()?;
        let digits: String = String::from_utf8_lossy(&t.text)
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let has = |name: &[u8]| m.contains_key(name);
    let cxx = value(b"__cplusplus");
    let stdc = value(b"__STDC_VERSION__");
    let strict = has(b"__STRICT_ANSI__");
    let mode = Mode {
        raw_strings: cxx.is_some_and(|v| v >= 201103),
        digit_separators: cxx.is_some_and(|v| v >= 201402) || stdc.is_some_and(|v| v > 201710),
        line_comments: cxx.is_some() || stdc.is_some() || !strict,
        trigraphs: strict && cxx.is_none_or(|v| v < 201703),
        c: cxx.is_none(),
    };
    let wchar_min_zero = m
        .get(&b"__WCHAR_MIN__"[..])
        .and_then(|w| w.body.first())
        .is_some_and(|t| t.text.starts_with(b"0"));
    let lang = expr::Lang {
        cplusplus: cxx.is_some(),
        char_unsigned: has(b"__CHAR_UNSIGNED__"),
        wchar_unsigned: has(b"__WCHAR_UNSIGNED__") || wchar_min_zero,
        wchar_bits: value(b"__SIZEOF_WCHAR_T__").map_or(32, |v| (v * 8) as u32),
        negative_shift_reverses: !has(b"__clang__"),
    };
    (mode, lang)
}
