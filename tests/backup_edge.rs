//! Backups as a new user tries them, on cases the other suites leave out, each checked
//! against what the real restic 0.14 does with the same input: a symbolic link given as the
//! thing to back up, a backup of nothing, and a pseudo-file whose size is not its length.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::Value;
use support::backup::{init_repo, restore, Backup};
use support::{tempdir, Restic};

/// The last node `restic ls --json` lists in the snapshot.
fn last_node(r: &Restic, snapshot: &Value) -> Value {
    let ls = r.run(&["ls", "--json", snapshot["id"].as_str().unwrap()]);
    serde_json::from_slice(ls.stdout.split(|&b| b == b'\n').rfind(|l| !l.is_empty()).unwrap()).unwrap()
}

/// The snapshot whose id begins with `id`.
fn snapshot(r: &Restic, id: &str) -> Value {
    r.snapshots_json()
        .into_iter()
        .find(|s| s["id"].as_str().unwrap().starts_with(id))
        .unwrap_or_else(|| panic!("no snapshot {id}"))
}

/// `chunk LINK`, where LINK is a symbolic link to a directory, backs up the link itself, as
/// `restic backup LINK` does; chunk used to follow it and then panic (index out of bounds)
/// on the first entry below it.
#[test]
fn symlink_given_as_path_is_stored_as_the_link() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let dir = td.path().join("real");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/f"), b"below the link").unwrap();
    symlink("real", td.path().join("link")).unwrap();

    let ours = Backup::of(&["link"]).in_dir(td.path()).run(&r);
    let ours = snapshot(&r, ours["snapshot_id"].as_str().unwrap());
    let out = r.command().args(["backup", "--json", "link"]).current_dir(td.path()).output().unwrap();
    assert!(out.status.success(), "restic backup: {}", String::from_utf8_lossy(&out.stderr));
    let summary = out.stdout.split(|&b| b == b'\n').rfind(|l| !l.is_empty()).unwrap();
    let theirs: Value = serde_json::from_slice(summary).unwrap();
    let theirs = snapshot(&r, theirs["snapshot_id"].as_str().unwrap());
    assert_eq!(ours["paths"], theirs["paths"]);
    // The leading directories (/tmp's times change all the time) aside, the same node.
    let (a, b) = (last_node(&r, &ours), last_node(&r, &theirs));
    assert_eq!(a, b);
    assert_eq!(a["type"], "symlink", "{a}");
    assert_eq!(a["name"], "link", "{a}");
}

/// A backup whose every PATH is excluded would hold nothing: restic refuses it ("snapshot
/// is empty", exit 1), and chunk used to let pack save an empty snapshot and exit 0.
#[test]
fn a_backup_of_nothing_saves_no_snapshot() {
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let src = td.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"data").unwrap();
    let pattern = fs::canonicalize(&src).unwrap();
    let pattern = pattern.to_str().unwrap();

    let out = r.command().args(["backup", "--exclude", pattern, "src"]).current_dir(td.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "restic: {}", String::from_utf8_lossy(&out.stderr));

    let res = Backup::of(&["src"]).in_dir(td.path()).chunk_args(&["--exclude", pattern]).run_raw(&r);
    assert_eq!(res.codes()[0], 1, "{}", res.report());
    assert!(res.codes().iter().all(|&c| c != 0), "{}", res.report());
    let err = res.stderr_str(0);
    assert!(err.starts_with("chunk: nothing to back up"), "{err}");
    assert!(r.snapshots_json().is_empty(), "a snapshot was saved");
}

/// A file whose size in its metadata is not what reading it gives, without changing (procfs
/// says 0, sysfs 4096), is backed up with the bytes read and no warning, as restic backs it
/// up; chunk used to call it "changed while it was read" and exit 3.
#[test]
fn a_pseudo_file_is_not_a_file_that_changed() {
    let file = Path::new("/proc/sys/kernel/ostype");
    let want = fs::read(file).unwrap();
    assert_eq!(fs::metadata(file).unwrap().len(), 0, "procfs gives this file no size");
    let td = tempdir();
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);
    let res = Backup::of(&[file]).run_raw(&r);
    assert_eq!(res.codes(), vec![0, 0, 0], "{}", res.report());
    let target = td.path().join("out");
    restore(&r, "latest", &target);
    assert_eq!(fs::read(target.join("proc/sys/kernel/ostype")).unwrap(), want);
}
