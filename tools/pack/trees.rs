//! Building tree blobs bottom-up from the depth-first node stream.
//!
//! `chunk` writes a directory's node before its contents, in name order. A directory stays
//! open until a node outside it arrives; then its children's JSON, already in restic's exact
//! bytes, is framed as a tree blob, stored, and the directory's node gets its `subtree`.

use std::io;

use common::error::{Error, Result, ResultExt};
use common::go::GoJsonFlavor;
use common::node::{Node, NodeType};
use common::pack::BlobType;
use common::record::NodeRecord;
use common::Id;

use crate::packer::Store;

struct Dir {
    rel: Vec<u8>,
    node: Option<Node>,
    parent_tree: Option<Id>,
    /// The children's JSON, comma-separated, in order.
    json: Vec<u8>,
    last: Option<Vec<u8>>,
}

impl Dir {
    fn new(rel: Vec<u8>, node: Option<Node>, parent_tree: Option<Id>) -> Dir {
        Dir { rel, node, parent_tree, json: Vec::new(), last: None }
    }

    fn add(&mut self, name: &[u8], json: &[u8]) -> Result<()> {
        if let Some(last) = &self.last {
            if name <= last.as_slice() {
                return Err(Error::format(format!(
                    "{:?} arrives after {:?}: nodes must come in strictly increasing name order",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(last)
                )));
            }
        }
        if !self.json.is_empty() {
            self.json.push(b',');
        }
        self.json.extend_from_slice(json);
        self.last = Some(name.to_vec());
        Ok(())
    }
}

/// The open directories, root first.
pub struct Trees {
    stack: Vec<Dir>,
}

impl Default for Trees {
    fn default() -> Self {
        Trees { stack: vec![Dir::new(Vec::new(), None, None)] }
    }
}

fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

impl Trees {
    /// Takes one node record.
    pub fn node<W: io::Write + Send>(&mut self, rec: NodeRecord, store: &mut Store<'_, W>) -> Result<()> {
        let rel = rec.path_bytes().map_err(Error::Format)?;
        let (parent, name) = split(&rel);
        if name.is_empty() {
            return Err(Error::format(format!("node path {:?} has an empty name", rec.path)));
        }
        while self.stack.len() > 1 && self.stack.last().expect("non-empty").rel != parent {
            self.close(store)?;
        }
        if self.stack.last().expect("root stays").rel != parent {
            return Err(Error::format(format!("{}: its directory did not come before it", rec.path)));
        }
        let node = Node::parse(rec.node.get().as_bytes()).context(&rec.path)?;
        if node.name != name {
            return Err(Error::format(format!("{}: the node's name does not match its path", rec.path)));
        }
        match node.node_type {
            NodeType::Dir => {
                self.stack.push(Dir::new(rel.clone(), Some(node), rec.parent_tree));
                return Ok(());
            }
            NodeType::File => {
                let content = node
                    .content
                    .as_ref()
                    .ok_or_else(|| Error::format(format!("{}: file without content", rec.path)))?;
                for id in content {
                    if !store.has(id) {
                        return Err(Error::format(format!(
                            "{}: content blob {} was neither sent nor in the repository",
                            rec.path,
                            id.short()
                        )));
                    }
                }
                let s = &mut store.stats;
                match rec.status.as_deref() {
                    Some("unmodified") => s.files_unmodified += 1,
                    Some("changed") => s.files_changed += 1,
                    _ => s.files_new += 1,
                }
                if rec.status.as_deref() == Some("unmodified") {
                    // Counted as processed, as restic does, but not read.
                } else {
                    s.files_read += 1;
                }
                s.total_files_processed += 1;
                s.total_bytes_processed += node.size;
            }
            _ => {}
        }
        self.stack.last_mut().expect("root stays").add(name, rec.node.get().as_bytes())
    }

    /// Closes the innermost directory: stores its tree, hands its node to its parent.
    fn close<W: io::Write + Send>(&mut self, store: &mut Store<'_, W>) -> Result<Id> {
        let dir = self.stack.pop().expect("caller checks");
        let mut blob = Vec::with_capacity(dir.json.len() + 14);
        blob.extend_from_slice(b"{\"nodes\":[");
        blob.extend_from_slice(&dir.json);
        blob.extend_from_slice(b"]}\n");
        let id = Id::hash(&blob);
        store.put(BlobType::Tree, id, &blob)?;
        if let Some(mut node) = dir.node {
            let s = &mut store.stats;
            match dir.parent_tree {
                None => s.dirs_new += 1,
                Some(p) if p == id => s.dirs_unmodified += 1,
                Some(_) => s.dirs_changed += 1,
            }
            node.subtree = Some(id);
            let mut json = Vec::new();
            node.write_json(&mut json, GoJsonFlavor::default());
            let (_, name) = split(&dir.rel);
            self.stack.last_mut().expect("root stays").add(name, &json)?;
        }
        Ok(id)
    }

    /// Closes every directory; returns the root tree's id.
    pub fn finish<W: io::Write + Send>(&mut self, store: &mut Store<'_, W>) -> Result<Id> {
        while self.stack.len() > 1 {
            self.close(store)?;
        }
        self.close(store)
    }
}
