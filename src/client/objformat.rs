//! The object check (distcc issue #440): what object format the local compiler makes, learned once and cached in `$DISTCC_DIR/objformat`, and whether an object a host returned is of that format.
//!
//! A host whose compiler of the same name targets another machine (a
//! `powerpc-linux-gnu-gcc` that is really the native gcc) returns an object
//! the linker may happily take. The client therefore reads the header of
//! every object a host returns and compares it with the header of an object
//! the local compiler makes, before the object is renamed into place.
//!
//! What is compared:
//! - ELF: the class (32/64), the byte order, `e_machine` and `e_type`
//!   (`ET_REL` for a `-c` object). `e_flags` and the OS ABI are not: they
//!   tell ABIs of one machine apart (armel and armhf), which the linker
//!   refuses to mix anyway, whereas a wrong machine can slip through a
//!   careless link. `-mx32` objects are ELF32 x86-64 and so differ from
//!   `-m64` ones.
//! - Mach-O: 32/64-bit, byte order, CPU type and file type; a universal
//!   (fat) file by its set of CPU types.
//! - COFF objects (and bigobj) by their machine; PE images by theirs.
//! - LLVM bitcode (raw `BC\xC0\xDE` or the `0x0B17C0DE` wrapper) carries its
//!   target triple deep in the bitstream, which this module does not read.
//!   Bitcode is therefore accepted unchecked when the command asks for it
//!   (`-flto…`, `-emit-llvm`: [`options::asks_for_bitcode`]), and is a
//!   mismatch when it does not and the local compiler makes something else.
//!   `-flto` is not part of the cache key: gcc's LTO objects are ELF of the
//!   same machine, and clang's are bitcode, which is never compared.
//! - A file in no format known here (a precompiled header, an empty file
//!   from `-fsyntax-only`) is accepted, as before the check existed: the
//!   check catches wrong machines, not every strange output.
//!
//! How the expectation is learned: by compiling an empty C file locally,
//! `COMPILER <format options> -x c -c /dev/null -o $TMPDIR/distcc_objformat_XXXXXX.o`,
//! rather than from `-dumpmachine`: the object shows exactly what this
//! compiler, its options and its assembler produce (`gcc -m32 -dumpmachine`
//! still prints `x86_64-linux-gnu`), with no table from triples to
//! machines to keep. The probe runs with the local compiles' environment
//! ([`Launcher`]: trimmed PATH, `_DISTCC_SAFEGUARD`), so a masquerade shim
//! never recurses. It runs only when a remote object arrives and nothing is
//! cached, so jobs that end up local pay nothing.
//!
//! The cache file `$DISTCC_DIR/objformat/<hash of the key>` holds a version
//! line, the format, and the key itself: the compiler name as invoked
//! (clang picks its target from it), the resolved path, size and mtime of
//! the compiler, and the options that change the format
//! ([`crate::client::scan::format_options`]). It is written to a temporary
//! file and renamed into place, so concurrent clients at worst each probe
//! once; a file that is unreadable, corrupt or holds another key is
//! ignored and rewritten. A failed probe is not cached: the check is off
//! for that job (with a debug line) and the next job probes again.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::local::Launcher;
use super::output::TempFile;
use crate::options::{self, Tokens};

/// The variable that turns the check off with `0`.
pub const CHECK_VAR: &str = "DISTCC_RS_OBJECT_CHECK";
/// How many bytes of an object are read to tell its format.
pub const HEAD_LEN: usize = 4096;
/// The first line of a cache file.
const CACHE_VERSION: &str = "distcc-rs objformat 1";

const ET_REL: u16 = 1;
/// Mach-O `MH_OBJECT`.
const MH_OBJECT: u32 = 1;

/// An object file format, as far as it tells one target from another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    Elf {
        bits: u8,
        big_endian: bool,
        machine: u16,
        /// `e_type`: 1 (`ET_REL`) for an object.
        kind: u16,
    },
    MachO {
        bits: u8,
        big_endian: bool,
        cpu: u32,
        /// `filetype`: 1 (`MH_OBJECT`) for an object.
        kind: u32,
    },
    /// A Mach-O universal file: its CPU types, sorted.
    Universal { cpus: Vec<u32> },
    /// A COFF object (as MinGW and MSVC-style compilers write with `-c`).
    Coff { machine: u16 },
    /// A PE image (not what `-c` makes).
    Pe { machine: u16 },
    /// LLVM bitcode, raw or in its wrapper.
    Bitcode,
}

/// Why a header was not read as a format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// A known magic number, but the header is cut short.
    Truncated,
    /// No format known here.
    Unrecognised,
}

fn u16_at(b: &[u8], at: usize, big: bool) -> Option<u16> {
    let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    })
}

fn u32_at(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

/// COFF machines recognised in an object header (without them, two bytes
/// of anything would pass for COFF).
const COFF_MACHINES: &[(u16, &str)] = &[
    (0x014c, "i386"),
    (0x8664, "x86-64"),
    (0xaa64, "ARM64"),
    (0xa641, "ARM64EC"),
    (0x01c0, "ARM"),
    (0x01c4, "ARMv7 Thumb-2"),
    (0x0200, "IA-64"),
    (0x5032, "RISC-V 32"),
    (0x5064, "RISC-V 64"),
];

/// Magic numbers of the formats read here, for telling a cut-short header
/// from an unknown one.
const MAGICS: &[&[u8]] = &[
    b"\x7fELF",
    b"BC\xc0\xde",
    &[0xde, 0xc0, 0x17, 0x0b],
    &[0xfe, 0xed, 0xfa, 0xce],
    &[0xfe, 0xed, 0xfa, 0xcf],
    &[0xce, 0xfa, 0xed, 0xfe],
    &[0xcf, 0xfa, 0xed, 0xfe],
    &[0xca, 0xfe, 0xba, 0xbe],
    &[0xca, 0xfe, 0xba, 0xbf],
];

/// Reads the format from the first bytes of a file.
pub fn parse(b: &[u8]) -> Result<Format, HeaderError> {
    if b.len() < 4 {
        return Err(short_header(b));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    match magic {
        0x7f45_4c46 => parse_elf(b),
        0x4243_c0de | 0xdec0_170b => Ok(Format::Bitcode),
        0xfeed_face | 0xfeed_facf | 0xcefa_edfe | 0xcffa_edfe => parse_macho(b, magic),
        0xcafe_babe | 0xcafe_babf => parse_universal(b, magic),
        _ if b.starts_with(b"MZ") => parse_pe(b),
        0x0000_ffff => parse_bigobj(b),
        _ => parse_coff(b),
    }
}

/// Fewer than 4 bytes: the start of a known magic number is a header cut
/// short, anything else no format.
fn short_header(b: &[u8]) -> HeaderError {
    if !b.is_empty() && MAGICS.iter().any(|m| m.starts_with(b)) {
        HeaderError::Truncated
    } else {
        HeaderError::Unrecognised
    }
}

/// ELF: the class and byte order from `e_ident`, then `e_type` and
/// `e_machine`.
fn parse_elf(b: &[u8]) -> Result<Format, HeaderError> {
    use HeaderError::*;
    let bits = match *b.get(4).ok_or(Truncated)? {
        1 => 32,
        2 => 64,
        _ => return Err(Unrecognised),
    };
    let big_endian = match *b.get(5).ok_or(Truncated)? {
        1 => false,
        2 => true,
        _ => return Err(Unrecognised),
    };
    Ok(Format::Elf {
        bits,
        big_endian,
        kind: u16_at(b, 16, big_endian).ok_or(Truncated)?,
        machine: u16_at(b, 18, big_endian).ok_or(Truncated)?,
    })
}

/// Mach-O: the magic number tells the word size and byte order.
fn parse_macho(b: &[u8], magic: u32) -> Result<Format, HeaderError> {
    let big_endian = matches!(magic, 0xfeed_face | 0xfeed_facf);
    let bits = if matches!(magic, 0xfeed_facf | 0xcffa_edfe) {
        64
    } else {
        32
    };
    Ok(Format::MachO {
        bits,
        big_endian,
        cpu: u32_at(b, 4, big_endian).ok_or(HeaderError::Truncated)?,
        kind: u32_at(b, 12, big_endian).ok_or(HeaderError::Truncated)?,
    })
}

/// A Mach-O universal file: the CPU type of each of its `fat_arch` (or
/// `fat_arch_64`) entries.
fn parse_universal(b: &[u8], magic: u32) -> Result<Format, HeaderError> {
    use HeaderError::*;
    // Java class files share 0xcafebabe; their next word (the version, 45
    // or more) is never a plausible count of CPUs.
    let count = u32_at(b, 4, true).ok_or(Truncated)? as usize;
    if count == 0 || count > 20 {
        return Err(Unrecognised);
    }
    let size = if magic == 0xcafe_babe { 20 } else { 32 };
    let mut cpus = (0..count)
        .map(|i| u32_at(b, 8 + i * size, true).ok_or(Truncated))
        .collect::<Result<Vec<u32>, HeaderError>>()?;
    cpus.sort_unstable();
    Ok(Format::Universal { cpus })
}

/// A PE image: the DOS header points to the PE header and its machine.
fn parse_pe(b: &[u8]) -> Result<Format, HeaderError> {
    let pe = u32_at(b, 0x3c, false).ok_or(HeaderError::Truncated)? as usize;
    match b.get(pe..pe.saturating_add(6)) {
        None => Err(HeaderError::Truncated),
        Some(h) if h.starts_with(b"PE\0\0") => Ok(Format::Pe {
            machine: u16::from_le_bytes([h[4], h[5]]),
        }),
        Some(_) => Err(HeaderError::Unrecognised),
    }
}

/// bigobj: an "anonymous object" header, sig1 0, sig2 0xffff, version 2+.
fn parse_bigobj(b: &[u8]) -> Result<Format, HeaderError> {
    let version = u16_at(b, 4, false).ok_or(HeaderError::Truncated)?;
    let machine = u16_at(b, 6, false).ok_or(HeaderError::Truncated)?;
    if version >= 2 && coff_machine_name(machine).is_some() {
        Ok(Format::Coff { machine })
    } else {
        Err(HeaderError::Unrecognised)
    }
}

/// A COFF object: a known machine first, and no optional header.
fn parse_coff(b: &[u8]) -> Result<Format, HeaderError> {
    let machine = u16::from_le_bytes([b[0], b[1]]);
    if coff_machine_name(machine).is_none() {
        return Err(HeaderError::Unrecognised);
    }
    match u16_at(b, 16, false) {
        Some(0) => Ok(Format::Coff { machine }),
        Some(_) => Err(HeaderError::Unrecognised),
        None => Err(HeaderError::Truncated),
    }
}

fn coff_machine_name(machine: u16) -> Option<&'static str> {
    COFF_MACHINES
        .iter()
        .find(|(m, _)| *m == machine)
        .map(|(_, name)| *name)
}

/// readelf's idea of `e_machine`, in short.
fn elf_machine_name(machine: u16) -> Option<&'static str> {
    Some(match machine {
        2 => "SPARC",
        3 => "i386",
        4 => "m68k",
        8 => "MIPS",
        10 => "MIPS RS3000 little-endian",
        15 => "PA-RISC",
        18 => "SPARC32PLUS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "S/390",
        40 => "ARM",
        41 | 0x9026 => "Alpha",
        42 => "SuperH",
        43 => "SPARC v9",
        50 => "IA-64",
        62 => "x86-64",
        92 => "OpenRISC",
        164 => "Hexagon",
        183 => "AArch64",
        243 => "RISC-V",
        247 => "BPF",
        258 => "LoongArch",
        _ => return None,
    })
}

fn macho_cpu_name(cpu: u32) -> Option<&'static str> {
    Some(match cpu {
        7 => "i386",
        0x0100_0007 => "x86_64",
        12 => "arm",
        0x0100_000c => "arm64",
        0x0200_000c => "arm64_32",
        18 => "ppc",
        0x0100_0012 => "ppc64",
        _ => return None,
    })
}

fn endian(big: bool) -> &'static str {
    if big {
        "big-endian"
    } else {
        "little-endian"
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Elf {
                bits,
                big_endian,
                machine,
                kind,
            } => {
                write!(f, "ELF{bits} {}", endian(*big_endian))?;
                match elf_machine_name(*machine) {
                    Some(name) => write!(f, " {name}")?,
                    None => write!(f, " machine {machine:#x}")?,
                }
                match *kind {
                    ET_REL => Ok(()),
                    2 => write!(f, " executable"),
                    3 => write!(f, " shared"),
                    k => write!(f, " (type {k})"),
                }
            }
            Format::MachO {
                bits,
                big_endian,
                cpu,
                kind,
            } => {
                write!(f, "Mach-O {bits}-bit {}", endian(*big_endian))?;
                match macho_cpu_name(*cpu) {
                    Some(name) => write!(f, " {name}")?,
                    None => write!(f, " cpu {cpu:#x}")?,
                }
                if *kind != MH_OBJECT {
                    write!(f, " (file type {kind})")?;
                }
                Ok(())
            }
            Format::Universal { cpus } => {
                let names: Vec<String> = cpus
                    .iter()
                    .map(|&c| macho_cpu_name(c).map_or_else(|| format!("{c:#x}"), str::to_string))
                    .collect();
                write!(f, "Mach-O universal ({})", names.join(", "))
            }
            Format::Coff { machine } => match coff_machine_name(*machine) {
                Some(name) => write!(f, "COFF {name}"),
                None => write!(f, "COFF machine {machine:#x}"),
            },
            Format::Pe { machine } => match coff_machine_name(*machine) {
                Some(name) => write!(f, "PE image {name}"),
                None => write!(f, "PE image machine {machine:#x}"),
            },
            Format::Bitcode => write!(f, "LLVM bitcode"),
        }
    }
}

impl Format {
    /// The format with its article, for messages: "an ELF64 …", "a Mach-O …".
    pub fn with_article(&self) -> String {
        let text = self.to_string();
        let article = if text.starts_with("ELF") || text.starts_with("LLVM") {
            "an"
        } else {
            "a"
        };
        format!("{article} {text}")
    }

    /// One line for the cache file.
    fn encode(&self) -> String {
        match self {
            Format::Elf {
                bits,
                big_endian,
                machine,
                kind,
            } => format!("elf {bits} {} {machine} {kind}", u8::from(*big_endian)),
            Format::MachO {
                bits,
                big_endian,
                cpu,
                kind,
            } => format!("macho {bits} {} {cpu} {kind}", u8::from(*big_endian)),
            Format::Universal { cpus } => {
                let cpus: Vec<String> = cpus.iter().map(u32::to_string).collect();
                format!("universal {}", cpus.join(" "))
            }
            Format::Coff { machine } => format!("coff {machine}"),
            Format::Pe { machine } => format!("pe {machine}"),
            Format::Bitcode => "bitcode".to_string(),
        }
    }

    /// The inverse of [`Format::encode`]; None for anything else.
    fn decode(line: &str) -> Option<Format> {
        let mut words = line.split(' ');
        let kind = words.next()?;
        let nums: Vec<u32> = words.map(str::parse).collect::<Result<_, _>>().ok()?;
        let small = |n: u32| u16::try_from(n).ok();
        let bits = |n: u32| matches!(n, 32 | 64).then_some(n as u8);
        let flag = |n: u32| (n <= 1).then_some(n == 1);
        Some(match (kind, nums.as_slice()) {
            ("elf", &[b, e, m, k]) => Format::Elf {
                bits: bits(b)?,
                big_endian: flag(e)?,
                machine: small(m)?,
                kind: small(k)?,
            },
            ("macho", &[b, e, cpu, kind]) => Format::MachO {
                bits: bits(b)?,
                big_endian: flag(e)?,
                cpu,
                kind,
            },
            ("universal", cpus) if !cpus.is_empty() => Format::Universal {
                cpus: cpus.to_vec(),
            },
            ("coff", &[m]) => Format::Coff { machine: small(m)? },
            ("pe", &[m]) => Format::Pe { machine: small(m)? },
            ("bitcode", &[]) => Format::Bitcode,
            _ => return None,
        })
    }
}

/// True unless `DISTCC_RS_OBJECT_CHECK=0`.
pub fn enabled() -> bool {
    crate::env::bool_var(CHECK_VAR, true)
}

/// The verdict on a received object.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Use it.
    Fine,
    /// Not checked, for this reason (for the debug log).
    Unchecked(&'static str),
    /// Of another format than the local compiler's: do not use it.
    Wrong { got: Format },
}

/// Compares the first bytes of a received object with the expected format,
/// for the command `argv` (read into `tokens`).
pub fn judge(head: &[u8], expected: &Format, argv: &[OsString], tokens: &Tokens) -> Verdict {
    if head.is_empty() {
        return Verdict::Unchecked("the object is empty");
    }
    let got = match parse(head) {
        Ok(got) => got,
        Err(_) => return Verdict::Unchecked("the object is in no format known here"),
    };
    if &got == expected {
        Verdict::Fine
    } else if got == Format::Bitcode && options::asks_for_bitcode(argv, tokens) {
        Verdict::Unchecked("LLVM bitcode for -flto or -emit-llvm")
    } else {
        Verdict::Wrong { got }
    }
}

/// The compiler's identity for the cache: resolved path, size and mtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub path: PathBuf,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Identity {
    /// Finds `name` as the launcher would run it and stats what it resolves to.
    pub fn of(name: &OsStr, launcher: &Launcher) -> Option<Identity> {
        let found = launcher.resolve(name)?;
        let path = std::fs::canonicalize(found).ok()?;
        let meta = std::fs::metadata(&path).ok()?;
        Some(Identity {
            path,
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

/// The cache key: the compiler as invoked, its identity and the format
/// options, NUL-separated (no argument holds a NUL).
pub fn cache_key(argv0: &OsStr, identity: &Identity, options: &[OsString]) -> Vec<u8> {
    let mut key = Vec::new();
    key.extend_from_slice(argv0.as_bytes());
    key.push(0);
    key.extend_from_slice(identity.path.as_os_str().as_bytes());
    key.push(0);
    key.extend_from_slice(
        format!(
            "{} {}.{:09}",
            identity.size, identity.mtime, identity.mtime_nsec
        )
        .as_bytes(),
    );
    for option in options {
        key.push(0);
        key.extend_from_slice(option.as_bytes());
    }
    key
}

/// The cache file's name for a key: 64-bit FNV-1a in hex. A collision only
/// costs a probe, since the file holds the whole key.
fn cache_name(key: &[u8]) -> String {
    crate::sys::fnv1a_hex(key)
}

/// The format stored in a cache file's contents for `key`, if the contents
/// are well-formed and hold that key.
fn read_cache(contents: &[u8], key: &[u8]) -> Option<Format> {
    let rest = contents.strip_prefix(CACHE_VERSION.as_bytes())?;
    let rest = rest.strip_prefix(b"\n")?;
    let end = rest.iter().position(|&c| c == b'\n')?;
    let format = Format::decode(std::str::from_utf8(&rest[..end]).ok()?)?;
    (&rest[end + 1..] == key).then_some(format)
}

fn cache_contents(format: &Format, key: &[u8]) -> Vec<u8> {
    let mut out = format!("{CACHE_VERSION}\n{}\n", format.encode()).into_bytes();
    out.extend_from_slice(key);
    out
}

/// Writes the cache file atomically: a temporary file beside it, renamed
/// over it.
fn write_cache(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    let (temp, mut file) = TempFile::create(dir, ".objformat-", "")?;
    file.write_all(contents)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    drop(file);
    temp.rename_to(&dir.join(name))
}

/// Compiles an empty C file with `argv0` and `options` and reads the format
/// of the object. None (with a debug line) if that fails.
fn probe(
    argv0: &OsStr,
    options: &[OsString],
    launcher: &Launcher,
    tmpdir: &Path,
) -> Option<Format> {
    let (temp, file) = match TempFile::create(tmpdir, "distcc_objformat_", ".o") {
        Ok(created) => created,
        Err(err) => {
            log::debug!(
                "cannot create a probe object in {}: {err}",
                tmpdir.display()
            );
            return None;
        }
    };
    drop(file);
    let mut argv = vec![argv0.to_os_string()];
    argv.extend(options.iter().cloned());
    for word in ["-x", "c", "-c", "/dev/null", "-o"] {
        argv.push(word.into());
    }
    argv.push(temp.path().as_os_str().to_os_string());
    let output = match launcher.probe(&argv) {
        Ok(output) => output,
        Err(err) => {
            log::debug!("object check: cannot run {argv:?}: {err}");
            return None;
        }
    };
    if !output.status.success() {
        log::debug!(
            "object check: {argv:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
        return None;
    }
    let head = match crate::sys::read_head(temp.path(), HEAD_LEN) {
        Ok(head) => head,
        Err(err) => {
            log::debug!("object check: cannot read {}: {err}", temp.path().display());
            return None;
        }
    };
    match parse(&head) {
        Ok(format) => Some(format),
        Err(err) => {
            log::debug!("object check: the probe object of {argv:?} is {err:?}");
            None
        }
    }
}

/// The format objects of the command `argv` have when compiled here: from
/// the cache in `cache_dir` (`$DISTCC_DIR/objformat`) if it is there,
/// else from a probe, which is then cached. None if it cannot be learned.
pub fn expected(
    job: &super::scan::Job,
    launcher: &Launcher,
    cache_dir: Option<&Path>,
    tmpdir: &Path,
) -> Option<Format> {
    let start = Instant::now();
    let argv = &job.argv;
    let argv0 = argv.first()?;
    let Some(identity) = Identity::of(argv0, launcher) else {
        log::debug!("object check: cannot find {}", argv0.to_string_lossy());
        return None;
    };
    let options = super::scan::format_options(argv, &job.tokens);
    let key = cache_key(argv0, &identity, &options);
    let name = cache_name(&key);
    if let Some(dir) = cache_dir {
        if let Some(format) = std::fs::read(dir.join(&name))
            .ok()
            .and_then(|c| read_cache(&c, &key))
        {
            log::trace!(
                "object check: {} makes {format} (cached, {} µs)",
                argv0.to_string_lossy(),
                start.elapsed().as_micros()
            );
            return Some(format);
        }
    }
    let format = probe(argv0, &options, launcher, tmpdir)?;
    log::debug!(
        "object check: {} {options:?} makes {format} (probe took {} ms)",
        argv0.to_string_lossy(),
        start.elapsed().as_millis()
    );
    if let Some(dir) = cache_dir {
        if let Err(err) = write_cache(dir, &name, &cache_contents(&format, &key)) {
            log::debug!(
                "object check: cannot write the cache in {}: {err}",
                dir.display()
            );
        }
    }
    Some(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 64 bytes of `gcc -x c -c /dev/null` objects from Debian's
    /// compilers.
    const X86_64: [u8; 64] = [
        0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x3e, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00,
        0x09, 0x00, 0x08, 0x00,
    ];
    /// `gcc -m32`.
    const I386: [u8; 52] = [
        0x7f, 0x45, 0x4c, 0x46, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xc8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x34, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x28, 0x00, 0x09, 0x00, 0x08, 0x00,
    ];
    /// `powerpc-linux-gnu-gcc`.
    const POWERPC: [u8; 52] = [
        0x7f, 0x45, 0x4c, 0x46, 0x01, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x14, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x10, 0x00, 0x00, 0x80, 0x00, 0x00, 0x34, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x28, 0x00, 0x09, 0x00, 0x08,
    ];
    /// `arm-linux-gnueabihf-gcc`.
    const ARMHF: [u8; 52] = [
        0x7f, 0x45, 0x4c, 0x46, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x28, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x64, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x34, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x28, 0x00, 0x0a, 0x00, 0x09, 0x00,
    ];
    /// `clang --target=x86_64-apple-darwin`.
    const MACHO_X86_64: [u8; 16] = [
        0xcf, 0xfa, 0xed, 0xfe, 0x07, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00,
    ];
    /// `clang --target=x86_64-pc-windows-msvc`.
    const COFF_X86_64: [u8; 20] = [
        0x64, 0x86, 0x04, 0x00, 0xa2, 0x0f, 0x02, 0x6b, 0xb4, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    /// `clang -flto=thin`.
    const BITCODE: [u8; 8] = [0x42, 0x43, 0xc0, 0xde, 0x35, 0x14, 0x00, 0x00];

    fn elf(bits: u8, big_endian: bool, machine: u16) -> Format {
        Format::Elf {
            bits,
            big_endian,
            machine,
            kind: ET_REL,
        }
    }

    #[test]
    fn real_objects_are_read_and_described_like_readelf() {
        let cases: [(&[u8], Format, &str); 4] = [
            (&X86_64, elf(64, false, 62), "ELF64 little-endian x86-64"),
            (&I386, elf(32, false, 3), "ELF32 little-endian i386"),
            (&POWERPC, elf(32, true, 20), "ELF32 big-endian PowerPC"),
            (&ARMHF, elf(32, false, 40), "ELF32 little-endian ARM"),
        ];
        for (bytes, want, text) in cases {
            let got = parse(bytes).unwrap();
            assert_eq!(got, want);
            assert_eq!(got.to_string(), text);
        }
        assert_eq!(
            parse(&MACHO_X86_64).unwrap().to_string(),
            "Mach-O 64-bit little-endian x86_64"
        );
        assert_eq!(
            parse(&COFF_X86_64).unwrap(),
            Format::Coff { machine: 0x8664 }
        );
        assert_eq!(parse(&BITCODE).unwrap(), Format::Bitcode);
        assert_eq!(
            parse(&[0xde, 0xc0, 0x17, 0x0b, 0, 0, 0, 0]).unwrap(),
            Format::Bitcode
        );
        assert_eq!(
            parse(&X86_64).unwrap().with_article(),
            "an ELF64 little-endian x86-64"
        );
    }

    #[test]
    fn crafted_headers_of_other_formats() {
        // x32: ELF32 x86-64, not the same as -m64.
        let mut x32 = I386;
        x32[18] = 62;
        assert_eq!(parse(&x32).unwrap(), elf(32, false, 62));
        assert_ne!(parse(&x32).unwrap(), parse(&X86_64).unwrap());
        // An executable is not an object.
        let mut exec = X86_64;
        exec[16] = 2;
        assert_eq!(
            parse(&exec).unwrap().to_string(),
            "ELF64 little-endian x86-64 executable"
        );
        assert_ne!(parse(&exec).unwrap(), parse(&X86_64).unwrap());
        // A universal file with x86_64 and arm64, listed in either order.
        let mut fat = vec![0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2];
        fat.extend_from_slice(&[1, 0, 0, 12]);
        fat.extend_from_slice(&[0; 16]);
        fat.extend_from_slice(&[1, 0, 0, 7]);
        fat.extend_from_slice(&[0; 16]);
        let got = parse(&fat).unwrap();
        assert_eq!(got.to_string(), "Mach-O universal (x86_64, arm64)");
        assert_eq!(
            got,
            Format::Universal {
                cpus: vec![0x0100_0007, 0x0100_000c]
            }
        );
        // A Java class file is not a universal binary.
        let class = [0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 61];
        assert_eq!(parse(&class), Err(HeaderError::Unrecognised));
        // A PE image.
        let mut pe = vec![0u8; 0x80 + 6];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        pe[0x84..0x86].copy_from_slice(&0xaa64u16.to_le_bytes());
        assert_eq!(parse(&pe).unwrap().to_string(), "PE image ARM64");
        // A bigobj COFF object.
        let bigobj = [0, 0, 0xff, 0xff, 2, 0, 0x64, 0x86];
        assert_eq!(parse(&bigobj).unwrap(), Format::Coff { machine: 0x8664 });
    }

    #[test]
    fn truncated_and_garbage_input() {
        use HeaderError::*;
        assert_eq!(parse(b""), Err(Unrecognised));
        assert_eq!(parse(&X86_64[..3]), Err(Truncated));
        assert_eq!(parse(&X86_64[..19]), Err(Truncated));
        assert_eq!(parse(&POWERPC[..5]), Err(Truncated));
        assert_eq!(parse(&MACHO_X86_64[..6]), Err(Truncated));
        assert_eq!(parse(&COFF_X86_64[..10]), Err(Truncated));
        assert_eq!(parse(b"MZ\0\0"), Err(Truncated));
        assert_eq!(parse(b"\x7fELF\x07\x01"), Err(Unrecognised));
        assert_eq!(parse(b"\x7fELF\x01\x09"), Err(Unrecognised));
        assert_eq!(parse(b"int main(void) { return 0; }\n"), Err(Unrecognised));
        assert_eq!(parse(b"gpch013"), Err(Unrecognised));
        assert_eq!(
            parse(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 0]),
            Err(Unrecognised)
        );
    }

    #[test]
    fn verdicts() {
        let argv: Vec<OsString> = ["powerpc-linux-gnu-gcc", "-c", "x.c"]
            .iter()
            .map(OsString::from)
            .collect();
        let ppc = parse(&POWERPC).unwrap();
        let judge = |head: &[u8], expected: &Format, argv: &[OsString]| {
            super::judge(head, expected, argv, &Tokens::of(argv))
        };
        assert_eq!(judge(&POWERPC, &ppc, &argv), Verdict::Fine);
        assert_eq!(
            judge(&X86_64, &ppc, &argv),
            Verdict::Wrong {
                got: elf(64, false, 62)
            }
        );
        assert!(matches!(judge(b"", &ppc, &argv), Verdict::Unchecked(_)));
        assert!(matches!(judge(b"gpch", &ppc, &argv), Verdict::Unchecked(_)));
        // Bitcode is a mismatch unless the command asks for it.
        assert_eq!(
            judge(&BITCODE, &ppc, &argv),
            Verdict::Wrong {
                got: Format::Bitcode
            }
        );
        let mut lto = argv.clone();
        lto.push("-flto=thin".into());
        assert!(matches!(judge(&BITCODE, &ppc, &lto), Verdict::Unchecked(_)));
        // But an ELF object for -flto is still compared.
        assert!(matches!(judge(&X86_64, &ppc, &lto), Verdict::Wrong { .. }));
        // An output named like an option does not ask for bitcode.
        let mut named = argv.clone();
        named.extend(["-o".into(), "-flto.o".into()]);
        assert_eq!(
            judge(&BITCODE, &ppc, &named),
            Verdict::Wrong {
                got: Format::Bitcode
            }
        );
    }

    #[test]
    fn cache_lines_round_trip_and_reject_corruption() {
        let formats = [
            elf(64, false, 62),
            elf(32, true, 20),
            parse(&MACHO_X86_64).unwrap(),
            Format::Universal {
                cpus: vec![7, 0x0100_0007],
            },
            Format::Coff { machine: 0x8664 },
            Format::Pe { machine: 0x14c },
            Format::Bitcode,
        ];
        for format in formats {
            assert_eq!(Format::decode(&format.encode()), Some(format.clone()));
            let contents = cache_contents(&format, b"gcc\0/usr/bin/gcc-14");
            assert_eq!(read_cache(&contents, b"gcc\0/usr/bin/gcc-14"), Some(format));
            // Another key (a hash collision) is not taken for this one.
            assert_eq!(read_cache(&contents, b"gcc\0/usr/bin/gcc-13"), None);
        }
        for bad in [
            &b""[..],
            b"distcc-rs objformat 1\n",
            b"distcc-rs objformat 2\nelf 64 0 62 1\nk",
            b"distcc-rs objformat 1\nelf 65 0 62 1\nk",
            b"distcc-rs objformat 1\nelf 64 0 99999 1\nk",
            b"distcc-rs objformat 1\nelf 64 0 62\nk",
            b"distcc-rs objformat 1\nwhatever\nk",
            b"\x00\xff\x13garbage",
        ] {
            assert_eq!(read_cache(bad, b"k"), None, "{bad:?}");
        }
    }

    #[test]
    fn cache_key_changes_with_format_options_and_the_compiler_only() {
        let id = Identity {
            path: PathBuf::from("/usr/bin/x86_64-linux-gnu-gcc-14"),
            size: 1000,
            mtime: 1_700_000_000,
            mtime_nsec: 5,
        };
        let key_of = |args: &[&str]| {
            let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
            let tokens = crate::options::Tokens::of(&argv);
            let options = crate::client::scan::format_options(&argv, &tokens);
            cache_name(&cache_key(&argv[0], &id, &options))
        };
        let plain = key_of(&["gcc", "-c", "x.c", "-o", "x.o"]);
        // Options that do not change the format leave the key alone.
        for same in [
            &["gcc", "-O2", "-g", "-c", "y.c", "-o", "obj/y.o"][..],
            &["gcc", "-march=znver3", "-DX=1", "-Iinc", "-c", "x.c"],
            &["gcc", "-flto", "-c", "x.c"],
            &["gcc", "-c", "x.c", "-o", "-m32"],
            &["gcc", "-mfpmath=sse", "-c", "x.c"],
        ] {
            assert_eq!(key_of(same), plain, "{same:?}");
        }
        // Options that do change it, and the name the compiler was called by.
        let mut seen = vec![plain];
        for other in [
            &["gcc", "-m32", "-c", "x.c"][..],
            &["gcc", "-m64", "-c", "x.c"],
            &["gcc", "-mx32", "-c", "x.c"],
            &["gcc", "-m16", "-c", "x.c"],
            &["gcc", "-mbig-endian", "-c", "x.c"],
            &["gcc", "-mlittle-endian", "-c", "x.c"],
            &["gcc", "-EB", "-c", "x.c"],
            &["gcc", "-EL", "-c", "x.c"],
            &["gcc", "-mabi=n32", "-c", "x.c"],
            &["gcc", "--target=aarch64-linux-gnu", "-c", "x.c"],
            &["gcc", "-target", "aarch64-linux-gnu", "-c", "x.c"],
            &["gcc", "-target", "arm-linux-gnueabihf", "-c", "x.c"],
            &["gcc", "-arch", "arm64", "-c", "x.c"],
            &["cc", "-c", "x.c"],
        ] {
            let key = key_of(other);
            assert!(!seen.contains(&key), "{other:?} gives a key already seen");
            seen.push(key);
        }
        // The compiler's identity is in the key.
        let argv0 = OsStr::new("gcc");
        let newer = Identity {
            mtime: id.mtime + 1,
            ..id.clone()
        };
        let bigger = Identity {
            size: 1001,
            ..id.clone()
        };
        let elsewhere = Identity {
            path: PathBuf::from("/opt/gcc/bin/gcc"),
            ..id.clone()
        };
        let base = cache_key(argv0, &id, &[]);
        for changed in [newer, bigger, elsewhere] {
            assert_ne!(cache_key(argv0, &changed, &[]), base);
        }
    }

    #[test]
    fn bitcode_requests() {
        let has = |args: &[&str]| {
            let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
            options::asks_for_bitcode(&argv, &Tokens::of(&argv))
        };
        assert!(has(&["clang", "-flto=thin", "-c", "x.c"]));
        assert!(has(&["clang", "-flto", "-c", "x.c"]));
        assert!(has(&["clang", "-emit-llvm", "-c", "x.c"]));
        assert!(!has(&["clang", "-c", "x.c"]));
        assert!(!has(&["clang", "-fno-lto", "-c", "x.c"]));
        assert!(!has(&["clang", "-flto=none", "-c", "x.c"]));
        assert!(!has(&["-flto", "-c", "x.c"]));
    }
}
