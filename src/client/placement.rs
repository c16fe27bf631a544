//! Load-aware placement: which host a job goes to, from the load its distcc-rs daemons report, falling back to distcc 3.4's static rules (`lock::pick`).
//!
//! Before each pick the client asks every candidate TCP host for its load
//! with one UDP datagram to the host's compile port (`src/load.rs`), all
//! at once, and waits at most [`ANSWER_WAIT`] for the answers. distccd 3.4
//! has no UDP socket, so it never sees the query; a host that does not
//! answer is marked in the lock directory and not asked again for a while:
//! `static_<lock name>` for [`STATIC_LIFETIME`] when its kernel says no
//! one listens (3.4, or no daemon), `quiet_<lock name>` for
//! [`QUIET_LIFETIME`] when it said nothing in time while another host
//! answered (busy, far, or a firewall). When no host answers in time, or
//! the client woke from its wait late, this machine is too busy to tell,
//! and no host is marked. `localhost`
//! answers from its lock files: its slots and local preprocessing share
//! the `cpu_localhost_N` files, so local work is in the same picture.
//!
//! The hosts are then tried in this order, each by its free lock slots:
//! 1. hosts with a free slot (fewer jobs than slots), the fastest first by
//!    their recent job time in steps of √2 (so that a host twice as fast
//!    comes first even when nearly full, and the jitter of job times does
//!    not count), then the emptiest; ties drawn at random so that clients
//!    on different machines spread out;
//! 2. hosts that cannot answer (distccd 3.4, ssh), by 3.4's rule (slot 0
//!    of each, then slot 1);
//! 3. busy hosts, by when a new job would finish there:
//!    recent time × (jobs + 1) / slots;
//! 4. distcc-rs daemons that did not answer in time (most likely busy),
//!    by 3.4's rule.
//!
//! The first host that has a free lock slot gets a claim (`src/load.rs`):
//! when its answer says that the host filled up since the survey, the job
//! tries the next host. With no answer at all, or `DISTCC_PLACEMENT=0`,
//! this is `lock::pick`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::hosts::{Host, HostList, Kind};
use super::lock::{self, PickError, Slot};
use crate::env::{self, Placement};
use crate::load::{self, Ask, Load};

/// How long the client waits for the load answers of one pick.
pub const ANSWER_WAIT: Duration = Duration::from_millis(20);
/// How much longer the client waits for the other answers after the first.
pub const ANSWER_GRACE: Duration = Duration::from_millis(5);
/// How late the client may wake from that wait before it counts itself
/// as overslept, and blames no host for the silence.
const OVERSLEEP: Duration = Duration::from_millis(3);
/// How long a host without a load socket is placed by the static rules only.
pub const STATIC_LIFETIME: Duration = Duration::from_secs(10);
/// How many times a job goes on down the order after a claim found its host full.
const CLAIM_TRIES: usize = 3;
/// How long a host that did not answer in time, while another did, is.
pub const QUIET_LIFETIME: Duration = Duration::from_secs(2);

/// Picks a host and takes one of its slots, by load where the hosts say
/// it, else by `lock::pick`'s rules; the arguments are `lock::pick`'s.
pub fn pick(
    list: &HostList,
    lock_dir: &Path,
    period: Duration,
    pause: Duration,
    exclude: &[usize],
) -> Result<Slot, PickError> {
    let mode = env::placement();
    if mode == Placement::Static {
        return lock::pick(list, lock_dir, period, pause, exclude);
    }
    loop {
        let candidates = lock::candidates(list, lock_dir, period, exclude);
        if candidates.is_empty() {
            return Err(PickError::NoHosts);
        }
        let asked = sample(&candidates, mode);
        let (mut loads, quiet) = survey(lock_dir, &asked);
        if loads.iter().all(Option::is_none) {
            return lock::pick(list, lock_dir, period, pause, exclude);
        }
        let hosts = Hosts {
            asked: &asked,
            candidates: &candidates,
            quiet: &quiet,
        };
        if let Some(slot) = place(lock_dir, &hosts, &mut loads)? {
            log::debug!(
                "placed on {} slot {}",
                list.hosts[slot.host].hostdef,
                slot.slot
            );
            return Ok(slot);
        }
        log::debug!("every slot is busy; waiting {pause:?}");
        lock::pause_between_rounds(pause);
    }
}

/// The hosts whose load is asked: all of them, or two drawn at random.
fn sample<'l>(candidates: &[(usize, &'l Host)], mode: Placement) -> Vec<(usize, &'l Host)> {
    if mode != Placement::Two || candidates.len() <= 2 {
        return candidates.to_vec();
    }
    let n = candidates.len() as u64;
    let a = (random() % n) as usize;
    let b = (a + 1 + (random() % (n - 1)) as usize) % candidates.len();
    vec![candidates[a], candidates[b]]
}

fn random() -> u64 {
    RandomState::new().hash_one(Instant::now())
}

/// One step of the order: a host's slots, or 3.4's rule over some hosts.
enum Step<'l> {
    Host(usize, &'l Host),
    Static(Vec<(usize, &'l Host)>),
}

/// Takes the first free lock slot in the order of `loads`, and claims it
/// on a host that answered. A claim whose answer says the host is full
/// after all (another client took its last slot meanwhile) sends the job
/// on down the order, up to [`CLAIM_TRIES`] times.
fn place(
    lock_dir: &Path,
    hosts: &Hosts,
    loads: &mut [Option<Load>],
) -> Result<Option<Slot>, PickError> {
    let asked = hosts.asked;
    for _ in 0..CLAIM_TRIES {
        let Some(slot) = take_first(lock_dir, &rank(hosts, loads))? else {
            return Ok(None);
        };
        let Some(k) = asked.iter().position(|&(i, _)| i == slot.host) else {
            return Ok(Some(slot));
        };
        let Some(before) = loads[k] else {
            return Ok(Some(slot));
        };
        match claim(asked[k].1) {
            Some(now) if before.jobs() < before.slots && now.jobs() > now.slots => {
                log::debug!(
                    "{} filled up meanwhile; trying elsewhere",
                    asked[k].1.hostdef
                );
                loads[k] = Some(now);
            }
            _ => return Ok(Some(slot)),
        }
    }
    take_first(lock_dir, &rank(hosts, loads))
}

/// The hosts of one pick: those asked for their load (in the order of the
/// loads), all the candidates, and the list indices of the distcc-rs
/// daemons that did not answer in time.
struct Hosts<'a, 'l> {
    asked: &'a [(usize, &'l Host)],
    candidates: &'a [(usize, &'l Host)],
    quiet: &'a [usize],
}

/// Claims a job's place on `host`: its load with the job counted, or None
/// without an answer.
fn claim(host: &Host) -> Option<Load> {
    let Kind::Tcp { port } = host.kind else {
        return None;
    };
    let query = ask(&host.hostname, port, Ask::Claim)?;
    let mut load = [None];
    collect_answers(vec![(0, query)], &mut load);
    load[0]
}

/// Takes the first free lock slot in `order`.
fn take_first(lock_dir: &Path, order: &[Step]) -> Result<Option<Slot>, PickError> {
    for step in order {
        let found = match step {
            Step::Host(i, host) => lock::try_slot_major(lock_dir, &[(*i, host)])?,
            Step::Static(hosts) => lock::try_slot_major(lock_dir, hosts)?,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The order the hosts are tried in (see the module's text): the hosts
/// asked, by their `loads`, and the other candidates without an answer.
fn rank<'l>(hosts: &Hosts<'_, 'l>, loads: &[Option<Load>]) -> Vec<Step<'l>> {
    let asked = hosts.asked;
    let typical = typical_ms(loads);
    let fastest = loads
        .iter()
        .flatten()
        .map(|l| {
            if l.recent_ms == 0 {
                typical
            } else {
                f64::from(l.recent_ms)
            }
        })
        .fold(f64::INFINITY, f64::min);
    let mut free = Vec::new();
    let mut busy = Vec::new();
    for (&(i, host), load) in asked.iter().zip(loads) {
        let Some(load) = load else { continue };
        let ms = if load.recent_ms == 0 {
            typical
        } else {
            f64::from(load.recent_ms)
        };
        let (jobs, slots) = (f64::from(load.jobs()), f64::from(load.slots));
        let tie = random();
        if load.jobs() < load.slots {
            free.push(((speed_class(ms, fastest), jobs / slots, tie), (i, host)));
        } else {
            busy.push(((ms * (jobs + 1.0) / slots, 0.0, tie), (i, host)));
        }
    }
    let by_key = |a: &((f64, f64, u64), _), b: &((f64, f64, u64), _)| {
        a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal)
    };
    free.sort_by(by_key);
    busy.sort_by(by_key);
    let answered = |i: usize| {
        asked
            .iter()
            .zip(loads)
            .any(|(&(j, _), l)| j == i && l.is_some())
    };
    let (quiet, unknown): (Vec<(usize, &Host)>, _) = hosts
        .candidates
        .iter()
        .copied()
        .filter(|&(i, _)| !answered(i))
        .partition(|(i, _)| hosts.quiet.contains(i));
    let mut order: Vec<Step> = free
        .into_iter()
        .map(|(_, (i, h))| Step::Host(i, h))
        .collect();
    order.push(Step::Static(unknown));
    order.extend(busy.into_iter().map(|(_, (i, h))| Step::Host(i, h)));
    order.push(Step::Static(quiet));
    order
}

/// How much slower than the fastest host a host is, in steps of √2: 0 up
/// to 1.41 times the fastest time, 1 up to 2 times, 2 up to 2.83 times...
/// Hosts of one class count as equally fast, so that the jitter of job
/// times does not outweigh how busy they are.
fn speed_class(ms: f64, fastest: f64) -> f64 {
    ((ms / fastest.max(1.0)).max(1.0).log2() * 2.0).floor()
}

/// The median recent job time of the hosts that have one, for those that
/// have none yet (1 ms when none has, so that all count alike).
fn typical_ms(loads: &[Option<Load>]) -> f64 {
    let mut known: Vec<u32> = loads
        .iter()
        .flatten()
        .map(|l| l.recent_ms)
        .filter(|&ms| ms > 0)
        .collect();
    known.sort_unstable();
    known.get(known.len() / 2).map_or(1.0, |&ms| f64::from(ms))
}

/// The load of each of `hosts`, None where it is not known: `localhost`
/// from its lock files, a TCP host from its answer, ssh hosts never; and
/// the list indices of the hosts that are quiet (see [`Silence`]).
fn survey(lock_dir: &Path, hosts: &[(usize, &Host)]) -> (Vec<Option<Load>>, Vec<usize>) {
    let mut loads = vec![None; hosts.len()];
    let mut quiet = Vec::new();
    let mut asking = Vec::new();
    for (k, &(i, host)) in hosts.iter().enumerate() {
        match (&host.kind, silence(lock_dir, host)) {
            (Kind::Local, _) => loads[k] = Some(local_load(lock_dir, host)),
            (Kind::Tcp { port }, None) => match ask(&host.hostname, *port, Ask::Load) {
                Some(query) => asking.push((k, query)),
                None => mark_static(lock_dir, host, Silence::Refused),
            },
            (_, Some(Silence::Quiet)) => quiet.push(i),
            _ => {}
        }
    }
    let began = Instant::now();
    let sent = asking.len();
    let answers = collect_answers(asking, &mut loads);
    let answered = loads.iter().flatten().count();
    log::debug!(
        "load survey: {answered} of {sent} answered in {:?}",
        began.elapsed()
    );
    for k in answers.refused {
        mark_static(lock_dir, hosts[k].1, Silence::Refused);
    }
    // All silent is this machine or the network being slow, not the
    // hosts; so is a silence this process overslept.
    let blame = answered > 0 && !answers.overslept && began.elapsed() >= ANSWER_WAIT;
    for k in answers.silent {
        quiet.push(hosts[k].0);
        if blame {
            mark_static(lock_dir, hosts[k].1, Silence::Quiet);
        }
    }
    (loads, quiet)
}

/// `localhost`'s load: its lock slots held, local preprocessing included.
fn local_load(lock_dir: &Path, host: &Host) -> Load {
    Load {
        slots: host.limit.max(1),
        running: lock::busy_slots(lock_dir, "localhost", host.limit),
        ..Load::default()
    }
}

/// A query sent to `hostname:port`, waiting for its answer.
struct Query {
    sock: UdpSocket,
    nonce: u64,
}

/// Sends a load query to the host's compile port; None if it cannot be sent.
fn ask(hostname: &str, port: u16, what: Ask) -> Option<Query> {
    let addr: SocketAddr = (hostname, port).to_socket_addrs().ok()?.next()?;
    let any: SocketAddr = match addr {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let sock = UdpSocket::bind(any).ok()?;
    sock.connect(addr).ok()?;
    sock.set_nonblocking(true).ok()?;
    let nonce = random();
    sock.send(&load::query(nonce, what)).ok()?;
    Some(Query { sock, nonce })
}

/// How the answers to one survey came: the hosts whose kernel said "port
/// unreachable", the hosts that said nothing, and whether this process
/// woke from a wait later than [`OVERSLEEP`] after its end (a loaded
/// machine, whose silence says nothing of the hosts).
struct Answers {
    refused: Vec<usize>,
    silent: Vec<usize>,
    overslept: bool,
}

/// Reads the answers to `asking` into `loads` until every host has
/// answered or refused, or [`ANSWER_WAIT`] is over, or [`ANSWER_GRACE`]
/// after the first answer.
fn collect_answers(mut asking: Vec<(usize, Query)>, loads: &mut [Option<Load>]) -> Answers {
    let mut deadline = Instant::now() + ANSWER_WAIT;
    let mut refused = Vec::new();
    let mut graced = false;
    let mut overslept = false;
    loop {
        asking.retain(|(k, query)| {
            let mut buf = [0u8; load::SIZE + 1];
            match query.sock.recv(&mut buf) {
                Ok(n) => match load::read_answer(&buf[..n], query.nonce) {
                    Some(load) => {
                        loads[*k] = Some(load);
                        false
                    }
                    None => true,
                },
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                Err(_) => {
                    refused.push(*k);
                    false
                }
            }
        });
        if !graced && loads.iter().any(Option::is_some) {
            // The first answer is in: the others get a moment more, not
            // the whole wait, so that one slow host costs little.
            graced = true;
            deadline = deadline.min(Instant::now() + ANSWER_GRACE);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if asking.is_empty() || left.is_zero() {
            break;
        }
        wait_readable(&asking, left);
        overslept |= Instant::now() > deadline + OVERSLEEP;
    }
    Answers {
        refused,
        silent: asking.into_iter().map(|(k, _)| k).collect(),
        overslept,
    }
}

/// Waits up to `left` for one of the sockets to be readable (or in error).
fn wait_readable(asking: &[(usize, Query)], left: Duration) {
    let mut fds: Vec<libc::pollfd> = asking
        .iter()
        .map(|(_, q)| libc::pollfd {
            fd: q.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: fds is a valid array of fds.len() pollfd structures.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

/// Why a host is placed by the static rules for a while.
#[derive(Clone, Copy)]
enum Silence {
    /// Its kernel said that nothing listens for load queries: distccd 3.4,
    /// or no daemon at all.
    Refused,
    /// It said nothing while another host answered: busy, far, or behind
    /// a firewall.
    Quiet,
}

impl Silence {
    fn name(self) -> &'static str {
        match self {
            Silence::Refused => "static",
            Silence::Quiet => "quiet",
        }
    }

    fn lifetime(self) -> Duration {
        match self {
            Silence::Refused => STATIC_LIFETIME,
            Silence::Quiet => QUIET_LIFETIME,
        }
    }
}

fn static_path(lock_dir: &Path, host: &Host, why: Silence) -> PathBuf {
    lock_dir.join(format!("{}_{}", why.name(), host.lock_name()))
}

/// Why `host` is marked static or quiet (see [`Silence`]), while it is.
fn silence(lock_dir: &Path, host: &Host) -> Option<Silence> {
    [Silence::Refused, Silence::Quiet].into_iter().find(|&why| {
        let Ok(mtime) =
            std::fs::metadata(static_path(lock_dir, host, why)).and_then(|m| m.modified())
        else {
            return false;
        };
        SystemTime::now()
            .duration_since(mtime)
            .map_or(true, |age| age < why.lifetime())
    })
}

fn mark_static(lock_dir: &Path, host: &Host, why: Silence) {
    log::debug!(
        "{} did not answer the load query: static placement for {:?}",
        host.hostdef,
        why.lifetime()
    );
    if let Err(err) = std::fs::write(static_path(lock_dir, host, why), b"x") {
        log::debug!("cannot mark {}: {err}", host.hostdef);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::hosts::parse;

    fn load(slots: u32, running: u32, recent_ms: u32) -> Option<Load> {
        Some(Load {
            slots,
            running,
            recent_ms,
            ..Load::default()
        })
    }

    fn order(steps: &[Step]) -> Vec<Vec<usize>> {
        steps
            .iter()
            .map(|s| match s {
                Step::Host(i, _) => vec![*i],
                Step::Static(hosts) => hosts.iter().map(|(i, _)| *i).collect(),
            })
            .collect()
    }

    #[test]
    fn free_then_unknown_then_busy_then_quiet() {
        let list = parse("slow fast full old quiet emptier").unwrap();
        let all: Vec<(usize, &Host)> = list.hosts.iter().enumerate().collect();
        let asked = [all[0], all[1], all[2], all[5]];
        let loads = [
            load(8, 0, 3000),
            load(8, 7, 1500),
            load(8, 9, 1500),
            load(8, 2, 1600),
        ];
        let hosts = Hosts {
            asked: &asked,
            candidates: &all,
            quiet: &[4],
        };
        // fast and emptier are one speed class: the emptier first; the
        // slow host after them although empty; old (no answer) by the
        // static rule; the full host queues; quiet last.
        let want = vec![vec![5], vec![1], vec![0], vec![3], vec![2], vec![4]];
        assert_eq!(order(&rank(&hosts, &loads)), want);
    }

    #[test]
    fn speed_classes_are_steps_of_the_square_root_of_two() {
        assert_eq!(speed_class(300.0, 300.0), 0.0);
        assert_eq!(speed_class(400.0, 300.0), 0.0);
        assert_eq!(speed_class(500.0, 300.0), 1.0);
        assert_eq!(speed_class(600.0, 300.0), 2.0);
        assert_eq!(speed_class(1.0, 0.0), 0.0);
    }
}
