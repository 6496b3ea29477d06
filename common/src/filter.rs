//! restic's include/exclude patterns: '/'-separated glob parts, each matched like Go's
//! `filepath.Match`, plus `**` for any number of directories. A pattern not starting with '/'
//! matches at any depth; any pattern also matches everything below what it matches.

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};

enum Part {
    Literal(String),
    Glob(GlobMatcher),
    Any, // "**"
}

impl Part {
    fn is_match(&self, s: &str) -> bool {
        match self {
            Part::Literal(l) => l == s,
            Part::Glob(g) => g.is_match(s),
            Part::Any => true,
        }
    }
}

/// One parsed pattern.
pub struct Pattern {
    parts: Vec<Part>,
    absolute: bool,
    text: String,
}

impl Pattern {
    /// Parses a pattern the way restic does (after cleaning `.`/`..` and repeated slashes).
    pub fn parse(pattern: &str) -> Result<Pattern> {
        let cleaned = clean(pattern);
        let absolute = cleaned.starts_with('/');
        let mut parts = Vec::new();
        for p in cleaned.split('/').skip(usize::from(absolute)) {
            if p == "**" {
                parts.push(Part::Any);
            } else if p.contains(['\\', '[', ']', '*', '?']) {
                let g = GlobBuilder::new(p)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| Error::Usage(format!("bad pattern {pattern:?}: {e}")))?;
                parts.push(Part::Glob(g.compile_matcher()));
            } else {
                parts.push(Part::Literal(p.to_string()));
            }
        }
        Ok(Pattern { parts, absolute, text: pattern.to_string() })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (components of an absolute path, without the leading empty one)
    /// matches: the pattern matches a run of components, starting at the first for an
    /// absolute pattern, anywhere for a relative one.
    pub fn matches(&self, path: &[&str]) -> bool {
        if self.absolute {
            return match_at(&self.parts, path);
        }
        (0..=path.len()).any(|start| match_at(&self.parts, &path[start..])) && !self.parts.is_empty()
    }

    /// Whether something below `path` could still match.
    pub fn child_may_match(&self, path: &[&str]) -> bool {
        if !self.absolute {
            return true;
        }
        // Every component so far must match the pattern's prefix, up to a `**`.
        for (i, comp) in path.iter().enumerate() {
            match self.parts.get(i) {
                None => return true,
                Some(Part::Any) => return true,
                Some(p) if !p.is_match(comp) => return false,
                Some(_) => {}
            }
        }
        true
    }
}

/// Matches `parts` against a prefix of `path`.
fn match_at(parts: &[Part], path: &[&str]) -> bool {
    match parts.first() {
        None => true,
        Some(Part::Any) => (0..=path.len()).any(|skip| match_at(&parts[1..], &path[skip..])),
        Some(p) => !path.is_empty() && p.is_match(path[0]) && match_at(&parts[1..], &path[1..]),
    }
}

/// Go's `filepath.Clean` for '/'-separated patterns.
fn clean(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !absolute {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

/// A list of patterns, as given by repeated `--include` or `--exclude` flags.
#[derive(Default)]
pub struct List(Vec<Pattern>);

impl List {
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<List> {
        let mut v = Vec::new();
        for p in patterns {
            if !p.as_ref().is_empty() {
                v.push(Pattern::parse(p.as_ref())?);
            }
        }
        Ok(List(v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Any pattern matches `path` ('/'-separated, leading '/').
    pub fn matches(&self, path: &str) -> bool {
        let comps = components(path);
        self.0.iter().any(|p| p.matches(&comps))
    }

    /// Any pattern could match something below `path`.
    pub fn child_may_match(&self, path: &str) -> bool {
        let comps = components(path);
        self.0.iter().any(|p| p.child_may_match(&comps))
    }
}

fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        List::parse(&[p]).unwrap().matches(s)
    }

    #[test]
    fn restic_semantics() {
        assert!(m("*.pdf", "/home/a.pdf"));
        assert!(m("*.pdf", "/x.pdf/inner"));
        assert!(!m("*.pdf", "/home/a.pdfx"));
        assert!(m("docs", "/home/docs/x/y"));
        assert!(m("/home", "/home/u/f"));
        assert!(!m("/u", "/home/u/f"));
        assert!(m("/home/*/f", "/home/u/f"));
        assert!(m("/home/**/f", "/home/a/b/c/f"));
        assert!(m("/home/**/f", "/home/f"));
        assert!(m("home/u", "/srv/home/u/z"));
        assert!(m("f?le", "/a/file"));
        assert!(m("[a-c]x", "/bx"));
        assert!(!m("[^a-c]x", "/bx"));
        let l = List::parse(&["/home/u/docs"]).unwrap();
        assert!(l.child_may_match("/home/u"));
        assert!(!l.child_may_match("/srv"));
        assert!(List::parse(&["*.x"]).unwrap().child_may_match("/any"));
        assert!(List::parse(&["/a/**/z"]).unwrap().child_may_match("/a/b/c"));
    }
}
