//! A file's directives, parsed once and cached: what each directive does, where each conditional group's next branch is, and the file's include guard.

use std::hash::Hasher;
use std::sync::Arc;

use super::lex::{self, Kind, Lexed, Mode, Text, Tok};

/// A macro definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Macro {
    pub name: Text,
    /// The parameters of a function-like macro (`__VA_ARGS__` last for `...`).
    pub params: Option<Vec<Text>>,
    pub variadic: bool,
    pub body: Vec<Tok>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeKind {
    Include,
    Next,
    Import,
}

#[derive(Clone, Debug)]
pub enum Dir {
    Include(IncludeKind, Vec<Tok>),
    Define(Arc<Macro>),
    Undef(Text),
    /// `#if` and `#elif` with their expression.
    If(Vec<Tok>),
    Elif(Vec<Tok>),
    /// `#ifdef`, `#ifndef`, `#elifdef`, `#elifndef`: the tokens after the
    /// name and whether the test is negated.
    Ifdef(Vec<Tok>, bool),
    Elifdef(Vec<Tok>, bool),
    Else,
    Endif,
    PragmaOnce,
    PushMacro(Text),
    PopMacro(Text),
    /// `#line`, `#warning`, `#pragma`, the null directive...: nothing for the scanner.
    Ignored,
    /// Something the scanner cannot follow, or an error the compiler would
    /// report, in an active group: the reason.
    Fail(String),
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub line: u32,
    pub dir: Dir,
    /// For a conditional directive: the index of the next `#elif`, `#else`
    /// or `#endif` of its group.
    pub next: u32,
    /// A hash of the directive's tokens (not its line), for the keys of
    /// checkpoints in a main file.
    pub hash: u64,
}

/// A file as the scanner follows it.
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    /// The macro of an include guard around the whole file.
    pub guard: Option<Text>,
    /// Why the file cannot be followed at all.
    pub error: Option<String>,
    /// The bytes it was parsed from, and a hash of them (gcc's `#pragma
    /// once` takes files of the same contents, size and mtime for one).
    pub size: usize,
    pub hash: u64,
}

/// Lexes and parses a file.
pub fn parse(raw: &[u8], mode: Mode) -> Parsed {
    let hash = {
        let mut h = super::hash::Fx::default();
        h.write(raw);
        h.finish()
    };
    let lexed = match lex::lex(raw, mode) {
        Ok(l) => l,
        Err(why) => {
            return Parsed {
                error: Some(why.to_string()),
                size: raw.len(),
                hash,
                ..Parsed::default()
            }
        }
    };
    let mut entries: Vec<Entry> = lexed
        .lines
        .iter()
        .map(|l| Entry {
            line: l.line,
            dir: directive(&l.toks),
            next: 0,
            hash: tokens_hash(&l.toks),
        })
        .collect();
    let error = link_groups(&mut entries).err();
    let guard = if error.is_none() {
        guard_of(&lexed, &entries)
    } else {
        None
    };
    Parsed {
        entries,
        guard,
        error,
        size: raw.len(),
        hash,
    }
}

/// A hash of a directive's tokens: SipHash, so that two different lines
/// of honest sources do not meet.
fn tokens_hash(toks: &[Tok]) -> u64 {
    use std::hash::Hash;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    toks.hash(&mut h);
    h.finish()
}

/// Sets each conditional's `next`; an error for unbalanced groups.
fn link_groups(entries: &mut [Entry]) -> Result<(), String> {
    let mut open: Vec<(usize, bool)> = Vec::new();
    for i in 0..entries.len() {
        match entries[i].dir {
            Dir::If(_) | Dir::Ifdef(..) => open.push((i, false)),
            Dir::Elif(_) | Dir::Elifdef(..) | Dir::Else | Dir::Endif => {
                let line = entries[i].line;
                let Some((at, had_else)) = open.pop() else {
                    return Err(format!(
                        "a conditional directive without #if on line {line}"
                    ));
                };
                if had_else && !matches!(entries[i].dir, Dir::Endif) {
                    return Err(format!("a branch after #else on line {line}"));
                }
                entries[at].next = i as u32;
                let is_else = matches!(entries[i].dir, Dir::Else);
                if !matches!(entries[i].dir, Dir::Endif) {
                    open.push((i, is_else));
                }
            }
            _ => {}
        }
    }
    match open.first() {
        Some(&(at, _)) => Err(format!(
            "an unterminated conditional from line {}",
            entries[at].line
        )),
        None => Ok(()),
    }
}

/// `#ifndef X` (or `#if !defined X`) around everything, with no other text.
fn guard_of(lexed: &Lexed, entries: &[Entry]) -> Option<Text> {
    let first = lexed.lines.first()?;
    if first.text_before || lexed.text_after || entries[0].next as usize != entries.len() - 1 {
        return None;
    }
    let name = match &entries[0].dir {
        Dir::Ifdef(t, true) if t.len() == 1 => &t[0],
        Dir::If(t) => match t.as_slice() {
            [not, d, n] if not.is(b"!") && d.is(b"defined") => n,
            [not, d, l, n, r] if not.is(b"!") && d.is(b"defined") && l.is(b"(") && r.is(b")") => n,
            _ => return None,
        },
        _ => return None,
    };
    (name.kind == Kind::Ident).then(|| name.text.clone())
}

fn directive(toks: &[Tok]) -> Dir {
    let Some(first) = toks.first() else {
        return Dir::Ignored;
    };
    let rest = || toks[1..].to_vec();
    match (first.kind, &*first.text) {
        (Kind::Number, _) => Dir::Ignored,
        (Kind::Ident, b"include") => Dir::Include(IncludeKind::Include, rest()),
        (Kind::Ident, b"include_next") => Dir::Include(IncludeKind::Next, rest()),
        (Kind::Ident, b"import") => Dir::Include(IncludeKind::Import, rest()),
        (Kind::Ident, b"define") => define(&toks[1..]),
        (Kind::Ident, b"undef") => match toks.get(1) {
            Some(t) if t.kind == Kind::Ident => Dir::Undef(t.text.clone()),
            _ => Dir::Fail("#undef without a macro name".into()),
        },
        (Kind::Ident, b"if") => Dir::If(rest()),
        (Kind::Ident, b"elif") => Dir::Elif(rest()),
        (Kind::Ident, b"ifdef") => Dir::Ifdef(rest(), false),
        (Kind::Ident, b"ifndef") => Dir::Ifdef(rest(), true),
        (Kind::Ident, b"elifdef") => Dir::Elifdef(rest(), false),
        (Kind::Ident, b"elifndef") => Dir::Elifdef(rest(), true),
        (Kind::Ident, b"else") => Dir::Else,
        (Kind::Ident, b"endif") => Dir::Endif,
        (Kind::Ident, b"pragma") => pragma(&toks[1..]),
        (Kind::Ident, b"line" | b"warning" | b"ident" | b"sccs" | b"assert" | b"unassert") => {
            Dir::Ignored
        }
        (Kind::Ident, b"error") => Dir::Fail("#error".into()),
        _ => Dir::Fail(format!(
            "an unknown directive #{}",
            String::from_utf8_lossy(&first.text)
        )),
    }
}

fn pragma(toks: &[Tok]) -> Dir {
    let word = |k: usize| toks.get(k).map(|t| &*t.text);
    let string_arg = || match toks.get(2) {
        Some(t) if toks[1].is(b"(") && t.kind == Kind::Str && t.text.len() >= 2 => {
            Some(Text::from(&t.text[1..t.text.len() - 1]))
        }
        _ => None,
    };
    match word(0) {
        Some(b"once") => Dir::PragmaOnce,
        Some(b"push_macro") => string_arg().map_or(
            Dir::Fail("a malformed #pragma push_macro".into()),
            Dir::PushMacro,
        ),
        Some(b"pop_macro") => string_arg().map_or(
            Dir::Fail("a malformed #pragma pop_macro".into()),
            Dir::PopMacro,
        ),
        Some(b"GCC") if word(1) == Some(b"dependency") => {
            Dir::Fail("#pragma GCC dependency".into())
        }
        Some(b"include_alias") => Dir::Fail("#pragma include_alias".into()),
        _ => Dir::Ignored,
    }
}

/// `#define NAME body` or `#define NAME(params) body`.
fn define(toks: &[Tok]) -> Dir {
    match macro_of(toks) {
        Ok(m) => Dir::Define(Arc::new(m)),
        Err(why) => Dir::Fail(why.into()),
    }
}

/// Reads a definition: the tokens after `#define`.
pub fn macro_of(toks: &[Tok]) -> Result<Macro, &'static str> {
    let name = match toks.first() {
        Some(t) if t.kind == Kind::Ident && &*t.text != b"defined" => t.text.clone(),
        _ => return Err("#define without a valid macro name"),
    };
    let mut i = 1;
    let mut params = None;
    let mut variadic = false;
    if toks.get(1).is_some_and(|t| t.is(b"(") && !t.space) {
        let (p, v, end) = params_of(toks)?;
        params = Some(p);
        variadic = v;
        i = end;
    }
    let mut body: Vec<Tok> = toks[i..].to_vec();
    for t in body.iter_mut() {
        lex::canonical(t);
    }
    if let Some(t) = body.first_mut() {
        t.space = false;
    }
    if body.first().is_some_and(|t| t.is(b"##")) || body.last().is_some_and(|t| t.is(b"##")) {
        return Err("'##' at either end of a macro body");
    }
    if let Some(ps) = &params {
        check_stringize(&body, ps)?;
    }
    Ok(Macro {
        name,
        params,
        variadic,
        body,
    })
}

/// The parameter list from `(`: names, whether variadic, and the index after `)`.
fn params_of(toks: &[Tok]) -> Result<(Vec<Text>, bool, usize), &'static str> {
    let mut params = Vec::new();
    let mut i = 2;
    if toks.get(i).is_some_and(|t| t.is(b")")) {
        return Ok((params, false, i + 1));
    }
    loop {
        let t = toks.get(i).ok_or("an unterminated macro parameter list")?;
        if t.is(b"...") {
            params.push(Text::from(&b"__VA_ARGS__"[..]));
            i += 1;
            return close_params(toks, i).map(|end| (params, true, end));
        }
        if t.kind != Kind::Ident {
            return Err("a malformed macro parameter list");
        }
        params.push(t.text.clone());
        i += 1;
        match toks.get(i) {
            Some(t) if t.is(b",") => i += 1,
            Some(t) if t.is(b")") => return Ok((params, false, i + 1)),
            Some(t) if t.is(b"...") => {
                return close_params(toks, i + 1).map(|end| (params, true, end))
            }
            _ => return Err("a malformed macro parameter list"),
        }
    }
}

fn close_params(toks: &[Tok], i: usize) -> Result<usize, &'static str> {
    match toks.get(i) {
        Some(t) if t.is(b")") => Ok(i + 1),
        _ => Err("a malformed variadic macro parameter list"),
    }
}

/// In a function-like macro, `#` must be followed by a parameter (or `__VA_OPT__`).
fn check_stringize(body: &[Tok], params: &[Text]) -> Result<(), &'static str> {
    for (k, t) in body.iter().enumerate() {
        if t.is(b"#") {
            match body.get(k + 1) {
                Some(n)
                    if n.kind == Kind::Ident
                        && (params.contains(&n.text) || &*n.text == b"__VA_OPT__") => {}
                _ => return Err("'#' is not followed by a macro parameter"),
            }
        }
    }
    Ok(())
}
