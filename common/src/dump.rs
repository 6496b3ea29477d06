//! Streaming a selection of a snapshot out in order, as restic's `dump` does: the bytes of one
//! file, or the nodes as a tar archive (or a zip archive, in [`zip`]). Both take a file's plaintext one blob at a time from
//! a [`Blobs`] source, so memory stays at a blob however large the file.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub mod zip;

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
    /// Makes `want` current by reading it again from the repository: a further name of a
    /// hard-linked file, whose blobs the stream does not carry, where an archive must hold a
    /// copy (zip has no hard links).
    fn read_again(&mut self, want: &BlobLoc) -> Result<()> {
        Err(Error::internal(format!("blob {} cannot be read again here", want.id.short())))
    }
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

/// A record's blobs must be its node's content, adding up to its size, or an archive entry
/// would get more or fewer bytes than its header announces; only files have blobs.
fn check(rec: &NodeRecord, node: &Node) -> Result<()> {
    if rec.hardlink.is_some() {
        return Ok(());
    }
    // Blobs the restore target holds (`walk --target`) do not travel: nothing to stream.
    if !rec.in_target.is_empty() {
        return Err(Error::stream(
            "the record's blobs are in a restore target (walk --target): not in the stream",
        ));
    }
    if node.node_type == NodeType::File {
        return rec.check_content(node);
    }
    if !rec.blobs.is_empty() {
        return Err(Error::stream(format!("a {} node with content blobs", node.node_type)));
    }
    Ok(())
}

/// Writes a file's content to `out` (`unpack --stdout`).
pub fn write_content(
    out: &mut impl Write,
    rec: &NodeRecord,
    node: &Node,
    blobs: &mut impl Blobs,
) -> Result<u64> {
    check(rec, node)?;
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
    /// Bytes of the current blob written so far, and its length (0 before the first: the
    /// source's current blob is still the last file's then).
    pos: usize,
    len: usize,
    err: Option<Error>,
}

impl<B: Blobs> Read for Content<'_, B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.len {
            let Some(want) = self.wants.next() else { return Ok(0) };
            match next_blob(self.blobs, want) {
                Ok(p) => self.len = p.len(),
                Err(e) => {
                    self.err = Some(e);
                    return Err(io::Error::other("blob failed"));
                }
            }
            self.pos = 0;
        }
        let cur = &self.blobs.current()[self.pos..self.len];
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
        check(rec, node)?;
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
                let mut content = Content { blobs, wants: rec.blobs.iter(), pos: 0, len: 0, err: None };
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
                let kind = if node.node_type == NodeType::Dev {
                    tar::EntryType::Block
                } else {
                    tar::EntryType::Char
                };
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
    use crate::record::encode_b64;
    use crate::Id;

    /// Plaintexts handed out in order, as the decoder would.
    struct Given(Vec<Vec<u8>>, usize);

    impl Blobs for Given {
        fn advance(&mut self, want: &BlobLoc) -> Result<()> {
            self.1 += 1;
            let p = &self.0[self.1 - 1];
            assert_eq!(Id::hash(p), want.id);
            Ok(())
        }
        fn current(&self) -> &[u8] {
            self.1.checked_sub(1).map_or(&[], |i| &self.0[i])
        }
    }

    const TIMES: &str = r#""mtime":"2020-01-02T03:04:05.000000007Z","atime":"2020-01-02T03:04:06Z","ctime":"2020-01-02T03:04:05Z""#;

    /// A record for a node of `kind` named by the last component of `path`, with `extra`
    /// JSON fields; `path` may hold bytes that are not UTF-8.
    fn rec(
        path: &[u8],
        kind: &str,
        extra: &str,
        blobs: &[&[u8]],
        hardlink: Option<&str>,
    ) -> (NodeRecord, Node) {
        let name = path.rsplit(|b| *b == b'/').next().unwrap();
        let (name_json, path_text, path_raw) = match std::str::from_utf8(path) {
            Ok(p) => {
                (serde_json::to_string(std::str::from_utf8(name).unwrap()).unwrap(), p.to_string(), None)
            }
            Err(_) => {
                ("\"x\"".to_string(), String::from_utf8_lossy(path).into_owned(), Some(encode_b64(path)))
            }
        };
        let locs: Vec<BlobLoc> = blobs
            .iter()
            .map(|b| BlobLoc {
                id: Id::hash(b),
                pack: Id::hash(b"pack"),
                offset: 0,
                length: b.len() as u32 + 32,
                uncompressed_length: None,
            })
            .collect();
        let content: Vec<String> = locs.iter().map(|l| format!("\"{}\"", l.id.to_hex())).collect();
        let json = format!(
            r#"{{"name":{name_json},"type":"{kind}","mode":{},{TIMES},"uid":1000,"gid":100,"user":"ann","group":"users"{extra},"content":[{}]}}"#,
            if kind == "dir" { 2147484141u32 } else { 0o640 },
            content.join(",")
        );
        let mut node = Node::parse(json.as_bytes()).unwrap();
        node.name = name.to_vec();
        let r = NodeRecord {
            path: path_text,
            path_raw,
            node: serde_json::value::RawValue::from_string(json).unwrap(),
            blobs: locs,
            hardlink: hardlink.map(str::to_string),
            hardlink_raw: None,
            in_target: Vec::new(),
            status: None,
            parent_tree: None,
        };
        (r, node)
    }

    #[test]
    fn tar_entries_for_every_node_type() {
        let long = format!("d/{}", "n".repeat(150)).into_bytes();
        let odd = b"d/bad-\xff-name".to_vec();
        let nodes = vec![
            rec(b"d", "dir", "", &[], None),
            rec(
                b"d/f",
                "file",
                r#","size":7,"links":2,"extended_attributes":[{"name":"user.k","value":"AP8="}]"#,
                &[b"abc", b"defg"],
                None,
            ),
            rec(b"d/h", "file", r#","size":7,"links":2"#, &[b"abc", b"defg"], Some("d/f")),
            rec(b"d/l", "symlink", r#","linktarget":"x","linktarget_raw":"Li8vYS/+""#, &[], None),
            rec(b"d/p", "fifo", "", &[], None),
            rec(b"d/c", "chardev", r#","device":259"#, &[], None),
            rec(b"d/s", "socket", "", &[], None),
            rec(&long, "file", r#","size":0"#, &[], None),
            rec(&odd, "file", r#","size":0"#, &[], None),
        ];
        let mut tar = Tar::new(Vec::new(), Some(b"top"));
        let mut blobs = Given(vec![b"abc".to_vec(), b"defg".to_vec()], 0);
        let done: Vec<Written> = nodes.iter().map(|(r, n)| tar.node(r, n, &mut blobs).unwrap()).collect();
        assert_eq!(done[6], Written::Skipped, "a socket has no entry");
        let bytes = tar.finish().unwrap();

        let mut ar = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path_bytes().into_owned();
            let h = e.header().clone();
            let link = e.link_name_bytes().map(|l| l.into_owned());
            let pax: Vec<(String, Vec<u8>)> = match e.pax_extensions().unwrap() {
                Some(x) => x
                    .map(|p| p.unwrap())
                    .map(|p| (p.key().unwrap().to_string(), p.value_bytes().to_vec()))
                    .collect(),
                None => Vec::new(),
            };
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((path, h, link, pax, data));
        }
        let names: Vec<&[u8]> = seen.iter().map(|s| &s.0[..]).collect();
        let long_top = [&b"top/"[..], &long].concat();
        let odd_top = [&b"top/"[..], &odd].concat();
        assert_eq!(
            names,
            vec![
                &b"top/d/"[..],
                b"top/d/f",
                b"top/d/h",
                b"top/d/l",
                b"top/d/p",
                b"top/d/c",
                &long_top,
                &odd_top
            ]
        );
        let (_, h, _, pax, data) = &seen[1];
        assert_eq!(data, b"abcdefg");
        assert_eq!((h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap()), (0o640, 1000, 100));
        assert_eq!(h.username().unwrap(), Some("ann"));
        assert_eq!(h.mtime().unwrap(), 1_577_934_245);
        let get = |k: &str| pax.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("mtime").unwrap(), b"1577934245.000000007");
        assert_eq!(get("SCHILY.xattr.user.k").unwrap(), b"\0\xff");
        assert_eq!(seen[0].1.mode().unwrap(), 0o755);
        assert_eq!(seen[2].1.entry_type(), tar::EntryType::Link);
        assert_eq!(seen[2].2.as_deref(), Some(&b"top/d/f"[..]));
        // The exact target, not the one `Path` would normalise, nor the lossy string.
        assert_eq!(seen[3].2.as_deref(), Some(&b".//a/\xfe"[..]));
        assert_eq!(seen[4].1.entry_type(), tar::EntryType::Fifo);
        let c = &seen[5].1;
        assert_eq!(
            (c.entry_type(), c.device_major().unwrap(), c.device_minor().unwrap()),
            (tar::EntryType::Char, Some(1), Some(3))
        );
    }

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
