//! The client's argument scanner: one table of gcc/clang options decides local or remote, the output name and what the server is sent.
