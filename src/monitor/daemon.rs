//! `mon --daemon HOST[:PORT]`: the jobs a distcc-rs daemon is compiling now, read from the `<distccjobs>` part of its `--stats` page.
//!
//! The page is distccd's (section 8) plus our own section of
//! `dcc_job CLIENT COMPILER INPUT MSECS` lines, one per running job, whose
//! fields are escaped as `stats_page` says. A Debian distccd has no
//! such section; that is reported as such rather than shown as an idle
//! daemon. Reading is bounded in size and time.

use crate::stats_page::{client_host, shown, MONITOR_LIMITS};

pub use crate::stats_page::{FetchError, Job, PageError, Target};

/// What a stats page says about the daemon's jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `dcc_max_kids`: the daemon's job slots.
    pub slots: Option<u64>,
    pub jobs: Vec<Job>,
}

/// Asks the daemon for its stats page and reads it.
pub fn fetch(target: &Target) -> Result<Report, FetchError> {
    let page = crate::stats_page::fetch_page(target, MONITOR_LIMITS)?;
    parse(&page).map_err(|why| match why {
        PageError::Truncated => FetchError::Truncated("sending its stats page"),
        why => FetchError::Protocol(format!("{target}: {why}")),
    })
}

/// Reads the parts of a stats page the monitor needs: a page without a job
/// list (distccd 3.4's) is an error here.
pub fn parse(page: &[u8]) -> Result<Report, PageError> {
    let page = crate::stats_page::parse_page(page)?;
    match page.jobs {
        Some(jobs) => Ok(Report {
            slots: page.slots,
            jobs,
        }),
        None => Err(PageError::NoJobList),
    }
}

fn put_padded(out: &mut Vec<u8>, text: &[u8], width: usize) {
    out.extend_from_slice(text);
    out.resize(out.len() + width.saturating_sub(text.len()), b' ');
}

/// One poll of a daemon: a header line (`HOST:PORT: N of M slots busy`), a
/// title line and one line per job (milliseconds running, client, compiler,
/// input), by client address in byte order and the longest-running first
/// within one address; with
/// `summary`, a table of jobs per client address; then one empty line.
pub fn render(target: &Target, report: &Report, summary: bool) -> Vec<u8> {
    let mut jobs: Vec<&Job> = report.jobs.iter().collect();
    jobs.sort_by(|a, b| {
        (client_host(&a.client).cmp(client_host(&b.client)))
            .then(b.msecs.cmp(&a.msecs))
            .then(a.client.cmp(&b.client))
    });
    let mut out = Vec::new();
    let busy = jobs.len();
    let header = match report.slots {
        Some(slots) => format!("{target}: {busy} of {slots} slots busy\n"),
        None => format!("{target}: {busy} jobs running\n"),
    };
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(
        format!(
            "{:>8}  {:<23}  {:<16}  INPUT\n",
            "MSECS", "CLIENT", "COMPILER"
        )
        .as_bytes(),
    );
    for job in jobs {
        out.extend_from_slice(format!("{:>8}  ", job.msecs).as_bytes());
        put_padded(&mut out, &shown(&job.client), 23);
        out.extend_from_slice(b"  ");
        put_padded(&mut out, &shown(&job.compiler), 16);
        out.extend_from_slice(b"  ");
        out.extend_from_slice(&shown(&job.input));
        out.push(b'\n');
    }
    if summary {
        let mut clients: std::collections::BTreeMap<&[u8], usize> = Default::default();
        for job in &report.jobs {
            *clients.entry(client_host(&job.client)).or_default() += 1;
        }
        out.extend_from_slice(format!("{:<23}  {:>4}\n", "CLIENT", "JOBS").as_bytes());
        for (client, n) in clients {
            put_padded(&mut out, &shown(client), 23);
            out.extend_from_slice(format!("  {n:>4}\n").as_bytes());
        }
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_a_port_or_the_stats_default() {
        let t = |s: &str| Target::parse(s).map(|t| (t.host, t.port));
        assert_eq!(t("box"), Ok(("box".into(), 3633)));
        assert_eq!(t("box:4000"), Ok(("box".into(), 4000)));
        assert_eq!(t("127.0.0.1:1"), Ok(("127.0.0.1".into(), 1)));
        assert_eq!(t("[::1]:4000"), Ok(("::1".into(), 4000)));
        assert_eq!(t("[::1]"), Ok(("::1".into(), 3633)));
        assert_eq!(t("::1"), Ok(("::1".into(), 3633)));
        for bad in [
            "",
            ":80",
            "box:",
            "box:0",
            "box:70000",
            "box:x",
            "[::1",
            "[::1]x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Target::parse("::1").unwrap().to_string(), "[::1]:3633");
        assert_eq!(Target::parse("box").unwrap().to_string(), "box:3633");
    }

    const PAGE: &str = "HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: close\n\n\
        argv /distccd\n<distccstats>\ndcc_tcp_accept 3\ndcc_max_kids 4\n</distccstats>\n";

    #[test]
    fn pages_with_and_without_jobs() {
        let page = format!(
            "{PAGE}<distccjobs>\ndcc_job 127.0.0.1:40000 gcc hello.c 1500\n\
             dcc_job [::1]:40001 my%20cc a%20b.c 7\n</distccjobs>\n"
        );
        let report = parse(page.as_bytes()).unwrap();
        assert_eq!(report.slots, Some(4));
        assert_eq!(
            report.jobs[1],
            Job {
                client: b"[::1]:40001".to_vec(),
                compiler: b"my cc".to_vec(),
                input: b"a b.c".to_vec(),
                msecs: 7
            }
        );
        let idle = format!("{PAGE}<distccjobs>\n</distccjobs>\n");
        assert_eq!(
            parse(idle.as_bytes()),
            Ok(Report {
                slots: Some(4),
                jobs: vec![]
            })
        );
        assert_eq!(parse(PAGE.as_bytes()), Err(PageError::NoJobList));
        assert_eq!(parse(b""), Err(PageError::Empty));
        assert_eq!(parse(b"SSH-2.0-OpenSSH_9.2\r\n"), Err(PageError::NotStats));
        let cut = format!("{PAGE}<distccjobs>\ndcc_job 1.2.3.4:5 gcc a.c 1\n");
        assert_eq!(parse(cut.as_bytes()), Err(PageError::Truncated));
        let bad = format!("{PAGE}<distccjobs>\ndcc_job 1.2.3.4:5 gcc a.c soon\n</distccjobs>\n");
        assert!(matches!(parse(bad.as_bytes()), Err(PageError::BadJob(_))));
        // Unescaped names with spaces, as an older daemon sent them.
        let old = format!("{PAGE}<distccjobs>\ndcc_job 1.2.3.4:5 gcc a b.c 9\n</distccjobs>\n");
        assert_eq!(parse(old.as_bytes()).unwrap().jobs[0].input, b"a b.c");
    }

    #[test]
    fn a_poll_shows_header_jobs_and_summary() {
        let target = Target::parse("127.0.0.1:3633").unwrap();
        let job = |client: &str, input: &str, msecs| Job {
            client: client.as_bytes().to_vec(),
            compiler: b"gcc".to_vec(),
            input: input.as_bytes().to_vec(),
            msecs,
        };
        let report = Report {
            slots: Some(4),
            jobs: vec![
                job("127.0.0.2:5000", "b.c", 10),
                job("127.0.0.1:4000", "a\nb.c", 20),
                job("127.0.0.1:4001", "c.c", 3000),
                job("[::1]:4002", "d.c", 1),
            ],
        };
        let text = String::from_utf8(render(&target, &report, true)).unwrap();
        let want = "\
127.0.0.1:3633: 4 of 4 slots busy
   MSECS  CLIENT                   COMPILER          INPUT
    3000  127.0.0.1:4001           gcc               c.c
      20  127.0.0.1:4000           gcc               a%0Ab.c
      10  127.0.0.2:5000           gcc               b.c
       1  [::1]:4002               gcc               d.c
CLIENT                   JOBS
127.0.0.1                   2
127.0.0.2                   1
::1                         1

";
        assert_eq!(text, want);
        let idle = Report {
            slots: None,
            jobs: vec![],
        };
        assert_eq!(
            String::from_utf8(render(&target, &idle, false)).unwrap(),
            "127.0.0.1:3633: 0 jobs running\n   MSECS  CLIENT                   COMPILER          INPUT\n\n"
        );
    }
}
