//! The man pages in `man/` stay true to the tools.
//!
//! * every binary in Cargo.toml's `[[bin]]` list has `man/<tool>.1`, with the sections every
//!   page must have, and is listed in `sluice(7)`;
//! * every flag `--help` shows is documented in the page's OPTIONS, every flag OPTIONS
//!   documents exists, and every environment variable a flag reads is in ENVIRONMENT;
//! * every record type of `common::record` has its entry in `sluice-ndjson(5)`, and no other;
//! * `mandoc -Tlint -W warning` has nothing to say about any page.
//!
//! The pages are hand-written roff (man(7) macros); these tests read the roff source, so they
//! need mandoc only for the lint.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The sections every tool page has, in this order (STYLE.md).
const TOOL_SECTIONS: &[&str] = &[
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "INPUT",
    "OUTPUT",
    "ENVIRONMENT",
    "EXIT STATUS",
    "EXAMPLES",
    "SEE ALSO",
];

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

/// Every binary the root package builds: the `name` of each `[[bin]]` table in Cargo.toml.
/// (Read by hand: a table header, then `key = "value"` lines, is all this needs.)
fn tools() -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read Cargo.toml");
    let mut tools = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
            continue;
        }
        if !in_bin {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            if key.trim() == "name" {
                tools.push(value.trim().trim_matches('"').to_string());
            }
        }
    }
    assert!(!tools.is_empty(), "no [[bin]] names found in {}", manifest.display());
    tools
}

fn page_path(tool: &str) -> PathBuf {
    man_dir().join(format!("{tool}.1"))
}

/// The roff source of a tool's page, or a message naming the missing page.
fn page(tool: &str) -> Result<String, String> {
    let p = page_path(tool);
    std::fs::read_to_string(&p).map_err(|e| {
        format!(
            "man/{tool}.1 is missing ({e}): every tool in Cargo.toml's [[bin]] list needs a \
             hand-written page (copy the layout of man/walk.1)"
        )
    })
}

/// The section headings (`.SH`) of a page, in order, without quotes.
fn headings(roff: &str) -> Vec<String> {
    roff.lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|h| h.trim().trim_matches('"').to_string())
        .collect()
}

/// The roff source of one section: the lines after `.SH NAME` up to the next `.SH`.
fn section<'a>(roff: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let mut lines = roff.lines();
    lines.by_ref().find(|l| l.strip_prefix(".SH ").is_some_and(|h| h.trim().trim_matches('"') == name))?;
    Some(lines.take_while(|l| !l.starts_with(".SH ")).collect())
}

/// Roff source as the text a reader sees, near enough to find flags in: escapes resolved
/// (`\-` to `-`, `\e` to a backslash), font changes and zero-width characters dropped.
fn plain(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    let mut chars = roff.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('-') => out.push('-'),
            Some('e') => out.push('\\'),
            Some('&') | Some('/') | Some(',') | Some('c') => {}
            // Fonts: \fB, \f(CW, \f[BI].
            Some('f') => match chars.next() {
                Some('(') => {
                    chars.next();
                    chars.next();
                }
                Some('[') => {
                    for d in chars.by_ref() {
                        if d == ']' {
                            break;
                        }
                    }
                }
                _ => {}
            },
            // Special characters: \(em, \[em]; a space is enough to keep words apart.
            Some('(') => {
                chars.next();
                chars.next();
                out.push(' ');
            }
            Some('[') => {
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                }
                out.push(' ');
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Every `--long-flag` in `text`.
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i + 2 < bytes.len() {
        let starts = bytes[i] == '-'
            && bytes[i + 1] == '-'
            && bytes[i + 2].is_ascii_alphanumeric()
            && (i == 0 || !is_word(bytes[i - 1]));
        if starts {
            let mut j = i + 2;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == '-') {
                j += 1;
            }
            let flag: String = bytes[i..j].iter().collect();
            found.insert(flag.trim_end_matches('-').to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    found
}

/// The flags in the tags of OPTIONS entries (the line after each `.TP` or `.TQ`): the long
/// ones and the short ones. Prose is not searched: a flag named in another flag's description
/// ("cannot be combined with --sparse") does not document it, and "sh -c" is not ours.
fn tag_flags(options: &[&str]) -> (BTreeSet<String>, BTreeSet<char>) {
    let (mut long, mut short) = (BTreeSet::new(), BTreeSet::new());
    for pair in options.windows(2) {
        if !(pair[0].starts_with(".TP") || pair[0].starts_with(".TQ")) {
            continue;
        }
        let tag = plain(pair[1]);
        long.extend(long_flags(&tag));
        for word in tag.split(|c: char| c.is_whitespace() || c == '"' || c == ',') {
            let mut cs = word.chars();
            if let (Some('-'), Some(c), None) = (cs.next(), cs.next(), cs.next()) {
                if c.is_ascii_alphanumeric() {
                    short.insert(c);
                }
            }
        }
    }
    (long, short)
}

/// What a tool's `--help` offers.
#[derive(Debug, Default)]
struct Help {
    long: BTreeSet<String>,
    short: BTreeSet<char>,
    env: BTreeSet<String>,
}

/// Runs `tool --help` and collects its flags and the environment variables they read.
fn help(tool: &str) -> Help {
    let bin = support::bin(tool);
    let mut cmd = Command::new(&bin);
    cmd.arg("--help");
    // Set variables would show their values in the help; keep the output the same everywhere.
    for var in [
        "RESTIC_REPOSITORY",
        "RESTIC_PASSWORD",
        "RESTIC_PASSWORD_FILE",
        "RESTIC_PASSWORD_COMMAND",
        "RESTIC_KEY_HINT",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {} --help: {e}", bin.display()));
    assert!(out.status.success(), "{tool} --help failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("help is UTF-8");
    let mut h = Help::default();
    for line in text.lines().map(str::trim_start).filter(|l| l.starts_with('-')) {
        for word in line.split_whitespace() {
            let word = word.trim_end_matches(',');
            if !word.starts_with('-') {
                break;
            }
            if let Some(long) = word.strip_prefix("--") {
                let name: String =
                    long.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                h.long.insert(format!("--{name}"));
            } else if let Some(c) = word.strip_prefix('-').and_then(|s| s.chars().next()) {
                h.short.insert(c);
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("[env: ") {
            rest = &rest[at + "[env: ".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            h.env.insert(name);
        }
    }
    assert!(h.long.contains("--help"), "could not parse the flags of {tool} --help:\n{text}");
    h
}

fn fail_if_any(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn every_tool_has_a_page_and_every_page_a_tool() {
    let tools = tools();
    let mut problems = Vec::new();
    for tool in &tools {
        if let Err(e) = page(tool) {
            problems.push(e);
        }
    }
    for fixed in ["sluice.7", "sluice-ndjson.5"] {
        if !man_dir().join(fixed).is_file() {
            problems.push(format!("man/{fixed} is missing"));
        }
    }
    for entry in std::fs::read_dir(man_dir()).expect("read man/") {
        let name = entry.expect("read man/").file_name().to_string_lossy().into_owned();
        if let Some(tool) = name.strip_suffix(".1") {
            if !tools.iter().any(|t| t == tool) {
                problems.push(format!("man/{name} documents {tool}, which is not a [[bin]] in Cargo.toml"));
            }
        }
    }
    fail_if_any(problems);
}

#[test]
fn tool_pages_have_every_section() {
    let mut problems = Vec::new();
    for tool in tools() {
        let roff = match page(&tool) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let th = format!(".TH {} 1 ", tool.to_uppercase().replace('-', "\\-"));
        if !roff.lines().any(|l| l.starts_with(&th)) {
            problems.push(format!("man/{tool}.1: no title line starting {th:?}"));
        }
        let have = headings(&roff);
        let mut want = TOOL_SECTIONS.iter();
        // Required sections must appear in order; others (BUGS, ...) may sit between them.
        let mut next = want.next();
        for h in &have {
            if Some(&h.as_str()) == next {
                next = want.next();
            }
        }
        if let Some(missing) = next {
            problems.push(format!(
                "man/{tool}.1: section {missing:?} missing or out of order (sections: {have:?}, \
                 wanted in this order: {TOOL_SECTIONS:?})"
            ));
        }
    }
    fail_if_any(problems);
}

#[test]
fn every_help_flag_is_documented() {
    let mut problems = Vec::new();
    for tool in tools() {
        let roff = match page(&tool) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let help = help(&tool);
        let Some(options) = section(&roff, "OPTIONS") else {
            problems.push(format!("man/{tool}.1 has no OPTIONS section"));
            continue;
        };
        let (long, short) = tag_flags(&options);
        for flag in &help.long {
            if !long.contains(flag) {
                problems.push(format!(
                    "{tool} --help has {flag}, but no entry of OPTIONS in man/{tool}.1 \
                     documents it"
                ));
            }
        }
        for c in &help.short {
            if !short.contains(c) {
                problems.push(format!(
                    "{tool} --help has -{c}, but no entry of OPTIONS in man/{tool}.1 documents it"
                ));
            }
        }
        let env = section(&roff, "ENVIRONMENT").map(|s| plain(&s.join("\n"))).unwrap_or_default();
        for var in &help.env {
            if !env.contains(var.as_str()) {
                problems.push(format!(
                    "{tool} reads {var} (see --help), but ENVIRONMENT in man/{tool}.1 does not \
                     mention it"
                ));
            }
        }
    }
    fail_if_any(problems);
}

#[test]
fn every_documented_flag_exists() {
    let mut problems = Vec::new();
    for tool in tools() {
        let Ok(roff) = page(&tool) else {
            continue; // every_tool_has_a_page_and_every_page_a_tool names it
        };
        let Some(options) = section(&roff, "OPTIONS") else {
            continue; // every_help_flag_is_documented names it
        };
        let help = help(&tool);
        for flag in long_flags(&plain(&options.join("\n"))) {
            if !help.long.contains(&flag) {
                problems.push(format!(
                    "man/{tool}.1 documents {flag} in OPTIONS, but {tool} --help has no such flag"
                ));
            }
        }
        for c in tag_flags(&options).1 {
            if !help.short.contains(&c) {
                problems.push(format!(
                    "man/{tool}.1 documents -{c} in OPTIONS, but {tool} --help has no such flag"
                ));
            }
        }
    }
    fail_if_any(problems);
}

#[test]
fn every_record_type_is_documented() {
    let path = man_dir().join("sluice-ndjson.5");
    let roff = std::fs::read_to_string(&path).expect("read man/sluice-ndjson.5");
    let section = section(&roff, "RECORD TYPES").expect("sluice-ndjson.5 has RECORD TYPES");
    let documented: BTreeSet<String> = section
        .iter()
        .filter_map(|l| l.strip_prefix(".SS "))
        .map(|t| plain(t.trim().trim_matches('"')))
        .collect();
    let mut problems = Vec::new();
    for ty in common::record::TYPES {
        if !documented.contains(*ty) {
            problems.push(format!(
                "record type {ty:?} has no \".SS {ty}\" under RECORD TYPES in man/sluice-ndjson.5"
            ));
        }
    }
    for ty in &documented {
        if !common::record::TYPES.contains(&ty.as_str()) {
            problems.push(format!(
                "man/sluice-ndjson.5 documents record type {ty:?}, which common::record does \
                 not have"
            ));
        }
    }
    fail_if_any(problems);
}

#[test]
fn overview_lists_every_tool() {
    let roff = std::fs::read_to_string(man_dir().join("sluice.7")).expect("read man/sluice.7");
    let see_also = plain(&section(&roff, "SEE ALSO").expect("sluice.7 has SEE ALSO").join("\n"));
    let mut problems = Vec::new();
    for tool in tools() {
        if !see_also.contains(&format!(".BR {tool} (1)")) {
            problems.push(format!("SEE ALSO in man/sluice.7 does not list {tool}(1)"));
        }
    }
    fail_if_any(problems);
}

#[test]
fn pages_are_lint_clean() {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(man_dir())
        .expect("read man/")
        .map(|e| e.expect("read man/").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("1" | "5" | "7")))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "no man pages in {}", man_dir().display());
    let mut problems = Vec::new();
    for p in &pages {
        let out = match Command::new("mandoc").args(["-Tlint", "-W", "warning"]).arg(p).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "mandoc is not installed, and the man page lint needs it \
                 (apt-get install mandoc; CI installs it)"
            ),
            Err(e) => panic!("run mandoc: {e}"),
        };
        let said =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() || !said.trim().is_empty() {
            problems.push(format!(
                "mandoc -Tlint -W warning {} ({}):\n{}",
                p.display(),
                out.status,
                said.trim_end()
            ));
        }
    }
    fail_if_any(problems);
}

/// The helpers above decide every other test; check them on known input.
#[test]
fn helpers_read_roff_and_help_as_intended() {
    let roff = ".TP\n.BR \\-r \", \" \\-\\-repo \" \\fIREPOSITORY\\fR\"\nRun with\n.B sh \\-c\n";
    let text = plain(roff);
    assert!(text.contains("-r \", \" --repo \" REPOSITORY\""), "{text}");
    assert_eq!(long_flags(&text), BTreeSet::from(["--repo".to_string()]));
    let lines: Vec<&str> = roff.lines().collect();
    let (long, short) = tag_flags(&lines);
    assert_eq!(long, BTreeSet::from(["--repo".to_string()]));
    assert_eq!(short, BTreeSet::from(['r']), "-c is prose, not a tag");
    assert_eq!(long_flags("a--b --max-gap, (--x-) \\-\\-no"), ["--max-gap", "--x"].map(String::from).into());

    let h = help("fetch-pack");
    assert!(h.long.contains("--max-gap") && h.long.contains("--repo"), "{h:?}");
    assert!(h.short.contains(&'r') && h.short.contains(&'h'), "{h:?}");
    assert!(h.env.contains("RESTIC_REPOSITORY"), "{h:?}");
    assert!(!h.long.iter().any(|f| f.contains('<')), "{h:?}");
}
