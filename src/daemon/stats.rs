//! `--stats`: distccd's job counters and the HTTP text it serves (section 8).
//!
//! Four fields come from Linux's `/proc`: `dcc_current_load`
//! (`/proc/loadavg`), `dcc_num_procstate_D` and `dcc_max_RSS`
//! (`/proc/PID/stat`) and `dcc_io_rate` (`/proc/diskstats`). Where there is
//! no `/proc`, as on OpenBSD, the page still has every field, but those four
//! are not measured: they read `-1`, `0`, `0` (`none`) and `-1`. The job list
//! (`<distccjobs>`), the load averages (getloadavg) and the counters come
//! from the daemon itself and need no `/proc`.

use crate::stats_page::{
    escape_job_field, JOBS_BEGIN, JOBS_END, JOB_WORD, QUEUED_JOB_WORD, QUEUE_BEGIN, QUEUE_END,
};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How a job ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The compiler failed, or the result could not be sent.
    CompileError,
    /// `--job-lifetime` ran out.
    Timeout,
    /// The client went away.
    Disconnect,
    /// A malformed request.
    BadRequest,
    /// Refused by the whitelist or the argument checks.
    Other,
}

/// A job that is running now, or queued for a slot (then `elapsed` is the
/// time since its connection came), for the stats page.
pub struct RunningJob<'a> {
    pub client: String,
    pub compiler: &'a [u8],
    pub input: &'a [u8],
    pub elapsed: Duration,
}

/// The daemon's counters.
pub struct Stats {
    pub tcp_accept: u64,
    rej_bad_req: u64,
    compile_ok: u64,
    compile_error: u64,
    compile_timeout: u64,
    cli_disconnect: u64,
    other: u64,
    longest: Option<(String, String, u128)>,
    max_kids: usize,
    finished: VecDeque<Instant>,
    /// Running-job counts sampled once a second, newest last (15 minutes).
    kid_samples: VecDeque<usize>,
    last_sample: Option<Instant>,
    io_sample: Option<(Instant, u64)>,
    io_rate: i64,
}

const WINDOW_15_MIN: Duration = Duration::from_secs(900);

impl Stats {
    pub fn new(max_kids: usize) -> Stats {
        Stats {
            tcp_accept: 0,
            rej_bad_req: 0,
            compile_ok: 0,
            compile_error: 0,
            compile_timeout: 0,
            cli_disconnect: 0,
            other: 0,
            longest: None,
            max_kids,
            finished: VecDeque::new(),
            kid_samples: VecDeque::new(),
            last_sample: None,
            io_sample: None,
            io_rate: -1,
        }
    }

    /// Counts a finished job; `job` is (input, compiler, wall time) for
    /// successful compiles, which compete for the longest job.
    pub fn record(&mut self, outcome: Outcome, job: Option<(&[u8], &[u8], Duration)>) {
        let now = Instant::now();
        match outcome {
            Outcome::Ok => self.compile_ok += 1,
            Outcome::CompileError => self.compile_error += 1,
            Outcome::Timeout => self.compile_timeout += 1,
            Outcome::Disconnect => self.cli_disconnect += 1,
            Outcome::BadRequest => self.rej_bad_req += 1,
            Outcome::Other => self.other += 1,
        }
        if matches!(
            outcome,
            Outcome::Ok | Outcome::CompileError | Outcome::Timeout | Outcome::Disconnect
        ) {
            self.finished.push_back(now);
        }
        if let (Outcome::Ok, Some((input, compiler, took))) = (outcome, job) {
            let ms = took.as_millis();
            if self.longest.as_ref().is_none_or(|l| ms > l.2) {
                self.longest = Some((
                    String::from_utf8_lossy(input).into_owned(),
                    String::from_utf8_lossy(compiler).into_owned(),
                    ms,
                ));
            }
        }
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while self
            .finished
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW_15_MIN)
        {
            self.finished.pop_front();
        }
    }

    /// Records how many jobs run now; called from the event loop, it keeps
    /// at most one sample a second.
    pub fn sample_kids(&mut self, running: usize) {
        let now = Instant::now();
        if self
            .last_sample
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sample = Some(now);
        self.kid_samples.push_back(running);
        while self.kid_samples.len() > 900 {
            self.kid_samples.pop_front();
        }
    }

    fn avg_kids(&self, seconds: usize) -> usize {
        let n = self.kid_samples.len().min(seconds);
        if n == 0 {
            return 0;
        }
        self.kid_samples.iter().rev().take(n).sum::<usize>() / n
    }

    fn compiles_within(&self, window: Duration) -> usize {
        let now = Instant::now();
        self.finished
            .iter()
            .filter(|t| now.duration_since(**t) <= window)
            .count()
    }

    fn update_io_rate(&mut self) {
        let Some(sectors) = disk_sectors() else {
            return;
        };
        let now = Instant::now();
        match self.io_sample {
            Some((then, before)) if now.duration_since(then) >= Duration::from_secs(50) => {
                let secs = now.duration_since(then).as_secs().max(1);
                self.io_rate = (sectors.saturating_sub(before) / secs) as i64;
                self.io_sample = Some((now, sectors));
            }
            Some(_) => {}
            None => self.io_sample = Some((now, sectors)),
        }
    }

    /// The full HTTP reply for a stats connection: distccd's page, then the
    /// queue and the running jobs (`stats_page` says the format).
    pub fn render(
        &mut self,
        tmpdir: &Path,
        running: &[RunningJob],
        queued: &[RunningJob],
    ) -> String {
        self.expire(Instant::now());
        self.update_io_rate();
        let mut s = String::with_capacity(2048);
        s.push_str("HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: close\n\n");
        let argv0 = std::env::args().next().unwrap_or_else(|| "distccd".into());
        let _ = writeln!(s, "argv /{argv0}");
        s.push_str("<distccstats>\n");
        for (name, value) in self.fields(tmpdir) {
            let _ = writeln!(s, "{name} {value}");
        }
        s.push_str("</distccstats>\n");
        // The queue first, so that the page still ends with the job list.
        job_section(&mut s, [QUEUE_BEGIN, QUEUED_JOB_WORD, QUEUE_END], queued);
        job_section(&mut s, [JOBS_BEGIN, JOB_WORD, JOBS_END], running);
        s
    }

    /// The `<distccstats>` lines, in distccd's order.
    fn fields(&self, tmpdir: &Path) -> Vec<(&'static str, String)> {
        let (job, compiler, ms) = match &self.longest {
            Some((j, c, ms)) => (j.as_str(), c.as_str(), *ms as i64),
            None => ("none", "none", -1),
        };
        let loads = crate::sys::load_average().unwrap_or([0.0; 3]);
        let procs = proc_stats();
        let (rss, rss_name) = max_rss(&procs);
        vec![
            ("dcc_tcp_accept", self.tcp_accept.to_string()),
            ("dcc_rej_bad_req", self.rej_bad_req.to_string()),
            ("dcc_rej_overload", "0".into()),
            ("dcc_compile_ok", self.compile_ok.to_string()),
            ("dcc_compile_error", self.compile_error.to_string()),
            ("dcc_compile_timeout", self.compile_timeout.to_string()),
            ("dcc_cli_disconnect", self.cli_disconnect.to_string()),
            ("dcc_other", self.other.to_string()),
            ("dcc_longest_job", job.into()),
            ("dcc_longest_job_compiler", compiler.into()),
            ("dcc_longest_job_time_msecs", ms.to_string()),
            ("dcc_max_kids", self.max_kids.to_string()),
            ("dcc_avg_kids1", self.avg_kids(60).to_string()),
            ("dcc_avg_kids2", self.avg_kids(300).to_string()),
            ("dcc_avg_kids3", self.avg_kids(900).to_string()),
            ("dcc_current_load", current_load().to_string()),
            ("dcc_load1", format!("{:1.2}", loads[0])),
            ("dcc_load2", format!("{:1.2}", loads[1])),
            ("dcc_load3", format!("{:1.2}", loads[2])),
            (
                "dcc_num_compiles1",
                self.compiles_within(Duration::from_secs(60)).to_string(),
            ),
            (
                "dcc_num_compiles2",
                self.compiles_within(Duration::from_secs(300)).to_string(),
            ),
            (
                "dcc_num_compiles3",
                self.compiles_within(WINDOW_15_MIN).to_string(),
            ),
            (
                "dcc_num_procstate_D",
                procs.iter().filter(|p| p.1 == 'D').count().to_string(),
            ),
            ("dcc_max_RSS", rss.to_string()),
            ("dcc_max_RSS_name", rss_name),
            ("dcc_io_rate", self.io_rate.to_string()),
            (
                "dcc_free_space",
                format!(
                    "{} MB",
                    crate::sys::free_space_mib(tmpdir)
                        .map(|m| m as i64)
                        .unwrap_or(-1)
                ),
            ),
        ]
    }
}

/// A section of job lines: `[begin, word, end]`.
fn job_section(s: &mut String, [begin, word, end]: [&str; 3], jobs: &[RunningJob]) {
    let _ = writeln!(s, "{begin}");
    for job in jobs {
        let _ = writeln!(
            s,
            "{word} {} {} {} {}",
            escape_job_field(job.client.as_bytes()),
            escape_job_field(job.compiler),
            escape_job_field(job.input),
            job.elapsed.as_millis()
        );
    }
    let _ = writeln!(s, "{end}");
}

/// The "running" count from /proc/loadavg, or -1.
fn current_load() -> i64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let field = l.split_whitespace().nth(3)?;
            field.split('/').next()?.parse().ok()
        })
        .unwrap_or(-1)
}

/// Reads `/proc/PID/stat` for every process: (comm, state, rss pages).
fn proc_stats() -> Vec<(String, char, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        e.file_name().to_str()?.parse::<u32>().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open..=close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next()?.chars().next()?;
        // Field 24 of /proc/PID/stat; `rest` starts at field 3, the state.
        let rss = rest.nth(20)?.parse().ok()?;
        Some((comm, state, rss))
    })
    .collect()
}

/// The largest resident set in KiB and its process name, as distccd shows them.
fn max_rss(procs: &[(String, char, u64)]) -> (u64, String) {
    // SAFETY: plain system call.
    let page_kib = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) / 1024) as u64;
    procs
        .iter()
        .max_by_key(|p| p.2)
        .map(|p| (p.2.saturating_mul(page_kib), p.0.clone()))
        .unwrap_or((0, "none".into()))
}

/// Sectors read and written on whole `hd*`/`sd*` disks.
fn disk_sectors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/diskstats").ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let minor: u64 = f.get(1)?.parse().ok()?;
                let name = f.get(2)?;
                if !(name.starts_with("hda") || name.starts_with("sda")) || minor % 64 != 0 {
                    return None;
                }
                Some(f.get(5)?.parse::<u64>().ok()? + f.get(9)?.parse::<u64>().ok()?)
            })
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_text_keeps_distccd_names_and_order() {
        let mut stats = Stats::new(4);
        stats.tcp_accept = 3;
        stats.record(
            Outcome::Ok,
            Some((b"../warn2.c", b"slowcc", Duration::from_millis(6045))),
        );
        stats.record(
            Outcome::Ok,
            Some((b"a.c", b"gcc", Duration::from_millis(10))),
        );
        stats.record(Outcome::CompileError, None);
        let text = stats.render(Path::new("/tmp"), &[], &[]);
        let names: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "<distccstats>")
            .skip(1)
            .take_while(|l| *l != "</distccstats>")
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "dcc_tcp_accept",
                "dcc_rej_bad_req",
                "dcc_rej_overload",
                "dcc_compile_ok",
                "dcc_compile_error",
                "dcc_compile_timeout",
                "dcc_cli_disconnect",
                "dcc_other",
                "dcc_longest_job",
                "dcc_longest_job_compiler",
                "dcc_longest_job_time_msecs",
                "dcc_max_kids",
                "dcc_avg_kids1",
                "dcc_avg_kids2",
                "dcc_avg_kids3",
                "dcc_current_load",
                "dcc_load1",
                "dcc_load2",
                "dcc_load3",
                "dcc_num_compiles1",
                "dcc_num_compiles2",
                "dcc_num_compiles3",
                "dcc_num_procstate_D",
                "dcc_max_RSS",
                "dcc_max_RSS_name",
                "dcc_io_rate",
                "dcc_free_space"
            ]
        );
        assert!(
            text.starts_with("HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: close\n\n")
        );
        assert!(text.contains("\ndcc_tcp_accept 3\n"));
        assert!(text.contains("\ndcc_compile_ok 2\n"));
        assert!(text.contains("\ndcc_longest_job ../warn2.c\ndcc_longest_job_compiler slowcc\ndcc_longest_job_time_msecs 6045\n"));
        assert!(text.contains("\ndcc_num_compiles1 3\n"));
        assert!(text.contains(" MB\n</distccstats>\n"));
    }

    #[test]
    fn job_lines_are_five_words_whatever_the_names() {
        let mut stats = Stats::new(2);
        let running = [
            RunningJob {
                client: "127.0.0.1:40000".into(),
                compiler: b"gcc",
                input: b"hello.c",
                elapsed: Duration::from_millis(1500),
            },
            RunningJob {
                client: "[::1]:40001".into(),
                compiler: b"my cc",
                input: b"dir/a b%\n\xff\xc3\xa9.c",
                elapsed: Duration::from_millis(7),
            },
        ];
        let text = stats.render(Path::new("/tmp"), &running, &running[1..]);
        let jobs = text.split("<distccjobs>\n").nth(1).unwrap();
        assert_eq!(
            jobs,
            "dcc_job 127.0.0.1:40000 gcc hello.c 1500\n\
             dcc_job [::1]:40001 my%20cc dir/a%20b%25%0A%FF\u{e9}.c 7\n\
             </distccjobs>\n"
        );
        assert!(text.contains(
            "</distccstats>\n<distccqueue>\n\
             dcc_queued_job [::1]:40001 my%20cc dir/a%20b%25%0A%FF\u{e9}.c 7\n\
             </distccqueue>\n<distccjobs>\n"
        ));
        let page = crate::stats_page::parse_page(text.as_bytes()).unwrap();
        assert_eq!(page.jobs.unwrap().len(), 2);
        assert_eq!(page.queued.unwrap()[0].input, b"dir/a b%\n\xff\xc3\xa9.c");
    }
}
