//! The cluster view: one row per daemon (slots, busy, queued, load), its running and queued jobs and the clients behind them, read from the daemons' `--stats` pages and rendered as the text of `mon --cluster` and as the daemon's self-refreshing HTML page.
//!
//! Both renderings come from the same [`Table`]s, so that the page and the
//! text show the same rows, cell for cell. A daemon that does not answer is
//! a row that says so; a distccd 3.4 (counters, no job list) is a row with
//! what its counters offer. Every name comes from a peer's page, so each
//! cell is cut to [`MAX_CELL`] characters, each host to [`MAX_JOBS_SHOWN`]
//! jobs, and the HTML escapes every cell.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::stats_page::{client_host, fetch, shown, FetchLimits, Job, Page, Target};

/// How long and how much one daemon's page may take for the cluster view:
/// a dead host costs at most a few seconds of one refresh, and a page is at
/// most 256 KiB.
pub const CLUSTER_LIMITS: FetchLimits = FetchLimits {
    connect: Duration::from_secs(2),
    io: Duration::from_secs(3),
    max_bytes: 256 << 10,
};

/// The most characters a cell shows; longer names end in `...`.
pub const MAX_CELL: usize = 120;
/// The most running (and, apart, queued) jobs shown for one daemon.
pub const MAX_JOBS_SHOWN: usize = 256;
/// The most daemons one view asks.
pub const MAX_HOSTS: usize = 64;

/// What one daemon answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Not asked yet (the daemon's page before its first round).
    NotYet,
    /// No page: why.
    Down(String),
    Page(Page),
}

/// One daemon of the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// As the user named it (`HOST:PORT`).
    pub name: String,
    /// The daemon serving the page (marked on the page, not in the text).
    pub this: bool,
    pub answer: Answer,
}

/// Asks every daemon at once, each bounded by [`CLUSTER_LIMITS`], and
/// gives their answers in the same order.
pub fn fetch_all(targets: &[Target]) -> Vec<Answer> {
    std::thread::scope(|scope| {
        let asks: Vec<_> = targets
            .iter()
            .map(|t| scope.spawn(move || fetch(t, CLUSTER_LIMITS)))
            .collect();
        asks.into_iter()
            .map(|ask| match ask.join() {
                Ok(Ok(page)) => Answer::Page(page),
                Ok(Err(why)) => Answer::Down(why.to_string()),
                Err(_) => Answer::Down("the fetch failed".into()),
            })
            .collect()
    })
}

/// One row of a table, with how full its daemon's slots are (for the
/// page's bar) and whether it is the serving daemon.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub cells: Vec<String>,
    pub fill: Option<f64>,
    pub this: bool,
}

/// A titled table: the same rows in the text and on the page.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub title: String,
    pub head: &'static [&'static str],
    pub rows: Vec<Row>,
}

/// A name from a page as a cell: control characters as `%XX`, bytes that
/// are not UTF-8 replaced, at most [`MAX_CELL`] characters.
fn cell(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&shown(bytes)).into_owned();
    if text.chars().count() <= MAX_CELL {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_CELL - 3).collect();
    cut.push_str("...");
    cut
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "?".into(), T::to_string)
}

fn seconds(msecs: u64) -> String {
    format!("{}.{}s", msecs / 1000, msecs % 1000 / 100)
}

/// The one-line summary: hosts, those answering, busy of the slots of
/// those that list their jobs, queued, and those that do not list them.
pub fn summary(hosts: &[Host]) -> String {
    let (mut up, mut busy, mut slots, mut queued, mut unlisted) = (0, 0, 0, 0, 0);
    for host in hosts {
        let Answer::Page(page) = &host.answer else {
            continue;
        };
        up += 1;
        match &page.jobs {
            Some(jobs) => {
                slots += page.slots.unwrap_or(0);
                busy += jobs.len();
                queued += page.queued.as_ref().map_or(0, Vec::len);
            }
            None => unlisted += 1,
        }
    }
    let mut line = format!(
        "{} hosts, {up} answering: {busy} of {slots} slots busy, {queued} queued",
        hosts.len()
    );
    if unlisted > 0 {
        let _ = write!(line, "; {unlisted} without a job list");
    }
    line
}

/// The four tables: hosts, running jobs, queued jobs, clients.
pub fn tables(hosts: &[Host]) -> Vec<Table> {
    vec![
        hosts_table(hosts),
        jobs_table(hosts, "RUNNING JOBS", &RUNNING_HEAD, |p| p.jobs.as_ref()),
        jobs_table(hosts, "QUEUED JOBS", &QUEUED_HEAD, |p| p.queued.as_ref()),
        clients_table(hosts),
    ]
}

const RUNNING_HEAD: [&str; 5] = ["HOST", "ELAPSED", "CLIENT", "COMPILER", "INPUT"];
const QUEUED_HEAD: [&str; 5] = ["HOST", "WAITED", "CLIENT", "COMPILER", "INPUT"];

fn hosts_table(hosts: &[Host]) -> Table {
    let rows = hosts
        .iter()
        .map(|host| {
            let (cells, fill) = host_cells(&host.answer);
            let mut all = vec![host.name.clone()];
            all.extend(cells);
            Row {
                cells: all,
                fill,
                this: host.this,
            }
        })
        .collect();
    Table {
        title: format!("HOSTS: {}", hosts.len()),
        head: &["HOST", "SLOTS", "BUSY", "QUEUED", "LOAD", "STATE"],
        rows,
    }
}

/// SLOTS, BUSY, QUEUED, LOAD and STATE for one answer, and the busy share.
fn host_cells(answer: &Answer) -> (Vec<String>, Option<f64>) {
    let dash = || "-".to_string();
    match answer {
        Answer::NotYet => (
            vec![dash(), dash(), dash(), dash(), "not asked yet".into()],
            None,
        ),
        Answer::Down(why) => {
            let state = cell(format!("down: {why}").as_bytes());
            (vec![dash(), dash(), dash(), dash(), state], None)
        }
        Answer::Page(page) => {
            let busy = page.jobs.as_ref().map(Vec::len);
            let state = match &page.jobs {
                Some(_) => "up".to_string(),
                None => format!(
                    "up, no job list (distccd 3.4): {} jobs done in 1 min, {} running on average",
                    opt(&page.compiles1),
                    opt(&page.avg_kids1)
                ),
            };
            let fill = match (busy, page.slots) {
                (Some(b), Some(s)) if s > 0 => Some((b as f64 / s as f64).min(1.0)),
                _ => None,
            };
            let queued = page.queued.as_ref().map(Vec::len);
            let cells = vec![
                opt(&page.slots),
                opt(&busy),
                opt(&queued),
                opt(&page.load1.as_deref().map(|l| cell(l.as_bytes()))),
                state,
            ];
            (cells, fill)
        }
    }
}

/// Running or queued jobs of every host: by host as listed, then client,
/// input and time, at most [`MAX_JOBS_SHOWN`] a host.
fn jobs_table(
    hosts: &[Host],
    title: &str,
    head: &'static [&'static str],
    jobs_of: impl Fn(&Page) -> Option<&Vec<Job>>,
) -> Table {
    let mut rows = Vec::new();
    for host in hosts {
        let Answer::Page(page) = &host.answer else {
            continue;
        };
        let mut jobs: Vec<&Job> = jobs_of(page).into_iter().flatten().collect();
        jobs.sort_by(|a, b| {
            (client_host(&a.client), &a.input, b.msecs).cmp(&(
                client_host(&b.client),
                &b.input,
                a.msecs,
            ))
        });
        for job in jobs.into_iter().take(MAX_JOBS_SHOWN) {
            rows.push(Row {
                cells: vec![
                    host.name.clone(),
                    seconds(job.msecs),
                    cell(client_host(&job.client)),
                    cell(&job.compiler),
                    cell(&job.input),
                ],
                fill: None,
                this: host.this,
            });
        }
    }
    Table {
        title: format!("{title}: {}", rows.len()),
        head,
        rows,
    }
}

/// Per client address: jobs running, jobs queued, and on how many hosts.
fn clients_table(hosts: &[Host]) -> Table {
    let mut clients: BTreeMap<Vec<u8>, (usize, usize, Vec<usize>)> = BTreeMap::new();
    for (i, host) in hosts.iter().enumerate() {
        let Answer::Page(page) = &host.answer else {
            continue;
        };
        let running = page.jobs.iter().flatten().map(|j| (j, true));
        let queued = page.queued.iter().flatten().map(|j| (j, false));
        for (job, is_running) in running.chain(queued) {
            let entry = clients
                .entry(client_host(&job.client).to_vec())
                .or_default();
            if is_running {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
            if !entry.2.contains(&i) {
                entry.2.push(i);
            }
        }
    }
    let rows: Vec<Row> = clients
        .iter()
        .map(|(client, (running, queued, on))| Row {
            cells: vec![
                cell(client),
                running.to_string(),
                queued.to_string(),
                on.len().to_string(),
            ],
            fill: None,
            this: false,
        })
        .collect();
    Table {
        title: format!("CLIENTS: {}", rows.len()),
        head: &["CLIENT", "RUNNING", "QUEUED", "HOSTS"],
        rows,
    }
}

/// The view as text: the summary, then each table (its title, its heading
/// and its rows, columns two spaces apart), each followed by an empty line.
pub fn text(hosts: &[Host]) -> String {
    let mut out = summary(hosts);
    out.push_str("\n\n");
    for table in tables(hosts) {
        out.push_str(&table.title);
        out.push('\n');
        let widths: Vec<usize> = (0..table.head.len())
            .map(|c| {
                let cells = table.rows.iter().map(|r| r.cells[c].chars().count());
                cells.chain([table.head[c].len()]).max().unwrap_or(0)
            })
            .collect();
        let head: Vec<String> = table.head.iter().map(|h| h.to_string()).collect();
        for cells in std::iter::once(&head).chain(table.rows.iter().map(|r| &r.cells)) {
            let mut line = String::new();
            for (c, text) in cells.iter().enumerate() {
                if c + 1 < cells.len() {
                    let _ = write!(line, "{text:<w$}  ", w = widths[c]);
                } else {
                    line.push_str(text);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// `&`, `<`, `>`, `"` and `'` as HTML entities.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em 2em;background:#fafafa;color:#222}\
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.4em}\
table{border-collapse:collapse}th,td{padding:.2em .8em;text-align:left;\
border-bottom:1px solid #ddd;white-space:nowrap}td:last-child{white-space:normal}\
th{background:#eee}\
tr.this td:first-child{font-weight:bold}td.bar{min-width:4em}\
p.note{color:#666;font-size:.85em}";

/// The view as a whole HTML page that reloads itself every `refresh`: no
/// script, nothing fetched from anywhere (its Content-Security-Policy
/// allows only its own inline style), every cell escaped.
pub fn html(hosts: &[Host], refresh: Duration) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{}\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>distcc cluster</title><style>{STYLE}</style></head>\n<body>\n\
         <h1>distcc cluster</h1>\n<p id=\"summary\">{}</p>\n",
        refresh.as_secs().max(1),
        escape_html(&summary(hosts))
    );
    for table in tables(hosts) {
        html_table(&mut out, &table);
    }
    let _ = write!(
        out,
        "<p class=\"note\">Reloads every {} s. The daemon serving this page is in bold.</p>\n\
         </body></html>\n",
        refresh.as_secs().max(1)
    );
    out
}

fn html_table(out: &mut String, table: &Table) {
    let _ = writeln!(out, "<h2>{}</h2>\n<table>", escape_html(&table.title));
    out.push_str("<tr>");
    for head in table.head {
        let _ = write!(out, "<th>{}</th>", escape_html(head));
    }
    out.push_str("</tr>\n");
    for row in &table.rows {
        out.push_str(if row.this {
            "<tr class=\"this\">"
        } else {
            "<tr>"
        });
        for (c, text) in row.cells.iter().enumerate() {
            match (c, row.fill) {
                // The BUSY cell of a host: a bar as full as its slots.
                (2, Some(fill)) => {
                    let pct = (fill * 100.0).round();
                    let _ = write!(
                        out,
                        "<td class=\"bar\" style=\"background:linear-gradient(90deg,#9c9 {pct}%,\
                         transparent {pct}%)\">{}</td>",
                        escape_html(text)
                    );
                }
                _ => {
                    let _ = write!(out, "<td>{}</td>", escape_html(text));
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(client: &str, input: &str, msecs: u64) -> Job {
        Job {
            client: client.as_bytes().to_vec(),
            compiler: b"gcc".to_vec(),
            input: input.as_bytes().to_vec(),
            msecs,
        }
    }

    fn farm() -> Vec<Host> {
        let ours = Page {
            slots: Some(4),
            load1: Some("0.50".into()),
            compiles1: Some(3),
            avg_kids1: Some(1),
            jobs: Some(vec![
                job("127.0.0.2:5000", "b.c", 1500),
                job("127.0.0.1:4000", "<a&b>.c", 20),
            ]),
            queued: Some(vec![job("127.0.0.1:4001", "q\n.c", 7)]),
        };
        let old = Page {
            slots: Some(8),
            load1: Some("1.00".into()),
            compiles1: Some(12),
            avg_kids1: Some(2),
            jobs: None,
            queued: None,
        };
        vec![
            Host {
                name: "a:3633".into(),
                this: true,
                answer: Answer::Page(ours),
            },
            Host {
                name: "b:3633".into(),
                this: false,
                answer: Answer::Page(old),
            },
            Host {
                name: "c:3633".into(),
                this: false,
                answer: Answer::Down("connect failed: refused".into()),
            },
            Host {
                name: "d:3633".into(),
                this: false,
                answer: Answer::NotYet,
            },
        ]
    }

    #[test]
    fn the_text_has_every_host_job_and_client() {
        let want = "\
4 hosts, 2 answering: 2 of 4 slots busy, 1 queued; 1 without a job list

HOSTS: 4
HOST    SLOTS  BUSY  QUEUED  LOAD  STATE
a:3633  4      2     1       0.50  up
b:3633  8      ?     ?       1.00  up, no job list (distccd 3.4): 12 jobs done in 1 min, 2 running on average
c:3633  -      -     -       -     down: connect failed: refused
d:3633  -      -     -       -     not asked yet

RUNNING JOBS: 2
HOST    ELAPSED  CLIENT     COMPILER  INPUT
a:3633  0.0s     127.0.0.1  gcc       <a&b>.c
a:3633  1.5s     127.0.0.2  gcc       b.c

QUEUED JOBS: 1
HOST    WAITED  CLIENT     COMPILER  INPUT
a:3633  0.0s    127.0.0.1  gcc       q%0A.c

CLIENTS: 2
CLIENT     RUNNING  QUEUED  HOSTS
127.0.0.1  1        1       1
127.0.0.2  1        0       1

";
        assert_eq!(text(&farm()), want);
    }

    #[test]
    fn the_page_has_the_same_cells_escaped_and_refreshes_itself() {
        let page = html(&farm(), Duration::from_secs(2));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"2\">"));
        assert!(page.contains("<td>&lt;a&amp;b&gt;.c</td>"), "{page}");
        assert!(!page.contains("<a&b>"));
        assert!(!page.contains("<script"));
        assert!(page.contains("<tr class=\"this\"><td>a:3633</td>"));
        assert!(page.contains("#9c9 50%"), "half the slots busy: {page}");
        for table in tables(&farm()) {
            for row in table.rows {
                if row.fill.is_some() {
                    continue;
                }
                let cells: String = row
                    .cells
                    .iter()
                    .map(|t| format!("<td>{}</td>", escape_html(t)))
                    .collect();
                assert!(page.contains(&cells), "{cells} in {page}");
            }
        }
    }

    #[test]
    fn long_names_are_cut() {
        let long = "x".repeat(1000);
        assert_eq!(cell(long.as_bytes()).chars().count(), MAX_CELL);
        assert!(cell(long.as_bytes()).ends_with("..."));
        assert_eq!(cell(b"\xffa"), "\u{fffd}a");
    }
}
