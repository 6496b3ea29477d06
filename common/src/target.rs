//! Creating things inside a restore target without ever following a symbolic link.
//!
//! A restore stream is untrusted: a record `a -> /elsewhere` followed by a file `a/x` must
//! not write to `/elsewhere/x`. So every name is resolved from a directory descriptor of the
//! target, one component at a time with `O_NOFOLLOW` (or in one `openat2` call with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it), and every creation and
//! metadata change is made relative to the parent directory's descriptor, on the final
//! component only, never through a link. Every call goes through `rustix`'s safe wrappers.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

/// The suffix that marks a file (or link) still being made.
pub const PART: &str = ".sluice-part";

/// Set once `openat2` turned out not to exist (old kernel, or a seccomp filter refusing it).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Flags every open here carries: never follow the last component, never leak the descriptor.
const NOFOLLOW: OFlags = OFlags::NOFOLLOW.union(OFlags::CLOEXEC);

/// Whether `name` is one plain path component: not empty, `.` or `..`, no `/` or NUL.
pub fn is_component(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|b| *b == b'/' || *b == 0)
}

/// Splits a relative path into clean components, or `None` when it is absolute, empty, or
/// has an empty, `.`, `..` or NUL-bearing component.
pub fn components(rel: &[u8]) -> Option<Vec<&[u8]>> {
    if rel.is_empty() {
        return None;
    }
    let parts: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
    parts.iter().all(|c| is_component(c)).then_some(parts)
}

/// What `fstatat` says about a name, without following it.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub mode: u32,
    pub size: u64,
    pub rdev: u64,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
}

impl Stat {
    pub fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.kind() == libc::S_IFLNK
    }
}

/// An open directory; everything is done relative to it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Opens the restore target itself, creating it (mode 0700, parents as needed) if missing.
    /// The target path is the user's choice, so links in it are followed; nothing below it is.
    pub fn open_target(path: &Path) -> io::Result<Dir> {
        match std::fs::metadata(path) {
            Ok(m) if !m.is_dir() => {
                return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
            }
            Err(e) => return Err(e),
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Ok(Dir { fd: rustix::fs::open(path, flags, Mode::empty())? })
    }

    /// Another descriptor of the same directory (for another thread).
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir { fd: self.fd.try_clone()? })
    }

    /// Opens the directory `name` directly inside this one; a symlink there is `ELOOP` or
    /// `ENOTDIR`, never followed.
    pub fn open_dir(&self, name: &[u8]) -> io::Result<Dir> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | NOFOLLOW;
        Ok(Dir { fd: rustix::fs::openat(&self.fd, name, flags, Mode::empty())? })
    }

    /// Opens `rel` (clean components, see [`components`]) below this directory without
    /// following any link, with `flags` (`O_NOFOLLOW` and `O_CLOEXEC` are added).
    fn open_beneath(&self, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        let parts = components(rel).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let flags = flags | NOFOLLOW;
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), resolve) {
                Ok(fd) => return Ok(fd),
                Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed)
                }
                Err(e) => return Err(e.into()),
            }
        }
        // One component at a time, each opened without following a link.
        let mut cur: Option<Dir> = None;
        for p in &parts[..parts.len() - 1] {
            let next = cur.as_ref().unwrap_or(self).open_dir(p)?;
            cur = Some(next);
        }
        let dir = cur.as_ref().unwrap_or(self);
        Ok(rustix::fs::openat(&dir.fd, parts[parts.len() - 1], flags, Mode::empty())?)
    }

    /// Opens the directory at `rel` below this one, following no link.
    pub fn open_dir_beneath(&self, rel: &[u8]) -> io::Result<Dir> {
        Ok(Dir { fd: self.open_beneath(rel, OFlags::RDONLY | OFlags::DIRECTORY)? })
    }

    /// Opens the regular file at `rel` below this one for reading, following no link.
    pub fn open_file_beneath(&self, rel: &[u8]) -> io::Result<File> {
        regular(File::from(self.open_beneath(rel, OFlags::RDONLY | OFlags::NONBLOCK)?))
    }

    /// Opens the regular file `name` in this directory for reading, following no link.
    pub fn open_file(&self, name: &[u8]) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | NOFOLLOW;
        regular(File::from(rustix::fs::openat(&self.fd, name, flags, Mode::empty())?))
    }

    /// Creates the directory `name` (`EEXIST` if anything is there).
    pub fn mkdir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode))?)
    }

    /// What is at `name`, not following a link; `None` when nothing is.
    pub fn stat(&self, name: &[u8]) -> io::Result<Option<Stat>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Stat {
                mode: st.st_mode,
                size: st.st_size as u64,
                rdev: st.st_rdev,
                mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a new file under a fresh hidden name made from `base`
    /// (`.BASE.XXXXXXXX.sluice-part`), with `O_EXCL`, so it can never take the place of
    /// anything already there. Returns the file and the name it got.
    pub fn create_temp(&self, base: &[u8], mode: u32) -> io::Result<(File, Vec<u8>)> {
        self.with_temp_name(base, |name| {
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | NOFOLLOW;
            Ok(File::from(rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode))?))
        })
    }

    /// A new regular file with no name at all (`O_TMPFILE`) on this directory's file system,
    /// which [`Dir::link_temp`] names later, here or in another directory of the same file
    /// system. Closed unnamed, it is gone: nothing to clean up after a crash. File systems
    /// without it answer `EOPNOTSUPP` (`EISDIR` before Linux 3.11).
    pub fn create_unnamed(&self, mode: u32) -> io::Result<File> {
        let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
        Ok(File::from(rustix::fs::openat(&self.fd, ".", flags, Mode::from_raw_mode(mode))?))
    }

    /// Gives `file`, made by [`Dir::create_unnamed`], a fresh temporary name made from `base`
    /// here, as [`Dir::create_temp`] would have. `EXDEV` when this directory is on another
    /// file system than the one the file was made on.
    pub fn link_temp(&self, file: &File, base: &[u8]) -> io::Result<Vec<u8>> {
        let (_, name) = self.with_temp_name(base, |name| self.link_file(file, name))?;
        Ok(name)
    }

    /// Gives `file`, made by [`Dir::create_unnamed`], the name `name` here; `EEXIST` if
    /// anything has that name already (it is never replaced).
    pub fn link_file(&self, file: &File, name: &[u8]) -> io::Result<()> {
        match rustix::fs::linkat(file, "", &self.fd, name, AtFlags::EMPTY_PATH) {
            // Before Linux 6.10, linking a descriptor needs CAP_DAC_READ_SEARCH; its /proc
            // name needs nothing.
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::PERM) => {
                let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
                let cwd = rustix::fs::CWD;
                Ok(rustix::fs::linkat(cwd, proc.as_str(), &self.fd, name, AtFlags::SYMLINK_FOLLOW)?)
            }
            r => Ok(r?),
        }
    }

    /// Runs `make` on fresh temporary names until one does not exist yet.
    pub fn with_temp_name<T>(
        &self,
        base: &[u8],
        mut make: impl FnMut(&[u8]) -> io::Result<T>,
    ) -> io::Result<(T, Vec<u8>)> {
        for _ in 0..100 {
            let name = temp_name(base);
            match make(&name) {
                Ok(t) => return Ok((t, name)),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name"))
    }

    /// Creates a symbolic link `name` pointing at `target` (`EEXIST` if anything is there).
    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(target, &self.fd, name)?)
    }

    /// The target of the symbolic link `name`.
    pub fn readlink(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        Ok(rustix::fs::readlinkat(&self.fd, name, Vec::new())?.into_bytes())
    }

    /// Creates a fifo or device node `name` (`kind` is `S_IFIFO`, `S_IFBLK` or `S_IFCHR`).
    pub fn mknod(&self, name: &[u8], kind: u32, perm: u32, dev: u64) -> io::Result<()> {
        let kind = FileType::from_raw_mode(kind);
        Ok(rustix::fs::mknodat(&self.fd, name, kind, Mode::from_raw_mode(perm), dev)?)
    }

    /// Makes `to` in `to_dir` another name of the file `from` here, never following a link
    /// (`from` being a symlink links the symlink itself).
    pub fn link(&self, from: &[u8], to_dir: &Dir, to: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::linkat(&self.fd, from, &to_dir.fd, to, AtFlags::empty())?)
    }

    /// Renames `from` to `to` in this directory, replacing a non-directory at `to`.
    pub fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    /// Removes the non-directory `name`.
    pub fn unlink(&self, name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Removes the empty directory `name`.
    pub fn rmdir(&self, name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)?)
    }

    /// The names of everything here, and whether each is a directory (not following links).
    pub fn names(&self) -> io::Result<Vec<(Vec<u8>, bool)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.proc_path(b""))? {
            let e = e?;
            out.push((e.file_name().as_bytes().to_vec(), e.file_type()?.is_dir()));
        }
        Ok(out)
    }

    /// Whether nothing is here (reads no further than the first name).
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(std::fs::read_dir(self.proc_path(b""))?.next().is_none())
    }

    /// The names of the regular files here whose names end in [`PART`].
    pub fn partials(&self) -> io::Result<Vec<Vec<u8>>> {
        // Through /proc, the directory read is the one held, whatever its path is now.
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.proc_path(b""))? {
            let e = e?;
            let name = e.file_name().as_bytes().to_vec();
            if name.ends_with(PART.as_bytes()) && e.file_type()?.is_file() {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// `/proc/self/fd/N/name`: `name` in the very directory held, whatever its path is now.
    fn proc_path(&self, name: &[u8]) -> std::path::PathBuf {
        let mut p = format!("/proc/self/fd/{}/", self.fd.as_raw_fd()).into_bytes();
        p.extend_from_slice(name);
        std::path::PathBuf::from(std::ffi::OsString::from_vec(p))
    }

    /// Whether this process may create entries here (`EACCES`, `EROFS` when not).
    pub fn check_writable(&self) -> io::Result<()> {
        let how = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
        Ok(rustix::fs::accessat(&self.fd, ".", how, AtFlags::EACCESS)?)
    }

    /// Flushes everything written to this directory's file system to disk.
    pub fn sync_fs(&self) -> io::Result<()> {
        Ok(rustix::fs::syncfs(&self.fd)?)
    }

    /// Metadata of the directory itself, through its descriptor.
    pub fn fd_meta(&self) -> FdMeta<'_> {
        FdMeta(self.fd.as_fd())
    }

    /// Metadata of the entry `name` here (a symlink or special file), never following it.
    pub fn at_meta<'a>(&'a self, name: &'a [u8]) -> AtMeta<'a> {
        AtMeta { dir: self, name }
    }
}

/// `.BASE.XXXXXXXX.sluice-part`, with BASE shortened so the whole fits NAME_MAX (255 bytes).
fn temp_name(base: &[u8]) -> Vec<u8> {
    use rand::Rng;
    let tag: u32 = rand::thread_rng().gen();
    let tag = format!(".{tag:08x}{PART}");
    let room = 255 - 1 - tag.len();
    let mut cut = base.len().min(room);
    // Keep a UTF-8 name UTF-8 when shortening it.
    while cut < base.len() && cut > 0 && (base[cut] & 0xc0) == 0x80 {
        cut -= 1;
    }
    let mut n = Vec::with_capacity(1 + cut + tag.len());
    n.push(b'.');
    n.extend_from_slice(&base[..cut]);
    n.extend_from_slice(tag.as_bytes());
    n
}

/// Whether `name` has the shape of a temporary name made for `base` by this module.
pub fn is_temp_name_for(name: &[u8], base: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b".") else { return false };
    let Some(rest) = rest.strip_suffix(PART.as_bytes()) else { return false };
    if rest.len() < 9 || rest[rest.len() - 9] != b'.' {
        return false;
    }
    let (stem, tag) = rest.split_at(rest.len() - 9);
    tag[1..].iter().all(u8::is_ascii_hexdigit) && !stem.is_empty() && base.starts_with(stem)
}

fn timestamps(atime: (i64, u32), mtime: (i64, u32)) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: atime.0, tv_nsec: atime.1.into() },
        last_modification: Timespec { tv_sec: mtime.0, tv_nsec: mtime.1.into() },
    }
}

fn ids(uid: u32, gid: u32) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
    (Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))
}

/// Metadata changes through an open descriptor (a file or directory being restored).
pub struct FdMeta<'a>(BorrowedFd<'a>);

/// Metadata of an open file.
pub fn file_meta(f: &File) -> FdMeta<'_> {
    FdMeta(f.as_fd())
}

impl FdMeta<'_> {
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        let (u, g) = ids(uid, gid);
        Ok(rustix::fs::fchown(self.0, u, g)?)
    }
    pub fn set_xattr(&self, name: &[u8], value: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::fsetxattr(self.0, name, value, rustix::fs::XattrFlags::empty())?)
    }
    pub fn set_times(&self, atime: (i64, u32), mtime: (i64, u32)) -> io::Result<()> {
        Ok(rustix::fs::futimens(self.0, &timestamps(atime, mtime))?)
    }
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::fchmod(self.0, Mode::from_raw_mode(mode))?)
    }
}

/// Metadata changes on a name inside a directory, never following it (symlinks, fifos,
/// device nodes: things that cannot or should not be opened for writing).
pub struct AtMeta<'a> {
    dir: &'a Dir,
    name: &'a [u8],
}

impl AtMeta<'_> {
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        let (u, g) = ids(uid, gid);
        Ok(rustix::fs::chownat(&self.dir.fd, self.name, u, g, AtFlags::SYMLINK_NOFOLLOW)?)
    }
    /// `lsetxattr` on the name seen through the directory's descriptor in /proc: the
    /// directory is the one we hold, and the last component is not followed.
    pub fn set_xattr(&self, name: &[u8], value: &[u8]) -> io::Result<()> {
        let path = self.dir.proc_path(self.name);
        Ok(rustix::fs::lsetxattr(&path, name, value, rustix::fs::XattrFlags::empty())?)
    }
    pub fn set_times(&self, atime: (i64, u32), mtime: (i64, u32)) -> io::Result<()> {
        let t = timestamps(atime, mtime);
        Ok(rustix::fs::utimensat(&self.dir.fd, self.name, &t, AtFlags::SYMLINK_NOFOLLOW)?)
    }
    /// chmod without following a link: through an `O_PATH` descriptor of the entry itself
    /// (Linux has no `fchmodat(AT_SYMLINK_NOFOLLOW)` before 6.6).
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        let fd = rustix::fs::openat(&self.dir.fd, self.name, OFlags::PATH | NOFOLLOW, Mode::empty())?;
        let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
        Ok(rustix::fs::chmod(p.as_str(), Mode::from_raw_mode(mode))?)
    }
}

/// Whether we run as root (then owners are restored, and device nodes created).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A path for messages: `dir/rel`.
pub fn display(dir: &Path, rel: &[u8]) -> String {
    dir.join(OsStr::from_bytes(rel)).display().to_string()
}

/// `f` if it is a regular file. Files are opened with `O_NONBLOCK` and checked after: a fifo
/// that took a file's name in the target (the user's, or made since walk looked) would make
/// a blocking open wait for a writer forever, and a restore hang.
fn regular(f: File) -> io::Result<File> {
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_checked() {
        assert_eq!(components(b"a/b").unwrap(), vec![&b"a"[..], b"b"]);
        for bad in [&b""[..], b"/a", b"a/", b"a//b", b"a/../b", b"./a", b"..", b"a\0b"] {
            assert!(components(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn temp_names() {
        let n = temp_name(b"file.txt");
        assert!(is_temp_name_for(&n, b"file.txt"), "{}", String::from_utf8_lossy(&n));
        assert!(!is_temp_name_for(b".file.txt.sluice-part", b"file.txt"));
        let long = vec![b'x'; 300];
        let n = temp_name(&long);
        assert!(n.len() <= 255);
        assert!(is_temp_name_for(&n, &long));
    }

    /// An unnamed file made in the root gets a temporary name in a subdirectory, with what was
    /// written to it; one closed unnamed leaves nothing behind.
    #[test]
    fn unnamed_files_get_their_name_later() {
        use std::io::Write;
        let td = tempfile::tempdir().unwrap();
        let root = Dir::open_target(&td.path().join("t")).unwrap();
        root.mkdir(b"sub", 0o755).unwrap();
        let sub = root.open_dir(b"sub").unwrap();
        let mut f = match root.create_unnamed(0o600) {
            Ok(f) => f,
            // A file system without O_TMPFILE: the callers fall back to create_temp.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return,
            Err(e) => panic!("{e}"),
        };
        f.write_all(b"data").unwrap();
        drop(root.create_unnamed(0o600).unwrap());
        let name = sub.link_temp(&f, b"file").unwrap();
        assert!(is_temp_name_for(&name, b"file"));
        let path = td.path().join("t/sub").join(std::ffi::OsStr::from_bytes(&name));
        assert_eq!(std::fs::read(path).unwrap(), b"data");
        assert_eq!(std::fs::read_dir(td.path().join("t")).unwrap().count(), 1);
        // Under its final name: never over anything already there.
        let mut g = sub.create_unnamed(0o600).unwrap();
        g.write_all(b"other").unwrap();
        assert_eq!(sub.link_file(&g, &name).unwrap_err().raw_os_error(), Some(libc::EEXIST));
        sub.link_file(&g, b"final").unwrap();
        assert_eq!(std::fs::read(td.path().join("t/sub/final")).unwrap(), b"other");
        assert_eq!(
            std::fs::read(td.path().join("t/sub").join(std::ffi::OsStr::from_bytes(&name))).unwrap(),
            b"data"
        );
    }

    #[test]
    fn never_follows_links() {
        let td = tempfile::tempdir().unwrap();
        let outside = td.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let t = td.path().join("t");
        let root = Dir::open_target(&t).unwrap();
        std::os::unix::fs::symlink(&outside, t.join("a")).unwrap();
        assert!(root.open_dir_beneath(b"a").is_err());
        assert!(root.open_dir(b"a").is_err());
        std::fs::create_dir(t.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, t.join("d/b")).unwrap();
        assert!(root.open_dir_beneath(b"d/b").is_err());
        assert!(root.open_dir_beneath(b"d").is_ok());
        assert!(root.open_dir_beneath(b"../t").is_err());
        NO_OPENAT2.store(true, Ordering::Relaxed);
        assert!(root.open_dir_beneath(b"d/b").is_err());
        assert!(root.open_dir_beneath(b"d").is_ok());
        NO_OPENAT2.store(false, Ordering::Relaxed);
    }
}
