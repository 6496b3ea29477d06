//! `unpack --zip`: the nodes as a zip archive written front to back, never seeking (stdout is
//! a pipe), with the `zip` crate's streaming writer: each file's sizes and CRC-32 follow its
//! data in a data descriptor, and the central directory comes last. Entries are stored, not
//! compressed (a backup's large files rarely shrink, and stored entries cost no CPU), and
//! carry Unix modes, the modification time (DOS time in UTC plus the extended-timestamp
//! field, which Info-ZIP's unzip prefers) and symbolic links.
//!
//! A zip holds no hard links: a further name of a file is written as a full copy, its
//! blobs read again from the repository (the stream carries them once). Memory is one blob
//! plus, for the central directory, each entry's name and a fixed record: it grows with the
//! number of entries, never with the size of the files.

use std::io::{self, Write};

use zip::write::{FullFileOptions, StreamWriter};
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::{check, next_blob, Blobs, Content};
use crate::error::{Error, Result};
use crate::go::time::civil_from_days;
use crate::go::GoTime;
use crate::node::{Node, NodeType};
use crate::record::NodeRecord;

/// What [`Zip::node`] did with a node.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Entry,
    /// A socket: no archive holds one, and a restore skips it too.
    Skipped,
    /// Something a zip cannot hold (a fifo, a device, a name or link target that is not
    /// UTF-8): left out, and why, for the caller to report.
    LeftOut(String),
}

/// A zip archive being streamed to `W`.
pub struct Zip<W: Write> {
    /// Never dropped: a `ZipWriter` dropped unfinished writes the central directory, so an
    /// archive cut off by a damaged blob would open as a whole one (and into a closed pipe
    /// it printed its own message). Only [`Zip::finish`] finishes it; an archive given up
    /// keeps its writer's bookkeeping (names, offsets) until the process exits.
    z: std::mem::ManuallyDrop<ZipWriter<StreamWriter<W>>>,
    /// Put before every name: the selected directory's own name, as for `--tar`.
    prefix: String,
}

impl<W: Write> Zip<W> {
    /// An archive whose names start with `root/` when `root` is given.
    pub fn new(out: W, root: Option<&str>) -> Zip<W> {
        let prefix = match root {
            Some(r) if !r.is_empty() => format!("{r}/"),
            _ => String::new(),
        };
        Zip { z: std::mem::ManuallyDrop::new(ZipWriter::new_stream(out)), prefix }
    }

    /// Writes one node; a file's content is read from `blobs` (read again from the repository
    /// for a further name of a hard-linked file).
    pub fn node(&mut self, rec: &NodeRecord, node: &Node, blobs: &mut impl Blobs) -> Result<Written> {
        check(rec, node)?;
        let rel = rec.path_bytes()?;
        let Ok(rel) = String::from_utf8(rel) else {
            // Its blobs are in the stream all the same: read past them.
            if rec.hardlink.is_none() {
                for want in &rec.blobs {
                    next_blob(blobs, want)?;
                }
            }
            return Ok(Written::LeftOut(
                "the name is not UTF-8, which a zip entry's name must be here".into(),
            ));
        };
        let name = format!("{}{rel}", self.prefix);
        let opts = options(node, node.unix_mode() & 0o7777)?;
        let what = |e| zip_error(&rec.path, e);
        match &node.node_type {
            NodeType::Dir => self.z.add_directory(name, opts).map_err(what)?,
            NodeType::Symlink => {
                let Ok(target) = std::str::from_utf8(&node.linktarget) else {
                    return Ok(Written::LeftOut("the link target is not UTF-8".into()));
                };
                self.z.add_symlink(name, target, opts.unix_permissions(0o777)).map_err(what)?;
            }
            NodeType::File => {
                let opts = opts.large_file(node.size >= u64::from(u32::MAX));
                self.z.start_file(name, opts).map_err(what)?;
                if rec.hardlink.is_some() {
                    for want in &rec.blobs {
                        blobs.read_again(want)?;
                        let plain = blobs.current();
                        if plain.len() as u64 != want.plain_len() {
                            return Err(Error::integrity(format!("blob {}: wrong length", want.id.short())));
                        }
                        self.z.write_all(plain).map_err(|e| Error::io("stdout", e))?;
                    }
                } else {
                    let mut content = Content { blobs, wants: rec.blobs.iter(), pos: 0, len: 0, err: None };
                    let r = io::copy(&mut content, &mut *self.z);
                    if let Some(e) = content.err.take() {
                        return Err(e);
                    }
                    r.map_err(|e| Error::io("stdout", e))?;
                }
            }
            NodeType::Socket => return Ok(Written::Skipped),
            other => return Ok(Written::LeftOut(format!("a zip holds no {other}"))),
        }
        Ok(Written::Entry)
    }

    /// Writes the central directory and returns the writer.
    pub fn finish(self) -> Result<W> {
        let z = std::mem::ManuallyDrop::into_inner(self.z);
        Ok(z.finish().map_err(|e| zip_error("the central directory", e))?.into_inner())
    }
}

/// The entry's mode and modification time.
fn options(node: &Node, mode: u32) -> Result<FullFileOptions<'static, 'static>> {
    let mut o = FullFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .unix_permissions(mode)
        .last_modified_time(dos_time(&node.mtime));
    // Info-ZIP's "UT" field: flags (mtime present), then the mtime in seconds, UTC.
    if let Ok(secs) = i32::try_from(node.mtime.secs) {
        let mut ut = vec![1u8];
        ut.extend_from_slice(&secs.to_le_bytes());
        o.add_extra_field(0x5455, ut, false).map_err(|e| zip_error("an extended timestamp", e))?;
    }
    Ok(o)
}

/// A time as DOS writes it, in UTC; before 1980 or after 2107, the format's first day.
fn dos_time(t: &GoTime) -> DateTime {
    let (days, secs) = (t.secs.div_euclid(86_400), t.secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s) = ((secs / 3600) as u8, (secs / 60 % 60) as u8, (secs % 60) as u8);
    u16::try_from(y)
        .ok()
        .and_then(|y| DateTime::from_date_and_time(y, m as u8, d as u8, h, mi, s).ok())
        .unwrap_or_default()
}

fn zip_error(what: &str, e: zip::result::ZipError) -> Error {
    match e {
        zip::result::ZipError::Io(e) => Error::io("stdout", e),
        e => Error::format(format!("zip entry {what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_times_in_utc() {
        let t = dos_time(&GoTime::from_unix(1_577_934_245, 7, 0)); // 2020-01-02T03:04:05Z
        assert_eq!(
            (t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second()),
            (2020, 1, 2, 3, 4, 4),
            "DOS time keeps even seconds"
        );
        assert_eq!(dos_time(&GoTime::from_unix(0, 0, 0)), DateTime::default());
    }
}
