//! Pump mode's fallback for compilers that take no prefix map: distccd's fix-up of the job's root in an ELF object's debug sections.
//!
//! gcc and clang are given `-ffile-prefix-map=ROOT=` and record the
//! client's paths themselves (`pump.rs`). Any other compiler records the
//! job's root; as distccd 3.4 does (`dcc_fix_debug_info`), every occurrence
//! of the root in `.debug_info` and `.debug_str` is then overwritten with as
//! many `/` (the same length, so no offset moves, and `//…/home/u` names
//! the client's `/home/u`). Unlike 3.4, `.debug_line_str`, where DWARF 5
//! keeps the compile directory, and `.debug_line`, where DWARF 4 keeps the
//! include directories, are patched too. Objects that are not ELF,
//! or that do not parse, are left alone.

/// The sections whose strings name the root.
const SECTIONS: [&[u8]; 4] = [
    b".debug_info",
    b".debug_line",
    b".debug_line_str",
    b".debug_str",
];

/// Overwrites `root` with slashes in the debug sections of the ELF object
/// `object`. Returns how many occurrences were patched.
pub fn patch_root(object: &mut [u8], root: &[u8]) -> usize {
    if root.is_empty() {
        return 0;
    }
    let Some(sections) = debug_sections(object) else {
        return 0;
    };
    let mut patched = 0;
    for (start, end) in sections {
        let mut i = start;
        while i + root.len() <= end {
            if object[i..i + root.len()] == *root {
                object[i..i + root.len()].fill(b'/');
                patched += 1;
                i += root.len();
            } else {
                i += 1;
            }
        }
    }
    patched
}

/// Reads an ELF file's header fields: 32 or 64 bits, either byte order.
struct Elf<'a> {
    bytes: &'a [u8],
    wide: bool,
    big: bool,
}

impl Elf<'_> {
    /// The unsigned field of `len` bytes (2, 4 or 8) at `at`.
    fn field(&self, at: usize, len: usize) -> Option<u64> {
        let raw = self.bytes.get(at..at.checked_add(len)?)?;
        let mut value = 0u64;
        for k in 0..len {
            let byte = if self.big { raw[k] } else { raw[len - 1 - k] };
            value = (value << 8) | u64::from(byte);
        }
        Some(value)
    }

    /// An address-sized field (4 or 8 bytes) at `at32` or `at64`.
    fn word(&self, at32: usize, at64: usize) -> Option<u64> {
        match self.wide {
            true => self.field(at64, 8),
            false => self.field(at32, 4),
        }
    }
}

/// The byte ranges of the object's debug sections, checked against its length.
fn debug_sections(bytes: &[u8]) -> Option<Vec<(usize, usize)>> {
    if bytes.get(..4)? != b"\x7fELF" {
        return None;
    }
    let elf = Elf {
        bytes,
        wide: *bytes.get(4)? == 2,
        big: *bytes.get(5)? == 2,
    };
    let shoff = usize::try_from(elf.word(0x20, 0x28)?).ok()?;
    let (entsize_at, num_at, strndx_at) = if elf.wide {
        (0x3a, 0x3c, 0x3e)
    } else {
        (0x2e, 0x30, 0x32)
    };
    let entsize = elf.field(entsize_at, 2)? as usize;
    let count = elf.field(num_at, 2)? as usize;
    let strndx = elf.field(strndx_at, 2)? as usize;
    let section = |i: usize| -> Option<(u64, usize, usize)> {
        let at = shoff.checked_add(i.checked_mul(entsize)?)?;
        let name = elf.field(at, 4)?;
        // A compressed section (SHF_COMPRESSED) holds no plain strings.
        if elf.word(at + 8, at + 8)? & 0x800 != 0 {
            return None;
        }
        let offset = usize::try_from(elf.word(at + 0x10, at + 0x18)?).ok()?;
        let size = usize::try_from(elf.word(at + 0x14, at + 0x20)?).ok()?;
        let end = offset.checked_add(size).filter(|&e| e <= bytes.len())?;
        Some((name, offset, end))
    };
    let (_, names, names_end) = section(strndx)?;
    let names_end = names_end.min(bytes.len());
    let mut out = Vec::new();
    for i in 0..count {
        let Some((name, start, end)) = section(i) else {
            continue;
        };
        let name_at = names.checked_add(name as usize)?;
        let name = bytes.get(name_at..names_end)?;
        let name = &name[..name.iter().position(|&c| c == 0)?];
        if SECTIONS.contains(&name) {
            out.push((start, end));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_goes_from_a_real_objects_debug_sections_only() {
        let dir = crate::testing::TestDir::new("debuginfo");
        let root = dir.path.join("distccd_AbC123/root");
        std::fs::create_dir_all(root.join("home/u")).unwrap();
        let root_bytes = root.as_os_str().as_encoded_bytes().to_vec();
        // The root also in the object's data, where it must stay.
        let mut source = b"int v = 1;\nconst char *s = \"".to_vec();
        source.extend_from_slice(&root_bytes);
        source.extend_from_slice(b"\";\n");
        std::fs::write(root.join("home/u/t.c"), &source).unwrap();
        let out = std::process::Command::new("gcc")
            .args(["-g", "-c", "t.c", "-o", "t.o"])
            .current_dir(root.join("home/u"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut object = std::fs::read(root.join("home/u/t.o")).unwrap();
        let count = |o: &[u8]| {
            o.windows(root_bytes.len())
                .filter(|w| *w == root_bytes)
                .count()
        };
        let before = count(&object);
        let patched = patch_root(&mut object, &root_bytes);
        assert!(patched >= 1, "nothing patched");
        assert_eq!(count(&object), before - patched);
        assert_eq!(count(&object), 1, "the string in .rodata stays");
        let slashes = [&b"/".repeat(root_bytes.len())[..], b"/home/u"].concat();
        assert!(object.windows(slashes.len()).any(|w| w == slashes));
    }

    #[test]
    fn what_is_not_elf_or_is_cut_short_is_left_alone() {
        let mut junk = b"not an object /R/x".to_vec();
        assert_eq!(patch_root(&mut junk, b"/R"), 0);
        let mut cut = b"\x7fELF\x02\x01\x01".to_vec();
        cut.resize(80, 0xff);
        assert_eq!(patch_root(&mut cut, b"/R"), 0);
    }
}
