//! The scanner's lexer: a file's bytes to its directive lines, as tokens, with comments, line splices and literals skipped exactly.
//!
//! Only directive lines are kept; the text between them is lexed just far
//! enough to know where comments, strings and raw strings begin and end, so
//! that a `#` inside them is never taken for a directive.

use std::sync::Arc;

/// The bytes of a token or a name.
pub type Text = Arc<[u8]>;

/// What the language mode changes in lexing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Mode {
    /// C++11 and later: `R"d(...)d"` raw strings.
    pub raw_strings: bool,
    /// C++14 and C23: `'` inside numbers.
    pub digit_separators: bool,
    /// `//` comments (all but strict C90).
    pub line_comments: bool,
    /// Trigraphs are replaced (strict ISO modes): the scanner refuses files that hold one.
    pub trigraphs: bool,
    /// C, where a raw-string prefix is refused (gcc's GNU C modes take it, clang does not).
    pub c: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Ident,
    Number,
    Str,
    Char,
    /// `<...>` after `#include` or `__has_include(`.
    Header,
    Punct,
    /// A lone character that is no token of C, or an unterminated literal.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tok {
    pub kind: Kind,
    pub text: Text,
    /// Whitespace (or a comment) before it.
    pub space: bool,
}

impl Tok {
    pub fn new(kind: Kind, text: &[u8], space: bool) -> Tok {
        Tok {
            kind,
            text: text.into(),
            space,
        }
    }

    pub fn is(&self, punct: &[u8]) -> bool {
        matches!(self.kind, Kind::Punct | Kind::Ident) && &*self.text == punct
    }
}

/// One directive line: its physical line number, its tokens after the `#`
/// (the directive's name first), and whether text that is not a directive
/// came between the previous directive and this one.
#[derive(Clone, Debug)]
pub struct Line {
    pub line: u32,
    pub toks: Vec<Tok>,
    pub text_before: bool,
}

/// A file as directive lines.
#[derive(Clone, Debug, Default)]
pub struct Lexed {
    pub lines: Vec<Line>,
    /// Text after the last directive.
    pub text_after: bool,
}

/// Lexes a whole file; an error (an unterminated comment, a trigraph, a
/// raw string in C) makes the file one the scanner cannot read.
pub fn lex(raw: &[u8], mode: Mode) -> Result<Lexed, &'static str> {
    if mode.trigraphs && has_trigraph(raw) {
        return Err("a trigraph in a mode that replaces them");
    }
    let (s, starts) = splice(raw);
    let mut cur = Cursor {
        s: &s,
        i: 0,
        nl: 0,
        mode,
    };
    let mut out = Lexed::default();
    let mut text = false;
    while cur.i < s.len() {
        cur.skip_space()?;
        match cur.peek(0) {
            None => break,
            Some(b'\n') => {
                cur.i += 1;
                cur.nl += 1;
            }
            Some(b'#') => {
                cur.i += 1;
                out.lines.push(cur.directive(starts[cur.nl_at()], text)?);
                text = false;
            }
            Some(b'%') if cur.peek(1) == Some(b':') => {
                cur.i += 2;
                out.lines.push(cur.directive(starts[cur.nl_at()], text)?);
                text = false;
            }
            Some(_) => {
                text = true;
                cur.skip_text_line()?;
            }
        }
    }
    out.text_after = text;
    Ok(out)
}

fn has_trigraph(raw: &[u8]) -> bool {
    raw.windows(3)
        .any(|w| w[0] == b'?' && w[1] == b'?' && b"=/'()!<>-".contains(&w[2]))
}

/// Removes backslash-newlines (also with spaces between) and makes `\r\n`
/// and lone `\r` newlines. Returns the text and, for each logical line, the
/// physical line it starts on.
fn splice(raw: &[u8]) -> (Vec<u8>, Vec<u32>) {
    let mut out = Vec::with_capacity(raw.len());
    let mut starts = vec![1u32];
    let mut phys = 1u32;
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c == b'\\' {
            let mut j = i + 1;
            while j < raw.len() && (raw[j] == b' ' || raw[j] == b'\t') {
                j += 1;
            }
            let nl = match (raw.get(j), raw.get(j + 1)) {
                (Some(b'\r'), Some(b'\n')) => 2,
                (Some(b'\n' | b'\r'), _) => 1,
                _ => 0,
            };
            if nl > 0 {
                phys += 1;
                i = j + nl;
                continue;
            }
        }
        if c == b'\n' || c == b'\r' {
            i += if c == b'\r' && raw.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            phys += 1;
            out.push(b'\n');
            starts.push(phys);
            continue;
        }
        out.push(c);
        i += 1;
    }
    (out, starts)
}

pub fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80
}

pub fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

const PUNCTS: [&[u8]; 40] = [
    b"%:%:", b"...", b"<<=", b">>=", b"->*", b"<=>", b"->", b"++", b"--", b"<<", b">>", b"<=",
    b">=", b"==", b"!=", b"&&", b"||", b"*=", b"/=", b"%=", b"+=", b"-=", b"&=", b"^=", b"|=",
    b"##", b"<:", b":>", b"<%", b"%>", b"%:", b"::", b".*", b"#", b"(", b")", b",", b"<", b">",
    b"=",
];

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
    /// Newlines passed so far.
    nl: usize,
    mode: Mode,
}

impl Cursor<'_> {
    fn peek(&self, k: usize) -> Option<u8> {
        self.s.get(self.i + k).copied()
    }

    fn nl_at(&self) -> usize {
        self.nl
    }

    /// Skips spaces and comments on the current logical line (a block
    /// comment may run over newlines). True if anything was skipped.
    fn skip_space(&mut self) -> Result<bool, &'static str> {
        let start = self.i;
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(b' ' | b'\t' | b'\x0c' | b'\x0b' | b'\0'), _) => self.i += 1,
                (Some(b'/'), Some(b'*')) => self.block_comment()?,
                (Some(b'/'), Some(b'/')) if self.mode.line_comments => {
                    while !matches!(self.peek(0), None | Some(b'\n')) {
                        self.i += 1;
                    }
                }
                _ => return Ok(self.i > start),
            }
        }
    }

    fn block_comment(&mut self) -> Result<(), &'static str> {
        self.i += 2;
        loop {
            match self.peek(0) {
                None => return Err("an unterminated comment"),
                Some(b'*') if self.peek(1) == Some(b'/') => {
                    self.i += 2;
                    return Ok(());
                }
                Some(b'\n') => {
                    self.nl += 1;
                    self.i += 1;
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// Skips a line that is not a directive, through its newline.
    /// Also refuses a `_Pragma` that changes what is read (`once`,
    /// `push_macro`, `pop_macro`), which only a full expansion of the text
    /// would see.
    fn skip_text_line(&mut self) -> Result<(), &'static str> {
        let mut after_pragma = 0;
        loop {
            self.skip_space()?;
            match self.peek(0) {
                None => return Ok(()),
                Some(b'\n') => {
                    self.i += 1;
                    self.nl += 1;
                    return Ok(());
                }
                Some(_) => {
                    let start = self.i;
                    let kind = self.token(false)?;
                    let text = &self.s[start..self.i];
                    after_pragma = match (after_pragma, kind.kind) {
                        (_, Kind::Ident) if text == b"_Pragma" => 1,
                        (1, Kind::Punct) if text == b"(" => 2,
                        (2, Kind::Str) if refused_pragma(text) => {
                            return Err("a _Pragma outside a directive that changes what is read")
                        }
                        _ => 0,
                    };
                }
            }
        }
    }

    /// Lexes one directive line after its `#`, through its newline.
    fn directive(&mut self, line: u32, text_before: bool) -> Result<Line, &'static str> {
        let mut toks: Vec<Tok> = Vec::new();
        let mut angled = false;
        loop {
            let space = self.skip_space()?;
            match self.peek(0) {
                None => break,
                Some(b'\n') => {
                    self.i += 1;
                    self.nl += 1;
                    break;
                }
                Some(b'<') if angled => {
                    toks.push(self.header(space));
                    angled = false;
                    continue;
                }
                Some(_) => {}
            }
            let mut tok = self.token(true)?;
            tok.space = space;
            angled = wants_header(&toks, &tok);
            toks.push(tok);
        }
        Ok(Line {
            line,
            toks,
            text_before,
        })
    }

    /// `<...>` up to the `>` on this line; an `Other` token if there is none.
    fn header(&mut self, space: bool) -> Tok {
        let start = self.i;
        let mut j = self.i + 1;
        while j < self.s.len() && self.s[j] != b'>' && self.s[j] != b'\n' {
            j += 1;
        }
        if self.s.get(j) == Some(&b'>') {
            self.i = j + 1;
            Tok::new(Kind::Header, &self.s[start..self.i], space)
        } else {
            self.i += 1;
            Tok::new(Kind::Other, b"<", space)
        }
    }

    /// One token at the cursor (not a space, not a newline).
    fn token(&mut self, keep: bool) -> Result<Tok, &'static str> {
        let s = self.s;
        let start = self.i;
        let c = s[start];
        let kind = if is_ident_start(c) {
            while self.peek(0).is_some_and(is_ident_char) {
                self.i += 1;
            }
            match self.literal_after_prefix(start)? {
                Some(kind) => kind,
                None => Kind::Ident,
            }
        } else if c.is_ascii_digit()
            || (c == b'.' && self.peek(1).is_some_and(|d| d.is_ascii_digit()))
        {
            self.number();
            Kind::Number
        } else if c == b'"' || c == b'\'' {
            self.quoted(c)
        } else {
            self.punct()
        };
        let text: &[u8] = if keep { &s[start..self.i] } else { b"" };
        Ok(Tok::new(kind, text, false))
    }

    /// After an identifier: a string or character literal with that prefix
    /// (`L`, `u`, `U`, `u8`, raw forms with `R`), if one follows.
    fn literal_after_prefix(&mut self, start: usize) -> Result<Option<Kind>, &'static str> {
        let prefix = &self.s[start..self.i];
        let q = match self.peek(0) {
            Some(q @ (b'"' | b'\'')) => q,
            _ => return Ok(None),
        };
        if q == b'"' && matches!(prefix, b"R" | b"LR" | b"uR" | b"UR" | b"u8R") {
            if self.mode.c {
                return Err("a raw string literal in C");
            }
            if self.mode.raw_strings {
                return self.raw_string().map(Some);
            }
            return Ok(None);
        }
        if matches!(prefix, b"L" | b"u" | b"U" | b"u8") {
            return Ok(Some(self.quoted(q)));
        }
        Ok(None)
    }

    fn raw_string(&mut self) -> Result<Kind, &'static str> {
        self.i += 1;
        let d0 = self.i;
        while self
            .peek(0)
            .is_some_and(|c| c != b'(' && c != b'\n' && self.i - d0 <= 16)
        {
            self.i += 1;
        }
        if self.peek(0) != Some(b'(') {
            return Err("a malformed raw string literal");
        }
        let mut close = vec![b')'];
        close.extend_from_slice(&self.s[d0..self.i]);
        close.push(b'"');
        let rest = &self.s[self.i..];
        let Some(end) = rest
            .windows(close.len())
            .position(|w| w == close.as_slice())
        else {
            return Err("an unterminated raw string literal");
        };
        self.nl += rest[..end].iter().filter(|&&c| c == b'\n').count();
        self.i += end + close.len();
        Ok(Kind::Str)
    }

    fn number(&mut self) {
        self.i += 1;
        while let Some(c) = self.peek(0) {
            let next = self.peek(1);
            if matches!(c, b'e' | b'E' | b'p' | b'P') && matches!(next, Some(b'+' | b'-')) {
                self.i += 2;
            } else if is_ident_char(c) || c == b'.' {
                self.i += 1;
            } else if c == b'\'' && self.mode.digit_separators && next.is_some_and(is_ident_char) {
                self.i += 2;
            } else {
                break;
            }
        }
    }

    /// A string or character literal; it ends at its quote or, unterminated,
    /// at the end of the line (then an `Other` token).
    fn quoted(&mut self, q: u8) -> Kind {
        self.i += 1;
        while let Some(c) = self.peek(0) {
            match c {
                b'\\' if self.peek(1).is_some_and(|n| n != b'\n') => self.i += 2,
                b'\n' => return Kind::Other,
                _ if c == q => {
                    self.i += 1;
                    return if q == b'"' { Kind::Str } else { Kind::Char };
                }
                _ => self.i += 1,
            }
        }
        Kind::Other
    }

    fn punct(&mut self) -> Kind {
        let rest = &self.s[self.i..];
        for p in PUNCTS {
            if rest.starts_with(p) {
                self.i += p.len();
                return Kind::Punct;
            }
        }
        self.i += 1;
        if b"+-*/%&|^!~?:;.[]{}".contains(&rest[0]) {
            Kind::Punct
        } else {
            Kind::Other
        }
    }
}

/// The kind of the one token `text` spells, if it spells exactly one
/// (for `##`).
pub fn one_token(text: &[u8]) -> Option<Kind> {
    if text.is_empty() || text.contains(&b'\n') {
        return None;
    }
    let mode = Mode {
        line_comments: true,
        ..Mode::default()
    };
    let mut cur = Cursor {
        s: text,
        i: 0,
        nl: 0,
        mode,
    };
    if cur.skip_space().ok()? {
        return None;
    }
    let t = cur.token(false).ok()?;
    (cur.i == text.len()).then_some(t.kind)
}

fn refused_pragma(text: &[u8]) -> bool {
    let has = |w: &[u8]| text.windows(w.len()).any(|x| x == w);
    has(b"once") || has(b"push_macro") || has(b"pop_macro")
}

/// True after `include`-like directive names and `__has_include(`, where
/// `<...>` is one header-name token.
fn wants_header(before: &[Tok], tok: &Tok) -> bool {
    let name = |t: &Tok| matches!(&*t.text, b"include" | b"include_next" | b"import");
    let has = |t: &Tok| matches!(&*t.text, b"__has_include" | b"__has_include_next");
    if before.is_empty() {
        return tok.kind == Kind::Ident && name(tok);
    }
    tok.is(b"(")
        && before
            .last()
            .is_some_and(|t| t.kind == Kind::Ident && has(t))
}

/// Normalises digraph spellings of `#` and `##`.
pub fn canonical(tok: &mut Tok) {
    if tok.kind == Kind::Punct {
        match &*tok.text {
            b"%:" => tok.text = b"#"[..].into(),
            b"%:%:" => tok.text = b"##"[..].into(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str, mode: Mode) -> Vec<String> {
        lex(src.as_bytes(), mode)
            .unwrap()
            .lines
            .iter()
            .map(|l| {
                l.toks
                    .iter()
                    .map(|t| String::from_utf8_lossy(&t.text).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn directives_are_found_past_comments_strings_and_splices() {
        let m = Mode {
            line_comments: true,
            ..Mode::default()
        };
        let src = "#include <a.h>\n/* #include \"no.h\"\n */ # define X 1\n\
                   char *s = \"#include <no2.h>\";\n#inc\\\nlude \"b.h\" // c\n\
                   x = '#'; # define Y\n%:include <c.h>\n#if __has_include(<d e.h>)\n";
        assert_eq!(
            names(src, m),
            [
                "include <a.h>",
                "define X 1",
                "include \"b.h\"",
                "include <c.h>",
                "if __has_include ( <d e.h> )"
            ]
        );
    }

    #[test]
    fn raw_strings_and_digit_separators_follow_the_mode() {
        let cxx = Mode {
            raw_strings: true,
            digit_separators: true,
            line_comments: true,
            ..Mode::default()
        };
        let src = "auto s = R\"x(\n#include <no.h>\n)x\";\nint n = 1'000; /*\n#include <no2.h>\n*/\n#define Z\n";
        assert_eq!(names(src, cxx), ["define Z"]);
        let c = Mode { c: true, ..cxx };
        assert!(lex(src.as_bytes(), c).is_err());
    }

    #[test]
    fn a_pragma_once_in_text_is_refused() {
        let m = Mode::default();
        assert!(lex(b"int x;\n_Pragma(\"once\")\n", m).is_err());
        assert!(lex(b"_Pragma (\"push_macro(\\\"X\\\")\")\n", m).is_err());
        assert!(lex(b"_Pragma(\"GCC diagnostic push\")\nint once;\n", m).is_ok());
    }
}
