//! distcc's wire protocol: 12-byte token headers, request decoding and response encoding.

/// distccd's default TCP port.
pub const DEFAULT_PORT: u16 = 3632;
