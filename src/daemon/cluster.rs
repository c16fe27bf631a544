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

/// The peers of `--cluster` and the thread that asks them.
pub struct ClusterWatch {
    peers: Vec<Target>,
    shared: Arc<Shared>,
}

impl ClusterWatch {
    /// Starts the thread; `stats` are this daemon's stats listeners.
    pub fn start(peers: Vec<Target>, stats: Vec<SocketAddr>) -> std::io::Result<ClusterWatch> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                wanted: Instant::now(),
                ours: None,
                answers: vec![Answer::NotYet; peers.len()],
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let (thread_peers, thread_shared) = (peers.clone(), shared.clone());
        std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || watch(&thread_peers, &stats, &thread_shared))?;
        Ok(ClusterWatch { peers, shared })
    }

    /// The page's hosts: the peers' last answers, with our own `page` in our
    /// row; marks the page as watched.
    pub fn hosts(&self, own: Answer, own_name: String) -> Vec<Host> {
        let Ok(mut state) = self.shared.state.lock() else {
            return Vec::new();
        };
        state.wanted = Instant::now();
        self.shared.wake.notify_all();
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
        if let Ok(mut state) = self.shared.state.lock() {
            state.stop = true;
        }
        self.shared.wake.notify_all();
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

/// Our own row's answer, from the page we would serve.
pub fn own_answer(page_text: &str) -> Answer {
    match crate::stats_page::parse_page(page_text.as_bytes()) {
        Ok(page) => Answer::Page(page),
        Err(why) => Answer::Down(why.to_string()),
    }
}

/// Our row's name when `--cluster` does not list us: our first stats
/// listener's address, or this host's name for a wildcard listener, and
/// its port.
pub fn own_name(stats: &[SocketAddr]) -> String {
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
