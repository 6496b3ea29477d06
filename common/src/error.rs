//! The one error type of the library. Each variant knows the exit code restic users expect.

use std::io;
use std::path::Path;

/// Exit codes, as restic uses them where the meaning is the same.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const SOME_FAILED: i32 = 3;
    pub const NO_REPOSITORY: i32 = 10;
    pub const LOCKED: i32 = 11;
    pub const WRONG_PASSWORD: i32 = 12;
    pub const INTERRUPTED: i32 = 130;
    /// 128 + SIGPIPE: the reader went away. Never 0, so a cut-off stream does not look complete.
    pub const BROKEN_PIPE: i32 = 141;
}

/// Everything that can go wrong. Messages are one line and name the object or place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or arguments.
    #[error("{0}")]
    Usage(String),
    /// The repository is not there (no `config`).
    #[error("repository {0} does not exist (no config file)")]
    NoRepository(String),
    /// No key file opens with the password.
    #[error("wrong password or no key found")]
    WrongPassword,
    /// The repository is locked by someone else.
    #[error("{0}")]
    Locked(String),
    /// An I/O failure on a named file or stream.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// Repository data (a file, a blob, a header) that does not parse or has an impossible
    /// shape. The message names the object, usually by id.
    #[error("{0}")]
    Format(String),
    /// Data whose MAC or hash does not match: corruption or tampering.
    #[error("{0}")]
    Integrity(String),
    /// A bad record stream: a malformed or unexpected NDJSON record, or a stream whose
    /// records do not fit together. `line` is the record's line number, once it is known
    /// (see [`Error::at_line`]).
    #[error("{}{msg}", LinePrefix(*line))]
    Record { line: Option<u64>, msg: String },
    /// Something inside this program failed (a worker thread died or stopped answering),
    /// not the input or the repository.
    #[error("{0}")]
    Internal(String),
    /// A backend (local, REST, S3) that failed or answered unexpectedly. A remote "not
    /// found" is never this: it is an `Io` error of kind `NotFound`, as a missing local file is.
    #[error("{0}")]
    Backend(Box<Remote>),
    /// A request that is well-formed but refused, as restic refuses it: a backup of nothing
    /// (every PATH excluded or left out) would save an empty snapshot.
    #[error("{0}")]
    Refused(String),
    /// The work finished but some items failed; each was reported on its own already.
    #[error("{0}")]
    SomeFailed(String),
    /// The work finished but some items could not be looked at (a file `verify` may not
    /// read): unlike [`Error::SomeFailed`] nothing is known to be wrong with them, and
    /// nothing is known to be right. Each was reported on its own already; exit 1.
    #[error("{0}")]
    Unchecked(String),
    /// stdout was closed by the reader (`| head`).
    #[error("broken pipe")]
    BrokenPipe,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a backend failure is to be treated; the retry wrapper retries `Transient` ones only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The file is not there (HTTP 404, a missing local file).
    NotFound,
    /// May succeed if tried again: 5xx, 429, a reset or refused connection, a timeout, a
    /// body cut short.
    Transient,
    /// Will fail the same way again: other 4xx, TLS, authentication, a bad URL.
    Permanent,
}

/// A backend failure: its class, the HTTP status when there was one, and how long the
/// server asked us to wait (`Retry-After`).
#[derive(Debug)]
pub struct Remote {
    pub class: Class,
    pub status: Option<u16>,
    pub retry_after: Option<std::time::Duration>,
    pub msg: String,
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// The `io::Error` payload of a remote "not found": keeps the HTTP status for [`Error::status`].
#[derive(Debug)]
pub struct HttpStatus(pub u16);

impl std::fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not found (HTTP {})", self.0)
    }
}

impl std::error::Error for HttpStatus {}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::NoRepository(_) => exit::NO_REPOSITORY,
            Error::WrongPassword => exit::WRONG_PASSWORD,
            Error::Locked(_) => exit::LOCKED,
            Error::SomeFailed(_) => exit::SOME_FAILED,
            Error::BrokenPipe => exit::BROKEN_PIPE,
            _ => exit::FAILURE,
        }
    }

    /// An I/O error about `what` (a path, an object id, "stdin"...).
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::BrokenPipe {
            return Error::BrokenPipe;
        }
        Error::Io { what: what.into(), source }
    }

    pub fn format(msg: impl Into<String>) -> Error {
        Error::Format(msg.into())
    }

    /// A bad record stream; the line number is added by [`Error::at_line`] where known.
    pub fn stream(msg: impl Into<String>) -> Error {
        Error::Record { line: None, msg: msg.into() }
    }

    /// A failure inside this program (a thread that died, a channel that closed).
    pub fn internal(msg: impl Into<String>) -> Error {
        Error::Internal(msg.into())
    }

    /// Says at which line of the input stream this happened: a stream error gets its line
    /// number, any other error a `line N: ` prefix (keeping its exit code).
    pub fn at_line(self, no: u64) -> Error {
        match self {
            Error::Record { line: None, msg } => Error::Record { line: Some(no), msg },
            e @ Error::Record { .. } => e,
            e => e.context(format!("line {no}")),
        }
    }

    pub fn integrity(msg: impl Into<String>) -> Error {
        Error::Integrity(msg.into())
    }

    /// A permanent backend failure without an HTTP status.
    pub fn backend(msg: impl Into<String>) -> Error {
        Error::remote(Class::Permanent, None, msg)
    }

    /// A backend failure of class `class`. `NotFound` becomes an `Io` error of kind
    /// `NotFound`, so callers test for a missing file the same way for every backend.
    pub fn remote(class: Class, status: Option<u16>, msg: impl Into<String>) -> Error {
        let msg = msg.into();
        if class == Class::NotFound {
            let source = io::Error::new(io::ErrorKind::NotFound, HttpStatus(status.unwrap_or(404)));
            return Error::Io { what: msg, source };
        }
        Error::Backend(Box::new(Remote { class, status, retry_after: None, msg }))
    }

    /// The backend class of this error: `NotFound` for a missing file on any backend,
    /// `Transient`/`Permanent` for remote failures, `None` for everything else.
    pub fn class(&self) -> Option<Class> {
        match self {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => Some(Class::NotFound),
            Error::Backend(r) => Some(r.class),
            _ => None,
        }
    }

    /// Whether this says a file is missing (locally or remotely).
    pub fn is_not_found(&self) -> bool {
        self.class() == Some(Class::NotFound)
    }

    /// The HTTP status behind this error, if it came from an HTTP answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Io { source, .. } => {
                source.get_ref().and_then(|e| e.downcast_ref::<HttpStatus>()).map(|s| s.0)
            }
            Error::Backend(r) => r.status,
            _ => None,
        }
    }

    /// Prefixes the message with more context (`what: message`), keeping the exit code.
    pub fn context(self, what: impl std::fmt::Display) -> Error {
        self.map_message(|m| format!("{what}: {m}")).unwrap_or_else(|e| e)
    }

    /// Appends `; note` to the message, keeping the exit code; gives the error back
    /// unchanged as `Err` when it has no message of its own to add to (a broken pipe prints
    /// none).
    pub fn with_note(self, note: impl std::fmt::Display) -> std::result::Result<Error, Error> {
        match self {
            // The message is `what: source`: the note goes after the source.
            Error::Io { what, source } => {
                Ok(Error::Io { what, source: io::Error::new(source.kind(), format!("{source}; {note}")) })
            }
            other => other.map_message(|m| format!("{m}; {note}")),
        }
    }

    /// The same error with `f` of its message (of `what`, for an I/O error), or `Err(self)`
    /// for one whose message is fixed.
    fn map_message(self, f: impl FnOnce(String) -> String) -> std::result::Result<Error, Error> {
        Ok(match self {
            Error::Io { what, source } => Error::Io { what: f(what), source },
            Error::Format(m) => Error::Format(f(m)),
            Error::Integrity(m) => Error::Integrity(f(m)),
            Error::Record { line, msg } => Error::Record { line, msg: f(msg) },
            Error::Internal(m) => Error::Internal(f(m)),
            Error::Backend(mut r) => {
                r.msg = f(std::mem::take(&mut r.msg));
                Error::Backend(r)
            }
            Error::Usage(m) => Error::Usage(f(m)),
            Error::Refused(m) => Error::Refused(f(m)),
            Error::SomeFailed(m) => Error::SomeFailed(f(m)),
            Error::Locked(m) => Error::Locked(f(m)),
            other => return Err(other),
        })
    }
}

/// `line N: ` before a stream error's message, when the line is known.
struct LinePrefix(Option<u64>);

impl std::fmt::Display for LinePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "line {n}: "),
            None => Ok(()),
        }
    }
}

/// Attaches a path or name to a bare `io::Error`.
pub trait IoContext<T> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T>;
    fn ctx_path(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, io::Error> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| Error::io(what.to_string(), e))
    }
    fn ctx_path(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path.display().to_string(), e))
    }
}

/// Adds context to any library result.
pub trait ResultExt<T> {
    fn context(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::NoRepository("/r".into()).exit_code(), 10);
        assert_eq!(Error::WrongPassword.exit_code(), 12);
        assert_eq!(Error::Locked("l".into()).exit_code(), 11);
        assert_eq!(Error::SomeFailed("s".into()).exit_code(), 3);
        assert_eq!(Error::BrokenPipe.exit_code(), 141);
        assert_eq!(Error::format("f").exit_code(), 1);
        let e = Error::io("stdout", io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(e.exit_code(), 141);
    }

    #[test]
    fn remote_classes() {
        let nf = Error::remote(Class::NotFound, Some(404), "rest:http://h/: data/ab");
        assert!(nf.is_not_found());
        assert_eq!(nf.status(), Some(404));
        assert!(matches!(&nf, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound));
        assert_eq!(nf.to_string(), "rest:http://h/: data/ab: not found (HTTP 404)");
        let t = Error::remote(Class::Transient, Some(503), "busy").context("pack 12");
        assert_eq!(t.class(), Some(Class::Transient));
        assert_eq!(t.status(), Some(503));
        assert_eq!(t.to_string(), "pack 12: busy");
        assert_eq!(t.exit_code(), 1);
        let local = Error::io("/r/config", io::Error::from(io::ErrorKind::NotFound));
        assert!(local.is_not_found());
        assert_eq!(local.status(), None);
    }

    #[test]
    fn stream_errors_take_their_line() {
        let e = Error::stream("its blobs hold 3 bytes").context("a.txt");
        assert_eq!(e.to_string(), "a.txt: its blobs hold 3 bytes");
        let e = e.at_line(7);
        assert_eq!(e.to_string(), "line 7: a.txt: its blobs hold 3 bytes");
        assert_eq!(e.at_line(9).to_string(), "line 7: a.txt: its blobs hold 3 bytes");
        let e = Error::format("pack 12: truncated").at_line(4);
        assert_eq!(e.to_string(), "line 4: pack 12: truncated");
        assert!(matches!(e, Error::Format(_)));
        let e = Error::internal("the decoding thread stopped");
        assert_eq!(e.to_string(), "the decoding thread stopped");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn context_keeps_code() {
        let e = Error::integrity("MAC mismatch").context("blob 1234 in pack abcd");
        assert_eq!(e.to_string(), "blob 1234 in pack abcd: MAC mismatch");
        assert_eq!(e.exit_code(), 1);
        let e = Error::io("data/ab", io::Error::new(io::ErrorKind::NotFound, "gone")).with_note("lock left");
        let e = e.unwrap();
        assert_eq!((e.to_string().as_str(), e.is_not_found()), ("data/ab: gone; lock left", true));
        assert!(Error::BrokenPipe.with_note("x").is_err());
    }
}
