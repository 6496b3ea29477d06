//! What a stage owns outside itself (a lock in the repository, a temporary upload) is removed
//! when SIGINT, SIGTERM or SIGHUP ends it, so Ctrl-C never leaves a repository that
//! `restic check` refuses or a temporary pack that nothing ever deletes.
//!
//! A stage registers a clean-up when it creates such a thing and drops the returned guard
//! once the thing is gone or has its final name. A thread waits for the signals; on one it
//! runs every registered clean-up, says so in one line and exits with 128 + the signal's
//! number (130, 143, 129), as a shell reports a process the signal killed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

type Cleanup = Box<dyn FnOnce() + Send>;

static CLEANUPS: Mutex<BTreeMap<u64, Cleanup>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();
/// The signal received, set by the handler itself at once (the thread runs later).
static RECEIVED: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicUsize>> =
    std::sync::OnceLock::new();

/// What the line of an interrupted run adds for the person who runs it again.
static HINT: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Sets what the line of an interrupted run adds (from `; `): how to finish the work, where
/// running the same command again is not the whole answer. Set once; later calls do nothing.
pub fn hint_on_interrupt(hint: &'static str) {
    let _ = HINT.set(hint);
}

/// The hint set with [`hint_on_interrupt`], or "".
pub fn interrupt_hint() -> &'static str {
    HINT.get().copied().unwrap_or("")
}

/// What a stage leaves behind, for the line of an interrupted run (from `; `), asked when
/// the signal comes: the packs push stored so far, say.
type Left = Box<dyn Fn() -> String + Send>;
static LEFT: Mutex<Option<Left>> = Mutex::new(None);

/// Sets what the line of an interrupted run says stays behind (from `; `), worked out when
/// the signal comes. A later call replaces an earlier one.
pub fn left_on_interrupt(f: impl Fn() -> String + Send + 'static) {
    *LEFT.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
}

/// Held by the thread that ends an interrupted run, so that it ends once.
static ENDING: Mutex<()> = Mutex::new(());

/// Removes its clean-up from the list when dropped, without running it.
#[must_use = "the clean-up is forgotten as soon as the guard is dropped"]
pub struct Guard(u64);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut m) = CLEANUPS.lock() {
            // Gone once the signal came: the stage removed it itself on its way out (or gave
            // it its final name), which the line of the interrupted run counts as removed.
            if m.remove(&self.0).is_some() && received().is_some() {
                GONE_AFTER_SIGNAL.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// The things a stage held when the signal came that it let go of itself since.
static GONE_AFTER_SIGNAL: AtomicUsize = AtomicUsize::new(0);

/// Registers `f` to run if a signal ends the process before the guard is dropped. When a
/// signal has arrived already, `f` runs at once: the clean-up thread may have run the list
/// before this thing was made (another thread made it meanwhile), and would leave it behind.
pub fn on_interrupt(f: impl FnOnce() + Send + 'static) -> Guard {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut m = CLEANUPS.lock().unwrap_or_else(|p| p.into_inner());
    // The flag is set by the handler before the thread takes the list, and the list is taken
    // under this lock: either the thread will find `f`, or `f` runs here.
    if received().is_some() {
        drop(m);
        f();
        GONE_AFTER_SIGNAL.fetch_add(1, Ordering::SeqCst);
    } else {
        m.insert(n, Box::new(f));
    }
    Guard(n)
}

/// Starts the thread that turns SIGINT, SIGTERM and SIGHUP into clean-up and exit. Called
/// once per process by `cli::run`; later calls do nothing.
pub fn install(tool: &'static str) {
    INSTALL.call_once(|| {
        let flag = RECEIVED.get_or_init(Default::default);
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let _ = signal_hook::flag::register_usize(sig, flag.clone(), sig as usize);
        }
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            // Without the thread the default action still ends the process; only the
            // clean-up is lost, which the next run's stale-upload sweep takes care of.
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                end(tool, sig);
            }
        });
    });
}

/// Ends a run that signal `sig` interrupted: runs every clean-up, says so in one line
/// (`tool: interrupted by SIGINT; removed …; what stays; hint`) and exits with 128 + `sig`.
/// Both the signal's thread and a stage whose input the same Ctrl-C cut come here: the first
/// does it all, the other waits until the process is gone, so there is one line whichever
/// comes first, and no exit while a clean-up is half done.
pub fn end(tool: &str, sig: i32) -> ! {
    let _once = ENDING.lock().unwrap_or_else(|p| p.into_inner());
    let cleaned = run_cleanups() + GONE_AFTER_SIGNAL.load(Ordering::SeqCst);
    crate::progress::exit_error(tool, 128 + sig, &interrupted(sig, cleaned));
    std::process::exit(128 + sig)
}

/// The line of a run that `sig` interrupted, after `cleaned` clean-ups ran.
fn interrupted(sig: i32, cleaned: usize) -> String {
    let name = match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    };
    let removed = if cleaned > 0 { "; removed its lock and temporary files" } else { "" };
    let left = LEFT.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|f| f()).unwrap_or_default();
    format!("interrupted by {name}{removed}{left}{}", interrupt_hint())
}

/// The signal that is ending the process, if one arrived. A stage that fails because the
/// stage before it was killed by the same Ctrl-C exits with this signal's code rather than
/// reporting a cut stream.
pub fn received() -> Option<i32> {
    let n = RECEIVED.get()?.load(Ordering::SeqCst);
    (n != 0).then_some(n as i32)
}

/// Runs and forgets every registered clean-up, newest first; returns how many ran.
pub fn run_cleanups() -> usize {
    let all = match CLEANUPS.lock() {
        Ok(mut m) => std::mem::take(&mut *m),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    let n = all.len();
    for (_, f) in all.into_iter().rev() {
        f();
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn dropped_guards_do_not_run() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        drop(on_interrupt(move || r.store(true, Ordering::SeqCst)));
        let kept = Arc::new(AtomicBool::new(false));
        let k = kept.clone();
        let _g = on_interrupt(move || k.store(true, Ordering::SeqCst));
        run_cleanups();
        assert!(!ran.load(Ordering::SeqCst));
        assert!(kept.load(Ordering::SeqCst));
    }

    #[test]
    fn the_line_says_what_was_removed_and_what_stays() {
        assert_eq!(interrupted(SIGTERM, 0), "interrupted by SIGTERM");
        left_on_interrupt(|| "; 2 stay".into());
        assert_eq!(interrupted(SIGINT, 0), "interrupted by SIGINT; 2 stay");
        assert_eq!(
            interrupted(SIGHUP, 3),
            "interrupted by SIGHUP; removed its lock and temporary files; 2 stay"
        );
    }
}
