//! Tree blobs, read many at a time.
//!
//! A walk needs every tree of the snapshot, one after another. Asked for one blob each, a
//! remote repository would cost one round trip per directory. But backups store trees side
//! by side in tree packs, a directory's subtrees just before it (a directory's tree is
//! written once its children are done). So each read takes the tree asked for and the blobs
//! around it, mostly before it, up to [`SPAN`] bytes; the others wait, decrypted, for their
//! turn in a cache of at most [`CACHE`] bytes (oldest dropped first). A blob around that fails
//! to decrypt is just not kept: it is read alone, and its error reported, if it is ever needed.

use std::collections::VecDeque;

use common::backend::FileType;
use common::error::{Error, Result, ResultExt};
use common::index::{IdMap, Index};
use common::pack;
use common::record::BlobLoc;
use common::repo::Repo;
use common::Id;

/// Bytes of a pack read at once for a tree: most of it before the tree, the rest after.
pub const SPAN: u64 = 4 << 20;
/// Plaintext bytes of trees kept for later.
pub const CACHE: usize = 24 << 20;

pub struct Trees<'a> {
    repo: &'a Repo,
    index: &'a Index,
    cache: IdMap<Vec<u8>>,
    /// Cached ids, oldest first (some may have been taken already).
    order: VecDeque<Id>,
    cached: usize,
    /// Each pack's blobs by offset, once a tree in it was needed.
    packs: IdMap<Vec<BlobLoc>>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// One zstd context for every tree: making one per blob cost more than the blob.
    opener: pack::Opener<'a>,
    /// A first pass is under way: trees stay cached for the pass after it.
    again: bool,
}

impl<'a> Trees<'a> {
    pub fn new(repo: &'a Repo, index: &'a Index) -> Result<Trees<'a>> {
        Ok(Trees {
            repo,
            index,
            cache: IdMap::default(),
            order: VecDeque::new(),
            cached: 0,
            packs: IdMap::default(),
            buf: Vec::new(),
            scratch: Vec::new(),
            opener: pack::Opener::new(&repo.key)?,
            again: false,
        })
    }

    /// While on, every tree loaded stays in the cache (as far as it holds them) for a second
    /// pass over the same trees; a second round trip for the root alone would cost more
    /// than the copies.
    pub fn keep_for_again(&mut self, on: bool) {
        self.again = on;
    }

    /// The plaintext of tree `id`.
    pub fn load(&mut self, id: &Id) -> Result<Vec<u8>> {
        if self.again {
            if let Some(t) = self.cache.get(id) {
                return Ok(t.clone());
            }
        } else if let Some(t) = self.cache.remove(id) {
            self.cached -= t.len();
            return Ok(t);
        }
        let loc =
            self.index.get(id).ok_or_else(|| Error::format(format!("blob {id} is not in the index")))?;
        let what = || format!("blob {} in pack {}", id.short(), loc.pack.short());
        let index = self.index;
        let blobs = self.packs.entry(loc.pack).or_insert_with(|| index.trees_in(&loc.pack));
        let Ok(i) = blobs.binary_search_by_key(&loc.offset, |b| b.offset) else {
            return self.repo.load_blob(self.index, id);
        };
        let end = |b: &BlobLoc| b.offset + b.length as u64;
        let (mut lo, mut hi) = (i, i + 1);
        while lo > 0 && end(&blobs[i]) - blobs[lo - 1].offset <= SPAN * 3 / 4 {
            lo -= 1;
        }
        while hi < blobs.len() && end(&blobs[hi]) - blobs[lo].offset <= SPAN {
            hi += 1;
        }
        let (start, stop) = (blobs[lo].offset, end(&blobs[hi - 1]));
        let around: Vec<BlobLoc> = blobs[lo..hi].to_vec();
        self.repo
            .backend
            .read_range(FileType::Pack, &loc.pack.to_hex(), start, stop - start, &mut self.buf)
            .context(what())?;
        if self.buf.len() as u64 != stop - start {
            return Err(Error::format(format!("{}: short read", what())));
        }
        let mut wanted = None;
        for b in &around {
            if b.id != *id && self.cache.contains_key(&b.id) {
                continue;
            }
            let at = (b.offset - start) as usize;
            let sealed = &mut self.buf[at..at + b.length as usize];
            let plain = self.opener.open(&b.id, sealed, b.uncompressed_length, &mut self.scratch);
            if b.id == *id {
                let p = plain.context(what())?.to_vec();
                if self.again {
                    self.keep(b.id, p.clone());
                }
                wanted = Some(p);
            } else if let Ok(p) = plain {
                let p = p.to_vec();
                self.keep(b.id, p);
            }
        }
        wanted.ok_or_else(|| Error::format(format!("{}: not where the index says", what())))
    }

    /// Drops tree `id` from the cache (its caller keeps it in another form).
    pub fn forget(&mut self, id: &Id) {
        if let Some(t) = self.cache.remove(id) {
            self.cached -= t.len();
        }
    }

    fn keep(&mut self, id: Id, plain: Vec<u8>) {
        self.cached += plain.len();
        self.cache.insert(id, plain);
        self.order.push_back(id);
        while self.cached > CACHE {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(t) = self.cache.remove(&old) {
                self.cached -= t.len();
            }
        }
    }
}
