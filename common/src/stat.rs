//! Nodes from the file system: what restic's archiver records for an entry it finds, from
//! `lstat`, `readlink` and the extended attributes.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::go::{mode, GoTime};
use crate::node::{Node, NodeType};
use crate::sys::Names;

/// The node restic would record for the entry at `path`, named `name`, from its `lstat`
/// metadata `md`: content and subtree left empty, extended attributes not read (see
/// [`xattrs`]). `None` for a socket, which restic does not back up; an error when a symlink's
/// target cannot be read. Times are in the local zone, as Go's `os.Lstat` reports them;
/// without `with_atime` the access time is the modification time, restic's default.
pub fn node(
    path: &Path,
    name: &[u8],
    md: &Metadata,
    names: &mut Names,
    with_atime: bool,
) -> io::Result<Option<Node>> {
    let ft = md.file_type();
    let node_type = if ft.is_file() {
        NodeType::File
    } else if ft.is_dir() {
        NodeType::Dir
    } else if ft.is_symlink() {
        NodeType::Symlink
    } else if ft.is_block_device() {
        NodeType::Dev
    } else if ft.is_char_device() {
        NodeType::Chardev
    } else if ft.is_fifo() {
        NodeType::Fifo
    } else {
        return Ok(None);
    };
    let time = |secs: i64, nanos: i64| GoTime::local(secs, nanos as u32);
    let mtime = time(md.mtime(), md.mtime_nsec());
    let mut node = Node {
        name: name.to_vec(),
        mode: mode::from_unix(md.mode()),
        mtime,
        atime: if with_atime { time(md.atime(), md.atime_nsec()) } else { mtime },
        ctime: time(md.ctime(), md.ctime_nsec()),
        uid: md.uid(),
        gid: md.gid(),
        user: names.user(md.uid()),
        group: names.group(md.gid()),
        inode: md.ino(),
        device_id: md.dev(),
        // restic records the link count of files, symlinks and devices only.
        links: match node_type {
            NodeType::Dir | NodeType::Fifo => 0,
            _ => md.nlink(),
        },
        ..Node::default()
    };
    match node_type {
        NodeType::File => {
            node.size = md.len();
            node.content = Some(Vec::new());
        }
        NodeType::Symlink => node.linktarget = fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
        NodeType::Dev | NodeType::Chardev => node.device = md.rdev(),
        _ => {}
    }
    node.node_type = node_type;
    Ok(Some(node))
}

/// Reads the extended attributes of the entry at `path` (not following a symlink) into
/// `node`, in the order the file system lists them. On an error, keeps those read so far; a
/// file system without extended attributes, or an attribute removed between listing and
/// reading, is not an error.
pub fn xattrs(path: &Path, node: &mut Node) -> io::Result<()> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if xattr_absent(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for n in names {
        match xattr::get(path, &n) {
            Ok(Some(v)) => node.extended_attributes.push((n.as_bytes().to_vec(), v)),
            Ok(None) => {}
            Err(e) if xattr_absent(&e) => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", n.to_string_lossy()))),
        }
    }
    Ok(())
}

/// Extended attribute errors that mean "none to read" rather than "could not read them".
fn xattr_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENODATA))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn of(path: &Path, with_atime: bool) -> Option<Node> {
        let md = fs::symlink_metadata(path).unwrap();
        node(path, b"n", &md, &mut Names::default(), with_atime).unwrap()
    }

    #[test]
    fn each_kind_of_entry() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"hello").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o4750)).unwrap();
        let n = of(&f, false).unwrap();
        let md = fs::symlink_metadata(&f).unwrap();
        assert_eq!(
            (n.node_type.clone(), n.size, n.links, n.content.clone()),
            (NodeType::File, 5, 1, Some(vec![]))
        );
        assert_eq!((n.mode, n.unix_mode()), (mode::SETUID | 0o750, 0o4750));
        assert_eq!((n.uid, n.inode, n.device_id), (md.uid(), md.ino(), md.dev()));
        assert_eq!((n.mtime.secs, n.mtime.nanos), (md.mtime(), md.mtime_nsec() as u32));
        assert_eq!(n.atime, n.mtime);
        assert_eq!(n.mtime.offset_secs, crate::sys::utc_offset(md.mtime()));

        let d = of(dir.path(), true).unwrap();
        assert_eq!(
            (d.node_type, d.links, d.content, d.mode & mode::DIR),
            (NodeType::Dir, 0, None, mode::DIR)
        );
        let md = fs::symlink_metadata(dir.path()).unwrap();
        assert_eq!(d.atime.secs, md.atime());

        let l = dir.path().join("l");
        std::os::unix::fs::symlink("some/where\u{e9}", &l).unwrap();
        let n = of(&l, false).unwrap();
        assert_eq!((n.node_type, n.linktarget), (NodeType::Symlink, "some/where\u{e9}".as_bytes().to_vec()));

        let null = of(Path::new("/dev/null"), false).unwrap();
        assert_eq!(
            (null.node_type, null.device),
            (NodeType::Chardev, fs::metadata("/dev/null").unwrap().rdev())
        );

        let sock = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(of(&sock, false).is_none(), "restic skips sockets");
    }

    #[test]
    fn a_vanished_link_target_read_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("l");
        std::os::unix::fs::symlink("t", &l).unwrap();
        let md = fs::symlink_metadata(&l).unwrap();
        fs::remove_file(&l).unwrap();
        assert!(node(&l, b"l", &md, &mut Names::default(), false).is_err());
    }

    #[test]
    fn xattrs_in_listed_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"").unwrap();
        if xattr::set(&f, "user.a", b"1\0\xff").is_err() {
            return; // the file system has no user xattrs: nothing this test can check
        }
        xattr::set(&f, "user.b", b"").unwrap();
        let mut n = Node::default();
        xattrs(&f, &mut n).unwrap();
        let listed: Vec<Vec<u8>> = xattr::list(&f).unwrap().map(|n| n.as_bytes().to_vec()).collect();
        let got: Vec<Vec<u8>> = n.extended_attributes.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(got, listed);
        assert!(n.extended_attributes.contains(&(b"user.a".to_vec(), b"1\0\xff".to_vec())));
    }
}
