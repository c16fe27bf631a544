//! distcc's exit-code table (`src/exitcode.h` in distcc 3.4), shared by every applet.

/// The fixed exit codes distcc uses; 1–99 pass a compiler's own code through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    Ok = 0,
    DistccFailed = 100,
    BadArguments = 101,
    BindFailed = 102,
    ConnectFailed = 103,
    CompilerCrashed = 104,
    OutOfMemory = 105,
    BadHostspec = 106,
    IoError = 107,
    Truncated = 108,
    ProtocolError = 109,
    CompilerMissing = 110,
    Recursion = 111,
    SetuidFailed = 112,
    AccessDenied = 113,
    Busy = 114,
    NoSuchFile = 115,
    NoHosts = 116,
    Gone = 117,
    Timeout = 118,
    GssapiFailed = 119,
    LocalCpp = 120,
}

impl From<ExitCode> for i32 {
    fn from(code: ExitCode) -> i32 {
        code as i32
    }
}

impl ExitCode {
    /// Every code, for [`ExitCode::from_code`].
    const ALL: [ExitCode; 22] = [
        ExitCode::Ok,
        ExitCode::DistccFailed,
        ExitCode::BadArguments,
        ExitCode::BindFailed,
        ExitCode::ConnectFailed,
        ExitCode::CompilerCrashed,
        ExitCode::OutOfMemory,
        ExitCode::BadHostspec,
        ExitCode::IoError,
        ExitCode::Truncated,
        ExitCode::ProtocolError,
        ExitCode::CompilerMissing,
        ExitCode::Recursion,
        ExitCode::SetuidFailed,
        ExitCode::AccessDenied,
        ExitCode::Busy,
        ExitCode::NoSuchFile,
        ExitCode::NoHosts,
        ExitCode::Gone,
        ExitCode::Timeout,
        ExitCode::GssapiFailed,
        ExitCode::LocalCpp,
    ];

    /// The code with this number, if it is one of distcc's (0 or 100–120).
    pub fn from_code(code: i32) -> Option<ExitCode> {
        ExitCode::ALL.into_iter().find(|c| *c as i32 == code)
    }

    /// The wait status distccd invents for a job it failed itself: `code << 8`.
    pub fn as_wait_status(self) -> u32 {
        (self as u32) << 8
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode;

    #[test]
    fn codes_match_distcc_3_4() {
        assert_eq!(i32::from(ExitCode::BadArguments), 101);
        assert_eq!(i32::from(ExitCode::CompilerMissing), 110);
        assert_eq!(i32::from(ExitCode::NoHosts), 116);
        assert_eq!(i32::from(ExitCode::Timeout), 118);
        assert_eq!(i32::from(ExitCode::LocalCpp), 120);
    }

    #[test]
    fn numbers_name_their_codes() {
        assert_eq!(ExitCode::from_code(0), Some(ExitCode::Ok));
        assert_eq!(ExitCode::from_code(107), Some(ExitCode::IoError));
        assert_eq!(ExitCode::from_code(120), Some(ExitCode::LocalCpp));
        assert_eq!(ExitCode::from_code(1), None);
        assert_eq!(ExitCode::from_code(121), None);
    }

    #[test]
    fn invented_wait_status_is_code_shifted() {
        assert_eq!(ExitCode::CompilerMissing.as_wait_status(), 0x6e00);
        assert_eq!(ExitCode::IoError.as_wait_status(), 0x6b00);
        assert_eq!(ExitCode::Timeout.as_wait_status(), 0x7600);
    }
}
