//! Checking a repository as `restic check` does: every index file decrypts and parses, every
//! pack the index names is there with the size its entries add up to, every snapshot and
//! every tree it reaches decrypts, and every blob a tree names is in the index. With
//! `read_data`, every byte of the packs read: each pack's hash against its name, its header
//! against the index, and each blob's MAC and id.
//!
//! Memory stays bounded whatever the pack size: packs are read a range at a time (at most
//! [`READ`] bytes, or one blob when a blob is larger), never whole.

use sha2::{Digest, Sha256};

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{IdMap, Index};
use crate::node::NodeType;
use crate::pack;
use crate::par::Ordered;
use crate::repo::Repo;
use crate::snapshot::Snapshot;
use crate::tree::parse_tree;

/// How much of a pack one read takes with `read_data`.
const READ: u64 = 8 << 20;
/// Workers for loading files and trees, and for reading packs.
const WORKERS: usize = 4;

/// The kinds of object a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Index,
    Pack,
    Snapshot,
    Tree,
}

impl Object {
    pub fn as_str(self) -> &'static str {
        match self {
            Object::Index => "index",
            Object::Pack => "pack",
            Object::Snapshot => "snapshot",
            Object::Tree => "tree",
        }
    }
}

/// The verdict on one object: `problem` is `None` when it is sound.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub object: Object,
    pub id: Id,
    pub problem: Option<Problem>,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub msg: String,
    /// A pack no index names: wasted space that `restic prune` removes, not damage.
    pub harmless: bool,
}

/// Which packs `read_data` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    All,
    /// Group `n` of `of` (1-based), by the first byte of the pack id, as restic's `n/t`.
    Group {
        n: u32,
        of: u32,
    },
    /// About this share of the packs, chosen at random.
    Share(f64),
}

impl Subset {
    /// Parses restic's `--read-data-subset` forms `n/t` and `p%`.
    pub fn parse(s: &str) -> Result<Subset> {
        let bad =
            || Error::Usage(format!("--read-data-subset {s:?}: expected n/t (e.g. 1/5) or a percentage"));
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            return Ok(Subset::Share(p / 100.0));
        }
        let (n, of) = s.split_once('/').ok_or_else(bad)?;
        let (n, of): (u32, u32) = (n.parse().map_err(|_| bad())?, of.parse().map_err(|_| bad())?);
        if of == 0 || n == 0 || n > of {
            return Err(bad());
        }
        Ok(Subset::Group { n, of })
    }

    fn takes(&self, pack: &Id) -> bool {
        match *self {
            Subset::All => true,
            Subset::Group { n, of } => pack.0[0] as u32 % of == n - 1,
            Subset::Share(p) => rand::random::<f64>() < p,
        }
    }
}

/// What to check beyond the structure.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub read_data: Option<Subset>,
}

/// Counts for the closing line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub errors: u64,
    /// Packs no index names (not errors).
    pub unreferenced: u64,
    pub packs_read: u64,
}

/// Checks `repo`, handing every verdict to `verdict` as it is reached.
pub fn check(repo: &Repo, opts: &Options, verdict: &mut dyn FnMut(Verdict) -> Result<()>) -> Result<Report> {
    let mut report = Report::default();
    let mut say = |v: Verdict, report: &mut Report| {
        match &v.problem {
            Some(p) if p.harmless => report.unreferenced += 1,
            Some(_) => report.errors += 1,
            None => {}
        }
        verdict(v)
    };
    let index = load_index(repo, &mut |v| say(v, &mut report))?;
    let stored = check_packs(repo, &index, &mut |v| say(v, &mut report))?;
    check_snapshots(repo, &index, &mut |v| say(v, &mut report))?;
    if let Some(subset) = opts.read_data {
        let wanted: Vec<(Id, u64)> = index
            .packs()
            .filter(|(id, _)| stored.contains_key(id) && subset.takes(id))
            .map(|(id, _)| (id, stored[&id]))
            .collect();
        report.packs_read = wanted.len() as u64;
        read_packs(repo, &index, wanted, &mut |v| say(v, &mut report))?;
    }
    Ok(report)
}

fn bad(object: Object, id: Id, msg: impl Into<String>) -> Verdict {
    Verdict { object, id, problem: Some(Problem { msg: msg.into(), harmless: false }) }
}

fn good(object: Object, id: Id) -> Verdict {
    Verdict { object, id, problem: None }
}

/// Every index file, each judged on its own; the sound ones merged.
fn load_index(repo: &Repo, say: &mut dyn FnMut(Verdict) -> Result<()>) -> Result<Index> {
    let mut index = Index::new();
    let v2 = repo.version() >= 2;
    Ordered::new(WORKERS).ahead(2 * WORKERS).run(
        repo.backend.list(FileType::Index)?,
        |e| e.size,
        |e| Ok((Id::parse(&e.name), repo.load_json(FileType::Index, &e.name))),
        |(id, json)| {
            let Ok(id) = id else { return Ok(()) };
            match json.and_then(|j| index.add_file(id, &j, v2)) {
                Ok(()) => say(good(Object::Index, id)),
                Err(e) => say(bad(Object::Index, id, e.to_string())),
            }
        },
    )?;
    Ok(index)
}

/// Every pack the index names must be stored with the size its entries add up to; a
/// stored pack no index names is reported as harmless. Returns the stored packs' sizes.
fn check_packs(repo: &Repo, index: &Index, say: &mut dyn FnMut(Verdict) -> Result<()>) -> Result<IdMap<u64>> {
    let mut stored: IdMap<u64> = IdMap::default();
    for e in repo.backend.list(FileType::Pack)? {
        if let Ok(id) = Id::parse(&e.name) {
            stored.insert(id, e.size);
        }
    }
    for (id, contents) in index.packs() {
        let want = contents.pack_size();
        match stored.get(&id) {
            None => say(bad(Object::Pack, id, "does not exist"))?,
            Some(&size) if size != want => {
                say(bad(Object::Pack, id, format!("unexpected file size: got {size}, expected {want}")))?
            }
            Some(_) => say(good(Object::Pack, id))?,
        }
    }
    let mut orphans: Vec<Id> = stored.keys().filter(|id| !index.has_pack(id)).copied().collect();
    orphans.sort();
    for id in orphans {
        let p = Problem { msg: "not referenced in any index".into(), harmless: true };
        say(Verdict { object: Object::Pack, id, problem: Some(p) })?;
    }
    Ok(stored)
}

/// Every snapshot, then every tree reachable from them, a level at a time (each level's
/// trees loaded in parallel, each tree once).
fn check_snapshots(repo: &Repo, index: &Index, say: &mut dyn FnMut(Verdict) -> Result<()>) -> Result<()> {
    let mut level: Vec<(Id, Id)> = Vec::new(); // (tree, where it was named)
    let mut seen: IdMap<()> = IdMap::default();
    Ordered::new(WORKERS).ahead(2 * WORKERS).run(
        repo.backend.list(FileType::Snapshot)?,
        |e| e.size,
        |e| {
            let snap = repo.load_json(FileType::Snapshot, &e.name).and_then(|j| Snapshot::parse(&j));
            Ok((Id::parse(&e.name), snap))
        },
        |(id, snap)| {
            let Ok(id) = id else { return Ok(()) };
            match snap {
                Ok(s) => {
                    if seen.insert(s.tree, ()).is_none() {
                        level.push((s.tree, id));
                    }
                    say(good(Object::Snapshot, id))
                }
                Err(e) => say(bad(Object::Snapshot, id, e.to_string())),
            }
        },
    )?;
    while !level.is_empty() {
        let mut next = Vec::new();
        Ordered::new(WORKERS).ahead(4 * WORKERS).run(
            std::mem::take(&mut level),
            |_| 1,
            |(tree, from)| Ok((tree, from, load_tree(repo, index, &tree))),
            |(tree, from, loaded)| {
                let entries = match loaded {
                    Ok(e) => e,
                    Err(e) => {
                        return say(bad(Object::Tree, tree, format!("{e} (named by {})", from.short())))
                    }
                };
                let mut problems = Vec::new();
                for e in entries {
                    let n = &e.node;
                    let name = String::from_utf8_lossy(&n.name);
                    if !n.name_is_clean() {
                        problems.push(format!("invalid node name {name:?}"));
                    }
                    match n.node_type {
                        NodeType::Dir => match n.subtree {
                            None => problems.push(format!("dir {name:?}: no subtree")),
                            Some(sub) => {
                                if seen.insert(sub, ()).is_none() {
                                    next.push((sub, tree));
                                }
                            }
                        },
                        NodeType::File => {
                            for (i, b) in n.content.as_deref().unwrap_or(&[]).iter().enumerate() {
                                if !index.contains(b) {
                                    problems
                                        .push(format!("file {name:?} blob {i}: {} not in index", b.short()));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                match problems.is_empty() {
                    true => Ok(()),
                    false => say(bad(Object::Tree, tree, problems.join("; "))),
                }
            },
        )?;
        level = next;
    }
    Ok(())
}

fn load_tree(repo: &Repo, index: &Index, tree: &Id) -> Result<Vec<crate::tree::TreeEntry>> {
    if !index.contains(tree) {
        return Err(Error::format("not in index"));
    }
    parse_tree(&repo.load_blob(index, tree)?)
}

/// Reads every byte of the given packs, several packs at once.
fn read_packs(
    repo: &Repo,
    index: &Index,
    packs: Vec<(Id, u64)>,
    say: &mut dyn FnMut(Verdict) -> Result<()>,
) -> Result<()> {
    Ordered::new(WORKERS).run(
        packs,
        |_| 1,
        |(id, size)| Ok((id, read_pack(repo, index, &id, size))),
        |(id, r)| match r {
            Ok(()) => say(good(Object::Pack, id)),
            Err(e) => say(bad(Object::Pack, id, e.to_string())),
        },
    )
}

/// One pack, front to back: every blob opened and checked, the header compared with the
/// index, and the hash of all the bytes compared with the pack's name.
fn read_pack(repo: &Repo, index: &Index, id: &Id, size: u64) -> Result<()> {
    let name = id.to_hex();
    let (entries, sealed_header) = pack::read_header(&repo.key, size, |off, len, buf| {
        repo.backend.read_range(FileType::Pack, &name, off, len, buf)
    })?;
    let mut problems = Vec::new();
    for e in &entries {
        match index.get(&e.id) {
            None => problems.push(format!("blob {} is not in the index", e.id.short())),
            Some(loc) if loc.pack == *id && (loc.offset, loc.length) != (e.offset, e.length) => {
                problems.push(format!("blob {}: the index puts it elsewhere in this pack", e.id.short()))
            }
            Some(_) => {}
        }
    }
    let mut hash = Sha256::new();
    let mut opener = pack::Opener::new(&repo.key)?;
    let (mut buf, mut plain) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < entries.len() {
        // One read of consecutive blobs up to READ bytes (or one larger blob).
        let start = entries[i].offset;
        let mut j = i + 1;
        while j < entries.len() && entries[j].offset + entries[j].length as u64 - start <= READ {
            j += 1;
        }
        let end = entries[j - 1].offset + entries[j - 1].length as u64;
        repo.backend.read_range(FileType::Pack, &name, start, end - start, &mut buf)?;
        if buf.len() as u64 != end - start {
            return Err(Error::format(format!("short read at offset {start}")));
        }
        hash.update(&buf);
        for e in &entries[i..j] {
            let at = (e.offset - start) as usize;
            let sealed = &mut buf[at..at + e.length as usize];
            if let Err(err) = opener.open(&e.id, sealed, e.uncompressed_length, &mut plain) {
                problems.push(format!("blob {}: {err}", e.id.short()));
            }
        }
        i = j;
    }
    hash.update(&sealed_header);
    hash.update((sealed_header.len() as u32).to_le_bytes());
    let got = Id(hash.finalize().into());
    if got != *id {
        problems.insert(0, format!("content does not match its name (hash {})", got.short()));
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(Error::integrity(problems.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_as_restic_writes_them() {
        assert_eq!(Subset::parse("1/5").unwrap(), Subset::Group { n: 1, of: 5 });
        assert_eq!(Subset::parse("25%").unwrap(), Subset::Share(0.25));
        for bad in ["0/5", "6/5", "1/0", "x", "0%", "101%", "1/"] {
            assert!(Subset::parse(bad).is_err(), "{bad}");
        }
        // Every pack falls in exactly one group of a split.
        for b in [0u8, 1, 77, 255] {
            let mut raw = [0u8; 32];
            raw[0] = b;
            let id = Id(raw);
            let hits = (1..=3).filter(|n| Subset::Group { n: *n, of: 3 }.takes(&id)).count();
            assert_eq!(hits, 1);
        }
    }
}
