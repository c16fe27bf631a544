//! The keys of the authenticated channel: X25519 key files, the one-line
//! public key (`distcc-rs-x25519 BASE64 [COMMENT]`), its short fingerprint
//! for logs, and a daemon's `--auth-keys` list (docs/trust.md).
//!
//! A private key file holds one line, `distcc-rs-x25519-private BASE64`;
//! its public key is derived from it, never stored beside it. Key material
//! never goes into a log or an error message: only the fingerprint does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The first word of a public key line.
pub const PUBLIC_WORD: &str = "distcc-rs-x25519";
/// The first word of a private key file's line.
pub const PRIVATE_WORD: &str = "distcc-rs-x25519-private";
/// X25519 keys are 32 bytes.
pub const KEY_LEN: usize = 32;
/// The most a key file or an `--auth-keys` file may hold.
const MAX_FILE: usize = 1 << 20;

/// A private key: 32 bytes, wiped from memory when dropped.
pub struct PrivateKey([u8; KEY_LEN]);

/// A public key, with the comment of the line it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub bytes: [u8; KEY_LEN],
    pub comment: String,
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        // Volatile writes, so the wipe is not optimised away.
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned byte of our own array.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl PrivateKey {
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A new key from the system's random source.
    pub fn generate() -> Result<PrivateKey, String> {
        let pair = crate::channel::builder(crate::channel::Suite::ChaChaPoly)
            .generate_keypair()
            .map_err(|e| format!("cannot generate a key: {e}"))?;
        let bytes: [u8; KEY_LEN] = pair.private[..]
            .try_into()
            .map_err(|_| "cannot generate a key: wrong length".to_string())?;
        Ok(PrivateKey(bytes))
    }

    /// The public half, derived through a Noise handshake in memory.
    pub fn public(&self, comment: &str) -> Result<PublicKey, String> {
        let bytes = crate::channel::public_of(self)?;
        Ok(PublicKey {
            bytes,
            comment: comment.to_string(),
        })
    }

    /// The key file's text.
    pub fn to_line(&self) -> String {
        format!("{PRIVATE_WORD} {}\n", base64_encode(&self.0))
    }

    /// Reads a private key file's text.
    pub fn from_text(text: &str) -> Result<PrivateKey, String> {
        let mut words = text.split_ascii_whitespace();
        if words.next() != Some(PRIVATE_WORD) {
            return Err(format!(
                "not a distcc-rs private key (no \"{PRIVATE_WORD}\")"
            ));
        }
        let bytes = words
            .next()
            .and_then(base64_decode)
            .and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
            .ok_or_else(|| "a damaged private key".to_string())?;
        Ok(PrivateKey(bytes))
    }

    /// Reads the private key file at `path`, which must not be readable by
    /// group or others (as ssh insists).
    pub fn load(path: &Path) -> Result<PrivateKey, String> {
        let shown = path.display();
        let file = File::open(path).map_err(|e| format!("cannot open key {shown}: {e}"))?;
        let mode = file
            .metadata()
            .map_err(|e| format!("cannot read key {shown}: {e}"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "key {shown} is readable by others (mode {:o}); chmod 600 it",
                mode & 0o777
            ));
        }
        let text = read_limited(file).map_err(|e| format!("cannot read key {shown}: {e}"))?;
        PrivateKey::from_text(&text).map_err(|e| format!("key {shown}: {e}"))
    }

    /// Writes a new key file at `path` (mode 0600), never over an existing file.
    pub fn save_new(&self, path: &Path) -> Result<(), String> {
        let shown = path.display();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => format!("{shown} already exists; not overwritten"),
                _ => format!("cannot create {shown}: {e}"),
            })?;
        file.write_all(self.to_line().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {shown}: {e}"))
    }
}

impl PublicKey {
    /// The one-line form a user pastes into an `--auth-keys` file.
    pub fn to_line(&self) -> String {
        let key = base64_encode(&self.bytes);
        if self.comment.is_empty() {
            format!("{PUBLIC_WORD} {key}")
        } else {
            format!("{PUBLIC_WORD} {key} {}", self.comment)
        }
    }

    /// Reads `distcc-rs-x25519 BASE64 [COMMENT]`.
    pub fn from_line(line: &str) -> Result<PublicKey, String> {
        let line = line.trim();
        let (word, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
        if word != PUBLIC_WORD {
            return Err(format!("not a distcc-rs public key (no \"{PUBLIC_WORD}\")"));
        }
        let rest = rest.trim_start();
        let (key, comment) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let bytes = base64_decode(key)
            .and_then(|b| <[u8; KEY_LEN]>::try_from(b).ok())
            .ok_or_else(|| "a damaged public key".to_string())?;
        Ok(PublicKey {
            bytes,
            comment: comment.trim().to_string(),
        })
    }

    /// Reads a public key file (`FILE.pub`): its first line that is not a comment.
    pub fn load(path: &Path) -> Result<PublicKey, String> {
        let shown = path.display();
        let text = File::open(path)
            .and_then(read_limited)
            .map_err(|e| format!("cannot read public key {shown}: {e}"))?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| format!("{shown} holds no public key"))?;
        PublicKey::from_line(line).map_err(|e| format!("{shown}: {e}"))
    }

    /// `SHA256:` and the first 12 characters of the key's hash in base64:
    /// enough to tell keys apart in a log, nothing to attack.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.bytes)
    }
}

/// The fingerprint of the raw public key `bytes`.
pub fn fingerprint(bytes: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(bytes);
    let text = base64_encode(&hash);
    format!("SHA256:{}", &text[..12])
}

/// A daemon's accepted client keys (`--auth-keys`).
#[derive(Clone, Debug, Default)]
pub struct AuthKeys {
    keys: Vec<PublicKey>,
}

impl AuthKeys {
    /// Reads one public key per line; empty lines and `#` comments are skipped.
    /// A bad line is an error naming its number.
    pub fn parse(text: &str) -> Result<AuthKeys, String> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = PublicKey::from_line(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            keys.push(key);
        }
        Ok(AuthKeys { keys })
    }

    pub fn load(path: &Path) -> Result<AuthKeys, String> {
        let shown = path.display();
        let text = File::open(path)
            .and_then(read_limited)
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        AuthKeys::parse(&text).map_err(|e| format!("{shown}: {e}"))
    }

    /// The accepted key equal to `bytes`, if there is one.
    pub fn find(&self, bytes: &[u8]) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.bytes[..] == *bytes)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A file's text, at most [`MAX_FILE`] bytes.
fn read_limited(file: File) -> io::Result<String> {
    let mut text = String::new();
    file.take(MAX_FILE as u64 + 1).read_to_string(&mut text)?;
    if text.len() > MAX_FILE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
    }
    Ok(text)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding (RFC 4648).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; None for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            let v = ALPHABET.iter().position(|&a| a == c)? as u32;
            n = (n << 6) | v;
        }
        n <<= 6 * pad as u32;
        let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Padding bits must be zero, so that one key has one spelling.
        if got[3 - pad..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&got[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_rejects_bad_text() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64_encode(&bytes);
            assert_eq!(base64_decode(&text), Some(bytes));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        for bad in ["Zm8", "Zm==Zm8=", "Zm9=", "Z!8=", "Z==="] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_round_trip_through_their_lines() {
        let key = PrivateKey::generate().unwrap();
        let again = PrivateKey::from_text(&key.to_line()).unwrap();
        assert_eq!(key.bytes(), again.bytes());
        let public = key.public("me@here").unwrap();
        assert_eq!(public, again.public("me@here").unwrap());
        let line = public.to_line();
        assert!(line.starts_with("distcc-rs-x25519 ") && line.ends_with(" me@here"));
        assert_eq!(PublicKey::from_line(&line).unwrap(), public);
        let other = PrivateKey::generate().unwrap().public("").unwrap();
        assert_ne!(other.bytes, public.bytes);
        assert_ne!(other.fingerprint(), public.fingerprint());
        assert_eq!(public.fingerprint().len(), "SHA256:".len() + 12);
    }

    #[test]
    fn auth_keys_skip_comments_and_name_a_bad_line() {
        let a = PrivateKey::generate().unwrap().public("a").unwrap();
        let b = PrivateKey::generate().unwrap().public("").unwrap();
        let text = format!("# accepted\n\n{}\n  {}  \n", a.to_line(), b.to_line());
        let keys = AuthKeys::parse(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.find(&a.bytes).unwrap().comment, "a");
        assert!(keys.find(&[0; 32]).is_none());
        let err = AuthKeys::parse(&format!("{}\nssh-ed25519 AAAA x\n", a.to_line())).unwrap_err();
        assert!(
            err.starts_with("line 2: not a distcc-rs public key"),
            "{err}"
        );
        assert!(PublicKey::from_line("distcc-rs-x25519 Zm8=").is_err());
    }
}
