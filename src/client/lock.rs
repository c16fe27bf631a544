//! Host slots and backoff marks under $DISTCC_DIR/lock, shared with real distcc through fcntl record locks.
