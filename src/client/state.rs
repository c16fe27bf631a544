//! Monitor state files ($DISTCC_DIR/state/binstate_<pid>) in distcc 3.4's binary layout.
