//! Packs stored in the background, so that push reads on while they upload.
//!
//! Finished packs (spooled, checked against their names) go to an upload thread that stores
//! several at once; the reader waits only when `connections` packs are uploading and as many
//! more are queued, and at the barrier ([`Uploads::wait`]) before an index (which names
//! them) or the snapshot. Memory: each waiting pack is a spooled file with its write
//! buffer, so at most `2 × connections + 1` of those, whatever the pack size.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use common::backend::{Backend, FileType, Upload};
use common::error::{Error, Result};
use common::par::Ordered;
use common::Id;

/// A finished pack, checked against its name, waiting to be stored.
pub struct Ready {
    pub up: Box<dyn Upload>,
    pub id: Id,
    /// The line of its header record, for messages.
    pub line: u64,
}

pub struct Uploads {
    backend: Arc<dyn Backend>,
    connections: usize,
    /// The packs handed over since the last barrier, and the thread storing them, which
    /// ends once the channel is closed and all are stored (or one failed).
    batch: Option<(SyncSender<Ready>, JoinHandle<Result<()>>)>,
    /// Set when push stops early: packs still queued are not stored then.
    abandon: Arc<AtomicBool>,
    /// Packs stored that were not in the repository yet, counted as each lands (an
    /// interrupted push says how many stay).
    stored: Arc<AtomicU64>,
}

impl Uploads {
    /// Nothing started yet: the first pack starts an upload thread storing `connections`
    /// packs at once, counting in `stored` those that were not in the repository yet.
    pub fn new(backend: Arc<dyn Backend>, connections: usize, stored: Arc<AtomicU64>) -> Uploads {
        Uploads { backend, connections, batch: None, abandon: Arc::new(AtomicBool::new(false)), stored }
    }

    /// The number of packs stored that were not in the repository yet.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::SeqCst)
    }

    /// Hands a pack over; fails with an earlier pack's error if one failed meanwhile.
    pub fn send(&mut self, r: Ready) -> Result<()> {
        let (tx, _) = self.batch.get_or_insert_with(|| {
            let (tx, rx) = mpsc::sync_channel::<Ready>(self.connections);
            let (backend, stop, stored) = (self.backend.clone(), self.abandon.clone(), self.stored.clone());
            let connections = self.connections;
            let thread = std::thread::spawn(move || {
                Ordered::new(connections).run(
                    rx.iter(),
                    |_| 1,
                    |r: Ready| {
                        if stop.load(Ordering::SeqCst) {
                            return Ok(false);
                        }
                        // Counted at once, not in stream order: a signal may ask any time.
                        let new = store(backend.as_ref(), r)?;
                        stored.fetch_add(u64::from(new), Ordering::SeqCst);
                        Ok(new)
                    },
                    |_| Ok(()),
                )
            });
            (tx, thread)
        });
        if tx.send(r).is_err() {
            // The thread ended early, after an error: that error is the one to report.
            self.wait()?;
            return Err(Error::internal("the upload thread ended"));
        }
        Ok(())
    }

    /// The barrier: returns once every pack handed over is stored.
    pub fn wait(&mut self) -> Result<()> {
        let Some((tx, thread)) = self.batch.take() else { return Ok(()) };
        drop(tx);
        thread.join().map_err(|_| Error::internal("the upload thread panicked"))?
    }

    /// Stops early: packs not yet started are dropped (their spooled files with them), the
    /// ones uploading finish, and the thread is gone when this returns.
    pub fn abandon(&mut self) {
        self.abandon.store(true, Ordering::SeqCst);
        let _ = self.wait();
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Stores one pack unless it is there already; whether it was new.
fn store(backend: &dyn Backend, r: Ready) -> Result<bool> {
    let name = r.id.to_hex();
    if backend.exists(FileType::Pack, &name)? {
        return Ok(false);
    }
    let at = |e: Error| e.context(format!("pack {}", r.id)).context(format!("line {}", r.line));
    r.up.commit(&name).map_err(at)?;
    Ok(true)
}
