//! The distcc client: pick a host, preprocess locally, send the job, write the object, or fall back to a local compile.

pub mod compiler;
pub mod env;
pub mod hosts;
pub mod lock;
pub mod scan;
pub mod state;
