//! restic-compatible repository locks (FORMAT.md §11).
//!
//! A lock file is encrypted JSON, so only a stage holding the key can make one: `pack` makes
//! it and `push`, which writes everything `pack` makes, stores it first and removes it last.

use serde::{Deserialize, Serialize};

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::node::GoTime;
use crate::repo::Repo;
use crate::sys;

/// How often a held lock is renewed, and when an unrenewed one counts as stale.
pub const REFRESH_SECS: u64 = 5 * 60;
pub const STALE_SECS: i64 = 30 * 60;

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
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let (uid, gid) = sys::ids();
        Lock {
            time: GoTime::local(now.as_secs() as i64, now.subsec_nanos()).to_string(),
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
/// Unreadable lock files fail too, as in restic; empty ones (left by interrupted uploads)
/// are skipped.
pub fn check_no_exclusive(repo: &Repo) -> Result<()> {
    for e in repo.backend.list(FileType::Lock)? {
        if e.size == 0 {
            continue;
        }
        let json = repo
            .load_json(FileType::Lock, &e.name)
            .map_err(|err| Error::Locked(format!("lock {}: unreadable: {err}", &e.name[..8])))?;
        let lock: Lock = serde_json::from_slice(&json)
            .map_err(|err| Error::Locked(format!("lock {}: invalid lock file: {err}", &e.name[..8])))?;
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
