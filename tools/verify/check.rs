//! Checking restored entries against the nodes that describe them.
//!
//! A record is untrusted input (it may come from another host): a file's `blobs` are checked
//! against its node before they are believed, and a path must stay inside the target, through
//! real directories only, before anything is read there.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::cli::JsonArgs;
use common::error::{Error, Result};
use common::node::{Node, NodeType};
use common::progress::{Kind, Progress};
use common::record::{NodeRecord, Reader, Tag, Verdict, Writer};
use common::restored;

use crate::Args;

/// What was checked and what differed, for the summary line.
#[derive(Default)]
struct Tally {
    files: u64,
    bad_files: u64,
    others: u64,
    bad_others: u64,
    /// The first difference goes into the summary, so stderr alone says where to look.
    first_bad: Option<String>,
    /// Entries that could not be read, so neither passed nor failed; each named on stderr.
    unreadable: u64,
}

pub fn run(args: &Args) -> Result<()> {
    let progress = Progress::new(Kind::Verify, &args.progress, &JsonArgs::default(), false)?;
    let mut input = Reader::stdin();
    let header = input.read_header()?;
    progress.start();
    let mut out = Writer::stdout();
    out.header("verify", header.snapshot)?;
    let mut checker = Checker {
        target: &args.target,
        metadata: args.metadata,
        // Only root restores owners (unpack and restic alike); anyone else gets their own.
        owners: args.metadata && common::sys::ids().0 == 0,
        buf: Vec::new(),
        parent_ok: None,
    };
    let mut t = Tally::default();
    while let Some(line) = input.next_line_or_flush(|| progress.flush(&mut out))? {
        let rec: NodeRecord = match line.tag() {
            Tag::Restored | Tag::Node => line.parse()?,
            Tag::Totals => {
                progress.totals(&line.parse()?);
                continue;
            }
            Tag::Blob | Tag::BlobFailed | Tag::Verdict | Tag::Snapshot | Tag::Delete | Tag::Action => {
                continue
            }
            other => {
                return Err(line.err(format!("a {} record does not belong in verify's input", other.name())))
            }
        };
        let node = Node::parse(rec.node.get().as_bytes()).map_err(|e| line.err(e))?;
        let is_file = match node.node_type {
            NodeType::File => true,
            NodeType::Dir | NodeType::Symlink | NodeType::Fifo | NodeType::Dev | NodeType::Chardev => false,
            // Sockets and irregular entries are never restored (by restic either).
            _ => continue,
        };
        let (error, unreadable) = match checker.entry(&rec, &node) {
            Ok(()) => (None, false),
            Err(Problem::Differs(e)) => (Some(e), false),
            Err(Problem::Unreadable(e)) => {
                t.unreadable += 1;
                progress.suspend(|| common::cli::warn("verify", format!("{:?}: {e}", rec.path)));
                (Some(e), true)
            }
        };
        // An entry that could not be read neither passed nor failed: it is not counted.
        if !unreadable {
            if is_file {
                t.files += 1;
                // Another name of a file checked already is not counted again, as in the totals.
                progress.done(if rec.hardlink.is_none() { node.size } else { 0 });
            } else {
                t.others += 1;
            }
            if let Some(e) = &error {
                if is_file {
                    t.bad_files += 1;
                } else {
                    t.bad_others += 1;
                }
                t.first_bad.get_or_insert_with(|| format!("{:?}: {e}", rec.path));
            }
        }
        // Every file gets a verdict; other entries only when they differ or could not be
        // read, so that in a clean run the verdicts count the files checked. One that could
        // not be read is not ok (nothing was shown to be right), and says why.
        if error.is_some() || (is_file && !args.quiet) {
            let v = Verdict {
                path: rec.path,
                path_raw: rec.path_raw,
                ok: error.is_none(),
                size: node.size,
                error,
            };
            progress.write(&mut out, &v)?;
        }
    }
    progress.end(&mut out)?;
    progress.finish()?;
    if t.unreadable > 0 {
        let differ = t.bad_files + t.bad_others;
        let (s, were) = if t.unreadable == 1 { ("y", "was") } else { ("ies", "were") };
        let rest = match differ {
            0 => "the rest match the snapshot".to_string(),
            n => format!(
                "of the rest, {n} differ from the snapshot, first {}",
                t.first_bad.unwrap_or_default()
            ),
        };
        return Err(Error::Unchecked(format!(
            "{} entr{s} could not be read and {were} not checked; {rest}",
            t.unreadable
        )));
    }
    if t.bad_files + t.bad_others > 0 {
        let first = t.first_bad.unwrap_or_default();
        let what = if t.bad_others == 0 {
            format!("{} of {} files differ", t.bad_files, t.files)
        } else {
            format!(
                "{} of {} files and {} of {} other entries (directories, links, special files) differ",
                t.bad_files, t.files, t.bad_others, t.others
            )
        };
        return Err(Error::SomeFailed(format!("{what} from the snapshot, first {first}")));
    }
    Ok(())
}

struct Checker<'a> {
    target: &'a Path,
    /// Also compare modification times and, as root, owners (`--metadata`).
    metadata: bool,
    owners: bool,
    buf: Vec<u8>,
    /// The last parent directory found to be real directories all the way down: consecutive
    /// records mostly share it, so its components are looked at once.
    parent_ok: Option<Vec<u8>>,
}

/// Why an entry did not pass.
enum Problem {
    /// It is not what the snapshot says.
    Differs(String),
    /// It could not be looked at (permissions, an I/O error): whether it differs is unknown.
    Unreadable(String),
}

impl From<String> for Problem {
    fn from(s: String) -> Problem {
        Problem::Differs(s)
    }
}

/// A failure to read something under the target, with `what` naming it when it is not the
/// entry itself.
fn unreadable(what: Option<&str>, e: &io::Error) -> Problem {
    match what {
        Some(w) => Problem::Unreadable(format!("cannot read {w:?}: {e}")),
        None => Problem::Unreadable(format!("cannot read: {e}")),
    }
}

type Check = std::result::Result<(), Problem>;

impl Checker<'_> {
    /// Checks one entry; the error says what differs.
    fn entry(&mut self, rec: &NodeRecord, node: &Node) -> Check {
        let rel = rec.path_bytes().map_err(|e| e.to_string())?;
        check_path(&rel, &node.name)?;
        if node.node_type == NodeType::File {
            rec.check_content(node).map_err(|e| e.to_string())?;
        } else if !rec.blobs.is_empty() {
            return Err(format!("the record lists {} blobs for a {}", rec.blobs.len(), node.node_type).into());
        }
        self.check_parents(&rel)?;
        let path = self.target.join(OsStr::from_bytes(&rel));
        let md = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Problem::Differs("missing".into())),
            Err(e) => return Err(unreadable(None, &e)),
        };
        let have = kind(&md);
        if have != node.node_type.as_str() {
            return Err(format!("a {have}, but the snapshot has a {}", node.node_type).into());
        }
        // A symlink's own mode is always 0777 on Linux and is never restored.
        if node.node_type != NodeType::Symlink && md.mode() & 0o7777 != node.unix_mode() {
            return Err(format!(
                "mode {:04o} but the snapshot says {:04o}",
                md.mode() & 0o7777,
                node.unix_mode()
            )
            .into());
        }
        match node.node_type {
            NodeType::Symlink => {
                let t = std::fs::read_link(&path).map_err(|e| unreadable(None, &e))?;
                let t = t.as_os_str().as_bytes();
                if t != node.linktarget {
                    return Err(format!(
                        "link target {:?} but the snapshot says {:?}",
                        String::from_utf8_lossy(t),
                        String::from_utf8_lossy(&node.linktarget)
                    )
                    .into());
                }
            }
            NodeType::Dev | NodeType::Chardev if md.rdev() != node.device => {
                return Err(
                    format!("device number {} but the snapshot says {}", md.rdev(), node.device).into()
                );
            }
            NodeType::File if md.len() != node.size => {
                return Err(restored::Mismatch::Size { have: md.len(), want: node.size }.to_string().into());
            }
            _ => {}
        }
        if let Some(first) = rec.hardlink_bytes().map_err(|e| e.to_string())? {
            check_path(&first, b"")?;
            let other = std::fs::symlink_metadata(self.target.join(OsStr::from_bytes(&first)));
            if !other.is_ok_and(|o| o.dev() == md.dev() && o.ino() == md.ino()) {
                return Err(format!(
                    "not a hard link of {:?} as the snapshot says",
                    String::from_utf8_lossy(&first)
                )
                .into());
            }
        }
        if self.metadata {
            self.check_metadata(node, &md)?;
        }
        if node.node_type == NodeType::File {
            self.check_content(rec, &path)?;
        }
        Ok(())
    }

    /// Modification time (not of directories: adding or removing an entry changes it, so it
    /// says nothing about the restore) and, as root, owner.
    fn check_metadata(&self, node: &Node, md: &Metadata) -> Check {
        if node.node_type != NodeType::Dir
            && (md.mtime() != node.mtime.secs || md.mtime_nsec() != i64::from(node.mtime.nanos))
        {
            return Err(format!(
                "modification time {}.{:09} but the snapshot says {}.{:09} (seconds since 1970)",
                md.mtime(),
                md.mtime_nsec(),
                node.mtime.secs,
                node.mtime.nanos
            )
            .into());
        }
        if self.owners && (md.uid() != node.uid || md.gid() != node.gid) {
            return Err(format!(
                "owner {}:{} but the snapshot says {}:{}",
                md.uid(),
                md.gid(),
                node.uid,
                node.gid
            )
            .into());
        }
        Ok(())
    }

    /// Every directory leading to `rel` must be a real directory: a symlink there would make
    /// the record's path read something outside the target.
    fn check_parents(&mut self, rel: &[u8]) -> Check {
        let Some(end) = rel.iter().rposition(|b| *b == b'/') else { return Ok(()) };
        let parent = &rel[..end];
        if self.parent_ok.as_deref() == Some(parent) {
            return Ok(());
        }
        let mut at = 0;
        while at < parent.len() {
            let next = parent[at..].iter().position(|b| *b == b'/').map_or(parent.len(), |i| at + i);
            let prefix = &parent[..next];
            let p = self.target.join(OsStr::from_bytes(prefix));
            let what = String::from_utf8_lossy(prefix);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(m) => return Err(format!("missing: {what:?} is a {}, not a directory", kind(&m)).into()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(format!("missing (so is the directory {what:?})").into())
                }
                Err(e) => return Err(unreadable(Some(&what), &e)),
            }
            at = next + 1;
        }
        self.parent_ok = Some(parent.to_vec());
        Ok(())
    }

    /// Reads the file blob by blob and compares each range with its blob id.
    fn check_content(&mut self, rec: &NodeRecord, path: &Path) -> Check {
        let file = File::open(path).map_err(|e| unreadable(None, &e))?;
        match restored::check_content(&file, &rec.blobs, &mut self.buf) {
            Ok(()) => Ok(()),
            // A file cut short since it was looked at differs; any other read error says
            // nothing about the content.
            Err(restored::Mismatch::Read { offset, source })
                if source.kind() != io::ErrorKind::UnexpectedEof =>
            {
                Err(Problem::Unreadable(format!("cannot read at offset {offset}: {source}")))
            }
            Err(e) => Err(e.to_string().into()),
        }
    }
}

/// A record's path must be relative, without `.`, `..` or empty components, and (when a name
/// is given) end in the node's own name.
fn check_path(rel: &[u8], name: &[u8]) -> std::result::Result<(), String> {
    let bad = rel.is_empty()
        || rel.split(|b| *b == b'/').any(|c| c.is_empty() || c == b"." || c == b"..")
        || rel.contains(&0);
    if bad {
        return Err(format!("the record's path {:?} leads outside the target", String::from_utf8_lossy(rel)));
    }
    let last = rel.rsplit(|b| *b == b'/').next().unwrap_or(rel);
    if !name.is_empty() && last != name {
        return Err(format!(
            "the record's path ends in {:?} but its node is named {:?}",
            String::from_utf8_lossy(last),
            String::from_utf8_lossy(name)
        ));
    }
    Ok(())
}

/// The node type that describes what is on disk, in restic's words.
fn kind(md: &Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_file() {
        "file"
    } else if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_block_device() {
        "dev"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_socket() {
        "socket"
    } else {
        "irregular"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        assert!(check_path(b"a/b", b"b").is_ok());
        assert!(check_path(b"b", b"b").is_ok());
        for bad in [&b""[..], b"/b", b"a//b", b"../b", b"a/../b", b"./b", b"a/b/"] {
            assert!(check_path(bad, b"").is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(check_path(b"a/c", b"b").unwrap_err().contains("named"));
    }
}
