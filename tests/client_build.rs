//! Whole builds with the distcc-rs client: make -j8 across two daemons (one Debian's) sharing slots with a real distcc client, ssh hosts, ccache in front, and Debian's distccmon-text watching our job.

use crate::common;

use common::daemon::{bin, client, need, Daemon, DaemonOptions, DebianDistccd};
use common::TestDir;
use common::{local_object, text, wait_until};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A server-side compiler wrapper that records, in `$CONC_DIR`, how many
/// jobs run at once on its server, then runs the real compiler.
const COUNTING_COMPILER: &str = r#"d="$CONC_DIR"
mkdir "$d/run.$$"
ls "$d" | grep -c '^run\.' >> "$d/samples"
sleep 0.1
"$REAL" "$@"; rc=$?
rmdir "$d/run.$$"
exit $rc"#;

/// Writes the generated project: `files` sources (a quarter C++) and a Makefile.
fn write_project(dir: &TestDir, root: &str, files: usize) {
    let mut objs = Vec::new();
    for i in 0..files {
        if i % 4 == 3 {
            dir.write(
                &format!("{root}/src/f{i:03}.cc"),
                format!("#include <vector>\n#include \"common.h\"\nint f{i}() {{ std::vector<int> v(COMMON + {i}); return (int)v.size(); }}\n"),
            );
        } else {
            dir.write(
                &format!("{root}/src/f{i:03}.c"),
                format!("#include \"common.h\"\nstatic int t[COMMON];\nint f{i}(int x) {{ t[x % COMMON] = x * {i}; return t[{i} % COMMON]; }}\n"),
            );
        }
        objs.push(format!("src/f{i:03}.o"));
    }
    dir.write(&format!("{root}/src/common.h"), "#define COMMON 16\n");
    dir.write(
        &format!("{root}/Makefile"),
        format!(
            "OBJS = {}\nall: $(OBJS)\n\
             %.o: %.c\n\t$(CC) -O2 -MD -c $< -o $@\n\
             %.o: %.cc\n\t$(CXX) -O2 -MMD -c $< -o $@\n",
            objs.join(" ")
        ),
    );
}

fn make(dir: &Path, cc: &str, cxx: &str, env: &[(&str, String)]) -> std::process::Child {
    Command::new("make")
        .args(["-j8", "-s"])
        .arg(format!("CC={cc}"))
        .arg(format!("CXX={cxx}"))
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run make")
}

fn finish(child: std::process::Child, what: &str) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        text(&out.stderr)
    );
    out
}

fn max_sample(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("samples"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn make_j8_of_200_files_across_two_daemons_shares_slots_with_real_distcc() {
    need("make", "make");
    need("g++", "g++");
    need("distcc", "distcc");
    let work = TestDir::new("build200");
    // Server-side wrappers under the names the clients send.
    let ours_conc = work.shared_dir("conc-ours");
    let theirs_conc = work.shared_dir("conc-theirs");
    let wrappers = work.join("wrappers");
    for (name, real) in [
        ("x86_64-linux-gnu-gcc", "/usr/bin/gcc"),
        ("x86_64-linux-gnu-g++", "/usr/bin/g++"),
    ] {
        work.script(
            &format!("wrappers/{name}"),
            &COUNTING_COMPILER.replace("$REAL", real),
        );
    }
    std::fs::set_permissions(&wrappers, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", wrappers.display(), std::env::var("PATH").unwrap());
    let ours = Daemon::start(
        "build200-ours",
        DaemonOptions {
            env: vec![
                ("CONC_DIR".into(), ours_conc.display().to_string()),
                ("DISTCCD_PATH".into(), path.clone()),
            ],
            // The counting compiler writes its samples outside its job.
            args: vec!["--sandbox-write".into(), ours_conc.display().to_string()],
            ..DaemonOptions::default()
        },
    );
    let theirs = DebianDistccd::start_with(
        "build200-theirs",
        &[
            ("CONC_DIR", &theirs_conc.display().to_string()),
            ("DISTCCD_PATH", &path),
            ("PATH", &path),
        ],
    );
    let hosts = format!("127.0.0.1:{}/2,lzo 127.0.0.1:{}/3", ours.port, theirs.port);

    write_project(&work, "local", 200);
    write_project(&work, "dist", 200);
    write_project(&work, "real", 60);
    finish(make(&work.join("local"), "gcc", "g++", &[]), "local make");

    let state = work.join("distcc-dir");
    std::fs::create_dir_all(&state).unwrap();
    let env = vec![
        ("DISTCC_HOSTS", hosts.clone()),
        ("DISTCC_DIR", state.display().to_string()),
        ("DISTCC_FALLBACK", "0".to_string()),
        ("DISTCC_PAUSE_TIME_MSEC", "20".to_string()),
    ];
    let rs = make(
        &work.join("dist"),
        &format!("{} gcc", bin()),
        &format!("{} g++", bin()),
        &env,
    );
    let real = make(&work.join("real"), "distcc gcc", "distcc g++", &env);
    finish(rs, "make with distcc-rs");
    finish(real, "make with Debian's distcc");

    for i in 0..200 {
        for file in [format!("src/f{i:03}.o"), format!("src/f{i:03}.d")] {
            let want = std::fs::read(work.join("local").join(&file)).unwrap();
            let got = std::fs::read(work.join("dist").join(&file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(got == want, "{file} differs from the local build's");
        }
    }
    let (ours_max, theirs_max) = (max_sample(&ours_conc), max_sample(&theirs_conc));
    let jobs = |d: &Path| {
        std::fs::read_to_string(d.join("samples"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(
        jobs(&ours_conc) + jobs(&theirs_conc),
        260,
        "every job ran remotely"
    );
    assert!(ours_max <= 2, "the /2 host ran {ours_max} jobs at once");
    assert!(theirs_max <= 3, "the /3 host ran {theirs_max} jobs at once");
    assert!(
        ours_max == 2 && theirs_max >= 2,
        "the hosts were never busy: {ours_max} {theirs_max}"
    );
}

/// An sshd of our own on a free loopback port, with generated keys.
struct Sshd {
    child: std::process::Child,
    port: u16,
    key: std::path::PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sshd(work: &TestDir) -> Sshd {
    let sshd = need("sshd", "openssh-server");
    need("ssh-keygen", "openssh-client");
    let dir = work.join("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (name, kind) in [("host_key", "ed25519"), ("user_key", "ed25519")] {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
    // sshd refuses to start without its privilege-separation directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    for _ in 0..5 {
        let port = common::free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nAcceptEnv LANG\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let mut exited = false;
        let listening = wait_until(Duration::from_secs(10), || {
            exited = child.try_wait().unwrap().is_some();
            exited || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if listening && !exited {
            return Sshd {
                child,
                port,
                key: dir.join("user_key"),
            };
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "sshd did not start: {}",
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

#[test]
fn ssh_host_compiles_through_openssh_and_our_inetd_daemon() {
    need("gcc", "gcc");
    let work = TestDir::new("ssh");
    let sshd = start_sshd(&work);
    let log = work.join("remote.log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The remote command: our daemon in inetd mode, logging where the test reads.
    let remote = work.script(
        "remote-distccd",
        &format!(
            "exec {} daemon --log-file {} --log-level info \"$@\"",
            bin(),
            log.display()
        ),
    );
    work.write("x.c", "int ssh_x = 3;\n");
    let want = local_object(&work.path, "x.c");
    let ssh = format!(
        "ssh -p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
        sshd.port,
        sshd.key.display()
    );
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    for lzo in ["", ",lzo"] {
        let _ = std::fs::remove_file(work.join("x.o"));
        let hosts = format!("{user}@127.0.0.1/2:{}{lzo}", remote.display());
        let out = client(
            &work.path,
            &hosts,
            &["gcc", "-c", "x.c"],
            &[("DISTCC_SSH", &ssh), ("DISTCC_FALLBACK", "0")],
        );
        assert!(
            out.status.success(),
            "over ssh ({lzo}): {}\nremote log:\n{}",
            text(&out.stderr),
            std::fs::read_to_string(&log).unwrap()
        );
        assert_eq!(std::fs::read(work.join("x.o")).unwrap(), want);
    }
    let remote_log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        remote_log.matches(" COMPILE_OK ").count(),
        2,
        "{remote_log}"
    );
}

#[test]
fn ccache_in_front_compiles_once_then_hits() {
    need("ccache", "ccache");
    let daemon = Daemon::start("ccache", DaemonOptions::default());
    let work = TestDir::new("ccache-work");
    work.write(
        "x.c",
        "#include <stdio.h>\nint main(void) { return puts(\"cached\"); }\n",
    );
    let cache = work.join("cache");
    let run = || {
        let _ = std::fs::remove_file(work.join("x.o"));
        client_via(
            &work.path,
            "ccache",
            &["gcc", "-c", "x.c", "-o", "x.o"],
            &[
                ("CCACHE_DIR", cache.display().to_string()),
                ("CCACHE_PREFIX", bin().to_string()),
                ("DISTCC_HOSTS", daemon.host(true)),
                (
                    "DISTCC_DIR",
                    work.join(".distcc-state").display().to_string(),
                ),
                ("DISTCC_FALLBACK", "0".into()),
            ],
        )
    };
    let first = run();
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(
        daemon.log().matches(" COMPILE_OK ").count(),
        1,
        "{}",
        daemon.log()
    );
    let second = run();
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(work.join("x.o").exists());
    assert_eq!(
        daemon.log().matches(" COMPILE_OK ").count(),
        1,
        "the second build reached the daemon"
    );
    let stats = Command::new("ccache")
        .arg("--print-stats")
        .env("CCACHE_DIR", &cache)
        .output()
        .unwrap();
    let stats = text(&stats.stdout);
    let hits: u64 = stats
        .lines()
        .filter(|l| l.starts_with("direct_cache_hit") || l.starts_with("preprocessed_cache_hit"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    assert_eq!(hits, 1, "{stats}");
}

fn client_via(cwd: &Path, program: &str, args: &[&str], env: &[(&str, String)]) -> Output {
    std::fs::create_dir_all(cwd.join(".distcc-state")).unwrap();
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

#[test]
fn debian_distccmon_text_lists_a_running_distcc_rs_job() {
    need("distccmon-text", "distcc");
    let daemon = Daemon::start(
        "mon",
        DaemonOptions {
            scripts: vec![("gcc".into(), "sleep 3; exec /usr/bin/gcc \"$@\"".into())],
            ..DaemonOptions::default()
        },
    );
    let work = TestDir::new("mon-work");
    work.write("slow.c", "int slow = 1;\n");
    let state = work.join(".distcc-state");
    std::fs::create_dir_all(&state).unwrap();
    let job = Command::new(bin())
        .args(["gcc", "-c", "slow.c"])
        .current_dir(&work.path)
        .env("DISTCC_HOSTS", daemon.host(false))
        .env("DISTCC_DIR", &state)
        .env("DISTCC_NO_REWRITE_CROSS", "1")
        .env("DISTCC_FALLBACK", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = job.id().to_string();
    let mut seen = String::new();
    let _ = wait_until(Duration::from_secs(10), || {
        let out = Command::new("distccmon-text")
            .env("DISTCC_DIR", &state)
            .output()
            .unwrap();
        seen = text(&out.stdout);
        seen.lines()
            .any(|l| l.trim_start().starts_with(&pid) && l.contains("Compile"))
    });
    let line = seen
        .lines()
        .find(|l| l.trim_start().starts_with(&pid))
        .unwrap_or_else(|| panic!("distccmon-text does not list pid {pid}:\n{seen}"));
    assert!(
        line.contains("Compile") && line.contains("slow.c") && line.contains("127.0.0.1[0]"),
        "{line}"
    );
    let out = job.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The state file goes away with the job.
    let left: Vec<_> = std::fs::read_dir(state.join("state")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
