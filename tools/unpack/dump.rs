//! `--stdout`, `--tar` and `--zip`: the stream streamed out in order, as restic's `dump` does, one
//! blob at a time. The decoder thread (`decode`) checks every blob exactly as for a restore;
//! what to write is `common::dump`'s.

use std::collections::VecDeque;
use std::io::{BufWriter, Write};

use common::backend::FileType;
use common::dump::zip::{Written as ZipWritten, Zip};
use common::dump::{self, Blobs, Tar};
use common::error::{Error, Result, ResultExt};
use common::node::{Node, NodeType};
use common::pack::Opener;
use common::record::{BlobLoc, NodeRecord};
use common::repo::Repo;

use crate::decode::{check_loc, decode, Item, Plain, AHEAD};
use crate::Args;

/// The decoder's items one at a time, and the blob being written.
struct Source<'r> {
    items: std::sync::mpsc::Receiver<Result<Vec<Item>>>,
    batch: VecDeque<Item>,
    /// Pooled buffers go back to the decoder through here once written.
    pool: std::sync::mpsc::Sender<Vec<u8>>,
    cur: Option<Plain>,
    /// A blob the stream carried earlier comes without data; it is read again from the
    /// repository (one ranged read) into these buffers, as no copy of it is kept.
    repo: &'r Repo,
    opener: Opener<'r>,
    sealed: Vec<u8>,
    plain: Vec<u8>,
    /// Where the current blob is: `cur`, or `plain` (`range`) after a read again.
    reread: Option<std::ops::Range<usize>>,
    /// The line number of the item last taken, for messages.
    line: u64,
}

impl Source<'_> {
    fn next_item(&mut self) -> Result<Option<Item>> {
        loop {
            if let Some(item) = self.batch.pop_front() {
                self.line = match &item {
                    Item::Node(no, ..) | Item::Blob(no, ..) => *no,
                    // The totals are for a progress bar; streaming out draws none.
                    Item::Totals(_) => continue,
                    Item::Delete(no, _) => {
                        let msg = "a delete record (walk --delete) does not belong in a dump";
                        return Err(Error::stream(msg).at_line(*no));
                    }
                };
                return Ok(Some(item));
            }
            match self.items.recv() {
                Ok(batch) => self.batch = batch?.into(),
                Err(_) => return Ok(None),
            }
        }
    }

    /// Hands the current pooled buffer back to the decoder.
    fn release(&mut self) {
        if let Some(p) = self.cur.take() {
            if p.pooled {
                let _ = self.pool.send(p.buf);
            }
        }
        self.reread = None;
    }

    /// Reads a blob again from the repository and checks it as the decoder would.
    fn fetch_again(&mut self, loc: &BlobLoc) -> Result<()> {
        check_loc(loc).map_err(Error::format)?;
        self.repo.backend.read_range(
            FileType::Pack,
            &loc.pack.to_hex(),
            loc.offset,
            loc.length as u64,
            &mut self.sealed,
        )?;
        let plain = self.opener.open(&loc.id, &mut self.sealed, loc.uncompressed_length, &mut self.plain)?;
        let len = plain.len();
        self.reread = Some(match loc.uncompressed_length {
            Some(_) => 0..len,
            None => {
                std::mem::swap(&mut self.sealed, &mut self.plain);
                common::crypto::IV_LEN..common::crypto::IV_LEN + len
            }
        });
        Ok(())
    }
}

impl Blobs for Source<'_> {
    fn advance(&mut self, want: &BlobLoc) -> Result<()> {
        self.release();
        let what = format!("blob {} in pack {}", want.id.short(), want.pack.short());
        let (loc, data) = match self.next_item()? {
            Some(Item::Blob(_, loc, data)) => (loc, data),
            Some(Item::Node(_, rec, _)) => {
                return Err(
                    Error::stream(format!("node {} arrived before {what}", rec.path)).at_line(self.line)
                )
            }
            // (next_item never returns totals or deletions.)
            Some(Item::Totals(_)) | Some(Item::Delete(..)) | None => {
                return Err(Error::stream(format!("the stream ended before {what}")))
            }
        };
        if loc.id != want.id {
            return Err(Error::stream(format!("expected {what} next, got blob {}", loc.id.short()))
                .at_line(self.line));
        }
        match data {
            Ok(Some(p)) => {
                if let Err(msg) = p.checked(&loc.id) {
                    let _ = self.pool.send(p.buf);
                    return Err(Error::integrity(format!("{what}: {msg}")));
                }
                self.cur = Some(p)
            }
            Ok(None) => self.fetch_again(want).context(format!("{what} (sent earlier, read again)"))?,
            Err(msg) => return Err(Error::integrity(format!("{what}: {msg}"))),
        }
        Ok(())
    }

    fn read_again(&mut self, want: &BlobLoc) -> Result<()> {
        self.release();
        let what = format!("blob {} in pack {} (read again)", want.id.short(), want.pack.short());
        self.fetch_again(want).context(what)
    }

    fn current(&self) -> &[u8] {
        match (&self.reread, &self.cur) {
            (Some(r), _) => &self.plain[r.clone()],
            (None, Some(p)) => &p.buf[p.range.clone()],
            (None, None) => &[],
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    // An archive is binary: on a terminal it is noise and can upset the terminal itself
    // (GNU tar refuses the same). One file (`--stdout`) may be text and is written, as
    // `restic dump` of a file is.
    if args.tar || args.zip {
        let mode = if args.tar { "--tar" } else { "--zip" };
        common::cli::refuse_terminal_stdout(format_args!(
            "{mode} writes a binary archive; redirect it to a file or pipe it on"
        ))?;
    }
    let (repo, mut input, header) = crate::open_fetched(args)?;
    common::sys::return_large_buffers();

    let (items_tx, items) = std::sync::mpsc::sync_channel::<Result<Vec<Item>>>(AHEAD);
    let (pool, pool_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let key = repo.key.clone();
    let decoder = std::thread::spawn(move || {
        let mut batch = Vec::new();
        let result = decode(&mut input, &key, None, &items_tx, &pool_rx, &mut batch);
        if !batch.is_empty() {
            let _ = items_tx.send(Ok(batch));
        }
        if let Err(e) = result {
            let _ = items_tx.send(Err(e));
        }
    });
    let mut src = Source {
        items,
        batch: VecDeque::new(),
        pool,
        cur: None,
        repo: &repo,
        opener: Opener::new(&repo.key)?,
        sealed: Vec::new(),
        plain: Vec::new(),
        reread: None,
        line: 0,
    };
    common::sys::enlarge_pipe(1);
    let stdout = common::sys::stdout_file();
    let mut out = BufWriter::with_capacity(1 << 20, &*stdout);
    let result = if args.stdout {
        one_file(&mut src, &mut out, header.root.as_deref())
    } else if args.zip {
        zip_archive(&mut src, &mut out, header.root.as_deref())
    } else {
        archive(&mut src, &mut out, header.root.as_deref())
    };
    let flushed = out.flush().map_err(|e| Error::io("stdout", e));
    // The decoder may wait on a full channel: dropping the receiver lets it stop.
    drop(src);
    if decoder.join().is_err() {
        return Err(Error::internal("internal error: the decoding thread panicked"));
    }
    result.and(flushed)
}

/// The node a record carries.
fn parse(rec: &NodeRecord) -> Result<Node> {
    Node::parse(rec.node.get().as_bytes()).context(&rec.path)
}

/// The stream's next node record and its line number; a blob here follows no file.
fn next_node(src: &mut Source) -> Result<Option<(u64, NodeRecord)>> {
    match src.next_item()? {
        // (next_item never returns totals or deletions.)
        Some(Item::Totals(_)) | Some(Item::Delete(..)) | None => Ok(None),
        Some(Item::Node(no, rec, _)) => Ok(Some((no, rec))),
        Some(Item::Blob(no, loc, _)) => {
            Err(Error::stream(format!("blob {} does not follow a file node", loc.id.short())).at_line(no))
        }
    }
}

/// `--stdout`: the stream must hold one regular file; its content goes out as it is.
fn one_file(src: &mut Source, out: &mut impl Write, root: Option<&str>) -> Result<()> {
    if let Some(dir) = root {
        return Err(Error::Usage(format!(
            "the stream holds directory {dir}, not one file: --stdout writes a single file, use --tar"
        )));
    }
    let mut written: Option<String> = None;
    while let Some((no, rec)) = next_node(src)? {
        if let Some(first) = &written {
            // Already written in full; nothing of this one is.
            return Err(Error::Usage(format!(
                "the stream holds {} after {first}: --stdout writes a single file, use --tar",
                rec.path
            )));
        }
        let node = parse(&rec).map_err(|e| e.at_line(no))?;
        if node.node_type != NodeType::File {
            return Err(Error::Usage(format!(
                "{} is a {}, not a file: --stdout writes a single file, use --tar",
                rec.path, node.node_type
            )));
        }
        dump::write_content(out, &rec, &node, src).context(&rec.path)?;
        src.release();
        written = Some(rec.path);
    }
    match written {
        Some(_) => Ok(()),
        None => Err(Error::Usage("the stream holds no file to write".into())),
    }
}

/// `--tar`: every node of the stream as a tar entry, in stream order.
fn archive(src: &mut Source, out: &mut impl Write, root: Option<&str>) -> Result<()> {
    let mut tar = Tar::new(out, root.map(str::as_bytes));
    while let Some((no, rec)) = next_node(src)? {
        let node = parse(&rec).map_err(|e| e.at_line(no))?;
        tar.node(&rec, &node, src).context(&rec.path)?;
        src.release();
    }
    tar.finish()?;
    Ok(())
}

/// `--zip`: every node of the stream as a zip entry, in stream order. What a zip cannot hold
/// is left out with one line each, and the status says so (3).
fn zip_archive(src: &mut Source, out: &mut impl Write, root: Option<&str>) -> Result<()> {
    let mut zip = Zip::new(out, root);
    let mut left_out = 0u64;
    while let Some((no, rec)) = next_node(src)? {
        let node = parse(&rec).map_err(|e| e.at_line(no))?;
        if let ZipWritten::LeftOut(why) = zip.node(&rec, &node, src).context(&rec.path)? {
            common::cli::warn("unpack", format!("{}: {why}; left out of the zip", rec.path));
            left_out += 1;
        }
        src.release();
    }
    zip.finish()?;
    match left_out {
        0 => Ok(()),
        n => Err(Error::SomeFailed(format!("{n} nodes left out of the zip"))),
    }
}
