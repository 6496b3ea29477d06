//! Progress for the person and for the wrappers: a bar on stderr (indicatif) drawn by the one
//! stage that knows the work, and restic's `--json` messages.
//!
//! The policy. A bar is drawn only on a terminal, and by default only by the last stage of a
//! pipeline (stdout not a pipe): `unpack | verify` on a terminal would otherwise draw two bars
//! over each other. `--progress` draws anyway (plain lines, no control characters, when
//! stderr is not a terminal), `--no-progress` and `--quiet` never; `--json` alone draws
//! nothing, as restic does. Updates come at `RESTIC_PROGRESS_FPS` per second (10 unless
//! set, at most 60), as restic's do, for the bar and for JSON `status` lines alike.
//!
//! The totals come through the stream (`totals` records from `walk` and `chunk`), so a
//! stream without them still works: the bar then counts without a length.
//!
//! Counting is a handful of atomic additions; a ticker thread turns the counters into a bar
//! update or a status line at the chosen rate, so the hot paths never format or write.

mod json;

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{JsonArgs, ProgressArgs};
use crate::error::{Error, IoContext, Result};
use crate::record::{ProgressRecord, Record, SummaryRecord, TotalsRecord, Writer};

pub use json::{BackupSummary, ErrorMessage, ExitError};

/// What a stage reports on: restic's restore or backup messages, or `verify`'s checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Restore,
    Backup,
    Verify,
}

/// Where the JSON messages go.
enum Sink {
    /// `--json`: status and summary on stdout, error and exit_error on stderr (restic's split).
    Stdout,
    /// `--json-file`: every message in the file.
    File(Mutex<File>),
}

/// Where `exit_error` goes once a tool has parsed its flags (set by [`Progress::new`]).
static EXIT_SINK: OnceLock<Arc<Sink>> = OnceLock::new();

/// Whether this stage draws: the policy above, for flags `args`, `--quiet` and `--json`.
pub fn draws(args: &ProgressArgs, quiet: bool, json: bool) -> bool {
    if args.no_progress || quiet {
        return false;
    }
    if args.progress {
        return true;
    }
    if json || !std::io::stderr().is_terminal() {
        return false;
    }
    // The last stage draws: a stage whose stdout feeds the next one leaves the bar to it.
    !crate::sys::stdout_is_pipe()
}

/// The interval between updates: `RESTIC_PROGRESS_FPS` frames per second (at most 60), or 10.
pub fn interval() -> Duration {
    let fps = std::env::var("RESTIC_PROGRESS_FPS").ok().and_then(|v| v.trim().parse::<f64>().ok());
    match fps {
        Some(f) if f > 0.0 && f.is_finite() => Duration::from_secs_f64(1.0 / f.min(60.0)),
        _ => Duration::from_millis(100),
    }
}

/// The counters, shared by the stage's threads and the ticker.
#[derive(Default)]
struct Counters {
    /// Whether a `totals` record arrived.
    known: AtomicBool,
    total_nodes: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    /// Items (restore: nodes; backup and verify: files) and bytes done.
    items: AtomicU64,
    bytes: AtomicU64,
    skipped_items: AtomicU64,
    skipped_bytes: AtomicU64,
    /// Backup: bytes added to the repository.
    added: AtomicU64,
    errors: AtomicU64,
}

struct Shared {
    kind: Kind,
    start: Instant,
    c: Counters,
    bar: Option<ProgressBar>,
    /// `--progress` on a non-terminal: a plain line per update instead of a bar.
    plain: bool,
    /// The bar is drawn on the terminal stdout is: records written there would tear it.
    over_stdout: bool,
    json: Option<Arc<Sink>>,
    /// Whether `status` messages go with the JSON ones (not with `--quiet`, as in restic).
    json_status: bool,
}

/// A stage's progress: counters, the bar, the JSON messages. Cheap to share (`Clone`).
#[derive(Clone)]
pub struct Progress {
    s: Arc<Shared>,
    ticker: Arc<Mutex<Option<Ticker>>>,
}

/// The thread that updates the bar and writes `status` lines, and the sender whose drop
/// stops it.
type Ticker = (mpsc::Sender<()>, std::thread::JoinHandle<()>);

impl Progress {
    /// Sets up progress for a stage from its flags; `quiet` is the tool's own `--quiet`.
    pub fn new(kind: Kind, args: &ProgressArgs, json: &JsonArgs, quiet: bool) -> Result<Progress> {
        let sink = match &json.json_file {
            Some(p) => Some(Arc::new(Sink::File(Mutex::new(
                File::create(p).ctx(format!("--json-file {}", p.display()))?,
            )))),
            None if json.json => Some(Arc::new(Sink::Stdout)),
            None => None,
        };
        if let Some(s) = &sink {
            let _ = EXIT_SINK.set(s.clone());
        }
        let draw = draws(args, quiet, json.json);
        let terminal = std::io::stderr().is_terminal();
        let every = interval();
        let bar = (draw && terminal).then(|| {
            let hz = (1.0 / every.as_secs_f64()).round().clamp(1.0, 60.0) as u8;
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(hz));
            b.set_style(style(kind, false));
            b
        });
        let s = Arc::new(Shared {
            kind,
            start: Instant::now(),
            c: Counters::default(),
            over_stdout: bar.is_some() && std::io::stdout().is_terminal(),
            bar,
            plain: draw && !terminal,
            json: sink,
            // restic's --quiet --json: the summary alone, no status lines.
            json_status: !quiet,
        });
        Ok(Progress { s, ticker: Arc::new(Mutex::new(None)) })
    }

    /// Starts the updates, once the work begins (not while a key is being derived): from
    /// then on the bar moves and `status` lines come. Later calls do nothing.
    pub fn start(&self) {
        let s = &self.s;
        let mut ticker = self.ticker.lock().unwrap_or_else(|e| e.into_inner());
        if ticker.is_some() || !(s.bar.is_some() || s.plain || s.json.is_some()) {
            return;
        }
        let (stop, wait) = mpsc::channel::<()>();
        let s = s.clone();
        let every = interval();
        let h = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(every) {
                s.update();
            }
        });
        *ticker = Some((stop, h));
    }

    /// A stage that reports nothing (tests, `--list`).
    pub fn none(kind: Kind) -> Progress {
        let s = Shared {
            kind,
            start: Instant::now(),
            c: Counters::default(),
            bar: None,
            plain: false,
            over_stdout: false,
            json: None,
            json_status: false,
        };
        Progress { s: Arc::new(s), ticker: Arc::new(Mutex::new(None)) }
    }

    /// Whether `--json` took stdout: the stage's records then go nowhere.
    pub fn json_on_stdout(&self) -> bool {
        matches!(self.s.json.as_deref(), Some(Sink::Stdout))
    }

    /// The totals of the stream, from its `totals` record.
    pub fn totals(&self, t: &TotalsRecord) {
        let c = &self.s.c;
        c.total_nodes.store(t.nodes, Relaxed);
        c.total_files.store(t.files, Relaxed);
        c.total_bytes.store(t.bytes, Relaxed);
        c.known.store(true, Relaxed);
        if let Some(b) = &self.s.bar {
            b.set_style(style(self.s.kind, true));
        }
    }

    /// One item done (a restored node, a checked file) and its bytes.
    pub fn done(&self, bytes: u64) {
        self.s.c.items.fetch_add(1, Relaxed);
        self.s.c.bytes.fetch_add(bytes, Relaxed);
    }

    /// One item left as it was (restore `--resume`: already there), and its bytes.
    pub fn skipped(&self, bytes: u64) {
        self.s.c.skipped_items.fetch_add(1, Relaxed);
        self.s.c.skipped_bytes.fetch_add(bytes, Relaxed);
    }

    /// Restore: bytes of a file written, as they are written (restic counts them so, and a
    /// large file's bar moves while it is being restored).
    pub fn wrote(&self, bytes: u64) {
        self.s.c.bytes.fetch_add(bytes, Relaxed);
    }

    /// Restore: a file failed after [`Progress::wrote`] counted `bytes` of it: they are not
    /// restored after all.
    pub fn unwrote(&self, bytes: u64) {
        self.s.c.bytes.fetch_sub(bytes, Relaxed);
    }

    /// Restore: a file whose bytes [`Progress::wrote`] counted is restored.
    pub fn file_written(&self) {
        self.s.c.items.fetch_add(1, Relaxed);
    }

    /// Restore: a node is restored (`kept`: it was already there, `--resume`). A file's
    /// bytes are its blobs' plaintext; another name of a file counts none, as in restic.
    pub fn restored(&self, rec: &crate::record::NodeRecord, kept: bool) {
        let bytes = match rec.hardlink {
            Some(_) => 0,
            None => rec.blobs.iter().map(|b| b.plain_len()).sum(),
        };
        match kept {
            true => self.skipped(bytes),
            false => self.done(bytes),
        }
    }

    /// Backup: where `pack` is, from its `progress` records.
    pub fn backup(&self, p: &ProgressRecord) {
        let c = &self.s.c;
        c.items.store(p.files, Relaxed);
        c.bytes.store(p.bytes, Relaxed);
        c.added.store(p.added, Relaxed);
    }

    /// An item that failed: restic's `error` message with `--json` or `--json-file`, one
    /// line `tool: item: why` on stderr otherwise (and with `--json-file`), above the bar.
    pub fn error(&self, tool: &str, item: &str, why: &str) {
        self.s.c.errors.fetch_add(1, Relaxed);
        let during = match self.s.kind {
            Kind::Restore => "restore",
            Kind::Backup => "archival",
            Kind::Verify => "verify",
        };
        let msg = ErrorMessage::new(why, during, item);
        let plain = || crate::cli::warn(tool, format!("{item}: {why}"));
        match self.s.json.as_deref() {
            Some(Sink::Stdout) => self.s.suspend(|| write_line(&mut std::io::stderr(), &msg)),
            Some(sink @ Sink::File(_)) => {
                sink.message(&msg);
                self.s.suspend(plain);
            }
            None => self.s.suspend(plain),
        }
    }

    /// Prints a line on stderr without tearing the bar.
    pub fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        self.s.suspend(f)
    }

    /// Writes `rec` to `out`, stdout, without tearing the bar: where the bar and stdout share
    /// a terminal, the record is written whole and flushed with the bar cleared (it is drawn
    /// again after); elsewhere it goes through `out`'s buffer as any record does.
    pub fn write<R: Record>(&self, out: &mut Writer<impl Write>, rec: &R) -> Result<()> {
        match self.s.over_stdout {
            true => self.s.suspend(|| out.write(rec).and_then(|()| out.flush())),
            false => out.write(rec),
        }
    }

    /// Sends on what `out` holds (the header, when the input pauses before the first record)
    /// the same way: written to a shared terminal while the bar was on it, it was glued to
    /// the bar's line.
    pub fn flush(&self, out: &mut Writer<impl Write>) -> Result<()> {
        match self.s.over_stdout {
            true => self.s.suspend(|| out.flush()),
            false => out.flush(),
        }
    }

    /// Ends `out`'s stream (see [`Writer::end`]) the same way.
    pub fn end(&self, out: &mut Writer<impl Write>) -> Result<()> {
        self.s.suspend(|| out.end())
    }

    /// Stops the ticker and leaves the bar in its final state.
    fn stop(&self) {
        self.start();
        let t = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop, h)) = t {
            drop(stop);
            let _ = h.join();
            self.s.update_bar();
            if let Some(b) = &self.s.bar {
                b.finish();
                end_line(b);
            }
            if self.s.plain {
                self.s.plain_line();
            }
        }
    }

    /// The end of a restore or of a verify: the final bar, and with `--json` restic's restore
    /// `summary`.
    pub fn finish(&self) -> Result<()> {
        self.stop();
        if let Some(sink) = &self.s.json {
            if self.s.kind == Kind::Restore {
                // The last status says where it ended (percent_done 1 when all went well).
                if self.s.json_status {
                    sink.status(&json::RestoreStatus::status(&self.s))?;
                }
                sink.status(&json::RestoreStatus::summary(&self.s))?;
            }
        }
        Ok(())
    }

    /// The end of a backup: the final bar, and with `--json` restic's backup `summary`.
    pub fn finish_backup(&self, s: &SummaryRecord) -> Result<()> {
        self.stop();
        if let Some(sink) = &self.s.json {
            if self.s.json_status {
                sink.status(&json::BackupStatus::new(&self.s))?;
            }
            sink.status(&BackupSummary::from(s))?;
        }
        Ok(())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A stage that fails leaves the bar where it was, not a cleared line.
        if let Some(b) = &self.bar {
            if !b.is_finished() {
                b.abandon();
                end_line(b);
            }
        }
    }
}

/// Ends the line of a bar left on the screen: indicatif leaves the cursor after its last
/// frame, where the shell's prompt, a summary or an error message would be glued to it.
fn end_line(b: &ProgressBar) {
    if !b.is_hidden() {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"\n");
    }
}

impl Shared {
    fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    fn totals_known(&self) -> bool {
        self.c.known.load(Relaxed)
    }

    /// The total of items: nodes for a restore, files otherwise.
    fn total_items(&self) -> u64 {
        match self.kind {
            Kind::Restore => self.c.total_nodes.load(Relaxed),
            _ => self.c.total_files.load(Relaxed),
        }
    }

    fn update(&self) {
        self.update_bar();
        if self.plain {
            self.plain_line();
        }
        if let Some(sink) = self.json.as_ref().filter(|_| self.json_status) {
            let _ = match self.kind {
                Kind::Restore => sink.status(&json::RestoreStatus::status(self)),
                Kind::Backup => sink.status(&json::BackupStatus::new(self)),
                Kind::Verify => Ok(()),
            };
        }
    }

    fn update_bar(&self) {
        let Some(b) = &self.bar else { return };
        if self.totals_known() {
            b.set_length(self.c.total_bytes.load(Relaxed));
        }
        b.set_position(self.c.bytes.load(Relaxed) + self.c.skipped_bytes.load(Relaxed));
        b.set_message(self.counts_text());
    }

    /// "files 3/10" and what else the kind counts, for the bar and the plain lines.
    fn counts_text(&self) -> String {
        let c = &self.c;
        let done = c.items.load(Relaxed) + c.skipped_items.load(Relaxed);
        // restic's word, though a restore counts directories and links among its "files".
        let mut t = match self.totals_known() {
            true => format!("files {done}/{}", self.total_items()),
            false => format!("files {done}"),
        };
        if self.kind == Kind::Backup {
            t.push_str(&format!(", added {}", indicatif::BinaryBytes(c.added.load(Relaxed))));
        }
        let errors = c.errors.load(Relaxed);
        if errors > 0 {
            t.push_str(&format!(", {errors} errors"));
        }
        t
    }

    /// `--progress` on a non-terminal: one line, no control characters.
    fn plain_line(&self) {
        let c = &self.c;
        let bytes = c.bytes.load(Relaxed) + c.skipped_bytes.load(Relaxed);
        let mut line = format!("[{}] {}", clock(self.start.elapsed()), indicatif::BinaryBytes(bytes));
        if self.totals_known() {
            let total = c.total_bytes.load(Relaxed);
            line.push_str(&format!(
                " / {} ({:.1}%)",
                indicatif::BinaryBytes(total),
                100.0 * fraction(bytes, total)
            ));
        }
        line.push_str(&format!(", {}", self.counts_text()));
        crate::cli::stderr_line(&line);
    }
}

/// done / total, 1 when there is nothing to do.
fn fraction(done: u64, total: u64) -> f64 {
    if total == 0 {
        return 1.0;
    }
    (done as f64 / total as f64).min(1.0)
}

/// h:mm:ss or m:ss, as restic formats durations.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", (s / 60) % 60, s % 60),
    }
}

/// The bar's look: with a length once the totals are known, a counter before.
fn style(kind: Kind, known: bool) -> ProgressStyle {
    let verb = match kind {
        Kind::Restore => "restoring",
        Kind::Backup => "backing up",
        Kind::Verify => "verifying",
    };
    let template = match known {
        true => format!(
            "[{{elapsed_precise}}] {verb} {{wide_bar}} {{percent}}% {{binary_bytes}}/{{binary_total_bytes}} \
             {{binary_bytes_per_sec}} ETA {{eta}} {{msg}}"
        ),
        false => format!("[{{elapsed_precise}}] {verb} {{binary_bytes}} {{binary_bytes_per_sec}} {{msg}}"),
    };
    ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Sink {
    /// Writes a status or summary message where it belongs.
    fn status<T: serde::Serialize>(&self, msg: &T) -> Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                write_line(&mut out, msg);
                out.flush().map_err(|e| match e.kind() {
                    std::io::ErrorKind::BrokenPipe => Error::BrokenPipe,
                    _ => Error::io("stdout", e),
                })
            }
            Sink::File(_) => {
                self.message(msg);
                Ok(())
            }
        }
    }

    /// Writes an error or exit_error message: into the file, or on stderr.
    fn message<T: serde::Serialize>(&self, msg: &T) {
        match self {
            Sink::Stdout => write_line(&mut std::io::stderr(), msg),
            Sink::File(f) => write_line(&mut *f.lock().unwrap_or_else(|e| e.into_inner()), msg),
        }
    }
}

/// One JSON message and a newline; failures are ignored (stdout's show up at its flush).
fn write_line<T: serde::Serialize>(out: &mut impl Write, msg: &T) {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    let _ = out.write_all(&line);
}

/// How a tool ends on an error: restic's `exit_error` message with `--json` (on stderr, in
/// place of the plain line) or `--json-file` (in the file, besides the plain line), and the
/// plain line `tool: message` otherwise.
pub fn exit_error(tool: &str, code: i32, msg: &dyn std::fmt::Display) {
    let text = format!("{tool}: {msg}");
    match EXIT_SINK.get().map(|s| &**s) {
        Some(Sink::Stdout) => write_line(&mut std::io::stderr(), &ExitError::new(code, &text)),
        Some(sink @ Sink::File(_)) => {
            sink.message(&ExitError::new(code, &text));
            crate::cli::warn(tool, msg);
        }
        None => crate::cli::warn(tool, msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_like_restic() {
        std::env::remove_var("RESTIC_PROGRESS_FPS");
        assert_eq!(interval(), Duration::from_millis(100));
        std::env::set_var("RESTIC_PROGRESS_FPS", "2");
        assert_eq!(interval(), Duration::from_millis(500));
        std::env::set_var("RESTIC_PROGRESS_FPS", "1000");
        assert_eq!(interval(), Duration::from_secs_f64(1.0 / 60.0));
        std::env::set_var("RESTIC_PROGRESS_FPS", "-1");
        assert_eq!(interval(), Duration::from_millis(100));
        std::env::remove_var("RESTIC_PROGRESS_FPS");
    }

    #[test]
    fn flags_decide() {
        let on = ProgressArgs { progress: true, no_progress: false };
        let off = ProgressArgs { progress: false, no_progress: true };
        assert!(draws(&on, false, true), "--progress draws even with --json");
        assert!(!draws(&on, true, false), "--quiet wins");
        assert!(!draws(&off, false, false));
    }

    #[test]
    fn clocks_and_fractions() {
        assert_eq!(clock(Duration::from_secs(65)), "1:05");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
        assert_eq!(fraction(0, 0), 1.0);
        assert_eq!(fraction(5, 10), 0.5);
        assert_eq!(fraction(12, 10), 1.0);
    }
}
