//! The index: which pack holds each blob, at which offset (doc/format.md, "Index").
//!
//! Kept compact because restores of large repositories hold all of it: a blob costs its 32-byte
//! id plus 16 bytes of location in a hash table keyed by the id itself (ids are SHA-256 values,
//! already uniformly distributed, so hashing them again would be wasted work).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::Entry;

/// A hasher for keys that are already random: it takes eight bytes of the id as the hash.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `Id` hashes as one 32-byte array write (plus a length prefix for slices, which
        // `[u8; 32]` does not emit); fold whatever arrives so any use stays correct.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

/// A `HashMap` keyed by ids.
pub type IdMap<V> = HashMap<Id, V, BuildHasherDefault<IdHasher>>;

/// Where one blob lives: a pack, an offset and the encrypted length there. This is what the
/// index answers, and what `node`, `blob` and `blob_failed` records carry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobLoc {
    pub id: Id,
    pub pack: Id,
    pub offset: u64,
    /// Encrypted length in the pack (plaintext or zstd frame, plus 32 bytes of IV and MAC).
    pub length: u32,
    /// Present only for compressed blobs: the plaintext length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
}

impl BlobLoc {
    /// The plaintext length of the blob (what its id hashes).
    pub fn plain_len(&self) -> u64 {
        match self.uncompressed_length {
            Some(n) => n as u64,
            None => (self.length as u64).saturating_sub(32),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Loc {
    pack: u32,
    offset: u32,
    length: u32,
    /// 0 when the blob is not compressed (compressed blobs never have length 0).
    uncompressed: u32,
}

/// All index files of a repository, merged.
#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_no: IdMap<u32>,
    blobs: IdMap<Loc>,
    /// The index files read, and for each pack the one (by number) that first named it, so
    /// a backup can say which files its deduplication relied on.
    files: Vec<Id>,
    pack_file: Vec<u32>,
    /// The file being added, while `add_file` runs.
    current: Option<u32>,
    /// Every tree blob with its pack number: trees are a small share of the blobs, and a walk
    /// wants a tree's neighbours in its pack without a scan of the whole index per pack.
    trees: Vec<(u32, Id)>,
    /// `trees` grouped by pack, made on first use after the last file was added.
    trees_by_pack: OnceLock<HashMap<u32, Vec<Id>>>,
    /// For each pack, its entries as the first index file naming it lists them, duplicates
    /// of blobs stored elsewhere included: what the pack's size must be.
    contents: Vec<Contents>,
}

/// What an index file says one pack holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    pub blobs: u32,
    pub compressed: u32,
    /// The stored (encrypted) bytes of all its blobs.
    pub bytes: u64,
}

impl Contents {
    /// The size the pack file must have: its blobs, then the encrypted header, then the
    /// header's 4-byte length (doc/format.md, "Packs").
    pub fn pack_size(&self) -> u64 {
        use crate::pack::{ENTRY_COMPRESSED, ENTRY_PLAIN};
        let plain = self.blobs as u64 * ENTRY_PLAIN as u64
            + self.compressed as u64 * (ENTRY_COMPRESSED - ENTRY_PLAIN) as u64;
        self.bytes + plain + crate::crypto::OVERHEAD as u64 + 4
    }
}

/// `pack_file` for packs added without a file name.
const NO_FILE: u32 = u32::MAX;

#[derive(Deserialize)]
struct FileJson<'a> {
    #[serde(borrow)]
    packs: Vec<PackJson<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AnyFile<'a> {
    #[serde(borrow)]
    Current(FileJson<'a>),
    /// The restic 0.1 format: a bare array of packs.
    #[serde(borrow)]
    Legacy(Vec<PackJson<'a>>),
}

#[derive(Deserialize, Serialize)]
struct PackJson<'a> {
    id: &'a str,
    #[serde(borrow)]
    blobs: Vec<BlobJson<'a>>,
}

#[derive(Deserialize, Serialize)]
struct BlobJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    blob_type: &'a str,
    offset: u64,
    length: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uncompressed_length: Option<u64>,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    fn pack_number(&mut self, pack: Id) -> u32 {
        if let Some(n) = self.pack_no.get(&pack) {
            return *n;
        }
        let n = self.packs.len() as u32;
        self.packs.push(pack);
        self.pack_file.push(self.current.unwrap_or(NO_FILE));
        self.contents.push(Contents::default());
        self.pack_no.insert(pack, n);
        n
    }

    /// Like `add_json`, for the index file named `file`.
    pub fn add_file(&mut self, file: Id, json: &[u8], allow_compressed: bool) -> Result<()> {
        self.current = Some(self.files.len() as u32);
        self.files.push(file);
        let r = self.add_json(json, allow_compressed);
        self.current = None;
        r
    }

    /// Adds the blobs of one decoded index file. `allow_compressed` is false for v1
    /// repositories, where compressed entries are an error as in restic.
    pub fn add_json(&mut self, json: &[u8], allow_compressed: bool) -> Result<()> {
        let parsed: AnyFile<'_> =
            serde_json::from_slice(json).map_err(|e| Error::format(format!("index does not parse: {e}")))?;
        let packs = match parsed {
            AnyFile::Current(f) => f.packs,
            AnyFile::Legacy(p) => p,
        };
        for p in packs {
            let pack = Id::parse(p.id)?;
            let first = !self.pack_no.contains_key(&pack);
            let pn = self.pack_number(pack);
            for b in p.blobs {
                let id = Id::parse(b.id)?;
                // Only the type's validity matters here; readers take it from the tree.
                if !matches!(b.blob_type, "data" | "tree") {
                    return Err(Error::format(format!(
                        "index: blob {} has unknown type {:?}",
                        id.short(),
                        b.blob_type
                    )));
                }
                if b.uncompressed_length.is_some() && !allow_compressed {
                    return Err(Error::format(
                        "index uses compression, which repository version 1 does not support",
                    ));
                }
                let (offset, length) = match (u32::try_from(b.offset), u32::try_from(b.length)) {
                    (Ok(o), Ok(l)) if l > crate::crypto::OVERHEAD as u32 => (o, l),
                    _ => {
                        return Err(Error::format(format!(
                            "index: blob {} has impossible offset {} / length {}",
                            id.short(),
                            b.offset,
                            b.length
                        )))
                    }
                };
                let uncompressed = match b.uncompressed_length.map(u32::try_from) {
                    None => 0,
                    Some(Ok(n)) if n > 0 => n,
                    Some(_) => {
                        return Err(Error::format(format!(
                            "index: blob {} has impossible uncompressed length",
                            id.short()
                        )))
                    }
                };
                if first {
                    let c = &mut self.contents[pn as usize];
                    c.blobs += 1;
                    c.compressed += u32::from(uncompressed != 0);
                    c.bytes += length as u64;
                }
                // The first copy wins, as in restic.
                if let std::collections::hash_map::Entry::Vacant(v) = self.blobs.entry(id) {
                    v.insert(Loc { pack: pn, offset, length, uncompressed });
                    if b.blob_type == "tree" {
                        self.trees.push((pn, id));
                    }
                }
            }
        }
        self.trees_by_pack = OnceLock::new();
        Ok(())
    }

    /// Every pack an index file names, with what the first such file says it holds.
    pub fn packs(&self) -> impl Iterator<Item = (Id, Contents)> + '_ {
        self.packs.iter().copied().zip(self.contents.iter().copied())
    }

    /// Whether any index file lists the pack.
    pub fn has_pack(&self, pack: &Id) -> bool {
        self.pack_no.contains_key(pack)
    }

    /// Every blob id.
    pub fn ids(&self) -> impl Iterator<Item = Id> + '_ {
        self.blobs.keys().copied()
    }

    /// Whether the index knows the blob.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// The pack holding the blob, and the index file that named that pack.
    pub fn source(&self, id: &Id) -> Option<(Id, Option<Id>)> {
        self.blobs.get(id).map(|l| {
            let f = self.pack_file[l.pack as usize];
            (self.packs[l.pack as usize], (f != NO_FILE).then(|| self.files[f as usize]))
        })
    }

    /// The tree blobs of one pack, by offset, for a reader that wants a tree's neighbours
    /// (stored side by side) rather than one tree per request.
    pub fn trees_in(&self, pack: &Id) -> Vec<BlobLoc> {
        let Some(&pn) = self.pack_no.get(pack) else { return Vec::new() };
        let by_pack = self.trees_by_pack.get_or_init(|| {
            let mut m: HashMap<u32, Vec<Id>> = HashMap::new();
            for (p, id) in &self.trees {
                m.entry(*p).or_default().push(*id);
            }
            m
        });
        let ids = by_pack.get(&pn).map(Vec::as_slice).unwrap_or_default();
        let mut out: Vec<BlobLoc> = ids.iter().filter_map(|id| self.get(id)).collect();
        out.sort_by_key(|b| b.offset);
        out
    }

    /// Where the blob lives.
    pub fn get(&self, id: &Id) -> Option<BlobLoc> {
        self.blobs.get(id).map(|l| BlobLoc {
            id: *id,
            pack: self.packs[l.pack as usize],
            offset: l.offset as u64,
            length: l.length,
            uncompressed_length: (l.uncompressed != 0).then_some(l.uncompressed),
        })
    }
}

/// Encodes one index file's JSON for the given packs and their header entries.
pub fn encode(packs: &[(Id, Vec<Entry>)]) -> Vec<u8> {
    let ids: Vec<(String, Vec<(String, &Entry)>)> =
        packs.iter().map(|(p, es)| (p.to_hex(), es.iter().map(|e| (e.id.to_hex(), e)).collect())).collect();
    #[derive(Serialize)]
    struct Out<'a> {
        packs: Vec<PackJson<'a>>,
    }
    let out = Out {
        packs: ids
            .iter()
            .map(|(p, es)| PackJson {
                id: p,
                blobs: es
                    .iter()
                    .map(|(id, e)| BlobJson {
                        id,
                        blob_type: e.blob_type.as_str(),
                        offset: e.offset,
                        length: e.length as u64,
                        uncompressed_length: e.uncompressed_length.map(u64::from),
                    })
                    .collect(),
            })
            .collect(),
    };
    let mut v = serde_json::to_vec(&out).expect("index encodes");
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::BlobType;

    #[test]
    fn parse_lookup_and_encode() {
        let p = Id::hash(b"pack");
        let es = vec![
            Entry {
                blob_type: BlobType::Data,
                id: Id::hash(b"a"),
                offset: 0,
                length: 47,
                uncompressed_length: Some(6),
            },
            Entry {
                blob_type: BlobType::Tree,
                id: Id::hash(b"b"),
                offset: 47,
                length: 405,
                uncompressed_length: None,
            },
        ];
        let json = encode(&[(p, es.clone())]);
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.contains(r#""type":"data","offset":0,"length":47,"uncompressed_length":6}"#), "{text}");
        assert!(text.ends_with("]}]}\n"));
        let mut idx = Index::new();
        idx.add_json(&json, true).unwrap();
        assert_eq!(idx.len(), 2);
        let b = idx.get(&Id::hash(b"b")).unwrap();
        assert_eq!((b.pack, b.offset, b.length, b.uncompressed_length), (p, 47, 405, None));
        assert_eq!(idx.get(&Id::hash(b"a")).unwrap().plain_len(), 6);
        assert!(Index::new().add_json(&json, false).is_err());
        assert!(Index::new().add_json(b"{\"packs\":[{\"id\":\"x\",\"blobs\":[]}]}", true).is_err());
        // Legacy array form and unknown fields.
        let legacy = format!(r#"[{{"id":"{p}","blobs":[]}}]"#);
        Index::new().add_json(legacy.as_bytes(), true).unwrap();
        let sup = format!(r#"{{"supersedes":[],"packs":[{{"id":"{p}","blobs":[]}}]}}"#);
        Index::new().add_json(sup.as_bytes(), true).unwrap();
    }

    #[test]
    fn trees_in_a_pack_by_offset() {
        let entry = |blob_type, name: &[u8], offset| Entry {
            blob_type,
            id: Id::hash(name),
            offset,
            length: 100,
            uncompressed_length: None,
        };
        let (p, q) = (Id::hash(b"p"), Id::hash(b"q"));
        let first = encode(&[(p, vec![entry(BlobType::Tree, b"t2", 100), entry(BlobType::Data, b"d", 200)])]);
        let mut idx = Index::new();
        idx.add_json(&first, true).unwrap();
        assert_eq!(idx.trees_in(&p).len(), 1);
        // A file added after a lookup is seen by the next one; a second copy of a tree is not.
        let second = encode(&[
            (p, vec![entry(BlobType::Tree, b"t1", 0)]),
            (q, vec![entry(BlobType::Tree, b"t2", 0), entry(BlobType::Tree, b"t3", 100)]),
        ]);
        idx.add_json(&second, true).unwrap();
        let ids = |pack| idx.trees_in(pack).iter().map(|b| (b.id, b.offset)).collect::<Vec<_>>();
        assert_eq!(ids(&p), vec![(Id::hash(b"t1"), 0), (Id::hash(b"t2"), 100)]);
        assert_eq!(ids(&q), vec![(Id::hash(b"t3"), 100)]);
        assert!(idx.trees_in(&Id::hash(b"none")).is_empty());
    }
}
