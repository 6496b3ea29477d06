//! Restore modes over a target that already holds files: `--overwrite`, `--delete`,
//! `--dry-run`, and walk's pattern files and case-insensitive patterns. Where restic 0.14
//! has the feature (it always overwrites; `--include`/`--exclude`/`--iinclude`/`--iexclude`)
//! the result is compared with the real restic's; where only restic 0.17+ has it, with the
//! semantics documented in unpack(1) and walk(1).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::Value;
use support::*;

/// A small tree backed up by restic into a v2 repository with 4 MiB packs: random files of
/// 1.5 MiB and one of 9 MiB (several blobs), two files with the same content, small files,
/// a symlink.
fn fixture() -> Fixture {
    Fixture::new(
        |src| {
            for d in ["a", "b", "c"] {
                fs::create_dir_all(src.join(d)).unwrap();
            }
            for i in 0..4u64 {
                let len = if i == 3 { 9 << 20 } else { 1536 << 10 };
                fs::write(src.join(format!("c/big-{i}")), random_bytes(700 + i, len)).unwrap();
            }
            let dup = random_bytes(750, 200_000);
            fs::write(src.join("a/dup"), &dup).unwrap();
            fs::write(src.join("b/dup"), &dup).unwrap();
            for i in 0..5 {
                fs::write(src.join(format!("b/small-{i}")), format!("small file {i}\n")).unwrap();
            }
            fs::write(src.join("b/Report.PDF"), b"report\n").unwrap();
            fs::write(src.join("top.txt"), b"top\n").unwrap();
            std::os::unix::fs::symlink("top.txt", src.join("link")).unwrap();
        },
        &["--pack-size", "4"],
    )
}

/// `walk latest WALK_ARGS | fetch-pack | unpack --target T UNPACK_ARGS`.
fn restore(fx: &Fixture, target: &Path, walk_args: &[&str], unpack_args: &[&str]) -> PipelineResult {
    let mut w = vec!["latest"];
    w.extend(walk_args);
    let mut u = vec!["--target", target.to_str().unwrap()];
    u.extend(unpack_args);
    Pipeline::new()
        .stage(tool(&fx.r, "walk", &w))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .stage(tool(&fx.r, "unpack", &u))
        .run()
}

/// The same, with walk looking at the target first (`walk --target T`).
fn restore_planned(fx: &Fixture, target: &Path, mode: &str, extra: &[&str]) -> PipelineResult {
    let t = target.to_str().unwrap();
    let mut w = vec!["--target", t, "--overwrite", mode];
    w.extend(extra.iter().filter(|a| **a == "--delete"));
    let mut u = vec!["--overwrite", mode];
    u.extend(extra);
    restore(fx, target, &w, &u)
}

/// Path → (content, mtime seconds, inode, mode, uid) of every non-directory below `root`.
fn state(root: &Path) -> BTreeMap<String, (Vec<u8>, i64, u64, u32, u32)> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).into_iter().map(|e| e.unwrap()) {
        let md = e.path().symlink_metadata().unwrap();
        let content = match () {
            _ if md.is_file() => fs::read(e.path()).unwrap(),
            _ if md.file_type().is_symlink() => {
                fs::read_link(e.path()).unwrap().into_os_string().into_encoded_bytes()
            }
            _ => Vec::new(),
        };
        let rel = e.path().strip_prefix(root).unwrap().to_str().unwrap().to_string();
        out.insert(rel, (content, md.mtime(), md.ino(), md.mode(), md.uid()));
    }
    out
}

fn inode(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

/// Sets a file's modification time (seconds since the epoch).
fn set_mtime(p: &Path, secs: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
}

/// A copy of `from` (made with `cp -a`, so times and owners stay) at `to`.
fn copy_tree(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success();
    assert!(ok, "cp -a {from:?} {to:?}");
}

/// Blob records of a `walk | fetch-pack` stream that carry data, by blob id.
fn fetched_blobs(fx: &Fixture, walk_args: &[&str]) -> Vec<String> {
    let mut w = vec!["latest"];
    w.extend(walk_args);
    let res = Pipeline::new().stage(tool(&fx.r, "walk", &w)).stage(tool(&fx.r, "fetch-pack", &[])).run();
    res.assert_ok();
    framed_records(&res)
        .into_iter()
        .filter(|r| r["type"] == "blob" && r.get("data").is_some())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// The file records of a walk, by path.
fn file_records(fx: &Fixture) -> BTreeMap<String, Value> {
    fx.records()
        .into_iter()
        .filter(|r| r["node"]["type"] == "file")
        .map(|r| (r["path"].as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn unchanged_blobs_are_not_fetched_and_unchanged_files_not_rewritten() {
    let fx = fixture();
    let target = fx.path("out");
    restore(&fx, &target, &[], &[]).assert_ok();
    // One byte changed in the middle of the 9 MiB file: one of its blobs differs. A small
    // file rewritten: its only blob differs.
    let mut big = fs::read(target.join("c/big-3")).unwrap();
    big[4 << 20] ^= 0xff;
    fs::write(target.join("c/big-3"), &big).unwrap();
    fs::write(target.join("b/small-0"), b"changed by the user\n").unwrap();
    let kept_inode = inode(&target.join("c/big-0"));

    let records = file_records(&fx);
    let all: usize = records.values().map(|r| r["blobs"].as_array().unwrap().len()).sum();
    let fetched = fetched_blobs(&fx, &["--target", target.to_str().unwrap()]);
    assert_eq!(fetched.len(), 2, "only the two changed blobs travel (of {all}): {fetched:?}");
    assert_eq!(fetched_blobs(&fx, &[]).len(), all - 1, "without --target, all but the duplicate travel");

    // Every pack but those of the two blobs that travel can go: the restore needs no other.
    let blobs: Vec<&Value> = records.values().flat_map(|r| r["blobs"].as_array().unwrap()).collect();
    let pack = |b: &Value| b["pack"].as_str().unwrap().to_string();
    let travel = |b: &&&Value| fetched.contains(&b["id"].as_str().unwrap().to_string());
    let needed: Vec<String> = blobs.iter().filter(travel).map(|b| pack(b)).collect();
    let mut spare: Vec<String> = blobs.iter().map(|b| pack(b)).filter(|p| !needed.contains(p)).collect();
    spare.sort();
    spare.dedup();
    // restic packs concurrently, so which blobs share a pack varies from run to run; in the
    // rare layout where every data pack also holds a blob that travels there is nothing to
    // delete, and the stream count above is the whole check.
    for p in &spare {
        let _ = fs::remove_file(fx.pack_path(p));
    }
    let res = restore_planned(&fx, &target, "always", &[]);
    res.assert_ok();
    assert!(res.stderrs.iter().all(Vec::is_empty), "{}", res.report());
    for f in ["c/big-0", "c/big-1", "c/big-2", "c/big-3", "a/dup", "b/dup", "b/small-0", "top.txt"] {
        assert!(fs::read(fx.src.join(f)).unwrap() == fs::read(target.join(f)).unwrap(), "{f} differs");
    }
    assert_eq!(inode(&target.join("c/big-0")), kept_inode, "an unchanged file was rewritten");
    compare_trees(&fx.src, &target, &CompareOpts { skip_root: true, ..CompareOpts::strict() }).unwrap();
}

#[test]
fn overwrite_always_gives_what_restic_014_gives() {
    let fx = fixture();
    let base = fx.path("base");
    restore(&fx, &base, &[], &[]).assert_ok();
    fs::write(base.join("b/small-1"), b"the user's longer version of it\n").unwrap();
    fs::write(base.join("c/big-1"), b"cut short").unwrap();
    fs::set_permissions(base.join("top.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(base.join("b/small-2")).unwrap();
    fs::write(base.join("b/extra"), b"not in the snapshot: stays\n").unwrap();
    // restic 0.14 cannot restore a symlink over an existing one ("file exists").
    fs::remove_file(base.join("link")).unwrap();
    let (theirs, ours, unplanned) = (fx.path("restic"), fx.path("ours"), fx.path("unplanned"));
    for t in [&theirs, &ours, &unplanned] {
        copy_tree(&base, t);
    }
    fx.r.restore("latest", &theirs, &[]);
    restore_planned(&fx, &ours, "always", &[]).assert_ok();
    restore(&fx, &unplanned, &[], &[]).assert_ok();
    compare_trees(&theirs, &ours, &CompareOpts { skip_root: true, ..CompareOpts::restic_014() }).unwrap();
    compare_trees(&theirs, &unplanned, &CompareOpts { skip_root: true, ..CompareOpts::restic_014() })
        .unwrap();
    assert_eq!(fs::read(ours.join("b/extra")).unwrap(), b"not in the snapshot: stays\n");
}

#[test]
fn if_changed_if_newer_and_never_as_restic_017_documents_them() {
    let fx = fixture();
    let base = fx.path("base");
    restore(&fx, &base, &[], &[]).assert_ok();
    let snap_time = fs::metadata(base.join("b/small-1")).unwrap().modified().unwrap();
    // Same size and time as the snapshot's, other content: if-changed trusts it.
    fs::write(base.join("b/small-1"), b"SMALL FILE 1\n").unwrap();
    fs::File::options().write(true).open(base.join("b/small-1")).unwrap().set_modified(snap_time).unwrap();
    // Older than the snapshot's: if-newer replaces it.
    fs::write(base.join("b/small-2"), b"old\n").unwrap();
    set_mtime(&base.join("b/small-2"), 946_684_800);
    // Newer than the snapshot's: if-newer keeps it.
    fs::write(base.join("b/small-3"), b"newer\n").unwrap();
    set_mtime(&base.join("b/small-3"), 4_102_444_800);
    // Missing: every mode restores it. a/dup's twin b/dup is missing too while a/dup
    // itself was changed: under never, b/dup's content comes with the kept a/dup.
    fs::remove_file(base.join("b/small-4")).unwrap();
    fs::remove_file(base.join("b/dup")).unwrap();
    fs::write(base.join("a/dup"), b"the user's\n").unwrap();
    set_mtime(&base.join("a/dup"), 4_102_444_800);
    let mut same = std::collections::HashMap::new();

    let src = |f: &str| fs::read(fx.src.join(f)).unwrap();
    let user = |f: &str| fs::read(base.join(f)).unwrap();
    // (mode, which of small-1, small-2, small-3, a/dup keep the user's content)
    let cases = [
        ("always", [false, false, false, false]),
        ("if-changed", [true, false, false, false]),
        ("if-newer", [true, false, true, true]),
        ("never", [true, true, true, true]),
    ];
    for (mode, kept) in cases {
        for planned in [true, false] {
            let t = fx.path(&format!("{mode}-{planned}"));
            copy_tree(&base, &t);
            same.insert(t.clone(), inode(&t.join("c/big-0")));
            let res = match planned {
                true => restore_planned(&fx, &t, mode, &[]),
                false => restore(&fx, &t, &[], &["--overwrite", mode]),
            };
            res.assert_ok();
            assert!(res.stderrs.iter().all(Vec::is_empty), "{mode}: {}", res.report());
            for (f, k) in ["b/small-1", "b/small-2", "b/small-3", "a/dup"].iter().zip(kept) {
                let want = if k { user(f) } else { src(f) };
                assert_eq!(fs::read(t.join(f)).unwrap(), want, "{mode} (walk --target: {planned}): {f}");
            }
            for f in ["b/small-4", "b/dup", "c/big-3"] {
                assert_eq!(fs::read(t.join(f)).unwrap(), src(f), "{mode}: {f} must be restored");
            }
            // A file already right is kept in every mode, never rewritten.
            assert_eq!(inode(&t.join("c/big-0")), same[&t], "{mode}: an unchanged file was rewritten");
            for e in walkdir::WalkDir::new(&t).into_iter().map(|e| e.unwrap()) {
                assert!(
                    !e.file_name().to_string_lossy().ends_with(".sluice-part"),
                    "{mode}: {:?} left",
                    e.path()
                );
            }
        }
    }
}

#[test]
fn a_file_whose_content_matches_is_kept_and_gets_its_metadata() {
    let fx = fixture();
    let t = fx.path("out");
    restore(&fx, &t, &[], &[]).assert_ok();
    let f = t.join("b/small-0");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o400)).unwrap();
    set_mtime(&f, 946_684_800);
    // Owned by someone else (as root, the restore gives it the snapshot's owner back).
    if is_root() {
        std::os::unix::fs::lchown(&f, Some(65534), Some(65534)).unwrap();
    }
    let ino = inode(&f);
    for mode in ["always", "if-changed"] {
        restore_planned(&fx, &t, mode, &[]).assert_ok();
        assert_eq!(inode(&f), ino, "{mode}: a file with the right content was rewritten");
        compare_trees(&fx.src, &t, &CompareOpts { skip_root: true, ..CompareOpts::strict() }).unwrap();
    }
    // A read-only file of someone else's with other content is replaced under always,
    // left alone under never.
    fs::write(&f, b"read-only and foreign\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o444)).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(&f, Some(65534), Some(65534)).unwrap();
    }
    let before = fs::symlink_metadata(&f).unwrap();
    restore_planned(&fx, &t, "never", &[]).assert_ok();
    let after = fs::symlink_metadata(&f).unwrap();
    assert_eq!((after.ino(), after.mode(), after.uid()), (before.ino(), before.mode(), before.uid()));
    assert_eq!(fs::read(&f).unwrap(), b"read-only and foreign\n");
    restore_planned(&fx, &t, "always", &[]).assert_ok();
    compare_trees(&fx.src, &t, &CompareOpts { skip_root: true, ..CompareOpts::strict() }).unwrap();
}

#[test]
fn delete_removes_only_what_the_selection_lacks() {
    let fx = fixture();
    let base = fx.path("base");
    restore(&fx, &base, &[], &[]).assert_ok();
    fs::write(base.join("extra.txt"), b"x").unwrap();
    fs::write(base.join("b/extra"), b"x").unwrap();
    fs::create_dir_all(base.join("c/extra-dir/deeper")).unwrap();
    fs::write(base.join("c/extra-dir/deeper/f"), b"x").unwrap();
    std::os::unix::fs::symlink("/", base.join("b/extra-link")).unwrap();

    // Without unpack --delete, a stream that lists deletions is refused: nothing deleted.
    let t = fx.path("refused");
    copy_tree(&base, &t);
    let res = restore(&fx, &t, &["--target", t.to_str().unwrap(), "--delete"], &[]);
    assert_eq!(res.codes()[2], 2, "{}", res.report());
    assert!(res.stderr_str(2).contains("give unpack --delete too"), "{}", res.report());
    assert!(t.join("extra.txt").exists() && t.join("c/extra-dir/deeper/f").exists());

    // Everything the snapshot lacks goes; the rest is the snapshot's.
    let t = fx.path("all");
    copy_tree(&base, &t);
    let res = restore_planned(&fx, &t, "always", &["--delete"]);
    res.assert_ok();
    compare_trees(&fx.src, &t, &CompareOpts { skip_root: true, ..CompareOpts::strict() }).unwrap();
    let deleted: Vec<String> = framed_records(&res)
        .into_iter()
        .filter(|r| r["type"] == "action")
        .map(|r| format!("{} {}", r["action"].as_str().unwrap(), r["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        deleted,
        ["deleted b/extra", "deleted b/extra-link", "deleted c/extra-dir", "deleted extra.txt"]
    );

    // Only within the selection: with --include /b, the other extras stay (restic's rule).
    let t = fx.path("some");
    copy_tree(&base, &t);
    restore(&fx, &t, &["--include", "/b", "--target", t.to_str().unwrap(), "--delete"], &["--delete"])
        .assert_ok();
    assert!(!t.join("b/extra").exists() && fs::symlink_metadata(t.join("b/extra-link")).is_err());
    assert!(t.join("extra.txt").exists() && t.join("c/extra-dir/deeper/f").exists());

    // The whole file system is never a target for --delete without a pattern.
    let res = Pipeline::new().stage(tool(&fx.r, "walk", &["latest", "--target", "/", "--delete"])).run();
    assert_eq!(res.codes(), [2], "{}", res.report());
    assert!(res.stderr_str(0).contains("needs an --include or --exclude"), "{}", res.report());
}

#[test]
fn what_is_in_the_way_is_replaced_only_with_delete() {
    let fx = fixture();
    let base = fx.path("base");
    fs::create_dir_all(base.join("top.txt")).unwrap();
    fs::write(base.join("top.txt/mine"), b"a directory where a file goes").unwrap();
    fs::write(base.join("a"), b"a file where a directory goes").unwrap();
    fs::write(base.join("link"), b"a file where a symlink goes").unwrap();
    let t = fx.path("kept");
    copy_tree(&base, &t);
    let res = restore_planned(&fx, &t, "always", &[]);
    assert_eq!(res.codes(), [0, 0, 3], "{}", res.report());
    assert_eq!(fs::read(t.join("top.txt/mine")).unwrap(), b"a directory where a file goes");
    assert_eq!(fs::read(t.join("a")).unwrap(), b"a file where a directory goes");
    assert_eq!(fs::read(t.join("link")).unwrap(), b"a file where a symlink goes");
    let t = fx.path("replaced");
    copy_tree(&base, &t);
    restore_planned(&fx, &t, "always", &["--delete"]).assert_ok();
    compare_trees(&fx.src, &t, &CompareOpts { skip_root: true, ..CompareOpts::strict() }).unwrap();
}

#[test]
fn dry_run_reports_what_a_restore_does_and_writes_nothing() {
    let fx = fixture();
    let t = fx.path("out");
    restore(&fx, &t, &[], &[]).assert_ok();
    fs::write(t.join("b/small-1"), b"changed\n").unwrap();
    fs::remove_file(t.join("b/small-2")).unwrap();
    fs::write(t.join("b/extra"), b"x").unwrap();
    fs::remove_file(t.join("link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", t.join("link")).unwrap();
    let before = state(&t);
    let res = restore_planned(&fx, &t, "always", &["--delete", "--dry-run"]);
    res.assert_ok();
    assert_eq!(state(&t), before, "a dry run changed the target");
    let actions: BTreeMap<String, String> = framed_records(&res)
        .into_iter()
        .map(|r| {
            assert_eq!(r["type"], "action", "{r}");
            (r["path"].as_str().unwrap().to_string(), r["action"].as_str().unwrap().to_string())
        })
        .collect();
    let want = |p: &str| actions.get(p).map(String::as_str);
    assert_eq!(want("b/small-1"), Some("updated"));
    assert_eq!(want("b/small-2"), Some("restored"));
    assert_eq!(want("b/extra"), Some("deleted"));
    assert_eq!(want("link"), Some("updated"));
    assert_eq!(want("c/big-0"), Some("unchanged"));
    assert_eq!(want("b"), Some("unchanged"));
    // Every node of the snapshot, and the one deletion.
    let nodes = fx.records().iter().filter(|r| r["type"] == "node").count();
    assert_eq!(actions.len(), nodes + 1, "{actions:#?}");
    // The real run does what the dry run said: only the files it named change.
    restore_planned(&fx, &t, "always", &["--delete"]).assert_ok();
    let after = state(&t);
    for (p, a) in &actions {
        if ["a", "b", "c"].contains(&p.as_str()) {
            continue; // directories: their times move with what changes inside them
        }
        let changed = before.get(p) != after.get(p);
        assert_eq!(changed, a != "unchanged", "{p}: dry run said {a}");
    }
}

#[test]
fn pattern_files_and_case_insensitive_patterns_select_as_restic_014_does() {
    let fx = fixture();
    let list = fx.path("list");
    fs::write(&list, "# what to restore\n\n  /b/small-*  \n$SLUICE_TEST_TOP\n").unwrap();
    // Upper case where the tree has lower case, and the reverse: only the `i` forms match.
    let ilist = fx.path("ilist");
    fs::write(&ilist, "# ignoring case\n  /B/SMALL-[13]  \n*.pdf\n${SLUICE_TEST_UPPER}\n").unwrap();
    let il = ilist.to_str().unwrap().to_string();
    let cases: [(&[&str], &[&str], Vec<String>); 6] = [
        (&["--iinclude", "*.pdf"], &["--iinclude", "*.pdf"], vec![]),
        (&["--iexclude", "C", "--iexclude", "*.PDF"], &["--iexclude", "C", "--iexclude", "*.PDF"], vec![]),
        (
            &["--include-file"],
            &["--include", "/b/small-*", "--include", "/top.txt"],
            vec![list.to_str().unwrap().into()],
        ),
        (
            &["--exclude-file"],
            &["--exclude", "/b/small-*", "--exclude", "/top.txt"],
            vec![list.to_str().unwrap().into()],
        ),
        (
            &["--iinclude-file"],
            &["--iinclude", "/B/SMALL-[13]", "--iinclude", "*.pdf", "--iinclude", "/TOP.TXT"],
            vec![il.clone()],
        ),
        (
            &["--iexclude-file"],
            &["--iexclude", "/B/SMALL-[13]", "--iexclude", "*.pdf", "--iexclude", "/TOP.TXT"],
            vec![il.clone()],
        ),
    ];
    for (i, (ours, theirs, file)) in cases.iter().enumerate() {
        let (a, b) = (fx.path(&format!("restic-{i}")), fx.path(&format!("ours-{i}")));
        fx.r.restore("latest", &a, theirs);
        let mut args: Vec<&str> = ours.to_vec();
        args.extend(file.iter().map(String::as_str));
        let mut w = vec!["latest"];
        w.extend(args);
        let res = Pipeline::new()
            .stage(tool(&fx.r, "walk", &w))
            .stage(tool(&fx.r, "fetch-pack", &[]))
            .stage(tool(&fx.r, "unpack", &["--target", b.to_str().unwrap()]))
            .env("SLUICE_TEST_TOP", "/top.txt")
            .env("SLUICE_TEST_UPPER", "/TOP.TXT")
            .run();
        res.assert_ok();
        compare_trees(&a, &b, &CompareOpts { skip_root: true, ..CompareOpts::restic_014() })
            .unwrap_or_else(|e| panic!("{ours:?}: {e}"));
        if ours == &["--iinclude-file"] {
            // Not an empty selection on both sides: the case-insensitive lines matched.
            for (p, there) in
                [("b/small-1", true), ("b/Report.PDF", true), ("top.txt", true), ("b/small-2", false)]
            {
                assert_eq!(b.join(p).exists(), there, "{p}");
            }
        }
    }
}
