//! A restore that meets damage, conflicts or a hostile stream: every item that can be
//! restored is, each failure is one line naming the file and the object, unpack exits 3, a
//! failed file never appears under its final name, nothing outside the target changes, and
//! nothing of the user's in the target is deleted.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::*;

/// A small tree backed up by restic into a v2 repository with 4 MiB packs: several random
/// files of 1.5 MiB (spread over more than one pack), two files with the same content in
/// different directories, small files, a symlink.
fn fixture(seed: u64) -> Fixture {
    Fixture::new(|src| fill(src, seed), &["--pack-size", "4"])
}

fn fill(src: &Path, seed: u64) {
    for d in ["a", "b", "c"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    for i in 0..6u64 {
        // The last one over restic's largest chunk (8 MiB): several blobs whatever the
        // repository's random chunker polynomial.
        let len = if i == 5 { 9 << 20 } else { 1536 << 10 };
        fs::write(src.join(format!("c/big-{i}")), random_bytes(seed * 100 + i, len)).unwrap();
    }
    let dup = random_bytes(seed * 100 + 50, 200_000);
    fs::write(src.join("a/dup"), &dup).unwrap();
    fs::write(src.join("b/dup"), &dup).unwrap();
    for i in 0..5 {
        fs::write(src.join(format!("b/small-{i}")), format!("small file {i}\n")).unwrap();
    }
    fs::write(src.join("top.txt"), b"top\n").unwrap();
    std::os::unix::fs::symlink("top.txt", src.join("link")).unwrap();
}

/// What these tests do with a fixture.
trait Fx {
    fn restore(&self, target: &Path) -> PipelineResult;
    fn restore_records(&self, records: &[Value], target: &Path) -> PipelineResult;
}

impl Fx for Fixture {
    /// `walk | fetch-pack | unpack --target T`.
    fn restore(&self, target: &Path) -> PipelineResult {
        Pipeline::new()
            .stage(tool(&self.r, "walk", &["latest"]))
            .stage(tool(&self.r, "fetch-pack", &[]))
            .stage(tool(&self.r, "unpack", &["--target", target.to_str().unwrap()]))
            .run()
    }

    /// `fetch-pack | unpack --target T` fed the given walk records.
    fn restore_records(&self, records: &[Value], target: &Path) -> PipelineResult {
        Pipeline::new()
            .stage(tool(&self.r, "fetch-pack", &[]))
            .stage(tool(&self.r, "unpack", &["--target", target.to_str().unwrap()]))
            .stdin(frame(records))
            .run()
    }
}

/// A framed stream of `records`.
fn frame(records: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    let h = json!({"type": "header", "format": "sluice-ndjson", "version": 1, "producer": "test"});
    for v in std::iter::once(&h).chain(records) {
        out.extend(serde_json::to_vec(v).unwrap());
        out.push(b'\n');
    }
    out.extend(format!("{{\"type\":\"end\",\"records\":{}}}\n", records.len()).into_bytes());
    out
}

fn find<'a>(records: &'a mut [Value], path: &str) -> &'a mut Value {
    records.iter_mut().find(|r| r["path"] == path).unwrap_or_else(|| panic!("no record for {path}"))
}

/// Asserts that `rel` under `target` is the same regular file as under `src`.
fn same_file(src: &Path, target: &Path, rel: &str) {
    let (a, b) = (src.join(rel), target.join(rel));
    let md = fs::symlink_metadata(&b).unwrap_or_else(|e| panic!("{rel} not restored: {e}"));
    assert!(md.is_file(), "{rel} is not a regular file");
    assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap(), "{rel} differs from its source");
}

/// Every regular file of `src` (relative paths, sorted).
fn files_of(src: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(src)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(src).unwrap().to_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The lines of unpack's stderr naming a file, without the closing summary.
fn failure_lines(res: &PipelineResult, stage: usize) -> Vec<String> {
    let err = res.stderr_str(stage);
    assert!(!err.contains("panicked"), "{err}");
    let mut lines: Vec<String> = err.lines().map(str::to_string).collect();
    let last = lines.pop().unwrap_or_default();
    assert!(last.contains("items were not restored completely"), "no summary line: {err}");
    lines
}

/// Checks a restore that failed exactly the files `failed` (each named once, by its own
/// line): all other files are identical to the source, no failed file under its final
/// name, no partial left.
/// `extra` counts further lines expected (about directories).
fn assert_all_but(
    fx: &Fixture,
    target: &Path,
    res: &PipelineResult,
    failed: &[&str],
    needles: &[&str],
    extra: usize,
) {
    let code = *res.codes().last().unwrap();
    assert_eq!(code, 3, "{}", res.report());
    let lines = failure_lines(res, res.statuses.len() - 1);
    assert_eq!(lines.len(), failed.len() + extra, "{lines:#?}");
    for f in failed {
        let mine: Vec<&String> = lines.iter().filter(|l| l.contains(&format!("/{f}: "))).collect();
        assert_eq!(mine.len(), 1, "{f} not named once: {lines:#?}");
        for n in needles {
            assert!(mine[0].contains(n), "{n} not in {}", mine[0]);
        }
        assert!(!target.join(f).exists(), "{f} exists under its final name");
    }
    for f in files_of(&fx.src) {
        if !failed.contains(&f.as_str()) {
            same_file(&fx.src, target, &f);
        }
    }
    assert!(assert_nothing_incomplete(target, &fx.src).is_empty(), "a partial file was left");
}

#[test]
fn one_damaged_blob_fails_only_the_files_needing_it() {
    let fx = fixture(1);
    let mut records = fx.records();
    // The blob shared by a/dup and b/dup: b/dup gets it without data (copied from a/dup),
    // so it must fail too rather than get zeros.
    let blob = find(&mut records, "a/dup")["blobs"][0].clone();
    let (id, pack) = (blob["id"].as_str().unwrap(), blob["pack"].as_str().unwrap());
    let p = fx.pack_path(pack);
    let mut bytes = fs::read(&p).unwrap();
    let at = blob["offset"].as_u64().unwrap() + 40;
    bytes[at as usize] ^= 1;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&p, bytes).unwrap();

    let target = fx.path("out");
    let res = fx.restore(&target);
    assert_eq!(res.codes(), vec![0, 0, 3], "{}", res.report());
    assert_all_but(&fx, &target, &res, &["a/dup", "b/dup"], &[&id[..8]], 0);
    assert!(res.stderr_str(2).contains(&pack[..8]), "{}", res.report());
    assert_eq!(fs::read_link(target.join("link")).unwrap(), Path::new("top.txt"));
}

#[test]
fn deleted_pack_fails_only_its_files() {
    let fx = fixture(2);
    let records = fx.records();
    let rec = records.iter().find(|r| r["path"] == "c/big-3").unwrap();
    let pack = rec["blobs"][0]["pack"].as_str().unwrap().to_string();
    fs::remove_file(fx.pack_path(&pack)).unwrap();
    let lost: Vec<String> = records
        .iter()
        .filter(|r| r["blobs"].as_array().is_some_and(|b| b.iter().any(|b| b["pack"] == pack.as_str())))
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert!(lost.len() < files_of(&fx.src).len() - 2, "the pack holds almost everything: {lost:?}");

    let target = fx.path("out");
    let res = fx.restore(&target);
    assert_eq!(res.codes(), vec![0, 3, 3], "{}", res.report());
    let err = res.stderr_str(1);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one line for the pack and a summary: {err}");
    assert!(lines[0].starts_with("fetch-pack: pack ") && lines[0].contains(&pack), "{err}");
    let lost: Vec<&str> = lost.iter().map(String::as_str).collect();
    assert_all_but(&fx, &target, &res, &lost, &[&pack[..8]], 0);

    // unpack --list counts the blobs fetch-pack could not read as damaged.
    let res = Pipeline::new()
        .stage(tool(&fx.r, "walk", &["latest"]))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .stage(tool(&fx.r, "unpack", &["--list"]))
        .run();
    assert_eq!(res.codes(), vec![0, 3, 1], "{}", res.report());
    let bad = framed_records(&res).into_iter().filter(|r| r["ok"] == false).count();
    assert!(bad > 0, "{}", res.report());
    assert!(framed_records(&res).iter().filter(|r| r["ok"] == false).all(|r| r["pack"] == pack.as_str()));
}

/// Makes a directory immutable (even root cannot create entries in it) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn new(p: &Path) -> Immutable {
        let st = std::process::Command::new("chattr").arg("+i").arg(p).status().unwrap();
        assert!(st.success(), "chattr +i {p:?}");
        Immutable(p.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn unwritable_directory_fails_what_is_below_it() {
    let fx = fixture(3);
    let target = fx.path("out");
    fs::create_dir_all(target.join("b")).unwrap();
    // As root, modes do not stop us: an immutable directory does. Otherwise a 0555 one.
    let _guard = if is_root() {
        Some(Immutable::new(&target.join("b")))
    } else {
        fs::set_permissions(target.join("b"), fs::Permissions::from_mode(0o555)).unwrap();
        None
    };
    let res = fx.restore(&target);
    let below: Vec<String> = files_of(&fx.src).into_iter().filter(|f| f.starts_with("b/")).collect();
    let below: Vec<&str> = below.iter().map(String::as_str).collect();
    assert_eq!(res.codes(), vec![0, 0, 3], "{}", res.report());
    // b's own metadata cannot be set either: one more line, for b.
    assert_all_but(&fx, &target, &res, &below, &[], 1);
    let lines = failure_lines(&res, 2);
    assert!(lines.iter().any(|l| l.contains("/b: cannot restore metadata")), "{lines:#?}");
}

#[test]
fn conflicts_with_what_the_user_has_keep_the_users_data() {
    let fx = fixture(4);
    let target = fx.path("out");
    fs::create_dir_all(target.join("top.txt")).unwrap();
    fs::write(target.join("top.txt/mine"), b"user data in a dir where a file goes").unwrap();
    fs::write(target.join("a"), b"user file where a dir goes").unwrap();
    fs::write(target.join("link"), b"user file where a symlink goes").unwrap();
    let res = fx.restore(&target);
    assert_eq!(res.codes(), vec![0, 0, 3], "{}", res.report());
    let lines = failure_lines(&res, 2);
    // b/dup's content came with a/dup, which could not be restored: it fails too.
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("/b/dup: ") && l.contains("a/dup")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("/top.txt: a directory is in the way")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("/a: not a directory")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("/link: cannot create symbolic link")), "{lines:#?}");
    assert_eq!(fs::read(target.join("top.txt/mine")).unwrap(), b"user data in a dir where a file goes");
    assert_eq!(fs::read(target.join("a")).unwrap(), b"user file where a dir goes");
    assert_eq!(fs::read(target.join("link")).unwrap(), b"user file where a symlink goes");
    for f in files_of(&fx.src) {
        if !f.starts_with("a/") && f != "top.txt" && f != "b/dup" {
            same_file(&fx.src, &target, &f);
        }
    }
    assert_no_partials(&target);

    // Restoring again over our own restore replaces files and keeps our own links.
    let again = fx.path("again");
    fx.restore(&again).assert_ok();
    let res = fx.restore(&again);
    res.assert_ok();
    assert!(res.stderrs.iter().all(Vec::is_empty), "{}", res.report());
}

/// Asserts that no partial file is left anywhere under `target`.
fn assert_no_partials(target: &Path) {
    for e in walkdir::WalkDir::new(target).into_iter().map(|e| e.unwrap()) {
        assert!(!e.file_name().to_string_lossy().ends_with(".sluice-part"), "{:?} left", e.path());
    }
}

/// A target with an outside directory next to it, and a file there that must not change.
fn outside(fx: &Fixture) -> (PathBuf, PathBuf) {
    let out = fx.path("outside");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("victim"), b"outside").unwrap();
    (out.clone(), out.join("victim"))
}

fn assert_outside_unchanged(out: &Path) {
    let names: Vec<_> = fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("victim")], "something was created outside");
    assert_eq!(fs::read(out.join("victim")).unwrap(), b"outside");
    assert_eq!(fs::metadata(out.join("victim")).unwrap().nlink(), 1, "the outside file got a link");
}

#[test]
fn a_stream_cannot_steer_writes_outside_the_target() {
    let fx = fixture(5);
    let (out, victim) = outside(&fx);
    let records = fx.records();
    let link = records.iter().find(|r| r["path"] == "link").unwrap().clone();
    let file = records.iter().find(|r| r["path"] == "top.txt").unwrap().clone();

    // A symlink to the outside, then a file "below" it.
    let mut evil_link = link.clone();
    evil_link["path"] = json!("x");
    evil_link["node"]["name"] = json!("x");
    evil_link["node"]["linktarget"] = json!(out.to_str().unwrap());
    let mut below = file.clone();
    below["path"] = json!("x/evil");
    below["node"]["name"] = json!("evil");
    // Hard links to a file outside, and to a name never restored in this run.
    let mut hard_out = file.clone();
    hard_out["path"] = json!("h1");
    hard_out["node"]["name"] = json!("h1");
    hard_out["hardlink"] = json!(victim.to_str().unwrap());
    let mut hard_up = file.clone();
    hard_up["path"] = json!("h2");
    hard_up["node"]["name"] = json!("h2");
    hard_up["hardlink"] = json!("../outside/victim");
    let mut hard_none = file.clone();
    hard_none["path"] = json!("h3");
    hard_none["node"]["name"] = json!("h3");
    hard_none["hardlink"] = json!("x/victim");
    // Paths that leave the target or are not clean.
    let mut dotdot = file.clone();
    dotdot["path"] = json!("../outside/evil");
    let mut absolute = file.clone();
    absolute["path"] = json!(out.join("evil").to_str().unwrap());
    let mut nul = file.clone();
    nul["path"] = json!("a\u{0}b");
    // A node whose stored name has a '/' in it.
    let mut slash = file.clone();
    slash["path"] = json!("y");
    slash["node"]["name"] = json!("../y");
    let stream = vec![file, evil_link, below, hard_out, hard_up, hard_none, dotdot, absolute, nul, slash];

    let target = fx.path("out");
    fs::create_dir_all(&target).unwrap();
    // A symlink already in the target where a file will be restored: replaced, never
    // written through.
    std::os::unix::fs::symlink(&victim, target.join("top.txt")).unwrap();
    let res = fx.restore_records(&stream, &target);
    assert_eq!(res.codes(), vec![0, 3], "{}", res.report());
    assert_outside_unchanged(&out);
    let lines = failure_lines(&res, 1);
    assert_eq!(lines.len(), 8, "one line per bad record: {lines:#?}");
    for (needle, why) in [
        ("x/evil", "not a directory"),
        ("/h1: hard link", "not restored"),
        ("/h2: hard link", "not restored"),
        ("/h3: hard link", "not restored"),
        ("../outside/evil", "not a clean relative path"),
        ("outside/evil\"", "not a clean relative path"),
        ("a\\0b", "not a clean relative path"),
        ("/y: the node is named \"../y\"", "skipped"),
    ] {
        assert!(lines.iter().any(|l| l.contains(needle) && l.contains(why)), "{needle}: {lines:#?}");
    }
    assert_eq!(fs::read_link(target.join("x")).unwrap(), out, "the link itself is restored");
    same_file(&fx.src, &target, "top.txt");
}

#[test]
fn records_must_match_their_nodes() {
    let fx = fixture(6);
    let mut records = fx.records();
    // One blob dropped from a file's list: a shorter file must not pass for the file.
    let rec = find(&mut records, "c/big-5");
    let n = rec["blobs"].as_array().unwrap().len();
    assert!(n >= 2, "c/big-5 has {n} blobs");
    rec["blobs"].as_array_mut().unwrap().pop();
    // A node type nothing can restore.
    let mut odd = records.iter().find(|r| r["path"] == "top.txt").unwrap().clone();
    odd["path"] = json!("odd");
    odd["node"]["name"] = json!("odd");
    odd["node"]["type"] = json!("irregular");
    odd["node"]["content"] = Value::Null;
    odd.as_object_mut().unwrap().remove("blobs");
    records.push(odd);

    let target = fx.path("out");
    let res = fx.restore_records(&records, &target);
    assert_eq!(res.codes(), vec![0, 3], "{}", res.report());
    let lines = failure_lines(&res, 1);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("/c/big-5: the record does not match its node")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("/odd: ") && l.contains("irregular")), "{lines:#?}");
    assert!(!target.join("c/big-5").exists());
    for f in files_of(&fx.src) {
        if f != "c/big-5" {
            same_file(&fx.src, &target, &f);
        }
    }
    assert!(assert_nothing_incomplete(&target, &fx.src).is_empty());
}

#[test]
fn impossible_lengths_are_refused_before_allocating() {
    let fx = fixture(9);
    // In fetch-pack's output, a blob record claiming 4 GB of plaintext: unpack fails the
    // file at once (it would have allocated the 4 GB).
    let res =
        Pipeline::new().stage(tool(&fx.r, "walk", &["latest"])).stage(tool(&fx.r, "fetch-pack", &[])).run();
    res.assert_ok();
    let mut fetched = framed_records(&res);
    let big2 = fetched.iter().position(|r| r["path"] == "c/big-2").unwrap();
    let blob = &mut fetched[big2 + 1];
    assert_eq!(blob["type"], "blob");
    let id = blob["id"].as_str().unwrap().to_string();
    blob["uncompressed_length"] = json!(4_000_000_000u32);
    let target = fx.path("out");
    let res = Pipeline::new()
        .stage(tool(&fx.r, "unpack", &["--target", target.to_str().unwrap()]))
        .stdin(frame(&fetched))
        .run();
    assert_eq!(res.codes(), vec![3], "{}", res.report());
    let lines = failure_lines(&res, 0);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("/c/big-2: ") && lines[0].contains("128 MiB") && lines[0].contains(&id[..8]));
    assert!(!target.join("c/big-2").exists());
    same_file(&fx.src, &target, "c/big-3");

    // fetch-pack refuses an impossible encrypted length without reading or allocating it.
    let mut records = fx.records();
    find(&mut records, "c/big-2")["blobs"][0]["length"] = json!(4_000_000_000u32);
    let res = Pipeline::new().stage(tool(&fx.r, "fetch-pack", &[])).stdin(frame(&records)).run();
    assert_eq!(res.codes(), vec![3], "{}", res.report());
    let err = res.stderr_str(0);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(err.lines().next().unwrap().contains("128 MiB"), "{err}");
    let failed: Vec<Value> =
        framed_records(&res).into_iter().filter(|r| r["type"] == "blob_failed").collect();
    assert_eq!(failed.len(), 1, "{}", res.report());
}

#[test]
fn metadata_that_cannot_be_restored_fails_the_item() {
    let fx = fixture(7);
    let mut records = fx.records();
    // An xattr name longer than any file system takes (255 bytes): ERANGE everywhere.
    let long = format!("user.{}", "x".repeat(300));
    let value = base64_of(b"v");
    find(&mut records, "top.txt")["node"]["extended_attributes"] = json!([{"name": long, "value": value}]);
    let target = fx.path("out");
    let res = fx.restore_records(&records, &target);
    assert_eq!(res.codes(), vec![0, 3], "{}", res.report());
    let lines = failure_lines(&res, 1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("/top.txt: cannot restore metadata: xattr user.xxx"), "{lines:#?}");
    // The content is whole, so the file is there.
    same_file(&fx.src, &target, "top.txt");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn partial_names_never_destroy_data() {
    let td = tempdir();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    // The names the old partial scheme used for f, in the snapshot itself.
    fs::write(src.join(".f.sluice-part"), b"snapshot data, not a partial").unwrap();
    fs::write(src.join("f"), b"the file").unwrap();
    fs::write(src.join("g"), b"another file").unwrap();
    let r = Restic::new(&td.path().join("r"));
    r.init(2, &[]);
    r.backup_dir_contents(&src, &[]);
    let target = td.path().join("out");
    fs::create_dir(&target).unwrap();
    fs::write(target.join(".g.sluice-part"), b"the user's").unwrap();
    let res = restore_pipeline(&r, "latest", &target, &[], &[]);
    res.assert_ok();
    assert_eq!(fs::read(target.join(".f.sluice-part")).unwrap(), b"snapshot data, not a partial");
    assert_eq!(fs::read(target.join("f")).unwrap(), b"the file");
    assert_eq!(fs::read(target.join(".g.sluice-part")).unwrap(), b"the user's");

    // A resumed restore does not take them for partials either.
    let res = Pipeline::new()
        .stage(tool(&r, "walk", &["latest"]))
        .stage(tool(&r, "fetch-pack", &[]))
        .stage(tool(&r, "unpack", &["--resume", "--target", target.to_str().unwrap()]))
        .run();
    res.assert_ok();
    assert_eq!(fs::read(target.join(".f.sluice-part")).unwrap(), b"snapshot data, not a partial");
    assert_eq!(fs::read(target.join(".g.sluice-part")).unwrap(), b"the user's");
}

#[test]
fn target_that_is_not_a_directory() {
    let fx = fixture(8);
    let res = Pipeline::new()
        .stage(tool(&fx.r, "walk", &["latest"]))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .stage(tool(&fx.r, "unpack", &["-t", "/dev/stdout"]))
        .run();
    assert_eq!(res.codes()[2], 1, "{}", res.report());
    let msg = one_line(&res.stderrs[2], "unpack");
    assert_eq!(msg, "unpack: target /dev/stdout is not a directory");
}

/// Restores the snapshot into `target` with unpack under `strace -f -e TRACE`; the log.
fn restore_under_strace(fx: &Fixture, target: &Path, trace: &str) -> String {
    restore_under_strace_with(fx, target, trace, "", None)
}

/// The same with `SLUICE_MAKE_AHEAD` set to `ahead`, and at most `nofile` open descriptors
/// (soft and hard limit) if given.
fn restore_under_strace_with(
    fx: &Fixture,
    target: &Path,
    trace: &str,
    ahead: &str,
    nofile: Option<u32>,
) -> String {
    if std::process::Command::new("strace").arg("-V").output().is_err() {
        panic!("strace is needed for this test");
    }
    let fetched =
        Pipeline::new().stage(tool(&fx.r, "walk", &["latest"])).stage(tool(&fx.r, "fetch-pack", &[])).run();
    fetched.assert_ok();
    let log = fx.path("strace.log");
    let mut cmd = match nofile {
        Some(n) => argv(["sh", "-c", &format!("ulimit -n {n} && exec \"$@\""), "sh"]),
        None => Vec::new(),
    };
    cmd.extend(argv(["strace", "-f", "-e", trace, "-o", log.to_str().unwrap()]));
    let mut unpack = tool(&fx.r, "unpack", &["--target", target.to_str().unwrap()]);
    unpack[0] = bin("unpack").into_os_string();
    cmd.extend(unpack);
    Pipeline::new().stage(cmd).env("SLUICE_MAKE_AHEAD", ahead).stdin(fetched.stdout).run().assert_ok();
    fs::read_to_string(&log).unwrap()
}

/// `n` files `small-000`… of 100 bytes and more, backed up.
fn small_files(n: u64) -> Fixture {
    Fixture::new(
        |src| {
            for i in 0..n {
                fs::write(src.join(format!("small-{i:03}")), random_bytes(i, 100 + i as usize)).unwrap();
            }
        },
        &[],
    )
}

/// Issue #6 (item 9): a file restored into a fresh target costs the writer seven calls
/// (create, write, owner, times, mode, link, close) and no more: in particular no lookup of
/// what the target holds under its name, which an empty target cannot hold. Files are made
/// unnamed in their directory and linked to their name once on disk; the first is given a
/// partial name at once, which shows that linking works here, and renamed. With files made
/// ahead (as root, once creates are slow), the create is on another thread and the writer
/// gives each a partial name and renames it: still seven calls, no lookup.
#[test]
fn a_fresh_target_costs_no_lookup_per_file() {
    let fx = small_files(300);
    // Both ways by force: under strace every call is slow enough to switch on its own.
    for ahead in ["never", "always"] {
        let target = fx.path(&format!("out-{ahead}"));
        let log = restore_under_strace_with(&fx, &target, "trace=%file", ahead, None);
        let created = log.lines().filter(|l| l.contains(".sluice-part") && l.contains("O_CREAT")).count();
        let linked = log.lines().filter(|l| l.contains(".sluice-part") && l.contains(" linkat(")).count();
        let unnamed = log.lines().filter(|l| l.contains("O_TMPFILE") && !l.contains("= -1")).count();
        // Unnamed files linked to their final name (from their descriptor, or its /proc name).
        let finals = log.lines().filter(|l| l.contains(" linkat(") && !l.contains(".sluice-part")).count();
        if ahead == "never" || !is_root() {
            assert_eq!((created, linked, unnamed, finals), (0, 1, 300, 299), "{log}");
        } else {
            assert_eq!((created, linked, finals), (0, 300, 0), "{log}");
            assert!(unnamed >= 300, "{unnamed} unnamed files made ahead:\n{log}");
        }
        // Calls naming a restored file other than through its partial (renames name both) or
        // by the link that gives an unnamed one its name.
        let named: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("small-") && !l.contains(".sluice-part") && !l.contains(" linkat("))
            .collect();
        assert!(named.is_empty(), "{} calls look the files up:\n{}", named.len(), named.join("\n"));
        assert_eq!(fs::read(target.join("small-299")).unwrap(), random_bytes(299, 399));
    }
}

/// With fewer descriptors allowed than a batch of unnamed files holds, files are created
/// under partial names and renamed, as where the file system has no `O_TMPFILE`: the same
/// files, the same calls but for the name they are made under.
#[test]
fn a_low_descriptor_limit_keeps_partial_names() {
    let fx = small_files(50);
    let target = fx.path("out");
    let log = restore_under_strace_with(&fx, &target, "trace=%file", "never", Some(1000));
    let created = log.lines().filter(|l| l.contains(".sluice-part") && l.contains("O_CREAT")).count();
    let renamed = log.lines().filter(|l| l.contains(".sluice-part") && l.contains("rename")).count();
    let unnamed = log.lines().filter(|l| l.contains("O_TMPFILE")).count();
    assert_eq!((created, renamed, unnamed), (50, 50, 0), "{log}");
    for i in 0..50u64 {
        assert_eq!(
            fs::read(target.join(format!("small-{i:03}"))).unwrap(),
            random_bytes(i, 100 + i as usize)
        );
    }
}

/// Files made ahead of the writer (forced here) are made on the target's file system; one mounted below
/// the target (a tmpfs on a directory the snapshot also has) takes its files all the same,
/// each made where it goes.
#[test]
fn a_file_system_mounted_below_the_target_takes_its_files() {
    let fx = Fixture::new(
        |src| {
            for d in ["a", "m", "z"] {
                fs::create_dir(src.join(d)).unwrap();
                for i in 0..40u64 {
                    fs::write(src.join(format!("{d}/f{i:02}")), random_bytes(i, 3000 + i as usize)).unwrap();
                }
            }
        },
        &[],
    );
    let target = fx.path("out");
    fs::create_dir_all(target.join("m")).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(target.join("m"))
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs here (not root?): nothing to try");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(target.join("m"));
    let res = Pipeline::new()
        .stage(tool(&fx.r, "walk", &["latest"]))
        .stage(tool(&fx.r, "fetch-pack", &[]))
        .stage(tool(&fx.r, "unpack", &["--target", target.to_str().unwrap()]))
        .env("SLUICE_MAKE_AHEAD", "always")
        .run();
    res.assert_ok();
    for d in ["a", "m", "z"] {
        for i in 0..40u64 {
            let got = fs::read(target.join(format!("{d}/f{i:02}"))).unwrap();
            assert_eq!(got, random_bytes(i, 3000 + i as usize), "{d}/f{i:02}");
        }
    }
    let tmpfs_names = fs::read_dir(target.join("m")).unwrap().count();
    assert_eq!(tmpfs_names, 40, "only the restored files are on the tmpfs");
}

#[test]
fn data_is_on_disk_before_a_file_gets_its_name() {
    // Seen with strace: no file is renamed from its partial, or its unnamed file linked, to
    // its final name before a sync of its data. (A link to a partial name is not final.)
    let fx = fixture(10);
    let target = fx.path("out");
    let log = restore_under_strace(
        &fx,
        &target,
        "trace=rename,renameat,renameat2,link,linkat,fsync,fdatasync,syncfs,sync",
    );
    let mut synced = false;
    let mut named = 0;
    for l in log.lines() {
        let linked = l.contains("linkat(") && !l.contains(".sluice-part") && l.contains("= 0");
        if l.contains("sync") && l.contains("= 0") {
            synced = true;
        } else if linked || (l.contains("rename") && l.contains(".sluice-part")) {
            assert!(synced, "a file named before any sync:\n{log}");
            named += 1;
        }
    }
    assert_eq!(named, files_of(&fx.src).len(), "{log}");
}
