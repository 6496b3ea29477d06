//! Running our restore pipeline against a [`Restic`] repository and checking what it reports.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::Value;

use super::restic::Restic;
use super::run::{Pipeline, PipelineResult};

/// `--repo <repo> --password-file <file>` for one of our tools.
pub fn repo_args(r: &Restic) -> Vec<OsString> {
    vec!["--repo".into(), r.repo.clone().into(), "--password-file".into(), r.password_file.clone().into()]
}

/// `tool <args…> --repo … --password-file …` as a pipeline stage.
pub fn tool(r: &Restic, name: &str, args: &[&str]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![name.into()];
    v.extend(args.iter().map(OsString::from));
    if keyless(name) {
        v.extend(["--repo".into(), r.repo.clone().into()]);
    } else {
        v.extend(repo_args(r));
    }
    v
}

/// The stages that move ciphertext only and take no password options.
pub fn keyless(name: &str) -> bool {
    matches!(name, "fetch-pack" | "push")
}

/// `walk SPEC <walk_args…> | fetch-pack | unpack --target TARGET <unpack_args…> | verify
/// --target TARGET`, with the repository given as flags. Returns the result unchecked.
pub fn restore_pipeline(
    r: &Restic,
    spec: &str,
    target: &Path,
    walk_args: &[&str],
    unpack_args: &[&str],
) -> PipelineResult {
    let t = target.as_os_str();
    let mut walk = tool(r, "walk", &[spec]);
    walk.extend(walk_args.iter().map(OsString::from));
    let mut unpack = tool(r, "unpack", unpack_args);
    unpack.extend(["--target".into(), t.to_os_string()]);
    let verify: Vec<OsString> = vec!["verify".into(), "--target".into(), t.to_os_string()];
    Pipeline::new().stage(walk).stage(tool(r, "fetch-pack", &[])).stage(unpack).stage(verify).run()
}

/// Checks a framed record stream (header first, end last counting the records between) and
/// returns the records between.
pub fn framed_records(res: &PipelineResult) -> Vec<Value> {
    let lines = res.json_lines();
    assert!(lines.len() >= 2, "stream of {} lines:\n{}", lines.len(), res.report());
    assert_eq!(lines[0]["type"], "header", "first record is not a header:\n{}", res.report());
    let end = &lines[lines.len() - 1];
    assert_eq!(end["type"], "end", "last record is not an end:\n{}", res.report());
    let inner = lines[1..lines.len() - 1].to_vec();
    assert_eq!(end["records"].as_u64(), Some(inner.len() as u64), "end record miscounts:\n{}", res.report());
    inner
}

/// Asserts that a [`restore_pipeline`] succeeded: every stage exited 0 with nothing on
/// stderr, and verify wrote one `ok` verdict per regular-file name in `expected` (hard links
/// count once per name). Returns the number of verdicts.
pub fn assert_restore_ok(res: &PipelineResult, expected: &Path) -> usize {
    res.assert_ok();
    for (i, e) in res.stderrs.iter().enumerate() {
        assert!(e.is_empty(), "stage {i} wrote to stderr:\n{}", res.report());
    }
    let verdicts = framed_records(res);
    let mut paths = Vec::new();
    for v in &verdicts {
        assert_eq!(v["type"], "verdict", "unexpected record {v}");
        assert_eq!(v["ok"], true, "verify found a difference: {v}");
        paths.push(v["path"].as_str().unwrap_or_default().to_string());
    }
    let files = count_files(expected);
    assert_eq!(
        verdicts.len(),
        files,
        "{} verdicts for {files} files in {expected:?}: {paths:?}",
        verdicts.len()
    );
    verdicts.len()
}

/// Regular-file names under `dir` (each hard-link name counts).
pub fn count_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()).count()
}

/// `walk SPEC <args…>` alone; panics unless it exits 0. Returns its records (header and end
/// checked and removed).
pub fn walk_records(r: &Restic, spec: &str, args: &[&str]) -> Vec<Value> {
    let mut walk = tool(r, "walk", &[spec]);
    walk.extend(args.iter().map(OsString::from));
    let res = Pipeline::new().stage(walk).run();
    res.assert_ok();
    framed_records(&res)
}

/// The walk record of the file at `path` (as the record's `path` field spells it).
pub fn record_for<'a>(records: &'a [Value], path: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("no record for {path:?} among {} records", records.len()))
}

/// Asserts that nothing under `target` looks complete but is not: every regular file there
/// either carries the `.sluice-part` mark or is byte-identical to the file of the same
/// relative path under `source`. Returns the partial files found (relative paths).
pub fn assert_nothing_incomplete(target: &Path, source: &Path) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    if !target.exists() {
        return parts;
    }
    for e in walkdir::WalkDir::new(target).into_iter().filter_map(Result::ok) {
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(target).expect("below target").as_os_str().as_bytes().to_vec();
        if e.file_name().as_bytes().ends_with(b".sluice-part") {
            parts.push(rel);
            continue;
        }
        let src = source.join(std::ffi::OsStr::from_bytes(&rel));
        let (a, b) = (read_all(&src), read_all(e.path()));
        assert!(a.is_some(), "{:?} was restored but has no source {src:?}", e.path());
        assert!(a == b, "{:?} is under its final name but differs from {src:?}", e.path());
    }
    parts
}

fn read_all(p: &Path) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    fs::File::open(p).ok()?.read_to_end(&mut v).ok()?;
    Some(v)
}

/// Asserts that `stderr` is exactly one line (ending in a newline) and returns it.
pub fn one_line(stderr: &[u8], what: &str) -> String {
    let s = String::from_utf8_lossy(stderr).into_owned();
    assert!(
        s.ends_with('\n') && s.trim_end_matches('\n').lines().count() == 1,
        "{what}: expected one line on stderr, got {s:?}"
    );
    assert!(!s.contains("panicked"), "{what} panicked: {s}");
    s.trim_end().to_string()
}

/// Whether unpack makes its files unnamed in `dir` (`O_TMPFILE`, linked to their final name
/// once their batch is on disk) rather than under a `.sluice-part` name: what an interrupted
/// restore leaves there depends on it.
pub fn unnamed_files_work(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_TMPFILE).mode(0o600).open(dir).is_ok()
}

/// The sizes of the unnamed files process `pid` holds open in directory `dir`: files made
/// with `O_TMPFILE` show in /proc as `DIR/#INODE (deleted)`.
pub fn unnamed_files_held(pid: u32, dir: &Path) -> Vec<u64> {
    let mut prefix = dir.as_os_str().as_bytes().to_vec();
    prefix.extend_from_slice(b"/#");
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    fds.filter_map(Result::ok)
        .filter(|e| {
            fs::read_link(e.path()).is_ok_and(|l| {
                let l = l.as_os_str().as_bytes();
                l.starts_with(&prefix) && l.ends_with(b" (deleted)")
            })
        })
        .filter_map(|e| fs::metadata(e.path()).ok().map(|m| m.len()))
        .collect()
}
