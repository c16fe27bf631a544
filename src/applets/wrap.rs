//! The `wrap` applet's command line: `distcc-rs wrap --target TRIPLE ...`
//! makes this machine a cross helper for TRIPLE (the work is in `crate::wrap`).

use std::path::PathBuf;

use argh::FromArgs;

use super::{stdout, Call, Error, Outcome, Status};
use crate::proto::DEFAULT_PORT;
use crate::wrap::{self, Instance, Plan, Request};

/// distcc-rs wrap: make this machine a cross helper for one target, with no
/// chroot. Under DIR it writes compiler wrappers (bin/cc, c++, clang,
/// clang++, clang-cpp, TRIPLE-clang, TRIPLE-clang++, TRIPLE-cc, TRIPLE-c++),
/// each a shell script that runs `COMPILER --target=TRIPLE "$@"` (C++ with
/// --driver-mode=g++, clang-cpp with --driver-mode=cpp); commands.allow, the
/// daemon's DISTCC_CMDLIST naming exactly those wrappers;
/// distcc-rs-NAME.service, a systemd unit for a daemon of its own; and
/// rc.d/distccd_NAME, the same for OpenBSD. It refuses to replace any file it
/// did not write (or that was changed since) unless --force, and writes
/// nothing when it refuses.
#[derive(FromArgs)]
#[argh(
    note = "The wrappers are scripts, not links to distcc-rs: the daemon never runs \
            distcc-rs as a compiler, and a link would make it a distcc client again.\n\
            Clients must preprocess with clang for the same target (their compiler \
            must be clang, e.g. `clang --target=TRIPLE`): glibc headers preprocessed \
            by gcc do not compile with clang 14, so a gcc client cannot use a clang helper.\n\
            Without --allow the daemon serves its default, the private address ranges: \
            a helper exists to serve other machines, and DISTCC_CMDLIST already limits \
            it to the wrappers.",
    example = "distcc-rs wrap --target powerpc-unknown-openbsd --compiler /usr/bin/clang --dir /usr/local/lib/distcc-rs/ppc"
)]
struct Options {
    /// the target triple clients compile for, e.g. powerpc-unknown-openbsd
    #[argh(option)]
    target: Option<String>,
    /// the real clang (default: clang on PATH)
    #[argh(option)]
    compiler: Option<PathBuf>,
    /// where the files go (default /usr/local/lib/distcc-rs/NAME)
    #[argh(option)]
    dir: Option<PathBuf>,
    /// the instance's TCP port (default 3632)
    #[argh(option)]
    port: Option<u16>,
    /// also serve --stats on this port
    #[argh(option)]
    stats_port: Option<u16>,
    /// the instance's name, in the unit and rc.d names (default: the triple)
    #[argh(option)]
    name: Option<String>,
    /// allow clients from ADDR[/BITS] (repeatable; default: private ranges)
    #[argh(option)]
    allow: Vec<String>,
    /// run the daemon as this user (default: systemd DynamicUser, rc.d _distcc)
    #[argh(option)]
    user: Option<String>,
    /// the daemon's job slots (default: CPUs + 2)
    #[argh(option)]
    jobs: Option<usize>,
    /// serve only clients with a key: make DIR/key (kept if it exists),
    /// DIR/key.pub and DIR/auth-keys, and start the daemon with --key and
    /// --auth-keys (docs/trust.md); needs --user, who gets the key
    #[argh(switch)]
    key: bool,
    /// show what would be written and change nothing
    #[argh(switch)]
    dry_run: bool,
    /// remove what an earlier wrap wrote in DIR
    #[argh(switch)]
    remove: bool,
    /// replace or remove files wrap did not write, or that were changed
    #[argh(switch)]
    force: bool,
}

/// Prints a line through the one stdout writer; the applet stops on a
/// closed or failing stdout.
macro_rules! say {
    () => {
        stdout::print("\n")?
    };
    ($($arg:tt)*) => {
        stdout::print(format!("{}\n", format_args!($($arg)*)))?
    };
}

fn usage(message: impl std::fmt::Display) -> Outcome {
    Ok(Status::Usage(message.to_string()))
}

/// The refusals, as one error, if there were any.
fn refused(plan: &Plan, force: bool) -> Result<(), Error> {
    if plan.refusals.is_empty() {
        return Ok(());
    }
    let mut message = String::new();
    for r in &plan.refusals {
        message += &format!("refusing: {}: {}\n", r.path.display(), r.why);
    }
    message += &format!(
        "nothing was changed{}",
        if force { "" } else { " (see --force)" }
    );
    Err(Error::failure(message))
}

fn run_plan(plan: &Plan, dry_run: bool) -> Result<bool, Error> {
    match plan.apply(dry_run) {
        Ok(report) => {
            for line in &report.lines {
                say!("  {line}");
            }
            Ok(report.changed)
        }
        Err(err) => Err(Error::failure(format!(
            "{err}; the run stopped part way, rerun it to finish"
        ))),
    }
}

fn summary(instance: &Instance) -> Result<(), Error> {
    let host = crate::sys::hostname().unwrap_or_else(|| "THIS_HOST".into());
    let jobs = instance.jobs.unwrap_or_else(|| crate::sys::cpu_count() + 2);
    let unit = instance.dir.join(instance.unit_name());
    let script = instance.rc_script_name();
    say!();
    say!(
        "Clients compiling for {} use this host as:",
        instance.target
    );
    say!(
        "  DISTCC_HOSTS=\"{host}:{}/{jobs}\"    (replace {host} by a name or address clients reach)",
        instance.port
    );
    say!("Start the daemon under systemd:");
    say!("  systemctl link {}", unit.display());
    say!("  systemctl enable --now {}", instance.unit_name());
    say!("or under OpenBSD's rc.d:");
    say!(
        "  install -m 0555 {} /etc/rc.d/{script}",
        instance.dir.join("rc.d").join(&script).display()
    );
    say!("  rcctl enable {script} && rcctl start {script}");
    if [&instance.dir, &instance.compiler]
        .iter()
        .any(|p| p.starts_with("/tmp") || p.starts_with("/var/tmp"))
    {
        say!(
            "Note: the unit's PrivateTmp= hides /tmp and /var/tmp from the daemon; \
             the systemd unit does not work from there."
        );
    }
    say!();
    say!(
        "Warning: clients must preprocess with clang for this target: their compiler must be \
         clang (e.g. `clang --target={}`, or {}/cc). glibc headers preprocessed by gcc do not \
         compile with clang 14 (gcc-only attribute forms and types), so a gcc client cannot \
         use a clang helper.",
        instance.target,
        instance.bin_dir().display()
    );
    Ok(())
}

/// With `--key`: the host line for clients, and how to accept them.
fn key_summary(instance: &Instance, line: &str) -> Result<(), Error> {
    let host = crate::sys::hostname().unwrap_or_else(|| "THIS_HOST".into());
    let jobs = instance.jobs.unwrap_or_else(|| crate::sys::cpu_count() + 2);
    say!();
    say!(
        "The daemon's public key ({}):",
        instance.dir.join("key.pub").display()
    );
    say!("  {line}");
    say!(
        "Clients copy it to a file, say ~/.distcc/{}.pub, and use:",
        instance.name
    );
    say!(
        "  DISTCC_HOSTS=\"{host}:{}/{jobs},key=$HOME/.distcc/{}.pub\"",
        instance.port,
        instance.name
    );
    say!(
        "Each client's own public key (distcc-rs key generate ~/.distcc/key) goes, one a line, in {}; restart the daemon after a change.",
        instance.auth_keys_file().display()
    );
    Ok(())
}

pub fn main(call: Call) -> Outcome {
    let words = match super::utf8_words(&call.args) {
        Ok(words) => words,
        Err(arg) => return usage(format!("argument is not valid UTF-8: {arg:?}")),
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let o: Options = match super::parse_options(&[&call.command], &words) {
        Ok(o) => o,
        Err(outcome) => return outcome,
    };
    if o.remove {
        remove(&o)
    } else {
        write(o)
    }
}

/// `--remove`: takes away what an earlier wrap wrote.
fn remove(o: &Options) -> Outcome {
    let dir = match (&o.dir, &o.target, &o.name) {
        (Some(dir), _, _) => dir.clone(),
        (None, _, Some(name)) | (None, Some(name), None) => wrap::default_dir(name),
        (None, None, None) => return usage("--remove needs --dir, --name or --target"),
    };
    let plan = wrap::plan_remove(&dir, o.force).map_err(Error::failure)?;
    refused(&plan, o.force)?;
    if plan.is_noop() {
        say!("Nothing to remove: no wrap manifest in {}", dir.display());
        return Ok(Status::OK);
    }
    say!(
        "{} {}:",
        if o.dry_run {
            "Would remove"
        } else {
            "Removing"
        },
        dir.display()
    );
    run_plan(&plan, o.dry_run)?;
    Ok(Status::OK)
}

/// Writes (or with --dry-run shows) the helper's files.
fn write(o: Options) -> Outcome {
    let Some(target) = o.target else {
        return usage("--target TRIPLE is required (see --help)");
    };
    let Some(exe) = crate::masquerade::self_exe() else {
        return Err(Error::failure("cannot find this executable's path"));
    };
    let request = Request {
        target,
        compiler: o.compiler,
        dir: o.dir,
        name: o.name,
        port: o.port.unwrap_or(DEFAULT_PORT),
        stats_port: o.stats_port,
        allow: o.allow,
        user: o.user,
        jobs: o.jobs,
        key: o.key,
    };
    if request.key && request.user.is_none() {
        return usage(
            "--key needs --user: the service user must own the daemon's key \
             (systemd's DynamicUser has no fixed owner to give it to)",
        );
    }
    let instance = match Instance::new(request, exe) {
        Ok(i) => i,
        Err(message) => return usage(message),
    };
    let plan = wrap::plan_write(&instance, o.force);
    refused(&plan, o.force)?;
    say!(
        "{} {} for {} with {}:",
        if o.dry_run {
            "Dry run: would write"
        } else {
            "Writing"
        },
        instance.dir.display(),
        instance.target,
        instance.compiler.display()
    );
    if !run_plan(&plan, o.dry_run)? {
        say!("Nothing changed: every file is already as wrap would write it.");
    }
    let key_line = match (instance.key, o.dry_run) {
        (true, false) => Some(instance.make_key().map_err(Error::failure)?),
        _ => None,
    };
    summary(&instance)?;
    if let Some(line) = key_line {
        key_summary(&instance, &line)?;
    }
    Ok(Status::OK)
}
