//! System headers sent by content hash (the `,sysheaders` host option, beyond distcc 3.4): the hash, the include server's longer answer, and the daemon's `NEED` bitmap.
//!
//! A pump client normally sends no system header: the include server's
//! system-directory links make the helper use its own. For a cross client
//! that is wrong, so a client whose host is marked `,sysheaders` asks the
//! include server for the system headers too (`SYSH 1` before `CDIR`, see
//! `proto::encode_system_include_query`). The answer is 3.4's `ARGC`/`ARGV`
//! (no system-directory links then) followed by [`SystemAnswer`]:
//!
//! ```text
//! SYSX 0|1                                       1 for C++ (the client adds -nostdinc++)
//! SYSF k, (ARGV mirror-path, SHDR sha256) x k    the system headers
//! SYSD m, ARGV x m                               the system search dirs, in order
//! PREI j, ARGV x j                               implicit preincludes (stdc-predef.h)
//! ```
//!
//! The client sends each header as `NAME, SHDR sha256` in its v3 request.
//! After the file list the daemon answers `NEED` with a bitmap (bit `i % 8`
//! of byte `i / 8` for the i-th `SHDR` entry) of the bodies it lacks, and the
//! client sends those as `FILE`s, in order. The daemon hashes every body
//! itself and refuses one that does not match ([`hash`]).

use std::io;

use crate::proto::{self, Limits, HASH_LEN};

/// A header's content hash: SHA-256 of its bytes as the compiler reads
/// them (decompressed).
pub type Hash = [u8; HASH_LEN];

/// The SHA-256 of `body`.
pub fn hash(body: &[u8]) -> Hash {
    use sha2::Digest;
    sha2::Sha256::digest(body).into()
}

/// `hash` in lower-case hex, the name of its file in a store.
pub fn hex(hash: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(hash.len() * 2);
    for &b in hash {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The part of the include server's answer that only a `SYSH` query gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemAnswer {
    /// The compile is C++ or Objective-C++.
    pub cplusplus: bool,
    /// Each system header: its mirror path (a `.lzo` file) and its hash.
    pub headers: Vec<(Vec<u8>, Hash)>,
    /// The compiler's system search directories after the command's own,
    /// as it spells them, in its order.
    pub search: Vec<Vec<u8>>,
    /// Files the compiler reads before the source by itself (gcc's
    /// `stdc-predef.h`), as absolute names; `-nostdinc` turns that off.
    pub preincludes: Vec<Vec<u8>>,
}

impl SystemAnswer {
    /// Appends the answer's tail: `SYSX`, `SYSF`, `SYSD`, `PREI`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        proto::put_header(out, &proto::SYSX, u32::from(self.cplusplus));
        proto::put_header(out, &proto::SYSF, self.headers.len() as u32);
        for (path, hash) in &self.headers {
            proto::put_body(out, &proto::ARGV, path);
            proto::put_body(out, &proto::SHDR, hash);
        }
        proto::put_list(out, &proto::SYSD, &self.search);
        proto::put_list(out, &proto::PREI, &self.preincludes);
    }

    /// Reads the answer's tail within `limits`: at most `max_argc`
    /// entries in each list, each string at most `max_arg_len` bytes, all
    /// of them at most `max_args_total`.
    pub fn read<R: io::Read>(r: &mut R, limits: &Limits) -> io::Result<SystemAnswer> {
        let cplusplus = match proto::read_expected(r, proto::SYSX)? {
            0 => false,
            1 => true,
            other => return Err(invalid(format!("SYSX {other} is neither 0 nor 1"))),
        };
        let count = proto::read_expected(r, proto::SYSF)?;
        if count > limits.max_argc {
            return Err(invalid(format!(
                "SYSF of {count} exceeds the limit of {}",
                limits.max_argc
            )));
        }
        let mut headers = Vec::with_capacity(count.min(1024) as usize);
        let mut total = 0usize;
        for _ in 0..count {
            let path = proto::read_string(r, proto::ARGV, limits.max_arg_len)?;
            total += path.len();
            if total > limits.max_args_total {
                return Err(invalid("the system headers' paths exceed the limit".into()));
            }
            let hash = proto::read_string(r, proto::SHDR, HASH_LEN as u32)?;
            let hash: Hash = hash
                .try_into()
                .map_err(|_| invalid(format!("an SHDR is not {HASH_LEN} bytes")))?;
            headers.push((path, hash));
        }
        let search = proto::read_list(r, proto::SYSD, limits)?;
        let preincludes = proto::read_list(r, proto::PREI, limits)?;
        Ok(SystemAnswer {
            cplusplus,
            headers,
            search,
            preincludes,
        })
    }
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// The `NEED` packet for `needed` (one flag per `SHDR` entry, in order).
pub fn encode_need(needed: &[bool]) -> Vec<u8> {
    let mut bits = vec![0u8; needed.len().div_ceil(8)];
    for (i, _) in needed.iter().enumerate().filter(|(_, n)| **n) {
        bits[i / 8] |= 1 << (i % 8);
    }
    let mut out = Vec::with_capacity(proto::HEADER_LEN + bits.len());
    proto::put_body(&mut out, &proto::NEED, &bits);
    out
}

/// Reads a `NEED` packet for a request of `count` `SHDR` entries
/// ([`need_length`], then [`need_flags`]).
pub fn read_need<R: io::Read>(r: &mut R, count: usize) -> io::Result<Vec<bool>> {
    let len = proto::read_expected(r, proto::NEED)?;
    let len = need_length(len, count).map_err(invalid)?;
    let mut bits = vec![0u8; len];
    r.read_exact(&mut bits)?;
    need_flags(&bits, count).map_err(invalid)
}

/// The length of a `NEED` for `count` headers, which the packet's `len`
/// must be: `count` bits rounded up to bytes.
pub fn need_length(len: u32, count: usize) -> Result<usize, String> {
    let want = count.div_ceil(8);
    if len as usize != want {
        return Err(format!(
            "a NEED of {len} bytes for {count} headers (wanted {want})"
        ));
    }
    Ok(want)
}

/// The flags of a `NEED`'s bitmap for `count` headers; the bits past
/// `count` must be clear.
pub fn need_flags(bits: &[u8], count: usize) -> Result<Vec<bool>, String> {
    let needed: Vec<bool> = (0..bits.len() * 8)
        .map(|i| bits[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    if needed.len() < count || needed[count..].iter().any(|&b| b) {
        return Err("a NEED names headers past the last".into());
    }
    Ok(needed[..count].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256() {
        assert_eq!(
            hex(&hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_answer_tail_round_trips_and_is_bounded() {
        let answer = SystemAnswer {
            cplusplus: true,
            headers: vec![(b"/tmp/a/m/usr/include/stdio.h.lzo".to_vec(), hash(b"x"))],
            search: vec![b"/usr/include".to_vec(), b"/usr/lib/x/../include".to_vec()],
            preincludes: vec![b"/usr/include/stdc-predef.h".to_vec()],
        };
        let mut wire = Vec::new();
        answer.encode(&mut wire);
        assert!(wire.starts_with(b"SYSX00000001SYSF00000001ARGV00000020/tmp/a/m"));
        assert_eq!(
            SystemAnswer::read(&mut &wire[..], &Limits::default()).unwrap(),
            answer
        );
        let small = Limits {
            max_argc: 1,
            ..Limits::default()
        };
        let err = SystemAnswer::read(&mut &wire[..], &small).unwrap_err();
        assert!(
            err.to_string().contains("of 2 exceeds the limit of 1"),
            "{err}"
        );
        for bad in [
            &b"SYSX00000000SYSFffffffff"[..],
            b"SYSX00000000SYSF00000001ARGV00000001/SHDR00000004abcd",
            b"SYSX00000000SYSF00000001ARGVffffffff",
            b"SYSX00000000SYSF00000000SYSD00000000ARGC00000000",
            b"SYSX00000002SYSF00000000SYSD00000000PREI00000000",
            b"SYSF00000000SYSD00000000PREI00000000",
            b"ARGC00000000",
        ] {
            assert!(
                SystemAnswer::read(&mut &bad[..], &Limits::default()).is_err(),
                "{bad:?}"
            );
        }
        let cut = &wire[..wire.len() - 3];
        assert!(SystemAnswer::read(&mut &cut[..], &Limits::default()).is_err());
    }

    #[test]
    fn need_round_trips_and_malformed_ones_are_refused() {
        let needed = [true, false, false, true, false, false, false, false, true];
        let wire = encode_need(&needed);
        assert_eq!(&wire[..12], b"NEED00000002");
        assert_eq!(wire[12..], [0b0000_1001, 0b0000_0001]);
        assert_eq!(read_need(&mut &wire[..], 9).unwrap(), needed);
        assert_eq!(encode_need(&[]), b"NEED00000000");
        assert_eq!(read_need(&mut &b"NEED00000000"[..], 0).unwrap(), []);
        // The wrong length for the count, a bit past the last, another token.
        assert!(read_need(&mut &wire[..], 17).is_err());
        assert!(read_need(&mut &wire[..], 8).is_err());
        assert!(read_need(&mut &b"NEED00000001\x02"[..], 1).is_err());
        assert!(read_need(&mut &b"NEEDffffffff"[..], 3).is_err());
        assert!(read_need(&mut &b"DONE00000003"[..], 3).is_err());
    }
}
