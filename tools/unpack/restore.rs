//! Restoring from a node/blob stream: the writer, which makes the files, directories and
//! links from what the decoder thread (`decode`) hands it.
//!
//! Two kinds of trouble are told apart. A stream that is malformed (a record that does not
//! parse, blobs out of order, no end record) stops the restore: nothing after it can be
//! trusted. Trouble with one item (a damaged or missing blob, a record that does not match
//! its node, a path that would leave the target, something of the user's in the way, a
//! metadata change refused) fails that item only: one line on stderr naming it, its partial
//! file removed, the rest restored, and exit status 3 at the end.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IsTerminal};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::cli::warn;
use common::error::{Error, Result, ResultExt};
use common::index::IdMap;
use common::meta::{self, On};
use common::node::{Node, NodeType};
use common::overwrite::{self, Mode};
use common::progress::{Kind, Progress};
use common::record::{ActionRecord, BlobLoc, DeleteRecord, NodeRecord, Restored, Writer};
use common::target::{self, components, file_meta, Dir};
use common::Id;

use crate::decode::{check_loc, decode, Item, AHEAD};
use crate::Args;

/// The file being written, or skipped, blob by blob.
struct Current {
    rec: NodeRecord,
    node: Option<Node>,
    rel: Vec<u8>,
    parent: Rc<Dir>,
    name: Vec<u8>,
    /// The name the data goes to: the temporary name, `name` for a kept file, or empty for
    /// an unnamed file (or none made).
    tmp: Vec<u8>,
    /// `None` when the file is being skipped: its blobs are read and dropped.
    file: Option<File>,
    /// Blob records to expect for this node.
    blobs: usize,
    next: usize,
    offset: u64,
    idx: u32,
    /// Already restored and kept as it is: its blobs are only counted.
    kept: bool,
    /// The target's file this one replaces, when the record says it holds some of the
    /// blobs (`in_target`): they are copied from it, hashed again.
    local: Option<File>,
    /// Kept out of the target by `--overwrite`, yet its blobs came with it: written to a
    /// partial that later files may copy them from, removed at the end.
    discard: bool,
    /// Why the file failed (reported once at its end); `Some("")` skips it silently.
    failure: Option<String>,
    /// Bytes written and counted as restored so far (taken back if the file fails).
    counted: u64,
    /// Bytes written since the file's data was last sent on to the disk ([`WriteBack`]).
    unsent: u64,
}

/// What the target holds at a file's name, as far as the restore cares.
#[derive(Debug, Clone, Copy)]
struct There {
    /// The file's content (the decoder checked it): kept, not rewritten.
    same: bool,
    /// Something `--overwrite` keeps as it is, metadata included.
    untouched: bool,
}

/// A finished file waiting under its temporary name for the next [`Unpacker::flush`].
struct PendingFile {
    rec: NodeRecord,
    rel: Vec<u8>,
    parent: Rc<Dir>,
    name: Vec<u8>,
    tmp: Vec<u8>,
    /// An unnamed file ([`Unnamed`]), held open until it is linked to its name.
    file: Option<File>,
    idx: u32,
    links: u64,
    /// Metadata that could not be set, reported once the file is final.
    meta_failed: Vec<String>,
}

/// What waits for the next flush, in stream order: finished files, and directories the
/// stream has left (their metadata is set after the renames into them).
enum Pending {
    File(Box<PendingFile>),
    Dir(Box<OpenDir>),
}

/// Finished files, their bytes, and directories left that make a flush due. Each pending
/// item may hold a directory descriptor: these keep well below the usual limit of 1024.
const PENDING_FILES: usize = 256;
const PENDING_BYTES: u64 = 256 << 20;
const PENDING_DIRS: usize = 64;

/// When a flush pays for itself. On ext4 without a journal (`recently_deleted()` in
/// `fs/ext4/ialloc.c`) a create skips every free inode in an inode-table block that is dirty
/// and was freed in the last 5 minutes; each create dirties one more such block, so after a
/// mass deletion each create scans past more of them than the last, until a `syncfs` writes
/// the blocks out. Creates are timed: once their time above the fastest create seen adds up
/// to what the last `syncfs` took, the next flush is due. Where creates stay cheap (fresh
/// space, other file systems) it seldom fires and the batch bounds decide.
#[derive(Default)]
struct FlushClock {
    fastest: Option<Duration>,
    excess: Duration,
    last_sync: Option<Duration>,
}

/// The least extra create time that makes a flush due.
const MIN_EXCESS: Duration = Duration::from_millis(2);

impl FlushClock {
    /// Counts a create (made ahead or not); returns the fastest create seen, this one
    /// included, which [`SlowCreates`] judges by too.
    fn created(&mut self, took: Duration) -> Duration {
        let fastest = self.fastest.map_or(took, |f| f.min(took));
        self.fastest = Some(fastest);
        self.excess += took - fastest;
        fastest
    }

    /// A sync was asked for: the creates from here on count toward the next one.
    fn asked(&mut self) {
        self.excess = Duration::ZERO;
    }

    fn synced(&mut self, took: Duration) {
        self.last_sync = Some(took);
    }

    fn due(&self) -> bool {
        // Never less than a couple of milliseconds: a syncfs with little to write is quick,
        // and against its time the jitter of ordinary creates alone (a create that lost its
        // core for a moment) made a flush due every few files in fresh space.
        self.excess >= self.last_sync.unwrap_or_default().max(MIN_EXCESS)
    }
}

/// The `syncfs` of a batch, on a thread of its own: the writer goes on making the next
/// batch's files while the disk takes this one's, and only the batch's renames wait for it.
struct Syncer {
    ask: std::sync::mpsc::SyncSender<()>,
    done: std::sync::mpsc::Receiver<(io::Result<()>, Duration)>,
}

impl Syncer {
    /// The thread ends once `ask` is dropped.
    fn new(dir: Dir) -> Syncer {
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let (tell, done) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            for () in asked {
                let started = Instant::now();
                let r = dir.sync_fs();
                if tell.send((r, started.elapsed())).is_err() {
                    return;
                }
            }
        });
        Syncer { ask, done }
    }
}

/// Bytes written since the last sync that make one due, files waiting for it or not, once
/// no sync is under way (so the writer never waits for it). The disk's cache is flushed at
/// the end of each `syncfs`, and on this project's test machine that flush takes longer the
/// more was written since the last: 20 ms after 8 MiB, 130 ms after 72 MiB. A restore ending
/// in three 24 MiB files had its last sync take 90-120 ms; with syncs along the way, 10.
const SYNC_AHEAD: u64 = 16 << 20;

/// Large files' data sent on to the disk while the restore goes on, on a thread of its own
/// (`sync_file_range` starts the writing and does not wait). Left to itself the kernel
/// starts writing only once a tenth of memory is dirty, and a restore of a few GiB then
/// waited for nearly all of it in its batches' `syncfs`, the last above all.
struct WriteBack {
    ask: std::sync::mpsc::SyncSender<(File, u64, u64)>,
}

/// A file's data is sent on to the disk in steps of this many bytes. The last `syncfs` of a
/// restore ending in three 24 MiB files took 105–115 ms with steps of 8 MiB, and 75–90 ms
/// with steps of 1 MiB and each file's last bytes sent when it is done.
const WRITE_BACK: u64 = 1 << 20;

impl WriteBack {
    fn new() -> WriteBack {
        let (ask, asked) = std::sync::mpsc::sync_channel::<(File, u64, u64)>(4);
        std::thread::spawn(move || {
            for (file, offset, len) in asked {
                // Only a head start: the batch's syncfs is what makes the data durable, and
                // it reports any error.
                let _ = common::sys::start_writeback(&file, offset, len);
            }
        });
        WriteBack { ask }
    }

    /// Asks for `len` bytes of `file` at `offset` to be sent on; false if the thread is
    /// behind (a later ask covers them, or the batch's syncfs writes them).
    fn send(&self, file: &File, offset: u64, len: u64) -> bool {
        file.try_clone().is_ok_and(|f| self.ask.try_send((f, offset, len)).is_ok())
    }
}

/// Unnamed files (`O_TMPFILE`) made ahead on a thread of their own. Allocating the inode is
/// most of what creating a small file costs, and after a mass deletion on ext4 without a
/// journal it is most of the restore (`recently_deleted()`, see [`FlushClock`]): made here,
/// it runs on the other core while the writer fills and names the files before it.
struct Spares {
    made: std::sync::mpsc::Receiver<(io::Result<File>, Duration)>,
}

/// `SLUICE_MAKE_AHEAD`: when [`Spares`] are used (as root).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MakeAhead {
    WhenSlow,
    Always,
    Never,
}

impl MakeAhead {
    fn from_env() -> Result<MakeAhead> {
        match std::env::var("SLUICE_MAKE_AHEAD").as_deref() {
            Err(_) | Ok("") => Ok(MakeAhead::WhenSlow),
            Ok("always") => Ok(MakeAhead::Always),
            Ok("never") => Ok(MakeAhead::Never),
            Ok(v) => Err(Error::Usage(format!("SLUICE_MAKE_AHEAD={v}: expected always or never"))),
        }
    }
}

/// Unnamed files made ahead of the writer: enough to ride out a slow create or two.
const SPARES: usize = 32;

/// Whether creates have grown slow enough for [`Spares`]. In fresh space a create costs a
/// few microseconds, and making files ahead cost more than it saved (one more thread on two
/// cores, the link on top of the rename): restores 10–20 % slower. After a mass deletion on
/// ext4 without a journal creates take ten times as long and more, and made ahead they
/// halved the restore. So files are made ahead once most creates of a run of them took
/// over [`SLOW`] times the fastest seen, or over [`SLOW_ABOVE`] (right after a deletion
/// every create is slow, the first ones too, and none is fast to compare with);
/// `SLUICE_MAKE_AHEAD=always` or `never` decides instead. The fastest create is
/// [`FlushClock`]'s: until files are made ahead both have seen the same creates, and after
/// that this no longer decides anything.
#[derive(Default)]
struct SlowCreates {
    seen: u32,
    slow: u32,
}

/// Creates judged together, and how many times the fastest a slow one takes.
const RUN: u32 = 128;
const SLOW: u32 = 8;

/// A create slower than this is slow whatever the fastest was: several times what one takes
/// in fresh space (5–20 µs on this project's test machine), a fraction of one right after
/// a mass deletion (60–200 µs).
const SLOW_ABOVE: Duration = Duration::from_micros(50);

impl SlowCreates {
    /// Counts a create, `fastest` being the fastest seen (this one included); true once a
    /// run of them was mostly slow.
    fn created(&mut self, took: Duration, fastest: Duration) -> bool {
        self.slow += u32::from(took > (fastest * SLOW).min(SLOW_ABOVE));
        self.seen += 1;
        if self.seen < RUN {
            return false;
        }
        let slow = self.slow > RUN / 2;
        (self.seen, self.slow) = (0, 0);
        slow
    }
}

impl Spares {
    /// The thread stops at its first error (the file system has no `O_TMPFILE`, or is full:
    /// the writer then creates files itself, and reports what it meets) or once the writer
    /// drops `made`; files made and not taken vanish with it, having no name.
    fn new(dir: Dir) -> Spares {
        let (tell, made) = std::sync::mpsc::sync_channel(SPARES);
        std::thread::spawn(move || loop {
            let started = Instant::now();
            let file = dir.create_unnamed(0o600);
            let failed = file.is_err();
            if tell.send((file, started.elapsed())).is_err() || failed {
                return;
            }
        });
        Spares { made }
    }
}

struct OpenDir {
    rel: Vec<u8>,
    dir: Rc<Dir>,
    node: Node,
    rec: NodeRecord,
}

/// A file of this run whose bytes can be copied from: where they are now, and whether they
/// are still there (a failed file's partial is removed).
/// An unnamed file still waiting for its flush is read through the descriptor its
/// [`PendingFile`] holds (`rel` is then the name it will get).
struct Slot {
    rel: Vec<u8>,
    ok: bool,
}

/// Whether new files are made unnamed (`O_TMPFILE`) in the directory they go to and linked
/// to their final name once their batch is on disk, instead of created under a temporary
/// name and renamed. Both give a file its name only when its data is durable; the unnamed
/// file skips an entry made and removed in the directory, about a third of what a small
/// file cost the writer (5,000 files of 8 KiB: 184 ms with a temporary name and a rename,
/// 125 ms unnamed and linked), and an interrupted restore leaves no partial behind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Unnamed {
    /// Not tried yet: the first file is linked to a temporary name at once, which shows
    /// whether a descriptor can be linked here (as a user, that needs /proc).
    Untried,
    Yes,
    /// The file system has no `O_TMPFILE`, the link failed, or too few descriptors may be
    /// open for a batch of files held until their flush.
    No,
}

/// The least limit on open descriptors for [`Unnamed`] files: two batches of them open at
/// once, each file's directory too, and room to spare.
const UNNAMED_OPEN_FILES: u64 = 4 * PENDING_FILES as u64 + 1024;

/// Descriptors a restore holds at most, about: two batches of files and their directories.
/// `main` has the table made this large before any thread starts
/// ([`common::sys::reserve_open_files`]).
pub const OPEN_FILES: u32 = 4 * PENDING_FILES as u32;

struct Unpacker<W: io::Write> {
    target: PathBuf,
    root_dir: Rc<Dir>,
    sparse: bool,
    root: bool,
    out: Writer<W>,
    dirs: Vec<OpenDir>,
    /// The last parent directory not in the stream itself (created on the way to a node).
    implicit: Option<(Vec<u8>, Rc<Dir>)>,
    /// A directory that could not be made: everything below it is skipped.
    blocked: Option<Vec<u8>>,
    cur: Option<Current>,
    files: Vec<Slot>,
    /// Files with more than one link, by final path: what a later `hardlink` may name.
    linkable: HashMap<Vec<u8>, u32>,
    /// Where the plaintext of each blob seen so far can be copied from: (file, offset).
    seen: IdMap<(u32, u64)>,
    /// Blobs that could not be had, and why: a later file needing them fails too.
    bad: IdMap<String>,
    plain: Vec<u8>,
    failed: u64,
    /// `--resume`: partial files of earlier runs, by directory, found when the directory was
    /// first entered; removed once the file they were for is whole again.
    stale: Option<HashMap<Vec<u8>, Vec<Vec<u8>>>>,
    pending: Vec<Pending>,
    /// The batch before `pending`, waiting for its sync (asked for when true) to be renamed.
    syncing: Vec<Pending>,
    sync_asked: bool,
    /// The outcome of the sync asked for, when [`Unpacker::sync_idle`] saw it done.
    synced: Option<(io::Result<()>, Duration)>,
    syncer: Option<Syncer>,
    write_back: Option<WriteBack>,
    /// Started once creates grew slow; `Some(None)` once unnamed files cannot be had.
    spares: Option<Option<Spares>>,
    unnamed: Unnamed,
    slow_creates: SlowCreates,
    make_ahead: MakeAhead,
    pending_bytes: u64,
    /// Bytes written since the last sync was asked for.
    unsynced: u64,
    pending_files: usize,
    pending_dirs: usize,
    flush_due: FlushClock,
    mode: Mode,
    delete: bool,
    /// Partials of files `--overwrite` kept out, removed at the end (see `Current::discard`).
    donors: Vec<(Rc<Dir>, Vec<u8>)>,
    progress: Progress,
}

pub fn run(args: &Args) -> Result<()> {
    let target = args.target.clone().expect("clap requires --target");
    let progress = Progress::new(Kind::Restore, &args.progress, &args.json, args.quiet)?;
    let (repo, mut input, header) = crate::open_fetched(args)?;
    progress.start();
    // restic makes no target for a selection that keeps nothing; neither do we, though the
    // target is opened (made) before the first record is read.
    let made = first_missing(&target);
    let root_dir = Dir::open_target(&target).map_err(|e| match e.kind() {
        io::ErrorKind::NotADirectory => {
            Error::format(format!("target {} is not a directory", target.display()))
        }
        _ => Error::io(format!("target {}", target.display()), e),
    })?;
    root_dir.check_writable().map_err(|e| Error::io(format!("target {}", target.display()), e))?;
    // A second run without --resume writes every unfinished file anew beside what the
    // first left of it: say how to finish instead.
    common::signal::hint_on_interrupt("; finish with the same restore and --resume (it keeps finished files and removes any .*.sluice-part files left)");
    let mut u = Unpacker {
        target,
        root_dir: Rc::new(root_dir),
        sparse: args.sparse,
        root: target::is_root(),
        // The records are for verify and scripts; on a terminal a line of JSON per file is
        // noise, and it tore through the bar drawn there.
        out: Writer::stdout_unless(progress.json_on_stdout() || std::io::stdout().is_terminal()),
        dirs: Vec::new(),
        implicit: None,
        blocked: None,
        cur: None,
        files: Vec::new(),
        linkable: HashMap::new(),
        seen: IdMap::default(),
        bad: IdMap::default(),
        plain: Vec::new(),
        failed: 0,
        stale: args.resume.then(HashMap::new),
        pending: Vec::new(),
        syncing: Vec::new(),
        sync_asked: false,
        synced: None,
        syncer: None,
        write_back: None,
        spares: None,
        unnamed: match common::sys::open_files_limit() {
            Some(n) if n >= UNNAMED_OPEN_FILES => Unnamed::Untried,
            _ => Unnamed::No,
        },
        slow_creates: SlowCreates::default(),
        make_ahead: MakeAhead::from_env()?,
        pending_bytes: 0,
        unsynced: 0,
        pending_files: 0,
        pending_dirs: 0,
        flush_due: FlushClock::default(),
        mode: args.overwrite,
        delete: args.delete,
        donors: Vec::new(),
        progress,
    };
    u.out.header("unpack", header.snapshot)?;

    // Decrypting and checking runs on its own thread so that it overlaps the file system
    // work; buffers travel back through `pool` so pages are touched once, not per blob.
    let (items_tx, items) = std::sync::mpsc::sync_channel::<Result<Vec<Item>>>(AHEAD);
    let (pool, pool_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let key = repo.key.clone();
    // Under `never` an existing file is never replaced, so its content need not be read; in
    // a target empty at the start only this run's files can be found, and looking for each
    // name cost a failed open per file.
    let keep_root = match args.overwrite {
        Mode::Never => None,
        _ if u.root_dir.is_empty().unwrap_or(false) => None,
        _ => Some(u.root_dir.try_clone().map_err(|e| Error::io("target", e))?),
    };
    let mode = args.overwrite;
    let decoder = std::thread::spawn(move || {
        let mut batch = Vec::new();
        let keep = keep_root.as_ref().map(|r| (r, mode));
        let result = decode(&mut input, &key, keep, &items_tx, &pool_rx, &mut batch);
        // What was decoded before an error is restored before the error is reported.
        if !batch.is_empty() {
            let _ = items_tx.send(Ok(batch));
        }
        if let Err(e) = result {
            let _ = items_tx.send(Err(e));
        }
    });
    let mut entries = 0u64;
    let result = (|| -> Result<()> {
        for batch in items.iter() {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    return Err(match &u.cur {
                        Some(c) => e.context(&c.rec.path),
                        None => e,
                    })
                }
            };
            for item in batch {
                match item {
                    Item::Node(no, rec, keep) => {
                        entries += 1;
                        u.node(rec, keep).context(format!("line {no}"))?
                    }
                    Item::Delete(no, rec) => {
                        entries += 1;
                        u.remove(rec).context(format!("line {no}"))?
                    }
                    Item::Totals(t) => {
                        u.progress.totals(&t);
                        u.out.write(&t)?;
                    }
                    Item::Blob(no, rec, plain) => {
                        let r = match &plain {
                            Ok(Some(p)) => match p.checked(&rec.id) {
                                Ok(data) => u.blob(rec, Ok(Some(data))),
                                Err(msg) => u.blob(rec, Err(msg)),
                            },
                            Ok(None) => u.blob(rec, Ok(None)),
                            Err(msg) => u.blob(rec, Err(msg.clone())),
                        };
                        match plain {
                            Ok(Some(p)) if p.pooled => drop(pool.send(p.buf)),
                            _ => {}
                        }
                        r.context(format!("line {no}"))?;
                    }
                }
            }
        }
        Ok(())
    })();
    drop(items);
    // A panic on the decoder thread must not pass for a stream that simply ended.
    if decoder.join().is_err() {
        return Err(Error::internal("internal error: the decoding thread panicked"));
    }
    if result.is_err() {
        // Files finished before the trouble are whole: give them their names.
        let _ = u.flush();
        for (dir, tmp) in std::mem::take(&mut u.donors) {
            let _ = dir.unlink(&tmp);
        }
    }
    result?;
    if let Some(c) = u.cur.take() {
        let _ = u.flush();
        return Err(Error::stream(format!(
            "stream ended before {} got all its blobs ({} of {})",
            c.rec.path, c.next, c.blobs
        )));
    }
    while let Some(d) = u.dirs.pop() {
        u.leave(d)?;
    }
    u.flush()?;
    for (dir, tmp) in std::mem::take(&mut u.donors) {
        let _ = dir.unlink(&tmp);
    }
    // The last renames and directory metadata are made durable once, at the end; each
    // flush's syncfs did the same for the batches before it.
    let _ = u.root_dir.sync_fs();
    let failed = u.failed;
    u.out.finish()?;
    u.progress.finish()?;
    if failed > 0 {
        return Err(Error::SomeFailed(format!("{failed} items were not restored completely")));
    }
    if entries == 0 {
        let left = match made {
            Some(top) if remove_made(&u.target, &top) => "not created",
            Some(_) => "created, and left empty",
            None => "left as it was",
        };
        if !args.quiet && !args.json.json {
            common::cli::warn(
                "unpack",
                format!(
                    "nothing to restore: the stream names no file or directory (did walk's filters select nothing?); target {} {left}",
                    u.target.display()
                ),
            );
        }
    }
    Ok(())
}

/// The outermost directory of `target` (itself included) that does not exist yet: what
/// opening the target will make.
fn first_missing(target: &Path) -> Option<PathBuf> {
    let mut top = None;
    for a in target.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        if a.symlink_metadata().is_ok() {
            break;
        }
        top = Some(a.to_path_buf());
    }
    top
}

/// Removes the empty directories opening the target made, from `target` up to `top`;
/// whether all of them went.
fn remove_made(target: &Path, top: &Path) -> bool {
    for a in target.ancestors() {
        if std::fs::remove_dir(a).is_err() {
            return false;
        }
        if a == top {
            return true;
        }
    }
    false
}

/// The parent part and the last component of a clean relative path.
fn split_last(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// Whether `rel` is strictly inside the directory `dir`.
fn inside(rel: &[u8], dir: &[u8]) -> bool {
    rel.len() > dir.len() && rel.starts_with(dir) && rel[dir.len()] == b'/'
}

/// An I/O error in words for a one-line message; a link or file where a directory must be
/// says so plainly.
fn why(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::EXDEV) => {
            "not a directory (a file or symbolic link is in the way; it was left as it is)".into()
        }
        _ => e.to_string(),
    }
}

impl<W: io::Write> Unpacker<W> {
    fn show(&self, rel: &[u8]) -> String {
        target::display(&self.target, rel)
    }

    /// Reports one failed item.
    fn fail(&mut self, rel: &[u8], msg: impl std::fmt::Display) {
        self.progress.error("unpack", &self.show(rel), &msg.to_string());
        self.failed += 1;
    }

    /// Says that a node is restored (`kept`: was already, `--resume`): its record, and progress.
    fn restored(&mut self, rec: &NodeRecord, kept: bool) -> Result<()> {
        self.progress.restored(rec, kept);
        self.out.write(&Restored(rec))
    }

    /// Says that a file written blob by blob is restored: its bytes are counted already.
    fn restored_written(&mut self, rec: &NodeRecord) -> Result<()> {
        self.progress.file_written();
        self.out.write(&Restored(rec))
    }

    /// The directory a node goes into, made (mode 0700) where the stream did not make it.
    fn parent_dir(&mut self, parent: &[u8]) -> std::result::Result<Rc<Dir>, String> {
        if parent.is_empty() {
            return Ok(self.root_dir.clone());
        }
        if let Some(d) = self.dirs.last() {
            if d.rel == parent {
                return Ok(d.dir.clone());
            }
        }
        if let Some((r, d)) = &self.implicit {
            if r == parent {
                return Ok(d.clone());
            }
        }
        // From the deepest open directory above it (or the target), one component at a time.
        let (mut cur, mut done) = match self.dirs.last().filter(|d| inside(parent, &d.rel)) {
            Some(d) => (d.dir.clone(), d.rel.len() + 1),
            None => (self.root_dir.clone(), 0),
        };
        for comp in parent[done..].split(|b| *b == b'/') {
            done += comp.len() + 1;
            let here = &parent[..(done - 1).min(parent.len())];
            let next = match cur.open_dir(comp) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    cur.mkdir(comp, 0o700).and_then(|()| cur.open_dir(comp))
                }
                r => r,
            };
            cur = Rc::new(next.map_err(|e| format!("{}: {}", self.show(here), why(&e)))?);
        }
        self.implicit = Some((parent.to_vec(), cur.clone()));
        Ok(cur)
    }

    fn node(&mut self, rec: NodeRecord, keep: bool) -> Result<()> {
        if let Some(c) = &self.cur {
            return Err(Error::stream(format!(
                "node {} arrived before {} got all its blobs ({} of {})",
                rec.path, c.rec.path, c.next, c.blobs
            )));
        }
        let rel = rec.path_bytes()?;
        rec.check_in_target()?;
        // Leave the directories this node is not inside of.
        while let Some(d) = self.dirs.last() {
            if inside(&rel, &d.rel) {
                break;
            }
            let d = self.dirs.pop().expect("non-empty");
            self.leave(d)?;
        }
        // fetch-pack sends the blobs of every record that lists some, except hard links.
        let blobs = if rec.hardlink.is_some() { 0 } else { rec.blobs.len() };
        let skip = |u: &mut Self, rec: NodeRecord, rel: Vec<u8>, why: Option<String>| -> Result<()> {
            if let Some(w) = &why {
                u.fail(&rel, w);
            }
            u.begin(Current {
                rec,
                node: None,
                rel,
                parent: u.root_dir.clone(),
                name: Vec::new(),
                tmp: Vec::new(),
                file: None,
                blobs,
                next: 0,
                offset: 0,
                idx: u32::MAX,
                kept: false,
                local: None,
                discard: false,
                failure: Some(String::new()),
                counted: 0,
                unsent: 0,
            })
        };
        if self.blocked.as_ref().is_some_and(|b| inside(&rel, b)) {
            return skip(self, rec, rel, None);
        }
        self.blocked = None;
        if components(&rel).is_none() {
            let msg =
                format!("path {:?} is not a clean relative path; skipped", String::from_utf8_lossy(&rel));
            warn("unpack", format!("{}: {msg}", self.target.display()));
            self.failed += 1;
            return skip(self, rec, rel, None);
        }
        let node = match Node::parse(rec.node.get().as_bytes()) {
            Ok(n) => n,
            Err(e) => return skip(self, rec, rel, Some(format!("malformed node: {e}"))),
        };
        // The name a node was stored under must be the one its path gives it (a name with a
        // '/' or NUL in it never is).
        if node.name != split_last(&rel).1 {
            let msg = format!(
                "the node is named {:?} but its path ends in {:?}; skipped",
                String::from_utf8_lossy(&node.name),
                String::from_utf8_lossy(split_last(&rel).1)
            );
            return skip(self, rec, rel, Some(msg));
        }
        if node.node_type != NodeType::File && blobs > 0 {
            let msg = format!("a {} node with content blobs; skipped", node.node_type);
            return skip(self, rec, rel, Some(msg));
        }
        let (parent_rel, name) = split_last(&rel);
        let (parent_rel, name) = (parent_rel.to_vec(), name.to_vec());
        let parent = match self.parent_dir(&parent_rel) {
            Ok(p) => p,
            Err(msg) => {
                // Reported once, for the first node below; the others are skipped with it.
                self.fail(&rel, format!("{msg}; skipped with everything else below it"));
                self.blocked = Some(parent_rel);
                return skip(self, rec, rel, None);
            }
        };
        self.note_stale(&parent_rel, &parent, &name);
        // `--overwrite` decides about anything but a directory that is in the way (restic
        // always enters directories); `always` and `if-changed` allow anything.
        let mut discard = false;
        if node.node_type != NodeType::Dir && matches!(self.mode, Mode::IfNewer | Mode::Never) {
            let st = parent.stat(&name).ok().flatten();
            if !overwrite::allows(self.mode, &node, st.as_ref()) {
                let travel = (0..rec.blobs.len()).any(|i| rec.travels(i));
                if node.node_type != NodeType::File || rec.hardlink.is_some() || !travel {
                    return skip(self, rec, rel, None);
                }
                discard = true;
            }
        }
        match node.node_type {
            NodeType::Dir => {
                let made = match parent.mkdir(&name, 0o700) {
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
                    r => r,
                };
                let opened = match made.and_then(|()| parent.open_dir(&name)) {
                    // `--delete`: a file or link where the directory must go is replaced.
                    Err(e)
                        if self.delete
                            && matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) =>
                    {
                        parent
                            .unlink(&name)
                            .and_then(|()| parent.mkdir(&name, 0o700))
                            .and_then(|()| parent.open_dir(&name))
                    }
                    r => r,
                };
                match opened {
                    Ok(d) => self.dirs.push(OpenDir { rel, dir: Rc::new(d), node, rec }),
                    Err(e) => {
                        self.fail(&rel, format!("{}; skipped with everything below it", why(&e)));
                        self.blocked = Some(rel);
                    }
                }
            }
            NodeType::File => {
                self.file(rec, node, rel, parent, name, There { same: keep, untouched: discard })?
            }
            NodeType::Symlink => {
                let r = existing_ok(
                    overwrite::make_replacing(&parent, &name, &node, self.delete, || {
                        parent.symlink(&node.linktarget, &name)
                    }),
                    || matches!(parent.readlink(&name), Ok(t) if t == node.linktarget),
                );
                match r {
                    Ok(()) => self.finish_special(&parent, &name, &rel, &node, &rec)?,
                    Err(e) => self.fail(&rel, format!("cannot create symbolic link: {e}")),
                }
            }
            NodeType::Fifo | NodeType::Dev | NodeType::Chardev => {
                let (kind, dev) = match node.node_type {
                    NodeType::Fifo => (libc::S_IFIFO, 0),
                    NodeType::Dev => (libc::S_IFBLK, node.device),
                    _ => (libc::S_IFCHR, node.device),
                };
                let r = existing_ok(
                    overwrite::make_replacing(&parent, &name, &node, self.delete, || {
                        parent.mknod(&name, kind, node.unix_mode() & 0o7777, dev)
                    }),
                    || matches!(parent.stat(&name), Ok(Some(st)) if st.kind() == kind && st.rdev == dev),
                );
                match r {
                    Ok(()) => self.finish_special(&parent, &name, &rel, &node, &rec)?,
                    Err(e) => self.fail(&rel, format!("cannot create {}: {e}", node.node_type)),
                }
            }
            // restic skips sockets without a word, and so do we.
            NodeType::Socket => {}
            NodeType::Irregular | NodeType::Other(_) => {
                let msg = format!("cannot restore a node of type {:?}; skipped", node.node_type.as_str());
                self.fail(&rel, msg);
            }
        }
        Ok(())
    }

    /// Starts reading a file's blobs, or finishes it at once when it expects none.
    fn begin(&mut self, mut cur: Current) -> Result<()> {
        self.fill_local(&mut cur);
        if cur.next == cur.blobs {
            self.finish_file(cur)
        } else {
            self.cur = Some(cur);
            Ok(())
        }
    }

    fn file(
        &mut self,
        rec: NodeRecord,
        node: Node,
        rel: Vec<u8>,
        parent: Rc<Dir>,
        name: Vec<u8>,
        there: There,
    ) -> Result<()> {
        if let Some(first) = rec.hardlink_bytes()? {
            // The file linked to may still wait for its final name.
            self.flush()?;
            return self.hardlink(&rec, &first, &rel, &parent, &name);
        }
        let blobs = rec.blobs.len();
        let mut cur = Current {
            rec,
            node: None,
            rel,
            parent,
            name,
            tmp: Vec::new(),
            file: None,
            blobs,
            next: 0,
            offset: 0,
            idx: u32::MAX,
            kept: there.same,
            local: None,
            discard: there.untouched,
            failure: None,
            counted: 0,
            unsent: 0,
        };
        let checked = cur
            .rec
            .check_content(&node)
            .map_err(|e| e.to_string())
            .and_then(|()| cur.rec.blobs.iter().try_for_each(check_loc));
        if let Err(msg) = checked {
            cur.failure = Some(format!("the record does not match its node: {msg}"));
            cur.node = Some(node);
            return self.begin(cur);
        }
        if !cur.kept && !cur.discard && !cur.rec.in_target.is_empty() {
            match cur.parent.open_file(&cur.name) {
                Ok(f) => cur.local = Some(f),
                Err(e) => cur.failure = Some(format!("cannot read the blobs the target's file holds: {e}")),
            }
        }
        let opened = if cur.kept {
            cur.parent.open_file(&cur.name).map(|f| (f, cur.name.clone()))
        } else {
            self.create(&cur.parent, &cur.name, cur.discard)
        };
        match opened {
            Ok((f, tmp)) => {
                cur.idx = self.files.len() as u32;
                let at = if tmp.is_empty() {
                    cur.rel.clone()
                } else {
                    let (p, _) = split_last(&cur.rel);
                    let mut at = p.to_vec();
                    if !at.is_empty() {
                        at.push(b'/');
                    }
                    at.extend_from_slice(&tmp);
                    at
                };
                self.files.push(Slot { rel: at, ok: true });
                cur.file = Some(f);
                cur.tmp = tmp;
            }
            Err(e) => cur.failure = Some(format!("cannot create a temporary file beside it: {e}")),
        }
        cur.node = Some(node);
        self.begin(cur)
    }

    /// A new file for `name`: an unnamed one made ahead, given a temporary name here; or one
    /// made now, unnamed ([`Unnamed`]; the name returned is then empty) or under a temporary
    /// name. A file `--overwrite` keeps out (`discard`) always gets a temporary name: it may
    /// serve copies until the end, and held open it would hold a descriptor as long.
    fn create(&mut self, parent: &Dir, name: &[u8], discard: bool) -> io::Result<(File, Vec<u8>)> {
        if let Some((file, took)) = self.spare() {
            self.flush_due.created(took);
            if let Ok(tmp) = parent.link_temp(&file, name) {
                return Ok((file, tmp));
            }
        }
        let started = Instant::now();
        let r = if self.unnamed == Unnamed::No || discard {
            parent.create_temp(name, 0o600)
        } else {
            self.create_unnamed(parent, name)
        };
        let took = started.elapsed();
        let fastest = self.flush_due.created(took);
        if self.slow_creates.created(took, fastest) && self.make_ahead == MakeAhead::WhenSlow {
            self.make_ahead = MakeAhead::Always;
        }
        if r.is_ok() && matches!(self.spares, Some(Some(_))) {
            // Here a file could be made but a spare not named (a file system mounted below
            // the target, no /proc for the link): the rest are made where they go too.
            self.spares = Some(None);
        }
        r
    }

    /// An unnamed file in `parent` ([`Unnamed`]), or a file under a temporary name where
    /// unnamed ones cannot be had.
    fn create_unnamed(&mut self, parent: &Dir, name: &[u8]) -> io::Result<(File, Vec<u8>)> {
        match parent.create_unnamed(0o600) {
            Ok(f) if self.unnamed == Unnamed::Yes => Ok((f, Vec::new())),
            Ok(f) => {
                let linked = parent.link_temp(&f, name);
                self.unnamed = if linked.is_ok() { Unnamed::Yes } else { Unnamed::No };
                match linked {
                    Ok(tmp) => Ok((f, tmp)),
                    Err(_) => parent.create_temp(name, 0o600),
                }
            }
            // No O_TMPFILE here (EISDIR before Linux 3.11, EINVAL where the flag is unknown).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                self.unnamed = Unnamed::No;
                parent.create_temp(name, 0o600)
            }
            Err(e) => Err(e),
        }
    }

    /// The next unnamed file made ahead, if they can be had. Only as root: every file's
    /// owner and group are then set from its node, whereas a user's file would keep the
    /// group it was made with (the target's, where a set-group-ID parent wants its own).
    fn spare(&mut self) -> Option<(File, Duration)> {
        if self.spares.is_none() {
            if self.make_ahead != MakeAhead::Always {
                return None;
            }
            let dir = if self.root { self.root_dir.try_clone().ok() } else { None };
            self.spares = Some(dir.map(Spares::new));
        }
        match self.spares.as_ref()?.as_ref()?.made.recv() {
            Ok((Ok(file), took)) => Some((file, took)),
            _ => {
                self.spares = Some(None);
                None
            }
        }
    }

    /// A further name of a file restored earlier in this run.
    fn hardlink(
        &mut self,
        rec: &NodeRecord,
        first: &[u8],
        rel: &[u8],
        parent: &Dir,
        name: &[u8],
    ) -> Result<()> {
        let idx = match self.linkable.get(first) {
            Some(&i) if self.files[i as usize].ok => i,
            _ => {
                let msg = format!(
                    "hard link to {:?}, which was not restored in this run; skipped",
                    String::from_utf8_lossy(first)
                );
                self.fail(rel, msg);
                return Ok(());
            }
        };
        let (src_parent, src_name) = split_last(&self.files[idx as usize].rel);
        let src_dir = match src_parent {
            [] => Ok(self.root_dir.clone()),
            p => self.root_dir.open_dir_beneath(p).map(Rc::new),
        };
        // Linked under a fresh name first, then renamed over the final one: a file of the
        // same name is replaced as a restored file replaces it; a directory stays.
        let made = src_dir.and_then(|src| parent.with_temp_name(name, |tmp| src.link(src_name, parent, tmp)));
        let r = made.and_then(|((), tmp)| {
            let r = parent.rename(&tmp, name);
            // rename(2) between two names of one file does nothing and succeeds, leaving the
            // temporary name (a restore over an earlier one's hard links); unlink it always.
            let _ = parent.unlink(&tmp);
            r
        });
        match r {
            Ok(()) => self.restored(rec, false),
            Err(e) => {
                self.fail(rel, format!("cannot link to {:?}: {}", String::from_utf8_lossy(first), e));
                Ok(())
            }
        }
    }

    fn finish_special(
        &mut self,
        parent: &Dir,
        name: &[u8],
        rel: &[u8],
        node: &Node,
        rec: &NodeRecord,
    ) -> Result<()> {
        let failed = meta::apply(&On::At(parent.at_meta(name)), node, self.root);
        if !failed.is_empty() {
            self.fail(rel, format!("cannot restore metadata: {}", failed.join("; ")));
        }
        self.restored(rec, false)
    }

    /// The stream left a directory: its metadata is set at the next flush, after the
    /// renames into it, which would change its times.
    fn leave(&mut self, d: OpenDir) -> Result<()> {
        self.pending.push(Pending::Dir(Box::new(d)));
        self.pending_dirs += 1;
        if self.pending_dirs >= PENDING_DIRS {
            self.flush_start()?;
        }
        Ok(())
    }

    fn finish_dir(&mut self, d: OpenDir) -> Result<()> {
        let failed = meta::apply(&On::Fd(d.dir.fd_meta()), &d.node, self.root);
        if !failed.is_empty() {
            self.fail(&d.rel, format!("cannot restore metadata: {}", failed.join("; ")));
        }
        self.restored(&d.rec, false)
    }

    fn blob(&mut self, rec: BlobLoc, data: std::result::Result<Option<&[u8]>, String>) -> Result<()> {
        let Some(mut cur) = self.cur.take() else {
            return Err(Error::stream(format!("blob {} does not follow a file node", rec.id.short())));
        };
        if cur.next == cur.blobs {
            return Err(Error::stream(format!("{}: a blob record more than it needs", cur.rec.path)));
        }
        let want = cur.rec.blobs[cur.next].clone();
        if want.id != rec.id {
            return Err(Error::stream(format!(
                "{}: expected blob {} next, got {}",
                cur.rec.path,
                want.id.short(),
                rec.id.short()
            )));
        }
        let what = || format!("blob {} in pack {}", rec.id.short(), rec.pack.short());
        if cur.kept && cur.file.is_some() {
            self.seen.entry(rec.id).or_insert((cur.idx, cur.offset));
        } else if cur.failure.is_some() || cur.file.is_none() {
            // Nowhere to put it: a later file needing it must fail, not get zeros.
            let lost = match &data {
                Err(msg) => Some(format!("{}: {msg}", what())),
                Ok(Some(_)) if !self.seen.contains_key(&rec.id) => {
                    Some(format!("{} came with {}, which failed", what(), cur.rec.path))
                }
                Ok(_) => None,
            };
            if let Some(m) = lost {
                self.bad.entry(rec.id).or_insert(m);
            }
        } else if let Err(msg) = self.write_blob(&mut cur, &rec, &want, data) {
            cur.failure = Some(msg);
        }
        cur.offset += want.plain_len();
        cur.next += 1;
        if self.unsynced >= SYNC_AHEAD && self.sync_idle() {
            self.ask_sync(true)?;
        }
        self.begin(cur)
    }

    /// Writes one blob into the current file; an error fails the file.
    fn write_blob(
        &mut self,
        cur: &mut Current,
        rec: &BlobLoc,
        want: &BlobLoc,
        data: std::result::Result<Option<&[u8]>, String>,
    ) -> std::result::Result<(), String> {
        let what = || format!("blob {} in pack {}", rec.id.short(), rec.pack.short());
        let file = cur.file.as_ref().expect("checked by the caller");
        let plain: &[u8] = match data {
            Err(msg) => {
                self.bad.entry(rec.id).or_insert_with(|| format!("{}: {msg}", what()));
                return Err(format!("{}: {msg}", what()));
            }
            Ok(Some(p)) => p,
            Ok(None) => {
                let Some(&(idx, off)) = self.seen.get(&rec.id) else {
                    return Err(match self.bad.get(&rec.id) {
                        Some(m) => m.clone(),
                        None => {
                            format!("{}: the record has no data and the blob was not sent before", what())
                        }
                    });
                };
                let slot = &self.files[idx as usize];
                if !slot.ok {
                    return Err(format!(
                        "{}: its only copy was in {}, which failed",
                        what(),
                        String::from_utf8_lossy(&slot.rel)
                    ));
                }
                self.plain.resize(want.plain_len() as usize, 0);
                let r = if idx == cur.idx {
                    file.read_exact_at(&mut self.plain, off)
                } else if let Some(f) = waiting(&self.pending, &self.syncing, idx) {
                    f.read_exact_at(&mut self.plain, off)
                } else {
                    self.root_dir
                        .open_file_beneath(&slot.rel)
                        .and_then(|f| f.read_exact_at(&mut self.plain, off))
                };
                let src = String::from_utf8_lossy(&slot.rel);
                r.map_err(|e| format!("{}: cannot copy it from {src}: {e}", what()))?;
                if Id::hash(&self.plain) != rec.id {
                    return Err(format!("{}: the copy in {src} at offset {off} was changed", what()));
                }
                &self.plain
            }
        };
        if plain.len() as u64 != want.plain_len() {
            return Err(format!("{}: {} bytes, the record says {}", what(), plain.len(), want.plain_len()));
        }
        let len = plain.len() as u64;
        let written = if !(self.sparse && plain.iter().all(|b| *b == 0)) {
            file.write_all_at(plain, cur.offset).map(|()| {
                cur.unsent += len;
                if cur.unsent >= WRITE_BACK {
                    let end = cur.offset + len;
                    let wb = self.write_back.get_or_insert_with(WriteBack::new);
                    // While the thread is behind (its `sync_file_range` waits when the
                    // disk's queue is full), the bytes add up for the next ask.
                    if wb.send(file, end - cur.unsent, cur.unsent) {
                        cur.unsent = 0;
                    }
                }
            })
        } else {
            // The hole must exist now: a later use of this blob in the same file copies
            // from here, and a read past the end would come up short.
            file.set_len(cur.offset + len)
        };
        written.map_err(|e| format!("cannot write: {e}"))?;
        self.unsynced += len;
        if !cur.discard {
            self.progress.wrote(len);
            cur.counted += len;
        }
        self.seen.entry(rec.id).or_insert((cur.idx, cur.offset));
        Ok(())
    }

    fn finish_file(&mut self, cur: Current) -> Result<()> {
        let Some(node) = cur.node.as_ref() else {
            // A skipped record: reported already, or below something reported.
            return Ok(());
        };
        if let Some(why) = &cur.failure {
            self.progress.unwrote(cur.counted);
            return self.drop_file(cur.idx, &cur.parent, &cur.tmp, cur.kept, &cur.rel, why.clone());
        }
        if cur.discard {
            // Its final name stays as it is, untouched; the partial (or the file itself, when
            // it holds the content) serves later copies of its blobs.
            if !cur.kept {
                self.donors.push((cur.parent.clone(), cur.tmp.clone()));
            }
            return Ok(());
        }
        let file = cur.file.as_ref().expect("a file that did not fail is open");
        if cur.kept {
            let failed = meta::apply(&On::Fd(file_meta(file)), node, self.root);
            self.note_linkable(&cur.rel, cur.idx, node.links);
            self.drop_stale(&cur.rel, &cur.parent, &cur.name);
            if !failed.is_empty() {
                self.fail(&cur.rel, format!("cannot restore metadata: {}", failed.join("; ")));
            }
            return self.restored(&cur.rec, true);
        }
        if cur.offset != node.size {
            let why = format!("{} bytes written, the node's size is {}", cur.offset, node.size);
            self.progress.unwrote(cur.counted);
            return self.drop_file(cur.idx, &cur.parent, &cur.tmp, false, &cur.rel, why);
        }
        // No ftruncate here: every blob either was written or (sparse) extended the file
        // to its end, so the length is already `offset`.
        // A large file's last bytes go on now too, not with the batch's syncfs: the last
        // batch of a restore waits for the disk, and the sooner it starts the less.
        if cur.offset >= WRITE_BACK && cur.unsent > 0 {
            let _ = self.write_back.get_or_insert_with(WriteBack::new).send(
                file,
                cur.offset - cur.unsent,
                cur.unsent,
            );
        }
        let meta_failed = meta::apply(&On::Fd(file_meta(file)), node, self.root);
        self.pending_bytes += cur.offset;
        let links = node.links;
        let Current { rec, rel, parent, name, tmp, idx, file, .. } = cur;
        self.pending.push(Pending::File(Box::new(PendingFile {
            rec,
            rel,
            parent,
            name,
            file: if tmp.is_empty() { file } else { None },
            tmp,
            idx,
            links,
            meta_failed,
        })));
        self.pending_files += 1;
        let full = self.pending_files >= PENDING_FILES || self.pending_bytes >= PENDING_BYTES;
        if full || self.flush_due.due() {
            self.flush_start()?;
        }
        Ok(())
    }

    /// Makes every finished file final. Their data must be on disk before a link or rename
    /// gives them their names, or a crash could leave a short file under a final name: one
    /// `syncfs` for a batch costs far less than an fsync per file.
    fn flush(&mut self) -> Result<()> {
        self.flush_start()?;
        self.flush_finish()
    }

    /// Makes the batch before final, then asks for the pending batch's sync and goes on:
    /// [`Unpacker::flush_finish`] renames it once the sync is done.
    fn flush_start(&mut self) -> Result<()> {
        self.ask_sync(false)
    }

    /// Whether no sync is under way: none was asked for, or the one asked for is done (its
    /// result is kept for [`Unpacker::flush_finish`]).
    fn sync_idle(&mut self) -> bool {
        if self.sync_asked && self.synced.is_none() {
            self.synced = self.syncer.as_ref().and_then(|s| s.done.try_recv().ok());
        }
        !self.sync_asked || self.synced.is_some()
    }

    /// [`Unpacker::flush_start`], and with `even_empty` a sync is asked for even when no
    /// file waits for it ([`SYNC_AHEAD`]).
    fn ask_sync(&mut self, even_empty: bool) -> Result<()> {
        self.flush_finish()?;
        if self.pending.is_empty() && !even_empty {
            return Ok(());
        }
        if self.syncer.is_none() {
            let dir = self.root_dir.try_clone().map_err(|e| Error::io("target", e))?;
            self.syncer = Some(Syncer::new(dir));
        }
        let syncer = self.syncer.as_ref().expect("made above");
        if syncer.ask.send(()).is_err() {
            return Err(Error::internal("internal error: the syncing thread ended"));
        }
        self.flush_due.asked();
        self.syncing = std::mem::take(&mut self.pending);
        self.sync_asked = true;
        self.unsynced = 0;
        self.pending_bytes = 0;
        self.pending_files = 0;
        self.pending_dirs = 0;
        Ok(())
    }

    /// Waits for the sync asked for, then links or renames its batch into place.
    fn flush_finish(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.sync_asked) {
            return Ok(());
        }
        let done = self.synced.take().or_else(|| self.syncer.as_ref().and_then(|s| s.done.recv().ok()));
        let (synced, took) =
            done.unwrap_or_else(|| (Err(io::Error::other("the syncing thread ended")), Duration::ZERO));
        self.flush_due.synced(took);
        for p in std::mem::take(&mut self.syncing) {
            let mut p = match p {
                Pending::File(f) => *f,
                Pending::Dir(d) => {
                    self.finish_dir(*d)?;
                    continue;
                }
            };
            let delete = self.delete;
            let renamed = synced.as_ref().map_err(|e| format!("cannot flush to disk: {e}")).and_then(|()| {
                if let Some(file) = p.file.take() {
                    match p.parent.link_file(&file, &p.name) {
                        Ok(()) => return Ok(()),
                        // Something has the name (a restore over an earlier one): it is
                        // replaced as a renamed file replaces it.
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                            p.tmp = p
                                .parent
                                .link_temp(&file, &p.name)
                                .map_err(|e| format!("cannot link into place: {e}"))?;
                        }
                        Err(e) => return Err(format!("cannot link into place: {e}")),
                    }
                }
                let r = match p.parent.rename(&p.tmp, &p.name) {
                    // `--delete`: a directory where the file must go is removed first.
                    Err(e)
                        if delete
                            && matches!(
                                e.raw_os_error(),
                                Some(libc::EISDIR) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
                            ) =>
                    {
                        overwrite::remove_all(&p.parent, &p.name)
                            .and_then(|()| p.parent.rename(&p.tmp, &p.name))
                    }
                    r => r,
                };
                r.map_err(|e| match e.raw_os_error() {
                    Some(libc::EISDIR) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => {
                        "a directory is in the way; it was left as it is".to_string()
                    }
                    _ => format!("cannot rename into place: {e}"),
                })
            });
            if let Err(why) = renamed {
                // Every blob of a pending file was written and counted.
                self.progress.unwrote(p.rec.blobs.iter().map(|b| b.plain_len()).sum());
                self.drop_file(p.idx, &p.parent, &p.tmp, false, &p.rel, why)?;
                continue;
            }
            self.files[p.idx as usize].rel = p.rel.clone();
            self.note_linkable(&p.rel, p.idx, p.links);
            self.drop_stale(&p.rel, &p.parent, &p.name);
            if !p.meta_failed.is_empty() {
                self.fail(&p.rel, format!("cannot restore metadata: {}", p.meta_failed.join("; ")));
            }
            self.restored_written(&p.rec)?;
        }
        Ok(())
    }

    /// `--resume`: learns the partial files of earlier runs in a directory the first time it
    /// is entered; a name the stream itself restores is snapshot data, never stale.
    fn note_stale(&mut self, parent_rel: &[u8], parent: &Dir, name: &[u8]) {
        let Some(stale) = self.stale.as_mut() else { return };
        let names = stale.entry(parent_rel.to_vec()).or_insert_with(|| parent.partials().unwrap_or_default());
        names.retain(|n| n != name);
    }

    /// `--resume`: removes what an earlier run left of this file, now that it is whole.
    fn drop_stale(&mut self, rel: &[u8], parent: &Dir, name: &[u8]) {
        let Some(stale) = self.stale.as_mut() else { return };
        let (parent_rel, _) = split_last(rel);
        let Some(names) = stale.get_mut(parent_rel) else { return };
        names.retain(|n| {
            let ours = target::is_temp_name_for(n, name);
            if ours {
                let _ = parent.unlink(n);
            }
            !ours
        });
    }

    /// Takes the blobs up to the next one that travels from the target's file (`in_target`):
    /// each is read and hashed again before it is written, the stream being untrusted.
    fn fill_local(&mut self, cur: &mut Current) {
        while cur.next < cur.blobs && !cur.rec.travels(cur.next) {
            let b = &cur.rec.blobs[cur.next];
            if cur.kept && cur.file.is_some() {
                self.seen.entry(b.id).or_insert((cur.idx, cur.offset));
            } else if let (None, Some(file), Some(local)) = (&cur.failure, &cur.file, &cur.local) {
                let r = overwrite::read_local(local, b, cur.offset, &mut self.plain)
                    .and_then(|p| file.write_all_at(p, cur.offset).map_err(|e| format!("cannot write: {e}")));
                match r {
                    Ok(()) => {
                        self.progress.wrote(b.plain_len());
                        cur.counted += b.plain_len();
                        self.seen.entry(b.id).or_insert((cur.idx, cur.offset));
                    }
                    Err(msg) => cur.failure = Some(msg),
                }
            }
            cur.offset += b.plain_len();
            cur.next += 1;
        }
    }

    /// `--delete`: removes a name the snapshot selection does not have.
    fn remove(&mut self, rec: DeleteRecord) -> Result<()> {
        if !self.delete {
            return Err(Error::Usage(format!(
                "the stream asks to delete {} (walk --delete): give unpack --delete too",
                rec.path
            )));
        }
        let rel = rec.path_bytes()?;
        if components(&rel).is_none() {
            let msg = format!("path {:?} is not a clean relative path; not deleted", rec.path);
            warn("unpack", format!("{}: {msg}", self.target.display()));
            self.failed += 1;
            return Ok(());
        }
        match overwrite::delete_beneath(&self.root_dir, &rel) {
            Ok(true) => {
                let (path, path_raw) = (rec.path, rec.path_raw);
                self.out.write(&ActionRecord { action: "deleted".into(), path, path_raw, size: None })
            }
            Ok(false) => Ok(()),
            Err(e) => {
                self.fail(&rel, format!("cannot delete: {e}"));
                Ok(())
            }
        }
    }

    fn note_linkable(&mut self, rel: &[u8], idx: u32, links: u64) {
        if links > 1 {
            self.linkable.insert(rel.to_vec(), idx);
        }
    }

    /// Fails a file: its partial (made in this run) is removed, never its final name.
    fn drop_file(
        &mut self,
        idx: u32,
        parent: &Dir,
        tmp: &[u8],
        kept: bool,
        rel: &[u8],
        why: String,
    ) -> Result<()> {
        if let Some(slot) = self.files.get_mut(idx as usize) {
            slot.ok = false;
        }
        if !kept && !tmp.is_empty() {
            let _ = parent.unlink(tmp);
        }
        self.fail(rel, why);
        Ok(())
    }
}

/// The descriptor of unnamed file `idx`, waiting in a batch for its name.
fn waiting<'a>(pending: &'a [Pending], syncing: &'a [Pending], idx: u32) -> Option<&'a File> {
    pending.iter().chain(syncing).find_map(|p| match p {
        Pending::File(f) if f.idx == idx => f.file.as_ref(),
        _ => None,
    })
}

/// A create that found something under its name. Restoring again over what an earlier run
/// made (`same`) is fine; anything else there is the user's and stays as it is.
fn existing_ok(r: io::Result<()>, same: impl FnOnce() -> bool) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            if same() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "something else exists under this name; it was left as it is",
                ))
            }
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Creates counted as `create` counts them: the flush clock keeps the fastest.
    fn creates() -> impl FnMut(Duration) -> bool {
        let (mut clock, mut slow) = (FlushClock::default(), SlowCreates::default());
        move |took| slow.created(took, clock.created(took))
    }

    /// Creates a few times the fastest never make files worth making ahead; a run of
    /// them mostly ten times slower does, and a run mostly fast again does not; a run slow
    /// from the start does too.
    #[test]
    fn slow_creates() {
        let us = Duration::from_micros;
        let mut c = creates();
        for i in 0..10 * RUN {
            assert!(!c(us(4 + u64::from(i % 20))), "fresh space at create {i}");
        }
        let mut said = None;
        for i in 0..2 * RUN {
            // Most slow, some fast: the fast ones do not hide the trend.
            let took = if i % 4 == 0 { us(5) } else { us(90) };
            if c(took) {
                said.get_or_insert(i);
            }
        }
        assert_eq!(said, Some(RUN - 1), "judged at the end of the first slow run");
        for _ in 0..RUN - 1 {
            assert!(!c(us(5)));
        }
        assert!(!c(us(5)));
        // Slow from the first create on, as right after a deletion.
        let mut c = creates();
        let said = (0..RUN).map(|_| c(us(120))).collect::<Vec<_>>();
        assert_eq!(said.iter().filter(|s| **s).count(), 1);
        assert!(said[RUN as usize - 1]);
    }

    /// Creates that stay as fast as the fastest never make a flush due; creates that grow
    /// slower, as after a mass deletion, do once their extra time reaches a syncfs's.
    #[test]
    fn flush_clock() {
        let us = Duration::from_micros;
        let mut c = FlushClock::default();
        c.asked();
        c.synced(us(800));
        for _ in 0..10_000 {
            c.created(us(20));
        }
        assert!(!c.due());
        let mut n = 0;
        while !c.due() {
            n += 1;
            c.created(us(20 + n));
        }
        // 1 + 2 + … + n µs of extra time reaches the 2 ms floor (above the 800 µs sync) at
        // n = 63.
        assert_eq!(n, 63);
        c.asked();
        c.synced(us(5000));
        assert!(!c.due());
    }
}
