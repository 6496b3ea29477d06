//! `unpack --dry-run`: what a restore would do, written as `action` records; nothing in the
//! target is created, changed or removed. The decisions are the restore's own
//! (`common::overwrite`), made against the target as it is now. Progress and `--json` count
//! as restic's dry run does: what would be written as restored, what would stay as skipped.

use std::collections::HashMap;
use std::io;

use common::error::{Error, Result};
use common::node::{Node, NodeType};
use common::overwrite::{self, Action, First, Mode};
use common::progress::{Kind, Progress};
use common::record::{ActionRecord, NodeRecord, Reader, Tag, TotalsRecord, Writer};
use common::target::{self, Dir};

use crate::Args;

pub fn run(args: &Args) -> Result<()> {
    let target = args.target.clone().expect("clap requires --target");
    let progress = Progress::new(Kind::Restore, &args.progress, &args.json, args.quiet)?;
    let mut input = Reader::stdin();
    let header = input.read_header()?;
    progress.start();
    // A target that does not exist yet gets everything restored.
    let root = match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => Some(Dir::open_target(&target).map_err(|e| Error::io("target", e))?),
        Ok(_) => return Err(Error::format(format!("target {} is not a directory", target.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("target {}", target.display()), e)),
    };
    // With --json, stdout is the messages', as for a restore.
    let mut out = Writer::stdout_unless(progress.json_on_stdout());
    out.header("unpack", header.snapshot)?;
    let mut failed = 0u64;
    let mut buf = Vec::new();
    // As the restore: below a directory it cannot make, nodes are skipped without a word.
    let mut blocked: Option<Vec<u8>> = None;
    // Files with several names: what became of their first name.
    let mut firsts: HashMap<Vec<u8>, First> = HashMap::new();
    while let Some(line) = input.next_line()? {
        match line.tag() {
            Tag::Node => {
                let rec: NodeRecord = line.parse()?;
                rec.check_in_target().map_err(|e| line.err(e.to_string()))?;
                let node = Node::parse(rec.node.get().as_bytes()).map_err(|e| line.err(e.to_string()))?;
                let rel = rec.path_bytes()?;
                if blocked.as_ref().is_some_and(|b| inside(&rel, b)) {
                    continue;
                }
                blocked = None;
                let first = rec.hardlink_bytes()?.map(|f| firsts.get(&f).copied().unwrap_or(First::Missing));
                let action = match (&root, first) {
                    (None, Some(First::Missing)) => Action::Conflict(overwrite::FIRST_MISSING.into()),
                    (None, _) => Action::Restored,
                    (Some(r), Some(first)) => {
                        overwrite::hardlink_action(r, &rel, &node, args.overwrite, first)
                    }
                    (Some(r), None) => overwrite::action(r, &rel, &node, &rec.blobs, plan(args), &mut buf),
                };
                if node.node_type == NodeType::File && node.links > 1 && first.is_none() {
                    firsts.insert(
                        rel.clone(),
                        first_outcome(root.as_ref(), &rel, &node, &action, args.overwrite),
                    );
                }
                let word = match action {
                    Action::Conflict(why) => {
                        let item = target::display(&target, &rel);
                        progress.error("unpack", &item, &format!("{why}; would not be restored"));
                        failed += 1;
                        if node.node_type == NodeType::Dir {
                            blocked = Some(rel);
                        }
                        continue;
                    }
                    a => a.word(),
                };
                progress.restored(&rec, word == "unchanged");
                let size = (node.node_type == NodeType::File).then_some(node.size);
                out.write(&ActionRecord {
                    action: word.into(),
                    path: rec.path,
                    path_raw: rec.path_raw,
                    size,
                })?;
            }
            Tag::Delete => {
                let rec: common::record::DeleteRecord = line.parse()?;
                if !args.delete {
                    return Err(Error::Usage(format!(
                        "the stream asks to delete {} (walk --delete): give unpack --delete too",
                        rec.path
                    )));
                }
                out.write(&ActionRecord {
                    action: "deleted".into(),
                    path: rec.path,
                    path_raw: rec.path_raw,
                    size: None,
                })?;
            }
            Tag::Totals => progress.totals(&line.parse::<TotalsRecord>()?),
            // Blob data is not needed to decide: it is read past, not decrypted.
            Tag::Blob | Tag::BlobFailed => {}
            other => {
                return Err(line.err(format!("a {} record does not belong in unpack's input", other.name())))
            }
        }
    }
    out.finish()?;
    progress.finish()?;
    if failed > 0 {
        return Err(Error::SomeFailed(format!("{failed} items would not be restored")));
    }
    Ok(())
}

/// What a restore makes of the first name of a file with several: its other names are
/// linked to it only if it is restored, replaced or kept for its content in this run (one
/// that `if-newer` or `never` leaves alone is not linkable, as in the restore).
fn first_outcome(root: Option<&Dir>, rel: &[u8], node: &Node, action: &Action, mode: Mode) -> First {
    match (action, root) {
        (Action::Conflict(_), _) => First::Missing,
        (Action::Restored | Action::Updated, _) | (_, None) => First::New,
        (Action::Unchanged, Some(r)) => {
            let left_alone = matches!(mode, Mode::IfNewer | Mode::Never)
                && !overwrite::allows(mode, node, overwrite::stat_beneath(r, rel).as_ref());
            match (left_alone, overwrite::identity(r, rel)) {
                (false, Some((dev, ino))) => First::Kept(dev, ino),
                _ => First::Missing,
            }
        }
    }
}

/// `a` is below `b`.
fn inside(a: &[u8], b: &[u8]) -> bool {
    a.len() > b.len() && a.starts_with(b) && a[b.len()] == b'/'
}

/// The restore's options that decide what happens to what is there.
fn plan(args: &Args) -> overwrite::Plan {
    overwrite::Plan { mode: args.overwrite, delete: args.delete }
}
