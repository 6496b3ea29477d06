//! Byte-exact comparison of two directory trees, metadata included.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What [`compare_trees`] checks besides names, types and contents (always checked).
#[derive(Clone, Debug)]
pub struct CompareOpts {
    /// Ignore the metadata (mode, owner, times) of the two roots themselves.
    pub skip_root: bool,
    /// Compare mtimes after flooring both to this many nanoseconds: 1 = exact,
    /// 1000 = tolerate truncation to microseconds, 0 = don't compare mtimes.
    pub mtime_resolution_ns: u64,
    /// Compare directory mtimes (subject to `mtime_resolution_ns`).
    pub dir_mtime: bool,
    /// Compare symlink mtimes (subject to `mtime_resolution_ns`).
    pub symlink_mtime: bool,
    /// Compare atimes exactly (off by default: reading files may move them).
    pub atime: bool,
    /// Compare permission bits including setuid, setgid and sticky.
    pub mode: bool,
    /// Compare numeric uid and gid.
    pub owner: bool,
    /// Accept an actual symlink target that equals the expected one with every invalid UTF-8
    /// byte replaced by U+FFFD, as restic < 0.16 restores it.
    pub lossy_link_targets: bool,
    /// Compare hard-link groups (which paths share an inode within each tree).
    pub hard_links: bool,
    /// How many differences to list in the message.
    pub max_reported: usize,
}

impl Default for CompareOpts {
    fn default() -> Self {
        CompareOpts {
            skip_root: false,
            mtime_resolution_ns: 1,
            dir_mtime: true,
            symlink_mtime: true,
            atime: false,
            mode: true,
            owner: false,
            lossy_link_targets: false,
            hard_links: true,
            max_reported: 20,
        }
    }
}

impl CompareOpts {
    /// Everything checked, owners too when running as root: for trees restored by a tool
    /// that must be exact.
    pub fn strict() -> Self {
        CompareOpts { owner: super::is_root(), ..Default::default() }
    }

    /// [`CompareOpts::strict`] but allowing restic 0.14's lossy non-UTF-8 symlink targets.
    pub fn restic_014() -> Self {
        CompareOpts { lossy_link_targets: true, ..Self::strict() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

struct Entry {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    atime: (i64, i64),
    inode: (u64, u64),
    rdev: u64,
    target: Option<Vec<u8>>,
}

type Tree = BTreeMap<Vec<u8>, Entry>;

fn scan(root: &Path) -> Result<Tree, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name() {
        let e = e.map_err(|e| format!("walking {root:?}: {e}"))?;
        let rel = e.path().strip_prefix(root).map_err(|e| format!("{:?}: {e}", e))?;
        let md = fs::symlink_metadata(e.path()).map_err(|err| format!("lstat {:?}: {err}", e.path()))?;
        let ft = md.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_char_device() {
            Kind::CharDev
        } else {
            Kind::BlockDev
        };
        let target = if kind == Kind::Symlink {
            let t = fs::read_link(e.path()).map_err(|err| format!("readlink {:?}: {err}", e.path()))?;
            Some(t.into_os_string().into_encoded_bytes())
        } else {
            None
        };
        out.insert(
            rel.as_os_str().as_bytes().to_vec(),
            Entry {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: md.size(),
                mtime: (md.mtime(), md.mtime_nsec()),
                atime: (md.atime(), md.atime_nsec()),
                inode: (md.dev(), md.ino()),
                rdev: md.rdev(),
                target,
            },
        );
    }
    Ok(out)
}

/// Renders a relative path for messages: quoted, with non-UTF-8 bytes and controls escaped.
pub fn show(rel: &[u8]) -> String {
    if rel.is_empty() {
        return "\".\"".into();
    }
    format!("{:?}", OsStr::from_bytes(rel))
}

/// Replaces every byte that is not part of valid UTF-8 with U+FFFD, one per byte, the way Go's
/// `encoding/json` writes strings (and so how restic < 0.16 stores non-UTF-8 link targets).
pub fn go_lossy_utf8(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.extend_from_slice(s.as_bytes());
                return out;
            }
            Err(e) => {
                let ok = e.valid_up_to();
                out.extend_from_slice(&b[..ok]);
                out.extend_from_slice("\u{fffd}".as_bytes());
                b = &b[ok + 1..];
            }
        }
    }
}

/// Offset of the first byte where the two files differ, `None` when identical.
fn first_difference(a: &Path, b: &Path) -> io::Result<Option<u64>> {
    let (mut fa, mut fb) = (fs::File::open(a)?, fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut off = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        let n = na.min(nb);
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Ok(Some(off + i as u64));
        }
        if na != nb {
            return Ok(Some(off + n as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        off += na as u64;
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn floor_ns(t: (i64, i64), res: u64) -> i128 {
    (t.0 as i128 * 1_000_000_000 + t.1 as i128).div_euclid(res as i128)
}

fn fmt_time(t: (i64, i64)) -> String {
    format!("{}.{:09}", t.0, t.1)
}

/// For each non-directory path, the set of paths in the same tree sharing its inode.
fn link_groups(t: &Tree) -> HashMap<&[u8], BTreeSet<&[u8]>> {
    let mut by_inode: HashMap<(u64, u64), BTreeSet<&[u8]>> = HashMap::new();
    for (p, e) in t {
        if e.kind != Kind::Dir {
            by_inode.entry(e.inode).or_default().insert(p.as_slice());
        }
    }
    let mut out = HashMap::new();
    for (p, e) in t {
        if e.kind != Kind::Dir {
            out.insert(p.as_slice(), by_inode[&e.inode].clone());
        }
    }
    out
}

/// Compares the trees under `expected` and `actual` without following symlinks.
///
/// Checks the set of relative paths (as raw bytes), entry types, file contents, symlink
/// targets, device numbers, and as `opts` says modes, owners, times and hard-link groups.
/// Returns one message listing the first `opts.max_reported` differences, one per line as
/// `<path>: <what>: expected …, actual …`, where `<what>` is one of `missing`, `unexpected`,
/// `type`, `content`, `mode`, `owner`, `mtime`, `atime`, `link target`, `device`, `hard links`.
pub fn compare_trees(expected: &Path, actual: &Path, opts: &CompareOpts) -> Result<(), String> {
    let te = scan(expected)?;
    let ta = scan(actual)?;
    let mut diffs: Vec<String> = Vec::new();
    let mut d = |p: &[u8], what: &str, detail: String| diffs.push(format!("{}: {what}: {detail}", show(p)));

    for p in te.keys().filter(|p| !ta.contains_key(*p)) {
        d(p, "missing", format!("{:?} not in actual", te[p].kind));
    }
    for p in ta.keys().filter(|p| !te.contains_key(*p)) {
        d(p, "unexpected", format!("{:?} not in expected", ta[p].kind));
    }
    for (p, e) in &te {
        let Some(a) = ta.get(p) else { continue };
        if e.kind != a.kind {
            d(p, "type", format!("expected {:?}, actual {:?}", e.kind, a.kind));
            continue;
        }
        match e.kind {
            Kind::File => {
                let (pe, pa) = (expected.join(OsStr::from_bytes(p)), actual.join(OsStr::from_bytes(p)));
                if e.size != a.size {
                    d(p, "content", format!("expected {} bytes, actual {} bytes", e.size, a.size));
                } else {
                    match first_difference(&pe, &pa) {
                        Ok(None) => {}
                        Ok(Some(off)) => {
                            d(p, "content", format!("first difference at byte {off} of {}", e.size))
                        }
                        Err(err) => d(p, "content", format!("cannot read: {err}")),
                    }
                }
            }
            Kind::Symlink => {
                let (te_, ta_) =
                    (e.target.as_deref().unwrap_or_default(), a.target.as_deref().unwrap_or_default());
                let ok = te_ == ta_ || (opts.lossy_link_targets && go_lossy_utf8(te_) == ta_);
                if !ok {
                    d(p, "link target", format!("expected {}, actual {}", show(te_), show(ta_)));
                }
            }
            Kind::CharDev | Kind::BlockDev if e.rdev != a.rdev => {
                d(p, "device", format!("expected {:#x}, actual {:#x}", e.rdev, a.rdev));
            }
            _ => {}
        }
        if opts.skip_root && p.is_empty() {
            continue;
        }
        // Linux symlinks are always 0777; their mode carries no information.
        if opts.mode && e.kind != Kind::Symlink && e.mode != a.mode {
            d(p, "mode", format!("expected {:04o}, actual {:04o}", e.mode, a.mode));
        }
        if opts.owner && (e.uid, e.gid) != (a.uid, a.gid) {
            d(p, "owner", format!("expected {}:{}, actual {}:{}", e.uid, e.gid, a.uid, a.gid));
        }
        let want_mtime = opts.mtime_resolution_ns != 0
            && match e.kind {
                Kind::Dir => opts.dir_mtime,
                Kind::Symlink => opts.symlink_mtime,
                _ => true,
            };
        if want_mtime
            && floor_ns(e.mtime, opts.mtime_resolution_ns) != floor_ns(a.mtime, opts.mtime_resolution_ns)
        {
            d(p, "mtime", format!("expected {}, actual {}", fmt_time(e.mtime), fmt_time(a.mtime)));
        }
        if opts.atime && e.atime != a.atime {
            d(p, "atime", format!("expected {}, actual {}", fmt_time(e.atime), fmt_time(a.atime)));
        }
    }

    if opts.hard_links {
        let (ge, ga) = (link_groups(&te), link_groups(&ta));
        let mut reported: BTreeSet<Vec<&[u8]>> = BTreeSet::new();
        for (p, e) in &te {
            let Some(a) = ta.get(p) else { continue };
            if e.kind == Kind::Dir || a.kind == Kind::Dir {
                continue;
            }
            let (se, sa) = (&ge[p.as_slice()], &ga[p.as_slice()]);
            if se != sa && reported.insert(se.iter().copied().collect()) {
                let list = |s: &BTreeSet<&[u8]>| s.iter().map(|x| show(x)).collect::<Vec<_>>().join(", ");
                d(p, "hard links", format!("expected [{}], actual [{}]", list(se), list(sa)));
            }
        }
    }

    if diffs.is_empty() {
        return Ok(());
    }
    let n = diffs.len();
    let mut msg = format!("{n} difference(s) between {expected:?} (expected) and {actual:?} (actual):\n");
    for line in diffs.iter().take(opts.max_reported.max(1)) {
        msg.push_str("  ");
        msg.push_str(line);
        msg.push('\n');
    }
    if n > opts.max_reported {
        msg.push_str(&format!("  … and {} more\n", n - opts.max_reported));
    }
    Err(msg)
}
