//! The `key` applet: `distcc-rs key generate FILE` and `distcc-rs key public FILE`,
//! the keys of the encrypted channel (the formats are in `crate::keys`).

use std::path::{Path, PathBuf};

use argh::FromArgs;

use super::{stdout, Call, Error, Outcome, Status};
use crate::keys::PrivateKey;

/// distcc-rs key: make and show the keys of the encrypted channel between
/// distcc-rs peers (docs/trust.md). `generate FILE` writes a new private key
/// to FILE (mode 0600; an existing FILE is never replaced) and its one-line
/// public key to FILE.pub, and prints the public key. `public FILE` prints the
/// public key of the private key in FILE. A public key line reads
/// `distcc-rs-x25519 BASE64 [COMMENT]`: a daemon's --auth-keys file lists
/// its clients' lines, a client's `,key=PATH` names a file with the daemon's.
#[derive(FromArgs)]
#[argh(
    example = "distcc-rs key generate ~/.distcc/key",
    example = "distcc-rs key public /etc/distcc-rs/key"
)]
struct Options {
    /// generate or public
    #[argh(positional)]
    action: String,
    /// the private key file
    #[argh(positional)]
    file: PathBuf,
    /// the public key's comment (default: USER@HOST)
    #[argh(option)]
    comment: Option<String>,
}

pub fn main(call: Call) -> Outcome {
    let words = match super::utf8_words(&call.args) {
        Ok(words) => words,
        Err(arg) => {
            return Ok(Status::Usage(format!(
                "argument is not valid UTF-8: {arg:?}"
            )))
        }
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let o: Options = match super::parse_options(&[&call.command], &words) {
        Ok(o) => o,
        Err(outcome) => return outcome,
    };
    let comment = o.comment.unwrap_or_else(default_comment);
    if comment.contains(['\n', '\r']) {
        return Ok(Status::Usage("--comment must be one line".into()));
    }
    match o.action.as_str() {
        "generate" => generate(&o.file, &comment),
        "public" => public(&o.file, &comment),
        other => Ok(Status::Usage(format!(
            "unknown action '{other}': generate or public"
        ))),
    }
}

/// `USER@HOST`, as ssh-keygen's default comment.
fn default_comment() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "distcc-rs".into());
    let host = crate::sys::hostname().unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// Writes FILE and FILE.pub; refuses before writing anything if either exists.
fn generate(file: &Path, comment: &str) -> Outcome {
    let mut pub_name = file.as_os_str().to_owned();
    pub_name.push(".pub");
    let pub_path = PathBuf::from(pub_name);
    for path in [file, pub_path.as_path()] {
        if path.symlink_metadata().is_ok() {
            return Err(Error::failure(format!(
                "{} already exists; not overwritten",
                path.display()
            )));
        }
    }
    let key = PrivateKey::generate().map_err(Error::failure)?;
    let line = key.public(comment).map_err(Error::failure)?.to_line();
    key.save_new(file).map_err(Error::failure)?;
    std::fs::write(&pub_path, format!("{line}\n"))
        .map_err(|e| Error::failure(format!("cannot write {}: {e}", pub_path.display())))?;
    stdout::print(format!("{line}\n"))?;
    Ok(Status::OK)
}

fn public(file: &Path, comment: &str) -> Outcome {
    let key = PrivateKey::load(file).map_err(Error::failure)?;
    let line = key.public(comment).map_err(Error::failure)?.to_line();
    stdout::print(format!("{line}\n"))?;
    Ok(Status::OK)
}
