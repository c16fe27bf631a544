//! A small farm on loopback: load-aware placement across two client machines, with distcc 3.4's client beside ours, and with a dead host and a distccd 3.4 host in the list.
//!
//! The daemons' compiler sleeps, then copies an object made once by gcc,
//! and logs `+` when it starts and `-` when it ends to the daemon's MARKS
//! directory; the lines are appended in the order they happen, so the
//! running count along the log is the number of jobs the host ran at once.
//! A client machine is a DISTCC_DIR of its own; its "make -jN" is N threads
//! each running one client at a time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::cross::run_bounded;
use crate::common::daemon::{bin, client_command, need, Daemon, DaemonOptions, DebianDistccd};
use crate::common::text;
use crate::common::{wait_until, TestDir};

/// The bound on one client run.
const JOB_LIMIT: Duration = Duration::from_secs(120);

/// Each farm keeps both CPUs busy, and placement is what its tests
/// measure: one farm at a time, so that one farm's load is not taken for
/// a slow host of another.
static ONE_FARM: Mutex<()> = Mutex::new(());

fn one_farm() -> MutexGuard<'static, ()> {
    ONE_FARM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes the object every sleeping compiler copies.
fn template_object(dir: &TestDir) -> PathBuf {
    let src = dir.write("template.c", "int farm_object(void) { return 1; }\n");
    let obj = dir.join("template.o");
    let out = Command::new("gcc")
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .unwrap();
    assert!(out.status.success(), "gcc: {}", text(&out.stderr));
    obj
}

/// The body of a compiler that sleeps `secs`, logging `+` and `-` to `log`.
fn sleeping_compiler(secs: f64, object: &Path, log: &str) -> String {
    format!(
        "out=\nwhile [ $# -gt 0 ]; do\n  case $1 in -o) out=$2; shift ;; -o*) out=${{1#-o}} ;; esac\n  shift\ndone\n\
         echo + >>\"{log}\"\nsleep {secs}\ncp '{}' \"$out\"; rc=$?\necho - >>\"{log}\"\nexit $rc",
        object.display()
    )
}

/// A farm of our daemons, each with `slots` slots and a compiler of `secs`.
fn start_farm(name: &str, object: &Path, secs: &[f64], slots: u32, debug: bool) -> Vec<Daemon> {
    secs.iter()
        .map(|&s| {
            let mut args = vec!["--jobs".to_string(), slots.to_string()];
            // The sleeping compiler copies the object made once beside it.
            let template_dir = object.parent().expect("the object's directory");
            args.extend(["--sandbox-allow".into(), template_dir.display().to_string()]);
            if debug {
                args.extend(["--log-level".into(), "debug".into()]);
            }
            Daemon::start(
                name,
                DaemonOptions {
                    args,
                    // The client asks for gcc by its target's name (5.8 rewriting).
                    scripts: ["gcc", "x86_64-linux-gnu-gcc"]
                        .iter()
                        .map(|cc| (cc.to_string(), sleeping_compiler(s, object, "$MARKS/jobs")))
                        .collect(),
                    ..DaemonOptions::default()
                },
            )
        })
        .collect()
}

/// A client machine's project: `files` one-line C files.
fn project(name: &str, prefix: &str, files: usize) -> TestDir {
    let dir = TestDir::new(name);
    for i in 0..files {
        dir.write(
            &format!("{prefix}{i}.c"),
            format!("int {prefix}{i}(int n) {{ return n * {i}; }}\n"),
        );
    }
    dir
}

/// Builds every file of `dir` (`PREFIXi.c`) with `jobs` clients at a time, each from
/// `program` with `hosts`; returns the failures' stderr.
fn build(
    program: PathBuf,
    dir: &Path,
    prefix: &'static str,
    files: usize,
    jobs: usize,
    hosts: String,
) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let (next, program, dir, hosts) = (
                next.clone(),
                program.clone(),
                dir.to_path_buf(),
                hosts.clone(),
            );
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= files {
                        return failed;
                    }
                    let env = [("DISTCC_FALLBACK", "0"), ("DISTCC_SKIP_LOCAL_RETRY", "1")];
                    let mut cmd = client_command(&program, &dir, &hosts, &env);
                    let (src, obj) = (format!("{prefix}{i}.c"), format!("{prefix}{i}.o"));
                    cmd.args(["gcc", "-c", &src, "-o", &obj]);
                    let out = run_bounded(cmd, JOB_LIMIT);
                    if !out.status.success() {
                        failed.push(format!("{src}: {}", text(&out.stderr)));
                    }
                }
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect()
}

/// (jobs run, most at once) from a daemon's compiler log.
fn host_jobs(daemon: &Daemon) -> (usize, usize) {
    let log = std::fs::read_to_string(daemon.marks.join("jobs")).unwrap_or_default();
    let (mut jobs, mut now, mut most) = (0usize, 0i64, 0i64);
    for line in log.lines() {
        match line {
            "+" => {
                jobs += 1;
                now += 1;
                most = most.max(now);
            }
            "-" => now -= 1,
            other => panic!("bad compiler log line {other:?}"),
        }
    }
    (jobs, most as usize)
}

fn list(daemons: &[Daemon], limit: u32) -> String {
    let hosts: Vec<String> = daemons
        .iter()
        .map(|d| format!("127.0.0.1:{}/{limit}", d.port))
        .collect();
    hosts.join(" ")
}

/// The marks in a client machine's lock directory whose names start with `prefix`.
fn marks(project: &TestDir, prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(project.join(".distcc-state/lock")) else {
        return Vec::new();
    };
    dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn two_client_machines_spread_over_fast_and_slow_hosts() {
    let _farm = one_farm();
    let tmp = TestDir::new("farm");
    let object = template_object(&tmp);
    // Slow hosts first in the list, so that list order does not favour the fast.
    let secs = [0.6, 0.6, 0.3, 0.3];
    let farm = start_farm("farm-host", &object, &secs, 4, false);
    let hosts = list(&farm, 4);
    let machines: Vec<TestDir> = (0..2)
        .map(|m| project(&format!("farm-m{m}"), "f", 40))
        .collect();
    let began = Instant::now();
    let builds: Vec<_> = machines
        .iter()
        .map(|m| {
            let (dir, hosts) = (m.path().to_path_buf(), hosts.clone());
            std::thread::spawn(move || build(PathBuf::from(bin()), &dir, "f", 40, 12, hosts))
        })
        .collect();
    for b in builds {
        let failed = b.join().unwrap();
        assert!(failed.is_empty(), "failed jobs: {failed:#?}");
    }
    let makespan = began.elapsed().as_secs_f64();
    let counts: Vec<(usize, usize)> = farm.iter().map(host_jobs).collect();
    let ideal = 80.0 / secs.iter().map(|s| 4.0 / s).sum::<f64>();
    eprintln!(
        "farm: jobs and most at once per host (slow, slow, fast, fast) {counts:?}; \
         makespan {makespan:.2} s, ideal {ideal:.2} s, efficiency {:.0}%",
        100.0 * ideal / makespan
    );
    assert_eq!(
        counts.iter().map(|c| c.0).sum::<usize>(),
        80,
        "every job ran remotely"
    );
    let ok: usize = farm
        .iter()
        .map(|d| d.log().matches("COMPILE_OK").count())
        .sum();
    assert_eq!(ok, 80, "every job compiled remotely");
    for (d, (_, most)) in farm.iter().zip(&counts) {
        assert!(*most <= 4, "host {} ran {most} jobs at once", d.port);
    }
    let slow_most = counts[..2].iter().map(|c| c.0).max().unwrap();
    let fast_least = counts[2..].iter().map(|c| c.0).min().unwrap();
    assert!(
        slow_most < fast_least,
        "slow hosts got as many jobs: {counts:?}"
    );
    for m in &machines {
        assert_eq!(
            marks(m, "static_"),
            Vec::<String>::new(),
            "a daemon did not answer"
        );
    }
}

#[test]
fn distcc_3_4_clients_and_ours_share_the_farm() {
    let _farm = one_farm();
    let distcc = need("distcc", "distcc");
    let tmp = TestDir::new("farm-mixed");
    let object = template_object(&tmp);
    let farm = start_farm("farm-mixed-host", &object, &[0.3; 4], 4, true);
    let hosts = list(&farm, 4);
    let theirs = project("farm-mixed-34", "d", 24);
    let ours = project("farm-mixed-rs", "r", 24);
    // 8 jobs at a time on 16 slots: no job ever needs to wait for one.
    let (dir, h) = (theirs.path().to_path_buf(), hosts.clone());
    let their_build = std::thread::spawn(move || build(distcc, &dir, "d", 24, 4, h));
    let (dir, h) = (ours.path().to_path_buf(), hosts.clone());
    let our_build = std::thread::spawn(move || build(PathBuf::from(bin()), &dir, "r", 24, 4, h));
    let failed: Vec<String> = [their_build, our_build]
        .into_iter()
        .flat_map(|b| b.join().unwrap())
        .collect();
    assert!(failed.is_empty(), "failed jobs: {failed:#?}");
    let counts: Vec<(usize, usize)> = farm.iter().map(host_jobs).collect();
    eprintln!("mixed farm: jobs and most at once per host {counts:?}");
    assert_eq!(
        counts.iter().map(|c| c.0).sum::<usize>(),
        48,
        "every job ran remotely"
    );
    // A job waited while a slot was free if a daemon queued it: with fewer
    // jobs than slots, some other host had a free slot at that moment.
    for d in &farm {
        let log = d.log();
        let waits: Vec<&str> = log.lines().filter(|l| l.contains("waits: all")).collect();
        assert!(
            waits.is_empty(),
            "host {} queued jobs: {waits:#?}\n{log}",
            d.port
        );
        assert!(
            d.log().contains("COMPILE_OK"),
            "host {} was not used",
            d.port
        );
    }
}

#[test]
fn a_dead_host_and_a_distccd_3_4_host_degrade_to_the_static_rules() {
    let _farm = one_farm();
    let tmp = TestDir::new("farm-degrade");
    let object = template_object(&tmp);
    let distccd = DebianDistccd::start("farm-degrade-34");
    let ours = start_farm("farm-degrade-rs", &object, &[0.1], 2, false);
    let (_dead_socket, dead) = crate::common::refusing_port();
    let hosts = format!(
        "127.0.0.1:{dead}/2 127.0.0.1:{}/2 127.0.0.1:{}/2",
        distccd.port, ours[0].port
    );
    let work = project("farm-degrade-work", "f", 8);
    let failed = build(PathBuf::from(bin()), work.path(), "f", 8, 4, hosts);
    assert!(failed.is_empty(), "failed jobs: {failed:#?}");
    // Neither the dead host nor distccd answers a load query, and both are
    // marked so; the dead one is backed off once its connect fails.
    let mut statics = marks(&work, "static_");
    statics.sort();
    let mut want = vec![
        format!("static_tcp_127.0.0.1_{dead}"),
        format!("static_tcp_127.0.0.1_{}", distccd.port),
    ];
    want.sort();
    assert_eq!(statics, want);
    assert_eq!(
        marks(&work, "backoff_"),
        vec![format!("backoff_tcp_127.0.0.1_{dead}_0")]
    );
    // distccd saw only standard requests: every connection was a job. Both
    // daemons log a job's summary after its reply, so a client may be done
    // a moment before the line is written.
    let done = |d: &str| d.matches("COMPILE_OK").count();
    let _all_logged = wait_until(Duration::from_secs(10), || {
        done(&distccd.log()) + done(&ours[0].log()) >= 8
    });
    let (theirs, mine) = (done(&distccd.log()), done(&ours[0].log()));
    assert_eq!(theirs + mine, 8, "distccd log:\n{}", distccd.log());
    assert!(theirs > 0, "the 3.4 host got no job: it must still be used");
    // Its one other connection is the start-up check of the test's helper.
    let connections = distccd.log().matches("connection from").count();
    assert_eq!(connections, theirs + 1, "distccd log:\n{}", distccd.log());
}
