//! Monitor state files ($DISTCC_DIR/state/binstate_PID) in distcc 3.4's binary layout: the client writes them, the monitor reads them.
//!
//! The file is `struct dcc_task_state` (`src/state.h`) in the machine's own
//! byte order and C layout, so `distccmon-text` built for the same word
//! size reads ours and our monitor reads theirs. Writing it is best effort:
//! a monitor that cannot see a job never makes the job fail.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `DCC_STATE_MAGIC`: "DIH\0" read as a native `unsigned long`.
pub const MAGIC: libc::c_ulong = 0x4449_4800;
/// Bytes for the file and host names, NUL included.
const NAME_LEN: usize = 128;

/// What a client is doing, as `enum dcc_phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Phase {
    Startup = 0,
    Blocked,
    Connect,
    Preprocess,
    Send,
    Compile,
    Receive,
    Done,
}

impl Phase {
    /// Every phase, in number order.
    pub const ALL: [Phase; 8] = [
        Phase::Startup,
        Phase::Blocked,
        Phase::Connect,
        Phase::Preprocess,
        Phase::Send,
        Phase::Compile,
        Phase::Receive,
        Phase::Done,
    ];

    /// The name `distccmon-text` shows for the phase.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Startup => "Startup",
            Phase::Blocked => "Blocked",
            Phase::Connect => "Connect",
            Phase::Preprocess => "Preprocess",
            Phase::Send => "Send",
            Phase::Compile => "Compile",
            Phase::Receive => "Receive",
            Phase::Done => "Done",
        }
    }
}

/// `struct dcc_task_state`, field for field.
#[derive(Clone, Copy)]
#[repr(C)]
struct Record {
    struct_size: libc::size_t,
    magic: libc::c_ulong,
    cpid: libc::c_ulong,
    file: [u8; NAME_LEN],
    host: [u8; NAME_LEN],
    slot: libc::c_int,
    curr_phase: libc::c_int,
    /// The C struct's `next` pointer: pointer-sized, always zero on disk.
    next: usize,
}

const SIZE: usize = std::mem::size_of::<Record>();

/// The size of a state file: `sizeof(struct dcc_task_state)` on this build
/// (296 on LP64, 280 on ILP32). A monitor reads this many bytes and no more.
pub const RECORD_SIZE: usize = SIZE;

// The sizes the real monitor checks: 296 on LP64, 280 on ILP32. No padding
// anywhere, so the record may be viewed as plain bytes.
const _: () = assert!(
    SIZE == if cfg!(target_pointer_width = "64") {
        296
    } else {
        280
    }
);
const _: () = assert!(
    SIZE == 3 * std::mem::size_of::<libc::c_ulong>()
        + 2 * NAME_LEN
        + 2 * std::mem::size_of::<libc::c_int>()
        + std::mem::size_of::<usize>()
);

impl Record {
    fn bytes(&self) -> [u8; SIZE] {
        // SAFETY: Record is repr(C) plain integers and byte arrays with no
        // padding (asserted above), so every byte is initialised.
        unsafe { std::mem::transmute_copy(self) }
    }
}

/// Copies `text` into a NUL-terminated, zero-filled name field, cut to 127 bytes.
fn name_field(text: &[u8]) -> [u8; NAME_LEN] {
    let mut field = [0u8; NAME_LEN];
    let n = text.len().min(NAME_LEN - 1);
    field[..n].copy_from_slice(&text[..n]);
    field
}

/// The name in a field as a monitor sees it: up to the first NUL, and never
/// more than 127 bytes (distccmon-text forces the last byte to NUL).
fn name_bytes(field: &[u8; NAME_LEN]) -> Vec<u8> {
    let field = &field[..NAME_LEN - 1];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field[..end].to_vec()
}

fn name_text(field: &[u8; NAME_LEN]) -> String {
    String::from_utf8_lossy(&name_bytes(field)).into_owned()
}

/// This client's state file, rewritten at each phase and removed on drop.
#[derive(Debug)]
pub struct State {
    path: PathBuf,
    record: Record,
    written: bool,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("file", &name_text(&self.file))
            .field("host", &name_text(&self.host))
            .field("slot", &self.slot)
            .field("phase", &self.curr_phase)
            .finish()
    }
}

impl State {
    /// The state file for this process under `$DISTCC_DIR/state`, or `None`
    /// (after a debug message) if that directory is unavailable.
    pub fn new() -> Option<State> {
        match crate::env::distcc_subdir("state") {
            Ok(dir) => Some(State::in_dir(&dir)),
            Err(e) => {
                log::debug!("not writing monitor state: {e}");
                None
            }
        }
    }

    /// The state file for this process in `state_dir`. Nothing is written
    /// before the first [`State::update`].
    pub fn in_dir(state_dir: &Path) -> State {
        let pid = std::process::id();
        State {
            path: state_dir.join(format!("binstate_{pid}")),
            record: Record {
                struct_size: SIZE,
                magic: MAGIC,
                cpid: pid as libc::c_ulong,
                file: [0; NAME_LEN],
                host: [0; NAME_LEN],
                slot: 0,
                curr_phase: Phase::Startup as libc::c_int,
                next: 0,
            },
            written: false,
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a new phase and rewrites the file. `file` is the input's
    /// path (only its basename is kept); fields given as `None` keep their
    /// old values. Failures are logged at debug level and otherwise ignored.
    pub fn update(
        &mut self,
        phase: Phase,
        file: Option<&[u8]>,
        host: Option<&str>,
        slot: Option<u32>,
    ) {
        self.record.curr_phase = phase as libc::c_int;
        if let Some(file) = file {
            let base = file.rsplit(|&b| b == b'/').next().unwrap_or(file);
            self.record.file = name_field(base);
        }
        if let Some(host) = host {
            self.record.host = name_field(host.as_bytes());
        }
        if let Some(slot) = slot {
            self.record.slot = libc::c_int::try_from(slot).unwrap_or(libc::c_int::MAX);
        }
        match write_whole(&self.path, &self.record.bytes()) {
            Ok(()) => self.written = true,
            Err(e) => log::debug!("can't write {}: {e}", self.path.display()),
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        if self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `open(O_CREAT|O_WRONLY|O_TRUNC, 0666)` and one `write` of all of `bytes`,
/// so a monitor never sees a record made of two writes.
fn write_whole(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a state path"))?;
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC;
    // SAFETY: cpath is NUL-terminated; the mode is passed as an int as open(2) expects.
    let fd = unsafe { libc::open(cpath.as_ptr(), flags, 0o666 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let n = io::Write::write(&mut std::fs::File::from(fd), bytes)?;
    if n != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    Ok(())
}

/// One client's state, as a monitor reads it. Names are bytes, as the
/// client wrote them: a monitor prints them unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The client's process id as stored (an `unsigned long`; a monitor
    /// prints it as a `long` and signals it as a `pid_t`, as C does).
    pub pid: u64,
    /// The input file's basename (may be empty).
    pub file: Vec<u8>,
    /// The host name (may be empty).
    pub host: Vec<u8>,
    /// The slot held on that host.
    pub slot: i32,
    /// The raw phase number; see [`Entry::phase`].
    pub phase: i32,
}

impl Entry {
    /// The phase as distccmon-text reads it: the field is an unsigned enum,
    /// and any value above `Done` (negative ones included) counts as `Compile`.
    pub fn phase(&self) -> Phase {
        match self.phase {
            0 => Phase::Startup,
            1 => Phase::Blocked,
            2 => Phase::Connect,
            3 => Phase::Preprocess,
            4 => Phase::Send,
            6 => Phase::Receive,
            7 => Phase::Done,
            _ => Phase::Compile,
        }
    }
}

/// Why a state file was not understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not exactly one record long (an empty or half-written file).
    Size(usize),
    /// The `struct_size` field is not this build's.
    StructSize(u64),
    /// The magic number is wrong.
    Magic(u64),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Size(n) => write!(f, "state file is {n} bytes, not {SIZE}"),
            DecodeError::StructSize(n) => write!(f, "state struct size {n}, not {SIZE}"),
            DecodeError::Magic(m) => write!(f, "bad state magic {m:#x}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads one state file's bytes, checking its size and then, in
/// distccmon-text's order, the magic and the struct size.
pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
    if bytes.len() != SIZE {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: bytes holds SIZE bytes, every bit pattern is a valid Record,
    // and read_unaligned needs no alignment.
    let record: Record = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if record.magic != MAGIC {
        return Err(DecodeError::Magic(record.magic as u64));
    }
    if record.struct_size != SIZE {
        return Err(DecodeError::StructSize(record.struct_size as u64));
    }
    Ok(Entry {
        pid: record.cpid as u64,
        file: name_bytes(&record.file),
        host: name_bytes(&record.host),
        slot: record.slot,
        phase: record.curr_phase,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDir;

    #[test]
    fn phase_numbers_and_names() {
        let phases = Phase::ALL;
        for (n, phase) in phases.iter().enumerate() {
            assert_eq!(*phase as i32, n as i32);
        }
        let names: Vec<&str> = phases.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            [
                "Startup",
                "Blocked",
                "Connect",
                "Preprocess",
                "Send",
                "Compile",
                "Receive",
                "Done"
            ]
        );
    }

    #[test]
    fn updates_keep_fields_not_given_and_round_trip() {
        let tmp = TestDir::new("state");
        let mut state = State::in_dir(tmp.path());
        let path = state.path().to_path_buf();
        assert!(!path.exists(), "nothing is written before the first update");
        state.update(
            Phase::Connect,
            Some(b"src/dir/hello.c"),
            Some("127.0.0.1"),
            Some(2),
        );
        let bytes = std::fs::read(&path).unwrap();
        let pid = u64::from(std::process::id());
        let want = Entry {
            pid,
            file: b"hello.c".to_vec(),
            host: b"127.0.0.1".to_vec(),
            slot: 2,
            phase: Phase::Connect as i32,
        };
        assert_eq!(decode(&bytes), Ok(want.clone()));

        state.update(Phase::Compile, None, None, None);
        let entry = decode(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            entry,
            Entry {
                phase: 5,
                ..want.clone()
            }
        );

        state.update(Phase::Preprocess, Some(b""), Some("localhost"), Some(0));
        let entry = decode(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(entry.file, b"");
        assert_eq!(
            (entry.host.as_slice(), entry.slot, entry.phase),
            (&b"localhost"[..], 0, 3)
        );

        let long = [b'x'; 300];
        state.update(Phase::Send, Some(&long), None, None);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(decode(&bytes).unwrap().file.len(), 127);

        drop(state);
        assert!(
            !path.exists(),
            "the state file goes when the client is done"
        );
    }

    #[test]
    fn the_lp64_layout_is_the_observed_one() {
        let tmp = TestDir::new("state");
        let mut state = State::in_dir(tmp.path());
        state.update(Phase::Compile, Some(b"hello.c"), Some("localhost"), Some(1));
        let bytes = std::fs::read(state.path()).unwrap();
        assert_eq!(bytes.len(), SIZE);
        if cfg!(all(target_pointer_width = "64", target_endian = "little")) {
            assert_eq!(SIZE, 296);
            assert_eq!(
                bytes[..16],
                [0x28, 1, 0, 0, 0, 0, 0, 0, 0x00, 0x48, 0x49, 0x44, 0, 0, 0, 0]
            );
            let pid = u64::from(std::process::id()).to_le_bytes();
            assert_eq!(bytes[16..24], pid);
            assert_eq!(&bytes[24..32], b"hello.c\0");
            assert!(bytes[32..152].iter().all(|&b| b == 0));
            assert_eq!(&bytes[152..162], b"localhost\0");
            assert_eq!(bytes[280..284], 1i32.to_le_bytes());
            assert_eq!(bytes[284..288], 5i32.to_le_bytes());
            assert_eq!(bytes[288..296], [0; 8]);
        }
    }

    #[test]
    fn decode_checks_size_and_magic() {
        let tmp = TestDir::new("state");
        let mut state = State::in_dir(tmp.path());
        state.update(Phase::Send, Some(b"a.c"), Some("h"), Some(0));
        let good = std::fs::read(state.path()).unwrap();
        assert_eq!(decode(&[]), Err(DecodeError::Size(0)));
        assert_eq!(decode(&good[..SIZE - 1]), Err(DecodeError::Size(SIZE - 1)));
        let word = std::mem::size_of::<libc::c_ulong>();
        let mut bad = good.clone();
        bad[word] ^= 0xff;
        assert!(matches!(decode(&bad), Err(DecodeError::Magic(_))));
        let mut bad = good.clone();
        bad[0] = bad[0].wrapping_add(1);
        bad[word - 1] = bad[word - 1].wrapping_add(1);
        assert!(matches!(decode(&bad), Err(DecodeError::StructSize(_))));
        // Both wrong: the magic is named, as distccmon-text checks it first.
        bad[word] ^= 0xff;
        assert!(matches!(decode(&bad), Err(DecodeError::Magic(_))));
    }

    #[test]
    fn names_stop_at_127_bytes_and_phases_clamp_like_distccmon_text() {
        let tmp = TestDir::new("state");
        let mut state = State::in_dir(tmp.path());
        state.update(Phase::Send, Some(b"a.c"), Some("h"), Some(0));
        let mut bytes = std::fs::read(state.path()).unwrap();
        let word = std::mem::size_of::<libc::c_ulong>();
        // A file name field with no NUL at all.
        bytes[3 * word..3 * word + NAME_LEN].fill(b'f');
        assert_eq!(decode(&bytes).unwrap().file, vec![b'f'; 127]);
        let phase_at = 3 * word + 2 * NAME_LEN + 4;
        for (raw, want) in [
            (0, Phase::Startup),
            (5, Phase::Compile),
            (7, Phase::Done),
            (8, Phase::Compile),
            (-1, Phase::Compile),
        ] {
            bytes[phase_at..phase_at + 4].copy_from_slice(&i32::to_ne_bytes(raw));
            let entry = decode(&bytes).unwrap();
            assert_eq!((entry.phase, entry.phase()), (raw, want));
        }
    }

    #[test]
    fn distccmon_text_lists_our_state_file() {
        const MONITOR: &str = "/usr/bin/distccmon-text";
        assert!(
            Path::new(MONITOR).exists(),
            "{MONITOR} is missing: install the Debian package `distcc` to run this test"
        );
        let tmp = TestDir::new("state");
        let state_dir = tmp.path().join("state");
        std::fs::create_dir(&state_dir).unwrap();
        let mut state = State::in_dir(&state_dir);
        state.update(
            Phase::Compile,
            Some(b"/src/hello.c"),
            Some("127.0.0.1"),
            Some(3),
        );
        let out = std::process::Command::new(MONITOR)
            .env("DISTCC_DIR", tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let want = format!(
            "{:>6}  {:<10.10}  {:<30.30} {:>24.24}[{}]\n\n",
            std::process::id(),
            "Compile",
            "hello.c",
            "127.0.0.1",
            3
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        state.update(Phase::Preprocess, Some(b""), Some("localhost"), Some(0));
        let out = std::process::Command::new(MONITOR)
            .env("DISTCC_DIR", tmp.path())
            .output()
            .unwrap();
        let want = format!(
            "{:>6}  {:<10.10}  {:<30.30} {:>24.24}[{}]\n\n",
            std::process::id(),
            "Preprocess",
            "",
            "localhost",
            0
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
}
