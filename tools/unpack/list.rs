//! `--list`: check and list every blob of a stream without writing files.
//!
//! A whole pack (`pack_header` + `pack_data` records) is cut into blobs using its header, and
//! each blob is checked once its bytes are all there, so no more than one blob and one piece
//! of the pack are held at once. `blob` records (a normal `fetch-pack` stream) are checked
//! one by one; `node` records are skipped.

use common::crypto::Key;
use common::error::{Error, Result};
use common::pack::{decode_header, open_blob, Entry};
use common::record::{
    decode_b64, BlobCheck, BlobFailedRecord, BlobRecord, PackDataRecord, PackHeaderRecord, Tag, Writer,
};
use common::Id;
use sha2::{Digest, Sha256};

use crate::Args;

struct Lister<W: std::io::Write> {
    key: Key,
    out: Writer<W>,
    bad: u64,
    total: u64,
    plain: Vec<u8>,
}

struct PackState {
    pack: Option<Id>,
    entries: Vec<Entry>,
    next: usize,
    /// Bytes of the current blob gathered so far.
    blob: Vec<u8>,
    /// Offset in the pack of the next expected byte.
    pos: u64,
    hash: Sha256,
    enc_header: Vec<u8>,
}

pub fn run(args: &Args) -> Result<()> {
    let (repo, mut input, _) = crate::open_fetched(args)?;
    let mut l = Lister { key: repo.key.clone(), out: Writer::stdout(), bad: 0, total: 0, plain: Vec::new() };
    l.out.header("unpack", None)?;
    let mut pack: Option<PackState> = None;
    let mut buf = Vec::new();
    while let Some(line) = input.next_line()? {
        match line.tag() {
            Tag::PackHeader => {
                let h: PackHeaderRecord = line.parse()?;
                if let Some(p) = pack.take() {
                    l.end_pack(p)?;
                }
                decode_b64(&h.header, &mut buf).map_err(|e| e.at_line(line.no))?;
                let what = h.pack.map(|p| format!("pack {p}")).unwrap_or_else(|| "pack".into());
                let entries = decode_header(&l.key, &buf, h.size).map_err(|e| e.context(&what))?;
                pack = Some(PackState {
                    pack: h.pack,
                    entries,
                    next: 0,
                    blob: Vec::new(),
                    pos: 0,
                    hash: Sha256::new(),
                    enc_header: buf.clone(),
                });
            }
            Tag::PackData => {
                let d: PackDataRecord = line.parse()?;
                let Some(p) = pack.as_mut() else {
                    return Err(line.err("pack_data without a pack_header before it"));
                };
                if d.offset != p.pos {
                    return Err(line.err(format!("pack_data at offset {}, expected {}", d.offset, p.pos)));
                }
                line.decode_payload(&mut buf)?;
                p.hash.update(&buf);
                p.pos += buf.len() as u64;
                let mut rest = &buf[..];
                while !rest.is_empty() {
                    let Some(e) = p.entries.get(p.next) else {
                        return Err(line.err("pack data runs past the last blob of its header"));
                    };
                    let need = e.length as usize - p.blob.len();
                    let take = need.min(rest.len());
                    p.blob.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if p.blob.len() == e.length as usize {
                        let e = e.clone();
                        let mut sealed = std::mem::take(&mut p.blob);
                        l.check(p.pack, &e, &mut sealed)?;
                        sealed.clear();
                        p.blob = sealed;
                        p.next += 1;
                    }
                }
            }
            Tag::Blob => {
                let b = line.parse::<BlobRecord>()?.loc;
                let Some(data) = line.payload()? else { continue };
                if b.uncompressed_length.is_some_and(|n| n as u64 > common::pack::MAX_BLOB) {
                    return Err(line.err(format!(
                        "blob {} claims more than the {} MiB a blob may hold",
                        b.id,
                        common::pack::MAX_BLOB >> 20
                    )));
                }
                decode_b64(&data, &mut buf).map_err(|e| e.at_line(line.no))?;
                let e = Entry {
                    blob_type: common::pack::BlobType::Data,
                    id: b.id,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                };
                let mut sealed = std::mem::take(&mut buf);
                l.check(Some(b.pack), &e, &mut sealed)?;
                buf = sealed;
            }
            Tag::BlobFailed => {
                let BlobFailedRecord { loc: f, error } = line.parse()?;
                // fetch-pack could not read it: as bad as a damaged blob.
                l.total += 1;
                l.bad += 1;
                common::cli::warn("unpack", format!("blob {} in pack {}: {error}", f.id, f.pack));
                let rec = BlobCheck {
                    pack: Some(f.pack),
                    id: f.id,
                    blob_type: "data".into(),
                    offset: f.offset,
                    length: f.length,
                    uncompressed_length: f.uncompressed_length,
                    ok: false,
                    error: Some(error),
                };
                l.out.write(&rec)?;
            }
            Tag::Node | Tag::Totals => {}
            other => {
                return Err(
                    line.err(format!("a {} record does not belong in unpack --list's input", other.name()))
                )
            }
        }
    }
    if let Some(p) = pack.take() {
        l.end_pack(p)?;
    }
    let (bad, total) = (l.bad, l.total);
    l.out.finish()?;
    if bad > 0 {
        return Err(Error::integrity(format!("{bad} of {total} blobs are damaged")));
    }
    Ok(())
}

impl<W: std::io::Write> Lister<W> {
    fn check(&mut self, pack: Option<Id>, e: &Entry, sealed: &mut [u8]) -> Result<()> {
        self.total += 1;
        let verdict = open_blob(&self.key, &e.id, sealed, e.uncompressed_length, &mut self.plain);
        let error = verdict.err().map(|err| err.to_string());
        if let Some(msg) = &error {
            self.bad += 1;
            let where_ = pack.map(|p| format!(" in pack {p}")).unwrap_or_default();
            common::cli::warn("unpack", format!("blob {}{where_} at offset {}: {msg}", e.id, e.offset));
        }
        let rec = BlobCheck {
            pack,
            id: e.id,
            blob_type: e.blob_type.as_str().into(),
            offset: e.offset,
            length: e.length,
            uncompressed_length: e.uncompressed_length,
            ok: error.is_none(),
            error,
        };
        self.out.write(&rec)
    }

    fn end_pack(&mut self, mut p: PackState) -> Result<()> {
        let name = p.pack.map(|i| i.to_string()).unwrap_or_else(|| "pack".into());
        if p.next != p.entries.len() {
            return Err(Error::stream(format!(
                "{name}: stream ended after {} of {} blobs (pack truncated?)",
                p.next,
                p.entries.len()
            )));
        }
        p.hash.update(&p.enc_header);
        p.hash.update((p.enc_header.len() as u32).to_le_bytes());
        let got = Id(p.hash.finalize().into());
        if let Some(id) = p.pack {
            if got != id {
                self.bad += 1;
                common::cli::warn("unpack", format!("{name}: pack content hashes to {got}, not its name"));
            }
        }
        Ok(())
    }
}
