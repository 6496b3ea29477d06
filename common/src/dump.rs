//! Streaming a selection of a snapshot out in order, as restic's `dump` does: the bytes of one
//! file, or the nodes as a tar archive. Both take a file's plaintext one blob at a time from
//! a [`Blobs`] source, so memory stays at a blob however large the file.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::go::GoTime;
use crate::node::{Node, NodeType};
use crate::record::{BlobLoc, NodeRecord};

/// Where a file's checked plaintext comes from, blob by blob, in content order.
pub trait Blobs {
    /// Makes the next blob of the current file current. `want` is its location as the file's
    /// record lists it. The error names the blob and why it is unusable.
    fn advance(&mut self, want: &BlobLoc) -> Result<()>;
    /// The plaintext of the current blob, checked against its id.
    fn current(&self) -> &[u8];
}

/// The file's content, blob after blob, checked against the lengths its record gives.
fn next_blob<'a>(blobs: &'a mut impl Blobs, want: &BlobLoc) -> Result<&'a [u8]> {
    blobs.advance(want)?;
    let plain = blobs.current();
    if plain.len() as u64 != want.plain_len() {
        return Err(Error::integrity(format!(
            "blob {}: {} bytes, the record says {}",
            want.id.short(),
            plain.len(),
            want.plain_len()
        )));
    }
    Ok(plain)
}

/// Writes a file's content to `out` (`unpack --stdout`). The record must have been checked
/// against its node ([`NodeRecord::check_content`]), so its blobs add up to the node's size.
pub fn write_content(out: &mut impl Write, rec: &NodeRecord, blobs: &mut impl Blobs) -> Result<u64> {
    let mut n = 0;
    for want in &rec.blobs {
        let plain = next_blob(blobs, want)?;
        out.write_all(plain).map_err(|e| Error::io("stdout", e))?;
        n += plain.len() as u64;
    }
    Ok(n)
}

/// A file's content as a reader, for the tar builder. A failure is kept whole in `err`: the
/// builder only sees that reading stopped.
struct Content<'a, B: Blobs> {
    blobs: &'a mut B,
    wants: std::slice::Iter<'a, BlobLoc>,
    pos: usize,
    err: Option<Error>,
}

impl<B: Blobs> Read for Content<'_, B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.blobs.current().len() {
            let Some(want) = self.wants.next() else { return Ok(0) };
            if let Err(e) = next_blob(self.blobs, want) {
                self.err = Some(e);
                return Err(io::Error::other("blob failed"));
            }
            self.pos = 0;
        }
        let cur = &self.blobs.current()[self.pos..];
        let n = cur.len().min(buf.len());
        buf[..n].copy_from_slice(&cur[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes nodes as a tar archive (`unpack --tar`): GNU headers, GNU long names and link names,
/// and PAX records for what those cannot hold (nanosecond times, long owner names, exact
/// symbolic link targets, extended attributes as `SCHILY.xattr.NAME`, as restic writes them).
pub struct Tar<W: Write> {
    b: tar::Builder<W>,
    /// Put before every name: the selected directory's own name, as restic's dump names
    /// entries (`dump latest /etc` writes `etc/passwd`).
    prefix: Vec<u8>,
}

/// What [`Tar::node`] did with a node.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Entry,
    /// A socket: no archive holds one, and a restore skips it too.
    Skipped,
}

impl<W: Write> Tar<W> {
    /// An archive whose names start with `root/` when `root` is given.
    pub fn new(out: W, root: Option<&[u8]>) -> Tar<W> {
        let prefix = match root {
            Some(r) if !r.is_empty() => [r, b"/"].concat(),
            _ => Vec::new(),
        };
        Tar { b: tar::Builder::new(out), prefix }
    }

    fn name(&self, rel: &[u8]) -> Vec<u8> {
        [&self.prefix[..], rel].concat()
    }

    /// Writes one node; a file's content is read from `blobs`. A file whose record names an
    /// earlier one as its `hardlink` becomes a hard-link entry, its blobs not read.
    pub fn node(&mut self, rec: &NodeRecord, node: &Node, blobs: &mut impl Blobs) -> Result<Written> {
        let rel = rec.path_bytes()?;
        let mut name = self.name(&rel);
        if node.node_type == NodeType::Dir {
            // As restic and tar itself name directories.
            name.push(b'/');
        }
        let what = |e: io::Error| Error::io(format!("tar entry {}", rec.path), e);
        let mut h = tar::Header::new_gnu();
        h.set_mode(node.unix_mode() & 0o7777);
        h.set_uid(node.uid as u64);
        h.set_gid(node.gid as u64);
        h.set_mtime(node.mtime.secs.max(0) as u64);
        h.set_size(0);
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        // GNU tar takes PAX times with their fraction; the header holds whole seconds.
        if node.mtime.nanos != 0 || node.mtime.secs < 0 {
            pax.push(("mtime".into(), pax_time(&node.mtime)));
        }
        pax.push(("atime".into(), pax_time(&node.atime)));
        owner(&mut h, &mut pax, "uname", &node.user, tar::Header::set_username);
        owner(&mut h, &mut pax, "gname", &node.group, tar::Header::set_groupname);
        for (k, v) in &node.extended_attributes {
            pax.push((format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)), v.clone()));
        }
        let path = Path::new(OsStr::from_bytes(&name));
        match node.node_type {
            NodeType::File => {
                if let Some(first) = rec.hardlink_bytes()? {
                    h.set_entry_type(tar::EntryType::Link);
                    self.pax(&pax)?;
                    let target = self.name(&first);
                    self.b.append_link(&mut h, path, Path::new(OsStr::from_bytes(&target))).map_err(what)?;
                    return Ok(Written::Entry);
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(node.size);
                self.pax(&pax)?;
                let mut content = Content { blobs, wants: rec.blobs.iter(), pos: 0, err: None };
                let r = self.b.append_data(&mut h, path, &mut content);
                if let Some(e) = content.err.take() {
                    return Err(e);
                }
                r.map_err(what)?;
                return Ok(Written::Entry);
            }
            NodeType::Dir => h.set_entry_type(tar::EntryType::Directory),
            NodeType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                // The header's field is a courtesy for old readers: `Path` would normalise
                // `a//b` or `./x`, and 100 bytes are too few, so the exact target goes in PAX.
                let _ = h.set_link_name(String::from_utf8_lossy(&node.linktarget).as_ref());
                pax.push(("linkpath".into(), node.linktarget.clone()));
            }
            NodeType::Fifo => h.set_entry_type(tar::EntryType::Fifo),
            NodeType::Dev | NodeType::Chardev => {
                let kind = if node.node_type == NodeType::Dev { tar::EntryType::Block } else { tar::EntryType::Char };
                h.set_entry_type(kind);
                h.set_device_major(libc::major(node.device as libc::dev_t)).map_err(what)?;
                h.set_device_minor(libc::minor(node.device as libc::dev_t)).map_err(what)?;
            }
            NodeType::Socket => return Ok(Written::Skipped),
            NodeType::Irregular | NodeType::Other(_) => {
                let t = node.node_type.as_str();
                return Err(Error::format(format!("a node of type {t:?} has no tar entry")));
            }
        }
        self.pax(&pax)?;
        self.b.append_data(&mut h, path, io::empty()).map_err(what)?;
        Ok(Written::Entry)
    }

    fn pax(&mut self, pax: &[(String, Vec<u8>)]) -> Result<()> {
        self.b
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|e| Error::io("stdout", e))
    }

    /// Writes the two zero blocks that end an archive and returns the writer.
    pub fn finish(self) -> Result<W> {
        self.b.into_inner().map_err(|e| Error::io("stdout", e))
    }
}

/// Sets an owner name in the header, or in PAX when it does not fit there.
fn owner(
    h: &mut tar::Header,
    pax: &mut Vec<(String, Vec<u8>)>,
    key: &str,
    name: &str,
    set: fn(&mut tar::Header, &str) -> io::Result<()>,
) {
    if name.is_empty() {
        return;
    }
    if set(h, name).is_err() {
        pax.push((key.into(), name.as_bytes().to_vec()));
    }
}

/// A time as PAX writes it: seconds since the epoch, a fraction when there is one.
fn pax_time(t: &GoTime) -> Vec<u8> {
    let (mut secs, mut nanos) = (t.secs, t.nanos);
    let sign = if secs < 0 && nanos > 0 {
        // -1.25 s is secs = -2, nanos = 750_000_000: PAX wants "-1.25".
        secs += 1;
        nanos = 1_000_000_000 - nanos;
        if secs == 0 {
            "-"
        } else {
            ""
        }
    } else {
        ""
    };
    if nanos == 0 {
        format!("{sign}{secs}").into_bytes()
    } else {
        format!("{sign}{secs}.{nanos:09}").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = |secs, nanos| String::from_utf8(pax_time(&GoTime::from_unix(secs, nanos, 0))).unwrap();
        assert_eq!(t(1_600_000_000, 0), "1600000000");
        assert_eq!(t(1_600_000_000, 5), "1600000000.000000005");
        assert_eq!(t(-2, 750_000_000), "-1.250000000");
        assert_eq!(t(-1, 500_000_000), "-0.500000000");
        assert_eq!(t(-3, 0), "-3");
    }
}
