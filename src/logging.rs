//! The one logger: distccd-style lines to syslog, a log file or stderr.
//!
//! Lines look like distccd's: `distccd[PID] (module) LEVEL: text`, where
//! LEVEL is empty for notices, `ERROR` for errors and `Warning` for warnings;
//! an error logged with the target [`CRITICAL`] reads `CRITICAL!`, as
//! distcc's `rs_log_crit` does.
//! distccd's syslog levels map onto `log`'s: emerg to err are `Error`,
//! warning is `Warn`, notice is `Info`, info is `Debug`, debug is `Trace`.

use std::ffi::CString;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The target for an error distcc logs as critical:
/// `log::error!(target: logging::CRITICAL, ...)` prints `CRITICAL! text`.
pub const CRITICAL: &str = "distcc_rs::critical";

/// Where log lines go.
pub enum Destination {
    /// syslog, facility daemon, with the program name as ident.
    Syslog,
    Stderr,
    File(std::fs::File),
}

struct Logger {
    /// The name lines start with, and syslog's ident: set by [`start`].
    program: OnceLock<&'static str>,
    destination: Mutex<Destination>,
}

static LOGGER: Logger = Logger {
    program: OnceLock::new(),
    destination: Mutex::new(Destination::Stderr),
};

/// syslog's ident, kept for as long as openlog may read it.
static IDENT: OnceLock<CString> = OnceLock::new();

/// Sets up the logger for the whole process, once, before the first line:
/// lines name `program` (`distcc`, `distccd`, `distccmon-text`), go to
/// stderr and show warnings and errors. An applet then changes only the
/// level ([`set_level`]) and the destination ([`set_destination`]).
pub fn start(program: &'static str) {
    let _ = LOGGER.program.set(program);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Warn);
}

/// Parses a distccd `--log-level` name.
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    Some(match name {
        "emerg" | "emergency" | "alert" | "critical" | "crit" | "error" | "err" => {
            LevelFilter::Error
        }
        "warning" | "warn" => LevelFilter::Warn,
        "notice" | "note" => LevelFilter::Info,
        "info" => LevelFilter::Debug,
        "debug" => LevelFilter::Trace,
        _ => return None,
    })
}

/// Logs lines at `level` and above from now on.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// The program's name, as [`start`] set it (`distccd` before that).
fn program() -> &'static str {
    LOGGER.program.get().copied().unwrap_or("distccd")
}

/// Sends log lines to `destination` from now on. syslog's ident is the
/// program's name, with facility daemon.
pub fn set_destination(destination: Destination) {
    if let Destination::Syslog = destination {
        let ident = IDENT.get_or_init(|| CString::new(program()).unwrap_or_default());
        // SAFETY: IDENT is NUL-terminated and lives as long as the process,
        // as openlog requires of its ident.
        unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    }
    if let Ok(mut current) = LOGGER.destination.lock() {
        *current = destination;
    }
}

fn level_word(level: Level, target: &str) -> &'static str {
    match level {
        Level::Error if target == CRITICAL => "CRITICAL! ",
        Level::Error => "ERROR: ",
        Level::Warn => "Warning: ",
        _ => "",
    }
}

fn syslog_priority(level: Level, target: &str) -> libc::c_int {
    match level {
        Level::Error if target == CRITICAL => libc::LOG_CRIT,
        Level::Error => libc::LOG_ERR,
        Level::Warn => libc::LOG_WARNING,
        Level::Info => libc::LOG_NOTICE,
        Level::Debug => libc::LOG_INFO,
        Level::Trace => libc::LOG_DEBUG,
    }
}

impl Logger {
    /// A whole line for a file or stderr: `distccd[PID] (module) text`.
    fn line(&self, text: &str) -> String {
        format!("{}[{}] {text}\n", program(), std::process::id())
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // Only our own records: libraries' trace lines are not distccd's log.
        metadata.level() <= log::max_level() && metadata.target().starts_with("distcc_rs")
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let module = record
            .module_path()
            .and_then(|m| m.rsplit("::").next())
            .unwrap_or("distcc");
        let text = format!(
            "({module}) {}{}",
            level_word(record.level(), record.target()),
            record.args()
        );
        let Ok(mut destination) = self.destination.lock() else {
            return;
        };
        match &mut *destination {
            Destination::Syslog => {
                let line = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
                // SAFETY: both strings are NUL-terminated; "%s" takes one.
                unsafe {
                    libc::syslog(
                        libc::LOG_DAEMON | syslog_priority(record.level(), record.target()),
                        c"%s".as_ptr(),
                        line.as_ptr(),
                    )
                };
            }
            // One write(2) per line, so lines from processes sharing a
            // file never interleave and a line costs one system call.
            Destination::Stderr => {
                let _ = std::io::stderr().write_all(self.line(&text).as_bytes());
            }
            Destination::File(file) => {
                let _ = file.write_all(self.line(&text).as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distccd_level_names() {
        assert_eq!(parse_level("notice"), Some(LevelFilter::Info));
        assert_eq!(parse_level("crit"), Some(LevelFilter::Error));
        assert_eq!(parse_level("warn"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("debug"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn levels_are_worded_as_distcc_words_them() {
        assert_eq!(level_word(Level::Error, "distcc_rs::client"), "ERROR: ");
        assert_eq!(level_word(Level::Error, CRITICAL), "CRITICAL! ");
        assert_eq!(level_word(Level::Warn, CRITICAL), "Warning: ");
        assert_eq!(level_word(Level::Info, "distcc_rs::client"), "");
        assert_eq!(syslog_priority(Level::Error, CRITICAL), libc::LOG_CRIT);
    }
}
