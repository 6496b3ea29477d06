//! Proves the test support library against restic alone: the generated tree survives a restic
//! round trip exactly, `compare_trees` notices every kind of difference, and pipelines behave
//! like a shell's.

mod support;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use support::*;

/// lstat times of `p` as ((atime), (mtime)).
fn times(p: &Path) -> ((i64, i64), (i64, i64)) {
    let m = fs::symlink_metadata(p).unwrap();
    ((m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec()))
}

/// Runs `f`, then puts back the times `paths` had before (so a mutation changes one thing).
fn keeping_times<P: AsRef<Path>>(paths: &[P], f: impl FnOnce()) {
    let saved: Vec<_> = paths.iter().map(|p| times(p.as_ref())).collect();
    f();
    for (p, (a, m)) in paths.iter().zip(saved) {
        set_times(p.as_ref(), a, m);
    }
}

fn flip_byte(p: &Path, off: usize) {
    let mut c = fs::read(p).unwrap();
    c[off] ^= 0x55;
    fs::write(p, c).unwrap();
}

fn replace_symlink(link: &Path, target: &[u8]) {
    fs::remove_file(link).unwrap();
    symlink(std::ffi::OsStr::from_bytes(target), link).unwrap();
}

/// Asserts that comparing reports exactly `n` differences and mentions every `needle`.
fn expect_diffs(a: &Path, b: &Path, opts: &CompareOpts, n: usize, needles: &[&str]) {
    let err = compare_trees(a, b, opts).expect_err("trees should differ");
    assert!(err.starts_with(&format!("{n} difference(s)")), "expected {n} differences, got:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not reported:\n{err}");
    }
}

fn small() -> TreeOpts {
    TreeOpts::default()
}

#[test]
fn tree_is_reproducible_and_has_the_edge_cases() {
    let td = tempdir();
    let (a, b, c) = (td.path().join("a"), td.path().join("b"), td.path().join("c"));
    for d in [&a, &b, &c] {
        fs::create_dir(d).unwrap();
    }
    let info = make_tree(&a, 7, &small());
    make_tree(&b, 7, &small());
    make_tree(&c, 8, &small());
    compare_trees(&a, &b, &CompareOpts::strict()).unwrap();
    let err = compare_trees(&a, &c, &CompareOpts::strict()).unwrap_err();
    assert!(err.contains(": content: "), "{err}");

    assert!((1 << 20..3 << 20).contains(&info.bytes), "default tree is {} bytes", info.bytes);
    assert!(info.big_file.is_none());
    let md = |rel: &str| fs::symlink_metadata(a.join(rel)).unwrap();
    assert_eq!(md("hard/three-a").nlink(), 3);
    assert_eq!(md("names/three c").ino(), md("hard/sub/three-b").ino());
    assert_eq!(md("data/hard-two-b").nlink(), 2);
    assert!(md("special/fifo").file_type().is_fifo());
    assert_eq!(md("data/empty").len(), 0);
    assert_eq!(md("data/one").len(), 1);
    assert_eq!(md("modes/r--r--r--").permissions().mode() & 0o7777, 0o444);
    assert_eq!(md("modes/private-dir").permissions().mode() & 0o7777, 0o700);
    assert_eq!(md("modes/sticky-dir").permissions().mode() & 0o7777, 0o1777);
    if is_root() {
        assert_eq!(md("modes/setgid-dir").permissions().mode() & 0o7777, 0o2755);
        assert_eq!(md("modes/setuid-file").permissions().mode() & 0o7777, 0o4755);
        assert_eq!((md("modes/owned-dir/owned").uid(), md("modes/owned-dir/owned").gid()), (4242, 4343));
    }
    assert!(md("deep/l1/l2/l3/l4/l5/l6").is_dir());
    let bad = a.join(std::ffi::OsStr::from_bytes(b"names/bad-\xfe\xff"));
    assert!(bad.symlink_metadata().unwrap().is_file());
    let t = fs::read_link(a.join("links/bad-target")).unwrap();
    assert_eq!(t.as_os_str().as_bytes(), b"bad-\xfe\xff-target");
    assert!(fs::metadata(a.join("links/loop")).is_err(), "loop must not resolve");
    // Directory times survive their contents being created: none is recent.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for rel in ["", "deep", "deep/l1/l2", "names", "links", "hard/sub"] {
        let m = md(rel).mtime();
        assert!((now - m).abs() > 3600, "{rel:?} has a fresh mtime {m}");
    }
    assert_ne!(md("deep").mtime_nsec(), md("names").mtime_nsec());
}

#[test]
fn compare_reports_each_kind_of_difference() {
    let td = tempdir();
    let (a, b) = (td.path().join("a"), td.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    let info = make_tree(&a, 11, &small());
    make_tree(&b, 11, &small());
    let opts = CompareOpts::strict();
    compare_trees(&a, &b, &opts).unwrap();

    let f = b.join(&info.sample_file);
    keeping_times(&[&f], || flip_byte(&f, 1000));
    expect_diffs(&a, &b, &opts, 1, &["\"data/mid.bin\": content: first difference at byte 1000"]);

    fs::set_permissions(b.join("modes/rw-------"), fs::Permissions::from_mode(0o644)).unwrap();
    expect_diffs(&a, &b, &opts, 2, &["\"modes/rw-------\": mode: expected 0600, actual 0644"]);

    let (at, (s, ns)) = times(&b.join("data/one"));
    set_times(&b.join("data/one"), at, (s, (ns + 1) % 1_000_000_000));
    expect_diffs(&a, &b, &opts, 3, &["\"data/one\": mtime"]);

    let (at, (s, ns)) = times(&b.join("deep/l1"));
    set_times(&b.join("deep/l1"), at, (s + 1, ns));
    expect_diffs(&a, &b, &opts, 4, &["\"deep/l1\": mtime"]);
    expect_diffs(&a, &b, &CompareOpts { dir_mtime: false, ..opts.clone() }, 3, &[]);

    let l = b.join(&info.symlink);
    keeping_times(&[&l, &b.join("links")], || replace_symlink(&l, b"../data/empty"));
    expect_diffs(
        &a,
        &b,
        &opts,
        5,
        &["\"links/rel\": link target: expected \"../data/one\", actual \"../data/empty\""],
    );

    // Break the three-name file into a two-name one plus an identical copy.
    let lone = b.join("hard/sub/three-b");
    keeping_times(&[&lone, &b.join("hard/sub")], || {
        let c = fs::read(&lone).unwrap();
        fs::remove_file(&lone).unwrap();
        fs::write(&lone, c).unwrap();
        fs::set_permissions(&lone, fs::Permissions::from_mode(0o644)).unwrap();
    });
    expect_diffs(
        &a,
        &b,
        &opts,
        6,
        &["hard links: expected [\"hard/sub/three-b\", \"hard/three-a\", \"names/three c\"]"],
    );
    expect_diffs(&a, &b, &CompareOpts { hard_links: false, ..opts.clone() }, 5, &[]);

    keeping_times(&[&b.join("names")], || fs::remove_file(b.join("names/<a>&")).unwrap());
    expect_diffs(&a, &b, &opts, 7, &["\"names/<a>&\": missing"]);
    keeping_times(&[&b.join("data")], || fs::write(b.join("data/extra\n"), b"").unwrap());
    expect_diffs(&a, &b, &opts, 8, &["\"data/extra\\n\": unexpected"]);

    if is_root() {
        std::os::unix::fs::lchown(b.join("data/empty"), Some(1), Some(2)).unwrap();
        expect_diffs(&a, &b, &opts, 9, &["\"data/empty\": owner: expected 0:0, actual 1:2"]);
    }
    let short = CompareOpts { max_reported: 3, ..opts };
    let err = compare_trees(&a, &b, &short).unwrap_err();
    assert_eq!(err.lines().count(), 5, "{err}");
    assert!(err.contains("more"), "{err}");
}

#[test]
fn compare_tolerances() {
    let td = tempdir();
    let (a, b) = (td.path().join("a"), td.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    make_tree(&a, 12, &small());
    make_tree(&b, 12, &small());

    // A restorer that keeps only microseconds.
    for (rel, ns) in [("data/mid.txt", 123_456_789), ("deep", 999_999_999)] {
        let at = times(&a.join(rel)).0;
        set_times(&a.join(rel), at, (1_600_000_000, ns));
        set_times(&b.join(rel), at, (1_600_000_000, ns / 1000 * 1000));
    }
    let exact = CompareOpts::strict();
    expect_diffs(
        &a,
        &b,
        &exact,
        2,
        &["\"data/mid.txt\": mtime: expected 1600000000.123456789, actual 1600000000.123456000"],
    );
    compare_trees(&a, &b, &CompareOpts { mtime_resolution_ns: 1000, ..exact.clone() }).unwrap();
    compare_trees(&a, &b, &CompareOpts { mtime_resolution_ns: 0, ..exact.clone() }).unwrap();

    // restic 0.14's lossy link target.
    let l = b.join("links/bad-target");
    keeping_times(&[&l, &b.join("links")], || replace_symlink(&l, &go_lossy_utf8(b"bad-\xfe\xff-target")));
    let lossy = CompareOpts { mtime_resolution_ns: 1000, lossy_link_targets: true, ..exact.clone() };
    compare_trees(&a, &b, &lossy).unwrap();
    expect_diffs(&a, &b, &CompareOpts { lossy_link_targets: false, ..lossy.clone() }, 1, &["link target"]);

    // The root's own metadata can be ignored.
    fs::set_permissions(&b, fs::Permissions::from_mode(0o700)).unwrap();
    expect_diffs(&a, &b, &lossy, 1, &["\".\": mode"]);
    compare_trees(&a, &b, &CompareOpts { skip_root: true, ..lossy }).unwrap();
}

#[test]
fn go_lossy_utf8_replaces_each_invalid_byte() {
    assert_eq!(go_lossy_utf8(b"ok \xc3\xbc"), "ok ü".as_bytes());
    assert_eq!(go_lossy_utf8(b"a\xfe\xffb"), "a\u{fffd}\u{fffd}b".as_bytes());
    // A truncated 3-byte sequence is two invalid bytes to Go, not one.
    assert_eq!(go_lossy_utf8(b"\xe2\x82x"), "\u{fffd}\u{fffd}x".as_bytes());
}

/// The big tree through restic 0.14 with a v2 repository: restored exactly except for the
/// non-UTF-8 symlink target, which restic < 0.16 stores lossily.
#[test]
fn restic_v2_round_trip_is_exact() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    let info = make_tree(&src, 42, &TreeOpts { big: true, ..TreeOpts::default() });
    assert!((25 << 20..40 << 20).contains(&info.bytes), "big tree is {} bytes", info.bytes);

    let r = Restic::new(&td.path().join("r"));
    r.init(2, &[]);
    assert_eq!(r.config_json()["version"], 2);
    let id = r.backup(&[&src], &[]);
    assert_eq!(id.len(), 64);
    let snaps = r.snapshots_json();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(snaps[0]["paths"][0], fs::canonicalize(&src).unwrap().to_str().unwrap());

    // Repeated 1 MiB blocks and zero runs deduplicate, and text compresses.
    let packed: u64 = r.pack_files().iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert!(packed + (10 << 20) < info.bytes, "packs hold {packed} of {} bytes", info.bytes);

    let out = td.path().join("out");
    r.restore("latest", &out, &[]);
    let restored = restored_path(&out, &src);
    assert_eq!(restored, out.join(snapshot_subpath(&src)));
    compare_trees(&src, &restored, &CompareOpts::restic_014()).unwrap();

    // Without the allowance exactly one thing differs: the non-UTF-8 link target.
    let strict = CompareOpts::strict();
    expect_diffs(&src, &restored, &strict, 1, &["\"links/bad-target\": link target"]);
    let t = fs::read_link(restored.join("links/bad-target")).unwrap();
    assert_eq!(t.as_os_str().as_bytes(), "bad-\u{fffd}\u{fffd}-target".as_bytes());
    r.check_read_data();

    // The comparison sees mutations of the restored copy.
    let opts = CompareOpts::restic_014();
    let f = restored.join(info.big_file.as_ref().unwrap());
    keeping_times(&[&f], || flip_byte(&f, 5 << 20));
    expect_diffs(
        &src,
        &restored,
        &opts,
        1,
        &["\"big/repeat.bin\": content: first difference at byte 5242880"],
    );
    fs::set_permissions(restored.join("data/text-01.txt"), fs::Permissions::from_mode(0o604)).unwrap();
    expect_diffs(&src, &restored, &opts, 2, &["\"data/text-01.txt\": mode: expected 0644, actual 0604"]);
    let (at, (s, ns)) = times(&restored.join("hard/two-a"));
    set_times(&restored.join("hard/two-a"), at, (s, ns ^ 1));
    // Both names of the inode now carry the new time.
    expect_diffs(&src, &restored, &opts, 4, &["\"hard/two-a\": mtime", "\"data/hard-two-b\": mtime"]);
    let l = restored.join("links/to-dir");
    keeping_times(&[&l, &restored.join("links")], || replace_symlink(&l, b"../deep/l1/l2"));
    expect_diffs(&src, &restored, &opts, 5, &["\"links/to-dir\": link target"]);
}

/// A v1 repository, no compression, 4 MiB packs, backed up with `cd src && restic backup .`.
#[test]
fn restic_v1_small_packs_backup_of_dot() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    let info = make_tree(&src, 43, &TreeOpts { big: true, ..TreeOpts::default() });

    let r = Restic::new(&td.path().join("r"));
    r.init(1, &[]);
    assert_eq!(r.config_json()["version"], 1);
    let id = r.backup_dir_contents(&src, &["--compression", "off", "--pack-size", "4"]);
    let snaps = r.snapshots_json();
    assert_eq!(snaps[0]["id"], id.as_str());
    // The snapshot still records the absolute path, but the tree starts inside it.
    assert_eq!(snaps[0]["paths"][0], fs::canonicalize(&src).unwrap().to_str().unwrap());

    let packs = r.pack_files();
    let sizes: Vec<u64> = packs.iter().map(|p| fs::metadata(p).unwrap().len()).collect();
    assert!(packs.len() >= 5, "only {} packs: {sizes:?}", packs.len());
    assert!(sizes.iter().all(|&s| s < (4 << 20) + (8 << 20) + 4096), "{sizes:?}");
    assert!(sizes.iter().filter(|&&s| s >= 4 << 20).count() >= 3, "{sizes:?}");

    let out = td.path().join("out");
    r.restore(&id, &out, &[]);
    assert!(out.join("data/mid.bin").is_file());
    // restic creates the target itself; its metadata is not the source root's.
    compare_trees(&src, &out, &CompareOpts { skip_root: true, ..CompareOpts::restic_014() }).unwrap();
    r.check_read_data();

    // `ID:subpath` emulation: the target becomes that directory, metadata included.
    let sub = td.path().join("deep-only");
    r.restore("latest:deep", &sub, &[]);
    compare_trees(&src.join("deep"), &sub, &CompareOpts::restic_014()).unwrap();
    let sub2 = td.path().join("names-only");
    r.restore(&format!("{}:/names/", &id[..8]), &sub2, &[]);
    compare_trees(&src.join("names"), &sub2, &CompareOpts::restic_014()).unwrap();
    assert!(fs::read_dir(td.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .as_bytes()
        .starts_with(b".restic")));
    let _ = info;
}

#[test]
fn pipeline_connects_stages_and_keeps_stderrs_apart() {
    let r = pipeline(
        &[
            argv(["sh", "-c", "echo one; echo two; echo err0 >&2"]),
            argv(["sh", "-c", "tr a-z A-Z; echo err1 >&2; exit 3"]),
        ],
        &[],
    );
    assert_eq!(r.stdout, b"ONE\nTWO\n");
    assert_eq!(r.codes(), vec![0, 3]);
    assert_eq!(r.stderrs, vec![b"err0\n".to_vec(), b"err1\n".to_vec()]);
    assert!(!r.ok());
    let msg = std::panic::catch_unwind(|| {
        r.assert_ok();
    })
    .unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(msg.contains("stage 1: sh -c") && msg.contains("exit 3") && msg.contains("err1"), "{msg}");

    let ok = pipeline(&[argv(["sh", "-c", "printf '%s' \"$FOO\""]), argv(["cat"])], &[("FOO", "bar baz")]);
    ok.assert_ok();
    assert_eq!(ok.stdout_str(), "bar baz");
}

#[test]
fn pipeline_stdin_dir_sigpipe_and_timeout() {
    let td = tempdir();
    let r = Pipeline::new()
        .stage(argv(["sh", "-c", "cat; pwd"]))
        .stage(argv(["tr", "a-z", "A-Z"]))
        .stdin("hello\n")
        .current_dir(td.path())
        .run();
    r.assert_ok();
    let want = format!("HELLO\n{}\n", td.path().to_str().unwrap().to_uppercase());
    assert_eq!(r.stdout_str(), want);

    // Like a shell: the writer dies of SIGPIPE (141) when the reader stops early.
    let r = pipeline(&[argv(["yes"]), argv(["head", "-n", "2"])], &[]);
    assert_eq!(r.stdout, b"y\ny\n");
    assert_eq!(r.codes(), vec![141, 0]);

    let r = Pipeline::new().stage(argv(["sleep", "30"])).timeout(Duration::from_millis(200)).run();
    assert!(r.timed_out && !r.ok());
    assert_eq!(r.codes(), vec![128 + 9]);

    let lines = Pipeline::new().stage(argv(["cat"])).stdin("{\"a\":1}\n\n{\"b\":2}\n").run().json_lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["b"], 2);
}

#[test]
fn our_binaries_are_found() {
    for name in ["walk", "snapshots", "fetch-pack", "unpack", "verify"] {
        assert!(bin(name).is_file());
        assert_eq!(bin(name).parent().unwrap(), bin_dir());
    }
}
