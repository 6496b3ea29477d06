//! A repository in a local directory, laid out as restic's local backend lays it out.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{is_id_name, Backend, Entry, FileType, Upload};
use crate::error::{Error, IoContext, Result};

/// A local directory backend.
pub struct Local {
    root: PathBuf,
    location: String,
}

impl Local {
    pub fn new(path: &str) -> Local {
        Local { root: PathBuf::from(path), location: path.to_string() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, t: FileType, name: &str) -> PathBuf {
        self.root.join(t.path(name))
    }

    /// Creates the directory skeleton of a new repository (all 256 `data/xx` shards, as
    /// restic's `init` does, so restic never has to create them).
    pub fn create_layout(&self) -> Result<()> {
        for t in [FileType::Key, FileType::Snapshot, FileType::Index, FileType::Lock] {
            mkdir(&self.root.join(t.dir()))?;
        }
        for i in 0..=255u8 {
            mkdir(&self.root.join("data").join(format!("{i:02x}")))?;
        }
        Ok(())
    }
}

fn mkdir(p: &Path) -> Result<()> {
    fs::create_dir_all(p).ctx_path(p)?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o700)).ctx_path(p)
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl Backend for Local {
    fn location(&self) -> &str {
        &self.location
    }

    fn exists(&self, t: FileType, name: &str) -> Result<bool> {
        let p = self.path(t, name);
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(Error::io(p.display().to_string(), e)),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let dir = self.root.join(t.dir());
        let mut dirs = vec![dir.clone()];
        if t == FileType::Pack {
            dirs.clear();
            match fs::read_dir(&dir) {
                Ok(rd) => {
                    for e in rd {
                        let e = e.ctx_path(&dir)?;
                        if e.file_type().ctx_path(&e.path())?.is_dir() {
                            dirs.push(e.path());
                        }
                    }
                }
                Err(e) if not_found(&e) => return Ok(out),
                Err(e) => return Err(Error::io(dir.display().to_string(), e)),
            }
        }
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(Error::io(d.display().to_string(), e)),
            };
            for e in rd {
                let e = e.ctx_path(&d)?;
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if !is_id_name(name) {
                    continue;
                }
                let md = e.metadata().ctx_path(&e.path())?;
                if md.is_file() {
                    out.push(Entry { name: name.to_string(), size: md.len() });
                }
            }
        }
        Ok(out)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let p = self.path(t, name);
        fs::read(&p).ctx_path(&p)
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        let p = self.path(t, name);
        let f = File::open(&p).ctx_path(&p)?;
        buf.clear();
        // Exactly: `resize` alone may double a reused buffer (see `http::read_range_body`).
        buf.reserve_exact(len as usize);
        buf.resize(len as usize, 0);
        f.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::format(format!(
                    "{}: file is shorter than {} bytes at offset {offset} (truncated?)",
                    p.display(),
                    len
                ))
            } else {
                Error::io(p.display().to_string(), e)
            }
        })
    }

    fn size(&self, t: FileType, name: &str) -> Result<u64> {
        let p = self.path(t, name);
        Ok(fs::metadata(&p).ctx_path(&p)?.len())
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        // The one atomic write path: a temporary file, renamed into place by `commit`.
        let mut up = self.upload(t)?;
        up.write_all(data).map_err(|e| Error::io(self.path(t, name).display().to_string(), e))?;
        up.commit(name)
    }

    fn upload(&self, t: FileType) -> Result<Box<dyn Upload>> {
        // The config is a file in the root, everything else has a directory of its own.
        let dir = if t == FileType::Config { self.root.clone() } else { self.root.join(t.dir()) };
        if !dir.is_dir() {
            mkdir(&dir)?;
        }
        // In the repository itself, so committing is a rename on the same file system;
        // restic ignores names that are not ids.
        let tf = temp_in(&dir)?;
        let guard = remove_on_interrupt(tf.path());
        Ok(Box::new(LocalUpload { tf, t, root: self.root.clone(), written: 0, _guard: guard }))
    }

    fn remove_stale_uploads(&self) -> Result<usize> {
        let me = crate::sys::hostname();
        let mut removed = 0;
        for t in [FileType::Pack, FileType::Index, FileType::Snapshot, FileType::Lock, FileType::Key] {
            let dir = self.root.join(t.dir());
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                let Some(owner) = name.strip_prefix(TEMP_PREFIX) else { continue };
                let age = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|m| m.elapsed().ok());
                if is_stale(owner, &me, age) {
                    let p = e.path();
                    match fs::remove_file(&p) {
                        Ok(()) => removed += 1,
                        Err(err) if not_found(&err) => {}
                        Err(err) => return Err(Error::io(p.display().to_string(), err)),
                    }
                }
            }
        }
        Ok(removed)
    }

    fn create(&self) -> Result<()> {
        if self.exists(FileType::Config, "")? {
            return Err(Error::Usage(format!(
                "repository {} already exists (it has a config file)",
                self.location
            )));
        }
        if let Ok(mut rd) = fs::read_dir(&self.root) {
            if rd.next().is_some() && !self.root.join("keys").is_dir() {
                return Err(Error::Usage(format!(
                    "{} is not empty and not a repository; refusing to create one there",
                    self.location
                )));
            }
        }
        mkdir(&self.root)?;
        self.create_layout()
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        let p = self.path(t, name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(Error::io(p.display().to_string(), e)),
        }
    }
}

/// Temporary files in the repository start with this, then `HOST-PID-RANDOM`, so a later
/// run can tell those of a dead process from those of one still writing.
const TEMP_PREFIX: &str = ".sluice-upload-";

/// Temporary files of another host count as abandoned only after this long, as nothing
/// tells whether their writer is alive.
const FOREIGN_TEMP_SECS: u64 = 24 * 3600;

fn temp_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let prefix = format!("{TEMP_PREFIX}{}-{}-", crate::sys::hostname().replace('/', "_"), std::process::id());
    tempfile::Builder::new()
        .prefix(&prefix)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .ctx_path(dir)
}

fn remove_on_interrupt(p: &Path) -> crate::signal::Guard {
    let p = p.to_path_buf();
    crate::signal::on_interrupt(move || {
        let _ = fs::remove_file(&p);
    })
}

/// Whether a temporary file named `HOST-PID-RANDOM` (after the prefix) was left by a writer
/// that is gone: on this host, a process that no longer exists; elsewhere, a day untouched.
fn is_stale(owner: &str, this_host: &str, age: Option<std::time::Duration>) -> bool {
    let mut parts = owner.rsplitn(3, '-');
    let (_rand, pid, host) = (parts.next(), parts.next(), parts.next());
    let old = age.is_some_and(|a| a.as_secs() >= FOREIGN_TEMP_SECS);
    match (host, pid.and_then(|p| p.parse::<i32>().ok())) {
        (Some(h), Some(pid)) if h == this_host.replace('/', "_") => {
            pid != std::process::id() as i32 && !crate::sys::process_alive(pid)
        }
        _ => old,
    }
}

struct LocalUpload {
    tf: tempfile::NamedTempFile,
    t: FileType,
    root: PathBuf,
    written: u64,
    _guard: crate::signal::Guard,
}

impl Write for LocalUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tf.as_file_mut().write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tf.as_file_mut().flush()
    }
}

impl Upload for LocalUpload {
    fn written(&self) -> u64 {
        self.written
    }

    fn commit(self: Box<Self>, name: &str) -> Result<()> {
        let dest = self.root.join(self.t.path(name));
        let dir = dest.parent().expect("repository paths have a parent").to_path_buf();
        if !dir.is_dir() {
            mkdir(&dir)?;
        }
        let tmp = self.tf.path().to_path_buf();
        self.tf.as_file().sync_all().ctx_path(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o400)).ctx_path(&tmp)?;
        self.tf.persist(&dest).map_err(|e| Error::io(dest.display().to_string(), e.error))?;
        File::open(&dir).and_then(|d| d.sync_all()).ctx_path(&dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_list_read_range() {
        let d = tempfile::tempdir().unwrap();
        let b = Local::new(d.path().to_str().unwrap());
        b.create_layout().unwrap();
        let name = "ab".repeat(32);
        let data = b"0123456789";
        b.write(FileType::Pack, &name, &data[..]).unwrap();
        assert!(d.path().join("data/ab").join(&name).is_file());
        assert_eq!(b.list(FileType::Pack).unwrap(), vec![Entry { name: name.clone(), size: 10 }]);
        let mut buf = Vec::new();
        b.read_range(FileType::Pack, &name, 3, 4, &mut buf).unwrap();
        assert_eq!(buf, b"3456");
        assert!(b.read_range(FileType::Pack, &name, 8, 4, &mut buf).is_err());
        assert!(!b.exists(FileType::Index, &name).unwrap());

        // Written files are complete, read-only, and leave no temporary behind; the config
        // goes to the root.
        b.write(FileType::Config, "", b"config").unwrap();
        b.write(FileType::Key, &name, b"key").unwrap();
        assert_eq!(fs::read(d.path().join("config")).unwrap(), b"config");
        let mode = fs::metadata(d.path().join("keys").join(&name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
        let temps: Vec<_> = walk(d.path()).into_iter().filter(|p| p.contains(TEMP_PREFIX)).collect();
        assert!(temps.is_empty(), "{temps:?}");
    }

    fn walk(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap().flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }
}
