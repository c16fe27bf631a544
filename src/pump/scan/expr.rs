//! `#if` arithmetic: the integer constant expression of a fully expanded directive, in intmax_t/uintmax_t as cpp computes it.

use super::lex::{Kind, Tok};
use super::macros::PTok;

/// A value: its bits and whether it is unsigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value {
    pub bits: u64,
    pub unsigned: bool,
}

impl Value {
    fn signed(v: i64) -> Value {
        Value {
            bits: v as u64,
            unsigned: false,
        }
    }

    fn truth(self) -> bool {
        self.bits != 0
    }
}

/// What the language changes in `#if`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lang {
    pub cplusplus: bool,
    pub char_unsigned: bool,
    pub wchar_unsigned: bool,
    /// The bits of `wchar_t` (16 or 32).
    pub wchar_bits: u32,
    /// gcc: a negative shift count shifts the other way (clang takes it for
    /// a count past the width).
    pub negative_shift_reverses: bool,
}

/// Evaluates an expanded `#if` line.
pub fn evaluate(toks: &[PTok], lang: Lang) -> Result<bool, String> {
    let toks: Vec<&Tok> = toks.iter().map(|t| &t.tok).collect();
    if toks.is_empty() {
        return Err("#if with no expression".into());
    }
    let mut p = Parser { toks, at: 0, lang };
    let v = p.conditional(true)?;
    if p.at != p.toks.len() {
        return Err(format!(
            "a stray '{}' in #if",
            String::from_utf8_lossy(&p.toks[p.at].text)
        ));
    }
    Ok(v.truth())
}

struct Parser<'a> {
    toks: Vec<&'a Tok>,
    at: usize,
    lang: Lang,
}

/// Binary operators by precedence, loosest first.
const LEVELS: [&[&[u8]]; 8] = [
    &[b"|"],
    &[b"^"],
    &[b"&"],
    &[b"==", b"!="],
    &[b"<", b">", b"<=", b">="],
    &[b"<<", b">>"],
    &[b"+", b"-"],
    &[b"*", b"/", b"%"],
];

impl Parser<'_> {
    fn peek_op(&self) -> Option<&[u8]> {
        let t = self.toks.get(self.at)?;
        let text: &[u8] = &t.text;
        if self.lang.cplusplus && t.kind == Kind::Ident {
            return alternative(text);
        }
        (t.kind == Kind::Punct).then_some(text)
    }

    fn eat(&mut self, op: &[u8]) -> bool {
        if self.peek_op() == Some(op) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// `a ? b : c` and `,` (lowest).
    fn conditional(&mut self, eval: bool) -> Result<Value, String> {
        let mut v = self.ternary(eval)?;
        while self.eat(b",") {
            v = self.ternary(eval)?;
        }
        Ok(v)
    }

    fn ternary(&mut self, eval: bool) -> Result<Value, String> {
        let c = self.logical_or(eval)?;
        if !self.eat(b"?") {
            return Ok(c);
        }
        let a = self.conditional(eval && c.truth())?;
        if !self.eat(b":") {
            return Err("'?' without ':' in #if".into());
        }
        let b = self.ternary(eval && !c.truth())?;
        let unsigned = a.unsigned || b.unsigned;
        let v = if c.truth() { a } else { b };
        Ok(Value {
            bits: v.bits,
            unsigned,
        })
    }

    fn logical_or(&mut self, eval: bool) -> Result<Value, String> {
        let mut v = self.logical_and(eval)?;
        while self.eat(b"||") {
            let r = self.logical_and(eval && !v.truth())?;
            v = Value::signed((v.truth() || r.truth()) as i64);
        }
        Ok(v)
    }

    fn logical_and(&mut self, eval: bool) -> Result<Value, String> {
        let mut v = self.binary(0, eval)?;
        while self.eat(b"&&") {
            let r = self.binary(0, eval && v.truth())?;
            v = Value::signed((v.truth() && r.truth()) as i64);
        }
        Ok(v)
    }

    fn binary(&mut self, level: usize, eval: bool) -> Result<Value, String> {
        if level == LEVELS.len() {
            return self.unary(eval);
        }
        let mut v = self.binary(level + 1, eval)?;
        while let Some(op) = self.peek_op().filter(|op| LEVELS[level].contains(op)) {
            let op = op.to_vec();
            self.at += 1;
            let r = self.binary(level + 1, eval)?;
            v = apply(&op, v, r, eval, self.lang)?;
        }
        Ok(v)
    }

    fn unary(&mut self, eval: bool) -> Result<Value, String> {
        let Some(op) = self.peek_op().map(<[u8]>::to_vec) else {
            return self.primary(eval);
        };
        match op.as_slice() {
            b"+" | b"-" | b"~" | b"!" => {
                self.at += 1;
                let v = self.unary(eval)?;
                Ok(match op.as_slice() {
                    b"+" => v,
                    b"-" => Value {
                        bits: v.bits.wrapping_neg(),
                        ..v
                    },
                    b"~" => Value { bits: !v.bits, ..v },
                    _ => Value::signed(!v.truth() as i64),
                })
            }
            b"(" => {
                self.at += 1;
                let v = self.conditional(eval)?;
                if !self.eat(b")") {
                    return Err("a missing ')' in #if".into());
                }
                Ok(v)
            }
            _ => self.primary(eval),
        }
    }

    fn primary(&mut self, _eval: bool) -> Result<Value, String> {
        let Some(t) = self.toks.get(self.at) else {
            return Err("#if ends where a value was expected".into());
        };
        self.at += 1;
        match t.kind {
            Kind::Number => number(&t.text),
            Kind::Char => char_value(&t.text, self.lang),
            Kind::Ident if self.lang.cplusplus && &*t.text == b"true" => Ok(Value::signed(1)),
            Kind::Ident if alternative(&t.text).is_none() || !self.lang.cplusplus => {
                Ok(Value::signed(0))
            }
            _ => Err(format!(
                "'{}' where a value was expected in #if",
                String::from_utf8_lossy(&t.text)
            )),
        }
    }
}

/// C++'s alternative spellings of operators.
fn alternative(word: &[u8]) -> Option<&'static [u8]> {
    Some(match word {
        b"and" => b"&&",
        b"or" => b"||",
        b"not" => b"!",
        b"bitand" => b"&",
        b"bitor" => b"|",
        b"xor" => b"^",
        b"compl" => b"~",
        b"not_eq" => b"!=",
        _ => return None,
    })
}

fn apply(op: &[u8], a: Value, b: Value, eval: bool, lang: Lang) -> Result<Value, String> {
    let unsigned = a.unsigned || b.unsigned;
    let (x, y) = (a.bits, b.bits);
    let cmp = |r: bool| Ok(Value::signed(r as i64));
    let lt = |x: u64, y: u64| {
        if unsigned {
            x < y
        } else {
            (x as i64) < (y as i64)
        }
    };
    let bits = match op {
        b"|" => x | y,
        b"^" => x ^ y,
        b"&" => x & y,
        b"==" => return cmp(x == y),
        b"!=" => return cmp(x != y),
        b"<" => return cmp(lt(x, y)),
        b">" => return cmp(lt(y, x)),
        b"<=" => return cmp(!lt(y, x)),
        b">=" => return cmp(!lt(x, y)),
        b"<<" | b">>" => return Ok(shift(op == b"<<", a, b, lang.negative_shift_reverses)),
        b"+" => x.wrapping_add(y),
        b"-" => x.wrapping_sub(y),
        b"*" => x.wrapping_mul(y),
        b"/" | b"%" => {
            if y == 0 {
                if eval {
                    return Err("division by zero in #if".into());
                }
                return Ok(Value { bits: 0, unsigned });
            }
            match (unsigned, op) {
                (true, b"/") => x / y,
                (true, _) => x % y,
                (false, b"/") => (x as i64).wrapping_div(y as i64) as u64,
                (false, _) => (x as i64).wrapping_rem(y as i64) as u64,
            }
        }
        _ => return Err("an unknown operator in #if".into()),
    };
    Ok(Value { bits, unsigned })
}

/// cpp's shifts: a count past the width gives 0 (or -1 for a negative
/// value shifted right); a negative count shifts the other way (gcc) or is
/// past the width (clang).
fn shift(left: bool, a: Value, b: Value, reverses: bool) -> Value {
    let n = b.bits as i64;
    let (left, n) = if !b.unsigned && n < 0 {
        if reverses {
            (!left, n.unsigned_abs())
        } else {
            (left, u64::MAX)
        }
    } else {
        (left, b.bits)
    };
    let bits = if left {
        if n >= 64 {
            0
        } else {
            a.bits << n
        }
    } else if a.unsigned {
        if n >= 64 {
            0
        } else {
            a.bits >> n
        }
    } else {
        let s = a.bits as i64;
        (if n >= 64 {
            if s < 0 {
                -1
            } else {
                0
            }
        } else {
            s >> n
        }) as u64
    };
    Value {
        bits,
        unsigned: a.unsigned,
    }
}

/// An integer literal with its suffixes.
fn number(text: &[u8]) -> Result<Value, String> {
    let bad = || {
        format!(
            "'{}' is not an integer in #if",
            String::from_utf8_lossy(text)
        )
    };
    let digits: Vec<u8> = text.iter().copied().filter(|&c| c != b'\'').collect();
    let (radix, body) = match digits.as_slice() {
        [b'0', b'x' | b'X', rest @ ..] => (16, rest),
        [b'0', b'b' | b'B', rest @ ..] => (2, rest),
        [b'0', rest @ ..] => (8, rest),
        d => (10, d),
    };
    let end = body
        .iter()
        .position(|c| !(*c as char).is_digit(radix))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(end);
    let suffix = suffix.to_ascii_lowercase();
    let unsigned_suffix = match suffix.as_slice() {
        b"" | b"l" | b"ll" | b"z" => false,
        b"u" | b"ul" | b"lu" | b"ull" | b"llu" | b"uz" | b"zu" => true,
        _ => return Err(bad()),
    };
    if num.is_empty() && radix != 8 {
        return Err(bad());
    }
    let mut v: u64 = 0;
    for &c in num {
        let d = (c as char).to_digit(radix).ok_or_else(bad)? as u64;
        v = v
            .checked_mul(radix as u64)
            .and_then(|v| v.checked_add(d))
            .ok_or("an integer too large for #if")?;
    }
    Ok(Value {
        bits: v,
        unsigned: unsigned_suffix || v > i64::MAX as u64,
    })
}

/// A character constant: 'a', '\n', '\x41', 'ab', L'x', u'x', U'x', u8'x'.
fn char_value(text: &[u8], lang: Lang) -> Result<Value, String> {
    let q = text
        .iter()
        .position(|&c| c == b'\'')
        .ok_or("a malformed character constant")?;
    let prefix = &text[..q];
    let body = &text[q + 1..text.len() - 1];
    let chars = unescape(body)?;
    if chars.is_empty() {
        return Err("an empty character constant in #if".into());
    }
    let (bits, unsigned): (u32, bool) = match prefix {
        b"" => (8, lang.char_unsigned),
        b"u8" => (8, !lang.cplusplus || lang.char_unsigned),
        b"L" => (lang.wchar_bits, lang.wchar_unsigned),
        b"u" => (16, true),
        b"U" => (32, true),
        _ => return Err("a character constant with an unknown prefix".into()),
    };
    let mask = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    if prefix.is_empty() && chars.len() > 1 {
        // A multi-character constant: an int, each char 8 bits.
        let mut v: u32 = 0;
        for c in &chars {
            v = (v << 8) | (*c as u32 & 0xff);
        }
        return Ok(Value::signed(v as i32 as i64));
    }
    if chars.len() > 1 {
        return Err("a wide multi-character constant in #if".into());
    }
    let c = chars[0] & mask;
    let v = if !unsigned && bits < 64 && c & (1 << (bits - 1)) != 0 {
        (c | !mask) as i64
    } else {
        c as i64
    };
    let unsigned_type =
        prefix == b"U" || (prefix == b"L" && lang.wchar_unsigned && lang.wchar_bits >= 32);
    Ok(Value {
        bits: v as u64,
        unsigned: unsigned_type,
    })
}

fn unescape(body: &[u8]) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c >= 0x80 {
            return Err("a non-ASCII character constant in #if".into());
        }
        if c != b'\\' {
            out.push(c as u64);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1).ok_or("a malformed escape")?;
        i += 2;
        let v = match e {
            b'n' => 10,
            b't' => 9,
            b'r' => 13,
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'v' => 11,
            b'e' | b'E' => 27,
            b'\\' | b'\'' | b'"' | b'?' => e as u64,
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u64;
                for _ in 0..2 {
                    match body.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u64;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                v
            }
            b'x' => {
                let start = i;
                let mut v: u64 = 0;
                while let Some(d) = body.get(i).and_then(|d| (*d as char).to_digit(16)) {
                    v = v.wrapping_mul(16).wrapping_add(d as u64);
                    i += 1;
                }
                if i == start {
                    return Err("\\x without digits".into());
                }
                v
            }
            _ => return Err("an escape the scanner does not evaluate in #if".into()),
        };
        out.push(v);
    }
    Ok(out)
}
