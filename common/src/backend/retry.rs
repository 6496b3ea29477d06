//! The one retry policy of every remote backend. A remote backend implements [`Remote`]: each
//! operation tried once, failures classed (see [`Class`]). [`Retrying`] turns it into a
//! [`Backend`]: transient failures are tried again with exponential backoff and jitter until a
//! total time limit, waiting longer when the server's `Retry-After` asks for it (never less);
//! a ranged read cut short resumes at the byte where the body stopped; uploads whose name
//! comes at the end are spooled to an unnamed temporary file and sent whole at `commit`, so a
//! failed send can be sent again. Tools never retry on their own.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Backend, Entry, FileType, Upload};
use crate::error::{Class, Error, IoContext, Result};

/// The environment variable that sets the total time limit of the retries of one operation,
/// in seconds (tests make it short; a flaky network may want it longer).
pub const LIMIT_ENV: &str = "SLUICE_RETRY_TIMEOUT";

/// Without `SLUICE_RETRY_TIMEOUT`: long enough to ride out a server restart, short enough that
/// a dead server is reported while someone is still looking.
const DEFAULT_LIMIT: Duration = Duration::from_secs(120);

/// A request body that can be sent again: bytes in memory, or `len` bytes of a file from
/// `start` (read by position, so every attempt starts from the same byte and one part of a
/// multipart upload is never held in memory).
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Bytes(&'a [u8]),
    File { file: &'a File, start: u64, len: u64 },
}

impl Body<'_> {
    /// The number of bytes sent.
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh reader from the first byte.
    pub fn reader(&self) -> Box<dyn Read + Send + '_> {
        match *self {
            Body::Bytes(b) => Box::new(b),
            Body::File { file, start, len } => Box::new(FileAt { f: file, pos: start, end: start + len }),
        }
    }
}

/// Reads `f` from `pos` to `end` by position, leaving the file offset alone.
struct FileAt<'a> {
    f: &'a File,
    pos: u64,
    end: u64,
}

impl Read for FileAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.f.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "spool file shorter than written"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Each operation of a remote backend, tried once. Not-found answers are `Error::Io` of kind
/// `NotFound` (see [`Error::remote`]); other failures carry their [`Class`].
pub trait Remote: Send + Sync + 'static {
    /// The location, redacted (no password).
    fn location(&self) -> &str;
    fn exists(&self, t: FileType, name: &str) -> Result<bool>;
    fn list(&self, t: FileType) -> Result<Vec<Entry>>;
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>>;
    /// Appends the `len` bytes at `offset` to `buf`. When the body stops early, what arrived
    /// stays appended and the error is transient, so the caller can ask for the rest.
    fn read_range_append(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<()>;
    fn size(&self, t: FileType, name: &str) -> Result<u64>;
    /// Stores `body` under its final name (the server makes it visible once complete).
    fn put(&self, t: FileType, name: &str, body: Body<'_>) -> Result<()>;
    fn remove(&self, t: FileType, name: &str) -> Result<()>;
    /// Creates the repository's layout on the server.
    fn create(&self) -> Result<()>;
    /// The server's way of storing a large file in parts, if it has one and wants it used.
    fn multipart(&self) -> Option<&dyn Multipart> {
        None
    }
}

/// A file stored in parts, each sent (and retried) on its own, made visible whole by
/// `complete` (S3's multipart upload). A large pack over a flaky link then costs one part
/// per failure, not the whole pack.
pub trait Multipart: Send + Sync {
    /// Uploads of more than this many bytes go in parts.
    fn threshold(&self) -> u64;
    /// The size of every part but the last.
    fn part_size(&self) -> u64;
    /// Starts an upload of `name`; returns its id.
    fn start(&self, t: FileType, name: &str) -> Result<String>;
    /// Sends part `number` (from 1); returns what `complete` needs of it (S3's ETag).
    fn put_part(&self, t: FileType, name: &str, upload: &str, number: u32, body: Body<'_>) -> Result<String>;
    /// Joins the parts, in order, into the file `name` of `size` bytes.
    fn complete(&self, t: FileType, name: &str, upload: &str, parts: &[String], size: u64) -> Result<()>;
    /// Drops the upload and every part sent, so that none lingers (and is paid for).
    fn abort(&self, t: FileType, name: &str, upload: &str) -> Result<()>;
    /// The ids of the unfinished uploads of `name`.
    fn uploads(&self, t: FileType, name: &str) -> Result<Vec<String>>;
    /// Every unfinished upload of a pack in the repository, with its age when the server
    /// tells it.
    fn pack_uploads(&self) -> Result<Vec<Unfinished>> {
        Ok(Vec::new())
    }
}

/// An upload started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The pack's name.
    pub name: String,
    pub id: String,
    /// How long ago it was started; `None` if the server did not say (or says the future).
    pub age: Option<Duration>,
}

/// Unfinished uploads at least this old are a dead run's: a live one sends its parts one
/// after another, each retried for at most a [`Policy`]'s limit, so even a 128 MiB pack on a
/// slow link is done within hours. (As for a local backend's temporary files of another
/// host.)
pub const STALE_UPLOAD: Duration = Duration::from_secs(24 * 3600);

/// Which of `uploads` to abort: those known to be at least [`STALE_UPLOAD`] old. Without an
/// age, an upload could be a live run's, and is left alone.
pub fn stale(uploads: Vec<Unfinished>) -> Vec<Unfinished> {
    uploads.into_iter().filter(|u| u.age.is_some_and(|a| a >= STALE_UPLOAD)).collect()
}

/// How long to keep trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Total time limit of one operation, retries and waits included.
    pub limit: Duration,
    /// The wait after the first failure; it doubles after each further one.
    pub first: Duration,
    /// No single wait is longer than this (except one the server asked for, which is waited
    /// when longer than the backoff and within the limit).
    pub max_wait: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { limit: DEFAULT_LIMIT, first: Duration::from_millis(250), max_wait: Duration::from_secs(15) }
    }
}

impl Policy {
    /// The default policy with the limit from `SLUICE_RETRY_TIMEOUT` (seconds, fractions
    /// allowed), if set.
    pub fn from_env() -> Result<Policy> {
        let mut p = Policy::default();
        if let Some(v) = std::env::var_os(LIMIT_ENV) {
            let s = v.to_string_lossy();
            let secs: f64 = s
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| Error::Usage(format!("{LIMIT_ENV}={s}: not a number of seconds")))?;
            p.limit = Duration::from_secs_f64(secs);
        }
        Ok(p)
    }

    /// The wait before try `n + 1` after `n` failures, before jitter: `first`, doubling,
    /// capped at `max_wait`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << doublings).min(self.max_wait)
    }

    /// Runs `op` until it succeeds, fails for good, or the time limit would pass during the
    /// next wait. `what` names the operation in the message of a final transient failure.
    pub fn run<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let mut failures = 0u32;
        loop {
            let e = match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.class() == Some(Class::Transient) => e,
                Err(e) => return Err(e),
            };
            failures += 1;
            // The server's wait is a floor: `Retry-After: 0` or a date past must not turn
            // the backoff into a hot loop (restic never waits less than its own either).
            let backoff = jitter(self.backoff(failures), rand::random());
            let wait = retry_after(&e).map_or(backoff, |asked| asked.max(backoff));
            let elapsed = start.elapsed();
            if elapsed + wait > self.limit {
                return Err(gave_up(e, failures, elapsed));
            }
            std::thread::sleep(wait);
        }
    }
}

/// Spreads waits between half and all of `d`, so clients that failed together do not come
/// back together; `r` is uniform in [0, 1).
pub fn jitter(d: Duration, r: f64) -> Duration {
    d.mul_f64(0.5 + 0.5 * r.clamp(0.0, 1.0))
}

fn retry_after(e: &Error) -> Option<Duration> {
    match e {
        Error::Backend(r) => r.retry_after,
        _ => None,
    }
}

fn gave_up(e: Error, tries: u32, elapsed: Duration) -> Error {
    match e {
        Error::Backend(mut r) => {
            let s = if tries == 1 { "" } else { "s" };
            r.msg = format!("{} (gave up after {tries} attempt{s} in {:.1}s)", r.msg, elapsed.as_secs_f64());
            Error::Backend(r)
        }
        other => other,
    }
}

/// Parses a `Retry-After` value: seconds, or an HTTP date (IMF-fixdate, `Sun, 06 Nov 1994
/// 08:49:37 GMT`) taken relative to `now`. A date in the past means no wait.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = UNIX_EPOCH + Duration::from_secs(parse_http_date(v)?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Seconds since the epoch of an IMF-fixdate.
fn parse_http_date(v: &str) -> Option<u64> {
    let mut it = v.split_ascii_whitespace();
    let (_wday, day, mon, year, time, gmt) =
        (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if gmt != "GMT" || it.next().is_some() {
        return None;
    }
    let day: u64 = day.parse().ok()?;
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mon = months.iter().position(|m| *m == mon)? as u64 + 1;
    let year: u64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, mon, day) * 86400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (year >= 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Where to ask again after `got` bytes of the `len` at `offset` arrived: the offset and
/// length of the rest.
pub fn resume(offset: u64, len: u64, got: u64) -> (u64, u64) {
    let got = got.min(len);
    (offset + got, len - got)
}

/// A [`Remote`] with retries: the [`Backend`] every remote repository is used through.
pub struct Retrying<R: Remote> {
    inner: Arc<R>,
    policy: Policy,
}

impl<R: Remote> Retrying<R> {
    pub fn new(inner: R, policy: Policy) -> Retrying<R> {
        Retrying { inner: Arc::new(inner), policy }
    }
}

impl<R: Remote> Backend for Retrying<R> {
    fn location(&self) -> &str {
        self.inner.location()
    }

    fn exists(&self, t: FileType, name: &str) -> Result<bool> {
        self.policy.run(|| self.inner.exists(t, name))
    }

    fn list(&self, t: FileType) -> Result<Vec<Entry>> {
        self.policy.run(|| self.inner.list(t))
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        self.policy.run(|| self.inner.read(t, name))
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        self.policy.run(|| {
            let (off, rest) = resume(offset, len, buf.len() as u64);
            self.inner.read_range_append(t, name, off, rest, buf)
        })
    }

    fn size(&self, t: FileType, name: &str) -> Result<u64> {
        self.policy.run(|| self.inner.size(t, name))
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        self.policy.run(|| self.inner.put(t, name, Body::Bytes(data)))
    }

    fn remove(&self, t: FileType, name: &str) -> Result<()> {
        match self.policy.run(|| self.inner.remove(t, name)) {
            // As for a local file: gone is gone (and a retried DELETE may find it gone).
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    fn upload(&self, t: FileType) -> Result<Box<dyn Upload>> {
        // Unnamed (O_TMPFILE, or unlinked at once): it disappears with the process on every
        // path, Ctrl-C and kill -9 included, so nothing needs cleaning up.
        let f = tempfile::tempfile().ctx("temporary file for an upload")?;
        Ok(Box::new(Spool {
            out: BufWriter::with_capacity(1 << 20, f),
            written: 0,
            t,
            inner: self.inner.clone(),
            policy: self.policy,
        }))
    }

    fn create(&self) -> Result<()> {
        if self.exists(FileType::Config, "")? {
            return Err(Error::Usage(format!(
                "repository {} already exists (it has a config file)",
                self.location()
            )));
        }
        self.policy.run(|| self.inner.create())
    }

    /// A multipart upload of a run killed outright (`kill -9`, a crash) keeps its parts on
    /// the server, stored and paid for, until aborted: the stale ones are aborted here.
    fn remove_stale_uploads(&self) -> Result<usize> {
        let Some(m) = self.inner.multipart() else { return Ok(0) };
        // Best effort, and briefly: a server without ListMultipartUploads (s3rver answers
        // 5xx) must not hold up every backup for the whole retry limit.
        let brief = Policy { limit: self.policy.limit.min(Duration::from_secs(5)), ..self.policy };
        let stale = stale(brief.run(|| m.pack_uploads())?);
        for u in &stale {
            brief.run(|| m.abort(FileType::Pack, &u.name, &u.id))?;
        }
        Ok(stale.len())
    }
}

/// An upload spooled to local disk, memory bounded by its buffer, sent at `commit`.
struct Spool<R: Remote> {
    out: BufWriter<File>,
    written: u64,
    t: FileType,
    inner: Arc<R>,
    policy: Policy,
}

impl<R: Remote> Write for Spool<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<R: Remote> Upload for Spool<R> {
    fn written(&self) -> u64 {
        self.written
    }

    fn commit(self: Box<Self>, name: &str) -> Result<()> {
        let Spool { out, written, t, inner, policy } = *self;
        let f = out.into_inner().map_err(|e| Error::io("temporary file for an upload", e.into_error()))?;
        match inner.multipart() {
            Some(m) if written > m.threshold() => {
                // One attempt: the process is on its way out. Without it, the parts sent stay
                // stored (and paid for) until a later run finds the upload a day old.
                let abort_on_signal = |upload: &str| {
                    let (inner, name, upload) = (inner.clone(), name.to_string(), upload.to_string());
                    crate::signal::on_interrupt(move || {
                        if let Some(m) = inner.multipart() {
                            let _ = m.abort(t, &name, &upload);
                        }
                    })
                };
                in_parts(m, &policy, t, name, &f, written, &abort_on_signal)
            }
            _ => policy.run(|| inner.put(t, name, Body::File { file: &f, start: 0, len: written })),
        }
    }
}

/// Sends the first `size` bytes of `f` as a multipart upload, each step retried on its own;
/// on any failure the upload is aborted so that no part is left behind on the server, and
/// so it is when SIGINT, SIGTERM or SIGHUP ends the process (`abort_on_signal` registers
/// that for an upload id; the guard it returns is kept until the upload is over).
fn in_parts(
    m: &dyn Multipart,
    policy: &Policy,
    t: FileType,
    name: &str,
    f: &File,
    size: u64,
    abort_on_signal: &dyn Fn(&str) -> crate::signal::Guard,
) -> Result<()> {
    let mut starts = 0;
    let upload = policy.run(|| {
        starts += 1;
        m.start(t, name)
    })?;
    let _on_signal = abort_on_signal(&upload);
    let part = m.part_size().max(1);
    let sent = (|| {
        let mut etags = Vec::new();
        let mut start = 0;
        while start < size {
            let len = part.min(size - start);
            let number = etags.len() as u32 + 1;
            let body = Body::File { file: f, start, len };
            etags.push(policy.run(|| m.put_part(t, name, &upload, number, body))?);
            start += len;
        }
        policy.run(|| m.complete(t, name, &upload, &etags, size))
    })();
    if sent.is_err() {
        // Best effort, and briefly: the failure being reported is the one that matters, and a
        // server that is gone for good should not double the wait for it.
        let brief = Policy { limit: policy.limit.min(Duration::from_secs(10)), ..*policy };
        let _ = brief.run(|| m.abort(t, name, &upload));
    }
    if starts > 1 {
        // A start whose answer was lost made an upload nobody knows the id of: find it.
        let brief = Policy { limit: policy.limit.min(Duration::from_secs(10)), ..*policy };
        if let Ok(ids) = brief.run(|| m.uploads(t, name)) {
            for id in ids.iter().filter(|id| **id != upload) {
                let _ = brief.run(|| m.abort(t, name, id));
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    /// What `in_parts` registers for a signal, in tests that send none.
    fn no_signal(_: &str) -> crate::signal::Guard {
        crate::signal::on_interrupt(|| {})
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let p = Policy {
            limit: Duration::from_secs(60),
            first: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
        };
        let ms: Vec<u128> = (1..=6).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(1));
        assert_eq!(jitter(Duration::from_secs(2), 0.0), Duration::from_secs(1));
        assert_eq!(jitter(Duration::from_secs(2), 1.0), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784111777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"), Some(951825600));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn resume_asks_for_the_rest() {
        assert_eq!(resume(1000, 500, 0), (1000, 500));
        assert_eq!(resume(1000, 500, 123), (1123, 377));
        assert_eq!(resume(1000, 500, 500), (1500, 0));
        assert_eq!(resume(1000, 500, 900), (1500, 0));
    }

    /// A remote whose ranged reads deliver at most `cut` bytes before failing transiently.
    struct Flaky {
        data: Vec<u8>,
        cut: usize,
        calls: AtomicU32,
        asked: Mutex<Vec<(u64, u64)>>,
    }

    impl Remote for Flaky {
        fn location(&self) -> &str {
            "flaky:"
        }
        fn exists(&self, _: FileType, _: &str) -> Result<bool> {
            Err(Error::remote(Class::Transient, Some(503), "busy"))
        }
        fn list(&self, _: FileType) -> Result<Vec<Entry>> {
            Err(Error::remote(Class::Permanent, Some(403), "forbidden"))
        }
        fn read(&self, _: FileType, _: &str) -> Result<Vec<u8>> {
            Err(Error::remote(Class::NotFound, Some(404), "gone"))
        }
        fn read_range_append(
            &self,
            _: FileType,
            _: &str,
            offset: u64,
            len: u64,
            buf: &mut Vec<u8>,
        ) -> Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.asked.lock().unwrap().push((offset, len));
            let n = (len as usize).min(self.cut);
            buf.extend_from_slice(&self.data[offset as usize..offset as usize + n]);
            if n < len as usize {
                return Err(Error::remote(Class::Transient, None, "body cut short"));
            }
            Ok(())
        }
        fn size(&self, _: FileType, _: &str) -> Result<u64> {
            Ok(self.data.len() as u64)
        }
        fn put(&self, _: FileType, _: &str, _: Body<'_>) -> Result<()> {
            Ok(())
        }
        fn remove(&self, _: FileType, _: &str) -> Result<()> {
            Err(Error::remote(Class::NotFound, Some(404), "gone"))
        }
        fn create(&self) -> Result<()> {
            Ok(())
        }
    }

    fn quick() -> Policy {
        Policy {
            limit: Duration::from_millis(300),
            first: Duration::from_millis(1),
            max_wait: Duration::from_millis(5),
        }
    }

    #[test]
    fn cut_ranges_resume_where_they_stopped() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let b = Retrying::new(
            Flaky { data: data.clone(), cut: 64, calls: 0.into(), asked: Mutex::default() },
            quick(),
        );
        let mut buf = vec![9; 7];
        b.read_range(FileType::Pack, "p", 100, 200, &mut buf).unwrap();
        assert_eq!(buf, &data[100..300]);
        let asked = b.inner.asked.lock().unwrap().clone();
        assert_eq!(asked, [(100, 200), (164, 136), (228, 72), (292, 8)]);
    }

    #[test]
    fn classes_decide_what_is_retried() {
        let b =
            Retrying::new(Flaky { data: vec![], cut: 0, calls: 0.into(), asked: Mutex::default() }, quick());
        let t0 = Instant::now();
        let e = b.exists(FileType::Config, "").unwrap_err();
        assert_eq!(e.class(), Some(Class::Transient));
        assert!(e.to_string().starts_with("busy (gave up after "), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert_eq!(b.list(FileType::Key).unwrap_err().status(), Some(403));
        assert!(b.read(FileType::Key, "k").unwrap_err().is_not_found());
        b.remove(FileType::Lock, "l").unwrap();
    }

    fn busy(after_ms: u64) -> Error {
        let mut e = Error::remote(Class::Transient, Some(503), "busy");
        if let Error::Backend(r) = &mut e {
            r.retry_after = Some(Duration::from_millis(after_ms));
        }
        e
    }

    #[test]
    fn retry_after_sets_the_wait() {
        let p = Policy {
            limit: Duration::from_secs(5),
            first: Duration::from_millis(1),
            max_wait: Duration::from_millis(1),
        };
        let mut tries = 0;
        let t0 = Instant::now();
        let v = p.run(|| {
            tries += 1;
            if tries < 3 {
                Err(busy(100))
            } else {
                Ok(tries)
            }
        });
        assert_eq!(v.unwrap(), 3);
        assert!(t0.elapsed() >= Duration::from_millis(200), "{:?}", t0.elapsed());

        // A wait past the limit is not waited: the failure is reported at once.
        let t0 = Instant::now();
        let e = p.run(|| -> Result<()> { Err(busy(60_000)) }).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(e.to_string(), "busy (gave up after 1 attempt in 0.0s)");
    }

    /// `Retry-After: 0`, or a date in the past, asked for no wait at all: every answer was
    /// asked again at once, about 190 times a second until the limit. The server's wait is a
    /// floor on our own backoff, never a way around it.
    #[test]
    fn retry_after_zero_waits_the_backoff() {
        let p = Policy {
            limit: Duration::from_secs(1),
            first: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
        };
        let mut tries = 0;
        let t0 = Instant::now();
        let e = p
            .run(|| -> Result<()> {
                tries += 1;
                Err(busy(0))
            })
            .unwrap_err();
        // Waits of at least 50, 100, 200 and 400 ms (the jittered backoff's least): no more
        // than 5 tries fit in 1 s.
        assert!(tries <= 5, "{tries} tries in {:?}", t0.elapsed());
        assert!(e.to_string().starts_with("busy (gave up after "), "{e}");
    }

    /// The calls made to a multipart upload, and the parts' bytes as they arrived.
    #[derive(Default)]
    struct Parts {
        log: Mutex<Vec<String>>,
        /// Part 2 fails with this class this many times.
        part2_fails: Mutex<(u32, Option<Class>)>,
        /// Starts made; the first `lost_starts` of them lose their answer.
        starts: Mutex<u32>,
        lost_starts: u32,
    }

    impl Multipart for Parts {
        fn threshold(&self) -> u64 {
            10
        }
        fn part_size(&self) -> u64 {
            4
        }
        fn start(&self, _: FileType, name: &str) -> Result<String> {
            self.log.lock().unwrap().push(format!("start {name}"));
            let mut n = self.starts.lock().unwrap();
            *n += 1;
            if *n <= self.lost_starts {
                return Err(Error::remote(Class::Transient, None, "answer cut"));
            }
            Ok(if *n == 1 { "U".into() } else { format!("U{n}") })
        }
        fn put_part(&self, _: FileType, _: &str, up: &str, n: u32, body: Body<'_>) -> Result<String> {
            let mut v = Vec::new();
            body.reader().read_to_end(&mut v).unwrap();
            self.log.lock().unwrap().push(format!("part {up} {n} {}", String::from_utf8_lossy(&v)));
            let mut f = self.part2_fails.lock().unwrap();
            if n == 2 && f.0 > 0 {
                f.0 -= 1;
                return Err(Error::remote(f.1.unwrap_or(Class::Transient), Some(500), "part failed"));
            }
            Ok(format!("e{n}"))
        }
        fn complete(&self, _: FileType, _: &str, up: &str, parts: &[String], size: u64) -> Result<()> {
            self.log.lock().unwrap().push(format!("complete {up} {} {size}", parts.join(",")));
            Ok(())
        }
        fn abort(&self, _: FileType, _: &str, up: &str) -> Result<()> {
            self.log.lock().unwrap().push(format!("abort {up}"));
            Ok(())
        }
        fn uploads(&self, _: FileType, _: &str) -> Result<Vec<String>> {
            let n = *self.starts.lock().unwrap();
            Ok((1..n).map(|i| format!("U{i}")).collect())
        }
    }

    #[test]
    fn parts_are_retried_alone_and_aborted_on_failure() {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(b"0123456789abcdefXYZ", 0).unwrap();
        let m = Parts { part2_fails: Mutex::new((2, None)), ..Parts::default() };
        in_parts(&m, &quick(), FileType::Pack, "p", &f, 18, &no_signal).unwrap();
        let log = m.log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "start p",
                "part U 1 0123",
                "part U 2 4567",
                "part U 2 4567",
                "part U 2 4567",
                "part U 3 89ab",
                "part U 4 cdef",
                "part U 5 XY",
                "complete U e1,e2,e3,e4,e5 18"
            ]
        );

        let m = Parts { part2_fails: Mutex::new((1, Some(Class::Permanent))), ..Parts::default() };
        let e = in_parts(&m, &quick(), FileType::Pack, "p", &f, 18, &no_signal).unwrap_err();
        assert_eq!(e.status(), Some(500));
        let log = m.log.lock().unwrap().clone();
        assert_eq!(log, ["start p", "part U 1 0123", "part U 2 4567", "abort U"]);

        // Starts whose answers were lost left uploads behind: they are found and aborted.
        let m = Parts { lost_starts: 2, ..Parts::default() };
        in_parts(&m, &quick(), FileType::Pack, "p", &f, 11, &no_signal).unwrap();
        let log = m.log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "start p",
                "start p",
                "start p",
                "part U3 1 0123",
                "part U3 2 4567",
                "part U3 3 89a",
                "complete U3 e1,e2,e3 11",
                "abort U1",
                "abort U2"
            ]
        );
    }

    #[test]
    fn spooled_uploads_replay_from_the_start() {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(b"hello world", 0).unwrap();
        let body = Body::File { file: &f, start: 0, len: 5 };
        for _ in 0..2 {
            let mut v = Vec::new();
            body.reader().read_to_end(&mut v).unwrap();
            assert_eq!(v, b"hello");
        }
        let part = Body::File { file: &f, start: 6, len: 3 };
        let mut v = Vec::new();
        part.reader().read_to_end(&mut v).unwrap();
        assert_eq!(v, b"wor");
    }
}
