//! `make demo`, the README's first command, on a fresh clone and again on the same clone:
//! both runs pass, the second is an incremental backup that stores nothing new, and the
//! snapshot shown is the one just saved, in words rather than as a JSON record. The clone is
//! a copy of the Makefile and the demo script with the test's binaries as its
//! `target/release` (no release build: `CARGO=true`).

mod support;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

use support::*;

fn make_demo(clone: &Path) -> Output {
    let mut c = Command::new("make");
    c.arg("-s").arg("-C").arg(clone).args(["demo", "CARGO=true"]);
    for (k, _) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"RESTIC_") || k.as_bytes().starts_with(b"DEMO_") {
            c.env_remove(k);
        }
    }
    c.output().expect("run make (is it installed?)")
}

/// The id in push's "snapshot ID saved" line, and the short id in the line saying how
/// `snapshots` lists it.
fn saved_and_shown(stderr: &str) -> (String, String) {
    let saved = stderr
        .lines()
        .find_map(|l| l.strip_prefix("snapshot ").and_then(|r| r.strip_suffix(" saved")))
        .unwrap_or_else(|| panic!("no \"snapshot … saved\" line:\n{stderr}"));
    let shown = stderr
        .lines()
        .find_map(|l| l.strip_prefix("== snapshots lists it: "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no \"snapshots lists it\" line:\n{stderr}"));
    (saved.to_string(), shown.to_string())
}

#[test]
fn make_demo_passes_twice_on_a_fresh_clone() {
    let td = tempdir();
    let clone = td.path().join("clone");
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::create_dir_all(clone.join("bench")).unwrap();
    fs::copy(top.join("Makefile"), clone.join("Makefile")).unwrap();
    fs::copy(top.join("bench/demo.sh"), clone.join("bench/demo.sh")).unwrap();
    fs::create_dir_all(clone.join("src/sub")).unwrap();
    fs::write(clone.join("README.md"), "a clone\n").unwrap();
    fs::write(clone.join("src/main.rs"), "fn main() {}\n".repeat(1000)).unwrap();
    fs::write(clone.join("src/sub/x [1].txt"), b"glob characters in a name\n").unwrap();
    fs::create_dir_all(clone.join("target")).unwrap();
    std::os::unix::fs::symlink(bin_dir(), clone.join("target/release")).unwrap();

    let mut packs = Vec::new();
    for run in 1..=2 {
        let out = make_demo(&clone);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "make demo, run {run}: {}\n{err}", out.status);
        assert!(
            err.starts_with("make demo: building the release binaries first"),
            "run {run}: no word before the build starts:\n{err}"
        );
        assert!(err.contains("restored copy matches"), "run {run}:\n{err}");
        // The person reads what the demo says: a record of JSON is not for them.
        let out = String::from_utf8_lossy(&out.stdout);
        for l in err.lines().chain(out.lines()) {
            assert!(!l.trim_start().starts_with('{'), "run {run}: a JSON record shown: {l}\n{err}");
        }
        let (saved, shown) = saved_and_shown(&err);
        assert_eq!(saved, shown, "run {run}: the snapshot shown is not the one saved:\n{err}");
        if run == 2 {
            assert!(
                err.lines()
                    .any(|l| l.starts_with("Files:") && l.contains(" 0 new,") && l.contains(" 0 changed,")),
                "the second run backed up something new:\n{err}"
            );
        }
        let data = clone.join("target/demo/repo/data");
        packs.push(walkdir::WalkDir::new(&data).into_iter().filter_map(Result::ok).count());
    }
    assert_eq!(packs[0], packs[1], "the second run stored new packs");
}
