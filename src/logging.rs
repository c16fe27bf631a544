//! The one logger: distccd-style lines to syslog, a log file or stderr.
