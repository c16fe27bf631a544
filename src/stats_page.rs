//! The job lines of a distcc-rs daemon's `--stats` page (`dcc_job CLIENT COMPILER INPUT MSECS`): how their fields are escaped by the daemon that writes them and read back by the monitor.

use std::fmt::Write as _;

/// One field of a `dcc_job` line: the bytes as they are, except that `%`,
/// spaces, control characters and bytes that are not UTF-8 become `%XX`, so
/// that a line is always five space-separated words and names with spaces
/// or odd bytes survive. Plain names read the same as before this escaping.
pub fn escape_job_field(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' || c == ' ' || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Undoes `%XX`; a `%` not followed by two hex digits stays as it is.
pub fn unescape_job_field(word: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if word[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                word.get(i + 1).copied().and_then(hex),
                word.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(word[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_fields_come_back_whole() {
        for name in [
            &b"hello.c"[..],
            b"a b.c",
            b"100%.c",
            b"%41",
            b"new\nline",
            b"\xff\xfe",
            b"caf\xc3\xa9.c",
        ] {
            assert_eq!(
                unescape_job_field(escape_job_field(name).as_bytes()),
                name,
                "{name:?}"
            );
        }
        assert_eq!(unescape_job_field(b"50%"), b"50%");
        assert_eq!(unescape_job_field(b"%4"), b"%4");
        assert_eq!(unescape_job_field(b"%zz"), b"%zz");
    }
}
