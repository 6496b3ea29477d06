//! An open repository: its backend, master key and config, and the loading of the small
//! encrypted files (snapshots, index) and of single blobs (trees).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::{Backend, Entry, FileType};
use crate::config::Config;
use crate::crypto::Key;
use crate::error::{Error, Result, ResultExt};
use crate::id::Id;
use crate::index::Index;
use crate::key::KeyFile;
use crate::pack;
use crate::par::Ordered;
use crate::snapshot::Snapshot;

/// Snapshot and index files loaded at once: a remote repository answers each after a round
/// trip, and there may be hundreds.
const LOADERS: usize = 8;
/// Bytes of those files held at once, at most (or one file, if larger).
const LOAD_AHEAD: u64 = 16 << 20;

/// Bytes of files read while the key is derived, at most (see [`Repo::open_early`]). They
/// are held beside scrypt's table (32 MiB with restic's usual parameters), so that together
/// they stay well inside a stage's 64 MiB.
const EARLY_BYTES: u64 = 8 << 20;

/// restic tries this many key files before giving up.
pub const MAX_KEYS: usize = 20;

/// The snapshots that could be read, and the errors of those that could not (see
/// [`Repo::snapshots_readable`]).
pub type Readable = (Vec<(Id, Snapshot)>, Vec<Error>);

/// An opened repository.
pub struct Repo {
    pub backend: Box<dyn Backend>,
    pub key: Key,
    pub config: Config,
    /// The SHA-256 of the stored config (see [`binding`]): what the streams made from this
    /// repository name it by.
    pub binding: Id,
    early: Mutex<Early>,
}

/// What was listed and read while the key was derived, each kept until its first use: a
/// second listing or read asks the backend again.
#[derive(Default)]
struct Early {
    lists: HashMap<FileType, Vec<Entry>>,
    files: HashMap<(FileType, String), Vec<u8>>,
}

impl Repo {
    /// A repository from its parts, for unit tests that need one without a key file.
    #[cfg(test)]
    pub(crate) fn for_tests(backend: Box<dyn Backend>, key: Key, config: Config) -> Repo {
        let binding = Id::hash(&config.encode(&key));
        Repo { backend, key, config, binding, early: Mutex::new(Early::default()) }
    }

    /// Opens the repository: checks it exists, then finds the key file the password opens.
    /// The password is asked for only once the repository is known to exist.
    pub fn open(
        backend: Box<dyn Backend>,
        key_hint: Option<&str>,
        password: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Repo> {
        Repo::open_early(backend, key_hint, password, &[])
    }

    /// Opens the repository as [`Repo::open`] does, and while the key is derived (scrypt:
    /// half a second of one core with restic's usual parameters) reads the config and lists
    /// and reads the files of the kinds in `early` (up to [`EARLY_BYTES`] of them), which
    /// [`Repo::snapshots`], [`Repo::load_index`] and [`Repo::load_json`] then take instead of
    /// asking the backend: against a remote repository each is a round trip saved from the
    /// time before the first result. Nothing read early is trusted more than a later read:
    /// every file is checked against its name and decrypted when it is used.
    pub fn open_early(
        backend: Box<dyn Backend>,
        key_hint: Option<&str>,
        password: impl FnOnce() -> Result<Vec<u8>>,
        early: &[FileType],
    ) -> Result<Repo> {
        // The key listing needs no password: it goes out with the existence check, one
        // round trip instead of two before the key can be read.
        let b = backend.as_ref();
        let (listed, password) = std::thread::scope(|s| {
            let listing = s.spawn(|| b.list(FileType::Key));
            let checked = require(b).and_then(|()| password());
            let listed = listing
                .join()
                .unwrap_or_else(|_| Err(Error::internal("internal error: a listing thread panicked")));
            (listed, checked)
        });
        let password = password?;
        let mut keys: Vec<String> = listed?.into_iter().map(|e| e.name).collect();
        keys.sort();
        if let Some(h) = key_hint {
            if let Some(pos) = keys.iter().position(|k| k.starts_with(h)) {
                let k = keys.remove(pos);
                keys.insert(0, k);
            }
        }
        let stop = AtomicBool::new(false);
        let (key, raw, early) = std::thread::scope(|s| {
            let ahead = s.spawn(|| (b.read(FileType::Config, ""), read_early(b, early, &stop)));
            let key = find_key(b, &keys, &password);
            // A wrong password leaves nothing worth reading on.
            stop.store(key.is_err(), Ordering::SeqCst);
            let (raw, early) = ahead.join().unwrap_or_else(|_| {
                (Err(Error::internal("internal error: a reading thread panicked")), Early::default())
            });
            (key, raw, early)
        });
        let key = key?;
        let raw = raw?;
        let config = Config::decode(&key, &raw).context("config")?;
        Ok(Repo { backend, key, config, binding: Id::hash(&raw), early: Mutex::new(early) })
    }

    /// The listing of a kind of file: the one made while the key was derived, if any and not
    /// used yet.
    pub fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        match self.early().lists.remove(&t) {
            Some(list) => Ok(list),
            None => self.backend.list(t),
        }
    }

    fn early(&self) -> MutexGuard<'_, Early> {
        // Only a panicking loader thread poisons it, and that panic is reported itself.
        self.early.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The repository format version (1 or 2).
    pub fn version(&self) -> u32 {
        self.config.version
    }

    /// Loads an encrypted JSON file (snapshot, index, lock), checking that its content matches
    /// its name, and returns the JSON.
    pub fn load_json(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let early = self.early().files.remove(&(t, name.to_string()));
        let raw = match early {
            Some(raw) => raw,
            None => self.backend.read(t, name)?,
        };
        let what = format!("{} {}", t.dir(), name);
        if Id::hash(&raw).to_hex() != name {
            return Err(Error::integrity(format!("{what}: content does not match its name")));
        }
        crate::file::decode(&self.key, &raw, self.version()).context(what)
    }

    /// Every snapshot, sorted by time (oldest first), then id. Loaded several at once.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let (good, damaged) = self.snapshots_readable()?;
        match damaged.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(good),
        }
    }

    /// Every snapshot that can be read, sorted as [`Repo::snapshots`] sorts them, and the
    /// error of each snapshot file that is damaged (does not match its name, decrypt or
    /// parse), in listing order, for a caller that can go on without them. A failure to
    /// list or read is still an error.
    pub fn snapshots_readable(&self) -> Result<Readable> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        load_each(
            self.list(FileType::Snapshot)?,
            |e| {
                let loaded = self
                    .load_json(FileType::Snapshot, &e.name)
                    .and_then(|json| Snapshot::parse(&json).context(format!("snapshot {}", &e.name[..8])));
                match loaded {
                    Ok(snap) => Ok(Ok((Id::parse(&e.name)?, snap))),
                    Err(err @ (Error::Integrity(_) | Error::Format(_))) => Ok(Err(err)),
                    Err(err) => Err(err),
                }
            },
            |s| {
                match s {
                    Ok(s) => out.push(s),
                    Err(e) => damaged.push(e),
                }
                Ok(())
            },
        )?;
        out.sort_by(|a, b| {
            let ka = (a.1.time.secs, a.1.time.nanos);
            let kb = (b.1.time.secs, b.1.time.nanos);
            ka.cmp(&kb).then(a.0.cmp(&b.0))
        });
        Ok((out, damaged))
    }

    /// Loads and merges every index file: several read and decrypted at once, merged in
    /// listing order (the first copy of a blob wins, as in restic).
    pub fn load_index(&self) -> Result<Index> {
        let mut idx = Index::new();
        let v2 = self.version() >= 2;
        load_each(
            self.list(FileType::Index)?,
            |e| Ok((self.load_json(FileType::Index, &e.name)?, e.name)),
            |(json, name)| {
                idx.add_file(Id::parse(&name)?, &json, v2).context(format!("index {}", &name[..8]))
            },
        )?;
        Ok(idx)
    }

    /// Loads one blob by id through the index: a ranged read of exactly its bytes, then
    /// decrypt, decompress and hash check.
    pub fn load_blob(&self, index: &Index, id: &Id) -> Result<Vec<u8>> {
        let loc = index.get(id).ok_or_else(|| Error::format(format!("blob {id} is not in the index")))?;
        let what = || format!("blob {} in pack {}", id.short(), loc.pack.short());
        let mut sealed = Vec::new();
        self.backend
            .read_range(FileType::Pack, &loc.pack.to_hex(), loc.offset, loc.length as u64, &mut sealed)
            .context(what())?;
        let mut out = Vec::new();
        let plain = pack::open_blob(&self.key, id, &mut sealed, loc.uncompressed_length, &mut out)
            .context(what())?
            .to_vec();
        Ok(plain)
    }

    /// Resolves a snapshot argument: `latest`, a full id, or a unique id prefix, among
    /// `candidates` (see [`crate::cli::SnapshotFilter::pick`] for restic's use of filters).
    pub fn resolve_snapshot<'a>(
        &self,
        spec: &str,
        candidates: &'a [(Id, Snapshot)],
    ) -> Result<&'a (Id, Snapshot)> {
        if spec == "latest" {
            return candidates.last().ok_or_else(|| Error::Usage("no snapshot to choose from".into()));
        }
        let matches: Vec<_> = candidates.iter().filter(|(id, _)| id.to_hex().starts_with(spec)).collect();
        match matches.len() {
            1 => Ok(matches[0]),
            0 => Err(Error::Usage(format!("no snapshot {spec:?} found"))),
            n => Err(Error::Usage(format!("snapshot prefix {spec:?} is ambiguous ({n} snapshots)"))),
        }
    }

    /// Resolves a pack id prefix to the full name of a stored pack.
    pub fn resolve_pack(&self, spec: &str) -> Result<(String, u64)> {
        resolve_pack(self.backend.as_ref(), spec)
    }
}

/// The master key from the first of `keys` (at most [`MAX_KEYS`]) the password opens.
/// Loads the files of a listing [`LOADERS`] at once, at most [`LOAD_AHEAD`] bytes of them
/// held, and hands each result to `sink` in listing order.
fn load_each<T: Send>(
    list: Vec<Entry>,
    load: impl Fn(Entry) -> Result<T> + Sync,
    sink: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    Ordered::new(LOADERS).ahead(2 * LOADERS).budget(LOAD_AHEAD).run(list, |e| e.size, load, sink)
}

fn find_key(backend: &dyn Backend, keys: &[String], password: &[u8]) -> Result<Key> {
    for name in keys.iter().take(MAX_KEYS) {
        let bytes = backend.read(FileType::Key, name)?;
        if Id::hash(&bytes).to_hex() != *name {
            return Err(Error::integrity(format!("key {name}: content does not match its name")));
        }
        let kf = KeyFile::parse(&bytes).context(format!("key {}", &name[..8]))?;
        if let Some(k) = kf.open(password).context(format!("key {}", &name[..8]))? {
            return Ok(k);
        }
    }
    Err(Error::WrongPassword)
}

/// Lists the kinds of file in `types` and reads them in listing order, [`LOADERS`] at once,
/// while their total stays within [`EARLY_BYTES`]. A failure only ends the reading early: the
/// same listing or read is made again when the file is needed, and fails there in its place.
fn read_early(backend: &dyn Backend, types: &[FileType], stop: &AtomicBool) -> Early {
    let mut early = Early::default();
    let mut left = EARLY_BYTES;
    for &t in types {
        let Ok(list) = backend.list(t) else { break };
        let wanted: Vec<Entry> = list
            .iter()
            .take_while(|e| {
                let fits = e.size <= left;
                left -= if fits { e.size } else { 0 };
                fits
            })
            .cloned()
            .collect();
        let files = &mut early.files;
        let _ = load_each(
            wanted,
            |e| {
                if stop.load(Ordering::SeqCst) {
                    return Err(Error::internal("not needed"));
                }
                Ok((e.name.clone(), backend.read(t, &e.name)?))
            },
            |(name, raw)| {
                files.insert((t, name), raw);
                Ok(())
            },
        );
        early.lists.insert(t, list);
    }
    early
}

/// Fails unless the backend holds a repository (a `config` file), with restic's "does not
/// exist" and exit 10. Every tool checks this first, before a password is asked for or a
/// missing pack or key could be blamed for a wrong `--repo`.
pub fn require(backend: &dyn Backend) -> Result<()> {
    if !backend.exists(FileType::Config, "")? {
        return Err(Error::NoRepository(backend.location().to_string()));
    }
    Ok(())
}

/// What binds a stream to its repository: the SHA-256 of the `config` file as stored. It
/// changes with the repository id inside and needs no key, so `push` can check it too.
pub fn binding(backend: &dyn Backend) -> Result<Id> {
    match backend.read(FileType::Config, "") {
        Ok(raw) => Ok(Id::hash(&raw)),
        // Asked only now: a repository that exists costs one request, not two.
        Err(e) => require(backend).and(Err(e)),
    }
}

/// Resolves a pack id or unique id prefix to the name and size of a stored pack.
pub fn resolve_pack(backend: &dyn Backend, spec: &str) -> Result<(String, u64)> {
    if crate::backend::is_id_name(spec) {
        let size = backend.size(FileType::Pack, spec).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::format(format!("pack {spec} is not in the repository"))
            }
            other => other,
        })?;
        return Ok((spec.to_string(), size));
    }
    let list = backend.list(FileType::Pack)?;
    let m: Vec<_> = list.into_iter().filter(|e| e.name.starts_with(spec)).collect();
    match m.len() {
        1 => Ok((m[0].name.clone(), m[0].size)),
        0 => Err(Error::format(format!("pack {spec} is not in the repository"))),
        n => Err(Error::Usage(format!("pack prefix {spec:?} is ambiguous ({n} packs)"))),
    }
}
