//! Backups made by `chunk | pack | push` against the real restic (0.14): restic checks and
//! restores what we write, the two deduplicate against each other and build the same trees,
//! incremental backups read only what changed, and random trees survive our own round trip.
//!
//! restic must be installed: these tests fail, never skip, without it.

mod support;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use support::backup::{count, init_repo, restore, Backup};
use support::count_files;
use support::{
    compare_trees, make_tree, restored_path, snapshot_subpath, tempdir, CompareOpts, Restic, TreeOpts,
};

/// Sum of the sizes of all regular-file names under `dir` (hard links counted per name).
fn bytes_by_name(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Removes the symlink whose target is not UTF-8 (keeping its directory's times): restic
/// 0.14 stores such a target lossily, we store it exactly (`linktarget_raw`, as restic 0.16
/// does), so that one directory's tree differs between the two by design.
fn drop_non_utf8_link_target(src: &Path) {
    use std::os::unix::fs::MetadataExt;
    let dir = src.join("links");
    let md = fs::symlink_metadata(&dir).unwrap();
    fs::remove_file(dir.join("bad-target")).unwrap();
    support::set_times(&dir, (md.atime(), md.atime_nsec()), (md.mtime(), md.mtime_nsec()));
}

/// `restic backup --json ARGS` run in `dir`; returns restic's summary message.
fn restic_backup(r: &Restic, dir: &Path, args: &[&OsStr]) -> Value {
    let mut c = r.command();
    c.arg("backup").arg("--json").args(args).current_dir(dir);
    let out = c.output().expect("run restic (is it installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "restic backup {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_else(|| panic!("restic backup printed no summary:\n{stdout}"))
}

/// The snapshot with full or short id `id`, from `restic snapshots --json`.
fn snapshot(r: &Restic, id: &str) -> Value {
    let full = r.full_id(id);
    r.snapshots_json().into_iter().find(|s| s["id"] == full.as_str()).expect("snapshot listed")
}

/// `restic ls --json ID`: (path, type, size, mode) of every node, in restic's order.
fn listing(r: &Restic, id: &str) -> Vec<(String, String, u64, u64)> {
    let out = r.run(&["ls", "--json", id]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("restic ls line {l:?}: {e}")))
        .filter(|v| v["struct_type"] == "node")
        .map(|v| {
            (
                v["path"].as_str().unwrap().to_string(),
                v["type"].as_str().unwrap().to_string(),
                v["size"].as_u64().unwrap_or(0),
                v["mode"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// For every blob in the repository's index (via restic): (pack id, type, stored length,
/// uncompressed length if compressed).
fn indexed_blobs(r: &Restic) -> Vec<(String, String, u64, Option<u64>)> {
    let ids = String::from_utf8(r.run(&["list", "index"]).stdout).unwrap();
    let mut out = Vec::new();
    for id in ids.lines().filter(|l| !l.is_empty()) {
        let idx: Value = serde_json::from_slice(&r.run(&["cat", "index", id]).stdout).unwrap();
        for p in idx["packs"].as_array().unwrap() {
            let pack = p["id"].as_str().unwrap().to_string();
            for b in p["blobs"].as_array().unwrap() {
                let t = b["type"].as_str().unwrap().to_string();
                out.push((pack.clone(), t, b["length"].as_u64().unwrap(), b["uncompressed_length"].as_u64()));
            }
        }
    }
    out
}

struct Combo {
    version: u32,
    compression: &'static str,
    pack_mib: u64,
    big: bool,
    seed: u64,
}

/// Backs up a generated tree with one combination of repository format, compression and pack
/// size; then `restic check --read-data` must pass and both restic's and our restore must
/// reproduce the source.
fn restic_accepts(c: Combo) {
    let t0 = Instant::now();
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src, c.seed, &TreeOpts { big: c.big, ..TreeOpts::default() });
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, c.version);
    assert_eq!(r.config_json()["version"], c.version);

    let mib = c.pack_mib.to_string();
    let s = Backup::of(&[&src])
        .pack_args(&["--compression", c.compression, "--pack-size", &mib, "--tag", "interop,x"])
        .run(&r);
    let nfiles = count_files(&src) as u64;
    assert_eq!(count(&s, "files_new"), nfiles, "{s}");
    assert_eq!(count(&s, "files_read"), nfiles, "{s}");
    assert_eq!(count(&s, "bytes_read"), bytes_by_name(&src), "{s}");
    assert_eq!(count(&s, "files_unmodified") + count(&s, "files_changed"), 0, "{s}");
    let id = r.full_id(s["snapshot_id"].as_str().unwrap());
    let snaps = r.snapshots_json();
    assert_eq!(snaps.len(), 1);
    let snap = &snaps[0];
    assert_eq!(snap["id"], id.as_str());
    assert_eq!(snap["paths"], serde_json::json!([fs::canonicalize(&src).unwrap().to_str().unwrap()]));
    assert_eq!(snap["tags"], serde_json::json!(["interop", "x"]));

    // Pack sizes follow --pack-size: a pack closes once it reaches the target, so of each
    // type all packs but the last reach it, and none exceeds it by more than one blob.
    let blobs = indexed_blobs(&r);
    let files: Vec<u64> = r.pack_files().iter().map(|p| fs::metadata(p).unwrap().len()).collect();
    let target = c.pack_mib << 20;
    assert!(
        files.iter().all(|&n| n <= target + (8 << 20) + (64 << 10)),
        "a pack above {target} + one blob: {files:?}"
    );
    let mut packs: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for b in &blobs {
        *packs.entry((b.1.as_str(), b.0.as_str())).or_default() += b.2;
    }
    assert_eq!(packs.len(), files.len(), "packs in the index vs. in data/");
    for t in ["data", "tree"] {
        let sizes: Vec<u64> = packs.iter().filter(|(k, _)| k.0 == t).map(|(_, v)| *v).collect();
        let small = sizes.iter().filter(|&&n| n < target).count();
        assert!(small <= 1, "{t} packs below the {target}-byte target: {sizes:?}");
        if c.pack_mib >= 64 {
            assert_eq!(sizes.len(), 1, "all {t} blobs fit one pack: {sizes:?}");
        }
        if c.big && c.pack_mib == 4 && t == "data" {
            assert!(sizes.len() >= 2, "{sizes:?}");
        }
    }
    let data_added = count(&s, "data_added");

    // Compression as asked, seen through restic's reading of our index.
    assert_eq!(blobs.iter().filter(|b| b.1 == "data").count() as u64, count(&s, "data_blobs"));
    assert_eq!(blobs.iter().filter(|b| b.1 == "tree").count() as u64, count(&s, "tree_blobs"));
    let compressed = blobs.iter().filter(|b| b.3.is_some()).count();
    let stored: u64 = blobs.iter().map(|b| b.2).sum();
    if c.version == 2 && c.compression != "off" {
        // Every blob but the empty one is compressed, and the text shrinks the total.
        assert!(compressed + 1 >= blobs.len(), "{compressed} of {} blobs compressed", blobs.len());
        assert!(stored < data_added * 95 / 100, "compressed data takes {stored} of {data_added} bytes");
    } else {
        assert_eq!(compressed, 0, "compression {} in format {} compressed blobs", c.compression, c.version);
        assert!(stored >= data_added, "{stored} < {data_added}");
    }

    r.check_read_data();

    let out = td.path().join("restic-out");
    r.restore(&id, &out, &[]);
    compare_trees(&src, &restored_path(&out, &src), &CompareOpts::restic_014())
        .unwrap_or_else(|e| panic!("restic's restore differs from the source:\n{e}"));

    let ours = td.path().join("our-out");
    restore(&r, &id, &ours);
    compare_trees(&src, &ours.join(snapshot_subpath(&src)), &CompareOpts::strict())
        .unwrap_or_else(|e| panic!("our restore differs from the source:\n{e}"));
    eprintln!(
        "restic_accepts v{} {} {} MiB big={}: {:.1?}",
        c.version,
        c.compression,
        c.pack_mib,
        c.big,
        t0.elapsed()
    );
}

#[test]
fn restic_accepts_format2_auto_4mib_big() {
    restic_accepts(Combo { version: 2, compression: "auto", pack_mib: 4, big: true, seed: 101 });
}

#[test]
fn restic_accepts_format2_off_128mib_big() {
    restic_accepts(Combo { version: 2, compression: "off", pack_mib: 128, big: true, seed: 102 });
}

#[test]
fn restic_accepts_format1_16mib() {
    restic_accepts(Combo { version: 1, compression: "auto", pack_mib: 16, big: false, seed: 103 });
}

#[test]
fn restic_accepts_format2_auto_64mib() {
    restic_accepts(Combo { version: 2, compression: "auto", pack_mib: 64, big: false, seed: 104 });
}

#[test]
fn restic_accepts_format1_off_4mib() {
    restic_accepts(Combo { version: 1, compression: "off", pack_mib: 4, big: false, seed: 105 });
}

/// The same arguments, given to restic and to chunk, make the same tree shape: relative
/// targets, `.`, absolute targets, several targets, files as targets, `..`.
#[test]
fn target_paths_make_the_trees_restic_makes() {
    let td = tempdir();
    let base = fs::canonicalize(td.path()).unwrap();
    let src = base.join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src, 7, &TreeOpts::default());
    drop_non_utf8_link_target(&src);
    let r = Restic::new(&base.join("r"));
    init_repo(&r, 2);
    let abs = src.clone().into_os_string();
    let cases: Vec<(&str, PathBuf, Vec<OsString>, bool)> = vec![
        // (what, working dir, arguments, whether the root tree must be identical)
        ("relative", base.clone(), vec!["src".into()], true),
        ("dot", src.clone(), vec![".".into()], true),
        ("dot-slash", base.clone(), vec!["./src/".into()], true),
        (
            "several relative",
            base.clone(),
            vec!["src/links".into(), "src/deep".into(), "src/data/one".into()],
            false,
        ),
        ("dot-dot", src.join("data"), vec!["../names".into()], false),
        ("dot-dot nested", src.join("data"), vec!["../deep/l1/l2".into(), "../links".into()], false),
        (
            "inner dot-dot",
            base.clone(),
            vec!["src/deep/../links".into(), "src/data/../hard/sub".into()],
            false,
        ),
        ("absolute", PathBuf::from("/"), vec![abs], false),
    ];
    for (what, dir, args, same_tree) in cases {
        let refs: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let theirs = restic_backup(&r, &dir, &refs);
        let ours = Backup::of(&args).in_dir(&dir).chunk_args(&["--force"]).run(&r);
        let (tid, oid) = (theirs["snapshot_id"].as_str().unwrap(), ours["snapshot_id"].as_str().unwrap());
        let (ts, os) = (snapshot(&r, tid), snapshot(&r, oid));
        assert_eq!(ts["paths"], os["paths"], "{what}: snapshot paths differ");
        let (tl, ol) = (listing(&r, tid), listing(&r, oid));
        if tl != ol {
            let only_t: Vec<_> = tl.iter().filter(|x| !ol.contains(x)).take(10).collect();
            let only_o: Vec<_> = ol.iter().filter(|x| !tl.contains(x)).take(10).collect();
            panic!("{what} ({args:?} in {dir:?}): trees differ\nonly restic's: {only_t:#?}\nonly ours: {only_o:#?}");
        }
        if same_tree {
            assert_eq!(ts["tree"], os["tree"], "{what}: root tree ids differ");
        }
    }
    r.check_read_data();
}

/// restic's backup first, then ours of the same directory into the same repository (made by
/// restic or by init-repo): no new data blobs, and the same root tree. Without --force,
/// chunk takes restic's snapshot as the parent and reads nothing.
#[test]
fn sluice_after_restic_adds_no_data() {
    for restic_init in [true, false] {
        let td = tempdir();
        let src = td.path().join("src");
        fs::create_dir(&src).unwrap();
        make_tree(&src, 21, &TreeOpts { big: restic_init, ..TreeOpts::default() });
        drop_non_utf8_link_target(&src);
        let nfiles = count_files(&src) as u64;
        let r = Restic::new(&td.path().join("r"));
        if restic_init {
            r.init(2, &[]);
        } else {
            init_repo(&r, 1);
        }
        let theirs = restic_backup(&r, &src, &[OsStr::new(".")]);
        assert!(count(&theirs, "data_blobs") > 5, "{theirs}");
        let ours = Backup::of(&["."]).in_dir(&src).chunk_args(&["--force"]).run(&r);
        let how = if restic_init { "restic init" } else { "init-repo" };
        assert_eq!(count(&ours, "files_read"), nfiles, "{how}: {ours}");
        assert_eq!(count(&ours, "data_blobs"), 0, "{how}: sluice stored data restic had stored: {ours}");
        assert_eq!(count(&ours, "tree_blobs"), 0, "{how}: sluice's trees differ from restic's: {ours}");
        assert_eq!(count(&ours, "data_added"), 0, "{how}: {ours}");
        let (ts, os) = (
            snapshot(&r, theirs["snapshot_id"].as_str().unwrap()),
            snapshot(&r, ours["snapshot_id"].as_str().unwrap()),
        );
        assert_eq!(ts["tree"], os["tree"], "{how}: root tree ids differ");

        // restic's snapshot is a parent like any other (same host, same paths).
        let inc = Backup::of(&["."]).in_dir(&src).run(&r);
        assert_eq!((count(&inc, "files_read"), count(&inc, "bytes_read")), (0, 0), "{how}: {inc}");
        assert_eq!(count(&inc, "files_unmodified"), nfiles, "{how}: {inc}");
        let inc_snap = snapshot(&r, inc["snapshot_id"].as_str().unwrap());
        assert_eq!(inc_snap["tree"], ts["tree"], "{how}");
        assert_eq!(inc_snap["parent"], os["id"], "{how}: the newest matching snapshot is the parent");
        r.check_read_data();
    }
}

/// Ours first, then restic's backup of the same directory: restic finds every blob stored.
#[test]
fn restic_after_sluice_adds_no_data() {
    for restic_init in [false, true] {
        let td = tempdir();
        let src = td.path().join("src");
        fs::create_dir(&src).unwrap();
        make_tree(&src, 22, &TreeOpts { big: !restic_init, ..TreeOpts::default() });
        drop_non_utf8_link_target(&src);
        let r = Restic::new(&td.path().join("r"));
        if restic_init {
            r.init(1, &[]);
        } else {
            init_repo(&r, 2);
        }
        let how = if restic_init { "restic init" } else { "init-repo" };
        let ours = Backup::of(&["."]).in_dir(&src).run(&r);
        assert!(count(&ours, "data_blobs") > 5, "{ours}");
        let theirs = restic_backup(&r, &src, &[OsStr::new("--force"), OsStr::new(".")]);
        assert_eq!(count(&theirs, "data_blobs"), 0, "{how}: restic stored data sluice had stored: {theirs}");
        assert_eq!(count(&theirs, "tree_blobs"), 0, "{how}: restic's trees differ from sluice's: {theirs}");
        assert!(count(&theirs, "data_added") < 4096, "{how}: {theirs}");
        let (ts, os) = (
            snapshot(&r, theirs["snapshot_id"].as_str().unwrap()),
            snapshot(&r, ours["snapshot_id"].as_str().unwrap()),
        );
        assert_eq!(ts["tree"], os["tree"], "{how}: root tree ids differ");
        r.check_read_data();
    }
}

/// A second backup of an unchanged tree finds its parent by host and paths and reads no
/// file; after one file changes, exactly that file is read.
#[test]
fn incremental_backup_reads_only_what_changed() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    let info = make_tree(&src, 31, &TreeOpts { big: true, ..TreeOpts::default() });
    let nfiles = count_files(&src) as u64;
    let r = Restic::new(&td.path().join("r"));
    init_repo(&r, 2);

    let first = Backup::of(&[&src]).run(&r);
    assert_eq!(count(&first, "files_read"), nfiles, "{first}");
    let second = Backup::of(&[&src]).run(&r);
    assert_eq!(count(&second, "files_read"), 0, "{second}");
    assert_eq!(count(&second, "bytes_read"), 0, "{second}");
    assert_eq!(count(&second, "files_unmodified"), nfiles, "{second}");
    assert_eq!(count(&second, "files_new") + count(&second, "files_changed"), 0, "{second}");
    assert_eq!(count(&second, "data_blobs"), 0, "{second}");
    assert_eq!(count(&second, "total_bytes_processed"), count(&first, "total_bytes_processed"));
    let (s1, s2) = (
        snapshot(&r, first["snapshot_id"].as_str().unwrap()),
        snapshot(&r, second["snapshot_id"].as_str().unwrap()),
    );
    assert_eq!(s2["parent"], s1["id"]);
    assert_eq!(listing(&r, s1["id"].as_str().unwrap()), listing(&r, s2["id"].as_str().unwrap()));
    // No wall-clock ratio here: the counters above are the property; speed is `make bench`'s.

    // Change one file (it keeps its inode; size, mtime and ctime move).
    let changed = src.join(&info.text_file);
    let mut content = fs::read(&changed).unwrap();
    content.extend_from_slice(b"one more line\n");
    fs::write(&changed, &content).unwrap();
    let third = Backup::of(&[&src]).run(&r);
    assert_eq!(count(&third, "files_read"), 1, "{third}");
    assert_eq!(count(&third, "files_changed"), 1, "{third}");
    assert_eq!(count(&third, "bytes_read"), content.len() as u64, "{third}");
    assert_eq!(count(&third, "files_unmodified"), nfiles - 1, "{third}");
    assert!(count(&third, "data_blobs") >= 1, "{third}");

    // The snapshot made mostly of reused content restores exactly.
    let out = td.path().join("out");
    restore(&r, third["snapshot_id"].as_str().unwrap(), &out);
    compare_trees(&src, &out.join(snapshot_subpath(&src)), &CompareOpts::strict()).unwrap();
    r.check_read_data();
}

/// Random trees, backed up by sluice with varying formats, compression, pack sizes and
/// target forms, come back identical through sluice's restore.
#[test]
fn round_trip_many_seeds() {
    let t0 = Instant::now();
    let td = tempdir();
    let base = fs::canonicalize(td.path()).unwrap();
    let repos = [Restic::new(&base.join("r1")), Restic::new(&base.join("r2"))];
    init_repo(&repos[0], 1);
    init_repo(&repos[1], 2);
    let compressions = ["auto", "off", "max", "fastest", "better"];
    for seed in 0..12u64 {
        let name = format!("src-{seed}");
        let src = base.join(&name);
        fs::create_dir(&src).unwrap();
        let scale = [0.3, 1.0, 0.6][seed as usize % 3];
        make_tree(
            &src,
            1000 + seed,
            &TreeOpts { size_scale: scale, non_utf8: seed % 4 != 3, ..TreeOpts::default() },
        );
        let r = &repos[seed as usize % 2];
        let comp =
            if seed % 2 == 0 { "auto" } else { compressions[(seed as usize / 2) % compressions.len()] };
        let pack = ["4", "16", "5"][seed as usize % 3];
        let (backup, restored, opts): (Backup, PathBuf, CompareOpts) = match seed % 3 {
            0 => (Backup::of(&[&src]), snapshot_subpath(&src).into(), CompareOpts::strict()),
            1 => (Backup::of(&[&name]).in_dir(&base), name.clone().into(), CompareOpts::strict()),
            _ => (
                Backup::of(&["."]).in_dir(&src),
                PathBuf::new(),
                CompareOpts { skip_root: true, ..CompareOpts::strict() },
            ),
        };
        let s = backup.pack_args(&["--compression", comp, "--pack-size", pack]).run(r);
        let out = base.join(format!("out-{seed}"));
        let res = restore(r, s["snapshot_id"].as_str().unwrap(), &out);
        assert!(res.codes().iter().all(|&c| c == 0));
        compare_trees(&src, &out.join(&restored), &opts).unwrap_or_else(|e| {
            panic!("seed {seed} (format {}, {comp}, {pack} MiB): restore differs:\n{e}", seed % 2 + 1)
        });
    }
    eprintln!("round trip of 12 trees: {:.1?}", t0.elapsed());
    assert!(t0.elapsed().as_secs() < 120, "round trip took {:?}", t0.elapsed());
}
