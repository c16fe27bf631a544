//! Checks `distcc_rs::lzo` against the real LZO library (Debian's liblzo2),
//! which is what distcc 3.4 peers link or bundle as miniLZO.
//!
//! A small C helper is compiled with `cc ... -llzo2` into a private temporary
//! directory. Compression must be byte-identical to `lzo1x_1_compress`, and
//! decompression must give the same result (output or error code) as
//! `lzo1x_decompress_safe`. A missing compiler or library fails the test.

use crate::common::TestDir;
use distcc_rs::lzo::{self, LzoError};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The helper. `c IN OUT`: IN holds records `[u32 len][bytes]`; each is
/// compressed with lzo1x_1_compress and written to OUT as `[u32 len][bytes]`.
/// `d IN OUT`: IN holds records `[u32 limit][u32 len][bytes]`; each is
/// decompressed with lzo1x_decompress_safe into a `limit`-byte buffer and
/// written as `[i32 rc][u32 out_len][bytes]` (bytes only when rc is LZO_E_OK).
const HELPER_C: &str = r#"
#include <lzo/lzo1x.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what) { fprintf(stderr, "lzoref: %s\n", what); exit(2); }

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open input");
    size_t cap = 1 << 20, n = 0, r;
    unsigned char *buf = malloc(cap);
    if (!buf) die("out of memory");
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf) die("out of memory");
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static unsigned long get32(const unsigned char *p) {
    return (unsigned long)p[0] | ((unsigned long)p[1] << 8) |
           ((unsigned long)p[2] << 16) | ((unsigned long)p[3] << 24);
}

static void put32(FILE *f, unsigned long v) {
    unsigned char b[4] = { v & 255, (v >> 8) & 255, (v >> 16) & 255, (v >> 24) & 255 };
    if (fwrite(b, 1, 4, f) != 4) die("write failed");
}

int main(int argc, char **argv) {
    if (argc != 4) die("usage: lzoref c|d IN OUT");
    if (lzo_init() != LZO_E_OK) die("lzo_init failed");
    size_t len, pos = 0;
    unsigned char *in = slurp(argv[2], &len);
    FILE *out = fopen(argv[3], "wb");
    if (!out) die("cannot open output");
    static lzo_align_t wrkmem[(LZO1X_1_MEM_COMPRESS + sizeof(lzo_align_t) - 1) / sizeof(lzo_align_t)];
    while (pos < len) {
        if (argv[1][0] == 'c') {
            if (len - pos < 4) die("bad record");
            lzo_uint n = get32(in + pos);
            pos += 4;
            if (len - pos < n) die("bad record");
            lzo_uint cap = n + n / 16 + 64 + 3, out_len = cap;
            unsigned char *buf = malloc(cap);
            if (!buf) die("out of memory");
            int rc = lzo1x_1_compress(in + pos, n, buf, &out_len, wrkmem);
            if (rc != LZO_E_OK) die("lzo1x_1_compress failed");
            put32(out, out_len);
            if (fwrite(buf, 1, out_len, out) != out_len) die("write failed");
            free(buf);
            pos += n;
        } else {
            if (len - pos < 8) die("bad record");
            lzo_uint limit = get32(in + pos), n = get32(in + pos + 4);
            pos += 8;
            if (len - pos < n) die("bad record");
            unsigned char *buf = malloc(limit ? limit : 1);
            if (!buf) die("out of memory");
            lzo_uint out_len = limit;
            int rc = lzo1x_decompress_safe(in + pos, n, buf, &out_len, NULL);
            put32(out, (unsigned long)(long)rc);
            if (rc == LZO_E_OK) {
                put32(out, out_len);
                if (fwrite(buf, 1, out_len, out) != out_len) die("write failed");
            } else {
                put32(out, 0);
            }
            free(buf);
            pos += n;
        }
    }
    if (fclose(out) != 0) die("close failed");
    free(in);
    return 0;
}
"#;

/// The compiled helper in its own temporary directory, removed on drop.
struct Liblzo {
    dir: TestDir,
    exe: PathBuf,
}

impl Liblzo {
    /// Builds the helper; panics with a clear message if `cc` or liblzo2 is missing.
    fn build() -> Liblzo {
        let dir = TestDir::new("lzo-ref");
        let harness = Liblzo {
            exe: dir.join("lzoref"),
            dir,
        };
        let src = harness.dir.join("lzoref.c");
        fs::write(&src, HELPER_C).expect("write lzoref.c");
        let output = Command::new("cc")
            .arg("-O2")
            .arg("-o")
            .arg(&harness.exe)
            .arg(&src)
            .arg("-llzo2")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `cc` ({e}): the LZO reference test needs a C compiler \
                     and liblzo2-dev (apt-get install -y gcc liblzo2-dev)"
                )
            });
        assert!(
            output.status.success(),
            "compiling the liblzo2 helper failed; the LZO reference test needs \
             liblzo2-dev (apt-get install -y liblzo2-dev):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        harness
    }

    /// Runs the helper in `mode` over `input` and returns its output file.
    fn run(&self, mode: &str, input: &[u8]) -> Vec<u8> {
        let in_path = self.dir.join(&format!("{mode}.in"));
        let out_path = self.dir.join(&format!("{mode}.out"));
        fs::write(&in_path, input).expect("write helper input");
        let output = Command::new(&self.exe)
            .arg(mode)
            .arg(&in_path)
            .arg(&out_path)
            .output()
            .expect("run liblzo2 helper");
        assert!(
            output.status.success(),
            "liblzo2 helper failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        fs::read(&out_path).expect("read helper output")
    }

    /// liblzo2's lzo1x_1_compress output for each input.
    fn compress(&self, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut req = Vec::new();
        for input in inputs {
            req.extend(len32(input.len()));
            req.extend_from_slice(input);
        }
        let reply = self.run("c", &req);
        let mut r = Reader(&reply);
        let outs: Vec<Vec<u8>> = inputs
            .iter()
            .map(|_| {
                let n = r.u32() as usize;
                r.take(n).to_vec()
            })
            .collect();
        assert!(r.0.is_empty(), "helper wrote extra output");
        outs
    }

    /// liblzo2's lzo1x_decompress_safe result for each (limit, stream):
    /// the output on success, else the LZO error code.
    fn decompress(&self, cases: &[(usize, Vec<u8>)]) -> Vec<Result<Vec<u8>, i32>> {
        let mut req = Vec::new();
        for (limit, stream) in cases {
            req.extend(len32(*limit));
            req.extend(len32(stream.len()));
            req.extend_from_slice(stream);
        }
        let reply = self.run("d", &req);
        let mut r = Reader(&reply);
        let outs = cases
            .iter()
            .map(|_| {
                let rc = r.u32() as i32;
                let n = r.u32() as usize;
                let bytes = r.take(n).to_vec();
                if rc == 0 {
                    Ok(bytes)
                } else {
                    Err(rc)
                }
            })
            .collect();
        assert!(r.0.is_empty(), "helper wrote extra output");
        outs
    }
}

fn len32(n: usize) -> [u8; 4] {
    u32::try_from(n).expect("record fits in u32").to_le_bytes()
}

/// Reads the helper's little-endian records.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "helper output truncated");
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }

    fn u32(&mut self) -> u32 {
        let b = self.take(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// liblzo2's error code for each of our errors (lzoconf.h).
fn lzo_code(e: LzoError) -> i32 {
    match e {
        LzoError::InputOverrun => -4,
        LzoError::OutputLimit => -5,
        LzoError::LookbehindOverrun => -6,
        LzoError::InputNotConsumed => -8,
    }
}

/// Fixed-seed xorshift64* generator.
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

    /// Random runs, literals and back-references at every LZO distance class.
    fn lz_data(&mut self, n: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(n + 600);
        while data.len() < n {
            match self.below(4) {
                0 if data.len() > 64 => {
                    let dist = 1 + self.below(data.len().min(60000));
                    let max = if self.below(8) == 0 { 600 } else { 40 };
                    let len = 2 + self.below(max);
                    let start = data.len() - dist;
                    for i in 0..len {
                        data.push(data[start + i]);
                    }
                }
                1 => {
                    let b = self.next() as u8;
                    let len = 1 + self.below(300);
                    data.extend(std::iter::repeat_n(b, len));
                }
                _ => {
                    let max = if self.below(8) == 0 { 400 } else { 12 };
                    let len = 1 + self.below(max);
                    data.extend(self.bytes(len));
                }
            }
        }
        data.truncate(n);
        data
    }

    /// Something like preprocessed C source.
    fn c_text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "int ",
            "static ",
            "const ",
            "char *",
            "return ",
            "if (",
            ") {\n",
            "}\n",
            "i",
            "n",
            "buf",
            "len",
            " = ",
            " + ",
            ";\n",
            "    ",
            "struct stat st;\n",
            "# 1 \"foo.c\"\n",
            "0",
            "1",
            "NULL",
            "(void)",
            "sizeof(",
            "->",
            "unsigned long ",
            "extern ",
            "for (",
            "typedef struct { int a; } t_",
            "__attribute__((__nothrow__)) ",
            "\n\n\n",
        ];
        let mut out = Vec::with_capacity(n + 40);
        while out.len() < n {
            out.extend_from_slice(WORDS[self.below(WORDS.len())].as_bytes());
            if self.below(16) == 0 {
                out.extend(format!("{}", self.next() % 100_000).bytes());
            }
        }
        out.truncate(n);
        out
    }
}

/// Inputs of many sizes and kinds, crossing the 49152-byte chunk boundary.
fn corpus() -> Vec<Vec<u8>> {
    let mut rng = Rng(0xd15c_c0de_0000_0001);
    let mut inputs = Vec::new();
    let sizes = [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        17,
        18,
        19,
        20,
        21,
        22,
        23,
        31,
        32,
        33,
        34,
        63,
        64,
        65,
        237,
        238,
        239,
        240,
        255,
        256,
        257,
        1000,
        4095,
        4096,
        16384,
        16385,
        49151,
        49152,
        49153,
        49172,
        49173,
        65536,
        98303,
        98304,
        98305,
        147_457,
        1 << 20,
    ];
    for &n in &sizes {
        inputs.push(rng.bytes(n));
        inputs.push(vec![0u8; n]);
        inputs.push(b"abcdefghij".repeat(n / 10 + 1)[..n].to_vec());
        inputs.push(rng.lz_data(n));
        inputs.push(rng.c_text(n));
    }
    // A large zero run, mostly M4 matches with long length extensions.
    inputs.push(vec![0u8; 3 << 20]);
    // Real text: this crate's sources and the LZO headers.
    let mut all = Vec::new();
    for dir in [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        PathBuf::from("/usr/include/lzo"),
    ] {
        let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        for p in paths {
            if let Ok(text) = fs::read(&p) {
                all.extend_from_slice(&text);
                inputs.push(text);
            }
        }
    }
    inputs.push(all);
    // Many small and medium inputs of random size and kind.
    for i in 0..3000 {
        let n = if i % 10 == 0 {
            rng.below(200_000)
        } else {
            rng.below(3000)
        };
        inputs.push(match i % 3 {
            0 => rng.lz_data(n),
            1 => rng.c_text(n),
            _ => rng.bytes(n),
        });
    }
    inputs
}

#[test]
fn compress_is_byte_identical_to_liblzo2() {
    let lib = Liblzo::build();
    let inputs = corpus();
    let theirs = lib.compress(&inputs);
    let mut bytes = 0;
    for (input, reference) in inputs.iter().zip(&theirs) {
        let ours = lzo::compress(input);
        assert!(
            ours == *reference,
            "compress({} bytes) differs from lzo1x_1_compress: {} vs {} bytes, first difference at {:?}",
            input.len(),
            ours.len(),
            reference.len(),
            ours.iter().zip(reference).position(|(a, b)| a != b)
        );
        bytes += input.len();
    }
    eprintln!(
        "lzo1x level 3 matched lzo1x_1_compress on {} inputs ({bytes} bytes)",
        inputs.len()
    );
}

#[test]
fn decompress_inverts_liblzo2() {
    let lib = Liblzo::build();
    let inputs = corpus();
    let theirs = lib.compress(&inputs);
    for (input, stream) in inputs.iter().zip(&theirs) {
        assert_eq!(
            lzo::decompress(stream, input.len()).as_deref(),
            Ok(&input[..]),
            "decompressing liblzo2's stream for {} bytes",
            input.len()
        );
    }
    // And liblzo2 agrees on the same streams with the same limits.
    let cases: Vec<(usize, Vec<u8>)> = inputs
        .iter()
        .zip(&theirs)
        .map(|(input, stream)| (input.len(), stream.clone()))
        .collect();
    for (input, result) in inputs.iter().zip(lib.decompress(&cases)) {
        assert_eq!(result.as_deref(), Ok(&input[..]));
    }
}

#[test]
fn decompress_agrees_with_liblzo2_on_damaged_streams() {
    let lib = Liblzo::build();
    let mut rng = Rng(0xbad5_eed5_0000_0002);
    let samples: Vec<Vec<u8>> = vec![
        rng.c_text(3000),
        rng.lz_data(5000),
        rng.lz_data(70_000),
        vec![b'x'; 20_000],
        rng.bytes(500),
        b"hello".to_vec(),
    ];
    let streams: Vec<Vec<u8>> = samples.iter().map(|s| lzo::compress(s)).collect();
    let mut cases: Vec<(usize, Vec<u8>)> = Vec::new();
    for (sample, stream) in samples.iter().zip(&streams) {
        let n = sample.len();
        // Limits around the true size, and every truncation of the short streams.
        for limit in [0, 1, n / 2, n.saturating_sub(1), n, n + 1, 2 * n + 100] {
            cases.push((limit, stream.clone()));
        }
        if stream.len() < 4000 {
            for cut in 0..stream.len() {
                cases.push((n, stream[..cut].to_vec()));
            }
        }
        let mut extra = stream.clone();
        extra.push(rng.next() as u8);
        cases.push((n, extra));
    }
    for i in 0..20_000 {
        let k = rng.below(streams.len());
        let mut s = streams[k].clone();
        let limit = match rng.below(3) {
            0 => samples[k].len(),
            1 => rng.below(samples[k].len() + 1),
            _ => 1 << 20,
        };
        for _ in 0..1 + rng.below(3) {
            match rng.below(4) {
                0 => {
                    let at = rng.below(s.len());
                    s[at] = rng.next() as u8;
                }
                1 => {
                    let at = rng.below(s.len());
                    s[at] ^= 1 << rng.below(8);
                }
                2 => {
                    let at = rng.below(s.len() + 1);
                    s.insert(at, rng.next() as u8);
                }
                _ if s.len() > 1 => {
                    let at = rng.below(s.len());
                    s.remove(at);
                }
                _ => {}
            }
        }
        if i % 8 == 0 {
            s.truncate(rng.below(s.len() + 1));
        }
        cases.push((limit, s));
    }
    // Short random byte strings, first byte around the instruction boundaries.
    for _ in 0..20_000 {
        let n = rng.below(24);
        let mut s = rng.bytes(n);
        if let Some(b) = s.first_mut() {
            *b %= 40;
        }
        cases.push((rng.below(300), s));
    }

    let theirs = lib.decompress(&cases);
    let mut counts = [0usize; 5];
    for ((limit, stream), reference) in cases.iter().zip(theirs) {
        let ours = lzo::decompress(stream, *limit).map_err(lzo_code);
        assert_eq!(
            ours,
            reference,
            "limit {limit}, stream {:02x?}",
            &stream[..stream.len().min(64)]
        );
        let slot = match reference {
            Ok(_) => 0,
            Err(-4) => 1,
            Err(-5) => 2,
            Err(-6) => 3,
            Err(_) => 4,
        };
        counts[slot] += 1;
    }
    eprintln!(
        "{} damaged streams: {} ok, {} input overrun, {} output overrun, \
         {} lookbehind overrun, {} input not consumed",
        cases.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4]
    );
    assert!(counts.iter().all(|&c| c > 0), "every outcome exercised");
}
