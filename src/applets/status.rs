//! How an applet ends: a typed status, or an error the dispatcher prints once.

use crate::exitcode::ExitCode;

/// What an applet returns when it ends normally.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// One of distcc's exit codes; [`ExitCode::Ok`] is success.
    Exit(ExitCode),
    /// A compiler's (or other child's) own exit status, passed through.
    Child(u8),
    /// The plain failure status 1, for an applet that is not distcc's
    /// (wrap refusing to write).
    Failure,
    /// A bad command line. The dispatcher prints the message with the
    /// program's prefix and a pointer to `--help`, and exits with the
    /// applet's usage status (101, as distcc has, or 1 for distccmon-text).
    Usage(String),
}

impl Status {
    /// Success: status 0.
    pub const OK: Status = Status::Exit(ExitCode::Ok);

    /// A status from code that returns a bare number: one of distcc's codes
    /// when it is one, otherwise a child's status passed through.
    pub fn from_code(code: i32) -> Status {
        match ExitCode::from_code(code) {
            Some(code) => Status::Exit(code),
            None => Status::Child(u8::try_from(code).unwrap_or(u8::MAX)),
        }
    }
}

/// An error an applet stops on.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// Whoever read stdout went away (a broken pipe, as in `| head`): a
    /// clean end, status 0, nothing printed.
    StdoutClosed,
    /// `message` is printed once, by the dispatcher, with the program's
    /// prefix; then the program exits with `status`.
    Failed { status: Status, message: String },
}

impl Error {
    /// An error ending with one of distcc's exit codes.
    pub fn exit(code: ExitCode, message: impl std::fmt::Display) -> Error {
        Error::Failed {
            status: Status::Exit(code),
            message: message.to_string(),
        }
    }

    /// An error ending with the plain failure status 1.
    pub fn failure(message: impl std::fmt::Display) -> Error {
        Error::Failed {
            status: Status::Failure,
            message: message.to_string(),
        }
    }
}

/// An applet's result.
pub type Outcome = Result<Status, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_codes_are_typed() {
        assert_eq!(Status::from_code(0), Status::OK);
        assert_eq!(Status::from_code(1), Status::Child(1));
        assert_eq!(
            Status::from_code(110),
            Status::Exit(ExitCode::CompilerMissing)
        );
        assert_eq!(Status::from_code(99), Status::Child(99));
        assert_eq!(Status::from_code(300), Status::Child(255));
    }
}
