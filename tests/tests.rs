//! The one integration-test binary: a module per area, with the helpers in `common`.
//!
//! One binary links once; `cargo test --test tests AREA::` runs one area.

mod common;

mod applets;
mod client;
mod client_build;
mod client_failures;
mod client_objformat;
mod client_pump;
mod client_refused;
mod cluster;
mod cross;
mod cross_build;
mod daemon_process;
mod daemon_pump;
mod farm;
mod hostile;
mod house;
mod identity;
mod interop;
mod lock;
mod lzo_reference;
mod messages;
mod monitor;
mod options;
mod pump_e2e;
mod pump_scan;
mod pump_server;
mod pump_sysheaders;
mod refusals;
mod sandbox;
mod scan;
mod service;
mod trust;
