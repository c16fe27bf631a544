//! Starts compilers on a thread of its own, so that the event loop never
//! waits on the compiler search, fork or exec.
//!
//! The loop hands a job over with [`Spawner::start`] and gets it back, with
//! its compiler process or why it could not be run, from [`Spawner::started`]
//! after the loop's waker fires. The thread ends when the `Spawner` is dropped.

use std::io;
use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::Waker;

use super::job::{CompilerSearch, ServerJob};

/// A job handed back by the spawner thread.
pub struct Started {
    pub conn: usize,
    pub job: ServerJob,
    /// The compiler that runs the job, or why it could not be started.
    pub child: io::Result<Child>,
}

/// The spawner thread and its two channels.
pub struct Spawner {
    requests: Option<Sender<(usize, ServerJob)>>,
    results: Receiver<Started>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    /// Starts the thread; it wakes `waker` after each job it hands back.
    pub fn new(compilers: CompilerSearch, waker: Arc<Waker>) -> io::Result<Spawner> {
        let (requests, inbox) = mpsc::channel::<(usize, ServerJob)>();
        let (outbox, results) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                for (conn, job) in inbox {
                    let child = start_compiler(&compilers, &job);
                    if outbox.send(Started { conn, job, child }).is_err() {
                        return;
                    }
                    let _ = waker.wake();
                }
            })?;
        Ok(Spawner {
            requests: Some(requests),
            results,
            thread: Some(thread),
        })
    }

    /// Hands `job` of connection `conn` to the thread.
    pub fn start(&self, conn: usize, job: ServerJob) {
        if let Some(requests) = &self.requests {
            // The thread only ends when this sender is dropped.
            let _ = requests.send((conn, job));
        }
    }

    /// The jobs the thread has handed back since the last call.
    pub fn started(&self) -> Vec<Started> {
        self.results.try_iter().collect()
    }

    /// Ends the thread once it has started what it was given, and returns
    /// the jobs it handed back and no one took.
    pub fn stop(&mut self) -> Vec<Started> {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.started()
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn start_compiler(compilers: &CompilerSearch, job: &ServerJob) -> io::Result<Child> {
    let path: PathBuf = compilers
        .find(&job.program)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not found on the server's PATH"))?;
    job.spawn(&path)
}
