//! Sizes on the command line, as restic takes them: bytes, or a number with a k, m, g or t
//! suffix (powers of 1024, either case).

/// A size in bytes, parsed by clap with [`parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

/// Parses a size; a value that does not fit in 64 bits is an error, never a wrapped number
/// (which would exclude every file).
pub fn parse(s: &str) -> Result<Size, String> {
    let t = s.trim();
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        Some('b') => (&t[..t.len() - 1], 0),
        _ => (t, 0),
    };
    let n: u64 = num.parse().map_err(|_| "not a size: bytes, or a number with k, m, g or t".to_string())?;
    n.checked_mul(1 << shift).map(Size).ok_or_else(|| format!("too large: at most {} bytes", u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse("10"), Ok(Size(10)));
        assert_eq!(parse("2k"), Ok(Size(2048)));
        assert_eq!(parse("3M"), Ok(Size(3 << 20)));
        assert_eq!(parse("16777215t"), Ok(Size(16_777_215 << 40)));
        assert!(parse("16777216t").unwrap_err().contains("too large"));
        assert!(parse("18446744073709551616").is_err());
        assert!(parse("x").is_err());
        assert!(parse("").is_err());
        assert!(parse("-1k").is_err());
    }
}
