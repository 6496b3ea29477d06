//! Go's string encodings, reproduced byte for byte: `strconv.Quote`/`Unquote` (restic stores
//! node names Go-quoted) and `encoding/json` string escaping (the tree blob id is the hash of
//! Go's JSON, so any deviation costs deduplication with restic).
//!
//! The printable-rune table is Go 1.19's (Unicode 13.0), the Go that built Debian's restic
//! 0.14. It was measured, not guessed: restic 0.14 backed up file names holding every code
//! point, and the runes its `strconv.Quote` escaped are exactly the ranges in `NOT_PRINT`.
//! Go ≥ 1.21 (Unicode 15.0) also prints the runes that Unicode 14 and 15 assigned, so a name
//! holding one of those gets a different tree id from a restic built with Go ≥ 1.21 than from
//! restic 0.14; both forms unquote to the same bytes.

use std::borrow::Cow;

use base64::Engine;

use crate::error::{Error, Result};

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

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Splits `bytes` the way Go walks a string with `utf8.DecodeRune`: each valid rune is one
/// `Ok(&str)` run, and every byte that does not start a valid rune is one `Err(byte)` (Go
/// advances a single byte on invalid input, so `e2 82 41` is two bad bytes, then `A`).
fn for_each_utf8_run(mut bytes: &[u8], mut f: impl FnMut(std::result::Result<&str, u8>)) {
    while !bytes.is_empty() {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                f(Ok(s));
                return;
            }
            Err(e) => {
                let good = e.valid_up_to();
                if good > 0 {
                    // Safe by construction: from_utf8 vouched for this prefix.
                    f(Ok(std::str::from_utf8(&bytes[..good]).unwrap_or_default()));
                }
                // Every byte of a maximal invalid subpart is invalid on its own in Go's eyes
                // too (the ones after the first are continuation bytes).
                let bad = e.error_len().unwrap_or(bytes.len() - good);
                for &b in &bytes[good..good + bad] {
                    f(Err(b));
                }
                bytes = &bytes[good + bad..];
            }
        }
    }
}

/// Turns bytes into a string the way Go does when it converts invalid UTF-8 (JSON encoding,
/// `[]rune` conversion): every invalid byte becomes one U+FFFD. Borrows when `bytes` is valid.
pub fn go_lossy_utf8(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for_each_utf8_run(bytes, |run| match run {
        Ok(s) => out.push_str(s),
        Err(_) => out.push('\u{fffd}'),
    });
    Cow::Owned(out)
}

/// Go's `strconv.IsPrint` as of Go 1.19: letters, marks, numbers, punctuation, symbols and the
/// ASCII space. Other spaces, controls, format characters, private use and unassigned code
/// points are not printable.
pub fn go_is_print(c: char) -> bool {
    let c = c as u32;
    if c < 0x80 {
        return (0x20..0x7f).contains(&c);
    }
    NOT_PRINT
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_err()
}

fn push_hex(out: &mut String, prefix: &str, v: u32, digits: u32) {
    out.push_str(prefix);
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (4 * i)) & 0xf) as usize] as char);
    }
}

/// Go's `strconv.Quote(raw)` without the surrounding quotes: how restic stores a node name.
/// Invalid UTF-8 bytes become `\xHH`, so the quoted text is always valid UTF-8 and the raw
/// bytes survive the trip through JSON.
pub fn go_quote(raw: &[u8], out: &mut String) {
    out.reserve(raw.len());
    for_each_utf8_run(raw, |run| match run {
        Err(b) => push_hex(out, "\\x", b as u32, 2),
        Ok(s) => {
            for c in s.chars() {
                match c {
                    '"' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    _ if go_is_print(c) => out.push(c),
                    '\u{7}' => out.push_str("\\a"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{b}' => out.push_str("\\v"),
                    _ if (c as u32) < 0x20 || c == '\u{7f}' => push_hex(out, "\\x", c as u32, 2),
                    _ if (c as u32) < 0x10000 => push_hex(out, "\\u", c as u32, 4),
                    _ => push_hex(out, "\\U", c as u32, 8),
                }
            }
        }
    });
}

fn hex_value(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + (d as char).to_digit(16)?))
}

/// The inverse of [`go_quote`]: Go's `strconv.Unquote` applied to `"` + `quoted` + `"`.
///
/// Accepts every escape Go accepts inside a double-quoted string (`\a \b \f \n \r \t \v \\ \"`,
/// `\xHH` and octal `\NNN` for single bytes, `\uHHHH` and `\UHHHHHHHH` for runes) and rejects
/// what Go rejects, so we refuse exactly the names restic cannot read: an unescaped `"` or
/// newline, `\'` (only valid in Go rune literals), a surrogate or out-of-range `\u`/`\U`, an
/// octal value above 255, an unknown escape, a truncated escape.
pub fn go_unquote(quoted: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::format(format!("Go-quoted string {quoted:?}: {why}"));
    let b = quoted.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => return Err(bad("unescaped '\"'")),
            b'\n' => return Err(bad("unescaped newline")),
            b'\\' => {}
            _ => {
                out.push(c);
                i += 1;
                continue;
            }
        }
        let Some(&e) = b.get(i + 1) else {
            return Err(bad("ends in a lone backslash"));
        };
        i += 2;
        let simple = match e {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(0xc),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0xb),
            b'\\' => Some(b'\\'),
            b'"' => Some(b'"'),
            _ => None,
        };
        if let Some(v) = simple {
            out.push(v);
            continue;
        }
        match e {
            b'x' | b'u' | b'U' => {
                let n = match e {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let v =
                    b.get(i..i + n).and_then(hex_value).ok_or_else(|| bad("truncated or non-hex escape"))?;
                i += n;
                if e == b'x' {
                    // \x is a byte, not a rune: this is how invalid UTF-8 survives.
                    out.push(v as u8);
                } else {
                    let ch = char::from_u32(v).ok_or_else(|| bad("escape is not a valid rune"))?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
            }
            b'0'..=b'7' => {
                let digits = b.get(i - 1..i + 2).ok_or_else(|| bad("truncated octal escape"))?;
                let mut v = 0u32;
                for &d in digits {
                    if !(b'0'..=b'7').contains(&d) {
                        return Err(bad("non-octal digit in octal escape"));
                    }
                    v = v * 8 + (d - b'0') as u32;
                }
                if v > 255 {
                    return Err(bad("octal escape above \\377"));
                }
                out.push(v as u8);
                i += 2;
            }
            _ => return Err(bad("unknown escape")),
        }
    }
    Ok(out)
}

/// Go `encoding/json`'s encoding of a string (quotes included) as restic 0.14 writes it: see
/// [`go_json_string_flavor`].
pub fn go_json_string(s: &[u8], out: &mut Vec<u8>) {
    go_json_string_flavor(s, GoJsonFlavor::default(), out)
}

/// Go `encoding/json`'s encoding of a string, quotes included, with HTML escaping on (as
/// `json.Marshal` does): `"` and `\` backslashed; `\n \r \t` short; `\b \f` short only for
/// Go ≥ 1.22; other control bytes and `< > &` as `\u00XX`; U+2028/U+2029 escaped; each invalid
/// UTF-8 byte as `\ufffd`; DEL and all other valid runes raw.
pub fn go_json_string_flavor(s: &[u8], flavor: GoJsonFlavor, out: &mut Vec<u8>) {
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
pub fn go_json_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
    let n = base64::engine::general_purpose::STANDARD.encode_slice(b, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
    out.push(b'"');
}

/// Decodes a JSON `[]byte` value as Go does: standard alphabet, padding required, `\r` and `\n`
/// ignored, non-zero trailing bits tolerated.
pub fn go_base64_decode(s: &str) -> Result<Vec<u8>> {
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
pub fn go_json_compact(raw: &str, out: &mut Vec<u8>) {
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

/// Runes at or above U+0080 that Go 1.19's `strconv.IsPrint` rejects, as inclusive ranges
/// (surrogates included where they join two ranges; they never reach the lookup). Derived by
/// backing up a file name for every code point with restic 0.14 and collecting the escaped
/// ones. Apart from the runes Unicode 14 assigned (unassigned, hence escaped, in Go 1.19) it is
/// exactly the categories Cc, Cf, Co, Cn, Zs, Zl and Zp of Unicode 14.0.
#[rustfmt::skip]
static NOT_PRINT: &[(u32, u32)] = &[
    (0x80, 0xa0), (0xad, 0xad), (0x378, 0x379), (0x380, 0x383), (0x38b, 0x38b), (0x38d, 0x38d),
    (0x3a2, 0x3a2), (0x530, 0x530), (0x557, 0x558), (0x58b, 0x58c), (0x590, 0x590), (0x5c8, 0x5cf),
    (0x5eb, 0x5ee), (0x5f5, 0x605), (0x61c, 0x61d), (0x6dd, 0x6dd), (0x70e, 0x70f), (0x74b, 0x74c),
    (0x7b2, 0x7bf), (0x7fb, 0x7fc), (0x82e, 0x82f), (0x83f, 0x83f), (0x85c, 0x85d), (0x85f, 0x85f),
    (0x86b, 0x89f), (0x8b5, 0x8b5), (0x8c8, 0x8d2), (0x8e2, 0x8e2), (0x984, 0x984), (0x98d, 0x98e),
    (0x991, 0x992), (0x9a9, 0x9a9), (0x9b1, 0x9b1), (0x9b3, 0x9b5), (0x9ba, 0x9bb), (0x9c5, 0x9c6),
    (0x9c9, 0x9ca), (0x9cf, 0x9d6), (0x9d8, 0x9db), (0x9de, 0x9de), (0x9e4, 0x9e5), (0x9ff, 0xa00),
    (0xa04, 0xa04), (0xa0b, 0xa0e), (0xa11, 0xa12), (0xa29, 0xa29), (0xa31, 0xa31), (0xa34, 0xa34),
    (0xa37, 0xa37), (0xa3a, 0xa3b), (0xa3d, 0xa3d), (0xa43, 0xa46), (0xa49, 0xa4a), (0xa4e, 0xa50),
    (0xa52, 0xa58), (0xa5d, 0xa5d), (0xa5f, 0xa65), (0xa77, 0xa80), (0xa84, 0xa84), (0xa8e, 0xa8e),
    (0xa92, 0xa92), (0xaa9, 0xaa9), (0xab1, 0xab1), (0xab4, 0xab4), (0xaba, 0xabb), (0xac6, 0xac6),
    (0xaca, 0xaca), (0xace, 0xacf), (0xad1, 0xadf), (0xae4, 0xae5), (0xaf2, 0xaf8), (0xb00, 0xb00),
    (0xb04, 0xb04), (0xb0d, 0xb0e), (0xb11, 0xb12), (0xb29, 0xb29), (0xb31, 0xb31), (0xb34, 0xb34),
    (0xb3a, 0xb3b), (0xb45, 0xb46), (0xb49, 0xb4a), (0xb4e, 0xb54), (0xb58, 0xb5b), (0xb5e, 0xb5e),
    (0xb64, 0xb65), (0xb78, 0xb81), (0xb84, 0xb84), (0xb8b, 0xb8d), (0xb91, 0xb91), (0xb96, 0xb98),
    (0xb9b, 0xb9b), (0xb9d, 0xb9d), (0xba0, 0xba2), (0xba5, 0xba7), (0xbab, 0xbad), (0xbba, 0xbbd),
    (0xbc3, 0xbc5), (0xbc9, 0xbc9), (0xbce, 0xbcf), (0xbd1, 0xbd6), (0xbd8, 0xbe5), (0xbfb, 0xbff),
    (0xc0d, 0xc0d), (0xc11, 0xc11), (0xc29, 0xc29), (0xc3a, 0xc3c), (0xc45, 0xc45), (0xc49, 0xc49),
    (0xc4e, 0xc54), (0xc57, 0xc57), (0xc5b, 0xc5f), (0xc64, 0xc65), (0xc70, 0xc76), (0xc8d, 0xc8d),
    (0xc91, 0xc91), (0xca9, 0xca9), (0xcb4, 0xcb4), (0xcba, 0xcbb), (0xcc5, 0xcc5), (0xcc9, 0xcc9),
    (0xcce, 0xcd4), (0xcd7, 0xcdd), (0xcdf, 0xcdf), (0xce4, 0xce5), (0xcf0, 0xcf0), (0xcf3, 0xcff),
    (0xd0d, 0xd0d), (0xd11, 0xd11), (0xd45, 0xd45), (0xd49, 0xd49), (0xd50, 0xd53), (0xd64, 0xd65),
    (0xd80, 0xd80), (0xd84, 0xd84), (0xd97, 0xd99), (0xdb2, 0xdb2), (0xdbc, 0xdbc), (0xdbe, 0xdbf),
    (0xdc7, 0xdc9), (0xdcb, 0xdce), (0xdd5, 0xdd5), (0xdd7, 0xdd7), (0xde0, 0xde5), (0xdf0, 0xdf1),
    (0xdf5, 0xe00), (0xe3b, 0xe3e), (0xe5c, 0xe80), (0xe83, 0xe83), (0xe85, 0xe85), (0xe8b, 0xe8b),
    (0xea4, 0xea4), (0xea6, 0xea6), (0xebe, 0xebf), (0xec5, 0xec5), (0xec7, 0xec7), (0xece, 0xecf),
    (0xeda, 0xedb), (0xee0, 0xeff), (0xf48, 0xf48), (0xf6d, 0xf70), (0xf98, 0xf98), (0xfbd, 0xfbd),
    (0xfcd, 0xfcd), (0xfdb, 0xfff), (0x10c6, 0x10c6), (0x10c8, 0x10cc), (0x10ce, 0x10cf),
    (0x1249, 0x1249), (0x124e, 0x124f), (0x1257, 0x1257), (0x1259, 0x1259), (0x125e, 0x125f),
    (0x1289, 0x1289), (0x128e, 0x128f), (0x12b1, 0x12b1), (0x12b6, 0x12b7), (0x12bf, 0x12bf),
    (0x12c1, 0x12c1), (0x12c6, 0x12c7), (0x12d7, 0x12d7), (0x1311, 0x1311), (0x1316, 0x1317),
    (0x135b, 0x135c), (0x137d, 0x137f), (0x139a, 0x139f), (0x13f6, 0x13f7), (0x13fe, 0x13ff),
    (0x1680, 0x1680), (0x169d, 0x169f), (0x16f9, 0x16ff), (0x170d, 0x170d), (0x1715, 0x171f),
    (0x1737, 0x173f), (0x1754, 0x175f), (0x176d, 0x176d), (0x1771, 0x1771), (0x1774, 0x177f),
    (0x17de, 0x17df), (0x17ea, 0x17ef), (0x17fa, 0x17ff), (0x180e, 0x180f), (0x181a, 0x181f),
    (0x1879, 0x187f), (0x18ab, 0x18af), (0x18f6, 0x18ff), (0x191f, 0x191f), (0x192c, 0x192f),
    (0x193c, 0x193f), (0x1941, 0x1943), (0x196e, 0x196f), (0x1975, 0x197f), (0x19ac, 0x19af),
    (0x19ca, 0x19cf), (0x19db, 0x19dd), (0x1a1c, 0x1a1d), (0x1a5f, 0x1a5f), (0x1a7d, 0x1a7e),
    (0x1a8a, 0x1a8f), (0x1a9a, 0x1a9f), (0x1aae, 0x1aaf), (0x1ac1, 0x1aff), (0x1b4c, 0x1b4f),
    (0x1b7d, 0x1b7f), (0x1bf4, 0x1bfb), (0x1c38, 0x1c3a), (0x1c4a, 0x1c4c), (0x1c89, 0x1c8f),
    (0x1cbb, 0x1cbc), (0x1cc8, 0x1ccf), (0x1cfb, 0x1cff), (0x1dfa, 0x1dfa), (0x1f16, 0x1f17),
    (0x1f1e, 0x1f1f), (0x1f46, 0x1f47), (0x1f4e, 0x1f4f), (0x1f58, 0x1f58), (0x1f5a, 0x1f5a),
    (0x1f5c, 0x1f5c), (0x1f5e, 0x1f5e), (0x1f7e, 0x1f7f), (0x1fb5, 0x1fb5), (0x1fc5, 0x1fc5),
    (0x1fd4, 0x1fd5), (0x1fdc, 0x1fdc), (0x1ff0, 0x1ff1), (0x1ff5, 0x1ff5), (0x1fff, 0x200f),
    (0x2028, 0x202f), (0x205f, 0x206f), (0x2072, 0x2073), (0x208f, 0x208f), (0x209d, 0x209f),
    (0x20c0, 0x20cf), (0x20f1, 0x20ff), (0x218c, 0x218f), (0x2427, 0x243f), (0x244b, 0x245f),
    (0x2b74, 0x2b75), (0x2b96, 0x2b96), (0x2c2f, 0x2c2f), (0x2c5f, 0x2c5f), (0x2cf4, 0x2cf8),
    (0x2d26, 0x2d26), (0x2d28, 0x2d2c), (0x2d2e, 0x2d2f), (0x2d68, 0x2d6e), (0x2d71, 0x2d7e),
    (0x2d97, 0x2d9f), (0x2da7, 0x2da7), (0x2daf, 0x2daf), (0x2db7, 0x2db7), (0x2dbf, 0x2dbf),
    (0x2dc7, 0x2dc7), (0x2dcf, 0x2dcf), (0x2dd7, 0x2dd7), (0x2ddf, 0x2ddf), (0x2e53, 0x2e7f),
    (0x2e9a, 0x2e9a), (0x2ef4, 0x2eff), (0x2fd6, 0x2fef), (0x2ffc, 0x3000), (0x3040, 0x3040),
    (0x3097, 0x3098), (0x3100, 0x3104), (0x3130, 0x3130), (0x318f, 0x318f), (0x31e4, 0x31ef),
    (0x321f, 0x321f), (0x9ffd, 0x9fff), (0xa48d, 0xa48f), (0xa4c7, 0xa4cf), (0xa62c, 0xa63f),
    (0xa6f8, 0xa6ff), (0xa7c0, 0xa7c1), (0xa7cb, 0xa7f4), (0xa82d, 0xa82f), (0xa83a, 0xa83f),
    (0xa878, 0xa87f), (0xa8c6, 0xa8cd), (0xa8da, 0xa8df), (0xa954, 0xa95e), (0xa97d, 0xa97f),
    (0xa9ce, 0xa9ce), (0xa9da, 0xa9dd), (0xa9ff, 0xa9ff), (0xaa37, 0xaa3f), (0xaa4e, 0xaa4f),
    (0xaa5a, 0xaa5b), (0xaac3, 0xaada), (0xaaf7, 0xab00), (0xab07, 0xab08), (0xab0f, 0xab10),
    (0xab17, 0xab1f), (0xab27, 0xab27), (0xab2f, 0xab2f), (0xab6c, 0xab6f), (0xabee, 0xabef),
    (0xabfa, 0xabff), (0xd7a4, 0xd7af), (0xd7c7, 0xd7ca), (0xd7fc, 0xf8ff), (0xfa6e, 0xfa6f),
    (0xfada, 0xfaff), (0xfb07, 0xfb12), (0xfb18, 0xfb1c), (0xfb37, 0xfb37), (0xfb3d, 0xfb3d),
    (0xfb3f, 0xfb3f), (0xfb42, 0xfb42), (0xfb45, 0xfb45), (0xfbc2, 0xfbd2), (0xfd40, 0xfd4f),
    (0xfd90, 0xfd91), (0xfdc8, 0xfdef), (0xfdfe, 0xfdff), (0xfe1a, 0xfe1f), (0xfe53, 0xfe53),
    (0xfe67, 0xfe67), (0xfe6c, 0xfe6f), (0xfe75, 0xfe75), (0xfefd, 0xff00), (0xffbf, 0xffc1),
    (0xffc8, 0xffc9), (0xffd0, 0xffd1), (0xffd8, 0xffd9), (0xffdd, 0xffdf), (0xffe7, 0xffe7),
    (0xffef, 0xfffb), (0xfffe, 0xffff), (0x1000c, 0x1000c), (0x10027, 0x10027), (0x1003b, 0x1003b),
    (0x1003e, 0x1003e), (0x1004e, 0x1004f), (0x1005e, 0x1007f), (0x100fb, 0x100ff),
    (0x10103, 0x10106), (0x10134, 0x10136), (0x1018f, 0x1018f), (0x1019d, 0x1019f),
    (0x101a1, 0x101cf), (0x101fe, 0x1027f), (0x1029d, 0x1029f), (0x102d1, 0x102df),
    (0x102fc, 0x102ff), (0x10324, 0x1032c), (0x1034b, 0x1034f), (0x1037b, 0x1037f),
    (0x1039e, 0x1039e), (0x103c4, 0x103c7), (0x103d6, 0x103ff), (0x1049e, 0x1049f),
    (0x104aa, 0x104af), (0x104d4, 0x104d7), (0x104fc, 0x104ff), (0x10528, 0x1052f),
    (0x10564, 0x1056e), (0x10570, 0x105ff), (0x10737, 0x1073f), (0x10756, 0x1075f),
    (0x10768, 0x107ff), (0x10806, 0x10807), (0x10809, 0x10809), (0x10836, 0x10836),
    (0x10839, 0x1083b), (0x1083d, 0x1083e), (0x10856, 0x10856), (0x1089f, 0x108a6),
    (0x108b0, 0x108df), (0x108f3, 0x108f3), (0x108f6, 0x108fa), (0x1091c, 0x1091e),
    (0x1093a, 0x1093e), (0x10940, 0x1097f), (0x109b8, 0x109bb), (0x109d0, 0x109d1),
    (0x10a04, 0x10a04), (0x10a07, 0x10a0b), (0x10a14, 0x10a14), (0x10a18, 0x10a18),
    (0x10a36, 0x10a37), (0x10a3b, 0x10a3e), (0x10a49, 0x10a4f), (0x10a59, 0x10a5f),
    (0x10aa0, 0x10abf), (0x10ae7, 0x10aea), (0x10af7, 0x10aff), (0x10b36, 0x10b38),
    (0x10b56, 0x10b57), (0x10b73, 0x10b77), (0x10b92, 0x10b98), (0x10b9d, 0x10ba8),
    (0x10bb0, 0x10bff), (0x10c49, 0x10c7f), (0x10cb3, 0x10cbf), (0x10cf3, 0x10cf9),
    (0x10d28, 0x10d2f), (0x10d3a, 0x10e5f), (0x10e7f, 0x10e7f), (0x10eaa, 0x10eaa),
    (0x10eae, 0x10eaf), (0x10eb2, 0x10eff), (0x10f28, 0x10f2f), (0x10f5a, 0x10faf),
    (0x10fcc, 0x10fdf), (0x10ff7, 0x10fff), (0x1104e, 0x11051), (0x11070, 0x1107e),
    (0x110bd, 0x110bd), (0x110c2, 0x110cf), (0x110e9, 0x110ef), (0x110fa, 0x110ff),
    (0x11135, 0x11135), (0x11148, 0x1114f), (0x11177, 0x1117f), (0x111e0, 0x111e0),
    (0x111f5, 0x111ff), (0x11212, 0x11212), (0x1123f, 0x1127f), (0x11287, 0x11287),
    (0x11289, 0x11289), (0x1128e, 0x1128e), (0x1129e, 0x1129e), (0x112aa, 0x112af),
    (0x112eb, 0x112ef), (0x112fa, 0x112ff), (0x11304, 0x11304), (0x1130d, 0x1130e),
    (0x11311, 0x11312), (0x11329, 0x11329), (0x11331, 0x11331), (0x11334, 0x11334),
    (0x1133a, 0x1133a), (0x11345, 0x11346), (0x11349, 0x1134a), (0x1134e, 0x1134f),
    (0x11351, 0x11356), (0x11358, 0x1135c), (0x11364, 0x11365), (0x1136d, 0x1136f),
    (0x11375, 0x113ff), (0x1145c, 0x1145c), (0x11462, 0x1147f), (0x114c8, 0x114cf),
    (0x114da, 0x1157f), (0x115b6, 0x115b7), (0x115de, 0x115ff), (0x11645, 0x1164f),
    (0x1165a, 0x1165f), (0x1166d, 0x1167f), (0x116b9, 0x116bf), (0x116ca, 0x116ff),
    (0x1171b, 0x1171c), (0x1172c, 0x1172f), (0x11740, 0x117ff), (0x1183c, 0x1189f),
    (0x118f3, 0x118fe), (0x11907, 0x11908), (0x1190a, 0x1190b), (0x11914, 0x11914),
    (0x11917, 0x11917), (0x11936, 0x11936), (0x11939, 0x1193a), (0x11947, 0x1194f),
    (0x1195a, 0x1199f), (0x119a8, 0x119a9), (0x119d8, 0x119d9), (0x119e5, 0x119ff),
    (0x11a48, 0x11a4f), (0x11aa3, 0x11abf), (0x11af9, 0x11bff), (0x11c09, 0x11c09),
    (0x11c37, 0x11c37), (0x11c46, 0x11c4f), (0x11c6d, 0x11c6f), (0x11c90, 0x11c91),
    (0x11ca8, 0x11ca8), (0x11cb7, 0x11cff), (0x11d07, 0x11d07), (0x11d0a, 0x11d0a),
    (0x11d37, 0x11d39), (0x11d3b, 0x11d3b), (0x11d3e, 0x11d3e), (0x11d48, 0x11d4f),
    (0x11d5a, 0x11d5f), (0x11d66, 0x11d66), (0x11d69, 0x11d69), (0x11d8f, 0x11d8f),
    (0x11d92, 0x11d92), (0x11d99, 0x11d9f), (0x11daa, 0x11edf), (0x11ef9, 0x11faf),
    (0x11fb1, 0x11fbf), (0x11ff2, 0x11ffe), (0x1239a, 0x123ff), (0x1246f, 0x1246f),
    (0x12475, 0x1247f), (0x12544, 0x12fff), (0x1342f, 0x143ff), (0x14647, 0x167ff),
    (0x16a39, 0x16a3f), (0x16a5f, 0x16a5f), (0x16a6a, 0x16a6d), (0x16a70, 0x16acf),
    (0x16aee, 0x16aef), (0x16af6, 0x16aff), (0x16b46, 0x16b4f), (0x16b5a, 0x16b5a),
    (0x16b62, 0x16b62), (0x16b78, 0x16b7c), (0x16b90, 0x16e3f), (0x16e9b, 0x16eff),
    (0x16f4b, 0x16f4e), (0x16f88, 0x16f8e), (0x16fa0, 0x16fdf), (0x16fe5, 0x16fef),
    (0x16ff2, 0x16fff), (0x187f8, 0x187ff), (0x18cd6, 0x18cff), (0x18d09, 0x1afff),
    (0x1b11f, 0x1b14f), (0x1b153, 0x1b163), (0x1b168, 0x1b16f), (0x1b2fc, 0x1bbff),
    (0x1bc6b, 0x1bc6f), (0x1bc7d, 0x1bc7f), (0x1bc89, 0x1bc8f), (0x1bc9a, 0x1bc9b),
    (0x1bca0, 0x1cfff), (0x1d0f6, 0x1d0ff), (0x1d127, 0x1d128), (0x1d173, 0x1d17a),
    (0x1d1e9, 0x1d1ff), (0x1d246, 0x1d2df), (0x1d2f4, 0x1d2ff), (0x1d357, 0x1d35f),
    (0x1d379, 0x1d3ff), (0x1d455, 0x1d455), (0x1d49d, 0x1d49d), (0x1d4a0, 0x1d4a1),
    (0x1d4a3, 0x1d4a4), (0x1d4a7, 0x1d4a8), (0x1d4ad, 0x1d4ad), (0x1d4ba, 0x1d4ba),
    (0x1d4bc, 0x1d4bc), (0x1d4c4, 0x1d4c4), (0x1d506, 0x1d506), (0x1d50b, 0x1d50c),
    (0x1d515, 0x1d515), (0x1d51d, 0x1d51d), (0x1d53a, 0x1d53a), (0x1d53f, 0x1d53f),
    (0x1d545, 0x1d545), (0x1d547, 0x1d549), (0x1d551, 0x1d551), (0x1d6a6, 0x1d6a7),
    (0x1d7cc, 0x1d7cd), (0x1da8c, 0x1da9a), (0x1daa0, 0x1daa0), (0x1dab0, 0x1dfff),
    (0x1e007, 0x1e007), (0x1e019, 0x1e01a), (0x1e022, 0x1e022), (0x1e025, 0x1e025),
    (0x1e02b, 0x1e0ff), (0x1e12d, 0x1e12f), (0x1e13e, 0x1e13f), (0x1e14a, 0x1e14d),
    (0x1e150, 0x1e2bf), (0x1e2fa, 0x1e2fe), (0x1e300, 0x1e7ff), (0x1e8c5, 0x1e8c6),
    (0x1e8d7, 0x1e8ff), (0x1e94c, 0x1e94f), (0x1e95a, 0x1e95d), (0x1e960, 0x1ec70),
    (0x1ecb5, 0x1ed00), (0x1ed3e, 0x1edff), (0x1ee04, 0x1ee04), (0x1ee20, 0x1ee20),
    (0x1ee23, 0x1ee23), (0x1ee25, 0x1ee26), (0x1ee28, 0x1ee28), (0x1ee33, 0x1ee33),
    (0x1ee38, 0x1ee38), (0x1ee3a, 0x1ee3a), (0x1ee3c, 0x1ee41), (0x1ee43, 0x1ee46),
    (0x1ee48, 0x1ee48), (0x1ee4a, 0x1ee4a), (0x1ee4c, 0x1ee4c), (0x1ee50, 0x1ee50),
    (0x1ee53, 0x1ee53), (0x1ee55, 0x1ee56), (0x1ee58, 0x1ee58), (0x1ee5a, 0x1ee5a),
    (0x1ee5c, 0x1ee5c), (0x1ee5e, 0x1ee5e), (0x1ee60, 0x1ee60), (0x1ee63, 0x1ee63),
    (0x1ee65, 0x1ee66), (0x1ee6b, 0x1ee6b), (0x1ee73, 0x1ee73), (0x1ee78, 0x1ee78),
    (0x1ee7d, 0x1ee7d), (0x1ee7f, 0x1ee7f), (0x1ee8a, 0x1ee8a), (0x1ee9c, 0x1eea0),
    (0x1eea4, 0x1eea4), (0x1eeaa, 0x1eeaa), (0x1eebc, 0x1eeef), (0x1eef2, 0x1efff),
    (0x1f02c, 0x1f02f), (0x1f094, 0x1f09f), (0x1f0af, 0x1f0b0), (0x1f0c0, 0x1f0c0),
    (0x1f0d0, 0x1f0d0), (0x1f0f6, 0x1f0ff), (0x1f1ae, 0x1f1e5), (0x1f203, 0x1f20f),
    (0x1f23c, 0x1f23f), (0x1f249, 0x1f24f), (0x1f252, 0x1f25f), (0x1f266, 0x1f2ff),
    (0x1f6d8, 0x1f6df), (0x1f6ed, 0x1f6ef), (0x1f6fd, 0x1f6ff), (0x1f774, 0x1f77f),
    (0x1f7d9, 0x1f7df), (0x1f7ec, 0x1f7ff), (0x1f80c, 0x1f80f), (0x1f848, 0x1f84f),
    (0x1f85a, 0x1f85f), (0x1f888, 0x1f88f), (0x1f8ae, 0x1f8af), (0x1f8b2, 0x1f8ff),
    (0x1f979, 0x1f979), (0x1f9cc, 0x1f9cc), (0x1fa54, 0x1fa5f), (0x1fa6e, 0x1fa6f),
    (0x1fa75, 0x1fa77), (0x1fa7b, 0x1fa7f), (0x1fa87, 0x1fa8f), (0x1faa9, 0x1faaf),
    (0x1fab7, 0x1fabf), (0x1fac3, 0x1facf), (0x1fad7, 0x1faff), (0x1fb93, 0x1fb93),
    (0x1fbcb, 0x1fbef), (0x1fbfa, 0x1ffff), (0x2a6de, 0x2a6ff), (0x2b735, 0x2b73f),
    (0x2b81e, 0x2b81f), (0x2cea2, 0x2ceaf), (0x2ebe1, 0x2f7ff), (0x2fa1e, 0x2ffff),
    (0x3134b, 0xe00ff), (0xe01f0, 0x10ffff),
];

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn quote(raw: &[u8]) -> String {
        let mut s = String::new();
        go_quote(raw, &mut s);
        s
    }

    fn json(raw: &[u8]) -> String {
        let mut v = Vec::new();
        go_json_string(raw, &mut v);
        String::from_utf8(v).unwrap()
    }

    fn json_latest(raw: &[u8]) -> String {
        let mut v = Vec::new();
        go_json_string_flavor(raw, GoJsonFlavor::RESTIC_LATEST, &mut v);
        String::from_utf8(v).unwrap()
    }

    /// FORMAT.md §10.5: raw name bytes → Go-quoted text → the bytes inside the tree JSON.
    #[test]
    fn name_table_rows() {
        let rows: &[(&[u8], &str, &str)] = &[
            (b"a\"b", r#"a\"b"#, r#""a\\\"b""#),
            (b"a\\b", r"a\\b", r#""a\\\\b""#),
            (b"\t", r"\t", r#""\\t""#),
            (b"\n", r"\n", r#""\\n""#),
            (b"\x07", r"\a", r#""\\a""#),
            (b"\x01\x7f", r"\x01\x7f", r#""\\x01\\x7f""#),
            (b"inv\xfe.txt", r"inv\xfe.txt", r#""inv\\xfe.txt""#),
            ("\u{a0}".as_bytes(), r"\u00a0", r#""\\u00a0""#),
            ("\u{200b}".as_bytes(), r"\u200b", r#""\\u200b""#),
            ("\u{2028}".as_bytes(), r"\u2028", r#""\\u2028""#),
            (b"<a>&", "<a>&", r#""\u003ca\u003e\u0026""#),
            ("ünï€".as_bytes(), "ünï€", "\"ünï€\""),
            ("😀".as_bytes(), "😀", "\"😀\""),
        ];
        for &(raw, quoted, in_json) in rows {
            assert_eq!(quote(raw), quoted, "quote {raw:?}");
            assert_eq!(json(quoted.as_bytes()), in_json, "json of {quoted:?}");
            assert_eq!(go_unquote(quoted).unwrap(), raw, "unquote {quoted:?}");
        }
    }

    #[test]
    fn quote_other_escapes() {
        assert_eq!(quote(b"\x08\x0c\r\x0b\x00\x1f"), r"\b\f\r\v\x00\x1f");
        // C1 controls and format characters are runes, so \u; astral non-printables get \U.
        assert_eq!(quote("\u{85}\u{ad}\u{200d}\u{feff}".as_bytes()), r"\u0085\u00ad\u200d\ufeff");
        assert_eq!(quote("\u{e0001}\u{10ffff}".as_bytes()), r"\U000e0001\U0010ffff");
        // Go walks invalid UTF-8 byte by byte: a truncated sequence is two escapes, not one.
        assert_eq!(quote(b"\xe2\x82A\xed\xa0\x80"), r"\xe2\x82A\xed\xa0\x80");
        // A real U+FFFD is printable and stays; only invalid bytes become \x.
        assert_eq!(quote("\u{fffd}".as_bytes()), "\u{fffd}");
        // Combining marks and CJK are printable.
        assert_eq!(quote("e\u{301}中".as_bytes()), "e\u{301}中");
    }

    #[test]
    fn is_print_matches_go_1_19() {
        for c in [' ', 'a', '~', 'é', '\u{301}', '中', '😀', '\u{fffd}', '€', '\u{2028}'] {
            assert_eq!(go_is_print(c), c != '\u{2028}', "{c:?}");
        }
        // Spaces other than ASCII space, controls, format, private use, unassigned in Unicode
        // 13, and a rune Unicode 14 added (U+061D) are all escaped by Go 1.19.
        for c in [
            '\u{7f}',
            '\u{a0}',
            '\u{ad}',
            '\u{3000}',
            '\u{200b}',
            '\u{202e}',
            '\u{e000}',
            '\u{378}',
            '\u{61d}',
            '\u{f0000}',
            '\u{e0001}',
            '\u{1fffe}',
        ] {
            assert!(!go_is_print(c), "{c:?}");
        }
        // Rust's own properties agree wherever they are decisive.
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            if c.is_control() || (c.is_whitespace() && c != ' ') {
                assert!(!go_is_print(c), "{c:?}");
            }
        }
    }

    #[test]
    fn not_print_count_matches_restic_0_14_measurement() {
        // restic 0.14 escaped 968,351 of the code points from U+0080 up (surrogates aside).
        let n = (0x80..=0x10ffffu32).filter_map(char::from_u32).filter(|&c| !go_is_print(c)).count();
        assert_eq!(n, 968_351);
    }

    #[test]
    fn not_print_table_is_sorted() {
        for w in NOT_PRINT.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 + 1 < w[1].0, "{w:x?}");
        }
    }

    #[test]
    fn unquote_escapes() {
        assert_eq!(go_unquote(r"\101\377\x41\xFF\0007").unwrap(), b"A\xffA\xff\x007");
        assert_eq!(go_unquote(r#"\a\b\f\n\r\t\v\\\""#).unwrap(), b"\x07\x08\x0c\n\r\t\x0b\\\"");
        assert_eq!(go_unquote(r"\u00e9\U0001F600").unwrap(), "é😀".as_bytes());
        assert_eq!(go_unquote("plain ü").unwrap(), "plain ü".as_bytes());
        assert_eq!(go_unquote("").unwrap(), b"");
    }

    #[test]
    fn unquote_rejects_what_go_rejects() {
        for bad in [
            "a\"b",
            "a\nb",
            r"\'",
            r"\q",
            r"\x4",
            r"\x4g",
            r"\u12",
            r"\ud800",
            r"\U00110000",
            r"\400",
            r"\18",
            r"\7",
            "end\\",
        ] {
            assert!(go_unquote(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn quote_unquote_round_trip_random_bytes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: Vec<char> = "aé中😀\u{a0}\u{200d}\u{2028}\"\\\n\t\u{7f}\u{e000}".chars().collect();
        for _ in 0..2000 {
            let len = rng.gen_range(0..24);
            let mut raw = Vec::new();
            for _ in 0..len {
                if rng.gen_bool(0.5) {
                    raw.push(rng.gen());
                } else {
                    let c = alphabet[rng.gen_range(0..alphabet.len())];
                    raw.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
            }
            let q = quote(&raw);
            assert!(q.chars().all(go_is_print), "{q}");
            assert_eq!(go_unquote(&q).unwrap(), raw, "{q}");
        }
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
    fn lossy_utf8_is_per_byte() {
        assert_eq!(go_lossy_utf8(b"ok"), "ok");
        assert!(matches!(go_lossy_utf8(b"ok"), Cow::Borrowed(_)));
        assert_eq!(go_lossy_utf8(b"a\xe2\x82b\xff"), "a\u{fffd}\u{fffd}b\u{fffd}");
    }

    #[test]
    fn base64_like_go() {
        let mut out = Vec::new();
        go_json_bytes(b"bar\x00\xff", &mut out);
        assert_eq!(out, br#""YmFyAP8=""#);
        out.clear();
        go_json_bytes(b"", &mut out);
        assert_eq!(out, br#""""#);
        assert_eq!(go_base64_decode("YmFyAP8=").unwrap(), b"bar\x00\xff");
        assert_eq!(go_base64_decode("YmFy\r\nAP8=").unwrap(), b"bar\x00\xff");
        assert_eq!(go_base64_decode("YR==").unwrap(), b"a"); // trailing bits tolerated
        assert!(go_base64_decode("YmFyAP8").is_err());
        assert!(go_base64_decode("Ym!y").is_err());
    }

    #[test]
    fn compact_like_go() {
        let mut out = Vec::new();
        go_json_compact("{ \"a\" : \"<x> &\u{2028}\\\" }\" ,\n \"b\":[1, 2] }", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":"\u003cx\u003e \u0026\u2028\" }","b":[1,2]}"#);
    }
}
