//! The client's files: temporary files removed on failure and on SIGINT, SIGTERM or SIGHUP, and objects written beside their target and renamed into place.
//!
//! A received object never appears half-written under its real name: it is
//! written to `.NAME.distcc-rs-XXXXXX` in the target's directory and renamed
//! over the target only once the whole body has arrived. A target that exists
//! and is not a regular file (`/dev/null`, a fifo) is written in place, as
//! distcc does, because renaming over it would replace it.
//!
//! Every temporary file is registered with the signal cleanup: the handler
//! unlinks what is registered, stops a running preprocessor, restores the
//! default action and re-raises, so the build still sees the signal.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

/// How many temporary files can be registered at once; a job uses at most three.
const SLOTS: usize = 8;

/// Paths the signal handler unlinks. A path's C string is leaked on purpose:
/// the handler may read a pointer at any moment, so it is never freed.
static REGISTERED: [AtomicPtr<libc::c_char>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

/// The process group of a running preprocessor, stopped by the handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

const CLEANUP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int) {
    for slot in &REGISTERED {
        let path = slot.load(Ordering::SeqCst);
        if !path.is_null() {
            // SAFETY: path is a leaked, NUL-terminated C string; unlink is
            // async-signal-safe.
            unsafe { libc::unlink(path) };
        }
    }
    let child = CHILD.load(Ordering::SeqCst);
    // SAFETY: kill, signal and raise are async-signal-safe.
    unsafe {
        if child > 0 {
            libc::kill(child, libc::SIGTERM);
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Installs the cleanup handler for SIGINT, SIGTERM and SIGHUP (not for
/// signals the parent left ignored, as with `nohup`).
pub fn install_signal_cleanup() {
    for sig in CLEANUP_SIGNALS {
        // SAFETY: a zeroed sigaction is valid; on_signal only makes
        // async-signal-safe calls.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Marks `pid` as the running preprocessor (0: none) for the signal handler.
pub fn set_running_child(pid: u32) {
    CHILD.store(pid as i32, Ordering::SeqCst);
}

/// A file that is removed when dropped unless it was kept.
pub struct TempFile {
    path: PathBuf,
    slot: Option<usize>,
    keep: bool,
}

impl TempFile {
    /// Creates `DIR/PREFIXXXXXXXSUFFIX` (mode 0600, `O_EXCL`) and registers it.
    pub fn create(dir: &Path, prefix: &str, suffix: &str) -> io::Result<(TempFile, File)> {
        let mut template = dir.as_os_str().as_bytes().to_vec();
        template.push(b'/');
        template.extend_from_slice(prefix.as_bytes());
        template.extend_from_slice(b"XXXXXX");
        template.extend_from_slice(suffix.as_bytes());
        template.push(0);
        // SAFETY: template is NUL-terminated and writable, as mkostemps needs.
        let fd = unsafe {
            libc::mkostemps(
                template.as_mut_ptr().cast(),
                suffix.len() as libc::c_int,
                libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        template.pop();
        // SAFETY: mkostemps returned a new descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        let path = PathBuf::from(OsString::from_vec(template));
        let slot = register(&path);
        Ok((
            TempFile {
                path,
                slot,
                keep: false,
            },
            file,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the file in place when dropped (DISTCC_SAVE_TEMPS).
    pub fn keep(&mut self) {
        self.keep = true;
        self.unregister();
    }

    fn unregister(&mut self) {
        if let Some(slot) = self.slot.take() {
            REGISTERED[slot].store(std::ptr::null_mut(), Ordering::SeqCst);
        }
    }

    /// Renames the file to `target`; it is no longer temporary.
    pub fn rename_to(mut self, target: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, target)?;
        self.unregister();
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.unregister();
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn register(path: &Path) -> Option<usize> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let raw = c.into_raw();
    for (i, slot) in REGISTERED.iter().enumerate() {
        if slot
            .compare_exchange(
                std::ptr::null_mut(),
                raw,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            return Some(i);
        }
    }
    // Every slot taken: the file is still removed on drop, only not by the
    // signal handler. Free the string we could not hand over.
    // SAFETY: raw came from into_raw just above and was never shared.
    drop(unsafe { CString::from_raw(raw) });
    None
}

/// The process umask, read once (reading it means setting it).
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        // SAFETY: umask cannot fail; the old value is put straight back.
        unsafe {
            let old = libc::umask(0o022);
            libc::umask(old);
            old as u32
        }
    })
}

/// An object (or `.s`) file being received.
pub struct ObjectFile {
    target: PathBuf,
    /// None when the target is written in place.
    temp: Option<TempFile>,
    file: File,
}

impl ObjectFile {
    /// Opens a place to write `target`: a temporary file beside it, after
    /// creating missing parent directories as distcc does.
    pub fn create(target: &Path) -> io::Result<ObjectFile> {
        if let Ok(meta) = std::fs::metadata(target) {
            let kind = meta.file_type();
            if kind.is_char_device() || kind.is_fifo() || kind.is_block_device() || kind.is_socket()
            {
                let file = std::fs::OpenOptions::new().write(true).open(target)?;
                return Ok(ObjectFile {
                    target: target.to_path_buf(),
                    temp: None,
                    file,
                });
            }
        }
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir)?;
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let (temp, file) = TempFile::create(dir, &format!(".{name}.distcc-rs-"), "")?;
        Ok(ObjectFile {
            target: target.to_path_buf(),
            temp: Some(temp),
            file,
        })
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The first `len` bytes written so far, for the object check; None when
    /// the target is written in place (`/dev/null`, a fifo) and cannot be
    /// read back.
    pub fn head(&self, len: usize) -> Option<io::Result<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        self.temp.as_ref()?;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.file.read_at(&mut buf[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        }
        buf.truncate(got);
        Some(Ok(buf))
    }

    /// Gives the file the mode a compiler's output has (0666 less the
    /// umask) and renames it over the target.
    pub fn commit(self) -> io::Result<()> {
        let ObjectFile { target, temp, file } = self;
        let Some(temp) = temp else { return Ok(()) };
        file.set_permissions(std::fs::Permissions::from_mode(0o666 & !umask()))?;
        drop(file);
        temp.rename_to(&target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::TestDir;

    #[test]
    fn object_appears_only_on_commit() {
        use std::io::Write;
        let tmp = TestDir::new("output");
        let target = tmp.join("new/sub/x.o");
        let mut object = ObjectFile::create(&target).unwrap();
        object.file().write_all(b"ELF").unwrap();
        assert!(!target.exists(), "target exists before commit");
        object.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"ELF");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask());
        assert_eq!(
            std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn dropped_object_leaves_nothing_and_keeps_the_old_target() {
        use std::io::Write;
        let tmp = TestDir::new("output");
        let target = tmp.join("x.o");
        std::fs::write(&target, b"old").unwrap();
        let mut object = ObjectFile::create(&target).unwrap();
        object.file().write_all(b"half").unwrap();
        drop(object);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn dev_null_is_written_in_place() {
        // A fifo of the test's own stands for /dev/null: the tests may run
        // as root, and a wrong rename must not replace the system's.
        use std::io::{Read, Write};
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = TestDir::new("output");
        let fifo = tmp.join("null");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: c_path is a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // A reader first, so that opening the fifo to write does not block.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let mut object = ObjectFile::create(&fifo).unwrap();
        object.file().write_all(b"x").unwrap();
        object.commit().unwrap();
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"x", "written through the fifo");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temporary file beside it"
        );
    }

    #[test]
    fn temp_files_are_registered_and_released() {
        let tmp = TestDir::new("output");
        let (temp, _file) = TempFile::create(tmp.path(), "distcc_", ".i").unwrap();
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("distcc_") && name.ends_with(".i") && name.len() == 15,
            "{name}"
        );
        let slot = temp.slot.unwrap();
        assert!(!REGISTERED[slot].load(Ordering::SeqCst).is_null());
        let path = temp.path().to_path_buf();
        drop(temp);
        assert!(!path.exists());
    }
}
