//! Repositories written by the real restic (Debian's 0.14 in CI; never skipped) restored by
//! sluice's pipeline, `walk | fetch-pack | unpack | verify`, and compared with their source
//! and with what `restic restore` makes of the same selection.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::*;

/// What the source tree was restored with: exact but for the restoring root's own metadata
/// (no snapshot node describes it) and the non-UTF-8 link target restic 0.14 stores lossily.
fn vs_source() -> CompareOpts {
    CompareOpts { skip_root: true, ..CompareOpts::restic_014() }
}

/// A source tree and a restic repository holding one snapshot of it (`cd src && restic
/// backup .`, so the snapshot's root is the tree's root).
struct Repo {
    td: tempfile::TempDir,
    src: PathBuf,
    r: Restic,
    id: String,
}

fn backed_up(version: u32, backup_args: &[&str], seed: u64, big: bool) -> Repo {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src, seed, &TreeOpts { big, ..TreeOpts::default() });
    let r = Restic::new(&td.path().join("r"));
    r.init(version, &[]);
    assert_eq!(r.config_json()["version"], version);
    let id = r.backup_dir_contents(&src, backup_args);
    Repo { td, src, r, id }
}

/// Every content blob of every file record: (path, blob location).
fn blobs(records: &[Value]) -> Vec<(&str, &Value)> {
    records
        .iter()
        .flat_map(|r| {
            let p = r["path"].as_str().unwrap_or_default();
            r["blobs"].as_array().into_iter().flatten().map(move |b| (p, b))
        })
        .collect()
}

/// One cell of the matrix: back the tree up with `backup_args`, restore it with the
/// pipeline, compare. Returns the repository and walk's records for further checks.
fn round_trip(version: u32, backup_args: &[&str], seed: u64, big: bool) -> (Repo, Vec<Value>) {
    let repo = backed_up(version, backup_args, seed, big);
    let out = repo.td.path().join("out");
    let res = restore_pipeline(&repo.r, "latest", &out, &[], &[]);
    let n = assert_restore_ok(&res, &repo.src);
    assert!(n >= 40, "only {n} files verified");
    compare_trees(&repo.src, &out, &vs_source()).unwrap_or_else(|e| panic!("{backup_args:?}: {e}"));
    // The restored non-UTF-8 target is what restic stored: the lossy form, not something else.
    let t = fs::read_link(out.join("links/bad-target")).unwrap();
    assert_eq!(t.as_os_str().as_bytes(), go_lossy_utf8(b"bad-\xfe\xff-target"));

    let records = walk_records(&repo.r, "latest", &[]);
    let compressed = blobs(&records).iter().filter(|(_, b)| b.get("uncompressed_length").is_some()).count();
    let want_compressed = version == 2 && !backup_args.contains(&"off");
    assert_eq!(
        compressed > 0,
        want_compressed,
        "{compressed} compressed blobs with {backup_args:?}, v{version}"
    );
    (repo, records)
}

/// Asserts that some file's blobs sit in at least two packs; returns that file's path.
fn file_spanning_packs(records: &[Value]) -> String {
    let mut packs: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (p, b) in blobs(records) {
        packs.entry(p).or_default().insert(b["pack"].as_str().unwrap());
    }
    let (path, set) = packs.iter().max_by_key(|(_, s)| s.len()).expect("some file has blobs");
    assert!(set.len() >= 2, "no file spans two packs; widest is {path} in {set:?}");
    path.to_string()
}

fn pack_count(r: &Restic) -> usize {
    r.pack_files().len()
}

#[test]
fn v1_pack_4_big() {
    let (repo, records) = round_trip(1, &["--pack-size", "4"], 101, true);
    let f = file_spanning_packs(&records);
    assert!(f.starts_with("big/"), "{f}");
    assert!(pack_count(&repo.r) >= 5);
}

#[test]
fn v1_pack_64() {
    round_trip(1, &["--pack-size", "64"], 102, false);
}

#[test]
fn v2_off_pack_16() {
    round_trip(2, &["--compression", "off", "--pack-size", "16"], 103, false);
}

#[test]
fn v2_auto_pack_4_big() {
    let (repo, records) = round_trip(2, &["--compression", "auto", "--pack-size", "4"], 104, true);
    file_spanning_packs(&records);
    assert!(pack_count(&repo.r) >= 4);
}

#[test]
fn v2_max_pack_128_big() {
    let (repo, records) = round_trip(2, &["--compression", "max", "--pack-size", "128"], 105, true);
    // Every data blob of the 28 MiB tree fits the one data pack a 128 MiB limit allows.
    let data_packs: BTreeSet<&str> =
        blobs(&records).iter().map(|(_, b)| b["pack"].as_str().unwrap()).collect();
    assert_eq!(data_packs.len(), 1, "{data_packs:?}");
    let big = record_for(&records, "big/repeat.bin");
    assert!(big["blobs"].as_array().unwrap().len() >= 9, "repeat.bin should be many blobs: {}", big["blobs"]);
    let _ = repo;
}

#[test]
fn v2_max_pack_16() {
    round_trip(2, &["--compression", "max", "--pack-size", "16"], 106, false);
}

#[test]
fn v2_auto_pack_64_default_args() {
    // No --compression: restic's default (auto) for a v2 repository.
    round_trip(2, &["--pack-size", "64"], 107, false);
}

/// A second snapshot restored by id prefix gives back the first state, not the latest; the
/// repository named through restic's environment variables instead of flags.
#[test]
fn older_snapshot_by_id_prefix() {
    let repo = backed_up(2, &["--pack-size", "16"], 108, false);
    let first = repo.td.path().join("first");
    fs::create_dir(&first).unwrap();
    make_tree(&first, 108, &TreeOpts::default());
    compare_trees(&repo.src, &first, &CompareOpts::strict()).unwrap();

    let src = &repo.src;
    let mut text = fs::read(src.join("data/mid.txt")).unwrap();
    text.extend_from_slice(b"one more line\n");
    fs::write(src.join("data/mid.txt"), text).unwrap();
    fs::remove_file(src.join("data/one")).unwrap();
    fs::write(src.join("deep/new file"), b"new\n").unwrap();
    fs::set_permissions(src.join("modes/rw-------"), fs::Permissions::from_mode(0o640)).unwrap();
    let id2 = repo.r.backup_dir_contents(src, &["--pack-size", "16"]);
    assert_ne!(id2, repo.id);

    let env = [
        ("RESTIC_REPOSITORY", repo.r.repo.to_str().unwrap()),
        ("RESTIC_PASSWORD_FILE", repo.r.password_file.to_str().unwrap()),
    ];
    let run = |spec: &str, out: &Path| {
        let t = out.to_str().unwrap();
        pipeline(
            &[
                argv(["walk", spec]),
                argv(["fetch-pack"]),
                argv(["unpack", "--target", t]),
                argv(["verify", "--target", t]),
            ],
            &env,
        )
    };
    let out1 = repo.td.path().join("out1");
    let res = run(&repo.id[..8], &out1);
    assert_restore_ok(&res, &first);
    compare_trees(&first, &out1, &vs_source()).unwrap_or_else(|e| panic!("{e}"));
    assert!(compare_trees(src, &out1, &vs_source()).is_err(), "the two snapshots should differ");

    let out2 = repo.td.path().join("out2");
    let res = run("latest", &out2);
    assert_restore_ok(&res, src);
    compare_trees(src, &out2, &vs_source()).unwrap_or_else(|e| panic!("{e}"));

    // And with the password itself in the environment.
    let out3 = repo.td.path().join("out3");
    let env3 = [("RESTIC_REPOSITORY", env[0].1), ("RESTIC_PASSWORD", PASSWORD)];
    let t = out3.to_str().unwrap();
    let res = pipeline(&[argv(["walk", &id2[..10]]), argv(["fetch-pack"]), argv(["unpack", "-t", t])], &env3);
    res.assert_ok();
    compare_trees(src, &out3, &vs_source()).unwrap_or_else(|e| panic!("{e}"));
}

/// Allocated bytes of a file.
fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

fn supports_holes(dir: &Path) -> bool {
    let p = dir.join("hole-probe");
    let f = fs::File::create(&p).unwrap();
    f.set_len(8 << 20).unwrap();
    drop(f);
    let holes = allocated(&p) < 1 << 20;
    fs::remove_file(&p).unwrap();
    holes
}

#[test]
fn sparse_restore_is_identical_and_has_holes() {
    let repo = backed_up(2, &["--pack-size", "16"], 109, true);
    let records = walk_records(&repo.r, "latest", &[]);
    // Long zero runs come out of restic's chunker as 512 KiB all-zero blobs.
    let zero_id = hex::encode(Sha256::digest(vec![0u8; 512 << 10]));
    let zeros = record_for(&records, "big/zeros.bin");
    let n_zero = zeros["blobs"].as_array().unwrap().iter().filter(|b| b["id"] == zero_id.as_str()).count();
    assert!(n_zero >= 3, "zeros.bin has {n_zero} all-zero blobs: {}", zeros["blobs"]);

    let (dense, sparse) = (repo.td.path().join("dense"), repo.td.path().join("sparse"));
    assert_restore_ok(&restore_pipeline(&repo.r, "latest", &dense, &[], &[]), &repo.src);
    assert_restore_ok(&restore_pipeline(&repo.r, "latest", &sparse, &[], &["--sparse"]), &repo.src);
    compare_trees(&repo.src, &sparse, &vs_source()).unwrap_or_else(|e| panic!("{e}"));
    compare_trees(&dense, &sparse, &CompareOpts { skip_root: true, ..CompareOpts::strict() })
        .unwrap_or_else(|e| panic!("{e}"));

    let f = "big/zeros.bin";
    let size = fs::metadata(sparse.join(f)).unwrap().len();
    let (d, s) = (allocated(&dense.join(f)), allocated(&sparse.join(f)));
    if supports_holes(repo.td.path()) {
        assert!(d >= size, "dense copy has holes: {d} bytes allocated for {size}");
        let holes = n_zero as u64 * (512 << 10);
        assert!(
            s + holes <= size + (64 << 10),
            "sparse copy: {s} bytes allocated for {size}, {holes} should be holes"
        );
    }
}

/// Subpaths and include/exclude patterns: our restore of a selection equals `restic
/// restore`'s of the same selection, metadata of the directories leading to it included.
#[test]
fn subpath_and_filters_match_restic() {
    let repo = backed_up(2, &["--pack-size", "16"], 110, false);
    let base = repo.td.path();
    let strict_no_root = CompareOpts { skip_root: true, ..CompareOpts::strict() };

    // SNAP:PATH, with and without the leading slash, non-UTF-8 names inside.
    for (n, (spec, sub)) in
        [("latest:/deep/l1", "deep/l1"), ("latest:names", "names"), ("latest:hard/", "hard")]
            .into_iter()
            .enumerate()
    {
        let ours = base.join(format!("sub-ours-{n}"));
        let theirs = base.join(format!("sub-restic-{n}"));
        assert_restore_ok(&restore_pipeline(&repo.r, spec, &ours, &[], &[]), &repo.src.join(sub));
        repo.r.restore(&format!("latest:{sub}"), &theirs, &[]);
        compare_trees(&theirs, &ours, &strict_no_root).unwrap_or_else(|e| panic!("{spec}: {e}"));
        compare_trees(&repo.src.join(sub), &ours, &vs_source()).unwrap_or_else(|e| panic!("{spec}: {e}"));
    }

    // SNAP:PATH with a pattern. restic 0.14 has no SNAP:PATH, but a relative pattern
    // restored from the root and cut down to the subtree selects the same.
    let ours = base.join("sub-include-ours");
    let theirs = base.join("sub-include-restic");
    let res = restore_pipeline(&repo.r, "latest:deep", &ours, &["--include", "*.txt"], &[]);
    res.assert_ok();
    assert_eq!(framed_records(&res).len(), 3, "three leaf.txt files below deep");
    repo.r.run(&[
        OsStr::new("restore"),
        OsStr::new("latest"),
        OsStr::new("--target"),
        theirs.as_os_str(),
        OsStr::new("--include"),
        OsStr::new("*.txt"),
    ]);
    compare_trees(&theirs.join("deep"), &ours, &strict_no_root)
        .unwrap_or_else(|e| panic!("deep with *.txt: {e}"));

    // (flag, pattern, a path that must be restored, a path that must not)
    let cases = [
        ("--include", "*.txt", "deep/l1/l2/leaf.txt", "data/mid.bin"),
        ("--include", "/deep/l1/l2", "deep/l1/l2/l3/l4/leaf.txt", "data"),
        ("--include", "three*", "hard/sub/three-b", "hard/two-a"),
        ("--exclude", "deep", "data/mid.bin", "deep"),
        ("--exclude", "*.bin", "data/mid.txt", "data/mid.bin"),
        ("--exclude", "/names/dir with space", "names/with space", "names/dir with space"),
    ];
    for (n, (flag, pat, present, absent)) in cases.into_iter().enumerate() {
        let ours = base.join(format!("ours-{n}"));
        let theirs = base.join(format!("restic-{n}"));
        let res = restore_pipeline(&repo.r, "latest", &ours, &[flag, pat], &[]);
        res.assert_ok();
        let verdicts = framed_records(&res);
        assert!(verdicts.iter().all(|v| v["ok"] == true), "{flag} {pat}: {verdicts:?}");
        assert_eq!(verdicts.len(), count_files(&ours), "{flag} {pat}");
        repo.r.run(&[
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            theirs.as_os_str(),
            OsStr::new(flag),
            OsStr::new(pat),
        ]);
        assert!(ours.join(present).exists(), "{flag} {pat}: {present} not restored");
        assert!(!ours.join(absent).exists(), "{flag} {pat}: {absent} restored");
        compare_trees(&theirs, &ours, &strict_no_root).unwrap_or_else(|e| panic!("{flag} {pat}: {e}"));
    }
    // The parents of an included file carry their snapshot metadata, as restic's do.
    let parent = fs::metadata(base.join("ours-0/deep/l1")).unwrap();
    let src_parent = fs::metadata(repo.src.join("deep/l1")).unwrap();
    assert_eq!(parent.mode() & 0o7777, src_parent.mode() & 0o7777);
    assert_eq!((parent.mtime(), parent.mtime_nsec()), (src_parent.mtime(), src_parent.mtime_nsec()));
    // A directory with nothing selected below it is not created at all.
    assert!(!base.join("ours-0/empty-dir").exists());
}

/// Each blob of pack `pack` in restic's index: (id, type, offset, length, uncompressed length).
type IndexEntry = (String, String, u64, u64, Option<u64>);

fn index_of_packs(r: &Restic) -> BTreeMap<String, Vec<IndexEntry>> {
    let out = r.run(&["list", "index"]);
    let mut map: BTreeMap<String, Vec<IndexEntry>> = BTreeMap::new();
    for id in String::from_utf8(out.stdout).unwrap().split_whitespace() {
        let idx: Value = serde_json::from_slice(&r.run(&["cat", "index", id]).stdout).unwrap();
        for p in idx["packs"].as_array().unwrap() {
            let e = map.entry(p["id"].as_str().unwrap().to_string()).or_default();
            for b in p["blobs"].as_array().unwrap() {
                e.push((
                    b["id"].as_str().unwrap().to_string(),
                    b["type"].as_str().unwrap().to_string(),
                    b["offset"].as_u64().unwrap(),
                    b["length"].as_u64().unwrap(),
                    b.get("uncompressed_length").and_then(Value::as_u64),
                ));
            }
        }
    }
    for v in map.values_mut() {
        v.sort_by_key(|e| e.2);
    }
    map
}

/// `fetch-pack --pack SPEC | unpack --list`, unchecked.
fn list_pack(r: &Restic, spec: &OsStr) -> PipelineResult {
    let mut fetch = tool(r, "fetch-pack", &[]);
    fetch.extend(["--pack".into(), spec.to_os_string()]);
    Pipeline::new().stage(fetch).stage(tool(r, "unpack", &["--list"])).run()
}

fn listed(res: &PipelineResult) -> Vec<(IndexEntry, bool)> {
    framed_records(res)
        .iter()
        .map(|c| {
            assert_eq!(c["type"], "blob_check", "{c}");
            let e = (
                c["id"].as_str().unwrap().to_string(),
                c["blob_type"].as_str().unwrap().to_string(),
                c["offset"].as_u64().unwrap(),
                c["length"].as_u64().unwrap(),
                c.get("uncompressed_length").and_then(Value::as_u64),
            );
            (e, c["ok"] == true)
        })
        .collect()
}

#[test]
fn one_pack_listed_and_damage_named() {
    let repo = backed_up(2, &["--pack-size", "4"], 111, false);
    let index = index_of_packs(&repo.r);
    let files = repo.r.pack_files();
    assert_eq!(index.len(), files.len(), "every pack is indexed");
    let (data_pack, entries) = index
        .iter()
        .filter(|(_, v)| v.iter().all(|e| e.1 == "data"))
        .max_by_key(|(_, v)| v.len())
        .expect("a data pack");
    assert!(entries.len() >= 5, "busiest data pack has only {} blobs", entries.len());
    let tree_pack = index.iter().find(|(_, v)| v.iter().all(|e| e.1 == "tree")).expect("a tree pack").0;
    let path = files.iter().find(|p| p.file_name().unwrap() == data_pack.as_str()).unwrap();

    for spec in [OsStr::new(data_pack), OsStr::new(&data_pack[..12]), path.as_os_str(), OsStr::new(tree_pack)]
    {
        let res = list_pack(&repo.r, spec);
        res.assert_ok();
        let want = &index[if spec == OsStr::new(tree_pack) { tree_pack } else { data_pack }];
        let got = listed(&res);
        assert_eq!(got.len(), want.len(), "{spec:?}: blob count differs from the index");
        for ((e, ok), w) in got.iter().zip(want) {
            assert!(ok, "{spec:?}: blob {} reported damaged:\n{}", e.0, res.report());
            assert_eq!(e, w, "{spec:?}");
        }
    }

    // A copy with one byte flipped inside its first blob.
    let copy_dir = repo.td.path().join("copy");
    fs::create_dir(&copy_dir).unwrap();
    let copy = copy_dir.join(data_pack);
    let mut bytes = fs::read(path).unwrap();
    let first = &entries[0];
    bytes[(first.2 + first.3 / 2) as usize] ^= 0x01;
    fs::write(&copy, &bytes).unwrap();
    let res = list_pack(&repo.r, copy.as_os_str());
    assert_eq!(res.codes()[0], 0, "{}", res.report());
    assert_ne!(res.codes()[1], 0, "damage not reported:\n{}", res.report());
    let got = listed(&res);
    assert_eq!(got.len(), entries.len());
    assert_eq!(got[0], (first.clone(), false));
    assert!(got[1..].iter().all(|(_, ok)| *ok), "only the first blob is damaged: {got:?}");
    let err = res.stderr_str(1);
    assert!(err.contains(&first.0), "stderr does not name blob {}:\n{err}", first.0);
    assert!(!err.contains("panicked"), "{err}");
}
