//! One compile job on the server: its private temporary directory, the
//! rewritten command line, the compiler process and the results it leaves.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;

use super::pump::{self, Tree};
use crate::filename;
use crate::masquerade;
use crate::options::{self, Compile, Output, Role, Token, Tokens, Value};
use crate::sandbox::Sandbox;

/// A job's private directory under TMPDIR. Everything the job writes goes
/// here, and the directory is removed when the job is dropped, unless
/// `DISTCC_SAVE_TEMPS` asked to keep it.
#[derive(Debug)]
pub struct JobDir {
    path: PathBuf,
    keep: bool,
}

impl JobDir {
    pub fn create(tmpdir: &Path, keep: bool) -> io::Result<JobDir> {
        let path = crate::sys::make_temp_dir(tmpdir, "distccd_")?;
        Ok(JobDir { path, keep })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for JobDir {
    /// An empty directory (its job has removed the files it knows) goes in
    /// one call; only one with other files left is walked.
    fn drop(&mut self) {
        if self.keep {
            log::info!("keeping temporary files in {}", self.path.display());
        } else if std::fs::remove_dir(&self.path).is_err() {
            if let Err(err) = std::fs::remove_dir_all(&self.path) {
                log::error!("cannot remove {}: {err}", self.path.display());
            }
        }
    }
}

/// A job on the server: a request whose command has been accepted; the
/// source arrives into it. (The client's side of a job is `client::scan::Job`.)
#[derive(Debug)]
pub struct ServerJob {
    pub version: u32,
    /// The arguments as the client sent them.
    pub argv: Vec<Vec<u8>>,
    /// The command to run, after `DISTCC_CMDLIST` rewriting.
    pub program: Vec<u8>,
    /// `argv` read by the option table, once.
    tokens: Tokens,
    compile: Compile,
    /// Pump mode (version 3): the client's files, and where the compiler runs.
    tree: Option<Box<Tree>>,
    dir: JobDir,
    /// The job came over the channel: its reply carries the compiler's identity.
    pub identify: bool,
}

/// What a finished compiler left behind.
pub struct Results {
    pub stderr: Vec<u8>,
    pub stdout: Vec<u8>,
    /// The object file, if the compile succeeded and wrote one.
    pub object: Option<Vec<u8>>,
    /// Pump mode: the `.d` file, rewritten for the client (empty otherwise).
    pub dotd: Vec<u8>,
    /// The compiler's identity, for a job with [`ServerJob::identify`].
    pub identity: Option<std::sync::Arc<crate::identity::Identity>>,
}

impl ServerJob {
    pub fn new(
        version: u32,
        argv: Vec<Vec<u8>>,
        program: Vec<u8>,
        accepted: (Tokens, Compile),
        dir: JobDir,
    ) -> ServerJob {
        let (tokens, compile) = accepted;
        ServerJob {
            version,
            argv,
            program,
            tokens,
            compile,
            tree: None,
            dir,
            identify: false,
        }
    }

    /// Makes this a pump-mode job whose files arrive into `tree`. With a
    /// prefix map the compiler names each file as the client's does, so the
    /// include server's `#line 1` first lines are dropped (see
    /// [`Tree::drop_line_prefixes`]).
    pub fn set_tree(&mut self, mut tree: Tree) {
        tree.drop_line_prefixes(self.is_gcc_or_clang());
        self.tree = Some(Box::new(tree));
    }

    /// Pump mode: the tree the request's files go into.
    pub fn tree_mut(&mut self) -> Option<&mut Tree> {
        self.tree.as_deref_mut()
    }

    /// The client's name for the source file, for logs.
    pub fn input_name(&self) -> &[u8] {
        &self.argv[self.compile.input]
    }

    /// Where the preprocessed source is stored: `input.i`, `input.ii`, ...
    pub fn input_path(&self) -> PathBuf {
        let ext = filename::preprocessed_extension(self.input_name()).unwrap_or(".tmp");
        self.dir.path().join(format!("input{ext}"))
    }

    /// Where the body is received: the source itself, or its LZO form in version 2.
    pub fn body_path(&self, compressed: bool) -> PathBuf {
        if compressed {
            self.dir.path().join("input.lzo")
        } else {
            self.input_path()
        }
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where the compiler writes: the job's directory, or in pump mode its
    /// `out` beside the tree, so that the sandbox can keep the tree (whose
    /// files are the store's, hard-linked) read-only.
    fn work_dir(&self) -> PathBuf {
        match self.tree {
            Some(_) => self.path_of(PUMP_WORK_DIR),
            None => self.dir.path().to_path_buf(),
        }
    }

    /// The compiler's output `name` (`output.o`, `output.d`) in [`Self::work_dir`].
    fn output_of(&self, name: &str) -> PathBuf {
        self.work_dir().join(name)
    }

    /// Decompresses a version 2 body into the source file, producing at most `limit` bytes.
    pub fn unpack_input(&self, limit: usize) -> Result<(), String> {
        let raw_path = self.body_path(true);
        let raw = std::fs::read(&raw_path).map_err(|e| format!("cannot read body: {e}"))?;
        let source = crate::lzo::decompress(&raw, limit)
            .map_err(|e| format!("cannot decompress the source: {e}"))?;
        drop(raw);
        let _ = std::fs::remove_file(&raw_path);
        std::fs::write(self.input_path(), source)
            .map_err(|e| format!("cannot write the source: {e}"))
    }

    /// The compiler's arguments: [`Self::plain_arguments`], or in pump
    /// mode [`pump::arguments`]; then `-pipe` where it helps.
    fn arguments(&self) -> Vec<OsString> {
        let mut out = match &self.tree {
            Some(tree) => {
                let (output, deps) = (self.output_of("output.o"), self.output_of("output.d"));
                let paths = pump::Paths {
                    root: tree.root(),
                    output: &output,
                    deps: &deps,
                    map_root: self.is_gcc_or_clang(),
                };
                pump::arguments(&self.argv, &self.tokens, &self.compile, &paths)
            }
            None => self.plain_arguments(),
        };
        if self.wants_pipe() {
            out.push("-pipe".into());
        }
        out
    }

    /// The arguments for a preprocessed source (protocols 1 and 2), with
    /// the source and output replaced by this job's files, and each
    /// `-x LANG` by its preprocessed form (the source is already
    /// preprocessed: `-x c` becomes `-x cpp-output`).
    fn plain_arguments(&self) -> Vec<OsString> {
        let output = self.output_of("output.o").into_os_string();
        let argv = &self.argv;
        let arg = |i: usize| OsString::from_vec(argv[i].clone());
        let mut out = Vec::with_capacity(argv.len() + 3);
        let mut has_output = false;
        for token in self.tokens.iter() {
            match token {
                Token::Word(i) if i == self.compile.input => {
                    out.push(self.input_path().into_os_string())
                }
                Token::Word(i) if self.compile.output == Some(Output::Word(i)) => {}
                Token::Word(i) | Token::Unknown(i) => out.push(arg(i)),
                Token::Known(_, o, v) if o.role == Role::Output => {
                    has_output = true;
                    if let Value::Separate(_) = v {
                        out.push("-o".into());
                        out.push(output.clone());
                    } else {
                        let mut joined = OsString::from("-o");
                        joined.push(&output);
                        out.push(joined);
                    }
                }
                Token::Known(at, o, v) if o.role == Role::Language => {
                    let lang = options::value_of(argv, at, o, v);
                    let lang = options::preprocessed_language(lang).unwrap_or(lang);
                    if let Value::Separate(_) = v {
                        out.push(arg(at));
                        out.push(OsStr::from_bytes(lang).to_os_string());
                    } else {
                        out.push(OsString::from_vec([&b"-x"[..], lang].concat()));
                    }
                }
                Token::Known(at, _, v) => {
                    out.push(arg(at));
                    if let Value::Separate(j) = v {
                        out.push(arg(j));
                    }
                }
            }
        }
        if !has_output {
            out.push("-o".into());
            out.push(output);
        }
        out
    }

    /// True when the compiler is gcc or clang (possibly triple-prefixed or
    /// versioned) and the command neither has `-pipe` nor `-save-temps`.
    /// `-pipe` lets the compiler proper and the assembler run side by side
    /// instead of through a temporary file; the object is the same.
    fn wants_pipe(&self) -> bool {
        self.is_gcc_or_clang() && !self.tokens.has(Role::Pipe)
    }

    /// True when the compiler is gcc or clang by name (possibly
    /// triple-prefixed or versioned), which take `-pipe` and prefix maps.
    fn is_gcc_or_clang(&self) -> bool {
        let name = filename::basename(&self.program);
        let family = [&b"gcc"[..], b"g++", b"clang", b"clang++", b"cc", b"c++"];
        name.split(|&c| c == b'-')
            .any(|part| family.contains(&part))
    }

    /// Starts the compiler in its own process group, in the job's directory,
    /// with stdin from /dev/null and stdout and stderr into files.
    /// `_DISTCC_SAFEGUARD` comes from the daemon's own environment, set once
    /// by [`set_safeguard`], so that no spawn copies the environment (but
    /// a sandboxed one, whose `TMPDIR` is where it writes). `sandbox`
    /// confines the compiler to the job's directory, and in pump mode its
    /// writes to the `out` directory beside the tree.
    pub fn spawn(&self, program: &Path, sandbox: &Sandbox) -> io::Result<Child> {
        let stdout = crate::sys::open_file(&self.path_of("stdout"), true)?;
        let stderr = crate::sys::open_file(&self.path_of("stderr"), true)?;
        let work = self.work_dir();
        if self.tree.is_some() {
            std::fs::create_dir(&work)?;
        }
        let mut command = Command::new(program);
        sandbox.confine(&mut command, (self.dir.path(), &work), program)?;
        command
            .arg0(OsStr::from_bytes(&self.program))
            .args(self.arguments())
            .current_dir(self.tree.as_ref().map_or(self.dir.path(), |t| t.cwd()))
            .stdin(crate::sys::open_file(Path::new("/dev/null"), false)?)
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
    }

    /// Reads what the compiler left. The object is read only after a
    /// successful compile; a missing object then is `None`.
    pub fn results(&self, success: bool) -> Results {
        let read = |path: PathBuf| read_output(&path).unwrap_or_default();
        Results {
            stderr: read(self.path_of("stderr")),
            stdout: read(self.path_of("stdout")),
            object: if success {
                read_output(&self.output_of("output.o"))
                    .ok()
                    .map(|o| self.client_object(o))
            } else {
                None
            },
            dotd: match (&self.tree, success) {
                (Some(tree), true) => self.client_dotd(tree, &read(self.output_of("output.d"))),
                _ => Vec::new(),
            },
            identity: None,
        }
    }

    /// Runs `program -v`, as this job's compiler would run, in the same
    /// sandbox, its output in the job's directory, for the compiler's
    /// identity (`crate::identity`).
    pub fn probe_identity(
        &self,
        program: &Path,
        sandbox: &Sandbox,
    ) -> io::Result<crate::identity::Identity> {
        let name = String::from_utf8_lossy(filename::basename(&self.program)).into_owned();
        let dir = self.dir.path();
        crate::identity::probe(program, &name, &self.path_of("identity"), |command| {
            command.current_dir(dir);
            sandbox.confine(command, (dir, dir), program)
        })
    }

    /// The object as the client's: in pump mode, with a compiler that was
    /// given no prefix map, the root patched out of its debug sections.
    fn client_object(&self, mut object: Vec<u8>) -> Vec<u8> {
        if let (Some(tree), false) = (&self.tree, self.is_gcc_or_clang()) {
            let root = tree.root().as_os_str().as_bytes();
            super::debuginfo::patch_root(&mut object, root);
        }
        object
    }

    /// The compiler's `.d` file as the client's, naming the client's target.
    fn client_dotd(&self, tree: &Tree, dotd: &[u8]) -> Vec<u8> {
        let target = pump::dotd_target(&self.argv, &self.tokens, &self.compile);
        let output = self.output_of("output.o").into_os_string();
        let root = tree.root().as_os_str().as_bytes();
        super::dotd::clean(dotd, output.as_bytes(), &target, root)
    }
}

/// A running compiler, to be signalled from the loop while a worker waits
/// for it.
pub struct Compiler {
    pub pid: u32,
    /// Set, under the lock, once the compiler has exited: its process group
    /// may then be gone and its number reused, so it is no longer signalled.
    exited: Mutex<bool>,
}

impl Compiler {
    /// The compiler just started as process (and process group) `pid`.
    pub fn started(pid: u32) -> Compiler {
        Compiler {
            pid,
            exited: Mutex::new(false),
        }
    }

    /// Sends `sig` to the compiler's process group, unless it has exited.
    pub fn signal(&self, sig: libc::c_int) {
        let exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        if !*exited {
            crate::sys::kill_group(self.pid, sig);
        }
    }

    /// Marks the compiler exited (it is still a zombie, so its process group
    /// number is not yet reused): from now on it is never signalled.
    pub fn mark_exited(&self) {
        *self.exited.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }
}

/// The files a job writes itself, removed by name when it ends, so that its
/// directory is usually empty by then (see `JobDir`'s drop): the first two
/// in the job's directory, the outputs in [`ServerJob::work_dir`].
const JOB_FILES: [&str; 2] = ["stdout", "stderr"];
const OUTPUT_FILES: [&str; 2] = ["output.o", "output.d"];

/// A pump job's directory for what its compiler writes, beside its tree.
const PUMP_WORK_DIR: &str = "out";

impl Drop for ServerJob {
    /// Removes the job's own files (not when `DISTCC_SAVE_TEMPS` keeps them);
    /// its `JobDir` then removes the directory and anything else in it.
    fn drop(&mut self) {
        if self.dir.keep {
            return;
        }
        let _ = std::fs::remove_file(self.input_path());
        for name in JOB_FILES {
            let _ = std::fs::remove_file(self.path_of(name));
        }
        for name in OUTPUT_FILES {
            let _ = std::fs::remove_file(self.output_of(name));
        }
        if self.tree.is_some() {
            let _ = std::fs::remove_dir(self.work_dir());
        }
    }
}

/// Reads a file the compiler wrote; an empty one (stdout and stderr, as a
/// rule) costs no read.
fn read_output(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = crate::sys::open_file(path, false)?;
    let len = file.metadata()?.len();
    let mut out = Vec::new();
    if len > 0 {
        out.try_reserve_exact(len as usize)?;
        (&file).read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Where the daemon looks for compilers: PATH (after `DISTCCD_PATH`) without
/// the masquerade directories, resolved once at start-up, since neither
/// changes while the daemon runs.
pub struct CompilerSearch {
    dirs: Vec<PathBuf>,
    /// This executable, resolved, so a link to it is never run as a compiler.
    own: Option<PathBuf>,
}

impl CompilerSearch {
    /// The search on this process's PATH.
    pub fn new(masquerade_dirs: &[PathBuf]) -> CompilerSearch {
        Self::on_path(
            &std::env::var_os("PATH").unwrap_or_default(),
            masquerade_dirs,
        )
    }

    /// The search on a PATH-style list of directories.
    pub fn on_path(path: &OsStr, masquerade_dirs: &[PathBuf]) -> CompilerSearch {
        let masquerade: Vec<PathBuf> = masquerade_dirs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .collect();
        let dirs = masquerade::dirs(path)
            .filter(|dir| {
                let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                !masquerade_dirs.contains(dir) && !masquerade.contains(&real)
            })
            .collect();
        CompilerSearch {
            dirs,
            own: masquerade::self_exe(),
        }
    }

    /// Finds the compiler to run, skipping anything that resolves to distcc
    /// itself, so a whitelist link never makes the daemon run itself. A path
    /// that is not runnable is tried again by its basename, as distccd does.
    pub fn find(&self, program: &[u8]) -> Option<PathBuf> {
        let program = Path::new(OsStr::from_bytes(program));
        if program.as_os_str().as_bytes().contains(&b'/') {
            if crate::sys::is_executable(program) {
                return Some(program.to_path_buf());
            }
            return self.find(program.file_name()?.as_bytes());
        }
        let own = self.own.as_deref().unwrap_or(Path::new(""));
        self.dirs
            .iter()
            .map(|dir| dir.join(program))
            .find(|c| crate::sys::is_executable(c) && !masquerade::is_masquerade(c, own))
    }
}

/// Sets `_DISTCC_SAFEGUARD` in the daemon's environment to one level above
/// ours, for every compiler it starts. Call before any thread starts.
pub fn set_safeguard() {
    let value = child_safeguard(std::env::var_os(masquerade::SAFEGUARD_VAR).as_deref());
    std::env::set_var(masquerade::SAFEGUARD_VAR, value);
}

/// The `_DISTCC_SAFEGUARD` value for the daemon's compilers, given the
/// daemon's own: read by the client's rule ([`masquerade::parse_safeguard`]).
fn child_safeguard(ours: Option<&OsStr>) -> String {
    masquerade::child_safeguard_value(masquerade::parse_safeguard(ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(line: &str) -> ServerJob {
        let a: Vec<Vec<u8>> = line.split_whitespace().map(|w| w.into()).collect();
        let accepted = options::check_job(&a).unwrap();
        let dir = JobDir::create(&std::env::temp_dir(), false).unwrap();
        ServerJob::new(1, a, b"gcc".to_vec(), accepted, dir)
    }

    #[test]
    fn source_and_output_are_replaced() {
        let j = job("gcc -c ../src/x.c -o obj/x.o -O2");
        let dir = j.dir.path().to_path_buf();
        let args = j.arguments();
        assert_eq!(
            args,
            vec![
                OsString::from("-c"),
                dir.join("input.i").into_os_string(),
                OsString::from("-o"),
                dir.join("output.o").into_os_string(),
                OsString::from("-O2"),
                OsString::from("-pipe"),
            ]
        );
        let j = job("g++ -c x.cc");
        let args = j.arguments();
        assert_eq!(args[1], j.dir.path().join("input.ii").into_os_string());
        assert_eq!(args[2], "-o");
        let j = job("gcc -c x.c -ox.o");
        let mut joined = OsString::from("-o");
        joined.push(j.dir.path().join("output.o"));
        assert_eq!(j.arguments()[2], joined);
    }

    #[test]
    fn pipe_is_added_only_for_gcc_and_clang() {
        let with = |program: &[u8], line: &str| {
            let mut j = job(line);
            j.program = program.to_vec();
            j.arguments().iter().filter(|a| *a == "-pipe").count()
        };
        assert_eq!(with(b"x86_64-linux-gnu-gcc", "gcc -c x.c"), 1);
        assert_eq!(with(b"/usr/bin/clang-14", "clang -c x.c"), 1);
        assert_eq!(with(b"g++-12", "g++ -c x.c"), 1);
        assert_eq!(with(b"gcc", "gcc -c x.c -pipe"), 1);
        assert_eq!(with(b"gcc", "gcc -c x.c -save-temps"), 0);
        assert_eq!(with(b"trivcc", "trivcc -c x.c"), 0);
        assert_eq!(with(b"/opt/tcc", "tcc -c x.c"), 0);
    }

    #[test]
    fn languages_become_their_preprocessed_forms() {
        let j = job("gcc -x c -c x.c");
        assert_eq!(j.arguments()[1], "cpp-output");
        // Joined -xLANG last: 3.4's scan tests the argument after it.
        let j = job("g++ -c x.cc -xc++");
        assert_eq!(j.arguments()[2], "-xc++-cpp-output");
    }

    #[test]
    fn the_directory_goes_with_the_job() {
        let j = job("gcc -c x.c");
        let dir = j.dir.path().to_path_buf();
        std::fs::write(dir.join("stray"), b"x").unwrap();
        assert!(dir.exists());
        drop(j);
        assert!(!dir.exists());
    }

    #[test]
    fn safeguard_is_read_by_the_clients_rule() {
        // A set value that reads as 0 is level 1, as in 3.4's
        // dcc_recursion_safeguard, so the compiler gets 2.
        for (ours, child) in [
            (None, "1"),
            (Some("0"), "2"),
            (Some(""), "2"),
            (Some("x"), "2"),
        ] {
            assert_eq!(child_safeguard(ours.map(OsStr::new)), child, "{ours:?}");
        }
        assert_eq!(child_safeguard(Some(OsStr::new("3"))), "4");
        assert_eq!(child_safeguard(Some(OsStr::new("9"))), "9");
    }

    #[test]
    fn compilers_are_found_on_path_but_never_distcc() {
        let search = CompilerSearch::new(&[]);
        assert!(search.find(b"sh").is_some());
        assert!(search.find(b"/bin/sh").is_some());
        assert!(search.find(b"/no/such/dir/sh").is_some());
        assert!(search.find(b"no-such-compiler-distcc-rs").is_none());
    }

    #[test]
    fn masquerade_directories_on_path_are_skipped() {
        let tmp = crate::testing::TestDir::new("search");
        let masq = tmp.path.clone();
        std::os::unix::fs::symlink("/bin/sh", masq.join("sh")).unwrap();
        let path = std::env::join_paths([masq.clone(), PathBuf::from("/bin")]).unwrap();
        let found = CompilerSearch::on_path(&path, &[]).find(b"sh").unwrap();
        assert_eq!(found, masq.join("sh"));
        let found = CompilerSearch::on_path(&path, std::slice::from_ref(&masq))
            .find(b"sh")
            .unwrap();
        assert_eq!(found, PathBuf::from("/bin/sh"));
    }
}
