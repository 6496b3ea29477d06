//! restic-compatible repository locks (doc/format.md, "Locks").
//!
//! A lock file is encrypted JSON, so only a stage holding the key can make one: `pack` makes
//! it and `push`, which writes everything `pack` makes, stores it first and removes it last.

use std::io::Write;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::go::GoTime;
use crate::id::Id;
use crate::record::{RepoFileRecord, Writer};
use crate::repo::Repo;
use crate::sys;

/// How often a held lock is renewed, and when an unrenewed one counts as stale.
const REFRESH_SECS: u64 = 5 * 60;
const STALE_SECS: i64 = 30 * 60;

/// The lock file's JSON (field order as restic writes it).
#[derive(Debug, Serialize, Deserialize)]
pub struct Lock {
    pub time: String,
    pub exclusive: bool,
    pub hostname: String,
    pub username: String,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Lock {
    /// A lock for this process, now.
    pub fn new(exclusive: bool) -> Lock {
        let (uid, gid) = sys::ids();
        Lock {
            time: GoTime::now_local().to_string(),
            exclusive,
            hostname: sys::hostname(),
            username: sys::username(),
            pid: std::process::id(),
            uid,
            gid,
        }
    }

    /// The encrypted file contents for `repo`.
    pub fn encode(&self, repo: &Repo) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("lock encodes");
        crate::file::encode(&repo.key, &json, repo.version())
    }
}

/// Fails with `Error::Locked` if another process holds an exclusive lock (prune, check, …).
/// `own` is this run's lock, skipped. Lock files that cannot be read or decrypted are
/// skipped with a warning, as restic does, so one corrupt file does not stop every backup;
/// empty ones (left by interrupted uploads) are skipped silently. `tool` signs the warning.
pub fn check_no_exclusive(repo: &Repo, own: Option<&Id>, tool: &str) -> Result<()> {
    let own = own.map(Id::to_hex);
    for e in repo.backend.list(FileType::Lock)? {
        if e.size == 0 || own.as_deref() == Some(e.name.as_str()) {
            continue;
        }
        let lock = match repo.load_json(FileType::Lock, &e.name) {
            Ok(json) => serde_json::from_slice::<Lock>(&json).map_err(|err| err.to_string()),
            // Removed between listing and reading: its holder let go.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => Err(err.to_string()),
        };
        let lock = match lock {
            Ok(l) => l,
            Err(err) => {
                crate::cli::warn(tool, format!("lock {} is unreadable, ignored: {err}", &e.name[..8]));
                continue;
            }
        };
        if lock.exclusive {
            return Err(Error::Locked(format!(
                "repository is already locked exclusively by PID {} on {} by {} (since {}); \
                 lock {}",
                lock.pid,
                lock.hostname,
                lock.username,
                lock.time,
                &e.name[..8]
            )));
        }
    }
    Ok(())
}

/// A lock a tool that holds the key stores itself (`check-repo`), removed when dropped, and
/// by the signal handler if SIGINT, SIGTERM or SIGHUP ends the process first.
pub struct Held {
    backend: std::sync::Arc<dyn crate::backend::Backend>,
    name: String,
    /// Signs the warning if the lock cannot be removed.
    tool: String,
    _on_signal: crate::signal::Guard,
}

impl Held {
    /// Stores a lock for this process in `repo`, then (restic's order) fails with
    /// `Error::Locked`, having removed it again, if someone else holds an exclusive lock.
    /// `backend` is a second handle on the repository's backend, for the clean-up; `tool`
    /// signs the warnings.
    pub fn take(
        repo: &Repo,
        backend: Box<dyn crate::backend::Backend>,
        exclusive: bool,
        tool: &str,
    ) -> Result<Held> {
        let bytes = Lock::new(exclusive).encode(repo);
        let id = Id::hash(&bytes);
        let backend: std::sync::Arc<dyn crate::backend::Backend> = backend.into();
        let (b, n) = (backend.clone(), id.to_hex());
        let guard = crate::signal::on_interrupt(move || {
            let _ = b.remove(FileType::Lock, &n);
        });
        backend.write(FileType::Lock, &id.to_hex(), &bytes)?;
        let held = Held { backend, name: id.to_hex(), tool: tool.to_string(), _on_signal: guard };
        std::thread::sleep(SETTLE);
        check_no_exclusive(repo, Some(&id), tool)?;
        Ok(held)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Err(e) = self.backend.remove(FileType::Lock, &self.name) {
            crate::cli::warn(
                &self.tool,
                format!("could not remove lock {}: {e}; `restic unlock` removes it", &self.name[..8]),
            );
        }
    }
}

/// How long `pack` waits for `push` to store its lock before deciding that no `push` is
/// storing it right now (the stream goes to a file, to be pushed later).
const VISIBLE_WAIT: Duration = Duration::from_secs(3);
/// restic's pause between storing its lock and looking for others, so that two processes
/// locking at the same moment see each other.
const SETTLE: Duration = Duration::from_millis(200);

/// Seconds from an environment variable (for tests that cannot wait five minutes), else
/// the default.
fn secs_from_env(var: &str, default: u64) -> Duration {
    let secs = std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok()).filter(|s| *s > 0);
    Duration::from_secs(secs.unwrap_or(default))
}

/// The lock of a backup, made by `pack` and stored by `push`.
///
/// `pack` holds the key, so it makes the lock files; `push` stores them. The keeper sends a
/// lock record down the stream at once and then watches the repository: once its lock is
/// there, it looks for exclusive locks (restic's order: lock first, then decide), renews
/// the lock on a timer whatever the input does, and ends the process with one line if the
/// lock disappears (`restic unlock --remove-all`) or cannot be renewed before it would go
/// stale. A stream that goes to a file has no `push` storing its lock: then nothing is
/// watched, and `push` checks what the backup relies on before it saves the snapshot.
pub struct Keeper<'a, W: Write> {
    repo: &'a Repo,
    out: &'a Mutex<Writer<W>>,
    state: Mutex<State>,
    wake: Condvar,
    refresh: Duration,
    poll: Duration,
}

struct State {
    /// Locks sent down the stream, oldest first: when the newest of them was seen in the
    /// repository (`stored`), the first is that one; older ones are dropped.
    chain: Vec<(Id, Instant)>,
    /// Whether `chain[0]` was seen in the repository: a `push` is storing the stream.
    stored: bool,
    done: bool,
}

impl<'a, W: Write + Send> Keeper<'a, W> {
    /// Sends the first lock down the stream and waits briefly for it to be stored. If it is,
    /// fails with `Error::Locked` when another process holds an exclusive lock.
    pub fn start(repo: &'a Repo, out: &'a Mutex<Writer<W>>) -> Result<Keeper<'a, W>> {
        let first = send(repo, out)?;
        let k = Keeper {
            repo,
            out,
            state: Mutex::new(State { chain: vec![(first, Instant::now())], stored: false, done: false }),
            wake: Condvar::new(),
            refresh: secs_from_env("SLUICE_LOCK_REFRESH_SECS", REFRESH_SECS),
            poll: secs_from_env("SLUICE_LOCK_POLL_SECS", 10),
        };
        let deadline = Instant::now() + VISIBLE_WAIT;
        while Instant::now() < deadline {
            if repo.backend.exists(FileType::Lock, &first.to_hex())? {
                k.state().stored = true;
                std::thread::sleep(SETTLE);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        check_no_exclusive(repo, Some(&first), "pack")?;
        Ok(k)
    }

    /// Whether the lock is known to be in the repository (a `push` is storing the stream).
    pub fn stored(&self) -> bool {
        self.state().stored
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renews and watches the lock until `stop`; run it on a thread of its own. When the
    /// lock is lost, `lost` gets the error, called while `stop` cannot return, so a caller
    /// that ends the process there never races the end of a finished stream.
    pub fn watch(&self, lost: impl FnOnce(Error)) {
        if let Err(e) = self.watching() {
            let st = self.state();
            if !st.done {
                lost(e);
            }
            drop(st);
        }
    }

    fn watching(&self) -> Result<()> {
        let mut st = self.state();
        loop {
            // Asked before waiting, not only after: a `stop` that came before this thread
            // first waited (a short backup) or while it looked at the repository has
            // notified nobody, and the wait would hold the process for a whole poll.
            if st.done {
                return Ok(());
            }
            let (st2, _) = self.wake.wait_timeout(st, self.poll).unwrap_or_else(|p| p.into_inner());
            st = st2;
            if st.done {
                return Ok(());
            }
            let newest = st.chain.last().expect("never empty").1;
            if newest.elapsed() >= self.refresh {
                drop(st);
                let id = send(self.repo, self.out)?;
                st = self.state();
                if !st.stored {
                    // Nobody is storing these: remember only the newest.
                    st.chain.clear();
                }
                st.chain.push((id, Instant::now()));
            }
            if !st.stored {
                // A push that started late stores the stream after all: watch from now on.
                let newest = st.chain.last().expect("never empty").0;
                drop(st);
                if self.repo.backend.exists(FileType::Lock, &newest.to_hex())? {
                    let mut st = self.state();
                    st.stored = true;
                    let n = st.chain.len() - 1;
                    st.chain.drain(..n);
                }
                st = self.state();
                continue;
            }
            drop(st);
            self.look()?;
            st = self.state();
            let made = st.chain[0].1;
            if made.elapsed().as_secs() as i64 >= STALE_SECS - 60 {
                return Err(Error::Locked(format!(
                    "this backup's lock could not be renewed for {} minutes (is push stalled?); \
                     stopping before it goes stale",
                    (STALE_SECS - 60) / 60
                )));
            }
        }
    }

    /// Finds the newest of this run's locks in the repository and forgets the older ones;
    /// fails if none is there any more.
    fn look(&self) -> Result<()> {
        let chain = self.state().chain.clone();
        let b = &self.repo.backend;
        // Newest first: push stores a new lock before it removes the one before. The
        // newest is asked again last, in case it was stored while the others were asked.
        let newest = chain.len() - 1;
        for (i, (id, _)) in chain.iter().enumerate().rev().chain(std::iter::once((newest, &chain[newest]))) {
            if b.exists(FileType::Lock, &id.to_hex())? {
                let mut st = self.state();
                let drop_n = st.chain.iter().position(|(c, _)| c == id).unwrap_or(i);
                st.chain.drain(..drop_n);
                return Ok(());
            }
        }
        Err(Error::Locked(format!(
            "this backup's lock {} was removed from the repository (restic unlock?); \
             stopping before anything refers to data a prune may delete",
            chain[0].0.short()
        )))
    }

    /// Before writing something that refers to stored data (index, snapshot): fails if the
    /// lock was seen in the repository and is gone now.
    pub fn confirm(&self) -> Result<()> {
        if self.stored() {
            self.look()
        } else {
            Ok(())
        }
    }

    /// Ends `watch`.
    pub fn stop(&self) {
        self.state().done = true;
        self.wake.notify_all();
    }
}

/// Makes a new lock and sends it down the stream at once.
fn send<W: Write>(repo: &Repo, out: &Mutex<Writer<W>>) -> Result<Id> {
    let sealed = Lock::new(false).encode(repo);
    let id = Id::hash(&sealed);
    let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
    w.write_with_data(&RepoFileRecord { kind: "lock".into(), id }, &sealed)?;
    w.flush()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::Local;
    use crate::config::Config;
    use crate::crypto::Key;

    /// `stop` before the watching thread first waits (a backup shorter than a thread's
    /// start) must end the watch at once, not after a poll: pack waits for the watcher
    /// before it exits, and push for pack.
    #[test]
    fn stop_before_watch_ends_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let local = Local::new(dir.path().to_str().unwrap());
        local.create_layout().unwrap();
        let repo = Repo::for_tests(Box::new(local), Key::random(), Config::new(2, 0x3DA3358B4DC173));
        let out = Mutex::new(Writer::new(Vec::new()));
        let k = Keeper {
            repo: &repo,
            out: &out,
            state: Mutex::new(State {
                chain: vec![(Id::hash(b"lock"), Instant::now())],
                stored: true,
                done: false,
            }),
            wake: Condvar::new(),
            refresh: Duration::from_secs(300),
            poll: Duration::from_secs(20),
        };
        k.stop();
        let t = Instant::now();
        k.watch(|e| panic!("lock lost: {e}"));
        assert!(t.elapsed() < Duration::from_secs(5), "watch ran {:?} after stop", t.elapsed());
    }
}
