//! Issuing the planned reads over several connections and writing the records in order.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use common::backend::{self, Backend, FileType};
use common::cli::warn;
use common::error::{Error, IoContext, Result, ResultExt};
use common::index::IdMap;
use common::par::Ordered;
use common::record::{
    BlobFailedRecord, BlobLoc, BlobRecord, NodeRecord, PackDataRecord, PackHeaderRecord, Reader, Tag, Writer,
};
use common::Id;

use crate::plan::{Item, Limits, Planner, Range, Unit};
use crate::Args;

/// Size of the pieces a whole pack is streamed in.
const PIECE: u64 = 1 << 20;

/// Fetched bytes held at once, over all connections: reads wait rather than go beyond it
/// (a single larger read still goes, alone). With the default `--max-read` of 8 MiB, three
/// such reads, or many smaller ones.
pub const READ_AHEAD: u64 = 24 << 20;

/// Capacity of the read buffers kept for reuse, at most: beyond it a buffer is freed.
const KEEP_BUFFERS: usize = 16 << 20;

/// The first read's cap, doubled read by read up to `--max-read`. The output is in order,
/// so the next stage waits for the whole first read (a proxy or server that sends nothing
/// before it has all of a range makes it wait longer): small, it gets going sooner.
const FIRST_READ: u64 = 1 << 20;

/// Lines of input held in one unit at most (about): a stream of records without blobs
/// still moves in bounded steps.
const MAX_LINES: usize = 1 << 20;

pub fn run(args: &Args) -> Result<()> {
    if let Some(p) = &args.pack {
        return stream_pack(args, p);
    }
    let backend = args.repo.backend()?;
    let binding = common::repo::binding(backend.as_ref())?;
    common::sys::return_large_buffers();
    let connections = match args.connections {
        Some(n) if n > 0 => n,
        Some(_) => return Err(Error::Usage("--connections must be at least 1".into())),
        None => backend::connections(&args.repo.location()?, &args.repo.options()?)?,
    };
    let mut input = Reader::stdin();
    let header = input.read_header()?;
    header.check_repository(binding, backend.location())?;
    header.check_not_fetched()?;
    let mut out = Writer::stdout();
    out.header_with_root("fetch-pack", header.snapshot, header.root, header.repository)?;
    let limits = Limits {
        max_gap: args.max_gap,
        max_read: args.max_read,
        first_read: FIRST_READ,
        max_lines: MAX_LINES,
    };
    let reader = Fetcher { backend: backend.as_ref(), gone: Mutex::default(), buffers: Mutex::default() };
    let mut writer = Output { out: &mut out, gone: IdMap::default(), failed: 0, buffers: &reader.buffers };
    // The unit being written counts as one ahead: one more keeps every connection reading
    // while the output drains it (bench-remote's pipeline, five alternating pairs: medians
    // 1.08 s -> 1.03 s).
    Ordered::new(connections).ahead(connections + 1).budget(READ_AHEAD).run(
        Units { input: &mut input, planner: Planner::new(limits), ended: false, error: None },
        |u| u.as_ref().map_or(0, Unit::weight),
        |u| reader.fetch(u?),
        |(u, got)| writer.write(u, got),
    )?;
    let failed = writer.failed;
    out.finish()?;
    if failed > 0 {
        return Err(Error::SomeFailed(format!(
            "{failed} reads failed; their blobs were passed on as blob_failed records"
        )));
    }
    Ok(())
}

/// The input, planned into units as the fetcher takes them. A bad record comes out as an
/// error after the units before it, so everything before it is still written.
struct Units<'a, R: std::io::Read> {
    input: &'a mut Reader<R>,
    planner: Planner,
    ended: bool,
    error: Option<Error>,
}

impl<R: std::io::Read> Iterator for Units<'_, R> {
    type Item = Result<Unit>;

    fn next(&mut self) -> Option<Result<Unit>> {
        loop {
            if let Some(u) = self.planner.pop() {
                return Some(Ok(u));
            }
            if let Some(e) = self.error.take() {
                return Some(Err(e));
            }
            if self.ended {
                return None;
            }
            let more = self.next_line();
            if !matches!(more, Ok(true)) {
                self.ended = true;
                self.error = more.err();
                // What was planned before the end (or a bad line) still goes out first.
                if let Some(u) = self.planner.finish() {
                    return Some(Ok(u));
                }
            }
        }
    }
}

impl<R: std::io::Read> Units<'_, R> {
    /// Reads one line into the plan; false after the end record.
    fn next_line(&mut self) -> Result<bool> {
        let Some(line) = self.input.next_line()? else { return Ok(false) };
        // Records of every other type pass through unparsed.
        if line.tag() == Tag::Node {
            let rec: NodeRecord = line.parse()?;
            // Another name of an earlier file gets no blob records, nor do the blobs the
            // restore target already holds (`in_target`, from `walk --target`).
            rec.check_in_target().map_err(|e| line.err(e.to_string()))?;
            let travel: Vec<BlobLoc>;
            let blobs = match (&rec.hardlink, rec.in_target.is_empty()) {
                (Some(_), _) => &[][..],
                (None, true) => &rec.blobs[..],
                (None, false) => {
                    travel = rec
                        .blobs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| rec.travels(*i))
                        .map(|(_, b)| b.clone())
                        .collect();
                    &travel[..]
                }
            };
            self.planner.line(line.text.to_string(), blobs);
        } else {
            self.planner.line(line.text.to_string(), &[]);
        }
        Ok(true)
    }
}

/// What a read gave.
enum Got {
    /// No read in this unit.
    Nothing,
    /// The range's bytes.
    Bytes(Vec<u8>),
    /// The pack is not in the repository.
    Missing(String),
    /// The read failed (after the backend's retries) or came up short.
    Failed(String),
    /// The pack is shorter than the range (cut short by a copy or a full disk): the bytes
    /// it still holds from the range's start, and why the rest failed. The blobs lying
    /// wholly inside them are sound as far as a read can tell; unpack checks each.
    Cut(Vec<u8>, String),
}

/// The workers' side: one ranged read per unit.
struct Fetcher<'a> {
    backend: &'a dyn Backend,
    /// Packs found missing: not asked for again.
    gone: Mutex<IdMap<String>>,
    /// Read buffers given back by the writer, so a restore does not fault in fresh pages
    /// for every read.
    buffers: Mutex<Vec<Vec<u8>>>,
}

impl Fetcher<'_> {
    fn fetch(&self, u: Unit) -> Result<(Unit, Got)> {
        let Some(r) = u.read else { return Ok((u, Got::Nothing)) };
        if let Some(msg) = lock(&self.gone).get(&r.pack) {
            return Ok((u, Got::Missing(msg.clone())));
        }
        let mut buf = self.buffer_for(r.len());
        let name = r.pack.to_hex();
        let got = match self.backend.read_range(FileType::Pack, &name, r.start, r.len(), &mut buf) {
            Ok(()) if buf.len() as u64 == r.len() => Got::Bytes(buf),
            Ok(()) => self.salvage(&r, format!("short read: {} of {} bytes", buf.len(), r.len()), buf),
            Err(e) => {
                let msg = e.to_string();
                if matches!(self.backend.exists(FileType::Pack, &name), Ok(true)) {
                    self.salvage(&r, msg, buf)
                } else {
                    lock(&self.gone).insert(r.pack, msg.clone());
                    Got::Missing(msg)
                }
            }
        };
        Ok((u, got))
    }

    /// A kept buffer for a read of `len` bytes: the smallest that holds them, else the largest
    /// (the read grows it). Reused pages are not faulted in again; what a small read holds
    /// beyond its bytes came from the kept buffers, so it stays within their bound.
    fn buffer_for(&self, len: u64) -> Vec<u8> {
        let mut pool = lock(&self.buffers);
        let cap = |b: &Vec<u8>| b.capacity() as u64;
        let best = match pool.iter().enumerate().filter(|(_, b)| cap(b) >= len).min_by_key(|(_, b)| cap(b)) {
            Some((i, _)) => Some(i),
            None => pool.iter().enumerate().max_by_key(|(_, b)| cap(b)).map(|(i, _)| i),
        };
        best.map(|i| pool.remove(i)).unwrap_or_default()
    }

    /// After a failed read: if the pack ends inside the range, what it holds of the range,
    /// so that the blobs before the cut still travel (restic restores them too). One
    /// request for the size and one for the bytes; a failure of either leaves the read
    /// failed as it was.
    fn salvage(&self, r: &Range, msg: String, mut buf: Vec<u8>) -> Got {
        let name = r.pack.to_hex();
        match self.backend.size(FileType::Pack, &name) {
            Ok(size) if size > r.start && size < r.end => {
                match self.backend.read_range(FileType::Pack, &name, r.start, size - r.start, &mut buf) {
                    Ok(()) if buf.len() as u64 == size - r.start => {
                        Got::Cut(buf, format!("{msg} (the pack ends at byte {size})"))
                    }
                    _ => Got::Failed(msg),
                }
            }
            _ => Got::Failed(msg),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The calling thread's side: records out in input order, failures reported in that order.
struct Output<'a, W: std::io::Write> {
    out: &'a mut Writer<W>,
    /// Packs found missing, and why: reported once, not once per read.
    gone: IdMap<String>,
    /// Failed reads (ranges, packs found missing, impossible blobs).
    failed: u64,
    buffers: &'a Mutex<Vec<Vec<u8>>>,
}

impl<W: std::io::Write> Output<'_, W> {
    fn write(&mut self, u: Unit, got: Got) -> Result<()> {
        let failure = match (&got, u.read) {
            (Got::Missing(msg), Some(r)) => Some(match self.gone.get(&r.pack) {
                Some(first) => first.clone(),
                None => {
                    self.failed += 1;
                    warn("fetch-pack", format!("pack {}: {msg}", r.pack));
                    self.gone.insert(r.pack, msg.clone());
                    msg.clone()
                }
            }),
            (Got::Failed(msg) | Got::Cut(_, msg), Some(r)) => {
                self.failed += 1;
                warn("fetch-pack", format!("pack {} bytes {}..{}: {msg}", r.pack, r.start, r.end));
                Some(msg.clone())
            }
            _ => None,
        };
        for item in &u.items {
            match item {
                Item::Line(text) => self.out.raw_line(text)?,
                Item::Sent(b) => self.out.write(&BlobRecord { loc: b.clone() })?,
                Item::Refused(b, msg) => {
                    warn("fetch-pack", format!("pack {}: {msg}", b.pack.short()));
                    self.failed += 1;
                    self.out.write(&BlobFailedRecord { loc: b.clone(), error: msg.clone() })?
                }
                Item::Data(b) => match (&got, &failure, u.read) {
                    // A cut pack's range holds the blobs before the cut; a whole one, all.
                    (Got::Bytes(buf) | Got::Cut(buf, _), _, Some(Range { start, .. }))
                        if b.offset + u64::from(b.length) <= start + buf.len() as u64 =>
                    {
                        let at = (b.offset - start) as usize;
                        self.out.write_with_data(
                            &BlobRecord { loc: b.clone() },
                            &buf[at..at + b.length as usize],
                        )?
                    }
                    (_, Some(msg), _) => {
                        self.out.write(&BlobFailedRecord { loc: b.clone(), error: msg.clone() })?
                    }
                    _ => return Err(Error::internal("a blob without its read")),
                },
            }
        }
        if let Got::Bytes(buf) | Got::Cut(buf, _) = got {
            // The oldest go first: the sizes of recent reads are the likeliest to come again.
            let mut pool = lock(self.buffers);
            pool.push(buf);
            while pool.iter().map(Vec::capacity).sum::<usize>() > KEEP_BUFFERS {
                pool.remove(0);
            }
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
    let enc = common::pack::read_sealed_header(size, |off, len, buf| source.read_at(off, len, buf))
        .context(&what)?;
    let hlen = enc.len() as u64;
    let mut buf = Vec::new();

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
