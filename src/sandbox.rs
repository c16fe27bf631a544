//! The sandbox every compiler the daemon starts runs in: Landlock on Linux, unveil and pledge on OpenBSD, decided before the fork and applied in the child just before exec.
//!
//! A compiler may read and execute what compilers need ([`READ_DIRS`],
//! [`READ_FILES`], its own directories, `--sandbox-allow`), and read and
//! write only in its job's directory. docs/sandbox.md says how the lists
//! were found. The rules are built in the parent, which may allocate and
//! open files; the child between fork and exec makes only
//! async-signal-safe system calls on what was built.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the daemon's options ask of the sandbox.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `--no-sandbox`: compilers run as the daemon's user, unconfined.
    pub off: bool,
    /// `--require-sandbox`: refuse to start where there is no sandbox.
    pub require: bool,
    /// `--sandbox-allow PATH`: more for compilers to read and execute.
    pub extra_read: Vec<PathBuf>,
    /// `--sandbox-write DIR`: more for compilers to read and write, such as
    /// the cache directory of a ccache the daemon runs as its compiler.
    pub extra_write: Vec<PathBuf>,
}

/// Directories (and all beneath them) a compiler may read and execute.
/// On a merged-/usr system the last five are links into `/usr`.
pub const READ_DIRS: &[&str] = &["/usr", "/bin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Single files a compiler may read: the dynamic loader's cache and
/// preload list, and the release files clang's driver reads to know the
/// distribution (those missing are skipped).
pub const READ_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/lsb-release",
    "/etc/redhat-release",
    "/etc/env.d/gcc",
    "/proc/cpuinfo",
    "/dev/urandom",
];

/// Files a compiler may also write: only the null device.
pub const WRITE_FILES: &[&str] = &["/dev/null"];

/// Where the sandbox stands, for the start-up line and `--require-sandbox`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Compilers are confined; the text names the mechanism.
    On(String),
    /// `--no-sandbox`.
    Off,
    /// This system cannot confine compilers; the text says why.
    Unavailable(String),
}

/// The sandbox the daemon applies to each compiler: built once at start.
pub struct Sandbox {
    status: Status,
    #[cfg(target_os = "linux")]
    fixed: Option<landlock_rules::Fixed>,
    #[cfg(target_os = "openbsd")]
    extra: Settings,
}

impl Sandbox {
    /// The sandbox `settings` ask for, on what this system offers.
    #[cfg(target_os = "linux")]
    pub fn new(settings: &Settings) -> Sandbox {
        if settings.off {
            return Sandbox {
                status: Status::Off,
                fixed: None,
            };
        }
        match landlock_rules::Fixed::open(settings) {
            Ok(fixed) => Sandbox {
                status: Status::On(fixed.describe()),
                fixed: Some(fixed),
            },
            Err(why) => Sandbox {
                status: Status::Unavailable(why),
                fixed: None,
            },
        }
    }

    /// The sandbox `settings` ask for: unveil and pledge, which every
    /// supported OpenBSD has.
    #[cfg(target_os = "openbsd")]
    pub fn new(settings: &Settings) -> Sandbox {
        let status = match settings.off {
            true => Status::Off,
            false => Status::On("unveil and pledge".into()),
        };
        let extra = settings.clone();
        Sandbox { status, extra }
    }

    /// Elsewhere there is none.
    #[cfg(not(any(target_os = "linux", target_os = "openbsd")))]
    pub fn new(settings: &Settings) -> Sandbox {
        let status = match settings.off {
            true => Status::Off,
            false => Status::Unavailable("no sandbox for compilers on this system".into()),
        };
        Sandbox { status }
    }

    /// No sandbox, for tests and tools that run compilers unconfined.
    pub fn none() -> Sandbox {
        Sandbox::new(&Settings {
            off: true,
            ..Settings::default()
        })
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// True when compilers are confined.
    pub fn is_on(&self) -> bool {
        matches!(self.status, Status::On(_))
    }

    /// Sets `command` (the compiler at `compiler`) to run confined to its
    /// job: `job_dir` to read, and `work_dir` (the same, or one beneath
    /// it) to write, with its temporary files there too (`TMPDIR`).
    /// Without a sandbox the command is left as it is.
    pub fn confine(
        &self,
        command: &mut Command,
        (job_dir, work_dir): (&Path, &Path),
        compiler: &Path,
    ) -> io::Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        command.env("TMPDIR", work_dir);
        let mut reads = compiler_dirs(compiler);
        reads.push(job_dir.to_path_buf());
        #[cfg(target_os = "linux")]
        if let Some(fixed) = &self.fixed {
            let ruleset = fixed.for_job(work_dir, &reads)?;
            landlock_rules::restrict_before_exec(command, ruleset);
        }
        #[cfg(target_os = "openbsd")]
        {
            let reads = reads.iter().chain(&self.extra.extra_read);
            let extra = self.extra.extra_write.iter().map(PathBuf::as_path);
            let writes = std::iter::once(work_dir).chain(extra);
            let paths = unveil_rules::Paths::new(writes, reads)?;
            unveil_rules::restrict_before_exec(command, paths);
        }
        #[cfg(not(any(target_os = "linux", target_os = "openbsd")))]
        let _ = reads;
        Ok(())
    }
}

/// The compiler's own directories: the one it was found in and, if it is
/// a link, the one it leads to; for a `bin` directory also its sibling
/// `lib`, `lib64` and `libexec`, where a toolchain outside `/usr` keeps its
/// compiler proper and its libraries. (Not the whole prefix: a
/// `distcc-rs wrap` instance keeps its allow list and key beside `bin`.)
pub fn compiler_dirs(compiler: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let real = std::fs::canonicalize(compiler).ok();
    for path in std::iter::once(compiler).chain(real.as_deref()) {
        let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
            continue;
        };
        if dir.file_name().map(OsStr::as_bytes) == Some(b"bin") {
            if let Some(prefix) = dir.parent() {
                dirs.extend(["lib", "lib64", "libexec"].map(|d| prefix.join(d)));
            }
        }
        dirs.push(dir.to_path_buf());
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

#[cfg(target_os = "linux")]
mod landlock_rules {
    //! Landlock: a ruleset per job, made from descriptors opened once.

    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use landlock::{
        Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreated, RulesetCreatedAttr, Scope, ABI,
    };

    use super::{Settings, READ_DIRS, READ_FILES, WRITE_FILES};

    /// The newest ABI whose rights are asked for: files up to V5 (ioctl on
    /// devices), TCP bind and connect (V4) and the scopes of V6 (signals
    /// and abstract UNIX sockets outside the sandbox). An older kernel
    /// enforces what it knows.
    const USED: ABI = ABI::V6;

    /// `LANDLOCK_CREATE_RULESET_VERSION`.
    const CREATE_RULESET_VERSION: libc::c_uint = 1;

    /// The kernel's Landlock ABI version, or why there is none.
    pub fn kernel_abi() -> Result<libc::c_long, String> {
        // SAFETY: the documented version query takes no ruleset attribute.
        let version = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        };
        if version >= 1 {
            Ok(version)
        } else {
            let err = io::Error::last_os_error();
            Err(format!("this kernel has no Landlock ({err})"))
        }
    }

    fn read_rights() -> BitFlags<AccessFs> {
        AccessFs::from_read(USED)
    }

    /// In the job's directory: everything but executing, and making
    /// devices and sockets.
    fn job_rights() -> BitFlags<AccessFs> {
        AccessFs::from_all(USED)
            & !(AccessFs::Execute
                | AccessFs::MakeChar
                | AccessFs::MakeBlock
                | AccessFs::MakeSock
                | AccessFs::IoctlDev)
    }

    /// The rules every job shares, as open descriptors.
    pub struct Fixed {
        abi: libc::c_long,
        rules: Vec<(PathFd, BitFlags<AccessFs>)>,
    }

    impl Fixed {
        /// Opens the fixed paths (those missing are skipped), once Landlock
        /// is known to be there.
        pub fn open(settings: &Settings) -> Result<Fixed, String> {
            let abi = kernel_abi()?;
            let write = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;
            let reads = READ_DIRS.iter().chain(READ_FILES).map(PathBuf::from);
            let rules = reads
                .chain(settings.extra_read.iter().cloned())
                .map(|p| (p, read_rights()))
                .chain(WRITE_FILES.iter().map(|p| (PathBuf::from(p), write)))
                .chain(
                    settings
                        .extra_write
                        .iter()
                        .map(|p| (p.clone(), job_rights())),
                )
                .filter_map(|(path, access)| Some((PathFd::new(path).ok()?, access)))
                .collect();
            Ok(Fixed { abi, rules })
        }

        pub fn describe(&self) -> String {
            format!("Landlock (kernel ABI {})", self.abi)
        }

        /// The ruleset of one job, as its descriptor.
        pub fn for_job(&self, job_dir: &Path, compiler_dirs: &[PathBuf]) -> io::Result<OwnedFd> {
            let job = PathFd::new(job_dir).map_err(io::Error::other)?;
            let built = self.build(job, compiler_dirs).map_err(io::Error::other)?;
            Option::<OwnedFd>::from(built)
                .ok_or_else(|| io::Error::other("Landlock made no ruleset"))
        }

        fn build(
            &self,
            job: PathFd,
            compiler_dirs: &[PathBuf],
        ) -> Result<RulesetCreated, landlock::RulesetError> {
            let mut ruleset = Ruleset::default()
                .handle_access(AccessFs::from_all(USED))?
                .handle_access(AccessNet::from_all(USED))?
                .scope(Scope::from_all(USED))?
                .create()?;
            for (fd, access) in &self.rules {
                ruleset = ruleset.add_rule(PathBeneath::new(fd, *access))?;
            }
            for dir in compiler_dirs {
                if let Ok(fd) = PathFd::new(dir) {
                    ruleset = ruleset.add_rule(PathBeneath::new(fd, read_rights()))?;
                }
            }
            ruleset.add_rule(PathBeneath::new(job, job_rights()))
        }
    }

    /// Makes the child enforce `ruleset` on itself after the fork: two
    /// system calls, both async-signal-safe. The descriptor is closed in
    /// the parent when `command` is dropped, and in the child by exec.
    pub fn restrict_before_exec(command: &mut Command, ruleset: OwnedFd) {
        let hook = move || {
            let fd = ruleset.as_raw_fd();
            // SAFETY: plain system calls on integers, no allocation.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_landlock_restrict_self, fd, 0) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the hook makes only async-signal-safe system calls.
        unsafe { command.pre_exec(hook) };
    }
}

#[cfg(target_os = "openbsd")]
mod unveil_rules {
    //! OpenBSD: unveil for the paths, pledge's execpromises for the
    //! compiler's image (the unveils survive its exec only with them).

    use std::ffi::CString;
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::{READ_DIRS, READ_FILES, WRITE_FILES};

    /// What a compiler may do after exec: files, its own children (the
    /// driver runs the compiler proper and the assembler), nothing else.
    const EXEC_PROMISES: &str = "stdio rpath wpath cpath dpath tmppath fattr flock proc exec";

    /// OpenBSD's loader reads its hints here.
    const LOADER_HINTS: &str = "/var/run/ld.so.hints";

    /// Each path and its unveil permissions, as C strings made before the fork.
    pub struct Paths {
        list: Vec<(CString, &'static [u8])>,
        promises: CString,
    }

    fn c(path: &Path) -> io::Result<CString> {
        CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
    }

    impl Paths {
        pub fn new<'a>(
            writes: impl Iterator<Item = &'a Path>,
            reads: impl Iterator<Item = &'a PathBuf>,
        ) -> io::Result<Paths> {
            let mut list = Vec::new();
            for path in writes {
                list.push((c(path)?, &b"rwc\0"[..]));
            }
            let fixed = READ_DIRS.iter().chain(READ_FILES).chain([&LOADER_HINTS]);
            for path in fixed.map(Path::new).chain(reads.map(PathBuf::as_path)) {
                if path.exists() {
                    list.push((c(path)?, b"rx\0"));
                }
            }
            for path in WRITE_FILES {
                list.push((c(Path::new(path))?, b"rw\0"));
            }
            let promises = CString::new(EXEC_PROMISES).map_err(io::Error::other)?;
            Ok(Paths { list, promises })
        }
    }

    /// Makes the child unveil the paths, lock the list and pledge the
    /// compiler's promises, with system calls only.
    pub fn restrict_before_exec(command: &mut Command, paths: Paths) {
        let hook = move || {
            // SAFETY: system calls on NUL-terminated strings made before the fork.
            unsafe {
                for (path, perms) in &paths.list {
                    if libc::unveil(path.as_ptr(), perms.as_ptr().cast()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::unveil(std::ptr::null(), std::ptr::null()) != 0
                    || libc::pledge(std::ptr::null(), paths.promises.as_ptr()) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the hook makes only async-signal-safe system calls.
        unsafe { command.pre_exec(hook) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiler_in_a_bin_directory_gets_its_prefix_libraries_but_not_the_prefix() {
        let dirs = compiler_dirs(Path::new("/no/such/opt/llvm/bin/clang"));
        let want: Vec<PathBuf> = ["bin", "lib", "lib64", "libexec"]
            .iter()
            .map(|d| Path::new("/no/such/opt/llvm").join(d))
            .collect();
        assert_eq!(dirs, want);
        assert!(!dirs.contains(&PathBuf::from("/no/such/opt/llvm")));
        assert_eq!(
            compiler_dirs(Path::new("/no/such/tools/cc")),
            vec![PathBuf::from("/no/such/tools")]
        );
    }

    #[test]
    fn off_is_off() {
        let sandbox = Sandbox::none();
        assert_eq!(sandbox.status(), &Status::Off);
        let mut command = Command::new("true");
        sandbox
            .confine(
                &mut command,
                (Path::new("/tmp"), Path::new("/tmp")),
                Path::new("/bin/true"),
            )
            .unwrap();
        assert!(command.get_envs().next().is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_confined_child_reads_usr_but_not_outside_its_job_dir() {
        let tmp = crate::testing::TestDir::new("sandbox");
        let (job, outside) = (tmp.path.join("job"), tmp.path.join("outside"));
        std::fs::create_dir(&job).unwrap();
        std::fs::write(&outside, "secret").unwrap();
        let sandbox = Sandbox::new(&Settings::default());
        assert!(sandbox.is_on(), "{:?}", sandbox.status());
        let script = format!(
            "test -r /usr/bin/env && echo in > {0}/made && ! cat {1} && ! echo x > {1}.new",
            job.display(),
            outside.display()
        );
        let mut command = Command::new("/bin/sh");
        command.args(["-c", &script]);
        sandbox
            .confine(&mut command, (&job, &job), Path::new("/bin/sh"))
            .unwrap();
        let out = command.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read(job.join("made")).unwrap(), b"in\n");
        assert!(!tmp.path.join("outside.new").exists());
    }
}
