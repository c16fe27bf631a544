//! Compiler command-line scanning shared by the daemon and (later) the client.
