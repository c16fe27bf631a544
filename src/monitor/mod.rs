//! The text monitor (`distcc-rs mon`, linked as `distccmon-text`): what the clients writing under `$DISTCC_DIR/state` are doing now.
//!
//! A poll reads every `binstate_*` file the way distcc 3.4's `mon.c` does and
//! prints the jobs in `mon-text.c`'s format, so the default output is the
//! same bytes as Debian's `distccmon-text` on the same directory. One thing
//! differs on purpose: distccmon-text deletes any state file older than 60
//! seconds, even that of a client still compiling; this monitor lists a
//! live client however slow it is, and removes an old file only when the
//! process that wrote it is gone. [`daemon`] shows a distcc-rs daemon's
//! running jobs instead, from its `--stats` page.

pub mod daemon;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::SystemTime;

use crate::state::{decode, DecodeError, Entry, Phase, RECORD_SIZE};

/// State files start with this.
const PREFIX: &str = "binstate_";

/// Seconds after which a state file counts as stale (`dcc_phase_max_age`).
const MAX_AGE_SECS: i64 = 60;

/// Whether the process behind a state file still runs, as `kill(pid, 0)` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Process {
    /// It exists (success, or `EPERM`: it exists but is not ours).
    Alive,
    /// `ESRCH`: there is no such process.
    Gone,
    /// Any other error: not listed (as distccmon-text does), never removed.
    Unknown,
}

/// Asks the kernel about `pid`, cut to a `pid_t` as distccmon-text's C does.
fn process(pid: u64) -> Process {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid as libc::pid_t, 0) } == 0 {
        return Process::Alive;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM) => Process::Alive,
        Some(libc::ESRCH) => Process::Gone,
        _ => Process::Unknown,
    }
}

/// The process that owns a state file by its name, `binstate_<pid>`.
fn pid_from_name(name: &[u8]) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX.as_bytes())?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Reads the state directory once. Returns the jobs to show (phase `Done`
/// left out), sorted by host (`strcmp`) then slot, in directory order where
/// those are equal, as distccmon-text sorts them. Only an unreadable
/// directory is an error; a file that cannot be used is skipped.
pub fn poll(state_dir: &Path) -> io::Result<Vec<Entry>> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut entries = Vec::new();
    for dirent in std::fs::read_dir(state_dir)? {
        let Ok(dirent) = dirent else { continue };
        let name = dirent.file_name();
        if !name.as_encoded_bytes().starts_with(PREFIX.as_bytes()) {
            continue;
        }
        if let Some(entry) = read_state_file(&state_dir.join(&name), now) {
            if entry.phase() != Phase::Done {
                entries.push(entry);
            }
        }
    }
    // A stable sort keeps directory order among equal keys, as
    // distccmon-text's insertion into its list does.
    entries.sort_by(|a, b| a.host.cmp(&b.host).then(a.slot.cmp(&b.slot)));
    Ok(entries)
}

/// One state file: its entry if it belongs to a live client. Stale files of
/// clients that are gone are removed on the way.
fn read_state_file(path: &Path, now: i64) -> Option<Entry> {
    // O_NONBLOCK: a FIFO named like a state file must not hang the monitor.
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
        Err(err) => {
            log::warn!(
                "failed to open {}: {}",
                path.display(),
                crate::sys::strerror(&err)
            );
            return None;
        }
    };
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        log::debug!("{} is not a regular file; skipped", path.display());
        return None;
    }
    let stale = now - meta.mtime() > MAX_AGE_SECS;
    let decoded = read_record(&mut file).map(|bytes| decode(&bytes));
    let owner = match &decoded {
        Some(Ok(entry)) => Some(entry.pid),
        _ => path
            .file_name()
            .and_then(|n| pid_from_name(n.as_encoded_bytes())),
    };
    let alive = owner.map(process);
    if stale && matches!(alive, None | Some(Process::Gone)) {
        log::debug!("removing stale {}", path.display());
        if let Err(err) = std::fs::remove_file(path) {
            log::warn!(
                "unlink {} failed: {}",
                path.display(),
                crate::sys::strerror(&err)
            );
        }
        return None;
    }
    match decoded? {
        Ok(entry) => match alive {
            Some(Process::Alive) => Some(entry),
            _ => {
                log::debug!("process {} does not exist; skipped", entry.pid);
                None
            }
        },
        Err(DecodeError::Magic(_)) => {
            log::warn!("wrong magic number: {}", path.display());
            None
        }
        Err(DecodeError::StructSize(_)) => {
            log::warn!(
                "wrong structure size: {}: version mismatch?",
                path.display()
            );
            None
        }
        Err(DecodeError::Size(n)) => {
            // An empty or short file is a client caught mid-write.
            log::debug!("{} has {n} bytes; skipped", path.display());
            None
        }
    }
}

/// The first record's worth of bytes (a longer file is read as far as the
/// record goes, as C's single `read` does); `None` if reading fails.
fn read_record(file: &mut File) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(RECORD_SIZE);
    match file.take(RECORD_SIZE as u64).read_to_end(&mut bytes) {
        Ok(_) => Some(bytes),
        Err(err) => {
            log::debug!("cannot read a state file: {}", crate::sys::strerror(&err));
            None
        }
    }
}

/// `%-W.Ws` or `%W.Ws` on bytes: cut to `width` bytes, padded with spaces
/// on the right (`left`) or on the left.
fn put_field(out: &mut Vec<u8>, text: &[u8], width: usize, left: bool) {
    let text = &text[..text.len().min(width)];
    let pad = width - text.len();
    if !left {
        out.resize(out.len() + pad, b' ');
    }
    out.extend_from_slice(text);
    if left {
        out.resize(out.len() + pad, b' ');
    }
}

/// One job line: `%6ld  %-10.10s  %-30.30s %24.24s[%d]\n`.
fn put_entry(out: &mut Vec<u8>, entry: &Entry) {
    // `(long) cpid`: an unsigned long shown as a signed one.
    out.extend_from_slice(format!("{:6}  ", entry.pid as i64).as_bytes());
    put_field(out, entry.phase().name().as_bytes(), 10, true);
    out.extend_from_slice(b"  ");
    put_field(out, &entry.file, 30, true);
    out.push(b' ');
    put_field(out, &entry.host, 24, false);
    out.extend_from_slice(format!("[{}]\n", entry.slot).as_bytes());
}

/// The lines of one poll as distccmon-text prints them: a line per job,
/// then (with `summary`) the `put_summary` table, then one empty line.
pub fn render(entries: &[Entry], summary: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 * (entries.len() + 1));
    for entry in entries {
        put_entry(&mut out, entry);
    }
    if summary {
        put_summary(&mut out, entries);
    }
    out.push(b'\n');
    out
}

/// Column titles of the summary after the host; each column is as wide as
/// its title, numbers right-aligned.
const SUMMARY_TITLES: [&str; 9] = [
    "JOBS",
    "SLOTS",
    "Startup",
    "Blocked",
    "Connect",
    "Preprocess",
    "Send",
    "Compile",
    "Receive",
];

/// The host column's width in the summary; longer names widen their row.
const SUMMARY_HOST_WIDTH: usize = 24;

/// The name of the summary's last row, the sum over all hosts. Host names
/// cannot hold parentheses, so it never stands for a host.
const SUMMARY_TOTAL: &[u8] = b"(all)";

/// `--summary`: a header line, one row per host (in the job lines' order)
/// with its jobs, the distinct slots they hold and the jobs in each phase,
/// then a `(all)` row of sums. Columns are separated by two spaces.
fn put_summary(out: &mut Vec<u8>, entries: &[Entry]) {
    type Row = (usize, Vec<i32>, [usize; 7]);
    let mut hosts: BTreeMap<&[u8], Row> = BTreeMap::new();
    for entry in entries {
        let row = hosts
            .entry(&entry.host)
            .or_insert_with(|| (0, Vec::new(), [0; 7]));
        row.0 += 1;
        if !row.1.contains(&entry.slot) {
            row.1.push(entry.slot);
        }
        // The columns are the phases a running job can be in, Startup to
        // Receive, which are numbered 0 to 6.
        if let Some(count) = row.2.get_mut(entry.phase() as usize) {
            *count += 1;
        }
    }
    let put_row = |out: &mut Vec<u8>, host: &[u8], numbers: &[String]| {
        out.extend_from_slice(host);
        out.resize(
            out.len() + SUMMARY_HOST_WIDTH.saturating_sub(host.len()),
            b' ',
        );
        for (number, title) in numbers.iter().zip(SUMMARY_TITLES) {
            out.extend_from_slice(format!("  {number:>width$}", width = title.len()).as_bytes());
        }
        out.push(b'\n');
    };
    let titles: Vec<String> = SUMMARY_TITLES.iter().map(|t| t.to_string()).collect();
    put_row(out, b"HOST", &titles);
    let mut total = (0, 0, [0usize; 7]);
    for (host, (jobs, slots, phases)) in &hosts {
        let mut numbers = vec![jobs.to_string(), slots.len().to_string()];
        numbers.extend(phases.iter().map(usize::to_string));
        put_row(out, host, &numbers);
        total.0 += jobs;
        total.1 += slots.len();
        for (sum, n) in total.2.iter_mut().zip(phases) {
            *sum += n;
        }
    }
    let mut numbers = vec![total.0.to_string(), total.1.to_string()];
    numbers.extend(total.2.iter().map(usize::to_string));
    put_row(out, SUMMARY_TOTAL, &numbers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: u64, phase: i32, file: &str, host: &str, slot: i32) -> Entry {
        Entry {
            pid,
            file: file.as_bytes().to_vec(),
            host: host.as_bytes().to_vec(),
            slot,
            phase,
        }
    }

    #[test]
    fn job_lines_follow_distccmon_text_printf() {
        let lines = render(
            &[
                entry(15386, 3, "", "localhost", 0),
                entry(16397, 5, "hello.c", "127.0.0.1", 0),
            ],
            false,
        );
        assert_eq!(
            String::from_utf8(lines).unwrap(),
            " 15386  Preprocess                                                localhost[0]\n\
             \x2016397  Compile     hello.c                                       127.0.0.1[0]\n\
             \n"
        );
    }

    #[test]
    fn long_names_are_cut_and_wide_numbers_kept() {
        let file = "f".repeat(40);
        let host = format!("{}END", "h".repeat(30));
        let lines = render(&[entry(u64::MAX, 9, &file, &host, -3)], false);
        let want = format!(
            "    -1  Compile     {} {}[-3]\n\n",
            "f".repeat(30),
            "h".repeat(24)
        );
        assert_eq!(String::from_utf8(lines).unwrap(), want);
        let lines = render(&[entry(1 << 32, 6, "a.c", "h", 1234567)], false);
        assert!(lines.starts_with(b"4294967296  Receive     a.c "));
        assert!(lines.ends_with(b" h[1234567]\n\n"));
    }

    #[test]
    fn names_are_bytes_and_cut_by_bytes() {
        let mut e = entry(1, 5, "", "", 0);
        e.file = b"caf\xc3\xa9\xff.c".to_vec();
        e.host = b"h\tb".to_vec();
        let lines = render(&[e], false);
        let mut want = b"     1  Compile     caf\xc3\xa9\xff.c".to_vec();
        want.extend_from_slice(&[b' '; 30 - 8]);
        want.extend_from_slice(&[b' '; 1 + 21]);
        want.extend_from_slice(b"h\tb[0]\n\n");
        assert_eq!(lines, want);
    }

    #[test]
    fn summary_counts_jobs_slots_and_phases_per_host() {
        let entries = [
            entry(1, 5, "a.c", "127.0.0.1", 0),
            entry(2, 4, "b.c", "127.0.0.1", 1),
            entry(3, 3, "", "localhost", 0),
            entry(4, 5, "c.c", "localhost", 0),
            entry(5, 2, "d.c", "a-very-long-host-name.example.org", 2),
        ];
        let text = String::from_utf8(render(&entries, true)).unwrap();
        let want = "\
HOST                      JOBS  SLOTS  Startup  Blocked  Connect  Preprocess  Send  Compile  Receive
127.0.0.1                    2      2        0        0        0           0     1        1        0
a-very-long-host-name.example.org     1      1        0        0        1           0     0        0        0
localhost                    2      1        0        0        0           1     0        1        0
(all)                        5      4        0        0        1           1     1        2        0

";
        assert!(text.ends_with(want), "{text}");
        assert_eq!(text.lines().count(), entries.len() + 5 + 1);

        let empty = String::from_utf8(render(&[], true)).unwrap();
        assert!(empty.starts_with("HOST "));
        assert!(empty.ends_with(
            "(all)                        0      0        0        0        0           0     0        0        0\n\n"
        ));
    }

    #[test]
    fn owners_come_from_binstate_names() {
        assert_eq!(pid_from_name(b"binstate_123"), Some(123));
        assert_eq!(pid_from_name(b"binstate_"), None);
        assert_eq!(pid_from_name(b"binstate_12x"), None);
        assert_eq!(pid_from_name(b"binstate_-1"), None);
        assert_eq!(pid_from_name(b"other_1"), None);
    }

    #[test]
    fn kill_zero_tells_live_from_gone() {
        assert_eq!(process(u64::from(std::process::id())), Process::Alive);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = u64::from(child.id());
        child.wait().unwrap();
        assert_eq!(process(pid), Process::Gone);
    }
}
