//! Thin safe wrappers around the libc calls the daemon needs.
