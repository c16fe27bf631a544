//! The DISTCC_* environment variables (compat section 3.1), each read by one rule, the way distcc 3.4 reads it.
//!
//! Each reader is a thin wrapper over a pure function of the variable's
//! value, so the rules can be tested without touching the process
//! environment.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::Duration;

/// Seconds a failed host is avoided when `DISTCC_BACKOFF_PERIOD` is unset.
pub const DEFAULT_BACKOFF_SECS: u64 = 60;
/// Milliseconds to wait for a free slot when `DISTCC_PAUSE_TIME_MSEC` is unset.
pub const DEFAULT_PAUSE_MSEC: u64 = 1000;
/// Seconds per connect attempt when `DISTCC_CONNECT_TIMEOUT` is unset.
pub const DEFAULT_CONNECT_SECS: u64 = 4;
/// Seconds for a network read or write to make progress when `DISTCC_IO_TIMEOUT` is unset.
pub const DEFAULT_IO_SECS: u64 = 300;

/// A boolean variable as `dcc_getenv_bool` reads it: unset or empty gives
/// `default`, `"1"` is true, `"0"` is false, anything else gives `default`.
pub fn bool_var(name: &str, default: bool) -> bool {
    parse_bool(
        std::env::var_os(name).as_deref().and_then(|v| v.to_str()),
        default,
    )
}

fn parse_bool(value: Option<&str>, default: bool) -> bool {
    match value {
        Some("1") => true,
        Some("0") => false,
        _ => default,
    }
}

/// C's `atoi`: optional leading whitespace and sign, then as many digits as
/// there are; no digits gives 0. Saturates where C would overflow.
fn atoi(value: &str) -> i64 {
    let s = value.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if negative {
        -n
    } else {
        n
    }
}

/// `$TMPDIR`, or `/tmp` when it is unset or empty: where the client's
/// temporary files and the daemon's job directories go.
pub fn tmp_dir() -> PathBuf {
    tmp_dir_from(std::env::var_os("TMPDIR"))
}

fn tmp_dir_from(value: Option<OsString>) -> PathBuf {
    value
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// `DISTCC_SAVE_TEMPS` (a [`bool_var`], default false): keep the client's
/// temporary files and the daemon's job directories.
pub fn save_temps() -> bool {
    bool_var("DISTCC_SAVE_TEMPS", false)
}

/// True if [`distcc_dir`] has a directory to give: `DISTCC_DIR` or `HOME`
/// is set and not empty.
pub fn distcc_dir_known() -> bool {
    dir_from(std::env::var_os("DISTCC_DIR"), std::env::var_os("HOME")).is_ok()
}

/// The directory for `hosts`, `lock/` and `state/`: `$DISTCC_DIR` if set
/// (not created: it is the user's to make), else `$HOME/.distcc` (created
/// if missing). An error if neither variable is set.
///
/// Unlike 3.4, an empty `DISTCC_DIR` counts as unset: 3.4 would put its
/// locks in `/lock`.
pub fn distcc_dir() -> io::Result<PathBuf> {
    let dir = dir_from(std::env::var_os("DISTCC_DIR"), std::env::var_os("HOME"))?;
    if std::env::var_os("DISTCC_DIR").is_none_or(|v| v.is_empty()) {
        make_dir(&dir)?;
    }
    Ok(dir)
}

fn dir_from(distcc_dir: Option<OsString>, home: Option<OsString>) -> io::Result<PathBuf> {
    match (distcc_dir, home) {
        (Some(dir), _) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        (_, Some(home)) if !home.is_empty() => Ok(PathBuf::from(home).join(".distcc")),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "neither DISTCC_DIR nor HOME is set",
        )),
    }
}

/// The client's private key for `,key=` hosts: `$DISTCC_RS_KEY`, else
/// `$DISTCC_DIR/key` (or `~/.distcc/key`) if that file exists.
pub fn client_key() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("DISTCC_RS_KEY").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let dir = dir_from(std::env::var_os("DISTCC_DIR"), std::env::var_os("HOME"));
    match dir.map(|d| d.join("key")) {
        Ok(path) if path.exists() => Ok(path),
        _ => Err(
            "no client key: set DISTCC_RS_KEY, or make $DISTCC_DIR/key with \
                  'distcc-rs key generate' (docs/trust.md)"
                .to_string(),
        ),
    }
}

/// `mkdir(path, 0777)` (the umask applies); an existing directory is fine.
fn make_dir(path: &std::path::Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o777).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// `$DISTCC_DIR/<name>` (`lock` or `state`), created with mode 0777 minus
/// the umask if missing. Fails if `$DISTCC_DIR` itself does not exist.
pub fn distcc_subdir(name: &str) -> io::Result<PathBuf> {
    let dir = distcc_dir()?.join(name);
    make_dir(&dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// `DISTCC_BACKOFF_PERIOD` (`atoi`, seconds, default 60). Zero turns
/// backoff off; so does a negative value, which 3.4 would never match.
/// Set but empty is `atoi("") = 0`, as in 3.4.
pub fn backoff_period() -> Duration {
    backoff_from(std::env::var("DISTCC_BACKOFF_PERIOD").ok().as_deref())
}

fn backoff_from(value: Option<&str>) -> Duration {
    let secs = value.map_or(DEFAULT_BACKOFF_SECS as i64, atoi);
    Duration::from_secs(secs.max(0) as u64)
}

/// How the client places its jobs (`DISTCC_PLACEMENT`, distcc-rs only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// By the load its distcc-rs daemons report (the default).
    Load,
    /// By the load of two hosts drawn at random (the power of two choices,
    /// kept for measurement).
    Two,
    /// By distcc 3.4's static rules only.
    Static,
}

/// `DISTCC_PLACEMENT`: unset, empty or `load` is [`Placement::Load`]; `0`,
/// `off` or `static` is [`Placement::Static`]; `two` is [`Placement::Two`];
/// anything else is the default.
pub fn placement() -> Placement {
    placement_from(std::env::var("DISTCC_PLACEMENT").ok().as_deref())
}

fn placement_from(value: Option<&str>) -> Placement {
    match value {
        Some("0" | "off" | "static") => Placement::Static,
        Some("two") => Placement::Two,
        _ => Placement::Load,
    }
}

/// `DISTCC_PAUSE_TIME_MSEC` (`atoi`, default 1000): how long to sleep when
/// every slot is busy. Zero or negative gives zero; the slot picker still
/// sleeps a little so as not to burn a CPU.
pub fn pause_time() -> Duration {
    pause_from(std::env::var("DISTCC_PAUSE_TIME_MSEC").ok().as_deref())
}

fn pause_from(value: Option<&str>) -> Duration {
    let msec = value.map_or(DEFAULT_PAUSE_MSEC as i64, atoi);
    Duration::from_millis(msec.max(0) as u64)
}

/// `DISTCC_CONNECT_TIMEOUT` (seconds, default 4; distcc-rs only: 3.4 always
/// waits 4 s). Unset, empty, zero or not a number gives the default; the
/// last two with a warning.
pub fn connect_timeout() -> Duration {
    connect_from(std::env::var("DISTCC_CONNECT_TIMEOUT").ok().as_deref())
}

fn connect_from(value: Option<&str>) -> Duration {
    let secs = match value {
        None | Some("") => DEFAULT_CONNECT_SECS,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                log::warn!(
                    "ignoring DISTCC_CONNECT_TIMEOUT '{v}': not a number of seconds above 0; \
                     using {DEFAULT_CONNECT_SECS}"
                );
                DEFAULT_CONNECT_SECS
            }
        },
    };
    Duration::from_secs(secs)
}

/// `DISTCC_IO_TIMEOUT` (seconds, default 300). Set to anything but a whole
/// number above zero, the empty string included, it is an error, and the
/// caller exits 101 as 3.4 does. Unlike 3.4's `atoi`, trailing junk such as
/// `10s` is an error too rather than being read as 10.
pub fn io_timeout() -> Result<Duration, String> {
    io_timeout_from(std::env::var("DISTCC_IO_TIMEOUT").ok().as_deref())
}

/// What a bad `DISTCC_IO_TIMEOUT` is told it should be, after 3.4's words.
const IO_TIMEOUT_WANTED: &str = "want a whole number of seconds above 0";

fn io_timeout_from(value: Option<&str>) -> Result<Duration, String> {
    match value {
        None => Ok(Duration::from_secs(DEFAULT_IO_SECS)),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
            _ => Err(format!(
                "Bad DISTCC_IO_TIMEOUT value: {v}: {IO_TIMEOUT_WANTED}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_read_like_dcc_getenv_bool() {
        for (value, default, want) in [
            (None, true, true),
            (None, false, false),
            (Some(""), true, true),
            (Some("1"), false, true),
            (Some("0"), true, false),
            (Some("yes"), false, false),
            (Some("yes"), true, true),
            (Some("01"), false, false),
            (Some(" 1"), false, false),
        ] {
            assert_eq!(
                parse_bool(value, default),
                want,
                "{value:?} default {default}"
            );
        }
        // The reader itself, on a name no other test uses.
        assert!(bool_var("DISTCC_RS_TEST_UNSET_BOOL", true));
        assert!(!bool_var("DISTCC_RS_TEST_UNSET_BOOL", false));
    }

    #[test]
    fn placement_is_load_unless_turned_off() {
        assert_eq!(placement_from(None), Placement::Load);
        assert_eq!(placement_from(Some("")), Placement::Load);
        assert_eq!(placement_from(Some("load")), Placement::Load);
        assert_eq!(placement_from(Some("two")), Placement::Two);
        for off in ["0", "off", "static"] {
            assert_eq!(placement_from(Some(off)), Placement::Static);
        }
    }

    #[test]
    fn atoi_reads_a_leading_number() {
        for (value, want) in [
            ("", 0),
            ("42", 42),
            ("  7x", 7),
            ("-3", -3),
            ("+5", 5),
            ("x5", 0),
            ("99999999999999999999999", i64::MAX),
        ] {
            assert_eq!(atoi(value), want, "{value:?}");
        }
    }

    #[test]
    fn distcc_dir_prefers_distcc_dir_then_home() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            dir_from(some("/d"), some("/h")).unwrap(),
            PathBuf::from("/d")
        );
        assert_eq!(
            dir_from(None, some("/h")).unwrap(),
            PathBuf::from("/h/.distcc")
        );
        assert_eq!(
            dir_from(some(""), some("/h")).unwrap(),
            PathBuf::from("/h/.distcc")
        );
        assert!(dir_from(None, None).is_err());
        assert!(dir_from(some(""), some("")).is_err());
    }

    #[test]
    fn subdirectories_are_made_once_and_kept() {
        let tmp = crate::testing::TestDir::new("env");
        let dir = tmp.path().join("lock");
        make_dir(&dir).unwrap();
        make_dir(&dir).unwrap();
        assert!(dir.is_dir());
        assert!(make_dir(&tmp.path().join("missing/lock")).is_err());
    }

    #[test]
    fn tmp_dir_is_tmpdir_unless_unset_or_empty() {
        assert_eq!(tmp_dir_from(None), PathBuf::from("/tmp"));
        assert_eq!(tmp_dir_from(Some("".into())), PathBuf::from("/tmp"));
        assert_eq!(tmp_dir_from(Some("/var/t".into())), PathBuf::from("/var/t"));
    }

    #[test]
    fn backoff_period_is_atoi_seconds() {
        assert_eq!(backoff_from(None), Duration::from_secs(60));
        assert_eq!(backoff_from(Some("0")), Duration::ZERO);
        assert_eq!(backoff_from(Some("")), Duration::ZERO);
        assert_eq!(backoff_from(Some("5")), Duration::from_secs(5));
        assert_eq!(backoff_from(Some("5min")), Duration::from_secs(5));
        assert_eq!(backoff_from(Some("-5")), Duration::ZERO);
        assert_eq!(backoff_from(Some("off")), Duration::ZERO);
    }

    #[test]
    fn pause_time_is_atoi_milliseconds() {
        assert_eq!(pause_from(None), Duration::from_millis(1000));
        assert_eq!(pause_from(Some("250")), Duration::from_millis(250));
        assert_eq!(pause_from(Some("0")), Duration::ZERO);
        assert_eq!(pause_from(Some("-1")), Duration::ZERO);
        assert_eq!(pause_from(Some("20ms")), Duration::from_millis(20));
    }

    #[test]
    fn connect_timeout_falls_back_to_four_seconds() {
        assert_eq!(connect_from(None), Duration::from_secs(4));
        assert_eq!(connect_from(Some("")), Duration::from_secs(4));
        assert_eq!(connect_from(Some("10")), Duration::from_secs(10));
        assert_eq!(connect_from(Some("0")), Duration::from_secs(4));
        assert_eq!(connect_from(Some("ten")), Duration::from_secs(4));
    }

    #[test]
    fn io_timeout_must_be_a_positive_number() {
        assert_eq!(io_timeout_from(None), Ok(Duration::from_secs(300)));
        assert_eq!(io_timeout_from(Some("30")), Ok(Duration::from_secs(30)));
        for bad in ["", "0", "-1", "ten", "10s", " 10"] {
            assert_eq!(
                io_timeout_from(Some(bad)),
                Err(format!(
                    "Bad DISTCC_IO_TIMEOUT value: {bad}: want a whole number of seconds above 0"
                )),
                "{bad:?}"
            );
        }
    }
}
