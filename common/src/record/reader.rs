//! Reading a framed record stream: header first, end last, line numbers in every error.
//!
//! Every tool reads the same way:
//!
//! ```text
//! while let Some(line) = input.next_line()? {
//!     match line.tag() {
//!         Tag::Node => { let rec: NodeRecord = line.parse()?; ... }
//!         Tag::Blob => { let rec: BlobRecord = line.parse()?; let data = line.payload()?; ... }
//!         other => return Err(line.err(format!("a {} record does not belong here", other.name()))),
//!     }
//! }
//! ```

use std::borrow::Cow;
use std::io::{self, Read};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::payload::{self, decode_b64};
use super::{Header, Tag, FORMAT, MAX_LINE, VERSION};
use crate::error::{Error, Result};

/// Bytes asked of the input per read, at most. A line is read straight into place, never
/// copied; only what a read brought past a line's end (the next line's start) is moved to
/// the front of the buffer, and this bounds it.
pub(super) const READ_STEP: usize = 256 << 10;

/// Standard input as a plain file descriptor: `std::io::Stdin` would lock and go through
/// its own buffer on every read.
pub struct StdinFd(std::mem::ManuallyDrop<std::fs::File>);

impl StdinFd {
    pub fn new() -> StdinFd {
        StdinFd(crate::sys::stdin_file())
    }
}

impl Default for StdinFd {
    fn default() -> StdinFd {
        StdinFd::new()
    }
}

impl Read for StdinFd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// Reads a framed record stream, one line at a time, with line numbers for errors.
pub struct Reader<R> {
    input: R,
    /// Bytes read: `buf[..filled]`, of which the current line is `buf[line]` and what
    /// follows it starts at `next`.
    buf: Vec<u8>,
    filled: usize,
    line: std::ops::Range<usize>,
    next: usize,
    line_no: u64,
    count: u64,
    ended: bool,
    source: String,
    header: Option<Header>,
    /// The input is a terminal: nobody piped records in, and waiting for them would look
    /// like a hang.
    terminal: bool,
    /// The input's descriptor, asked whether it pauses before a read (see
    /// [`Reader::next_line_or_flush`]); `None` for an input that never keeps us waiting.
    pause_fd: Option<i32>,
}

impl Reader<StdinFd> {
    /// A reader over stdin.
    pub fn stdin() -> Self {
        use std::io::IsTerminal;
        super::enlarge_pipe(0);
        let mut r = Reader::new(StdinFd::new(), "stdin");
        r.terminal = io::stdin().is_terminal();
        r.pause_fd = Some(0);
        r
    }
}

/// One record line between header and end: its number, its text (without the newline) and
/// its tag, checked to be a known record type.
pub struct Line<'a> {
    pub no: u64,
    pub text: &'a str,
    tag: Tag,
    /// Where the `data` payload starts, for a line our writer made with one.
    split: Option<usize>,
    source: &'a str,
}

impl<'a> Line<'a> {
    /// The record type.
    pub fn tag(&self) -> Tag {
        self.tag
    }

    /// The record, without its payload. Unknown fields are ignored.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        let parsed = match self.split {
            Some(at) => serde_json::from_str(&payload::head_at(self.text, at)),
            None => serde_json::from_str(self.text),
        };
        parsed.map_err(|e| self.err(format!("malformed {} record: {e}", self.tag.name())))
    }

    /// The base64 text of the line's `data` payload, borrowed from the line; `None` when the
    /// line has none. Only a line not written by our writer (the payload not last, or
    /// escaped) goes through the JSON parser for it.
    pub fn payload(&self) -> Result<Option<Cow<'a, str>>> {
        if let Some(at) = self.split {
            return Ok(Some(Cow::Borrowed(payload::data_at(self.text, at))));
        }
        if !self.tag.carries_data() {
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct Data<'a> {
            #[serde(borrow, default)]
            data: Option<Cow<'a, str>>,
        }
        let d: Data<'a> = serde_json::from_str(self.text)
            .map_err(|e| self.err(format!("malformed {} record: {e}", self.tag.name())))?;
        Ok(d.data)
    }

    /// Decodes the payload into `out` (reused between calls), which is left empty when the
    /// line has none: never the previous line's bytes.
    pub fn decode_payload(&self, out: &mut Vec<u8>) -> Result<()> {
        match self.payload()? {
            None => {
                out.clear();
                Ok(())
            }
            Some(b64) => decode_b64(&b64, out).map_err(|e| e.at_line(self.no)),
        }
    }

    /// An error about this line.
    pub fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Record { line: Some(self.no), msg: format!("{}: {msg}", self.source) }
    }
}

/// The tag of a line: read straight off the front when our writer wrote it, else by parsing.
/// `err` makes the error for a message (it knows the line).
fn tag_of(line: &str, err: impl Fn(String) -> Error) -> Result<Tag> {
    const PREFIX: &str = "{\"type\":\"";
    let named = |name: &str| Tag::from_name(name).ok_or_else(|| err(format!("unknown record type {name:?}")));
    if let Some(rest) = line.strip_prefix(PREFIX) {
        if let Some(end) = rest.find('"') {
            if !rest[..end].contains('\\') {
                return named(&rest[..end]);
            }
        }
    }
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow, default)]
        ty: Option<Cow<'a, str>>,
    }
    match serde_json::from_str::<Typed>(line) {
        Ok(Typed { ty: Some(t) }) => named(&t),
        Ok(Typed { ty: None }) => Err(err("record has no \"type\" field".into())),
        Err(e) => Err(err(format!("not a JSON object: {e}"))),
    }
}

/// A line's text and tag; `source` and `no` are for the error.
fn tagged<'a>(line: &'a [u8], source: &str, no: u64) -> Result<(&'a str, Tag)> {
    let err = |msg: String| Error::Record { line: Some(no), msg: format!("{source}: {msg}") };
    let text = std::str::from_utf8(line).map_err(|_| err("line is not UTF-8".into()))?;
    let tag = tag_of(text, err)?;
    Ok((text, tag))
}

impl<R: Read> Reader<R> {
    pub fn new(input: R, source: &str) -> Self {
        Reader {
            input,
            buf: Vec::new(),
            filled: 0,
            line: 0..0,
            next: 0,
            line_no: 0,
            count: 0,
            ended: false,
            source: source.to_string(),
            header: None,
            terminal: false,
            pause_fd: None,
        }
    }

    /// The header, once `read_header` has run.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Line number of the last line read.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// An error about the current line.
    pub fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Record { line: Some(self.line_no), msg: format!("{}: {msg}", self.source) }
    }

    /// Reads the next line into `buf[line]`, without its newline; false at the end of input.
    /// `before_wait` runs before a read when the input pauses.
    fn read_line(&mut self, mut before_wait: Option<&mut dyn FnMut() -> Result<()>>) -> Result<bool> {
        let mut scan = self.next;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[scan..self.filled]) {
                self.line = self.next..scan + i;
                self.next = scan + i + 1;
                self.line_no += 1;
                if self.line.len() > MAX_LINE {
                    return Err(self.err(format!("line longer than {MAX_LINE} bytes")));
                }
                return Ok(true);
            }
            scan = self.filled;
            if self.filled - self.next > MAX_LINE {
                self.line_no += 1;
                return Err(self.err(format!("line longer than {MAX_LINE} bytes")));
            }
            if self.next > 0 {
                self.buf.copy_within(self.next..self.filled, 0);
                (self.filled, scan) = (self.filled - self.next, scan - self.next);
                self.next = 0;
            }
            // The buffer keeps its length (its bytes initialized) between lines, so only
            // growth is zeroed.
            if self.buf.len() < self.filled + READ_STEP {
                self.buf.resize(self.filled + READ_STEP, 0);
            }
            if let Some(f) = before_wait.as_mut() {
                if super::paused(self.pause_fd) {
                    f()?;
                }
            }
            let n = loop {
                match self.input.read(&mut self.buf[self.filled..self.filled + READ_STEP]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(self.source.clone(), e)),
                }
            };
            if n == 0 {
                if self.filled == self.next {
                    return Ok(false);
                }
                self.line_no += 1;
                return Err(self.err(
                    "stream cut off in the middle of a line, before its end record (did the previous stage fail?)",
                ));
            }
            self.filled += n;
        }
    }

    /// The current line's text and tag.
    fn tagged(&self) -> Result<(&str, Tag)> {
        tagged(&self.buf[self.line.clone()], &self.source, self.line_no)
    }

    /// Reads and checks the header record. Call once, first.
    pub fn read_header(&mut self) -> Result<Header> {
        if self.terminal {
            return Err(Error::Usage(format!(
                "{} is a terminal: this stage reads the records of the stage before it, as in \
                 chunk PATH | pack | push, or walk latest | fetch-pack | unpack -t DIR",
                self.source
            )));
        }
        if !self.read_line(None)? {
            // No line was read: a line number would only confuse.
            return Err(Error::stream(format!(
                "{}: empty stream: no header record (did the previous stage fail?)",
                self.source
            )));
        }
        let (text, tag) = self.tagged()?;
        if tag != Tag::Header {
            return Err(self.err(format!("expected a header record, got {}", tag.name())));
        }
        let h: Header =
            serde_json::from_str(text).map_err(|e| self.err(format!("malformed header record: {e}")))?;
        if h.format != FORMAT {
            return Err(self.err(format!("not a {FORMAT} stream (format {:?})", h.format)));
        }
        if h.version != VERSION {
            return Err(self.err(format!(
                "{FORMAT} version {} is not supported (this tool reads version {VERSION})",
                h.version
            )));
        }
        self.header = Some(h.clone());
        Ok(h)
    }

    /// The next line between header and end. `None` after a correct end record; an error if
    /// the stream stops without one, the end's count disagrees, or the line is not a record
    /// of a known type.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        self.next_line_then(None)
    }

    /// [`Reader::next_line`], running `before_wait` whenever it is about to wait on an input
    /// that pauses ([`super::PAUSE`]). A stage flushes its output there, so the stage after
    /// it never waits on finished records while this one waits on the stage before (a slow
    /// `chunk --stdin` source, a slow network).
    pub fn next_line_or_flush(
        &mut self,
        mut before_wait: impl FnMut() -> Result<()>,
    ) -> Result<Option<Line<'_>>> {
        self.next_line_then(Some(&mut before_wait))
    }

    fn next_line_then(
        &mut self,
        before_wait: Option<&mut dyn FnMut() -> Result<()>>,
    ) -> Result<Option<Line<'_>>> {
        if self.ended {
            return Ok(None);
        }
        if !self.read_line(before_wait)? {
            return Err(self.err("stream ended without its end record (did the previous stage fail?)"));
        }
        // The line is checked once (a megabyte of payload is not scanned twice): borrowing
        // only `buf` and `source` lets `count` change while `text` is held.
        let (text, tag) = tagged(&self.buf[self.line.clone()], &self.source, self.line_no)?;
        match tag {
            Tag::Header => return Err(self.err("a second header record inside the stream")),
            Tag::End => {
                let end: super::End =
                    serde_json::from_str(text).map_err(|e| self.err(format!("malformed end record: {e}")))?;
                if end.records != self.count {
                    let msg = format!("end record counts {} records but {} arrived", end.records, self.count);
                    return Err(self.err(msg));
                }
                self.ended = true;
                // Anything after the end record is a second stream glued on by mistake.
                let mut probe = [0u8; 1];
                if self.next < self.filled
                    || self.input.read(&mut probe).map_err(|e| Error::io(self.source.clone(), e))? > 0
                {
                    self.line_no += 1;
                    return Err(self.err("data after the end record"));
                }
                return Ok(None);
            }
            _ => {}
        }
        self.count += 1;
        let split = if tag.carries_data() { payload::split(text) } else { None };
        Ok(Some(Line { no: self.line_no, text, tag, split, source: &self.source }))
    }
}
