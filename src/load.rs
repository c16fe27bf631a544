//! The load query of distcc-rs placement: one UDP datagram from a client to a distcc-rs daemon's compile port, and the daemon's one-datagram answer.
//!
//! distccd 3.4 listens on TCP only, so a query never reaches it: its kernel
//! answers "port unreachable", or nothing. A query and its answer have the
//! same fixed size ([`SIZE`]), so that an answer never amplifies a forged
//! query. Layout, big-endian:
//!
//! | bytes | query | answer |
//! |---|---|---|
//! | 0..8 | `DRSLOAD1` | `DRSLOAD1` |
//! | 8 | `Q`, or `C` for a claim | `A` |
//! | 9..16 | zero | zero |
//! | 16..24 | the client's nonce | the query's nonce |
//! | 24..28 | zero | slots (`--jobs`) |
//! | 28..32 | zero | jobs running |
//! | 32..36 | zero | jobs queued for a slot |
//! | 36..40 | zero | connections still sending their request |
//! | 40..44 | zero | recent job time in ms (0: none yet) |
//! | 44..48 | zero | zero |
//!
//! A claim is a query that also counts one job on its way to the daemon,
//! until a connection from the same address arrives or [`CLAIM_LIFE`] is
//! over: its answer includes that job, so two clients that picked the same
//! last free slot at once learn it from the daemon, which takes the claims
//! one after the other.

/// The first bytes of every load datagram.
pub const MAGIC: &[u8; 8] = b"DRSLOAD1";
/// The size of a query and of an answer.
pub const SIZE: usize = 48;

/// How long a claim counts without its connection.
pub const CLAIM_LIFE: std::time::Duration = std::time::Duration::from_secs(1);

const QUERY: u8 = b'Q';
const CLAIM: u8 = b'C';

/// What a query asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The load.
    Load,
    /// The load, counting one more job on its way.
    Claim,
}
const ANSWER: u8 = b'A';

/// What a daemon says about its load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Its compile slots.
    pub slots: u32,
    /// Jobs holding a slot.
    pub running: u32,
    /// Complete requests waiting for a slot.
    pub queued: u32,
    /// Connections whose request is still arriving: jobs on their way.
    pub arriving: u32,
    /// The mean wall time of its recent jobs, in ms; 0 before the first.
    pub recent_ms: u32,
}

impl Load {
    /// Every job the daemon has or is about to have.
    pub fn jobs(&self) -> u32 {
        self.running
            .saturating_add(self.queued)
            .saturating_add(self.arriving)
    }
}

fn header(kind: u8, nonce: u64) -> [u8; SIZE] {
    let mut buf = [0u8; SIZE];
    buf[..8].copy_from_slice(MAGIC);
    buf[8] = kind;
    buf[16..24].copy_from_slice(&nonce.to_be_bytes());
    buf
}

/// A query carrying `nonce`.
pub fn query(nonce: u64, ask: Ask) -> [u8; SIZE] {
    header(
        match ask {
            Ask::Load => QUERY,
            Ask::Claim => CLAIM,
        },
        nonce,
    )
}

/// What a well-formed query asks, and its nonce; else None.
pub fn read_query(buf: &[u8]) -> Option<(Ask, u64)> {
    if buf.len() != SIZE || &buf[..8] != MAGIC {
        return None;
    }
    let ask = match buf[8] {
        QUERY => Ask::Load,
        CLAIM => Ask::Claim,
        _ => return None,
    };
    Some((ask, nonce_of(buf)))
}

fn nonce_of(buf: &[u8]) -> u64 {
    let mut n = [0u8; 8];
    n.copy_from_slice(&buf[16..24]);
    u64::from_be_bytes(n)
}

/// The answer to the query carrying `nonce`.
pub fn answer(nonce: u64, load: &Load) -> [u8; SIZE] {
    let mut buf = header(ANSWER, nonce);
    let fields = [
        load.slots,
        load.running,
        load.queued,
        load.arriving,
        load.recent_ms,
    ];
    for (i, v) in fields.iter().enumerate() {
        buf[24 + 4 * i..28 + 4 * i].copy_from_slice(&v.to_be_bytes());
    }
    buf
}

/// The load in a well-formed answer to the query carrying `nonce`, else None.
pub fn read_answer(buf: &[u8], nonce: u64) -> Option<Load> {
    if buf.len() != SIZE || &buf[..8] != MAGIC || buf[8] != ANSWER || nonce_of(buf) != nonce {
        return None;
    }
    let field = |i: usize| {
        let mut v = [0u8; 4];
        v.copy_from_slice(&buf[24 + 4 * i..28 + 4 * i]);
        u32::from_be_bytes(v)
    };
    let load = Load {
        slots: field(0),
        running: field(1),
        queued: field(2),
        arriving: field(3),
        recent_ms: field(4),
    };
    (load.slots > 0).then_some(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_and_its_answer_round_trip() {
        let q = query(0x0102_0304_0506_0708, Ask::Load);
        assert_eq!(read_query(&q), Some((Ask::Load, 0x0102_0304_0506_0708)));
        let c = query(7, Ask::Claim);
        assert_eq!(read_query(&c), Some((Ask::Claim, 7)));
        let load = Load {
            slots: 8,
            running: 7,
            queued: 2,
            arriving: 1,
            recent_ms: 1500,
        };
        let a = answer(0x0102_0304_0506_0708, &load);
        assert_eq!(a.len(), q.len());
        assert_eq!(read_answer(&a, 0x0102_0304_0506_0708), Some(load));
        assert_eq!(load.jobs(), 10);
    }

    #[test]
    fn anything_else_is_not_read() {
        let a = answer(
            5,
            &Load {
                slots: 1,
                ..Load::default()
            },
        );
        assert_eq!(read_answer(&a, 6), None, "another query's answer");
        assert_eq!(
            read_answer(&query(5, Ask::Load), 5),
            None,
            "a query is no answer"
        );
        assert_eq!(read_query(&a), None, "an answer is no query");
        assert_eq!(read_query(&query(5, Ask::Load)[..SIZE - 1]), None, "short");
        let mut long = query(5, Ask::Load).to_vec();
        long.push(0);
        assert_eq!(read_query(&long), None, "long");
        let mut bad = query(5, Ask::Load);
        bad[0] = b'X';
        assert_eq!(read_query(&bad), None, "magic");
        assert_eq!(
            read_answer(&answer(5, &Load::default()), 5),
            None,
            "no slots"
        );
        assert_eq!(read_query(b"DIST00000001"), None, "a distcc request");
    }
}
