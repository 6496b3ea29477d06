//! The one concurrency primitive of the project: an ordered, bounded map over scoped threads.
//!
//! A stage that waits on the network (or on a core) hands items to [`Ordered::run`]: a few
//! worker threads apply a function to them, and the results come back to the calling thread
//! in input order, whatever order they finish in. The stream between stages stays ordered
//! and a stage's memory stays a documented number: at most [`Ordered::ahead`] items (and, with
//! a budget, at most that many bytes of them, or one item if it is larger) are taken from the
//! input and not yet consumed at any moment, so memory is that bound times the largest item.
//!
//! The input iterator and the consumer run on the calling thread, so they may share state
//! (a planner that learns from what was consumed) and need not be `Send`. Errors come back in
//! order: a failing item (or a worker that panicked) ends the run once every item before it
//! has been consumed. A consumer that fails (a closed pipe) ends it at once; workers finish
//! the item they hold and start no other.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// How many workers and how much read-ahead.
#[derive(Debug, Clone, Copy)]
pub struct Ordered {
    workers: usize,
    ahead: usize,
    budget: u64,
}

impl Ordered {
    /// `workers` threads (at least one), as many items ahead, no byte budget.
    pub fn new(workers: usize) -> Ordered {
        let workers = workers.max(1);
        Ordered { workers, ahead: workers, budget: u64::MAX }
    }

    /// At most `n` items (at least one) taken from the input and not yet consumed, counting
    /// the one the consumer holds.
    pub fn ahead(mut self, n: usize) -> Ordered {
        self.ahead = n.max(1);
        self
    }

    /// At most `bytes` of items (as `weigh` in [`Ordered::run`] counts them) taken and not
    /// yet consumed; a single larger item still goes, alone.
    pub fn budget(mut self, bytes: u64) -> Ordered {
        self.budget = bytes;
        self
    }

    /// Applies `work` to every item of `items` on the workers and gives each result to `sink`
    /// on the calling thread, in input order. `weigh` tells an item's size for the budget.
    /// Returns the first error in input order (of `work`, or a panic in it), or `sink`'s.
    pub fn run<T, R, I, W, F, S>(&self, items: I, weigh: W, work: F, sink: S) -> Result<()>
    where
        I: IntoIterator<Item = T>,
        T: Send,
        R: Send,
        W: FnMut(&T) -> u64,
        F: Fn(T) -> Result<R> + Sync,
        S: FnMut(R) -> Result<()>,
    {
        let stop = AtomicBool::new(false);
        let (job_tx, job_rx) = mpsc::channel::<(u64, T)>();
        let (res_tx, res_rx) = mpsc::channel::<(u64, Result<R>)>();
        let job_rx = Mutex::new(job_rx);
        std::thread::scope(|s| {
            for _ in 0..self.workers.min(self.ahead) {
                let res_tx = res_tx.clone();
                let (job_rx, stop, work) = (&job_rx, &stop, &work);
                s.spawn(move || worker(job_rx, &res_tx, stop, work));
            }
            drop(res_tx);
            let r = self.feed(items.into_iter(), weigh, sink, job_tx, res_rx);
            // Workers still holding an item finish it and find nobody listening.
            stop.store(true, Ordering::SeqCst);
            r
        })
    }

    /// The calling thread's part: hand out items while the bounds allow, consume results in
    /// order. Owns both channel ends, so returning releases the workers.
    fn feed<T, R, W, S>(
        &self,
        mut items: impl Iterator<Item = T>,
        mut weigh: W,
        mut sink: S,
        job_tx: Sender<(u64, T)>,
        res_rx: Receiver<(u64, Result<R>)>,
    ) -> Result<()>
    where
        W: FnMut(&T) -> u64,
        S: FnMut(R) -> Result<()>,
    {
        // Weights of the items handed out and not yet consumed, oldest first; the first is
        // item number `head`.
        let mut taken: VecDeque<u64> = VecDeque::new();
        let mut load = 0u64;
        let mut head = 0u64;
        // Results that came before their turn, at index seq - head.
        let mut ready: VecDeque<Option<Result<R>>> = VecDeque::new();
        let mut held: Option<T> = None;
        let mut exhausted = false;
        loop {
            // Consume what is due, then refill, then wait: results already here are not
            // delayed by an input that blocks.
            while let Some(Some(_)) = ready.front() {
                let r = ready.pop_front().flatten().expect("checked above");
                load -= taken.pop_front().expect("one weight per item taken");
                head += 1;
                sink(r?)?;
            }
            while !exhausted && taken.len() < self.ahead {
                let Some(item) = held.take().or_else(|| items.next()) else {
                    exhausted = true;
                    break;
                };
                let w = weigh(&item);
                if !taken.is_empty() && load.saturating_add(w) > self.budget {
                    held = Some(item);
                    break;
                }
                let seq = head + taken.len() as u64;
                job_tx.send((seq, item)).map_err(|_| internal("the workers are gone"))?;
                taken.push_back(w);
                load = load.saturating_add(w);
            }
            if taken.is_empty() {
                return Ok(());
            }
            // Workers never die silently (a panic is sent as an error), so this cannot hang.
            let (seq, r) = res_rx.recv().map_err(|_| internal("the workers are gone"))?;
            let at = (seq - head) as usize;
            if ready.len() <= at {
                ready.resize_with(at + 1, || None);
            }
            ready[at] = Some(r);
        }
    }
}

fn worker<T, R, F>(
    jobs: &Mutex<Receiver<(u64, T)>>,
    results: &Sender<(u64, Result<R>)>,
    stop: &AtomicBool,
    work: &F,
) where
    F: Fn(T) -> Result<R>,
{
    loop {
        let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((seq, item)) = job else { return };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // A panic is a bug, but it must reach the consumer as an error in its turn rather
        // than leave it waiting for a result that never comes.
        let r = catch_unwind(AssertUnwindSafe(|| work(item))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(internal(&format!("a worker thread panicked: {msg}")))
        });
        if results.send((seq, r)).is_err() {
            return;
        }
    }
}

fn internal(msg: &str) -> Error {
    Error::internal(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Items finish out of order (later ones sooner) yet come back in order.
    #[test]
    fn results_in_input_order() {
        let mut got = Vec::new();
        Ordered::new(4)
            .ahead(8)
            .run(
                0..200u64,
                |_| 1,
                |i| {
                    std::thread::sleep(Duration::from_micros((7 - i % 8) * 300));
                    Ok(i * 2)
                },
                |r| {
                    got.push(r);
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(got, (0..200).map(|i| i * 2).collect::<Vec<_>>());
    }

    /// Never more than `ahead` items taken and not consumed, nor more than the budget.
    #[test]
    fn read_ahead_is_bounded() {
        let live = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let bytes = AtomicUsize::new(0);
        let peak_bytes = AtomicUsize::new(0);
        let mut pulled = 0;
        let items = std::iter::from_fn(|| {
            pulled += 1;
            (pulled <= 300).then_some(pulled)
        })
        .inspect(|i: &usize| {
            let n = live.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            let b = bytes.fetch_add(i % 7, Ordering::SeqCst) + i % 7;
            peak_bytes.fetch_max(b, Ordering::SeqCst);
        });
        Ordered::new(3)
            .ahead(5)
            .budget(12)
            .run(
                items,
                |i| (*i % 7) as u64,
                |i| {
                    std::thread::sleep(Duration::from_micros(100));
                    Ok(i)
                },
                |i| {
                    live.fetch_sub(1, Ordering::SeqCst);
                    bytes.fetch_sub(i % 7, Ordering::SeqCst);
                    Ok(())
                },
            )
            .unwrap();
        // The iterator counts an item live when it yields it, and one may be held back for
        // the budget without being handed out.
        assert!(peak.load(Ordering::SeqCst) <= 5 + 1, "peak {}", peak.load(Ordering::SeqCst));
        assert!(peak_bytes.load(Ordering::SeqCst) <= 12 + 6);
    }

    /// The budget holds exactly: measured on what the workers hold.
    #[test]
    fn budget_counts_items_handed_out() {
        let held = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        Ordered::new(8)
            .ahead(8)
            .budget(10)
            .run(
                (0..100).map(|i| 1 + i % 4),
                |w| *w as u64,
                |w| {
                    let n = held.fetch_add(w, Ordering::SeqCst) + w;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(200));
                    Ok(w)
                },
                |w| {
                    held.fetch_sub(w, Ordering::SeqCst);
                    Ok(())
                },
            )
            .unwrap();
        assert!(peak.load(Ordering::SeqCst) <= 10, "peak {}", peak.load(Ordering::SeqCst));
    }

    /// An item larger than the whole budget still goes through, alone.
    #[test]
    fn oversized_item_goes_alone() {
        let mut got = Vec::new();
        Ordered::new(2)
            .budget(5)
            .run(
                [1u64, 100, 2],
                |w| *w,
                Ok,
                |w| {
                    got.push(w);
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(got, [1, 100, 2]);
    }

    /// A consumer that stops (a closed pipe) ends the run although the input never ends,
    /// and nothing far beyond the read-ahead was taken.
    #[test]
    fn consumer_stop_ends_the_run() {
        let pulled = AtomicUsize::new(0);
        let worked = AtomicUsize::new(0);
        let mut seen = 0;
        let r = Ordered::new(4).ahead(6).run(
            (0..).inspect(|_| {
                pulled.fetch_add(1, Ordering::SeqCst);
            }),
            |_| 1,
            |i: u64| {
                worked.fetch_add(1, Ordering::SeqCst);
                Ok(i)
            },
            |_| {
                seen += 1;
                if seen == 3 {
                    Err(Error::BrokenPipe)
                } else {
                    Ok(())
                }
            },
        );
        assert!(matches!(r, Err(Error::BrokenPipe)));
        assert_eq!(seen, 3);
        assert!(pulled.load(Ordering::SeqCst) <= 3 + 6);
        assert!(worked.load(Ordering::SeqCst) <= 3 + 6);
    }

    /// A failing item ends the run in its turn: everything before it is consumed, nothing
    /// after it.
    #[test]
    fn errors_come_back_in_order() {
        let mut got = Vec::new();
        let r = Ordered::new(4).ahead(8).run(
            0..100u64,
            |_| 1,
            |i| {
                if i == 40 || i == 45 {
                    return Err(Error::format(format!("item {i} failed")));
                }
                // Later items finish first.
                std::thread::sleep(Duration::from_micros((100 - i) * 20));
                Ok(i)
            },
            |i| {
                got.push(i);
                Ok(())
            },
        );
        assert_eq!(r.unwrap_err().to_string(), "item 40 failed");
        assert_eq!(got, (0..40).collect::<Vec<_>>());
    }

    /// A panicking worker becomes an error in its turn, never a hang or a lost item.
    #[test]
    fn a_panic_becomes_an_error() {
        let mut got = Vec::new();
        let r = Ordered::new(3).run(
            0..50u64,
            |_| 1,
            |i| {
                if i == 17 {
                    panic!("boom at {i}");
                }
                Ok(i)
            },
            |i| {
                got.push(i);
                Ok(())
            },
        );
        let e = r.unwrap_err().to_string();
        assert!(e.contains("panicked") && e.contains("boom at 17"), "{e}");
        assert_eq!(got, (0..17).collect::<Vec<_>>());
    }

    /// Every worker panicking still ends the run.
    #[test]
    fn all_workers_panicking_ends_the_run() {
        let r = Ordered::new(2).run(0..10u64, |_| 1, |_| -> Result<u64> { panic!("always") }, |_| Ok(()));
        assert!(r.is_err());
    }

    /// An empty input and a single worker are ordinary cases.
    #[test]
    fn empty_input_and_one_worker() {
        let mut n = 0;
        Ordered::new(0).run(std::iter::empty::<u8>(), |_| 1, Ok, |_| Ok(())).unwrap();
        Ordered::new(1)
            .run(
                0..10,
                |_| 1,
                Ok,
                |_| {
                    n += 1;
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(n, 10);
    }
}
