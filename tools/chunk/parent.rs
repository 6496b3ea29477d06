//! The parent snapshot: finding it, and looking up the previous version of each node.

use common::error::{Result, ResultExt};
use common::index::Index;
use common::node::Node;
use common::repo::Repo;
use common::snapshot::Snapshot;
use common::tree::parse_tree;
use common::Id;

/// The parent's trees, loaded lazily along the walk.
pub struct Parent<'a> {
    pub repo: &'a Repo,
    pub index: &'a Index,
}

impl Parent<'_> {
    /// The nodes of a tree, sorted by name (as trees are).
    pub fn tree(&self, id: &Id) -> Result<Vec<Node>> {
        let bytes = self.repo.load_blob(self.index, id).context(format!("parent tree {}", id.short()))?;
        Ok(parse_tree(&bytes)?.into_iter().map(|e| e.node).collect())
    }
}

/// Finds a node by name in a sorted list.
pub fn find<'n>(nodes: &'n [Node], name: &[u8]) -> Option<&'n Node> {
    nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &nodes[i])
}

/// restic's default parent: the newest snapshot of the same host with exactly the same paths.
pub fn latest_matching<'s>(
    snaps: &'s [(Id, Snapshot)],
    host: &str,
    paths: &[String],
) -> Option<&'s (Id, Snapshot)> {
    let mut want: Vec<&String> = paths.iter().collect();
    want.sort();
    snaps.iter().rev().find(|(_, s)| {
        let mut have: Vec<&String> = s.paths.iter().collect();
        have.sort();
        s.hostname == host && have == want
    })
}
