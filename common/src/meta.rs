//! Applying a node's metadata to what a restore made, in restic's order: owner, extended
//! attributes, times, and the mode last (chown clears setuid bits; a chmod before it would
//! be lost). The system calls are in [`crate::target`], on `rustix`'s safe wrappers.
//!
//! One policy for every piece: a failure is collected as "what: why" and the caller reports
//! the node once and counts it as a failed item. The one exception, as in restic: without
//! root, owners are not restored at all (chown would only fail with EPERM).

use std::io;

use crate::node::{GoTime, Node, NodeType};
use crate::target::{AtMeta, FdMeta};

/// Where metadata goes: an open descriptor (files, directories) or a name that must not be
/// followed (symlinks, fifos, device nodes).
pub enum On<'a> {
    Fd(FdMeta<'a>),
    At(AtMeta<'a>),
}

fn t(g: &GoTime) -> (i64, u32) {
    (g.secs, g.nanos)
}

/// Applies owner (as root), xattrs, times and mode; returns what failed, one entry each.
pub fn apply(on: &On<'_>, node: &Node, root: bool) -> Vec<String> {
    let mut failed = Vec::new();
    let mut note = |what: String, r: io::Result<()>| {
        if let Err(e) = r {
            failed.push(format!("{what}: {e}"));
        }
    };
    if root {
        let r = match on {
            On::Fd(m) => m.chown(node.uid, node.gid),
            On::At(m) => m.chown(node.uid, node.gid),
        };
        note(format!("owner {}:{}", node.uid, node.gid), r);
    }
    for (name, value) in &node.extended_attributes {
        let r = match on {
            On::Fd(m) => m.set_xattr(name, value),
            On::At(m) => m.set_xattr(name, value),
        };
        note(format!("xattr {}", String::from_utf8_lossy(name)), r);
    }
    let r = match on {
        On::Fd(m) => m.set_times(t(&node.atime), t(&node.mtime)),
        On::At(m) => m.set_times(t(&node.atime), t(&node.mtime)),
    };
    note("times".into(), r);
    // A symbolic link has no mode of its own on Linux.
    if node.node_type != NodeType::Symlink {
        let mode = node.unix_mode() & 0o7777;
        let r = match on {
            On::Fd(m) => m.chmod(mode),
            On::At(m) => m.chmod(mode),
        };
        note(format!("mode {mode:o}"), r);
    }
    failed
}
