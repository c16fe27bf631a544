//! The authenticated, encrypted channel between distcc-rs peers: a Noise
//! XK handshake (`Noise_XK_25519_ChaChaPoly_BLAKE2s`, the `snow` crate),
//! then the distcc byte stream in length-prefixed frames (docs/trust.md).
//!
//! Everything here is sans-I/O: the daemon feeds it what its non-blocking
//! sockets read, the client what its blocking reads return. On the wire
//! every Noise message is a frame: a 2-byte big-endian length, then the
//! message (at most 65535 bytes, so at most 65519 bytes of plaintext).
//!
//! Why XK: the client pins the server's key (`,key=`), so the first
//! message is already encrypted to the server, and the client shows its
//! own key only in the third message, to a server that has proved its key.
//! The server learns the client's key at the third message and checks it
//! against `--auth-keys` before it opens one transport frame. The transport
//! keys mix the server's fresh ephemeral key in, so a recorded session
//! played again decrypts to nothing on the server: it runs nothing.

use crate::keys::{PrivateKey, PublicKey, KEY_LEN};

/// The Noise protocol name.
pub const PATTERN: &str = "Noise_XK_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake hash: both sides must speak this channel's version.
const PROLOGUE: &[u8] = b"distcc-rs channel 1";
/// The largest Noise message, hence frame body.
pub const MAX_FRAME: usize = 65535;
/// The authentication tag each message carries.
const TAG: usize = 16;
/// The most plaintext one transport frame carries.
pub const MAX_PLAIN: usize = MAX_FRAME - TAG;
/// XK's first message with an empty payload: an ephemeral key and a tag.
const HELLO_LEN: usize = KEY_LEN + TAG;
/// XK's third message with an empty payload: the encrypted static key and two tags.
const FINISH_LEN: usize = KEY_LEN + 2 * TAG;

/// Why the channel failed. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError(pub String);

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn failed(what: &str, err: snow::Error) -> ChannelError {
    ChannelError(format!("{what}: {err}"))
}

/// A builder for this channel's Noise protocol.
pub fn builder() -> snow::Builder<'static> {
    snow::Builder::new(PATTERN.parse().expect("a valid Noise protocol name"))
}

/// The public key of `key`: an NX handshake in memory, whose responder
/// sends its static key, which the initiator reads back.
pub fn public_of(key: &PrivateKey) -> Result<[u8; KEY_LEN], String> {
    let run = || -> Result<[u8; KEY_LEN], snow::Error> {
        let params: snow::params::NoiseParams = "Noise_NX_25519_ChaChaPoly_BLAKE2s"
            .parse()
            .expect("a valid Noise protocol name");
        let mut responder = snow::Builder::new(params.clone())
            .local_private_key(key.bytes())
            .build_responder()?;
        let mut initiator = snow::Builder::new(params).build_initiator()?;
        let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
        let n = initiator.write_message(&[], &mut a)?;
        responder.read_message(&a[..n], &mut b)?;
        let n = responder.write_message(&[], &mut a)?;
        initiator.read_message(&a[..n], &mut b)?;
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(initiator.get_remote_static().unwrap_or(&[0; KEY_LEN]));
        Ok(out)
    };
    run().map_err(|e| format!("cannot derive the public key: {e}"))
}

/// Appends `message` to `out` as one frame.
fn put_frame(out: &mut Vec<u8>, message: &[u8]) {
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
}

/// Reassembles frames from the bytes of a stream.
#[derive(Default)]
pub struct Frames {
    buf: Vec<u8>,
    start: usize,
}

impl Frames {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame's body, if it is all in.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        let pending = &self.buf[self.start..];
        let len = usize::from(u16::from_be_bytes([*pending.first()?, *pending.get(1)?]));
        if pending.len() < 2 + len {
            return None;
        }
        let body = self.start + 2;
        self.start = body + len;
        Some(&self.buf[body..body + len])
    }

    /// The first bytes not yet taken as frames.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// The channel after the handshake: seals and opens transport frames.
pub struct Transport {
    state: snow::TransportState,
}

impl Transport {
    fn new(state: snow::TransportState) -> Transport {
        Transport { state }
    }

    /// Appends `plain` to `out` as transport frames.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), ChannelError> {
        out.reserve(plain.len() + plain.len().div_ceil(MAX_PLAIN) * (TAG + 2));
        for chunk in plain.chunks(MAX_PLAIN) {
            let head = out.len();
            out.resize(head + 2 + chunk.len() + TAG, 0);
            let n = self
                .state
                .write_message(chunk, &mut out[head + 2..])
                .map_err(|e| failed("cannot encrypt", e))?;
            out[head..head + 2].copy_from_slice(&(n as u16).to_be_bytes());
            out.truncate(head + 2 + n);
        }
        Ok(())
    }

    /// Opens one transport frame, appending its plaintext to `out`. Any
    /// change to a frame, or a frame out of order, fails here.
    pub fn open(&mut self, frame: &[u8], out: &mut Vec<u8>) -> Result<(), ChannelError> {
        let start = out.len();
        out.resize(start + frame.len(), 0);
        match self.state.read_message(frame, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(ChannelError("a frame failed its integrity check".into()))
            }
        }
    }
}

/// The client's side between its first message and the server's answer.
pub struct ClientHandshake {
    state: snow::HandshakeState,
}

impl ClientHandshake {
    /// Starts a handshake as `own` with the server whose key is `server`;
    /// returns the first message, framed.
    pub fn start(
        own: &PrivateKey,
        server: &PublicKey,
    ) -> Result<(ClientHandshake, Vec<u8>), ChannelError> {
        let mut state = builder()
            .local_private_key(own.bytes())
            .remote_public_key(&server.bytes)
            .prologue(PROLOGUE)
            .build_initiator()
            .map_err(|e| failed("cannot start the handshake", e))?;
        let mut buf = [0u8; 256];
        let n = state
            .write_message(&[], &mut buf)
            .map_err(|e| failed("cannot start the handshake", e))?;
        let mut out = Vec::with_capacity(n + 2);
        put_frame(&mut out, &buf[..n]);
        Ok((ClientHandshake { state }, out))
    }

    /// Reads the server's answer (a frame's body): it proves the server
    /// holds the pinned key. Returns the third message, framed, and the transport.
    pub fn finish(mut self, answer: &[u8]) -> Result<(Vec<u8>, Transport), ChannelError> {
        let mut buf = [0u8; 256];
        self.state
            .read_message(answer, &mut buf)
            .map_err(|_| ChannelError("the server did not prove the key in ,key=".into()))?;
        let n = self
            .state
            .write_message(&[], &mut buf)
            .map_err(|e| failed("cannot finish the handshake", e))?;
        let mut out = Vec::with_capacity(n + 2);
        put_frame(&mut out, &buf[..n]);
        let transport = self
            .state
            .into_transport_mode()
            .map_err(|e| failed("cannot finish the handshake", e))?;
        Ok((out, Transport::new(transport)))
    }
}

/// The most bytes a server-side handshake message may take.
pub const MAX_HANDSHAKE_FRAME: usize = 2 + FINISH_LEN;

enum Stage {
    /// Waiting for the client's first message.
    Hello(Box<snow::HandshakeState>),
    /// Answered; waiting for the client's key.
    Finish(Box<snow::HandshakeState>),
    /// The client proved a key, not yet admitted: nothing more is opened.
    Proven(Transport),
    Open(Transport),
    Failed,
}

/// The daemon's side of one connection's channel.
pub struct ServerChannel {
    frames: Frames,
    stage: Stage,
    /// A plaintext buffer the caller borrows, so a large request is not
    /// an allocation per read.
    spare: Vec<u8>,
}

impl ServerChannel {
    pub fn new(key: &PrivateKey) -> Result<ServerChannel, ChannelError> {
        let state = builder()
            .local_private_key(key.bytes())
            .prologue(PROLOGUE)
            .build_responder()
            .map_err(|e| failed("cannot start a handshake", e))?;
        Ok(ServerChannel {
            frames: Frames::default(),
            stage: Stage::Hello(Box::new(state)),
            spare: Vec::new(),
        })
    }

    /// An empty buffer for [`ServerChannel::input`]'s plaintext.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.spare)
    }

    /// Gives a buffer back for the next read.
    pub fn keep_buffer(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.spare = buf;
    }

    /// True once the client's key was proved and admitted.
    pub fn is_open(&self) -> bool {
        matches!(self.stage, Stage::Open(_))
    }

    /// Feeds bytes read from the client. The handshake's answer goes to
    /// `send`, opened transport plaintext to `plain`. Returns the client's
    /// public key once, when the handshake proves it; no byte after that
    /// is opened until [`ServerChannel::admit`].
    pub fn input(
        &mut self,
        raw: &[u8],
        send: &mut Vec<u8>,
        plain: &mut Vec<u8>,
    ) -> Result<Option<[u8; KEY_LEN]>, ChannelError> {
        self.frames.push(raw);
        let result = self.step(send, plain);
        if result.is_err() {
            self.stage = Stage::Failed;
        }
        result
    }

    fn step(
        &mut self,
        send: &mut Vec<u8>,
        plain: &mut Vec<u8>,
    ) -> Result<Option<[u8; KEY_LEN]>, ChannelError> {
        loop {
            if let Stage::Hello(_) | Stage::Finish(_) = self.stage {
                self.check_handshake_bytes()?;
            }
            if let Stage::Proven(_) = self.stage {
                return Ok(None);
            }
            let Some(frame) = self.frames.next_frame() else {
                return Ok(None);
            };
            match std::mem::replace(&mut self.stage, Stage::Failed) {
                Stage::Hello(state) => self.stage = Stage::Finish(answer(state, frame, send)?),
                Stage::Finish(state) => {
                    let (transport, client) = finish(*state, frame)?;
                    self.stage = Stage::Proven(transport);
                    return Ok(Some(client));
                }
                Stage::Open(mut transport) => {
                    transport.open(frame, plain)?;
                    self.stage = Stage::Open(transport);
                }
                Stage::Proven(_) | Stage::Failed => {
                    return Err(ChannelError("the channel has failed".into()))
                }
            }
        }
    }

    /// Fails early on bytes that cannot be the handshake's next message:
    /// a plain distcc request, or a frame of the wrong length.
    fn check_handshake_bytes(&self) -> Result<(), ChannelError> {
        let pending = self.frames.pending();
        if pending.len() >= 2 && pending.starts_with(b"DI") {
            return Err(ChannelError(
                "a plain distcc request, not a handshake (a distcc 3.4 client?)".into(),
            ));
        }
        let want = match self.stage {
            Stage::Hello(_) => HELLO_LEN,
            _ => FINISH_LEN,
        };
        if pending.len() >= 2 && usize::from(u16::from_be_bytes([pending[0], pending[1]])) != want {
            return Err(ChannelError("not a distcc-rs handshake".into()));
        }
        Ok(())
    }

    /// Lets the proved client's frames be opened, and opens those already in.
    pub fn admit(&mut self, plain: &mut Vec<u8>) -> Result<(), ChannelError> {
        if let Stage::Proven(transport) = std::mem::replace(&mut self.stage, Stage::Failed) {
            self.stage = Stage::Open(transport);
        }
        let mut send = Vec::new();
        self.input(&[], &mut send, plain).map(|_| ())
    }

    /// Appends `plain` to `out` as transport frames.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), ChannelError> {
        match &mut self.stage {
            Stage::Open(transport) => transport.seal(plain, out),
            _ => Err(ChannelError("the channel is not open".into())),
        }
    }
}

/// Reads the client's first message and writes the answer, framed, to `send`.
fn answer(
    mut state: Box<snow::HandshakeState>,
    hello: &[u8],
    send: &mut Vec<u8>,
) -> Result<Box<snow::HandshakeState>, ChannelError> {
    let mut buf = [0u8; 256];
    state
        .read_message(hello, &mut buf)
        .map_err(|_| ChannelError("the client's handshake is not for this daemon's key".into()))?;
    let n = state
        .write_message(&[], &mut buf)
        .map_err(|e| failed("cannot answer the handshake", e))?;
    put_frame(send, &buf[..n]);
    Ok(state)
}

/// Reads the client's third message: its key, proved.
fn finish(
    mut state: snow::HandshakeState,
    message: &[u8],
) -> Result<(Transport, [u8; KEY_LEN]), ChannelError> {
    let mut buf = [0u8; 256];
    state
        .read_message(message, &mut buf)
        .map_err(|_| ChannelError("the client's key failed the handshake".into()))?;
    let mut client = [0u8; KEY_LEN];
    client.copy_from_slice(state.get_remote_static().unwrap_or(&[0; KEY_LEN]));
    let transport = state
        .into_transport_mode()
        .map_err(|e| failed("cannot finish the handshake", e))?;
    Ok((Transport::new(transport), client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (PrivateKey, PublicKey) {
        let key = PrivateKey::generate().unwrap();
        let public = key.public("").unwrap();
        (key, public)
    }

    /// The frame bodies in `bytes`.
    fn bodies(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Frames::default();
        frames.push(bytes);
        std::iter::from_fn(|| frames.next_frame().map(<[u8]>::to_vec)).collect()
    }

    #[test]
    fn a_handshake_proves_both_keys_and_carries_data_both_ways() {
        let ((server, server_pub), (client, client_pub)) = (pair(), pair());
        let (hs, hello) = ClientHandshake::start(&client, &server_pub).unwrap();
        let mut channel = ServerChannel::new(&server).unwrap();
        let (mut send, mut plain) = (Vec::new(), Vec::new());
        // Byte by byte: frames may arrive in any pieces.
        for b in &hello {
            assert_eq!(channel.input(&[*b], &mut send, &mut plain), Ok(None));
        }
        let (mut finish_msg, mut transport) = hs.finish(&bodies(&send)[0]).unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        transport.seal(&big, &mut finish_msg).unwrap();
        let proven = channel.input(&finish_msg, &mut send, &mut plain).unwrap();
        assert_eq!(proven, Some(client_pub.bytes));
        assert!(plain.is_empty(), "nothing opened before admission");
        channel.admit(&mut plain).unwrap();
        assert_eq!(plain, big);
        let mut back = Vec::new();
        channel.seal(b"DONE", &mut back).unwrap();
        let mut got = Vec::new();
        transport.open(&bodies(&back)[0], &mut got).unwrap();
        assert_eq!(got, b"DONE");
    }

    #[test]
    fn a_wrong_pinned_key_a_plain_request_and_a_flipped_byte_fail() {
        let ((server, _), (client, _), (_, other_pub)) = (pair(), pair(), pair());
        let (_, hello) = ClientHandshake::start(&client, &other_pub).unwrap();
        let mut channel = ServerChannel::new(&server).unwrap();
        let (mut send, mut plain) = (Vec::new(), Vec::new());
        assert!(channel.input(&hello, &mut send, &mut plain).is_err());
        assert!(send.is_empty());
        let mut channel = ServerChannel::new(&server).unwrap();
        let err = channel.input(b"DIST00000001", &mut send, &mut plain);
        assert!(err.unwrap_err().0.contains("distcc 3.4"));
        let server_pub = server.public("").unwrap();
        let (hs, hello) = ClientHandshake::start(&client, &server_pub).unwrap();
        let mut channel = ServerChannel::new(&server).unwrap();
        channel.input(&hello, &mut send, &mut plain).unwrap();
        let (mut rest, mut transport) = hs.finish(&bodies(&send)[0]).unwrap();
        channel.input(&rest, &mut send, &mut plain).unwrap();
        rest.clear();
        transport.seal(b"DIST00000001", &mut rest).unwrap();
        rest[5] ^= 1;
        channel.admit(&mut plain).unwrap();
        assert!(channel.input(&rest, &mut send, &mut plain).is_err());
        assert!(plain.is_empty());
    }
}
