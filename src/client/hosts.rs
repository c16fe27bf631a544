//! The host list (DISTCC_HOSTS and the hosts files): where it comes from and its grammar.
