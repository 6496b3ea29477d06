//! Creating special nodes and applying a node's metadata, in restic's order: owner, extended
//! attributes, times, and the mode last (chown clears setuid bits; a chmod before it would be lost).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::node::{GoTime, Node, NodeType};

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn timespec(t: &GoTime) -> libc::timespec {
    libc::timespec { tv_sec: t.secs as libc::time_t, tv_nsec: t.nanos as libc::c_long }
}

/// Whether we run as root (then owners are restored, and device nodes created).
pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Creates a fifo or a device node.
pub fn mknod(path: &Path, node: &Node) -> io::Result<()> {
    let c = cpath(path)?;
    let perm = node.unix_mode() & 0o7777;
    let (kind, dev) = match node.node_type {
        NodeType::Fifo => (libc::S_IFIFO, 0),
        NodeType::Dev => (libc::S_IFBLK, node.device),
        NodeType::Chardev => (libc::S_IFCHR, node.device),
        _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    check(unsafe { libc::mknod(c.as_ptr(), kind | perm, dev as libc::dev_t) })
}

/// Applies owner, xattrs, times and mode. Failures that only root could avoid are returned
/// as warnings when not root; anything else is an error.
pub fn apply(path: &Path, node: &Node, root: bool) -> io::Result<Vec<String>> {
    let mut warnings = Vec::new();
    let c = cpath(path)?;
    let symlink = node.node_type == NodeType::Symlink;
    if root {
        check(unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) })?;
    }
    for (name, value) in &node.extended_attributes {
        let n = std::ffi::OsStr::from_bytes(name);
        if let Err(e) = xattr::set(path, n, value) {
            let benign = matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOTSUP));
            if root && !benign {
                return Err(e);
            }
            warnings.push(format!("xattr {}: {e}", String::from_utf8_lossy(name)));
        }
    }
    let times = [timespec(&node.atime), timespec(&node.mtime)];
    check(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    if !symlink {
        check(unsafe { libc::chmod(c.as_ptr(), node.unix_mode() & 0o7777) })?;
    }
    Ok(warnings)
}
