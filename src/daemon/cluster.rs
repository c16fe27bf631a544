//! `--cluster`: the other daemons' stats pages for this daemon's `/cluster` page, fetched by a thread of their own and cached, so that the event loop never waits for a peer.
//!
//! The thread starts with the first `/cluster` request. It asks every peer
//! at once (each bounded by `cluster::CLUSTER_LIMITS`) every [`REFRESH`],
//! while the page has been asked for within the last [`WATCHED_FOR`], and
//! sleeps otherwise. The loop only takes a lock to read the last answers.
//! A peer that is this daemon (its address is one this machine has and its
//! port is one of our stats ports) is not fetched: its row is made from our
//! own page, at the time of the request. If no peer is, our row comes first.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::{fetch_all, Answer, Host};
use crate::stats_page::Target;

/// How often the page reloads, and how often the peers are asked.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How long after the last request for the page the peers are still asked.
const WATCHED_FOR: Duration = Duration::from_secs(60);

/// What the thread and the event loop share.
struct State {
    wanted: Instant,
    /// Which peers are this daemon; `None` until the thread has looked.
    ours: Option<Vec<bool>>,
    answers: Vec<Answer>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The peers of `--cluster` and the thread that asks them (none if it
/// could not be started: then the page has only this daemon).
pub struct ClusterWatch {
    peers: Vec<Target>,
    shared: Option<Arc<Shared>>,
}

impl ClusterWatch {
    /// Starts the thread; `stats` are this daemon's stats listeners.
    pub fn start(peers: Vec<Target>, stats: Vec<SocketAddr>) -> ClusterWatch {
        match Self::spawn(&peers, stats) {
            Ok(shared) => ClusterWatch {
                peers,
                shared: Some(shared),
            },
            Err(err) => {
                log::error!("cannot start asking the --cluster daemons: {err}");
                ClusterWatch {
                    peers: Vec::new(),
                    shared: None,
                }
            }
        }
    }

    /// The whole HTTP reply of the cluster page, with our own row from
    /// `own_text`, the page we would serve at `/`.
    pub fn reply(&self, own_text: &str, stats: &[SocketAddr]) -> String {
        let hosts = self.hosts(own_answer(own_text), own_name(stats));
        let body = crate::cluster::html(&hosts, REFRESH);
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}"
        )
    }

    fn spawn(peers: &[Target], stats: Vec<SocketAddr>) -> std::io::Result<Arc<Shared>> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                wanted: Instant::now(),
                ours: None,
                answers: vec![Answer::NotYet; peers.len()],
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let (thread_peers, thread_shared) = (peers.to_vec(), shared.clone());
        std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || watch(&thread_peers, &stats, &thread_shared))?;
        Ok(shared)
    }

    /// The page's hosts: the peers' last answers, with our own answer in
    /// our row; marks the page as watched.
    fn hosts(&self, own: Answer, own_name: String) -> Vec<Host> {
        let only_us = |own| {
            vec![Host {
                name: own_name.clone(),
                this: true,
                answer: own,
            }]
        };
        let Some(shared) = &self.shared else {
            return only_us(own);
        };
        let Ok(mut state) = shared.state.lock() else {
            return only_us(own);
        };
        state.wanted = Instant::now();
        shared.wake.notify_all();
        let ours = state.ours.clone();
        let mut hosts: Vec<Host> = self
            .peers
            .iter()
            .zip(&state.answers)
            .enumerate()
            .map(|(i, (peer, answer))| {
                let this = ours.as_ref().is_some_and(|o| o[i]);
                Host {
                    name: peer.to_string(),
                    this,
                    answer: if this { own.clone() } else { answer.clone() },
                }
            })
            .collect();
        if !hosts.iter().any(|h| h.this) {
            hosts.insert(
                0,
                Host {
                    name: own_name,
                    this: true,
                    answer: own,
                },
            );
        }
        hosts
    }
}

impl Drop for ClusterWatch {
    fn drop(&mut self) {
        let Some(shared) = &self.shared else {
            return;
        };
        if let Ok(mut state) = shared.state.lock() {
            state.stop = true;
        }
        shared.wake.notify_all();
    }
}

/// The thread: find which peers are us, then ask the others every
/// [`REFRESH`] while the page is watched.
fn watch(peers: &[Target], stats: &[SocketAddr], shared: &Shared) {
    let ours: Vec<bool> = peers.iter().map(|p| is_this_daemon(p, stats)).collect();
    let others: Vec<Target> = peers
        .iter()
        .zip(&ours)
        .filter(|(_, ours)| !**ours)
        .map(|(p, _)| p.clone())
        .collect();
    if let Ok(mut state) = shared.state.lock() {
        state.ours = Some(ours.clone());
    }
    loop {
        if !wait_until_watched(shared) {
            return;
        }
        let mut answers = fetch_all(&others).into_iter();
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        for (i, ours) in ours.iter().enumerate() {
            if !ours {
                state.answers[i] = answers.next().unwrap_or(Answer::NotYet);
            }
        }
        let next = Instant::now() + REFRESH;
        while !state.stop && Instant::now() < next {
            let left = next.saturating_duration_since(Instant::now());
            state = match shared.wake.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(_) => return,
            };
        }
    }
}

/// Sleeps while nobody has asked for the page lately; false once stopped.
fn wait_until_watched(shared: &Shared) -> bool {
    let Ok(mut state) = shared.state.lock() else {
        return false;
    };
    loop {
        if state.stop {
            return false;
        }
        if state.wanted.elapsed() < WATCHED_FOR {
            return true;
        }
        state = match shared.wake.wait_timeout(state, WATCHED_FOR) {
            Ok((state, _)) => state,
            Err(_) => return false,
        };
    }
}

/// True if `peer` names one of our stats listeners: the same port, and an
/// address that is the listener's, or (for a wildcard listener) one this
/// machine has, which binding to it tells.
fn is_this_daemon(peer: &Target, stats: &[SocketAddr]) -> bool {
    let Ok(addrs) = (peer.host.as_str(), peer.port).to_socket_addrs() else {
        return false;
    };
    let addrs: Vec<SocketAddr> = addrs.collect();
    stats.iter().any(|ours| {
        addrs.iter().any(|addr| {
            addr.port() == ours.port()
                && (addr.ip() == ours.ip()
                    || (ours.ip().is_unspecified()
                        && addr.is_ipv4() == ours.is_ipv4()
                        && UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).is_ok()))
        })
    })
}

/// True if a stats request's first line is `GET /cluster` (or `HEAD`),
/// with or without a query.
pub fn asks_for_cluster(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let method = words.next().unwrap_or_default();
    let path = words.next().unwrap_or_default();
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    matches!(method, b"GET" | b"HEAD") && matches!(path, b"/cluster" | b"/cluster/")
}

/// Our own row's answer, from the page we would serve.
fn own_answer(page_text: &str) -> Answer {
    match crate::stats_page::parse_page(page_text.as_bytes()) {
        Ok(page) => Answer::Page(page),
        Err(why) => Answer::Down(why.to_string()),
    }
}

/// Our row's name when `--cluster` does not list us: our first stats
/// listener's address, or this host's name for a wildcard listener, and
/// its port.
fn own_name(stats: &[SocketAddr]) -> String {
    let host = || crate::sys::hostname().unwrap_or_else(|| "localhost".into());
    match stats.first() {
        Some(addr) if addr.ip().is_unspecified() => format!("{}:{}", host(), addr.port()),
        Some(addr) => Target {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
        .to_string(),
        None => host(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_cluster_asks_for_the_page() {
        for yes in [
            &b"GET /cluster HTTP/1.1\r\nHost: x\r\n"[..],
            b"GET /cluster?x=1 HTTP/1.0\r\n",
            b"HEAD /cluster/ HTTP/1.0\n",
        ] {
            assert!(asks_for_cluster(yes), "{yes:?}");
        }
        for no in [
            &b"GET / HTTP/1.0\r\n"[..],
            b"",
            b"x",
            b"POST /cluster HTTP/1.0\r\n",
            b"GET /clusters HTTP/1.0\r\n",
            b"GET /x/cluster HTTP/1.0\r\n",
        ] {
            assert!(!asks_for_cluster(no), "{no:?}");
        }
    }

    #[test]
    fn a_peer_is_us_by_port_and_a_local_address() {
        let t = |spec: &str| Target::parse(spec).unwrap();
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert!(is_this_daemon(&t("127.0.0.1:4000"), &[any]));
        assert!(is_this_daemon(&t("127.0.0.1:4000"), &[lo]));
        assert!(!is_this_daemon(&t("127.0.0.1:4001"), &[any]));
        assert!(!is_this_daemon(&t("127.0.0.2:4000"), &[lo]));
        // TEST-NET-1 is never this machine's.
        assert!(!is_this_daemon(&t("192.0.2.1:4000"), &[any]));
    }
}
