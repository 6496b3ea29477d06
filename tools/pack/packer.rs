//! Storing blobs into packs, and the index and snapshot files that follow them.

use std::io;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::Instant;

use common::error::{Error, Result, ResultExt};
use common::go::GoTime;
use common::index::{IdMap, Index};
use common::lock::Keeper;
use common::pack::{BlobType, Builder, Entry};
use common::record::{
    ChunkRecord, NodeRecord, PackDataRecord, PackHeaderRecord, ProgressRecord, Reader, RepoFileRecord,
    RequiresRecord, SourceRecord, StdoutFd, SummaryRecord, Tag, TotalsRecord, Writer,
};
use common::repo::Repo;
use common::snapshot::{Snapshot, Summary};
use common::{sys, Id};

use crate::trees::{Blobs, Trees};
use crate::Args;

/// restic writes an index file once it holds this many blobs.
const INDEX_BLOBS: usize = 50_000;

/// A blob for the worker to compress and seal.
struct Job {
    t: BlobType,
    id: Id,
    plain: Vec<u8>,
    sealed: Vec<u8>,
    /// Check that `plain` hashes to `id` (chunks from the stream).
    verify: bool,
}

/// A sealed blob, ready to go into its pack.
struct Done {
    t: BlobType,
    id: Id,
    plain: Vec<u8>,
    sealed: Vec<u8>,
    uncompressed: Option<u32>,
    plain_len: usize,
}

/// The worker thread: hash check, zstd and sealing, the CPU-heavy part of packing, so it
/// runs beside the main thread's parsing, base64 and writing.
fn worker(
    key: common::crypto::Key,
    mut compressor: Option<zstd::bulk::Compressor<'static>>,
    jobs: mpsc::Receiver<Job>,
    done: mpsc::SyncSender<Result<Done>>,
) {
    for job in jobs {
        let Job { t, id, plain, mut sealed, verify } = job;
        let r = (|| {
            if verify && Id::hash(&plain) != id {
                return Err(Error::integrity(format!("chunk {} does not match its id", id.short())));
            }
            sealed.clear();
            // restic never compresses empty blobs (0 means "not compressed" in its index).
            let uncompressed = match (&mut compressor, plain.is_empty()) {
                (Some(c), false) => {
                    // Compressed straight behind room for the IV, then sealed in place: no
                    // separate buffer for the zstd frame.
                    sealed.resize(common::crypto::IV_LEN, 0);
                    sealed.reserve(zstd::zstd_safe::compress_bound(plain.len()) + common::crypto::MAC_LEN);
                    let mut at = std::io::Cursor::new(&mut sealed);
                    at.set_position(common::crypto::IV_LEN as u64);
                    c.compress_to_buffer(&plain[..], &mut at)
                        .map_err(|e| Error::internal(format!("zstd: {e}")))?;
                    key.seal_prepared(&mut sealed, 0);
                    Some(plain.len() as u32)
                }
                _ => {
                    key.seal_into(&plain, &mut sealed);
                    None
                }
            };
            let plain_len = plain.len();
            Ok(Done { t, id, plain, sealed, uncompressed, plain_len })
        })();
        let failed = r.is_err();
        if done.send(r).is_err() || failed {
            return;
        }
    }
}

/// One open pack per blob type.
struct Open {
    seq: u64,
    builder: Builder,
}

/// Everything that writes blobs: dedup set, open packs, pending index, output.
pub struct Store<'a, W: io::Write> {
    pub repo: &'a Repo,
    out: &'a Mutex<Writer<W>>,
    index: &'a Index,
    keeper: &'a Keeper<'a, W>,
    /// Blobs this run stores, or adopted from packs no index lists yet.
    known: IdMap<()>,
    /// Packs already in the repository that this backup refers to (deduplicated blobs,
    /// adopted packs), and the index files that list them: the `requires` record.
    relied_packs: IdMap<()>,
    relied_indexes: IdMap<()>,
    open: [Option<Open>; 2],
    next_seq: u64,
    target: u64,
    pending: Vec<(Id, Vec<Entry>)>,
    pending_blobs: usize,
    jobs: mpsc::SyncSender<Job>,
    done: mpsc::Receiver<Result<Done>>,
    in_flight: bool,
    /// Buffers of finished blobs, reused so their pages are touched once.
    spare: Vec<Vec<u8>>,
    pub stats: SummaryRecord,
}

pub fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let repo = args.repo.open()?;
    let level = args.compression.level(repo.version())?;
    if args.pack_size < 4 && std::env::var_os("SLUICE_ALLOW_SMALL_PACKS").is_none() {
        return Err(Error::Usage(format!(
            "--pack-size {} is below restic's minimum of 4 MiB",
            args.pack_size
        )));
    }
    // The lock goes down the stream before anything is decided from the index, so push
    // stores it at once, whatever the input does (restic's order: lock, then look).
    let out = Mutex::new(Writer::stdout());
    {
        let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
        w.header_for_repository("pack", common::repo::binding(repo.backend.as_ref())?)?;
    }
    let keeper = Keeper::start(&repo, &out)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            keeper.watch(|e| {
                // The main thread may be blocked on a silent input: end here. The stream
                // stays without its end record, so push stores no snapshot.
                common::cli::warn("pack", &e);
                std::process::exit(e.exit_code());
            })
        });
        let r = pack(args, &repo, &out, &keeper, level, started);
        keeper.stop();
        r
    })
}

fn pack(
    args: &Args,
    repo: &Repo,
    out: &Mutex<Writer<io::BufWriter<StdoutFd>>>,
    keeper: &Keeper<'_, io::BufWriter<StdoutFd>>,
    level: Option<i32>,
    started: Instant,
) -> Result<()> {
    let index = repo.load_index()?;
    let mut input = Reader::stdin();
    input.read_header()?;
    let mut store = Store::new(repo, &index, out, keeper, args.pack_size << 20, level)?;
    store.adopt_orphans()?;
    let source: SourceRecord = match input.next_line()? {
        Some(line) if line.tag() == Tag::Source => line.parse()?,
        Some(line) => return Err(line.err("the stream must start with a source record")),
        None => return Err(input.err("empty stream: no source record")),
    };
    let mut trees = Trees::default();
    // push draws the backup's progress: it hears how far this stage got now and then.
    let mut told = Instant::now();
    let mut reading = 0u64;
    while let Some(line) = input.next_line_or_flush(|| store.idle())? {
        let no = line.no;
        match line.tag() {
            Tag::Chunk => {
                let c: ChunkRecord = line.parse()?;
                let mut plain = store.buffer();
                line.decode_payload(&mut plain)?;
                store.stats.bytes_read += plain.len() as u64;
                reading += plain.len() as u64;
                store.put_chunk(c.id, plain).map_err(|e| e.at_line(no))?;
            }
            Tag::Node => {
                let rec: NodeRecord = line.parse()?;
                trees.node(rec, &mut store).map_err(|e| e.at_line(no))?;
                reading = 0;
            }
            Tag::Totals => {
                let t: TotalsRecord = line.parse()?;
                store.out().write(&t)?;
            }
            other => {
                return Err(line.err(format!("a {} record does not belong in pack's input", other.name())))
            }
        }
        if told.elapsed() >= PROGRESS_EVERY {
            told = Instant::now();
            let (files, bytes) = trees.processed();
            let added = store.stats.counts.data_added;
            store.out().write(&ProgressRecord { files, bytes: bytes + reading, added })?;
        }
    }
    let (files, bytes) = trees.processed();
    let added = store.stats.counts.data_added;
    store.out().write(&ProgressRecord { files, bytes, added })?;
    let root = trees.finish(&mut store)?;
    trees.counts.add_to(&mut store.stats);
    store.close_all()?;
    store.flush_index()?;
    let requires =
        RequiresRecord { packs: sorted(&store.relied_packs), indexes: sorted(&store.relied_indexes) };
    store.out().write(&requires)?;

    let end = GoTime::now_local();
    let start = GoTime::parse(&source.time).context("source record time")?;
    let mut tags: Vec<String> =
        args.tag.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()).map(String::from).collect();
    tags.dedup();
    let (uid, gid) = sys::ids();
    let st = &store.stats;
    let snap = Snapshot {
        time: start,
        parent: source.parent,
        tree: root,
        paths: source.paths.clone(),
        hostname: args.host.clone().unwrap_or(source.hostname.clone()),
        username: sys::username(),
        uid,
        gid,
        excludes: source.excludes.clone(),
        tags,
        original: None,
        program_version: format!("sluice {}", env!("CARGO_PKG_VERSION")),
        summary: Some(Summary { backup_start: start, backup_end: end, counts: st.counts.clone() }),
    };
    let sealed = common::file::encode(&repo.key, &snap.to_json(), repo.version());
    let snap_id = Id::hash(&sealed);
    keeper.confirm()?;
    store.out().write_with_data(&RepoFileRecord { kind: "snapshot".into(), id: snap_id }, &sealed)?;
    store.stats.snapshot_id = snap_id;
    store.stats.backup_start = Some(start.to_string());
    store.stats.backup_end = Some(end.to_string());
    store.stats.total_duration = started.elapsed().as_secs_f64();
    let summary = store.stats.clone();
    store.out().write(&summary)?;
    // Once push has the end record it stores the snapshot and removes the lock: the keeper
    // must not be watching by then.
    keeper.stop();
    let r = store.out().end();
    r
}

/// How often `pack` tells `push` how far it got (a `progress` record).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

fn sorted(set: &IdMap<()>) -> Vec<Id> {
    let mut v: Vec<Id> = set.keys().copied().collect();
    v.sort();
    v
}

impl<'a, W: io::Write + Send> Store<'a, W> {
    fn new(
        repo: &'a Repo,
        index: &'a Index,
        out: &'a Mutex<Writer<W>>,
        keeper: &'a Keeper<'a, W>,
        target: u64,
        level: Option<i32>,
    ) -> Result<Self> {
        let known = IdMap::default();
        let compressor = match level {
            Some(l) => {
                Some(zstd::bulk::Compressor::new(l).map_err(|e| Error::internal(format!("zstd: {e}")))?)
            }
            None => None,
        };
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(1);
        let (done_tx, done) = mpsc::sync_channel::<Result<Done>>(1);
        let key = repo.key.clone();
        std::thread::spawn(move || worker(key, compressor, job_rx, done_tx));
        Ok(Store {
            repo,
            out,
            index,
            keeper,
            known,
            relied_packs: IdMap::default(),
            relied_indexes: IdMap::default(),
            open: [None, None],
            next_seq: 0,
            target,
            pending: Vec::new(),
            pending_blobs: 0,
            jobs,
            done,
            in_flight: false,
            spare: Vec::new(),
            stats: SummaryRecord::default(),
        })
    }
}

impl<W: io::Write + Send> Blobs for Store<'_, W> {
    fn has(&mut self, id: &Id) -> bool {
        Store::has(self, id)
    }

    fn put_tree(&mut self, id: Id, blob: &[u8]) -> Result<()> {
        self.put(BlobType::Tree, id, blob).map(drop)
    }
}

impl<'a, W: io::Write + Send> Store<'a, W> {
    /// Packs in `data/` that no index lists were left by a run that died before writing its
    /// index. Their blobs are whole and checked, so this run uses them instead of storing
    /// the same blobs again, and indexes them with its own packs.
    fn adopt_orphans(&mut self) -> Result<()> {
        let index = self.index;
        let backend = self.repo.backend.as_ref();
        for e in backend.list(common::backend::FileType::Pack)? {
            let id = Id::parse(&e.name)?;
            if index.has_pack(&id) {
                continue;
            }
            let read = common::pack::read_header(&self.repo.key, e.size, |off, len, buf| {
                backend.read_range(common::backend::FileType::Pack, &e.name, off, len, buf)
            });
            match read {
                Ok((entries, _)) => {
                    for en in &entries {
                        self.known.insert(en.id, ());
                    }
                    self.relied_packs.insert(id, ());
                    self.pending_blobs += entries.len();
                    self.pending.push((id, entries));
                }
                Err(err) => common::cli::warn(
                    "pack",
                    format!("pack {} is in no index and unreadable, ignored: {err}", id.short()),
                ),
            }
        }
        Ok(())
    }

    /// Whether this run or the repository has the blob already. One in the repository
    /// becomes something the backup relies on: its pack and index file go into `requires`.
    pub fn has(&mut self, id: &Id) -> bool {
        if self.known.contains_key(id) {
            return true;
        }
        match self.index.source(id) {
            Some((pack, file)) => {
                self.relied_packs.insert(pack, ());
                if let Some(f) = file {
                    self.relied_indexes.insert(f, ());
                }
                true
            }
            None => false,
        }
    }

    /// Stores a blob unless it is known; returns whether it was new.
    pub fn put(&mut self, t: BlobType, id: Id, plain: &[u8]) -> Result<bool> {
        if self.has(&id) {
            return Ok(false);
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(plain);
        let sealed = self.spare.pop().unwrap_or_default();
        self.submit(Job { t, id, plain: buf, sealed, verify: false })?;
        Ok(true)
    }

    /// Like `put`, for a chunk from the stream: takes its buffer, and checks on the worker
    /// that the bytes hash to the id `chunk` gave them.
    pub fn put_chunk(&mut self, id: Id, plain: Vec<u8>) -> Result<()> {
        if self.has(&id) {
            self.spare.push(plain);
            return Ok(());
        }
        let sealed = self.spare.pop().unwrap_or_default();
        self.submit(Job { t: BlobType::Data, id, plain, sealed, verify: true })
    }

    /// A buffer for the next chunk's bytes.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Hands a blob to the worker, then writes out the one finished before it while the
    /// worker seals this one: two blobs at most are in flight.
    fn submit(&mut self, job: Job) -> Result<()> {
        self.known.insert(job.id, ());
        let prev = if self.in_flight { Some(self.receive()?) } else { None };
        if self.jobs.send(job).is_err() {
            return Err(self.worker_failed());
        }
        self.in_flight = true;
        if let Some(d) = prev {
            self.emit(d)?;
        }
        Ok(())
    }

    fn receive(&mut self) -> Result<Done> {
        self.in_flight = false;
        match self.done.recv() {
            Ok(r) => r,
            Err(_) => Err(self.worker_failed()),
        }
    }

    fn worker_failed(&self) -> Error {
        Error::internal("the compression thread stopped")
    }

    /// Writes out every blob still in flight.
    pub fn drain(&mut self) -> Result<()> {
        if self.in_flight {
            let d = self.receive()?;
            self.emit(d)?;
        }
        Ok(())
    }

    /// While the input makes pack wait: the blob in flight and every record written go
    /// out, so push stores the packs that are finished and hears the progress.
    fn idle(&mut self) -> Result<()> {
        self.drain()?;
        self.out().flush()
    }

    /// Appends a sealed blob to its type's open pack and writes it out.
    fn emit(&mut self, d: Done) -> Result<()> {
        let Done { t, id, plain, sealed, uncompressed, plain_len } = d;
        self.spare.push(plain);
        let slot = match t {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        };
        if self.open[slot].is_none() {
            self.open[slot] = Some(Open { seq: self.next_seq, builder: Builder::new() });
            self.next_seq += 1;
        }
        let open = self.open[slot].as_mut().expect("just opened");
        let offset = open.builder.add(t, id, &sealed, uncompressed);
        let rec = PackDataRecord { seq: Some(open.seq), offset };
        self.out.lock().unwrap_or_else(|p| p.into_inner()).write_with_data(&rec, &sealed)?;
        let counts = &mut self.stats.counts;
        match t {
            BlobType::Data => counts.data_blobs += 1,
            BlobType::Tree => counts.tree_blobs += 1,
        }
        counts.data_added += plain_len as u64;
        counts.data_added_packed += sealed.len() as u64;
        let full = open.builder.size() >= self.target || open.builder.header_full();
        self.spare.push(sealed);
        if full {
            self.close(slot)?;
        }
        Ok(())
    }

    fn close(&mut self, slot: usize) -> Result<()> {
        let Some(open) = self.open[slot].take() else { return Ok(()) };
        let (id, tail, entries, size) = open.builder.finish(&self.repo.key);
        let header = &tail[..tail.len() - 4];
        let rec = PackHeaderRecord {
            seq: Some(open.seq),
            pack: Some(id),
            size,
            header: common::record::encode_b64(header),
        };
        self.out().write(&rec)?;
        self.pending_blobs += entries.len();
        self.pending.push((id, entries));
        if self.pending_blobs >= INDEX_BLOBS {
            self.flush_index()?;
        }
        Ok(())
    }

    /// Writes out what is in flight and closes both open packs.
    pub fn close_all(&mut self) -> Result<()> {
        self.drain()?;
        self.close(0)?;
        self.close(1)
    }

    /// Writes an index file for the packs closed since the last one.
    pub fn flush_index(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // An index makes its packs' blobs count as stored: only under a lock still held.
        self.keeper.confirm()?;
        let json = common::index::encode(&self.pending);
        let sealed = common::file::encode(&self.repo.key, &json, self.repo.version());
        let id = Id::hash(&sealed);
        self.out().write_with_data(&RepoFileRecord { kind: "index".into(), id }, &sealed)?;
        self.pending.clear();
        self.pending_blobs = 0;
        Ok(())
    }

    pub fn out(&self) -> MutexGuard<'a, Writer<W>> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }
}
