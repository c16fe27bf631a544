//! LZO1X codec for protocol version 2 bodies (placeholder until the codec lands).
