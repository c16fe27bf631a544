//! The compile workers: threads that start a job's compiler, wait for it and
//! read what it left, so that the event loop never waits on the compiler
//! search, fork, exec or waitpid.
//!
//! The loop hands a job over with [`Workers::start`]. The worker reports
//! [`Report::Started`] with a handle to signal the compiler's process group,
//! then [`Report::Finished`] with the job, its exit status and its results,
//! and wakes the loop's poll after the second. Workers are started as jobs need
//! them, up to one per compile slot.

use std::io;
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::Waker;

use super::conn::ConnId;
use super::job::{Compiler, CompilerSearch, Results, ServerJob};
use crate::identity::{self, Identity};
use crate::sandbox::Sandbox;

/// What a worker reports about the job of connection `conn`.
pub enum Report {
    /// The compiler runs.
    Started {
        conn: ConnId,
        compiler: Arc<Compiler>,
        at: Instant,
    },
    /// The compiler has exited and been reaped, or could not be started.
    Finished {
        conn: ConnId,
        job: Box<ServerJob>,
        ended: io::Result<(ExitStatus, Results)>,
    },
}

type Inbox = Arc<Mutex<Receiver<(ConnId, ServerJob)>>>;

/// The worker threads and their channels.
pub struct Workers {
    requests: Option<Sender<(ConnId, ServerJob)>>,
    reports: Receiver<Report>,
    threads: Vec<JoinHandle<()>>,
    max: usize,
    /// What a new worker needs.
    inbox: Inbox,
    outbox: Sender<Report>,
    compilers: Arc<CompilerSearch>,
    sandbox: Arc<Sandbox>,
    identities: Arc<identity::Cache>,
    waker: Arc<Waker>,
}

/// A worker's stack: it reads results into the heap and calls no deep code.
const STACK_SIZE: usize = 256 * 1024;

impl Workers {
    /// Workers for up to `max` jobs at a time, whose compilers run in
    /// `sandbox`; each wakes `waker` after each report. None runs until
    /// [`Workers::make_room`] starts it.
    pub fn new(
        max: usize,
        compilers: CompilerSearch,
        sandbox: Sandbox,
        waker: Arc<Waker>,
    ) -> Workers {
        let (requests, inbox) = mpsc::channel();
        let (outbox, reports) = mpsc::channel();
        Workers {
            requests: Some(requests),
            reports,
            threads: Vec::new(),
            max: max.max(1),
            inbox: Arc::new(Mutex::new(inbox)),
            outbox,
            compilers: Arc::new(compilers),
            sandbox: Arc::new(sandbox),
            identities: Arc::default(),
            waker,
        }
    }

    /// Makes sure a worker will take one more job while `busy` jobs are
    /// with the workers: starts a worker if all are busy and there may be
    /// more. Returns false if there is no worker at all and none could be
    /// started (the job then waits in the queue, and this is tried again).
    pub fn make_room(&mut self, busy: usize) -> bool {
        if busy < self.threads.len() || self.threads.len() >= self.max {
            return !self.threads.is_empty();
        }
        let (inbox, outbox) = (self.inbox.clone(), self.outbox.clone());
        let (compilers, waker) = (self.compilers.clone(), self.waker.clone());
        let (sandbox, identities) = (self.sandbox.clone(), self.identities.clone());
        let started = std::thread::Builder::new()
            .name(format!("worker{}", self.threads.len()))
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let run = (&*compilers, &*sandbox, &*identities);
                work(&inbox, run, &outbox, &waker)
            });
        match started {
            Ok(thread) => self.threads.push(thread),
            Err(err) => log::warn!(
                "cannot start a compile worker ({err}); {} running",
                self.threads.len()
            ),
        }
        !self.threads.is_empty()
    }

    /// Hands the job of connection `conn` to a free worker.
    pub fn start(&self, conn: ConnId, job: ServerJob) {
        if let Some(requests) = &self.requests {
            // The workers only end when this sender is dropped.
            let _ = requests.send((conn, job));
        }
    }

    /// The reports since the last call.
    pub fn reports(&self) -> Vec<Report> {
        self.reports.try_iter().collect()
    }

    /// Ends the workers, for the end of the loop: a compiler the loop has
    /// not heard of yet is killed (no one is left to answer), so that no
    /// worker waits on it; the loop has killed those it knew.
    pub fn stop(&mut self) {
        self.requests = None;
        while self.threads.iter().any(|t| !t.is_finished()) {
            match self.reports.recv_timeout(Duration::from_millis(50)) {
                Ok(Report::Started { compiler, .. }) => compiler.signal(libc::SIGKILL),
                Ok(Report::Finished { .. }) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A worker's life: take a job, run it, report; until the loop hangs up.
fn work(inbox: &Inbox, run: Run, outbox: &Sender<Report>, waker: &Waker) {
    loop {
        let next = inbox.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((conn, job)) = next else {
            return;
        };
        let report = |report: Report| {
            let sent = outbox.send(report).is_ok();
            let _ = waker.wake();
            sent
        };
        // Not worth a wake-up of its own: the loop takes it with its next
        // event, the job's end at the latest, or within its one-second tick.
        let report_quietly = |report: Report| {
            let _ = outbox.send(report);
        };
        let (child, identity) = match start_compiler(run, &job) {
            Ok(started) => started,
            Err(err) => {
                let ended = Err(err);
                report(Report::Finished {
                    conn,
                    job: Box::new(job),
                    ended,
                });
                continue;
            }
        };
        let compiler = Arc::new(Compiler::started(child.id()));
        report_quietly(Report::Started {
            conn,
            compiler: compiler.clone(),
            at: Instant::now(),
        });
        let ended = wait_for(child, &compiler).map(|status| {
            use std::os::unix::process::ExitStatusExt;
            let mut results = job.results(status.into_raw() == 0);
            results.identity = identity;
            (status, results)
        });
        if !report(Report::Finished {
            conn,
            job: Box::new(job),
            ended,
        }) {
            return;
        }
    }
}

/// What a worker runs jobs with: the compiler search, the sandbox, the
/// compilers' identities.
type Run<'a> = (&'a CompilerSearch, &'a Sandbox, &'a identity::Cache);

/// Finds the job's compiler, its identity if the job asks for it, and
/// starts it.
fn start_compiler(
    (compilers, sandbox, identities): Run,
    job: &ServerJob,
) -> io::Result<(Child, Option<Arc<Identity>>)> {
    let path = compilers
        .find(&job.program)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not found on the server's PATH"))?;
    let identity = job.identify.then(|| {
        let name = String::from_utf8_lossy(crate::filename::basename(&job.program)).into_owned();
        identities.get(&path, &name, || job.probe_identity(&path, sandbox))
    });
    Ok((job.spawn(&path, sandbox)?, identity.flatten()))
}

/// Waits for the compiler to exit, marks it exited, then reaps it. The wait
/// leaves it a zombie (`WNOWAIT`), so its process group number cannot be
/// reused while the loop may still signal it.
fn wait_for(mut child: Child, compiler: &Compiler) -> io::Result<ExitStatus> {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child without reaping it.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                compiler.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    compiler.mark_exited();
    child.wait()
}
