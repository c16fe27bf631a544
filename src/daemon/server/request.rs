//! Reading a job's request on the event loop: the command is checked as
//! soon as it has arrived, the source is stored in the job's directory as it
//! arrives (in pump mode, each file into the job's tree, `daemon/pump.rs`),
//! and a refused job gets `DENY` (docs/refusals.md).

use std::fs::File;
use std::io::Write;
use std::time::Duration;

use super::{AfterWrite, ConnId, ConnState, Server};
use crate::daemon::job::{JobDir, ServerJob};
use crate::daemon::pump::Tree;
use crate::daemon::stats::Outcome;
use crate::daemon::Config;
use crate::proto::{Item, Limits};

/// How long a refused client may go on sending its request after `DENY`.
const DENY_DRAIN_TIME: Duration = Duration::from_secs(5);

/// The job, source file and compression flag of a connection reading its request.
type ReadingJob<'a> = (
    &'a mut Option<ServerJob>,
    &'a mut Option<File>,
    &'a mut bool,
);

/// A step of reading a request: refused with this outcome and reason.
type StepResult = Result<(), (Outcome, String)>;

impl Server<'_> {
    /// Decodes request bytes into the job: its command, then its source.
    pub(super) fn on_request_bytes(&mut self, id: ConnId, mut input: &[u8]) -> bool {
        loop {
            let Some(ConnState::Reading { decoder, job, .. }) =
                self.conns.get_mut(&id).map(|c| &mut c.state)
            else {
                return false;
            };
            let has_job = job.is_some();
            let item = match decoder.next(&mut input) {
                Ok(Some(item)) => item,
                Ok(None) => return true,
                Err(err) if has_job => {
                    self.refuse(id, Outcome::BadRequest, &err.to_string());
                    return true;
                }
                Err(err) => {
                    self.drop_bad_request(id, &err.to_string());
                    return true;
                }
            };
            let step = match item {
                Item::Command { version, argv } => self.on_command(id, version, argv),
                Item::InputStart(len) => self.on_input_start(id, len),
                Item::Input(chunk) => self.on_input(id, chunk),
                Item::FileStart { name, len } => {
                    self.with_tree(id, |tree| tree.begin_file(name, len))
                }
                Item::FileEnd => self.with_tree(id, Tree::end_file),
                Item::Link { name, target } => self.with_tree(id, |t| t.add_link(name, target)),
                Item::Header { name, hash } => self.with_tree(id, |t| t.add_header(name, hash)),
                Item::HeadersListed(_) => self.on_headers_listed(id),
                Item::HeaderBody(len) => self.with_tree(id, |t| t.begin_header_body(len)),
                Item::End => return self.on_request_end(id, input.len()),
            };
            if let Err((outcome, why)) = step {
                self.refuse(id, outcome, &why);
                return true;
            }
        }
    }

    /// The job and source file of a connection that is reading its request.
    fn reading(&mut self, id: ConnId) -> Option<ReadingJob<'_>> {
        match self.conns.get_mut(&id).map(|c| &mut c.state) {
            Some(ConnState::Reading {
                job,
                body,
                compressed,
                ..
            }) => Some((job, body, compressed)),
            _ => None,
        }
    }

    fn on_command(&mut self, id: ConnId, version: u32, argv: Vec<Vec<u8>>) -> StepResult {
        let cwd = match self.conns.get(&id).map(|c| &c.state) {
            Some(ConnState::Reading { decoder, .. }) => decoder.cwd().map(<[u8]>::to_vec),
            _ => None,
        };
        let mut accepted = accept_command(self.config, version, cwd.as_deref(), argv)
            .map_err(|e| (Outcome::Other, e))?;
        if let Some(tree) = accepted.tree_mut() {
            tree.use_store(self.header_store());
        }
        if let Some((job, ..)) = self.reading(id) {
            *job = Some(accepted);
        }
        Ok(())
    }

    fn on_input_start(&mut self, id: ConnId, len: u32) -> StepResult {
        let Some((Some(job), body, compressed)) = self.reading(id) else {
            return Ok(());
        };
        *compressed = job.version >= 2 && len > 0;
        let file = crate::sys::open_file(&job.body_path(*compressed), true)
            .map_err(|e| (Outcome::Other, format!("cannot store the source: {e}")))?;
        *body = Some(file);
        Ok(())
    }

    /// A step of building a pump job's tree; a broken rule refuses the job.
    fn with_tree(
        &mut self,
        id: ConnId,
        step: impl FnOnce(&mut Tree) -> Result<(), String>,
    ) -> StepResult {
        match self.reading(id) {
            Some((Some(job), ..)) => match job.tree_mut() {
                Some(tree) => step(tree).map_err(|why| (Outcome::BadRequest, why)),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn on_input(&mut self, id: ConnId, chunk: &[u8]) -> StepResult {
        if let Some((Some(job), _, _)) = self.reading(id) {
            if let Some(tree) = job.tree_mut() {
                tree.extend(chunk);
                return Ok(());
            }
        }
        if let Some((_, Some(body), _)) = self.reading(id) {
            body.write_all(chunk)
                .map_err(|e| (Outcome::Other, format!("cannot store the source: {e}")))?;
        }
        Ok(())
    }

    /// The file list is in and sent headers by hash: tell the client which
    /// bodies to send (`NEED`), and read on for them. The job holds no
    /// slot meanwhile; the request's deadline still runs.
    fn on_headers_listed(&mut self, id: ConnId) -> StepResult {
        let needed = match self.reading(id) {
            Some((Some(job), ..)) => job.tree_mut().map(|t| t.needed_headers()),
            _ => None,
        };
        let Some(needed) = needed else {
            return Ok(());
        };
        let count = needed.iter().filter(|&&n| n).count() as u32;
        let need = crate::sysheaders::encode_need(&needed);
        let Some(need) = self.seal(id, need) else {
            return Ok(());
        };
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        let ConnState::Reading { decoder, out, .. } = &mut conn.state else {
            return Ok(());
        };
        decoder.need(count);
        out.extend_from_slice(&need);
        self.flush_need(id)
            .map_err(|e| (Outcome::Other, format!("cannot send NEED: {e}")))
    }

    /// Writes what the socket takes of a reading connection's `NEED`
    /// bytes; watches for writability while some are left.
    pub(super) fn flush_need(&mut self, id: ConnId) -> std::io::Result<()> {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        let ConnState::Reading { out, .. } = &mut conn.state else {
            return Ok(());
        };
        while !out.is_empty() {
            match conn.io.writer().write(out) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.watch_output(id, true);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.watch_output(id, false);
        Ok(())
    }

    /// The whole request is in: unpack a compressed source and queue the job.
    fn on_request_end(&mut self, id: ConnId, trailing: usize) -> bool {
        let max_input = self.config.limits.max_input as usize;
        let Some((job, body, compressed)) = self.reading(id) else {
            return false;
        };
        *body = None;
        let (Some(mut job), was_compressed) = (job.take(), *compressed) else {
            return false;
        };
        let unpacked = match job.tree_mut() {
            Some(tree) => tree.finish(),
            None if was_compressed => job.unpack_input(max_input),
            None => Ok(()),
        };
        if let Err(why) = unpacked {
            self.refuse(id, Outcome::BadRequest, &why);
            return true;
        }
        let counts = job
            .tree_mut()
            .map(|t| t.header_counts())
            .unwrap_or_default();
        if let Some((files, known)) = job.tree_mut().map(|t| t.file_counts()) {
            log::debug!(
                "job {}: {files} pump files, {known} of them linked from the store as sent",
                String::from_utf8_lossy(job.input_name())
            );
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if counts.from_store + counts.received > 0 {
            log::info!(
                "client {}: system headers for {}: {} from the store, {} bodies received",
                conn.peer,
                String::from_utf8_lossy(job.input_name()),
                counts.from_store,
                counts.received
            );
        }
        if trailing > 0 {
            log::warn!(
                "client {} sent {trailing} bytes after its request; ignored",
                conn.peer
            );
        }
        if self.running + self.queue.len() >= self.config.jobs {
            log::debug!(
                "job {} from {} waits: all {} slots busy",
                String::from_utf8_lossy(job.input_name()),
                conn.peer,
                self.config.jobs
            );
        }
        job.identify = conn.asked_identity == Some(true);
        conn.state = ConnState::Queued { job };
        conn.deadline = None;
        self.queue.push_back(id);
        true
    }

    /// Refuses a job with `DENY` and the reason, then drains what the
    /// client still sends. A 3.4 client takes it as a failed host and
    /// compiles locally; ours shows the reason and keeps the host.
    pub(super) fn refuse(&mut self, id: ConnId, outcome: Outcome, why: &str) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        log::warn!("refusing job from {}: {why}", conn.peer);
        self.stats.record(outcome, None);
        let drain = AfterWrite::Drain {
            bytes: drain_budget(&self.config.limits),
            time: DENY_DRAIN_TIME,
        };
        self.start_writing(id, crate::proto::encode_deny(why), drain);
    }

    /// Closes a connection whose bytes are no distcc request (garbage, a
    /// protocol version not served, a claimed size over the limits) before
    /// any job was made, as distccd 3.4 does: no reply.
    fn drop_bad_request(&mut self, id: ConnId, why: &str) {
        if let Some(conn) = self.conns.get(&id) {
            log::warn!("refusing job from {}: {why}", conn.peer);
        }
        self.stats.record(Outcome::BadRequest, None);
        self.close(id);
    }
}

/// Checks a request's command against the option table (the job's shape
/// and the arguments a daemon refuses) and the whitelist, and makes its job
/// directory; in pump mode also the job's tree, with the client's working
/// directory `cwd` in it.
fn accept_command(
    config: &Config,
    version: u32,
    cwd: Option<&[u8]>,
    argv: Vec<Vec<u8>>,
) -> Result<ServerJob, String> {
    let accepted = match cwd {
        Some(_) => crate::options::check_pump_job(&argv)?,
        None => crate::options::check_job(&argv)?,
    };
    let program = config.whitelist.check(&argv[0])?;
    let dir = JobDir::create(&config.tmpdir, config.save_temps).map_err(|e| {
        format!(
            "cannot make a job directory in {}: {e}",
            config.tmpdir.display()
        )
    })?;
    let tree = match cwd {
        Some(cwd) => Some(Tree::create(dir.path(), cwd, &config.limits)?),
        None => None,
    };
    let mut job = ServerJob::new(version, argv, program, accepted, dir);
    if let Some(tree) = tree {
        job.set_tree(tree);
    }
    Ok(job)
}

/// The most a refused client may still send: the largest request the
/// limits allow (pump mode's file list, or a source).
fn drain_budget(limits: &Limits) -> u64 {
    let header = crate::proto::HEADER_LEN as u64;
    let headers = (u64::from(limits.max_argc) + 5) * header;
    let entries = u64::from(limits.max_files) * 2 * header;
    let files = entries + limits.max_names_total + limits.max_files_total;
    headers + limits.max_args_total as u64 + files.max(u64::from(limits.max_input))
}
