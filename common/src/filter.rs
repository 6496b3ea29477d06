//! restic's include/exclude patterns: '/'-separated glob parts, each matched like Go's
//! `filepath.Match`, plus `**` for any number of directories. A pattern not starting with '/'
//! matches at any depth; any pattern also matches everything below what it matches. A
//! pattern starting with '!' is negated: in a list, the last pattern that matches decides.

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
    negated: bool,
    text: String,
}

impl Pattern {
    /// Parses a pattern the way restic does (after cleaning `.`/`..` and repeated slashes).
    pub fn parse(pattern: &str) -> Result<Pattern> {
        let (negated, rest) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let cleaned = clean(rest);
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
        Ok(Pattern { parts, absolute, negated, text: pattern.to_string() })
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

/// Go's `filepath.Clean` for '/'-separated patterns and paths.
pub fn clean(p: &str) -> String {
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

    /// Whether the list matches `path` ('/'-separated, leading '/'): some pattern matches
    /// and no negated pattern after it does.
    pub fn matches(&self, path: &str) -> bool {
        self.check(path, false).0
    }

    /// Whether the list could match something below `path`.
    pub fn child_may_match(&self, path: &str) -> bool {
        self.check(path, true).1
    }

    /// (matches, could match below), in restic's order: a negated pattern that matches
    /// takes back what the patterns before it matched, so `*.txt` then `!keep.txt` leaves
    /// keep.txt out of the match, and `!keep.txt` then `*.txt` does not.
    fn check(&self, path: &str, want_child: bool) -> (bool, bool) {
        let comps = components(path);
        let (mut matched, mut child) = (false, false);
        for p in &self.0 {
            let m = p.matches(&comps);
            if p.negated {
                matched &= !m;
                child &= !m;
            } else {
                matched |= m;
                child |= !want_child || p.child_may_match(&comps);
            }
        }
        (matched, child)
    }
}

/// A file whose presence in a directory leaves out the rest of that directory's contents
/// (`--exclude-if-present NAME[:HEADER]`, and `--exclude-caches` as restic defines it): with
/// a header, only when the file begins with it. The directory and the tag file are kept.
pub struct TagFile {
    name: String,
    header: Vec<u8>,
}

impl TagFile {
    /// Parses `NAME[:HEADER]`, split at the first ':' as restic splits it.
    pub fn parse(spec: &str) -> Result<TagFile> {
        let (name, header) = spec.split_once(':').unwrap_or((spec, ""));
        if name.is_empty() {
            return Err(Error::Usage(format!("--exclude-if-present {spec:?}: no file name before the ':'")));
        }
        Ok(TagFile { name: name.to_string(), header: header.as_bytes().to_vec() })
    }

    /// The tag restic's `--exclude-caches` looks for.
    pub fn cachedir() -> TagFile {
        TagFile::parse("CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55").expect("a valid tag")
    }

    /// The name of the tag file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `dir` holds the tag file (beginning with the header, if there is one). A
    /// file that cannot be read tags nothing, as in restic.
    pub fn tags(&self, dir: &std::path::Path) -> bool {
        use std::io::Read;
        let path = dir.join(&self.name);
        if self.header.is_empty() {
            return std::fs::symlink_metadata(path).is_ok();
        }
        let mut buf = vec![0u8; self.header.len()];
        std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut buf)).is_ok() && buf == self.header
    }
}

/// What `restic restore` selects with `--include`/`--iinclude` (and their `-file` forms) or
/// `--exclude`/`--iexclude`: the `i` lists match without regard to case (pattern and path
/// are both lowercased, as restic does). Includes and excludes cannot be combined.
#[derive(Default)]
pub struct Selection {
    include: List,
    iinclude: List,
    exclude: List,
    iexclude: List,
}

impl Selection {
    /// Parses the four lists; an include and an exclude together is a usage error.
    pub fn new(
        include: &[String],
        iinclude: &[String],
        exclude: &[String],
        iexclude: &[String],
    ) -> Result<Selection> {
        // An empty include was dropped as an empty exclude is, which selected everything;
        // restic 0.14 selects nothing for it. Either is a surprise (an unset variable in a
        // script, most likely), so it is refused.
        if include.iter().chain(iinclude).any(String::is_empty) {
            return Err(Error::Usage(
                "an empty include pattern selects nothing; leave the option out to select everything".into(),
            ));
        }
        let lower = |v: &[String]| v.iter().map(|p| p.to_lowercase()).collect::<Vec<_>>();
        let s = Selection {
            include: List::parse(include)?,
            iinclude: List::parse(&lower(iinclude))?,
            exclude: List::parse(exclude)?,
            iexclude: List::parse(&lower(iexclude))?,
        };
        if s.includes() && s.excludes() {
            return Err(Error::Usage("include and exclude patterns cannot be combined".into()));
        }
        Ok(s)
    }

    fn includes(&self) -> bool {
        !self.include.is_empty() || !self.iinclude.is_empty()
    }

    fn excludes(&self) -> bool {
        !self.exclude.is_empty() || !self.iexclude.is_empty()
    }

    /// Whether any pattern was given (a restore into `/` with `--delete` needs one).
    pub fn is_empty(&self) -> bool {
        !self.includes() && !self.excludes()
    }

    /// (selected, descend) for a node at `item` (absolute, '/'-separated).
    pub fn check(&self, item: &str, is_dir: bool) -> (bool, bool) {
        if self.includes() {
            let low = item.to_lowercase();
            let m = self.include.matches(item) || self.iinclude.matches(&low);
            let child = self.include.child_may_match(item) || self.iinclude.child_may_match(&low);
            (m, is_dir && child)
        } else if self.excludes() {
            let selected = !self.exclude.matches(item)
                && (self.iexclude.is_empty() || !self.iexclude.matches(&item.to_lowercase()));
            (selected, selected && is_dir)
        } else {
            (true, is_dir)
        }
    }
}

/// The patterns of a `--include-file`/`--exclude-file`, as restic reads them: one per
/// line, surrounding white space trimmed, empty lines and lines starting with `#` left out,
/// `$VAR` and `${VAR}` replaced by the environment's value (empty when unset).
pub fn read_pattern_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| expand_env(l, |k| std::env::var(k).ok()))
        .collect())
}

/// Go's `os.ExpandEnv`: `$NAME` (letters, digits, `_`) and `${NAME}`.
fn expand_env(s: &str, var: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, skip) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(j) => (&braced[..j], j + 2),
                None => ("", 0),
            }
        } else {
            let n = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..n], n)
        };
        if skip == 0 {
            // A lone '$' (or an unclosed "${") stays as it is.
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&var(name).unwrap_or_default());
        rest = &after[skip..];
    }
    out.push_str(rest);
    out
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

    #[test]
    fn negated_patterns_take_back_earlier_matches() {
        let l = List::parse(&["*.txt", "!keep.txt"]).unwrap();
        assert!(l.matches("/d/a.txt"));
        assert!(!l.matches("/d/keep.txt"));
        assert!(List::parse(&["!keep.txt", "*.txt"]).unwrap().matches("/d/keep.txt"));
        assert!(!List::parse(&["!keep.txt"]).unwrap().matches("/d/a.txt"));
        // A negated directory takes back everything below it.
        assert!(!List::parse(&["*.txt", "!d"]).unwrap().matches("/d/a.txt"));
        let inc = List::parse(&["/a", "!/a/b"]).unwrap();
        assert!(!inc.child_may_match("/a/b"));
        assert!(inc.child_may_match("/a/c"));
        assert_eq!(Pattern::parse("!x").unwrap().as_str(), "!x");
    }

    #[test]
    fn case_insensitive_lists_and_combinations() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let s = Selection::new(&v(&["/Docs"]), &v(&["*.PDF"]), &[], &[]).unwrap();
        assert_eq!(s.check("/Docs/x", false), (true, false));
        assert_eq!(s.check("/docs/x", false), (false, false), "--include keeps case");
        assert_eq!(s.check("/a/B.pdf", false), (true, false));
        assert_eq!(s.check("/a", true), (false, true));
        let s = Selection::new(&[], &[], &v(&["*.tmp"]), &v(&["CACHE"])).unwrap();
        assert_eq!(s.check("/x/cache", true), (false, false));
        assert_eq!(s.check("/x/a.TMP", false), (true, false));
        assert_eq!(s.check("/x/a.tmp", false), (false, false));
        assert!(Selection::new(&v(&["a"]), &[], &[], &v(&["b"])).is_err());
        assert!(Selection::new(&[], &[], &[], &[]).unwrap().is_empty());
    }

    #[test]
    fn pattern_files_as_restic_reads_them() {
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        assert_eq!(expand_env("$HOME/docs", env), "/home/u/docs");
        assert_eq!(expand_env("${HOME}x/$UNSET/y", env), "/home/ux//y");
        assert_eq!(expand_env("a$", env), "a$");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list");
        std::fs::write(&p, "# comment\n\n  *.pdf  \n/srv/a b\n").unwrap();
        assert_eq!(read_pattern_file(&p).unwrap(), ["*.pdf", "/srv/a b"]);
        assert!(read_pattern_file(&dir.path().join("none")).is_err());
    }
}
