//! Go's `encoding/json` output, byte for byte: string escaping, `[]byte` as base64, maps,
//! compaction of raw values, and the number, time and id forms restic's structs marshal to.
//! Tree and snapshot ids are hashes of these bytes, so any deviation costs deduplication
//! with restic. Also the decoder's case-folding key match, which every reader of restic's
//! JSON objects uses.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::value::RawValue;

use super::time::GoTime;
use super::HEX;
use crate::error::{Error, Result};
use crate::id::Id;

/// Which Go and restic produced (or should produce) a piece of JSON. The differences are all
/// byte-level: readers accept every flavour, writers need the right one to hit restic's ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GoJsonFlavor {
    /// Go ≥ 1.22 writes the bytes 0x08 and 0x0c in strings as `\b` and `\f`; older Go (restic
    /// 0.14 was built with Go 1.19) writes `\u0008` and `\u000c`.
    pub short_bf_escapes: bool,
    /// restic ≥ 0.16 adds `linktarget_raw` (base64 of the raw bytes) when a symlink target is
    /// not valid UTF-8; older restic writes only the lossy `linktarget`.
    pub linktarget_raw: bool,
}

impl GoJsonFlavor {
    /// Debian's restic 0.14.0, built with Go 1.19: our test oracle and the default.
    pub const RESTIC_0_14: GoJsonFlavor = GoJsonFlavor { short_bf_escapes: false, linktarget_raw: false };
    /// restic 0.16 to 0.17 as released (built with Go < 1.22).
    pub const RESTIC_0_16: GoJsonFlavor = GoJsonFlavor { short_bf_escapes: false, linktarget_raw: true };
    /// Current restic releases (Go ≥ 1.22).
    pub const RESTIC_LATEST: GoJsonFlavor = GoJsonFlavor { short_bf_escapes: true, linktarget_raw: true };
}

impl Default for GoJsonFlavor {
    fn default() -> Self {
        GoJsonFlavor::RESTIC_0_14
    }
}

/// Go `encoding/json`'s encoding of a string, quotes included, with HTML escaping on (as
/// `json.Marshal` does): `"` and `\` backslashed; `\n \r \t` short; `\b \f` short only for
/// Go ≥ 1.22; other control bytes and `< > &` as `\u00XX`; U+2028/U+2029 escaped; each invalid
/// UTF-8 byte as `\ufffd`; DEL and all other valid runes raw.
pub fn write_string(s: &[u8], flavor: GoJsonFlavor, out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut i = 0;
    let mut start = 0; // start of the pending run copied verbatim
    while i < s.len() {
        let b = s[i];
        if b < 0x80 {
            let esc: Option<&[u8]> = match b {
                b'"' => Some(b"\\\""),
                b'\\' => Some(b"\\\\"),
                b'\n' => Some(b"\\n"),
                b'\r' => Some(b"\\r"),
                b'\t' => Some(b"\\t"),
                8 if flavor.short_bf_escapes => Some(b"\\b"),
                0xc if flavor.short_bf_escapes => Some(b"\\f"),
                _ if b < 0x20 || b == b'<' || b == b'>' || b == b'&' => Some(b""),
                _ => None,
            };
            if let Some(esc) = esc {
                out.extend_from_slice(&s[start..i]);
                if esc.is_empty() {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                } else {
                    out.extend_from_slice(esc);
                }
                start = i + 1;
            }
            i += 1;
            continue;
        }
        // Multi-byte: decode one rune (or find that this byte does not start one).
        let end = (i + 4).min(s.len());
        let rune = match std::str::from_utf8(&s[i..end]) {
            Ok(t) => t.chars().next(),
            Err(e) if e.valid_up_to() > 0 => {
                std::str::from_utf8(&s[i..i + e.valid_up_to()]).ok().and_then(|t| t.chars().next())
            }
            Err(_) => None,
        };
        match rune {
            None => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\ufffd");
                i += 1;
                start = i;
            }
            Some(c @ ('\u{2028}' | '\u{2029}')) => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(if c == '\u{2028}' { b"\\u2028" } else { b"\\u2029" });
                i += 3;
                start = i;
            }
            Some(c) => i += c.len_utf8(),
        }
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Go `encoding/json`'s encoding of a `[]byte`: standard base64 with padding, quoted.
pub fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
    let n = base64::engine::general_purpose::STANDARD.encode_slice(b, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
    out.push(b'"');
}

/// Decodes a JSON `[]byte` value as Go does: standard alphabet, padding required, `\r` and `\n`
/// ignored, non-zero trailing bits tolerated.
pub fn decode_bytes(s: &str) -> Result<Vec<u8>> {
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
    );
    let s: Cow<str> = if s.contains(['\r', '\n']) {
        Cow::Owned(s.chars().filter(|&c| c != '\r' && c != '\n').collect())
    } else {
        Cow::Borrowed(s)
    };
    LENIENT.decode(s.as_bytes()).map_err(|e| Error::format(format!("bad base64 {s:?}: {e}")))
}

/// Go's `json.Compact` with HTML escaping, as `json.Marshal` applies it to a `json.RawMessage`:
/// whitespace between tokens dropped, `< > &` and U+2028/U+2029 escaped. `raw` must be valid
/// JSON (it comes from serde_json's `RawValue`).
pub fn compact(raw: &str, out: &mut Vec<u8>) {
    let b = raw.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => {
                    // Copy the escape pair so an escaped quote does not end the string.
                    out.extend_from_slice(&b[i..(i + 2).min(b.len())]);
                    i += 2;
                    continue;
                }
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => {
                    i += 1;
                    continue;
                }
                b'"' => in_string = true,
                _ => {}
            }
        }
        match c {
            b'<' | b'>' | b'&' => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 0xf) as usize]);
            }
            0xe2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)) => {
                out.extend_from_slice(b"\\u202");
                out.push(HEX[(b[i + 2] & 0xf) as usize]);
                i += 2;
            }
            _ => out.push(c),
        }
        i += 1;
    }
}

/// Appends an unsigned decimal without allocating.
pub(crate) fn write_uint(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a quoted Go time.
pub(crate) fn write_time(out: &mut Vec<u8>, t: &GoTime) {
    out.push(b'"');
    t.write(out);
    out.push(b'"');
}

/// Appends a quoted hex id.
pub(crate) fn write_id(out: &mut Vec<u8>, id: &Id) {
    let mut buf = [0u8; 64];
    // Cannot fail: the buffer is exactly twice the id length.
    if hex::encode_to_slice(id.0, &mut buf).is_ok() {
        out.push(b'"');
        out.extend_from_slice(&buf);
        out.push(b'"');
    }
}

/// Appends a Go map of raw JSON: keys sorted bytewise, values compacted and HTML-escaped.
/// Returns false (appending nothing) for an empty or unreadable map, which Go omits.
pub(crate) fn write_map(out: &mut Vec<u8>, raw: &RawValue, flavor: GoJsonFlavor) -> bool {
    let map: std::collections::BTreeMap<String, Box<RawValue>> = match serde_json::from_str(raw.get()) {
        Ok(m) => m,
        Err(_) => return false,
    };
    if map.is_empty() {
        return false;
    }
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k.as_bytes(), flavor, out);
        out.push(b':');
        compact(v.get(), out);
    }
    out.push(b'}');
    true
}

/// A JSON object key folded the way Go's decoder matches struct fields (case-insensitively,
/// with the Kelvin sign as `k` and long s as `s`), held inline since every known key is short.
pub(crate) struct FoldedKey {
    buf: [u8; 32],
    len: usize,
}

impl FoldedKey {
    /// The folded key; longer keys than any field name come out empty (and match nothing).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<'de> Deserialize<'de> for FoldedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<FoldedKey, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FoldedKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<FoldedKey, E> {
                let mut key = FoldedKey { buf: [0; 32], len: 0 };
                for c in v.chars() {
                    let folded = match c {
                        '\u{212a}' => 'k',
                        '\u{17f}' => 's',
                        c => c.to_ascii_lowercase(),
                    };
                    if !folded.is_ascii() || key.len == key.buf.len() {
                        // No field name has such a character or length: match nothing.
                        key.len = 0;
                        break;
                    }
                    key.buf[key.len] = folded as u8;
                    key.len += 1;
                }
                Ok(key)
            }
        }
        d.deserialize_identifier(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(raw: &[u8]) -> String {
        let mut v = Vec::new();
        write_string(raw, GoJsonFlavor::default(), &mut v);
        String::from_utf8(v).unwrap()
    }

    fn json_latest(raw: &[u8]) -> String {
        let mut v = Vec::new();
        write_string(raw, GoJsonFlavor::RESTIC_LATEST, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn json_string_go_1_19_vs_1_22() {
        // Bytes restic 0.14 stored for a symlink target b"ctl\x08\x0c\x01<&>\u2028".
        let raw = b"ctl\x08\x0c\x01<&>\xe2\x80\xa8";
        assert_eq!(json(raw), r#""ctl\u0008\u000c\u0001\u003c\u0026\u003e\u2028""#);
        assert_eq!(json_latest(raw), r#""ctl\b\f\u0001\u003c\u0026\u003e\u2028""#);
        assert_eq!(json(b"bad\xfex"), r#""bad\ufffdx""#);
        assert_eq!(json(b"\xe2\x82A\xf0\x9f\x98"), r#""\ufffd\ufffdA\ufffd\ufffd\ufffd""#);
        assert_eq!(
            json("\u{7f}\u{fffd}\u{2029}é\"\\\n\r\t\x1f".as_bytes()),
            "\"\u{7f}\u{fffd}\\u2029é\\\"\\\\\\n\\r\\t\\u001f\""
        );
    }

    #[test]
    fn base64_like_go() {
        let mut out = Vec::new();
        write_bytes(b"bar\x00\xff", &mut out);
        assert_eq!(out, br#""YmFyAP8=""#);
        out.clear();
        write_bytes(b"", &mut out);
        assert_eq!(out, br#""""#);
        assert_eq!(decode_bytes("YmFyAP8=").unwrap(), b"bar\x00\xff");
        assert_eq!(decode_bytes("YmFy\r\nAP8=").unwrap(), b"bar\x00\xff");
        assert_eq!(decode_bytes("YR==").unwrap(), b"a"); // trailing bits tolerated
        assert!(decode_bytes("YmFyAP8").is_err());
        assert!(decode_bytes("Ym!y").is_err());
    }

    #[test]
    fn compact_like_go() {
        let mut out = Vec::new();
        compact("{ \"a\" : \"<x> &\u{2028}\\\" }\" ,\n \"b\":[1, 2] }", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":"\u003cx\u003e \u0026\u2028\" }","b":[1,2]}"#);
    }
}
