//! Writing a framed record stream: header, typed records, end. EPIPE on stdout becomes
//! `Error::BrokenPipe` (a quiet exit 141, never 0: a cut-off stream must not look complete).

use std::io::{self, Write};

use serde::Serialize;

use super::payload::write_b64;
use super::{End, Header, Record, Tag, WithData, FORMAT, VERSION};
use crate::error::{Error, Result};
use crate::id::Id;

/// Writes a framed record stream.
pub struct Writer<W: Write> {
    out: W,
    count: u64,
    scratch: Vec<u8>,
    b64: Vec<u8>,
}

/// Standard output as a plain file descriptor. `std::io::Stdout` is line-buffered: it
/// would scan every megabyte we hand it for newlines and copy the tail once more.
/// `None` throws the records away (see [`Writer::nowhere`]).
pub struct StdoutFd(Option<std::mem::ManuallyDrop<std::fs::File>>);

impl StdoutFd {
    fn new() -> StdoutFd {
        StdoutFd(Some(crate::sys::stdout_file()))
    }
}

impl io::Write for StdoutFd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The stdout buffer: records smaller than this are gathered into writes of about this size.
pub(super) const OUT_BUFFER: usize = 1 << 20;

impl Writer<io::BufWriter<StdoutFd>> {
    /// A writer on stdout with a large buffer.
    pub fn stdout() -> Self {
        crate::sys::enlarge_pipe(1);
        Writer::new(io::BufWriter::with_capacity(OUT_BUFFER, StdoutFd::new()))
    }

    /// A writer of the same type that throws its records away: for a stage whose stdout
    /// carries something else (restic's JSON messages with `--json`).
    pub fn nowhere() -> Self {
        Writer::new(io::BufWriter::new(StdoutFd(None)))
    }

    /// [`Writer::stdout`], or [`Writer::nowhere`] when `discard`.
    pub fn stdout_unless(discard: bool) -> Self {
        match discard {
            true => Writer::nowhere(),
            false => Writer::stdout(),
        }
    }
}

/// Raw input that flushes a record writer before a read when the input pauses (`chunk --stdin`
/// behind a slow source), for the reason [`super::Reader::next_line_or_flush`] gives. `fd`
/// is the input's descriptor when it can be slow (a pipe); `None` never flushes early.
pub struct FlushBeforeWait<'w, R, W: Write> {
    inner: R,
    pub out: &'w mut Writer<W>,
    fd: Option<i32>,
}

impl<'w, R: io::Read, W: Write> FlushBeforeWait<'w, R, W> {
    pub fn new(inner: R, out: &'w mut Writer<W>, fd: Option<i32>) -> Self {
        FlushBeforeWait { inner, out, fd }
    }
}

impl<R: io::Read, W: Write> io::Read for FlushBeforeWait<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if super::paused(self.fd) {
            // A failure here (the next stage is gone) comes back from the next record
            // written, as the error of the output it is, not of this read.
            let _ = self.out.flush();
        }
        self.inner.read(buf)
    }
}

fn out_err(e: io::Error) -> Error {
    Error::io("stdout", e)
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out, count: 0, scratch: Vec::with_capacity(4096), b64: Vec::new() }
    }

    /// Writes the header. Call once, first.
    pub fn header(&mut self, producer: &str, snapshot: Option<Id>) -> Result<()> {
        self.header_with_root(producer, snapshot, None, None)
    }

    /// Writes the header of a stream of nodes relative to a selected directory (see
    /// `Header::root`), read from the repository `repository` names (see
    /// `Header::repository`). Call once, first.
    pub fn header_with_root(
        &mut self,
        producer: &str,
        snapshot: Option<Id>,
        root: Option<String>,
        repository: Option<Id>,
    ) -> Result<()> {
        self.header_record(Header {
            format: FORMAT.into(),
            version: VERSION,
            producer: producer.into(),
            snapshot,
            repository,
            root,
        })
    }

    /// Writes a header bound to a repository (see `Header::repository`). Call once, first.
    pub fn header_for_repository(&mut self, producer: &str, repository: Id) -> Result<()> {
        self.header_record(Header {
            format: FORMAT.into(),
            version: VERSION,
            producer: producer.into(),
            snapshot: None,
            repository: Some(repository),
            root: None,
        })
    }

    fn header_record(&mut self, h: Header) -> Result<()> {
        self.put(Tag::Header, &h, None)?;
        self.count = 0;
        Ok(())
    }

    /// Writes one record.
    pub fn write<R: Record>(&mut self, rec: &R) -> Result<()> {
        debug_assert!(!matches!(R::TAG, Tag::Header | Tag::End), "framing records have their own calls");
        self.put(R::TAG, rec, None)
    }

    /// Writes one record with `payload` as its `"data"`, base64, straight into the line.
    pub fn write_with_data<R: WithData>(&mut self, rec: &R, payload: &[u8]) -> Result<()> {
        self.put(R::TAG, rec, Some(payload))
    }

    /// Forwards a line read from upstream unchanged (a pass-through stage).
    pub fn raw_line(&mut self, line: &str) -> Result<()> {
        self.out.write_all(line.as_bytes()).map_err(out_err)?;
        self.out.write_all(b"\n").map_err(out_err)?;
        self.count += 1;
        Ok(())
    }

    fn put<T: Serialize + ?Sized>(&mut self, tag: Tag, rec: &T, payload: Option<&[u8]>) -> Result<()> {
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, rec)
            .map_err(|e| Error::internal(format!("cannot encode {} record: {e}", tag.name())))?;
        debug_assert!(self.scratch.first() == Some(&b'{') && self.scratch.last() == Some(&b'}'));
        let body = &self.scratch[1..self.scratch.len() - 1];
        let o = &mut self.out;
        o.write_all(b"{\"type\":\"").map_err(out_err)?;
        o.write_all(tag.name().as_bytes()).map_err(out_err)?;
        o.write_all(b"\"").map_err(out_err)?;
        if !body.is_empty() {
            o.write_all(b",").map_err(out_err)?;
            o.write_all(body).map_err(out_err)?;
        }
        if let Some(p) = payload {
            o.write_all(b",\"data\":\"").map_err(out_err)?;
            write_b64(o, p, &mut self.b64).map_err(out_err)?;
            o.write_all(b"\"").map_err(out_err)?;
        }
        o.write_all(b"}\n").map_err(out_err)?;
        self.count += 1;
        Ok(())
    }

    /// Records written since the header.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Flushes buffered records now (before a long pause, so the next stage can work).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(out_err)
    }

    /// Writes the end record and flushes. A stream without this looks cut off, as it should.
    pub fn finish(mut self) -> Result<W> {
        self.end()?;
        Ok(self.out)
    }

    /// `finish` for a writer that is shared (behind a lock) and so cannot be consumed.
    pub fn end(&mut self) -> Result<()> {
        let end = End { records: self.count };
        self.put(Tag::End, &end, None)?;
        self.out.flush().map_err(out_err)
    }
}
