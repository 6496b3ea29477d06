//! A repository in a local directory, laid out as restic's local backend lays it out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
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

    fn write(&self, t: FileType, name: &str, data: &mut dyn Read, len: u64) -> Result<()> {
        let dest = self.path(t, name);
        let dir = dest.parent().expect("repository paths have a parent").to_path_buf();
        if !dir.exists() {
            mkdir(&dir)?;
        }
        // Temp name in the same directory, so the rename is atomic; restic ignores non-id names.
        let tmp = dir.join(format!(".{}-tmp-{}", name, std::process::id()));
        let result = (|| -> Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .ctx_path(&tmp)?;
            let n = io::copy(data, &mut f).ctx_path(&tmp)?;
            if n != len {
                return Err(Error::format(format!("{}: expected {len} bytes, got {n}", dest.display())));
            }
            f.flush().ctx_path(&tmp)?;
            f.sync_all().ctx_path(&tmp)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o400)).ctx_path(&tmp)?;
            fs::rename(&tmp, &dest).ctx_path(&dest)?;
            File::open(&dir).and_then(|d| d.sync_all()).ctx_path(&dir)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn upload(&self, t: FileType) -> Result<Box<dyn Upload>> {
        let dir = self.root.join(t.dir());
        if !dir.is_dir() {
            mkdir(&dir)?;
        }
        // In the repository itself, so committing is a rename on the same file system;
        // restic ignores names that are not ids.
        let tf = tempfile::Builder::new().prefix(".sluice-upload-").tempfile_in(&dir).ctx_path(&dir)?;
        Ok(Box::new(LocalUpload { tf, t, root: self.root.clone(), written: 0 }))
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

struct LocalUpload {
    tf: tempfile::NamedTempFile,
    t: FileType,
    root: PathBuf,
    written: u64,
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
        b.write(FileType::Pack, &name, &mut &data[..], 10).unwrap();
        assert!(d.path().join("data/ab").join(&name).is_file());
        assert_eq!(b.list(FileType::Pack).unwrap(), vec![Entry { name: name.clone(), size: 10 }]);
        let mut buf = Vec::new();
        b.read_range(FileType::Pack, &name, 3, 4, &mut buf).unwrap();
        assert_eq!(buf, b"3456");
        assert!(b.read_range(FileType::Pack, &name, 8, 4, &mut buf).is_err());
        assert!(b.write(FileType::Index, &name, &mut &data[..], 11).is_err());
        assert!(!b.exists(FileType::Index, &name).unwrap());
    }
}
