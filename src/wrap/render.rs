//! The text of every file `distcc-rs wrap` writes: the compiler wrappers,
//! the `DISTCC_CMDLIST` whitelist, the systemd unit and the OpenBSD rc.d
//! script of one cross-helper instance.
//!
//! Every path and word that goes into these files has been checked by
//! [`super::Instance::new`] to hold only `[A-Za-z0-9/._+:-]`, so nothing here
//! needs shell or systemd quoting, and no `%` specifier or `$` reaches a unit.

use std::path::{Path, PathBuf};

use super::Instance;

/// How a wrapper runs the compiler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// The C compiler driver (`clang`).
    C,
    /// C++ mode (`clang++`), by `--driver-mode=g++` on the same binary, so
    /// that a `--compiler /opt/llvm/bin/clang` needs no `clang++` beside it.
    Cxx,
    /// The preprocessor alone (`clang-cpp`), by `--driver-mode=cpp`.
    Cpp,
}

/// The wrapper names under `DIR/bin`, in the order `commands.allow` lists
/// them. The `TRIPLE-cc` and `TRIPLE-c++` names are there because autoconf's
/// `--host=TRIPLE` looks for `TRIPLE-cc` when it finds no `TRIPLE-gcc`.
pub fn wrapper_names(triple: &str) -> Vec<(String, Driver)> {
    let mut names: Vec<(String, Driver)> = [
        ("cc", Driver::C),
        ("c++", Driver::Cxx),
        ("clang", Driver::C),
        ("clang++", Driver::Cxx),
        ("clang-cpp", Driver::Cpp),
    ]
    .iter()
    .map(|&(n, d)| (n.to_string(), d))
    .collect();
    for (suffix, driver) in [
        ("clang", Driver::C),
        ("clang++", Driver::Cxx),
        ("cc", Driver::C),
        ("c++", Driver::Cxx),
    ] {
        names.push((format!("{triple}-{suffix}"), driver));
    }
    names
}

/// The first line after the shebang of every file wrap writes: it says
/// where the file came from and is how a human tells it from a real compiler.
fn written_by(what: &str) -> String {
    format!("# {what}: written by `distcc-rs wrap`; rerun wrap to change it, wrap --remove to remove it.\n")
}

/// A wrapper script: `exec COMPILER [--driver-mode=...] --target=TRIPLE "$@"`.
pub fn wrapper(instance: &Instance, name: &str, driver: Driver) -> String {
    let mode = match driver {
        Driver::C => "",
        Driver::Cxx => " --driver-mode=g++",
        Driver::Cpp => " --driver-mode=cpp",
    };
    format!(
        "#!/bin/sh\n{}exec {}{mode} --target={} \"$@\"\n",
        written_by(name),
        instance.compiler.display(),
        instance.target
    )
}

/// `DIR/bin/NAME` for every wrapper.
pub fn wrapper_paths(instance: &Instance) -> Vec<PathBuf> {
    wrapper_names(&instance.target)
        .into_iter()
        .map(|(name, _)| instance.bin_dir().join(name))
        .collect()
}

/// The daemon's whitelist: one absolute wrapper path a line. With the
/// daemon's default `DISTCC_CMDLIST_NUMWORDS=1`, a client's `cc` (or
/// `/usr/bin/cc`) selects the `.../bin/cc` line, which is what runs.
pub fn commands_allow(instance: &Instance) -> String {
    let mut out = String::new();
    for path in wrapper_paths(instance) {
        out.push_str(&path.display().to_string());
        out.push('\n');
    }
    out
}

/// PATH for the daemon and its compilers: the wrappers first.
pub fn search_path(instance: &Instance) -> String {
    format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        instance.bin_dir().display()
    )
}

/// The daemon's environment: what makes it run the wrappers and only them.
pub fn environment(instance: &Instance) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", search_path(instance)),
        ("DISTCCD_PATH", search_path(instance)),
        (
            "DISTCC_CMDLIST",
            instance.commands_allow().display().to_string(),
        ),
    ]
}

/// The daemon options an instance always has (after the applet name): the
/// foreground and the port, which tell its process from another instance's.
fn fixed_flags(instance: &Instance) -> String {
    format!("--no-detach --port {}", instance.port)
}

/// The options a site may change: access list, job slots, statistics, and
/// what the compilers' sandbox must let the wrapped compiler read.
fn site_flags(instance: &Instance) -> String {
    let mut flags = Vec::new();
    for dir in sandbox_allow(&instance.compiler) {
        flags.push(format!("--sandbox-allow {}", dir.display()));
    }
    for allow in &instance.allow {
        flags.push(format!("--allow {allow}"));
    }
    if let Some(jobs) = instance.jobs {
        flags.push(format!("--jobs {jobs}"));
    }
    if let Some(port) = instance.stats_port {
        flags.push(format!("--stats --stats-port {port}"));
    }
    if instance.key {
        flags.push(format!(
            "--key {} --auth-keys {}",
            instance.key_file().display(),
            instance.auth_keys_file().display()
        ));
    }
    flags.join(" ")
}

/// The wrapped compiler's own directories that the daemon's sandbox does
/// not already allow: the daemon only sees the wrapper scripts in the
/// instance's `bin`, so a compiler outside `/usr` (`/opt/llvm/bin/clang`)
/// must be named. Those that do not exist are left out.
fn sandbox_allow(compiler: &std::path::Path) -> Vec<std::path::PathBuf> {
    let allowed =
        |dir: &std::path::Path| crate::sandbox::READ_DIRS.iter().any(|d| dir.starts_with(d));
    crate::sandbox::compiler_dirs(compiler)
        .into_iter()
        .filter(|dir| !allowed(dir) && dir.is_dir())
        .collect()
}

/// The sandbox of the generated unit and of contrib/systemd/distcc-rs.service
/// (a unit test keeps the two the same). See the contrib unit for what is
/// left out and why. `ProtectHome=` and the user lines are added per instance.
pub const HARDENING: &str = "\
ProtectSystem=strict
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
";

/// True if `path` lies where `ProtectHome=yes` would hide it.
fn under_home(path: &Path) -> bool {
    ["/home", "/root", "/run/user"]
        .iter()
        .any(|top| path.starts_with(top))
}

/// The systemd unit. One `Environment="K=V"` a line and a one-line
/// `ExecStart=` with no specifiers, so that a test (or a person) can start
/// the same daemon from these lines without systemd.
pub fn unit(instance: &Instance) -> String {
    let mut out = String::new();
    out.push_str(&written_by(&instance.unit_name()));
    out.push_str(&format!(
        "# A distcc-rs daemon that compiles for {} with {}, running only\n\
         # the wrappers in {} (DISTCC_CMDLIST). It logs to the journal.\n\n",
        instance.target,
        instance.compiler.display(),
        instance.bin_dir().display()
    ));
    out.push_str(&format!(
        "[Unit]\nDescription=distcc-rs cross helper for {} ({})\n\
         Documentation=https://www.distcc.org/\nAfter=network.target\n\n[Service]\nType=simple\n",
        instance.target, instance.name
    ));
    for (key, value) in environment(instance) {
        out.push_str(&format!("Environment=\"{key}={value}\"\n"));
    }
    let site = site_flags(instance);
    out.push_str(&format!(
        "ExecStart={} daemon {} --log-stderr{}{site}\n",
        instance.exe.display(),
        fixed_flags(instance),
        if site.is_empty() { "" } else { " " }
    ));
    out.push_str("Restart=on-failure\n");
    match &instance.user {
        Some(user) => out.push_str(&format!("User={user}\n")),
        None => out.push_str("DynamicUser=yes\n"),
    }
    let home = [instance.dir.as_path(), instance.compiler.as_path()]
        .iter()
        .any(|p| under_home(p));
    out.push_str(if home {
        "ProtectHome=read-only\n"
    } else {
        "ProtectHome=yes\n"
    });
    out.push_str(HARDENING);
    out.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    out
}

/// The OpenBSD rc.d script, in the conventions of contrib/rc.d/distccd:
/// the daemon in the foreground and `rc_bg=YES`. `rc_start` runs it through
/// `env` with the instance's environment (su -l clears the caller's), and
/// env execs the daemon, so the process's command line is exactly
/// `${daemon} daemon --no-detach --port N ${daemon_flags}`, which is `pexp`.
pub fn rc_script(instance: &Instance) -> String {
    let env: Vec<String> = environment(instance)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let user = instance.user.as_deref().unwrap_or("_distcc");
    format!(
        "#!/bin/ksh\n\
         #\n\
         {written}\
         # distcc-rs cross helper for {target} ({name}): install as\n\
         # /etc/rc.d/{script} (0555), then `rcctl enable {script}` and\n\
         # `rcctl start {script}`. The user must exist:\n\
         #   useradd -s /sbin/nologin -d /var/empty {user}\n\
         # Needs OpenBSD 6.6 or later (rc_exec).\n\
         \n\
         daemon=\"{exe}\"\n\
         daemon_flags=\"{site}\"\n\
         daemon_user=\"{user}\"\n\
         \n\
         . /etc/rc.d/rc.subr\n\
         \n\
         # The applet, the foreground and the port are not flags a site\n\
         # changes: they are what tells this instance's process from others.\n\
         _fixed=\"daemon {fixed}\"\n\
         pexp=\"$(eval echo ${{daemon}} ${{_fixed}}${{daemon_flags:+ ${{daemon_flags}}}})\"\n\
         rc_bg=YES\n\
         rc_reload=NO\n\
         \n\
         rc_start() {{\n\
         \trc_exec \"env {env} ${{daemon}} ${{_fixed}} ${{daemon_flags}}\"\n\
         }}\n\
         \n\
         rc_cmd $1\n",
        written = written_by(&instance.rc_script_name()),
        target = instance.target,
        name = instance.name,
        script = instance.rc_script_name(),
        exe = instance.exe.display(),
        site = site_flags(instance),
        fixed = fixed_flags(instance),
        env = env.join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiler_outside_usr_is_allowed_to_the_sandbox_with_its_libraries() {
        use std::path::{Path, PathBuf};
        assert!(sandbox_allow(Path::new("/usr/bin/clang")).is_empty());
        assert!(sandbox_allow(Path::new("/bin/sh")).is_empty());
        let tmp = crate::testing::TestDir::new("wrap-sandbox");
        let prefix = tmp.path.join("llvm");
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        std::fs::create_dir_all(prefix.join("lib")).unwrap();
        let want: Vec<PathBuf> = vec![prefix.join("bin"), prefix.join("lib")];
        assert_eq!(sandbox_allow(&prefix.join("bin/clang")), want);
    }

    #[test]
    fn the_generated_unit_is_as_hardened_as_the_contrib_unit() {
        let contrib = include_str!("../../contrib/systemd/distcc-rs.service");
        for line in HARDENING.lines() {
            assert!(
                contrib.lines().any(|l| l == line),
                "contrib/systemd/distcc-rs.service lacks {line}"
            );
        }
        for line in contrib.lines() {
            let key = line.split('=').next().unwrap_or("");
            if key.starts_with("Protect")
                || key.starts_with("Restrict")
                || key.starts_with("Private")
            {
                assert!(
                    HARDENING.lines().any(|l| l == line) || key == "ProtectHome",
                    "the generated unit lacks {line}"
                );
            }
        }
    }
}
