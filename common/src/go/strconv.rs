//! Go's `strconv.Quote` and `Unquote`: restic stores every node name Go-quoted, so a name's
//! bytes in the tree (and with them the tree id) depend on reproducing Go exactly. The
//! printable-rune table `Quote` consults is data in `printable.rs`.

use std::borrow::Cow;

use super::printable::NOT_PRINT;
use super::HEX;
use crate::error::{Error, Result};

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
pub fn lossy_utf8(bytes: &[u8]) -> Cow<'_, str> {
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
pub fn is_print(c: char) -> bool {
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
pub fn quote(raw: &[u8], out: &mut String) {
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
                    _ if is_print(c) => out.push(c),
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

/// The inverse of [`quote`]: Go's `strconv.Unquote` applied to `"` + `quoted` + `"`.
///
/// Accepts every escape Go accepts inside a double-quoted string (`\a \b \f \n \r \t \v \\ \"`,
/// `\xHH` and octal `\NNN` for single bytes, `\uHHHH` and `\UHHHHHHHH` for runes) and rejects
/// what Go rejects, so we refuse exactly the names restic cannot read: an unescaped `"` or
/// newline, `\'` (only valid in Go rune literals), a surrogate or out-of-range `\u`/`\U`, an
/// octal value above 255, an unknown escape, a truncated escape.
pub fn unquote(quoted: &str) -> Result<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::go::json::{write_string, GoJsonFlavor};
    use rand::{Rng, SeedableRng};

    fn quote(raw: &[u8]) -> String {
        let mut s = String::new();
        super::quote(raw, &mut s);
        s
    }

    fn json(raw: &[u8]) -> String {
        let mut v = Vec::new();
        write_string(raw, GoJsonFlavor::default(), &mut v);
        String::from_utf8(v).unwrap()
    }

    /// doc/format.md, "Trees", names: raw name bytes → Go-quoted text → the bytes inside the tree JSON.
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
            assert_eq!(unquote(quoted).unwrap(), raw, "unquote {quoted:?}");
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
            assert_eq!(is_print(c), c != '\u{2028}', "{c:?}");
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
            assert!(!is_print(c), "{c:?}");
        }
        // Rust's own properties agree wherever they are decisive.
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            if c.is_control() || (c.is_whitespace() && c != ' ') {
                assert!(!is_print(c), "{c:?}");
            }
        }
    }

    #[test]
    fn not_print_count_matches_restic_0_14_measurement() {
        // restic 0.14 escaped 968,351 of the code points from U+0080 up (surrogates aside).
        let n = (0x80..=0x10ffffu32).filter_map(char::from_u32).filter(|&c| !is_print(c)).count();
        assert_eq!(n, 968_351);
    }

    #[test]
    fn unquote_escapes() {
        assert_eq!(unquote(r"\101\377\x41\xFF\0007").unwrap(), b"A\xffA\xff\x007");
        assert_eq!(unquote(r#"\a\b\f\n\r\t\v\\\""#).unwrap(), b"\x07\x08\x0c\n\r\t\x0b\\\"");
        assert_eq!(unquote(r"\u00e9\U0001F600").unwrap(), "é😀".as_bytes());
        assert_eq!(unquote("plain ü").unwrap(), "plain ü".as_bytes());
        assert_eq!(unquote("").unwrap(), b"");
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
            assert!(unquote(bad).is_err(), "{bad:?} should be rejected");
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
            assert!(q.chars().all(is_print), "{q}");
            assert_eq!(unquote(&q).unwrap(), raw, "{q}");
        }
    }

    #[test]
    fn lossy_utf8_is_per_byte() {
        assert_eq!(lossy_utf8(b"ok"), "ok");
        assert!(matches!(lossy_utf8(b"ok"), Cow::Borrowed(_)));
        assert_eq!(lossy_utf8(b"a\xe2\x82b\xff"), "a\u{fffd}\u{fffd}b\u{fffd}");
    }
}
