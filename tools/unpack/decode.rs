//! The decoder thread of a restore: reads the stream, MAC-checks, decrypts, decompresses
//! and hash-checks every blob that carries data, and hands the writer (`restore`) its items
//! in stream order, in batches. It also checks whether the target already holds a file's
//! content (then the file is kept, only its metadata set, as restic 0.17 does), reading it
//! while the writer works on the files before it.

use common::crypto::Key;
use common::error::{Error, Result};
use common::node::{Node, NodeType};
use common::overwrite::{self, Mode};
use common::pack::{Opener, MAX_BLOB, MAX_SEALED_BLOB};
use common::record::{
    decode_b64, BlobFailedRecord, BlobLoc, BlobRecord, DeleteRecord, NodeRecord, Reader, StdinFd, Tag,
    TotalsRecord,
};
use common::target::Dir;

/// What the decoder thread hands the writer, in stream order.
pub enum Item {
    /// A node record, and for a file whether the target already holds its content.
    Node(u64, NodeRecord, bool),
    /// A name to remove (`walk --delete`).
    Delete(u64, DeleteRecord),
    /// A blob record: its checked plaintext when the record carried data, `None` when it did
    /// not, or why the blob is unusable (damaged, unreadable upstream, impossible length).
    Blob(u64, BlobLoc, std::result::Result<Option<Plain>, String>),
    /// What the stream holds, for progress (and passed on to `verify`).
    Totals(TotalsRecord),
}

/// A plaintext inside a buffer: a pooled one for a large blob, its own small one for a
/// small blob. A small one was checked against its id here; a large one is checked by the
/// writer ([`Plain::checked`]), which is otherwise idle while large files are restored,
/// when this thread has most of the work.
pub struct Plain {
    pub buf: Vec<u8>,
    pub range: std::ops::Range<usize>,
    pub pooled: bool,
}

impl Plain {
    /// The plaintext, once it matches the blob's id; why not, if it does not.
    pub fn checked(&self, id: &common::Id) -> std::result::Result<&[u8], String> {
        let plain = &self.buf[self.range.clone()];
        if self.pooled {
            common::pack::check_id(id, plain).map_err(|e| e.to_string())?;
        }
        Ok(plain)
    }
}

/// Plaintexts up to this size are copied out of the pooled buffers, so that many of them
/// can travel together (one hand-over per batch, not per small file).
const SMALL: usize = 64 << 10;
/// A batch is handed over at this many items, this many bytes of small plaintexts, or at
/// the first large plaintext (which holds a pooled buffer).
const BATCH_ITEMS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

/// Batches decoded ahead of the writer.
pub const AHEAD: usize = 1;
/// Blob buffers in existence at most: one per large blob waiting or being written (a batch
/// holds at most one, its last item), and two for the blob being decoded (ciphertext, and
/// plaintext when compressed). Memory is bounded by this many blobs plus the small
/// plaintexts of three batches, whatever the pack size.
const BUFFERS: usize = AHEAD + 1 + 2;

/// The decoder thread: reads the stream, decrypts and checks every blob that carries data.
pub fn decode(
    input: &mut Reader<StdinFd>,
    key: &Key,
    keep: Option<(&Dir, Mode)>,
    items: &std::sync::mpsc::SyncSender<Result<Vec<Item>>>,
    pool: &std::sync::mpsc::Receiver<Vec<u8>>,
    batch: &mut Vec<Item>,
) -> Result<()> {
    let mut batch_bytes = 0usize;
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut made = 0usize;
    // A recycled buffer if there is one; a new one while fewer than BUFFERS exist; else wait
    // for the writer to give one back.
    let mut take = |spare: &mut Vec<Vec<u8>>| -> Result<Vec<u8>> {
        if let Some(b) = spare.pop().or_else(|| pool.try_recv().ok()) {
            return Ok(b);
        }
        if made < BUFFERS {
            made += 1;
            return Ok(Vec::new());
        }
        pool.recv().map_err(|_| Error::internal("the writer stopped"))
    };
    // Whether the blobs that follow belong to a file kept as it is (not decrypted then).
    let mut keeping = false;
    let mut check_buf = Vec::new();
    let mut opener = Opener::new(key)?;
    while let Some(line) = input.next_line()? {
        let no = line.no;
        let item = match line.tag() {
            Tag::Node => {
                let rec: NodeRecord = line.parse()?;
                keeping = match keep {
                    Some((root, mode)) => already_restored(root, &rec, mode, &mut check_buf),
                    None => false,
                };
                Item::Node(no, rec, keeping)
            }
            Tag::Delete => Item::Delete(no, line.parse()?),
            Tag::BlobFailed => {
                let f: BlobFailedRecord = line.parse()?;
                let why = if keeping { Ok(None) } else { Err(f.error) };
                Item::Blob(no, f.loc, why)
            }
            Tag::Totals => Item::Totals(line.parse()?),
            Tag::Blob if keeping => Item::Blob(no, line.parse::<BlobRecord>()?.loc, Ok(None)),
            Tag::Blob => {
                let rec = line.parse::<BlobRecord>()?.loc;
                let plain = match line.payload()? {
                    None => Ok(None),
                    Some(b64) => open(&mut opener, &rec, &b64, &mut spare, &mut take)?,
                };
                Item::Blob(no, rec, plain)
            }
            other => {
                return Err(line.err(format!("a {} record does not belong in unpack's input", other.name())))
            }
        };
        let (pooled, small) = match &item {
            Item::Blob(_, _, Ok(Some(p))) => (p.pooled, if p.pooled { 0 } else { p.buf.len() }),
            _ => (false, 0),
        };
        batch.push(item);
        batch_bytes += small;
        // A pooled buffer goes at once: the decoder may soon wait for it to come back.
        if pooled || batch.len() >= BATCH_ITEMS || batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            if items.send(Ok(std::mem::take(batch))).is_err() {
                // The writer stopped; it reports why.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Checks, decrypts and decompresses one blob's data. The outer error stops the restore (the
/// writer went away); the inner one fails only the files needing this blob.
#[allow(clippy::type_complexity)]
fn open(
    opener: &mut Opener<'_>,
    rec: &BlobLoc,
    b64: &str,
    spare: &mut Vec<Vec<u8>>,
    take: &mut impl FnMut(&mut Vec<Vec<u8>>) -> Result<Vec<u8>>,
) -> Result<std::result::Result<Option<Plain>, String>> {
    // Lengths are checked before anything is allocated: a record is untrusted input.
    if let Err(msg) = check_loc(rec) {
        return Ok(Err(msg));
    }
    if b64.len() as u64 != (rec.length as u64).div_ceil(3) * 4 {
        return Ok(Err(format!("{} bytes of base64 data, the record says {} bytes", b64.len(), rec.length)));
    }
    let mut sealed = take(spare)?;
    if let Err(e) = decode_b64(b64, &mut sealed) {
        spare.push(sealed);
        return Ok(Err(e.to_string()));
    }
    if sealed.len() != rec.length as usize {
        let msg = format!("{} bytes of data, the record says {}", sealed.len(), rec.length);
        spare.push(sealed);
        return Ok(Err(msg));
    }
    let mut out = take(spare)?;
    // A small plaintext is checked here; a large one by the writer (see `Plain`).
    let opened = opener.open_unchecked(&mut sealed, rec.uncompressed_length, &mut out).and_then(|p| {
        if p.len() <= SMALL {
            common::pack::check_id(&rec.id, p).map(|()| p)
        } else {
            Ok(p)
        }
    });
    let len = match opened {
        Ok(p) => p.len(),
        Err(e) => {
            spare.push(sealed);
            spare.push(out);
            return Ok(Err(e.to_string()));
        }
    };
    let (buf, range) = if rec.uncompressed_length.is_some() {
        spare.push(sealed);
        (out, 0..len)
    } else {
        spare.push(out);
        (sealed, common::crypto::IV_LEN..common::crypto::IV_LEN + len)
    };
    if len <= SMALL {
        let small = buf[range].to_vec();
        spare.push(buf);
        return Ok(Ok(Some(Plain { range: 0..small.len(), buf: small, pooled: false })));
    }
    Ok(Ok(Some(Plain { buf, range, pooled: true })))
}

/// Refuses blob lengths beyond what the format and [`MAX_BLOB`] allow.
pub fn check_loc(b: &BlobLoc) -> std::result::Result<(), String> {
    if b.length as u64 > MAX_SEALED_BLOB || b.plain_len() > MAX_BLOB {
        return Err(format!(
            "blob {} claims {} bytes ({} encrypted), more than the {} MiB a blob may hold",
            b.id.short(),
            b.plain_len(),
            b.length,
            MAX_BLOB >> 20
        ));
    }
    if (b.length as usize) <= common::crypto::OVERHEAD {
        return Err(format!("blob {} claims an encrypted length of {} bytes", b.id.short(), b.length));
    }
    Ok(())
}

/// Whether a file node's final name already holds its content (the check `verify` makes;
/// under `if-changed`, the same size and modification time). Such a file is kept as it is:
/// whether an earlier, interrupted run completed it (`--resume`: files appear under their
/// final names only when whole) or it was there before.
fn already_restored(root: &Dir, rec: &NodeRecord, mode: Mode, buf: &mut Vec<u8>) -> bool {
    if rec.hardlink.is_some() || rec.blobs.iter().any(|b| check_loc(b).is_err()) {
        return false;
    }
    let Ok(node) = Node::parse(rec.node.get().as_bytes()) else { return false };
    if node.node_type != NodeType::File || rec.check_content(&node).is_err() {
        return false;
    }
    let Ok(rel) = rec.path_bytes() else { return false };
    overwrite::unchanged(root, &rel, &node, &rec.blobs, mode, buf)
}
