//! Payload bytes in and out of a line: base64, written straight into the line and decoded
//! from a slice of it, so megabytes of payload are never copied into a `String` nor scanned
//! by the JSON parser for escapes (base64 needs none).

use std::io::{self, Write};

use crate::error::{Error, Result};

/// Payload bytes base64-encoded per step (a multiple of 3, so pieces join seamlessly). A
/// whole piece encodes to exactly the stdout buffer's size, which `BufWriter` writes straight
/// from `scratch` instead of copying it into its buffer first: a copy of every payload byte
/// saved in each stage that writes them.
const PIECE: usize = super::writer::OUT_BUFFER / 4 * 3;

/// The key of the payload field as our writer puts it: last in the line.
const KEY: &str = ",\"data\":\"";

/// Writes `bytes` as one base64 string (without quotes), in pieces of whole 3-byte groups,
/// so no buffer as large as the payload is needed. `scratch` is reused between calls.
pub(super) fn write_b64(out: &mut impl Write, bytes: &[u8], scratch: &mut Vec<u8>) -> io::Result<()> {
    scratch.resize(base64_simd::STANDARD.encoded_length(PIECE), 0);
    for piece in bytes.chunks(PIECE) {
        let n = base64_simd::STANDARD.encoded_length(piece.len());
        let _ = base64_simd::STANDARD.encode(piece, base64_simd::Out::from_slice(&mut scratch[..n]));
        out.write_all(&scratch[..n])?;
    }
    Ok(())
}

/// Where the payload of a line our writer made starts: the byte offset of `,"data":"`, if
/// the line ends with that field and its text needs no unescaping. `None` when the line
/// does not have that shape (then it is parsed whole).
pub(super) fn split(line: &str) -> Option<usize> {
    let body = line.strip_suffix("\"}")?;
    // Searched from the front: the payload is last, and an unescaped `,"data":"` cannot
    // occur inside an earlier JSON string, so the first one is the key.
    let at = body.find(KEY)?;
    let data = &body[at + KEY.len()..];
    if memchr::memchr2(b'"', b'\\', data.as_bytes()).is_some() {
        return None;
    }
    Some(at)
}

/// The payload text of a line split at `at` (see [`split`]).
pub(super) fn data_at(line: &str, at: usize) -> &str {
    &line[at + KEY.len()..line.len() - 2]
}

/// The line without its payload, as a JSON object of the other fields.
pub(super) fn head_at(line: &str, at: usize) -> String {
    let mut head = String::with_capacity(at + 1);
    head.push_str(&line[..at]);
    head.push('}');
    head
}

/// Decodes standard base64 into `out` (reused between calls). Bad base64 is a stream error.
pub fn decode_b64(s: &str, out: &mut Vec<u8>) -> Result<()> {
    let bad = |e: base64_simd::Error| Error::stream(format!("bad base64: {e}"));
    // No clear(): resizing a reused buffer then zero-fills only what it grows by.
    let n = base64_simd::STANDARD.decoded_length(s.as_bytes()).map_err(bad)?;
    out.resize(n, 0);
    let got =
        base64_simd::STANDARD.decode(s.as_bytes(), base64_simd::Out::from_slice(out)).map_err(bad)?.len();
    out.truncate(got);
    Ok(())
}

/// Encodes bytes as standard base64 (for the `*_raw` fields and the pack header).
pub fn encode_b64(b: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_finds_the_trailing_payload_only() {
        let line = r#"{"type":"chunk","id":"x","data":"eHl6"}"#;
        let at = split(line).unwrap();
        assert_eq!(data_at(line, at), "eHl6");
        assert_eq!(head_at(line, at), r#"{"type":"chunk","id":"x"}"#);
        assert!(split(r#"{"type":"end","records":1}"#).is_none());
        assert!(split(r#"{"type":"x","data":"a\"b"}"#).is_none());
        assert!(split(r#"{"type":"x","data":"a\/b"}"#).is_none());
    }

    #[test]
    fn base64_in_pieces_joins_seamlessly() {
        let bytes: Vec<u8> = (0..PIECE * 2 + 7).map(|i| (i * 7) as u8).collect();
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        write_b64(&mut out, &bytes, &mut scratch).unwrap();
        let mut back = Vec::new();
        decode_b64(std::str::from_utf8(&out).unwrap(), &mut back).unwrap();
        assert_eq!(back, bytes);
        assert!(decode_b64("a", &mut back).unwrap_err().to_string().contains("bad base64"));
    }
}
