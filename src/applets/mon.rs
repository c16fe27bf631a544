//! The `mon` applet (linked as `distccmon-text`): the text monitor's command line, DELAY and the poll loop.

use std::ffi::OsString;
use std::time::Duration;

use argh::FromArgs;

use super::{stdout, Call, Outcome, Status};
use crate::cluster::Host;
use crate::exitcode::ExitCode;
use crate::monitor::{self, daemon::Target};

/// Shows the jobs of the distcc clients that write to $DISTCC_DIR/state
/// (default ~/.distcc/state), one line per job: pid, phase, file, host and
/// [slot], then an empty line. The output is that of distccmon-text 3.4,
/// except that a slow client is listed however old its state file is; a
/// stale file (over 60 s old) is removed only when its process is gone.
/// Files that are not state records are skipped, with distccmon-text's
/// warnings; DISTCC_VERBOSE=1 also logs each file skipped or removed.
/// Exit status: 0, 1 for a bad command line, 101 if neither DISTCC_DIR nor
/// HOME is set, 107 if the state directory cannot be read; with --daemon,
/// 103 if the daemon cannot be reached, 107 if the connection fails or the
/// reply takes over 5 s, 108 if it is cut short, and 109 if it is not a
/// distcc-rs stats page. With --cluster HOST..., the cluster view of those
/// daemons' --stats pages (docs/cluster.md): every host's slots, busy
/// slots, queue, load and state, the running and queued jobs (host,
/// elapsed, client, compiler, input) and the clients; a host that does not
/// answer, or a distccd 3.4 (no job list), is a row that says so, and the
/// exit status stays 0. The words after --cluster up to the next option are
/// HOSTs, but a last one that is a number is DELAY.
#[derive(FromArgs)]
struct Options {
    /// poll again every DELAY seconds (a C number: fractions and exponents
    /// allowed) until killed; without it, or with 0, poll once; negative,
    /// infinite and NaN delays are refused
    #[argh(positional)]
    delay: Option<String>,
    /// after the job lines, a table with one row per host: jobs, slots in
    /// use and jobs in each phase, and a last row "(all)" of sums; with
    /// --daemon, the number of jobs per client address
    #[argh(switch)]
    summary: bool,
    /// show the jobs a distcc-rs daemon is running, for every client, from
    /// its --stats page at HOST[:PORT] (port 3633 unless given)
    #[argh(option, arg_name = "HOST[:PORT]")]
    daemon: Option<String>,
    /// show the cluster view of these daemons, from their --stats pages at
    /// HOST[:PORT] (port 3633 unless given): slots, queue, running jobs
    /// and clients; all the words that follow, up to an option, are HOSTs
    #[argh(option, arg_name = "HOST[:PORT]")]
    cluster: Vec<String>,
}

/// Gives each word after `--cluster`, up to the next option, its own
/// `--cluster` for argh; a last word that is a number stays DELAY.
fn cluster_hosts_spread(words: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(words.len());
    let mut words = words.into_iter().peekable();
    while let Some(word) = words.next() {
        if word != "--cluster" {
            out.push(word);
            continue;
        }
        let mut hosts = Vec::new();
        while let Some(host) = words.next_if(|w| !w.starts_with('-')) {
            hosts.push(host);
        }
        let delay = match hosts.last() {
            Some(last) if hosts.len() > 1 && parse_delay(last).is_ok() => hosts.pop(),
            _ => None,
        };
        if hosts.is_empty() {
            // argh says that --cluster needs its value.
            out.push(word);
        }
        for host in hosts {
            out.extend(["--cluster".to_string(), host]);
        }
        out.extend(delay);
    }
    out
}

/// Lets argh take a negative number (`-0`, `-.5`) as DELAY rather than as
/// an unknown option, by moving it after `--`.
fn numbers_last(words: Vec<String>) -> Vec<String> {
    let is_number = |w: &str| {
        w.strip_prefix('-')
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
    };
    if words.iter().any(|w| w == "--") {
        return words;
    }
    let (numbers, mut rest): (Vec<String>, Vec<String>) =
        words.into_iter().partition(|w| is_number(w));
    if !numbers.is_empty() {
        rest.push("--".into());
        rest.extend(numbers);
    }
    rest
}

/// The arguments after argv[0], with negative numbers last.
fn words(args: &[OsString]) -> Result<Vec<String>, String> {
    let words =
        super::utf8_words(args).map_err(|arg| format!("argument is not valid UTF-8: {arg:?}"))?;
    Ok(numbers_last(cluster_hosts_spread(words)))
}

pub fn main(call: Call) -> Outcome {
    let verbose = crate::env::bool_var("DISTCC_VERBOSE", false);
    crate::logging::set_level(if verbose {
        log::LevelFilter::Trace
    } else {
        log::LevelFilter::Warn
    });
    let words = match words(&call.args) {
        Ok(words) => words,
        Err(why) => return Ok(Status::Usage(why)),
    };
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let options: Options = match super::parse_options(&[&call.command], &refs) {
        Ok(o) => o,
        Err(outcome) => return outcome,
    };
    let delay = match options.delay.as_deref().map(parse_delay).transpose() {
        Ok(delay) => delay.flatten(),
        Err(why) => return Ok(Status::Usage(why.to_string())),
    };
    let target = match options.daemon.as_deref().map(Target::parse).transpose() {
        Ok(target) => target,
        Err(why) => return Ok(Status::Usage(format!("--daemon: {why}"))),
    };
    if !options.cluster.is_empty() {
        if target.is_some() {
            return Ok(Status::Usage(
                "--daemon and --cluster go one at a time".into(),
            ));
        }
        return cluster(delay, &options.cluster);
    }
    match target {
        Some(target) => run(delay, || {
            monitor::daemon::fetch(&target)
                .map(|report| monitor::daemon::render(&target, &report, options.summary))
                .map_err(|err| {
                    log::error!("{err}");
                    err.exit_code()
                })
        }),
        None => {
            let state_dir = match state_dir() {
                Ok(dir) => dir,
                Err(code) => return Ok(Status::Exit(code)),
            };
            run(delay, || match monitor::poll(&state_dir) {
                Ok(entries) => Ok(monitor::render(&entries, options.summary)),
                Err(err) => {
                    log::error!(
                        "failed to opendir {}: {}",
                        state_dir.display(),
                        crate::sys::strerror(&err)
                    );
                    Err(ExitCode::IoError)
                }
            })
        }
    }
}

/// `mon --cluster`: every poll asks all the daemons at once, each bounded
/// in time, and shows what each answered.
fn cluster(delay: Option<Duration>, specs: &[String]) -> Outcome {
    let targets = match specs
        .iter()
        .map(|s| Target::parse(s).map_err(|why| format!("--cluster: {why}")))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(targets) => targets,
        Err(why) => return Ok(Status::Usage(why)),
    };
    if targets.len() > crate::cluster::MAX_HOSTS {
        return Ok(Status::Usage(format!(
            "--cluster: {} hosts; at most {} are shown",
            targets.len(),
            crate::cluster::MAX_HOSTS
        )));
    }
    run(delay, || {
        let hosts: Vec<Host> = crate::cluster::fetch_all(&targets)
            .into_iter()
            .zip(&targets)
            .map(|(answer, target)| Host {
                name: target.to_string(),
                this: false,
                answer,
            })
            .collect();
        Ok(crate::cluster::text(&hosts).into_bytes())
    })
}

/// `$DISTCC_DIR/state`, made if missing, as distccmon-text finds it.
fn state_dir() -> Result<std::path::PathBuf, ExitCode> {
    if !crate::env::distcc_dir_known() {
        log::error!("neither DISTCC_DIR nor HOME is set; can't find distcc directory");
        return Err(ExitCode::BadArguments);
    }
    crate::env::distcc_subdir("state").map_err(|err| {
        log::error!(
            "cannot make the state directory: {}",
            crate::sys::strerror(&err)
        );
        ExitCode::IoError
    })
}

/// Polls once, or every `delay` until a poll fails; each poll's text is
/// written and flushed whole, through the one stdout writer (so a closed
/// stdout ends the monitor quietly). A failed poll has logged its error
/// and gives its exit code.
fn run(delay: Option<Duration>, mut poll: impl FnMut() -> Result<Vec<u8>, ExitCode>) -> Outcome {
    loop {
        let text = match poll() {
            Ok(text) => text,
            Err(code) => return Ok(Status::Exit(code)),
        };
        stdout::write(&text)?;
        match delay {
            Some(delay) => std::thread::sleep(delay),
            None => return Ok(Status::OK),
        }
    }
}

/// Why a DELAY was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DelayError {
    /// Not wholly a C number.
    NotANumber(String),
    /// Negative, infinite or NaN.
    NotFinite(String),
    /// More seconds than a `Duration` holds.
    TooLong(String),
}

impl std::fmt::Display for DelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DelayError::NotANumber(w) => write!(f, "bad DELAY '{w}': not a number of seconds"),
            DelayError::NotFinite(w) => write!(
                f,
                "bad DELAY '{w}': must be a finite number of seconds, 0 or more"
            ),
            DelayError::TooLong(w) => write!(f, "bad DELAY '{w}': too long"),
        }
    }
}

/// DELAY as distccmon-text reads it: `strtod` that must use the whole word,
/// stored in a C `float`; `None` (poll once) when that float is 0. Unlike
/// distccmon-text, which turns a negative, infinite or NaN delay into a
/// wrapped-around or zero `usleep`, those are refused.
fn parse_delay(word: &str) -> Result<Option<Duration>, DelayError> {
    let (value, used) = strtod(word);
    if used != word.len() {
        return Err(DelayError::NotANumber(word.into()));
    }
    let seconds = value as f32;
    if seconds.is_nan() || seconds.is_infinite() || seconds < 0.0 {
        return Err(DelayError::NotFinite(word.into()));
    }
    if seconds == 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f32(seconds)
        .map(Some)
        .map_err(|_| DelayError::TooLong(word.into()))
}

/// C's `strtod` in the C locale: the value and the number of bytes it used
/// (0, not counting leading white space, when there is no number). Takes
/// leading white space, a sign, then a decimal number with an optional
/// exponent, a hex number (`0x1.8p3`), `inf`, `infinity` or `nan[(...)]`.
fn strtod(text: &str) -> (f64, usize) {
    let b = text.as_bytes();
    let mut i = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(b.len());
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let sign = if negative { -1.0 } else { 1.0 };
    let rest = &text[i..];
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with("inf") {
        let n = if lower.starts_with("infinity") { 8 } else { 3 };
        return (sign * f64::INFINITY, i + n);
    }
    if lower.starts_with("nan") {
        let mut n = 3;
        if let Some(close) = rest[3..].strip_prefix('(').and_then(|r| {
            r.find(')').filter(|&end| {
                r[..end]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_')
            })
        }) {
            n += close + 2;
        }
        return (f64::NAN, i + n);
    }
    if lower.starts_with("0x") {
        if let Some((value, n)) = hex_float(&rest[2..]) {
            return (sign * value, i + 2 + n);
        }
    }
    // Decimal: digits, an optional point and digits (at least one digit in
    // all), then an exponent only if it has digits.
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int = digits(i);
    let mut end = i + int;
    let mut frac = 0;
    if b.get(end) == Some(&b'.') {
        frac = digits(end + 1);
        if int + frac > 0 {
            end += 1 + frac;
        }
    }
    if int + frac == 0 {
        return (0.0, 0);
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let mut at = end + 1;
        if matches!(b.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let n = digits(at);
        if n > 0 {
            end = at + n;
        }
    }
    let value: f64 = text[i..end].parse().unwrap_or(0.0);
    (sign * value, end)
}

/// The part of a hex float after `0x`: its value and the bytes used, or
/// `None` if no hex digit follows (then strtod reads just the `0`).
fn hex_float(text: &str) -> Option<(f64, usize)> {
    let b = text.as_bytes();
    let mut value = 0f64;
    let mut scale = 0i32;
    let mut i = 0;
    let mut seen = false;
    while let Some(d) = b.get(i).and_then(|&c| (c as char).to_digit(16)) {
        value = value * 16.0 + f64::from(d);
        seen = true;
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        let mut j = i + 1;
        while let Some(d) = b.get(j).and_then(|&c| (c as char).to_digit(16)) {
            value = value * 16.0 + f64::from(d);
            scale -= 4;
            seen = true;
            j += 1;
        }
        if seen {
            i = j;
        }
    }
    if !seen {
        return None;
    }
    if matches!(b.get(i), Some(b'p' | b'P')) {
        let mut at = i + 1;
        let negative = b.get(at) == Some(&b'-');
        if matches!(b.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let n = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n > 0 {
            let exp: i32 = text[at..at + n].parse().unwrap_or(i32::MAX / 2);
            scale = scale.saturating_add(if negative { -exp } else { exp });
            i = at + n;
        }
    }
    Some((value * 2f64.powi(scale), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_reads_what_c_reads() {
        for (text, value, used) in [
            ("2", 2.0, 1),
            ("1e-1", 0.1, 4),
            (" 2", 2.0, 2),
            ("2x", 2.0, 1),
            ("2 ", 2.0, 1),
            ("1.", 1.0, 2),
            (".5", 0.5, 2),
            ("  +.5e-1", 0.05, 8),
            ("1e", 1.0, 1),
            ("1e+", 1.0, 1),
            ("-0", -0.0, 2),
            ("0x", 0.0, 1),
            ("0x1p-3", 0.125, 6),
            ("0x1.8", 1.5, 5),
            ("0X10P1", 32.0, 6),
            ("", 0.0, 0),
            ("  ", 0.0, 0),
            ("-", 0.0, 0),
            (".", 0.0, 0),
            ("e5", 0.0, 0),
            ("Infinity", f64::INFINITY, 8),
            ("-inf", f64::NEG_INFINITY, 4),
            ("infinit", f64::INFINITY, 3),
        ] {
            let (v, n) = strtod(text);
            assert_eq!((v, n), (value, used), "strtod({text:?})");
        }
        assert!(strtod("nan").0.is_nan());
        assert_eq!(strtod("nan(x1)").1, 7);
        assert_eq!(strtod("nan(").1, 3);
    }

    #[test]
    fn delay_words_like_distccmon_text() {
        let ms = |n| Ok(Some(Duration::from_millis(n)));
        assert_eq!(parse_delay("0"), Ok(None));
        assert_eq!(
            parse_delay(""),
            Ok(None),
            "strtod(\"\") is 0 and uses it all"
        );
        assert_eq!(parse_delay("-0"), Ok(None));
        assert_eq!(parse_delay("0.0"), Ok(None));
        assert_eq!(parse_delay("1e-50"), Ok(None), "0 once stored in a float");
        assert_eq!(parse_delay("2"), ms(2000));
        assert_eq!(parse_delay(" 2"), ms(2000));
        assert_eq!(parse_delay("0x1p-3"), ms(125));
        let close = parse_delay("1e-1").unwrap().unwrap().as_secs_f64();
        assert!((close - 0.1).abs() < 1e-6, "{close}");
        for bad in [
            "2x", "2 ", "  ", "-", ".", "1e", "0x", "-1", "-0.5", "nan", "inf", "1e39",
        ] {
            assert!(parse_delay(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cluster_takes_the_words_that_follow() {
        let w = |v: &[&str]| cluster_hosts_spread(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            w(&["--cluster", "a", "b:1", "2"]),
            ["--cluster", "a", "--cluster", "b:1", "2"]
        );
        assert_eq!(w(&["2", "--cluster", "a"]), ["2", "--cluster", "a"]);
        assert_eq!(
            w(&["--cluster", "a", "--summary"]),
            ["--cluster", "a", "--summary"]
        );
        assert_eq!(w(&["--cluster", "--summary"]), ["--cluster", "--summary"]);
        assert_eq!(w(&["--cluster", "3"]), ["--cluster", "3"]);
    }

    #[test]
    fn negative_numbers_reach_argh_as_delay() {
        let w = |v: &[&str]| numbers_last(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(w(&["-0"]), ["--", "-0"]);
        assert_eq!(w(&["-.5", "--summary"]), ["--summary", "--", "-.5"]);
        assert_eq!(w(&["--summary", "2"]), ["--summary", "2"]);
        assert_eq!(w(&["-x"]), ["-x"]);
        assert_eq!(w(&["--", "-1"]), ["--", "-1"]);
    }
}
