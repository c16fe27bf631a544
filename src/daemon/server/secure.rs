//! The encrypted channel on the event loop (`--auth-keys`): a connection's
//! bytes go through its `ServerChannel` before the request decoder sees
//! them, and what the daemon sends is sealed into frames (docs/trust.md).
//!
//! No byte is read as a request until the client has proved a key that is
//! in `--auth-keys`. A plain distcc client, an unknown key, a broken or
//! late handshake gets the connection closed with one log line, which
//! names the key by its fingerprint only. A handshake must end within
//! [`HANDSHAKE_TIME`], so idle half-handshakes only hold a descriptor for
//! that long (and the oldest is dropped first when descriptors run out).

use std::time::{Duration, Instant};

use super::{Conn, ConnId, ConnState, Server};
use crate::channel::{Opened, ServerChannel};

/// How long a client has to finish the handshake.
pub const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// True while the connection's channel has not yet admitted its client.
pub fn in_handshake(conn: &Conn) -> bool {
    conn.channel.as_ref().is_some_and(|c| !c.is_open())
}

impl Server<'_> {
    /// A channel for a new compile connection, if the daemon has `--auth-keys`.
    pub(super) fn new_channel(&self) -> Option<ServerChannel> {
        let trust = self.config.trust.as_ref()?;
        match ServerChannel::new(&trust.key) {
            Ok(channel) => Some(channel),
            // Cannot happen with a valid key; a connection without its
            // channel must never be served, so it gets one that fails.
            Err(err) => {
                log::error!("cannot start a channel: {err}");
                None
            }
        }
    }

    /// Bytes read from a connection: through its channel, if it has one,
    /// then to the request. Returns false once the connection is closed.
    pub(super) fn on_received(&mut self, id: ConnId, raw: &[u8]) -> bool {
        let trusted = self.config.trust.is_some();
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        let reading = matches!(conn.state, ConnState::Reading { .. });
        if conn.channel.is_none() || !reading {
            if trusted && reading {
                // A channel that could not be made: serve nothing.
                self.close(id);
                return false;
            }
            // After the request, bytes are only counted or ignored.
            return self.on_data(id, raw);
        }
        // One plaintext buffer for every connection: a large request is
        // not an allocation (and its page faults) per connection.
        let mut plain = std::mem::take(&mut self.opened);
        let keep_going = self.open_received(id, raw, &mut plain);
        debug_assert_eq!(plain.room(), super::OPENED_ROOM, "opened grew");
        plain.clear();
        self.opened = plain;
        keep_going
    }

    /// [`Server::on_received`] for a connection with a channel: `raw`
    /// through the handshake or opened into `plain`, then to the request.
    fn open_received(&mut self, id: ConnId, raw: &[u8], plain: &mut Opened) -> bool {
        let Some(channel) = self.conns.get_mut(&id).and_then(|c| c.channel.as_mut()) else {
            return false;
        };
        let mut send = Vec::new();
        let proven = channel.input(raw, &mut send, plain);
        let admitted = match proven {
            Ok(Some(client)) => self.admit(id, &client, plain),
            Ok(None) => Ok(()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(why) = admitted {
            log::warn!(
                "refusing connection from {}: {why}; nothing run",
                conn_peer(self, id)
            );
            self.close(id);
            return false;
        }
        if !send.is_empty() && !self.send_handshake(id, send) {
            return false;
        }
        self.take_ask(id, plain);
        plain.is_empty() || self.on_data(id, plain)
    }

    /// At the client's first plaintext: takes the identity ask (`CIDQ`)
    /// off its front, and notes whether it was there.
    fn take_ask(&mut self, id: ConnId, plain: &mut Opened) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if plain.is_empty() || conn.asked_identity.is_some() {
            return;
        }
        let ask = crate::identity::ask();
        let asked = plain.starts_with(&ask);
        if asked {
            plain.consume(ask.len());
        }
        conn.asked_identity = Some(asked);
    }

    /// Checks a proved client key against `--auth-keys`; an accepted one
    /// gets its frames opened and the request's own deadline.
    fn admit(&mut self, id: ConnId, client: &[u8], plain: &mut Opened) -> Result<(), String> {
        let io_timeout = self.config.io_timeout;
        let trust = self.config.trust.as_ref().ok_or("no --auth-keys")?;
        let fingerprint = crate::keys::fingerprint(client);
        let Some(known) = trust.clients.find(client) else {
            return Err(format!("client key {fingerprint} is not in --auth-keys"));
        };
        let conn = self.conns.get_mut(&id).ok_or("gone")?;
        conn.deadline = Some(Instant::now() + io_timeout);
        let cipher = conn.channel.as_ref().and_then(ServerChannel::suite);
        log::info!(
            "client {} proved key {fingerprint} ({}), {}",
            conn.peer,
            if known.comment.is_empty() {
                "no comment"
            } else {
                &known.comment
            },
            cipher.map_or("?", crate::channel::Suite::cipher)
        );
        match conn.channel.as_mut() {
            Some(channel) => channel.admit(plain).map_err(|e| e.to_string()),
            None => Err("no channel".into()),
        }
    }

    /// Queues the handshake's answer on a reading connection and writes
    /// what the socket takes.
    fn send_handshake(&mut self, id: ConnId, bytes: Vec<u8>) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if let ConnState::Reading { out, .. } = &mut conn.state {
            out.extend_from_slice(&bytes);
        }
        if let Err(err) = self.flush_need(id) {
            log::warn!(
                "cannot answer the handshake of {}: {err}",
                conn_peer(self, id)
            );
            self.close(id);
            return false;
        }
        true
    }

    /// `out` as the connection must send it: sealed into frames on a
    /// channel, as it is without one. None (and the connection closed) if
    /// sealing failed.
    pub(super) fn seal(&mut self, id: ConnId, out: Vec<u8>) -> Option<Vec<u8>> {
        let conn = self.conns.get_mut(&id)?;
        let Some(channel) = conn.channel.as_mut() else {
            return Some(out);
        };
        let mut sealed = Vec::new();
        match channel.seal(&out, &mut sealed) {
            Ok(()) => Some(sealed),
            Err(err) => {
                log::warn!("cannot send to {}: {err}", conn.peer);
                self.close(id);
                None
            }
        }
    }
}

fn conn_peer(server: &Server, id: ConnId) -> String {
    server
        .conns
        .get(&id)
        .map(|c| c.peer.clone())
        .unwrap_or_default()
}
