//! The authenticated, encrypted channel between distcc-rs peers: a Noise
//! XK handshake (`Noise_XK_25519_AESGCM_BLAKE2s` or
//! `Noise_XK_25519_ChaChaPoly_BLAKE2s`, the `snow` crate), then the distcc
//! byte stream in length-prefixed frames (docs/trust.md).
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
//!
//! The client picks the cipher ([`Suite::preferred`]): AES-256-GCM on
//! x86_64, ChaCha20-Poly1305 elsewhere (a G4, armv7 boards: no AES
//! instructions). The server reads the first message as either suite; the
//! protocol name is in the handshake hash, so the suite cannot be changed
//! on the way.

use crate::keys::{PrivateKey, PublicKey, KEY_LEN};

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

/// The channel's two cipher suites. Both use X25519 and BLAKE2s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    AesGcm,
    ChaChaPoly,
}

impl Suite {
    /// The Noise protocol name.
    pub fn pattern(self) -> &'static str {
        match self {
            Suite::AesGcm => "Noise_XK_25519_AESGCM_BLAKE2s",
            Suite::ChaChaPoly => "Noise_XK_25519_ChaChaPoly_BLAKE2s",
        }
    }

    /// The suite this machine seals fastest: AES-256-GCM on x86_64, whose
    /// ciphers come from ring (AES-NI and VAES code, and a constant-time
    /// SSSE3 fallback on the rare CPU without AES-NI); ChaCha20-Poly1305
    /// everywhere else (a G4, armv7), where AES would be slow software.
    /// It asks the CPU nothing itself: each `cpuid` traps in a VM (7 us
    /// here), and ring has already asked.
    pub fn preferred() -> Suite {
        if cfg!(target_arch = "x86_64") {
            Suite::AesGcm
        } else {
            Suite::ChaChaPoly
        }
    }

    /// The cipher's name, for the log.
    pub fn cipher(self) -> &'static str {
        match self {
            Suite::AesGcm => "AES-256-GCM",
            Suite::ChaChaPoly => "ChaCha20-Poly1305",
        }
    }

    fn other(self) -> Suite {
        match self {
            Suite::AesGcm => Suite::ChaChaPoly,
            Suite::ChaChaPoly => Suite::AesGcm,
        }
    }
}

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

/// A builder for one of this channel's Noise protocols.
pub fn builder(suite: Suite) -> snow::Builder<'static> {
    snow::Builder::new(
        suite
            .pattern()
            .parse()
            .expect("a valid Noise protocol name"),
    )
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

/// The body length a frame at the start of `bytes` announces, once its
/// 2-byte length is in.
fn frame_len(bytes: &[u8]) -> Option<usize> {
    match bytes {
        [a, b, ..] => Some(usize::from(u16::from_be_bytes([*a, *b]))),
        _ => None,
    }
}

/// The body of the frame at the start of `bytes` and the bytes it takes
/// on the wire, if it is all in.
fn whole_frame(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = frame_len(bytes)?;
    Some((bytes.get(2..2 + len)?, 2 + len))
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
        let (body, taken) = whole_frame(&self.buf[self.start..])?;
        self.start += taken;
        Some(body)
    }

    /// The first bytes not yet taken as frames.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// How many more bytes the frame begun in [`Frames::pending`] needs
    /// before its length, or its body, is all in.
    fn missing(&self) -> usize {
        let pending = self.pending();
        match frame_len(pending) {
            Some(len) => (2 + len).saturating_sub(pending.len()),
            // No frame begun, or only the first byte of its length.
            None => pending.len(),
        }
    }
}

/// Frames read straight into a fixed buffer, for a blocking reader: only
/// the frame left unfinished at the end of a read is moved (to the front),
/// and each whole frame is opened where it lies.
#[derive(Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameBuffer {
    /// A buffer of `size` bytes, at least two frames' worth.
    pub fn new(size: usize) -> FrameBuffer {
        FrameBuffer {
            buf: vec![0; size.max(2 * (MAX_FRAME + 2))],
            start: 0,
            end: 0,
        }
    }

    /// Room for the next read, after the unfinished frame is moved to the
    /// front; never empty, as a frame takes at most half the buffer.
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Takes `n` bytes just read into [`FrameBuffer::space`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next whole frame's body, if it is all in.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        let (body, taken) = whole_frame(&self.buf[self.start..self.end])?;
        self.start += taken;
        Some(body)
    }
}

/// Opens every whole frame of `frames` and then of `raw`, appending the
/// plaintext to `plain`, and keeps the last frame begun for the next call.
/// Only a frame split between two reads is copied: the others are opened
/// where `raw` holds them.
fn open_stream(
    transport: &mut Transport,
    frames: &mut Frames,
    mut raw: &[u8],
    plain: &mut Opened,
) -> Result<(), ChannelError> {
    loop {
        while let Some(frame) = frames.next_frame() {
            transport.open_onto(frame, plain)?;
        }
        let take = frames.missing().min(raw.len());
        if take == 0 {
            break;
        }
        frames.push(&raw[..take]);
        raw = &raw[take..];
    }
    while let Some((frame, taken)) = whole_frame(raw) {
        transport.open_onto(frame, plain)?;
        raw = &raw[taken..];
    }
    frames.push(raw);
    Ok(())
}

/// Plaintext opened from transport frames, in a buffer that is zeroed once
/// and then reused. snow opens a frame only into an initialised slice; a
/// `Vec` cleared and grown again for each frame would be zeroed each time
/// first (a memset of every byte received).
#[derive(Default)]
pub struct Opened {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Opened {
    /// Plaintext kept in `buf`, whose whole length is room.
    pub fn new(buf: Vec<u8>) -> Opened {
        Opened {
            buf,
            start: 0,
            end: 0,
        }
    }

    /// Drops the first `n` bytes of the plaintext.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    /// Drops all of the plaintext; the room stays.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// The buffer's size: it grows only for more than that at once.
    pub fn room(&self) -> usize {
        self.buf.len()
    }

    /// `n` bytes of room after the plaintext; the buffer grows (and only
    /// its new bytes are zeroed) when it has less.
    fn space(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() - self.end < n {
            let want = (self.end + n).max(2 * self.buf.len());
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..self.end + n]
    }
}

impl std::ops::Deref for Opened {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

/// The bytes `plain` bytes take sealed as transport frames.
pub fn sealed_len(plain: usize) -> usize {
    plain + plain.div_ceil(MAX_PLAIN) * (2 + TAG)
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
        let head = out.len();
        out.resize(head + sealed_len(plain.len()), 0);
        let n = self.seal_into(plain, &mut out[head..])?;
        out.truncate(head + n);
        Ok(())
    }

    /// Seals `plain` as transport frames into the front of `out`, which
    /// must hold [`sealed_len`] of it; returns the bytes written. A buffer
    /// kept for a connection is not zeroed again for each frame.
    pub fn seal_into(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, ChannelError> {
        let mut at = 0;
        for chunk in plain.chunks(MAX_PLAIN) {
            let room = out
                .get_mut(at + 2..at + 2 + chunk.len() + TAG)
                .ok_or_else(|| ChannelError("no room to seal a frame".into()))?;
            let n = self
                .state
                .write_message(chunk, room)
                .map_err(|e| failed("cannot encrypt", e))?;
            out[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
            at += 2 + n;
        }
        Ok(at)
    }

    /// Opens one transport frame into the front of `out`, which must be at
    /// least as long as the frame; returns the plaintext's length.
    pub fn open_into(&mut self, frame: &[u8], out: &mut [u8]) -> Result<usize, ChannelError> {
        debug_assert!(out.len() >= frame.len());
        self.state
            .read_message(frame, out)
            .map_err(|_| ChannelError("a frame failed its integrity check".into()))
    }

    /// Opens one transport frame onto the end of `plain`. Any change to a
    /// frame, or a frame out of order, fails here.
    pub fn open_onto(&mut self, frame: &[u8], plain: &mut Opened) -> Result<(), ChannelError> {
        let n = self.open_into(frame, plain.space(frame.len()))?;
        plain.end += n;
        Ok(())
    }
}

/// The client's side between its first message and the server's answer.
pub struct ClientHandshake {
    state: snow::HandshakeState,
}

impl ClientHandshake {
    /// Starts a handshake as `own` with the server whose key is `server`,
    /// in this machine's preferred suite; returns the first message, framed.
    pub fn start(
        own: &PrivateKey,
        server: &PublicKey,
    ) -> Result<(ClientHandshake, Vec<u8>), ChannelError> {
        ClientHandshake::start_with(own, server, Suite::preferred())
    }

    /// [`ClientHandshake::start`] in the suite `suite`.
    pub fn start_with(
        own: &PrivateKey,
        server: &PublicKey,
        suite: Suite,
    ) -> Result<(ClientHandshake, Vec<u8>), ChannelError> {
        let mut state = builder(suite)
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
    /// Waiting for the client's first message, ready for it in either
    /// suite, this machine's preferred one first.
    Hello(Vec<(Suite, snow::HandshakeState)>),
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
    /// The suite the client's first message was written in.
    suite: Option<Suite>,
}

impl ServerChannel {
    pub fn new(key: &PrivateKey) -> Result<ServerChannel, ChannelError> {
        let preferred = Suite::preferred();
        let states = [preferred, preferred.other()]
            .into_iter()
            .map(|suite| {
                let state = builder(suite)
                    .local_private_key(key.bytes())
                    .prologue(PROLOGUE)
                    .build_responder()
                    .map_err(|e| failed("cannot start a handshake", e))?;
                Ok((suite, state))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ServerChannel {
            frames: Frames::default(),
            stage: Stage::Hello(states),
            suite: None,
        })
    }

    /// The client's suite, once its first message is read.
    pub fn suite(&self) -> Option<Suite> {
        self.suite
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
        plain: &mut Opened,
    ) -> Result<Option<[u8; KEY_LEN]>, ChannelError> {
        let result = if let Stage::Open(transport) = &mut self.stage {
            open_stream(transport, &mut self.frames, raw, plain).map(|()| None)
        } else {
            self.frames.push(raw);
            self.step(send, plain)
        };
        if result.is_err() {
            self.stage = Stage::Failed;
        }
        result
    }

    fn step(
        &mut self,
        send: &mut Vec<u8>,
        plain: &mut Opened,
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
                Stage::Hello(states) => {
                    let (suite, state) = answer(states, frame, send)?;
                    self.suite = Some(suite);
                    self.stage = Stage::Finish(state);
                }
                Stage::Finish(state) => {
                    let (transport, client) = finish(*state, frame)?;
                    self.stage = Stage::Proven(transport);
                    return Ok(Some(client));
                }
                Stage::Open(mut transport) => {
                    transport.open_onto(frame, plain)?;
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
        if frame_len(pending).is_some_and(|len| len != want) {
            return Err(ChannelError("not a distcc-rs handshake".into()));
        }
        Ok(())
    }

    /// Lets the proved client's frames be opened, and opens those already in.
    pub fn admit(&mut self, plain: &mut Opened) -> Result<(), ChannelError> {
        if let Stage::Proven(transport) = std::mem::replace(&mut self.stage, Stage::Failed) {
            self.stage = Stage::Open(transport);
        }
        let mut send = Vec::new();
        self.input(&[], &mut send, plain).map(|_| ())
    }

    /// Appends `plain` to `out` as transport frames.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), ChannelError> {
        self.transport()?.seal(plain, out)
    }

    /// [`Transport::seal_into`] on this channel.
    pub fn seal_into(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, ChannelError> {
        self.transport()?.seal_into(plain, out)
    }

    fn transport(&mut self) -> Result<&mut Transport, ChannelError> {
        match &mut self.stage {
            Stage::Open(transport) => Ok(transport),
            _ => Err(ChannelError("the channel is not open".into())),
        }
    }
}

/// Reads the client's first message, in whichever suite it was written,
/// and writes the answer, framed, to `send`.
fn answer(
    states: Vec<(Suite, snow::HandshakeState)>,
    hello: &[u8],
    send: &mut Vec<u8>,
) -> Result<(Suite, Box<snow::HandshakeState>), ChannelError> {
    let mut buf = [0u8; 256];
    let (suite, mut state) = states
        .into_iter()
        .find_map(|(suite, mut state)| {
            let read = state.read_message(hello, &mut buf);
            read.is_ok().then_some((suite, state))
        })
        .ok_or_else(|| {
            ChannelError("the client's handshake is not for this daemon's key".into())
        })?;
    let n = state
        .write_message(&[], &mut buf)
        .map_err(|e| failed("cannot answer the handshake", e))?;
    put_frame(send, &buf[..n]);
    Ok((suite, Box::new(state)))
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
        for suite in [Suite::AesGcm, Suite::ChaChaPoly] {
            handshake_and_data_in(suite);
        }
    }

    /// A client in `suite` against a server ready for either.
    fn handshake_and_data_in(suite: Suite) {
        let ((server, server_pub), (client, client_pub)) = (pair(), pair());
        let (hs, hello) = ClientHandshake::start_with(&client, &server_pub, suite).unwrap();
        let mut channel = ServerChannel::new(&server).unwrap();
        let (mut send, mut plain) = (Vec::new(), Opened::default());
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
        assert_eq!(&plain[..], &big[..]);
        let mut back = Vec::new();
        channel.seal(b"DONE", &mut back).unwrap();
        let mut got = Opened::default();
        transport.open_onto(&bodies(&back)[0], &mut got).unwrap();
        assert_eq!(&got[..], b"DONE");
    }

    #[test]
    fn an_open_channel_takes_frames_in_any_pieces() {
        let (mut channel, mut transport) = open_pair();
        let (mut send, mut plain) = (Vec::new(), Opened::default());
        let big: Vec<u8> = (0..400_000u32).map(|i| (i * 7) as u8).collect();
        let mut stream = Vec::new();
        transport.seal(&big, &mut stream).unwrap();
        // Pieces that split a length, split a body, hold several frames.
        let mut rest = stream.as_slice();
        for size in [1, 1, 5, 65536, 200_000, 3].into_iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at(size.min(rest.len()));
            channel.input(piece, &mut send, &mut plain).unwrap();
            rest = after;
        }
        assert_eq!(&plain[..], &big[..]);
    }

    /// An open server channel and the client's transport.
    fn open_pair() -> (ServerChannel, Transport) {
        let ((server, server_pub), (client, _)) = (pair(), pair());
        let (hs, hello) = ClientHandshake::start(&client, &server_pub).unwrap();
        let mut channel = ServerChannel::new(&server).unwrap();
        let (mut send, mut plain) = (Vec::new(), Opened::default());
        channel.input(&hello, &mut send, &mut plain).unwrap();
        let (finish_msg, transport) = hs.finish(&bodies(&send)[0]).unwrap();
        channel.input(&finish_msg, &mut send, &mut plain).unwrap();
        channel.admit(&mut plain).unwrap();
        (channel, transport)
    }

    #[test]
    fn opened_plaintext_reuses_its_room_and_a_failed_frame_adds_nothing() {
        let (mut channel, mut transport) = open_pair();
        let mut plain = Opened::new(vec![0; 3 * MAX_FRAME]);
        let mut send = Vec::new();
        for round in 0..3u8 {
            let body = vec![round; 2 * MAX_PLAIN + 10];
            let mut stream = Vec::new();
            transport.seal(&body, &mut stream).unwrap();
            assert_eq!(stream.len(), sealed_len(body.len()));
            channel.input(&stream, &mut send, &mut plain).unwrap();
            assert_eq!(&plain[..], &body[..]);
            plain.consume(10);
            assert_eq!(&plain[..], &body[10..]);
            plain.clear();
            assert!(plain.is_empty());
            assert_eq!(plain.room(), 3 * MAX_FRAME, "round {round}: the room grew");
        }
        // A frame that fails its check leaves the plaintext as it was.
        let mut stream = Vec::new();
        transport.seal(b"tampered", &mut stream).unwrap();
        stream[4] ^= 1;
        assert!(channel.input(&stream, &mut send, &mut plain).is_err());
        assert!(plain.is_empty());
    }

    #[test]
    fn sealing_into_too_small_a_buffer_fails_without_writing_past_it() {
        let (_, mut transport) = open_pair();
        let mut out = vec![0; sealed_len(100) - 1];
        assert!(transport.seal_into(&[7; 100], &mut out).is_err());
        let mut out = vec![0; sealed_len(100)];
        assert_eq!(transport.seal_into(&[7; 100], &mut out), Ok(out.len()));
    }

    #[test]
    fn a_stream_in_random_pieces_opens_whole_and_a_flipped_byte_anywhere_fails() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..20 {
            let (mut channel, mut transport) = open_pair();
            let big: Vec<u8> = (0..150_000 + round * 7919)
                .map(|i| (i * 31) as u8)
                .collect();
            let mut stream = Vec::new();
            transport.seal(&big, &mut stream).unwrap();
            let flipped = (round % 2 == 1).then(|| next(stream.len()));
            if let Some(at) = flipped {
                stream[at] ^= 0x01;
            }
            let (mut send, mut plain) = (Vec::new(), Opened::default());
            let mut rest = stream.as_slice();
            let mut failed = false;
            while !rest.is_empty() && !failed {
                let (piece, after) = rest.split_at(1 + next(rest.len().min(300_000)));
                failed = channel.input(piece, &mut send, &mut plain).is_err();
                rest = after;
            }
            match flipped {
                None => assert_eq!(&plain[..], &big[..], "round {round}"),
                // A changed length or body: an error, or (a length made
                // longer) a frame still waiting; never the wrong bytes.
                Some(_) => assert!(failed || plain.len() < big.len(), "round {round}"),
            }
            assert!(big.starts_with(&plain), "round {round}: wrong plaintext");
        }
    }

    #[test]
    fn a_frame_buffer_gives_whole_frames_from_reads_of_any_size() {
        let (_, mut transport) = open_pair();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 13) as u8).collect();
        let mut stream = Vec::new();
        transport.seal(&big, &mut stream).unwrap();
        let want = bodies(&stream);
        let mut inbox = FrameBuffer::new(0);
        let (mut got, mut rest) = (Vec::new(), stream.as_slice());
        for size in [3, 70_000, 1, 131_074, 65_537].into_iter().cycle() {
            while let Some(frame) = inbox.next_frame() {
                got.push(frame.to_vec());
            }
            if rest.is_empty() {
                break;
            }
            let space = inbox.space();
            let n = size.min(space.len()).min(rest.len());
            space[..n].copy_from_slice(&rest[..n]);
            inbox.filled(n);
            rest = &rest[n..];
        }
        assert_eq!(got, want);
    }

    #[test]
    fn a_wrong_pinned_key_a_plain_request_and_a_flipped_byte_fail() {
        let ((server, _), (client, _), (_, other_pub)) = (pair(), pair(), pair());
        let (_, hello) = ClientHandshake::start(&client, &other_pub).unwrap();
        let mut channel = ServerChannel::new(&server).unwrap();
        let (mut send, mut plain) = (Vec::new(), Opened::default());
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
