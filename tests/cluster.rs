//! The cluster view on a live farm: three of our daemons with sleeping compilers and one job slot each, six clients holding a running and a queued job on every daemon, a Debian distccd and a dead port; `mon --cluster` shows every daemon's jobs, the `/cluster` page fetched over HTTP and the DOM headless Chromium renders have the same rows, and Chromium's screenshot of the page is not blank.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{bin, need, Daemon, DaemonOptions, DebianDistccd};
use crate::common::{exited_within, free_port, refusing_port, text, wait_until, TestDir};

/// How long a job's compiler sleeps: longer than the whole test's checks.
const SLEEP: &str = "sleep 40; exec /usr/bin/gcc \"$@\"";

fn slow_daemon(name: &str, cluster: &[String]) -> Daemon {
    let mut args = vec!["--jobs".to_string(), "1".to_string()];
    for host in cluster {
        args.extend(["--cluster".to_string(), host.clone()]);
    }
    Daemon::start(
        name,
        DaemonOptions {
            scripts: vec![("gcc".into(), SLEEP.into())],
            stats_listener: true,
            args,
            ..DaemonOptions::default()
        },
    )
}

fn stats_spec(daemon: &Daemon) -> String {
    format!("127.0.0.1:{}", daemon.stats_port.unwrap())
}

/// A client job on `hosts`, in the background.
fn client(work: &TestDir, hosts: &str, src: &str) -> Child {
    work.write(src, format!("int {} = 1;\n", src.replace('.', "_")));
    Command::new(bin())
        .args(["gcc", "-c", src])
        .current_dir(&work.path)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_DIR", work.join("distcc-dir"))
        // Killed at the end, a client leaves its preprocessed temporary
        // behind: in the test's directory, not in /tmp.
        .env("TMPDIR", &work.path)
        .env("DISTCC_NO_REWRITE_CROSS", "1")
        .env("DISTCC_FALLBACK", "0")
        .env_remove("DISTCC_VERBOSE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills the clients when the test ends, however it ends.
struct Clients(Vec<Child>);

impl Drop for Clients {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mon_cluster(hosts: &[String]) -> String {
    let out = Command::new(bin())
        .args(["mon", "--cluster"])
        .args(hosts)
        .env_remove("DISTCC_VERBOSE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// `GET /cluster` over plain HTTP: the headers and the body.
fn fetch_page(spec: &str) -> (String, String) {
    let mut stream = TcpStream::connect(spec).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /cluster HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    stream.take(1 << 20).read_to_end(&mut reply).unwrap();
    let reply = text(&reply);
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    (head.to_string(), body.to_string())
}

/// Times (`12.3s`) and loads (`0.52`) change from one look to the next.
fn normal(word: &str) -> String {
    let is_time = word.strip_suffix('s').is_some_and(is_decimal);
    if is_time || is_decimal(word) {
        "#".into()
    } else {
        word.to_string()
    }
}

fn is_decimal(word: &str) -> bool {
    word.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit())
    })
}

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(normal).collect()
}

/// The text's tables as lines of words: titles, headings and rows, without
/// the summary line and the empty lines.
fn text_rows(view: &str) -> Vec<Vec<String>> {
    view.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(words)
        .collect()
}

fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text inside `<tag ...>` and `</tag>` from `from`: (text, where it ends).
fn element<'a>(html: &'a str, tag: &str, from: usize) -> Option<(&'a str, usize)> {
    let open = html[from..].find(&format!("<{tag}"))? + from;
    let start = html[open..].find('>')? + open + 1;
    let close = html[start..].find(&format!("</{tag}>"))? + start;
    Some((&html[start..close], close))
}

/// The page's tables as lines of words: each `<h2>` title and each `<tr>`,
/// its cells' words one after another.
fn html_rows(html: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut at = html.find("</p>").unwrap_or(0);
    loop {
        let h2 = element(html, "h2", at);
        let tr = element(html, "tr", at);
        let next = match (h2, tr) {
            (Some(h), Some(t)) => Some(if h.1 < t.1 { h } else { t }),
            (h, t) => h.or(t),
        };
        let Some((inner, end)) = next else {
            return rows;
        };
        let mut line = Vec::new();
        let mut rest = inner;
        // Drop the tags, keep the cells' text apart.
        while let Some(lt) = rest.find('<') {
            line.extend(words(&unescape(&rest[..lt])));
            rest = rest[lt..].split_once('>').map_or("", |(_, r)| r);
        }
        line.extend(words(&unescape(rest)));
        rows.push(line);
        at = end;
    }
}

/// Headless Chromium with its profile in `dir`, bounded in time.
fn chromium(dir: &Path, args: &[String]) -> std::process::Output {
    let chromium = need("chromium", "chromium");
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .env("HOME", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    if exited_within(&mut child, Duration::from_secs(90)).is_none() {
        let _ = child.kill();
        panic!("chromium {args:?} ran over 90 s");
    }
    let status = child.wait().unwrap();
    let mut stderr = Vec::new();
    let _ = child.stderr.take().unwrap().read_to_end(&mut stderr);
    std::process::Output {
        status,
        stdout: reader.join().unwrap(),
        stderr,
    }
}

/// Looks again (each look bounded) until `same` holds or 30 s pass; the
/// last pair, for the message, if it never does.
fn until_same<T>(mut look: impl FnMut() -> (T, T), same: impl Fn(&T, &T) -> bool) -> (T, T) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = look();
        if same(&a, &b) || Instant::now() >= end {
            return (a, b);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn png_size(path: &Path) -> usize {
    let png = std::fs::read(path).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    png.len()
}

#[test]
fn the_cluster_page_shows_the_running_jobs_as_mon_does() {
    let stats_port = free_port();
    let port_arg = stats_port.to_string();
    let old = DebianDistccd::start_with_args(
        "cluster-debian",
        &["--stats", "--stats-port", &port_arg],
        &[],
    );
    let old_spec = format!("127.0.0.1:{stats_port}");
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(&old_spec)
            .is_ok()),
        "distccd's stats port never opened:\n{}",
        old.log()
    );
    let (_dead, dead_port) = refusing_port();
    let dead_spec = format!("127.0.0.1:{dead_port}");
    let b = slow_daemon("cluster-b", &[]);
    let c = slow_daemon("cluster-c", &[]);
    let peers = vec![
        stats_spec(&b),
        stats_spec(&c),
        old_spec.clone(),
        dead_spec.clone(),
    ];
    let a = slow_daemon("cluster-a", &peers);
    let all: Vec<String> = std::iter::once(stats_spec(&a)).chain(peers).collect();

    // Two slots a host for the clients, one on each daemon: every daemon
    // runs one job and queues one.
    let work = TestDir::new("cluster-work");
    std::fs::create_dir(work.join("distcc-dir")).unwrap();
    let hosts: String = [&a, &b, &c]
        .iter()
        .map(|d| format!("127.0.0.1:{}/2 ", d.port))
        .collect();
    let inputs: Vec<String> = (0..6).map(|i| format!("job{i}.c")).collect();
    let _clients = Clients(inputs.iter().map(|i| client(&work, &hosts, i)).collect());

    let mut view = String::new();
    let settled = wait_until(Duration::from_secs(30), || {
        view = mon_cluster(&all);
        view.contains("RUNNING JOBS: 3\n") && view.contains("QUEUED JOBS: 3\n")
    });
    assert!(settled, "the jobs never showed:\n{view}\n{}", a.log());
    println!("mon --cluster:\n{view}");
    check_text(&view, &all, &inputs);

    let (page, view) = until_same(
        || {
            let (head, body) = fetch_page(&stats_spec(&a));
            assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
            assert!(head.contains("Content-Type: text/html"), "{head}");
            (body, mon_cluster(&all))
        },
        |page, view| html_rows(page) == text_rows(view),
    );
    assert_eq!(html_rows(&page), text_rows(&view), "{page}\n{view}");
    assert!(page.contains("<meta http-equiv=\"refresh\""), "{page}");
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("http://") && !page.contains("https://"));

    // `/` is distccd's page as before, for 3.4's readers.
    let mut stream = TcpStream::connect(stats_spec(&a)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut plain = String::new();
    let _ = stream.read_to_string(&mut plain);
    assert!(
        plain.starts_with("HTTP/1.0 200 OK\nContent-Type: text/plain\n"),
        "{plain}"
    );
    assert!(plain.contains("\ndcc_max_kids 1\n") && plain.ends_with("</distccjobs>\n"));

    check_browser(&a, &all, &inputs);
}

/// Each of our daemons runs one job and queues one; the Debian distccd and
/// the dead port are rows that say what they are.
fn check_text(view: &str, all: &[String], inputs: &[String]) {
    let lines: Vec<&str> = view.lines().collect();
    assert!(
        lines[0] == "5 hosts, 4 answering: 3 of 3 slots busy, 3 queued; 1 without a job list",
        "{view}"
    );
    for ours in &all[..3] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{ours} ")))
            .unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>()[1..4],
            ["1", "1", "1"],
            "{view}"
        );
        let running = view.split("RUNNING JOBS").nth(1).unwrap();
        let running = running.split("QUEUED JOBS").next().unwrap();
        assert!(
            running.lines().any(|l| l.starts_with(&format!("{ours} "))
                && l.contains(" 127.0.0.1 ")
                && l.contains(" gcc ")
                && inputs.iter().any(|i| l.ends_with(i.as_str()))),
            "{ours} runs nothing:\n{view}"
        );
    }
    let row = |spec: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{spec} ")))
            .unwrap_or_else(|| panic!("no row for {spec}:\n{view}"))
            .to_string()
    };
    assert!(row(&all[3]).contains("  8  "), "{view}");
    assert!(row(&all[3]).contains("no job list (distccd 3.4)"), "{view}");
    assert!(row(&all[4]).contains("down: connect failed"), "{view}");
    assert!(row(&all[4]).contains("Connection refused"), "{view}");
    for input in inputs {
        assert!(view.contains(&format!("  {input}\n")), "{input}:\n{view}");
    }
    assert!(view.contains("CLIENTS: 1\n"), "{view}");
    assert!(
        view.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["127.0.0.1", "3", "3", "3"]),
        "{view}"
    );
}

/// What headless Chromium renders: the DOM has the rows of `mon --cluster`
/// and the jobs' inputs, and the screenshot is a PNG well larger than one
/// of an empty page.
fn check_browser(a: &Daemon, all: &[String], inputs: &[String]) {
    let dir = TestDir::new("cluster-chromium");
    let url = format!("http://{}/cluster", stats_spec(a));
    let (dom, view) = until_same(
        || {
            let out = chromium(&dir.path, &["--dump-dom".into(), url.clone()]);
            assert!(out.status.success(), "chromium: {}", text(&out.stderr));
            (text(&out.stdout), mon_cluster(all))
        },
        |dom, view| html_rows(dom) == text_rows(view),
    );
    assert_eq!(html_rows(&dom), text_rows(&view), "{dom}\n{view}");
    for input in inputs {
        assert!(
            dom.contains(&format!("<td>{input}</td>")),
            "{input}:\n{dom}"
        );
    }

    let shot = dir.join("cluster.png");
    let blank = dir.join("blank.png");
    for (file, page) in [
        (&shot, url.as_str()),
        (&blank, "data:text/html,<html></html>"),
    ] {
        let out = chromium(
            &dir.path,
            &[
                format!("--screenshot={}", file.display()),
                "--window-size=1400,900".into(),
                page.into(),
            ],
        );
        assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    }
    let (size, blank_size) = (png_size(&shot), png_size(&blank));
    println!(
        "screenshot of the cluster page: {} ({size} bytes; an empty page's is {blank_size})",
        shot.display()
    );
    assert!(
        size > 4 * blank_size && size > 10_000,
        "the screenshot looks blank: {size} bytes, an empty page's {blank_size}"
    );
}
