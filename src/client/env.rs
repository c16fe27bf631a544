//! Client environment variables (section 3.1), read the way distcc 3.4 reads them.
