//! The compile server: accepts distcc requests, runs whitelisted compilers, returns results.
