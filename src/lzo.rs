//! LZO1X codec for protocol version 2 bodies: the raw LZO1X-1 streams that
//! distcc sends for `DOTI`, `DOTO` and the other file tokens when compression
//! is on.
//!
//! The stream has no header and no length; it is one block ending with the
//! end-of-stream marker `11 00 00`. [`compress`] produces exactly what
//! distcc's `lzo1x_1_compress` (miniLZO / liblzo2 2.10) produces, and
//! [`decompress`] accepts exactly what `lzo1x_decompress_safe` accepts, but
//! never lets a small body expand past a caller-chosen size limit.

use std::fmt;

/// Compresses one file body into a raw LZO1X-1 stream, byte for byte what
/// distcc's `lzo1x_1_compress` call would send.
///
/// This wraps the `lzo1x` crate at level 3, which is the LZO 2.10
/// `lzo1x_1_compress` algorithm (14-bit dictionary, 48 KiB chunks);
/// `tests/lzo_reference.rs` checks it against liblzo2.
pub fn compress(src: &[u8]) -> Vec<u8> {
    lzo1x::compress(src, lzo1x::CompressLevel::new(3))
}

/// Why an LZO1X body could not be decompressed. Each variant matches one of
/// the error codes of liblzo2's `lzo1x_decompress_safe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LzoError {
    /// The body ended before the end-of-stream marker (`LZO_E_INPUT_OVERRUN`).
    InputOverrun,
    /// The body would decompress to more than the allowed size, or the memory
    /// for its output could not be allocated (`LZO_E_OUTPUT_OVERRUN`).
    OutputLimit,
    /// A match refers back to before the start of the output
    /// (`LZO_E_LOOKBEHIND_OVERRUN`).
    LookbehindOverrun,
    /// Bytes follow the end-of-stream marker (`LZO_E_INPUT_NOT_CONSUMED`).
    InputNotConsumed,
}

impl fmt::Display for LzoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InputOverrun => "LZO body is truncated (input overrun)",
            Self::OutputLimit => "LZO body expands beyond the size limit (output overrun)",
            Self::LookbehindOverrun => {
                "LZO body refers back before the start of its output (lookbehind overrun)"
            }
            Self::InputNotConsumed => {
                "LZO body has data after its end-of-stream marker (input not consumed)"
            }
        })
    }
}

impl std::error::Error for LzoError {}

/// Decompresses one raw LZO1X body, failing if the output would exceed
/// `limit` bytes; memory use stays within `limit` however large the body claims to be.
///
/// Accepts and rejects the same streams as liblzo2's `lzo1x_decompress_safe`
/// with a `limit`-byte output buffer, and reports the same error.
pub fn decompress(src: &[u8], limit: usize) -> Result<Vec<u8>, LzoError> {
    let mut out = Vec::new();
    decompress_into(src, limit, &mut out)?;
    Ok(out)
}

/// The longest literal run or match copied as a fixed-size block.
const SHORT: usize = 16;

/// Smallest allocation the decoder makes once it needs any output space.
const MIN_GROWTH: usize = 4096;

/// liblzo2's `TEST_IV`/`TEST_OV` bound on run lengths built from zero bytes.
const MAX_RUN: usize = usize::MAX - 511;

/// Offset added to M1 matches that directly follow a literal run.
const M2_MAX_OFFSET: usize = 0x0800;

/// Where the decoder is in liblzo2's `lzo1x_decompress_safe` control flow;
/// the variants are its `goto` labels.
enum State {
    /// Top of the main loop: a literal run or a match instruction follows.
    Instruction,
    /// Just after a literal run of four or more bytes (`first_literal_run`).
    AfterLiteralRun,
    /// Decode the match instruction `t` (`match`).
    Match(u8),
    /// Copy `t` (1 to 3) literals that trail a match (`match_next`).
    TrailingLiterals(usize),
}

/// Decoder state: the input, the read position and the growing output.
struct Decoder<'a> {
    src: &'a [u8],
    ip: usize,
    out: &'a mut Vec<u8>,
    limit: usize,
}

impl Decoder<'_> {
    /// `NEED_IP(n)`: at least `n` more input bytes must be present.
    fn need_ip(&self, n: usize) -> Result<(), LzoError> {
        if self.src.len().saturating_sub(self.ip) < n {
            Err(LzoError::InputOverrun)
        } else {
            Ok(())
        }
    }

    /// `NEED_OP(n)`: the output may grow by `n` more bytes.
    fn need_op(&self, n: usize) -> Result<(), LzoError> {
        if self.limit.saturating_sub(self.out.len()) < n {
            Err(LzoError::OutputLimit)
        } else {
            Ok(())
        }
    }

    /// Reads one input byte. The `need_ip` checks make running out
    /// impossible, but a miss is still an error rather than a panic.
    fn byte(&mut self) -> Result<u8, LzoError> {
        let b = *self.src.get(self.ip).ok_or(LzoError::InputOverrun)?;
        self.ip += 1;
        Ok(b)
    }

    /// Reads the input byte at `ip`, without consuming it.
    fn peek(&self) -> Result<u8, LzoError> {
        self.src.get(self.ip).copied().ok_or(LzoError::InputOverrun)
    }

    /// Reads the little-endian 16-bit distance field of an M3/M4 match.
    fn le16(&mut self) -> Result<usize, LzoError> {
        let lo = self.byte()?;
        let hi = self.byte()?;
        Ok(usize::from(u16::from_le_bytes([lo, hi])))
    }

    /// Adds the zero-byte extension of a run length: each `00` adds 255, and
    /// the first non-zero byte ends it. `overflow` is liblzo2's error for a
    /// run length that would wrap.
    fn extended_length(&mut self, base: usize, overflow: LzoError) -> Result<usize, LzoError> {
        let mut t = 0usize;
        while self.peek()? == 0 {
            t += 255;
            self.ip += 1;
            if t > MAX_RUN {
                return Err(overflow);
            }
            self.need_ip(1)?;
        }
        Ok(t + base + usize::from(self.byte()?))
    }

    /// Makes room for `n` more output bytes, growing geometrically but never
    /// reserving beyond `limit`.
    fn reserve(&mut self, n: usize) -> Result<(), LzoError> {
        let len = self.out.len();
        if self.out.capacity() - len >= n {
            return Ok(());
        }
        let need = len
            .checked_add(n)
            .filter(|&need| need <= self.limit)
            .ok_or(LzoError::OutputLimit)?;
        let want = need
            .max(self.out.capacity().saturating_mul(2))
            .max(MIN_GROWTH)
            .min(self.limit);
        self.out
            .try_reserve_exact(want - len)
            .map_err(|_| LzoError::OutputLimit)
    }

    /// Copies `n` literal bytes from the input to the output.
    fn literals(&mut self, n: usize) -> Result<(), LzoError> {
        let end = self.ip.checked_add(n).ok_or(LzoError::InputOverrun)?;
        let bytes = self.src.get(self.ip..end).ok_or(LzoError::InputOverrun)?;
        self.reserve(n)?;
        let chunk = self.src.get(self.ip..self.ip + SHORT);
        match chunk {
            Some(chunk) if n <= SHORT && self.room() >= SHORT => self.push_short(chunk, n),
            _ => self.out.extend_from_slice(bytes),
        }
        self.ip = end;
        Ok(())
    }

    /// Spare capacity of the output.
    fn room(&self) -> usize {
        self.out.capacity() - self.out.len()
    }

    /// Appends the first `n` of `SHORT` bytes, `n <= SHORT`, with room for
    /// all of them: a copy of a fixed size is two moves, where a copy of
    /// `n` bytes is a call to `memcpy`, and most of LZO's literal runs and
    /// matches are a few bytes long (musl's `memcpy` made decompression run
    /// at under 100 MB/s).
    fn push_short(&mut self, chunk: &[u8], n: usize) {
        let mut fixed = [0u8; SHORT];
        fixed.copy_from_slice(chunk);
        let len = self.out.len();
        self.out.extend_from_slice(&fixed);
        self.out.truncate(len + n);
    }

    /// `TEST_LB` then `NEED_OP`: copies `len` bytes starting `dist` bytes
    /// back in the output; the source may overlap what is being written.
    fn copy_match(&mut self, dist: usize, len: usize) -> Result<(), LzoError> {
        let start = self
            .out
            .len()
            .checked_sub(dist)
            .filter(|_| dist > 0)
            .ok_or(LzoError::LookbehindOverrun)?;
        self.need_op(len)?;
        self.reserve(len)?;
        if dist >= SHORT && len <= SHORT && self.room() >= SHORT {
            let mut fixed = [0u8; SHORT];
            fixed.copy_from_slice(&self.out[start..start + SHORT]);
            self.push_short(&fixed, len);
            return Ok(());
        }
        let mut left = len;
        while left > 0 {
            // Everything from `start` to the current end is already decoded,
            // and the source of an overlapping copy repeats with period
            // `dist`, so copy as much as exists; each pass doubles it.
            let n = left.min(self.out.len() - start);
            self.out.extend_from_within(start..start + n);
            left -= n;
        }
        Ok(())
    }

    /// `match_done`: the low two bits of the byte two back say how many
    /// literals (0 to 3) follow the match.
    fn after_match(&self) -> State {
        let s = self
            .ip
            .checked_sub(2)
            .and_then(|i| self.src.get(i))
            .map_or(0, |b| usize::from(b & 3));
        if s == 0 {
            State::Instruction
        } else {
            State::TrailingLiterals(s)
        }
    }

    /// Runs the decoder to the end-of-stream marker.
    fn run(&mut self) -> Result<(), LzoError> {
        self.need_ip(1)?;
        let first = self.peek()?;
        let mut state = if first > 17 {
            self.ip += 1;
            let t = usize::from(first - 17);
            if t < 4 {
                State::TrailingLiterals(t)
            } else {
                self.need_op(t)?;
                self.need_ip(t + 3)?;
                self.literals(t)?;
                State::AfterLiteralRun
            }
        } else {
            State::Instruction
        };

        loop {
            state = match state {
                State::Instruction => {
                    self.need_ip(3)?;
                    let t = self.byte()?;
                    if t >= 16 {
                        State::Match(t)
                    } else {
                        let t = if t == 0 {
                            self.extended_length(15, LzoError::InputOverrun)?
                        } else {
                            usize::from(t)
                        };
                        self.need_op(t + 3)?;
                        self.need_ip(t + 6)?;
                        self.literals(t + 3)?;
                        State::AfterLiteralRun
                    }
                }
                State::AfterLiteralRun => {
                    let t = self.byte()?;
                    if t >= 16 {
                        State::Match(t)
                    } else {
                        // M1 right after a literal run: 3 bytes, 2049+ back.
                        let dist = 1
                            + M2_MAX_OFFSET
                            + usize::from(t >> 2)
                            + (usize::from(self.byte()?) << 2);
                        self.copy_match(dist, 3)?;
                        self.after_match()
                    }
                }
                State::Match(t) => {
                    if t >= 64 {
                        // M2: 3 to 8 bytes, up to 2048 back.
                        let dist = 1 + usize::from((t >> 2) & 7) + (usize::from(self.byte()?) << 3);
                        self.copy_match(dist, usize::from(t >> 5) + 1)?;
                    } else if t >= 32 {
                        // M3: up to 16384 back.
                        let len = match t & 31 {
                            0 => {
                                let n = self.extended_length(31, LzoError::OutputLimit)?;
                                self.need_ip(2)?;
                                n
                            }
                            n => usize::from(n),
                        };
                        let dist = 1 + (self.le16()? >> 2);
                        self.copy_match(dist, len + 2)?;
                    } else if t >= 16 {
                        // M4: 16385 to 49151 back, or the end-of-stream marker.
                        let high = usize::from(t & 8) << 11;
                        let len = match t & 7 {
                            0 => {
                                let n = self.extended_length(7, LzoError::OutputLimit)?;
                                self.need_ip(2)?;
                                n
                            }
                            n => usize::from(n),
                        };
                        let dist = high + (self.le16()? >> 2);
                        if dist == 0 {
                            return match self.ip.cmp(&self.src.len()) {
                                std::cmp::Ordering::Equal => Ok(()),
                                std::cmp::Ordering::Less => Err(LzoError::InputNotConsumed),
                                std::cmp::Ordering::Greater => Err(LzoError::InputOverrun),
                            };
                        }
                        self.copy_match(dist + 0x4000, len + 2)?;
                    } else {
                        // M1 after a match's trailing literals: 2 bytes, up to 1024 back.
                        let dist = 1 + usize::from(t >> 2) + (usize::from(self.byte()?) << 2);
                        self.copy_match(dist, 2)?;
                    }
                    self.after_match()
                }
                State::TrailingLiterals(t) => {
                    self.need_op(t)?;
                    self.need_ip(t + 3)?;
                    self.literals(t)?;
                    State::Match(self.byte()?)
                }
            };
        }
    }
}

/// Decompresses `src` into `out` (which should start empty); see
/// [`decompress`]. A caller decompressing many bodies keeps one `out` and
/// clears it between them, so that its memory is not faulted in afresh
/// for each.
pub fn decompress_into(src: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), LzoError> {
    let mut decoder = Decoder {
        src,
        ip: 0,
        out,
        limit,
    };
    decoder.run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Fixed-seed xorshift64* generator, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Something like preprocessed C: repetitive identifiers and punctuation.
    fn c_like_text(rng: &mut Rng, n: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "int ",
            "static ",
            "const ",
            "char *",
            "return ",
            "if (",
            ") {\n",
            "}\n",
            "x",
            "y",
            "buf",
            "len",
            " = ",
            " + ",
            ";\n",
            "    ",
            "struct stat st;\n",
            "#include <stdio.h>\n",
            "0",
            "1",
            "NULL",
            "(void)",
            "sizeof(",
            "->",
            "unsigned long ",
            "/* comment */\n",
        ];
        let mut out = Vec::with_capacity(n + 32);
        while out.len() < n {
            out.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
        }
        out.truncate(n);
        out
    }

    fn round_trip(data: &[u8]) {
        let packed = compress(data);
        assert_eq!(
            packed[packed.len() - 3..],
            [0x11, 0, 0],
            "end-of-stream marker"
        );
        let unpacked = decompress(&packed, data.len()).expect("decompress own output");
        assert_eq!(unpacked, data, "round trip of {} bytes", data.len());
        if !data.is_empty() {
            assert_eq!(
                decompress(&packed, data.len() - 1),
                Err(LzoError::OutputLimit),
                "limit one byte short of {}",
                data.len()
            );
        }
    }

    #[test]
    fn test_vectors() {
        assert_eq!(compress(b""), [0x11, 0, 0]);
        assert_eq!(
            compress(b"hello"),
            [0x16, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x11, 0, 0]
        );
        assert_eq!(
            compress(b"int x;\n"),
            [0x18, 0x69, 0x6e, 0x74, 0x20, 0x78, 0x3b, 0x0a, 0x11, 0, 0]
        );
        assert_eq!(decompress(&[0x11, 0, 0], 0), Ok(Vec::new()));
        assert_eq!(
            decompress(&[0x16, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x11, 0, 0], 5).as_deref(),
            Ok(&b"hello"[..])
        );
        assert_eq!(
            decompress(
                &[0x18, 0x69, 0x6e, 0x74, 0x20, 0x78, 0x3b, 0x0a, 0x11, 0, 0],
                100
            )
            .as_deref(),
            Ok(&b"int x;\n"[..])
        );
    }

    #[test]
    fn round_trips_random_data() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for n in [
            0,
            1,
            2,
            3,
            4,
            5,
            17,
            18,
            19,
            20,
            21,
            22,
            238,
            239,
            240,
            4096,
            49151,
            49152,
            49153,
            98321,
            1 << 20,
        ] {
            round_trip(&rng.bytes(n));
        }
    }

    #[test]
    fn round_trips_repetitive_data() {
        let mut rng = Rng(42);
        for n in [0, 1, 21, 100, 239, 4096, 49152, 49153, 200_000, 1 << 20] {
            round_trip(&vec![0u8; n]);
            round_trip(&b"abc".repeat(n / 3 + 1)[..n]);
            // Random blocks repeated at distances that need M2, M3 and M4 matches.
            let mut data = Vec::new();
            while data.len() < n {
                if data.len() > 64 && rng.below(2) == 0 {
                    let dist = 1 + rng.below(data.len().min(49151));
                    let len = 2 + rng.below(300);
                    let start = data.len() - dist;
                    for i in 0..len {
                        data.push(data[start + i]);
                    }
                } else {
                    let len = 1 + rng.below(40);
                    data.extend(rng.bytes(len));
                }
            }
            data.truncate(n);
            round_trip(&data);
        }
    }

    #[test]
    fn round_trips_text() {
        let mut rng = Rng(7);
        for n in [1, 50, 1000, 49153, 300_000] {
            round_trip(&c_like_text(&mut rng, n));
        }
        round_trip(include_bytes!("lzo.rs"));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut rng = Rng(99);
        let mut data = c_like_text(&mut rng, 3000);
        data.extend(rng.bytes(500));
        data.extend(vec![b'z'; 700]);
        for sample in [&b"hello"[..], &data[..]] {
            let packed = compress(sample);
            for cut in 0..packed.len() {
                assert_eq!(
                    decompress(&packed[..cut], sample.len()),
                    Err(LzoError::InputOverrun),
                    "truncated to {cut} of {} bytes",
                    packed.len()
                );
            }
        }
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let mut packed = compress(b"int main(void) { return 0; }\n");
        packed.push(0);
        assert_eq!(decompress(&packed, 1000), Err(LzoError::InputNotConsumed));
        assert_eq!(
            decompress(&[0x11, 0, 0, 0x11, 0, 0], 1000),
            Err(LzoError::InputNotConsumed)
        );
    }

    #[test]
    fn bad_distance_is_a_lookbehind_error() {
        // One literal, then an M2 match 2 bytes back.
        assert_eq!(
            decompress(&[0x12, b'a', 0x44, 0x00, 0x11, 0, 0], 100),
            Err(LzoError::LookbehindOverrun)
        );
        // An M4 match (distance 16385+) into a 4-byte output.
        assert_eq!(
            decompress(
                &[0x15, b'a', b'b', b'c', b'd', 0x11, 0x04, 0x00, 0x11, 0, 0],
                100
            ),
            Err(LzoError::LookbehindOverrun)
        );
    }

    #[test]
    fn end_marker_variants_match_liblzo() {
        // liblzo2 ends the stream at any M4 instruction with a zero distance,
        // whatever its length or trailing-literal bits.
        assert_eq!(decompress(&[0x11, 0x03, 0x00], 0), Ok(Vec::new()));
        assert_eq!(
            decompress(&[0x16, b'h', b'e', b'l', b'l', b'o', 0x17, 0x00, 0x00], 5).as_deref(),
            Ok(&b"hello"[..])
        );
        assert_eq!(
            decompress(&[0x10, 0x00, 0x05, 0x00, 0x00], 0),
            Ok(Vec::new())
        );
        assert_eq!(decompress(&[], 100), Err(LzoError::InputOverrun));
    }

    #[test]
    fn bomb_hits_the_limit_quickly() {
        let zeros = vec![0u8; 64 << 20];
        let packed = compress(&zeros);
        drop(zeros);
        assert!(packed.len() < 1 << 20, "64 MiB of zeros packs small");
        let limit = 1 << 20;
        let started = Instant::now();
        let mut out = Vec::new();
        assert_eq!(
            decompress_into(&packed, limit, &mut out),
            Err(LzoError::OutputLimit)
        );
        assert!(out.capacity() <= limit, "reserved {} bytes", out.capacity());
        assert!(started.elapsed() < Duration::from_secs(5));

        // A hand-made bomb: one literal, then an M3 match of distance 1 whose
        // length grows by 255 per zero byte: about 255 GiB from 1 GiB of
        // input, or here 255 MiB from 1 MiB.
        let bomb = |zeros: usize| {
            let mut v = vec![0x12, b'a', 0x20];
            v.extend(std::iter::repeat_n(0, zeros));
            v.extend([0xff, 0x00, 0x00, 0x11, 0x00, 0x00]);
            v
        };
        let mut out = Vec::new();
        let started = Instant::now();
        assert_eq!(
            decompress_into(&bomb(1 << 20), limit, &mut out),
            Err(LzoError::OutputLimit)
        );
        assert!(out.capacity() <= limit, "reserved {} bytes", out.capacity());
        assert!(started.elapsed() < Duration::from_secs(5));
        let expected = 1 + 2 + 31 + 255 * 1000 + 255;
        let out = decompress(&bomb(1000), expected).expect("small bomb within its limit");
        assert_eq!(out.len(), expected);
        assert!(out.iter().all(|&b| b == b'a'));
    }

    #[test]
    fn capacity_never_exceeds_limit() {
        let mut rng = Rng(3);
        for n in [1, 100, 5000, 49153, 300_000] {
            let data = c_like_text(&mut rng, n);
            let mut out = Vec::new();
            assert_eq!(decompress_into(&compress(&data), n, &mut out), Ok(()));
            assert_eq!(out, data);
            assert!(out.capacity() <= n);
        }
    }

    /// A buffer kept from body to body may hold more room than the next
    /// body's limit: the output still stops at the limit, and what fits
    /// comes out whole, short copies and long ones alike.
    #[test]
    fn a_reused_buffer_keeps_the_limit() {
        let mut rng = Rng(5);
        let mut out = Vec::with_capacity(1 << 20);
        for n in [10, 17, 100, 5000, 49153] {
            let data = c_like_text(&mut rng, n);
            out.clear();
            assert_eq!(decompress_into(&compress(&data), n, &mut out), Ok(()));
            assert_eq!(out, data);
            out.clear();
            let cut = decompress_into(&compress(&data), n - 1, &mut out);
            assert_eq!(cut, Err(LzoError::OutputLimit), "{n} bytes into {}", n - 1);
            assert!(out.len() < n);
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let seeds: Vec<Vec<u8>> = [c_like_text(&mut rng, 2000), vec![7u8; 5000], rng.bytes(300)]
            .iter()
            .map(|d| compress(d))
            .collect();
        let started = Instant::now();
        let mut ok = 0;
        for i in 0..20_000 {
            let input = if i % 2 == 0 {
                let n = rng.below(64);
                let mut v = rng.bytes(n);
                // Bias the first byte towards the interesting values.
                if let Some(b) = v.first_mut() {
                    *b %= 32;
                }
                v
            } else {
                let mut v = seeds[rng.below(seeds.len())].clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(v.len());
                    v[at] = rng.next() as u8;
                }
                if rng.below(4) == 0 {
                    v.truncate(rng.below(v.len() + 1));
                }
                v
            };
            if decompress(&input, 64 << 10).is_ok() {
                ok += 1;
            }
        }
        assert!(ok > 0, "some mutations should still decode");
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn errors_display() {
        for e in [
            LzoError::InputOverrun,
            LzoError::OutputLimit,
            LzoError::LookbehindOverrun,
            LzoError::InputNotConsumed,
        ] {
            let boxed: Box<dyn std::error::Error> = Box::new(e);
            assert!(boxed.to_string().starts_with("LZO body"));
        }
    }
}
