//! The macro table of one scan and macro expansion: object- and function-like macros, rescanning with hide sets, `#`, `##`, `__VA_ARGS__`, `__VA_OPT__`, and the operators `#if` adds (`defined`, `__has_include`, the compiler's `__has_*`).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::directives::Macro;
use super::hash::{FastMap, FastSet};
use super::lex::{self, Kind, Text, Tok};

/// The macros of a scan: the compiler's, shared, under the scan's own changes.
pub struct Table {
    base: Arc<FastMap<Text, Arc<Macro>>>,
    changes: Changes,
    /// The command line's names asked while still watched (see [`Changes`]).
    consulted: RefCell<Vec<(Text, Option<Arc<Macro>>)>>,
}

/// A scan's changes to the compiler's macros, as a checkpoint keeps them.
#[derive(Clone, Default)]
pub struct Changes {
    over: FastMap<Text, Option<Arc<Macro>>>,
    pushed: FastMap<Text, Vec<Option<Arc<Macro>>>>,
    /// The names of the command line's `-D` and `-U` that the walk has not
    /// defined or undefined since: what the walk learns from one of them
    /// depends on the command's value, so each lookup is recorded.
    watched: FastSet<Text>,
    pub consulted: Vec<(Text, Option<Arc<Macro>>)>,
}

impl Changes {
    /// The entries it holds, for the bound on checkpoints.
    pub fn weight(&self) -> usize {
        self.over.len() + self.pushed.len()
    }
}

impl Table {
    /// A table of no changes; it allocates nothing (so it is also the
    /// stand-in while the walk lends its own table to an expansion).
    pub fn new(base: Arc<FastMap<Text, Arc<Macro>>>) -> Table {
        Table {
            base,
            changes: Changes::default(),
            consulted: RefCell::default(),
        }
    }

    /// A table with room for `n` changes (a scan's size, known from earlier ones).
    pub fn with_capacity(base: Arc<FastMap<Text, Arc<Macro>>>, n: usize) -> Table {
        let mut t = Table::new(base);
        t.changes.over.reserve(n);
        t
    }

    /// How many macros the scan changed.
    pub fn changed(&self) -> usize {
        self.changes.over.len()
    }

    /// The table a checkpoint kept, with the command's own values for the
    /// names still watched (`now` holds the command's macros, nothing else).
    pub fn resumed(now: &Table, mut changes: Changes) -> Table {
        for name in &changes.watched {
            if let Some(v) = now.changes.over.get(name) {
                changes.over.insert(name.clone(), v.clone());
            }
        }
        let consulted = RefCell::new(std::mem::take(&mut changes.consulted));
        Table {
            base: now.base.clone(),
            changes,
            consulted,
        }
    }

    /// Its changes, for a checkpoint: in maps no bigger than they hold
    /// (the table itself may have room for a whole scan's).
    pub fn changes(&self) -> Changes {
        let c = &self.changes;
        Changes {
            over: c.over.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            pushed: c.pushed.clone(),
            watched: c.watched.clone(),
            consulted: self.consulted.borrow().clone(),
        }
    }

    /// Starts recording the lookups of these names (the command line's).
    pub fn watch(&mut self, names: impl IntoIterator<Item = Text>) {
        self.changes.watched.extend(names);
    }

    pub fn get(&self, name: &[u8]) -> Option<&Arc<Macro>> {
        let m = self.value(name);
        if !self.changes.watched.is_empty() && self.changes.watched.contains(name) {
            let mut consulted = self.consulted.borrow_mut();
            if !consulted.iter().any(|(n, _)| &**n == name) {
                consulted.push((name.into(), m.cloned()));
            }
        }
        m
    }

    /// The value of a name, without recording the lookup.
    pub fn value(&self, name: &[u8]) -> Option<&Arc<Macro>> {
        match self.changes.over.get(name) {
            Some(m) => m.as_ref(),
            None => self.base.get(name),
        }
    }

    pub fn define(&mut self, m: Arc<Macro>) {
        self.changes.watched.remove(&m.name);
        self.changes.over.insert(m.name.clone(), Some(m));
    }

    pub fn undef(&mut self, name: &Text) {
        self.changes.watched.remove(name);
        self.changes.over.insert(name.clone(), None);
    }

    /// True if the macro is not the compiler's own definition.
    pub fn is_changed(&self, name: &[u8]) -> bool {
        self.changes.over.contains_key(name)
    }

    pub fn push(&mut self, name: &Text) {
        let now = self.get(name).cloned();
        self.changes
            .pushed
            .entry(name.clone())
            .or_default()
            .push(now);
    }

    pub fn pop(&mut self, name: &Text) {
        if let Some(Some(m)) = self.changes.pushed.get_mut(name).map(|v| v.pop()) {
            match m {
                Some(m) => self.define(m),
                None => self.undef(name),
            }
        }
    }
}

/// What expansion asks of the scan: the include search, the compiler's
/// answers, and the dynamic macros.
pub trait Env {
    fn has_include(&mut self, name: &[u8], angle: bool, next: bool) -> Result<bool, String>;
    /// True for names `defined` sees that are no macros of the table
    /// (`__has_include`, `__FILE__`, ...).
    fn is_special(&self, name: &[u8]) -> bool;
    /// True for the compiler's `__has_*`-like operators answered by [`Env::feature`].
    fn is_feature(&self, name: &[u8]) -> bool;
    /// The compiler's expansion of `NAME(ARG)`.
    fn feature(&mut self, name: &[u8], arg: &[u8]) -> Result<Tok, String>;
    fn line(&self) -> u32;
    fn include_level(&self) -> u32;
    /// The name of the current file (`__FILE__`) and of the main file.
    fn file_name(&self, base: bool) -> Result<Vec<u8>, String>;
}

/// The names a token may no longer expand to.
pub type Hide = Option<Rc<Vec<Text>>>;

#[derive(Clone, Debug)]
pub struct PTok {
    pub tok: Tok,
    pub hide: Hide,
}

impl PTok {
    pub fn of(tok: &Tok) -> PTok {
        PTok {
            tok: tok.clone(),
            hide: None,
        }
    }
}

fn hidden(hide: &Hide, name: &[u8]) -> bool {
    hide.as_ref()
        .is_some_and(|h| h.iter().any(|n| &**n == name))
}

fn union(a: &Hide, b: &Hide) -> Hide {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(x), Some(y)) => {
            let mut v: Vec<Text> = (**x).clone();
            v.extend(y.iter().filter(|n| !x.contains(n)).cloned());
            Some(Rc::new(v))
        }
    }
}

fn intersection(a: &Hide, b: &Hide) -> Hide {
    match (a, b) {
        (Some(x), Some(y)) => {
            let v: Vec<Text> = x.iter().filter(|n| y.contains(n)).cloned().collect();
            (!v.is_empty()).then(|| Rc::new(v))
        }
        _ => None,
    }
}

fn with(hide: Hide, name: &Text) -> Hide {
    union(&hide, &Some(Rc::new(vec![name.clone()])))
}

pub fn number(v: i64) -> PTok {
    PTok::of(&Tok::new(Kind::Number, v.to_string().as_bytes(), true))
}

/// A bound on the tokens one expansion may make, against macro bombs.
const MAX_TOKENS: usize = 1 << 20;

pub struct Expander<'a> {
    pub table: &'a Table,
    pub env: &'a mut dyn Env,
    /// In `#if`: `defined` and `__has_*` are operators.
    pub in_if: bool,
    pub made: usize,
    /// The first token of an expansion takes the space before the macro's
    /// name (clang; gcc in a directive gives it none).
    pub name_space: bool,
}

impl Expander<'_> {
    /// Expands a token list completely.
    pub fn expand(&mut self, toks: Vec<PTok>) -> Result<Vec<PTok>, String> {
        let mut stack: Vec<PTok> = toks.into_iter().rev().collect();
        let mut out = Vec::new();
        while let Some(t) = stack.pop() {
            if t.tok.kind != Kind::Ident {
                out.push(t);
                continue;
            }
            if self.in_if && self.operator(&t, &mut stack, &mut out)? {
                continue;
            }
            let name = t.tok.text.clone();
            if hidden(&t.hide, &name) {
                out.push(t);
                continue;
            }
            let Some(m) = self.table.get(&name).cloned() else {
                out.push(self.dynamic(t)?);
                continue;
            };
            self.made += m.body.len();
            if self.made > MAX_TOKENS {
                return Err("a macro expansion too large".into());
            }
            match &m.params {
                None => {
                    let hs = with(t.hide.clone(), &name);
                    let space = self.name_space.then_some(t.tok.space);
                    push_body(&mut stack, body_with(&object_body(&m)?, &hs, space));
                }
                Some(_) if !stack.last().is_some_and(|n| n.tok.is(b"(")) => out.push(t),
                Some(_) => {
                    stack.pop();
                    let (args, rparen) = collect_args(&mut stack, &m)?;
                    let hs = with(intersection(&t.hide, &rparen.hide), &name);
                    let body = self.substitute(&m, &args)?;
                    let body: Vec<PTok> = body
                        .into_iter()
                        .enumerate()
                        .map(|(k, mut p)| {
                            p.hide = union(&p.hide, &hs);
                            if k == 0 && self.name_space {
                                p.tok.space = t.tok.space;
                            }
                            p
                        })
                        .collect();
                    push_body(&mut stack, body);
                }
            }
        }
        Ok(out)
    }

    /// `defined`, `__has_include(_next)` and the compiler's `__has_*` in `#if`.
    fn operator(
        &mut self,
        t: &PTok,
        stack: &mut Vec<PTok>,
        out: &mut Vec<PTok>,
    ) -> Result<bool, String> {
        let name = &*t.tok.text;
        if name == b"defined" {
            let v = defined_operand(stack)?;
            let defined = self.table.get(&v).is_some() || self.env.is_special(&v);
            out.push(number(defined as i64));
            return Ok(true);
        }
        if name == b"__has_include" || name == b"__has_include_next" {
            let (header, angle) = self.header_operand(stack)?;
            let found = self
                .env
                .has_include(&header, angle, name == b"__has_include_next")?;
            out.push(number(found as i64));
            return Ok(true);
        }
        if self.env.is_feature(name) {
            let arg = paren_operand(stack, name)?;
            if let Some(m) = arg
                .iter()
                .find(|a| a.tok.kind == Kind::Ident && self.table.is_changed(&a.tok.text))
            {
                return Err(format!(
                    "a macro ({}) in the argument of {}",
                    String::from_utf8_lossy(&m.tok.text),
                    String::from_utf8_lossy(name)
                ));
            }
            let v = self.env.feature(name, &spell(&arg))?;
            out.push(PTok::of(&v));
            return Ok(true);
        }
        Ok(false)
    }

    /// `(<h>)`, `("h")` or `(MACROS)`: the name and whether it is `<...>`.
    fn header_operand(&mut self, stack: &mut Vec<PTok>) -> Result<(Vec<u8>, bool), String> {
        let toks = paren_operand(stack, b"__has_include")?;
        let toks = match toks.as_slice() {
            [t] if matches!(t.tok.kind, Kind::Header | Kind::Str) => toks,
            _ => {
                let mut e = Expander {
                    table: self.table,
                    env: &mut *self.env,
                    in_if: false,
                    made: self.made,
                    name_space: self.name_space,
                };
                e.expand(toks)?
            }
        };
        header_name(&toks).ok_or_else(|| "a malformed __has_include operand".to_string())
    }

    /// A macro the preprocessor makes on the fly, or the token itself.
    fn dynamic(&mut self, t: PTok) -> Result<PTok, String> {
        let text = |k: Kind, s: &[u8]| PTok {
            tok: Tok::new(k, s, t.tok.space),
            hide: None,
        };
        Ok(match &*t.tok.text {
            b"__LINE__" => text(Kind::Number, self.env.line().to_string().as_bytes()),
            b"__INCLUDE_LEVEL__" => text(
                Kind::Number,
                self.env.include_level().to_string().as_bytes(),
            ),
            b"__FILE__" => text(Kind::Str, &quote(&self.env.file_name(false)?)),
            b"__BASE_FILE__" => text(Kind::Str, &quote(&self.env.file_name(true)?)),
            b"__FILE_NAME__" => {
                let name = self.env.file_name(false)?;
                text(Kind::Str, &quote(crate::filename::basename(&name)))
            }
            n @ (b"__COUNTER__" | b"__DATE__" | b"__TIME__" | b"__TIMESTAMP__" | b"_Pragma") => {
                return Err(format!(
                    "{} where the scanner needs its value",
                    String::from_utf8_lossy(n)
                ))
            }
            _ => t,
        })
    }

    /// The body of a function-like macro with its arguments put in.
    fn substitute(&mut self, m: &Macro, args: &[Vec<PTok>]) -> Result<Vec<PTok>, String> {
        let mut cache: Vec<Option<Vec<PTok>>> = vec![None; args.len()];
        let items = self.items(m, &m.body, args, &mut cache)?;
        paste_all(items)
    }

    /// The replacement list as items, before `##` is applied.
    fn items(
        &mut self,
        m: &Macro,
        body: &[Tok],
        args: &[Vec<PTok>],
        cache: &mut Vec<Option<Vec<PTok>>>,
    ) -> Result<Vec<Item>, String> {
        let params = m.params.as_deref().unwrap_or(&[]);
        let param = |t: &Tok| {
            (t.kind == Kind::Ident)
                .then(|| params.iter().position(|p| *p == t.text))
                .flatten()
        };
        let mut items = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let t = &body[i];
            if t.is(b"#") {
                let Some(p) = body.get(i + 1).and_then(param) else {
                    return Err("#__VA_OPT__ (stringized)".into());
                };
                items.push(Item::Tok(PTok::of(&Tok::new(
                    Kind::Str,
                    &stringize(&args[p]),
                    t.space,
                ))));
                i += 2;
            } else if t.is(b"##") {
                items.push(Item::Paste);
                i += 1;
            } else if m.variadic && t.is(b"__VA_OPT__") {
                i = self.va_opt(m, body, i, args, cache, &mut items)?;
            } else if let Some(p) = param(t) {
                let pasted = matches!(items.last(), Some(Item::Paste))
                    || body.get(i + 1).is_some_and(|n| n.is(b"##"));
                self.argument(m, p, t.space, pasted, args, cache, &mut items)?;
                i += 1;
            } else {
                items.push(Item::Tok(PTok::of(t)));
                i += 1;
            }
        }
        Ok(items)
    }

    #[allow(clippy::too_many_arguments)]
    fn argument(
        &mut self,
        m: &Macro,
        p: usize,
        space: bool,
        pasted: bool,
        args: &[Vec<PTok>],
        cache: &mut [Option<Vec<PTok>>],
        items: &mut Vec<Item>,
    ) -> Result<(), String> {
        let is_va = m.variadic && p + 1 == args.len();
        if pasted && is_va && matches!(items.last(), Some(Item::Paste)) {
            if let [.., Item::Tok(c), Item::Paste] = items.as_slice() {
                if c.tok.is(b",") {
                    items.pop();
                    if args[p].is_empty() {
                        items.pop();
                    }
                    items.extend(args[p].iter().cloned().map(Item::Tok));
                    return Ok(());
                }
            }
        }
        let toks = if pasted {
            args[p].clone()
        } else {
            self.expanded(p, args, cache)?
        };
        // gcc keeps the argument's own space after a `##`.
        let own_space = !self.name_space && matches!(items.last(), Some(Item::Paste));
        if toks.is_empty() {
            items.push(Item::Placemarker);
        }
        for (k, mut t) in toks.into_iter().enumerate() {
            if k == 0 && !own_space {
                t.tok.space = space;
            }
            items.push(Item::Tok(t));
        }
        Ok(())
    }

    fn expanded(
        &mut self,
        p: usize,
        args: &[Vec<PTok>],
        cache: &mut [Option<Vec<PTok>>],
    ) -> Result<Vec<PTok>, String> {
        if cache[p].is_none() {
            let mut e = Expander {
                table: self.table,
                env: &mut *self.env,
                in_if: self.in_if,
                made: self.made,
                name_space: self.name_space,
            };
            cache[p] = Some(e.expand(args[p].clone())?);
            self.made = e.made;
        }
        Ok(cache[p].clone().unwrap_or_default())
    }

    /// `__VA_OPT__(content)` at `i`: the content when the variable
    /// arguments expand to tokens, else a placemarker. Returns the index after it.
    fn va_opt(
        &mut self,
        m: &Macro,
        body: &[Tok],
        i: usize,
        args: &[Vec<PTok>],
        cache: &mut Vec<Option<Vec<PTok>>>,
        items: &mut Vec<Item>,
    ) -> Result<usize, String> {
        if !body.get(i + 1).is_some_and(|t| t.is(b"(")) {
            return Err("__VA_OPT__ without '('".into());
        }
        let mut depth = 0;
        let mut close = None;
        for (k, t) in body.iter().enumerate().skip(i + 1) {
            if t.is(b"(") {
                depth += 1;
            } else if t.is(b")") {
                depth -= 1;
                if depth == 0 {
                    close = Some(k);
                    break;
                }
            }
        }
        let close = close.ok_or("an unterminated __VA_OPT__")?;
        let va = args.len() - 1;
        let present = !self.expanded(va, args, cache)?.is_empty();
        let inner = if present {
            paste_all(self.items(m, &body[i + 2..close], args, cache)?)?
        } else {
            Vec::new()
        };
        if inner.is_empty() {
            items.push(Item::Placemarker);
        }
        items.extend(inner.into_iter().map(Item::Tok));
        Ok(close + 1)
    }
}

enum Item {
    Tok(PTok),
    Placemarker,
    Paste,
}

/// Applies `##` and drops placemarkers.
fn paste_all(items: Vec<Item>) -> Result<Vec<PTok>, String> {
    let mut out: Vec<Item> = Vec::new();
    let mut it = items.into_iter();
    while let Some(item) = it.next() {
        match item {
            Item::Paste => {
                let rhs = it.next().ok_or("'##' at the end of a macro body")?;
                let lhs = out.pop().ok_or("'##' at the start of a macro body")?;
                out.push(match (lhs, rhs) {
                    (Item::Placemarker, x) | (x, Item::Placemarker) => x,
                    (Item::Tok(a), Item::Tok(b)) => Item::Tok(paste(a, &b)?),
                    _ => return Err("'##' next to '##'".into()),
                });
            }
            x => out.push(x),
        }
    }
    Ok(out
        .into_iter()
        .filter_map(|i| match i {
            Item::Tok(t) => Some(t),
            _ => None,
        })
        .collect())
}

fn paste(a: PTok, b: &PTok) -> Result<PTok, String> {
    let mut text = a.tok.text.to_vec();
    text.extend_from_slice(&b.tok.text);
    let kind = lex::one_token(&text).ok_or_else(|| {
        format!(
            "pasting \"{}\" gives no valid token",
            String::from_utf8_lossy(&text)
        )
    })?;
    Ok(PTok {
        tok: Tok::new(kind, &text, a.tok.space),
        hide: a.hide,
    })
}

/// An object-like macro's body with its `##` applied.
fn object_body(m: &Macro) -> Result<Vec<Tok>, String> {
    if !m.body.iter().any(|t| t.is(b"##")) {
        return Ok(m.body.clone());
    }
    let items = m
        .body
        .iter()
        .map(|t| {
            if t.is(b"##") {
                Item::Paste
            } else {
                Item::Tok(PTok::of(t))
            }
        })
        .collect();
    Ok(paste_all(items)?.into_iter().map(|p| p.tok).collect())
}

fn push_body(stack: &mut Vec<PTok>, body: Vec<PTok>) {
    stack.extend(body.into_iter().rev());
}

/// A body with its hide set; the first token's space replaced if `space` is given.
fn body_with(body: &[Tok], hs: &Hide, space: Option<bool>) -> Vec<PTok> {
    body.iter()
        .enumerate()
        .map(|(k, t)| {
            let mut p = PTok {
                tok: t.clone(),
                hide: hs.clone(),
            };
            if let (0, Some(space)) = (k, space) {
                p.tok.space = space;
            }
            p
        })
        .collect()
}

/// Reads the arguments after a macro's `(`, through its `)`.
fn collect_args(stack: &mut Vec<PTok>, m: &Macro) -> Result<(Vec<Vec<PTok>>, PTok), String> {
    let n = m.params.as_ref().map_or(0, Vec::len);
    let mut args: Vec<Vec<PTok>> = vec![Vec::new()];
    let mut depth = 0usize;
    let rparen = loop {
        let t = stack.pop().ok_or_else(|| {
            format!(
                "an unterminated argument list invoking {}",
                String::from_utf8_lossy(&m.name)
            )
        })?;
        if t.tok.is(b"(") {
            depth += 1;
        } else if t.tok.is(b")") {
            if depth == 0 {
                break t;
            }
            depth -= 1;
        } else if t.tok.is(b",") && depth == 0 && !(m.variadic && args.len() == n) {
            args.push(Vec::new());
            continue;
        }
        args.last_mut().expect("one argument").push(t);
    };
    if n == 0 && args.len() == 1 && args[0].is_empty() {
        args.clear();
    }
    if m.variadic && args.len() + 1 == n {
        args.push(Vec::new());
    }
    if args.len() != n {
        return Err(format!(
            "macro {} given {} arguments, but takes {n}",
            String::from_utf8_lossy(&m.name),
            args.len()
        ));
    }
    Ok((args, rparen))
}

/// `defined X` or `defined ( X )`: X.
fn defined_operand(stack: &mut Vec<PTok>) -> Result<Text, String> {
    let bad = || "a malformed 'defined'".to_string();
    let t = stack.pop().ok_or_else(bad)?;
    if t.tok.kind == Kind::Ident {
        return Ok(t.tok.text);
    }
    if !t.tok.is(b"(") {
        return Err(bad());
    }
    let n = stack.pop().ok_or_else(bad)?;
    let r = stack.pop().ok_or_else(bad)?;
    if n.tok.kind != Kind::Ident || !r.tok.is(b")") {
        return Err(bad());
    }
    Ok(n.tok.text)
}

/// The tokens between `(` and its `)`.
fn paren_operand(stack: &mut Vec<PTok>, name: &[u8]) -> Result<Vec<PTok>, String> {
    let bad = || format!("a malformed {}", String::from_utf8_lossy(name));
    if !stack.pop().is_some_and(|t| t.tok.is(b"(")) {
        return Err(bad());
    }
    let mut depth = 0;
    let mut toks = Vec::new();
    loop {
        let t = stack.pop().ok_or_else(bad)?;
        if t.tok.is(b"(") {
            depth += 1;
        } else if t.tok.is(b")") {
            if depth == 0 {
                return Ok(toks);
            }
            depth -= 1;
        }
        toks.push(t);
    }
}

/// The spelling of tokens, a space where the source had one.
pub fn spell(toks: &[PTok]) -> Vec<u8> {
    let mut s = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        if k > 0 && t.tok.space {
            s.push(b' ');
        }
        s.extend_from_slice(&t.tok.text);
    }
    s
}

/// The file named by `"x"`, `<x>` (one token) or `<` tokens `>`; whether angled.
pub fn header_name(toks: &[PTok]) -> Option<(Vec<u8>, bool)> {
    let first = toks.first()?;
    let t = &first.tok.text;
    match first.tok.kind {
        Kind::Str if t.len() >= 2 && t[0] == b'"' => Some((t[1..t.len() - 1].to_vec(), false)),
        Kind::Header => Some((t[1..t.len() - 1].to_vec(), true)),
        _ if first.tok.is(b"<") => {
            let end = toks.iter().position(|t| t.tok.is(b">"))?;
            let inner = &toks[1..end];
            let mut name = spell(inner);
            if inner.first().is_some_and(|t| t.tok.space) {
                name.insert(0, b' ');
            }
            Some((name, true))
        }
        _ => None,
    }
}

fn stringize(arg: &[PTok]) -> Vec<u8> {
    let mut s = vec![b'"'];
    for (k, t) in arg.iter().enumerate() {
        if k > 0 && t.tok.space {
            s.push(b' ');
        }
        let literal = matches!(t.tok.kind, Kind::Str | Kind::Char);
        for &c in t.tok.text.iter() {
            if literal && (c == b'"' || c == b'\\') {
                s.push(b'\\');
            }
            s.push(c);
        }
    }
    s.push(b'"');
    s
}

/// A file name as a string literal.
fn quote(name: &[u8]) -> Vec<u8> {
    let mut s = vec![b'"'];
    for &c in name {
        if c == b'"' || c == b'\\' {
            s.push(b'\\');
        }
        s.push(c);
    }
    s.push(b'"');
    s
}
