//! Writing the stream's files to the backend.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::backend::{Backend, FileType, Upload};
use common::cli::warn;
use common::error::{Error, Result};
use common::progress::{Kind, Progress};
use common::record::{
    decode_b64, PackDataRecord, PackHeaderRecord, ProgressRecord, Reader, RepoFileRecord, RequiresRecord,
    SummaryRecord, Tag, TotalsRecord,
};
use common::signal;
use common::Id;
use sha2::{Digest, Sha256};

use crate::uploads::{Ready, Uploads};
use crate::Args;

struct Pending {
    up: Box<dyn Upload>,
    hash: Sha256,
}

/// The lock this run stored, removed at the end or on a signal.
struct HeldLock {
    name: String,
    _on_signal: signal::Guard,
}

struct Pusher {
    backend: Arc<dyn Backend>,
    packs: HashMap<u64, Pending>,
    /// Finished packs, stored several at once while the stream is read on, and all of them
    /// before any index or snapshot (the barrier, [`Uploads::wait`]).
    uploads: Uploads,
    lock: Option<HeldLock>,
    requires: Option<RequiresRecord>,
    buf: Vec<u8>,
    stored: [u64; 3],
    progress: Progress,
}

pub fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    // The packs stored stay when a signal ends the run (no snapshot uses them yet): say so.
    let stored = Arc::new(AtomicU64::new(0));
    let left = stored.clone();
    signal::left_on_interrupt(move || match left.load(Ordering::SeqCst) {
        0 => "; no pack was stored".into(),
        1 => "; the pack it stored stays (restic prune removes it)".into(),
        n => format!("; the {n} packs it stored stay (restic prune removes them)"),
    });
    let progress = Progress::new(Kind::Backup, &args.progress, &args.json, args.quiet)?;
    let backend: Arc<dyn Backend> = Arc::from(args.repo.backend()?);
    let binding = common::repo::binding(backend.as_ref())?;
    // Uploads of a run that was killed outright: nothing else would ever remove them.
    if let Err(e) = backend.remove_stale_uploads() {
        warn("push", format!("could not remove temporary files of dead runs: {e}"));
    }
    let mut input = Reader::stdin();
    let header = input.read_header()?;
    match header.repository {
        Some(r) if r == binding => {}
        Some(_) => {
            return Err(Error::Usage(format!(
                "this stream was made by pack for another repository, not {} (its config differs); nothing stored",
                backend.location()
            )))
        }
        None => {
            return Err(Error::Usage(
                "the stream does not name the repository it was made for (was it made by pack?); nothing stored"
                    .into(),
            ))
        }
    }
    progress.start();
    let connections = common::backend::connections(&args.repo.location()?, &args.repo.options()?)?;
    let mut p = Pusher {
        backend: backend.clone(),
        packs: HashMap::new(),
        uploads: Uploads::new(backend.clone(), connections, stored),
        lock: None,
        requires: None,
        buf: Vec::new(),
        stored: [0; 3],
        progress: progress.clone(),
    };
    let result = p.consume(&mut input);
    // Unfinished packs vanish when dropped, and so do packs not yet uploading after an
    // error; the lock goes in every case, once no upload runs.
    p.packs.clear();
    p.uploads.abandon();
    p.stored[0] = p.uploads.stored();
    let mut result = result;
    if let Some(l) = p.lock.take() {
        if let Err(e) = backend.remove(FileType::Lock, &l.name) {
            let left = format!("could not remove lock {}: {e}; `restic unlock` removes it", &l.name[..8]);
            // After a failure (most often the same server gone), one line: the cause first.
            result = match result.map_err(|failed| failed.with_note(&left)) {
                Err(Ok(noted)) => Err(noted),
                other => {
                    warn("push", left);
                    other.map_err(|e| e.unwrap_or_else(|e| e))
                }
            };
        }
    }
    let mut summary = result?;
    summary.total_duration = summary.total_duration.max(started.elapsed().as_secs_f64());
    progress.finish_backup(&summary)?;
    // With --json the summary message replaces the text (a wrapper reads stdout and stderr
    // as JSON only, as restic's output with --json).
    if !args.quiet && !args.json.json {
        report(&summary, p.stored);
    }
    Ok(())
}

impl Pusher {
    fn consume(&mut self, input: &mut Reader<impl std::io::Read>) -> Result<SummaryRecord> {
        let mut summary = None;
        let mut snapshot: Option<(String, Vec<u8>)> = None;
        while let Some(line) = input.next_line()? {
            let no = line.no;
            let at = |e: Error| e.at_line(no);
            match line.tag() {
                Tag::PackData => {
                    let d: PackDataRecord = line.parse()?;
                    let seq = d.seq.ok_or_else(|| line.err("pack_data without seq"))?;
                    line.decode_payload(&mut self.buf)?;
                    if d.offset == 0 && !self.packs.contains_key(&seq) {
                        let up = self.backend.upload(FileType::Pack).map_err(at)?;
                        self.packs.insert(seq, Pending { up, hash: Sha256::new() });
                    }
                    let p = self.packs.get_mut(&seq).ok_or_else(|| {
                        line.err(format!("pack_data for pack {seq} at offset {} before its start", d.offset))
                    })?;
                    if p.up.written() != d.offset {
                        return Err(line.err(format!(
                            "pack {seq}: piece at offset {}, expected {}",
                            d.offset,
                            p.up.written()
                        )));
                    }
                    p.hash.update(&self.buf);
                    let loc = self.backend.location();
                    p.up.write_all(&self.buf)
                        .map_err(|e| at(Error::io(format!("writing pack {seq} into {loc}"), e)))?;
                }
                Tag::PackHeader => {
                    let h: PackHeaderRecord = line.parse()?;
                    let seq = h.seq.ok_or_else(|| line.err("pack_header without seq"))?;
                    let id = h.pack.ok_or_else(|| line.err("pack_header without pack id"))?;
                    let mut p = self
                        .packs
                        .remove(&seq)
                        .ok_or_else(|| line.err(format!("pack_header for pack {seq}, which has no data")))?;
                    decode_b64(&h.header, &mut self.buf).map_err(at)?;
                    self.buf.extend_from_slice(&(self.buf.len() as u32).to_le_bytes());
                    p.hash.update(&self.buf);
                    let loc = self.backend.location();
                    p.up.write_all(&self.buf)
                        .map_err(|e| at(Error::io(format!("writing pack {id} into {loc}"), e)))?;
                    if p.up.written() != h.size || Id(p.hash.finalize().into()) != id {
                        return Err(at(Error::integrity(format!(
                            "pack {id}: the bytes received do not match its name and size"
                        ))));
                    }
                    self.uploads.send(Ready { up: p.up, id, line: no })?;
                }
                Tag::RepoFile => {
                    let f: RepoFileRecord = line.parse()?;
                    let t = match f.kind.as_str() {
                        "index" => FileType::Index,
                        "snapshot" => FileType::Snapshot,
                        "lock" => FileType::Lock,
                        other => return Err(line.err(format!("unknown repo_file kind {other:?}"))),
                    };
                    line.decode_payload(&mut self.buf)?;
                    if Id::hash(&self.buf) != f.id {
                        return Err(line.err(format!(
                            "{} {}: data does not match its id",
                            f.kind,
                            f.id.short()
                        )));
                    }
                    // An index may arrive while the other blob type's pack is still open: it
                    // names only packs whose header came, and those are stored already.
                    let name = f.id.to_hex();
                    if t == FileType::Index {
                        self.uploads.wait()?;
                        self.check_lock()?;
                    }
                    if t == FileType::Snapshot {
                        // Only a stream that arrives whole may make a snapshot: it is stored
                        // after the end record, when nothing before it can still be missing.
                        if snapshot.is_some() {
                            return Err(line.err("a second snapshot in one stream"));
                        }
                        snapshot = Some((name, std::mem::take(&mut self.buf)));
                        continue;
                    }
                    if !self.backend.exists(t, &name)? {
                        self.backend
                            .write(t, &name, &self.buf)
                            .map_err(|e| at(e.context(format!("{} {}", f.kind, f.id.short()))))?;
                        if t == FileType::Index {
                            self.stored[1] += 1;
                        }
                    }
                    if t == FileType::Lock {
                        let backend = self.backend.clone();
                        let n = name.clone();
                        let guard = signal::on_interrupt(move || {
                            let _ = backend.remove(FileType::Lock, &n);
                        });
                        if let Some(old) = self.lock.replace(HeldLock { name, _on_signal: guard }) {
                            if let Err(e) = self.backend.remove(FileType::Lock, &old.name) {
                                warn(
                                    "push",
                                    format!("could not remove the replaced lock {}: {e}", &old.name[..8]),
                                );
                            }
                        }
                    }
                }
                Tag::Requires => self.requires = Some(line.parse::<RequiresRecord>()?),
                Tag::Summary => summary = Some(line.parse::<SummaryRecord>()?),
                Tag::Totals => self.progress.totals(&line.parse::<TotalsRecord>()?),
                Tag::Progress => self.progress.backup(&line.parse::<ProgressRecord>()?),
                other => {
                    return Err(line.err(format!("a {} record does not belong in push's input", other.name())))
                }
            }
        }
        if let Some(seq) = self.packs.keys().next() {
            return Err(Error::stream(format!("stream ended with pack {seq} unfinished")));
        }
        self.uploads.wait()?;
        let summary = summary
            .ok_or_else(|| Error::stream("the stream had no summary record (was it made by pack?)"))?;
        let Some((name, data)) = snapshot else {
            return Err(Error::stream("the stream had no snapshot (was it made by pack?); none saved"));
        };
        {
            self.check_lock()?;
            self.check_requires()?;
            if !self.backend.exists(FileType::Snapshot, &name)? {
                self.backend
                    .write(FileType::Snapshot, &name, &data)
                    .map_err(|e| e.context(format!("snapshot {}", &name[..8])))?;
            }
            self.stored[2] += 1;
        }
        Ok(summary)
    }

    /// Before anything that makes stored data count (an index, the snapshot): the lock must
    /// be stored and still there, or a prune may be deleting what it names.
    fn check_lock(&self) -> Result<()> {
        let Some(l) = &self.lock else {
            return Err(Error::Locked(
                "the stream carries no lock before its index (was it made by pack?); nothing more stored"
                    .into(),
            ));
        };
        if !self.backend.exists(FileType::Lock, &l.name)? {
            return Err(Error::Locked(format!(
                "this backup's lock {} was removed from the repository (restic unlock?); no snapshot saved",
                &l.name[..8]
            )));
        }
        Ok(())
    }

    /// The snapshot refers to blobs pack found in the repository rather than sending them:
    /// their packs and the index files naming them must all still be there.
    fn check_requires(&self) -> Result<()> {
        let Some(req) = &self.requires else {
            return Err(Error::stream(
                "the stream does not say what it relies on in the repository (no requires record); \
                 no snapshot saved",
            ));
        };
        let gone = |what: &str, id: &Id| {
            Error::format(format!(
                "{what} {} that this backup relies on is no longer in the repository (pruned since \
                 pack ran?); no snapshot saved: run the backup again",
                id.short()
            ))
        };
        if !req.packs.is_empty() {
            let packs: HashSet<String> =
                self.backend.list(FileType::Pack)?.into_iter().map(|e| e.name).collect();
            if let Some(id) = req.packs.iter().find(|id| !packs.contains(&id.to_hex())) {
                return Err(gone("pack", id));
            }
        }
        if !req.indexes.is_empty() {
            let files: HashSet<String> =
                self.backend.list(FileType::Index)?.into_iter().map(|e| e.name).collect();
            if let Some(id) = req.indexes.iter().find(|id| !files.contains(&id.to_hex())) {
                return Err(gone("index file", id));
            }
        }
        Ok(())
    }
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.3} {}", units[u])
    }
}

fn report(s: &SummaryRecord, stored: [u64; 3]) {
    let secs = s.total_duration as u64;
    let msg = format!(
        "\nFiles:       {:5} new, {:5} changed, {:5} unmodified\n\
         Dirs:        {:5} new, {:5} changed, {:5} unmodified\n\
         Added to the repository: {} ({} stored)\n\
         Read {} files, {}; stored {} packs, {} index files\n\n\
         processed {} files, {} in {}:{:02}\n\
         snapshot {} saved",
        s.counts.files_new,
        s.counts.files_changed,
        s.counts.files_unmodified,
        s.counts.dirs_new,
        s.counts.dirs_changed,
        s.counts.dirs_unmodified,
        human(s.counts.data_added),
        human(s.counts.data_added_packed),
        s.files_read,
        human(s.bytes_read),
        stored[0],
        stored[1],
        s.counts.total_files_processed,
        human(s.counts.total_bytes_processed),
        secs / 60,
        secs % 60,
        s.snapshot_id.short(),
    );
    // A report of several lines, like restic's, not a message: written as it is.
    common::cli::stderr_line(msg.trim_start());
}
