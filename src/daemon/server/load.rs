//! Placement's daemon side: the answers to distcc-rs clients' load queries (`src/load.rs`), on a UDP socket beside each compile port, from the event loop's own counts.
//!
//! The answer says the slots, the jobs running, the queue, the connections
//! still sending a request, and the mean wall time of the recent compiles
//! (a moving average, so that a client can tell a fast host from a slow
//! one). A claim counts as a connection on its way until one comes from
//! the claimant's address, or for `load::CLAIM_LIFE`; a daemon with
//! `--auth-keys` answers claims as queries and counts none, since anyone
//! who can send a datagram from an allowed address (or forge one) could
//! claim its slots. Only hosts the access list allows get an answer; a socket that
//! cannot be bound (the port taken for UDP) leaves placement off for that
//! port, and the clients then place by distcc's static rules.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::IpAddr;
use std::time::Instant;

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Registry, Token};

use super::{ConnId, Service};
use crate::daemon::access::AccessList;
use crate::load::{self, Ask, Load};

/// The most claims counted at once: more are answered but not counted.
const MAX_CLAIMS: usize = 4096;

/// The weight of the newest job in the recent job time.
const RECENT_WEIGHT: f64 = 0.25;

/// The load sockets and the job times they report.
pub(super) struct LoadAnswers {
    sockets: Vec<UdpSocket>,
    /// When each running job got its slot.
    started: HashMap<ConnId, Instant>,
    /// The moving average of recent job times, in ms.
    recent_ms: Option<f64>,
    /// Claims not yet followed by a connection: the claimant and when it claimed.
    claims: VecDeque<(IpAddr, Instant)>,
    /// False with `--auth-keys`: claims are answered, not counted.
    counts_claims: bool,
}

impl LoadAnswers {
    /// Binds a UDP socket on the address of every compile listener.
    pub(super) fn bind(listeners: &[(TcpListener, Service)]) -> LoadAnswers {
        let mut sockets = Vec::new();
        for (listener, service) in listeners {
            let Ok(addr) = listener.local_addr() else {
                continue;
            };
            if *service != Service::Compile {
                continue;
            }
            match UdpSocket::bind(addr) {
                Ok(sock) => sockets.push(sock),
                Err(err) => log::info!("no load answers on {addr}/udp: {err}"),
            }
        }
        LoadAnswers {
            sockets,
            started: HashMap::new(),
            recent_ms: None,
            claims: VecDeque::new(),
            counts_claims: true,
        }
    }

    /// An empty set, for inetd mode.
    pub(super) fn none() -> LoadAnswers {
        LoadAnswers {
            sockets: Vec::new(),
            started: HashMap::new(),
            recent_ms: None,
            claims: VecDeque::new(),
            counts_claims: true,
        }
    }

    /// Whether claims are counted (true by default).
    pub(super) fn take_claims(&mut self, on: bool) {
        self.counts_claims = on;
    }

    /// Watches the sockets for queries, as tokens `first`, `first + 1`, ...
    pub(super) fn register(&mut self, registry: &Registry, first: usize) {
        for (i, sock) in self.sockets.iter_mut().enumerate() {
            if let Err(err) = registry.register(sock, Token(first + i), Interest::READABLE) {
                log::warn!("cannot watch the load socket: {err}");
            }
        }
    }

    /// A job got a slot.
    pub(super) fn job_started(&mut self, id: ConnId) {
        self.started.insert(id, Instant::now());
    }

    /// A job left its slot; a compile that succeeded counts in the recent time.
    pub(super) fn job_finished(&mut self, id: ConnId, succeeded: bool) {
        let Some(start) = self.started.remove(&id) else {
            return;
        };
        if succeeded {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            self.recent_ms = Some(match self.recent_ms {
                Some(old) => old + RECENT_WEIGHT * (ms - old),
                None => ms,
            });
        }
    }

    /// The recent job time in whole ms, 0 before the first job (at least 1 after it).
    pub(super) fn recent_ms(&self) -> u32 {
        self.recent_ms
            .map_or(0, |ms| ms.round().clamp(1.0, u32::MAX as f64) as u32)
    }

    /// A compile connection came from `ip`: its claim, if any, is spent.
    pub(super) fn connection_from(&mut self, ip: IpAddr) {
        if let Some(k) = self.claims.iter().position(|&(from, _)| from == ip) {
            self.claims.remove(k);
        }
    }

    /// The claims still counted, after the expired ones are dropped.
    fn live_claims(&mut self) -> u32 {
        let now = Instant::now();
        while self
            .claims
            .front()
            .is_some_and(|&(_, at)| now.duration_since(at) > load::CLAIM_LIFE)
        {
            self.claims.pop_front();
        }
        u32::try_from(self.claims.len()).unwrap_or(u32::MAX)
    }

    /// Answers every query waiting on socket `i` with `load` and the claims.
    pub(super) fn answer_queries(&mut self, i: usize, load: &Load, access: &AccessList) {
        if i >= self.sockets.len() {
            return;
        }
        let mut buf = [0u8; load::SIZE + 1];
        // Bounded: a flood is answered a batch at a time between other events.
        for _ in 0..256 {
            let (n, peer) = match self.sockets[i].recv_from(&mut buf) {
                Ok(got) => got,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == ErrorKind::WouldBlock => return,
                Err(err) => {
                    log::debug!("load socket: {err}");
                    return;
                }
            };
            let Some((ask, nonce)) = load::read_query(&buf[..n]) else {
                continue;
            };
            if !access.allows(peer.ip()) {
                continue;
            }
            if ask == Ask::Claim && self.counts_claims && self.claims.len() < MAX_CLAIMS {
                self.claims.push_back((peer.ip(), Instant::now()));
            }
            let mut now = *load;
            now.arriving = now.arriving.saturating_add(self.live_claims());
            if let Err(err) = self.sockets[i].send_to(&load::answer(nonce, &now), peer) {
                log::debug!("load answer to {peer}: {err}");
            }
        }
    }
}
