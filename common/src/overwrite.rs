//! Restore modes: what a restore does where the target already holds something under a
//! node's name (restic 0.17's `--overwrite`), which blobs of a file need not travel because
//! the target's file already holds them, and the removals `--delete` asks for.
//!
//! The decision is made twice on purpose. `walk --target` makes it before anything is
//! fetched, so that `fetch-pack` reads only what must travel (a file's record then lists the
//! blobs the target holds in `in_target`). `unpack` makes it again when it writes, because
//! the target may have changed since, and because the stream is untrusted: it re-hashes
//! every blob it takes from the target's file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::node::{Node, NodeType};
use crate::record::BlobLoc;
use crate::target::{Dir, Stat};
use crate::Id;

/// What to do with an existing file, as restic 0.17's `--overwrite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Replace what is there; a file whose content already matches is kept (its metadata
    /// is set), one that matches in part gets only the other parts fetched.
    #[default]
    Always,
    /// As `always`, but a file whose size and modification time match the snapshot's is
    /// taken as unchanged without reading it.
    IfChanged,
    /// Replace only what is older than the snapshot's node (by modification time).
    IfNewer,
    /// Never replace anything that exists.
    Never,
}

/// Whether `mode` lets a node replace what is at its name (`existing`, not following a
/// link; `None` when the name is free). restic's rule: `always` and `if-changed` replace
/// anything, `if-newer` what is older than the node, `never` nothing.
pub fn allows(mode: Mode, node: &Node, existing: Option<&Stat>) -> bool {
    let Some(st) = existing else { return true };
    match mode {
        Mode::Always | Mode::IfChanged => true,
        Mode::IfNewer => (node.mtime.secs, node.mtime.nanos as i64) > st.mtime,
        Mode::Never => false,
    }
}

/// Whether an existing regular file has the node's size and modification time, the test
/// `if-changed` trusts (as a backup's change detection does).
pub fn same_size_and_mtime(st: &Stat, node: &Node) -> bool {
    st.is_file() && st.size == node.size && st.mtime == (node.mtime.secs, node.mtime.nanos as i64)
}

/// For a file node about to be restored as `name` in `parent`: the indexes of its blobs that
/// need not travel. Those the file there already holds at their offsets (read and hashed);
/// all of them when the mode keeps what is there, or `if-changed` finds size and time the
/// same; none when the name is free or holds something other than a regular file.
pub fn in_target(parent: &Dir, name: &[u8], node: &Node, blobs: &[BlobLoc], mode: Mode) -> Vec<u32> {
    let all = || (0..blobs.len() as u32).collect();
    let st = match parent.stat(name) {
        Ok(Some(st)) => st,
        _ => return Vec::new(),
    };
    if !allows(mode, node, Some(&st)) {
        return all();
    }
    if !st.is_file() {
        return Vec::new();
    }
    if mode == Mode::IfChanged && same_size_and_mtime(&st, node) {
        return all();
    }
    match parent.open_file(name) {
        Ok(f) => matching(&f, blobs),
        Err(_) => Vec::new(),
    }
}

/// The indexes of `blobs` whose plaintext `file` holds at the blob's offset in the content.
/// A file shorter or longer than the content still has its matching blobs found (restic
/// reuses them too); reading stops at the file's end.
pub fn matching(file: &File, blobs: &[BlobLoc]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut offset = 0u64;
    for (i, b) in blobs.iter().enumerate() {
        buf.resize(b.plain_len() as usize, 0);
        if file.read_exact_at(&mut buf, offset).is_err() {
            break;
        }
        if Id::hash(&buf) == b.id {
            out.push(i as u32);
        }
        offset += b.plain_len();
    }
    out
}

/// Whether the regular file at `rel` below `root` can be kept as it is (only its metadata
/// set): under `if-changed` the same size and time, otherwise the same size and content.
pub fn unchanged(
    root: &Dir,
    rel: &[u8],
    node: &Node,
    blobs: &[BlobLoc],
    mode: Mode,
    buf: &mut Vec<u8>,
) -> bool {
    let Ok(f) = root.open_file_beneath(rel) else { return false };
    if mode == Mode::IfChanged {
        if let Ok(md) = f.metadata() {
            use std::os::unix::fs::MetadataExt;
            let st = Stat { mode: md.mode(), size: md.size(), rdev: 0, mtime: (md.mtime(), md.mtime_nsec()) };
            if same_size_and_mtime(&st, node) {
                return true;
            }
        }
    }
    crate::restored::check_file(&f, node.size, blobs, buf).is_ok()
}

/// The options of a restore that decide what becomes of what is in the target.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub mode: Mode,
    /// `--delete`: something of the wrong kind in a node's way is replaced.
    pub delete: bool,
}

/// What a restore does to one path (restic's verbose actions), or why it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing was there.
    Restored,
    /// Something was there and is replaced.
    Updated,
    /// What is there stays (the same content, or the mode keeps it); a file's metadata is
    /// still set when its content matched.
    Unchanged,
    /// Something of another kind is in the way and no option allows replacing it.
    Conflict(String),
}

impl Action {
    /// The word an `action` record carries.
    pub fn word(&self) -> &'static str {
        match self {
            Action::Restored => "restored",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::Conflict(_) => "conflict",
        }
    }
}

/// What a restore with `plan` does with `node` at `rel` below `root`, as `unpack` decides
/// it (for `--dry-run`; the restore itself makes the same decisions as it goes).
pub fn action(
    root: &Dir,
    rel: &[u8],
    node: &Node,
    blobs: &[BlobLoc],
    plan: Plan,
    buf: &mut Vec<u8>,
) -> Action {
    let (parent, name) = parent_of(root, rel);
    let parent = parent.ok();
    let st =
        match parent.as_ref().map(|p| p.stat(name)).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
        {
            Ok(Ok(st)) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(_) if plan.delete => None,
            Err(e) | Ok(Err(e)) => return Action::Conflict(format!("cannot look at it: {e}")),
        };
    let Some(st) = st else { return Action::Restored };
    let in_the_way = |what: &str| match plan.delete {
        true => Action::Updated,
        false => Action::Conflict(format!("{what} is in the way (only --delete replaces it)")),
    };
    if node.node_type == NodeType::Dir {
        return match st.is_dir() {
            true => Action::Unchanged,
            false => in_the_way("something other than a directory"),
        };
    }
    if !allows(plan.mode, node, Some(&st)) {
        return Action::Unchanged;
    }
    match node.node_type {
        NodeType::File if st.is_dir() => in_the_way("a directory"),
        NodeType::File if unchanged(root, rel, node, blobs, plan.mode, buf) => Action::Unchanged,
        NodeType::File => Action::Updated,
        _ if !same_kind(&st, node) => in_the_way("something of another kind"),
        _ if parent.as_ref().is_some_and(|p| is_same_special(p, name, node)) => Action::Unchanged,
        _ => Action::Updated,
    }
}

/// What became of a file with several names, for the names after the first (`hardlink`
/// records): a restore links them to it only if it was restored or kept in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Not restored (refused, or left alone by the mode): its other names fail.
    Missing,
    /// Written anew: every other name is linked to the new file.
    New,
    /// Kept as it is, with this (device, inode): a name that already is it stays.
    Kept(u64, u64),
}

/// What is at `rel` below `root`, not following links; `None` when nothing (or it cannot
/// be looked at).
pub fn stat_beneath(root: &Dir, rel: &[u8]) -> Option<Stat> {
    let (parent, name) = parent_of(root, rel);
    parent.ok()?.stat(name).ok().flatten()
}

/// Why a further name of a file cannot be made: the restore links it to the first only.
pub const FIRST_MISSING: &str = "the file it is a hard link to would not be restored";

/// (device, inode) of the regular file at `rel` below `root`, not following links.
pub fn identity(root: &Dir, rel: &[u8]) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (parent, name) = parent_of(root, rel);
    let md = parent.ok()?.open_file(name).ok()?.metadata().ok()?;
    md.is_file().then(|| (md.dev(), md.ino()))
}

/// What a restore does with a further name (`rel`) of a file whose first name became
/// `first`: it links the name to that file under a temporary name and renames it over
/// whatever is there, so a file or link is replaced, a directory never (`--delete` or not),
/// and a name that already is the kept file stays. `if-newer` and `never` decide first.
pub fn hardlink_action(root: &Dir, rel: &[u8], node: &Node, mode: Mode, first: First) -> Action {
    let (parent, name) = parent_of(root, rel);
    let st = match parent.map(|p| p.stat(name)) {
        Ok(Ok(st)) => st,
        Err(e) | Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(e) | Ok(Err(e)) => return Action::Conflict(format!("cannot look at it: {e}")),
    };
    if matches!(mode, Mode::IfNewer | Mode::Never) && !allows(mode, node, st.as_ref()) {
        return Action::Unchanged;
    }
    let kept = match first {
        First::Missing => return Action::Conflict(FIRST_MISSING.into()),
        First::New => None,
        First::Kept(dev, ino) => Some((dev, ino)),
    };
    match st {
        None => Action::Restored,
        Some(st) if st.is_dir() => Action::Conflict("a directory is in the way".into()),
        Some(_) if kept.is_some() && identity(root, rel) == kept => Action::Unchanged,
        Some(_) => Action::Updated,
    }
}

/// Whether what is at a name (`st`) is of the kind a node makes there.
pub fn same_kind(st: &Stat, node: &Node) -> bool {
    let kind = match node.node_type {
        NodeType::Dir => libc::S_IFDIR,
        NodeType::File => libc::S_IFREG,
        NodeType::Symlink => libc::S_IFLNK,
        NodeType::Fifo => libc::S_IFIFO,
        NodeType::Dev => libc::S_IFBLK,
        NodeType::Chardev => libc::S_IFCHR,
        NodeType::Socket => libc::S_IFSOCK,
        _ => return false,
    };
    st.kind() == kind
}

/// Makes a link or special node with `make`; when something is in the way, replaces it if
/// it is of the node's kind (the mode allowed replacing it) or `delete` is set, unless it is
/// already what the node makes. `EEXIST` when it stays.
pub fn make_replacing(
    parent: &Dir,
    name: &[u8],
    node: &Node,
    delete: bool,
    make: impl Fn() -> io::Result<()>,
) -> io::Result<()> {
    match make() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let same_kind = parent.stat(name)?.is_some_and(|st| self::same_kind(&st, node));
            if !(delete || same_kind) || is_same_special(parent, name, node) {
                return Err(e);
            }
            remove_all(parent, name)?;
            make()
        }
        r => r,
    }
}

/// Whether `name` already is the link or special node `node` makes.
pub fn is_same_special(parent: &Dir, name: &[u8], node: &Node) -> bool {
    match node.node_type {
        NodeType::Symlink => matches!(parent.readlink(name), Ok(t) if t == node.linktarget),
        _ => matches!(parent.stat(name), Ok(Some(st)) if same_kind(&st, node) && st.rdev == node.device),
    }
}

/// The directory `rel` is in below `root` (opened following no link), and its last name.
fn parent_of<'a>(root: &Dir, rel: &'a [u8]) -> (io::Result<Dir>, &'a [u8]) {
    let (parent_rel, name) = match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[][..], rel),
    };
    let parent = match parent_rel {
        [] => root.try_clone(),
        p => root.open_dir_beneath(p),
    };
    (parent, name)
}

/// `--delete`: removes `rel` below `root` with everything below it. `false` when nothing was
/// there.
pub fn delete_beneath(root: &Dir, rel: &[u8]) -> io::Result<bool> {
    let (parent, name) = parent_of(root, rel);
    match parent.and_then(|d| remove_all(&d, name)) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads blob `b` from the target's file `local` at `offset` into `buf` and checks it
/// against its id: a blob `in_target` says is there is taken only if it really is.
pub fn read_local<'a>(
    local: &File,
    b: &BlobLoc,
    offset: u64,
    buf: &'a mut Vec<u8>,
) -> Result<&'a [u8], String> {
    buf.resize(b.plain_len() as usize, 0);
    local
        .read_exact_at(buf, offset)
        .map_err(|e| format!("cannot read blob {} from the target's file: {e}", b.id.short()))?;
    if Id::hash(buf) != b.id {
        return Err(format!(
            "the target's file no longer holds blob {} at offset {offset} (it changed since walk looked)",
            b.id.short()
        ));
    }
    Ok(buf)
}

/// Removes `name` in `dir` and, for a directory, everything below it, never following a
/// link (a link is removed, not what it points at). Only `--delete` calls this.
pub fn remove_all(dir: &Dir, name: &[u8]) -> io::Result<()> {
    match dir.stat(name)? {
        None => Ok(()),
        Some(st) if st.is_dir() => {
            let sub = dir.open_dir(name)?;
            for (n, _) in sub.names()? {
                remove_all(&sub, &n)?;
            }
            dir.rmdir(name)
        }
        Some(_) => dir.unlink(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::go::GoTime;

    fn node(secs: i64, size: u64) -> Node {
        let mut n = Node::parse(br#"{"name":"f","type":"file","mode":420}"#).unwrap();
        n.mtime = GoTime { secs, nanos: 5, offset_secs: 0 };
        n.size = size;
        n
    }

    fn st(secs: i64, size: u64) -> Stat {
        Stat { mode: libc::S_IFREG | 0o644, size, rdev: 0, mtime: (secs, 5) }
    }

    #[test]
    fn modes_follow_restic() {
        let n = node(100, 3);
        for m in [Mode::Always, Mode::IfChanged, Mode::IfNewer, Mode::Never] {
            assert!(allows(m, &n, None), "{m:?} on a free name");
        }
        assert!(allows(Mode::Always, &n, Some(&st(200, 3))));
        assert!(allows(Mode::IfChanged, &n, Some(&st(200, 3))));
        assert!(allows(Mode::IfNewer, &n, Some(&st(99, 3))));
        assert!(!allows(Mode::IfNewer, &n, Some(&st(100, 3))), "same time is not newer");
        assert!(!allows(Mode::IfNewer, &n, Some(&st(101, 3))));
        assert!(!allows(Mode::Never, &n, Some(&st(1, 3))));
        assert!(same_size_and_mtime(&st(100, 3), &n));
        assert!(!same_size_and_mtime(&st(100, 4), &n));
        assert!(!same_size_and_mtime(&st(101, 3), &n));
    }

    fn loc(data: &[u8]) -> BlobLoc {
        let id = Id::hash(data);
        BlobLoc { id, pack: id, offset: 0, length: data.len() as u32 + 32, uncompressed_length: None }
    }

    #[test]
    fn matching_blobs_are_found_at_their_offsets() {
        let (a, b, c) = (vec![1u8; 100], vec![2u8; 50], vec![3u8; 70]);
        let blobs = [loc(&a), loc(&b), loc(&c)];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        // The middle blob changed, the last one is cut short.
        std::fs::write(&p, [&a[..], &[9u8; 50], &c[..60]].concat()).unwrap();
        assert_eq!(matching(&File::open(&p).unwrap(), &blobs), [0]);
        std::fs::write(&p, [&a[..], &b[..], &c[..], b"tail"].concat()).unwrap();
        assert_eq!(matching(&File::open(&p).unwrap(), &blobs), [0, 1, 2]);
    }

    #[test]
    fn actions_as_a_restore_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("same"), b"abc").unwrap();
        std::fs::write(dir.path().join("other"), b"xyz").unwrap();
        let root = Dir::open_target(dir.path()).unwrap();
        let blobs = [loc(b"abc")];
        let mut f = node(0, 3);
        f.content = Some(vec![blobs[0].id]);
        let (always, never) =
            (Plan { mode: Mode::Always, delete: false }, Plan { mode: Mode::Never, delete: false });
        let mut buf = Vec::new();
        let mut act = |rel: &[u8], n: &Node, plan| action(&root, rel, n, &blobs, plan, &mut buf);
        assert_eq!(act(b"none", &f, always), Action::Restored);
        assert_eq!(act(b"d/none", &f, always), Action::Restored);
        assert_eq!(act(b"same", &f, always), Action::Unchanged);
        assert_eq!(act(b"other", &f, always), Action::Updated);
        assert_eq!(act(b"other", &f, never), Action::Unchanged);
        assert!(matches!(act(b"d", &f, always), Action::Conflict(m) if m.contains("--delete")));
        assert_eq!(act(b"d", &f, Plan { delete: true, ..always }), Action::Updated);
        let mut d = node(0, 0);
        d.node_type = NodeType::Dir;
        assert_eq!(act(b"d", &d, never), Action::Unchanged, "directories are always entered");
        assert!(matches!(act(b"same", &d, always), Action::Conflict(_)));
    }

    #[test]
    fn further_hard_link_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"abc").unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("copy"), b"abc").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let root = Dir::open_target(dir.path()).unwrap();
        let (dev, ino) = identity(&root, b"a").unwrap();
        let kept = First::Kept(dev, ino);
        let n = node(0, 3);
        let act = |rel: &[u8], mode, first| hardlink_action(&root, rel, &n, mode, first);
        assert_eq!(act(b"b", Mode::Always, kept), Action::Unchanged);
        assert_eq!(act(b"copy", Mode::Always, kept), Action::Updated, "linked again");
        assert_eq!(act(b"b", Mode::Always, First::New), Action::Updated);
        assert_eq!(act(b"none", Mode::Always, First::New), Action::Restored);
        assert!(matches!(act(b"d", Mode::Always, kept), Action::Conflict(_)), "a directory stays");
        assert!(matches!(act(b"none", Mode::Always, First::Missing), Action::Conflict(_)));
        assert_eq!(act(b"copy", Mode::Never, First::Missing), Action::Unchanged, "the mode decides first");
    }

    #[test]
    fn remove_all_follows_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let keep = tempfile::tempdir().unwrap();
        std::fs::write(keep.path().join("x"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("d/e")).unwrap();
        std::fs::write(dir.path().join("d/e/f"), b"f").unwrap();
        std::os::unix::fs::symlink(keep.path(), dir.path().join("d/link")).unwrap();
        let d = Dir::open_target(dir.path()).unwrap();
        remove_all(&d, b"d").unwrap();
        assert!(!dir.path().join("d").exists());
        assert!(keep.path().join("x").exists());
    }
}
