//! Pump mode's `.d` file: the dependency file the compiler wrote under the job's root, turned into the one a local compile on the client writes.
//!
//! distccd 3.4 (`dcc_cleanup_dotd`, compat §9.1) edits each line: the first
//! occurrence of the temporary object becomes the client's target, and
//! every occurrence of the root goes. That names the client's files, but
//! the compiler broke its lines for the longer server paths, so the file is
//! not the local one. Here the first rule is read into its names, each name
//! is cleaned the same way, and the rule is written again with the line
//! breaks of the compiler that wrote it: gcc's (`mkdeps.cc`, at most 72
//! columns, continuation lines starting with one space) or clang's
//! (`DependencyFile.cpp`, 75 columns, two spaces). The lines after the
//! first rule (`-MP`'s phony targets) are cleaned line by line. A file
//! whose first rule cannot be read is cleaned line by line as 3.4 does.

/// The server's `.d` file as the client's: `output` (the temporary object)
/// becomes `target`, and `root` goes from every name.
pub fn clean(dotd: &[u8], output: &[u8], target: &[u8], root: &[u8]) -> Vec<u8> {
    let name = |n: &[u8]| {
        let n = if n == output {
            target.to_vec()
        } else {
            n.to_vec()
        };
        replace(&n, root, b"", usize::MAX)
    };
    let Some(rule) = Rule::read(dotd) else {
        return by_line(dotd, output, target, root);
    };
    let targets: Vec<Vec<u8>> = rule.targets.iter().map(|t| name(t)).collect();
    let deps: Vec<Vec<u8>> = rule.deps.iter().map(|d| name(d)).collect();
    let mut out = match rule.clang {
        true => write_clang(&targets, &deps),
        false => write_gcc(&targets, &deps),
    };
    out.extend(by_line(rule.rest, output, target, root));
    out
}

/// 3.4's cleaning: on each line, the first `output` becomes `target`, then every `root` goes.
fn by_line(dotd: &[u8], output: &[u8], target: &[u8], root: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dotd.len());
    for line in dotd.split_inclusive(|&c| c == b'\n') {
        let line = replace(line, output, target, 1);
        out.extend(replace(&line, root, b"", usize::MAX));
    }
    out
}

/// `text` with the first `count` occurrences of `from` (not empty) replaced by `to`.
fn replace(text: &[u8], from: &[u8], to: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let (mut i, mut done) = (0, 0);
    while i < text.len() {
        if done < count && !from.is_empty() && text[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            done += 1;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// The first rule of a `.d` file, its names as written (escapes kept).
struct Rule<'a> {
    targets: Vec<&'a [u8]>,
    deps: Vec<&'a [u8]>,
    /// Written by clang: continuation lines start with two spaces.
    clang: bool,
    /// What follows the rule's line.
    rest: &'a [u8],
}

impl<'a> Rule<'a> {
    fn read(dotd: &'a [u8]) -> Option<Rule<'a>> {
        let end =
            (0..dotd.len()).find(|&i| dotd[i] == b'\n' && (i == 0 || dotd[i - 1] != b'\\'))?;
        let (line, rest) = (&dotd[..end], &dotd[end + 1..]);
        let names = words(line);
        let colon = names
            .iter()
            .position(|w| w.ends_with(b":") && !w.ends_with(b"\\:"))?;
        let mut targets = names[..=colon].to_vec();
        let last = targets[colon];
        targets[colon] = &last[..last.len() - 1];
        if targets.iter().any(|t| t.is_empty()) {
            return None;
        }
        Some(Rule {
            targets,
            deps: names[colon + 1..].to_vec(),
            clang: line.windows(4).any(|w| w == b"\\\n  "),
            rest,
        })
    }
}

/// The names on a rule's line: split at blanks and `\`-newlines, except a
/// blank escaped with `\`.
fn words(line: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = None;
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        let blank = c == b' ' || c == b'\t' || c == b'\n';
        let escaped = c == b'\\' && i + 1 < line.len() && line[i + 1] != b'\n';
        let continuation = c == b'\\' && line.get(i + 1) == Some(&b'\n');
        if blank || continuation {
            if let Some(s) = start.take() {
                out.push(&line[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
        i += if escaped { 2 } else { 1 };
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

/// gcc's `make_write`: a name goes on the line unless it would pass 72 columns.
fn write_gcc(targets: &[Vec<u8>], deps: &[Vec<u8>]) -> Vec<u8> {
    const MAX: usize = 72;
    let mut out = Vec::new();
    let mut col = 0;
    let put = |out: &mut Vec<u8>, col: &mut usize, name: &[u8]| {
        if *col > 0 {
            if *col + name.len() > MAX {
                out.extend_from_slice(b" \\\n");
                *col = 0;
            }
            *col += 1;
            out.push(b' ');
        }
        *col += name.len();
        out.extend_from_slice(name);
    };
    for t in targets {
        put(&mut out, &mut col, t);
    }
    out.push(b':');
    col += 1;
    for d in deps {
        put(&mut out, &mut col, d);
    }
    out.push(b'\n');
    out
}

/// clang's `outputDependencyFile`: at most 75 columns.
fn write_clang(targets: &[Vec<u8>], deps: &[Vec<u8>]) -> Vec<u8> {
    const MAX: usize = 75;
    let mut out = Vec::new();
    let mut col = 0;
    for t in targets {
        let n = t.len();
        if col == 0 {
            col = n;
        } else if col + n + 2 > MAX {
            col = n + 2;
            out.extend_from_slice(b" \\\n  ");
        } else {
            col += n + 1;
            out.push(b' ');
        }
        out.extend_from_slice(t);
    }
    out.push(b':');
    col += 1;
    for d in deps {
        if col + d.len() + 1 + 2 > MAX {
            out.extend_from_slice(b" \\\n ");
            col = 2;
        }
        out.push(b' ');
        out.extend_from_slice(d);
        col += d.len() + 1;
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_lines_broken_as_gcc_breaks_them() {
        let server = b"/J/o.o: t.c /R/home/u/a.h /R/J/o.o.h /R/home/u/with\\ space.h \\\n \
                       /usr/include/stdio.h\n/R/home/u/a.h:\n";
        let client = clean(server, b"/J/o.o", b"t.o", b"/R");
        assert_eq!(
            String::from_utf8(client).unwrap(),
            "t.o: t.c /home/u/a.h /J/o.o.h /home/u/with\\ space.h /usr/include/stdio.h\n\
             /home/u/a.h:\n"
        );
        // 72 columns at most, then a break.
        let long = "d".repeat(60);
        let server = format!("/J/o.o: {long} eight.h x\n");
        let client = clean(server.as_bytes(), b"/J/o.o", b"t.o", b"/R");
        assert_eq!(
            String::from_utf8(client).unwrap(),
            format!("t.o: {long} eight.h \\\n x\n")
        );
    }

    #[test]
    fn clangs_line_breaks_are_kept_in_its_style() {
        let long = "d".repeat(60);
        let server = format!("/J/o.o: t.c \\\n  /R/{long}.h /R/eight.h\n");
        let client = clean(server.as_bytes(), b"/J/o.o", b"t.o", b"/R");
        assert_eq!(
            String::from_utf8(client).unwrap(),
            format!("t.o: t.c /{long}.h \\\n  /eight.h\n")
        );
    }

    #[test]
    fn an_unreadable_file_is_cleaned_line_by_line() {
        let server = b"no rule here /R/x /J/o.o /J/o.o\n";
        let client = clean(server, b"/J/o.o", b"t.o", b"/R");
        assert_eq!(client, b"no rule here /x t.o /J/o.o\n");
    }
}
