//! Planning and issuing the ranged reads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::backend::{Backend, FileType};
use common::cli::warn;
use common::error::{Error, IoContext, Result, ResultExt};
use common::index::IdMap;
use common::pack::{header_len, EAGER_TAIL, MAX_BLOB, MAX_SEALED_BLOB};
use common::record::{
    BlobFailedRecord, BlobLoc, BlobRecord, NodeRecord, PackDataRecord, PackHeaderRecord, Reader, Tag, Writer,
};
use common::Id;

use crate::Args;

/// Size of the pieces a whole pack is streamed in.
const PIECE: u64 = 1 << 20;

pub fn run(args: &Args) -> Result<()> {
    if let Some(p) = &args.pack {
        return stream_pack(args, p);
    }
    let backend = args.repo.existing()?;
    let mut input = Reader::stdin();
    let header = input.read_header()?;
    let mut out = Writer::stdout();
    out.header("fetch-pack", header.snapshot)?;
    let mut f = Fetcher {
        backend: backend.as_ref(),
        sent: IdMap::default(),
        buf: Vec::new(),
        args,
        gone: IdMap::default(),
        failed: 0,
    };
    while let Some(line) = input.next_line()? {
        let no = line.no;
        // Records of every other type pass through unparsed.
        if line.tag() == Tag::Node {
            let rec: NodeRecord = line.parse()?;
            out.raw_line(line.text)?;
            if rec.hardlink.is_none() && !rec.blobs.is_empty() {
                f.fetch(&rec.blobs, &mut out).context(format!("line {no}: {}", rec.path))?;
            }
        } else {
            out.raw_line(line.text)?;
        }
    }
    out.finish()?;
    if f.failed > 0 {
        return Err(Error::SomeFailed(format!(
            "{} reads failed; their blobs were passed on as blob_failed records",
            f.failed
        )));
    }
    Ok(())
}

struct Fetcher<'a> {
    backend: &'a dyn Backend,
    /// Blobs already sent in this stream: later uses go without data.
    sent: IdMap<()>,
    buf: Vec<u8>,
    args: &'a Args,
    /// Packs found missing, and why: reported once, not once per range.
    gone: IdMap<String>,
    /// Failed reads (ranges, or packs found missing).
    failed: u64,
}

impl Fetcher<'_> {
    fn fetch<W: std::io::Write>(&mut self, blobs: &[BlobLoc], out: &mut Writer<W>) -> Result<()> {
        let mut i = 0;
        while i < blobs.len() {
            let first = &blobs[i];
            if self.sent.contains_key(&first.id) {
                out.write(&BlobRecord { loc: first.clone() })?;
                i += 1;
                continue;
            }
            // An impossible length is refused before any read or allocation.
            if first.length as u64 > MAX_SEALED_BLOB || first.plain_len() > MAX_BLOB {
                self.sent.insert(first.id, ());
                let msg = format!(
                    "blob {} claims {} bytes ({} encrypted), more than the {} MiB a blob may hold",
                    first.id.short(),
                    first.plain_len(),
                    first.length,
                    MAX_BLOB >> 20
                );
                warn("fetch-pack", format!("pack {}: {msg}", first.pack.short()));
                self.failed += 1;
                out.write(&BlobFailedRecord { loc: first.clone(), error: msg })?;
                i += 1;
                continue;
            }
            // Grow a read over following blobs of the same pack that lie ahead, close by.
            self.sent.insert(first.id, ());
            let start = first.offset;
            let mut end = start + first.length as u64;
            let mut j = i + 1;
            while let Some(b) = blobs.get(j) {
                let b_end = b.offset + b.length as u64;
                if b.pack != first.pack
                    || b.offset < end
                    || b.offset - end > self.args.max_gap
                    || b_end - start > self.args.max_read
                    || self.sent.contains_key(&b.id)
                {
                    break;
                }
                self.sent.insert(b.id, ());
                end = b_end;
                j += 1;
            }
            let read = match self.gone.get(&first.pack) {
                Some(msg) => Err(msg.clone()),
                None => {
                    let r = self.backend.read_range(
                        FileType::Pack,
                        &first.pack.to_hex(),
                        start,
                        end - start,
                        &mut self.buf,
                    );
                    match r {
                        Ok(()) if self.buf.len() as u64 == end - start => Ok(()),
                        Ok(()) => Err(format!("short read: {} of {} bytes", self.buf.len(), end - start)),
                        Err(e) => {
                            let missing = !matches!(
                                self.backend.exists(FileType::Pack, &first.pack.to_hex()),
                                Ok(true)
                            );
                            let msg = e.to_string();
                            self.failed += 1;
                            if missing {
                                warn("fetch-pack", format!("pack {}: {msg}", first.pack));
                                self.gone.insert(first.pack, msg.clone());
                            } else {
                                warn(
                                    "fetch-pack",
                                    format!("pack {} bytes {start}..{end}: {msg}", first.pack),
                                );
                            }
                            Err(msg)
                        }
                    }
                }
            };
            match read {
                Ok(()) => {
                    for b in &blobs[i..j] {
                        let at = (b.offset - start) as usize;
                        let data = &self.buf[at..at + b.length as usize];
                        out.write_with_data(&BlobRecord { loc: b.clone() }, data)?;
                    }
                }
                Err(msg) => {
                    if msg.starts_with("short read") {
                        self.failed += 1;
                        warn("fetch-pack", format!("pack {} bytes {start}..{end}: {msg}", first.pack));
                    }
                    for b in &blobs[i..j] {
                        out.write(&BlobFailedRecord { loc: b.clone(), error: msg.clone() })?;
                    }
                }
            }
            i = j;
        }
        Ok(())
    }
}

/// Something a whole pack can be read from: a file, or a pack in a repository.
trait Source {
    fn read_at(&self, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()>;
}

struct LocalFile(File, String);

impl Source for LocalFile {
    fn read_at(&self, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        buf.resize(len as usize, 0);
        self.0.read_exact_at(buf, offset).ctx(&self.1)
    }
}

struct RepoPack<'a>(&'a dyn Backend, String);

impl Source for RepoPack<'_> {
    fn read_at(&self, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        self.0.read_range(FileType::Pack, &self.1, offset, len, buf)
    }
}

/// `--pack`: the encrypted header, then the blob area in pieces, so that `unpack --list`
/// can check every blob holding no more than one blob and one piece.
fn stream_pack(args: &Args, spec: &str) -> Result<()> {
    let path = Path::new(spec);
    let backend;
    let (source, size, name): (Box<dyn Source>, u64, String) = if spec.contains('/') || path.is_file() {
        let f = File::open(path).ctx_path(path)?;
        let size = f.metadata().ctx_path(path)?.len();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (Box::new(LocalFile(f, spec.to_string())), size, name)
    } else {
        backend = args.repo.existing()?;
        let (name, size) = common::repo::resolve_pack(backend.as_ref(), spec)?;
        (Box::new(RepoPack(backend.as_ref(), name.clone())), size, name)
    };
    let what = format!("pack {name}");
    let mut buf = Vec::new();
    let eager = EAGER_TAIL.min(size);
    source.read_at(size - eager, eager, &mut buf).context(&what)?;
    if buf.len() < 4 {
        return Err(Error::format(format!("{what}: {size} bytes is too small to be a pack")));
    }
    let trailer: [u8; 4] = buf[buf.len() - 4..].try_into().expect("4 bytes");
    let hlen = header_len(size, trailer).context(&what)?;
    let mut enc = Vec::new();
    source.read_at(size - 4 - hlen, hlen, &mut enc).context(&what)?;

    let mut out = Writer::stdout();
    out.header("fetch-pack", None)?;
    let rec = PackHeaderRecord {
        seq: None,
        pack: Id::parse(&name).ok(),
        size,
        header: common::record::encode_b64(&enc),
    };
    out.write(&rec)?;
    let body = size - 4 - hlen;
    let mut off = 0;
    while off < body {
        let n = PIECE.min(body - off);
        source.read_at(off, n, &mut buf).context(&what)?;
        out.write_with_data(&PackDataRecord { seq: None, offset: off }, &buf)?;
        off += n;
    }
    out.finish()?;
    Ok(())
}
